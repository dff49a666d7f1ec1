/*
 * test_system_data.c - test_system's data path scenarios: connections
 * opened from either side, bulk and concurrent transfers, half-close both
 * ways, RST and close from either end, the guest's credit, the TX buffer
 * and guest CID options, many short connections.
 *
 * Owns: these scenarios. Never: measures a rate beside another test (the
 * ones that do run ALONE, test_system.def).
 */
#include <stdio.h>
#include <string.h>

#include "test_system.h"

/* Expect exactly one RST for local_port<->peer_port, after a TX barrier. */
static void expect_one_rst(struct sys_harness *h, struct vguest *vg,
			   uint32_t local_port, uint32_t peer_port)
{
	size_t rst;
	sys_tx_barrier(h, vg);
	rst = vguest_count_packets(vg, false, VSOCK_OP_RST, local_port, peer_port);
	CHECKF(rst == 1, "guest got %zu RSTs for %u<->%u, expected exactly 1", rst,
	       local_port, peer_port);
}

void test_host_initiated(struct sys_harness *h)
{
	static const char to_guest[] = "hello from the host\n";
	static const char to_host[] = "hello from the guest\n";
	char buffer[64];
	struct vguest_sock *g;
	struct host_conn *c;
	const struct vguest_packet_record *request, *response;

	sys_setup(h);
	(void)sys_open_to_guest(h, 52, &c, &g);

	request = vguest_find_packet(h->vg, false, VSOCK_OP_REQUEST, 52, g->peer_port);
	CHECK(request);
	CHECKF(request->header.src_cid == VSOCK_HOST_CID && request->header.dst_cid == 3 &&
	       request->header.type == VSOCK_TYPE_STREAM && request->header.dst_port == 52,
	       "bad REQUEST header");
	CHECKF(request->header.buf_alloc == DEFAULT_BUF_ALLOC,
	       "REQUEST buf_alloc %u, expected --tx-buffer-size default %u",
	       request->header.buf_alloc, DEFAULT_BUF_ALLOC);
	CHECK(request->header.fwd_cnt == 0);
	response = vguest_find_packet(h->vg, true, VSOCK_OP_RESPONSE, 52, g->peer_port);
	CHECK(response);

	host_write_str(c, to_guest);
	sys_guest_read_exact(h, g, buffer, strlen(to_guest), 3000);
	CHECK(memcmp(buffer, to_guest, strlen(to_guest)) == 0);
	sys_guest_write_all(h, g, to_host, strlen(to_host), 3000);
	sys_host_expect(h, c, to_host, strlen(to_host), 3000);

	CHECK(vguest_count_packets(h->vg, false, VSOCK_OP_REQUEST, 52, VGUEST_ANY_PORT) == 1);
	sys_close_from_guest(h, g, c);
	expect_one_rst(h, h->vg, 52, g->peer_port);
}

void test_guest_initiated(struct sys_harness *h)
{
	static const char to_guest[] = "hello from the host\n";
	static const char to_host[] = "hello from the guest\n";
	char buffer[64];
	struct vguest_sock *g;
	struct host_conn *c;
	const struct vguest_packet_record *response;

	sys_setup(h);
	(void)sys_open_to_host(h, 1234, &c, &g);
	response = vguest_find_packet(h->vg, false, VSOCK_OP_RESPONSE, g->local_port, 1234);
	CHECK(response);
	CHECKF(response->header.src_cid == VSOCK_HOST_CID && response->header.dst_cid == 3,
	       "bad RESPONSE cids");
	CHECKF(response->header.buf_alloc == DEFAULT_BUF_ALLOC, "RESPONSE buf_alloc %u",
	       response->header.buf_alloc);

	sys_guest_write_all(h, g, to_host, strlen(to_host), 3000);
	sys_host_expect(h, c, to_host, strlen(to_host), 3000);
	host_write_str(c, to_guest);
	sys_guest_read_exact(h, g, buffer, strlen(to_guest), 3000);
	CHECK(memcmp(buffer, to_guest, strlen(to_guest)) == 0);

	sys_close_from_guest(h, g, c);
	expect_one_rst(h, h->vg, g->local_port, 1234);
}

