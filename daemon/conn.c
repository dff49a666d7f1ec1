/*
 * conn.c - the vsock connection state machine.
 *
 * A guest packet goes first to its connection's state (one small function
 * per state, guest_packet_by_state, with a switch on the op inside), each
 * host event to its own function, so every transition is visible here, in
 * both directions. A step that may end the connection returns its fate
 * (CONN_KEPT / CONN_GONE), so no caller looks a connection up again. Towards the guest a connection
 * records what it owes (`pending` bits, readable host data) and joins the
 * RX work queue; when its turn comes (guest_rx.c) conn_rx_turn decides
 * what goes out: the owed control packets in protocol order, else host
 * data as far as the guest's credit allows, and EOF becoming SHUTDOWN.
 * Every header it sends carries our credit (buf_alloc, fwd_cnt), and
 * conn_update_close_and_credit decides when an unsolicited CREDIT_UPDATE
 * is due.
 * RSTs for connections that are already gone go through the RST queue
 * (rst_queue.c).
 *
 * Never: answers an RST with an RST; sends the guest more than its credit;
 * writes to a host socket without MSG_NOSIGNAL semantics (SIGPIPE is
 * ignored process-wide); loses bytes it has acknowledged to the guest.
 */
#include "conn.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "broker_send.h"
#include "conn_table.h"
#include "events.h"
#include "rx_buffers.h"
#include "muxer.h"
#include "vsockmux/iov.h"
#include "vsockmux/ipc.h"
#include "vsockmux/log.h"
#include "vsockmux/tag.h"

/* What a step left of the connection it was given: callers stop touching
 * a connection that is gone instead of looking it up again. */
enum conn_fate {
	CONN_KEPT,
	CONN_GONE,
};

static const char *initiator_name(const struct conn *conn)
{
	return conn->initiator == CONN_FROM_HOST ? "host" : "guest";
}

/* The audit line of a connection opening (reason NULL) or closing, with
 * the fields vsockctl conns shows (as JSON fields with --log-format json). */
static void conn_log_audit(struct muxer *muxer, const struct conn *conn,
			   const char *reason)
{
	struct log_connection fields;

	if (log_get_level() < LOG_LEVEL_INFO)
		return;
	fields = (struct log_connection){
		.event = reason ? "conn_close" : "conn_open",
		.local_port = conn->local_port,
		.peer_port = conn->peer_port,
		.initiator = initiator_name(conn),
		.bytes_to_host = conn->counters.bytes_to_host,
		.bytes_to_guest = conn->counters.bytes_to_guest,
		.packets_from_guest = conn->counters.packets_from_guest,
		.packets_to_guest = conn->counters.packets_to_guest,
		.age_ms = (monotonic_ns() - conn->counters.opened_ns) / 1000000u,
		.reason = reason,
	};
	if (!reason)
		log_connection_event(&muxer->audit_log, LOG_LEVEL_INFO, &fields,
				     "conn open: local %" PRIu32 " peer %" PRIu32 " from %s",
				     conn->local_port, conn->peer_port, fields.initiator);
	else
		log_connection_event(&muxer->audit_log, LOG_LEVEL_INFO, &fields,
				     "conn close: local %" PRIu32 " peer %" PRIu32
				     " from %s, %" PRIu64 " bytes to host, %" PRIu64
				     " bytes to guest: %s",
				     conn->local_port, conn->peer_port, fields.initiator,
				     fields.bytes_to_host, fields.bytes_to_guest, reason);
}

/* An RST for a port pair that has no connection (any more). */
static void owe_rst(struct muxer *muxer, uint32_t local_port, uint32_t peer_port)
{
	if (rst_queue_push(&muxer->rsts, local_port, peer_port))
		return;
	muxer->stats.dropped[DROP_RST_QUEUE_FULL]++;
	log_ratelimited(&muxer->packet_log, LOG_LEVEL_WARN,
			"RST queue full; RST for port %" PRIu32 " dropped", peer_port);
}

/* Tell the broker to stop or resume accepting host clients, at once: host
 * clients it accepts meanwhile are refused beyond twice the cap. */
static void want_host_accept_paused(struct muxer *muxer, bool paused)
{
	muxer->host_accept_paused = paused;
	broker_send_owed(muxer);
}

/* epoll registration of the host socket (edge-triggered). */
static int conn_watch_host(struct muxer *muxer, const struct conn *conn)
{
	return events_watch_host(muxer->epoll_fd, conn->host_fd, conn->generation,
				 conn->slot);
}

/* EPOLLOUT interest only while the ring holds data. */
static void conn_set_writable_interest(struct muxer *muxer, struct conn *conn,
				       bool want)
{
	if (conn->epollout_armed == want || conn->host_fd < 0)
		return;
	if (events_host_interest(muxer->epoll_fd, conn->host_fd, conn->generation,
				 conn->slot, want) == 0)
		conn->epollout_armed = want;
}

/* ------------------------------------------------------------------------
 * credit windows: how much guest->host data a connection may hold
 */

/* The buf_alloc to put in a header for conn now: its window, grown
 * towards --tx-buffer-size as far as the budget allows. */
static uint32_t conn_grant_window(struct muxer *muxer, struct conn *conn)
{
	uint64_t target = muxer->options->tx_buffer_size;
	uint64_t budget = muxer->options->tx_buffer_budget;
	uint64_t available, grown;

	if (conn->window >= target)
		return conn->window;
	available = budget > muxer->windows_reserved ?
		    budget - muxer->windows_reserved : 0;
	grown = conn->window + available;
	if (grown < CONN_WINDOW_FLOOR)
		grown = CONN_WINDOW_FLOOR;
	if (grown > target)
		grown = target;
	if (grown < target)
		muxer->stats.windows_limited++;
	muxer->windows_reserved += grown - conn->window;
	conn->window = (uint32_t)grown;
	return conn->window;
}

