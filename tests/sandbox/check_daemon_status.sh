#!/bin/sh
# check_daemon_status.sh - a running vsockmuxd: the broker and the muxer
# both show "Seccomp: 2" (a filter), "NoNewPrivs: 1" and no effective or
# permitted capabilities in /proc/PID/status.
# Usage: check_daemon_status.sh VSOCKMUXD
set -u
daemon=$1
dir=$(mktemp -d) || exit 1
chmod 755 "$dir"
pid=
failures=0

cleanup() {
	if [ -n "$pid" ]; then
		kill -TERM "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	fi
	rm -rf "$dir"
}
trap cleanup EXIT

# field PID NAME: the value of "NAME:" in /proc/PID/status
field() {
	sed -n "s/^$2:[[:space:]]*//p" "/proc/$1/status"
}

check() {
	value=$(field "$2" "$3")
	if [ "$value" != "$4" ]; then
		echo "FAIL: $1 (pid $2): $3 is '$value', expected '$4'"
		failures=$((failures + 1))
	else
		echo "ok: $1 (pid $2): $3 $value"
	fi
}

"$daemon" --guest-cid 3 --socket "$dir/vhost.sock" --uds-path "$dir/vsock.sock" \
	--log-level debug > "$dir/log" 2>&1 &
pid=$!
tries=0
until grep -q 'sandbox: .* policy loaded' "$dir/log" 2>/dev/null &&
      [ "$(grep -c 'sandbox: .* policy loaded' "$dir/log")" -ge 2 ]; do
	tries=$((tries + 1))
	if [ $tries -gt 100 ] || ! kill -0 "$pid" 2>/dev/null; then
		echo "FAIL: the daemon did not load both filters; its log:"
		cat "$dir/log"
		exit 1
	fi
	sleep 0.1
done
muxer=$(cat "/proc/$pid/task/$pid/children")
if [ -z "$muxer" ]; then
	echo "FAIL: no muxer process under the broker (pid $pid)"
	exit 1
fi
for process in "broker $pid" "muxer $muxer"; do
	set -- $process
	check "$1" "$2" Seccomp 2
	check "$1" "$2" NoNewPrivs 1
	check "$1" "$2" CapEff 0000000000000000
	check "$1" "$2" CapPrm 0000000000000000
done
exit $((failures > 0))
