// SPDX-License-Identifier: MIT
/*
 * The payload arena and its lanes. The arena is one memfd, mapped read-write
 * by the gateway and sealed (F_SEAL_FUTURE_WRITE) before any agent sees it,
 * so agents can only map it read-only. It is cut into lanes: a lane is one
 * caller's workspace. Payloads grow from the bottom of a lane (owner thread
 * only); result bodies copied out of agent channels grow from the top (any
 * thread that drains a response ring). Both bounds live in one 64-bit atomic
 * so the two ends can never cross.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gw.h"

#define PAGE 4096u

static size_t round_up(size_t v, size_t a)
{
	return (v + a - 1) / a * a;
}

int pbus__arena_open(struct pbus_bus *b)
{
	size_t lane_size = b->o.lane_size, size;
	struct pbus_arena_hdr *h;
	int ret;

	lane_size = round_up(lane_size, PAGE);
	if (lane_size > UINT32_MAX - PAGE)
		return -EINVAL;
	b->o.lane_size = lane_size;
	size = PBUS_ARENA_HDR_SIZE + (size_t)b->o.lanes * lane_size;
	ret = pbus__region_create("pbus-arena", size,
				  PBUS__SEALS_FIXED | F_SEAL_FUTURE_WRITE,
				  &b->arena);
	if (ret)
		return ret;
	h = b->arena.base;
	h->magic = PBUS_ARENA_MAGIC;
	h->abi = PBUS_ABI_VERSION;
	h->size = size;

	b->lanes = calloc(b->o.lanes, sizeof(*b->lanes));
	if (!b->lanes) {
		pbus__region_close(&b->arena);
		return -ENOMEM;
	}
	for (unsigned i = b->o.lanes; i-- > 0;) {
		struct pbus_lane *l = &b->lanes[i];

		l->bus = b;
		l->off = PBUS_ARENA_HDR_SIZE + (uint64_t)i * lane_size;
		l->base = (uint8_t *)b->arena.base + l->off;
		l->size = (uint32_t)lane_size;
		l->next_free = b->free_lanes;
		b->free_lanes = l;
	}
	pthread_mutex_init(&b->lane_lock, NULL);
	return 0;
}

void pbus__arena_close(struct pbus_bus *b)
{
	if (!b->lanes)
		return;
	free(b->lanes);
	b->lanes = NULL;
	pthread_mutex_destroy(&b->lane_lock);
	pbus__region_close(&b->arena);
}

int pbus_lane_acquire(struct pbus_bus *b, struct pbus_lane **out)
{
	struct pbus_lane *l;

	pthread_mutex_lock(&b->lane_lock);
	l = b->free_lanes;
	if (l)
		b->free_lanes = l->next_free;
	pthread_mutex_unlock(&b->lane_lock);
	if (!l)
		return -EAGAIN;
	atomic_store_explicit(&l->use, 0, memory_order_relaxed);
	l->pack_err = 0;
	*out = l;
	return 0;
}

void pbus_lane_release(struct pbus_lane *l)
{
	struct pbus_bus *b;

	if (!l)
		return;
	b = l->bus;
	pthread_mutex_lock(&b->lane_lock);
	l->next_free = b->free_lanes;
	b->free_lanes = l;
	pthread_mutex_unlock(&b->lane_lock);
}

PBUS_HOT void pbus_lane_reset(struct pbus_lane *l)
{
	atomic_store_explicit(&l->use, 0, memory_order_relaxed);
	l->pack_err = 0;
}

size_t pbus_lane_avail(const struct pbus_lane *l)
{
	uint64_t u = atomic_load_explicit(&l->use, memory_order_relaxed);

	return l->size - (uint32_t)u - (uint32_t)(u >> 32);
}

/* Owner side: reserve @n bytes at the bottom; returns the lane offset. */
static PBUS_HOT int alloc_pay(struct pbus_lane *l, uint32_t n, uint32_t *at)
{
	uint64_t u = atomic_load_explicit(&l->use, memory_order_relaxed), nu;
	uint32_t pay, res;

	do {
		pay = (uint32_t)u;
		res = (uint32_t)(u >> 32);
		if ((uint64_t)pay + res + n > l->size)
			return -ENOBUFS;
		nu = ((uint64_t)res << 32) | (pay + n);
	} while (!atomic_compare_exchange_weak_explicit(
		&l->use, &u, nu, memory_order_relaxed, memory_order_relaxed));
	*at = pay;
	return 0;
}

int pbus__lane_alloc_res(struct pbus_lane *l, uint32_t n, uint64_t *off)
{
	uint64_t u = atomic_load_explicit(&l->use, memory_order_relaxed), nu;
	uint32_t pay, res;

	do {
		pay = (uint32_t)u;
		res = (uint32_t)(u >> 32);
		if ((uint64_t)pay + res + n > l->size)
			return -ENOBUFS;
		nu = ((uint64_t)(res + n) << 32) | pay;
	} while (!atomic_compare_exchange_weak_explicit(
		&l->use, &u, nu, memory_order_relaxed, memory_order_relaxed));
	*off = l->off + l->size - res - n;
	return 0;
}

PBUS_HOT int pbus_lane_write(struct pbus_lane *l, const void *data, size_t len,
			     struct pbus_ref *ref)
{
	uint32_t at;
	int ret;

	if (len > l->size)
		return -ENOBUFS;
	ret = alloc_pay(l, (uint32_t)len, &at);
	if (ret)
		return ret;
	memcpy(l->base + at, data, len);
	ref->off = l->off + at;
	ref->len = (uint32_t)len;
	ref->_pad = 0;
	return 0;
}

static PBUS_HOT int pack_write(void *data, const char *buf, size_t len)
{
	struct pbus_lane *l = data;
	uint32_t at;

	if (l->pack_err)
		return -1;
	if (len > l->size || alloc_pay(l, (uint32_t)len, &at)) {
		l->pack_err = -ENOBUFS;
		return -1;
	}
	if (len <= 2 * PBUS_CACHELINE) /* headers, small payloads */
		pbus__copy_small(l->base + at, buf, len);
	else
		memcpy(l->base + at, buf, len);
	return 0;
}

PBUS_HOT void pbus_lane_pack_begin(struct pbus_lane *l, msgpack_packer *pk)
{
	l->pack_start =
		(uint32_t)atomic_load_explicit(&l->use, memory_order_relaxed);
	l->pack_err = 0;
	msgpack_packer_init(pk, l, pack_write);
}

PBUS_HOT int pbus_lane_pack_end(struct pbus_lane *l, msgpack_packer *pk,
				struct pbus_ref *ref)
{
	uint32_t end =
		(uint32_t)atomic_load_explicit(&l->use, memory_order_relaxed);
	(void)pk;
	if (l->pack_err) {
		/* give the partial bytes back */
		uint64_t u = atomic_load(&l->use), nu;

		do {
			nu = (u & 0xffffffff00000000ull) | l->pack_start;
		} while (!atomic_compare_exchange_weak(&l->use, &u, nu));
		return l->pack_err;
	}
	ref->off = l->off + l->pack_start;
	ref->len = end - l->pack_start;
	ref->_pad = 0;
	return 0;
}

const void *pbus_lane_ptr(const struct pbus_lane *l, struct pbus_ref ref)
{
	if (!ref.len || ref.off + ref.len > l->bus->arena.size)
		return NULL;
	return (const uint8_t *)l->bus->arena.base + ref.off;
}
