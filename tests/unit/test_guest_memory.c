/*
 * test_guest_memory.c - guest_memory: mapping memfd-backed regions, range
 * translation (inside, edges, outside, 64-bit overflow), and every table
 * that must be rejected (with all fds closed and the old table kept).
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "guest_memory.h"
#include "vsockmux/log.h"

#define PAGE 0x1000u

static int make_memfd(size_t size)
{
	int fd = memfd_create("guest-memory-test", MFD_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	return fd;
}

static bool fd_is_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0 || errno != EBADF;
}

static struct vhost_user_memory_region region(uint64_t gpa, uint64_t size,
					      uint64_t uaddr, uint64_t offset)
{
	return (struct vhost_user_memory_region){
		.guest_phys_addr = gpa,
		.memory_size = size,
		.user_addr = uaddr,
		.mmap_offset = offset,
	};
}

/* One region of size bytes at gpa (file has offset + size bytes). */
static void set_one(struct guest_memory *memory, uint64_t gpa, uint64_t size,
		    uint64_t uaddr, uint64_t offset, int *fd_out)
{
	struct vhost_user_memory table = { .nregions = 1 };
	int fd = make_memfd((size_t)(offset + size));

	table.regions[0] = region(gpa, size, uaddr, offset);
	if (fd_out)
		*fd_out = dup(fd);
	assert_int_equal(guest_memory_set_table(memory, &table, &fd, 1), 0);
	assert_false(fd_is_open(fd));
}

static void test_translate_inside_edges_outside(void **state)
{
	struct guest_memory memory = { 0 };
	uint8_t *base;
	(void)state;

	set_one(&memory, 0x10000, 4 * PAGE, 0x7f0000000000ull, 0, NULL);
	assert_int_equal(memory.region_count, 1);
	base = guest_memory_translate(&memory, 0x10000, 1);
	assert_non_null(base);
	assert_ptr_equal(guest_memory_translate(&memory, 0x10010, 16), base + 0x10);
	/* the whole region, and its last byte */
	assert_ptr_equal(guest_memory_translate(&memory, 0x10000, 4 * PAGE), base);
	assert_ptr_equal(guest_memory_translate(&memory, 0x13fff, 1), base + 0x3fff);
	assert_ptr_equal(guest_memory_translate(&memory, 0x13fff, 0), base + 0x3fff);
	/* one byte past the end, one byte before the start */
	assert_null(guest_memory_translate(&memory, 0x13fff, 2));
	assert_null(guest_memory_translate(&memory, 0x10000, 4 * PAGE + 1));
	assert_null(guest_memory_translate(&memory, 0x14000, 1));
	assert_null(guest_memory_translate(&memory, 0x14000, 0));
	assert_null(guest_memory_translate(&memory, 0xffff, 1));
	assert_null(guest_memory_translate(&memory, 0xffff, 2));
	assert_null(guest_memory_translate(&memory, 0, 1));
	/* the VMM's addresses translate to the same bytes */
	assert_ptr_equal(guest_memory_translate_user(&memory, 0x7f0000000010ull, 8),
			 base + 0x10);
	assert_null(guest_memory_translate_user(&memory, 0x7f0000003fffull, 2));
	assert_null(guest_memory_translate_user(&memory, 0x10000, 1));
	/* the mapping is shared and writable */
	base[5] = 0xab;
	assert_int_equal(((volatile uint8_t *)base)[5], 0xab);
	guest_memory_clear(&memory);
	assert_int_equal(memory.region_count, 0);
	assert_null(guest_memory_translate(&memory, 0x10000, 1));
}

static void test_mmap_offset_and_sharing(void **state)
{
	struct guest_memory memory = { 0 };
	uint8_t *pointer;
	int fd;
	char byte = 'X';
	(void)state;

	set_one(&memory, 0, 2 * PAGE, 0x1000000, PAGE, &fd);
	/* guest address 0 is file offset mmap_offset */
	assert_int_equal(pwrite(fd, &byte, 1, PAGE + 7), 1);
	pointer = guest_memory_translate(&memory, 7, 1);
	assert_non_null(pointer);
	assert_int_equal(*pointer, 'X');
	assert_ptr_equal(memory.regions[0].host_addr,
			 (uint8_t *)memory.regions[0].mmap_base + PAGE);
	assert_int_equal(memory.regions[0].mmap_length, 3 * PAGE);
	close(fd);
	guest_memory_clear(&memory);
}

