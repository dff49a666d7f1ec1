/* placeholder: daemon/muxer_ipc.c (being written) */
typedef int placeholder_unit;
