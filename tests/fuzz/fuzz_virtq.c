/*
 * fuzz_virtq.c - libFuzzer target for daemon/virtq.c: chain walking over
 * guest memory the input fully controls (descriptor tables, avail and used
 * rings, indices, indirect tables), with fuzzed queue size, features and
 * direction, and guest writes between device operations (torn indices,
 * descriptors changed under the device).
 *
 * Owns: a heap buffer standing for guest RAM (one or two regions, with
 * guard bytes around it) and one struct virtq whose rings live in it.
 * Checks: every iovec popped lies inside the region it came from,
 * chain->length is the sum of the iovecs, and the device writes nothing
 * but the used ring (flags, entries, idx, avail_event) and nothing outside
 * the buffer.
 * Never: copies virtq code; it drives the real module.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "fuzz_check.h"
#include "fuzz_input.h"
#include "guest_memory.h"
#include "virtq.h"
#include "vsockmux/log.h"

#define GUARD 4096u
#define MAX_MEMORY (32u * 1024u)
#define MAX_STEPS 64u
#define GUARD_BYTE 0xa5u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static uint8_t *allocation;   /* guard + memory + guard */
static uint8_t snapshot[MAX_MEMORY];
static struct iovec iov[VIRTQ_MAX_SIZE + 8];
static int call_fd = -1;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_set_level(LOG_LEVEL_ERROR);
	allocation = malloc(2 * GUARD + MAX_MEMORY);
	call_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (!allocation || call_fd < 0)
		abort();
	return 0;
}

/* The used ring's bytes relative to the memory start, if it is there. */
struct used_window {
	bool known;
	size_t start, length;
};

static bool inside_region(const struct guest_memory *memory, const struct iovec *segment)
{
	uintptr_t base = (uintptr_t)segment->iov_base;
	for (unsigned i = 0; i < memory->region_count; i++) {
		uintptr_t start = (uintptr_t)memory->regions[i].host_addr;
		if (base >= start && segment->iov_len <= memory->regions[i].size &&
		    base - start <= memory->regions[i].size - segment->iov_len)
			return true;
	}
	return false;
}

