#!/bin/sh
# bench/run.sh - the benchmarks of issue 2 item 7: d-vecDB's HNSW against
# hnswlib (compiled here, -O3 -march=native), python3-hnswlib and FAISS
# IndexHNSWFlat, on Fashion-MNIST (60,000 x 784, Euclidean) and a synthetic
# clustered 1536-dim set (20,000, cosine); M=16, ef_construction=200.
#
#   make bench                 full run; rewrites docs/benchmarks.md and
#                              bench/results/ (plot, raw JSON, perf profiles)
#   BENCH_SMOKE=1 bench/run.sh tiny sizes, everything exercised, < 1 minute;
#                              output only under bench/out/smoke (make test)
#
# Datasets and binaries go to bench/out/ (gitignored), written once and reused.
# The body is one function, parsed whole before it runs, so editing this file
# during a (long) run cannot derail it.
main() {
set -eu
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
SMOKE=${BENCH_SMOKE:-0}
EFS=10,20,40,80,120,200,400
SEARCH_EF=40  # engine and server search: recall@10 > 0.99 on Fashion-MNIST
THREADS=1,2
if [ "$SMOKE" = 1 ]; then
    OUT=bench/out/smoke
    REPS=1
    CHUNK=250
else
    OUT=bench/out
    REPS=3
    CHUNK=2000
fi
BIN=bench/out/bin
RES=$OUT/results
mkdir -p "$BIN" "$RES"
rm -f "$RES"/*.json "$RES"/section-*.md
t_start=$(date +%s)
load=$(cut -d' ' -f1-3 /proc/loadavg)

# 1. our library (BENCH_LIB=path: use that archive instead of running make;
#    BENCH_SERVER=path: that server binary instead of build/vectordb-server),
#    then the two native drivers (rebuilt only when stale)
LIB=${BENCH_LIB:-build/libdvecdb.a}
[ -n "${BENCH_LIB:-}" ] || make -s build/libdvecdb.a
stale() { # stale OUTPUT INPUT... : 0 if OUTPUT is missing or older than any INPUT
    out=$1; shift
    [ -e "$out" ] || return 0
    for f in "$@"; do [ "$f" -nt "$out" ] && return 0; done
    return 1
}
# the standalone drivers serve the full run's profiles only
if [ "$SMOKE" != 1 ]; then
    if stale $BIN/dvecdb_bench bench/dvecdb_bench.c bench/bench_common.h "$LIB" src/hnsw.h; then
        cc -std=c11 -O3 -g -Wall -Wextra -Werror -D_GNU_SOURCE -Iinclude -Isrc -pthread \
            bench/dvecdb_bench.c "$LIB" -o $BIN/dvecdb_bench -ljansson -lxxhash -lm
    fi
    if stale $BIN/hnswlib_bench bench/hnswlib_bench.cpp bench/bench_common.h /usr/include/hnswlib/hnswalg.h; then
        g++ -std=c++17 -O3 -march=native -g -Wall -Wextra -Werror -pthread -Ibench \
            bench/hnswlib_bench.cpp -o $BIN/hnswlib_bench
    fi
fi
if stale $BIN/pair_bench bench/pair_bench.cpp bench/bench_common.h "$LIB" src/hnsw.h /usr/include/hnswlib/hnswalg.h; then
    g++ -std=c++17 -O3 -march=native -g -Wall -Wextra -Werror -pthread -Ibench -Iinclude -Isrc \
        bench/pair_bench.cpp "$LIB" -o $BIN/pair_bench -lm
fi

if stale $BIN/dist_bench bench/dist_bench.cpp bench/bench_common.h "$LIB" src/dist.h; then
    g++ -std=c++17 -O3 -march=native -g -Wall -Wextra -Werror -pthread -Ibench -Iinclude -Isrc \
        bench/dist_bench.cpp "$LIB" -o $BIN/dist_bench -lm
fi

if stale $BIN/engine_bench bench/engine_bench.c bench/bench_common.h "$LIB" include/dvecdb.h; then
    cc -std=c11 -O3 -g -Wall -Wextra -Werror -D_GNU_SOURCE -Iinclude -Ibench -pthread \
        bench/engine_bench.c "$LIB" -o $BIN/engine_bench -ljansson -lxxhash -lm
fi

# Durable ingest (fsync always, and never for contrast) of 1536-dim vectors in
# batches of 256 vs dd's fdatasync'd sequential write on the same disk; reopen
# of the Fashion-MNIST collection vs reading its files; in-process search QPS.
engine_benches() {
    E=$RES/engine.jsonl
    : >"$E"
    if [ "$SMOKE" = 1 ]; then NI=500; DDMB=16; SECS=0.5; else NI=20000; DDMB=512; SECS=5; fi
    echo "== engine: dd conv=fdatasync, ${DDMB} MB" >&2
    t0=$(date +%s.%N)
    dd if=/dev/zero of="$OUT/dd.tmp" bs=1M count=$DDMB conv=fdatasync status=none
    t1=$(date +%s.%N)
    rm -f "$OUT/dd.tmp"
    $PY -c "import sys; t=float(sys.argv[2])-float(sys.argv[1]); \
print('{\"what\":\"dd\",\"mb\":%s,\"seconds\":%.3f,\"mb_per_s\":%.1f}' % (sys.argv[3], t, int(sys.argv[3])*1.048576/t))" \
        "$t0" "$t1" "$DDMB" >>"$E"
    for pol in always never; do
        echo "== engine: ingest $NI x 1536, batches of 256, fsync $pol" >&2
        rm -rf "$OUT/engine-ingest"
        $BIN/engine_bench ingest "$OUT/engine-ingest" "$OUT/synth1536" $pol $NI 256 >>"$E"
    done
    rm -rf "$OUT/engine-ingest" "$OUT/engine-db"
    echo "== engine: load Fashion-MNIST into a collection, reopen it" >&2
    $BIN/engine_bench load "$OUT/engine-db" "$OUT/fmnist" fmnist euclidean >>"$E"
    $BIN/engine_bench reopen "$OUT/engine-db" fmnist >>"$E"
    for t in 1 2; do
        echo "== engine: in-process search, ef $SEARCH_EF, $t thread(s)" >&2
        $BIN/engine_bench search "$OUT/engine-db" fmnist "$OUT/fmnist" $SEARCH_EF $t $SECS >>"$E"
    done
}

# The server on the same data directory, searched with wrk at 1/16/64
# connections (2 wrk threads; wrk shares the machine's cores with the server).
server_bench() {
    W=$RES/server.jsonl
    : >"$W"
    SERVER=${BENCH_SERVER:-build/vectordb-server}
    if [ ! -x "$SERVER" ] || ! command -v wrk >/dev/null 2>&1; then
        echo "bench: no build/vectordb-server or no wrk (Debian package wrk): server benchmark skipped" >&2
        return 0
    fi
    if [ "$SMOKE" = 1 ]; then DUR=1; else DUR=10; fi
    $PY -c "
import sys, json, numpy as np
raw = np.fromfile(sys.argv[1], dtype=np.int32); d = int(raw[0])
q = raw.reshape(-1, d + 1)[:, 1:].copy().view(np.float32)
with open(sys.argv[2], 'w') as f:
    for v in q:
        f.write(json.dumps({'vector': [float(x) for x in v], 'limit': 10, 'ef_search': int(sys.argv[3])}) + '\n')
" "$OUT/fmnist.query.fvecs" "$OUT/search-bodies.txt" $SEARCH_EF
    port=$($PY -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
    "$SERVER" --data-dir "$OUT/engine-db" --host 127.0.0.1 --rest-port "$port" --log-level warn \
        >"$OUT/server.log" 2>&1 &
    spid=$!
    up=0
    # /readyz, not /health: the server answers 503 until the data dir is open
    # (the first published run measured those 503s as search throughput)
    for _ in $(seq 1 600); do
        if $PY -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/readyz', timeout=1)" \
            2>/dev/null; then up=1; break; fi
        sleep 0.1
    done
    if [ $up = 1 ]; then
        for c in 1 16 64; do
            th=2; [ $c = 1 ] && th=1
            echo "== server: wrk $c connection(s), ${DUR}s" >&2
            r=$(wrk -t$th -c$c -d${DUR}s -s bench/wrk_search.lua "http://127.0.0.1:$port" -- \
                "$OUT/search-bodies.txt" /collections/fmnist/search | tail -1)
            [ -n "$r" ] || { echo "bench: wrk failed" >&2; continue; }
            echo "{\"connections\":$c,\"ef\":$SEARCH_EF,\"wrk\":$r}" >>"$W"
            case "$r" in *'"non2xx":0,'*) ;; *) echo "bench: server answered errors: $r (see $OUT/server.log)" >&2; bad=1 ;; esac
        done
    else
        echo "bench: server did not come up (see $OUT/server.log)" >&2
    fi
    kill $spid 2>/dev/null || true
    wait $spid 2>/dev/null || true
    [ $up = 1 ] && [ "${bad:-0}" = 0 ]
}

# 2. the datasets, once (prep.py skips what is up to date)
if [ "$SMOKE" = 1 ]; then $PY bench/prep.py --smoke --out "$OUT"; else $PY bench/prep.py --out "$OUT"; fi

# 3. the distance kernels alone, then every system on every dataset, one after the other (never concurrently)
echo "== distance kernels" >&2
if [ "$SMOKE" = 1 ]; then KCALLS=5000; else KCALLS=200000; fi
$BIN/dist_bench $KCALLS >"$RES/kernels.json"
for spec in fmnist:euclidean synth1536:cosine; do
    ds=${spec%%:*}
    metric=${spec#*:}
    data=$OUT/$ds
    cp "$data.json" "$RES/$ds.json"
    echo "== $ds: d-vecDB and hnswlib (native), interleaved" >&2
    $BIN/pair_bench "$data" "$metric" $EFS $REPS $THREADS $CHUNK >"$RES/$ds.pair.json"
    echo "== $ds: python3-hnswlib" >&2
    $PY bench/py_bench.py --system hnswlib-py "$data" "$metric" $EFS $REPS $THREADS >"$RES/$ds.hnswlib-py.json"
    echo "== $ds: FAISS" >&2
    $PY bench/py_bench.py --system faiss "$data" "$metric" $EFS $REPS $THREADS >"$RES/$ds.faiss.json"
done

# 4. the engine through include/dvecdb.h, and the server through HTTP
engine_benches
server_bench

# 3. Section benchmarks, each its own script (bench/section_*.sh OUT RES SMOKE):
#    each writes its raw results and a Markdown fragment $RES/section-<name>.md
#    that report.py appends to docs/benchmarks.md. A failing section fails the run.
for sec in bench/section_*.sh; do
    [ -e "$sec" ] || continue
    echo "== section: $sec" >&2
    sh "$sec" "$OUT" "$RES" "$SMOKE"
done

# 5. tables and plot
if [ "$SMOKE" = 1 ]; then
    $PY bench/report.py "$RES" "$OUT/results.md" "$OUT/recall-qps.png" --check
    cat "$OUT/results.md"
    echo "bench smoke: ok in $(($(date +%s) - t_start)) s (tables: $OUT/results.md)"
    exit 0
fi

# 6. full run: where the time goes (flat profile of build + search, both
#    native drivers, same dataset), kept beside the results for docs/benchmarks.md
mkdir -p bench/results
rm -f bench/results/*.json bench/results/*.jsonl
cp "$RES"/*.json "$RES"/*.jsonl bench/results/
cp "$RES"/section-*.md bench/results/ 2>/dev/null || true
if command -v perf >/dev/null 2>&1; then
    for drv in dvecdb hnswlib; do
        # whole run (build + search), then the search phase alone: the driver
        # prints its CLOCK_MONOTONIC bounds, perf records on the same clock
        perf record -q -k CLOCK_MONOTONIC -F 999 -g -o "$OUT/perf.$drv.data" -- \
            $BIN/${drv}_bench "$OUT/fmnist" euclidean 80 20 1 >/dev/null 2>"$OUT/perf.$drv.log" || true
        span=$(awk '/^phase search/ {print $3 "," $4}' "$OUT/perf.$drv.log")
        {
            echo "# perf: $drv driver, Fashion-MNIST, 1-thread build then 20 passes at ef 80 (self time)"
            perf report -q -i "$OUT/perf.$drv.data" --stdio --no-children --sort symbol --percent-limit 1 \
                -g none 2>/dev/null
            echo "# search phase only ($span)"
            perf report -q -i "$OUT/perf.$drv.data" --stdio --no-children --sort symbol --percent-limit 1 \
                -g none --time "$span" 2>/dev/null
        } | sed 's/[[:space:]]*$//' | grep -v '^$' >bench/results/perf-$drv-fmnist.txt || true
    done
else
    echo "bench: perf not found (Debian package linux-perf): no profiles" >&2
fi
BENCH_DATE="$(date -u '+%Y-%m-%d %H:%M UTC')" BENCH_GIT="$(git rev-parse --short HEAD)" BENCH_LOAD="$load" \
BENCH_CC="$(cc --version | head -1); $(g++ --version | head -1)" \
BENCH_SIMD="$($PY -c 'import os,sys; print(os.environ.get("DVECDB_SIMD") or "best (avx512 here)")')" \
BENCH_HNSWLIB="$(dpkg-query -W -f '${Version}' libhnswlib-dev 2>/dev/null || echo '?')" \
BENCH_FAISS="$(dpkg-query -W -f '${Version}' python3-faiss 2>/dev/null || echo '?')" \
    $PY bench/report.py bench/results docs/benchmarks.md bench/results/recall-qps.png --doc
echo "bench: done in $(($(date +%s) - t_start)) s; see docs/benchmarks.md"
}
main "$@"
