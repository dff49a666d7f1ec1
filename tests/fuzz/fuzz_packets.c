/*
 * fuzz_packets.c - libFuzzer target for the muxer's vsock packet path
 * (daemon/guest_tx.c, guest_rx.c, conn.c, conn_table.c, rx_buffers.c,
 * tx_ring.c, muxer_ipc.c), driven
 * the way the event loop drives it, with the fuzzer playing the guest, the
 * broker and the host programs.
 *
 * Per input: a real muxer (muxer_init, a SOCK_SEQPACKET socketpair as the
 * broker channel, options from options_parse), guest memory from a memfd
 * through guest_memory_set_table, both virtqueues mapped in it. Then up to
 * 64 steps, each one of:
 *   - a guest packet (header fields, payload, chain shape from the input)
 *     put on the TX ring, then guest_tx_process;
 *   - RX buffers of fuzzed sizes posted, then guest_rx_process;
 *   - ConnectRequests read from the channel answered (ipc_send) with a
 *     socketpair end or an error, then muxer_handle_channel;
 *   - a host client adopted (conn_adopt_host_client) that writes a CONNECT
 *     line (fuzzed bytes);
 *   - host programs writing, half-closing, closing, reading;
 * and after each step the muxer's epoll set is polled and host events
 * dispatched (conn_on_host_event), as the loop would.
 * Checks, after every step, by decoding what the muxer wrote into the RX
 * ring: well-formed used entries and headers; per (local, peer) port pair
 * never more RW payload than the guest's headers allowed (buf_alloc -
 * (tx_cnt - fwd_cnt), taking the most generous header the guest sent); a
 * guest RST never makes the muxer queue an RST; the stats counters match
 * what the guest sent and received; the connection table is consistent
 * (slot counts, every hashed connection found by lookup, buckets and the
 * RX work list hold live connections only). muxer_destroy at the end; no
 * fd may leak.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "conn_table.h"
#include "events.h"
#include "guest_rx.h"
#include "guest_tx.h"
#include "fuzz_fds.h"
#include "fuzz_check.h"
#include "fuzz_input.h"
#include "muxer.h"
#include "vsockmux/ipc.h"
#include "vsockmux/log.h"
#include "vsockmux/options.h"
#include "vsockmux/virtio_vsock.h"

#define GUEST_CID 3u
#define MEMORY_SIZE (256u * 1024u)
#define USER_BASE 0x7f1000000000ull
#define QUEUE_SIZE 64u
#define MAX_STEPS 64u
#define MAX_PAYLOAD 2048u
#define MAX_HOST_ENDS 16u
#define MAX_PAIRS 64u

/* guest physical layout */
#define RX_DESC 0x0000u
#define RX_AVAIL 0x1000u
#define RX_USED 0x2000u
#define TX_DESC 0x4000u
#define TX_AVAIL 0x5000u
#define TX_USED 0x6000u
#define TX_BUFFERS 0x8000u   /* QUEUE_SIZE / 2 slots of 3 KiB */
#define TX_SLOT_SIZE 3072u
#define RX_BUFFERS 0x20000u  /* QUEUE_SIZE slots of 2 KiB */
#define RX_SLOT_SIZE 2048u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

