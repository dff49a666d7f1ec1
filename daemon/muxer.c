/*
 * muxer.c - the muxer's event loop: set-up, tear-down, and which module
 * each event goes to.
 *
 * Why this shape: the guest-to-host path writes straight from the guest's
 * TX buffers to the host socket (guest_tx.c, conn.c); the host-to-guest
 * path reads straight into guest RX buffers, several at a time with one
 * readv (guest_rx.c, conn.c). Nothing is allocated per packet. Host
 * sockets are registered edge-triggered, so a connection with no guest
 * credit or no RX buffers is simply not looked at until credit or buffers
 * arrive (no busy loop); EPOLLOUT interest exists only while a
 * connection's TX ring holds data. Work that a budget cut short (TX, RX)
 * resumes after the next epoll_wait, which then does not sleep.
 *
 * Owns: the epoll set and the order in which work is done each turn.
 * Never: blocks (every fd is non-blocking), or lets one guest, frontend or
 * host client stall the others: TX and RX work per turn are bounded.
 */
#include "muxer.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "broker_send.h"
#include "events.h"
#include "frontend.h"
#include "guest_event.h"
#include "guest_rx.h"
#include "guest_tx.h"
#include "rx_buffers.h"
#include "vsockmux/iov.h"
#include "vsockmux/ipc.h"

#define MUXER_ORPHAN_EXTRA (2u * MUXER_ORPHAN_TX_PAUSE)

/* ------------------------------------------------------------------------
 * the loop
 */

static void handle_timer(struct muxer *muxer)
{
	struct deadline_entry *entry;
	uint64_t now = monotonic_ns();
	deadline_acknowledge(&muxer->deadlines);
	while ((entry = deadline_pop_expired(&muxer->deadlines, now)) != NULL) {
		struct conn *conn = (struct conn *)((char *)entry -
						    offsetof(struct conn, deadline));
		conn_on_deadline(muxer, conn);
	}
	deadline_reprogram(&muxer->deadlines);
}

static void handle_event(struct muxer *muxer, const struct epoll_event *event)
{
	struct tag tag = tag_decode(event->data.u64);
	struct conn *conn;

	switch (tag.kind) {
	case EVENT_CHANNEL:
		muxer_handle_channel(muxer);
		break;
	case EVENT_VHOST_USER:
		if (vhost_user_is_attached(&muxer->device) &&
		    vhost_user_handle_readable(&muxer->device) < 0)
			frontend_detach(muxer);
		break;
	case EVENT_KICK_RX:
		virtq_drain_kick(&muxer->device.queues[VSOCK_QUEUE_RX]);
		guest_rx_process(muxer);
		break;
	case EVENT_KICK_TX:
		virtq_drain_kick(&muxer->device.queues[VSOCK_QUEUE_TX]);
		guest_tx_process(muxer);
		break;
	case EVENT_KICK_EVENT:
		virtq_drain_kick(&muxer->device.queues[VSOCK_QUEUE_EVENT]);
		guest_event_process(muxer);
		break;
	case EVENT_TIMER:
		handle_timer(muxer);
		break;
	case EVENT_HOST:
		conn = conn_table_by_slot(&muxer->table, tag.slot, tag.generation);
		if (conn)
			conn_on_host_event(muxer, conn, event->events);
		break;
	default:
		log_error("unexpected epoll tag %#" PRIx64, event->data.u64);
		break;
	}
}

