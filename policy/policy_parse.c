/*
 * policy_parse.c - the policy grammar (see policy_parse.h; the format is
 * described in policy/README.md).
 *
 * Owns: tokenizing and parsing rules, the symbolic constants and errno
 * names a policy may use (values from the build machine's headers), and
 * counting the errors it reports.
 * Never: accepts a rule without a "# why" comment, or an unknown syscall,
 * constant, errno name or argument.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* a native tool: the project's -D flags do not reach it */
#endif
#include "policy_parse.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <seccomp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>

struct named_value {
	const char *name;
	uint64_t value;
};

#define NAMED(x) { #x, (uint64_t)(x) }

/* Symbolic constants usable as values (host headers of the build machine). */
static const struct named_value constants[] = {
	NAMED(AF_UNIX), NAMED(AF_INET), NAMED(AF_INET6),
	NAMED(SOCK_STREAM), NAMED(SOCK_DGRAM), NAMED(SOCK_SEQPACKET),
	NAMED(SOCK_NONBLOCK), NAMED(SOCK_CLOEXEC),
	NAMED(SHUT_RD), NAMED(SHUT_WR), NAMED(SHUT_RDWR),
	NAMED(SOL_SOCKET), NAMED(SO_PEERCRED), NAMED(SO_SNDBUF), NAMED(SO_SNDBUFFORCE),
	NAMED(MSG_DONTWAIT), NAMED(MSG_NOSIGNAL), NAMED(MSG_PEEK),
	NAMED(MSG_CMSG_CLOEXEC), NAMED(MSG_TRUNC), NAMED(MSG_CTRUNC),
	NAMED(MSG_WAITALL), NAMED(MSG_EOR), NAMED(MSG_OOB),
	NAMED(PROT_NONE), NAMED(PROT_READ), NAMED(PROT_WRITE), NAMED(PROT_EXEC),
	NAMED(MAP_SHARED), NAMED(MAP_PRIVATE), NAMED(MAP_ANONYMOUS),
	NAMED(MAP_FIXED), NAMED(MAP_NORESERVE), NAMED(MAP_STACK),
	NAMED(MAP_POPULATE),
	NAMED(MADV_DONTNEED), NAMED(MADV_FREE), NAMED(MADV_DONTDUMP),
	NAMED(MADV_NOHUGEPAGE), NAMED(MADV_HUGEPAGE), NAMED(MADV_WILLNEED),
	NAMED(MREMAP_MAYMOVE),
	NAMED(F_GETFL), NAMED(F_SETFL), NAMED(F_GETFD), NAMED(F_SETFD),
	NAMED(F_DUPFD), NAMED(F_DUPFD_CLOEXEC), NAMED(FD_CLOEXEC),
	NAMED(O_RDONLY), NAMED(O_WRONLY), NAMED(O_RDWR), NAMED(O_ACCMODE),
	NAMED(O_CREAT), NAMED(O_TRUNC), NAMED(O_APPEND), NAMED(O_NONBLOCK),
	NAMED(O_CLOEXEC), NAMED(O_DIRECTORY), NAMED(O_NOFOLLOW),
	NAMED(CLOCK_REALTIME), NAMED(CLOCK_MONOTONIC), NAMED(CLOCK_BOOTTIME),
	NAMED(CLOCK_PROCESS_CPUTIME_ID), NAMED(CLOCK_THREAD_CPUTIME_ID),
	NAMED(FUTEX_WAIT), NAMED(FUTEX_WAKE), NAMED(FUTEX_PRIVATE_FLAG),
	NAMED(FUTEX_WAIT_PRIVATE), NAMED(FUTEX_WAKE_PRIVATE),
	NAMED(FUTEX_WAIT_BITSET), NAMED(FUTEX_CLOCK_REALTIME),
	NAMED(PR_SET_NAME), NAMED(PR_GET_NAME), NAMED(PR_SET_DUMPABLE),
	NAMED(PR_GET_DUMPABLE), NAMED(PR_SET_PDEATHSIG), NAMED(PR_SET_NO_NEW_PRIVS),
	NAMED(PR_GET_NO_NEW_PRIVS), NAMED(PR_SET_PTRACER),
	NAMED(SIG_BLOCK), NAMED(SIG_UNBLOCK), NAMED(SIG_SETMASK),
	NAMED(SIGABRT), NAMED(SIGTERM), NAMED(SIGKILL), NAMED(SIGINT),
	NAMED(SIGCHLD), NAMED(SIGPIPE), NAMED(SIGSEGV), NAMED(SIGBUS),
	NAMED(SIGSYS), NAMED(SIGSTOP), NAMED(SIGCONT),
	NAMED(EPOLL_CTL_ADD), NAMED(EPOLL_CTL_MOD), NAMED(EPOLL_CTL_DEL),
	NAMED(EFD_CLOEXEC), NAMED(EFD_NONBLOCK), NAMED(EFD_SEMAPHORE),
	NAMED(TFD_CLOEXEC), NAMED(TFD_NONBLOCK), NAMED(TFD_TIMER_ABSTIME),
	NAMED(SFD_CLOEXEC), NAMED(SFD_NONBLOCK),
	NAMED(WNOHANG), NAMED(WUNTRACED), NAMED(__WALL),
	NAMED(TCGETS), NAMED(FIONREAD),
};

