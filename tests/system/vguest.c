/*
 * vguest.c - the virtual guest (see vguest.h): vhost-user frontend, split
 * virtqueue driver and a Linux 6.1-like virtio-vsock socket layer.
 *
 * Guest memory layout (guest physical addresses; user address = mapping):
 *   0x10000 + q * 0x20000   queue q: descriptor table, avail ring, used ring
 *   rx_area                 one RX buffer per head descriptor id
 *   tx_area                 TX slots of 128 KiB: header at +0, indirect
 *                           table at +256, payload at +32 KiB
 * Never: follows `next` pointers it did not write itself (chains are
 * recycled from our own records, so hostile chains cannot confuse us), or
 * blocks without a bound.
 */
#include "vguest.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/virtio_ring.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vsockmux/iov.h"
#include "vsockmux/vhost_user_wire.h"

#define VG_RING_AREA_OFFSET 0x10000u
#define VG_RING_AREA_STRIDE 0x20000u
#define VG_RX_AREA_OFFSET 0x100000u
#define VG_RX_SPLIT_PAYLOAD_OFFSET 64u
#define VG_TX_SLOT_SIZE 0x20000u
#define VG_TX_SLOT_TABLE 256u
#define VG_TX_SLOT_TABLE2 0x6000u
#define VG_TX_SLOT_DATA 0x8000u
#define VG_TX_SLOTS_MAX 128u
#define VG_CHAIN_MAX_DESCS 72u    /* 1 + VGUEST_MAX_RX_SCATTER, with room */
#define VG_MAX_STALE_FDS 4u
#define VG_MAX_ERROR_PRINTS 50u
#define VG_MIN_MEMORY_SIZE (40u * 1024u * 1024u)
#define VG_SHORT_HEADER_LEN 20u
#define VG_HOSTILE_AREA_SIZE 0x10000u
#define VG_CANARY_SIZE 256u
#define VG_CANARY_BYTE 0xa5u

/* What we remember about one posted chain (indexed by head id). */
struct vg_chain {
	bool in_use;
	uint8_t desc_count;
	uint16_t descs[VG_CHAIN_MAX_DESCS];
	int slot;              /* TX slot, -1 if none */
	uint32_t token;        /* 0: not tracked */
	uint32_t capacity;     /* RX: writable bytes */
};

struct vg_queue {
	uint16_t size;
	uint64_t desc_gpa, avail_gpa, used_gpa;
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	uint16_t avail_idx;          /* shadow of avail->idx */
	uint16_t last_used;          /* next used entry to read */
	uint16_t kick_old;           /* avail_idx at the last kick decision */
	bool broken;
	uint16_t free_count;
	uint16_t free_stack[VGUEST_MAX_QUEUE_SIZE];
	struct vg_chain chains[VGUEST_MAX_QUEUE_SIZE];
	uint16_t posted;             /* chains in the ring */
	int kick_fd, call_fd, err_fd;
	int stale_fds[VG_MAX_STALE_FDS];
	bool stale_forward[VG_MAX_STALE_FDS]; /* retired during set-up */
	size_t stale_count;
	bool interrupt_pending;
};

/* A control packet waiting for TX ring space. */
struct vg_pending_ctl {
	uint32_t local_port, peer_port;
	uint16_t op;
	uint32_t flags;
};

struct vg_token {
	bool done;
	uint32_t used_len;
	uint64_t canary_gpa;         /* bad RX chains: canary area, else 0 */
	uint32_t canary_from;        /* bytes [from, 256) must stay canary */
};

struct vguest {
	struct vguest_options opts;
	char error[256];
	uint64_t error_prints;

	int mem_fd;
	uint8_t *mem;
	size_t mem_size;
	uint64_t rx_area, rx_stride;
	uint64_t tx_area;
	uint64_t hostile_area;       /* canary areas for bad RX chains */
	unsigned hostile_next;
	bool rx_refill;
	unsigned tx_slot_count;
	unsigned tx_free_slot_count;
	int tx_free_slots[VG_TX_SLOTS_MAX];

	int vhost_fd;
	bool connected;
	bool backend_gone;
	uint64_t features_offered, features_acked;
	uint64_t protocol_features;
	uint64_t config_cid;
	bool event_idx, indirect;

	struct vg_queue queues[VGUEST_QUEUE_COUNT];

	struct vg_pending_ctl *pending;
	size_t pending_head, pending_count, pending_capacity;

	struct vg_token *tokens;
	size_t token_count, token_capacity;

	struct vguest_sock *socks;
	uint32_t next_local_port;

	struct vguest_packet_record *log;
	size_t log_count, log_capacity;

	struct vguest_stats stats;
};

/* ------------------------------------------------------------------ */
/* small helpers */

static uint64_t vg_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void vg_set_error(struct vguest *vg, const char *format, ...)
	__attribute__((format(printf, 2, 3)));
static void vg_set_error(struct vguest *vg, const char *format, ...)
{
	va_list args;
	va_start(args, format);
	vsnprintf(vg->error, sizeof(vg->error), format, args);
	va_end(args);
}

/* Something the daemon did wrong: counted, printed (bounded). */
static void vg_protocol_error(struct vguest *vg, const char *format, ...)
	__attribute__((format(printf, 2, 3)));
static void vg_protocol_error(struct vguest *vg, const char *format, ...)
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

static void *vg_gpa(struct vguest *vg, uint64_t gpa)
{
	return vg->mem + gpa;
}

static void vg_close_fd(int *fd)
{
	if (*fd >= 0) {
		close(*fd);
		*fd = -1;
	}
}

