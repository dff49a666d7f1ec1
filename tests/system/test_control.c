/*
 * test_control.c - the control plane against the real daemon:
 * the real vsockctl binary and raw control-protocol clients ask a running
 * vsockmuxd, driven by the virtual guest, what it is doing, and the answers
 * must match the traffic the test produced: exact counters, every --json
 * field, valid Prometheus output, refusal of foreign uids, answers under
 * load, and a clear exit 1 without a daemon.
 *
 * Needs VSOCKMUXD and VSOCKCTL (paths of the built binaries). Every wait is
 * a poll() bounded by the test's deadline.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json-c/json.h>

#include "control.pb-c.h"
#include "prom_validator.h"
#include "sys_harness.h"
#include "vsockmux/control_wire.h"

#define CONTROL_VERSION 1u
#define FOREIGN_UID 12345u
#define VSOCKCTL_TIMEOUT_MS 5000
#define MIB (1024ull * 1024ull)

/* ------------------------------------------------------------------ */
/* running the real vsockctl */

struct ctl_run {
	int status;              /* waitpid status */
	char *out;               /* stdout, NUL-terminated */
	size_t out_len, out_capacity;
	char err[8192];          /* stderr, NUL-terminated */
	size_t err_len;
	double elapsed_ms;
};

static void ctl_run_free(struct ctl_run *run)
{
	free(run->out);
	run->out = NULL;
	run->out_len = run->out_capacity = 0;
}

static int ctl_exit_code(const struct ctl_run *run)
{
	return WIFEXITED(run->status) ? WEXITSTATUS(run->status) : -1;
}

static void control_path(const struct sys_harness *h, char *path, size_t size)
{
	CHECK(snprintf(path, size, "%s.ctl", h->uds_path) < (int)size);
}

/* Read what is there from fd into run; false at EOF. */
static bool ctl_read_stdout(int fd, struct ctl_run *run)
{
	ssize_t got;
	if (run->out_capacity - run->out_len < 4097) {
		size_t capacity = run->out_capacity ? run->out_capacity * 2 : 65536;
		char *grown = realloc(run->out, capacity);
		CHECKF(grown, "out of memory");
		run->out = grown;
		run->out_capacity = capacity;
	}
	got = read(fd, run->out + run->out_len, run->out_capacity - run->out_len - 1);
	if (got < 0 && (errno == EINTR || errno == EAGAIN))
		return true;
	if (got <= 0)
		return false;
	run->out_len += (size_t)got;
	CHECKF(run->out_len < 64 * MIB, "vsockctl printed more than 64 MiB");
	return true;
}

static bool ctl_read_stderr(int fd, struct ctl_run *run)
{
	char discard[4096];
	size_t room = sizeof(run->err) - 1 - run->err_len;
	ssize_t got = read(fd, room ? run->err + run->err_len : discard,
			   room ? room : sizeof(discard));
	if (got < 0 && (errno == EINTR || errno == EAGAIN))
		return true;
	if (got <= 0)
		return false;
	if (room)
		run->err_len += (size_t)got;
	return true;
}

/*
 * Run $VSOCKCTL with args (NULL-ended, without argv[0]) as uid (0: as we
 * are), collect stdout and stderr until it exits; kill it and fail after
 * timeout_ms. The harness keeps pumping meanwhile.
 */
static void run_vsockctl_as(struct sys_harness *h, uid_t uid, const char *const *args,
			    int timeout_ms, struct ctl_run *run)
{
	const char *exe = getenv("VSOCKCTL");
	const char *argv[24] = { exe };
	char copied_exe[160];
	uint64_t start = sys_now_ns(), end = sys_wait_end(h, timeout_ms);
	int out_pipe[2], err_pipe[2], pidfd;
	bool out_open = true, err_open = true, exited = false;
	size_t argc = 1;
	pid_t pid;

	memset(run, 0, sizeof(*run));
	CHECKF(exe && *exe, "VSOCKCTL is not set (path of the built vsockctl)");
	CHECKF(access(exe, X_OK) == 0, "%s: %s", exe, strerror(errno));
	if (uid != 0) {
		sys_copy_executable(h, exe, copied_exe, sizeof(copied_exe));
		argv[0] = exe = copied_exe;
	}
	for (size_t i = 0; args[i]; i++) {
		CHECK(argc < sizeof(argv) / sizeof(argv[0]) - 1);
		argv[argc++] = args[i];
	}
	argv[argc] = NULL;
	CHECK(pipe2(out_pipe, O_CLOEXEC) == 0);
	CHECK(pipe2(err_pipe, O_CLOEXEC) == 0);
	pid = sys_fork_child();
	if (pid == 0) {
		int null_fd = open("/dev/null", O_RDONLY);
		if (null_fd < 0 || dup2(null_fd, STDIN_FILENO) < 0 ||
		    dup2(out_pipe[1], STDOUT_FILENO) < 0 ||
		    dup2(err_pipe[1], STDERR_FILENO) < 0)
			_exit(126);
		if (!sys_child_become(uid, uid))
			_exit(125);
		unsetenv("VSOCKMUX_CONTROL_SOCKET");
		execv(exe, (char *const *)argv);
		_exit(127);
	}
	close(out_pipe[1]);
	close(err_pipe[1]);
	pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	CHECKF(pidfd >= 0, "pidfd_open: %s", strerror(errno));
	while (out_open || err_open || !exited) {
		struct pollfd fds[3] = {
			{ .fd = out_open ? out_pipe[0] : -1, .events = POLLIN },
			{ .fd = err_open ? err_pipe[0] : -1, .events = POLLIN },
			{ .fd = exited ? -1 : pidfd, .events = POLLIN },
		};
		int wait_ms = sys_ms_until(end);
		int ready;

		if (wait_ms <= 0) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			FAIL("vsockctl %s did not finish within %d ms (stderr so far: %.*s)",
			     args[0], timeout_ms, (int)run->err_len, run->err);
		}
		/* keep the guest and host sockets moving while we wait */
		ready = poll(fds, 3, wait_ms < 10 ? wait_ms : 10);
		CHECKF(ready >= 0 || errno == EINTR, "poll: %s", strerror(errno));
		if (fds[0].revents)
			out_open = ctl_read_stdout(out_pipe[0], run);
		if (fds[1].revents)
			err_open = ctl_read_stderr(err_pipe[0], run);
		if (fds[2].revents)
			exited = true;
		if (h->daemon_pid > 0)
			sys_pump(h, 0);
	}
	CHECK(waitpid(pid, &run->status, 0) == pid);
	close(pidfd);
	close(out_pipe[0]);
	close(err_pipe[0]);
	if (!run->out) {
		run->out = calloc(1, 1);
		CHECK(run->out);
	}
	run->out[run->out_len] = '\0';
	run->err[run->err_len] = '\0';
	run->elapsed_ms = (double)(sys_now_ns() - start) / 1e6;
}