struct vring_desc_le {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

/* What the guest knows about one (local port, peer port) pair. */
struct pair_model {
	uint32_t local_port, peer_port;
	uint64_t received;        /* RW payload the muxer sent since the start */
	uint64_t limit;           /* most generous fwd_cnt + buf_alloc seen */
};

struct harness {
	struct muxer muxer;
	struct vsockmuxd_options options;
	int channel[2];
	int frontend[2];          /* the VMM's socket: vhost_user_detach at the
				     end unmaps guest memory, as on a real VMM
				     disconnect */
	int host_ends[MAX_HOST_ENDS];
	bool host_end_is_client[MAX_HOST_ENDS]; /* reads "OK <port>\n" too */
	unsigned host_end_count;
	uint16_t tx_avail, tx_used_seen;
	uint16_t rx_avail, rx_used_seen;
	bool rx_outstanding[QUEUE_SIZE];
	uint32_t rx_length[QUEUE_SIZE];
	unsigned tx_packets;      /* chains the muxer consumed */
	uint64_t tx_payload;      /* RW payload the guest offered */
	uint64_t rx_packets, rx_rw_bytes, rx_rsts;
	uint64_t host_read_bytes;
	struct pair_model pairs[MAX_PAIRS];
	unsigned pair_count;
};

static int memory_fd = -1;
static uint8_t *guest;            /* our view of the guest's RAM */
static struct harness h;
static uint8_t scratch[65536];
static bool trace;                /* FUZZ_PACKETS_TRACE set: print packets */

static void trace_header(const char *direction, const struct vsock_header *header)
{
	if (trace)
		fprintf(stderr, "%s op %u %llu:%u->%llu:%u type %u len %u buf_alloc %u "
			"fwd_cnt %u flags %#x\n", direction, header->op,
			(unsigned long long)header->src_cid, header->src_port,
			(unsigned long long)header->dst_cid, header->dst_port, header->type,
			header->len, header->buf_alloc, header->fwd_cnt, header->flags);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	trace = getenv("FUZZ_PACKETS_TRACE") != NULL;
	fuzz_ignore_sigpipe();
	log_set_level(trace ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR);
	memory_fd = memfd_create("fuzz-packets-guest", MFD_CLOEXEC);
	if (memory_fd < 0 || ftruncate(memory_fd, MEMORY_SIZE) < 0)
		abort();
	guest = mmap(NULL, MEMORY_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, memory_fd, 0);
	if (guest == MAP_FAILED)
		abort();
	return 0;
}

static uint16_t load16(uint32_t gpa)
{
	uint16_t value;
	memcpy(&value, guest + gpa, sizeof(value));
	return le16toh(value);
}

static void store16(uint32_t gpa, uint16_t value)
{
	value = htole16(value);
	memcpy(guest + gpa, &value, sizeof(value));
}

static uint32_t load32(uint32_t gpa)
{
	uint32_t value;
	memcpy(&value, guest + gpa, sizeof(value));
	return le32toh(value);
}

static void put_desc(uint32_t table, unsigned index, uint64_t gpa, uint32_t length,
		     uint16_t flags, uint16_t next)
{
	struct vring_desc_le desc = { htole64(gpa), htole32(length), htole16(flags),
				      htole16(next) };
	memcpy(guest + table + 16u * index, &desc, sizeof(desc));
}

static struct pair_model *pair_of(uint32_t local_port, uint32_t peer_port)
{
	for (unsigned i = 0; i < h.pair_count; i++) {
		if (h.pairs[i].local_port == local_port && h.pairs[i].peer_port == peer_port)
			return &h.pairs[i];
	}
	if (h.pair_count == MAX_PAIRS)
		return NULL;
	h.pairs[h.pair_count] = (struct pair_model){ local_port, peer_port, 0, 0 };
	return &h.pairs[h.pair_count++];
}

/* ---- invariants ---------------------------------------------------------- */

static void check_table(const struct muxer *muxer)
{
	const struct conn_table *table = &muxer->table;
	uint32_t live = 0, queued = 0;

	for (uint32_t slot = 0; slot < table->capacity; slot++) {
		const struct conn *conn = &table->slots[slot];
		if (conn->state == CONN_FREE) {
			check(!conn->rx_work.queued, "a free slot is on the RX work list");
			continue;
		}
		live++;
		check(conn->slot == slot, "slot number wrong");
		if (conn->hashed)
			check(conn_table_lookup(table, conn->local_port, conn->peer_port) == conn,
			      "hashed connection not found by lookup");
	}
	check(live == table->in_use, "in_use does not count the live slots");
	check(table->free_count + table->in_use == table->capacity, "free stack count wrong");
	for (uint32_t bucket = 0; bucket <= table->bucket_mask; bucket++) {
		uint32_t length = 0;
		for (const struct conn *conn = table->buckets[bucket]; conn; conn = conn->hash_next) {
			check(++length <= table->capacity, "hash bucket loops");
			check(conn->state != CONN_FREE, "freed connection still hashed");
			check(conn->hashed, "unhashed connection in a bucket");
		}
	}
	for (const struct rx_link *link = muxer->rx_work.head; link; link = link->next) {
		const struct conn *conn = conn_of_rx_link((struct rx_link *)link);
		check(++queued <= table->capacity, "RX work list loops");
		check(conn->state != CONN_FREE, "freed connection on the RX work list");
		check(link->queued, "RX work list entry not marked queued");
		if (!link->next)
			check(muxer->rx_work.tail == link, "RX work list tail wrong");
	}
	if (!muxer->rx_work.head)
		check(muxer->rx_work.tail == NULL, "empty RX work list with a tail");
}

static void check_stats(const struct muxer *muxer)
{
	const struct muxer_stats *stats = &muxer->stats;

	check(stats->packets_from_guest == h.tx_packets, "packets_from_guest differs");
	check(stats->packets_to_guest == h.rx_packets, "packets_to_guest differs");
	check(stats->bytes_to_guest == h.rx_rw_bytes, "bytes_to_guest differs");
	check(stats->rst_sent == h.rx_rsts, "rst_sent differs");
	check(stats->bytes_to_host <= h.tx_payload, "more bytes to the host than the guest sent");
	check(h.host_read_bytes <= stats->bytes_to_host, "host read more than was written");
}

/* Decode every RX used entry the muxer published since last time. */
static void collect_rx(void)
{
	uint16_t used = load16(RX_USED + 2);

	check((uint16_t)(used - h.rx_used_seen) <= QUEUE_SIZE, "RX used index jumped");
	while (h.rx_used_seen != used) {
		uint32_t entry = RX_USED + 4u + 8u * (h.rx_used_seen % QUEUE_SIZE);
		uint32_t id = load32(entry), written = load32(entry + 4);
		struct vsock_header header;
		struct pair_model *pair;

		h.rx_used_seen++;
		check(id < QUEUE_SIZE && h.rx_outstanding[id], "RX used entry for no buffer");
		h.rx_outstanding[id] = false;
		check(written <= h.rx_length[id], "RX used length larger than the buffer");
		if (written == 0)
			continue; /* handed back unused */
		check(written >= VSOCK_HEADER_SIZE, "RX packet shorter than a header");
		vsock_header_decode(guest + RX_BUFFERS + RX_SLOT_SIZE * id, &header);
		trace_header("to guest  ", &header);
		check(written == VSOCK_HEADER_SIZE + header.len, "RX used length != header + len");
		check(header.src_cid == VSOCK_HOST_CID && header.dst_cid == GUEST_CID,
		      "RX packet with wrong CIDs");
		check(header.type == VSOCK_TYPE_STREAM, "RX packet with wrong type");
		check(header.op >= VSOCK_OP_REQUEST && header.op <= VSOCK_OP_CREDIT_REQUEST,
		      "RX packet with a bad op");
		check(header.op == VSOCK_OP_RW || header.len == 0, "control packet with payload");
		h.rx_packets++;
		pair = pair_of(header.src_port, header.dst_port);
		switch (header.op) {
		case VSOCK_OP_REQUEST:   /* a host client's connection starts */
		case VSOCK_OP_RESPONSE:  /* a guest connect accepted */
			/* The credit limit stays: the muxer accepts a guest
			 * RESPONSE (and its credit) for a host connection
			 * whose REQUEST it has not sent yet. Host-side local
			 * ports are never reused within one input. */
			if (pair)
				pair->received = 0;
			break;
		case VSOCK_OP_RW:
			h.rx_rw_bytes += header.len;
			if (pair) {
				pair->received += header.len;
				check(pair->received <= pair->limit,
				      "muxer sent more than the guest's credit allowed");
			}
			break;
		case VSOCK_OP_RST:
			h.rx_rsts++;
			break;
		default:
			break;
		}
	}
}

static void collect_tx(void)
{
	uint16_t used = load16(TX_USED + 2);
	check((uint16_t)(used - h.tx_used_seen) <= QUEUE_SIZE, "TX used index jumped");
	h.tx_packets += (uint16_t)(used - h.tx_used_seen);
	h.tx_used_seen = used;
}

static void check_all(void)
{
	collect_tx();
	collect_rx();
	check_table(&h.muxer);
	check_stats(&h.muxer);
}

/* ---- the loop's part ------------------------------------------------------ */

/* What muxer_run does on wake-ups, for the events the fuzzer causes. */
static void pump(void)
{
	for (unsigned round = 0; round < 8; round++) {
		struct epoll_event events[32];
		int count = epoll_wait(h.muxer.epoll_fd, events, 32, 0);

		if (count <= 0)
			break;
		for (int i = 0; i < count; i++) {
			struct tag tag = tag_decode(events[i].data.u64);
			if (tag.kind == EVENT_HOST) {
				struct conn *conn = conn_table_by_slot(
					&h.muxer.table, tag.slot, tag.generation);
				if (conn)
					conn_on_host_event(&h.muxer, conn, events[i].events);
			} else if (tag.kind == EVENT_CHANNEL) {
				muxer_handle_channel(&h.muxer);
			}
		}
		guest_rx_process(&h.muxer);
		if (h.muxer.tx_backlog)
			guest_tx_process(&h.muxer);
	}
	guest_rx_process(&h.muxer);
}

/* ---- steps ---------------------------------------------------------------- */

static void guest_packet(struct fuzz_input *input)
{
	uint8_t opsel = fuzz_u8(input), portsel = fuzz_u8(input);
	uint8_t credsel = fuzz_u8(input), shape = fuzz_u8(input);
	uint32_t payload_length = fuzz_u16(input) % (MAX_PAYLOAD + 1);
	static const uint32_t peers[4] = { 1024, 1025, 50000, 0xffffffffu };
	static const uint32_t locals[4] = { 52, 53, 1u << 30, (1u << 30) + 1 };
	static const uint32_t allocs[4] = { 0, 4096, 65536, 262144 };
	struct vsock_header header = {
		.src_cid = GUEST_CID, .dst_cid = VSOCK_HOST_CID, .type = VSOCK_TYPE_STREAM,
	};
	uint8_t wire[VSOCK_HEADER_SIZE];
	struct pair_model *pair;
	unsigned slot = h.tx_avail % (QUEUE_SIZE / 2);
	uint32_t buffer = TX_BUFFERS + TX_SLOT_SIZE * slot;
	uint32_t orphans_before = h.muxer.rsts.count;
	uint16_t head = (uint16_t)(2 * slot);

	header.op = (opsel & 0x80) ? fuzz_u16(input) : (uint16_t)(1u + (opsel & 7u) % 7u);
	header.src_port = (portsel & 0x08) ? fuzz_u32(input) : peers[portsel & 3u];
	header.dst_port = (portsel & 0x80) ? fuzz_u32(input) : locals[(portsel >> 4) & 3u];
	if (portsel & 0x04)
		header.type = fuzz_u16(input);
	if (opsel & 0x40) {
		header.src_cid = fuzz_u64(input);
		header.dst_cid = fuzz_u64(input);
	}
	pair = pair_of(header.dst_port, header.src_port);
	header.buf_alloc = (credsel & 4) ? fuzz_u32(input) : allocs[credsel & 3u];
	switch ((credsel >> 3) & 3u) {
	case 0:
		header.fwd_cnt = pair ? (uint32_t)pair->received : 0;
		break;
	case 1:
		header.fwd_cnt = 0;
		break;
	default:
		header.fwd_cnt = fuzz_u32(input);
		break;
	}
	header.flags = (credsel & 0x20) ? fuzz_u32(input) : (uint32_t)(credsel >> 6);
	if (header.op != VSOCK_OP_RW && !(opsel & 0x20))
		payload_length = 0;
	header.len = (shape & 0x80) ? fuzz_u32(input) : payload_length;
	fuzz_bytes(input, guest + buffer + VSOCK_HEADER_SIZE, payload_length);
	vsock_header_encode(&header, wire);
	memcpy(guest + buffer, wire, sizeof(wire));
	trace_header("from guest", &header);

	/* the guest's credit as the muxer may use it; only from packets the
	 * muxer does not drop at its door (a spoofed CID, a length that is not
	 * the payload's): a dropped REQUEST must not reset the model */
	if (pair && header.type == VSOCK_TYPE_STREAM && header.src_cid == GUEST_CID &&
	    header.dst_cid == VSOCK_HOST_CID && header.len == payload_length) {
		uint64_t limit = (uint64_t)header.fwd_cnt + header.buf_alloc;
		if (header.op == VSOCK_OP_REQUEST) {
			pair->received = 0;
			pair->limit = limit;
		} else if (limit > pair->limit) {
			pair->limit = limit;
		}
	}
	if (header.op == VSOCK_OP_RW)
		h.tx_payload += payload_length;

	switch (shape & 3u) {
	case 0: /* header and payload in one descriptor */
		put_desc(TX_DESC, head, buffer, VSOCK_HEADER_SIZE + payload_length, 0, 0);
		break;
	case 1: /* header, then payload (Linux) */
		put_desc(TX_DESC, head, buffer, VSOCK_HEADER_SIZE,
			 payload_length ? 1u : 0u, (uint16_t)(head + 1));
		put_desc(TX_DESC, head + 1u, buffer + VSOCK_HEADER_SIZE, payload_length, 0, 0);
		break;
	default: { /* the header itself split */
		uint32_t cut = 1u + (uint32_t)(shape >> 2) % (VSOCK_HEADER_SIZE - 1);
		put_desc(TX_DESC, head, buffer, cut, 1u, (uint16_t)(head + 1));
		put_desc(TX_DESC, head + 1u, buffer + cut,
			 VSOCK_HEADER_SIZE + payload_length - cut, 0, 0);
		break;
	}
	}
	store16(TX_AVAIL + 4u + 2u * (h.tx_avail % QUEUE_SIZE), head);
	h.tx_avail++;
	store16(TX_AVAIL + 2, h.tx_avail);
	guest_tx_process(&h.muxer);
	collect_tx();
	check(h.muxer.tx_paused_for_rst || h.tx_used_seen == h.tx_avail,
	      "TX packet not consumed");
	if (header.op == VSOCK_OP_RST)
		check(h.muxer.rsts.count <= orphans_before, "RST queued in answer to an RST");
}

static void post_rx(struct fuzz_input *input)
{
	unsigned count = 1u + fuzz_u8(input) % 16u;

	for (unsigned n = 0; n < count; n++) {
		uint8_t sizesel = fuzz_u8(input);
		uint32_t length;
		unsigned id;

		for (id = 0; id < QUEUE_SIZE && h.rx_outstanding[id]; id++)
			;
		if (id == QUEUE_SIZE)
			break;
		if (sizesel & 0x80)
			length = 1u + fuzz_u16(input) % RX_SLOT_SIZE;
		else
			length = (sizesel & 1) ? RX_SLOT_SIZE : VSOCK_HEADER_SIZE + 256u;
		put_desc(RX_DESC, id, RX_BUFFERS + RX_SLOT_SIZE * id, length, 2u /* WRITE */, 0);
		h.rx_outstanding[id] = true;
		h.rx_length[id] = length;
		store16(RX_AVAIL + 4u + 2u * (h.rx_avail % QUEUE_SIZE), (uint16_t)id);
		h.rx_avail++;
	}
	store16(RX_AVAIL + 2, h.rx_avail);
	guest_rx_process(&h.muxer);
}

static void keep_host_end(int fd, bool is_client)
{
	if (h.host_end_count < MAX_HOST_ENDS) {
		h.host_end_is_client[h.host_end_count] = is_client;
		h.host_ends[h.host_end_count++] = fd;
	} else {
		close(fd);
	}
}

static void answer_broker(struct fuzz_input *input)
{
	for (unsigned n = 0; n < 8; n++) {
		IpcEnvelope *request = NULL;
		Vsockmux__Ipc__Envelope envelope = VSOCKMUX__IPC__ENVELOPE__INIT;
		Vsockmux__Ipc__ConnectReply reply = VSOCKMUX__IPC__CONNECT_REPLY__INIT;
		int fd = -1, pair[2] = { -1, -1 };
		uint8_t how = fuzz_u8(input);

		if (ipc_receive(h.channel[1], &request, &fd) != 1)
			break;
		check(fd == -1, "muxer attached an fd");
		if (request->body_case != VSOCKMUX__IPC__ENVELOPE__BODY_CONNECT_REQUEST) {
			ipc_free(request);
			continue; /* StatsReply */
		}
		reply.request_id = (how & 0x40) ? fuzz_u32(input)
						: request->connect_request->request_id;
		ipc_free(request);
		if ((how & 3u) == 3u)
			continue; /* never answered: muxer_destroy cleans up */
		if ((how & 3u) == 0u) {
			reply.error = ECONNREFUSED;
		} else if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
				      pair) < 0) {
			reply.error = EMFILE;
		}
		envelope.body_case = VSOCKMUX__IPC__ENVELOPE__BODY_CONNECT_REPLY;
		envelope.connect_reply = &reply;
		check(ipc_send(h.channel[1], &envelope, pair[0]) == 0, "ipc_send ConnectReply");
		if (pair[0] >= 0) {
			close(pair[0]);
			keep_host_end(pair[1], false);
		}
	}
	muxer_handle_channel(&h.muxer);
}

