/*
 * limits.h - the numbers both processes must agree on.
 *
 * Why one place: the broker sizes its reply queue by how many connects the
 * muxer keeps open, and the option parser caps --max-connections by how
 * many slots a request id can name. A change to one without the other
 * would let a reply be dropped or an id name the wrong slot.
 */
#ifndef VSOCKMUX_LIMITS_H
#define VSOCKMUX_LIMITS_H

/* Guest connects waiting for the broker at once (beyond: RST), and so the
 * most ConnectReplies the broker ever has to hold for a full channel. */
#define VSOCKMUX_MAX_CONNECTS_IN_FLIGHT 256u

/* Connection slots are named by 20 bits in a request id (tag.h). */
#define VSOCKMUX_SLOT_BITS 20u
#define VSOCKMUX_MAX_CONNECTIONS (1u << VSOCKMUX_SLOT_BITS)

#endif
