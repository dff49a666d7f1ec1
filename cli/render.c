/*
 * render.c - vsockctl's human output: aligned tables with B/KiB/MiB/GiB and
 * ms/s/m/h/d units (see render.h).
 *
 * Owns: the temporary tables it builds.
 * Never: invents values; a field the daemon did not send prints as 0.
 */
#include "render.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "vsockmux/vhost_user_wire.h"

struct feature_name {
	unsigned bit;
	const char *name;
};

static const struct feature_name virtio_features[] = {
	{ VIRTIO_FEATURE_RING_INDIRECT_DESC, "INDIRECT_DESC" },
	{ VIRTIO_FEATURE_RING_EVENT_IDX, "EVENT_IDX" },
	{ VHOST_USER_FEATURE_PROTOCOL_FEATURES, "PROTOCOL_FEATURES" },
	{ VIRTIO_FEATURE_VERSION_1, "VERSION_1" },
};

static const struct feature_name protocol_features[] = {
	{ VHOST_USER_PROTOCOL_F_MQ, "MQ" },
	{ VHOST_USER_PROTOCOL_F_REPLY_ACK, "REPLY_ACK" },
	{ VHOST_USER_PROTOCOL_F_CONFIG, "CONFIG" },
};

#define COUNT_OF(array) (sizeof(array) / sizeof((array)[0]))

const char *render_feature_name(unsigned bit, bool protocol)
{
	const struct feature_name *names = protocol ? protocol_features : virtio_features;
	size_t count = protocol ? COUNT_OF(protocol_features) : COUNT_OF(virtio_features);
	size_t i;

	for (i = 0; i < count; i++)
		if (names[i].bit == bit)
			return names[i].name;
	return NULL;
}

void render_feature_names(uint64_t bits, bool protocol, char *buffer, size_t size)
{
	size_t used = 0;
	unsigned bit;

	buffer[0] = '\0';
	for (bit = 0; bit < 64 && used < size; bit++) {
		const char *name;
		int written;

		if (!(bits & (UINT64_C(1) << bit)))
			continue;
		name = render_feature_name(bit, protocol);
		if (name)
			written = snprintf(buffer + used, size - used, "%s%s",
					   used ? " " : "", name);
		else
			written = snprintf(buffer + used, size - used, "%sbit%u",
					   used ? " " : "", bit);
		if (written < 0)
			break;
		used += (size_t)written;
	}
	if (buffer[0] == '\0')
		snprintf(buffer, size, "none");
}

static uint64_t connection_total_bytes(const ControlConnection *connection)
{
	return connection->bytes_to_host + connection->bytes_to_guest;
}

static int compare_by_port(const void *left, const void *right)
{
	const ControlConnection *a = *(const ControlConnection *const *)left;
	const ControlConnection *b = *(const ControlConnection *const *)right;

	if (a->local_port != b->local_port)
		return a->local_port < b->local_port ? -1 : 1;
	if (a->peer_port != b->peer_port)
		return a->peer_port < b->peer_port ? -1 : 1;
	return 0;
}

static int compare_by_bytes(const void *left, const void *right)
{
	const ControlConnection *a = *(const ControlConnection *const *)left;
	const ControlConnection *b = *(const ControlConnection *const *)right;
	uint64_t a_bytes = connection_total_bytes(a), b_bytes = connection_total_bytes(b);

	if (a_bytes != b_bytes)
		return a_bytes > b_bytes ? -1 : 1;	/* descending */
	return compare_by_port(left, right);
}

static int compare_by_age(const void *left, const void *right)
{
	const ControlConnection *a = *(const ControlConnection *const *)left;
	const ControlConnection *b = *(const ControlConnection *const *)right;

	if (a->age_ms != b->age_ms)
		return a->age_ms > b->age_ms ? -1 : 1;	/* oldest first */
	return compare_by_port(left, right);
}

