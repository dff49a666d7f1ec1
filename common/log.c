/*
 * log.c - stderr logging with a role prefix and per-event rate limits.
 *
 * Owns: the process-wide level and role (set once at start-up).
 * Never: allocates, or blocks for long (stderr writes are one fprintf).
 */
#include "vsockmux/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static enum log_level current_level = LOG_LEVEL_INFO;
static const char *current_role = "vsockmuxd";

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
	char line[512];
	int used = snprintf(line, sizeof(line), "vsockmuxd[%s] %s: ",
			    current_role, level_names[level]);
	if (used < 0)
		return;
	if ((size_t)used < sizeof(line))
		vsnprintf(line + used, sizeof(line) - (size_t)used, format, args);
	if (suppressed)
		fprintf(stderr, "%s (%u similar lines suppressed)\n", line, suppressed);
	else
		fprintf(stderr, "%s\n", line);
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
