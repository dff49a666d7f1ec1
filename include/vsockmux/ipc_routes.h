/*
 * ipc_routes.h - one dispatcher for the broker <-> muxer channel, used by
 * both processes: each keeps a table of the messages it accepts (body,
 * whether an fd must, may or must not come with it, the handler), and a
 * message the table does not allow never reaches a handler.
 *
 * Why a table: what a peer may send is then one list per direction, read
 * in one place, as in privilege-separated daemons' monitors; the checks
 * are the same code on both sides.
 *
 * Owns: the route lookup and the fd rules. Never: closes or keeps the
 * fd (the caller decides what a refused message's fd becomes).
 */
#ifndef VSOCKMUX_IPC_ROUTES_H
#define VSOCKMUX_IPC_ROUTES_H

#include <stddef.h>

#include "vsockmux/ipc.h"

enum ipc_fd_rule {
	IPC_FD_FORBIDDEN,
	IPC_FD_REQUIRED,
	IPC_FD_IF_SUCCESS,   /* ConnectReply: an fd exactly when error == 0 */
};

/* context: the process's state; fd: attached fd or -1 (the handler owns
 * it). Returns 0 to go on, anything else ends the receiving loop with
 * that value. */
typedef int ipc_route_handler(void *context, const IpcEnvelope *envelope, int fd);

struct ipc_route {
	int body_case;
	enum ipc_fd_rule fd_rule;
	ipc_route_handler *handle;
};

enum ipc_route_status {
	IPC_ROUTE_HANDLED,       /* *result is the handler's return value */
	IPC_ROUTE_NOT_ACCEPTED,  /* no route for this body */
	IPC_ROUTE_WRONG_FD,      /* an fd where none belongs, or none where one must */
};

/* The route for envelope's body, or NULL. */
const struct ipc_route *ipc_route_find(const struct ipc_route *routes, size_t count,
				       int body_case);
/* Check envelope and fd against the table and run the handler. */
enum ipc_route_status ipc_route_dispatch(const struct ipc_route *routes, size_t count,
					 void *context, const IpcEnvelope *envelope,
					 int fd, int *result);

#endif
