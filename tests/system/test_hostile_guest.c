/*
 * test_hostile_guest.c - a hostile virtual guest against the real
 * two-process vsockmuxd. One scenario per offence.
 *
 * Every scenario keeps two well-behaved connections of the same guest
 * streaming content-checked data: "up" (guest-initiated, guest -> host)
 * and "down" (host-initiated, host -> guest), 8 MiB streams one after the
 * other, each with its own pattern seed. Each scenario
 *  (a) checks both daemon processes stay up and the muxer keeps its pid;
 *  (b) measures both good directions undisturbed (at least 128 MiB each,
 *      same run), then while the offence goes on (the window lasts as long
 *      as the offence and at least 128 MiB), then undisturbed again, and
 *      requires at least half the lowest undisturbed rate in each
 *      direction (all figures printed; see good_during);
 *  (c) reads the muxer's RSS after the first undisturbed run and at the
 *      end and requires growth below RSS_BOUND_KIB = 32 MiB. Honest
 *      budget: these scenarios never let the daemon legitimately buffer
 *      more than a few 256 KiB rings (hosts read), AddressSanitizer's
 *      quarantine is capped at 16 MiB for the daemon (main() below; the
 *      default 256 MiB keeps every freed ring resident and would grow the
 *      RSS by tens of MiB with no leak), and 16 MiB more covers the
 *      sanitizer allocator's caches and metadata. Growth measured is
 *      under 7 MiB; a leak per hostile packet (thousands of them) or
 *      buffering a flood goes far beyond the bound;
 *  (d) checks the offence is counted under its own stats key, with exact
 *      deltas where the daemon promises one count per packet, and that no
 *      other drop reason moved.
 *
 * Offences that stop a queue by design (avail index jump, a refused
 * SET_VRING_ADDR on a live ring) cannot leave the good connections flowing
 * through that queue; those scenarios assert the documented reaction
 * instead (see each one), and that the daemon then serves again: a new
 * frontend for the broken queue, the same connections once the frontend
 * sends the right ring addresses.
 *
 * Daemon bugs found (each scenario is the reproduction):
 *  - with no RX buffers the muxer did not count waits_for_rx_buffers when
 *    the packet that waited was a control packet or an orphan RST (only
 *    RW data was counted), so RX starvation showed in no counter
 *    (hg_rx_starvation; daemon/muxer.c rx_send_pending and
 *    rx_send_orphan_rst);
 *  - RX buffers popped from a ring that was not ready at SET_MEM_TABLE
 *    (disabled, or its addresses refused) were kept across the new table
 *    and written after the old mapping was gone: SIGSEGV, both processes
 *    down (hg_mem_table_while_ring_stopped; daemon/vhost_user.c
 *    handle_set_mem_table).
 *
 * Owns: these scenarios and their table; the harness is sys_harness.h.
 * Never: sleeps to synchronise (every wait is bounded: WAIT_FOR,
 * sys_pump_for), or passes without checking the good traffic byte for
 * byte.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "sys_harness.h"
#include "vsockmux/vhost_user_wire.h"

#define KIB 1024u
#define MIB (1024u * 1024u)
#define GOOD_CHUNK (8u * MIB)          /* one content-checked stream */
#define GOOD_BYTES (128u * MIB)        /* at least this much per measurement */
#define RSS_BOUND_KIB (32l * 1024l)
#define GOOD_HOST_PORT 5000u           /* host listener for "up" */
#define GOOD_GUEST_PORT 52u            /* guest listener for "down" */
#define HOSTILE_HOST_PORT 6000u        /* host listener for hostile conns */
#define HOSTILE_GUEST_PORT 53u         /* guest listener for hostile conns */
#define NO_LISTENER_PORT 6001u
#define DURING_TIMEOUT_MS 12000

/* ------------------------------------------------------------------ */
/* the good connections */

struct good {
	struct sys_harness *h;
	struct host_listener *listener;
	struct vguest_sock *guest_listener;
	struct host_conn *up_c, *down_c;
	struct vguest_sock *up_g, *down_g;
	struct guest_stream *up_gs, *down_gs;
	uint32_t seed;
	uint64_t bytes, start_ns;
	double up_alone, down_alone;
	pid_t muxer;
	long rss_before;
	uint64_t longest_gap_ns;       /* of the latest good_measure */
};

static void good_start(struct good *gd, uint64_t bytes)
{
	gd->seed += 2;
	gd->bytes = bytes;
	host_sink(gd->up_c, gd->seed, bytes);
	guest_stream_sink(gd->down_gs, gd->seed + 1, bytes);
	gd->start_ns = sys_now_ns();
	guest_stream_source(gd->up_gs, gd->seed, bytes, SYS_AFTER_NOTHING);
	host_source(gd->down_c, gd->seed + 1, bytes, SYS_AFTER_NOTHING);
}

/* Two chunks both ways, and wait until both directions move. */
static void good_start_flowing(struct good *gd)
{
	good_start(gd, 2 * GOOD_CHUNK);
	WAIT_FOR(gd->h, 5000, gd->up_c->sink.received > 0 && gd->down_gs->sink.received > 0);
}

static bool good_done(const struct good *gd)
{
	return gd->up_c->sink.received == gd->bytes &&
	       gd->down_gs->sink.received == gd->bytes;
}

static void good_rates(const struct good *gd, uint64_t from_ns, uint64_t bytes,
		       double *up, double *down)
{
	*up = sys_mib_per_s(bytes, gd->up_c->sink.end_ns - from_ns);
	*down = sys_mib_per_s(bytes, gd->down_gs->sink.end_ns - from_ns);
}

/* One step of an offence: do a little, return true once it is complete. */
typedef bool offence_step(struct sys_harness *h, struct good *gd, void *ctx);

/*
 * Stream GOOD_CHUNK after GOOD_CHUNK both ways (a new seed each) while
 * step (if any) is called between pump rounds, until the offence is
 * complete and at least GOOD_BYTES went each way; the rates are over the
 * whole window. *offence_ms gets how long the offence ran.
 */
static void good_measure(struct good *gd, offence_step *step, void *ctx, double *up,
			 double *down, double *offence_ms)
{
	struct sys_harness *h = gd->h;
	uint64_t end = sys_wait_end(h, DURING_TIMEOUT_MS), start = sys_now_ns();
	uint64_t total = 0, offence_end = start;
	uint64_t up_seen = 0, down_seen = 0, up_at = start, down_at = start;
	bool finished = step == NULL;

	gd->longest_gap_ns = 0;
	good_start(gd, GOOD_CHUNK);
	for (;;) {
		if (sys_now_ns() >= end) {
			vguest_dump_state(h->vg, stdout);
			FAIL("not done after %d ms: offence %s, %" PRIu64 " MiB streamed, "
			     "this chunk up %" PRIu64 " down %" PRIu64 " of %" PRIu64,
			     DURING_TIMEOUT_MS, finished ? "complete" : "still running",
			     total / MIB, gd->up_c->sink.received, gd->down_gs->sink.received,
			     gd->bytes);
		}
		if (!finished) {
			finished = step(h, gd, ctx);
			if (finished)
				offence_end = sys_now_ns();
			sys_pump(h, 1);
		} else {
			sys_pump(h, sys_ms_until(end));
		}
		{
			/* longest time either direction made no progress */
			uint64_t now = sys_now_ns();
			uint64_t up_now = total + gd->up_c->sink.received;
			uint64_t down_now = total + gd->down_gs->sink.received;
			if (up_now != up_seen) {
				up_seen = up_now;
				up_at = now;
			}
			if (down_now != down_seen) {
				down_seen = down_now;
				down_at = now;
			}
			if (now - up_at > gd->longest_gap_ns)
				gd->longest_gap_ns = now - up_at;
			if (now - down_at > gd->longest_gap_ns)
				gd->longest_gap_ns = now - down_at;
		}
		if (good_done(gd)) {
			total += gd->bytes;
			if (finished && total >= GOOD_BYTES)
				break;
			good_start(gd, GOOD_CHUNK);
		}
	}
	*up = sys_mib_per_s(total, gd->up_c->sink.end_ns - start);
	*down = sys_mib_per_s(total, gd->down_gs->sink.end_ns - start);
	if (offence_ms)
		*offence_ms = (offence_end - start) / 1e6;
}

/* Daemon + guest + both good connections; measure them undisturbed. */
static void good_open_on(struct sys_harness *h, struct good *gd)
{
	gd->h = h;
	gd->listener = host_listen(h, GOOD_HOST_PORT);
	gd->guest_listener = vguest_listen(h->vg, GOOD_GUEST_PORT);
	CHECK(gd->guest_listener);
	sys_open_guest_initiated(h, h->vg, gd->listener, &gd->up_c, &gd->up_g);
	sys_open_host_initiated(h, h->vg, gd->guest_listener, GOOD_GUEST_PORT,
				&gd->down_c, &gd->down_g);
	gd->up_gs = guest_stream_add(h, gd->up_g);
	gd->down_gs = guest_stream_add(h, gd->down_g);
	/* warm up (first allocations), then measure */
	good_start(gd, GOOD_CHUNK);
	WAIT_FOR(h, 10000, good_done(gd));
	good_measure(gd, NULL, NULL, &gd->up_alone, &gd->down_alone, NULL);
	gd->muxer = sys_daemon_child_pid(h);
	CHECK(gd->muxer > 0);
	gd->rss_before = sys_process_rss_kib(gd->muxer);
	CHECK(gd->rss_before > 0);
	printf("undisturbed: up %.1f MiB/s, down %.1f MiB/s; muxer RSS %ld KiB\n",
	       gd->up_alone, gd->down_alone, gd->rss_before);
}

static void good_open(struct sys_harness *h, struct good *gd,
		      const char *const *daemon_args)
{
	memset(gd, 0, sizeof(*gd));
	sys_start_daemon(h, daemon_args);
	(void)sys_guest_new(h, NULL);
	good_open_on(h, gd);
}

static void check_rate(const char *what, double alone, double during)
{
	CHECKF(!sys_rate_checks() || during >= 0.5 * alone,
	       "%s: %.1f MiB/s during the offence, %.1f MiB/s "
	       "undisturbed (below half)", what, during, alone);
}

