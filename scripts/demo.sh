#!/bin/sh
# Quick start, command 1: install build dependencies, build, and run the main
# job: vsockmuxd carrying data between host programs and the virtual guest.
set -eu
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
[ -f build/build.ninja ] || meson setup build
meson compile -C build
VSOCKMUXD="$PWD/build/vsockmuxd" VSOCKCTL="$PWD/build/cli/vsockctl" exec ./build/demo/vsockmux-demo
