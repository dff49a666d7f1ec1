/*
 * rx_buffers.h - guest RX buffers held by the muxer (rx_buffers.c).
 */
#ifndef VSOCKMUX_RX_BUFFERS_H
#define VSOCKMUX_RX_BUFFERS_H

#include <stdbool.h>
#include <stdint.h>

#include "vsockmux/virtio_vsock.h"

struct muxer;

/* The segment pool; 0 or -ENOMEM. */
int rx_buffers_init(struct muxer *muxer);
void rx_buffers_destroy(struct muxer *muxer);
/* Next buffer slot (taken): the oldest spare, else a fresh pop; buffers
 * too small for a header and payload are handed back and counted. -1 when
 * the guest has none (or this pass rejected too many). */
int rx_buffers_take(struct muxer *muxer);
/* Keep a taken slot as spare; at_front: it was the oldest. */
void rx_buffers_keep_spare(struct muxer *muxer, int slot, bool at_front);
/* Every spare back to the guest unused (length 0) while the ring is ours. */
void rx_buffers_return_spares(struct muxer *muxer);
/* Forget the spares: their ring is gone (reset, detach). */
void rx_buffers_forget(struct muxer *muxer);
/* A host->guest header for the port pair, CIDs and type filled in. */
void rx_buffers_header(const struct muxer *muxer, struct vsock_header *header,
		       uint32_t local_port, uint32_t peer_port, uint16_t op);
/* Write header into the slot's buffer and publish it (used: header +
 * header->len payload bytes already there). */
void rx_buffers_publish(struct muxer *muxer, int slot,
			const struct vsock_header *header);

#endif
