// SPDX-License-Identifier: MIT
/*
 * pbus-output_length_guard: the framework's OutputLengthGuardPlugin
 * (plugins/output_length_guard/output_length_guard.py) on tool_post_invoke.
 * Lengths are Python's len(): code points, not bytes.
 *
 * A text outside [min_chars, max_chars] is, with strategy "block", a
 * violation OUTPUT_LENGTH_VIOLATION {length, min, max, strategy}; with
 * "truncate" (the default) cut to max_chars including the ellipsis
 * (text[:max - len(ellipsis)] + ellipsis). A text under min_chars is never
 * changed, only annotated. Metadata per text: original_length,
 * within_bounds, and when out of bounds min_chars, max_chars, strategy,
 * truncated, new_length.
 *
 * Result shapes, as the original: a string; a map with a string "text"; a
 * list of strings (metadata {"items": [...]}). pbus also handles the
 * gateway's MCP result {content: [{type: "text", text}, ...]}, item by item
 * like a list (metadata {"items": [...]} for the text items), which the
 * original passed through untouched. Anything else passes unchanged.
 *
 * Fix: with no max_chars the block message no longer says "None"; it names
 * only the bound that is set.
 *
 * Config: min_chars (int >= 0, 0), max_chars (int >= 1, none), strategy
 * (truncate|block), ellipsis (str, "…").
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <pbus/agent_util.h>

#include "../runtime/rt.h"

struct olg {
	int64_t min, max; /* max 0: none */
	char *strategy;	  /* as written, for metadata */
	bool block;
	char *ell;
	size_t ell_n, ell_len; /* bytes, code points */
	struct sbuf out;
};

static int parse(struct pbus_cfgr *cfg, void *arg)
{
	struct olg *g = arg;

	g->min = pbus_cfgr_int(cfg, "min_chars", 0, 0, INT64_MAX);
	g->max = pbus_cfgr_int(cfg, "max_chars", 0, 1, INT64_MAX);
	g->strategy = pbus_cfgr_str(cfg, "strategy", "truncate");
	g->ell = pbus_cfgr_str(cfg, "ellipsis", "\u2026");
	if (pbus_cfgr_error(cfg))
		return -EINVAL;
	if (!strcasecmp(g->strategy, "block"))
		g->block = true;
	else if (strcasecmp(g->strategy, "truncate"))
		return pbus_cfgr_fail(cfg, "strategy",
				      "'%s' is not truncate or block",
				      g->strategy);
	if (g->max && g->min > g->max)
		return pbus_cfgr_fail(cfg, "min_chars",
				      "%lld is greater than max_chars %lld",
				      (long long)g->min, (long long)g->max);
	g->ell_n = strlen(g->ell);
	g->ell_len = utf8_len(g->ell, g->ell_n);
	return 0;
}

/* The framework's _truncate() into g->out. */
static void truncate_text(struct olg *g, const char *s, size_t n)
{
	size_t max = (size_t)g->max;

	sbuf_reset(&g->out);
	if (g->ell_len >= max) {
		sbuf_add(&g->out, s, utf8_off(s, n, max));
		return;
	}
	sbuf_add(&g->out, s, utf8_off(s, n, max - g->ell_len));
	sbuf_add(&g->out, g->ell, g->ell_n);
}

/* One text checked: 0 within bounds, 1 truncated (g->out), 2 out of bounds
 * and unchanged; -1 block. Writes its metadata map to @md. */
static int handle(struct olg *g, const char *s, size_t n, msgpack_packer *md,
		  int64_t *length)
{
	int64_t len = (int64_t)utf8_len(s, n);
	bool below = g->min && len < g->min;
	bool above = g->max && len > g->max;

	*length = len;
	if (!below && !above) {
		msgpack_pack_map(md, 2);
		pbus_pack_kv_int(md, "original_length", len);
		pbus_pack_kv_bool(md, "within_bounds", true);
		return 0;
	}
	msgpack_pack_map(md, g->block ? 5 : 7);
	pbus_pack_kv_int(md, "original_length", len);
	pbus_pack_kv_bool(md, "within_bounds", false);
	pbus_pack_kv_int(md, "min_chars", g->min);
	if (g->max)
		pbus_pack_kv_int(md, "max_chars", g->max);
	else
		pbus_pack_kv_nil(md, "max_chars");
	pbus_pack_kv_str(md, "strategy", g->strategy);
	if (g->block)
		return -1;
	if (above) {
		truncate_text(g, s, n);
		pbus_pack_kv_bool(md, "truncated", true);
		pbus_pack_kv_int(md, "new_length",
				 (int64_t)utf8_len(g->out.p, g->out.len));
		return 1;
	}
	pbus_pack_kv_bool(md, "truncated", false);
	pbus_pack_kv_int(md, "new_length", len);
	return 2;
}

static int violate(struct pbus_call *c, struct olg *g, int64_t length)
{
	char desc[160];
	msgpack_packer *pk;

	if (g->max)
		snprintf(desc, sizeof(desc),
			 "Result length %lld not in [%lld, "
			 "%lld]",
			 (long long)length, (long long)g->min,
			 (long long)g->max);
	else
		snprintf(desc, sizeof(desc),
			 "Result length %lld is below the minimum of %lld",
			 (long long)length, (long long)g->min);
	pk = pbus_call_violate_begin(c, "OUTPUT_LENGTH_VIOLATION",
				     "Output length out of bounds", desc);
	msgpack_pack_map(pk, 4);
	pbus_pack_kv_int(pk, "length", length);
	pbus_pack_kv_int(pk, "min", g->min);
	if (g->max)
		pbus_pack_kv_int(pk, "max", g->max);
	else
		pbus_pack_kv_nil(pk, "max");
	return pbus_pack_kv_str(pk, "strategy", g->strategy);
}

