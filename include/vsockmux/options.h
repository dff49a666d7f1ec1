/*
 * options.h - vsockmuxd's command line, parsed once in the parent before
 * the fork; both the broker and the muxer read it.
 */
#ifndef VSOCKMUX_OPTIONS_H
#define VSOCKMUX_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>

#include "vsockmux/log.h"
#include "vsockmux/port_list.h"

#define OPTIONS_DEFAULT_TX_BUFFER_SIZE (256u * 1024u)
#define OPTIONS_DEFAULT_QUEUE_SIZE 1024u
#define OPTIONS_DEFAULT_MAX_CONNECTIONS 4096u
#define OPTIONS_DEFAULT_MAX_HOST_HANDSHAKES 128u
#define OPTIONS_DEFAULT_TX_BUFFER_BUDGET (32ull * 1024u * 1024u)

/* What follows "OK " in the reply to a host client's CONNECT line. */
enum connect_reply {
	CONNECT_REPLY_HOST_PORT,   /* our local port (Firecracker, cloud-hypervisor) */
	CONNECT_REPLY_GUEST_PORT,  /* the guest port it asked for (vhost-device-vsock) */
};

struct vsockmuxd_options {
	uint64_t guest_cid;
	const char *socket_path;     /* --socket: vhost-user listener */
	const char *uds_path;        /* --uds-path: host listener, and prefix
					of <uds-path>_<port> for guest connects */
	uint32_t tx_buffer_size;     /* buf_alloc we advertise, ring size */
	uint16_t queue_size;         /* largest virtqueue we accept */
	uint32_t max_connections;
	uint32_t max_host_handshakes; /* host clients still sending CONNECT */
	uint64_t tx_buffer_budget;   /* guest->host bytes all connections may
					have buffered or in flight together */
	enum connect_reply connect_reply; /* --connect-reply */
	struct port_list allow_guest_ports; /* host ports guest connects may reach */
	struct port_list allow_host_ports;  /* guest ports host clients may CONNECT to */
	enum log_level log_level;
	enum log_format log_format;      /* --log-format */
	const char *control_socket_path; /* --control-socket, default
					    "<uds-path>.ctl" */
	char control_socket_default[128];
	const char *user;            /* --user; NULL: the default user */
	bool sandbox_debug;          /* --sandbox-debug: trap and log */
	bool no_sandbox;             /* --no-sandbox: development only */
};

/* Outcome of options_parse. */
enum options_result {
	OPTIONS_OK = 0,
	OPTIONS_EXIT_SUCCESS,   /* --help or --version printed */
	OPTIONS_USAGE_ERROR,    /* message printed; exit code 2 */
};

enum options_result options_parse(int argc, char **argv,
				  struct vsockmuxd_options *options);

#endif