static void conn_release_window(struct muxer *muxer, struct conn *conn)
{
	muxer->windows_reserved -= conn->window;
	conn->window = 0;
}

/* A window below its target could grow now: tell the guest. */
static bool conn_window_can_grow(const struct muxer *muxer, const struct conn *conn)
{
	uint32_t target = muxer->options->tx_buffer_size;
	return conn->window < target &&
	       muxer->options->tx_buffer_budget >= muxer->windows_reserved + target / 4;
}

/* ------------------------------------------------------------------------
 * host clients still sending their CONNECT line: their own cap
 */

static void handshake_started(struct muxer *muxer)
{
	muxer->handshakes_in_progress++;
	if (!muxer->host_accept_paused &&
	    muxer->handshakes_in_progress >= muxer->options->max_host_handshakes) {
		muxer->stats.host_accept_pauses++;
		log_ratelimited(&muxer->conn_log, LOG_LEVEL_WARN,
				"%" PRIu32 " host clients are still sending their "
				"CONNECT line (--max-host-handshakes); new ones wait "
				"in the listen backlog", muxer->handshakes_in_progress);
		want_host_accept_paused(muxer, true);
	}
}

static void handshake_finished(struct muxer *muxer)
{
	muxer->handshakes_in_progress--;
	if (muxer->host_accept_paused &&
	    muxer->handshakes_in_progress < muxer->options->max_host_handshakes / 2 + 1)
		want_host_accept_paused(muxer, false);
}

/* ------------------------------------------------------------------------
 * lifecycle
 */

/* Both handshakes done: count it and say so. */
static void conn_opened(struct muxer *muxer, const struct conn *conn)
{
	muxer->stats.connections_total[conn->initiator]++;
	if (muxer->table.in_use > muxer->stats.connections_peak)
		muxer->stats.connections_peak = muxer->table.in_use;
	conn_log_audit(muxer, conn, NULL);
}

void conn_destroy(struct muxer *muxer, struct conn *conn, const char *reason)
{
	if (conn->state == CONN_ESTABLISHED || conn->state == CONN_HOST_REQUESTED ||
	    conn->state == CONN_GUEST_CONNECTING) {
		conn_log_audit(muxer, conn, reason);
	} else {
		log_debug("conn slot %" PRIu32 " freed: %s", conn->slot, reason);
	}
	if (conn->state == CONN_HOST_HANDSHAKE)
		handshake_finished(muxer);
	conn_release_window(muxer, conn);
	deadline_cancel(&muxer->deadlines, &conn->deadline);
	rx_queue_remove(&muxer->rx_work, &conn->rx_work);
	conn_table_remove(&muxer->table, conn);
	tx_ring_clear(&conn->to_host_ring);
	if (conn->host_fd >= 0)
		close(conn->host_fd);
	conn->host_fd = -1;
	if (conn->broker_reply_owed) {
		/* The broker still owes a reply naming this slot: keep the
		 * slot until it arrives (conn_on_broker_connect frees it), or
		 * until CONN_DEADLINE_BROKER gives up on it. */
		conn->state = CONN_ABANDONED;
		deadline_arm(&muxer->deadlines, &conn->deadline, CONN_DEADLINE_BROKER);
		return;
	}
	conn_table_free(&muxer->table, conn);
}

void conn_reset(struct muxer *muxer, struct conn *conn, const char *reason)
{
	if (conn->hashed)
		owe_rst(muxer, conn->local_port, conn->peer_port);
	conn_destroy(muxer, conn, reason);
}

static enum conn_fate end_with_rst(struct muxer *muxer, struct conn *conn,
				   const char *reason)
{
	conn_reset(muxer, conn, reason);
	return CONN_GONE;
}

/* Does conn want to read host data into guest buffers right now? */
static bool conn_wants_host_read(const struct conn *conn)
{
	return conn->state == CONN_ESTABLISHED && conn->host_readable &&
	       !conn->host_eof && !conn->guest_shut_rcv && conn->host_fd >= 0;
}

/* Put conn on the RX work queue if it has something to send. */
static void conn_schedule_rx(struct muxer *muxer, struct conn *conn)
{
	bool has_work = conn->pending != 0 ||
			(conn_wants_host_read(conn) && conn_guest_credit(conn) > 0);
	if (has_work)
		rx_queue_push_back(&muxer->rx_work, &conn->rx_work);
}

static void queue_pending(struct muxer *muxer, struct conn *conn,
			  enum conn_pending what)
{
	conn->pending |= what;
	conn_schedule_rx(muxer, conn);
}

/*
 * After bytes reached the host, the ring drained or a shutdown bit
 * changed: take whatever closing step has become possible (pass the
 * guest's EOF on, free the connection), and queue a CREDIT_UPDATE when the
 * guest's view of our free space lags (the Linux guest never asks for one).
 */
