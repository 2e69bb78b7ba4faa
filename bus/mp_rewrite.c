// SPDX-License-Identifier: MIT
/*
 * pbus_mp writers: verbatim copy, string rewriting, path patterns, map set
 * and shallow merge, all writing through a caller's msgpack_packer.
 *
 * The rewriter never re-encodes what it does not change. It keeps a pending
 * span [pending, here) of input bytes known to be unchanged and writes it
 * only when something different must follow: when a callback writes its
 * first byte (through a shim packer that flushes the span first) and at the
 * end. An untouched document therefore costs exactly one write, and a
 * changed one costs one write per unchanged stretch plus the callbacks' own.
 * Replacing one object by one object keeps every container count valid, so
 * heads are copied as they are.
 *
 * Recursion is bounded by PBUS_MP_MAX_DEPTH (deeper input is -EBADMSG);
 * nothing allocates. Set and merge validate their inputs completely before
 * writing their first byte. No shared state: every function is reentrant.
 */
#include "pbus/mp.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "mp_internal.h"

/* Packer callbacks return 0 on success; anything else is a failed write. */
static int wr(msgpack_packer *pk, const void *p, size_t n)
{
	if (!n)
		return 0;
	return pk->callback(pk->data, (const char *)p, n) ? -ENOBUFS : 0;
}

int pbus_mp_copy(msgpack_packer *pk, struct pbus_mp v)
{
	if (!v.p || !v.len)
		return -EINVAL;
	return wr(pk, v.p, v.len);
}

/* Strings up to this long are packed in one write, head and body. */
#define SHORT_STR 62

int pbus_mp_pack_strn(msgpack_packer *pk, const char *s, size_t n)
{
	uint8_t b[2 + SHORT_STR];
	size_t hl;

	if (!s)
		return msgpack_pack_nil(pk) ? -ENOBUFS : 0;
	if (n > UINT32_MAX)
		return -EMSGSIZE;
	if (n > SHORT_STR) {
		if (msgpack_pack_str(pk, n) || msgpack_pack_str_body(pk, s, n))
			return -ENOBUFS;
		return 0;
	}
	/* the head msgpack_pack_str() writes: fixstr below 32, else str8;
	 * most keys and short values, so one write instead of two */
	if (n < 32) {
		b[0] = (uint8_t)(0xa0 | n);
		hl = 1;
	} else {
		b[0] = 0xd9;
		b[1] = (uint8_t)n;
		hl = 2;
	}
	if (n)
		memcpy(b + hl, s, n);
	return wr(pk, b, hl + n);
}

int pbus_mp_pack_cstr(msgpack_packer *pk, const char *s)
{
	return pbus_mp_pack_strn(pk, s, s ? strlen(s) : 0);
}

/* ------------------------------------------------------------ patterns */

#define PAT_MAX 63 /* segments; state bits 0..PAT_MAX fit in a uint64_t */

/*
 * A compiled pattern is a small NFA: state j means "segments [0, j) of the
 * pattern matched", state n accepts. A set of states is a bit mask.
 */
struct pat {
	unsigned n;
	uint64_t globstar; /* bit j: segment j is "**" */
	struct {
		const char *s;
		size_t len;
		int64_t num; /* decimal value, or -1 */
		bool star;   /* "*" */
	} seg[PAT_MAX];
};

static int pat_compile(const char *pattern, struct pat *pt)
{
	const char *s = pattern, *dot;
	size_t len;

	pt->n = 0;
	pt->globstar = 0;
	if (!*s)
		return 0;
	for (;; s = dot + 1) {
		dot = strchr(s, '.');
		len = dot ? (size_t)(dot - s) : strlen(s);
		if (!len || pt->n == PAT_MAX)
			return -EINVAL;
		pt->seg[pt->n].s = s;
		pt->seg[pt->n].len = len;
		pt->seg[pt->n].star = len == 1 && s[0] == '*';
		pt->seg[pt->n].num = -1;
		if (len == 2 && s[0] == '*' && s[1] == '*')
			pt->globstar |= 1ull << pt->n;
		if (len <= 10 && strspn(s, "0123456789") >= len) {
			int64_t v = 0;

			for (size_t i = 0; i < len; i++)
				v = v * 10 + (s[i] - '0');
			if (v <= UINT32_MAX)
				pt->seg[pt->n].num = v;
		}
		pt->n++;
		if (!dot)
			return 0;
	}
}

