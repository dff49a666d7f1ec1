/*
 * virtio_vsock.c - encode/decode of the virtio-vsock wire header.
 *
 * Owns: byte order and field offsets (the virtio spec, socket device).
 * Never: validates semantics; that is the muxer's job on the decoded copy.
 */
#include "vsockmux/virtio_vsock.h"

#include <endian.h>
#include <string.h>

static uint64_t load_le64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof(v));
	return le64toh(v);
}

static uint32_t load_le32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof(v));
	return le32toh(v);
}

static uint16_t load_le16(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, sizeof(v));
	return le16toh(v);
}

static void store_le64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, sizeof(v));
}

static void store_le32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, sizeof(v));
}

static void store_le16(uint8_t *p, uint16_t v)
{
	v = htole16(v);
	memcpy(p, &v, sizeof(v));
}

void vsock_header_decode(const uint8_t wire[VSOCK_HEADER_SIZE],
			 struct vsock_header *header)
{
	header->src_cid = load_le64(wire + 0);
	header->dst_cid = load_le64(wire + 8);
	header->src_port = load_le32(wire + 16);
	header->dst_port = load_le32(wire + 20);
	header->len = load_le32(wire + 24);
	header->type = load_le16(wire + 28);
	header->op = load_le16(wire + 30);
	header->flags = load_le32(wire + 32);
	header->buf_alloc = load_le32(wire + 36);
	header->fwd_cnt = load_le32(wire + 40);
}

void vsock_header_encode(const struct vsock_header *header,
			 uint8_t wire[VSOCK_HEADER_SIZE])
{
	store_le64(wire + 0, header->src_cid);
	store_le64(wire + 8, header->dst_cid);
	store_le32(wire + 16, header->src_port);
	store_le32(wire + 20, header->dst_port);
	store_le32(wire + 24, header->len);
	store_le16(wire + 28, header->type);
	store_le16(wire + 30, header->op);
	store_le32(wire + 32, header->flags);
	store_le32(wire + 36, header->buf_alloc);
	store_le32(wire + 40, header->fwd_cnt);
}

const char *vsock_op_name(uint16_t op)
{
	static const char *const names[] = {
		[VSOCK_OP_INVALID] = "INVALID",
		[VSOCK_OP_REQUEST] = "REQUEST",
		[VSOCK_OP_RESPONSE] = "RESPONSE",
		[VSOCK_OP_RST] = "RST",
		[VSOCK_OP_SHUTDOWN] = "SHUTDOWN",
		[VSOCK_OP_RW] = "RW",
		[VSOCK_OP_CREDIT_UPDATE] = "CREDIT_UPDATE",
		[VSOCK_OP_CREDIT_REQUEST] = "CREDIT_REQUEST",
	};
	if (op < sizeof(names) / sizeof(names[0]))
		return names[op];
	return "op?";
}
