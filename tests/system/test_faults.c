/*
 * test_faults.c - the fault matrix: each scenario hurts the real
 * two-process vsockmuxd in one way while content-checked streams run both
 * ways, and checks the one reaction README promises for it: either the
 * daemon survives and nothing is lost on connections that behave, or both
 * processes exit within a second, no process is left behind, the socket
 * files are handled as README says, and the log says what happened.
 *
 * Owns: these scenarios and their table; the harness is sys_harness.h.
 * Never: sleeps to synchronise (every wait is bounded; a fault that lasts
 * on purpose is a bounded sys_pump_for), or passes without checking the
 * well-behaved traffic byte for byte.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sys_harness.h"

#define KIB 1024u
#define MIB (1024u * 1024u)

/* One connection with a content-checked stream each way. */
struct flow {
	struct host_conn *c;
	struct vguest_sock *g;
	struct guest_stream *gs;
	uint64_t size;
};

static void flow_start(struct sys_harness *h, struct flow *f, uint32_t seed,
		       uint64_t size)
{
	f->size = size;
	f->gs = guest_stream_add(h, f->g);
	f->gs->stop_on_error = true;
	guest_stream_source(f->gs, seed, size, SYS_AFTER_NOTHING);
	host_sink(f->c, seed, size);
	host_source(f->c, seed + 1, size, SYS_AFTER_NOTHING);
	guest_stream_sink(f->gs, seed + 1, size);
}

static bool flow_done(const struct flow *f)
{
	return f->c->sink.received == f->size && f->gs->sink.received == f->size;
}

/* Bytes that arrived (both ways), every one content-checked. */
static uint64_t flow_bytes(const struct flow *f)
{
	return f->c->sink.received + f->gs->sink.received;
}

static void open_host_flow(struct sys_harness *h, struct vguest *vg,
			   struct vguest_sock *listener, uint32_t port, struct flow *f)
{
	memset(f, 0, sizeof(*f));
	sys_open_host_initiated(h, vg, listener, port, &f->c, &f->g);
}

static void open_guest_flow(struct sys_harness *h, struct vguest *vg,
			    struct host_listener *l, struct flow *f)
{
	memset(f, 0, sizeof(*f));
	sys_open_guest_initiated(h, vg, l, &f->c, &f->g);
}

/* A fresh pair each way on vg works, byte for byte. */
static void expect_new_connections_work(struct sys_harness *h, struct vguest *vg,
					uint32_t port, struct host_listener *l,
					uint32_t seed)
{
	struct vguest_sock *listener = vguest_listen(vg, port);
	struct flow a, b;

	CHECK(listener);
	open_host_flow(h, vg, listener, port, &a);
	open_guest_flow(h, vg, l, &b);
	flow_start(h, &a, seed, 1 * MIB);
	flow_start(h, &b, seed + 10, 1 * MIB);
	WAIT_FOR(h, 20000, flow_done(&a) && flow_done(&b));
	guest_stream_remove(h, a.gs);
	guest_stream_remove(h, b.gs);
}

static bool path_exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

/* connect() to a Unix socket path: 0 or errno. */
static int connect_errno(const char *path)
{
	struct sockaddr_un address = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int result = 0;

	CHECK(fd >= 0);
	snprintf(address.sun_path, sizeof(address.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&address, sizeof(address)) != 0)
		result = errno;
	close(fd);
	return result;
}

/*
 * After an exit: each socket file is either removed, or (the broker runs
 * unprivileged and may not remove it, or nobody was left to remove it) a
 * dead socket nobody listens on, which the next start replaces (README:
 * security model). broker_could_unlink: the broker lived to remove the
 * files or to log that it left them.
 */
