/*
 * frontend.h - the vhost-user frontend's life in the muxer (frontend.c).
 */
#ifndef VSOCKMUX_FRONTEND_H
#define VSOCKMUX_FRONTEND_H

#include "vhost_user.h"

struct muxer;

/* What vhost_user.c calls back (opaque: the muxer). */
extern const struct vhost_user_callbacks frontend_callbacks;

/* Take over a vhost-user frontend fd from the broker. */
void frontend_attach(struct muxer *muxer, int fd);
/* The frontend left (or spoke nonsense): every connection goes, the
 * broker is told. */
void frontend_detach(struct muxer *muxer);
/* Every connection freed, RSTs owed and RX buffers forgotten. */
void frontend_drop_all_connections(struct muxer *muxer, const char *reason);

#endif
