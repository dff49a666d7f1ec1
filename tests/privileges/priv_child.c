/*
 * priv_child.c - forked-child harness and /proc/self/status readers for
 * the privilege tests (see priv_child.h).
 */
#include "priv_child.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int child_report_fd = STDERR_FILENO;

void child_check_failed(const char *file, int line, const char *condition)
{
	char message[512];
	int saved_errno = errno;
	int length = snprintf(message, sizeof(message),
			      "child %d: check failed at %s:%d: %s (errno: %s)\n",
			      (int)getpid(), file, line, condition,
			      strerror(saved_errno));

	if (length > 0) {
		size_t size = (size_t)length < sizeof(message) ? (size_t)length
							       : sizeof(message) - 1;
		if (write(child_report_fd, message, size) < 0) {
			/* nothing left to report to; the exit status says it */
		}
	}
	_exit(CHILD_CHECK_FAILED);
}

int child_start(struct child *child, void (*body)(void *arg), void *arg)
{
	int output[2];

	if (pipe(output) != 0)
		return -1;
	fflush(stdout);
	fflush(stderr);
	child->pid = fork();
	if (child->pid < 0) {
		close(output[0]);
		close(output[1]);
		return -1;
	}
	if (child->pid == 0) {
		close(output[0]);
		if (dup2(output[1], STDOUT_FILENO) < 0 ||
		    dup2(output[1], STDERR_FILENO) < 0)
			_exit(CHILD_CHECK_FAILED);
		close(output[1]);
		body(arg);
		fflush(stdout);
		fflush(stderr);
		/* _exit: no atexit handlers (LeakSanitizer) in a jailed child */
		_exit(0);
	}
	close(output[1]);
	child->output_fd = output[0];
	return 0;
}

int child_finish(struct child *child, char *output, size_t output_size)
{
	size_t used = 0;
	char chunk[4096];
	int status;

	for (;;) {
		ssize_t got = read(child->output_fd, chunk, sizeof(chunk));
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break;
		if (write(STDERR_FILENO, chunk, (size_t)got) < 0) {
			/* relaying is best effort */
		}
		if (output && used + 1 < output_size) {
			size_t take = (size_t)got;
			if (take > output_size - 1 - used)
				take = output_size - 1 - used;
			memcpy(output + used, chunk, take);
			used += take;
		}
	}
	if (output && output_size)
		output[used] = '\0';
	close(child->output_fd);
	while (waitpid(child->pid, &status, 0) < 0) {
		if (errno != EINTR)
			return -1;
	}
	return status;
}

int child_run(void (*body)(void *arg), void *arg, char *output, size_t output_size)
{
	struct child child;

	if (child_start(&child, body, arg) != 0)
		return -1;
	return child_finish(&child, output, output_size);
}

bool child_succeeded(int status)
{
	if (status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return true;
	if (status == -1)
		fprintf(stderr, "child: fork/wait failed\n");
	else if (WIFSIGNALED(status))
		fprintf(stderr, "child: killed by signal %d\n", WTERMSIG(status));
	else
		fprintf(stderr, "child: exit status %d\n", WEXITSTATUS(status));
	return false;
}

int proc_status_field(const char *key, char *value, size_t value_size)
{
	FILE *status = fopen("/proc/self/status", "re");
	char line[512];
	size_t key_length = strlen(key);
	int result = -1;

	if (!status)
		return -1;
	while (fgets(line, sizeof(line), status)) {
		if (strncmp(line, key, key_length) != 0 || line[key_length] != ':')
			continue;
		const char *start = line + key_length + 1;
		start += strspn(start, " \t");
		size_t length = strcspn(start, "\n");
		while (length > 0 && (start[length - 1] == ' ' || start[length - 1] == '\t'))
			length--;  /* "Groups:" ends in a space */
		snprintf(value, value_size, "%.*s", (int)length, start);
		result = 0;
		break;
	}
	fclose(status);
	return result;
}

uint64_t proc_status_caps(const char *key)
{
	char value[64];
	char *end;
	unsigned long long mask;

	if (proc_status_field(key, value, sizeof(value)) != 0)
		return UINT64_MAX;
	errno = 0;
	mask = strtoull(value, &end, 16);
	if (errno != 0 || end == value || *end != '\0')
		return UINT64_MAX;
	return (uint64_t)mask;
}

int capture_stderr(int (*function)(void *arg), void *arg, int *result,
		   char *text, size_t text_size)
{
	int captured[2];
	int saved_stderr;
	size_t used = 0;

	if (text_size == 0 || pipe(captured) != 0)
		return -1;
	fflush(stderr);
	saved_stderr = dup(STDERR_FILENO);
	if (saved_stderr < 0 || dup2(captured[1], STDERR_FILENO) < 0) {
		close(captured[0]);
		close(captured[1]);
		if (saved_stderr >= 0)
			close(saved_stderr);
		return -1;
	}
	close(captured[1]);
	*result = function(arg);
	fflush(stderr);
	/* restoring stderr closes the last write end: the read sees EOF */
	dup2(saved_stderr, STDERR_FILENO);
	close(saved_stderr);
	for (;;) {
		ssize_t got = read(captured[0], text + used, text_size - 1 - used);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break;
		used += (size_t)got;
		if (used == text_size - 1)
			break;
	}
	text[used] = '\0';
	close(captured[0]);
	return 0;
}

unsigned count_occurrences(const char *haystack, const char *needle)
{
	unsigned count = 0;
	size_t needle_length = strlen(needle);

	if (needle_length == 0)
		return 0;
	for (const char *at = strstr(haystack, needle); at;
	     at = strstr(at + needle_length, needle))
		count++;
	return count;
}
