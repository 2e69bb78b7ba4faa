// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: the msgpack view library (bus/mp.c, bus/mp_rewrite.c),
 * the decoder every payload, context and agent answer goes through.
 *
 * Input: [ctl][split][bytes...]. The bytes are used whole as document A, and
 * split at @split into A' and B for the two-input writers (set, merge).
 *
 *  - Raw, unvalidated views of the bytes go to every accessor (type, scalar
 *    readers, count, get, index, path, iterators): accessors must check each
 *    length against the view they are given.
 *  - A validated document is walked completely; at every container the
 *    count must equal the iterated elements, index(i) must equal the i-th
 *    element, and get(key) must return the FIRST pair with that string key.
 *  - Rewrites: keeping every string must reproduce the input byte for byte
 *    (return 0); replacing strings must produce valid msgpack (return 1 when
 *    any was replaced); rewrite_at/rewrite_lazy with patterns from a table.
 *  - set and merge must produce valid maps holding the values they promise;
 *    set_fn (the value written by a callback) exactly what set writes, with
 *    the callback called once, or never when the map is refused; merge
 *    exactly the bytes and errors of a naive model built on the public
 *    readers (first occurrences, strings compared by content, anything
 *    else by its encoding).
 *  - get_keys gives, key by key, what get gives, and the number found;
 *    pack_strn the bytes msgpack-c packs.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include <pbus/mp.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, \
				__LINE__, #cond);                              \
			abort();                                               \
		}                                                              \
	} while (0)

static const char *const patterns[] = {
	NULL,	  "",	    "*",       "**",
	"args",	  "args.*", "args.**", "result.content.*.text",
	"a.**.b", "0",	    "*.0",     "**.x",
	"a..b",	  ".a",	    "a.",      "**.**.*",
};
#define NPAT (sizeof(patterns) / sizeof(patterns[0]))

static const char *const paths[] = {
	"",	 "a",
	"args",	 "0",
	"a.b",	 "result.content.0.text",
	"1.2.3", "a..b",
	"x.0.y", "18446744073709551616",
	"-1",
};
#define NPATH (sizeof(paths) / sizeof(paths[0]))

static int same(struct pbus_mp a, struct pbus_mp b)
{
	return a.len == b.len && (!a.len || !memcmp(a.p, b.p, a.len));
}

/* ------------------------------------------------------------ get_keys */

static const char *const fixed_keys[] = {"args", "", "state", "a", "x"};

/*
 * pbus_mp_get_keys() on @v for the fixed keys and up to 3 string keys of
 * @v itself (so that hits are common), checked against pbus_mp_get().
 */
static void get_keys(struct pbus_mp v)
{
	char own[3][32];
	const char *keys[8];
	struct pbus_mp vals[8], x, k;
	struct pbus_mp_iter it;
	unsigned n = 0, found = 0, bad = 0, inval = 0;
	int r, g;

	for (unsigned i = 0; i < 5; i++)
		keys[n++] = fixed_keys[i];
	if (v.len && !pbus_mp_iter_init(v, &it) && it.is_map)
		while (n < 8 && pbus_mp_next(&it, &k, NULL) > 0) {
			const char *s;
			size_t sl;

			if (pbus_mp_str(k, &s, &sl) || sl >= sizeof(own[0]))
				continue;
			memcpy(own[n - 5], s, sl);
			own[n - 5][sl] = 0;
			keys[n] = own[n - 5];
			n++;
		}
	r = pbus_mp_get_keys(v, keys, vals, n);
	for (unsigned i = 0; i < n; i++) {
		g = pbus_mp_get(v, keys[i], &x);
		CHECK(g == 0 || g == -ENOENT || g == -EINVAL || g == -EBADMSG);
		found += g == 0;
		bad += g == -EBADMSG;
		inval += g == -EINVAL;
		if (r >= 0 && g == 0)
			CHECK(same(vals[i], x) && vals[i].p == x.p);
		else
			CHECK(!vals[i].p && !vals[i].len);
	}
	if (r >= 0)
		CHECK(!bad && !inval && (unsigned)r == found);
	else if (r == -EBADMSG)
		CHECK(bad > 0);
	else
		CHECK(r == -EINVAL && inval == n);
}