static void check_socket_files_after_exit(struct sys_harness *h, size_t mark,
					  bool broker_could_unlink, bool left[3])
{
	char control[120];
	const char *paths[3] = { h->vhost_path, h->uds_path, control };
	const char *what[3] = { "vhost-user socket", "host socket", "control socket" };

	snprintf(control, sizeof(control), "%s.ctl", h->uds_path);
	for (int i = 0; i < 3; i++) {
		char line[200];
		left[i] = path_exists(paths[i]);
		if (!left[i]) {
			CHECKF(broker_could_unlink, "%s vanished although no process "
			       "was left to remove it", paths[i]);
			printf("%s %s: removed\n", what[i], paths[i]);
			continue;
		}
		CHECKF(connect_errno(paths[i]) == ECONNREFUSED, "%s is left but "
		       "does not refuse connections", paths[i]);
		if (broker_could_unlink) {
			snprintf(line, sizeof(line), "%s %s: left in place", what[i], paths[i]);
			CHECKF(sys_log_count(h, mark, line) == 1, "%s left without "
			       "the log line \"%s\"", paths[i], line);
		}
		printf("%s %s: left in place (stale, refuses connections)\n", what[i],
		       paths[i]);
	}
}

/* The next start replaced every file that was left (one log line each). */
static void check_stale_replaced(struct sys_harness *h, size_t mark, const bool left[3])
{
	char control[120], line[200];
	const char *paths[3] = { h->vhost_path, h->uds_path, control };

	snprintf(control, sizeof(control), "%s.ctl", h->uds_path);
	for (int i = 0; i < 3; i++) {
		if (!left[i])
			continue;
		snprintf(line, sizeof(line), "%s: removed stale socket file", paths[i]);
		CHECKF(sys_log_count(h, mark, line) == 1, "the restart did not log "
		       "\"%s\"", line);
	}
}

/* The survivor of a SIGKILL: both processes gone within a second. */
static void expect_both_gone_fast(struct sys_harness *h, uint64_t start, int *status)
{
	CHECKF(sys_reap_daemon(h, 3000, status), "the main process lives on");
	CHECKF(sys_wait_daemon_gone(h, 3000), "a daemon process lives on (orphan)");
	printf("both processes gone %.1f ms after the SIGKILL\n",
	       (double)(sys_now_ns() - start) / 1e6);
	CHECKF(sys_now_ns() - start < 1000000000ull, "the survivor took over a second");
}

/* Old connections closed on the host side, the guest's backend gone. */
static void expect_vm_connections_ended(struct sys_harness *h, struct flow *flows,
					unsigned count)
{
	for (unsigned i = 0; i < count; i++)
		WAIT_FOR(h, 3000, host_peer_closed(flows[i].c));
	WAIT_FOR(h, 3000, vguest_backend_gone(h->vg));
	for (unsigned i = 0; i < count; i++)
		printf("flow %u: %" PRIu64 " bytes arrived before the fault, all "
		       "content-checked\n", i, flow_bytes(&flows[i]));
	sys_guest_drop(h, h->vg);
}

/* Two flows (one each way of opening) carrying 64 MiB each way. */
static void start_two_flows(struct sys_harness *h, struct host_listener **l,
			    struct flow flows[2])
{
	struct vguest_sock *listener = vguest_listen(h->vg, 52);
	*l = host_listen(h, 1234);
	open_host_flow(h, h->vg, listener, 52, &flows[0]);
	open_guest_flow(h, h->vg, *l, &flows[1]);
	flow_start(h, &flows[0], 100, 64 * MIB);
	flow_start(h, &flows[1], 200, 64 * MIB);
	WAIT_FOR(h, 5000, flows[0].c->sink.received >= 1 * MIB &&
			  flows[0].gs->sink.received >= 1 * MIB &&
			  flows[1].c->sink.received >= 1 * MIB &&
			  flows[1].gs->sink.received >= 1 * MIB);
}

/* After the broker or the muxer (then the broker could unlink its socket
 * files) was killed with two flows running: the VM's connections ended,
 * the socket files are as documented, and a new start replaces what was
 * left and serves. */
