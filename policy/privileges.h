/*
 * privileges.h - dropping what each process does not need, before its
 * seccomp filter closes the door: the uid/gid, every capability (bounding
 * set included), dumpability; for the muxer also its own mount, network
 * and IPC namespaces with an empty root, and resource limits.
 *
 * Never: leaves a process half-dropped. Each function either completes or
 * returns an error the caller treats as fatal; the one soft case (the
 * muxer's namespaces when not started as root) is reported as skipped.
 */
#ifndef VSOCKMUX_PRIVILEGES_H
#define VSOCKMUX_PRIVILEGES_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Resolved once in the parent, before the fork. */
struct privilege_plan {
	bool change_user;      /* started as root: switch to uid/gid */
	uid_t uid;
	gid_t gid;
	char user_name[64];
};

/* Default unprivileged user: this one if it exists, else "nobody". */
#define PRIVILEGES_DEFAULT_USER "vsockmux"

/*
 * Decide who the processes will run as. user_name NULL means the default.
 * Started as root: look the user up (error if an explicit --user does not
 * exist). Started unprivileged: stay who we are (change_user false).
 * Returns 0 or -1 (logged).
 */
int privileges_plan(const char *user_name, struct privilege_plan *plan);

/*
 * Muxer only, before privileges_drop: new mount, network and IPC
 * namespaces and an empty, read-only root (tmpfs), then chdir("/").
 * Returns 0 when done, 1 when skipped because we lack the privilege (one
 * log line says so), or -1 on a real failure (logged).
 */
int privileges_isolate_muxer(void);

/*
 * Switch user (setgroups, setresgid, setresuid) if the plan says so,
 * clear every capability (effective, permitted, inheritable, and the
 * bounding set while we still may), set PR_SET_DUMPABLE 0 and
 * PR_SET_NO_NEW_PRIVS, then PR_SET_PDEATHSIG(death_signal) if it is
 * non-zero (after the uid change, which clears it) and check the parent
 * is still parent_pid. Returns 0 or -1 (logged).
 */
int privileges_drop(const struct privilege_plan *plan, int death_signal,
		    pid_t parent_pid);

/* File descriptors beyond one per connection: listeners, the channel,
 * epoll, timers, vhost-user eventfds and memory fds, stdio. */
#define PRIVILEGES_NOFILE_RESERVE 64u

/*
 * Resource limits: RLIMIT_NOFILE sized for max_connections (each needs one
 * fd, plus a fixed reserve); for the muxer also RLIMIT_NPROC 0 and
 * RLIMIT_FSIZE 0. Returns 0 or -1 (logged).
 */
int privileges_limit_resources(bool muxer, uint32_t max_connections);

#endif
