/*
 * test_ipc.c - the broker<->muxer channel framing (proto/ipc_channel.c),
 * over a real socketpair(AF_UNIX, SOCK_SEQPACKET).
 *
 * Covers: round trips of every body with and without an fd; every reason
 * ipc_receive rejects a datagram (and that every fd that came with it is
 * closed); EOF; empty channel; ipc_send's size cap and non-blocking send.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cmocka.h>

#include "vsockmux/ipc.h"
#include "vsockmux/fd_passing.h"
#include "vsockmux/log.h"

struct channel {
	int sender;
	int receiver;
};

static int setup_channel(void **state)
{
	struct channel *channel = calloc(1, sizeof(*channel));
	int pair[2];

	assert_non_null(channel);
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0,
				    pair), 0);
	channel->sender = pair[0];
	channel->receiver = pair[1];
	*state = channel;
	return 0;
}

static int teardown_channel(void **state)
{
	struct channel *channel = *state;

	if (channel->sender >= 0)
		close(channel->sender);
	if (channel->receiver >= 0)
		close(channel->receiver);
	free(channel);
	return 0;
}

/* Number of open fds in this process. */
static int count_open_fds(void)
{
	DIR *directory = opendir("/proc/self/fd");
	int count = 0;

	assert_non_null(directory);
	while (readdir(directory) != NULL)
		count++;
	closedir(directory);
	return count;
}

static ino_t inode_of(int fd)
{
	struct stat status;

	assert_int_equal(fstat(fd, &status), 0);
	return status.st_ino;
}

/* Send raw bytes with fds_count fds (SCM_RIGHTS), bypassing ipc_send. */
static void send_raw(int socket_fd, const void *data, size_t length,
		     const int *fds, size_t fds_count)
{
	union {
		char buffer[CMSG_SPACE(sizeof(int) * 16)];
		struct cmsghdr align;
	} control;
	struct iovec iov = { .iov_base = (void *)data, .iov_len = length };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };

	assert_true(fds_count <= 16);
	assert_int_equal(fd_passing_attach(&msg, control.buffer, sizeof(control.buffer),
					   fds, fds_count), 0);
	assert_int_equal(sendmsg(socket_fd, &msg, MSG_NOSIGNAL), (ssize_t)length);
}

/* Pack an envelope as-is (no version fixing) into buffer. */
static size_t pack_envelope(const IpcEnvelope *envelope, uint8_t *buffer,
			    size_t capacity)
{
	size_t size = vsockmux__ipc__envelope__get_packed_size(envelope);

	assert_true(size <= capacity);
	assert_int_equal(vsockmux__ipc__envelope__pack(envelope, buffer), size);
	return size;
}

/* A valid envelope, packed by hand: version 1, ConnectRequest{7, 52}. */
static size_t pack_valid_request(uint8_t *buffer, size_t capacity)
{
	Vsockmux__Ipc__ConnectRequest request =
		VSOCKMUX__IPC__CONNECT_REQUEST__INIT;
	IpcEnvelope envelope = VSOCKMUX__IPC__ENVELOPE__INIT;

	request.request_id = 7;
	request.port = 52;
	envelope.version = IPC_PROTOCOL_VERSION;
	envelope.body_case = VSOCKMUX__IPC__ENVELOPE__BODY_CONNECT_REQUEST;
	envelope.connect_request = &request;
	return pack_envelope(&envelope, buffer, capacity);
}

static void expect_rejected(int receiver)
{
	IpcEnvelope *envelope = (IpcEnvelope *)0x1;
	int fd = 1234;

	assert_int_equal(ipc_receive(receiver, &envelope, &fd), -EPROTO);
	assert_null(envelope);
	assert_int_equal(fd, -1);
	/* The bad datagram is consumed; nothing else is waiting. */
	assert_int_equal(ipc_receive(receiver, &envelope, &fd), -EAGAIN);
}

/* ---- round trips ------------------------------------------------------ */

/* Send envelope (with fd_to_send if >= 0), receive it, return it. */
static IpcEnvelope *round_trip(const struct channel *channel,
			       IpcEnvelope *envelope, int fd_to_send,
			       int *received_fd)
{
	IpcEnvelope *received = NULL;

	assert_int_equal(ipc_send(channel->sender, envelope, fd_to_send), 0);
	assert_int_equal(envelope->version, IPC_PROTOCOL_VERSION);
	assert_int_equal(ipc_receive(channel->receiver, &received, received_fd), 1);
	assert_non_null(received);
	assert_int_equal(received->version, IPC_PROTOCOL_VERSION);
	assert_int_equal(received->body_case, envelope->body_case);
	return received;
}

