/*
 * test_conn.c - the connection state machine and credit arithmetic, driven
 * through conn_handle_guest_packet and the host-side entry points of a real
 * muxer (no frontend attached, so packets owed to the guest stay visible
 * as pending bits and queued RSTs). Host sockets are real socketpairs; the
 * broker is the other end of a real SOCK_SEQPACKET channel.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "broker_send.h"
#include "conn.h"
#include "conn_table.h"
#include "muxer.h"
#include "vsockmux/ipc.h"

#define GUEST_CID 3u

struct fixture {
	struct vsockmuxd_options options;
	struct muxer muxer;
	int broker_fd;      /* our end of the channel: we play the broker */
};

static int setup(void **state)
{
	struct fixture *fixture = calloc(1, sizeof(*fixture));
	int channel[2];
	assert_non_null(fixture);
	fixture->options.guest_cid = GUEST_CID;
	fixture->options.socket_path = "unused";
	fixture->options.uds_path = "unused";
	fixture->options.tx_buffer_size = 65536;
	fixture->options.queue_size = 256;
	fixture->options.max_connections = 4;
	fixture->options.max_host_handshakes = OPTIONS_DEFAULT_MAX_HOST_HANDSHAKES;
	fixture->options.tx_buffer_budget = OPTIONS_DEFAULT_TX_BUFFER_BUDGET;
	fixture->options.log_level = LOG_LEVEL_ERROR;
	log_set_level(LOG_LEVEL_ERROR);
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, channel), 0);
	fixture->broker_fd = channel[0];
	assert_int_equal(muxer_init(&fixture->muxer, &fixture->options, channel[1]), 0);
	*state = fixture;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fixture = *state;
	int channel_fd = fixture->muxer.channel_fd;
	muxer_destroy(&fixture->muxer);
	close(channel_fd);
	close(fixture->broker_fd);
	free(fixture);
	return 0;
}

static struct vsock_header guest_header(uint16_t op, uint32_t guest_port,
					uint32_t host_port)
{
	struct vsock_header header = {
		.src_cid = GUEST_CID, .dst_cid = VSOCK_HOST_CID,
		.src_port = guest_port, .dst_port = host_port,
		.type = VSOCK_TYPE_STREAM, .op = op,
		.buf_alloc = 262144, .fwd_cnt = 0,
	};
	return header;
}

static void guest_send(struct fixture *fixture, uint16_t op, uint32_t guest_port,
		       uint32_t host_port, uint32_t flags)
{
	struct vsock_header header = guest_header(op, guest_port, host_port);
	header.flags = flags;
	conn_handle_guest_packet(&fixture->muxer, &header, NULL, 0);
}

static void guest_send_data(struct fixture *fixture, uint32_t guest_port,
			    uint32_t host_port, const void *data, size_t length)
{
	struct vsock_header header = guest_header(VSOCK_OP_RW, guest_port, host_port);
	struct iovec payload = { .iov_base = (void *)data, .iov_len = length };
	header.len = (uint32_t)length;
	conn_handle_guest_packet(&fixture->muxer, &header, &payload, 1);
}

/* Is the RST queue's newest entry exactly (host_port, guest_port)? */
static bool rst_queued(const struct muxer *muxer, uint32_t host_port,
		       uint32_t guest_port)
{
	for (uint32_t i = 0; i < muxer->rsts.count; i++) {
		const struct rst_owed *rst =
			&muxer->rsts.entries[(muxer->rsts.head + i) % muxer->rsts.capacity];
		if (rst->local_port == host_port && rst->peer_port == guest_port)
			return true;
	}
	return false;
}

/* Play the broker: read the ConnectRequest and answer with fd or error. */
static uint32_t broker_take_request(struct fixture *fixture, uint32_t expected_port)
{
	IpcEnvelope *envelope = NULL;
	int fd = -1;
	uint32_t request_id;
	assert_int_equal(ipc_receive(fixture->broker_fd, &envelope, &fd), 1);
	assert_int_equal(fd, -1);
	assert_int_equal(envelope->body_case, VSOCKMUX__IPC__ENVELOPE__BODY_CONNECT_REQUEST);
	assert_int_equal(envelope->connect_request->port, expected_port);
	request_id = envelope->connect_request->request_id;
	ipc_free(envelope);
	return request_id;
}

