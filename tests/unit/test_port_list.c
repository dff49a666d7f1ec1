/*
 * test_port_list.c - --allow-guest-ports / --allow-host-ports lists: what
 * parses, what is refused, and membership at the edges of each range.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include "vsockmux/port_list.h"

static void test_no_list_allows_everything(void **state)
{
	struct port_list list = { 0 };
	(void)state;
	assert_true(port_list_allows(&list, 0));
	assert_true(port_list_allows(&list, UINT32_MAX));
}

static void test_ports_and_ranges(void **state)
{
	struct port_list list;
	const char *why = NULL;
	(void)state;
	assert_int_equal(port_list_parse("22,1024-2047,4294967295", &list, &why), 0);
	assert_int_equal(list.count, 3);
	assert_true(port_list_allows(&list, 22));
	assert_false(port_list_allows(&list, 21));
	assert_false(port_list_allows(&list, 23));
	assert_false(port_list_allows(&list, 1023));
	assert_true(port_list_allows(&list, 1024));
	assert_true(port_list_allows(&list, 2047));
	assert_false(port_list_allows(&list, 2048));
	assert_true(port_list_allows(&list, UINT32_MAX));
	assert_false(port_list_allows(&list, 0));
}

static void test_single_port_range(void **state)
{
	struct port_list list;
	const char *why = NULL;
	(void)state;
	assert_int_equal(port_list_parse("5-5", &list, &why), 0);
	assert_true(port_list_allows(&list, 5));
	assert_false(port_list_allows(&list, 4));
	assert_false(port_list_allows(&list, 6));
}

static void test_malformed_lists_are_refused(void **state)
{
	static const char *const bad[] = {
		"", ",", "22,", ",22", "22,,23", "a", "22a", "-5", "5-", "9-3",
		"4294967296", "1-4294967296", "+5", " 5", "5 ", "5;6", "1--2",
	};
	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct port_list list;
		const char *why = NULL;
		if (port_list_parse(bad[i], &list, &why) != -1)
			fail_msg("'%s' was accepted", bad[i]);
		assert_non_null(why);
	}
}

static void test_too_many_items(void **state)
{
	char text[1024];
	size_t used = 0;
	struct port_list list;
	const char *why = NULL;
	(void)state;
	for (unsigned i = 0; i < PORT_LIST_MAX_RANGES; i++)
		used += (size_t)snprintf(text + used, sizeof(text) - used, "%s%u",
					 i ? "," : "", i);
	assert_int_equal(port_list_parse(text, &list, &why), 0);
	assert_int_equal(list.count, PORT_LIST_MAX_RANGES);
	snprintf(text + used, sizeof(text) - used, ",%u", PORT_LIST_MAX_RANGES);
	assert_int_equal(port_list_parse(text, &list, &why), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_list_allows_everything),
		cmocka_unit_test(test_ports_and_ranges),
		cmocka_unit_test(test_single_port_range),
		cmocka_unit_test(test_malformed_lists_are_refused),
		cmocka_unit_test(test_too_many_items),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
