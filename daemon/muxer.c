/* placeholder: daemon/muxer.c (being written) */
typedef int placeholder_unit;
