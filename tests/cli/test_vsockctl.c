/*
 * test_vsockctl.c - runs the real vsockctl binary ($VSOCKCTL) against a fake
 * control server and checks its output, JSON, metrics and exit codes.
 *
 * Owns: the child processes it spawns (killed if they outlive the bound).
 * Never: sleeps to synchronise; every wait is poll()-bounded.
 *
 * Two groups, chosen by the first argument, each its own meson test:
 * "main" (everything against the fake server) and "default-socket"
 * (vsockctl without a socket option or $VSOCKCTL_SOCKET tries the default
 * path), which exits 77 (skipped) when something exists at that path:
 * a real daemon would answer there. Without an argument both run: exit 1
 * if a case failed, else 77 if the default-socket group could not run.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <json-c/json.h>

#include "fake_control_server.h"
#include "prom_validator.h"

#define RUN_BOUND_MS 30000
#define MAX_ARGS 16

extern char **environ;

struct run_result {
	int exit_code;	/* -1 if killed */
	char *out;
	char *err;
};

struct buffer {
	char *data;
	size_t length, capacity;
};

static const char *vsockctl_path(void)
{
	const char *path = getenv("VSOCKCTL");

	return path ? path : "./cli/vsockctl";
}

static int64_t monotonic_ms(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static void buffer_append(struct buffer *buffer, const char *data, size_t length)
{
	if (buffer->length + length + 1 > buffer->capacity) {
		size_t capacity = (buffer->length + length + 1) * 2;
		char *grown = realloc(buffer->data, capacity);
		assert_non_null(grown);
		buffer->data = grown;
		buffer->capacity = capacity;
	}
	memcpy(buffer->data + buffer->length, data, length);
	buffer->length += length;
	buffer->data[buffer->length] = '\0';
}

/* Counts occurrences of needle in haystack. */
static size_t count_of(const char *haystack, const char *needle)
{
	size_t count = 0;
	const char *cursor = haystack;

	while ((cursor = strstr(cursor, needle)) != NULL) {
		count++;
		cursor += strlen(needle);
	}
	return count;
}

/*
 * Runs vsockctl with args (NULL-terminated). socket_env: value for
 * VSOCKMUX_CONTROL_SOCKET, or NULL to unset it. When signal_after is set,
 * sends `signal_number` once stdout contains it `signal_after_count` times.
 */
static void run_full(const char *socket_env, const char *const *args,
		     const char *signal_after, size_t signal_after_count,
		     int signal_number, struct run_result *result)
{
	char *argv[MAX_ARGS + 2];
	char **envp;
	char *socket_variable = NULL;
	size_t env_count = 0, env_used = 0, i;
	int out_pipe[2], err_pipe[2], status;
	struct buffer out = { 0 }, err = { 0 };
	bool out_open = true, err_open = true, signalled = false;
	int64_t deadline = monotonic_ms() + RUN_BOUND_MS;
	pid_t child;

	argv[0] = (char *)vsockctl_path();
	for (i = 0; args[i]; i++) {
		assert_true(i < MAX_ARGS);
		argv[i + 1] = (char *)args[i];
	}
	argv[i + 1] = NULL;

	/* Environment built before fork: the child only calls async-safe functions. */
	while (environ[env_count])
		env_count++;
	envp = calloc(env_count + 2, sizeof(*envp));
	assert_non_null(envp);
	for (i = 0; i < env_count; i++)
		if (strncmp(environ[i], "VSOCKMUX_CONTROL_SOCKET=", 24) != 0)
			envp[env_used++] = environ[i];
	if (socket_env) {
		size_t length = strlen(socket_env) + 32;
		socket_variable = malloc(length);
		assert_non_null(socket_variable);
		snprintf(socket_variable, length, "VSOCKMUX_CONTROL_SOCKET=%s", socket_env);
		envp[env_used++] = socket_variable;
	}
	envp[env_used] = NULL;

	assert_int_equal(pipe2(out_pipe, O_CLOEXEC), 0);
	assert_int_equal(pipe2(err_pipe, O_CLOEXEC), 0);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		dup2(out_pipe[1], STDOUT_FILENO);
		dup2(err_pipe[1], STDERR_FILENO);
		execve(argv[0], argv, envp);
		_exit(127);
	}
	close(out_pipe[1]);
	close(err_pipe[1]);
	buffer_append(&out, "", 0);
	buffer_append(&err, "", 0);
	while (out_open || err_open) {
		struct pollfd fds[2] = {
			{ .fd = out_open ? out_pipe[0] : -1, .events = POLLIN },
			{ .fd = err_open ? err_pipe[0] : -1, .events = POLLIN },
		};
		int64_t remaining = deadline - monotonic_ms();
		char chunk[4096];
		int ready;

		if (remaining <= 0) {
			kill(child, SIGKILL);
			fail_msg("vsockctl did not finish within %d ms", RUN_BOUND_MS);
		}
		ready = poll(fds, 2, (int)remaining);
		if (ready < 0 && errno == EINTR)
			continue;
		assert_true(ready >= 0);
		for (i = 0; i < 2; i++) {
			ssize_t count;

			if (!fds[i].revents)
				continue;
			count = read(fds[i].fd, chunk, sizeof(chunk));
			if (count > 0) {
				buffer_append(i == 0 ? &out : &err, chunk, (size_t)count);
			} else {
				if (i == 0)
					out_open = false;
				else
					err_open = false;
			}
		}
		if (signal_after && !signalled &&
		    count_of(out.data, signal_after) >= signal_after_count) {
			kill(child, signal_number);
			signalled = true;
		}
	}
	close(out_pipe[0]);
	close(err_pipe[0]);
	assert_int_equal(waitpid(child, &status, 0), child);
	result->exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	result->out = out.data;
	result->err = err.data;
	free(socket_variable);
	free(envp);
}

