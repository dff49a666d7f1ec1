/*
 * sys_harness_internal.h - what the harness's files (sys_*.c) share and no
 * test may use: the scratch size, the steps the poll loop (sys_harness.c)
 * drives in the host and stream files, and the daemon calls the runner
 * makes at teardown.
 *
 * Owns: declarations only. Never: included by a test (tests see
 * sys_harness.h alone).
 */
#ifndef VSOCKMUX_TESTS_SYS_HARNESS_INTERNAL_H
#define VSOCKMUX_TESTS_SYS_HARNESS_INTERNAL_H

#include "sys_harness.h"

#define SYS_SCRATCH_SIZE (256u * 1024u)

/* ---- sys_daemon.c ---- */
/* "exit 3", "killed by signal 9 (Killed)", ... */
void sys_describe_status(int status, char *out, size_t size);
/* Teardown's end of the daemon: SIGTERM (SIGKILL if it will not go)
 * unless it is gone already; the test fails if it had exited unasked or
 * would not stop. */
void sys_stop_daemon(struct sys_harness *h);

/* ---- sys_host.c: steps of the poll loop ---- */
size_t buf_len(const struct sys_buf *b);
/* Queue more of the host source's pattern while the output is short;
 * once all of it is written, its ending (shutdown or close). */
void host_source_work(struct host_conn *c);
/* Write what is queued, as far as the socket takes it. */
void host_try_write(struct host_conn *c);
void host_handle_readable(struct sys_harness *h, struct host_conn *c);
void host_listener_accept_all(struct sys_harness *h, struct host_listener *l);

/* ---- sys_streams.c ---- */
/* A source or sink (of a host connection or a guest stream) starts over:
 * total (expected) bytes of the pattern of seed, from offset 0. */
void source_start(struct sys_source *source, uint32_t seed, uint64_t total,
		  enum sys_after after);
void sink_start(struct sys_sink *sink, uint32_t seed, uint64_t expected);
/* Check arriving bytes of a stream against its pattern; fails the test at
 * the first wrong byte or a byte past the expected end. */
void sink_feed(const char *name, struct sys_sink *sink, const uint8_t *data,
	       size_t len);
/* Move a guest stream along (send, receive, its ending); true if it did
 * anything. */
bool guest_stream_work(struct sys_harness *h, struct guest_stream *gs);

#endif
