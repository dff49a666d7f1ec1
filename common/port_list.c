/*
 * port_list.c - parsing and membership of a port list (port_list.h).
 */
#include "vsockmux/port_list.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* One decimal port at *cursor; advances past it. */
static int parse_port(const char **cursor, uint32_t *port)
{
	const char *text = *cursor;
	char *end = NULL;
	unsigned long long value;

	if (*text < '0' || *text > '9')
		return -1;
	errno = 0;
	value = strtoull(text, &end, 10);
	if (errno != 0 || value > UINT32_MAX)
		return -1;
	*port = (uint32_t)value;
	*cursor = end;
	return 0;
}

int port_list_parse(const char *text, struct port_list *list, const char **why)
{
	const char *cursor = text;

	memset(list, 0, sizeof(*list));
	list->restricted = true;
	for (;;) {
		struct port_range range;

		if (list->count == PORT_LIST_MAX_RANGES) {
			*why = "more than 64 ports and ranges";
			return -1;
		}
		if (parse_port(&cursor, &range.first) < 0) {
			*why = "expected a port number (0 .. 4294967295)";
			return -1;
		}
		range.last = range.first;
		if (*cursor == '-') {
			cursor++;
			if (parse_port(&cursor, &range.last) < 0) {
				*why = "expected a port number after '-'";
				return -1;
			}
			if (range.last < range.first) {
				*why = "a range ends below its start";
				return -1;
			}
		}
		list->ranges[list->count++] = range;
		if (*cursor == '\0')
			return 0;
		if (*cursor != ',') {
			*why = "expected ',' between ports";
			return -1;
		}
		cursor++;
	}
}

bool port_list_allows(const struct port_list *list, uint32_t port)
{
	if (!list->restricted)
		return true;
	for (size_t i = 0; i < list->count; i++) {
		if (port >= list->ranges[i].first && port <= list->ranges[i].last)
			return true;
	}
	return false;
}
