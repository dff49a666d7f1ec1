/*
 * test_soak.c - soak: many connections, both ways of opening, against the
 * real two-process vsockmuxd through the virtual guest, with random sizes
 * (0 B .. 8 MiB, skewed), random write sizes on both sides, random
 * half-close / close / reset-after-done endings and random reader stalls
 * (host reader paused, guest not reading). Every byte is content-checked;
 * the end checks that nothing was lost and that the daemon's counters agree
 * (every byte counted, no drop, no refusal).
 *
 * Settings (environment):
 *   VSOCKMUX_SOAK_SEED     random seed (default: from the clock; printed)
 *   VSOCKMUX_SOAK_CONNS    connections in all, half opened by each side
 *                          (default 1000; long: 10000)
 *   VSOCKMUX_SOAK_SECONDS  time budget for them all (default 45; long: 1800)
 *   VSOCKMUX_SOAK_LONG=1   the long version: 10000 connections, 30 min
 *                          budget, large sizes more often (40% 0..64 KiB,
 *                          30% 64 KiB..1 MiB, 30% 1..8 MiB: ~30 GiB)
 * The suite runs the short version: 1000 connections, at most 96 open at
 * once, sizes each way 60% 0..64 KiB (5% exactly 0), 25% 64 KiB..1 MiB,
 * 15% 1..8 MiB (about 1.7 GiB in all; seconds with the sanitizers).
 *
 * Owns: the soak scenario. Never: sleeps to synchronise; every wait is
 * bounded by the budget.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sys_harness.h"

#define KIB 1024u
#define MIB (1024u * 1024u)
#define SOAK_MAX_OPEN 96u
#define SOAK_CHUNK_MAX (256u * KIB)

enum soak_ending {
	END_HALF_CLOSE,     /* each side SHUT_WR / SHUTDOWN(SEND) when done */
	END_GUEST_CLOSE,    /* the guest closes once it has everything */
	END_HOST_CLOSE,     /* the host closes once it has everything */
	END_GUEST_RESET,    /* all done both ways, then the guest resets */
	END_COUNT,
};

static const char *const ending_names[END_COUNT] = {
	"half-close", "guest close", "host close", "guest reset after done",
};

struct soak_conn {
	bool used;
	unsigned id;
	bool from_host;
	enum soak_ending ending;
	struct host_conn *c;
	struct vguest_sock *g;
	struct guest_stream *gs;
	uint32_t seed_h2g, seed_g2h;
	uint64_t h2g, g2h, h2g_sent, g2h_sent;
	bool host_shut, guest_shut, host_closed, guest_closed;
	bool stalls, stalled;
	uint64_t next_toggle_ns;
};

static struct {
	uint64_t state;
	bool long_mode;
	unsigned conns;
	unsigned seconds;
	uint64_t seed;
} soak;

static uint64_t soak_rand(void)
{
	uint64_t x = soak.state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	soak.state = x;
	return x;
}

/* Uniform in [low, high]. */
static uint64_t soak_between(uint64_t low, uint64_t high)
{
	return low + soak_rand() % (high - low + 1);
}

static uint64_t soak_size(void)
{
	unsigned roll = (unsigned)(soak_rand() % 1000);
	unsigned large = soak.long_mode ? 300 : 150, medium = soak.long_mode ? 300 : 250;

	if (roll < 50)
		return 0;
	if (roll < 1000 - large - medium)
		return soak_between(1, 64 * KIB);
	if (roll < 1000 - large)
		return soak_between(64 * KIB, 1 * MIB);
	return soak_between(1 * MIB, 8 * MIB);
}

/* One write: mostly small, sometimes tiny, sometimes large. */
static size_t soak_write_size(size_t limit)
{
	size_t size;
	switch (soak_rand() % 4) {
	case 0:
		size = (size_t)soak_between(1, 16);
		break;
	case 1:
		size = (size_t)soak_between(1, 4096);
		break;
	case 2:
		size = (size_t)soak_between(1, 64 * KIB);
		break;
	default:
		size = (size_t)soak_between(64 * KIB, SOAK_CHUNK_MAX);
		break;
	}
	return size < limit ? size : limit;
}

