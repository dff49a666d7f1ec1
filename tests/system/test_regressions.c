/*
 * test_regressions.c - one scenario per bug that hostile testing found in
 * the daemon, each played the way a hostile guest or a confused VMM played
 * it, against the real two-process vsockmuxd.
 *
 * Owns: these scenarios and their table; the harness is sys_harness.h.
 * Never: sleeps to synchronise (every wait is a bounded WAIT_FOR), or
 * passes without checking the well-behaved traffic byte for byte.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sys_harness.h"
#include "vsockmux/vhost_user_wire.h"

#define KIB 1024u
#define MIB (1024u * 1024u)

/* Content-checked transfer of size bytes each way on an open pair. */
static void exchange(struct sys_harness *h, struct host_conn *c,
		     struct vguest_sock *g, uint32_t seed, uint64_t size,
		     int timeout_ms)
{
	struct guest_stream *gs = guest_stream_add(h, g);

	guest_stream_source(gs, seed, size, SYS_AFTER_NOTHING);
	host_sink(c, seed, size);
	host_source(c, seed + 1, size, SYS_AFTER_NOTHING);
	guest_stream_sink(gs, seed + 1, size);
	WAIT_FOR(h, timeout_ms, c->sink.received == size && gs->sink.received == size);
	guest_stream_remove(h, gs);
}

/* The daemon still serves: a fresh host-initiated connection works. */
static void expect_new_connection_works(struct sys_harness *h, struct vguest *vg,
					uint32_t port)
{
	struct vguest_sock *listener = vguest_listen(vg, port);
	struct vguest_sock *g;
	struct host_conn *c;

	CHECK(listener);
	sys_open_host_initiated(h, vg, listener, port, &c, &g);
	exchange(h, c, g, port, 64 * KIB, 10000);
}

/*
 * QEMU's stop/cont hands the rings back with GET_VRING_BASE and starts
 * them again where they stopped. RX buffers the muxer had popped but not
 * filled must come back to the guest (used, length 0), or after a few
 * cycles every buffer is gone and host->guest traffic dies. The connection
 * open across the cycles keeps working.
 */
static void test_stop_cont_keeps_rx_buffers(struct sys_harness *h)
{
	struct vguest_sock *g;
	struct host_conn *c;
	const struct vguest_stats *stats;
	char buffer[16];

	sys_setup(h);
	(void)sys_open_to_guest(h, 52, &c, &g);
	for (unsigned cycle = 0; cycle < 40; cycle++) {
		uint32_t bases[VGUEST_QUEUE_COUNT];
		/* a short host write: one buffer used, the rest of the batch
		 * stays popped */
		host_write_str(c, "tick");
		sys_guest_read_exact(h, g, buffer, 4, 5000);
		CHECK(memcmp(buffer, "tick", 4) == 0);
		CHECKF(vguest_stop_cont(h->vg, bases) == 0, "stop/cont %u: %s", cycle,
		       vguest_error(h->vg));
	}
	stats = vguest_get_stats(h->vg);
	printf("40 stop/cont cycles: %" PRIu64 " RX buffers handed back unused\n",
	       stats->rx_used_empty);
	CHECKF(stats->rx_used_empty > 0, "no popped RX buffer was handed back");
	exchange(h, c, g, 7, 4 * MIB, 30000);
	sys_check_guest_clean(h->vg);
}

/* A region announced larger than its file (SIGBUS on first touch) is
 * refused: that frontend is dropped, the daemon keeps serving. A sealed
 * memfd cannot be shrunk under the daemon at all. */
