/*
 * vguest.h - the "virtual guest": a test-side vhost-user frontend that plays
 * both QEMU 7.2 (vhost-user-vsock) and the Linux 6.1 virtio-vsock driver,
 * so system tests can drive the real vsockmuxd without a VM.
 *
 * Owns: one memfd of "guest memory" (guest physical address 0, user address
 * = this process's mapping), the split virtqueues RX (0) and TX (1), the
 * vhost-user set-up in QEMU 7.2's order, a Linux-like vsock stream socket
 * layer (credit, shutdown, RST), counters and a log of control packets, and
 * hostile helpers (raw headers, malformed descriptor chains, raw vhost-user
 * messages).
 * Never: spawns threads or sleeps. Everything is single-threaded and driven
 * by vguest_poll() or by the caller's own poll loop (vguest_fill_pollfds +
 * vguest_handle_pollfds). Every blocking wait (vhost-user replies) is bounded
 * by options.io_timeout_ms.
 */
#ifndef VSOCKMUX_TESTS_VGUEST_H
#define VSOCKMUX_TESTS_VGUEST_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "vsockmux/virtio_vsock.h"

#define VGUEST_QUEUE_RX 0
#define VGUEST_QUEUE_TX 1
#define VGUEST_QUEUE_COUNT 2

#define VGUEST_DEFAULT_CID 3u
#define VGUEST_DEFAULT_MEMORY_SIZE (64u * 1024u * 1024u)
#define VGUEST_DEFAULT_QUEUE_SIZE 128u
#define VGUEST_MAX_QUEUE_SIZE 1024u
#define VGUEST_DEFAULT_RX_BUF_SIZE 3776u   /* Debian 6.1: hdr+payload */
#define VGUEST_DEFAULT_RX_SPLIT_PAYLOAD 4096u
#define VGUEST_DEFAULT_BUF_ALLOC 262144u
#define VGUEST_MAX_TX_PAYLOAD 65536u       /* VIRTIO_VSOCK_MAX_PKT_BUF_SIZE */
#define VGUEST_MAX_TX_DATA_SEGMENTS 16u
#define VGUEST_ANY_PORT UINT32_MAX
#define VGUEST_OP_SLOTS 8u                 /* per-op counter array size */

/* Shape of the RX buffers we post. */
enum vguest_rx_layout {
	VGUEST_RX_SINGLE,  /* one write-only descriptor: header + payload */
	VGUEST_RX_SPLIT,   /* 44-byte header descriptor + payload descriptor */
	VGUEST_RX_SCATTER, /* 44-byte header descriptor + rx_split_payload
			      bytes over rx_scatter_segments descriptors */
};

/* Shape of the TX chains we post for packets with payload. */
enum vguest_tx_layout {
	VGUEST_TX_LINUX,      /* 44-byte header desc + data desc(s) */
	VGUEST_TX_SINGLE,     /* header and payload in one descriptor */
	VGUEST_TX_HDR_SPLIT,  /* header split 20 + 24 bytes, then data */
};

