/*
 * vguest_ring.c - the virtqueue driver side of the virtual guest, as the
 * Linux driver does it: descriptor allocation, the avail ring and kicks
 * (with or without EVENT_IDX), RX buffer posting in the configured
 * layouts, TX chains (direct, indirect, several data segments), chain
 * tokens, the used rings (entries checked, then handed to the socket
 * layer), and the event loop over call/err eventfds.
 *
 * Owns: the descriptor tables, avail and used rings, the chain records,
 * TX slots and tokens.
 * Never: follows a `next` pointer it did not write itself (chains are
 * recycled from our own records, so a hostile backend cannot confuse us),
 * trusts a used entry it did not post, or blocks: vguest_poll waits only
 * as long as its caller says.
 */
#include "vguest_internal.h"

#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vsockmux/iov.h"

/* ------------------------------------------------------------------ */
/* virtqueue driver side */

int vg_alloc_descs(struct vg_queue *q, unsigned count, uint16_t *out)
{
	if (q->free_count < count)
		return -1;
	for (unsigned i = 0; i < count; i++)
		out[i] = q->free_stack[--q->free_count];
	return 0;
}

static void vg_free_chain(struct vguest *vg, struct vg_queue *q, uint16_t head)
{
	struct vg_chain *chain = &q->chains[head];
	for (unsigned i = 0; i < chain->desc_count; i++)
		q->free_stack[q->free_count++] = chain->descs[i];
	if (chain->slot >= 0)
		vg->tx_free_slots[vg->tx_free_slot_count++] = chain->slot;
	chain->in_use = false;
	chain->slot = -1;
	chain->desc_count = 0;
	q->posted--;
}

/* Record the chain at descs[0] and publish it in the avail ring. */
void vg_publish(struct vg_queue *q, const uint16_t *descs,
		       unsigned count, int slot, uint32_t token,
		       uint32_t capacity)
{
	struct vg_chain *chain = &q->chains[descs[0]];
	chain->in_use = true;
	chain->desc_count = (uint8_t)count;
	memcpy(chain->descs, descs, count * sizeof(descs[0]));
	chain->slot = slot;
	chain->token = token;
	chain->capacity = capacity;
	q->avail->ring[q->avail_idx % q->size] = htole16(descs[0]);
	q->avail_idx++;
	q->posted++;
	__atomic_store_n(&q->avail->idx, htole16(q->avail_idx), __ATOMIC_RELEASE);
}

/* avail_event: the u16 after the used ring's entries (EVENT_IDX). */
uint16_t *vg_avail_event(const struct vg_queue *q)
{
	return (uint16_t *)((uint8_t *)q->used + 4 + 8u * q->size);
}

/* Notify the device of new avail entries unless it asked us not to. */
void vg_kick(struct vguest *vg, unsigned index)
{
	struct vg_queue *q = &vg->queues[index];
	bool notify;
	uint64_t one = 1;

	if (q->avail_idx == q->kick_old || q->kick_fd < 0)
		return;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (vg->opts.always_kick) {
		notify = true;
	} else if (vg->event_idx) {
		uint16_t event = le16toh(__atomic_load_n(vg_avail_event(q), __ATOMIC_ACQUIRE));
		notify = vring_need_event(event, q->avail_idx, q->kick_old);
	} else {
		uint16_t flags = le16toh(__atomic_load_n(&q->used->flags, __ATOMIC_ACQUIRE));
		notify = !(flags & VRING_USED_F_NO_NOTIFY);
	}
	q->kick_old = q->avail_idx;
	if (!notify) {
		vg->stats.kicks_suppressed++;
		return;
	}
	vg->stats.kicks++;
	if (write(q->kick_fd, &one, sizeof(one)) != sizeof(one))
		vg_protocol_error(vg, "kick write failed: %s", strerror(errno));
}

static unsigned vg_rx_descs_per_buffer(const struct vguest *vg)
{
	if (vg->opts.rx_layout == VGUEST_RX_SCATTER)
		return 1u + vg->opts.rx_scatter_segments;
	return vg->opts.rx_layout == VGUEST_RX_SINGLE ? 1u : 2u;
}