static void host_client(struct fuzz_input *input)
{
	int pair[2];
	uint8_t line[40];
	size_t length;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) < 0)
		return;
	length = fuzz_bytes(input, line, fuzz_u8(input) % sizeof(line));
	if (length > 0)
		(void)send(pair[1], line, length, MSG_NOSIGNAL);
	conn_adopt_host_client(&h.muxer, pair[0]);
	keep_host_end(pair[1], true);
}

static void host_action(struct fuzz_input *input)
{
	uint8_t what = fuzz_u8(input);
	unsigned index;
	int fd;

	if (h.host_end_count == 0)
		return;
	index = (what >> 3) % h.host_end_count;
	fd = h.host_ends[index];
	switch (what & 7u) {
	case 0:
	case 1:
	case 2: { /* write */
		size_t length = fuzz_u16(input) % 4096u;
		(void)fuzz_bytes(input, scratch, length);
		(void)send(fd, scratch, length, MSG_DONTWAIT | MSG_NOSIGNAL);
		break;
	}
	case 3:
		shutdown(fd, SHUT_WR);
		break;
	case 4:
		close(fd);
		h.host_end_count--;
		h.host_ends[index] = h.host_ends[h.host_end_count];
		h.host_end_is_client[index] = h.host_end_is_client[h.host_end_count];
		break;
	default: /* read what reached the host */
		for (unsigned i = 0; i < h.host_end_count; i++) {
			ssize_t got;
			while ((got = recv(h.host_ends[i], scratch, sizeof(scratch),
					   MSG_DONTWAIT)) > 0) {
				if (!h.host_end_is_client[i])
					h.host_read_bytes += (uint64_t)got;
			}
		}
		break;
	}
}

