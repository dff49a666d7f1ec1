/*
 * fuzz_input.h - a cursor over one libFuzzer input, shared by the fuzzers.
 *
 * Owns: taking integers and byte runs off the front of the input.
 * Never: reads past the end; an exhausted input yields zeros, so every
 * input is a valid (if short) program for the fuzzer that reads it.
 */
#ifndef VSOCKMUX_FUZZ_INPUT_H
#define VSOCKMUX_FUZZ_INPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct fuzz_input {
	const uint8_t *data;
	size_t size;
	size_t offset;
};

static inline void fuzz_input_init(struct fuzz_input *input, const uint8_t *data,
				   size_t size)
{
	input->data = data;
	input->size = size;
	input->offset = 0;
}

static inline size_t fuzz_remaining(const struct fuzz_input *input)
{
	return input->size - input->offset;
}

static inline bool fuzz_empty(const struct fuzz_input *input)
{
	return input->offset >= input->size;
}

static inline uint8_t fuzz_u8(struct fuzz_input *input)
{
	if (input->offset >= input->size)
		return 0;
	return input->data[input->offset++];
}

static inline uint16_t fuzz_u16(struct fuzz_input *input)
{
	uint16_t low = fuzz_u8(input);
	return (uint16_t)(low | (uint16_t)(fuzz_u8(input) << 8));
}

static inline uint32_t fuzz_u32(struct fuzz_input *input)
{
	uint32_t low = fuzz_u16(input);
	return low | ((uint32_t)fuzz_u16(input) << 16);
}

static inline uint64_t fuzz_u64(struct fuzz_input *input)
{
	uint64_t low = fuzz_u32(input);
	return low | ((uint64_t)fuzz_u32(input) << 32);
}

/* Up to length bytes into out (zero-filled past the end); returns how
 * many came from the input. */
static inline size_t fuzz_bytes(struct fuzz_input *input, void *out, size_t length)
{
	size_t available = fuzz_remaining(input);
	size_t taken = length < available ? length : available;

	memcpy(out, input->data + input->offset, taken);
	memset((uint8_t *)out + taken, 0, length - taken);
	input->offset += taken;
	return taken;
}

#endif
