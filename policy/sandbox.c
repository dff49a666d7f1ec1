/*
 * sandbox.c - load a role's seccomp filter, built at compile time from
 * policy/common.policy plus policy/<role>.policy (and
 * policy/sanitizer.policy in ASan/UBSan builds) by policy_compile into
 * policy_tables.c (see policy/README.md).
 *
 * Owns: turning the compiled rule tables into one libseccomp filter
 * (default action kill-process, or trap in --sandbox-debug mode), loading
 * it on every thread with no_new_privs, and the debug SIGSYS handler.
 * Never: reads a policy file at run time, loads a filter the caller did not
 * ask for, or calls anything but write/_exit in the SIGSYS handler.
 */
#include "sandbox.h"

#include <errno.h>
#include <seccomp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "policy_tables.h"
#include "vsockmux/log.h"

#ifdef SANDBOX_SANITIZER
#include <sanitizer/common_interface_defs.h>
#include <sanitizer/lsan_interface.h>
/* Weak: present in the ASan runtime, possibly absent with UBSan alone. */
#pragma weak __sanitizer_sandbox_on_notify
#pragma weak __sanitizer_symbolize_pc
#pragma weak __lsan_do_leak_check
#endif

/* Read by the SIGSYS handler: set before the filter is loaded. */
static const char *trap_role_name = "vsockmuxd";
static uint32_t trap_arch;

static const struct policy_table *role_table(enum sandbox_role role)
{
	switch (role) {
	case SANDBOX_ROLE_BROKER:
		return &policy_table_broker;
	case SANDBOX_ROLE_MUXER:
		return &policy_table_muxer;
	}
	return NULL;
}

const char *sandbox_role_name(enum sandbox_role role)
{
	switch (role) {
	case SANDBOX_ROLE_BROKER:
		return "broker";
	case SANDBOX_ROLE_MUXER:
		return "muxer";
	}
	return "unknown";
}

size_t sandbox_policy_syscall_count(enum sandbox_role role)
{
	const struct policy_table *table = role_table(role);

	return table ? table->syscall_count : 0;
}

const char *sandbox_syscall_name(long syscall_nr)
{
	if (syscall_nr < 0 || (size_t)syscall_nr >= policy_syscall_name_count)
		return NULL;
	return policy_syscall_names[syscall_nr];
}

/* Async-signal-safe append helpers for the SIGSYS handler. */
static size_t append_text(char *buffer, size_t used, size_t size, const char *text)
{
	while (*text && used + 1 < size)
		buffer[used++] = *text++;
	return used;
}

static size_t append_number(char *buffer, size_t used, size_t size, long value)
{
	char digits[24];
	size_t count = 0;
	unsigned long magnitude = value < 0 ? 0ul - (unsigned long)value : (unsigned long)value;

	if (value < 0)
		used = append_text(buffer, used, size, "-");
	do {
		digits[count++] = (char)('0' + magnitude % 10);
		magnitude /= 10;
	} while (magnitude && count < sizeof(digits));
	while (count > 0 && used + 1 < size)
		buffer[used++] = digits[--count];
	return used;
}

/*
 * --sandbox-debug: "vsockmuxd[ROLE] sandbox: blocked syscall NAME (NR)",
 * then exit 159. Only write and _exit (exit_group): both in every policy.
 */
static void sigsys_handler(int signal_number, siginfo_t *info, void *context)
{
	char line[160];
	size_t used = 0;
	const char *name = NULL;

	(void)signal_number;
	(void)context;
	if (info->si_arch == trap_arch)
		name = sandbox_syscall_name(info->si_syscall);
	used = append_text(line, used, sizeof(line), "vsockmuxd[");
	used = append_text(line, used, sizeof(line), trap_role_name);
	used = append_text(line, used, sizeof(line), "] sandbox: blocked syscall ");
	used = append_text(line, used, sizeof(line), name ? name : "?");
	used = append_text(line, used, sizeof(line), " (");
	used = append_number(line, used, sizeof(line), info->si_syscall);
	if (info->si_arch != trap_arch)
		used = append_text(line, used, sizeof(line), ", foreign architecture");
	used = append_text(line, used, sizeof(line), ")\n");
	/* nothing useful to do if stderr is gone */
	if (write(STDERR_FILENO, line, used) < 0)
		_exit(SANDBOX_DEBUG_EXIT_CODE);
	_exit(SANDBOX_DEBUG_EXIT_CODE);
}