/* 8 MiB each way on one connection, then both at once. */
void test_bulk_8mib(struct sys_harness *h)
{
	const uint64_t size = 8ull * MIB;
	struct vguest_sock *g;
	struct host_conn *c;
	struct guest_stream *gs;
	const struct vguest_stats *stats;
	uint64_t start;
	double cpu_start;

	sys_setup(h);
	gs = sys_stream_to_guest(h, 52, &c, &g);
	cpu_start = sys_daemon_cpu_ms(h);

	/* guest -> host */
	start = sys_now_ns();
	sys_transfer_up(h, gs, c, 11, size, 60000);
	printf("THROUGHPUT guest->host 8 MiB: %.1f MiB/s\n",
	       sys_mib_per_s(size, c->sink.end_ns - start));
	stats = vguest_get_stats(h->vg);
	CHECKF(stats->rx_packets[VSOCK_OP_CREDIT_UPDATE] > 0,
	       "the daemon never pushed CREDIT_UPDATE during an 8 MiB upload");
	CHECK(stats->tx_packets[VSOCK_OP_CREDIT_REQUEST] == 0);
	CHECKF(g->peer_buf_alloc == DEFAULT_BUF_ALLOC, "daemon buf_alloc %u", g->peer_buf_alloc);

	/* host -> guest */
	start = sys_now_ns();
	sys_transfer_down(h, c, gs, 22, size, 60000);
	printf("THROUGHPUT host->guest 8 MiB: %.1f MiB/s\n",
	       sys_mib_per_s(size, gs->sink.end_ns - start));

	/* both directions at once */
	start = sys_now_ns();
	guest_stream_source(gs, 33, size, SYS_AFTER_NOTHING);
	host_sink(c, 33, size);
	host_source(c, 44, size, SYS_AFTER_NOTHING);
	guest_stream_sink(gs, 44, size);
	WAIT_FOR(h, 90000, c->sink.received == size && gs->sink.received == size);
	printf("THROUGHPUT bidirectional 2 x 8 MiB: %.1f MiB/s total\n",
	       sys_mib_per_s(2 * size, sys_now_ns() - start));
	printf("daemon CPU for 32 MiB moved: %.0f ms\n", sys_daemon_cpu_ms(h) - cpu_start);

	sys_stream_close(h, gs, g, c);
	sys_check_guest_clean(h->vg);
}

#define CONCURRENT_HALF 32u

struct conn_pair {
	struct vguest_sock *g;
	struct host_conn *c;
	struct guest_stream *gs;
	uint64_t to_host, to_guest;
};

/* Take every accepted guest socket into pairs[first + *accepted ...];
 * true once one with peer_port == port is among them. */
static bool collect_accepted(struct vguest_sock *listener, struct conn_pair *pairs,
			     unsigned first, unsigned *accepted, uint32_t port)
{
	struct vguest_sock *g;
	bool found = false;
	while ((g = vguest_accept(listener)) != NULL) {
		CHECKF(*accepted < CONCURRENT_HALF, "more connections than CONNECTs");
		pairs[first + (*accepted)++].g = g;
	}
	for (unsigned k = first; k < first + *accepted; k++)
		if (pairs[k].g->peer_port == port)
			found = true;
	return found;
}

static bool all_transfers_done(const struct conn_pair *pairs, unsigned count)
{
	for (unsigned i = 0; i < count; i++) {
		if (pairs[i].to_host && pairs[i].c->sink.received != pairs[i].to_host)
			return false;
		if (pairs[i].to_guest && pairs[i].gs->sink.received != pairs[i].to_guest)
			return false;
	}
	return true;
}

static bool all_closed(const struct conn_pair *pairs, unsigned count)
{
	for (unsigned i = 0; i < count; i++)
		if (!host_peer_closed(pairs[i].c) || pairs[i].g->state != VGUEST_SOCK_CLOSED)
			return false;
	return true;
}

