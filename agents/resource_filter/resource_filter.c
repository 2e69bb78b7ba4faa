// SPDX-License-Identifier: MIT
/*
 * pbus-resource_filter: the framework's ResourceFilterPlugin (plugins/
 * resource_filter/resource_filter.py).
 *
 *   resource_pre_fetch   checks the URI (read as Python's urlparse reads it):
 *                        unparsable or without a scheme -> INVALID_URI; a
 *                        scheme not in allowed_protocols -> PROTOCOL_BLOCKED;
 *                        a host equal to, or a subdomain of, a blocked domain
 *                        -> DOMAIN_BLOCKED. A valid URI gets payload metadata
 *                        {validated, protocol, request_id, user,
 *                        resource_filter_plugin, allowed_size}, result
 *                        metadata {validation: "passed"} and local state
 *                        {uri_validated, original_uri}.
 *   resource_post_fetch  only after a validated pre-fetch: text content over
 *                        max_content_size UTF-8 bytes -> CONTENT_TOO_LARGE;
 *                        otherwise the content_filters (Python regexes,
 *                        case-insensitive, in order) replace matches; result
 *                        metadata {filtered, original_uri}.
 *   tool_post_invoke     passes through, as the original.
 *
 * Fix: the blocked-domain test compares the host name alone (no port, no
 * user info; case-insensitive; a trailing dot ignored), so
 * https://evil.com:8443/ is blocked; the original compared host:port.
 * The original returned continue_processing=True with its violation when
 * its own mode was permissive; in pbus the gateway applies the mode (a
 * permissive plugin's violation is logged and the chain goes on), so the
 * result is the same. Filters are compiled when the config is read, and
 * the constant parts of the answer to a valid URI packed then too.
 *
 * Config: max_content_size (1048576), allowed_protocols ([file, http,
 * https]), blocked_domains ([]), content_filters ([{pattern, replacement}],
 * replacement "***").
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pbus/agent_util.h>

#include "../runtime/rt.h"

/* The answer's pre-packed pieces (struct rf's piece[]). */
enum {
	MD_OPEN,
	MD_REQUEST_ID,
	MD_USER,
	MD_CLOSE,
	STATE_OPEN,
	PASSED,
	NPIECES,
};

struct filter {
	struct pyre *re;
	struct pyre_tmpl *t;
};

struct rf {
	int64_t max_size;
	char **protocols;
	int nprot;
	char **blocked;
	int nblocked;
	struct filter *f;
	int nf;
	struct sbuf clean, a, b;
	struct sbuf piece[NPIECES]; /* see pack_pieces() */
};

/*
 * The constant parts of the answer to a valid URI, packed once: on each
 * call only the scheme, the context's request_id and user and the URI are
 * packed between them.
 */
static int pack_pieces(struct rf *rf)
{
	msgpack_packer pk;
	int ret = 0;

	/* payload metadata: {"validated": true, "protocol": <scheme>,
	 * "request_id": <id>, "user": <user>, "resource_filter_plugin":
	 * "pre_fetch_validated", "allowed_size": <max_content_size>} */
	sbuf_packer(&rf->piece[MD_OPEN], &pk);
	msgpack_pack_map(&pk, 6);
	pbus_pack_kv_bool(&pk, "validated", true);
	pbus_pack_key(&pk, "protocol");
	pbus_pack_key(sbuf_packer(&rf->piece[MD_REQUEST_ID], &pk),
		      "request_id");
	pbus_pack_key(sbuf_packer(&rf->piece[MD_USER], &pk), "user");
	sbuf_packer(&rf->piece[MD_CLOSE], &pk);
	pbus_pack_kv_str(&pk, "resource_filter_plugin", "pre_fetch_validated");
	pbus_pack_kv_int(&pk, "allowed_size", rf->max_size);
	/* local state: {"uri_validated": true, "original_uri": <uri>} */
	sbuf_packer(&rf->piece[STATE_OPEN], &pk);
	msgpack_pack_map(&pk, 2);
	pbus_pack_kv_bool(&pk, "uri_validated", true);
	pbus_pack_key(&pk, "original_uri");
	/* result metadata */
	sbuf_packer(&rf->piece[PASSED], &pk);
	msgpack_pack_map(&pk, 1);
	pbus_pack_kv_str(&pk, "validation", "passed");
	for (int i = 0; i < NPIECES; i++)
		ret = ret ?: rf->piece[i].err;
	return ret;
}

