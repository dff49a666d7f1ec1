/*
 * main.c - vsockmuxd's entry: parse the command line, decide who we will
 * run as, open the listeners, split into the broker (parent) and the
 * muxer (child), and lock each one down before its loop starts.
 *
 * Why listeners before the fork: a bad path or a live daemon on the
 * socket must reach the user as one line and exit code 1, not as a muxer
 * that starts and dies. Why the parent is the broker: it owns the sockets
 * and the paths on disk, and whoever started us (systemd) supervises it;
 * the muxer dies with it (PR_SET_PDEATHSIG: SIGHUP, whose handler logs
 * why and exits) and it exits when the muxer dies (SIGCHLD, channel EOF).
 *
 * Lock-down order, per process:
 *   muxer:  namespaces + empty root (if privileged), resource limits,
 *           user + capabilities + no-new-privs + death signal, then (once
 *           its fds exist) the seccomp filter;
 *   broker: resource limits, user + capabilities + no-new-privs, then
 *           (once its fds exist) the seccomp filter.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "broker.h"
#include "muxer.h"
#include "privileges.h"
#include "sandbox.h"
#include "service_manager.h"
#include "vsockmux/ipc.h"
#include "vsockmux/log.h"
#include "vsockmux/options.h"

/* What each process's lock-down hook needs. */
struct lock_down_context {
	const struct vsockmuxd_options *options;
	enum sandbox_role role;
	pid_t peer;          /* the other process ($PEER in a policy) */
};

/*
 * Leave the process. Under the sandbox, exit handlers must not run:
 * LeakSanitizer's exit-time scan needs syscalls (and, in the muxer, a
 * /proc) the filters deny. --no-sandbox runs keep them, so a system test
 * can still look for leaks.
 */
static void __attribute__((noreturn))
leave(const struct vsockmuxd_options *options, int exit_code)
{
	fflush(stderr);
	if (options->no_sandbox)
		exit(exit_code);
	_exit(exit_code);
}

/* Runs right before the process's event loop: the seccomp filter. */
static int apply_seccomp(void *opaque)
{
	const struct lock_down_context *context = opaque;
	if (context->options->no_sandbox) {
		log_warn("*** --no-sandbox: the %s runs WITHOUT a seccomp filter; "
			 "development only ***", sandbox_role_name(context->role));
		return 0;
	}
	if (sandbox_apply_with_peer(context->role, context->options->sandbox_debug
						    ? SANDBOX_DEBUG : SANDBOX_ENFORCE,
				    context->peer) < 0)
		return -1;
	return 0;
}

/*
 * The muxer's parent-death signal. SIGHUP rather than SIGKILL so that the
 * muxer's last words say why it went (the broker cannot: it is the one
 * that died); only async-signal-safe calls, and nothing the seccomp filter
 * denies (write to stderr, exit_group).
 */
static pid_t muxer_parent_pid;    /* for the signal handler alone */

static void write_text(const char *text)
{
	size_t length = 0;
	ssize_t ignored;

	while (text[length])
		length++;
	ignored = write(STDERR_FILENO, text, length);
	(void)ignored;
}

static void on_broker_death(int signal_number, siginfo_t *info, void *context)
{
	(void)signal_number;
	(void)context;
	if (info->si_pid == muxer_parent_pid) {
		write_text("vsockmuxd[muxer] error: the broker process died "
			   "(parent-death signal); the muxer exits with it\n");
	} else {
		/* someone else's SIGHUP: it ended the muxer before too, but
		 * say who sent it (a handler may not return under seccomp) */
		char digits[16];
		unsigned value = (unsigned)info->si_pid;
		size_t at = sizeof(digits) - 1;
		digits[at] = '\0';
		do {
			digits[--at] = (char)('0' + value % 10);
			value /= 10;
		} while (value > 0 && at > 0);
		write_text("vsockmuxd[muxer] error: SIGHUP from pid ");
		write_text(digits + at);
		write_text("; exiting\n");
	}
	_exit(1);
}

