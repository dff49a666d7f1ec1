/* placeholder: daemon/conn_table.c (being written) */
typedef int placeholder_unit;
