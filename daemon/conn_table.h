/*
 * conn_table.h - every connection slot of the muxer, allocated once at
 * start-up (--max-connections), with O(1) lookup by (local port, peer
 * port) and the host-side port allocator.
 *
 * Never: allocates after init. A slot is reused only after conn_table_free;
 * its generation changes so stale epoll events and broker replies that
 * name the old occupant are recognised and ignored.
 */
#ifndef VSOCKMUX_CONN_TABLE_H
#define VSOCKMUX_CONN_TABLE_H

#include <stdint.h>

#include "conn.h"

/* Host-initiated connections get local ports from [2^30, 2^31). */
#define CONN_LOCAL_PORT_FIRST (1u << 30)
#define CONN_LOCAL_PORT_END (1u << 31)

struct conn_table {
	struct conn *slots;
	uint32_t capacity;
	uint32_t in_use;
	uint32_t *free_stack;     /* indices of free slots */
	uint32_t free_count;
	struct conn **buckets;
	uint32_t bucket_mask;
	uint32_t next_local_port;
};

int conn_table_init(struct conn_table *table, uint32_t capacity);
void conn_table_destroy(struct conn_table *table);
/* A zeroed slot (state still CONN_FREE: caller sets it), or NULL if full. */
struct conn *conn_table_alloc(struct conn_table *table);
/* Unhash if needed and return the slot to the free stack. */
void conn_table_free(struct conn_table *table, struct conn *conn);
struct conn *conn_table_lookup(const struct conn_table *table,
			       uint32_t local_port, uint32_t peer_port);
/* Insert with conn->local_port/peer_port set. Returns -EEXIST if taken. */
int conn_table_insert(struct conn_table *table, struct conn *conn);
void conn_table_remove(struct conn_table *table, struct conn *conn);
/* A local port in [2^30, 2^31) not used with peer_port; 0 if none. */
uint32_t conn_table_allocate_local_port(struct conn_table *table,
					uint32_t peer_port);
/* The slot a request id / epoll tag names, if that occupant still lives. */
struct conn *conn_table_by_slot(const struct conn_table *table, uint32_t slot,
				uint32_t generation);

#endif