static int run_muxer(const struct vsockmuxd_options *options,
		     const struct privilege_plan *plan,
		     struct broker_listeners *listeners, int channel_fd,
		     pid_t broker_pid)
{
	struct lock_down_context context = { options, SANDBOX_ROLE_MUXER, broker_pid };

	log_set_role("muxer");
	close(listeners->vhost_user_fd);
	close(listeners->host_fd);
	close(listeners->control_fd);
	prctl(PR_SET_NAME, "vsockmux-muxer", 0, 0, 0);
	/* while /proc and fork still work (sanitizer builds only) */
	if (!options->no_sandbox)
		sandbox_prepare_sanitizers();
	if (!options->no_sandbox && privileges_isolate_muxer() < 0)
		return 1;
	{
		struct sigaction action = { .sa_sigaction = on_broker_death,
					    .sa_flags = SA_SIGINFO };
		sigset_t hangup;
		sigemptyset(&action.sa_mask);
		sigemptyset(&hangup);
		sigaddset(&hangup, SIGHUP);
		muxer_parent_pid = broker_pid;
		/* a mask inherited from whoever started us must not keep the
		 * death signal pending for ever */
		if (sigaction(SIGHUP, &action, NULL) != 0 ||
		    sigprocmask(SIG_UNBLOCK, &hangup, NULL) != 0) {
			log_error("SIGHUP handler: %s", strerror(errno));
			return 1;
		}
	}
	if (privileges_limit_resources(true, options->max_connections) < 0 ||
	    privileges_drop(plan, SIGHUP, broker_pid) < 0)
		return 1;
	return muxer_run(options, channel_fd, apply_seccomp, &context);
}

static int run_broker(const struct vsockmuxd_options *options,
		      const struct privilege_plan *plan,
		      struct broker_listeners *listeners, int channel_fd,
		      pid_t muxer_pid)
{
	struct lock_down_context context = { options, SANDBOX_ROLE_BROKER, muxer_pid };

	if (!options->no_sandbox)
		sandbox_prepare_sanitizers();
	if (privileges_limit_resources(false, options->max_connections) < 0 ||
	    privileges_drop(plan, 0, 0) < 0) {
		close(channel_fd);
		return 1;
	}
	return broker_run(options, listeners, channel_fd, muxer_pid, apply_seccomp,
			  &context);
}

int main(int argc, char **argv)
{
	struct vsockmuxd_options options;
	struct privilege_plan plan;
	struct listener_owner owner;
	struct broker_listeners listeners = { .vhost_user_fd = -1, .host_fd = -1,
					      .control_fd = -1 };
	int channel[2] = { -1, -1 };
	int exit_code = 1;
	pid_t broker_pid = getpid();
	pid_t muxer_pid;

	switch (options_parse(argc, argv, &options)) {
	case OPTIONS_OK:
		break;
	case OPTIONS_EXIT_SUCCESS:
		return 0;
	case OPTIONS_USAGE_ERROR:
		return 2;
	}
	log_set_level(options.log_level);
	log_set_format(options.log_format);
	log_set_role("broker");
	signal(SIGPIPE, SIG_IGN);
	log_nonblocking_output();
	if (options.no_sandbox)
		log_warn("*** --no-sandbox: seccomp filters and the muxer's namespaces "
			 "are OFF; development only ***");

	if (privileges_plan(options.user, &plan) < 0)
		return 1;
	owner.uid = plan.uid;
	owner.gid = plan.gid;
	switch (service_manager_listeners(&listeners)) {
	case 0:
		if (broker_open_listeners(&options, plan.change_user ? &owner : NULL,
					  &listeners) < 0)
			return 1;
		break;
	case 1:
		break;
	default:
		return 1;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, channel) < 0) {
		log_error("socketpair: %s", strerror(errno));
		goto out;
	}
	/* room for a StatsReply (IPC_MAX_DATAGRAM_SIZE) and a backlog of
	 * small messages; the kernel caps it at twice net.core.wmem_max */
	for (int end = 0; end < 2; end++) {
		int size = 4 * IPC_MAX_DATAGRAM_SIZE;
		if (setsockopt(channel[end], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size)) < 0)
			log_warn("channel SO_SNDBUF: %s", strerror(errno));
	}
	muxer_pid = fork();
	if (muxer_pid < 0) {
		log_error("fork: %s", strerror(errno));
		goto out;
	}
	if (muxer_pid == 0) {
		close(channel[0]);
		leave(&options, run_muxer(&options, &plan, &listeners, channel[1],
					  broker_pid));
	}
	close(channel[1]);
	channel[1] = -1;
	exit_code = run_broker(&options, &plan, &listeners, channel[0], muxer_pid);
	channel[0] = -1; /* closed by run_broker / broker_run */
	kill(muxer_pid, SIGTERM);
	waitpid(muxer_pid, NULL, 0);
out:
	if (channel[0] >= 0)
		close(channel[0]);
	if (channel[1] >= 0)
		close(channel[1]);
	broker_close_listeners(&options, &listeners);
	leave(&options, exit_code);
}