/* Each body, once without and once with an fd (a pipe's read end). */
static void check_body_round_trip(const struct channel *channel,
				  IpcEnvelope *envelope)
{
	IpcEnvelope *received;
	int pipe_fds[2];
	int fd;

	received = round_trip(channel, envelope, -1, &fd);
	assert_int_equal(fd, -1);
	if (envelope->body_case == VSOCKMUX__IPC__ENVELOPE__BODY_CONNECT_REQUEST) {
		assert_int_equal(received->connect_request->request_id,
				 envelope->connect_request->request_id);
		assert_int_equal(received->connect_request->port,
				 envelope->connect_request->port);
	}
	if (envelope->body_case == VSOCKMUX__IPC__ENVELOPE__BODY_CONNECT_REPLY) {
		assert_int_equal(received->connect_reply->request_id,
				 envelope->connect_reply->request_id);
		assert_int_equal(received->connect_reply->error,
				 envelope->connect_reply->error);
	}
	ipc_free(received);

	assert_int_equal(pipe(pipe_fds), 0);
	received = round_trip(channel, envelope, pipe_fds[0], &fd);
	assert_true(fd >= 0);
	assert_true(fd != pipe_fds[0]);
	assert_int_equal(inode_of(fd), inode_of(pipe_fds[0]));
	/* Received with MSG_CMSG_CLOEXEC. */
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	/* The sender keeps its own copy. */
	assert_true(fcntl(pipe_fds[0], F_GETFD) >= 0);
	/* And it really is the same pipe. */
	assert_int_equal(write(pipe_fds[1], "x", 1), 1);
	{
		char byte = 0;

		assert_int_equal(read(fd, &byte, 1), 1);
		assert_int_equal(byte, 'x');
	}
	ipc_free(received);
	close(fd);
	close(pipe_fds[0]);
	close(pipe_fds[1]);
}

static void test_round_trip_all_bodies(void **state)
{
	const struct channel *channel = *state;
	Vsockmux__Ipc__VmmAttach attach = VSOCKMUX__IPC__VMM_ATTACH__INIT;
	Vsockmux__Ipc__VmmDetached detached = VSOCKMUX__IPC__VMM_DETACHED__INIT;
	Vsockmux__Ipc__HostStream stream = VSOCKMUX__IPC__HOST_STREAM__INIT;
	Vsockmux__Ipc__ConnectRequest request = VSOCKMUX__IPC__CONNECT_REQUEST__INIT;
	Vsockmux__Ipc__ConnectReply reply = VSOCKMUX__IPC__CONNECT_REPLY__INIT;
	IpcEnvelope envelope = VSOCKMUX__IPC__ENVELOPE__INIT;
	int fds_before = count_open_fds();

	envelope.body_case = VSOCKMUX__IPC__ENVELOPE__BODY_VMM_ATTACH;
	envelope.vmm_attach = &attach;
	check_body_round_trip(channel, &envelope);

	envelope.body_case = VSOCKMUX__IPC__ENVELOPE__BODY_VMM_DETACHED;
	envelope.vmm_detached = &detached;
	check_body_round_trip(channel, &envelope);

	envelope.body_case = VSOCKMUX__IPC__ENVELOPE__BODY_HOST_STREAM;
	envelope.host_stream = &stream;
	check_body_round_trip(channel, &envelope);

	request.request_id = UINT32_MAX;
	request.port = 0xfffffffeu;
	envelope.body_case = VSOCKMUX__IPC__ENVELOPE__BODY_CONNECT_REQUEST;
	envelope.connect_request = &request;
	check_body_round_trip(channel, &envelope);

	reply.request_id = 42;
	reply.error = ECONNREFUSED;
	envelope.body_case = VSOCKMUX__IPC__ENVELOPE__BODY_CONNECT_REPLY;
	envelope.connect_reply = &reply;
	check_body_round_trip(channel, &envelope);
	/* A negative int32 packs to a 10-byte varint: still fits. */
	reply.error = INT32_MIN;
	check_body_round_trip(channel, &envelope);

	assert_int_equal(count_open_fds(), fds_before);
}

