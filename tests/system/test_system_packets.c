/*
 * test_system_packets.c - test_system's hostile-ish guest packets: spoofed
 * CIDs, bad types and ops, RW length mismatches, credit overrun, an RST
 * for no connection (never answered).
 *
 * Owns: these scenarios. Never: depends on another scenario's state.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_system.h"

/* Packets with a wrong src_cid or dst_cid are dropped without a reply. */
void test_spoofed_cid(struct sys_harness *h)
{
	static const char legit[] = "legit data";
	static const char spoof[] = "SPOOFED!!";
	struct host_listener *listener;
	struct vguest_sock *g, *g2;
	struct host_conn *c, *c2;
	struct vsock_header header;

	sys_setup(h);
	listener = host_listen(h, 7000);
	/* REQUESTs from a foreign cid, the host cid, and to a wrong dst */
	header = sys_guest_header(1234, 7000, VSOCK_OP_REQUEST);
	header.src_cid = 4;
	CHECK(vguest_send_raw(h->vg, &header, NULL, 0, NULL) == 0);
	header.src_cid = VSOCK_HOST_CID;
	CHECK(vguest_send_raw(h->vg, &header, NULL, 0, NULL) == 0);
	header.src_cid = 0xffffffffffffffffull;
	CHECK(vguest_send_raw(h->vg, &header, NULL, 0, NULL) == 0);
	header = sys_guest_header(1235, 7000, VSOCK_OP_REQUEST);
	header.dst_cid = 5;
	CHECK(vguest_send_raw(h->vg, &header, NULL, 0, NULL) == 0);
	header.dst_cid = 3;
	CHECK(vguest_send_raw(h->vg, &header, NULL, 0, NULL) == 0);
	sys_tx_barrier(h, h->vg);
	CHECKF(listener->accepted == 0, "a spoofed REQUEST reached the host listener");
	CHECKF(vguest_count_packets(h->vg, false, VSOCK_OP_RST, 1234, 7000) == 0 &&
	       vguest_count_packets(h->vg, false, VSOCK_OP_RESPONSE, 1234, 7000) == 0 &&
	       vguest_count_packets(h->vg, false, VSOCK_OP_RST, 1235, 7000) == 0 &&
	       vguest_count_packets(h->vg, false, VSOCK_OP_RESPONSE, 1235, 7000) == 0,
	       "the daemon replied to a spoofed packet");

	/* spoofed RW on a live connection is not delivered */
	g = vguest_connect_port_from(h->vg, 1234, 7000);
	CHECK(g);
	WAIT_FOR(h, 3000, g->state != VGUEST_SOCK_CONNECTING);
	CHECK(g->state == VGUEST_SOCK_CONNECTED);
	WAIT_FOR(h, 3000, (c = host_accept(listener)) != NULL);
	header = sys_guest_header(1234, 7000, VSOCK_OP_RW);
	header.src_cid = 4;
	header.len = (uint32_t)strlen(spoof);
	CHECK(vguest_send_raw(h->vg, &header, spoof, strlen(spoof), NULL) == 0);
	header.src_cid = 3;
	header.dst_cid = 7;
	CHECK(vguest_send_raw(h->vg, &header, spoof, strlen(spoof), NULL) == 0);
	/* a spoofed RST must not kill the connection either */
	header = sys_guest_header(1234, 7000, VSOCK_OP_RST);
	header.src_cid = 4;
	CHECK(vguest_send_raw(h->vg, &header, NULL, 0, NULL) == 0);
	sys_guest_write_all(h, g, legit, strlen(legit), 3000);
	sys_host_expect(h, c, legit, strlen(legit), 3000);
	sys_tx_barrier(h, h->vg);
	CHECKF(host_in_len(c) == 0, "host received %zu extra (spoofed) bytes", host_in_len(c));
	CHECK(!host_peer_closed(c));
	sys_close_from_guest(h, g, c);

	/* the same port pair works again after a clean close */
	g2 = vguest_connect_port_from(h->vg, 1234, 7000);
	CHECK(g2);
	WAIT_FOR(h, 3000, g2->state != VGUEST_SOCK_CONNECTING);
	CHECK(g2->state == VGUEST_SOCK_CONNECTED);
	WAIT_FOR(h, 3000, (c2 = host_accept(listener)) != NULL);
	sys_close_from_guest(h, g2, c2);
}

