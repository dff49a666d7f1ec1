/*
 * test_vhost_user.c - the vhost-user backend over a socketpair, with the
 * test playing QEMU 7.2's vhost-user-vsock frontend: negotiation replies,
 * config space, REPLY_ACK, the full set-up sequence in QEMU's order (with
 * a chain popped through the resulting rings), call-fd swaps on live rings,
 * stop and detach callbacks, framing (1-byte writes, back-to-back messages
 * with fds) and every message that must drop the frontend.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/virtio_ring.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "vhost_user.h"
#include "vsockmux/fd_passing.h"
#include "vsockmux/log.h"

#define GUEST_CID 42u
#define QUEUE_SIZE 128u
#define MEMORY_SIZE 0x100000u
#define USER_BASE 0x7f0000000000ull
#define FEATURE(bit) (1ull << (bit))
#define ALL_FEATURES (FEATURE(VIRTIO_FEATURE_VERSION_1) | \
		      FEATURE(VIRTIO_FEATURE_RING_EVENT_IDX) | \
		      FEATURE(VIRTIO_FEATURE_RING_INDIRECT_DESC) | \
		      FEATURE(VHOST_USER_FEATURE_PROTOCOL_FEATURES))
#define ALL_PROTOCOL_FEATURES (FEATURE(VHOST_USER_PROTOCOL_F_MQ) | \
			       FEATURE(VHOST_USER_PROTOCOL_F_REPLY_ACK) | \
			       FEATURE(VHOST_USER_PROTOCOL_F_CONFIG))

/* Per queue: desc, avail, used at these guest addresses. */
static const uint64_t ring_gpa[VSOCK_QUEUE_COUNT][3] = {
	{ 0x0000, 0x1000, 0x2000 },
	{ 0x4000, 0x5000, 0x6000 },
	{ 0x7000, 0x8000, 0x9000 },
};
#define BUFFER_GPA 0x10000u

struct events {
	unsigned kick_changes;
	unsigned kick_queue;
	int kick_old, kick_new;
	unsigned ready_changes;
	bool ready[VSOCK_QUEUE_COUNT];
	unsigned resets;
	bool memory_mapped_at_reset;
};

struct harness {
	int frontend;
	int backend;
	struct vhost_user_device device;
	struct events events;
	int memfd;
	uint8_t *guest;               /* the test's own view of guest memory */
	int kick[VSOCK_QUEUE_COUNT];  /* test copies of the eventfds */
	int call[VSOCK_QUEUE_COUNT];
};

static struct harness *current;

static void on_kick_fd(void *opaque, unsigned queue, int old_fd, int new_fd)
{
	struct events *events = opaque;
	events->kick_changes++;
	events->kick_queue = queue;
	events->kick_old = old_fd;
	events->kick_new = new_fd;
	/* the old fd must still be open when we hear about it */
	if (old_fd >= 0)
		assert_true(fcntl(old_fd, F_GETFD) >= 0);
}

static void on_queue_state(void *opaque, unsigned queue, bool ready)
{
	struct events *events = opaque;
	events->ready_changes++;
	events->ready[queue] = ready;
}

static void on_reset(void *opaque)
{
	struct events *events = opaque;
	events->resets++;
	events->memory_mapped_at_reset = current->device.memory.region_count > 0;
}

static const struct vhost_user_callbacks callbacks = {
	.kick_fd_changed = on_kick_fd,
	.queue_state_changed = on_queue_state,
	.device_reset = on_reset,
};

static int setup(void **state)
{
	static struct harness harness;
	int pair[2];

	memset(&harness, 0, sizeof(harness));
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
	harness.frontend = pair[0];
	harness.backend = pair[1];
	vhost_user_init(&harness.device, GUEST_CID, 256, &callbacks, &harness.events);
	vhost_user_attach(&harness.device, harness.backend);
	assert_true(vhost_user_is_attached(&harness.device));
	assert_true(fcntl(harness.backend, F_GETFL) & O_NONBLOCK);
	harness.memfd = memfd_create("vhost-user-test", MFD_CLOEXEC);
	assert_true(harness.memfd >= 0);
	assert_int_equal(ftruncate(harness.memfd, MEMORY_SIZE), 0);
	harness.guest = mmap(NULL, MEMORY_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
			     harness.memfd, 0);
	assert_true(harness.guest != MAP_FAILED);
	for (unsigned i = 0; i < VSOCK_QUEUE_COUNT; i++) {
		harness.kick[i] = -1;
		harness.call[i] = -1;
	}
	current = &harness;
	*state = &harness;
	/* most cases start after SET_OWNER; setup_unowned() does not */
	harness.device.owner_set = true;
	return 0;
}

static int setup_unowned(void **state)
{
	setup(state);
	((struct harness *)*state)->device.owner_set = false;
	return 0;
}

static int teardown(void **state)
{
	struct harness *harness = *state;

	vhost_user_detach(&harness->device);
	close(harness->frontend);
	munmap(harness->guest, MEMORY_SIZE);
	close(harness->memfd);
	for (unsigned i = 0; i < VSOCK_QUEUE_COUNT; i++) {
		if (harness->kick[i] >= 0)
			close(harness->kick[i]);
		if (harness->call[i] >= 0)
			close(harness->call[i]);
	}
	return 0;
}