/* Guest connects to host_port; returns the host side of the stream. */
static int establish_guest_connection(struct fixture *fixture, uint32_t guest_port,
				      uint32_t host_port)
{
	int pair[2];
	uint32_t request_id;
	struct conn *conn;

	guest_send(fixture, VSOCK_OP_REQUEST, guest_port, host_port, 0);
	request_id = broker_take_request(fixture, host_port);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
				    0, pair), 0);
	conn_on_broker_connect(&fixture->muxer, request_id, 0, pair[0]);
	conn = conn_table_lookup(&fixture->muxer.table, host_port, guest_port);
	assert_non_null(conn);
	assert_int_equal(conn->state, CONN_ESTABLISHED);
	assert_true(conn->pending & CONN_PENDING_RESPONSE);
	return pair[1];
}

static void test_credit_arithmetic_wraps(void **state)
{
	struct conn conn = { 0 };
	(void)state;
	conn.guest_buf_alloc = 262144;
	conn.sent_to_guest = 100;
	conn.guest_fwd_cnt = 100;
	assert_int_equal(conn_guest_credit(&conn), 262144);
	/* tx_cnt wrapped past zero, fwd_cnt not yet */
	conn.sent_to_guest = 1000;
	conn.guest_fwd_cnt = UINT32_MAX - 999;   /* 2000 bytes in flight */
	assert_int_equal(conn_guest_credit(&conn), 262144 - 2000);
	/* a guest that shrinks buf_alloc below what is in flight: no credit */
	conn.guest_buf_alloc = 1000;
	assert_int_equal(conn_guest_credit(&conn), 0);

	conn.received_from_guest = 5;
	conn.to_host_reported = UINT32_MAX - 4;     /* 10 unacknowledged */
	assert_int_equal(conn_guest_view_of_free(&conn, 65536), 65526);
	conn.written_to_host = conn.to_host_reported + 16383;
	assert_false(conn_credit_update_due(&conn, 65536));
	conn.written_to_host = conn.to_host_reported + 16384;
	assert_true(conn_credit_update_due(&conn, 65536));
}

/* RW from guest port 5000 to host port 1234 arrives on host, exactly. */
static void guest_data_reaches_host(struct fixture *fixture, int host,
				    const char *data, size_t length)
{
	char buffer[64];
	assert_true(length <= sizeof(buffer));
	guest_send_data(fixture, 5000, 1234, data, length);
	assert_int_equal(read(host, buffer, sizeof(buffer)), (ssize_t)length);
	assert_memory_equal(buffer, data, length);
}

static void test_guest_connect_then_data_reaches_host(void **state)
{
	struct fixture *fixture = *state;
	struct conn *conn;
	int host = establish_guest_connection(fixture, 5000, 1234);

	guest_data_reaches_host(fixture, host, "hello", 5);
	conn = conn_table_lookup(&fixture->muxer.table, 1234, 5000);
	assert_int_equal(conn->received_from_guest, 5);
	assert_int_equal(conn->written_to_host, 5);
	close(host);
}

static void test_broker_refusal_sends_rst(void **state)
{
	struct fixture *fixture = *state;
	uint32_t request_id;
	guest_send(fixture, VSOCK_OP_REQUEST, 5000, 99, 0);
	request_id = broker_take_request(fixture, 99);
	conn_on_broker_connect(&fixture->muxer, request_id, ECONNREFUSED, -1);
	assert_null(conn_table_lookup(&fixture->muxer.table, 99, 5000));
	assert_true(rst_queued(&fixture->muxer, 99, 5000));
	assert_int_equal(fixture->muxer.stats.refused[REFUSED_NO_HOST_LISTENER], 1);
	assert_int_equal(fixture->muxer.table.in_use, 0);
}