/* vsockctl --control-socket <h's control socket> words... as root. */
static void run_vsockctl(struct sys_harness *h, const char *const *words,
			 int timeout_ms, struct ctl_run *run)
{
	char path[128];
	const char *args[16] = { "--control-socket", path };
	size_t count = 2;

	control_path(h, path, sizeof(path));
	for (size_t i = 0; words[i]; i++) {
		CHECK(count < sizeof(args) / sizeof(args[0]) - 1);
		args[count++] = words[i];
	}
	args[count] = NULL;
	run_vsockctl_as(h, 0, args, timeout_ms, run);
}

static int count_lines(const char *text)
{
	int lines = 0;
	for (; *text; text++)
		lines += *text == '\n';
	return lines;
}

/* ------------------------------------------------------------------ */
/* JSON helpers */

static json_object *ctl_json(struct sys_harness *h, const char *const *words)
{
	struct ctl_run run;
	json_object *root;
	enum json_tokener_error error = json_tokener_success;

	run_vsockctl(h, words, VSOCKCTL_TIMEOUT_MS, &run);
	CHECKF(ctl_exit_code(&run) == 0, "vsockctl %s %s: status %#x, stderr: %s",
	       words[0], words[1] ? words[1] : "", run.status, run.err);
	root = json_tokener_parse_verbose(run.out, &error);
	CHECKF(root && json_object_is_type(root, json_type_object),
	       "vsockctl --json output does not parse as a JSON object (%s): %.400s",
	       json_tokener_error_desc(error), run.out);
	ctl_run_free(&run);
	return root;
}

static json_object *json_member(json_object *object, const char *key,
				enum json_type type)
{
	json_object *value = NULL;
	CHECKF(json_object_object_get_ex(object, key, &value),
	       "JSON has no \"%s\"", key);
	CHECKF(json_object_is_type(value, type), "JSON \"%s\" is a %s, expected %s", key,
	       json_type_to_name(json_object_get_type(value)), json_type_to_name(type));
	return value;
}

static uint64_t json_u64(json_object *object, const char *key)
{
	json_object *value = json_member(object, key, json_type_int);
	errno = 0;
	uint64_t result = json_object_get_uint64(value);
	CHECKF(errno == 0, "JSON \"%s\" is not an unsigned 64-bit integer", key);
	return result;
}

static bool json_flag(json_object *object, const char *key)
{
	return json_object_get_boolean(json_member(object, key, json_type_boolean));
}

#define EXPECT_U64(object, key, want) do { \
	uint64_t got_ = json_u64((object), (key)); \
	uint64_t want_ = (uint64_t)(want); \
	CHECKF(got_ == want_, "%s: daemon says %" PRIu64 ", expected %" PRIu64, \
	       (key), got_, want_); } while (0)

static json_object *ctl_stats(struct sys_harness *h)
{
	static const char *const words[] = { "--json", "stats", NULL };
	return ctl_json(h, words);
}

static json_object *ctl_conns(struct sys_harness *h)
{
	static const char *const words[] = { "--json", "conns", NULL };
	return ctl_json(h, words);
}

/*
 * Ask (vsockctl --json stats) until connections_current is 0, pumping in
 * between; the muxer has then processed every close. Returns the last
 * snapshot (caller puts it).
 */
static json_object *wait_all_closed(struct sys_harness *h, int timeout_ms)
{
	uint64_t end = sys_wait_end(h, timeout_ms);
	for (;;) {
		json_object *stats = ctl_stats(h);
		uint64_t current = json_u64(stats, "connections_current");
		if (current == 0)
			return stats;
		json_object_put(stats);
		CHECKF(sys_now_ns() < end, "connections_current still %" PRIu64
		       " %d ms after every connection was closed", current, timeout_ms);
		sys_pump(h, 20);
	}
}

/* ------------------------------------------------------------------ */
/* traffic helpers */

static uint8_t *pattern_buffer(uint32_t seed, size_t len)
{
	uint8_t *buffer = malloc(len ? len : 1);
	CHECKF(buffer, "out of memory");
	pattern_fill(seed, 0, buffer, len);
	return buffer;
}

/* host -> guest to_guest bytes, then guest -> host to_host bytes; both
 * checked on arrival. */
static void exchange(struct sys_harness *h, struct host_conn *c, struct vguest_sock *g,
		     uint32_t seed, size_t to_guest, size_t to_host)
{
	uint8_t *out = pattern_buffer(seed, to_guest);
	uint8_t *back = pattern_buffer(seed + 1000, to_host);
	uint8_t *in = malloc(to_guest ? to_guest : 1);

	CHECK(in);
	host_write(c, out, to_guest);
	sys_guest_read_exact(h, g, in, to_guest, 10000);
	CHECKF(memcmp(in, out, to_guest) == 0, "host->guest bytes corrupted");
	sys_guest_write_all(h, g, back, to_host, 10000);
	sys_host_expect(h, c, back, to_host, 10000);
	free(out);
	free(back);
	free(in);
}

static uint64_t sum_ops(const uint64_t *ops)
{
	uint64_t total = 0;
	for (unsigned i = 0; i < VGUEST_OP_SLOTS; i++)
		total += ops[i];
	return total;
}

/* ------------------------------------------------------------------ */
/* 1. counters_exact */

#define HOST_CONNS 3
#define GUEST_CONNS 2