/* 64 connections at once (32 each way), mixed directions and sizes. */
void test_concurrent_64(struct sys_harness *h)
{
	struct conn_pair pairs[2 * CONCURRENT_HALF];
	struct host_conn *pending[CONCURRENT_HALF];
	struct vguest_sock *listener;
	struct host_listener *host_l;
	unsigned accepted = 0;

	memset(pairs, 0, sizeof(pairs));
	sys_setup(h);
	listener = vguest_listen(h->vg, 60);
	host_l = host_listen(h, 61);

	/* 32 host-initiated connects at once; pair them by the OK port */
	for (unsigned i = 0; i < CONCURRENT_HALF; i++)
		pending[i] = host_connect_port(h, 60);
	for (unsigned i = 0; i < CONCURRENT_HALF; i++) {
		uint32_t port = host_expect_ok(h, pending[i]);
		WAIT_FOR(h, 5000, collect_accepted(listener, pairs, CONCURRENT_HALF,
						   &accepted, port));
		for (unsigned k = CONCURRENT_HALF; k < CONCURRENT_HALF + accepted; k++)
			if (pairs[k].g->peer_port == port) {
				CHECKF(!pairs[k].c, "two host connections got OK %u", port);
				pairs[k].c = pending[i];
			}
	}
	CHECK(accepted == CONCURRENT_HALF);
	/* 32 guest-initiated, one after the other (the host side is paired
	 * by accept order) */
	for (unsigned i = 0; i < CONCURRENT_HALF; i++)
		sys_open_guest_initiated(h, h->vg, host_l, &pairs[i].c, &pairs[i].g);

	for (unsigned i = 0; i < 2 * CONCURRENT_HALF; i++) {
		struct conn_pair *p = &pairs[i];
		p->gs = guest_stream_add(h, p->g);
		p->to_host = (i % 3 != 1) ? 100 * KIB + i * 7919u : 0;
		p->to_guest = (i % 3 != 0) ? 80 * KIB + i * 6007u : 0;
		if (p->to_host) {
			guest_stream_source(p->gs, 1000 + i, p->to_host, SYS_AFTER_NOTHING);
			host_sink(p->c, 1000 + i, p->to_host);
		}
		if (p->to_guest) {
			host_source(p->c, 2000 + i, p->to_guest, SYS_AFTER_NOTHING);
			guest_stream_sink(p->gs, 2000 + i, p->to_guest);
		}
	}
	WAIT_FOR(h, 60000, all_transfers_done(pairs, 2 * CONCURRENT_HALF));
	/* host-side local ports must be distinct */
	for (unsigned i = CONCURRENT_HALF; i < 2 * CONCURRENT_HALF; i++)
		for (unsigned k = i + 1; k < 2 * CONCURRENT_HALF; k++)
			CHECK(pairs[i].g->peer_port != pairs[k].g->peer_port);
	for (unsigned i = 0; i < 2 * CONCURRENT_HALF; i++) {
		guest_stream_remove(h, pairs[i].gs);
		CHECK(vguest_close(pairs[i].g) == 0);
	}
	WAIT_FOR(h, 5000, all_closed(pairs, 2 * CONCURRENT_HALF));
	sys_check_guest_clean(h->vg);
}

/* The host sends size bytes, then ends its side (after); the guest gets
 * them all and EOF. Returns the SHUTDOWN the daemon sent the guest. */
static const struct vguest_packet_record *
host_data_then_end(struct sys_harness *h, struct guest_stream *gs, struct host_conn *c,
		   const struct vguest_sock *g, uint32_t seed, uint64_t size,
		   enum sys_after after)
{
	const struct vguest_packet_record *shut;

	host_source(c, seed, size, after);
	guest_stream_sink(gs, seed, size);
	WAIT_FOR(h, 5000, gs->sink.received == size && gs->eof);
	shut = vguest_find_packet(h->vg, false, VSOCK_OP_SHUTDOWN, g->local_port,
				  g->peer_port);
	CHECK(shut);
	return shut;
}

/* Host shutdown(SHUT_WR): guest gets all data then SHUTDOWN(SEND), and can
 * still send. */
void test_half_close_host_wr(struct sys_harness *h)
{
	const uint64_t down = 100 * KIB, up = 200 * KIB;
	struct vguest_sock *g;
	struct host_conn *c;
	struct guest_stream *gs;
	const struct vguest_packet_record *shut;

	sys_setup(h);
	gs = sys_stream_to_guest(h, 52, &c, &g);
	shut = host_data_then_end(h, gs, c, g, 5, down, SYS_AFTER_SHUTDOWN);
	CHECKF(shut->header.flags == VSOCK_SHUTDOWN_SEND,
	       "host SHUT_WR gave SHUTDOWN flags %u, expected SEND (2)", shut->header.flags);
	CHECK(vguest_count_packets(h->vg, false, VSOCK_OP_SHUTDOWN, 52, g->peer_port) == 1);
	CHECKF(g->state == VGUEST_SOCK_CONNECTED, "guest socket %s after host half-close",
	       vguest_sock_state_name(g->state));

	/* the other direction keeps working */
	sys_transfer_up(h, gs, c, 6, up, 5000);
	CHECK(!c->error);
	CHECK(vguest_count_packets(h->vg, false, VSOCK_OP_RST, 52, g->peer_port) == 0);

	sys_stream_close(h, gs, g, c);
	expect_one_rst(h, h->vg, 52, g->peer_port);
}

