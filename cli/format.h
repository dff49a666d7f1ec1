/*
 * format.h - human units for vsockctl (bytes, durations, rates) and a tiny
 * aligned-table printer.
 *
 * Owns: the cell strings copied into a table.
 * Never: talks to the daemon or knows what a Stats message is.
 */
#ifndef VSOCKCTL_FORMAT_H
#define VSOCKCTL_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Big enough for every formatter below. */
#define FORMAT_BUFFER_SIZE 48

/* 512 B, 1.5 KiB, 12.0 MiB, 3.0 GiB. */
void format_bytes(uint64_t bytes, char *buffer, size_t size);
/* 450ms, 12.3s, 5m03s, 2h05m, 3d04h. */
void format_duration_ms(uint64_t milliseconds, char *buffer, size_t size);
/* Latency from nanoseconds, always in ms: 0.250ms, 12.500ms. */
void format_latency_ns(uint64_t nanoseconds, char *buffer, size_t size);
/* format_bytes + "/s"; negative or non-finite rates print "n/a". */
void format_rate(double bytes_per_second, char *buffer, size_t size);
/* Copies text, replacing control characters with '?' (for terminals). */
void format_printable(const char *text, char *buffer, size_t size);

/* Aligned columns separated by two spaces. */
struct table {
	size_t columns;
	const char *const *headers;	/* NULL: no header row */
	uint32_t right_align_mask;	/* bit i: right-align column i */
	char **cells;			/* rows * columns strdup'd strings */
	size_t rows;
	size_t capacity_rows;
};

void table_init(struct table *table, size_t columns,
		const char *const *headers, uint32_t right_align_mask);
/* Copies `columns` strings; returns 0, or -1 when out of memory. */
int table_add_row(struct table *table, const char *const *cells);
/* Convenience for two-column key/value tables. */
int table_add_pair(struct table *table, const char *key, const char *value);
void table_print(const struct table *table, FILE *out, const char *indent);
void table_free(struct table *table);

#endif
