/*
 * test_clients.c - host clients shaped like the real ones that use hybrid
 * vsock today, against the real daemon and the virtual guest:
 *
 *   systemd-ssh-proxy (ssh vsock-mux/PATH): writes "CONNECT <port>\n",
 *     peeks at most 9 bytes (sized for "OK 65535\n"), consumes the reply
 *     only if a whole line fits, then hands the fd to ssh;
 *   Kata's hybrid-vsock dialers: lower-case "connect", look for "OK" in
 *     the first line, redial many times while the guest agent is not up;
 *   firecracker-containerd: reads the reply with a 32-byte buffered
 *     reader and wants the prefix "OK " (with the space);
 *   Firecracker's own tests: recv(32) is exactly "OK <port>\n", then 50
 *     connections at once;
 *   a client that sends its line and its first data in one write;
 *   a guest that writes first (an SSH banner) the moment it accepts.
 *
 * These clients read the socket themselves (a raw fd, not the harness's
 * buffered host_conn) because how much they read, and when, is the point.
 *
 * Owns: these scenarios. Never: depends on another scenario's state.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sys_harness.h"

#define BANNER "SSH-2.0-vsockmux-test\r\n"
#define BANNER_LENGTH (sizeof(BANNER) - 1)
/* The host-side ports of host-initiated connections: [2^30, 2^31). */
#define LOCAL_PORT_FIRST (1u << 30)
#define LOCAL_PORT_LAST ((1u << 31) - 1u)

/* A raw client connected to the daemon's host socket. */
static int raw_connect(struct sys_harness *h)
{
	return sys_unix_connect(h->uds_path);
}

static void raw_write(int fd, const char *text)
{
	size_t length = strlen(text);
	CHECKF(write(fd, text, length) == (ssize_t)length, "write: %s", strerror(errno));
}

/* Bytes waiting in fd (peeked, not consumed), up to capacity; -1 once the
 * peer closed with nothing left. */
static ssize_t raw_waiting(int fd, char *buffer, size_t capacity)
{
	ssize_t got = recv(fd, buffer, capacity, MSG_PEEK | MSG_DONTWAIT);
	if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return 0;
	if (got == 0)
		return -1;
	CHECKF(got > 0, "recv: %s", strerror(errno));
	return got;
}

/* Drive guest and daemon until fd holds at least wanted bytes (or the
 * peer closed: returns false). The harness does not poll fd, so it is
 * looked at between short rounds of the loop; the wait is bounded. */
static bool raw_wait_bytes(struct sys_harness *h, int fd, size_t wanted, int timeout_ms)
{
	char buffer[256];
	uint64_t end = sys_wait_end(h, timeout_ms);

	CHECK(wanted <= sizeof(buffer));
	for (;;) {
		ssize_t waiting = raw_waiting(fd, buffer, sizeof(buffer));
		if (waiting < 0)
			return false;
		if ((size_t)waiting >= wanted)
			return true;
		CHECKF(sys_now_ns() < end, "timed out after %d ms waiting for %zu bytes "
		       "from the daemon (have %zd)", timeout_ms, wanted, waiting);
		sys_pump(h, 5);
	}
}

/* Read exactly length bytes (they are known to be waiting). */
static void raw_read_exact(int fd, char *buffer, size_t length)
{
	size_t done = 0;
	while (done < length) {
		ssize_t got = recv(fd, buffer + done, length - done, MSG_DONTWAIT);
		CHECKF(got > 0, "recv: %s", got == 0 ? "EOF" : strerror(errno));
		done += (size_t)got;
	}
}

/* The guest accepts on listener and at once writes the banner. */
static struct vguest_sock *accept_and_greet(struct sys_harness *h,
					    struct vguest_sock *listener)
{
	struct vguest_sock *g = NULL;
	WAIT_FOR(h, 3000, (g = vguest_accept(listener)) != NULL);
	sys_guest_write_all(h, g, BANNER, BANNER_LENGTH, 3000);
	return g;
}

static void start_with_reply_mode(struct sys_harness *h, const char *mode)
{
	const char *const args[] = { "--connect-reply", mode, NULL };
	sys_start_daemon(h, args);
	(void)sys_guest_new(h, NULL);
}

/* systemd-ssh-proxy's read of the reply: peek 9 bytes; a whole "OK ...\n"
 * line within them is consumed, anything else is left for ssh. Returns
 * how many bytes it consumed. */
