// SPDX-License-Identifier: MIT
/*
 * pbus_mp reader: validation, scalar getters, map and array lookup, dotted
 * paths and iteration over msgpack held in memory we may only read.
 *
 * Invariants: every byte read is inside the view passed in, whatever the
 * view claims (lengths go through pbus__mp_head() or pbus__mp_quick(), which
 * check them before use); nothing allocates; nothing recurses (pbus__mp_skip() walks a tree
 * with a fixed stack of PBUS_MP_MAX_DEPTH counters). Each walk is linear in
 * the bytes it covers, since every object consumes at least one byte.
 * No shared state: every function is reentrant.
 */
#include "pbus/mp.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

#include "mp_internal.h"

/* clang-format off */
const uint8_t pbus__mp_qsize[256] = {
	[0x00 ... 0x7f] = 1,				/* positive fixint */
	[0xa0] = 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
	17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, /* fixstr */
	[0xc0] = 1,					/* nil */
	[0xc2] = 1, 1,					/* false, true */
	[0xe0 ... 0xff] = 1,				/* negative fixint */
};
/* clang-format on */

/* The general decoder: any tag, though pbus__mp_head() sends it only the
 * tags 0xc0..0xdf. */
int pbus__mp_head_tagged(const uint8_t *p, size_t avail,
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

int pbus__mp_walk(const uint8_t *p, size_t avail, unsigned maxdepth,
		  size_t *len)
{
	uint64_t left[PBUS_MP_MAX_DEPTH]; /* children still due, per level */
	unsigned depth = 0;		  /* containers open around p + off */
	struct pbus__mp_head h;
	size_t off = 0, n;
	uint64_t nchild;
	bool container;
	int quick;
	uint8_t t;

	if (!p || !avail)
		return -EBADMSG;
	for (;;) {
		if (off == avail)
			return -EBADMSG;
		/* Most objects are scalars sized by their first bytes, fixmaps
		 * or fixarrays: those are decoded here, with the checks
		 * pbus__mp_head() makes, which decodes the rest. */
		t = p[off];
		quick = pbus__mp_quick(p + off, avail - off, &n);
		if (quick < 0)
			return -EBADMSG;
		if (quick) {
			off += n;
			nchild = 0;
			container = false;
		} else if (t >= 0x80 && t <= 0x9f) {
			off++;
			nchild = (uint64_t)(t & 0x0f) << (t <= 0x8f);
			if (nchild > avail - off)
				return -EBADMSG;
			container = true;
		} else {
			if (pbus__mp_head(p + off, avail - off, &h))
				return -EBADMSG;
			off += h.self;
			nchild = h.nchild;
			container = pbus__mp_is_container(&h);
		}
		if (container) {
			if (depth >= maxdepth || depth == PBUS_MP_MAX_DEPTH)
				return -EBADMSG;
			if (nchild) {
				left[depth++] = nchild;
				continue;
			}
		}
		/* an object ended: it was one child of the innermost level */
		while (depth && !--left[depth - 1])
			depth--;
		if (!depth)
			break;
	}
	*len = off;
	return 0;
}

/* ------------------------------------------------------------ parsing */

int pbus_mp_open2(const void *buf, size_t len, unsigned flags,
		  struct pbus_mp *out)
{
	size_t n;

	if (flags & ~PBUS_MP_ALLOW_TRAILING)
		return -EINVAL;
	if (!buf || !len || pbus__mp_skip(buf, len, &n))
		return -EBADMSG;
	if (n != len && !(flags & PBUS_MP_ALLOW_TRAILING))
		return -EBADMSG;
	out->p = buf;
	out->len = n;
	return 0;
}

int pbus_mp_open(const void *buf, size_t len, struct pbus_mp *out)
{
	return pbus_mp_open2(buf, len, 0, out);
}

/* ------------------------------------------------------------ scalars */

/* Head of @v, or -EBADMSG (an empty view included). */
static int head(struct pbus_mp v, struct pbus__mp_head *h)
{
	if (!v.p || !v.len)
		return -EBADMSG;
	return pbus__mp_head(v.p, v.len, h);
}

enum pbus_mp_type pbus_mp_type(struct pbus_mp v)
{
	struct pbus__mp_head h;

	if (head(v, &h))
		return PBUS_MP_INVALID;
	return h.type;
}

const char *pbus_mp_type_name(enum pbus_mp_type t)
{
	static const char *const names[] = {
	    [PBUS_MP_NIL] = "nil",     [PBUS_MP_BOOL] = "bool",
	    [PBUS_MP_INT] = "int",     [PBUS_MP_UINT] = "uint",
	    [PBUS_MP_FLOAT] = "float", [PBUS_MP_STR] = "str",
	    [PBUS_MP_BIN] = "bin",     [PBUS_MP_ARRAY] = "array",
	    [PBUS_MP_MAP] = "map",     [PBUS_MP_EXT] = "ext",
	};

	if ((unsigned)t >= PBUS_MP_INVALID)
		return "invalid";
	return names[t];
}

bool pbus_mp_is_nil(struct pbus_mp v) { return v.p && v.len && v.p[0] == 0xc0; }

int pbus_mp_bool(struct pbus_mp v, bool *b)
{
	if (!v.p || !v.len || (v.p[0] != 0xc2 && v.p[0] != 0xc3))
		return -EINVAL;
	*b = v.p[0] == 0xc3;
	return 0;
}

/*
 * Any integer encoding: 0 with *bits (two's complement for negatives) and
 * *neg, or -EINVAL.
 */
static int integer(struct pbus_mp v, uint64_t *bits, bool *neg)
{
	struct pbus__mp_head h;
	const uint8_t *b;
	int64_t s;

	if (head(v, &h) || (h.type != PBUS_MP_INT && h.type != PBUS_MP_UINT))
		return -EINVAL;
	b = v.p + 1;
	switch (v.p[0]) {
	case 0xcc:
		*bits = b[0];
		break;
	case 0xcd:
		*bits = pbus__be16(b);
		break;
	case 0xce:
		*bits = pbus__be32(b);
		break;
	case 0xcf:
		*bits = pbus__be64(b);
		break;
	default:
		switch (v.p[0]) {
		case 0xd0:
			s = (int8_t)b[0];
			break;
		case 0xd1:
			s = (int16_t)pbus__be16(b);
			break;
		case 0xd2:
			s = (int32_t)pbus__be32(b);
			break;
		case 0xd3:
			s = (int64_t)pbus__be64(b);
			break;
		default: /* positive or negative fixint */
			s = (int8_t)v.p[0];
			break;
		}
		*bits = (uint64_t)s;
		*neg = s < 0;
		return 0;
	}
	*neg = false;
	return 0;
}

int pbus_mp_int(struct pbus_mp v, int64_t *i)
{
	uint64_t bits;
	bool neg;

	if (integer(v, &bits, &neg))
		return -EINVAL;
	if (!neg && bits > (uint64_t)INT64_MAX)
		return -ERANGE;
	*i = (int64_t)bits;
	return 0;
}

int pbus_mp_uint(struct pbus_mp v, uint64_t *u)
{
	uint64_t bits;
	bool neg;

	if (integer(v, &bits, &neg))
		return -EINVAL;
	if (neg)
		return -ERANGE;
	*u = bits;
	return 0;
}

int pbus_mp_float(struct pbus_mp v, double *d)
{
	struct pbus__mp_head h;
	uint64_t bits;
	uint32_t b32;
	double f64;
	float f32;
	bool neg;

	if (!integer(v, &bits, &neg)) {
		*d = neg ? (double)(int64_t)bits : (double)bits;
		return 0;
	}
	if (head(v, &h) || h.type != PBUS_MP_FLOAT)
		return -EINVAL;
	if (v.p[0] == 0xca) {
		b32 = pbus__be32(v.p + 1);
		memcpy(&f32, &b32, sizeof(f32));
		*d = f32;
	} else {
		bits = pbus__be64(v.p + 1);
		memcpy(&f64, &bits, sizeof(f64));
		*d = f64;
	}
	return 0;
}

/* Body of a str, bin or ext of @type: 0 or -EINVAL wrong type, -EBADMSG. */
static int body(struct pbus_mp v, uint8_t type, struct pbus__mp_head *h)
{
	int ret;

	if (!v.p || !v.len)
		return -EINVAL;
	ret = pbus__mp_head(v.p, v.len, h);
	if (!ret && h->type != type)
		return -EINVAL;
	return ret;
}

int pbus_mp_str(struct pbus_mp v, const char **s, size_t *n)
{
	struct pbus__mp_head h;
	int ret = body(v, PBUS_MP_STR, &h);

	if (ret)
		return ret;
	if (s)
		*s = (const char *)v.p + h.hlen;
	if (n)
		*n = h.self - h.hlen;
	return 0;
}

bool pbus_mp_str_eqn(struct pbus_mp v, const char *s, size_t n)
{
	struct pbus__mp_head h;

	if (body(v, PBUS_MP_STR, &h) || h.self - h.hlen != n)
		return false;
	return !n || !memcmp(v.p + h.hlen, s, n);
}

bool pbus_mp_str_eq(struct pbus_mp v, const char *cstr)
{
	return cstr && pbus_mp_str_eqn(v, cstr, strlen(cstr));
}

int pbus_mp_bin(struct pbus_mp v, const void **data, size_t *n)
{
	struct pbus__mp_head h;
	int ret = body(v, PBUS_MP_BIN, &h);

	if (ret)
		return ret;
	if (data)
		*data = v.p + h.hlen;
	if (n)
		*n = h.self - h.hlen;
	return 0;
}

int pbus_mp_ext(struct pbus_mp v, int8_t *type, const void **data, size_t *n)
{
	struct pbus__mp_head h;
	int ret = body(v, PBUS_MP_EXT, &h);

	if (ret)
		return ret;
	if (type)
		*type = (int8_t)v.p[h.hlen - 1];
	if (data)
		*data = v.p + h.hlen;
	if (n)
		*n = h.self - h.hlen;
	return 0;
}

/* ------------------------------------------------------------ containers */

int64_t pbus_mp_count(struct pbus_mp v)
{
	struct pbus__mp_head h;

	if (!v.p || !v.len)
		return -EINVAL;
	if (pbus__mp_head(v.p, v.len, &h)) {
		/* a container head whose count cannot fit is malformed */
		if ((v.p[0] & 0xe0) == 0x80 || (v.p[0] & 0xfc) == 0xdc)
			return -EBADMSG;
		return -EINVAL;
	}
	if (!pbus__mp_is_container(&h))
		return -EINVAL;
	return h.count;
}

int pbus_mp_iter_init(struct pbus_mp v, struct pbus_mp_iter *it)
{
	struct pbus__mp_head h;

	if (!v.p || !v.len)
		return -EINVAL;
	if (pbus__mp_head(v.p, v.len, &h))
		return -EBADMSG;
	if (!pbus__mp_is_container(&h))
		return -EINVAL;
	it->p = v.p + h.self;
	it->end = v.p + v.len;
	it->left = h.count;
	it->index = 0;
	it->is_map = h.type == PBUS_MP_MAP;
	return 0;
}

int pbus_mp_next(struct pbus_mp_iter *it, struct pbus_mp *key,
		 struct pbus_mp *val)
{
	struct pbus_mp k = {NULL, 0}, v;

	if (!it->left)
		return 0;
	if (it->is_map) {
		k.p = it->p;
		if (pbus__mp_skip(k.p, (size_t)(it->end - k.p), &k.len))
			goto bad;
		it->p += k.len;
	}
	v.p = it->p;
	if (pbus__mp_skip(v.p, (size_t)(it->end - v.p), &v.len))
		goto bad;
	it->p += v.len;
	it->left--;
	it->index++;
	if (key && it->is_map)
		*key = k;
	if (val)
		*val = v;
	return 1;
bad:
	it->left = 0;
	it->p = it->end;
	return -EBADMSG;
}

/* Head of container @v of @type: 0, -EINVAL wrong type, -EBADMSG. */
static int container(struct pbus_mp v, uint8_t type, struct pbus__mp_head *h)
{
	if (!v.p || !v.len)
		return -EINVAL;
	if (pbus__mp_head(v.p, v.len, h))
		return -EBADMSG;
	return h->type == type ? 0 : -EINVAL;
}

/*
 * Set *val to the object at @q, which ends by @end. With @exact, val->len is
 * the object's own length; without, the view runs to @end. A loose view is
 * enough to look further inside the object and saves walking all of it: the
 * dotted path walks each level once, only up to the key it wants.
 */
static int found(const uint8_t *q, const uint8_t *end, bool exact,
		 struct pbus_mp *val)
{
	size_t n = (size_t)(end - q);

	if (exact && pbus__mp_skip(q, n, &n))
		return -EBADMSG;
	val->p = q;
	val->len = n;
	return 0;
}

static int find_key(struct pbus_mp map, const char *key, size_t klen,
		    bool exact, struct pbus_mp *val)
{
	struct pbus__mp_head h;
	const uint8_t *q, *end;
	bool match;
	uint8_t hl;
	size_t n;
	int ret;

	if (!key && klen)
		return -EINVAL;
	ret = container(map, PBUS_MP_MAP, &h);
	if (ret)
		return ret;
	q = map.p + h.self;
	end = map.p + map.len;
	for (uint32_t i = 0; i < h.count; i++) {
		if (pbus__mp_key(q, end, PBUS_MP_MAX_DEPTH, &n, &hl))
			return -EBADMSG;
		match = pbus__mp_key_is_str(q, n, hl, key, klen);
		q += n;
		if (match)
			return found(q, end, exact, val);
		if (pbus__mp_skip(q, (size_t)(end - q), &n))
			return -EBADMSG;
		q += n;
	}
	return -ENOENT;
}

static int find_index(struct pbus_mp array, size_t idx, bool exact,
		      struct pbus_mp *val)
{
	struct pbus__mp_head h;
	const uint8_t *q, *end;
	size_t n;
	int ret;

	ret = container(array, PBUS_MP_ARRAY, &h);
	if (ret)
		return ret;
	if (idx >= h.count)
		return -ENOENT;
	q = array.p + h.self;
	end = array.p + array.len;
	for (size_t i = 0; i < idx; i++) {
		if (pbus__mp_skip(q, (size_t)(end - q), &n))
			return -EBADMSG;
		q += n;
	}
	return found(q, end, exact, val);
}

int pbus_mp_getn(struct pbus_mp map, const char *key, size_t klen,
		 struct pbus_mp *val)
{
	return find_key(map, key, klen, true, val);
}

int pbus_mp_get(struct pbus_mp map, const char *key, struct pbus_mp *val)
{
	if (!key)
		return -EINVAL;
	return find_key(map, key, strlen(key), true, val);
}

/* Keys pbus_mp_get_keys() looks for in one pass over the map. */
#define GET_KEYS_BATCH 16

/*
 * One pass over the pairs of @map (head @h) for keys[0, @n), @n <=
 * GET_KEYS_BATCH, whose vals[] are empty: the number found, or -EBADMSG.
 * It ends as soon as every key is found, as pbus_mp_get() would for each.
 */
static int get_batch(struct pbus_mp map, const struct pbus__mp_head *h,
		     const char *const *keys, struct pbus_mp *vals, size_t n)
{
	const uint8_t *q = map.p + h->self, *end = map.p + map.len;
	size_t kn[GET_KEYS_BATCH], left = n;
	struct pbus__mp_pair e;

	for (size_t j = 0; j < n; j++)
		kn[j] = strlen(keys[j]);
	for (uint32_t i = 0; i < h->count && left; i++, q = e.end) {
		if (pbus__mp_pair(q, end, PBUS_MP_MAX_DEPTH, &e))
			return -EBADMSG;
		if (!e.hl)
			continue; /* only string keys match */
		/* no break: @keys may name the same key twice */
		for (size_t j = 0; j < n; j++) {
			if (vals[j].p ||
			    !pbus__mp_pair_key_is(&e, keys[j], kn[j]))
				continue;
			vals[j].p = e.v;
			vals[j].len = (size_t)(e.end - e.v);
			left--;
		}
	}
	return (int)(n - left);
}

int pbus_mp_get_keys(struct pbus_mp map, const char *const *keys,
		     struct pbus_mp *vals, size_t n)
{
	struct pbus__mp_head h;
	int ret, got, found = 0;

	if (n > INT_MAX || (n && (!keys || !vals)))
		return -EINVAL;
	for (size_t j = 0; j < n; j++)
		vals[j] = (struct pbus_mp){NULL, 0};
	for (size_t j = 0; j < n; j++)
		if (!keys[j])
			return -EINVAL;
	ret = container(map, PBUS_MP_MAP, &h);
	for (size_t j = 0; !ret && j < n; j += GET_KEYS_BATCH) {
		got = get_batch(map, &h, keys + j, vals + j,
				n - j < GET_KEYS_BATCH ? n - j
						       : GET_KEYS_BATCH);
		if (got < 0)
			ret = got;
		else
			found += got;
	}
	if (!ret)
		return found;
	for (size_t j = 0; j < n; j++) /* all or nothing */
		vals[j] = (struct pbus_mp){NULL, 0};
	return ret;
}

int pbus_mp_index(struct pbus_mp array, size_t i, struct pbus_mp *val)
{
	return find_index(array, i, true, val);
}

/* Decimal segment @s[0, @n) as an index; false if not all digits or huge. */
static bool seg_index(const char *s, size_t n, size_t *idx)
{
	uint64_t v = 0;

	if (!n || n > 10)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v > SIZE_MAX)
		return false;
	*idx = (size_t)v;
	return true;
}

int pbus_mp_path(struct pbus_mp v, const char *path, struct pbus_mp *out)
{
	struct pbus__mp_head h;
	const char *s, *dot;
	size_t n, idx;
	int ret;

	if (!path)
		return -EINVAL;
	/* syntax first, so the answer does not depend on the data */
	if (*path) {
		for (s = path;; s = dot + 1) {
			dot = strchr(s, '.');
			if (dot == s || (!dot && !*s))
				return -EINVAL;
			if (!dot)
				break;
		}
	}
	if (!v.p || !v.len)
		return -ENOENT;
	for (s = path; *s; s += n + (s[n] == '.')) {
		dot = strchr(s, '.');
		n = dot ? (size_t)(dot - s) : strlen(s);
		if (pbus__mp_head(v.p, v.len, &h))
			return -EBADMSG;
		/* only the last step needs the exact length */
		if (h.type == PBUS_MP_MAP)
			ret = find_key(v, s, n, !dot, &v);
		else if (h.type == PBUS_MP_ARRAY && seg_index(s, n, &idx))
			ret = find_index(v, idx, !dot, &v);
		else
			ret = -ENOENT;
		if (ret)
			return ret;
	}
	*out = v;
	return 0;
}