static void run(const char *const *args, struct run_result *result)
{
	run_full(NULL, args, NULL, 0, 0, result);
}

static void result_free(struct run_result *result)
{
	free(result->out);
	free(result->err);
}

static void assert_contains(const char *haystack, const char *needle)
{
	if (!strstr(haystack, needle))
		fail_msg("expected to find [%s] in:\n%s", needle, haystack);
}

/* Asserts that the needles appear in this order. */
static void assert_in_order(const char *haystack, const char *first,
			    const char *second, const char *third)
{
	const char *a = strstr(haystack, first), *b = strstr(haystack, second),
		   *c = strstr(haystack, third);

	assert_non_null(a);
	assert_non_null(b);
	assert_non_null(c);
	if (!(a < b && b < c))
		fail_msg("expected order %s, %s, %s in:\n%s", first, second, third, haystack);
}

/* Starts a canned server, runs vsockctl --control-socket <it> args..., stops it. */
static void run_against(enum fake_mode mode, const char *error_text,
			const char *const *args, struct run_result *result,
			struct fake_server *server)
{
	const char *full[MAX_ARGS + 1];
	size_t i;

	assert_int_equal(fake_server_start(server, mode, 0), 0);
	server->error_text = error_text;
	full[0] = "--control-socket";
	full[1] = server->socket_path;
	for (i = 0; args[i]; i++) {
		assert_true(i + 2 < MAX_ARGS);
		full[i + 2] = args[i];
	}
	full[i + 2] = NULL;
	run(full, result);
	fake_server_stop(server);
	assert_false(server->thread_failed);
}

static void test_status_table(void **state)
{
	const char *args[] = { "status", NULL };
	struct fake_server server;
	struct run_result result;

	(void)state;
	run_against(FAKE_ANSWER, NULL, args, &result, &server);
	assert_int_equal(result.exit_code, 0);
	assert_string_equal(result.err, "");
	assert_int_equal(server.requests, 1);
	assert_int_equal(server.last_version, 1);
	assert_false(server.last_include_connections);
	assert_contains(result.out, "uptime             2h05m\n");
	assert_contains(result.out, "guest CID          42\n");
	assert_contains(result.out, "VMM attached       yes\n");
	assert_contains(result.out,
			"virtio features    EVENT_IDX PROTOCOL_FEATURES VERSION_1 bit40 (0x10160000000)\n");
	assert_contains(result.out, "protocol features  MQ REPLY_ACK bit5 CONFIG (0x229)\n");
	assert_contains(result.out, "attach count       2\n");
	assert_contains(result.out, "connections        5 current, 17 peak\n");
	result_free(&result);
}

