/* SPDX-License-Identifier: MIT */
/*
 * Private to bus/mp.c and bus/mp_rewrite.c: the msgpack head decoder every
 * reader and writer goes through, and the bounded tree walker.
 *
 * pbus__mp_head() is the only place that reads a length from untrusted
 * bytes. It checks the head against @avail before reading a length field,
 * then the body against what is left, then (for containers) the element
 * count against what is left (every element needs at least one byte), so a
 * map32 claiming 4 billion pairs in ten bytes fails at once. All arithmetic
 * is a subtraction from a checked size: a 32-bit length cannot wrap size_t.
 */
#ifndef PBUS_MP_INTERNAL_H
#define PBUS_MP_INTERNAL_H

#include <endian.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "pbus/mp.h"

struct pbus__mp_head {
	uint8_t type;	 /* enum pbus_mp_type, never PBUS_MP_INVALID */
	uint8_t hlen;	 /* tag and length bytes (and an ext's type byte) */
	size_t self;	 /* hlen + body: the object without its children */
	uint32_t count;	 /* array elements or map pairs */
	uint64_t nchild; /* objects that follow: count, or 2 * count (map) */
};

static inline uint16_t pbus__be16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, sizeof(v));
	return be16toh(v);
}

static inline uint32_t pbus__be32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return be32toh(v);
}

static inline uint64_t pbus__be64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return be64toh(v);
}

/* A big-endian length field of @w (1, 2 or 4) bytes. */
static inline size_t pbus__mp_len(const uint8_t *p, size_t w)
{
	if (w == 1)
		return p[0];
	return w == 2 ? pbus__be16(p) : pbus__be32(p);
}

/*
 * Decode the head of the object at @p[0, @avail). 0 and *h, or -EBADMSG if
 * the tag is 0xc1, or the head, the body or the element count does not fit
 * in @avail. Reads at most 9 bytes, all within @avail.
 */
static inline int pbus__mp_head(const uint8_t *p, size_t avail,
				struct pbus__mp_head *h)
{
	size_t hl = 1, body = 0;
	uint32_t n = 0;
	uint8_t t, type;

