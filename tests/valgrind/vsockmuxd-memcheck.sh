#!/bin/sh
# vsockmuxd-memcheck.sh - the daemon under valgrind memcheck, for the
# system tests' VSOCKMUXD in the valgrind suite (a build without
# sanitizers). Both processes are checked (the muxer is a fork, so
# --trace-children is not needed for it). --no-sandbox: seccomp filters
# would refuse valgrind's own system calls.
#
# --freelist-vol: memcheck holds freed blocks back (20 MB by default) to
# catch use after free; 2 MB keeps the daemon's RSS, which the tests bound,
# about what it is without valgrind.
#
# Every error (invalid access, uninitialised use, a definitely lost block
# at exit) is printed between VALGRIND-ERROR markers on the daemon's
# stderr, which the system-test harness counts as a failure, as it counts
# sanitizer reports.
# Env: VSOCKMUXD_REAL  the daemon binary (meson sets it)
set -eu
exec valgrind --tool=memcheck --quiet \
	--error-markers=VALGRIND-ERROR-BEGIN,VALGRIND-ERROR-END \
	--leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite \
	--freelist-vol=2000000 --vgdb=no --child-silent-after-fork=no \
	--suppressions="$(dirname "$0")/vsockmuxd.supp" \
	"$VSOCKMUXD_REAL" --no-sandbox "$@"
