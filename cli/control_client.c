/*
 * control_client.c - the vsockctl side of the control protocol (see
 * control_client.h and proto/control.proto).
 *
 * Framing: 4-byte big-endian length, then the packed message. Every wait is
 * a poll() against one deadline for the whole exchange.
 *
 * Owns: one non-blocking AF_UNIX socket per call, closed before returning.
 * Never: blocks without a deadline, raises SIGPIPE (MSG_NOSIGNAL), or
 * accepts a response length above CONTROL_MAX_RESPONSE.
 */
#include "control_client.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Backoff while the daemon's listen backlog is full (connect: EAGAIN). */
#define BACKLOG_RETRY_MS 10

enum wait_result { WAIT_READY, WAIT_TIMEOUT, WAIT_CANCELLED, WAIT_ERROR };

struct exchange {
	const char *path;
	int fd;
	int cancel_fd;
	int64_t deadline_ms;
	char *error;
	size_t error_size;
};

static int64_t monotonic_ms(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static void set_error(struct exchange *exchange, const char *format, ...)
	__attribute__((format(printf, 2, 3)));

static void set_error(struct exchange *exchange, const char *format, ...)
{
	va_list args;

	va_start(args, format);
	vsnprintf(exchange->error, exchange->error_size, format, args);
	va_end(args);
}

/* Waits for `events` on the socket (fd < 0: only the cancel fd / timer). */
static enum wait_result wait_until(struct exchange *exchange, int fd,
				   short events, int64_t deadline_ms)
{
	for (;;) {
		struct pollfd fds[2];
		nfds_t count = 0;
		int64_t remaining = deadline_ms - monotonic_ms();
		int ready;

		if (remaining <= 0)
			return WAIT_TIMEOUT;
		if (exchange->cancel_fd >= 0) {
			fds[count].fd = exchange->cancel_fd;
			fds[count].events = POLLIN;
			fds[count].revents = 0;
			count++;
		}
		if (fd >= 0) {
			fds[count].fd = fd;
			fds[count].events = events;
			fds[count].revents = 0;
			count++;
		}
		ready = poll(fds, count, (int)remaining);
		if (ready < 0) {
			if (errno == EINTR)
				continue;
			return WAIT_ERROR;
		}
		if (ready == 0)
			continue;	/* re-check the deadline */
		if (exchange->cancel_fd >= 0 && fds[0].revents)
			return WAIT_CANCELLED;
		return WAIT_READY;	/* includes POLLHUP/POLLERR: I/O reports it */
	}
}

static enum control_status wait_failed(struct exchange *exchange,
				       enum wait_result result, const char *what)
{
	if (result == WAIT_CANCELLED)
		return CONTROL_CANCELLED;
	if (result == WAIT_TIMEOUT)
		set_error(exchange, "%s: no answer within %d s while %s",
			  exchange->path, CONTROL_TIMEOUT_MS / 1000, what);
	else
		set_error(exchange, "%s: poll: %s", exchange->path, strerror(errno));
	return CONTROL_FAILED;
}

static const char *connect_hint(int error_number)
{
	switch (error_number) {
	case ENOENT:
	case ECONNREFUSED:
		return " (is vsockmuxd running?)";
	case EACCES:
	case EPERM:
		return " (needs root, the daemon's user, or its group)";
	default:
		return "";
	}
}

static enum control_status connect_socket(struct exchange *exchange)
{
	struct sockaddr_un address = { .sun_family = AF_UNIX };
	size_t path_length = strlen(exchange->path);

	if (path_length == 0 || path_length >= sizeof(address.sun_path)) {
		set_error(exchange, "control socket path must be 1..%zu bytes: '%s'",
			  sizeof(address.sun_path) - 1, exchange->path);
		return CONTROL_BAD_PATH;
	}
	memcpy(address.sun_path, exchange->path, path_length + 1);

	exchange->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (exchange->fd < 0) {
		set_error(exchange, "socket: %s", strerror(errno));
		return CONTROL_FAILED;
	}
	for (;;) {
		enum wait_result result;

		if (connect(exchange->fd, (const struct sockaddr *)&address,
			    sizeof(address)) == 0)
			return CONTROL_OK;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN) {
			/* Backlog full: back off briefly, within the deadline. */
			int64_t retry_at = monotonic_ms() + BACKLOG_RETRY_MS;
			if (retry_at > exchange->deadline_ms)
				retry_at = exchange->deadline_ms;
			result = wait_until(exchange, -1, 0, retry_at);
			if (result == WAIT_CANCELLED || result == WAIT_ERROR)
				return wait_failed(exchange, result, "connecting");
			if (monotonic_ms() >= exchange->deadline_ms)
				return wait_failed(exchange, WAIT_TIMEOUT, "connecting");
			continue;
		}
		if (errno == EINPROGRESS) {
			int socket_error = 0;
			socklen_t length = sizeof(socket_error);

			result = wait_until(exchange, exchange->fd, POLLOUT,
					    exchange->deadline_ms);
			if (result != WAIT_READY)
				return wait_failed(exchange, result, "connecting");
			if (getsockopt(exchange->fd, SOL_SOCKET, SO_ERROR,
				       &socket_error, &length) < 0)
				socket_error = errno;
			if (socket_error == 0)
				return CONTROL_OK;
			errno = socket_error;
		}
		break;
	}
	set_error(exchange, "cannot connect to %s: %s%s", exchange->path,
		  strerror(errno), connect_hint(errno));
	return CONTROL_FAILED;
}