static unsigned env_unsigned(const char *name, unsigned fallback)
{
	const char *text = getenv(name);
	char *end;
	unsigned long value;

	if (!text || !*text)
		return fallback;
	errno = 0;
	value = strtoul(text, &end, 0);
	if (errno != 0 || *end != '\0' || value == 0 || value > 100000000ul) {
		fprintf(stderr, "%s=%s: not a positive number\n", name, text);
		exit(2);
	}
	return (unsigned)value;
}

static struct {
	uint64_t h2g_bytes, g2h_bytes;        /* arrived, content-checked */
	uint64_t h2g_expected, g2h_expected;
	unsigned completed, from_host, from_guest, stalled_conns, stall_events;
	unsigned endings[END_COUNT];
	uint64_t zero_sized, over_1mib;
} totals;

static void soak_open(struct sys_harness *h, struct soak_conn *s, unsigned id,
		      bool from_host, struct vguest_sock *listener,
		      struct host_listener *l)
{
	memset(s, 0, sizeof(*s));
	s->used = true;
	s->id = id;
	s->from_host = from_host;
	s->ending = (enum soak_ending)(soak_rand() % END_COUNT);
	s->h2g = soak_size();
	s->g2h = soak_size();
	s->seed_h2g = (uint32_t)soak_rand();
	s->seed_g2h = (uint32_t)soak_rand();
	s->stalls = soak_rand() % 3 == 0;
	if (from_host)
		sys_open_host_initiated(h, h->vg, listener, 52, &s->c, &s->g);
	else
		sys_open_guest_initiated(h, h->vg, l, &s->c, &s->g);
	snprintf(s->c->name, sizeof(s->c->name), "soak#%u host", id);
	s->gs = guest_stream_add(h, s->g);
	snprintf(s->gs->name, sizeof(s->gs->name), "soak#%u guest", id);
	host_sink(s->c, s->seed_g2h, s->g2h);
	guest_stream_sink(s->gs, s->seed_h2g, s->h2g);
	s->next_toggle_ns = sys_now_ns() + soak_between(0, 5) * 1000000ull;
	totals.h2g_expected += s->h2g;
	totals.g2h_expected += s->g2h;
	totals.from_host += from_host;
	totals.from_guest += !from_host;
	totals.stalled_conns += s->stalls;
	totals.endings[s->ending]++;
	totals.zero_sized += (s->h2g == 0) + (s->g2h == 0);
	totals.over_1mib += (s->h2g > MIB) + (s->g2h > MIB);
}

static size_t host_out_pending(const struct host_conn *c)
{
	return c->out.tail - c->out.head;
}

static void soak_set_stalled(struct soak_conn *s, bool stalled)
{
	s->stalled = stalled;
	if (!stalled) {
		host_set_paused(s->c, false);
		s->gs->sink.active = true;
	} else if (soak_rand() % 2) {
		host_set_paused(s->c, true);
	} else {
		s->gs->sink.active = false;   /* the guest does not read */
	}
}