/*
 * The good streams measured while the offence runs, then undisturbed
 * again. The machine is shared (a loaded 2-core box whose load comes and
 * goes over hundreds of ms), so the reference is the lowest of the
 * undisturbed runs just before and just after (and, if the offence run
 * is below half of that, of up to two more): load from elsewhere during
 * the offence then shows in a run next to it too, while a daemon that
 * serves the good streams badly during the offence stays below half of
 * all of them. The longest pause of either stream is printed as well.
 */
static void good_during(struct good *gd, offence_step *step, void *ctx, const char *what)
{
	double up, down, offence_ms, up_after, down_after;
	uint64_t gap;

	good_measure(gd, step, ctx, &up, &down, &offence_ms);
	gap = gd->longest_gap_ns;
	good_measure(gd, NULL, NULL, &up_after, &down_after, NULL);
	printf("%s: offence ran %.0f ms; good streams up %.1f MiB/s (undisturbed %.1f "
	       "before, %.1f after), down %.1f MiB/s (undisturbed %.1f before, %.1f "
	       "after); longest pause %.1f ms (%.1f ms after)\n", what, offence_ms, up,
	       gd->up_alone, up_after, down, gd->down_alone, down_after, gap / 1e6,
	       gd->longest_gap_ns / 1e6);
	up_after = up_after < gd->up_alone ? up_after : gd->up_alone;
	down_after = down_after < gd->down_alone ? down_after : gd->down_alone;
	/* below half: the machine may just have been busier since; two more
	 * undisturbed runs, and the lowest of all is the reference */
	for (unsigned again = 0; again < 2 && sys_rate_checks() &&
	     (up < 0.5 * up_after || down < 0.5 * down_after);
	     again++) {
		double up_again, down_again;
		good_measure(gd, NULL, NULL, &up_again, &down_again, NULL);
		printf("  undisturbed again: up %.1f MiB/s, down %.1f MiB/s\n", up_again,
		       down_again);
		up_after = up_again < up_after ? up_again : up_after;
		down_after = down_again < down_after ? down_again : down_after;
	}
	check_rate("up (guest->host)", up_after, up);
	check_rate("down (host->guest)", down_after, down);
}

/* (a) and (c) at the end, plus the good sockets themselves clean. */
static void good_check_end(struct good *gd)
{
	struct sys_harness *h = gd->h;
	long rss_after;

	CHECKF(sys_daemon_alive(h), "the daemon died");
	CHECKF(sys_daemon_child_pid(h) == gd->muxer, "the muxer was replaced (pid %d, "
	       "was %d)", (int)sys_daemon_child_pid(h), (int)gd->muxer);
	rss_after = sys_process_rss_kib(gd->muxer);
	printf("muxer RSS %ld KiB -> %ld KiB (growth %ld KiB, bound %ld KiB)\n",
	       gd->rss_before, rss_after, rss_after - gd->rss_before, RSS_BOUND_KIB);
	CHECKF(rss_after > 0 && rss_after - gd->rss_before < RSS_BOUND_KIB,
	       "muxer RSS grew from %ld to %ld KiB", gd->rss_before, rss_after);
	CHECK(gd->up_g->state == VGUEST_SOCK_CONNECTED);
	CHECK(gd->down_g->state == VGUEST_SOCK_CONNECTED);
	CHECK(gd->up_g->credit_violations == 0 && gd->down_g->credit_violations == 0);
	CHECK(!host_peer_closed(gd->up_c) && !host_peer_closed(gd->down_c));
}

/* ------------------------------------------------------------------ */
/* stats */

struct snap {
	Vsockmux__Control__Response *response;
};

static struct snap snap_take(struct sys_harness *h)
{
	struct snap s = { sys_query_stats(h, false) };
	return s;
}

static uint64_t drop_delta(const struct snap *before, const struct snap *after,
			   const char *reason)
{
	return sys_stats_dropped(after->response->stats, reason) -
	       sys_stats_dropped(before->response->stats, reason);
}

static void snap_free(struct snap *s)
{
	sys_stats_free(s->response);
	s->response = NULL;
}

/* Every drop reason except those listed (NULL-ended) kept its value. */
static void check_other_drops_unchanged(const struct snap *before, const struct snap *after,
					const char *const *allowed)
{
	const Vsockmux__Control__Stats *stats = after->response->stats;
	for (size_t i = 0; i < stats->n_dropped; i++) {
		const char *key = stats->dropped[i]->key;
		bool ok = false;
		uint64_t delta;
		for (const char *const *a = allowed; *a; a++)
			ok |= strcmp(*a, key) == 0;
		if (ok)
			continue;
		delta = drop_delta(before, after, key);
		CHECKF(delta == 0, "drop reason %s moved by %" PRIu64, key, delta);
	}
}

/* reason moved by exactly expected between before and after (printed). */
static void check_drop_moved(const struct snap *before, const struct snap *after,
			     const char *reason, uint64_t expected)
{
	uint64_t delta = drop_delta(before, after, reason);

	printf("  %s +%" PRIu64 " (expected %" PRIu64 ")\n", reason, delta, expected);
	CHECKF(delta == expected, "%s moved by %" PRIu64 ", expected %" PRIu64, reason, delta,
	       expected);
}

/* No drop reason may move. */
static const char *const no_drops[] = { NULL };

/* check_other_drops_unchanged, then both snapshots go. */
static void snaps_check_free(struct snap *before, struct snap *after,
			     const char *const *allowed)
{
	check_other_drops_unchanged(before, after, allowed);
	snap_free(before);
	snap_free(after);
}

/* The end every scenario shares: no drop reason but those allowed
 * (NULL-ended) moved between before and after, (a) and (c) with the good
 * sockets clean (good_check_end), and nothing odd left in the guest. */
static void scenario_end(struct good *gd, struct snap *before, struct snap *after,
			 const char *const *allowed)
{
	snaps_check_free(before, after, allowed);
	good_check_end(gd);
	sys_check_guest_clean(gd->h->vg);
}

/* ------------------------------------------------------------------ */
/* small helpers */

/* Post one raw packet now; false if the TX ring is full. */
static bool raw_try(struct sys_harness *h, const struct vsock_header *header,
		    const void *payload, size_t len)
{
	if (vguest_send_raw(h->vg, header, payload, len, NULL) == 0)
		return true;
	CHECKF(errno == EAGAIN, "vguest_send_raw: %s", strerror(errno));
	return false;
}

/* Post one raw packet, pumping while the TX ring is full. */
static void raw_send(struct sys_harness *h, const struct vsock_header *header,
		     const void *payload, size_t len)
{
	uint64_t end = sys_wait_end(h, 5000);
	while (!raw_try(h, header, payload, len)) {
		CHECKF(sys_now_ns() < end, "TX ring stayed full");
		sys_pump(h, 5);
	}
}

/* Open n hostile guest-initiated connections to HOSTILE_HOST_PORT. */
static void open_hostile(struct sys_harness *h, struct host_listener **listener,
			 unsigned n, struct host_conn **c, struct vguest_sock **g)
{
	if (!*listener)
		*listener = host_listen(h, HOSTILE_HOST_PORT);
	for (unsigned i = 0; i < n; i++)
		sys_open_guest_initiated(h, h->vg, *listener, &c[i], &g[i]);
}

/* Did the daemon send op to (guest port local, host port peer)? */
static size_t daemon_sent(struct sys_harness *h, uint16_t op, uint32_t local, uint32_t peer)
{
	return vguest_count_packets(h->vg, false, op, local, peer);
}

/* ------------------------------------------------------------------ */
/* 1. ignores credit */

struct credit_ctx {
	unsigned conns, packets, sent;
	struct host_conn *c[4];
	struct vguest_sock *g[4];
	uint8_t *payload;
};

static bool credit_step(struct sys_harness *h, struct good *gd, void *opaque)
{
	struct credit_ctx *x = opaque;
	(void)gd;
	while (x->sent < x->conns * x->packets) {
		unsigned conn = x->sent % x->conns, index = x->sent / x->conns;
		struct vsock_header header = sys_guest_header(x->g[conn]->local_port,
							HOSTILE_HOST_PORT, VSOCK_OP_RW);
		header.len = 64 * KIB;
		pattern_fill(900 + conn, (uint64_t)index * 64 * KIB, x->payload, 64 * KIB);
		if (!raw_try(h, &header, x->payload, 64 * KIB))
			return false;
		x->sent++;
		if (x->sent % 4 == 0)
			return false;  /* leave the ring to the good stream too */
	}
	return true;
}

/*
 * Hostile connections whose host readers are paused get 64 KiB RW packets
 * far beyond the 256 KiB credit the daemon offered: each is reset at its
 * first excess packet (credit_violation, once per connection); what reached
 * the host is a correct prefix; later packets for the dead pair are
 * no_connection.
 */
static void test_hg_credit_ignored(struct sys_harness *h)
{
	struct credit_ctx x = { .conns = 4, .packets = 8 };
	struct host_listener *hostile = NULL;
	struct good gd;
	struct snap before, after;
	static const char *const allowed[] = { "credit_violation", "no_connection", NULL };

	good_open(h, &gd, NULL);
	open_hostile(h, &hostile, x.conns, x.c, x.g);
	for (unsigned i = 0; i < x.conns; i++) {
		host_set_paused(x.c[i], true);
		vguest_sock_mark_raw(x.g[i]);
	}
	x.payload = malloc(64 * KIB);
	CHECK(x.payload);
	before = snap_take(h);
	good_during(&gd, credit_step, &x, "credit ignored");
	free(x.payload);
	for (unsigned i = 0; i < x.conns; i++) {
		size_t bad;
		WAIT_FOR(h, 5000, x.g[i]->reset_received);
		host_set_paused(x.c[i], false);
		WAIT_FOR(h, 5000, host_peer_closed(x.c[i]));
		bad = pattern_check(900 + i, 0, host_in_data(x.c[i]), host_in_len(x.c[i]));
		CHECKF(bad == host_in_len(x.c[i]), "hostile conn %u: host got a wrong byte "
		       "at %zu", i, bad);
		CHECKF(host_in_len(x.c[i]) <= 256 * KIB, "hostile conn %u: %zu bytes "
		       "delivered beyond the credit", i, host_in_len(x.c[i]));
		printf("hostile conn %u: host got a correct %zu KiB prefix, then RST\n", i,
		       host_in_len(x.c[i]) / KIB);
	}
	after = snap_take(h);
	printf("credit_violation +%" PRIu64 ", no_connection +%" PRIu64 "\n",
	       drop_delta(&before, &after, "credit_violation"),
	       drop_delta(&before, &after, "no_connection"));
	CHECK(drop_delta(&before, &after, "credit_violation") == x.conns);
	CHECK(drop_delta(&before, &after, "no_connection") +
	      drop_delta(&before, &after, "credit_violation") <= x.conns * x.packets);
	scenario_end(&gd, &before, &after, allowed);
}

