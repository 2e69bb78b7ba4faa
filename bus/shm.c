// SPDX-License-Identifier: MIT
/*
 * Shared-memory regions: anonymous memfds (nothing in /dev/shm, nothing left
 * behind after kill -9), sized once and sealed before they are shared. Pages
 * are committed lazily, so generous sizes cost nothing until touched.
 */
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shm.h"

int pbus__region_create(const char *name, size_t size, int seals,
			struct pbus__region *out)
{
	void *p;
	int fd, ret;

	fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) < 0) {
		ret = -errno;
		goto out_close;
	}
	/* Map before sealing: F_SEAL_FUTURE_WRITE forbids new writable maps
	 * but leaves this one writable. */
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		ret = -errno;
		goto out_close;
	}
	if (fcntl(fd, F_ADD_SEALS, seals) < 0) {
		ret = -errno;
		munmap(p, size);
		goto out_close;
	}
	out->fd = fd;
	out->base = p;
	out->size = size;
	return 0;
out_close:
	close(fd);
	return ret;
}

int pbus__region_map(int fd, int writable, size_t min_size,
		     struct pbus__region *out)
{
	struct stat st;
	int prot = PROT_READ | (writable ? PROT_WRITE : 0);
	void *p;

	if (fstat(fd, &st) < 0)
		return -errno;
	if ((size_t)st.st_size < min_size || st.st_size <= 0)
		return -EPROTO;
	p = mmap(NULL, (size_t)st.st_size, prot, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	out->fd = fd;
	out->base = p;
	out->size = (size_t)st.st_size;
	return 0;
}

void pbus__region_close(struct pbus__region *r)
{
	if (r->base)
		munmap(r->base, r->size);
	if (r->fd >= 0)
		close(r->fd);
	r->base = NULL;
	r->fd = -1;
	r->size = 0;
}
