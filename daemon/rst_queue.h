/*
 * rst_queue.h - RSTs owed to the guest for port pairs that have no
 * connection (any more): a refused connect, a packet for nothing, a reset
 * connection whose slot is already free.
 *
 * Why a queue and not a connection: a guest can make us owe RSTs far
 * faster than it posts RX buffers; each costs 8 bytes here, and guest
 * packets pause while too many wait (guest_tx.c), so nothing is lost.
 *
 * Owns: a ring of port pairs, oldest first. Never: allocates after init,
 * counts or logs (the caller does).
 */
#ifndef VSOCKMUX_RST_QUEUE_H
#define VSOCKMUX_RST_QUEUE_H

#include <stdbool.h>
#include <stdint.h>

struct rst_owed {
	uint32_t local_port;
	uint32_t peer_port;
};

struct rst_queue {
	struct rst_owed *entries;
	uint32_t capacity, head, count;
};

/* 0, or -ENOMEM. */
int rst_queue_init(struct rst_queue *queue, uint32_t capacity);
void rst_queue_destroy(struct rst_queue *queue);
/* false when the queue is full (the RST is not queued). */
bool rst_queue_push(struct rst_queue *queue, uint32_t local_port, uint32_t peer_port);
/* Drop the RSTs queued for a port pair that is about to be used again. */
void rst_queue_forget(struct rst_queue *queue, uint32_t local_port, uint32_t peer_port);
/* The oldest entry (count > 0), and removing it. */
const struct rst_owed *rst_queue_oldest(const struct rst_queue *queue);
void rst_queue_pop(struct rst_queue *queue);
void rst_queue_clear(struct rst_queue *queue);

#endif
