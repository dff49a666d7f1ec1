/*
 * guest_memory.h - the guest's RAM as the VMM shared it (SET_MEM_TABLE).
 *
 * Owns: the mmap()s of the region fds and every translation from a guest
 * physical address (descriptors) or a VMM virtual address (vring addresses)
 * to a pointer in this process.
 * Never: returns a pointer unless the whole range [addr, addr + length)
 * lies inside one mapped region, checked without integer overflow
 * (Firecracker CVE-2019-18960 checked only the start).
 */
#ifndef VSOCKMUX_GUEST_MEMORY_H
#define VSOCKMUX_GUEST_MEMORY_H

#include <stddef.h>
#include <stdint.h>

#include "vsockmux/vhost_user_wire.h"

struct guest_memory_region {
	uint64_t guest_phys_addr;
	uint64_t size;
	uint64_t user_addr;     /* the VMM's virtual address of the region */
	uint8_t *host_addr;     /* our pointer to guest_phys_addr */
	void *mmap_base;        /* what mmap returned (includes mmap_offset) */
	size_t mmap_length;
};

struct guest_memory {
	unsigned region_count;
	struct guest_memory_region regions[VHOST_USER_MAX_MEM_REGIONS];
};

/*
 * Replace the current table with the one described by table (already
 * size-checked by the caller) and fds (one per region, owned by this call:
 * closed on every path once mapped or rejected). Rejects zero-sized or
 * overlapping regions, offsets past what a 64-bit size allows, more than
 * VHOST_USER_MAX_MEM_REGIONS. On failure the previous table is kept.
 * Returns 0 or a negative errno.
 */
int guest_memory_set_table(struct guest_memory *memory,
			   const struct vhost_user_memory *table,
			   const int *fds, unsigned fd_count);

/* Unmap everything; the table becomes empty. */
void guest_memory_clear(struct guest_memory *memory);

/* Guest physical [gpa, gpa + length) -> pointer, or NULL if any byte is
 * outside a single region or the sum overflows. length 0 is treated as 1. */
void *guest_memory_translate(const struct guest_memory *memory, uint64_t gpa,
			     uint64_t length);

/* Same for the VMM's virtual addresses (SET_VRING_ADDR). */
void *guest_memory_translate_user(const struct guest_memory *memory,
				  uint64_t user_addr, uint64_t length);

#endif
