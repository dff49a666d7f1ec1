/*
 * sys_streams.c - content-checked transfers: the deterministic byte
 * pattern, sinks that check every arriving byte against it, guest-side
 * streams (sources and sinks on guest sockets), and the transfer helpers
 * tests call (open a connection either way, read or write exactly, expect
 * bytes on the host, a ready-made guest packet header).
 *
 * Owns: h->streams and the pattern table. Never: accepts a byte it has
 * not checked, or waits without the test deadline.
 */
#include "sys_harness_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PATTERN_PERIOD 65521u
#define PATTERN_CHUNK 65536u

/* ------------------------------------------------------------------ */
/* patterns */

static uint8_t pattern_table[PATTERN_PERIOD + PATTERN_CHUNK];
static pthread_once_t pattern_once = PTHREAD_ONCE_INIT;

static void pattern_init(void)
{
	uint32_t state = 0x9e3779b9u;
	for (size_t i = 0; i < PATTERN_PERIOD; i++) {
		state ^= state << 13;
		state ^= state >> 17;
		state ^= state << 5;
		pattern_table[i] = (uint8_t)(state >> 11);
	}
	/* the tail repeats the start so any chunk is one contiguous copy */
	for (size_t i = 0; i < PATTERN_CHUNK; i++)
		pattern_table[PATTERN_PERIOD + i] = pattern_table[i];
}

static size_t pattern_index(uint32_t seed, uint64_t offset)
{
	return (size_t)((offset + (uint64_t)seed * 7919u) % PATTERN_PERIOD);
}

void pattern_fill(uint32_t seed, uint64_t offset, uint8_t *buffer, size_t len)
{
	pthread_once(&pattern_once, pattern_init);
	while (len > 0) {
		size_t chunk = len < PATTERN_CHUNK ? len : PATTERN_CHUNK;
		memcpy(buffer, pattern_table + pattern_index(seed, offset), chunk);
		buffer += chunk;
		offset += chunk;
		len -= chunk;
	}
}

size_t pattern_check(uint32_t seed, uint64_t offset, const uint8_t *buffer,
		     size_t len)
{
	size_t done = 0;
	pthread_once(&pattern_once, pattern_init);
	while (done < len) {
		size_t left = len - done;
		size_t chunk = left < PATTERN_CHUNK ? left : PATTERN_CHUNK;
		const uint8_t *expected = pattern_table + pattern_index(seed, offset + done);
		if (memcmp(buffer + done, expected, chunk) != 0) {
			size_t i = 0;
			while (buffer[done + i] == expected[i])
				i++;
			return done + i;
		}
		done += chunk;
	}
	return len;
}

/* Feed received bytes into a sink; fail on wrong content or excess. */
void source_start(struct sys_source *source, uint32_t seed, uint64_t total,
		  enum sys_after after)
{
	memset(source, 0, sizeof(*source));
	source->active = true;
	source->seed = seed;
	source->total = total;
	source->after = after;
	source->start_ns = sys_now_ns();
}

void sink_start(struct sys_sink *sink, uint32_t seed, uint64_t expected)
{
	memset(sink, 0, sizeof(*sink));
	sink->active = true;
	sink->seed = seed;
	sink->expected = expected;
}

void sink_feed(const char *name, struct sys_sink *sink,
		      const uint8_t *data, size_t len)
{
	size_t bad;
	if (len == 0)
		return;
	if (sink->received == 0)
		sink->start_ns = sys_now_ns();
	if (sink->received + len > sink->expected)
		FAIL("%s: received %" PRIu64 " bytes, more than the %" PRIu64 " expected",
		     name, sink->received + len, sink->expected);
	bad = pattern_check(sink->seed, sink->received, data, len);
	if (bad != len) {
		uint8_t want;
		pattern_fill(sink->seed, sink->received + bad, &want, 1);
		FAIL("%s: content mismatch at stream offset %" PRIu64
		     ": got 0x%02x, expected 0x%02x (chunk of %zu bytes)",
		     name, sink->received + bad, data[bad], want, len);
	}
	sink->received += len;
	if (sink->received == sink->expected)
		sink->end_ns = sys_now_ns();
}

struct vsock_header sys_guest_header(uint32_t src_port, uint32_t dst_port,
				     uint16_t op)
{
	struct vsock_header header = {
		.src_cid = VGUEST_DEFAULT_CID,
		.dst_cid = VSOCK_HOST_CID,
		.src_port = src_port,
		.dst_port = dst_port,
		.type = VSOCK_TYPE_STREAM,
		.op = op,
		.buf_alloc = VGUEST_DEFAULT_BUF_ALLOC,
	};
	return header;
}

/* ------------------------------------------------------------------ */
/* guest streams */

struct guest_stream *guest_stream_add(struct sys_harness *h,
				      struct vguest_sock *sock)
{
	struct guest_stream *gs = calloc(1, sizeof(*gs));
	CHECKF(gs, "out of memory");
	gs->sock = sock;
	snprintf(gs->name, sizeof(gs->name), "guest:%u<->%u", sock->local_port,
		 sock->peer_port);
	gs->next = h->streams;
	h->streams = gs;
	return gs;
}

