/* placeholder: daemon/conn.c (being written) */
typedef int placeholder_unit;
