/* placeholder: daemon/guest_memory.c (being written) */
typedef int placeholder_unit;
