/*
 * vguest_hostile.c - what a hostile guest does that the Linux driver never
 * would: malformed TX chains (addresses outside memory, loops, bad
 * indirect tables, ...), malformed RX buffers watched by canaries, a
 * jumping avail index, kicks without new buffers, vring addresses of the
 * test's choice, and a socket's advertised buf_alloc set by hand.
 *
 * Owns: the canary areas (vg->hostile_area) and the chains it builds.
 * Never: posts one of its chains through the normal free/recycle path
 * without a token (so a used entry for it is recorded, never parsed), or
 * writes outside guest memory itself: "outside" addresses are only ever
 * written into descriptors.
 */
#include "vguest_internal.h"

#include <endian.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "vsockmux/vhost_user_wire.h"

const char *vguest_bad_chain_name(enum vguest_bad_chain kind)
{
	static const char *const names[VGUEST_BAD_CHAIN_COUNT] = {
		[VGUEST_BAD_HEADER_OUTSIDE] = "header-outside-memory",
		[VGUEST_BAD_DATA_OUTSIDE] = "data-outside-memory",
		[VGUEST_BAD_DATA_STRADDLE] = "data-straddles-end",
		[VGUEST_BAD_DATA_WRAP] = "data-address-wraps",
		[VGUEST_BAD_SELF_LOOP] = "self-loop",
		[VGUEST_BAD_TWO_LOOP] = "two-descriptor-loop",
		[VGUEST_BAD_NEXT_OUT_OF_RANGE] = "next-out-of-range",
		[VGUEST_BAD_INDIRECT_TOO_LONG] = "indirect-longer-than-queue",
		[VGUEST_BAD_WRITE_ONLY] = "write-only-on-tx",
		[VGUEST_BAD_SHORT_HEADER] = "chain-shorter-than-header",
		[VGUEST_BAD_NESTED_INDIRECT] = "nested-indirect",
		[VGUEST_BAD_INDIRECT_BAD_LEN] = "indirect-len-not-16n",
		[VGUEST_BAD_INDIRECT_OUTSIDE] = "indirect-table-outside",
		[VGUEST_BAD_INDIRECT_EMPTY] = "indirect-table-empty",
		[VGUEST_BAD_INDIRECT_AND_NEXT] = "indirect-and-next",
	};
	if ((unsigned)kind < VGUEST_BAD_CHAIN_COUNT)
		return names[kind];
	return "bad-chain?";
}