/* Post one RX buffer; -1 when out of descriptors. */
static int vg_rx_post_one(struct vguest *vg)
{
	struct vg_queue *q = &vg->queues[VGUEST_QUEUE_RX];
	uint16_t descs[1 + VGUEST_MAX_RX_SCATTER] = { 0 };
	unsigned count = vg_rx_descs_per_buffer(vg);
	uint64_t base;

	if (vg_alloc_descs(q, count, descs) != 0)
		return -1;
	base = vg->rx_area + (uint64_t)descs[0] * vg->rx_stride;
	if (vg->opts.rx_layout == VGUEST_RX_SCATTER) {
		/* the payload stays contiguous in memory (vg_rx_iov reads it
		 * as one piece), but each slice is its own descriptor */
		uint32_t piece = vg->opts.rx_split_payload / vg->opts.rx_scatter_segments;
		vg_desc_set(&q->desc[descs[0]], base, VSOCK_HEADER_SIZE,
			    VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, descs[1]);
		for (unsigned k = 0; k < vg->opts.rx_scatter_segments; k++) {
			bool last = k + 1 == vg->opts.rx_scatter_segments;
			uint32_t length = last ? vg->opts.rx_split_payload - piece * k : piece;
			vg_desc_set(&q->desc[descs[1 + k]],
				    base + VG_RX_SPLIT_PAYLOAD_OFFSET + (uint64_t)piece * k,
				    length, VRING_DESC_F_WRITE | (last ? 0 : VRING_DESC_F_NEXT),
				    last ? 0 : descs[2 + k]);
		}
		vg_publish(q, descs, count, -1, 0,
			   VSOCK_HEADER_SIZE + vg->opts.rx_split_payload);
	} else if (count == 1) {
		vg_desc_set(&q->desc[descs[0]], base, vg->opts.rx_buf_size,
			    VRING_DESC_F_WRITE, 0);
		vg_publish(q, descs, 1, -1, 0, vg->opts.rx_buf_size);
	} else {
		vg_desc_set(&q->desc[descs[0]], base, VSOCK_HEADER_SIZE,
			    VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, descs[1]);
		vg_desc_set(&q->desc[descs[1]], base + VG_RX_SPLIT_PAYLOAD_OFFSET,
			    vg->opts.rx_split_payload, VRING_DESC_F_WRITE, 0);
		vg_publish(q, descs, 2, -1, 0,
			   VSOCK_HEADER_SIZE + vg->opts.rx_split_payload);
	}
	return 0;
}

/* Keep the RX ring full (or, Linux-like, refill below half). */
void vg_rx_refill(struct vguest *vg)
{
	struct vg_queue *q = &vg->queues[VGUEST_QUEUE_RX];
	unsigned target = q->size / vg_rx_descs_per_buffer(vg);
	if ((!vg->connected && vg->vhost_fd < 0) || !vg->rx_refill)
		return;
	if (vg->opts.rx_refill_half && q->posted >= target / 2)
		return;
	while (q->posted < target && vg_rx_post_one(vg) == 0)
		;
}

/* Describe RX chain head's buffer as iovecs into our mapping. */
static size_t vg_rx_iov(struct vguest *vg, uint16_t head, struct iovec *iov)
{
	uint8_t *base = vg_gpa(vg, vg->rx_area + (uint64_t)head * vg->rx_stride);
	if (vg->opts.rx_layout == VGUEST_RX_SINGLE) {
		iov[0].iov_base = base;
		iov[0].iov_len = vg->opts.rx_buf_size;
		return 1;
	}
	iov[0].iov_base = base;
	iov[0].iov_len = VSOCK_HEADER_SIZE;
	iov[1].iov_base = base + VG_RX_SPLIT_PAYLOAD_OFFSET;
	iov[1].iov_len = vg->opts.rx_split_payload;
	return 2;
}

/* Find a TX slot; -1 if none. */
int vg_tx_take_slot(struct vguest *vg)
{
	if (vg->tx_free_slot_count == 0)
		return -1;
	return vg->tx_free_slots[--vg->tx_free_slot_count];
}

uint64_t vg_slot_gpa(const struct vguest *vg, int slot)
{
	return vg->tx_area + (uint64_t)slot * VG_TX_SLOT_SIZE;
}

uint32_t vg_new_token(struct vguest *vg)
{
	if (vg_grow((void **)&vg->tokens, &vg->token_capacity,
		    vg->token_count + 1, sizeof(*vg->tokens)) != 0)
		return 0;
	memset(&vg->tokens[vg->token_count], 0, sizeof(vg->tokens[0]));
	vg->token_count++;
	return (uint32_t)vg->token_count;
}

struct vg_segment {
	uint64_t gpa;
	uint32_t len;
};

/*
 * Post one TX packet: wire header + payload, shaped by the TX layout
 * options. Returns 0, or -1 with errno EAGAIN when slots/descriptors are
 * short.
 */