static size_t ssh_proxy_take_reply(int fd)
{
	char peeked[9];
	ssize_t got = recv(fd, peeked, sizeof(peeked), MSG_PEEK | MSG_DONTWAIT);
	const char *newline;

	CHECKF(got > 0, "peek: %s", got == 0 ? "EOF" : strerror(errno));
	newline = memchr(peeked, '\n', (size_t)got);
	if (!newline || strncmp(peeked, "OK ", 3) != 0)
		return 0;
	raw_read_exact(fd, peeked, (size_t)(newline - peeked) + 1);
	return (size_t)(newline - peeked) + 1;
}

/* --connect-reply guest-port: "OK 22\n" fits in 9 bytes, ssh-proxy
 * consumes it, and ssh reads the guest's banner as the first bytes. */
static void test_ssh_proxy_guest_port(struct sys_harness *h)
{
	char buffer[64];
	struct vguest_sock *listener;
	int fd;

	start_with_reply_mode(h, "guest-port");
	listener = vguest_listen(h->vg, 22);
	fd = raw_connect(h);
	raw_write(fd, "CONNECT 22\n");
	(void)accept_and_greet(h, listener);
	CHECK(raw_wait_bytes(h, fd, strlen("OK 22\n") + BANNER_LENGTH, 3000));
	CHECKF(ssh_proxy_take_reply(fd) == strlen("OK 22\n"),
	       "ssh-proxy did not consume the reply in guest-port mode");
	/* the fd is handed on: what ssh reads is the guest's stream, intact */
	raw_read_exact(fd, buffer, BANNER_LENGTH);
	CHECK(memcmp(buffer, BANNER, BANNER_LENGTH) == 0);
	close(fd);
}

/* The default (host-port) reply is longer than ssh-proxy peeks: it is
 * left in the stream, in one piece, ahead of the guest's banner. */
static void test_ssh_proxy_host_port(struct sys_harness *h)
{
	char buffer[64], *end;
	struct vguest_sock *listener, *g;
	unsigned long port;
	size_t line_length;
	int fd;

	start_with_reply_mode(h, "host-port");
	listener = vguest_listen(h->vg, 22);
	fd = raw_connect(h);
	raw_write(fd, "CONNECT 22\n");
	g = accept_and_greet(h, listener);
	line_length = (size_t)snprintf(buffer, sizeof(buffer), "OK %" PRIu32 "\n",
				       g->peer_port);
	CHECK(raw_wait_bytes(h, fd, line_length + BANNER_LENGTH, 3000));
	CHECKF(ssh_proxy_take_reply(fd) == 0,
	       "a 9-byte peek found a whole line in host-port mode");
	raw_read_exact(fd, buffer, line_length);
	buffer[line_length] = '\0';
	errno = 0;
	port = strtoul(buffer + 3, &end, 10);
	CHECKF(strncmp(buffer, "OK ", 3) == 0 && errno == 0 && strcmp(end, "\n") == 0 &&
	       port >= LOCAL_PORT_FIRST && port <= LOCAL_PORT_LAST &&
	       port == g->peer_port, "reply \"%s\" is not OK <local port %" PRIu32 ">",
	       buffer, g->peer_port);
	raw_read_exact(fd, buffer, BANNER_LENGTH);
	CHECK(memcmp(buffer, BANNER, BANNER_LENGTH) == 0);
	close(fd);
}

/* firecracker-containerd: one read of up to 32 bytes must hold the whole
 * "OK " line; what follows it in that read is the guest's stream. */
static void test_containerd_buffered_read(struct sys_harness *h)
{
	char buffered[32], stream[64];
	struct vguest_sock *listener;
	const char *newline;
	size_t kept;
	ssize_t got;
	int fd;

	sys_setup(h);
	listener = vguest_listen(h->vg, 1024);
	fd = raw_connect(h);
	raw_write(fd, "CONNECT 1024\n");
	(void)accept_and_greet(h, listener);
	CHECK(raw_wait_bytes(h, fd, strlen("OK 1073741824\n") + BANNER_LENGTH, 3000));
	got = recv(fd, buffered, sizeof(buffered), MSG_DONTWAIT);
	CHECK(got > 0);
	newline = memchr(buffered, '\n', (size_t)got);
	CHECKF(newline && strncmp(buffered, "OK ", 3) == 0,
	       "a 32-byte read does not start with a whole \"OK \" line");
	kept = (size_t)got - (size_t)(newline + 1 - buffered);
	memcpy(stream, newline + 1, kept);
	raw_read_exact(fd, stream + kept, BANNER_LENGTH - kept);
	CHECK(memcmp(stream, BANNER, BANNER_LENGTH) == 0);
	close(fd);
}

