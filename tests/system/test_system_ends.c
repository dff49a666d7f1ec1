/*
 * test_system_ends.c - test_system's scenarios of how things end: the VMM
 * disconnects, SIGTERM under load, one of the daemon's two processes
 * killed.
 *
 * Owns: these scenarios. Never: leaves a daemon process behind (the
 * harness checks every process is gone).
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "test_system.h"

/* VMM disconnect closes every host socket; a new frontend is served. */
void test_vmm_disconnect(struct sys_harness *h)
{
	struct vguest_sock *listener, *g[4];
	struct host_conn *c[4], *c2;
	struct host_listener *host_l;
	struct vguest *vg2;
	struct vguest_sock *l2, *g2;
	char buffer[8];

	sys_setup(h);
	listener = vguest_listen(h->vg, 52);
	host_l = host_listen(h, 1234);
	sys_open_host_initiated(h, h->vg, listener, 52, &c[0], &g[0]);
	sys_open_host_initiated(h, h->vg, listener, 52, &c[1], &g[1]);
	sys_open_guest_initiated(h, h->vg, host_l, &c[2], &g[2]);
	sys_open_guest_initiated(h, h->vg, host_l, &c[3], &g[3]);
	/* traffic in flight */
	for (int i = 0; i < 4; i++) {
		struct guest_stream *gs = guest_stream_add(h, g[i]);
		guest_stream_source(gs, 100 + (uint32_t)i, 4 * MIB, SYS_AFTER_NOTHING);
		host_sink(c[i], 100 + (uint32_t)i, 4 * MIB);
		host_source(c[i], 200 + (uint32_t)i, 4 * MIB, SYS_AFTER_NOTHING);
	}
	sys_pump_for(h, 100);
	sys_guest_drop(h, h->vg);
	WAIT_FOR(h, 3000, host_peer_closed(c[0]) && host_peer_closed(c[1]) &&
			  host_peer_closed(c[2]) && host_peer_closed(c[3]));
	CHECK(sys_daemon_alive(h));

	vg2 = sys_guest_new(h, NULL);
	l2 = vguest_listen(vg2, 52);
	sys_open_host_initiated(h, vg2, l2, 52, &c2, &g2);
	host_write_str(c2, "again");
	sys_guest_read_exact(h, g2, buffer, 5, 3000);
	CHECK(memcmp(buffer, "again", 5) == 0);
	sys_close_from_guest(h, g2, c2);
	{
		struct host_conn *c3;
		struct vguest_sock *g3;
		sys_open_guest_initiated(h, vg2, host_l, &c3, &g3);
		sys_close_from_guest(h, g3, c3);
	}
}

/* SIGTERM while connections carry data: clean exit of both processes,
 * every host socket closed. */
void test_sigterm_under_load(struct sys_harness *h)
{
	struct vguest_sock *listener, *g;
	struct host_listener *host_l;
	struct host_conn *c1, *c2;
	struct guest_stream *gs;

	sys_setup(h);
	listener = vguest_listen(h->vg, 52);
	host_l = host_listen(h, 1234);
	sys_open_host_initiated(h, h->vg, listener, 52, &c1, &g);
	gs = guest_stream_add(h, g);
	guest_stream_source(gs, 61, 64 * MIB, SYS_AFTER_NOTHING);
	host_sink(c1, 61, 64 * MIB);
	host_source(c1, 62, 64 * MIB, SYS_AFTER_NOTHING);
	gs->stop_on_error = true;
	sys_open_guest_initiated(h, h->vg, host_l, &c2, &g);
	WAIT_FOR(h, 5000, c1->sink.received >= 1 * MIB);
	sys_stop_daemon_checked(h);
	WAIT_FOR(h, 3000, host_peer_closed(c1) && host_peer_closed(c2));
	WAIT_FOR(h, 3000, vguest_backend_gone(h->vg));
	sys_guest_drop(h, h->vg);
}

/* One process dies: the other exits at once. */
static void kill_one_process(struct sys_harness *h, bool kill_child)
{
	struct vguest_sock *g;
	struct host_conn *c;
	pid_t child, victim;
	int status = 0;
	uint64_t start;

	sys_setup(h);
	(void)sys_open_to_guest(h, 52, &c, &g);
	child = sys_daemon_child_pid(h);
	CHECKF(child > 0, "cannot find the daemon's second process");
	victim = kill_child ? child : h->daemon_pid;
	sys_expect_daemon_exit(h);
	start = sys_now_ns();
	CHECK(kill(victim, SIGKILL) == 0);
	CHECKF(sys_reap_daemon(h, 3000, &status), "the main process lives on");
	CHECKF(sys_wait_daemon_gone(h, 3000), "the other process lives on");
	printf("both processes gone %.1f ms after SIGKILL of the %s\n",
	       (double)(sys_now_ns() - start) / 1e6, kill_child ? "child" : "parent");
	/* the bound: the survivor exits within a second */
	CHECKF(sys_now_ns() - start < 1000000000ull, "the survivor took over a second");
	WAIT_FOR(h, 3000, host_peer_closed(c));
	WAIT_FOR(h, 3000, vguest_backend_gone(h->vg));
	sys_guest_drop(h, h->vg);
}

void test_kill_child_process(struct sys_harness *h)
{
	kill_one_process(h, true);
}

void test_kill_parent_process(struct sys_harness *h)
{
	kill_one_process(h, false);
}
