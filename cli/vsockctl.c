/*
 * vsockctl.c - command line front end for the vsockmuxd control socket
 *: status, conns, stats, watch, metrics; --json for machines.
 *
 * Socket: --control-socket PATH, else $VSOCKMUX_CONTROL_SOCKET when set and
 * non-empty, else /run/vsockmux/vsock.sock.ctl (the daemon's default is
 * "<uds-path>.ctl").
 * Exit codes: 0 ok, 1 daemon unreachable / refused / bad answer, 2 usage.
 *
 * Owns: argument parsing, the watch loop and its signal handling.
 * Never: retries a failed request (watch exits 1 when the daemon goes away)
 * or waits on the daemon without a deadline (see control_client.c).
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "control_client.h"
#include "render.h"

#define EXIT_UNREACHABLE 1
#define EXIT_USAGE 2
#define WATCH_MAX_INTERVAL_SECONDS 3600.0

enum command { COMMAND_STATUS, COMMAND_CONNS, COMMAND_STATS, COMMAND_WATCH, COMMAND_METRICS };

struct cli_options {
	const char *socket_path;
	bool json;
	enum command command;
	bool sort_given;
	enum connection_sort sort;
	bool interval_given;
	double interval_seconds;
};

static const char usage_text[] =
	"Usage: vsockctl [--control-socket PATH] [--json] COMMAND [OPTIONS]\n"
	"\n"
	"Query a running vsockmuxd through its control socket.\n"
	"\n"
	"Commands:\n"
	"  status                     uptime, guest CID, VMM and features, connection counts\n"
	"  conns [--sort port|bytes|age]\n"
	"                             one row per connection (default: by local port;\n"
	"                             bytes: most traffic first; age: oldest first)\n"
	"  stats                      every global counter, grouped\n"
	"  watch [--interval SECONDS] redraw status, rates and conns every SECONDS\n"
	"                             (default 1, at most 3600) until interrupted\n"
	"  metrics                    Prometheus text exposition format\n"
	"\n"
	"Options:\n"
	"  --control-socket PATH      control socket to query; default\n"
	"                             $VSOCKMUX_CONTROL_SOCKET if set, else\n"
	"                             " CONTROL_DEFAULT_SOCKET "\n"
	"                             (vsockmuxd listens on <uds-path>.ctl)\n"
	"  --json                     one JSON object with every stats field\n"
	"                             (status, conns, stats: the same object;\n"
	"                             watch: one object per line)\n"
	"  -h, --help                 show this help\n"
	"  -V, --version              show the version\n"
	"\n"
	"Exit status: 0 ok, 1 daemon unreachable or refused, 2 usage error.\n";

static int usage_error(const char *format, ...) __attribute__((format(printf, 1, 2)));

/* Prints "vsockctl: <reason>" and the help hint; returns the usage exit code. */
static int usage_error(const char *format, ...)
{
	va_list args;

	fputs("vsockctl: ", stderr);
	va_start(args, format);
	vfprintf(stderr, format, args);
	va_end(args);
	fputs("\nTry 'vsockctl --help'.\n", stderr);
	return EXIT_USAGE;
}

static bool parse_command(const char *word, enum command *command)
{
	static const struct {
		const char *name;
		enum command command;
	} commands[] = {
		{ "status", COMMAND_STATUS }, { "conns", COMMAND_CONNS },
		{ "stats", COMMAND_STATS },   { "watch", COMMAND_WATCH },
		{ "metrics", COMMAND_METRICS },
	};
	size_t i;

	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(word, commands[i].name) == 0) {
			*command = commands[i].command;
			return true;
		}
	}
	return false;
}

static bool parse_interval(const char *text, double *seconds)
{
	char *end = NULL;
	double value;

	errno = 0;
	value = strtod(text, &end);
	if (errno != 0 || end == text || *end != '\0' || !isfinite(value) ||
	    value <= 0 || value > WATCH_MAX_INTERVAL_SECONDS)
		return false;
	*seconds = value;
	return true;
}

