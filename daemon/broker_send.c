/*
 * broker_send.c - envelopes from the muxer to the broker (broker_send.h).
 */
#include "broker_send.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>

#include "events.h"
#include "muxer.h"

#include "vsockmux/ipc.h"
#include "vsockmux/log.h"

int broker_send_connect_request(int channel_fd, uint32_t request_id, uint32_t port)
{
	Vsockmux__Ipc__Envelope envelope = VSOCKMUX__IPC__ENVELOPE__INIT;
	Vsockmux__Ipc__ConnectRequest request = VSOCKMUX__IPC__CONNECT_REQUEST__INIT;
	int result;

	request.request_id = request_id;
	request.port = port;
	envelope.body_case = VSOCKMUX__IPC__ENVELOPE__BODY_CONNECT_REQUEST;
	envelope.connect_request = &request;
	result = ipc_send(channel_fd, &envelope, -1);
	if (result < 0)
		log_warn("connect request for port %u not sent to the broker: %s",
			 port, strerror(-result));
	return result;
}

int broker_send_vmm_detached(int channel_fd)
{
	Vsockmux__Ipc__Envelope envelope = VSOCKMUX__IPC__ENVELOPE__INIT;
	Vsockmux__Ipc__VmmDetached detached = VSOCKMUX__IPC__VMM_DETACHED__INIT;

	envelope.body_case = VSOCKMUX__IPC__ENVELOPE__BODY_VMM_DETACHED;
	envelope.vmm_detached = &detached;
	return ipc_send(channel_fd, &envelope, -1);
}

int broker_send_host_accept_control(int channel_fd, bool paused)
{
	Vsockmux__Ipc__Envelope envelope = VSOCKMUX__IPC__ENVELOPE__INIT;
	Vsockmux__Ipc__HostAcceptControl control = VSOCKMUX__IPC__HOST_ACCEPT_CONTROL__INIT;

	control.paused = paused;
	envelope.body_case = VSOCKMUX__IPC__ENVELOPE__BODY_HOST_ACCEPT_CONTROL;
	envelope.host_accept_control = &control;
	return ipc_send(channel_fd, &envelope, -1);
}

/* -EAGAIN: wait for the channel to drain; other errors stop the muxer. */
static bool sent_or_waiting(struct muxer *muxer, int result, const char *what)
{
	if (result == 0)
		return true;
	if (result != -EAGAIN) {
		log_error("cannot tell the broker %s: %s; exiting", what, strerror(-result));
		muxer->running = false;
		muxer->exit_code = 1;
		return false;
	}
	if (!muxer->channel_out_armed &&
	    events_modify(muxer->epoll_fd, muxer->channel_fd, EPOLLIN | EPOLLOUT,
			  tag_encode(EVENT_CHANNEL, 0, 0)) == 0)
		muxer->channel_out_armed = true;
	return false;
}

void broker_send_owed(struct muxer *muxer)
{
	if (muxer->owe_vmm_detached) {
		/* without it the broker never accepts another frontend */
		if (!sent_or_waiting(muxer, broker_send_vmm_detached(muxer->channel_fd),
				     "that the frontend left"))
			return;
		muxer->owe_vmm_detached = false;
	}
	if (muxer->host_accept_told != muxer->host_accept_paused) {
		bool paused = muxer->host_accept_paused;
		if (!sent_or_waiting(muxer, broker_send_host_accept_control(muxer->channel_fd,
									    paused),
				     paused ? "to pause accepting" : "to resume accepting"))
			return;
		muxer->host_accept_told = paused;
	}
	if (muxer->channel_out_armed &&
	    events_modify(muxer->epoll_fd, muxer->channel_fd, EPOLLIN,
			  tag_encode(EVENT_CHANNEL, 0, 0)) == 0)
		muxer->channel_out_armed = false;
}
