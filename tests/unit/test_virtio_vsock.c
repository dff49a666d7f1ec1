/*
 * test_virtio_vsock.c - unit tests for common/virtio_vsock.c: the 44-byte
 * little-endian header, every field at its offset (virtio spec, socket device),
 * decode/encode round trips, and op names.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "vsockmux/virtio_vsock.h"

/* Every field a distinct value whose bytes are all distinct and nonzero. */
static const struct vsock_header sample = {
	.src_cid = 0x0102030405060708ull,
	.dst_cid = 0x1112131415161718ull,
	.src_port = 0x21222324u,
	.dst_port = 0x31323334u,
	.len = 0x41424344u,
	.type = 0x5152u,
	.op = 0x6162u,
	.flags = 0x71727374u,
	.buf_alloc = 0x81828384u,
	.fwd_cnt = 0x91929394u,
};

/* The same header, written out by hand from the virtio spec's layout. */
static const uint8_t sample_wire[VSOCK_HEADER_SIZE] = {
	/* 0: src_cid, u64 LE */
	0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
	/* 8: dst_cid, u64 LE */
	0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11,
	/* 16: src_port, u32 LE */
	0x24, 0x23, 0x22, 0x21,
	/* 20: dst_port */
	0x34, 0x33, 0x32, 0x31,
	/* 24: len */
	0x44, 0x43, 0x42, 0x41,
	/* 28: type, u16 LE */
	0x52, 0x51,
	/* 30: op, u16 LE */
	0x62, 0x61,
	/* 32: flags */
	0x74, 0x73, 0x72, 0x71,
	/* 36: buf_alloc */
	0x84, 0x83, 0x82, 0x81,
	/* 40: fwd_cnt */
	0x94, 0x93, 0x92, 0x91,
};

static void assert_headers_equal(const struct vsock_header *a,
				 const struct vsock_header *b)
{
	assert_int_equal(a->src_cid, b->src_cid);
	assert_int_equal(a->dst_cid, b->dst_cid);
	assert_int_equal(a->src_port, b->src_port);
	assert_int_equal(a->dst_port, b->dst_port);
	assert_int_equal(a->len, b->len);
	assert_int_equal(a->type, b->type);
	assert_int_equal(a->op, b->op);
	assert_int_equal(a->flags, b->flags);
	assert_int_equal(a->buf_alloc, b->buf_alloc);
	assert_int_equal(a->fwd_cnt, b->fwd_cnt);
}

static void test_constants(void **state)
{
	(void)state;
	assert_int_equal(VSOCK_HEADER_SIZE, 44);
	assert_int_equal(VSOCK_HOST_CID, 2);
	assert_int_equal(VSOCK_OP_REQUEST, 1);
	assert_int_equal(VSOCK_OP_RESPONSE, 2);
	assert_int_equal(VSOCK_OP_RST, 3);
	assert_int_equal(VSOCK_OP_SHUTDOWN, 4);
	assert_int_equal(VSOCK_OP_RW, 5);
	assert_int_equal(VSOCK_OP_CREDIT_UPDATE, 6);
	assert_int_equal(VSOCK_OP_CREDIT_REQUEST, 7);
	assert_int_equal(VSOCK_TYPE_STREAM, 1);
	assert_int_equal(VSOCK_TYPE_SEQPACKET, 2);
	assert_int_equal(VSOCK_SHUTDOWN_RCV, 1);
	assert_int_equal(VSOCK_SHUTDOWN_SEND, 2);
	assert_int_equal(VSOCK_SHUTDOWN_BOTH, 3);
	assert_int_equal(VIRTIO_VSOCK_F_SEQPACKET, 1);
}

static void test_encode_layout(void **state)
{
	uint8_t wire[VSOCK_HEADER_SIZE + 4];

	(void)state;
	/* Guard bytes after the header must survive. */
	memset(wire, 0xa5, sizeof(wire));
	vsock_header_encode(&sample, wire);
	assert_memory_equal(wire, sample_wire, VSOCK_HEADER_SIZE);
	for (size_t i = VSOCK_HEADER_SIZE; i < sizeof(wire); i++)
		assert_int_equal(wire[i], 0xa5);
}

static void test_decode_layout(void **state)
{
	struct vsock_header header;

	(void)state;
	memset(&header, 0, sizeof(header));
	vsock_header_decode(sample_wire, &header);
	assert_headers_equal(&header, &sample);
}

