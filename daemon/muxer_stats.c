/*
 * muxer_stats.c - the muxer's answer to a StatsRequest: its counters and,
 * if asked, its connection table, as a packed vsockmux.control.Stats
 * (proto/control.proto) the broker passes on to vsockctl unchanged.
 *
 * Why in the muxer: the counters are plain fields it bumps on the data
 * path (no locks, no atomics); only a request pays for reading them.
 * Never: lets the reply outgrow IPC_MAX_STATS_SIZE. Rows that would not
 * fit are left out and connections_truncated says so.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "control.pb-c.h"
#include "muxer.h"
#include "vsockmux/ipc.h"
#include "vsockmux/log.h"

/* Generous upper bound of one packed Connection row (with its tag). */
#define CONNECTION_ROW_MAX 120u

static const char *const drop_reason_names[DROP_REASON_COUNT] = {
	[DROP_SHORT_HEADER] = "short_header",
	[DROP_BAD_SRC_CID] = "bad_src_cid",
	[DROP_BAD_DST_CID] = "bad_dst_cid",
	[DROP_BAD_LENGTH] = "bad_length",
	[DROP_BAD_OP] = "bad_op_or_type",
	[DROP_NO_CONNECTION] = "no_connection",
	[DROP_CREDIT_VIOLATION] = "credit_violation",
	[DROP_RX_BUFFER_TOO_SMALL] = "rx_buffer_too_small",
	[DROP_RST_QUEUE_FULL] = "rst_queue_full",
	[DROP_BAD_SHUTDOWN_FLAGS] = "bad_shutdown_flags",
	[DROP_BAD_CREDIT] = "bad_credit",
	[DROP_RST_UNKNOWN] = "rst_unknown",
};

static const char *state_name(enum conn_state state)
{
	switch (state) {
	case CONN_HOST_HANDSHAKE:
		return "handshake";
	case CONN_HOST_REQUESTED:
		return "requested";
	case CONN_GUEST_CONNECTING:
		return "connecting";
	case CONN_ESTABLISHED:
		return "established";
	default:
		return "closing";
	}
}

static uint64_t elapsed_ms(uint64_t now, uint64_t then)
{
	return then && now > then ? (now - then) / 1000000u : 0;
}

/* Fill row from conn; strings point at constants. */
static void describe_connection(const struct conn *conn, uint64_t now,
				Vsockmux__Control__Connection *row)
{
	vsockmux__control__connection__init(row);
	row->local_port = conn->local_port;
	row->peer_port = conn->peer_port;
	row->from_host = conn->initiator == CONN_FROM_HOST;
	row->state = (char *)state_name(conn->state);
	row->age_ms = elapsed_ms(now, conn->counters.opened_ns);
	row->idle_ms = elapsed_ms(now, conn->counters.last_activity_ns);
	row->bytes_to_host = conn->counters.bytes_to_host;
	row->bytes_to_guest = conn->counters.bytes_to_guest;
	row->packets_from_guest = conn->counters.packets_from_guest;
	row->packets_to_guest = conn->counters.packets_to_guest;
	row->guest_credit = conn->state == CONN_ESTABLISHED ? conn_guest_credit(conn) : 0;
	row->tx_buffered = tx_ring_used(&conn->to_host_ring);
}

/* Drop keys counted by the rings rather than the muxer: malformed_chain,
 * one per chain fault kind, avail_index_jump, ring_layout_invalid. */
#define RING_DROP_KEYS (3u + VIRTQ_FAULT_COUNT)

static void add_ring_drop(Vsockmux__Control__Stats__DroppedEntry *drops,
			  Vsockmux__Control__Stats__DroppedEntry **pointers,
			  size_t *count, const char *key, uint64_t value)
{
	vsockmux__control__stats__dropped_entry__init(&drops[*count]);
	drops[*count].key = (char *)key;
	drops[*count].value = value;
	pointers[*count] = &drops[*count];
	(*count)++;
}

