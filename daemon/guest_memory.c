/*
 * guest_memory.c - the guest's RAM regions from SET_MEM_TABLE (see
 * guest_memory.h).
 *
 * Owns: mapping the region fds (MAP_SHARED, read/write, never executable)
 * and translating guest physical or VMM virtual ranges to pointers.
 * Never: keeps a region fd open after set_table returns, maps anything
 * executable, or returns a pointer for a range that is not wholly inside one
 * region (start and end both checked, without integer overflow).
 */
#include "guest_memory.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vsockmux/log.h"

/* [start, start + size) and [other, other + other_size) share a byte.
 * Both ranges are non-empty and end at or below UINT64_MAX (range_fits), so
 * comparing last bytes cannot overflow. */
static bool ranges_overlap(uint64_t start, uint64_t size, uint64_t other,
			   uint64_t other_size)
{
	return start <= other + (other_size - 1) && other <= start + (size - 1);
}

/* The region's last byte must be addressable: start + size - 1 fits u64. */
static bool range_fits(uint64_t start, uint64_t size)
{
	return size != 0 && start <= UINT64_MAX - (size - 1);
}

/* Validate the whole table before mapping anything. */
static int validate_table(const struct vhost_user_memory *table,
			  unsigned fd_count)
{
	if (table->nregions == 0 || table->nregions > VHOST_USER_MAX_MEM_REGIONS) {
		log_error("guest memory: %u regions (allowed 1..%u)",
			  table->nregions, VHOST_USER_MAX_MEM_REGIONS);
		return -EINVAL;
	}
	if (fd_count != table->nregions) {
		log_error("guest memory: %u fds for %u regions", fd_count,
			  table->nregions);
		return -EINVAL;
	}
	for (unsigned i = 0; i < table->nregions; i++) {
		const struct vhost_user_memory_region *region = &table->regions[i];
		if (!range_fits(region->guest_phys_addr, region->memory_size) ||
		    !range_fits(region->user_addr, region->memory_size)) {
			log_error("guest memory: region %u: size 0x%llx at gpa 0x%llx "
				  "uaddr 0x%llx is empty or wraps", i,
				  (unsigned long long)region->memory_size,
				  (unsigned long long)region->guest_phys_addr,
				  (unsigned long long)region->user_addr);
			return -EINVAL;
		}
		if (region->mmap_offset > UINT64_MAX - region->memory_size ||
		    region->mmap_offset + region->memory_size > SIZE_MAX) {
			log_error("guest memory: region %u: mmap offset 0x%llx + size "
				  "0x%llx overflows", i,
				  (unsigned long long)region->mmap_offset,
				  (unsigned long long)region->memory_size);
			return -EINVAL;
		}
		for (unsigned j = 0; j < i; j++) {
			const struct vhost_user_memory_region *other = &table->regions[j];
			if (ranges_overlap(region->guest_phys_addr, region->memory_size,
					   other->guest_phys_addr, other->memory_size)) {
				log_error("guest memory: regions %u and %u overlap in "
					  "guest physical addresses", j, i);
				return -EINVAL;
			}
		}
	}
	return 0;
}

/*
 * The file behind a region must really hold every byte the VMM announced:
 * a mapping past the end of its file raises SIGBUS on first touch, which
 * would kill the muxer. A memfd that can still shrink (no F_SEAL_SHRINK)
 * could do the same later; QEMU's memory-backend-memfd seals by default, so
 * an unsealed one is reported (files such as hugetlbfs cannot be sealed).
 */
static int check_region_file(unsigned index, int fd, uint64_t needed)
{
	off_t file_size = lseek(fd, 0, SEEK_END);
	int seals;

	/* not seekable (no size to compare with): nothing to check */
	if (file_size >= 0 && (uint64_t)file_size < needed) {
		log_error("guest memory: region %u needs %" PRIu64 " bytes of its "
			  "file but the file has %lld; refusing the memory table",
			  index, needed, (long long)file_size);
		return -EINVAL;
	}
	seals = fcntl(fd, F_GET_SEALS);
	if (seals >= 0 && !(seals & F_SEAL_SHRINK))
		log_warn("guest memory: region %u is an unsealed memfd: a VMM that "
			 "shrinks it would crash this daemon (QEMU seals by default)",
			 index);
	return 0;
}

static void unmap_regions(struct guest_memory_region *regions, unsigned count)
{
	for (unsigned i = 0; i < count; i++)
		munmap(regions[i].mmap_base, regions[i].mmap_length);
}

int guest_memory_set_table(struct guest_memory *memory,
			   const struct vhost_user_memory *table,
			   const int *fds, unsigned fd_count)
{
	struct guest_memory_region mapped[VHOST_USER_MAX_MEM_REGIONS];
	unsigned mapped_count = 0;
	int result = validate_table(table, fd_count);

	if (result < 0)
		goto out;
	for (unsigned i = 0; i < table->nregions; i++) {
		const struct vhost_user_memory_region *region = &table->regions[i];
		size_t length = (size_t)(region->mmap_offset + region->memory_size);
		void *base;

		result = check_region_file(i, fds[i], (uint64_t)length);
		if (result < 0)
			goto out;
		base = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_SHARED,
				  fds[i], 0);
		if (base == MAP_FAILED) {
			result = -errno;
			log_error("guest memory: mmap of region %u (%zu bytes) failed: %s",
				  i, length, strerror(errno));
			goto out;
		}
		mapped[i] = (struct guest_memory_region){
			.guest_phys_addr = region->guest_phys_addr,
			.size = region->memory_size,
			.user_addr = region->user_addr,
			.host_addr = (uint8_t *)base + region->mmap_offset,
			.mmap_base = base,
			.mmap_length = length,
		};
		mapped_count++;
	}
	/* Success: the old table goes, the new one takes its place. */
	guest_memory_clear(memory);
	memcpy(memory->regions, mapped, mapped_count * sizeof(mapped[0]));
	memory->region_count = mapped_count;
	mapped_count = 0;
out:
	unmap_regions(mapped, mapped_count);
	for (unsigned i = 0; i < fd_count; i++) {
		if (fds[i] >= 0)
			close(fds[i]);
	}
	return result;
}

void guest_memory_clear(struct guest_memory *memory)
{
	unmap_regions(memory->regions, memory->region_count);
	memset(memory, 0, sizeof(*memory));
}

/* Offset of [addr, addr + length) inside [start, start + size), checked so
 * that no sum can overflow. */
static bool range_inside(uint64_t addr, uint64_t length, uint64_t start,
			 uint64_t size)
{
	return addr >= start && length <= size && addr - start <= size - length;
}

void *guest_memory_translate(const struct guest_memory *memory, uint64_t gpa,
			     uint64_t length)
{
	if (length == 0)
		length = 1;
	for (unsigned i = 0; i < memory->region_count; i++) {
		const struct guest_memory_region *region = &memory->regions[i];
		if (range_inside(gpa, length, region->guest_phys_addr, region->size))
			return region->host_addr + (gpa - region->guest_phys_addr);
	}
	return NULL;
}

void *guest_memory_translate_user(const struct guest_memory *memory,
				  uint64_t user_addr, uint64_t length)
{
	if (length == 0)
		length = 1;
	for (unsigned i = 0; i < memory->region_count; i++) {
		const struct guest_memory_region *region = &memory->regions[i];
		if (range_inside(user_addr, length, region->user_addr, region->size))
			return region->host_addr + (user_addr - region->user_addr);
	}
	return NULL;
}
