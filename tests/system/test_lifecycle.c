/*
 * test_lifecycle.c - the daemon as an operator meets it: command-line
 * errors, socket files left by a dead daemon, a live daemon's sockets,
 * process names, and --max-connections. Each test starts the real binary.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sys_harness.h"

struct run_result {
	int status;
	char output[4096];
};

/* Run vsockmuxd with argv (NULL-ended, without argv[0]); collect its
 * stderr+stdout until it exits (bounded by timeout_ms). */
static void run_daemon_once(struct sys_harness *h, const char *const *args,
			    int timeout_ms, struct run_result *result)
{
	const char *exe = getenv("VSOCKMUXD");
	const char *argv[16] = { exe };
	uint64_t end = sys_wait_end(h, timeout_ms);
	size_t used = 0, argc = 1;
	int pipefd[2];
	pid_t pid;

	CHECK(exe != NULL);
	for (size_t i = 0; args[i] && argc < 15; i++)
		argv[argc++] = args[i];
	CHECK(pipe2(pipefd, O_CLOEXEC) == 0);
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		dup2(pipefd[1], STDERR_FILENO);
		dup2(pipefd[1], STDOUT_FILENO);
		execv(exe, (char *const *)argv);
		_exit(127);
	}
	close(pipefd[1]);
	for (;;) {
		struct pollfd pfd = { .fd = pipefd[0], .events = POLLIN };
		ssize_t got;
		int ready = poll(&pfd, 1, sys_ms_until(end));
		CHECKF(ready > 0, "vsockmuxd %s did not exit in time", args[0]);
		got = read(pipefd[0], result->output + used,
			   sizeof(result->output) - 1 - used);
		if (got <= 0)
			break;
		used += (size_t)got;
		CHECK(used < sizeof(result->output) - 1);
	}
	result->output[used] = '\0';
	close(pipefd[0]);
	CHECK(waitpid(pid, &result->status, 0) == pid);
}

static int count_lines(const char *text)
{
	int lines = 0;
	for (; *text; text++)
		lines += *text == '\n';
	return lines;
}

static void test_cli_usage_errors(struct sys_harness *h)
{
	static const char *const bad[][8] = {
		{ "--socket", "a", "--uds-path", "b", NULL },
		{ "--guest-cid", "2", "--socket", "a", "--uds-path", "b", NULL },
		{ "--guest-cid", "3", "--socket", "a", NULL },
		{ "--guest-cid", "3", "--socket", "a", "--uds-path", "b", "--bogus", NULL },
		{ "--guest-cid", "3", "--socket", "a", "--uds-path", "b", "--queue-size", NULL },
	};
	static const char *const help[] = { "--help", NULL };
	static const char *const version[] = { "--version", NULL };
	struct run_result result;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		run_daemon_once(h, bad[i], 5000, &result);
		CHECKF(WIFEXITED(result.status) && WEXITSTATUS(result.status) == 2,
		       "bad command line %zu: status %#x, want exit code 2", i, result.status);
		CHECKF(count_lines(result.output) == 1 && strstr(result.output, "vsockmuxd:"),
		       "bad command line %zu: want one clear line, got: %s", i, result.output);
		printf("usage error %zu: %s", i, result.output);
	}
	run_daemon_once(h, help, 5000, &result);
	CHECK(WIFEXITED(result.status) && WEXITSTATUS(result.status) == 0);
	CHECK(strstr(result.output, "--guest-cid") && strstr(result.output, "--uds-path"));
	run_daemon_once(h, version, 5000, &result);
	CHECK(WIFEXITED(result.status) && WEXITSTATUS(result.status) == 0);
	CHECK(strncmp(result.output, "vsockmuxd ", 10) == 0);
}

/* A socket file nobody listens on, as a killed daemon leaves behind. */
static void make_stale_socket(const char *path)
{
	struct sockaddr_un address = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(fd >= 0);
	snprintf(address.sun_path, sizeof(address.sun_path), "%s", path);
	CHECK(bind(fd, (struct sockaddr *)&address, sizeof(address)) == 0);
	close(fd);
	CHECK(access(path, F_OK) == 0);
}