/* ------------------------------------------------------------------ */
/* 2. REQUEST flood */

#define FLOOD_REQUESTS 10000u
#define FLOOD_FIRST_PORT 20000u

#define FLOOD_PER_MS 5u             /* 5,000 REQUESTs a second */

struct flood_ctx {
	struct host_listener *listener;
	unsigned sent;
	unsigned accepted;
	uint64_t start_ns;
};

static void flood_reap(struct flood_ctx *x)
{
	struct host_conn *c;
	while ((c = host_accept(x->listener)) != NULL) {
		x->accepted++;
		host_conn_free(c);
	}
}

static bool flood_step(struct sys_harness *h, struct good *gd, void *opaque)
{
	struct flood_ctx *x = opaque;
	(void)gd;
	uint64_t due;

	flood_reap(x);
	if (!x->start_ns)
		x->start_ns = sys_now_ns();
	due = (sys_now_ns() - x->start_ns) / 1000000u * FLOOD_PER_MS + FLOOD_PER_MS;
	for (unsigned burst = 0; burst < 16 && x->sent < FLOOD_REQUESTS && x->sent < due;
	     burst++) {
		uint32_t port = x->sent % 2 ? NO_LISTENER_PORT : HOSTILE_HOST_PORT;
		struct vsock_header header = sys_guest_header(FLOOD_FIRST_PORT + x->sent, port,
							VSOCK_OP_REQUEST);
		if (!raw_try(h, &header, NULL, 0))
			return false;
		x->sent++;
	}
	return x->sent == FLOOD_REQUESTS;
}

static double self_cpu_ms(void)
{
	struct rusage usage;
	CHECK(getrusage(RUSAGE_SELF, &usage) == 0);
	return usage.ru_utime.tv_sec * 1e3 + usage.ru_utime.tv_usec / 1e3 +
	       usage.ru_stime.tv_sec * 1e3 + usage.ru_stime.tv_usec / 1e3;
}

/* Guest ports of the flood that got a RESPONSE or an RST. */
static unsigned flood_answered(struct sys_harness *h, unsigned *responses, unsigned *rsts)
{
	static uint8_t seen[FLOOD_REQUESTS];
	size_t count;
	const struct vguest_packet_record *log = vguest_packet_log(h->vg, &count);
	unsigned answered = 0;

	memset(seen, 0, sizeof(seen));
	*responses = *rsts = 0;
	for (size_t i = 0; i < count; i++) {
		const struct vsock_header *p = &log[i].header;
		uint32_t index = p->dst_port - FLOOD_FIRST_PORT;
		if (log[i].from_guest || p->dst_port < FLOOD_FIRST_PORT || index >= FLOOD_REQUESTS)
			continue;
		if (p->op == VSOCK_OP_RESPONSE) {
			CHECKF(index % 2 == 0, "RESPONSE for port %u without a listener", p->dst_port);
			(*responses)++;
		} else if (p->op == VSOCK_OP_RST) {
			(*rsts)++;
		} else {
			continue;
		}
		if (!(seen[index] & 1))
			answered++;
		seen[index] |= 1;
	}
	return answered;
}

/*
 * 10,000 raw REQUESTs, half to a port with a host listener, half to one
 * without. Every REQUEST is answered (RESPONSE, which the vguest answers
 * with RST as Linux does for a socket it does not have, or RST); the
 * daemon's counters add up: new guest connections + refused (no listener,
 * limit) == 10,000, and every RESPONSE is a connection.
 */
static void test_hg_request_flood(struct sys_harness *h)
{
	struct flood_ctx x = { 0 };
	struct good gd;
	struct snap before, after;
	const Vsockmux__Control__Stats *b, *a;
	unsigned answered = 0, responses = 0, rsts = 0;
	uint64_t connections, no_listener, limit;
	double cpu_before, self_before;
	/* the default level (not the harness's debug): a debug line for
	 * every refused connect would be most of the work measured here */
	static const char *const args[] = { "--log-level", "info", NULL };

	good_open(h, &gd, args);
	x.listener = host_listen(h, HOSTILE_HOST_PORT);
	before = snap_take(h);
	cpu_before = sys_daemon_cpu_ms(h);
	self_before = self_cpu_ms();
	good_during(&gd, flood_step, &x, "10000 REQUESTs");
	printf("CPU during the flood: daemon %.0f ms, test process %.0f ms\n",
	       sys_daemon_cpu_ms(h) - cpu_before, self_cpu_ms() - self_before);
	WAIT_FOR(h, 20000, (flood_reap(&x),
			    answered = flood_answered(h, &responses, &rsts)) == FLOOD_REQUESTS);
	/* the connections that were answered RESPONSE are gone again */
	{
		uint64_t end = sys_wait_end(h, 10000);
		for (;;) {
			Vsockmux__Control__Response *r = sys_query_stats(h, false);
			uint64_t current = r->stats->connections_current;
			sys_stats_free(r);
			if (current == 2)
				break;
			CHECKF(sys_now_ns() < end, "%" PRIu64 " connections left after the "
			       "flood (2 good ones expected)", current);
			sys_pump(h, 20);
		}
	}
	after = snap_take(h);
	b = before.response->stats;
	a = after.response->stats;
	connections = a->connections_total_from_guest - b->connections_total_from_guest;
	no_listener = a->refused_no_host_listener - b->refused_no_host_listener;
	limit = a->refused_limit - b->refused_limit;
	printf("flood: %u answered (%u RESPONSE, %u RST packets); daemon: %" PRIu64
	       " connections, refused %" PRIu64 " no listener + %" PRIu64 " limit; "
	       "host accepted %u; rst_sent +%" PRIu64 "\n", answered, responses, rsts,
	       connections, no_listener, limit, x.accepted, a->rst_sent - b->rst_sent);
	CHECK(answered == FLOOD_REQUESTS);
	CHECK(connections + no_listener + limit == FLOOD_REQUESTS);
	/* half had no listener; more may be refused at the limit of connects
	 * waiting for the broker (an RST too) */
	CHECK(connections <= FLOOD_REQUESTS / 2);
	CHECK(no_listener + limit >= FLOOD_REQUESTS / 2);
	CHECK(connections == responses);
	WAIT_FOR(h, 5000, (flood_reap(&x), x.accepted >= connections));
	CHECK(drop_delta(&before, &after, "rst_queue_full") == 0);
	snap_free(&before);
	snap_free(&after);
	good_check_end(&gd);
	sys_check_guest_clean(h->vg);
}

/* ------------------------------------------------------------------ */
/* 3./4. spoofed CIDs */

struct cid_ctx {
	bool source;               /* spoof src_cid (else dst_cid) */
	unsigned sent, total;
	uint32_t up_port;          /* the good "up" pair: guest port */
	uint8_t junk[512];
};

static bool cid_step(struct sys_harness *h, struct good *gd, void *opaque)
{
	static const uint64_t src_cids[] = { 4, VSOCK_HOST_CID, 0, 1, UINT32_MAX,
					     0x100000003ull, UINT64_MAX };
	static const uint64_t dst_cids[] = { 3, 0, 1, 4, UINT32_MAX, 0x100000002ull,
					     UINT64_MAX };
	struct cid_ctx *x = opaque;
	(void)gd;
	for (unsigned burst = 0; burst < 8 && x->sent < x->total; burst++) {
		/* alternate: RW into the good "up" pair (a daemon that took it
		 * would corrupt that stream), REQUEST to the good listener */
		bool rw = x->sent % 2 == 0;
		struct vsock_header header = sys_guest_header(rw ? x->up_port : 30000 + x->sent,
							GOOD_HOST_PORT,
							rw ? VSOCK_OP_RW : VSOCK_OP_REQUEST);
		size_t n = x->sent % 7;
		if (x->source)
			header.src_cid = src_cids[n];
		else
			header.dst_cid = dst_cids[n];
		if (rw)
			header.len = sizeof(x->junk);
		if (!raw_try(h, &header, x->junk, rw ? sizeof(x->junk) : 0))
			return false;
		x->sent++;
	}
	return x->sent == x->total;
}

static void run_cid(struct sys_harness *h, bool source)
{
	struct cid_ctx x = { .source = source, .total = 2000 };
	const char *reason = source ? "bad_src_cid" : "bad_dst_cid";
	const char *const allowed[] = { reason, NULL };
	struct good gd;
	struct snap before, after;
	unsigned accepted;

	good_open(h, &gd, NULL);
	x.up_port = gd.up_g->local_port;
	memset(x.junk, 'X', sizeof(x.junk));
	accepted = gd.listener->accepted;
	before = snap_take(h);
	good_during(&gd, cid_step, &x, source ? "spoofed src_cid" : "dst_cid not 2");
	sys_tx_barrier(h, h->vg);
	after = snap_take(h);
	printf("%u packets: %s +%" PRIu64 "\n", x.total, reason,
	       drop_delta(&before, &after, reason));
	CHECK(drop_delta(&before, &after, reason) == x.total);
	CHECKF(gd.listener->accepted == accepted, "a spoofed REQUEST reached the host");
	CHECKF(daemon_sent(h, VSOCK_OP_RST, VGUEST_ANY_PORT, GOOD_HOST_PORT) == 0 &&
	       daemon_sent(h, VSOCK_OP_RESPONSE, VGUEST_ANY_PORT, GOOD_HOST_PORT) == 1,
	       "the daemon answered a spoofed packet");
	CHECK(after.response->stats->connections_current == 2);
	scenario_end(&gd, &before, &after, allowed);
}

/* Packets whose src_cid is not the guest's (another guest, the host, 0,
 * 64-bit values) are dropped without a reply: bad_src_cid, one each. */
static void test_hg_spoofed_src_cid(struct sys_harness *h)
{
	run_cid(h, true);
}

/* Packets to a dst_cid other than 2 are dropped without a reply:
 * bad_dst_cid, one each. */
