/*
 * vguest_socket.c - the guest-side vsock stream socket layer, like Linux
 * 6.1's virtio transport: listen/accept, connect, send within the peer's
 * credit, receive with credit updates, shutdown, close, reset; control
 * packets queued while the TX ring is full; and the receive path that
 * turns each packet from the daemon into socket state (checking what the
 * daemon must get right).
 *
 * Owns: vg->socks and each socket's receive buffer, vg->pending.
 * Never: touches descriptors or rings directly (it posts through
 * vg_tx_post and vg_kick), or sends more than the peer's credit allows
 * unless a test marked the socket raw.
 */
#include "vguest_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "vsockmux/iov.h"

/* ------------------------------------------------------------------ */
/* sockets: lookup, control packets */

static struct vguest_sock *vg_find_sock(struct vguest *vg, uint32_t local_port,
					uint32_t peer_port)
{
	for (struct vguest_sock *s = vg->socks; s; s = s->next)
		if (s->state != VGUEST_SOCK_LISTEN && s->state != VGUEST_SOCK_CLOSED &&
		    s->local_port == local_port && s->peer_port == peer_port)
			return s;
	return NULL;
}

static struct vguest_sock *vg_find_listener(struct vguest *vg, uint32_t port)
{
	for (struct vguest_sock *s = vg->socks; s; s = s->next)
		if (s->state == VGUEST_SOCK_LISTEN && s->local_port == port)
			return s;
	return NULL;
}

static bool vg_local_port_busy(struct vguest *vg, uint32_t port)
{
	for (struct vguest_sock *s = vg->socks; s; s = s->next)
		if (s->state != VGUEST_SOCK_CLOSED && s->local_port == port)
			return true;
	return false;
}

static struct vguest_sock *vg_sock_new(struct vguest *vg,
				       enum vguest_sock_state state,
				       uint32_t local_port, uint32_t peer_port)
{
	struct vguest_sock *sock = calloc(1, sizeof(*sock));
	if (!sock)
		return NULL;
	sock->vg = vg;
	sock->state = state;
	sock->local_port = local_port;
	sock->peer_port = peer_port;
	sock->buf_alloc = vg->opts.buf_alloc;
	sock->next = vg->socks;
	vg->socks = sock;
	return sock;
}

/* Build and post a header-only packet; -1/EAGAIN if the ring is full. */
static int vg_post_ctl(struct vguest *vg, const struct vg_pending_ctl *ctl)
{
	struct vguest_sock *sock = vg_find_sock(vg, ctl->local_port, ctl->peer_port);
	struct vsock_header header = {
		.src_cid = vg->opts.guest_cid,
		.dst_cid = VSOCK_HOST_CID,
		.src_port = ctl->local_port,
		.dst_port = ctl->peer_port,
		.len = 0,
		.type = VSOCK_TYPE_STREAM,
		.op = ctl->op,
		.flags = ctl->flags,
		.buf_alloc = sock ? sock->buf_alloc : vg->opts.buf_alloc,
		.fwd_cnt = sock ? sock->fwd_cnt : 0,
	};
	uint8_t wire[VSOCK_HEADER_SIZE];

	if (!sock && ctl->op == VSOCK_OP_REQUEST) {
		/* a CONNECTING socket is found above; REQUEST always has one */
		errno = ENOTCONN;
		return -1;
	}
	vsock_header_encode(&header, wire);
	if (vg_tx_post(vg, wire, NULL, 0, 0) != 0)
		return -1;
	if (sock) {
		sock->last_fwd_cnt_sent = sock->fwd_cnt;
		sock->op_tx[vg_op_slot(ctl->op)]++;
	}
	vg->stats.tx_packets[vg_op_slot(ctl->op)]++;
	vg_log_packet(vg, true, &header);
	return 0;
}

/* Post queued control packets in order while the ring has room. */
void vg_flush_pending(struct vguest *vg)
{
	while (vg->pending_count > 0) {
		struct vg_pending_ctl *ctl = &vg->pending[vg->pending_head];
		if (vg_post_ctl(vg, ctl) != 0) {
			if (errno == EAGAIN)
				return;
			/* socket gone: drop it */
		}
		vg->pending_head = (vg->pending_head + 1) % vg->pending_capacity;
		vg->pending_count--;
	}
	vg->pending_head = 0;
}