/* Unsupported socket type on REQUEST -> RST, nothing reaches the host. */
void test_bad_type(struct sys_harness *h)
{
	static const uint16_t types[] = { VSOCK_TYPE_SEQPACKET, 99, 0 };
	struct host_listener *listener;
	struct vsock_header header;

	sys_setup(h);
	listener = host_listen(h, 7001);
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		header = sys_guest_header(1300 + (uint32_t)i, 7001, VSOCK_OP_REQUEST);
		header.type = types[i];
		CHECK(vguest_send_raw(h->vg, &header, NULL, 0, NULL) == 0);
	}
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		WAIT_FOR(h, 2000, vguest_count_packets(h->vg, false, VSOCK_OP_RST,
						       1300 + (uint32_t)i, 7001) >= 1);
	sys_tx_barrier(h, h->vg);
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		CHECKF(vguest_count_packets(h->vg, false, VSOCK_OP_RST, 1300 + (uint32_t)i,
					    7001) == 1, "type %u: not exactly one RST", types[i]);
		CHECK(vguest_count_packets(h->vg, false, VSOCK_OP_RESPONSE,
					   1300 + (uint32_t)i, 7001) == 0);
	}
	CHECKF(listener->accepted == 0, "a non-stream REQUEST reached the host");
}

/* An RST for a connection the daemon does not know is never answered. */
void test_rst_unknown_not_answered(struct sys_harness *h)
{
	struct vsock_header header;

	sys_setup(h);
	header = sys_guest_header(2222, 3333, VSOCK_OP_RST);
	CHECK(vguest_send_raw(h->vg, &header, NULL, 0, NULL) == 0);
	sys_tx_barrier(h, h->vg);
	CHECKF(vguest_count_packets(h->vg, false, VSOCK_OP_RST, 2222, 3333) == 0,
	       "the daemon answered an RST with an RST");
}

/* RW header len disagreeing with the chain: never read past the chain. */
void test_rw_length_mismatch(struct sys_harness *h)
{
	static const char short_payload[] = "0123456789";
	char long_payload[100];
	struct vguest_sock *g;
	struct host_conn *c;
	struct vsock_header header;
	uint32_t token_long, token_short, used = 1;

	memset(long_payload, 'L', sizeof(long_payload));
	sys_setup(h);
	(void)sys_open_to_host(h, 1234, &c, &g);
	vguest_sock_mark_raw(g);
	/* header claims 1000 bytes, chain carries 10 */
	header = sys_guest_header(g->local_port, 1234, VSOCK_OP_RW);
	header.len = 1000;
	header.fwd_cnt = g->fwd_cnt;
	CHECK(vguest_send_raw(h->vg, &header, short_payload, 10, &token_long) == 0);
	WAIT_FOR(h, 3000, vguest_chain_result(h->vg, token_long, &used) == 1);
	CHECK(used == 0);
	sys_tx_barrier(h, h->vg);
	sys_pump_for(h, 50);
	CHECKF(host_in_len(c) <= 10, "host got %zu bytes from a 10-byte chain whose "
	       "header said 1000 (read past the chain)", host_in_len(c));
	printf("len 1000 / 10 bytes in chain: host got %zu bytes, guest socket %s\n",
	       host_in_len(c), vguest_sock_state_name(g->state));
	host_in_consume(c, host_in_len(c));
	if (g->state != VGUEST_SOCK_CONNECTED)
		return;
	/* header claims 5 bytes, chain carries 100 */
	header.len = 5;
	CHECK(vguest_send_raw(h->vg, &header, long_payload, sizeof(long_payload),
			      &token_short) == 0);
	WAIT_FOR(h, 3000, vguest_chain_result(h->vg, token_short, &used) == 1);
	CHECK(used == 0);
	sys_tx_barrier(h, h->vg);
	sys_pump_for(h, 50);
	CHECKF(host_in_len(c) == 0 || host_in_len(c) == 5,
	       "host got %zu bytes from a packet with len 5", host_in_len(c));
	printf("len 5 / 100 bytes in chain: host got %zu bytes, guest socket %s\n",
	       host_in_len(c), vguest_sock_state_name(g->state));
	if (g->state == VGUEST_SOCK_CONNECTED)
		sys_close_from_guest(h, g, c);
}