static void test_hg_bad_dst_cid(struct sys_harness *h)
{
	run_cid(h, false);
}

/* ------------------------------------------------------------------ */
/* 5. RW for unknown connections */

struct unknown_ctx {
	unsigned sent, total;
	uint32_t up_port;
	uint8_t junk[1024];
};

static bool unknown_rw_step(struct sys_harness *h, struct good *gd, void *opaque)
{
	struct unknown_ctx *x = opaque;
	(void)gd;
	for (unsigned burst = 0; burst < 8 && x->sent < x->total; burst++) {
		/* never-opened pairs; every third one aims at the good host
		 * port from a wrong guest port, every seventh at the good
		 * guest port from a wrong host port */
		uint32_t src = 40000 + x->sent, dst = 7000 + x->sent % 1000;
		struct vsock_header header;
		if (x->sent % 3 == 0)
			dst = GOOD_HOST_PORT;
		if (x->sent % 7 == 0) {
			src = x->up_port;
			dst = GOOD_HOST_PORT + 1;
		}
		header = sys_guest_header(src, dst, VSOCK_OP_RW);
		header.len = (uint32_t)(x->sent % sizeof(x->junk)) + 1;
		if (!raw_try(h, &header, x->junk, header.len))
			return false;
		x->sent++;
	}
	return x->sent == x->total;
}

/* RW for pairs the daemon never had: each answered with one RST (as Linux
 * does), counted no_connection, one each; nothing reaches a host socket. */
static void test_hg_rw_unknown_connection(struct sys_harness *h)
{
	struct unknown_ctx x = { .total = 3000 };
	static const char *const allowed[] = { "no_connection", NULL };
	uint64_t host_bytes;
	struct good gd;
	struct snap before, after;
	const Vsockmux__Control__Stats *b, *a;

	good_open(h, &gd, NULL);
	x.up_port = gd.up_g->local_port;
	memset(x.junk, 'U', sizeof(x.junk));
	host_bytes = gd.up_c->bytes_in;
	before = snap_take(h);
	good_during(&gd, unknown_rw_step, &x, "RW for unknown connections");
	sys_tx_barrier(h, h->vg);
	after = snap_take(h);
	b = before.response->stats;
	a = after.response->stats;
	printf("%u RW packets: no_connection +%" PRIu64 ", rst_sent +%" PRIu64 "\n",
	       x.total, drop_delta(&before, &after, "no_connection"),
	       a->rst_sent - b->rst_sent);
	CHECK(drop_delta(&before, &after, "no_connection") == x.total);
	/* + 1: the barrier's own REQUEST to a port without a listener */
	CHECK(a->rst_sent - b->rst_sent == x.total + 1);
	/* nothing but the good stream reached a host socket */
	CHECK(a->bytes_to_host - b->bytes_to_host == gd.up_c->bytes_in - host_bytes);
	scenario_end(&gd, &before, &after, allowed);
}

/* ------------------------------------------------------------------ */
/* 6. header len beyond the chain */

#define BADLEN_CONNS 8u

struct badlen_ctx {
	struct host_conn *c[BADLEN_CONNS];
	struct vguest_sock *g[BADLEN_CONNS];
	unsigned sent, total;
	uint8_t payload[2048];
};

static bool badlen_step(struct sys_harness *h, struct good *gd, void *opaque)
{
	static const uint32_t lens[] = { 2049, 4096, 65536, 0x7fffffffu, 0x80000000u,
					 0xfffffff0u, 0xffffffffu };
	struct badlen_ctx *x = opaque;
	(void)gd;
	for (unsigned burst = 0; burst < 8 && x->sent < x->total; burst++) {
		struct vsock_header header;
		if (x->sent < BADLEN_CONNS) {
			/* one per hostile connection: it is reset */
			header = sys_guest_header(x->g[x->sent]->local_port, HOSTILE_HOST_PORT,
					    VSOCK_OP_RW);
		} else {
			/* the rest for pairs that do not exist */
			header = sys_guest_header(41000 + x->sent, 7777, VSOCK_OP_RW);
		}
		header.len = lens[x->sent % 7];
		if (!raw_try(h, &header, x->payload, x->sent % 2 ? sizeof(x->payload) : 0))
			return false;
		x->sent++;
	}
	return x->sent == x->total;
}

/*
 * RW headers whose len is beyond the chain (2049 .. 0xffffffff with 0 or
 * 2048 payload bytes) and control packets with a len: dropped, counted
 * bad_length one each; a live connection that sends one is reset (the
 * guest gets an RST, the host socket is closed); nothing reaches the host.
 */
static void test_hg_header_len_beyond_chain(struct sys_harness *h)
{
	struct badlen_ctx x = { .total = 2000 };
	static const char *const allowed[] = { "bad_length", NULL };
	struct host_listener *hostile = NULL;
	struct good gd;
	struct snap before, after;

	good_open(h, &gd, NULL);
	open_hostile(h, &hostile, BADLEN_CONNS, x.c, x.g);
	for (unsigned i = 0; i < BADLEN_CONNS; i++)
		vguest_sock_mark_raw(x.g[i]);
	memset(x.payload, 'L', sizeof(x.payload));
	before = snap_take(h);
	good_during(&gd, badlen_step, &x, "header len beyond the chain");
	/* control packets with a payload length */
	for (unsigned i = 0; i < 4; i++) {
		struct vsock_header header = sys_guest_header(42000 + i, 7777,
							i % 2 ? VSOCK_OP_CREDIT_UPDATE :
								VSOCK_OP_REQUEST);
		header.len = 16;
		raw_send(h, &header, x.payload, 16);
	}
	sys_tx_barrier(h, h->vg);
	for (unsigned i = 0; i < BADLEN_CONNS; i++) {
		WAIT_FOR(h, 5000, x.g[i]->reset_received && host_peer_closed(x.c[i]));
		CHECKF(host_in_len(x.c[i]) == 0, "hostile conn %u: the host got %zu bytes",
		       i, host_in_len(x.c[i]));
	}
	after = snap_take(h);
	printf("%u bad lengths + 4 control packets with len: bad_length +%" PRIu64 "\n",
	       x.total, drop_delta(&before, &after, "bad_length"));
	CHECK(drop_delta(&before, &after, "bad_length") == x.total + 4);
	CHECKF(daemon_sent(h, VSOCK_OP_RST, VGUEST_ANY_PORT, 7777) == 0,
	       "the daemon answered a malformed packet for no connection");
	scenario_end(&gd, &before, &after, allowed);
}

/* ------------------------------------------------------------------ */
/* 7. unknown ops and types */

#define BADOP_CONNS 8u

struct badop_ctx {
	struct host_conn *c[BADOP_CONNS];
	struct vguest_sock *g[BADOP_CONNS];
	unsigned sent, total, rsts_owed, type_rst;
};

static bool badop_step(struct sys_harness *h, struct good *gd, void *opaque)
{
	static const uint16_t ops[] = { VSOCK_OP_INVALID, 8, 9, 100, 0xffff };
	static const uint16_t types[] = { 2 /* SEQPACKET */, 0, 3, 0xffff };
	struct badop_ctx *x = opaque;
	(void)gd;
	for (unsigned burst = 0; burst < 8 && x->sent < x->total; burst++) {
		struct vsock_header header;
		unsigned i = x->sent;
		if (i < BADOP_CONNS)
			header = sys_guest_header(x->g[i]->local_port, HOSTILE_HOST_PORT,
					    VSOCK_OP_RW);
		else
			header = sys_guest_header(43000 + i, i % 4 ? 7778 : HOSTILE_HOST_PORT,
					    VSOCK_OP_REQUEST);
		if (i % 2) {
			header.op = ops[(i / 2) % 5];
		} else {
			header.type = types[(i / 2) % 4];
			/* a REQUEST, an RST (never answered) or a RW */
			header.op = i % 3 == 0 ? VSOCK_OP_RST : header.op;
		}
		if (!raw_try(h, &header, NULL, 0))
			return false;
		if (!(i % 2 == 0 && header.op == VSOCK_OP_RST))
			x->rsts_owed++;
		else
			x->type_rst++;
		x->sent++;
	}
	return x->sent == x->total;
}

/*
 * Unknown ops (0, 8, 9, 100, 0xffff) and socket types (SEQPACKET = 2 while
 * the feature is not offered, 0, 3, 0xffff), as REQUESTs to a listening
 * host port, for no connection, and on live connections: bad_op_or_type,
 * one each; answered with RST (a live connection is reset, an RST is never
 * answered); no host connection is made.
 */
static void test_hg_unknown_op_and_type(struct sys_harness *h)
{
	struct badop_ctx x = { .total = 2000 };
	static const char *const allowed[] = { "bad_op_or_type", NULL };
	struct host_listener *hostile = NULL;
	struct good gd;
	struct snap before, after;
	unsigned accepted;
	uint64_t rst_sent;

	good_open(h, &gd, NULL);
	CHECKF(!(vguest_features_offered(h->vg) & (1ull << 1 /* SEQPACKET */)),
	       "the daemon offers VIRTIO_VSOCK_F_SEQPACKET");
	open_hostile(h, &hostile, BADOP_CONNS, x.c, x.g);
	accepted = hostile->accepted;
	before = snap_take(h);
	good_during(&gd, badop_step, &x, "unknown ops and types");
	sys_tx_barrier(h, h->vg);
	for (unsigned i = 0; i < BADOP_CONNS; i++) {
		/* an RST of a bad type is dropped: that connection lives on */
		if (i % 2 == 0 && i % 3 == 0) {
			CHECK(x.g[i]->state == VGUEST_SOCK_CONNECTED && !host_peer_closed(x.c[i]));
			continue;
		}
		WAIT_FOR(h, 5000, x.g[i]->reset_received && host_peer_closed(x.c[i]));
	}
	after = snap_take(h);
	rst_sent = after.response->stats->rst_sent - before.response->stats->rst_sent;
	printf("%u packets (%u RSTs of a bad type): bad_op_or_type +%" PRIu64
	       ", rst_sent +%" PRIu64 "\n", x.total, x.type_rst,
	       drop_delta(&before, &after, "bad_op_or_type"), rst_sent);
	CHECK(drop_delta(&before, &after, "bad_op_or_type") == x.total);
	/* + 1: the barrier's REQUEST */
	CHECK(rst_sent == x.rsts_owed + 1);
	CHECKF(hostile->accepted == accepted, "a REQUEST of a bad type reached the host");
	scenario_end(&gd, &before, &after, allowed);
}

