#!/bin/sh
# Quick start, command 2: install build dependencies, build with
# AddressSanitizer + UndefinedBehaviorSanitizer, run every test suite.
set -eu
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
[ -f build/build.ninja ] || meson setup build
meson compile -C build
meson test -C build --print-errorlogs "$@"