/* Each broker error is counted under its own reason. */
static void test_broker_refusal_reasons(void **state)
{
	static const struct {
		int error;
		enum muxer_refusal_reason reason;
	} cases[] = {
		{ EACCES, REFUSED_PERMISSION_DENIED },
		{ EPERM, REFUSED_PERMISSION_DENIED },
		{ IPC_CONNECT_NOT_ALLOWED, REFUSED_POLICY_GUEST },
		{ EMFILE, REFUSED_LIMIT },
		{ ENOENT, REFUSED_NO_HOST_LISTENER },
	};
	struct fixture *fixture = *state;

	for (uint32_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t before = fixture->muxer.stats.refused[cases[i].reason];
		uint32_t request_id;
		guest_send(fixture, VSOCK_OP_REQUEST, 5000 + i, 99, 0);
		request_id = broker_take_request(fixture, 99);
		conn_on_broker_connect(&fixture->muxer, request_id, cases[i].error, -1);
		assert_true(rst_queued(&fixture->muxer, 99, 5000 + i));
		assert_int_equal(fixture->muxer.stats.refused[cases[i].reason], before + 1);
	}
	assert_int_equal(fixture->muxer.table.in_use, 0);
}

/* --allow-guest-ports: a port outside it gets an RST without asking the
 * broker; a port inside it goes to the broker as usual. */
static void test_guest_port_policy(void **state)
{
	struct fixture *fixture = *state;
	const char *why = NULL;
	char byte;

	assert_int_equal(port_list_parse("99,200-300", &fixture->options.allow_guest_ports,
					 &why), 0);
	guest_send(fixture, VSOCK_OP_REQUEST, 5000, 100, 0);
	assert_true(rst_queued(&fixture->muxer, 100, 5000));
	assert_int_equal(fixture->muxer.stats.refused[REFUSED_POLICY_GUEST], 1);
	assert_int_equal(fixture->muxer.table.in_use, 0);
	assert_int_equal(recv(fixture->broker_fd, &byte, 1, MSG_DONTWAIT), -1);
	assert_int_equal(errno, EAGAIN);
	guest_send(fixture, VSOCK_OP_REQUEST, 5001, 250, 0);
	(void)broker_take_request(fixture, 250);
	assert_int_equal(fixture->muxer.table.in_use, 1);
}

static void test_guest_rst_is_never_answered(void **state)
{
	struct fixture *fixture = *state;
	int host = establish_guest_connection(fixture, 5000, 1234);
	char byte;

	guest_send(fixture, VSOCK_OP_RST, 5000, 1234, 0);
	assert_null(conn_table_lookup(&fixture->muxer.table, 1234, 5000));
	assert_int_equal(fixture->muxer.rsts.count, 0);
	assert_int_equal(read(host, &byte, 1), 0); /* host socket closed */
	/* RST for a connection that does not exist: silence */
	guest_send(fixture, VSOCK_OP_RST, 7, 8, 0);
	assert_int_equal(fixture->muxer.rsts.count, 0);
	close(host);
}

static void test_credit_violation_resets(void **state)
{
	struct fixture *fixture = *state;
	static char big[65536 + 1];
	int host = establish_guest_connection(fixture, 5000, 1234);
	/* one byte more than buf_alloc (65536) in flight */
	guest_send_data(fixture, 5000, 1234, big, sizeof(big));
	assert_null(conn_table_lookup(&fixture->muxer.table, 1234, 5000));
	assert_true(rst_queued(&fixture->muxer, 1234, 5000));
	assert_int_equal(fixture->muxer.stats.dropped[DROP_CREDIT_VIOLATION], 1);
	close(host);
}

static void test_shutdown_send_half_closes_host(void **state)
{
	struct fixture *fixture = *state;
	char buffer[16];
	struct conn *conn;
	int host = establish_guest_connection(fixture, 5000, 1234);

	guest_data_reaches_host(fixture, host, "abc", 3);
	guest_send(fixture, VSOCK_OP_SHUTDOWN, 5000, 1234, VSOCK_SHUTDOWN_SEND);
	assert_int_equal(read(host, buffer, sizeof(buffer)), 0); /* EOF */
	conn = conn_table_lookup(&fixture->muxer.table, 1234, 5000);
	assert_non_null(conn); /* the other direction stays open */
	assert_true(conn->host_write_shut);
	assert_int_equal(write(host, "x", 1), 1);
	close(host);
}

static void test_full_shutdown_resets_after_flush(void **state)
{
	struct fixture *fixture = *state;
	int host = establish_guest_connection(fixture, 5000, 1234);
	char byte;
	guest_send(fixture, VSOCK_OP_SHUTDOWN, 5000, 1234, VSOCK_SHUTDOWN_BOTH);
	assert_null(conn_table_lookup(&fixture->muxer.table, 1234, 5000));
	assert_true(rst_queued(&fixture->muxer, 1234, 5000));
	assert_int_equal(read(host, &byte, 1), 0);
	close(host);
}

