/*
 * control_wire.h - the control socket's framing (proto/control.proto):
 * every Request and Response is a 4-byte big-endian length, then that
 * many bytes of protobuf. Shared by the broker (server), vsockctl
 * (client) and the tests, so the version, the limits and the prefix are
 * written once.
 *
 * Owns: the protocol version, the size limits, the length prefix.
 * Never: does I/O.
 */
#ifndef VSOCKMUX_CONTROL_WIRE_H
#define VSOCKMUX_CONTROL_WIRE_H

#include <stdint.h>

#define CONTROL_PROTOCOL_VERSION 1u
#define CONTROL_PREFIX_SIZE 4u
#define CONTROL_MAX_REQUEST 256u                   /* bytes after the prefix */
#define CONTROL_MAX_RESPONSE (4u * 1024u * 1024u)  /* bytes after the prefix */

static inline void control_put_length(uint8_t prefix[CONTROL_PREFIX_SIZE],
				      uint32_t length)
{
	prefix[0] = (uint8_t)(length >> 24);
	prefix[1] = (uint8_t)(length >> 16);
	prefix[2] = (uint8_t)(length >> 8);
	prefix[3] = (uint8_t)length;
}

static inline uint32_t control_get_length(const uint8_t prefix[CONTROL_PREFIX_SIZE])
{
	return (uint32_t)prefix[0] << 24 | (uint32_t)prefix[1] << 16 |
	       (uint32_t)prefix[2] << 8 | prefix[3];
}

#endif