static void test_counters_exact(struct sys_harness *h)
{
	static const size_t host_to_guest[HOST_CONNS] = { 1, 4096, 100000 };
	static const size_t guest_to_host[HOST_CONNS] = { 2, 8191, 65537 };
	static const size_t guest_sends[GUEST_CONNS] = { 3000, 70001 };
	static const size_t host_answers[GUEST_CONNS] = { 5, 12345 };
	struct host_conn *hc[HOST_CONNS + GUEST_CONNS], *bad, *refused;
	struct vguest_sock *hg[HOST_CONNS + GUEST_CONNS], *listener, *orphan;
	struct host_listener *hl;
	const struct vguest_stats *guest;
	uint64_t want_to_guest = 0, want_to_host = 0;
	json_object *stats, *features, *dropped, *connections;

	sys_setup(h);
	listener = vguest_listen(h->vg, 5000);
	for (int i = 0; i < HOST_CONNS; i++) {
		sys_open_host_initiated(h, h->vg, listener, 5000, &hc[i], &hg[i]);
		exchange(h, hc[i], hg[i], 100u + (uint32_t)i, host_to_guest[i],
			 guest_to_host[i]);
		want_to_guest += host_to_guest[i];
		want_to_host += guest_to_host[i];
	}
	hl = host_listen(h, 6000);
	for (int i = 0; i < GUEST_CONNS; i++) {
		struct host_conn *c;
		struct vguest_sock *g;
		uint8_t *data = pattern_buffer(200u + (uint32_t)i, guest_sends[i]);
		uint8_t *answer = pattern_buffer(300u + (uint32_t)i, host_answers[i]);
		uint8_t *got = malloc(host_answers[i]);

		CHECK(got);
		sys_open_guest_initiated(h, h->vg, hl, &c, &g);
		sys_guest_write_all(h, g, data, guest_sends[i], 10000);
		sys_host_expect(h, c, data, guest_sends[i], 10000);
		host_write(c, answer, host_answers[i]);
		sys_guest_read_exact(h, g, got, host_answers[i], 10000);
		CHECK(memcmp(got, answer, host_answers[i]) == 0);
		want_to_host += guest_sends[i];
		want_to_guest += host_answers[i];
		hc[HOST_CONNS + i] = c;
		hg[HOST_CONNS + i] = g;
		free(data);
		free(answer);
		free(got);
	}

	/* refused: guest connect, no host listener on 6001 */
	orphan = vguest_connect_port(h->vg, 6001);
	CHECK(orphan);
	WAIT_FOR(h, 3000, orphan->state == VGUEST_SOCK_CLOSED);
	CHECKF(orphan->refused, "guest connect without host listener not refused");
	/* refused: a bad CONNECT line */
	bad = host_connect(h);
	host_write_str(bad, "CONNECT banana\n");
	WAIT_FOR(h, 3000, host_peer_closed(bad));
	CHECK(host_in_len(bad) == 0);
	/* refused: the guest answers REQUEST with RST (nobody listens on 5555) */
	refused = host_connect_port(h, 5555);
	WAIT_FOR(h, 3000, host_peer_closed(refused));
	CHECK(host_in_len(refused) == 0);
	CHECK(vguest_count_packets(h->vg, true, VSOCK_OP_RST, 5555, VGUEST_ANY_PORT) == 1);

	for (int i = 0; i < HOST_CONNS + GUEST_CONNS; i++) {
		sys_close_from_guest(h, hg[i], hc[i]);
		host_close(hc[i]);
	}
	host_close(bad);
	host_close(refused);

	json_object_put(wait_all_closed(h, 5000));
	/* nothing moves now: the guest's counters are final */
	guest = vguest_get_stats(h->vg);
	stats = ctl_stats(h);
	printf("stats: %s\n", json_object_to_json_string_ext(stats, JSON_C_TO_STRING_PLAIN));

	EXPECT_U64(stats, "connections_current", 0);
	EXPECT_U64(stats, "connections_peak", HOST_CONNS + GUEST_CONNS);
	EXPECT_U64(stats, "connections_total_from_host", HOST_CONNS);
	EXPECT_U64(stats, "connections_total_from_guest", GUEST_CONNS);
	EXPECT_U64(stats, "refused_no_host_listener", 1);
	EXPECT_U64(stats, "refused_guest_refused", 1);
	EXPECT_U64(stats, "refused_limit", 0);
	EXPECT_U64(stats, "refused_bad_connect_line", 1);
	EXPECT_U64(stats, "refused_handshake_timeout", 0);
	EXPECT_U64(stats, "bytes_to_guest", want_to_guest);
	EXPECT_U64(stats, "bytes_to_host", want_to_host);
	EXPECT_U64(stats, "bytes_to_guest", guest->rx_payload_bytes);
	EXPECT_U64(stats, "bytes_to_host", guest->tx_payload_bytes);
	/* RST: one per guest close (5) and one for the refused guest connect;
	 * received: the guest's refusal only */
	EXPECT_U64(stats, "rst_sent", HOST_CONNS + GUEST_CONNS + 1);
	EXPECT_U64(stats, "rst_sent", guest->rx_packets[VSOCK_OP_RST]);
	EXPECT_U64(stats, "rst_received", 1);
	EXPECT_U64(stats, "rst_received", guest->tx_packets[VSOCK_OP_RST]);
	/* every packet either way, as the guest counted them */
	EXPECT_U64(stats, "packets_from_guest", sum_ops(guest->tx_packets));
	EXPECT_U64(stats, "packets_to_guest", sum_ops(guest->rx_packets));
	/* broker connects: 2 guest-initiated + the one without listener */
	EXPECT_U64(stats, "broker_connects", GUEST_CONNS + 1);
	CHECK(json_u64(stats, "broker_connect_ns_sum") >= json_u64(stats, "broker_connect_ns_max"));
	CHECK(json_u64(stats, "broker_connect_ns_max") > 0);
	EXPECT_U64(stats, "guest_cid", VGUEST_DEFAULT_CID);
	CHECK(json_flag(stats, "vmm_attached"));
	EXPECT_U64(stats, "vmm_attach_count", 1);
	features = json_member(stats, "features", json_type_object);
	EXPECT_U64(features, "virtio", vguest_features_acked(h->vg));
	EXPECT_U64(features, "protocol", vguest_protocol_features(h->vg));
	dropped = json_member(stats, "dropped", json_type_object);
	json_object_object_foreach(dropped, reason, count) {
		CHECKF(json_object_get_uint64(count) == 0, "dropped %s = %s on clean traffic",
		       reason, json_object_to_json_string(count));
	}
	CHECK(json_object_object_length(dropped) > 0);
	connections = json_member(stats, "connections", json_type_array);
	CHECK(json_object_array_length(connections) == 0);
	CHECK(!json_flag(stats, "connections_truncated"));
	CHECK(json_u64(stats, "uptime_ms") <= (sys_now_ns() - h->start_ns) / 1000000u);
	json_object_put(stats);
}

/* ------------------------------------------------------------------ */
/* 2. json_fields */

static void check_json_message(json_object *object, const ProtobufCMessageDescriptor *descriptor,
			       const char *where);

