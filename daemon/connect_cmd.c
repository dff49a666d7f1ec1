/*
 * connect_cmd.c - incremental parser for the host client's handshake line
 * "CONNECT <port>\n" (see connect_cmd.h).
 *
 * Grammar (the newline included, at most CONNECT_CMD_MAX_LINE bytes):
 *   [ \t]* CONNECT [ \t]+ DIGITS [ \t]* \r? \n
 * CONNECT is case-insensitive, DIGITS is a decimal number <= UINT32_MAX.
 *
 * Owns: the partial line buffered between feeds. Whatever has arrived so
 * far is checked as a prefix of that grammar, so junk is rejected at once
 * rather than after 32 bytes.
 * Never: consumes a byte after the newline, or reads past what it is fed.
 * After DONE or INVALID the parser is finished: further feeds return
 * INVALID and consume nothing until connect_cmd_init.
 */
#include "connect_cmd.h"

#include <stdbool.h>

/* line[] holds at most MAX_LINE - 1 bytes (the newline is never stored),
 * so a length of MAX_LINE marks a finished parser. */
#define PARSER_FINISHED CONNECT_CMD_MAX_LINE

static const char keyword[] = "CONNECT";

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static char to_upper_ascii(char c)
{
	return (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
}

/*
 * Check text[0, length) (the newline excluded) against the grammar. When
 * complete is false the text only has to be a valid prefix; running out
 * of it then gives INCOMPLETE.
 */
static enum connect_cmd_status parse_line(const char *text, size_t length,
					  bool complete, uint32_t *port)
{
	const enum connect_cmd_status out_of_text =
		complete ? CONNECT_CMD_INVALID : CONNECT_CMD_INCOMPLETE;
	uint64_t value = 0;
	size_t i = 0;

	while (i < length && is_blank(text[i]))
		i++;

	for (size_t k = 0; k < sizeof(keyword) - 1; k++, i++) {
		if (i == length)
			return out_of_text;
		if (to_upper_ascii(text[i]) != keyword[k])
			return CONNECT_CMD_INVALID;
	}

	/* At least one blank between the keyword and the port. */
	if (i == length)
		return out_of_text;
	if (!is_blank(text[i]))
		return CONNECT_CMD_INVALID;
	while (i < length && is_blank(text[i]))
		i++;

	if (i == length)
		return out_of_text;
	if (!is_digit(text[i]))
		return CONNECT_CMD_INVALID;
	while (i < length && is_digit(text[i])) {
		value = value * 10 + (uint64_t)(text[i] - '0');
		if (value > UINT32_MAX)
			return CONNECT_CMD_INVALID;
		i++;
	}

	while (i < length && is_blank(text[i]))
		i++;
	/* An optional '\r', which must be the last byte before '\n'. */
	if (i < length && text[i] == '\r')
		i++;
	if (i < length)
		return CONNECT_CMD_INVALID;

	if (!complete)
		return CONNECT_CMD_INCOMPLETE;
	*port = (uint32_t)value;
	return CONNECT_CMD_DONE;
}

void connect_cmd_init(struct connect_cmd_parser *parser)
{
	parser->length = 0;
}

enum connect_cmd_status connect_cmd_feed(struct connect_cmd_parser *parser,
					 const char *data, size_t length,
					 size_t *consumed, uint32_t *port)
{
	enum connect_cmd_status status;
	bool newline_seen = false;
	size_t used = 0;

	*consumed = 0;
	if (parser->length >= PARSER_FINISHED)
		return CONNECT_CMD_INVALID;

	/* Buffer up to the newline; a 32nd byte that is not one is too many. */
	while (used < length) {
		char c = data[used++];

		if (c == '\n') {
			newline_seen = true;
			break;
		}
		if (parser->length == CONNECT_CMD_MAX_LINE - 1) {
			*consumed = used;
			parser->length = PARSER_FINISHED;
			return CONNECT_CMD_INVALID;
		}
		parser->line[parser->length++] = c;
	}

	*consumed = used;
	status = parse_line(parser->line, parser->length, newline_seen, port);
	if (status != CONNECT_CMD_INCOMPLETE)
		parser->length = PARSER_FINISHED;
	return status;
}