static void after_one_process_killed(struct sys_harness *h, size_t mark,
				     struct flow flows[2], struct host_listener *l,
				     bool broker_could_unlink)
{
	bool left[3];

	expect_vm_connections_ended(h, flows, 2);
	check_socket_files_after_exit(h, mark, broker_could_unlink, left);
	sys_forget_daemon(h);
	mark = sys_log_mark(h);
	sys_setup(h);
	check_stale_replaced(h, mark, left);
	expect_new_connections_work(h, h->vg, 53, l, 300);
}

/*
 * SIGKILL of the broker mid-transfer: the muxer dies with it at once
 * (PR_SET_PDEATHSIG SIGHUP, whose handler logs one line and exits, unless
 * the muxer saw the channel close first and said so). The
 * socket files stay behind as dead sockets and the next start replaces
 * them and serves.
 */
static void test_kill_broker_mid_transfer(struct sys_harness *h)
{
	struct host_listener *l;
	struct flow flows[2];
	uint64_t start;
	int status = 0;
	size_t mark;

	sys_setup(h);
	start_two_flows(h, &l, flows);
	mark = sys_log_mark(h);
	sys_expect_daemon_exit(h);
	start = sys_now_ns();
	CHECK(kill(h->daemon_pid, SIGKILL) == 0);
	expect_both_gone_fast(h, start, &status);
	CHECKF(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
	       "the broker ended with status %#x, not our SIGKILL", status);
	/* the broker cannot say it; the muxer does: its parent-death handler,
	 * or its loop when it sees the channel close first */
	CHECKF(sys_log_count(h, mark, "the broker process died") +
	       sys_log_count(h, mark, "broker closed the channel") >= 1,
	       "no log line from the muxer about the broker's death");
	after_one_process_killed(h, mark, flows, l, false);
}

/*
 * SIGKILL of the muxer mid-transfer: the broker names the signal and exits
 * (code 1) within a second; socket files removed or left as README says
 * (with a log line); the next start serves.
 */
static void test_kill_muxer_mid_transfer(struct sys_harness *h)
{
	struct host_listener *l;
	struct flow flows[2];
	char line[96];
	uint64_t start;
	int status = 0;
	size_t mark;
	pid_t muxer;

	sys_setup(h);
	start_two_flows(h, &l, flows);
	muxer = sys_daemon_child_pid(h);
	CHECK(muxer > 0);
	mark = sys_log_mark(h);
	sys_expect_daemon_exit(h);
	start = sys_now_ns();
	CHECK(kill(muxer, SIGKILL) == 0);
	expect_both_gone_fast(h, start, &status);
	CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 1,
	       "the broker ended with status %#x, expected exit code 1", status);
	snprintf(line, sizeof(line), "muxer (pid %d) killed by signal %d", (int)muxer,
		 SIGKILL);
	WAIT_FOR_LOG(h, mark, line, 1000);
	after_one_process_killed(h, mark, flows, l, true);
}

/*
 * SIGSTOP of the muxer for 3 s mid-transfer, then SIGCONT: every
 * connection survives and every byte arrives, both ways, exactly; the
 * broker keeps the host clients that arrive meanwhile.
 */
