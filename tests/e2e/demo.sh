#!/bin/bash
# demo.sh - the main job, shown on a real guest: Debian's
# QEMU boots Debian's kernel with the e2e initramfs, its vhost-user-vsock-pci
# device served by a running vsockmuxd, and a narrated demonstration runs:
#   1. a host program connects to a guest program (CONNECT 5000), sends a line
#      and reads the reply;
#   2. a guest program connects to host port 6000 (the host listener on
#      <uds-path>_6000) and they exchange lines;
#   3. DEMO_BULK_MIB (default 128) MiB guest->host then host->guest on one
#      connection, content-checked, with `vsockctl conns` run once while the
#      data flows;
#   4. the guest powers itself off, vsockmuxd gets SIGTERM; exit 0.
#
# Usage: tests/e2e/demo.sh [VSOCKMUXD [VSOCKCTL]]
#        (defaults: build/vsockmuxd and build/cli/vsockctl in this checkout)
# Env:   E2E_ACCEL=kvm|tcg, DEMO_BULK_MIB, VSOCKMUX_E2E_CACHE, QEMU
# Needs what the e2e suite needs (tests/e2e/README.md): qemu-system-x86,
# busybox-static, static libc, and apt-get access to linux-image-amd64.
# It is a demo, not a test: a missing prerequisite is an error (exit 1) with
# the reason, never a skip.  Every wait is bounded; logs are kept on failure.
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
abspath() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
DAEMON=$(abspath "${1:-$TOP/build/vsockmuxd}")
VSOCKCTL=$(abspath "${2:-$TOP/build/cli/vsockctl}")
BULK=${DEMO_BULK_MIB:-128}
GUEST_CID=3
QEMU=${QEMU:-qemu-system-x86_64}
. "$HERE/lib.sh"

T_START=$(now)
say()  { printf '%s\n' "$*"; }
step() { printf '\n== %s\n' "$*"; }
ts()   { printf '[%5ss] ' "$(elapsed "$T_START" "$(now)")"; }
fail() {
    {
        echo
        echo "demo: ERROR: $*"
        [ -n "${DIR:-}" ] && [ -d "$DIR" ] && echo "demo: logs kept in $DIR"
    } >&2
    exit 1
}

[ -x "$DAEMON" ] || fail "no vsockmuxd binary at $DAEMON (build it: meson setup build && ninja -C build; or pass its path)"
[ -x "$VSOCKCTL" ] || fail "no vsockctl binary at $VSOCKCTL (pass its path as the second argument)"
e2e_qemu_ok || fail "cannot run the real guest: $E2E_WHY"

DIR=$(mktemp -d /tmp/vsockmux-demo.XXXXXX)
chmod 0711 "$DIR"      # vsockmuxd started as root drops to an unprivileged user
PIDS=""
trap cleanup EXIT
SERIAL=$DIR/serial.log
DLOG=$DIR/daemon.log
UDS=$DIR/vsock.sock
CTL=$UDS.ctl

say "vsockmux real-guest demo: QEMU + Debian's Linux kernel + vsockmuxd"
say "work dir $DIR (removed on success)"

step "1/6 Building the guest: Debian's kernel package (cached, unpacked, not installed) + a tiny initramfs"
e2e_build_guest
case $BI_RC in
    0) ;;
    77) cat "$DIR/build_initramfs.err" >&2
        fail "cannot build the guest: $(grep 'MISSING PREREQUISITE' "$DIR/build_initramfs.err" | tail -n1 | sed 's/.*PREREQUISITE: //')" ;;
    *) cat "$DIR/build_initramfs.err" >&2
       fail "initramfs build failed (exit $BI_RC)" ;;
esac
e2e_pick_accel
ts; say "kernel $KPKG; initramfs = busybox + modules (${MODULES% }) + guest_agent"
ts; say "accelerator: $ACCEL$([ "$ACCEL" = tcg ] && echo ' (software emulation, no KVM)')"