static int parse(struct pbus_cfgr *cfg, void *arg)
{
	static const char *const def_prot[] = {"file", "http", "https"};
	struct rf *rf = arg;
	struct pbus_mp list, e;
	struct pbus_mp_iter it;

	rf->max_size =
		pbus_cfgr_int(cfg, "max_content_size", 1048576, 0, INT64_MAX);
	if (pbus_cfgr_has(cfg, "allowed_protocols")) {
		rf->nprot = pbus_cfgr_strv(cfg, "allowed_protocols",
					   &rf->protocols);
	} else {
		rf->protocols = calloc(4, sizeof(char *));
		if (!rf->protocols)
			return -ENOMEM;
		for (int i = 0; i < 3; i++)
			rf->protocols[rf->nprot++] = strdup(def_prot[i]);
	}
	rf->nblocked = pbus_cfgr_strv(cfg, "blocked_domains", &rf->blocked);
	if (pbus_cfgr_error(cfg))
		return -EINVAL;
	if (pack_pieces(rf))
		return -ENOMEM;
	if (pbus_cfgr_get(cfg, "content_filters", PBUS_MP_ARRAY, &list))
		return pbus_cfgr_error(cfg) ? -EINVAL : 0;
	rf->f = calloc((size_t)pbus_mp_count(list) + 1, sizeof(*rf->f));
	if (!rf->f)
		return -ENOMEM;
	pbus_mp_iter_init(list, &it);
	while (pbus_mp_next(&it, NULL, &e) > 0) {
		struct pbus_cfgr r;
		char name[40], err[256], *pat, *rep;

		snprintf(name, sizeof(name), "content_filters[%u]",
			 it.index - 1);
		if (pbus_cfgr_sub(&r, cfg, e, name))
			return -EINVAL;
		pat = pbus_cfgr_str(&r, "pattern", NULL);
		rep = pbus_cfgr_str(&r, "replacement", "***");
		if (!pbus_cfgr_error(cfg) && (!pat || !*pat))
			pbus_cfgr_fail(&r, "pattern", "required");
		if (!pbus_cfgr_error(cfg) &&
		    pyre_compile(pat, PYRE_IGNORECASE, &rf->f[rf->nf].re, err,
				 sizeof(err)))
			pbus_cfgr_fail(&r, "pattern", "bad regex '%s': %s", pat,
				       err);
		if (!pbus_cfgr_error(cfg) &&
		    pyre_tmpl_compile(rf->f[rf->nf].re, rep, &rf->f[rf->nf].t,
				      err, sizeof(err)))
			pbus_cfgr_fail(&r, "replacement",
				       "bad replacement '%s': %s", rep, err);
		free(pat);
		free(rep);
		if (pbus_cfgr_error(cfg))
			return -EINVAL;
		pbus_agent_warn_unused(&r);
		rf->nf++;
	}
	return 0;
}

/* ---------------------------------------------------------------- pre */

static int violation(struct pbus_call *c, const char *code, const char *reason,
		     const char *desc, const char *uri, size_t un,
		     const char *k2, const char *v2, size_t n2)
{
	msgpack_packer *pk = pbus_call_violate_begin(c, code, reason, desc);

	msgpack_pack_map(pk, k2 ? 2 : 1);
	pbus_pack_kv_strn(pk, "uri", uri, un);
	if (k2)
		pbus_pack_kv_strn(pk, k2, v2, n2);
	return 0;
}

/* The payload's metadata map with the validation keys merged over it. */
struct pre_md {
	struct pbus_mp md, over;
};

static int merge_md(void *arg, msgpack_packer *pk)
{
	const struct pre_md *m = arg;

	return pbus_mp_merge(m->md, m->over, pk);
}