/* ---- the frontend side ---- */

static void send_raw(struct harness *harness, const void *bytes, size_t length,
		     const int *fds, unsigned fd_count)
{
	union {
		struct cmsghdr align;
		char bytes[CMSG_SPACE(sizeof(int) * 16)];
	} control;
	struct iovec iov = { .iov_base = (void *)bytes, .iov_len = length };
	struct msghdr message = { .msg_iov = &iov, .msg_iovlen = 1 };

	assert_int_equal(fd_passing_attach(&message, control.bytes, sizeof(control.bytes),
					   fds, fd_count), 0);
	assert_int_equal(sendmsg(harness->frontend, &message, MSG_NOSIGNAL),
			 (ssize_t)length);
}

static size_t frame(uint8_t *out, uint32_t request, uint32_t flags,
		    const void *payload, uint32_t size)
{
	struct vhost_user_header header = {
		.request = request,
		.flags = VHOST_USER_VERSION | flags,
		.size = size,
	};
	memcpy(out, &header, sizeof(header));
	if (size)
		memcpy(out + sizeof(header), payload, size);
	return sizeof(header) + size;
}

static void send_message(struct harness *harness, uint32_t request, uint32_t flags,
			 const void *payload, uint32_t size, const int *fds,
			 unsigned fd_count)
{
	uint8_t bytes[sizeof(struct vhost_user_header) + 512];
	size_t length = frame(bytes, request, flags, payload, size);
	send_raw(harness, bytes, length, fds, fd_count);
}

/* Send one message and let the backend handle it; returns its result. */
static int request(struct harness *harness, uint32_t request_number,
		   uint32_t flags, const void *payload, uint32_t size,
		   const int *fds, unsigned fd_count)
{
	send_message(harness, request_number, flags, payload, size, fds, fd_count);
	return vhost_user_handle_readable(&harness->device);
}

static int request_u64(struct harness *harness, uint32_t request_number,
		       uint32_t flags, uint64_t value)
{
	return request(harness, request_number, flags, &value, sizeof(value), NULL, 0);
}

static int request_state(struct harness *harness, uint32_t request_number,
			 uint32_t index, uint32_t num)
{
	struct vhost_user_vring_state state = { .index = index, .num = num };
	return request(harness, request_number, 0, &state, sizeof(state), NULL, 0);
}

/* Read one reply to request_number with exactly size payload bytes. */
static void expect_reply(struct harness *harness, uint32_t request_number,
			 void *payload, uint32_t size)
{
	uint8_t bytes[sizeof(struct vhost_user_header) + 512];
	struct vhost_user_header header;
	ssize_t got = recv(harness->frontend, bytes, sizeof(header) + size, MSG_DONTWAIT);

	assert_int_equal(got, (ssize_t)(sizeof(header) + size));
	memcpy(&header, bytes, sizeof(header));
	assert_int_equal(header.request, request_number);
	assert_int_equal(header.flags, VHOST_USER_VERSION | VHOST_USER_FLAG_REPLY);
	assert_int_equal(header.size, size);
	memcpy(payload, bytes + sizeof(header), size);
}

static uint64_t expect_reply_u64(struct harness *harness, uint32_t request_number)
{
	uint64_t value = 0;
	expect_reply(harness, request_number, &value, sizeof(value));
	return value;
}

static void expect_no_reply(struct harness *harness)
{
	uint8_t byte;
	assert_int_equal(recv(harness->frontend, &byte, 1, MSG_DONTWAIT), -1);
	assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
}

static int get_u64(struct harness *harness, uint32_t request_number, uint64_t *value)
{
	int result = request(harness, request_number, 0, NULL, 0, NULL, 0);
	if (result == 0)
		*value = expect_reply_u64(harness, request_number);
	return result;
}

static void negotiate(struct harness *harness, uint64_t protocol_features,
		      uint64_t features)
{
	uint64_t value;
	assert_int_equal(get_u64(harness, VHOST_USER_GET_FEATURES, &value), 0);
	assert_int_equal(get_u64(harness, VHOST_USER_GET_PROTOCOL_FEATURES, &value), 0);
	assert_int_equal(request_u64(harness, VHOST_USER_SET_PROTOCOL_FEATURES, 0,
				     protocol_features), 0);
	assert_int_equal(request_u64(harness, VHOST_USER_SET_FEATURES, 0, features), 0);
}

static int send_mem_table(struct harness *harness, uint32_t flags, int fd)
{
	struct {
		uint32_t nregions, padding;
		struct vhost_user_memory_region region;
	} __attribute__((packed)) table = {
		.nregions = 1,
		.region = {
			.guest_phys_addr = 0,
			.memory_size = MEMORY_SIZE,
			.user_addr = USER_BASE,
			.mmap_offset = 0,
		},
	};
	return request(harness, VHOST_USER_SET_MEM_TABLE, flags, &table,
		       sizeof(table), &fd, 1);
}