void render_sort_connections(ControlStats *stats, enum connection_sort order)
{
	int (*compare)(const void *, const void *) = compare_by_port;

	if (order == SORT_BY_BYTES)
		compare = compare_by_bytes;
	else if (order == SORT_BY_AGE)
		compare = compare_by_age;
	if (stats->n_connections > 1)
		qsort(stats->connections, stats->n_connections,
		      sizeof(stats->connections[0]), compare);
}

void render_compute_rates(const ControlStats *previous, const ControlStats *current,
			  struct rates *rates)
{
	uint64_t elapsed_ms;

	memset(rates, 0, sizeof(*rates));
	if (!previous)
		return;
	if (current->uptime_ms <= previous->uptime_ms ||
	    current->bytes_to_host < previous->bytes_to_host ||
	    current->bytes_to_guest < previous->bytes_to_guest) {
		rates->daemon_restarted = true;
		return;
	}
	/* The daemon's uptime is the clock its counters move with. */
	elapsed_ms = current->uptime_ms - previous->uptime_ms;
	rates->valid = true;
	rates->interval_seconds = (double)elapsed_ms / 1000.0;
	rates->bytes_to_host_per_second =
		(double)(current->bytes_to_host - previous->bytes_to_host) /
		rates->interval_seconds;
	rates->bytes_to_guest_per_second =
		(double)(current->bytes_to_guest - previous->bytes_to_guest) /
		rates->interval_seconds;
}

int render_status(FILE *out, const ControlStats *stats)
{
	struct table table;
	char text[FORMAT_BUFFER_SIZE], line[512];
	char virtio_names[256], protocol_names[128];
	uint64_t virtio = stats->features ? stats->features->virtio : 0;
	uint64_t protocol = stats->features ? stats->features->protocol : 0;
	int failed = 0;

	table_init(&table, 2, NULL, 0);
	format_duration_ms(stats->uptime_ms, text, sizeof(text));
	failed |= table_add_pair(&table, "uptime", text);
	snprintf(line, sizeof(line), "%" PRIu64, stats->guest_cid);
	failed |= table_add_pair(&table, "guest CID", line);
	failed |= table_add_pair(&table, "VMM attached", stats->vmm_attached ? "yes" : "no");
	render_feature_names(virtio, false, virtio_names, sizeof(virtio_names));
	snprintf(line, sizeof(line), "%s (0x%" PRIx64 ")", virtio_names, virtio);
	failed |= table_add_pair(&table, "virtio features", line);
	render_feature_names(protocol, true, protocol_names, sizeof(protocol_names));
	snprintf(line, sizeof(line), "%s (0x%" PRIx64 ")", protocol_names, protocol);
	failed |= table_add_pair(&table, "protocol features", line);
	snprintf(line, sizeof(line), "%" PRIu64, stats->vmm_attach_count);
	failed |= table_add_pair(&table, "attach count", line);
	snprintf(line, sizeof(line), "%" PRIu64 " current, %" PRIu64 " peak",
		 stats->connections_current, stats->connections_peak);
	failed |= table_add_pair(&table, "connections", line);
	if (!failed)
		table_print(&table, out, "");
	table_free(&table);
	return failed ? -1 : 0;
}

static const char *const conns_headers[] = {
	"LOCAL", "PEER", "FROM", "STATE", "AGE", "IDLE", "TO-HOST", "TO-GUEST",
	"PKTS-IN", "PKTS-OUT", "CREDIT", "BUFFERED",
};
/* Everything but FROM and STATE is a number: right-aligned. */
#define CONNS_RIGHT_ALIGN (0xfffu & ~((1u << 2) | (1u << 3)))