/* Bytes the device changed must all lie in the used window. */
static void check_writes(const uint8_t *memory, size_t memory_size,
			 const struct used_window *used)
{
	for (size_t i = 0; i < memory_size; i++) {
		if (memory[i] == snapshot[i])
			continue;
		check(used->known && i >= used->start && i - used->start < used->length,
		      "device wrote outside the used ring");
	}
	for (size_t i = 0; i < GUARD; i++) {
		check(allocation[i] == GUARD_BYTE, "write before guest memory");
		check(memory[memory_size + i] == GUARD_BYTE, "write after guest memory");
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input input;
	struct guest_memory memory;
	struct virtq queue;
	struct used_window used = { false, 0, 0 };
	uint8_t *guest;
	uint8_t config, layout;
	size_t memory_size, split;
	uint64_t gpa0, user0;
	uint64_t desc_offset, avail_offset, used_offset;
	size_t iov_capacity;
	bool mapped;

	fuzz_input_init(&input, data, size);
	config = fuzz_u8(&input);
	layout = fuzz_u8(&input);
	memory_size = 256u + (size_t)(fuzz_u16(&input) % (MAX_MEMORY - 255u));
	memory_size &= ~(size_t)15;
	guest = allocation + GUARD;
	memset(allocation, GUARD_BYTE, 2 * GUARD + MAX_MEMORY);
	fuzz_bytes(&input, guest, fuzz_u16(&input) % (memory_size + 1));

	/* One region, or two regions whose guest addresses may or may not
	 * be adjacent (a buffer spanning both must still be refused). */
	memset(&memory, 0, sizeof(memory));
	gpa0 = (layout & 1) ? fuzz_u64(&input) : (uint64_t)fuzz_u16(&input) << 12;
	user0 = (layout & 2) ? fuzz_u64(&input) : 0x7f0000000000ull + ((uint64_t)fuzz_u8(&input) << 20);
	split = (layout & 4) ? ((size_t)fuzz_u16(&input) % memory_size) & ~(size_t)15 : 0;
	if (split == 0) {
		memory.region_count = 1;
		memory.regions[0] = (struct guest_memory_region){
			.guest_phys_addr = gpa0, .size = memory_size, .user_addr = user0,
			.host_addr = guest,
		};
	} else {
		uint64_t gpa1, user1;

		gpa1 = (layout & 8) ? gpa0 + split : fuzz_u64(&input);
		user1 = (layout & 16) ? user0 + split : fuzz_u64(&input);
		memory.region_count = 2;
		memory.regions[0] = (struct guest_memory_region){
			.guest_phys_addr = gpa0, .size = split, .user_addr = user0,
			.host_addr = guest,
		};
		memory.regions[1] = (struct guest_memory_region){
			.guest_phys_addr = gpa1, .size = memory_size - split,
			.user_addr = user1, .host_addr = guest + split,
		};
	}

	virtq_init(&queue, (config & 1) ? VIRTQ_DEVICE_WRITES : VIRTQ_DEVICE_READS);
	queue.size = (config & 0x80) ? fuzz_u16(&input)
				     : (uint16_t)(1u << ((config >> 1) % 11u));
	queue.event_idx = (config & 0x20) != 0;
	queue.indirect = (config & 0x40) != 0;
	queue.call_fd = (layout & 32) ? call_fd : -1;
	/* ring offsets in the first region's VMM address space */
	desc_offset = fuzz_u16(&input);
	avail_offset = fuzz_u16(&input);
	used_offset = fuzz_u16(&input);
	if (layout & 64) {
		desc_offset &= ~15ull;
		avail_offset &= ~1ull;
		used_offset &= ~3ull;
	}
	queue.desc_user_addr = user0 + desc_offset;
	queue.avail_user_addr = user0 + avail_offset;
	queue.used_user_addr = user0 + used_offset;
	queue.addresses_set = true;
	queue.enabled = true;
	queue.started = true;
	virtq_set_base(&queue, fuzz_u16(&input));
	iov_capacity = 1u + fuzz_u8(&input) % 32u;
	if (config & 0x10)
		iov_capacity = sizeof(iov) / sizeof(iov[0]);

	memcpy(snapshot, guest, memory_size);
	mapped = virtq_map(&queue, &memory) == 0;
	if (mapped) {
		used.known = true;
		used.start = (size_t)((uint8_t *)queue.used - guest);
		used.length = 4u + 8u * queue.size + 2u;
		check(used.start + used.length <= memory_size, "used ring outside memory");
	}
	check_writes(guest, memory_size, &used);

	for (unsigned step = 0; step < MAX_STEPS && !fuzz_empty(&input); step++) {
		uint8_t op = fuzz_u8(&input);
		struct virtq_chain chain;

		memcpy(snapshot, guest, memory_size);
		switch (op % 6u) {
		case 0: /* the guest writes: a descriptor, an index, anything */
		case 1: {
			size_t at = fuzz_u16(&input) % memory_size;
			size_t length = 1u + fuzz_u8(&input) % 32u;
			if (length > memory_size - at)
				length = memory_size - at;
			fuzz_bytes(&input, guest + at, length);
			memcpy(snapshot + at, guest + at, length);
			break;
		}
		case 2: {
			int popped = virtq_pop(&queue, &memory, iov, iov_capacity, &chain);
			if (popped == 1) {
				size_t total = 0;
				check(mapped, "popped from an unmapped queue");
				check(chain.head < queue.size, "head out of range");
				check(chain.iov_count <= iov_capacity, "more iovecs than capacity");
				for (size_t i = 0; i < chain.iov_count; i++) {
					check(iov[i].iov_len > 0, "empty iovec");
					check(inside_region(&memory, &iov[i]), "iovec outside guest memory");
					total += iov[i].iov_len;
				}
				check(total == chain.length, "chain length is not the iovec sum");
				if (op & 0x80)
					virtq_push(&queue, chain.head, fuzz_u32(&input));
			} else {
				check(popped == 0, "virtq_pop returned neither 0 nor 1");
			}
			break;
		}
		case 3:
			virtq_push(&queue, fuzz_u16(&input), fuzz_u32(&input));
			break;
		case 4:
			(void)virtq_enable_kicks(&queue);
			break;
		case 5:
			virtq_notify(&queue);
			if (op & 0x80) {
				uint64_t counter;
				(void)read(call_fd, &counter, sizeof(counter));
			}
			break;
		}
		check_writes(guest, memory_size, &used);
	}
	/* the queue never owns fds here: the eventfd is ours */
	queue.call_fd = -1;
	virtq_reset(&queue);
	return 0;
}