/* ------------------------------------------------------------------ */
/* 8. absurd CREDIT_UPDATE values */

#define CREDIT_CONNS 4u

struct absurd_ctx {
	struct host_conn *c[CREDIT_CONNS];
	struct vguest_sock *g[CREDIT_CONNS];
	unsigned round;
};

/* Rounds: buf_alloc 0, then 2^32-1, on every hostile connection (valid
 * values: Linux lets a socket set any u32 buffer size), then fwd_cnt
 * ahead of what the daemon sent. */
static bool absurd_step(struct sys_harness *h, struct good *gd, void *opaque)
{
	struct absurd_ctx *x = opaque;
	unsigned conn = x->round % CREDIT_CONNS, phase = x->round / CREDIT_CONNS;
	struct vsock_header header;
	struct vguest_sock *g;
	(void)gd;

	if (phase == 3)
		return true;
	g = x->g[conn];
	header = sys_guest_header(g->local_port, g->peer_port, VSOCK_OP_CREDIT_UPDATE);
	header.fwd_cnt = g->fwd_cnt;
	if (phase == 0) {
		header.buf_alloc = 0;
	} else if (phase == 1) {
		/* the socket really takes that much (our checks too) */
		vguest_sock_set_buf_alloc(g, UINT32_MAX);
		header.buf_alloc = UINT32_MAX;
	} else {
		header.buf_alloc = UINT32_MAX;
		header.fwd_cnt = g->rx_cnt + 0x10000000u;
	}
	if (!raw_try(h, &header, NULL, 0))
		return false;
	x->round++;
	return false;
}

/*
 * On hostile host-initiated connections with the host flooding: a raw
 * CREDIT_UPDATE with buf_alloc 0 (the daemon must stop sending), then
 * 2^32-1 (legal: the daemon may send, and the bytes stay exact), then one
 * with fwd_cnt ahead of what the daemon ever sent (bad_credit, one per
 * connection; the connection is reset). buf_alloc 0 and 2^32-1 are not
 * offences and no drop counter may move for them.
 */
static void test_hg_absurd_credit_update(struct sys_harness *h)
{
	struct absurd_ctx x = { 0 };
	static const char *const allowed[] = { "bad_credit", NULL };
	struct vguest_sock *listener;
	struct good gd;
	struct snap before, mid, after;
	uint64_t stalled[CREDIT_CONNS];

	good_open(h, &gd, NULL);
	listener = vguest_listen(h->vg, HOSTILE_GUEST_PORT);
	CHECK(listener);
	for (unsigned i = 0; i < CREDIT_CONNS; i++) {
		sys_open_host_initiated(h, h->vg, listener, HOSTILE_GUEST_PORT, &x.c[i], &x.g[i]);
		vguest_sock_mark_raw(x.g[i]);
	}
	before = snap_take(h);
	/* phase 0 alone: buf_alloc 0 stops the flood on those connections */
	while (x.round < CREDIT_CONNS) {
		(void)absurd_step(h, &gd, &x);
		sys_pump(h, 1);
	}
	sys_tx_barrier(h, h->vg);
	for (unsigned i = 0; i < CREDIT_CONNS; i++) {
		host_source(x.c[i], 700 + i, 1 * MIB, SYS_AFTER_NOTHING);
		stalled[i] = x.g[i]->rx_bytes;
	}
	sys_pump_for(h, 300);
	for (unsigned i = 0; i < CREDIT_CONNS; i++)
		CHECKF(x.g[i]->rx_bytes == stalled[i], "conn %u: %" PRIu64 " bytes sent "
		       "after buf_alloc 0", i, x.g[i]->rx_bytes - stalled[i]);
	mid = snap_take(h);
	check_other_drops_unchanged(&before, &mid, no_drops);
	snap_free(&mid);
	/* the vguest itself reads nothing on these: the daemon keeps to the
	 * credit the raw packets claim */
	good_during(&gd, absurd_step, &x, "absurd CREDIT_UPDATE");
	sys_tx_barrier(h, h->vg);
	for (unsigned i = 0; i < CREDIT_CONNS; i++) {
		size_t pending = vguest_rx_pending(x.g[i]);
		uint8_t *data = malloc(pending ? pending : 1);
		size_t got = 0, bad;
		WAIT_FOR(h, 5000, x.g[i]->reset_received && host_peer_closed(x.c[i]));
		CHECK(data);
		while (got < pending) {
			ssize_t n = vguest_recv(x.g[i], data + got, pending - got);
			if (n <= 0)
				break;
			got += (size_t)n;
		}
		bad = pattern_check(700 + i, 0, data, got);
		CHECKF(bad == got, "conn %u: wrong byte at %zu of %zu", i, bad, got);
		printf("hostile conn %u: guest holds a correct %zu KiB, then RST\n", i,
		       got / KIB);
		free(data);
	}
	after = snap_take(h);
	printf("bad_credit +%" PRIu64 "\n", drop_delta(&before, &after, "bad_credit"));
	CHECK(drop_delta(&before, &after, "bad_credit") == CREDIT_CONNS);
	snaps_check_free(&before, &after, allowed);
	good_check_end(&gd);
}

/* ------------------------------------------------------------------ */
/* 9. SHUTDOWN with undefined flag bits */

#define SHUT_CONNS 8u
#define SHUT_REPEATS 50u

struct shut_ctx {
	struct host_conn *c[SHUT_CONNS];
	struct vguest_sock *g[SHUT_CONNS];
	unsigned sent;
};

static bool shut_step(struct sys_harness *h, struct good *gd, void *opaque)
{
	struct shut_ctx *x = opaque;
	(void)gd;
	for (unsigned burst = 0; burst < 8 && x->sent < SHUT_CONNS * SHUT_REPEATS; burst++) {
		struct vguest_sock *g = x->g[x->sent % SHUT_CONNS];
		struct vsock_header header = sys_guest_header(g->local_port, HOSTILE_HOST_PORT,
							VSOCK_OP_SHUTDOWN);
		header.fwd_cnt = g->fwd_cnt;
		/* undefined bits only: nothing may happen */
		header.flags = 0xfffffffcu >> (x->sent % 30);
		header.flags &= ~(uint32_t)(VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND);
		if (header.flags == 0)
			header.flags = 4;
		if (!raw_try(h, &header, NULL, 0))
			return false;
		x->sent++;
	}
	return x->sent == SHUT_CONNS * SHUT_REPEATS;
}

/*
 * SHUTDOWN with only undefined flag bits: ignored (as Linux does) but
 * counted bad_shutdown_flags, one each; the connection still carries data
 * both ways. Then SEND|junk bits: the SEND half acts (the host reads EOF)
 * and it is counted too.
 */
static void test_hg_shutdown_undefined_flags(struct sys_harness *h)
{
	struct shut_ctx x = { 0 };
	static const char *const allowed[] = { "bad_shutdown_flags", NULL };
	struct host_listener *hostile = NULL;
	struct good gd;
	struct snap before, after;

	good_open(h, &gd, NULL);
	open_hostile(h, &hostile, SHUT_CONNS, x.c, x.g);
	before = snap_take(h);
	good_during(&gd, shut_step, &x, "SHUTDOWN with undefined flags");
	sys_tx_barrier(h, h->vg);
	for (unsigned i = 0; i < SHUT_CONNS; i++) {
		char buffer[8];
		CHECK(x.g[i]->state == VGUEST_SOCK_CONNECTED && !host_peer_closed(x.c[i]));
		sys_guest_write_all(h, x.g[i], "ping", 4, 3000);
		sys_host_expect(h, x.c[i], "ping", 4, 3000);
		host_write_str(x.c[i], "pong");
		sys_guest_read_exact(h, x.g[i], buffer, 4, 3000);
		CHECK(memcmp(buffer, "pong", 4) == 0);
	}
	/* the defined bit with junk: SEND acts */
	for (unsigned i = 0; i < SHUT_CONNS; i++) {
		struct vsock_header header = sys_guest_header(x.g[i]->local_port, HOSTILE_HOST_PORT,
							VSOCK_OP_SHUTDOWN);
		header.fwd_cnt = x.g[i]->fwd_cnt;
		header.flags = 0xf0u | VSOCK_SHUTDOWN_SEND;
		vguest_sock_mark_raw(x.g[i]);
		raw_send(h, &header, NULL, 0);
	}
	for (unsigned i = 0; i < SHUT_CONNS; i++)
		WAIT_FOR(h, 5000, x.c[i]->read_eof);
	after = snap_take(h);
	printf("%u SHUTDOWNs with undefined bits + %u with SEND|junk: "
	       "bad_shutdown_flags +%" PRIu64 "\n", SHUT_CONNS * SHUT_REPEATS, SHUT_CONNS,
	       drop_delta(&before, &after, "bad_shutdown_flags"));
	CHECK(drop_delta(&before, &after, "bad_shutdown_flags") ==
	      SHUT_CONNS * SHUT_REPEATS + SHUT_CONNS);
	scenario_end(&gd, &before, &after, allowed);
}

/* ------------------------------------------------------------------ */
/* 10. RST storms */

#define STORM_KNOWN 64u
#define STORM_TOTAL 5000u

struct storm_ctx {
	struct host_conn *c[STORM_KNOWN];
	struct vguest_sock *g[STORM_KNOWN];
	unsigned sent;
};

static bool storm_step(struct sys_harness *h, struct good *gd, void *opaque)
{
	struct storm_ctx *x = opaque;
	(void)gd;
	for (unsigned burst = 0; burst < 16 && x->sent < STORM_TOTAL; burst++) {
		struct vsock_header header;
		if (x->sent % 4 == 0) {
			/* a known pair (the first time it is live) */
			struct vguest_sock *g = x->g[(x->sent / 4) % STORM_KNOWN];
			header = sys_guest_header(g->local_port, g->peer_port, VSOCK_OP_RST);
			header.fwd_cnt = g->fwd_cnt;
		} else {
			header = sys_guest_header(44000 + x->sent, 7000 + x->sent % 500, VSOCK_OP_RST);
		}
		if (!raw_try(h, &header, NULL, 0))
			return false;
		x->sent++;
	}
	return x->sent == STORM_TOTAL;
}