static enum control_status send_all(struct exchange *exchange,
				    const uint8_t *data, size_t length)
{
	size_t sent = 0;

	while (sent < length) {
		ssize_t written = send(exchange->fd, data + sent, length - sent,
				       MSG_NOSIGNAL);
		if (written > 0) {
			sent += (size_t)written;
			continue;
		}
		if (written < 0 && errno == EINTR)
			continue;
		if (written < 0 && errno == EAGAIN) {
			enum wait_result result = wait_until(exchange, exchange->fd,
							     POLLOUT, exchange->deadline_ms);
			if (result != WAIT_READY)
				return wait_failed(exchange, result, "sending the request");
			continue;
		}
		/* The daemon may refuse (permission, too many clients) and
		 * close before our request arrives; its answer is then
		 * already waiting to be read. */
		if (written < 0 && (errno == EPIPE || errno == ECONNRESET))
			return CONTROL_OK;
		set_error(exchange, "%s: sending the request: %s", exchange->path,
			  written < 0 ? strerror(errno) : "short write");
		return CONTROL_FAILED;
	}
	return CONTROL_OK;
}

/* Reads exactly `length` bytes; *received says how many arrived on EOF. */
static enum control_status receive_all(struct exchange *exchange, uint8_t *data,
				       size_t length, size_t *received,
				       const char *what)
{
	*received = 0;
	while (*received < length) {
		ssize_t count = recv(exchange->fd, data + *received,
				     length - *received, 0);
		if (count > 0) {
			*received += (size_t)count;
			continue;
		}
		if (count == 0)
			return CONTROL_FAILED;	/* caller words the EOF */
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN) {
			enum wait_result result = wait_until(exchange, exchange->fd,
							     POLLIN, exchange->deadline_ms);
			if (result != WAIT_READY)
				return wait_failed(exchange, result, what);
			continue;
		}
		set_error(exchange, "%s: %s: %s", exchange->path, what, strerror(errno));
		return CONTROL_FAILED;
	}
	return CONTROL_OK;
}

