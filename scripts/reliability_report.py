#!/usr/bin/python3
"""Regenerate docs/reliability.md (issue 7 item 6) from measured runs:

  * kill -9 rounds          build/tests/crash_kill9 with DVECDB_KILL9_ROUNDS (default 200)
  * simulated power loss    build/tests/crash_power_loss with DVECDB_CRASH_ALL=1 (every I/O call)
  * recovery crash points   build/tests/test_recovery (crash + EIO at every call of each operation)
  * fuzzing                 build-fuzz/summary.tsv from `make fuzz`
  * soak                    build/soak-3min.json or build/soak-30min.json from tests/soak/soak.py
  * security suite          tests/e2e/test_security.py

Run by `make reliability-report`; every figure on the page comes from this run
(the soak and fuzz figures from the newest files of those runs).
"""
import datetime
import glob
import json
import os
import re
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
B = os.path.join(ROOT, os.environ.get("DVECDB_BUILD", "build"))


def run(cmd, env=None, timeout=3600):
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run(cmd, cwd=ROOT, env=e, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout + p.stderr


def main():
    # DVECDB_REPORT_REUSE=1: take the crash and security results of the last
    # full run (build/reliability-last.json) and refresh only the fuzz and
    # soak parts (to add a soak that ended after the crash runs).
    cache = os.path.join(B, "reliability-last.json")
    if os.environ.get("DVECDB_REPORT_REUSE") == "1" and os.path.exists(cache):
        with open(cache) as f:
            last = json.load(f)
        return write_report([tuple(r) for r in last["rows"]], last["sec"], last["ok"], last["when"],
                            [tuple(r) for r in last.get("san", [])])
    rows = []
    ok_all = True
    rounds = os.environ.get("DVECDB_KILL9_ROUNDS", "200")
    rc, out = run([os.path.join(B, "tests", "crash_kill9")], {"DVECDB_KILL9_ROUNDS": rounds})
    line = [l for l in out.splitlines() if l.startswith("kill9:")]
    rows.append(("kill -9 of a process doing batched upserts (fsync always)", line[-1] if line else out[-300:], rc == 0))
    rc2, out2 = run([os.path.join(B, "tests", "crash_power_loss")], {"DVECDB_CRASH_ALL": "1"})
    line = [l for l in out2.splitlines() if l.startswith("power_loss:")]
    rows.append(("simulated power loss at every I/O call of the scripted workload", line[-1] if line else out2[-300:], rc2 == 0))
    rc3, out3 = run([os.path.join(B, "tests", "test_recovery")])
    rec = [l.strip() for l in out3.splitlines() if re.search(r"(crash|io) (points|calls)", l)]
    rows.append(("crash and EIO at every I/O call of drop / restore / backup / hard delete / purge",
                 "; ".join(rec) or out3[-300:], rc3 == 0))
    rc4, out4 = run([os.path.join(B, "tests", "test_import")])
    imp = [l.strip() for l in out4.splitlines() if "fault points" in l]
    rows.append(("crash and EIO at every I/O call of an import", "; ".join(imp) or out4[-300:], rc4 == 0))
    ok_all &= all(r[2] for r in rows)
    rc5, out5 = run(["/usr/bin/python3", "-m", "pytest", "-p", "no:cacheprovider", "-q", "tests/e2e/test_security.py"],
                    {"DVECDB_BUILD": os.path.basename(B)})
    sec = [l for l in out5.splitlines() if re.search(r"\d+ passed|\d+ failed", l)]
    ok_all &= rc5 == 0
    san = sanitizer_rows()
    ok_all &= all(r[2] for r in san)
    when = datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC")
    with open(cache, "w") as f:
        json.dump({"rows": rows, "sec": sec, "ok": ok_all, "when": when, "san": san}, f)
    return write_report(rows, sec, ok_all, when, san)


def sanitizer_rows():
    """valgrind on the server (seconds); ThreadSanitizer (make test-tsan, ~15
    min) only with DVECDB_REPORT_TSAN=1. ASan+UBSan run in every make test."""
    out = []
    rc, txt = run(["scripts/valgrind-smoke.sh"], {"DVECDB_BUILD": os.path.basename(B)})
    got = [l.split("== ", 1)[-1].strip() for l in txt.splitlines()
           if "definitely lost" in l or "ERROR SUMMARY" in l or l.startswith("valgrind-smoke: server")]
    out.append(("valgrind --leak-check=full on the server, every kind of request, SIGTERM "
                "(thread per connection, then the epoll pool)", "; ".join(got) or txt[-300:], rc == 0))
    if os.environ.get("DVECDB_REPORT_TSAN") == "1":
        rc, txt = run(["make", "-s", "test-tsan"], timeout=7200)
        # the unit runner's total and pytest's summary line (not each
        # binary's own line, nor test output such as "15 failed cleanly")
        got = [l.strip() for l in txt.splitlines()
               if l.startswith("run-tests:") or re.match(r"^=*\s*\d+ (passed|failed)\b.* in [0-9.]+s", l.strip())]
        n_rep = txt.count("WARNING: ThreadSanitizer")
        out.append(("ThreadSanitizer: every unit test binary, and the server's concurrency, API, durability and "
                    "recovery e2e tests (make test-tsan)", "; ".join(got) + "; %d reports" % n_rep,
                    rc == 0 and n_rep == 0))
    return out


def write_report(rows, sec, ok_all, when, san=()):

    fuzz = []
    tsv = os.path.join(ROOT, "build-fuzz", "summary.tsv")
    if os.path.exists(tsv):
        for l in open(tsv):
            f = l.rstrip("\n").split("\t")
            if len(f) >= 6:
                fuzz.append(f)
    # every soak result kept in the build dir (soak-30min.json and soak-3min.json
    # from make soak / make test-long, and any earlier runs saved beside them as
    # soak-*.json), newest first
    soaks = []
    for p in glob.glob(os.path.join(B, "soak-*.json")):
        with open(p) as f:
            soaks.append((os.path.basename(p), json.load(f)))
    soaks.sort(key=lambda x: x[1].get("finished_utc", ""), reverse=True)
    md = ["# Reliability figures", "",
          "Regenerated by `make reliability-report` (scripts/reliability_report.py); crash and security runs "
          "of %s, page written %s." % (when, datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC")),
          "Each line is what the test printed in that run; a failing run is marked FAILED.", "",
          "## Crashes", "", "| scenario | measured | result |", "|---|---|---|"]
    for what, got, ok in rows:
        md.append("| %s | %s | %s |" % (what, got.replace("|", "/"), "ok" if ok else "FAILED"))
    md += ["", "## Sanitizers", "",
           "`make test` runs the unit and crash tests and the whole e2e suite (against the server built with "
           "them) under AddressSanitizer + UndefinedBehaviorSanitizer; any report fails it.", ""]
    if san:
        md += ["| run | measured | result |", "|---|---|---|"]
        for what, got, ok in san:
            md.append("| %s | %s | %s |" % (what, got.replace("|", "/"), "ok" if ok else "FAILED"))
    else:
        md.append("No valgrind or ThreadSanitizer result in this report's run.")
    md += ["", "## Fuzzing", ""]
    if fuzz:
        md += ["From `build-fuzz/summary.tsv`: the latest `make fuzz` / `tests/fuzz/run.sh` run of each target "
               "(targets ran for different times; the campaign and its re-runs on changed sources are in "
               "docs/fuzzing.md).", "",
               "| target | seconds | executions | coverage | features | result | run finished |",
               "|---|---|---|---|---|---|---|"]
        total = 0
        for f in fuzz:
            md.append("| " + " | ".join(f[:6] + [f[6] if len(f) > 6 else "?"]) + " |")
            total += int(f[2]) if f[2].isdigit() else 0
        md += ["", "Total executions in these lines: %d. Crashes found and fixed: see docs/fuzzing.md." % total]
    else:
        md.append("No `build-fuzz/summary.tsv`: run `make fuzz` first.")
    md += ["", "## Load and soak", ""]
    for name, s in soaks:
        md += ["From `%s` (tests/soak/soak.py, %s min at %d%% of measured capacity, git %s, finished %s; "
               "machine load average up to %s during the run):" % (
                   name, s["minutes"], s["load"] * 100, s.get("git", "?"), s.get("finished_utc", "?"),
                   s.get("machine_loadavg1_max", "?")),
               "",
               "| measure | value | bar |", "|---|---|---|",
               "| searches / acknowledged write ops | %s / %s | |" % (s.get("searches", "?"), s.get("writes", "?")),
               "| errors | %d | 0 |" % s["errors"],
               "| RSS growth after warm-up | %.1f%% | < 5%% |" % (s["rss_growth"] * 100),
               "| open fds delta | %d | flat |" % s["fd_delta"],
               "| p99 drift (median of 3 windows, first vs last) | %.1f%% (%.1f -> %.1f ms) | < 20%% |" % (
                   s["p99_drift"] * 100, s["p99_first_ms"], s["p99_last_ms"]),
               "| acknowledged ids checked / wrong | %d / %d | 0 wrong |" % (s["ids_checked"], s["ids_wrong"]),
               "| passed | %s | |" % s["passed"], ""]
        if s.get("note"):
            md += ["Note: " + s["note"], ""]
    if not soaks:
        md.append("No soak result: run `make test-long` (3 min) or `make soak` (30 min).")
    md += ["", "## Security suite", "", "tests/e2e/test_security.py: %s" % ("; ".join(sec) if sec else "did not run"), ""]
    with open(os.path.join(ROOT, "docs", "reliability.md"), "w") as f:
        f.write("\n".join(md))
    print("\n".join(md))
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