/* Datagrams are kept apart: two sends, two receives, in order. */
static void test_messages_stay_separate(void **state)
{
	const struct channel *channel = *state;
	Vsockmux__Ipc__ConnectRequest request = VSOCKMUX__IPC__CONNECT_REQUEST__INIT;
	IpcEnvelope envelope = VSOCKMUX__IPC__ENVELOPE__INIT;
	IpcEnvelope *received;
	int fd;

	envelope.body_case = VSOCKMUX__IPC__ENVELOPE__BODY_CONNECT_REQUEST;
	envelope.connect_request = &request;
	for (uint32_t id = 1; id <= 2; id++) {
		request.request_id = id;
		assert_int_equal(ipc_send(channel->sender, &envelope, -1), 0);
	}
	for (uint32_t id = 1; id <= 2; id++) {
		assert_int_equal(ipc_receive(channel->receiver, &received, &fd), 1);
		assert_int_equal(received->connect_request->request_id, id);
		ipc_free(received);
	}
	assert_int_equal(ipc_receive(channel->receiver, &received, &fd), -EAGAIN);
}

/* ---- rejected datagrams ----------------------------------------------- */

static void test_oversized_datagram_rejected(void **state)
{
	const struct channel *channel = *state;
	uint8_t big[IPC_MAX_MESSAGE_SIZE * 4];
	int pipe_fds[2];
	int fds_before;

	memset(big, 0, sizeof(big));
	/* Starts like a valid message; the size alone is the problem. */
	pack_valid_request(big, sizeof(big));
	assert_int_equal(pipe(pipe_fds), 0);
	fds_before = count_open_fds();

	/* One byte over the cap (fits the receive buffer, fails the check). */
	send_raw(channel->sender, big, IPC_MAX_MESSAGE_SIZE + 1, &pipe_fds[0], 1);
	expect_rejected(channel->receiver);
	assert_int_equal(count_open_fds(), fds_before);

	/* Far over the cap: MSG_TRUNC. */
	send_raw(channel->sender, big, sizeof(big), &pipe_fds[0], 1);
	expect_rejected(channel->receiver);
	assert_int_equal(count_open_fds(), fds_before);

	close(pipe_fds[0]);
	close(pipe_fds[1]);
}

/* Exactly IPC_MAX_MESSAGE_SIZE bytes passes the size check (then decodes). */
static void test_datagram_at_size_cap_accepted(void **state)
{
	const struct channel *channel = *state;
	uint8_t payload[IPC_MAX_MESSAGE_SIZE];
	size_t used = pack_valid_request(payload, sizeof(payload));
	IpcEnvelope *received;
	int fd;

	/*
	 * Pad the Envelope with a repeated version field (field 1, varint),
	 * which proto3 decoders accept (last one wins) and which keeps the
	 * message free of unknown fields.
	 */
	while (used + 2 <= sizeof(payload)) {
		payload[used++] = 0x08;
		payload[used++] = IPC_PROTOCOL_VERSION;
	}
	if (used < sizeof(payload)) {
		/* One byte left: use a 3-byte version instead of the last pair. */
		used -= 2;
		payload[used++] = 0x08;
		payload[used++] = 0x80 | IPC_PROTOCOL_VERSION;
		payload[used++] = 0x00;
	}
	assert_int_equal(used, IPC_MAX_MESSAGE_SIZE);
	send_raw(channel->sender, payload, used, NULL, 0);
	assert_int_equal(ipc_receive(channel->receiver, &received, &fd), 1);
	assert_int_equal(received->body_case,
			 VSOCKMUX__IPC__ENVELOPE__BODY_CONNECT_REQUEST);
	assert_int_equal(received->connect_request->port, 52);
	ipc_free(received);
}

static void test_garbage_rejected(void **state)
{
	const struct channel *channel = *state;
	static const uint8_t garbage[] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
					   0xff, 0xff, 0xff, 0xff, 0xff, 0x01 };
	/* Field 2 (VmmAttach), length-delimited, claims 100 bytes, has 1. */
	static const uint8_t short_submessage[] = { 0x08, 0x01, 0x12, 0x64, 0x00 };
	/* Wire type 7 does not exist. */
	static const uint8_t bad_wire_type[] = { 0x08, 0x01, 0x0f };
	int pipe_fds[2];
	int fds_before;

	assert_int_equal(pipe(pipe_fds), 0);
	fds_before = count_open_fds();

	send_raw(channel->sender, garbage, sizeof(garbage), NULL, 0);
	expect_rejected(channel->receiver);
	send_raw(channel->sender, short_submessage, sizeof(short_submessage),
		 NULL, 0);
	expect_rejected(channel->receiver);
	send_raw(channel->sender, bad_wire_type, sizeof(bad_wire_type),
		 &pipe_fds[0], 1);
	expect_rejected(channel->receiver);

	assert_int_equal(count_open_fds(), fds_before);
	close(pipe_fds[0]);
	close(pipe_fds[1]);
}