/* SET_VRING_KICK/CALL/ERR with a fresh eventfd (returned, still ours). */
static int send_vring_fd(struct harness *harness, uint32_t request_number,
			 unsigned index, int *fd_out)
{
	int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	uint64_t value = index;
	int result = request(harness, request_number, 0, &value, sizeof(value), &fd, 1);
	if (fd_out)
		*fd_out = fd;
	else
		close(fd);
	return result;
}

static void send_ring_setup(struct harness *harness, unsigned index)
{
	struct vhost_user_vring_addr addr = {
		.index = index,
		.desc_user_addr = USER_BASE + ring_gpa[index][0],
		.avail_user_addr = USER_BASE + ring_gpa[index][1],
		.used_user_addr = USER_BASE + ring_gpa[index][2],
	};
	assert_int_equal(request_state(harness, VHOST_USER_SET_VRING_NUM, index,
				       QUEUE_SIZE), 0);
	assert_int_equal(request_state(harness, VHOST_USER_SET_VRING_BASE, index, 0), 0);
	assert_int_equal(request(harness, VHOST_USER_SET_VRING_ADDR, 0, &addr,
				 sizeof(addr), NULL, 0), 0);
	if (harness->kick[index] >= 0)
		close(harness->kick[index]);
	assert_int_equal(send_vring_fd(harness, VHOST_USER_SET_VRING_KICK, index,
				       &harness->kick[index]), 0);
}

/* QEMU 7.2 order, as it was seen on the wire, up to running rings, for
 * the first queue_count queues: QEMU sets up two (it keeps the event
 * queue), crosvm and cloud-hypervisor three. */
static void frontend_setup(struct harness *harness, unsigned queue_count)
{
	uint64_t value;
	struct vhost_user_config config = { .offset = 0, .size = 8 };

	assert_int_equal(get_u64(harness, VHOST_USER_GET_FEATURES, &value), 0);
	assert_int_equal(get_u64(harness, VHOST_USER_GET_PROTOCOL_FEATURES, &value), 0);
	assert_int_equal(request_u64(harness, VHOST_USER_SET_PROTOCOL_FEATURES, 0,
				     ALL_PROTOCOL_FEATURES), 0);
	assert_int_equal(get_u64(harness, VHOST_USER_GET_QUEUE_NUM, &value), 0);
	assert_int_equal(request(harness, VHOST_USER_SET_OWNER, 0, NULL, 0, NULL, 0), 0);
	assert_int_equal(get_u64(harness, VHOST_USER_GET_FEATURES, &value), 0);
	for (unsigned i = 0; i < queue_count; i++) {
		assert_int_equal(send_vring_fd(harness, VHOST_USER_SET_VRING_CALL, i, NULL), 0);
		assert_int_equal(send_vring_fd(harness, VHOST_USER_SET_VRING_ERR, i, NULL), 0);
	}
	assert_int_equal(request(harness, VHOST_USER_GET_CONFIG, 0, &config, 12 + 8,
				 NULL, 0), 0);
	expect_reply(harness, VHOST_USER_GET_CONFIG, &config, 12 + 8);
	/* the guest driver starts */
	for (unsigned i = 0; i < queue_count; i++)
		assert_int_equal(send_vring_fd(harness, VHOST_USER_SET_VRING_CALL, i,
					       &harness->call[i]), 0);
	assert_int_equal(request_u64(harness, VHOST_USER_SET_FEATURES, 0,
				     FEATURE(VIRTIO_FEATURE_VERSION_1) |
				     FEATURE(VIRTIO_FEATURE_RING_INDIRECT_DESC) |
				     FEATURE(VIRTIO_FEATURE_RING_EVENT_IDX) |
				     FEATURE(VHOST_USER_FEATURE_PROTOCOL_FEATURES)), 0);
	assert_int_equal(send_mem_table(harness, VHOST_USER_FLAG_NEED_REPLY,
					harness->memfd), 0);
	assert_int_equal(expect_reply_u64(harness, VHOST_USER_SET_MEM_TABLE), 0);
	for (unsigned i = 0; i < queue_count; i++)
		send_ring_setup(harness, i);
	/* with PROTOCOL_FEATURES the rings wait for SET_VRING_ENABLE */
	assert_int_equal(harness->events.ready_changes, 0);
	for (unsigned i = 0; i < queue_count; i++)
		assert_int_equal(request_state(harness, VHOST_USER_SET_VRING_ENABLE, i, 1), 0);
	expect_no_reply(harness);
}

static void qemu_setup(struct harness *harness)
{
	frontend_setup(harness, 2);
}

/* ---- tests ---- */

static void test_get_features(void **state)
{
	struct harness *harness = *state;
	uint64_t features = 0;

	assert_int_equal(get_u64(harness, VHOST_USER_GET_FEATURES, &features), 0);
	assert_int_equal(features, ALL_FEATURES);
	assert_false(features & FEATURE(1)); /* no VIRTIO_VSOCK_F_SEQPACKET */
	expect_no_reply(harness);
}

