/*
 * sys_harness.c - daemon control, host sockets, streams, the poll loop and
 * the test runner for the system tests (see sys_harness.h).
 *
 * Never: sleeps to wait for something; waits are poll()/timed condition
 * waits bounded by the test deadline.
 */
#include "sys_harness.h"
#include "vsockmux/control_wire.h"

#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SYS_SCRATCH_SIZE (256u * 1024u)
#define SYS_HOST_OUT_TARGET (256u * 1024u)
#define SYS_READY_TIMEOUT_MS 20000
#define SYS_STOP_TIMEOUT_MS 5000
#define SYS_LOG_CAPTURE_MAX (16u * 1024u * 1024u)
#define PATTERN_PERIOD 65521u
#define PATTERN_CHUNK 65536u

/* ------------------------------------------------------------------ */
/* time */

uint64_t sys_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t sys_wait_end(struct sys_harness *h, int timeout_ms)
{
	uint64_t end = sys_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	if (h->deadline_ns && end > h->deadline_ns && !h->in_teardown)
		end = h->deadline_ns;
	return end;
}

int sys_ms_until(uint64_t end_ns)
{
	uint64_t now = sys_now_ns();
	if (now >= end_ns)
		return 0;
	return (int)((end_ns - now + 999999ull) / 1000000ull);
}

double sys_mib_per_s(uint64_t bytes, uint64_t ns)
{
	if (ns == 0)
		ns = 1;
	return ((double)bytes / (1024.0 * 1024.0)) / ((double)ns / 1e9);
}

/* ------------------------------------------------------------------ */
/* failing */

static jmp_buf sys_fail_jump;
static struct sys_harness *sys_current;

void sys_fail(const char *file, int line, const char *format, ...)
{
	va_list args;
	fflush(stdout);
	fprintf(stderr, "FAIL: %s: %s:%d: ", sys_current ? sys_current->test_name : "?",
		file, line);
	va_start(args, format);
	vfprintf(stderr, format, args);
	va_end(args);
	fputc('\n', stderr);
	if (!sys_current)
		abort();
	sys_current->failed = true;
	/* in teardown the jump lands in sys_teardown, which carries on */
	longjmp(sys_fail_jump, sys_current->in_teardown ? 2 : 1);
}

/* ------------------------------------------------------------------ */
/* patterns */

static uint8_t pattern_table[PATTERN_PERIOD + PATTERN_CHUNK];
static pthread_once_t pattern_once = PTHREAD_ONCE_INIT;

static void pattern_init(void)
{
	uint32_t state = 0x9e3779b9u;
	for (size_t i = 0; i < PATTERN_PERIOD; i++) {
		state ^= state << 13;
		state ^= state >> 17;
		state ^= state << 5;
		pattern_table[i] = (uint8_t)(state >> 11);
	}
	/* the tail repeats the start so any chunk is one contiguous copy */
	for (size_t i = 0; i < PATTERN_CHUNK; i++)
		pattern_table[PATTERN_PERIOD + i] = pattern_table[i];
}

static size_t pattern_index(uint32_t seed, uint64_t offset)
{
	return (size_t)((offset + (uint64_t)seed * 7919u) % PATTERN_PERIOD);
}

void pattern_fill(uint32_t seed, uint64_t offset, uint8_t *buffer, size_t len)
{
	pthread_once(&pattern_once, pattern_init);
	while (len > 0) {
		size_t chunk = len < PATTERN_CHUNK ? len : PATTERN_CHUNK;
		memcpy(buffer, pattern_table + pattern_index(seed, offset), chunk);
		buffer += chunk;
		offset += chunk;
		len -= chunk;
	}
}

size_t pattern_check(uint32_t seed, uint64_t offset, const uint8_t *buffer,
		     size_t len)
{
	size_t done = 0;
	pthread_once(&pattern_once, pattern_init);
	while (done < len) {
		size_t left = len - done;
		size_t chunk = left < PATTERN_CHUNK ? left : PATTERN_CHUNK;
		const uint8_t *expected = pattern_table + pattern_index(seed, offset + done);
		if (memcmp(buffer + done, expected, chunk) != 0) {
			size_t i = 0;
			while (buffer[done + i] == expected[i])
				i++;
			return done + i;
		}
		done += chunk;
	}
	return len;
}

/* Feed received bytes into a sink; fail on wrong content or excess. */
static void sink_feed(const char *name, struct sys_sink *sink,
		      const uint8_t *data, size_t len)
{
	size_t bad;
	if (len == 0)
		return;
	if (sink->received == 0)
		sink->start_ns = sys_now_ns();
	if (sink->received + len > sink->expected)
		FAIL("%s: received %" PRIu64 " bytes, more than the %" PRIu64 " expected",
		     name, sink->received + len, sink->expected);
	bad = pattern_check(sink->seed, sink->received, data, len);
	if (bad != len) {
		uint8_t want;
		pattern_fill(sink->seed, sink->received + bad, &want, 1);
		FAIL("%s: content mismatch at stream offset %" PRIu64
		     ": got 0x%02x, expected 0x%02x (chunk of %zu bytes)",
		     name, sink->received + bad, data[bad], want, len);
	}
	sink->received += len;
	if (sink->received == sink->expected)
		sink->end_ns = sys_now_ns();
}

/* ------------------------------------------------------------------ */
/* byte buffers */

static size_t buf_len(const struct sys_buf *b)
{
	return b->tail - b->head;
}

static uint8_t *buf_reserve(struct sys_buf *b, size_t extra)
{
	size_t used = buf_len(b);
	if (b->tail + extra > b->capacity && b->head > 0) {
		memmove(b->data, b->data + b->head, used);
		b->head = 0;
		b->tail = used;
	}
	if (b->tail + extra > b->capacity) {
		size_t capacity = b->capacity ? b->capacity : 4096;
		uint8_t *grown;
		while (capacity < b->tail + extra)
			capacity *= 2;
		grown = realloc(b->data, capacity);
		if (!grown)
			FAIL("out of memory");
		b->data = grown;
		b->capacity = capacity;
	}
	return b->data + b->tail;
}

static void buf_append(struct sys_buf *b, const void *data, size_t len)
{
	memcpy(buf_reserve(b, len), data, len);
	b->tail += len;
}

static void buf_consume(struct sys_buf *b, size_t len)
{
	b->head += len;
	if (b->head >= b->tail)
		b->head = b->tail = 0;
}

static void buf_free(struct sys_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

/* ------------------------------------------------------------------ */
/* daemon: stderr drain thread */

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int fd;
	bool quiet;
	bool ready;
	bool eof;
	unsigned sanitizer_hits;
	char first_sanitizer_line[256];
	char *log;              /* every line, '\n'-ended, NUL-terminated */
	size_t log_len, log_capacity;
	pthread_t thread;
} sys_drain = { .lock = PTHREAD_MUTEX_INITIALIZER, .fd = -1 };

static void drain_line(const char *line)
{
	/* ASan/UBSan reports, and valgrind's (tests/valgrind: errors are
	 * printed between markers) */
	bool sanitizer = strstr(line, "Sanitizer") || strstr(line, "runtime error:") ||
			 strstr(line, "VALGRIND-ERROR-BEGIN");
	if (!sys_drain.quiet || sanitizer)
		fprintf(stderr, "[vsockmuxd] %s\n", line);
	pthread_mutex_lock(&sys_drain.lock);
	if (!sys_drain.ready && strstr(line, "ready")) {
		sys_drain.ready = true;
		pthread_cond_broadcast(&sys_drain.cond);
	}
	{
		size_t len = strlen(line);
		size_t need = sys_drain.log_len + len + 2;
		if (need > sys_drain.log_capacity && need <= SYS_LOG_CAPTURE_MAX) {
			size_t capacity = sys_drain.log_capacity ? sys_drain.log_capacity : 65536;
			char *grown;
			while (capacity < need)
				capacity *= 2;
			grown = realloc(sys_drain.log, capacity);
			if (grown) {
				sys_drain.log = grown;
				sys_drain.log_capacity = capacity;
			}
		}
		if (need <= sys_drain.log_capacity) {
			memcpy(sys_drain.log + sys_drain.log_len, line, len);
			sys_drain.log_len += len;
			sys_drain.log[sys_drain.log_len++] = '\n';
			sys_drain.log[sys_drain.log_len] = '\0';
		}
	}
	if (sanitizer) {
		if (sys_drain.sanitizer_hits++ == 0)
			snprintf(sys_drain.first_sanitizer_line,
				 sizeof(sys_drain.first_sanitizer_line), "%s", line);
	}
	pthread_mutex_unlock(&sys_drain.lock);
}

