#!/bin/sh
# Quick start, command 1: install what is needed, build, and run the main
# job: a real Linux guest under QEMU with vsockmuxd attached, host and guest
# programs talking both ways, vsockctl conns while data flows, clean stop.
# (The same story without a VM, through the virtual guest:
#  ./build/demo/vsockmux-demo with VSOCKMUXD and VSOCKCTL set, or
#  `meson compile -C build demo`.)
set -eu
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
[ -f build/build.ninja ] || meson setup build
meson compile -C build
exec tests/e2e/demo.sh "$PWD/build/vsockmuxd" "$PWD/build/cli/vsockctl"