static void test_memory_larger_than_file(struct sys_harness *h)
{
	struct {
		uint32_t nregions, padding;
		struct vhost_user_memory_region region;
	} __attribute__((packed)) table = {
		.nregions = 1,
		.region = { .guest_phys_addr = 0, .memory_size = 16 * MIB,
			    .user_addr = 0x7f0000000000ull, .mmap_offset = 0 },
	};
	struct vguest *vg;
	int small = memfd_create("small-guest-memory", MFD_CLOEXEC);

	CHECK(small >= 0);
	CHECK(ftruncate(small, 64 * KIB) == 0);
	sys_setup(h);
	CHECKF(ftruncate(vguest_memory_fd(h->vg), 4096) != 0 && errno == EPERM,
	       "the guest memory memfd is not sealed against shrinking");
	CHECK(vguest_vhost_send_raw(h->vg, VHOST_USER_SET_MEM_TABLE, VHOST_USER_VERSION,
				    sizeof(table), &table, sizeof(table), &small, 1) == 0);
	close(small);
	WAIT_FOR(h, 5000, vguest_backend_gone(h->vg));
	sys_guest_drop(h, h->vg);
	vg = sys_guest_new(h, NULL);
	expect_new_connection_works(h, vg, 60);
}

/* A call fd handed over blocking, with its counter at the maximum, or a
 * full blocking pipe: the muxer must never block in write(). */
static void test_blocking_call_fds(struct sys_harness *h)
{
	uint64_t rx_index = VGUEST_QUEUE_RX, tx_index = VGUEST_QUEUE_TX;
	uint64_t almost_full = UINT64_MAX - 1;
	struct vguest_sock *g;
	struct host_conn *c;
	Vsockmux__Control__Response *response;
	int eventfd_fd = eventfd(0, EFD_CLOEXEC); /* blocking */
	int pipe_fds[2];
	char filler[4096];

	CHECK(eventfd_fd >= 0);
	CHECK(write(eventfd_fd, &almost_full, sizeof(almost_full)) == sizeof(almost_full));
	CHECK(pipe2(pipe_fds, O_CLOEXEC | O_NONBLOCK) == 0);
	memset(filler, 'x', sizeof(filler));
	while (write(pipe_fds[1], filler, sizeof(filler)) > 0)
		;
	CHECK(fcntl(pipe_fds[1], F_SETFL, 0) == 0); /* blocking again, and full */

	sys_setup(h);
	(void)sys_open_to_guest(h, 52, &c, &g);
	CHECK(vguest_vhost_send_raw(h->vg, VHOST_USER_SET_VRING_CALL, VHOST_USER_VERSION,
				    sizeof(rx_index), &rx_index, sizeof(rx_index),
				    &eventfd_fd, 1) == 0);
	CHECK(vguest_vhost_send_raw(h->vg, VHOST_USER_SET_VRING_CALL, VHOST_USER_VERSION,
				    sizeof(tx_index), &tx_index, sizeof(tx_index),
				    &pipe_fds[1], 1) == 0);
	/* host data makes the muxer signal the RX call fd over and over
	 * (the guest sees no interrupt now, so nothing is read): the muxer
	 * must stay responsive */
	host_source(c, 3, 2 * MIB, SYS_AFTER_NOTHING);
	for (unsigned i = 0; i < 20; i++) {
		response = sys_query_stats(h, true);
		CHECK(response->stats->connections_current == 1);
		sys_stats_free(response);
	}
	/* the VMM hands proper call fds again: everything flows */
	CHECKF(vguest_swap_call_fds(h->vg) == 0, "swap call fds: %s", vguest_error(h->vg));
	{
		struct guest_stream *gs = guest_stream_add(h, g);
		guest_stream_sink(gs, 3, 2 * MIB);
		WAIT_FOR(h, 30000, gs->sink.received == 2 * MIB);
		guest_stream_remove(h, gs);
	}
	exchange(h, c, g, 5, 1 * MIB, 30000);
	expect_new_connection_works(h, h->vg, 53);
	close(eventfd_fd);
	close(pipe_fds[0]);
	close(pipe_fds[1]);
}

/* RX chains of many descriptors (here 16 and 64 payload segments) are
 * valid virtio and must be filled like any other. */
