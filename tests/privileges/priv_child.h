/*
 * priv_child.h - helpers for the privilege tests: every drop happens in a
 * forked child (never in the cmocka runner), whose stdout/stderr go
 * through a pipe the parent reads back, and which reports a failed check
 * by its exit status (cmocka's asserts must not run in a child).
 */
#ifndef VSOCKMUX_TEST_PRIV_CHILD_H
#define VSOCKMUX_TEST_PRIV_CHILD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Exit status of a child whose check failed. */
#define CHILD_CHECK_FAILED 100

/* In a child: on a false condition, say which and _exit(CHILD_CHECK_FAILED). */
#define CHILD_CHECK(condition)                                               \
	do {                                                                 \
		if (!(condition))                                            \
			child_check_failed(__FILE__, __LINE__, #condition);  \
	} while (0)

void child_check_failed(const char *file, int line, const char *condition)
	__attribute__((noreturn));

/* Where child_check_failed writes (default stderr); set it to a dup of the
 * original stderr before a child redirects its own. */
extern int child_report_fd;

struct child {
	pid_t pid;
	int output_fd;  /* read end of the child's stdout+stderr */
};

/* Fork; the child runs body(arg) then _exit(0). Returns 0 or -1. */
int child_start(struct child *child, void (*body)(void *arg), void *arg);

/* Read the child's output until EOF (into output, NUL-terminated, and
 * relayed to our stderr), reap it; returns the wait status or -1. */
int child_finish(struct child *child, char *output, size_t output_size);

/* child_start + child_finish. */
int child_run(void (*body)(void *arg), void *arg, char *output, size_t output_size);

/* Wait status meaning "exited 0". */
bool child_succeeded(int status);

/* Value of "Key:" in /proc/self/status, copied into value. 0 or -1. */
int proc_status_field(const char *key, char *value, size_t value_size);

/* The hex capability mask "Key:" of /proc/self/status; UINT64_MAX on error. */
uint64_t proc_status_caps(const char *key);

/* Run function with stderr captured; its output goes into text. 0 or -1. */
int capture_stderr(int (*function)(void *arg), void *arg, int *result,
		   char *text, size_t text_size);

/* Occurrences of needle in haystack. */
unsigned count_occurrences(const char *haystack, const char *needle);

#endif
