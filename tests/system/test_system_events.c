/*
 * test_system_events.c - test_system's event queue scenarios: frontends
 * that hand queue 2 to the backend (crosvm, cloud-hypervisor) get a
 * transport reset on every attach, so a guest drops connections whose
 * backend went away; frontends that keep it (QEMU) get none, and both
 * shapes carry data.
 *
 * Owns: these scenarios. Never: depends on another scenario's state.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "test_system.h"

/* A new guest; event_queue: it hands queue 2 over too. */
static struct vguest *guest_with_queues(struct sys_harness *h, bool event_queue)
{
	struct vguest_options options;

	vguest_options_default(&options);
	options.event_queue = event_queue;
	return sys_guest_new(h, &options);
}

/* Drive guest and daemon until vg has seen count transport resets. The
 * harness does not poll the event queue's call fd, so it is looked at
 * between short rounds of the loop; the wait is bounded. */
static void wait_transport_resets(struct sys_harness *h, struct vguest *vg,
				  unsigned count)
{
	uint64_t end = sys_wait_end(h, 3000);
	while (vguest_transport_resets(vg) < count) {
		CHECKF(sys_now_ns() < end, "%u transport resets after 3 s, expected %u",
		       vguest_transport_resets(vg), count);
		sys_pump(h, 5);
	}
}

/* A host-initiated connection on vg carries bytes both ways. */
static void data_flows(struct sys_harness *h, struct vguest *vg, uint32_t port)
{
	struct vguest_sock *listener = vguest_listen(vg, port), *g;
	struct host_conn *c;
	char buffer[8];

	sys_open_host_initiated(h, vg, listener, port, &c, &g);
	host_write_str(c, "up");
	sys_guest_read_exact(h, g, buffer, 2, 3000);
	CHECK(memcmp(buffer, "up", 2) == 0);
	sys_guest_write_all(h, g, "down", 4, 3000);
	sys_host_expect(h, c, "down", 4, 3000);
	sys_close_from_guest(h, g, c);
}

static uint64_t transport_resets_counted(struct sys_harness *h)
{
	Vsockmux__Control__Response *response = sys_query_stats(h, false);
	uint64_t count = response->stats->transport_resets;
	sys_stats_free(response);
	return count;
}

/* Three queues: one reset per attach, data flows, a second frontend gets
 * its own reset. */
void test_event_queue_transport_reset(struct sys_harness *h)
{
	struct vguest *vg;

	sys_start_daemon(h, NULL);
	vg = guest_with_queues(h, true);
	wait_transport_resets(h, vg, 1);
	data_flows(h, vg, 52);
	sys_pump_for(h, 50);
	CHECKF(vguest_transport_resets(vg) == 1, "%u resets for one attach",
	       vguest_transport_resets(vg));
	sys_guest_drop(h, vg);
	vg = guest_with_queues(h, true);
	wait_transport_resets(h, vg, 1);
	data_flows(h, vg, 53);
	CHECK(transport_resets_counted(h) == 2);
	sys_check_guest_clean(vg);
}

/* Two queues (QEMU keeps the event queue): no event, data as before. */
void test_event_queue_kept_by_frontend(struct sys_harness *h)
{
	struct vguest *vg;

	sys_start_daemon(h, NULL);
	vg = guest_with_queues(h, false);
	data_flows(h, vg, 52);
	CHECK(transport_resets_counted(h) == 0);
	sys_check_guest_clean(vg);
}
