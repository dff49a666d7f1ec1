/*
 * test_tx_ring.c - unit tests for daemon/tx_ring.c: lazy storage, gather
 * from iovecs at an offset, wrap-around (vhost-device-vsock #838), short
 * writes, errors, and randomized fill/drain cycles checked byte by byte.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "tx_ring.h"

/* Byte n of the test stream: not periodic in any small power of two. */
static uint8_t stream_byte(uint64_t n)
{
	return (uint8_t)((n * 131u + (n >> 8) * 7u + 17u) & 0xffu);
}

static void fill_stream(uint8_t *dest, uint64_t start, size_t length)
{
	for (size_t i = 0; i < length; i++)
		dest[i] = stream_byte(start + i);
}

static void assert_stream(const uint8_t *data, uint64_t start, size_t length)
{
	for (size_t i = 0; i < length; i++) {
		if (data[i] != stream_byte(start + i))
			fail_msg("stream byte %llu: got 0x%02x, want 0x%02x",
				 (unsigned long long)(start + i), data[i],
				 stream_byte(start + i));
	}
}

static int append_stream(struct tx_ring *ring, uint64_t start, size_t length)
{
	uint8_t *buffer = malloc(length ? length : 1);
	struct iovec iov = { .iov_base = buffer, .iov_len = length };
	int result;

	assert_non_null(buffer);
	fill_stream(buffer, start, length);
	result = tx_ring_append_iov(ring, &iov, 1, 0, length);
	free(buffer);
	return result;
}

/* Read everything currently readable from fd; check it; return count. */
static size_t drain_and_check(int fd, uint64_t *read_position)
{
	uint8_t buffer[8192];
	size_t total = 0;

	for (;;) {
		ssize_t got = read(fd, buffer, sizeof(buffer));

		if (got < 0) {
			assert_int_equal(errno, EAGAIN);
			break;
		}
		assert_true(got > 0);
		assert_stream(buffer, *read_position, (size_t)got);
		*read_position += (uint64_t)got;
		total += (size_t)got;
	}
	return total;
}

