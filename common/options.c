/*
 * options.c - vsockmuxd's command line. Names follow rust-vmm's
 * vhost-device-vsock where they overlap, so it can be swapped in.
 *
 * Never: half-accepts a value. Every number is parsed whole, range-checked,
 * and a bad or missing argument is one clear line and exit code 2.
 */
#include "vsockmux/options.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vsockmux/limits.h"

#define TX_BUFFER_MIN 4096u
#define TX_BUFFER_MAX (64u * 1024u * 1024u)
#define TX_BUDGET_MIN (64u * 1024u)
#define TX_BUDGET_MAX (1ull << 40)

enum option_id {
	OPTION_GUEST_CID = 1000,
	OPTION_SOCKET,
	OPTION_UDS_PATH,
	OPTION_TX_BUFFER_SIZE,
	OPTION_QUEUE_SIZE,
	OPTION_MAX_CONNECTIONS,
	OPTION_MAX_HOST_HANDSHAKES,
	OPTION_TX_BUFFER_BUDGET,
	OPTION_LOG_LEVEL,
	OPTION_CONNECT_REPLY,
	OPTION_LOG_FORMAT,
	OPTION_ALLOW_GUEST_PORTS,
	OPTION_ALLOW_HOST_PORTS,
	OPTION_USER,
	OPTION_CONTROL_SOCKET,
	OPTION_SANDBOX_DEBUG,
	OPTION_NO_SANDBOX,
	OPTION_HELP,
	OPTION_VERSION,
};

static const struct option long_options[] = {
	{ "guest-cid", required_argument, NULL, OPTION_GUEST_CID },
	{ "socket", required_argument, NULL, OPTION_SOCKET },
	{ "uds-path", required_argument, NULL, OPTION_UDS_PATH },
	{ "tx-buffer-size", required_argument, NULL, OPTION_TX_BUFFER_SIZE },
	{ "queue-size", required_argument, NULL, OPTION_QUEUE_SIZE },
	{ "max-connections", required_argument, NULL, OPTION_MAX_CONNECTIONS },
	{ "max-host-handshakes", required_argument, NULL, OPTION_MAX_HOST_HANDSHAKES },
	{ "tx-buffer-budget", required_argument, NULL, OPTION_TX_BUFFER_BUDGET },
	{ "log-level", required_argument, NULL, OPTION_LOG_LEVEL },
	{ "connect-reply", required_argument, NULL, OPTION_CONNECT_REPLY },
	{ "log-format", required_argument, NULL, OPTION_LOG_FORMAT },
	{ "allow-guest-ports", required_argument, NULL, OPTION_ALLOW_GUEST_PORTS },
	{ "allow-host-ports", required_argument, NULL, OPTION_ALLOW_HOST_PORTS },
	{ "user", required_argument, NULL, OPTION_USER },
	{ "control-socket", required_argument, NULL, OPTION_CONTROL_SOCKET },
	{ "sandbox-debug", no_argument, NULL, OPTION_SANDBOX_DEBUG },
	{ "no-sandbox", no_argument, NULL, OPTION_NO_SANDBOX },
	{ "help", no_argument, NULL, OPTION_HELP },
	{ "version", no_argument, NULL, OPTION_VERSION },
	{ NULL, 0, NULL, 0 },
};