int vg_tx_post(struct vguest *vg, const uint8_t wire[VSOCK_HEADER_SIZE],
		      const void *payload, size_t len, uint32_t token)
{
	struct vg_queue *q = &vg->queues[VGUEST_QUEUE_TX];
	struct vg_segment segs[VG_CHAIN_MAX_DESCS];
	uint16_t descs[VG_CHAIN_MAX_DESCS];
	unsigned nsegs = 0, data_segs;
	bool use_indirect;
	int slot;
	uint64_t base, data_gpa;

	if (q->kick_fd < 0 || vg->backend_gone) {
		errno = ENOTCONN;
		return -1;
	}
	if (len > VGUEST_MAX_TX_PAYLOAD) {
		errno = EMSGSIZE;
		return -1;
	}
	slot = vg_tx_take_slot(vg);
	if (slot < 0) {
		vg->stats.tx_ring_full++;
		errno = EAGAIN;
		return -1;
	}
	base = vg_slot_gpa(vg, slot);
	data_gpa = base + VG_TX_SLOT_DATA;

	if (vg->opts.tx_layout == VGUEST_TX_SINGLE) {
		memcpy(vg_gpa(vg, data_gpa - VSOCK_HEADER_SIZE), wire, VSOCK_HEADER_SIZE);
		if (len)
			memcpy(vg_gpa(vg, data_gpa), payload, len);
		segs[nsegs++] = (struct vg_segment){ data_gpa - VSOCK_HEADER_SIZE,
						     (uint32_t)(VSOCK_HEADER_SIZE + len) };
	} else {
		memcpy(vg_gpa(vg, base), wire, VSOCK_HEADER_SIZE);
		if (vg->opts.tx_layout == VGUEST_TX_HDR_SPLIT) {
			segs[nsegs++] = (struct vg_segment){ base, VG_SHORT_HEADER_LEN };
			segs[nsegs++] = (struct vg_segment){
				base + VG_SHORT_HEADER_LEN,
				VSOCK_HEADER_SIZE - VG_SHORT_HEADER_LEN };
		} else {
			segs[nsegs++] = (struct vg_segment){ base, VSOCK_HEADER_SIZE };
		}
		if (len) {
			size_t offset = 0;
			memcpy(vg_gpa(vg, data_gpa), payload, len);
			data_segs = vg->opts.tx_data_segments;
			if (data_segs > len)
				data_segs = (unsigned)len;
			for (unsigned i = 0; i < data_segs; i++) {
				size_t piece = len / data_segs;
				if (i == data_segs - 1)
					piece = len - offset;
				segs[nsegs++] = (struct vg_segment){ data_gpa + offset,
								     (uint32_t)piece };
				offset += piece;
			}
		}
	}

	use_indirect = vg->indirect && vg->opts.tx_use_indirect && nsegs > 1;
	if (use_indirect) {
		struct vring_desc *table = vg_gpa(vg, base + VG_TX_SLOT_TABLE);
		for (unsigned i = 0; i < nsegs; i++)
			vg_desc_set(&table[i], segs[i].gpa, segs[i].len,
				    i + 1 < nsegs ? VRING_DESC_F_NEXT : 0,
				    (uint16_t)(i + 1 < nsegs ? i + 1 : 0));
		if (vg_alloc_descs(q, 1, descs) != 0)
			goto no_descs;
		vg_desc_set(&q->desc[descs[0]], base + VG_TX_SLOT_TABLE,
			    nsegs * (uint32_t)sizeof(struct vring_desc),
			    VRING_DESC_F_INDIRECT, 0);
		vg_publish(q, descs, 1, slot, token, 0);
		return 0;
	}
	if (vg_alloc_descs(q, nsegs, descs) != 0)
		goto no_descs;
	for (unsigned i = 0; i < nsegs; i++)
		vg_desc_set(&q->desc[descs[i]], segs[i].gpa, segs[i].len,
			    i + 1 < nsegs ? VRING_DESC_F_NEXT : 0,
			    i + 1 < nsegs ? descs[i + 1] : 0);
	vg_publish(q, descs, nsegs, slot, token, 0);
	return 0;
no_descs:
	vg->tx_free_slots[vg->tx_free_slot_count++] = slot;
	vg->stats.tx_ring_full++;
	errno = EAGAIN;
	return -1;
}

int vguest_send_raw(struct vguest *vg, const struct vsock_header *header,
		    const void *payload, size_t payload_len, uint32_t *token)
{
	uint8_t wire[VSOCK_HEADER_SIZE];
	uint32_t id = vg_new_token(vg);
	vsock_header_encode(header, wire);
	if (vg_tx_post(vg, wire, payload, payload_len, id) != 0) {
		if (id)
			vg->token_count--;
		return -1;
	}
	vg->stats.tx_packets[vg_op_slot(header->op)]++;
	vg_log_packet(vg, true, header);
	vg_kick(vg, VGUEST_QUEUE_TX);
	if (token)
		*token = id;
	return 0;
}

