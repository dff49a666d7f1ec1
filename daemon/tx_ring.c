/*
 * tx_ring.c - per-connection byte ring for guest-to-host data the host
 * socket would not take yet (see tx_ring.h).
 *
 * Owns: the ring storage. It is malloc'ed (capacity bytes, once) on the
 * first append and freed as soon as a flush drains the ring, so an idle
 * connection holds no buffer.
 * Never: grows past capacity, allocates anything else, or blocks (the fd
 * is the caller's, normally non-blocking).
 */
#include "tx_ring.h"

#include <errno.h>
#include <stdlib.h>

#include "vsockmux/iov.h"

void tx_ring_init(struct tx_ring *ring, uint32_t capacity)
{
	ring->storage = NULL;
	ring->capacity = capacity;
	ring->head = 0;
	ring->used = 0;
}

void tx_ring_clear(struct tx_ring *ring)
{
	free(ring->storage);
	ring->storage = NULL;
	ring->head = 0;
	ring->used = 0;
}

/* Offset of the byte position + head, wrapped. 64-bit: no u32 overflow. */
static uint32_t ring_offset(const struct tx_ring *ring, uint64_t distance)
{
	uint64_t offset = (uint64_t)ring->head + distance;

	if (offset >= ring->capacity)
		offset -= ring->capacity;
	return (uint32_t)offset;
}

int tx_ring_append_iov(struct tx_ring *ring, const struct iovec *iov,
		       size_t count, size_t offset, size_t length)
{
	size_t available = iov_total_length(iov, count);
	uint32_t tail, first;

	if (length == 0)
		return 0;
	if (length > tx_ring_free(ring))
		return -ENOSPC;
	/* The source must really hold [offset, offset + length). */
	if (offset > available || length > available - offset)
		return -EINVAL;
	if (ring->storage == NULL) {
		ring->storage = malloc(ring->capacity);
		if (ring->storage == NULL)
			return -ENOMEM;
		ring->head = 0;
	}

	/* Copy up to the end of storage, then the rest at the start. */
	tail = ring_offset(ring, ring->used);
	first = ring->capacity - tail;
	if (first > length)
		first = (uint32_t)length;
	iov_copy_out(iov, count, offset, ring->storage + tail, first);
	iov_copy_out(iov, count, offset + first, ring->storage,
		     length - first);
	ring->used += (uint32_t)length;
	return 0;
}

ssize_t tx_ring_flush(struct tx_ring *ring, int fd)
{
	struct iovec halves[2];
	int halves_count = 1;
	uint32_t first;
	ssize_t written;

	if (ring->used == 0)
		return 0;

	first = ring->capacity - ring->head;
	if (first > ring->used)
		first = ring->used;
	halves[0].iov_base = ring->storage + ring->head;
	halves[0].iov_len = first;
	if (first < ring->used) {
		halves[1].iov_base = ring->storage;
		halves[1].iov_len = ring->used - first;
		halves_count = 2;
	}

	do
		written = writev(fd, halves, halves_count);
	while (written < 0 && errno == EINTR);
	if (written < 0)
		return -errno;
	/* A stream socket never takes 0 of a non-empty write; treat as full. */
	if (written == 0)
		return -EAGAIN;

	ring->head = ring_offset(ring, (uint64_t)written);
	ring->used -= (uint32_t)written;
	if (ring->used == 0)
		tx_ring_clear(ring);
	return written;
}
