/*
 * virtio_vsock.h - the virtio-vsock packet header as it travels on the wire.
 *
 * Owns: the 44-byte header layout, op/type/flag numbers, and the
 * conversion between the little-endian wire form and a host-order struct.
 * Never: touches guest memory itself. Callers copy the header out of guest
 * memory first (once, to avoid TOCTOU) and then decode the copy here.
 */
#ifndef VSOCKMUX_VIRTIO_VSOCK_H
#define VSOCKMUX_VIRTIO_VSOCK_H

#include <stdbool.h>
#include <stdint.h>

#define VSOCK_HEADER_SIZE 44u
#define VSOCK_HOST_CID 2u

enum vsock_op {
	VSOCK_OP_INVALID = 0,
	VSOCK_OP_REQUEST = 1,
	VSOCK_OP_RESPONSE = 2,
	VSOCK_OP_RST = 3,
	VSOCK_OP_SHUTDOWN = 4,
	VSOCK_OP_RW = 5,
	VSOCK_OP_CREDIT_UPDATE = 6,
	VSOCK_OP_CREDIT_REQUEST = 7,
};

enum vsock_type {
	VSOCK_TYPE_STREAM = 1,
	VSOCK_TYPE_SEQPACKET = 2,
};

enum vsock_shutdown_flags {
	VSOCK_SHUTDOWN_RCV = 1u,  /* sender will receive no more */
	VSOCK_SHUTDOWN_SEND = 2u, /* sender will send no more */
	VSOCK_SHUTDOWN_BOTH = 3u,
};

#define VIRTIO_VSOCK_F_SEQPACKET 1

/* Host-order copy of a header. */
struct vsock_header {
	uint64_t src_cid;
	uint64_t dst_cid;
	uint32_t src_port;
	uint32_t dst_port;
	uint32_t len;
	uint16_t type;
	uint16_t op;
	uint32_t flags;
	uint32_t buf_alloc;
	uint32_t fwd_cnt;
};

/* Decode 44 little-endian bytes into *header. */
void vsock_header_decode(const uint8_t wire[VSOCK_HEADER_SIZE],
			 struct vsock_header *header);
/* Encode *header into 44 little-endian bytes. */
void vsock_header_encode(const struct vsock_header *header,
			 uint8_t wire[VSOCK_HEADER_SIZE]);
/* Human-readable op name for logs ("REQUEST", ..., "op?"). */
const char *vsock_op_name(uint16_t op);

#endif
