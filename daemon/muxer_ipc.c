/*
 * muxer_ipc.c - the muxer's end of the broker channel: one dispatch table
 * saying which messages the muxer accepts, whether each must carry an fd,
 * and what handles it.
 *
 * Never: trusts the broker beyond the table. A message the table does not
 * allow, or a fd where none belongs, is a protocol error: logged, the fd
 * closed, and the muxer stops (the broker is our only peer; if it speaks
 * nonsense something is badly wrong).
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"
#include "frontend.h"
#include "muxer.h"
#include "vsockmux/ipc.h"
#include "vsockmux/ipc_routes.h"
#include "vsockmux/log.h"

static int on_vmm_attach(void *context, const IpcEnvelope *envelope, int fd)
{
	(void)envelope;
	frontend_attach(context, fd);
	return 0;
}

static int on_host_stream(void *context, const IpcEnvelope *envelope, int fd)
{
	(void)envelope;
	conn_adopt_host_client(context, fd);
	return 0;
}

static int on_connect_reply(void *context, const IpcEnvelope *envelope, int fd)
{
	const Vsockmux__Ipc__ConnectReply *reply = envelope->connect_reply;
	conn_on_broker_connect(context, reply->request_id, reply->error, fd);
	return 0;
}

static int on_stats_request(void *context, const IpcEnvelope *envelope, int fd)
{
	(void)fd;
	muxer_answer_stats(context, envelope->stats_request->request_id,
			   envelope->stats_request->include_connections);
	return 0;
}

/* Everything the broker may send the muxer. */
static const struct ipc_route muxer_routes[] = {
	{ VSOCKMUX__IPC__ENVELOPE__BODY_VMM_ATTACH, IPC_FD_REQUIRED, on_vmm_attach },
	{ VSOCKMUX__IPC__ENVELOPE__BODY_HOST_STREAM, IPC_FD_REQUIRED, on_host_stream },
	{ VSOCKMUX__IPC__ENVELOPE__BODY_CONNECT_REPLY, IPC_FD_IF_SUCCESS, on_connect_reply },
	{ VSOCKMUX__IPC__ENVELOPE__BODY_STATS_REQUEST, IPC_FD_FORBIDDEN, on_stats_request },
};
#define MUXER_ROUTE_COUNT (sizeof(muxer_routes) / sizeof(muxer_routes[0]))

static void stop_muxer(struct muxer *muxer, int exit_code)
{
	muxer->running = false;
	muxer->exit_code = exit_code;
}

/*
 * The broker sent an fd but we had no descriptor free (RLIMIT_NOFILE): the
 * kernel dropped it, which closed a host client or a frontend. Refuse what
 * it was for; the muxer goes on.
 */
static void fd_lost(struct muxer *muxer, const IpcEnvelope *envelope)
{
	if (envelope->body_case == VSOCKMUX__IPC__ENVELOPE__BODY_CONNECT_REPLY) {
		conn_on_broker_connect(muxer, envelope->connect_reply->request_id,
				       EMFILE, -1);
		return;
	}
	if (envelope->body_case == VSOCKMUX__IPC__ENVELOPE__BODY_HOST_STREAM)
		muxer->stats.refused[REFUSED_LIMIT]++;
	else    /* the broker waits for this before it accepts the next VMM */
		muxer->owe_vmm_detached = true;
	log_ratelimited(&muxer->conn_log, LOG_LEVEL_WARN,
			"%s refused: out of file descriptors (RLIMIT_NOFILE)",
			envelope->body_case == VSOCKMUX__IPC__ENVELOPE__BODY_HOST_STREAM
			? "host client" : "vhost-user frontend");
}

void muxer_handle_channel(struct muxer *muxer)
{
	/* a bounded number per wake-up, so the data path keeps its turn */
	for (unsigned handled = 0; handled < 64 && muxer->running; handled++) {
		IpcEnvelope *envelope = NULL;
		const struct ipc_route *route;
		enum ipc_route_status status;
		int handler_result = 0;
		int fd = -1;
		int result = ipc_receive(muxer->channel_fd, &envelope, &fd);

		if (result == -EAGAIN)
			return;
		if (result == 0) {
			log_info("broker closed the channel; exiting");
			stop_muxer(muxer, 0);
			return;
		}
		if (result < 0) {
			stop_muxer(muxer, 1);
			return;
		}
		route = ipc_route_find(muxer_routes, MUXER_ROUTE_COUNT, envelope->body_case);
		if (route && fd == IPC_FD_LOST && route->fd_rule != IPC_FD_FORBIDDEN) {
			fd_lost(muxer, envelope);
			ipc_free(envelope);
			continue;
		}
		status = ipc_route_dispatch(muxer_routes, MUXER_ROUTE_COUNT, muxer,
					    envelope, fd, &handler_result);
		if (status != IPC_ROUTE_HANDLED) {
			log_error("broker sent %s %s; stopping",
				  ipc_body_name(envelope->body_case),
				  status == IPC_ROUTE_WRONG_FD ? "with a wrong fd attachment"
							       : "which the muxer does not accept");
			if (fd >= 0)
				close(fd);
			ipc_free(envelope);
			stop_muxer(muxer, 1);
			return;
		}
		ipc_free(envelope);
	}
}