void vguest_set_rx_refill(struct vguest *vg, bool enabled)
{
	vg->rx_refill = enabled;
}

uint16_t vguest_avail_idx(const struct vguest *vg, unsigned index)
{
	return index < VGUEST_QUEUE_COUNT ? vg->queues[index].avail_idx : 0;
}

unsigned vguest_rx_buffers_posted(const struct vguest *vg)
{
	return vg->queues[VGUEST_QUEUE_RX].posted;
}

int vguest_chain_result(const struct vguest *vg, uint32_t token,
			uint32_t *used_len)
{
	if (token == 0 || token > vg->token_count)
		return -1;
	if (!vg->tokens[token - 1].done)
		return 0;
	if (used_len)
		*used_len = vg->tokens[token - 1].used_len;
	return 1;
}

static void vg_rx_used(struct vguest *vg, uint16_t id, uint32_t len)
{
	struct vg_queue *q = &vg->queues[VGUEST_QUEUE_RX];
	struct vg_chain *chain;
	struct iovec iov[2];
	size_t iov_count;
	uint8_t wire[VSOCK_HEADER_SIZE];
	struct vsock_header header;

	if (id >= q->size || !q->chains[id].in_use) {
		vg->stats.bad_used_ids++;
		vg_protocol_error(vg, "RX used id %u was not posted", id);
		return;
	}
	chain = &q->chains[id];
	if (chain->token != 0) {
		/* one of our malformed RX buffers: record, never parse */
		vg->tokens[chain->token - 1].done = true;
		vg->tokens[chain->token - 1].used_len = len;
		vg_free_chain(vg, q, id);
		return;
	}
	if (len == 0) {
		/* handed back unused (the device stopped): drop and repost */
		vg->stats.rx_used_empty++;
		vg_free_chain(vg, q, id);
		return;
	}
	if (len < VSOCK_HEADER_SIZE || len > chain->capacity) {
		vg->stats.rx_used_bad_length++;
		vg_protocol_error(vg, "RX used length %u (buffer %u)", len, chain->capacity);
		vg_free_chain(vg, q, id);
		return;
	}
	iov_count = vg_rx_iov(vg, id, iov);
	iov_copy_out(iov, iov_count, 0, wire, sizeof(wire));
	vsock_header_decode(wire, &header);
	if (header.len != len - VSOCK_HEADER_SIZE) {
		vg->stats.rx_used_bad_length++;
		vg_protocol_error(vg, "RX used length %u but header len %u (%s)",
				  len, header.len, vsock_op_name(header.op));
	} else {
		vg_rx_packet(vg, &header, iov, iov_count);
	}
	vg_free_chain(vg, q, id);
}

static void vg_tx_used(struct vguest *vg, uint16_t id, uint32_t len)
{
	struct vg_queue *q = &vg->queues[VGUEST_QUEUE_TX];
	struct vg_chain *chain;

	if (id >= q->size || !q->chains[id].in_use) {
		vg->stats.bad_used_ids++;
		vg_protocol_error(vg, "TX used id %u was not posted", id);
		return;
	}
	chain = &q->chains[id];
	if (chain->token != 0 && chain->token <= vg->token_count) {
		vg->tokens[chain->token - 1].done = true;
		vg->tokens[chain->token - 1].used_len = len;
	}
	if (len != 0) {
		vg->stats.tx_used_nonzero++;
		vg_protocol_error(vg, "TX used id %u with length %u", id, len);
	}
	vg_free_chain(vg, q, id);
}

/* Consume every used entry of queue index, re-arming interrupts. */
static void vg_process_used(struct vguest *vg, unsigned index)
{
	struct vg_queue *q = &vg->queues[index];
	if (q->broken || q->kick_fd < 0)
		return;
	for (;;) {
		uint16_t used_idx = le16toh(__atomic_load_n(&q->used->idx, __ATOMIC_ACQUIRE));
		if ((uint16_t)(used_idx - q->last_used) > q->posted) {
			vg_protocol_error(vg, "queue %u: used idx %u jumps past %u posted (last %u)",
					  index, used_idx, q->posted, q->last_used);
			q->broken = true;
			return;
		}
		while (q->last_used != used_idx) {
			struct vring_used_elem elem = q->used->ring[q->last_used % q->size];
			q->last_used++;
			if (index == VGUEST_QUEUE_RX)
				vg_rx_used(vg, (uint16_t)le32toh(elem.id), le32toh(elem.len));
			else
				vg_tx_used(vg, (uint16_t)le32toh(elem.id), le32toh(elem.len));
		}
		if (vg->event_idx) {
			uint16_t *used_event = &q->avail->ring[q->size];
			__atomic_store_n(used_event, htole16(q->last_used), __ATOMIC_RELAXED);
		}
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		if (le16toh(__atomic_load_n(&q->used->idx, __ATOMIC_ACQUIRE)) == q->last_used)
			break;
	}
}

