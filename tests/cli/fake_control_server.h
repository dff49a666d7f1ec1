/*
 * fake_control_server.h - a stand-in for vsockmuxd's control socket: a
 * thread that accepts on a temp AF_UNIX socket and answers each Request with
 * a canned Response (or a chosen misbehaviour), for the vsockctl tests.
 *
 * Owns: its temp directory, listening socket and thread.
 * Never: blocks without a bound (poll and socket timeouts, 20 s).
 */
#ifndef FAKE_CONTROL_SERVER_H
#define FAKE_CONTROL_SERVER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "control.pb-c.h"

enum fake_mode {
	FAKE_ANSWER,		/* version 1 + the canned stats */
	FAKE_WRONG_VERSION,	/* version 2, no stats */
	FAKE_ERROR,		/* version 1 + error_text */
	FAKE_CLOSE,		/* read the request, close without a word */
	FAKE_OVERSIZED,		/* a length header of 4 MiB + 1 */
	FAKE_TRUNCATED,		/* length 100, then 10 bytes and close */
	FAKE_GARBAGE,		/* a well-framed body that does not unpack */
};

struct fake_server {
	char directory[64];
	char socket_path[100];	/* fits sun_path */
	int listen_fd;
	int stop_pipe[2];
	pthread_t thread;
	enum fake_mode mode;
	const char *error_text;
	/* 0: answer until stopped; N: after N answers unlink and stop listening */
	unsigned answer_limit;
	/* Recorded by the thread; read them after fake_server_stop. */
	unsigned requests;
	bool last_include_connections;
	uint32_t last_version;
	bool thread_failed;
};

/* Starts listening before returning, so clients may connect at once. */
int fake_server_start(struct fake_server *server, enum fake_mode mode,
		      unsigned answer_limit);
void fake_server_stop(struct fake_server *server);

/*
 * The canned stats for answer number `sample` (0-based): every counter has a
 * distinct known value; from one sample to the next uptime grows 1 s,
 * bytes_to_host 2 MiB and bytes_to_guest 512 KiB.
 */
#define FAKE_UPTIME_MS 7503000u			/* 2h05m03s */
#define FAKE_BYTES_TO_HOST 1572864u		/* 1.5 MiB */
#define FAKE_BYTES_TO_GUEST 3221225472ull	/* 3.0 GiB */
#define FAKE_ODD_DROP_REASON "odd\"reason\\with\nnewline"

#endif