static void test_sigstop_muxer_3s(struct sys_harness *h)
{
	struct vguest_sock *listener;
	struct host_listener *l;
	struct flow flows[4];
	struct host_conn *late;
	struct vguest_sock *late_g = NULL;
	Vsockmux__Control__Response *response;
	uint64_t before, during, stopped_ns;
	char state = '?';
	pid_t muxer;

	sys_setup(h);
	listener = vguest_listen(h->vg, 52);
	l = host_listen(h, 1234);
	for (unsigned i = 0; i < 4; i++) {
		if (i % 2 == 0)
			open_host_flow(h, h->vg, listener, 52, &flows[i]);
		else
			open_guest_flow(h, h->vg, l, &flows[i]);
		flow_start(h, &flows[i], 10 * (i + 1), 24 * MIB);
	}
	WAIT_FOR(h, 5000, flow_bytes(&flows[0]) >= 2 * MIB &&
			  flow_bytes(&flows[1]) >= 2 * MIB);
	muxer = sys_daemon_child_pid(h);
	CHECK(muxer > 0);
	CHECK(kill(muxer, SIGSTOP) == 0);
	WAIT_FOR(h, 1000, sys_proc_stat(muxer, &state, NULL) && state == 'T');
	stopped_ns = sys_now_ns();
	before = 0;
	for (unsigned i = 0; i < 4; i++)
		before += flow_bytes(&flows[i]);
	/* a host client arriving while the muxer is stopped */
	late = host_connect_port(h, 52);
	/* the fault lasts 3 s: observe, bounded */
	sys_pump_for(h, 3000);
	CHECK(sys_proc_stat(muxer, &state, NULL) && state == 'T');
	during = 0;
	for (unsigned i = 0; i < 4; i++)
		during += flow_bytes(&flows[i]);
	CHECK(kill(muxer, SIGCONT) == 0);
	printf("muxer stopped %.0f ms; %" PRIu64 " bytes arrived meanwhile (what "
	       "socket buffers held)\n", (double)(sys_now_ns() - stopped_ns) / 1e6,
	       during - before);
	WAIT_FOR(h, 60000, flow_done(&flows[0]) && flow_done(&flows[1]) &&
			   flow_done(&flows[2]) && flow_done(&flows[3]));
	for (unsigned i = 0; i < 4; i++) {
		CHECK(flows[i].g->state == VGUEST_SOCK_CONNECTED);
		CHECK(!host_peer_closed(flows[i].c));
		guest_stream_remove(h, flows[i].gs);
	}
	WAIT_FOR(h, 5000, (late_g = vguest_accept(listener)) != NULL);
	CHECK(host_expect_ok(h, late) == late_g->peer_port);
	host_write_str(late, "late");
	{
		char buffer[4];
		sys_guest_read_exact(h, late_g, buffer, 4, 5000);
		CHECK(memcmp(buffer, "late", 4) == 0);
	}
	response = sys_query_stats(h, false);
	printf("after SIGCONT: %" PRIu64 " connections open, %" PRIu64 " bytes to "
	       "host, %" PRIu64 " to guest\n", response->stats->connections_current,
	       response->stats->bytes_to_host, response->stats->bytes_to_guest);
	CHECK(response->stats->connections_current == 5);
	CHECK(sys_stats_dropped(response->stats, "malformed_chain") == 0);
	sys_stats_free(response);
	sys_check_guest_clean(h->vg);
}

/*
 * The frontend (VMM) dies mid-transfer: its vhost-user fd closes without a
 * word. Every connection of that VM is reset (the host sides see EOF or a
 * reset), the log says so, and the next frontend starts fresh: no old
 * connection left, new ones work both ways.
 */
