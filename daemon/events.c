/*
 * events.c - epoll registrations of the muxer and their tags (events.h).
 *
 * Never: blocks, or leaves a failed epoll_ctl unlogged.
 */
#include "events.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>

#include "vsockmux/log.h"

#define HOST_EVENTS (EPOLLIN | EPOLLRDHUP | EPOLLET)

static int control(int epoll_fd, int operation, int fd, uint32_t events,
		   uint64_t tag)
{
	struct epoll_event event = { .events = events, .data.u64 = tag };

	if (epoll_ctl(epoll_fd, operation, fd, &event) < 0) {
		int error = errno;
		log_error("epoll_ctl(%s fd %d): %s",
			  operation == EPOLL_CTL_ADD ? "ADD" : "MOD", fd, strerror(error));
		return -error;
	}
	return 0;
}

int events_add(int epoll_fd, int fd, uint32_t events, uint64_t tag)
{
	return control(epoll_fd, EPOLL_CTL_ADD, fd, events, tag);
}

int events_modify(int epoll_fd, int fd, uint32_t events, uint64_t tag)
{
	return control(epoll_fd, EPOLL_CTL_MOD, fd, events, tag);
}

void events_remove(int epoll_fd, int fd)
{
	(void)epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd, NULL);
}

int events_watch_host(int epoll_fd, int fd, uint32_t generation, uint32_t slot)
{
	return events_add(epoll_fd, fd, HOST_EVENTS,
			  tag_encode(EVENT_HOST, generation, slot));
}

int events_host_interest(int epoll_fd, int fd, uint32_t generation, uint32_t slot,
			 bool writable)
{
	return events_modify(epoll_fd, fd, HOST_EVENTS | (writable ? EPOLLOUT : 0u),
			     tag_encode(EVENT_HOST, generation, slot));
}
