/*
 * fuzz_ipc.c - libFuzzer target for the broker<->muxer channel framing
 * (proto/ipc_channel.c), both directions.
 *
 * Input: a sequence of datagrams (length, bytes, how many fds to attach:
 * 0..6 of /dev/null, an eventfd or a socket; optionally padded past the
 * size cap). Each is sent over a real SOCK_SEQPACKET socketpair and read
 * back with ipc_receive. Whatever ipc_receive accepts is sent again with
 * ipc_send (with its fd, if any) and must come back through ipc_receive as
 * the same bytes.
 * Checks: a return of 1 has an envelope with the right version and a body
 * and at most the one fd sent; any other return leaves *envelope NULL and
 * *fd -1; no fd leaks (the process's open-fd count is the same after
 * every input).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz_fds.h"
#include "fuzz_check.h"
#include "fuzz_input.h"
#include "vsockmux/ipc.h"
#include "vsockmux/log.h"

#define MAX_DATAGRAMS 16u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static int channel[2] = { -1, -1 };
static uint8_t datagram[IPC_MAX_DATAGRAM_SIZE + 4096];
static uint8_t repacked[IPC_MAX_DATAGRAM_SIZE + 4096];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	int buffer = 1024 * 1024;

	(void)argc;
	(void)argv;
	fuzz_ignore_sigpipe();
	log_set_level(LOG_LEVEL_ERROR);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, channel) < 0)
		abort();
	(void)setsockopt(channel[0], SOL_SOCKET, SO_RCVBUF, &buffer, sizeof(buffer));
	(void)setsockopt(channel[1], SOL_SOCKET, SO_SNDBUF, &buffer, sizeof(buffer));
	return 0;
}

static int make_attachment(uint8_t kind)
{
	int pair[2];

	switch (kind % 3u) {
	case 0:
		return open("/dev/null", O_RDWR | O_CLOEXEC);
	case 1:
		return eventfd(0, EFD_CLOEXEC);
	default:
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0)
			return -1;
		close(pair[1]);
		return pair[0];
	}
}

/* Send what was accepted back through ipc_send; it must round-trip. */
static void round_trip(IpcEnvelope *envelope, int fd)
{
	size_t length = protobuf_c_message_get_packed_size(&envelope->base);
	IpcEnvelope *again = NULL;
	int again_fd = -1;
	int result;

	check(length <= sizeof(repacked), "accepted envelope packs too large");
	protobuf_c_message_pack(&envelope->base, repacked);
	result = ipc_send(channel[1], envelope, fd);
	if (result == -EMSGSIZE || result == -EAGAIN || result == -ENOBUFS)
		return;
	check(result == 0, "ipc_send failed on an envelope ipc_receive accepted");
	result = ipc_receive(channel[0], &again, &again_fd);
	check(result == 1, "ipc_send's datagram was refused by ipc_receive");
	check((fd >= 0) == (again_fd >= 0), "fd lost or gained in the round trip");
	check(protobuf_c_message_get_packed_size(&again->base) == length,
	      "round trip changed the size");
	protobuf_c_message_pack(&again->base, datagram);
	check(memcmp(datagram, repacked, length) == 0, "round trip changed the bytes");
	if (again_fd >= 0)
		close(again_fd);
	ipc_free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input input;
	int fds_before = fuzz_count_open_fds();

	fuzz_input_init(&input, data, size);
	for (unsigned n = 0; n < MAX_DATAGRAMS && !fuzz_empty(&input); n++) {
		uint8_t shape = fuzz_u8(&input);
		size_t length = fuzz_u16(&input) % 1024u;
		size_t fd_count = (shape & 7u) > 6 ? 6 : (shape & 7u);
		int fds[FUZZ_MAX_ATTACHED_FDS];
		IpcEnvelope *envelope = (IpcEnvelope *)&n; /* must be reset */
		int fd = 12345;
		ssize_t sent;
		int result;

		length = fuzz_bytes(&input, datagram, length);
		if (shape & 0x80) {
			/* pad past the cap: "oversized" must be detected */
			size_t target = IPC_MAX_DATAGRAM_SIZE - 8 + (shape & 0x70);
			memset(datagram + length, 0, target - length);
			length = target;
		}
		for (size_t i = 0; i < fd_count; i++)
			fds[i] = make_attachment(fuzz_u8(&input));
		sent = fuzz_send_with_fds(channel[1], datagram, length, fds, fd_count);
		for (size_t i = 0; i < fd_count; i++) {
			if (fds[i] >= 0)
				close(fds[i]);
		}
		if (sent < 0)
			continue; /* buffer limits: nothing was queued */
		result = ipc_receive(channel[0], &envelope, &fd);
		if (result == 1) {
			check(envelope != NULL, "accepted without an envelope");
			check(envelope->version == IPC_PROTOCOL_VERSION, "wrong version accepted");
			check(envelope->body_case != VSOCKMUX__IPC__ENVELOPE__BODY__NOT_SET,
			      "envelope without a body accepted");
			check(fd_count == 1 ? fd >= 0 : fd == -1, "fd count not enforced");
			check(length <= IPC_MAX_DATAGRAM_SIZE, "oversized datagram accepted");
			round_trip(envelope, fd);
			if (fd >= 0)
				close(fd);
			ipc_free(envelope);
		} else {
			check(envelope == NULL, "rejected but an envelope was returned");
			check(fd == -1, "rejected but an fd was returned");
			check(result == -EPROTO || result == 0, "unexpected error");
		}
	}
	check(fuzz_count_open_fds() == fds_before, "fd leak");
	return 0;
}
