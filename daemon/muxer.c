/*
 * muxer.c - the muxer's event loop and its two data paths.
 *
 * Why this shape: the guest-to-host path writes
 * straight from the guest's TX buffers to the host socket; the host-to-
 * guest path reads straight into guest RX buffers, several at a time with
 * one readv. Nothing is allocated per packet. Host sockets are registered
 * edge-triggered, so a connection with no guest credit or no RX buffers is
 * simply not looked at until credit or buffers arrive (no busy loop);
 * EPOLLOUT interest exists only while a connection's TX ring holds data.
 *
 * Owns: the epoll set and the order in which work is done each turn.
 * Never: blocks (every fd is non-blocking), or lets one guest, frontend or
 * host client stall the others: TX work per turn is bounded.
 */
#include "muxer.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "events.h"
#include "vsockmux/iov.h"
#include "vsockmux/ipc.h"

#define MUXER_RX_PACKET_BUDGET 1024u
/* Unusable guest RX buffers handed back per muxer_process_rx. */
#define MUXER_RX_REJECT_BUDGET 256u
#define MUXER_ORPHAN_EXTRA (2u * MUXER_ORPHAN_TX_PAUSE)

/* ------------------------------------------------------------------------
 * host -> guest (RX queue)
 */

/*
 * RX buffer slots. A slot is free, taken (being filled this turn) or spare
 * (popped earlier and not used: a host read came up short). Spares are
 * used oldest first, and handed back to the guest (used, length 0) when the
 * ring stops or the memory table changes, so that no buffer is ever lost.
 */
static int rx_free_slot(const struct muxer *muxer)
{
	for (unsigned slot = 0; slot < MUXER_RX_BATCH; slot++) {
		if (!muxer->rx_slot_taken[slot])
			return (int)slot;
	}
	return -1;
}

static void rx_release(struct muxer *muxer, int slot)
{
	muxer->rx_slot_taken[slot] = false;
}

/* Keep slot as spare; at_front: it was the oldest (taken back out of the
 * FIFO's head, or popped while the FIFO was empty). */
static void rx_keep_spare(struct muxer *muxer, int slot, bool at_front)
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
static int rx_take_buffer(struct muxer *muxer)
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
		slot = rx_free_slot(muxer);
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
static void rx_return_spares(struct muxer *muxer)
{
	struct virtq *queue = &muxer->device.queues[VSOCK_QUEUE_RX];
	while (muxer->spare_rx_count > 0) {
		int slot = muxer->spare_rx[muxer->spare_rx_head];
		virtq_push(queue, muxer->rx_slots[slot].chain.head, 0);
		rx_release(muxer, slot);
		muxer->spare_rx_head = (muxer->spare_rx_head + 1) % MUXER_RX_BATCH;
		muxer->spare_rx_count--;
	}
	virtq_notify(queue);
}

/* Forget spare buffers whose ring is gone (reset, detach). */
static void rx_forget_spares(struct muxer *muxer)
{
	memset(muxer->rx_slot_taken, 0, sizeof(muxer->rx_slot_taken));
	muxer->spare_rx_head = 0;
	muxer->spare_rx_count = 0;
}

