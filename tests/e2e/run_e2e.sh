#!/bin/bash
# run_e2e.sh - real-guest end-to-end suite: Debian's QEMU
# (vhost-user-vsock-pci, seqpacket=auto) booting Debian's kernel with a tiny
# initramfs, attached to a running vsockmuxd.  All scenarios run in one guest
# boot; a second boot (after SIGKILLing the first QEMU) checks that the same
# daemon serves a new VMM.
#
# Usage: tests/e2e/run_e2e.sh          (meson test --suite e2e runs it)
# Env:   VSOCKMUXD        the daemon binary (meson sets it)
#                         default: $VSOCKMUX_BUILD/vsockmuxd, build dir build
#        E2E_ACCEL        kvm | tcg                     (default: kvm if usable)
#        E2E_BULK_MIB     MiB each way in the bulk tests (default 16)
#        E2E_CONNS        concurrent connections each way (default 32)
#        E2E_KEEP=1       keep the work dir even on success
#        VSOCKMUX_E2E_CACHE  kernel cache (default /var/cache/vsockmux-e2e)
# Output: "E2E-RESULT side:check PASS|FAIL detail" per check, then one
#         "E2E-SCENARIO name PASS|FAIL" line per scenario.
# Exit:  0 all scenarios passed; 77 skipped (QEMU, busybox-static or the
#        kernel package could not be obtained; the reason is printed loudly);
#        anything else is a failure.
# Every wait is bounded; synchronisation is polling the serial log (and the
# host agents' output) for markers.
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
DAEMON=${VSOCKMUXD:-${VSOCKMUX_BUILD:-$TOP/build}/vsockmuxd}
BULK=${E2E_BULK_MIB:-16}
CONNS=${E2E_CONNS:-32}
GUEST_CID=3
QEMU=${QEMU:-qemu-system-x86_64}
# wait_file, start_qemu, cleanup, e2e_pick_accel, e2e_build_guest, ...
. "$HERE/lib.sh"

skip() {
    {
        echo "################################################################"
        echo "## E2E SUITE SKIPPED (NOT PASSED): $*"
        echo "## install: apt-get install qemu-system-x86 busybox-static socat, and"
        echo "## make 'apt-get download linux-image-amd64's image' work"
        echo "################################################################"
    } | tee /dev/stderr
    exit 77
}
die() { echo "run_e2e: FAIL: $*"; exit 1; }

[ -x "$DAEMON" ] || die "no daemon binary $DAEMON"
e2e_qemu_ok || skip "$E2E_WHY"

DIR=$(mktemp -d /tmp/vsockmux-e2e.XXXXXX)
# vsockmuxd started as root runs as an unprivileged user: it must be able to
# reach the host listeners (<uds>_P, made 0666 by the agent) in this dir.
chmod 0711 "$DIR"

e2e_build_guest
if [ $BI_RC -eq 77 ]; then
    reason=$(grep 'MISSING PREREQUISITE' "$DIR/build_initramfs.err" | tail -n1)
    cat "$DIR/build_initramfs.err" >&2
    rm -rf "$DIR"
    skip "${reason:-build_initramfs.sh reported a missing prerequisite}"
elif [ $BI_RC -ne 0 ]; then
    cat "$DIR/build_initramfs.err"
    die "initramfs build failed (exit $BI_RC); logs in $DIR"
fi

SERIAL1=$DIR/serial1.log
SERIAL2=$DIR/serial2.log
DLOG=$DIR/daemon.log
HOSTRES=$DIR/host-results.log
: > "$HOSTRES"
PIDS=""
trap cleanup EXIT

# --- accelerator ------------------------------------------------------------
e2e_pick_accel

echo "run_e2e: dir=$DIR accel=$ACCEL kernel=$KPKG daemon=$DAEMON"

# host agent in the background, output appended to its own log
host_bg() {   # LOGNAME ARGS...
    local log=$DIR/host-$1.log; shift
    timeout 400 "$AGENT" "$@" > "$log" 2>&1 &
    PIDS="$PIDS $!"
}
# --- scenarios, boot 1 ---------------------------------------------------------
# guest side, in order (mode:name:port[:args])
SCEN="listen:h2g-echo:5000:echo"
SCEN="$SCEN,connect:g2h-echo:6000:echo"
SCEN="$SCEN,listen:h2g-bulk:5001:bulk:$BULK"
SCEN="$SCEN,connect:g2h-bulk:6001:bulk:$BULK"
SCEN="$SCEN,listen:h2g-half:5002:half"
SCEN="$SCEN,connect:g2h-half:6002:half"
SCEN="$SCEN,duplex-multi:h2g-multi:5003:$CONNS:g2h-multi:6003"
SCEN="$SCEN,refused:g2h-refused:6999:500"
SCEN="$SCEN,seqpacket:seqpacket-refused:6005:500"
SCEN="$SCEN,connect:seqpacket-stream:6004:echo"
SCEN="$SCEN,connect:hold:6010:hold"