static void *drain_main(void *arg)
{
	char chunk[8192];
	char line[2048];
	size_t line_len = 0;
	(void)arg;
	for (;;) {
		ssize_t n = read(sys_drain.fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n; i++) {
			if (chunk[i] == '\n' || line_len == sizeof(line) - 1) {
				line[line_len] = '\0';
				drain_line(line);
				line_len = 0;
				if (chunk[i] == '\n')
					continue;
			}
			line[line_len++] = chunk[i];
		}
	}
	if (line_len > 0) {
		line[line_len] = '\0';
		drain_line(line);
	}
	pthread_mutex_lock(&sys_drain.lock);
	sys_drain.eof = true;
	pthread_cond_broadcast(&sys_drain.cond);
	pthread_mutex_unlock(&sys_drain.lock);
	return NULL;
}

/* Wait (bounded) until pred over sys_drain holds; returns it. */
static bool drain_wait(bool want_ready, int timeout_ms)
{
	struct timespec until;
	bool result;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += timeout_ms / 1000;
	until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&sys_drain.lock);
	for (;;) {
		result = want_ready ? sys_drain.ready : sys_drain.eof;
		if (result || sys_drain.eof)
			break;
		if (pthread_cond_timedwait(&sys_drain.cond, &sys_drain.lock, &until) == ETIMEDOUT) {
			result = want_ready ? sys_drain.ready : sys_drain.eof;
			break;
		}
	}
	pthread_mutex_unlock(&sys_drain.lock);
	return result;
}

bool sys_daemon_alive(struct sys_harness *h)
{
	bool eof;
	if (!h->drain_started)
		return false;
	pthread_mutex_lock(&sys_drain.lock);
	eof = sys_drain.eof;
	pthread_mutex_unlock(&sys_drain.lock);
	return !eof;
}

size_t sys_log_mark(struct sys_harness *h)
{
	size_t mark;
	(void)h;
	pthread_mutex_lock(&sys_drain.lock);
	mark = sys_drain.log_len;
	pthread_mutex_unlock(&sys_drain.lock);
	return mark;
}

/* Lines after mark containing text; with first, stop at the first. */
static unsigned sys_log_scan(size_t mark, const char *text, bool first)
{
	unsigned count = 0;
	pthread_mutex_lock(&sys_drain.lock);
	if (sys_drain.log && mark < sys_drain.log_len) {
		const char *p = sys_drain.log + mark;
		while ((p = strstr(p, text)) != NULL) {
			count++;
			if (first)
				break;
			p = strchr(p, '\n');
			if (!p)
				break;
		}
	}
	pthread_mutex_unlock(&sys_drain.lock);
	return count;
}

unsigned sys_log_count(struct sys_harness *h, size_t mark, const char *text)
{
	(void)h;
	return sys_log_scan(mark, text, false);
}

bool sys_log_wait(struct sys_harness *h, size_t mark, const char *text,
		  int timeout_ms)
{
	uint64_t end = sys_wait_end(h, timeout_ms);
	for (;;) {
		bool gone;
		int slice;
		if (sys_log_scan(mark, text, true) > 0)
			return true;
		pthread_mutex_lock(&sys_drain.lock);
		gone = sys_drain.eof;
		pthread_mutex_unlock(&sys_drain.lock);
		if (gone)
			return sys_log_scan(mark, text, true) > 0;
		if (sys_now_ns() >= end)
			return false;
		/* the drain thread does not wake the poll loop: short slices */
		slice = sys_ms_until(end);
		sys_pump(h, slice < 10 ? slice : 10);
	}
}

bool sys_rate_checks(void)
{
	return getenv("VSOCKMUX_SYSTEM_NO_RATE_CHECKS") == NULL;
}

bool sys_proc_stat(pid_t pid, char *state, uint64_t *cpu_ticks)
{
	char path[64], text[1024], letter;
	unsigned long long utime = 0, stime = 0;
	const char *p;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return false;
	n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = '\0';
	p = strrchr(text, ')');
	/* fields after "(comm)": state(3) ... utime(14) stime(15) */
	if (!p || sscanf(p + 1, " %c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
			 &letter, &utime, &stime) != 3)
		return false;
	if (state)
		*state = letter;
	if (cpu_ticks)
		*cpu_ticks = utime + stime;
	return true;
}

/* utime + stime of pid in clock ticks; 0 if unreadable. */
static uint64_t sys_proc_cpu_ticks(pid_t pid)
{
	uint64_t ticks = 0;

	return sys_proc_stat(pid, NULL, &ticks) ? ticks : 0;
}

struct vsock_header sys_guest_header(uint32_t src_port, uint32_t dst_port,
				     uint16_t op)
{
	struct vsock_header header = {
		.src_cid = VGUEST_DEFAULT_CID,
		.dst_cid = VSOCK_HOST_CID,
		.src_port = src_port,
		.dst_port = dst_port,
		.type = VSOCK_TYPE_STREAM,
		.op = op,
		.buf_alloc = VGUEST_DEFAULT_BUF_ALLOC,
	};
	return header;
}

double sys_daemon_cpu_ms(struct sys_harness *h)
{
	char path[64];
	uint64_t ticks;
	long hz = sysconf(_SC_CLK_TCK);
	FILE *f;
	int child;

	if (h->daemon_pid <= 0)
		return 0;
	ticks = sys_proc_cpu_ticks(h->daemon_pid);
	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)h->daemon_pid,
		 (int)h->daemon_pid);
	f = fopen(path, "r");
	if (f) {
		while (fscanf(f, "%d", &child) == 1)
			ticks += sys_proc_cpu_ticks((pid_t)child);
		fclose(f);
	}
	return (double)ticks * 1000.0 / (double)(hz > 0 ? hz : 100);
}

static bool sys_wait_pid(pid_t pid, int *status, int timeout_ms);
static void sys_describe_status(int status, char *out, size_t size);

pid_t sys_daemon_child_pid(struct sys_harness *h)
{
	char path[64];
	int child = -1;
	FILE *f;
	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)h->daemon_pid,
		 (int)h->daemon_pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (fscanf(f, "%d", &child) != 1)
		child = -1;
	fclose(f);
	return (pid_t)child;
}

void sys_expect_daemon_exit(struct sys_harness *h)
{
	h->daemon_exit_expected = true;
}

bool sys_reap_daemon(struct sys_harness *h, int timeout_ms, int *status)
{
	if (h->daemon_reaped) {
		*status = h->daemon_status;
		return true;
	}
	if (!sys_wait_pid(h->daemon_pid, status, timeout_ms))
		return false;
	h->daemon_reaped = true;
	h->daemon_status = *status;
	return true;
}

bool sys_wait_daemon_gone(struct sys_harness *h, int timeout_ms)
{
	return h->drain_started && drain_wait(false, timeout_ms);
}

void sys_stop_daemon_checked(struct sys_harness *h)
{
	int status = 0;
	char how[96];
	sys_expect_daemon_exit(h);
	CHECKF(kill(h->daemon_pid, SIGTERM) == 0, "kill: %s", strerror(errno));
	CHECKF(sys_reap_daemon(h, SYS_STOP_TIMEOUT_MS, &status),
	       "daemon did not exit within %d ms of SIGTERM", SYS_STOP_TIMEOUT_MS);
	sys_describe_status(status, how, sizeof(how));
	CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	       "daemon ended with %s after SIGTERM", how);
	CHECKF(sys_wait_daemon_gone(h, SYS_STOP_TIMEOUT_MS),
	       "a daemon process outlived the main one after SIGTERM");
	pthread_mutex_lock(&sys_drain.lock);
	status = (int)sys_drain.sanitizer_hits;
	pthread_mutex_unlock(&sys_drain.lock);
	CHECKF(status == 0, "daemon printed sanitizer reports");
}

void sys_check_daemon_idle(struct sys_harness *h, int window_ms, int max_cpu_ms,
			   const char *situation)
{
	double before = sys_daemon_cpu_ms(h), used;
	sys_pump_for(h, window_ms);
	used = sys_daemon_cpu_ms(h) - before;
	printf("daemon CPU while %s: %.0f ms in %d ms\n", situation, used, window_ms);
	CHECKF(used <= max_cpu_ms, "daemon used %.0f ms of CPU in %d ms while %s "
	       "(busy loop?)", used, window_ms, situation);
}