static void fill_header(const struct muxer *muxer, struct vsock_header *header,
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

static void conn_stamp_header(struct muxer *muxer, struct conn *conn,
			      struct vsock_header *header)
{
	header->buf_alloc = conn_grant_window(muxer, conn);
	header->fwd_cnt = conn->fwd_cnt;
	conn->fwd_cnt_sent = conn->fwd_cnt;
	conn->pending &= ~(uint32_t)CONN_PENDING_CREDIT_UPDATE;
}

static void rx_publish(struct muxer *muxer, int slot,
		       const struct vsock_header *header)
{
	const struct rx_buffer *buffer = &muxer->rx_slots[slot];
	uint8_t wire[VSOCK_HEADER_SIZE];
	vsock_header_encode(header, wire);
	iov_copy_in(buffer->iov, buffer->chain.iov_count, 0, wire, sizeof(wire));
	virtq_push(&muxer->device.queues[VSOCK_QUEUE_RX], buffer->chain.head,
		   VSOCK_HEADER_SIZE + header->len);
	rx_release(muxer, slot);
	muxer->stats.packets_to_guest++;
	if (header->op == VSOCK_OP_RST)
		muxer->stats.rst_sent++;
}

/* Send an RST for a connection that is gone. false: no RX buffer. */
static bool rx_send_orphan_rst(struct muxer *muxer, const struct rst_owed *orphan)
{
	struct vsock_header header;
	int slot = rx_take_buffer(muxer);
	if (slot < 0) {
		muxer->stats.waits_for_rx_buffers++;
		return false;
	}
	fill_header(muxer, &header, orphan->local_port, orphan->peer_port,
		    VSOCK_OP_RST);
	rx_publish(muxer, slot, &header);
	return true;
}

/* The next control packet conn owes, in protocol order. */
static bool rx_send_pending(struct muxer *muxer, struct conn *conn)
{
	static const struct {
		enum conn_pending bit;
		uint16_t op;
		uint32_t flags;
	} order[] = {
		{ CONN_PENDING_REQUEST, VSOCK_OP_REQUEST, 0 },
		{ CONN_PENDING_RESPONSE, VSOCK_OP_RESPONSE, 0 },
		{ CONN_PENDING_CREDIT_UPDATE, VSOCK_OP_CREDIT_UPDATE, 0 },
		{ CONN_PENDING_SHUTDOWN, VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_SEND },
	};
	struct vsock_header header;
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		int slot;
		if (!(conn->pending & order[i].bit))
			continue;
		/* buffer first: stamping records what the guest was told */
		slot = rx_take_buffer(muxer);
		if (slot < 0) {
			muxer->stats.waits_for_rx_buffers++;
			return false;
		}
		fill_header(muxer, &header, conn->local_port, conn->peer_port,
			    order[i].op);
		header.flags = order[i].flags;
		conn_stamp_header(muxer, conn, &header);
		rx_publish(muxer, slot, &header);
		conn->pending &= ~(uint32_t)order[i].bit;
		conn->counters.packets_to_guest++;
		if (order[i].bit == CONN_PENDING_SHUTDOWN)
			conn_after_progress(muxer, conn);
		return true;
	}
	return true;
}

enum rx_fill_result {
	RX_FILL_DONE,          /* made progress or nothing more to read */
	RX_FILL_NO_BUFFERS,    /* the guest must post RX buffers first */
};

/* One readv from the host socket into as many guest buffers as credit
 * allows. */
static enum rx_fill_result rx_fill_from_host(struct muxer *muxer, struct conn *conn)
{
	int slots[MUXER_RX_BATCH];
	uint32_t limits[MUXER_RX_BATCH];
	struct iovec *read_iov = muxer->rx_read_iov;
	size_t buffer_count = 0, iov_count = 0, wanted = 0;
	uint32_t credit = conn_peer_credit(conn);
	ssize_t got;
	size_t remaining;
	size_t used = 0;

