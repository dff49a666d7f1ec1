/*
 * sys_host.c - the host side of the system tests: AF_UNIX clients of the
 * daemon's socket (CONNECT lines, buffered non-blocking I/O, pattern
 * sources and sinks, EOF and errors) and listeners on <uds>_<port> where
 * guest-initiated connections land.
 *
 * Owns: h->conns, h->listeners, their fds and buffers.
 * Never: blocks on a socket; every fd is non-blocking and moved by the
 * poll loop (sys_harness.c).
 */
#include "sys_harness_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define SYS_HOST_OUT_TARGET (256u * 1024u)

/* ------------------------------------------------------------------ */
/* byte buffers */

size_t buf_len(const struct sys_buf *b)
{
	return b->tail - b->head;
}

static uint8_t *buf_reserve(struct sys_buf *b, size_t extra)
{
	size_t used = buf_len(b);
	if (b->tail + extra > b->capacity && b->head > 0) {
		memmove(b->data, b->data + b->head, used);
		b->head = 0;
		b->tail = used;
	}
	if (b->tail + extra > b->capacity) {
		size_t capacity = b->capacity ? b->capacity : 4096;
		uint8_t *grown;
		while (capacity < b->tail + extra)
			capacity *= 2;
		grown = realloc(b->data, capacity);
		if (!grown)
			FAIL("out of memory");
		b->data = grown;
		b->capacity = capacity;
	}
	return b->data + b->tail;
}

static void buf_append(struct sys_buf *b, const void *data, size_t len)
{
	memcpy(buf_reserve(b, len), data, len);
	b->tail += len;
}

static void buf_consume(struct sys_buf *b, size_t len)
{
	b->head += len;
	if (b->head >= b->tail)
		b->head = b->tail = 0;
}

