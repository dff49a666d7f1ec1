/*
 * rx_queue.c - the intrusive FIFO of connections with RX work
 * (rx_queue.h).
 */
#include "rx_queue.h"

void rx_queue_push_back(struct rx_queue *queue, struct rx_link *link)
{
	if (link->queued)
		return;
	link->queued = true;
	link->next = NULL;
	link->prev = queue->tail;
	if (queue->tail)
		queue->tail->next = link;
	else
		queue->head = link;
	queue->tail = link;
}

void rx_queue_push_front(struct rx_queue *queue, struct rx_link *link)
{
	if (link->queued)
		return;
	link->queued = true;
	link->prev = NULL;
	link->next = queue->head;
	if (queue->head)
		queue->head->prev = link;
	else
		queue->tail = link;
	queue->head = link;
}

void rx_queue_remove(struct rx_queue *queue, struct rx_link *link)
{
	if (!link->queued)
		return;
	if (link->prev)
		link->prev->next = link->next;
	else
		queue->head = link->next;
	if (link->next)
		link->next->prev = link->prev;
	else
		queue->tail = link->prev;
	link->next = link->prev = NULL;
	link->queued = false;
}

struct rx_link *rx_queue_pop(struct rx_queue *queue)
{
	struct rx_link *link = queue->head;

	if (link)
		rx_queue_remove(queue, link);
	return link;
}
