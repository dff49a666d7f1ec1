/*
 * fd_passing.h - the file descriptors that came with one recvmsg
 * (SCM_RIGHTS), for every socket that takes fds from a peer: the broker
 * channel (proto/ipc_channel.c) and the vhost-user frontend
 * (daemon/vhost_user.c).
 *
 * Owns: walking the control messages. Never: leaves an fd open that the
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

/* Store up to capacity fds from msg's SCM_RIGHTS messages into fds. */
struct fd_passing_result fd_passing_collect(const struct msghdr *msg, int *fds,
					    size_t capacity);

#endif
