/* SPDX-License-Identifier: MIT */
/*
 * Private to bus/mp.c and bus/mp_rewrite.c: the msgpack head decoder every
 * reader and writer goes through, the bounded tree walker, and the map pair
 * reader that set, merge and the multi-key lookup share.
 *
 * pbus__mp_head() and its shortcut for the commonest scalars,
 * pbus__mp_quick(), are the only places that read a length from untrusted
 * bytes. They check the head against @avail before reading a length field,
 * then the body against what is left, then (for containers) the element
 * count against what is left (every element needs at least one byte), so a
 * map32 claiming 4 billion pairs in ten bytes fails at once. All arithmetic
 * is a subtraction from a checked size: a 32-bit length cannot wrap size_t.
 * The hot paths (walking a document, reading a map's pairs) decode the
 * common forms inline and give the rest to one general decoder, with the
 * same verdict for every input.
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
 *
 * The fix forms (fixint, fixmap, fixarray, fixstr: most objects) are
 * decoded inline; the tags 0xc0..0xdf, whose heads vary, out of line.
 */
int pbus__mp_head_tagged(const uint8_t *p, size_t avail,
			 struct pbus__mp_head *h);

static inline int pbus__mp_head(const uint8_t *p, size_t avail,
				struct pbus__mp_head *h)
{
	uint8_t t;

	if (!avail)
		return -EBADMSG;
	t = p[0];
	if (t >= 0xc0 && t <= 0xdf)
		return pbus__mp_head_tagged(p, avail, h);
	h->hlen = 1;
	h->self = 1;
	h->count = 0;
	h->nchild = 0;
	if (t <= 0x7f || t >= 0xe0) {
		h->type = PBUS_MP_INT;
	} else if (t >= 0xa0) {
		h->type = PBUS_MP_STR;
		h->self += t & 0x1fu;
		if (h->self > avail)
			return -EBADMSG;
	} else {
		h->type = t <= 0x8f ? PBUS_MP_MAP : PBUS_MP_ARRAY;
		h->count = t & 0x0fu;
		h->nchild = (uint64_t)h->count << (t <= 0x8f);
		if (h->nchild > avail - 1)
			return -EBADMSG;
	}
	return 0;
}

/* A string's head length from its tag: 1, 2, 3 or 5; 0 if not a string. */
static inline uint8_t pbus__mp_str_hlen(uint8_t t)
{
	if ((t & 0xe0) == 0xa0)
		return 1;
	return t >= 0xd9 && t <= 0xdb ? (uint8_t)(1 + (1u << (t - 0xd9))) : 0;
}

/* The size of the objects sized by their tag alone (fixint, nil, bool,
 * fixstr), 0 for every other tag. */
extern const uint8_t pbus__mp_qsize[256];

/*
 * Size the object at @p[0, @avail), @avail > 0, from its head alone if it
 * is of the commonest kinds, which have no children: a fixint, nil, a bool
 * or a string. Returns 1 and *len, 0 for any other object (decode it with
 * pbus__mp_head()), or -EBADMSG if it does not fit: pbus__mp_head()'s
 * verdict, at a fraction of its cost, for the loops that size every object.
 */
static inline int pbus__mp_quick(const uint8_t *p, size_t avail, size_t *len)
{
	uint8_t t = p[0], hl;
	size_t n = pbus__mp_qsize[t];

	if (n) {
		if (n > avail)
			return -EBADMSG;
		*len = n;
		return 1;
	}
	if (t < 0xd9 || t > 0xdb) /* str8, str16, str32 */
		return 0;
	hl = (uint8_t)(1 + (1u << (t - 0xd9)));
	if (hl > avail)
		return -EBADMSG;
	n = pbus__mp_len(p + 1, hl - 1u);
	if (n > avail - hl)
		return -EBADMSG;
	*len = hl + n;
	return 1;
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
	int quick;

	if (!p || !avail)
		return -EBADMSG;
	quick = pbus__mp_quick(p, avail, len);
	if (quick)
		return quick < 0 ? quick : 0;
	if (pbus__mp_head(p, avail, &h))
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

/*
 * One key/value pair of a map, its key decoded once. Keys compare as the
 * lookups and writers promise (pbus/mp.h): a string key by its body
 * [k + hl, v), whatever its head's width, any other key by its encoded
 * bytes [k, v). hl == 0 marks a key that is not a string: no string head is
 * empty.
 */
struct pbus__mp_pair {
	const uint8_t *k, *v, *end; /* key, value, end of the pair */
	uint8_t hl;		    /* a string key's head length, or 0 */
};

/*
 * Read the map key at @q[0, @end - @q), with at most @maxdepth containers
 * nested in it: 0 with its length in *len and *hl (a string's head length,
 * 0 for any other key), or -EBADMSG. A string key is sized by its head
 * alone, as pbus__mp_skip_d() would size it.
 */
static inline int pbus__mp_key(const uint8_t *q, const uint8_t *end,
			       unsigned maxdepth, size_t *len, uint8_t *hl)
{
	int quick;

	if (q == end)
		return -EBADMSG;
	quick = pbus__mp_quick(q, (size_t)(end - q), len);
	if (quick < 0)
		return -EBADMSG;
	/* every string is quick: what is not, is not a string */
	*hl = quick ? pbus__mp_str_hlen(*q) : 0;
	return quick ? 0 : pbus__mp_skip_d(q, (size_t)(end - q), maxdepth, len);
}

/*
 * Read the pair at @q[0, @end - @q): 0 and *e, or -EBADMSG if the key or
 * the value is malformed, truncated or has more than @maxdepth containers
 * nested in it. Validates exactly what two pbus__mp_skip_d() calls would.
 */
static inline int pbus__mp_pair(const uint8_t *q, const uint8_t *end,
				unsigned maxdepth, struct pbus__mp_pair *e)
{
	size_t n;

	if (pbus__mp_key(q, end, maxdepth, &n, &e->hl))
		return -EBADMSG;
	e->k = q;
	e->v = q + n;
	if (pbus__mp_skip_d(e->v, (size_t)(end - e->v), maxdepth, &n))
		return -EBADMSG;
	e->end = e->v + n;
	return 0;
}

/* True if the key @k[0, @len) read by pbus__mp_key() (head length @hl) is
 * the string @s[0, @n). */
static inline bool pbus__mp_key_is_str(const uint8_t *k, size_t len, uint8_t hl,
				       const char *s, size_t n)
{
	return hl && len - hl == n && (!n || !memcmp(k + hl, s, n));
}

/* True if the key of pair @e is the string @s[0, @n). */
static inline bool pbus__mp_pair_key_is(const struct pbus__mp_pair *e,
					const char *s, size_t n)
{
	return pbus__mp_key_is_str(e->k, (size_t)(e->v - e->k), e->hl, s, n);
}

#endif /* PBUS_MP_INTERNAL_H */
