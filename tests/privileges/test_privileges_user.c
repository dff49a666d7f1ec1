/*
 * test_privileges_user.c - policy/privileges.c started as an ordinary
 * user: the plan keeps the user, the muxer's isolation is skipped with one
 * log line, the drop clears what there is without changing the user, and
 * RLIMIT_NOFILE is lowered, never raised past the hard limit.
 *
 * Runs everywhere: as root, each forked child first becomes "nobody" by
 * itself (without policy/privileges.c); as a user, the child stays who it is.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmocka.h>

#include "priv_child.h"
#include "privileges.h"

#define OUTPUT_SIZE 8192
#define TEST_MAX_CONNECTIONS 100u

/* In the child: an ordinary user, as if started by one. */
static void become_ordinary_user(void)
{
	const struct passwd *nobody;

	if (geteuid() != 0)
		return;
	nobody = getpwnam("nobody");
	CHILD_CHECK(nobody != NULL);
	CHILD_CHECK(setgroups(1, &nobody->pw_gid) == 0);
	CHILD_CHECK(setresgid(nobody->pw_gid, nobody->pw_gid, nobody->pw_gid) == 0);
	/* from root to non-root: the kernel clears effective and permitted */
	CHILD_CHECK(setresuid(nobody->pw_uid, nobody->pw_uid, nobody->pw_uid) == 0);
	CHILD_CHECK(proc_status_caps("CapEff") == 0);
}

static void plan_body(void *arg)
{
	struct privilege_plan plan;
	const struct passwd *self;
	(void)arg;

	become_ordinary_user();
	CHILD_CHECK(privileges_plan(NULL, &plan) == 0);
	CHILD_CHECK(!plan.change_user);
	CHILD_CHECK(plan.uid == geteuid() && plan.gid == getegid());
	/* --user naming ourselves is fine; anyone else cannot be switched to */
	self = getpwuid(geteuid());
	if (self) {
		char name[64];
		snprintf(name, sizeof(name), "%s", self->pw_name);
		CHILD_CHECK(privileges_plan(name, &plan) == 0 && !plan.change_user);
	}
	CHILD_CHECK(privileges_plan("root", &plan) == -1);
	CHILD_CHECK(privileges_plan("vsockmux-no-such-user", &plan) == -1);
}

static void test_plan_keeps_user(void **state)
{
	(void)state;
	assert_true(child_succeeded(child_run(plan_body, NULL, NULL, 0)));
}

static int call_isolate(void *arg)
{
	(void)arg;
	return privileges_isolate_muxer();
}

static void muxer_start_body(void *arg)
{
	struct privilege_plan plan;
	struct rlimit limit;
	char logged[1024], value[32];
	int isolated = -1, signal_number = 0;
	uid_t uid_before;
	gid_t gid_before;
	pid_t forked;
	const rlim_t expected_files = TEST_MAX_CONNECTIONS + PRIVILEGES_NOFILE_RESERVE;
	(void)arg;

	become_ordinary_user();
	uid_before = geteuid();
	gid_before = getegid();
	CHILD_CHECK(privileges_plan(NULL, &plan) == 0);

	/* isolation: skipped, said in exactly one line */
	CHILD_CHECK(capture_stderr(call_isolate, NULL, &isolated, logged,
				   sizeof(logged)) == 0);
	CHILD_CHECK(isolated == 1);
	CHILD_CHECK(count_occurrences(logged, "\n") == 1);
	CHILD_CHECK(strstr(logged, "not isolated") != NULL);

	/* limits: lowered; asking for more than the hard limit clamps to it */
	CHILD_CHECK(privileges_limit_resources(true, TEST_MAX_CONNECTIONS) == 0);
	CHILD_CHECK(getrlimit(RLIMIT_NOFILE, &limit) == 0);
	CHILD_CHECK(limit.rlim_cur == expected_files && limit.rlim_max == expected_files);
	CHILD_CHECK(privileges_limit_resources(true, UINT32_MAX) == 0);
	CHILD_CHECK(getrlimit(RLIMIT_NOFILE, &limit) == 0);
	CHILD_CHECK(limit.rlim_cur == expected_files && limit.rlim_max == expected_files);
	CHILD_CHECK(getrlimit(RLIMIT_NPROC, &limit) == 0 && limit.rlim_max == 0);
	CHILD_CHECK(getrlimit(RLIMIT_FSIZE, &limit) == 0 && limit.rlim_max == 0);

	/* drop: same user, nothing left to use */
	CHILD_CHECK(privileges_drop(&plan, SIGTERM, getppid()) == 0);
	CHILD_CHECK(geteuid() == uid_before && getuid() == uid_before);
	CHILD_CHECK(getegid() == gid_before && getgid() == gid_before);
	CHILD_CHECK(proc_status_caps("CapEff") == 0);
	CHILD_CHECK(proc_status_caps("CapPrm") == 0);
	CHILD_CHECK(proc_status_caps("CapInh") == 0);
	CHILD_CHECK(proc_status_caps("CapAmb") == 0);
	CHILD_CHECK(proc_status_field("NoNewPrivs", value, sizeof(value)) == 0);
	CHILD_CHECK(strcmp(value, "1") == 0);
	CHILD_CHECK(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0);
	CHILD_CHECK(prctl(PR_GET_PDEATHSIG, &signal_number, 0, 0, 0) == 0);
	CHILD_CHECK(signal_number == SIGTERM);
	CHILD_CHECK(setuid(0) == -1);

	/* RLIMIT_NPROC 0 holds for an ordinary user */
	forked = fork();
	if (forked == 0)
		_exit(0);
	CHILD_CHECK(forked == -1 && errno == EAGAIN);
}

static void test_muxer_start_unprivileged(void **state)
{
	char output[OUTPUT_SIZE];
	(void)state;

	assert_true(child_succeeded(child_run(muxer_start_body, NULL, output,
					      sizeof(output))));
	assert_non_null(strstr(output, "started unprivileged"));
	assert_non_null(strstr(output, "hard limit"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plan_keeps_user),
		cmocka_unit_test(test_muxer_start_unprivileged),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
