#!/bin/sh
# check_policy_compile.sh - policy_compile rejects bad policies with a
# "file:line: message" and a non-zero exit, and accepts a good one.
# Usage: check_policy_compile.sh POLICY_COMPILE FIXTURE_DIR ARCH
set -u
compile=$1
dir=$2
arch=$3
failures=0
out=$(mktemp -d) || exit 1
trap 'rm -rf "$out"' EXIT

# expect_error FILE LINE PATTERN: fails with "FILE:LINE: ...PATTERN..."
expect_error() {
	file="$dir/$1"
	if "$compile" --arch "$arch" "t=$file" > "$out/stdout" 2> "$out/stderr"; then
		echo "FAIL: $1 was accepted"
		failures=$((failures + 1))
		return
	fi
	if ! grep -q "^$file:$2: .*$3" "$out/stderr"; then
		echo "FAIL: $1: expected \"$file:$2: ...$3...\", got:"
		cat "$out/stderr"
		failures=$((failures + 1))
		return
	fi
	echo "ok: $1 -> $(head -n 1 "$out/stderr")"
}

expect_error unknown_syscall.policy 3 "unknown syscall 'sendfilez'"
expect_error syntax_error.policy 4 "expected '=='"
expect_error missing_why.policy 2 "without a '# why' comment"
expect_error unknown_constant.policy 2 "unknown constant 'AF_VSOCKS'"
expect_error bad_argument.policy 3 "no such argument 'arg6'"
expect_error duplicate_argument.policy 2 "tested twice"

if "$compile" --arch "$arch" --source "$out/t.c" --header "$out/t.h" \
		"good=$dir/good.policy" 2> "$out/stderr" &&
	grep -q 'policy_table_good' "$out/t.h" &&
	grep -q 'POLICY_VALUE_PEER_PID' "$out/t.c"; then
	echo "ok: good.policy compiled"
else
	echo "FAIL: good.policy was rejected:"
	cat "$out/stderr"
	failures=$((failures + 1))
fi
exit $((failures > 0))