int render_conns(FILE *out, const ControlStats *stats)
{
	struct table table;
	size_t index;
	int failed = 0;

	table_init(&table, COUNT_OF(conns_headers), conns_headers, CONNS_RIGHT_ALIGN);
	for (index = 0; index < stats->n_connections && !failed; index++) {
		const ControlConnection *connection = stats->connections[index];
		char cells[COUNT_OF(conns_headers)][FORMAT_BUFFER_SIZE];
		const char *row[COUNT_OF(conns_headers)];
		size_t column;

		snprintf(cells[0], FORMAT_BUFFER_SIZE, "%u", connection->local_port);
		snprintf(cells[1], FORMAT_BUFFER_SIZE, "%u", connection->peer_port);
		snprintf(cells[2], FORMAT_BUFFER_SIZE, "%s",
			 connection->from_host ? "host" : "guest");
		format_printable(connection->state ? connection->state : "",
				 cells[3], FORMAT_BUFFER_SIZE);
		format_duration_ms(connection->age_ms, cells[4], FORMAT_BUFFER_SIZE);
		format_duration_ms(connection->idle_ms, cells[5], FORMAT_BUFFER_SIZE);
		format_bytes(connection->bytes_to_host, cells[6], FORMAT_BUFFER_SIZE);
		format_bytes(connection->bytes_to_guest, cells[7], FORMAT_BUFFER_SIZE);
		snprintf(cells[8], FORMAT_BUFFER_SIZE, "%" PRIu64, connection->packets_from_guest);
		snprintf(cells[9], FORMAT_BUFFER_SIZE, "%" PRIu64, connection->packets_to_guest);
		format_bytes(connection->guest_credit, cells[10], FORMAT_BUFFER_SIZE);
		format_bytes(connection->tx_buffered, cells[11], FORMAT_BUFFER_SIZE);
		for (column = 0; column < COUNT_OF(conns_headers); column++)
			row[column] = cells[column];
		failed = table_add_row(&table, row);
	}
	if (!failed) {
		table_print(&table, out, "");
		if (stats->n_connections == 0)
			fprintf(out, "(no connections)\n");
		if (stats->connections_truncated)
			fprintf(out, "(truncated: showing %zu of %" PRIu64 " connections)\n",
				stats->n_connections, stats->connections_current);
	}
	table_free(&table);
	return failed ? -1 : 0;
}

static int add_count(struct table *table, const char *key, uint64_t value)
{
	char text[FORMAT_BUFFER_SIZE];

	snprintf(text, sizeof(text), "%" PRIu64, value);
	return table_add_pair(table, key, text);
}

static int add_bytes(struct table *table, const char *key, uint64_t value)
{
	char units[FORMAT_BUFFER_SIZE], text[2 * FORMAT_BUFFER_SIZE];

	format_bytes(value, units, sizeof(units));
	if (value >= 1024)
		snprintf(text, sizeof(text), "%s (%" PRIu64 " B)", units, value);
	else
		snprintf(text, sizeof(text), "%s", units);
	return table_add_pair(table, key, text);
}

static int add_latency(struct table *table, const char *key, uint64_t nanoseconds)
{
	char text[FORMAT_BUFFER_SIZE];

	format_latency_ns(nanoseconds, text, sizeof(text));
	return table_add_pair(table, key, text);
}

static int add_heading(struct table *table, const char *heading)
{
	return table_add_pair(table, heading, "");
}

