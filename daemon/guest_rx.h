/*
 * guest_rx.h - filling the guest's RX queue (guest_rx.c).
 */
#ifndef VSOCKMUX_GUEST_RX_H
#define VSOCKMUX_GUEST_RX_H

struct muxer;

/* One pass over the RX work and the RSTs owed; sets muxer->rx_backlog
 * when work is left for the next loop turn. */
void guest_rx_process(struct muxer *muxer);

#endif
