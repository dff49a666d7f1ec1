#!/bin/sh
# verify_unit.sh UNIT VSOCKMUXD - meson test (suite lint): systemd-analyze
# verify on the generated vsockmuxd@.service, as instance vsockmuxd@test.
#
# systemd-analyze checks that ExecStart's binary exists, so the unit is
# copied to a temporary directory with ExecStart pointing at the built
# vsockmuxd (everything else unchanged). Any line of output that names the
# unit, or a non-zero exit, fails the test. Without systemd-analyze the
# test is skipped (77) loudly; scripts/install-deps.sh installs it
# (Debian package "systemd").
set -eu

if [ $# -ne 2 ]; then
	echo "usage: $0 GENERATED_UNIT VSOCKMUXD_BINARY" >&2
	exit 2
fi
unit=$1
binary=$2

if ! command -v systemd-analyze >/dev/null 2>&1; then
	echo "*** SKIPPED: systemd-analyze not found; the unit is NOT verified." >&2
	echo "*** Install the Debian package 'systemd' (scripts/install-deps.sh)." >&2
	exit 77
fi
[ -f "$unit" ] || { echo "verify_unit: no unit file $unit" >&2; exit 1; }
[ -x "$binary" ] || { echo "verify_unit: $binary is not an executable" >&2; exit 1; }
case $binary in
/*) ;;
*) binary=$(pwd)/$binary ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
instance=vsockmuxd@test.service

# The unit must start exactly one binary, from an absolute path.
count=$(grep -c '^ExecStart=/[^ ]*/vsockmuxd ' "$unit" || true)
if [ "$count" != 1 ]; then
	echo "verify_unit: expected one 'ExecStart=/.../vsockmuxd ...' line in $unit, found $count" >&2
	exit 1
fi
if grep -q '@[A-Z_]*@' "$unit"; then
	echo "verify_unit: unsubstituted @VARIABLE@ left in $unit:" >&2
	grep -n '@[A-Z_]*@' "$unit" >&2
	exit 1
fi
sed "s|^ExecStart=/[^ ]*/vsockmuxd |ExecStart=$binary |" "$unit" >"$work/$instance"

echo "systemd-analyze verify --man=no $instance (ExecStart=$binary)"
status=0
# SYSTEMD_LOG_COLOR keeps the output plain for the grep below.
(cd "$work" && SYSTEMD_LOG_COLOR=0 SYSTEMD_LOG_LEVEL=notice \
	systemd-analyze verify --man=no "$work/$instance") >"$work/output" 2>&1 || status=$?
cat "$work/output"
if grep -q -e 'vsockmuxd@' -e "$work" "$work/output"; then
	echo "verify_unit: FAILED: systemd-analyze has remarks about the unit (above)" >&2
	exit 1
fi
if [ "$status" -ne 0 ]; then
	echo "verify_unit: FAILED: systemd-analyze verify exited with $status" >&2
	exit 1
fi

# systemd ignores unknown capability names without a word (the set then
# silently shrinks), so check every name against its own table.
known=$(systemd-analyze capability 2>/dev/null | awk 'NR > 1 { print toupper($1) }')
if [ -z "$known" ]; then
	echo "verify_unit: FAILED: 'systemd-analyze capability' listed nothing" >&2
	exit 1
fi
for cap in $(sed -n 's/^CapabilityBoundingSet=//p' "$unit"); do
	if ! printf '%s\n' "$known" | grep -qx -- "$cap"; then
		echo "verify_unit: FAILED: unknown capability $cap in CapabilityBoundingSet=" >&2
		exit 1
	fi
done
echo "verify_unit: OK"
