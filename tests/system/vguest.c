/*
 * vguest.c - the virtual guest object (see vguest.h): options and their
 * checks, creation (guest memory, queue layout, TX slots), accessors,
 * state dump and destruction, and the small helpers every vguest*.c uses
 * (vguest_internal.h).
 *
 * Owns: the struct vguest allocation and its guest memory (memfd + map).
 * Never: talks to the backend or touches a ring's contents after laying
 * it out; that is vguest_frontend.c and vguest_ring.c.
 */
#include "vguest_internal.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* small helpers */

uint64_t vg_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void vg_set_error(struct vguest *vg, const char *format, ...)
{
	va_list args;
	va_start(args, format);
	vsnprintf(vg->error, sizeof(vg->error), format, args);
	va_end(args);
}

void vg_protocol_error(struct vguest *vg, const char *format, ...)
{
	va_list args;
	vg->stats.protocol_errors++;
	if (vg->error_prints++ >= VG_MAX_ERROR_PRINTS)
		return;
	fprintf(stderr, "vguest: PROTOCOL ERROR: ");
	va_start(args, format);
	vfprintf(stderr, format, args);
	va_end(args);
	fputc('\n', stderr);
}

void *vg_gpa(struct vguest *vg, uint64_t gpa)
{
	return vg->mem + gpa;
}

void vg_close_fd(int *fd)
{
	if (*fd >= 0) {
		close(*fd);
		*fd = -1;
	}
}

int vg_grow(void **array, size_t *capacity, size_t needed,
		   size_t element_size)
{
	size_t new_capacity;
	void *grown;
	if (needed <= *capacity)
		return 0;
	new_capacity = *capacity ? *capacity * 2 : 16;
	while (new_capacity < needed)
		new_capacity *= 2;
	grown = realloc(*array, new_capacity * element_size);
	if (!grown)
		return -1;
	*array = grown;
	*capacity = new_capacity;
	return 0;
}

unsigned vg_op_slot(uint16_t op)
{
	return op < VGUEST_OP_SLOTS ? op : 0;
}

void vg_desc_set(struct vring_desc *desc, uint64_t addr, uint32_t len,
			uint16_t flags, uint16_t next)
{
	desc->addr = htole64(addr);
	desc->len = htole32(len);
	desc->flags = htole16(flags);
	desc->next = htole16(next);
}

/* ------------------------------------------------------------------ */
/* options and creation */

void vguest_options_default(struct vguest_options *options)
{
	memset(options, 0, sizeof(*options));
	options->guest_cid = VGUEST_DEFAULT_CID;
	options->memory_size = VGUEST_DEFAULT_MEMORY_SIZE;
	options->queue_size = VGUEST_DEFAULT_QUEUE_SIZE;
	options->want_event_idx = true;
	options->want_indirect = true;
	options->rx_layout = VGUEST_RX_SINGLE;
	options->rx_buf_size = VGUEST_DEFAULT_RX_BUF_SIZE;
	options->rx_split_payload = VGUEST_DEFAULT_RX_SPLIT_PAYLOAD;
	options->rx_refill_half = false;
	options->tx_layout = VGUEST_TX_LINUX;
	options->tx_data_segments = 1;
	options->tx_use_indirect = true;
	options->tx_max_payload = VGUEST_MAX_TX_PAYLOAD;
	options->buf_alloc = VGUEST_DEFAULT_BUF_ALLOC;
	options->always_kick = false;
	options->strict_interrupts = true;
	options->first_local_port = 50000;
	options->io_timeout_ms = 5000;
	options->trace = false;
}

static bool vg_options_valid(const struct vguest_options *o, char *why,
			     size_t why_size)
{
	if (o->queue_size < 4 || o->queue_size > VGUEST_MAX_QUEUE_SIZE ||
	    (o->queue_size & (o->queue_size - 1)) != 0) {
		snprintf(why, why_size, "queue_size %u", o->queue_size);
		return false;
	}
	if (o->rx_buf_size <= VSOCK_HEADER_SIZE || o->rx_buf_size > 65536 ||
	    o->rx_split_payload == 0 || o->rx_split_payload > 65536) {
		snprintf(why, why_size, "rx buffer sizes");
		return false;
	}
	if (o->tx_max_payload == 0 || o->tx_max_payload > VGUEST_MAX_TX_PAYLOAD ||
	    o->tx_data_segments == 0 ||
	    o->tx_data_segments > VGUEST_MAX_TX_DATA_SEGMENTS) {
		snprintf(why, why_size, "tx sizes");
		return false;
	}
	if (o->memory_size < VG_MIN_MEMORY_SIZE) {
		snprintf(why, why_size, "memory_size below 40 MiB");
		return false;
	}
	return true;
}