/* ------------------------------------------------------------ raw views */

static void poke_scalars(struct pbus_mp v)
{
	bool b;
	int64_t i;
	uint64_t u;
	double d;
	const char *s;
	const void *p;
	size_t n;
	int8_t et;

	(void)pbus_mp_type_name(pbus_mp_type(v));
	(void)pbus_mp_is_nil(v);
	(void)pbus_mp_bool(v, &b);
	(void)pbus_mp_int(v, &i);
	(void)pbus_mp_uint(v, &u);
	(void)pbus_mp_float(v, &d);
	if (!pbus_mp_str(v, &s, &n) && n)
		CHECK(s >= (const char *)v.p &&
		      s + n <= (const char *)v.p + v.len);
	(void)pbus_mp_str_eq(v, "args");
	(void)pbus_mp_str_eqn(v, "result", 6);
	if (!pbus_mp_bin(v, &p, &n) && n)
		CHECK((const uint8_t *)p >= v.p &&
		      (const uint8_t *)p + n <= v.p + v.len);
	if (!pbus_mp_ext(v, &et, &p, &n) && n)
		CHECK((const uint8_t *)p >= v.p &&
		      (const uint8_t *)p + n <= v.p + v.len);
}

/* Accessors on a view that was never validated: errors, never OOB. */
static void poke_raw(struct pbus_mp v)
{
	struct pbus_mp_iter it;
	struct pbus_mp k, x;
	int guard = 0;

	poke_scalars(v);
	(void)pbus_mp_count(v);
	get_keys(v);
	(void)pbus_mp_get(v, "args", &x);
	(void)pbus_mp_getn(v, "", 0, &x);
	(void)pbus_mp_index(v, 3, &x);
	for (unsigned i = 0; i < NPATH; i++)
		(void)pbus_mp_path(v, paths[i], &x);
	if (pbus_mp_iter_init(v, &it))
		return;
	while (pbus_mp_next(&it, &k, &x) > 0 && ++guard < 100000) {
		CHECK(x.p >= v.p && x.p + x.len <= v.p + v.len);
		poke_scalars(x);
	}
}

/* ------------------------------------------------------------ walk */

static void walk(struct pbus_mp v, unsigned depth)
{
	enum pbus_mp_type t = pbus_mp_type(v);
	struct pbus_mp_iter it;
	struct pbus_mp k, x, y;
	int64_t cnt;
	uint32_t i = 0;
	int r;

	CHECK(t != PBUS_MP_INVALID);
	poke_scalars(v);
	if (t != PBUS_MP_MAP && t != PBUS_MP_ARRAY) {
		CHECK(pbus_mp_count(v) == -EINVAL);
		return;
	}
	/* the root container is depth 1 */
	CHECK(depth <= PBUS_MP_MAX_DEPTH);
	if (t == PBUS_MP_MAP && depth <= 4)
		get_keys(v);
	cnt = pbus_mp_count(v);
	CHECK(cnt >= 0);
	CHECK(pbus_mp_iter_init(v, &it) == 0);
	while ((r = pbus_mp_next(&it, &k, &x)) > 0) {
		CHECK(x.p >= v.p && x.p + x.len <= v.p + v.len);
		if (t == PBUS_MP_ARRAY) {
			/* index() is linear: only check the first few */
			if (i < 8) {
				CHECK(pbus_mp_index(v, i, &y) == 0);
				CHECK(same(x, y));
			}
		} else {
			const char *s;
			size_t n;

			CHECK(pbus_mp_type(k) != PBUS_MP_INVALID);
			walk(k, depth + 1);
			if (i < 8 && !pbus_mp_str(k, &s, &n)) {
				/* get() returns the first pair with this key */
				struct pbus_mp_iter j;
				struct pbus_mp k2, x2, first = {0};

				CHECK(pbus_mp_iter_init(v, &j) == 0);
				while (pbus_mp_next(&j, &k2, &x2) > 0)
					if (pbus_mp_str_eqn(k2, s, n)) {
						first = x2;
						break;
					}
				CHECK(pbus_mp_getn(v, s, n, &y) == 0);
				CHECK(same(y, first));
			}
		}
		walk(x, depth + 1);
		i++;
	}
	CHECK(r == 0);
	CHECK((int64_t)i == cnt);
	CHECK(pbus_mp_index(v, i, &y) ==
	      (t == PBUS_MP_ARRAY ? -ENOENT : -EINVAL));
}