int vguest_post_bad_chain(struct vguest *vg, enum vguest_bad_chain kind,
			  const struct vsock_header *header,
			  const void *payload, size_t payload_len,
			  uint32_t *token)
{
	struct vg_queue *q = &vg->queues[VGUEST_QUEUE_TX];
	static const uint8_t default_payload[16] = "malformed-chain";
	struct vsock_header fallback;
	uint8_t wire[VSOCK_HEADER_SIZE];
	uint16_t d[2];
	unsigned ring_descs = 2;
	uint64_t base, hdr_gpa, data_gpa, table_gpa, outside;
	uint32_t data_len, id;
	struct vring_desc *table;
	int slot;

	if (q->kick_fd < 0 || vg->backend_gone) {
		errno = ENOTCONN;
		return -1;
	}
	if ((unsigned)kind >= VGUEST_BAD_CHAIN_COUNT || payload_len > 65536) {
		errno = EINVAL;
		return -1;
	}
	if (!payload || payload_len == 0) {
		payload = default_payload;
		payload_len = sizeof(default_payload);
	}
	if (!header) {
		memset(&fallback, 0, sizeof(fallback));
		fallback.src_cid = vg->opts.guest_cid;
		fallback.dst_cid = VSOCK_HOST_CID;
		fallback.type = VSOCK_TYPE_STREAM;
		fallback.op = VSOCK_OP_RW;
		fallback.len = (uint32_t)payload_len;
		fallback.buf_alloc = vg->opts.buf_alloc;
		header = &fallback;
	}
	if (kind == VGUEST_BAD_SELF_LOOP || kind == VGUEST_BAD_NEXT_OUT_OF_RANGE ||
	    kind == VGUEST_BAD_SHORT_HEADER || kind == VGUEST_BAD_INDIRECT_TOO_LONG ||
	    kind == VGUEST_BAD_NESTED_INDIRECT || kind == VGUEST_BAD_INDIRECT_BAD_LEN ||
	    kind == VGUEST_BAD_INDIRECT_OUTSIDE || kind == VGUEST_BAD_INDIRECT_EMPTY)
		ring_descs = 1;
	slot = vg_tx_take_slot(vg);
	if (slot < 0) {
		errno = EAGAIN;
		return -1;
	}
	if (vg_alloc_descs(q, ring_descs, d) != 0) {
		vg->tx_free_slots[vg->tx_free_slot_count++] = slot;
		errno = EAGAIN;
		return -1;
	}
	id = vg_new_token(vg);

	base = vg_slot_gpa(vg, slot);
	hdr_gpa = base;
	data_gpa = base + VG_TX_SLOT_DATA;
	table_gpa = base + VG_TX_SLOT_TABLE;
	table = vg_gpa(vg, table_gpa);
	data_len = (uint32_t)payload_len;
	outside = vg->mem_size + 0x10000;
	vsock_header_encode(header, wire);
	memcpy(vg_gpa(vg, hdr_gpa), wire, sizeof(wire));
	memcpy(vg_gpa(vg, data_gpa), payload, payload_len);

	switch (kind) {
	case VGUEST_BAD_HEADER_OUTSIDE:
		vg_desc_set(&q->desc[d[0]], outside, VSOCK_HEADER_SIZE, VRING_DESC_F_NEXT, d[1]);
		vg_desc_set(&q->desc[d[1]], data_gpa, data_len, 0, 0);
		break;
	case VGUEST_BAD_DATA_OUTSIDE:
		vg_desc_set(&q->desc[d[0]], hdr_gpa, VSOCK_HEADER_SIZE, VRING_DESC_F_NEXT, d[1]);
		vg_desc_set(&q->desc[d[1]], outside, data_len, 0, 0);
		break;
	case VGUEST_BAD_DATA_STRADDLE:
		vg_desc_set(&q->desc[d[0]], hdr_gpa, VSOCK_HEADER_SIZE, VRING_DESC_F_NEXT, d[1]);
		vg_desc_set(&q->desc[d[1]], vg->mem_size - 8,
			    data_len > 64 ? data_len : 64, 0, 0);
		break;
	case VGUEST_BAD_DATA_WRAP:
		vg_desc_set(&q->desc[d[0]], hdr_gpa, VSOCK_HEADER_SIZE, VRING_DESC_F_NEXT, d[1]);
		vg_desc_set(&q->desc[d[1]], UINT64_MAX - 15, 64, 0, 0);
		break;
	case VGUEST_BAD_SELF_LOOP:
		vg_desc_set(&q->desc[d[0]], hdr_gpa, VSOCK_HEADER_SIZE, VRING_DESC_F_NEXT, d[0]);
		break;
	case VGUEST_BAD_TWO_LOOP:
		vg_desc_set(&q->desc[d[0]], hdr_gpa, VSOCK_HEADER_SIZE, VRING_DESC_F_NEXT, d[1]);
		vg_desc_set(&q->desc[d[1]], data_gpa, data_len, VRING_DESC_F_NEXT, d[0]);
		break;
	case VGUEST_BAD_NEXT_OUT_OF_RANGE:
		vg_desc_set(&q->desc[d[0]], hdr_gpa, VSOCK_HEADER_SIZE, VRING_DESC_F_NEXT,
			    (uint16_t)(q->size + 5));
		break;
	case VGUEST_BAD_INDIRECT_TOO_LONG: {
		unsigned entries = q->size + 8u;
		vg_desc_set(&table[0], hdr_gpa, VSOCK_HEADER_SIZE, VRING_DESC_F_NEXT, 1);
		for (unsigned i = 1; i < entries; i++)
			vg_desc_set(&table[i], data_gpa + (i - 1) % data_len, 1,
				    i + 1 < entries ? VRING_DESC_F_NEXT : 0,
				    (uint16_t)(i + 1 < entries ? i + 1 : 0));
		vg_desc_set(&q->desc[d[0]], table_gpa, entries * 16u, VRING_DESC_F_INDIRECT, 0);
		break;
	}
	case VGUEST_BAD_WRITE_ONLY:
		vg_desc_set(&q->desc[d[0]], hdr_gpa, VSOCK_HEADER_SIZE, VRING_DESC_F_NEXT, d[1]);
		vg_desc_set(&q->desc[d[1]], data_gpa, data_len, VRING_DESC_F_WRITE, 0);
		break;
	case VGUEST_BAD_SHORT_HEADER:
		vg_desc_set(&q->desc[d[0]], hdr_gpa, VG_SHORT_HEADER_LEN, 0, 0);
		break;
	case VGUEST_BAD_NESTED_INDIRECT: {
		uint64_t table2_gpa = base + VG_TX_SLOT_TABLE2;
		struct vring_desc *table2 = vg_gpa(vg, table2_gpa);
		vg_desc_set(&table2[0], data_gpa, data_len, 0, 0);
		vg_desc_set(&table[0], hdr_gpa, VSOCK_HEADER_SIZE, VRING_DESC_F_NEXT, 1);
		vg_desc_set(&table[1], table2_gpa, 16, VRING_DESC_F_INDIRECT, 0);
		vg_desc_set(&q->desc[d[0]], table_gpa, 32, VRING_DESC_F_INDIRECT, 0);
		break;
	}
	case VGUEST_BAD_INDIRECT_BAD_LEN:
		vg_desc_set(&table[0], hdr_gpa, VSOCK_HEADER_SIZE, VRING_DESC_F_NEXT, 1);
		vg_desc_set(&table[1], data_gpa, data_len, 0, 0);
		vg_desc_set(&q->desc[d[0]], table_gpa, 24, VRING_DESC_F_INDIRECT, 0);
		break;
	case VGUEST_BAD_INDIRECT_OUTSIDE:
		vg_desc_set(&q->desc[d[0]], outside, 32, VRING_DESC_F_INDIRECT, 0);
		break;
	case VGUEST_BAD_INDIRECT_EMPTY:
		vg_desc_set(&q->desc[d[0]], table_gpa, 0, VRING_DESC_F_INDIRECT, 0);
		break;
	case VGUEST_BAD_INDIRECT_AND_NEXT:
		vg_desc_set(&table[0], hdr_gpa, VSOCK_HEADER_SIZE, VRING_DESC_F_NEXT, 1);
		vg_desc_set(&table[1], data_gpa, data_len, 0, 0);
		vg_desc_set(&q->desc[d[0]], table_gpa, 32,
			    VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, d[1]);
		vg_desc_set(&q->desc[d[1]], data_gpa, data_len, 0, 0);
		break;
	case VGUEST_BAD_CHAIN_COUNT:
		break;
	}
	vg_publish(q, d, ring_descs, slot, id, 0);
	vg_kick(vg, VGUEST_QUEUE_TX);
	if (token)
		*token = id;
	return 0;
}

