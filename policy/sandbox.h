/*
 * sandbox.h - seccomp filters for the two processes, built from
 * policy/common.policy with policy/muxer.policy or policy/broker.policy at
 * compile time (policy/README.md).
 *
 * Why compiled in: a policy file changed on disk must not weaken a running
 * install; the build fails on a parse error or an unknown syscall name.
 * Owns: turning a compiled policy into a libseccomp filter and loading it
 * on every thread (TSYNC). Never: loads a filter in a process that did not
 * ask for it (tests load filters only in forked children).
 */
#ifndef VSOCKMUX_SANDBOX_H
#define VSOCKMUX_SANDBOX_H

#include <stddef.h>
#include <sys/types.h>

enum sandbox_role {
	SANDBOX_ROLE_BROKER,
	SANDBOX_ROLE_MUXER,
};

enum sandbox_mode {
	SANDBOX_ENFORCE,  /* default: SCMP_ACT_KILL_PROCESS */
	SANDBOX_DEBUG,    /* --sandbox-debug: SIGSYS handler logs the call's
			     name and number, then exits non-zero */
};

/*
 * Load the role's filter (plus the sanitizer additions when built with
 * ASan/UBSan). Sets no_new_privs first. Returns 0 or a negative errno;
 * logs the reason.
 */
int sandbox_apply(enum sandbox_role role, enum sandbox_mode mode);

/*
 * The same, for a policy with rules on the other daemon process's pid
 * ($PEER_PID: the broker may only kill and wait for its muxer). Such a
 * policy fails to load through sandbox_apply (-EINVAL, logged).
 */
int sandbox_apply_with_peer(enum sandbox_role role, enum sandbox_mode mode,
			    pid_t peer_pid);

/* Exit code of a process that hit a blocked syscall in SANDBOX_DEBUG. */
#define SANDBOX_DEBUG_EXIT_CODE 159

/*
 * Sanitizer builds only (a no-op otherwise), done by sandbox_apply if not
 * called before: run LeakSanitizer's leak check now, in place of the one
 * at exit (which needs clone and ptrace, never allowed), and cache what
 * ASan reports need (memory map, symbols). Call it before anything that
 * stops LSan from working, e.g. RLIMIT_NPROC 0 for a non-root user.
 */
void sandbox_prepare_sanitizers(void);

/* Name of a syscall number of the architecture built for, or NULL. */
const char *sandbox_syscall_name(long syscall_nr);

/* Distinct syscalls the role's policy allows (sanitizer additions not
 * counted). */
size_t sandbox_policy_syscall_count(enum sandbox_role role);

/* Name of the role ("broker", "muxer"). */
const char *sandbox_role_name(enum sandbox_role role);

#endif
