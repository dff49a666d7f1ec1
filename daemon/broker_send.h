/*
 * broker_send.h - the messages the muxer sends the broker. Each is one
 * SOCK_SEQPACKET datagram on the channel (vsockmux/ipc.h).
 *
 * Owns: building the envelopes, and sending what the broker is owed
 * (struct muxer: a frontend that left, pause/resume accepting) at once or,
 * when the channel is full, once it drains. Never: blocks (the channel is
 * non-blocking).
 */
#ifndef VSOCKMUX_BROKER_SEND_H
#define VSOCKMUX_BROKER_SEND_H

#include <stdbool.h>
#include <stdint.h>

/* Ask for a connection to <uds-path>_<port>; the reply names request_id.
 * 0, or -errno (logged). */
int broker_send_connect_request(int channel_fd, uint32_t request_id, uint32_t port);
/* The frontend left: the broker may accept the next one. 0 or -errno. */
int broker_send_vmm_detached(int channel_fd);
/* Stop or resume accepting host clients. 0 or -errno. */
int broker_send_host_accept_control(int channel_fd, bool paused);

struct muxer;
/* Send what the broker is owed (muxer->owe_vmm_detached, and
 * host_accept_paused when it differs from host_accept_told); on a full
 * channel wait for it to drain (EPOLLOUT), on any other error stop the
 * muxer. */
void broker_send_owed(struct muxer *muxer);

#endif
