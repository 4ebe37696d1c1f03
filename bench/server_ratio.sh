#!/bin/bash
# server_ratio.sh - issue 4's server-vs-in-process search ratio, measured so
# that the two sides see the same machine: ROUNDS rounds, each running the
# in-process search (engine_bench, 1 and 2 threads) and then every server
# binary given, at each connection count, back to back. One line per run:
# QPS, wrk's p50/p99, and the CPU time per request of the server process
# (user + system, from /proc) and of wrk. The ratio of one round is its
# server QPS over that round's in-process QPS; report the median of rounds.
#
#   bench/server_ratio.sh ROUNDS SECS "CONNS" SERVER [SERVER...]
#   e.g. bench/server_ratio.sh 5 5 "1 16" build/vectordb-server
#   PIN=1 ...     every process on CPU 1 (taskset): server + wrk share one
#                 core, in-process gets one core (no cross-CPU wake-ups)
#   WRK_LUA_<i>=file   wrk script for the i-th server (default bench/wrk_search.lua)
#
# Needs bench/out from bench/run.sh (Fashion-MNIST prepared, bench/out/engine-db
# loaded, bench/out/search-bodies.txt, bench/out/bin/engine_bench). The data
# directory is copied once per server and once for engine_bench (a data
# directory is locked by one process) into a temporary directory.
set -eu
[ $# -ge 4 ] || { sed -n '2,20p' "$0" >&2; exit 2; }
ROUNDS=$1 SECS=$2 CONNS=$3
shift 3
OUT=${OUT:-bench/out}
PY=/usr/bin/python3
TS=""
[ -n "${PIN:-}" ] && TS="taskset -c $PIN"
TMP=$(mktemp -d)
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
cp -rL "$OUT/engine-db" "$TMP/db-inproc"
ports=()
spids=()
luas=()
i=0
for bin in "$@"; do
    cp -rL "$OUT/engine-db" "$TMP/db-$i"
    port=$($PY -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
    $TS "$bin" --data-dir "$TMP/db-$i" --host 127.0.0.1 --rest-port "$port" --log-level warn >"$TMP/server-$i.log" 2>&1 &
    spids+=($!)
    pids="$pids $!"
    ports+=("$port")
    v="WRK_LUA_$i"
    luas+=("${!v:-bench/wrk_search.lua}")
    i=$((i + 1))
done
for i in "${!ports[@]}"; do
    for _ in $(seq 1 600); do
        curl -sf "http://127.0.0.1:${ports[$i]}/readyz" >/dev/null && break
        sleep 0.1
    done
    # warm: first searches fault in the index pages
    wrk -t1 -c1 -d1s -s "${luas[$i]}" "http://127.0.0.1:${ports[$i]}" -- "$OUT/search-bodies.txt" \
        /collections/fmnist/search >/dev/null
done
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
echo "# $(date -u +%FT%TZ) $(nproc) CPUs, PIN=${PIN:-none}, servers: $*"
runs() {
for r in $(seq 1 "$ROUNDS"); do
    for t in 1 2; do
        q=$($TS "$OUT/bin/engine_bench" search "$TMP/db-inproc" fmnist "$OUT/fmnist" 40 $t "$SECS" 2>/dev/null |
            grep -o '"qps":[0-9.]*' | cut -d: -f2)
        echo "round $r inproc t$t load $(cut -d' ' -f1 /proc/loadavg) qps $q"
    done
    for i in "${!ports[@]}"; do
        for c in $CONNS; do
            th=2
            [ "$c" = 1 ] && th=1
            load=$(cut -d' ' -f1 /proc/loadavg)
            c0=$(cpu_ticks "${spids[$i]}")
            res=$({ /usr/bin/time -f "WRKCPU %U %S" $TS wrk -t$th -c"$c" -d"${SECS}"s -s "${luas[$i]}" \
                "http://127.0.0.1:${ports[$i]}" -- "$OUT/search-bodies.txt" /collections/fmnist/search; } 2>&1)
            c1=$(cpu_ticks "${spids[$i]}")
            line=$(echo "$res" | grep '^{')
            w=$(echo "$res" | awk '/^WRKCPU/ {print $2 + $3}')
            echo "$line" | $PY -c "
import json, sys
d = json.loads(sys.stdin.read()); n = max(d['requests'], 1)
print('round $r server$i c$c load $load rps %.1f p50 %.3f p99 %.3f non2xx %d srv_us/req %.0f wrk_us/req %.0f' % (
    d['rps'], d['p50_ms'], d['p99_ms'], d['non2xx'], ($c1 - $c0) / $hz * 1e6 / n, $w * 1e6 / n))"
        done
    done
done
}
runs | tee "$TMP/runs.txt"
# medians over the rounds; ratios are taken within a round, then the median
$PY - "$TMP/runs.txt" <<'PYEOF'
import re, statistics as st, sys
inproc, srv = {}, {}
for line in open(sys.argv[1]):
    w = line.split()
    if len(w) > 7 and w[2] == "inproc":
        inproc.setdefault(int(w[1]), {})[w[3]] = float(w[7])
    elif len(w) >= 18 and w[2].startswith("server"):
        d = dict(zip(w[4::2], w[5::2]))
        srv.setdefault((w[2], w[3]), {})[int(w[1])] = d
med = st.median
for t in ("t1", "t2"):
    xs = [v[t] for v in inproc.values() if t in v]
    if xs:
        print("median in-process %s: %.0f QPS" % (t, med(xs)))
for (name, c), rounds in sorted(srv.items()):
    rps = {r: float(d["rps"]) for r, d in rounds.items()}
    out = "median %s %s: %.0f QPS" % (name, c, med(rps.values()))
    rr = [rps[r] / inproc[r]["t1"] for r in rps if "t1" in inproc.get(r, {})]
    if rr:
        out += ", %.2fx in-process 1 thread" % med(rr)
    base = srv.get((name, "c1"))
    if c != "c1" and base:
        out += ", %.2fx its 1-connection QPS" % med([rps[r] / float(base[r]["rps"]) for r in rps if r in base])
    out += ", server %s us CPU/request, wrk %s us, p50 %s ms, p99 %s ms, non-2xx %d" % (
        med([float(d["srv_us/req"]) for d in rounds.values()]), med([float(d["wrk_us/req"]) for d in rounds.values()]),
        med([float(d["p50"]) for d in rounds.values()]), med([float(d["p99"]) for d in rounds.values()]),
        sum(int(d["non2xx"]) for d in rounds.values()))
    print(out)
PYEOF
