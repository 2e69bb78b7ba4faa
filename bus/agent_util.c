// SPDX-License-Identifier: MIT
/*
 * Agent helpers (pbus/agent_util.h): views of a call's payload and contexts,
 * payload rewrites that send only what changed, the less common answer keys,
 * small packing helpers, a spill-to-heap msgpack buffer and the config
 * reader. Everything here is a thin layer over pbus/agent.h and pbus/mp.h.
 *
 * Nothing prints. The only allocations are the config reader's copies (made
 * once at startup) and an mbuf's spill buffer.
 */
#include "pbus/agent_util.h"

#include "pbus/abi.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---------------------------------------------------------------- views */

static int view(const void *p, size_t len, struct pbus_mp *out)
{
	if (!p || !len) {
		out->p = NULL;
		out->len = 0;
		return -ENOENT;
	}
	return pbus_mp_open(p, len, out);
}

int pbus_call_payload_view(const struct pbus_call *c, struct pbus_mp *out)
{
	size_t len;
	const void *p = pbus_call_payload(c, &len);

	return view(p, len, out);
}

int pbus_call_gctx_view(const struct pbus_call *c, struct pbus_mp *out)
{
	size_t len;
	const void *p = pbus_call_global_ctx(c, &len);

	return view(p, len, out);
}

int pbus_call_lctx_view(const struct pbus_call *c, struct pbus_mp *out)
{
	size_t len;
	const void *p = pbus_call_local_ctx(c, &len);

	return view(p, len, out);
}

int pbus_call_field(const struct pbus_call *c, const char *path,
		    struct pbus_mp *out)
{
	struct pbus_mp pl;
	int ret = pbus_call_payload_view(c, &pl);

	return ret ? ret : pbus_mp_path(pl, path, out);
}

int pbus_mp_str_copy(struct pbus_mp v, char *buf, size_t size)
{
	const char *s;
	size_t n;
	int ret;

	if (pbus_mp_is_nil(v) || !v.len)
		return -ENOENT;
	ret = pbus_mp_str(v, &s, &n);
	if (ret)
		return ret;
	if (!size)
		return -ERANGE;
	if (n >= size) {
		memcpy(buf, s, size - 1);
		buf[size - 1] = 0;
		return -ERANGE;
	}
	memcpy(buf, s, n);
	buf[n] = 0;
	return n > INT32_MAX ? -ERANGE : (int)n;
}

int pbus_call_str(const struct pbus_call *c, const char *path, char *buf,
		  size_t size)
{
	struct pbus_mp v;
	int ret = pbus_call_field(c, path, &v);

	return ret ? ret : pbus_mp_str_copy(v, buf, size);
}

int pbus_call_gctx_str(const struct pbus_call *c, const char *path, char *buf,
		       size_t size)
{
	struct pbus_mp g, v;
	int ret = pbus_call_gctx_view(c, &g);

	if (!ret)
		ret = pbus_mp_path(g, path, &v);
	return ret ? ret : pbus_mp_str_copy(v, buf, size);
}

/* The local context's @part map ("state" or "metadata"), or the empty view. */
static struct pbus_mp lctx_part(const struct pbus_call *c, const char *part)
{
	struct pbus_mp l, v = {0};

	if (pbus_call_lctx_view(c, &l) || pbus_mp_get(l, part, &v) ||
	    pbus_mp_type(v) != PBUS_MP_MAP)
		return (struct pbus_mp){0};
	return v;
}

int pbus_call_state_get(const struct pbus_call *c, const char *key,
			struct pbus_mp *out)
{
	struct pbus_mp st = lctx_part(c, "state");

	if (!st.len)
		return -ENOENT;
	return pbus_mp_get(st, key, out);
}

/* ---------------------------------------------------------------- modifying */

static msgpack_packer *sink_modify(void *arg)
{
	return pbus_call_modify(arg);
}