static void test_conns_table(void **state)
{
	const char *args[] = { "conns", NULL };
	struct fake_server server;
	struct run_result result;

	(void)state;
	run_against(FAKE_ANSWER, NULL, args, &result, &server);
	assert_int_equal(result.exit_code, 0);
	assert_true(server.last_include_connections);
	assert_contains(result.out,
			"LOCAL  PEER  FROM   STATE          AGE   IDLE    TO-HOST  TO-GUEST  PKTS-IN  PKTS-OUT     CREDIT  BUFFERED\n"
			" 4000  1030  guest  closing      1m30s  1m01s    5.0 MiB   1.0 MiB     4007      4008   64.0 KiB   4.0 KiB\n"
			" 5000  1025  host   established  2h00m  500ms    2.0 KiB      10 B     5007      5008  256.0 KiB       0 B\n"
			" 6000  1040  guest  handshake     1.5s   1.5s  100.0 MiB       0 B     6007      6008        0 B       0 B\n"
			"(truncated: showing 3 of 5 connections)\n");
	/* Units per cell. */
	assert_contains(result.out, "2h00m");	/* age of 5000 */
	assert_contains(result.out, "1m30s");	/* age of 4000 */
	assert_contains(result.out, "1m01s");	/* idle of 4000 */
	assert_contains(result.out, "500ms");
	assert_contains(result.out, "1.5s");
	assert_contains(result.out, "2.0 KiB");
	assert_contains(result.out, "10 B");
	assert_contains(result.out, "100.0 MiB");
	assert_contains(result.out, "256.0 KiB");
	assert_contains(result.out, "host   established");
	assert_contains(result.out, "(truncated: showing 3 of 5 connections)");
	assert_in_order(result.out, "\n 4000", "\n 5000", "\n 6000");
	result_free(&result);
}

static void test_conns_sort_orders(void **state)
{
	const char *by_bytes[] = { "conns", "--sort", "bytes", NULL };
	const char *by_age[] = { "conns", "--sort=age", NULL };
	const char *by_port[] = { "conns", "--sort", "port", NULL };
	struct fake_server server;
	struct run_result result;

	(void)state;
	run_against(FAKE_ANSWER, NULL, by_bytes, &result, &server);
	assert_int_equal(result.exit_code, 0);
	assert_in_order(result.out, "\n 6000", "\n 4000", "\n 5000");
	result_free(&result);
	run_against(FAKE_ANSWER, NULL, by_age, &result, &server);
	assert_int_equal(result.exit_code, 0);
	assert_in_order(result.out, "\n 5000", "\n 4000", "\n 6000");
	result_free(&result);
	run_against(FAKE_ANSWER, NULL, by_port, &result, &server);
	assert_int_equal(result.exit_code, 0);
	assert_in_order(result.out, "\n 4000", "\n 5000", "\n 6000");
	result_free(&result);
}

static void test_stats_groups(void **state)
{
	const char *args[] = { "stats", NULL };
	static const char *const expected[] = {
		"connections\n", "  current  ", "  peak  ", "  total from host  ",
		"  total from guest  ", "refused\n", "  no_host_listener  ",
		"  handshake_timeout  ", "rst\n", "traffic\n",
		"1.5 MiB (1572864 B)\n", "3.0 GiB (3221225472 B)\n", "dropped\n",
		"  short_header  ", "  bad_src_cid  ", "  odd\"reason\\with?newline  ",
		"waits\n", "  for guest credit  ", "  for guest RX buffers  ",
		"broker connect latency\n", "0.250ms\n", "0.700ms\n",
	};
	struct fake_server server;
	struct run_result result;
	size_t i;

	(void)state;
	run_against(FAKE_ANSWER, NULL, args, &result, &server);
	assert_int_equal(result.exit_code, 0);
	assert_false(server.last_include_connections);
	for (i = 0; i < sizeof(expected) / sizeof(expected[0]); i++)
		assert_contains(result.out, expected[i]);
	/* Every distinct counter value shows up as a right-aligned number. */
	{
		static const unsigned values[] = { 101, 202, 11, 12, 13, 14, 15, 21, 22,
						   31, 32, 41, 42, 43, 51, 52, 4 };
		for (i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
			char needle[32];

			snprintf(needle, sizeof(needle), " %u\n", values[i]);
			assert_contains(result.out, needle);
		}
	}
	result_free(&result);
}