static int vg_pending_push(struct vguest *vg, const struct vg_pending_ctl *ctl)
{
	if (vg->pending_count == vg->pending_capacity) {
		/* linearise the ring, then grow */
		size_t capacity = vg->pending_capacity ? vg->pending_capacity * 2 : 64;
		struct vg_pending_ctl *grown = malloc(capacity * sizeof(*grown));
		if (!grown)
			return -1;
		for (size_t i = 0; i < vg->pending_count; i++)
			grown[i] = vg->pending[(vg->pending_head + i) % vg->pending_capacity];
		free(vg->pending);
		vg->pending = grown;
		vg->pending_capacity = capacity;
		vg->pending_head = 0;
	}
	vg->pending[(vg->pending_head + vg->pending_count) % vg->pending_capacity] = *ctl;
	vg->pending_count++;
	return 0;
}

/* Send a control packet now, or queue it behind earlier ones. */
static int vg_send_ctl(struct vguest *vg, uint32_t local_port,
		       uint32_t peer_port, uint16_t op, uint32_t flags)
{
	struct vg_pending_ctl ctl = {
		.local_port = local_port, .peer_port = peer_port,
		.op = op, .flags = flags,
	};
	if (vg->pending_count == 0) {
		if (vg_post_ctl(vg, &ctl) == 0)
			return 0;
		if (errno != EAGAIN)
			return -1;
	}
	if (op == VSOCK_OP_CREDIT_UPDATE) {
		for (size_t i = 0; i < vg->pending_count; i++) {
			const struct vg_pending_ctl *p =
				&vg->pending[(vg->pending_head + i) % vg->pending_capacity];
			if (p->op == op && p->local_port == local_port &&
			    p->peer_port == peer_port)
				return 0;
		}
	}
	return vg_pending_push(vg, &ctl);
}

/* Reply RST to a packet (ports as in the packet we got). Never to an RST. */
static void vg_reply_rst(struct vguest *vg, const struct vsock_header *header)
{
	if (header->op == VSOCK_OP_RST)
		return;
	(void)vg_send_ctl(vg, header->dst_port, header->src_port, VSOCK_OP_RST, 0);
}

void vg_sock_set_closed(struct vguest_sock *sock)
{
	if (sock->state != VGUEST_SOCK_CLOSED) {
		sock->state = VGUEST_SOCK_CLOSED;
		sock->closed_ns = vg_now_ns();
	}
}

/* ------------------------------------------------------------------ */
/* receive path */

static size_t vg_sock_rx_len(const struct vguest_sock *sock)
{
	return sock->rx_tail - sock->rx_head;
}

static int vg_sock_rx_reserve(struct vguest_sock *sock, size_t extra)
{
	size_t used = vg_sock_rx_len(sock);
	if (sock->rx_tail + extra <= sock->rx_capacity)
		return 0;
	if (sock->rx_head > 0) {
		memmove(sock->rx_data, sock->rx_data + sock->rx_head, used);
		sock->rx_head = 0;
		sock->rx_tail = used;
	}
	if (used + extra > sock->rx_capacity) {
		size_t capacity = sock->rx_capacity ? sock->rx_capacity : 4096;
		uint8_t *grown;
		while (capacity < used + extra)
			capacity *= 2;
		grown = realloc(sock->rx_data, capacity);
		if (!grown)
			return -1;
		sock->rx_data = grown;
		sock->rx_capacity = capacity;
	}
	return 0;
}

/* Take credit fields from any header of the peer. */
static void vg_update_peer_credit(struct vguest *vg, struct vguest_sock *sock,
				  const struct vsock_header *header)
{
	uint32_t in_flight = sock->tx_cnt - header->fwd_cnt;
	if (sock->peer_credit_known &&
	    (int32_t)(header->fwd_cnt - sock->peer_fwd_cnt) < 0)
		vg_protocol_error(vg, "port %u<-%u: %s: peer fwd_cnt went back %u -> %u",
				  sock->local_port, sock->peer_port,
				  vsock_op_name(header->op), sock->peer_fwd_cnt,
				  header->fwd_cnt);
	if ((int32_t)in_flight < 0 && !sock->raw_traffic)
		vg_protocol_error(vg, "port %u<-%u: %s: peer fwd_cnt %u ahead of tx_cnt %u",
				  sock->local_port, sock->peer_port,
				  vsock_op_name(header->op), header->fwd_cnt, sock->tx_cnt);
	sock->peer_buf_alloc = header->buf_alloc;
	sock->peer_fwd_cnt = header->fwd_cnt;
	sock->peer_credit_known = true;
}

