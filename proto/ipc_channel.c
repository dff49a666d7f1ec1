/*
 * ipc_channel.c - framing of the broker<->muxer SOCK_SEQPACKET channel.
 *
 * Owns: turning one Envelope (+ at most one fd) into one datagram and back,
 * and every framing check on the receiving side: size, truncation, control
 * data shape, fd count, decoding, version, unknown fields, body presence.
 * Every fd that arrives with a rejected datagram is closed here.
 *
 * Never: blocks (MSG_DONTWAIT on both directions), raises SIGPIPE
 * (MSG_NOSIGNAL), or decides whether a body is acceptable for the receiver
 * or whether it must carry an fd: that is each side's dispatch table.
 */
#include "vsockmux/ipc.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "vsockmux/fd_passing.h"
#include "vsockmux/log.h"

/*
 * Room for this many fds in the receive control buffer: a single fd is the
 * only legal case, the rest is there so that "more than one fd" is seen as
 * such (and every one of them closed) rather than as a generic truncation.
 */
#define IPC_RECEIVE_FD_SLOTS 4

/* Control buffer for receiving: some fds, plus credentials (SO_PASSCRED). */
#define IPC_RECEIVE_CONTROL_SIZE \
	(CMSG_SPACE(sizeof(int) * IPC_RECEIVE_FD_SLOTS) + \
	 CMSG_SPACE(sizeof(struct ucred)))

/* Upper bound of fds one control buffer can hold, whatever its layout. */
#define IPC_RECEIVE_MAX_FDS (IPC_RECEIVE_CONTROL_SIZE / sizeof(int))

/* Size cap per body: only StatsReply may be large. */
static size_t max_size_of(int body_case)
{
	return body_case == VSOCKMUX__IPC__ENVELOPE__BODY_STATS_REPLY
		       ? IPC_MAX_DATAGRAM_SIZE : IPC_MAX_MESSAGE_SIZE;
}