static json_object *parse_json(const char *text)
{
	json_tokener *tokener = json_tokener_new();
	json_object *root;

	assert_non_null(tokener);
	root = json_tokener_parse_ex(tokener, text, (int)strlen(text));
	if (!root || json_tokener_get_error(tokener) != json_tokener_success)
		fail_msg("not JSON: %s", text);
	/* Only whitespace may follow the object. */
	assert_true(strspn(text + json_tokener_get_parse_end(tokener), " \n") ==
		    strlen(text + json_tokener_get_parse_end(tokener)));
	json_tokener_free(tokener);
	return root;
}

static json_object *member(json_object *object, const char *key)
{
	json_object *value = NULL;

	if (!json_object_object_get_ex(object, key, &value))
		fail_msg("JSON lacks \"%s\"", key);
	return value;
}

static uint64_t member_u64(json_object *object, const char *key)
{
	return json_object_get_uint64(member(object, key));
}

/* sample: which canned answer (counters grow from one to the next). */
static void assert_every_stats_field(json_object *root, unsigned sample)
{
	static const char *const stats_fields[] = {
		"uptime_ms", "guest_cid", "vmm_attached", "features", "vmm_attach_count",
		"connections_current", "connections_peak", "connections_total_from_host",
		"connections_total_from_guest", "refused_no_host_listener",
		"refused_guest_refused", "refused_limit", "refused_bad_connect_line",
		"refused_handshake_timeout", "rst_sent", "rst_received", "bytes_to_host",
		"bytes_to_guest", "packets_from_guest", "packets_to_guest", "dropped",
		"waits_for_credit", "waits_for_rx_buffers", "broker_connects",
		"broker_connect_ns_sum", "broker_connect_ns_max", "connections",
		"connections_truncated", "refused_handshake_limit", "handshakes_current",
		"host_accept_pauses", "tx_buffered_bytes", "tx_window_bytes",
		"tx_buffer_budget", "windows_limited", "host_gone_before_ok",
		"control_bad_requests", "control_timeouts", "control_evicted",
		"control_busy", "refused_permission_denied", "refused_policy_guest",
		"refused_policy_host", "transport_resets",
	};
	static const char *const connection_fields[] = {
		"local_port", "peer_port", "from_host", "state", "age_ms", "idle_ms",
		"bytes_to_host", "bytes_to_guest", "packets_from_guest",
		"packets_to_guest", "guest_credit", "tx_buffered",
	};
	json_object *connections, *dropped, *features;
	size_t i, j;

	/* The descriptor is the source of truth: no proto field may be missing. */
	assert_int_equal(vsockmux__control__stats__descriptor.n_fields,
			 sizeof(stats_fields) / sizeof(stats_fields[0]));
	assert_int_equal(vsockmux__control__connection__descriptor.n_fields,
			 sizeof(connection_fields) / sizeof(connection_fields[0]));
	for (i = 0; i < vsockmux__control__stats__descriptor.n_fields; i++)
		member(root, vsockmux__control__stats__descriptor.fields[i].name);
	features = member(root, "features");
	assert_int_equal(member_u64(features, "virtio"),
			 (1ull << 32) | (1ull << 29) | (1ull << 30) | (1ull << 40));
	assert_int_equal(member_u64(features, "protocol"), 0x229);
	connections = member(root, "connections");
	assert_int_equal(json_object_array_length(connections), 3);
	for (i = 0; i < 3; i++)
		for (j = 0; j < vsockmux__control__connection__descriptor.n_fields; j++)
			member(json_object_array_get_idx(connections, i),
			       vsockmux__control__connection__descriptor.fields[j].name);
	dropped = member(root, "dropped");
	assert_int_equal(member_u64(dropped, "short_header"), 41);
	assert_int_equal(member_u64(dropped, "bad_src_cid"), 42);
	assert_int_equal(member_u64(dropped, FAKE_ODD_DROP_REASON), 43);
	assert_int_equal(member_u64(root, "bytes_to_guest"), FAKE_BYTES_TO_GUEST + sample * 524288ull);
	assert_int_equal(member_u64(root, "bytes_to_host"), FAKE_BYTES_TO_HOST + sample * 2097152ull);
	assert_int_equal(member_u64(root, "uptime_ms"), FAKE_UPTIME_MS + sample * 1000ull);
	assert_int_equal(member_u64(root, "refused_handshake_timeout"), 15);
	assert_int_equal(member_u64(root, "broker_connect_ns_max"), 700000);
	assert_true(json_object_get_boolean(member(root, "connections_truncated")));
	assert_true(json_object_get_boolean(member(root, "vmm_attached")));
}