static void test_stale_sockets_replaced(struct sys_harness *h)
{
	struct vguest_sock *g;
	struct host_conn *c;

	make_stale_socket(h->vhost_path);
	make_stale_socket(h->uds_path);
	sys_setup(h);   /* fails unless the daemon gets ready */
	(void)sys_open_to_guest(h, 52, &c, &g);
	host_write_str(c, "ping\n");
	{
		char buffer[8];
		sys_guest_read_exact(h, g, buffer, 5, 3000);
		CHECK(memcmp(buffer, "ping\n", 5) == 0);
	}
}

static void test_live_socket_not_stolen(struct sys_harness *h)
{
	const char *args[] = { "--guest-cid", "4", "--socket", h->vhost_path,
			       "--uds-path", NULL, NULL };
	char other_uds[128];
	struct run_result result;
	struct vguest_sock *g;
	struct host_conn *c;

	sys_setup(h);
	snprintf(other_uds, sizeof(other_uds), "%s.other", h->uds_path);
	args[5] = other_uds;
	run_daemon_once(h, args, 5000, &result);
	CHECKF(WIFEXITED(result.status) && WEXITSTATUS(result.status) == 1,
	       "second daemon on a live socket: status %#x, want exit code 1", result.status);
	CHECKF(strstr(result.output, "already listening"), "unclear message: %s",
	       result.output);
	printf("second daemon: %s", result.output);
	CHECKF(access(other_uds, F_OK) != 0, "the refused daemon left %s behind", other_uds);
	/* the first daemon still serves */
	(void)sys_open_to_guest(h, 52, &c, &g);
}

static void read_comm(pid_t pid, char *name, size_t size)
{
	char path[64];
	FILE *file;
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	file = fopen(path, "r");
	CHECKF(file && fgets(name, (int)size, file), "cannot read %s", path);
	fclose(file);
	name[strcspn(name, "\n")] = '\0';
}

static void test_process_names(struct sys_harness *h)
{
	char parent[32], child[32];
	pid_t child_pid;

	sys_setup(h);
	child_pid = sys_daemon_child_pid(h);
	CHECK(child_pid > 0);
	read_comm(h->daemon_pid, parent, sizeof(parent));
	read_comm(child_pid, child, sizeof(child));
	printf("processes: %d %s, %d %s\n", (int)h->daemon_pid, parent, (int)child_pid, child);
	CHECK(strcmp(parent, "vsockmux-broker") == 0);
	CHECK(strcmp(child, "vsockmux-muxer") == 0);
}

static void test_max_connections(struct sys_harness *h)
{
	static const char *const extra[] = { "--max-connections", "2", NULL };
	struct host_conn *first, *second, *third;
	struct host_listener *host_listener;
	struct vguest_sock *g;

	sys_start_daemon(h, extra);
	sys_guest_new(h, NULL);
	host_listener = host_listen(h, 7000);
	/* two host clients mid-handshake hold both slots */
	first = host_connect(h);
	second = host_connect(h);
	host_write_str(first, "CONN");
	host_write_str(second, "CONN");
	/* accept, hand-over and adoption keep arrival order: the third is
	 * the one refused (no guest traffic meanwhile, it would take a slot) */
	third = host_connect(h);
	WAIT_FOR(h, 3000, host_peer_closed(third));
	CHECKF(host_in_len(third) == 0, "a refused host client got bytes");
	/* a guest connect beyond the limit: RST at once, nothing reaches the host */
	g = vguest_connect_port(h->vg, 7000);
	CHECK(g);
	WAIT_FOR(h, 3000, g->state == VGUEST_SOCK_CLOSED);
	CHECKF(g->refused, "guest connect over the limit was not refused");
	CHECK(host_listener->accepted == 0);
	CHECK(!host_peer_closed(first) && !host_peer_closed(second));
	/* a slot frees up: connects work again (retry until the muxer has
	 * seen the close, bounded by the wait) */
	host_close(first);
	{
		uint64_t end = sys_wait_end(h, 3000);
		bool connected = false;
		while (!connected) {
			struct vguest_sock *retry = vguest_connect_port(h->vg, 7000);
			CHECK(retry);
			WAIT_FOR(h, 3000, retry->state != VGUEST_SOCK_CONNECTING);
			connected = retry->state == VGUEST_SOCK_CONNECTED;
			CHECKF(connected || sys_now_ns() < end,
			       "no guest connect succeeded after a slot was freed");
		}
	}
	WAIT_FOR(h, 3000, host_listener->accepted == 1);
}

