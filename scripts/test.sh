#!/bin/sh
# Quick start, command 2: install build dependencies, build with
# AddressSanitizer + UndefinedBehaviorSanitizer, run every test suite, then
# build the fuzzers with clang and run their smoke and replay tests, then
# run the system tests again with the daemon under valgrind memcheck (a
# build without sanitizers). VSOCKMUX_SKIP_VALGRIND=1 leaves that last
# part out.
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
# Valgrind memcheck on both daemon processes (--no-sandbox).
if [ "${VSOCKMUX_SKIP_VALGRIND:-0}" != 1 ]; then
	[ -f build-valgrind/build.ninja ] ||
		meson setup build-valgrind -Db_sanitize=none -Dbuildtype=debugoptimized
	meson compile -C build-valgrind
	meson test -C build-valgrind --suite valgrind --print-errorlogs
fi