/*
 * 5,000 RSTs: a quarter for 64 live hostile connections (half of them
 * host-initiated), repeated after they are gone, the rest for pairs that
 * never existed. The live ones close (their host sockets see EOF, no RST
 * comes back); every RST is counted in rst_received, those for no
 * connection in rst_unknown; no RST is ever answered.
 */
static void test_hg_rst_storm(struct sys_harness *h)
{
	struct storm_ctx x = { 0 };
	static const char *const allowed[] = { "rst_unknown", NULL };
	struct host_listener *hostile = NULL;
	struct vguest_sock *listener;
	struct good gd;
	struct snap before, after;
	const Vsockmux__Control__Stats *b, *a;

	good_open(h, &gd, NULL);
	open_hostile(h, &hostile, STORM_KNOWN / 2, x.c, x.g);
	listener = vguest_listen(h->vg, HOSTILE_GUEST_PORT);
	CHECK(listener);
	for (unsigned i = STORM_KNOWN / 2; i < STORM_KNOWN; i++)
		sys_open_host_initiated(h, h->vg, listener, HOSTILE_GUEST_PORT, &x.c[i],
					&x.g[i]);
	before = snap_take(h);
	good_during(&gd, storm_step, &x, "RST storm");
	sys_tx_barrier(h, h->vg);
	for (unsigned i = 0; i < STORM_KNOWN; i++) {
		WAIT_FOR(h, 5000, host_peer_closed(x.c[i]));
		CHECKF(!x.g[i]->reset_received, "conn %u: the daemon answered an RST", i);
		vguest_sock_release(x.g[i]);
	}
	after = snap_take(h);
	b = before.response->stats;
	a = after.response->stats;
	printf("%u RSTs (%u live connections): rst_received +%" PRIu64 ", rst_unknown +%"
	       PRIu64 ", rst_sent +%" PRIu64 "\n", STORM_TOTAL, STORM_KNOWN,
	       a->rst_received - b->rst_received, drop_delta(&before, &after, "rst_unknown"),
	       a->rst_sent - b->rst_sent);
	CHECK(a->rst_received - b->rst_received == STORM_TOTAL);
	CHECK(drop_delta(&before, &after, "rst_unknown") == STORM_TOTAL - STORM_KNOWN);
	CHECK(a->rst_sent - b->rst_sent == 1);  /* the barrier's */
	CHECK(a->connections_current == 2);
	scenario_end(&gd, &before, &after, allowed);
}

/* ------------------------------------------------------------------ */
/* 11. no RX buffers while the host floods */

/*
 * RX starvation cannot leave host->guest traffic flowing (RX buffers are
 * per device) and stalls guest->host too once the guest used the credit
 * it knows of (credit updates travel on RX). So: the guest stops posting
 * RX buffers while both good streams run and the host floods; for a while
 * (bounded observation) we assert the daemon waits (waits_for_rx_buffers
 * counted, no RX buffer left), holds no host data (RSS bounded, nothing
 * buffered), and guest->host delivered only what the guest's credit
 * allowed. Then buffers come back: both streams complete byte for byte at
 * no less than half the undisturbed rate measured from the resume.
 */
static void test_hg_rx_starvation(struct sys_harness *h)
{
	struct good gd;
	struct snap before, after;
	Vsockmux__Control__Response *mid;
	uint64_t up_mark, down_mark, resume_ns;
	double up, down, up_after, down_after;
	long rss_starved;

	good_open(h, &gd, NULL);
	before = snap_take(h);
	vguest_set_rx_refill(h->vg, false);
	good_start(&gd, GOOD_BYTES);
	WAIT_FOR(h, 5000, vguest_rx_buffers_posted(h->vg) == 0);
	/* observe: it stops */
	sys_pump_for(h, 500);
	up_mark = gd.up_c->sink.received;
	down_mark = gd.down_gs->sink.received;
	sys_pump_for(h, 700);
	rss_starved = sys_process_rss_kib(gd.muxer);
	mid = sys_query_stats(h, false);
	printf("starved: up %" PRIu64 " KiB then %" PRIu64 " KiB, down %" PRIu64
	       " KiB then %" PRIu64 " KiB; waits_for_rx_buffers +%" PRIu64
	       "; buffered %" PRIu64 "; RSS %ld KiB\n", up_mark / KIB,
	       gd.up_c->sink.received / KIB, down_mark / KIB,
	       gd.down_gs->sink.received / KIB,
	       mid->stats->waits_for_rx_buffers - before.response->stats->waits_for_rx_buffers,
	       mid->stats->tx_buffered_bytes, rss_starved);
	CHECK(gd.down_gs->sink.received == down_mark);
	CHECK(gd.up_c->sink.received == up_mark);
	CHECK(up_mark < GOOD_BYTES && down_mark < GOOD_BYTES);
	CHECK(mid->stats->waits_for_rx_buffers > before.response->stats->waits_for_rx_buffers);
	CHECK(mid->stats->tx_buffered_bytes == 0);
	CHECK(rss_starved - gd.rss_before < RSS_BOUND_KIB);
	sys_stats_free(mid);
	resume_ns = sys_now_ns();
	vguest_set_rx_refill(h->vg, true);
	WAIT_FOR(h, DURING_TIMEOUT_MS, good_done(&gd));
	good_rates(&gd, resume_ns, GOOD_BYTES - up_mark, &up, &down);
	/* down: what was left after the stall */
	down = sys_mib_per_s(GOOD_BYTES - down_mark, gd.down_gs->sink.end_ns - resume_ns);
	/* the reference: the lower of the undisturbed runs before and after
	 * (see good_during) */
	good_measure(&gd, NULL, NULL, &up_after, &down_after, NULL);
	printf("after RX buffers came back: up %.1f MiB/s, down %.1f MiB/s (undisturbed "
	       "%.1f / %.1f before, %.1f / %.1f after)\n", up, down, gd.up_alone,
	       gd.down_alone, up_after, down_after);
	check_rate("up after resume", up_after < gd.up_alone ? up_after : gd.up_alone, up);
	check_rate("down after resume", down_after < gd.down_alone ? down_after : gd.down_alone,
		   down);
	after = snap_take(h);
	scenario_end(&gd, &before, &after, no_drops);
}

/* ------------------------------------------------------------------ */
/* 12. a guest socket that never reads */

#define LAZY_CONNS 8u

struct lazy_ctx {
	struct host_conn *c[LAZY_CONNS];
	struct vguest_sock *g[LAZY_CONNS];
};

static bool lazy_step(struct sys_harness *h, struct good *gd, void *opaque)
{
	struct lazy_ctx *x = opaque;
	(void)h;
	(void)gd;
	for (unsigned i = 0; i < LAZY_CONNS; i++)
		CHECKF(vguest_rx_pending(x->g[i]) <= VGUEST_DEFAULT_BUF_ALLOC,
		       "lazy conn %u: %zu bytes received beyond its buf_alloc", i,
		       vguest_rx_pending(x->g[i]));
	return true;
}

/*
 * Host-initiated connections whose guest sockets never read while their
 * host clients flood them: the daemon sends exactly the credit the guest
 * gave (buf_alloc each) and then waits for credit (waits_for_credit
 * counted) without reading the host sockets into memory; the good
 * connections are unaffected; once the guest reads, every byte is there
 * in order.
 */
static void test_hg_never_consumes(struct sys_harness *h)
{
	struct lazy_ctx x = { 0 };
	struct vguest_sock *listener;
	struct good gd;
	struct snap before, after;
	const Vsockmux__Control__Stats *b, *a;

	good_open(h, &gd, NULL);
	listener = vguest_listen(h->vg, HOSTILE_GUEST_PORT);
	CHECK(listener);
	for (unsigned i = 0; i < LAZY_CONNS; i++) {
		sys_open_host_initiated(h, h->vg, listener, HOSTILE_GUEST_PORT, &x.c[i], &x.g[i]);
		host_source(x.c[i], 800 + i, 64 * MIB, SYS_AFTER_NOTHING);
	}
	before = snap_take(h);
	for (unsigned i = 0; i < LAZY_CONNS; i++)
		WAIT_FOR(h, 5000, vguest_rx_pending(x.g[i]) == VGUEST_DEFAULT_BUF_ALLOC);
	good_during(&gd, lazy_step, &x, "never-reading guest sockets");
	(void)lazy_step(h, &gd, &x);
	after = snap_take(h);
	b = before.response->stats;
	a = after.response->stats;
	printf("%u lazy connections hold %u KiB each; waits_for_credit %" PRIu64
	       " -> %" PRIu64 ", tx_buffered %" PRIu64 "\n", LAZY_CONNS,
	       VGUEST_DEFAULT_BUF_ALLOC / KIB, b->waits_for_credit, a->waits_for_credit,
	       a->tx_buffered_bytes);
	CHECK(a->waits_for_credit >= LAZY_CONNS);
	snaps_check_free(&before, &after, no_drops);
	/* the guest reads at last: exact content, and the flood goes on */
	for (unsigned i = 0; i < LAZY_CONNS; i++) {
		struct guest_stream *gs = guest_stream_add(h, x.g[i]);
		guest_stream_sink(gs, 800 + i, 64 * MIB);
		WAIT_FOR(h, 5000, gs->sink.received >= 2 * VGUEST_DEFAULT_BUF_ALLOC);
		guest_stream_remove(h, gs);
		host_close(x.c[i]);
	}
	good_check_end(&gd);
	sys_check_guest_clean(h->vg);
}

/* ------------------------------------------------------------------ */
/* 13. malformed descriptor chains */

struct chain_kind {
	enum vguest_bad_chain kind;
	const char *reason;       /* its own key; plus malformed_chain */
};