void vguest_sock_mark_raw(struct vguest_sock *sock)
{
	sock->raw_traffic = true;
}

int vguest_post_bad_rx_chain(struct vguest *vg, enum vguest_bad_rx kind,
			     uint32_t *token)
{
	struct vg_queue *q = &vg->queues[VGUEST_QUEUE_RX];
	uint16_t d[2];
	unsigned count = kind == VGUEST_BAD_RX_MIXED ? 2u : 1u;
	uint64_t area;
	uint32_t id;

	if (q->kick_fd < 0 || vg->backend_gone) {
		errno = ENOTCONN;
		return -1;
	}
	if ((unsigned)kind >= VGUEST_BAD_RX_COUNT) {
		errno = EINVAL;
		return -1;
	}
	if (vg_alloc_descs(q, count, d) != 0) {
		errno = EAGAIN;
		return -1;
	}
	id = vg_new_token(vg);
	if (id == 0) {
		for (unsigned i = 0; i < count; i++)
			q->free_stack[q->free_count++] = d[i];
		errno = ENOMEM;
		return -1;
	}
	area = vg->hostile_area +
	       (uint64_t)(vg->hostile_next++ % (VG_HOSTILE_AREA_SIZE / VG_CANARY_SIZE)) *
	       VG_CANARY_SIZE;
	memset(vg_gpa(vg, area), VG_CANARY_BYTE, VG_CANARY_SIZE);
	vg->tokens[id - 1].canary_gpa = area;
	switch (kind) {
	case VGUEST_BAD_RX_READ_ONLY:
		vg_desc_set(&q->desc[d[0]], area, 128, 0, 0);
		vg->tokens[id - 1].canary_from = 0;
		break;
	case VGUEST_BAD_RX_MIXED:
		vg_desc_set(&q->desc[d[0]], area, VSOCK_HEADER_SIZE,
			    VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, d[1]);
		vg_desc_set(&q->desc[d[1]], area + 64, 128, 0, 0);
		/* the writable header part may have been written: check after */
		vg->tokens[id - 1].canary_from = 64;
		break;
	case VGUEST_BAD_RX_TOO_SHORT:
		vg_desc_set(&q->desc[d[0]], area, VG_SHORT_HEADER_LEN, VRING_DESC_F_WRITE, 0);
		vg->tokens[id - 1].canary_from = VG_SHORT_HEADER_LEN;
		break;
	case VGUEST_BAD_RX_OUTSIDE:
		vg_desc_set(&q->desc[d[0]], vg->mem_size + 0x10000, 4096, VRING_DESC_F_WRITE, 0);
		vg->tokens[id - 1].canary_from = 0;
		break;
	case VGUEST_BAD_RX_COUNT:
		break;
	}
	vg_publish(q, d, count, -1, id, 0);
	vg_kick(vg, VGUEST_QUEUE_RX);
	if (token)
		*token = id;
	return 0;
}

