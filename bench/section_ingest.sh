#!/bin/sh
# bench/section_ingest.sh OUT RES SMOKE - issue 6's ingest benchmark:
# vectordb-cli ingest of Fashion-MNIST (60,000 x 784) and the synthetic
# 20,000 x 1536 set, as a ratio of the server's own batch-insert throughput
# in the same run, without and with 5% injected faults (bench/ingest_bench.py
# says how). Writes RES/ingest.jsonl and RES/section-ingest.md; exits non-zero
# when a leg fails its checks (exact count, no duplicates, one retry per fault).
set -eu
cd "$(dirname "$0")/.."
OUT=$1
RES=$2
SMOKE=${3:-0}
# BENCH_SERVER / BENCH_CLI (as in run.sh): use those binaries instead of make's
[ -n "${BENCH_SERVER:-}" ] || make -s build/vectordb-server
[ -n "${BENCH_CLI:-}" ] || make -s build/vectordb-cli
if [ "$SMOKE" = 1 ]; then
    # tiny files, smaller batches (more requests), a higher fault rate so
    # faults do happen: every path runs, in a few seconds
    exec /usr/bin/python3 bench/ingest_bench.py --out "$OUT" --res "$RES" --smoke \
        --batch-size 32 --fault-rate 0.2 --turns 4
fi
exec /usr/bin/python3 bench/ingest_bench.py --out "$OUT" --res "$RES" --batch-size 256 --parallel 2 --fault-rate 0.05 --turns 6