void guest_stream_source(struct guest_stream *gs, uint32_t seed,
			 uint64_t total, enum sys_after after)
{
	source_start(&gs->source, seed, total, after);
}

void guest_stream_sink(struct guest_stream *gs, uint32_t seed, uint64_t expected)
{
	sink_start(&gs->sink, seed, expected);
}

void guest_stream_remove(struct sys_harness *h, struct guest_stream *gs)
{
	struct guest_stream **link;
	for (link = &h->streams; *link; link = &(*link)->next)
		if (*link == gs) {
			*link = gs->next;
			break;
		}
	free(gs);
}

/* Move what can move now; true if anything did. */
bool guest_stream_work(struct sys_harness *h, struct guest_stream *gs)
{
	struct vguest_sock *sock = gs->sock;
	bool progress = false;
	if (gs->sink.active) {
		for (;;) {
			ssize_t n = vguest_recv(sock, h->scratch, SYS_SCRATCH_SIZE);
			if (n > 0) {
				sink_feed(gs->name, &gs->sink, h->scratch, (size_t)n);
				progress = true;
				continue;
			}
			if (n == 0 && !gs->eof) {
				gs->eof = true;
				progress = true;
			}
			break;
		}
	}
	if (gs->source.active && gs->source.done < gs->source.total) {
		for (;;) {
			uint64_t left = gs->source.total - gs->source.done;
			uint32_t credit = vguest_sock_credit(sock);
			size_t chunk = left < VGUEST_MAX_TX_PAYLOAD ? (size_t)left : VGUEST_MAX_TX_PAYLOAD;
			ssize_t n;
			if (chunk == 0 || credit == 0)
				break;
			if (chunk > credit)
				chunk = credit;
			pattern_fill(gs->source.seed, gs->source.done, h->scratch, chunk);
			n = vguest_send(sock, h->scratch, chunk);
			if (n < 0 && errno != EAGAIN && gs->stop_on_error) {
				gs->send_error = errno;
				gs->source.active = false;
				break;
			}
			if (n < 0) {
				CHECKF(errno == EAGAIN, "%s: vguest_send: %s (state %s)", gs->name,
				       strerror(errno), vguest_sock_state_name(sock->state));
				break;
			}
			gs->source.done += (uint64_t)n;
			progress = true;
		}
	}
	if (gs->source.active && gs->source.done == gs->source.total &&
	    !gs->source.after_done) {
		progress = true;
		gs->source.after_done = true;
		gs->source.end_ns = sys_now_ns();
		if (gs->source.after == SYS_AFTER_SHUTDOWN)
			CHECKF(vguest_shutdown(sock, VSOCK_SHUTDOWN_SEND) == 0,
			       "%s: shutdown: %s", gs->name, strerror(errno));
		else if (gs->source.after == SYS_AFTER_CLOSE)
			CHECKF(vguest_close(sock) == 0, "%s: close: %s", gs->name,
			       strerror(errno));
	}
	return progress;
}

/* ------------------------------------------------------------------ */
/* test helpers */

void sys_open_host_initiated(struct sys_harness *h, struct vguest *vg,
			     struct vguest_sock *listener, uint32_t port,
			     struct host_conn **host, struct vguest_sock **guest)
{
	struct host_conn *c = host_connect_port(h, port);
	struct vguest_sock *g = NULL;
	uint32_t ok_port;
	(void)vg;
	WAIT_FOR(h, SYS_DEFAULT_WAIT_MS, (g = vguest_accept(listener)) != NULL);
	CHECKF(g->peer_port >= (1u << 30) && g->peer_port < (1u << 31),
	       "REQUEST src_port %u outside [2^30, 2^31)", g->peer_port);
	ok_port = host_expect_ok(h, c);
	CHECKF(ok_port == g->peer_port, "host read OK %u but the guest saw src_port %u",
	       ok_port, g->peer_port);
	*host = c;
	*guest = g;
}

void sys_open_guest_initiated(struct sys_harness *h, struct vguest *vg,
			      struct host_listener *l, struct host_conn **host,
			      struct vguest_sock **guest)
{
	struct vguest_sock *g = vguest_connect_port(vg, l->port);
	struct host_conn *c = NULL;
	CHECKF(g, "vguest_connect_port: %s", strerror(errno));
	WAIT_FOR(h, SYS_DEFAULT_WAIT_MS, g->state != VGUEST_SOCK_CONNECTING);
	CHECKF(g->state == VGUEST_SOCK_CONNECTED, "guest connect to port %u ended %s%s",
	       l->port, vguest_sock_state_name(g->state), g->refused ? " (RST)" : "");
	WAIT_FOR(h, SYS_DEFAULT_WAIT_MS, (c = host_accept(l)) != NULL);
	*host = c;
	*guest = g;
}

