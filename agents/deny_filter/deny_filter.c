// SPDX-License-Identifier: MIT
/*
 * pbus-deny_filter: the framework's DenyListPlugin (plugins/deny_filter/
 * deny.py). On prompt_pre_fetch, a prompt whose arguments contain any of the
 * configured words -- a case-sensitive substring test, as Python's `in` --
 * is blocked with the violation {code "deny", reason "Prompt not allowed",
 * description "A deny word was found in the prompt", details {}}.
 *
 * Config: words (list of strings, required).
 */
#include <errno.h>
#include <string.h>

#include <pbus/agent_util.h>

struct deny {
	char **words;
	size_t *lens;
	int n;
};

static int parse(struct pbus_cfgr *cfg, void *arg)
{
	struct deny *d = arg;

	if (!pbus_cfgr_has(cfg, "words"))
		return pbus_cfgr_fail(cfg, "words", "required");
	d->n = pbus_cfgr_strv(cfg, "words", &d->words);
	if (pbus_cfgr_error(cfg))
		return -EINVAL;
	d->lens = calloc((size_t)d->n + 1, sizeof(*d->lens));
	if (!d->lens)
		return -ENOMEM;
	for (int i = 0; i < d->n; i++)
		d->lens[i] = strlen(d->words[i]);
	return 0;
}

static int on_prompt_pre(struct pbus_call *c, void *arg)
{
	struct deny *d = arg;
	struct pbus_mp pl, args, k, v;
	struct pbus_mp_iter it;

	if (pbus_call_payload_view(c, &pl) || pbus_mp_get(pl, "args", &args) ||
	    pbus_mp_iter_init(args, &it) || !it.is_map)
		return 0;
	while (pbus_mp_next(&it, &k, &v) > 0) {
		const char *s, *ks;
		size_t n, kn;

		if (pbus_mp_str(v, &s, &n))
			continue; /* prompt args are strings */
		for (int i = 0; i < d->n; i++) {
			if (!memmem(s, n, d->words[i], d->lens[i]))
				continue;
			if (!pbus_mp_str(k, &ks, &kn))
				pbus_agent_log(PBUS_LOG_WARN,
					       "Deny word detected in prompt "
					       "argument '%.*s'",
					       (int)kn, ks);
			return pbus_call_violate(
				c, "deny", "Prompt not allowed",
				"A deny word was found in the prompt");
		}
	}
	return 0;
}

static struct deny deny;

static const struct pbus_agent_desc desc = {
	.name = "deny_filter",
	.summary = "Block prompts whose arguments contain a deny word "
		   "(case-sensitive).",
	.config_help = "  words: [str]   the deny words (required)\n",
	.config = parse,
	.hooks = {[PBUS_HOOK_PROMPT_PRE_FETCH] = on_prompt_pre},
};

int main(int argc, char **argv)
{
	return pbus_agent_main(argc, argv, &desc, &deny);
}
