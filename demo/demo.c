/*
 * demo.c - the README's main job: start the real vsockmuxd (both
 * processes), attach the virtual guest, and show a host program and a
 * guest program talking both ways, then bulk data with a content check.
 *
 * Owns: only the narration. Everything else is the system-test harness
 * (tests/system/sys_harness.h), so what the demo shows is what the tests
 * check.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sys_harness.h"

#define DEMO_GUEST_PORT 52u
#define DEMO_HOST_PORT 1234u
#define DEMO_BULK_BYTES (64ull * 1024 * 1024)

static void say(const char *who, const char *what, const char *text)
{
	printf("%-8s %s%s", who, what, text);
	fflush(stdout);
}

static void show_processes(const struct sys_harness *h)
{
	char path[64], name[32], line[256];
	FILE *children;
	size_t length;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)h->daemon_pid,
		 (int)h->daemon_pid);
	children = fopen(path, "r");
	if (!children || !fgets(line, sizeof(line), children))
		line[0] = '\0';
	if (children)
		fclose(children);
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)h->daemon_pid);
	FILE *comm = fopen(path, "r");
	if (!comm || !fgets(name, sizeof(name), comm))
		snprintf(name, sizeof(name), "?\n");
	if (comm)
		fclose(comm);
	length = strlen(line);
	if (length > 0 && line[length - 1] == ' ')
		line[length - 1] = '\0';
	printf("daemon   pid %d (%.*s), muxer child pid %s\n", (int)h->daemon_pid,
	       (int)strcspn(name, "\n"), name, line[0] ? line : "?");
}

/* Run vsockctl against the demo's daemon (output goes to our stdout). */
static void run_vsockctl(struct sys_harness *h, const char *command)
{
	const char *vsockctl = getenv("VSOCKCTL");
	char socket_path[160];
	int status = 0;
	pid_t pid;

	if (!vsockctl)
		return;
	snprintf(socket_path, sizeof(socket_path), "%s.ctl", h->uds_path);
	printf("\n$ vsockctl %s\n", command);
	fflush(stdout);
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		execl(vsockctl, "vsockctl", "--control-socket", socket_path, command,
		      (char *)NULL);
		_exit(127);
	}
	/* vsockctl bounds its own wait (5 s) */
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "vsockctl %s failed", command);
}

static void exchange(struct sys_harness *h, struct host_conn *host,
		     struct vguest_sock *guest, const char *to_guest,
		     const char *to_host)
{
	char buffer[128] = { 0 };

	host_write_str(host, to_guest);
	say("host", "-> guest: ", to_guest);
	sys_guest_read_exact(h, guest, buffer, strlen(to_guest), 3000);
	say("guest", "<- host:  ", buffer);

	sys_guest_write_all(h, guest, to_host, strlen(to_host), 3000);
	say("guest", "-> host:  ", to_host);
	sys_host_expect(h, host, to_host, strlen(to_host), 3000);
	say("host", "<- guest: ", to_host);
}

static void demo(struct sys_harness *h)
{
	struct vguest_sock *listener, *guest;
	struct host_listener *host_listener;
	struct host_conn *host;
	struct guest_stream *stream;
	uint64_t start;
	char line[128];

	sys_setup(h);
	printf("\n== vsockmuxd is up; the virtual guest (CID 3) attached over vhost-user\n");
	show_processes(h);

	printf("\n== host -> guest: a host program connects to %s and asks for port %u\n",
	       h->uds_path, DEMO_GUEST_PORT);
	listener = vguest_listen(h->vg, DEMO_GUEST_PORT);
	CHECK(listener);
	sys_open_host_initiated(h, h->vg, listener, DEMO_GUEST_PORT, &host, &guest);
	snprintf(line, sizeof(line), "CONNECT %u -> OK %u (host-side port)\n",
		 DEMO_GUEST_PORT, guest->peer_port);
	say("host", "", line);
	exchange(h, host, guest, "hello guest, this is the host\n",
		 "hello host, this is the guest\n");

	printf("\n== guest -> host: the guest connects to CID 2 port %u, served by %s_%u\n",
	       DEMO_HOST_PORT, h->uds_path, DEMO_HOST_PORT);
	host_listener = host_listen(h, DEMO_HOST_PORT);
	{
		struct host_conn *served;
		struct vguest_sock *client;
		sys_open_guest_initiated(h, h->vg, host_listener, &served, &client);
		exchange(h, served, client, "welcome, guest\n", "thanks, host\n");
	}

	printf("\n== bulk: %llu MiB each way on the first connection, content-checked\n",
	       (unsigned long long)(DEMO_BULK_BYTES >> 20));
	stream = guest_stream_add(h, guest);
	start = sys_now_ns();
	guest_stream_source(stream, 7, DEMO_BULK_BYTES, SYS_AFTER_NOTHING);
	host_sink(host, 7, DEMO_BULK_BYTES);
	/* a look at the live connections while the data flows */
	WAIT_FOR(h, 120000, host->sink.received >= DEMO_BULK_BYTES / 4);
	run_vsockctl(h, "conns");
	WAIT_FOR(h, 120000, host->sink.received == DEMO_BULK_BYTES);
	printf("guest -> host  %8.1f MiB/s  (every byte checked)\n",
	       sys_mib_per_s(DEMO_BULK_BYTES, host->sink.end_ns - start));
	start = sys_now_ns();
	host_source(host, 8, DEMO_BULK_BYTES, SYS_AFTER_NOTHING);
	guest_stream_sink(stream, 8, DEMO_BULK_BYTES);
	WAIT_FOR(h, 120000, stream->sink.received == DEMO_BULK_BYTES);
	printf("host -> guest  %8.1f MiB/s  (every byte checked)\n",
	       sys_mib_per_s(DEMO_BULK_BYTES, stream->sink.end_ns - start));
	guest_stream_remove(h, stream);
	sys_check_guest_clean(h->vg);
	run_vsockctl(h, "stats");
	printf("\n== done; stopping vsockmuxd\n");
}

int main(int argc, char **argv)
{
	static const struct sys_test tests[] = {
		{ "demo", demo, 300 },
	};
	/* the daemon's info lines (conn open/close) tell their half of it */
	setenv("VSOCKMUX_SYSTEM_LOG_LEVEL", "info", 0);
	return sys_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