static void test_frontend_killed_mid_transfer(struct sys_harness *h)
{
	struct vguest_sock *listener;
	struct host_listener *l;
	struct flow flows[6];
	struct vguest *vg2;
	Vsockmux__Control__Response *response;
	size_t mark;

	sys_setup(h);
	listener = vguest_listen(h->vg, 52);
	l = host_listen(h, 1234);
	for (unsigned i = 0; i < 6; i++) {
		if (i % 2 == 0)
			open_host_flow(h, h->vg, listener, 52, &flows[i]);
		else
			open_guest_flow(h, h->vg, l, &flows[i]);
		flow_start(h, &flows[i], 1000 + 10 * i, 64 * MIB);
	}
	WAIT_FOR(h, 5000, flow_bytes(&flows[0]) >= 2 * MIB &&
			  flow_bytes(&flows[5]) >= 2 * MIB);
	mark = sys_log_mark(h);
	sys_guest_drop(h, h->vg);
	for (unsigned i = 0; i < 6; i++) {
		WAIT_FOR(h, 3000, host_peer_closed(flows[i].c));
		printf("flow %u: host side %s after %" PRIu64 " bytes in, %" PRIu64
		       " out\n", i, flows[i].c->error ? strerror(flows[i].c->error_code)
		       : "EOF", flows[i].c->sink.received, flows[i].c->bytes_out);
		CHECK(flows[i].c->sink.received < flows[i].size);
	}
	WAIT_FOR_LOG(h, mark, "vhost-user: frontend disconnected", 3000);
	WAIT_FOR_LOG(h, mark, "vhost-user frontend detached; every connection reset", 3000);
	response = sys_query_stats(h, false);
	CHECKF(response->stats->connections_current == 0, "%" PRIu64 " connections "
	       "outlived their VM", response->stats->connections_current);
	sys_stats_free(response);

	vg2 = sys_guest_new(h, NULL);
	expect_new_connections_work(h, vg2, 52, l, 2000);
	response = sys_query_stats(h, false);
	CHECK(response->stats->connections_current == 2);
	sys_stats_free(response);
	sys_check_guest_clean(vg2);
}

/*
 * Host peers vanish mid-transfer: one closes with data it never read (the
 * daemon's next I/O gets ECONNRESET), one shuts its reading side (the
 * daemon's writes get EPIPE). Each guest side gets an RST, the log names
 * the error, and the connections beside them finish byte for byte.
 */
static void test_host_peer_vanishes(struct sys_harness *h)
{
	struct vguest_sock *listener;
	struct host_listener *l;
	struct flow good[2], reset_flow, pipe_flow;
	Vsockmux__Control__Response *response;
	size_t mark;

	sys_setup(h);
	listener = vguest_listen(h->vg, 52);
	l = host_listen(h, 1234);
	open_host_flow(h, h->vg, listener, 52, &good[0]);
	open_guest_flow(h, h->vg, l, &good[1]);
	open_guest_flow(h, h->vg, l, &reset_flow);
	open_host_flow(h, h->vg, listener, 52, &pipe_flow);
	flow_start(h, &good[0], 1, 16 * MIB);
	flow_start(h, &good[1], 3, 16 * MIB);
	flow_start(h, &pipe_flow, 7, 64 * MIB);
	/* the reset victim never reads: 128 KiB of guest data sit unread in
	 * its socket when it closes, so the daemon's next read gets
	 * ECONNRESET */
	host_set_paused(reset_flow.c, true);
	reset_flow.gs = guest_stream_add(h, reset_flow.g);
	guest_stream_source(reset_flow.gs, 5, 128 * KIB, SYS_AFTER_NOTHING);
	WAIT_FOR(h, 5000, flow_bytes(&good[0]) >= 1 * MIB &&
			  pipe_flow.c->sink.received >= 1 * MIB);
	{
		int unread = 0;
		WAIT_FOR(h, 5000, ioctl(reset_flow.c->fd, FIONREAD, &unread) == 0 &&
				  unread == (int)(128 * KIB));
		printf("host peer closes with %d bytes unread\n", unread);
	}
	mark = sys_log_mark(h);
	host_close(reset_flow.c);
	/* the reader goes: what is queued still drains (read() then says
	 * EOF), and the daemon's next write gets EPIPE */
	CHECK(shutdown(pipe_flow.c->fd, SHUT_RD) == 0);
	WAIT_FOR(h, 5000, reset_flow.g->state == VGUEST_SOCK_CLOSED);
	WAIT_FOR(h, 5000, pipe_flow.g->state == VGUEST_SOCK_CLOSED);
	CHECKF(reset_flow.g->reset_received, "no RST after the host peer reset");
	CHECKF(pipe_flow.g->reset_received, "no RST after the host reader left");
	WAIT_FOR_LOG(h, mark, "host socket read failed: Connection reset by peer", 3000);
	WAIT_FOR_LOG(h, mark, "host socket write failed: Broken pipe", 3000);
	WAIT_FOR(h, 5000, host_peer_closed(pipe_flow.c));
	WAIT_FOR(h, 30000, flow_done(&good[0]) && flow_done(&good[1]));
	CHECK(good[0].g->state == VGUEST_SOCK_CONNECTED &&
	      good[1].g->state == VGUEST_SOCK_CONNECTED);
	response = sys_query_stats(h, false);
	CHECK(response->stats->connections_current == 2);
	sys_stats_free(response);
	for (unsigned i = 0; i < 2; i++)
		guest_stream_remove(h, good[i].gs);
	expect_new_connections_work(h, h->vg, 53, l, 50);
	sys_check_guest_clean(h->vg);
}

