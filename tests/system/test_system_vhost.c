/*
 * test_system_vhost.c - test_system's vhost-user and virtqueue robustness
 * scenarios: feature negotiation, unknown, oversized and garbage messages,
 * malformed TX chains and RX buffers, chain shapes, no EVENT_IDX, ring
 * index wrap, a 1024-entry queue, call fd swaps and their ordering, a
 * device reset.
 *
 * Owns: these scenarios. Never: depends on another scenario's state.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "test_system.h"
#include "vsockmux/vhost_user_wire.h"

static void expect_new_frontend_works(struct sys_harness *h)
{
	struct vguest *vg2 = sys_guest_new(h, NULL);
	struct vguest_sock *l2 = vguest_listen(vg2, 52), *g2;
	struct host_conn *c2;
	char buffer[8];
	sys_open_host_initiated(h, vg2, l2, 52, &c2, &g2);
	host_write_str(c2, "fresh");
	sys_guest_read_exact(h, g2, buffer, 5, 3000);
	CHECK(memcmp(buffer, "fresh", 5) == 0);
	sys_close_from_guest(h, g2, c2);
}

/* Unknown request number on a live frontend: dropped, next one served. */
void test_vhost_unknown_request(struct sys_harness *h)
{
	struct vguest_sock *g;
	struct host_conn *c;

	sys_setup(h);
	(void)sys_open_to_guest(h, 52, &c, &g);
	CHECK(vguest_vhost_send_raw(h->vg, 99, VHOST_USER_VERSION, 0, NULL, 0, NULL, 0) == 0);
	WAIT_FOR(h, 3000, vguest_backend_gone(h->vg));
	WAIT_FOR(h, 3000, host_peer_closed(c));
	sys_guest_drop(h, h->vg);
	CHECK(sys_daemon_alive(h));
	expect_new_frontend_works(h);
}

/* A size field larger than any payload: dropped, next one served. */
void test_vhost_oversized_message(struct sys_harness *h)
{
	uint8_t junk[64];

	sys_setup(h);
	memset(junk, 0xab, sizeof(junk));
	CHECK(vguest_vhost_send_raw(h->vg, VHOST_USER_SET_VRING_NUM, VHOST_USER_VERSION,
				    0x100000u, junk, sizeof(junk), NULL, 0) == 0);
	WAIT_FOR(h, 3000, vguest_backend_gone(h->vg));
	sys_guest_drop(h, h->vg);
	CHECK(sys_daemon_alive(h));
	expect_new_frontend_works(h);
}

/* Garbage as the very first message, before any set-up. */
void test_vhost_garbage_first(struct sys_harness *h)
{
	static const uint8_t header[12] = { 99, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0 };
	struct pollfd pfd;
	char byte;
	int fd;

	sys_start_daemon(h, NULL);
	fd = sys_vhost_connect_raw(h);
	CHECK(send(fd, header, sizeof(header), MSG_NOSIGNAL) == (ssize_t)sizeof(header));
	pfd.fd = fd;
	pfd.events = POLLIN;
	pfd.revents = 0;
	CHECKF(poll(&pfd, 1, 3000) == 1, "daemon kept a frontend that sent request 99");
	CHECKF(recv(fd, &byte, 1, MSG_DONTWAIT) <= 0, "daemon answered request 99");
	close(fd);
	CHECK(sys_daemon_alive(h));
	expect_new_frontend_works(h);
}

/* Malformed TX chains come back used with length 0; a good connection
 * keeps flowing with the right content. */
void test_malformed_chains(struct sys_harness *h)
{
	const uint64_t up = 2 * MIB, down = 1 * MIB;
	uint32_t tokens[VGUEST_BAD_CHAIN_COUNT];
	uint8_t junk[1000];
	struct vguest_sock *g;
	struct host_conn *c;
	struct guest_stream *gs;
	unsigned posted = 0;

	sys_setup(h);
	gs = sys_stream_to_host(h, 1234, &c, &g);
	guest_stream_source(gs, 55, up, SYS_AFTER_NOTHING);
	host_sink(c, 55, up);
	memset(junk, 'Z', sizeof(junk));
	while (posted < VGUEST_BAD_CHAIN_COUNT) {
		struct vsock_header bad = sys_guest_header(g->local_port, 1234, VSOCK_OP_RW);
		bad.len = sizeof(junk);
		bad.fwd_cnt = g->fwd_cnt;
		if (vguest_post_bad_chain(h->vg, (enum vguest_bad_chain)posted, &bad, junk,
					  sizeof(junk), &tokens[posted]) == 0) {
			posted++;
		} else {
			CHECKF(errno == EAGAIN, "post bad chain: %s", strerror(errno));
		}
		sys_pump(h, 5);
	}
	WAIT_FOR(h, 10000, c->sink.received == up);
	for (unsigned i = 0; i < VGUEST_BAD_CHAIN_COUNT; i++) {
		uint32_t used_len = 0;
		WAIT_FOR(h, 3000, vguest_chain_result(h->vg, tokens[i], &used_len) == 1);
		CHECKF(used_len == 0, "%s: used length %u",
		       vguest_bad_chain_name((enum vguest_bad_chain)i), used_len);
	}
	sys_transfer_down(h, c, gs, 56, down, 10000);
	CHECK(g->state == VGUEST_SOCK_CONNECTED);
	sys_stream_close(h, gs, g, c);
}