static void stats_request(struct fuzz_input *input)
{
	Vsockmux__Ipc__Envelope envelope = VSOCKMUX__IPC__ENVELOPE__INIT;
	Vsockmux__Ipc__StatsRequest request = VSOCKMUX__IPC__STATS_REQUEST__INIT;

	request.request_id = fuzz_u32(input);
	request.include_connections = fuzz_u8(input) & 1;
	envelope.body_case = VSOCKMUX__IPC__ENVELOPE__BODY_STATS_REQUEST;
	envelope.stats_request = &request;
	(void)ipc_send(h.channel[1], &envelope, -1);
	muxer_handle_channel(&h.muxer);
}

/* ---- set-up and tear-down ------------------------------------------------ */

static void setup_queue(struct virtq *queue, uint32_t desc, uint32_t avail, uint32_t used,
			bool event_idx, bool indirect)
{
	queue->size = QUEUE_SIZE;
	queue->desc_user_addr = USER_BASE + desc;
	queue->avail_user_addr = USER_BASE + avail;
	queue->used_user_addr = USER_BASE + used;
	queue->addresses_set = true;
	queue->enabled = true;
	queue->started = true;
	queue->event_idx = event_idx;
	queue->indirect = indirect;
	virtq_set_base(queue, 0);
	check(virtq_map(queue, &h.muxer.device.memory) == 0, "virtq_map");
	check(virtq_is_ready(queue), "queue not ready");
}