/* Guest SHUTDOWN(SEND): host reads EOF after the data, and can still send. */
void test_half_close_guest_send(struct sys_harness *h)
{
	const uint64_t up = 100 * KIB, down = 200 * KIB;
	struct vguest_sock *g;
	struct host_conn *c;
	struct guest_stream *gs;

	sys_setup(h);
	gs = sys_stream_to_host(h, 1234, &c, &g);
	guest_stream_source(gs, 7, up, SYS_AFTER_SHUTDOWN);
	host_sink(c, 7, up);
	WAIT_FOR(h, 5000, c->sink.received == up && c->read_eof);
	CHECK(!c->error);

	sys_transfer_down(h, c, gs, 8, down, 5000);
	CHECK(g->state == VGUEST_SOCK_CONNECTED);
	CHECK(vguest_count_packets(h->vg, false, VSOCK_OP_RST, g->local_port, 1234) == 0);

	/* host closes now: guest sees SHUTDOWN(SEND), then closes itself */
	host_close(c);
	WAIT_FOR(h, 3000, g->peer_shutdown & VSOCK_SHUTDOWN_SEND);
	guest_stream_remove(h, gs);
	CHECK(vguest_close(g) == 0);
	WAIT_FOR(h, 3000, g->state == VGUEST_SOCK_CLOSED);
	CHECKF(g->reset_received || g->reset_sent, "connection did not end with RST");
	sys_tx_barrier(h, h->vg);
	CHECK(vguest_count_packets(h->vg, false, VSOCK_OP_RST, g->local_port, 1234) <= 1);
}

/* Guest RST: host socket closed; the daemon must not answer with RST. */
void test_guest_rst(struct sys_harness *h)
{
	static const char hello[] = "ping";
	char buffer[8];
	struct vguest_sock *listener, *g, *g2;
	struct host_conn *c, *c2;

	sys_setup(h);
	listener = sys_open_to_guest(h, 52, &c, &g);
	host_write_str(c, hello);
	sys_guest_read_exact(h, g, buffer, 4, 3000);
	CHECK(vguest_reset(g) == 0);
	WAIT_FOR(h, 3000, host_peer_closed(c));
	sys_tx_barrier(h, h->vg);
	CHECKF(vguest_count_packets(h->vg, false, VSOCK_OP_RST, 52, g->peer_port) == 0,
	       "the daemon answered the guest's RST with an RST");
	/* the listener still works */
	sys_open_host_initiated(h, h->vg, listener, 52, &c2, &g2);
	CHECK(g2->peer_port != 0);
	host_write_str(c2, hello);
	sys_guest_read_exact(h, g2, buffer, 4, 3000);
	sys_close_from_guest(h, g2, c2);
}

/* Host close(): guest gets data, SHUTDOWN(SEND), then RST after its close. */
void test_host_close(struct sys_harness *h)
{
	const uint64_t down = 50 * KIB;
	struct vguest_sock *g;
	struct host_conn *c;
	struct guest_stream *gs;
	const struct vguest_packet_record *shut;

	sys_setup(h);
	gs = sys_stream_to_host(h, 1234, &c, &g);
	shut = host_data_then_end(h, gs, c, g, 9, down, SYS_AFTER_CLOSE);
	CHECKF(shut->header.flags & VSOCK_SHUTDOWN_SEND,
	       "host close gave SHUTDOWN flags %u without SEND", shut->header.flags);
	guest_stream_remove(h, gs);
	if (g->state == VGUEST_SOCK_CONNECTED)
		CHECK(vguest_close(g) == 0);
	WAIT_FOR(h, 3000, g->state == VGUEST_SOCK_CLOSED);
	sys_tx_barrier(h, h->vg);
	/* Either the daemon RSTs our close, or (it sent SHUTDOWN both) we RST
	 * as Linux does; never both sides. */
	CHECKF(vguest_count_packets(h->vg, false, VSOCK_OP_RST, g->local_port, 1234) +
	       vguest_count_packets(h->vg, true, VSOCK_OP_RST, g->local_port, 1234) == 1,
	       "expected exactly one RST between guest and daemon (got %zu from the "
	       "daemon, %zu from the guest)",
	       vguest_count_packets(h->vg, false, VSOCK_OP_RST, g->local_port, 1234),
	       vguest_count_packets(h->vg, true, VSOCK_OP_RST, g->local_port, 1234));
}