/* Several texts (a list, or the MCP content items): metadata {"items"}. */
struct items {
	struct olg *g;
	struct pbus_mbuf md; /* the item maps, back to back */
	unsigned n;
	int64_t blocked_len; /* >= 0: an item was out of bounds (block) */
};

static int item_cb(const struct pbus_mp_path *path, const char *s, size_t n,
		   void *arg, msgpack_packer *pk)
{
	struct items *it = arg;
	int64_t len;
	int ret;

	(void)path;
	ret = handle(it->g, s, n, &it->md.pk, &len);
	it->n++;
	if (ret < 0) {
		it->blocked_len = len;
		return -ECANCELED;
	}
	if (ret != 1)
		return 0;
	return pbus_mp_pack_strn(pk, it->g->out.p, it->g->out.len) ?: 1;
}

static int do_items(struct pbus_call *c, struct olg *g, const char *pattern)
{
	struct items it = {.g = g, .blocked_len = -1};
	char mem[1024];
	msgpack_packer *pk;
	int ret;

	pbus_mbuf_init(&it.md, mem, sizeof(mem));
	ret = pbus_call_rewrite(c, pattern, item_cb, &it);
	if (ret == -ECANCELED)
		ret = violate(c, g, it.blocked_len);
	if (ret >= 0 && !it.md.err) {
		pk = pbus_call_metadata(c);
		msgpack_pack_map(pk, 1);
		msgpack_pack_array(pbus_pack_key(pk, "items"), it.n);
		if (it.md.len)
			pk->callback(pk->data, (const char *)it.md.p,
				     it.md.len);
	}
	ret = ret < 0 ? ret : it.md.err;
	pbus_mbuf_fini(&it.md);
	return ret < 0 ? ret : 0;
}

static int do_one(struct pbus_call *c, struct olg *g, const char *path,
		  struct pbus_mp v)
{
	char mem[256];
	struct pbus_mbuf md;
	struct pbus_mp mv;
	const char *s;
	size_t n;
	int64_t len;
	int ret;

	pbus_mp_str(v, &s, &n);
	pbus_mbuf_init(&md, mem, sizeof(mem));
	ret = handle(g, s, n, &md.pk, &len);
	if (ret < 0)
		ret = violate(c, g, len);
	else if (ret == 1)
		ret = pbus_call_replace_str(c, path, g->out.p, g->out.len);
	if (ret >= 0)
		ret = pbus_mbuf_view(&md, &mv);
	if (ret >= 0)
		ret = pbus_mp_copy(pbus_call_metadata(c), mv);
	pbus_mbuf_fini(&md);
	return ret < 0 ? ret : 0;
}

static bool all_strings(struct pbus_mp list)
{
	struct pbus_mp_iter it;
	struct pbus_mp e;

	pbus_mp_iter_init(list, &it);
	while (pbus_mp_next(&it, NULL, &e) > 0)
		if (pbus_mp_type(e) != PBUS_MP_STR)
			return false;
	return true;
}

/* The MCP result: content is a list with at least one text item. */
static bool is_mcp(struct pbus_mp res)
{
	struct pbus_mp content, e, t;
	struct pbus_mp_iter it;

	if (pbus_mp_get(res, "content", &content) ||
	    pbus_mp_iter_init(content, &it) || it.is_map)
		return false;
	while (pbus_mp_next(&it, NULL, &e) > 0)
		if (!pbus_mp_get(e, "text", &t) &&
		    pbus_mp_type(t) == PBUS_MP_STR)
			return true;
	return false;
}

static int on_tool_post(struct pbus_call *c, void *arg)
{
	struct olg *g = arg;
	struct pbus_mp res, text;

	if (pbus_call_field(c, "result", &res))
		return 0;
	switch (pbus_mp_type(res)) {
	case PBUS_MP_STR:
		return do_one(c, g, "result", res);
	case PBUS_MP_MAP:
		if (!pbus_mp_get(res, "text", &text) &&
		    pbus_mp_type(text) == PBUS_MP_STR)
			return do_one(c, g, "result.text", text);
		if (is_mcp(res))
			return do_items(c, g, "result.content.*.text");
		return 0;
	case PBUS_MP_ARRAY:
		if (!all_strings(res))
			return 0;
		return do_items(c, g, "result.*");
	default:
		return 0;
	}
}

static struct olg olg;

static const struct pbus_agent_desc desc = {
	.name = "output_length_guard",
	.summary = "Block or truncate tool results outside a length range.",
	.config_help = "  min_chars: int >= 0 (0: no minimum)\n"
		       "  max_chars: int >= 1 (none: no maximum)\n"
		       "  strategy: truncate|block (truncate)\n"
		       "  ellipsis: str (\u2026)\n",
	.config = parse,
	.hooks = {[PBUS_HOOK_TOOL_POST_INVOKE] = on_tool_post},
};

int main(int argc, char **argv)
{
	return pbus_agent_main(argc, argv, &desc, &olg);
}