static void run_scattered_rx(struct sys_harness *h, unsigned segments)
{
	struct vguest_options o;
	struct vguest_sock *g;
	struct host_conn *c;

	vguest_options_default(&o);
	o.rx_layout = VGUEST_RX_SCATTER;
	o.rx_split_payload = 4096;
	o.rx_scatter_segments = segments;
	o.queue_size = 1024;
	sys_start_daemon(h, NULL);
	(void)sys_guest_new(h, &o);
	(void)sys_open_to_guest(h, 52, &c, &g);
	exchange(h, c, g, segments, 4 * MIB, 30000);
	CHECKF(sys_stats_dropped_now(h, "malformed_chain") == 0,
	       "RX chains of %u segments were called malformed", segments + 1);
	sys_check_guest_clean(h->vg);
}

static void test_rx_chains_16_segments(struct sys_harness *h)
{
	run_scattered_rx(h, 16);
}

static void test_rx_chains_64_segments(struct sys_harness *h)
{
	run_scattered_rx(h, 64);
}

/* A kick without an fd would need ring polling: refused, the frontend
 * dropped with a log line, the next frontend served. */
static void test_nofd_kick_refused(struct sys_harness *h)
{
	uint64_t value = VGUEST_QUEUE_TX | VHOST_USER_VRING_NOFD_MASK;
	struct vguest *vg;

	sys_setup(h);
	CHECK(vguest_vhost_send_raw(h->vg, VHOST_USER_SET_VRING_KICK, VHOST_USER_VERSION,
				    sizeof(value), &value, sizeof(value), NULL, 0) == 0);
	WAIT_FOR(h, 5000, vguest_backend_gone(h->vg));
	sys_guest_drop(h, h->vg);
	vg = sys_guest_new(h, NULL);
	expect_new_connection_works(h, vg, 61);
}

/* Read one vhost-user reply header from fd within the test's bounds;
 * false on EOF. */
static bool raw_vhost_reply(struct sys_harness *h, int fd, struct vhost_user_header *header,
			    uint64_t *payload)
{
	uint8_t bytes[sizeof(*header) + sizeof(*payload)];
	size_t got = 0;
	uint64_t end = sys_wait_end(h, 5000);

	while (got < sizeof(bytes)) {
		ssize_t count = recv(fd, bytes + got, sizeof(bytes) - got, MSG_DONTWAIT);
		if (count == 0)
			return false;
		if (count < 0) {
			CHECKF(errno == EAGAIN || errno == EINTR, "recv: %s", strerror(errno));
			CHECKF(sys_now_ns() < end, "no vhost-user reply");
			sys_pump(h, 5);
			continue;
		}
		got += (size_t)count;
	}
	memcpy(header, bytes, sizeof(*header));
	memcpy(payload, bytes + sizeof(*header), sizeof(*payload));
	return true;
}

/* Before SET_OWNER only the feature queries are answered; anything else
 * drops the frontend. */
static void test_requests_before_owner(struct sys_harness *h)
{
	struct vhost_user_header header = { .request = VHOST_USER_GET_FEATURES,
					    .flags = VHOST_USER_VERSION };
	struct {
		struct vhost_user_header header;
		uint64_t value;
	} __attribute__((packed)) set_features = {
		.header = { .request = VHOST_USER_SET_FEATURES,
			    .flags = VHOST_USER_VERSION, .size = 8 },
		.value = 1ull << VIRTIO_FEATURE_VERSION_1,
	};
	struct vhost_user_header reply;
	uint64_t payload;
	struct vguest *vg;
	char byte;
	int fd;

	sys_start_daemon(h, NULL);
	fd = sys_vhost_connect_raw(h);
	CHECK(send(fd, &header, sizeof(header), MSG_NOSIGNAL) == sizeof(header));
	CHECKF(raw_vhost_reply(h, fd, &reply, &payload), "GET_FEATURES before "
	       "SET_OWNER was not answered");
	CHECK(reply.request == VHOST_USER_GET_FEATURES);
	CHECK(send(fd, &set_features, sizeof(set_features), MSG_NOSIGNAL) ==
	      sizeof(set_features));
	{
		uint64_t end = sys_wait_end(h, 5000);
		for (;;) {
			ssize_t count = recv(fd, &byte, 1, MSG_DONTWAIT);
			if (count == 0 || (count < 0 && errno == ECONNRESET))
				break;
			CHECKF(count < 0 && errno == EAGAIN, "unexpected bytes after "
			       "SET_FEATURES before SET_OWNER");
			CHECKF(sys_now_ns() < end, "SET_FEATURES before SET_OWNER was "
			       "served; the frontend should have been dropped");
			sys_pump(h, 5);
		}
	}
	close(fd);
	vg = sys_guest_new(h, NULL);
	expect_new_connection_works(h, vg, 62);
}