/* Guest->host bytes waiting in connection rings for slow host readers. */
static uint64_t buffered_bytes(const struct muxer *muxer)
{
	uint64_t total = 0;
	for (uint32_t slot = 0; slot < muxer->table.capacity; slot++)
		total += tx_ring_used(&muxer->table.slots[slot].to_host_ring);
	return total;
}

/*
 * Pack the stats into a malloc()ed buffer (*packed, *length). Returns 0 or
 * -ENOMEM.
 */
static int pack_stats(const struct muxer *muxer, bool include_connections,
		      uint8_t **packed, size_t *length)
{
	const struct muxer_stats *counters = &muxer->stats;
	const struct vhost_user_device *device = &muxer->device;
	Vsockmux__Control__Stats stats = VSOCKMUX__CONTROL__STATS__INIT;
	Vsockmux__Control__Features features = VSOCKMUX__CONTROL__FEATURES__INIT;
	Vsockmux__Control__Stats__DroppedEntry drops[DROP_REASON_COUNT + RING_DROP_KEYS];
	Vsockmux__Control__Stats__DroppedEntry *drop_pointers[DROP_REASON_COUNT + RING_DROP_KEYS];
	const struct virtq_stats *rx_queue = &muxer->device.queues[VSOCK_QUEUE_RX].stats;
	const struct virtq_stats *tx_queue = &muxer->device.queues[VSOCK_QUEUE_TX].stats;
	size_t n_drops;
	Vsockmux__Control__Connection *rows = NULL;
	Vsockmux__Control__Connection **row_pointers = NULL;
	uint64_t now = monotonic_ns();
	size_t row_count = 0, row_budget;
	int result = -ENOMEM;

	stats.uptime_ms = elapsed_ms(now, counters->started_ns);
	stats.guest_cid = muxer->options->guest_cid;
	stats.vmm_attached = vhost_user_is_attached(device);
	features.virtio = device->features_acked;
	features.protocol = device->protocol_features_acked;
	stats.features = &features;
	stats.vmm_attach_count = device->attach_count;
	stats.connections_current = muxer->table.in_use;
	stats.connections_peak = counters->connections_peak;
	stats.connections_total_from_host = counters->connections_total[CONN_FROM_HOST];
	stats.connections_total_from_guest = counters->connections_total[CONN_FROM_GUEST];
	stats.refused_no_host_listener = counters->refused[REFUSED_NO_HOST_LISTENER];
	stats.refused_guest_refused = counters->refused[REFUSED_GUEST_REFUSED];
	stats.refused_limit = counters->refused[REFUSED_LIMIT];
	stats.refused_bad_connect_line = counters->refused[REFUSED_BAD_CONNECT_LINE];
	stats.refused_handshake_timeout = counters->refused[REFUSED_HANDSHAKE_TIMEOUT];
	stats.refused_handshake_limit = counters->refused[REFUSED_HANDSHAKE_LIMIT];
	stats.refused_permission_denied = counters->refused[REFUSED_PERMISSION_DENIED];
	stats.transport_resets = counters->transport_resets;
	stats.refused_policy_guest = counters->refused[REFUSED_POLICY_GUEST];
	stats.refused_policy_host = counters->refused[REFUSED_POLICY_HOST];
	stats.handshakes_current = muxer->handshakes_in_progress;
	stats.host_accept_pauses = counters->host_accept_pauses;
	stats.host_gone_before_ok = counters->host_gone_before_ok;
	stats.tx_buffered_bytes = buffered_bytes(muxer);
	stats.tx_window_bytes = muxer->windows_reserved;
	stats.tx_buffer_budget = muxer->options->tx_buffer_budget;
	stats.windows_limited = counters->windows_limited;
	stats.rst_sent = counters->rst_sent;
	stats.rst_received = counters->rst_received;
	stats.bytes_to_host = counters->bytes_to_host;
	stats.bytes_to_guest = counters->bytes_to_guest;
	stats.packets_from_guest = counters->packets_from_guest;
	stats.packets_to_guest = counters->packets_to_guest;
	for (size_t i = 0; i < DROP_REASON_COUNT; i++) {
		vsockmux__control__stats__dropped_entry__init(&drops[i]);
		drops[i].key = (char *)drop_reason_names[i];
		drops[i].value = counters->dropped[i];
		drop_pointers[i] = &drops[i];
	}
	n_drops = DROP_REASON_COUNT;
	add_ring_drop(drops, drop_pointers, &n_drops, "malformed_chain",
		      rx_queue->chains_malformed + tx_queue->chains_malformed);
	for (unsigned fault = 0; fault < VIRTQ_FAULT_COUNT; fault++)
		add_ring_drop(drops, drop_pointers, &n_drops,
			      virtq_chain_fault_name((enum virtq_chain_fault)fault),
			      rx_queue->malformed_by_kind[fault] +
			      tx_queue->malformed_by_kind[fault]);
	add_ring_drop(drops, drop_pointers, &n_drops, "avail_index_jump",
		      rx_queue->avail_index_jumps + tx_queue->avail_index_jumps);
	add_ring_drop(drops, drop_pointers, &n_drops, "ring_layout_invalid",
		      rx_queue->layouts_invalid + tx_queue->layouts_invalid);
	stats.n_dropped = n_drops;
	stats.dropped = drop_pointers;
	stats.waits_for_credit = counters->waits_for_credit;
	stats.waits_for_rx_buffers = counters->waits_for_rx_buffers;
	stats.broker_connects = counters->broker_connects;
	stats.broker_connect_ns_sum = counters->broker_connect_ns_sum;
	stats.broker_connect_ns_max = counters->broker_connect_ns_max;

	if (include_connections && muxer->table.in_use > 0) {
		rows = calloc(muxer->table.in_use, sizeof(*rows));
		row_pointers = calloc(muxer->table.in_use, sizeof(*row_pointers));
		if (!rows || !row_pointers)
			goto out;
		/* what is left of the reply after the counters */
		row_budget = (IPC_MAX_STATS_SIZE -
			      protobuf_c_message_get_packed_size(&stats.base)) /
			     CONNECTION_ROW_MAX;
		for (uint32_t slot = 0; slot < muxer->table.capacity; slot++) {
			const struct conn *conn = &muxer->table.slots[slot];
			if (conn->state == CONN_FREE || conn->state == CONN_ABANDONED)
				continue;
			if (row_count == row_budget || row_count == muxer->table.in_use) {
				stats.connections_truncated = true;
				break;
			}
			describe_connection(conn, now, &rows[row_count]);
			row_pointers[row_count] = &rows[row_count];
			row_count++;
		}
		stats.n_connections = row_count;
		stats.connections = row_pointers;
	}
	*length = protobuf_c_message_get_packed_size(&stats.base);
	*packed = malloc(*length ? *length : 1);
	if (!*packed)
		goto out;
	protobuf_c_message_pack(&stats.base, *packed);
	result = 0;
out:
	free(rows);
	free(row_pointers);
	return result;
}

void muxer_answer_stats(struct muxer *muxer, uint32_t request_id,
			bool include_connections)
{
	Vsockmux__Ipc__Envelope envelope = VSOCKMUX__IPC__ENVELOPE__INIT;
	Vsockmux__Ipc__StatsReply reply = VSOCKMUX__IPC__STATS_REPLY__INIT;
	uint8_t *packed = NULL;
	size_t length = 0;
	int result;

	if (pack_stats(muxer, include_connections, &packed, &length) < 0) {
		log_warn("stats request %u: out of memory", request_id);
		return;
	}
	reply.request_id = request_id;
	reply.stats.data = packed;
	reply.stats.len = length;
	envelope.body_case = VSOCKMUX__IPC__ENVELOPE__BODY_STATS_REPLY;
	envelope.stats_reply = &reply;
	result = ipc_send(muxer->channel_fd, &envelope, -1);
	if (result < 0)
		log_ratelimited(&muxer->conn_log, LOG_LEVEL_WARN,
				"stats reply %u not sent: %s", request_id,
				strerror(-result));
	free(packed);
}
