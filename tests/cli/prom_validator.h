/*
 * prom_validator.h - a strict checker for Prometheus text exposition format
 * 0.0.4, used by the vsockctl tests on `vsockctl metrics` output.
 *
 * Beyond the format it enforces the vsockmux conventions: every family has
 * exactly one # HELP and one # TYPE before its samples, families do not
 * interleave, no series repeats, counter families end in _total and gauge
 * families do not.
 *
 * Owns: nothing beyond its temporary series list.
 * Never: accepts a sample whose family was not declared.
 */
#ifndef PROM_VALIDATOR_H
#define PROM_VALIDATOR_H

#include <stddef.h>

/* 0 when valid; else -1 and "line N: reason" in error. */
int prom_validate(const char *text, char *error, size_t error_size);
/* Number of samples seen by the last successful prom_validate. */
size_t prom_last_sample_count(void);

#endif