/* SET_MEM_TABLE on live rings (memory hot-plug): the connections keep
 * going, byte for byte. */
static void test_live_mem_table_keeps_connections(struct sys_harness *h)
{
	struct vguest_sock *g;
	struct host_conn *c;

	sys_setup(h);
	(void)sys_open_to_guest(h, 52, &c, &g);
	exchange(h, c, g, 11, 256 * KIB, 10000);
	for (unsigned i = 0; i < 5; i++)
		CHECKF(vguest_resend_mem_table(h->vg) == 0, "SET_MEM_TABLE: %s",
		       vguest_error(h->vg));
	CHECK(g->state == VGUEST_SOCK_CONNECTED);
	exchange(h, c, g, 13, 2 * MIB, 30000);
	sys_check_guest_clean(h->vg);
}

/* Post one raw packet, pumping while the TX ring is full. */
static void send_raw_waiting(struct sys_harness *h, const struct vsock_header *header)
{
	uint64_t end = sys_wait_end(h, 10000);
	while (vguest_send_raw(h->vg, header, NULL, 0, NULL) != 0) {
		CHECKF(errno == EAGAIN, "vguest_send_raw: %s", strerror(errno));
		CHECKF(sys_now_ns() < end, "TX ring stayed full");
		sys_pump(h, 5);
	}
}

/*
 * A REQUEST flood while the guest posts no RX buffers: every REQUEST is
 * owed an RST. The muxer stops taking guest packets while too many RSTs
 * wait, instead of dropping them; once buffers come, every RST arrives,
 * and a REQUEST re-sent for a pair that just got its RST is answered too.
 */
static void test_request_flood_without_rx_buffers(struct sys_harness *h)
{
	const uint32_t flood = 6000, first_port = 20000, dead_port = 9999;
	struct vsock_header header;
	bool refilling = false;
	size_t answered;

	sys_setup(h);
	vguest_set_rx_refill(h->vg, false);
	for (uint32_t i = 0; i < flood; i++) {
		uint64_t end = sys_wait_end(h, 300);
		header = sys_guest_header(first_port + i, dead_port, VSOCK_OP_REQUEST);
		while (vguest_send_raw(h->vg, &header, NULL, 0, NULL) != 0) {
			CHECKF(errno == EAGAIN, "vguest_send_raw: %s", strerror(errno));
			if (sys_now_ns() < end) {
				sys_pump(h, 5);
				continue;
			}
			/* the TX ring stays full: the muxer stopped taking
			 * packets until it can send the RSTs it owes */
			CHECKF(!refilling, "TX ring full although RX buffers flow");
			printf("TX paused after %u REQUESTs; posting RX buffers\n", i);
			refilling = true;
			vguest_set_rx_refill(h->vg, true);
			send_raw_waiting(h, &header);
			break;
		}
	}
	CHECKF(refilling, "%u REQUESTs without RX buffers never paused TX", flood);
	vguest_set_rx_refill(h->vg, true);
	WAIT_FOR(h, 20000, vguest_count_packets(h->vg, false, VSOCK_OP_RST,
						 VGUEST_ANY_PORT, dead_port) >= flood);
	answered = vguest_count_packets(h->vg, false, VSOCK_OP_RST, VGUEST_ANY_PORT,
					dead_port);
	printf("%u REQUESTs without RX buffers: %zu RSTs arrived, rst_queue_full %" PRIu64
	       "\n", flood, answered, sys_stats_dropped_now(h, "rst_queue_full"));
	CHECK(sys_stats_dropped_now(h, "rst_queue_full") == 0);
	/* the same pair again, right after its RST */
	header = sys_guest_header(first_port + 1, dead_port, VSOCK_OP_REQUEST);
	send_raw_waiting(h, &header);
	WAIT_FOR(h, 5000, vguest_count_packets(h->vg, false, VSOCK_OP_RST, first_port + 1,
						 dead_port) == 2);
	expect_new_connection_works(h, h->vg, 63);
}

