/*
 * sys_harness.h - system-test harness: starts the real vsockmuxd in a fresh
 * temp dir, connects virtual guests (vguest.h) to it, drives host-side
 * AF_UNIX sockets, and runs everything from one bounded poll loop.
 *
 * Owns: the daemon process (fork+exec of $VSOCKMUXD, stderr forwarded by a
 * drain thread that also spots "ready" and sanitizer reports), host
 * connections and listeners, pattern streams with content checks, the
 * per-test deadline, and the test runner (one forked child per test, a
 * PASS/FAIL line each).
 * Never: sleeps to synchronise. Every wait is poll() with a bound taken
 * from the test's deadline; every wait can fail the test.
 *
 * Files: sys_harness.c (time, guests, the poll loop), sys_daemon.c (the
 * daemon process, its log and counters), sys_host.c (host clients and
 * listeners), sys_streams.c (patterns, checked transfers), sys_runner.c
 * (sys_main, sys_fail); sys_harness_internal.h between them.
 */
#ifndef VSOCKMUX_TESTS_SYS_HARNESS_H
#define VSOCKMUX_TESTS_SYS_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "control.pb-c.h"
#include "vguest.h"

#define SYS_MAX_GUESTS 4
#define SYS_DEFAULT_WAIT_MS 5000

struct sys_harness;

/* ---- byte buffer ---- */
struct sys_buf {
	uint8_t *data;
	size_t head, tail, capacity;
};

/* ---- deterministic content streams ---- */
enum sys_after {
	SYS_AFTER_NOTHING,
	SYS_AFTER_SHUTDOWN,   /* host: shutdown(SHUT_WR); guest: SHUTDOWN(SEND) */
	SYS_AFTER_CLOSE,      /* host: close(); guest: vguest_close */
};

struct sys_source {
	bool active;
	uint32_t seed;
	uint64_t total, done;
	enum sys_after after;
	bool after_done;
	uint64_t start_ns, end_ns;
};

struct sys_sink {
	bool active;
	uint32_t seed;
	uint64_t expected, received;
	uint64_t start_ns, end_ns;    /* first byte, last expected byte */
};

/* ---- host side ---- */
struct host_conn {
	struct sys_harness *h;
	int fd;
	char name[48];
	bool read_eof;               /* read() returned 0 */
	bool error;                  /* ECONNRESET/EPIPE/... */
	int error_code;
	bool paused;                 /* do not read */
	bool shut_wr_pending, shut_wr_done;
	struct sys_buf in, out;
	uint64_t bytes_in, bytes_out;
	struct sys_source source;
	struct sys_sink sink;
	struct host_conn *next;      /* harness list */
	struct host_conn *accept_next;
};

struct host_listener {
	struct sys_harness *h;
	int fd;
	uint32_t port;
	char path[108];
	struct host_conn *accept_head, *accept_tail;
	unsigned accepted;
	struct host_listener *next;
};

/* ---- guest side streams ---- */
struct guest_stream {
	struct vguest_sock *sock;
	char name[48];
	struct sys_source source;
	struct sys_sink sink;
	bool eof;
	bool stop_on_error;          /* a failing send ends the source quietly */
	int send_error;              /* errno of that failure */
	struct guest_stream *next;
};

/* Where the daemon's stderr goes (h->daemon_stderr, before start). In the
 * non-default modes stdout stays on the drain pipe, so sys_daemon_alive and
 * sys_wait_daemon_gone still work, and readiness is seen by probing the
 * control socket instead of the "ready" line. */
enum sys_daemon_stderr {
	SYS_STDERR_DRAIN = 0,   /* the drain thread reads it (default) */
	SYS_STDERR_DEV_FULL,    /* /dev/full: every write fails with ENOSPC */
	SYS_STDERR_TEST_PIPE,   /* a pipe (one page) whose read end is
				   h->daemon_stderr_fd: the test reads it, lets
				   it fill, or closes it */
};

struct sys_harness {
	const char *test_name;
	char dir[64];
	char vhost_path[108];
	char uds_path[108];
	uint64_t start_ns, deadline_ns;
	bool quiet;
	uint64_t guest_cid;            /* --guest-cid (default 3) */

