/* placeholder: daemon/virtq.c (being written) */
typedef int placeholder_unit;