static void test_full_host_socket_buffers_then_flushes(void **state)
{
	struct fixture *fixture = *state;
	static uint8_t data[60000], received[60000];
	size_t total = 0;
	struct conn *conn;
	int host = establish_guest_connection(fixture, 5000, 1234);
	int small = 4096;

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7 + 3);
	conn = conn_table_lookup(&fixture->muxer.table, 1234, 5000);
	setsockopt(conn->host_fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	setsockopt(host, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	guest_send_data(fixture, 5000, 1234, data, sizeof(data));
	assert_true(tx_ring_used(&conn->to_host_ring) > 0);
	assert_true(conn->epollout_armed);
	assert_int_equal(conn->received_from_guest, sizeof(data));
	assert_true(conn->written_to_host < sizeof(data));
	while (total < sizeof(data)) {
		ssize_t got = read(host, received + total, sizeof(received) - total);
		if (got < 0) {
			assert_int_equal(errno, EAGAIN);
			conn_on_host_event(&fixture->muxer, conn, EPOLLOUT);
			continue;
		}
		assert_true(got > 0);
		total += (size_t)got;
		conn_on_host_event(&fixture->muxer, conn, EPOLLOUT);
	}
	assert_memory_equal(data, received, sizeof(data));
	assert_int_equal(conn->written_to_host, sizeof(data));
	assert_int_equal(tx_ring_used(&conn->to_host_ring), 0);
	assert_null(conn->to_host_ring.storage);
	assert_false(conn->epollout_armed);
	close(host);
}

static void test_host_connect_handshake(void **state)
{
	struct fixture *fixture = *state;
	int pair[2];
	char buffer[64];
	struct conn *conn;
	ssize_t got;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
				    0, pair), 0);
	conn_adopt_host_client(&fixture->muxer, pair[0]);
	conn = &fixture->muxer.table.slots[0];
	assert_int_equal(conn->state, CONN_HOST_HANDSHAKE);
	/* the line in two pieces, data right behind the newline */
	assert_int_equal(write(pair[1], "conn", 4), 4);
	conn_on_host_event(&fixture->muxer, conn, EPOLLIN);
	assert_int_equal(conn->state, CONN_HOST_HANDSHAKE);
	assert_int_equal(write(pair[1], "ect  52 \nearly", 14), 14);
	conn_on_host_event(&fixture->muxer, conn, EPOLLIN);
	assert_int_equal(conn->state, CONN_HOST_REQUESTED);
	assert_int_equal(conn->peer_port, 52);
	assert_true(conn->local_port >= (1u << 30) && conn->local_port < (1u << 31));
	assert_true(conn->pending & CONN_PENDING_REQUEST);

	/* the REQUEST reaches the guest (the RX path is not driven here) */
	conn->pending &= ~(uint32_t)CONN_PENDING_REQUEST;
	guest_send(fixture, VSOCK_OP_RESPONSE, 52, conn->local_port, 0);
	assert_int_equal(conn->state, CONN_ESTABLISHED);
	snprintf(buffer, sizeof(buffer), "OK %u\n", conn->local_port);
	got = read(pair[1], buffer + 32, 32);
	assert_int_equal(got, (ssize_t)strlen(buffer));
	assert_memory_equal(buffer + 32, buffer, strlen(buffer));
	/* "early" is still in the socket, and the muxer knows to read it */
	assert_true(conn->host_readable);
	got = recv(conn->host_fd, buffer, sizeof(buffer), MSG_PEEK);
	assert_int_equal(got, 5);
	assert_memory_equal(buffer, "early", 5);
	close(pair[1]);
}

/* A host client adopted from the broker that sends line; returns its
 * slot's connection (the client's end in *client). */
static struct conn *host_client_sends(struct fixture *fixture, const char *line,
				      int *client)
{
	int pair[2];
	struct conn *conn;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
				    0, pair), 0);
	conn_adopt_host_client(&fixture->muxer, pair[0]);
	conn = &fixture->muxer.table.slots[0];
	assert_int_equal(write(pair[1], line, strlen(line)), (ssize_t)strlen(line));
	conn_on_host_event(&fixture->muxer, conn, EPOLLIN);
	*client = pair[1];
	return conn;
}