	/* daemon */
	pid_t daemon_pid;
	bool daemon_exit_expected;     /* the test ends the daemon itself */
	uid_t daemon_uid;              /* non-zero: start the daemon as this
					  (unprivileged) user */
	gid_t daemon_gid;
	unsigned long daemon_nofile;   /* non-zero: RLIMIT_NOFILE (soft and
					  hard) set in the child before exec */
	int daemon_activated[3];       /* with daemon_activation: listening
					  sockets passed as a service manager
					  does (vhost-user, host, control) */
	bool daemon_activation;
	const char *daemon_activation_names; /* LISTEN_FDNAMES; NULL:
						"vhost-user:host:control" */
	int daemon_stderr;             /* enum sys_daemon_stderr */
	int daemon_stderr_fd;          /* SYS_STDERR_TEST_PIPE: read end */
	bool daemon_reaped;
	int daemon_status;
	int daemon_log_fd;
	bool drain_started;

	struct vguest *guests[SYS_MAX_GUESTS];
	struct vguest *vg;             /* the first guest */
	struct host_conn *conns;
	struct host_listener *listeners;
	struct guest_stream *streams;

	struct pollfd *pollfds;
	size_t pollfd_capacity;
	uint8_t *scratch;              /* 256 KiB */
	bool failed;
	bool in_teardown;
};

/* ---- runner ---- */
struct sys_test {
	const char *name;
	void (*run)(struct sys_harness *h);
	int timeout_s;
};

/*
 * Scenario lists. A program's scenarios are one file, PROGRAM.def, and
 * nothing else names them: one line per scenario,
 *   SCENARIO(name, deadline_s, timeout_s, mode)
 * name      the scenario: the meson test, what `--list` prints and what
 *           the program takes as an argument; test_<name> runs it
 * deadline_s the test's own deadline (sys_test.timeout_s: every wait is
 *           capped by it, the watchdog fires 20 s after it)
 * timeout_s meson's timeout for the test (the valgrind suite: 4 times it)
 * mode      ALONE (never beside another test: rates, CPU or memory are
 *           measured) or PARALLEL
 * The C table is the lines expanded by SYS_SCENARIO_ENTRY:
 *   static const struct sys_test tests[] = {
 *   #define SCENARIO SYS_SCENARIO_ENTRY
 *   #include "test_x.def"
 *   #undef SCENARIO
 *   };
 * and tests/system/meson.build reads the same lines (every line that
 * starts with "SCENARIO(", so comments go on lines of their own). A line
 * without its function, or a static test_ function without its line, does
 * not build.
 */
