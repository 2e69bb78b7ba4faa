/* SPDX-License-Identifier: MIT */
/*
 * memfd regions (internal). A region owns its fd and its mapping.
 */
#ifndef PBUS_SHM_H
#define PBUS_SHM_H

#include <stddef.h>

#include "internal.h"

struct pbus__region {
	int fd;
	void *base;
	size_t size;
};

/* The seals every pbus region gets; the arena adds F_SEAL_FUTURE_WRITE. */
#define PBUS__SEALS_FIXED (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

/* Create a memfd of @size, map it read-write, then add @seals. */
int pbus__region_create(const char *name, size_t size, int seals,
			struct pbus__region *out);
/* Map a received region fd (whole file); -EPROTO if smaller than @min_size. */
int pbus__region_map(int fd, int writable, size_t min_size,
		     struct pbus__region *out);
void pbus__region_close(struct pbus__region *r);

#endif