	if (credit == 0) {
		muxer->stats.waits_for_credit++;
		return RX_FILL_DONE;
	}
	while (buffer_count < MUXER_RX_BATCH && wanted < credit) {
		int slot = rx_take_buffer(muxer);
		const struct rx_buffer *buffer;
		size_t room, limit, sliced;
		if (slot < 0)
			break;
		buffer = &muxer->rx_slots[slot];
		if (buffer_count > 0 &&
		    iov_count + buffer->chain.iov_count > MUXER_RX_READ_SEGMENTS) {
			/* next readv; it is the oldest unused buffer */
			rx_keep_spare(muxer, slot, true);
			break;
		}
		room = buffer->chain.length - VSOCK_HEADER_SIZE;
		limit = room < credit - wanted ? room : credit - wanted;
		sliced = iov_slice(buffer->iov, buffer->chain.iov_count,
				   VSOCK_HEADER_SIZE, limit, read_iov + iov_count,
				   MUXER_RX_READ_SEGMENTS - iov_count);
		/* a chain of more segments than one readv takes gets less */
		limit = iov_total_length(read_iov + iov_count, sliced);
		iov_count += sliced;
		slots[buffer_count] = slot;
		limits[buffer_count++] = (uint32_t)limit;
		wanted += limit;
	}
	if (buffer_count == 0) {
		muxer->stats.waits_for_rx_buffers++;
		return RX_FILL_NO_BUFFERS;
	}
	got = readv(conn->host_fd, read_iov, (int)iov_count);
	if (got < 0 && errno == EINTR)
		got = readv(conn->host_fd, read_iov, (int)iov_count);
	if (got > 0) {
		remaining = (size_t)got;
		for (; used < buffer_count && remaining > 0; used++) {
			struct vsock_header header;
			uint32_t length = remaining < limits[used] ? (uint32_t)remaining
								   : limits[used];
			fill_header(muxer, &header, conn->local_port, conn->peer_port,
				    VSOCK_OP_RW);
			header.len = length;
			conn_stamp_header(muxer, conn, &header);
			rx_publish(muxer, slots[used], &header);
			remaining -= length;
			conn->tx_cnt += length;
			conn->counters.packets_to_guest++;
		}
		conn->counters.bytes_to_guest += (uint64_t)got;
		muxer->stats.bytes_to_guest += (uint64_t)got;
		conn->counters.last_activity_ns = monotonic_ns();
		/* A short read does not prove the socket is drained (data and
		 * FIN can share one edge; a message with fds ends a read
		 * early): keep reading until EAGAIN or EOF. */
	} else if (got == 0) {
		conn->host_readable = false;
		conn->host_eof = true;
		conn->pending |= CONN_PENDING_SHUTDOWN;
	} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
		conn->host_readable = false;
	} else {
		int error = errno;
		for (; used < buffer_count; used++)
			rx_keep_spare(muxer, slots[used], false);
		log_ratelimited(&muxer->conn_log, LOG_LEVEL_INFO,
				"conn local %" PRIu32 " peer %" PRIu32
				": host socket read failed: %s",
				conn->local_port, conn->peer_port, strerror(error));
		conn_reset(muxer, conn, "host socket error");
		return RX_FILL_DONE;
	}
	for (; used < buffer_count; used++)
		rx_keep_spare(muxer, slots[used], false);
	return RX_FILL_DONE;
}

static struct conn *rx_fifo_pop(struct muxer *muxer)
{
	struct rx_link *link = rx_queue_pop(&muxer->rx_work);
	return link ? conn_of_rx_link(link) : NULL;
}

/* Send up to count queued RSTs; false when the guest ran out of RX
 * buffers. */
static bool rx_send_orphans(struct muxer *muxer, uint32_t count)
{
	for (; count > 0 && muxer->rsts.count > 0; count--) {
		if (!rx_send_orphan_rst(muxer, rst_queue_oldest(&muxer->rsts)))
			return false;
		rst_queue_pop(&muxer->rsts);
	}
	return true;
}

/*
 * false when the guest ran out of RX buffers. RSTs owed for connections
 * that are gone take turns with the live connections, MUXER_RX_BATCH per
 * turn: a burst of closing connections must not starve every connection
 * with data until each RST is out (their queue is bounded: guest packets
 * pause at MUXER_ORPHAN_TX_PAUSE).
 */
static bool rx_drain_work(struct muxer *muxer, unsigned *budget)
{
	while (*budget > 0) {
		struct conn *conn;
		uint32_t generation;
		if (!rx_send_orphans(muxer, MUXER_RX_BATCH))
			return false;
		conn = rx_fifo_pop(muxer);
		if (!conn) {
			if (muxer->rsts.count == 0)
				return true;
			continue;
		}
		(*budget)--;
		generation = conn->generation;
		if (conn->pending) {
			if (!rx_send_pending(muxer, conn)) {
				rx_queue_push_front(&muxer->rx_work, &conn->rx_work);
				return false;
			}
		} else if (conn_wants_host_read(muxer, conn)) {
			if (rx_fill_from_host(muxer, conn) == RX_FILL_NO_BUFFERS) {
				rx_queue_push_front(&muxer->rx_work, &conn->rx_work);
				return false;
			}
		}
		/* conn may have been reset meanwhile (then its slot is free) */
		if (conn->state != CONN_FREE && conn->generation == generation)
			conn_schedule_rx(muxer, conn);
	}
	return true;
}