/* Move this connection along; true once it is over (both ends closed). */
static bool soak_step(struct soak_conn *s, uint8_t *buffer)
{
	struct host_conn *c = s->c;
	struct vguest_sock *g = s->g;
	uint64_t now = sys_now_ns();
	bool host_all_sent, guest_all_sent, host_got_all, guest_got_all, guest_eof;

	/* the writers: random sizes; the host only writes into an empty
	 * buffer, so every send() is one of these sizes (or its rest) */
	while (!s->host_closed && c->fd >= 0 && !c->error && s->h2g_sent < s->h2g &&
	       host_out_pending(c) == 0) {
		size_t chunk = soak_write_size((size_t)(s->h2g - s->h2g_sent));
		pattern_fill(s->seed_h2g, s->h2g_sent, buffer, chunk);
		host_write(c, buffer, chunk);
		s->h2g_sent += chunk;
	}
	while (!s->guest_shut && !s->guest_closed && s->g2h_sent < s->g2h) {
		uint32_t credit = vguest_sock_credit(g);
		size_t chunk;
		ssize_t sent;
		if (credit == 0)
			break;
		chunk = soak_write_size((size_t)(s->g2h - s->g2h_sent));
		if (chunk > credit)
			chunk = credit;
		pattern_fill(s->seed_g2h, s->g2h_sent, buffer, chunk);
		sent = vguest_send(g, buffer, chunk);
		if (sent < 0) {
			CHECKF(errno == EAGAIN, "soak#%u: guest send: %s (state %s)", s->id,
			       strerror(errno), vguest_sock_state_name(g->state));
			break;
		}
		s->g2h_sent += (uint64_t)sent;
	}
	host_all_sent = s->h2g_sent == s->h2g && host_out_pending(c) == 0;
	guest_all_sent = s->g2h_sent == s->g2h;
	host_got_all = c->sink.received == s->g2h;
	guest_got_all = s->gs->sink.received == s->h2g;
	guest_eof = vguest_rx_pending(g) == 0 &&
		    (vguest_sock_eof(g) || g->state == VGUEST_SOCK_CLOSED);

	/* reader stalls while data flows; none once both sides sent all */
	if (s->stalls && host_all_sent && guest_all_sent) {
		s->stalls = false;
		soak_set_stalled(s, false);
	}
	if (s->stalls && now >= s->next_toggle_ns) {
		soak_set_stalled(s, !s->stalled);
		totals.stall_events += s->stalled;
		s->next_toggle_ns = now + (s->stalled ? soak_between(1, 20)
						      : soak_between(1, 30)) * 1000000ull;
	}

	/* nothing may end early: an end before the last byte is loss */
	CHECKF(s->host_closed || !host_peer_closed(c) || host_got_all ||
	       (s->ending == END_GUEST_RESET && s->guest_closed),
	       "soak#%u (%s, %s): host side %s after %" PRIu64 " of %" PRIu64
	       " bytes", s->id, s->from_host ? "from host" : "from guest",
	       ending_names[s->ending], c->error ? strerror(c->error_code) : "EOF",
	       c->sink.received, s->g2h);
	CHECKF(!s->gs->sink.active || !guest_eof || guest_got_all,
	       "soak#%u (%s, %s): guest side %s after %" PRIu64 " of %" PRIu64
	       " bytes", s->id, s->from_host ? "from host" : "from guest",
	       ending_names[s->ending], g->reset_received ? "reset" : "EOF",
	       s->gs->sink.received, s->h2g);

	switch (s->ending) {
	case END_HALF_CLOSE:
		if (host_all_sent && !s->host_shut) {
			host_shutdown_wr(c);
			s->host_shut = true;
		}
		if (guest_all_sent && !s->guest_shut && g->state == VGUEST_SOCK_CONNECTED) {
			CHECK(vguest_shutdown(g, VSOCK_SHUTDOWN_SEND) == 0);
			s->guest_shut = true;
		}
		/* both directions shut: the daemon ends it with an RST */
		if (host_got_all && host_peer_closed(c) && guest_got_all && guest_eof &&
		    g->state == VGUEST_SOCK_CLOSED) {
			host_close(c);
			s->host_closed = true;
			s->guest_closed = true;
		}
		break;
	case END_GUEST_CLOSE:
		if (guest_all_sent && guest_got_all && !s->guest_closed) {
			CHECK(vguest_close(g) == 0);
			s->guest_closed = true;
		}
		if (s->guest_closed && host_got_all && host_peer_closed(c) && !s->host_closed) {
			host_close(c);
			s->host_closed = true;
		}
		break;
	case END_HOST_CLOSE:
		if (host_all_sent && host_got_all && !s->host_closed) {
			host_close(c);
			s->host_closed = true;
		}
		if (s->host_closed && guest_got_all && guest_eof && !s->guest_closed) {
			CHECK(vguest_close(g) == 0);
			s->guest_closed = true;
		}
		break;
	case END_GUEST_RESET:
		if (host_all_sent && guest_all_sent && host_got_all && guest_got_all &&
		    !s->guest_closed) {
			CHECK(vguest_reset(g) == 0);
			s->guest_closed = true;
		}
		if (s->guest_closed && !s->host_closed && host_peer_closed(c)) {
			host_close(c);
			s->host_closed = true;
		}
		break;
	default:
		break;
	}
	return s->host_closed && s->guest_closed && g->state == VGUEST_SOCK_CLOSED;
}

