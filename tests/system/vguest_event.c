/*
 * vguest_event.c - the virtual guest's event queue (queue 2), for the
 * frontends that hand it to the backend (crosvm, cloud-hypervisor); QEMU
 * keeps it in the VMM, which is the default here.
 *
 * Owns: queue 2's ring and its event buffers, set up after the data
 * queues, and counting what the backend posts. Never: touches the data
 * queues, or reads a used entry the backend has not published.
 */
#include <endian.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "vguest_internal.h"

/* struct virtio_vsock_event's one id, and the size of the event. */
#define VSOCK_EVENT_TRANSPORT_RESET 0u
#define VSOCK_EVENT_SIZE 4u

/* Make descriptor slot (== buffer slot) available again. */
static void post_buffer(struct vguest *vg, uint16_t slot)
{
	struct vg_event_queue *eq = &vg->event_queue;
	struct vring_avail *avail = vg_gpa(vg, eq->avail_gpa);

	avail->ring[eq->avail_idx % VG_EVENT_QUEUE_SIZE] = htole16(slot);
	eq->avail_idx++;
	__atomic_store_n(&avail->idx, htole16(eq->avail_idx), __ATOMIC_RELEASE);
}

int vg_event_queue_start(struct vguest *vg)
{
	struct vg_event_queue *eq = &vg->event_queue;
	uint64_t base = VG_RING_AREA_OFFSET + (uint64_t)VG_EVENT_QUEUE * VG_RING_AREA_STRIDE;
	struct vring_desc *desc;
	struct vhost_user_vring_addr addr;
	uint64_t one = 1;

	memset(vg_gpa(vg, base), 0, VG_RING_AREA_STRIDE);
	eq->desc_gpa = base;
	eq->avail_gpa = base + 16ull * VG_EVENT_QUEUE_SIZE;
	eq->used_gpa = base + 0x1000u;
	eq->buffers_gpa = base + VG_EVENT_BUFFERS_OFFSET;
	eq->avail_idx = eq->last_used = 0;
	desc = vg_gpa(vg, eq->desc_gpa);
	for (uint16_t slot = 0; slot < VG_EVENT_QUEUE_SIZE; slot++) {
		vg_desc_set(&desc[slot], eq->buffers_gpa + slot * VSOCK_EVENT_SIZE,
			    VSOCK_EVENT_SIZE, VRING_DESC_F_WRITE, 0);
		post_buffer(vg, slot);
	}
	addr = (struct vhost_user_vring_addr){
		.index = VG_EVENT_QUEUE,
		.desc_user_addr = vg_user_addr(vg, eq->desc_gpa),
		.used_user_addr = vg_user_addr(vg, eq->used_gpa),
		.avail_user_addr = vg_user_addr(vg, eq->avail_gpa),
		.log_guest_addr = eq->used_gpa,
	};
	eq->kick_fd = vg_new_eventfd(vg);
	eq->call_fd = vg_new_eventfd(vg);
	eq->running = true;   /* from here vg_event_queue_stop closes both */
	if (eq->kick_fd < 0 || eq->call_fd < 0)
		return -1;
	if (vg_vu_set_state(vg, VHOST_USER_SET_VRING_NUM, VG_EVENT_QUEUE,
			    VG_EVENT_QUEUE_SIZE) != 0 ||
	    vg_vu_set_state(vg, VHOST_USER_SET_VRING_BASE, VG_EVENT_QUEUE, 0) != 0 ||
	    vg_vu_send(vg, VHOST_USER_SET_VRING_ADDR, 0, &addr, sizeof(addr), NULL, 0) != 0 ||
	    vg_vu_set_u64(vg, VHOST_USER_SET_VRING_CALL, VG_EVENT_QUEUE, &eq->call_fd, 1,
			  false) != 0 ||
	    vg_vu_set_u64(vg, VHOST_USER_SET_VRING_KICK, VG_EVENT_QUEUE, &eq->kick_fd, 1,
			  false) != 0 ||
	    vg_vu_set_state(vg, VHOST_USER_SET_VRING_ENABLE, VG_EVENT_QUEUE, 1) != 0)
		return -1;
	if (write(eq->kick_fd, &one, sizeof(one)) != sizeof(one)) {
		vg_set_error(vg, "kick of the event queue: %s", strerror(errno));
		return -1;
	}
	return 0;
}

void vg_event_queue_stop(struct vguest *vg)
{
	struct vg_event_queue *eq = &vg->event_queue;

	if (!eq->running)
		return;
	vg_close_fd(&eq->kick_fd);
	vg_close_fd(&eq->call_fd);
	eq->running = false;
}

unsigned vguest_transport_resets(struct vguest *vg)
{
	struct vg_event_queue *eq = &vg->event_queue;
	const struct vring_used *used;
	uint16_t published;

	if (!eq->running)
		return eq->transport_resets;
	used = vg_gpa(vg, eq->used_gpa);
	published = le16toh(__atomic_load_n(&used->idx, __ATOMIC_ACQUIRE));
	while (eq->last_used != published) {
		const struct vring_used_elem *elem = &used->ring[eq->last_used % VG_EVENT_QUEUE_SIZE];
		uint32_t slot = le32toh(elem->id), id;

		eq->last_used++;
		if (slot >= VG_EVENT_QUEUE_SIZE || le32toh(elem->len) != VSOCK_EVENT_SIZE) {
			vg_protocol_error(vg, "event queue used entry %u with length %u",
					  slot, le32toh(elem->len));
			continue;
		}
		memcpy(&id, vg_gpa(vg, eq->buffers_gpa + slot * VSOCK_EVENT_SIZE), sizeof(id));
		if (le32toh(id) == VSOCK_EVENT_TRANSPORT_RESET)
			eq->transport_resets++;
		else
			eq->other_events++;
		post_buffer(vg, (uint16_t)slot);
	}
	return eq->transport_resets;
}
