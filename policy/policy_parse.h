/*
 * policy_parse.h - the seccomp policy grammar: policy files read into
 * rules, every syscall name checked against libseccomp.
 *
 * Owns: the parsed form of a policy (struct policy, the rules of one or
 * more files merged in order) and the error reports ("file:line: message"
 * on the error stream, counted).
 * Never: writes any output file or loads a filter; policy_compile (the
 * build tool) and the fuzzer both call it.
 * The file format is described in policy/README.md.
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
	const char *file; /* the path it was read from (the caller's string) */
	unsigned file_index; /* which of the policy's files: 0 for the first */
	unsigned line;
	unsigned condition_count;
	struct condition conditions[MAX_CONDITIONS];
	int errno_value; /* 0: allow */
};

struct policy {
	const char *name;
	unsigned file_count; /* files (streams) parsed into it so far */
	struct rule rules[MAX_RULES];
	size_t rule_count;
	size_t syscall_count; /* distinct syscalls with an allow rule */
};

/* Errors reported so far, over every file parsed. */
unsigned policy_error_count(void);

/* Where reports go (NULL: stderr, the default). */
void policy_set_error_stream(FILE *stream);

/* Parse the file at path and add its rules to those policy already holds
 * (from files parsed before into the same policy). A rule that repeats one
 * of an earlier file is reported like a duplicate within one file, so a
 * merged policy holds each rule once. path must outlive policy (rules
 * point to it). Returns 0 when the file was read (parse errors are
 * reported and counted), -1 if it could not be opened. */
int policy_parse_file(struct policy *policy, uint32_t arch, const char *path);

/* Parse an open stream as the content of path (same merge and reports). */
void policy_parse_stream(struct policy *policy, uint32_t arch, const char *path,
			 FILE *file);

#endif