static void buf_free(struct sys_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

/* ------------------------------------------------------------------ */
/* host connections */

static struct host_conn *host_conn_new(struct sys_harness *h, int fd,
				       const char *name)
{
	struct host_conn *c = calloc(1, sizeof(*c));
	CHECKF(c, "out of memory");
	c->h = h;
	c->fd = fd;
	snprintf(c->name, sizeof(c->name), "%s", name);
	c->next = h->conns;
	h->conns = c;
	return c;
}

static int sys_set_nonblock(int fd)
{
	int flags = fcntl(fd, F_GETFL);
	if (flags < 0)
		return -1;
	return fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

struct host_conn *host_connect(struct sys_harness *h)
{
	static unsigned counter;
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct timeval timeout = { .tv_sec = 5 };
	char name[48];
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	CHECKF(fd >= 0, "socket: %s", strerror(errno));
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", h->uds_path);
	/* a full backlog blocks connect; bound it */
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
		int saved = errno;
		close(fd);
		FAIL("connect %s: %s", h->uds_path, strerror(saved));
	}
	CHECKF(sys_set_nonblock(fd) == 0, "fcntl: %s", strerror(errno));
	snprintf(name, sizeof(name), "host-conn-%u", ++counter);
	return host_conn_new(h, fd, name);
}

struct host_conn *host_conn_adopt(struct sys_harness *h, int fd)
{
	static unsigned counter;
	char name[48];

	CHECKF(sys_set_nonblock(fd) == 0, "fcntl: %s", strerror(errno));
	snprintf(name, sizeof(name), "host-adopted-%u", ++counter);
	return host_conn_new(h, fd, name);
}

struct host_conn *host_connect_port(struct sys_harness *h, uint32_t port)
{
	char line[32];
	struct host_conn *c = host_connect(h);
	snprintf(line, sizeof(line), "CONNECT %u\n", port);
	host_write_str(c, line);
	snprintf(c->name, sizeof(c->name), "host->guest:%u", port);
	return c;
}

void host_try_write(struct host_conn *c)
{
	while (c->fd >= 0 && !c->error && buf_len(&c->out) > 0) {
		ssize_t n = send(c->fd, c->out.data + c->out.head, buf_len(&c->out),
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			buf_consume(&c->out, (size_t)n);
			c->bytes_out += (uint64_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		c->error = true;
		c->error_code = errno;
		buf_consume(&c->out, buf_len(&c->out));
		return;
	}
	if (c->fd >= 0 && buf_len(&c->out) == 0 && c->shut_wr_pending && !c->shut_wr_done) {
		if (shutdown(c->fd, SHUT_WR) != 0 && !c->error) {
			c->error = true;
			c->error_code = errno;
		}
		c->shut_wr_done = true;
	}
}

void host_write(struct host_conn *c, const void *data, size_t len)
{
	CHECKF(c->fd >= 0, "%s: write after close", c->name);
	buf_append(&c->out, data, len);
	host_try_write(c);
}

void host_write_str(struct host_conn *c, const char *text)
{
	host_write(c, text, strlen(text));
}

bool host_take_line(struct host_conn *c, char *line, size_t capacity)
{
	const uint8_t *start = c->in.data + c->in.head;
	const uint8_t *nl = buf_len(&c->in) ? memchr(start, '\n', buf_len(&c->in)) : NULL;
	size_t len;
	if (!nl)
		return false;
	len = (size_t)(nl - start) + 1;
	CHECKF(len < capacity, "%s: line of %zu bytes too long", c->name, len);
	memcpy(line, start, len);
	line[len] = '\0';
	buf_consume(&c->in, len);
	return true;
}

size_t host_in_len(const struct host_conn *c)
{
	return buf_len(&c->in);
}

const uint8_t *host_in_data(const struct host_conn *c)
{
	return c->in.data + c->in.head;
}

void host_in_consume(struct host_conn *c, size_t len)
{
	buf_consume(&c->in, len);
}

void host_shutdown_wr(struct host_conn *c)
{
	c->shut_wr_pending = true;
	host_try_write(c);
}

void host_close(struct host_conn *c)
{
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
}

void host_conn_free(struct host_conn *c)
{
	struct sys_harness *h = c->h;
	struct host_conn **link;
	for (link = &h->conns; *link; link = &(*link)->next)
		if (*link == c) {
			*link = c->next;
			break;
		}
	for (struct host_listener *l = h->listeners; l; l = l->next) {
		struct host_conn **a = &l->accept_head;
		struct host_conn *prev = NULL;
		while (*a && *a != c) {
			prev = *a;
			a = &(*a)->accept_next;
		}
		if (*a) {
			*a = c->accept_next;
			if (l->accept_tail == c)
				l->accept_tail = prev;
		}
	}
	host_close(c);
	buf_free(&c->in);
	buf_free(&c->out);
	free(c);
}

bool host_peer_closed(const struct host_conn *c)
{
	return c->read_eof || c->error;
}

void host_set_paused(struct host_conn *c, bool paused)
{
	c->paused = paused;
}

void host_source(struct host_conn *c, uint32_t seed, uint64_t total,
		 enum sys_after after)
{
	source_start(&c->source, seed, total, after);
}

void host_sink(struct host_conn *c, uint32_t seed, uint64_t expected)
{
	sink_start(&c->sink, seed, expected);
	/* bytes that arrived before the sink was attached */
	if (buf_len(&c->in) > 0) {
		sink_feed(c->name, &c->sink, c->in.data + c->in.head, buf_len(&c->in));
		buf_consume(&c->in, buf_len(&c->in));
	}
}

uint32_t host_expect_ok(struct sys_harness *h, struct host_conn *c)
{
	char line[64];
	char *end;
	unsigned long port;
	bool got = false;
	WAIT_FOR(h, SYS_DEFAULT_WAIT_MS,
		 (got = host_take_line(c, line, sizeof(line))) || host_peer_closed(c));
	CHECKF(got, "%s: connection closed before an OK line (eof %d error %d)",
	       c->name, c->read_eof, c->error);
	CHECKF(strncmp(line, "OK ", 3) == 0, "%s: expected \"OK <port>\\n\", got \"%s\"",
	       c->name, line);
	errno = 0;
	port = strtoul(line + 3, &end, 10);
	CHECKF(errno == 0 && end != line + 3 && strcmp(end, "\n") == 0 && port <= UINT32_MAX,
	       "%s: malformed OK line \"%s\"", c->name, line);
	return (uint32_t)port;
}

void host_source_work(struct host_conn *c)
{
	struct sys_source *src = &c->source;
	if (!src->active || c->fd < 0 || c->error)
		return;
	while (src->done < src->total && buf_len(&c->out) < SYS_HOST_OUT_TARGET) {
		size_t room = SYS_HOST_OUT_TARGET - buf_len(&c->out);
		uint64_t left = src->total - src->done;
		size_t n = left < room ? (size_t)left : room;
		pattern_fill(src->seed, src->done, buf_reserve(&c->out, n), n);
		c->out.tail += n;
		src->done += n;
	}
	host_try_write(c);
	if (src->done == src->total && buf_len(&c->out) == 0 && !src->after_done) {
		src->after_done = true;
		src->end_ns = sys_now_ns();
		if (src->after == SYS_AFTER_SHUTDOWN)
			host_shutdown_wr(c);
		else if (src->after == SYS_AFTER_CLOSE)
			host_close(c);
	}
}

void host_handle_readable(struct sys_harness *h, struct host_conn *c)
{
	/* read via scratch, so a short-lived connection's buffer stays small */
	for (int round = 0; round < 16 && c->fd >= 0; round++) {
		ssize_t n = recv(c->fd, h->scratch, SYS_SCRATCH_SIZE, MSG_DONTWAIT);
		if (n > 0) {
			c->bytes_in += (uint64_t)n;
			if (c->sink.active)
				sink_feed(c->name, &c->sink, h->scratch, (size_t)n);
			else
				buf_append(&c->in, h->scratch, (size_t)n);
			if ((size_t)n < SYS_SCRATCH_SIZE)
				return;
			continue;
		}
		if (n == 0) {
			c->read_eof = true;
			return;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return;
		c->error = true;
		c->error_code = errno;
		return;
	}
}

/* ------------------------------------------------------------------ */
/* host listeners (guest-initiated connections land here) */

struct host_listener *host_listen(struct sys_harness *h, uint32_t port)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct host_listener *l = calloc(1, sizeof(*l));
	int fd;

	CHECKF(l, "out of memory");
	l->h = h;
	l->port = port;
	if (snprintf(l->path, sizeof(l->path), "%s_%u", h->uds_path, port) >=
	    (int)sizeof(l->path)) {
		free(l);
		FAIL("listener path too long");
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	CHECKF(fd >= 0, "socket: %s", strerror(errno));
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", l->path);
	unlink(l->path);
	if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(fd, 256) != 0) {
		int saved = errno;
		close(fd);
		free(l);
		FAIL("listen on %s: %s", addr.sun_path, strerror(saved));
	}
	/* the daemon's broker runs as an unprivileged user when started as
	 * root: host services must let it connect (README: security model) */
	CHECKF(chmod(l->path, 0666) == 0, "chmod %s: %s", l->path, strerror(errno));
	l->fd = fd;
	l->next = h->listeners;
	h->listeners = l;
	return l;
}

struct host_conn *host_accept(struct host_listener *l)
{
	struct host_conn *c = l->accept_head;
	if (!c)
		return NULL;
	l->accept_head = c->accept_next;
	if (!l->accept_head)
		l->accept_tail = NULL;
	c->accept_next = NULL;
	return c;
}

void host_listener_accept_all(struct sys_harness *h, struct host_listener *l)
{
	for (;;) {
		char name[48];
		struct host_conn *c;
		int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return;
		}
		snprintf(name, sizeof(name), "guest->host:%u#%u", l->port, l->accepted + 1);
		c = host_conn_new(h, fd, name);
		l->accepted++;
		if (l->accept_tail)
			l->accept_tail->accept_next = c;
		else
			l->accept_head = c;
		l->accept_tail = c;
	}
}

void host_listener_close(struct host_listener *l)
{
	struct sys_harness *h = l->h;
	struct host_listener **link;
	for (link = &h->listeners; *link; link = &(*link)->next)
		if (*link == l) {
			*link = l->next;
			break;
		}
	if (l->fd >= 0)
		close(l->fd);
	unlink(l->path);
	/* accepted but untaken connections stay in h->conns */
	free(l);
}
