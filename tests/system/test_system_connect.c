/*
 * test_system_connect.c - test_system's connect line scenarios: the host
 * client's "CONNECT <port>\n" split, followed by data, in its variants and
 * malformed; connects the guest refuses, ignores or has no listener for;
 * a host EOF before the guest accepts.
 *
 * Owns: these scenarios. Never: depends on another scenario's state.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_system.h"

void test_guest_connect_no_listener(struct sys_harness *h)
{
	struct vguest_sock *g;
	uint64_t elapsed;

	sys_setup(h);
	g = vguest_connect_port(h->vg, 4444);
	CHECK(g);
	WAIT_FOR(h, 1000, g->state == VGUEST_SOCK_CLOSED);
	elapsed = g->closed_ns - g->connect_started_ns;
	printf("guest connect without host listener refused after %.1f ms\n",
	       (double)elapsed / 1e6);
	CHECKF(g->refused, "connect ended without RST");
	CHECKF(elapsed < 1000000000ull, "RST took %" PRIu64 " ms", elapsed / 1000000);
	CHECK(vguest_count_packets(h->vg, false, VSOCK_OP_RST, g->local_port, 4444) == 1);
	CHECK(vguest_count_packets(h->vg, false, VSOCK_OP_RESPONSE, g->local_port, 4444) == 0);
}

/* Host CONNECT to a guest port nobody listens on: the guest RSTs (Linux),
 * the host socket is closed with nothing written. */
void test_host_connect_guest_refuses(struct sys_harness *h)
{
	struct host_conn *c;
	const struct vguest_packet_record *request;

	sys_setup(h);
	c = host_connect_port(h, 5555);
	WAIT_FOR(h, 3000, host_peer_closed(c));
	CHECKF(host_in_len(c) == 0, "host got %zu bytes (\"%.*s\") from a refused connect",
	       host_in_len(c), (int)host_in_len(c), (const char *)host_in_data(c));
	request = vguest_find_packet(h->vg, false, VSOCK_OP_REQUEST, 5555, VGUEST_ANY_PORT);
	CHECK(request);
	CHECK(vguest_count_packets(h->vg, true, VSOCK_OP_RST, 5555,
				   request->header.src_port) == 1);
	sys_tx_barrier(h, h->vg);
	CHECK(vguest_count_packets(h->vg, false, VSOCK_OP_RST, 5555, VGUEST_ANY_PORT) == 0);
}

/* The guest never answers the REQUEST: host closed after about 2 s. */
void test_host_connect_timeout(struct sys_harness *h)
{
	struct vguest_sock *listener;
	struct host_conn *c;
	uint64_t start, elapsed;

	sys_setup(h);
	listener = vguest_listen(h->vg, 5556);
	vguest_listen_set_mode(listener, VGUEST_LISTEN_IGNORE);
	start = sys_now_ns();
	c = host_connect_port(h, 5556);
	WAIT_FOR(h, 6000, host_peer_closed(c));
	elapsed = sys_now_ns() - start;
	printf("unanswered CONNECT closed after %.0f ms\n", (double)elapsed / 1e6);
	CHECKF(host_in_len(c) == 0, "host got bytes from an unanswered connect");
	CHECKF(elapsed >= 1500000000ull && elapsed < 4000000000ull,
	       "handshake timeout after %" PRIu64 " ms, expected about 2000",
	       elapsed / 1000000);
	CHECK(vguest_count_packets(h->vg, false, VSOCK_OP_REQUEST, 5556, VGUEST_ANY_PORT) == 1);
}

/* "CONNECT 52\n" in pieces, with data in the same write as the newline. */
void test_connect_line_split(struct sys_harness *h)
{
	static const char *const pieces[] = { "coN", "nect", " 5", "2" };
	static const char tail[] = "\nfirst bytes after the newline|";
	static const char more[] = "and some more";
	const size_t after_len = strlen(tail) - 1;
	char buffer[64];
	struct vguest_sock *listener, *g = NULL;
	struct host_conn *c;
	uint32_t port;

	sys_setup(h);
	listener = vguest_listen(h->vg, 52);
	c = host_connect(h);
	for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
		host_write_str(c, pieces[i]);
		sys_pump_for(h, 30);  /* let each piece arrive on its own */
		CHECKF(vguest_count_packets(h->vg, false, VSOCK_OP_REQUEST, 52,
					    VGUEST_ANY_PORT) == 0,
		       "REQUEST sent before the line was complete");
		CHECK(!host_peer_closed(c));
	}
	host_write_str(c, tail);
	WAIT_FOR(h, 3000, (g = vguest_accept(listener)) != NULL);
	port = host_expect_ok(h, c);
	CHECK(port == g->peer_port);
	sys_guest_read_exact(h, g, buffer, after_len, 3000);
	CHECKF(memcmp(buffer, tail + 1, after_len) == 0,
	       "bytes after the CONNECT newline were lost or changed: \"%.*s\"",
	       (int)after_len, buffer);
	host_write_str(c, more);
	sys_guest_read_exact(h, g, buffer, strlen(more), 3000);
	CHECK(memcmp(buffer, more, strlen(more)) == 0);
	sys_close_from_guest(h, g, c);
}

