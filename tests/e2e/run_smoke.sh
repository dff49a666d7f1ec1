#!/bin/bash
# run_smoke.sh - real-guest smoke test: Debian's QEMU (vhost-user-vsock-pci)
# booting Debian's kernel with a tiny initramfs, attached to vsockmuxd.
#
# Usage: tests/e2e/run_smoke.sh            (from anywhere; root for mknod/kvm)
# Env:   VSOCKMUX_BUILD   build dir holding vsockmuxd   (default build-e2e)
#        E2E_ACCEL        kvm | tcg                     (default: kvm if usable)
#        E2E_BULK_MIB     MiB each way in the bulk tests (default 16)
#        E2E_KEEP=1       keep the work dir even on success
#        E2E_DAEMON_WRAP  command prefix for the daemon (e.g. "strace -f -o X")
# Output: one "E2E-RESULT side:name PASS|FAIL detail" line per check, a
#         summary, and on failure the tails of the daemon/QEMU/serial logs.
#         Exit 0 only if every expected check passed.
# Every wait is bounded.
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
BUILD=${VSOCKMUX_BUILD:-$TOP/build-e2e}
DAEMON=$BUILD/vsockmuxd
BULK=${E2E_BULK_MIB:-16}
GUEST_CID=3
QEMU=${QEMU:-qemu-system-x86_64}

die() { echo "run_smoke: $*" >&2; exit 2; }
[ -x "$DAEMON" ] || die "no $DAEMON (cd $TOP && meson setup build-e2e && ninja -C build-e2e vsockmuxd)"
command -v "$QEMU" >/dev/null || die "$QEMU not installed (apt-get install qemu-system-x86)"

eval "$("$HERE/build_initramfs.sh" | grep -E '^[A-Z]+=')" || die "initramfs build failed"

DIR=$(mktemp -d /tmp/vsockmux-e2e.XXXXXX)
SERIAL=$DIR/serial.log
DLOG=$DIR/daemon.log
QLOG=$DIR/qemu.log
PIDS=""
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null; done
    sleep 0.2
    for p in $PIDS; do kill -9 "$p" 2>/dev/null; done
}
trap cleanup EXIT