static void test_feature_negotiation(void **state)
{
	struct harness *harness = *state;

	assert_int_equal(request_u64(harness, VHOST_USER_SET_FEATURES, 0,
				     FEATURE(VIRTIO_FEATURE_VERSION_1) |
				     FEATURE(VIRTIO_FEATURE_RING_EVENT_IDX)), 0);
	assert_true(harness->device.queues[0].event_idx);
	assert_false(harness->device.queues[1].indirect);
	assert_int_equal(request_u64(harness, VHOST_USER_SET_FEATURES, 0, ALL_FEATURES), 0);
	assert_true(harness->device.queues[1].indirect);
	expect_no_reply(harness);
	/* SEQPACKET was not offered */
	assert_int_equal(request_u64(harness, VHOST_USER_SET_FEATURES, 0,
				     ALL_FEATURES | FEATURE(1)), -1);
}

static void test_protocol_features_and_queue_num(void **state)
{
	struct harness *harness = *state;
	uint64_t value = 0;

	assert_int_equal(get_u64(harness, VHOST_USER_GET_PROTOCOL_FEATURES, &value), 0);
	assert_int_equal(value, ALL_PROTOCOL_FEATURES);
	assert_int_equal(request_u64(harness, VHOST_USER_SET_PROTOCOL_FEATURES, 0,
				     ALL_PROTOCOL_FEATURES), 0);
	assert_int_equal(get_u64(harness, VHOST_USER_GET_QUEUE_NUM, &value), 0);
	assert_int_equal(value, 3);  /* RX, TX and the event queue */
	/* a protocol feature we never offered */
	assert_int_equal(request_u64(harness, VHOST_USER_SET_PROTOCOL_FEATURES, 0,
				     FEATURE(VHOST_USER_PROTOCOL_F_LOG_SHMFD)), -1);
}

static void test_queue_num_needs_mq(void **state)
{
	struct harness *harness = *state;
	uint64_t value;

	assert_int_equal(request_u64(harness, VHOST_USER_SET_PROTOCOL_FEATURES, 0,
				     FEATURE(VHOST_USER_PROTOCOL_F_CONFIG)), 0);
	assert_int_equal(get_u64(harness, VHOST_USER_GET_QUEUE_NUM, &value), -1);
}

/* GET_CONFIG of a window; the reply echoes offset, size and flags. */
static void get_config_window(struct harness *harness, uint32_t offset,
			      uint32_t size, uint32_t flags,
			      struct vhost_user_config *config)
{
	*config = (struct vhost_user_config){ .offset = offset, .size = size,
					      .flags = flags };
	memset(config->region, 0xee, size);
	assert_int_equal(request(harness, VHOST_USER_GET_CONFIG, 0, config, 12 + size,
				 NULL, 0), 0);
	memset(config, 0xee, sizeof(*config));
	expect_reply(harness, VHOST_USER_GET_CONFIG, config, 12 + size);
	assert_int_equal(config->offset, offset);
	assert_int_equal(config->size, size);
	assert_int_equal(config->flags, flags);
}

static void test_get_config(void **state)
{
	struct harness *harness = *state;
	struct vhost_user_config config;
	uint64_t cid;

	assert_int_equal(request_u64(harness, VHOST_USER_SET_PROTOCOL_FEATURES, 0,
				     ALL_PROTOCOL_FEATURES), 0);
	get_config_window(harness, 0, 8, 0, &config);
	memcpy(&cid, config.region, sizeof(cid));
	assert_int_equal(le64toh(cid), GUEST_CID);

	/* a window past the end: same offset/size/flags, zeros beyond */
	get_config_window(harness, 4, 16, 1, &config);
	for (unsigned i = 0; i < 16; i++)
		assert_int_equal(config.region[i], 0);   /* CID 42 has no high bytes */

	/* size field disagrees with the payload */
	config = (struct vhost_user_config){ .offset = 0, .size = 8 };
	assert_int_equal(request(harness, VHOST_USER_GET_CONFIG, 0, &config, 12 + 4,
				 NULL, 0), -1);
}

static void test_set_config_is_refused_not_fatal(void **state)
{
	struct harness *harness = *state;
	struct vhost_user_config config = { .offset = 0, .size = 8 };

	assert_int_equal(request_u64(harness, VHOST_USER_SET_PROTOCOL_FEATURES, 0,
				     ALL_PROTOCOL_FEATURES), 0);
	assert_int_equal(request(harness, VHOST_USER_SET_CONFIG,
				 VHOST_USER_FLAG_NEED_REPLY, &config, 12 + 8, NULL, 0), 0);
	assert_int_equal(expect_reply_u64(harness, VHOST_USER_SET_CONFIG), 1);
	assert_int_equal(harness->device.guest_cid, GUEST_CID);
}

