/*
 * fuzz_vhost_user.c - libFuzzer target for the vhost-user message handler
 * (daemon/vhost_user.c) as the muxer runs it: a device attached to one end
 * of a socketpair, the fuzzed frontend on the other.
 *
 * Input: a stream of chunks; each chunk is some bytes (any framing: whole
 * messages, pieces, several at once, sizes that lie) sent with sendmsg and
 * 0..16 fds chosen by the input (memfds of fuzzed size, eventfds,
 * /dev/null, a socket), so fd counts and payload sizes can disagree with
 * what the message asks for. After each chunk vhost_user_handle_readable
 * runs; a -1 ends the session (vhost_user_detach, as the muxer does).
 * Checks: replies are well-framed (REPLY flag, version 1, size as sent);
 * a queue reported ready has its rings inside the mapped guest memory;
 * mapped regions never overlap; no fd leaks across inputs.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz_fds.h"
#include "fuzz_check.h"
#include "fuzz_input.h"
#include "vhost_user.h"
#include "vsockmux/log.h"

#define MAX_CHUNKS 48u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static struct vhost_user_device device;
static uint8_t chunk[sizeof(struct vhost_user_header) + VHOST_USER_MAX_PAYLOAD + 64];
static uint8_t reply[65536];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_ignore_sigpipe();
	log_set_level(LOG_LEVEL_ERROR);
	return 0;
}

static bool pointer_in_memory(const struct guest_memory *memory, const void *pointer,
			      size_t length)
{
	uintptr_t start = (uintptr_t)pointer;
	for (unsigned i = 0; i < memory->region_count; i++) {
		uintptr_t base = (uintptr_t)memory->regions[i].host_addr;
		uint64_t size = memory->regions[i].size;
		if (start >= base && length <= size && start - base <= size - length)
			return true;
	}
	return false;
}

static void check_device(const struct vhost_user_device *dev)
{
	const struct guest_memory *memory = &dev->memory;

	check(memory->region_count <= VHOST_USER_MAX_MEM_REGIONS, "too many regions");
	for (unsigned i = 0; i < memory->region_count; i++) {
		const struct guest_memory_region *a = &memory->regions[i];
		check(a->size > 0, "empty region mapped");
		check(a->guest_phys_addr + a->size - 1 >= a->guest_phys_addr,
		      "region wraps around the address space");
		for (unsigned j = 0; j < i; j++) {
			const struct guest_memory_region *b = &memory->regions[j];
			check(a->guest_phys_addr + a->size <= b->guest_phys_addr ||
			      b->guest_phys_addr + b->size <= a->guest_phys_addr,
			      "overlapping regions mapped");
		}
	}
	check(dev->pending_fd_count <= VHOST_USER_MAX_FDS, "pending fds overflow");
	check(dev->buffered <= sizeof(dev->buffer), "receive buffer overflow");
	for (unsigned q = 0; q < VSOCK_QUEUE_COUNT; q++) {
		const struct virtq *queue = &dev->queues[q];
		size_t size = queue->size;
		if (!virtq_is_ready(queue))
			continue;
		check(size > 0 && size <= dev->max_queue_size, "ready queue with a bad size");
		check(pointer_in_memory(memory, queue->desc, 16 * size), "desc outside memory");
		check(pointer_in_memory(memory, queue->avail, 4 + 2 * size + 2),
		      "avail outside memory");
		check(pointer_in_memory(memory, queue->used, 4 + 8 * size + 2),
		      "used outside memory");
	}
}

static void on_queue_state_changed(void *opaque, unsigned queue_index, bool ready)
{
	const struct vhost_user_device *dev = opaque;
	check(queue_index < VSOCK_QUEUE_COUNT, "callback for a queue that does not exist");
	if (ready)
		check(virtq_is_ready(&dev->queues[queue_index]), "ready but not ready");
}

static void on_kick_fd_changed(void *opaque, unsigned queue_index, int old_fd, int new_fd)
{
	(void)opaque;
	(void)old_fd;
	(void)new_fd;
	check(queue_index < VSOCK_QUEUE_COUNT, "kick callback for a queue that does not exist");
}

static const struct vhost_user_callbacks callbacks = {
	.kick_fd_changed = on_kick_fd_changed,
	.queue_state_changed = on_queue_state_changed,
};

static int make_attachment(struct fuzz_input *input)
{
	uint8_t kind = fuzz_u8(input);
	int pair[2];
	int fd;

	switch (kind & 3u) {
	case 0:
		fd = memfd_create("fuzz-guest", MFD_CLOEXEC);
		if (fd >= 0 && ftruncate(fd, (off_t)(fuzz_u16(input) % 1024u) * 4096) < 0) {
			close(fd);
			fd = -1;
		}
		return fd;
	case 1:
		return eventfd(0, EFD_CLOEXEC | ((kind & 4u) ? EFD_NONBLOCK : 0));
	case 2:
		return open("/dev/null", O_RDWR | O_CLOEXEC);
	default:
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0)
			return -1;
		close(pair[1]);
		return pair[0];
	}
}

/* Read every reply the device sent; each must be a well-formed frame. */
static void drain_replies(int fd)
{
	for (;;) {
		ssize_t got = recv(fd, reply, sizeof(reply), MSG_DONTWAIT);
		size_t offset = 0;

		if (got <= 0)
			return;
		while (offset < (size_t)got) {
			struct vhost_user_header header;
			check((size_t)got - offset >= sizeof(header), "truncated reply header");
			memcpy(&header, reply + offset, sizeof(header));
			check(header.flags & VHOST_USER_FLAG_REPLY, "reply without REPLY flag");
			check((header.flags & VHOST_USER_VERSION_MASK) == VHOST_USER_VERSION,
			      "reply with a wrong version");
			check(header.size <= (size_t)got - offset - sizeof(header),
			      "reply shorter than its size");
			offset += sizeof(header) + header.size;
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input input;
	int fds_before = fuzz_count_open_fds();
	int pair[2];
	bool attached = true;

	fuzz_input_init(&input, data, size);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0)
		abort();
	vhost_user_init(&device, 3, (uint16_t)(1u << (fuzz_u8(&input) % 11u)), &callbacks,
			&device);
	vhost_user_attach(&device, pair[0]);

	for (unsigned n = 0; n < MAX_CHUNKS && attached && !fuzz_empty(&input); n++) {
		uint8_t spec = fuzz_u8(&input);
		size_t fd_count = (spec & 8u) ? 8u + (spec >> 5) : (spec & 7u);
		size_t length = fuzz_u16(&input) % sizeof(chunk);
		int fds[FUZZ_MAX_ATTACHED_FDS];

		for (size_t i = 0; i < fd_count; i++)
			fds[i] = make_attachment(&input);
		length = fuzz_bytes(&input, chunk, length);
		if (length > 0 || fd_count > 0) {
			size_t good = 0;
			for (size_t i = 0; i < fd_count; i++)
				if (fds[i] >= 0)
					fds[good++] = fds[i];
			/* fds need at least one byte to travel with */
			if (length == 0)
				chunk[length++] = 0;
			(void)fuzz_send_with_fds(pair[1], chunk, length, fds, good);
			for (size_t i = 0; i < good; i++)
				close(fds[i]);
		}
		if (spec & 0x10)
			shutdown(pair[1], SHUT_WR); /* EOF after this chunk */
		if (vhost_user_handle_readable(&device) < 0)
			attached = false;
		check_device(&device);
		drain_replies(pair[1]);
	}
	vhost_user_detach(&device);
	check(!vhost_user_is_attached(&device), "still attached after detach");
	check(device.memory.region_count == 0, "memory still mapped after detach");
	vhost_user_detach(&device); /* safe twice */
	close(pair[1]);
	check(fuzz_count_open_fds() == fds_before, "fd leak");
	return 0;
}
