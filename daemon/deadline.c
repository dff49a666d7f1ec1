/* placeholder: daemon/deadline.c (being written) */
typedef int placeholder_unit;