/* A guest that ignores the daemon's credit cannot hurt the daemon or other
 * connections. */
void test_credit_overrun_hostile(struct sys_harness *h)
{
	const size_t packet = 64 * KIB;
	const unsigned packets = 64;  /* 4 MiB against 256 KiB of credit */
	uint8_t *payload = malloc(packet);
	struct host_listener *listener, *other;
	struct vguest_sock *g, *g2;
	struct host_conn *c, *c2;
	unsigned sent = 0;
	size_t bad;

	CHECK(payload);
	sys_setup(h);
	listener = host_listen(h, 1234);
	other = host_listen(h, 1235);
	sys_open_guest_initiated(h, h->vg, listener, &c, &g);
	sys_open_guest_initiated(h, h->vg, other, &c2, &g2);
	vguest_sock_mark_raw(g);
	host_set_paused(c, true);
	while (sent < packets) {
		struct vsock_header header = sys_guest_header(g->local_port, 1234, VSOCK_OP_RW);
		uint64_t end = sys_wait_end(h, 5000);
		header.len = (uint32_t)packet;
		header.fwd_cnt = g->fwd_cnt;
		pattern_fill(41, (uint64_t)sent * packet, payload, packet);
		while (vguest_send_raw(h->vg, &header, payload, packet, NULL) != 0) {
			CHECKF(errno == EAGAIN, "send_raw: %s", strerror(errno));
			CHECKF(sys_now_ns() < end, "TX ring never drained");
			sys_pump(h, sys_ms_until(end));
		}
		sent++;
	}
	free(payload);
	sys_tx_barrier(h, h->vg);
	/* the other connection is unaffected */
	host_write_str(c2, "still fine");
	{
		char buffer[16];
		sys_guest_read_exact(h, g2, buffer, 10, 3000);
		CHECK(memcmp(buffer, "still fine", 10) == 0);
	}
	host_set_paused(c, false);
	sys_pump_for(h, 200);
	bad = pattern_check(41, 0, host_in_data(c), host_in_len(c));
	printf("credit overrun: sent %u KiB with 256 KiB credit; host got %zu KiB "
	       "(%s), guest socket %s%s\n", packets * 64, host_in_len(c) / 1024,
	       bad == host_in_len(c) ? "a correct prefix" : "with a hole",
	       vguest_sock_state_name(g->state), g->reset_received ? " (RST)" : "");
	sys_close_from_guest(h, g2, c2);
}

/* Packets with ops the daemon must not act on: no payload reaches the
 * host, the daemon survives, the connection keeps working or is reset. */
void test_bad_op(struct sys_harness *h)
{
	static const uint16_t ops[] = { VSOCK_OP_INVALID, 99, 0xffff, VSOCK_OP_RESPONSE };
	static const char junk[] = "JUNKJUNKJU";
	struct vguest_sock *g;
	struct host_conn *c;
	struct vsock_header header;

	sys_setup(h);
	(void)sys_open_to_host(h, 1234, &c, &g);
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		header = sys_guest_header(g->local_port, 1234, ops[i]);
		header.fwd_cnt = g->fwd_cnt;
		header.len = ops[i] == VSOCK_OP_RESPONSE ? 0 : (uint32_t)strlen(junk);
		CHECK(vguest_send_raw(h->vg, &header, junk, header.len, NULL) == 0);
	}
	/* and an unknown op for a connection that does not exist */
	header = sys_guest_header(2345, 1234, 99);
	CHECK(vguest_send_raw(h->vg, &header, NULL, 0, NULL) == 0);
	sys_tx_barrier(h, h->vg);
	CHECKF(host_in_len(c) == 0, "a packet with a bad op delivered %zu bytes to the host",
	       host_in_len(c));
	CHECK(vguest_count_packets(h->vg, false, VSOCK_OP_RST, 2345, 1234) <= 1);
	printf("after bad ops: guest socket %s%s\n", vguest_sock_state_name(g->state),
	       g->reset_received ? " (RST)" : "");
	if (g->state == VGUEST_SOCK_CONNECTED) {
		sys_guest_write_all(h, g, "ok", 2, 3000);
		sys_host_expect(h, c, "ok", 2, 3000);
		sys_close_from_guest(h, g, c);
	} else {
		WAIT_FOR(h, 3000, host_peer_closed(c));
	}
}
