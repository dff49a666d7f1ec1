/*
 * listener.h - private helpers shared by broker/listener.c and
 * broker/broker.c (Unix socket addresses).
 */
#ifndef VSOCKMUX_BROKER_LISTENER_H
#define VSOCKMUX_BROKER_LISTENER_H

#include <sys/socket.h>
#include <sys/un.h>

/*
 * Fill *address with the filesystem path (NUL-terminated, non-empty) and
 * *length with the matching address length. Returns 0, or -ENAMETOOLONG if
 * the path does not fit sun_path, -EINVAL if it is empty.
 */
int unix_address_from_path(struct sockaddr_un *address, socklen_t *length,
			   const char *path);

#endif
