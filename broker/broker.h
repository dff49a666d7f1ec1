/*
 * broker.h - the unprivileged process that owns every listening socket and
 * does every accept4/connect, handing the resulting fds to the muxer.
 *
 * Never: reads guest memory or vsock packets; never trusts the muxer's
 * requests beyond what the dispatch table allows (a port is a u32, a
 * connect goes only to "<uds-path>_<port>").
 */
#ifndef VSOCKMUX_BROKER_H
#define VSOCKMUX_BROKER_H

#include <stdbool.h>
#include <sys/types.h>

#include "vsockmux/options.h"

/* Who owns the listening socket files (mode 0660). */
struct listener_owner {
	uid_t uid;
	gid_t gid;
};

struct broker_listeners {
	int vhost_user_fd;   /* listening on options->socket_path */
	int host_fd;         /* listening on options->uds_path */
	int control_fd;      /* listening on options->control_socket_path */
	bool activated;      /* handed over by the service manager (socket
				activation): its files, never unlinked here */
};

/*
 * Bind and listen on --socket and --uds-path (before the fork, so errors
 * reach the user as one clear line and exit code 1). A stale socket file
 * (connect() gets ECONNREFUSED) is replaced; a live one is left alone and
 * is an error. Files are created mode 0660 and, when owner is not NULL,
 * chowned to it. Returns 0 or -1 (logged).
 */
int broker_open_listeners(const struct vsockmuxd_options *options,
			  const struct listener_owner *owner,
			  struct broker_listeners *listeners);

/* Close the listeners; unlink their paths unless they were activated. */
void broker_close_listeners(const struct vsockmuxd_options *options,
			    struct broker_listeners *listeners);

/*
 * Run the broker until the muxer goes away (channel EOF, or SIGCHLD for
 * muxer_pid) or SIGTERM/SIGINT. lock_down (may be NULL) runs once the
 * loop's fds exist, before the first event: it applies the sandbox; a
 * non-zero return stops the broker. Returns the process exit code.
 */
int broker_run(const struct vsockmuxd_options *options,
	       struct broker_listeners *listeners, int channel_fd,
	       pid_t muxer_pid, int (*lock_down)(void *opaque), void *opaque);

#endif
