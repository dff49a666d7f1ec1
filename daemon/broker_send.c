/*
 * broker_send.c - envelopes from the muxer to the broker (broker_send.h).
 */
#include "broker_send.h"

#include <string.h>

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