struct vguest_options {
	uint64_t guest_cid;          /* expected in GET_CONFIG; default 3 */
	size_t memory_size;          /* default 64 MiB, at least 40 MiB */
	uint16_t queue_size;         /* SET_VRING_NUM, power of two <= 1024 */
	bool want_event_idx;         /* negotiate RING_EVENT_IDX if offered */
	bool want_indirect;          /* negotiate RING_INDIRECT_DESC if offered */
	enum vguest_rx_layout rx_layout;
	uint32_t rx_buf_size;        /* VGUEST_RX_SINGLE: whole descriptor */
	uint32_t rx_split_payload;   /* VGUEST_RX_SPLIT: payload descriptor */
	bool rx_refill_half;         /* Linux: refill only below half full */
	bool rx_start_empty;         /* post no RX buffers until
					vguest_set_rx_refill(vg, true) */
	enum vguest_tx_layout tx_layout;
	unsigned tx_data_segments;   /* split TX data over n descriptors */
	bool tx_use_indirect;        /* use an indirect table if negotiated */
	uint32_t tx_max_payload;     /* largest RW payload, <= 64 KiB */
	uint32_t buf_alloc;          /* credit we advertise per socket */
	bool always_kick;            /* ignore avail_event / NO_NOTIFY */
	bool strict_interrupts;      /* look at used rings only after an
					interrupt, like a real driver */
	uint32_t first_local_port;   /* first port for vguest_connect_port */
	uint16_t ring_base;          /* SET_VRING_BASE: first avail/used index
					(near 65535 to test index wrap) */
	int io_timeout_ms;           /* bound on each vhost-user reply */
	bool trace;                  /* print every packet on stderr */
	unsigned rx_scatter_segments;/* VGUEST_RX_SCATTER: payload descriptors
					(1 .. VGUEST_MAX_RX_SCATTER) */
	bool unsealed_memory;        /* guest memory memfd without
					F_SEAL_SHRINK (QEMU seals) */
	bool event_queue;            /* hand queue 2, the event queue, to the
					backend too (crosvm, cloud-hypervisor);
					QEMU keeps it */
};

#define VGUEST_MAX_RX_SCATTER 64u

/* Fill *options with the Linux 6.1 / QEMU 7.2 defaults. */
void vguest_options_default(struct vguest_options *options);

enum vguest_sock_state {
	VGUEST_SOCK_LISTEN,
	VGUEST_SOCK_CONNECTING,   /* REQUEST sent, waiting for RESPONSE */
	VGUEST_SOCK_CONNECTED,
	VGUEST_SOCK_CLOSING,      /* close(): SHUTDOWN(RCV|SEND) sent, want RST */
	VGUEST_SOCK_CLOSED,       /* RST seen or sent, or VM gone */
};

/* What a listener does with an incoming REQUEST. */
enum vguest_listen_mode {
	VGUEST_LISTEN_ACCEPT,     /* RESPONSE at once (like Linux) */
	VGUEST_LISTEN_IGNORE,     /* never answer (handshake timeout tests) */
	VGUEST_LISTEN_REFUSE,     /* answer RST */
};

struct vguest;

/* One guest vsock stream socket. Fields are for reading only. */
struct vguest_sock {
	struct vguest *vg;
	enum vguest_sock_state state;
	enum vguest_listen_mode listen_mode;
	uint32_t local_port;
	uint32_t peer_port;

	/* credit, all u32 with wrap-around as on the wire */
	uint32_t buf_alloc;          /* what we advertise */
	uint32_t fwd_cnt;            /* payload bytes the app consumed */
	uint32_t last_fwd_cnt_sent;  /* fwd_cnt in our latest packet */
	uint32_t rx_cnt;             /* payload bytes received */
	uint32_t tx_cnt;             /* payload bytes sent */
	uint32_t peer_buf_alloc;     /* from the peer's latest header */
	uint32_t peer_fwd_cnt;
	bool peer_credit_known;

	uint32_t peer_shutdown;      /* VSOCK_SHUTDOWN_* bits received */
	uint32_t local_shutdown;     /* VSOCK_SHUTDOWN_* bits sent */
	bool refused;                /* connect answered with RST */
	bool reset_received;
	bool reset_sent;
	bool data_after_close;       /* RW arrived while CLOSING/CLOSED */
	bool raw_traffic;            /* raw packets sent for this pair */

	uint64_t rx_bytes;           /* totals, 64-bit */
	uint64_t tx_bytes;
	uint64_t op_rx[VGUEST_OP_SLOTS];
	uint64_t op_tx[VGUEST_OP_SLOTS];
	uint64_t credit_violations;  /* peer sent beyond our credit */
	uint64_t connect_started_ns; /* vguest_connect_port time */
	uint64_t established_ns;     /* RESPONSE (or REQUEST accepted) time */
	uint64_t closed_ns;          /* entered VGUEST_SOCK_CLOSED */

	/* received, not yet read by the app */
	uint8_t *rx_data;
	size_t rx_head, rx_tail, rx_capacity;

