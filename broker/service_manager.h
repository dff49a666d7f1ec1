/*
 * service_manager.h - telling systemd (or any service manager that speaks
 * its notification protocol) how the daemon is doing (service_manager.c).
 */
#ifndef VSOCKMUX_SERVICE_MANAGER_H
#define VSOCKMUX_SERVICE_MANAGER_H

#include <stdbool.h>

struct broker_listeners;

/* Socket activation: the listeners the service manager passed, named
 * "vhost-user", "host" and "control" (FileDescriptorName=), or three with
 * one name (one .socket unit), taken in that order. Returns 1
 * when all three were taken (listeners->activated set), 0 when none were
 * passed, -1 (logged) when what was passed is not exactly those three
 * listening Unix stream sockets. */
int service_manager_listeners(struct broker_listeners *listeners);

/* READY=1 with a STATUS= line: the listeners are up. */
void service_manager_ready(const char *vhost_user_path);
/* STATUS= when a VMM attaches or leaves. */
void service_manager_vmm(bool attached, const char *vhost_user_path);
/* STOPPING=1: the daemon is shutting down. */
void service_manager_stopping(void);

#endif
