#!/bin/sh
# Run the server under valgrind --leak-check=full, drive every kind of request
# once, stop it with SIGTERM and fail unless valgrind reports 0 bytes
# definitely lost and 0 errors. Part of `make test-long`. Runs twice: the
# default threading (a thread per connection) and the epoll pool
# (VG_MODES overrides the list; "-" means no extra flag).
set -eu
VG_MODES=${VG_MODES:-"- --threads=2"}
for mode in $VG_MODES; do
[ "$mode" = - ] && mode=
echo "valgrind-smoke: server ${mode:-(thread per connection)}"
BUILD=${DVECDB_BUILD:-build}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# Only definite leaks count as errors (the bar: 0 bytes definitely lost):
# with a thread per connection valgrind reports one "possibly lost" 320-byte
# block, glibc's TLS vector (allocate_dtv) of a finished libmicrohttpd
# connection thread whose stack glibc keeps cached for reuse. It is printed,
# and any memory error (invalid read/write, uninitialised use) still fails.
valgrind --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=99 --log-file="$tmp/vg.log" \
    "$BUILD/vectordb-server" --data-dir "$tmp/data" --host 127.0.0.1 --rest-port "$port" $mode \
    >"$tmp/server.log" 2>&1 &
pid=$!
base="http://127.0.0.1:$port"
i=0
until curl -sf "$base/readyz" >/dev/null; do
    i=$((i + 1)); [ $i -lt 600 ] || { echo "valgrind-smoke: server not ready" >&2; cat "$tmp/server.log"; exit 1; }
    sleep 0.1
done
c() { curl -s -o /dev/null -w '%{http_code} ' "$@"; }
c -X POST "$base/collections" -d '{"name":"vg","dimension":4,"distance_metric":"Cosine"}'
c -X POST "$base/collections/vg/vectors" -d '{"id":"a","data":[1,2,3,4],"metadata":{"k":"v"}}'
c -X POST "$base/collections/vg/vectors/batch" -d '{"vectors":[{"id":"b","data":[1,0,0,0]},{"data":[0,1,0,0]}]}'
c -X POST "$base/collections/vg/search" -d '{"vector":[1,2,3,4],"limit":2,"filter":{"k":"v"}}'
c "$base/collections/vg/vectors/a"
c -X PUT "$base/collections/vg/vectors/a" -d '{"data":[4,3,2,1]}'
c -X DELETE "$base/collections/vg/vectors/b"
c "$base/collections"; c "$base/stats"; c "$base/metrics"; c "$base/openapi.json"
c -X POST "$base/collections/vg/backup"
c "$base/collections/vg/backups"
c -X DELETE "$base/collections/vg"
c "$base/collections/deleted"
c -X POST "$base/collections/vg/restore" -d '{}'
c -X POST "$base/collections" -d '{bad json'
c -X DELETE "$base/collections/vg/hard-delete"
echo
kill -TERM $pid
wait $pid || { echo "valgrind-smoke: server exit code $?" >&2; cat "$tmp/vg.log"; exit 1; }
grep -E "definitely lost|ERROR SUMMARY" "$tmp/vg.log"
grep -q "definitely lost: 0 bytes" "$tmp/vg.log" || grep -q "All heap blocks were freed" "$tmp/vg.log" || {
    echo "valgrind-smoke: leaks found" >&2; cat "$tmp/vg.log"; exit 1; }
grep -q "ERROR SUMMARY: 0 errors" "$tmp/vg.log" || { echo "valgrind-smoke: errors" >&2; cat "$tmp/vg.log"; exit 1; }
rm -rf "$tmp/data" "$tmp/vg.log"
done
echo "valgrind-smoke: ok"