/* Add the states reachable by letting a "**" match nothing. */
static uint64_t pat_close(const struct pat *pt, uint64_t st)
{
	for (unsigned j = 0; j < pt->n; j++)
		if ((st >> j & 1) && (pt->globstar >> j & 1))
			st |= 1ull << (j + 1);
	return st;
}

/* A path segment decoded once for matching against every pattern state. */
struct seg_key {
	const char *s; /* string key bytes, or NULL (index or other key) */
	size_t n;
	int64_t index; /* array index, or -2 for a map key */
};

static void seg_key(const struct pbus_mp_seg *sg, struct seg_key *sk)
{
	struct pbus__mp_head h;

	sk->s = NULL;
	sk->n = 0;
	sk->index = -2;
	if (!sg->key.p) {
		sk->index = sg->index;
	} else if (!pbus__mp_head(sg->key.p, sg->key.len, &h) &&
		   h.type == PBUS_MP_STR) {
		sk->s = (const char *)sg->key.p + h.hlen;
		sk->n = h.self - h.hlen;
	}
}

static bool pat_seg_match(const struct pat *pt, unsigned j,
			  const struct seg_key *sk)
{
	if (pt->seg[j].star)
		return true;
	if (sk->index >= 0)
		return pt->seg[j].num == sk->index;
	return sk->s && sk->n == pt->seg[j].len &&
	       !memcmp(sk->s, pt->seg[j].s, sk->n);
}

/* States after consuming one path segment. */
static uint64_t pat_step(const struct pat *pt, uint64_t st,
			 const struct pbus_mp_seg *sg)
{
	uint64_t out = 0, m = st & ((1ull << pt->n) - 1);
	struct seg_key sk;

	seg_key(sg, &sk);
	while (m) {
		unsigned j = (unsigned)__builtin_ctzll(m);

		m &= m - 1;
		if (pt->globstar >> j & 1)
			out |= 1ull << j;
		else if (pat_seg_match(pt, j, &sk))
			out |= 1ull << (j + 1);
	}
	return pat_close(pt, out);
}

static bool pat_accepts(const struct pat *pt, uint64_t st)
{
	return st >> pt->n & 1;
}

bool pbus_mp_path_match(const struct pbus_mp_path *path, const char *pattern)
{
	struct pat pt;
	uint64_t st;

	if (!path || !pattern || pat_compile(pattern, &pt) ||
	    path->depth > PBUS_MP_MAX_DEPTH)
		return false;
	st = pat_close(&pt, 1);
	for (unsigned i = 0; i < path->depth && st; i++)
		st = pat_step(&pt, st, &path->seg[i]);
	return pat_accepts(&pt, st);
}

static void put(char *buf, size_t size, size_t *pos, const char *s, size_t n)
{
	if (*pos < size) {
		size_t room = size - 1 - *pos;

		memcpy(buf + *pos, s, n < room ? n : room);
	}
	*pos += n;
}

size_t pbus_mp_path_format(const struct pbus_mp_path *path, char *buf,
			   size_t size)
{
	size_t pos = 0, n;
	const char *s;
	char num[16];

	for (unsigned i = 0; i < path->depth && i < PBUS_MP_MAX_DEPTH; i++) {
		const struct pbus_mp_seg *sg = &path->seg[i];

		if (i)
			put(buf, size, &pos, ".", 1);
		if (!sg->key.p) {
			n = (size_t)snprintf(num, sizeof(num), "%u", sg->index);
			put(buf, size, &pos, num, n);
		} else if (!pbus_mp_str(sg->key, &s, &n)) {
			put(buf, size, &pos, s, n);
		} else {
			put(buf, size, &pos, "?", 1);
		}
	}
	if (size)
		buf[pos < size ? pos : size - 1] = '\0';
	return pos;
}

/* ------------------------------------------------------------ rewrite */

struct rw {
	pbus_mp_rewrite_fn *fn;
	void *arg;
	pbus_mp_sink_fn *sink;
	void *sink_arg;
	msgpack_packer *out;	/* the output; lazy: NULL until sink() */
	msgpack_packer shim;	/* what fn writes through */
	const uint8_t *pending; /* first input byte not yet written */
	const uint8_t *cur;	/* the string fn is looking at */
	size_t cb_bytes;	/* bytes fn wrote in the current call */
	int werr;		/* first write error, sticky */
	int changed;
	const struct pat *pat; /* NULL: every string */
	struct pbus_mp_path path;
};