static void test_reply_ack_on_mem_table(void **state)
{
	struct harness *harness = *state;
	int pipe_fds[2];

	/* REPLY_ACK not negotiated: no ack even if asked */
	assert_int_equal(send_mem_table(harness, VHOST_USER_FLAG_NEED_REPLY,
					harness->memfd), 0);
	expect_no_reply(harness);
	assert_int_equal(harness->device.memory.region_count, 1);
	assert_int_equal(harness->events.resets, 0);

	negotiate(harness, ALL_PROTOCOL_FEATURES, ALL_FEATURES);
	/* success: 0; a new table while memory is mapped keeps the device
	 * (memory hot-plug: the connections survive) */
	assert_int_equal(send_mem_table(harness, VHOST_USER_FLAG_NEED_REPLY,
					harness->memfd), 0);
	assert_int_equal(expect_reply_u64(harness, VHOST_USER_SET_MEM_TABLE), 0);
	assert_int_equal(harness->events.resets, 0);
	/* no NEED_REPLY: no ack */
	assert_int_equal(send_mem_table(harness, 0, harness->memfd), 0);
	expect_no_reply(harness);
	/* a request with its own reply gets only that reply */
	assert_int_equal(request(harness, VHOST_USER_GET_FEATURES,
				 VHOST_USER_FLAG_NEED_REPLY, NULL, 0, NULL, 0), 0);
	assert_int_equal(expect_reply_u64(harness, VHOST_USER_GET_FEATURES), ALL_FEATURES);
	expect_no_reply(harness);
	/* an fd that cannot be mapped: the frontend is dropped */
	assert_int_equal(pipe(pipe_fds), 0);
	assert_int_equal(send_mem_table(harness, VHOST_USER_FLAG_NEED_REPLY,
					pipe_fds[0]), -1);
	close(pipe_fds[0]);
	close(pipe_fds[1]);
}

/* A region announced larger than its file would raise SIGBUS on first
 * touch: refused, frontend dropped, nothing mapped. */
static void test_mem_table_larger_than_file_drops(void **state)
{
	struct harness *harness = *state;
	int small = memfd_create("vhost-user-small", MFD_CLOEXEC);

	assert_true(small >= 0);
	assert_int_equal(ftruncate(small, 64 * 1024), 0);
	assert_int_equal(send_mem_table(harness, 0, small), -1);
	assert_int_equal(harness->device.memory.region_count, 0);
	close(small);
}

/* Before SET_OWNER only the feature queries are served. */
static void test_requests_before_owner_drop(void **state)
{
	struct harness *harness = *state;
	uint64_t value;

	assert_int_equal(get_u64(harness, VHOST_USER_GET_FEATURES, &value), 0);
	assert_int_equal(get_u64(harness, VHOST_USER_GET_PROTOCOL_FEATURES, &value), 0);
	assert_int_equal(request_u64(harness, VHOST_USER_SET_FEATURES, 0, ALL_FEATURES), -1);
}

/* A kick without an fd would need ring polling: refused. */
static void test_nofd_kick_drops(void **state)
{
	struct harness *harness = *state;
	uint64_t value = VHOST_USER_VRING_NOFD_MASK; /* queue 0, no fd */

	assert_int_equal(request(harness, VHOST_USER_SET_VRING_KICK, 0, &value,
				 sizeof(value), NULL, 0), -1);
}

/* Handed call/kick/err fds become non-blocking (the fd description is
 * shared, so the flag is visible here). */
static void test_vring_fds_made_nonblocking(void **state)
{
	struct harness *harness = *state;
	static const uint32_t requests[] = { VHOST_USER_SET_VRING_KICK,
					     VHOST_USER_SET_VRING_CALL,
					     VHOST_USER_SET_VRING_ERR };

	for (size_t i = 0; i < sizeof(requests) / sizeof(requests[0]); i++) {
		int fd = eventfd(0, EFD_CLOEXEC); /* blocking */
		uint64_t value = 1;
		assert_true(fd >= 0);
		assert_int_equal(request(harness, requests[i], 0, &value, sizeof(value),
					 &fd, 1), 0);
		assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
		close(fd);
	}
}

static void write_tx_chain(struct harness *harness, uint16_t head)
{
	uint8_t *desc_table = harness->guest + ring_gpa[VSOCK_QUEUE_TX][0];
	uint16_t *avail = (uint16_t *)(harness->guest + ring_gpa[VSOCK_QUEUE_TX][1]);
	struct vring_desc desc = {
		.addr = htole64(BUFFER_GPA),
		.len = htole32(44),
	};
	uint16_t idx = le16toh(avail[1]);

	memcpy(desc_table + 16 * head, &desc, sizeof(desc));
	avail[2 + idx % QUEUE_SIZE] = htole16(head);
	avail[1] = htole16((uint16_t)(idx + 1));
}

static uint64_t counter(int fd)
{
	uint64_t value = 0;
	if (read(fd, &value, sizeof(value)) != (ssize_t)sizeof(value))
		return 0;
	return value;
}

