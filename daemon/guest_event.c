/*
 * guest_event.c - the vsock event queue (queue 2), when the frontend hands
 * it to us.
 *
 * Why: a guest whose backend went away and came back (a frontend that
 * reconnects, a daemon restarted under a running VM) still holds sockets
 * whose other end no longer exists. VIRTIO_VSOCK_EVENT_TRANSPORT_RESET
 * makes the guest driver reset them all at once instead of waiting for
 * each to time out. QEMU keeps this queue in the VMM and never configures
 * it here; then the reset stays owed and nothing is posted.
 *
 * Owns: the event queue's buffers (popped and answered at once).
 * Never: holds an event buffer across loop turns, or posts more than one
 * reset per frontend attach.
 */
#include "guest_event.h"

#include <sys/uio.h>

#include "muxer.h"
#include "vsockmux/iov.h"
#include "vsockmux/log.h"

/* struct virtio_vsock_event: a little-endian u32 id. */
#define VSOCK_EVENT_TRANSPORT_RESET 0u
#define VSOCK_EVENT_SIZE 4u
/* An event buffer is one small writable descriptor; a few more are fine. */
#define EVENT_SEGMENTS 4u

void guest_event_process(struct muxer *muxer)
{
	struct virtq *queue = &muxer->device.queues[VSOCK_QUEUE_EVENT];
	const uint8_t event[VSOCK_EVENT_SIZE] = {
		VSOCK_EVENT_TRANSPORT_RESET & 0xffu, 0, 0, 0,
	};
	struct iovec iov[EVENT_SEGMENTS];
	struct virtq_chain chain;

	if (!muxer->transport_reset_owed || !virtq_is_ready(queue))
		return;
	do {
		while (muxer->transport_reset_owed &&
		       virtq_pop(queue, &muxer->device.memory, iov, EVENT_SEGMENTS,
				 &chain) == 1) {
			if (chain.length < VSOCK_EVENT_SIZE) {
				log_ratelimited(&muxer->packet_log, LOG_LEVEL_WARN,
						"event queue buffer of %zu bytes is too small "
						"for an event; returned unused", chain.length);
				virtq_push(queue, chain.head, 0);
				continue;
			}
			iov_copy_in(iov, chain.iov_count, 0, event, sizeof(event));
			virtq_push(queue, chain.head, VSOCK_EVENT_SIZE);
			muxer->transport_reset_owed = false;
			muxer->stats.transport_resets++;
			log_info("guest told to reset its vsock connections (transport reset)");
		}
		/* out of buffers: ask for a kick, unless one arrived meanwhile */
	} while (muxer->transport_reset_owed && virtq_enable_kicks(queue));
	virtq_notify(queue);
}