/* Run data both ways with the guest in options *o. */
static void run_both_ways(struct sys_harness *h, const struct vguest_options *o,
			  uint64_t size)
{
	struct vguest_sock *g;
	struct host_conn *c;
	struct guest_stream *gs;

	sys_start_daemon(h, NULL);
	(void)sys_guest_new(h, o);
	gs = sys_stream_to_guest(h, 52, &c, &g);
	guest_stream_source(gs, 1, size, SYS_AFTER_NOTHING);
	host_sink(c, 1, size);
	host_source(c, 2, size, SYS_AFTER_NOTHING);
	guest_stream_sink(gs, 2, size);
	WAIT_FOR(h, 30000, c->sink.received == size && gs->sink.received == size);
	sys_stream_close(h, gs, g, c);
}

/* Every TX chain shape; RX as 44 + 4096 descriptors. */
void test_chain_shapes(struct sys_harness *h)
{
	static const struct {
		enum vguest_tx_layout layout;
		unsigned segments;
		bool indirect;
		const char *name;
	} shapes[] = {
		{ VGUEST_TX_LINUX, 1, false, "header + data" },
		{ VGUEST_TX_LINUX, 1, true, "indirect header + data" },
		{ VGUEST_TX_SINGLE, 1, false, "header and data in one descriptor" },
		{ VGUEST_TX_HDR_SPLIT, 1, false, "header split 20 + 24" },
		{ VGUEST_TX_LINUX, 4, false, "data over 4 descriptors" },
		{ VGUEST_TX_HDR_SPLIT, 3, true, "indirect, split header, 3 data" },
		{ VGUEST_TX_LINUX, 16, true, "indirect, 16 data descriptors" },
	};
	const uint64_t size = 300 * KIB;
	struct vguest_options o;
	struct vguest_sock *g;
	struct host_conn *c;
	struct guest_stream *gs;

	vguest_options_default(&o);
	o.rx_layout = VGUEST_RX_SPLIT;
	sys_start_daemon(h, NULL);
	(void)sys_guest_new(h, &o);
	gs = sys_stream_to_guest(h, 52, &c, &g);
	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
		printf("TX shape: %s\n", shapes[i].name);
		vguest_set_tx_layout(h->vg, shapes[i].layout, shapes[i].segments,
				     shapes[i].indirect);
		guest_stream_source(gs, 300 + (uint32_t)i, size, SYS_AFTER_NOTHING);
		host_sink(c, 300 + (uint32_t)i, size);
		WAIT_FOR(h, 10000, c->sink.received == size);
	}
	sys_transfer_down(h, c, gs, 399, size, 10000);
	sys_stream_close(h, gs, g, c);
}

void test_no_event_idx(struct sys_harness *h)
{
	struct vguest_options o;
	vguest_options_default(&o);
	o.want_event_idx = false;
	o.want_indirect = false;
	run_both_ways(h, &o, 2 * MIB);
}

/* Ring indices start just below 65536, so both rings wrap quickly. */
void test_ring_index_wrap(struct sys_harness *h)
{
	struct vguest_options o;
	vguest_options_default(&o);
	o.ring_base = 65500;
	run_both_ways(h, &o, 2 * MIB);
}

/* A big queue and small RX buffers (Linux refill-below-half policy). */
void test_queue_1024_linux_refill(struct sys_harness *h)
{
	struct vguest_options o;
	vguest_options_default(&o);
	o.queue_size = 1024;
	o.rx_refill_half = true;
	run_both_ways(h, &o, 4 * MIB);
}