/* A map field is a repeated message whose entry type has key and value. */
static bool is_map_entry(const ProtobufCMessageDescriptor *descriptor)
{
	size_t length = strlen(descriptor->name);
	return descriptor->n_fields == 2 && length > 5 &&
	       strcmp(descriptor->name + length - 5, "Entry") == 0 &&
	       strcmp(descriptor->fields[0].name, "key") == 0 &&
	       strcmp(descriptor->fields[1].name, "value") == 0;
}

static enum json_type json_type_of(ProtobufCType type)
{
	switch (type) {
	case PROTOBUF_C_TYPE_BOOL:
		return json_type_boolean;
	case PROTOBUF_C_TYPE_STRING:
		return json_type_string;
	case PROTOBUF_C_TYPE_MESSAGE:
		return json_type_object;
	case PROTOBUF_C_TYPE_FLOAT:
	case PROTOBUF_C_TYPE_DOUBLE:
		return json_type_double;
	default:
		return json_type_int;
	}
}

static void check_json_value(json_object *value, const ProtobufCFieldDescriptor *field,
			     const char *where)
{
	char inner[160];
	snprintf(inner, sizeof(inner), "%s.%s", where, field->name);
	CHECKF(json_object_is_type(value, json_type_of(field->type)),
	       "%s is a JSON %s, expected %s", inner,
	       json_type_to_name(json_object_get_type(value)),
	       json_type_to_name(json_type_of(field->type)));
	if (field->type == PROTOBUF_C_TYPE_MESSAGE)
		check_json_message(value, field->descriptor, inner);
}

/* Every field of descriptor is in object, with a fitting JSON type. */
static void check_json_message(json_object *object, const ProtobufCMessageDescriptor *descriptor,
			       const char *where)
{
	for (unsigned i = 0; i < descriptor->n_fields; i++) {
		const ProtobufCFieldDescriptor *field = &descriptor->fields[i];
		json_object *value = NULL;
		char inner[160];

		snprintf(inner, sizeof(inner), "%s.%s", where, field->name);
		CHECKF(json_object_object_get_ex(object, field->name, &value),
		       "--json output lacks %s (field %u of %s)", inner, field->id,
		       descriptor->name);
		if (field->label != PROTOBUF_C_LABEL_REPEATED) {
			check_json_value(value, field, where);
			continue;
		}
		if (field->type == PROTOBUF_C_TYPE_MESSAGE &&
		    is_map_entry(field->descriptor)) {
			const ProtobufCMessageDescriptor *entry = field->descriptor;
			CHECKF(json_object_is_type(value, json_type_object),
			       "map %s is not a JSON object", inner);
			json_object_object_foreach(value, key, item) {
				(void)key;
				check_json_value(item, &entry->fields[1], inner);
			}
			continue;
		}
		CHECKF(json_object_is_type(value, json_type_array),
		       "repeated %s is not a JSON array", inner);
		for (size_t k = 0; k < json_object_array_length(value); k++)
			check_json_value(json_object_array_get_idx(value, k), field, where);
	}
}

/* The row of the connection whose guest end is g. */
static json_object *find_row(json_object *connections, const struct vguest_sock *g)
{
	json_object *found = NULL;
	for (size_t k = 0; k < json_object_array_length(connections); k++) {
		json_object *row = json_object_array_get_idx(connections, k);
		if (json_u64(row, "local_port") == g->peer_port &&
		    json_u64(row, "peer_port") == g->local_port) {
			CHECKF(!found, "two rows for %u<->%u", g->peer_port, g->local_port);
			found = row;
		}
	}
	CHECKF(found, "no connection row for local port %u, peer port %u",
	       g->peer_port, g->local_port);
	return found;
}

static void check_row(json_object *row, const struct vguest_sock *g, bool from_host,
		      uint64_t to_guest, uint64_t to_host, uint64_t max_age_ms)
{
	printf("row: %s\n", json_object_to_json_string_ext(row, JSON_C_TO_STRING_PLAIN));
	CHECK(json_flag(row, "from_host") == from_host);
	CHECK(strcmp(json_object_get_string(json_member(row, "state", json_type_string)),
		     "established") == 0);
	EXPECT_U64(row, "bytes_to_guest", to_guest);
	EXPECT_U64(row, "bytes_to_host", to_host);
	EXPECT_U64(row, "bytes_to_guest", g->rx_bytes);
	EXPECT_U64(row, "bytes_to_host", g->tx_bytes);
	/* packets on this pair as the guest counted them: every one, the
	 * REQUEST that opened the connection included (either way) */
	EXPECT_U64(row, "packets_to_guest", sum_ops(g->op_rx));
	CHECKF(json_u64(row, "packets_from_guest") == sum_ops(g->op_tx),
	       "packets_from_guest: daemon says %" PRIu64 ", the guest sent %" PRIu64
	       " packets on this pair (%" PRIu64 " REQUEST)", json_u64(row, "packets_from_guest"),
	       sum_ops(g->op_tx), g->op_tx[VSOCK_OP_REQUEST]);
	EXPECT_U64(row, "tx_buffered", 0);
	/* the guest has read everything: credit is what it advertised minus
	 * nothing in flight, as of its latest fwd_cnt */
	EXPECT_U64(row, "guest_credit", g->buf_alloc - (g->rx_cnt - g->last_fwd_cnt_sent));
	CHECK(json_u64(row, "age_ms") <= max_age_ms);
	CHECK(json_u64(row, "idle_ms") <= json_u64(row, "age_ms"));
}

static void test_json_fields(struct sys_harness *h)
{
	struct vguest_sock *hg, *gg;
	struct host_conn *hc, *gc;
	json_object *stats, *connections;
	uint64_t max_age_ms;
	uint8_t *data;

	sys_setup(h);
	(void)sys_open_to_guest(h, 5000, &hc, &hg);
	exchange(h, hc, hg, 7, 12345, 777);
	(void)sys_open_to_host(h, 6000, &gc, &gg);
	exchange(h, gc, gg, 8, 4321, 99999);
	/* one more guest -> host without reply, to tell the directions apart */
	data = pattern_buffer(9, 1111);
	sys_guest_write_all(h, gg, data, 1111, 5000);
	sys_host_expect(h, gc, data, 1111, 5000);
	free(data);
	/* every packet the guest sent has been handled before we ask */
	sys_tx_barrier(h, h->vg);

	stats = ctl_conns(h);
	max_age_ms = (sys_now_ns() - h->start_ns) / 1000000u;
	check_json_message(stats, &vsockmux__control__stats__descriptor, "stats");
	connections = json_member(stats, "connections", json_type_array);
	CHECKF(json_object_array_length(connections) == 2, "%zu rows, expected 2",
	       json_object_array_length(connections));
	EXPECT_U64(stats, "connections_current", 2);
	CHECK(!json_flag(stats, "connections_truncated"));
	check_row(find_row(connections, hg), hg, true, 12345, 777, max_age_ms);
	check_row(find_row(connections, gg), gg, false, 4321, 99999 + 1111, max_age_ms);
	json_object_put(stats);
}