static const struct chain_kind chain_kinds[] = {
	{ VGUEST_BAD_HEADER_OUTSIDE, "chain_outside_memory" },
	{ VGUEST_BAD_DATA_OUTSIDE, "chain_outside_memory" },
	{ VGUEST_BAD_DATA_STRADDLE, "chain_outside_memory" },
	{ VGUEST_BAD_DATA_WRAP, "chain_outside_memory" },
	{ VGUEST_BAD_SELF_LOOP, "chain_loop" },
	{ VGUEST_BAD_TWO_LOOP, "chain_loop" },
	{ VGUEST_BAD_NEXT_OUT_OF_RANGE, "chain_bad_index" },
	{ VGUEST_BAD_INDIRECT_TOO_LONG, "chain_bad_indirect" },
	{ VGUEST_BAD_WRITE_ONLY, "chain_wrong_direction" },
	{ VGUEST_BAD_SHORT_HEADER, "short_header" },
	{ VGUEST_BAD_NESTED_INDIRECT, "chain_bad_indirect" },
	{ VGUEST_BAD_INDIRECT_BAD_LEN, "chain_bad_indirect" },
	{ VGUEST_BAD_INDIRECT_OUTSIDE, "chain_outside_memory" },
	{ VGUEST_BAD_INDIRECT_EMPTY, "chain_bad_indirect" },
	{ VGUEST_BAD_INDIRECT_AND_NEXT, "chain_bad_indirect" },
};
#define CHAIN_KINDS (sizeof(chain_kinds) / sizeof(chain_kinds[0]))
#define CHAIN_REPEATS 40u
#define CHAIN_TOTAL (CHAIN_KINDS * CHAIN_REPEATS)

struct chain_ctx {
	uint32_t up_port;
	unsigned posted;
	uint32_t tokens[CHAIN_TOTAL];
	uint8_t junk[1000];
};

static bool chain_step(struct sys_harness *h, struct good *gd, void *opaque)
{
	struct chain_ctx *x = opaque;
	struct vsock_header bad = sys_guest_header(x->up_port, GOOD_HOST_PORT, VSOCK_OP_RW);
	(void)gd;
	bad.len = sizeof(x->junk);
	for (unsigned burst = 0; burst < 4 && x->posted < CHAIN_TOTAL; burst++) {
		enum vguest_bad_chain kind = chain_kinds[x->posted % CHAIN_KINDS].kind;
		if (vguest_post_bad_chain(h->vg, kind, &bad, x->junk, sizeof(x->junk),
					  &x->tokens[x->posted]) != 0) {
			CHECKF(errno == EAGAIN, "%s: %s", vguest_bad_chain_name(kind),
			       strerror(errno));
			return false;
		}
		x->posted++;
	}
	return x->posted == CHAIN_TOTAL;
}

/*
 * Every malformed TX chain kind (loops, next out of range, addresses
 * outside memory or wrapping 64 bits, misshapen indirect tables, wrong
 * direction, too short for a header), 40 of each, interleaved, while the
 * good streams run. The headers inside are RW for the good "up" pair with
 * junk: a daemon that took one would break that stream. Each chain comes
 * back used with length 0 and is counted once under malformed_chain and
 * once under its own kind (a chain shorter than a header is a well-formed
 * chain: short_header, not malformed_chain).
 */
static void test_hg_malformed_chains(struct sys_harness *h)
{
	static const char *const reasons[] = { "chain_outside_memory", "chain_loop",
					       "chain_bad_index", "chain_bad_indirect",
					       "chain_wrong_direction", "short_header",
					       "malformed_chain", NULL };
	struct chain_ctx *x = calloc(1, sizeof(*x));
	struct good gd;
	struct snap before, after;

	CHECK(x);
	good_open(h, &gd, NULL);
	x->up_port = gd.up_g->local_port;
	memset(x->junk, 'M', sizeof(x->junk));
	before = snap_take(h);
	good_during(&gd, chain_step, x, "malformed chains");
	for (unsigned i = 0; i < CHAIN_TOTAL; i++) {
		uint32_t used_len = 1;
		WAIT_FOR(h, 3000, vguest_chain_result(h->vg, x->tokens[i], &used_len) == 1);
		CHECKF(used_len == 0, "%s: used length %u",
		       vguest_bad_chain_name(chain_kinds[i % CHAIN_KINDS].kind), used_len);
	}
	after = snap_take(h);
	for (const char *const *reason = reasons; *reason; reason++) {
		uint64_t expected = 0;
		for (unsigned k = 0; k < CHAIN_KINDS; k++)
			if (strcmp(chain_kinds[k].reason, *reason) == 0 ||
			    (strcmp(*reason, "malformed_chain") == 0 &&
			     strcmp(chain_kinds[k].reason, "short_header") != 0))
				expected += CHAIN_REPEATS;
		check_drop_moved(&before, &after, *reason, expected);
	}
	free(x);
	scenario_end(&gd, &before, &after, reasons);
}

/* ------------------------------------------------------------------ */
/* 13b. malformed RX buffers */

struct rx_kind {
	enum vguest_bad_rx kind;
	const char *reason;
	bool malformed;           /* also malformed_chain */
};

static const struct rx_kind rx_kinds[] = {
	{ VGUEST_BAD_RX_READ_ONLY, "chain_wrong_direction", true },
	{ VGUEST_BAD_RX_MIXED, "chain_wrong_direction", true },
	{ VGUEST_BAD_RX_TOO_SHORT, "rx_buffer_too_small", false },
	{ VGUEST_BAD_RX_OUTSIDE, "chain_outside_memory", true },
};
#define RX_KINDS (sizeof(rx_kinds) / sizeof(rx_kinds[0]))
#define RX_REPEATS 25u
#define RX_TOTAL (RX_KINDS * RX_REPEATS)

struct rx_ctx {
	unsigned posted;
	uint32_t tokens[RX_TOTAL];
};

/* The vguest keeps its RX ring full; hold the refill back until there is
 * room, put the bad buffer there, refill again. */
static bool rx_step(struct sys_harness *h, struct good *gd, void *opaque)
{
	struct rx_ctx *x = opaque;
	(void)gd;
	if (x->posted == RX_TOTAL)
		return true;
	vguest_set_rx_refill(h->vg, false);
	if (vguest_rx_buffers_posted(h->vg) >= vguest_get_options(h->vg)->queue_size)
		return false;
	if (vguest_post_bad_rx_chain(h->vg, rx_kinds[x->posted % RX_KINDS].kind,
				     &x->tokens[x->posted]) != 0) {
		/* descriptors still short: wait for more to come back */
		CHECKF(errno == EAGAIN, "post bad RX buffer: %s", strerror(errno));
		return false;
	}
	x->posted++;
	vguest_set_rx_refill(h->vg, true);
	return x->posted == RX_TOTAL;
}

/*
 * Malformed RX buffers (read-only, read-only after a writable header
 * descriptor, too short for a header, outside guest memory) slipped in
 * between the good ones while the host floods "down": each comes back
 * used with length 0, nothing is written outside what its descriptors
 * allow (canaries), the good data goes to the good buffers byte for byte;
 * counted under its own key (and malformed_chain for the malformed ones;
 * a short one is rx_buffer_too_small).
 */
static void test_hg_malformed_rx_buffers(struct sys_harness *h)
{
	static const char *const reasons[] = { "chain_wrong_direction",
					       "rx_buffer_too_small", "chain_outside_memory",
					       "malformed_chain", NULL };
	struct rx_ctx x = { 0 };
	struct good gd;
	struct snap before, after;

	good_open(h, &gd, NULL);
	before = snap_take(h);
	good_during(&gd, rx_step, &x, "malformed RX buffers");
	for (unsigned i = 0; i < RX_TOTAL; i++) {
		uint32_t used_len = 1;
		const char *kind = rx_kinds[i % RX_KINDS].reason;
		WAIT_FOR(h, 3000, vguest_chain_result(h->vg, x.tokens[i], &used_len) == 1);
		CHECKF(used_len == 0, "bad RX buffer %u (%s): used length %u", i, kind, used_len);
		CHECKF(vguest_bad_rx_canary_intact(h->vg, x.tokens[i]), "bad RX buffer %u "
		       "(%s): the daemon wrote where it must not", i, kind);
	}
	after = snap_take(h);
	for (const char *const *reason = reasons; *reason; reason++) {
		uint64_t expected = 0;
		for (unsigned k = 0; k < RX_KINDS; k++)
			if (strcmp(rx_kinds[k].reason, *reason) == 0 ||
			    (strcmp(*reason, "malformed_chain") == 0 && rx_kinds[k].malformed))
				expected += RX_REPEATS;
		check_drop_moved(&before, &after, *reason, expected);
	}
	scenario_end(&gd, &before, &after, reasons);
}

/* ------------------------------------------------------------------ */
/* 14.-16. ring-level offences that stop a queue */

/* The frontend of old goes; a new guest with new good connections takes
 * its place in *gd, measured against the same muxer and its first RSS. */
static void good_reopen(struct sys_harness *h, struct good *old, struct good *gd)
{
	pid_t muxer = old->muxer;
	long rss = old->rss_before;

	host_conn_free(old->up_c);
	host_conn_free(old->down_c);
	host_listener_close(old->listener);
	sys_guest_drop(h, h->vg);
	memset(gd, 0, sizeof(*gd));
	(void)sys_guest_new(h, NULL);
	good_open_on(h, gd);
	gd->muxer = muxer;
	gd->rss_before = rss;
}

/* After a frontend had to go: the daemon (same processes) serves a new one
 * with content-checked traffic both ways. */
static void new_frontend_works(struct sys_harness *h, struct good *old)
{
	struct good gd;

	CHECK(sys_daemon_alive(h));
	CHECK(sys_daemon_child_pid(h) == old->muxer);
	good_reopen(h, old, &gd);
	good_check_end(&gd);
	sys_check_guest_clean(h->vg);
}

/* Observe a queue stopped: no byte of the stream through it moves. */
static void expect_stalled(struct sys_harness *h, const uint64_t *received,
			   const char *what)
{
	uint64_t mark;
	sys_pump_for(h, 200);
	mark = *received;
	sys_pump_for(h, 400);
	CHECKF(*received == mark, "%s still moves (%" PRIu64 " -> %" PRIu64 ")", what,
	       mark, *received);
}

/*
 * The avail index jumps more than a queue ahead, on TX on one frontend and
 * on RX on the next: that queue is broken until the VMM restarts it
 * (documented). So the good streams of that frontend stop (everything
 * delivered so far is exact), avail_index_jump is counted once per jump,
 * both processes stay up, and a new frontend gets working connections.
 */
