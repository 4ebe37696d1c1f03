#!/bin/sh
# Run each test binary given; print its output; fail if any fails.
set -u
fail=0; n=0
for t in "$@"; do
    n=$((n + 1))
    if ! "$t"; then
        echo "FAILED: $t" >&2
        fail=$((fail + 1))
    fi
done
echo "run-tests: $n binaries, $fail failed"
[ "$fail" -eq 0 ]