/* errno names usable in "-> errno(NAME)". */
static const struct named_value errno_names[] = {
	NAMED(EPERM), NAMED(EACCES), NAMED(ENOSYS), NAMED(EAGAIN),
	NAMED(EINVAL), NAMED(ENOENT), NAMED(ENOTTY),
};

/* One line's tokens and where the parse stands. */
struct line_parser {
	const char *path;
	unsigned line;
	char tokens[MAX_TOKENS][MAX_TOKEN_LENGTH];
	size_t token_count;
	size_t position;
	bool failed;
};

static unsigned error_count;
static FILE *errors_to;

static FILE *error_stream(void)
{
	return errors_to ? errors_to : stderr;
}

unsigned policy_error_count(void)
{
	return error_count;
}

void policy_set_error_stream(FILE *stream)
{
	errors_to = stream;
}

static void report(const char *path, unsigned line, const char *format, ...)
	__attribute__((format(printf, 3, 4)));

static void report(const char *path, unsigned line, const char *format, ...)
{
	va_list args;

	fprintf(error_stream(), "%s:%u: ", path, line);
	va_start(args, format);
	vfprintf(error_stream(), format, args);
	va_end(args);
	fputc('\n', error_stream());
	error_count++;
}

/* Marks the line failed and reports; only the first error of a line. */
static void parse_error(struct line_parser *parser, const char *format, ...)
	__attribute__((format(printf, 2, 3)));

static void parse_error(struct line_parser *parser, const char *format, ...)
{
	char message[256];
	va_list args;

	if (parser->failed)
		return;
	parser->failed = true;
	va_start(args, format);
	vsnprintf(message, sizeof(message), format, args);
	va_end(args);
	report(parser->path, parser->line, "%s", message);
}

static bool is_word_char(char c)
{
	return isalnum((unsigned char)c) || c == '_';
}

/* Split the rule text (comment already cut off) into tokens. */
static void tokenize(struct line_parser *parser, const char *text)
{
	static const char *const operators[] = {
		"==", "!=", "<=", ">=", "&&", "->", "<", ">", "&", "|", "(", ")",
	};
	const char *cursor = text;

	while (*cursor && !parser->failed) {
		size_t length = 0;

		if (isspace((unsigned char)*cursor)) {
			cursor++;
			continue;
		}
		if (parser->token_count == MAX_TOKENS) {
			parse_error(parser, "rule too long");
			return;
		}
		if (is_word_char(*cursor) || *cursor == '$') {
			length = 1;
			while (is_word_char(cursor[length]))
				length++;
		} else {
			for (size_t i = 0; i < sizeof(operators) / sizeof(operators[0]); i++) {
				size_t op_length = strlen(operators[i]);
				if (strncmp(cursor, operators[i], op_length) == 0) {
					length = op_length;
					break;
				}
			}
			if (length == 0) {
				parse_error(parser, "unexpected character '%c'", *cursor);
				return;
			}
		}
		if (length >= MAX_TOKEN_LENGTH) {
			parse_error(parser, "token too long");
			return;
		}
		memcpy(parser->tokens[parser->token_count], cursor, length);
		parser->tokens[parser->token_count][length] = '\0';
		parser->token_count++;
		cursor += length;
	}
}