/* ------------------------------------------------------------ writers */

struct out {
	msgpack_sbuffer sb;
	msgpack_packer pk;
};

static void out_init(struct out *o)
{
	msgpack_sbuffer_init(&o->sb);
	msgpack_packer_init(&o->pk, &o->sb, msgpack_sbuffer_write);
}

static void out_fini(struct out *o)
{
	msgpack_sbuffer_destroy(&o->sb);
}

struct rw {
	unsigned mode; /* 0 keep, 1 upper, 2 int, 3 nil, 4 every other */
	unsigned calls;
	unsigned replaced;
};

static int rw_cb(const struct pbus_mp_path *path, const char *s, size_t n,
		 void *arg, msgpack_packer *pk)
{
	struct rw *w = arg;
	char pbuf[64], up[256];
	size_t need;

	CHECK(path->depth <= PBUS_MP_MAX_DEPTH);
	need = pbus_mp_path_format(path, pbuf, sizeof(pbuf));
	/* keys are copied as they are: one holding a NUL ends the C string
	 * early, so only an upper bound holds */
	CHECK(strlen(pbuf) <= (need < sizeof(pbuf) ? need : sizeof(pbuf) - 1));
	for (unsigned i = 0; i < NPAT; i++)
		(void)pbus_mp_path_match(path, patterns[i] ? patterns[i] : "");
	w->calls++;
	switch (w->mode) {
	case 0:
		return 0;
	case 1:
		if (n > sizeof(up))
			n = sizeof(up);
		for (size_t i = 0; i < n; i++)
			up[i] = (char)(s[i] >= 'a' && s[i] <= 'z' ? s[i] - 32
								  : s[i]);
		CHECK(pbus_mp_pack_strn(pk, up, n) == 0);
		break;
	case 2:
		msgpack_pack_int64(pk, (int64_t)n);
		break;
	case 3:
		msgpack_pack_nil(pk);
		break;
	default:
		if (w->calls & 1)
			return 0;
		CHECK(pbus_mp_pack_cstr(pk, "[REDACTED]") == 0);
		break;
	}
	w->replaced++;
	return 1;
}

static struct out lazy_out;
static unsigned lazy_sinks;

static msgpack_packer *lazy_sink(void *arg)
{
	(void)arg;
	lazy_sinks++;
	return &lazy_out.pk;
}

