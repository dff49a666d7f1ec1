/*
 * vhost_user.c - the backend side of one vhost-user frontend connection
 * (QEMU docs/interop/vhost-user.rst; see vhost_user.h).
 *
 * Owns: reading whole messages (with their fds) from the non-blocking
 * frontend socket, the request table that says for every supported request
 * its payload size, fd count, state requirement and whether it replies, the
 * handlers, and the queue configuration they build.
 * Never: blocks on the frontend, trusts a size or an fd count it has not
 * checked against the table, keeps an fd a handler did not take, or touches
 * a vsock connection (the muxer hears about changes through callbacks).
 *
 * Framing: each recvmsg() asks for at most the rest of the current message,
 * so the fds the kernel hands over always belong to the message being read
 * (a stream read can otherwise return message A's bytes together with the
 * fds sent along with message B).
 */
#include "vhost_user.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vsockmux/fd_passing.h"

#define HEADER_SIZE sizeof(struct vhost_user_header)
#define FEATURE(bit) (1ull << (bit))

/* We expose 8 bytes of config space: guest_cid, u64 little-endian. */
#define CONFIG_SPACE_SIZE 8u

enum handler_result {
	HANDLER_OK,       /* done; REPLY_ACK 0 */
	HANDLER_FAILED,   /* refused but the connection stays; REPLY_ACK 1 */
	HANDLER_DROP,     /* protocol violation: drop the frontend */
};

/* One received message while it is being handled. */
struct message {
	uint32_t request;
	uint32_t flags;
	uint32_t size;
	const uint8_t *payload;
	const char *name;
	int *fds;                       /* a handler that keeps fds[i] sets it -1 */
	unsigned fd_count;
	uint8_t reply[sizeof(struct vhost_user_config)];
	uint32_t reply_size;
};

enum payload_rule {
	PAYLOAD_EXACT,       /* size == payload_size */
	PAYLOAD_AT_LEAST,    /* size >= payload_size; the handler checks the rest */
};

enum fd_rule {
	FDS_NONE,            /* no fds */
	FDS_VRING,           /* one fd, or none if the NOFD bit is set */
	FDS_MEMORY,          /* the handler checks the count (one per region) */
};

/* What must have been negotiated before a request is allowed. */
enum state_rule {
	STATE_ANY,
	STATE_MQ,              /* protocol feature MQ acked */
	STATE_CONFIG,          /* protocol feature CONFIG acked */
	STATE_PROTOCOL,        /* virtio feature PROTOCOL_FEATURES acked */
};

typedef enum handler_result (*request_handler)(struct vhost_user_device *device,
					       struct message *message);

struct request_rule {
	const char *name;
	request_handler handler;
	enum payload_rule payload_rule;
	uint32_t payload_size;
	enum fd_rule fd_rule;
	enum state_rule state_rule;
	bool has_reply;
	bool before_owner;   /* allowed before SET_OWNER (feature queries) */
};

/* ---- helpers ---------------------------------------------------------- */

static uint64_t payload_u64(const struct message *message)
{
	uint64_t value;
	memcpy(&value, message->payload, sizeof(value));
	return value;
}

static struct vhost_user_vring_state payload_state(const struct message *message)
{
	struct vhost_user_vring_state state;
	memcpy(&state, message->payload, sizeof(state));
	return state;
}

