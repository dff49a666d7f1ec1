/*
 * test_system_idle.c - test_system's idle scenarios: the daemon must not
 * burn CPU while it waits for guest credit, RX buffers, a host that does
 * not read, or a handshake that never finishes.
 *
 * Owns: these scenarios; the three that measure the daemon's CPU run
 * ALONE (test_system.def). Never: depends on another scenario's state.
 */
#include <inttypes.h>
#include <stdio.h>

#include "test_system.h"

/* No credit left (guest not reading): the daemon waits without spinning. */
void test_idle_without_credit(struct sys_harness *h)
{
	const uint64_t down = 2 * MIB;
	struct vguest_sock *g;
	struct host_conn *c;
	struct guest_stream *gs;

	sys_setup(h);
	sys_check_daemon_idle(h, 300, 60, "idle with a fresh frontend");
	(void)sys_open_to_guest(h, 52, &c, &g);
	host_source(c, 31, down, SYS_AFTER_NOTHING);
	WAIT_FOR(h, 5000, vguest_rx_pending(g) == DEFAULT_BUF_ALLOC);
	sys_check_daemon_idle(h, 500, 100, "the guest has no credit left");
	gs = guest_stream_add(h, g);
	guest_stream_sink(gs, 31, down);
	WAIT_FOR(h, 10000, gs->sink.received == down);
	sys_stream_close(h, gs, g, c);
}

/* No RX buffers: the daemon waits for the next RX kick without spinning. */
void test_idle_without_rx_buffers(struct sys_harness *h)
{
	const uint64_t down = 2 * MIB;
	struct vguest_options o;
	struct vguest_sock *g;
	struct host_conn *c;
	struct guest_stream *gs;

	vguest_options_default(&o);
	o.queue_size = 16;
	sys_start_daemon(h, NULL);
	(void)sys_guest_new(h, &o);
	(void)sys_open_to_guest(h, 52, &c, &g);
	vguest_set_rx_refill(h->vg, false);
	gs = guest_stream_add(h, g);
	guest_stream_sink(gs, 32, down);
	host_source(c, 32, down, SYS_AFTER_NOTHING);
	WAIT_FOR(h, 5000, vguest_rx_buffers_posted(h->vg) == 0);
	sys_check_daemon_idle(h, 500, 100, "the guest posts no RX buffers");
	CHECK(gs->sink.received < down);
	vguest_set_rx_refill(h->vg, true);
	WAIT_FOR(h, 10000, gs->sink.received == down);
	sys_stream_close(h, gs, g, c);
}

/* The host does not read: once credit is used up, nothing spins. */
void test_idle_host_not_reading(struct sys_harness *h)
{
	const uint64_t up = 4 * MIB;
	struct vguest_sock *g;
	struct host_conn *c;
	struct guest_stream *gs;

	sys_setup(h);
	gs = sys_stream_to_deaf_host(h, 1234, 33, up, SYS_AFTER_NOTHING, &c, &g);
	WAIT_FOR(h, 5000, vguest_sock_credit(g) == 0 && gs->source.done > 0);
	sys_check_daemon_idle(h, 500, 100, "the host does not read");
	/* what the daemon took is bounded by its credit plus what the host
	 * socket's buffer absorbed */
	CHECKF(gs->source.done <= DEFAULT_BUF_ALLOC + 1 * MIB && gs->source.done < up,
	       "guest could send %" PRIu64 " bytes to a host that does not read",
	       gs->source.done);
	CHECK(vguest_sock_credit(g) == 0);
	printf("host not reading: guest stalled after %" PRIu64 " KiB\n",
	       gs->source.done / KIB);
	host_sink(c, 33, up);
	host_set_paused(c, false);
	WAIT_FOR(h, 10000, c->sink.received == up);
	sys_stream_close(h, gs, g, c);
}

/* A host client that never completes its CONNECT line is timed out. */
void test_idle_handshake_timeout(struct sys_harness *h)
{
	struct host_conn *partial, *silent;
	uint64_t start;

	sys_setup(h);
	start = sys_now_ns();
	partial = host_connect(h);
	host_write_str(partial, "CONN");
	silent = host_connect(h);
	WAIT_FOR(h, 15000, host_peer_closed(partial) && host_peer_closed(silent));
	printf("idle handshakes closed after %.1f s\n",
	       (double)(sys_now_ns() - start) / 1e9);
	CHECK(host_in_len(partial) == 0 && host_in_len(silent) == 0);
	CHECK(vguest_count_packets(h->vg, false, VSOCK_OP_REQUEST, VGUEST_ANY_PORT,
				   VGUEST_ANY_PORT) == 0);
}
