/*
 * broker_send.h - the messages the muxer sends the broker. Each is one
 * SOCK_SEQPACKET datagram on the channel (vsockmux/ipc.h).
 *
 * Owns: building the envelopes. Never: blocks (the channel is
 * non-blocking; a full channel is an error the caller handles), or knows
 * the muxer's state.
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

#endif