/* /proc/self/maps says the mapping is rw-s (shared, never executable). */
static void test_mapping_is_not_executable(void **state)
{
	struct guest_memory memory = { 0 };
	char line[512];
	char wanted[32];
	bool found = false;
	FILE *maps;
	(void)state;

	set_one(&memory, 0, PAGE, 0, 0, NULL);
	snprintf(wanted, sizeof(wanted), "%lx-",
		 (unsigned long)(uintptr_t)memory.regions[0].mmap_base);
	maps = fopen("/proc/self/maps", "r");
	assert_non_null(maps);
	while (fgets(line, sizeof(line), maps)) {
		if (strncmp(line, wanted, strlen(wanted)) == 0) {
			assert_non_null(strstr(line, " rw-s "));
			found = true;
		}
	}
	fclose(maps);
	assert_true(found);
	guest_memory_clear(&memory);
}

static void test_overflow_near_top(void **state)
{
	struct guest_memory memory = { 0 };
	const uint64_t start = UINT64_MAX - (PAGE - 1);
	uint8_t *base;
	(void)state;

	/* a region whose last byte is the last guest address */
	set_one(&memory, start, PAGE, UINT64_MAX - (PAGE - 1), 0, NULL);
	base = guest_memory_translate(&memory, start, PAGE);
	assert_non_null(base);
	assert_ptr_equal(guest_memory_translate(&memory, UINT64_MAX, 1),
			 base + PAGE - 1);
	assert_null(guest_memory_translate(&memory, UINT64_MAX, 2));
	assert_null(guest_memory_translate(&memory, start, PAGE + 1));
	assert_null(guest_memory_translate(&memory, start, UINT64_MAX));
	assert_null(guest_memory_translate(&memory, start + 1, UINT64_MAX));
	assert_null(guest_memory_translate_user(&memory, UINT64_MAX, UINT64_MAX));
	guest_memory_clear(&memory);

	/* gpa + length wraps around to land inside a low region */
	set_one(&memory, 0x1000, 4 * PAGE, 0x1000, 0, NULL);
	assert_null(guest_memory_translate(&memory, 0x2000, UINT64_MAX - 0xfff));
	assert_null(guest_memory_translate(&memory, UINT64_MAX, 0x2001));
	assert_null(guest_memory_translate(&memory, 0x1000, UINT64_MAX));
	assert_null(guest_memory_translate_user(&memory, 0x2000, UINT64_MAX));
	guest_memory_clear(&memory);
}

static void test_two_regions(void **state)
{
	struct guest_memory memory = { 0 };
	struct vhost_user_memory table = { .nregions = 2 };
	int fds[2] = { make_memfd(2 * PAGE), make_memfd(2 * PAGE) };
	uint8_t *low, *high;
	(void)state;

	/* adjacent in guest physical space, far apart in the VMM */
	table.regions[0] = region(0, 2 * PAGE, 0x40000000, 0);
	table.regions[1] = region(2 * PAGE, 2 * PAGE, 0x80000000, 0);
	assert_int_equal(guest_memory_set_table(&memory, &table, fds, 2), 0);
	assert_false(fd_is_open(fds[0]));
	assert_false(fd_is_open(fds[1]));
	low = guest_memory_translate(&memory, 0, 2 * PAGE);
	high = guest_memory_translate(&memory, 2 * PAGE, 2 * PAGE);
	assert_non_null(low);
	assert_non_null(high);
	assert_ptr_not_equal(low, high);
	assert_ptr_equal(guest_memory_translate(&memory, 3 * PAGE + 5, 3), high + PAGE + 5);
	/* a range across the boundary is in no single region */
	assert_null(guest_memory_translate(&memory, 2 * PAGE - 1, 2));
	assert_null(guest_memory_translate(&memory, 0, 4 * PAGE));
	assert_ptr_equal(guest_memory_translate_user(&memory, 0x80000000 + 8, 8), high + 8);
	assert_null(guest_memory_translate_user(&memory, 0x40000000 + 2 * PAGE, 1));
	guest_memory_clear(&memory);
}

/* Try a table that must be rejected; all fds closed, old table kept. */
static void expect_rejected(struct guest_memory *memory,
			    const struct vhost_user_memory *table, unsigned fd_count)
{
	int fds[VHOST_USER_MAX_MEM_REGIONS + 1];
	uint8_t *before = guest_memory_translate(memory, 0, 1);

	for (unsigned i = 0; i < fd_count; i++)
		fds[i] = make_memfd(PAGE);
	assert_true(guest_memory_set_table(memory, table, fds, fd_count) < 0);
	for (unsigned i = 0; i < fd_count; i++)
		assert_false(fd_is_open(fds[i]));
	assert_int_equal(memory->region_count, 1);
	assert_ptr_equal(guest_memory_translate(memory, 0, 1), before);
}