/* ------------------------------------------------------------------ */
/* daemon: start and stop */

static void sys_describe_status(int status, char *out, size_t size)
{
	if (WIFSIGNALED(status))
		snprintf(out, size, "killed by signal %d (%s)", WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
	else if (WIFEXITED(status))
		snprintf(out, size, "exit status %d", WEXITSTATUS(status));
	else
		snprintf(out, size, "status %#x", status);
}

void sys_copy_executable(struct sys_harness *h, const char *path, char *out,
			 size_t out_size)
{
	const char *base = strrchr(path, '/');
	char buffer[65536];
	int in, copy;
	ssize_t got;

	CHECK((size_t)snprintf(out, out_size, "%s/%s", h->dir, base ? base + 1 : path) < out_size);
	in = open(path, O_RDONLY | O_CLOEXEC);
	CHECKF(in >= 0, "%s: %s", path, strerror(errno));
	copy = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
	CHECKF(copy >= 0, "%s: %s", out, strerror(errno));
	while ((got = read(in, buffer, sizeof(buffer))) > 0)
		CHECK(write(copy, buffer, (size_t)got) == got);
	CHECK(got == 0);
	close(in);
	CHECK(fchmod(copy, 0755) == 0 && close(copy) == 0);
}

void sys_start_daemon(struct sys_harness *h, const char *const *extra_args)
{
	const char *exe = getenv("VSOCKMUXD");
	char copied_exe[160];
	const char *level = getenv("VSOCKMUX_SYSTEM_LOG_LEVEL");
	const char *argv[32];
	char cid[24];
	size_t argc = 0;
	int pipefd[2], test_pipe[2] = { -1, -1 };
	pthread_condattr_t attr;
	pid_t pid;

	CHECKF(exe && *exe, "VSOCKMUXD is not set (path of the built vsockmuxd)");
	CHECKF(h->daemon_pid == 0, "daemon already started");
	CHECKF(access(exe, X_OK) == 0, "%s: %s", exe, strerror(errno));
	if (h->daemon_uid != 0) {
		sys_copy_executable(h, exe, copied_exe, sizeof(copied_exe));
		exe = copied_exe;
	}
	argv[argc++] = exe;
	snprintf(cid, sizeof(cid), "%" PRIu64, h->guest_cid);
	argv[argc++] = "--guest-cid";
	argv[argc++] = cid;
	argv[argc++] = "--socket";
	argv[argc++] = h->vhost_path;
	argv[argc++] = "--uds-path";
	argv[argc++] = h->uds_path;
	argv[argc++] = "--log-level";
	argv[argc++] = level && *level ? level : "debug";
	for (size_t i = 0; extra_args && extra_args[i] && argc < 31; i++)
		argv[argc++] = extra_args[i];
	argv[argc] = NULL;

	CHECKF(pipe2(pipefd, O_CLOEXEC) == 0, "pipe2: %s", strerror(errno));
	(void)fcntl(pipefd[0], F_SETPIPE_SZ, 1 << 20);
	if (h->daemon_stderr == SYS_STDERR_TEST_PIPE)
		CHECKF(pipe2(test_pipe, O_CLOEXEC) == 0, "pipe2: %s", strerror(errno));
	if (h->daemon_stderr == SYS_STDERR_TEST_PIPE)
		(void)fcntl(test_pipe[0], F_SETPIPE_SZ, 4096); /* fills fast */
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	CHECKF(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		sigset_t none;
		/* never outlive the test */
		(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
		signal(SIGPIPE, SIG_DFL);
		signal(SIGALRM, SIG_DFL);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		if (dup2(pipefd[1], STDERR_FILENO) < 0 || dup2(pipefd[1], STDOUT_FILENO) < 0)
			_exit(126);
		if (h->daemon_stderr == SYS_STDERR_DEV_FULL) {
			int full = open("/dev/full", O_WRONLY | O_CLOEXEC);
			if (full < 0 || dup2(full, STDERR_FILENO) < 0)
				_exit(126);
		} else if (h->daemon_stderr == SYS_STDERR_TEST_PIPE) {
			if (dup2(test_pipe[1], STDERR_FILENO) < 0)
				_exit(126);
		}
		if (h->daemon_nofile != 0) {
			struct rlimit limit = { .rlim_cur = h->daemon_nofile,
						.rlim_max = h->daemon_nofile };
			if (setrlimit(RLIMIT_NOFILE, &limit) != 0)
				_exit(124);
		}
		if (h->daemon_uid != 0 &&
		    (setgroups(0, NULL) != 0 || setresgid(h->daemon_gid, h->daemon_gid, h->daemon_gid) != 0 ||
		     setresuid(h->daemon_uid, h->daemon_uid, h->daemon_uid) != 0))
			_exit(125);
		/* sanitizer reports must end in a signal we can see */
		setenv("ASAN_OPTIONS", "abort_on_error=1:halt_on_error=1", 0);
		setenv("UBSAN_OPTIONS", "abort_on_error=1:halt_on_error=1:print_stacktrace=1", 0);
		execv(exe, (char *const *)argv);
		fprintf(stderr, "exec %s: %s\n", exe, strerror(errno));
		_exit(127);
	}
	close(pipefd[1]);
	h->daemon_pid = pid;
	h->daemon_log_fd = pipefd[0];
	if (h->daemon_stderr == SYS_STDERR_TEST_PIPE) {
		close(test_pipe[1]);
		h->daemon_stderr_fd = test_pipe[0];
	}

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&sys_drain.cond, &attr);
	pthread_condattr_destroy(&attr);
	sys_drain.fd = pipefd[0];
	sys_drain.ready = false;
	sys_drain.eof = false;
	sys_drain.sanitizer_hits = 0;
	sys_drain.quiet = getenv("VSOCKMUX_SYSTEM_QUIET") != NULL;
	CHECKF(pthread_create(&sys_drain.thread, NULL, drain_main, NULL) == 0,
	       "pthread_create failed");
	h->drain_started = true;

	if (h->daemon_stderr != SYS_STDERR_DRAIN) {
		/* no "ready" line to see: ready once the control socket answers */
		uint64_t end = sys_now_ns() + SYS_READY_TIMEOUT_MS * 1000000ull;
		for (;;) {
			struct sockaddr_un address = { .sun_family = AF_UNIX };
			int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
			int connected;
			CHECK(probe >= 0);
			CHECK((size_t)snprintf(address.sun_path, sizeof(address.sun_path),
					       "%s.ctl", h->uds_path) < sizeof(address.sun_path));
			connected = connect(probe, (struct sockaddr *)&address,
					    sizeof(address));
			close(probe);
			if (connected == 0)
				break;
			CHECKF(sys_daemon_alive(h), "daemon exited before it was ready");
			CHECKF(sys_now_ns() < end, "daemon's control socket not there "
			       "within %d ms", SYS_READY_TIMEOUT_MS);
			(void)poll(NULL, 0, 5); /* bounded re-check */
		}
		sys_stats_free(sys_query_stats(h, false));
		return;
	}
	if (!drain_wait(true, SYS_READY_TIMEOUT_MS)) {
		int status = 0;
		char how[96] = "still running";
		if (waitpid(pid, &status, WNOHANG) == pid) {
			h->daemon_reaped = true;
			h->daemon_status = status;
			sys_describe_status(status, how, sizeof(how));
		}
		FAIL("daemon did not print a \"ready\" line within %d ms (%s)",
		     SYS_READY_TIMEOUT_MS, how);
	}
}

/* Wait for pid to exit within timeout_ms; true if reaped. */
static bool sys_wait_pid(pid_t pid, int *status, int timeout_ms)
{
	uint64_t end = sys_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	for (;;) {
		pid_t r = waitpid(pid, status, WNOHANG);
		if (r == pid)
			break;
		if (r < 0 && errno != EINTR) {
			if (pidfd >= 0)
				close(pidfd);
			return false;
		}
		if (sys_now_ns() >= end) {
			if (pidfd >= 0)
				close(pidfd);
			return false;
		}
		if (pidfd >= 0) {
			struct pollfd pfd = { .fd = pidfd, .events = POLLIN };
			(void)poll(&pfd, 1, sys_ms_until(end));
		} else {
			/* no pidfd: bounded re-check of waitpid */
			(void)poll(NULL, 0, 10);
		}
	}
	if (pidfd >= 0)
		close(pidfd);
	return true;
}

/* Stop the daemon and check how it ended. Reports via h->failed. */
static void sys_stop_daemon(struct sys_harness *h)
{
	int status = 0;

	if (h->daemon_pid <= 0)
		return;
	if (!h->daemon_reaped) {
		char how[96];
		if (waitpid(h->daemon_pid, &status, WNOHANG) == h->daemon_pid) {
			h->daemon_reaped = true;
			h->daemon_status = status;
			if (!h->daemon_exit_expected) {
				sys_describe_status(status, how, sizeof(how));
				fprintf(stderr, "FAIL: %s: daemon had already exited (%s)\n",
					h->test_name, how);
				h->failed = true;
			}
		} else {
			kill(h->daemon_pid, SIGTERM);
			if (sys_wait_pid(h->daemon_pid, &status, SYS_STOP_TIMEOUT_MS)) {
				h->daemon_reaped = true;
				h->daemon_status = status;
			} else {
				fprintf(stderr, "FAIL: %s: daemon did not exit within %d ms of "
					"SIGTERM; killing it\n", h->test_name, SYS_STOP_TIMEOUT_MS);
				h->failed = true;
				kill(h->daemon_pid, SIGKILL);
				if (sys_wait_pid(h->daemon_pid, &status, SYS_STOP_TIMEOUT_MS))
					h->daemon_reaped = true;
				h->daemon_status = 0;
			}
			if (h->daemon_reaped && h->daemon_status != 0) {
				sys_describe_status(h->daemon_status, how, sizeof(how));
				fprintf(stderr, "FAIL: %s: daemon ended with %s after SIGTERM%s\n",
					h->test_name, how,
					WIFSIGNALED(h->daemon_status)
					? " (sanitizer abort or crash?)" : "");
				h->failed = true;
			}
		}
	}
	if (h->drain_started) {
		if (!drain_wait(false, SYS_STOP_TIMEOUT_MS)) {
			fprintf(stderr, "FAIL: %s: a daemon process still holds stderr %d ms "
				"after the main process exited (other process did not exit)\n",
				h->test_name, SYS_STOP_TIMEOUT_MS);
			h->failed = true;
			pthread_detach(sys_drain.thread);
		} else {
			pthread_join(sys_drain.thread, NULL);
			close(sys_drain.fd);
			sys_drain.fd = -1;
		}
		h->drain_started = false;
		if (sys_drain.sanitizer_hits > 0) {
			fprintf(stderr, "FAIL: %s: daemon printed %u sanitizer line(s), first: %s\n",
				h->test_name, sys_drain.sanitizer_hits,
				sys_drain.first_sanitizer_line);
			h->failed = true;
		}
	}
}

void sys_forget_daemon(struct sys_harness *h)
{
	int status;
	CHECKF(h->daemon_exit_expected, "sys_forget_daemon without sys_expect_daemon_exit");
	CHECKF(sys_reap_daemon(h, SYS_STOP_TIMEOUT_MS, &status),
	       "the daemon's main process has not exited");
	CHECKF(sys_wait_daemon_gone(h, SYS_STOP_TIMEOUT_MS),
	       "a daemon process still holds stderr");
	pthread_join(sys_drain.thread, NULL);
	close(sys_drain.fd);
	sys_drain.fd = -1;
	h->drain_started = false;
	CHECKF(sys_drain.sanitizer_hits == 0, "daemon printed %u sanitizer line(s), "
	       "first: %s", sys_drain.sanitizer_hits, sys_drain.first_sanitizer_line);
	if (h->daemon_stderr == SYS_STDERR_TEST_PIPE && h->daemon_stderr_fd >= 0) {
		close(h->daemon_stderr_fd);
		h->daemon_stderr_fd = -1;
	}
	h->daemon_pid = 0;
	h->daemon_reaped = false;
	h->daemon_status = 0;
	h->daemon_exit_expected = false;
}

/* ------------------------------------------------------------------ */
/* guests */

struct vguest *sys_guest_new(struct sys_harness *h,
			     const struct vguest_options *options)
{
	struct vguest_options defaults;
	struct vguest *vg;
	int slot = -1;

	for (int i = 0; i < SYS_MAX_GUESTS; i++)
		if (!h->guests[i]) {
			slot = i;
			break;
		}
	CHECKF(slot >= 0, "too many guests");
	if (!options) {
		vguest_options_default(&defaults);
		defaults.guest_cid = h->guest_cid;
		options = &defaults;
	}
	vg = vguest_create(options);
	CHECKF(vg, "vguest_create: %s", strerror(errno));
	h->guests[slot] = vg;
	if (!h->vg)
		h->vg = vg;
	if (vguest_connect(vg, h->vhost_path) != 0)
		FAIL("vhost-user set-up failed: %s", vguest_error(vg));
	return vg;
}

void sys_guest_drop(struct sys_harness *h, struct vguest *vg)
{
	struct guest_stream **link = &h->streams;
	while (*link) {
		struct guest_stream *gs = *link;
		if (gs->sock->vg == vg) {
			*link = gs->next;
			free(gs);
		} else {
			link = &gs->next;
		}
	}
	for (int i = 0; i < SYS_MAX_GUESTS; i++)
		if (h->guests[i] == vg)
			h->guests[i] = NULL;
	if (h->vg == vg)
		h->vg = NULL;
	vguest_destroy(vg);
}

void sys_setup(struct sys_harness *h)
{
	sys_start_daemon(h, NULL);
	(void)sys_guest_new(h, NULL);
}

void sys_print_guest_stats(const struct vguest *vg)
{
	const struct vguest_stats *s = vguest_get_stats(vg);
	fprintf(stderr,
		"vguest stats: rx pkts REQ %" PRIu64 " RESP %" PRIu64 " RST %" PRIu64
		" SHUT %" PRIu64 " RW %" PRIu64 " CUPD %" PRIu64 " CREQ %" PRIu64
		" | tx pkts REQ %" PRIu64 " RESP %" PRIu64 " RST %" PRIu64
		" SHUT %" PRIu64 " RW %" PRIu64 " CUPD %" PRIu64
		" | rx bytes %" PRIu64 " tx bytes %" PRIu64
		" | protocol errors %" PRIu64 " credit violations %" PRIu64
		" unknown-socket %" PRIu64 " | irq rx %" PRIu64 " tx %" PRIu64
		" stale %" PRIu64 " early %" PRIu64 " err %" PRIu64 " | kicks %" PRIu64
		" suppressed %" PRIu64 " ring-full %" PRIu64 "\n",
		s->rx_packets[1], s->rx_packets[2], s->rx_packets[3], s->rx_packets[4],
		s->rx_packets[5], s->rx_packets[6], s->rx_packets[7],
		s->tx_packets[1], s->tx_packets[2], s->tx_packets[3], s->tx_packets[4],
		s->tx_packets[5], s->tx_packets[6],
		s->rx_payload_bytes, s->tx_payload_bytes, s->protocol_errors,
		s->credit_violations, s->unknown_socket_packets, s->rx_interrupts,
		s->tx_interrupts, s->stale_call_signals, s->early_call_signals,
		s->err_signals, s->kicks,
		s->kicks_suppressed, s->tx_ring_full);
}

void sys_check_guest_clean(struct vguest *vg)
{
	const struct vguest_stats *s = vguest_get_stats(vg);
	CHECKF(s->protocol_errors == 0, "guest saw %" PRIu64 " protocol errors "
	       "from the daemon (see PROTOCOL ERROR lines)", s->protocol_errors);
	CHECKF(s->credit_violations == 0, "daemon exceeded the guest's credit %"
	       PRIu64 " times", s->credit_violations);
	CHECKF(s->bad_used_ids == 0 && s->rx_used_bad_length == 0 &&
	       s->tx_used_nonzero == 0, "bad used entries: ids %" PRIu64
	       " rx-len %" PRIu64 " tx-nonzero %" PRIu64, s->bad_used_ids,
	       s->rx_used_bad_length, s->tx_used_nonzero);
	CHECKF(s->err_signals == 0, "daemon signalled a vring error fd");
}

/* ------------------------------------------------------------------ */
/* host connections */

static struct host_conn *host_conn_new(struct sys_harness *h, int fd,
				       const char *name)
{
	struct host_conn *c = calloc(1, sizeof(*c));
	CHECKF(c, "out of memory");
	c->h = h;
	c->fd = fd;
	snprintf(c->name, sizeof(c->name), "%s", name);
	c->next = h->conns;
	h->conns = c;
	return c;
}

static int sys_set_nonblock(int fd)
{
	int flags = fcntl(fd, F_GETFL);
	if (flags < 0)
		return -1;
	return fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

struct host_conn *host_connect(struct sys_harness *h)
{
	static unsigned counter;
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct timeval timeout = { .tv_sec = 5 };
	char name[48];
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	CHECKF(fd >= 0, "socket: %s", strerror(errno));
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", h->uds_path);
	/* a full backlog blocks connect; bound it */
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
		int saved = errno;
		close(fd);
		FAIL("connect %s: %s", h->uds_path, strerror(saved));
	}
	CHECKF(sys_set_nonblock(fd) == 0, "fcntl: %s", strerror(errno));
	snprintf(name, sizeof(name), "host-conn-%u", ++counter);
	return host_conn_new(h, fd, name);
}

struct host_conn *host_conn_adopt(struct sys_harness *h, int fd)
{
	static unsigned counter;
	char name[48];

	CHECKF(sys_set_nonblock(fd) == 0, "fcntl: %s", strerror(errno));
	snprintf(name, sizeof(name), "host-adopted-%u", ++counter);
	return host_conn_new(h, fd, name);
}

struct host_conn *host_connect_port(struct sys_harness *h, uint32_t port)
{
	char line[32];
	struct host_conn *c = host_connect(h);
	snprintf(line, sizeof(line), "CONNECT %u\n", port);
	host_write_str(c, line);
	snprintf(c->name, sizeof(c->name), "host->guest:%u", port);
	return c;
}

static void host_try_write(struct host_conn *c)
{
	while (c->fd >= 0 && !c->error && buf_len(&c->out) > 0) {
		ssize_t n = send(c->fd, c->out.data + c->out.head, buf_len(&c->out),
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			buf_consume(&c->out, (size_t)n);
			c->bytes_out += (uint64_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		c->error = true;
		c->error_code = errno;
		buf_consume(&c->out, buf_len(&c->out));
		return;
	}
	if (c->fd >= 0 && buf_len(&c->out) == 0 && c->shut_wr_pending && !c->shut_wr_done) {
		if (shutdown(c->fd, SHUT_WR) != 0 && !c->error) {
			c->error = true;
			c->error_code = errno;
		}
		c->shut_wr_done = true;
	}
}

void host_write(struct host_conn *c, const void *data, size_t len)
{
	CHECKF(c->fd >= 0, "%s: write after close", c->name);
	buf_append(&c->out, data, len);
	host_try_write(c);
}

void host_write_str(struct host_conn *c, const char *text)
{
	host_write(c, text, strlen(text));
}

bool host_take_line(struct host_conn *c, char *line, size_t capacity)
{
	const uint8_t *start = c->in.data + c->in.head;
	const uint8_t *nl = buf_len(&c->in) ? memchr(start, '\n', buf_len(&c->in)) : NULL;
	size_t len;
	if (!nl)
		return false;
	len = (size_t)(nl - start) + 1;
	CHECKF(len < capacity, "%s: line of %zu bytes too long", c->name, len);
	memcpy(line, start, len);
	line[len] = '\0';
	buf_consume(&c->in, len);
	return true;
}

size_t host_in_len(const struct host_conn *c)
{
	return buf_len(&c->in);
}

const uint8_t *host_in_data(const struct host_conn *c)
{
	return c->in.data + c->in.head;
}

void host_in_consume(struct host_conn *c, size_t len)
{
	buf_consume(&c->in, len);
}

void host_shutdown_wr(struct host_conn *c)
{
	c->shut_wr_pending = true;
	host_try_write(c);
}

void host_close(struct host_conn *c)
{
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
}

void host_conn_free(struct host_conn *c)
{
	struct sys_harness *h = c->h;
	struct host_conn **link;
	for (link = &h->conns; *link; link = &(*link)->next)
		if (*link == c) {
			*link = c->next;
			break;
		}
	for (struct host_listener *l = h->listeners; l; l = l->next) {
		struct host_conn **a = &l->accept_head;
		struct host_conn *prev = NULL;
		while (*a && *a != c) {
			prev = *a;
			a = &(*a)->accept_next;
		}
		if (*a) {
			*a = c->accept_next;
			if (l->accept_tail == c)
				l->accept_tail = prev;
		}
	}
	host_close(c);
	buf_free(&c->in);
	buf_free(&c->out);
	free(c);
}

bool host_peer_closed(const struct host_conn *c)
{
	return c->read_eof || c->error;
}

void host_set_paused(struct host_conn *c, bool paused)
{
	c->paused = paused;
}

void host_source(struct host_conn *c, uint32_t seed, uint64_t total,
		 enum sys_after after)
{
	memset(&c->source, 0, sizeof(c->source));
	c->source.active = true;
	c->source.seed = seed;
	c->source.total = total;
	c->source.after = after;
	c->source.start_ns = sys_now_ns();
}

void host_sink(struct host_conn *c, uint32_t seed, uint64_t expected)
{
	memset(&c->sink, 0, sizeof(c->sink));
	c->sink.active = true;
	c->sink.seed = seed;
	c->sink.expected = expected;
	/* bytes that arrived before the sink was attached */
	if (buf_len(&c->in) > 0) {
		sink_feed(c->name, &c->sink, c->in.data + c->in.head, buf_len(&c->in));
		buf_consume(&c->in, buf_len(&c->in));
	}
}

uint32_t host_expect_ok(struct sys_harness *h, struct host_conn *c)
{
	char line[64];
	char *end;
	unsigned long port;
	bool got = false;
	WAIT_FOR(h, SYS_DEFAULT_WAIT_MS,
		 (got = host_take_line(c, line, sizeof(line))) || host_peer_closed(c));
	CHECKF(got, "%s: connection closed before an OK line (eof %d error %d)",
	       c->name, c->read_eof, c->error);
	CHECKF(strncmp(line, "OK ", 3) == 0, "%s: expected \"OK <port>\\n\", got \"%s\"",
	       c->name, line);
	errno = 0;
	port = strtoul(line + 3, &end, 10);
	CHECKF(errno == 0 && end != line + 3 && strcmp(end, "\n") == 0 && port <= UINT32_MAX,
	       "%s: malformed OK line \"%s\"", c->name, line);
	return (uint32_t)port;
}

static void host_source_work(struct host_conn *c)
{
	struct sys_source *src = &c->source;
	if (!src->active || c->fd < 0 || c->error)
		return;
	while (src->done < src->total && buf_len(&c->out) < SYS_HOST_OUT_TARGET) {
		size_t room = SYS_HOST_OUT_TARGET - buf_len(&c->out);
		uint64_t left = src->total - src->done;
		size_t n = left < room ? (size_t)left : room;
		pattern_fill(src->seed, src->done, buf_reserve(&c->out, n), n);
		c->out.tail += n;
		src->done += n;
	}
	host_try_write(c);
	if (src->done == src->total && buf_len(&c->out) == 0 && !src->after_done) {
		src->after_done = true;
		src->end_ns = sys_now_ns();
		if (src->after == SYS_AFTER_SHUTDOWN)
			host_shutdown_wr(c);
		else if (src->after == SYS_AFTER_CLOSE)
			host_close(c);
	}
}

static void host_handle_readable(struct sys_harness *h, struct host_conn *c)
{
	/* read via scratch, so a short-lived connection's buffer stays small */
	for (int round = 0; round < 16 && c->fd >= 0; round++) {
		ssize_t n = recv(c->fd, h->scratch, SYS_SCRATCH_SIZE, MSG_DONTWAIT);
		if (n > 0) {
			c->bytes_in += (uint64_t)n;
			if (c->sink.active)
				sink_feed(c->name, &c->sink, h->scratch, (size_t)n);
			else
				buf_append(&c->in, h->scratch, (size_t)n);
			if ((size_t)n < SYS_SCRATCH_SIZE)
				return;
			continue;
		}
		if (n == 0) {
			c->read_eof = true;
			return;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return;
		c->error = true;
		c->error_code = errno;
		return;
	}
}

/* ------------------------------------------------------------------ */
/* host listeners (guest-initiated connections land here) */

struct host_listener *host_listen(struct sys_harness *h, uint32_t port)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct host_listener *l = calloc(1, sizeof(*l));
	int fd;

	CHECKF(l, "out of memory");
	l->h = h;
	l->port = port;
	if (snprintf(l->path, sizeof(l->path), "%s_%u", h->uds_path, port) >=
	    (int)sizeof(l->path)) {
		free(l);
		FAIL("listener path too long");
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	CHECKF(fd >= 0, "socket: %s", strerror(errno));
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", l->path);
	unlink(l->path);
	if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(fd, 256) != 0) {
		int saved = errno;
		close(fd);
		free(l);
		FAIL("listen on %s: %s", addr.sun_path, strerror(saved));
	}
	/* the daemon's broker runs as an unprivileged user when started as
	 * root: host services must let it connect (README: security model) */
	CHECKF(chmod(l->path, 0666) == 0, "chmod %s: %s", l->path, strerror(errno));
	l->fd = fd;
	l->next = h->listeners;
	h->listeners = l;
	return l;
}

struct host_conn *host_accept(struct host_listener *l)
{
	struct host_conn *c = l->accept_head;
	if (!c)
		return NULL;
	l->accept_head = c->accept_next;
	if (!l->accept_head)
		l->accept_tail = NULL;
	c->accept_next = NULL;
	return c;
}

static void host_listener_accept_all(struct sys_harness *h, struct host_listener *l)
{
	for (;;) {
		char name[48];
		struct host_conn *c;
		int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return;
		}
		snprintf(name, sizeof(name), "guest->host:%u#%u", l->port, l->accepted + 1);
		c = host_conn_new(h, fd, name);
		l->accepted++;
		if (l->accept_tail)
			l->accept_tail->accept_next = c;
		else
			l->accept_head = c;
		l->accept_tail = c;
	}
}

void host_listener_close(struct host_listener *l)
{
	struct sys_harness *h = l->h;
	struct host_listener **link;
	for (link = &h->listeners; *link; link = &(*link)->next)
		if (*link == l) {
			*link = l->next;
			break;
		}
	if (l->fd >= 0)
		close(l->fd);
	unlink(l->path);
	/* accepted but untaken connections stay in h->conns */
	free(l);
}

/* ------------------------------------------------------------------ */
/* guest streams */

struct guest_stream *guest_stream_add(struct sys_harness *h,
				      struct vguest_sock *sock)
{
	struct guest_stream *gs = calloc(1, sizeof(*gs));
	CHECKF(gs, "out of memory");
	gs->sock = sock;
	snprintf(gs->name, sizeof(gs->name), "guest:%u<->%u", sock->local_port,
		 sock->peer_port);
	gs->next = h->streams;
	h->streams = gs;
	return gs;
}

void guest_stream_source(struct guest_stream *gs, uint32_t seed,
			 uint64_t total, enum sys_after after)
{
	memset(&gs->source, 0, sizeof(gs->source));
	gs->source.active = true;
	gs->source.seed = seed;
	gs->source.total = total;
	gs->source.after = after;
	gs->source.start_ns = sys_now_ns();
}

void guest_stream_sink(struct guest_stream *gs, uint32_t seed, uint64_t expected)
{
	memset(&gs->sink, 0, sizeof(gs->sink));
	gs->sink.active = true;
	gs->sink.seed = seed;
	gs->sink.expected = expected;
}

void guest_stream_remove(struct sys_harness *h, struct guest_stream *gs)
{
	struct guest_stream **link;
	for (link = &h->streams; *link; link = &(*link)->next)
		if (*link == gs) {
			*link = gs->next;
			break;
		}
	free(gs);
}

/* Move what can move now; true if anything did. */
static bool guest_stream_work(struct sys_harness *h, struct guest_stream *gs)
{
	struct vguest_sock *sock = gs->sock;
	bool progress = false;
	if (gs->sink.active) {
		for (;;) {
			ssize_t n = vguest_recv(sock, h->scratch, SYS_SCRATCH_SIZE);
			if (n > 0) {
				sink_feed(gs->name, &gs->sink, h->scratch, (size_t)n);
				progress = true;
				continue;
			}
			if (n == 0 && !gs->eof) {
				gs->eof = true;
				progress = true;
			}
			break;
		}
	}
	if (gs->source.active && gs->source.done < gs->source.total) {
		for (;;) {
			uint64_t left = gs->source.total - gs->source.done;
			uint32_t credit = vguest_sock_credit(sock);
			size_t chunk = left < VGUEST_MAX_TX_PAYLOAD ? (size_t)left : VGUEST_MAX_TX_PAYLOAD;
			ssize_t n;
			if (chunk == 0 || credit == 0)
				break;
			if (chunk > credit)
				chunk = credit;
			pattern_fill(gs->source.seed, gs->source.done, h->scratch, chunk);
			n = vguest_send(sock, h->scratch, chunk);
			if (n < 0 && errno != EAGAIN && gs->stop_on_error) {
				gs->send_error = errno;
				gs->source.active = false;
				break;
			}
			if (n < 0) {
				CHECKF(errno == EAGAIN, "%s: vguest_send: %s (state %s)", gs->name,
				       strerror(errno), vguest_sock_state_name(sock->state));
				break;
			}
			gs->source.done += (uint64_t)n;
			progress = true;
		}
	}
	if (gs->source.active && gs->source.done == gs->source.total &&
	    !gs->source.after_done) {
		progress = true;
		gs->source.after_done = true;
		gs->source.end_ns = sys_now_ns();
		if (gs->source.after == SYS_AFTER_SHUTDOWN)
			CHECKF(vguest_shutdown(sock, VSOCK_SHUTDOWN_SEND) == 0,
			       "%s: shutdown: %s", gs->name, strerror(errno));
		else if (gs->source.after == SYS_AFTER_CLOSE)
			CHECKF(vguest_close(sock) == 0, "%s: close: %s", gs->name,
			       strerror(errno));
	}
	return progress;
}

/* ------------------------------------------------------------------ */
/* the loop */

static void sys_pollfds_reserve(struct sys_harness *h, size_t needed)
{
	if (needed <= h->pollfd_capacity)
		return;
	size_t capacity = h->pollfd_capacity ? h->pollfd_capacity : 64;
	while (capacity < needed)
		capacity *= 2;
	struct pollfd *grown = realloc(h->pollfds, capacity * sizeof(*grown));
	CHECKF(grown, "out of memory");
	h->pollfds = grown;
	h->pollfd_capacity = capacity;
}

/* Push and pull every stream; true if anything moved. */
static bool sys_work(struct sys_harness *h)
{
	bool progress = false;
	for (struct guest_stream *gs = h->streams; gs; gs = gs->next)
		progress |= guest_stream_work(h, gs);
	for (struct host_conn *c = h->conns; c; c = c->next) {
		host_source_work(c);
		host_try_write(c);
	}
	return progress;
}

void sys_pump(struct sys_harness *h, int timeout_ms)
{
	size_t guest_start[SYS_MAX_GUESTS], guest_count[SYS_MAX_GUESTS];
	size_t n = 0, conn_count = 0, listener_count = 0;
	int ready;

	if (h->daemon_pid > 0 && !h->in_teardown && !h->daemon_exit_expected &&
	    !sys_daemon_alive(h))
		FAIL("the daemon exited unexpectedly (its stderr closed)");
	/* the caller re-checks its condition before we block */
	if (sys_work(h))
		timeout_ms = 0;
	for (struct host_conn *c = h->conns; c; c = c->next)
		conn_count++;
	for (struct host_listener *l = h->listeners; l; l = l->next)
		listener_count++;
	sys_pollfds_reserve(h, SYS_MAX_GUESTS * VGUEST_MAX_POLLFDS + conn_count +
				listener_count + 1);
	for (int i = 0; i < SYS_MAX_GUESTS; i++) {
		guest_start[i] = n;
		guest_count[i] = 0;
		if (h->guests[i]) {
			vguest_flush(h->guests[i]);
			guest_count[i] = vguest_fill_pollfds(h->guests[i], h->pollfds + n,
							     VGUEST_MAX_POLLFDS);
			n += guest_count[i];
		}
	}
	size_t conn_start = n;
	for (struct host_conn *c = h->conns; c; c = c->next) {
		short events = 0;
		if (c->fd >= 0 && !c->error) {
			if (!c->paused && !c->read_eof)
				events |= POLLIN;
			if (buf_len(&c->out) > 0)
				events |= POLLOUT;
		}
		h->pollfds[n].fd = events ? c->fd : -1;
		h->pollfds[n].events = events;
		h->pollfds[n].revents = 0;
		n++;
	}
	size_t listener_start = n;
	for (struct host_listener *l = h->listeners; l; l = l->next) {
		h->pollfds[n].fd = l->fd;
		h->pollfds[n].events = POLLIN;
		h->pollfds[n].revents = 0;
		n++;
	}
	if (timeout_ms < 0)
		timeout_ms = 0;
	ready = poll(h->pollfds, n, timeout_ms);
	if (ready < 0) {
		CHECKF(errno == EINTR, "poll: %s", strerror(errno));
		return;
	}
	for (int i = 0; i < SYS_MAX_GUESTS; i++)
		if (h->guests[i] && guest_count[i] > 0)
			vguest_handle_pollfds(h->guests[i], h->pollfds + guest_start[i],
					      guest_count[i]);
	size_t k = conn_start;
	for (struct host_conn *c = h->conns; c; c = c->next, k++) {
		short revents = h->pollfds[k].revents;
		if (!revents || c->fd < 0)
			continue;
		if (revents & (POLLIN | POLLHUP | POLLERR))
			host_handle_readable(h, c);
		if (revents & (POLLOUT | POLLERR))
			host_try_write(c);
	}
	k = listener_start;
	for (struct host_listener *l = h->listeners; l; l = l->next, k++)
		if (h->pollfds[k].revents)
			host_listener_accept_all(h, l);
	sys_work(h);
}

void sys_pump_for(struct sys_harness *h, int duration_ms)
{
	uint64_t end = sys_now_ns() + (uint64_t)duration_ms * 1000000ull;
	CHECKF(!h->deadline_ns || end <= h->deadline_ns,
	       "observation window runs past the test deadline");
	while (sys_now_ns() < end)
		sys_pump(h, sys_ms_until(end));
}

void sys_tx_barrier(struct sys_harness *h, struct vguest *vg)
{
	static uint32_t barrier_port = 3000000000u;
	struct vguest_sock *sock = vguest_connect_port(vg, barrier_port++);
	CHECKF(sock, "barrier connect: %s", strerror(errno));
	WAIT_FOR(h, 2000, sock->state == VGUEST_SOCK_CLOSED);
	CHECKF(sock->refused, "barrier connect to a port without listener was not "
	       "refused with RST (state %s)", vguest_sock_state_name(sock->state));
	vguest_sock_release(sock);
}

/* ------------------------------------------------------------------ */
/* test helpers */

void sys_open_host_initiated(struct sys_harness *h, struct vguest *vg,
			     struct vguest_sock *listener, uint32_t port,
			     struct host_conn **host, struct vguest_sock **guest)
{
	struct host_conn *c = host_connect_port(h, port);
	struct vguest_sock *g = NULL;
	uint32_t ok_port;
	(void)vg;
	WAIT_FOR(h, SYS_DEFAULT_WAIT_MS, (g = vguest_accept(listener)) != NULL);
	CHECKF(g->peer_port >= (1u << 30) && g->peer_port < (1u << 31),
	       "REQUEST src_port %u outside [2^30, 2^31)", g->peer_port);
	ok_port = host_expect_ok(h, c);
	CHECKF(ok_port == g->peer_port, "host read OK %u but the guest saw src_port %u",
	       ok_port, g->peer_port);
	*host = c;
	*guest = g;
}

void sys_open_guest_initiated(struct sys_harness *h, struct vguest *vg,
			      struct host_listener *l, struct host_conn **host,
			      struct vguest_sock **guest)
{
	struct vguest_sock *g = vguest_connect_port(vg, l->port);
	struct host_conn *c = NULL;
	CHECKF(g, "vguest_connect_port: %s", strerror(errno));
	WAIT_FOR(h, SYS_DEFAULT_WAIT_MS, g->state != VGUEST_SOCK_CONNECTING);
	CHECKF(g->state == VGUEST_SOCK_CONNECTED, "guest connect to port %u ended %s%s",
	       l->port, vguest_sock_state_name(g->state), g->refused ? " (RST)" : "");
	WAIT_FOR(h, SYS_DEFAULT_WAIT_MS, (c = host_accept(l)) != NULL);
	*host = c;
	*guest = g;
}

void sys_guest_read_exact(struct sys_harness *h, struct vguest_sock *sock,
			  void *buffer, size_t len, int timeout_ms)
{
	size_t got = 0;
	uint64_t end = sys_wait_end(h, timeout_ms);
	while (got < len) {
		ssize_t n = vguest_recv(sock, (uint8_t *)buffer + got, len - got);
		if (n > 0) {
			got += (size_t)n;
			continue;
		}
		CHECKF(n < 0 && errno == EAGAIN, "guest port %u: recv got %s after %zu of %zu bytes",
		       sock->local_port, n == 0 ? "EOF" : strerror(errno), got, len);
		CHECKF(sys_now_ns() < end, "guest port %u: timed out after %zu of %zu bytes",
		       sock->local_port, got, len);
		sys_pump(h, sys_ms_until(end));
	}
}

void sys_guest_write_all(struct sys_harness *h, struct vguest_sock *sock,
			 const void *data, size_t len, int timeout_ms)
{
	size_t sent = 0;
	uint64_t end = sys_wait_end(h, timeout_ms);
	while (sent < len) {
		ssize_t n = vguest_send(sock, (const uint8_t *)data + sent, len - sent);
		if (n > 0) {
			sent += (size_t)n;
			continue;
		}
		CHECKF(errno == EAGAIN, "guest port %u: send: %s", sock->local_port,
		       strerror(errno));
		CHECKF(sys_now_ns() < end, "guest port %u: send timed out after %zu of %zu "
		       "bytes (credit %u)", sock->local_port, sent, len, vguest_sock_credit(sock));
		sys_pump(h, sys_ms_until(end));
	}
}

void sys_host_expect(struct sys_harness *h, struct host_conn *c,
		     const void *data, size_t len, int timeout_ms)
{
	WAIT_FOR(h, timeout_ms, host_in_len(c) >= len || host_peer_closed(c));
	CHECKF(host_in_len(c) >= len, "%s: got %zu of %zu bytes before the peer closed",
	       c->name, host_in_len(c), len);
	CHECKF(memcmp(host_in_data(c), data, len) == 0, "%s: wrong bytes received", c->name);
	host_in_consume(c, len);
}

/* ------------------------------------------------------------------ */
/* runner */

static void sys_remove_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *entry;
	if (!d)
		return;
	while ((entry = readdir(d)) != NULL) {
		char path[512];
		if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, entry->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(dir);
}

static void sys_teardown(struct sys_harness *h)
{
	h->in_teardown = true;
	if (setjmp(sys_fail_jump) != 0) {
		/* a CHECK failed during teardown: h->failed is set; go on */
	}
	for (int i = 0; i < SYS_MAX_GUESTS; i++) {
		struct vguest *vg = h->guests[i];
		if (!vg)
			continue;
		h->guests[i] = NULL;
		if (vguest_get_stats(vg)->early_call_signals > 0)
			fprintf(stderr, "NOTE: %s: the daemon signalled %" PRIu64 " interrupt(s) "
				"on a call fd the frontend had already replaced (before it "
				"read the queued SET_VRING_CALL); QEMU would lose those\n",
				h->test_name, vguest_get_stats(vg)->early_call_signals);
		if (h->failed) {
			sys_print_guest_stats(vg);
			vguest_dump_state(vg, stderr);
		}
		else
			sys_check_guest_clean(vg);
		vguest_destroy(vg);
	}
	h->vg = NULL;
	while (h->streams)
		guest_stream_remove(h, h->streams);
	while (h->conns)
		host_conn_free(h->conns);
	while (h->listeners)
		host_listener_close(h->listeners);
	sys_stop_daemon(h);
	if (h->daemon_stderr == SYS_STDERR_TEST_PIPE && h->daemon_stderr_fd >= 0) {
		close(h->daemon_stderr_fd);
		h->daemon_stderr_fd = -1;
	}
	if (h->dir[0])
		sys_remove_dir(h->dir);
	free(h->pollfds);
	h->pollfds = NULL;
	free(h->scratch);
	h->scratch = NULL;
}

static volatile pid_t sys_watchdog_pid;

static void sys_on_alarm(int signo)
{
	static const char message[] = "FAIL: watchdog: test exceeded its time limit\n";
	(void)signo;
	if (write(STDERR_FILENO, message, sizeof(message) - 1) < 0) {
		/* nothing else we can do in a signal handler */
	}
	if (sys_watchdog_pid > 0)
		kill(sys_watchdog_pid, SIGKILL);
	_exit(3);
}

static int sys_run_one(const struct sys_test *test)
{
	static struct sys_harness harness;
	struct sys_harness *h = &harness;
	const char *tmp = getenv("TMPDIR");

	memset(h, 0, sizeof(*h));
	h->test_name = test->name;
	h->guest_cid = VGUEST_DEFAULT_CID;
	sys_current = h;
	snprintf(h->dir, sizeof(h->dir), "%s/vsockmux-sys-XXXXXX",
		 tmp && *tmp && strlen(tmp) < 24 ? tmp : "/tmp");
	if (!mkdtemp(h->dir) || chmod(h->dir, 0711) != 0) {
		fprintf(stderr, "FAIL: %s: mkdtemp: %s\n", test->name, strerror(errno));
		return 1;
	}
	if (snprintf(h->vhost_path, sizeof(h->vhost_path), "%s/vhost.sock", h->dir) >=
	    (int)sizeof(h->vhost_path) ||
	    snprintf(h->uds_path, sizeof(h->uds_path), "%s/vsock.sock", h->dir) >=
	    (int)sizeof(h->uds_path)) {
		fprintf(stderr, "FAIL: %s: temp dir path too long\n", test->name);
		return 1;
	}
	h->scratch = malloc(SYS_SCRATCH_SIZE);
	if (!h->scratch)
		return 1;
	h->start_ns = sys_now_ns();
	h->deadline_ns = h->start_ns + (uint64_t)test->timeout_s * 1000000000ull;

	signal(SIGALRM, sys_on_alarm);
	alarm((unsigned)test->timeout_s + 20);
	if (setjmp(sys_fail_jump) == 0) {
		test->run(h);
	}
	/* watchdog must be able to kill the daemon while we tear down */
	sys_watchdog_pid = h->daemon_pid;
	sys_teardown(h);
	alarm(0);
	return h->failed ? 1 : 0;
}

int sys_main(int argc, char **argv, const struct sys_test *tests, size_t count)
{
	bool *selected = calloc(count, sizeof(bool));
	unsigned passed = 0, failed = 0;

	if (!selected)
		return 2;
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 1 && strcmp(argv[1], "--list") == 0) {
		for (size_t i = 0; i < count; i++)
			printf("%s\n", tests[i].name);
		free(selected);
		return 0;
	}
	for (int a = 1; a < argc; a++) {
		bool found = false;
		for (size_t i = 0; i < count; i++)
			if (strcmp(argv[a], tests[i].name) == 0) {
				selected[i] = true;
				found = true;
			}
		if (!found) {
			fprintf(stderr, "unknown test \"%s\" (try --list)\n", argv[a]);
			free(selected);
			return 2;
		}
	}
	if (argc <= 1)
		for (size_t i = 0; i < count; i++)
			selected[i] = true;

	for (size_t i = 0; i < count; i++) {
		uint64_t start;
		int status = 0;
		pid_t pid;
		if (!selected[i])
			continue;
		printf("RUN  %s\n", tests[i].name);
		fflush(stdout);
		fflush(stderr);
		start = sys_now_ns();
		pid = fork();
		if (pid < 0) {
			perror("fork");
			free(selected);
			return 2;
		}
		if (pid == 0) {
			int rc = sys_run_one(&tests[i]);
			fflush(stdout);
			fflush(stderr);
			if (rc != 0)
				_exit(rc);  /* skip leak checks of a test that bailed out */
			free(selected);
			exit(0);
		}
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
			printf("PASS %s (%.2f s)\n", tests[i].name,
			       (double)(sys_now_ns() - start) / 1e9);
			passed++;
		} else {
			char how[96];
			sys_describe_status(status, how, sizeof(how));
			printf("FAIL %s (%.2f s, %s)\n", tests[i].name,
			       (double)(sys_now_ns() - start) / 1e9, how);
			failed++;
		}
		fflush(stdout);
	}
	printf("%u passed, %u failed\n", passed, failed);
	free(selected);
	return failed ? 1 : 0;
}

