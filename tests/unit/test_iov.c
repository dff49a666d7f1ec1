/*
 * test_iov.c - unit tests for common/iov.c (include/vsockmux/iov.h):
 * total length, copy out/in at offsets across segment boundaries, empty
 * segments, bounds, and slicing a window without copying.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "vsockmux/iov.h"

/* "abc" | "" | "defgh" | "ij": 10 bytes over 4 segments. */
static char seg0[] = "abc", seg2[] = "defgh", seg3[] = "ij";
static const char all_bytes[] = "abcdefghij";

static void make_iov(struct iovec iov[4])
{
	iov[0] = (struct iovec){ .iov_base = seg0, .iov_len = 3 };
	iov[1] = (struct iovec){ .iov_base = NULL, .iov_len = 0 };
	iov[2] = (struct iovec){ .iov_base = seg2, .iov_len = 5 };
	iov[3] = (struct iovec){ .iov_base = seg3, .iov_len = 2 };
}

static void test_total_length(void **state)
{
	struct iovec iov[4];

	(void)state;
	make_iov(iov);
	assert_int_equal(iov_total_length(iov, 4), 10);
	assert_int_equal(iov_total_length(iov, 2), 3);
	assert_int_equal(iov_total_length(iov, 0), 0);
}

static void test_copy_out_every_window(void **state)
{
	struct iovec iov[4];

	(void)state;
	make_iov(iov);
	for (size_t offset = 0; offset <= 10; offset++) {
		for (size_t length = 0; length <= 12; length++) {
			char out[16];
			size_t expect = offset + length <= 10 ? length : 10 - offset;

			memset(out, '#', sizeof(out));
			assert_int_equal(iov_copy_out(iov, 4, offset, out, length),
					 expect);
			assert_memory_equal(out, all_bytes + offset, expect);
			/* Nothing written past what was copied. */
			assert_int_equal(out[expect], '#');
		}
	}
}

static void test_copy_out_bounds(void **state)
{
	struct iovec iov[4];
	char out[4] = "###";

	(void)state;
	make_iov(iov);
	assert_int_equal(iov_copy_out(iov, 4, 11, out, 3), 0);
	assert_int_equal(iov_copy_out(iov, 4, 1000, out, 3), 0);
	assert_int_equal(iov_copy_out(iov, 0, 0, out, 3), 0);
	/* Only count segments are looked at. */
	assert_int_equal(iov_copy_out(iov, 1, 1, out, 3), 2);
	assert_memory_equal(out, "bc#", 3);
}

static void test_copy_in(void **state)
{
	for (size_t offset = 0; offset <= 10; offset++) {
		char a[4], c[6], d[3];
		struct iovec iov[4] = {
			{ .iov_base = a, .iov_len = 3 },
			{ .iov_base = NULL, .iov_len = 0 },
			{ .iov_base = c, .iov_len = 5 },
			{ .iov_base = d, .iov_len = 2 },
		};
		char gathered[10];
		size_t expect = 10 - offset < 4 ? 10 - offset : 4;

		(void)state;
		memset(a, '.', 3);
		memset(c, '.', 5);
		memset(d, '.', 2);
		assert_int_equal(iov_copy_in(iov, 4, offset, "WXYZ", 4), expect);

		/* Exactly [offset, offset + expect) changed. */
		memcpy(gathered, a, 3);
		memcpy(gathered + 3, c, 5);
		memcpy(gathered + 8, d, 2);
		for (size_t i = 0; i < 10; i++) {
			char want = (i >= offset && i < offset + expect) ?
					    "WXYZ"[i - offset] : '.';
			assert_int_equal(gathered[i], want);
		}
	}
}

static void test_slice(void **state)
{
	struct iovec iov[4], out[4];

	(void)state;
	make_iov(iov);

	/* Bytes [2, 9): "c" | "defgh" | "i", the empty segment skipped. */
	assert_int_equal(iov_slice(iov, 4, 2, 7, out, 4), 3);
	assert_ptr_equal(out[0].iov_base, seg0 + 2);
	assert_int_equal(out[0].iov_len, 1);
	assert_ptr_equal(out[1].iov_base, seg2);
	assert_int_equal(out[1].iov_len, 5);
	assert_ptr_equal(out[2].iov_base, seg3);
	assert_int_equal(out[2].iov_len, 1);

	/* Inside one segment. */
	assert_int_equal(iov_slice(iov, 4, 4, 2, out, 4), 1);
	assert_ptr_equal(out[0].iov_base, seg2 + 1);
	assert_int_equal(out[0].iov_len, 2);

	/* Longer than the data: clipped to the end. */
	assert_int_equal(iov_slice(iov, 4, 8, 100, out, 4), 1);
	assert_ptr_equal(out[0].iov_base, seg3);
	assert_int_equal(out[0].iov_len, 2);

	/* Stops when out is full. */
	assert_int_equal(iov_slice(iov, 4, 0, 10, out, 2), 2);
	assert_int_equal(out[0].iov_len, 3);
	assert_int_equal(out[1].iov_len, 5);

	/* Empty windows. */
	assert_int_equal(iov_slice(iov, 4, 3, 0, out, 4), 0);
	assert_int_equal(iov_slice(iov, 4, 10, 5, out, 4), 0);
	assert_int_equal(iov_slice(iov, 4, 0, 5, out, 0), 0);
}

static void test_slice_matches_copy(void **state)
{
	struct iovec iov[4], out[4];

	(void)state;
	make_iov(iov);
	for (size_t offset = 0; offset <= 10; offset++) {
		for (size_t length = 0; length + offset <= 10; length++) {
			size_t used = iov_slice(iov, 4, offset, length, out, 4);
			char flat[16];

			assert_int_equal(iov_total_length(out, used), length);
			assert_int_equal(iov_copy_out(out, used, 0, flat, length),
					 length);
			assert_memory_equal(flat, all_bytes + offset, length);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_total_length),
		cmocka_unit_test(test_copy_out_every_window),
		cmocka_unit_test(test_copy_out_bounds),
		cmocka_unit_test(test_copy_in),
		cmocka_unit_test(test_slice),
		cmocka_unit_test(test_slice_matches_copy),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