/* ------------------------------------------------------------------ */
/* 3. metrics_valid */

/* The value of the sample whose name{labels} is exactly series. */
static double metric_value(const char *text, const char *series)
{
	size_t length = strlen(series);
	const char *line = text;
	while (line && *line) {
		if (strncmp(line, series, length) == 0 && line[length] == ' ')
			return strtod(line + length + 1, NULL);
		line = strchr(line, '\n');
		if (line)
			line++;
	}
	FAIL("metrics lack the series %s", series);
}

#define EXPECT_METRIC(text, series, want) do { \
	double got_ = metric_value((text), (series)); \
	CHECKF(got_ == (double)(want), "%s is %.17g, expected %.17g", (series), got_, \
	       (double)(want)); } while (0)

static void test_metrics_valid(struct sys_harness *h)
{
	static const char *const words[] = { "metrics", NULL };
	struct vguest_sock *hg, *gg, *orphan;
	struct host_conn *hc, *gc;
	struct ctl_run run;
	char error[256], series[256];

	sys_setup(h);
	(void)sys_open_to_guest(h, 5000, &hc, &hg);
	exchange(h, hc, hg, 1, 50000, 60000);
	(void)sys_open_to_host(h, 6000, &gc, &gg);
	exchange(h, gc, gg, 2, 7, 8);
	orphan = vguest_connect_port(h->vg, 6001);
	CHECK(orphan);
	WAIT_FOR(h, 3000, orphan->state == VGUEST_SOCK_CLOSED);
	CHECK(orphan->refused);
	sys_tx_barrier(h, h->vg);   /* a second no-listener refusal */

	run_vsockctl(h, words, VSOCKCTL_TIMEOUT_MS, &run);
	CHECKF(ctl_exit_code(&run) == 0, "vsockctl metrics: status %#x, stderr: %s",
	       run.status, run.err);
	CHECKF(prom_validate(run.out, error, sizeof(error)) == 0,
	       "vsockctl metrics output is not valid exposition format: %s", error);
	printf("metrics: %zu samples, %zu bytes\n", prom_last_sample_count(), run.out_len);
	EXPECT_METRIC(run.out, "vsockmux_guest_cid", VGUEST_DEFAULT_CID);
	EXPECT_METRIC(run.out, "vsockmux_vmm_attached", 1);
	EXPECT_METRIC(run.out, "vsockmux_connections", 2);
	EXPECT_METRIC(run.out, "vsockmux_connections_total{initiator=\"host\"}", 1);
	EXPECT_METRIC(run.out, "vsockmux_connections_total{initiator=\"guest\"}", 1);
	EXPECT_METRIC(run.out, "vsockmux_refused_total{reason=\"no_host_listener\"}", 2);
	EXPECT_METRIC(run.out, "vsockmux_refused_total{reason=\"bad_connect_line\"}", 0);
	EXPECT_METRIC(run.out, "vsockmux_transferred_bytes_total{direction=\"to_guest\"}",
		      50000 + 7);
	EXPECT_METRIC(run.out, "vsockmux_transferred_bytes_total{direction=\"to_host\"}",
		      60000 + 8);
	EXPECT_METRIC(run.out, "vsockmux_rst_sent_total", 2);
	EXPECT_METRIC(run.out, "vsockmux_packets_total{direction=\"to_guest\"}",
		      sum_ops(vguest_get_stats(h->vg)->rx_packets));
	snprintf(series, sizeof(series),
		 "vsockmux_connection_transferred_bytes_total{local_port=\"%u\",peer_port=\"%u\","
		 "initiator=\"host\",direction=\"to_guest\"}", hg->peer_port, hg->local_port);
	EXPECT_METRIC(run.out, series, 50000);
	snprintf(series, sizeof(series),
		 "vsockmux_connection_transferred_bytes_total{local_port=\"%u\",peer_port=\"%u\","
		 "initiator=\"guest\",direction=\"to_host\"}", gg->peer_port, gg->local_port);
	EXPECT_METRIC(run.out, series, 8);
	snprintf(series, sizeof(series),
		 "vsockmux_connection_state{local_port=\"%u\",peer_port=\"%u\","
		 "initiator=\"guest\",state=\"established\"}", gg->peer_port, gg->local_port);
	EXPECT_METRIC(run.out, series, 1);
	ctl_run_free(&run);
}

/* ------------------------------------------------------------------ */
/* 4. unauthorized_refused */