static void soak_finish(struct sys_harness *h, struct soak_conn *s)
{
	totals.h2g_bytes += s->gs->sink.received;
	totals.g2h_bytes += s->c->sink.received;
	totals.completed++;
	guest_stream_remove(h, s->gs);
	host_conn_free(s->c);
	vguest_sock_release(s->g);
	s->used = false;
}

static void soak_print_open(const struct soak_conn *conns)
{
	for (unsigned i = 0; i < SOAK_MAX_OPEN; i++) {
		const struct soak_conn *s = &conns[i];
		if (!s->used)
			continue;
		fprintf(stderr, "  soak#%u %s %s: h2g %" PRIu64 "/%" PRIu64 " (sent %" PRIu64
			") g2h %" PRIu64 "/%" PRIu64 " (sent %" PRIu64 ") host %s%s guest %s%s "
			"stalled %d\n", s->id, s->from_host ? "from-host" : "from-guest",
			ending_names[s->ending], s->gs->sink.received, s->h2g, s->h2g_sent,
			s->c->sink.received, s->g2h, s->g2h_sent,
			s->host_closed ? "closed" : host_peer_closed(s->c) ? "peer-closed" : "open",
			s->c->paused ? " paused" : "", vguest_sock_state_name(s->g->state),
			s->gs->sink.active ? "" : " not-reading", s->stalled);
	}
}

/* VSOCKMUX_SOAK_DEBUG: every pair with a packet after an RST (a close
 * race), as G/D (from guest / daemon) op/flags@ms. */
static bool same_pair(const struct vsock_header *a, const struct vsock_header *b)
{
	return (a->src_port == b->src_port && a->dst_port == b->dst_port) ||
	       (a->src_port == b->dst_port && a->dst_port == b->src_port);
}

static void soak_print_races(const struct vguest *vg)
{
	size_t count;
	const struct vguest_packet_record *log = vguest_packet_log(vg, &count);

	for (size_t i = 0; i < count; i++) {
		bool after = false;
		if (log[i].header.op != VSOCK_OP_RST)
			continue;
		for (size_t j = i + 1; j < count && !after; j++)
			after = same_pair(&log[j].header, &log[i].header);
		if (!after)
			continue;
		fprintf(stderr, "pair %u<->%u:", log[i].header.src_port, log[i].header.dst_port);
		for (size_t j = 0; j < count; j++)
			if (same_pair(&log[j].header, &log[i].header))
				fprintf(stderr, " %s%u/%u@%.3f", log[j].from_guest ? "G" : "D",
					log[j].header.op, log[j].header.flags,
					(double)(log[j].time_ns % 100000000000ull) / 1e6);
		fprintf(stderr, "\n");
	}
}

