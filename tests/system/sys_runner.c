/*
 * sys_runner.c - the test runner (sys_main): --list, the selection, one
 * forked child per test with its temp dir, deadline and watchdog, the
 * teardown that checks and frees everything, PASS/FAIL lines; and
 * sys_fail, which ends a test by a jump back into the runner.
 *
 * Owns: the current harness and the jump target. Never: runs two tests in
 * one process, or lets a failing check in teardown skip the rest of it.
 */
#include "sys_harness_internal.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

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
	/* a test run under a service manager must not make the daemons under
	 * test report to it; a test that wants notifications sets its own */
	unsetenv("NOTIFY_SOCKET");
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
