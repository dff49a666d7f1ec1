/*
 * test_connect_cmd.c - unit tests for daemon/connect_cmd.c, the
 * "CONNECT <port>\n" handshake parser: accepted forms, every way of
 * splitting a line, rejected junk, the 32-byte limit, and that bytes after
 * the newline are never consumed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "connect_cmd.h"

struct feed_result {
	enum connect_cmd_status status;
	size_t consumed;
	uint32_t port;
};

/* Feed data in one call to a fresh parser. */
static struct feed_result feed_once(const char *data, size_t length)
{
	struct connect_cmd_parser parser;
	struct feed_result result = { .port = 0xdeadbeef };

	connect_cmd_init(&parser);
	result.status = connect_cmd_feed(&parser, data, length, &result.consumed,
					 &result.port);
	return result;
}

/*
 * Feed data in pieces of piece bytes; stop at the first result that is
 * not INCOMPLETE. consumed is the total over all calls.
 */
static struct feed_result feed_pieces(const char *data, size_t length,
				      size_t piece)
{
	struct connect_cmd_parser parser;
	struct feed_result result = { .status = CONNECT_CMD_INCOMPLETE,
				      .port = 0xdeadbeef };
	size_t offset = 0;

	connect_cmd_init(&parser);
	while (offset < length && result.status == CONNECT_CMD_INCOMPLETE) {
		size_t take = length - offset < piece ? length - offset : piece;
		size_t consumed = 0;

		result.status = connect_cmd_feed(&parser, data + offset, take,
						 &consumed, &result.port);
		assert_true(consumed <= take);
		if (result.status == CONNECT_CMD_INCOMPLETE)
			assert_int_equal(consumed, take);
		result.consumed += consumed;
		offset += take;
	}
	return result;
}

static void expect_done(const char *line, uint32_t port)
{
	struct feed_result result = feed_once(line, strlen(line));

	if (result.status != CONNECT_CMD_DONE)
		fail_msg("\"%s\": status %d, want DONE", line, result.status);
	assert_int_equal(result.port, port);
	assert_int_equal(result.consumed, strlen(line));
}

static void expect_invalid(const char *data, size_t length)
{
	struct feed_result result = feed_once(data, length);

	if (result.status != CONNECT_CMD_INVALID)
		fail_msg("\"%.*s\": status %d, want INVALID", (int)length, data,
			 result.status);
	/* Splitting must not change the verdict. */
	assert_int_equal(feed_pieces(data, length, 1).status, CONNECT_CMD_INVALID);
}

static void test_whole_line(void **state)
{
	(void)state;
	expect_done("CONNECT 52\n", 52);
	expect_done("CONNECT 0\n", 0);
	expect_done("CONNECT 1073741824\n", 1073741824u);
}

static void test_case_insensitive(void **state)
{
	(void)state;
	expect_done("connect 1\n", 1);
	expect_done("CoNnEcT 2\n", 2);
	expect_done("cONNECt 3\n", 3);
}

static void test_blanks_and_crlf(void **state)
{
	(void)state;
	expect_done("CONNECT    7\n", 7);
	expect_done("CONNECT\t8\n", 8);
	expect_done("CONNECT \t \t9\n", 9);
	expect_done("  CONNECT 10\n", 10);
	expect_done("\t CONNECT 11\n", 11);
	expect_done("CONNECT 12   \n", 12);
	expect_done("CONNECT 13\t\n", 13);
	expect_done("CONNECT 14\r\n", 14);
	expect_done("CONNECT 15 \t\r\n", 15);
	expect_done("CONNECT 0016\n", 16);
}

static void test_split_every_position(void **state)
{
	const char line[] = "  connect\t 4294967295 \r\nDATA";
	const size_t line_length = sizeof(line) - 1 - 4; /* up to '\n' */

	(void)state;
	for (size_t cut = 0; cut <= sizeof(line) - 1; cut++) {
		struct connect_cmd_parser parser;
		enum connect_cmd_status status;
		size_t consumed = 0, second_consumed = 0;
		uint32_t port = 0;

		connect_cmd_init(&parser);
		status = connect_cmd_feed(&parser, line, cut, &consumed, &port);
		if (cut < line_length) {
			assert_int_equal(status, CONNECT_CMD_INCOMPLETE);
			assert_int_equal(consumed, cut);
			status = connect_cmd_feed(&parser, line + cut,
						  sizeof(line) - 1 - cut,
						  &second_consumed, &port);
		}
		assert_int_equal(status, CONNECT_CMD_DONE);
		assert_int_equal(consumed + second_consumed, line_length);
		assert_int_equal(port, UINT32_MAX);
	}
}

static void test_one_byte_pieces(void **state)
{
	const char line[] = "CONNECT 1234\r\n";
	struct feed_result result;

	(void)state;
	result = feed_pieces(line, strlen(line), 1);
	assert_int_equal(result.status, CONNECT_CMD_DONE);
	assert_int_equal(result.port, 1234);
	assert_int_equal(result.consumed, strlen(line));

	for (size_t piece = 2; piece <= strlen(line); piece++) {
		result = feed_pieces(line, strlen(line), piece);
		assert_int_equal(result.status, CONNECT_CMD_DONE);
		assert_int_equal(result.port, 1234);
	}
}

static void test_junk_keyword(void **state)
{
	(void)state;
	expect_invalid("CONNECTX 5\n", 11);
	expect_invalid("CONN 5\n", 7);
	expect_invalid("CONNECT5\n", 9);
	expect_invalid("XCONNECT 5\n", 11);
	expect_invalid("GET / HTTP/1.0\r\n", 16);
	expect_invalid("\n", 1);
	expect_invalid("\r\n", 2);
	expect_invalid("   \n", 4);
}

