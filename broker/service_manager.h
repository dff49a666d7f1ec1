/*
 * service_manager.h - telling systemd (or any service manager that speaks
 * its notification protocol) how the daemon is doing (service_manager.c).
 */
#ifndef VSOCKMUX_SERVICE_MANAGER_H
#define VSOCKMUX_SERVICE_MANAGER_H

#include <stdbool.h>

/* READY=1 with a STATUS= line: the listeners are up. */
void service_manager_ready(const char *vhost_user_path);
/* STATUS= when a VMM attaches or leaves. */
void service_manager_vmm(bool attached, const char *vhost_user_path);
/* STOPPING=1: the daemon is shutting down. */
void service_manager_stopping(void);

#endif