static void test_json_has_every_field(void **state)
{
	static const char *const commands[] = { "stats", "status", "conns" };
	struct fake_server server;
	struct run_result result;
	size_t i;

	(void)state;
	for (i = 0; i < 3; i++) {
		const char *args[] = { "--json", commands[i], NULL };
		json_object *root;

		run_against(FAKE_ANSWER, NULL, args, &result, &server);
		assert_int_equal(result.exit_code, 0);
		assert_true(server.last_include_connections);
		root = parse_json(result.out);
		assert_every_stats_field(root, 0);
		/* default port order */
		assert_int_equal(member_u64(json_object_array_get_idx(
			member(root, "connections"), 0), "local_port"), 4000);
		json_object_put(root);
		result_free(&result);
	}
}

static void test_json_conns_sorted(void **state)
{
	const char *args[] = { "conns", "--json", "--sort", "bytes", NULL };
	struct fake_server server;
	struct run_result result;
	json_object *root;

	(void)state;
	run_against(FAKE_ANSWER, NULL, args, &result, &server);
	assert_int_equal(result.exit_code, 0);
	root = parse_json(result.out);
	assert_int_equal(member_u64(json_object_array_get_idx(member(root, "connections"), 0),
				    "local_port"), 6000);
	json_object_put(root);
	result_free(&result);
}

static void test_metrics_valid(void **state)
{
	const char *args[] = { "metrics", NULL };
	static const char *const expected[] = {
		"# TYPE vsockmux_refused_total counter\n",
		"vsockmux_refused_total{reason=\"no_host_listener\"} 11\n",
		"vsockmux_refused_total{reason=\"handshake_timeout\"} 15\n",
		"vsockmux_dropped_total{reason=\"odd\\\"reason\\\\with\\nnewline\"} 43\n",
		"vsockmux_transferred_bytes_total{direction=\"to_guest\"} 3221225472\n",
		"vsockmux_connections_total{initiator=\"guest\"} 202\n",
		"# TYPE vsockmux_connections gauge\nvsockmux_connections 5\n",
		"vsockmux_uptime_seconds 7503.000\n",
		"vsockmux_broker_connect_duration_seconds_count 4\n",
		"vsockmux_vmm_feature_negotiated{kind=\"virtio\",bit=\"32\",name=\"VERSION_1\"} 1\n",
		"vsockmux_connection_transferred_bytes_total{local_port=\"6000\",peer_port=\"1040\",initiator=\"guest\",direction=\"to_host\"} 104857600\n",
		"vsockmux_connection_state{local_port=\"5000\",peer_port=\"1025\",initiator=\"host\",state=\"established\"} 1\n",
		"vsockmux_connection_guest_credit_bytes{local_port=\"4000\",peer_port=\"1030\",initiator=\"guest\"} 65536\n",
	};
	struct fake_server server;
	struct run_result result;
	char error[256];
	size_t i;

	(void)state;
	run_against(FAKE_ANSWER, NULL, args, &result, &server);
	assert_int_equal(result.exit_code, 0);
	assert_true(server.last_include_connections);
	if (prom_validate(result.out, error, sizeof(error)) != 0)
		fail_msg("invalid exposition format: %s\n%s", error, result.out);
	assert_true(prom_last_sample_count() > 40);
	for (i = 0; i < sizeof(expected) / sizeof(expected[0]); i++)
		assert_contains(result.out, expected[i]);
	/* every metric name is in the vsockmux_ namespace */
	{
		const char *line = result.out;
		while (*line) {
			if (line[0] != '#')
				assert_int_equal(strncmp(line, "vsockmux_", 9), 0);
			line = strchr(line, '\n') + 1;
		}
	}
	result_free(&result);
}