static void vg_handle_request(struct vguest *vg, const struct vsock_header *header)
{
	struct vguest_sock *listener = vg_find_listener(vg, header->dst_port);
	struct vguest_sock *sock;

	if (header->type != VSOCK_TYPE_STREAM) {
		vg_protocol_error(vg, "REQUEST with type %u", header->type);
		vg_reply_rst(vg, header);
		return;
	}
	if (!listener) {
		vg->stats.unknown_socket_packets++;
		vg_reply_rst(vg, header);
		return;
	}
	if (listener->listen_mode == VGUEST_LISTEN_IGNORE)
		return;
	if (listener->listen_mode == VGUEST_LISTEN_REFUSE) {
		vg_reply_rst(vg, header);
		return;
	}
	sock = vg_sock_new(vg, VGUEST_SOCK_CONNECTED, header->dst_port, header->src_port);
	if (!sock) {
		vg_reply_rst(vg, header);
		return;
	}
	sock->listener = listener;
	sock->op_rx[VSOCK_OP_REQUEST]++;
	sock->established_ns = vg_now_ns();
	vg_update_peer_credit(vg, sock, header);
	if (listener->accept_tail)
		listener->accept_tail->accept_next = sock;
	else
		listener->accept_head = sock;
	listener->accept_tail = sock;
	(void)vg_send_ctl(vg, sock->local_port, sock->peer_port, VSOCK_OP_RESPONSE, 0);
}

static void vg_handle_rw(struct vguest *vg, struct vguest_sock *sock,
			 const struct vsock_header *header,
			 const struct iovec *iov, size_t iov_count)
{
	uint32_t after;

	if (sock->state != VGUEST_SOCK_CONNECTED) {
		if (sock->state == VGUEST_SOCK_CLOSING) {
			sock->data_after_close = true;
			return;
		}
		vg_protocol_error(vg, "port %u: RW in state %s", sock->local_port,
				  vguest_sock_state_name(sock->state));
		return;
	}
	if (sock->peer_shutdown & VSOCK_SHUTDOWN_SEND)
		vg_protocol_error(vg, "port %u: RW after peer SHUTDOWN(SEND)",
				  sock->local_port);
	if (header->len == 0) {
		vg_protocol_error(vg, "port %u: empty RW packet", sock->local_port);
		return;
	}
	after = sock->rx_cnt + header->len;
	if ((uint32_t)(after - sock->last_fwd_cnt_sent) > sock->buf_alloc) {
		sock->credit_violations++;
		vg->stats.credit_violations++;
		vg_protocol_error(vg, "port %u: credit violated: %u bytes unread-or-"
				  "unadvertised, buf_alloc %u", sock->local_port,
				  after - sock->last_fwd_cnt_sent, sock->buf_alloc);
	}
	if (vg_sock_rx_reserve(sock, header->len) != 0) {
		vg_protocol_error(vg, "out of memory queueing RX data");
		return;
	}
	iov_copy_out(iov, iov_count, VSOCK_HEADER_SIZE,
		     sock->rx_data + sock->rx_tail, header->len);
	sock->rx_tail += header->len;
	sock->rx_cnt = after;
	sock->rx_bytes += header->len;
	vg->stats.rx_payload_bytes += header->len;
}

static void vg_handle_shutdown(struct vguest *vg, struct vguest_sock *sock,
			       const struct vsock_header *header)
{
	if (header->flags & ~(uint32_t)VSOCK_SHUTDOWN_BOTH)
		vg_protocol_error(vg, "port %u: SHUTDOWN flags %#x",
				  sock->local_port, header->flags);
	sock->peer_shutdown |= header->flags & VSOCK_SHUTDOWN_BOTH;
	/* Linux: peer shut both ways and nothing left to read -> RST. */
	if (sock->peer_shutdown == VSOCK_SHUTDOWN_BOTH &&
	    sock->state == VGUEST_SOCK_CONNECTED && vg_sock_rx_len(sock) == 0) {
		(void)vg_send_ctl(vg, sock->local_port, sock->peer_port, VSOCK_OP_RST, 0);
		sock->reset_sent = true;
		vg_sock_set_closed(sock);
	}
}