/* --no-sandbox keeps exit handlers, so LeakSanitizer checks the broker's
 * exit after real traffic (teardown fails the test on a non-zero exit). */
static void test_no_sandbox_clean_exit(struct sys_harness *h)
{
	static const char *const extra[] = { "--no-sandbox", NULL };
	struct vguest_sock *g;
	struct host_conn *c;
	char buffer[8];

	sys_start_daemon(h, extra);
	sys_guest_new(h, NULL);
	(void)sys_open_to_guest(h, 52, &c, &g);
	host_write_str(c, "leak?\n");
	sys_guest_read_exact(h, g, buffer, 6, 3000);
	CHECK(memcmp(buffer, "leak?\n", 6) == 0);
}

/* Started as an ordinary user: no namespaces, no user switch, but the
 * filters and no-new-privs still apply and everything works. */
static void test_unprivileged_start(struct sys_harness *h)
{
	const struct passwd *nobody = getpwnam("nobody");
	struct vguest_sock *g;
	struct host_conn *c;
	char line[256], buffer[8];
	FILE *status;
	bool seccomp = false;

	CHECKF(nobody != NULL, "no user nobody");
	h->daemon_uid = nobody->pw_uid;
	h->daemon_gid = nobody->pw_gid;
	CHECK(chown(h->dir, nobody->pw_uid, nobody->pw_gid) == 0);
	sys_setup(h);
	snprintf(line, sizeof(line), "/proc/%d/status", (int)sys_daemon_child_pid(h));
	status = fopen(line, "r");
	CHECK(status != NULL);
	while (fgets(line, sizeof(line), status))
		seccomp |= strcmp(line, "Seccomp:\t2\n") == 0;
	fclose(status);
	CHECKF(seccomp, "the unprivileged muxer has no seccomp filter");
	(void)sys_open_to_guest(h, 52, &c, &g);
	host_write_str(c, "hello\n");
	sys_guest_read_exact(h, g, buffer, 6, 3000);
	CHECK(memcmp(buffer, "hello\n", 6) == 0);
}

/* The next datagram on the notify socket fd, as a string (bounded wait). */
static void expect_notification(struct sys_harness *h, int fd, const char *expected)
{
	char message[256];
	uint64_t end = sys_wait_end(h, 5000);
	ssize_t got;

	while ((got = recv(fd, message, sizeof(message) - 1, MSG_DONTWAIT)) < 0) {
		CHECKF(errno == EAGAIN, "recv on the notify socket: %s", strerror(errno));
		CHECKF(sys_now_ns() < end, "no \"%s\" on the notify socket in 5 s", expected);
		sys_pump(h, 5);
	}
	message[got] = '\0';
	CHECKF(strcmp(message, expected) == 0, "notify socket got \"%s\", expected \"%s\"",
	       message, expected);
}

/* Started by a service manager (NOTIFY_SOCKET, as systemd sets it for a
 * Type=notify unit): READY=1 once the listeners are up, STATUS= as a VMM
 * comes and goes, STOPPING=1 at SIGTERM; all from the sandboxed broker. */