static void test_version_mismatch(void **state)
{
	const char *args[] = { "status", NULL };
	struct fake_server server;
	struct run_result result;

	(void)state;
	run_against(FAKE_WRONG_VERSION, NULL, args, &result, &server);
	assert_int_equal(result.exit_code, 1);
	assert_string_equal(result.out, "");
	assert_string_equal(result.err,
		"vsockctl: version mismatch: daemon speaks control protocol 2, vsockctl speaks 1\n");
	result_free(&result);
}

static void test_daemon_refusal(void **state)
{
	const char *args[] = { "stats", NULL };
	struct fake_server server;
	struct run_result result;
	char expected[256];

	(void)state;
	run_against(FAKE_ERROR, "permission denied: uid 1234 is not allowed", args,
		    &result, &server);
	assert_int_equal(result.exit_code, 1);
	snprintf(expected, sizeof(expected),
		 "vsockctl: %s: permission denied: uid 1234 is not allowed\n",
		 server.socket_path);
	assert_string_equal(result.err, expected);
	result_free(&result);
}

/* One failure mode: exit 1, one stderr line naming the path and the reason. */
static void check_failure_mode(enum fake_mode mode, const char *reason)
{
	const char *args[] = { "conns", NULL };
	struct fake_server server;
	struct run_result result;

	run_against(mode, NULL, args, &result, &server);
	assert_int_equal(result.exit_code, 1);
	assert_string_equal(result.out, "");
	assert_contains(result.err, server.socket_path);
	assert_contains(result.err, reason);
	assert_int_equal(count_of(result.err, "\n"), 1);
	assert_int_equal(strncmp(result.err, "vsockctl: ", 10), 0);
	result_free(&result);
}

static void test_closed_without_answer(void **state)
{
	(void)state;
	check_failure_mode(FAKE_CLOSE, "closed the connection without answering");
}

static void test_oversized_response(void **state)
{
	(void)state;
	check_failure_mode(FAKE_OVERSIZED, "response of 4194305 bytes exceeds the 4 MiB limit");
}

static void test_truncated_response(void **state)
{
	(void)state;
	check_failure_mode(FAKE_TRUNCATED, "mid-response (10 of 100 bytes)");
}

static void test_malformed_response(void **state)
{
	(void)state;
	check_failure_mode(FAKE_GARBAGE, "malformed response");
}

static void test_no_socket(void **state)
{
	char directory[] = "/tmp/vsockctl-nosock.XXXXXX", path[128], expected[256];
	const char *args[] = { "--control-socket", path, "status", NULL };
	struct run_result result;

	(void)state;
	assert_non_null(mkdtemp(directory));
	snprintf(path, sizeof(path), "%s/missing.ctl", directory);
	run(args, &result);
	rmdir(directory);
	assert_int_equal(result.exit_code, 1);
	snprintf(expected, sizeof(expected),
		 "vsockctl: cannot connect to %s: No such file or directory (is vsockmuxd running?)\n",
		 path);
	assert_string_equal(result.err, expected);
	result_free(&result);
}

static void test_socket_from_environment(void **state)
{
	const char *plain[] = { "status", NULL };
	struct fake_server server;
	struct run_result result;
	const char *override[] = { "--control-socket", NULL, "status", NULL };

	(void)state;
	assert_int_equal(fake_server_start(&server, FAKE_ANSWER, 0), 0);
	run_full(server.socket_path, plain, NULL, 0, 0, &result);
	assert_int_equal(result.exit_code, 0);
	assert_contains(result.out, "guest CID");
	result_free(&result);
	/* --control-socket wins over the environment. */
	override[1] = server.socket_path;
	run_full("/nonexistent/env.ctl", override, NULL, 0, 0, &result);
	assert_int_equal(result.exit_code, 0);
	result_free(&result);
	fake_server_stop(&server);
	assert_int_equal(server.requests, 2);
}

#define DEFAULT_SOCKET_PATH "/run/vsockmux/vsock.sock.ctl"

