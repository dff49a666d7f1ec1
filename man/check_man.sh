#!/bin/sh
# check_man.sh PAGE... - meson test (suite lint): every manual page renders
# with groff's man macros and all warnings on (-ww), both typeset and at
# terminal width (-Tutf8, where a line that cannot be broken is reported).
# Any diagnostic fails the test. Without groff the test is skipped (77)
# loudly; scripts/install-deps.sh installs it (Debian package "groff-base").
set -eu

if ! command -v groff >/dev/null 2>&1; then
	echo "*** SKIPPED: groff not found; the manual pages are NOT checked." >&2
	echo "*** Install the Debian package 'groff-base' (scripts/install-deps.sh)." >&2
	exit 77
fi
[ $# -gt 0 ] || { echo "usage: $0 PAGE..." >&2; exit 2; }

failed=0
for page in "$@"; do
	for device in ps utf8; do
		# groff exits 0 on warnings: judge by what it prints.
		output=$(LC_ALL=C.UTF-8 groff -man -ww -z -T"$device" "$page" 2>&1) || {
			echo "$page (-T$device): groff failed" >&2
			failed=1
		}
		if [ -n "$output" ]; then
			printf '%s (-T%s):\n%s\n' "$page" "$device" "$output" >&2
			failed=1
		fi
	done
	# The sections every page must have.
	for section in NAME SYNOPSIS DESCRIPTION OPTIONS "EXIT STATUS" EXAMPLES "SEE ALSO"; do
		if ! grep -q "^\.SH \"*$section\"*\$" "$page"; then
			echo "$page: no .SH $section" >&2
			failed=1
		fi
	done
	[ "$failed" -ne 0 ] || echo "$page: OK"
done
exit "$failed"
