/*
 * bench_throughput.c - throughput benchmark of the real vsockmuxd through the
 * virtual guest: 256 MiB guest->host, 256 MiB host->guest (content checked),
 * and short connections per second (host- and guest-initiated).
 *
 * Registered as a meson benchmark (`meson test --benchmark`), not a test.
 * Numbers are printed as "BENCH <what>: <value> <unit>". Note that the
 * default build has ASan/UBSan on, in the daemon and here; configure with
 * -Db_sanitize=none -Dbuildtype=release for representative figures.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sys_harness.h"

#define MIB ((uint64_t)1024 * 1024)
#define BULK_SIZE (256 * MIB)
#define CONNECT_RUN_NS (3ull * 1000000000ull)
#define PIPELINE_DEPTH 32u

static uint64_t bench_size(void)
{
	const char *text = getenv("VSOCKMUX_BENCH_MIB");
	unsigned long mib;
	if (!text || !*text)
		return BULK_SIZE;
	mib = strtoul(text, NULL, 10);
	return mib ? (uint64_t)mib * MIB : BULK_SIZE;
}

/* One host-initiated connection, returns both ends established. */
static void open_pair(struct sys_harness *h, struct vguest_sock *listener,
		      struct host_conn **c, struct vguest_sock **g)
{
	sys_open_host_initiated(h, h->vg, listener, 52, c, g);
}

/* One bulk transfer over one host-initiated connection, either way. */
static void bench_one_direction(struct sys_harness *h, bool to_host)
{
	const uint64_t size = bench_size();
	struct vguest_sock *listener, *g;
	struct host_conn *c;
	struct guest_stream *gs;
	const struct sys_sink *sink;
	uint64_t start;
	double cpu;

	sys_setup(h);
	listener = vguest_listen(h->vg, 52);
	open_pair(h, listener, &c, &g);
	gs = guest_stream_add(h, g);
	cpu = sys_daemon_cpu_ms(h);
	start = sys_now_ns();
	if (to_host) {
		guest_stream_source(gs, 1, size, SYS_AFTER_NOTHING);
		host_sink(c, 1, size);
		sink = &c->sink;
	} else {
		host_source(c, 2, size, SYS_AFTER_NOTHING);
		guest_stream_sink(gs, 2, size);
		sink = &gs->sink;
	}
	WAIT_FOR(h, 500000, sink->received == size);
	printf("BENCH %s %" PRIu64 " MiB: %.1f MiB/s (daemon CPU %.0f ms)\n",
	       to_host ? "guest->host" : "host->guest", size / MIB,
	       sys_mib_per_s(size, sink->end_ns - start), sys_daemon_cpu_ms(h) - cpu);
	sys_print_guest_stats(h->vg);
	guest_stream_remove(h, gs);
}

static void bench_guest_to_host(struct sys_harness *h)
{
	bench_one_direction(h, true);
}

static void bench_host_to_guest(struct sys_harness *h)
{
	bench_one_direction(h, false);
}

/* Sequential host-initiated open + guest close, for CONNECT_RUN_NS. */
static void bench_connections_host(struct sys_harness *h)
{
	struct vguest_sock *listener, *g;
	struct host_conn *c;
	uint64_t start, count = 0;

	sys_setup(h);
	listener = vguest_listen(h->vg, 52);
	start = sys_now_ns();
	while (sys_now_ns() - start < CONNECT_RUN_NS) {
		open_pair(h, listener, &c, &g);
		CHECK(vguest_close(g) == 0);
		WAIT_FOR(h, 3000, host_peer_closed(c) && g->state == VGUEST_SOCK_CLOSED);
		host_conn_free(c);
		vguest_sock_release(g);
		count++;
	}
	printf("BENCH host-initiated connections, one at a time: %.0f connections/s\n",
	       (double)count / ((double)(sys_now_ns() - start) / 1e9));
}

