#!/bin/sh
# Runs the end-to-end test binary inside the test VM (busybox sh), the way
# tests/e2e/vm.rs asks: the binary and udpsend are copied to /test, skbtrace
# is on PATH. CI is set so that no test skips. The first line printed is
# skbtrace's checksum, for vm.rs to check that it ran the dist binary.
# Usage: e2e.sh BACKEND TEST_BINARY [LIBTEST ARGS...]
#   BACKEND: what the scenarios expect (kprobe, kprobe-multi, tracepoint)

backend=$1
binary=$2
shift 2
sha256sum /usr/local/bin/skbtrace || exit 1
export CI=true RUST_BACKTRACE=1 \
    SKBTRACE_BIN=/usr/local/bin/skbtrace SKBTRACE_UDPSEND=/test/udpsend SKBTRACE_E2E_BACKEND="$backend"
exec "/test/$binary" --test-threads=1 "$@"
