/*
 * control.c - the control socket's clients (see control.h).
 *
 * One request per connection: read a length-prefixed control.Request,
 * ask the muxer (StatsRequest over the channel), write back a length-
 * prefixed control.Response, close. The muxer's bytes are decoded and
 * re-encoded here, so a confused muxer cannot feed vsockctl garbage.
 */
#include "control.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "control.pb-c.h"
#include "vsockmux/ipc.h"

static uint32_t request_id_of(uint32_t slot, const struct control_client *client)
{
	return slot | (client->generation << 8);
}

static void set_timer(struct control_server *server, bool wanted)
{
	struct itimerspec tick = { { 1, 0 }, { 1, 0 } };
	struct itimerspec off = { { 0, 0 }, { 0, 0 } };
	if (server->timer_armed == wanted)
		return;
	if (timerfd_settime(server->timer_fd, 0, wanted ? &tick : &off, NULL) == 0)
		server->timer_armed = wanted;
}

static void close_client(struct control_server *server, struct control_client *client)
{
	bool any = false;
	if (client->fd >= 0)
		close(client->fd); /* also leaves the epoll set */
	free(client->response);
	client->response = NULL;
	client->fd = -1;
	client->state = CONTROL_CLIENT_FREE;
	for (uint32_t i = 0; i < CONTROL_MAX_CLIENTS; i++)
		any |= server->clients[i].state != CONTROL_CLIENT_FREE;
	set_timer(server, any);
}

/* Write as much of the response as the socket takes; close when done. */
static void write_response(struct control_server *server, struct control_client *client)
{
	while (client->response_sent < client->response_length) {
		ssize_t sent = send(client->fd, client->response + client->response_sent,
				    client->response_length - client->response_sent,
				    MSG_DONTWAIT | MSG_NOSIGNAL);
		if (sent < 0 && errno == EINTR)
			continue;
		if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return; /* EPOLLOUT brings us back */
		if (sent <= 0) {
			close_client(server, client);
			return;
		}
		client->response_sent += (size_t)sent;
	}
	close_client(server, client);
}

/* Frame and start sending response (which may carry an error). */
static void respond(struct control_server *server, uint32_t slot,
		    Vsockmux__Control__Response *response)
{
	struct control_client *client = &server->clients[slot];
	struct epoll_event event = {
		.events = EPOLLOUT,
		.data.u64 = tag_encode(CONTROL_SOURCE_CLIENT, client->generation, slot),
	};
	size_t length;

	response->version = CONTROL_PROTOCOL_VERSION;
	length = protobuf_c_message_get_packed_size(&response->base);
	if (length > CONTROL_MAX_RESPONSE) {
		close_client(server, client);
		return;
	}
	client->response = malloc(4 + length);
	if (!client->response) {
		close_client(server, client);
		return;
	}
	control_put_length(client->response, (uint32_t)length);
	protobuf_c_message_pack(&response->base, client->response + 4);
	client->response_length = 4 + length;
	client->response_sent = 0;
	client->state = CONTROL_CLIENT_WRITING;
	epoll_ctl(server->epoll_fd, EPOLL_CTL_MOD, client->fd, &event);
	write_response(server, client);
}

static void respond_error(struct control_server *server, uint32_t slot,
			  const char *error)
{
	Vsockmux__Control__Response response = VSOCKMUX__CONTROL__RESPONSE__INIT;
	response.error = (char *)error;
	respond(server, slot, &response);
}

int control_server_init(struct control_server *server, int listen_fd,
			int epoll_fd, int channel_fd)
{
	struct epoll_event listener = {
		.events = EPOLLIN,
		.data.u64 = tag_encode(CONTROL_SOURCE_LISTENER, 0, 0),
	};
	struct epoll_event timer = {
		.events = EPOLLIN,
		.data.u64 = tag_encode(CONTROL_SOURCE_TIMER, 0, 0),
	};

	memset(server, 0, sizeof(*server));
	server->listen_fd = listen_fd;
	server->epoll_fd = epoll_fd;
	server->channel_fd = channel_fd;
	server->daemon_uid = geteuid();
	for (uint32_t i = 0; i < CONTROL_MAX_CLIENTS; i++)
		server->clients[i].fd = -1;
	server->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (server->timer_fd < 0 ||
	    epoll_ctl(epoll_fd, EPOLL_CTL_ADD, server->timer_fd, &timer) < 0 ||
	    epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listen_fd, &listener) < 0) {
		log_error("control socket: %s", strerror(errno));
		return -1;
	}
	return 0;
}

