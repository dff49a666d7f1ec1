/*
 * test_system.h - what test_system's files share: a declaration of every
 * scenario function (test_<name>, from test_system.def) and a few sizes.
 *
 * Owns: declarations only. Never: included outside test_system*.c.
 */
#ifndef VSOCKMUX_TESTS_TEST_SYSTEM_H
#define VSOCKMUX_TESTS_TEST_SYSTEM_H

#include "sys_harness.h"

#define KIB 1024u
#define MIB (1024u * 1024u)
#define DEFAULT_BUF_ALLOC 262144u

#define SCENARIO SYS_SCENARIO_PROTOTYPE
#include "test_system.def"
#undef SCENARIO

#endif