int render_stats(FILE *out, const ControlStats *stats)
{
	struct table table;
	size_t index;
	int failed = 0;

	/* One table so values line up across groups; headings have no value. */
	table_init(&table, 2, NULL, 1u << 1);
	failed |= add_heading(&table, "connections");
	failed |= add_count(&table, "  current", stats->connections_current);
	failed |= add_count(&table, "  peak", stats->connections_peak);
	failed |= add_count(&table, "  total from host", stats->connections_total_from_host);
	failed |= add_count(&table, "  total from guest", stats->connections_total_from_guest);
	failed |= add_heading(&table, "refused");
	failed |= add_count(&table, "  no_host_listener", stats->refused_no_host_listener);
	failed |= add_count(&table, "  guest_refused", stats->refused_guest_refused);
	failed |= add_count(&table, "  limit", stats->refused_limit);
	failed |= add_count(&table, "  bad_connect_line", stats->refused_bad_connect_line);
	failed |= add_count(&table, "  handshake_timeout", stats->refused_handshake_timeout);
	failed |= add_count(&table, "  handshake_limit", stats->refused_handshake_limit);
	failed |= add_count(&table, "  permission_denied", stats->refused_permission_denied);
	failed |= add_count(&table, "  policy_guest", stats->refused_policy_guest);
	failed |= add_count(&table, "  policy_host", stats->refused_policy_host);
	failed |= add_heading(&table, "host handshakes");
	failed |= add_count(&table, "  in progress", stats->handshakes_current);
	failed |= add_count(&table, "  accept pauses", stats->host_accept_pauses);
	failed |= add_count(&table, "  gone before OK", stats->host_gone_before_ok);
	failed |= add_heading(&table, "guest-to-host memory");
	failed |= add_bytes(&table, "  buffered", stats->tx_buffered_bytes);
	failed |= add_bytes(&table, "  credit offered", stats->tx_window_bytes);
	failed |= add_bytes(&table, "  budget", stats->tx_buffer_budget);
	failed |= add_count(&table, "  windows limited", stats->windows_limited);
	failed |= add_heading(&table, "control clients");
	failed |= add_count(&table, "  bad requests", stats->control_bad_requests);
	failed |= add_count(&table, "  timed out", stats->control_timeouts);
	failed |= add_count(&table, "  evicted", stats->control_evicted);
	failed |= add_count(&table, "  busy", stats->control_busy);
	failed |= add_heading(&table, "rst");
	failed |= add_count(&table, "  sent", stats->rst_sent);
	failed |= add_count(&table, "  received", stats->rst_received);
	failed |= add_count(&table, "  transport resets", stats->transport_resets);
	failed |= add_heading(&table, "traffic");
	failed |= add_bytes(&table, "  bytes to host", stats->bytes_to_host);
	failed |= add_bytes(&table, "  bytes to guest", stats->bytes_to_guest);
	failed |= add_count(&table, "  packets from guest", stats->packets_from_guest);
	failed |= add_count(&table, "  packets to guest", stats->packets_to_guest);
	failed |= add_heading(&table, "dropped");
	for (index = 0; index < stats->n_dropped && !failed; index++) {
		char key[FORMAT_BUFFER_SIZE * 2];
		char name[FORMAT_BUFFER_SIZE * 2 - 2];

		format_printable(stats->dropped[index]->key ? stats->dropped[index]->key : "",
				 name, sizeof(name));
		snprintf(key, sizeof(key), "  %s", name);
		failed |= add_count(&table, key, stats->dropped[index]->value);
	}
	if (stats->n_dropped == 0)
		failed |= table_add_pair(&table, "  (none)", "0");
	failed |= add_heading(&table, "waits");
	failed |= add_count(&table, "  for guest credit", stats->waits_for_credit);
	failed |= add_count(&table, "  for guest RX buffers", stats->waits_for_rx_buffers);
	failed |= add_heading(&table, "broker connect latency");
	failed |= add_count(&table, "  count", stats->broker_connects);
	failed |= add_latency(&table, "  avg", stats->broker_connects
			      ? stats->broker_connect_ns_sum / stats->broker_connects : 0);
	failed |= add_latency(&table, "  max", stats->broker_connect_ns_max);
	if (!failed)
		table_print(&table, out, "");
	table_free(&table);
	return failed ? -1 : 0;
}

void render_rates(FILE *out, const struct rates *rates)
{
	char to_host[FORMAT_BUFFER_SIZE], to_guest[FORMAT_BUFFER_SIZE];

	if (!rates->valid) {
		fprintf(out, "rates: n/a (%s)\n",
			rates->daemon_restarted ? "daemon restarted" : "first sample");
		return;
	}
	format_rate(rates->bytes_to_host_per_second, to_host, sizeof(to_host));
	format_rate(rates->bytes_to_guest_per_second, to_guest, sizeof(to_guest));
	fprintf(out, "rates: to host %s, to guest %s (over %.1fs)\n", to_host,
		to_guest, rates->interval_seconds);
}