/* The line and the first data in one write: the data reaches the guest. */
static void test_connect_and_data_in_one_write(struct sys_harness *h)
{
	char buffer[16];
	struct vguest_sock *listener, *g = NULL;
	int fd;

	sys_setup(h);
	listener = vguest_listen(h->vg, 16);
	fd = raw_connect(h);
	raw_write(fd, "CONNECT 16\nHelloWorld!");
	WAIT_FOR(h, 3000, (g = vguest_accept(listener)) != NULL);
	sys_guest_read_exact(h, g, buffer, 11, 3000);
	CHECKF(memcmp(buffer, "HelloWorld!", 11) == 0, "guest read \"%.11s\"", buffer);
	CHECK(raw_wait_bytes(h, fd, 4, 3000));
	raw_read_exact(fd, buffer, 3);
	CHECK(memcmp(buffer, "OK ", 3) == 0);
	close(fd);
}

/* Kata's dialer: "connect <port>\n", then "OK" anywhere in the first line.
 * Returns true when connected; false when the daemon closed the socket. */
static bool kata_dial(struct sys_harness *h, uint32_t port, int *fd_out)
{
	char command[32], line[64];
	ssize_t waiting;
	int fd = raw_connect(h);
	uint64_t end = sys_wait_end(h, 5000);

	snprintf(command, sizeof(command), "connect %" PRIu32 "\n", port);
	raw_write(fd, command);
	for (;;) {
		waiting = raw_waiting(fd, line, sizeof(line) - 1);
		if (waiting < 0) {
			close(fd);
			return false;
		}
		line[waiting] = '\0';
		if (strchr(line, '\n'))
			break;
		CHECKF(sys_now_ns() < end, "dial to port %" PRIu32 " neither answered "
		       "nor closed in 5 s", port);
		sys_pump(h, 5);
	}
	*strchr(line, '\n') = '\0';
	CHECKF(strstr(line, "OK") != NULL, "first line \"%s\" has no OK", line);
	raw_read_exact(fd, line, strlen(line) + 1);
	*fd_out = fd;
	return true;
}

/* The fds the muxer holds (its /proc/PID/fd entries). */
static unsigned muxer_fd_count(struct sys_harness *h)
{
	char path[64];
	unsigned count = 0;
	DIR *listing;
	const struct dirent *entry;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)sys_daemon_child_pid(h));
	listing = opendir(path);
	CHECKF(listing, "%s: %s", path, strerror(errno));
	while ((entry = readdir(listing)) != NULL)
		count += entry->d_name[0] != '.';
	closedir(listing);
	return count;
}

/* 1500 redials while the guest agent is not listening yet (each refused
 * by the guest, closed with nothing written), then the agent comes up
 * and the next dial works. Nothing leaks and the daemon keeps answering. */
static void test_kata_redial_storm(struct sys_harness *h)
{
	Vsockmux__Control__Response *response;
	unsigned fds_before, fds_after, attempts;
	struct vguest_sock *listener, *g = NULL;
	char buffer[8];
	int fd = -1;

	sys_setup(h);
	/* the first dial also proves the frontend's set-up (its eventfds) is
	 * complete, so the count below is the steady one */
	CHECK(!kata_dial(h, 1024, &fd));
	fds_before = muxer_fd_count(h);
	for (attempts = 1; attempts < 1500; attempts++)
		CHECKF(!kata_dial(h, 1024, &fd), "dial %u connected without a listener",
		       attempts);
	response = sys_query_stats(h, false);
	printf("after %u refused dials: refused_guest_refused %" PRIu64
	       ", connections_current %" PRIu64 "\n", attempts,
	       response->stats->refused_guest_refused, response->stats->connections_current);
	CHECK(response->stats->refused_guest_refused == attempts);
	CHECK(response->stats->connections_current == 0);
	sys_stats_free(response);
	fds_after = muxer_fd_count(h);
	CHECKF(fds_after == fds_before, "muxer fds %u before the storm, %u after",
	       fds_before, fds_after);
	listener = vguest_listen(h->vg, 1024);
	CHECK(kata_dial(h, 1024, &fd));
	WAIT_FOR(h, 3000, (g = vguest_accept(listener)) != NULL);
	raw_write(fd, "ping");
	sys_guest_read_exact(h, g, buffer, 4, 3000);
	CHECK(memcmp(buffer, "ping", 4) == 0);
	close(fd);
}

/* Under load (a bulk stream each way and 64 clients at once), every
 * client's first bytes are its whole OK line, then the guest's banner. */