static const char *peek(const struct line_parser *parser)
{
	if (parser->position < parser->token_count)
		return parser->tokens[parser->position];
	return NULL;
}

static const char *next_token(struct line_parser *parser, const char *what)
{
	const char *token = peek(parser);

	if (!token) {
		parse_error(parser, "expected %s, got end of rule", what);
		return NULL;
	}
	parser->position++;
	return token;
}

static bool accept_token(struct line_parser *parser, const char *expected)
{
	const char *token = peek(parser);

	if (token && strcmp(token, expected) == 0) {
		parser->position++;
		return true;
	}
	return false;
}

static bool lookup(const struct named_value *table, size_t count,
		   const char *name, uint64_t *value)
{
	for (size_t i = 0; i < count; i++) {
		if (strcmp(table[i].name, name) == 0) {
			*value = table[i].value;
			return true;
		}
	}
	return false;
}

/* A decimal or 0x-hex number, or a constant from the table. */
static bool parse_term(struct line_parser *parser, uint64_t *value)
{
	const char *token = next_token(parser, "a value");
	char *end = NULL;

	if (!token)
		return false;
	if (isdigit((unsigned char)token[0])) {
		bool hex = token[0] == '0' && (token[1] == 'x' || token[1] == 'X');
		errno = 0;
		*value = strtoull(token, &end, hex ? 16 : 10);
		if (errno != 0 || *end != '\0') {
			parse_error(parser, "bad number '%s'", token);
			return false;
		}
		return true;
	}
	if (!lookup(constants, sizeof(constants) / sizeof(constants[0]), token, value)) {
		parse_error(parser, "unknown constant '%s'", token);
		return false;
	}
	return true;
}

/* term ('|' term)*, or a lone $PID / $PEER_PID placeholder. */
static bool parse_value(struct line_parser *parser, bool placeholder_allowed,
			enum value_kind *kind, uint64_t *value)
{
	const char *token = peek(parser);
	uint64_t term;

	*kind = VALUE_CONSTANT;
	*value = 0;
	if (token && token[0] == '$') {
		parser->position++;
		if (strcmp(token, "$PID") == 0)
			*kind = VALUE_PID;
		else if (strcmp(token, "$PEER_PID") == 0)
			*kind = VALUE_PEER_PID;
		else {
			parse_error(parser, "unknown placeholder '%s' (known: $PID, $PEER_PID)",
				    token);
			return false;
		}
		if (!placeholder_allowed) {
			parse_error(parser, "%s only works with == and !=", token);
			return false;
		}
		if (peek(parser) && strcmp(peek(parser), "|") == 0) {
			parse_error(parser, "%s cannot be combined with '|'", token);
			return false;
		}
		return true;
	}
	do {
		if (!parse_term(parser, &term))
			return false;
		*value |= term;
	} while (accept_token(parser, "|"));
	return true;
}

static bool parse_compare(struct line_parser *parser, enum compare_op *op)
{
	static const char *const names[] = { "==", "!=", "<", "<=", ">", ">=" };
	const char *token = next_token(parser, "a comparison");

	if (!token)
		return false;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(token, names[i]) == 0) {
			*op = (enum compare_op)i;
			return true;
		}
	}
	parse_error(parser, "expected a comparison (== != < <= > >= or & MASK ==), got '%s'",
		    token);
	return false;
}

