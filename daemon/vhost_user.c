/* placeholder: daemon/vhost_user.c (being written) */
typedef int placeholder_unit;
