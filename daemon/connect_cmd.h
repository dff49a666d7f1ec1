/*
 * connect_cmd.h - the host client's handshake line, "CONNECT <port>\n".
 *
 * Owns: per-socket partial-line state, so a line may arrive in any number
 * of pieces. Case-insensitive keyword, any run of spaces/tabs around the
 * port, optional "\r" before "\n", decimal port that fits in u32, whole
 * line (newline included) at most CONNECT_CMD_MAX_LINE bytes.
 * Never: reads past the newline. Bytes after it belong to the data stream
 * and must reach the guest, so the caller reads the socket with MSG_PEEK
 * and consumes only what connect_cmd_feed reports as used.
 */
#ifndef VSOCKMUX_CONNECT_CMD_H
#define VSOCKMUX_CONNECT_CMD_H

#include <stddef.h>
#include <stdint.h>

#define CONNECT_CMD_MAX_LINE 32u

enum connect_cmd_status {
	CONNECT_CMD_INCOMPLETE,   /* need more bytes */
	CONNECT_CMD_DONE,         /* *port is set */
	CONNECT_CMD_INVALID,      /* junk, overlong, bad port */
};

struct connect_cmd_parser {
	char line[CONNECT_CMD_MAX_LINE];
	size_t length;
};

void connect_cmd_init(struct connect_cmd_parser *parser);
/*
 * Feed up to length bytes. *consumed is set to how many bytes belong to
 * the line (all of them while INCOMPLETE; up to and including the newline
 * when DONE). On DONE *port is the requested port.
 */
enum connect_cmd_status connect_cmd_feed(struct connect_cmd_parser *parser,
					 const char *data, size_t length,
					 size_t *consumed, uint32_t *port);

#endif
