/*
 * fuzz_connect_line.c - libFuzzer target for daemon/connect_cmd.c, the
 * host client's "CONNECT <port>\n" line.
 *
 * Input: one byte n, then n piece lengths, then the bytes a host client
 * sends. The bytes are fed to the real parser three ways: in one piece, in
 * the pieces the lengths describe (zero-length pieces included), and one
 * byte at a time.
 * Checks: the outcome is the same whatever the split: the status, the
 * port, and on DONE the bytes consumed (exactly up to and including the
 * newline, never past it). On INVALID the caller drops the client, so the
 * count consumed then is not compared. Every piece reports at most what it
 * was given.
 * Never: re-implements the grammar; the one-piece run is the reference.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "connect_cmd.h"
#include "fuzz_check.h"
#include "fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct outcome {
	enum connect_cmd_status status;
	uint32_t port;
	size_t consumed;   /* total over every piece fed */
};

/* Feed text in pieces of lengths[i % count] (count 0: all at once),
 * stopping at the first status that is not INCOMPLETE. The caller makes
 * sure not every length is 0, so each round of count pieces advances. */
static struct outcome feed(const char *text, size_t length, const uint8_t *lengths,
			   size_t count)
{
	struct connect_cmd_parser parser;
	struct outcome result = { CONNECT_CMD_INCOMPLETE, 0, 0 };
	size_t offset = 0;

	connect_cmd_init(&parser);
	for (size_t piece = 0; offset < length || piece == 0; piece++) {
		size_t want = count ? lengths[piece % count] : length;
		size_t used = 0;
		uint32_t port = 0;

		if (want > length - offset)
			want = length - offset;
		result.status = connect_cmd_feed(&parser, text + offset, want, &used, &port);
		check(used <= want, "consumed more than it was given");
		result.consumed += used;
		offset += used;
		if (result.status == CONNECT_CMD_DONE)
			result.port = port;
		if (result.status != CONNECT_CMD_INCOMPLETE)
			return result;
		check(used == want, "INCOMPLETE without consuming everything");
	}
	return result;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input input;
	uint8_t lengths[16];
	size_t count;
	const char *text;
	size_t text_length;
	struct outcome whole, pieces, bytes;
	static const uint8_t one = 1;
	bool all_zero = true;

	fuzz_input_init(&input, data, size);
	count = fuzz_u8(&input) % (sizeof(lengths) + 1);
	fuzz_bytes(&input, lengths, count);
	for (size_t i = 0; i < count; i++)
		all_zero &= lengths[i] == 0;
	text = (const char *)data + input.offset;
	text_length = fuzz_remaining(&input);

	whole = feed(text, text_length, NULL, 0);
	bytes = feed(text, text_length, &one, 1);
	check(whole.status == bytes.status, "byte-at-a-time status differs");
	if (whole.status == CONNECT_CMD_DONE) {
		const char *newline = memchr(text, '\n', text_length);
		check(newline != NULL, "DONE without a newline");
		check(whole.consumed == (size_t)(newline - text) + 1,
		      "DONE did not consume exactly the line");
		check(whole.port == bytes.port, "byte-at-a-time port differs");
		check(whole.consumed == bytes.consumed, "byte-at-a-time consumed differs");
	}
	if (whole.status == CONNECT_CMD_INCOMPLETE)
		check(whole.consumed == text_length, "INCOMPLETE left bytes unread");
	if (count == 0 || all_zero)
		return 0;
	pieces = feed(text, text_length, lengths, count);
	check(whole.status == pieces.status, "split status differs");
	if (whole.status == CONNECT_CMD_DONE) {
		check(whole.port == pieces.port, "split port differs");
		check(whole.consumed == pieces.consumed, "split consumed differs");
	}
	return 0;
}
