/*
 * fuzz_policy.c - libFuzzer target for the seccomp policy parser
 * (policy/policy_parse.c), the same code the build tool policy_compile
 * runs over the policy files in policy/.
 *
 * Input: the text of one policy file. Checks: the parser terminates, stays
 * in bounds (ASan/UBSan), and what it accepted is well-formed: at most
 * MAX_RULES rules, each with a resolved syscall, at most MAX_CONDITIONS
 * conditions on distinct arguments 0..5, and masked values inside their
 * masks.
 * Never: writes files; reports go to /dev/null.
 */
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "policy_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static struct policy policy;
static uint32_t arch;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	FILE *sink = fopen("/dev/null", "w");

	(void)argc;
	(void)argv;
	arch = seccomp_arch_native();
	if (!sink)
		abort();
	policy_set_error_stream(sink);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FILE *file;

	if (size == 0)
		return 0;
	file = fmemopen((void *)data, size, "r");
	if (!file)
		return 0;
	memset(&policy, 0, sizeof(policy));
	policy.name = "fuzz";
	policy.path = "fuzz.policy";
	policy_parse_stream(&policy, arch, file);
	fclose(file);

	check(policy.rule_count <= MAX_RULES, "more rules than the table holds");
	check(policy.syscall_count <= policy.rule_count, "more syscalls than rules");
	for (size_t i = 0; i < policy.rule_count; i++) {
		const struct rule *rule = &policy.rules[i];
		check(rule->syscall_nr != __NR_SCMP_ERROR, "unresolved syscall accepted");
		check(memchr(rule->syscall_name, '\0', sizeof(rule->syscall_name)) != NULL,
		      "syscall name not terminated");
		check(rule->condition_count <= MAX_CONDITIONS, "too many conditions");
		for (unsigned c = 0; c < rule->condition_count; c++) {
			const struct condition *condition = &rule->conditions[c];
			check(condition->arg <= MAX_ARG_INDEX, "argument out of range");
			check(condition->op <= CMP_MASKED_EQ, "bad comparison");
			check(condition->kind <= VALUE_PEER_PID, "bad value kind");
			if (condition->op == CMP_MASKED_EQ)
				check((condition->value & ~condition->mask) == 0,
				      "masked value outside its mask");
			for (unsigned d = 0; d < c; d++)
				check(rule->conditions[d].arg != condition->arg,
				      "one argument tested twice");
		}
	}
	return 0;
}