static void test_qemu_sequence_live_call_swap_and_stop(void **state)
{
	struct harness *harness = *state;
	struct vhost_user_device *device = &harness->device;
	struct virtq *tx = &device->queues[VSOCK_QUEUE_TX];
	struct iovec iov[4];
	struct virtq_chain chain;
	struct vhost_user_vring_state base;
	int new_call;
	int kick_fd;

	qemu_setup(harness);
	assert_int_equal(harness->events.ready_changes, 2);
	assert_true(harness->events.ready[0]);
	assert_true(harness->events.ready[1]);
	assert_true(virtq_is_ready(&device->queues[VSOCK_QUEUE_RX]));
	assert_int_equal(device->queues[VSOCK_QUEUE_RX].direction, VIRTQ_DEVICE_WRITES);
	assert_int_equal(tx->direction, VIRTQ_DEVICE_READS);
	assert_true(tx->event_idx);
	assert_true(tx->indirect);
	assert_int_equal(tx->size, QUEUE_SIZE);
	assert_int_equal(harness->events.kick_changes, 2);
	assert_int_equal(harness->events.kick_queue, 1);
	assert_int_equal(harness->events.kick_old, -1);
	assert_int_equal(harness->events.kick_new, tx->kick_fd);
	assert_true(fcntl(tx->kick_fd, F_GETFL) & O_NONBLOCK);
	assert_int_equal(harness->events.resets, 0);  /* first memory table */

	/* the rings really are the test's memory */
	write_tx_chain(harness, 7);
	assert_int_equal(virtq_pop(tx, &device->memory, iov, 4, &chain), 1);
	assert_int_equal(chain.head, 7);
	assert_ptr_equal(iov[0].iov_base, guest_memory_translate(&device->memory,
								 BUFFER_GPA, 44));

	/* QEMU 7.2 swaps the call eventfd while the ring runs */
	assert_int_equal(send_vring_fd(harness, VHOST_USER_SET_VRING_CALL,
				       VSOCK_QUEUE_TX, &new_call), 0);
	assert_true(virtq_is_ready(tx));
	assert_int_equal(harness->events.ready_changes, 2);
	/* one signal on the new fd right away, in case the old fd's last one
	 * was lost in the swap */
	assert_int_equal(counter(new_call), 1);
	virtq_push(tx, chain.head, 0);
	virtq_notify(tx);
	assert_int_equal(counter(new_call), 1);
	assert_int_equal(counter(harness->call[VSOCK_QUEUE_TX]), 0);
	close(new_call);

	/* GET_VRING_BASE stops the ring and returns the next avail index */
	kick_fd = tx->kick_fd;
	assert_int_equal(request_state(harness, VHOST_USER_GET_VRING_BASE,
				       VSOCK_QUEUE_TX, 0), 0);
	expect_reply(harness, VHOST_USER_GET_VRING_BASE, &base, sizeof(base));
	assert_int_equal(base.index, VSOCK_QUEUE_TX);
	assert_int_equal(base.num, 1);
	assert_int_equal(harness->events.kick_old, kick_fd);
	assert_int_equal(harness->events.kick_new, -1);
	assert_int_equal(tx->kick_fd, -1);
	assert_false(harness->events.ready[1]);
	assert_int_equal(harness->events.ready_changes, 3);

	/* restart it at 0, not where it stopped (1): the driver started over,
	 * so the device's connections are reset */
	send_ring_setup(harness, VSOCK_QUEUE_TX);
	assert_true(harness->events.ready[1]);   /* still enabled */
	assert_int_equal(tx->last_avail_idx, 0); /* base 0 as sent */
	assert_int_equal(harness->events.resets, 1);

	/* the frontend goes away: kick fds out, queues down, reset, closed */
	harness->events.kick_changes = 0;
	vhost_user_detach(device);
	assert_int_equal(harness->events.kick_changes, 2);
	assert_int_equal(harness->events.kick_new, -1);
	assert_false(harness->events.ready[0]);
	assert_false(harness->events.ready[1]);
	assert_int_equal(harness->events.resets, 2);
	assert_false(vhost_user_is_attached(device));
	assert_int_equal(device->memory.region_count, 0);
	assert_int_equal(device->queues[0].call_fd, -1);
	assert_int_equal(device->features_acked, 0);
	vhost_user_detach(device);                  /* idempotent */
	assert_int_equal(harness->events.resets, 2);
	assert_int_equal(harness->events.kick_changes, 2);
	assert_int_equal(vhost_user_handle_readable(device), -1);
}

static void test_without_protocol_features_ring_enabled_on_kick(void **state)
{
	struct harness *harness = *state;

	assert_int_equal(request_u64(harness, VHOST_USER_SET_FEATURES, 0,
				     FEATURE(VIRTIO_FEATURE_VERSION_1)), 0);
	assert_int_equal(send_mem_table(harness, 0, harness->memfd), 0);
	send_ring_setup(harness, VSOCK_QUEUE_RX);
	assert_true(harness->events.ready[VSOCK_QUEUE_RX]);
	assert_int_equal(harness->events.ready_changes, 1);
	/* SET_VRING_ENABLE needs PROTOCOL_FEATURES */
	assert_int_equal(request_state(harness, VHOST_USER_SET_VRING_ENABLE, 0, 1), -1);
}

static void test_reset_owner(void **state)
{
	struct harness *harness = *state;

	qemu_setup(harness);
	assert_int_equal(request(harness, VHOST_USER_RESET_OWNER, 0, NULL, 0, NULL, 0), 0);
	assert_int_equal(harness->events.resets, 1);
	assert_false(harness->events.ready[0]);
	assert_false(harness->events.ready[1]);
	assert_int_equal(harness->events.kick_new, -1);
	assert_int_equal(harness->device.memory.region_count, 0);
	assert_false(harness->device.owner_set);
	assert_true(vhost_user_is_attached(&harness->device));
}

/* A frontend that hands over the event queue too: all three run, and a
 * fourth queue does not exist. */
