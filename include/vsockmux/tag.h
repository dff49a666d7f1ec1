/*
 * tag.h - the one layout for epoll tags and connect request ids.
 *
 * Why tags carry a generation: a slot (a connection, a control client) is
 * reused, and an event or a broker reply can still be on its way for the
 * slot's previous owner. The generation, bumped on every reuse, makes such
 * a leftover find nothing instead of the new owner.
 *
 * An epoll tag (epoll_event.data.u64): kind in bits 56-63, the slot's
 * generation (24 bits) in bits 32-55, the slot in bits 0-31.
 * A connect request id (32 bits, the IPC field): the slot in the low
 * VSOCKMUX_SLOT_BITS, the generation's low bits above it.
 */
#ifndef VSOCKMUX_TAG_H
#define VSOCKMUX_TAG_H

#include <stdint.h>

#include "vsockmux/limits.h"

#define TAG_GENERATION_MASK 0xffffffu

struct tag {
	uint32_t kind;         /* 8 bits: what the event is about */
	uint32_t generation;   /* TAG_GENERATION_MASK bits */
	uint32_t slot;
};

static inline uint64_t tag_encode(uint32_t kind, uint32_t generation, uint32_t slot)
{
	return ((uint64_t)(kind & 0xffu) << 56) |
	       ((uint64_t)(generation & TAG_GENERATION_MASK) << 32) | slot;
}

static inline struct tag tag_decode(uint64_t tag)
{
	struct tag fields = {
		.kind = (uint32_t)(tag >> 56),
		.generation = (uint32_t)(tag >> 32) & TAG_GENERATION_MASK,
		.slot = (uint32_t)tag,
	};
	return fields;
}

static inline uint32_t request_id_encode(uint32_t generation, uint32_t slot)
{
	return (generation << VSOCKMUX_SLOT_BITS) |
	       (slot & (VSOCKMUX_MAX_CONNECTIONS - 1u));
}

static inline uint32_t request_id_slot(uint32_t request_id)
{
	return request_id & (VSOCKMUX_MAX_CONNECTIONS - 1u);
}

#endif