	if (!avail)
		return -EBADMSG;
	t = p[0];
	if (t <= 0x7f || t >= 0xe0) {
		type = PBUS_MP_INT;
	} else if (t <= 0x8f) {
		type = PBUS_MP_MAP;
		n = t & 0x0f;
	} else if (t <= 0x9f) {
		type = PBUS_MP_ARRAY;
		n = t & 0x0f;
	} else if (t <= 0xbf) {
		type = PBUS_MP_STR;
		body = t & 0x1f;
	} else {
		/* 0xc0..0xdf: the head length depends on the tag alone */
		static const uint8_t hlens[32] = {
		    1, 0, 1, 1, 2, 3, 5, 3, /* c0 nil .. c7 ext8 */
		    4, 6, 1, 1, 1, 1, 1, 1, /* c8 ext16 .. cf uint64 */
		    1, 1, 1, 1, 2, 2, 2, 2, /* d0 int8 .. d7 fixext8 */
		    2, 2, 3, 5, 3, 5, 3, 5, /* d8 fixext16 .. df map32 */
		};

		hl = hlens[t - 0xc0];
		if (!hl || avail < hl)
			return -EBADMSG;
		switch (t) {
		case 0xc0:
			type = PBUS_MP_NIL;
			break;
		case 0xc2:
		case 0xc3:
			type = PBUS_MP_BOOL;
			break;
		case 0xc4:
		case 0xc5:
		case 0xc6:
			type = PBUS_MP_BIN;
			body = pbus__mp_len(p + 1, hl - 1);
			break;
		case 0xc7:
		case 0xc8:
		case 0xc9:
			type = PBUS_MP_EXT; /* length, then the type byte */
			body = pbus__mp_len(p + 1, hl - 2);
			break;
		case 0xca:
		case 0xcb:
			type = PBUS_MP_FLOAT;
			body = t == 0xca ? 4 : 8;
			break;
		case 0xcc:
		case 0xcd:
		case 0xce:
		case 0xcf:
			type = PBUS_MP_INT;
			body = (size_t)1 << (t - 0xcc);
			break;
		case 0xd0:
		case 0xd1:
		case 0xd2:
		case 0xd3:
			type = PBUS_MP_INT;
			body = (size_t)1 << (t - 0xd0);
			break;
		case 0xd4:
		case 0xd5:
		case 0xd6:
		case 0xd7:
		case 0xd8:
			type = PBUS_MP_EXT;
			body = (size_t)1 << (t - 0xd4);
			break;
		case 0xd9:
		case 0xda:
		case 0xdb:
			type = PBUS_MP_STR;
			body = pbus__mp_len(p + 1, hl - 1);
			break;
		case 0xdc:
		case 0xdd:
			type = PBUS_MP_ARRAY;
			n = (uint32_t)pbus__mp_len(p + 1, hl - 1);
			break;
		default: /* 0xde, 0xdf */
			type = PBUS_MP_MAP;
			n = (uint32_t)pbus__mp_len(p + 1, hl - 1);
			break;
		}
	}
	if (body > avail - hl)
		return -EBADMSG;
	h->type = type;
	h->hlen = (uint8_t)hl;
	h->self = hl + body;
	h->count = n;
	h->nchild = type == PBUS_MP_MAP ? 2 * (uint64_t)n : n;
	if (h->nchild > avail - h->self)
		return -EBADMSG;
	/* uint64 above INT64_MAX is the one type decided by the value */
	if (t == 0xcf && pbus__be64(p + 1) > (uint64_t)INT64_MAX)
		h->type = PBUS_MP_UINT;
	return 0;
}

static inline bool pbus__mp_is_container(const struct pbus__mp_head *h)
{
	return h->type == PBUS_MP_ARRAY || h->type == PBUS_MP_MAP;
}

/*
 * Walk the object at @p[0, @avail) and its whole tree without recursion.
 * 0 and *len (the object's length), or -EBADMSG if anything is malformed,
 * truncated or has more than @maxdepth (<= PBUS_MP_MAX_DEPTH) containers
 * nested at @p. O(*len).
 */
int pbus__mp_walk(const uint8_t *p, size_t avail, unsigned maxdepth,
		  size_t *len);

/* pbus__mp_walk(), with scalars and empty containers decoded inline. */
static inline int pbus__mp_skip_d(const uint8_t *p, size_t avail,
				  unsigned maxdepth, size_t *len)
{
	struct pbus__mp_head h;

	if (!p || pbus__mp_head(p, avail, &h))
		return -EBADMSG;
	if (!pbus__mp_is_container(&h) || (!h.nchild && maxdepth)) {
		*len = h.self;
		return 0;
	}
	return pbus__mp_walk(p, avail, maxdepth, len);
}

/* pbus__mp_skip_d() with the full depth budget. */
static inline int pbus__mp_skip(const uint8_t *p, size_t avail, size_t *len)
{
	return pbus__mp_skip_d(p, avail, PBUS_MP_MAX_DEPTH, len);
}

/* Key equality: strings by content, anything else by encoded bytes. Both
 * views must be exact (as returned by pbus__mp_skip()). */
bool pbus__mp_key_eq(struct pbus_mp a, struct pbus_mp b);

/* True if key view @k (exact) is a string equal to @s[0, @n). */
static inline bool pbus__mp_key_is(struct pbus_mp k, const char *s, size_t n)
{
	struct pbus__mp_head h;

	if (pbus__mp_head(k.p, k.len, &h) || h.type != PBUS_MP_STR)
		return false;
	return h.self - h.hlen == n && (!n || !memcmp(k.p + h.hlen, s, n));
}

#endif /* PBUS_MP_INTERNAL_H */
