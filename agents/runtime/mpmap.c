// SPDX-License-Identifier: MIT
/*
 * Agent runtime: msgpack map helpers for the hot path (rt.h). An agent's
 * answer is typically "the payload (or the local context) with one key
 * changed" or "this map merged over that one", written once per call.
 * libpbus has both (pbus_mp_setn(), pbus_mp_merge()), but they take the new
 * value as a validated view -- so the agents packed it into a buffer,
 * validated the buffer, then copied it into the answer -- and
 * pbus_mp_merge() decodes both keys' heads again for each of its
 * O((n + m)^2) key comparisons.
 *
 * Here rt_mp_merge() writes exactly the bytes pbus_mp_merge() writes (same
 * key order, same verbatim runs, same map head) but decodes every key once;
 * rt_mp_set_fn() writes exactly what pbus_mp_setn() writes, with the new
 * value written by a callback straight into the output; rt_mp_get_keys()
 * looks up several keys in one pass. Pairs are sized from their heads
 * (quick_len()); anything unusual -- a big map, an object that is not sized
 * from its head, malformed bytes -- goes to libpbus, whose answer, output or
 * error, is then the answer. The rest are small wrappers: the pbus_call_*()
 * forms on a payload view already taken, short strings packed in one write,
 * and pieces packed once at start-up (rt_sbuf_packer(), rt_pack_piece()).
 *
 * Inputs are views of validated documents (pbus_mp_open() and the views
 * derived from it) or what the agent packed itself. Nothing allocates, but
 * rt_sbuf_packer()'s buffer and the fallbacks' spill buffers.
 */
#include "rt.h"

#include <errno.h>
#include <string.h>

/* Pairs a map may have for the fast paths (larger ones go to libpbus). */
#define RT_MAP_MAX 32

/* One pair: its key decoded once, and where the pair's bytes are. */
struct ent {
	const uint8_t *k, *v, *end; /* key, value, end of the pair */
	const uint8_t *kb;	    /* a string key's body, else the key */
	size_t kn;		    /* its length */
	bool str;		    /* the key is a string */
	int fate; /* rt_mp_merge(): DROP, KEEP, or the @over pair to take */
};

enum { DROP = -2, KEEP = -1 };

struct ents {
	uint32_t n;
	const uint8_t *start, *end; /* the pairs' bytes */
	struct ent e[RT_MAP_MAX];
};

/* nil and the empty view are an empty map, as for pbus_mp_merge(). */
static bool is_empty_map(struct pbus_mp m)
{
	return !m.p || !m.len || (m.len == 1 && m.p[0] == 0xc0);
}

/*
 * Length of the object at @p[0, @end - @p), from its head alone for a
 * scalar (a tag's fixed size, or a str's length field) and from its
 * elements' for a fixmap or fixarray nested at most @depth deep. 0: not
 * sized here (anything else, or malformed).
 */
static size_t quick_len(const uint8_t *p, const uint8_t *end, unsigned depth)
{
	/* 0xc0..0xdf: the size of a fixed-size object, 0 for the others */
	static const uint8_t fixed[32] = {
		1,  0, 1, 1, 0, 0, 0, 0,  /* c0 nil, c2 c3 bool */
		0,  0, 5, 9, 2, 3, 5, 9,  /* ca cb float, cc..cf uint */
		2,  3, 5, 9, 3, 4, 6, 10, /* d0..d3 int, d4..d7 fixext */
		18, 0, 0, 0, 0, 0, 0, 0,  /* d8 fixext16 */
	};
	size_t avail = (size_t)(end - p), n, k;
	uint8_t t;

	if (!avail)
		return 0;
	t = p[0];
	if (t <= 0x7f || t >= 0xe0) {
		n = 1;
	} else if (t <= 0x9f) { /* fixmap, fixarray */
		k = (size_t)(t & 0x0f) << (t <= 0x8f);
		if (k && !depth)
			return 0;
		for (n = 1; k; k--) {
			size_t l = quick_len(p + n, end, depth - 1);

			if (!l)
				return 0;
			n += l;
		}
	} else if (t <= 0xbf) {
		n = 1 + (t & 0x1fu);
	} else if (fixed[t - 0xc0]) {
		n = fixed[t - 0xc0];
	} else if (t == 0xd9 && avail >= 2) {
		n = 2 + (size_t)p[1];
	} else if (t == 0xda && avail >= 3) {
		n = 3 + ((size_t)p[1] << 8 | p[2]);
	} else if (t == 0xdb && avail >= 5) {
		n = 5 + ((size_t)p[1] << 24 | (size_t)p[2] << 16 |
			 (size_t)p[3] << 8 | p[4]);
	} else {
		return 0;
	}
	return n <= avail ? n : 0;
}