static enum control_status send_request(struct exchange *exchange,
					bool include_connections)
{
	Vsockmux__Control__Request request = VSOCKMUX__CONTROL__REQUEST__INIT;
	uint8_t frame[4 + CONTROL_MAX_REQUEST];
	size_t length;

	request.version = CONTROL_PROTOCOL_VERSION;
	request.include_connections = include_connections;
	length = vsockmux__control__request__get_packed_size(&request);
	if (length > CONTROL_MAX_REQUEST) {
		set_error(exchange, "internal error: request of %zu bytes", length);
		return CONTROL_FAILED;
	}
	vsockmux__control__request__pack(&request, frame + 4);
	control_put_length(frame, (uint32_t)length);
	return send_all(exchange, frame, 4 + length);
}

static enum control_status receive_response(struct exchange *exchange,
					    ControlResponse **response_out)
{
	uint8_t header[4];
	uint8_t *body;
	uint32_t length;
	size_t received;
	enum control_status status;

	status = receive_all(exchange, header, sizeof(header), &received,
			     "waiting for the response");
	if (status == CONTROL_FAILED && exchange->error[0] == '\0') {
		set_error(exchange, "%s: daemon closed the connection without answering",
			  exchange->path);
	}
	if (status != CONTROL_OK)
		return status;
	length = control_get_length(header);
	if (length > CONTROL_MAX_RESPONSE) {
		set_error(exchange, "%s: response of %u bytes exceeds the %u MiB limit",
			  exchange->path, length, CONTROL_MAX_RESPONSE >> 20);
		return CONTROL_FAILED;
	}
	body = malloc(length ? length : 1);
	if (!body) {
		set_error(exchange, "out of memory for a %u-byte response", length);
		return CONTROL_FAILED;
	}
	status = receive_all(exchange, body, length, &received, "reading the response");
	if (status == CONTROL_FAILED && exchange->error[0] == '\0')
		set_error(exchange, "%s: daemon closed the connection mid-response (%zu of %u bytes)",
			  exchange->path, received, length);
	if (status != CONTROL_OK) {
		free(body);
		return status;
	}
	*response_out = vsockmux__control__response__unpack(NULL, length, body);
	free(body);
	if (!*response_out) {
		set_error(exchange, "%s: malformed response (%u bytes)", exchange->path, length);
		return CONTROL_FAILED;
	}
	return CONTROL_OK;
}

static enum control_status check_response(struct exchange *exchange,
					  const ControlResponse *response)
{
	if (response->version != CONTROL_PROTOCOL_VERSION) {
		set_error(exchange, "version mismatch: daemon speaks control protocol %u, vsockctl speaks %u",
			  response->version, CONTROL_PROTOCOL_VERSION);
		return CONTROL_FAILED;
	}
	if (response->error && response->error[0] != '\0') {
		set_error(exchange, "%s: %s", exchange->path, response->error);
		return CONTROL_FAILED;
	}
	if (!response->stats) {
		set_error(exchange, "%s: response carries no stats", exchange->path);
		return CONTROL_FAILED;
	}
	return CONTROL_OK;
}

enum control_status control_fetch(const char *socket_path,
				  bool include_connections, int timeout_ms,
				  int cancel_fd, ControlResponse **response_out,
				  char *error, size_t error_size)
{
	struct exchange exchange = {
		.path = socket_path,
		.fd = -1,
		.cancel_fd = cancel_fd,
		.deadline_ms = monotonic_ms() + timeout_ms,
		.error = error,
		.error_size = error_size,
	};
	ControlResponse *response = NULL;
	enum control_status status;

	*response_out = NULL;
	if (error_size > 0)
		error[0] = '\0';
	status = connect_socket(&exchange);
	if (status == CONTROL_OK)
		status = send_request(&exchange, include_connections);
	if (status == CONTROL_OK)
		status = receive_response(&exchange, &response);
	if (status == CONTROL_OK)
		status = check_response(&exchange, response);
	if (exchange.fd >= 0)
		close(exchange.fd);
	if (status != CONTROL_OK) {
		control_response_free(response);
		return status;
	}
	*response_out = response;
	return CONTROL_OK;
}

void control_response_free(ControlResponse *response)
{
	if (response)
		vsockmux__control__response__free_unpacked(response, NULL);
}
