#!/bin/sh
# Install what building and testing vsockmux needs on Debian 12 (as root).
# Idempotent; used by scripts/test.sh, scripts/demo.sh and CI.
set -eu
packages="build-essential meson ninja-build pkg-config protobuf-c-compiler libprotobuf-c-dev libseccomp-dev libcap-dev libcmocka-dev libjson-c-dev cppcheck systemd groff-base qemu-system-x86 busybox-static socat clang libclang-rt-14-dev valgrind libsystemd-dev systemd-container debootstrap"
missing=""
for package in $packages; do
	dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $package"
done
if [ -n "$missing" ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "install-deps: missing packages:$missing (run as root)" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update
	apt-get install -y --no-install-recommends $missing
fi
# The real-guest suite downloads Debian's kernel package: needs package lists.
if [ "$(id -u)" = 0 ] && ! apt-cache show linux-image-amd64 >/dev/null 2>&1; then
	apt-get update
fi