static void test_soak(struct sys_harness *h)
{
	struct soak_conn *conns = calloc(SOAK_MAX_OPEN, sizeof(*conns));
	uint8_t *buffer = malloc(SOAK_CHUNK_MAX);
	struct vguest_sock *listener;
	struct host_listener *l;
	Vsockmux__Control__Response *response;
	const Vsockmux__Control__Stats *stats;
	uint64_t start, end, budget_end;
	unsigned started = 0, open = 0, host_left, guest_left;
	uint64_t dropped = 0, close_races = 0;
	long rss;

	CHECK(conns && buffer);
	printf("soak: seed %" PRIu64 " (VSOCKMUX_SOAK_SEED), %u connections, %u s budget, "
	       "%s sizes\n", soak.seed, soak.conns, soak.seconds,
	       soak.long_mode ? "long-mode" : "short-mode");
	sys_setup(h);
	listener = vguest_listen(h->vg, 52);
	CHECK(listener);
	l = host_listen(h, 1234);
	host_left = soak.conns / 2;
	guest_left = soak.conns - host_left;
	start = sys_now_ns();
	budget_end = start + (uint64_t)soak.seconds * 1000000000ull;
	while (totals.completed < soak.conns) {
		if (sys_now_ns() >= budget_end) {
			soak_print_open(conns);
			FAIL("soak: %u of %u connections completed within %u s", totals.completed,
			     soak.conns, soak.seconds);
		}
		for (unsigned i = 0; i < SOAK_MAX_OPEN && started < soak.conns; i++) {
			bool from_host;
			if (conns[i].used)
				continue;
			/* both kinds, shuffled, exactly half each */
			from_host = guest_left == 0 ||
				    (host_left > 0 && soak_rand() % (host_left + guest_left) < host_left);
			if (from_host)
				host_left--;
			else
				guest_left--;
			soak_open(h, &conns[i], started++, from_host, listener, l);
			open++;
		}
		for (unsigned i = 0; i < SOAK_MAX_OPEN; i++) {
			if (conns[i].used && soak_step(&conns[i], buffer)) {
				soak_finish(h, &conns[i]);
				open--;
			}
		}
		sys_pump(h, 5);
	}
	end = sys_now_ns();
	WAIT_FOR(h, 10000, (response = sys_query_stats(h, false),
			    open = (unsigned)response->stats->connections_current,
			    sys_stats_free(response), open == 0));
	response = sys_query_stats(h, false);
	stats = response->stats;
	for (size_t i = 0; i < stats->n_dropped; i++) {
		bool race = strcmp(stats->dropped[i]->key, "no_connection") == 0 ||
			    strcmp(stats->dropped[i]->key, "rst_unknown") == 0;
		if (stats->dropped[i]->value != 0)
			printf("  dropped %s: %" PRIu64 "%s\n", stats->dropped[i]->key,
			       stats->dropped[i]->value, race ? " (close races)" : "");
		if (race)
			close_races += stats->dropped[i]->value;
		else
			dropped += stats->dropped[i]->value;
	}
	rss = sys_process_rss_kib(sys_daemon_child_pid(h));
	printf("soak: %u connections completed (%u opened by the host, %u by the guest; "
	       "%u with %u reader stalls; endings: %u half-close, %u guest close, %u host "
	       "close, %u guest reset after done; %" PRIu64 " empty and %" PRIu64
	       " over 1 MiB transfers) in %.1f s\n", totals.completed, totals.from_host,
	       totals.from_guest, totals.stalled_conns, totals.stall_events, totals.endings[END_HALF_CLOSE],
	       totals.endings[END_GUEST_CLOSE], totals.endings[END_HOST_CLOSE],
	       totals.endings[END_GUEST_RESET], totals.zero_sized, totals.over_1mib,
	       (double)(end - start) / 1e9);
	printf("soak: host->guest %" PRIu64 " bytes, guest->host %" PRIu64 " bytes "
	       "(%.1f MiB/s together), loss %" PRIu64 " bytes\n", totals.h2g_bytes,
	       totals.g2h_bytes, sys_mib_per_s(totals.h2g_bytes + totals.g2h_bytes, end - start),
	       (totals.h2g_expected - totals.h2g_bytes) + (totals.g2h_expected - totals.g2h_bytes));
	printf("soak: daemon: %" PRIu64 " from host + %" PRIu64 " from guest connections, "
	       "peak %" PRIu64 ", bytes to host %" PRIu64 ", to guest %" PRIu64
	       ", %" PRIu64 " dropped, refused %" PRIu64 "/%" PRIu64 "/%" PRIu64
	       ", waits for credit %" PRIu64 ", for RX buffers %" PRIu64
	       "; muxer RSS %ld KiB\n", stats->connections_total_from_host,
	       stats->connections_total_from_guest, stats->connections_peak,
	       stats->bytes_to_host, stats->bytes_to_guest, dropped,
	       stats->refused_no_host_listener, stats->refused_limit,
	       stats->refused_guest_refused, stats->waits_for_credit,
	       stats->waits_for_rx_buffers, rss);
	if (getenv("VSOCKMUX_SOAK_DEBUG"))
		soak_print_races(h->vg);
	CHECK(totals.h2g_bytes == totals.h2g_expected);
	CHECK(totals.g2h_bytes == totals.g2h_expected);
	CHECKF(stats->bytes_to_guest == totals.h2g_bytes, "daemon counted %" PRIu64
	       " bytes to the guest, the guest got %" PRIu64, stats->bytes_to_guest,
	       totals.h2g_bytes);
	CHECKF(stats->bytes_to_host == totals.g2h_bytes, "daemon counted %" PRIu64
	       " bytes to the host, the host got %" PRIu64, stats->bytes_to_host,
	       totals.g2h_bytes);
	CHECK(stats->connections_total_from_host == totals.from_host);
	CHECK(stats->connections_total_from_guest == totals.from_guest);
	CHECKF(dropped == 0, "the daemon dropped %" PRIu64 " packets of well-behaved "
	       "connections", dropped);
	/* A packet that crosses an RST on the wire (a CREDIT_UPDATE sent
	 * while the guest's RST is on its way, a guest SHUTDOWN while the
	 * daemon's RST is) meets no connection and is answered or counted,
	 * as Linux does: at most one per connection that ended by RST. */
	CHECKF(close_races <= totals.endings[END_GUEST_RESET] + totals.endings[END_HALF_CLOSE],
	       "%" PRIu64 " packets for closed connections: more than close races "
	       "explain", close_races);
	CHECK(stats->refused_no_host_listener == 0 && stats->refused_limit == 0 &&
	      stats->refused_guest_refused == 0 && stats->refused_bad_connect_line == 0 &&
	      stats->refused_handshake_timeout == 0 && stats->refused_handshake_limit == 0);
	CHECK(stats->connections_peak <= SOAK_MAX_OPEN + 1);
	sys_stats_free(response);
	sys_check_guest_clean(h->vg);
	free(conns);
	free(buffer);
}