/* Returns -1 to go on, else the exit code (help/version/usage error). */
static int parse_arguments(int argc, char **argv, struct cli_options *options)
{
	static const struct option long_options[] = {
		{ "control-socket", required_argument, NULL, 'c' },
		{ "json", no_argument, NULL, 'j' },
		{ "sort", required_argument, NULL, 's' },
		{ "interval", required_argument, NULL, 'i' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *environment_socket = getenv(CONTROL_SOCKET_ENV);
	int option;

	memset(options, 0, sizeof(*options));
	options->socket_path = environment_socket && environment_socket[0]
				       ? environment_socket : CONTROL_DEFAULT_SOCKET;
	options->sort = SORT_BY_PORT;
	options->interval_seconds = 1.0;
	opterr = 0;	/* we word the errors ourselves */
	while ((option = getopt_long(argc, argv, ":hV", long_options, NULL)) != -1) {
		switch (option) {
		case 'c':
			options->socket_path = optarg;
			break;
		case 'j':
			options->json = true;
			break;
		case 's':
			options->sort_given = true;
			if (strcmp(optarg, "port") == 0)
				options->sort = SORT_BY_PORT;
			else if (strcmp(optarg, "bytes") == 0)
				options->sort = SORT_BY_BYTES;
			else if (strcmp(optarg, "age") == 0)
				options->sort = SORT_BY_AGE;
			else
				return usage_error("--sort must be port, bytes or age, not '%s'", optarg);
			break;
		case 'i':
			options->interval_given = true;
			if (!parse_interval(optarg, &options->interval_seconds))
				return usage_error("--interval must be a number of seconds > 0 and <= 3600, not '%s'",
						   optarg);
			break;
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		case 'V':
			printf("vsockctl %s (control protocol %u)\n", VSOCKMUX_VERSION,
			       CONTROL_PROTOCOL_VERSION);
			return 0;
		case ':':
			return usage_error("option '%s' needs an argument", argv[optind - 1]);
		default:
			return usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind >= argc)
		return usage_error("missing command (status, conns, stats, watch or metrics)");
	if (!parse_command(argv[optind], &options->command))
		return usage_error("unknown command '%s'", argv[optind]);
	if (optind + 1 < argc)
		return usage_error("unexpected argument '%s'", argv[optind + 1]);
	if (options->sort_given && options->command != COMMAND_CONNS &&
	    options->command != COMMAND_WATCH)
		return usage_error("--sort applies to conns and watch only");
	if (options->interval_given && options->command != COMMAND_WATCH)
		return usage_error("--interval applies to watch only");
	if (options->json && options->command == COMMAND_METRICS)
		return usage_error("--json does not apply to metrics");
	return -1;
}

/* Maps a failed fetch to an exit code, printing its one-line reason. */
static int fetch_failed(enum control_status status, const char *error)
{
	fprintf(stderr, "vsockctl: %s\n", error);
	return status == CONTROL_BAD_PATH ? EXIT_USAGE : EXIT_UNREACHABLE;
}

static int finish_output(void)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "vsockctl: writing output: %s\n", strerror(errno));
		return EXIT_UNREACHABLE;
	}
	return 0;
}

static int out_of_memory(void)
{
	fputs("vsockctl: out of memory\n", stderr);
	return EXIT_UNREACHABLE;
}

static int run_once(const struct cli_options *options)
{
	bool include_connections = options->json || options->command == COMMAND_CONNS ||
				   options->command == COMMAND_METRICS;
	ControlResponse *response = NULL;
	char error[512];
	enum control_status status;
	int failed = 0;

	status = control_fetch(options->socket_path, include_connections,
			       CONTROL_TIMEOUT_MS, -1, &response, error, sizeof(error));
	if (status != CONTROL_OK)
		return fetch_failed(status, error);
	render_sort_connections(response->stats, options->sort);
	if (options->json)
		failed = render_json(stdout, response->stats, NULL, true);
	else if (options->command == COMMAND_STATUS)
		failed = render_status(stdout, response->stats);
	else if (options->command == COMMAND_CONNS)
		failed = render_conns(stdout, response->stats);
	else if (options->command == COMMAND_STATS)
		failed = render_stats(stdout, response->stats);
	else
		failed = render_metrics(stdout, response->stats);
	control_response_free(response);
	if (failed)
		return out_of_memory();
	return finish_output();
}

