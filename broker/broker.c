/*
 * broker.c - the broker's event loop and its dispatch table for messages
 * from the muxer.
 *
 * Owns: accepting vhost-user frontends (one at a time) and host clients and
 * handing them to the muxer; connecting to "<uds-path>_<port>" on the
 * muxer's request; watching the muxer process; SIGTERM/SIGINT.
 *
 * Never: blocks (every socket is non-blocking, every send MSG_DONTWAIT),
 * trusts a message from the muxer beyond what muxer_handlers[] allows (a
 * muxer that sends anything else is treated as compromised and the broker
 * stops), connects anywhere but "<uds-path>_<port>", or keeps an fd after
 * handing it over.
 */
#include "broker.h"
#include "control.h"
#include "listener.h"
#include "service_manager.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vsockmux/ipc.h"
#include "vsockmux/ipc_routes.h"
#include "vsockmux/limits.h"
#include "vsockmux/log.h"
#include "vsockmux/tag.h"

/* What each handler tells the loop. BROKER_RUNNING is 0, so a route
 * handler's "go on" (vsockmux/ipc_routes.h) is the same value. */
enum broker_step {
	BROKER_RUNNING = 0,
	BROKER_STOP_CLEAN,     /* exit 0: SIGTERM or SIGINT */
	BROKER_STOP_FAILED,    /* exit 1: the reason is logged */
};

#define MAX_EPOLL_EVENTS 8
/* Per wakeup, so that no source can starve the others (level-triggered). */
#define MAX_MESSAGES_PER_WAKEUP 64
#define MAX_ACCEPTS_PER_WAKEUP 64
/* Out of fds or memory in accept4: stop accepting for this long. */
#define ACCEPT_PAUSE_NS 100000000L
/* ConnectReplies waiting for room in the channel. The muxer keeps at most
 * VSOCKMUX_MAX_CONNECTS_IN_FLIGHT requests open and the channel itself
 * buffers more than that, so this never fills unless the muxer misbehaves;
 * then replies are dropped (the muxer's own timeout frees the slot). */
#define MAX_QUEUED_REPLIES VSOCKMUX_MAX_CONNECTS_IN_FLIGHT

/* What an epoll event is about (epoll_event.data.u32). */
enum broker_source {
	SOURCE_CHANNEL = 1,
	SOURCE_SIGNALS,
	SOURCE_RESUME_TIMER,
	SOURCE_VHOST_USER,
	SOURCE_HOST,
	SOURCE_END_TIMER,
};

/* After the channel closes, how long to wait for the muxer's exit status
 * so that the log says how it ended (a signal, an exit code). */
#define MUXER_END_WAIT_NS 1000000000L

struct broker {
	const struct vsockmuxd_options *options;
	const struct broker_listeners *listeners;
	int channel_fd;
	pid_t muxer_pid;
	int epoll_fd;
	int signal_fd;
	int resume_timer_fd;
	int end_timer_fd;        /* armed when the channel closed */
	bool vmm_attached;       /* VmmAttach sent, no VmmDetached yet */
	bool accept_paused;      /* accept4 ran out of resources */
	bool host_paused_by_muxer; /* HostAcceptControl: at its handshake cap */
	int pending_host_fd;     /* accepted client the full channel could not
				    take yet; host accepts wait for it */
	bool vhost_user_polled;  /* listener is in the epoll set */
	bool host_polled;
	bool channel_writable_wanted; /* EPOLLOUT on the channel */
	struct control_server control;

	/* ConnectReplies the channel had no room for, in order */
	struct queued_reply {
		uint32_t request_id;
		int32_t error;
		int fd;
	} queued_replies[MAX_QUEUED_REPLIES];
	unsigned queued_head, queued_count;

	struct log_ratelimit accept_log;  /* accept4 failures */
	struct log_ratelimit send_log;    /* hand-overs the muxer did not get */
	struct log_ratelimit policy_log;  /* connects --allow-guest-ports forbids */
};


/* ---- epoll helpers ---------------------------------------------------- */