/* Length of the object at @p[0, @end - @p), 0 if it is malformed. Most
 * objects are sized here; the rest are measured and validated by libpbus,
 * which also has the last word on anything quick_len() refused. */
static inline size_t obj_len(const uint8_t *p, const uint8_t *end)
{
	struct pbus_mp v;
	size_t n;

	/* fixstr first: nearly every key, most values */
	if (p < end && (*p & 0xe0) == 0xa0) {
		n = 1 + (*p & 0x1fu);
		return n <= (size_t)(end - p) ? n : 0;
	}
	n = quick_len(p, end, 4);
	if (n)
		return n;
	return pbus_mp_open2(p, (size_t)(end - p), PBUS_MP_ALLOW_TRAILING, &v)
		       ? 0
		       : v.len;
}

/* The next pair of map iterator @it as an entry: 1, 0 at the end, or
 * -EBADMSG (the iterator is then at its end, as pbus_mp_next() leaves it). */
static int next_ent(struct pbus_mp_iter *it, struct ent *e)
{
	size_t kl, vl = 0;
	const char *s;

	if (!it->left)
		return 0;
	kl = obj_len(it->p, it->end);
	if (kl)
		vl = obj_len(it->p + kl, it->end);
	if (!vl) {
		it->left = 0;
		it->p = it->end;
		return -EBADMSG;
	}
	e->k = it->p;
	e->v = e->k + kl;
	e->end = e->v + vl;
	it->p = e->end;
	it->left--;
	it->index++;
	if (e->k[0] >= 0xa0 && e->k[0] <= 0xbf) {
		e->str = true;
		e->kb = e->k + 1;
		e->kn = kl - 1;
	} else if (e->k[0] == 0xd9) {
		e->str = true;
		e->kb = e->k + 2;
		e->kn = kl - 2;
	} else {
		e->str = !pbus_mp_str((struct pbus_mp){e->k, kl}, &s, &e->kn);
		if (e->str) {
			e->kb = (const uint8_t *)s;
		} else {
			e->kb = e->k;
			e->kn = kl;
		}
	}
	return 1;
}

/* Decode @m's pairs; -EAGAIN: not something the fast path handles. */
static int ents_load(struct pbus_mp m, struct ents *t)
{
	struct pbus_mp_iter it;
	int ret;

	t->n = 0;
	if (is_empty_map(m)) {
		t->start = t->end = NULL;
		return 0;
	}
	if (pbus_mp_iter_init(m, &it) || !it.is_map || it.left > RT_MAP_MAX)
		return -EAGAIN;
	t->start = it.p;
	while ((ret = next_ent(&it, &t->e[t->n])) > 0)
		t->n++;
	if (ret < 0 || it.p != m.p + m.len)
		return -EAGAIN;
	t->end = it.p;
	return 0;
}

/* pbus__mp_key_eq() on decoded keys. */
static bool key_eq(const struct ent *a, const struct ent *b)
{
	return a->kn == b->kn && a->str == b->str &&
	       !memcmp(a->kb, b->kb, a->kn);
}

/* First pair of @t among [0, @lim) whose key equals @k's, or -1. */
static int find(const struct ents *t, uint32_t lim, const struct ent *k)
{
	for (uint32_t i = 0; i < lim; i++)
		if (key_eq(&t->e[i], k))
			return (int)i;
	return -1;
}

static int wr(msgpack_packer *pk, const void *p, size_t n)
{
	if (!n)
		return 0;
	return pk->callback(pk->data, (const char *)p, n) ? -ENOBUFS : 0;
}

