/*
 * prom_validator.c - strict Prometheus text format checker (see
 * prom_validator.h). Line-oriented; keeps the declared families and every
 * series key (name + sorted labels) seen so far.
 *
 * Owns: the family and series tables of one prom_validate call.
 * Never: allocates without freeing before returning.
 */
#include "prom_validator.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NAME 200
#define MAX_LABELS 16
#define MAX_SERIES_KEY 1024

struct family {
	char name[MAX_NAME];
	char type[16];
	bool has_help, has_type, closed;
};

struct validator {
	struct family *families;
	size_t family_count, family_capacity;
	char **series;
	size_t series_count, series_capacity;
	struct family *current;		/* the family being written */
	size_t line_number;
	char *error;
	size_t error_size;
};

static size_t last_sample_count;

size_t prom_last_sample_count(void)
{
	return last_sample_count;
}

static int fail(struct validator *validator, const char *format, ...)
	__attribute__((format(printf, 2, 3)));

static int fail(struct validator *validator, const char *format, ...)
{
	int used = snprintf(validator->error, validator->error_size, "line %zu: ",
			    validator->line_number);
	va_list args;

	if (used < 0 || (size_t)used >= validator->error_size)
		return -1;
	va_start(args, format);
	vsnprintf(validator->error + used, validator->error_size - (size_t)used,
		  format, args);
	va_end(args);
	return -1;
}

static bool is_name_start(char c, bool allow_colon)
{
	return isalpha((unsigned char)c) || c == '_' || (allow_colon && c == ':');
}

static bool is_name_char(char c, bool allow_colon)
{
	return is_name_start(c, allow_colon) || isdigit((unsigned char)c);
}

/* Reads a metric (allow_colon) or label name; returns its length, 0 if none. */
static size_t read_name(const char *cursor, bool allow_colon, char *name)
{
	size_t length = 0;

	if (!is_name_start(cursor[0], allow_colon))
		return 0;
	while (is_name_char(cursor[length], allow_colon) && length + 1 < MAX_NAME) {
		name[length] = cursor[length];
		length++;
	}
	if (is_name_char(cursor[length], allow_colon))
		return 0;	/* too long */
	name[length] = '\0';
	return length;
}

static bool ends_with(const char *text, const char *suffix)
{
	size_t text_length = strlen(text), suffix_length = strlen(suffix);

	return text_length >= suffix_length &&
	       strcmp(text + text_length - suffix_length, suffix) == 0;
}

static struct family *find_family(struct validator *validator, const char *name)
{
	size_t i;

	for (i = 0; i < validator->family_count; i++)
		if (strcmp(validator->families[i].name, name) == 0)
			return &validator->families[i];
	return NULL;
}

/* Switches the current family; returning to a closed one is an error. */
static int enter_family(struct validator *validator, const char *name,
			struct family **out)
{
	struct family *family = find_family(validator, name);

	if (family && family != validator->current && family->closed)
		return fail(validator, "family %s appears again after another family", name);
	if (!family) {
		if (validator->family_count == validator->family_capacity) {
			size_t capacity = validator->family_capacity ? validator->family_capacity * 2 : 32;
			size_t current = validator->current ?
					 (size_t)(validator->current - validator->families) : 0;
			struct family *grown = realloc(validator->families,
						       capacity * sizeof(*grown));
			if (!grown)
				return fail(validator, "out of memory");
			/* current pointed into the old array */
			if (validator->current)
				validator->current = &grown[current];
			validator->families = grown;
			validator->family_capacity = capacity;
		}
		family = &validator->families[validator->family_count++];
		memset(family, 0, sizeof(*family));
		snprintf(family->name, sizeof(family->name), "%s", name);
	}
	if (validator->current && validator->current != family)
		validator->current->closed = true;
	validator->current = family;
	*out = family;
	return 0;
}

static int check_help_text(struct validator *validator, const char *text)
{
	for (; *text; text++) {
		if (*text != '\\')
			continue;
		text++;
		if (*text != '\\' && *text != 'n')
			return fail(validator, "bad escape in HELP text");
	}
	return 0;
}

