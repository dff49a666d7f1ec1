/*
 * iov.c - iovec helpers (see iov.h).
 */
#include "vsockmux/iov.h"

#include <string.h>

size_t iov_total_length(const struct iovec *iov, size_t count)
{
	size_t total = 0;
	for (size_t i = 0; i < count; i++)
		total += iov[i].iov_len;
	return total;
}

/* Copy between iov (from offset) and a flat buffer: into iov from `in`,
 * or out of it to `out` (the other one is NULL). */
static size_t iov_copy(const struct iovec *iov, size_t count, size_t offset,
		       char *out, const char *in, size_t length)
{
	size_t copied = 0;
	for (size_t i = 0; i < count && copied < length; i++) {
		char *segment = (char *)iov[i].iov_base;
		size_t take;
		if (offset >= iov[i].iov_len) {
			offset -= iov[i].iov_len;
			continue;
		}
		take = iov[i].iov_len - offset;
		if (take > length - copied)
			take = length - copied;
		if (in)
			memcpy(segment + offset, in + copied, take);
		else
			memcpy(out + copied, segment + offset, take);
		copied += take;
		offset = 0;
	}
	return copied;
}

size_t iov_copy_out(const struct iovec *iov, size_t count, size_t offset,
		    void *dest, size_t length)
{
	return iov_copy(iov, count, offset, dest, NULL, length);
}

size_t iov_copy_in(const struct iovec *iov, size_t count, size_t offset,
		   const void *src, size_t length)
{
	return iov_copy(iov, count, offset, NULL, src, length);
}

size_t iov_slice(const struct iovec *iov, size_t count, size_t offset,
		 size_t length, struct iovec *out, size_t out_capacity)
{
	size_t used = 0;
	for (size_t i = 0; i < count && length > 0 && used < out_capacity; i++) {
		size_t take;
		if (offset >= iov[i].iov_len) {
			offset -= iov[i].iov_len;
			continue;
		}
		take = iov[i].iov_len - offset;
		if (take > length)
			take = length;
		out[used].iov_base = (char *)iov[i].iov_base + offset;
		out[used].iov_len = take;
		used++;
		length -= take;
		offset = 0;
	}
	return used;
}
