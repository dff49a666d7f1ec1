/*
 * ipc.h - framing of the broker<->muxer channel.
 *
 * The channel is a SOCK_SEQPACKET socketpair: one protobuf-c Envelope per
 * datagram, size-capped, at most one fd in SCM_RIGHTS. This layer checks
 * framing only (size, truncation, fd count, version, that it decodes and
 * that a body is set); the dispatch tables on each side check which bodies
 * they accept and whether the fd is required.
 */
#ifndef VSOCKMUX_IPC_H
#define VSOCKMUX_IPC_H

#include <stddef.h>
#include <stdint.h>

#include "ipc.pb-c.h"

#define IPC_PROTOCOL_VERSION 1u
/* Every message but StatsReply. */
#define IPC_MAX_MESSAGE_SIZE 256u
/* StatsReply: the connection table of a busy muxer. The channel's socket
 * buffers are sized for it (main.c). */
#define IPC_MAX_STATS_SIZE (192u * 1024u)
#define IPC_MAX_DATAGRAM_SIZE (IPC_MAX_STATS_SIZE + 64u)

/* ConnectReply.error for a port outside --allow-guest-ports (not an
 * errno, so it cannot be mistaken for a connect failure). */
#define IPC_CONNECT_NOT_ALLOWED (-1)

typedef Vsockmux__Ipc__Envelope IpcEnvelope;

/*
 * Pack and send one envelope (version filled in here) with fd attached if
 * fd >= 0. Never blocks (MSG_DONTWAIT). Returns 0 or a negative errno
 * (-EAGAIN when the channel is full, -EMSGSIZE if the packed form exceeds
 * IPC_MAX_MESSAGE_SIZE). The caller keeps ownership of fd.
 */
int ipc_send(int channel_fd, IpcEnvelope *envelope, int fd);

/*
 * Receive one datagram. On success returns 1, *envelope must be freed with
 * ipc_free, and *fd is the received fd or -1. Returns 0 on EOF, -EAGAIN
 * when nothing is waiting, -EPROTO for a malformed datagram (oversized,
 * truncated, control data truncated, more than one fd, non-fd control
 * data, undecodable, wrong version, no body): any fds that came with it
 * are closed, *envelope is NULL and the reason is logged. *fd is
 * IPC_FD_LOST when the datagram was sent with an fd the kernel could not
 * install here (no free descriptor: MSG_CTRUNC and none received); the
 * message itself is fine and the caller decides what the loss means.
 */
#define IPC_FD_LOST (-2)
int ipc_receive(int channel_fd, IpcEnvelope **envelope, int *fd);

void ipc_free(IpcEnvelope *envelope);

/* Name of a body case, for logs. */
const char *ipc_body_name(int body_case);

#endif