static struct sys_test tests[] = {
#define SCENARIO SYS_SCENARIO_ENTRY
#include "test_soak.def"
#undef SCENARIO
};

int main(int argc, char **argv)
{
	const char *seed = getenv("VSOCKMUX_SOAK_SEED");

	soak.long_mode = getenv("VSOCKMUX_SOAK_LONG") && strcmp(getenv("VSOCKMUX_SOAK_LONG"), "1") == 0;
	soak.conns = env_unsigned("VSOCKMUX_SOAK_CONNS", soak.long_mode ? 10000 : 1000);
	soak.seconds = env_unsigned("VSOCKMUX_SOAK_SECONDS", soak.long_mode ? 1800 : 45);
	if (seed && *seed) {
		soak.seed = strtoull(seed, NULL, 0);
	} else {
		struct timespec now;
		clock_gettime(CLOCK_REALTIME, &now);
		soak.seed = ((uint64_t)now.tv_sec * 1000000007ull) ^ (uint64_t)now.tv_nsec ^
			    ((uint64_t)getpid() << 32);
	}
	soak.state = soak.seed ? soak.seed : 0x9e3779b97f4a7c15ull;
	/* room for set-up and the final checks beyond the budget */
	tests[0].timeout_s = (int)soak.seconds + 30;
	return sys_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