# host listeners for guest-initiated connections (before the guest starts)
host_bg g2h-echo host-listen g2h-echo "$DIR/vsock.sock_6000" echo
host_bg g2h-bulk host-listen g2h-bulk "$DIR/vsock.sock_6001" bulk "$BULK"
host_bg g2h-half host-listen g2h-half "$DIR/vsock.sock_6002" half
host_bg g2h-multi host-listen-multi g2h-multi "$DIR/vsock.sock_6003" "$CONNS"
host_bg seqpacket-stream host-listen seqpacket-stream "$DIR/vsock.sock_6004" echo
host_bg hold host-listen hold "$DIR/vsock.sock_6010" hold

for l in g2h-echo g2h-bulk g2h-half g2h-multi seqpacket-stream hold; do
    wait_file "$DIR/host-$l.log" '^E2E-READY' 10 || die "host listener $l not ready: $(cat "$DIR/host-$l.log")"
done

# --- daemon ------------------------------------------------------------------
"$DAEMON" --guest-cid $GUEST_CID --socket "$DIR/vhost.sock" \
    --uds-path "$DIR/vsock.sock" --log-level debug > "$DLOG" 2>&1 &
DPID=$!
PIDS="$PIDS $DPID"
wait_file "$DLOG" 'info: ready' 10 $DPID || { cat "$DLOG"; die "daemon not ready within 10 s"; }

declare -A HARNESS   # harness-level checks: name -> "PASS detail" / "FAIL detail"