static bool parse_condition(struct line_parser *parser, struct rule *rule)
{
	struct condition *condition = &rule->conditions[rule->condition_count];
	const char *token = next_token(parser, "an argument (arg0..arg5)");
	char *end = NULL;
	unsigned long arg;

	if (!token)
		return false;
	if (strncmp(token, "arg", 3) != 0 || !isdigit((unsigned char)token[3])) {
		parse_error(parser, "expected an argument (arg0..arg5), got '%s'", token);
		return false;
	}
	arg = strtoul(token + 3, &end, 10);
	if (*end != '\0' || arg > MAX_ARG_INDEX) {
		parse_error(parser, "no such argument '%s' (arg0..arg5)", token);
		return false;
	}
	if (rule->condition_count == MAX_CONDITIONS) {
		parse_error(parser, "too many conditions");
		return false;
	}
	for (unsigned i = 0; i < rule->condition_count; i++) {
		if (rule->conditions[i].arg == arg) {
			parse_error(parser, "%s is tested twice in one rule (libseccomp "
				    "allows one test per argument; write two rules)", token);
			return false;
		}
	}
	condition->arg = (unsigned)arg;
	condition->mask = UINT64_MAX;
	if (accept_token(parser, "&")) {
		enum value_kind kind;
		condition->op = CMP_MASKED_EQ;
		if (!parse_value(parser, false, &kind, &condition->mask))
			return false;
		if (!accept_token(parser, "==")) {
			parse_error(parser, "expected '==' after the mask");
			return false;
		}
		if (!parse_value(parser, false, &condition->kind, &condition->value))
			return false;
		if ((condition->value & ~condition->mask) != 0) {
			parse_error(parser, "value has bits outside the mask: never true");
			return false;
		}
	} else {
		if (!parse_compare(parser, &condition->op))
			return false;
		if (!parse_value(parser, condition->op == CMP_EQ || condition->op == CMP_NE,
				 &condition->kind, &condition->value))
			return false;
	}
	rule->condition_count++;
	return true;
}

/* "-> errno(NAME)" */
static bool parse_action(struct line_parser *parser, struct rule *rule)
{
	const char *token;
	uint64_t value;

	if (!accept_token(parser, "errno") || !accept_token(parser, "(")) {
		parse_error(parser, "expected 'errno(NAME)' after '->'");
		return false;
	}
	token = next_token(parser, "an errno name");
	if (!token)
		return false;
	if (!lookup(errno_names, sizeof(errno_names) / sizeof(errno_names[0]), token,
		    &value)) {
		parse_error(parser, "unknown errno name '%s'", token);
		return false;
	}
	if (!accept_token(parser, ")")) {
		parse_error(parser, "expected ')' after the errno name");
		return false;
	}
	rule->errno_value = (int)value;
	return true;
}

static bool conditions_equal(const struct rule *a, const struct rule *b)
{
	if (a->condition_count != b->condition_count || a->errno_value != b->errno_value)
		return false;
	for (unsigned i = 0; i < a->condition_count; i++) {
		const struct condition *x = &a->conditions[i];
		const struct condition *y = &b->conditions[i];
		if (x->arg != y->arg || x->op != y->op || x->kind != y->kind ||
		    x->mask != y->mask || x->value != y->value)
			return false;
	}
	return true;
}

/* Duplicates and unconditional-plus-conditional mixes hide mistakes, also
 * across the files merged into one policy (the earlier rule may come from
 * an earlier file: then its file is named too). */
static void check_against_earlier(struct policy *policy, const struct rule *rule)
{
	for (size_t i = 0; i < policy->rule_count; i++) {
		const struct rule *earlier = &policy->rules[i];
		bool same_file = earlier->file_index == rule->file_index;
		if (earlier->syscall_nr != rule->syscall_nr)
			continue;
		if (conditions_equal(earlier, rule)) {
			if (same_file)
				report(rule->file, rule->line, "duplicate of the rule on line %u",
				       earlier->line);
			else
				report(rule->file, rule->line,
				       "duplicate of the rule at %s:%u (merged into the same "
				       "policy: keep one of them)", earlier->file, earlier->line);
			return;
		}
		if (earlier->condition_count == 0 || rule->condition_count == 0) {
			if (same_file)
				report(rule->file, rule->line,
				       "%s has an unconditional rule and a conditional one "
				       "(line %u): the condition would mean nothing",
				       rule->syscall_name, earlier->line);
			else
				report(rule->file, rule->line,
				       "%s has an unconditional rule and a conditional one "
				       "(%s:%u): the condition would mean nothing",
				       rule->syscall_name, earlier->file, earlier->line);
			return;
		}
	}
}