/* ---- out of file descriptors ---- */

#define FD_LIMIT 64u
#define FD_WAVE 80u

static unsigned open_fd_count(pid_t pid)
{
	char path[64];
	unsigned count = 0;
	struct dirent *entry;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	d = opendir(path);
	if (!d)
		return 0;
	while ((entry = readdir(d)) != NULL)
		if (entry->d_name[0] != '.')
			count++;
	closedir(d);
	return count;
}

static void guest_connect_one(struct sys_harness *h, struct vguest_sock **sock,
			      unsigned *ok, unsigned *rst)
{
	*sock = vguest_connect_port(h->vg, 1234);
	CHECK(*sock);
	WAIT_FOR(h, 5000, (*sock)->state != VGUEST_SOCK_CONNECTING);
	if ((*sock)->state == VGUEST_SOCK_CONNECTED)
		(*ok)++;
	else if ((*sock)->refused || (*sock)->reset_received)
		(*rst)++;
}

/*
 * The daemon runs as an ordinary user under a hard RLIMIT_NOFILE of 64
 * (it cannot raise it: it warns that connections beyond it are refused).
 * Host clients and guest connects far beyond what fits: the daemon
 * survives, refuses the excess cleanly (host client closed, guest RST),
 * counts it, and serves again once descriptors are free.
 */