/* Guest close while the host is not reading: data is flushed, then EOF. */
void test_guest_close_flushes(struct sys_harness *h)
{
	const uint64_t up = 300 * KIB;
	struct vguest_sock *g;
	struct host_conn *c;
	struct guest_stream *gs;

	sys_setup(h);
	gs = sys_stream_to_deaf_host(h, 1234, 12, up, SYS_AFTER_CLOSE, &c, &g);
	WAIT_FOR(h, 5000, gs->source.after_done);
	CHECK(g->state == VGUEST_SOCK_CLOSING || g->state == VGUEST_SOCK_CLOSED);
	host_sink(c, 12, up);
	host_set_paused(c, false);
	WAIT_FOR(h, 5000, c->sink.received == up && c->read_eof);
	WAIT_FOR(h, 3000, g->state == VGUEST_SOCK_CLOSED);
	CHECK(g->reset_received);
	guest_stream_remove(h, gs);
	expect_one_rst(h, h->vg, g->local_port, 1234);
}

/* The daemon must stop at the guest's credit and resume on CREDIT_UPDATE. */
void test_guest_credit_respected(struct sys_harness *h)
{
	const uint64_t down = 1 * MIB;
	struct vguest_sock *g;
	struct host_conn *c;
	struct guest_stream *gs;

	sys_setup(h);
	(void)sys_open_to_guest(h, 52, &c, &g);
	host_source(c, 66, down, SYS_AFTER_NOTHING);
	WAIT_FOR(h, 5000, vguest_rx_pending(g) >= DEFAULT_BUF_ALLOC);
	sys_pump_for(h, 200);
	CHECKF(vguest_rx_pending(g) == DEFAULT_BUF_ALLOC,
	       "guest holds %zu unread bytes with buf_alloc %u", vguest_rx_pending(g),
	       DEFAULT_BUF_ALLOC);
	CHECK(g->credit_violations == 0);
	gs = guest_stream_add(h, g);
	guest_stream_sink(gs, 66, down);
	WAIT_FOR(h, 10000, gs->sink.received == down);
	sys_stream_close(h, gs, g, c);
}

/* --tx-buffer-size is what the daemon advertises; transfers still flow. */
void test_tx_buffer_size_option(struct sys_harness *h)
{
	static const char *const args[] = { "--tx-buffer-size", "65536", NULL };
	const uint64_t up = 1 * MIB;
	struct vguest_sock *g;
	struct host_conn *c;
	struct guest_stream *gs;

	sys_start_daemon(h, args);
	(void)sys_guest_new(h, NULL);
	(void)sys_open_to_host(h, 1234, &c, &g);
	CHECKF(g->peer_buf_alloc == 65536, "buf_alloc %u, expected 65536", g->peer_buf_alloc);
	gs = guest_stream_add(h, g);
	sys_transfer_up(h, gs, c, 88, up, 10000);
	sys_stream_close(h, gs, g, c);
}

/* Many short connections: ports are freed and reused correctly. */
void test_many_short_connections(struct sys_harness *h)
{
	struct vguest_sock *listener, *g;
	struct host_listener *host_l;
	struct host_conn *c;

	sys_setup(h);
	listener = vguest_listen(h->vg, 52);
	host_l = host_listen(h, 1234);
	for (unsigned i = 0; i < 100; i++) {
		sys_open_host_initiated(h, h->vg, listener, 52, &c, &g);
		sys_close_from_guest(h, g, c);
		host_conn_free(c);
		vguest_sock_release(g);
		sys_open_guest_initiated(h, h->vg, host_l, &c, &g);
		/* host closes first this time */
		host_close(c);
		WAIT_FOR(h, 3000, g->peer_shutdown & VSOCK_SHUTDOWN_SEND);
		if (g->state == VGUEST_SOCK_CONNECTED)
			CHECK(vguest_close(g) == 0);
		WAIT_FOR(h, 3000, g->state == VGUEST_SOCK_CLOSED);
		host_conn_free(c);
		vguest_sock_release(g);
	}
	sys_check_guest_clean(h->vg);
}

