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
 * Socket activation (sd_listen_fds_with_names) hands over the three
 * listeners already bound, with the owner and mode the .socket unit
 * gives them, so nothing has to be chowned at start.
 *
 * Owns: the notification texts and the names of the activated sockets. Never: fails or blocks the daemon. Without
 * NOTIFY_SOCKET (not started by a service manager) every call does nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "broker.h"
#include "service_manager.h"
#include "vsockmux/log.h"

/* The slot in listeners for an activated socket's name, or NULL. */
static int *slot_for_name(struct broker_listeners *listeners, const char *name)
{
	if (strcmp(name, "vhost-user") == 0)
		return &listeners->vhost_user_fd;
	if (strcmp(name, "host") == 0)
		return &listeners->host_fd;
	if (strcmp(name, "control") == 0)
		return &listeners->control_fd;
	return NULL;
}

int service_manager_listeners(struct broker_listeners *listeners)
{
	char **names = NULL;
	int count = sd_listen_fds_with_names(1, &names);
	int result = -1;
	bool by_order;

	if (count == 0)
		return 0;
	if (count < 0) {
		log_error("socket activation: %s", strerror(-count));
		return -1;
	}
	/* One .socket unit gives all its sockets the same name (the unit's):
	 * then they count in the order of its ListenStream= lines. */
	by_order = count == 3 && names && names[0] && names[1] && names[2] &&
		   strcmp(names[0], names[1]) == 0 && strcmp(names[1], names[2]) == 0 &&
		   !slot_for_name(listeners, names[0]);
	for (int i = 0; i < count; i++) {
		static const char *const in_order[] = { "vhost-user", "host", "control" };
		int fd = SD_LISTEN_FDS_START + i;
		const char *name = by_order ? in_order[i] :
				   names && names[i] ? names[i] : "unknown";
		int *slot = slot_for_name(listeners, name);
		int flags;

		if (!slot || *slot >= 0) {
			log_error("socket activation: unexpected socket \"%s\" (name them "
				  "vhost-user, host and control, once each, with "
				  "FileDescriptorName=, or pass exactly three from one "
				  ".socket unit in that order)", name);
			goto out;
		}
		if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) <= 0) {
			log_error("socket activation: \"%s\" is not a listening Unix "
				  "stream socket", name);
			goto out;
		}
		flags = fcntl(fd, F_GETFL);
		if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
			log_error("socket activation: \"%s\": %s", name, strerror(errno));
			goto out;
		}
		*slot = fd;
	}
	if (listeners->vhost_user_fd < 0 || listeners->host_fd < 0 ||
	    listeners->control_fd < 0) {
		log_error("socket activation: vhost-user, host and control are all "
			  "needed (%d sockets passed)", count);
		goto out;
	}
	listeners->activated = true;
	log_info("listeners from the service manager (socket activation)");
	result = 1;
out:
	if (result < 0) {
		for (int i = 0; i < count; i++)
			close(SD_LISTEN_FDS_START + i);
		listeners->vhost_user_fd = listeners->host_fd = listeners->control_fd = -1;
	}
	for (int i = 0; names && i < count; i++)
		free(names[i]);
	free(names);
	return result;
}

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
