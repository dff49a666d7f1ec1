/* placeholder: daemon/connect_cmd.c (being written) */
typedef int placeholder_unit;