/* Every strict prefix of a valid message with a non-empty body fails. */
static void test_truncated_rejected(void **state)
{
	const struct channel *channel = *state;
	uint8_t packed[IPC_MAX_MESSAGE_SIZE];
	size_t size = pack_valid_request(packed, sizeof(packed));

	/* Length 0 is EOF on SEQPACKET, tested separately. Cutting inside the
	 * body always leaves its length prefix pointing past the end; cutting
	 * before the body leaves no body. */
	for (size_t length = 1; length < size; length++) {
		send_raw(channel->sender, packed, length, NULL, 0);
		expect_rejected(channel->receiver);
	}
}

static void test_wrong_version_rejected(void **state)
{
	const struct channel *channel = *state;
	Vsockmux__Ipc__VmmDetached detached = VSOCKMUX__IPC__VMM_DETACHED__INIT;
	IpcEnvelope envelope = VSOCKMUX__IPC__ENVELOPE__INIT;
	static const uint32_t bad_versions[] = { 0, IPC_PROTOCOL_VERSION + 1,
						 UINT32_MAX };
	uint8_t packed[IPC_MAX_MESSAGE_SIZE];

	envelope.body_case = VSOCKMUX__IPC__ENVELOPE__BODY_VMM_DETACHED;
	envelope.vmm_detached = &detached;
	for (size_t i = 0; i < sizeof(bad_versions) / sizeof(bad_versions[0]); i++) {
		size_t size;

		envelope.version = bad_versions[i];
		size = pack_envelope(&envelope, packed, sizeof(packed));
		send_raw(channel->sender, packed, size, NULL, 0);
		expect_rejected(channel->receiver);
	}
}

static void test_no_body_rejected(void **state)
{
	const struct channel *channel = *state;
	IpcEnvelope envelope = VSOCKMUX__IPC__ENVELOPE__INIT;
	uint8_t packed[IPC_MAX_MESSAGE_SIZE];
	size_t size;

	envelope.version = IPC_PROTOCOL_VERSION;
	size = pack_envelope(&envelope, packed, sizeof(packed));
	send_raw(channel->sender, packed, size, NULL, 0);
	expect_rejected(channel->receiver);

	/* Also through ipc_send: the framing layer does not send-check bodies. */
	assert_int_equal(ipc_send(channel->sender, &envelope, -1), 0);
	expect_rejected(channel->receiver);
}

/* Fields this binary does not know, in the envelope or in a body. */
static void test_unknown_fields_rejected(void **state)
{
	const struct channel *channel = *state;
	/* version 1, then field 15 varint 5. */
	static const uint8_t unknown_in_envelope[] = { 0x08, 0x01, 0x12, 0x00,
						       0x78, 0x05 };
	/* version 1, VmmDetached { field 9 varint 1 }. */
	static const uint8_t unknown_in_body[] = { 0x08, 0x01, 0x1a, 0x02,
						   0x48, 0x01 };

	send_raw(channel->sender, unknown_in_envelope,
		 sizeof(unknown_in_envelope), NULL, 0);
	expect_rejected(channel->receiver);
	send_raw(channel->sender, unknown_in_body, sizeof(unknown_in_body),
		 NULL, 0);
	expect_rejected(channel->receiver);
}

static void test_two_fds_rejected_and_closed(void **state)
{
	const struct channel *channel = *state;
	uint8_t packed[IPC_MAX_MESSAGE_SIZE];
	size_t size = pack_valid_request(packed, sizeof(packed));
	int pipe_fds[2];
	int fds_before;

	assert_int_equal(pipe(pipe_fds), 0);
	fds_before = count_open_fds();
	send_raw(channel->sender, packed, size, pipe_fds, 2);
	expect_rejected(channel->receiver);
	assert_int_equal(count_open_fds(), fds_before);

	/* The receiver's copies are gone: closing ours leaves the pipe with
	 * no writer, so the read end sees EOF (no copy of it lingers either). */
	close(pipe_fds[1]);
	{
		char byte;

		assert_int_equal(read(pipe_fds[0], &byte, 1), 0);
	}
	close(pipe_fds[0]);
}

