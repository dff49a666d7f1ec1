/*
 * test_virtq.c - virtq against a split ring built by the test (playing the
 * guest driver) in memfd-backed guest memory: every chain shape the guest
 * may use, every hostile chain we must refuse (answered with used length 0
 * while good chains keep flowing), used-ring publication with wrap-around,
 * EVENT_IDX / NO_INTERRUPT interrupt suppression and kick re-enabling.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/virtio_ring.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "virtq.h"
#include "vsockmux/log.h"

/* Guest layout (guest physical addresses); the VMM sees it at USER_BASE. */
#define MEMORY_SIZE 0x100000u
#define USER_BASE 0x7f1234500000ull
#define DESC_GPA 0x0000u
#define AVAIL_GPA 0x1000u
#define USED_GPA 0x2000u
#define INDIRECT_GPA 0x3000u
#define BUFFER_GPA 0x10000u
#define RING_SIZE 8u
#define IOV_MAX_TEST 16u

struct ring {
	struct guest_memory memory;
	struct virtq queue;
	uint8_t *base;                 /* host pointer of guest address 0 */
	uint16_t avail_idx;            /* the driver's shadow */
	struct iovec iov[IOV_MAX_TEST];
	struct virtq_chain chain;
};

static struct vring_desc *desc_at(struct ring *ring, uint64_t table_gpa,
				  unsigned index)
{
	return (struct vring_desc *)(ring->base + table_gpa) + index;
}

static void set_desc_in(struct ring *ring, uint64_t table_gpa, unsigned index,
			uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	struct vring_desc *desc = desc_at(ring, table_gpa, index);
	desc->addr = htole64(addr);
	desc->len = htole32(len);
	desc->flags = htole16(flags);
	desc->next = htole16(next);
}

static void set_desc(struct ring *ring, unsigned index, uint64_t addr,
		     uint32_t len, uint16_t flags, uint16_t next)
{
	set_desc_in(ring, DESC_GPA, index, addr, len, flags, next);
}

static uint16_t *avail_word(struct ring *ring, unsigned word)
{
	return (uint16_t *)(ring->base + AVAIL_GPA) + word;
}

static void set_avail_idx(struct ring *ring, uint16_t idx)
{
	*avail_word(ring, 1) = htole16(idx);
}

/* Make head available (the driver's side of the protocol). */
static void post(struct ring *ring, uint16_t head)
{
	*avail_word(ring, 2 + (ring->avail_idx % ring->queue.size)) = htole16(head);
	ring->avail_idx++;
	set_avail_idx(ring, ring->avail_idx);
}

static void set_used_event(struct ring *ring, uint16_t value)
{
	*avail_word(ring, 2 + ring->queue.size) = htole16(value);
}

static uint16_t used_idx(struct ring *ring)
{
	return le16toh(*(uint16_t *)(ring->base + USED_GPA + 2));
}

static uint16_t used_flags(struct ring *ring)
{
	return le16toh(*(uint16_t *)(ring->base + USED_GPA));
}

static uint16_t avail_event(struct ring *ring)
{
	return le16toh(*(uint16_t *)(ring->base + USED_GPA + 4 + 8 * ring->queue.size));
}

static void used_entry(struct ring *ring, unsigned slot, uint32_t *id, uint32_t *len)
{
	const uint32_t *elem = (const uint32_t *)(ring->base + USED_GPA + 4 + 8 * slot);
	*id = le32toh(elem[0]);
	*len = le32toh(elem[1]);
}

static void assert_used(struct ring *ring, unsigned slot, uint32_t id, uint32_t len)
{
	uint32_t got_id, got_len;
	used_entry(ring, slot, &got_id, &got_len);
	assert_int_equal(got_id, id);
	assert_int_equal(got_len, len);
}

