/*
 * virtq.h - one split virtqueue in guest memory, seen from the device side.
 *
 * Owns: the ring indices we keep (last_avail_idx, used_idx), walking and
 * validating descriptor chains, publishing used entries, and deciding
 * whether the guest wants an interrupt (EVENT_IDX or NO_INTERRUPT).
 * Never: trusts a value it read from guest memory twice. Every descriptor
 * is read once into a local copy; every address is translated through
 * guest_memory with start and end checked; chains are bounded in length;
 * indirect tables may not nest; direction is enforced.
 */
#ifndef VSOCKMUX_VIRTQ_H
#define VSOCKMUX_VIRTQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "guest_memory.h"
#include "vsockmux/log.h"

#define VIRTQ_MAX_SIZE 1024u

/* Why a chain was malformed; indexes virtq_stats.malformed_by_kind. */
enum virtq_chain_fault {
	VIRTQ_FAULT_LOOP,              /* longer than its table: a loop */
	VIRTQ_FAULT_OUTSIDE_MEMORY,    /* buffer or table not in guest RAM */
	VIRTQ_FAULT_BAD_INDEX,         /* head or next out of range */
	VIRTQ_FAULT_BAD_INDIRECT,      /* nested, empty, misshapen indirect */
	VIRTQ_FAULT_WRONG_DIRECTION,   /* writable on TX, readable on RX */
	VIRTQ_FAULT_TOO_LONG,          /* over 4 GiB or more segments than
					  the caller takes */
	VIRTQ_FAULT_COUNT,
};

/* Counters the muxer reports and tests read. */
struct virtq_stats {
	uint64_t chains_popped;
	uint64_t chains_malformed;     /* returned used with length 0 */
	uint64_t malformed_by_kind[VIRTQ_FAULT_COUNT];
	uint64_t avail_index_jumps;    /* avail idx > size ahead: broken */
	uint64_t layouts_invalid;      /* rings outside memory or overlapping */
	uint64_t notifications_sent;
	uint64_t notifications_suppressed;
};

/* Stats name of a fault kind ("chain_loop", ...). */
const char *virtq_chain_fault_name(enum virtq_chain_fault fault);

enum virtq_direction {
	VIRTQ_DEVICE_READS,   /* TX: every descriptor must be readable */
	VIRTQ_DEVICE_WRITES,  /* RX: every descriptor must be writable */
};

struct virtq {
	/* configuration from vhost-user */
	uint16_t size;                   /* SET_VRING_NUM; 0 = not set */
	uint64_t desc_user_addr, avail_user_addr, used_user_addr;
	bool addresses_set;
	int kick_fd, call_fd, err_fd;    /* -1 when absent */
	bool enabled;                    /* SET_VRING_ENABLE */
	bool started;                    /* kick received, not stopped */
	bool event_idx;                  /* RING_EVENT_IDX negotiated */
	bool indirect;                   /* RING_INDIRECT_DESC negotiated */
	bool broken;                     /* ring-level corruption seen */
	enum virtq_direction direction;

	/* translated ring pointers (valid only while ready) */
	void *desc;
	void *avail;
	void *used;

	uint16_t last_avail_idx;         /* next avail entry we will read */
	uint16_t used_idx;               /* next used entry we will write */
	uint16_t signalled_used;         /* used_idx at the last interrupt */
	bool signalled_used_valid;

	struct virtq_stats stats;
	struct log_ratelimit malformed_log;

	/* Added by the virtq implementation (kept by virtq_reset, like
	 * direction, stats and malformed_log): */
	uint16_t index;                  /* queue number, for log lines */
	bool notify_pending;             /* pushed since the last virtq_notify */
	bool stopped_at_valid;           /* GET_VRING_BASE answered ... */
	uint16_t stopped_at;             /* ... with this index */
};

/* One popped chain. iov points into guest memory. */
struct virtq_chain {
	uint16_t head;
	size_t iov_count;
	size_t length;                   /* sum of iov lengths */
};

/* Reset to the just-created state, closing any fds it holds. virtq_init
 * starts from nothing (index 0, zero stats); virtq_reset keeps direction,
 * index, stats and the log rate limit. */
void virtq_init(struct virtq *queue, enum virtq_direction direction);
void virtq_reset(struct virtq *queue);

/* Translate the three ring addresses through memory (after SET_MEM_TABLE
 * and SET_VRING_ADDR/NUM). Returns 0 or -EFAULT / -EINVAL. On success
 * used_idx is reloaded from the ring's used->idx (what the device last
 * published, as Linux vhost does on start); on failure the ring pointers
 * are cleared. */
int virtq_map(struct virtq *queue, const struct guest_memory *memory);

/* true when started, enabled, mapped and not broken. */
bool virtq_is_ready(const struct virtq *queue);

/*
 * Pop the next available chain into iov (at most iov_capacity entries).
 * Returns 1 with *chain filled, 0 when nothing is available (ring empty or
 * not ready). Malformed chains (bad address, wrong direction, loop, too
 * long, nested or malformed indirect, more segments than iov_capacity) are
 * handed back as used with length 0 inside this call, counted, logged
 * (rate-limited), and skipped; popping continues with the next chain. A
 * corrupt avail index (more than size entries ahead) marks the queue broken
 * and returns 0.
 */
int virtq_pop(struct virtq *queue, const struct guest_memory *memory,
	      struct iovec *iov, size_t iov_capacity, struct virtq_chain *chain);

/* Publish one used entry (head, written length). Does not notify. Does
 * nothing once the queue is stopped (virtq_stop / GET_VRING_BASE): the ring
 * then belongs to the frontend again, and a chain popped before the stop
 * must not be answered into it. */
void virtq_push(struct virtq *queue, uint16_t head, uint32_t written);

/* After a batch of pushes: interrupt the guest via call_fd if it wants one
 * (EVENT_IDX used_event, or VRING_AVAIL_F_NO_INTERRUPT without it). */
void virtq_notify(struct virtq *queue);

/* Ask the guest to kick on its next avail entry (writes avail_event when
 * EVENT_IDX is on, clears VRING_USED_F_NO_NOTIFY otherwise). Returns true
 * if more chains became available meanwhile (caller should pop again). */
bool virtq_enable_kicks(struct virtq *queue);

/* Read and discard the kick eventfd counter. */
void virtq_drain_kick(struct virtq *queue);

/* SET_VRING_BASE: next avail entry to read (and, until virtq_map reloads
 * it from the ring, next used entry); forgets interrupt state and
 * clears a previous "broken" verdict (the frontend restarts the ring). */
void virtq_set_base(struct virtq *queue, uint16_t base);

/* The avail index to report in GET_VRING_BASE; stops the queue. */
uint16_t virtq_stop(struct virtq *queue);

#endif