run_boot1() {
    T0=$(now)
    start_qemu "$SERIAL1" "$SCEN"
    if ! wait_file "$SERIAL1" '^E2E-BOOTED' 120 $QPID; then
        echo "run_e2e: guest 1 did not boot (no E2E-BOOTED within 120 s)"
        return
    fi
    BOOT1=$(elapsed "$T0" "$(now)")
    echo "run_e2e: guest 1 booted (QEMU start -> E2E-BOOTED) in ${BOOT1}s; $(grep -a -m1 '^E2E-BOOTED' "$SERIAL1" | tr -d '\r')"
    # seqpacket=auto: VIRTIO_VSOCK_F_SEQPACKET is feature bit 1; we don't offer it
    feat=$(grep -a -m1 'E2E-INFO vsock device' "$SERIAL1" | tr -d '\r' | sed -n 's/.*features=//p')
    if [ -n "$feat" ] && [ "${feat:1:1}" = 0 ]; then
        HARNESS[guest-seqpacket-feature-off]="PASS negotiated features $feat (bit 1 SEQPACKET clear)"
    else
        HARNESS[guest-seqpacket-feature-off]="FAIL negotiated features '${feat}'"
    fi
    # host CONNECT to a guest port with nobody listening: closed, no OK
    timeout 30 "$AGENT" host-refused h2g-refused "$DIR/vsock.sock" 7000 3000 >> "$HOSTRES" 2>&1
    for s in h2g-echo:5000:echo h2g-bulk:5001:bulk h2g-half:5002:half; do
        name=${s%%:*}; rest=${s#*:}; port=${rest%%:*}; kind=${rest#*:}
        if wait_file "$SERIAL1" "^E2E-READY ${name}[[:space:]]*\$" 120 $QPID; then
            timeout 300 "$AGENT" host-connect "$name" "$DIR/vsock.sock" "$port" "$kind" "$BULK" >> "$HOSTRES" 2>&1
        else
            echo "E2E-RESULT $name FAIL guest never printed E2E-READY $name" >> "$HOSTRES"
        fi
    done
    if wait_file "$SERIAL1" "^E2E-READY h2g-multi[[:space:]]*\$" 120 $QPID; then
        host_bg h2g-multi host-connect-multi h2g-multi "$DIR/vsock.sock" 5003 "$CONNS"
    else
        echo "E2E-RESULT h2g-multi FAIL guest never printed E2E-READY h2g-multi" >> "$HOSTRES"
    fi
    # the guest's last scenario holds a connection open; kill QEMU under it
    if wait_file "$SERIAL1" "^E2E-READY hold[[:space:]]*\$" 300 $QPID; then
        kill -9 $QPID; wait $QPID 2>/dev/null
        echo "run_e2e: QEMU 1 SIGKILLed while the guest held a connection (port 6010)"
    else
        echo "run_e2e: guest 1 never reached the hold scenario"
    fi
}
run_boot1
n=0; while kill -0 $QPID 2>/dev/null && [ $n -lt 100 ]; do sleep 0.1; n=$((n+1)); done
kill -9 $QPID 2>/dev/null
wait $QPID 2>/dev/null
# host side of the held connection must end (EOF/reset), bounded
wait_file "$DIR/host-hold.log" '^E2E-RESULT hold ' 30 || true
if kill -0 $DPID 2>/dev/null; then
    HARNESS[daemon-survives-qemu-kill]="PASS vsockmuxd still running after QEMU SIGKILL"
else
    HARNESS[daemon-survives-qemu-kill]="FAIL vsockmuxd exited after QEMU SIGKILL"
fi

# --- boot 2: a new QEMU against the same daemon --------------------------------
SCEN2="listen:h2g-echo-2:5000:echo,connect:g2h-echo-2:6000:echo"
host_bg g2h-echo-2 host-listen g2h-echo-2 "$DIR/vsock.sock_6000" echo
wait_file "$DIR/host-g2h-echo-2.log" '^E2E-READY' 10 || true
T0=$(now)
start_qemu "$SERIAL2" "$SCEN2"
if wait_file "$SERIAL2" '^E2E-BOOTED' 120 $QPID; then
    BOOT2=$(elapsed "$T0" "$(now)")
    echo "run_e2e: guest 2 booted in ${BOOT2}s"
    if wait_file "$SERIAL2" "^E2E-READY h2g-echo-2[[:space:]]*\$" 120 $QPID; then
        # QEMU stop/cont (as for snapshots) hands the rings back and starts
        # them again where they stopped: the device must come back whole
        stopped_before=$(grep -ac 'queue 0 stopped' "$DLOG")
        cycles_ok=0
        for i in 1 2 3 4 5 6 7 8 9 10; do
            qmp stop cont > /dev/null && cycles_ok=$((cycles_ok+1))
        done
        running=$(qmp query-status)
        stopped=$(( $(grep -ac 'queue 0 stopped' "$DLOG") - stopped_before ))
        if [ $cycles_ok -eq 10 ] && [ $stopped -ge 10 ] &&
           echo "$running" | grep -q '"running": true' &&
           ! grep -aq 'the guest driver was reset' "$DLOG"; then
            HARNESS[stop-cont-10]="PASS 10 QEMU stop/cont cycles, rings stopped $stopped times and resumed where they stopped"
        else
            HARNESS[stop-cont-10]="FAIL $cycles_ok QMP stop/cont answered, rings stopped $stopped times, status: $running"
        fi
        timeout 120 "$AGENT" host-connect h2g-echo-2 "$DIR/vsock.sock" 5000 echo >> "$HOSTRES" 2>&1
    else
        echo "E2E-RESULT h2g-echo-2 FAIL guest 2 never printed E2E-READY" >> "$HOSTRES"
    fi
    wait_file "$SERIAL2" '^E2E-DONE' 120 $QPID || echo "run_e2e: guest 2 never printed E2E-DONE"
else
    echo "run_e2e: guest 2 did not boot (no E2E-BOOTED within 120 s)"
fi
# QEMU 2 powers off after E2E-DONE
n=0; while kill -0 $QPID 2>/dev/null && [ $n -lt 300 ]; do sleep 0.1; n=$((n+1)); done
if kill -0 $QPID 2>/dev/null; then
    echo "run_e2e: QEMU 2 still running 30 s after its last scenario; killing it"
    kill $QPID
fi
wait $QPID 2>/dev/null
# background host agents are all bounded; give them a bounded moment
for p in $PIDS; do
    [ "$p" = "$DPID" ] && continue
    n=0; while kill -0 "$p" 2>/dev/null && [ $n -lt 100 ]; do sleep 0.1; n=$((n+1)); done
done
for f in "$DIR"/host-*.log; do [ "$f" = "$HOSTRES" ] || cat "$f" >> "$HOSTRES"; done
# "at once": from the daemon's own conn open/close log lines, the peak number
# of simultaneously open port-5003/6003 connections must be 2*CONNS
# (the guest holds all of them at a barrier before any data moves)
PEAK=$(grep -aE 'conn (open|close): local [0-9]+ peer [0-9]+ ' "$DLOG" |
       grep -aE 'peer 5003 |local 6003 ' |
       awk '/conn open/{n++; if(n>m)m=n} /conn close/{n--} END{print m+0}')
if [ "$PEAK" -eq $((2*CONNS)) ]; then
    HARNESS[multi-overlap]="PASS peak $PEAK of $((2*CONNS)) connections open at once (daemon log)"
else
    HARNESS[multi-overlap]="FAIL peak only $PEAK connections open at once (want $((2*CONNS)))"
fi
DAEMON_ALIVE=no; kill -0 $DPID 2>/dev/null && DAEMON_ALIVE=yes
if [ $DAEMON_ALIVE = yes ]; then
    HARNESS[daemon-alive-at-end]="PASS"
else
    HARNESS[daemon-alive-at-end]="FAIL vsockmuxd died"
fi

# --- report -------------------------------------------------------------------
RES=$DIR/results.log
{
    grep -a '^E2E-RESULT' "$SERIAL1" | tr -d '\r' | sed 's/^E2E-RESULT /E2E-RESULT guest:/'
    grep -a '^E2E-RESULT' "$SERIAL2" 2>/dev/null | tr -d '\r' | sed 's/^E2E-RESULT /E2E-RESULT guest2:/'
    grep -a '^E2E-RESULT' "$HOSTRES" | sed 's/^E2E-RESULT /E2E-RESULT host:/'
    for k in "${!HARNESS[@]}"; do echo "E2E-RESULT harness:$k ${HARNESS[$k]}"; done
} > "$RES"
echo "---- checks"
sort -k2 "$RES"
echo "---- failing sub-connections / info"
grep -ah 'E2E-INFO .* FAIL' "$SERIAL1" "$SERIAL2" "$HOSTRES" 2>/dev/null | tr -d '\r' | head -n 20
echo "---- metrics"
grep -ah '^E2E-METRIC' "$SERIAL1" "$HOSTRES" | tr -d '\r'
echo "---- guest timeline (boot 1)"
grep -a '^E2E-BOOT\|^E2E-START\|^E2E-DONE' "$SERIAL1" | tr -d '\r'
echo "boot time (QEMU start -> guest init ready): boot1=${BOOT1:-none}s boot2=${BOOT2:-none}s accel=$ACCEL"

# the scenarios and the checks each one needs
SCENARIOS=(
 "host-connect-echo:guest:h2g-echo host:h2g-echo"
 "guest-connect-echo:guest:g2h-echo host:g2h-echo"
 "bulk-${BULK}MiB-each-way:guest:h2g-bulk host:h2g-bulk guest:g2h-bulk host:g2h-bulk"
 "concurrent-${CONNS}-each-way:guest:h2g-multi host:h2g-multi guest:g2h-multi host:g2h-multi guest:multi-barrier harness:multi-overlap"
 "half-close-both-ways:guest:h2g-half host:h2g-half guest:g2h-half host:g2h-half"
 "guest-connect-no-listener:guest:g2h-refused"
 "host-connect-no-listener:host:h2g-refused"
 "qemu-sigkill-restart:host:hold harness:daemon-survives-qemu-kill guest2:guest-vsock-probe guest2:h2g-echo-2 host:h2g-echo-2 guest2:g2h-echo-2 host:g2h-echo-2"
 "seqpacket-auto:harness:guest-seqpacket-feature-off guest:seqpacket-refused guest:seqpacket-stream host:seqpacket-stream"
 "transport-probe-and-daemon-health:guest:guest-vsock-probe harness:daemon-alive-at-end"
 "qemu-stop-cont:harness:stop-cont-10 guest2:h2g-echo-2 host:h2g-echo-2"
)
echo "---- scenarios"
fail=0
for sc in "${SCENARIOS[@]}"; do
    name=${sc%%:*}; checks=${sc#*:}
    bad=""
    for c in $checks; do
        # exactly one PASS line and no FAIL line for this check
        if ! grep -q "^E2E-RESULT $c PASS" "$RES" || grep -q "^E2E-RESULT $c FAIL" "$RES"; then
            bad="$bad $c"
        fi
    done
    if [ -z "$bad" ]; then
        echo "E2E-SCENARIO $name PASS"
    else
        echo "E2E-SCENARIO $name FAIL (failed or missing:$bad)"
        fail=$((fail+1))
    fi
done
# any FAIL line at all (also ones not listed above) fails the suite
if grep -q '^E2E-RESULT [^ ]* FAIL' "$RES" && [ $fail -eq 0 ]; then
    echo "run_e2e: unexpected FAIL line(s):"; grep '^E2E-RESULT [^ ]* FAIL' "$RES"
    fail=1
fi

if [ $fail -ne 0 ]; then
    echo "---- QEMU output"; tail -n 30 "$DIR/qemu.log"
    echo "---- daemon log (warnings and errors)"; grep -av ' debug: ' "$DLOG" | tail -n 40
    echo "---- serial 1 (tail)"; tail -n 30 "$SERIAL1" | tr -d '\r'
    echo "run_e2e: FAIL ($fail scenarios); logs kept in $DIR"
    exit 1
fi
echo "run_e2e: PASS (all ${#SCENARIOS[@]} scenarios); logs in $DIR"
[ "${E2E_KEEP:-}" = 1 ] || rm -rf "$DIR"
exit 0
