/*
 * virtq.c - the device side of one split virtqueue (virtio 1.x, 2.7).
 *
 * Owns: our ring indices, chain walking and validation, used-ring
 * publication, and the interrupt/kick suppression decisions.
 * Never: reads a guest-written value twice (each descriptor is copied once
 * into a local and validated there), follows an address that was not
 * translated with start and end checked, walks an unbounded chain, lets an
 * indirect table nest, or accepts a descriptor of the wrong direction.
 * Malformed chains are answered with used length 0 and skipped; a corrupt
 * avail index breaks the queue. Neither can make us touch memory outside
 * the guest's regions.
 */
#include "virtq.h"

#include <endian.h>
#include <errno.h>
#include <linux/virtio_ring.h>
#include <string.h>
#include <unistd.h>

/* Ring layout offsets (split ring, virtio 1.x 2.7.6 and 2.7.8). */
#define DESC_SIZE 16u
#define AVAIL_RING_OFFSET 4u      /* flags, idx, then ring[size], used_event */
#define USED_RING_OFFSET 4u       /* flags, idx, then ring[size], avail_event */
#define USED_ELEM_SIZE 8u

/* A descriptor after it was copied out of guest memory. */
struct desc_copy {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

/* Why a chain was rejected; detail is the descriptor index involved. */
struct chain_error {
	enum virtq_chain_fault fault;
	const char *reason;
	unsigned detail;
};

static const char *const fault_names[VIRTQ_FAULT_COUNT] = {
	[VIRTQ_FAULT_LOOP] = "chain_loop",
	[VIRTQ_FAULT_OUTSIDE_MEMORY] = "chain_outside_memory",
	[VIRTQ_FAULT_BAD_INDEX] = "chain_bad_index",
	[VIRTQ_FAULT_BAD_INDIRECT] = "chain_bad_indirect",
	[VIRTQ_FAULT_WRONG_DIRECTION] = "chain_wrong_direction",
	[VIRTQ_FAULT_TOO_LONG] = "chain_too_long",
};

const char *virtq_chain_fault_name(enum virtq_chain_fault fault)
{
	return fault < VIRTQ_FAULT_COUNT ? fault_names[fault] : "unknown";
}

/* Keeps the compiler from re-reading guest memory instead of our copy. */
#define compiler_barrier() __asm__ __volatile__("" ::: "memory")

static uint16_t *avail_flags(const struct virtq *queue)
{
	return (uint16_t *)queue->avail;
}

static uint16_t *avail_idx(const struct virtq *queue)
{
	return (uint16_t *)queue->avail + 1;
}

static uint16_t *avail_ring(const struct virtq *queue, unsigned slot)
{
	return (uint16_t *)((uint8_t *)queue->avail + AVAIL_RING_OFFSET) + slot;
}

static uint16_t *used_flags(const struct virtq *queue)
{
	return (uint16_t *)queue->used;
}

static uint16_t *used_idx(const struct virtq *queue)
{
	return (uint16_t *)queue->used + 1;
}

static uint32_t *used_elem(const struct virtq *queue, unsigned slot)
{
	return (uint32_t *)((uint8_t *)queue->used + USED_RING_OFFSET +
			    (size_t)slot * USED_ELEM_SIZE);
}

/* avail_event lives right after the used ring's entries. */
static uint16_t *used_avail_event(const struct virtq *queue)
{
	return (uint16_t *)((uint8_t *)queue->used + USED_RING_OFFSET +
			    (size_t)queue->size * USED_ELEM_SIZE);
}

static uint16_t load_le16(const uint16_t *where, int order)
{
	return le16toh(__atomic_load_n(where, order));
}

static void store_le16(uint16_t *where, uint16_t value, int order)
{
	__atomic_store_n(where, htole16(value), order);
}

static void virtq_clear(struct virtq *queue)
{
	memset(queue, 0, sizeof(*queue));
	queue->kick_fd = -1;
	queue->call_fd = -1;
	queue->err_fd = -1;
}

void virtq_init(struct virtq *queue, enum virtq_direction direction)
{
	virtq_clear(queue);
	queue->direction = direction;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

void virtq_reset(struct virtq *queue)
{
	enum virtq_direction direction = queue->direction;
	uint16_t index = queue->index;
	struct virtq_stats stats = queue->stats;
	struct log_ratelimit malformed_log = queue->malformed_log;

	close_fd(&queue->kick_fd);
	close_fd(&queue->call_fd);
	close_fd(&queue->err_fd);
	virtq_clear(queue);
	queue->direction = direction;
	queue->index = index;
	queue->stats = stats;
	queue->malformed_log = malformed_log;
}

static bool is_aligned(uint64_t value, uint64_t alignment)
{
	return (value & (alignment - 1)) == 0;
}

/* Translate one ring part; both the VMM address and our pointer must be
 * naturally aligned (the pointer is what the loads actually use). */
static void *map_part(const struct guest_memory *memory, uint64_t user_addr,
		      uint64_t length, uint64_t alignment)
{
	void *pointer;

	if (!is_aligned(user_addr, alignment))
		return NULL;
	pointer = guest_memory_translate_user(memory, user_addr, length);
	if (pointer == NULL || !is_aligned((uintptr_t)pointer, alignment))
		return NULL;
	return pointer;
}

/* Pointer ranges [a, a + a_length) and [b, b + b_length) share a byte. */
static bool pointers_overlap(const void *a, size_t a_length, const void *b,
			     size_t b_length)
{
	uintptr_t a_start = (uintptr_t)a, b_start = (uintptr_t)b;
	return a_start < b_start + b_length && b_start < a_start + a_length;
}

/* The device writes the used ring: it must not land on what the guest
 * wrote for us to read (descriptors, avail ring). */
static bool rings_overlap(const struct virtq *queue)
{
	size_t size = queue->size;
	size_t desc_length = DESC_SIZE * size;
	size_t avail_length = AVAIL_RING_OFFSET + 2 * size + 2;
	size_t used_length = USED_RING_OFFSET + USED_ELEM_SIZE * size + 2;

	return pointers_overlap(queue->used, used_length, queue->desc, desc_length) ||
	       pointers_overlap(queue->used, used_length, queue->avail, avail_length) ||
	       pointers_overlap(queue->desc, desc_length, queue->avail, avail_length);
}

/* A ring layout we will not use: say why, forget the pointers, count it. */
static int reject_layout(struct virtq *queue, const char *problem, int error)
{
	log_warn("virtq %u: %s (desc 0x%llx avail 0x%llx used 0x%llx, size %u)",
		 queue->index, problem, (unsigned long long)queue->desc_user_addr,
		 (unsigned long long)queue->avail_user_addr,
		 (unsigned long long)queue->used_user_addr, queue->size);
	queue->desc = NULL;
	queue->avail = NULL;
	queue->used = NULL;
	queue->stats.layouts_invalid++;
	return error;
}

int virtq_map(struct virtq *queue, const struct guest_memory *memory)
{
	uint64_t size = queue->size;
	int result = 0;

	queue->desc = NULL;
	queue->avail = NULL;
	queue->used = NULL;
	if (size == 0 || size > VIRTQ_MAX_SIZE || (size & (size - 1)) != 0 ||
	    !queue->addresses_set) {
		result = -EINVAL;
		goto out;
	}
	/* avail and used always include the event-index word. */
	queue->desc = map_part(memory, queue->desc_user_addr, DESC_SIZE * size, 16);
	queue->avail = map_part(memory, queue->avail_user_addr,
				AVAIL_RING_OFFSET + 2 * size + 2, 2);
	queue->used = map_part(memory, queue->used_user_addr,
			       USED_RING_OFFSET + USED_ELEM_SIZE * size + 2, 4);
	if (queue->desc == NULL || queue->avail == NULL || queue->used == NULL) {
		result = reject_layout(queue, "ring addresses are not mapped or misaligned",
				       -EFAULT);
		goto out;
	}
	if (rings_overlap(queue)) {
		result = reject_layout(queue, "descriptor table, avail and used rings overlap",
				       -EINVAL);
		goto out;
	}
	queue->used_idx = load_le16(used_idx(queue), __ATOMIC_ACQUIRE);
out:
	return result;
}

bool virtq_is_ready(const struct virtq *queue)
{
	return queue->started && queue->enabled && !queue->broken &&
	       queue->desc != NULL && queue->avail != NULL && queue->used != NULL;
}

static void read_desc(const void *table, unsigned index, struct desc_copy *out)
{
	struct vring_desc raw;

	memcpy(&raw, (const uint8_t *)table + (size_t)index * DESC_SIZE, sizeof(raw));
	compiler_barrier();
	out->addr = le64toh(raw.addr);
	out->len = le32toh(raw.len);
	out->flags = le16toh(raw.flags);
	out->next = le16toh(raw.next);
}

static bool chain_fail(struct chain_error *error, enum virtq_chain_fault fault,
		       const char *reason, unsigned detail)
{
	error->fault = fault;
	error->reason = reason;
	error->detail = detail;
	return false;
}

/*
 * Walk the chain starting at head into iov. Every descriptor is read once;
 * the walk visits at most size descriptors of the ring's table plus at most
 * one indirect table's entries, so it terminates whatever the guest wrote.
 */
static bool walk_chain(const struct virtq *queue, const struct guest_memory *memory,
		       uint16_t head, struct iovec *iov, size_t iov_capacity,
		       struct virtq_chain *chain, struct chain_error *error)
{
	const void *table = queue->desc;
	unsigned table_length = queue->size;
	unsigned index = head;
	unsigned visited = 0;
	bool in_indirect = false;
	uint64_t total = 0;
	struct desc_copy desc;

	chain->head = head;
	chain->iov_count = 0;
	chain->length = 0;
	if (head >= queue->size)
		return chain_fail(error, VIRTQ_FAULT_BAD_INDEX, "head index out of range", head);
	for (;;) {
		if (++visited > table_length)
			return chain_fail(error, VIRTQ_FAULT_LOOP, in_indirect ?
					  "indirect chain longer than its table (loop)" :
					  "chain longer than the ring (loop)", index);
		read_desc(table, index, &desc);
		if (desc.flags & VRING_DESC_F_INDIRECT) {
			if (!queue->indirect)
				return chain_fail(error, VIRTQ_FAULT_BAD_INDIRECT, "indirect descriptor without "
						  "RING_INDIRECT_DESC", index);
			if (in_indirect)
				return chain_fail(error, VIRTQ_FAULT_BAD_INDIRECT, "nested indirect table", index);
			if (desc.flags & VRING_DESC_F_NEXT)
				return chain_fail(error, VIRTQ_FAULT_BAD_INDIRECT, "INDIRECT combined with NEXT", index);
			if (desc.len == 0 || desc.len % DESC_SIZE != 0)
				return chain_fail(error, VIRTQ_FAULT_BAD_INDIRECT, "bad indirect table length", index);
			/* virtio: no chain may be longer than the queue */
			if (desc.len / DESC_SIZE > queue->size)
				return chain_fail(error, VIRTQ_FAULT_BAD_INDIRECT, "indirect table longer than the queue",
						  index);
			table = guest_memory_translate(memory, desc.addr, desc.len);
			if (table == NULL)
				return chain_fail(error, VIRTQ_FAULT_OUTSIDE_MEMORY, "indirect table outside guest "
						  "memory", index);
			table_length = desc.len / DESC_SIZE;
			in_indirect = true;
			index = 0;
			visited = 0;
			continue;
		}
		if (queue->direction == VIRTQ_DEVICE_READS &&
		    (desc.flags & VRING_DESC_F_WRITE))
			return chain_fail(error, VIRTQ_FAULT_WRONG_DIRECTION, "device-writable descriptor on a "
					  "device-readable queue", index);
		if (queue->direction == VIRTQ_DEVICE_WRITES &&
		    !(desc.flags & VRING_DESC_F_WRITE))
			return chain_fail(error, VIRTQ_FAULT_WRONG_DIRECTION, "device-readable descriptor on a "
					  "device-writable queue", index);
		if (desc.len != 0) {
			void *buffer = guest_memory_translate(memory, desc.addr, desc.len);
			if (buffer == NULL)
				return chain_fail(error, VIRTQ_FAULT_OUTSIDE_MEMORY, "buffer outside guest memory",
						  index);
			if (chain->iov_count == iov_capacity)
				return chain_fail(error, VIRTQ_FAULT_TOO_LONG, "more segments than the caller "
						  "can take", index);
			total += desc.len;
			if (total > UINT32_MAX)
				return chain_fail(error, VIRTQ_FAULT_TOO_LONG, "total length exceeds 4 GiB",
						  index);
			iov[chain->iov_count].iov_base = buffer;
			iov[chain->iov_count].iov_len = desc.len;
			chain->iov_count++;
		}
		if (!(desc.flags & VRING_DESC_F_NEXT))
			break;
		if (desc.next >= table_length)
			return chain_fail(error, VIRTQ_FAULT_BAD_INDEX, "next index out of range", index);
		index = desc.next;
	}
	chain->length = (size_t)total;
	return true;
}

int virtq_pop(struct virtq *queue, const struct guest_memory *memory,
	      struct iovec *iov, size_t iov_capacity, struct virtq_chain *chain)
{
	unsigned malformed_budget;
	int result = 0;

	if (!virtq_is_ready(queue))
		goto out;
	/* Bound the work per call: a guest posting nothing but bad chains
	 * gets at most one ring's worth answered before we return. */
	malformed_budget = queue->size;
	while (malformed_budget > 0) {
		uint16_t avail = load_le16(avail_idx(queue), __ATOMIC_ACQUIRE);
		uint16_t pending = (uint16_t)(avail - queue->last_avail_idx);
		unsigned slot = queue->last_avail_idx & (queue->size - 1u);
		struct chain_error error;
		uint16_t head;

		if (pending == 0)
			goto out;
		if (pending > queue->size) {
			queue->broken = true;
			queue->stats.avail_index_jumps++;
			log_ratelimited(&queue->malformed_log, LOG_LEVEL_WARN,
					"virtq %u: avail idx %u is %u entries ahead of "
					"%u (ring size %u): queue broken", queue->index,
					avail, pending, queue->last_avail_idx, queue->size);
			goto out;
		}
		head = load_le16(avail_ring(queue, slot), __ATOMIC_RELAXED);
		queue->last_avail_idx++;
		if (walk_chain(queue, memory, head, iov, iov_capacity, chain, &error)) {
			queue->stats.chains_popped++;
			result = 1;
			goto out;
		}
		queue->stats.chains_malformed++;
		queue->stats.malformed_by_kind[error.fault]++;
		log_ratelimited(&queue->malformed_log, LOG_LEVEL_WARN,
				"virtq: malformed chain: %s (descriptor %u) queue %u "
				"head %u", error.reason, error.detail, queue->index, head);
		virtq_push(queue, head, 0);
		malformed_budget--;
	}
out:
	return result;
}

void virtq_push(struct virtq *queue, uint16_t head, uint32_t written)
{
	uint32_t *elem;

	/* a stopped ring belongs to the frontend again (GET_VRING_BASE) */
	if (!queue->started || queue->used == NULL || queue->size == 0)
		return;
	elem = used_elem(queue, queue->used_idx & (queue->size - 1u));
	__atomic_store_n(&elem[0], htole32((uint32_t)head), __ATOMIC_RELAXED);
	__atomic_store_n(&elem[1], htole32(written), __ATOMIC_RELAXED);
	queue->used_idx++;
	/* the entry is visible before the index that publishes it */
	store_le16(used_idx(queue), queue->used_idx, __ATOMIC_RELEASE);
	queue->notify_pending = true;
}

void virtq_notify(struct virtq *queue)
{
	bool signal;

	if (!queue->notify_pending || queue->avail == NULL)
		return;
	queue->notify_pending = false;
	/* our used->idx store must be ordered before reading the guest's
	 * used_event / flags, or we may miss its request for an interrupt */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (queue->event_idx) {
		uint16_t used_event = load_le16(avail_ring(queue, queue->size),
						__ATOMIC_RELAXED);
		uint16_t old = queue->signalled_used;
		bool old_valid = queue->signalled_used_valid;

		queue->signalled_used = queue->used_idx;
		queue->signalled_used_valid = true;
		signal = !old_valid ||
			 vring_need_event(used_event, queue->used_idx, old);
	} else {
		signal = !(load_le16(avail_flags(queue), __ATOMIC_RELAXED) &
			   VRING_AVAIL_F_NO_INTERRUPT);
	}
	if (!signal || queue->call_fd < 0) {
		queue->stats.notifications_suppressed++;
		return;
	}
	/* An eventfd write only fails if the counter would overflow; then
	 * the guest has an interrupt pending anyway. */
	if (write(queue->call_fd, &(uint64_t){1}, sizeof(uint64_t)) < 0)
		log_debug("virtq %u: call eventfd write failed", queue->index);
	queue->stats.notifications_sent++;
}

bool virtq_enable_kicks(struct virtq *queue)
{
	if (!virtq_is_ready(queue))
		return false;
	if (queue->event_idx) {
		store_le16(used_avail_event(queue), queue->last_avail_idx,
			   __ATOMIC_RELAXED);
	} else {
		uint16_t flags = load_le16(used_flags(queue), __ATOMIC_RELAXED);
		store_le16(used_flags(queue),
			   (uint16_t)(flags & ~VRING_USED_F_NO_NOTIFY), __ATOMIC_RELAXED);
	}
	/* publish the request before looking at avail->idx again */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return load_le16(avail_idx(queue), __ATOMIC_ACQUIRE) != queue->last_avail_idx;
}

void virtq_drain_kick(struct virtq *queue)
{
	uint64_t counter;

	if (queue->kick_fd < 0)
		return;
	/* EAGAIN (nothing to read) and EINTR are both fine to ignore. */
	if (read(queue->kick_fd, &counter, sizeof(counter)) < 0 &&
	    errno != EAGAIN && errno != EINTR)
		log_debug("virtq %u: kick eventfd read failed: %s", queue->index,
			  strerror(errno));
}

uint16_t virtq_stop(struct virtq *queue)
{
	queue->started = false;
	queue->stopped_at = queue->last_avail_idx;
	queue->stopped_at_valid = true;
	return queue->last_avail_idx;
}

void virtq_set_base(struct virtq *queue, uint16_t base)
{
	queue->last_avail_idx = base;
	queue->used_idx = base;
	queue->signalled_used_valid = false;
	queue->notify_pending = false;
	queue->broken = false;
}
