/*
 * service_manager.c - notifications to the service manager through
 * libsystemd's sd_notify: READY=1 once the listeners are up (so that a
 * Type=notify unit is "active" only when QEMU can connect), STATUS= when
 * a VMM attaches or leaves, STOPPING=1 on shutdown.
 *
 * Why libsystemd and not a hand-written datagram: the protocol has details
 * (abstract socket names, buffer sizes, credentials) that the library
 * keeps right across systemd versions. Its calls after the broker's
 * seccomp filter are listed in policy/broker.policy.
 *
 * Owns: the notification texts. Never: fails or blocks the daemon. Without
 * NOTIFY_SOCKET (not started by a service manager) every call does nothing.
 */
#include <stdbool.h>

#include <systemd/sd-daemon.h>

#include "service_manager.h"
#include "vsockmux/log.h"

void service_manager_ready(const char *vhost_user_path)
{
	int result = sd_notifyf(0, "READY=1\nSTATUS=waiting for a VMM on %s",
				vhost_user_path);
	if (result < 0)
		log_warn("sd_notify READY=1: error %d", -result);
}

void service_manager_vmm(bool attached, const char *vhost_user_path)
{
	int result = attached ? sd_notify(0, "STATUS=VMM attached") :
			       sd_notifyf(0, "STATUS=waiting for a VMM on %s",
					  vhost_user_path);
	if (result < 0)
		log_debug("sd_notify STATUS: error %d", -result);
}

void service_manager_stopping(void)
{
	int result = sd_notify(0, "STOPPING=1");
	if (result < 0)
		log_debug("sd_notify STOPPING=1: error %d", -result);
}