static void test_out_of_fds(struct sys_harness *h)
{
	const struct passwd *nobody = getpwnam("nobody");
	struct host_conn *hosts[FD_WAVE];
	struct vguest_sock *guests[FD_WAVE], *accepted[FD_WAVE];
	struct vguest_sock *listener;
	struct host_listener *l;
	Vsockmux__Control__Response *response;
	unsigned host_ok = 0, host_closed = 0, guest_ok = 0, guest_rst = 0;
	uint64_t refused_before;
	size_t mark;

	CHECKF(nobody, "no user nobody");
	h->daemon_uid = nobody->pw_uid;
	h->daemon_gid = nobody->pw_gid;
	h->daemon_nofile = FD_LIMIT;
	CHECK(chown(h->dir, nobody->pw_uid, nobody->pw_gid) == 0);
	mark = sys_log_mark(h);
	sys_setup(h);
	CHECK(sys_log_count(h, mark, "connections beyond it will be refused") >= 1);
	printf("muxer fds at start: %u, broker: %u\n",
	       open_fd_count(sys_daemon_child_pid(h)), open_fd_count(h->daemon_pid));
	listener = vguest_listen(h->vg, 52);
	l = host_listen(h, 1234);
	response = sys_query_stats(h, false);
	refused_before = response->stats->refused_limit;
	sys_stats_free(response);

	/* guest connects while fds last, host clients beyond the fds, then
	 * guest connects again: nothing is left for them */
	for (unsigned i = 0; i < FD_WAVE / 2; i++)
		guest_connect_one(h, &guests[i], &guest_ok, &guest_rst);
	for (unsigned i = 0; i < FD_WAVE; i++) {
		char line[64];
		struct vguest_sock *g = NULL;
		accepted[i] = NULL;
		hosts[i] = host_connect_port(h, 52);
		WAIT_FOR(h, 5000, host_in_len(hosts[i]) > 0 || host_peer_closed(hosts[i]));
		if (host_take_line(hosts[i], line, sizeof(line)) &&
		    strncmp(line, "OK ", 3) == 0) {
			host_ok++;
			WAIT_FOR(h, 5000, (g = vguest_accept(listener)) != NULL);
			accepted[i] = g;
		} else {
			host_closed++;
		}
	}
	for (unsigned i = FD_WAVE / 2; i < FD_WAVE; i++)
		guest_connect_one(h, &guests[i], &guest_ok, &guest_rst);
	response = sys_query_stats(h, false);
	printf("RLIMIT_NOFILE %u: host clients %u OK, %u closed; guest connects "
	       "%u established, %u RST; %" PRIu64 " connections open, refused_limit "
	       "+%" PRIu64 "\n", FD_LIMIT, host_ok, host_closed, guest_ok, guest_rst,
	       response->stats->connections_current,
	       response->stats->refused_limit - refused_before);
	CHECK(guest_ok + guest_rst == FD_WAVE);
	CHECKF(host_closed > 0 && guest_rst > 0, "the fd limit was never reached");
	CHECK(host_ok > 0 && guest_ok > 0);
	CHECKF(response->stats->refused_limit - refused_before == host_closed + guest_rst,
	       "refusals not counted as refused_limit");
	CHECK(response->stats->connections_current == host_ok + guest_ok);
	sys_stats_free(response);
	CHECK(sys_log_count(h, mark, "host client refused: out of file descriptors") >= 1);
	/* the guest refusals share that rate-limited kind (10 lines a
	 * second): the counter has them all */
	CHECKF(sys_daemon_alive(h), "the daemon died of the fd limit");

	/* free the descriptors: close both sides of everything */
	for (unsigned i = 0; i < FD_WAVE; i++) {
		host_close(hosts[i]);
		if (accepted[i])
			CHECK(vguest_close(accepted[i]) == 0);
		if (guests[i]->state == VGUEST_SOCK_CONNECTED)
			CHECK(vguest_close(guests[i]) == 0);
	}
	for (struct host_conn *c; (c = host_accept(l)) != NULL;)
		host_close(c);
	WAIT_FOR(h, 10000, (response = sys_query_stats(h, false),
			    host_ok = (unsigned)response->stats->connections_current,
			    sys_stats_free(response), host_ok == 0));
	expect_new_connections_work(h, h->vg, 53, l, 70);
}

/* ---- logging that cannot be written ---- */

/* Traffic while the log goes nowhere: 50 short connections each way
 * (each logs open and close lines at debug level) and a bulk pair. */
static void serve_while_log_broken(struct sys_harness *h, struct vguest_sock *listener,
				   struct host_listener *l)
{
	struct flow bulk;

	open_host_flow(h, h->vg, listener, 52, &bulk);
	flow_start(h, &bulk, 77, 8 * MIB);
	for (unsigned i = 0; i < 50; i++) {
		struct flow a, b;
		open_host_flow(h, h->vg, listener, 52, &a);
		open_guest_flow(h, h->vg, l, &b);
		flow_start(h, &a, 500 + i, 4 * KIB);
		flow_start(h, &b, 700 + i, 4 * KIB);
		WAIT_FOR(h, 5000, flow_done(&a) && flow_done(&b));
		guest_stream_remove(h, a.gs);
		guest_stream_remove(h, b.gs);
		CHECK(vguest_close(a.g) == 0 && vguest_close(b.g) == 0);
		WAIT_FOR(h, 5000, host_peer_closed(a.c) && host_peer_closed(b.c));
		host_conn_free(a.c);
		host_conn_free(b.c);
	}
	WAIT_FOR(h, 30000, flow_done(&bulk));
	guest_stream_remove(h, bulk.gs);
	sys_stats_free(sys_query_stats(h, true));
}

