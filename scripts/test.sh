#!/bin/sh
# Quick start, command 2: install build dependencies, build with
# AddressSanitizer + UndefinedBehaviorSanitizer, run every test suite, then
# build the fuzzers with clang and run their smoke and replay tests.
set -eu
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
[ -f build/build.ninja ] || meson setup build
meson compile -C build
meson test -C build --print-errorlogs "$@"
# The libFuzzer build (clang): short smoke runs and corpus replays.
[ -f build-fuzz/build.ninja ] || CC=clang meson setup build-fuzz -Dfuzz=true
meson compile -C build-fuzz
meson test -C build-fuzz --suite fuzz --print-errorlogs
