/* placeholder: daemon/tx_ring.c (being written) */
typedef int placeholder_unit;
