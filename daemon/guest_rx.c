/*
 * guest_rx.c - the RX queue (host -> guest): each pass gives the
 * connections with work their turn, in order, and sends the RSTs owed for
 * connections that are gone, until the work or the guest's buffers run
 * out.
 *
 * Why turns: one connection with a lot of host data must not starve the
 * others; a connection gets one turn per pass (conn_rx_turn: one control
 * packet, or one readv into up to MUXER_RX_BATCH buffers) and goes to the
 * back. RSTs owed take turns with them, MUXER_RX_BATCH at a time.
 *
 * Owns: the order of RX work and the pass budget. Never: decides what a
 * connection sends (conn.c does), or loops without bound: a pass stops
 * after MUXER_RX_PACKET_BUDGET turns or MUXER_RX_REJECT_BUDGET unusable
 * buffers, and the loop comes back after other events.
 */
#include "guest_rx.h"

#include "conn.h"
#include "muxer.h"
#include "rx_buffers.h"

#define MUXER_RX_PACKET_BUDGET 1024u
/* Unusable guest RX buffers handed back per guest_rx_process. */
#define MUXER_RX_REJECT_BUDGET 256u

/* Send an RST for a connection that is gone. false: no RX buffer. */
static bool rx_send_orphan_rst(struct muxer *muxer, const struct rst_owed *orphan)
{
	struct vsock_header header;
	int slot = rx_buffers_take(muxer);
	if (slot < 0) {
		muxer->stats.waits_for_rx_buffers++;
		return false;
	}
	rx_buffers_header(muxer, &header, orphan->local_port, orphan->peer_port,
		    VSOCK_OP_RST);
	rx_buffers_publish(muxer, slot, &header);
	return true;
}

static struct conn *rx_fifo_pop(struct muxer *muxer)
{
	struct rx_link *link = rx_queue_pop(&muxer->rx_work);
	return link ? conn_of_rx_link(link) : NULL;
}

/* Send up to count queued RSTs; false when the guest ran out of RX
 * buffers. */
static bool rx_send_orphans(struct muxer *muxer, uint32_t count)
{
	for (; count > 0 && muxer->rsts.count > 0; count--) {
		if (!rx_send_orphan_rst(muxer, rst_queue_oldest(&muxer->rsts)))
			return false;
		rst_queue_pop(&muxer->rsts);
	}
	return true;
}

/*
 * false when the guest ran out of RX buffers. RSTs owed for connections
 * that are gone take turns with the live connections, MUXER_RX_BATCH per
 * turn: a burst of closing connections must not starve every connection
 * with data until each RST is out (their queue is bounded: guest packets
 * pause at MUXER_ORPHAN_TX_PAUSE).
 */
static bool rx_drain_work(struct muxer *muxer, unsigned *budget)
{
	while (*budget > 0) {
		struct conn *conn;
		if (!rx_send_orphans(muxer, MUXER_RX_BATCH))
			return false;
		conn = rx_fifo_pop(muxer);
		if (!conn) {
			if (muxer->rsts.count == 0)
				return true;
			continue;
		}
		(*budget)--;
		if (conn_rx_turn(muxer, conn) == CONN_RX_NO_BUFFERS) {
			rx_queue_push_front(&muxer->rx_work, &conn->rx_work);
			return false;
		}
	}
	return true;
}

void guest_rx_process(struct muxer *muxer)
{
	struct virtq *queue = &muxer->device.queues[VSOCK_QUEUE_RX];
	unsigned budget = MUXER_RX_PACKET_BUDGET;

	muxer->rx_backlog = false;
	if (!virtq_is_ready(queue))
		return;
	/* a guest reposting unusable buffers as fast as they come back must
	 * not keep the loop here */
	muxer->rx_rejects_left = MUXER_RX_REJECT_BUDGET;
	while (!rx_queue_empty(&muxer->rx_work) || muxer->rsts.count > 0) {
		if (rx_drain_work(muxer, &budget)) {
			/* work left with buffers to spare: next loop turn */
			muxer->rx_backlog = budget == 0 &&
					    (!rx_queue_empty(&muxer->rx_work) || muxer->rsts.count > 0);
			break;
		}
		if (muxer->rx_rejects_left == 0) {
			muxer->rx_backlog = true;  /* after the other events */
			break;
		}
		/* out of buffers: ask for a kick, unless some arrived meanwhile */
		if (!virtq_enable_kicks(queue))
			break;
	}
	virtq_notify(queue);
	if (muxer->tx_paused_for_rst && muxer->rsts.count < MUXER_ORPHAN_TX_PAUSE / 2) {
		muxer->tx_paused_for_rst = false;
		muxer->tx_backlog = true;
	}
}