static void print_help(void)
{
	printf("Usage: vsockmuxd --guest-cid N --socket VHOST_USER_SOCKET --uds-path HOST_UDS_PATH\n"
	       "                 [--tx-buffer-size BYTES] [--queue-size N]\n"
	       "                 [--max-connections N] [--max-host-handshakes N]\n"
	       "                 [--tx-buffer-budget BYTES] [--log-level error|warn|info|debug]\n"
	       "                 [--log-format text|json]\n"
	       "                 [--connect-reply host-port|guest-port]\n"
	       "                 [--allow-guest-ports LIST] [--allow-host-ports LIST]\n"
	       "                 [--control-socket PATH] [--user NAME]\n"
	       "                 [--sandbox-debug] [--no-sandbox]\n"
	       "\n"
	       "vhost-user vsock backend: guest AF_VSOCK streams <-> host Unix sockets\n"
	       "(Firecracker / cloud-hypervisor hybrid vsock).\n"
	       "\n"
	       "  --guest-cid N          the guest's CID (3 .. 4294967294)\n"
	       "  --socket PATH          vhost-user socket the VMM connects to\n"
	       "  --uds-path PATH        host clients connect here and send \"CONNECT <port>\\n\";\n"
	       "                         guest connects to port P go to PATH_P\n"
	       "  --tx-buffer-size B     per-connection guest-to-host buffer and the credit\n"
	       "                         advertised to the guest (default %u, %u .. %u)\n"
	       "  --queue-size N         largest virtqueue accepted, power of two (default %u)\n"
	       "  --max-connections N    connection limit (default %u, max %u)\n"
	       "  --max-host-handshakes N  host clients still sending their CONNECT line\n"
	       "                         at once (default %u); beyond, new clients wait\n"
	       "                         in the listen backlog\n"
	       "  --tx-buffer-budget B   guest-to-host bytes all connections together may\n"
	       "                         hold in the daemon (default %llu); under pressure\n"
	       "                         connections are offered less credit\n"
	       "  --log-level LEVEL      error, warn, info (default) or debug\n"
	       "  --log-format FORMAT    text (default) or json: one object per line with\n"
	       "                         time, level, process, event, message and, for\n"
	       "                         connection events, ports, initiator, bytes, reason\n"
	       "  --connect-reply MODE   what a host client reads after CONNECT: host-port\n"
	       "                         (default; \"OK <our local port>\", as Firecracker\n"
	       "                         and cloud-hypervisor) or guest-port (\"OK <the\n"
	       "                         port asked for>\", as vhost-device-vsock)\n"
	       "  --allow-guest-ports LIST  host ports the guest may connect to, e.g.\n"
	       "                         \"22,1024-2047\" (default: all); others get an RST\n"
	       "  --allow-host-ports LIST  guest ports host clients may CONNECT to\n"
	       "                         (default: all); others are closed unanswered\n"
	       "  --control-socket PATH  vsockctl's socket (default: HOST_UDS_PATH.ctl)\n"
	       "  --user NAME            run both processes as NAME when started as root\n"
	       "                         (default: vsockmux if it exists, else nobody)\n"
	       "  --sandbox-debug        a forbidden syscall is logged by name, then exit\n"
	       "  --no-sandbox           no seccomp filter (development only; logged loudly)\n"
	       "  --help, --version\n",
	       OPTIONS_DEFAULT_TX_BUFFER_SIZE, TX_BUFFER_MIN, TX_BUFFER_MAX,
	       OPTIONS_DEFAULT_QUEUE_SIZE, OPTIONS_DEFAULT_MAX_CONNECTIONS,
	       VSOCKMUX_MAX_CONNECTIONS, OPTIONS_DEFAULT_MAX_HOST_HANDSHAKES,
	       (unsigned long long)OPTIONS_DEFAULT_TX_BUFFER_BUDGET);
}

static enum options_result usage_error(const char *format, ...)
	__attribute__((format(printf, 1, 2)));

static enum options_result usage_error(const char *format, ...)
{
	char message[256];
	va_list args;
	va_start(args, format);
	vsnprintf(message, sizeof(message), format, args);
	va_end(args);
	fprintf(stderr, "vsockmuxd: %s (try --help)\n", message);
	return OPTIONS_USAGE_ERROR;
}

/* Whole-string unsigned decimal in [minimum, maximum]. */
static int parse_number(const char *text, uint64_t minimum, uint64_t maximum,
			uint64_t *value)
{
	char *end = NULL;
	unsigned long long parsed;
	if (text[0] < '0' || text[0] > '9')
		return -1;
	errno = 0;
	parsed = strtoull(text, &end, 10);
	if (errno != 0 || *end != '\0' || parsed < minimum || parsed > maximum)
		return -1;
	*value = parsed;
	return 0;
}

static enum options_result check_required(const struct vsockmuxd_options *options,
					  bool have_cid)
{
	if (!have_cid)
		return usage_error("%s is required", "--guest-cid");
	if (!options->socket_path)
		return usage_error("%s is required", "--socket");
	if (!options->uds_path)
		return usage_error("%s is required", "--uds-path");
	if (options->socket_path[0] == '\0' || options->uds_path[0] == '\0')
		return usage_error("%s", "socket paths must not be empty");
	if (strcmp(options->socket_path, options->uds_path) == 0)
		return usage_error("%s", "--socket and --uds-path must differ");
	if (options->sandbox_debug && options->no_sandbox)
		return usage_error("%s", "--sandbox-debug and --no-sandbox exclude each other");
	return OPTIONS_OK;
}

enum options_result options_parse(int argc, char **argv,
				  struct vsockmuxd_options *options)
{
	enum options_result result;
	bool have_cid = false;
	uint64_t value;
	int option;

	*options = (struct vsockmuxd_options){
		.tx_buffer_size = OPTIONS_DEFAULT_TX_BUFFER_SIZE,
		.queue_size = OPTIONS_DEFAULT_QUEUE_SIZE,
		.max_connections = OPTIONS_DEFAULT_MAX_CONNECTIONS,
		.max_host_handshakes = OPTIONS_DEFAULT_MAX_HOST_HANDSHAKES,
		.tx_buffer_budget = OPTIONS_DEFAULT_TX_BUFFER_BUDGET,
		.log_level = LOG_LEVEL_INFO,
	};
	opterr = 0;
	optind = 1;