static int out_write(struct rw *c, const void *p, size_t n)
{
	if (!n)
		return 0;
	if (c->werr)
		return c->werr;
	if (!c->out) {
		c->out = c->sink(c->sink_arg);
		if (!c->out)
			return c->werr = -ENOBUFS;
	}
	return c->werr = wr(c->out, p, n);
}

/* Write the pending unchanged span up to @upto. */
static int flush(struct rw *c, const uint8_t *upto)
{
	const uint8_t *from = c->pending;

	if (upto <= from)
		return 0;
	c->pending = upto;
	return out_write(c, from, (size_t)(upto - from));
}

static int shim_write(void *data, const char *buf, size_t len)
{
	struct rw *c = data;

	if (!len)
		return 0;
	if (flush(c, c->cur))
		return -1;
	c->cb_bytes += len;
	return out_write(c, buf, len) ? -1 : 0;
}

static int rw_str(struct rw *c, const uint8_t *p, const struct pbus__mp_head *h)
{
	int ret;

	c->cur = p;
	c->cb_bytes = 0;
	ret = c->fn(&c->path, (const char *)p + h->hlen, h->self - h->hlen,
		    c->arg, &c->shim);
	if (c->werr)
		return c->werr;
	if (ret < 0)
		return ret;
	if (ret == 0)
		return c->cb_bytes ? -EINVAL : 0;
	if (ret != 1 || !c->cb_bytes)
		return -EINVAL;
	c->pending = p + h->self;
	c->changed = 1;
	return 0;
}

/* Skip a sub-tree, with the depth budget left at the current level. */
static int skip_at(const struct rw *c, const uint8_t *p, const uint8_t *end,
		   size_t *n)
{
	return pbus__mp_skip_d(p, (size_t)(end - p),
			       PBUS_MP_MAX_DEPTH - c->path.depth, n);
}

static int rw_node(struct rw *c, const uint8_t *p, size_t avail, uint64_t st,
		   size_t *used)
{
	struct pbus__mp_head h;
	struct pbus_mp_seg *sg;
	const uint8_t *q, *end = p + avail;
	size_t n;
	int ret;

	if (pbus__mp_head(p, avail, &h))
		return -EBADMSG;
	*used = h.self;
	if (h.type == PBUS_MP_STR) {
		if (c->pat && !pat_accepts(c->pat, st))
			return 0;
		return rw_str(c, p, &h);
	}
	if (!pbus__mp_is_container(&h))
		return 0;
	if (c->path.depth == PBUS_MP_MAX_DEPTH)
		return -EBADMSG;
	sg = &c->path.seg[c->path.depth++];
	q = p + h.self;
	for (uint32_t i = 0; i < h.count; i++) {
		uint64_t cst = 0;

		sg->index = i;
		sg->key.p = NULL;
		sg->key.len = 0;
		if (h.type == PBUS_MP_MAP) {
			/* keys count against the depth budget too, as in
			 * pbus_mp_open() */
			if (skip_at(c, q, end, &n))
				return -EBADMSG;
			sg->key.p = q;
			sg->key.len = n;
			q += n;
		}
		if (c->pat) {
			cst = pat_step(c->pat, st, sg);
			if (!cst) {
				/* nothing below can match: just skip */
				if (skip_at(c, q, end, &n))
					return -EBADMSG;
				q += n;
				continue;
			}
		}
		ret = rw_node(c, q, (size_t)(end - q), cst, &n);
		if (ret)
			return ret;
		q += n;
	}
	c->path.depth--;
	*used = (size_t)(q - p);
	return 0;
}