/* A guest CREDIT_REQUEST is answered with CREDIT_UPDATE. */
void test_credit_request_answered(struct sys_harness *h)
{
	struct vguest_sock *g;
	struct host_conn *c;
	struct vsock_header header;
	size_t before;

	sys_setup(h);
	(void)sys_open_to_host(h, 1234, &c, &g);
	before = vguest_count_packets(h->vg, false, VSOCK_OP_CREDIT_UPDATE, g->local_port, 1234);
	header = sys_guest_header(g->local_port, 1234, VSOCK_OP_CREDIT_REQUEST);
	header.fwd_cnt = g->fwd_cnt;
	CHECK(vguest_send_raw(h->vg, &header, NULL, 0, NULL) == 0);
	WAIT_FOR(h, 2000, vguest_count_packets(h->vg, false, VSOCK_OP_CREDIT_UPDATE,
					       g->local_port, 1234) > before);
	sys_close_from_guest(h, g, c);
}

/* Host closed, then the guest shuts SEND: both sides are done -> RST. */
void test_host_close_then_guest_shutdown(struct sys_harness *h)
{
	struct vguest_sock *g;
	struct host_conn *c;

	sys_setup(h);
	(void)sys_open_to_host(h, 1234, &c, &g);
	host_close(c);
	WAIT_FOR(h, 3000, g->peer_shutdown & VSOCK_SHUTDOWN_SEND);
	CHECK(g->state == VGUEST_SOCK_CONNECTED);
	CHECK(vguest_shutdown(g, VSOCK_SHUTDOWN_SEND) == 0);
	WAIT_FOR(h, 3000, g->state == VGUEST_SOCK_CLOSED);
	CHECKF(g->reset_received, "both directions shut but no RST from the daemon");
	expect_one_rst(h, h->vg, g->local_port, 1234);
}

/* The host closes while the guest is still sending: no SIGPIPE, the guest
 * is told (RST or SHUTDOWN(RCV)), and the daemon does not spin. */
void test_host_close_while_guest_sends(struct sys_harness *h)
{
	struct host_listener *listener;
	struct vguest_sock *g, *g2;
	struct host_conn *c, *c2;
	struct guest_stream *gs;

	sys_setup(h);
	listener = sys_open_to_host(h, 1234, &c, &g);
	gs = guest_stream_add(h, g);
	gs->stop_on_error = true;
	guest_stream_source(gs, 21, 64 * MIB, SYS_AFTER_NOTHING);
	host_sink(c, 21, 64 * MIB);
	WAIT_FOR(h, 5000, c->sink.received >= 512 * KIB);
	host_close(c);
	WAIT_FOR(h, 3000, g->state == VGUEST_SOCK_CLOSED ||
			  (g->peer_shutdown & VSOCK_SHUTDOWN_RCV));
	printf("after the host closed: guest socket %s, peer shutdown %u, send error %s\n",
	       vguest_sock_state_name(g->state), g->peer_shutdown,
	       gs->send_error ? strerror(gs->send_error) : "none");
	guest_stream_remove(h, gs);
	if (g->state != VGUEST_SOCK_CLOSED) {
		CHECK(vguest_close(g) == 0);
		WAIT_FOR(h, 3000, g->state == VGUEST_SOCK_CLOSED);
	}
	sys_check_daemon_idle(h, 500, 100, "idle after an EPIPE'd connection");
	sys_open_guest_initiated(h, h->vg, listener, &c2, &g2);
	sys_close_from_guest(h, g2, c2);
}

/* Another guest CID end to end: config space and every packet's cids. */
void test_guest_cid_option(struct sys_harness *h)
{
	const uint64_t cid = 4294967294ull;
	struct vguest_sock *g;
	struct host_conn *c;
	const struct vguest_packet_record *request;
	char buffer[4];

	h->guest_cid = cid;
	sys_setup(h);
	CHECK(vguest_config_cid(h->vg) == cid);
	(void)sys_open_to_guest(h, 52, &c, &g);
	request = vguest_find_packet(h->vg, false, VSOCK_OP_REQUEST, 52, g->peer_port);
	CHECK(request && request->header.dst_cid == cid);
	host_write_str(c, "cid!");
	sys_guest_read_exact(h, g, buffer, 4, 3000);
	sys_close_from_guest(h, g, c);
	/* the default cid 3 is now foreign: dropped */
	{
		struct host_listener *host_l = host_listen(h, 1234);
		struct vsock_header header = sys_guest_header(1111, 1234, VSOCK_OP_REQUEST);
		CHECK(vguest_send_raw(h->vg, &header, NULL, 0, NULL) == 0);
		sys_tx_barrier(h, h->vg);
		CHECK(host_l->accepted == 0);
		CHECK(vguest_count_packets(h->vg, false, VSOCK_OP_RESPONSE, 1111, 1234) == 0);
	}
}