/* One packet from the daemon; payload is at offset 44 of iov. */
void vg_rx_packet(struct vguest *vg, const struct vsock_header *header,
			 const struct iovec *iov, size_t iov_count)
{
	struct vguest_sock *sock;

	vg->stats.rx_packets[vg_op_slot(header->op)]++;
	vg_log_packet(vg, false, header);
	if (header->src_cid != VSOCK_HOST_CID || header->dst_cid != vg->opts.guest_cid) {
		vg_protocol_error(vg, "%s with src_cid %" PRIu64 " dst_cid %" PRIu64,
				  vsock_op_name(header->op), header->src_cid,
				  header->dst_cid);
		return;
	}
	if (header->op != VSOCK_OP_RW && header->len != 0) {
		vg_protocol_error(vg, "%s with len %u", vsock_op_name(header->op),
				  header->len);
		return;
	}
	if (header->type != VSOCK_TYPE_STREAM) {
		vg_protocol_error(vg, "%s with type %u", vsock_op_name(header->op),
				  header->type);
		return;
	}
	sock = vg_find_sock(vg, header->dst_port, header->src_port);
	if (header->op == VSOCK_OP_REQUEST) {
		if (sock) {
			vg_protocol_error(vg, "REQUEST for existing connection %u<-%u",
					  header->dst_port, header->src_port);
			return;
		}
		vg_handle_request(vg, header);
		return;
	}
	if (!sock) {
		vg->stats.unknown_socket_packets++;
		vg_reply_rst(vg, header);
		return;
	}
	sock->op_rx[vg_op_slot(header->op)]++;
	/* An RST ends the socket; its credit fields carry nothing (Linux's
	 * own no-socket RST has them zero). */
	if (header->op != VSOCK_OP_RST)
		vg_update_peer_credit(vg, sock, header);
	switch (header->op) {
	case VSOCK_OP_RESPONSE:
		if (sock->state != VGUEST_SOCK_CONNECTING) {
			vg_protocol_error(vg, "port %u: RESPONSE in state %s",
					  sock->local_port,
					  vguest_sock_state_name(sock->state));
			vg_reply_rst(vg, header);
			sock->reset_sent = true;
			vg_sock_set_closed(sock);
			return;
		}
		sock->state = VGUEST_SOCK_CONNECTED;
		sock->established_ns = vg_now_ns();
		break;
	case VSOCK_OP_RST:
		sock->reset_received = true;
		if (sock->state == VGUEST_SOCK_CONNECTING)
			sock->refused = true;
		vg_sock_set_closed(sock);
		break;
	case VSOCK_OP_SHUTDOWN:
		vg_handle_shutdown(vg, sock, header);
		break;
	case VSOCK_OP_RW:
		vg_handle_rw(vg, sock, header, iov, iov_count);
		break;
	case VSOCK_OP_CREDIT_UPDATE:
		break;
	case VSOCK_OP_CREDIT_REQUEST:
		(void)vg_send_ctl(vg, sock->local_port, sock->peer_port,
				  VSOCK_OP_CREDIT_UPDATE, 0);
		break;
	default:
		vg_protocol_error(vg, "unknown op %u", header->op);
		break;
	}
}

/* ------------------------------------------------------------------ */
/* socket API */

const char *vguest_sock_state_name(enum vguest_sock_state state)
{
	switch (state) {
	case VGUEST_SOCK_LISTEN: return "LISTEN";
	case VGUEST_SOCK_CONNECTING: return "CONNECTING";
	case VGUEST_SOCK_CONNECTED: return "CONNECTED";
	case VGUEST_SOCK_CLOSING: return "CLOSING";
	case VGUEST_SOCK_CLOSED: return "CLOSED";
	}
	return "state?";
}

struct vguest_sock *vguest_listen(struct vguest *vg, uint32_t port)
{
	if (vg_find_listener(vg, port)) {
		errno = EADDRINUSE;
		return NULL;
	}
	return vg_sock_new(vg, VGUEST_SOCK_LISTEN, port, 0);
}

void vguest_listen_set_mode(struct vguest_sock *listener,
			    enum vguest_listen_mode mode)
{
	listener->listen_mode = mode;
}

struct vguest_sock *vguest_accept(struct vguest_sock *listener)
{
	struct vguest_sock *sock = listener->accept_head;
	if (!sock)
		return NULL;
	listener->accept_head = sock->accept_next;
	if (!listener->accept_head)
		listener->accept_tail = NULL;
	sock->accept_next = NULL;
	return sock;
}

