/*
 * log.h - leveled logging to stderr, with rate limiting for anything a
 * hostile peer can trigger at will.
 *
 * Every log line carries the process role ("broker", "muxer") so the two
 * processes' lines can be told apart in one journal. As text (the
 * default) a line reads "vsockmuxd[ROLE] LEVEL: message"; as JSON
 * (--log-format json) it is one object per line with time, level,
 * process, event and message, plus a connection's fields for the
 * connection events, so that log collectors need no parsing rules.
 */
#ifndef VSOCKMUX_LOG_H
#define VSOCKMUX_LOG_H

#include <stdbool.h>
#include <stdint.h>

enum log_level {
	LOG_LEVEL_ERROR = 0,
	LOG_LEVEL_WARN = 1,
	LOG_LEVEL_INFO = 2,
	LOG_LEVEL_DEBUG = 3,
};

enum log_format {
	LOG_FORMAT_TEXT = 0,
	LOG_FORMAT_JSON,
};

/* Process-wide configuration, set once at start-up (and after fork). */
void log_set_level(enum log_level level);
void log_set_format(enum log_format format);
/* Parse "text|json"; returns 0 on success, -1 otherwise. */
int log_parse_format(const char *text, enum log_format *format);
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

/* What a connection event says about its connection (the same fields as
 * vsockctl conns); as JSON each is a field of its own. */
struct log_connection {
	const char *event;        /* "conn_open", "conn_close" */
	uint32_t local_port, peer_port;
	const char *initiator;    /* "host" or "guest" */
	uint64_t bytes_to_host, bytes_to_guest;
	uint64_t packets_from_guest, packets_to_guest;
	uint64_t age_ms;
	const char *reason;       /* why it closed; NULL when it opened */
};

void log_connection_event(struct log_ratelimit *limit, enum log_level level,
			  const struct log_connection *connection, const char *format, ...)
	__attribute__((format(printf, 4, 5)));

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t monotonic_ns(void);

#endif
