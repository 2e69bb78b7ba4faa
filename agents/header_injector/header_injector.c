// SPDX-License-Identifier: MIT
/*
 * pbus-header_injector: the framework's HeaderInjectorPlugin (plugins/
 * header_injector/header_injector.py). On resource_pre_fetch, when the URI
 * matches one of uri_prefixes (or none are set), the configured headers are
 * merged into payload.metadata.headers (configured values win) and the
 * result metadata is {headers_injected: true, count: <configured headers>}.
 *
 * Fix: the original tested uri.startswith(prefix), so the prefix
 * "https://api.example.com" also matched "https://api.example.com.evil.net"
 * and "https://api.example.com@evil.net" -- and sent them the headers. A
 * prefix here is a URL: the URI must have the same scheme, the same host
 * (case-insensitive, trailing dot ignored; the prefix's port if it names
 * one) and a path starting with the prefix's path. A prefix with nothing
 * after "scheme://" matches every host of that scheme.
 *
 * Config: headers ({name: value}, strings), uri_prefixes ([url]).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <pbus/agent_util.h>

#include "../runtime/rt.h"

struct prefix {
	char *text; /* owns the strings below */
	struct url u;
	int any_host; /* "scheme://" alone */
};

struct hi {
	struct pbus_mp headers; /* the config's map, validated */
	unsigned nheaders;
	struct prefix *pre;
	int npre;
	struct sbuf clean;
	struct sbuf result; /* the result metadata, packed once */
};

static int parse(struct pbus_cfgr *cfg, void *arg)
{
	struct hi *h = arg;
	struct pbus_mp_iter it;
	struct pbus_mp k, v;
	msgpack_packer pk;
	char **pv = NULL;
	int n, ret;

	ret = pbus_cfgr_get(cfg, "headers", PBUS_MP_MAP, &h->headers);
	if (ret == -EINVAL)
		return ret;
	if (!ret) {
		pbus_mp_iter_init(h->headers, &it);
		while (pbus_mp_next(&it, &k, &v) > 0) {
			char name[200], key[220];

			if (pbus_mp_str_copy(k, name, sizeof(name)) < 0)
				return pbus_cfgr_fail(cfg, "headers",
						      "header names must be "
						      "strings");
			snprintf(key, sizeof(key), "headers.%s", name);
			if (pbus_mp_type(v) != PBUS_MP_STR)
				return pbus_cfgr_fail(
					cfg, key,
					"expected a string, got %s (quote it)",
					pbus_mp_type_phrase(pbus_mp_type(v)));
			h->nheaders++;
		}
	}
	n = pbus_cfgr_strv(cfg, "uri_prefixes", &pv);
	if (pbus_cfgr_error(cfg))
		return -EINVAL;
	h->pre = calloc((size_t)n + 1, sizeof(*h->pre));
	if (!h->pre)
		return -ENOMEM;
	for (int i = 0; i < n; i++) {
		struct prefix *p = &h->pre[i];
		const char *err = "no scheme";
		char key[40];

		snprintf(key, sizeof(key), "uri_prefixes[%d]", i);
		p->text = pv[i];
		pv[i] = NULL;
		if (url_split(p->text, strlen(p->text), &p->u, &err) ||
		    !p->u.scheme_len) {
			pbus_cfgr_fail(cfg, key,
				       "'%s' is not a URL prefix (%s); write "
				       "e.g. https://api.example.com/v1",
				       p->text, err);
			h->npre = i + 1;
			break;
		}
		p->any_host =
			p->u.has_netloc && !p->u.netloc_len && !p->u.rest_len;
		h->npre = i + 1;
	}
	pbus_strv_free(pv);
	if (pbus_cfgr_error(cfg))
		return -EINVAL;
	sbuf_packer(&h->result, &pk);
	msgpack_pack_map(&pk, 2);
	pbus_pack_kv_bool(&pk, "headers_injected", true);
	pbus_pack_kv_int(&pk, "count", h->nheaders);
	return h->result.err;
}

static bool matches(const struct prefix *p, const struct url *u)
{
	const struct url *q = &p->u;

	if (u->scheme_len != q->scheme_len ||
	    strncasecmp(u->scheme, q->scheme, q->scheme_len))
		return false;
	if (p->any_host)
		return true;
	if (u->has_netloc != q->has_netloc)
		return false;
	if (q->has_netloc) {
		if (!host_eq(u->host, u->host_len, q->host, q->host_len))
			return false;
		if (q->port_len && (u->port_len != q->port_len ||
				    memcmp(u->port, q->port, q->port_len)))
			return false;
	}
	return u->rest_len >= q->rest_len &&
	       !memcmp(u->rest, q->rest, q->rest_len);
}

static bool should_apply(struct hi *h, struct pbus_mp uri)
{
	const char *s, *cs;
	size_t n, cn;
	struct url u;

	if (!h->npre)
		return true;
	if (pbus_mp_str(uri, &s, &n))
		return false;
	cs = url_clean(s, n, &h->clean, &cn);
	if (url_split(cs, cn, &u, NULL))
		return false;
	for (int i = 0; i < h->npre; i++)
		if (matches(&h->pre[i], &u))
			return true;
	return false;
}

/* payload.metadata with "headers" = {**existing, **configured} */
struct inject {
	struct hi *h;
	struct pbus_mp md;  /* the payload's metadata map, or empty */
	struct pbus_mp old; /* its headers map, or empty */
};

static int write_headers(void *arg, msgpack_packer *pk)
{
	const struct inject *in = arg;

	return pbus_mp_merge(in->old, in->h->headers, pk);
}

static int write_md(void *arg, msgpack_packer *pk)
{
	const struct inject *in = arg;

	return pbus_mp_set_fn(in->md, "headers", write_headers, arg, pk);
}

/* The payload is written once, straight into the answer: its metadata map
 * and the headers inside it are rebuilt on the way (nothing is packed
 * apart, then copied). */
static int on_pre(struct pbus_call *c, void *arg)
{
	static const char *const pl_keys[] = {"uri", "metadata"};
	struct inject in = {.h = arg};
	struct pbus_mp pl, v[2];
	int ret;

	ret = pbus_call_payload_view(c, &pl);
	if (ret == -ENOENT)
		pl = (struct pbus_mp){0}; /* no payload: {metadata: ...} */
	else if (ret)
		return in.h->npre ? 0 : ret; /* as pbus_call_field() had it */
	pbus_mp_get_keys(pl, pl_keys, v, 2); /* absent: empty */
	if (!should_apply(in.h, v[0]))
		return 0;
	if (pbus_mp_type(v[1]) == PBUS_MP_MAP) {
		in.md = v[1];
		pbus_mp_get(in.md, "headers", &in.old);
		if (pbus_mp_type(in.old) != PBUS_MP_MAP)
			in.old = (struct pbus_mp){0};
	}
	ret = pbus_call_modify_set_fn(c, pl, "metadata", write_md, &in);
	if (ret)
		return ret;
	return sbuf_pack_piece(pbus_call_metadata(c), &in.h->result);
}

static struct hi hi;

static const struct pbus_agent_desc desc = {
	.name = "header_injector",
	.summary = "Add HTTP headers to resource fetches.",
	.config_help = "  headers: {name: value}\n"
		       "  uri_prefixes: [url] (none: every URI)\n",
	.config = parse,
	.hooks = {[PBUS_HOOK_RESOURCE_PRE_FETCH] = on_pre},
};

int main(int argc, char **argv)
{
	return pbus_agent_main(argc, argv, &desc, &hi);
}
