/*
 * fuzz_fds.h - file-descriptor helpers for the fuzzers: counting the open
 * fds (leak checks) and sending a datagram with fds attached.
 *
 * Owns: nothing across calls; every fd it creates is closed or handed to
 * the caller.
 */
#ifndef VSOCKMUX_FUZZ_FDS_H
#define VSOCKMUX_FUZZ_FDS_H

#include <dirent.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "vsockmux/fd_passing.h"

/* Open fds of this process (the directory handle itself not counted). */
static inline int fuzz_count_open_fds(void)
{
	int count = 0;
	DIR *directory = opendir("/proc/self/fd");
	const struct dirent *entry;

	if (!directory)
		return -1;
	while ((entry = readdir(directory)) != NULL) {
		if (entry->d_name[0] != '.')
			count++;
	}
	closedir(directory);
	return count - 1;
}

#define FUZZ_MAX_ATTACHED_FDS 16

/* sendmsg one buffer with fd_count fds in one SCM_RIGHTS message. The fds
 * stay the caller's. Returns what sendmsg returned. */
static inline ssize_t fuzz_send_with_fds(int socket_fd, const void *buffer,
					 size_t length, const int *fds,
					 size_t fd_count)
{
	union {
		char buffer[CMSG_SPACE(sizeof(int) * FUZZ_MAX_ATTACHED_FDS)];
		struct cmsghdr align;
	} control;
	struct iovec iov = { (void *)buffer, length };
	struct msghdr msg;

	memset(&msg, 0, sizeof(msg));
	memset(&control, 0, sizeof(control));
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	if (fd_count > FUZZ_MAX_ATTACHED_FDS)
		fd_count = FUZZ_MAX_ATTACHED_FDS;
	(void)fd_passing_attach(&msg, control.buffer, sizeof(control.buffer), fds,
				fd_count);
	return sendmsg(socket_fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
}

#endif