/* SET_VRING_CALL with new eventfds on live rings, mid-transfer. */
void test_live_call_swap(struct sys_harness *h)
{
	const uint64_t size = 4 * MIB;
	struct vguest_sock *g;
	struct host_conn *c;
	struct guest_stream *gs;

	sys_setup(h);
	gs = sys_stream_to_guest(h, 52, &c, &g);
	guest_stream_source(gs, 3, size, SYS_AFTER_NOTHING);
	host_sink(c, 3, size);
	host_source(c, 4, size, SYS_AFTER_NOTHING);
	guest_stream_sink(gs, 4, size);
	WAIT_FOR(h, 10000, c->sink.received >= size / 4 && gs->sink.received >= size / 4);
	CHECKF(vguest_swap_call_fds(h->vg) == 0, "swap: %s", vguest_error(h->vg));
	WAIT_FOR(h, 20000, c->sink.received == size && gs->sink.received == size);
	CHECKF(vguest_get_stats(h->vg)->stale_call_signals == 0,
	       "daemon signalled %" PRIu64 " times on a call fd it had been told to drop",
	       vguest_get_stats(h->vg)->stale_call_signals);
	sys_stream_close(h, gs, g, c);
}

/* Malformed RX buffers: skipped (used length 0), never written outside
 * what the descriptors allow; data still flows. */
void test_malformed_rx_buffers(struct sys_harness *h)
{
	const uint64_t down = 256 * KIB;
	uint32_t tokens[VGUEST_BAD_RX_COUNT];
	struct vguest_options o;
	struct vguest_sock *g;
	struct host_conn *c;
	struct guest_stream *gs;

	vguest_options_default(&o);
	o.rx_start_empty = true;
	sys_start_daemon(h, NULL);
	(void)sys_guest_new(h, &o);
	for (unsigned i = 0; i < VGUEST_BAD_RX_COUNT; i++)
		CHECK(vguest_post_bad_rx_chain(h->vg, (enum vguest_bad_rx)i, &tokens[i]) == 0);
	vguest_set_rx_refill(h->vg, true);
	vguest_flush(h->vg);
	gs = sys_stream_to_guest(h, 52, &c, &g);
	sys_transfer_down(h, c, gs, 51, down, 10000);
	for (unsigned i = 0; i < VGUEST_BAD_RX_COUNT; i++) {
		uint32_t used = 0;
		int done = vguest_chain_result(h->vg, tokens[i], &used);
		CHECKF(vguest_bad_rx_canary_intact(h->vg, tokens[i]),
		       "bad RX buffer %u: the daemon wrote where it must not", i);
		if (i != VGUEST_BAD_RX_TOO_SHORT)
			CHECKF(done == 1, "bad RX buffer %u was never given back", i);
		CHECKF(done != 1 || used == 0, "bad RX buffer %u came back with length %u",
		       i, used);
	}
	sys_stream_close(h, gs, g, c);
}

/* Guest driver reset (reboot) under QEMU 7.2: rings disabled, bases
 * fetched, everything set up again. Old connections are gone, new ones
 * work. */
void test_device_reset(struct sys_harness *h)
{
	uint32_t bases[VGUEST_QUEUE_COUNT];
	struct vguest_sock *listener, *g1, *g2, *g3, *g4;
	struct host_listener *host_l;
	struct host_conn *c1, *c2, *c3, *c4;
	uint16_t tx_avail, rx_avail;
	char buffer[8];

	sys_setup(h);
	listener = vguest_listen(h->vg, 52);
	host_l = host_listen(h, 1234);
	sys_open_host_initiated(h, h->vg, listener, 52, &c1, &g1);
	sys_open_guest_initiated(h, h->vg, host_l, &c2, &g2);
	host_write_str(c1, "one");
	sys_guest_read_exact(h, g1, buffer, 3, 3000);
	sys_guest_write_all(h, g2, "two", 3, 3000);
	sys_host_expect(h, c2, "two", 3, 3000);
	sys_tx_barrier(h, h->vg);
	tx_avail = vguest_avail_idx(h->vg, VGUEST_QUEUE_TX);
	rx_avail = vguest_avail_idx(h->vg, VGUEST_QUEUE_RX);

	CHECKF(vguest_reset_device(h->vg, bases) == 0, "device reset: %s",
	       vguest_error(h->vg));
	printf("GET_VRING_BASE: RX %u (avail %u), TX %u (avail %u)\n",
	       bases[VGUEST_QUEUE_RX], rx_avail, bases[VGUEST_QUEUE_TX], tx_avail);
	CHECKF(bases[VGUEST_QUEUE_TX] == tx_avail, "GET_VRING_BASE(TX) = %u but all "
	       "chains up to %u were processed", bases[VGUEST_QUEUE_TX], tx_avail);
	CHECKF((uint16_t)(rx_avail - bases[VGUEST_QUEUE_RX]) <= VGUEST_DEFAULT_QUEUE_SIZE,
	       "GET_VRING_BASE(RX) = %u is not within the %u posted buffers before %u",
	       bases[VGUEST_QUEUE_RX], VGUEST_DEFAULT_QUEUE_SIZE, rx_avail);
	WAIT_FOR(h, 3000, host_peer_closed(c1) && host_peer_closed(c2));

	(void)sys_open_to_guest(h, 52, &c3, &g3);
	host_write_str(c3, "after");
	sys_guest_read_exact(h, g3, buffer, 5, 3000);
	CHECK(memcmp(buffer, "after", 5) == 0);
	sys_close_from_guest(h, g3, c3);
	sys_open_guest_initiated(h, h->vg, host_l, &c4, &g4);
	sys_guest_write_all(h, g4, "reset", 5, 3000);
	sys_host_expect(h, c4, "reset", 5, 3000);
	sys_close_from_guest(h, g4, c4);
}

