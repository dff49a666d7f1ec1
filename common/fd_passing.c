/*
 * fd_passing.c - fds out of one recvmsg's control data (fd_passing.h).
 */
#include "vsockmux/fd_passing.h"

#include <string.h>
#include <unistd.h>

struct fd_passing_result fd_passing_collect(const struct msghdr *msg, int *fds,
					    size_t capacity)
{
	struct fd_passing_result result = { 0 };

	for (struct cmsghdr *cmsg = CMSG_FIRSTHDR(msg); cmsg != NULL;
	     cmsg = CMSG_NXTHDR((struct msghdr *)msg, cmsg)) {
		size_t count;

		if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) {
			result.other_messages = true;
			continue;
		}
		if (cmsg->cmsg_len < CMSG_LEN(0))
			continue;
		count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < count; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(cmsg) + i * sizeof(int), sizeof(fd));
			if (result.kept < capacity) {
				fds[result.kept++] = fd;
			} else {
				close(fd);
				result.closed++;
			}
		}
	}
	return result;
}
