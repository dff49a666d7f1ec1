/*
 * deadline.h - every protocol timeout of the muxer, on one timerfd.
 *
 * Why: a backend that sweeps its timeouts only when a new connection
 * arrives fires them late or never. Here every deadline is armed
 * on a single timerfd and fires on time. All our timeouts have the same
 * length per kind, so each kind is a FIFO (append at the tail = sorted);
 * arming, cancelling and expiring are O(1).
 * Owns: the timerfd and the intrusive lists. Never: allocates.
 */
#ifndef VSOCKMUX_DEADLINE_H
#define VSOCKMUX_DEADLINE_H

#include <stdbool.h>
#include <stdint.h>

struct deadline_entry {
	struct deadline_entry *prev, *next;
	uint64_t expires_ns;      /* CLOCK_MONOTONIC */
	unsigned kind;
	bool armed;
};

#define DEADLINE_MAX_KINDS 4

struct deadline_queue {
	int timer_fd;             /* CLOCK_MONOTONIC timerfd, non-blocking */
	uint64_t timeout_ns[DEADLINE_MAX_KINDS];
	struct deadline_entry *head[DEADLINE_MAX_KINDS];
	struct deadline_entry *tail[DEADLINE_MAX_KINDS];
	uint64_t programmed_ns;   /* what timer_fd is set to, 0 = disarmed */
};

/* Create the timerfd. Returns 0 or a negative errno. */
int deadline_queue_init(struct deadline_queue *queue);
void deadline_queue_destroy(struct deadline_queue *queue);
void deadline_set_timeout(struct deadline_queue *queue, unsigned kind,
			  uint64_t timeout_ns);
/* (Re)arm entry to expire timeout_ns[kind] from now. */
void deadline_arm(struct deadline_queue *queue, struct deadline_entry *entry,
		  unsigned kind);
void deadline_cancel(struct deadline_queue *queue, struct deadline_entry *entry);
/*
 * Pop one expired entry (disarmed), or NULL when none is due at now_ns.
 * Call after reading the timerfd, in a loop, then deadline_reprogram.
 */
struct deadline_entry *deadline_pop_expired(struct deadline_queue *queue,
					    uint64_t now_ns);
/* Point the timerfd at the earliest armed deadline (or disarm it). */
void deadline_reprogram(struct deadline_queue *queue);
/* Read the timerfd's expiry count (non-blocking). */
void deadline_acknowledge(struct deadline_queue *queue);

#endif
