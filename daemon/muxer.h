/*
 * muxer.h - the jailed process: one vhost-user device, its two virtqueues,
 * every vsock connection, and the event loop that drives them.
 *
 * struct muxer is the state they share; each part has its module: the
 * loop (muxer.c), the TX queue (guest_tx.c), the RX queue (guest_rx.c,
 * rx_queue.c, rx_buffers.c, rst_queue.c), the connections (conn.c,
 * conn_table.c), the frontend (frontend.c, vhost_user.c), the broker
 * channel (muxer_ipc.c, broker_send.c) and the counters (muxer_stats.c).
 * Never: opens, binds, accepts or connects anything itself; every fd it
 * uses came from the broker (or was created before the sandbox closed).
 */
#ifndef VSOCKMUX_MUXER_H
#define VSOCKMUX_MUXER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "conn.h"
#include "conn_table.h"
#include "deadline.h"
#include "rst_queue.h"
#include "rx_queue.h"
#include "vhost_user.h"
#include "virtq.h"
#include "vsockmux/log.h"
#include "vsockmux/options.h"

/* RX buffers are filled in batches: one readv() fills several. */
#define MUXER_RX_BATCH 16u
/* Segments one RX chain may have: a queue's worth of direct descriptors
 * leading to an indirect table of another queue's worth. */
#define MUXER_RX_SEGMENTS (2u * VIRTQ_MAX_SIZE)
/* One readv takes at most this many segments (the kernel's IOV_MAX). */
#define MUXER_RX_READ_SEGMENTS 1024u
/* Most TX chains handled per loop turn before other events get a look. */
#define MUXER_TX_BUDGET 256u
/* TX processing pauses while this many RSTs wait for RX buffers: a guest
 * that floods REQUESTs but posts no RX buffers gets back-pressure instead
 * of lost RSTs. */
#define MUXER_ORPHAN_TX_PAUSE 1024u

/* A popped guest RX chain; iov points into the muxer's segment pool. */
struct rx_buffer {
	struct virtq_chain chain;
	struct iovec *iov;
};

/* Why a packet or chain was dropped; indexes muxer_stats.dropped. */
enum muxer_drop_reason {
	DROP_SHORT_HEADER,
	DROP_BAD_SRC_CID,
	DROP_BAD_DST_CID,
	DROP_BAD_LENGTH,
	DROP_BAD_OP,
	DROP_NO_CONNECTION,
	DROP_CREDIT_VIOLATION,
	DROP_RX_BUFFER_TOO_SMALL,
	DROP_RST_QUEUE_FULL,
	DROP_BAD_SHUTDOWN_FLAGS,
	DROP_BAD_CREDIT,
	DROP_RST_UNKNOWN,
	DROP_REASON_COUNT,
};

enum muxer_refusal_reason {
	REFUSED_NO_HOST_LISTENER,
	REFUSED_GUEST_REFUSED,
	REFUSED_LIMIT,
	REFUSED_BAD_CONNECT_LINE,
	REFUSED_HANDSHAKE_TIMEOUT,
	REFUSED_HANDSHAKE_LIMIT,
	REFUSED_PERMISSION_DENIED,   /* the host listener is not ours to connect to */
	REFUSED_POLICY_GUEST,        /* host port outside --allow-guest-ports */
	REFUSED_POLICY_HOST,         /* guest port outside --allow-host-ports */
	REFUSED_REASON_COUNT,
};

struct muxer_stats {
	uint64_t started_ns;
	uint64_t connections_total[2];   /* by enum conn_initiator */
	uint64_t connections_peak;
	uint64_t refused[REFUSED_REASON_COUNT];
	uint64_t rst_sent, rst_received;
	uint64_t transport_resets;       /* TRANSPORT_RESET events posted */
	uint64_t bytes_to_host, bytes_to_guest;
	uint64_t packets_from_guest, packets_to_guest;
	uint64_t dropped[DROP_REASON_COUNT];
	uint64_t waits_for_credit, waits_for_rx_buffers;
	uint64_t broker_connects, broker_connect_ns_sum, broker_connect_ns_max;
	uint64_t windows_limited;        /* credit offered below --tx-buffer-size */
	uint64_t host_accept_pauses;     /* handshake cap reached */
	uint64_t host_gone_before_ok;    /* closed before the guest accepted */
};

struct muxer {
	const struct vsockmuxd_options *options;
	int epoll_fd;
	int channel_fd;
	bool running;
	int exit_code;

	struct vhost_user_device device;
	struct deadline_queue deadlines;
	struct conn_table table;

	struct rx_queue rx_work;         /* connections with RX work */
	uint32_t connects_in_flight;     /* ConnectRequests unanswered */
	uint32_t handshakes_in_progress; /* host clients reading CONNECT */
	/* What the broker must hear. broker_send_owed sends it at once; when
	 * the channel is full (EAGAIN) it stays owed until the channel
	 * drains. */
	bool host_accept_paused;         /* the broker should not accept */
	bool host_accept_told;           /* ... and this is what it was told */
	bool owe_vmm_detached;           /* the frontend left; not yet said */
	bool channel_out_armed;          /* EPOLLOUT on the channel */
	uint64_t windows_reserved;       /* sum of conn->window */

	struct rst_queue rsts;           /* RSTs owed for no connection */

	/* RX buffer slots; the spare ones (popped, not used yet) form a FIFO
	 * of slot numbers, oldest first. */
	struct rx_buffer rx_slots[MUXER_RX_BATCH];
	struct iovec *rx_segment_pool;   /* MUXER_RX_SEGMENTS per slot */
	bool rx_slot_taken[MUXER_RX_BATCH];
	uint8_t spare_rx[MUXER_RX_BATCH];
	uint32_t spare_rx_head, spare_rx_count;
	struct iovec rx_read_iov[MUXER_RX_READ_SEGMENTS];
	bool tx_paused_for_rst;          /* MUXER_ORPHAN_TX_PAUSE reached */
	uint32_t rx_rejects_left;        /* this guest_rx_process */

	bool transport_reset_owed;       /* VIRTIO_VSOCK_EVENT_TRANSPORT_RESET,
					    once the event queue is ours */
	bool tx_backlog;                 /* TX budget ran out last turn */
	bool rx_backlog;                 /* RX budget ran out last turn */
	struct iovec tx_iov[VIRTQ_MAX_SIZE];
	struct iovec tx_payload_iov[VIRTQ_MAX_SIZE];

	struct muxer_stats stats;
	struct log_ratelimit packet_log;
	struct log_ratelimit conn_log;
	struct log_ratelimit audit_log;  /* connection open/close lines */
};

/* Connection open/close lines per second before "N suppressed" (the
 * counters keep the whole story). */
#define MUXER_AUDIT_LINES_PER_SECOND 100u

/*
 * Run the muxer until the broker goes away. lock_down (may be NULL) runs
 * after every fd and allocation the loop needs exists and before the first
 * event is handled: it applies the sandbox. A non-zero return ends the
 * muxer. Returns the exit code.
 */
int muxer_run(const struct vsockmuxd_options *options, int channel_fd,
	      int (*lock_down)(void *opaque), void *opaque);

/* Set up / tear down everything but the loop (tests use these). */
int muxer_init(struct muxer *muxer, const struct vsockmuxd_options *options,
	       int channel_fd);
void muxer_destroy(struct muxer *muxer);


/* IPC with the broker (muxer_ipc.c). */
void muxer_handle_channel(struct muxer *muxer);
/* Answer a StatsRequest with the counters (muxer_stats.c). */
void muxer_answer_stats(struct muxer *muxer, uint32_t request_id,
			bool include_connections);

#endif
