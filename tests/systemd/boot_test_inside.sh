#!/bin/sh
# boot_test_inside.sh - runs inside the booted container (nspawn_boot.sh):
# starts, inspects and stops vsockmuxd@vm1, one result line per check,
# then powers the container off.
exec > /boot-test.log 2>&1
systemd-sysusers
mkdir -p /etc/vsockmux
printf 'GUEST_CID=3\nVSOCKMUXD_OPTS=\n' > /etc/vsockmux/vm1.env
systemctl start vsockmuxd@vm1.service
echo "START rc=$?"
echo "ACTIVE $(systemctl is-active vsockmuxd@vm1.service)"
echo "STATUS $(systemctl show -p StatusText vsockmuxd@vm1.service)"
ls -l /run/vsockmux/vm1 | sed 's/^/SOCKETS /'
/usr/local/libexec/vsockmux-attach-probe /run/vsockmux/vm1/vhost-user.sock /run/vsockmux/vm1/vsock.sock
systemd-analyze security vsockmuxd@vm1.service --no-pager 2>&1 | tail -1 | sed 's/^/SECURITY /'
systemctl stop vsockmuxd@vm1.service
for property in Result ExecMainStatus; do
	echo "STOPPED $(systemctl show -p $property vsockmuxd@vm1.service)"
done
# socket activation: systemd holds the sockets, the first connect starts
# the daemon with them
systemctl start vsockmuxd@vm1.socket
echo "SOCKET-UNIT $(systemctl is-active vsockmuxd@vm1.socket)"
echo "BEFORE-CONNECT $(systemctl is-active vsockmuxd@vm1.service)"
/usr/local/libexec/vsockmux-attach-probe /run/vsockmux/vm1/vhost-user.sock /run/vsockmux/vm1/vsock.sock |
	sed 's/^/ACTIVATED-/'
echo "AFTER-CONNECT $(systemctl is-active vsockmuxd@vm1.service)"
journalctl -u vsockmuxd@vm1.service --no-pager |
	grep -q "listeners from the service manager" && echo "LISTENERS from systemd"
systemctl stop vsockmuxd@vm1.service
echo "SOCKET-AFTER-STOP $(systemctl is-active vsockmuxd@vm1.socket)"
ls /run/vsockmux/vm1 | sed 's/^/KEPT /'
systemctl stop vsockmuxd@vm1.socket
journalctl -u vsockmuxd@vm1.service --no-pager | tail -30 | sed 's/^/JOURNAL /'
echo BOOT-TEST-DONE
systemctl poweroff