/* Place and zero the rings of queue index for size entries. */
void vg_queue_layout(struct vguest *vg, unsigned index)
{
	struct vg_queue *q = &vg->queues[index];
	uint64_t base = VG_RING_AREA_OFFSET + (uint64_t)index * VG_RING_AREA_STRIDE;
	uint64_t avail_end;

	q->size = vg->opts.queue_size;
	q->desc_gpa = base;
	q->avail_gpa = base + 16ull * q->size;
	avail_end = q->avail_gpa + 6ull + 2ull * q->size;
	q->used_gpa = (avail_end + 4095) & ~4095ull;
	memset(vg_gpa(vg, base), 0, VG_RING_AREA_STRIDE);
	q->desc = vg_gpa(vg, q->desc_gpa);
	q->avail = vg_gpa(vg, q->avail_gpa);
	q->used = vg_gpa(vg, q->used_gpa);
	/* a non-zero base is what a migrated ring looks like */
	q->avail_idx = vg->opts.ring_base;
	q->last_used = vg->opts.ring_base;
	q->kick_old = vg->opts.ring_base;
	q->avail->idx = htole16(vg->opts.ring_base);
	q->used->idx = htole16(vg->opts.ring_base);
	q->avail->ring[q->size] = htole16(vg->opts.ring_base);
	q->posted = 0;
	q->broken = false;
	q->free_count = 0;
	for (int i = q->size - 1; i >= 0; i--)
		q->free_stack[q->free_count++] = (uint16_t)i;
	memset(q->chains, 0, sizeof(q->chains));
	q->kick_fd = q->call_fd = q->err_fd = -1;
	q->stale_count = 0;
	q->interrupt_pending = false;
}

struct vguest *vguest_create(const struct vguest_options *options)
{
	struct vguest *vg;
	char why[128];
	uint64_t rx_need, tx_end;

	if (!vg_options_valid(options, why, sizeof(why))) {
		fprintf(stderr, "vguest: bad options: %s\n", why);
		errno = EINVAL;
		return NULL;
	}
	vg = calloc(1, sizeof(*vg));
	if (!vg)
		return NULL;
	vg->opts = *options;
	vg->mem_fd = -1;
	vg->vhost_fd = -1;
	vg->mem_size = options->memory_size;
	vg->next_local_port = options->first_local_port;

	rx_need = options->rx_layout == VGUEST_RX_SINGLE
		  ? options->rx_buf_size
		  : VG_RX_SPLIT_PAYLOAD_OFFSET + options->rx_split_payload;
	vg->rx_stride = (rx_need + 4095) & ~4095ull;
	vg->rx_area = VG_RX_AREA_OFFSET;
	vg->tx_area = (vg->rx_area + vg->rx_stride * options->queue_size +
		       0xfffff) & ~0xfffffull;
	vg->tx_slot_count = options->queue_size < VG_TX_SLOTS_MAX
			    ? options->queue_size : VG_TX_SLOTS_MAX;
	tx_end = vg->tx_area + (uint64_t)vg->tx_slot_count * VG_TX_SLOT_SIZE;
	vg->hostile_area = tx_end;
	vg->rx_refill = !options->rx_start_empty;
	if (tx_end + VG_HOSTILE_AREA_SIZE > vg->mem_size) {
		fprintf(stderr, "vguest: memory_size too small for layout\n");
		free(vg);
		errno = EINVAL;
		return NULL;
	}