/* More fds than the receive buffer has room for: MSG_CTRUNC, all closed. */
static void test_many_fds_rejected_and_closed(void **state)
{
	const struct channel *channel = *state;
	uint8_t packed[IPC_MAX_MESSAGE_SIZE];
	size_t size = pack_valid_request(packed, sizeof(packed));
	int fds[16];
	int fds_before;

	for (size_t i = 0; i < 16; i += 2)
		assert_int_equal(pipe(&fds[i]), 0);
	fds_before = count_open_fds();
	send_raw(channel->sender, packed, size, fds, 16);
	expect_rejected(channel->receiver);
	assert_int_equal(count_open_fds(), fds_before);
	for (size_t i = 0; i < 16; i++)
		close(fds[i]);
}

/* With SO_PASSCRED every datagram carries SCM_CREDENTIALS: rejected. */
static void test_credentials_rejected(void **state)
{
	const struct channel *channel = *state;
	Vsockmux__Ipc__HostStream stream = VSOCKMUX__IPC__HOST_STREAM__INIT;
	IpcEnvelope envelope = VSOCKMUX__IPC__ENVELOPE__INIT;
	int on = 1;
	int pipe_fds[2];
	int fds_before;

	assert_int_equal(setsockopt(channel->receiver, SOL_SOCKET, SO_PASSCRED,
				    &on, sizeof(on)), 0);
	envelope.body_case = VSOCKMUX__IPC__ENVELOPE__BODY_HOST_STREAM;
	envelope.host_stream = &stream;

	assert_int_equal(ipc_send(channel->sender, &envelope, -1), 0);
	expect_rejected(channel->receiver);

	/* With an fd as well: the fd is closed. */
	assert_int_equal(pipe(pipe_fds), 0);
	fds_before = count_open_fds();
	assert_int_equal(ipc_send(channel->sender, &envelope, pipe_fds[0]), 0);
	expect_rejected(channel->receiver);
	assert_int_equal(count_open_fds(), fds_before);
	close(pipe_fds[0]);
	close(pipe_fds[1]);
}

/*
 * Deterministic pseudo-random datagrams (mutations of a valid one): every
 * one is either accepted with a body or rejected, never crashes (ASan) and
 * never leaks an fd.
 */
static void test_mutated_datagrams(void **state)
{
	const struct channel *channel = *state;
	uint8_t valid[IPC_MAX_MESSAGE_SIZE];
	size_t valid_size = pack_valid_request(valid, sizeof(valid));
	uint32_t seed = 12345;
	int bad_round = -1;
	int accepted = 0;
	int pipe_fds[2];
	int saved_stderr;
	int null_fd;
	int fds_before;

	assert_int_equal(pipe(pipe_fds), 0);
	fds_before = count_open_fds();
	/* Thousands of rejections: keep their log lines out of the output
	 * (and check nothing with cmocka until stderr is back). */
	fflush(stderr);
	saved_stderr = dup(STDERR_FILENO);
	null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	assert_true(saved_stderr >= 0 && null_fd >= 0);
	assert_int_equal(dup2(null_fd, STDERR_FILENO), STDERR_FILENO);

	for (int round = 0; round < 5000 && bad_round < 0; round++) {
		uint8_t mutated[IPC_MAX_MESSAGE_SIZE];
		size_t size = valid_size;
		IpcEnvelope *received;
		int fd;
		int result;

		memcpy(mutated, valid, valid_size);
		for (int flips = 0; flips < 1 + round % 3; flips++) {
			seed = seed * 1103515245u + 12345u;
			mutated[(seed >> 8) % size] = (uint8_t)(seed >> 16);
		}
		seed = seed * 1103515245u + 12345u;
		if ((seed >> 20) % 4 == 0)
			size = 1 + (seed >> 8) % valid_size;
		send_raw(channel->sender, mutated, size, &pipe_fds[0],
			 (size_t)(round % 2));
		result = ipc_receive(channel->receiver, &received, &fd);
		if (result == 1) {
			accepted++;
			if (received->body_case == VSOCKMUX__IPC__ENVELOPE__BODY__NOT_SET)
				bad_round = round;
			ipc_free(received);
			if (fd >= 0)
				close(fd);
		} else if (result != -EPROTO || received != NULL || fd != -1) {
			bad_round = round;
		}
	}

	fflush(stderr);
	assert_int_equal(dup2(saved_stderr, STDERR_FILENO), STDERR_FILENO);
	close(saved_stderr);
	close(null_fd);
	assert_int_equal(bad_round, -1);
	assert_true(accepted > 0);
	assert_int_equal(count_open_fds(), fds_before);
	close(pipe_fds[0]);
	close(pipe_fds[1]);
}