static int comment_line(struct validator *validator, const char *line)
{
	char name[MAX_NAME];
	struct family *family;
	const char *cursor;
	size_t length;
	bool help;

	if (strncmp(line, "# HELP ", 7) == 0)
		help = true;
	else if (strncmp(line, "# TYPE ", 7) == 0)
		help = false;
	else
		return 0;	/* plain comment */
	cursor = line + 7;
	length = read_name(cursor, true, name);
	if (length == 0)
		return fail(validator, "bad metric name in %s", help ? "HELP" : "TYPE");
	cursor += length;
	if (enter_family(validator, name, &family) != 0)
		return -1;
	if (help) {
		if (family->has_help)
			return fail(validator, "second HELP for %s", name);
		if (*cursor != ' ' || cursor[1] == '\0')
			return fail(validator, "HELP for %s has no text", name);
		family->has_help = true;
		return check_help_text(validator, cursor + 1);
	}
	if (family->has_type)
		return fail(validator, "second TYPE for %s", name);
	if (*cursor != ' ')
		return fail(validator, "TYPE for %s has no type", name);
	cursor++;
	if (strcmp(cursor, "counter") != 0 && strcmp(cursor, "gauge") != 0 &&
	    strcmp(cursor, "summary") != 0 && strcmp(cursor, "histogram") != 0 &&
	    strcmp(cursor, "untyped") != 0)
		return fail(validator, "unknown type '%s'", cursor);
	snprintf(family->type, sizeof(family->type), "%s", cursor);
	family->has_type = true;
	if (strcmp(family->type, "counter") == 0 && !ends_with(name, "_total"))
		return fail(validator, "counter %s does not end in _total", name);
	if (strcmp(family->type, "gauge") == 0 && ends_with(name, "_total"))
		return fail(validator, "gauge %s ends in _total", name);
	return 0;
}

/* Parses {a="x",b="y"} into a canonical, sorted "a=x,b=y" key part. */
static int parse_labels(struct validator *validator, const char **cursor_io,
			char *key, size_t key_size)
{
	char names[MAX_LABELS][MAX_NAME];
	char values[MAX_LABELS][256];
	size_t order[MAX_LABELS];
	size_t count = 0, i, used = 0;
	const char *cursor = *cursor_io + 1;	/* after '{' */

	while (*cursor != '}') {
		size_t length, value_length = 0;

		if (count == MAX_LABELS)
			return fail(validator, "too many labels");
		length = read_name(cursor, false, names[count]);
		if (length == 0)
			return fail(validator, "bad label name");
		cursor += length;
		if (cursor[0] != '=' || cursor[1] != '"')
			return fail(validator, "label %s: expected =\"", names[count]);
		cursor += 2;
		while (*cursor != '"') {
			if (*cursor == '\0' || *cursor == '\n')
				return fail(validator, "unterminated label value");
			if (*cursor == '\\') {
				cursor++;
				if (*cursor != '\\' && *cursor != '"' && *cursor != 'n')
					return fail(validator, "bad escape in label value");
			}
			if (value_length + 1 < sizeof(values[count]))
				values[count][value_length++] = *cursor;
			cursor++;
		}
		values[count][value_length] = '\0';
		cursor++;	/* closing quote */
		for (i = 0; i < count; i++)
			if (strcmp(names[i], names[count]) == 0)
				return fail(validator, "label %s repeated", names[count]);
		count++;
		if (*cursor == ',')
			cursor++;
		else if (*cursor != '}')
			return fail(validator, "expected ',' or '}' after a label");
	}
	*cursor_io = cursor + 1;
	/* Sort label indices by name (insertion sort; few labels). */
	for (i = 0; i < count; i++)
		order[i] = i;
	for (i = 1; i < count; i++) {
		size_t j;

		for (j = i; j > 0 && strcmp(names[order[j - 1]], names[order[j]]) > 0; j--) {
			size_t swap = order[j];
			order[j] = order[j - 1];
			order[j - 1] = swap;
		}
	}
	for (i = 0; i < count; i++) {
		int written = snprintf(key + used, key_size - used, "%s=%s\x1f",
				       names[order[i]], values[order[i]]);
		if (written < 0 || (size_t)written >= key_size - used)
			return fail(validator, "labels too long");
		used += (size_t)written;
	}
	return 0;
}

static bool parse_float(const char *text, double *value)
{
	char *end = NULL;

	if (strcmp(text, "+Inf") == 0 || strcmp(text, "-Inf") == 0 ||
	    strcmp(text, "NaN") == 0) {
		*value = 0;
		return true;
	}
	if (!isdigit((unsigned char)text[0]) && text[0] != '-' && text[0] != '+' &&
	    text[0] != '.')
		return false;
	*value = strtod(text, &end);
	return end != text && *end == '\0';
}

/* The family a sample name belongs to, given the family's type. */
static struct family *sample_family(struct validator *validator, const char *name)
{
	static const char *const suffixes[] = { "_sum", "_count", "_bucket" };
	struct family *family = find_family(validator, name);
	size_t i;