static int on_pre(struct pbus_call *c, void *arg)
{
	struct rf *rf = arg;
	static const char *const pl_keys[] = {"uri", "metadata"};
	static const char *const g_keys[] = {"request_id", "user"};
	struct pbus_mp pl, plv[2], g = {0}, gv[2], mv;
	struct pre_md m = {0};
	const char *uri = "", *s, *err = NULL;
	char scheme[64], desc[512];
	struct pbus_mbuf b;
	char mem[512];
	msgpack_packer *pk;
	struct url u;
	size_t un = 0, n;
	int ret, ok = 0;

	ret = pbus_call_payload_view(c, &pl);
	if (ret)
		return ret == -ENOENT ? 0 : ret;
	pbus_mp_get_keys(pl, pl_keys, plv, 2); /* absent: empty views */
	pbus_mp_str(plv[0], &uri, &un);
	s = url_clean(uri, un, &rf->clean, &n);
	if (url_split(s, n, &u, &err)) {
		snprintf(desc, sizeof(desc), "Could not parse resource URI: %s",
			 err);
		return violation(c, "INVALID_URI", "Invalid URI", desc, uri, un,
				 "error", err, strlen(err));
	}
	if (!u.scheme_len)
		return violation(c, "INVALID_URI", "Invalid URI format",
				 "URI must have a valid scheme (protocol)", uri,
				 un, NULL, NULL, 0);
	n = u.scheme_len < sizeof(scheme) ? u.scheme_len : sizeof(scheme) - 1;
	for (size_t i = 0; i < n; i++)
		scheme[i] = (char)tolower((unsigned char)u.scheme[i]);
	scheme[n] = 0;
	for (int i = 0; i < rf->nprot && !ok; i++)
		ok = !strcmp(rf->protocols[i], scheme);
	if (!ok) {
		snprintf(desc, sizeof(desc),
			 "Protocol '%s' is not in allowed list", scheme);
		pk = pbus_call_violate_begin(c, "PROTOCOL_BLOCKED",
					     "Protocol not allowed", desc);
		msgpack_pack_map(pk, 3);
		pbus_pack_kv_strn(pk, "uri", uri, un);
		pbus_pack_kv_str(pk, "protocol", scheme);
		msgpack_pack_array(pbus_pack_key(pk, "allowed"),
				   (uint32_t)rf->nprot);
		for (int i = 0; i < rf->nprot; i++)
			pbus_mp_pack_cstr(pk, rf->protocols[i]);
		return 0;
	}
	for (int i = 0; i < rf->nblocked && u.host_len; i++) {
		if (!host_in_domain(u.host, u.host_len, rf->blocked[i],
				    strlen(rf->blocked[i])))
			continue;
		snprintf(desc, sizeof(desc), "Domain '%.*s' is in blocked list",
			 (int)u.host_len, u.host);
		return violation(c, "DOMAIN_BLOCKED", "Domain is blocked", desc,
				 uri, un, "domain", u.host, u.host_len);
	}

	/* Valid: payload metadata {**metadata, validated, ...}, written
	 * straight into the answer (only the new keys are packed apart). */
	pbus_call_gctx_view(c, &g);
	pbus_mp_get_keys(g, g_keys, gv, 2);
	if (pbus_mp_type(plv[1]) == PBUS_MP_MAP)
		m.md = plv[1];
	pk = pbus_mbuf_init(&b, mem, sizeof(mem));
	sbuf_pack_piece(pk, &rf->piece[MD_OPEN]);
	pbus_mp_pack_cstr(pk, scheme);
	sbuf_pack_piece(pk, &rf->piece[MD_REQUEST_ID]);
	if (pbus_mp_copy(pk, gv[0]))
		msgpack_pack_nil(pk);
	sbuf_pack_piece(pk, &rf->piece[MD_USER]);
	if (pbus_mp_copy(pk, gv[1]))
		msgpack_pack_nil(pk);
	sbuf_pack_piece(pk, &rf->piece[MD_CLOSE]);
	ret = pbus_mbuf_bytes(&b, &m.over);
	if (!ret)
		ret = pbus_call_modify_set_fn(c, pl, "metadata", merge_md, &m);
	if (ret) {
		pbus_mbuf_fini(&b);
		return ret;
	}
	/* Local state for the post-fetch, result metadata. */
	pbus_mbuf_reset(&b);
	sbuf_pack_piece(pk, &rf->piece[STATE_OPEN]);
	pbus_mp_pack_strn(pk, uri, un);
	ret = pbus_mbuf_bytes(&b, &mv);
	if (!ret)
		ret = pbus_call_state_merge(c, mv);
	pbus_mbuf_fini(&b);
	sbuf_pack_piece(pbus_call_metadata(c), &rf->piece[PASSED]);
	return ret;
}

/* ---------------------------------------------------------------- post */

