/*
 * test_options.c - vsockmuxd's command line: defaults, ranges, and the
 * usage-error outcome (exit code 2 in main) for every kind of bad input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include "vsockmux/options.h"

#define ARGC(array) ((int)(sizeof(array) / sizeof((array)[0])))

static enum options_result parse(int argc, char **argv,
				 struct vsockmuxd_options *options)
{
	return options_parse(argc, argv, options);
}

static void test_minimal_command_line_gets_defaults(void **state)
{
	char *argv[] = { "vsockmuxd", "--guest-cid", "3", "--socket", "/tmp/v.sock",
			 "--uds-path", "/tmp/h.sock" };
	struct vsockmuxd_options options;
	(void)state;
	assert_int_equal(parse(ARGC(argv), argv, &options), OPTIONS_OK);
	assert_int_equal(options.guest_cid, 3);
	assert_string_equal(options.socket_path, "/tmp/v.sock");
	assert_string_equal(options.uds_path, "/tmp/h.sock");
	assert_int_equal(options.tx_buffer_size, OPTIONS_DEFAULT_TX_BUFFER_SIZE);
	assert_int_equal(options.queue_size, OPTIONS_DEFAULT_QUEUE_SIZE);
	assert_int_equal(options.max_connections, 4096);
	assert_int_equal(options.log_level, LOG_LEVEL_INFO);
	assert_int_equal(options.connect_reply, CONNECT_REPLY_HOST_PORT);
	assert_false(options.allow_guest_ports.restricted);
	assert_false(options.allow_host_ports.restricted);
}

static void test_all_options(void **state)
{
	char *argv[] = { "vsockmuxd", "--guest-cid=4294967294", "--socket", "a",
			 "--uds-path", "b", "--tx-buffer-size", "65536",
			 "--queue-size", "256", "--max-connections", "10",
			 "--log-level", "debug", "--log-format", "json",
			 "--connect-reply", "guest-port",
			 "--allow-guest-ports", "22,1024-2047", "--allow-host-ports=52" };
	struct vsockmuxd_options options;
	(void)state;
	assert_int_equal(parse(ARGC(argv), argv, &options), OPTIONS_OK);
	assert_int_equal(options.guest_cid, 4294967294ull);
	assert_int_equal(options.tx_buffer_size, 65536);
	assert_int_equal(options.queue_size, 256);
	assert_int_equal(options.max_connections, 10);
	assert_int_equal(options.log_level, LOG_LEVEL_DEBUG);
	assert_int_equal(options.connect_reply, CONNECT_REPLY_GUEST_PORT);
	assert_int_equal(options.log_format, LOG_FORMAT_JSON);
	assert_true(port_list_allows(&options.allow_guest_ports, 1500));
	assert_false(port_list_allows(&options.allow_guest_ports, 23));
	assert_true(port_list_allows(&options.allow_host_ports, 52));
	assert_false(port_list_allows(&options.allow_host_ports, 53));
}

static void expect_usage_error(char **argv, int argc)
{
	struct vsockmuxd_options options;
	assert_int_equal(parse(argc, argv, &options), OPTIONS_USAGE_ERROR);
}

static void test_bad_values_are_usage_errors(void **state)
{
	static const char *const bad[][2] = {
		{ "--guest-cid", "2" }, { "--guest-cid", "-3" },
		{ "--guest-cid", "3x" }, { "--guest-cid", "4294967295" },
		{ "--guest-cid", "" }, { "--tx-buffer-size", "100" },
		{ "--tx-buffer-size", "99999999999" }, { "--queue-size", "100" },
		{ "--queue-size", "2048" }, { "--queue-size", "0" },
		{ "--max-connections", "0" }, { "--max-connections", "2000000" },
		{ "--log-level", "loud" }, { "--connect-reply", "local" },
		{ "--connect-reply", "" }, { "--log-format", "xml" }, { "--allow-guest-ports", "x" },
		{ "--allow-guest-ports", "" }, { "--allow-host-ports", "9-3" },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *argv[] = { "vsockmuxd", "--guest-cid", "3", "--socket", "a",
				 "--uds-path", "b", (char *)bad[i][0], (char *)bad[i][1] };
		expect_usage_error(argv, ARGC(argv));
	}
}

static void test_missing_and_unknown_arguments(void **state)
{
	char *no_cid[] = { "vsockmuxd", "--socket", "a", "--uds-path", "b" };
	char *no_socket[] = { "vsockmuxd", "--guest-cid", "3", "--uds-path", "b" };
	char *no_uds[] = { "vsockmuxd", "--guest-cid", "3", "--socket", "a" };
	char *same[] = { "vsockmuxd", "--guest-cid", "3", "--socket", "a", "--uds-path", "a" };
	char *unknown[] = { "vsockmuxd", "--guest-cid", "3", "--socket", "a",
			    "--uds-path", "b", "--frobnicate" };
	char *stray[] = { "vsockmuxd", "--guest-cid", "3", "--socket", "a",
			  "--uds-path", "b", "extra" };
	char *no_value[] = { "vsockmuxd", "--socket", "a", "--uds-path", "b", "--guest-cid" };
	(void)state;
	expect_usage_error(no_cid, ARGC(no_cid));
	expect_usage_error(no_socket, ARGC(no_socket));
	expect_usage_error(no_uds, ARGC(no_uds));
	expect_usage_error(same, ARGC(same));
	expect_usage_error(unknown, ARGC(unknown));
	expect_usage_error(stray, ARGC(stray));
	expect_usage_error(no_value, ARGC(no_value));
}

static void test_help_and_version_exit_successfully(void **state)
{
	char *help[] = { "vsockmuxd", "--help" };
	char *version[] = { "vsockmuxd", "--version" };
	struct vsockmuxd_options options;
	(void)state;
	assert_int_equal(parse(ARGC(help), help, &options), OPTIONS_EXIT_SUCCESS);
	assert_int_equal(parse(ARGC(version), version, &options), OPTIONS_EXIT_SUCCESS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_minimal_command_line_gets_defaults),
		cmocka_unit_test(test_all_options),
		cmocka_unit_test(test_bad_values_are_usage_errors),
		cmocka_unit_test(test_missing_and_unknown_arguments),
		cmocka_unit_test(test_help_and_version_exit_successfully),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
