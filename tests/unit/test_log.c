/*
 * test_log.c - the log line formats: text as before, and JSON that a log
 * collector can parse whatever a message holds (checked with json-c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <json-c/json.h>

#include "vsockmux/log.h"

/* Run one logging call with stderr on a pipe; returns the line written. */
static void capture(void (*emit)(void), char *out, size_t capacity)
{
	int pipe_fds[2], saved = dup(STDERR_FILENO);
	ssize_t got;

	assert_int_equal(pipe(pipe_fds), 0);
	assert_true(saved >= 0);
	assert_int_equal(dup2(pipe_fds[1], STDERR_FILENO), STDERR_FILENO);
	emit();
	assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
	close(saved);
	close(pipe_fds[1]);
	got = read(pipe_fds[0], out, capacity - 1);
	close(pipe_fds[0]);
	assert_true(got > 0);
	out[got] = '\0';
}

static void emit_plain(void)
{
	log_warn("quote \" backslash \\ newline \n tab \t byte \x7f end");
}

static void emit_connection(void)
{
	struct log_ratelimit limit = { 0 };
	const struct log_connection fields = {
		.event = "conn_close", .local_port = 1073741824u, .peer_port = 52,
		.initiator = "host", .bytes_to_host = 5, .bytes_to_guest = 7,
		.packets_from_guest = 3, .packets_to_guest = 4, .age_ms = 12,
		.reason = "guest sent RST",
	};
	log_connection_event(&limit, LOG_LEVEL_INFO, &fields, "conn close: %s", "x");
}

static json_object *field(json_object *object, const char *name)
{
	json_object *value = NULL;
	if (!json_object_object_get_ex(object, name, &value))
		fail_msg("field %s missing", name);
	return value;
}

static void test_text_format_is_unchanged(void **state)
{
	char line[2048];
	(void)state;
	log_set_format(LOG_FORMAT_TEXT);
	log_set_role("muxer");
	capture(emit_plain, line, sizeof(line));
	assert_string_equal(line, "vsockmuxd[muxer] warn: quote \" backslash \\ newline \n"
			    " tab \t byte \x7f end\n");
}

static void test_json_line_parses_with_every_byte(void **state)
{
	char line[2048];
	json_object *object;
	(void)state;
	log_set_format(LOG_FORMAT_JSON);
	log_set_role("broker");
	capture(emit_plain, line, sizeof(line));
	/* one line: the message's newline is escaped */
	assert_non_null(strchr(line, '\n'));
	assert_int_equal(strchr(line, '\n') - line, (long)strlen(line) - 1);
	object = json_tokener_parse(line);
	assert_non_null(object);
	assert_string_equal(json_object_get_string(field(object, "level")), "warn");
	assert_string_equal(json_object_get_string(field(object, "process")), "broker");
	assert_string_equal(json_object_get_string(field(object, "event")), "log");
	assert_string_equal(json_object_get_string(field(object, "message")),
			    "quote \" backslash \\ newline \n tab \t byte \x7f end");
	assert_int_equal(strlen(json_object_get_string(field(object, "time"))), 24);
	json_object_put(object);
}

static void test_json_connection_fields(void **state)
{
	char line[2048];
	json_object *object;
	(void)state;
	log_set_format(LOG_FORMAT_JSON);
	log_set_level(LOG_LEVEL_INFO);
	capture(emit_connection, line, sizeof(line));
	object = json_tokener_parse(line);
	assert_non_null(object);
	assert_string_equal(json_object_get_string(field(object, "event")), "conn_close");
	assert_int_equal(json_object_get_int64(field(object, "local_port")), 1073741824);
	assert_int_equal(json_object_get_int64(field(object, "peer_port")), 52);
	assert_string_equal(json_object_get_string(field(object, "initiator")), "host");
	assert_int_equal(json_object_get_int64(field(object, "bytes_to_host")), 5);
	assert_int_equal(json_object_get_int64(field(object, "bytes_to_guest")), 7);
	assert_int_equal(json_object_get_int64(field(object, "packets_from_guest")), 3);
	assert_int_equal(json_object_get_int64(field(object, "packets_to_guest")), 4);
	assert_int_equal(json_object_get_int64(field(object, "age_ms")), 12);
	assert_string_equal(json_object_get_string(field(object, "reason")), "guest sent RST");
	json_object_put(object);
}

static void test_parse_format(void **state)
{
	enum log_format format;
	(void)state;
	assert_int_equal(log_parse_format("json", &format), 0);
	assert_int_equal(format, LOG_FORMAT_JSON);
	assert_int_equal(log_parse_format("text", &format), 0);
	assert_int_equal(format, LOG_FORMAT_TEXT);
	assert_int_equal(log_parse_format("xml", &format), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_text_format_is_unchanged),
		cmocka_unit_test(test_json_line_parses_with_every_byte),
		cmocka_unit_test(test_json_connection_fields),
		cmocka_unit_test(test_parse_format),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