static int install_sigsys_handler(void)
{
	struct sigaction action;
	sigset_t unblock;

	memset(&action, 0, sizeof(action));
	action.sa_sigaction = sigsys_handler;
	action.sa_flags = SA_SIGINFO;
	sigfillset(&action.sa_mask);
	if (sigaction(SIGSYS, &action, NULL) < 0)
		return -errno;
	sigemptyset(&unblock);
	sigaddset(&unblock, SIGSYS);
	if (sigprocmask(SIG_UNBLOCK, &unblock, NULL) < 0)
		return -errno;
	return 0;
}

static enum scmp_compare to_scmp_compare(enum policy_compare compare)
{
	switch (compare) {
	case POLICY_CMP_EQ:
		return SCMP_CMP_EQ;
	case POLICY_CMP_NE:
		return SCMP_CMP_NE;
	case POLICY_CMP_LT:
		return SCMP_CMP_LT;
	case POLICY_CMP_LE:
		return SCMP_CMP_LE;
	case POLICY_CMP_GT:
		return SCMP_CMP_GT;
	case POLICY_CMP_GE:
		return SCMP_CMP_GE;
	case POLICY_CMP_MASKED_EQ:
		return SCMP_CMP_MASKED_EQ;
	}
	return _SCMP_CMP_MIN; /* invalid: libseccomp rejects it */
}

/* Resolve $PID / $PEER_PID. Returns 0 or -EINVAL (logged). */
static int condition_value(const struct policy_rule *rule,
			   const struct policy_condition *condition,
			   pid_t peer_pid, scmp_datum_t *value)
{
	switch (condition->kind) {
	case POLICY_VALUE_CONSTANT:
		*value = condition->value;
		return 0;
	case POLICY_VALUE_PID:
		*value = (scmp_datum_t)getpid();
		return 0;
	case POLICY_VALUE_PEER_PID:
		if (peer_pid <= 0) {
			log_error("sandbox: %s:%u (%s) uses $PEER_PID: load this "
				  "policy with sandbox_apply_with_peer", rule->file,
				  rule->line, rule->syscall_name);
			return -EINVAL;
		}
		*value = (scmp_datum_t)peer_pid;
		return 0;
	}
	return -EINVAL;
}

static int add_rules(scmp_filter_ctx filter, const struct policy_table *table,
		     pid_t peer_pid)
{
	for (size_t i = 0; i < table->rule_count; i++) {
		const struct policy_rule *rule = &table->rules[i];
		struct scmp_arg_cmp comparisons[POLICY_MAX_CONDITIONS];
		uint32_t action = rule->errno_value ? SCMP_ACT_ERRNO((uint32_t)rule->errno_value)
						    : SCMP_ACT_ALLOW;
		int result;

		memset(comparisons, 0, sizeof(comparisons));
		for (unsigned c = 0; c < rule->condition_count; c++) {
			const struct policy_condition *condition = &rule->conditions[c];
			scmp_datum_t value;

			result = condition_value(rule, condition, peer_pid, &value);
			if (result < 0)
				return result;
			comparisons[c].arg = condition->arg;
			comparisons[c].op = to_scmp_compare(condition->compare);
			if (condition->compare == POLICY_CMP_MASKED_EQ) {
				comparisons[c].datum_a = condition->mask;
				comparisons[c].datum_b = value;
			} else {
				comparisons[c].datum_a = value;
			}
		}
		result = seccomp_rule_add_array(filter, action, rule->syscall_nr,
						rule->condition_count, comparisons);
		if (result < 0) {
			log_error("sandbox: %s:%u (%s): seccomp_rule_add: %s", rule->file,
				  rule->line, rule->syscall_name, strerror(-result));
			return result;
		}
	}
	return 0;
}

static int set_attribute(scmp_filter_ctx filter, enum scmp_filter_attr attribute,
			 uint32_t value, const char *what)
{
	int result = seccomp_attr_set(filter, attribute, value);

	if (result < 0)
		log_error("sandbox: seccomp_attr_set(%s): %s", what, strerror(-result));
	return result;
}

/*
 * Sanitizer builds only. The runtimes cache what they would read from
 * /proc at report time (memory map, symbolizer), since the filter forbids
 * opening files. LeakSanitizer's end-of-process check needs clone, ptrace,
 * prctl and /proc, which no policy of ours allows: check for leaks now
 * instead (this also cancels the check at exit). What leaks later is
 * found by the unit tests, or by a run without the sandbox.
 */