static enum conn_fate conn_update_close_and_credit(struct muxer *muxer,
						   struct conn *conn)
{
	if (conn->state != CONN_ESTABLISHED)
		return CONN_KEPT;
	if (tx_ring_used(&conn->to_host_ring) > 0)
		goto credit;
	if (conn->guest_shut_send && !conn->host_write_shut) {
		/* everything the guest sent has been written: pass the EOF on */
		shutdown(conn->host_fd, SHUT_WR);
		conn->host_write_shut = true;
	}
	if (conn->guest_shut_send && conn->guest_shut_rcv)
		return end_with_rst(muxer, conn, "guest closed");
	if (conn->guest_shut_send && conn->host_eof &&
	    !(conn->pending & CONN_PENDING_SHUTDOWN))
		return end_with_rst(muxer, conn, "both directions closed");
credit:
	if (!conn->guest_shut_send &&
	    (conn_credit_update_due(conn, conn->window) ||
	     (conn->written_to_host == conn->received_from_guest &&
	      conn_window_can_grow(muxer, conn))))
		queue_pending(muxer, conn, CONN_PENDING_CREDIT_UPDATE);
	return CONN_KEPT;
}

/* ------------------------------------------------------------------------
 * host -> guest: what the connection sends the guest next
 */

static void conn_stamp_header(struct muxer *muxer, struct conn *conn,
			      struct vsock_header *header)
{
	header->buf_alloc = conn_grant_window(muxer, conn);
	header->fwd_cnt = conn->written_to_host;
	conn->to_host_reported = conn->written_to_host;
	conn->pending &= ~(uint32_t)CONN_PENDING_CREDIT_UPDATE;
}

/* What one step towards the guest came to. */
enum rx_step {
	RX_STEP_DONE,          /* made progress, or nothing more to do now */
	RX_STEP_NO_BUFFERS,    /* the guest must post RX buffers first */
	RX_STEP_GONE,          /* the connection ended on the way */
};

/* The next control packet conn owes, in protocol order. */
static enum rx_step rx_send_pending(struct muxer *muxer, struct conn *conn)
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
		slot = rx_buffers_take(muxer);
		if (slot < 0) {
			muxer->stats.waits_for_rx_buffers++;
			return RX_STEP_NO_BUFFERS;
		}
		rx_buffers_header(muxer, &header, conn->local_port, conn->peer_port,
				  order[i].op);
		header.flags = order[i].flags;
		conn_stamp_header(muxer, conn, &header);
		rx_buffers_publish(muxer, slot, &header);
		conn->pending &= ~(uint32_t)order[i].bit;
		conn->counters.packets_to_guest++;
		if (order[i].bit == CONN_PENDING_SHUTDOWN &&
		    conn_update_close_and_credit(muxer, conn) == CONN_GONE)
			return RX_STEP_GONE;
		return RX_STEP_DONE;
	}
	return RX_STEP_DONE;
}

/* One readv from the host socket into as many guest buffers as credit
 * allows. */
static enum rx_step rx_fill_from_host(struct muxer *muxer, struct conn *conn)
{
	int slots[MUXER_RX_BATCH];
	uint32_t limits[MUXER_RX_BATCH];
	struct iovec *read_iov = muxer->rx_read_iov;
	size_t buffer_count = 0, iov_count = 0, wanted = 0;
	uint32_t credit = conn_guest_credit(conn);
	ssize_t got;
	size_t used = 0;