static void setup(uint8_t config)
{
	static const char *const buffer_sizes[4] = { "4096", "65536", "262144", "8192" };
	static const char *const limits[4] = { "1", "2", "4", "16" };
	char *argv[] = {
		"vsockmuxd", "--guest-cid", "3", "--socket", "/nonexistent/vhost.sock",
		"--uds-path", "/nonexistent/vsock.sock", "--tx-buffer-size",
		(char *)buffer_sizes[config & 3u], "--max-connections",
		(char *)limits[(config >> 2) & 3u], "--queue-size", "256", NULL,
	};
	struct vhost_user_memory table;
	int fd;

	memset(&h.options, 0, sizeof(h.options));
	check(options_parse((int)(sizeof(argv) / sizeof(argv[0])) - 1, argv, &h.options) ==
	      OPTIONS_OK, "options_parse");
	log_set_level(trace ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR);
	check(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
			 h.channel) == 0, "socketpair");
	check(muxer_init(&h.muxer, &h.options, h.channel[0]) == 0, "muxer_init");

	check(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, h.frontend) == 0,
	      "socketpair");
	vhost_user_attach(&h.muxer.device, h.frontend[0]);
	memset(guest, 0, MEMORY_SIZE);
	memset(&table, 0, sizeof(table));
	table.nregions = 1;
	table.regions[0].guest_phys_addr = 0;
	table.regions[0].memory_size = MEMORY_SIZE;
	table.regions[0].user_addr = USER_BASE;
	fd = dup(memory_fd);
	check(fd >= 0, "dup");
	check(guest_memory_set_table(&h.muxer.device.memory, &table, &fd, 1) == 0,
	      "guest_memory_set_table");
	setup_queue(&h.muxer.device.queues[VSOCK_QUEUE_RX], RX_DESC, RX_AVAIL, RX_USED,
		    config & 0x10, config & 0x20);
	setup_queue(&h.muxer.device.queues[VSOCK_QUEUE_TX], TX_DESC, TX_AVAIL, TX_USED,
		    config & 0x10, config & 0x20);
}