void muxer_process_rx(struct muxer *muxer)
{
	struct virtq *queue = &muxer->device.queues[VSOCK_QUEUE_RX];
	unsigned budget = MUXER_RX_PACKET_BUDGET;

	muxer->rx_backlog = false;
	if (!virtq_is_ready(queue))
		return;
	/* a guest reposting unusable buffers as fast as they come back must
	 * not keep the loop here */
	muxer->rx_rejects_left = MUXER_RX_REJECT_BUDGET;
	while (!rx_queue_empty(&muxer->rx_work) || muxer->rsts.count > 0) {
		if (rx_drain_work(muxer, &budget)) {
			/* work left with buffers to spare: next loop turn */
			muxer->rx_backlog = budget == 0 &&
					    (!rx_queue_empty(&muxer->rx_work) || muxer->rsts.count > 0);
			break;
		}
		if (muxer->rx_rejects_left == 0) {
			muxer->rx_backlog = true;  /* after the other events */
			break;
		}
		/* out of buffers: ask for a kick, unless some arrived meanwhile */
		if (!virtq_enable_kicks(queue))
			break;
	}
	virtq_notify(queue);
	if (muxer->tx_paused_for_rst && muxer->rsts.count < MUXER_ORPHAN_TX_PAUSE / 2) {
		muxer->tx_paused_for_rst = false;
		muxer->tx_backlog = true;
	}
}

/* ------------------------------------------------------------------------
 * guest -> host (TX queue)
 */

static void drop_packet(struct muxer *muxer, enum muxer_drop_reason reason,
			const char *what, const struct vsock_header *header)
{
	muxer->stats.dropped[reason]++;
	log_ratelimited(&muxer->packet_log, LOG_LEVEL_WARN,
			"guest packet dropped: %s (op %s, src %" PRIu64 ":%" PRIu32
			", dst %" PRIu64 ":%" PRIu32 ", len %" PRIu32 ")",
			what, vsock_op_name(header->op), header->src_cid,
			header->src_port, header->dst_cid, header->dst_port,
			header->len);
}

static void handle_tx_chain(struct muxer *muxer, const struct virtq_chain *chain)
{
	uint8_t wire[VSOCK_HEADER_SIZE];
	struct vsock_header header;
	size_t payload_count;

	muxer->stats.packets_from_guest++;
	if (chain->length < VSOCK_HEADER_SIZE) {
		muxer->stats.dropped[DROP_SHORT_HEADER]++;
		log_ratelimited(&muxer->packet_log, LOG_LEVEL_WARN,
				"guest TX chain of %zu bytes is shorter than a header",
				chain->length);
		return;
	}
	/* copy once, validate the copy: the guest may change its memory */
	iov_copy_out(muxer->tx_iov, chain->iov_count, 0, wire, sizeof(wire));
	vsock_header_decode(wire, &header);
	if (header.src_cid != muxer->options->guest_cid) {
		drop_packet(muxer, DROP_BAD_SRC_CID, "source CID is not the guest's", &header);
		return;
	}
	if (header.dst_cid != VSOCK_HOST_CID) {
		drop_packet(muxer, DROP_BAD_DST_CID, "destination CID is not the host", &header);
		return;
	}
	if (header.len > chain->length - VSOCK_HEADER_SIZE ||
	    (header.op != VSOCK_OP_RW && header.len != 0)) {
		struct conn *conn = conn_table_lookup(&muxer->table, header.dst_port,
						      header.src_port);
		drop_packet(muxer, DROP_BAD_LENGTH, "length does not match the buffer", &header);
		if (conn && header.op != VSOCK_OP_RST)
			conn_reset(muxer, conn, "malformed packet");
		return;
	}
	payload_count = iov_slice(muxer->tx_iov, chain->iov_count, VSOCK_HEADER_SIZE,
				  header.len, muxer->tx_payload_iov, VIRTQ_MAX_SIZE);
	conn_handle_guest_packet(muxer, &header, muxer->tx_payload_iov, payload_count);
}

