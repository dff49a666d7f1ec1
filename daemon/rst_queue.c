/*
 * rst_queue.c - the ring of RSTs owed for port pairs with no connection
 * (rst_queue.h).
 */
#include "rst_queue.h"

#include <errno.h>
#include <stdlib.h>

int rst_queue_init(struct rst_queue *queue, uint32_t capacity)
{
	queue->entries = calloc(capacity, sizeof(*queue->entries));
	queue->capacity = queue->entries ? capacity : 0;
	queue->head = 0;
	queue->count = 0;
	return queue->entries ? 0 : -ENOMEM;
}

void rst_queue_destroy(struct rst_queue *queue)
{
	free(queue->entries);
	queue->entries = NULL;
	queue->capacity = queue->head = queue->count = 0;
}

bool rst_queue_push(struct rst_queue *queue, uint32_t local_port, uint32_t peer_port)
{
	uint32_t tail;

	if (queue->count == queue->capacity)
		return false;
	tail = (queue->head + queue->count) % queue->capacity;
	queue->entries[tail].local_port = local_port;
	queue->entries[tail].peer_port = peer_port;
	queue->count++;
	return true;
}

void rst_queue_forget(struct rst_queue *queue, uint32_t local_port, uint32_t peer_port)
{
	uint32_t kept = 0;

	/* compact in place; the queue is almost always empty */
	for (uint32_t i = 0; i < queue->count; i++) {
		struct rst_owed entry = queue->entries[(queue->head + i) % queue->capacity];
		if (entry.local_port == local_port && entry.peer_port == peer_port)
			continue;
		queue->entries[(queue->head + kept) % queue->capacity] = entry;
		kept++;
	}
	queue->count = kept;
}

const struct rst_owed *rst_queue_oldest(const struct rst_queue *queue)
{
	return &queue->entries[queue->head];
}

void rst_queue_pop(struct rst_queue *queue)
{
	queue->head = (queue->head + 1) % queue->capacity;
	queue->count--;
}

void rst_queue_clear(struct rst_queue *queue)
{
	queue->head = 0;
	queue->count = 0;
}