static void teardown(void)
{
	IpcEnvelope *envelope = NULL;
	int fd = -1;

	if (getenv("FUZZ_PACKETS_TRACE")) /* to check what a seed reaches */
		fprintf(stderr, "fuzz_packets: %u packets from the guest, %llu to it "
			"(%llu RW bytes, %llu RSTs), %llu bytes to the host, %llu read there, "
			"%u connections open\n", h.tx_packets,
			(unsigned long long)h.rx_packets, (unsigned long long)h.rx_rw_bytes,
			(unsigned long long)h.rx_rsts,
			(unsigned long long)h.muxer.stats.bytes_to_host,
			(unsigned long long)h.host_read_bytes, h.muxer.table.in_use);
	muxer_destroy(&h.muxer);
	check(h.muxer.device.memory.region_count == 0, "guest memory still mapped");
	close(h.frontend[1]);
	close(h.channel[0]);
	while (ipc_receive(h.channel[1], &envelope, &fd) == 1) {
		ipc_free(envelope);
		envelope = NULL;
	}
	close(h.channel[1]);
	for (unsigned i = 0; i < h.host_end_count; i++)
		close(h.host_ends[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input input;
	int fds_before = fuzz_count_open_fds();

	memset(&h, 0, sizeof(h));
	fuzz_input_init(&input, data, size);
	setup(fuzz_u8(&input));
	for (unsigned step = 0; step < MAX_STEPS && !fuzz_empty(&input); step++) {
		uint8_t action = fuzz_u8(&input);
		if (trace)
			fprintf(stderr, "step %u: action %u\n", step, action % 9u);
		switch (action % 9u) {
		case 0:
		case 1:
		case 2:
			guest_packet(&input);
			break;
		case 3:
			post_rx(&input);
			break;
		case 4:
			answer_broker(&input);
			break;
		case 5:
			host_client(&input);
			break;
		case 6:
		case 7:
			host_action(&input);
			break;
		default:
			stats_request(&input);
			break;
		}
		pump();
		check_all();
	}
	teardown();
	check(fuzz_count_open_fds() == fds_before, "fd leak");
	return 0;
}
