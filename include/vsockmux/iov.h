/*
 * iov.h - small helpers over struct iovec arrays: total length, copy in and
 * out at an offset, and slicing a window out of an array without copying.
 *
 * Never: allocates. Every function is bounded by the counts it is given.
 */
#ifndef VSOCKMUX_IOV_H
#define VSOCKMUX_IOV_H

#include <stddef.h>
#include <sys/uio.h>

size_t iov_total_length(const struct iovec *iov, size_t count);
/* Copy up to length bytes from iov (starting offset bytes in) to dest;
 * returns the bytes copied. */
size_t iov_copy_out(const struct iovec *iov, size_t count, size_t offset,
		    void *dest, size_t length);
/* Copy up to length bytes from src into iov starting offset bytes in;
 * returns the bytes copied. */
size_t iov_copy_in(const struct iovec *iov, size_t count, size_t offset,
		   const void *src, size_t length);
/* Describe bytes [offset, offset + length) of iov as a new array in out
 * (at most out_capacity entries, pointing into the same memory); returns
 * the number of entries used. Stops early when out is full. */
size_t iov_slice(const struct iovec *iov, size_t count, size_t offset,
		 size_t length, struct iovec *out, size_t out_capacity);

#endif
