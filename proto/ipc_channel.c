/* placeholder: proto/ipc_channel.c (being written) */
typedef int placeholder_unit;
