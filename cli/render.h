/*
 * render.h - vsockctl output: human tables (status, conns, stats, watch
 * rates), JSON (json_output.c) and Prometheus text (metrics.c).
 *
 * Owns: nothing beyond the output it writes.
 * Never: talks to the daemon; only reads the Stats it is given (except
 * render_sort_connections, which reorders the connections array).
 */
#ifndef VSOCKCTL_RENDER_H
#define VSOCKCTL_RENDER_H

#include <stdbool.h>
#include <stdio.h>

#include "control_client.h"

enum connection_sort { SORT_BY_PORT, SORT_BY_BYTES, SORT_BY_AGE };

/* Per-interval throughput between two snapshots (watch). */
struct rates {
	bool valid;			/* false: first sample or daemon restarted */
	bool daemon_restarted;
	double interval_seconds;
	double bytes_to_host_per_second;
	double bytes_to_guest_per_second;
};

/* Feature names for the bits vsockctl knows; unknown bits as "bit N". */
void render_feature_names(uint64_t bits, bool protocol, char *buffer, size_t size);
/* Name of a known feature bit, or NULL. */
const char *render_feature_name(unsigned bit, bool protocol);

void render_sort_connections(ControlStats *stats, enum connection_sort order);
void render_compute_rates(const ControlStats *previous, const ControlStats *current,
			  struct rates *rates);

/* Human output; each returns 0, or -1 when out of memory. */
int render_status(FILE *out, const ControlStats *stats);
int render_conns(FILE *out, const ControlStats *stats);
int render_stats(FILE *out, const ControlStats *stats);
void render_rates(FILE *out, const struct rates *rates);

/* JSON (json_output.c): every Stats field; rates only when non-NULL. */
int render_json(FILE *out, const ControlStats *stats, const struct rates *rates,
		bool pretty);

/* Prometheus text exposition format 0.0.4 (metrics.c). */
int render_metrics(FILE *out, const ControlStats *stats);

#endif