	if (credit == 0) {
		muxer->stats.waits_for_credit++;
		return RX_STEP_DONE;
	}
	while (buffer_count < MUXER_RX_BATCH && wanted < credit) {
		int slot = rx_buffers_take(muxer);
		const struct rx_buffer *buffer;
		size_t room, limit, sliced;
		if (slot < 0)
			break;
		buffer = &muxer->rx_slots[slot];
		if (buffer_count > 0 &&
		    iov_count + buffer->chain.iov_count > MUXER_RX_READ_SEGMENTS) {
			/* next readv; it is the oldest unused buffer */
			rx_buffers_keep_spare(muxer, slot, true);
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
		return RX_STEP_NO_BUFFERS;
	}
	got = readv(conn->host_fd, read_iov, (int)iov_count);
	if (got < 0 && errno == EINTR)
		got = readv(conn->host_fd, read_iov, (int)iov_count);
	if (got > 0) {
		size_t remaining = (size_t)got;

		for (; used < buffer_count && remaining > 0; used++) {
			struct vsock_header header;
			uint32_t length = remaining < limits[used] ? (uint32_t)remaining
								   : limits[used];
			rx_buffers_header(muxer, &header, conn->local_port,
					  conn->peer_port, VSOCK_OP_RW);
			header.len = length;
			conn_stamp_header(muxer, conn, &header);
			rx_buffers_publish(muxer, slots[used], &header);
			remaining -= length;
			conn->sent_to_guest += length;
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
			rx_buffers_keep_spare(muxer, slots[used], false);
		log_ratelimited(&muxer->conn_log, LOG_LEVEL_INFO,
				"conn local %" PRIu32 " peer %" PRIu32
				": host socket read failed: %s",
				conn->local_port, conn->peer_port, strerror(error));
		conn_reset(muxer, conn, "host socket error");
		return RX_STEP_GONE;
	}
	for (; used < buffer_count; used++)
		rx_buffers_keep_spare(muxer, slots[used], false);
	return RX_STEP_DONE;
}

enum conn_rx_result conn_rx_turn(struct muxer *muxer, struct conn *conn)
{
	enum rx_step step = RX_STEP_DONE;

	if (conn->pending)
		step = rx_send_pending(muxer, conn);
	else if (conn_wants_host_read(conn))
		step = rx_fill_from_host(muxer, conn);
	switch (step) {
	case RX_STEP_NO_BUFFERS:
		return CONN_RX_NO_BUFFERS;
	case RX_STEP_DONE:
		conn_schedule_rx(muxer, conn);
		break;
	case RX_STEP_GONE:
		break;
	}
	return CONN_RX_DONE;
}

/* ------------------------------------------------------------------------
 * guest -> host data
 */

static enum conn_fate host_write_error(struct muxer *muxer, struct conn *conn,
				       int error)
{
	log_ratelimited(&muxer->conn_log, LOG_LEVEL_INFO,
			"conn local %" PRIu32 " peer %" PRIu32
			": host socket write failed: %s",
			conn->local_port, conn->peer_port, strerror(error));
	return end_with_rst(muxer, conn, "host socket error");
}

/* Write (or buffer) one RW payload. */
static enum conn_fate deliver_to_host(struct muxer *muxer, struct conn *conn,
				      const struct iovec *payload, size_t payload_count,
				      uint32_t length)
{
	size_t written = 0;

	if (tx_ring_used(&conn->to_host_ring) == 0) {
		ssize_t sent = writev(conn->host_fd, payload, (int)payload_count);
		if (sent < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				return host_write_error(muxer, conn, errno);
		} else {
			written = (size_t)sent;
		}
	}
	conn->written_to_host += (uint32_t)written;
	conn->counters.bytes_to_host += written;
	muxer->stats.bytes_to_host += written;
	if (written < length) {
		int result = tx_ring_append_iov(&conn->to_host_ring, payload,
						payload_count, written, length - written);
		if (result < 0) {
			log_ratelimited(&muxer->conn_log, LOG_LEVEL_WARN,
					"conn local %" PRIu32 " peer %" PRIu32
					": cannot buffer %zu bytes: %s",
					conn->local_port, conn->peer_port,
					(size_t)length - written, strerror(-result));
			return end_with_rst(muxer, conn, "TX buffer failure");
		}
		if (!conn->epollout_armed)
			conn_set_writable_interest(muxer, conn, true);
	}
	return CONN_KEPT;
}

/* Host socket writable: flush the ring. */
static enum conn_fate flush_ring(struct muxer *muxer, struct conn *conn)
{
	while (tx_ring_used(&conn->to_host_ring) > 0) {
		ssize_t flushed = tx_ring_flush(&conn->to_host_ring, conn->host_fd);
		if (flushed == -EAGAIN || flushed == -EWOULDBLOCK) {
			/* partial progress frees guest credit too */
			return conn_update_close_and_credit(muxer, conn);
		}
		if (flushed == -EINTR)
			continue;
		if (flushed < 0)
			return host_write_error(muxer, conn, (int)-flushed);
		conn->written_to_host += (uint32_t)flushed;
		conn->counters.bytes_to_host += (uint64_t)flushed;
		muxer->stats.bytes_to_host += (uint64_t)flushed;
	}
	conn_set_writable_interest(muxer, conn, false);
	if (conn->state == CONN_ESTABLISHED &&
	    conn->deadline.armed && conn->guest_shut_rcv && conn->guest_shut_send)
		deadline_cancel(&muxer->deadlines, &conn->deadline);
	return conn_update_close_and_credit(muxer, conn);
}

/* ------------------------------------------------------------------------
 * guest packets: by state first, then by op (one small function per state)
 */

/* A packet for a connection we do not have: RST, as Linux does. */
static void reject_unknown(struct muxer *muxer, const struct vsock_header *header)
{
	muxer->stats.dropped[DROP_NO_CONNECTION]++;
	owe_rst(muxer, header->dst_port, header->src_port);
}

static void refuse_guest_request(struct muxer *muxer,
				 const struct vsock_header *header,
				 enum muxer_refusal_reason reason,
				 const char *why)
{
	muxer->stats.refused[reason]++;
	log_ratelimited(&muxer->conn_log, LOG_LEVEL_INFO,
			"guest connect from port %" PRIu32 " to %" PRIu32
			" refused: %s",
			header->src_port, header->dst_port, why);
	owe_rst(muxer, header->dst_port, header->src_port);
}

/* A guest REQUEST for a port pair we do not have: ask the broker. */
static void open_guest_connection(struct muxer *muxer, const struct vsock_header *header)
{
	struct conn *conn;

	if (!port_list_allows(&muxer->options->allow_guest_ports, header->dst_port)) {
		refuse_guest_request(muxer, header, REFUSED_POLICY_GUEST,
				     "port not in --allow-guest-ports");
		return;
	}
	if (muxer->connects_in_flight >= VSOCKMUX_MAX_CONNECTS_IN_FLIGHT) {
		refuse_guest_request(muxer, header, REFUSED_LIMIT,
				     "too many connects waiting for the broker");
		return;
	}
	conn = conn_table_alloc(&muxer->table);
	if (!conn) {
		refuse_guest_request(muxer, header, REFUSED_LIMIT,
				     "connection limit reached (--max-connections)");
		return;
	}
	conn->state = CONN_GUEST_CONNECTING;
	conn->initiator = CONN_FROM_GUEST;
	conn->local_port = header->dst_port;
	conn->peer_port = header->src_port;
	conn->guest_buf_alloc = header->buf_alloc;
	conn->guest_fwd_cnt = header->fwd_cnt;
	conn->connect_started_ns = monotonic_ns();
	conn->counters.packets_from_guest = 1; /* this REQUEST */
	conn->counters.opened_ns = conn->connect_started_ns;
	conn->counters.last_activity_ns = conn->connect_started_ns;
	conn->connect_request_id = request_id_encode(conn->generation, conn->slot);
	tx_ring_init(&conn->to_host_ring, muxer->options->tx_buffer_size);
	if (conn_table_insert(&muxer->table, conn) < 0 ||
	    broker_send_connect_request(muxer->channel_fd, conn->connect_request_id,
					header->dst_port) < 0) {
		conn_table_remove(&muxer->table, conn);
		conn_table_free(&muxer->table, conn);
		refuse_guest_request(muxer, header, REFUSED_NO_HOST_LISTENER,
				     "broker unavailable");
		return;
	}
	conn->broker_reply_owed = true;
	muxer->connects_in_flight++;
	/* an RST still queued for this pair from an earlier connection must
	 * not reach the new one */
	rst_queue_forget(&muxer->rsts, conn->local_port, conn->peer_port);
	deadline_arm(&muxer->deadlines, &conn->deadline, CONN_DEADLINE_CONNECT);
}

/* No connection for the packet's port pair. */
static void guest_packet_without_connection(struct muxer *muxer,
					    const struct vsock_header *header)
{
	switch (header->op) {
	case VSOCK_OP_REQUEST:
		open_guest_connection(muxer, header);
		break;
	case VSOCK_OP_RST:
		muxer->stats.rst_received++;
		muxer->stats.dropped[DROP_RST_UNKNOWN]++;
		break; /* never answer an RST */
	default:
		reject_unknown(muxer, header);
		break;
	}
}

/* An op the connection's state does not allow: both ends are confused. */
static enum conn_fate reset_unexpected(struct muxer *muxer, struct conn *conn,
				       uint16_t op)
{
	static const char *const reasons[] = {
		[VSOCK_OP_REQUEST] = "duplicate REQUEST",
		[VSOCK_OP_RESPONSE] = "unexpected RESPONSE",
		[VSOCK_OP_SHUTDOWN] = "SHUTDOWN before established",
		[VSOCK_OP_RW] = "RW before established",
	};
	const char *reason = op < sizeof(reasons) / sizeof(reasons[0]) ? reasons[op] : NULL;
	return end_with_rst(muxer, conn, reason ? reason : "unexpected op");
}

/* The guest closed the connection: ports are freed, no RST goes back. */
static enum conn_fate close_on_guest_rst(struct muxer *muxer, struct conn *conn)
{
	muxer->stats.rst_received++;
	conn_table_remove(&muxer->table, conn);
	conn_destroy(muxer, conn, "guest sent RST");
	return CONN_GONE;
}

/* The guest accepted our REQUEST: tell the host client. */
static enum conn_fate accept_guest_response(struct muxer *muxer, struct conn *conn)
{
	char reply[32];
	int length;

	/* a RESPONSE counts only once our REQUEST reached the guest */
	if (conn->pending & CONN_PENDING_REQUEST)
		return reset_unexpected(muxer, conn, VSOCK_OP_RESPONSE);
	deadline_cancel(&muxer->deadlines, &conn->deadline);
	conn->state = CONN_ESTABLISHED;
	/* one write, before any guest data can reach the socket */
	length = snprintf(reply, sizeof(reply), "OK %" PRIu32 "\n",
			  muxer->options->connect_reply == CONNECT_REPLY_GUEST_PORT ?
			  conn->peer_port : conn->local_port);
	if (send(conn->host_fd, reply, (size_t)length, MSG_NOSIGNAL | MSG_DONTWAIT) !=
	    length) {
		muxer->stats.host_gone_before_ok++;
		return end_with_rst(muxer, conn, "host client gone before OK");
	}
	conn_opened(muxer, conn);
	/* Bytes the client sent after its CONNECT line are waiting unread,
	 * and an edge-triggered epoll will not report them again. */
	conn->host_readable = true;
	conn_schedule_rx(muxer, conn);
	return CONN_KEPT;
}

static enum conn_fate on_guest_shutdown(struct muxer *muxer, struct conn *conn,
					const struct vsock_header *header)
{
	if (header->flags & ~(uint32_t)(VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND)) {
		/* undefined bits are ignored (as Linux does), but counted */
		muxer->stats.dropped[DROP_BAD_SHUTDOWN_FLAGS]++;
		log_ratelimited(&muxer->packet_log, LOG_LEVEL_WARN,
				"conn local %" PRIu32 " peer %" PRIu32
				": SHUTDOWN with undefined flags %#" PRIx32,
				conn->local_port, conn->peer_port, header->flags);
	}
	if (header->flags & VSOCK_SHUTDOWN_RCV)
		conn->guest_shut_rcv = true;
	if (header->flags & VSOCK_SHUTDOWN_SEND)
		conn->guest_shut_send = true;
	if (conn->guest_shut_rcv && conn->guest_shut_send &&
	    tx_ring_used(&conn->to_host_ring) > 0)
		deadline_arm(&muxer->deadlines, &conn->deadline,
			     CONN_DEADLINE_SHUTDOWN);
	return conn_update_close_and_credit(muxer, conn);
}

/* One guest packet: its header, and its payload as guest memory. */
struct guest_packet {
	const struct vsock_header *header;
	const struct iovec *payload;
	size_t payload_count;
};

/* Where a guest RW is checked against the connection: its direction is
 * open and it stays within the credit we offered. */
static enum conn_fate on_guest_rw(struct muxer *muxer, struct conn *conn,
				  const struct guest_packet *packet)
{
	const struct vsock_header *header = packet->header;

	if (header->len == 0)
		return CONN_KEPT;
	if (conn->guest_shut_send)
		return end_with_rst(muxer, conn, "RW after guest SHUTDOWN(SEND)");
	/* in flight = received but not yet written to the host */
	if ((uint64_t)(conn->received_from_guest - conn->written_to_host) + header->len > conn->window) {
		muxer->stats.dropped[DROP_CREDIT_VIOLATION]++;
		log_ratelimited(&muxer->packet_log, LOG_LEVEL_WARN,
				"conn local %" PRIu32 " peer %" PRIu32
				": guest sent %" PRIu32 " bytes beyond its credit",
				conn->local_port, conn->peer_port, header->len);
		return end_with_rst(muxer, conn, "guest exceeded credit");
	}
	conn->received_from_guest += header->len;
	if (deliver_to_host(muxer, conn, packet->payload, packet->payload_count,
			    header->len) == CONN_GONE)
		return CONN_GONE;
	return conn_update_close_and_credit(muxer, conn);
}

/* Before both handshakes are done only credit may flow (its fields were
 * taken from the header); any other op confuses the two ends. */
static enum conn_fate not_yet_established(struct muxer *muxer, struct conn *conn,
					  uint16_t op)
{
	if (op == VSOCK_OP_CREDIT_UPDATE || op == VSOCK_OP_CREDIT_REQUEST)
		return CONN_KEPT;
	return reset_unexpected(muxer, conn, op);
}

/* Our REQUEST is queued or out; only the guest's answer moves it on. */
static enum conn_fate guest_packet_while_host_requested(struct muxer *muxer,
							struct conn *conn,
							const struct guest_packet *packet)
{
	switch (packet->header->op) {
	case VSOCK_OP_RESPONSE:
		return accept_guest_response(muxer, conn);
	case VSOCK_OP_RST:
		muxer->stats.refused[REFUSED_GUEST_REFUSED]++;
		return close_on_guest_rst(muxer, conn);
	default:
		return not_yet_established(muxer, conn, packet->header->op);
	}
}

/* The guest's REQUEST waits for the broker's connect. */
static enum conn_fate guest_packet_while_guest_connecting(struct muxer *muxer,
							  struct conn *conn,
							  const struct guest_packet *packet)
{
	if (packet->header->op == VSOCK_OP_RST)
		return close_on_guest_rst(muxer, conn);
	return not_yet_established(muxer, conn, packet->header->op);
}

static enum conn_fate guest_packet_while_established(struct muxer *muxer,
						     struct conn *conn,
						     const struct guest_packet *packet)
{
	switch (packet->header->op) {
	case VSOCK_OP_RW:
		return on_guest_rw(muxer, conn, packet);
	case VSOCK_OP_SHUTDOWN:
		return on_guest_shutdown(muxer, conn, packet->header);
	case VSOCK_OP_CREDIT_UPDATE:
		return CONN_KEPT; /* the credit fields were taken from the header */
	case VSOCK_OP_CREDIT_REQUEST:
		queue_pending(muxer, conn, CONN_PENDING_CREDIT_UPDATE);
		return CONN_KEPT;
	case VSOCK_OP_RST:
		return close_on_guest_rst(muxer, conn);
	default:
		return reset_unexpected(muxer, conn, packet->header->op);
	}
}

typedef enum conn_fate guest_packet_handler(struct muxer *muxer, struct conn *conn,
					    const struct guest_packet *packet);

/* The states a connection in the port table can be in. (A host client
 * still sending its CONNECT line, and an abandoned slot, are not in it.) */
static guest_packet_handler *const guest_packet_by_state[] = {
	[CONN_HOST_REQUESTED] = guest_packet_while_host_requested,
	[CONN_GUEST_CONNECTING] = guest_packet_while_guest_connecting,
	[CONN_ESTABLISHED] = guest_packet_while_established,
};

/* Checks that do not depend on the state: an op or a socket type we do
 * not know, a credit the guest cannot have. Returns true if the packet
 * goes on to its state's handler. */
static bool guest_packet_plausible(struct muxer *muxer, struct conn *conn,
				   const struct vsock_header *header)
{
	if (header->op < VSOCK_OP_REQUEST || header->op > VSOCK_OP_CREDIT_REQUEST) {
		muxer->stats.dropped[DROP_BAD_OP]++;
		log_ratelimited(&muxer->packet_log, LOG_LEVEL_WARN,
				"guest packet with unknown op %u from port %" PRIu32,
				header->op, header->src_port);
		if (conn)
			conn_reset(muxer, conn, "unknown op");
		else
			owe_rst(muxer, header->dst_port, header->src_port);
		return false;
	}
	if (header->type != VSOCK_TYPE_STREAM) {
		muxer->stats.dropped[DROP_BAD_OP]++;
		log_ratelimited(&muxer->packet_log, LOG_LEVEL_INFO,
				"guest %s with unsupported type %u from port %" PRIu32,
				vsock_op_name(header->op), header->type,
				header->src_port);
		if (header->op == VSOCK_OP_RST)
			return false;
		if (conn)
			conn_reset(muxer, conn, "unsupported socket type");
		else
			owe_rst(muxer, header->dst_port, header->src_port);
		return false;
	}
	if (conn && (int32_t)(header->fwd_cnt - conn->sent_to_guest) > 0) {
		/* the guest claims to have read bytes we never sent; an RST
		 * still closes the connection (unanswered) */
		muxer->stats.dropped[DROP_BAD_CREDIT]++;
		log_ratelimited(&muxer->packet_log, LOG_LEVEL_WARN,
				"conn local %" PRIu32 " peer %" PRIu32 ": guest fwd_cnt %"
				PRIu32 " is ahead of the %" PRIu32 " bytes sent to it",
				conn->local_port, conn->peer_port, header->fwd_cnt,
				conn->sent_to_guest);
		if (header->op != VSOCK_OP_RST) {
			conn_reset(muxer, conn, "impossible credit");
			return false;
		}
	}
	return true;
}

void conn_handle_guest_packet(struct muxer *muxer,
			      const struct vsock_header *header,
			      const struct iovec *payload, size_t payload_count)
{
	struct conn *conn = conn_table_lookup(&muxer->table, header->dst_port,
					      header->src_port);
	const struct guest_packet packet = {
		.header = header, .payload = payload, .payload_count = payload_count,
	};
	guest_packet_handler *handler = NULL;
	uint32_t credit_before;

	if (!guest_packet_plausible(muxer, conn, header))
		return;
	if (conn && conn->state < sizeof(guest_packet_by_state) / sizeof(guest_packet_by_state[0]))
		handler = guest_packet_by_state[conn->state];
	if (!handler) {
		guest_packet_without_connection(muxer, header);
		return;
	}
	/* every header carries the guest's credit */
	credit_before = conn_guest_credit(conn);
	conn->guest_buf_alloc = header->buf_alloc;
	conn->guest_fwd_cnt = header->fwd_cnt;
	conn->counters.packets_from_guest++;
	conn->counters.last_activity_ns = monotonic_ns();
	if (handler(muxer, conn, &packet) == CONN_GONE)
		return;
	if (credit_before == 0 && conn_guest_credit(conn) > 0)
		conn_schedule_rx(muxer, conn);
}

/* ------------------------------------------------------------------------
 * host side
 */

void conn_adopt_host_client(struct muxer *muxer, int fd)
{
	struct conn *conn;

	/* the broker may have accepted a few more before it heard "pause" */
	if (muxer->handshakes_in_progress >= 2 * muxer->options->max_host_handshakes) {
		muxer->stats.refused[REFUSED_HANDSHAKE_LIMIT]++;
		log_ratelimited(&muxer->conn_log, LOG_LEVEL_WARN,
				"host client refused: %" PRIu32 " host clients are "
				"still sending their CONNECT line",
				muxer->handshakes_in_progress);
		close(fd);
		return;
	}
	conn = conn_table_alloc(&muxer->table);
	if (!conn) {
		muxer->stats.refused[REFUSED_LIMIT]++;
		log_ratelimited(&muxer->conn_log, LOG_LEVEL_WARN,
				"host client refused: connection limit %" PRIu32
				" reached (--max-connections)",
				muxer->options->max_connections);
		close(fd);
		return;
	}
	conn->state = CONN_HOST_HANDSHAKE;
	handshake_started(muxer);
	conn->initiator = CONN_FROM_HOST;
	conn->host_fd = fd;
	conn->counters.opened_ns = monotonic_ns();
	conn->counters.last_activity_ns = conn->counters.opened_ns;
	connect_cmd_init(&conn->handshake);
	tx_ring_init(&conn->to_host_ring, muxer->options->tx_buffer_size);
	if (conn_watch_host(muxer, conn) < 0) {
		conn_destroy(muxer, conn, "epoll registration failed");
		return;
	}
	deadline_arm(&muxer->deadlines, &conn->deadline, CONN_DEADLINE_HANDSHAKE);
}

static void refuse_host_client(struct muxer *muxer, struct conn *conn,
			       enum muxer_refusal_reason reason, const char *why)
{
	muxer->stats.refused[reason]++;
	log_ratelimited(&muxer->conn_log, LOG_LEVEL_INFO,
			"host client refused: %s", why);
	conn_destroy(muxer, conn, why);
}

/* Read the CONNECT line without consuming a byte beyond its newline. */
static void read_handshake(struct muxer *muxer, struct conn *conn)
{
	char peeked[CONNECT_CMD_MAX_LINE];
	for (;;) {
		size_t consumed = 0;
		uint32_t port = 0;
		enum connect_cmd_status status;
		ssize_t got = recv(conn->host_fd, peeked, sizeof(peeked),
				   MSG_PEEK | MSG_DONTWAIT);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				refuse_host_client(muxer, conn, REFUSED_BAD_CONNECT_LINE,
						   "host client read error");
			return;
		}
		if (got == 0) {
			refuse_host_client(muxer, conn, REFUSED_BAD_CONNECT_LINE,
					   "host client closed before CONNECT");
			return;
		}
		status = connect_cmd_feed(&conn->handshake, peeked, (size_t)got,
					  &consumed, &port);
		if (status == CONNECT_CMD_INVALID) {
			refuse_host_client(muxer, conn, REFUSED_BAD_CONNECT_LINE,
					   "malformed CONNECT line");
			return;
		}
		/* consume exactly the line's bytes; the rest is stream data */
		if (consumed > 0 &&
		    recv(conn->host_fd, peeked, consumed, MSG_DONTWAIT) != (ssize_t)consumed) {
			refuse_host_client(muxer, conn, REFUSED_BAD_CONNECT_LINE,
					   "host client read error");
			return;
		}
		if (status == CONNECT_CMD_DONE) {
			if (!port_list_allows(&muxer->options->allow_host_ports, port)) {
				char why[64];
				snprintf(why, sizeof(why), "guest port %" PRIu32
					 " not in --allow-host-ports", port);
				refuse_host_client(muxer, conn, REFUSED_POLICY_HOST, why);
				return;
			}
			conn->peer_port = port;
			conn->local_port = conn_table_allocate_local_port(&muxer->table, port);
			if (conn->local_port == 0 || conn_table_insert(&muxer->table, conn) < 0) {
				refuse_host_client(muxer, conn, REFUSED_LIMIT,
						   "no free local port");
				return;
			}
			conn->state = CONN_HOST_REQUESTED;
			handshake_finished(muxer);
			(void)conn_grant_window(muxer, conn); /* what REQUEST offers */
			deadline_arm(&muxer->deadlines, &conn->deadline,
				     CONN_DEADLINE_CONNECT);
			queue_pending(muxer, conn, CONN_PENDING_REQUEST);
			return;
		}
	}
}

void conn_on_host_event(struct muxer *muxer, struct conn *conn, uint32_t events)
{
	if (conn->state == CONN_HOST_HANDSHAKE) {
		if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
			read_handshake(muxer, conn);
		return;
	}
	if (conn->state == CONN_HOST_REQUESTED) {
		/* data waits in the socket until the guest accepts; a hang-up
		 * is noticed when we read or write */
		return;
	}
	if (conn->state != CONN_ESTABLISHED)
		return;
	if ((events & EPOLLOUT) && flush_ring(muxer, conn) == CONN_GONE)
		return;
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
		conn->host_readable = true;
		if (conn_guest_credit(conn) == 0)
			muxer->stats.waits_for_credit++;
		conn_schedule_rx(muxer, conn);
	}
}

