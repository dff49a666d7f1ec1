#!/bin/sh
# run_fuzz.sh - how the meson suite 'fuzz' runs one fuzzer.
#   smoke FUZZER SEED_DIR WORK_DIR DICT  a bounded run (15 s) that starts
#        from the checked-in seeds; new inputs go to WORK_DIR (in the build
#        tree), never into the source tree.
#   replay FUZZER SEED_DIR  every checked-in input once (regressions).
set -eu
mode=$1
fuzzer=$2
seeds=$3
case "$mode" in
smoke)
	work=$4
	dict=$5
	mkdir -p "$work"
	set -- -max_total_time=15 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
	[ -f "$dict" ] && set -- "$@" -dict="$dict"
	exec "$fuzzer" "$@" "$work" "$seeds"
	;;
replay)
	set -- "$seeds"/*
	[ -e "$1" ] || { echo "run_fuzz.sh: no inputs in $seeds" >&2; exit 1; }
	exec "$fuzzer" -timeout=10 -rss_limit_mb=2048 "$@"
	;;
*)
	echo "usage: run_fuzz.sh smoke|replay FUZZER SEED_DIR [WORK_DIR DICT]" >&2
	exit 2
	;;
esac