struct vguest_sock *vguest_connect_port_from(struct vguest *vg,
					     uint32_t local_port,
					     uint32_t peer_port)
{
	struct vguest_sock *sock;
	if (!vg->connected || vg->backend_gone) {
		errno = ENOTCONN;
		return NULL;
	}
	if (vg_find_sock(vg, local_port, peer_port)) {
		errno = EADDRINUSE;
		return NULL;
	}
	sock = vg_sock_new(vg, VGUEST_SOCK_CONNECTING, local_port, peer_port);
	if (!sock)
		return NULL;
	sock->connect_started_ns = vg_now_ns();
	if (vg_send_ctl(vg, local_port, peer_port, VSOCK_OP_REQUEST, 0) != 0) {
		vguest_sock_release(sock);
		return NULL;
	}
	vg_kick(vg, VGUEST_QUEUE_TX);
	return sock;
}

struct vguest_sock *vguest_connect_port(struct vguest *vg, uint32_t peer_port)
{
	uint32_t port;
	do {
		port = vg->next_local_port++;
		if (vg->next_local_port < 1024)
			vg->next_local_port = 1024;
	} while (vg_local_port_busy(vg, port));
	return vguest_connect_port_from(vg, port, peer_port);
}

uint32_t vguest_sock_credit(const struct vguest_sock *sock)
{
	uint32_t in_flight = sock->tx_cnt - sock->peer_fwd_cnt;
	if (!sock->peer_credit_known || in_flight > sock->peer_buf_alloc)
		return 0;   /* also when the peer's fwd_cnt is ahead (raw traffic) */
	return sock->peer_buf_alloc - in_flight;
}

ssize_t vguest_send(struct vguest_sock *sock, const void *data, size_t len)
{
	struct vguest *vg = sock->vg;
	size_t sent = 0;

	if (sock->state == VGUEST_SOCK_CLOSED) {
		errno = (sock->reset_received || sock->reset_sent) ? ECONNRESET : ENOTCONN;
		return -1;
	}
	if (sock->state != VGUEST_SOCK_CONNECTED) {
		errno = ENOTCONN;
		return -1;
	}
	if ((sock->local_shutdown & VSOCK_SHUTDOWN_SEND) ||
	    (sock->peer_shutdown & VSOCK_SHUTDOWN_RCV)) {
		errno = EPIPE;
		return -1;
	}
	vg_flush_pending(vg);
	while (sent < len && vg->pending_count == 0) {
		uint32_t credit = vguest_sock_credit(sock);
		size_t chunk = len - sent;
		struct vsock_header header;
		uint8_t wire[VSOCK_HEADER_SIZE];

		if (chunk > vg->opts.tx_max_payload)
			chunk = vg->opts.tx_max_payload;
		if (chunk > credit)
			chunk = credit;
		if (chunk == 0)
			break;
		header = (struct vsock_header){
			.src_cid = vg->opts.guest_cid,
			.dst_cid = VSOCK_HOST_CID,
			.src_port = sock->local_port,
			.dst_port = sock->peer_port,
			.len = (uint32_t)chunk,
			.type = VSOCK_TYPE_STREAM,
			.op = VSOCK_OP_RW,
			.flags = 0,
			.buf_alloc = sock->buf_alloc,
			.fwd_cnt = sock->fwd_cnt,
		};
		vsock_header_encode(&header, wire);
		if (vg_tx_post(vg, wire, (const uint8_t *)data + sent, chunk, 0) != 0)
			break;
		sock->last_fwd_cnt_sent = sock->fwd_cnt;
		sock->tx_cnt += (uint32_t)chunk;
		sock->tx_bytes += chunk;
		sock->op_tx[VSOCK_OP_RW]++;
		vg->stats.tx_packets[VSOCK_OP_RW]++;
		vg->stats.tx_payload_bytes += chunk;
		if (vg->opts.trace)
			vg_log_packet(vg, true, &header);
		sent += chunk;
	}
	vg_kick(vg, VGUEST_QUEUE_TX);
	if (sent == 0 && len > 0) {
		errno = EAGAIN;
		return -1;
	}
	return (ssize_t)sent;
}

size_t vguest_rx_pending(const struct vguest_sock *sock)
{
	return vg_sock_rx_len(sock);
}

bool vguest_sock_eof(const struct vguest_sock *sock)
{
	if (vg_sock_rx_len(sock) > 0)
		return false;
	return (sock->peer_shutdown & VSOCK_SHUTDOWN_SEND) ||
	       (sock->state == VGUEST_SOCK_CLOSED && !sock->reset_received);
}