/* Every guest packet may owe an RST; stop taking packets while too many
 * wait for RX buffers (the guest gets them back once it posts buffers). */
static bool tx_must_pause(struct muxer *muxer)
{
	if (muxer->rsts.count < MUXER_ORPHAN_TX_PAUSE)
		return false;
	if (!muxer->tx_paused_for_rst)
		log_ratelimited(&muxer->packet_log, LOG_LEVEL_WARN,
				"%" PRIu32 " RSTs wait for guest RX buffers; guest "
				"packets paused until they go out", muxer->rsts.count);
	muxer->tx_paused_for_rst = true;
	return true;
}

void muxer_process_tx(struct muxer *muxer)
{
	struct virtq *queue = &muxer->device.queues[VSOCK_QUEUE_TX];
	unsigned budget = MUXER_TX_BUDGET;
	struct virtq_chain chain;

	muxer->tx_backlog = false;
	if (!virtq_is_ready(queue))
		return;
	for (;;) {
		while (budget > 0 && !tx_must_pause(muxer) &&
		       virtq_pop(queue, &muxer->device.memory, muxer->tx_iov,
				 VIRTQ_MAX_SIZE, &chain) == 1) {
			budget--;
			handle_tx_chain(muxer, &chain);
			virtq_push(queue, chain.head, 0);
		}
		if (muxer->tx_paused_for_rst)
			break; /* resumed by muxer_process_rx as RSTs go out */
		if (budget == 0) {
			muxer->tx_backlog = true; /* come back after other events */
			break;
		}
		if (!virtq_enable_kicks(queue))
			break;
	}
	virtq_notify(queue);
}

/* ------------------------------------------------------------------------
 * vhost-user device callbacks
 */

static void on_kick_fd_changed(void *opaque, unsigned queue_index, int old_fd,
			       int new_fd)
{
	struct muxer *muxer = opaque;
	enum event_kind kind = queue_index == VSOCK_QUEUE_RX ? EVENT_KICK_RX
							     : EVENT_KICK_TX;
	if (old_fd >= 0)
		events_remove(muxer->epoll_fd, old_fd);
	if (new_fd >= 0)
		(void)events_add(muxer->epoll_fd, new_fd, EPOLLIN,
				 event_tag_encode(kind, 0, 0));
}

static void on_queue_state_changed(void *opaque, unsigned queue_index, bool ready)
{
	struct muxer *muxer = opaque;
	log_debug("queue %u %s", queue_index, ready ? "ready" : "stopped");
	if (!ready) {
		/* A ring stopped without GET_VRING_BASE (reset, detach) takes
		 * its popped buffers with it: never push them into a restarted
		 * one. A ring merely disabled keeps them. */
		if (queue_index == VSOCK_QUEUE_RX &&
		    !muxer->device.queues[VSOCK_QUEUE_RX].started)
			rx_forget_spares(muxer);
		return;
	}
	/* Not now: the frontend may have queued more set-up (QEMU 7.2 sends
	 * SET_VRING_CALL right behind SET_VRING_ENABLE). Ring work waits until
	 * this turn's vhost-user messages are all handled. */
	if (queue_index == VSOCK_QUEUE_TX)
		muxer->tx_backlog = true;
	else
		muxer->rx_backlog = true;
}

static void drop_all_connections(struct muxer *muxer, const char *reason)
{
	for (uint32_t slot = 0; slot < muxer->table.capacity; slot++) {
		struct conn *conn = &muxer->table.slots[slot];
		if (conn->state != CONN_FREE && conn->state != CONN_ABANDONED)
			conn_destroy(muxer, conn, reason);
	}
	rst_queue_clear(&muxer->rsts);
	rx_forget_spares(muxer);
	muxer->tx_backlog = false;
	muxer->tx_paused_for_rst = false;
}

static void on_device_reset(void *opaque)
{
	drop_all_connections(opaque, "VMM reset the device");
}

static void on_queue_stopping(void *opaque, unsigned queue_index)
{
	struct muxer *muxer = opaque;
	if (queue_index == VSOCK_QUEUE_RX)
		rx_return_spares(muxer);
}

