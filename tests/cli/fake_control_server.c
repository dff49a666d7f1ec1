/*
 * fake_control_server.c - canned control-socket answers for the vsockctl
 * tests (see fake_control_server.h).
 *
 * Owns: the temp directory (removed on stop), listening and accepted sockets.
 * Never: sleeps; every wait is poll() or SO_RCVTIMEO/SO_SNDTIMEO bounded.
 */
#include "fake_control_server.h"
#include "vsockmux/control_wire.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#define WAIT_MS 20000

static bool write_all(int fd, const void *data, size_t length)
{
	const uint8_t *bytes = data;

	while (length > 0) {
		ssize_t written = send(fd, bytes, length, MSG_NOSIGNAL);
		if (written < 0 && errno == EINTR)
			continue;
		if (written <= 0)
			return false;
		bytes += written;
		length -= (size_t)written;
	}
	return true;
}

static bool read_all(int fd, void *data, size_t length)
{
	uint8_t *bytes = data;

	while (length > 0) {
		ssize_t count = recv(fd, bytes, length, 0);
		if (count < 0 && errno == EINTR)
			continue;
		if (count <= 0)
			return false;
		bytes += count;
		length -= (size_t)count;
	}
	return true;
}

static bool write_frame(int fd, const uint8_t *body, size_t length)
{
	uint8_t header[CONTROL_PREFIX_SIZE];

	control_put_length(header, (uint32_t)length);

	return write_all(fd, header, sizeof(header)) && write_all(fd, body, length);
}

static void fill_connection(Vsockmux__Control__Connection *connection,
			    uint32_t local_port, uint32_t peer_port, bool from_host,
			    const char *state, uint64_t age_ms, uint64_t idle_ms,
			    uint64_t bytes_to_host, uint64_t bytes_to_guest,
			    uint32_t guest_credit, uint32_t tx_buffered)
{
	vsockmux__control__connection__init(connection);
	connection->local_port = local_port;
	connection->peer_port = peer_port;
	connection->from_host = from_host;
	connection->state = (char *)state;
	connection->age_ms = age_ms;
	connection->idle_ms = idle_ms;
	connection->bytes_to_host = bytes_to_host;
	connection->bytes_to_guest = bytes_to_guest;
	connection->packets_from_guest = local_port + 7;
	connection->packets_to_guest = local_port + 8;
	connection->guest_credit = guest_credit;
	connection->tx_buffered = tx_buffered;
}

/* Packs the canned Response for answer `sample`; caller frees *out. */
static bool pack_canned(unsigned sample, uint8_t **out, size_t *length)
{
	Vsockmux__Control__Response response = VSOCKMUX__CONTROL__RESPONSE__INIT;
	Vsockmux__Control__Stats stats = VSOCKMUX__CONTROL__STATS__INIT;
	Vsockmux__Control__Features features = VSOCKMUX__CONTROL__FEATURES__INIT;
	Vsockmux__Control__Stats__DroppedEntry drops[3];
	Vsockmux__Control__Stats__DroppedEntry *drop_pointers[3];
	Vsockmux__Control__Connection connections[3];
	Vsockmux__Control__Connection *connection_pointers[3];
	static const char *const drop_names[3] = { "short_header", "bad_src_cid",
						   FAKE_ODD_DROP_REASON };
	size_t i;

	features.virtio = (1ull << 32) | (1ull << 29) | (1ull << 30) | (1ull << 40);
	features.protocol = (1ull << 0) | (1ull << 3) | (1ull << 9) | (1ull << 5);
	stats.uptime_ms = FAKE_UPTIME_MS + sample * 1000ull;
	stats.guest_cid = 42;
	stats.vmm_attached = true;
	stats.features = &features;
	stats.vmm_attach_count = 2;
	stats.connections_current = 5;
	stats.connections_peak = 17;
	stats.connections_total_from_host = 101;
	stats.connections_total_from_guest = 202;
	stats.refused_no_host_listener = 11;
	stats.refused_guest_refused = 12;
	stats.refused_limit = 13;
	stats.refused_bad_connect_line = 14;
	stats.refused_handshake_timeout = 15;
	stats.rst_sent = 21;
	stats.rst_received = 22;
	stats.bytes_to_host = FAKE_BYTES_TO_HOST + sample * 2097152ull;
	stats.bytes_to_guest = FAKE_BYTES_TO_GUEST + sample * 524288ull;
	stats.packets_from_guest = 31;
	stats.packets_to_guest = 32;
	for (i = 0; i < 3; i++) {
		vsockmux__control__stats__dropped_entry__init(&drops[i]);
		drops[i].key = (char *)drop_names[i];
		drops[i].value = 41 + i;
		drop_pointers[i] = &drops[i];
	}
	stats.n_dropped = 3;
	stats.dropped = drop_pointers;
	stats.waits_for_credit = 51;
	stats.waits_for_rx_buffers = 52;
	stats.broker_connects = 4;
	stats.broker_connect_ns_sum = 1000000;	/* avg 0.250 ms */
	stats.broker_connect_ns_max = 700000;
	/* Orders: port 4000,5000,6000; bytes 6000,4000,5000; age 5000,4000,6000. */
	fill_connection(&connections[0], 5000, 1025, true, "established", 7200000, 500,
			2048, 10, 262144, 0);
	fill_connection(&connections[1], 4000, 1030, false, "closing", 90000, 61000,
			5242880, 1048576, 65536, 4096);
	fill_connection(&connections[2], 6000, 1040, false, "handshake", 1500, 1500,
			104857600, 0, 0, 0);
	for (i = 0; i < 3; i++)
		connection_pointers[i] = &connections[i];
	stats.n_connections = 3;
	stats.connections = connection_pointers;
	stats.connections_truncated = true;

	response.version = 1;
	response.stats = &stats;
	*length = vsockmux__control__response__get_packed_size(&response);
	*out = malloc(*length);
	if (!*out)
		return false;
	vsockmux__control__response__pack(&response, *out);
	return true;
}

