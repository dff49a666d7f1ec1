/*
 * main.c - vsockmuxd's entry: parse the command line, open the listeners,
 * split into the broker (parent) and the muxer (child).
 *
 * Why listeners before the fork: a bad path or a live daemon on the
 * socket must reach the user as one line and exit code 1, not as a muxer
 * that starts and dies. Why the parent is the broker: it owns the sockets
 * and the paths on disk, and whoever started us (systemd) supervises it;
 * the muxer dies with it (PR_SET_PDEATHSIG) and it exits when the muxer
 * dies (SIGCHLD, channel EOF).
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
#include "vsockmux/log.h"
#include "vsockmux/options.h"

static int run_muxer(const struct vsockmuxd_options *options,
		     struct broker_listeners *listeners, int channel_fd,
		     pid_t broker_pid)
{
	log_set_role("muxer");
	close(listeners->vhost_user_fd);
	close(listeners->host_fd);
	prctl(PR_SET_NAME, "vsockmux-muxer", 0, 0, 0);
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) {
		log_error("PR_SET_PDEATHSIG: %s", strerror(errno));
		return 1;
	}
	if (getppid() != broker_pid) {
		log_error("broker exited during start-up");
		return 1;
	}
	return muxer_run(options, channel_fd, NULL, NULL);
}

int main(int argc, char **argv)
{
	struct vsockmuxd_options options;
	struct broker_listeners listeners = { .vhost_user_fd = -1, .host_fd = -1 };
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
	log_set_role("broker");
	signal(SIGPIPE, SIG_IGN);

	if (broker_open_listeners(&options, &listeners) < 0)
		return 1;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, channel) < 0) {
		log_error("socketpair: %s", strerror(errno));
		goto out;
	}
	muxer_pid = fork();
	if (muxer_pid < 0) {
		log_error("fork: %s", strerror(errno));
		goto out;
	}
	if (muxer_pid == 0) {
		close(channel[0]);
		exit(run_muxer(&options, &listeners, channel[1], broker_pid));
	}
	close(channel[1]);
	channel[1] = -1;
	exit_code = broker_run(&options, &listeners, channel[0], muxer_pid, NULL, NULL);
	channel[0] = -1; /* broker_run closed it */
	kill(muxer_pid, SIGTERM);
	waitpid(muxer_pid, NULL, 0);
out:
	if (channel[0] >= 0)
		close(channel[0]);
	if (channel[1] >= 0)
		close(channel[1]);
	broker_close_listeners(&options, &listeners);
	return exit_code;
}