/* Either @pk (written even when nothing changes) or @sink (lazy). */
static int rewrite(struct pbus_mp v, const char *pattern,
		   pbus_mp_rewrite_fn *fn, void *arg, msgpack_packer *pk,
		   pbus_mp_sink_fn *sink, void *sink_arg)
{
	struct rw c;
	struct pat pt;
	uint64_t st = 0;
	size_t used;
	int ret;

	if (!fn || (!pk && !sink))
		return -EINVAL;
	if (pattern) {
		if (pat_compile(pattern, &pt))
			return -EINVAL;
		st = pat_close(&pt, 1);
	}
	if (!v.p || !v.len)
		return -EBADMSG;
	memset(&c, 0, offsetof(struct rw, path));
	c.path.depth = 0;
	c.fn = fn;
	c.arg = arg;
	c.out = pk;
	c.sink = sink;
	c.sink_arg = sink_arg;
	c.pending = v.p;
	c.pat = pattern ? &pt : NULL;
	msgpack_packer_init(&c.shim, &c, shim_write);
	ret = rw_node(&c, v.p, v.len, st, &used);
	if (ret)
		return ret;
	if (used != v.len)
		return -EBADMSG;
	if (c.changed || pk) {
		ret = flush(&c, v.p + used);
		if (ret)
			return ret;
	}
	return c.changed;
}

int pbus_mp_rewrite(struct pbus_mp v, pbus_mp_rewrite_fn *fn, void *arg,
		    msgpack_packer *pk)
{
	if (!pk)
		return -EINVAL;
	return rewrite(v, NULL, fn, arg, pk, NULL, NULL);
}

int pbus_mp_rewrite_at(struct pbus_mp v, const char *pattern,
		       pbus_mp_rewrite_fn *fn, void *arg, msgpack_packer *pk)
{
	if (!pk)
		return -EINVAL;
	return rewrite(v, pattern, fn, arg, pk, NULL, NULL);
}

int pbus_mp_rewrite_lazy(struct pbus_mp v, const char *pattern,
			 pbus_mp_rewrite_fn *fn, void *arg,
			 pbus_mp_sink_fn *sink, void *sink_arg)
{
	if (!sink)
		return -EINVAL;
	return rewrite(v, pattern, fn, arg, NULL, sink, sink_arg);
}

/* ------------------------------------------------------------ set, merge */

/*
 * Open *@m as a map for set/merge: nil and the empty view become an empty
 * map. 0 with the head, -EINVAL not a map, -EBADMSG.
 */
static int map_head(struct pbus_mp *m, struct pbus__mp_head *h)
{
	static const uint8_t empty_map = 0x80;

	if (!m->p || !m->len || (m->len == 1 && m->p[0] == 0xc0)) {
		m->p = &empty_map;
		m->len = 1;
	}
	if (pbus__mp_head(m->p, m->len, h))
		return -EBADMSG;
	return h->type == PBUS_MP_MAP ? 0 : -EINVAL;
}

/* Keys and values of the map set() and merge() write sit one level below
 * it: their depth budget, so that the output is never deeper than
 * pbus_mp_open() accepts. */
#define ENTRY_DEPTH (PBUS_MP_MAX_DEPTH - 1)

/* Occurrences of the key that set() remembers while it validates, so that
 * writing need not walk the map again: a key is rarely repeated. */
#define SET_HITS 4

/* The new value set() writes: a validated view, or @fn's output. */
struct set_val {
	struct pbus_mp v;
	pbus_mp_value_fn *fn; /* NULL: write @v */
	void *arg;
};

static int set_val_write(const struct set_val *sv, msgpack_packer *pk)
{
	int ret;

	if (!sv->fn)
		return wr(pk, sv->v.p, sv->v.len);
	ret = sv->fn(sv->arg, pk);
	return ret > 0 ? -EINVAL : ret; /* @fn broke its contract */
}

/* The next pair after @q with key @key[0, @klen); there is one, and the
 * map was validated. */
static void next_hit(const uint8_t *q, const uint8_t *end, const char *key,
		     size_t klen, struct pbus__mp_pair *e)
{
	do {
		pbus__mp_pair(q, end, ENTRY_DEPTH, e);
		q = e->end;
	} while (!pbus__mp_pair_key_is(e, key, klen));
}