static void ring_open_sized(struct ring *ring, enum virtq_direction direction,
			    bool event_idx, bool indirect, uint64_t memory_size)
{
	struct vhost_user_memory table = { .nregions = 1 };
	int fd = memfd_create("virtq-test", MFD_CLOEXEC);

	memset(ring, 0, sizeof(*ring));
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)memory_size), 0);
	table.regions[0] = (struct vhost_user_memory_region){
		.guest_phys_addr = 0,
		.memory_size = memory_size,
		.user_addr = USER_BASE,
		.mmap_offset = 0,
	};
	assert_int_equal(guest_memory_set_table(&ring->memory, &table, &fd, 1), 0);
	ring->base = guest_memory_translate(&ring->memory, 0, memory_size);
	assert_non_null(ring->base);

	virtq_init(&ring->queue, direction);
	ring->queue.index = direction == VIRTQ_DEVICE_READS ? 1 : 0;
	ring->queue.size = RING_SIZE;
	ring->queue.desc_user_addr = USER_BASE + DESC_GPA;
	ring->queue.avail_user_addr = USER_BASE + AVAIL_GPA;
	ring->queue.used_user_addr = USER_BASE + USED_GPA;
	ring->queue.addresses_set = true;
	ring->queue.event_idx = event_idx;
	ring->queue.indirect = indirect;
	virtq_set_base(&ring->queue, 0);
	assert_int_equal(virtq_map(&ring->queue, &ring->memory), 0);
	ring->queue.started = true;
	ring->queue.enabled = true;
	assert_true(virtq_is_ready(&ring->queue));
}

static void ring_open(struct ring *ring, enum virtq_direction direction,
		      bool event_idx, bool indirect)
{
	ring_open_sized(ring, direction, event_idx, indirect, MEMORY_SIZE);
}

static void ring_close(struct ring *ring)
{
	virtq_reset(&ring->queue);
	guest_memory_clear(&ring->memory);
}

static int pop(struct ring *ring)
{
	return virtq_pop(&ring->queue, &ring->memory, ring->iov, IOV_MAX_TEST,
			 &ring->chain);
}

static void assert_iov(struct ring *ring, unsigned i, uint64_t gpa, size_t len)
{
	assert_ptr_equal(ring->iov[i].iov_base, ring->base + gpa);
	assert_int_equal(ring->iov[i].iov_len, len);
}

/* ---- good chains ---- */

static void test_single_descriptor(void **state)
{
	struct ring ring;
	(void)state;

	ring_open(&ring, VIRTQ_DEVICE_READS, false, false);
	assert_int_equal(pop(&ring), 0);  /* empty */
	set_desc(&ring, 3, BUFFER_GPA, 44, 0, 0);
	post(&ring, 3);
	assert_int_equal(pop(&ring), 1);
	assert_int_equal(ring.chain.head, 3);
	assert_int_equal(ring.chain.iov_count, 1);
	assert_int_equal(ring.chain.length, 44);
	assert_iov(&ring, 0, BUFFER_GPA, 44);
	assert_int_equal(pop(&ring), 0);
	assert_int_equal(ring.queue.stats.chains_popped, 1);
	assert_int_equal(ring.queue.stats.chains_malformed, 0);
	assert_int_equal(used_idx(&ring), 0); /* popping publishes nothing */
	ring_close(&ring);
}

/* Linux 6.1 RX: one writable descriptor holding header and payload. */
static void test_rx_single_writable_buffer(void **state)
{
	struct ring ring;
	(void)state;

	ring_open(&ring, VIRTQ_DEVICE_WRITES, true, true);
	set_desc(&ring, 0, BUFFER_GPA, 3776, VRING_DESC_F_WRITE, 0);
	post(&ring, 0);
	assert_int_equal(pop(&ring), 1);
	assert_int_equal(ring.chain.length, 3776);
	assert_iov(&ring, 0, BUFFER_GPA, 3776);
	ring_close(&ring);
}

static void test_header_and_payload_split_over_three(void **state)
{
	struct ring ring;
	(void)state;

	ring_open(&ring, VIRTQ_DEVICE_READS, false, false);
	set_desc(&ring, 2, BUFFER_GPA, 44, VRING_DESC_F_NEXT, 5);
	set_desc(&ring, 5, BUFFER_GPA + 0x1000, 100, VRING_DESC_F_NEXT, 1);
	set_desc(&ring, 1, BUFFER_GPA + 0x3000, 200, 0, 0);
	post(&ring, 2);
	assert_int_equal(pop(&ring), 1);
	assert_int_equal(ring.chain.head, 2);
	assert_int_equal(ring.chain.iov_count, 3);
	assert_int_equal(ring.chain.length, 344);
	assert_iov(&ring, 0, BUFFER_GPA, 44);
	assert_iov(&ring, 1, BUFFER_GPA + 0x1000, 100);
	assert_iov(&ring, 2, BUFFER_GPA + 0x3000, 200);
	ring_close(&ring);
}

