/*
 * vguest_log.c - the guest's packet log: every control packet either way
 * (not RW: data volume would drown it), with the time it was seen, the
 * optional trace to stderr, and the queries tests make of it
 * (vguest_count_packets, vguest_find_packet, vguest_packet_log).
 *
 * Owns: vg->log. Never: changes a socket or a ring; the log only watches.
 */
#include "vguest_internal.h"

#include <inttypes.h>
#include <stdio.h>

void vg_log_packet(struct vguest *vg, bool from_guest,
			  const struct vsock_header *header)
{
	if (vg->opts.trace)
		fprintf(stderr,
			"vguest: %s %s src %" PRIu64 ":%u dst %" PRIu64
			":%u len %u type %u flags %u buf_alloc %u fwd_cnt %u\n",
			from_guest ? "TX" : "RX", vsock_op_name(header->op),
			header->src_cid, header->src_port, header->dst_cid,
			header->dst_port, header->len, header->type,
			header->flags, header->buf_alloc, header->fwd_cnt);
	if (header->op == VSOCK_OP_RW)
		return;
	if (vg_grow((void **)&vg->log, &vg->log_capacity, vg->log_count + 1,
		    sizeof(*vg->log)) != 0)
		return;
	vg->log[vg->log_count].from_guest = from_guest;
	vg->log[vg->log_count].header = *header;
	vg->log[vg->log_count].time_ns = vg_now_ns();
	vg->log_count++;
}

/* ------------------------------------------------------------------ */
/* packet log queries */

static bool vg_record_matches(const struct vguest_packet_record *r,
			      bool from_guest, uint16_t op,
			      uint32_t local_port, uint32_t peer_port)
{
	uint32_t local = from_guest ? r->header.src_port : r->header.dst_port;
	uint32_t peer = from_guest ? r->header.dst_port : r->header.src_port;
	return r->from_guest == from_guest && r->header.op == op &&
	       (local_port == VGUEST_ANY_PORT || local == local_port) &&
	       (peer_port == VGUEST_ANY_PORT || peer == peer_port);
}

size_t vguest_count_packets(const struct vguest *vg, bool from_guest,
			    uint16_t op, uint32_t local_port, uint32_t peer_port)
{
	size_t count = 0;
	for (size_t i = 0; i < vg->log_count; i++)
		if (vg_record_matches(&vg->log[i], from_guest, op, local_port, peer_port))
			count++;
	return count;
}

const struct vguest_packet_record *
vguest_find_packet(const struct vguest *vg, bool from_guest, uint16_t op,
		   uint32_t local_port, uint32_t peer_port)
{
	for (size_t i = vg->log_count; i > 0; i--)
		if (vg_record_matches(&vg->log[i - 1], from_guest, op, local_port, peer_port))
			return &vg->log[i - 1];
	return NULL;
}

const struct vguest_packet_record *vguest_packet_log(const struct vguest *vg,
						     size_t *count)
{
	*count = vg->log_count;
	return vg->log;
}
