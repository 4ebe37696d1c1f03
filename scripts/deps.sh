#!/bin/sh
# Install every Debian package the build, the tests and the benchmarks need.
# Idempotent: runs `apt-get update` and `apt-get install` only when something
# is missing. As root it installs; otherwise it prints the one command to run
# and fails, so a missing package is never discovered half-way through a test.
set -eu

PKGS="build-essential pkg-config clang libclang-rt-14-dev clang-format
libmicrohttpd-dev libjansson-dev libcurl4-openssl-dev libxxhash-dev libinih-dev
python3 python3-pytest python3-requests python3-numpy
libhnswlib-dev python3-hnswlib python3-faiss python3-matplotlib
dataset-fashion-mnist wrk curl strace valgrind"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "deps.sh: missing Debian packages:$missing" >&2
    echo "deps.sh: run as root:  apt-get update && apt-get install -y$missing" >&2
    exit 1
fi

echo "deps.sh: installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