/* A chain using all size descriptors is the longest legal one. */
static void test_chain_of_ring_size(void **state)
{
	struct ring ring;
	(void)state;

	ring_open(&ring, VIRTQ_DEVICE_READS, false, false);
	for (unsigned i = 0; i < RING_SIZE; i++)
		set_desc(&ring, i, BUFFER_GPA + 0x100 * i, 10,
			 i + 1 < RING_SIZE ? VRING_DESC_F_NEXT : 0, (uint16_t)(i + 1));
	post(&ring, 0);
	assert_int_equal(pop(&ring), 1);
	assert_int_equal(ring.chain.iov_count, RING_SIZE);
	assert_int_equal(ring.chain.length, 10 * RING_SIZE);
	ring_close(&ring);
}

/* TX RW packet with INDIRECT_DESC: an indirect table of two. */
static void test_indirect_table(void **state)
{
	struct ring ring;
	(void)state;

	ring_open(&ring, VIRTQ_DEVICE_READS, true, true);
	set_desc_in(&ring, INDIRECT_GPA, 0, BUFFER_GPA, 44, VRING_DESC_F_NEXT, 1);
	set_desc_in(&ring, INDIRECT_GPA, 1, BUFFER_GPA + 0x1000, 65536, 0, 0);
	set_desc(&ring, 4, INDIRECT_GPA, 2 * 16, VRING_DESC_F_INDIRECT, 0);
	post(&ring, 4);
	assert_int_equal(pop(&ring), 1);
	assert_int_equal(ring.chain.head, 4);
	assert_int_equal(ring.chain.iov_count, 2);
	assert_int_equal(ring.chain.length, 44 + 65536);
	assert_iov(&ring, 0, BUFFER_GPA, 44);
	assert_iov(&ring, 1, BUFFER_GPA + 0x1000, 65536);
	ring_close(&ring);
}

