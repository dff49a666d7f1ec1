/*
 * policy_parse.h - the seccomp policy grammar: one policy file read into
 * rules, every syscall name checked against libseccomp.
 *
 * Owns: the parsed form of a policy (struct policy) and the error reports
 * ("file:line: message" on the error stream, counted).
 * Never: writes any output file or loads a filter; policy_compile (the
 * build tool) and the fuzzer both call it.
 * The grammar is described at the top of policy_compile.c.
 */
#ifndef VSOCKMUX_POLICY_PARSE_H
#define VSOCKMUX_POLICY_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define MAX_CONDITIONS 6
#define MAX_ARG_INDEX 5
#define MAX_RULES 256
#define MAX_TOKENS 64
#define MAX_TOKEN_LENGTH 64
#define MAX_LINE_LENGTH 1024

enum value_kind { VALUE_CONSTANT, VALUE_PID, VALUE_PEER_PID };

/* Must match the generated header's enum policy_compare order. */
enum compare_op { CMP_EQ, CMP_NE, CMP_LT, CMP_LE, CMP_GT, CMP_GE, CMP_MASKED_EQ };
struct condition {
	unsigned arg;
	enum compare_op op;
	enum value_kind kind;
	uint64_t mask;
	uint64_t value;
};

struct rule {
	int syscall_nr;
	char syscall_name[MAX_TOKEN_LENGTH];
	unsigned line;
	unsigned condition_count;
	struct condition conditions[MAX_CONDITIONS];
	int errno_value; /* 0: allow */
};

struct policy {
	const char *name;
	const char *path;
	struct rule rules[MAX_RULES];
	size_t rule_count;
	size_t syscall_count; /* distinct syscalls with an allow rule */
};

/* Errors reported so far, over every file parsed. */
unsigned policy_error_count(void);

/* Where reports go (NULL: stderr, the default). */
void policy_set_error_stream(FILE *stream);

/* Parse the file at policy->path. Returns 0 when the file was read (parse
 * errors are reported and counted), -1 if it could not be opened. */
int policy_parse_file(struct policy *policy, uint32_t arch);

/* Parse an open stream as the content of policy->path (same reports). */
void policy_parse_stream(struct policy *policy, uint32_t arch, FILE *file);

#endif
