/*
 * frontend.c - the VMM's side of the device: taking a frontend over from
 * the broker, what the vhost-user layer tells the muxer (kick fds, rings
 * starting and stopping, a device reset), and letting the frontend go.
 *
 * Why the muxer cares: a ring that stops takes the RX buffers the muxer
 * holds with it, and a reset means the guest's sockets are gone, so are
 * ours; a frontend that leaves must be reported to the broker before it
 * accepts the next one.
 *
 * Owns: the frontend's registrations in the epoll set, and owing the
 * guest a transport reset on every attach. Never: touches a
 * ring the vhost-user layer has not started, or keeps a connection of a
 * VM that is gone.
 */
#include "frontend.h"

#include <sys/epoll.h>
#include <unistd.h>

#include "conn.h"
#include "events.h"
#include "muxer.h"
#include "rx_buffers.h"
#include "vsockmux/log.h"

static void on_kick_fd_changed(void *opaque, unsigned queue_index, int old_fd,
			       int new_fd)
{
	struct muxer *muxer = opaque;
	static const enum event_kind kinds[VSOCK_QUEUE_COUNT] = {
		[VSOCK_QUEUE_RX] = EVENT_KICK_RX,
		[VSOCK_QUEUE_TX] = EVENT_KICK_TX,
		[VSOCK_QUEUE_EVENT] = EVENT_KICK_EVENT,
	};
	enum event_kind kind = kinds[queue_index];
	if (old_fd >= 0)
		events_remove(muxer->epoll_fd, old_fd);
	if (new_fd >= 0)
		(void)events_add(muxer->epoll_fd, new_fd, EPOLLIN,
				 tag_encode(kind, 0, 0));
}

static void on_queue_state_changed(void *opaque, unsigned queue_index, bool ready)
{
	struct muxer *muxer = opaque;
	log_debug("queue %u %s", queue_index, ready ? "ready" : "stopped");
	if (!ready) {
		/* A ring stopped without GET_VRING_BASE (reset, detach) takes
		 * its popped buffers with it: never push them into a restarted
		 * one. A ring merely disabled keeps them. */
		if (queue_index == VSOCK_QUEUE_RX &&
		    !muxer->device.queues[VSOCK_QUEUE_RX].started)
			rx_buffers_forget(muxer);
		return;
	}
	/* Not now: the frontend may have queued more set-up (QEMU 7.2 sends
	 * SET_VRING_CALL right behind SET_VRING_ENABLE). Ring work waits until
	 * this turn's vhost-user messages are all handled. */
	if (queue_index == VSOCK_QUEUE_TX)
		muxer->tx_backlog = true;
	else if (queue_index == VSOCK_QUEUE_RX)
		muxer->rx_backlog = true;
	/* the event queue is looked at while a reset is owed (guest_event.c) */
}

void frontend_drop_all_connections(struct muxer *muxer, const char *reason)
{
	for (uint32_t slot = 0; slot < muxer->table.capacity; slot++) {
		struct conn *conn = &muxer->table.slots[slot];
		if (conn->state != CONN_FREE && conn->state != CONN_ABANDONED)
			conn_destroy(muxer, conn, reason);
	}
	rst_queue_clear(&muxer->rsts);
	rx_buffers_forget(muxer);
	muxer->tx_backlog = false;
	muxer->tx_paused_for_rst = false;
}

static void on_device_reset(void *opaque)
{
	frontend_drop_all_connections(opaque, "VMM reset the device");
}

static void on_queue_stopping(void *opaque, unsigned queue_index)
{
	struct muxer *muxer = opaque;
	if (queue_index == VSOCK_QUEUE_RX)
		rx_buffers_return_spares(muxer);
}

const struct vhost_user_callbacks frontend_callbacks = {
	.kick_fd_changed = on_kick_fd_changed,
	.queue_state_changed = on_queue_state_changed,
	.device_reset = on_device_reset,
	.queue_stopping = on_queue_stopping,
};

void frontend_detach(struct muxer *muxer)
{
	if (!vhost_user_is_attached(&muxer->device))
		return;
	/* Unregister before closing: the broker may still hold its copy of
	 * this socket for a moment, and then the registration would outlive
	 * our close() and keep reporting the hang-up. */
	events_remove(muxer->epoll_fd, muxer->device.fd);
	log_info("vhost-user frontend detached; every connection reset");
	vhost_user_detach(&muxer->device);
	muxer->owe_vmm_detached = true;
}

void frontend_attach(struct muxer *muxer, int fd)
{
	if (vhost_user_is_attached(&muxer->device)) {
		log_error("broker sent a second frontend while one is attached; closing it");
		close(fd);
		return;
	}
	/* RSTs owed to the previous VM's guest mean nothing to this one */
	rst_queue_clear(&muxer->rsts);
	/* If this frontend gives us the event queue, the guest hears that any
	 * connection it still holds from before is gone. */
	muxer->transport_reset_owed = true;
	vhost_user_attach(&muxer->device, fd);
	if (events_add(muxer->epoll_fd, fd, EPOLLIN,
		       tag_encode(EVENT_VHOST_USER, 0, 0)) < 0)
		frontend_detach(muxer);
}