/*
 * Host clients arriving while the muxer is stopped: the broker accepts
 * what the channel takes, then stops accepting (the rest wait in the
 * listen backlog). After the muxer resumes, every client the broker
 * accepted gets its OK; none is closed without a word.
 */
static void test_host_clients_while_muxer_stopped(struct sys_harness *h)
{
	const unsigned clients = 3000;
	struct host_conn **conns = calloc(clients, sizeof(*conns));
	struct vguest_sock *listener;
	pid_t muxer;
	unsigned ok = 0, closed = 0;

	CHECK(conns);
	sys_setup(h);
	listener = vguest_listen(h->vg, 52);
	CHECK(listener);
	muxer = sys_daemon_child_pid(h);
	CHECK(muxer > 0);
	CHECK(kill(muxer, SIGSTOP) == 0);
	for (unsigned i = 0; i < clients; i++) {
		struct sockaddr_un address = { .sun_family = AF_UNIX };
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		CHECK(fd >= 0);
		snprintf(address.sun_path, sizeof(address.sun_path), "%s", h->uds_path);
		if (connect(fd, (struct sockaddr *)&address, sizeof(address)) != 0) {
			/* backlog full: never accepted, so never dropped */
			CHECKF(errno == EAGAIN, "connect: %s", strerror(errno));
			close(fd);
			continue;
		}
		CHECK(send(fd, "CONNECT 52\n", 11, MSG_NOSIGNAL) == 11);
		conns[i] = host_conn_adopt(h, fd);
	}
	/* observe: the broker accepts what the channel can hold meanwhile */
	sys_pump_for(h, 1000);
	CHECK(kill(muxer, SIGCONT) == 0);
	for (unsigned i = 0; i < clients; i++) {
		char line[64];
		if (!conns[i])
			continue;
		WAIT_FOR(h, 20000, host_in_len(conns[i]) > 0 || host_peer_closed(conns[i]));
		if (host_take_line(conns[i], line, sizeof(line)) && strncmp(line, "OK ", 3) == 0)
			ok++;
		else
			closed++;
		while (vguest_accept(listener))
			;
	}
	printf("%u clients while the muxer was stopped: %u got OK, %u closed\n",
	       clients, ok, closed);
	CHECKF(closed == 0, "%u accepted host clients were closed without an OK", closed);
	free(conns);
}

static uint64_t buffered_bytes(struct sys_harness *h)
{
	Vsockmux__Control__Response *response = sys_query_stats(h, false);
	uint64_t bytes = response->stats->tx_buffered_bytes;
	sys_stats_free(response);
	return bytes;
}

/*
 * Guest connections whose host reader never reads pin guest->host data
 * in the muxer. The total is bounded by --tx-buffer-budget (plus a small
 * floor per connection), and a well-behaved connection keeps flowing.
 */