/* A RESPONSE that arrives before our REQUEST went out is a guess of the
 * host port: the connection is reset, the client never sees OK. */
static void test_response_before_request_resets(void **state)
{
	struct fixture *fixture = *state;
	int pair[2];
	struct conn *conn;
	uint32_t local_port;
	char byte;

	conn = host_client_sends(fixture, "CONNECT 52\n", &pair[1]);
	assert_int_equal(conn->state, CONN_HOST_REQUESTED);
	local_port = conn->local_port;
	guest_send(fixture, VSOCK_OP_RESPONSE, 52, local_port, 0);
	assert_null(conn_table_lookup(&fixture->muxer.table, local_port, 52));
	assert_int_equal(read(pair[1], &byte, 1), 0); /* closed, no OK */
	close(pair[1]);
}

/* A host client sends line; it is closed unanswered, counted as reason. */
static void assert_host_line_refused(struct fixture *fixture, const char *line,
				     enum muxer_refusal_reason reason)
{
	int pair[2];
	char byte;
	(void)host_client_sends(fixture, line, &pair[1]);
	assert_int_equal(fixture->muxer.table.in_use, 0);
	assert_int_equal(fixture->muxer.stats.refused[reason], 1);
	assert_int_equal(fixture->muxer.rsts.count, 0);
	/* closed with nothing written: the client sees EOF or a reset */
	errno = 0;
	assert_true(read(pair[1], &byte, 1) <= 0);
	assert_true(errno == 0 || errno == ECONNRESET);
	close(pair[1]);
}

static void test_bad_connect_line_closes_client(void **state)
{
	assert_host_line_refused(*state, "HELLO 52\n", REFUSED_BAD_CONNECT_LINE);
}

/* --allow-host-ports: a CONNECT to another guest port never reaches the
 * guest (no REQUEST is queued). */
static void test_host_port_policy(void **state)
{
	struct fixture *fixture = *state;
	const char *why = NULL;

	assert_int_equal(port_list_parse("52", &fixture->options.allow_host_ports, &why), 0);
	assert_host_line_refused(fixture, "CONNECT 53\n", REFUSED_POLICY_HOST);
	assert_true(rx_queue_empty(&fixture->muxer.rx_work));
}

static void test_guest_refuses_host_connect(void **state)
{
	struct fixture *fixture = *state;
	int pair[2];
	char byte;
	struct conn *conn;
	conn = host_client_sends(fixture, "CONNECT 9\n", &pair[1]);
	guest_send(fixture, VSOCK_OP_RST, 9, conn->local_port, 0);
	assert_int_equal(fixture->muxer.table.in_use, 0);
	assert_int_equal(fixture->muxer.rsts.count, 0);
	assert_int_equal(read(pair[1], &byte, 1), 0); /* closed, no "OK" */
	close(pair[1]);
}

static void test_unknown_op_and_type_get_rst(void **state)
{
	struct fixture *fixture = *state;
	struct vsock_header header = guest_header(VSOCK_OP_REQUEST, 10, 20);
	header.type = VSOCK_TYPE_SEQPACKET;
	conn_handle_guest_packet(&fixture->muxer, &header, NULL, 0);
	assert_true(rst_queued(&fixture->muxer, 20, 10));
	guest_send(fixture, 99, 11, 21, 0);
	assert_true(rst_queued(&fixture->muxer, 21, 11));
	assert_int_equal(fixture->muxer.table.in_use, 0);
}

static void test_connection_limit(void **state)
{
	struct fixture *fixture = *state;
	for (uint32_t i = 0; i < fixture->options.max_connections; i++) {
		guest_send(fixture, VSOCK_OP_REQUEST, 100 + i, 7, 0);
		(void)broker_take_request(fixture, 7);
	}
	guest_send(fixture, VSOCK_OP_REQUEST, 999, 7, 0);
	assert_true(rst_queued(&fixture->muxer, 7, 999));
	assert_int_equal(fixture->muxer.stats.refused[REFUSED_LIMIT], 1);
	assert_int_equal(fixture->muxer.table.in_use, fixture->options.max_connections);
}