void control_server_destroy(struct control_server *server)
{
	for (uint32_t i = 0; i < CONTROL_MAX_CLIENTS; i++) {
		if (server->clients[i].state != CONTROL_CLIENT_FREE)
			close_client(server, &server->clients[i]);
	}
	if (server->timer_fd >= 0)
		close(server->timer_fd);
	server->timer_fd = -1;
}

/* Over the client cap: one small answer, sent once, never waited for. */
static void send_busy(int fd)
{
	Vsockmux__Control__Response response = VSOCKMUX__CONTROL__RESPONSE__INIT;
	uint8_t frame[128];
	size_t length;

	response.version = CONTROL_PROTOCOL_VERSION;
	response.error = "busy: too many control clients, try again";
	length = protobuf_c_message_get_packed_size(&response.base);
	if (length + 4 <= sizeof(frame)) {
		control_put_length(frame, (uint32_t)length);
		protobuf_c_message_pack(&response.base, frame + 4);
		(void)send(fd, frame, length + 4, MSG_DONTWAIT | MSG_NOSIGNAL);
	}
}

static void refuse_busy(int fd)
{
	send_busy(fd);
	close(fd);
}

/* Root and the daemon's own user only. */
static bool peer_allowed(const struct control_server *server, int fd, uid_t *uid)
{
	struct ucred credentials;
	socklen_t length = sizeof(credentials);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) < 0)
		return false;
	*uid = credentials.uid;
	return credentials.uid == 0 || credentials.uid == server->daemon_uid;
}

static void read_request(struct control_server *server, uint32_t slot);

/* Every slot is taken: the client that has waited longest for its request
 * to arrive (a stalled or hostile one) gets "busy" and makes room; if none
 * is still reading, the oldest one that is not reading its answer (a
 * client that never reads would otherwise hold its slot for the whole
 * timeout) is closed. NULL if every client is waiting for the muxer. */
static struct control_client *evict_oldest(struct control_server *server)
{
	struct control_client *reader = NULL, *writer = NULL;

	for (uint32_t i = 0; i < CONTROL_MAX_CLIENTS; i++) {
		struct control_client *client = &server->clients[i];
		if (client->state == CONTROL_CLIENT_READING &&
		    (!reader || client->deadline_ns < reader->deadline_ns))
			reader = client;
		if (client->state == CONTROL_CLIENT_WRITING &&
		    (!writer || client->deadline_ns < writer->deadline_ns))
			writer = client;
	}
	if (!reader && !writer)
		return NULL;
	server->evicted++;
	log_ratelimited(&server->log_limit, LOG_LEVEL_INFO,
			"control socket: %u clients already; closing the one "
			"that has waited longest for its %s", CONTROL_MAX_CLIENTS,
			reader ? "request" : "answer to be read");
	if (reader) {
		send_busy(reader->fd);   /* a slow good client may try again */
		close_client(server, reader);
		return reader;
	}
	close_client(server, writer);   /* mid-answer: no "busy" frame fits */
	return writer;
}