/* pbus_mp_setn() and pbus_mp_set_fn(). */
static int set(struct pbus_mp map, const char *key, size_t klen,
	       const struct set_val *sv, msgpack_packer *pk)
{
	struct pbus__mp_pair hit[SET_HITS], e;
	struct pbus__mp_head h;
	const uint8_t *q, *end, *pending;
	uint32_t hits = 0;
	size_t n;
	int ret;

	if (!pk || (!key && klen))
		return -EINVAL;
	ret = map_head(&map, &h);
	if (ret)
		return ret;
	if (!sv->fn && (!sv->v.p || !sv->v.len ||
			pbus__mp_skip_d(sv->v.p, sv->v.len, ENTRY_DEPTH, &n) ||
			n != sv->v.len))
		return -EBADMSG;
	/* pass 1: validate, find the key's occurrences */
	end = map.p + map.len;
	q = map.p + h.self;
	for (uint32_t i = 0; i < h.count; i++, q = e.end) {
		if (pbus__mp_pair(q, end, ENTRY_DEPTH, &e))
			return -EBADMSG;
		if (!pbus__mp_pair_key_is(&e, key, klen))
			continue;
		if (hits < SET_HITS)
			hit[hits] = e;
		hits++;
	}
	if (q != end)
		return -EBADMSG;
	if (!hits && h.count == UINT32_MAX)
		return -E2BIG;
	/* pass 2: write, the first occurrence with its key bytes and the new
	 * value, dropping every later one */
	if (msgpack_pack_map(pk, h.count - hits + 1))
		return -ENOBUFS;
	pending = map.p + h.self;
	for (uint32_t i = 0; i < hits; i++) {
		if (i < SET_HITS)
			e = hit[i];
		else
			next_hit(e.end, end, key, klen, &e);
		if (!i) {
			ret = wr(pk, pending, (size_t)(e.v - pending));
			if (!ret)
				ret = set_val_write(sv, pk);
		} else {
			ret = wr(pk, pending, (size_t)(e.k - pending));
		}
		if (ret)
			return ret;
		pending = e.end;
	}
	ret = wr(pk, pending, (size_t)(end - pending));
	if (!ret && !hits) {
		ret = pbus_mp_pack_strn(pk, key ? key : "", klen);
		if (!ret)
			ret = set_val_write(sv, pk);
	}
	return ret;
}

int pbus_mp_setn(struct pbus_mp map, const char *key, size_t klen,
		 struct pbus_mp val, msgpack_packer *pk)
{
	struct set_val sv = {.v = val};

	return set(map, key, klen, &sv, pk);
}

int pbus_mp_set(struct pbus_mp map, const char *key, struct pbus_mp val,
		msgpack_packer *pk)
{
	if (!key)
		return -EINVAL;
	return pbus_mp_setn(map, key, strlen(key), val, pk);
}

int pbus_mp_set_fn(struct pbus_mp map, const char *key, pbus_mp_value_fn *fn,
		   void *arg, msgpack_packer *pk)
{
	struct set_val sv = {.fn = fn, .arg = arg};

	if (!key || !fn)
		return -EINVAL;
	return set(map, key, strlen(key), &sv, pk);
}

/*
 * A map's pairs for merge: pair i is [k[i], k[i + 1]), its value starts at
 * v[i], and its key was decoded once, when loaded: hl[i] as in struct
 * pbus__mp_pair, and tag[i] a fingerprint of the decoded key, so that most
 * comparisons of unequal keys are one integer compare. k[n] is the map's
 * end. Parallel arrays keep the table small: 12 KiB for PBUS_MP_MERGE_MAX
 * pairs.
 */
struct ents {
	uint32_t n;
	const uint8_t *k[PBUS_MP_MERGE_MAX + 1];
	const uint8_t *v[PBUS_MP_MERGE_MAX];
	uint32_t tag[PBUS_MP_MERGE_MAX];
	uint8_t hl[PBUS_MP_MERGE_MAX];
	int16_t fate[PBUS_MP_MERGE_MAX]; /* DROP, KEEP, or an @over pair */
};

/* What pbus_mp_merge() does with a pair: drop it (its key came earlier in
 * its map, or, for an @over pair, @base has it), write it as it is, or
 * (fate >= 0, base pairs only) write its key with @over's pair fate's value. */
enum { DROP = -2, KEEP = -1 };

/* The key of pair @i: its body (a string's) or bytes, and their length. */
static inline const uint8_t *ent_key(const struct ents *t, uint32_t i,
				     size_t *n)
{
	*n = (size_t)(t->v[i] - t->k[i]) - t->hl[i];
	return t->k[i] + t->hl[i];
}

/* Equal keys have equal tags: the tag depends on the key's kind, length and
 * end bytes only, where unequal keys of one map most often differ. */
