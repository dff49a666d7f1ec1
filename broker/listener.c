/*
 * listener.c - the broker's listening sockets: --socket (vhost-user) and
 * --uds-path (host clients).
 *
 * Owns: creating both listeners before the fork (so a bad path is one clear
 * error line and exit code 1), replacing stale socket files, and closing and
 * unlinking the listeners at the end.
 *
 * Never: unlinks anything that is not a socket, or a socket someone is still
 * listening on; never unlinks a path it did not bind itself.
 */
#include "broker.h"
#include "listener.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "vsockmux/log.h"

#define LISTEN_BACKLOG 128

int unix_address_from_path(struct sockaddr_un *address, socklen_t *length,
			   const char *path)
{
	size_t path_length = strlen(path);

	if (path_length == 0)
		return -EINVAL;
	if (path_length >= sizeof(address->sun_path))
		return -ENAMETOOLONG;
	memset(address, 0, sizeof(*address));
	address->sun_family = AF_UNIX;
	memcpy(address->sun_path, path, path_length + 1);
	*length = (socklen_t)(offsetof(struct sockaddr_un, sun_path) +
			      path_length + 1);
	return 0;
}

/*
 * If something exists at path: a socket nobody listens on (ECONNREFUSED) is
 * stale and removed; anything else is an error. Returns 0 when the path is
 * free to bind, -1 (logged) otherwise.
 */
static int clear_stale_socket(const char *what, const char *path,
			      const struct sockaddr_un *address,
			      socklen_t address_length)
{
	struct stat status;
	int probe_fd = -1;
	int result = -1;

	if (lstat(path, &status) < 0) {
		if (errno == ENOENT) {
			result = 0;
		} else {
			log_error("%s %s: cannot stat: %s", what, path,
				  strerror(errno));
		}
		goto out;
	}
	if (!S_ISSOCK(status.st_mode)) {
		log_error("%s %s: exists and is not a socket; refusing to "
			  "replace it", what, path);
		goto out;
	}

	/* Non-blocking, so a listener with a full backlog cannot hang us. */
	probe_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (probe_fd < 0) {
		log_error("%s %s: socket: %s", what, path, strerror(errno));
		goto out;
	}
	if (connect(probe_fd, (const struct sockaddr *)address,
		    address_length) == 0 || errno == EAGAIN) {
		log_error("%s %s: another daemon is already listening on %s",
			  what, path, path);
		goto out;
	}
	if (errno != ECONNREFUSED) {
		log_error("%s %s: cannot probe existing socket: %s", what, path,
			  strerror(errno));
		goto out;
	}
	if (unlink(path) < 0 && errno != ENOENT) {
		log_error("%s %s: cannot remove stale socket: %s", what, path,
			  strerror(errno));
		goto out;
	}
	log_info("%s %s: removed stale socket file", what, path);
	result = 0;
out:
	if (probe_fd >= 0)
		close(probe_fd);
	return result;
}

/*
 * Create, bind and listen on one path: mode 0660 (set by the umask around
 * bind, so there is no window), then owned by owner if it is given (the
 * unprivileged user the daemon will run as). Returns the fd or -1.
 */
static int open_listener(const char *what, const char *path,
			 const struct listener_owner *owner)
{
	mode_t saved_umask;
	struct sockaddr_un address;
	socklen_t address_length;
	bool bound = false;
	int listen_fd = -1;
	int result = -1;
	int error;

	if (path == NULL) {
		log_error("%s: no path given", what);
		goto out;
	}
	error = unix_address_from_path(&address, &address_length, path);
	if (error == -ENAMETOOLONG) {
		log_error("%s %s: path too long (%zu bytes, at most %zu)", what,
			  path, strlen(path), sizeof(address.sun_path) - 1);
		goto out;
	}
	if (error < 0) {
		log_error("%s: empty path", what);
		goto out;
	}
	if (clear_stale_socket(what, path, &address, address_length) < 0)
		goto out;

	listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (listen_fd < 0) {
		log_error("%s %s: socket: %s", what, path, strerror(errno));
		goto out;
	}
	saved_umask = umask(0117);
	error = bind(listen_fd, (const struct sockaddr *)&address, address_length);
	umask(saved_umask);
	if (error < 0) {
		log_error("%s %s: bind: %s", what, path, strerror(errno));
		goto out;
	}
	bound = true;
	if (owner && chown(path, owner->uid, owner->gid) < 0) {
		log_error("%s %s: chown to %u:%u: %s", what, path,
			  (unsigned)owner->uid, (unsigned)owner->gid, strerror(errno));
		goto out;
	}
	if (listen(listen_fd, LISTEN_BACKLOG) < 0) {
		log_error("%s %s: listen: %s", what, path, strerror(errno));
		goto out;
	}
	result = listen_fd;
	listen_fd = -1;
out:
	if (listen_fd >= 0) {
		close(listen_fd);
		if (bound)
			unlink(path);
	}
	return result;
}

int broker_open_listeners(const struct vsockmuxd_options *options,
			  const struct listener_owner *owner,
			  struct broker_listeners *listeners)
{
	int result = -1;

	listeners->vhost_user_fd = -1;
	listeners->host_fd = -1;
	listeners->control_fd = -1;

	if (options->socket_path != NULL && options->uds_path != NULL &&
	    strcmp(options->socket_path, options->uds_path) == 0) {
		log_error("--socket and --uds-path must be different paths "
			  "(both are %s)", options->socket_path);
		goto out;
	}
	listeners->vhost_user_fd = open_listener("vhost-user socket",
						 options->socket_path, owner);
	if (listeners->vhost_user_fd < 0)
		goto out;
	listeners->host_fd = open_listener("host socket", options->uds_path, owner);
	if (listeners->host_fd < 0)
		goto out;
	listeners->control_fd = open_listener("control socket",
					      options->control_socket_path, owner);
	if (listeners->control_fd < 0)
		goto out;
	result = 0;
out:
	if (result < 0)
		broker_close_listeners(options, listeners);
	return result;
}

/* After the privilege drop the directory is often not ours to change; the
 * file is then replaced as stale at the next start. */
static void unlink_listener(const char *what, const char *path)
{
	if (unlink(path) == 0 || errno == ENOENT)
		return;
	if (errno == EACCES || errno == EPERM)
		log_debug("%s %s: left in place (%s); the next start replaces it",
			  what, path, strerror(errno));
	else
		log_warn("%s %s: unlink: %s", what, path, strerror(errno));
}

void broker_close_listeners(const struct vsockmuxd_options *options,
			    struct broker_listeners *listeners)
{
	/* Unlink only what we bound: a -1 fd means the path is not ours, and
	 * activated sockets belong to the service manager. */
	const struct {
		int *fd;
		const char *what, *path;
	} all[] = {
		{ &listeners->vhost_user_fd, "vhost-user socket", options->socket_path },
		{ &listeners->host_fd, "host socket", options->uds_path },
		{ &listeners->control_fd, "control socket", options->control_socket_path },
	};

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		if (*all[i].fd < 0)
			continue;
		close(*all[i].fd);
		if (!listeners->activated)
			unlink_listener(all[i].what, all[i].path);
		*all[i].fd = -1;
	}
}