int ipc_send(int channel_fd, IpcEnvelope *envelope, int fd)
{
	uint8_t packed[IPC_MAX_DATAGRAM_SIZE];
	union {
		char buffer[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} control;
	struct iovec iov;
	struct msghdr msg;
	size_t packed_size;
	ssize_t sent;
	int result;

	if (envelope == NULL) {
		result = -EINVAL;
		goto out;
	}
	envelope->version = IPC_PROTOCOL_VERSION;
	packed_size = protobuf_c_message_get_packed_size(&envelope->base);
	if (packed_size > max_size_of(envelope->body_case)) {
		result = -EMSGSIZE;
		goto out;
	}
	if (protobuf_c_message_pack(&envelope->base, packed) != packed_size) {
		result = -EIO;
		goto out;
	}

	iov.iov_base = packed;
	iov.iov_len = packed_size;
	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	(void)fd_passing_attach(&msg, control.buffer, sizeof(control.buffer), &fd,
				fd >= 0 ? 1 : 0);

	do {
		sent = sendmsg(channel_fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
	} while (sent < 0 && errno == EINTR);
	if (sent < 0) {
		result = -errno;
		goto out;
	}
	/* SOCK_SEQPACKET sends all or nothing; anything else is a bug. */
	result = (size_t)sent == packed_size ? 0 : -EIO;
out:
	return result;
}

/*
 * Collect every fd carried by the control messages into fds[] and check
 * that nothing but SCM_RIGHTS came along. Returns the number of fds kept;
 * *reason is set when the control data is not acceptable.
 */
static size_t collect_control(struct msghdr *msg, int *fds, size_t fd_capacity,
			      const char **reason)
{
	struct fd_passing_result result = fd_passing_collect(msg, fds, fd_capacity);

	if (result.other_messages && *reason == NULL)
		*reason = "control message other than SCM_RIGHTS";
	if (result.kept + result.closed > 1 && *reason == NULL)
		*reason = "more than one fd attached";
	return result.kept;
}

/* The body message that goes with body_case; NULL if none is present. */
static const ProtobufCMessage *body_message(const IpcEnvelope *envelope)
{
	const void *body = NULL;

	switch (envelope->body_case) {
	case VSOCKMUX__IPC__ENVELOPE__BODY_VMM_ATTACH:
		body = envelope->vmm_attach;
		break;
	case VSOCKMUX__IPC__ENVELOPE__BODY_VMM_DETACHED:
		body = envelope->vmm_detached;
		break;
	case VSOCKMUX__IPC__ENVELOPE__BODY_HOST_STREAM:
		body = envelope->host_stream;
		break;
	case VSOCKMUX__IPC__ENVELOPE__BODY_CONNECT_REQUEST:
		body = envelope->connect_request;
		break;
	case VSOCKMUX__IPC__ENVELOPE__BODY_CONNECT_REPLY:
		body = envelope->connect_reply;
		break;
	case VSOCKMUX__IPC__ENVELOPE__BODY_STATS_REQUEST:
		body = envelope->stats_request;
		break;
	case VSOCKMUX__IPC__ENVELOPE__BODY_STATS_REPLY:
		body = envelope->stats_reply;
		break;
	case VSOCKMUX__IPC__ENVELOPE__BODY_HOST_ACCEPT_CONTROL:
		body = envelope->host_accept_control;
		break;
	default:
		break;
	}
	/* Every generated message struct starts with its ProtobufCMessage. */
	return body;
}

int ipc_receive(int channel_fd, IpcEnvelope **envelope, int *fd)
{
	uint8_t datagram[IPC_MAX_DATAGRAM_SIZE + 1];
	union {
		char buffer[IPC_RECEIVE_CONTROL_SIZE];
		struct cmsghdr align;
	} control;
	int fds[IPC_RECEIVE_MAX_FDS];
	size_t fd_count = 0;
	const char *reason = NULL;
	char version_reason[64];
	IpcEnvelope *decoded = NULL;
	const ProtobufCMessage *body;
	struct iovec iov;
	struct msghdr msg;
	ssize_t length = 0;
	int result;

	*envelope = NULL;
	*fd = -1;

	iov.iov_base = datagram;
	iov.iov_len = sizeof(datagram);
	memset(&msg, 0, sizeof(msg));
	memset(&control, 0, sizeof(control));
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = control.buffer;
	msg.msg_controllen = sizeof(control.buffer);

	do {
		length = recvmsg(channel_fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	} while (length < 0 && errno == EINTR);
	if (length < 0) {
		result = -errno;
		goto out;
	}

	/* Take every fd into our hands first, whatever else is wrong. */
	fd_count = collect_control(&msg, fds, IPC_RECEIVE_MAX_FDS, &reason);

	if (length == 0) {
		/* EOF (a zero-length datagram reads the same; treated as EOF). */
		result = 0;
		goto out;
	}
	/* MSG_CTRUNC with no fd at all: out of descriptors (EMFILE), the
	 * kernel dropped the one fd; the caller refuses what it was for */
	if ((msg.msg_flags & MSG_CTRUNC) && (fd_count > 0 || reason != NULL))
		reason = "control data truncated (too many fds?)";
	else if ((msg.msg_flags & MSG_TRUNC) ||
		 (size_t)length > IPC_MAX_DATAGRAM_SIZE)
		reason = "datagram larger than IPC_MAX_DATAGRAM_SIZE";
	if (reason != NULL) {
		result = -EPROTO;
		goto out;
	}

	decoded = vsockmux__ipc__envelope__unpack(NULL, (size_t)length, datagram);
	if (decoded == NULL) {
		reason = "undecodable envelope";
	} else if (decoded->version != IPC_PROTOCOL_VERSION) {
		snprintf(version_reason, sizeof(version_reason),
			 "wrong protocol version %u (expected %u)",
			 decoded->version, IPC_PROTOCOL_VERSION);
		reason = version_reason;
	} else if ((body = body_message(decoded)) == NULL) {
		reason = "no body set";
	} else if (decoded->base.n_unknown_fields != 0 ||
		   body->n_unknown_fields != 0) {
		reason = "unknown fields";
	} else if ((size_t)length > max_size_of(decoded->body_case)) {
		reason = "datagram larger than IPC_MAX_MESSAGE_SIZE";
	}
	if (reason != NULL) {
		result = -EPROTO;
		goto out;
	}

	*envelope = decoded;
	decoded = NULL;
	if (fd_count == 1) {
		*fd = fds[0];
		fd_count = 0;
	} else if (msg.msg_flags & MSG_CTRUNC) {
		*fd = IPC_FD_LOST;
	}
	result = 1;
out:
	if (result == -EPROTO)
		log_error("ipc: rejected datagram (%zd bytes, %zu fds): %s",
			  length, fd_count, reason ? reason : "unknown reason");
	for (size_t i = 0; i < fd_count; i++)
		close(fds[i]);
	if (decoded != NULL)
		vsockmux__ipc__envelope__free_unpacked(decoded, NULL);
	return result;
}

void ipc_free(IpcEnvelope *envelope)
{
	if (envelope != NULL)
		vsockmux__ipc__envelope__free_unpacked(envelope, NULL);
}

const char *ipc_body_name(int body_case)
{
	switch (body_case) {
	case VSOCKMUX__IPC__ENVELOPE__BODY__NOT_SET:
		return "(no body)";
	case VSOCKMUX__IPC__ENVELOPE__BODY_VMM_ATTACH:
		return "VmmAttach";
	case VSOCKMUX__IPC__ENVELOPE__BODY_VMM_DETACHED:
		return "VmmDetached";
	case VSOCKMUX__IPC__ENVELOPE__BODY_HOST_STREAM:
		return "HostStream";
	case VSOCKMUX__IPC__ENVELOPE__BODY_CONNECT_REQUEST:
		return "ConnectRequest";
	case VSOCKMUX__IPC__ENVELOPE__BODY_CONNECT_REPLY:
		return "ConnectReply";
	case VSOCKMUX__IPC__ENVELOPE__BODY_STATS_REQUEST:
		return "StatsRequest";
	case VSOCKMUX__IPC__ENVELOPE__BODY_STATS_REPLY:
		return "StatsReply";
	case VSOCKMUX__IPC__ENVELOPE__BODY_HOST_ACCEPT_CONTROL:
		return "HostAcceptControl";
	default:
		return "(unknown body)";
	}
}