static const struct vhost_user_callbacks device_callbacks = {
	.kick_fd_changed = on_kick_fd_changed,
	.queue_state_changed = on_queue_state_changed,
	.device_reset = on_device_reset,
	.queue_stopping = on_queue_stopping,
};

static void detach_frontend(struct muxer *muxer)
{
	if (!vhost_user_is_attached(&muxer->device))
		return;
	/* Unregister before closing: the broker may still hold its copy of
	 * this socket for a moment, and then the registration would outlive
	 * our close() and keep reporting the hang-up. */
	events_remove(muxer->epoll_fd, muxer->device.fd);
	log_info("vhost-user frontend detached; every connection reset");
	vhost_user_detach(&muxer->device);
	muxer->owe_vmm_detached = true;
}

/* ------------------------------------------------------------------------
 * the loop
 */

void muxer_attach_frontend(struct muxer *muxer, int fd)
{
	if (vhost_user_is_attached(&muxer->device)) {
		log_error("broker sent a second frontend while one is attached; closing it");
		close(fd);
		return;
	}
	/* RSTs owed to the previous VM's guest mean nothing to this one */
	rst_queue_clear(&muxer->rsts);
	vhost_user_attach(&muxer->device, fd);
	if (events_add(muxer->epoll_fd, fd, EPOLLIN,
		       event_tag_encode(EVENT_VHOST_USER, 0, 0)) < 0)
		detach_frontend(muxer);
}

static void handle_timer(struct muxer *muxer)
{
	struct deadline_entry *entry;
	uint64_t now = monotonic_ns();
	deadline_acknowledge(&muxer->deadlines);
	while ((entry = deadline_pop_expired(&muxer->deadlines, now)) != NULL) {
		struct conn *conn = (struct conn *)((char *)entry -
						    offsetof(struct conn, deadline));
		conn_on_deadline(muxer, conn);
	}
	deadline_reprogram(&muxer->deadlines);
}

static void handle_event(struct muxer *muxer, const struct epoll_event *event)
{
	struct event_tag tag = event_tag_decode(event->data.u64);
	struct conn *conn;

	switch (tag.kind) {
	case EVENT_CHANNEL:
		muxer_handle_channel(muxer);
		break;
	case EVENT_VHOST_USER:
		if (vhost_user_is_attached(&muxer->device) &&
		    vhost_user_handle_readable(&muxer->device) < 0)
			detach_frontend(muxer);
		break;
	case EVENT_KICK_RX:
		virtq_drain_kick(&muxer->device.queues[VSOCK_QUEUE_RX]);
		muxer_process_rx(muxer);
		break;
	case EVENT_KICK_TX:
		virtq_drain_kick(&muxer->device.queues[VSOCK_QUEUE_TX]);
		muxer_process_tx(muxer);
		break;
	case EVENT_TIMER:
		handle_timer(muxer);
		break;
	case EVENT_HOST:
		conn = conn_table_by_slot(&muxer->table, tag.slot, tag.generation);
		if (conn)
			conn_on_host_event(muxer, conn, event->events);
		break;
	default:
		log_error("unexpected epoll tag %#" PRIx64, event->data.u64);
		break;
	}
}

