/* placeholder: broker/listener.c (being written) */
typedef int placeholder_unit;