static void make_pipe(int fds[2], int pipe_size)
{
	assert_int_equal(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
	if (pipe_size > 0)
		assert_true(fcntl(fds[1], F_SETPIPE_SZ, pipe_size) >= pipe_size);
}

static void test_init_and_empty_flush(void **state)
{
	struct tx_ring ring;
	int fds[2];

	(void)state;
	make_pipe(fds, 0);
	tx_ring_init(&ring, 4096);
	assert_null(ring.storage);
	assert_int_equal(tx_ring_used(&ring), 0);
	assert_int_equal(tx_ring_free(&ring), 4096);
	assert_int_equal(tx_ring_flush(&ring, fds[1]), 0);
	/* Zero-length append allocates nothing. */
	assert_int_equal(append_stream(&ring, 0, 0), 0);
	assert_null(ring.storage);
	close(fds[0]);
	close(fds[1]);
}

static void test_gather_at_offset(void **state)
{
	/* Three segments (one empty); take 9 bytes starting 5 bytes in. */
	char first[] = "abcd", third[] = "ijklmnop";
	char second[] = "efgh";
	struct iovec iov[4] = {
		{ .iov_base = first, .iov_len = 4 },
		{ .iov_base = NULL, .iov_len = 0 },
		{ .iov_base = second, .iov_len = 4 },
		{ .iov_base = third, .iov_len = 8 },
	};
	struct tx_ring ring;
	char out[32];
	int fds[2];

	(void)state;
	make_pipe(fds, 0);
	tx_ring_init(&ring, 16);
	assert_int_equal(tx_ring_append_iov(&ring, iov, 4, 5, 9), 0);
	assert_non_null(ring.storage);
	assert_int_equal(tx_ring_used(&ring), 9);
	assert_int_equal(tx_ring_flush(&ring, fds[1]), 9);
	assert_int_equal(read(fds[0], out, sizeof(out)), 9);
	assert_memory_equal(out, "fghijklmn", 9);
	assert_null(ring.storage);

	/* The source must hold offset + length bytes: nothing appended. */
	assert_int_equal(tx_ring_append_iov(&ring, iov, 4, 10, 7), -EINVAL);
	assert_int_equal(tx_ring_append_iov(&ring, iov, 4, 17, 1), -EINVAL);
	assert_int_equal(tx_ring_used(&ring), 0);
	assert_null(ring.storage);
	close(fds[0]);
	close(fds[1]);
}

static void test_enospc_leaves_ring_unchanged(void **state)
{
	struct tx_ring ring;
	uint8_t *storage_before;
	uint64_t read_position = 0;
	int fds[2];

	(void)state;
	make_pipe(fds, 0);
	tx_ring_init(&ring, 100);

	/* Too big for an empty ring: no storage allocated. */
	assert_int_equal(append_stream(&ring, 0, 101), -ENOSPC);
	assert_null(ring.storage);

	assert_int_equal(append_stream(&ring, 0, 60), 0);
	storage_before = ring.storage;
	assert_int_equal(append_stream(&ring, 60, 41), -ENOSPC);
	assert_ptr_equal(ring.storage, storage_before);
	assert_int_equal(tx_ring_used(&ring), 60);
	assert_int_equal(ring.head, 0);
	assert_int_equal(tx_ring_free(&ring), 40);

	/* Exactly full is fine; one more byte is not. */
	assert_int_equal(append_stream(&ring, 60, 40), 0);
	assert_int_equal(tx_ring_free(&ring), 0);
	assert_int_equal(append_stream(&ring, 100, 1), -ENOSPC);

	assert_int_equal(tx_ring_flush(&ring, fds[1]), 100);
	assert_int_equal(drain_and_check(fds[0], &read_position), 100);
	assert_null(ring.storage);
	close(fds[0]);
	close(fds[1]);
}

/*
 * Push the head forward with a short write into a one-page pipe, then
 * fill the ring so the data wraps past the end of storage, then flush both
 * halves with one call into a roomy pipe and compare every byte.
 */
static void test_wrap_around(void **state)
{
	const uint32_t capacity = 8192;
	uint64_t write_position = 0, read_position = 0;
	struct tx_ring ring;
	ssize_t written;
	uint32_t wrapped_used;
	int fds[2];

	(void)state;
	make_pipe(fds, 4096);
	tx_ring_init(&ring, capacity);

	assert_int_equal(append_stream(&ring, write_position, 6000), 0);
	write_position += 6000;
	written = tx_ring_flush(&ring, fds[1]);
	/* Short write: the pipe holds only one page. */
	assert_true(written > 0 && written < 6000);
	assert_int_equal(ring.head, written);
	assert_int_equal(tx_ring_used(&ring), 6000 - written);

	/* Fill to the brim: the tail runs past the end and wraps. */
	assert_int_equal(append_stream(&ring, write_position, tx_ring_free(&ring)),
			 0);
	write_position += capacity - (6000 - (uint64_t)written);
	assert_int_equal(tx_ring_used(&ring), capacity);
	assert_true((uint64_t)ring.head + ring.used > capacity);
	/* The wrapped part sits at the start of storage. */
	assert_int_equal(ring.storage[0], stream_byte(6000 + (capacity - 6000)));

	/* Nothing fits in the full pipe yet. */
	assert_int_equal(tx_ring_flush(&ring, fds[1]), -EAGAIN);
	assert_int_equal(drain_and_check(fds[0], &read_position),
			 (size_t)written);

	/* Room for everything: one flush writes both halves. */
	assert_true(fcntl(fds[1], F_SETPIPE_SZ, 65536) >= 65536);
	wrapped_used = tx_ring_used(&ring);
	assert_int_equal(tx_ring_flush(&ring, fds[1]), wrapped_used);
	assert_int_equal(tx_ring_used(&ring), 0);
	assert_null(ring.storage);
	assert_int_equal(drain_and_check(fds[0], &read_position), wrapped_used);
	assert_int_equal(read_position, write_position);
	close(fds[0]);
	close(fds[1]);
}

/* A full non-blocking stream socket: short writes, then EAGAIN. */
static void test_short_writes_socketpair(void **state)
{
	const uint32_t capacity = 256 * 1024;
	uint64_t read_position = 0;
	size_t flushed = 0;
	int send_buffer = 4096;
	struct tx_ring ring;
	ssize_t result;
	int fds[2];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds),
			 0);
	assert_int_equal(setsockopt(fds[1], SOL_SOCKET, SO_SNDBUF, &send_buffer,
				    sizeof(send_buffer)), 0);
	tx_ring_init(&ring, capacity);
	assert_int_equal(append_stream(&ring, 0, capacity), 0);

	while ((result = tx_ring_flush(&ring, fds[1])) > 0)
		flushed += (size_t)result;
	assert_int_equal(result, -EAGAIN);
	assert_true(flushed > 0 && flushed < capacity);
	assert_int_equal(tx_ring_used(&ring), capacity - flushed);
	assert_int_equal(ring.head, flushed);
	assert_non_null(ring.storage);

	/* Alternate reading and flushing until everything went through. */
	while (tx_ring_used(&ring) > 0) {
		drain_and_check(fds[0], &read_position);
		result = tx_ring_flush(&ring, fds[1]);
		assert_true(result > 0 || result == -EAGAIN);
	}
	drain_and_check(fds[0], &read_position);
	assert_int_equal(read_position, capacity);
	assert_null(ring.storage);
	close(fds[0]);
	close(fds[1]);
}