/* Sequential guest-initiated connect + close, for CONNECT_RUN_NS. */
static void bench_connections_guest(struct sys_harness *h)
{
	struct host_listener *listener;
	struct vguest_sock *g;
	struct host_conn *c;
	uint64_t start, count = 0;

	sys_setup(h);
	listener = host_listen(h, 1234);
	start = sys_now_ns();
	while (sys_now_ns() - start < CONNECT_RUN_NS) {
		sys_open_guest_initiated(h, h->vg, listener, &c, &g);
		CHECK(vguest_close(g) == 0);
		WAIT_FOR(h, 3000, host_peer_closed(c) && g->state == VGUEST_SOCK_CLOSED);
		host_conn_free(c);
		vguest_sock_release(g);
		count++;
	}
	printf("BENCH guest-initiated connections, one at a time: %.0f connections/s\n",
	       (double)count / ((double)(sys_now_ns() - start) / 1e9));
}

struct slot {
	struct host_conn *c;
};

#define CLOSING_MAX 1024u

/* Guest sockets closed and waiting for the daemon's RST. */
struct closing_list {
	struct vguest_sock *socks[CLOSING_MAX];
	unsigned count;
};

static void release_closed(struct closing_list *list)
{
	unsigned kept = 0;
	for (unsigned i = 0; i < list->count; i++) {
		if (list->socks[i]->state == VGUEST_SOCK_CLOSED)
			vguest_sock_release(list->socks[i]);
		else
			list->socks[kept++] = list->socks[i];
	}
	list->count = kept;
}

static bool any_slot_progress(struct vguest_sock *listener, struct slot *slots,
			      struct closing_list *closing)
{
	struct vguest_sock *g;
	bool progress = false;
	while ((g = vguest_accept(listener)) != NULL) {
		/* accepted sockets are closed by the guest at once */
		CHECK(vguest_close(g) == 0);
		CHECKF(closing->count < CLOSING_MAX, "too many sockets waiting for RST");
		closing->socks[closing->count++] = g;
		progress = true;
	}
	for (unsigned i = 0; i < PIPELINE_DEPTH; i++)
		if (slots[i].c && host_peer_closed(slots[i].c))
			progress = true;
	return progress;
}

/* PIPELINE_DEPTH host-initiated connections in flight at all times. */
static void bench_connections_pipelined(struct sys_harness *h)
{
	struct slot slots[PIPELINE_DEPTH];
	static struct closing_list closing;
	struct vguest_sock *listener;
	uint64_t start, count = 0;

	memset(slots, 0, sizeof(slots));
	closing.count = 0;
	sys_setup(h);
	listener = vguest_listen(h->vg, 52);
	start = sys_now_ns();
	while (sys_now_ns() - start < CONNECT_RUN_NS) {
		for (unsigned i = 0; i < PIPELINE_DEPTH; i++) {
			if (slots[i].c && host_peer_closed(slots[i].c)) {
				/* "OK <port>\n" then EOF is a completed connection */
				CHECKF(host_in_len(slots[i].c) > 3 &&
				       memcmp(host_in_data(slots[i].c), "OK ", 3) == 0,
				       "connection closed without OK");
				host_conn_free(slots[i].c);
				slots[i].c = NULL;
				count++;
			}
			if (!slots[i].c)
				slots[i].c = host_connect_port(h, 52);
		}
		WAIT_FOR(h, 5000, any_slot_progress(listener, slots, &closing));
		release_closed(&closing);
	}
	printf("BENCH host-initiated connections, %u in flight: %.0f connections/s\n",
	       PIPELINE_DEPTH, (double)count / ((double)(sys_now_ns() - start) / 1e9));
}

static const struct sys_test benches[] = {
	{ "guest_to_host_256mib", bench_guest_to_host, 600 },
	{ "host_to_guest_256mib", bench_host_to_guest, 600 },
	{ "connections_host_initiated", bench_connections_host, 60 },
	{ "connections_guest_initiated", bench_connections_guest, 60 },
	{ "connections_pipelined", bench_connections_pipelined, 60 },
};

int main(int argc, char **argv)
{
	return sys_main(argc, argv, benches, sizeof(benches) / sizeof(benches[0]));
}
