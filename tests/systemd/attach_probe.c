/*
 * attach_probe.c - the virtual guest against a daemon someone else
 * started (here: systemd, inside the boot-test container). Attaches as a
 * VMM to VHOST_USER_SOCKET, listens on guest port 52, connects a host
 * client to HOST_SOCKET with "CONNECT 52", and moves a line each way.
 * Prints "PROBE ok" or "PROBE fail: why"; exit status 0 or 1.
 *
 * Owns: nothing beyond its run. Never: waits without a bound (every wait
 * is a poll of at most a few seconds in all).
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "vguest.h"

#define PROBE_PORT 52u
#define PROBE_ROUNDS 500    /* of at most 10 ms each */

static int fail(const char *why, const char *detail)
{
	printf("PROBE fail: %s%s%s\n", why, detail ? ": " : "", detail ? detail : "");
	return 1;
}

/* Run the guest until got has length bytes from sock (or rounds run out). */
static int guest_read(struct vguest *vg, struct vguest_sock *sock, char *got, size_t length)
{
	size_t done = 0;
	for (int round = 0; round < PROBE_ROUNDS && done < length; round++) {
		ssize_t n;
		vguest_poll(vg, 10);
		n = vguest_recv(sock, got + done, length - done);
		if (n > 0)
			done += (size_t)n;
	}
	return done == length ? 0 : -1;
}

int main(int argc, char **argv)
{
	struct sockaddr_un address = { .sun_family = AF_UNIX };
	struct vguest_options options;
	struct vguest_sock *listener, *g = NULL;
	struct vguest *vg;
	char reply[64], got[16];
	size_t have = 0;
	int fd, result = 1;

	if (argc != 3) {
		fprintf(stderr, "usage: %s VHOST_USER_SOCKET HOST_SOCKET\n", argv[0]);
		return 2;
	}
	vguest_options_default(&options);
	vg = vguest_create(&options);
	if (!vg || vguest_connect(vg, argv[1]) != 0)
		return fail("attach", vg ? vguest_error(vg) : strerror(errno));
	listener = vguest_listen(vg, PROBE_PORT);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	snprintf(address.sun_path, sizeof(address.sun_path), "%s", argv[2]);
	if (!listener || fd < 0 || connect(fd, (struct sockaddr *)&address, sizeof(address)) != 0 ||
	    write(fd, "CONNECT 52\nping", 15) != 15) {
		result = fail("host client", strerror(errno));
		goto out;
	}
	for (int round = 0; round < PROBE_ROUNDS && !g; round++) {
		vguest_poll(vg, 10);
		g = vguest_accept(listener);
	}
	if (!g || guest_read(vg, g, got, 4) != 0 || memcmp(got, "ping", 4) != 0) {
		result = fail("host to guest", vguest_error(vg));
		goto out;
	}
	if (vguest_send(g, "pong", 4) != 4) {
		result = fail("guest send", strerror(errno));
		goto out;
	}
	/* the OK line, then the guest's bytes */
	for (int round = 0; round < PROBE_ROUNDS && (have < 4 || !memchr(reply, '\n', have) ||
						      strstr(reply, "pong") == NULL); round++) {
		struct pollfd ready = { .fd = fd, .events = POLLIN };
		ssize_t n;
		vguest_poll(vg, 5);
		if (poll(&ready, 1, 5) > 0 && (n = read(fd, reply + have, sizeof(reply) - 1 - have)) > 0) {
			have += (size_t)n;
			reply[have] = '\0';
		}
	}
	reply[have] = '\0';
	if (strncmp(reply, "OK ", 3) != 0 || strstr(reply, "\npong") == NULL) {
		result = fail("guest to host", reply);
		goto out;
	}
	printf("PROBE ok\n");
	fflush(stdout);
	/* still attached: what the service manager shows now */
	result = system("echo \"ATTACHED $(systemctl show -p StatusText vsockmuxd@vm1.service)\"") == 0 ? 0 : 1;
out:
	if (fd >= 0)
		close(fd);
	vguest_destroy(vg);
	return result;
}