int pbus_call_rewrite_view(struct pbus_call *c, struct pbus_mp pl,
			   const char *pattern, pbus_mp_rewrite_fn *fn,
			   void *arg)
{
	if (!pl.len)
		return 0; /* no payload: nothing to rewrite */
	return pbus_mp_rewrite_lazy(pl, pattern, fn, arg, sink_modify, c);
}

int pbus_call_rewrite(struct pbus_call *c, const char *pattern,
		      pbus_mp_rewrite_fn *fn, void *arg)
{
	struct pbus_mp pl;
	int ret = pbus_call_payload_view(c, &pl);

	if (ret && ret != -ENOENT)
		return ret;
	return pbus_call_rewrite_view(c, pl, pattern, fn, arg);
}

struct repl {
	const char *s;
	size_t n;
	int done;
};

static int replace_one(const struct pbus_mp_path *path, const char *s, size_t n,
		       void *arg, msgpack_packer *pk)
{
	struct repl *r = arg;

	(void)path;
	(void)s;
	(void)n;
	if (r->done)
		return 0; /* a duplicate key: the first occurrence counts */
	r->done = 1;
	return pbus_mp_pack_strn(pk, r->s, r->n) ?: 1;
}

int pbus_call_replace_str(struct pbus_call *c, const char *path, const char *s,
			  size_t n)
{
	struct repl r = {.s = s, .n = n};

	return pbus_call_rewrite(c, path, replace_one, &r);
}

/* Refuse a payload that is not a map (nil and none are empty maps) before
 * pbus_call_modify() starts an answer that could not be finished. */
static bool settable(struct pbus_mp pl)
{
	return !pl.len || pbus_mp_type(pl) == PBUS_MP_MAP || pbus_mp_is_nil(pl);
}

int pbus_call_modify_set(struct pbus_call *c, const char *key,
			 struct pbus_mp val)
{
	struct pbus_mp pl;
	int ret = pbus_call_payload_view(c, &pl);

	if (ret && ret != -ENOENT)
		return ret;
	if (!settable(pl) || !key)
		return -EINVAL;
	if (pbus_mp_type(val) == PBUS_MP_INVALID)
		return -EBADMSG;
	return pbus_mp_set(pl, key, val, pbus_call_modify(c));
}

int pbus_call_modify_set_fn(struct pbus_call *c, struct pbus_mp pl,
			    const char *key, pbus_mp_value_fn *fn, void *arg)
{
	if (!settable(pl) || !key || !fn)
		return -EINVAL;
	return pbus_mp_set_fn(pl, key, fn, arg, pbus_call_modify(c));
}

/* ---------------------------------------------------------------- answering */

msgpack_packer *pbus_call_metadata(struct pbus_call *c)
{
	return pbus_call_put(c, "metadata");
}

msgpack_packer *pbus_call_state(struct pbus_call *c)
{
	return pbus_call_put(c, "state");
}

msgpack_packer *pbus_call_local_metadata(struct pbus_call *c)
{
	return pbus_call_put(c, "local_metadata");
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
	return pbus_mp_merge(cur, over, pbus_call_put(c, key));
}

int pbus_call_state_merge(struct pbus_call *c, struct pbus_mp over)
{
	return merge_part(c, "state", "state", over);
}

int pbus_call_local_metadata_merge(struct pbus_call *c, struct pbus_mp over)
{
	return merge_part(c, "metadata", "local_metadata", over);
}

