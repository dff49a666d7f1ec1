/*
 * metrics.c - vsockctl metrics: Prometheus text exposition format 0.0.4.
 *
 * Every family gets "# HELP" and "# TYPE" once, then all its samples, so
 * families never interleave. Counters end in _total, byte counters in
 * _bytes_total, gauges carry no suffix. Label values are escaped (\\, \",
 * \n) as the format requires.
 *
 * Owns: nothing; writes to the stream it is given.
 * Never: emits a sample before its family's TYPE line.
 */
#include <inttypes.h>
#include <stddef.h>
#include <string.h>

#include "render.h"

#define COUNT_OF(array) (sizeof(array) / sizeof((array)[0]))

static void family(FILE *out, const char *name, const char *type, const char *help)
{
	fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Writes a label value with \\, \" and \n escaped. */
static void write_label_value(FILE *out, const char *value)
{
	const char *cursor;

	fputc('"', out);
	for (cursor = value ? value : ""; *cursor != '\0'; cursor++) {
		if (*cursor == '\\')
			fputs("\\\\", out);
		else if (*cursor == '"')
			fputs("\\\"", out);
		else if (*cursor == '\n')
			fputs("\\n", out);
		else
			fputc(*cursor, out);
	}
	fputc('"', out);
}

static void sample_u64(FILE *out, const char *name, uint64_t value)
{
	fprintf(out, "%s %" PRIu64 "\n", name, value);
}

static void sample_labelled_u64(FILE *out, const char *name, const char *label,
				const char *label_value, uint64_t value)
{
	fprintf(out, "%s{%s=", name, label);
	write_label_value(out, label_value);
	fprintf(out, "} %" PRIu64 "\n", value);
}

static void simple_family(FILE *out, const char *name, const char *type,
			  const char *help, uint64_t value)
{
	family(out, name, type, help);
	sample_u64(out, name, value);
}

/* A counter family of two samples that differ in one label's value. */
static void counter_pair(FILE *out, const char *name, const char *help,
			 const char *label, const char *first, uint64_t first_value,
			 const char *second, uint64_t second_value)
{
	family(out, name, "counter", help);
	sample_labelled_u64(out, name, label, first, first_value);
	sample_labelled_u64(out, name, label, second, second_value);
}

/* Families of one unlabelled sample, straight from a ControlStats field. */
struct plain_family {
	const char *name;
	const char *type;
	const char *help;
	size_t field;   /* offsetof(ControlStats, a uint64_t field) */
};

/* _Generic: a field that is not a uint64_t does not compile */
#define PLAIN(name, type, field, help)                                        \
	{ name, type, help,                                                   \
	  _Generic(((const ControlStats *)0)->field,                          \
		   uint64_t: offsetof(ControlStats, field)) }

static const struct plain_family plain_families[] = {
	PLAIN("vsockmux_guest_cid", "gauge", guest_cid,
	      "The guest's vsock CID."),
	PLAIN("vsockmux_vmm_attach_total", "counter", vmm_attach_count,
	      "vhost-user (re)attachments since start."),
	PLAIN("vsockmux_connections", "gauge", connections_current,
	      "Connections open now."),
	PLAIN("vsockmux_connections_peak", "gauge", connections_peak,
	      "Most connections open at once since start."),
	PLAIN("vsockmux_transport_resets_total", "counter", transport_resets,
	      "Transport reset events posted to the guest's event queue."),
	PLAIN("vsockmux_rst_sent_total", "counter", rst_sent,
	      "RST packets sent to the guest."),
	PLAIN("vsockmux_rst_received_total", "counter", rst_received,
	      "RST packets received from the guest."),
	PLAIN("vsockmux_waits_for_credit_total", "counter", waits_for_credit,
	      "Times the data path waited for guest credit."),
	PLAIN("vsockmux_waits_for_rx_buffers_total", "counter", waits_for_rx_buffers,
	      "Times the data path waited for guest RX buffers."),
	PLAIN("vsockmux_host_handshakes", "gauge", handshakes_current,
	      "Host clients still sending their CONNECT line."),
	PLAIN("vsockmux_host_accept_pauses_total", "counter", host_accept_pauses,
	      "Times accepting host clients paused at --max-host-handshakes."),
	PLAIN("vsockmux_tx_buffered_bytes", "gauge", tx_buffered_bytes,
	      "Guest-to-host bytes held for slow host readers."),
	PLAIN("vsockmux_tx_window_bytes", "gauge", tx_window_bytes,
	      "Guest-to-host credit offered to all connections together."),
	PLAIN("vsockmux_tx_buffer_budget_bytes", "gauge", tx_buffer_budget,
	      "The --tx-buffer-budget that credit must fit in."),
	PLAIN("vsockmux_windows_limited_total", "counter", windows_limited,
	      "Credit offers below --tx-buffer-size under memory pressure."),
	PLAIN("vsockmux_host_gone_before_ok_total", "counter", host_gone_before_ok,
	      "Host clients that closed before the guest accepted."),
	PLAIN("vsockmux_control_bad_requests_total", "counter", control_bad_requests,
	      "Control clients whose request was malformed, too large or of another version."),
	PLAIN("vsockmux_control_timeouts_total", "counter", control_timeouts,
	      "Control clients closed at the client timeout."),
	PLAIN("vsockmux_control_evicted_total", "counter", control_evicted,
	      "Control clients closed mid-request to make room for a new one."),
	PLAIN("vsockmux_control_busy_total", "counter", control_busy,
	      "Control clients turned away with every slot taken."),
};

static void plain_family(FILE *out, const struct plain_family *plain,
			 const ControlStats *stats)
{
	uint64_t value;
	memcpy(&value, (const char *)stats + plain->field, sizeof(value));
	simple_family(out, plain->name, plain->type, plain->help, value);
}

static void global_metrics(FILE *out, const ControlStats *stats)
{
	const uint64_t feature_bits[2] = {
		stats->features ? stats->features->virtio : 0,
		stats->features ? stats->features->protocol : 0,
	};
	const struct {
		const char *reason;
		uint64_t count;
	} refused[] = {
		{ "no_host_listener", stats->refused_no_host_listener },
		{ "guest_refused", stats->refused_guest_refused },
		{ "limit", stats->refused_limit },
		{ "bad_connect_line", stats->refused_bad_connect_line },
		{ "handshake_timeout", stats->refused_handshake_timeout },
		{ "handshake_limit", stats->refused_handshake_limit },
		{ "permission_denied", stats->refused_permission_denied },
		{ "policy_guest", stats->refused_policy_guest },
		{ "policy_host", stats->refused_policy_host },
	};
	size_t index;
	unsigned kind, bit;

	family(out, "vsockmux_uptime_seconds", "gauge", "Seconds since vsockmuxd started.");
	fprintf(out, "vsockmux_uptime_seconds %.3f\n", (double)stats->uptime_ms / 1000.0);
	for (index = 0; index < COUNT_OF(plain_families); index++)
		plain_family(out, &plain_families[index], stats);
	simple_family(out, "vsockmux_vmm_attached", "gauge",
		      "1 when a VMM (vhost-user frontend) is attached.",
		      stats->vmm_attached ? 1 : 0);

	family(out, "vsockmux_vmm_feature_negotiated", "gauge",
	       "1 for every negotiated virtio (kind=virtio) or vhost-user protocol (kind=protocol) feature bit.");
	for (kind = 0; kind < 2; kind++) {
		for (bit = 0; bit < 64; bit++) {
			const char *name = render_feature_name(bit, kind == 1);

			if (!(feature_bits[kind] & (UINT64_C(1) << bit)))
				continue;
			fprintf(out, "vsockmux_vmm_feature_negotiated{kind=\"%s\",bit=\"%u\",name=",
				kind == 1 ? "protocol" : "virtio", bit);
			write_label_value(out, name ? name : "unknown");
			fputs("} 1\n", out);
		}
	}

	counter_pair(out, "vsockmux_connections_total",
		     "Connections opened since start, by initiator.", "initiator",
		     "host", stats->connections_total_from_host,
		     "guest", stats->connections_total_from_guest);

	family(out, "vsockmux_refused_total", "counter", "Connections refused, by reason.");
	for (index = 0; index < COUNT_OF(refused); index++)
		sample_labelled_u64(out, "vsockmux_refused_total", "reason",
				    refused[index].reason, refused[index].count);


	counter_pair(out, "vsockmux_transferred_bytes_total",
		     "Payload bytes moved, by direction.", "direction",
		     "to_host", stats->bytes_to_host, "to_guest", stats->bytes_to_guest);
	counter_pair(out, "vsockmux_packets_total",
		     "vsock packets, by direction (to_host = from the guest).", "direction",
		     "to_host", stats->packets_from_guest,
		     "to_guest", stats->packets_to_guest);

	family(out, "vsockmux_dropped_total", "counter",
	       "Malformed chains and packets dropped, by reason.");
	for (index = 0; index < stats->n_dropped; index++)
		sample_labelled_u64(out, "vsockmux_dropped_total", "reason",
				    stats->dropped[index]->key, stats->dropped[index]->value);



	family(out, "vsockmux_broker_connect_duration_seconds", "summary",
	       "Time the broker took to connect host sockets.");
	fprintf(out, "vsockmux_broker_connect_duration_seconds_sum %.9f\n",
		(double)stats->broker_connect_ns_sum / 1e9);
	fprintf(out, "vsockmux_broker_connect_duration_seconds_count %" PRIu64 "\n",
		stats->broker_connects);
	family(out, "vsockmux_broker_connect_duration_max_seconds", "gauge",
	       "Longest broker connect since start.");
	fprintf(out, "vsockmux_broker_connect_duration_max_seconds %.9f\n",
		(double)stats->broker_connect_ns_max / 1e9);

	simple_family(out, "vsockmux_connections_truncated", "gauge",
		      "1 when the per-connection series below are incomplete.",
		      stats->connections_truncated ? 1 : 0);
}

/* Per-connection value extractors, one family each. */
enum connection_value {
	VALUE_AGE, VALUE_IDLE, VALUE_BYTES, VALUE_PACKETS, VALUE_CREDIT, VALUE_BUFFERED,
};

struct connection_family {
	const char *name;
	const char *type;
	const char *help;
	enum connection_value value;
};

static const struct connection_family connection_families[] = {
	{ "vsockmux_connection_age_seconds", "gauge", "Seconds since the connection opened.",
	  VALUE_AGE },
	{ "vsockmux_connection_idle_seconds", "gauge", "Seconds since the connection's last activity.",
	  VALUE_IDLE },
	{ "vsockmux_connection_transferred_bytes_total", "counter",
	  "Payload bytes moved on the connection, by direction.", VALUE_BYTES },
	{ "vsockmux_connection_packets_total", "counter",
	  "vsock packets on the connection, by direction.", VALUE_PACKETS },
	{ "vsockmux_connection_guest_credit_bytes", "gauge",
	  "Bytes we may still send to the guest.", VALUE_CREDIT },
	{ "vsockmux_connection_tx_buffered_bytes", "gauge",
	  "Bytes waiting in the connection's TX ring.", VALUE_BUFFERED },
};

static void connection_labels(FILE *out, const ControlConnection *connection)
{
	fprintf(out, "local_port=\"%u\",peer_port=\"%u\",initiator=\"%s\"",
		connection->local_port, connection->peer_port,
		connection->from_host ? "host" : "guest");
}

static void connection_sample(FILE *out, const char *name,
			      const ControlConnection *connection,
			      const char *direction, const char *value)
{
	fprintf(out, "%s{", name);
	connection_labels(out, connection);
	if (direction)
		fprintf(out, ",direction=\"%s\"", direction);
	fprintf(out, "} %s\n", value);
}

static void connection_metrics(FILE *out, const ControlStats *stats)
{
	size_t family_index, index;

	family(out, "vsockmux_connection_state", "gauge",
	       "1 per open connection, labelled with its state.");
	for (index = 0; index < stats->n_connections; index++) {
		fputs("vsockmux_connection_state{", out);
		connection_labels(out, stats->connections[index]);
		fputs(",state=", out);
		write_label_value(out, stats->connections[index]->state);
		fputs("} 1\n", out);
	}
	for (family_index = 0; family_index < COUNT_OF(connection_families); family_index++) {
		const struct connection_family *metric = &connection_families[family_index];

		family(out, metric->name, metric->type, metric->help);
		for (index = 0; index < stats->n_connections; index++) {
			const ControlConnection *connection = stats->connections[index];
			char first[64], second[64];

			switch (metric->value) {
			case VALUE_AGE:
				snprintf(first, sizeof(first), "%.3f", (double)connection->age_ms / 1000.0);
				connection_sample(out, metric->name, connection, NULL, first);
				break;
			case VALUE_IDLE:
				snprintf(first, sizeof(first), "%.3f", (double)connection->idle_ms / 1000.0);
				connection_sample(out, metric->name, connection, NULL, first);
				break;
			case VALUE_BYTES:
			case VALUE_PACKETS:
				snprintf(first, sizeof(first), "%" PRIu64,
					 metric->value == VALUE_BYTES ? connection->bytes_to_host
								      : connection->packets_from_guest);
				snprintf(second, sizeof(second), "%" PRIu64,
					 metric->value == VALUE_BYTES ? connection->bytes_to_guest
								      : connection->packets_to_guest);
				connection_sample(out, metric->name, connection, "to_host", first);
				connection_sample(out, metric->name, connection, "to_guest", second);
				break;
			case VALUE_CREDIT:
			case VALUE_BUFFERED:
				snprintf(first, sizeof(first), "%u",
					 metric->value == VALUE_CREDIT ? connection->guest_credit
								       : connection->tx_buffered);
				connection_sample(out, metric->name, connection, NULL, first);
				break;
			}
		}
	}
}

int render_metrics(FILE *out, const ControlStats *stats)
{
	global_metrics(out, stats);
	connection_metrics(out, stats);
	return 0;
}