static void reply_u64(struct message *message, uint64_t value)
{
	memcpy(message->reply, &value, sizeof(value));
	message->reply_size = sizeof(value);
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static int set_nonblocking(int fd)
{
	int flags = fcntl(fd, F_GETFL);

	if (flags < 0)
		return -1;
	return fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

/* The queue a message names, or NULL (logged) if it is not ours. */
static struct virtq *queue_for(struct vhost_user_device *device,
			       const struct message *message, uint32_t index)
{
	if (index >= VSOCK_QUEUE_COUNT) {
		log_error("vhost-user %s: queue index %u (we have %u queues)",
			  message->name, index, VSOCK_QUEUE_COUNT);
		return NULL;
	}
	return &device->queues[index];
}

static void notify_kick_fd(struct vhost_user_device *device, unsigned index,
			   int old_fd, int new_fd)
{
	if (device->callbacks && device->callbacks->kick_fd_changed)
		device->callbacks->kick_fd_changed(device->opaque, index, old_fd,
						   new_fd);
}

static void notify_device_reset(struct vhost_user_device *device)
{
	if (device->callbacks && device->callbacks->device_reset)
		device->callbacks->device_reset(device->opaque);
}

static void notify_queue_stopping(struct vhost_user_device *device,
				  unsigned index)
{
	if (device->callbacks && device->callbacks->queue_stopping)
		device->callbacks->queue_stopping(device->opaque, index);
}

static void notify_readiness(struct vhost_user_device *device,
			     const bool was_ready[VSOCK_QUEUE_COUNT])
{
	for (unsigned i = 0; i < VSOCK_QUEUE_COUNT; i++) {
		bool ready = virtq_is_ready(&device->queues[i]);
		if (ready == was_ready[i])
			continue;
		log_info("vhost-user: queue %u %s", i, ready ? "ready" : "stopped");
		if (device->callbacks && device->callbacks->queue_state_changed)
			device->callbacks->queue_state_changed(device->opaque, i, ready);
	}
}

static void apply_features(struct vhost_user_device *device)
{
	for (unsigned i = 0; i < VSOCK_QUEUE_COUNT; i++) {
		struct virtq *queue = &device->queues[i];
		queue->event_idx = device->features_acked &
				   FEATURE(VIRTIO_FEATURE_RING_EVENT_IDX);
		queue->indirect = device->features_acked &
				  FEATURE(VIRTIO_FEATURE_RING_INDIRECT_DESC);
	}
}

/* Map a queue's rings when memory, size and addresses are all known;
 * otherwise leave it unmapped. */
static int map_queue(struct vhost_user_device *device, struct virtq *queue)
{
	if (device->memory.region_count == 0 || !queue->addresses_set ||
	    queue->size == 0) {
		queue->desc = NULL;
		queue->avail = NULL;
		queue->used = NULL;
		return 0;
	}
	return virtq_map(queue, &device->memory);
}

/* Close a queue's fds (telling the muxer about the kick fd first). */
static void reset_queue(struct vhost_user_device *device, unsigned index)
{
	struct virtq *queue = &device->queues[index];

	if (queue->kick_fd >= 0)
		notify_kick_fd(device, index, queue->kick_fd, -1);
	virtq_reset(queue);
	apply_features(device);
}

/* ---- handlers --------------------------------------------------------- */

static enum handler_result handle_get_features(struct vhost_user_device *device,
					       struct message *message)
{
	reply_u64(message, device->features_offered);
	return HANDLER_OK;
}

static enum handler_result handle_set_features(struct vhost_user_device *device,
					       struct message *message)
{
	uint64_t features = payload_u64(message);

	if (features & ~device->features_offered) {
		log_error("vhost-user SET_FEATURES: 0x%llx acks bits we did not "
			  "offer (0x%llx)", (unsigned long long)features,
			  (unsigned long long)device->features_offered);
		return HANDLER_DROP;
	}
	device->features_acked = features;
	apply_features(device);
	return HANDLER_OK;
}

static enum handler_result handle_set_owner(struct vhost_user_device *device,
					    struct message *message)
{
	(void)message;
	device->owner_set = true;
	return HANDLER_OK;
}

static enum handler_result handle_reset_owner(struct vhost_user_device *device,
					      struct message *message)
{
	(void)message;
	notify_device_reset(device);
	for (unsigned i = 0; i < VSOCK_QUEUE_COUNT; i++)
		reset_queue(device, i);
	guest_memory_clear(&device->memory);
	device->owner_set = false;
	return HANDLER_OK;
}

static enum handler_result handle_set_mem_table(struct vhost_user_device *device,
						struct message *message)
{
	struct vhost_user_memory table;
	bool was_ready[VSOCK_QUEUE_COUNT];
	bool lost_ring = false;
	size_t expected;
	int error;

	memset(&table, 0, sizeof(table));
	memcpy(&table, message->payload, 8);
	if (table.nregions == 0 || table.nregions > VHOST_USER_MAX_MEM_REGIONS) {
		log_error("vhost-user SET_MEM_TABLE: %u regions (allowed 1..%u)",
			  table.nregions, VHOST_USER_MAX_MEM_REGIONS);
		return HANDLER_DROP;
	}
	expected = 8 + table.nregions * sizeof(struct vhost_user_memory_region);
	if (message->size != expected || message->fd_count != table.nregions) {
		log_error("vhost-user SET_MEM_TABLE: %u regions with payload size %u "
			  "(expected %zu) and %u fds", table.nregions, message->size,
			  expected, message->fd_count);
		return HANDLER_DROP;
	}
	memcpy(&table, message->payload, expected);
	/* A new table while the rings run (memory hot-plug): connections
	 * hold no guest pointers and survive; only buffers popped from the
	 * rings must go back first, while the old mapping is still valid. */
	for (unsigned i = 0; i < VSOCK_QUEUE_COUNT; i++) {
		was_ready[i] = virtq_is_ready(&device->queues[i]);
		/* ready or not: a ring disabled, or whose addresses were
		 * refused since, may still hold buffers popped from the old
		 * mapping (handed back if its used ring is mapped, else
		 * forgotten); writing them later would hit unmapped memory */
		notify_queue_stopping(device, i);
	}
	/* set_table closes the fds on every path */
	error = guest_memory_set_table(&device->memory, &table, message->fds,
				       message->fd_count);
	for (unsigned i = 0; i < message->fd_count; i++)
		message->fds[i] = -1;
	if (error < 0) {
		log_error("vhost-user SET_MEM_TABLE: memory table refused; "
			  "dropping the frontend");
		return HANDLER_DROP;
	}
	for (unsigned i = 0; i < VSOCK_QUEUE_COUNT; i++) {
		map_queue(device, &device->queues[i]);
		lost_ring |= was_ready[i] && !virtq_is_ready(&device->queues[i]);
	}
	/* the rings are not in the new memory: this VM's vsock is gone */
	if (lost_ring)
		notify_device_reset(device);
	return HANDLER_OK;
}

static enum handler_result handle_set_vring_num(struct vhost_user_device *device,
						struct message *message)
{
	struct vhost_user_vring_state state = payload_state(message);
	struct virtq *queue = queue_for(device, message, state.index);

	if (queue == NULL)
		return HANDLER_DROP;
	if (state.num == 0 || state.num > device->max_queue_size ||
	    (state.num & (state.num - 1)) != 0) {
		log_error("vhost-user SET_VRING_NUM: queue %u size %u (must be a "
			  "power of two up to %u)", state.index, state.num,
			  device->max_queue_size);
		return HANDLER_DROP;
	}
	queue->size = (uint16_t)state.num;
	return map_queue(device, queue) < 0 ? HANDLER_FAILED : HANDLER_OK;
}

static enum handler_result handle_set_vring_addr(struct vhost_user_device *device,
						 struct message *message)
{
	struct vhost_user_vring_addr addr;
	struct virtq *queue;

	memcpy(&addr, message->payload, sizeof(addr));
	queue = queue_for(device, message, addr.index);
	if (queue == NULL)
		return HANDLER_DROP;
	queue->desc_user_addr = addr.desc_user_addr;
	queue->avail_user_addr = addr.avail_user_addr;
	queue->used_user_addr = addr.used_user_addr;
	queue->addresses_set = true;
	if (map_queue(device, queue) < 0) {
		log_error("vhost-user SET_VRING_ADDR: queue %u rings not inside "
			  "guest memory", addr.index);
		return HANDLER_FAILED;
	}
	return HANDLER_OK;
}

static enum handler_result handle_set_vring_base(struct vhost_user_device *device,
						 struct message *message)
{
	struct vhost_user_vring_state state = payload_state(message);
	struct virtq *queue = queue_for(device, message, state.index);

	if (queue == NULL)
		return HANDLER_DROP;
	if (state.num > UINT16_MAX) {
		log_error("vhost-user SET_VRING_BASE: queue %u base %u is not a "
			  "split-ring index", state.index, state.num);
		return HANDLER_DROP;
	}
	/* Restarting where GET_VRING_BASE stopped (QEMU stop/cont, a
	 * snapshot) resumes the device and its connections. Any other base
	 * means the driver started over (guest reboot, driver reload): its
	 * sockets are gone, so are ours. */
	if (queue->stopped_at_valid && queue->stopped_at != state.num) {
		log_info("vhost-user SET_VRING_BASE: queue %u restarts at %u, not "
			 "where it stopped (%u): the guest driver was reset",
			 state.index, state.num, queue->stopped_at);
		notify_device_reset(device);
	}
	queue->stopped_at_valid = false;
	virtq_set_base(queue, (uint16_t)state.num);
	return HANDLER_OK;
}

static enum handler_result handle_get_vring_base(struct vhost_user_device *device,
						 struct message *message)
{
	struct vhost_user_vring_state state = payload_state(message);
	struct virtq *queue = queue_for(device, message, state.index);

	if (queue == NULL)
		return HANDLER_DROP;
	notify_queue_stopping(device, state.index);
	state.num = virtq_stop(queue);
	if (queue->kick_fd >= 0) {
		notify_kick_fd(device, state.index, queue->kick_fd, -1);
		close_fd(&queue->kick_fd);
	}
	memcpy(message->reply, &state, sizeof(state));
	message->reply_size = sizeof(state);
	return HANDLER_OK;
}

/* SET_VRING_KICK/CALL/ERR payload: index in bits 0-7, NOFD in bit 8. */
static struct virtq *vring_fd_target(struct vhost_user_device *device,
				     struct message *message, int *new_fd)
{
	uint64_t value = payload_u64(message);
	struct virtq *queue = queue_for(device, message,
					(uint32_t)(value & VHOST_USER_VRING_INDEX_MASK));

	*new_fd = -1;
	if (queue == NULL || message->fd_count != 1)
		return queue;
	/* A blocking call fd whose counter is full (or a full pipe) would
	 * hang the whole muxer in write(): every handed fd is made
	 * non-blocking here, or refused. */
	if (set_nonblocking(message->fds[0]) < 0) {
		log_error("vhost-user %s: cannot make the queue %u fd non-blocking: "
			  "%s", message->name, queue->index, strerror(errno));
		return NULL;
	}
	*new_fd = message->fds[0];
	message->fds[0] = -1;
	return queue;
}

static enum handler_result handle_set_vring_kick(struct vhost_user_device *device,
						 struct message *message)
{
	int new_fd;
	struct virtq *queue = vring_fd_target(device, message, &new_fd);

	if (queue == NULL)
		return HANDLER_DROP;
	/* Without a kick fd the backend would have to poll the ring; we do
	 * not (a poll loop is CPU the guest controls), so say so and stop. */
	if (new_fd < 0) {
		log_error("vhost-user SET_VRING_KICK: queue %u without a kick fd "
			  "(NOFD): ring polling is not supported; dropping the "
			  "frontend", queue->index);
		return HANDLER_DROP;
	}
	notify_kick_fd(device, queue->index, queue->kick_fd, new_fd);
	close_fd(&queue->kick_fd);
	queue->kick_fd = new_fd;
	queue->started = true;
	/* without PROTOCOL_FEATURES a ring is enabled as soon as it starts */
	if (!(device->features_acked & FEATURE(VHOST_USER_FEATURE_PROTOCOL_FEATURES)))
		queue->enabled = true;
	return HANDLER_OK;
}

static enum handler_result handle_set_vring_call(struct vhost_user_device *device,
						 struct message *message)
{
	int new_fd;
	struct virtq *queue = vring_fd_target(device, message, &new_fd);

	if (queue == NULL)
		return HANDLER_DROP;
	/* QEMU 7.2 swaps call fds on running rings: take the new one at once */
	close_fd(&queue->call_fd);
	queue->call_fd = new_fd;
	/* An interrupt sent on the old fd just before the swap may be lost
	 * (QEMU looks at its masked notifier only once). A spurious one is
	 * harmless to a virtio driver; a lost one can stall it. */
	if (virtq_is_ready(queue) && new_fd >= 0) {
		uint64_t one = 1;
		if (write(new_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			log_ratelimited(&device->log_limit, LOG_LEVEL_WARN,
					"vhost-user: signal on new call fd of queue %u: %s",
					queue->index, strerror(errno));
	}
	return HANDLER_OK;
}

static enum handler_result handle_set_vring_err(struct vhost_user_device *device,
						struct message *message)
{
	int new_fd;
	struct virtq *queue = vring_fd_target(device, message, &new_fd);

	if (queue == NULL)
		return HANDLER_DROP;
	close_fd(&queue->err_fd);
	queue->err_fd = new_fd;
	return HANDLER_OK;
}

static enum handler_result
handle_get_protocol_features(struct vhost_user_device *device,
			     struct message *message)
{
	reply_u64(message, device->protocol_features_offered);
	return HANDLER_OK;
}

static enum handler_result
handle_set_protocol_features(struct vhost_user_device *device,
			     struct message *message)
{
	uint64_t features = payload_u64(message);

	if (features & ~device->protocol_features_offered) {
		log_error("vhost-user SET_PROTOCOL_FEATURES: 0x%llx acks bits we did "
			  "not offer (0x%llx)", (unsigned long long)features,
			  (unsigned long long)device->protocol_features_offered);
		return HANDLER_DROP;
	}
	device->protocol_features_acked = features;
	return HANDLER_OK;
}

static enum handler_result handle_get_queue_num(struct vhost_user_device *device,
						struct message *message)
{
	(void)device;
	reply_u64(message, VSOCK_QUEUE_COUNT);
	return HANDLER_OK;
}

static enum handler_result handle_set_vring_enable(struct vhost_user_device *device,
						   struct message *message)
{
	struct vhost_user_vring_state state = payload_state(message);
	struct virtq *queue = queue_for(device, message, state.index);

	if (queue == NULL)
		return HANDLER_DROP;
	if (state.num > 1) {
		log_error("vhost-user SET_VRING_ENABLE: queue %u value %u (0 or 1)",
			  state.index, state.num);
		return HANDLER_DROP;
	}
	queue->enabled = state.num == 1;
	return HANDLER_OK;
}

/* offset, size, flags; size within limits and equal to what follows. */
static bool parse_config(const struct message *message, struct vhost_user_config *config)
{
	memcpy(config, message->payload, VHOST_USER_CONFIG_HEADER_SIZE);
	return config->size <= VHOST_USER_CONFIG_MAX &&
	       message->size == VHOST_USER_CONFIG_HEADER_SIZE + config->size;
}

static enum handler_result handle_get_config(struct vhost_user_device *device,
					     struct message *message)
{
	struct vhost_user_config config;
	uint8_t space[CONFIG_SPACE_SIZE];
	uint64_t cid_le = htole64(device->guest_cid);

	if (!parse_config(message, &config)) {
		log_error("vhost-user GET_CONFIG: size %u with payload size %u",
			  config.size, message->size);
		return HANDLER_DROP;
	}
	memcpy(space, &cid_le, sizeof(space));
	/* same offset/size/flags back; bytes past our config space read 0 */
	for (uint32_t i = 0; i < config.size; i++) {
		uint64_t position = (uint64_t)config.offset + i;
		config.region[i] = position < sizeof(space) ? space[position] : 0;
	}
	message->reply_size = VHOST_USER_CONFIG_HEADER_SIZE + config.size;
	memcpy(message->reply, &config, message->reply_size);
	return HANDLER_OK;
}

static enum handler_result handle_set_config(struct vhost_user_device *device,
					     struct message *message)
{
	struct vhost_user_config config;
	bool well_formed = parse_config(message, &config);

	/* The vsock config space is read-only for the driver. */
	log_ratelimited(&device->log_limit, LOG_LEVEL_WARN,
			"vhost-user SET_CONFIG (offset %u size %u%s) ignored: "
			"config space is read-only", config.offset, config.size,
			well_formed ? "" : ", malformed");
	return HANDLER_FAILED;
}

/* ---- the request table ------------------------------------------------ */

#define U64_SIZE sizeof(uint64_t)
#define STATE_SIZE sizeof(struct vhost_user_vring_state)

static const struct request_rule request_rules[VHOST_USER_REQUEST_MAX] = {
	[VHOST_USER_GET_FEATURES] = { "GET_FEATURES", handle_get_features,
		PAYLOAD_EXACT, 0, FDS_NONE, STATE_ANY, true, true },
	[VHOST_USER_SET_FEATURES] = { "SET_FEATURES", handle_set_features,
		PAYLOAD_EXACT, U64_SIZE, FDS_NONE, STATE_ANY, false },
	[VHOST_USER_SET_OWNER] = { "SET_OWNER", handle_set_owner,
		PAYLOAD_EXACT, 0, FDS_NONE, STATE_ANY, false, true },
	[VHOST_USER_RESET_OWNER] = { "RESET_OWNER", handle_reset_owner,
		PAYLOAD_EXACT, 0, FDS_NONE, STATE_ANY, false },
	[VHOST_USER_SET_MEM_TABLE] = { "SET_MEM_TABLE", handle_set_mem_table,
		PAYLOAD_AT_LEAST, 8, FDS_MEMORY, STATE_ANY, false },
	[VHOST_USER_SET_VRING_NUM] = { "SET_VRING_NUM", handle_set_vring_num,
		PAYLOAD_EXACT, STATE_SIZE, FDS_NONE, STATE_ANY, false },
	[VHOST_USER_SET_VRING_ADDR] = { "SET_VRING_ADDR", handle_set_vring_addr,
		PAYLOAD_EXACT, sizeof(struct vhost_user_vring_addr), FDS_NONE,
		STATE_ANY, false },
	[VHOST_USER_SET_VRING_BASE] = { "SET_VRING_BASE", handle_set_vring_base,
		PAYLOAD_EXACT, STATE_SIZE, FDS_NONE, STATE_ANY, false },
	[VHOST_USER_GET_VRING_BASE] = { "GET_VRING_BASE", handle_get_vring_base,
		PAYLOAD_EXACT, STATE_SIZE, FDS_NONE, STATE_ANY, true },
	[VHOST_USER_SET_VRING_KICK] = { "SET_VRING_KICK", handle_set_vring_kick,
		PAYLOAD_EXACT, U64_SIZE, FDS_VRING, STATE_ANY, false },
	[VHOST_USER_SET_VRING_CALL] = { "SET_VRING_CALL", handle_set_vring_call,
		PAYLOAD_EXACT, U64_SIZE, FDS_VRING, STATE_ANY, false },
	[VHOST_USER_SET_VRING_ERR] = { "SET_VRING_ERR", handle_set_vring_err,
		PAYLOAD_EXACT, U64_SIZE, FDS_VRING, STATE_ANY, false },
	[VHOST_USER_GET_PROTOCOL_FEATURES] = { "GET_PROTOCOL_FEATURES",
		handle_get_protocol_features,
		PAYLOAD_EXACT, 0, FDS_NONE, STATE_ANY, true, true },
	[VHOST_USER_SET_PROTOCOL_FEATURES] = { "SET_PROTOCOL_FEATURES",
		handle_set_protocol_features,
		PAYLOAD_EXACT, U64_SIZE, FDS_NONE, STATE_ANY, false, true },
	[VHOST_USER_GET_QUEUE_NUM] = { "GET_QUEUE_NUM", handle_get_queue_num,
		PAYLOAD_EXACT, 0, FDS_NONE, STATE_MQ, true, true },
	[VHOST_USER_SET_VRING_ENABLE] = { "SET_VRING_ENABLE", handle_set_vring_enable,
		PAYLOAD_EXACT, STATE_SIZE, FDS_NONE, STATE_PROTOCOL, false },
	[VHOST_USER_GET_CONFIG] = { "GET_CONFIG", handle_get_config,
		PAYLOAD_AT_LEAST, VHOST_USER_CONFIG_HEADER_SIZE, FDS_NONE,
		STATE_CONFIG, true },
	[VHOST_USER_SET_CONFIG] = { "SET_CONFIG", handle_set_config,
		PAYLOAD_AT_LEAST, VHOST_USER_CONFIG_HEADER_SIZE, FDS_NONE,
		STATE_CONFIG, false },
};

/* Names of the requests we do not serve, for the log line that drops the
 * frontend over one. */
static const char *const unsupported_names[VHOST_USER_REQUEST_MAX] = {
	[VHOST_USER_NONE] = "NONE",
	[VHOST_USER_SET_LOG_BASE] = "SET_LOG_BASE",
	[VHOST_USER_SET_LOG_FD] = "SET_LOG_FD",
	[VHOST_USER_SEND_RARP] = "SEND_RARP",
	[VHOST_USER_NET_SET_MTU] = "NET_SET_MTU",
	[VHOST_USER_SET_SLAVE_REQ_FD] = "SET_BACKEND_REQ_FD",
	[VHOST_USER_IOTLB_MSG] = "IOTLB_MSG",
	[VHOST_USER_SET_VRING_ENDIAN] = "SET_VRING_ENDIAN",
};

static const char *unsupported_name(uint32_t request)
{
	if (request < VHOST_USER_REQUEST_MAX && unsupported_names[request] != NULL)
		return unsupported_names[request];
	return "unknown";
}

static const struct request_rule *rule_for(uint32_t request)
{
	if (request >= VHOST_USER_REQUEST_MAX || request_rules[request].handler == NULL)
		return NULL;
	return &request_rules[request];
}

/* Check a complete message against its table row; logs why not. */
static bool message_allowed(const struct vhost_user_device *device,
			    const struct request_rule *rule,
			    const struct message *message)
{
	unsigned fds_expected = 0;
	bool state_ok = true;

	if (rule->payload_rule == PAYLOAD_EXACT ? message->size != rule->payload_size :
	    message->size < rule->payload_size) {
		log_error("vhost-user %s: payload size %u, expected %s%u", rule->name,
			  message->size,
			  rule->payload_rule == PAYLOAD_EXACT ? "" : "at least ",
			  rule->payload_size);
		return false;
	}
	switch (rule->fd_rule) {
	case FDS_NONE:
		break;
	case FDS_VRING: {
		uint64_t value = payload_u64(message);
		if (value & ~(uint64_t)(VHOST_USER_VRING_INDEX_MASK |
					VHOST_USER_VRING_NOFD_MASK)) {
			log_error("vhost-user %s: unknown bits in 0x%llx", rule->name,
				  (unsigned long long)value);
			return false;
		}
		fds_expected = (value & VHOST_USER_VRING_NOFD_MASK) ? 0 : 1;
		break;
	}
	case FDS_MEMORY:
		fds_expected = message->fd_count; /* checked by the handler */
		break;
	}
	if (message->fd_count != fds_expected) {
		log_error("vhost-user %s: %u fds, expected %u", rule->name,
			  message->fd_count, fds_expected);
		return false;
	}
	switch (rule->state_rule) {
	case STATE_ANY:
		break;
	case STATE_MQ:
		state_ok = device->protocol_features_acked &
			   FEATURE(VHOST_USER_PROTOCOL_F_MQ);
		break;
	case STATE_CONFIG:
		state_ok = device->protocol_features_acked &
			   FEATURE(VHOST_USER_PROTOCOL_F_CONFIG);
		break;
	case STATE_PROTOCOL:
		state_ok = device->features_acked &
			   FEATURE(VHOST_USER_FEATURE_PROTOCOL_FEATURES);
		break;
	}
	if (!state_ok) {
		log_error("vhost-user %s: sent before the feature it needs was "
			  "negotiated", rule->name);
		return false;
	}
	/* the spec: SET_OWNER opens the session; only the feature queries
	 * that QEMU sends ahead of it are served without one */
	if (!rule->before_owner && !device->owner_set) {
		log_error("vhost-user %s: sent before SET_OWNER; dropping the "
			  "frontend", rule->name);
		return false;
	}
	return true;
}

/* ---- framing ---------------------------------------------------------- */

static int send_reply(struct vhost_user_device *device, uint32_t request,
		      const void *payload, uint32_t size)
{
	uint8_t frame[HEADER_SIZE + sizeof(struct vhost_user_config)];
	struct vhost_user_header header = {
		.request = request,
		.flags = VHOST_USER_VERSION | VHOST_USER_FLAG_REPLY,
		.size = size,
	};
	size_t length = HEADER_SIZE + size;
	ssize_t sent;

	memcpy(frame, &header, HEADER_SIZE);
	memcpy(frame + HEADER_SIZE, payload, size);
	sent = send(device->fd, frame, length, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (sent != (ssize_t)length) {
		log_error("vhost-user: reply to request %u not sent whole (%zd of "
			  "%zu): %s", request, sent, length,
			  sent < 0 ? strerror(errno) : "short write");
		return -1;
	}
	return 0;
}

static void read_header(const struct vhost_user_device *device,
			struct vhost_user_header *header)
{
	memcpy(header, device->buffer, HEADER_SIZE);
}

/* Header checks done as soon as the 12 bytes are in, before the payload. */
static int check_header(const struct vhost_user_header *header)
{
	const struct request_rule *rule = rule_for(header->request);

	if ((header->flags & VHOST_USER_VERSION_MASK) != VHOST_USER_VERSION) {
		log_error("vhost-user: request %u with version %u (flags 0x%x)",
			  header->request, header->flags & VHOST_USER_VERSION_MASK,
			  header->flags);
		return -1;
	}
	if (rule == NULL) {
		log_error("vhost-user: unsupported request %u (%s)",
			  header->request, unsupported_name(header->request));
		return -1;
	}
	if (header->size > VHOST_USER_MAX_PAYLOAD) {
		log_error("vhost-user %s: payload size %u exceeds %zu", rule->name,
			  header->size, VHOST_USER_MAX_PAYLOAD);
		return -1;
	}
	return 0;
}

static void close_pending_fds(struct vhost_user_device *device)
{
	for (unsigned i = 0; i < device->pending_fd_count; i++)
		close_fd(&device->pending_fds[i]);
	device->pending_fd_count = 0;
}

/* Handle the complete message in the buffer; 0 or -1 (drop). */
static int handle_message(struct vhost_user_device *device)
{
	struct vhost_user_header header;
	const struct request_rule *rule;
	struct message message;
	bool was_ready[VSOCK_QUEUE_COUNT];
	enum handler_result outcome = HANDLER_DROP;
	int result = -1;

	read_header(device, &header);
	rule = rule_for(header.request); /* non-NULL: check_header passed */
	message = (struct message){
		.request = header.request,
		.flags = header.flags,
		.size = header.size,
		.payload = device->buffer + HEADER_SIZE,
		.name = rule->name,
		.fds = device->pending_fds,
		.fd_count = device->pending_fd_count,
	};
	if (!message_allowed(device, rule, &message))
		goto out;
	for (unsigned i = 0; i < VSOCK_QUEUE_COUNT; i++)
		was_ready[i] = virtq_is_ready(&device->queues[i]);
	outcome = rule->handler(device, &message);
	notify_readiness(device, was_ready);
	device->messages_handled++;
	log_debug("vhost-user: %s handled (%s)", rule->name,
		  outcome == HANDLER_OK ? "ok" : outcome == HANDLER_FAILED ?
		  "failed" : "dropping frontend");
	if (outcome == HANDLER_DROP)
		goto out;
	if (rule->has_reply) {
		result = send_reply(device, header.request, message.reply,
				    message.reply_size);
	} else if ((header.flags & VHOST_USER_FLAG_NEED_REPLY) &&
		   (device->protocol_features_acked &
		    FEATURE(VHOST_USER_PROTOCOL_F_REPLY_ACK))) {
		uint64_t status = outcome == HANDLER_OK ? 0 : 1;
		result = send_reply(device, header.request, &status, sizeof(status));
	} else {
		result = 0;
	}
out:
	close_pending_fds(device); /* whatever the handler did not take */
	device->buffered = 0;
	return result;
}

enum receive_status { RECEIVED, RECEIVE_AGAIN, RECEIVE_EOF, RECEIVE_ERROR };

/* Keep the fds of one recvmsg; more than VHOST_USER_MAX_FDS per message is
 * an error (the extra ones are closed). */
static bool collect_fds(struct vhost_user_device *device, const struct msghdr *header)
{
	struct fd_passing_result result = fd_passing_collect(
		header, device->pending_fds + device->pending_fd_count,
		VHOST_USER_MAX_FDS - device->pending_fd_count);

	device->pending_fd_count += result.kept;
	return result.closed == 0;
}

static enum receive_status receive_bytes(struct vhost_user_device *device,
					 size_t want)
{
	union {
		struct cmsghdr align;
		char bytes[CMSG_SPACE(sizeof(int) * VHOST_USER_MAX_FDS)];
	} control;
	struct iovec iov = {
		.iov_base = device->buffer + device->buffered,
		.iov_len = want,
	};
	struct msghdr header = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = control.bytes,
		.msg_controllen = sizeof(control.bytes),
	};
	ssize_t received;

	do {
		received = recvmsg(device->fd, &header, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	} while (received < 0 && errno == EINTR);
	if (received < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return RECEIVE_AGAIN;
		log_error("vhost-user: recvmsg failed: %s", strerror(errno));
		return RECEIVE_ERROR;
	}
	if (!collect_fds(device, &header) || (header.msg_flags & MSG_CTRUNC)) {
		log_error("vhost-user: more than %u fds with one message",
			  VHOST_USER_MAX_FDS);
		return RECEIVE_ERROR;
	}
	if (received == 0)
		return RECEIVE_EOF;
	device->buffered += (size_t)received;
	return RECEIVED;
}

int vhost_user_handle_readable(struct vhost_user_device *device)
{
	int result = -1;

	if (device->fd < 0)
		goto out;
	for (;;) {
		struct vhost_user_header header;
		size_t want;

		if (device->buffered < HEADER_SIZE) {
			want = HEADER_SIZE - device->buffered;
		} else {
			read_header(device, &header);
			if (check_header(&header) < 0)
				goto out;
			want = HEADER_SIZE + header.size - device->buffered;
		}
		if (want == 0) {
			if (handle_message(device) < 0)
				goto out;
			continue;
		}
		switch (receive_bytes(device, want)) {
		case RECEIVED:
			break;
		case RECEIVE_AGAIN:
			result = 0;
			goto out;
		case RECEIVE_EOF:
			log_info("vhost-user: frontend disconnected");
			goto out;
		case RECEIVE_ERROR:
			goto out;
		}
	}
out:
	return result;
}

/* ---- lifetime --------------------------------------------------------- */

void vhost_user_init(struct vhost_user_device *device, uint64_t guest_cid,
		     uint16_t max_queue_size,
		     const struct vhost_user_callbacks *callbacks, void *opaque)
{
	memset(device, 0, sizeof(*device));
	device->fd = -1;
	device->guest_cid = guest_cid;
	device->max_queue_size = (max_queue_size == 0 || max_queue_size > VIRTQ_MAX_SIZE) ?
				 VIRTQ_MAX_SIZE : max_queue_size;
	device->features_offered = FEATURE(VIRTIO_FEATURE_VERSION_1) |
				   FEATURE(VIRTIO_FEATURE_RING_EVENT_IDX) |
				   FEATURE(VIRTIO_FEATURE_RING_INDIRECT_DESC) |
				   FEATURE(VHOST_USER_FEATURE_PROTOCOL_FEATURES);
	device->protocol_features_offered = FEATURE(VHOST_USER_PROTOCOL_F_MQ) |
					    FEATURE(VHOST_USER_PROTOCOL_F_REPLY_ACK) |
					    FEATURE(VHOST_USER_PROTOCOL_F_CONFIG);
	device->callbacks = callbacks;
	device->opaque = opaque;
	virtq_init(&device->queues[VSOCK_QUEUE_RX], VIRTQ_DEVICE_WRITES);
	virtq_init(&device->queues[VSOCK_QUEUE_TX], VIRTQ_DEVICE_READS);
	virtq_init(&device->queues[VSOCK_QUEUE_EVENT], VIRTQ_DEVICE_WRITES);
	device->queues[VSOCK_QUEUE_RX].index = VSOCK_QUEUE_RX;
	device->queues[VSOCK_QUEUE_TX].index = VSOCK_QUEUE_TX;
	device->queues[VSOCK_QUEUE_EVENT].index = VSOCK_QUEUE_EVENT;
}

void vhost_user_attach(struct vhost_user_device *device, int fd)
{
	if (device->fd >= 0)
		vhost_user_detach(device);
	if (set_nonblocking(fd) < 0)
		log_warn("vhost-user: cannot make the frontend fd non-blocking: %s",
			 strerror(errno));
	device->fd = fd;
	device->buffered = 0;
	device->attach_count++;
	log_info("vhost-user: frontend attached (connection %llu)",
		 (unsigned long long)device->attach_count);
}

void vhost_user_detach(struct vhost_user_device *device)
{
	bool was_ready[VSOCK_QUEUE_COUNT];

	if (device->fd < 0)
		return;
	/* kick fds out of the muxer's epoll set, queues stopped, then the
	 * connections dropped before their memory goes away */
	for (unsigned i = 0; i < VSOCK_QUEUE_COUNT; i++) {
		struct virtq *queue = &device->queues[i];
		was_ready[i] = virtq_is_ready(queue);
		if (queue->kick_fd >= 0) {
			notify_kick_fd(device, i, queue->kick_fd, -1);
			close_fd(&queue->kick_fd);
		}
		virtq_stop(queue);
	}
	notify_readiness(device, was_ready);
	notify_device_reset(device);
	device->features_acked = 0;
	device->protocol_features_acked = 0;
	device->owner_set = false;
	for (unsigned i = 0; i < VSOCK_QUEUE_COUNT; i++)
		reset_queue(device, i);
	guest_memory_clear(&device->memory);
	close_fd(&device->fd);
	close_pending_fds(device);
	device->buffered = 0;
}

bool vhost_user_is_attached(const struct vhost_user_device *device)
{
	return device->fd >= 0;
}
