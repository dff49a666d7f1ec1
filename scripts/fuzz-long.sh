#!/bin/sh
# fuzz-long.sh - a long fuzzing campaign: every fuzzer (or the ones named)
# for SECONDS each, one after the other, under nice, with a work corpus
# outside the source tree (default /var/tmp/vsockmux-fuzz) seeded from
# tests/fuzz/corpus. Prints per fuzzer: executions, coverage (cov: edges),
# wall time, CPU seconds (with /usr/bin/time, package 'time'), corpus size. Crashes land in WORK_DIR/artifacts/.
#
# usage: scripts/fuzz-long.sh SECONDS [WORK_DIR [FUZZER...]]
# Needs the fuzz build: CC=clang meson setup build-fuzz -Dfuzz=true &&
# meson compile -C build-fuzz
set -eu
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: $0 SECONDS [WORK_DIR [FUZZER...]]" >&2; exit 2; }
seconds=$1
work=${2:-/var/tmp/vsockmux-fuzz}
[ $# -ge 2 ] && shift 2 || shift $#
fuzzers=${*:-"fuzz_virtq fuzz_packets fuzz_vhost_user fuzz_connect_line fuzz_ipc fuzz_control_request fuzz_policy"}
bin=build-fuzz/tests/fuzz
# A smaller quarantine keeps the muxer fuzzers' RSS well under the limit.
export ASAN_OPTIONS="${ASAN_OPTIONS:-quarantine_size_mb=64}"
mkdir -p "$work/artifacts"
printf '%-22s %12s %8s %8s %8s %8s %s\n' fuzzer executions cov wall_s cpu_s corpus result
timer=
[ -x /usr/bin/time ] && timer="/usr/bin/time -f %U+%S -o"
for name in $fuzzers; do
	[ -x "$bin/$name" ] || { echo "$0: $bin/$name not built" >&2; exit 1; }
	mkdir -p "$work/$name"
	log="$work/$name.log"
	set -- -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -close_fd_mask=3 \
		-artifact_prefix="$work/artifacts/$name-"
	[ -f "tests/fuzz/$name.dict" ] && set -- "$@" -dict="tests/fuzz/$name.dict"
	start=$(date +%s)
	rm -f "$log.cpu"
	# shellcheck disable=SC2086 # $timer is a command prefix or nothing
	if nice -n 10 ${timer:+$timer "$log.cpu"} "$bin/$name" "$@" "$work/$name" \
		"tests/fuzz/corpus/$name" >"$log" 2>&1; then
		result=ok
	else
		result="FAILED (see $log)"
	fi
	wall=$(( $(date +%s) - start ))
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
	corpus=$(find "$work/$name" -type f | wc -l)
	cpu=?
	[ -s "$log.cpu" ] && cpu=$(tail -n 1 "$log.cpu" | awk -F+ '{printf "%.0f", $1 + $2}')
	printf '%-22s %12s %8s %8s %8s %8s %s\n' "$name" "${execs:-?}" "${cov:-?}" "$wall" \
		"$cpu" "$corpus" "$result"
done
