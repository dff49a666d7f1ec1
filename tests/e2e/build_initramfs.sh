#!/bin/sh
# build_initramfs.sh - fetch Debian's kernel (unpacked, never installed) and
# build the e2e guest's initramfs: busybox-static, the virtio/vsock modules,
# the static guest agent and an /init that runs the scenarios named on the
# kernel command line ("vsockmux_e2e=mode:name:port[:kind[:arg]],...").
#
# Usage: build_initramfs.sh [CACHE_DIR [WORK_DIR]]
#   CACHE_DIR holds the unpacked kernel (default /var/cache/vsockmux-e2e, or
#   $TMPDIR/vsockmux-e2e-cache-UID if that is not writable); WORK_DIR gets the
#   agent and initramfs (default CACHE_DIR; give one per run when runs overlap).
# Prints (last lines, for eval):  KERNEL=... INITRD=... AGENT=... KVER=...
# Needs: apt-get (download only), dpkg-deb, gcc with static libc, busybox-static.
# Exit 77 (with a reason on stderr) when a prerequisite that has to be
# installed or downloaded is missing: the caller reports the suite as skipped.
set -eu
missing() { echo "build_initramfs: MISSING PREREQUISITE: $*" >&2; exit 77; }

HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${1:-${VSOCKMUX_E2E_CACHE:-/var/cache/vsockmux-e2e}}
mkdir -p "$CACHE" 2>/dev/null && [ -w "$CACHE" ] || {
    CACHE=${TMPDIR:-/tmp}/vsockmux-e2e-cache-$(id -u)
    mkdir -p "$CACHE"
}
for t in apt-get apt-cache dpkg-deb gcc gzip; do
    command -v $t >/dev/null 2>&1 || missing "$t not found"
done

WORK=${2:-$CACHE}
mkdir -p "$WORK"
# one kernel download at a time (bounded wait)
if command -v flock >/dev/null 2>&1; then
    exec 9>"$CACHE/.lock"
    flock -w 300 9 || { echo "build_initramfs: cache $CACHE locked for 300 s" >&2; exit 1; }
fi

# --- kernel -----------------------------------------------------------------
# linux-image-amd64 is a metapackage; its one dependency is the real image.
if [ ! -f "$CACHE/kernel.stamp" ]; then
    KPKG=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
    [ -n "$KPKG" ] || missing "cannot resolve linux-image-amd64 to a kernel package (apt-get update?)"
    rm -rf "$CACHE/kernel" "$CACHE"/linux-image-*.deb
    mkdir -p "$CACHE/kernel"
    if ! (cd "$CACHE" && apt-get download "$KPKG" >"$CACHE/download.log" 2>&1); then
        tail -n 5 "$CACHE/download.log" >&2
        missing "apt-get download $KPKG failed (no network / no apt sources?)"
    fi
    dpkg-deb -x "$CACHE"/"$KPKG"_*.deb "$CACHE/kernel"
    echo "$KPKG $(dpkg-deb -f "$CACHE"/"$KPKG"_*.deb Version)" > "$CACHE/kernel.stamp"
fi
KVER=$(ls "$CACHE/kernel/lib/modules" | head -n1)
KERNEL="$CACHE/kernel/boot/vmlinuz-$KVER"
MODDIR="$CACHE/kernel/lib/modules/$KVER"
[ -f "$KERNEL" ] || { echo "build_initramfs: no vmlinuz in $CACHE/kernel/boot" >&2; exit 1; }

# Dependency order (from each module's .modinfo "depends="; the .deb ships no
# modules.dep). Anything listed in modules.builtin is skipped.
MODS="drivers/virtio/virtio_ring drivers/virtio/virtio
      drivers/virtio/virtio_pci_modern_dev drivers/virtio/virtio_pci_legacy_dev
      drivers/virtio/virtio_pci
      net/vmw_vsock/vsock net/vmw_vsock/vmw_vsock_virtio_transport_common
      net/vmw_vsock/vmw_vsock_virtio_transport"

# --- tree -------------------------------------------------------------------
ROOT="$WORK/initramfs.root"
rm -rf "$ROOT"
mkdir -p "$ROOT/bin" "$ROOT/dev" "$ROOT/proc" "$ROOT/sys" "$ROOT/tmp" "$ROOT/lib/modules"