	/* listener: queue of accepted sockets not yet taken */
	struct vguest_sock *accept_head, *accept_tail;
	struct vguest_sock *accept_next;
	struct vguest_sock *listener;  /* the listener that created us */

	struct vguest_sock *next;      /* vguest's list of sockets */
	void *user;                    /* free for the test */
};

/* A control packet as logged (RW packets are only counted). */
struct vguest_packet_record {
	bool from_guest;
	struct vsock_header header;
	uint64_t time_ns;
};

struct vguest_stats {
	uint64_t rx_packets[VGUEST_OP_SLOTS]; /* daemon -> guest, by op */
	uint64_t tx_packets[VGUEST_OP_SLOTS]; /* guest -> daemon, by op */
	uint64_t rx_payload_bytes;
	uint64_t tx_payload_bytes;
	uint64_t protocol_errors;      /* anything the daemon got wrong */
	uint64_t credit_violations;
	uint64_t unknown_socket_packets;
	uint64_t rx_interrupts;
	uint64_t tx_interrupts;
	uint64_t stale_call_signals;   /* on a call fd replaced with an acked
					  SET_VRING_CALL: ignored (lost) */
	uint64_t early_call_signals;   /* on a call fd replaced during set-up
					  (taken as interrupts, like QEMU's
					  masked notifier) */
	uint64_t err_signals;          /* on SET_VRING_ERR fds */
	uint64_t kicks;
	uint64_t kicks_suppressed;
	uint64_t tx_used_nonzero;      /* TX used length != 0 */
	uint64_t rx_used_bad_length;   /* RX used length wrong */
	uint64_t bad_used_ids;         /* used id we never posted */
	uint64_t tx_ring_full;         /* a send waited for descriptors */
	uint64_t backend_messages;     /* unexpected vhost-user messages */
	uint64_t rx_used_empty;        /* RX buffers handed back unused
					  (length 0: dropped and reposted,
					  as Linux does) */
};

/* Malformed TX chains for vguest_post_bad_chain. */
enum vguest_bad_chain {
	VGUEST_BAD_HEADER_OUTSIDE,   /* header descriptor past end of memory */
	VGUEST_BAD_DATA_OUTSIDE,     /* data descriptor past end of memory */
	VGUEST_BAD_DATA_STRADDLE,    /* data starts inside, ends outside */
	VGUEST_BAD_DATA_WRAP,        /* addr + len overflows 64 bits */
	VGUEST_BAD_SELF_LOOP,        /* descriptor's next is itself */
	VGUEST_BAD_TWO_LOOP,         /* a -> b -> a */
	VGUEST_BAD_NEXT_OUT_OF_RANGE,/* next >= queue size */
	VGUEST_BAD_INDIRECT_TOO_LONG,/* indirect table longer than the queue */
	VGUEST_BAD_WRITE_ONLY,       /* write-only descriptor on TX */
	VGUEST_BAD_SHORT_HEADER,     /* whole chain shorter than 44 bytes */
	VGUEST_BAD_NESTED_INDIRECT,  /* indirect table holds INDIRECT */
	VGUEST_BAD_INDIRECT_BAD_LEN, /* table length not a multiple of 16 */
	VGUEST_BAD_INDIRECT_OUTSIDE, /* table itself outside guest memory */
	VGUEST_BAD_INDIRECT_EMPTY,   /* table length 0 */
	VGUEST_BAD_INDIRECT_AND_NEXT,/* INDIRECT and NEXT both set */
	VGUEST_BAD_CHAIN_COUNT
};

/* Malformed RX buffers for vguest_post_bad_rx_chain. Each sits in a
 * 256-byte canary area; the device must not write outside what the
 * descriptors allow. */
enum vguest_bad_rx {
	VGUEST_BAD_RX_READ_ONLY,     /* RX descriptor without WRITE */
	VGUEST_BAD_RX_MIXED,         /* writable header desc + read-only desc */
	VGUEST_BAD_RX_TOO_SHORT,     /* one 20-byte writable descriptor */
	VGUEST_BAD_RX_OUTSIDE,       /* writable, outside guest memory */
	VGUEST_BAD_RX_COUNT
};