/* Runs only where DEFAULT_SOCKET_PATH does not exist (run_default_socket_group). */
static void test_default_socket_path(void **state)
{
	const char *args[] = { "status", NULL };
	struct run_result result;

	(void)state;
	run_full(NULL, args, NULL, 0, 0, &result);
	assert_int_equal(result.exit_code, 1);
	assert_contains(result.err, "vsockctl: cannot connect to " DEFAULT_SOCKET_PATH ": ");
	result_free(&result);
}

static void test_usage_errors(void **state)
{
	static char long_path[200];
	const char *cases[][6] = {
		{ NULL },
		{ "bogus", NULL },
		{ "status", "extra", NULL },
		{ "conns", "--sort", "size", NULL },
		{ "conns", "--sort", NULL },
		{ "watch", "--interval", "0", NULL },
		{ "watch", "--interval", "-1", NULL },
		{ "watch", "--interval", "3601", NULL },
		{ "watch", "--interval", "abc", NULL },
		{ "watch", "--interval", "nan", NULL },
		{ "watch", "--interval", "1s", NULL },
		{ "status", "--interval", "1", NULL },
		{ "stats", "--sort", "bytes", NULL },
		{ "--json", "metrics", NULL },
		{ "--frobnicate", "status", NULL },
		{ "-x", "status", NULL },
		{ "--control-socket", long_path, "status", NULL },
		{ "--control-socket", "", "status", NULL },
	};
	size_t i;

	(void)state;
	memset(long_path, 'a', sizeof(long_path) - 1);
	long_path[0] = '/';
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct run_result result;

		run(cases[i], &result);
		if (result.exit_code != 2)
			fail_msg("case %zu (%s ...): exit %d, stderr: %s", i,
				 cases[i][0] ? cases[i][0] : "(none)", result.exit_code, result.err);
		assert_string_equal(result.out, "");
		assert_int_equal(strncmp(result.err, "vsockctl: ", 10), 0);
		result_free(&result);
	}
}

static void test_help_and_version(void **state)
{
	const char *help[] = { "--help", NULL };
	const char *version[] = { "--version", NULL };
	const char *short_help[] = { "status", "-h", NULL };
	struct run_result result;

	(void)state;
	run(help, &result);
	assert_int_equal(result.exit_code, 0);
	assert_contains(result.out, "Usage: vsockctl");
	assert_contains(result.out, "VSOCKMUX_CONTROL_SOCKET");
	assert_contains(result.out, "/run/vsockmux/vsock.sock.ctl");
	assert_string_equal(result.err, "");
	result_free(&result);
	run(short_help, &result);
	assert_int_equal(result.exit_code, 0);
	assert_contains(result.out, "Usage: vsockctl");
	result_free(&result);
	run(version, &result);
	assert_int_equal(result.exit_code, 0);
	assert_contains(result.out, "vsockctl " VSOCKMUX_VERSION " (control protocol 1)\n");
	result_free(&result);
}

static void test_watch_until_daemon_goes_away(void **state)
{
	struct fake_server server;
	struct run_result result;
	const char *args[] = { "--control-socket", NULL, "watch", "--interval", "0.05", NULL };

	(void)state;
	assert_int_equal(fake_server_start(&server, FAKE_ANSWER, 2), 0);
	args[1] = server.socket_path;
	run(args, &result);
	fake_server_stop(&server);
	assert_int_equal(result.exit_code, 1);
	assert_int_equal(server.requests, 2);
	assert_true(server.last_include_connections);
	assert_int_equal(count_of(result.out, "=== vsockctl watch: "), 2);
	assert_int_equal(count_of(result.out, "LOCAL  PEER"), 2);
	assert_contains(result.out, "rates: n/a (first sample)\n");
	assert_contains(result.out, "rates: to host 2.0 MiB/s, to guest 512.0 KiB/s (over 1.0s)\n");
	assert_null(strstr(result.out, "\033["));	/* not a tty: no ANSI */
	assert_contains(result.err, server.socket_path);
	result_free(&result);
}