static int epoll_add(int epoll_fd, int fd, enum broker_source source)
{
	struct epoll_event event = { .events = EPOLLIN,
				     .data.u64 = tag_encode(source, 0, 0) };

	return epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &event);
}

/* Add or remove one listener so that it is polled iff wanted. */
static int set_polled(struct broker *broker, int fd, enum broker_source source,
		      bool *polled, bool wanted)
{
	int result = 0;

	if (*polled == wanted)
		goto out;
	if (wanted)
		result = epoll_add(broker->epoll_fd, fd, source);
	else
		result = epoll_ctl(broker->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
	if (result < 0) {
		log_error("epoll_ctl on listener: %s", strerror(errno));
		goto out;
	}
	*polled = wanted;
out:
	return result;
}

/*
 * Poll the vhost-user listener only while no VMM is attached (the next
 * frontend waits in the kernel backlog meanwhile), and neither listener
 * while accepting is paused. Returns BROKER_RUNNING or how to stop.
 */
static enum broker_step update_listener_polling(struct broker *broker)
{
	bool want_vhost_user = !broker->vmm_attached && !broker->accept_paused;
	/* Clients not accepted wait in the listen backlog, as the kernel
	 * intends; an accepted one is never closed without a word. */
	bool want_host = !broker->accept_paused && !broker->host_paused_by_muxer &&
			 broker->pending_host_fd < 0;

	if (set_polled(broker, broker->listeners->vhost_user_fd,
		       SOURCE_VHOST_USER, &broker->vhost_user_polled,
		       want_vhost_user) < 0 ||
	    set_polled(broker, broker->listeners->host_fd, SOURCE_HOST,
		       &broker->host_polled, want_host) < 0)
		return BROKER_STOP_FAILED;
	return BROKER_RUNNING;
}

/* ---- sending to the muxer --------------------------------------------- */

/*
 * Send one envelope with fd (if >= 0), then close our copy of fd whatever
 * happened: on failure the client simply sees its connection closed.
 * Returns true if the muxer got it.
 */
static bool send_to_muxer(struct broker *broker, IpcEnvelope *envelope, int fd)
{
	int error = ipc_send(broker->channel_fd, envelope, fd);

	if (error < 0)
		log_ratelimited(&broker->send_log, LOG_LEVEL_WARN,
				"cannot send %s to the muxer: %s; dropping it",
				ipc_body_name(envelope->body_case),
				strerror(-error));
	if (fd >= 0)
		close(fd);
	return error == 0;
}

/* ---- muxer process ---------------------------------------------------- */

/* Reap the muxer if it has ended. Returns BROKER_RUNNING or BROKER_STOP_FAILED. */
static enum broker_step check_muxer(struct broker *broker)
{
	int status;
	pid_t pid;

	do {
		pid = waitpid(broker->muxer_pid, &status, WNOHANG);
	} while (pid < 0 && errno == EINTR);
	if (pid == 0)
		return BROKER_RUNNING;
	if (pid < 0) {
		log_error("waitpid for muxer (pid %d): %s", (int)broker->muxer_pid,
			  strerror(errno));
		return BROKER_STOP_FAILED;
	}
	if (WIFEXITED(status)) {
		log_error("muxer (pid %d) exited with code %d",
			  (int)broker->muxer_pid, WEXITSTATUS(status));
		return BROKER_STOP_FAILED;
	}
	if (WIFSIGNALED(status)) {
		log_error("muxer (pid %d) killed by signal %d (%s)%s",
			  (int)broker->muxer_pid, WTERMSIG(status),
			  strsignal(WTERMSIG(status)),
			  WCOREDUMP(status) ? ", core dumped" : "");
		return BROKER_STOP_FAILED;
	}
	return BROKER_RUNNING;
}

static enum broker_step handle_signals(struct broker *broker)
{
	struct signalfd_siginfo info;
	ssize_t length;
	enum broker_step result = BROKER_RUNNING;

	while (result == BROKER_RUNNING) {
		length = read(broker->signal_fd, &info, sizeof(info));
		if (length < 0 && errno == EINTR)
			continue;
		if (length < 0 && errno == EAGAIN)
			break;
		if (length != (ssize_t)sizeof(info)) {
			log_error("read signalfd: %s",
				  length < 0 ? strerror(errno) : "short read");
			result = BROKER_STOP_FAILED;
			break;
		}
		switch (info.ssi_signo) {
		case SIGCHLD:
			result = check_muxer(broker);
			break;
		case SIGTERM:
		case SIGINT:
			log_info("received %s, stopping",
				 info.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
			service_manager_stopping();
			if (kill(broker->muxer_pid, SIGTERM) < 0 && errno != ESRCH)
				log_warn("kill muxer (pid %d): %s",
					 (int)broker->muxer_pid, strerror(errno));
			result = BROKER_STOP_CLEAN;
			break;
		default:
			break;
		}
	}
	return result;
}

/* ---- listeners -------------------------------------------------------- */

/*
 * A failed accept4. Transient errors are retried on the next wakeup;
 * anything else (out of fds or memory, mostly) pauses both listeners for a
 * moment instead of spinning on a level-triggered readable listener.
 */
static enum broker_step handle_accept_error(struct broker *broker, const char *what,
			       int error)
{
	struct itimerspec pause = { .it_value.tv_nsec = ACCEPT_PAUSE_NS };

	if (error == EAGAIN || error == EINTR || error == ECONNABORTED)
		return BROKER_RUNNING;
	log_ratelimited(&broker->accept_log, LOG_LEVEL_WARN,
			"accept on %s: %s; pausing accepts", what,
			strerror(error));
	if (timerfd_settime(broker->resume_timer_fd, 0, &pause, NULL) < 0) {
		log_error("timerfd_settime: %s", strerror(errno));
		return BROKER_STOP_FAILED;
	}
	broker->accept_paused = true;
	return update_listener_polling(broker);
}

static enum broker_step handle_resume_timer(struct broker *broker)
{
	uint64_t expirations;

	if (read(broker->resume_timer_fd, &expirations, sizeof(expirations)) < 0 &&
	    errno != EAGAIN && errno != EINTR) {
		log_error("read timerfd: %s", strerror(errno));
		return BROKER_STOP_FAILED;
	}
	broker->accept_paused = false;
	return update_listener_polling(broker);
}

/* ---- ConnectReplies: never dropped while the channel is merely full --- */

static void set_channel_writable_interest(struct broker *broker, bool wanted)
{
	struct epoll_event event = {
		.events = EPOLLIN | (wanted ? EPOLLOUT : 0),
		.data.u64 = tag_encode(SOURCE_CHANNEL, 0, 0),
	};
	if (broker->channel_writable_wanted == wanted)
		return;
	if (epoll_ctl(broker->epoll_fd, EPOLL_CTL_MOD, broker->channel_fd, &event) < 0) {
		log_error("epoll_ctl(channel): %s", strerror(errno));
		return;
	}
	broker->channel_writable_wanted = wanted;
}

/* Try to send one reply. 0 sent, -EAGAIN channel full, other: failed. */
static int send_connect_reply(struct broker *broker, uint32_t request_id,
			      int32_t error, int fd)
{
	Vsockmux__Ipc__ConnectReply reply = VSOCKMUX__IPC__CONNECT_REPLY__INIT;
	IpcEnvelope answer = VSOCKMUX__IPC__ENVELOPE__INIT;

	reply.request_id = request_id;
	reply.error = error;
	answer.body_case = VSOCKMUX__IPC__ENVELOPE__BODY_CONNECT_REPLY;
	answer.connect_reply = &reply;
	return ipc_send(broker->channel_fd, &answer, fd);
}

static int send_host_stream(struct broker *broker, int fd)
{
	Vsockmux__Ipc__HostStream stream = VSOCKMUX__IPC__HOST_STREAM__INIT;
	IpcEnvelope envelope = VSOCKMUX__IPC__ENVELOPE__INIT;

	envelope.body_case = VSOCKMUX__IPC__ENVELOPE__BODY_HOST_STREAM;
	envelope.host_stream = &stream;
	return ipc_send(broker->channel_fd, &envelope, fd);
}

/* Hand the waiting host client over if the channel has room now.
 * Returns true when nothing waits any more. */
static bool flush_pending_host(struct broker *broker)
{
	int result;

	if (broker->pending_host_fd < 0)
		return true;
	result = send_host_stream(broker, broker->pending_host_fd);
	if (result == -EAGAIN)
		return false;
	if (result < 0)
		log_ratelimited(&broker->send_log, LOG_LEVEL_WARN,
				"cannot hand a host client to the muxer: %s; closing it",
				strerror(-result));
	close(broker->pending_host_fd);
	broker->pending_host_fd = -1;
	(void)update_listener_polling(broker);
	return true;
}

/* Send queued replies in order while the channel takes them. */
static void flush_queued_replies(struct broker *broker)
{
	while (broker->queued_count > 0) {
		struct queued_reply *queued = &broker->queued_replies[broker->queued_head];
		int result = send_connect_reply(broker, queued->request_id,
						queued->error, queued->fd);
		if (result == -EAGAIN)
			break;
		if (result < 0)
			log_ratelimited(&broker->send_log, LOG_LEVEL_WARN,
					"cannot send ConnectReply to the muxer: %s; dropping it",
					strerror(-result));
		if (queued->fd >= 0)
			close(queued->fd);
		broker->queued_head = (broker->queued_head + 1) % MAX_QUEUED_REPLIES;
		broker->queued_count--;
	}
	set_channel_writable_interest(broker, broker->queued_count > 0 ||
				      !flush_pending_host(broker));
}

/* Reply now, or queue the reply (keeping fd open) until the channel has
 * room. Takes ownership of fd. */
static void reply_to_connect(struct broker *broker, uint32_t request_id,
			     int32_t error, int fd)
{
	unsigned tail;
	int result = -EAGAIN;

	if (broker->queued_count == 0)
		result = send_connect_reply(broker, request_id, error, fd);
	if (result == 0 || (result != -EAGAIN)) {
		if (result < 0)
			log_ratelimited(&broker->send_log, LOG_LEVEL_WARN,
					"cannot send ConnectReply to the muxer: %s; dropping it",
					strerror(-result));
		if (fd >= 0)
			close(fd);
		return;
	}
	if (broker->queued_count == MAX_QUEUED_REPLIES) {
		log_ratelimited(&broker->send_log, LOG_LEVEL_WARN,
				"%u ConnectReplies already queued for the muxer; dropping one",
				MAX_QUEUED_REPLIES);
		if (fd >= 0)
			close(fd);
		return;
	}
	tail = (broker->queued_head + broker->queued_count) % MAX_QUEUED_REPLIES;
	broker->queued_replies[tail] = (struct queued_reply){ request_id, error, fd };
	broker->queued_count++;
	set_channel_writable_interest(broker, true);
}

/* One frontend at a time: accept it, hand it over, stop listening. */
static enum broker_step handle_vhost_user_listener(struct broker *broker)
{
	Vsockmux__Ipc__VmmAttach attach = VSOCKMUX__IPC__VMM_ATTACH__INIT;
	IpcEnvelope envelope = VSOCKMUX__IPC__ENVELOPE__INIT;
	int fd;

	if (broker->vmm_attached || !broker->vhost_user_polled)
		return BROKER_RUNNING;   /* stale event */
	fd = accept4(broker->listeners->vhost_user_fd, NULL, NULL,
		     SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return handle_accept_error(broker, "vhost-user socket", errno);

	envelope.body_case = VSOCKMUX__IPC__ENVELOPE__BODY_VMM_ATTACH;
	envelope.vmm_attach = &attach;
	if (!send_to_muxer(broker, &envelope, fd))
		return BROKER_RUNNING;   /* frontend sees a close; keep listening */
	log_info("vhost-user frontend connected; handed to the muxer");
	broker->vmm_attached = true;
	service_manager_vmm(true, broker->options->socket_path);
	return update_listener_polling(broker);
}

/* Hand every waiting host client to the muxer, which reads its CONNECT.
 * When the channel is full the client just accepted waits for room, and
 * accepting stops until it is handed over. */
static enum broker_step handle_host_listener(struct broker *broker)
{
	enum broker_step result = BROKER_RUNNING;

	for (int i = 0; i < MAX_ACCEPTS_PER_WAKEUP && broker->host_polled; i++) {
		int sent;
		int fd = accept4(broker->listeners->host_fd, NULL, NULL,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			result = handle_accept_error(broker, "host socket", errno);
			break;
		}
		sent = send_host_stream(broker, fd);
		if (sent == -EAGAIN) {
			broker->pending_host_fd = fd;
			set_channel_writable_interest(broker, true);
			result = update_listener_polling(broker);
			break;
		}
		if (sent < 0)
			log_ratelimited(&broker->send_log, LOG_LEVEL_WARN,
					"cannot hand a host client to the muxer: %s; "
					"closing it", strerror(-sent));
		close(fd);
	}
	return result;
}

/* ---- muxer -> broker messages ----------------------------------------- */

static int handle_vmm_detached(void *context, const IpcEnvelope *envelope, int fd)
{
	struct broker *broker = context;

	(void)fd;
	(void)envelope;
	if (!broker->vmm_attached) {
		log_error("muxer sent VmmDetached while no VMM is attached");
		return BROKER_STOP_FAILED;
	}
	log_info("vhost-user frontend detached; accepting the next one");
	broker->vmm_attached = false;
	service_manager_vmm(false, broker->options->socket_path);
	return update_listener_polling(broker);
}

/*
 * Connect to "<uds-path>_<port>". Returns the connected fd, or -1 with
 * *error set to a positive errno. AF_UNIX connects complete at once:
 * EAGAIN means the listener's backlog is full, ECONNREFUSED/ENOENT that
 * nobody listens.
 */
static int connect_to_port(const struct broker *broker, uint32_t port,
			   int *error)
{
	struct sockaddr_un address;
	char path[sizeof(address.sun_path)];
	socklen_t address_length;
	int stream_fd = -1;
	int result = -1;
	int length;

	length = snprintf(path, sizeof(path), "%s_%" PRIu32,
			  broker->options->uds_path, port);
	if (length < 0 || (size_t)length >= sizeof(path)) {
		*error = ENAMETOOLONG;
		goto out;
	}
	*error = -unix_address_from_path(&address, &address_length, path);
	if (*error != 0)
		goto out;
	stream_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (stream_fd < 0) {
		*error = errno;
		goto out;
	}
	if (connect(stream_fd, (const struct sockaddr *)&address,
		    address_length) < 0) {
		/* EINPROGRESS is not expected for AF_UNIX; an error too. */
		*error = errno;
		goto out;
	}
	result = stream_fd;
	stream_fd = -1;
out:
	if (stream_fd >= 0)
		close(stream_fd);
	return result;
}

static int handle_connect_request(void *context, const IpcEnvelope *envelope,
				  int attached_fd)
{
	struct broker *broker = context;
	const Vsockmux__Ipc__ConnectRequest *request = envelope->connect_request;
	int error = 0;
	int fd;

	(void)attached_fd;
	/* The muxer filters these out already; the broker holds the privilege,
	 * so it checks again and never trusts the muxer's word. */
	if (!port_list_allows(&broker->options->allow_guest_ports, request->port)) {
		log_ratelimited(&broker->policy_log, LOG_LEVEL_WARN,
				"muxer asked for a connect to port %" PRIu32
				", which --allow-guest-ports forbids; refused", request->port);
		reply_to_connect(broker, request->request_id, IPC_CONNECT_NOT_ALLOWED, -1);
		return BROKER_RUNNING;
	}
	fd = connect_to_port(broker, request->port, &error);
	log_debug("connect request %" PRIu32 " to %s_%" PRIu32 ": %s",
		  request->request_id, broker->options->uds_path, request->port,
		  fd >= 0 ? "connected" : strerror(error));

	reply_to_connect(broker, request->request_id, fd >= 0 ? 0 : error, fd);
	return BROKER_RUNNING;
}

static int handle_host_accept_control(void *context, const IpcEnvelope *envelope,
				      int fd)
{
	struct broker *broker = context;
	bool paused = envelope->host_accept_control->paused;

	(void)fd;
	if (paused != broker->host_paused_by_muxer)
		log_info("%s host clients: the muxer %s", paused ? "pausing" : "resuming",
			 paused ? "has too many CONNECT lines in progress"
				: "has room again");
	broker->host_paused_by_muxer = paused;
	return update_listener_polling(broker);
}

static int handle_stats_reply(void *context, const IpcEnvelope *envelope, int fd)
{
	struct broker *broker = context;

	(void)fd;
	/* a malformed reply is logged and answered to the client as an error */
	(void)control_handle_stats_reply(&broker->control, envelope->stats_reply);
	return BROKER_RUNNING;
}

/*
 * Everything the muxer may ask of the broker. Muxer->broker messages never
 * carry fds. A body not listed here (VmmAttach, HostStream, ConnectReply
 * travel the other way) means the muxer is compromised or broken.
 */
static const struct ipc_route broker_routes[] = {
	{ VSOCKMUX__IPC__ENVELOPE__BODY_VMM_DETACHED, IPC_FD_FORBIDDEN, handle_vmm_detached },
	{ VSOCKMUX__IPC__ENVELOPE__BODY_CONNECT_REQUEST, IPC_FD_FORBIDDEN,
	  handle_connect_request },
	{ VSOCKMUX__IPC__ENVELOPE__BODY_STATS_REPLY, IPC_FD_FORBIDDEN, handle_stats_reply },
	{ VSOCKMUX__IPC__ENVELOPE__BODY_HOST_ACCEPT_CONTROL, IPC_FD_FORBIDDEN,
	  handle_host_accept_control },
};

/* Check one received message against broker_routes[] and run it. */
static enum broker_step dispatch_muxer_message(struct broker *broker,
					       const IpcEnvelope *envelope, int fd)
{
	int result = BROKER_STOP_FAILED;

	switch (ipc_route_dispatch(broker_routes, sizeof(broker_routes) /
				   sizeof(broker_routes[0]), broker, envelope, fd,
				   &result)) {
	case IPC_ROUTE_HANDLED:
		break;
	case IPC_ROUTE_NOT_ACCEPTED:
		log_error("muxer sent unexpected %s message; stopping",
			  ipc_body_name(envelope->body_case));
		break;
	case IPC_ROUTE_WRONG_FD:
		log_error("muxer sent %s with an fd attached; stopping",
			  ipc_body_name(envelope->body_case));
		break;
	}
	/* No muxer->broker message keeps an fd. */
	if (fd >= 0)
		close(fd);
	return (enum broker_step)result;
}

/*
 * The muxer closed the channel: it is exiting or dead. Report how it ended
 * as soon as SIGCHLD says (check_muxer logs a signal or an exit code);
 * if it has not ended within MUXER_END_WAIT_NS, say what we know.
 */
static enum broker_step channel_closed(struct broker *broker)
{
	struct itimerspec wait = { .it_value.tv_nsec = MUXER_END_WAIT_NS % 1000000000L,
				   .it_value.tv_sec = MUXER_END_WAIT_NS / 1000000000L };
	enum broker_step result = check_muxer(broker);

	if (result != BROKER_RUNNING)
		return result;
	if (epoll_ctl(broker->epoll_fd, EPOLL_CTL_DEL, broker->channel_fd, NULL) < 0 ||
	    timerfd_settime(broker->end_timer_fd, 0, &wait, NULL) < 0) {
		log_error("muxer closed the channel; stopping");
		return BROKER_STOP_FAILED;
	}
	return BROKER_RUNNING;
}

static enum broker_step handle_end_timer(struct broker *broker)
{
	enum broker_step result = check_muxer(broker);

	if (result != BROKER_RUNNING)
		return result;
	log_error("muxer (pid %d) closed the channel and has not exited; stopping",
		  (int)broker->muxer_pid);
	return BROKER_STOP_FAILED;
}

static enum broker_step handle_channel(struct broker *broker, uint32_t events)
{
	enum broker_step result = BROKER_RUNNING;

	if (events & EPOLLOUT)
		flush_queued_replies(broker);
	if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return result;
	for (int i = 0; i < MAX_MESSAGES_PER_WAKEUP && result == BROKER_RUNNING; i++) {
		IpcEnvelope *envelope;
		int fd;
		int received = ipc_receive(broker->channel_fd, &envelope, &fd);

		if (received == -EAGAIN && !(events & (EPOLLHUP | EPOLLERR)))
			break;
		if (received == 0 || received == -EAGAIN) {
			result = channel_closed(broker);
			break;
		}
		if (received < 0) {
			/* -EPROTO: the reason is logged by ipc_receive. */
			log_error("channel from muxer: %s; stopping",
				  strerror(-received));
			result = BROKER_STOP_FAILED;
			break;
		}
		result = dispatch_muxer_message(broker, envelope, fd);
		ipc_free(envelope);
	}
	return result;
}

/* ---- main loop -------------------------------------------------------- */

static enum broker_step handle_event(struct broker *broker, const struct epoll_event *event)
{
	struct tag tag = tag_decode(event->data.u64);

	switch (tag.kind) {
	case CONTROL_SOURCE_LISTENER:
		control_handle_listener(&broker->control);
		return BROKER_RUNNING;
	case CONTROL_SOURCE_CLIENT:
		control_handle_client(&broker->control, tag.slot, tag.generation,
				      event->events);
		return BROKER_RUNNING;
	case CONTROL_SOURCE_TIMER:
		control_handle_timer(&broker->control);
		return BROKER_RUNNING;
	case SOURCE_CHANNEL:
		return handle_channel(broker, event->events);
	case SOURCE_SIGNALS:
		return handle_signals(broker);
	case SOURCE_RESUME_TIMER:
		return handle_resume_timer(broker);
	case SOURCE_VHOST_USER:
		return handle_vhost_user_listener(broker);
	case SOURCE_HOST:
		return handle_host_listener(broker);
	case SOURCE_END_TIMER:
		return handle_end_timer(broker);
	default:
		log_error("epoll: unknown source %" PRIu32, tag.kind);
		return BROKER_STOP_FAILED;
	}
}

/* Signals, fds and epoll set. Returns BROKER_RUNNING or BROKER_STOP_FAILED (logged). */
static enum broker_step broker_setup(struct broker *broker)
{
	sigset_t mask;

	if (prctl(PR_SET_NAME, "vsockmux-broker", 0, 0, 0) < 0)
		log_warn("prctl(PR_SET_NAME): %s", strerror(errno));
	signal(SIGPIPE, SIG_IGN);
	/* An inherited SIG_IGN would auto-reap the muxer and hide its status. */
	signal(SIGCHLD, SIG_DFL);

	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0) {
		log_error("sigprocmask: %s", strerror(errno));
		return BROKER_STOP_FAILED;
	}
	broker->signal_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (broker->signal_fd < 0) {
		log_error("signalfd: %s", strerror(errno));
		return BROKER_STOP_FAILED;
	}
	broker->resume_timer_fd = timerfd_create(CLOCK_MONOTONIC,
						 TFD_NONBLOCK | TFD_CLOEXEC);
	if (broker->resume_timer_fd < 0) {
		log_error("timerfd_create: %s", strerror(errno));
		return BROKER_STOP_FAILED;
	}
	broker->end_timer_fd = timerfd_create(CLOCK_MONOTONIC,
					      TFD_NONBLOCK | TFD_CLOEXEC);
	if (broker->end_timer_fd < 0) {
		log_error("timerfd_create: %s", strerror(errno));
		return BROKER_STOP_FAILED;
	}
	broker->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (broker->epoll_fd < 0) {
		log_error("epoll_create1: %s", strerror(errno));
		return BROKER_STOP_FAILED;
	}
	if (epoll_add(broker->epoll_fd, broker->channel_fd, SOURCE_CHANNEL) < 0 ||
	    epoll_add(broker->epoll_fd, broker->signal_fd, SOURCE_SIGNALS) < 0 ||
	    epoll_add(broker->epoll_fd, broker->resume_timer_fd,
		      SOURCE_RESUME_TIMER) < 0 ||
	    epoll_add(broker->epoll_fd, broker->end_timer_fd, SOURCE_END_TIMER) < 0) {
		log_error("epoll_ctl: %s", strerror(errno));
		return BROKER_STOP_FAILED;
	}
	if (control_server_init(&broker->control, broker->listeners->control_fd,
				broker->epoll_fd, broker->channel_fd) < 0)
		return BROKER_STOP_FAILED;
	return update_listener_polling(broker);
}

int broker_run(const struct vsockmuxd_options *options,
	       struct broker_listeners *listeners, int channel_fd,
	       pid_t muxer_pid, int (*lock_down)(void *opaque), void *opaque)
{
	struct broker broker = {
		.options = options,
		.listeners = listeners,
		.channel_fd = channel_fd,
		.muxer_pid = muxer_pid,
		.epoll_fd = -1,
		.signal_fd = -1,
		.resume_timer_fd = -1,
		.end_timer_fd = -1,
		.pending_host_fd = -1,
	};
	struct epoll_event events[MAX_EPOLL_EVENTS];
	enum broker_step result = BROKER_STOP_FAILED;

	log_set_role("broker");
	/* kill(0 or -1, ...) would hit far more than the muxer. */
	if (muxer_pid <= 0 || channel_fd < 0 || listeners->vhost_user_fd < 0 ||
	    listeners->host_fd < 0) {
		log_error("broker_run: invalid arguments (muxer pid %d, channel %d)",
			  (int)muxer_pid, channel_fd);
		goto out;
	}
	result = broker_setup(&broker);
	if (result != BROKER_RUNNING)
		goto out;
	/* every listener is up: a VMM may connect (before the filter: the
	 * first notification is the one a Type=notify start waits for) */
	service_manager_ready(options->socket_path);
	if (lock_down && lock_down(opaque) != 0) {
		result = BROKER_STOP_FAILED;
		goto out;
	}
	log_info("ready: vhost-user socket %s, host socket %s",
		 options->socket_path, options->uds_path);
	/* It may have died before SIGCHLD was blocked and routed to us. */
	result = check_muxer(&broker);

	while (result == BROKER_RUNNING) {
		int count = epoll_wait(broker.epoll_fd, events, MAX_EPOLL_EVENTS, -1);

		if (count < 0) {
			if (errno == EINTR)
				continue;
			log_error("epoll_wait: %s", strerror(errno));
			result = BROKER_STOP_FAILED;
			break;
		}
		for (int i = 0; i < count && result == BROKER_RUNNING; i++)
			result = handle_event(&broker, &events[i]);
	}
out:
	control_server_destroy(&broker.control);
	for (; broker.queued_count > 0; broker.queued_count--) {
		int fd = broker.queued_replies[broker.queued_head].fd;
		if (fd >= 0)
			close(fd);
		broker.queued_head = (broker.queued_head + 1) % MAX_QUEUED_REPLIES;
	}
	if (broker.epoll_fd >= 0)
		close(broker.epoll_fd);
	if (broker.signal_fd >= 0)
		close(broker.signal_fd);
	if (broker.resume_timer_fd >= 0)
		close(broker.resume_timer_fd);
	if (broker.end_timer_fd >= 0)
		close(broker.end_timer_fd);
	if (broker.pending_host_fd >= 0)
		close(broker.pending_host_fd);
	if (channel_fd >= 0)
		close(channel_fd);
	return result == BROKER_STOP_CLEAN ? 0 : 1;
}
