/*
 * test_deadline.c - unit tests for daemon/deadline.c: per-kind FIFO
 * ordering, cancel and re-arm, popping only what is due, timerfd
 * programming, and a real timerfd expiry observed with poll().
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cmocka.h>

#include "deadline.h"
#include "vsockmux/log.h"

#define MS 1000000ull
#define FAR_FUTURE UINT64_MAX

enum { KIND_SLOW = 0, KIND_FAST = 1 };

static int setup_queue(void **state)
{
	static struct deadline_queue queue;

	if (deadline_queue_init(&queue) != 0)
		return -1;
	deadline_set_timeout(&queue, KIND_SLOW, 10000 * MS);
	deadline_set_timeout(&queue, KIND_FAST, 5000 * MS);
	*state = &queue;
	return 0;
}

static int teardown_queue(void **state)
{
	struct deadline_queue *queue = *state;
	int leftover = 0;

	/* Tests must leave no entry armed: entries live on the test's stack,
	 * so drop any leftover list rather than let destroy touch it. */
	for (unsigned kind = 0; kind < DEADLINE_MAX_KINDS; kind++) {
		if (queue->head[kind] != NULL)
			leftover = 1;
		queue->head[kind] = NULL;
		queue->tail[kind] = NULL;
	}
	deadline_queue_destroy(queue);
	return leftover ? -1 : 0;
}

/* The timerfd's absolute expiry in ns (0 when disarmed). */
static uint64_t timer_remaining_ns(const struct deadline_queue *queue)
{
	struct itimerspec spec;

	assert_int_equal(timerfd_gettime(queue->timer_fd, &spec), 0);
	return (uint64_t)spec.it_value.tv_sec * 1000000000ull +
	       (uint64_t)spec.it_value.tv_nsec;
}

static void test_init_state(void **state)
{
	struct deadline_queue *queue = *state;

	assert_true(queue->timer_fd >= 0);
	assert_true(fcntl(queue->timer_fd, F_GETFL) & O_NONBLOCK);
	assert_true(fcntl(queue->timer_fd, F_GETFD) & FD_CLOEXEC);
	assert_int_equal(queue->programmed_ns, 0);
	assert_null(deadline_pop_expired(queue, FAR_FUTURE));
	assert_int_equal(timer_remaining_ns(queue), 0);
}

static void test_order_across_kinds(void **state)
{
	struct deadline_queue *queue = *state;
	struct deadline_entry slow_a = { 0 }, fast_b = { 0 }, slow_c = { 0 };
	uint64_t before = monotonic_ns();

	deadline_arm(queue, &slow_a, KIND_SLOW);
	deadline_arm(queue, &fast_b, KIND_FAST);
	deadline_arm(queue, &slow_c, KIND_SLOW);
	assert_true(slow_a.armed && fast_b.armed && slow_c.armed);
	assert_true(slow_a.expires_ns >= before + 10000 * MS);
	assert_true(slow_c.expires_ns >= slow_a.expires_ns);
	/* The fast kind expires first although it was armed second. */
	assert_int_equal(queue->programmed_ns, fast_b.expires_ns);

	/* Nothing is due yet. */
	assert_null(deadline_pop_expired(queue, monotonic_ns()));
	assert_null(deadline_pop_expired(queue, fast_b.expires_ns - 1));

	/* Exactly at its expiry the fast entry is due; the slow ones not. */
	assert_ptr_equal(deadline_pop_expired(queue, fast_b.expires_ns), &fast_b);
	assert_false(fast_b.armed);
	assert_null(deadline_pop_expired(queue, fast_b.expires_ns));

	deadline_reprogram(queue);
	assert_int_equal(queue->programmed_ns, slow_a.expires_ns);

	assert_ptr_equal(deadline_pop_expired(queue, FAR_FUTURE), &slow_a);
	assert_ptr_equal(deadline_pop_expired(queue, FAR_FUTURE), &slow_c);
	assert_null(deadline_pop_expired(queue, FAR_FUTURE));
	assert_false(slow_a.armed || slow_c.armed);

	deadline_reprogram(queue);
	assert_int_equal(queue->programmed_ns, 0);
	assert_int_equal(timer_remaining_ns(queue), 0);
}

static void test_cancel_from_middle(void **state)
{
	struct deadline_queue *queue = *state;
	struct deadline_entry entries[5] = { 0 };

	for (int i = 0; i < 5; i++)
		deadline_arm(queue, &entries[i], KIND_SLOW);
	deadline_cancel(queue, &entries[2]);
	assert_false(entries[2].armed);
	deadline_cancel(queue, &entries[2]); /* twice is harmless */
	deadline_cancel(queue, &entries[4]); /* the tail */
	deadline_cancel(queue, &entries[0]); /* the head */

	assert_ptr_equal(deadline_pop_expired(queue, FAR_FUTURE), &entries[1]);
	assert_ptr_equal(deadline_pop_expired(queue, FAR_FUTURE), &entries[3]);
	assert_null(deadline_pop_expired(queue, FAR_FUTURE));
	assert_null(queue->head[KIND_SLOW]);
	assert_null(queue->tail[KIND_SLOW]);

	/* The emptied list still takes new entries. */
	deadline_arm(queue, &entries[0], KIND_SLOW);
	assert_ptr_equal(queue->head[KIND_SLOW], &entries[0]);
	assert_ptr_equal(queue->tail[KIND_SLOW], &entries[0]);
	deadline_cancel(queue, &entries[0]);
	deadline_reprogram(queue);
	assert_int_equal(queue->programmed_ns, 0);
	assert_int_equal(timer_remaining_ns(queue), 0);
}