static void test_service_manager_notify(struct sys_harness *h)
{
	struct sockaddr_un address = { .sun_family = AF_UNIX };
	char waiting[200];
	struct vguest *vg;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	CHECK(fd >= 0);
	snprintf(address.sun_path, sizeof(address.sun_path), "%s/notify.sock", h->dir);
	CHECK(bind(fd, (struct sockaddr *)&address, sizeof(address)) == 0);
	/* the daemon sends as its unprivileged user, like systemd's socket */
	CHECK(chmod(address.sun_path, 0666) == 0);
	CHECK(setenv("NOTIFY_SOCKET", address.sun_path, 1) == 0);
	sys_start_daemon(h, NULL);
	CHECK(unsetenv("NOTIFY_SOCKET") == 0);
	snprintf(waiting, sizeof(waiting), "STATUS=waiting for a VMM on %s", h->vhost_path);
	{
		char ready[220];
		snprintf(ready, sizeof(ready), "READY=1\n%s", waiting);
		expect_notification(h, fd, ready);
	}
	vg = sys_guest_new(h, NULL);
	expect_notification(h, fd, "STATUS=VMM attached");
	sys_guest_drop(h, vg);
	expect_notification(h, fd, waiting);
	sys_stop_daemon_checked(h);
	expect_notification(h, fd, "STOPPING=1");
	close(fd);
}

/* A listening Unix socket at path, as a .socket unit creates it. */
static int listen_at(const char *path)
{
	struct sockaddr_un address = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	CHECK(fd >= 0);
	snprintf(address.sun_path, sizeof(address.sun_path), "%s", path);
	CHECKF(bind(fd, (struct sockaddr *)&address, sizeof(address)) == 0 &&
	       listen(fd, 16) == 0, "listen on %s: %s", path, strerror(errno));
	return fd;
}

/* Socket activation: the three listeners come from the service manager
 * (names: LISTEN_FDNAMES); the daemon serves on them and, as they are not
 * its own, leaves their files in place when it stops. */
static void serve_activated_listeners(struct sys_harness *h, const char *names)
{
	char control[160];
	struct vguest_sock *listener, *g;
	struct host_conn *c;
	struct stat status;
	char buffer[8];
	size_t mark = sys_log_mark(h);

	snprintf(control, sizeof(control), "%s.ctl", h->uds_path);
	h->daemon_activated[0] = listen_at(h->vhost_path);
	h->daemon_activated[1] = listen_at(h->uds_path);
	h->daemon_activated[2] = listen_at(control);
	h->daemon_activation = true;
	h->daemon_activation_names = names;
	sys_start_daemon(h, NULL);
	for (int i = 0; i < 3; i++)
		close(h->daemon_activated[i]);
	WAIT_FOR_LOG(h, mark, "listeners from the service manager", 2000);
	(void)sys_guest_new(h, NULL);
	listener = vguest_listen(h->vg, 52);
	sys_open_host_initiated(h, h->vg, listener, 52, &c, &g);
	host_write_str(c, "ping");
	sys_guest_read_exact(h, g, buffer, 4, 3000);
	CHECK(memcmp(buffer, "ping", 4) == 0);
	sys_stats_free(sys_query_stats(h, false));  /* the control socket works too */
	sys_stop_daemon_checked(h);
	CHECKF(stat(h->vhost_path, &status) == 0 && S_ISSOCK(status.st_mode) &&
	       stat(h->uds_path, &status) == 0 && S_ISSOCK(status.st_mode) &&
	       stat(control, &status) == 0 && S_ISSOCK(status.st_mode),
	       "an activated socket file was removed by the daemon");
}

/* Each socket named with FileDescriptorName= (one .socket unit each). */
static void test_socket_activation(struct sys_harness *h)
{
	serve_activated_listeners(h, "vhost-user:host:control");
}

/* One .socket unit with three ListenStream= lines: one name for all,
 * taken in order (vhost-user, host, control). */
static void test_socket_activation_one_unit(struct sys_harness *h)
{
	serve_activated_listeners(h, "vsockmuxd@vm1.socket:vsockmuxd@vm1.socket:"
				     "vsockmuxd@vm1.socket");
}

int main(int argc, char **argv)
{
	static const struct sys_test tests[] = {
#define SCENARIO SYS_SCENARIO_ENTRY
#include "test_lifecycle.def"
#undef SCENARIO
	};
	return sys_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
