# lib.sh - shell functions shared by run_e2e.sh (the e2e suite) and demo.sh
# (the README's main-job demonstration).  Sourced, not run; bash.
#
# The caller sets, before use:
#   DIR     per-run work dir (vhost.sock, vsock.sock*, qemu.log, initramfs/)
#   QEMU    the qemu-system-x86_64 binary
#   PIDS    space-separated pids that cleanup() kills (start_qemu appends)
# Functions set: ACCEL CPU (e2e_pick_accel), KERNEL INITRD AGENT KVER KPKG
# MODULES BI_RC (e2e_build_guest), QPID (start_qemu), E2E_WHY (on failure).
# Every wait here is bounded.

E2E_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# e2e_qemu_ok: 0 when $QEMU exists and has vhost-user-vsock-pci; else 1 with
# the reason in E2E_WHY
e2e_qemu_ok() {
    if ! command -v "$QEMU" >/dev/null; then
        E2E_WHY="$QEMU not installed (Debian package qemu-system-x86)"; return 1
    fi
    if ! command -v socat >/dev/null; then
        E2E_WHY="socat not installed (Debian package socat, for QEMU's QMP)"; return 1
    fi
    if ! "$QEMU" -device help 2>/dev/null | grep -q '"vhost-user-vsock-pci"'; then
        E2E_WHY="$QEMU has no vhost-user-vsock-pci device"; return 1
    fi
    return 0
}

# e2e_build_guest: kernel (cached) + per-run initramfs and host agent under
# $DIR/initramfs; stderr in $DIR/build_initramfs.err.  Returns (and sets
# BI_RC to) build_initramfs.sh's exit code: 0 ok (variables set), 77 missing
# prerequisite, else failure.
e2e_build_guest() {
    local out
    out=$("$E2E_HERE/build_initramfs.sh" "${VSOCKMUX_E2E_CACHE:-/var/cache/vsockmux-e2e}" "$DIR/initramfs" 2>"$DIR/build_initramfs.err")
    BI_RC=$?
    [ $BI_RC -eq 0 ] && eval "$(echo "$out" | grep -E '^[A-Z]+=')"
    return $BI_RC
}

# e2e_pick_accel: ACCEL (E2E_ACCEL, else kvm if usable, else tcg) and CPU
e2e_pick_accel() {
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
}

cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null; done
    sleep 0.2
    for p in $PIDS; do kill -9 "$p" 2>/dev/null; done
}

# wait_file FILE REGEX SECONDS [PID]: bounded poll for a marker; stop early
# (one last look) once PID has exited
wait_file() {
    local n=0 lim=$(( $3 * 10 ))
    while [ $n -lt $lim ]; do
        grep -aqE "$2" "$1" 2>/dev/null && return 0
        if [ -n "${4:-}" ] && ! kill -0 "$4" 2>/dev/null; then
            grep -aqE "$2" "$1" 2>/dev/null; return
        fi
        sleep 0.1; n=$((n+1))
    done
    return 1
}
now() { date +%s.%N; }
elapsed() { python3 -c "print('%.2f' % ($2 - $1))" 2>/dev/null || echo "?"; }

# qmp COMMAND...: run QMP commands on the running QEMU one at a time, each
# sent only after the previous one answered (QEMU drops commands still
# queued when the client hangs up, which once left the VM stopped).
# Prints each answer; returns 0 only when every command returned, 1 on an
# error answer or when any answer took longer than 10 s.
qmp() {
    local line cmd rc=0
    coproc QMP_LINK { timeout 30 socat - UNIX-CONNECT:"$DIR/qmp.sock" 2>/dev/null; }
    # the greeting, then qmp_capabilities, then the caller's commands
    IFS= read -r -t 10 line <&"${QMP_LINK[0]}" || rc=1
    for cmd in qmp_capabilities "$@"; do
        [ $rc -eq 0 ] || break
        printf '{"execute":"%s"}\n' "$cmd" >&"${QMP_LINK[1]}"
        rc=1
        while IFS= read -r -t 10 line <&"${QMP_LINK[0]}"; do
            case $line in
            *'"return"'*) [ "$cmd" = qmp_capabilities ] || echo "$cmd: $line"; rc=0; break ;;
            *'"error"'*) echo "$cmd: $line"; break ;;
            esac            # events (STOP, RESUME) are skipped
        done
    done
    exec {QMP_LINK[1]}>&-
    kill "$QMP_LINK_PID" 2>/dev/null
    wait "$QMP_LINK_PID" 2>/dev/null
    return $rc
}

# start_qemu SERIAL SCENARIOS: boot the guest attached to $DIR/vhost.sock;
# the guest's /init runs SCENARIOS (vsockmux_e2e=...) and then powers off
start_qemu() {
    # not under timeout(1): QPID must be QEMU itself so SIGKILL hits it;
    # every wait on it below is bounded and cleanup kills it
    "$QEMU" \
        -machine q35,accel=$ACCEL,memory-backend=mem -cpu $CPU -smp 2 -m 512 \
        -object memory-backend-memfd,id=mem,size=512M,share=on \
        -chardev socket,id=c0,path="$DIR/vhost.sock" \
        -device vhost-user-vsock-pci,chardev=c0,seqpacket=auto \
        -kernel "$KERNEL" -initrd "$INITRD" \
        -append "console=ttyS0 panic=-1 rdinit=/init loglevel=4 vsockmux_e2e=$2" \
        -nodefaults -display none -monitor none -serial file:"$1" -no-reboot \
        -qmp unix:"$DIR/qmp.sock",server=on,wait=off \
        >> "$DIR/qemu.log" 2>&1 < /dev/null &
    QPID=$!
    PIDS="$PIDS $QPID"
}