/* One write: "CONNECT 52\n" followed by 64 KiB of data. */
void test_connect_line_with_data(struct sys_harness *h)
{
	const size_t data_len = 64 * KIB;
	uint8_t *message = malloc(16 + data_len);
	struct vguest_sock *listener, *g = NULL;
	struct host_conn *c;
	struct guest_stream *gs;
	size_t line_len;

	CHECK(message);
	sys_setup(h);
	listener = vguest_listen(h->vg, 52);
	c = host_connect(h);
	line_len = (size_t)snprintf((char *)message, 16, "CONNECT 52\n");
	pattern_fill(77, 0, message + line_len, data_len);
	host_write(c, message, line_len + data_len);
	free(message);
	WAIT_FOR(h, 3000, (g = vguest_accept(listener)) != NULL);
	CHECK(host_expect_ok(h, c) == g->peer_port);
	gs = guest_stream_add(h, g);
	guest_stream_sink(gs, 77, data_len);
	WAIT_FOR(h, 5000, gs->sink.received == data_len);
	sys_stream_close(h, gs, g, c);
}

/* Case-insensitive keyword and the accepted spacing. */
void test_connect_line_variants(struct sys_harness *h)
{
	static const char *const lines[] = {
		"connect 52\n", "CoNnEcT 52\n", "CONNECT   52\n", "CONNECT 52\r\n",
	};
	struct vguest_sock *listener;

	sys_setup(h);
	listener = vguest_listen(h->vg, 52);
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		struct host_conn *c = host_connect(h);
		struct vguest_sock *g = NULL;
		host_write_str(c, lines[i]);
		WAIT_FOR(h, 3000, (g = vguest_accept(listener)) != NULL || host_peer_closed(c));
		CHECKF(g, "line \"%s\" was rejected", lines[i]);
		CHECK(host_expect_ok(h, c) == g->peer_port);
		sys_close_from_guest(h, g, c);
		host_conn_free(c);
	}
}

/* Junk lines: host socket closed, nothing written, no REQUEST. */
void test_bad_connect_lines(struct sys_harness *h)
{
	static const char *const lines[] = {
		"CONNECT abc\n", "HELLO 52\n", "CONNECT 99999999999\n", "CONNECT\n",
		"CONNECT 52 53\n", "CONNECT -1\n", "CONNECT 5x2\n",
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	};
	struct vguest_sock *listener, *g;
	struct host_conn *c;

	sys_setup(h);
	listener = vguest_listen(h->vg, 52);
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		c = host_connect(h);
		host_write_str(c, lines[i]);
		WAIT_FOR(h, 3000, host_peer_closed(c));
		CHECKF(host_in_len(c) == 0, "bad line \"%s\" got a reply", lines[i]);
		host_conn_free(c);
	}
	/* connect and close without a word */
	c = host_connect(h);
	host_conn_free(c);
	sys_tx_barrier(h, h->vg);
	CHECK(vguest_count_packets(h->vg, false, VSOCK_OP_REQUEST, 52, VGUEST_ANY_PORT) == 0);
	/* a good one still works */
	sys_open_host_initiated(h, h->vg, listener, 52, &c, &g);
	sys_close_from_guest(h, g, c);
}

/* Data and EOF both queued before the guest accepted: the guest must get
 * the data and then SHUTDOWN(SEND). */
void test_host_eof_before_accept(struct sys_harness *h)
{
	static const char message[] = "CONNECT 52\nshort and final";
	const size_t data_len = strlen(message) - strlen("CONNECT 52\n");
	char buffer[32];
	struct vguest_sock *listener, *g = NULL;
	struct host_conn *c;

	sys_setup(h);
	listener = vguest_listen(h->vg, 52);
	c = host_connect(h);
	host_write_str(c, message);
	host_shutdown_wr(c);
	CHECK(c->shut_wr_done);
	WAIT_FOR(h, 3000, (g = vguest_accept(listener)) != NULL);
	CHECK(host_expect_ok(h, c) == g->peer_port);
	sys_guest_read_exact(h, g, buffer, data_len, 3000);
	CHECK(memcmp(buffer, message + strlen("CONNECT 52\n"), data_len) == 0);
	WAIT_FOR(h, 3000, g->peer_shutdown & VSOCK_SHUTDOWN_SEND);
	CHECK(vguest_sock_eof(g));
	sys_close_from_guest(h, g, c);
}