static void test_bad_port(void **state)
{
	(void)state;
	expect_invalid("CONNECT\n", 8);
	expect_invalid("CONNECT \n", 9);
	expect_invalid("CONNECT x\n", 10);
	expect_invalid("CONNECT 12x\n", 12);
	expect_invalid("CONNECT 1 2\n", 12);
	expect_invalid("CONNECT -1\n", 11);
	expect_invalid("CONNECT +1\n", 11);
	expect_invalid("CONNECT 0x10\n", 13);
	expect_invalid("CONNECT 4294967296\n", 19);
	expect_invalid("CONNECT 99999999999\n", 20);
	expect_invalid("CONNECT 5\r\r\n", 12);
	expect_invalid("CONNECT 5\r \n", 12);
	expect_invalid("CONNECT 5\rX\n", 12);
}

static void test_max_u32(void **state)
{
	(void)state;
	expect_done("CONNECT 4294967295\n", UINT32_MAX);
}

static void test_nul_byte(void **state)
{
	const char with_nul_port[] = "CONNECT 5\0\n";
	const char with_nul_keyword[] = "CON\0NECT 5\n";

	(void)state;
	expect_invalid(with_nul_port, sizeof(with_nul_port) - 1);
	expect_invalid(with_nul_keyword, sizeof(with_nul_keyword) - 1);
}

static void test_line_length_limit(void **state)
{
	/* 32 bytes with the newline: the longest accepted line. */
	const char longest[] = "CONNECT                  12345\r\n";
	/* 33 bytes with the newline. */
	const char too_long[] = "CONNECT                   12345\r\n";
	/* 32 bytes, none of them a newline. */
	const char no_newline[] = "CONNECT                  12345  ";
	struct feed_result result;

	(void)state;
	assert_int_equal(strlen(longest), CONNECT_CMD_MAX_LINE);
	assert_int_equal(strlen(too_long), CONNECT_CMD_MAX_LINE + 1);
	assert_int_equal(strlen(no_newline), CONNECT_CMD_MAX_LINE);

	expect_done(longest, 12345);
	result = feed_pieces(longest, strlen(longest), 1);
	assert_int_equal(result.status, CONNECT_CMD_DONE);
	assert_int_equal(result.consumed, CONNECT_CMD_MAX_LINE);

	expect_invalid(too_long, strlen(too_long));

	/* 31 bytes without a newline may still become a line... */
	result = feed_once(no_newline, CONNECT_CMD_MAX_LINE - 1);
	assert_int_equal(result.status, CONNECT_CMD_INCOMPLETE);
	/* ...the 32nd byte without one is too many. */
	expect_invalid(no_newline, CONNECT_CMD_MAX_LINE);
}

static void test_incomplete(void **state)
{
	struct feed_result result;

	(void)state;
	result = feed_once("", 0);
	assert_int_equal(result.status, CONNECT_CMD_INCOMPLETE);
	assert_int_equal(result.consumed, 0);

	result = feed_once("CONNECT 52", 10);
	assert_int_equal(result.status, CONNECT_CMD_INCOMPLETE);
	assert_int_equal(result.consumed, 10);

	result = feed_once("CONNECT 52\r", 11);
	assert_int_equal(result.status, CONNECT_CMD_INCOMPLETE);
	assert_int_equal(result.consumed, 11);

	result = feed_once("  ", 2);
	assert_int_equal(result.status, CONNECT_CMD_INCOMPLETE);

	/* A prefix that can no longer match is rejected at once. */
	result = feed_once("CONNX", 5);
	assert_int_equal(result.status, CONNECT_CMD_INVALID);
}

static void test_trailing_data_not_consumed(void **state)
{
	const char data[] = "CONNECT 52\nhello guest\n";
	struct feed_result result;

	(void)state;
	result = feed_once(data, sizeof(data) - 1);
	assert_int_equal(result.status, CONNECT_CMD_DONE);
	assert_int_equal(result.port, 52);
	assert_int_equal(result.consumed, 11);

	/* Same when the line arrives in pieces and the data with the last. */
	result = feed_pieces(data, sizeof(data) - 1, 4);
	assert_int_equal(result.status, CONNECT_CMD_DONE);
	assert_int_equal(result.consumed, 11);
}

static void test_finished_parser(void **state)
{
	struct connect_cmd_parser parser;
	size_t consumed = 99;
	uint32_t port = 0;

	(void)state;
	connect_cmd_init(&parser);
	assert_int_equal(connect_cmd_feed(&parser, "CONNECT 1\n", 10, &consumed,
					  &port), CONNECT_CMD_DONE);
	/* A finished parser takes nothing more... */
	assert_int_equal(connect_cmd_feed(&parser, "CONNECT 2\n", 10, &consumed,
					  &port), CONNECT_CMD_INVALID);
	assert_int_equal(consumed, 0);
	assert_int_equal(port, 1);
	/* ...until it is initialised again. */
	connect_cmd_init(&parser);
	assert_int_equal(connect_cmd_feed(&parser, "CONNECT 2\n", 10, &consumed,
					  &port), CONNECT_CMD_DONE);
	assert_int_equal(port, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_whole_line),
		cmocka_unit_test(test_case_insensitive),
		cmocka_unit_test(test_blanks_and_crlf),
		cmocka_unit_test(test_split_every_position),
		cmocka_unit_test(test_one_byte_pieces),
		cmocka_unit_test(test_junk_keyword),
		cmocka_unit_test(test_bad_port),
		cmocka_unit_test(test_max_u32),
		cmocka_unit_test(test_nul_byte),
		cmocka_unit_test(test_line_length_limit),
		cmocka_unit_test(test_incomplete),
		cmocka_unit_test(test_trailing_data_not_consumed),
		cmocka_unit_test(test_finished_parser),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
