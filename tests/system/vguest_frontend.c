/*
 * vguest_frontend.c - the vhost-user frontend (master) side of the virtual
 * guest: the UNIX socket to the backend, message framing with fds and
 * bounded replies, QEMU 7.2's set-up order (features, protocol features,
 * memory table, vring num/base/addr, kick/call/err eventfds, enable),
 * device reset, stop/continue, a resent memory table, call fd swaps, and
 * raw messages for tests that send what QEMU never would.
 *
 * Owns: vg->vhost_fd, the negotiated features and each queue's eventfds
 * (the retired call fds included).
 * Never: reads or writes ring contents beyond laying a queue out again
 * (vguest_ring.c drives the rings), or waits on the backend without the
 * options.io_timeout_ms bound.
 */
#include "vguest_internal.h"
#include "vsockmux/fd_passing.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "vsockmux/vhost_user_wire.h"

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
	(void)fd_passing_attach(&msg, control.buffer, sizeof(control.buffer), fds, fd_count);
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

int vg_vu_send(struct vguest *vg, uint32_t request, uint32_t extra_flags,
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
int vg_vu_reply(struct vguest *vg, uint32_t request, void *payload,
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
int vg_vu_set_u64(struct vguest *vg, uint32_t request, uint64_t value,
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

int vg_vu_set_state(struct vguest *vg, uint32_t request, uint32_t index,
		    uint32_t num)
{
	struct vhost_user_vring_state state = { .index = index, .num = num };
	return vg_vu_send(vg, request, 0, &state, sizeof(state), NULL, 0);
}

int vg_new_eventfd(struct vguest *vg)
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

uint64_t vg_user_addr(struct vguest *vg, uint64_t gpa)
{
	return (uint64_t)(uintptr_t)vg->mem + gpa;
}

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
	if (vg->opts.event_queue && vg_event_queue_start(vg) != 0)
		return -1;
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


void vguest_disconnect(struct vguest *vg)
{
	vg_close_fd(&vg->vhost_fd);
	vg_event_queue_stop(vg);
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


/* GET_VRING_BASE of every data queue: the backend stops them and says
 * where each stopped (into bases, if not NULL). */
static int vg_fetch_bases(struct vguest *vg, uint32_t bases[VGUEST_QUEUE_COUNT])
{
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
		if (bases)
			bases[i] = state.num;
	}
	return 0;
}

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
	if (vg_fetch_bases(vg, bases) != 0)
		return -1;
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
	uint32_t fetched[VGUEST_QUEUE_COUNT];

	if (!vg->connected || vg->vhost_fd < 0) {
		vg_set_error(vg, "not connected");
		errno = ENOTCONN;
		return -1;
	}
	/* vhost_dev_stop: the backend hands the rings back */
	if (vg_fetch_bases(vg, fetched) != 0)
		return -1;
	for (unsigned i = 0; i < VGUEST_QUEUE_COUNT; i++) {
		restart[i] = (uint16_t)fetched[i];
		if (bases)
			bases[i] = fetched[i];
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
