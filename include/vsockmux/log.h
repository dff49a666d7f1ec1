/*
 * log.h - leveled logging to stderr, with rate limiting for anything a
 * hostile peer can trigger at will.
 *
 * Every log line carries the process role ("broker", "muxer") so the two
 * processes' lines can be told apart in one journal.
 */
#ifndef VSOCKMUX_LOG_H
#define VSOCKMUX_LOG_H

#include <stdint.h>

enum log_level {
	LOG_LEVEL_ERROR = 0,
	LOG_LEVEL_WARN = 1,
	LOG_LEVEL_INFO = 2,
	LOG_LEVEL_DEBUG = 3,
};

/* Process-wide configuration, set once at start-up (and after fork). */
void log_set_level(enum log_level level);
void log_set_role(const char *role);
/* Make a pipe or socket stderr non-blocking (a tty or file is left as
 * is), so that a reader that stops reading can never stall the daemon: a
 * line that does not fit is dropped and counted, and the next line that
 * fits says how many were lost. Call once, before the fork. */
void log_nonblocking_output(void);
enum log_level log_get_level(void);
/* Parse "error|warn|info|debug"; returns 0 on success, -1 otherwise. */
int log_parse_level(const char *text, enum log_level *level);

void log_message(enum log_level level, const char *format, ...)
	__attribute__((format(printf, 2, 3)));

#define log_error(...) log_message(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...) log_message(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) log_message(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) log_message(LOG_LEVEL_DEBUG, __VA_ARGS__)

/*
 * A token bucket per kind of event: at most LOG_RATELIMIT_BURST lines per
 * LOG_RATELIMIT_INTERVAL; what is suppressed is counted and reported with
 * the next line that gets through.
 */
#define LOG_RATELIMIT_BURST 10u
#define LOG_RATELIMIT_INTERVAL_NS 1000000000ull

struct log_ratelimit {
	uint32_t burst;          /* lines per interval; 0: LOG_RATELIMIT_BURST */
	uint64_t window_start_ns;
	uint32_t printed;
	uint32_t suppressed;
};

void log_ratelimited(struct log_ratelimit *limit, enum log_level level,
		     const char *format, ...)
	__attribute__((format(printf, 3, 4)));

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t monotonic_ns(void);

#endif
