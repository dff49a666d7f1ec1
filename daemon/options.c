/* placeholder: daemon/options.c (being written) */
typedef int placeholder_unit;
