/*
 * json_output.c - vsockctl --json: one JSON object holding every Stats field
 * under its proto (snake_case) name, built with json-c (see render.h).
 *
 * Owns: the json-c tree for one snapshot, freed before returning.
 * Never: escapes strings by hand (json-c does), or renames a proto field.
 */
#include <json-c/json.h>

#include "render.h"

/* json-c's add functions return non-zero on failure; track any failure. */
struct json_builder {
	bool failed;
};

static void add(struct json_builder *builder, json_object *object,
		const char *key, json_object *value)
{
	if (!value || json_object_object_add(object, key, value) != 0) {
		json_object_put(value);
		builder->failed = true;
	}
}

static void add_u64(struct json_builder *builder, json_object *object,
		    const char *key, uint64_t value)
{
	add(builder, object, key, json_object_new_uint64(value));
}

static void add_bool(struct json_builder *builder, json_object *object,
		     const char *key, bool value)
{
	add(builder, object, key, json_object_new_boolean(value));
}

static void add_double(struct json_builder *builder, json_object *object,
		       const char *key, double value)
{
	add(builder, object, key, json_object_new_double(value));
}

static json_object *feature_names(struct json_builder *builder, uint64_t bits,
				  bool protocol)
{
	json_object *names = json_object_new_array();
	unsigned bit;

	if (!names)
		return NULL;
	for (bit = 0; bit < 64; bit++) {
		const char *name = render_feature_name(bit, protocol);

		if (!(bits & (UINT64_C(1) << bit)) || !name)
			continue;
		if (json_object_array_add(names, json_object_new_string(name)) != 0)
			builder->failed = true;
	}
	return names;
}

static json_object *features_object(struct json_builder *builder,
				    const ControlStats *stats)
{
	json_object *features = json_object_new_object();
	uint64_t virtio = stats->features ? stats->features->virtio : 0;
	uint64_t protocol = stats->features ? stats->features->protocol : 0;

	if (!features)
		return NULL;
	add_u64(builder, features, "virtio", virtio);
	add_u64(builder, features, "protocol", protocol);
	/* Extra, derived: names of the known bits. */
	add(builder, features, "virtio_names", feature_names(builder, virtio, false));
	add(builder, features, "protocol_names", feature_names(builder, protocol, true));
	return features;
}

static json_object *connection_object(struct json_builder *builder,
				      const ControlConnection *connection)
{
	json_object *object = json_object_new_object();

	if (!object)
		return NULL;
	add_u64(builder, object, "local_port", connection->local_port);
	add_u64(builder, object, "peer_port", connection->peer_port);
	add_bool(builder, object, "from_host", connection->from_host);
	add(builder, object, "state",
	    json_object_new_string(connection->state ? connection->state : ""));
	add_u64(builder, object, "age_ms", connection->age_ms);
	add_u64(builder, object, "idle_ms", connection->idle_ms);
	add_u64(builder, object, "bytes_to_host", connection->bytes_to_host);
	add_u64(builder, object, "bytes_to_guest", connection->bytes_to_guest);
	add_u64(builder, object, "packets_from_guest", connection->packets_from_guest);
	add_u64(builder, object, "packets_to_guest", connection->packets_to_guest);
	add_u64(builder, object, "guest_credit", connection->guest_credit);
	add_u64(builder, object, "tx_buffered", connection->tx_buffered);
	return object;
}

