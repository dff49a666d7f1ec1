/*
 * ipc_routes.c - the channel's route tables (ipc_routes.h).
 */
#include "vsockmux/ipc_routes.h"

const struct ipc_route *ipc_route_find(const struct ipc_route *routes, size_t count,
				       int body_case)
{
	for (size_t i = 0; i < count; i++) {
		if (routes[i].body_case == body_case)
			return &routes[i];
	}
	return NULL;
}

static int fd_allowed(const struct ipc_route *route, const IpcEnvelope *envelope, int fd)
{
	switch (route->fd_rule) {
	case IPC_FD_FORBIDDEN:
		return fd < 0;
	case IPC_FD_REQUIRED:
		return fd >= 0;
	case IPC_FD_IF_SUCCESS:
		return envelope->body_case == VSOCKMUX__IPC__ENVELOPE__BODY_CONNECT_REPLY &&
		       (envelope->connect_reply->error == 0) == (fd >= 0);
	}
	return 0;
}

enum ipc_route_status ipc_route_dispatch(const struct ipc_route *routes, size_t count,
					 void *context, const IpcEnvelope *envelope,
					 int fd, int *result)
{
	const struct ipc_route *route = ipc_route_find(routes, count, envelope->body_case);

	if (!route)
		return IPC_ROUTE_NOT_ACCEPTED;
	if (!fd_allowed(route, envelope, fd))
		return IPC_ROUTE_WRONG_FD;
	*result = route->handle(context, envelope, fd);
	return IPC_ROUTE_HANDLED;
}
