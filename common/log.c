/*
 * log.c - stderr logging with a role prefix and per-event rate limits.
 *
 * Owns: the process-wide level and role (set once at start-up).
 * Never: allocates, or blocks: each line is one write(2) of at most 512
 * bytes (atomic on a pipe); on a non-blocking stderr (log_nonblocking_output)
 * a line that does not fit is dropped and counted.
 */
#include "vsockmux/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static enum log_level current_level = LOG_LEVEL_INFO;
static const char *current_role = "vsockmuxd";
static unsigned long lost_lines;  /* not written: stderr full or gone */

static const char *const level_names[] = {
	[LOG_LEVEL_ERROR] = "error",
	[LOG_LEVEL_WARN] = "warn",
	[LOG_LEVEL_INFO] = "info",
	[LOG_LEVEL_DEBUG] = "debug",
};

void log_set_level(enum log_level level)
{
	current_level = level;
}

enum log_level log_get_level(void)
{
	return current_level;
}

void log_set_role(const char *role)
{
	current_role = role;
}

void log_nonblocking_output(void)
{
	struct stat info;
	int flags;

	if (fstat(STDERR_FILENO, &info) != 0 ||
	    !(S_ISFIFO(info.st_mode) || S_ISSOCK(info.st_mode)))
		return;
	flags = fcntl(STDERR_FILENO, F_GETFL);
	if (flags >= 0)
		(void)fcntl(STDERR_FILENO, F_SETFL, flags | O_NONBLOCK);
}

/* One whole line, one write; false if it was not written. A part written
 * to a stream socket (journald) is ended with a newline, so that the next
 * line does not run on from it. */
static bool write_line(const char *line, size_t length)
{
	ssize_t written;

	do {
		written = write(STDERR_FILENO, line, length);
	} while (written < 0 && errno == EINTR);
	if (written > 0 && (size_t)written < length) {
		ssize_t ignored = write(STDERR_FILENO, "\n", 1);
		(void)ignored;
	}
	return written == (ssize_t)length;
}

int log_parse_level(const char *text, enum log_level *level)
{
	for (unsigned i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcmp(text, level_names[i]) == 0) {
			*level = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

uint64_t monotonic_ns(void)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

static void log_vmessage(enum log_level level, uint32_t suppressed,
			 const char *format, va_list args)
	__attribute__((format(printf, 3, 0)));

static void log_vmessage(enum log_level level, uint32_t suppressed,
			 const char *format, va_list args)
{
	char line[512], whole[600];
	int used = snprintf(line, sizeof(line), "vsockmuxd[%s] %s: ",
			    current_role, level_names[level]);
	size_t length;
	int saved_errno = errno;

	if (used < 0)
		return;
	if ((size_t)used < sizeof(line))
		vsnprintf(line + used, sizeof(line) - (size_t)used, format, args);
	if (lost_lines) {
		char note[128];
		int note_length = snprintf(note, sizeof(note), "vsockmuxd[%s] warn: %lu "
					   "log lines lost (stderr full or closed)\n",
					   current_role, lost_lines);
		if (note_length > 0 && (size_t)note_length < sizeof(note) &&
		    write_line(note, (size_t)note_length))
			lost_lines = 0;
	}
	if (suppressed)
		used = snprintf(whole, sizeof(whole), "%s (%u similar lines suppressed)\n",
				line, suppressed);
	else
		used = snprintf(whole, sizeof(whole), "%s\n", line);
	length = used < 0 ? 0 : (size_t)used < sizeof(whole) ? (size_t)used : sizeof(whole) - 1;
	if (length > 0 && !write_line(whole, length))
		lost_lines++;
	errno = saved_errno;
}

void log_message(enum log_level level, const char *format, ...)
{
	va_list args;
	if (level > current_level)
		return;
	va_start(args, format);
	log_vmessage(level, 0, format, args);
	va_end(args);
}

void log_ratelimited(struct log_ratelimit *limit, enum log_level level,
		     const char *format, ...)
{
	va_list args;
	uint64_t now;
	uint32_t suppressed;

	if (level > current_level)
		return;
	now = monotonic_ns();
	if (now - limit->window_start_ns >= LOG_RATELIMIT_INTERVAL_NS) {
		limit->window_start_ns = now;
		limit->printed = 0;
	}
	if (limit->printed >= (limit->burst ? limit->burst : LOG_RATELIMIT_BURST)) {
		limit->suppressed++;
		return;
	}
	limit->printed++;
	suppressed = limit->suppressed;
	limit->suppressed = 0;
	va_start(args, format);
	log_vmessage(level, suppressed, format, args);
	va_end(args);
}
