/*
 * fd_passing.h - file descriptors over SCM_RIGHTS: attaching them to a
 * sendmsg, and collecting the ones that came with one recvmsg, for every
 * socket that passes fds: the broker channel (proto/ipc_channel.c), the
 * vhost-user frontend (daemon/vhost_user.c) and the tests' peers.
 *
 * Owns: building and walking the control messages. Never: leaves an fd open that the
 * caller was not given (the ones beyond capacity are closed here).
 */
#ifndef VSOCKMUX_FD_PASSING_H
#define VSOCKMUX_FD_PASSING_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct fd_passing_result {
	size_t kept;            /* fds stored in the caller's array */
	size_t closed;          /* fds beyond its capacity, closed here */
	bool other_messages;    /* control data other than SCM_RIGHTS came */
};

/* Attach count fds to msg as one SCM_RIGHTS message, built in control
 * (capacity bytes, aligned for struct cmsghdr). No fds: msg gets no
 * control data. Returns 0, or -1 if they do not fit. The fds stay the
 * caller's. */
int fd_passing_attach(struct msghdr *msg, void *control, size_t capacity,
		      const int *fds, size_t count);

/* Store up to capacity fds from msg's SCM_RIGHTS messages into fds. */
struct fd_passing_result fd_passing_collect(const struct msghdr *msg, int *fds,
					    size_t capacity);

#endif
