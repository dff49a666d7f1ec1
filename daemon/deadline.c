/*
 * deadline.c - all muxer timeouts on one CLOCK_MONOTONIC timerfd (see
 * deadline.h).
 *
 * Each kind has a single timeout length, so arming appends at the tail of
 * that kind's FIFO and every FIFO stays sorted by expiry. The earliest
 * deadline overall is the earliest of at most DEADLINE_MAX_KINDS heads.
 *
 * Owns: the timerfd and the list links inside the entries.
 * Never: allocates, or reprograms the timerfd on cancel (a cancelled head
 * only costs one early wake-up: pop then returns NULL and the caller's
 * deadline_reprogram moves the timer on).
 */
#include "deadline.h"

#include <errno.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "vsockmux/log.h"

#define NS_PER_SECOND 1000000000ull

int deadline_queue_init(struct deadline_queue *queue)
{
	memset(queue, 0, sizeof(*queue));
	queue->timer_fd = timerfd_create(CLOCK_MONOTONIC,
					 TFD_NONBLOCK | TFD_CLOEXEC);
	if (queue->timer_fd < 0)
		return -errno;
	return 0;
}

static void unlink_entry(struct deadline_queue *queue,
			 struct deadline_entry *entry)
{
	unsigned kind = entry->kind;

	if (entry->prev != NULL)
		entry->prev->next = entry->next;
	else
		queue->head[kind] = entry->next;
	if (entry->next != NULL)
		entry->next->prev = entry->prev;
	else
		queue->tail[kind] = entry->prev;
	entry->prev = NULL;
	entry->next = NULL;
	entry->armed = false;
}

void deadline_queue_destroy(struct deadline_queue *queue)
{
	/* Disarm every entry so none points into a dead queue. */
	for (unsigned kind = 0; kind < DEADLINE_MAX_KINDS; kind++) {
		while (queue->head[kind] != NULL)
			unlink_entry(queue, queue->head[kind]);
	}
	if (queue->timer_fd >= 0)
		close(queue->timer_fd);
	queue->timer_fd = -1;
	queue->programmed_ns = 0;
}

void deadline_set_timeout(struct deadline_queue *queue, unsigned kind,
			  uint64_t timeout_ns)
{
	if (kind >= DEADLINE_MAX_KINDS) {
		log_error("deadline: timeout for unknown kind %u", kind);
		return;
	}
	queue->timeout_ns[kind] = timeout_ns;
}

void deadline_arm(struct deadline_queue *queue, struct deadline_entry *entry,
		  unsigned kind)
{
	if (kind >= DEADLINE_MAX_KINDS) {
		log_error("deadline: arm for unknown kind %u", kind);
		return;
	}
	if (entry->armed)
		unlink_entry(queue, entry);

	entry->kind = kind;
	entry->expires_ns = monotonic_ns() + queue->timeout_ns[kind];
	entry->next = NULL;
	entry->prev = queue->tail[kind];
	if (queue->tail[kind] != NULL)
		queue->tail[kind]->next = entry;
	else
		queue->head[kind] = entry;
	queue->tail[kind] = entry;
	entry->armed = true;

	if (queue->programmed_ns == 0 || entry->expires_ns < queue->programmed_ns)
		deadline_reprogram(queue);
}

void deadline_cancel(struct deadline_queue *queue, struct deadline_entry *entry)
{
	if (entry->armed)
		unlink_entry(queue, entry);
}

/* The armed entry that expires first (lowest kind on ties), or NULL. */
static struct deadline_entry *earliest_entry(const struct deadline_queue *queue)
{
	struct deadline_entry *earliest = NULL;

	for (unsigned kind = 0; kind < DEADLINE_MAX_KINDS; kind++) {
		struct deadline_entry *head = queue->head[kind];

		if (head != NULL &&
		    (earliest == NULL || head->expires_ns < earliest->expires_ns))
			earliest = head;
	}
	return earliest;
}

struct deadline_entry *deadline_pop_expired(struct deadline_queue *queue,
					    uint64_t now_ns)
{
	struct deadline_entry *earliest = earliest_entry(queue);

	if (earliest == NULL || earliest->expires_ns > now_ns)
		return NULL;
	unlink_entry(queue, earliest);
	return earliest;
}

void deadline_reprogram(struct deadline_queue *queue)
{
	const struct deadline_entry *earliest = earliest_entry(queue);
	/* 0 means disarmed; a real CLOCK_MONOTONIC deadline is never 0. */
	uint64_t target_ns = earliest != NULL ? earliest->expires_ns : 0;
	struct itimerspec spec;

	if (target_ns == queue->programmed_ns)
		return;

	memset(&spec, 0, sizeof(spec));
	spec.it_value.tv_sec = (time_t)(target_ns / NS_PER_SECOND);
	spec.it_value.tv_nsec = (long)(target_ns % NS_PER_SECOND);
	if (timerfd_settime(queue->timer_fd, TFD_TIMER_ABSTIME, &spec, NULL) < 0) {
		log_error("deadline: timerfd_settime: %s", strerror(errno));
		/* Unknown timer state: make the next reprogram try again. */
		queue->programmed_ns = UINT64_MAX;
		return;
	}
	queue->programmed_ns = target_ns;
}

void deadline_acknowledge(struct deadline_queue *queue)
{
	uint64_t expirations;
	ssize_t got;

	do
		got = read(queue->timer_fd, &expirations, sizeof(expirations));
	while (got < 0 && errno == EINTR);
	if (got < 0 && errno != EAGAIN)
		log_error("deadline: timerfd read: %s", strerror(errno));
}