int rt_mp_merge(struct pbus_mp base, struct pbus_mp over, msgpack_packer *pk)
{
	struct ents b, o;
	const uint8_t *pending;
	uint32_t count = 0;
	int ret = 0;

	if (!pk)
		return -EINVAL;
	if (ents_load(base, &b) || ents_load(over, &o))
		return pbus_mp_merge(base, over, pk);
	/* Each pair's fate, decided once: a base pair is dropped (a repeated
	 * key), takes @over's value, or stays; an @over pair is written only
	 * if its key is new to both maps. */
	for (uint32_t i = 0; i < b.n; i++) {
		struct ent *e = &b.e[i];

		e->fate = find(&b, i, e) >= 0 ? DROP : find(&o, o.n, e);
		count += e->fate != DROP;
	}
	for (uint32_t i = 0; i < o.n; i++) {
		struct ent *e = &o.e[i];

		e->fate = find(&o, i, e) >= 0 || find(&b, b.n, e) >= 0 ? DROP
								       : KEEP;
		count += e->fate != DROP;
	}
	if (msgpack_pack_map(pk, count))
		return -ENOBUFS;
	/* base pairs in verbatim runs; a key @over has keeps its bytes */
	pending = b.start;
	for (uint32_t i = 0; i < b.n && !ret; i++) {
		const struct ent *e = &b.e[i], *oe;

		if (e->fate == DROP) {
			ret = wr(pk, pending, (size_t)(e->k - pending));
			pending = e->end;
		} else if (e->fate != KEEP) {
			oe = &o.e[e->fate];
			ret = wr(pk, pending, (size_t)(e->v - pending));
			if (!ret)
				ret = wr(pk, oe->v, (size_t)(oe->end - oe->v));
			pending = e->end;
		}
	}
	if (!ret)
		ret = wr(pk, pending, (size_t)(b.end - pending));
	/* then the pairs only @over has */
	pending = o.start;
	for (uint32_t i = 0; i < o.n && !ret; i++) {
		if (o.e[i].fate == DROP) {
			ret = wr(pk, pending, (size_t)(o.e[i].k - pending));
			pending = o.e[i].end;
		}
	}
	return ret ? ret : wr(pk, pending, (size_t)(o.end - pending));
}

/* rt_mp_set_fn() the plain way, for what its fast path leaves out. */
static int set_slow(struct pbus_mp map, const char *key, rt_mp_value_fn *fn,
		    void *arg, msgpack_packer *pk)
{
	struct pbus_mbuf b;
	struct pbus_mp v;
	char mem[256];
	int ret = fn(arg, pbus_mbuf_init(&b, mem, sizeof(mem)));

	if (!ret)
		ret = pbus_mbuf_view(&b, &v);
	if (!ret)
		ret = pbus_mp_set(map, key, v, pk);
	pbus_mbuf_fini(&b);
	return ret;
}

int rt_mp_set_fn(struct pbus_mp map, const char *key, rt_mp_value_fn *fn,
		 void *arg, msgpack_packer *pk)
{
	static const uint8_t empty_map = 0x80;
	struct ent k = {.kb = (const uint8_t *)key, .str = true}, e;
	struct ent hit[RT_MAP_MAX]; /* the pairs with @key, in order */
	const uint8_t *pending, *end;
	struct pbus_mp_iter it;
	uint32_t hits = 0;
	int ret = 0;

	if (!pk || !key)
		return -EINVAL;
	k.kn = strlen(key);
	if (is_empty_map(map))
		map = (struct pbus_mp){&empty_map, 1};
	if (pbus_mp_iter_init(map, &it) || !it.is_map)
		return set_slow(map, key, fn, arg, pk);
	/* one pass: validate, find the key's occurrences */
	pending = it.p;
	end = map.p + map.len;
	while ((ret = next_ent(&it, &e)) > 0) {
		if (!key_eq(&e, &k))
			continue;
		if (hits == RT_MAP_MAX)
			return set_slow(map, key, fn, arg, pk);
		hit[hits++] = e;
	}
	if (ret < 0 || it.p != end || (!hits && it.index == UINT32_MAX))
		return set_slow(map, key, fn, arg, pk);
	/* the first occurrence keeps its place and key bytes, with @fn's
	 * value; later ones are dropped; no occurrence: appended */
	if (msgpack_pack_map(pk, it.index - hits + 1))
		return -ENOBUFS;
	for (uint32_t i = 0; i < hits && !ret; i++) {
		if (!i) {
			ret = wr(pk, pending, (size_t)(hit[i].v - pending));
			if (!ret)
				ret = fn(arg, pk);
		} else {
			ret = wr(pk, pending, (size_t)(hit[i].k - pending));
		}
		pending = hit[i].end;
	}
	if (!ret)
		ret = wr(pk, pending, (size_t)(end - pending));
	if (!ret && !hits) {
		ret = pbus_mp_pack_strn(pk, key, k.kn);
		if (!ret)
			ret = fn(arg, pk);
	}
	return ret;
}

int rt_mp_get_keys(struct pbus_mp map, const char *const *keys,
		   struct pbus_mp *vals, unsigned n)
{
	struct pbus_mp_iter it;
	struct ent e;
	unsigned left = n;
	size_t kn[RT_KEYS_MAX];
	int ret;