static void rewrites(struct pbus_mp v, unsigned ctl)
{
	struct pbus_mp o;
	struct out out;
	struct rw w = {0};
	const char *pat = patterns[(ctl >> 4) % NPAT];
	int r;

	/* identity: byte for byte, one write */
	out_init(&out);
	r = pbus_mp_rewrite(v, rw_cb, &w, &out.pk);
	CHECK(r == 0);
	CHECK(out.sb.size == v.len && !memcmp(out.sb.data, v.p, v.len));
	out_fini(&out);

	/* replacing */
	memset(&w, 0, sizeof(w));
	w.mode = 1 + (ctl & 3);
	out_init(&out);
	r = pbus_mp_rewrite(v, rw_cb, &w, &out.pk);
	CHECK(r == (w.replaced ? 1 : 0));
	CHECK(pbus_mp_open(out.sb.data, out.sb.size, &o) == 0);
	/* a root string is a value too: it may become anything */
	CHECK(pbus_mp_type(o) == pbus_mp_type(v) ||
	      pbus_mp_type(v) == PBUS_MP_STR);
	if (w.mode <= 3 && w.replaced) {
		/* every string was replaced: the rewrite is a fixed point
		 * for the identity callback too */
		struct out o2;
		struct rw w2 = {0};

		out_init(&o2);
		CHECK(pbus_mp_rewrite(o, rw_cb, &w2, &o2.pk) == 0);
		CHECK(o2.sb.size == o.len);
		out_fini(&o2);
	}
	out_fini(&out);

	/* pattern */
	memset(&w, 0, sizeof(w));
	w.mode = 1 + ((ctl >> 2) & 3);
	out_init(&out);
	r = pbus_mp_rewrite_at(v, pat, rw_cb, &w, &out.pk);
	CHECK(r == -EINVAL || r == (w.replaced ? 1 : 0));
	if (r >= 0)
		CHECK(pbus_mp_open(out.sb.data, out.sb.size, &o) == 0);
	out_fini(&out);

	/* lazy: nothing written unless something changes */
	memset(&w, 0, sizeof(w));
	w.mode = (ctl >> 6) & 3;
	out_init(&lazy_out);
	lazy_sinks = 0;
	r = pbus_mp_rewrite_lazy(v, pat, rw_cb, &w, lazy_sink, NULL);
	CHECK(lazy_sinks <= 1);
	if (r == 0)
		CHECK(lazy_sinks == 0 && lazy_out.sb.size == 0);
	if (r == 1)
		CHECK(pbus_mp_open(lazy_out.sb.data, lazy_out.sb.size, &o) ==
		      0);
	out_fini(&lazy_out);
}

/* ------------------------------------------------------------ model */

/* Strings by their content, whatever the head; other keys by encoding. */
static bool key_eq(struct pbus_mp a, struct pbus_mp b)
{
	const char *s, *t;
	size_t n, m;
	bool as = !pbus_mp_str(a, &s, &n), bs = !pbus_mp_str(b, &t, &m);

	if (as || bs)
		return as && bs && n == m && !memcmp(s, t, n);
	return a.len == b.len && !memcmp(a.p, b.p, a.len);
}

struct model_map {
	unsigned n;
	struct pbus_mp k[PBUS_MP_MERGE_MAX], v[PBUS_MP_MERGE_MAX];
};

static struct model_map mb, mo;

/* merge's checks on one input, in its order; then its pairs. */
static int model_load(struct pbus_mp m, struct model_map *r)
{
	struct pbus_mp_iter it;
	struct pbus_mp v;

	r->n = 0;
	if (!m.p || !m.len || (m.len == 1 && m.p[0] == 0xc0))
		return 0;
	if (pbus_mp_type(m) == PBUS_MP_INVALID)
		return -EBADMSG;
	if (pbus_mp_type(m) != PBUS_MP_MAP)
		return -EINVAL;
	if (pbus_mp_count(m) > PBUS_MP_MERGE_MAX)
		return -E2BIG;
	if (pbus_mp_open(m.p, m.len, &v))
		return -EBADMSG;
	CHECK(pbus_mp_iter_init(m, &it) == 0);
	while (pbus_mp_next(&it, &r->k[r->n], &r->v[r->n]) > 0)
		r->n++;
	CHECK(r->n == (unsigned)pbus_mp_count(m));
	return 0;
}

static int model_find(const struct model_map *r, unsigned lim, struct pbus_mp k)
{
	for (unsigned i = 0; i < lim; i++)
		if (key_eq(r->k[i], k))
			return (int)i;
	return -1;
}