	if (options->rx_layout == VGUEST_RX_SCATTER &&
	    (options->rx_scatter_segments == 0 ||
	     options->rx_scatter_segments > VGUEST_MAX_RX_SCATTER ||
	     options->rx_scatter_segments > options->rx_split_payload)) {
		errno = EINVAL;
		goto fail;
	}
	vg->mem_fd = memfd_create("vguest-memory", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (vg->mem_fd < 0)
		goto fail;
	if (ftruncate(vg->mem_fd, (off_t)vg->mem_size) != 0)
		goto fail;
	/* QEMU's memory-backend-memfd seals its memory against shrinking */
	if (!options->unsealed_memory &&
	    fcntl(vg->mem_fd, F_ADD_SEALS, F_SEAL_SHRINK) != 0)
		goto fail;
	vg->mem = mmap(NULL, vg->mem_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		       vg->mem_fd, 0);
	if (vg->mem == MAP_FAILED) {
		vg->mem = NULL;
		goto fail;
	}
	for (unsigned i = 0; i < vg->tx_slot_count; i++)
		vg->tx_free_slots[vg->tx_free_slot_count++] = (int)(vg->tx_slot_count - 1 - i);
	for (unsigned i = 0; i < VGUEST_QUEUE_COUNT; i++)
		vg_queue_layout(vg, i);
	return vg;
fail:
	{
		int saved = errno;
		vg_close_fd(&vg->mem_fd);
		free(vg);
		errno = saved;
	}
	return NULL;
}

const char *vguest_error(const struct vguest *vg)
{
	return vg->error;
}

const struct vguest_options *vguest_get_options(const struct vguest *vg)
{
	return &vg->opts;
}

uint64_t vguest_features_offered(const struct vguest *vg)
{
	return vg->features_offered;
}

uint64_t vguest_features_acked(const struct vguest *vg)
{
	return vg->features_acked;
}

uint64_t vguest_protocol_features(const struct vguest *vg)
{
	return vg->protocol_features;
}

uint64_t vguest_config_cid(const struct vguest *vg)
{
	return vg->config_cid;
}

bool vguest_backend_gone(const struct vguest *vg)
{
	return vg->backend_gone;
}

bool vguest_is_connected(const struct vguest *vg)
{
	return vg->connected;
}

int vguest_vhost_fd(const struct vguest *vg)
{
	return vg->vhost_fd;
}

const struct vguest_stats *vguest_get_stats(const struct vguest *vg)
{
	return &vg->stats;
}

void vguest_set_tx_layout(struct vguest *vg, enum vguest_tx_layout layout,
			  unsigned data_segments, bool use_indirect)
{
	if (data_segments == 0)
		data_segments = 1;
	if (data_segments > VGUEST_MAX_TX_DATA_SEGMENTS)
		data_segments = VGUEST_MAX_TX_DATA_SEGMENTS;
	vg->opts.tx_layout = layout;
	vg->opts.tx_data_segments = data_segments;
	vg->opts.tx_use_indirect = use_indirect;
}

void vguest_dump_state(const struct vguest *vg, FILE *out)
{
	for (unsigned i = 0; i < VGUEST_QUEUE_COUNT; i++) {
		const struct vg_queue *q = &vg->queues[i];
		if (!q->avail)
			continue;
		fprintf(out, "vguest queue %u: avail idx %u, used idx %u, consumed up to %u, "
			"posted %u, free descs %u, used_event %u, avail_event %u, used flags %#x, "
			"interrupt pending %d%s\n", i, q->avail_idx,
			le16toh(__atomic_load_n(&q->used->idx, __ATOMIC_ACQUIRE)),
			q->last_used, q->posted, q->free_count,
			le16toh(q->avail->ring[q->size]),
			le16toh(__atomic_load_n(vg_avail_event(q), __ATOMIC_RELAXED)),
			le16toh(q->used->flags), q->interrupt_pending,
			q->broken ? " BROKEN" : "");
	}
	fprintf(out, "vguest: %zu control packets pending, %u free TX slots\n",
		vg->pending_count, vg->tx_free_slot_count);
	for (const struct vguest_sock *s = vg->socks; s; s = s->next)
		fprintf(out, "vguest sock %u<->%u %s: rx %u (unread %zu) fwd %u adv %u | "
			"tx %u peer buf_alloc %u fwd %u | shut local %u peer %u\n",
			s->local_port, s->peer_port, vguest_sock_state_name(s->state),
			s->rx_cnt, s->rx_tail - s->rx_head, s->fwd_cnt, s->last_fwd_cnt_sent,
			s->tx_cnt, s->peer_buf_alloc, s->peer_fwd_cnt, s->local_shutdown,
			s->peer_shutdown);
}

void vguest_destroy(struct vguest *vg)
{
	if (!vg)
		return;
	vguest_disconnect(vg);
	while (vg->socks)
		vguest_sock_release(vg->socks);
	if (vg->mem)
		munmap(vg->mem, vg->mem_size);
	vg_close_fd(&vg->mem_fd);
	free(vg->pending);
	free(vg->tokens);
	free(vg->log);
	free(vg);
}