void control_handle_listener(struct control_server *server)
{
	for (unsigned accepted = 0; accepted < CONTROL_MAX_CLIENTS; accepted++) {
		struct control_client *client = NULL;
		uint32_t slot;
		uid_t uid = (uid_t)-1;
		struct epoll_event event = { .events = EPOLLIN };
		int fd = accept4(server->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0)
			return;
		for (slot = 0; slot < CONTROL_MAX_CLIENTS; slot++) {
			if (server->clients[slot].state == CONTROL_CLIENT_FREE) {
				client = &server->clients[slot];
				break;
			}
		}
		if (!client) {
			client = evict_oldest(server);
			slot = client ? (uint32_t)(client - server->clients) : slot;
		}
		if (!client) {
			log_ratelimited(&server->log_limit, LOG_LEVEL_WARN,
					"control socket: %u clients already; turning one away",
					CONTROL_MAX_CLIENTS);
			server->busy++;
			refuse_busy(fd);
			continue;
		}
		client->fd = fd;
		client->generation = (client->generation + 1) & TAG_GENERATION_MASK;
		client->state = CONTROL_CLIENT_READING;
		client->request_length = 0;
		client->deadline_ns = monotonic_ns() + CONTROL_TIMEOUT_NS;
		event.data.u64 = tag_encode(CONTROL_SOURCE_CLIENT, client->generation, slot);
		if (epoll_ctl(server->epoll_fd, EPOLL_CTL_ADD, fd, &event) < 0) {
			close_client(server, client);
			continue;
		}
		set_timer(server, true);
		if (!peer_allowed(server, fd, &uid)) {
			log_ratelimited(&server->log_limit, LOG_LEVEL_WARN,
					"control socket: refused uid %d (only root and uid %u)",
					(int)uid, (unsigned)server->daemon_uid);
			respond_error(server, slot, "permission denied: only root and the "
				      "daemon's user may use the control socket");
			continue;
		}
		/* a client usually sent its request before we accepted it */
		read_request(server, slot);
	}
}

/* A complete request is in client->request: check it, ask the muxer. */
static void handle_request(struct control_server *server, uint32_t slot,
			   size_t length)
{
	struct control_client *client = &server->clients[slot];
	Vsockmux__Control__Request *request =
		vsockmux__control__request__unpack(NULL, length, client->request + 4);
	Vsockmux__Ipc__Envelope envelope = VSOCKMUX__IPC__ENVELOPE__INIT;
	Vsockmux__Ipc__StatsRequest stats = VSOCKMUX__IPC__STATS_REQUEST__INIT;
	char message[96];

	if (!request) {
		server->bad_requests++;
		respond_error(server, slot, "malformed request");
		return;
	}
	if (request->version != CONTROL_PROTOCOL_VERSION) {
		snprintf(message, sizeof(message),
			 "version mismatch: daemon speaks control protocol %u, client %u",
			 CONTROL_PROTOCOL_VERSION, request->version);
		vsockmux__control__request__free_unpacked(request, NULL);
		server->bad_requests++;
		respond_error(server, slot, message);
		return;
	}
	stats.request_id = request_id_of(slot, client);
	stats.include_connections = request->include_connections;
	vsockmux__control__request__free_unpacked(request, NULL);
	envelope.body_case = VSOCKMUX__IPC__ENVELOPE__BODY_STATS_REQUEST;
	envelope.stats_request = &stats;
	if (ipc_send(server->channel_fd, &envelope, -1) < 0) {
		respond_error(server, slot, "daemon busy, try again");
		return;
	}
	client->state = CONTROL_CLIENT_WAITING;
}

static void read_request(struct control_server *server, uint32_t slot)
{
	struct control_client *client = &server->clients[slot];
	for (;;) {
		size_t need = 4, length = 0;
		ssize_t got;
		if (client->request_length >= 4) {
			length = control_get_length(client->request);
			if (length > CONTROL_MAX_REQUEST) {
				server->bad_requests++;
				respond_error(server, slot, "request too large");
				return;
			}
			need = 4 + length;
		}
		if (client->request_length == need && need > 4) {
			handle_request(server, slot, length);
			return;
		}
		got = recv(client->fd, client->request + client->request_length,
			   need - client->request_length, MSG_DONTWAIT);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (got <= 0) {
			close_client(server, client);
			return;
		}
		client->request_length += (size_t)got;
	}
}