static void test_epipe_keeps_data(void **state)
{
	struct tx_ring ring;
	int fds[2];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds),
			 0);
	close(fds[0]);
	tx_ring_init(&ring, 64);
	assert_int_equal(append_stream(&ring, 0, 10), 0);
	assert_int_equal(tx_ring_flush(&ring, fds[1]), -EPIPE);
	assert_int_equal(tx_ring_used(&ring), 10);
	assert_non_null(ring.storage);
	assert_int_equal(tx_ring_flush(&ring, -1), -EBADF);
	tx_ring_clear(&ring);
	assert_null(ring.storage);
	assert_int_equal(tx_ring_used(&ring), 0);
	assert_int_equal(ring.head, 0);
	close(fds[1]);
}

static uint64_t prng_state;

static uint32_t prng_next(void)
{
	/* xorshift64: deterministic, good enough for sizes. */
	prng_state ^= prng_state << 13;
	prng_state ^= prng_state >> 7;
	prng_state ^= prng_state << 17;
	return (uint32_t)(prng_state >> 32);
}

/*
 * Random appends (gathered from several segments at a random offset),
 * random partial reads and flushes through a one-page pipe. Every byte
 * read must be the next byte of the stream.
 */
static void test_random_cycles(void **state)
{
	const uint32_t capacity = 10007; /* prime: wraps at odd places */
	uint64_t write_position = 0, read_position = 0;
	uint8_t source[3 * 4096], sink[8192];
	unsigned wraps = 0, frees = 0;
	struct tx_ring ring;
	int fds[2];

	(void)state;
	prng_state = 0x9e3779b97f4a7c15ull;
	make_pipe(fds, 4096);
	tx_ring_init(&ring, capacity);

	for (int round = 0; round < 20000; round++) {
		uint32_t action = prng_next() % 3;

		if (action == 0) {
			/* Append: prefix junk, then stream bytes over 3 segments. */
			size_t prefix = prng_next() % 64;
			size_t length = prng_next() % (sizeof(source) - prefix);
			size_t cut1 = prng_next() % (prefix + length + 1);
			size_t cut2 = cut1 + prng_next() % (prefix + length - cut1 + 1);
			struct iovec iov[3] = {
				{ .iov_base = source, .iov_len = cut1 },
				{ .iov_base = source + cut1, .iov_len = cut2 - cut1 },
				{ .iov_base = source + cut2,
				  .iov_len = prefix + length - cut2 },
			};
			uint32_t used_before = tx_ring_used(&ring);
			int result;

			memset(source, 0xee, prefix);
			fill_stream(source + prefix, write_position, length);
			result = tx_ring_append_iov(&ring, iov, 3, prefix, length);
			if (length > capacity - used_before) {
				assert_int_equal(result, -ENOSPC);
				assert_int_equal(tx_ring_used(&ring), used_before);
			} else {
				assert_int_equal(result, 0);
				assert_int_equal(tx_ring_used(&ring),
						 used_before + length);
				write_position += length;
				if ((uint64_t)ring.head + ring.used > capacity)
					wraps++;
			}
		} else if (action == 1) {
			ssize_t result = tx_ring_flush(&ring, fds[1]);

			assert_true(result >= 0 || result == -EAGAIN);
			if (tx_ring_used(&ring) == 0) {
				assert_null(ring.storage);
				if (result > 0)
					frees++;
			}
		} else {
			size_t want = 1 + prng_next() % sizeof(sink);
			ssize_t got = read(fds[0], sink, want);

			if (got < 0) {
				assert_int_equal(errno, EAGAIN);
				continue;
			}
			assert_stream(sink, read_position, (size_t)got);
			read_position += (uint64_t)got;
		}
	}

	/* Drain what is left. */
	while (tx_ring_used(&ring) > 0) {
		ssize_t result = tx_ring_flush(&ring, fds[1]);

		assert_true(result > 0 || result == -EAGAIN);
		drain_and_check(fds[0], &read_position);
	}
	drain_and_check(fds[0], &read_position);
	assert_int_equal(read_position, write_position);
	assert_null(ring.storage);
	/* The run must actually have exercised wrap and free. */
	assert_true(wraps > 10);
	assert_true(frees > 10);
	close(fds[0]);
	close(fds[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init_and_empty_flush),
		cmocka_unit_test(test_gather_at_offset),
		cmocka_unit_test(test_enospc_leaves_ring_unchanged),
		cmocka_unit_test(test_wrap_around),
		cmocka_unit_test(test_short_writes_socketpair),
		cmocka_unit_test(test_epipe_keeps_data),
		cmocka_unit_test(test_random_cycles),
	};

	/* As in the daemon: a closed peer must give EPIPE, not a signal. */
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
