/*
 * conn.h - one vsock stream connection between a guest port and a host
 * Unix socket, and the state machine that drives it.
 *
 * Why a single struct with flags rather than many states: a stream has two
 * independent directions (half-close is real), plus a handshake on each
 * side. `state` says where the handshake is; the shut/eof flags say which
 * directions are still open. Every transition happens in conn.c: a guest
 * packet goes to one small function per state (a switch on the op
 * inside), each host event to its own function, so the whole machine can
 * be read in one place.
 *
 * Credit (the virtio-vsock flow control), all u32 with wrap-around:
 *   guest -> host: we advertise buf_alloc = `window` (--tx-buffer-size as
 *     the budget allows) and fwd_cnt = written_to_host. Bytes received but
 *     not yet written live in to_host_ring and may never exceed buf_alloc.
 *   host -> guest: we may send
 *     guest_buf_alloc - (sent_to_guest - guest_fwd_cnt).
 */
#ifndef VSOCKMUX_CONN_H
#define VSOCKMUX_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "connect_cmd.h"
#include "deadline.h"
#include "rx_queue.h"
#include "tx_ring.h"
#include "vsockmux/limits.h"
#include "vsockmux/virtio_vsock.h"

struct muxer;

enum conn_state {
	CONN_FREE = 0,          /* slot unused */
	CONN_HOST_HANDSHAKE,    /* host client connected, reading CONNECT */
	CONN_HOST_REQUESTED,    /* REQUEST queued/sent, awaiting RESPONSE */
	CONN_GUEST_CONNECTING,  /* guest REQUEST, awaiting the broker */
	CONN_ESTABLISHED,
	CONN_ABANDONED,         /* guest gave up while the broker works on
				   it; the slot waits for the broker reply */
};

enum conn_initiator {
	CONN_FROM_HOST,
	CONN_FROM_GUEST,
};

/* Control packets a connection still has to put on the RX queue. */
enum conn_pending {
	CONN_PENDING_REQUEST = 1u << 0,
	CONN_PENDING_RESPONSE = 1u << 1,
	CONN_PENDING_CREDIT_UPDATE = 1u << 2,
	CONN_PENDING_SHUTDOWN = 1u << 3,
};

/* Deadline kinds (one timerfd, see deadline.h). */
enum conn_deadline_kind {
	CONN_DEADLINE_HANDSHAKE = 0,  /* CONNECT line not complete */
	CONN_DEADLINE_CONNECT = 1,    /* REQUEST unanswered / broker slow */
	CONN_DEADLINE_SHUTDOWN = 2,   /* close pending, data still flushing */
	CONN_DEADLINE_BROKER = 3,     /* abandoned slot still awaiting the broker */
};

#define CONN_HANDSHAKE_TIMEOUT_NS (5ull * 1000000000ull)
#define CONN_CONNECT_TIMEOUT_NS (2ull * 1000000000ull)
#define CONN_SHUTDOWN_TIMEOUT_NS (2ull * 1000000000ull)
/* A reply the broker never sends must not hold a slot forever. */
#define CONN_BROKER_TIMEOUT_NS (10ull * 1000000000ull)
/* Credit a connection is always offered, budget or not, so that each one
 * keeps moving: the memory bound is the budget plus this per connection. */
#define CONN_WINDOW_FLOOR 4096u

struct conn_counters {
	uint64_t bytes_to_host, bytes_to_guest;
	uint64_t packets_from_guest, packets_to_guest;
	uint64_t opened_ns, last_activity_ns;
};

struct conn {
	enum conn_state state;
	enum conn_initiator initiator;
	uint32_t slot;            /* index in the table */
	uint32_t generation;      /* bumped on every reuse of the slot */
	int host_fd;
	uint32_t local_port;      /* our port on CID 2 */
	uint32_t peer_port;       /* the guest's port */
	bool hashed;              /* in the (local, peer) lookup table */

	/* guest -> host */
	uint32_t received_from_guest; /* payload bytes (the guest's tx_cnt) */
	uint32_t written_to_host;     /* of which written to the host socket:
					 our fwd_cnt */
	uint32_t to_host_reported;    /* written_to_host as last told to the
					 guest (fwd_cnt of our last header) */
	struct tx_ring to_host_ring;  /* received, not yet written */
	bool epollout_armed;
	uint32_t window;          /* buf_alloc offered: its share of
				     --tx-buffer-budget; never shrinks */