static void check_watch_stops_on(int signal_number)
{
	struct fake_server server;
	struct run_result result;
	const char *args[] = { "--control-socket", NULL, "watch", "--interval", "0.02", NULL };

	assert_int_equal(fake_server_start(&server, FAKE_ANSWER, 0), 0);
	args[1] = server.socket_path;
	run_full(NULL, args, "LOCAL  PEER", 2, signal_number, &result);
	fake_server_stop(&server);
	assert_int_equal(result.exit_code, 0);
	assert_string_equal(result.err, "");
	assert_true(server.requests >= 2);
	result_free(&result);
}

static void test_watch_sigterm(void **state)
{
	(void)state;
	check_watch_stops_on(SIGTERM);
}

static void test_watch_sigint(void **state)
{
	(void)state;
	check_watch_stops_on(SIGINT);
}

static void test_watch_json_lines(void **state)
{
	struct fake_server server;
	struct run_result result;
	const char *args[] = { "--json", "--control-socket", NULL, "watch", "--interval", "0.05",
			       NULL };
	json_object *first, *second, *rates;
	char *newline;

	(void)state;
	assert_int_equal(fake_server_start(&server, FAKE_ANSWER, 2), 0);
	args[2] = server.socket_path;
	run(args, &result);
	fake_server_stop(&server);
	assert_int_equal(result.exit_code, 1);
	assert_int_equal(count_of(result.out, "\n"), 2);
	newline = strchr(result.out, '\n');
	*newline = '\0';
	first = parse_json(result.out);
	second = parse_json(newline + 1);
	assert_true(json_object_is_type(member(first, "rates"), json_type_null));
	rates = member(second, "rates");
	assert_true(json_object_get_double(member(rates, "bytes_to_host_per_second")) == 2097152.0);
	assert_true(json_object_get_double(member(rates, "bytes_to_guest_per_second")) == 524288.0);
	assert_every_stats_field(second, 1);
	json_object_put(first);
	json_object_put(second);
	result_free(&result);
}

#define SKIP_EXIT_CODE 77

static int run_main_group(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_status_table),
		cmocka_unit_test(test_conns_table),
		cmocka_unit_test(test_conns_sort_orders),
		cmocka_unit_test(test_stats_groups),
		cmocka_unit_test(test_json_has_every_field),
		cmocka_unit_test(test_json_conns_sorted),
		cmocka_unit_test(test_metrics_valid),
		cmocka_unit_test(test_version_mismatch),
		cmocka_unit_test(test_daemon_refusal),
		cmocka_unit_test(test_closed_without_answer),
		cmocka_unit_test(test_oversized_response),
		cmocka_unit_test(test_truncated_response),
		cmocka_unit_test(test_malformed_response),
		cmocka_unit_test(test_no_socket),
		cmocka_unit_test(test_socket_from_environment),
		cmocka_unit_test(test_usage_errors),
		cmocka_unit_test(test_help_and_version),
		cmocka_unit_test(test_watch_until_daemon_goes_away),
		cmocka_unit_test(test_watch_sigterm),
		cmocka_unit_test(test_watch_sigint),
		cmocka_unit_test(test_watch_json_lines),
	};

	return cmocka_run_group_tests_name("vsockctl", tests, NULL, NULL) == 0 ? 0 : 1;
}

/* 0 passed, 1 failed, SKIP_EXIT_CODE: a file is at the default path. */
static int run_default_socket_group(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_default_socket_path),
	};
	struct stat status;

	if (stat(DEFAULT_SOCKET_PATH, &status) == 0) {
		printf("SKIP: %s exists (a real daemon lives here): vsockctl's default "
		       "path cannot be tested\n", DEFAULT_SOCKET_PATH);
		return SKIP_EXIT_CODE;
	}
	return cmocka_run_group_tests_name("vsockctl_default_socket", tests, NULL, NULL) == 0
		       ? 0 : 1;
}

int main(int argc, char **argv)
{
	const char *group = argc > 1 ? argv[1] : NULL;
	int main_result, default_result;

	if (argc > 2 || (group && strcmp(group, "main") != 0 &&
			 strcmp(group, "default-socket") != 0)) {
		fprintf(stderr, "usage: %s [main|default-socket]\n", argv[0]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (group && strcmp(group, "main") == 0)
		return run_main_group();
	if (group)
		return run_default_socket_group();
	main_result = run_main_group();
	default_result = run_default_socket_group();
	if (main_result == 1 || default_result == 1)
		return 1;
	return default_result;
}
