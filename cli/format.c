/*
 * format.c - human units and aligned tables for vsockctl (see format.h).
 *
 * Owns: cell copies inside struct table.
 * Never: prints anything but what it is handed; no daemon knowledge.
 */
#include "format.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MS_PER_SECOND UINT64_C(1000)
#define MS_PER_MINUTE (60 * MS_PER_SECOND)
#define MS_PER_HOUR (60 * MS_PER_MINUTE)
#define MS_PER_DAY (24 * MS_PER_HOUR)

void format_bytes(uint64_t bytes, char *buffer, size_t size)
{
	static const char *const units[] = { "KiB", "MiB", "GiB" };
	double value = (double)bytes;
	size_t unit = 0;

	if (bytes < 1024) {
		snprintf(buffer, size, "%" PRIu64 " B", bytes);
		return;
	}
	value /= 1024.0;
	while (value >= 1024.0 && unit + 1 < sizeof(units) / sizeof(units[0])) {
		value /= 1024.0;
		unit++;
	}
	snprintf(buffer, size, "%.1f %s", value, units[unit]);
}

void format_duration_ms(uint64_t milliseconds, char *buffer, size_t size)
{
	uint64_t ms = milliseconds;

	if (ms < MS_PER_SECOND)
		snprintf(buffer, size, "%" PRIu64 "ms", ms);
	else if (ms < MS_PER_MINUTE)
		snprintf(buffer, size, "%.1fs", (double)ms / 1000.0);
	else if (ms < MS_PER_HOUR)
		snprintf(buffer, size, "%" PRIu64 "m%02" PRIu64 "s",
			 ms / MS_PER_MINUTE, ms % MS_PER_MINUTE / MS_PER_SECOND);
	else if (ms < MS_PER_DAY)
		snprintf(buffer, size, "%" PRIu64 "h%02" PRIu64 "m",
			 ms / MS_PER_HOUR, ms % MS_PER_HOUR / MS_PER_MINUTE);
	else
		snprintf(buffer, size, "%" PRIu64 "d%02" PRIu64 "h",
			 ms / MS_PER_DAY, ms % MS_PER_DAY / MS_PER_HOUR);
}

void format_latency_ns(uint64_t nanoseconds, char *buffer, size_t size)
{
	snprintf(buffer, size, "%.3fms", (double)nanoseconds / 1e6);
}

void format_rate(double bytes_per_second, char *buffer, size_t size)
{
	char bytes_text[FORMAT_BUFFER_SIZE];

	if (!isfinite(bytes_per_second) || bytes_per_second < 0 ||
	    bytes_per_second > 1.8e19) {
		snprintf(buffer, size, "n/a");
		return;
	}
	format_bytes((uint64_t)llround(bytes_per_second), bytes_text,
		     sizeof(bytes_text));
	snprintf(buffer, size, "%s/s", bytes_text);
}

void format_printable(const char *text, char *buffer, size_t size)
{
	size_t i;

	if (size == 0)
		return;
	for (i = 0; text[i] != '\0' && i + 1 < size; i++) {
		unsigned char c = (unsigned char)text[i];
		buffer[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	buffer[i] = '\0';
}

void table_init(struct table *table, size_t columns,
		const char *const *headers, uint32_t right_align_mask)
{
	memset(table, 0, sizeof(*table));
	table->columns = columns;
	table->headers = headers;
	table->right_align_mask = right_align_mask;
}

int table_add_row(struct table *table, const char *const *cells)
{
	size_t column;
	char **row;

	if (table->rows == table->capacity_rows) {
		size_t new_capacity = table->capacity_rows ? table->capacity_rows * 2 : 16;
		char **grown = realloc(table->cells,
				       new_capacity * table->columns * sizeof(*grown));
		if (!grown)
			return -1;
		table->cells = grown;
		table->capacity_rows = new_capacity;
	}
	row = table->cells + table->rows * table->columns;
	for (column = 0; column < table->columns; column++) {
		row[column] = strdup(cells[column] ? cells[column] : "");
		if (!row[column]) {
			while (column-- > 0)
				free(row[column]);
			return -1;
		}
	}
	table->rows++;
	return 0;
}

int table_add_pair(struct table *table, const char *key, const char *value)
{
	const char *cells[2] = { key, value };

	return table_add_row(table, cells);
}

static void print_row(const struct table *table, FILE *out, const char *indent,
		      const char *const *cells, const size_t *widths)
{
	size_t column, last = 0;

	/* Cells after the last non-empty one are skipped: no trailing blanks. */
	for (column = 0; column < table->columns; column++)
		if (cells[column][0] != '\0')
			last = column;
	fputs(indent, out);
	for (column = 0; column <= last; column++) {
		int width = (int)widths[column];

		if (column > 0)
			fputs("  ", out);
		if (table->right_align_mask & (1u << column))
			fprintf(out, "%*s", width, cells[column]);
		else if (column == last)
			fputs(cells[column], out);
		else
			fprintf(out, "%-*s", width, cells[column]);
	}
	fputc('\n', out);
}

void table_print(const struct table *table, FILE *out, const char *indent)
{
	size_t widths[32] = { 0 };
	size_t row, column;

	if (table->columns == 0 || table->columns > 32)
		return;
	for (column = 0; column < table->columns; column++) {
		if (table->headers)
			widths[column] = strlen(table->headers[column]);
		for (row = 0; row < table->rows; row++) {
			size_t length = strlen(table->cells[row * table->columns + column]);
			if (length > widths[column])
				widths[column] = length;
		}
	}
	if (table->headers)
		print_row(table, out, indent, table->headers, widths);
	for (row = 0; row < table->rows; row++)
		print_row(table, out, indent,
			  (const char *const *)(table->cells + row * table->columns),
			  widths);
}

void table_free(struct table *table)
{
	size_t i;

	for (i = 0; i < table->rows * table->columns; i++)
		free(table->cells[i]);
	free(table->cells);
	table->cells = NULL;
	table->rows = table->capacity_rows = 0;
}