static void test_event_queue_frontend(void **state)
{
	struct harness *harness = *state;
	struct vhost_user_device *device = &harness->device;

	frontend_setup(harness, 3);
	assert_int_equal(harness->events.ready_changes, 3);
	assert_true(virtq_is_ready(&device->queues[VSOCK_QUEUE_EVENT]));
	assert_int_equal(device->queues[VSOCK_QUEUE_EVENT].direction, VIRTQ_DEVICE_WRITES);
	assert_int_equal(request_state(harness, VHOST_USER_SET_VRING_NUM, 3, 64), -1);
}

static void test_unknown_request_drops(void **state)
{
	struct harness *harness = *state;

	assert_int_equal(request(harness, 99, 0, NULL, 0, NULL, 0), -1);
}

static void test_unsupported_request_drops(void **state)
{
	struct harness *harness = *state;
	uint64_t zero = 0;

	/* SET_LOG_BASE: LOG_SHMFD was never offered */
	assert_int_equal(request(harness, VHOST_USER_SET_LOG_BASE, 0, &zero,
				 sizeof(zero), NULL, 0), -1);
}

/* A header that is refused on its own, without waiting for a payload. */
static void assert_header_drops(struct harness *harness, uint32_t request_type,
				uint32_t flags, uint32_t size)
{
	struct vhost_user_header header = {
		.request = request_type, .flags = flags, .size = size,
	};

	send_raw(harness, &header, sizeof(header), NULL, 0);
	assert_int_equal(vhost_user_handle_readable(&harness->device), -1);
}

static void test_oversized_size_field_drops(void **state)
{
	assert_header_drops(*state, VHOST_USER_SET_MEM_TABLE, VHOST_USER_VERSION,
			    (uint32_t)VHOST_USER_MAX_PAYLOAD + 1);
}

static void test_bad_version_drops(void **state)
{
	assert_header_drops(*state, VHOST_USER_GET_FEATURES, 2, 0);
}

static void test_wrong_payload_size_drops(void **state)
{
	struct harness *harness = *state;
	uint32_t four = 4;

	assert_int_equal(request(harness, VHOST_USER_SET_FEATURES, 0, &four,
				 sizeof(four), NULL, 0), -1);
}

static void test_one_byte_writes(void **state)
{
	struct harness *harness = *state;
	uint8_t bytes[64];
	uint64_t value = VSOCK_QUEUE_RX;
	int fd = eventfd(0, EFD_CLOEXEC);
	size_t length = frame(bytes, VHOST_USER_GET_FEATURES, 0, NULL, 0);

	for (size_t i = 0; i < length; i++) {
		send_raw(harness, bytes + i, 1, NULL, 0);
		assert_int_equal(vhost_user_handle_readable(&harness->device), 0);
		if (i + 1 < length)
			expect_no_reply(harness);
	}
	assert_int_equal(expect_reply_u64(harness, VHOST_USER_GET_FEATURES), ALL_FEATURES);

	/* with an fd riding on the first byte */
	length = frame(bytes, VHOST_USER_SET_VRING_CALL, 0, &value, sizeof(value));
	send_raw(harness, bytes, 1, &fd, 1);
	close(fd);
	assert_int_equal(vhost_user_handle_readable(&harness->device), 0);
	for (size_t i = 1; i < length; i++) {
		assert_int_equal(harness->device.queues[0].call_fd, -1);
		send_raw(harness, bytes + i, 1, NULL, 0);
		assert_int_equal(vhost_user_handle_readable(&harness->device), 0);
	}
	assert_true(harness->device.queues[0].call_fd >= 0);
	assert_int_equal(harness->device.buffered, 0);
}

/* QEMU sends NUM, BASE, ADDR, KICK without waiting: the kick's fd must not
 * be attributed to the messages queued before it. */
static void test_back_to_back_messages_with_fds(void **state)
{
	struct harness *harness = *state;
	struct vhost_user_vring_state num = { .index = 1, .num = 64 };
	uint64_t call_index = 1;
	int fd = eventfd(0, EFD_CLOEXEC);

	send_message(harness, VHOST_USER_SET_VRING_NUM, 0, &num, sizeof(num), NULL, 0);
	send_message(harness, VHOST_USER_SET_VRING_BASE, 0, &num, sizeof(num), NULL, 0);
	send_message(harness, VHOST_USER_SET_VRING_CALL, 0, &call_index,
		     sizeof(call_index), &fd, 1);
	send_message(harness, VHOST_USER_GET_FEATURES, 0, NULL, 0, NULL, 0);
	close(fd);
	assert_int_equal(vhost_user_handle_readable(&harness->device), 0);
	assert_int_equal(harness->device.queues[1].size, 64);
	assert_int_equal(harness->device.queues[1].last_avail_idx, 64);
	assert_true(harness->device.queues[1].call_fd >= 0);
	assert_int_equal(expect_reply_u64(harness, VHOST_USER_GET_FEATURES), ALL_FEATURES);
	assert_int_equal(harness->device.messages_handled, 4);
}