/* stderr on /dev/full: every log write fails; the daemon serves and
 * stops cleanly on SIGTERM. */
static void test_log_dev_full(struct sys_harness *h)
{
	struct vguest_sock *listener;
	struct host_listener *l;

	h->daemon_stderr = SYS_STDERR_DEV_FULL;
	sys_setup(h);
	listener = vguest_listen(h->vg, 52);
	l = host_listen(h, 1234);
	serve_while_log_broken(h, listener, l);
	sys_check_guest_clean(h->vg);
	sys_stop_daemon_checked(h);
}

static int pipe_unread_bytes(int fd)
{
	int unread = -1;
	return ioctl(fd, FIONREAD, &unread) == 0 ? unread : -1;
}

/* stderr a pipe nobody reads: once it is full a blocking write would hang
 * the daemon. It serves on, and SIGTERM still ends it cleanly. */
static void test_log_pipe_unread(struct sys_harness *h)
{
	struct vguest_sock *listener;
	struct host_listener *l;
	int capacity;

	h->daemon_stderr = SYS_STDERR_TEST_PIPE;
	sys_setup(h);
	capacity = fcntl(h->daemon_stderr_fd, F_GETPIPE_SZ);
	listener = vguest_listen(h->vg, 52);
	l = host_listen(h, 1234);
	serve_while_log_broken(h, listener, l);
	printf("stderr pipe: %d of %d bytes unread\n", pipe_unread_bytes(h->daemon_stderr_fd),
	       capacity);
	CHECKF(pipe_unread_bytes(h->daemon_stderr_fd) > capacity - 512,
	       "the log pipe never filled up (the test proves nothing)");
	serve_while_log_broken(h, listener, l);
	/* a reader again: the next line that fits says what was lost */
	{
		char text[8192];
		size_t got = 0;
		bool note = false;
		uint64_t end = sys_wait_end(h, 5000);
		CHECK(fcntl(h->daemon_stderr_fd, F_SETFL, O_NONBLOCK) == 0);
		while (read(h->daemon_stderr_fd, text, sizeof(text)) > 0)
			;
		while (!note) {
			struct flow a;
			ssize_t n;
			CHECKF(sys_now_ns() < end, "no \"log lines lost\" line once the "
			       "log was read again");
			open_host_flow(h, h->vg, listener, 52, &a);
			while ((n = read(h->daemon_stderr_fd, text + got,
					 sizeof(text) - 1 - got)) > 0) {
				got += (size_t)n;
				text[got] = '\0';
				note = note || strstr(text, "log lines lost (stderr full or closed)");
				if (got > sizeof(text) / 2) {
					memmove(text, text + got - 200, 200);
					got = 200;
				}
			}
		}
		printf("the log says lines were lost\n");
	}
	sys_check_guest_clean(h->vg);
	sys_stop_daemon_checked(h);
}

/* stderr a pipe whose reader is gone: every log write gets EPIPE (SIGPIPE
 * is ignored); the daemon serves on and stops cleanly. */
static void test_log_pipe_closed(struct sys_harness *h)
{
	struct vguest_sock *listener;
	struct host_listener *l;

	h->daemon_stderr = SYS_STDERR_TEST_PIPE;
	sys_setup(h);
	close(h->daemon_stderr_fd);
	h->daemon_stderr_fd = -1;
	listener = vguest_listen(h->vg, 52);
	l = host_listen(h, 1234);
	serve_while_log_broken(h, listener, l);
	sys_check_guest_clean(h->vg);
	sys_stop_daemon_checked(h);
}

static const struct sys_test tests[] = {
#define SCENARIO SYS_SCENARIO_ENTRY
#include "test_faults.def"
#undef SCENARIO
};

int main(int argc, char **argv)
{
	return sys_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