bool vguest_bad_rx_canary_intact(const struct vguest *vg, uint32_t token)
{
	const uint8_t *area;
	const struct vg_token *t;
	if (token == 0 || token > vg->token_count || !vg->tokens[token - 1].canary_gpa)
		return false;
	t = &vg->tokens[token - 1];
	area = vg->mem + t->canary_gpa;
	for (uint32_t i = t->canary_from; i < VG_CANARY_SIZE; i++)
		if (area[i] != VG_CANARY_BYTE)
			return false;
	return true;
}

/* ------------------------------------------------------------------ */
/* ring-level hostile helpers (test_hostile_guest.c) */

void vguest_ring_gpas(const struct vguest *vg, unsigned index, uint64_t *desc_gpa,
		      uint64_t *avail_gpa, uint64_t *used_gpa)
{
	const struct vg_queue *q = &vg->queues[index % VGUEST_QUEUE_COUNT];

	*desc_gpa = q->desc_gpa;
	*avail_gpa = q->avail_gpa;
	*used_gpa = q->used_gpa;
}

int vguest_set_vring_addr(struct vguest *vg, unsigned index, uint64_t desc_gpa,
			  uint64_t avail_gpa, uint64_t used_gpa, uint64_t *ack)
{
	struct vhost_user_vring_addr addr = {
		.index = index,
		.flags = 0,
		.desc_user_addr = vg_user_addr(vg, desc_gpa),
		.used_user_addr = vg_user_addr(vg, used_gpa),
		.avail_user_addr = vg_user_addr(vg, avail_gpa),
		.log_guest_addr = used_gpa,
	};
	bool need_ack = vg->protocol_features & (1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK);

	*ack = 0;
	if (vg_vu_send(vg, VHOST_USER_SET_VRING_ADDR,
		       need_ack ? VHOST_USER_FLAG_NEED_REPLY : 0, &addr, sizeof(addr),
		       NULL, 0) != 0)
		return -1;
	if (need_ack && vg_vu_reply(vg, VHOST_USER_SET_VRING_ADDR, ack, sizeof(*ack)) != 0)
		return -1;
	return 0;
}

void vguest_avail_jump(struct vguest *vg, unsigned index, uint16_t delta)
{
	struct vg_queue *q = &vg->queues[index % VGUEST_QUEUE_COUNT];
	uint64_t one = 1;

	q->avail_idx = (uint16_t)(q->avail_idx + delta);
	__atomic_store_n(&q->avail->idx, htole16(q->avail_idx), __ATOMIC_RELEASE);
	if (q->kick_fd >= 0 && write(q->kick_fd, &one, sizeof(one)) == sizeof(one))
		vg->stats.kicks++;
}

void vguest_kick_now(struct vguest *vg, unsigned index)
{
	struct vg_queue *q = &vg->queues[index % VGUEST_QUEUE_COUNT];
	uint64_t one = 1;

	if (q->kick_fd >= 0 && write(q->kick_fd, &one, sizeof(one)) == sizeof(one))
		vg->stats.kicks++;
}

void vguest_sock_set_buf_alloc(struct vguest_sock *sock, uint32_t buf_alloc)
{
	sock->buf_alloc = buf_alloc;
}