# What the guest's /init runs, in order (see build_initramfs.sh):
SCEN="listen:hello-h2g:5000:chat"           # guest program listens on vsock port 5000
SCEN="$SCEN,connect:hello-g2h:6000:chat"    # guest program connects to host port 6000
SCEN="$SCEN,listen:bulk:5001:bulk:$BULK"    # bulk transfer, host-initiated

step "2/6 Starting vsockmuxd, and a host program listening for the guest on port 6000"
# the host service the guest will connect to: vsockmuxd maps guest connects to
# port P onto the Unix socket <uds-path>_P
timeout 120 "$AGENT" host-listen hello-g2h "${UDS}_6000" chat > "$DIR/host-hello-g2h.log" 2>&1 &
LPID=$!; PIDS="$PIDS $LPID"
wait_file "$DIR/host-hello-g2h.log" '^E2E-READY' 10 $LPID || fail "host listener did not start: $(cat "$DIR/host-hello-g2h.log")"
ts; say "host program listening on ${UDS}_6000"
"$DAEMON" --guest-cid $GUEST_CID --socket "$DIR/vhost.sock" --uds-path "$UDS" \
    --log-level info > "$DLOG" 2>&1 &
DPID=$!; PIDS="$PIDS $DPID"
wait_file "$DLOG" 'info: ready' 10 $DPID || { cat "$DLOG" >&2; fail "vsockmuxd not ready within 10 s"; }
ts; say "\$ vsockmuxd --guest-cid $GUEST_CID --socket $DIR/vhost.sock --uds-path $UDS"
ts; say "vsockmuxd ready (pid $DPID); vsockctl's control socket: $CTL"

step "3/6 Booting the guest under QEMU with vhost-user-vsock-pci attached to vsockmuxd"
T0=$(now)
start_qemu "$SERIAL" "$SCEN"
wait_file "$SERIAL" '^E2E-BOOTED' 60 $QPID || {
    tail -n 20 "$DIR/qemu.log" "$SERIAL" >&2; fail "guest did not boot within 60 s"; }
ts; say "guest booted in $(elapsed "$T0" "$(now)") s (QEMU start -> guest /init ready)"
ts; say "guest: $(grep -a -m1 '^E2E-BOOT ' "$SERIAL" | tr -d '\r' | sed 's/^E2E-BOOT //')"
ts; say "guest: virtio-vsock driver bound to $(grep -a -m1 'E2E-INFO vsock device' "$SERIAL" | tr -d '\r' | awk '{print $4}')"

# chat_lines LOG NAME: the E2E-CHAT lines of one exchange, readable
chat_lines() { grep -a "^E2E-CHAT $2 " "$1" | tr -d '\r' | sed "s/^E2E-CHAT $2 /    /"; }

step "4/6 Host -> guest: a host program connects to the guest's port 5000 and sends a line"
wait_file "$SERIAL" '^E2E-READY hello-h2g[[:space:]]*$' 30 $QPID || fail "guest program never listened on port 5000"
ts; say "guest program listening on vsock port 5000; host program sends \"CONNECT 5000\" to $UDS"
timeout 30 "$AGENT" host-connect hello-h2g "$UDS" 5000 chat > "$DIR/host-hello-h2g.log" 2>&1
grep -q '^E2E-RESULT hello-h2g PASS' "$DIR/host-hello-h2g.log" || fail "host->guest exchange failed: $(cat "$DIR/host-hello-h2g.log")"
wait_file "$SERIAL" '^E2E-RESULT hello-h2g ' 10 $QPID
ts; say "vsockmuxd answered: $(sed -n "s/^E2E-INFO hello-h2g CONNECT 5000 -> '\(.*\)' after.*/\1/p" "$DIR/host-hello-h2g.log") (OK <its host-side port number>)"
chat_lines "$DIR/host-hello-h2g.log" hello-h2g | sed -n '1p'
chat_lines "$SERIAL" hello-h2g
chat_lines "$DIR/host-hello-h2g.log" hello-h2g | sed -n '2p'