static int vg_grow(void **array, size_t *capacity, size_t needed,
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

static unsigned vg_op_slot(uint16_t op)
{
	return op < VGUEST_OP_SLOTS ? op : 0;
}

static void vg_desc_set(struct vring_desc *desc, uint64_t addr, uint32_t len,
			uint16_t flags, uint16_t next)
{
	desc->addr = htole64(addr);
	desc->len = htole32(len);
	desc->flags = htole16(flags);
	desc->next = htole16(next);
}

static void vg_log_packet(struct vguest *vg, bool from_guest,
			  const struct vsock_header *header)
{
	if (vg->opts.trace)
		fprintf(stderr,
			"vguest: %s %s src %" PRIu64 ":%u dst %" PRIu64
			":%u len %u type %u flags %u buf_alloc %u fwd_cnt %u\n",
			from_guest ? "TX" : "RX", vsock_op_name(header->op),
			header->src_cid, header->src_port, header->dst_cid,
			header->dst_port, header->len, header->type,
			header->flags, header->buf_alloc, header->fwd_cnt);
	if (header->op == VSOCK_OP_RW)
		return;
	if (vg_grow((void **)&vg->log, &vg->log_capacity, vg->log_count + 1,
		    sizeof(*vg->log)) != 0)
		return;
	vg->log[vg->log_count].from_guest = from_guest;
	vg->log[vg->log_count].header = *header;
	vg->log[vg->log_count].time_ns = vg_now_ns();
	vg->log_count++;
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
static void vg_queue_layout(struct vguest *vg, unsigned index)
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

/* ------------------------------------------------------------------ */
/* vhost-user messaging (frontend side) */

static int vg_remaining_ms(uint64_t deadline_ns)
{
	uint64_t now = vg_now_ns();
	if (now >= deadline_ns)
		return 0;
	return (int)((deadline_ns - now + 999999) / 1000000);
}

/* Write all of buffer (after a first sendmsg that carried the fds). */
static int vg_write_all(struct vguest *vg, const uint8_t *buffer, size_t length,
			uint64_t deadline_ns)
{
	size_t done = 0;
	while (done < length) {
		ssize_t n = send(vg->vhost_fd, buffer + done, length - done,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			done += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			struct pollfd pfd = { .fd = vg->vhost_fd, .events = POLLOUT };
			int ms = vg_remaining_ms(deadline_ns);
			if (ms == 0 || poll(&pfd, 1, ms) <= 0) {
				vg_set_error(vg, "vhost-user write timed out");
				return -1;
			}
			continue;
		}
		vg_set_error(vg, "vhost-user write: %s", strerror(errno));
		return -1;
	}
	return 0;
}

int vguest_vhost_send_raw(struct vguest *vg, uint32_t request, uint32_t flags,
			  uint32_t size_field, const void *payload,
			  size_t payload_len, const int *fds, size_t fd_count)
{
	struct vhost_user_header header = {
		.request = request, .flags = flags, .size = size_field,
	};
	uint8_t *message;
	size_t length = sizeof(header) + payload_len;
	struct iovec iov;
	struct msghdr msg = { 0 };
	union {
		char buffer[CMSG_SPACE(sizeof(int) * VHOST_USER_MAX_FDS)];
		struct cmsghdr align;
	} control;
	ssize_t n;
	int rc;

	if (vg->vhost_fd < 0) {
		vg_set_error(vg, "not connected");
		errno = ENOTCONN;
		return -1;
	}
	if (fd_count > VHOST_USER_MAX_FDS) {
		errno = EINVAL;
		return -1;
	}
	message = malloc(length);
	if (!message)
		return -1;
	memcpy(message, &header, sizeof(header));
	if (payload_len)
		memcpy(message + sizeof(header), payload, payload_len);

	iov.iov_base = message;
	iov.iov_len = length;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	if (fd_count > 0) {
		struct cmsghdr *cmsg;
		memset(&control, 0, sizeof(control));
		msg.msg_control = control.buffer;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * fd_count);
		cmsg = CMSG_FIRSTHDR(&msg);
		cmsg->cmsg_level = SOL_SOCKET;
		cmsg->cmsg_type = SCM_RIGHTS;
		cmsg->cmsg_len = CMSG_LEN(sizeof(int) * fd_count);
		memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * fd_count);
	}
	do {
		n = sendmsg(vg->vhost_fd, &msg, MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
		struct pollfd pfd = { .fd = vg->vhost_fd, .events = POLLOUT };
		if (poll(&pfd, 1, vg->opts.io_timeout_ms) > 0)
			n = sendmsg(vg->vhost_fd, &msg, MSG_NOSIGNAL);
	}
	if (n < 0) {
		vg_set_error(vg, "vhost-user sendmsg(request %u): %s", request,
			     strerror(errno));
		free(message);
		return -1;
	}
	rc = vg_write_all(vg, message + n, length - (size_t)n,
			  vg_now_ns() + (uint64_t)vg->opts.io_timeout_ms * 1000000ull);
	free(message);
	return rc;
}

static int vg_vu_send(struct vguest *vg, uint32_t request, uint32_t extra_flags,
		      const void *payload, uint32_t size, const int *fds,
		      size_t fd_count)
{
	return vguest_vhost_send_raw(vg, request, VHOST_USER_VERSION | extra_flags,
				     size, payload, size, fds, fd_count);
}

/* Read exactly length bytes from the vhost-user socket within deadline. */
static int vg_read_exact(struct vguest *vg, void *buffer, size_t length,
			 uint64_t deadline_ns)
{
	size_t done = 0;
	while (done < length) {
		ssize_t n = recv(vg->vhost_fd, (uint8_t *)buffer + done,
				 length - done, MSG_DONTWAIT);
		if (n > 0) {
			done += (size_t)n;
			continue;
		}
		if (n == 0) {
			vg_set_error(vg, "vhost-user: backend closed the connection");
			vg->backend_gone = true;
			return -1;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			struct pollfd pfd = { .fd = vg->vhost_fd, .events = POLLIN };
			int ms = vg_remaining_ms(deadline_ns);
			int ready;
			if (ms == 0) {
				vg_set_error(vg, "vhost-user: reply timed out");
				return -1;
			}
			ready = poll(&pfd, 1, ms);
			if (ready < 0 && errno != EINTR) {
				vg_set_error(vg, "poll: %s", strerror(errno));
				return -1;
			}
			continue;
		}
		vg_set_error(vg, "vhost-user read: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/* Receive the reply to request; its payload must be exactly size bytes. */
static int vg_vu_reply(struct vguest *vg, uint32_t request, void *payload,
		       uint32_t size)
{
	struct vhost_user_header header;
	uint64_t deadline = vg_now_ns() + (uint64_t)vg->opts.io_timeout_ms * 1000000ull;

	if (vg_read_exact(vg, &header, sizeof(header), deadline) != 0)
		return -1;
	if ((header.flags & VHOST_USER_VERSION_MASK) != VHOST_USER_VERSION ||
	    !(header.flags & VHOST_USER_FLAG_REPLY) || header.request != request) {
		vg_set_error(vg, "bad reply header to request %u: request %u flags %#x size %u",
			     request, header.request, header.flags, header.size);
		return -1;
	}
	if (header.size != size) {
		vg_set_error(vg, "reply to request %u has size %u, expected %u",
			     request, header.size, size);
		return -1;
	}
	return vg_read_exact(vg, payload, size, deadline);
}

static int vg_vu_get_u64(struct vguest *vg, uint32_t request, uint64_t *value)
{
	if (vg_vu_send(vg, request, 0, NULL, 0, NULL, 0) != 0)
		return -1;
	return vg_vu_reply(vg, request, value, sizeof(*value));
}

/* Send a u64 message; with need_ack wait for a zero REPLY_ACK. */
static int vg_vu_set_u64(struct vguest *vg, uint32_t request, uint64_t value,
			 const int *fds, size_t fd_count, bool need_ack)
{
	uint64_t ack = 0;
	if (vg_vu_send(vg, request, need_ack ? VHOST_USER_FLAG_NEED_REPLY : 0,
		       &value, sizeof(value), fds, fd_count) != 0)
		return -1;
	if (!need_ack)
		return 0;
	if (vg_vu_reply(vg, request, &ack, sizeof(ack)) != 0)
		return -1;
	if (ack != 0) {
		vg_set_error(vg, "request %u acked with failure %" PRIu64, request, ack);
		return -1;
	}
	return 0;
}

static int vg_vu_set_state(struct vguest *vg, uint32_t request, uint32_t index,
			   uint32_t num)
{
	struct vhost_user_vring_state state = { .index = index, .num = num };
	return vg_vu_send(vg, request, 0, &state, sizeof(state), NULL, 0);
}

static int vg_new_eventfd(struct vguest *vg)
{
	int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (fd < 0)
		vg_set_error(vg, "eventfd: %s", strerror(errno));
	return fd;
}

/*
 * Move the current call fd of q to the stale list (still polled). With
 * forward, later signals on it still count as interrupts: QEMU checks its
 * masked notifier when it unmasks, and a backend may act on a kick before it
 * has read a SET_VRING_CALL that is already queued; such signals are
 * counted in early_call_signals.
 */
static void vg_retire_call_fd(struct vg_queue *q, bool forward)
{
	if (q->call_fd < 0)
		return;
	if (q->stale_count == VG_MAX_STALE_FDS) {
		close(q->stale_fds[0]);
		memmove(q->stale_fds, q->stale_fds + 1,
			sizeof(int) * (VG_MAX_STALE_FDS - 1));
		memmove(q->stale_forward, q->stale_forward + 1,
			sizeof(bool) * (VG_MAX_STALE_FDS - 1));
		q->stale_count--;
	}
	q->stale_forward[q->stale_count] = forward;
	q->stale_fds[q->stale_count++] = q->call_fd;
	q->call_fd = -1;
}

/* SET_VRING_CALL with a fresh eventfd for queue index. */
static int vg_set_call(struct vguest *vg, unsigned index, bool need_ack)
{
	struct vg_queue *q = &vg->queues[index];
	int fd = vg_new_eventfd(vg);
	if (fd < 0)
		return -1;
	vg_retire_call_fd(q, !vg->connected);
	q->call_fd = fd;
	return vg_vu_set_u64(vg, VHOST_USER_SET_VRING_CALL, index, &fd, 1, need_ack);
}

static int vg_set_err(struct vguest *vg, unsigned index)
{
	struct vg_queue *q = &vg->queues[index];
	int fd = vg_new_eventfd(vg);
	if (fd < 0)
		return -1;
	vg_close_fd(&q->err_fd);
	q->err_fd = fd;
	return vg_vu_set_u64(vg, VHOST_USER_SET_VRING_ERR, index, &fd, 1, false);
}

static uint64_t vg_user_addr(struct vguest *vg, uint64_t gpa)
{
	return (uint64_t)(uintptr_t)vg->mem + gpa;
}

static void vg_kick(struct vguest *vg, unsigned index);
static void vg_rx_refill(struct vguest *vg);
static int vg_setup_start(struct vguest *vg);

/* Device init (QEMU vhost_dev_init + GET_CONFIG), then the driver start. */
static int vg_setup(struct vguest *vg)
{
	const uint64_t want_protocol = (1ull << VHOST_USER_PROTOCOL_F_MQ) |
				       (1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK) |
				       (1ull << VHOST_USER_PROTOCOL_F_CONFIG);
	uint64_t offered = 0, again = 0, protocol = 0, queue_num = 0;
	struct vhost_user_config config;

	/* --- vhost_dev_init --- */
	if (vg_vu_get_u64(vg, VHOST_USER_GET_FEATURES, &offered) != 0)
		return -1;
	vg->features_offered = offered;
	if (!(offered & (1ull << VIRTIO_FEATURE_VERSION_1)) ||
	    !(offered & (1ull << VHOST_USER_FEATURE_PROTOCOL_FEATURES))) {
		vg_set_error(vg, "backend features %#" PRIx64
			     " lack VERSION_1 or PROTOCOL_FEATURES", offered);
		return -1;
	}
	if (vg_vu_get_u64(vg, VHOST_USER_GET_PROTOCOL_FEATURES, &protocol) != 0)
		return -1;
	if (!(protocol & (1ull << VHOST_USER_PROTOCOL_F_CONFIG))) {
		vg_set_error(vg, "protocol features %#" PRIx64 " lack CONFIG", protocol);
		return -1;
	}
	vg->protocol_features = protocol & want_protocol;
	if (vg_vu_set_u64(vg, VHOST_USER_SET_PROTOCOL_FEATURES,
			  vg->protocol_features, NULL, 0, false) != 0)
		return -1;
	if (vg->protocol_features & (1ull << VHOST_USER_PROTOCOL_F_MQ)) {
		if (vg_vu_get_u64(vg, VHOST_USER_GET_QUEUE_NUM, &queue_num) != 0)
			return -1;
		if (queue_num < VGUEST_QUEUE_COUNT) {
			vg_set_error(vg, "GET_QUEUE_NUM answered %" PRIu64, queue_num);
			return -1;
		}
	}
	if (vg_vu_send(vg, VHOST_USER_SET_OWNER, 0, NULL, 0, NULL, 0) != 0)
		return -1;
	if (vg_vu_get_u64(vg, VHOST_USER_GET_FEATURES, &again) != 0)
		return -1;
	if (again != offered) {
		vg_set_error(vg, "GET_FEATURES changed: %#" PRIx64 " then %#" PRIx64,
			     offered, again);
		return -1;
	}
	for (unsigned i = 0; i < VGUEST_QUEUE_COUNT; i++) {
		if (vg_set_call(vg, i, false) != 0 || vg_set_err(vg, i) != 0)
			return -1;
	}
	memset(&config, 0, sizeof(config));
	config.offset = 0;
	config.size = 8;
	if (vg_vu_send(vg, VHOST_USER_GET_CONFIG, 0, &config,
		       VHOST_USER_CONFIG_HEADER_SIZE + 8, NULL, 0) != 0)
		return -1;
	if (vg_vu_reply(vg, VHOST_USER_GET_CONFIG, &config,
			VHOST_USER_CONFIG_HEADER_SIZE + 8) != 0)
		return -1;
	if (config.offset != 0 || config.size != 8) {
		vg_set_error(vg, "GET_CONFIG reply offset %u size %u",
			     config.offset, config.size);
		return -1;
	}
	memcpy(&vg->config_cid, config.region, sizeof(vg->config_cid));
	vg->config_cid = le64toh(vg->config_cid);
	if (vg->config_cid != vg->opts.guest_cid) {
		vg_set_error(vg, "config guest_cid %" PRIu64 ", expected %" PRIu64,
			     vg->config_cid, vg->opts.guest_cid);
		return -1;
	}

	return vg_setup_start(vg);
}

/* The driver starts (QEMU vhost_dev_start): features, memory, rings. */
static int vg_setup_start_at(struct vguest *vg, const uint16_t *bases);

static int vg_setup_start(struct vguest *vg)
{
	return vg_setup_start_at(vg, NULL);
}

/* The driver start; each queue restarts at bases[i] (NULL: ring_base). */
static int vg_setup_start_at(struct vguest *vg, const uint16_t *bases)
{
	uint64_t offered = vg->features_offered, want_features;

	for (unsigned i = 0; i < VGUEST_QUEUE_COUNT; i++)
		if (vg_set_call(vg, i, false) != 0)
			return -1;
	want_features = (1ull << VIRTIO_FEATURE_VERSION_1) |
			(1ull << VHOST_USER_FEATURE_PROTOCOL_FEATURES);
	if (vg->opts.want_event_idx)
		want_features |= 1ull << VIRTIO_FEATURE_RING_EVENT_IDX;
	if (vg->opts.want_indirect)
		want_features |= 1ull << VIRTIO_FEATURE_RING_INDIRECT_DESC;
	vg->features_acked = offered & want_features;
	vg->event_idx = vg->features_acked & (1ull << VIRTIO_FEATURE_RING_EVENT_IDX);
	vg->indirect = vg->features_acked & (1ull << VIRTIO_FEATURE_RING_INDIRECT_DESC);
	if (vg_vu_set_u64(vg, VHOST_USER_SET_FEATURES, vg->features_acked,
			  NULL, 0, false) != 0)
		return -1;

	if (vguest_resend_mem_table(vg) != 0)
		return -1;

	for (unsigned i = 0; i < VGUEST_QUEUE_COUNT; i++) {
		struct vg_queue *q = &vg->queues[i];
		struct vhost_user_vring_addr addr = {
			.index = i,
			.flags = 0,
			.desc_user_addr = vg_user_addr(vg, q->desc_gpa),
			.used_user_addr = vg_user_addr(vg, q->used_gpa),
			.avail_user_addr = vg_user_addr(vg, q->avail_gpa),
			.log_guest_addr = q->used_gpa,
		};
		int kick = vg_new_eventfd(vg);
		if (kick < 0)
			return -1;
		vg_close_fd(&q->kick_fd);
		q->kick_fd = kick;
		if (vg_vu_set_state(vg, VHOST_USER_SET_VRING_NUM, i, q->size) != 0 ||
		    vg_vu_set_state(vg, VHOST_USER_SET_VRING_BASE, i,
				    bases ? bases[i] : vg->opts.ring_base) != 0 ||
		    vg_vu_send(vg, VHOST_USER_SET_VRING_ADDR, 0, &addr, sizeof(addr),
			       NULL, 0) != 0 ||
		    vg_vu_set_u64(vg, VHOST_USER_SET_VRING_KICK, i, &kick, 1, false) != 0)
			return -1;
	}
	for (unsigned i = 0; i < VGUEST_QUEUE_COUNT; i++)
		if (vg_vu_set_state(vg, VHOST_USER_SET_VRING_ENABLE, i, 1) != 0)
			return -1;
	/* QEMU 7.2 unmasks the guest notifiers on the live rings. */
	for (unsigned i = 0; i < VGUEST_QUEUE_COUNT; i++)
		if (vg_set_call(vg, i, false) != 0)
			return -1;
	/* A signal on the masked notifier is forwarded at unmask (QEMU). */
	for (unsigned i = 0; i < VGUEST_QUEUE_COUNT; i++) {
		struct vg_queue *q = &vg->queues[i];
		for (size_t s = 0; s < q->stale_count; s++) {
			uint64_t value;
			if (read(q->stale_fds[s], &value, sizeof(value)) == sizeof(value))
				q->interrupt_pending = true;
		}
	}
	return 0;
}

int vguest_connect(struct vguest *vg, const char *socket_path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int fd;

	if (vg->vhost_fd >= 0 || vg->connected) {
		vg_set_error(vg, "already connected");
		errno = EISCONN;
		return -1;
	}
	if (strlen(socket_path) >= sizeof(addr.sun_path)) {
		vg_set_error(vg, "socket path too long");
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(addr.sun_path, socket_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		vg_set_error(vg, "socket: %s", strerror(errno));
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
		vg_set_error(vg, "connect %s: %s", socket_path, strerror(errno));
		close(fd);
		return -1;
	}
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
		vg_set_error(vg, "fcntl: %s", strerror(errno));
		close(fd);
		return -1;
	}
	vg->vhost_fd = fd;
	vg->backend_gone = false;
	if (vg_setup(vg) != 0) {
		char saved[sizeof(vg->error)];
		memcpy(saved, vg->error, sizeof(saved));
		vguest_disconnect(vg);
		memcpy(vg->error, saved, sizeof(saved));
		return -1;
	}
	vg->connected = true;
	vg_rx_refill(vg);
	vg_kick(vg, VGUEST_QUEUE_RX);
	return 0;
}

static void vg_sock_set_closed(struct vguest_sock *sock)
{
	if (sock->state != VGUEST_SOCK_CLOSED) {
		sock->state = VGUEST_SOCK_CLOSED;
		sock->closed_ns = vg_now_ns();
	}
}

void vguest_disconnect(struct vguest *vg)
{
	vg_close_fd(&vg->vhost_fd);
	for (unsigned i = 0; i < VGUEST_QUEUE_COUNT; i++) {
		struct vg_queue *q = &vg->queues[i];
		vg_close_fd(&q->kick_fd);
		vg_close_fd(&q->call_fd);
		vg_close_fd(&q->err_fd);
		for (size_t s = 0; s < q->stale_count; s++)
			close(q->stale_fds[s]);
		q->stale_count = 0;
	}
	if (vg->connected)
		for (struct vguest_sock *s = vg->socks; s; s = s->next)
			vg_sock_set_closed(s);
	vg->connected = false;
	vg->pending_count = 0;
	vg->pending_head = 0;
}

static void vg_sock_set_closed(struct vguest_sock *sock);

int vguest_reset_device(struct vguest *vg, uint32_t bases[VGUEST_QUEUE_COUNT])
{
	if (!vg->connected || vg->vhost_fd < 0) {
		vg_set_error(vg, "not connected");
		errno = ENOTCONN;
		return -1;
	}
	/* vhost_dev_stop: disable the rings, then fetch their bases */
	for (unsigned i = 0; i < VGUEST_QUEUE_COUNT; i++)
		if (vg_vu_set_state(vg, VHOST_USER_SET_VRING_ENABLE, i, 0) != 0)
			return -1;
	for (unsigned i = 0; i < VGUEST_QUEUE_COUNT; i++) {
		struct vhost_user_vring_state state = { .index = i, .num = 0 };
		if (vg_vu_send(vg, VHOST_USER_GET_VRING_BASE, 0, &state, sizeof(state),
			       NULL, 0) != 0 ||
		    vg_vu_reply(vg, VHOST_USER_GET_VRING_BASE, &state, sizeof(state)) != 0)
			return -1;
		if (state.index != i) {
			vg_set_error(vg, "GET_VRING_BASE(%u) answered index %u", i, state.index);
			return -1;
		}
		if (bases)
			bases[i] = state.num;
	}
	/* the guest driver is gone: its sockets and buffers with it */
	for (struct vguest_sock *s = vg->socks; s; s = s->next)
		vg_sock_set_closed(s);
	vg->pending_count = 0;
	vg->pending_head = 0;
	vg->connected = false;
	for (unsigned i = 0; i < VGUEST_QUEUE_COUNT; i++) {
		struct vg_queue *q = &vg->queues[i];
		int call = q->call_fd, err = q->err_fd;
		int stale[VG_MAX_STALE_FDS];
		bool forward[VG_MAX_STALE_FDS];
		size_t stale_count = q->stale_count;
		memcpy(stale, q->stale_fds, sizeof(stale));
		memcpy(forward, q->stale_forward, sizeof(forward));
		vg_close_fd(&q->kick_fd);
		vg_queue_layout(vg, i);
		q->call_fd = call;
		q->err_fd = err;
		memcpy(q->stale_fds, stale, sizeof(stale));
		memcpy(q->stale_forward, forward, sizeof(forward));
		q->stale_count = stale_count;
	}
	vg->tx_free_slot_count = 0;
	for (unsigned i = 0; i < vg->tx_slot_count; i++)
		vg->tx_free_slots[vg->tx_free_slot_count++] = (int)(vg->tx_slot_count - 1 - i);
	/* the driver comes back: vhost_dev_start again */
	if (vg_setup_start(vg) != 0)
		return -1;
	vg->connected = true;
	vg_rx_refill(vg);
	vg_kick(vg, VGUEST_QUEUE_RX);
	return 0;
}

int vguest_stop_cont(struct vguest *vg, uint32_t bases[VGUEST_QUEUE_COUNT])
{
	uint16_t restart[VGUEST_QUEUE_COUNT];

	if (!vg->connected || vg->vhost_fd < 0) {
		vg_set_error(vg, "not connected");
		errno = ENOTCONN;
		return -1;
	}
	/* vhost_dev_stop: the backend hands the rings back */
	for (unsigned i = 0; i < VGUEST_QUEUE_COUNT; i++) {
		struct vhost_user_vring_state state = { .index = i, .num = 0 };
		if (vg_vu_send(vg, VHOST_USER_GET_VRING_BASE, 0, &state, sizeof(state),
			       NULL, 0) != 0 ||
		    vg_vu_reply(vg, VHOST_USER_GET_VRING_BASE, &state, sizeof(state)) != 0)
			return -1;
		if (state.index != i || state.num > UINT16_MAX) {
			vg_set_error(vg, "GET_VRING_BASE(%u) answered %u/%u", i,
				     state.index, state.num);
			return -1;
		}
		restart[i] = (uint16_t)state.num;
		if (bases)
			bases[i] = state.num;
	}
	/* vhost_dev_start on the same rings, where they stopped */
	if (vg_setup_start_at(vg, restart) != 0)
		return -1;
	vg_rx_refill(vg);
	vg_kick(vg, VGUEST_QUEUE_RX);
	vg_kick(vg, VGUEST_QUEUE_TX);
	return 0;
}

int vguest_resend_mem_table(struct vguest *vg)
{
	bool reply_ack = vg->protocol_features & (1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK);
	struct vhost_user_memory memory;

	memset(&memory, 0, sizeof(memory));
	memory.nregions = 1;
	memory.regions[0].guest_phys_addr = 0;
	memory.regions[0].memory_size = vg->mem_size;
	memory.regions[0].user_addr = vg_user_addr(vg, 0);
	memory.regions[0].mmap_offset = 0;
	if (vg_vu_send(vg, VHOST_USER_SET_MEM_TABLE,
		       reply_ack ? VHOST_USER_FLAG_NEED_REPLY : 0, &memory,
		       8 + sizeof(struct vhost_user_memory_region), &vg->mem_fd, 1) != 0)
		return -1;
	if (reply_ack) {
		uint64_t ack = 1;
		if (vg_vu_reply(vg, VHOST_USER_SET_MEM_TABLE, &ack, sizeof(ack)) != 0)
			return -1;
		if (ack != 0) {
			vg_set_error(vg, "SET_MEM_TABLE acked with %" PRIu64, ack);
			return -1;
		}
	}
	return 0;
}

int vguest_memory_fd(const struct vguest *vg)
{
	return vg->mem_fd;
}

int vguest_swap_call_fds(struct vguest *vg)
{
	bool ack = vg->protocol_features & (1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK);
	for (unsigned i = 0; i < VGUEST_QUEUE_COUNT; i++) {
		struct vg_queue *q = &vg->queues[i];
		uint64_t value;
		if (vg_set_call(vg, i, ack) != 0)
			return -1;
		/* Signals that reached the just-retired fd before the backend
		 * switched are real interrupts. */
		if (q->stale_count > 0 &&
		    read(q->stale_fds[q->stale_count - 1], &value, sizeof(value)) ==
		    sizeof(value))
			q->interrupt_pending = true;
		if (q->stale_count > 0 && !ack)
			q->stale_forward[q->stale_count - 1] = true;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* virtqueue driver side */

static int vg_alloc_descs(struct vg_queue *q, unsigned count, uint16_t *out)
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
static void vg_publish(struct vg_queue *q, const uint16_t *descs,
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
static uint16_t *vg_avail_event(const struct vg_queue *q)
{
	return (uint16_t *)((uint8_t *)q->used + 4 + 8u * q->size);
}

/* Notify the device of new avail entries unless it asked us not to. */
static void vg_kick(struct vguest *vg, unsigned index)
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
static void vg_rx_refill(struct vguest *vg)
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
static int vg_tx_take_slot(struct vguest *vg)
{
	if (vg->tx_free_slot_count == 0)
		return -1;
	return vg->tx_free_slots[--vg->tx_free_slot_count];
}

static uint64_t vg_slot_gpa(const struct vguest *vg, int slot)
{
	return vg->tx_area + (uint64_t)slot * VG_TX_SLOT_SIZE;
}

static uint32_t vg_new_token(struct vguest *vg)
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
static int vg_tx_post(struct vguest *vg, const uint8_t wire[VSOCK_HEADER_SIZE],
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

/* ------------------------------------------------------------------ */
/* sockets: lookup, control packets */

static struct vguest_sock *vg_find_sock(struct vguest *vg, uint32_t local_port,
					uint32_t peer_port)
{
	for (struct vguest_sock *s = vg->socks; s; s = s->next)
		if (s->state != VGUEST_SOCK_LISTEN && s->state != VGUEST_SOCK_CLOSED &&
		    s->local_port == local_port && s->peer_port == peer_port)
			return s;
	return NULL;
}

static struct vguest_sock *vg_find_listener(struct vguest *vg, uint32_t port)
{
	for (struct vguest_sock *s = vg->socks; s; s = s->next)
		if (s->state == VGUEST_SOCK_LISTEN && s->local_port == port)
			return s;
	return NULL;
}

static bool vg_local_port_busy(struct vguest *vg, uint32_t port)
{
	for (struct vguest_sock *s = vg->socks; s; s = s->next)
		if (s->state != VGUEST_SOCK_CLOSED && s->local_port == port)
			return true;
	return false;
}

static struct vguest_sock *vg_sock_new(struct vguest *vg,
				       enum vguest_sock_state state,
				       uint32_t local_port, uint32_t peer_port)
{
	struct vguest_sock *sock = calloc(1, sizeof(*sock));
	if (!sock)
		return NULL;
	sock->vg = vg;
	sock->state = state;
	sock->local_port = local_port;
	sock->peer_port = peer_port;
	sock->buf_alloc = vg->opts.buf_alloc;
	sock->next = vg->socks;
	vg->socks = sock;
	return sock;
}

/* Build and post a header-only packet; -1/EAGAIN if the ring is full. */
static int vg_post_ctl(struct vguest *vg, const struct vg_pending_ctl *ctl)
{
	struct vguest_sock *sock = vg_find_sock(vg, ctl->local_port, ctl->peer_port);
	struct vsock_header header = {
		.src_cid = vg->opts.guest_cid,
		.dst_cid = VSOCK_HOST_CID,
		.src_port = ctl->local_port,
		.dst_port = ctl->peer_port,
		.len = 0,
		.type = VSOCK_TYPE_STREAM,
		.op = ctl->op,
		.flags = ctl->flags,
		.buf_alloc = sock ? sock->buf_alloc : vg->opts.buf_alloc,
		.fwd_cnt = sock ? sock->fwd_cnt : 0,
	};
	uint8_t wire[VSOCK_HEADER_SIZE];

	if (!sock && ctl->op == VSOCK_OP_REQUEST) {
		/* a CONNECTING socket is found above; REQUEST always has one */
		errno = ENOTCONN;
		return -1;
	}
	vsock_header_encode(&header, wire);
	if (vg_tx_post(vg, wire, NULL, 0, 0) != 0)
		return -1;
	if (sock) {
		sock->last_fwd_cnt_sent = sock->fwd_cnt;
		sock->op_tx[vg_op_slot(ctl->op)]++;
	}
	vg->stats.tx_packets[vg_op_slot(ctl->op)]++;
	vg_log_packet(vg, true, &header);
	return 0;
}

/* Post queued control packets in order while the ring has room. */
static void vg_flush_pending(struct vguest *vg)
{
	while (vg->pending_count > 0) {
		struct vg_pending_ctl *ctl = &vg->pending[vg->pending_head];
		if (vg_post_ctl(vg, ctl) != 0) {
			if (errno == EAGAIN)
				return;
			/* socket gone: drop it */
		}
		vg->pending_head = (vg->pending_head + 1) % vg->pending_capacity;
		vg->pending_count--;
	}
	vg->pending_head = 0;
}

static int vg_pending_push(struct vguest *vg, const struct vg_pending_ctl *ctl)
{
	if (vg->pending_count == vg->pending_capacity) {
		/* linearise the ring, then grow */
		size_t capacity = vg->pending_capacity ? vg->pending_capacity * 2 : 64;
		struct vg_pending_ctl *grown = malloc(capacity * sizeof(*grown));
		if (!grown)
			return -1;
		for (size_t i = 0; i < vg->pending_count; i++)
			grown[i] = vg->pending[(vg->pending_head + i) % vg->pending_capacity];
		free(vg->pending);
		vg->pending = grown;
		vg->pending_capacity = capacity;
		vg->pending_head = 0;
	}
	vg->pending[(vg->pending_head + vg->pending_count) % vg->pending_capacity] = *ctl;
	vg->pending_count++;
	return 0;
}

/* Send a control packet now, or queue it behind earlier ones. */
static int vg_send_ctl(struct vguest *vg, uint32_t local_port,
		       uint32_t peer_port, uint16_t op, uint32_t flags)
{
	struct vg_pending_ctl ctl = {
		.local_port = local_port, .peer_port = peer_port,
		.op = op, .flags = flags,
	};
	if (vg->pending_count == 0) {
		if (vg_post_ctl(vg, &ctl) == 0)
			return 0;
		if (errno != EAGAIN)
			return -1;
	}
	if (op == VSOCK_OP_CREDIT_UPDATE) {
		for (size_t i = 0; i < vg->pending_count; i++) {
			const struct vg_pending_ctl *p =
				&vg->pending[(vg->pending_head + i) % vg->pending_capacity];
			if (p->op == op && p->local_port == local_port &&
			    p->peer_port == peer_port)
				return 0;
		}
	}
	return vg_pending_push(vg, &ctl);
}

/* Reply RST to a packet (ports as in the packet we got). Never to an RST. */
static void vg_reply_rst(struct vguest *vg, const struct vsock_header *header)
{
	if (header->op == VSOCK_OP_RST)
		return;
	(void)vg_send_ctl(vg, header->dst_port, header->src_port, VSOCK_OP_RST, 0);
}

/* ------------------------------------------------------------------ */
/* receive path */

static size_t vg_sock_rx_len(const struct vguest_sock *sock)
{
	return sock->rx_tail - sock->rx_head;
}

static int vg_sock_rx_reserve(struct vguest_sock *sock, size_t extra)
{
	size_t used = vg_sock_rx_len(sock);
	if (sock->rx_tail + extra <= sock->rx_capacity)
		return 0;
	if (sock->rx_head > 0) {
		memmove(sock->rx_data, sock->rx_data + sock->rx_head, used);
		sock->rx_head = 0;
		sock->rx_tail = used;
	}
	if (used + extra > sock->rx_capacity) {
		size_t capacity = sock->rx_capacity ? sock->rx_capacity : 4096;
		uint8_t *grown;
		while (capacity < used + extra)
			capacity *= 2;
		grown = realloc(sock->rx_data, capacity);
		if (!grown)
			return -1;
		sock->rx_data = grown;
		sock->rx_capacity = capacity;
	}
	return 0;
}

/* Take credit fields from any header of the peer. */
static void vg_update_peer_credit(struct vguest *vg, struct vguest_sock *sock,
				  const struct vsock_header *header)
{
	uint32_t in_flight = sock->tx_cnt - header->fwd_cnt;
	if (sock->peer_credit_known &&
	    (int32_t)(header->fwd_cnt - sock->peer_fwd_cnt) < 0)
		vg_protocol_error(vg, "port %u<-%u: %s: peer fwd_cnt went back %u -> %u",
				  sock->local_port, sock->peer_port,
				  vsock_op_name(header->op), sock->peer_fwd_cnt,
				  header->fwd_cnt);
	if ((int32_t)in_flight < 0 && !sock->raw_traffic)
		vg_protocol_error(vg, "port %u<-%u: %s: peer fwd_cnt %u ahead of tx_cnt %u",
				  sock->local_port, sock->peer_port,
				  vsock_op_name(header->op), header->fwd_cnt, sock->tx_cnt);
	sock->peer_buf_alloc = header->buf_alloc;
	sock->peer_fwd_cnt = header->fwd_cnt;
	sock->peer_credit_known = true;
}

static void vg_handle_request(struct vguest *vg, const struct vsock_header *header)
{
	struct vguest_sock *listener = vg_find_listener(vg, header->dst_port);
	struct vguest_sock *sock;

	if (header->type != VSOCK_TYPE_STREAM) {
		vg_protocol_error(vg, "REQUEST with type %u", header->type);
		vg_reply_rst(vg, header);
		return;
	}
	if (!listener) {
		vg->stats.unknown_socket_packets++;
		vg_reply_rst(vg, header);
		return;
	}
	if (listener->listen_mode == VGUEST_LISTEN_IGNORE)
		return;
	if (listener->listen_mode == VGUEST_LISTEN_REFUSE) {
		vg_reply_rst(vg, header);
		return;
	}
	sock = vg_sock_new(vg, VGUEST_SOCK_CONNECTED, header->dst_port, header->src_port);
	if (!sock) {
		vg_reply_rst(vg, header);
		return;
	}
	sock->listener = listener;
	sock->op_rx[VSOCK_OP_REQUEST]++;
	sock->established_ns = vg_now_ns();
	vg_update_peer_credit(vg, sock, header);
	if (listener->accept_tail)
		listener->accept_tail->accept_next = sock;
	else
		listener->accept_head = sock;
	listener->accept_tail = sock;
	(void)vg_send_ctl(vg, sock->local_port, sock->peer_port, VSOCK_OP_RESPONSE, 0);
}

static void vg_handle_rw(struct vguest *vg, struct vguest_sock *sock,
			 const struct vsock_header *header,
			 const struct iovec *iov, size_t iov_count)
{
	uint32_t after;

	if (sock->state != VGUEST_SOCK_CONNECTED) {
		if (sock->state == VGUEST_SOCK_CLOSING) {
			sock->data_after_close = true;
			return;
		}
		vg_protocol_error(vg, "port %u: RW in state %s", sock->local_port,
				  vguest_sock_state_name(sock->state));
		return;
	}
	if (sock->peer_shutdown & VSOCK_SHUTDOWN_SEND)
		vg_protocol_error(vg, "port %u: RW after peer SHUTDOWN(SEND)",
				  sock->local_port);
	if (header->len == 0) {
		vg_protocol_error(vg, "port %u: empty RW packet", sock->local_port);
		return;
	}
	after = sock->rx_cnt + header->len;
	if ((uint32_t)(after - sock->last_fwd_cnt_sent) > sock->buf_alloc) {
		sock->credit_violations++;
		vg->stats.credit_violations++;
		vg_protocol_error(vg, "port %u: credit violated: %u bytes unread-or-"
				  "unadvertised, buf_alloc %u", sock->local_port,
				  after - sock->last_fwd_cnt_sent, sock->buf_alloc);
	}
	if (vg_sock_rx_reserve(sock, header->len) != 0) {
		vg_protocol_error(vg, "out of memory queueing RX data");
		return;
	}
	iov_copy_out(iov, iov_count, VSOCK_HEADER_SIZE,
		     sock->rx_data + sock->rx_tail, header->len);
	sock->rx_tail += header->len;
	sock->rx_cnt = after;
	sock->rx_bytes += header->len;
	vg->stats.rx_payload_bytes += header->len;
}

static void vg_handle_shutdown(struct vguest *vg, struct vguest_sock *sock,
			       const struct vsock_header *header)
{
	if (header->flags & ~(uint32_t)VSOCK_SHUTDOWN_BOTH)
		vg_protocol_error(vg, "port %u: SHUTDOWN flags %#x",
				  sock->local_port, header->flags);
	sock->peer_shutdown |= header->flags & VSOCK_SHUTDOWN_BOTH;
	/* Linux: peer shut both ways and nothing left to read -> RST. */
	if (sock->peer_shutdown == VSOCK_SHUTDOWN_BOTH &&
	    sock->state == VGUEST_SOCK_CONNECTED && vg_sock_rx_len(sock) == 0) {
		(void)vg_send_ctl(vg, sock->local_port, sock->peer_port, VSOCK_OP_RST, 0);
		sock->reset_sent = true;
		vg_sock_set_closed(sock);
	}
}

/* One packet from the daemon; payload is at offset 44 of iov. */
static void vg_rx_packet(struct vguest *vg, const struct vsock_header *header,
			 const struct iovec *iov, size_t iov_count)
{
	struct vguest_sock *sock;

	vg->stats.rx_packets[vg_op_slot(header->op)]++;
	vg_log_packet(vg, false, header);
	if (header->src_cid != VSOCK_HOST_CID || header->dst_cid != vg->opts.guest_cid) {
		vg_protocol_error(vg, "%s with src_cid %" PRIu64 " dst_cid %" PRIu64,
				  vsock_op_name(header->op), header->src_cid,
				  header->dst_cid);
		return;
	}
	if (header->op != VSOCK_OP_RW && header->len != 0) {
		vg_protocol_error(vg, "%s with len %u", vsock_op_name(header->op),
				  header->len);
		return;
	}
	if (header->type != VSOCK_TYPE_STREAM) {
		vg_protocol_error(vg, "%s with type %u", vsock_op_name(header->op),
				  header->type);
		return;
	}
	sock = vg_find_sock(vg, header->dst_port, header->src_port);
	if (header->op == VSOCK_OP_REQUEST) {
		if (sock) {
			vg_protocol_error(vg, "REQUEST for existing connection %u<-%u",
					  header->dst_port, header->src_port);
			return;
		}
		vg_handle_request(vg, header);
		return;
	}
	if (!sock) {
		vg->stats.unknown_socket_packets++;
		vg_reply_rst(vg, header);
		return;
	}
	sock->op_rx[vg_op_slot(header->op)]++;
	/* An RST ends the socket; its credit fields carry nothing (Linux's
	 * own no-socket RST has them zero). */
	if (header->op != VSOCK_OP_RST)
		vg_update_peer_credit(vg, sock, header);
	switch (header->op) {
	case VSOCK_OP_RESPONSE:
		if (sock->state != VGUEST_SOCK_CONNECTING) {
			vg_protocol_error(vg, "port %u: RESPONSE in state %s",
					  sock->local_port,
					  vguest_sock_state_name(sock->state));
			vg_reply_rst(vg, header);
			sock->reset_sent = true;
			vg_sock_set_closed(sock);
			return;
		}
		sock->state = VGUEST_SOCK_CONNECTED;
		sock->established_ns = vg_now_ns();
		break;
	case VSOCK_OP_RST:
		sock->reset_received = true;
		if (sock->state == VGUEST_SOCK_CONNECTING)
			sock->refused = true;
		vg_sock_set_closed(sock);
		break;
	case VSOCK_OP_SHUTDOWN:
		vg_handle_shutdown(vg, sock, header);
		break;
	case VSOCK_OP_RW:
		vg_handle_rw(vg, sock, header, iov, iov_count);
		break;
	case VSOCK_OP_CREDIT_UPDATE:
		break;
	case VSOCK_OP_CREDIT_REQUEST:
		(void)vg_send_ctl(vg, sock->local_port, sock->peer_port,
				  VSOCK_OP_CREDIT_UPDATE, 0);
		break;
	default:
		vg_protocol_error(vg, "unknown op %u", header->op);
		break;
	}
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

/* ------------------------------------------------------------------ */
/* socket API */

const char *vguest_sock_state_name(enum vguest_sock_state state)
{
	switch (state) {
	case VGUEST_SOCK_LISTEN: return "LISTEN";
	case VGUEST_SOCK_CONNECTING: return "CONNECTING";
	case VGUEST_SOCK_CONNECTED: return "CONNECTED";
	case VGUEST_SOCK_CLOSING: return "CLOSING";
	case VGUEST_SOCK_CLOSED: return "CLOSED";
	}
	return "state?";
}

struct vguest_sock *vguest_listen(struct vguest *vg, uint32_t port)
{
	if (vg_find_listener(vg, port)) {
		errno = EADDRINUSE;
		return NULL;
	}
	return vg_sock_new(vg, VGUEST_SOCK_LISTEN, port, 0);
}

void vguest_listen_set_mode(struct vguest_sock *listener,
			    enum vguest_listen_mode mode)
{
	listener->listen_mode = mode;
}

struct vguest_sock *vguest_accept(struct vguest_sock *listener)
{
	struct vguest_sock *sock = listener->accept_head;
	if (!sock)
		return NULL;
	listener->accept_head = sock->accept_next;
	if (!listener->accept_head)
		listener->accept_tail = NULL;
	sock->accept_next = NULL;
	return sock;
}

struct vguest_sock *vguest_connect_port_from(struct vguest *vg,
					     uint32_t local_port,
					     uint32_t peer_port)
{
	struct vguest_sock *sock;
	if (!vg->connected || vg->backend_gone) {
		errno = ENOTCONN;
		return NULL;
	}
	if (vg_find_sock(vg, local_port, peer_port)) {
		errno = EADDRINUSE;
		return NULL;
	}
	sock = vg_sock_new(vg, VGUEST_SOCK_CONNECTING, local_port, peer_port);
	if (!sock)
		return NULL;
	sock->connect_started_ns = vg_now_ns();
	if (vg_send_ctl(vg, local_port, peer_port, VSOCK_OP_REQUEST, 0) != 0) {
		vguest_sock_release(sock);
		return NULL;
	}
	vg_kick(vg, VGUEST_QUEUE_TX);
	return sock;
}

struct vguest_sock *vguest_connect_port(struct vguest *vg, uint32_t peer_port)
{
	uint32_t port;
	do {
		port = vg->next_local_port++;
		if (vg->next_local_port < 1024)
			vg->next_local_port = 1024;
	} while (vg_local_port_busy(vg, port));
	return vguest_connect_port_from(vg, port, peer_port);
}

uint32_t vguest_sock_credit(const struct vguest_sock *sock)
{
	uint32_t in_flight = sock->tx_cnt - sock->peer_fwd_cnt;
	if (!sock->peer_credit_known || in_flight > sock->peer_buf_alloc)
		return 0;   /* also when the peer's fwd_cnt is ahead (raw traffic) */
	return sock->peer_buf_alloc - in_flight;
}

ssize_t vguest_send(struct vguest_sock *sock, const void *data, size_t len)
{
	struct vguest *vg = sock->vg;
	size_t sent = 0;

	if (sock->state == VGUEST_SOCK_CLOSED) {
		errno = (sock->reset_received || sock->reset_sent) ? ECONNRESET : ENOTCONN;
		return -1;
	}
	if (sock->state != VGUEST_SOCK_CONNECTED) {
		errno = ENOTCONN;
		return -1;
	}
	if ((sock->local_shutdown & VSOCK_SHUTDOWN_SEND) ||
	    (sock->peer_shutdown & VSOCK_SHUTDOWN_RCV)) {
		errno = EPIPE;
		return -1;
	}
	vg_flush_pending(vg);
	while (sent < len && vg->pending_count == 0) {
		uint32_t credit = vguest_sock_credit(sock);
		size_t chunk = len - sent;
		struct vsock_header header;
		uint8_t wire[VSOCK_HEADER_SIZE];

		if (chunk > vg->opts.tx_max_payload)
			chunk = vg->opts.tx_max_payload;
		if (chunk > credit)
			chunk = credit;
		if (chunk == 0)
			break;
		header = (struct vsock_header){
			.src_cid = vg->opts.guest_cid,
			.dst_cid = VSOCK_HOST_CID,
			.src_port = sock->local_port,
			.dst_port = sock->peer_port,
			.len = (uint32_t)chunk,
			.type = VSOCK_TYPE_STREAM,
			.op = VSOCK_OP_RW,
			.flags = 0,
			.buf_alloc = sock->buf_alloc,
			.fwd_cnt = sock->fwd_cnt,
		};
		vsock_header_encode(&header, wire);
		if (vg_tx_post(vg, wire, (const uint8_t *)data + sent, chunk, 0) != 0)
			break;
		sock->last_fwd_cnt_sent = sock->fwd_cnt;
		sock->tx_cnt += (uint32_t)chunk;
		sock->tx_bytes += chunk;
		sock->op_tx[VSOCK_OP_RW]++;
		vg->stats.tx_packets[VSOCK_OP_RW]++;
		vg->stats.tx_payload_bytes += chunk;
		if (vg->opts.trace)
			vg_log_packet(vg, true, &header);
		sent += chunk;
	}
	vg_kick(vg, VGUEST_QUEUE_TX);
	if (sent == 0 && len > 0) {
		errno = EAGAIN;
		return -1;
	}
	return (ssize_t)sent;
}

size_t vguest_rx_pending(const struct vguest_sock *sock)
{
	return vg_sock_rx_len(sock);
}

bool vguest_sock_eof(const struct vguest_sock *sock)
{
	if (vg_sock_rx_len(sock) > 0)
		return false;
	return (sock->peer_shutdown & VSOCK_SHUTDOWN_SEND) ||
	       (sock->state == VGUEST_SOCK_CLOSED && !sock->reset_received);
}

ssize_t vguest_recv(struct vguest_sock *sock, void *buffer, size_t len)
{
	struct vguest *vg = sock->vg;
	size_t available = vg_sock_rx_len(sock);
	size_t take = len < available ? len : available;

	if (take == 0) {
		if (len == 0)
			return 0;
		if (vguest_sock_eof(sock))
			return 0;
		errno = sock->reset_received ? ECONNRESET : EAGAIN;
		return -1;
	}
	memcpy(buffer, sock->rx_data + sock->rx_head, take);
	sock->rx_head += take;
	if (sock->rx_head == sock->rx_tail)
		sock->rx_head = sock->rx_tail = 0;
	sock->fwd_cnt += (uint32_t)take;
	/* Linux 6.1 virtio_transport_stream_do_dequeue */
	if (sock->state == VGUEST_SOCK_CONNECTED &&
	    sock->buf_alloc - (sock->fwd_cnt - sock->last_fwd_cnt_sent) <
	    VGUEST_MAX_TX_PAYLOAD) {
		(void)vg_send_ctl(vg, sock->local_port, sock->peer_port,
				  VSOCK_OP_CREDIT_UPDATE, 0);
		vg_kick(vg, VGUEST_QUEUE_TX);
	}
	return (ssize_t)take;
}

int vguest_shutdown(struct vguest_sock *sock, uint32_t flags)
{
	struct vguest *vg = sock->vg;
	flags &= VSOCK_SHUTDOWN_BOTH;
	if (sock->state != VGUEST_SOCK_CONNECTED) {
		errno = ENOTCONN;
		return -1;
	}
	sock->local_shutdown |= flags;
	if (vg_send_ctl(vg, sock->local_port, sock->peer_port, VSOCK_OP_SHUTDOWN, flags) != 0)
		return -1;
	vg_kick(vg, VGUEST_QUEUE_TX);
	return 0;
}

int vguest_close(struct vguest_sock *sock)
{
	struct vguest *vg = sock->vg;
	switch (sock->state) {
	case VGUEST_SOCK_LISTEN: {
		struct vguest_sock *pending;
		while ((pending = vguest_accept(sock)) != NULL)
			(void)vguest_reset(pending);
		vg_sock_set_closed(sock);
		return 0;
	}
	case VGUEST_SOCK_CONNECTING:
		/* Linux drops a connecting socket without a packet. */
		vg_sock_set_closed(sock);
		return 0;
	case VGUEST_SOCK_CONNECTED:
		sock->local_shutdown = VSOCK_SHUTDOWN_BOTH;
		sock->state = VGUEST_SOCK_CLOSING;
		if (vg_send_ctl(vg, sock->local_port, sock->peer_port, VSOCK_OP_SHUTDOWN,
				VSOCK_SHUTDOWN_BOTH) != 0)
			return -1;
		vg_kick(vg, VGUEST_QUEUE_TX);
		return 0;
	case VGUEST_SOCK_CLOSING:
	case VGUEST_SOCK_CLOSED:
		return 0;
	}
	return 0;
}

int vguest_reset(struct vguest_sock *sock)
{
	struct vguest *vg = sock->vg;
	int rc = 0;
	if (sock->state == VGUEST_SOCK_CONNECTED || sock->state == VGUEST_SOCK_CLOSING ||
	    sock->state == VGUEST_SOCK_CONNECTING) {
		rc = vg_send_ctl(vg, sock->local_port, sock->peer_port, VSOCK_OP_RST, 0);
		sock->reset_sent = true;
		vg_kick(vg, VGUEST_QUEUE_TX);
	}
	vg_sock_set_closed(sock);
	return rc;
}

void vguest_sock_release(struct vguest_sock *sock)
{
	struct vguest *vg = sock->vg;
	struct vguest_sock **link;
	/* Take it out of its listener's accept queue, if still there. */
	if (sock->listener) {
		struct vguest_sock **a = &sock->listener->accept_head;
		struct vguest_sock *prev = NULL;
		while (*a && *a != sock) {
			prev = *a;
			a = &(*a)->accept_next;
		}
		if (*a) {
			*a = sock->accept_next;
			if (sock->listener->accept_tail == sock)
				sock->listener->accept_tail = prev;
		}
	}
	/* Accepted sockets outlive their listener: unhook them. */
	for (struct vguest_sock *s = vg->socks; s; s = s->next)
		if (s->listener == sock)
			s->listener = NULL;
	for (link = &vg->socks; *link; link = &(*link)->next) {
		if (*link == sock) {
			*link = sock->next;
			break;
		}
	}
	free(sock->rx_data);
	free(sock);
}

/* ------------------------------------------------------------------ */
/* packet log queries */

static bool vg_record_matches(const struct vguest_packet_record *r,
			      bool from_guest, uint16_t op,
			      uint32_t local_port, uint32_t peer_port)
{
	uint32_t local = from_guest ? r->header.src_port : r->header.dst_port;
	uint32_t peer = from_guest ? r->header.dst_port : r->header.src_port;
	return r->from_guest == from_guest && r->header.op == op &&
	       (local_port == VGUEST_ANY_PORT || local == local_port) &&
	       (peer_port == VGUEST_ANY_PORT || peer == peer_port);
}

size_t vguest_count_packets(const struct vguest *vg, bool from_guest,
			    uint16_t op, uint32_t local_port, uint32_t peer_port)
{
	size_t count = 0;
	for (size_t i = 0; i < vg->log_count; i++)
		if (vg_record_matches(&vg->log[i], from_guest, op, local_port, peer_port))
			count++;
	return count;
}

const struct vguest_packet_record *
vguest_find_packet(const struct vguest *vg, bool from_guest, uint16_t op,
		   uint32_t local_port, uint32_t peer_port)
{
	for (size_t i = vg->log_count; i > 0; i--)
		if (vg_record_matches(&vg->log[i - 1], from_guest, op, local_port, peer_port))
			return &vg->log[i - 1];
	return NULL;
}

const struct vguest_packet_record *vguest_packet_log(const struct vguest *vg,
						     size_t *count)
{
	*count = vg->log_count;
	return vg->log;
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
