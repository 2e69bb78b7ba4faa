// SPDX-License-Identifier: MIT
/*
 * pbus_mp reader: validation, scalar getters, map and array lookup, dotted
 * paths and iteration over msgpack held in memory we may only read.
 *
 * Invariants: every byte read is inside the view passed in, whatever the
 * view claims (lengths go through pbus__mp_head(), which checks them before
 * use); nothing allocates; nothing recurses (pbus__mp_skip() walks a tree
 * with a fixed stack of PBUS_MP_MAX_DEPTH counters). Each walk is linear in
 * the bytes it covers, since every object consumes at least one byte.
 * No shared state: every function is reentrant.
 */
#include "pbus/mp.h"

#include <errno.h>
#include <string.h>

#include "mp_internal.h"

int pbus__mp_walk(const uint8_t *p, size_t avail, unsigned maxdepth,
		  size_t *len)
{
	uint64_t left[PBUS_MP_MAX_DEPTH]; /* children still due, per level */
	unsigned depth = 0;		  /* containers open around p + off */
	struct pbus__mp_head h;
	size_t off = 0;

	if (!p || !avail)
		return -EBADMSG;
	for (;;) {
		if (pbus__mp_head(p + off, avail - off, &h))
			return -EBADMSG;
		off += h.self;
		if (pbus__mp_is_container(&h)) {
			if (depth >= maxdepth || depth == PBUS_MP_MAX_DEPTH)
				return -EBADMSG;
			if (h.nchild) {
				left[depth++] = h.nchild;
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

bool pbus__mp_key_eq(struct pbus_mp a, struct pbus_mp b)
{
	struct pbus__mp_head ha, hb;

	if (pbus__mp_head(a.p, a.len, &ha) || pbus__mp_head(b.p, b.len, &hb))
		return false;
	if (ha.type == PBUS_MP_STR)
		return pbus__mp_key_is(b, (const char *)a.p + ha.hlen,
				       ha.self - ha.hlen);
	if (hb.type == PBUS_MP_STR)
		return false;
	return a.len == b.len && !memcmp(a.p, b.p, a.len);
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
	struct pbus_mp k;
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
		k.p = q;
		if (pbus__mp_skip(q, (size_t)(end - q), &k.len))
			return -EBADMSG;
		q += k.len;
		if (pbus__mp_key_is(k, key, klen))
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
