/*
 * test_system.c - system tests: the real two-process vsockmuxd driven by the
 * virtual guest (vguest.h) and host-side AF_UNIX sockets.
 *
 * Each test starts its own daemon in a fresh temp dir (sys_harness.h) and
 * runs in its own forked child; `test_system --list` names them, and
 * `test_system NAME...` runs a selection. Every wait is bounded.
 *
 * One program, its scenarios in a file per theme: test_system_data.c,
 * test_system_connect.c, test_system_vhost.c, test_system_packets.c,
 * test_system_idle.c, test_system_ends.c; their one list is
 * test_system.def.
 *
 * Owns: the table and main(). Never: holds a scenario itself.
 */
#include "test_system.h"

static const struct sys_test tests[] = {
#define SCENARIO SYS_SCENARIO_ENTRY
#include "test_system.def"
#undef SCENARIO
};

int main(int argc, char **argv)
{
	return sys_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
