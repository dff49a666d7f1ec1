/*
 * tx_ring.h - the per-connection byte ring that holds guest-to-host data a
 * full host socket would not take.
 *
 * Why: the fast path writes straight from the guest's TX buffers to the
 * host socket (writev). Only the remainder is copied here, and the storage
 * exists only while it holds data: an idle connection costs no buffer.
 * Owns: its storage (malloc on first byte, free when drained).
 * Never: grows beyond capacity (the guest's credit, our buf_alloc).
 */
#ifndef VSOCKMUX_TX_RING_H
#define VSOCKMUX_TX_RING_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

struct tx_ring {
	uint8_t *storage;     /* NULL while empty */
	uint32_t capacity;
	uint32_t head;        /* offset of the first buffered byte */
	uint32_t used;        /* bytes buffered */
};

void tx_ring_init(struct tx_ring *ring, uint32_t capacity);
/* Free storage; ring becomes empty. */
void tx_ring_clear(struct tx_ring *ring);
static inline uint32_t tx_ring_used(const struct tx_ring *ring)
{
	return ring->used;
}
static inline uint32_t tx_ring_free(const struct tx_ring *ring)
{
	return ring->capacity - ring->used;
}
/*
 * Append length bytes gathered from iov (starting offset bytes into it).
 * Returns 0, -ENOSPC if they do not fit (nothing appended), or -ENOMEM.
 */
int tx_ring_append_iov(struct tx_ring *ring, const struct iovec *iov,
		       size_t count, size_t offset, size_t length);
/*
 * writev() the buffered bytes (both wrapped halves at once) to fd with
 * MSG_NOSIGNAL semantics (the caller ignores SIGPIPE). Returns bytes
 * written (> 0), 0 if the ring was empty, or a negative errno (-EAGAIN
 * included). Storage is freed when the ring drains.
 */
ssize_t tx_ring_flush(struct tx_ring *ring, int fd);

#endif