/* The broker could not connect a guest's REQUEST: say why, as exactly as
 * the errno allows, and RST the guest. */
static void refuse_broker_connect(struct muxer *muxer, struct conn *conn, int error)
{
	if (error == IPC_CONNECT_NOT_ALLOWED) {
		muxer->stats.refused[REFUSED_POLICY_GUEST]++;
		log_ratelimited(&muxer->conn_log, LOG_LEVEL_WARN,
				"guest connect from port %" PRIu32 " to %" PRIu32
				" refused by the broker: port not in --allow-guest-ports",
				conn->peer_port, conn->local_port);
		conn_reset(muxer, conn, "port not allowed");
		return;
	}
	if (error == EACCES || error == EPERM) {
		muxer->stats.refused[REFUSED_PERMISSION_DENIED]++;
		log_ratelimited(&muxer->conn_log, LOG_LEVEL_WARN,
				"guest connect from port %" PRIu32 " to %" PRIu32
				" refused: permission denied on %s_%" PRIu32 " (the daemon's "
				"user may not connect to it: give the socket a group that "
				"user is in and mode 0660, or mode 0666)",
				conn->peer_port, conn->local_port, muxer->options->uds_path,
				conn->local_port);
		conn_reset(muxer, conn, "permission denied on the host listener");
		return;
	}
	/* out of descriptors (here or in the broker): the fd limit */
	muxer->stats.refused[error == EMFILE || error == ENFILE ? REFUSED_LIMIT :
			     REFUSED_NO_HOST_LISTENER]++;
	log_ratelimited(&muxer->conn_log, LOG_LEVEL_INFO,
			"guest connect from port %" PRIu32 " to %" PRIu32 " refused: %s",
			conn->peer_port, conn->local_port, strerror(error));
	conn_reset(muxer, conn, "no host listener");
}

