/*
 * sys_harness.c - the core of the system-test harness (sys_harness.h):
 * time and the per-test deadline, the guests (create, vhost-user set-up,
 * drop, their health checks), and the one poll loop (sys_pump) that moves
 * guests, host connections, listeners and streams.
 *
 * Owns: h->guests, h->pollfds. Never: sleeps to wait for something; a
 * wait is a poll() bounded by the test deadline.
 */
#include "sys_harness_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

/* ------------------------------------------------------------------ */
/* time */

uint64_t sys_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t sys_wait_end(struct sys_harness *h, int timeout_ms)
{
	uint64_t end = sys_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	if (h->deadline_ns && end > h->deadline_ns && !h->in_teardown)
		end = h->deadline_ns;
	return end;
}

int sys_ms_until(uint64_t end_ns)
{
	uint64_t now = sys_now_ns();
	if (now >= end_ns)
		return 0;
	return (int)((end_ns - now + 999999ull) / 1000000ull);
}

double sys_mib_per_s(uint64_t bytes, uint64_t ns)
{
	if (ns == 0)
		ns = 1;
	return ((double)bytes / (1024.0 * 1024.0)) / ((double)ns / 1e9);
}


bool sys_rate_checks(void)
{
	return getenv("VSOCKMUX_SYSTEM_NO_RATE_CHECKS") == NULL;
}

/* ------------------------------------------------------------------ */
/* guests */

struct vguest *sys_guest_new(struct sys_harness *h,
			     const struct vguest_options *options)
{
	struct vguest_options defaults;
	struct vguest *vg;
	int slot = -1;

	for (int i = 0; i < SYS_MAX_GUESTS; i++)
		if (!h->guests[i]) {
			slot = i;
			break;
		}
	CHECKF(slot >= 0, "too many guests");
	if (!options) {
		vguest_options_default(&defaults);
		defaults.guest_cid = h->guest_cid;
		options = &defaults;
	}
	vg = vguest_create(options);
	CHECKF(vg, "vguest_create: %s", strerror(errno));
	h->guests[slot] = vg;
	if (!h->vg)
		h->vg = vg;
	if (vguest_connect(vg, h->vhost_path) != 0)
		FAIL("vhost-user set-up failed: %s", vguest_error(vg));
	return vg;
}

void sys_guest_drop(struct sys_harness *h, struct vguest *vg)
{
	struct guest_stream **link = &h->streams;
	while (*link) {
		struct guest_stream *gs = *link;
		if (gs->sock->vg == vg) {
			*link = gs->next;
			free(gs);
		} else {
			link = &gs->next;
		}
	}
	for (int i = 0; i < SYS_MAX_GUESTS; i++)
		if (h->guests[i] == vg)
			h->guests[i] = NULL;
	if (h->vg == vg)
		h->vg = NULL;
	vguest_destroy(vg);
}

int sys_unix_connect(const char *path)
{
	struct sockaddr_un address = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	CHECK(fd >= 0);
	snprintf(address.sun_path, sizeof(address.sun_path), "%s", path);
	CHECKF(connect(fd, (struct sockaddr *)&address, sizeof(address)) == 0,
	       "connect %s: %s", path, strerror(errno));
	return fd;
}

int sys_vhost_connect_raw(struct sys_harness *h)
{
	return sys_unix_connect(h->vhost_path);
}

void sys_setup(struct sys_harness *h)
{
	sys_start_daemon(h, NULL);
	(void)sys_guest_new(h, NULL);
}

void sys_print_guest_stats(const struct vguest *vg)
{
	const struct vguest_stats *s = vguest_get_stats(vg);
	fprintf(stderr,
		"vguest stats: rx pkts REQ %" PRIu64 " RESP %" PRIu64 " RST %" PRIu64
		" SHUT %" PRIu64 " RW %" PRIu64 " CUPD %" PRIu64 " CREQ %" PRIu64
		" | tx pkts REQ %" PRIu64 " RESP %" PRIu64 " RST %" PRIu64
		" SHUT %" PRIu64 " RW %" PRIu64 " CUPD %" PRIu64
		" | rx bytes %" PRIu64 " tx bytes %" PRIu64
		" | protocol errors %" PRIu64 " credit violations %" PRIu64
		" unknown-socket %" PRIu64 " | irq rx %" PRIu64 " tx %" PRIu64
		" stale %" PRIu64 " early %" PRIu64 " err %" PRIu64 " | kicks %" PRIu64
		" suppressed %" PRIu64 " ring-full %" PRIu64 "\n",
		s->rx_packets[1], s->rx_packets[2], s->rx_packets[3], s->rx_packets[4],
		s->rx_packets[5], s->rx_packets[6], s->rx_packets[7],
		s->tx_packets[1], s->tx_packets[2], s->tx_packets[3], s->tx_packets[4],
		s->tx_packets[5], s->tx_packets[6],
		s->rx_payload_bytes, s->tx_payload_bytes, s->protocol_errors,
		s->credit_violations, s->unknown_socket_packets, s->rx_interrupts,
		s->tx_interrupts, s->stale_call_signals, s->early_call_signals,
		s->err_signals, s->kicks,
		s->kicks_suppressed, s->tx_ring_full);
}

