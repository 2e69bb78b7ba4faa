// SPDX-License-Identifier: MIT
/*
 * pbus-regex_filter: the framework's SearchReplacePlugin (plugins/
 * regex_filter/search_replace.py). Each rule is re.sub(search, replace, text)
 * with Python's pattern and replacement syntax (pyre), applied in list order
 * so rules chain (crap -> crud, then crud -> yikes). Patterns are compiled
 * once, with PCRE2's JIT, when the config is read; a bad pattern or a bad
 * replacement (\9 without a group 9) rejects the config.
 *
 * Where it looks, as the original:
 *   prompt_pre_fetch   every string argument
 *   prompt_post_fetch  result.messages[*].content.text
 *   tool_pre_invoke    top-level string arguments
 *   tool_post_invoke   a string result; the top-level string values of a map
 *                      result; and (pbus) the text items of the MCP result
 *                      {content: [{type: "text", text}]}, which the original
 *                      never reached.
 * It never blocks. Strings go out modified only when a rule changed them.
 *
 * Config: words: [{search: <regex>, replace: <template>}] (required).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pbus/agent_util.h>

#include "../runtime/rt.h"

struct rule {
	struct pyre *re;
	struct pyre_tmpl *t;
};

struct rx {
	struct rule *r;
	int n;
	struct sbuf a, b; /* ping-pong buffers for chained rules */
};

static int parse(struct pbus_cfgr *cfg, void *arg)
{
	struct rx *x = arg;
	struct pbus_mp words, e;
	struct pbus_mp_iter it;
	int ret;

	ret = pbus_cfgr_get(cfg, "words", PBUS_MP_ARRAY, &words);
	if (ret == -ENOENT)
		return pbus_cfgr_fail(cfg, "words", "required");
	if (ret)
		return ret;
	x->r = calloc((size_t)pbus_mp_count(words) + 1, sizeof(*x->r));
	if (!x->r)
		return -ENOMEM;
	pbus_mp_iter_init(words, &it);
	while (pbus_mp_next(&it, NULL, &e) > 0) {
		struct pbus_cfgr w;
		char name[32], err[256];
		char *search, *replace;

		snprintf(name, sizeof(name), "words[%u]", it.index - 1);
		if (pbus_cfgr_sub(&w, cfg, e, name))
			return -EINVAL;
		search = pbus_cfgr_str(&w, "search", NULL);
		replace = pbus_cfgr_str(&w, "replace", NULL);
		if (!pbus_cfgr_error(cfg) && !search)
			pbus_cfgr_fail(&w, "search", "required");
		if (!pbus_cfgr_error(cfg) && !replace)
			pbus_cfgr_fail(&w, "replace", "required");
		if (!pbus_cfgr_error(cfg) &&
		    pyre_compile(search, 0, &x->r[x->n].re, err, sizeof(err)))
			pbus_cfgr_fail(&w, "search", "bad regex '%s': %s",
				       search, err);
		if (!pbus_cfgr_error(cfg) &&
		    pyre_tmpl_compile(x->r[x->n].re, replace, &x->r[x->n].t,
				      err, sizeof(err)))
			pbus_cfgr_fail(&w, "replace",
				       "bad replacement '%s': %s", replace,
				       err);
		free(search);
		free(replace);
		if (pbus_cfgr_error(cfg))
			return -EINVAL;
		pbus_agent_warn_unused(&w);
		x->n++;
	}
	return 0;
}

/* Apply every rule to @s in order. 1 and the result in *out, *outn when it
 * differs from @s, 0 unchanged, -errno. */
static int apply(struct rx *x, const char *s, size_t n, const char **out,
		 size_t *outn)
{
	const char *cur = s;
	size_t curn = n;
	int changed = 0;

	for (int i = 0; i < x->n; i++) {
		struct sbuf *dst = cur == x->a.p ? &x->b : &x->a;
		int ret;

		sbuf_reset(dst);
		ret = pyre_sub(x->r[i].re, x->r[i].t, cur, curn, dst);
		if (ret < 0)
			return ret;
		if (!ret)
			continue; /* no match: keep reading from cur */
		cur = dst->p ? dst->p : "";
		curn = dst->len;
		changed = 1;
	}
	if (!changed || (curn == n && !memcmp(cur, s, n)))
		return 0;
	*out = cur;
	*outn = curn;
	return 1;
}

static int sub_cb(const struct pbus_mp_path *path, const char *s, size_t n,
		  void *arg, msgpack_packer *pk)
{
	const char *o;
	size_t on;
	int ret;

	(void)path;
	ret = apply(arg, s, n, &o, &on);
	if (ret <= 0)
		return ret;
	return pbus_mp_pack_strn(pk, o, on) ?: 1;
}

static int on_prompt_pre(struct pbus_call *c, void *arg)
{
	int ret = pbus_call_rewrite(c, "args.*", sub_cb, arg);

	return ret < 0 ? ret : 0;
}

static int on_prompt_post(struct pbus_call *c, void *arg)
{
	int ret = pbus_call_rewrite(c, "result.messages.*.content.text", sub_cb,
				    arg);

	return ret < 0 ? ret : 0;
}

/* tool_post_invoke: a string result, top-level strings of a map result, and
 * the MCP text items result.content[*].text. */
static int tool_post_cb(const struct pbus_mp_path *path, const char *s,
			size_t n, void *arg, msgpack_packer *pk)
{
	if (path->depth == 1 || path->depth == 2 ||
	    pbus_mp_path_match(path, "result.content.*.text"))
		return sub_cb(path, s, n, arg, pk);
	return 0;
}

static int on_tool_post(struct pbus_call *c, void *arg)
{
	int ret = pbus_call_rewrite(c, "result.**", tool_post_cb, arg);

	return ret < 0 ? ret : 0;
}

static struct rx rx;

static const struct pbus_agent_desc desc = {
	.name = "regex_filter",
	.summary = "Search and replace in prompts and tool calls with Python "
		   "regexes, rules applied in order.",
	.config_help = "  words: [{search: regex, replace: template}]  "
		       "(required; Python re syntax)\n",
	.config = parse,
	.hooks =
		{
			[PBUS_HOOK_PROMPT_PRE_FETCH] = on_prompt_pre,
			[PBUS_HOOK_PROMPT_POST_FETCH] = on_prompt_post,
			[PBUS_HOOK_TOOL_PRE_INVOKE] =
				on_prompt_pre, /* args.* too */
			[PBUS_HOOK_TOOL_POST_INVOKE] = on_tool_post,
		},
};

int main(int argc, char **argv)
{
	return pbus_agent_main(argc, argv, &desc, &rx);
}
