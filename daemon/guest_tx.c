/*
 * guest_tx.c - the TX queue (guest -> host): every chain the guest posts
 * is checked here before conn.c sees its packet.
 *
 * Why copy the header: the guest can change its memory while we look; the
 * header is copied out once and only the copy is validated and used. The
 * payload is not copied: conn.c writes it to the host socket straight from
 * guest memory.
 *
 * Owns: header validation (length, CIDs, length against the chain) and
 * the TX budget per turn. Never: lets a packet with a wrong CID or length
 * reach a connection; takes guest packets while too many RSTs wait for RX
 * buffers (the guest gets back-pressure instead of lost RSTs).
 */
#include "guest_tx.h"

#include <inttypes.h>

#include "conn.h"
#include "conn_table.h"
#include "muxer.h"
#include "vsockmux/iov.h"
#include "vsockmux/log.h"

static void drop_packet(struct muxer *muxer, enum muxer_drop_reason reason,
			const char *what, const struct vsock_header *header)
{
	muxer->stats.dropped[reason]++;
	log_ratelimited(&muxer->packet_log, LOG_LEVEL_WARN,
			"guest packet dropped: %s (op %s, src %" PRIu64 ":%" PRIu32
			", dst %" PRIu64 ":%" PRIu32 ", len %" PRIu32 ")",
			what, vsock_op_name(header->op), header->src_cid,
			header->src_port, header->dst_cid, header->dst_port,
			header->len);
}

static void handle_tx_chain(struct muxer *muxer, const struct virtq_chain *chain)
{
	uint8_t wire[VSOCK_HEADER_SIZE];
	struct vsock_header header;
	size_t payload_count;

	muxer->stats.packets_from_guest++;
	if (chain->length < VSOCK_HEADER_SIZE) {
		muxer->stats.dropped[DROP_SHORT_HEADER]++;
		log_ratelimited(&muxer->packet_log, LOG_LEVEL_WARN,
				"guest TX chain of %zu bytes is shorter than a header",
				chain->length);
		return;
	}
	/* copy once, validate the copy: the guest may change its memory */
	iov_copy_out(muxer->tx_iov, chain->iov_count, 0, wire, sizeof(wire));
	vsock_header_decode(wire, &header);
	if (header.src_cid != muxer->options->guest_cid) {
		drop_packet(muxer, DROP_BAD_SRC_CID, "source CID is not the guest's", &header);
		return;
	}
	if (header.dst_cid != VSOCK_HOST_CID) {
		drop_packet(muxer, DROP_BAD_DST_CID, "destination CID is not the host", &header);
		return;
	}
	if (header.len > chain->length - VSOCK_HEADER_SIZE ||
	    (header.op != VSOCK_OP_RW && header.len != 0)) {
		struct conn *conn = conn_table_lookup(&muxer->table, header.dst_port,
						      header.src_port);
		drop_packet(muxer, DROP_BAD_LENGTH, "length does not match the buffer", &header);
		if (conn && header.op != VSOCK_OP_RST)
			conn_reset(muxer, conn, "malformed packet");
		return;
	}
	payload_count = iov_slice(muxer->tx_iov, chain->iov_count, VSOCK_HEADER_SIZE,
				  header.len, muxer->tx_payload_iov, VIRTQ_MAX_SIZE);
	conn_handle_guest_packet(muxer, &header, muxer->tx_payload_iov, payload_count);
}

/* Every guest packet may owe an RST; stop taking packets while too many
 * wait for RX buffers (the guest gets them back once it posts buffers). */
static bool tx_must_pause(struct muxer *muxer)
{
	if (muxer->rsts.count < MUXER_ORPHAN_TX_PAUSE)
		return false;
	if (!muxer->tx_paused_for_rst)
		log_ratelimited(&muxer->packet_log, LOG_LEVEL_WARN,
				"%" PRIu32 " RSTs wait for guest RX buffers; guest "
				"packets paused until they go out", muxer->rsts.count);
	muxer->tx_paused_for_rst = true;
	return true;
}

void guest_tx_process(struct muxer *muxer)
{
	struct virtq *queue = &muxer->device.queues[VSOCK_QUEUE_TX];
	unsigned budget = MUXER_TX_BUDGET;
	struct virtq_chain chain;

	muxer->tx_backlog = false;
	if (!virtq_is_ready(queue))
		return;
	for (;;) {
		while (budget > 0 && !tx_must_pause(muxer) &&
		       virtq_pop(queue, &muxer->device.memory, muxer->tx_iov,
				 VIRTQ_MAX_SIZE, &chain) == 1) {
			budget--;
			handle_tx_chain(muxer, &chain);
			virtq_push(queue, chain.head, 0);
		}
		if (muxer->tx_paused_for_rst)
			break; /* resumed by guest_rx_process as RSTs go out */
		if (budget == 0) {
			muxer->tx_backlog = true; /* come back after other events */
			break;
		}
		if (!virtq_enable_kicks(queue))
			break;
	}
	virtq_notify(queue);
}