void control_handle_client(struct control_server *server, uint32_t slot,
			   uint32_t generation, uint32_t events)
{
	struct control_client *client;
	if (slot >= CONTROL_MAX_CLIENTS)
		return;
	client = &server->clients[slot];
	/* left over from the slot's previous client (freed and reused in
	 * this same batch of events) */
	if (client->generation != generation)
		return;
	switch (client->state) {
	case CONTROL_CLIENT_READING:
		read_request(server, slot);
		break;
	case CONTROL_CLIENT_WRITING:
		if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
			write_response(server, client);
		break;
	case CONTROL_CLIENT_WAITING:
		/* the client may have gone; we find out when we write */
		if (events & (EPOLLERR | EPOLLHUP))
			close_client(server, client);
		else
			epoll_ctl(server->epoll_fd, EPOLL_CTL_MOD, client->fd,
				  &(struct epoll_event){ .events = 0,
					.data.u64 = tag_encode(CONTROL_SOURCE_CLIENT,
							       client->generation, slot) });
		break;
	default:
		break;
	}
}

void control_handle_timer(struct control_server *server)
{
	uint64_t expirations, now = monotonic_ns();
	if (read(server->timer_fd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN)
		log_ratelimited(&server->log_limit, LOG_LEVEL_WARN,
				"control timer: %s", strerror(errno));
	for (uint32_t i = 0; i < CONTROL_MAX_CLIENTS; i++) {
		struct control_client *client = &server->clients[i];
		if (client->state != CONTROL_CLIENT_FREE && now >= client->deadline_ns) {
			log_ratelimited(&server->log_limit, LOG_LEVEL_INFO,
					"control client timed out; closing it");
			if (client->state == CONTROL_CLIENT_READING)
				server->timeouts++;
			close_client(server, client);
		}
	}
}

/* Any unknown field in message or in the messages it holds. */
static bool has_unknown_fields(const ProtobufCMessage *message)
{
	const ProtobufCMessageDescriptor *descriptor = message->descriptor;

	if (message->n_unknown_fields > 0)
		return true;
	for (unsigned i = 0; i < descriptor->n_fields; i++) {
		const ProtobufCFieldDescriptor *field = &descriptor->fields[i];
		const char *base = (const char *)message;

		if (field->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		/* a oneof member is there only when the case names it */
		if ((field->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
		    *(const uint32_t *)(base + field->quantifier_offset) != field->id)
			continue;
		if (field->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t count = *(const size_t *)(base + field->quantifier_offset);
			ProtobufCMessage *const *items =
				*(ProtobufCMessage *const *const *)(base + field->offset);
			for (size_t n = 0; n < count; n++) {
				if (items[n] && has_unknown_fields(items[n]))
					return true;
			}
		} else {
			const ProtobufCMessage *inner =
				*(const ProtobufCMessage *const *)(base + field->offset);
			if (inner && has_unknown_fields(inner))
				return true;
		}
	}
	return false;
}

bool control_handle_stats_reply(struct control_server *server,
				const Vsockmux__Ipc__StatsReply *reply)
{
	uint32_t slot = reply->request_id & 0xffu;
	struct control_client *client;
	Vsockmux__Control__Response response = VSOCKMUX__CONTROL__RESPONSE__INIT;
	Vsockmux__Control__Stats *stats;

	if (slot >= CONTROL_MAX_CLIENTS)
		return false;
	client = &server->clients[slot];
	if (client->state != CONTROL_CLIENT_WAITING ||
	    request_id_of(slot, client) != reply->request_id)
		return true; /* that client went away meanwhile */
	stats = vsockmux__control__stats__unpack(NULL, reply->stats.len, reply->stats.data);
	/* The muxer is the same build: a field we do not know is garbage,
	 * and protobuf-c would pass it on in a form some decoders refuse
	 * (found by fuzz_control_request: field number 0) */
	if (stats && has_unknown_fields(&stats->base)) {
		vsockmux__control__stats__free_unpacked(stats, NULL);
		stats = NULL;
	}
	if (!stats) {
		log_error("muxer sent undecodable stats");
		respond_error(server, slot, "internal error: bad stats from the muxer");
		return false;
	}
	stats->control_bad_requests = server->bad_requests;
	stats->control_timeouts = server->timeouts;
	stats->control_evicted = server->evicted;
	stats->control_busy = server->busy;
	response.stats = stats;
	respond(server, slot, &response);
	vsockmux__control__stats__free_unpacked(stats, NULL);
	return true;
}