msgpack_packer *pbus_call_violate_ex(struct pbus_call *c, const char *code,
				     const char *reason,
				     const char *description,
				     const struct pbus_violation_opts *o)
{
	msgpack_packer *pk = pbus_call_put(c, "violation");
	int64_t mcp = o ? o->mcp_error_code : 0;
	int http = o ? o->http_status_code : 0;
	const char *const *hdrs = o ? o->http_headers : NULL;

	msgpack_pack_map(pk, 4 + (mcp != 0) + (http != 0) + (hdrs != NULL));
	pbus_pack_kv_str(pk, "reason", reason ? reason : "");
	pbus_pack_kv_str(pk, "description", description ? description : "");
	pbus_pack_kv_str(pk, "code", code ? code : "");
	if (mcp)
		pbus_pack_kv_int(pk, "mcp_error_code", mcp);
	if (http)
		pbus_pack_kv_int(pk, "http_status_code", http);
	if (hdrs)
		pbus_pack_str_map(pbus_pack_key(pk, "http_headers"), hdrs);
	pbus_call_set_flags(c, PBUS_RF_STOP);
	return pbus_pack_key(pk, "details");
}

msgpack_packer *pbus_call_violate_begin(struct pbus_call *c, const char *code,
					const char *reason,
					const char *description)
{
	return pbus_call_violate_ex(c, code, reason, description, NULL);
}

int pbus_call_http_headers(struct pbus_call *c, const char *const *kv)
{
	if (!kv)
		return -EINVAL;
	return pbus_pack_str_map(pbus_call_put(c, "http_headers"), kv);
}

/* ---------------------------------------------------------------- packing */

int pbus_pack_str_map(msgpack_packer *pk, const char *const *kv)
{
	uint32_t n = 0;

	while (kv[2 * n])
		n++;
	if (msgpack_pack_map(pk, n))
		return -ENOBUFS;
	for (uint32_t i = 0; i < 2 * n; i++)
		if (pbus_mp_pack_cstr(pk, kv[i]))
			return -ENOBUFS;
	return 0;
}

msgpack_packer *pbus_pack_key(msgpack_packer *pk, const char *key)
{
	pbus_mp_pack_cstr(pk, key);
	return pk;
}

int pbus_pack_kv_str(msgpack_packer *pk, const char *key, const char *val)
{
	return pbus_mp_pack_cstr(pk, key) ?: pbus_mp_pack_cstr(pk, val);
}

int pbus_pack_kv_strn(msgpack_packer *pk, const char *key, const char *val,
		      size_t n)
{
	return pbus_mp_pack_cstr(pk, key) ?: pbus_mp_pack_strn(pk, val, n);
}

int pbus_pack_kv_int(msgpack_packer *pk, const char *key, int64_t val)
{
	return pbus_mp_pack_cstr(pk, key)
		       ?: (msgpack_pack_int64(pk, val) ? -ENOBUFS : 0);
}

int pbus_pack_kv_bool(msgpack_packer *pk, const char *key, bool val)
{
	return pbus_mp_pack_cstr(pk, key)
		       ?: ((val ? msgpack_pack_true(pk)
				: msgpack_pack_false(pk))
				   ? -ENOBUFS
				   : 0);
}

int pbus_pack_kv_nil(msgpack_packer *pk, const char *key)
{
	return pbus_mp_pack_cstr(pk, key)
		       ?: (msgpack_pack_nil(pk) ? -ENOBUFS : 0);
}

/* ---------------------------------------------------------------- mbuf */

static int mbuf_write(void *data, const char *buf, size_t n)
{
	struct pbus_mbuf *b = data;

	if (b->err)
		return -1;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 256;
		uint8_t *nb;

		while (cap < b->len + n)
			cap *= 2;
		if (b->heap && b->p == b->heap) {
			nb = realloc(b->heap, cap);
		} else {
			nb = malloc(cap);
			if (nb && b->len)
				memcpy(nb, b->p, b->len);
			free(b->heap);
		}
		if (!nb) {
			b->err = -ENOMEM;
			return -1;
		}
		b->heap = b->p = nb;
		b->cap = cap;
	}
	memcpy(b->p + b->len, buf, n);
	b->len += n;
	return 0;
}

msgpack_packer *pbus_mbuf_init(struct pbus_mbuf *b, void *mem, size_t cap)
{
	memset(b, 0, sizeof(*b));
	b->p = mem;
	b->cap = mem ? cap : 0;
	msgpack_packer_init(&b->pk, b, mbuf_write);
	return &b->pk;
}