int muxer_init(struct muxer *muxer, const struct vsockmuxd_options *options,
	       int channel_fd)
{
	int result;

	memset(muxer, 0, sizeof(*muxer));
	muxer->options = options;
	muxer->channel_fd = channel_fd;
	muxer->epoll_fd = -1;
	muxer->deadlines.timer_fd = -1;
	muxer->stats.started_ns = monotonic_ns();
	muxer->audit_log.burst = MUXER_AUDIT_LINES_PER_SECOND;
	vhost_user_init(&muxer->device, options->guest_cid, options->queue_size,
			&frontend_callbacks, muxer);

	muxer->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (muxer->epoll_fd < 0) {
		result = -errno;
		log_error("epoll_create1: %s", strerror(errno));
		goto fail;
	}
	result = deadline_queue_init(&muxer->deadlines);
	if (result < 0) {
		log_error("timerfd: %s", strerror(-result));
		goto fail;
	}
	deadline_set_timeout(&muxer->deadlines, CONN_DEADLINE_HANDSHAKE,
			     CONN_HANDSHAKE_TIMEOUT_NS);
	deadline_set_timeout(&muxer->deadlines, CONN_DEADLINE_CONNECT,
			     CONN_CONNECT_TIMEOUT_NS);
	deadline_set_timeout(&muxer->deadlines, CONN_DEADLINE_SHUTDOWN,
			     CONN_SHUTDOWN_TIMEOUT_NS);
	deadline_set_timeout(&muxer->deadlines, CONN_DEADLINE_BROKER,
			     CONN_BROKER_TIMEOUT_NS);
	result = conn_table_init(&muxer->table, options->max_connections);
	if (result < 0) {
		log_error("connection table for %" PRIu32 " connections: %s",
			  options->max_connections, strerror(-result));
		goto fail;
	}
	result = rx_buffers_init(muxer);
	if (result < 0) {
		log_error("RX segment pool: out of memory");
		goto fail;
	}
	result = rst_queue_init(&muxer->rsts, options->max_connections + MUXER_ORPHAN_EXTRA);
	if (result < 0) {
		log_error("RST queue: out of memory");
		goto fail;
	}
	result = events_add(muxer->epoll_fd, muxer->deadlines.timer_fd, EPOLLIN,
			    tag_encode(EVENT_TIMER, 0, 0));
	if (result < 0)
		goto fail;
	if (channel_fd >= 0) {
		result = events_add(muxer->epoll_fd, channel_fd, EPOLLIN,
				    tag_encode(EVENT_CHANNEL, 0, 0));
		if (result < 0)
			goto fail;
	}
	muxer->running = true;
	return 0;
fail:
	muxer_destroy(muxer);
	return result;
}

void muxer_destroy(struct muxer *muxer)
{
	if (muxer->table.slots)
		frontend_drop_all_connections(muxer, "muxer shutting down");
	vhost_user_detach(&muxer->device);
	/* before the table: abandoned slots may still sit in its lists */
	deadline_queue_destroy(&muxer->deadlines);
	conn_table_destroy(&muxer->table);
	rst_queue_destroy(&muxer->rsts);
	rx_buffers_destroy(muxer);
	if (muxer->epoll_fd >= 0)
		close(muxer->epoll_fd);
	muxer->epoll_fd = -1;
}

int muxer_run(const struct vsockmuxd_options *options, int channel_fd,
	      int (*lock_down)(void *opaque), void *opaque)
{
	struct epoll_event events[64];
	struct muxer *muxer = calloc(1, sizeof(*muxer));
	int exit_code = 1;

	if (!muxer) {
		log_error("out of memory");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	if (muxer_init(muxer, options, channel_fd) < 0)
		goto out;
	if (lock_down && lock_down(opaque) != 0) {
		muxer_destroy(muxer);
		goto out;
	}
	while (muxer->running) {
		int timeout = muxer->tx_backlog || muxer->rx_backlog ? 0 : -1;
		int count = epoll_wait(muxer->epoll_fd, events, 64, timeout);
		if (count < 0) {
			if (errno == EINTR)
				continue;
			log_error("epoll_wait: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < count && muxer->running; i++)
			handle_event(muxer, &events[i]);
		if (muxer->tx_backlog)
			guest_tx_process(muxer);
		if (muxer->rx_backlog || !rx_queue_empty(&muxer->rx_work) || muxer->rsts.count > 0)
			guest_rx_process(muxer);
		if (muxer->transport_reset_owed)
			guest_event_process(muxer);
		if (muxer->owe_vmm_detached || muxer->channel_out_armed ||
		    muxer->host_accept_told != muxer->host_accept_paused)
			broker_send_owed(muxer);
	}
	exit_code = muxer->exit_code;
	muxer_destroy(muxer);
out:
	free(muxer);
	return exit_code;
}