	/* host -> guest */
	uint32_t sent_to_guest;   /* payload bytes (our tx_cnt) */
	uint32_t guest_buf_alloc; /* the guest's buf_alloc and fwd_cnt, from */
	uint32_t guest_fwd_cnt;   /* its latest header */
	bool host_readable;       /* edge seen and not yet drained */

	/* directions */
	bool host_eof;            /* host sent EOF; SHUTDOWN(SEND) owed */
	bool guest_shut_send;     /* guest will send no more */
	bool guest_shut_rcv;      /* guest will receive no more */
	bool host_write_shut;     /* shutdown(SHUT_WR) done */

	uint32_t pending;         /* enum conn_pending bits */
	struct rx_link rx_work;   /* in the muxer's queue of RX work */
	struct conn *hash_next;
	struct deadline_entry deadline;
	struct connect_cmd_parser handshake;
	uint64_t connect_started_ns;
	uint32_t connect_request_id; /* ConnectRequest in flight */
	bool broker_reply_owed;       /* its reply has not arrived (the slot
					 waits as CONN_ABANDONED if the
					 connection ends first) */

	struct conn_counters counters;
};

static inline struct conn *conn_of_rx_link(struct rx_link *link)
{
	return (struct conn *)((char *)link - offsetof(struct conn, rx_work));
}

/* Credit we may still use towards the guest (0 if the guest shrank it). */
static inline uint32_t conn_guest_credit(const struct conn *conn)
{
	uint32_t in_flight = conn->sent_to_guest - conn->guest_fwd_cnt;
	if (in_flight > conn->guest_buf_alloc)
		return 0;
	return conn->guest_buf_alloc - in_flight;
}

/* Free space the guest currently believes we have. */
static inline uint32_t conn_guest_view_of_free(const struct conn *conn,
					       uint32_t buf_alloc)
{
	uint32_t unacknowledged = conn->received_from_guest - conn->to_host_reported;
	if (unacknowledged > buf_alloc)
		return 0;
	return buf_alloc - unacknowledged;
}

/* true when the guest's view lags our real free space by a quarter of the
 * buffer or more: time for an unsolicited CREDIT_UPDATE (the Linux guest
 * never asks). */
static inline bool conn_credit_update_due(const struct conn *conn,
					  uint32_t buf_alloc)
{
	uint32_t delivered_unreported = conn->written_to_host - conn->to_host_reported;
	return delivered_unreported != 0 &&
	       delivered_unreported >= buf_alloc / 4;
}

/* --- guest side: one decoded packet from the TX queue ------------------ */

/* Handle a guest packet whose framing and CIDs guest_tx.c has checked.
 * payload is the chain's bytes after the header (length header->len). */
void conn_handle_guest_packet(struct muxer *muxer,
			      const struct vsock_header *header,
			      const struct iovec *payload, size_t payload_count);

/* --- host side ---------------------------------------------------------- */

/* A host client fd arrived from the broker (--uds-path). */
void conn_adopt_host_client(struct muxer *muxer, int fd);
/* The broker answered a ConnectRequest. fd < 0 means error. */
void conn_on_broker_connect(struct muxer *muxer, uint32_t request_id,
			    int error, int fd);
/* epoll events for conn->host_fd. */
void conn_on_host_event(struct muxer *muxer, struct conn *conn,
			uint32_t events);
/* A deadline of conn expired. */
void conn_on_deadline(struct muxer *muxer, struct conn *conn);

/* --- host -> guest ------------------------------------------------------ */

enum conn_rx_result {
	CONN_RX_DONE,          /* sent what it could, or had nothing to send */
	CONN_RX_NO_BUFFERS,    /* the guest must post RX buffers first */
};

/* conn's turn on the RX queue: the next control packet it owes (in
 * protocol order), else host data as far as credit and buffers allow, EOF
 * becoming SHUTDOWN. Requeues conn if it has more. On CONN_RX_NO_BUFFERS
 * nothing changed and conn is not queued. */
enum conn_rx_result conn_rx_turn(struct muxer *muxer, struct conn *conn);

/* --- lifecycle ----------------------------------------------------------- */

/* Queue an RST for conn's ports and free it. */
void conn_reset(struct muxer *muxer, struct conn *conn, const char *reason);
/* Free conn (close the host socket) without telling the guest. */
void conn_destroy(struct muxer *muxer, struct conn *conn, const char *reason);

#endif