void pbus_mbuf_reset(struct pbus_mbuf *b)
{
	b->len = 0;
	b->err = 0;
}

int pbus_mbuf_view(const struct pbus_mbuf *b, struct pbus_mp *out)
{
	if (b->err)
		return b->err;
	return pbus_mp_open(b->p, b->len, out);
}

int pbus_mbuf_bytes(const struct pbus_mbuf *b, struct pbus_mp *out)
{
	if (b->err)
		return b->err;
	if (!b->len)
		return -EBADMSG;
	out->p = b->p;
	out->len = b->len;
	return 0;
}

void pbus_mbuf_fini(struct pbus_mbuf *b)
{
	free(b->heap);
	b->heap = NULL;
}

/* ---------------------------------------------------------------- config */

const char *pbus_mp_type_phrase(enum pbus_mp_type t)
{
	switch (t) {
	case PBUS_MP_NIL:
		return "null";
	case PBUS_MP_BOOL:
		return "a boolean";
	case PBUS_MP_INT:
	case PBUS_MP_UINT:
		return "an integer";
	case PBUS_MP_FLOAT:
		return "a number";
	case PBUS_MP_STR:
		return "a string";
	case PBUS_MP_BIN:
		return "binary data";
	case PBUS_MP_ARRAY:
		return "a list";
	case PBUS_MP_MAP:
		return "a map";
	case PBUS_MP_EXT:
		return "an extension value";
	default:
		return "malformed data";
	}
}

static void join_path(char *out, size_t size, const char *path, const char *key)
{
	if (!key || !*key)
		snprintf(out, size, "%s", *path ? path : "config");
	else if (!*path)
		snprintf(out, size, "%s", key);
	else if (key[0] == '[')
		snprintf(out, size, "%s%s", path, key);
	else
		snprintf(out, size, "%s.%s", path, key);
}

int pbus_cfgr_fail(struct pbus_cfgr *r, const char *key, const char *fmt, ...)
{
	struct pbus_cfgr *root = r->root;
	char where[192], what[256];
	va_list ap;

	if (root->err)
		return -EINVAL;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	join_path(where, sizeof(where), r->path, key);
	snprintf(root->msg, sizeof(root->msg), "%.100s: %.150s", where, what);
	root->err = -EINVAL;
	return -EINVAL;
}

const char *pbus_cfgr_error(const struct pbus_cfgr *r)
{
	return r->root->err ? r->root->msg : NULL;
}

int pbus_cfgr_init(struct pbus_cfgr *r, const void *cfg, size_t len)
{
	memset(r, 0, sizeof(*r));
	r->root = r;
	if (!cfg || !len)
		return 0;
	if (pbus_mp_open(cfg, len, &r->map))
		return pbus_cfgr_fail(r, NULL, "malformed msgpack");
	if (pbus_mp_is_nil(r->map)) {
		r->map = (struct pbus_mp){0};
		return 0;
	}
	if (pbus_mp_type(r->map) != PBUS_MP_MAP) {
		enum pbus_mp_type t = pbus_mp_type(r->map);

		r->map = (struct pbus_mp){0};
		return pbus_cfgr_fail(r, NULL, "expected a map, got %s",
				      pbus_mp_type_phrase(t));
	}
	return 0;
}

int pbus_cfgr_sub(struct pbus_cfgr *r, struct pbus_cfgr *parent,
		  struct pbus_mp v, const char *name)
{
	memset(r, 0, sizeof(*r));
	r->root = parent->root;
	join_path(r->path, sizeof(r->path), parent->path, name);
	if (pbus_mp_type(v) != PBUS_MP_MAP)
		return pbus_cfgr_fail(r, NULL, "expected a map, got %s",
				      pbus_mp_type_phrase(pbus_mp_type(v)));
	r->map = v;
	return 0;
}