void conn_on_broker_connect(struct muxer *muxer, uint32_t request_id,
			    int error, int fd)
{
	uint32_t slot = request_id_slot(request_id);
	struct conn *conn = NULL;
	uint64_t elapsed;

	if (slot < muxer->table.capacity)
		conn = &muxer->table.slots[slot];
	if (!conn || conn->connect_request_id != request_id ||
	    (conn->state != CONN_GUEST_CONNECTING && conn->state != CONN_ABANDONED)) {
		log_warn("broker reply for unknown connect request %" PRIu32, request_id);
		if (fd >= 0)
			close(fd);
		return;
	}
	conn->broker_reply_owed = false;
	muxer->connects_in_flight--;
	elapsed = monotonic_ns() - conn->connect_started_ns;
	muxer->stats.broker_connects++;
	muxer->stats.broker_connect_ns_sum += elapsed;
	if (elapsed > muxer->stats.broker_connect_ns_max)
		muxer->stats.broker_connect_ns_max = elapsed;
	if (conn->state == CONN_ABANDONED) {
		if (fd >= 0)
			close(fd);
		deadline_cancel(&muxer->deadlines, &conn->deadline);
		conn_table_free(&muxer->table, conn);
		return;
	}
	if (error != 0 || fd < 0) {
		if (fd >= 0)
			close(fd);
		refuse_broker_connect(muxer, conn, error);
		return;
	}
	deadline_cancel(&muxer->deadlines, &conn->deadline);
	conn->host_fd = fd;
	conn->state = CONN_ESTABLISHED;
	if (conn_watch_host(muxer, conn) < 0) {
		conn_reset(muxer, conn, "epoll registration failed");
		return;
	}
	conn_opened(muxer, conn);
	(void)conn_grant_window(muxer, conn);  /* what RESPONSE will offer */
	queue_pending(muxer, conn, CONN_PENDING_RESPONSE);
}

void conn_on_deadline(struct muxer *muxer, struct conn *conn)
{
	switch (conn->state) {
	case CONN_HOST_HANDSHAKE:
		refuse_host_client(muxer, conn, REFUSED_HANDSHAKE_TIMEOUT,
				   "no CONNECT line in time");
		break;
	case CONN_HOST_REQUESTED:
		muxer->stats.refused[REFUSED_GUEST_REFUSED]++;
		conn_reset(muxer, conn, "guest did not answer REQUEST in time");
		break;
	case CONN_GUEST_CONNECTING:
		conn_reset(muxer, conn, "broker did not answer in time");
		break;
	case CONN_ESTABLISHED:
		conn_reset(muxer, conn, "close timed out with data unflushed");
		break;
	case CONN_ABANDONED:
		log_warn("broker never answered connect request %" PRIu32
			 "; freeing its slot", conn->connect_request_id);
		conn->broker_reply_owed = false;
		muxer->connects_in_flight--;
		conn_table_free(&muxer->table, conn);
		break;
	default:
		break;
	}
}
