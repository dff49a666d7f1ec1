/*
 * guest_tx.h - draining the guest's TX queue (guest_tx.c).
 */
#ifndef VSOCKMUX_GUEST_TX_H
#define VSOCKMUX_GUEST_TX_H

struct muxer;

/* Handle up to MUXER_TX_BUDGET chains; sets muxer->tx_backlog when the
 * budget ran out with chains left. */
void guest_tx_process(struct muxer *muxer);

#endif