void sys_check_guest_clean(struct vguest *vg)
{
	const struct vguest_stats *s = vguest_get_stats(vg);
	CHECKF(s->protocol_errors == 0, "guest saw %" PRIu64 " protocol errors "
	       "from the daemon (see PROTOCOL ERROR lines)", s->protocol_errors);
	CHECKF(s->credit_violations == 0, "daemon exceeded the guest's credit %"
	       PRIu64 " times", s->credit_violations);
	CHECKF(s->bad_used_ids == 0 && s->rx_used_bad_length == 0 &&
	       s->tx_used_nonzero == 0, "bad used entries: ids %" PRIu64
	       " rx-len %" PRIu64 " tx-nonzero %" PRIu64, s->bad_used_ids,
	       s->rx_used_bad_length, s->tx_used_nonzero);
	CHECKF(s->err_signals == 0, "daemon signalled a vring error fd");
}

/* ------------------------------------------------------------------ */
/* the loop */

static void sys_pollfds_reserve(struct sys_harness *h, size_t needed)
{
	if (needed <= h->pollfd_capacity)
		return;
	size_t capacity = h->pollfd_capacity ? h->pollfd_capacity : 64;
	while (capacity < needed)
		capacity *= 2;
	struct pollfd *grown = realloc(h->pollfds, capacity * sizeof(*grown));
	CHECKF(grown, "out of memory");
	h->pollfds = grown;
	h->pollfd_capacity = capacity;
}

/* Push and pull every stream; true if anything moved. */
static bool sys_work(struct sys_harness *h)
{
	bool progress = false;
	for (struct guest_stream *gs = h->streams; gs; gs = gs->next)
		progress |= guest_stream_work(h, gs);
	for (struct host_conn *c = h->conns; c; c = c->next) {
		host_source_work(c);
		host_try_write(c);
	}
	return progress;
}

void sys_pump(struct sys_harness *h, int timeout_ms)
{
	size_t guest_start[SYS_MAX_GUESTS], guest_count[SYS_MAX_GUESTS];
	size_t n = 0, conn_count = 0, listener_count = 0;
	int ready;

	if (h->daemon_pid > 0 && !h->in_teardown && !h->daemon_exit_expected &&
	    !sys_daemon_alive(h))
		FAIL("the daemon exited unexpectedly (its stderr closed)");
	/* the caller re-checks its condition before we block */
	if (sys_work(h))
		timeout_ms = 0;
	for (struct host_conn *c = h->conns; c; c = c->next)
		conn_count++;
	for (struct host_listener *l = h->listeners; l; l = l->next)
		listener_count++;
	sys_pollfds_reserve(h, SYS_MAX_GUESTS * VGUEST_MAX_POLLFDS + conn_count +
				listener_count + 1);
	for (int i = 0; i < SYS_MAX_GUESTS; i++) {
		guest_start[i] = n;
		guest_count[i] = 0;
		if (h->guests[i]) {
			vguest_flush(h->guests[i]);
			guest_count[i] = vguest_fill_pollfds(h->guests[i], h->pollfds + n,
							     VGUEST_MAX_POLLFDS);
			n += guest_count[i];
		}
	}
	size_t conn_start = n;
	for (struct host_conn *c = h->conns; c; c = c->next) {
		short events = 0;
		if (c->fd >= 0 && !c->error) {
			if (!c->paused && !c->read_eof)
				events |= POLLIN;
			if (buf_len(&c->out) > 0)
				events |= POLLOUT;
		}
		h->pollfds[n].fd = events ? c->fd : -1;
		h->pollfds[n].events = events;
		h->pollfds[n].revents = 0;
		n++;
	}
	size_t listener_start = n;
	for (struct host_listener *l = h->listeners; l; l = l->next) {
		h->pollfds[n].fd = l->fd;
		h->pollfds[n].events = POLLIN;
		h->pollfds[n].revents = 0;
		n++;
	}
	if (timeout_ms < 0)
		timeout_ms = 0;
	ready = poll(h->pollfds, n, timeout_ms);
	if (ready < 0) {
		CHECKF(errno == EINTR, "poll: %s", strerror(errno));
		return;
	}
	for (int i = 0; i < SYS_MAX_GUESTS; i++)
		if (h->guests[i] && guest_count[i] > 0)
			vguest_handle_pollfds(h->guests[i], h->pollfds + guest_start[i],
					      guest_count[i]);
	size_t k = conn_start;
	for (struct host_conn *c = h->conns; c; c = c->next, k++) {
		short revents = h->pollfds[k].revents;
		if (!revents || c->fd < 0)
			continue;
		if (revents & (POLLIN | POLLHUP | POLLERR))
			host_handle_readable(h, c);
		if (revents & (POLLOUT | POLLERR))
			host_try_write(c);
	}
	k = listener_start;
	for (struct host_listener *l = h->listeners; l; l = l->next, k++)
		if (h->pollfds[k].revents)
			host_listener_accept_all(h, l);
	sys_work(h);
}

void sys_pump_for(struct sys_harness *h, int duration_ms)
{
	uint64_t end = sys_now_ns() + (uint64_t)duration_ms * 1000000ull;
	CHECKF(!h->deadline_ns || end <= h->deadline_ns,
	       "observation window runs past the test deadline");
	while (sys_now_ns() < end)
		sys_pump(h, sys_ms_until(end));
}

void sys_tx_barrier(struct sys_harness *h, struct vguest *vg)
{
	static uint32_t barrier_port = 3000000000u;
	struct vguest_sock *sock = vguest_connect_port(vg, barrier_port++);
	CHECKF(sock, "barrier connect: %s", strerror(errno));
	WAIT_FOR(h, 2000, sock->state == VGUEST_SOCK_CLOSED);
	CHECKF(sock->refused, "barrier connect to a port without listener was not "
	       "refused with RST (state %s)", vguest_sock_state_name(sock->state));
	vguest_sock_release(sock);
}