/* Find @key, mark it used. 0 and *v (nil included), -ENOENT. */
static int find(struct pbus_cfgr *r, const char *key, struct pbus_mp *v)
{
	struct pbus_mp_iter it;
	struct pbus_mp k, val;
	int ret;

	if (!r->map.len || pbus_mp_iter_init(r->map, &it))
		return -ENOENT;
	while ((ret = pbus_mp_next(&it, &k, &val)) > 0) {
		if (!pbus_mp_str_eq(k, key))
			continue;
		if (it.index - 1 < 64)
			r->used |= 1ull << (it.index - 1);
		*v = val;
		return 0;
	}
	return -ENOENT;
}

/* Present and not nil. */
static int lookup(struct pbus_cfgr *r, const char *key, struct pbus_mp *v)
{
	if (find(r, key, v) || pbus_mp_is_nil(*v))
		return -ENOENT;
	return 0;
}

bool pbus_cfgr_has(struct pbus_cfgr *r, const char *key)
{
	struct pbus_mp v;

	return lookup(r, key, &v) == 0;
}

static int type_error(struct pbus_cfgr *r, const char *key, const char *want,
		      struct pbus_mp v)
{
	return pbus_cfgr_fail(r, key, "expected %s, got %s", want,
			      pbus_mp_type_phrase(pbus_mp_type(v)));
}

bool pbus_cfgr_bool(struct pbus_cfgr *r, const char *key, bool def)
{
	static const char *const yes[] = {"true", "yes", "on", "1", "t", "y"};
	static const char *const no[] = {"false", "no", "off", "0", "f", "n"};
	struct pbus_mp v;
	const char *s;
	size_t n;
	int64_t i;
	bool b;

	if (lookup(r, key, &v))
		return def;
	if (!pbus_mp_bool(v, &b))
		return b;
	if (!pbus_mp_int(v, &i) && (i == 0 || i == 1))
		return i == 1;
	if (!pbus_mp_str(v, &s, &n)) {
		for (unsigned k = 0; k < 6; k++) {
			if (n == strlen(yes[k]) && !strncasecmp(s, yes[k], n))
				return true;
			if (n == strlen(no[k]) && !strncasecmp(s, no[k], n))
				return false;
		}
	}
	type_error(r, key, "a boolean (true or false)", v);
	return def;
}

int64_t pbus_cfgr_int(struct pbus_cfgr *r, const char *key, int64_t def,
		      int64_t min, int64_t max)
{
	struct pbus_mp v;
	const char *s;
	size_t n;
	int64_t i;
	double d;

	if (lookup(r, key, &v))
		return def;
	if (pbus_mp_type(v) == PBUS_MP_BOOL) {
		type_error(r, key, "an integer", v);
		return def;
	}
	if (pbus_mp_int(v, &i)) {
		if (pbus_mp_type(v) == PBUS_MP_FLOAT && !pbus_mp_float(v, &d) &&
		    d == floor(d) && d >= -9.2e18 && d <= 9.2e18) {
			i = (int64_t)d;
		} else if (!pbus_mp_str(v, &s, &n) && n && n < 32) {
			char buf[32], *end;

			memcpy(buf, s, n);
			buf[n] = 0;
			errno = 0;
			i = strtoll(buf, &end, 10);
			while (*end == ' ')
				end++;
			if (errno || *end || end == buf) {
				pbus_cfgr_fail(r, key,
					       "expected an integer, got '%s'",
					       buf);
				return def;
			}
		} else {
			type_error(r, key, "an integer", v);
			return def;
		}
	}
	if (i < min || i > max) {
		if (max == INT64_MAX)
			pbus_cfgr_fail(r, key, "must be >= %lld, got %lld",
				       (long long)min, (long long)i);
		else
			pbus_cfgr_fail(
				r, key,
				"must be between %lld and %lld, got %lld",
				(long long)min, (long long)max, (long long)i);
		return def;
	}
	return i;
}