static int64_t monotonic_ms(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static int render_snapshot(const struct cli_options *options, bool terminal,
			   const ControlStats *stats, const struct rates *rates)
{
	char timestamp[64] = "";
	time_t now = time(NULL);
	struct tm local;

	if (options->json)
		return render_json(stdout, stats, rates, false);
	if (localtime_r(&now, &local))
		strftime(timestamp, sizeof(timestamp), "%Y-%m-%d %H:%M:%S", &local);
	if (terminal)
		fputs("\033[H\033[2J", stdout);	/* home + clear screen */
	printf("=== vsockctl watch: %s every %gs, %s ===\n", options->socket_path,
	       options->interval_seconds, timestamp);
	if (render_status(stdout, stats) != 0)
		return -1;
	render_rates(stdout, rates);
	putchar('\n');
	if (render_conns(stdout, stats) != 0)
		return -1;
	if (!terminal)
		putchar('\n');	/* blank line between snapshots */
	return 0;
}

/* Until next_tick_ms; returns true when SIGINT/SIGTERM arrived. */
static bool wait_for_tick_or_signal(int signal_fd, int64_t next_tick_ms)
{
	for (;;) {
		struct pollfd poll_fd = { .fd = signal_fd, .events = POLLIN };
		int64_t remaining = next_tick_ms - monotonic_ms();
		int ready;

		if (remaining <= 0)
			return false;
		ready = poll(&poll_fd, 1, (int)remaining);
		if (ready > 0)
			return true;
		if (ready < 0 && errno != EINTR)
			return false;
	}
}

static int run_watch(const struct cli_options *options)
{
	int64_t interval_ms = llround(options->interval_seconds * 1000.0);
	bool terminal = isatty(STDOUT_FILENO) && !options->json;
	ControlResponse *previous = NULL;
	int64_t next_tick_ms;
	int signal_fd, exit_code = 0;
	sigset_t signals;

	if (interval_ms < 1)
		interval_ms = 1;
	/* Signals become readable on signal_fd; nothing runs in a handler. */
	sigemptyset(&signals);
	sigaddset(&signals, SIGINT);
	sigaddset(&signals, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &signals, NULL) != 0 ||
	    (signal_fd = signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK)) < 0) {
		fprintf(stderr, "vsockctl: signalfd: %s\n", strerror(errno));
		return EXIT_UNREACHABLE;
	}
	next_tick_ms = monotonic_ms();
	for (;;) {
		ControlResponse *response = NULL;
		struct rates rates;
		char error[512];
		enum control_status status;
		int64_t now_ms;

		status = control_fetch(options->socket_path, true, CONTROL_TIMEOUT_MS,
				       signal_fd, &response, error, sizeof(error));
		if (status == CONTROL_CANCELLED)
			break;
		if (status != CONTROL_OK) {
			exit_code = fetch_failed(status, error);
			break;
		}
		render_sort_connections(response->stats, options->sort);
		render_compute_rates(previous ? previous->stats : NULL, response->stats, &rates);
		control_response_free(previous);
		previous = response;
		if (render_snapshot(options, terminal, response->stats, &rates) != 0) {
			exit_code = out_of_memory();
			break;
		}
		exit_code = finish_output();
		if (exit_code != 0)
			break;
		/* Fixed cadence; after a slow round, skip the missed ticks. */
		next_tick_ms += interval_ms;
		now_ms = monotonic_ms();
		if (next_tick_ms < now_ms)
			next_tick_ms = now_ms + interval_ms;
		if (wait_for_tick_or_signal(signal_fd, next_tick_ms))
			break;
	}
	control_response_free(previous);
	close(signal_fd);
	return exit_code;
}

int main(int argc, char **argv)
{
	struct cli_options options;
	int exit_code = parse_arguments(argc, argv, &options);

	if (exit_code >= 0)
		return exit_code;
	if (options.command == COMMAND_WATCH)
		return run_watch(&options);
	return run_once(&options);
}
