/*
 * fd_passing.c - fds into a sendmsg's control data and out of a
 * recvmsg's (fd_passing.h).
 */
#include "vsockmux/fd_passing.h"

#include <string.h>
#include <unistd.h>

int fd_passing_attach(struct msghdr *msg, void *control, size_t capacity,
		      const int *fds, size_t count)
{
	struct cmsghdr *cmsg;

	msg->msg_control = NULL;
	msg->msg_controllen = 0;
	if (count == 0)
		return 0;
	if (count > capacity / sizeof(int) || CMSG_SPACE(sizeof(int) * count) > capacity)
		return -1;
	memset(control, 0, CMSG_SPACE(sizeof(int) * count));
	msg->msg_control = control;
	msg->msg_controllen = CMSG_SPACE(sizeof(int) * count);
	cmsg = CMSG_FIRSTHDR(msg);
	cmsg->cmsg_level = SOL_SOCKET;
	cmsg->cmsg_type = SCM_RIGHTS;
	cmsg->cmsg_len = CMSG_LEN(sizeof(int) * count);
	memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * count);
	return 0;
}

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