	if (n > RT_KEYS_MAX)
		return -EINVAL;
	for (unsigned i = 0; i < n; i++) {
		vals[i] = (struct pbus_mp){0};
		kn[i] = strlen(keys[i]);
	}
	ret = pbus_mp_iter_init(map, &it);
	if (ret)
		return ret;
	if (!it.is_map)
		return -EINVAL;
	while (left && (ret = next_ent(&it, &e)) > 0) {
		if (!e.str)
			continue;
		for (unsigned i = 0; i < n; i++) {
			if (vals[i].p || kn[i] != e.kn ||
			    memcmp(keys[i], e.kb, e.kn))
				continue;
			vals[i] = (struct pbus_mp){e.v, (size_t)(e.end - e.v)};
			left--;
			break;
		}
	}
	return ret < 0 ? ret : 0;
}

int rt_mp_get(struct pbus_mp map, const char *key, struct pbus_mp *val)
{
	struct pbus_mp v;
	int ret = rt_mp_get_keys(map, &key, &v, 1);

	if (ret)
		return ret;
	if (!v.p)
		return -ENOENT;
	*val = v;
	return 0;
}

int rt_call_modify_set_fn(struct pbus_call *c, struct pbus_mp pl,
			  const char *key, rt_mp_value_fn *fn, void *arg)
{
	/* pbus_call_modify_set()'s check, before anything is written */
	if (pl.len && pbus_mp_type(pl) != PBUS_MP_MAP && !pbus_mp_is_nil(pl))
		return -EINVAL;
	return rt_mp_set_fn(pl, key, fn, arg, pbus_call_modify(c));
}

static msgpack_packer *sink_modify(void *c)
{
	return pbus_call_modify(c);
}

int rt_call_rewrite(struct pbus_call *c, struct pbus_mp pl, const char *pattern,
		    pbus_mp_rewrite_fn *fn, void *arg)
{
	return pbus_mp_rewrite_lazy(pl, pattern, fn, arg, sink_modify, c);
}

/* The local context's @part map ("state" or "metadata"), or the empty view
 * (as libpbus reads it for pbus_call_state_merge()). */
static struct pbus_mp lctx_part(const struct pbus_call *c, const char *part)
{
	struct pbus_mp l, v = {0};

	if (pbus_call_lctx_view(c, &l) || pbus_mp_get(l, part, &v) ||
	    pbus_mp_type(v) != PBUS_MP_MAP)
		return (struct pbus_mp){0};
	return v;
}

static int merge_part(struct pbus_call *c, const char *part, const char *key,
		      struct pbus_mp over)
{
	struct pbus_mp cur = lctx_part(c, part);

	if (pbus_mp_type(over) != PBUS_MP_MAP)
		return -EINVAL;
	if (pbus_mp_count(cur) > PBUS_MP_MERGE_MAX ||
	    pbus_mp_count(over) > PBUS_MP_MERGE_MAX)
		return -E2BIG;
	return rt_mp_merge(cur, over, pbus_call_put(c, key));
}

int rt_call_state_merge(struct pbus_call *c, struct pbus_mp over)
{
	return merge_part(c, "state", "state", over);
}

int rt_call_state_merge_own(struct pbus_call *c, struct pbus_mp over)
{
	/* merge(nothing, @over) is @over: its keys once each, in its order,
	 * under the head msgpack-c packs for their count -- as packed */
	if (!lctx_part(c, "state").len && pbus_mp_type(over) == PBUS_MP_MAP &&
	    pbus_mp_count(over) <= PBUS_MP_MERGE_MAX)
		return pbus_mp_copy(pbus_call_state(c), over);
	return merge_part(c, "state", "state", over);
}

int rt_call_local_metadata_merge(struct pbus_call *c, struct pbus_mp over)
{
	return merge_part(c, "metadata", "local_metadata", over);
}

int rt_mbuf_view(const struct pbus_mbuf *b, struct pbus_mp *out)
{
	if (b->err)
		return b->err;
	if (!b->len)
		return -EBADMSG;
	out->p = b->p;
	out->len = b->len;
	return 0;
}

int rt_pack_strn(msgpack_packer *pk, const char *s, size_t n)
{
	char b[32];

	if (n >= 32)
		return pbus_mp_pack_strn(pk, s, n);
	b[0] = (char)(0xa0 | n); /* fixstr */
	memcpy(b + 1, s, n);
	return wr(pk, b, n + 1);
}

msgpack_packer *rt_pack_key(msgpack_packer *pk, const char *key)
{
	rt_pack_strn(pk, key, strlen(key));
	return pk;
}

static int sbuf_write(void *data, const char *buf, size_t n)
{
	return sbuf_add(data, buf, n) ? -1 : 0;
}

msgpack_packer *rt_sbuf_packer(struct sbuf *b, msgpack_packer *pk)
{
	msgpack_packer_init(pk, b, sbuf_write);
	return pk;
}