static void test_ok_line_first_under_load(struct sys_harness *h)
{
	enum { CLIENTS = 64 };
	int fds[CLIENTS];
	struct vguest_sock *listener, *g;
	struct host_conn *bulk;
	struct guest_stream *bulk_guest;
	char expected[64], buffer[64];
	unsigned accepted = 0;

	start_with_reply_mode(h, "guest-port");
	listener = vguest_listen(h->vg, 22);
	/* guest-initiated: no OK line, so the mode does not matter to it */
	sys_open_guest_initiated(h, h->vg, host_listen(h, 7000), &bulk, &g);
	bulk_guest = guest_stream_add(h, g);
	host_source(bulk, 1, 16u << 20, SYS_AFTER_NOTHING);
	guest_stream_sink(bulk_guest, 1, 16u << 20);
	guest_stream_source(bulk_guest, 2, 16u << 20, SYS_AFTER_NOTHING);
	host_sink(bulk, 2, 16u << 20);
	for (unsigned i = 0; i < CLIENTS; i++) {
		fds[i] = raw_connect(h);
		raw_write(fds[i], "CONNECT 22\n");
	}
	while (accepted < CLIENTS) {
		WAIT_FOR(h, 5000, (g = vguest_accept(listener)) != NULL);
		sys_guest_write_all(h, g, BANNER, BANNER_LENGTH, 5000);
		accepted++;
	}
	snprintf(expected, sizeof(expected), "OK 22\n" BANNER);
	for (unsigned i = 0; i < CLIENTS; i++) {
		CHECK(raw_wait_bytes(h, fds[i], strlen(expected), 5000));
		raw_read_exact(fds[i], buffer, strlen(expected));
		CHECKF(memcmp(buffer, expected, strlen(expected)) == 0,
		       "client %u read \"%.*s\"", i, (int)strlen(expected), buffer);
		close(fds[i]);
	}
	WAIT_FOR(h, 60000, bulk->sink.received == bulk->sink.expected &&
		 bulk_guest->sink.received == bulk_guest->sink.expected);
}

/* Firecracker's own test client: recv(32) must return exactly one line,
 * ^OK [0-9]+\n$; then 50 connections at once move 1 MiB each way. */
static void test_firecracker_parallel_echo(struct sys_harness *h)
{
	enum { CLIENTS = 50 };
	const uint64_t size = 1u << 20;
	struct vguest_sock *listener, *guests[CLIENTS];
	struct host_conn *hosts[CLIENTS];
	struct guest_stream *streams[CLIENTS];
	int fds[CLIENTS];

	sys_setup(h);
	listener = vguest_listen(h->vg, 52);
	for (unsigned i = 0; i < CLIENTS; i++) {
		fds[i] = raw_connect(h);
		raw_write(fds[i], "CONNECT 52\n");
	}
	for (unsigned i = 0; i < CLIENTS; i++)
		WAIT_FOR(h, 5000, (guests[i] = vguest_accept(listener)) != NULL);
	for (unsigned i = 0; i < CLIENTS; i++) {
		char reply[33], *end;
		unsigned long port;
		ssize_t got;
		unsigned match = CLIENTS;

		CHECK(raw_wait_bytes(h, fds[i], strlen("OK 1073741824\n"), 5000));
		got = recv(fds[i], reply, 32, MSG_DONTWAIT);
		CHECK(got > 0);
		reply[got] = '\0';
		port = strtoul(reply + 3, &end, 10);
		CHECKF(strncmp(reply, "OK ", 3) == 0 && end > reply + 3 && strcmp(end, "\n") == 0,
		       "recv(32) got \"%s\", not one ^OK [0-9]+\\n$ line", reply);
		for (unsigned g = 0; g < CLIENTS; g++)
			if (guests[g] && guests[g]->peer_port == port)
				match = g;
		CHECKF(match < CLIENTS, "OK %lu names no accepted connection", port);
		hosts[i] = host_conn_adopt(h, fds[i]);
		streams[i] = guest_stream_add(h, guests[match]);
		guests[match] = NULL;
		host_source(hosts[i], i + 1, size, SYS_AFTER_NOTHING);
		guest_stream_sink(streams[i], i + 1, size);
		guest_stream_source(streams[i], i + 1001, size, SYS_AFTER_NOTHING);
		host_sink(hosts[i], i + 1001, size);
	}
	for (unsigned i = 0; i < CLIENTS; i++)
		WAIT_FOR(h, 60000, hosts[i]->sink.received == size &&
			 streams[i]->sink.received == size);
}

int main(int argc, char **argv)
{
	static const struct sys_test tests[] = {
#define SCENARIO SYS_SCENARIO_ENTRY
#include "test_clients.def"
#undef SCENARIO
	};
	return sys_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