static json_object *stats_object(struct json_builder *builder,
				 const ControlStats *stats)
{
	json_object *object = json_object_new_object();
	json_object *dropped, *connections;
	size_t index;

	if (!object)
		return NULL;
	add_u64(builder, object, "uptime_ms", stats->uptime_ms);
	add_u64(builder, object, "guest_cid", stats->guest_cid);
	add_bool(builder, object, "vmm_attached", stats->vmm_attached);
	add(builder, object, "features", features_object(builder, stats));
	add_u64(builder, object, "vmm_attach_count", stats->vmm_attach_count);
	add_u64(builder, object, "connections_current", stats->connections_current);
	add_u64(builder, object, "connections_peak", stats->connections_peak);
	add_u64(builder, object, "connections_total_from_host",
		stats->connections_total_from_host);
	add_u64(builder, object, "connections_total_from_guest",
		stats->connections_total_from_guest);
	add_u64(builder, object, "refused_no_host_listener", stats->refused_no_host_listener);
	add_u64(builder, object, "refused_guest_refused", stats->refused_guest_refused);
	add_u64(builder, object, "refused_limit", stats->refused_limit);
	add_u64(builder, object, "refused_bad_connect_line", stats->refused_bad_connect_line);
	add_u64(builder, object, "refused_handshake_timeout", stats->refused_handshake_timeout);
	add_u64(builder, object, "refused_handshake_limit", stats->refused_handshake_limit);
	add_u64(builder, object, "refused_permission_denied",
		stats->refused_permission_denied);
	add_u64(builder, object, "refused_policy_guest", stats->refused_policy_guest);
	add_u64(builder, object, "refused_policy_host", stats->refused_policy_host);
	add_u64(builder, object, "transport_resets", stats->transport_resets);
	add_u64(builder, object, "handshakes_current", stats->handshakes_current);
	add_u64(builder, object, "host_accept_pauses", stats->host_accept_pauses);
	add_u64(builder, object, "tx_buffered_bytes", stats->tx_buffered_bytes);
	add_u64(builder, object, "tx_window_bytes", stats->tx_window_bytes);
	add_u64(builder, object, "tx_buffer_budget", stats->tx_buffer_budget);
	add_u64(builder, object, "windows_limited", stats->windows_limited);
	add_u64(builder, object, "host_gone_before_ok", stats->host_gone_before_ok);
	add_u64(builder, object, "control_bad_requests", stats->control_bad_requests);
	add_u64(builder, object, "control_timeouts", stats->control_timeouts);
	add_u64(builder, object, "control_evicted", stats->control_evicted);
	add_u64(builder, object, "control_busy", stats->control_busy);
	add_u64(builder, object, "rst_sent", stats->rst_sent);
	add_u64(builder, object, "rst_received", stats->rst_received);
	add_u64(builder, object, "bytes_to_host", stats->bytes_to_host);
	add_u64(builder, object, "bytes_to_guest", stats->bytes_to_guest);
	add_u64(builder, object, "packets_from_guest", stats->packets_from_guest);
	add_u64(builder, object, "packets_to_guest", stats->packets_to_guest);

	dropped = json_object_new_object();
	for (index = 0; dropped && index < stats->n_dropped; index++)
		add_u64(builder, dropped,
			stats->dropped[index]->key ? stats->dropped[index]->key : "",
			stats->dropped[index]->value);
	add(builder, object, "dropped", dropped);

	add_u64(builder, object, "waits_for_credit", stats->waits_for_credit);
	add_u64(builder, object, "waits_for_rx_buffers", stats->waits_for_rx_buffers);
	add_u64(builder, object, "broker_connects", stats->broker_connects);
	add_u64(builder, object, "broker_connect_ns_sum", stats->broker_connect_ns_sum);
	add_u64(builder, object, "broker_connect_ns_max", stats->broker_connect_ns_max);

	connections = json_object_new_array();
	for (index = 0; connections && index < stats->n_connections; index++) {
		json_object *connection = connection_object(builder, stats->connections[index]);

		if (!connection || json_object_array_add(connections, connection) != 0) {
			json_object_put(connection);
			builder->failed = true;
		}
	}
	add(builder, object, "connections", connections);
	add_bool(builder, object, "connections_truncated", stats->connections_truncated);
	return object;
}

int render_json(FILE *out, const ControlStats *stats, const struct rates *rates,
		bool pretty)
{
	struct json_builder builder = { .failed = false };
	json_object *root = stats_object(&builder, stats);
	const char *text;

	if (root && rates) {
		json_object *rates_object = NULL;

		if (rates->valid) {
			rates_object = json_object_new_object();
			if (rates_object) {
				add_double(&builder, rates_object, "interval_seconds",
					   rates->interval_seconds);
				add_double(&builder, rates_object, "bytes_to_host_per_second",
					   rates->bytes_to_host_per_second);
				add_double(&builder, rates_object, "bytes_to_guest_per_second",
					   rates->bytes_to_guest_per_second);
			} else {
				builder.failed = true;
			}
		}
		/* null on the first sample or after a daemon restart */
		if (json_object_object_add(root, "rates", rates_object) != 0) {
			json_object_put(rates_object);
			builder.failed = true;
		}
	}
	if (!root || builder.failed) {
		json_object_put(root);
		return -1;
	}
	text = json_object_to_json_string_ext(root,
		(pretty ? JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED
			: JSON_C_TO_STRING_PLAIN) | JSON_C_TO_STRING_NOSLASHESCAPE);
	if (text)
		fprintf(out, "%s\n", text);
	json_object_put(root);
	return text ? 0 : -1;
}
