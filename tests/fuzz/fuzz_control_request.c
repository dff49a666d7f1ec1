/*
 * fuzz_control_request.c - libFuzzer target for the broker's control
 * socket (broker/control.c): how it reads and decodes vsockctl's
 * length-prefixed control.Request, and how it decodes the muxer's stats
 * bytes and re-encodes them as the control.Response.
 *
 * Each input is a session of up to four clients on a real listening Unix
 * socket (abstract address, accepted by control_handle_listener): their
 * request bytes arrive in fuzzed pieces; a StatsRequest the broker sends
 * to the muxer is read from the channel and answered with fuzzed stats
 * bytes (and sometimes a wrong request id) through
 * control_handle_stats_reply.
 * Checks: every answer a client reads is one frame whose length prefix
 * matches what follows and which decodes as a control.Response of the
 * current version; a StatsRequest names the slot of a client that sent a
 * well-formed request; no fd leaks.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "control.h"
#include "control.pb-c.h"
#include "fuzz_fds.h"
#include "fuzz_check.h"
#include "fuzz_input.h"
#include "vsockmux/ipc.h"
#include "vsockmux/log.h"

#define MAX_CLIENTS 4u
#define MAX_PIECES 8u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static int listen_fd = -1;
static struct sockaddr_un address;
static socklen_t address_length;
static int channel[2] = { -1, -1 };
static struct control_server server;
static uint8_t answer[CONTROL_MAX_RESPONSE + 8];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_ignore_sigpipe();
	log_set_level(LOG_LEVEL_ERROR);
	memset(&address, 0, sizeof(address));
	address.sun_family = AF_UNIX;
	/* abstract address: nothing on disk */
	address_length = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
		(size_t)snprintf(address.sun_path + 1, sizeof(address.sun_path) - 1,
				 "vsockmux-fuzz-control-%d", (int)getpid()));
	listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (listen_fd < 0 ||
	    bind(listen_fd, (const struct sockaddr *)&address, address_length) < 0 ||
	    listen(listen_fd, 64) < 0 ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
		       channel) < 0)
		abort();
	return 0;
}

/* Read everything the broker wrote to one client; check the framing. */
static void check_answer(int fd)
{
	size_t length = 0;
	Vsockmux__Control__Response *response;

	for (;;) {
		ssize_t got = recv(fd, answer + length, sizeof(answer) - length, MSG_DONTWAIT);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break;
		length += (size_t)got;
	}
	if (length == 0)
		return; /* still waiting, or closed without an answer */
	check(length >= 4, "answer shorter than its length prefix");
	check(control_get_length(answer) == length - 4,
	      "length prefix does not match the answer");
	response = vsockmux__control__response__unpack(NULL, length - 4, answer + 4);
	check(response != NULL, "answer does not decode");
	check(response->version == CONTROL_PROTOCOL_VERSION, "answer has a wrong version");
	vsockmux__control__response__free_unpacked(response, NULL);
}

/* The muxer's side: answer StatsRequests with fuzzed stats bytes. */
static void answer_stats_requests(struct fuzz_input *input)
{
	for (;;) {
		IpcEnvelope *envelope = NULL;
		int fd = -1;
		uint8_t stats[512];
		Vsockmux__Ipc__StatsReply reply = VSOCKMUX__IPC__STATS_REPLY__INIT;
		uint32_t slot;
		uint8_t how;

		if (ipc_receive(channel[1], &envelope, &fd) != 1)
			return;
		check(fd == -1, "broker attached an fd to a StatsRequest");
		check(envelope->body_case == VSOCKMUX__IPC__ENVELOPE__BODY_STATS_REQUEST,
		      "broker sent something other than a StatsRequest");
		slot = envelope->stats_request->request_id & 0xffu;
		check(slot < CONTROL_MAX_CLIENTS &&
		      server.clients[slot].state == CONTROL_CLIENT_WAITING,
		      "StatsRequest for a client that is not waiting");
		how = fuzz_u8(input);
		reply.request_id = (how & 1) ? fuzz_u32(input)
					     : envelope->stats_request->request_id;
		reply.stats.data = stats;
		reply.stats.len = fuzz_bytes(input, stats, fuzz_u16(input) % sizeof(stats));
		ipc_free(envelope);
		(void)control_handle_stats_reply(&server, &reply);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input input;
	int fds_before = fuzz_count_open_fds();
	int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	int clients[MAX_CLIENTS];
	unsigned client_count;

	fuzz_input_init(&input, data, size);
	check(epoll_fd >= 0, "epoll_create1");
	if (control_server_init(&server, listen_fd, epoll_fd, channel[0]) < 0)
		abort();
	client_count = 1u + fuzz_u8(&input) % MAX_CLIENTS;
	for (unsigned i = 0; i < client_count; i++) {
		clients[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		check(clients[i] >= 0, "socket");
		check(connect(clients[i], (const struct sockaddr *)&address,
			      address_length) == 0, "connect");
	}
	control_handle_listener(&server);

	for (unsigned piece = 0; piece < MAX_PIECES * client_count && !fuzz_empty(&input);
	     piece++) {
		uint8_t what = fuzz_u8(&input);
		unsigned slot = (what >> 4) % client_count;
		uint8_t bytes[CONTROL_MAX_REQUEST + 8];
		size_t length = fuzz_bytes(&input, bytes, fuzz_u8(&input) % sizeof(bytes));

		if ((what & 3u) == 3u) {
			shutdown(clients[slot], SHUT_WR);
		} else if (length > 0 && send(clients[slot], bytes, length,
					      MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
			continue;
		}
		control_handle_client(&server, slot, server.clients[slot].generation, EPOLLIN);
		answer_stats_requests(&input);
		check_answer(clients[slot]);
	}
	for (unsigned i = 0; i < client_count; i++) {
		control_handle_client(&server, i, server.clients[i].generation, EPOLLOUT);
		check_answer(clients[i]);
	}
	control_handle_timer(&server);
	control_server_destroy(&server);
	for (unsigned i = 0; i < client_count; i++)
		close(clients[i]);
	epoll_ctl(epoll_fd, EPOLL_CTL_DEL, listen_fd, NULL);
	close(epoll_fd);
	/* StatsRequests nobody answered */
	for (;;) {
		IpcEnvelope *envelope = NULL;
		int fd = -1;
		if (ipc_receive(channel[1], &envelope, &fd) != 1)
			break;
		ipc_free(envelope);
	}
	check(fuzz_count_open_fds() == fds_before, "fd leak");
	return 0;
}
