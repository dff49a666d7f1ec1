/*
 * port_list.h - a set of vsock ports given on the command line as
 * "LIST": comma-separated ports and inclusive ranges, "22,1024-2047".
 *
 * Why a fixed array: the options are parsed before the fork and read by
 * both processes; a list with no pointers needs no allocation and cannot
 * dangle. PORT_LIST_MAX_RANGES is far more than an access policy needs.
 *
 * Owns: parsing (whole string or nothing) and membership.
 * Never: accepts an empty item, a range whose end is below its start, a
 * number outside 0 .. 4294967295, or more than PORT_LIST_MAX_RANGES items.
 */
#ifndef VSOCKMUX_PORT_LIST_H
#define VSOCKMUX_PORT_LIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PORT_LIST_MAX_RANGES 64u

struct port_range {
	uint32_t first, last;
};

struct port_list {
	bool restricted;          /* false: every port (no list given) */
	size_t count;
	struct port_range ranges[PORT_LIST_MAX_RANGES];
};

/* Parse text into list (restricted). Returns 0, or -1 with *why set to
 * a short reason for the usage error. */
int port_list_parse(const char *text, struct port_list *list, const char **why);

bool port_list_allows(const struct port_list *list, uint32_t port);

#endif
