/*
 * control_client.h - one request/response exchange on the vsockmuxd control
 * socket (proto/control.proto): connect, send a Request, read a Response.
 *
 * Owns: the socket for the duration of one exchange.
 * Never: prints, or waits longer than the caller's timeout.
 */
#ifndef VSOCKCTL_CONTROL_CLIENT_H
#define VSOCKCTL_CONTROL_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include "control.pb-c.h"
#include "vsockmux/control_wire.h"

#define CONTROL_TIMEOUT_MS 5000
#define CONTROL_DEFAULT_SOCKET "/run/vsockmux/vsock.sock.ctl"
#define CONTROL_SOCKET_ENV "VSOCKMUX_CONTROL_SOCKET"

typedef Vsockmux__Control__Response ControlResponse;
typedef Vsockmux__Control__Stats ControlStats;
typedef Vsockmux__Control__Connection ControlConnection;

enum control_status {
	CONTROL_OK,		/* *response_out set; free with control_response_free */
	CONTROL_FAILED,		/* unreachable, refused, malformed: see error text */
	CONTROL_CANCELLED,	/* cancel_fd became readable first */
	CONTROL_BAD_PATH,	/* the path cannot be a socket address (usage) */
};

/*
 * Fetches stats. The whole exchange is bounded by timeout_ms. cancel_fd (or
 * -1) is polled alongside the socket. On failure `error` gets one line
 * without the "vsockctl: " prefix, naming the socket path where it helps.
 * A response with another version, a non-empty error or no stats is a
 * failure.
 */
enum control_status control_fetch(const char *socket_path,
				  bool include_connections, int timeout_ms,
				  int cancel_fd, ControlResponse **response_out,
				  char *error, size_t error_size);

void control_response_free(ControlResponse *response);

#endif