	if (family)
		return family;
	for (i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		char base[MAX_NAME];
		size_t base_length;

		if (!ends_with(name, suffixes[i]))
			continue;
		base_length = strlen(name) - strlen(suffixes[i]);
		snprintf(base, sizeof(base), "%.*s", (int)base_length, name);
		family = find_family(validator, base);
		if (family && (strcmp(family->type, "summary") == 0 ||
			       strcmp(family->type, "histogram") == 0)) {
			if (i == 2 && strcmp(family->type, "histogram") != 0)
				return NULL;
			return family;
		}
	}
	return NULL;
}

static int remember_series(struct validator *validator, const char *key)
{
	size_t i;

	for (i = 0; i < validator->series_count; i++)
		if (strcmp(validator->series[i], key) == 0)
			return fail(validator, "duplicate series");
	if (validator->series_count == validator->series_capacity) {
		size_t capacity = validator->series_capacity ? validator->series_capacity * 2 : 64;
		char **grown = realloc(validator->series, capacity * sizeof(*grown));
		if (!grown)
			return fail(validator, "out of memory");
		validator->series = grown;
		validator->series_capacity = capacity;
	}
	validator->series[validator->series_count] = strdup(key);
	if (!validator->series[validator->series_count])
		return fail(validator, "out of memory");
	validator->series_count++;
	return 0;
}

static int sample_line(struct validator *validator, const char *line)
{
	char name[MAX_NAME], key[MAX_SERIES_KEY], value_text[64];
	struct family *family, *entered;
	const char *cursor = line, *value_start;
	size_t length = read_name(cursor, true, name);
	size_t value_length;
	double value;
	int used;

	if (length == 0)
		return fail(validator, "bad metric name");
	cursor += length;
	family = sample_family(validator, name);
	if (!family || !family->has_type)
		return fail(validator, "sample %s before its # TYPE", name);
	if (!family->has_help)
		return fail(validator, "family %s has no # HELP", family->name);
	if (enter_family(validator, family->name, &entered) != 0)
		return -1;
	used = snprintf(key, sizeof(key), "%s\x1e", name);
	if (*cursor == '{') {
		if (parse_labels(validator, &cursor, key + used, sizeof(key) - (size_t)used) != 0)
			return -1;
	}
	if (*cursor != ' ')
		return fail(validator, "expected a space before the value of %s", name);
	value_start = ++cursor;
	while (*cursor && *cursor != ' ')
		cursor++;
	value_length = (size_t)(cursor - value_start);
	if (value_length == 0 || value_length >= sizeof(value_text))
		return fail(validator, "missing or overlong value for %s", name);
	memcpy(value_text, value_start, value_length);
	value_text[value_length] = '\0';
	if (!parse_float(value_text, &value))
		return fail(validator, "bad value '%s' for %s", value_text, name);
	if (strcmp(family->type, "counter") == 0 && value < 0)
		return fail(validator, "negative counter %s", name);
	if (*cursor == ' ') {	/* optional integer timestamp */
		const char *timestamp = ++cursor;

		if (*cursor == '-')
			cursor++;
		while (isdigit((unsigned char)*cursor))
			cursor++;
		if (cursor == timestamp || *cursor != '\0')
			return fail(validator, "bad timestamp for %s", name);
	}
	return remember_series(validator, key);
}

int prom_validate(const char *text, char *error, size_t error_size)
{
	struct validator validator = { .error = error, .error_size = error_size };
	const char *line_start = text;
	char line[4096];
	int result = 0;
	size_t i;

	error[0] = '\0';
	if (text[0] != '\0' && text[strlen(text) - 1] != '\n') {
		validator.line_number = 0;
		result = fail(&validator, "output does not end with a newline");
	}
	while (result == 0 && *line_start != '\0') {
		const char *line_end = strchr(line_start, '\n');
		size_t length = line_end ? (size_t)(line_end - line_start) : strlen(line_start);

		validator.line_number++;
		if (length >= sizeof(line)) {
			result = fail(&validator, "line too long");
			break;
		}
		memcpy(line, line_start, length);
		line[length] = '\0';
		if (length == 0)
			result = 0;	/* empty lines are ignored */
		else if (line[0] == '#')
			result = comment_line(&validator, line);
		else
			result = sample_line(&validator, line);
		line_start += length + (line_end ? 1 : 0);
	}
	for (i = 0; result == 0 && i < validator.family_count; i++) {
		if (!validator.families[i].has_type || !validator.families[i].has_help)
			result = fail(&validator, "family %s lacks HELP or TYPE",
				      validator.families[i].name);
	}
	last_sample_count = validator.series_count;
	for (i = 0; i < validator.series_count; i++)
		free(validator.series[i]);
	free(validator.series);
	free(validator.families);
	return result;
}