/* The set-up QEMU 7.2 performs, and the features our other tests rely on. */
void test_vhost_features(struct sys_harness *h)
{
	const uint64_t need = (1ull << VIRTIO_FEATURE_VERSION_1) |
			      (1ull << VHOST_USER_FEATURE_PROTOCOL_FEATURES) |
			      (1ull << VIRTIO_FEATURE_RING_EVENT_IDX) |
			      (1ull << VIRTIO_FEATURE_RING_INDIRECT_DESC);
	const uint64_t need_protocol = (1ull << VHOST_USER_PROTOCOL_F_MQ) |
				       (1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK) |
				       (1ull << VHOST_USER_PROTOCOL_F_CONFIG);
	uint64_t offered;

	sys_setup(h);
	offered = vguest_features_offered(h->vg);
	printf("features offered %#" PRIx64 ", acked %#" PRIx64 ", protocol %#" PRIx64
	       ", config guest_cid %" PRIu64 "\n", offered, vguest_features_acked(h->vg),
	       vguest_protocol_features(h->vg), vguest_config_cid(h->vg));
	CHECKF((offered & need) == need, "missing offered features %#" PRIx64,
	       need & ~offered);
	CHECKF(!(offered & (1ull << VIRTIO_VSOCK_F_SEQPACKET)),
	       "SEQPACKET offered but the daemon only does streams");
	CHECKF((vguest_protocol_features(h->vg) & need_protocol) == need_protocol,
	       "missing protocol features (MQ, REPLY_ACK, CONFIG)");
	CHECK(vguest_config_cid(h->vg) == 3);
	/* a second, independent set-up on the same daemon after this one */
	sys_guest_drop(h, h->vg);
	expect_new_frontend_works(h);
}

/*
 * QEMU 7.2 swaps the call fds (SET_VRING_CALL) right after SET_VRING_ENABLE
 * and resumes the guest once the messages are written, not processed; it
 * checks the old (masked) notifier only once, right after sending. A
 * backend that completes TX chains when the ring becomes ready, before it
 * reads the SET_VRING_CALL queued right behind SET_VRING_ENABLE, signals the
 * old fd, and QEMU loses that interrupt. 20 fresh frontends post TX at once.
 */
void test_call_swap_ordering(struct sys_harness *h)
{
	uint64_t early = 0;

	sys_start_daemon(h, NULL);
	for (int round = 0; round < 20; round++) {
		struct vguest *vg = sys_guest_new(h, NULL);
		struct vguest_sock *s = vguest_connect_port(vg, 4000 + (uint32_t)round);
		CHECK(s);
		WAIT_FOR(h, 2000, s->state == VGUEST_SOCK_CLOSED);
		early += vguest_get_stats(vg)->early_call_signals;
		sys_guest_drop(h, vg);
	}
	CHECKF(early == 0, "in 20 set-ups the daemon signalled %" PRIu64 " interrupt(s) "
	       "on a call fd already replaced by a SET_VRING_CALL queued behind "
	       "SET_VRING_ENABLE (it used the TX ring before reading it); QEMU 7.2 "
	       "would lose them", early);
}