static inline uint32_t key_tag(const struct pbus__mp_pair *e)
{
	size_t n = (size_t)(e->v - e->k) - e->hl;
	const uint8_t *b = e->k + e->hl;
	uint32_t tag = (uint32_t)n << 1 | (e->hl != 0);

	if (n)
		tag ^= (uint32_t)b[0] << 24 ^ (uint32_t)b[n - 1] << 16;
	return tag;
}

static int ents_load(struct pbus_mp m, struct ents *t)
{
	struct pbus__mp_head h;
	struct pbus__mp_pair e;
	const uint8_t *q, *end;
	int ret;

	ret = map_head(&m, &h);
	if (ret)
		return ret;
	if (h.count > PBUS_MP_MERGE_MAX)
		return -E2BIG;
	q = m.p + h.self;
	end = m.p + m.len;
	for (t->n = 0; t->n < h.count; t->n++, q = e.end) {
		if (pbus__mp_pair(q, end, ENTRY_DEPTH, &e))
			return -EBADMSG;
		t->k[t->n] = e.k;
		t->v[t->n] = e.v;
		t->hl[t->n] = e.hl;
		t->tag[t->n] = key_tag(&e);
	}
	if (q != end)
		return -EBADMSG;
	t->k[t->n] = q;
	return 0;
}

/* Keys @j of @t and @i of @s are equal: two strings with the same body, or
 * two other keys with the same bytes. */
static bool ents_key_eq(const struct ents *t, uint32_t j, const struct ents *s,
			uint32_t i)
{
	size_t n, tn;
	const uint8_t *b = ent_key(s, i, &n), *tb = ent_key(t, j, &tn);

	return tn == n && !t->hl[j] == !s->hl[i] && !memcmp(tb, b, n);
}

/* First pair of @t among [0, @lim) whose key equals key @i of @s, or -1. */
static inline int ents_find(const struct ents *t, uint32_t lim,
			    const struct ents *s, uint32_t i)
{
	for (uint32_t j = 0; j < lim; j++)
		if (t->tag[j] == s->tag[i] && ents_key_eq(t, j, s, i))
			return (int)j;
	return -1;
}

int pbus_mp_merge(struct pbus_mp base, struct pbus_mp over, msgpack_packer *pk)
{
	struct ents b, o;
	const uint8_t *pending;
	uint32_t count = 0;
	int ret;

	if (!pk)
		return -EINVAL;
	ret = ents_load(base, &b);
	if (!ret)
		ret = ents_load(over, &o);
	if (ret)
		return ret;
	/* each pair's fate, decided once: O((n + m)^2) key comparisons */
	for (uint32_t i = 0; i < b.n; i++) {
		if (ents_find(&b, i, &b, i) >= 0)
			b.fate[i] = DROP;
		else
			b.fate[i] = (int16_t)ents_find(&o, o.n, &b, i);
		count += b.fate[i] != DROP;
	}
	for (uint32_t i = 0; i < o.n; i++) {
		if (ents_find(&o, i, &o, i) >= 0 ||
		    ents_find(&b, b.n, &o, i) >= 0)
			o.fate[i] = DROP;
		else
			o.fate[i] = KEEP;
		count += o.fate[i] != DROP;
	}
	if (msgpack_pack_map(pk, count))
		return -ENOBUFS;

	/* base pairs: verbatim runs; a key @over has keeps its bytes */
	pending = b.k[0];
	for (uint32_t i = 0; i < b.n && !ret; i++) {
		int16_t j = b.fate[i];

		if (j == DROP) {
			ret = wr(pk, pending, (size_t)(b.k[i] - pending));
			pending = b.k[i + 1];
		} else if (j != KEEP) {
			ret = wr(pk, pending, (size_t)(b.v[i] - pending));
			if (!ret)
				ret = wr(pk, o.v[j],
					 (size_t)(o.k[j + 1] - o.v[j]));
			pending = b.k[i + 1];
		}
	}
	if (!ret)
		ret = wr(pk, pending, (size_t)(b.k[b.n] - pending));

	/* then the pairs only @over has */
	pending = o.k[0];
	for (uint32_t i = 0; i < o.n && !ret; i++) {
		if (o.fate[i] == DROP) {
			ret = wr(pk, pending, (size_t)(o.k[i] - pending));
			pending = o.k[i + 1];
		}
	}
	return ret ? ret : wr(pk, pending, (size_t)(o.k[o.n] - pending));
}