/* ---- daemon counters and memory ------------------------------------------ */

#define SYS_CONTROL_VERSION 1u
#define SYS_STATS_TIMEOUT_MS 5000

/* Read exactly len bytes from fd, pumping the harness meanwhile. false on
 * EOF before the first byte. */
static bool stats_read(struct sys_harness *h, int fd, uint8_t *target,
		       size_t len, uint64_t end)
{
	size_t got = 0;
	while (got < len) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t count;
		int wait_ms = sys_ms_until(end);

		CHECKF(wait_ms > 0, "no stats answer within %d ms", SYS_STATS_TIMEOUT_MS);
		if (poll(&pfd, 1, wait_ms < 10 ? wait_ms : 10) <= 0) {
			sys_pump(h, 0);
			continue;
		}
		count = recv(fd, target + got, len - got, MSG_DONTWAIT);
		if (count < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (count <= 0) {
			CHECKF(got == 0, "stats answer cut short");
			return false;
		}
		got += (size_t)count;
	}
	return true;
}

Vsockmux__Control__Response *sys_query_stats(struct sys_harness *h,
					     bool include_connections)
{
	struct sockaddr_un address = { .sun_family = AF_UNIX };
	Vsockmux__Control__Request request = VSOCKMUX__CONTROL__REQUEST__INIT;
	Vsockmux__Control__Response *response;
	uint64_t end = sys_wait_end(h, SYS_STATS_TIMEOUT_MS);
	uint8_t frame[64], *body;
	size_t length, need;
	int fd;

	CHECK((size_t)snprintf(address.sun_path, sizeof(address.sun_path), "%s.ctl",
			       h->uds_path) < sizeof(address.sun_path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(fd >= 0);
	CHECKF(connect(fd, (struct sockaddr *)&address, sizeof(address)) == 0,
	       "connect %s: %s", address.sun_path, strerror(errno));
	request.version = SYS_CONTROL_VERSION;
	request.include_connections = include_connections;
	length = vsockmux__control__request__get_packed_size(&request);
	CHECK(length + 4 <= sizeof(frame));
	frame[0] = frame[1] = 0;
	frame[2] = (uint8_t)(length >> 8);
	frame[3] = (uint8_t)length;
	vsockmux__control__request__pack(&request, frame + 4);
	CHECKF(send(fd, frame, length + 4, MSG_NOSIGNAL) == (ssize_t)(length + 4),
	       "sending the stats request: %s", strerror(errno));
	CHECKF(stats_read(h, fd, frame, 4, end), "daemon closed the control "
	       "connection without an answer");
	need = control_get_length(frame);
	CHECKF(need > 0 && need <= CONTROL_MAX_RESPONSE, "stats length %zu", need);
	body = malloc(need);
	CHECK(body);
	CHECK(stats_read(h, fd, body, need, end));
	close(fd);
	response = vsockmux__control__response__unpack(NULL, need, body);
	free(body);
	CHECKF(response, "undecodable control response");
	CHECKF(response->error == NULL || response->error[0] == '\0',
	       "control error: %s", response->error);
	CHECKF(response->stats, "control response without stats");
	return response;
}

void sys_stats_free(Vsockmux__Control__Response *response)
{
	vsockmux__control__response__free_unpacked(response, NULL);
}

uint64_t sys_stats_dropped(const Vsockmux__Control__Stats *stats, const char *reason)
{
	for (size_t i = 0; i < stats->n_dropped; i++) {
		if (strcmp(stats->dropped[i]->key, reason) == 0)
			return stats->dropped[i]->value;
	}
	FAIL("stats have no drop reason \"%s\"", reason);
}

uint64_t sys_stats_dropped_now(struct sys_harness *h, const char *reason)
{
	Vsockmux__Control__Response *response = sys_query_stats(h, false);
	uint64_t value = sys_stats_dropped(response->stats, reason);
	sys_stats_free(response);
	return value;
}

long sys_process_rss_kib(pid_t pid)
{
	char path[64], line[128];
	long rss = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "VmRSS: %ld kB", &rss) == 1)
			break;
	}
	fclose(f);
	return rss;
}