static void test_guest_rst_while_broker_works_keeps_slot(void **state)
{
	struct fixture *fixture = *state;
	int pair[2];
	uint32_t request_id;
	char byte;
	guest_send(fixture, VSOCK_OP_REQUEST, 5000, 1234, 0);
	request_id = broker_take_request(fixture, 1234);
	guest_send(fixture, VSOCK_OP_RST, 5000, 1234, 0);
	assert_int_equal(fixture->muxer.table.in_use, 1);  /* waits for the broker */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
	conn_on_broker_connect(&fixture->muxer, request_id, 0, pair[0]);
	assert_int_equal(fixture->muxer.table.in_use, 0);
	assert_int_equal(read(pair[1], &byte, 1), 0);      /* fd was closed */
	close(pair[1]);
}

/* The broker must hear "frontend left" and "pause/resume accepting" even
 * when the channel is full when they are due: they wait for EPOLLOUT and
 * go out in order once it drains (a lost "resume" left every new host
 * client in the listen backlog for good). */
static void test_broker_owed_survives_full_channel(void **state)
{
	struct fixture *fixture = *state;
	struct muxer *muxer = &fixture->muxer;
	IpcEnvelope *envelope = NULL;
	unsigned filler = 0;
	int fd = -1;

	assert_int_equal(fcntl(muxer->channel_fd, F_SETFL, O_NONBLOCK), 0);
	assert_int_equal(fcntl(fixture->broker_fd, F_SETFL, O_NONBLOCK), 0);
	while (broker_send_connect_request(muxer->channel_fd, 1, 1) == 0)
		filler++;
	assert_true(filler > 0);
	muxer->owe_vmm_detached = true;
	muxer->host_accept_paused = true;     /* as the handshake cap does */
	broker_send_owed(muxer);
	assert_true(muxer->running);
	assert_true(muxer->owe_vmm_detached);
	assert_false(muxer->host_accept_told);
	assert_true(muxer->channel_out_armed);

	for (unsigned i = 0; i < filler; i++) {
		assert_int_equal(ipc_receive(fixture->broker_fd, &envelope, &fd), 1);
		ipc_free(envelope);
		envelope = NULL;
	}
	broker_send_owed(muxer);
	assert_false(muxer->owe_vmm_detached);
	assert_true(muxer->host_accept_told);
	assert_false(muxer->channel_out_armed);
	assert_int_equal(ipc_receive(fixture->broker_fd, &envelope, &fd), 1);
	assert_int_equal(envelope->body_case, VSOCKMUX__IPC__ENVELOPE__BODY_VMM_DETACHED);
	ipc_free(envelope);
	envelope = NULL;
	assert_int_equal(ipc_receive(fixture->broker_fd, &envelope, &fd), 1);
	assert_int_equal(envelope->body_case,
			 VSOCKMUX__IPC__ENVELOPE__BODY_HOST_ACCEPT_CONTROL);
	assert_true(envelope->host_accept_control->paused);
	ipc_free(envelope);
}

/* Every case below runs between setup and teardown. */
#define WITH_FIXTURE(test) cmocka_unit_test_setup_teardown(test, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_credit_arithmetic_wraps),
		WITH_FIXTURE(test_guest_connect_then_data_reaches_host),
		WITH_FIXTURE(test_broker_refusal_sends_rst),
		WITH_FIXTURE(test_broker_refusal_reasons),
		WITH_FIXTURE(test_guest_port_policy),
		WITH_FIXTURE(test_guest_rst_is_never_answered),
		WITH_FIXTURE(test_credit_violation_resets),
		WITH_FIXTURE(test_shutdown_send_half_closes_host),
		WITH_FIXTURE(test_full_shutdown_resets_after_flush),
		WITH_FIXTURE(test_full_host_socket_buffers_then_flushes),
		WITH_FIXTURE(test_host_connect_handshake),
		WITH_FIXTURE(test_response_before_request_resets),
		WITH_FIXTURE(test_bad_connect_line_closes_client),
		WITH_FIXTURE(test_host_port_policy),
		WITH_FIXTURE(test_guest_refuses_host_connect),
		WITH_FIXTURE(test_unknown_op_and_type_get_rst),
		WITH_FIXTURE(test_connection_limit),
		WITH_FIXTURE(test_guest_rst_while_broker_works_keeps_slot),
		WITH_FIXTURE(test_broker_owed_survives_full_channel),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
