/*
 * vguest_internal.h - what the virtual guest's files (vguest*.c) share and
 * nothing outside them may use: the memory layout, the queue, chain and
 * token records, struct vguest itself, and the cross-file helpers.
 *
 * Guest memory layout (guest physical addresses; user address = mapping):
 *   0x10000 + q * 0x20000   queue q: descriptor table, avail ring, used ring
 *                           (q 2, the event queue, only with options.event_queue;
 *                           its 4-byte event buffers at +0x10000)
 *   rx_area                 one RX buffer per head descriptor id
 *   tx_area                 TX slots of 128 KiB: header at +0, indirect
 *                           table at +256, payload at +32 KiB
 *   hostile_area            canary areas for malformed RX buffers
 *
 * Owns: the definitions only. Never: included by a test or by the harness
 * (they see the guest through vguest.h alone).
 */
#ifndef VSOCKMUX_TESTS_VGUEST_INTERNAL_H
#define VSOCKMUX_TESTS_VGUEST_INTERNAL_H

#include <linux/virtio_ring.h>
#include <sys/uio.h>

#include "vguest.h"
#include "vsockmux/vhost_user_wire.h"

#define VG_RING_AREA_OFFSET 0x10000u
#define VG_RING_AREA_STRIDE 0x20000u
#define VG_RX_AREA_OFFSET 0x100000u
#define VG_RX_SPLIT_PAYLOAD_OFFSET 64u
#define VG_TX_SLOT_SIZE 0x20000u
#define VG_TX_SLOT_TABLE 256u
#define VG_TX_SLOT_TABLE2 0x6000u
#define VG_TX_SLOT_DATA 0x8000u
#define VG_TX_SLOTS_MAX 128u
#define VG_CHAIN_MAX_DESCS 72u    /* 1 + VGUEST_MAX_RX_SCATTER, with room */
#define VG_MAX_STALE_FDS 4u
#define VG_MAX_ERROR_PRINTS 50u
#define VG_MIN_MEMORY_SIZE (40u * 1024u * 1024u)
#define VG_SHORT_HEADER_LEN 20u
#define VG_HOSTILE_AREA_SIZE 0x10000u
#define VG_CANARY_SIZE 256u
#define VG_CANARY_BYTE 0xa5u
#define VG_EVENT_QUEUE 2u
#define VG_EVENT_QUEUE_SIZE 8u
#define VG_EVENT_BUFFERS_OFFSET 0x10000u

/* The event queue (queue 2) when the guest hands it to the backend, as
 * crosvm and cloud-hypervisor do: VG_EVENT_QUEUE_SIZE buffers of one
 * struct virtio_vsock_event each, reposted as they come back. */
struct vg_event_queue {
	bool running;
	uint64_t desc_gpa, avail_gpa, used_gpa, buffers_gpa;
	uint16_t avail_idx, last_used;
	int kick_fd, call_fd;
	unsigned transport_resets;   /* events with id TRANSPORT_RESET */
	unsigned other_events;
};

/* What we remember about one posted chain (indexed by head id). */
struct vg_chain {
	bool in_use;
	uint8_t desc_count;
	uint16_t descs[VG_CHAIN_MAX_DESCS];
	int slot;              /* TX slot, -1 if none */
	uint32_t token;        /* 0: not tracked */
	uint32_t capacity;     /* RX: writable bytes */
};

struct vg_queue {
	uint16_t size;
	uint64_t desc_gpa, avail_gpa, used_gpa;
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	uint16_t avail_idx;          /* shadow of avail->idx */
	uint16_t last_used;          /* next used entry to read */
	uint16_t kick_old;           /* avail_idx at the last kick decision */
	bool broken;
	uint16_t free_count;
	uint16_t free_stack[VGUEST_MAX_QUEUE_SIZE];
	struct vg_chain chains[VGUEST_MAX_QUEUE_SIZE];
	uint16_t posted;             /* chains in the ring */
	int kick_fd, call_fd, err_fd;
	int stale_fds[VG_MAX_STALE_FDS];
	bool stale_forward[VG_MAX_STALE_FDS]; /* retired during set-up */
	size_t stale_count;
	bool interrupt_pending;
};

/* A control packet waiting for TX ring space. */
struct vg_pending_ctl {
	uint32_t local_port, peer_port;
	uint16_t op;
	uint32_t flags;
};

struct vg_token {
	bool done;
	uint32_t used_len;
	uint64_t canary_gpa;         /* bad RX chains: canary area, else 0 */
	uint32_t canary_from;        /* bytes [from, 256) must stay canary */
};

struct vguest {
	struct vguest_options opts;
	char error[256];
	uint64_t error_prints;