/* Name of a vguest_bad_chain value, for test output. */
const char *vguest_bad_chain_name(enum vguest_bad_chain kind);

/* ---- life cycle ---- */

/* Allocate guest memory and rings. NULL with errno on failure. */
struct vguest *vguest_create(const struct vguest_options *options);

/* With options.event_queue: the VIRTIO_VSOCK_EVENT_TRANSPORT_RESET events
 * the backend has posted since the guest was created (reads the event
 * queue's used ring now, reposting the buffers). */
unsigned vguest_transport_resets(struct vguest *vg);
/* Disconnect (if connected) and free everything, sockets included. */
void vguest_destroy(struct vguest *vg);
/* Last error message (set when a call fails). */
const char *vguest_error(const struct vguest *vg);

/*
 * Connect to the daemon's vhost-user socket and run the whole set-up in
 * QEMU 7.2's order, then fill the RX ring. Returns 0 or -1 (see
 * vguest_error). Bounded by io_timeout_ms per reply.
 */
int vguest_connect(struct vguest *vg, const char *socket_path);
/* The VMM goes away: close the vhost-user socket and all eventfds without
 * any teardown message (like SIGKILLed QEMU). Sockets become CLOSED. */
void vguest_disconnect(struct vguest *vg);
/* True once EOF or an error was seen on the vhost-user socket. */
bool vguest_backend_gone(const struct vguest *vg);
bool vguest_is_connected(const struct vguest *vg);

uint64_t vguest_features_offered(const struct vguest *vg);
uint64_t vguest_features_acked(const struct vguest *vg);
uint64_t vguest_protocol_features(const struct vguest *vg);
uint64_t vguest_config_cid(const struct vguest *vg);
const struct vguest_options *vguest_get_options(const struct vguest *vg);

/* Change TX chain shape at run time (takes effect for the next packet). */
void vguest_set_tx_layout(struct vguest *vg, enum vguest_tx_layout layout,
			  unsigned data_segments, bool use_indirect);

/* ---- event loop ---- */

/* Upper bound on the pollfds vguest_fill_pollfds may use. */
#define VGUEST_MAX_POLLFDS 16u
/* Put this guest's fds into fds (at most max); returns the count. */
size_t vguest_fill_pollfds(const struct vguest *vg, struct pollfd *fds,
			   size_t max);
/* Handle what poll() reported for the fds vguest_fill_pollfds gave. */
void vguest_handle_pollfds(struct vguest *vg, const struct pollfd *fds,
			   size_t count);
/* Flush queued control packets and pending kicks (no waiting). */
void vguest_flush(struct vguest *vg);
/* poll() on the guest's fds for up to timeout_ms and handle them.
 * Returns the number of ready fds, 0 on timeout, -1 on poll error. */
int vguest_poll(struct vguest *vg, int timeout_ms);

/* ---- sockets ---- */

struct vguest_sock *vguest_listen(struct vguest *vg, uint32_t port);
void vguest_listen_set_mode(struct vguest_sock *listener,
			    enum vguest_listen_mode mode);
/* Next accepted connection of listener, or NULL. */
struct vguest_sock *vguest_accept(struct vguest_sock *listener);
/* Send REQUEST to the host; the socket is CONNECTING until RESPONSE
 * (CONNECTED) or RST (CLOSED, refused). NULL with errno on failure. */
struct vguest_sock *vguest_connect_port(struct vguest *vg, uint32_t peer_port);
struct vguest_sock *vguest_connect_port_from(struct vguest *vg,
					     uint32_t local_port,
					     uint32_t peer_port);
/* Bytes we may send right now under the peer's credit. */
uint32_t vguest_sock_credit(const struct vguest_sock *sock);
/* Queue up to len bytes as RW packets (honouring credit and ring space).
 * Returns bytes taken (> 0), or -1 with errno EAGAIN (no credit or no
 * descriptors now), ENOTCONN, EPIPE (we shut SEND), ECONNRESET. */
