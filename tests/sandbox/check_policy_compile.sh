#!/bin/sh
# check_policy_compile.sh - policy_compile rejects bad policies with a
# "file:line: message" and a non-zero exit, and accepts a good one; files
# merged into one table (t=base.policy t=FILE, as common.policy is merged
# into the muxer's and the broker's) keep each rule once.
# Usage: check_policy_compile.sh POLICY_COMPILE FIXTURE_DIR ARCH
set -u
compile=$1
dir=$2
arch=$3
failures=0
out=$(mktemp -d) || exit 1
trap 'rm -rf "$out"' EXIT

# report STATUS LABEL: "ok: LABEL" for status 0, else "FAIL: LABEL" with
# policy_compile's stderr, counted.
report() {
	if [ "$1" -eq 0 ]; then
		echo "ok: $2"
	else
		echo "FAIL: $2:"
		cat "$out/stderr"
		failures=$((failures + 1))
	fi
}

# expect_failure LABEL PATTERN ARG...: policy_compile --arch ARCH ARG...
# fails, and its first report line matches the grep pattern PATTERN.
expect_failure() {
	label=$1
	pattern=$2
	shift 2
	if "$compile" --arch "$arch" "$@" > "$out/stdout" 2> "$out/stderr"; then
		echo "FAIL: $label was accepted"
		failures=$((failures + 1))
		return
	fi
	if ! head -n 1 "$out/stderr" | grep -q "$pattern"; then
		echo "FAIL: $label: expected \"$pattern\", got:"
		cat "$out/stderr"
		failures=$((failures + 1))
		return
	fi
	echo "ok: $label -> $(head -n 1 "$out/stderr")"
}

# expect_error FILE LINE PATTERN: fails with "FILE:LINE: ...PATTERN..."
expect_error() {
	expect_failure "$1" "^$dir/$1:$2: .*$3" "t=$dir/$1"
}

# expect_merge_error FILE LINE PATTERN: base.policy then FILE in one table
# fails with "FILE:LINE: ...PATTERN...".
expect_merge_error() {
	expect_failure "base.policy + $1" "^$dir/$1:$2: .*$3" \
		"t=$dir/base.policy" "t=$dir/$1"
}

expect_error unknown_syscall.policy 3 "unknown syscall 'sendfilez'"
expect_error syntax_error.policy 4 "expected '=='"
expect_error missing_why.policy 2 "without a '# why' comment"
expect_error unknown_constant.policy 2 "unknown constant 'AF_VSOCKS'"
expect_error bad_argument.policy 3 "no such argument 'arg6'"
expect_error duplicate_argument.policy 2 "tested twice"

# Merged files: a rule in the base and in the file merged after it is an
# error (the base must stay its only copy), so is a file merged twice, an
# unconditional rule that would void the base's condition, and a base
# file that does not exist.
expect_merge_error repeats_base.policy 3 \
	"duplicate of the rule at $dir/base.policy:2"
expect_merge_error unconditional_over_base.policy 3 \
	"mmap has an unconditional rule and a conditional one ($dir/base.policy:3)"
expect_merge_error base.policy 2 "duplicate of the rule at $dir/base.policy:2"
expect_failure "a missing base file" "^$dir/no_such_base.policy: " \
	"t=$dir/no_such_base.policy" "t=$dir/good.policy"
# Tables are merged separately: the same base in two tables is fine.
"$compile" --arch "$arch" --source "$out/m.c" --header "$out/m.h" \
		"a=$dir/base.policy" "a=$dir/extends_base.policy" \
		"b=$dir/base.policy" 2> "$out/stderr" &&
	grep -q 'policy_table_a;' "$out/m.h" && grep -q 'policy_table_b;' "$out/m.h" &&
	[ "$(grep -c 'extern const struct policy_table' "$out/m.h")" = 2 ] &&
	grep -q '"read", "base.policy", 2,' "$out/m.c" &&
	grep -q '"write", "extends_base.policy", 2,' "$out/m.c" &&
	grep -Eq '^	rules_a, 4, 3,$' "$out/m.c" &&
	grep -Eq '^	rules_b, 2, 2,$' "$out/m.c"
report $? "base.policy merged into two tables"

"$compile" --arch "$arch" --source "$out/t.c" --header "$out/t.h" \
		"good=$dir/good.policy" 2> "$out/stderr" &&
	grep -q 'policy_table_good' "$out/t.h" &&
	grep -q 'POLICY_VALUE_PEER_PID' "$out/t.c"
report $? "good.policy compiled"
exit $((failures > 0))
