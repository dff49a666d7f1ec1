/*
 * fuzz_policy.c - libFuzzer target for the seccomp policy parser
 * (policy/policy_parse.c), the same code the build tool policy_compile
 * runs over the policy files in policy/.
 *
 * Input: the text of one policy file; or, if it holds a NUL byte, two
 * files merged into one policy as policy_compile merges common.policy and
 * a process's file: the bytes before the first NUL, then the bytes after
 * it. Checks: the parser terminates, stays in bounds (ASan/UBSan), and
 * what it accepted is well-formed: at most MAX_RULES rules, each with a
 * resolved syscall and the file it came from, at most MAX_CONDITIONS
 * conditions on distinct arguments 0..5, and masked values inside their
 * masks; and when nothing was reported, no rule is there twice (not even
 * one from each file).
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

/* Parse data[0..size) as the file at path into policy (nothing if empty:
 * fmemopen refuses a zero-length buffer). */
static void parse_part(const uint8_t *data, size_t size, const char *path)
{
	FILE *file;

	if (size == 0)
		return;
	file = fmemopen((void *)data, size, "r");
	if (!file)
		return;
	policy_parse_stream(&policy, arch, path, file);
	fclose(file);
}

static bool same_rule(const struct rule *a, const struct rule *b)
{
	if (a->syscall_nr != b->syscall_nr || a->condition_count != b->condition_count ||
	    a->errno_value != b->errno_value)
		return false;
	for (unsigned c = 0; c < a->condition_count; c++) {
		const struct condition *x = &a->conditions[c];
		const struct condition *y = &b->conditions[c];
		if (x->arg != y->arg || x->op != y->op || x->kind != y->kind ||
		    x->mask != y->mask || x->value != y->value)
			return false;
	}
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char base_path[] = "base.policy";
	static const char own_path[] = "fuzz.policy";
	const uint8_t *split = memchr(data, '\0', size);
	unsigned errors_before = policy_error_count();

	if (size == 0)
		return 0;
	memset(&policy, 0, sizeof(policy));
	policy.name = "fuzz";
	if (split) {
		size_t base_size = (size_t)(split - data);
		parse_part(data, base_size, base_path);
		parse_part(split + 1, size - base_size - 1, own_path);
	} else {
		parse_part(data, size, own_path);
	}

	check(policy.rule_count <= MAX_RULES, "more rules than the table holds");
	check(policy.syscall_count <= policy.rule_count, "more syscalls than rules");
	for (size_t i = 0; i < policy.rule_count; i++) {
		const struct rule *rule = &policy.rules[i];
		check(rule->syscall_nr != __NR_SCMP_ERROR, "unresolved syscall accepted");
		check(rule->file == base_path || rule->file == own_path, "rule without its file");
		check(rule->file_index < policy.file_count, "rule from a file not parsed");
		if (policy_error_count() == errors_before) {
			for (size_t j = 0; j < i; j++)
				check(!same_rule(&policy.rules[j], rule),
				      "a rule twice without a report");
		}
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