static void test_tx_budget_bounds_memory(struct sys_harness *h)
{
	const unsigned stuck = 256;
	const uint64_t budget = 8 * MIB;
	static const char *const args[] = { "--tx-buffer-budget", "8388608", NULL };
	struct host_listener *listener;
	struct host_conn *good_c;
	struct vguest_sock *good_g;
	Vsockmux__Control__Response *response;
	long rss_before, rss_after;
	uint64_t start, alone_ns, loaded_ns;

	sys_start_daemon(h, args);
	(void)sys_guest_new(h, NULL);
	(void)sys_open_to_host(h, 1000, &good_c, &good_g);
	start = sys_now_ns();
	exchange(h, good_c, good_g, 21, 8 * MIB, 30000);
	alone_ns = sys_now_ns() - start;
	rss_before = sys_process_rss_kib(sys_daemon_child_pid(h));

	listener = host_listen(h, 2000);
	for (unsigned i = 0; i < stuck; i++) {
		struct host_conn *c;
		struct vguest_sock *g;
		struct guest_stream *gs;
		sys_open_guest_initiated(h, h->vg, listener, &c, &g);
		host_set_paused(c, true);
		gs = guest_stream_add(h, g);
		gs->stop_on_error = true;
		guest_stream_source(gs, 100 + i, 1 * MIB, SYS_AFTER_NOTHING);
	}
	/* let every stuck connection use all the credit it is offered */
	WAIT_FOR(h, 30000, buffered_bytes(h) >= budget * 3 / 4);
	start = sys_now_ns();
	exchange(h, good_c, good_g, 23, 8 * MIB, 60000);
	loaded_ns = sys_now_ns() - start;
	response = sys_query_stats(h, false);
	rss_after = sys_process_rss_kib(sys_daemon_child_pid(h));
	printf("%u stuck connections: buffered %" PRIu64 " bytes, credit offered %"
	       PRIu64 ", budget %" PRIu64 ", windows limited %" PRIu64
	       "; muxer RSS %ld -> %ld KiB; good 16 MiB exchange %.0f ms alone, "
	       "%.0f ms beside them\n", stuck, response->stats->tx_buffered_bytes,
	       response->stats->tx_window_bytes, response->stats->tx_buffer_budget,
	       response->stats->windows_limited, rss_before, rss_after,
	       alone_ns / 1e6, loaded_ns / 1e6);
	/* the bound: budget + a 4 KiB floor per connection */
	CHECK(response->stats->tx_window_bytes <= budget + (stuck + 1) * 4 * KIB);
	CHECK(response->stats->tx_buffered_bytes <= response->stats->tx_window_bytes);
	/* RSS also holds allocator slack (AddressSanitizer keeps freed blocks
	 * in quarantine): twice the bound plus 16 MiB; without the budget
	 * these connections pin 256 x 256 KiB = 64 MiB */
	CHECKF(rss_after - rss_before <=
	       (long)(2 * (budget + (stuck + 1) * 4 * KIB) / KIB) + 16 * 1024,
	       "muxer RSS grew by %ld KiB", rss_after - rss_before);
	CHECKF(loaded_ns <= 2 * alone_ns + 2000000000ull,
	       "the good connection slowed from %.0f to %.0f ms", alone_ns / 1e6,
	       loaded_ns / 1e6);
	sys_stats_free(response);
}

/*
 * Host clients that connect and never send their line hold no more than
 * their own cap of slots: accepting pauses at --max-host-handshakes, the
 * rest wait in the listen backlog, and guest connections go on.
 */
