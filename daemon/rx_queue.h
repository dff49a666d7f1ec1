/*
 * rx_queue.h - the connections that have something for the guest (a
 * control packet owed, or host data and credit to send it), in the order
 * they get a turn on the RX queue.
 *
 * Why intrusive: a connection is queued at most once, joining and leaving
 * are O(1) and never allocate, and a connection that is freed leaves the
 * queue in the same step.
 *
 * Owns: the order. Never: knows what is queued; the link sits inside the
 * queued object (struct conn's rx_work).
 */
#ifndef VSOCKMUX_RX_QUEUE_H
#define VSOCKMUX_RX_QUEUE_H

#include <stdbool.h>
#include <stddef.h>

struct rx_link {
	struct rx_link *next, *prev;
	bool queued;
};

struct rx_queue {
	struct rx_link *head, *tail;
};

/* At the back; nothing if already queued. */
void rx_queue_push_back(struct rx_queue *queue, struct rx_link *link);
/* At the front (it keeps its turn: the guest ran out of buffers). */
void rx_queue_push_front(struct rx_queue *queue, struct rx_link *link);
/* Out of the queue; nothing if not queued. */
void rx_queue_remove(struct rx_queue *queue, struct rx_link *link);
/* The first one, removed; NULL when empty. */
struct rx_link *rx_queue_pop(struct rx_queue *queue);

static inline bool rx_queue_empty(const struct rx_queue *queue)
{
	return queue->head == NULL;
}

#endif