static void test_hg_avail_index_jump(struct sys_harness *h)
{
	struct good gd;
	struct snap before, after;

	for (unsigned queue = VGUEST_QUEUE_TX;; queue = VGUEST_QUEUE_RX) {
		const uint64_t *stalled;
		if (queue == VGUEST_QUEUE_TX)
			good_open(h, &gd, NULL);
		stalled = queue == VGUEST_QUEUE_TX ? &gd.up_c->sink.received :
						     &gd.down_gs->sink.received;
		before = snap_take(h);
		good_start_flowing(&gd);
		vguest_avail_jump(h->vg, queue, (uint16_t)(vguest_get_options(h->vg)->queue_size + 1));
		expect_stalled(h, stalled, queue == VGUEST_QUEUE_TX ? "up" : "down");
		after = snap_take(h);
		printf("%s avail index jump: avail_index_jump +%" PRIu64 "; up %" PRIu64
		       " KiB, down %" PRIu64 " KiB delivered, exact\n",
		       queue == VGUEST_QUEUE_TX ? "TX" : "RX",
		       drop_delta(&before, &after, "avail_index_jump"),
		       gd.up_c->sink.received / KIB, gd.down_gs->sink.received / KIB);
		CHECK(drop_delta(&before, &after, "avail_index_jump") == 1);
		snaps_check_free(&before, &after, (const char *const[]){ "avail_index_jump", NULL });
		CHECK(sys_daemon_alive(h) && sys_daemon_child_pid(h) == gd.muxer);
		if (queue == VGUEST_QUEUE_RX)
			break;
		good_reopen(h, &gd, &gd);
	}
	new_frontend_works(h, &gd);
}

/*
 * SET_VRING_ADDR on a live ring (TX, then RX) with a layout the daemon
 * must refuse: refused (REPLY_ACK non-zero), counted ring_layout_invalid
 * once, and that queue stops (the documented "not started"): the stream
 * through it (guest->host for TX, host->guest for RX) stops, byte-exact
 * so far. The frontend then sends the right addresses again: the
 * queue resumes where it stopped and both streams complete byte for byte
 * on the same connections.
 */
static void run_bad_vring_addr(struct sys_harness *h, const char *what,
			       void (*make)(struct vguest *vg, uint64_t *desc,
					    uint64_t *avail, uint64_t *used, unsigned variant),
			       unsigned variants)
{
	struct good gd;
	struct snap before, after;
	uint64_t desc, avail, used, ack;

	good_open(h, &gd, NULL);
	CHECK(vguest_protocol_features(h->vg) & (1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK));
	for (unsigned variant = 0; variant < 2 * variants; variant++) {
		/* each layout on TX, then on RX */
		unsigned queue = variant < variants ? VGUEST_QUEUE_TX : VGUEST_QUEUE_RX;
		uint64_t resume_ns;
		double up, down;
		before = snap_take(h);
		good_start_flowing(&gd);
		vguest_ring_gpas(h->vg, queue, &desc, &avail, &used);
		make(h->vg, &desc, &avail, &used, variant % variants);
		CHECKF(vguest_set_vring_addr(h->vg, queue, desc, avail, used, &ack) == 0,
		       "SET_VRING_ADDR: %s", vguest_error(h->vg));
		printf("%s %u on %s: desc 0x%" PRIx64 " avail 0x%" PRIx64 " used 0x%" PRIx64
		       ": ack %" PRIu64 "\n", what, variant % variants,
		       queue == VGUEST_QUEUE_TX ? "TX" : "RX", desc, avail, used, ack);
		CHECKF(ack != 0, "a bad ring layout was accepted");
		if (queue == VGUEST_QUEUE_TX)
			expect_stalled(h, &gd.up_c->sink.received, "up");
		else
			expect_stalled(h, &gd.down_gs->sink.received, "down");
		after = snap_take(h);
		CHECK(drop_delta(&before, &after, "ring_layout_invalid") == 1);
		snaps_check_free(&before, &after, (const char *const[]){ "ring_layout_invalid", NULL });
		/* the right addresses again */
		vguest_ring_gpas(h->vg, queue, &desc, &avail, &used);
		CHECKF(vguest_set_vring_addr(h->vg, queue, desc, avail, used, &ack) == 0,
		       "SET_VRING_ADDR: %s", vguest_error(h->vg));
		CHECKF(ack == 0, "the right ring addresses were refused (%" PRIu64 ")", ack);
		resume_ns = sys_now_ns();
		{
			uint64_t up_left = gd.bytes - gd.up_c->sink.received;
			uint64_t down_left = gd.bytes - gd.down_gs->sink.received;
			WAIT_FOR(h, DURING_TIMEOUT_MS, good_done(&gd));
			up = sys_mib_per_s(up_left, gd.up_c->sink.end_ns - resume_ns);
			down = sys_mib_per_s(down_left, gd.down_gs->sink.end_ns - resume_ns);
		}
		printf("  resumed: up %.1f MiB/s, down %.1f MiB/s (undisturbed %.1f / %.1f)\n",
		       up, down, gd.up_alone, gd.down_alone);
	}
	good_check_end(&gd);
	sys_check_guest_clean(h->vg);
}

/* Used ring on the descriptor table, then avail on used, then desc on
 * avail. */
static void make_overlap(struct vguest *vg, uint64_t *desc, uint64_t *avail,
			 uint64_t *used, unsigned variant)
{
	(void)vg;
	if (variant == 0)
		*used = *desc;
	else if (variant == 1)
		*avail = *used;
	else
		*desc = *avail & ~15ull;
}

static void test_hg_used_ring_overlaps_descriptors(struct sys_harness *h)
{
	run_bad_vring_addr(h, "overlapping rings", make_overlap, 3);
}

/* Each ring in turn beyond guest memory, one straddling its end, one at
 * an address that wraps. */
static void make_outside(struct vguest *vg, uint64_t *desc, uint64_t *avail,
			 uint64_t *used, unsigned variant)
{
	uint64_t size = vguest_get_options(vg)->memory_size;
	if (variant == 0)
		*desc = size + 4096;
	else if (variant == 1)
		*avail = size * 4;
	else if (variant == 2)
		*used = size - 64;
	else
		*desc = UINT64_MAX - 4095;
}

static void test_hg_vring_addr_outside_memory(struct sys_harness *h)
{
	run_bad_vring_addr(h, "rings outside memory", make_outside, 4);
}

/* SET_VRING_ENABLE for queue index. */
static void vring_enable(struct sys_harness *h, unsigned index, unsigned enable)
{
	struct vhost_user_vring_state state = { .index = index, .num = enable };
	CHECKF(vguest_vhost_send_raw(h->vg, VHOST_USER_SET_VRING_ENABLE, VHOST_USER_VERSION,
				     sizeof(state), &state, sizeof(state), NULL, 0) == 0,
	       "SET_VRING_ENABLE: %s", vguest_error(h->vg));
}

/*
 * A ring stopped without GET_VRING_BASE while the daemon holds RX buffers
 * it popped but has not filled (its addresses refused by a bad
 * SET_VRING_ADDR, or the ring disabled with SET_VRING_ENABLE 0), then a
 * new memory table (the old mapping goes away), then the ring back (the
 * right addresses, or enabled again). Buffers popped from the old mapping
 * must never be written: the daemon hands them back (or forgets them when
 * their used ring is not mapped) before it unmaps. Both streams resume
 * byte for byte; nothing is counted but the refused layouts (each twice:
 * when refused, and when the new table is checked against it).
 *
 * Regression: the muxer wrote host data into such a buffer in the
 * unmapped old mapping and died of SIGSEGV (both processes gone); fixed
 * in daemon/vhost_user.c handle_set_mem_table.
 */
static void test_hg_mem_table_while_ring_stopped(struct sys_harness *h)
{
	struct good gd;
	struct snap before, after;
	uint64_t desc, avail, used, ack;
	unsigned refused = 0;

	good_open(h, &gd, NULL);
	before = snap_take(h);
	for (unsigned round = 0; round < 8; round++) {
		unsigned queue = round % 2 ? VGUEST_QUEUE_TX : VGUEST_QUEUE_RX;
		bool disable = round % 4 >= 2;
		good_start_flowing(&gd);
		vguest_ring_gpas(h->vg, queue, &desc, &avail, &used);
		if (disable) {
			vring_enable(h, queue, 0);
		} else {
			CHECK(vguest_set_vring_addr(h->vg, queue, desc, avail,
						    vguest_get_options(h->vg)->memory_size,
						    &ack) == 0);
			CHECK(ack != 0);
			refused++;
		}
		CHECKF(vguest_resend_mem_table(h->vg) == 0, "SET_MEM_TABLE: %s",
		       vguest_error(h->vg));
		if (disable) {
			vring_enable(h, queue, 1);
		} else {
			CHECK(vguest_set_vring_addr(h->vg, queue, desc, avail, used, &ack) == 0);
			CHECK(ack == 0);
		}
		WAIT_FOR(h, DURING_TIMEOUT_MS, good_done(&gd) || !sys_daemon_alive(h));
		CHECKF(sys_daemon_alive(h), "the daemon died");
		printf("round %u: %s %s, new memory table, ring back: both streams complete\n",
		       round, queue == VGUEST_QUEUE_RX ? "RX" : "TX",
		       disable ? "disabled" : "addresses refused");
	}
	after = snap_take(h);
	/* each refused layout counts twice: at SET_VRING_ADDR and again when
	 * the new memory table is checked against it */
	CHECK(drop_delta(&before, &after, "ring_layout_invalid") == 2 * refused);
	scenario_end(&gd, &before, &after, (const char *const[]){ "ring_layout_invalid", NULL });
}

static const struct sys_test tests[] = {
#define SCENARIO SYS_SCENARIO_ENTRY
#include "test_hostile_guest.def"
#undef SCENARIO
};

int main(int argc, char **argv)
{
	/* AddressSanitizer's quarantine (256 MiB by default) keeps every
	 * freed block resident for a while: the per-connection rings freed
	 * while 64 MiB streams run would grow the RSS by tens of MiB with no
	 * leak at all. 16 MiB keeps use-after-free detection for recent frees
	 * and lets the RSS bound measure the daemon. */
	{
		const char *asan = getenv("ASAN_OPTIONS");
		char options[512];
		if (!asan)
			asan = "abort_on_error=1:halt_on_error=1";
		if (!strstr(asan, "quarantine_size_mb")) {
			snprintf(options, sizeof(options), "%s:quarantine_size_mb=16", asan);
			setenv("ASAN_OPTIONS", options, 1);
		}
	}
	return sys_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