/* ---- EOF, empty channel, send side ------------------------------------ */

static void test_eof_returns_zero(void **state)
{
	struct channel *channel = *state;
	Vsockmux__Ipc__VmmDetached detached = VSOCKMUX__IPC__VMM_DETACHED__INIT;
	IpcEnvelope envelope = VSOCKMUX__IPC__ENVELOPE__INIT;
	IpcEnvelope *received;
	int fd;

	/* A message queued before the close is still delivered, then EOF. */
	envelope.body_case = VSOCKMUX__IPC__ENVELOPE__BODY_VMM_DETACHED;
	envelope.vmm_detached = &detached;
	assert_int_equal(ipc_send(channel->sender, &envelope, -1), 0);
	close(channel->sender);
	channel->sender = -1;

	assert_int_equal(ipc_receive(channel->receiver, &received, &fd), 1);
	ipc_free(received);
	assert_int_equal(ipc_receive(channel->receiver, &received, &fd), 0);
	assert_null(received);
	assert_int_equal(fd, -1);
	assert_int_equal(ipc_receive(channel->receiver, &received, &fd), 0);
}

/* A zero-length datagram cannot be told from EOF and is treated as EOF. */
static void test_zero_length_datagram_is_eof(void **state)
{
	const struct channel *channel = *state;
	IpcEnvelope *received;
	int pipe_fds[2];
	int fds_before;
	int fd;

	assert_int_equal(pipe(pipe_fds), 0);
	fds_before = count_open_fds();
	send_raw(channel->sender, "", 0, &pipe_fds[0], 1);
	assert_int_equal(ipc_receive(channel->receiver, &received, &fd), 0);
	assert_null(received);
	assert_int_equal(fd, -1);
	assert_int_equal(count_open_fds(), fds_before);
	close(pipe_fds[0]);
	close(pipe_fds[1]);
}

static void test_empty_channel_eagain(void **state)
{
	const struct channel *channel = *state;
	IpcEnvelope *received;
	int fd;

	assert_int_equal(ipc_receive(channel->receiver, &received, &fd), -EAGAIN);
	assert_null(received);
	assert_int_equal(fd, -1);
}

/*
 * No real message can exceed IPC_MAX_MESSAGE_SIZE (the largest, a
 * ConnectReply with a negative error, packs to about 20 bytes), so make
 * one too big with an unknown field, which protobuf-c packs verbatim.
 */
static void test_send_too_big(void **state)
{
	const struct channel *channel = *state;
	Vsockmux__Ipc__VmmDetached detached = VSOCKMUX__IPC__VMM_DETACHED__INIT;
	IpcEnvelope envelope = VSOCKMUX__IPC__ENVELOPE__INIT;
	static uint8_t padding[IPC_MAX_MESSAGE_SIZE];
	ProtobufCMessageUnknownField unknown = {
		.tag = 100,
		.wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED,
		.len = sizeof(padding),
		.data = padding,
	};
	IpcEnvelope *received;
	int fd;

	envelope.body_case = VSOCKMUX__IPC__ENVELOPE__BODY_VMM_DETACHED;
	envelope.vmm_detached = &detached;
	envelope.base.n_unknown_fields = 1;
	envelope.base.unknown_fields = &unknown;
	assert_int_equal(ipc_send(channel->sender, &envelope, -1), -EMSGSIZE);
	assert_int_equal(ipc_receive(channel->receiver, &received, &fd), -EAGAIN);
}