ssize_t vguest_send(struct vguest_sock *sock, const void *data, size_t len);
/* Read received bytes. Returns > 0, 0 at EOF (peer shut SEND and nothing
 * left, or closed cleanly), or -1 with errno EAGAIN / ECONNRESET. Sends a
 * CREDIT_UPDATE when our free space view has fallen behind, like Linux. */
ssize_t vguest_recv(struct vguest_sock *sock, void *buffer, size_t len);
size_t vguest_rx_pending(const struct vguest_sock *sock);
/* True when vguest_recv would return 0. */
bool vguest_sock_eof(const struct vguest_sock *sock);
/* Send SHUTDOWN with flags (VSOCK_SHUTDOWN_RCV/SEND). 0 or -1. */
int vguest_shutdown(struct vguest_sock *sock, uint32_t flags);
/* Linux close(): SHUTDOWN(RCV|SEND) and wait for the peer's RST. */
int vguest_close(struct vguest_sock *sock);
/* Abort: send RST, socket CLOSED at once. */
int vguest_reset(struct vguest_sock *sock);
/* Forget a socket (no packet is sent). The pointer becomes invalid. */
void vguest_sock_release(struct vguest_sock *sock);
const char *vguest_sock_state_name(enum vguest_sock_state state);

/* ---- counters and the control packet log ---- */

const struct vguest_stats *vguest_get_stats(const struct vguest *vg);
/* Print ring indices, event indices and socket states (for failures). */
void vguest_dump_state(const struct vguest *vg, FILE *out);
/* Count logged packets matching direction and op; ports as seen from the
 * guest (VGUEST_ANY_PORT matches all). RW packets are not logged. */
size_t vguest_count_packets(const struct vguest *vg, bool from_guest,
			    uint16_t op, uint32_t local_port,
			    uint32_t peer_port);
/* Latest logged packet matching, or NULL. */
const struct vguest_packet_record *
vguest_find_packet(const struct vguest *vg, bool from_guest, uint16_t op,
		   uint32_t local_port, uint32_t peer_port);
const struct vguest_packet_record *vguest_packet_log(const struct vguest *vg,
						     size_t *count);

/* ---- hostile helpers ---- */

/*
 * Post one TX packet whose header is exactly *header (nothing is fixed up:
 * cids, type, op, len are as given) followed by payload_len bytes. Does not
 * touch any socket's credit counters. On success *token (if not NULL)
 * identifies the chain for vguest_chain_result. -1/EAGAIN if the ring is
 * full.
 */
int vguest_send_raw(struct vguest *vg, const struct vsock_header *header,
		    const void *payload, size_t payload_len, uint32_t *token);
/*
 * Post a malformed TX chain of the given kind. header/payload (may be NULL:
 * a harmless RW header for ports 0/0 is used) are placed where the chain
 * would carry them, so a daemon that wrongly accepts the chain would
 * deliver them. -1 with errno on failure (EAGAIN: ring full; ENOTSUP: the
 * kind needs INDIRECT_DESC).
 */
int vguest_post_bad_chain(struct vguest *vg, enum vguest_bad_chain kind,
			  const struct vsock_header *header,
			  const void *payload, size_t payload_len,
			  uint32_t *token);
/* Post a malformed RX buffer (before the good ones already posted are
 * used up, the device will meet it). -1/EAGAIN if the RX ring is full. */
int vguest_post_bad_rx_chain(struct vguest *vg, enum vguest_bad_rx kind,
			     uint32_t *token);
/* True if the canary bytes the device must not touch are intact. */
bool vguest_bad_rx_canary_intact(const struct vguest *vg, uint32_t token);
/* Stop (false) or resume (true) refilling the RX ring, to starve the
 * device of RX buffers. */
