/*
 * fuzz_check.h - what every fuzzer does on a broken invariant, and what the
 * ones that run daemon code do first.
 *
 * Never: lets a broken invariant pass quietly; abort() is what libFuzzer
 * records as a finding, with the input that caused it.
 */
#ifndef VSOCKMUX_FUZZ_CHECK_H
#define VSOCKMUX_FUZZ_CHECK_H

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

static inline void check(bool condition, const char *what)
{
	if (!condition) {
		fprintf(stderr, "%s: invariant broken: %s\n",
			program_invocation_short_name, what);
		abort();
	}
}

/* As both daemon processes do: a write to a closed socket is an error
 * return, not a signal. */
static inline void fuzz_ignore_sigpipe(void)
{
	signal(SIGPIPE, SIG_IGN);
}

#endif