/* A full channel: ipc_send returns -EAGAIN instead of blocking. */
static void test_send_never_blocks(void **state)
{
	const struct channel *channel = *state;
	Vsockmux__Ipc__HostStream stream = VSOCKMUX__IPC__HOST_STREAM__INIT;
	IpcEnvelope envelope = VSOCKMUX__IPC__ENVELOPE__INIT;
	IpcEnvelope *received;
	int sent = 0;
	int result;
	int fd;

	envelope.body_case = VSOCKMUX__IPC__ENVELOPE__BODY_HOST_STREAM;
	envelope.host_stream = &stream;
	while ((result = ipc_send(channel->sender, &envelope, -1)) == 0)
		sent++;
	assert_int_equal(result, -EAGAIN);
	assert_true(sent > 0);
	/* Everything that was accepted arrives intact. */
	for (int i = 0; i < sent; i++) {
		assert_int_equal(ipc_receive(channel->receiver, &received, &fd), 1);
		ipc_free(received);
	}
	assert_int_equal(ipc_receive(channel->receiver, &received, &fd), -EAGAIN);
}

static void test_send_to_closed_peer(void **state)
{
	struct channel *channel = *state;
	Vsockmux__Ipc__HostStream stream = VSOCKMUX__IPC__HOST_STREAM__INIT;
	IpcEnvelope envelope = VSOCKMUX__IPC__ENVELOPE__INIT;

	envelope.body_case = VSOCKMUX__IPC__ENVELOPE__BODY_HOST_STREAM;
	envelope.host_stream = &stream;
	close(channel->receiver);
	channel->receiver = -1;
	/* MSG_NOSIGNAL: an error, not SIGPIPE. */
	assert_int_equal(ipc_send(channel->sender, &envelope, -1), -EPIPE);
	assert_int_equal(ipc_send(channel->sender, NULL, -1), -EINVAL);
}

static void test_body_names(void **state)
{
	(void)state;
	assert_string_equal(ipc_body_name(VSOCKMUX__IPC__ENVELOPE__BODY_VMM_ATTACH),
			    "VmmAttach");
	assert_string_equal(ipc_body_name(VSOCKMUX__IPC__ENVELOPE__BODY_VMM_DETACHED),
			    "VmmDetached");
	assert_string_equal(ipc_body_name(VSOCKMUX__IPC__ENVELOPE__BODY_HOST_STREAM),
			    "HostStream");
	assert_string_equal(ipc_body_name(VSOCKMUX__IPC__ENVELOPE__BODY_CONNECT_REQUEST),
			    "ConnectRequest");
	assert_string_equal(ipc_body_name(VSOCKMUX__IPC__ENVELOPE__BODY_CONNECT_REPLY),
			    "ConnectReply");
	assert_string_equal(ipc_body_name(VSOCKMUX__IPC__ENVELOPE__BODY__NOT_SET),
			    "(no body)");
	assert_string_equal(ipc_body_name(99), "(unknown body)");
	assert_string_equal(ipc_body_name(-1), "(unknown body)");
	ipc_free(NULL);
}

#define CHANNEL_TEST(name) \
	cmocka_unit_test_setup_teardown(name, setup_channel, teardown_channel)

int main(void)
{
	const struct CMUnitTest tests[] = {
		CHANNEL_TEST(test_round_trip_all_bodies),
		CHANNEL_TEST(test_messages_stay_separate),
		CHANNEL_TEST(test_oversized_datagram_rejected),
		CHANNEL_TEST(test_datagram_at_size_cap_accepted),
		CHANNEL_TEST(test_garbage_rejected),
		CHANNEL_TEST(test_truncated_rejected),
		CHANNEL_TEST(test_wrong_version_rejected),
		CHANNEL_TEST(test_no_body_rejected),
		CHANNEL_TEST(test_unknown_fields_rejected),
		CHANNEL_TEST(test_two_fds_rejected_and_closed),
		CHANNEL_TEST(test_many_fds_rejected_and_closed),
		CHANNEL_TEST(test_credentials_rejected),
		CHANNEL_TEST(test_mutated_datagrams),
		CHANNEL_TEST(test_eof_returns_zero),
		CHANNEL_TEST(test_zero_length_datagram_is_eof),
		CHANNEL_TEST(test_empty_channel_eagain),
		CHANNEL_TEST(test_send_too_big),
		CHANNEL_TEST(test_send_never_blocks),
		CHANNEL_TEST(test_send_to_closed_peer),
		cmocka_unit_test(test_body_names),
	};

	/* Rejections are logged at error level; keep the output readable. */
	log_set_role("test");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
