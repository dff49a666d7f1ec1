/*
 * sys_daemon.c - the daemon under test: fork+exec of $VSOCKMUXD in the
 * test's directory (privileges, limits, where stderr goes), the stderr
 * drain thread (the "ready" line, sanitizer and valgrind reports, the log
 * capture tests wait on), stop and reap, its processes in /proc (child
 * pid, state, CPU time, RSS), and its counters over the control socket.
 *
 * Owns: h->daemon_* and the drain thread with its log capture.
 * Never: sleeps to synchronise (waits are poll() or timed condition
 * waits bounded by the test deadline), or leaves a daemon process behind
 * at teardown.
 */
#include "sys_harness_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
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

#include "vsockmux/control_wire.h"

#define SYS_READY_TIMEOUT_MS 20000
#define SYS_STOP_TIMEOUT_MS 5000
#define SYS_LOG_CAPTURE_MAX (16u * 1024u * 1024u)

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

void sys_describe_status(int status, char *out, size_t size)
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

pid_t sys_fork_child(void)
{
	pid_t pid;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	CHECKF(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		sigset_t none;
		signal(SIGPIPE, SIG_DFL);
		signal(SIGALRM, SIG_DFL);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
	}
	return pid;
}

bool sys_child_become(uid_t uid, gid_t gid)
{
	return uid == 0 || (setgroups(0, NULL) == 0 && setresgid(gid, gid, gid) == 0 &&
			    setresuid(uid, uid, uid) == 0);
}

/* In the daemon's child, before exec: listeners at fds 3, 4, 5 and the
 * LISTEN_* variables, as systemd's socket activation sets them. */
static bool pass_listeners(const int fds[3], const char *names)
{
	int moved[3];
	char pid[16];

	for (int i = 0; i < 3; i++) {
		moved[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 100);
		if (moved[i] < 0)
			return false;
	}
	for (int i = 0; i < 3; i++)
		if (dup2(moved[i], 3 + i) < 0)   /* without CLOEXEC: passed on */
			return false;
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	return setenv("LISTEN_FDS", "3", 1) == 0 && setenv("LISTEN_PID", pid, 1) == 0 &&
	       setenv("LISTEN_FDNAMES", names ? names : "vhost-user:host:control", 1) == 0;
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
	pid = sys_fork_child();
	if (pid == 0) {
		/* never outlive the test */
		(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
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
		if (!sys_child_become(h->daemon_uid, h->daemon_gid))
			_exit(125);
		if (h->daemon_activation &&
		    !pass_listeners(h->daemon_activated, h->daemon_activation_names))
			_exit(123);
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
void sys_stop_daemon(struct sys_harness *h)
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

/* ---- daemon counters and memory ------------------------------------------ */

#define SYS_CONTROL_VERSION 1u
#define SYS_STATS_TIMEOUT_MS 5000

/* Read exactly len bytes from fd, pumping the harness meanwhile. false on
 * EOF before the first byte. */
static bool control_read(struct sys_harness *h, int fd, uint8_t *target, size_t len,
			 uint64_t end, int timeout_ms)
{
	size_t got = 0;
	while (got < len) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t count;
		int wait_ms = sys_ms_until(end);

		CHECKF(wait_ms > 0, "no control response within %d ms", timeout_ms);
		if (poll(&pfd, 1, wait_ms < 10 ? wait_ms : 10) <= 0) {
			sys_pump(h, 0);
			continue;
		}
		count = recv(fd, target + got, len - got, MSG_DONTWAIT);
		if (count < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (count <= 0) {
			CHECKF(got == 0, "control response cut short");
			return false;
		}
		got += (size_t)count;
	}
	return true;
}

size_t sys_control_frame(const Vsockmux__Control__Request *request, uint8_t *frame,
			 size_t size)
{
	size_t length = vsockmux__control__request__get_packed_size(request);

	CHECK(length + 4 <= size);
	frame[0] = frame[1] = 0;
	frame[2] = (uint8_t)(length >> 8);
	frame[3] = (uint8_t)length;
	vsockmux__control__request__pack(request, frame + 4);
	return length + 4;
}

Vsockmux__Control__Response *sys_control_exchange(struct sys_harness *h, int fd,
						  const Vsockmux__Control__Request *request,
						  int timeout_ms)
{
	Vsockmux__Control__Response *response;
	uint64_t end = sys_wait_end(h, timeout_ms);
	uint8_t frame[64], *body;
	size_t need;

	if (request) {
		size_t length = sys_control_frame(request, frame, sizeof(frame));
		CHECKF(send(fd, frame, length, MSG_NOSIGNAL) == (ssize_t)length,
		       "sending the control request: %s", strerror(errno));
	}
	if (!control_read(h, fd, frame, 4, end, timeout_ms)) {
		close(fd);
		return NULL;
	}
	need = control_get_length(frame);
	CHECKF(need > 0 && need <= CONTROL_MAX_RESPONSE, "control response length %zu", need);
	body = malloc(need);
	CHECK(body);
	CHECKF(control_read(h, fd, body, need, end, timeout_ms), "control response cut short");
	close(fd);
	response = vsockmux__control__response__unpack(NULL, need, body);
	free(body);
	CHECKF(response, "undecodable control response");
	return response;
}

Vsockmux__Control__Response *sys_query_stats(struct sys_harness *h,
					     bool include_connections)
{
	struct sockaddr_un address = { .sun_family = AF_UNIX };
	Vsockmux__Control__Request request = VSOCKMUX__CONTROL__REQUEST__INIT;
	Vsockmux__Control__Response *response;
	int fd;

	CHECK((size_t)snprintf(address.sun_path, sizeof(address.sun_path), "%s.ctl",
			       h->uds_path) < sizeof(address.sun_path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(fd >= 0);
	CHECKF(connect(fd, (struct sockaddr *)&address, sizeof(address)) == 0,
	       "connect %s: %s", address.sun_path, strerror(errno));
	request.version = SYS_CONTROL_VERSION;
	request.include_connections = include_connections;
	response = sys_control_exchange(h, fd, &request, SYS_STATS_TIMEOUT_MS);
	CHECKF(response, "daemon closed the control connection without an answer");
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