static uid_t process_euid(pid_t pid)
{
	char path[64], line[256];
	unsigned real = 0, effective = 0;
	bool found = false;
	FILE *status;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	status = fopen(path, "r");
	CHECKF(status, "%s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), status))
		if (sscanf(line, "Uid: %u %u", &real, &effective) == 2)
			found = true;
	fclose(status);
	CHECKF(found, "no Uid line in %s", path);
	return (uid_t)effective;
}

/* vsockctl status as uid: exit 1 with one line naming path; true if that
 * line holds needle (else *line gets it). */
static bool refused_as(struct sys_harness *h, uid_t uid, const char *path,
		       const char *needle, char *line, size_t line_size)
{
	const char *args[] = { "--control-socket", path, "status", NULL };
	struct ctl_run run;
	bool found;

	run_vsockctl_as(h, uid, args, VSOCKCTL_TIMEOUT_MS, &run);
	CHECKF(ctl_exit_code(&run) == 1, "vsockctl as uid %u: status %#x, want exit 1",
	       (unsigned)uid, run.status);
	CHECKF(strstr(run.err, path), "vsockctl as uid %u: message does not name %s: %s",
	       (unsigned)uid, path, run.err);
	CHECKF(count_lines(run.err) == 1, "vsockctl as uid %u: want one line, got: %s",
	       (unsigned)uid, run.err);
	CHECKF(run.out_len == 0, "a refused vsockctl printed: %s", run.out);
	printf("uid %u: exit 1: %s", (unsigned)uid, run.err);
	found = strstr(run.err, needle) != NULL;
	if (!found)
		snprintf(line, line_size, "%.400s", run.err);
	ctl_run_free(&run);
	return found;
}

static void expect_refused_as(struct sys_harness *h, uid_t uid, const char *path,
			      const char *needle)
{
	char line[512] = "";
	CHECKF(refused_as(h, uid, path, needle, line, sizeof(line)),
	       "vsockctl as uid %u: no \"%s\" in: %s", (unsigned)uid, needle, line);
}

static void expect_answer_as(struct sys_harness *h, uid_t uid, const char *path)
{
	const char *args[] = { "--control-socket", path, "--json", "status", NULL };
	struct ctl_run run;
	json_object *root;

	run_vsockctl_as(h, uid, args, VSOCKCTL_TIMEOUT_MS, &run);
	CHECKF(ctl_exit_code(&run) == 0, "vsockctl as uid %u: status %#x, stderr: %s",
	       (unsigned)uid, run.status, run.err);
	root = json_tokener_parse(run.out);
	CHECKF(root, "vsockctl as uid %u printed no JSON: %s", (unsigned)uid, run.out);
	EXPECT_U64(root, "guest_cid", VGUEST_DEFAULT_CID);
	json_object_put(root);
	ctl_run_free(&run);
}

/*
 * A raw control client: connect to path with effective uid euid (SO_PEERCRED
 * takes it at connect()), send a Request unless silent, and return the
 * Response, or NULL if the daemon closed without one.
 */
static Vsockmux__Control__Response *raw_query_as(struct sys_harness *h, uid_t euid,
						 const char *path, bool silent)
{
	struct sockaddr_un address = { .sun_family = AF_UNIX };
	Vsockmux__Control__Request request = VSOCKMUX__CONTROL__REQUEST__INIT;
	Vsockmux__Control__Response *response;
	int fd, connected;

	CHECK(strlen(path) < sizeof(address.sun_path));
	memcpy(address.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(fd >= 0);
	CHECKF(euid == 0 || seteuid(euid) == 0, "seteuid(%u): %s", (unsigned)euid,
	       strerror(errno));
	connected = connect(fd, (struct sockaddr *)&address, sizeof(address));
	CHECKF(euid == 0 || seteuid(0) == 0, "seteuid(0): %s", strerror(errno));
	CHECKF(connected == 0, "connect %s as uid %u: %s", path, (unsigned)euid,
	       strerror(errno));
	request.version = CONTROL_VERSION;
	response = sys_control_exchange(h, fd, silent ? NULL : &request, VSOCKCTL_TIMEOUT_MS);
	if (response)
		CHECKF(response->version == CONTROL_VERSION, "response version %u",
		       response->version);
	return response;
}

static void test_unauthorized_refused(struct sys_harness *h)
{
	Vsockmux__Control__Response *response;
	char path[128], other[512] = "";
	struct stat st;
	uid_t daemon_uid;
	unsigned lost = 0;

	sys_setup(h);
	control_path(h, path, sizeof(path));
	CHECKF(stat(path, &st) == 0, "%s: %s", path, strerror(errno));
	daemon_uid = process_euid(h->daemon_pid);
	printf("control socket %s: mode %04o, owner %u:%u; broker euid %u\n", path,
	       (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid, (unsigned)st.st_gid,
	       (unsigned)daemon_uid);
	CHECK(S_ISSOCK(st.st_mode));
	CHECKF((st.st_mode & 07777) == 0660, "control socket mode %04o, want 0660",
	       (unsigned)(st.st_mode & 07777));
	CHECK(FOREIGN_UID != daemon_uid && FOREIGN_UID != st.st_uid);

	/* the file mode keeps a stranger out at connect() */
	expect_refused_as(h, FOREIGN_UID, path, "Permission denied");
	/* past the file mode, SO_PEERCRED must refuse it: a raw client that
	 * just listens gets the refusal, then the real vsockctl */
	CHECK(chmod(path, 0666) == 0);
	response = raw_query_as(h, FOREIGN_UID, path, true);
	CHECKF(response, "uid %u: closed without a Response", FOREIGN_UID);
	printf("raw client as uid %u: error \"%s\"\n", FOREIGN_UID, response->error);
	CHECKF(response->error && strstr(response->error, "permission denied") &&
	       !response->stats, "uid %u: want a \"permission denied\" error, got \"%s\"",
	       FOREIGN_UID, response->error ? response->error : "");
	vsockmux__control__response__free_unpacked(response, NULL);
	response = raw_query_as(h, 0, path, false);
	CHECKF(response && response->stats && !(response->error && response->error[0]),
	       "root's raw request was not answered");
	vsockmux__control__response__free_unpacked(response, NULL);
	/* root and the daemon's own user are answered */
	expect_answer_as(h, 0, path);
	if (daemon_uid != 0)
		expect_answer_as(h, daemon_uid, path);
	/* the refusal must reach vsockctl every time, whether the daemon
	 * answers (and closes) before or after vsockctl sent its request */
	for (int i = 0; i < 10; i++)
		lost += !refused_as(h, FOREIGN_UID, path, "permission denied", other,
				    sizeof(other));
	/* the refusals did not wedge anything */
	expect_answer_as(h, 0, path);
	CHECKF(lost == 0, "%u of 10 refused vsockctl runs did not show the daemon's "
	       "\"permission denied\" but: %s", lost, other);
}

/* ------------------------------------------------------------------ */
/* 5. hammer_during_bulk: raw control clients in our poll loop */

#define HAMMER_CLIENTS 50
#define HAMMER_SIZE (64ull * MIB)
#define HAMMER_ANSWER_MS 5000

enum raw_state { RAW_IDLE, RAW_WRITING, RAW_READING };

struct raw_client {
	enum raw_state state;
	int fd;
	uint8_t request[64];
	size_t request_length, request_sent;
	uint8_t *response;        /* 4-byte length, then the message */
	size_t response_got, response_need;
	uint64_t started_ns;
	unsigned answers;
};

struct hammer {
	struct raw_client clients[HAMMER_CLIENTS];
	int idle[HAMMER_CLIENTS];   /* FIFO of refused clients */
	size_t idle_head, idle_count;
	char path[108];           /* sun_path */
	uint64_t answers, errors, closed, connect_busy;
	uint64_t max_latency_ns, latency_sum_ns;
	uint64_t last_bytes_to_guest, last_bytes_to_host;
	char first_error[160];
};

static void raw_close(struct raw_client *client)
{
	if (client->fd >= 0)
		close(client->fd);
	client->fd = -1;
	free(client->response);
	client->response = NULL;
	client->state = RAW_IDLE;
}

static void hammer_park(struct hammer *hammer, int index)
{
	raw_close(&hammer->clients[index]);
	hammer->idle[(hammer->idle_head + hammer->idle_count) % HAMMER_CLIENTS] = index;
	hammer->idle_count++;
}

/* Connect and queue one Request{version 1, include_connections}. */
static void raw_start(struct hammer *hammer, int index)
{
	struct raw_client *client = &hammer->clients[index];
	struct sockaddr_un address = { .sun_family = AF_UNIX };
	Vsockmux__Control__Request request = VSOCKMUX__CONTROL__REQUEST__INIT;

	client->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	CHECKF(client->fd >= 0, "socket: %s", strerror(errno));
	snprintf(address.sun_path, sizeof(address.sun_path), "%s", hammer->path);
	client->started_ns = sys_now_ns();
	if (connect(client->fd, (struct sockaddr *)&address, sizeof(address)) < 0) {
		CHECKF(errno == EAGAIN, "control connect: %s", strerror(errno));
		hammer->connect_busy++;   /* listen backlog full */
		hammer_park(hammer, index);
		return;
	}
	request.version = CONTROL_VERSION;
	request.include_connections = true;
	client->request_length = sys_control_frame(&request, client->request,
						   sizeof(client->request));
	client->request_sent = 0;
	client->response_got = 0;
	client->response_need = 4;
	client->response = malloc(4);
	CHECK(client->response);
	client->state = RAW_WRITING;
}

static void hammer_wake_one(struct hammer *hammer)
{
	int index;
	if (hammer->idle_count == 0)
		return;
	index = hammer->idle[hammer->idle_head];
	hammer->idle_head = (hammer->idle_head + 1) % HAMMER_CLIENTS;
	hammer->idle_count--;
	raw_start(hammer, index);
}

static void hammer_check_answer(struct hammer *hammer, struct raw_client *client)
{
	Vsockmux__Control__Response *response = vsockmux__control__response__unpack(
		NULL, client->response_need - 4, client->response + 4);
	uint64_t latency = sys_now_ns() - client->started_ns;
	const Vsockmux__Control__Stats *stats;

	CHECKF(response, "undecodable control response of %zu bytes",
	       client->response_need - 4);
	CHECKF(response->version == CONTROL_VERSION, "response version %u", response->version);
	if (response->error && response->error[0]) {
		/* "daemon busy" and the like: a refusal, not an answer */
		if (!hammer->first_error[0])
			snprintf(hammer->first_error, sizeof(hammer->first_error), "%s",
				 response->error);
		hammer->errors++;
		vsockmux__control__response__free_unpacked(response, NULL);
		return;
	}
	stats = response->stats;
	CHECKF(stats, "answer without stats");
	CHECKF(stats->connections_current >= 1, "the bulk connection is missing from stats");
	CHECKF(stats->n_connections == stats->connections_current && !stats->connections_truncated,
	       "%zu rows for %" PRIu64 " connections", stats->n_connections,
	       stats->connections_current);
	if (stats->bytes_to_guest > hammer->last_bytes_to_guest)
		hammer->last_bytes_to_guest = stats->bytes_to_guest;
	if (stats->bytes_to_host > hammer->last_bytes_to_host)
		hammer->last_bytes_to_host = stats->bytes_to_host;
	CHECK(stats->bytes_to_guest <= HAMMER_SIZE && stats->bytes_to_host <= HAMMER_SIZE);
	hammer->answers++;
	client->answers++;
	hammer->latency_sum_ns += latency;
	if (latency > hammer->max_latency_ns)
		hammer->max_latency_ns = latency;
	vsockmux__control__response__free_unpacked(response, NULL);
}

/* Move one client along: send, receive, then count the outcome. */
static void raw_step(struct hammer *hammer, int index, short revents)
{
	struct raw_client *client = &hammer->clients[index];

	if (client->state == RAW_WRITING && (revents & (POLLOUT | POLLERR | POLLHUP))) {
		ssize_t sent = send(client->fd, client->request + client->request_sent,
				    client->request_length - client->request_sent,
				    MSG_NOSIGNAL | MSG_DONTWAIT);
		if (sent < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (sent <= 0) {
			hammer->closed++;
			hammer_park(hammer, index);
			return;
		}
		client->request_sent += (size_t)sent;
		if (client->request_sent == client->request_length)
			client->state = RAW_READING;
		return;
	}
	if (client->state == RAW_READING && (revents & (POLLIN | POLLERR | POLLHUP))) {
		ssize_t got = recv(client->fd, client->response + client->response_got,
				   client->response_need - client->response_got, MSG_DONTWAIT);
		if (got < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (got <= 0) {
			/* closed without an answer: over the client cap */
			hammer->closed++;
			hammer_park(hammer, index);
			return;
		}
		client->response_got += (size_t)got;
		if (client->response_got < client->response_need)
			return;
		if (client->response_need == 4) {
			uint32_t length = control_get_length(client->response);
			uint8_t *grown;
			CHECKF(length > 0 && length <= 4u * 1024u * 1024u,
			       "control response length %u", length);
			grown = realloc(client->response, 4 + (size_t)length);
			CHECK(grown);
			client->response = grown;
			client->response_need = 4 + (size_t)length;
			return;
		}
		hammer_check_answer(hammer, client);
		raw_close(client);
		/* a slot is free again: the next waiting client, then us */
		hammer_wake_one(hammer);
		raw_start(hammer, index);
	}
}

static void hammer_round(struct hammer *hammer)
{
	struct pollfd fds[HAMMER_CLIENTS];
	int map[HAMMER_CLIENTS];
	nfds_t count = 0;
	uint64_t now = sys_now_ns();

	for (int i = 0; i < HAMMER_CLIENTS; i++) {
		const struct raw_client *client = &hammer->clients[i];
		if (client->state == RAW_IDLE)
			continue;
		CHECKF(now - client->started_ns < (uint64_t)HAMMER_ANSWER_MS * 1000000u,
		       "control client %d got no answer (nor a close) within %d ms", i,
		       HAMMER_ANSWER_MS);
		fds[count].fd = client->fd;
		fds[count].events = client->state == RAW_WRITING ? POLLOUT : POLLIN;
		fds[count].revents = 0;
		map[count++] = i;
	}
	/* nobody in flight: nothing would ever wake the parked ones */
	if (count == 0) {
		hammer_wake_one(hammer);
		return;
	}
	CHECKF(poll(fds, count, 0) >= 0 || errno == EINTR, "poll: %s", strerror(errno));
	for (nfds_t k = 0; k < count; k++)
		if (fds[k].revents)
			raw_step(hammer, map[k], fds[k].revents);
}

static void test_hammer_during_bulk(struct sys_harness *h)
{
	static const char *const status_words[] = { "status", NULL };
	static struct hammer hammer;
	struct vguest_sock *g;
	struct host_conn *c;
	struct guest_stream *gs;
	struct ctl_run run;
	json_object *stats;
	uint64_t start, rounds = 0;
	unsigned unanswered = 0;

	memset(&hammer, 0, sizeof(hammer));
	sys_setup(h);
	control_path(h, hammer.path, sizeof(hammer.path));
	gs = sys_stream_to_guest(h, 5000, &c, &g);

	for (int i = 0; i < HAMMER_CLIENTS; i++) {
		hammer.clients[i].fd = -1;
		raw_start(&hammer, i);
	}
	start = sys_now_ns();
	guest_stream_source(gs, 51, HAMMER_SIZE, SYS_AFTER_NOTHING);
	host_sink(c, 51, HAMMER_SIZE);
	host_source(c, 52, HAMMER_SIZE, SYS_AFTER_NOTHING);
	guest_stream_sink(gs, 52, HAMMER_SIZE);
	{
		uint64_t end = sys_wait_end(h, 150000);
		while (c->sink.received < HAMMER_SIZE || gs->sink.received < HAMMER_SIZE) {
			CHECKF(sys_now_ns() < end,
			       "bulk transfer stalled: %" PRIu64 " to host, %" PRIu64
			       " to guest of %llu each", c->sink.received, gs->sink.received,
			       HAMMER_SIZE);
			hammer_round(&hammer);
			sys_pump(h, 1);
			rounds++;
		}
	}
	printf("bulk 2 x 64 MiB with %d control clients: %.1f MiB/s total, %" PRIu64 " rounds\n",
	       HAMMER_CLIENTS, sys_mib_per_s(2 * HAMMER_SIZE, sys_now_ns() - start), rounds);
	printf("control: %" PRIu64 " answers, %" PRIu64 " error responses (first: \"%s\"), %"
	       PRIu64 " closed unanswered, %" PRIu64 " connect EAGAIN; latency avg %.1f ms, "
	       "max %.1f ms\n", hammer.answers, hammer.errors, hammer.first_error,
	       hammer.closed, hammer.connect_busy,
	       hammer.answers ? (double)hammer.latency_sum_ns / (double)hammer.answers / 1e6 : 0.0,
	       (double)hammer.max_latency_ns / 1e6);
	for (int i = 0; i < HAMMER_CLIENTS; i++) {
		unanswered += hammer.clients[i].answers == 0;
		raw_close(&hammer.clients[i]);
	}
	CHECKF(hammer.answers >= HAMMER_CLIENTS,
	       "only %" PRIu64 " answers during the transfer", hammer.answers);
	CHECKF(hammer.answers > hammer.errors + hammer.closed + hammer.connect_busy,
	       "most control requests were refused: %" PRIu64 " answers vs %" PRIu64
	       " refusals", hammer.answers,
	       hammer.errors + hammer.closed + hammer.connect_busy);
	CHECKF(unanswered == 0, "%u of %d control clients never got an answer", unanswered,
	       HAMMER_CLIENTS);
	/* the answers saw the transfer move */
	CHECK(hammer.last_bytes_to_guest > 0 && hammer.last_bytes_to_host > 0);

	/* responsive afterwards: the broker may not have seen every hammer
	 * client's close yet (a slow run, valgrind), and "busy" is the
	 * documented answer meanwhile; retry that one, bounded */
	{
		uint64_t end = sys_wait_end(h, 10000);
		for (;;) {
			run_vsockctl(h, status_words, 3000, &run);
			if (ctl_exit_code(&run) == 0 || !strstr(run.err, "busy") ||
			    sys_now_ns() >= end)
				break;
			ctl_run_free(&run);
			sys_pump(h, 20);
		}
	}
	CHECKF(ctl_exit_code(&run) == 0, "vsockctl status after the hammer: status %#x: %s",
	       run.status, run.err);
	printf("vsockctl status after the hammer (%.1f ms):\n%s", run.elapsed_ms, run.out);
	ctl_run_free(&run);

	sys_stream_close(h, gs, g, c);
	host_close(c);
	stats = wait_all_closed(h, 5000);
	EXPECT_U64(stats, "bytes_to_guest", HAMMER_SIZE);
	EXPECT_U64(stats, "bytes_to_host", HAMMER_SIZE);
	EXPECT_U64(stats, "connections_total_from_host", 1);
	json_object_put(stats);
	sys_check_guest_clean(h->vg);
}

/* ------------------------------------------------------------------ */
/* 6. no_daemon */

static void expect_unreachable(struct sys_harness *h, const char *path, const char *command)
{
	const char *args[] = { "--control-socket", path, command, NULL };
	struct ctl_run run;

	run_vsockctl_as(h, 0, args, VSOCKCTL_TIMEOUT_MS, &run);
	printf("vsockctl %s %s: exit %d: %s", path, command, ctl_exit_code(&run), run.err);
	CHECKF(ctl_exit_code(&run) == 1, "vsockctl without daemon: status %#x, want exit 1",
	       run.status);
	CHECKF(count_lines(run.err) == 1 && run.err[run.err_len - 1] == '\n',
	       "want one line on stderr, got: %s", run.err);
	CHECKF(strstr(run.err, path), "the message does not name %s: %s", path, run.err);
	CHECKF(run.out_len == 0, "vsockctl without daemon printed: %s", run.out);
	ctl_run_free(&run);
}

static void test_no_daemon(struct sys_harness *h)
{
	char stale[108];          /* sun_path */
	struct sockaddr_un address = { .sun_family = AF_UNIX };
	int fd;

	expect_unreachable(h, "/nonexistent/path", "status");
	expect_unreachable(h, "/nonexistent/path", "stats");
	/* a socket file nobody listens on (a killed daemon's) */
	snprintf(stale, sizeof(stale), "%s/dead.ctl", h->dir);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(fd >= 0);
	snprintf(address.sun_path, sizeof(address.sun_path), "%s", stale);
	CHECK(bind(fd, (struct sockaddr *)&address, sizeof(address)) == 0);
	close(fd);
	expect_unreachable(h, stale, "conns");
}

int main(int argc, char **argv)
{
	static const struct sys_test tests[] = {
#define SCENARIO SYS_SCENARIO_ENTRY
#include "test_control.def"
#undef SCENARIO
	};
	return sys_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