	int mem_fd;
	uint8_t *mem;
	size_t mem_size;
	uint64_t rx_area, rx_stride;
	uint64_t tx_area;
	uint64_t hostile_area;       /* canary areas for bad RX chains */
	unsigned hostile_next;
	bool rx_refill;
	unsigned tx_slot_count;
	unsigned tx_free_slot_count;
	int tx_free_slots[VG_TX_SLOTS_MAX];

	int vhost_fd;
	bool connected;
	bool backend_gone;
	uint64_t features_offered, features_acked;
	uint64_t protocol_features;
	uint64_t config_cid;
	bool event_idx, indirect;

	struct vg_queue queues[VGUEST_QUEUE_COUNT];
	struct vg_event_queue event_queue;

	struct vg_pending_ctl *pending;
	size_t pending_head, pending_count, pending_capacity;

	struct vg_token *tokens;
	size_t token_count, token_capacity;

	struct vguest_sock *socks;
	uint32_t next_local_port;

	struct vguest_packet_record *log;
	size_t log_count, log_capacity;

	struct vguest_stats stats;
};

/* ---- vguest.c: small helpers, layout ---- */
uint64_t vg_now_ns(void);
/* Set the message vguest_error returns. */
void vg_set_error(struct vguest *vg, const char *format, ...)
	__attribute__((format(printf, 2, 3)));
/* Something the daemon did wrong: counted, printed (bounded). */
void vg_protocol_error(struct vguest *vg, const char *format, ...)
	__attribute__((format(printf, 2, 3)));
void *vg_gpa(struct vguest *vg, uint64_t gpa);
void vg_close_fd(int *fd);
/* Grow *array to hold needed elements (doubling); -1 when out of memory. */
int vg_grow(void **array, size_t *capacity, size_t needed,
	    size_t element_size);
unsigned vg_op_slot(uint16_t op);
void vg_desc_set(struct vring_desc *desc, uint64_t addr, uint32_t len,
		 uint16_t flags, uint16_t next);
/* Place and zero the rings of queue index for size entries. */
void vg_queue_layout(struct vguest *vg, unsigned index);

/* ---- vguest_log.c ---- */
/* Trace a packet (options.trace) and log it unless it is RW. */
void vg_log_packet(struct vguest *vg, bool from_guest,
		   const struct vsock_header *header);

/* ---- vguest_frontend.c: vhost-user messages ---- */
uint64_t vg_user_addr(struct vguest *vg, uint64_t gpa);
int vg_vu_send(struct vguest *vg, uint32_t request, uint32_t extra_flags,
	       const void *payload, uint32_t size, const int *fds,
	       size_t fd_count);
int vg_vu_reply(struct vguest *vg, uint32_t request, void *payload,
		uint32_t size);
/* Send a u64 message; with need_ack wait for a zero REPLY_ACK. */
int vg_vu_set_u64(struct vguest *vg, uint32_t request, uint64_t value,
		  const int *fds, size_t fd_count, bool need_ack);
int vg_vu_set_state(struct vguest *vg, uint32_t request, uint32_t index,
		    uint32_t num);
int vg_new_eventfd(struct vguest *vg);

/* ---- vguest_event.c: the event queue ---- */
/* Set queue 2 up and post its buffers (after the data queues run). */
int vg_event_queue_start(struct vguest *vg);
/* Forget it (the frontend connection is gone); counts are kept. */
void vg_event_queue_stop(struct vguest *vg);

/* ---- vguest_ring.c: the virtqueue driver ---- */
int vg_alloc_descs(struct vg_queue *q, unsigned count, uint16_t *out);
void vg_publish(struct vg_queue *q, const uint16_t *descs, unsigned count,
		int slot, uint32_t token, uint32_t capacity);
uint16_t *vg_avail_event(const struct vg_queue *q);
void vg_kick(struct vguest *vg, unsigned index);
void vg_rx_refill(struct vguest *vg);
int vg_tx_take_slot(struct vguest *vg);
uint64_t vg_slot_gpa(const struct vguest *vg, int slot);
/* A new chain token (1-based), or 0 when out of memory. */
uint32_t vg_new_token(struct vguest *vg);
int vg_tx_post(struct vguest *vg, const uint8_t wire[VSOCK_HEADER_SIZE],
	       const void *payload, size_t len, uint32_t token);

/* ---- vguest_socket.c: the stream socket layer ---- */
void vg_sock_set_closed(struct vguest_sock *sock);
/* Post the control packets that waited for TX ring space. */
void vg_flush_pending(struct vguest *vg);
/* One packet from the daemon; payload is at offset 44 of iov. */
void vg_rx_packet(struct vguest *vg, const struct vsock_header *header,
		  const struct iovec *iov, size_t iov_count);

#endif