/* Apply the filters in order; 1 with the result in *o, *on if it changed. */
static int filter_text(struct rf *rf, const char *s, size_t n, const char **o,
		       size_t *on)
{
	const char *cur = s;
	size_t curn = n;

	for (int i = 0; i < rf->nf; i++) {
		struct sbuf *dst = cur == rf->a.p ? &rf->b : &rf->a;
		int ret;

		sbuf_reset(dst);
		ret = pyre_sub(rf->f[i].re, rf->f[i].t, cur, curn, dst);
		if (ret < 0)
			return ret;
		if (ret) {
			cur = dst->p ? dst->p : "";
			curn = dst->len;
		}
	}
	if (cur == s || (curn == n && !memcmp(cur, s, n)))
		return 0;
	*o = cur;
	*on = curn;
	return 1;
}

static bool truthy_state(struct pbus_call *c, const char *key)
{
	struct pbus_mp v;
	bool b;

	if (pbus_call_state_get(c, key, &v) || pbus_mp_is_nil(v))
		return false;
	if (!pbus_mp_bool(v, &b))
		return b;
	return true;
}

static int on_post(struct pbus_call *c, void *arg)
{
	struct rf *rf = arg;
	struct pbus_mp text, uri, ou;
	const char *s, *o, *us = "";
	size_t n, on, un = 0;
	bool filtered = false;
	msgpack_packer *pk;
	int ret;

	if (!truthy_state(c, "uri_validated"))
		return 0;
	if (!pbus_call_field(c, "content.text", &text) &&
	    !pbus_mp_str(text, &s, &n) && n) {
		if ((int64_t)n > rf->max_size) {
			char desc[160];

			if (!pbus_call_field(c, "uri", &uri))
				pbus_mp_str(uri, &us, &un);
			snprintf(desc, sizeof(desc),
				 "Resource content exceeds maximum size of "
				 "%lld bytes",
				 (long long)rf->max_size);
			pk = pbus_call_violate_begin(c, "CONTENT_TOO_LARGE",
						     "Content exceeds maximum "
						     "size",
						     desc);
			msgpack_pack_map(pk, 3);
			pbus_pack_kv_strn(pk, "uri", us, un);
			pbus_pack_kv_int(pk, "size", (int64_t)n);
			pbus_pack_kv_int(pk, "max_size", rf->max_size);
			return 0;
		}
		ret = filter_text(rf, s, n, &o, &on);
		if (ret < 0)
			return ret;
		if (ret) {
			char mem[64];
			struct pbus_mbuf b;
			struct pbus_mp mv;

			ret = pbus_call_replace_str(c, "content.text", o, on);
			if (ret < 0)
				return ret;
			pk = pbus_mbuf_init(&b, mem, sizeof(mem));
			msgpack_pack_map(pk, 1);
			pbus_pack_kv_bool(pk, "content_filtered", true);
			ret = pbus_mbuf_view(&b, &mv);
			if (!ret)
				ret = pbus_call_state_merge(c, mv);
			pbus_mbuf_fini(&b);
			if (ret)
				return ret;
			filtered = true;
		}
	}
	/* context.get_state("content_filtered", False), after this call. */
	pk = pbus_call_metadata(c);
	msgpack_pack_map(pk, 2);
	pbus_pack_key(pk, "filtered");
	if (filtered)
		msgpack_pack_true(pk);
	else if (pbus_call_state_get(c, "content_filtered", &ou) ||
		 pbus_mp_copy(pk, ou))
		msgpack_pack_false(pk);
	pbus_pack_key(pk, "original_uri");
	if (pbus_call_state_get(c, "original_uri", &ou) || pbus_mp_copy(pk, ou))
		msgpack_pack_nil(pk);
	return 0;
}

static int on_tool_post(struct pbus_call *c, void *arg)
{
	(void)c;
	(void)arg;
	return 0; /* pass-through, as the original */
}

static struct rf rf;

static const struct pbus_agent_desc desc = {
	.name = "resource_filter",
	.summary = "Validate resource URIs and filter resource content.",
	.config_help = "  max_content_size: int bytes (1048576)\n"
		       "  allowed_protocols: [str] ([file, http, https])\n"
		       "  blocked_domains: [str] (a domain blocks its "
		       "subdomains too)\n"
		       "  content_filters: [{pattern: regex, replacement: str "
		       "(***)}]\n",
	.config = parse,
	.hooks =
		{
			[PBUS_HOOK_RESOURCE_PRE_FETCH] = on_pre,
			[PBUS_HOOK_RESOURCE_POST_FETCH] = on_post,
			[PBUS_HOOK_TOOL_POST_INVOKE] = on_tool_post,
		},
};

int main(int argc, char **argv)
{
	return pbus_agent_main(argc, argv, &desc, &rf);
}