static void test_wrong_fd_counts_drop(void **state)
{
	struct harness *harness = *state;
	uint64_t index = 0;
	int fds[2] = { eventfd(0, EFD_CLOEXEC), eventfd(0, EFD_CLOEXEC) };
	struct vhost_user_vring_state num = { .index = 0, .num = 64 };

	/* SET_VRING_CALL without an fd and without NOFD */
	assert_int_equal(request(harness, VHOST_USER_SET_VRING_CALL, 0, &index,
				 sizeof(index), NULL, 0), -1);
	teardown(state);
	setup(state);
	harness = *state;
	/* NOFD with an fd anyway */
	index = VHOST_USER_VRING_NOFD_MASK;
	assert_int_equal(request(harness, VHOST_USER_SET_VRING_CALL, 0, &index,
				 sizeof(index), fds, 1), -1);
	teardown(state);
	setup(state);
	harness = *state;
	/* an fd on a message that takes none */
	assert_int_equal(request(harness, VHOST_USER_SET_VRING_NUM, 0, &num,
				 sizeof(num), fds, 1), -1);
	teardown(state);
	setup(state);
	harness = *state;
	/* two fds for one memory region */
	{
		struct {
			uint32_t nregions, padding;
			struct vhost_user_memory_region region;
		} __attribute__((packed)) table = {
			.nregions = 1,
			.region = { .memory_size = MEMORY_SIZE, .user_addr = USER_BASE },
		};
		int two[2] = { harness->memfd, harness->memfd };
		assert_int_equal(request(harness, VHOST_USER_SET_MEM_TABLE, 0, &table,
					 sizeof(table), two, 2), -1);
	}
	close(fds[0]);
	close(fds[1]);
}

static void test_nofd_clears_call(void **state)
{
	struct harness *harness = *state;
	uint64_t value = 1 | VHOST_USER_VRING_NOFD_MASK;

	assert_int_equal(send_vring_fd(harness, VHOST_USER_SET_VRING_CALL, 1, NULL), 0);
	assert_true(harness->device.queues[1].call_fd >= 0);
	assert_int_equal(request(harness, VHOST_USER_SET_VRING_CALL, 0, &value,
				 sizeof(value), NULL, 0), 0);
	assert_int_equal(harness->device.queues[1].call_fd, -1);
}

static void test_bad_vring_values_drop(void **state)
{
	/* each on a fresh connection: one bad value drops the frontend */
	static const struct {
		uint32_t request, index, num;
		const char *what;
	} bad[] = {
		{ VHOST_USER_SET_VRING_NUM, 0, 100, "size not a power of two" },
		{ VHOST_USER_SET_VRING_NUM, 0, 512, "size above --queue-size" },
		{ VHOST_USER_SET_VRING_NUM, 3, 64, "no queue 3" },
		{ VHOST_USER_SET_VRING_BASE, 0, 0x10000, "base beyond a split-ring index" },
	};
	struct harness *harness;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		harness = *state;
		if (request_state(harness, bad[i].request, bad[i].index, bad[i].num) != -1)
			fail_msg("%s was accepted", bad[i].what);
		teardown(state);
		setup(state);
	}
	harness = *state;
	/* queues 0-2 exist (2 is the event queue); 3 does not */
	assert_int_equal(send_vring_fd(harness, VHOST_USER_SET_VRING_KICK, 3, NULL), -1);
}

static void test_eof_drops(void **state)
{
	struct harness *harness = *state;

	shutdown(harness->frontend, SHUT_WR);
	assert_int_equal(vhost_user_handle_readable(&harness->device), -1);
}

/* Every case below runs between setup and teardown. */
#define WITH_FIXTURE(test) cmocka_unit_test_setup_teardown(test, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		WITH_FIXTURE(test_get_features),
		WITH_FIXTURE(test_feature_negotiation),
		WITH_FIXTURE(test_protocol_features_and_queue_num),
		WITH_FIXTURE(test_queue_num_needs_mq),
		WITH_FIXTURE(test_get_config),
		WITH_FIXTURE(test_set_config_is_refused_not_fatal),
		WITH_FIXTURE(test_reply_ack_on_mem_table),
		WITH_FIXTURE(test_qemu_sequence_live_call_swap_and_stop),
		WITH_FIXTURE(test_without_protocol_features_ring_enabled_on_kick),
		WITH_FIXTURE(test_reset_owner),
		WITH_FIXTURE(test_event_queue_frontend),
		WITH_FIXTURE(test_unknown_request_drops),
		WITH_FIXTURE(test_unsupported_request_drops),
		WITH_FIXTURE(test_oversized_size_field_drops),
		WITH_FIXTURE(test_bad_version_drops),
		WITH_FIXTURE(test_wrong_payload_size_drops),
		WITH_FIXTURE(test_one_byte_writes),
		WITH_FIXTURE(test_back_to_back_messages_with_fds),
		WITH_FIXTURE(test_wrong_fd_counts_drop),
		WITH_FIXTURE(test_nofd_clears_call),
		WITH_FIXTURE(test_mem_table_larger_than_file_drops),
		cmocka_unit_test_setup_teardown(test_requests_before_owner_drop,
						setup_unowned, teardown),
		WITH_FIXTURE(test_nofd_kick_drops),
		WITH_FIXTURE(test_vring_fds_made_nonblocking),
		WITH_FIXTURE(test_bad_vring_values_drop),
		WITH_FIXTURE(test_eof_drops),
	};
	log_set_level(LOG_LEVEL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
