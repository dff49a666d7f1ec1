/*
 * rx_buffers.c - the guest's RX buffers the muxer holds: popped from the
 * RX ring, filled, published (used) or handed back unused.
 *
 * Why spares: one readv fills several buffers, and a short read leaves
 * some unfilled; they are kept (oldest first) for the next packet rather
 * than pushed back, because a used entry cannot be taken back. They go
 * back to the guest, used with length 0, when the ring stops or the memory
 * table changes, so no buffer is ever lost; a ring that is gone takes them
 * with it.
 *
 * Owns: the MUXER_RX_BATCH slots, their segment pool and the spare FIFO.
 * Never: decides what goes into a buffer (conn.c and guest_rx.c do).
 */
#include "rx_buffers.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "muxer.h"
#include "vsockmux/iov.h"
#include "vsockmux/log.h"

int rx_buffers_init(struct muxer *muxer)
{
	muxer->rx_segment_pool = calloc((size_t)MUXER_RX_BATCH * MUXER_RX_SEGMENTS,
					sizeof(*muxer->rx_segment_pool));
	if (!muxer->rx_segment_pool)
		return -ENOMEM;
	for (unsigned slot = 0; slot < MUXER_RX_BATCH; slot++)
		muxer->rx_slots[slot].iov = muxer->rx_segment_pool +
					    (size_t)slot * MUXER_RX_SEGMENTS;
	return 0;
}

void rx_buffers_destroy(struct muxer *muxer)
{
	free(muxer->rx_segment_pool);
	muxer->rx_segment_pool = NULL;
}

/*
 * RX buffer slots. A slot is free, taken (being filled this turn) or spare
 * (popped earlier and not used: a host read came up short). Spares are
 * used oldest first, and handed back to the guest (used, length 0) when the
 * ring stops or the memory table changes, so that no buffer is ever lost.
 */
static int free_slot(const struct muxer *muxer)
{
	for (unsigned slot = 0; slot < MUXER_RX_BATCH; slot++) {
		if (!muxer->rx_slot_taken[slot])
			return (int)slot;
	}
	return -1;
}

static void release_slot(struct muxer *muxer, int slot)
{
	muxer->rx_slot_taken[slot] = false;
}

/* Keep slot as spare; at_front: it was the oldest (taken back out of the
 * FIFO's head, or popped while the FIFO was empty). */
void rx_buffers_keep_spare(struct muxer *muxer, int slot, bool at_front)
{
	uint32_t position;
	if (at_front) {
		muxer->spare_rx_head = (muxer->spare_rx_head + MUXER_RX_BATCH - 1) %
				       MUXER_RX_BATCH;
		position = muxer->spare_rx_head;
	} else {
		position = (muxer->spare_rx_head + muxer->spare_rx_count) %
			   MUXER_RX_BATCH;
	}
	muxer->spare_rx[position] = (uint8_t)slot;
	muxer->spare_rx_count++;
}

/* Next guest RX buffer slot (taken): the oldest spare, else a fresh pop.
 * -1 when the guest has none. */
int rx_buffers_take(struct muxer *muxer)
{
	struct virtq *queue = &muxer->device.queues[VSOCK_QUEUE_RX];
	for (;;) {
		struct rx_buffer *buffer;
		int slot;
		if (muxer->spare_rx_count > 0) {
			slot = muxer->spare_rx[muxer->spare_rx_head];
			muxer->spare_rx_head = (muxer->spare_rx_head + 1) % MUXER_RX_BATCH;
			muxer->spare_rx_count--;
			return slot;
		}
		slot = free_slot(muxer);
		if (slot < 0 || muxer->rx_rejects_left == 0)
			return -1;
		buffer = &muxer->rx_slots[slot];
		if (virtq_pop(queue, &muxer->device.memory, buffer->iov,
			      MUXER_RX_SEGMENTS, &buffer->chain) != 1)
			return -1;
		if (buffer->chain.length > VSOCK_HEADER_SIZE) {
			muxer->rx_slot_taken[slot] = true;
			return slot;
		}
		/* Every buffer must fit a header and some payload: a header-only
		 * buffer left in the spare stash would block data for good. */
		muxer->rx_rejects_left--;
		muxer->stats.dropped[DROP_RX_BUFFER_TOO_SMALL]++;
		log_ratelimited(&muxer->packet_log, LOG_LEVEL_WARN,
				"guest RX buffer of %zu bytes has no room for payload",
				buffer->chain.length);
		virtq_push(queue, buffer->chain.head, 0);
	}
}

/* Hand every spare buffer back to the guest unused (length 0, which a
 * Linux driver drops and reposts) while the ring is still ours. */
void rx_buffers_return_spares(struct muxer *muxer)
{
	struct virtq *queue = &muxer->device.queues[VSOCK_QUEUE_RX];
	while (muxer->spare_rx_count > 0) {
		int slot = muxer->spare_rx[muxer->spare_rx_head];
		virtq_push(queue, muxer->rx_slots[slot].chain.head, 0);
		release_slot(muxer, slot);
		muxer->spare_rx_head = (muxer->spare_rx_head + 1) % MUXER_RX_BATCH;
		muxer->spare_rx_count--;
	}
	virtq_notify(queue);
}

/* Forget spare buffers whose ring is gone (reset, detach). */
void rx_buffers_forget(struct muxer *muxer)
{
	memset(muxer->rx_slot_taken, 0, sizeof(muxer->rx_slot_taken));
	muxer->spare_rx_head = 0;
	muxer->spare_rx_count = 0;
}

void rx_buffers_header(const struct muxer *muxer, struct vsock_header *header,
		       uint32_t local_port, uint32_t peer_port, uint16_t op)
{
	memset(header, 0, sizeof(*header));
	header->src_cid = VSOCK_HOST_CID;
	header->dst_cid = muxer->options->guest_cid;
	header->src_port = local_port;
	header->dst_port = peer_port;
	header->type = VSOCK_TYPE_STREAM;
	header->op = op;
}

void rx_buffers_publish(struct muxer *muxer, int slot,
			const struct vsock_header *header)
{
	const struct rx_buffer *buffer = &muxer->rx_slots[slot];
	uint8_t wire[VSOCK_HEADER_SIZE];
	vsock_header_encode(header, wire);
	iov_copy_in(buffer->iov, buffer->chain.iov_count, 0, wire, sizeof(wire));
	virtq_push(&muxer->device.queues[VSOCK_QUEUE_RX], buffer->chain.head,
		   VSOCK_HEADER_SIZE + header->len);
	release_slot(muxer, slot);
	muxer->stats.packets_to_guest++;
	if (header->op == VSOCK_OP_RST)
		muxer->stats.rst_sent++;
}