static void parse_rule(struct policy *policy, uint32_t arch, const char *path,
		       unsigned line_number, char *text)
{
	struct line_parser parser = { .path = path, .line = line_number };
	struct rule rule = { .file = path, .file_index = policy->file_count,
			     .line = line_number };
	char *comment = strchr(text, '#');
	const char *name;

	if (!comment) {
		report(path, line_number,
		       "rule without a '# why' comment (every rule says why it is needed)");
		return;
	}
	*comment = '\0';
	for (const char *why = comment + 1; ; why++) {
		if (*why == '\0' || *why == '\n') {
			report(path, line_number, "empty '# why' comment");
			return;
		}
		if (!isspace((unsigned char)*why))
			break;
	}
	tokenize(&parser, text);
	if (parser.failed)
		return;
	name = next_token(&parser, "a syscall name");
	if (!name)
		return;
	if (!isalpha((unsigned char)name[0]) && name[0] != '_') {
		parse_error(&parser, "expected a syscall name, got '%s'", name);
		return;
	}
	rule.syscall_nr = seccomp_syscall_resolve_name_arch(arch, name);
	if (rule.syscall_nr == __NR_SCMP_ERROR) {
		parse_error(&parser, "unknown syscall '%s'", name);
		return;
	}
	snprintf(rule.syscall_name, sizeof(rule.syscall_name), "%s", name);
	while (peek(&parser) && !parser.failed) {
		if (accept_token(&parser, "->")) {
			if (parse_action(&parser, &rule) && peek(&parser))
				parse_error(&parser, "unexpected '%s' after the action",
					    peek(&parser));
			break;
		}
		if (rule.condition_count > 0 && !accept_token(&parser, "&&")) {
			parse_error(&parser, "expected '&&', '->' or '#', got '%s'",
				    peek(&parser));
			break;
		}
		parse_condition(&parser, &rule);
	}
	if (parser.failed)
		return;
	if (policy->rule_count == MAX_RULES) {
		report(path, line_number, "too many rules (max %d)", MAX_RULES);
		return;
	}
	check_against_earlier(policy, &rule);
	policy->rules[policy->rule_count++] = rule;
}

static void count_syscalls(struct policy *policy)
{
	policy->syscall_count = 0;
	for (size_t i = 0; i < policy->rule_count; i++) {
		bool seen = false;
		if (policy->rules[i].errno_value != 0)
			continue;
		for (size_t j = 0; j < i && !seen; j++)
			seen = policy->rules[j].errno_value == 0 &&
			       policy->rules[j].syscall_nr == policy->rules[i].syscall_nr;
		if (!seen)
			policy->syscall_count++;
	}
}

void policy_parse_stream(struct policy *policy, uint32_t arch, const char *path,
			 FILE *file)
{
	char line[MAX_LINE_LENGTH];
	unsigned line_number = 0;

	while (fgets(line, sizeof(line), file)) {
		const char *start = line;

		line_number++;
		if (!strchr(line, '\n') && !feof(file)) {
			report(path, line_number, "line too long (max %d characters)",
			       MAX_LINE_LENGTH - 2);
			break;
		}
		while (isspace((unsigned char)*start))
			start++;
		if (*start == '\0' || *start == '#')
			continue;
		parse_rule(policy, arch, path, line_number, line);
	}
	if (ferror(file))
		report(path, line_number, "read error");
	policy->file_count++;
	count_syscalls(policy);
}

int policy_parse_file(struct policy *policy, uint32_t arch, const char *path)
{
	FILE *file = fopen(path, "r");

	if (!file) {
		fprintf(error_stream(), "%s: %s\n", path, strerror(errno));
		error_count++;
		return -1;
	}
	policy_parse_stream(policy, arch, path, file);
	fclose(file);
	return 0;
}