static int model_merge(struct pbus_mp base, struct pbus_mp over,
		       msgpack_packer *pk)
{
	uint32_t count = 0;
	int r = model_load(base, &mb), j;

	if (!r)
		r = model_load(over, &mo);
	if (r)
		return r;
	for (unsigned i = 0; i < mb.n; i++)
		count += model_find(&mb, i, mb.k[i]) < 0;
	for (unsigned i = 0; i < mo.n; i++)
		count += model_find(&mo, i, mo.k[i]) < 0 &&
			 model_find(&mb, mb.n, mo.k[i]) < 0;
	msgpack_pack_map(pk, count);
	for (unsigned i = 0; i < mb.n; i++) {
		if (model_find(&mb, i, mb.k[i]) >= 0)
			continue;
		j = model_find(&mo, mo.n, mb.k[i]);
		pbus_mp_copy(pk, mb.k[i]);
		pbus_mp_copy(pk, j >= 0 ? mo.v[j] : mb.v[i]);
	}
	for (unsigned i = 0; i < mo.n; i++)
		if (model_find(&mo, i, mo.k[i]) < 0 &&
		    model_find(&mb, mb.n, mo.k[i]) < 0) {
			pbus_mp_copy(pk, mo.k[i]);
			pbus_mp_copy(pk, mo.v[i]);
		}
	return 0;
}

/* ------------------------------------------------------------ set, merge */

struct value {
	struct pbus_mp v; /* written as it is */
	int ret;	  /* or, when v is empty, returned */
	unsigned calls;
};

static int value_cb(void *arg, msgpack_packer *pk)
{
	struct value *val = arg;

	val->calls++;
	if (!val->v.len)
		return val->ret;
	return pbus_mp_copy(pk, val->v);
}

/* pbus_mp_set_fn() must write what pbus_mp_set() writes. */
static void set_fn(struct pbus_mp a, const char *key, struct pbus_mp b,
		   int set_ret, const struct out *set_out)
{
	struct value val = {.v = b};
	struct out out;
	int r;

	out_init(&out);
	r = pbus_mp_set_fn(a, key, value_cb, &val, &out.pk);
	if (set_ret == 0) {
		CHECK(r == 0 && val.calls == 1);
		CHECK(out.sb.size == set_out->sb.size &&
		      !memcmp(out.sb.data, set_out->sb.data, out.sb.size));
	} else if (r) {
		/* the map refused, as set refused it, before any callback
		 * (set may refuse @b itself, which set_fn does not check) */
		CHECK(r == set_ret && val.calls == 0 && out.sb.size == 0);
	}
	out_fini(&out);

	/* a failing callback: its error, as it is */
	memset(&val, 0, sizeof(val));
	val.ret = -EPERM;
	out_init(&out);
	r = pbus_mp_set_fn(a, key, value_cb, &val, &out.pk);
	CHECK(val.calls ? r == -EPERM : r == -EINVAL || r == -EBADMSG);
	out_fini(&out);
}