/* ------------------------------------------------------------------ */
/* event loop */

size_t vguest_fill_pollfds(const struct vguest *vg, struct pollfd *fds, size_t max)
{
	size_t n = 0;
#define VG_ADD_FD(f) do { if ((f) >= 0 && n < max) { \
		fds[n].fd = (f); fds[n].events = POLLIN; fds[n].revents = 0; n++; } } while (0)
	VG_ADD_FD(vg->vhost_fd);
	for (unsigned i = 0; i < VGUEST_QUEUE_COUNT; i++) {
		const struct vg_queue *q = &vg->queues[i];
		VG_ADD_FD(q->call_fd);
		VG_ADD_FD(q->err_fd);
		for (size_t s = 0; s < q->stale_count; s++)
			VG_ADD_FD(q->stale_fds[s]);
	}
#undef VG_ADD_FD
	return n;
}

static bool vg_drain_eventfd(int fd)
{
	uint64_t value;
	return read(fd, &value, sizeof(value)) == sizeof(value);
}

static void vg_handle_vhost_readable(struct vguest *vg)
{
	uint8_t buffer[512];
	ssize_t n = recv(vg->vhost_fd, buffer, sizeof(buffer), MSG_DONTWAIT);
	if (n > 0) {
		vg->stats.backend_messages++;
		vg_protocol_error(vg, "unexpected %zd bytes from the backend", n);
		return;
	}
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	vg->backend_gone = true;
	vg_close_fd(&vg->vhost_fd);
}

void vguest_flush(struct vguest *vg)
{
	vg_rx_refill(vg);
	vg_kick(vg, VGUEST_QUEUE_RX);
	vg_flush_pending(vg);
	vg_kick(vg, VGUEST_QUEUE_TX);
}

void vguest_handle_pollfds(struct vguest *vg, const struct pollfd *fds, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		int fd = fds[i].fd;
		if (!fds[i].revents || fd < 0)
			continue;
		if (fd == vg->vhost_fd) {
			vg_handle_vhost_readable(vg);
			continue;
		}
		for (unsigned qi = 0; qi < VGUEST_QUEUE_COUNT; qi++) {
			struct vg_queue *q = &vg->queues[qi];
			if (fd == q->call_fd) {
				if (vg_drain_eventfd(fd)) {
					q->interrupt_pending = true;
					if (qi == VGUEST_QUEUE_RX)
						vg->stats.rx_interrupts++;
					else
						vg->stats.tx_interrupts++;
				}
			} else if (fd == q->err_fd) {
				if (vg_drain_eventfd(fd)) {
					vg->stats.err_signals++;
					vg_protocol_error(vg, "queue %u: error eventfd signalled", qi);
				}
			} else {
				for (size_t s = 0; s < q->stale_count; s++) {
					if (fd != q->stale_fds[s] || !vg_drain_eventfd(fd))
						continue;
					if (q->stale_forward[s]) {
						vg->stats.early_call_signals++;
						q->interrupt_pending = true;
					} else {
						vg->stats.stale_call_signals++;
					}
				}
			}
		}
	}
	for (unsigned qi = 0; qi < VGUEST_QUEUE_COUNT; qi++) {
		struct vg_queue *q = &vg->queues[qi];
		if (q->interrupt_pending || !vg->opts.strict_interrupts) {
			q->interrupt_pending = false;
			vg_process_used(vg, qi);
		}
	}
	vguest_flush(vg);
}

int vguest_poll(struct vguest *vg, int timeout_ms)
{
	struct pollfd fds[VGUEST_MAX_POLLFDS];
	size_t count;
	int ready;

	vguest_flush(vg);
	count = vguest_fill_pollfds(vg, fds, VGUEST_MAX_POLLFDS);
	ready = poll(fds, count, timeout_ms);
	if (ready < 0) {
		if (errno == EINTR)
			return 0;
		return -1;
	}
	vguest_handle_pollfds(vg, fds, count);
	return ready;
}