ssize_t vguest_recv(struct vguest_sock *sock, void *buffer, size_t len)
{
	struct vguest *vg = sock->vg;
	size_t available = vg_sock_rx_len(sock);
	size_t take = len < available ? len : available;

	if (take == 0) {
		if (len == 0)
			return 0;
		if (vguest_sock_eof(sock))
			return 0;
		errno = sock->reset_received ? ECONNRESET : EAGAIN;
		return -1;
	}
	memcpy(buffer, sock->rx_data + sock->rx_head, take);
	sock->rx_head += take;
	if (sock->rx_head == sock->rx_tail)
		sock->rx_head = sock->rx_tail = 0;
	sock->fwd_cnt += (uint32_t)take;
	/* Linux 6.1 virtio_transport_stream_do_dequeue */
	if (sock->state == VGUEST_SOCK_CONNECTED &&
	    sock->buf_alloc - (sock->fwd_cnt - sock->last_fwd_cnt_sent) <
	    VGUEST_MAX_TX_PAYLOAD) {
		(void)vg_send_ctl(vg, sock->local_port, sock->peer_port,
				  VSOCK_OP_CREDIT_UPDATE, 0);
		vg_kick(vg, VGUEST_QUEUE_TX);
	}
	return (ssize_t)take;
}

int vguest_shutdown(struct vguest_sock *sock, uint32_t flags)
{
	struct vguest *vg = sock->vg;
	flags &= VSOCK_SHUTDOWN_BOTH;
	if (sock->state != VGUEST_SOCK_CONNECTED) {
		errno = ENOTCONN;
		return -1;
	}
	sock->local_shutdown |= flags;
	if (vg_send_ctl(vg, sock->local_port, sock->peer_port, VSOCK_OP_SHUTDOWN, flags) != 0)
		return -1;
	vg_kick(vg, VGUEST_QUEUE_TX);
	return 0;
}

int vguest_close(struct vguest_sock *sock)
{
	struct vguest *vg = sock->vg;
	switch (sock->state) {
	case VGUEST_SOCK_LISTEN: {
		struct vguest_sock *pending;
		while ((pending = vguest_accept(sock)) != NULL)
			(void)vguest_reset(pending);
		vg_sock_set_closed(sock);
		return 0;
	}
	case VGUEST_SOCK_CONNECTING:
		/* Linux drops a connecting socket without a packet. */
		vg_sock_set_closed(sock);
		return 0;
	case VGUEST_SOCK_CONNECTED:
		sock->local_shutdown = VSOCK_SHUTDOWN_BOTH;
		sock->state = VGUEST_SOCK_CLOSING;
		if (vg_send_ctl(vg, sock->local_port, sock->peer_port, VSOCK_OP_SHUTDOWN,
				VSOCK_SHUTDOWN_BOTH) != 0)
			return -1;
		vg_kick(vg, VGUEST_QUEUE_TX);
		return 0;
	case VGUEST_SOCK_CLOSING:
	case VGUEST_SOCK_CLOSED:
		return 0;
	}
	return 0;
}

int vguest_reset(struct vguest_sock *sock)
{
	struct vguest *vg = sock->vg;
	int rc = 0;
	if (sock->state == VGUEST_SOCK_CONNECTED || sock->state == VGUEST_SOCK_CLOSING ||
	    sock->state == VGUEST_SOCK_CONNECTING) {
		rc = vg_send_ctl(vg, sock->local_port, sock->peer_port, VSOCK_OP_RST, 0);
		sock->reset_sent = true;
		vg_kick(vg, VGUEST_QUEUE_TX);
	}
	vg_sock_set_closed(sock);
	return rc;
}

void vguest_sock_release(struct vguest_sock *sock)
{
	struct vguest *vg = sock->vg;
	struct vguest_sock **link;
	/* Take it out of its listener's accept queue, if still there. */
	if (sock->listener) {
		struct vguest_sock **a = &sock->listener->accept_head;
		struct vguest_sock *prev = NULL;
		while (*a && *a != sock) {
			prev = *a;
			a = &(*a)->accept_next;
		}
		if (*a) {
			*a = sock->accept_next;
			if (sock->listener->accept_tail == sock)
				sock->listener->accept_tail = prev;
		}
	}
	/* Accepted sockets outlive their listener: unhook them. */
	for (struct vguest_sock *s = vg->socks; s; s = s->next)
		if (s->listener == sock)
			s->listener = NULL;
	for (link = &vg->socks; *link; link = &(*link)->next) {
		if (*link == sock) {
			*link = sock->next;
			break;
		}
	}
	free(sock->rx_data);
	free(sock);
}