static void set_and_merge(struct pbus_mp a, int a_ok, struct pbus_mp b,
			  int b_ok, unsigned ctl)
{
	static const char *const keys[] = {"args", "", "state", "a.b", "x"};
	const char *key = keys[ctl % 5];
	struct pbus_mp o, x, y;
	struct out out;
	int r;

	/* set: also on unvalidated views, which must be refused or handled */
	out_init(&out);
	r = pbus_mp_set(a, key, b, &out.pk);
	if (r == 0) {
		CHECK(pbus_mp_open(out.sb.data, out.sb.size, &o) == 0);
		CHECK(pbus_mp_type(o) == PBUS_MP_MAP);
		CHECK(pbus_mp_get(o, key, &x) == 0);
		CHECK(same(x, b));
	} else {
		CHECK(r == -EINVAL || r == -EBADMSG);
		CHECK(out.sb.size == 0);
	}
	if (a_ok && b_ok && pbus_mp_type(a) == PBUS_MP_MAP)
		CHECK(r == 0);
	set_fn(a, key, b, r, &out);
	out_fini(&out);

	/* merge */
	out_init(&out);
	r = pbus_mp_merge(a, b, &out.pk);
	if (r == 0) {
		struct pbus_mp_iter it;
		struct pbus_mp k, v;
		int64_t n = 0;

		CHECK(pbus_mp_open(out.sb.data, out.sb.size, &o) == 0);
		CHECK(pbus_mp_type(o) == PBUS_MP_MAP);
		/* every string key of @b maps to b's (first) value */
		if (b.len && pbus_mp_type(b) == PBUS_MP_MAP &&
		    !pbus_mp_iter_init(b, &it)) {
			while (pbus_mp_next(&it, &k, &v) > 0 && n++ < 16) {
				const char *s;
				size_t sl;

				if (pbus_mp_str(k, &s, &sl))
					continue;
				CHECK(pbus_mp_getn(b, s, sl, &x) == 0);
				CHECK(pbus_mp_getn(o, s, sl, &y) == 0);
				CHECK(same(x, y));
			}
		}
	} else {
		CHECK(r == -EINVAL || r == -EBADMSG || r == -E2BIG);
		CHECK(out.sb.size == 0);
	}
	/* byte for byte and error for error, the model's answer */
	{
		struct out want;

		out_init(&want);
		CHECK(model_merge(a, b, &want.pk) == r);
		if (!r)
			CHECK(want.sb.size == out.sb.size &&
			      !memcmp(want.sb.data, out.sb.data, out.sb.size));
		out_fini(&want);
	}
	out_fini(&out);
}

/* pbus_mp_pack_strn() packs what msgpack-c packs, in fewer writes. */
static void pack_str(const uint8_t *s, size_t n)
{
	struct out a, b;

	out_init(&a);
	out_init(&b);
	CHECK(pbus_mp_pack_strn(&a.pk, (const char *)s, n) == 0);
	msgpack_pack_str_with_body(&b.pk, s, n);
	CHECK(a.sb.size == b.sb.size &&
	      !memcmp(a.sb.data, b.sb.data, a.sb.size));
	out_fini(&a);
	out_fini(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pbus_mp raw, v, a = {0}, b = {0};
	unsigned ctl, split;
	int ok, a_ok, b_ok;
	uint8_t *copy;

	if (size < 2)
		return 0;
	ctl = data[0];
	split = data[1];
	data += 2;
	size -= 2;
	split = size ? (unsigned)((size * split) / 255) : 0;

	/* an exact-size heap copy: ASan sees any read past it */
	copy = malloc(size ? size : 1);
	memcpy(copy, data, size);
	raw = (struct pbus_mp){copy, size};
	poke_raw(raw);

	ok = pbus_mp_open(copy, size, &v) == 0;
	if (ok) {
		CHECK(v.p == copy && v.len == size);
		walk(v, 1);
		rewrites(v, ctl);
	} else {
		struct pbus_mp t;
		struct rw w = {0};
		struct out out;

		/* a malformed view must be refused, whatever was written */
		out_init(&out);
		CHECK(pbus_mp_rewrite(raw, rw_cb, &w, &out.pk) < 0);
		out_fini(&out);
		if (!pbus_mp_open2(copy, size, PBUS_MP_ALLOW_TRAILING, &t)) {
			CHECK(t.p == copy && t.len < size);
			walk(t, 1);
		}
	}

	/* two documents */
	a_ok = pbus_mp_open(copy, split, &a) == 0;
	b_ok = pbus_mp_open(copy + split, size - split, &b) == 0;
	if (!a_ok)
		a = (struct pbus_mp){copy, split};
	if (!b_ok)
		b = (struct pbus_mp){copy + split, size - split};
	set_and_merge(a, a_ok, b, b_ok, ctl);
	pack_str(copy, split);
	free(copy);
	return 0;
}
