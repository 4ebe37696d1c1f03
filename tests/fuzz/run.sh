#!/bin/sh
# run.sh TARGET SECONDS - run build-fuzz/fuzz_TARGET (libFuzzer) for SECONDS
# on tests/fuzz/corpus/TARGET/ (known crashers left out), writing new inputs
# to build-fuzz/new/TARGET/ and the libFuzzer output to
# build-fuzz/TARGET.log; writes one line
# "target seconds executions cov ft result date" to build-fuzz/summary.tsv,
# replacing that target's previous line (other targets' lines stay, so a
# subset run keeps the latest figures of every target; date is the UTC end
# of the run).
# A crasher is copied into the corpus as crash-<sha1> (so `make fuzz-replay`
# keeps replaying it) and the script fails. With FUZZ_MERGE=1 the new inputs
# that add coverage are merged into the corpus (-merge=1).
set -u
t=$1
secs=$2
B=build-fuzz
C=tests/fuzz/corpus/$t
S=$B/seed/$t
mkdir -p "$B/new/$t" "$B/artifacts/$t" "$C"
rm -f "$B/artifacts/$t"/*
# Known crashers (crash-*, leak-*, timeout-*, oom-*) stay out of the run, or
# libFuzzer would stop on the first one while loading; fuzz-replay keeps
# checking them. FUZZ_INCLUDE_CRASHERS=1 feeds them in too.
rm -rf "$S"
mkdir -p "$S"
for f in "$C"/*; do
    [ -f "$f" ] || continue
    case $(basename "$f") in
    crash-* | leak-* | timeout-* | oom-*) [ "${FUZZ_INCLUDE_CRASHERS:-}" = 1 ] || continue ;;
    esac
    cp "$f" "$S/"
done
dict=
[ -f "tests/fuzz/dict/$t.dict" ] && dict="-dict=tests/fuzz/dict/$t.dict"
maxlen=
[ -n "${FUZZ_MAX_LEN:-}" ] && maxlen="-max_len=$FUZZ_MAX_LEN"
# FUZZ_ARGS: extra libFuzzer flags. To look past a known leak run with
# ASAN_OPTIONS=detect_leaks=0 in the environment.
extra=${FUZZ_ARGS:-}

echo "fuzz: $t for ${secs}s (log: $B/$t.log)"
# -timeout: an input running 10 s counts as a hang (a crash).
"$B/fuzz_$t" -max_total_time="$secs" -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$B/artifacts/$t/" $dict $maxlen $extra "$B/new/$t" "$S" >"$B/$t.log" 2>&1
rc=$?

execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$B/$t.log" | tail -n 1)
cov=$(grep -o 'cov: [0-9]*' "$B/$t.log" | tail -n 1 | sed 's/cov: //')
ft=$(grep -o 'ft: [0-9]*' "$B/$t.log" | tail -n 1 | sed 's/ft: //')
result=ok
if [ $rc -ne 0 ]; then
    result="CRASH(rc=$rc)"
    for a in "$B/artifacts/$t"/*; do
        [ -f "$a" ] || continue
        name=$(basename "$a")
        case $name in
        crash-* | leak-* | timeout-* | oom-*) ;;
        *) name="crash-$name" ;;
        esac
        cp "$a" "$C/$name"
        echo "fuzz: $t: crasher saved as $C/$name" >&2
        result="$result $C/$name"
    done
    tail -n 60 "$B/$t.log" >&2
fi
when=$(date -u +%Y-%m-%dT%H:%MZ)
line=$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s' "$t" "$secs" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$result" "$when")
# Replace this target's line in place (or append it), through a temporary
# file and rename so an interrupted run never leaves a half-written summary.
touch "$B/summary.tsv"
awk -F '\t' -v t="$t" -v line="$line" '
    $1 == t { if (!done) print line; done = 1; next }
    { print }
    END { if (!done) print line }' "$B/summary.tsv" >"$B/summary.tsv.tmp.$$" &&
    mv "$B/summary.tsv.tmp.$$" "$B/summary.tsv"

if [ "${FUZZ_MERGE:-}" = 1 ] && [ $rc -eq 0 ]; then
    "$B/fuzz_$t" -merge=1 $maxlen "$C" "$B/new/$t" >"$B/$t.merge.log" 2>&1 ||
        echo "fuzz: $t: merge failed (see $B/$t.merge.log)" >&2
fi
[ $rc -eq 0 ]