void sys_guest_read_exact(struct sys_harness *h, struct vguest_sock *sock,
			  void *buffer, size_t len, int timeout_ms)
{
	size_t got = 0;
	uint64_t end = sys_wait_end(h, timeout_ms);
	while (got < len) {
		ssize_t n = vguest_recv(sock, (uint8_t *)buffer + got, len - got);
		if (n > 0) {
			got += (size_t)n;
			continue;
		}
		CHECKF(n < 0 && errno == EAGAIN, "guest port %u: recv got %s after %zu of %zu bytes",
		       sock->local_port, n == 0 ? "EOF" : strerror(errno), got, len);
		CHECKF(sys_now_ns() < end, "guest port %u: timed out after %zu of %zu bytes",
		       sock->local_port, got, len);
		sys_pump(h, sys_ms_until(end));
	}
}

void sys_guest_write_all(struct sys_harness *h, struct vguest_sock *sock,
			 const void *data, size_t len, int timeout_ms)
{
	size_t sent = 0;
	uint64_t end = sys_wait_end(h, timeout_ms);
	while (sent < len) {
		ssize_t n = vguest_send(sock, (const uint8_t *)data + sent, len - sent);
		if (n > 0) {
			sent += (size_t)n;
			continue;
		}
		CHECKF(errno == EAGAIN, "guest port %u: send: %s", sock->local_port,
		       strerror(errno));
		CHECKF(sys_now_ns() < end, "guest port %u: send timed out after %zu of %zu "
		       "bytes (credit %u)", sock->local_port, sent, len, vguest_sock_credit(sock));
		sys_pump(h, sys_ms_until(end));
	}
}

void sys_host_expect(struct sys_harness *h, struct host_conn *c,
		     const void *data, size_t len, int timeout_ms)
{
	WAIT_FOR(h, timeout_ms, host_in_len(c) >= len || host_peer_closed(c));
	CHECKF(host_in_len(c) >= len, "%s: got %zu of %zu bytes before the peer closed",
	       c->name, host_in_len(c), len);
	CHECKF(memcmp(host_in_data(c), data, len) == 0, "%s: wrong bytes received", c->name);
	host_in_consume(c, len);
}

void sys_close_from_guest(struct sys_harness *h, struct vguest_sock *g,
			  struct host_conn *c)
{
	CHECK(vguest_close(g) == 0);
	WAIT_FOR(h, 3000, host_peer_closed(c));
	WAIT_FOR(h, 3000, g->state == VGUEST_SOCK_CLOSED);
	CHECKF(g->reset_received, "guest close was not answered with RST");
}

struct host_listener *sys_open_to_host(struct sys_harness *h, uint32_t port,
				       struct host_conn **host, struct vguest_sock **guest)
{
	struct host_listener *listener = host_listen(h, port);

	sys_open_guest_initiated(h, h->vg, listener, host, guest);
	return listener;
}

struct vguest_sock *sys_open_to_guest(struct sys_harness *h, uint32_t port,
				      struct host_conn **host, struct vguest_sock **guest)
{
	struct vguest_sock *listener = vguest_listen(h->vg, port);

	CHECK(listener);
	sys_open_host_initiated(h, h->vg, listener, port, host, guest);
	return listener;
}

void sys_transfer_down(struct sys_harness *h, struct host_conn *c, struct guest_stream *gs,
		       uint32_t seed, uint64_t size, int timeout_ms)
{
	host_source(c, seed, size, SYS_AFTER_NOTHING);
	guest_stream_sink(gs, seed, size);
	WAIT_FOR(h, timeout_ms, gs->sink.received == size);
}

void sys_transfer_up(struct sys_harness *h, struct guest_stream *gs, struct host_conn *c,
		     uint32_t seed, uint64_t size, int timeout_ms)
{
	guest_stream_source(gs, seed, size, SYS_AFTER_NOTHING);
	host_sink(c, seed, size);
	WAIT_FOR(h, timeout_ms, c->sink.received == size);
}

void sys_stream_close(struct sys_harness *h, struct guest_stream *gs,
		      struct vguest_sock *g, struct host_conn *c)
{
	guest_stream_remove(h, gs);
	sys_close_from_guest(h, g, c);
}

struct guest_stream *sys_stream_to_host(struct sys_harness *h, uint32_t port,
					struct host_conn **host, struct vguest_sock **guest)
{
	(void)sys_open_to_host(h, port, host, guest);
	return guest_stream_add(h, *guest);
}

struct guest_stream *sys_stream_to_guest(struct sys_harness *h, uint32_t port,
					 struct host_conn **host, struct vguest_sock **guest)
{
	(void)sys_open_to_guest(h, port, host, guest);
	return guest_stream_add(h, *guest);
}

struct guest_stream *sys_stream_to_deaf_host(struct sys_harness *h, uint32_t port,
					     uint32_t seed, uint64_t size,
					     enum sys_after after, struct host_conn **host,
					     struct vguest_sock **guest)
{
	struct guest_stream *gs = sys_stream_to_host(h, port, host, guest);

	host_set_paused(*host, true);
	guest_stream_source(gs, seed, size, after);
	return gs;
}