double pbus_cfgr_float(struct pbus_cfgr *r, const char *key, double def)
{
	struct pbus_mp v;
	double d;

	if (lookup(r, key, &v))
		return def;
	if (pbus_mp_type(v) == PBUS_MP_BOOL || pbus_mp_float(v, &d)) {
		type_error(r, key, "a number", v);
		return def;
	}
	return d;
}

char *pbus_cfgr_str(struct pbus_cfgr *r, const char *key, const char *def)
{
	struct pbus_mp v;
	const char *s;
	size_t n;

	if (lookup(r, key, &v))
		return def ? strdup(def) : NULL;
	if (pbus_mp_str(v, &s, &n)) {
		type_error(r, key, "a string", v);
		return def ? strdup(def) : NULL;
	}
	return strndup(s, n);
}

void pbus_strv_free(char **v)
{
	if (!v)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}

int pbus_cfgr_strv(struct pbus_cfgr *r, const char *key, char ***out)
{
	struct pbus_mp_iter it;
	struct pbus_mp v, e;
	char **sv;
	int64_t n;
	int i = 0;

	*out = NULL;
	if (lookup(r, key, &v))
		return 0;
	if (pbus_mp_type(v) != PBUS_MP_ARRAY) {
		type_error(r, key, "a list of strings", v);
		return 0;
	}
	n = pbus_mp_count(v);
	if (n < 0 || n > INT32_MAX - 1 || pbus_mp_iter_init(v, &it))
		return 0;
	sv = calloc((size_t)n + 1, sizeof(*sv));
	if (!sv) {
		pbus_cfgr_fail(r, key, "out of memory");
		return 0;
	}
	while (pbus_mp_next(&it, NULL, &e) > 0) {
		const char *s;
		size_t sl;

		if (pbus_mp_str(e, &s, &sl)) {
			char k[160];

			snprintf(k, sizeof(k), "%s[%d]", key, i);
			type_error(r, k, "a string", e);
			pbus_strv_free(sv);
			return 0;
		}
		sv[i] = strndup(s, sl);
		if (!sv[i]) {
			pbus_strv_free(sv);
			pbus_cfgr_fail(r, key, "out of memory");
			return 0;
		}
		i++;
	}
	*out = sv;
	return i;
}

int pbus_cfgr_get(struct pbus_cfgr *r, const char *key, enum pbus_mp_type want,
		  struct pbus_mp *out)
{
	struct pbus_mp v;
	enum pbus_mp_type t;

	if (lookup(r, key, &v))
		return -ENOENT;
	t = pbus_mp_type(v);
	if (want == PBUS_MP_INT && t == PBUS_MP_UINT)
		t = PBUS_MP_INT;
	if (want != PBUS_MP_INVALID && t != want)
		return type_error(r, key, pbus_mp_type_phrase(want), v);
	*out = v;
	return 0;
}

int pbus_cfgr_unused(const struct pbus_cfgr *r, unsigned *cursor, char *buf,
		     size_t size)
{
	struct pbus_mp_iter it;
	struct pbus_mp k;
	int ret;

	if (!r->map.len || pbus_mp_iter_init(r->map, &it))
		return 0;
	while ((ret = pbus_mp_next(&it, &k, NULL)) > 0) {
		char name[96];
		const char *s;
		size_t n;

		if (it.index - 1 < *cursor || it.index - 1 >= 64 ||
		    (r->used >> (it.index - 1)) & 1)
			continue;
		*cursor = it.index;
		if (pbus_mp_str(k, &s, &n))
			snprintf(name, sizeof(name), "(a key that is %s)",
				 pbus_mp_type_phrase(pbus_mp_type(k)));
		else
			snprintf(name, sizeof(name), "%.*s",
				 (int)(n > 90 ? 90 : n), s);
		join_path(buf, size, r->path, name);
		return 1;
	}
	return 0;
}