	while ((option = getopt_long(argc, argv, ":", long_options, NULL)) != -1) {
		switch (option) {
		case OPTION_GUEST_CID:
			if (parse_number(optarg, 3, UINT32_MAX - 1, &value) < 0)
				return usage_error("invalid --guest-cid '%s': expected 3 .. 4294967294", optarg);
			options->guest_cid = value;
			have_cid = true;
			break;
		case OPTION_SOCKET:
			options->socket_path = optarg;
			break;
		case OPTION_UDS_PATH:
			options->uds_path = optarg;
			break;
		case OPTION_TX_BUFFER_SIZE:
			if (parse_number(optarg, TX_BUFFER_MIN, TX_BUFFER_MAX, &value) < 0)
				return usage_error("invalid --tx-buffer-size '%s': expected 4096 .. 67108864 bytes", optarg);
			options->tx_buffer_size = (uint32_t)value;
			break;
		case OPTION_QUEUE_SIZE:
			if (parse_number(optarg, 1, 1024, &value) < 0 || (value & (value - 1)) != 0)
				return usage_error("invalid --queue-size '%s': expected a power of two up to 1024", optarg);
			options->queue_size = (uint16_t)value;
			break;
		case OPTION_MAX_CONNECTIONS:
			if (parse_number(optarg, 1, VSOCKMUX_MAX_CONNECTIONS, &value) < 0)
				return usage_error("invalid --max-connections '%s': expected 1 .. 1048576", optarg);
			options->max_connections = (uint32_t)value;
			break;
		case OPTION_MAX_HOST_HANDSHAKES:
			if (parse_number(optarg, 1, VSOCKMUX_MAX_CONNECTIONS, &value) < 0)
				return usage_error("invalid --max-host-handshakes '%s': expected 1 .. 1048576", optarg);
			options->max_host_handshakes = (uint32_t)value;
			break;
		case OPTION_TX_BUFFER_BUDGET:
			if (parse_number(optarg, TX_BUDGET_MIN, TX_BUDGET_MAX, &value) < 0)
				return usage_error("invalid --tx-buffer-budget '%s': expected 65536 .. 1099511627776 bytes", optarg);
			options->tx_buffer_budget = value;
			break;
		case OPTION_LOG_LEVEL:
			if (log_parse_level(optarg, &options->log_level) < 0)
				return usage_error("invalid --log-level '%s': expected error, warn, info or debug", optarg);
			break;
		case OPTION_LOG_FORMAT:
			if (log_parse_format(optarg, &options->log_format) < 0)
				return usage_error("invalid --log-format '%s': expected text or json", optarg);
			break;
		case OPTION_CONNECT_REPLY:
			if (strcmp(optarg, "host-port") == 0)
				options->connect_reply = CONNECT_REPLY_HOST_PORT;
			else if (strcmp(optarg, "guest-port") == 0)
				options->connect_reply = CONNECT_REPLY_GUEST_PORT;
			else
				return usage_error("invalid --connect-reply '%s': expected host-port or guest-port", optarg);
			break;
		case OPTION_ALLOW_GUEST_PORTS:
		case OPTION_ALLOW_HOST_PORTS: {
			const char *why = NULL;
			struct port_list *list = option == OPTION_ALLOW_GUEST_PORTS ?
						 &options->allow_guest_ports :
						 &options->allow_host_ports;
			if (port_list_parse(optarg, list, &why) < 0)
				return usage_error("invalid %s '%s': %s",
						   option == OPTION_ALLOW_GUEST_PORTS ?
						   "--allow-guest-ports" : "--allow-host-ports",
						   optarg, why);
			break;
		}
		case OPTION_USER:
			if (optarg[0] == '\0')
				return usage_error("--user needs a user name");
			options->user = optarg;
			break;
		case OPTION_CONTROL_SOCKET:
			if (optarg[0] == '\0')
				return usage_error("--control-socket needs a path");
			options->control_socket_path = optarg;
			break;
		case OPTION_SANDBOX_DEBUG:
			options->sandbox_debug = true;
			break;
		case OPTION_NO_SANDBOX:
			options->no_sandbox = true;
			break;
		case OPTION_HELP:
			print_help();
			return OPTIONS_EXIT_SUCCESS;
		case OPTION_VERSION:
			printf("vsockmuxd %s\n", VSOCKMUX_VERSION);
			return OPTIONS_EXIT_SUCCESS;
		case ':':
			return usage_error("option %s needs a value", argv[optind - 1]);
		default:
			return usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	result = check_required(options, have_cid);
	if (result != OPTIONS_OK)
		return result;
	if (!options->control_socket_path) {
		if ((size_t)snprintf(options->control_socket_default,
				     sizeof(options->control_socket_default), "%s.ctl",
				     options->uds_path) >= sizeof(options->control_socket_default))
			return usage_error("%s", "--uds-path too long for the default control socket");
		options->control_socket_path = options->control_socket_default;
	}
	if (strcmp(options->control_socket_path, options->uds_path) == 0 ||
	    strcmp(options->control_socket_path, options->socket_path) == 0)
		return usage_error("%s", "--control-socket must differ from --socket and --uds-path");
	return OPTIONS_OK;
}