/* Direct descriptors followed by an indirect one are accepted too. */
static void test_direct_then_indirect(void **state)
{
	struct ring ring;
	(void)state;

	ring_open(&ring, VIRTQ_DEVICE_WRITES, false, true);
	set_desc(&ring, 0, BUFFER_GPA, 44, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
	/* the WRITE flag of the indirect descriptor itself is ignored */
	set_desc(&ring, 1, INDIRECT_GPA, 16, VRING_DESC_F_INDIRECT, 0);
	set_desc_in(&ring, INDIRECT_GPA, 0, BUFFER_GPA + 0x1000, 4096,
		    VRING_DESC_F_WRITE, 0);
	post(&ring, 0);
	assert_int_equal(pop(&ring), 1);
	assert_int_equal(ring.chain.iov_count, 2);
	assert_int_equal(ring.chain.length, 44 + 4096);
	ring_close(&ring);
}

static void test_zero_length_descriptors_skipped(void **state)
{
	struct ring ring;
	(void)state;

	ring_open(&ring, VIRTQ_DEVICE_READS, false, false);
	set_desc(&ring, 0, BUFFER_GPA, 0, VRING_DESC_F_NEXT, 1);
	set_desc(&ring, 1, BUFFER_GPA, 44, VRING_DESC_F_NEXT, 2);
	/* zero length: even an address outside memory is never touched */
	set_desc(&ring, 2, UINT64_MAX, 0, 0, 0);
	post(&ring, 0);
	assert_int_equal(pop(&ring), 1);
	assert_int_equal(ring.chain.iov_count, 1);
	assert_int_equal(ring.chain.length, 44);
	assert_iov(&ring, 0, BUFFER_GPA, 44);

	/* zero-length descriptors still count toward the loop bound */
	set_desc(&ring, 4, BUFFER_GPA, 0, VRING_DESC_F_NEXT, 4);
	post(&ring, 4);
	assert_int_equal(pop(&ring), 0);
	assert_int_equal(ring.queue.stats.chains_malformed, 1);
	ring_close(&ring);
}

/* ---- malformed chains ---- */

/* Post head; expect it answered with (head, 0) and no chain returned. */
static void expect_malformed(struct ring *ring, uint16_t head)
{
	uint64_t malformed = ring->queue.stats.chains_malformed;
	uint16_t used = used_idx(ring);

	post(ring, head);
	assert_int_equal(pop(ring), 0);
	assert_int_equal(ring->queue.stats.chains_malformed, malformed + 1);
	assert_int_equal(used_idx(ring), (uint16_t)(used + 1));
	assert_used(ring, used % ring->queue.size, head, 0);
	assert_true(virtq_is_ready(&ring->queue)); /* chain errors don't break it */
}

static void test_direction_violations(void **state)
{
	struct ring ring;
	(void)state;

	/* TX: a writable descriptor, alone or late in the chain */
	ring_open(&ring, VIRTQ_DEVICE_READS, false, true);
	set_desc(&ring, 0, BUFFER_GPA, 44, VRING_DESC_F_WRITE, 0);
	expect_malformed(&ring, 0);
	set_desc(&ring, 1, BUFFER_GPA, 44, VRING_DESC_F_NEXT, 2);
	set_desc(&ring, 2, BUFFER_GPA, 44, VRING_DESC_F_WRITE, 0);
	expect_malformed(&ring, 1);
	/* inside an indirect table */
	set_desc_in(&ring, INDIRECT_GPA, 0, BUFFER_GPA, 44, VRING_DESC_F_WRITE, 0);
	set_desc(&ring, 3, INDIRECT_GPA, 16, VRING_DESC_F_INDIRECT, 0);
	expect_malformed(&ring, 3);
	ring_close(&ring);

	/* RX: a read-only descriptor */
	ring_open(&ring, VIRTQ_DEVICE_WRITES, false, false);
	set_desc(&ring, 0, BUFFER_GPA, 44, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
	set_desc(&ring, 1, BUFFER_GPA + 44, 4096, 0, 0);
	expect_malformed(&ring, 0);
	ring_close(&ring);
}

static void test_loops(void **state)
{
	struct ring ring;
	(void)state;

	ring_open(&ring, VIRTQ_DEVICE_READS, false, true);
	set_desc(&ring, 0, BUFFER_GPA, 44, VRING_DESC_F_NEXT, 0);  /* to itself */
	expect_malformed(&ring, 0);
	set_desc(&ring, 1, BUFFER_GPA, 44, VRING_DESC_F_NEXT, 2);
	set_desc(&ring, 2, BUFFER_GPA, 44, VRING_DESC_F_NEXT, 1);  /* 1 <-> 2 */
	expect_malformed(&ring, 1);
	/* a cycle through every descriptor: longer than the ring */
	for (unsigned i = 0; i < RING_SIZE; i++)
		set_desc(&ring, i, BUFFER_GPA, 1, VRING_DESC_F_NEXT,
			 (uint16_t)((i + 1) % RING_SIZE));
	expect_malformed(&ring, 5);
	/* a loop inside an indirect table */
	set_desc_in(&ring, INDIRECT_GPA, 0, BUFFER_GPA, 4, VRING_DESC_F_NEXT, 1);
	set_desc_in(&ring, INDIRECT_GPA, 1, BUFFER_GPA, 4, VRING_DESC_F_NEXT, 0);
	set_desc(&ring, 6, INDIRECT_GPA, 32, VRING_DESC_F_INDIRECT, 0);
	expect_malformed(&ring, 6);
	ring_close(&ring);
}

static void test_bad_indirect_tables(void **state)
{
	struct ring ring;
	(void)state;

	ring_open(&ring, VIRTQ_DEVICE_READS, false, true);
	/* nested indirect */
	set_desc_in(&ring, INDIRECT_GPA, 0, INDIRECT_GPA + 0x100, 16,
		    VRING_DESC_F_INDIRECT, 0);
	set_desc_in(&ring, INDIRECT_GPA + 0x100, 0, BUFFER_GPA, 44, 0, 0);
	set_desc(&ring, 0, INDIRECT_GPA, 16, VRING_DESC_F_INDIRECT, 0);
	expect_malformed(&ring, 0);
	/* INDIRECT together with NEXT */
	set_desc_in(&ring, INDIRECT_GPA, 0, BUFFER_GPA, 44, 0, 0);
	set_desc(&ring, 1, INDIRECT_GPA, 16, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, 2);
	set_desc(&ring, 2, BUFFER_GPA, 44, 0, 0);
	expect_malformed(&ring, 1);
	/* lengths: zero, not a multiple of 16, more than VIRTQ_MAX_SIZE entries */
	set_desc(&ring, 3, INDIRECT_GPA, 0, VRING_DESC_F_INDIRECT, 0);
	expect_malformed(&ring, 3);
	set_desc(&ring, 3, INDIRECT_GPA, 24, VRING_DESC_F_INDIRECT, 0);
	expect_malformed(&ring, 3);
	set_desc(&ring, 3, INDIRECT_GPA, (VIRTQ_MAX_SIZE + 1) * 16, VRING_DESC_F_INDIRECT, 0);
	expect_malformed(&ring, 3);
	/* table itself past the end of guest memory */
	set_desc(&ring, 3, MEMORY_SIZE - 16, 32, VRING_DESC_F_INDIRECT, 0);
	expect_malformed(&ring, 3);
	/* next index beyond the table */
	set_desc_in(&ring, INDIRECT_GPA, 0, BUFFER_GPA, 44, VRING_DESC_F_NEXT, 2);
	set_desc(&ring, 4, INDIRECT_GPA, 32, VRING_DESC_F_INDIRECT, 0);
	expect_malformed(&ring, 4);
	ring_close(&ring);

	/* INDIRECT while RING_INDIRECT_DESC was not negotiated */
	ring_open(&ring, VIRTQ_DEVICE_READS, false, false);
	set_desc_in(&ring, INDIRECT_GPA, 0, BUFFER_GPA, 44, 0, 0);
	set_desc(&ring, 0, INDIRECT_GPA, 16, VRING_DESC_F_INDIRECT, 0);
	expect_malformed(&ring, 0);
	ring_close(&ring);
}

static void test_bad_addresses_and_indices(void **state)
{
	struct ring ring;
	(void)state;

	ring_open(&ring, VIRTQ_DEVICE_READS, false, false);
	/* starts inside, ends past the region (CVE-2019-18960 shape) */
	set_desc(&ring, 0, MEMORY_SIZE - 10, 20, 0, 0);
	expect_malformed(&ring, 0);
	/* address + length wraps around 2^64 */
	set_desc(&ring, 0, UINT64_MAX - 5, 10, 0, 0);
	expect_malformed(&ring, 0);
	/* entirely outside */
	set_desc(&ring, 0, MEMORY_SIZE, 1, 0, 0);
	expect_malformed(&ring, 0);
	/* next index out of range */
	set_desc(&ring, 0, BUFFER_GPA, 44, VRING_DESC_F_NEXT, RING_SIZE);
	expect_malformed(&ring, 0);
	/* head out of range: answered as is, the ring goes on */
	expect_malformed(&ring, RING_SIZE);
	expect_malformed(&ring, 0xffff);
	/* the last byte of memory is fine */
	set_desc(&ring, 0, MEMORY_SIZE - 10, 10, 0, 0);
	post(&ring, 0);
	assert_int_equal(pop(&ring), 1);
	ring_close(&ring);
}

static void test_too_many_segments_and_huge_total(void **state)
{
	struct ring ring;
	struct iovec small[2];
	(void)state;

	ring_open(&ring, VIRTQ_DEVICE_READS, false, true);
	set_desc(&ring, 0, BUFFER_GPA, 1, VRING_DESC_F_NEXT, 1);
	set_desc(&ring, 1, BUFFER_GPA, 1, VRING_DESC_F_NEXT, 2);
	set_desc(&ring, 2, BUFFER_GPA, 1, 0, 0);
	post(&ring, 0);
	assert_int_equal(virtq_pop(&ring.queue, &ring.memory, small, 2, &ring.chain), 0);
	assert_int_equal(ring.queue.stats.chains_malformed, 1);
	assert_used(&ring, 0, 0, 0);
	/* the same chain fits a bigger array */
	post(&ring, 0);
	assert_int_equal(pop(&ring), 1);
	assert_int_equal(ring.chain.iov_count, 3);
	ring_close(&ring);

	/* two 3 GiB descriptors (sparse memfd): the sum does not fit a u32 */
	ring_open_sized(&ring, VIRTQ_DEVICE_READS, false, false, 4ull << 30);
	set_desc(&ring, 0, BUFFER_GPA, 3u << 30, VRING_DESC_F_NEXT, 1);
	set_desc(&ring, 1, BUFFER_GPA, 3u << 30, 0, 0);
	expect_malformed(&ring, 0);
	set_desc(&ring, 1, BUFFER_GPA, (1u << 30) - 1, 0, 0);  /* 4 GiB - 1: fits */
	post(&ring, 0);
	assert_int_equal(pop(&ring), 1);
	assert_int_equal(ring.chain.length, UINT32_MAX);
	ring_close(&ring);
}

static void test_malformed_then_good_chain_pops(void **state)
{
	struct ring ring;
	(void)state;

	ring_open(&ring, VIRTQ_DEVICE_READS, false, false);
	set_desc(&ring, 0, BUFFER_GPA, 44, VRING_DESC_F_NEXT, 0);   /* loop */
	set_desc(&ring, 1, UINT64_MAX - 1, 44, 0, 0);               /* bad address */
	set_desc(&ring, 2, BUFFER_GPA, 44, 0, 0);                   /* good */
	post(&ring, 0);
	post(&ring, 1);
	post(&ring, 2);
	assert_int_equal(pop(&ring), 1);
	assert_int_equal(ring.chain.head, 2);
	assert_int_equal(ring.queue.stats.chains_malformed, 2);
	assert_int_equal(ring.queue.stats.chains_popped, 1);
	assert_int_equal(used_idx(&ring), 2);
	assert_used(&ring, 0, 0, 0);
	assert_used(&ring, 1, 1, 0);
	ring_close(&ring);
}

static void test_avail_index_jump_breaks_queue(void **state)
{
	struct ring ring;
	(void)state;

	ring_open(&ring, VIRTQ_DEVICE_READS, false, false);
	set_desc(&ring, 0, BUFFER_GPA, 44, 0, 0);
	set_avail_idx(&ring, RING_SIZE + 1);
	assert_int_equal(pop(&ring), 0);
	assert_true(ring.queue.broken);
	assert_false(virtq_is_ready(&ring.queue));
	assert_int_equal(used_idx(&ring), 0);
	assert_int_equal(ring.queue.last_avail_idx, 0);
	/* exactly size entries ahead is fine once the frontend restarts it */
	virtq_set_base(&ring.queue, 0);
	assert_false(ring.queue.broken);
	set_avail_idx(&ring, RING_SIZE);
	for (unsigned i = 0; i < RING_SIZE; i++)
		*avail_word(&ring, 2 + i) = 0;
	for (unsigned i = 0; i < RING_SIZE; i++)
		assert_int_equal(pop(&ring), 1);
	assert_int_equal(pop(&ring), 0);
	ring_close(&ring);
}

/* ---- used ring ---- */

static void test_push_publishes_used_entries_with_wrap(void **state)
{
	struct ring ring;
	(void)state;

	ring_open(&ring, VIRTQ_DEVICE_WRITES, false, false);
	virtq_push(&ring.queue, 3, 100);
	assert_int_equal(used_idx(&ring), 1);
	assert_used(&ring, 0, 3, 100);
	ring_close(&ring);

	/* a ring restarted near the 16-bit wrap (the VMM set the base and
	 * the used index in memory) */
	ring_open(&ring, VIRTQ_DEVICE_WRITES, false, false);
	*(uint16_t *)(ring.base + USED_GPA + 2) = htole16(65534);
	virtq_set_base(&ring.queue, 65534);
	assert_int_equal(virtq_map(&ring.queue, &ring.memory), 0);
	assert_int_equal(ring.queue.used_idx, 65534);
	ring.avail_idx = 65534;
	for (uint16_t head = 0; head < 3; head++) {
		set_desc(&ring, head, BUFFER_GPA + head * 0x1000u, 4096,
			 VRING_DESC_F_WRITE, 0);
		post(&ring, head);
	}
	for (uint16_t head = 0; head < 3; head++) {
		assert_int_equal(pop(&ring), 1);
		assert_int_equal(ring.chain.head, head);
		virtq_push(&ring.queue, ring.chain.head, 44 + head);
	}
	assert_int_equal(ring.queue.last_avail_idx, 1);
	assert_int_equal(used_idx(&ring), 1);
	assert_used(&ring, 6, 0, 44);
	assert_used(&ring, 7, 1, 45);
	assert_used(&ring, 0, 2, 46);
	ring_close(&ring);
}

static uint64_t read_counter(int fd)
{
	uint64_t value = 0;
	if (read(fd, &value, sizeof(value)) != (ssize_t)sizeof(value))
		return 0;
	return value;
}

static void test_notify_event_idx(void **state)
{
	struct ring ring;
	int call = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	(void)state;

	assert_true(call >= 0);
	ring_open(&ring, VIRTQ_DEVICE_WRITES, true, false);
	ring.queue.call_fd = call;

	virtq_notify(&ring.queue);                /* nothing pushed: nothing */
	assert_int_equal(read_counter(call), 0);
	assert_int_equal(ring.queue.stats.notifications_sent, 0);
	assert_int_equal(ring.queue.stats.notifications_suppressed, 0);

	set_used_event(&ring, 5);
	virtq_push(&ring.queue, 0, 1);            /* used 1, nothing signalled yet */
	virtq_notify(&ring.queue);
	assert_int_equal(read_counter(call), 1);
	virtq_push(&ring.queue, 1, 1);            /* used 2: event 5 not crossed */
	virtq_notify(&ring.queue);
	for (int i = 0; i < 3; i++)
		virtq_push(&ring.queue, 2, 1);    /* used 5: 5 itself not passed */
	virtq_notify(&ring.queue);
	assert_int_equal(read_counter(call), 0);
	assert_int_equal(ring.queue.stats.notifications_suppressed, 2);
	virtq_push(&ring.queue, 3, 1);            /* used 6: passed entry 5 */
	virtq_notify(&ring.queue);
	assert_int_equal(read_counter(call), 1);
	virtq_notify(&ring.queue);                /* no push since: nothing */
	assert_int_equal(read_counter(call), 0);
	/* the guest asks for every interrupt again */
	set_used_event(&ring, 6);
	virtq_push(&ring.queue, 4, 1);
	virtq_notify(&ring.queue);
	assert_int_equal(read_counter(call), 1);
	assert_int_equal(ring.queue.stats.notifications_sent, 3);
	assert_int_equal(ring.queue.stats.notifications_suppressed, 2);
	ring_close(&ring);                        /* closes call */
	assert_true(fcntl(call, F_GETFD) < 0);
}

static void test_notify_no_interrupt_flag(void **state)
{
	struct ring ring;
	int call = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	(void)state;

	ring_open(&ring, VIRTQ_DEVICE_WRITES, false, false);
	ring.queue.call_fd = call;
	*avail_word(&ring, 0) = htole16(VRING_AVAIL_F_NO_INTERRUPT);
	virtq_push(&ring.queue, 0, 1);
	virtq_notify(&ring.queue);
	assert_int_equal(read_counter(call), 0);
	*avail_word(&ring, 0) = 0;
	virtq_push(&ring.queue, 1, 1);
	virtq_notify(&ring.queue);
	assert_int_equal(read_counter(call), 1);
	assert_int_equal(ring.queue.stats.notifications_sent, 1);
	assert_int_equal(ring.queue.stats.notifications_suppressed, 1);
	ring_close(&ring);
}

static void test_enable_kicks(void **state)
{
	struct ring ring;
	(void)state;

	ring_open(&ring, VIRTQ_DEVICE_READS, true, false);
	set_desc(&ring, 0, BUFFER_GPA, 44, 0, 0);
	post(&ring, 0);
	post(&ring, 0);
	assert_true(virtq_enable_kicks(&ring.queue));    /* two waiting */
	assert_int_equal(avail_event(&ring), 0);
	assert_int_equal(pop(&ring), 1);
	assert_int_equal(pop(&ring), 1);
	assert_false(virtq_enable_kicks(&ring.queue));
	assert_int_equal(avail_event(&ring), 2);
	post(&ring, 0);                                   /* raced in */
	assert_true(virtq_enable_kicks(&ring.queue));
	ring_close(&ring);

	ring_open(&ring, VIRTQ_DEVICE_READS, false, false);
	*(uint16_t *)(ring.base + USED_GPA) = htole16(VRING_USED_F_NO_NOTIFY);
	assert_false(virtq_enable_kicks(&ring.queue));
	assert_int_equal(used_flags(&ring) & VRING_USED_F_NO_NOTIFY, 0);
	ring_close(&ring);
}

/* ---- stop, reset, map ---- */

static void test_stop_reset_and_drain(void **state)
{
	struct ring ring;
	int kick = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	int call = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	uint64_t one = 1;
	(void)state;

	ring_open(&ring, VIRTQ_DEVICE_READS, false, false);
	ring.queue.kick_fd = kick;
	ring.queue.call_fd = call;
	assert_int_equal(write(kick, &one, sizeof(one)), sizeof(one));
	assert_int_equal(write(kick, &one, sizeof(one)), sizeof(one));
	virtq_drain_kick(&ring.queue);
	assert_int_equal(read_counter(kick), 0);          /* drained */
	virtq_drain_kick(&ring.queue);                    /* EAGAIN is fine */

	set_desc(&ring, 0, BUFFER_GPA, 44, 0, 0);
	post(&ring, 0);
	assert_int_equal(pop(&ring), 1);
	assert_int_equal(virtq_stop(&ring.queue), 1);
	assert_false(virtq_is_ready(&ring.queue));
	post(&ring, 0);
	assert_int_equal(pop(&ring), 0);                  /* stopped */
	virtq_push(&ring.queue, ring.chain.head, 0);      /* too late: dropped */
	assert_int_equal(used_idx(&ring), 0);
	virtq_notify(&ring.queue);
	assert_int_equal(read_counter(call), 0);

	virtq_reset(&ring.queue);
	assert_int_equal(ring.queue.kick_fd, -1);
	assert_int_equal(ring.queue.call_fd, -1);
	assert_int_equal(ring.queue.err_fd, -1);
	assert_true(fcntl(kick, F_GETFD) < 0);
	assert_true(fcntl(call, F_GETFD) < 0);
	assert_int_equal(ring.queue.size, 0);
	assert_null(ring.queue.desc);
	assert_int_equal(ring.queue.index, 1);            /* kept */
	assert_int_equal(ring.queue.direction, VIRTQ_DEVICE_READS);
	assert_int_equal(ring.queue.stats.chains_popped, 1);
	ring_close(&ring);
}

static void test_map_rejects_bad_rings(void **state)
{
	struct ring ring;
	(void)state;

	ring_open(&ring, VIRTQ_DEVICE_READS, false, false);
	ring.queue.size = 6;                              /* not a power of two */
	assert_int_equal(virtq_map(&ring.queue, &ring.memory), -EINVAL);
	assert_false(virtq_is_ready(&ring.queue));
	ring.queue.size = 2 * VIRTQ_MAX_SIZE;
	assert_int_equal(virtq_map(&ring.queue, &ring.memory), -EINVAL);
	ring.queue.size = RING_SIZE;
	ring.queue.desc_user_addr = USER_BASE + 8;        /* misaligned */
	assert_int_equal(virtq_map(&ring.queue, &ring.memory), -EFAULT);
	ring.queue.desc_user_addr = USER_BASE;
	ring.queue.used_user_addr = USER_BASE + USED_GPA + 2;
	assert_int_equal(virtq_map(&ring.queue, &ring.memory), -EFAULT);
	ring.queue.used_user_addr = USER_BASE + MEMORY_SIZE - 8;  /* runs off */
	assert_int_equal(virtq_map(&ring.queue, &ring.memory), -EFAULT);
	ring.queue.used_user_addr = DESC_GPA;             /* a gpa, not a uaddr */
	assert_int_equal(virtq_map(&ring.queue, &ring.memory), -EFAULT);
	assert_null(ring.queue.desc);
	ring.queue.used_user_addr = USER_BASE + USED_GPA;
	assert_int_equal(virtq_map(&ring.queue, &ring.memory), 0);
	assert_true(virtq_is_ready(&ring.queue));
	ring_close(&ring);
}

/* The warning names the reason, the queue and the head. */
static void test_malformed_log_line(void **state)
{
	struct ring ring;
	int capture = memfd_create("stderr", MFD_CLOEXEC);
	int saved = dup(STDERR_FILENO);
	char text[1024] = { 0 };
	(void)state;

	ring_open(&ring, VIRTQ_DEVICE_READS, false, false);
	set_desc(&ring, 5, BUFFER_GPA, 44, VRING_DESC_F_WRITE, 0);
	post(&ring, 5);
	log_set_level(LOG_LEVEL_WARN);
	fflush(stderr);
	dup2(capture, STDERR_FILENO);
	assert_int_equal(pop(&ring), 0);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	log_set_level(LOG_LEVEL_ERROR);
	assert_true(pread(capture, text, sizeof(text) - 1, 0) > 0);
	close(capture);
	assert_non_null(strstr(text, "device-writable descriptor"));
	assert_non_null(strstr(text, "queue 1 head 5"));
	ring_close(&ring);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_single_descriptor),
		cmocka_unit_test(test_rx_single_writable_buffer),
		cmocka_unit_test(test_header_and_payload_split_over_three),
		cmocka_unit_test(test_chain_of_ring_size),
		cmocka_unit_test(test_indirect_table),
		cmocka_unit_test(test_direct_then_indirect),
		cmocka_unit_test(test_zero_length_descriptors_skipped),
		cmocka_unit_test(test_direction_violations),
		cmocka_unit_test(test_loops),
		cmocka_unit_test(test_bad_indirect_tables),
		cmocka_unit_test(test_bad_addresses_and_indices),
		cmocka_unit_test(test_too_many_segments_and_huge_total),
		cmocka_unit_test(test_malformed_then_good_chain_pops),
		cmocka_unit_test(test_avail_index_jump_breaks_queue),
		cmocka_unit_test(test_push_publishes_used_entries_with_wrap),
		cmocka_unit_test(test_notify_event_idx),
		cmocka_unit_test(test_notify_no_interrupt_flag),
		cmocka_unit_test(test_enable_kicks),
		cmocka_unit_test(test_stop_reset_and_drain),
		cmocka_unit_test(test_map_rejects_bad_rings),
		cmocka_unit_test(test_malformed_log_line),
	};
	log_set_level(LOG_LEVEL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