#ifdef SANDBOX_SANITIZER
/*
 * LSan stops the world with a cloned tracer and reads /proc: without a
 * /proc (the muxer's empty root) or with RLIMIT_NPROC 0 it dies with a
 * "fatal error" instead. Then skip it (the daemon leaves with _exit).
 */
static bool leak_check_possible(void)
{
	struct rlimit processes;

	if (access("/proc/self/task", R_OK) < 0) {
		log_debug("sandbox: no /proc: the leak check is skipped");
		return false;
	}
	if (getrlimit(RLIMIT_NPROC, &processes) == 0 && processes.rlim_cur == 0 &&
	    getuid() != 0) {
		log_debug("sandbox: RLIMIT_NPROC 0: the leak check is skipped");
		return false;
	}
	return true;
}
#endif

void sandbox_prepare_sanitizers(void)
{
#ifdef SANDBOX_SANITIZER
	static bool prepared;
	__sanitizer_sandbox_arguments arguments;

	if (prepared)
		return;
	prepared = true;
	memset(&arguments, 0, sizeof(arguments));
	arguments.coverage_fd = -1;
	if (__sanitizer_sandbox_on_notify)
		__sanitizer_sandbox_on_notify(&arguments);
	/* load our binary's debug info now: reports stay symbolized */
	if (__sanitizer_symbolize_pc) {
		char frame[256];
		__sanitizer_symbolize_pc(__builtin_return_address(0), "%p %F %L",
					 frame, sizeof(frame));
	}
	if (__lsan_do_leak_check && leak_check_possible())
		__lsan_do_leak_check();
#endif
}

int sandbox_apply_with_peer(enum sandbox_role role, enum sandbox_mode mode,
			    pid_t peer_pid)
{
	const struct policy_table *table = role_table(role);
	uint32_t default_action = mode == SANDBOX_DEBUG ? SCMP_ACT_TRAP
							: SCMP_ACT_KILL_PROCESS;
	scmp_filter_ctx filter = NULL;
	int result;

	if (!table || (mode != SANDBOX_ENFORCE && mode != SANDBOX_DEBUG)) {
		log_error("sandbox: invalid role or mode");
		return -EINVAL;
	}
	if (seccomp_arch_native() != policy_arch) {
		log_error("sandbox: policies were compiled for another architecture");
		return -ENOEXEC;
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		result = -errno;
		log_error("sandbox: PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
		return result;
	}
	filter = seccomp_init(default_action);
	if (!filter) {
		log_error("sandbox: seccomp_init failed");
		return -ENOMEM;
	}
	result = set_attribute(filter, SCMP_FLTATR_CTL_NNP, 1, "no_new_privs");
	if (result < 0)
		goto out;
	result = set_attribute(filter, SCMP_FLTATR_CTL_TSYNC, 1, "tsync");
	if (result < 0)
		goto out;
	result = set_attribute(filter, SCMP_FLTATR_ACT_BADARCH, default_action,
			       "bad-arch action");
	if (result < 0)
		goto out;
	result = add_rules(filter, table, peer_pid);
	if (result < 0)
		goto out;
#ifdef SANDBOX_SANITIZER
	result = add_rules(filter, &policy_table_sanitizer, peer_pid);
	if (result < 0)
		goto out;
#endif
	trap_role_name = sandbox_role_name(role);
	trap_arch = policy_arch;
	if (mode == SANDBOX_DEBUG) {
		result = install_sigsys_handler();
		if (result < 0) {
			log_error("sandbox: SIGSYS handler: %s", strerror(-result));
			goto out;
		}
		log_warn("sandbox: debug mode: a blocked syscall is logged and the "
			 "process exits with code %d", SANDBOX_DEBUG_EXIT_CODE);
	}
	sandbox_prepare_sanitizers();
	result = seccomp_load(filter);
	if (result < 0) {
		log_error("sandbox: seccomp_load: %s", strerror(-result));
		goto out;
	}
	log_debug("sandbox: %s policy loaded (%zu syscalls)", sandbox_role_name(role),
		  table->syscall_count);
out:
	seccomp_release(filter);
	return result;
}

int sandbox_apply(enum sandbox_role role, enum sandbox_mode mode)
{
	return sandbox_apply_with_peer(role, mode, 0);
}