/* One field at a time: exactly its bytes, at its offset, are set. */
static void test_each_field_offset(void **state)
{
	static const struct {
		size_t offset, size;
	} fields[] = {
		{ 0, 8 }, { 8, 8 }, { 16, 4 }, { 20, 4 }, { 24, 4 },
		{ 28, 2 }, { 30, 2 }, { 32, 4 }, { 36, 4 }, { 40, 4 },
	};

	(void)state;
	for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++) {
		struct vsock_header header;
		uint8_t wire[VSOCK_HEADER_SIZE];

		memset(&header, 0, sizeof(header));
		switch (f) {
		case 0: header.src_cid = UINT64_MAX; break;
		case 1: header.dst_cid = UINT64_MAX; break;
		case 2: header.src_port = UINT32_MAX; break;
		case 3: header.dst_port = UINT32_MAX; break;
		case 4: header.len = UINT32_MAX; break;
		case 5: header.type = UINT16_MAX; break;
		case 6: header.op = UINT16_MAX; break;
		case 7: header.flags = UINT32_MAX; break;
		case 8: header.buf_alloc = UINT32_MAX; break;
		default: header.fwd_cnt = UINT32_MAX; break;
		}
		vsock_header_encode(&header, wire);
		for (size_t i = 0; i < VSOCK_HEADER_SIZE; i++) {
			int inside = i >= fields[f].offset &&
				     i < fields[f].offset + fields[f].size;

			if (wire[i] != (inside ? 0xff : 0x00))
				fail_msg("field %zu: byte %zu is 0x%02x", f, i,
					 wire[i]);
		}
	}
}

static void test_round_trip(void **state)
{
	uint8_t wire[VSOCK_HEADER_SIZE], again[VSOCK_HEADER_SIZE];
	struct vsock_header header;
	uint8_t seed = 1;

	(void)state;
	/* Arbitrary bytes decode and re-encode to themselves. */
	for (int round = 0; round < 64; round++) {
		for (size_t i = 0; i < sizeof(wire); i++) {
			seed = (uint8_t)(seed * 37u + 11u);
			wire[i] = seed;
		}
		vsock_header_decode(wire, &header);
		vsock_header_encode(&header, again);
		assert_memory_equal(wire, again, sizeof(wire));
	}

	/* A realistic RW header both ways. */
	{
		const struct vsock_header rw = {
			.src_cid = 3, .dst_cid = VSOCK_HOST_CID,
			.src_port = 1073741824u, .dst_port = 52, .len = 3732,
			.type = VSOCK_TYPE_STREAM, .op = VSOCK_OP_RW,
			.flags = 0, .buf_alloc = 262144, .fwd_cnt = 4096,
		};

		vsock_header_encode(&rw, wire);
		assert_int_equal(wire[0], 3);
		assert_int_equal(wire[8], 2);
		assert_int_equal(wire[28], 1);
		assert_int_equal(wire[30], 5);
		vsock_header_decode(wire, &header);
		assert_headers_equal(&header, &rw);
	}
}

static void test_op_names(void **state)
{
	(void)state;
	assert_string_equal(vsock_op_name(VSOCK_OP_REQUEST), "REQUEST");
	assert_string_equal(vsock_op_name(VSOCK_OP_RESPONSE), "RESPONSE");
	assert_string_equal(vsock_op_name(VSOCK_OP_RST), "RST");
	assert_string_equal(vsock_op_name(VSOCK_OP_SHUTDOWN), "SHUTDOWN");
	assert_string_equal(vsock_op_name(VSOCK_OP_RW), "RW");
	assert_string_equal(vsock_op_name(VSOCK_OP_CREDIT_UPDATE),
			    "CREDIT_UPDATE");
	assert_string_equal(vsock_op_name(VSOCK_OP_CREDIT_REQUEST),
			    "CREDIT_REQUEST");
	assert_string_equal(vsock_op_name(VSOCK_OP_INVALID), "INVALID");
	assert_string_equal(vsock_op_name(8), "op?");
	assert_string_equal(vsock_op_name(0x6162), "op?");
	assert_string_equal(vsock_op_name(UINT16_MAX), "op?");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_constants),
		cmocka_unit_test(test_encode_layout),
		cmocka_unit_test(test_decode_layout),
		cmocka_unit_test(test_each_field_offset),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_op_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
