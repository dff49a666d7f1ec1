#!/bin/sh
# nspawn_boot.sh BUILD_DIR - the installed daemon under a real systemd:
# a Debian 12 root (debootstrap, cached in /var/cache/vsockmux-nspawn) is
# booted with systemd-nspawn -b, the build is installed into a throwaway
# copy of it (meson install, prefix /usr/local), and a oneshot unit inside
# starts vsockmuxd@vm1 (Type=notify: "active" only after READY=1), reads
# its STATUS=, lists its sockets, attaches the virtual guest (attach_probe:
# data both ways through the daemon systemd started, STATUS= "VMM
# attached" meanwhile), reports systemd-analyze security, stops it and
# checks it ended cleanly; then the same through vsockmuxd@vm1.socket (the
# first connect starts the daemon with systemd's listeners, which outlive
# the service). Exits 77 (skip), loudly, when root,
# systemd-nspawn, debootstrap or the download is missing, or the
# container does not boot at all; never passes without having booted.
set -eu
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
cache=/var/cache/vsockmux-nspawn
root_cache=$cache/bookworm-v1
packages=systemd,systemd-sysv,dbus,libasan8,libubsan1,libprotobuf-c1,libseccomp2,libcap2,libjson-c5

skip() {
	echo "*** systemd boot test SKIPPED: $* ***" >&2
	exit 77
}
[ "$(id -u)" = 0 ] || skip "needs root"
command -v systemd-nspawn >/dev/null || skip "no systemd-nspawn (Debian package systemd-container)"
command -v debootstrap >/dev/null || skip "no debootstrap (Debian package debootstrap)"
if [ ! -x "$root_cache/lib/systemd/systemd" ]; then
	mkdir -p "$cache"
	rm -rf "$root_cache.tmp"
	debootstrap --variant=minbase --include="$packages" bookworm "$root_cache.tmp" \
		http://deb.debian.org/debian > "$cache/debootstrap.log" 2>&1 ||
		skip "debootstrap failed (see $cache/debootstrap.log)"
	mv "$root_cache.tmp" "$root_cache"
fi

work=$(mktemp -d /var/tmp/vsockmux-nspawn.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/root
cp -a "$root_cache" "$root"
DESTDIR=$root meson install -C "$build" --no-rebuild --quiet > "$work/install.log" 2>&1 ||
	{ cat "$work/install.log"; exit 1; }
install -D -m 0755 "$here/boot_test_inside.sh" "$root/usr/local/libexec/vsockmux-boot-test"
install -D -m 0755 "$build/tests/systemd/attach_probe" "$root/usr/local/libexec/vsockmux-attach-probe"
cat > "$root/etc/systemd/system/vsockmux-boot-test.service" <<'UNIT'
[Unit]
Description=vsockmux boot test driver
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/usr/local/libexec/vsockmux-boot-test
UNIT
mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
ln -s ../vsockmux-boot-test.service \
	"$root/etc/systemd/system/multi-user.target.wants/vsockmux-boot-test.service"

# --register=no --keep-unit: no systemd (machined) is needed on this side
timeout 180 systemd-nspawn -D "$root" --register=no --keep-unit -b \
	> "$work/console.log" 2>&1 || true
if [ ! -f "$root/boot-test.log" ]; then
	# the container never got to our unit: this machine cannot boot one
	tail -40 "$work/console.log" >&2
	skip "systemd-nspawn -b did not boot the container (its console above)"
fi
cat "$root/boot-test.log"
grep -q '^BOOT-TEST-DONE' "$root/boot-test.log" || { echo "FAIL: driver did not finish"; exit 1; }
failed=0
for expected in "ACTIVE active" "STATUS StatusText=waiting for a VMM on /run/vsockmux/vm1/vhost-user.sock" \
		"PROBE ok" "ATTACHED StatusText=VMM attached" \
		"STOPPED Result=success" "STOPPED ExecMainStatus=0" \
		"SOCKET-UNIT active" "BEFORE-CONNECT inactive" "ACTIVATED-PROBE ok" \
		"ACTIVATED-ATTACHED StatusText=VMM attached" "AFTER-CONNECT active" \
		"LISTENERS from systemd" "SOCKET-AFTER-STOP active" "KEPT vhost-user.sock"; do
	grep -qxF "$expected" "$root/boot-test.log" || { echo "FAIL: no line \"$expected\""; failed=1; }
done
exit $failed
