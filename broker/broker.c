/* placeholder: broker/broker.c (being written) */
typedef int placeholder_unit;