# --- accelerator ------------------------------------------------------------
ACCEL=${E2E_ACCEL:-}
if [ -z "$ACCEL" ]; then
    ACCEL=tcg
    # /dev/kvm can exist in a VM without nested virtualization (no vmx/svm
    # flag); KVM then creates a VM that never runs a single instruction.
    if [ -r /dev/kvm ] && [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo &&
       printf 'quit\n' | timeout 15 "$QEMU" -machine none,accel=kvm -nodefaults \
            -display none -monitor stdio >/dev/null 2>&1; then
        ACCEL=kvm
    fi
fi
CPU=max
[ "$ACCEL" = kvm ] && CPU=host

# --- scenarios ---------------------------------------------------------------
# guest side, in order (mode:name:port[:kind[:arg]])
SCEN="listen:h2g-echo:5000:echo"
SCEN="$SCEN,connect:g2h-echo:6000:echo"
SCEN="$SCEN,listen:h2g-bulk:5001:bulk:$BULK"
SCEN="$SCEN,connect:g2h-bulk:6001:bulk:$BULK"
SCEN="$SCEN,refused:g2h-refused:6999:500"
# "side:name" of every result we must see
EXPECT="guest:guest-vsock-probe guest:h2g-echo host:h2g-echo guest:g2h-echo host:g2h-echo
        guest:h2g-bulk host:h2g-bulk guest:g2h-bulk host:g2h-bulk guest:g2h-refused
        host:h2g-refused"

echo "run_smoke: dir=$DIR accel=$ACCEL kernel=$KPKG"
echo "run_smoke: modules: $MODULES"

# host listeners for guest-initiated connections (started before the guest)
timeout 300 "$AGENT" host-listen g2h-echo "$DIR/vsock.sock_6000" echo > "$DIR/host-g2h-echo.log" 2>&1 &
PIDS="$PIDS $!"
timeout 300 "$AGENT" host-listen g2h-bulk "$DIR/vsock.sock_6001" bulk "$BULK" > "$DIR/host-g2h-bulk.log" 2>&1 &
PIDS="$PIDS $!"

# --- daemon ------------------------------------------------------------------
${E2E_DAEMON_WRAP:-} "$DAEMON" --guest-cid $GUEST_CID --socket "$DIR/vhost.sock" \
    --uds-path "$DIR/vsock.sock" --log-level debug > "$DLOG" 2>&1 &
DPID=$!
PIDS="$PIDS $DPID"
i=0
while [ ! -S "$DIR/vhost.sock" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
[ -S "$DIR/vhost.sock" ] || { cat "$DLOG"; die "daemon did not create $DIR/vhost.sock"; }

# --- QEMU ---------------------------------------------------------------------
T0=$(date +%s.%N)
timeout 600 "$QEMU" \
    -machine q35,accel=$ACCEL,memory-backend=mem -cpu $CPU -smp 2 -m 512 \
    -object memory-backend-memfd,id=mem,size=512M,share=on \
    -chardev socket,id=c0,path="$DIR/vhost.sock" \
    -device vhost-user-vsock-pci,chardev=c0 \
    -kernel "$KERNEL" -initrd "$INITRD" \
    -append "console=ttyS0 panic=-1 rdinit=/init loglevel=6 vsockmux_e2e=$SCEN" \
    -nodefaults -display none -monitor none -serial file:"$SERIAL" -no-reboot \
    > "$QLOG" 2>&1 < /dev/null &
QPID=$!
PIDS="$PIDS $QPID"

# wait_marker REGEX SECONDS: poll the serial log; give up early if QEMU died
wait_marker() {
    local n=0 lim=$(( $2 * 10 ))
    while [ $n -lt $lim ]; do
        grep -qE "$1" "$SERIAL" 2>/dev/null && return 0
        kill -0 $QPID 2>/dev/null || { grep -qE "$1" "$SERIAL" 2>/dev/null; return; }
        sleep 0.1; n=$((n+1))
    done
    return 1
}

HOSTRES=$DIR/host-results.log
: > "$HOSTRES"
if wait_marker '^E2E-BOOTED' 120; then
    T1=$(date +%s.%N)
    BOOT=$(echo "$T1 - $T0" | bc 2>/dev/null || python3 -c "print(round($T1-$T0,2))")
    echo "run_smoke: guest booted (QEMU start -> E2E-BOOTED) in ${BOOT}s; $(grep -m1 '^E2E-BOOTED' "$SERIAL")"
    # host CONNECT to a guest port with nobody listening: closed, no OK
    timeout 30 "$AGENT" host-refused h2g-refused "$DIR/vsock.sock" 7000 3000 >> "$HOSTRES" 2>&1
    for s in h2g-echo:5000:echo h2g-bulk:5001:bulk; do
        name=${s%%:*}; rest=${s#*:}; port=${rest%%:*}; kind=${rest#*:}
        if wait_marker "^E2E-READY ${name}[[:space:]]*\$" 120; then
            timeout 300 "$AGENT" host-connect "$name" "$DIR/vsock.sock" "$port" "$kind" "$BULK" >> "$HOSTRES" 2>&1
        else
            echo "E2E-RESULT $name FAIL guest never printed E2E-READY $name" >> "$HOSTRES"
        fi
    done
    wait_marker '^E2E-DONE' 300 || echo "run_smoke: guest never printed E2E-DONE"
else
    echo "run_smoke: guest did not boot (no E2E-BOOTED within 120 s)"
fi

# QEMU powers off after E2E-DONE
n=0; while kill -0 $QPID 2>/dev/null && [ $n -lt 300 ]; do sleep 0.1; n=$((n+1)); done
if kill -0 $QPID 2>/dev/null; then
    echo "run_smoke: QEMU still running 30 s after the last scenario; killing it"
    kill $QPID
fi
wait $QPID 2>/dev/null; QRC=$?
for f in "$DIR"/host-g2h-*.log; do cat "$f" >> "$HOSTRES"; done
sleep 0.5
DAEMON_ALIVE=no; kill -0 $DPID 2>/dev/null && DAEMON_ALIVE=yes

# --- report -------------------------------------------------------------------
RES=$DIR/results.log
{
    grep -a '^E2E-RESULT' "$SERIAL" | tr -d '\r' | sed 's/^E2E-RESULT /E2E-RESULT guest:/'
    grep -a '^E2E-RESULT' "$HOSTRES" | sed 's/^E2E-RESULT /E2E-RESULT host:/'
} > "$RES"
echo "---- results"
cat "$RES"
echo "---- metrics"
grep -ah '^E2E-METRIC\|^E2E-INFO' "$SERIAL" "$HOSTRES" | tr -d '\r'
echo "---- guest timeline"
grep -a '^E2E-BOOT\|^E2E-START\|^E2E-DONE' "$SERIAL" | tr -d '\r'
echo "qemu exit code: $QRC; daemon alive after guest poweroff: $DAEMON_ALIVE"

fail=0
for e in $EXPECT; do
    if ! grep -q "^E2E-RESULT $e PASS" "$RES"; then
        grep -q "^E2E-RESULT $e " "$RES" || echo "E2E-RESULT $e FAIL missing (no result line)"
        fail=$((fail+1))
    fi
done
grep -q ' FAIL ' "$RES" && fail=$((fail > 0 ? fail : 1))
[ "$DAEMON_ALIVE" = yes ] || { echo "run_smoke: vsockmuxd died"; fail=$((fail+1)); }

if [ $fail -ne 0 ]; then
    echo "---- QEMU output"; tail -n 30 "$QLOG"
    echo "---- daemon log (tail)"; tail -n 60 "$DLOG"
    echo "---- serial (tail)"; tail -n 40 "$SERIAL"
    echo "run_smoke: FAIL ($fail problems); logs kept in $DIR"
    exit 1
fi
echo "run_smoke: PASS (all $(echo $EXPECT | wc -w) checks); logs in $DIR"
[ "${E2E_KEEP:-}" = 1 ] || rm -rf "$DIR"
exit 0