void vguest_set_rx_refill(struct vguest *vg, bool enabled);
/* RX buffers currently in the ring (good and bad). */
unsigned vguest_rx_buffers_posted(const struct vguest *vg);
/* Raw packets will be sent for sock's port pair: the peer's fwd_cnt may
 * then run ahead of what vguest_send sent, so stop checking that. */
void vguest_sock_mark_raw(struct vguest_sock *sock);
/* 1 and *used_len once the chain came back used, 0 while pending,
 * -1 for an unknown token. Works for TX and RX tokens. */
int vguest_chain_result(const struct vguest *vg, uint32_t token,
			uint32_t *used_len);

/* Send an arbitrary vhost-user message: header fields as given (size_field
 * may lie), then payload_len bytes, with up to VHOST_USER_MAX_FDS fds. */
int vguest_vhost_send_raw(struct vguest *vg, uint32_t request, uint32_t flags,
			  uint32_t size_field, const void *payload,
			  size_t payload_len, const int *fds, size_t fd_count);
int vguest_vhost_fd(const struct vguest *vg);
/*
 * Guest driver reset without a VMM restart (guest reboot), as QEMU 7.2 does
 * it: SET_VRING_ENABLE 0 and GET_VRING_BASE for both queues (bases[] gets
 * the answers, may be NULL), every guest socket becomes CLOSED, the rings
 * are rebuilt from scratch, and the driver-start sequence runs again.
 */
int vguest_reset_device(struct vguest *vg, uint32_t bases[VGUEST_QUEUE_COUNT]);
/* The avail index we have published on queue index (for GET_VRING_BASE
 * checks). */
uint16_t vguest_avail_idx(const struct vguest *vg, unsigned index);
/* Replace both call fds on the live rings (SET_VRING_CALL with
 * NEED_REPLY when REPLY_ACK was negotiated). Signals on the old fds after
 * the ack count as stale_call_signals and are otherwise ignored. */
int vguest_swap_call_fds(struct vguest *vg);
/*
 * QEMU's stop/cont (also snapshots): GET_VRING_BASE on both queues, then
 * vhost_dev_start again on the same rings, memory and sockets, restarting
 * each queue at the base it returned (bases[] gets them, may be NULL).
 */
int vguest_stop_cont(struct vguest *vg, uint32_t bases[VGUEST_QUEUE_COUNT]);
/* SET_MEM_TABLE again on the live rings (QEMU memory hot-plug). */
int vguest_resend_mem_table(struct vguest *vg);
/* The guest memory memfd (still owned by vg). */
int vguest_memory_fd(const struct vguest *vg);

/* ---- ring-level hostile helpers ---- */

/* Guest-physical addresses of queue index's descriptor table, avail ring
 * and used ring as set up. */
void vguest_ring_gpas(const struct vguest *vg, unsigned index, uint64_t *desc_gpa,
		      uint64_t *avail_gpa, uint64_t *used_gpa);
/* SET_VRING_ADDR on queue index with these guest-physical addresses (made
 * into user addresses the way the set-up does: an address beyond guest
 * memory stays beyond every region), with NEED_REPLY when REPLY_ACK was
 * negotiated; *ack gets the backend's answer (0 without REPLY_ACK). 0, or
 * -1 on an I/O error. The vguest itself keeps using its own rings. */
int vguest_set_vring_addr(struct vguest *vg, unsigned index, uint64_t desc_gpa,
			  uint64_t avail_gpa, uint64_t used_gpa, uint64_t *ack);
/* Advance the avail index of queue index by delta without posting chains
 * (the entries skipped hold whatever the ring held), publish it and kick.
 * Later posts continue from there. */
void vguest_avail_jump(struct vguest *vg, unsigned index, uint16_t delta);
/* Kick queue index now, whatever the device asked for. */
void vguest_kick_now(struct vguest *vg, unsigned index);
/* Change the buf_alloc sock advertises from its next packet on (and the
 * credit its own checks hold the peer to). */
void vguest_sock_set_buf_alloc(struct vguest_sock *sock, uint32_t buf_alloc);

#endif
