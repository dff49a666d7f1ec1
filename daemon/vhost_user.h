/*
 * vhost_user.h - the backend side of one vhost-user frontend connection.
 *
 * Owns: the frontend socket fd (handed over by the broker), message
 * framing with fds, the dispatch table (request -> handler, payload size
 * rule, which states it is allowed in), feature negotiation, the guest
 * memory table, both virtqueues' configuration, and the config space
 * (guest CID).
 * Never: blocks on the frontend. Bytes are read non-blocking into a
 * per-connection buffer; a frontend that sends half a message and stalls
 * stalls nothing else. Never touches vsock connections: the muxer learns
 * about queue changes through the callbacks.
 */
#ifndef VSOCKMUX_VHOST_USER_H
#define VSOCKMUX_VHOST_USER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "guest_memory.h"
#include "virtq.h"
#include "vsockmux/log.h"
#include "vsockmux/vhost_user_wire.h"

#define VSOCK_QUEUE_RX 0
#define VSOCK_QUEUE_TX 1
/* The event queue: QEMU keeps it in the VMM and never configures it here;
 * crosvm and cloud-hypervisor hand it to the backend with the other two. */
#define VSOCK_QUEUE_EVENT 2
#define VSOCK_QUEUE_COUNT 3

/* What the muxer must know about. All may be NULL. */
struct vhost_user_callbacks {
	/* A queue's kick fd changed (old_fd may be -1, new_fd may be -1). The
	 * muxer removes old_fd from and adds new_fd to its epoll set before
	 * the old one is closed by vhost_user. */
	void (*kick_fd_changed)(void *opaque, unsigned queue_index, int old_fd,
				int new_fd);
	/* A queue became ready (started + enabled + mapped) or stopped. */
	void (*queue_state_changed)(void *opaque, unsigned queue_index,
				    bool ready);
	/* Guest memory is about to be unmapped or replaced, or the device is
	 * reset (RESET_OWNER): every vsock connection must be dropped now,
	 * because their pending chains point into the old mapping. */
	void (*device_reset)(void *opaque);
	/* Queue queue_index is about to stop (GET_VRING_BASE) or the guest
	 * memory is about to be replaced while the rings run (memory
	 * hot-plug): buffers the muxer popped but has not used must be handed
	 * back now, while the ring is still ours and the old mapping valid. */
	void (*queue_stopping)(void *opaque, unsigned queue_index);
};

struct vhost_user_device {
	int fd;                         /* frontend connection, -1 if none */
	uint64_t guest_cid;
	uint16_t max_queue_size;        /* --queue-size: largest SET_VRING_NUM */
	uint64_t features_offered;
	uint64_t features_acked;
	uint64_t protocol_features_offered;
	uint64_t protocol_features_acked;
	bool owner_set;
	struct guest_memory memory;
	struct virtq queues[VSOCK_QUEUE_COUNT];

	/* receive buffer for one message (header + payload) and its fds */
	uint8_t buffer[sizeof(struct vhost_user_header) + VHOST_USER_MAX_PAYLOAD];
	size_t buffered;
	int pending_fds[VHOST_USER_MAX_FDS];
	unsigned pending_fd_count;

	uint64_t messages_handled;
	uint64_t attach_count;
	struct log_ratelimit log_limit;

	const struct vhost_user_callbacks *callbacks;
	void *opaque;
};

/* Set the device up with no frontend. */
void vhost_user_init(struct vhost_user_device *device, uint64_t guest_cid,
		     uint16_t max_queue_size,
		     const struct vhost_user_callbacks *callbacks, void *opaque);

/* Take over a frontend connection (fd becomes non-blocking). */
void vhost_user_attach(struct vhost_user_device *device, int fd);

/*
 * Read what is available on the frontend fd and handle every complete
 * message. Returns 0 to keep going, -1 when the frontend must be dropped
 * (EOF, read error, unknown or malformed message: logged here). The caller
 * then calls vhost_user_detach.
 */
int vhost_user_handle_readable(struct vhost_user_device *device);

/* Close the frontend, reset both queues (kick_fd_changed to -1 first),
 * unmap memory (device_reset first). Safe to call twice. */
void vhost_user_detach(struct vhost_user_device *device);

bool vhost_user_is_attached(const struct vhost_user_device *device);

#endif