static void test_rearm_moves_to_tail(void **state)
{
	struct deadline_queue *queue = *state;
	struct deadline_entry a = { 0 }, b = { 0 }, c = { 0 };
	uint64_t first_expiry;

	deadline_arm(queue, &a, KIND_FAST);
	deadline_arm(queue, &b, KIND_FAST);
	deadline_arm(queue, &c, KIND_FAST);
	first_expiry = a.expires_ns;
	deadline_arm(queue, &a, KIND_FAST);
	assert_true(a.expires_ns >= first_expiry);
	assert_ptr_equal(queue->tail[KIND_FAST], &a);

	/* Re-arming into another kind moves it to that list. */
	deadline_arm(queue, &b, KIND_SLOW);
	assert_int_equal(b.kind, KIND_SLOW);
	assert_ptr_equal(queue->head[KIND_SLOW], &b);

	assert_ptr_equal(deadline_pop_expired(queue, FAR_FUTURE), &c);
	assert_ptr_equal(deadline_pop_expired(queue, FAR_FUTURE), &a);
	assert_ptr_equal(deadline_pop_expired(queue, FAR_FUTURE), &b);
	assert_null(deadline_pop_expired(queue, FAR_FUTURE));
}

static void test_reprogram_sets_timerfd(void **state)
{
	struct deadline_queue *queue = *state;
	struct deadline_entry entry = { 0 };
	uint64_t remaining;

	deadline_arm(queue, &entry, KIND_FAST);
	assert_int_equal(queue->programmed_ns, entry.expires_ns);
	/* The timerfd itself is set, about 5 s ahead. */
	remaining = timer_remaining_ns(queue);
	assert_true(remaining > 4000 * MS && remaining <= 5000 * MS);

	deadline_cancel(queue, &entry);
	deadline_reprogram(queue);
	assert_int_equal(queue->programmed_ns, 0);
	assert_int_equal(timer_remaining_ns(queue), 0);
}

/* A real expiry: the timerfd becomes readable, then pop returns the entry. */
static void test_timer_fires(void **state)
{
	struct deadline_queue *queue = *state;
	struct deadline_entry entry = { 0 }, later = { 0 };
	struct pollfd pollfd = { .fd = queue->timer_fd, .events = POLLIN };
	const unsigned kind_quick = 2;
	uint64_t expirations;

	deadline_set_timeout(queue, kind_quick, 20 * MS);
	deadline_arm(queue, &entry, kind_quick);
	deadline_arm(queue, &later, KIND_SLOW);
	assert_null(deadline_pop_expired(queue, monotonic_ns()));

	assert_int_equal(poll(&pollfd, 1, 2000), 1);
	assert_true(pollfd.revents & POLLIN);
	assert_true(monotonic_ns() >= entry.expires_ns);
	deadline_acknowledge(queue);
	/* Acknowledged: the fd is no longer readable. */
	assert_int_equal(read(queue->timer_fd, &expirations, sizeof(expirations)),
			 -1);
	assert_int_equal(errno, EAGAIN);

	assert_ptr_equal(deadline_pop_expired(queue, monotonic_ns()), &entry);
	assert_null(deadline_pop_expired(queue, monotonic_ns()));
	deadline_reprogram(queue);
	assert_int_equal(queue->programmed_ns, later.expires_ns);
	assert_int_equal(poll(&pollfd, 1, 0), 0);

	/* Acknowledging with nothing pending must not block or fail. */
	deadline_acknowledge(queue);
	deadline_cancel(queue, &later);
}

static void test_destroy_disarms_entries(void **state)
{
	struct deadline_queue queue;
	struct deadline_entry entry = { 0 };
	int timer_fd;

	(void)state;
	assert_int_equal(deadline_queue_init(&queue), 0);
	deadline_set_timeout(&queue, 0, 1000 * MS);
	deadline_arm(&queue, &entry, 0);
	timer_fd = queue.timer_fd;
	deadline_queue_destroy(&queue);
	assert_false(entry.armed);
	assert_int_equal(queue.timer_fd, -1);
	assert_int_equal(fcntl(timer_fd, F_GETFD), -1);
	assert_int_equal(errno, EBADF);
}

/* Every case below runs between setup_queue and teardown_queue. */
#define WITH_FIXTURE(test) cmocka_unit_test_setup_teardown(test, setup_queue, teardown_queue)

int main(void)
{
	const struct CMUnitTest tests[] = {
		WITH_FIXTURE(test_init_state),
		WITH_FIXTURE(test_order_across_kinds),
		WITH_FIXTURE(test_cancel_from_middle),
		WITH_FIXTURE(test_rearm_moves_to_tail),
		WITH_FIXTURE(test_reprogram_sets_timerfd),
		WITH_FIXTURE(test_timer_fires),
		cmocka_unit_test(test_destroy_disarms_entries),
	};

	log_set_role("test");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