/* Packs a Response with just a version and an error text. */
static bool pack_bare(uint32_t version, const char *error, uint8_t **out, size_t *length)
{
	Vsockmux__Control__Response response = VSOCKMUX__CONTROL__RESPONSE__INIT;

	response.version = version;
	if (error)
		response.error = (char *)error;
	*length = vsockmux__control__response__get_packed_size(&response);
	*out = malloc(*length ? *length : 1);
	if (!*out)
		return false;
	vsockmux__control__response__pack(&response, *out);
	return true;
}

static bool read_request(struct fake_server *server, int fd)
{
	Vsockmux__Control__Request *request;
	uint8_t header[4], body[CONTROL_MAX_REQUEST];
	uint32_t length;

	if (!read_all(fd, header, sizeof(header)))
		return false;
	length = control_get_length(header);
	if (length > CONTROL_MAX_REQUEST || !read_all(fd, body, length))
		return false;
	request = vsockmux__control__request__unpack(NULL, length, body);
	if (!request)
		return false;
	server->last_version = request->version;
	server->last_include_connections = request->include_connections;
	vsockmux__control__request__free_unpacked(request, NULL);
	return true;
}

/* Answers one accepted client according to the mode. */
static bool serve_client(struct fake_server *server, int fd, unsigned sample)
{
	static const uint8_t garbage[] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	struct timeval timeout = { .tv_sec = WAIT_MS / 1000 };
	uint8_t *body = NULL;
	size_t length = 0;
	bool ok;

	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout)) != 0)
		return false;
	if (!read_request(server, fd))
		return false;
	server->requests++;
	switch (server->mode) {
	case FAKE_ANSWER:
		ok = pack_canned(sample, &body, &length) && write_frame(fd, body, length);
		break;
	case FAKE_WRONG_VERSION:
		ok = pack_bare(2, NULL, &body, &length) && write_frame(fd, body, length);
		break;
	case FAKE_ERROR:
		ok = pack_bare(1, server->error_text, &body, &length) &&
		     write_frame(fd, body, length);
		break;
	case FAKE_CLOSE:
		ok = true;
		break;
	case FAKE_OVERSIZED: {
		static const uint8_t header[4] = { 0x00, 0x40, 0x00, 0x01 };	/* 4 MiB + 1 */
		ok = write_all(fd, header, sizeof(header));
		break;
	}
	case FAKE_TRUNCATED: {
		static const uint8_t partial[4 + 10] = { 0, 0, 0, 100 };
		ok = write_all(fd, partial, sizeof(partial));
		break;
	}
	case FAKE_GARBAGE:
		ok = write_frame(fd, garbage, sizeof(garbage));
		break;
	default:
		ok = false;
	}
	free(body);
	return ok;
}

static void stop_listening(struct fake_server *server)
{
	if (server->listen_fd >= 0) {
		unlink(server->socket_path);
		close(server->listen_fd);
		server->listen_fd = -1;
	}
}

static void *server_thread(void *argument)
{
	struct fake_server *server = argument;
	unsigned answers = 0;

	for (;;) {
		struct pollfd fds[2] = {
			{ .fd = server->listen_fd, .events = POLLIN },
			{ .fd = server->stop_pipe[0], .events = POLLIN },
		};
		int ready = poll(fds, 2, WAIT_MS), client;

		if (ready < 0 && errno == EINTR)
			continue;
		if (ready <= 0 || fds[1].revents)
			break;	/* stopped, or nobody came within the bound */
		client = accept4(server->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (client < 0)
			continue;
		if (!serve_client(server, client, answers))
			server->thread_failed = server->mode != FAKE_CLOSE;
		close(client);
		answers++;
		if (server->answer_limit && answers >= server->answer_limit)
			break;	/* the "daemon" goes away */
	}
	stop_listening(server);
	return NULL;
}

int fake_server_start(struct fake_server *server, enum fake_mode mode,
		      unsigned answer_limit)
{
	struct sockaddr_un address = { .sun_family = AF_UNIX };

	memset(server, 0, sizeof(*server));
	server->listen_fd = -1;
	server->mode = mode;
	server->answer_limit = answer_limit;
	snprintf(server->directory, sizeof(server->directory), "/tmp/vsockctl-test.XXXXXX");
	if (!mkdtemp(server->directory))
		return -1;
	snprintf(server->socket_path, sizeof(server->socket_path), "%s/vsock.sock.ctl",
		 server->directory);
	snprintf(address.sun_path, sizeof(address.sun_path), "%s", server->socket_path);
	if (pipe2(server->stop_pipe, O_CLOEXEC) != 0)
		return -1;
	server->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (server->listen_fd < 0 ||
	    bind(server->listen_fd, (const struct sockaddr *)&address, sizeof(address)) != 0 ||
	    listen(server->listen_fd, 16) != 0)
		return -1;
	if (pthread_create(&server->thread, NULL, server_thread, server) != 0)
		return -1;
	return 0;
}

void fake_server_stop(struct fake_server *server)
{
	static const char stop = 's';

	if (write(server->stop_pipe[1], &stop, 1) != 1)
		server->thread_failed = true;
	pthread_join(server->thread, NULL);
	close(server->stop_pipe[0]);
	close(server->stop_pipe[1]);
	rmdir(server->directory);
}