step "5/6 Guest -> host: the guest program connects to host port 6000 and sends a line"
wait_file "$SERIAL" '^E2E-RESULT hello-g2h ' 30 $QPID || fail "guest->host exchange did not finish"
wait_file "$DIR/host-hello-g2h.log" '^E2E-RESULT hello-g2h ' 10 $LPID
grep -aq '^E2E-RESULT hello-g2h PASS' "$SERIAL" && grep -q '^E2E-RESULT hello-g2h PASS' "$DIR/host-hello-g2h.log" ||
    fail "guest->host exchange failed: $(grep -a 'hello-g2h' "$SERIAL" "$DIR/host-hello-g2h.log")"
ts; say "guest connect(CID 2, port 6000) -> vsockmuxd -> ${UDS}_6000"
chat_lines "$SERIAL" hello-g2h | sed -n '1p'
chat_lines "$DIR/host-hello-g2h.log" hello-g2h
chat_lines "$SERIAL" hello-g2h | sed -n '2p'

step "6/6 Bulk: $BULK MiB guest->host, then $BULK MiB host->guest, on one connection"
wait_file "$SERIAL" '^E2E-READY bulk[[:space:]]*$' 30 $QPID || fail "guest program never listened on port 5001"
timeout 120 "$AGENT" host-connect bulk "$UDS" 5001 bulk "$BULK" > "$DIR/host-bulk.log" 2>&1 &
BPID=$!; PIDS="$PIDS $BPID"
wait_file "$DIR/host-bulk.log" '^E2E-INFO bulk CONNECT' 10 $BPID || fail "bulk connection not established: $(cat "$DIR/host-bulk.log")"
ts; say "connected; data flowing. While it flows:"
sleep 0.1
say "\$ vsockctl --control-socket $CTL conns"
"$VSOCKCTL" --control-socket "$CTL" conns 2>&1 | sed 's/^/    /'
kill -0 $BPID 2>/dev/null || say "(note: the transfer had already finished; raise DEMO_BULK_MIB)"
n=0; while kill -0 $BPID 2>/dev/null && [ $n -lt 1200 ]; do sleep 0.1; n=$((n+1)); done
wait_file "$SERIAL" '^E2E-RESULT bulk ' 30 $QPID
grep -q '^E2E-RESULT bulk PASS' "$DIR/host-bulk.log" && grep -aq '^E2E-RESULT bulk PASS' "$SERIAL" ||
    fail "bulk transfer failed: $(grep -a '^E2E-RESULT bulk' "$SERIAL" "$DIR/host-bulk.log")"
grep -ah '^E2E-METRIC' "$DIR/host-bulk.log" "$SERIAL" | tr -d '\r' | sed 's/^E2E-METRIC /    /'
ts; say "both sides checked every byte: $(sed -n 's/^E2E-RESULT bulk PASS //p' "$DIR/host-bulk.log")"

step "Shutting down"
wait_file "$SERIAL" '^E2E-DONE' 30 $QPID || fail "guest did not finish its programs"
n=0; while kill -0 $QPID 2>/dev/null && [ $n -lt 300 ]; do sleep 0.1; n=$((n+1)); done
kill -0 $QPID 2>/dev/null && fail "guest did not power off within 30 s"
wait $QPID; QRC=$?
ts; say "guest powered off (QEMU exited with status $QRC)"
[ $QRC -eq 0 ] || fail "QEMU exited with status $QRC"
kill -TERM $DPID
n=0; while kill -0 $DPID 2>/dev/null && [ $n -lt 100 ]; do sleep 0.1; n=$((n+1)); done
kill -0 $DPID 2>/dev/null && fail "vsockmuxd still running 10 s after SIGTERM"
wait $DPID; DRC=$?
ts; say "vsockmuxd: SIGTERM -> exited with status $DRC"
[ $DRC -eq 0 ] || { tail -n 20 "$DLOG" >&2; fail "vsockmuxd exited with status $DRC"; }
PIDS=""
say
say "demo: done in $(elapsed "$T_START" "$(now)") s"
rm -rf "$DIR"
exit 0