int muxer_init(struct muxer *muxer, const struct vsockmuxd_options *options,
	       int channel_fd)
{
	int result;

	memset(muxer, 0, sizeof(*muxer));
	muxer->options = options;
	muxer->channel_fd = channel_fd;
	muxer->epoll_fd = -1;
	muxer->deadlines.timer_fd = -1;
	muxer->stats.started_ns = monotonic_ns();
	muxer->audit_log.burst = MUXER_AUDIT_LINES_PER_SECOND;
	vhost_user_init(&muxer->device, options->guest_cid, options->queue_size,
			&device_callbacks, muxer);

	muxer->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (muxer->epoll_fd < 0) {
		result = -errno;
		log_error("epoll_create1: %s", strerror(errno));
		goto fail;
	}
	result = deadline_queue_init(&muxer->deadlines);
	if (result < 0) {
		log_error("timerfd: %s", strerror(-result));
		goto fail;
	}
	deadline_set_timeout(&muxer->deadlines, CONN_DEADLINE_HANDSHAKE,
			     CONN_HANDSHAKE_TIMEOUT_NS);
	deadline_set_timeout(&muxer->deadlines, CONN_DEADLINE_CONNECT,
			     CONN_CONNECT_TIMEOUT_NS);
	deadline_set_timeout(&muxer->deadlines, CONN_DEADLINE_SHUTDOWN,
			     CONN_SHUTDOWN_TIMEOUT_NS);
	deadline_set_timeout(&muxer->deadlines, CONN_DEADLINE_BROKER,
			     CONN_BROKER_TIMEOUT_NS);
	result = conn_table_init(&muxer->table, options->max_connections);
	if (result < 0) {
		log_error("connection table for %" PRIu32 " connections: %s",
			  options->max_connections, strerror(-result));
		goto fail;
	}
	muxer->rx_segment_pool = calloc((size_t)MUXER_RX_BATCH * MUXER_RX_SEGMENTS,
					sizeof(*muxer->rx_segment_pool));
	if (!muxer->rx_segment_pool) {
		result = -ENOMEM;
		log_error("RX segment pool: out of memory");
		goto fail;
	}
	for (unsigned slot = 0; slot < MUXER_RX_BATCH; slot++)
		muxer->rx_slots[slot].iov = muxer->rx_segment_pool +
					    (size_t)slot * MUXER_RX_SEGMENTS;
	result = rst_queue_init(&muxer->rsts, options->max_connections + MUXER_ORPHAN_EXTRA);
	if (result < 0) {
		log_error("RST queue: out of memory");
		goto fail;
	}
	result = events_add(muxer->epoll_fd, muxer->deadlines.timer_fd, EPOLLIN,
			    event_tag_encode(EVENT_TIMER, 0, 0));
	if (result < 0)
		goto fail;
	if (channel_fd >= 0) {
		result = events_add(muxer->epoll_fd, channel_fd, EPOLLIN,
				    event_tag_encode(EVENT_CHANNEL, 0, 0));
		if (result < 0)
			goto fail;
	}
	muxer->running = true;
	return 0;
fail:
	muxer_destroy(muxer);
	return result;
}

void muxer_destroy(struct muxer *muxer)
{
	if (muxer->table.slots)
		drop_all_connections(muxer, "muxer shutting down");
	vhost_user_detach(&muxer->device);
	/* before the table: abandoned slots may still sit in its lists */
	deadline_queue_destroy(&muxer->deadlines);
	conn_table_destroy(&muxer->table);
	rst_queue_destroy(&muxer->rsts);
	free(muxer->rx_segment_pool);
	muxer->rx_segment_pool = NULL;
	if (muxer->epoll_fd >= 0)
		close(muxer->epoll_fd);
	muxer->epoll_fd = -1;
}

int muxer_run(const struct vsockmuxd_options *options, int channel_fd,
	      int (*lock_down)(void *opaque), void *opaque)
{
	struct epoll_event events[64];
	struct muxer *muxer = calloc(1, sizeof(*muxer));
	int exit_code = 1;

	if (!muxer) {
		log_error("out of memory");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	if (muxer_init(muxer, options, channel_fd) < 0)
		goto out;
	if (lock_down && lock_down(opaque) != 0) {
		muxer_destroy(muxer);
		goto out;
	}
	while (muxer->running) {
		int timeout = muxer->tx_backlog || muxer->rx_backlog ? 0 : -1;
		int count = epoll_wait(muxer->epoll_fd, events, 64, timeout);
		if (count < 0) {
			if (errno == EINTR)
				continue;
			log_error("epoll_wait: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < count && muxer->running; i++)
			handle_event(muxer, &events[i]);
		if (muxer->tx_backlog)
			muxer_process_tx(muxer);
		if (muxer->rx_backlog || !rx_queue_empty(&muxer->rx_work) || muxer->rsts.count > 0)
			muxer_process_rx(muxer);
		if (muxer->owe_vmm_detached ||
		    muxer->host_accept_told != muxer->host_accept_paused)
			muxer_flush_broker_owed(muxer);
	}
	exit_code = muxer->exit_code;
	muxer_destroy(muxer);
out:
	free(muxer);
	return exit_code;
}
