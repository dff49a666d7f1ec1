/*
 * test_prom_validator.c - the exposition-format checker used on `vsockctl
 * metrics` must itself accept valid text and reject each kind of mistake.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include "prom_validator.h"

static const char valid_text[] =
	"# HELP demo_requests_total Requests.\n"
	"# TYPE demo_requests_total counter\n"
	"demo_requests_total{code=\"200\",path=\"a\\\"b\\\\c\\nd\"} 3\n"
	"demo_requests_total{code=\"500\"} 0 1700000000000\n"
	"\n"
	"# HELP demo_temperature Now.\n"
	"# TYPE demo_temperature gauge\n"
	"demo_temperature -1.5e3\n"
	"# HELP demo_latency_seconds Latency.\n"
	"# TYPE demo_latency_seconds summary\n"
	"demo_latency_seconds_sum 0.5\n"
	"demo_latency_seconds_count 2\n"
	"# HELP demo_up Up.\n"
	"# TYPE demo_up gauge\n"
	"demo_up +Inf\n";

static void test_accepts_valid_text(void **state)
{
	char error[256];

	(void)state;
	if (prom_validate(valid_text, error, sizeof(error)) != 0)
		fail_msg("%s", error);
	assert_int_equal(prom_last_sample_count(), 6);
	assert_int_equal(prom_validate("", error, sizeof(error)), 0);
}

static void test_rejects_mistakes(void **state)
{
	static const char *const invalid[] = {
		/* sample without TYPE */
		"demo_x 1\n",
		/* TYPE without HELP */
		"# TYPE demo_x gauge\ndemo_x 1\n",
		/* counter not ending in _total */
		"# HELP demo_x X.\n# TYPE demo_x counter\ndemo_x 1\n",
		/* gauge ending in _total */
		"# HELP demo_x_total X.\n# TYPE demo_x_total gauge\ndemo_x_total 1\n",
		/* bad label escape */
		"# HELP demo_x X.\n# TYPE demo_x gauge\ndemo_x{a=\"\\t\"} 1\n",
		/* unquoted label */
		"# HELP demo_x X.\n# TYPE demo_x gauge\ndemo_x{a=b} 1\n",
		/* duplicate series */
		"# HELP demo_x X.\n# TYPE demo_x gauge\ndemo_x{a=\"1\"} 1\ndemo_x{a=\"1\"} 2\n",
		/* duplicate label name */
		"# HELP demo_x X.\n# TYPE demo_x gauge\ndemo_x{a=\"1\",a=\"2\"} 1\n",
		/* bad value */
		"# HELP demo_x X.\n# TYPE demo_x gauge\ndemo_x one\n",
		/* negative counter */
		"# HELP demo_x_total X.\n# TYPE demo_x_total counter\ndemo_x_total -1\n",
		/* interleaved families */
		("# HELP demo_a A.\n# TYPE demo_a gauge\ndemo_a 1\n"
		 "# HELP demo_b B.\n# TYPE demo_b gauge\ndemo_b 1\ndemo_a{x=\"1\"} 2\n"),
		/* second TYPE */
		"# HELP demo_x X.\n# TYPE demo_x gauge\n# TYPE demo_x gauge\ndemo_x 1\n",
		/* unknown type */
		"# HELP demo_x X.\n# TYPE demo_x meter\ndemo_x 1\n",
		/* bad metric name */
		"# HELP 1demo X.\n# TYPE 1demo gauge\n1demo 1\n",
		/* no trailing newline */
		"# HELP demo_x X.\n# TYPE demo_x gauge\ndemo_x 1",
		/* bad timestamp */
		"# HELP demo_x X.\n# TYPE demo_x gauge\ndemo_x 1 soon\n",
		/* _bucket on a summary */
		"# HELP demo_s S.\n# TYPE demo_s summary\ndemo_s_bucket{le=\"1\"} 1\n",
	};
	char error[256];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++)
		if (prom_validate(invalid[i], error, sizeof(error)) == 0)
			fail_msg("case %zu accepted:\n%s", i, invalid[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_accepts_valid_text),
		cmocka_unit_test(test_rejects_mistakes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