static void test_half_open_host_clients_capped(struct sys_harness *h)
{
	static const char *const args[] = { "--max-host-handshakes", "32",
					     "--max-connections", "256", NULL };
	const unsigned clients = 1000;
	int *fds = calloc(clients, sizeof(*fds));
	struct host_listener *listener;
	struct host_conn *c;
	struct vguest_sock *g;
	Vsockmux__Control__Response *response;
	unsigned connected = 0;

	CHECK(fds);
	sys_start_daemon(h, args);
	(void)sys_guest_new(h, NULL);
	for (unsigned i = 0; i < clients; i++) {
		struct sockaddr_un address = { .sun_family = AF_UNIX };
		fds[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		CHECK(fds[i] >= 0);
		snprintf(address.sun_path, sizeof(address.sun_path), "%s", h->uds_path);
		if (connect(fds[i], (struct sockaddr *)&address, sizeof(address)) == 0)
			connected++;
		else
			CHECKF(errno == EAGAIN, "connect: %s", strerror(errno));
	}
	/* observe a while: the muxer must have paused accepting */
	sys_pump_for(h, 300);
	response = sys_query_stats(h, false);
	printf("%u half-open host clients (%u connected): %" PRIu64 " in handshake, "
	       "%" PRIu64 " accept pauses, %" PRIu64 " refused at the cap\n", clients,
	       connected, response->stats->handshakes_current,
	       response->stats->host_accept_pauses,
	       response->stats->refused_handshake_limit);
	CHECK(response->stats->handshakes_current <= 64);
	CHECK(response->stats->host_accept_pauses >= 1);
	sys_stats_free(response);
	/* the slots guest connections need are free */
	listener = host_listen(h, 1234);
	for (unsigned i = 0; i < 8; i++) {
		sys_open_guest_initiated(h, h->vg, listener, &c, &g);
		exchange(h, c, g, 40 + i, 64 * KIB, 10000);
	}
	for (unsigned i = 0; i < clients; i++)
		close(fds[i]);
	free(fds);
	WAIT_FOR(h, 10000, (response = sys_query_stats(h, false),
			    connected = (unsigned)response->stats->handshakes_current,
			    sys_stats_free(response), connected == 0));
	expect_new_connection_works(h, h->vg, 64);
}

/*
 * Bad input gets a log line, but never one per packet: 5,000 packets with
 * a spoofed source CID in a burst give at most LOG_RATELIMIT_BURST (10)
 * lines per second of the burst, every packet is counted, and the next
 * line after the window says how many were suppressed.
 */
static void test_bad_input_log_ratelimited(struct sys_harness *h)
{
	const char *text = "source CID is not the guest's";
	struct vguest_sock *g;
	struct host_conn *c;
	struct vsock_header header = sys_guest_header(7000, 7001, VSOCK_OP_REQUEST);
	uint64_t start, elapsed_ms;
	unsigned sent = 0, lines, allowed;
	size_t mark;

	sys_setup(h);
	(void)sys_open_to_guest(h, 5000, &c, &g);
	header.src_cid = 77;
	mark = sys_log_mark(h);
	start = sys_now_ns();
	while (sent < 5000) {
		if (vguest_send_raw(h->vg, &header, NULL, 0, NULL) == 0) {
			sent++;
			continue;
		}
		CHECKF(errno == EAGAIN, "vguest_send_raw: %s", strerror(errno));
		sys_pump(h, 10);
		CHECKF(sys_now_ns() - start < 20000000000ull, "the TX ring stopped moving");
	}
	sys_tx_barrier(h, h->vg);
	elapsed_ms = (sys_now_ns() - start) / 1000000u;
	lines = sys_log_count(h, mark, text);
	allowed = 10u * (unsigned)(elapsed_ms / 1000u + 2u);
	printf("5000 spoofed packets in %" PRIu64 " ms: %u log lines (at most %u allowed)\n",
	       elapsed_ms, lines, allowed);
	CHECKF(lines >= 1 && lines <= allowed, "%u log lines for 5000 bad packets in %"
	       PRIu64 " ms", lines, elapsed_ms);
	CHECK(sys_stats_dropped_now(h, "bad_src_cid") == 5000);

	/* a new window: the next line reports what the last one held back */
	sys_pump_for(h, 1100);
	mark = sys_log_mark(h);
	CHECK(vguest_send_raw(h->vg, &header, NULL, 0, NULL) == 0);
	sys_tx_barrier(h, h->vg);
	WAIT_FOR_LOG(h, mark, "similar lines suppressed)", 2000);
	CHECK(sys_stats_dropped_now(h, "bad_src_cid") == 5001);
	exchange(h, c, g, 81, 256 * KIB, 10000);
}

static const struct sys_test tests[] = {
#define SCENARIO SYS_SCENARIO_ENTRY
#include "test_regressions.def"
#undef SCENARIO
};

int main(int argc, char **argv)
{
	return sys_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