static void test_rejections_keep_old_table(void **state)
{
	struct guest_memory memory = { 0 };
	struct vhost_user_memory table;
	(void)state;

	set_one(&memory, 0, PAGE, 0x5000000, 0, NULL);

	memset(&table, 0, sizeof(table));
	expect_rejected(&memory, &table, 0);              /* no regions */

	table.nregions = VHOST_USER_MAX_MEM_REGIONS + 1;  /* too many */
	for (unsigned i = 0; i < table.nregions && i < VHOST_USER_MAX_MEM_REGIONS; i++)
		table.regions[i] = region((uint64_t)i * PAGE, PAGE, (uint64_t)i * PAGE, 0);
	expect_rejected(&memory, &table, VHOST_USER_MAX_MEM_REGIONS);

	memset(&table, 0, sizeof(table));
	table.nregions = 1;
	table.regions[0] = region(0x100000, 0, 0, 0);     /* zero size */
	expect_rejected(&memory, &table, 1);

	table.regions[0] = region(0x100000, PAGE, 0, 0);  /* 2 fds for 1 region */
	expect_rejected(&memory, &table, 2);
	expect_rejected(&memory, &table, 0);

	table.regions[0] = region(UINT64_MAX - 10, PAGE, 0, 0); /* gpa wraps */
	expect_rejected(&memory, &table, 1);

	table.regions[0] = region(0, PAGE, UINT64_MAX - 10, 0); /* uaddr wraps */
	expect_rejected(&memory, &table, 1);

	table.regions[0] = region(0, PAGE, 0, UINT64_MAX - 10); /* offset + size wraps */
	expect_rejected(&memory, &table, 1);

	table.nregions = 2;                               /* overlapping */
	table.regions[0] = region(0x100000, 2 * PAGE, 0x100000, 0);
	table.regions[1] = region(0x101000, 2 * PAGE, 0x900000, 0);
	expect_rejected(&memory, &table, 2);
	table.regions[1] = region(0x0ff000, 2 * PAGE, 0x900000, 0);
	expect_rejected(&memory, &table, 2);
	table.regions[1] = region(0x100000, PAGE, 0x900000, 0); /* contained */
	expect_rejected(&memory, &table, 2);

	/* mmap of a non-mappable fd (a pipe) fails; the old table stays */
	{
		int pipe_fds[2];
		struct vhost_user_memory one = { .nregions = 1 };
		uint8_t *before = guest_memory_translate(&memory, 0, 1);

		one.regions[0] = region(0x200000, PAGE, 0x200000, 0);
		assert_int_equal(pipe(pipe_fds), 0);
		assert_true(guest_memory_set_table(&memory, &one, &pipe_fds[0], 1) < 0);
		assert_false(fd_is_open(pipe_fds[0]));
		close(pipe_fds[1]);
		assert_ptr_equal(guest_memory_translate(&memory, 0, 1), before);
		assert_null(guest_memory_translate(&memory, 0x200000, 1));
	}
	guest_memory_clear(&memory);
}

static void test_replace_on_success(void **state)
{
	struct guest_memory memory = { 0 };
	(void)state;

	set_one(&memory, 0, PAGE, 0, 0, NULL);
	assert_non_null(guest_memory_translate(&memory, 0, 1));
	set_one(&memory, 0x100000, PAGE, 0x100000, 0, NULL);
	assert_int_equal(memory.region_count, 1);
	assert_null(guest_memory_translate(&memory, 0, 1));
	assert_non_null(guest_memory_translate(&memory, 0x100000, PAGE));
	guest_memory_clear(&memory);
	guest_memory_clear(&memory); /* twice is fine */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_translate_inside_edges_outside),
		cmocka_unit_test(test_mmap_offset_and_sharing),
		cmocka_unit_test(test_mapping_is_not_executable),
		cmocka_unit_test(test_overflow_near_top),
		cmocka_unit_test(test_two_regions),
		cmocka_unit_test(test_rejections_keep_old_table),
		cmocka_unit_test(test_replace_on_success),
	};
	log_set_level(LOG_LEVEL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
