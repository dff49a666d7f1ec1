/*
 * conn_table.c - connection slots, the (local, peer) port hash and the
 * local port allocator (see conn_table.h).
 */
#include "conn_table.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vsockmux/tag.h"

static uint32_t hash_ports(uint32_t local_port, uint32_t peer_port)
{
	uint64_t key = ((uint64_t)local_port << 32) | peer_port;
	key *= 0x9e3779b97f4a7c15ull;
	return (uint32_t)(key >> 32);
}

int conn_table_init(struct conn_table *table, uint32_t capacity)
{
	uint32_t bucket_count = 1;
	memset(table, 0, sizeof(*table));
	if (capacity == 0)
		return -EINVAL;
	while (bucket_count < capacity * 2u && bucket_count < (1u << 30))
		bucket_count <<= 1;
	table->slots = calloc(capacity, sizeof(*table->slots));
	table->free_stack = calloc(capacity, sizeof(*table->free_stack));
	table->buckets = calloc(bucket_count, sizeof(*table->buckets));
	if (!table->slots || !table->free_stack || !table->buckets) {
		conn_table_destroy(table);
		return -ENOMEM;
	}
	table->capacity = capacity;
	table->bucket_mask = bucket_count - 1;
	for (uint32_t i = 0; i < capacity; i++) {
		table->slots[i].slot = i;
		table->slots[i].host_fd = -1;
		/* pop order: slot 0 first */
		table->free_stack[i] = capacity - 1 - i;
	}
	table->free_count = capacity;
	table->next_local_port = CONN_LOCAL_PORT_FIRST;
	return 0;
}

void conn_table_destroy(struct conn_table *table)
{
	free(table->slots);
	free(table->free_stack);
	free(table->buckets);
	memset(table, 0, sizeof(*table));
}

struct conn *conn_table_alloc(struct conn_table *table)
{
	struct conn *conn;
	uint32_t slot, generation;
	if (table->free_count == 0)
		return NULL;
	slot = table->free_stack[--table->free_count];
	conn = &table->slots[slot];
	generation = conn->generation + 1;
	memset(conn, 0, sizeof(*conn));
	conn->slot = slot;
	conn->generation = generation & TAG_GENERATION_MASK;
	conn->host_fd = -1;
	table->in_use++;
	return conn;
}

void conn_table_free(struct conn_table *table, struct conn *conn)
{
	if (conn->hashed)
		conn_table_remove(table, conn);
	conn->state = CONN_FREE;
	conn->host_fd = -1;
	table->free_stack[table->free_count++] = conn->slot;
	table->in_use--;
}

struct conn *conn_table_lookup(const struct conn_table *table,
			       uint32_t local_port, uint32_t peer_port)
{
	struct conn *conn;
	if (!table->buckets)
		return NULL;
	conn = table->buckets[hash_ports(local_port, peer_port) & table->bucket_mask];
	for (; conn; conn = conn->hash_next) {
		if (conn->local_port == local_port && conn->peer_port == peer_port)
			return conn;
	}
	return NULL;
}

int conn_table_insert(struct conn_table *table, struct conn *conn)
{
	uint32_t bucket;
	if (conn_table_lookup(table, conn->local_port, conn->peer_port))
		return -EEXIST;
	bucket = hash_ports(conn->local_port, conn->peer_port) & table->bucket_mask;
	conn->hash_next = table->buckets[bucket];
	table->buckets[bucket] = conn;
	conn->hashed = true;
	return 0;
}

void conn_table_remove(struct conn_table *table, struct conn *conn)
{
	uint32_t bucket;
	struct conn **link;
	if (!conn->hashed)
		return;
	bucket = hash_ports(conn->local_port, conn->peer_port) & table->bucket_mask;
	for (link = &table->buckets[bucket]; *link; link = &(*link)->hash_next) {
		if (*link == conn) {
			*link = conn->hash_next;
			break;
		}
	}
	conn->hash_next = NULL;
	conn->hashed = false;
}

uint32_t conn_table_allocate_local_port(struct conn_table *table,
					uint32_t peer_port)
{
	/* At most in_use ports can collide, so in_use + 1 tries suffice. */
	for (uint32_t tries = 0; tries <= table->in_use; tries++) {
		uint32_t candidate = table->next_local_port++;
		if (table->next_local_port >= CONN_LOCAL_PORT_END)
			table->next_local_port = CONN_LOCAL_PORT_FIRST;
		if (!conn_table_lookup(table, candidate, peer_port))
			return candidate;
	}
	return 0;
}

struct conn *conn_table_by_slot(const struct conn_table *table, uint32_t slot,
				uint32_t generation)
{
	struct conn *conn;
	if (slot >= table->capacity)
		return NULL;
	conn = &table->slots[slot];
	if (conn->state == CONN_FREE || conn->generation != generation)
		return NULL;
	return conn;
}
