/*
 * events.h - the muxer's epoll set: what each registration's tag means,
 * and adding, changing and removing registrations.
 *
 * Why tags and not pointers: a host socket's connection slot is reused,
 * and an event can still be queued for the slot's previous owner. The tag
 * (vsockmux/tag.h) carries the slot's generation, so a stale event finds
 * no connection.
 *
 * Owns: the event kinds. Never: knows what a connection is; callers pass
 * plain numbers.
 */
#ifndef VSOCKMUX_EVENTS_H
#define VSOCKMUX_EVENTS_H

#include <stdbool.h>
#include <stdint.h>

#include "vsockmux/tag.h"

enum event_kind {
	EVENT_CHANNEL = 1,     /* the broker channel */
	EVENT_VHOST_USER,      /* the frontend's socket */
	EVENT_KICK_RX,         /* the RX queue's kick eventfd */
	EVENT_KICK_TX,         /* the TX queue's kick eventfd */
	EVENT_KICK_EVENT,      /* the event queue's kick eventfd */
	EVENT_TIMER,           /* the deadline timerfd */
	EVENT_HOST,            /* a connection's host socket */
};

/* epoll_ctl ADD; -errno (logged) on failure. */
int events_add(int epoll_fd, int fd, uint32_t events, uint64_t tag);
/* epoll_ctl MOD; -errno (logged) on failure. */
int events_modify(int epoll_fd, int fd, uint32_t events, uint64_t tag);
/* epoll_ctl DEL; an fd not registered is fine. */
void events_remove(int epoll_fd, int fd);

/* A host socket: edge-triggered readable, plus writable when asked. */
int events_watch_host(int epoll_fd, int fd, uint32_t generation, uint32_t slot);
int events_host_interest(int epoll_fd, int fd, uint32_t generation, uint32_t slot,
			 bool writable);

#endif
