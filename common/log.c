/*
 * log.c - stderr logging with a role prefix and per-event rate limits.
 *
 * Owns: the process-wide level and role (set once at start-up).
 * Never: allocates (so JSON lines are written here, not built with a JSON
 * library's heap objects), or blocks: each line is one write(2) of at most
 * 1024 bytes (atomic on a pipe); on a non-blocking stderr (log_nonblocking_output)
 * a line that does not fit is dropped and counted.
 */
#include "vsockmux/log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static enum log_level current_level = LOG_LEVEL_INFO;
static enum log_format current_format = LOG_FORMAT_TEXT;
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

void log_set_format(enum log_format format)
{
	current_format = format;
	/* gmtime_r reads the time zone settings on first use (a file open):
	 * do it now, before the sandbox forbids opening files */
	if (format == LOG_FORMAT_JSON)
		tzset();
}

int log_parse_format(const char *text, enum log_format *format)
{
	if (strcmp(text, "text") == 0)
		*format = LOG_FORMAT_TEXT;
	else if (strcmp(text, "json") == 0)
		*format = LOG_FORMAT_JSON;
	else
		return -1;
	return 0;
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

/* Bounded text: what does not fit is cut, never overrun. */
struct line_buffer {
	char text[1024];
	size_t used;
};

static void append(struct line_buffer *line, const char *format, ...)
	__attribute__((format(printf, 2, 3)));

static void append(struct line_buffer *line, const char *format, ...)
{
	va_list args;
	int written;

	if (line->used >= sizeof(line->text) - 1)
		return;
	va_start(args, format);
	written = vsnprintf(line->text + line->used, sizeof(line->text) - line->used,
			    format, args);
	va_end(args);
	if (written < 0)
		return;
	line->used += (size_t)written;
	if (line->used > sizeof(line->text) - 1)
		line->used = sizeof(line->text) - 1;
}

/* A JSON string: quotes, backslashes, control and non-ASCII bytes escaped,
 * so that a line is valid JSON whatever a message holds. */
static void append_json_string(struct line_buffer *line, const char *text)
{
	append(line, "\"");
	for (const unsigned char *byte = (const unsigned char *)text; *byte; byte++) {
		if (*byte == '"' || *byte == '\\')
			append(line, "\\%c", *byte);
		else if (*byte < 0x20 || *byte >= 0x7f)
			append(line, "\\u%04x", *byte);
		else
			append(line, "%c", *byte);
	}
	append(line, "\"");
}

static void append_json_head(struct line_buffer *line, enum log_level level,
			     const char *event)
{
	struct timespec now;
	struct tm utc;

	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &utc);
	append(line, "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\","
	       "\"process\":", utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday,
	       utc.tm_hour, utc.tm_min, utc.tm_sec, now.tv_nsec / 1000000L,
	       level_names[level]);
	append_json_string(line, current_role);
	append(line, ",\"event\":");
	append_json_string(line, event);
}

static void append_json_connection(struct line_buffer *line,
				   const struct log_connection *connection)
{
	append(line, ",\"local_port\":%" PRIu32 ",\"peer_port\":%" PRIu32 ",\"initiator\":",
	       connection->local_port, connection->peer_port);
	append_json_string(line, connection->initiator);
	append(line, ",\"bytes_to_host\":%" PRIu64 ",\"bytes_to_guest\":%" PRIu64
	       ",\"packets_from_guest\":%" PRIu64 ",\"packets_to_guest\":%" PRIu64
	       ",\"age_ms\":%" PRIu64, connection->bytes_to_host, connection->bytes_to_guest,
	       connection->packets_from_guest, connection->packets_to_guest,
	       connection->age_ms);
	if (connection->reason) {
		append(line, ",\"reason\":");
		append_json_string(line, connection->reason);
	}
}

/* The whole line for one message, newline included. */
static void format_line(struct line_buffer *line, enum log_level level,
			uint32_t suppressed, const struct log_connection *connection,
			const char *message)
{
	line->used = 0;
	if (current_format == LOG_FORMAT_TEXT) {
		append(line, "vsockmuxd[%s] %s: %s", current_role, level_names[level], message);
		if (suppressed)
			append(line, " (%" PRIu32 " similar lines suppressed)", suppressed);
	} else {
		append_json_head(line, level, connection ? connection->event : "log");
		append(line, ",\"message\":");
		append_json_string(line, message);
		if (connection)
			append_json_connection(line, connection);
		if (suppressed)
			append(line, ",\"suppressed\":%" PRIu32, suppressed);
		append(line, "}");
	}
	/* a cut line still ends the line */
	if (line->used == sizeof(line->text) - 1)
		line->used--;
	line->text[line->used++] = '\n';
}

static void log_vmessage(enum log_level level, uint32_t suppressed,
			 const struct log_connection *connection,
			 const char *format, va_list args)
	__attribute__((format(printf, 4, 0)));

static void log_vmessage(enum log_level level, uint32_t suppressed,
			 const struct log_connection *connection,
			 const char *format, va_list args)
{
	struct line_buffer line;
	char message[512];
	int saved_errno = errno;

	vsnprintf(message, sizeof(message), format, args);
	if (lost_lines) {
		char note[96];
		snprintf(note, sizeof(note), "%lu log lines lost (stderr full or closed)",
			 lost_lines);
		format_line(&line, LOG_LEVEL_WARN, 0, NULL, note);
		if (write_line(line.text, line.used))
			lost_lines = 0;
	}
	format_line(&line, level, suppressed, connection, message);
	if (!write_line(line.text, line.used))
		lost_lines++;
	errno = saved_errno;
}

void log_message(enum log_level level, const char *format, ...)
{
	va_list args;
	if (level > current_level)
		return;
	va_start(args, format);
	log_vmessage(level, 0, NULL, format, args);
	va_end(args);
}

/* Whether limit lets one more line through now; *suppressed is what it
 * held back since the last one that got through. */
static bool ratelimit_admits(struct log_ratelimit *limit, uint32_t *suppressed)
{
	uint64_t now = monotonic_ns();

	if (now - limit->window_start_ns >= LOG_RATELIMIT_INTERVAL_NS) {
		limit->window_start_ns = now;
		limit->printed = 0;
	}
	if (limit->printed >= (limit->burst ? limit->burst : LOG_RATELIMIT_BURST)) {
		limit->suppressed++;
		return false;
	}
	limit->printed++;
	*suppressed = limit->suppressed;
	limit->suppressed = 0;
	return true;
}

static void ratelimited_vmessage(struct log_ratelimit *limit, enum log_level level,
				 const struct log_connection *connection,
				 const char *format, va_list args)
	__attribute__((format(printf, 4, 0)));

static void ratelimited_vmessage(struct log_ratelimit *limit, enum log_level level,
				 const struct log_connection *connection,
				 const char *format, va_list args)
{
	uint32_t suppressed;

	if (level > current_level || !ratelimit_admits(limit, &suppressed))
		return;
	log_vmessage(level, suppressed, connection, format, args);
}

void log_ratelimited(struct log_ratelimit *limit, enum log_level level,
		     const char *format, ...)
{
	va_list args;
	va_start(args, format);
	ratelimited_vmessage(limit, level, NULL, format, args);
	va_end(args);
}

void log_connection_event(struct log_ratelimit *limit, enum log_level level,
			  const struct log_connection *connection, const char *format, ...)
{
	va_list args;
	va_start(args, format);
	ratelimited_vmessage(limit, level, connection, format, args);
	va_end(args);
}
