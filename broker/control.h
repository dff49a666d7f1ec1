/*
 * control.h - the control socket (default "<uds-path>.ctl"): vsockctl's
 * way in. Served by the broker; the numbers come from the muxer.
 *
 * Owns: the accepted control clients (a fixed table), their buffers and
 * deadlines, and relaying one stats request per client to the muxer.
 * Never: lets a client block the broker or the data path: every socket is
 * non-blocking, requests are at most CONTROL_MAX_REQUEST bytes, clients
 * are capped at CONTROL_MAX_CLIENTS and dropped after CONTROL_TIMEOUT_NS;
 * only root and the daemon's own uid (SO_PEERCRED) get answers. Clients
 * that stall mid-request cannot lock good ones out: a request already
 * there is read at accept, and with every slot taken the oldest client
 * still sending its request (else the oldest not reading its answer)
 * makes room for the new one.
 */
#ifndef VSOCKMUX_BROKER_CONTROL_H
#define VSOCKMUX_BROKER_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ipc.pb-c.h"
#include "vsockmux/control_wire.h"
#include "vsockmux/log.h"
#include "vsockmux/tag.h"

#define CONTROL_MAX_CLIENTS 32u
#define CONTROL_TIMEOUT_NS (5ull * 1000000000ull)

enum control_client_state {
	CONTROL_CLIENT_FREE,
	CONTROL_CLIENT_READING,    /* waiting for the request */
	CONTROL_CLIENT_WAITING,    /* StatsRequest sent to the muxer */
	CONTROL_CLIENT_WRITING,    /* response being written */
};

struct control_client {
	enum control_client_state state;
	int fd;
	uint32_t generation;
	uint64_t deadline_ns;
	uint8_t request[4 + CONTROL_MAX_REQUEST];
	size_t request_length;
	uint8_t *response;         /* length prefix + packed Response */
	size_t response_length, response_sent;
};

struct control_server {
	int listen_fd;
	int epoll_fd;
	int channel_fd;            /* to the muxer */
	int timer_fd;              /* ticks while clients exist */
	bool timer_armed;
	uid_t daemon_uid;
	struct control_client clients[CONTROL_MAX_CLIENTS];
	struct log_ratelimit log_limit;
	/* hostile or broken clients, reported in Stats (control_*) */
	uint64_t bad_requests, timeouts, evicted, busy;
};

/* epoll sources the broker routes here (the tag kind, vsockmux/tag.h;
 * a control client's tag carries its slot and generation). */
#define CONTROL_SOURCE_LISTENER 100u
#define CONTROL_SOURCE_CLIENT 101u
#define CONTROL_SOURCE_TIMER 102u


/* Register the listener and create the timer. Returns 0 or -1 (logged). */
int control_server_init(struct control_server *server, int listen_fd,
			int epoll_fd, int channel_fd);
void control_server_destroy(struct control_server *server);
void control_handle_listener(struct control_server *server);
void control_handle_client(struct control_server *server, uint32_t slot,
			   uint32_t generation, uint32_t events);
void control_handle_timer(struct control_server *server);
/* The muxer's answer; returns false if the reply is malformed (logged). */
bool control_handle_stats_reply(struct control_server *server,
				const Vsockmux__Ipc__StatsReply *reply);

#endif