BUSYBOX=$(command -v busybox || true)
if [ -z "$BUSYBOX" ] || ! ldd "$BUSYBOX" 2>&1 | grep -q 'not a dynamic'; then
    missing "need busybox-static (a static busybox on PATH; apt-get install busybox-static)"
fi
cp "$BUSYBOX" "$ROOT/bin/busybox"
ln -s busybox "$ROOT/bin/sh"

echo 'int main(void){return 0;}' > "$WORK/static-probe.c"
gcc -static -o "$WORK/static-probe" "$WORK/static-probe.c" 2>/dev/null ||
    missing "gcc cannot link static binaries (libc6-dev static libc)"
gcc -std=gnu11 -O2 -Wall -Wextra -static -o "$WORK/guest_agent" "$HERE/guest_agent.c"
cp "$WORK/guest_agent" "$ROOT/bin/guest_agent"

: > "$ROOT/lib/modules/order"
for m in $MODS; do
    base=$(basename "$m")
    if grep -q "/$base.ko" "$MODDIR/modules.builtin" 2>/dev/null; then
        continue
    fi
    src=""
    for ext in .ko .ko.xz .ko.zst .ko.gz; do
        [ -f "$MODDIR/kernel/$m$ext" ] && { src="$MODDIR/kernel/$m$ext"; break; }
    done
    [ -n "$src" ] || { echo "build_initramfs: module $m not found" >&2; exit 1; }
    case "$src" in
        *.xz) xz -dc "$src" > "$ROOT/lib/modules/$base.ko" ;;
        *.zst) zstd -dc "$src" > "$ROOT/lib/modules/$base.ko" ;;
        *.gz) gzip -dc "$src" > "$ROOT/lib/modules/$base.ko" ;;
        *) cp "$src" "$ROOT/lib/modules/$base.ko" ;;
    esac
    echo "$base" >> "$ROOT/lib/modules/order"
done

# Console node so PID 1 has stdout before devtmpfs is mounted (needs root).
mknod -m 600 "$ROOT/dev/console" c 5 1 2>/dev/null || true

cat > "$ROOT/init" <<'EOF'
#!/bin/sh
# e2e guest init: modules, scenarios from the kernel command line, power off.
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo "E2E-BOOT uptime=$(cut -d' ' -f1 /proc/uptime) kernel=$(uname -r)"
for m in $(cat /lib/modules/order); do
    insmod /lib/modules/$m.ko || echo "E2E-RESULT insmod-$m FAIL insmod failed"
done
# wait (bounded) for the virtio vsock device to be bound to its driver
drv=/sys/bus/virtio/drivers/vmw_vsock_virtio_transport
i=0
while ! ls $drv 2>/dev/null | grep -q '^virtio' && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
dev=$(ls $drv 2>/dev/null | grep '^virtio' | head -n1)
if [ -n "$dev" ]; then
    echo "E2E-INFO vsock device $dev features=$(cat $drv/$dev/features)"
    echo "E2E-RESULT guest-vsock-probe PASS bound $dev"
else
    echo "E2E-RESULT guest-vsock-probe FAIL no device bound to vmw_vsock_virtio_transport"
fi
echo "E2E-BOOTED uptime=$(cut -d' ' -f1 /proc/uptime)"
scen=$(tr ' ' '\n' < /proc/cmdline | sed -n 's/^vsockmux_e2e=//p')
for s in $(echo "$scen" | tr ',' ' '); do
    # mode:name:port[:kind[:arg]]
    set -- $(echo "$s" | tr ':' ' ')
    echo "E2E-START $2 uptime=$(cut -d' ' -f1 /proc/uptime)"
    timeout 300 /bin/guest_agent "$@" || true
done
echo "E2E-DONE uptime=$(cut -d' ' -f1 /proc/uptime)"
sync
poweroff -f
EOF
chmod 755 "$ROOT/init"

INITRD="$WORK/initramfs.cpio.gz"
CPIO="cpio"
command -v cpio >/dev/null 2>&1 || CPIO="$ROOT/bin/busybox cpio"
(cd "$ROOT" && find . | $CPIO -o -H newc -R 0:0 2>/dev/null | gzip -1 > "$INITRD")

echo "KVER=$KVER"
echo "KPKG='$(cat "$CACHE/kernel.stamp")'"
echo "KERNEL=$KERNEL"
echo "INITRD=$INITRD"
echo "AGENT=$WORK/guest_agent"
echo "MODULES='$(tr '\n' ' ' < "$ROOT/lib/modules/order")'"
