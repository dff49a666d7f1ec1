/*
 * guest_event.h - the event virtqueue (guest_event.c).
 */
#ifndef VSOCKMUX_GUEST_EVENT_H
#define VSOCKMUX_GUEST_EVENT_H

struct muxer;

/* Post the transport reset the guest is owed, if the event queue is ours,
 * ready and holds a buffer; else it stays owed. */
void guest_event_process(struct muxer *muxer);

#endif