#define SYS_SCENARIO_ENTRY(name, deadline_s, timeout_s, mode) \
	{ #name, test_##name, deadline_s },
/* Prototypes of the scenario functions, for a program in several files. */
#define SYS_SCENARIO_PROTOTYPE(name, deadline_s, timeout_s, mode) \
	void test_##name(struct sys_harness *h);

/* main(): "--list", or test names (none: all). Each test runs in a forked
 * child. Exit status 0 when every selected test passed. */
int sys_main(int argc, char **argv, const struct sys_test *tests, size_t count);

/* ---- failing ---- */
void sys_fail(const char *file, int line, const char *format, ...)
	__attribute__((format(printf, 3, 4), noreturn));
#define CHECK(cond) do { if (!(cond)) \
	sys_fail(__FILE__, __LINE__, "check failed: %s", #cond); } while (0)
#define CHECKF(cond, ...) do { if (!(cond)) \
	sys_fail(__FILE__, __LINE__, __VA_ARGS__); } while (0)
#define FAIL(...) sys_fail(__FILE__, __LINE__, __VA_ARGS__)

uint64_t sys_now_ns(void);
/* Absolute end of a wait of timeout_ms, capped by the test deadline. */
uint64_t sys_wait_end(struct sys_harness *h, int timeout_ms);
int sys_ms_until(uint64_t end_ns);

/* Pump until cond holds; fail after timeout_ms (or the test deadline). */
#define WAIT_FOR(h, timeout_ms, cond) do { \
	uint64_t wait_end_ = sys_wait_end((h), (timeout_ms)); \
	while (!(cond)) { \
		if (sys_now_ns() >= wait_end_) \
			sys_fail(__FILE__, __LINE__, \
				 "timed out after %d ms waiting for: %s", \
				 (int)(timeout_ms), #cond); \
		sys_pump((h), sys_ms_until(wait_end_)); \
	} } while (0)

/* ---- set-up ---- */
/* Start the daemon with the standard arguments plus extra (NULL-ended,
 * may be NULL); waits for "ready". */
void sys_start_daemon(struct sys_harness *h, const char *const *extra_args);
/* fork() for a child that will exec: stdio flushed first; in the child
 * SIGPIPE and SIGALRM are back to their defaults and no signal is
 * blocked. Fails the test if fork fails. */
pid_t sys_fork_child(void);
/* In such a child: drop to uid and gid (no supplementary groups) unless
 * uid is 0; false if a step failed. */
bool sys_child_become(uid_t uid, gid_t gid);
/* Create a guest with options (NULL: defaults, with h->guest_cid) and run
 * the vhost-user
 * set-up; fails the test on error. The first one becomes h->vg. */
struct vguest *sys_guest_new(struct sys_harness *h,
			     const struct vguest_options *options);
/* Disconnect and destroy a guest (streams on its sockets go too). */
void sys_guest_drop(struct sys_harness *h, struct vguest *vg);
/* A copy of executable path in the test's directory (mode 0755), for
 * running it as another uid when the build tree is not reachable by that
 * uid (e.g. under /root). Writes the copy's path into out. */
void sys_copy_executable(struct sys_harness *h, const char *path, char *out,
			 size_t out_size);

/* A frontend without a guest: a blocking connection to the daemon's
 * vhost-user socket, for tests that write raw messages. */
/* A blocking AF_UNIX stream connection to path (fails the test if none). */
int sys_unix_connect(const char *path);
int sys_vhost_connect_raw(struct sys_harness *h);

/* Daemon + default guest. */
void sys_setup(struct sys_harness *h);
/* True while the daemon's stderr is open (some process alive). */
bool sys_daemon_alive(struct sys_harness *h);
/* Pid of the daemon's second process (child of the one we started), or
 * -1. */
pid_t sys_daemon_child_pid(struct sys_harness *h);
/* The test is about to end the daemon: don't fail on its exit, but still
 * check sanitizer output and that every process is gone at the end. */
void sys_expect_daemon_exit(struct sys_harness *h);
/* Wait up to timeout_ms for the process we started to exit; true and
 * *status if it did. */
bool sys_reap_daemon(struct sys_harness *h, int timeout_ms, int *status);
/* Wait up to timeout_ms until every daemon process has closed stderr. */
bool sys_wait_daemon_gone(struct sys_harness *h, int timeout_ms);
/* After an expected end of the daemon (reaped, every process gone): join
 * the drain thread, fail on sanitizer reports, and forget it, so that
 * sys_start_daemon can start the next one in the same directory. */
void sys_forget_daemon(struct sys_harness *h);
/* SIGTERM the daemon now and check it ends cleanly (exit 0, no signal,
 * both processes gone, no sanitizer report). */
void sys_stop_daemon_checked(struct sys_harness *h);
/* CPU time (ms) used so far by the daemon's processes (the one we started
 * and its children), from /proc. */
double sys_daemon_cpu_ms(struct sys_harness *h);
/* Pump for window_ms; fail if the daemon burnt more than max_cpu_ms of CPU
 * meanwhile (a busy loop while it should be waiting). */
void sys_check_daemon_idle(struct sys_harness *h, int window_ms,
			   int max_cpu_ms, const char *situation);

/* ---- daemon log capture ---- */
/* Every line the drain thread reads is kept (up to 16 MiB). A mark is a
 * position in that capture: the waits look only at lines after it. */
size_t sys_log_mark(struct sys_harness *h);
/* Pump until a line after mark contains text; false after timeout_ms. */
bool sys_log_wait(struct sys_harness *h, size_t mark, const char *text,
		  int timeout_ms);
/* Lines after mark that contain text. */
unsigned sys_log_count(struct sys_harness *h, size_t mark, const char *text);
/* Fail unless a line after mark contains text within timeout_ms. */
#define WAIT_FOR_LOG(h, mark, text, timeout_ms) \
	CHECKF(sys_log_wait((h), (mark), (text), (timeout_ms)), \
	       "no daemon log line containing \"%s\" within %d ms", (text), \
	       (int)(timeout_ms))

/* ---- the loop ---- */
/* One round: push streams, poll everything up to timeout_ms, handle. */
void sys_pump(struct sys_harness *h, int timeout_ms);
/* Observe for duration_ms (negative checks: "nothing happens"). */
void sys_pump_for(struct sys_harness *h, int duration_ms);
/*
 * Barrier through the daemon's TX processing: a guest connect to a port
 * nobody listens on must come back as RST; everything the guest posted
 * before it has been processed by then.
 */
void sys_tx_barrier(struct sys_harness *h, struct vguest *vg);

/* ---- host connections ---- */
struct host_conn *host_connect(struct sys_harness *h);
/* Take over a connected AF_UNIX stream fd (made non-blocking). */
struct host_conn *host_conn_adopt(struct sys_harness *h, int fd);
/* host_connect + "CONNECT <port>\n" */
struct host_conn *host_connect_port(struct sys_harness *h, uint32_t port);
void host_write(struct host_conn *c, const void *data, size_t len);
void host_write_str(struct host_conn *c, const char *text);
/* Pop one complete line ("...\n") from the input; false if none yet. */
bool host_take_line(struct host_conn *c, char *line, size_t capacity);
size_t host_in_len(const struct host_conn *c);
const uint8_t *host_in_data(const struct host_conn *c);
void host_in_consume(struct host_conn *c, size_t len);
void host_shutdown_wr(struct host_conn *c);     /* after pending output */
void host_close(struct host_conn *c);           /* close the fd now */
void host_conn_free(struct host_conn *c);
bool host_peer_closed(const struct host_conn *c); /* EOF or error */
void host_set_paused(struct host_conn *c, bool paused);
void host_source(struct host_conn *c, uint32_t seed, uint64_t total,
		 enum sys_after after);
void host_sink(struct host_conn *c, uint32_t seed, uint64_t expected);
/* Wait for "OK <port>\n"; returns the port. */
uint32_t host_expect_ok(struct sys_harness *h, struct host_conn *c);

struct host_listener *host_listen(struct sys_harness *h, uint32_t port);
struct host_conn *host_accept(struct host_listener *l);
void host_listener_close(struct host_listener *l);

/* ---- guest streams ---- */
struct guest_stream *guest_stream_add(struct sys_harness *h,
				      struct vguest_sock *sock);
void guest_stream_source(struct guest_stream *gs, uint32_t seed,
			 uint64_t total, enum sys_after after);
void guest_stream_sink(struct guest_stream *gs, uint32_t seed,
		       uint64_t expected);
void guest_stream_remove(struct sys_harness *h, struct guest_stream *gs);

/* ---- helpers for tests ---- */
/* Guest listener on port; host CONNECTs; returns both ends, established. */
void sys_open_host_initiated(struct sys_harness *h, struct vguest *vg,
			     struct vguest_sock *listener, uint32_t port,
			     struct host_conn **host, struct vguest_sock **guest);
/* Guest connects to the port of host listener l. */
void sys_open_guest_initiated(struct sys_harness *h, struct vguest *vg,
			      struct host_listener *l, struct host_conn **host,
			      struct vguest_sock **guest);
/* Read from a guest socket into buffer until len bytes or timeout. */
void sys_guest_read_exact(struct sys_harness *h, struct vguest_sock *sock,
			  void *buffer, size_t len, int timeout_ms);
/* Send all of data from a guest socket (pumping for credit). */
void sys_guest_write_all(struct sys_harness *h, struct vguest_sock *sock,
			 const void *data, size_t len, int timeout_ms);
/* Linux close() from the guest (SHUTDOWN both ways) and the daemon's side
 * of it: the host sees EOF, the guest gets the RST that ends it. */
void sys_close_from_guest(struct sys_harness *h, struct vguest_sock *g,
			  struct host_conn *c);
/* The guest stream on g goes, then sys_close_from_guest. */
void sys_stream_close(struct sys_harness *h, struct guest_stream *gs,
		      struct vguest_sock *g, struct host_conn *c);
/* On h->vg: a host listener on port and one connection from the guest
 * to it (sys_open_guest_initiated); returns the listener. */
struct host_listener *sys_open_to_host(struct sys_harness *h, uint32_t port,
				       struct host_conn **host, struct vguest_sock **guest);
/* On h->vg: a guest listener on port and one connection from the host to
 * it (sys_open_host_initiated); returns the listener. */
struct vguest_sock *sys_open_to_guest(struct sys_harness *h, uint32_t port,
				      struct host_conn **host, struct vguest_sock **guest);
/* sys_open_to_host or sys_open_to_guest, and a guest stream on the guest
 * socket (guest_stream_add); returns the stream. */
struct guest_stream *sys_stream_to_host(struct sys_harness *h, uint32_t port,
					struct host_conn **host, struct vguest_sock **guest);
struct guest_stream *sys_stream_to_guest(struct sys_harness *h, uint32_t port,
					 struct host_conn **host, struct vguest_sock **guest);
/* sys_stream_to_host with a host end that does not read, and the guest
 * sending size bytes of the pattern of seed, then after. */
struct guest_stream *sys_stream_to_deaf_host(struct sys_harness *h, uint32_t port,
					     uint32_t seed, uint64_t size,
					     enum sys_after after, struct host_conn **host,
					     struct vguest_sock **guest);
/* size bytes of the pattern of seed from the host connection c to the
 * guest stream gs (down) or from gs to c (up), checked byte for byte;
 * waits up to timeout_ms until all of them arrived. */
void sys_transfer_down(struct sys_harness *h, struct host_conn *c, struct guest_stream *gs,
		       uint32_t seed, uint64_t size, int timeout_ms);
void sys_transfer_up(struct sys_harness *h, struct guest_stream *gs, struct host_conn *c,
		     uint32_t seed, uint64_t size, int timeout_ms);
/* Wait until the host has len bytes of input, compare, consume. */
void sys_host_expect(struct sys_harness *h, struct host_conn *c,
		     const void *data, size_t len, int timeout_ms);
void sys_print_guest_stats(const struct vguest *vg);
/* Fail if the guest saw protocol errors, credit violations, bad used
 * entries or error signals. */
void sys_check_guest_clean(struct vguest *vg);

/* A stream packet header from the default guest (VGUEST_DEFAULT_CID) to
 * the host, buf_alloc VGUEST_DEFAULT_BUF_ALLOC, everything else 0, for
 * vguest_send_raw. */
struct vsock_header sys_guest_header(uint32_t src_port, uint32_t dst_port,
				     uint16_t op);

/* ---- patterns ---- */
void pattern_fill(uint32_t seed, uint64_t offset, uint8_t *buffer, size_t len);
/* Returns the index of the first wrong byte, or len if all match. */
size_t pattern_check(uint32_t seed, uint64_t offset, const uint8_t *buffer,
		     size_t len);

double sys_mib_per_s(uint64_t bytes, uint64_t ns);

/* ---- daemon counters and memory ---- */
/* Ask the running daemon for its stats over its control socket
 * (<uds-path>.ctl) as root, pumping the harness while waiting. Fails the
 * test if there is no answer. Free with sys_stats_free; the stats are
 * response->stats. */
Vsockmux__Control__Response *sys_query_stats(struct sys_harness *h,
					     bool include_connections);
/* A control Request framed as the daemon reads it (a 4-byte big-endian
 * length, then the packed message) into frame (size bytes, at least the
 * frame's length); returns the frame's length. */
size_t sys_control_frame(const Vsockmux__Control__Request *request, uint8_t *frame,
			 size_t size);
/* Over a connected control socket fd: send request (none if NULL), read
 * the framed Response within timeout_ms, pumping the harness meanwhile,
 * and close fd. NULL if the daemon closed before the first byte of an
 * answer; a cut-short or undecodable answer fails the test. Free with
 * sys_stats_free. */
Vsockmux__Control__Response *sys_control_exchange(struct sys_harness *h, int fd,
						  const Vsockmux__Control__Request *request,
						  int timeout_ms);
void sys_stats_free(Vsockmux__Control__Response *response);
/* stats->dropped[reason]; fails the test if the reason is not reported. */
uint64_t sys_stats_dropped(const Vsockmux__Control__Stats *stats, const char *reason);
/* One query, one reason. */
uint64_t sys_stats_dropped_now(struct sys_harness *h, const char *reason);
/* False when VSOCKMUX_SYSTEM_NO_RATE_CHECKS is set (the valgrind suite: the
 * daemon runs many times slower and CPU-bound, so "at least half the
 * undisturbed rate" measures valgrind): tests still move and check every
 * byte, and print the rates, but do not assert them. */
bool sys_rate_checks(void);
/* From /proc/PID/stat: the state letter (R, S, T, ...) and utime + stime
 * in clock ticks; false if the process cannot be read. Either may be
 * NULL. */
bool sys_proc_stat(pid_t pid, char *state, uint64_t *cpu_ticks);
/* VmRSS of a process in KiB, or -1. The muxer is sys_daemon_child_pid(h). */
long sys_process_rss_kib(pid_t pid);

#endif
