// SPDX-License-Identifier: MIT
/*
 * pbus-pii_filter: the framework's PIIFilterPlugin (plugins/pii_filter/
 * pii_filter.py). Detects SSNs, BSNs, card numbers, e-mail addresses, phone
 * numbers, IP addresses, dates of birth, passport, driver's licence, bank
 * account and medical record numbers, AWS keys, API keys and custom
 * patterns, then masks them (each built-in pattern with its fixed strategy,
 * custom ones with theirs) or, with block_on_detection, blocks the call.
 *
 * Hooks, as the original:
 *   prompt_pre_fetch   string arguments; blocks at the first argument with
 *                      PII (PII_DETECTED, details {field, types, count})
 *   prompt_post_fetch  result.messages[*].content.text; masks, never blocks
 *   tool_pre_invoke    every string under args, nested maps and lists
 *                      (PII_DETECTED_IN_TOOL_ARGS)
 *   tool_post_invoke   a string result, or every string under a map or --
 *                      pbus fix -- list result (PII_DETECTED_IN_TOOL_RESULT);
 *                      the MCP result {content: [{type, text}], ...} is a
 *                      map, so its texts and structuredContent are covered
 * Local context metadata, as the original: "pii_detections" {<hook key>:
 * {detected, fields|arguments|messages, types, total_count}} and
 * "pii_filter_stats" {total_detections, total_masked}.
 *
 * Deliberate differences (docs/agents.md): overlaps across types are
 * resolved before masking; list results are scanned; message keys use the
 * plain role ("message_user", counting every message of that role); a
 * string holding JSON is masked as text, which keeps its formatting.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pbus/agent_util.h>

#include "pii.h"

/* ---------------------------------------------------------------- config */

static const char *const detect_keys[PII_CUSTOM] = {
	"detect_ssn",
	"detect_bsn",
	"detect_credit_card",
	"detect_email",
	"detect_phone",
	"detect_ip_address",
	"detect_date_of_birth",
	"detect_passport",
	"detect_driver_license",
	"detect_bank_account",
	"detect_medical_record",
	"detect_aws_keys",
	"detect_api_keys",
};

static int strategy_key(struct pbus_cfgr *r, const char *key, int def)
{
	char *s = pbus_cfgr_str(r, key, NULL);
	int v = def;

	if (s) {
		v = pii_strategy_from_name(s);
		if (v < 0)
			pbus_cfgr_fail(r, key,
				       "'%s' is not one of redact, partial, "
				       "hash, tokenize, remove",
				       s);
		free(s);
	}
	return v < 0 ? def : v;
}

static int parse_custom(struct pii *p, struct pbus_cfgr *cfg)
{
	struct pbus_mp list, e;
	struct pbus_mp_iter it;
	char err[256];

	if (pbus_cfgr_get(cfg, "custom_patterns", PBUS_MP_ARRAY, &list))
		return pbus_cfgr_error(cfg) ? -EINVAL : 0;
	pbus_mp_iter_init(list, &it);
	while (pbus_mp_next(&it, NULL, &e) > 0) {
		struct pbus_cfgr c;
		char name[40], *type, *pat, *desc;
		int t = -1, strat, ret = 0;
		bool enabled;

		snprintf(name, sizeof(name), "custom_patterns[%u]",
			 it.index - 1);
		if (pbus_cfgr_sub(&c, cfg, e, name))
			return -EINVAL;
		type = pbus_cfgr_str(&c, "type", NULL);
		pat = pbus_cfgr_str(&c, "pattern", NULL);
		desc = pbus_cfgr_str(&c, "description", NULL);
		strat = strategy_key(&c, "mask_strategy", PII_REDACT);
		enabled = pbus_cfgr_bool(&c, "enabled", true);
		if (!type)
			pbus_cfgr_fail(&c, "type", "required");
		else if ((t = pii_type_from_name(type)) < 0)
			pbus_cfgr_fail(&c, "type",
				       "'%s' is not a PII type (ssn, bsn, "
				       "credit_card, email, phone, ip_address, "
				       "date_of_birth, passport, "
				       "driver_license, bank_account, "
				       "medical_record, aws_key, api_key, "
				       "custom)",
				       type);
		if (!pat)
			pbus_cfgr_fail(&c, "pattern", "required");
		if (!desc)
			pbus_cfgr_fail(&c, "description", "required");
		if (!pbus_cfgr_error(cfg) && enabled) {
			ret = pii_add_pattern(p, t, pat, strat, err,
					      sizeof(err));
			if (ret == -EINVAL)
				pbus_cfgr_fail(&c, "pattern",
					       "bad regex '%s': %s", pat, err);
		}
		free(type);
		free(pat);
		free(desc);
		if (pbus_cfgr_error(cfg))
			return -EINVAL;
		if (ret)
			return ret;
		pbus_agent_warn_unused(&c);
	}
	return 0;
}

static int parse(struct pbus_cfgr *cfg, void *arg)
{
	struct pii *p = arg;
	char err[256], **wl = NULL;
	int ret, n;

	for (int t = 0; t < PII_CUSTOM; t++)
		p->detect[t] = pbus_cfgr_bool(cfg, detect_keys[t], true);
	p->default_strategy =
		strategy_key(cfg, "default_mask_strategy", PII_REDACT);
	p->redaction = pbus_cfgr_str(cfg, "redaction_text", "[REDACTED]");
	p->block = pbus_cfgr_bool(cfg, "block_on_detection", false);
	p->log = pbus_cfgr_bool(cfg, "log_detections", true);
	p->details = pbus_cfgr_bool(cfg, "include_detection_details", true);
	n = pbus_cfgr_strv(cfg, "whitelist_patterns", &wl);
	if (pbus_cfgr_error(cfg))
		return -EINVAL;
	ret = pii_add_builtins(p, err, sizeof(err));
	if (ret)
		return pbus_cfgr_fail(cfg, NULL, "built-in pattern: %s", err);
	ret = parse_custom(p, cfg);
	if (ret)
		return ret;
	p->wl = calloc((size_t)n + 1, sizeof(*p->wl));
	if (!p->wl)
		return -ENOMEM;
	for (int i = 0; i < n; i++) {
		char key[40];

		if (pyre_compile(wl[i], PYRE_IGNORECASE, &p->wl[i], err,
				 sizeof(err))) {
			snprintf(key, sizeof(key), "whitelist_patterns[%d]", i);
			pbus_cfgr_fail(cfg, key, "bad regex '%s': %s", wl[i],
				       err);
			break;
		}
		p->nwl++;
	}
	pbus_strv_free(wl);
	if (pbus_cfgr_error(cfg))
		return -EINVAL;
	pii_finish(p);
	return 0;
}

/* ---------------------------------------------------------------- scanning */

enum scan_mode {
	SCAN_NESTED,  /* field = Python-style path: args.a[0].b */
	SCAN_KEYS,    /* field = the argument's key (prompt_pre_fetch) */
	SCAN_MESSAGES /* field = "message_<role>" (prompt_post_fetch) */
};

/* One hook's scan: what was found, in the framework's terms. */
struct scan {
	struct pii *p;
	enum scan_mode mode;
	unsigned min_depth; /* strings shallower than this are not looked at */
	bool mask;	    /* write masked strings */
	bool stop_first;    /* stop at the first field with PII (-ECANCELED) */
	bool count_det, count_mask; /* which stats the framework bumped here */
	const char *what;	    /* for log lines */
	struct pbus_mp messages;    /* result.messages, for roles */
	/* results */
	unsigned tcount[PII_NTYPES]; /* over all fields */
	unsigned total;
	struct sbuf fields; /* field names, NUL-terminated, in order */
	unsigned nfields;
	struct sbuf name; /* scratch: the current field's name */
};

static void key_text(struct sbuf *b, struct pbus_mp key)
{
	const char *s;
	size_t n;
	int64_t i;

	if (!pbus_mp_str(key, &s, &n))
		sbuf_add(b, s, n);
	else if (!pbus_mp_int(key, &i)) {
		if (i < 0)
			sbuf_addc(b, '-');
		sbuf_addu(b, i < 0 ? -(uint64_t)i : (uint64_t)i);
	} else
		sbuf_addc(b, '?');
}

/* The field name of the string at @path, into sc->name. */
static void field_name(struct scan *sc, const struct pbus_mp_path *path)
{
	struct sbuf *b = &sc->name;

	sbuf_reset(b);
	if (sc->mode == SCAN_KEYS) {
		key_text(b, path->seg[path->depth - 1].key);
	} else if (sc->mode == SCAN_MESSAGES) {
		struct pbus_mp m, role;
		const char *s;
		size_t n;

		sbuf_adds(b, "message_");
		/* result.messages.<i>.content.text */
		if (!pbus_mp_index(sc->messages, path->seg[2].index, &m) &&
		    !pbus_mp_get(m, "role", &role) &&
		    !pbus_mp_str(role, &s, &n))
			sbuf_add(b, s, n);
		else
			sbuf_adds(b, "None");
	} else {
		for (unsigned i = 0; i < path->depth; i++) {
			const struct pbus_mp_seg *sg = &path->seg[i];

			if (!sg->key.p) {
				sbuf_addc(b, '[');
				sbuf_addu(b, sg->index);
				sbuf_addc(b, ']');
				continue;
			}
			if (i)
				sbuf_addc(b, '.');
			key_text(b, sg->key);
		}
	}
	sbuf_addc(b, 0);
}

/* Add the current field to the list (once) and its counts to the totals. */
static void record(struct scan *sc)
{
	struct pii *p = sc->p;
	const char *f = sc->fields.p;
	int seen = 0;

	/* Paths are unique; only message roles repeat. */
	for (unsigned i = 0; sc->mode == SCAN_MESSAGES && i < sc->nfields;
	     i++, f += strlen(f) + 1)
		if (!strcmp(f, sc->name.p)) {
			seen = 1;
			break;
		}
	if (!seen) {
		sbuf_add(&sc->fields, sc->name.p, sc->name.len);
		sc->nfields++;
	}
	for (int t = 0; t < PII_NTYPES; t++) {
		sc->tcount[t] += p->tcount[t];
		sc->total += p->tcount[t];
	}
}

/* "ssn, email": the types of @tcount in report order. */
static void types_text(const struct pii *p, const unsigned *tcount,
		       struct sbuf *b)
{
	for (int k = 0; k < p->ntypes; k++)
		if (tcount[p->order[k]]) {
			if (b->len)
				sbuf_adds(b, ", ");
			sbuf_adds(b, pii_type_name(p->order[k]));
		}
	sbuf_addc(b, 0);
}

static void pack_types(msgpack_packer *pk, const struct pii *p,
		       const unsigned *tcount)
{
	unsigned n = 0;

	for (int t = 0; t < PII_NTYPES; t++)
		n += tcount[t] != 0;
	msgpack_pack_array(pk, n);
	for (int k = 0; k < p->ntypes; k++)
		if (tcount[p->order[k]])
			pbus_mp_pack_cstr(pk, pii_type_name(p->order[k]));
}

static int scan_cb(const struct pbus_mp_path *path, const char *s, size_t n,
		   void *arg, msgpack_packer *pk)
{
	struct scan *sc = arg;
	struct pii *p = sc->p;
	int found;

	if (path->depth < sc->min_depth)
		return 0;
	found = pii_detect(p, s, n);
	if (found <= 0)
		return found;
	field_name(sc, path);
	record(sc);
	if (sc->count_det)
		p->detection_count += (unsigned)found;
	if (p->log) {
		struct sbuf t = {0};

		types_text(p, p->tcount, &t);
		pbus_agent_log(PBUS_LOG_WARN, "PII detected in %s '%s': %s",
			       sc->what, sc->name.p, t.p ? t.p : "");
		sbuf_fini(&t);
	}
	if (sc->stop_first)
		return -ECANCELED;
	if (!sc->mask)
		return 0;
	if (pii_mask(p, s, n))
		return -ENOMEM;
	if (sc->count_mask)
		p->masked_count += (unsigned)found;
	return pbus_mp_pack_strn(pk, p->out.p, p->out.len) ?: 1;
}

static void scan_fini(struct scan *sc)
{
	sbuf_fini(&sc->fields);
	sbuf_fini(&sc->name);
}

/* ---------------------------------------------------------------- metadata */

/* {"detected": true, <list_key>: [fields], "types": [...], "total_count"} */
static void pack_hook_md(msgpack_packer *pk, const struct scan *sc,
			 const char *list_key)
{
	const char *f = sc->fields.p;

	msgpack_pack_map(pk, 4);
	msgpack_pack_true(pbus_pack_key(pk, "detected"));
	pbus_pack_key(pk, list_key);
	msgpack_pack_array(pk, sc->nfields);
	for (unsigned i = 0; i < sc->nfields; i++, f += strlen(f) + 1)
		pbus_mp_pack_cstr(pk, f);
	pack_types(pbus_pack_key(pk, "types"), sc->p, sc->tcount);
	msgpack_pack_int64(pbus_pack_key(pk, "total_count"), sc->total);
}

/*
 * Answer local_metadata = the current local metadata with
 * pii_detections[@hook_key] set (when @sc found something and details are
 * on; @replace: pii_detections = {@hook_key: ...} as prompt_pre_fetch did)
 * and, with @stats, pii_filter_stats -- pbus_call_local_metadata_merge()'s
 * answer. Merging into nothing writes the new map as it is (its keys are
 * distinct), which is what the merge would write; so the usual call, with
 * no earlier metadata, merges nothing.
 */
static int write_md(struct pbus_call *c, const struct scan *sc,
		    const char *hook_key, const char *list_key, bool replace,
		    bool stats)
{
	struct pii *p = sc->p;
	bool det = sc->total && p->details;
	char mem1[1024], mem2[2048];
	struct pbus_mbuf hb, ob;
	struct pbus_mp hv, ov, lc, md = {0}, cur = {0}, pd = {0};
	msgpack_packer *pk;
	int ret = 0;

	if (!det && !stats)
		return 0;
	if (!pbus_call_lctx_view(c, &lc) && !pbus_mp_get(lc, "metadata", &md) &&
	    pbus_mp_type(md) == PBUS_MP_MAP)
		cur = md;
	if (det && !replace && md.len)
		pbus_mp_get(md, "pii_detections", &pd);
	if (pbus_mp_type(pd) != PBUS_MP_MAP)
		pd = (struct pbus_mp){0};
	pk = pbus_mbuf_init(&ob, mem2, sizeof(mem2));
	pbus_mbuf_init(&hb, mem1, sizeof(mem1));
	msgpack_pack_map(pk, (uint32_t)det + stats);
	if (det) {
		/* {**pd, hook_key: {...}} */
		msgpack_packer *hp =
			pd.len ? &hb.pk : pbus_pack_key(pk, "pii_detections");

		msgpack_pack_map(hp, 1);
		pack_hook_md(pbus_pack_key(hp, hook_key), sc, list_key);
		if (pd.len) {
			ret = pbus_mbuf_bytes(&hb, &hv);
			if (!ret)
				ret = pbus_mp_merge(
					pd, hv,
					pbus_pack_key(pk, "pii_detections"));
		}
	}
	if (stats) {
		msgpack_pack_map(pbus_pack_key(pk, "pii_filter_stats"), 2);
		msgpack_pack_int64(pbus_pack_key(pk, "total_detections"),
				   (int64_t)p->detection_count);
		msgpack_pack_int64(pbus_pack_key(pk, "total_masked"),
				   (int64_t)p->masked_count);
	}
	if (!ret)
		ret = pbus_mbuf_bytes(&ob, &ov);
	if (!ret && !cur.len)
		ret = pbus_mp_copy(pbus_call_local_metadata(c), ov);
	else if (!ret && pbus_mp_count(cur) > PBUS_MP_MERGE_MAX)
		ret = -E2BIG;
	else if (!ret)
		ret = pbus_mp_merge(cur, ov, pbus_call_local_metadata(c));
	pbus_mbuf_fini(&hb);
	pbus_mbuf_fini(&ob);
	return ret;
}

/* details {<types_key>: [...], <count_key>: n} */
static int block(struct pbus_call *c, const struct scan *sc, const char *reason,
		 const char *desc, const char *code, const char *count_key)
{
	msgpack_packer *pk = pbus_call_violate_begin(c, code, reason, desc);

	msgpack_pack_map(pk, 2);
	pack_types(pbus_pack_key(pk, "detected_types"), sc->p, sc->tcount);
	return pbus_pack_kv_int(pk, count_key, sc->total);
}

/* Falsy in Python: nil, false, 0, 0.0, "", [], {}. */
static bool truthy(struct pbus_mp v)
{
	size_t n;
	int64_t i;
	double d;
	bool b;

	switch (pbus_mp_type(v)) {
	case PBUS_MP_NIL:
	case PBUS_MP_INVALID:
		return false;
	case PBUS_MP_BOOL:
		return !pbus_mp_bool(v, &b) && b;
	case PBUS_MP_INT:
		return !pbus_mp_int(v, &i) && i;
	case PBUS_MP_FLOAT:
		return !pbus_mp_float(v, &d) && d != 0;
	case PBUS_MP_STR:
		return !pbus_mp_str(v, NULL, &n) && n;
	case PBUS_MP_BIN:
		return !pbus_mp_bin(v, NULL, &n) && n;
	case PBUS_MP_ARRAY:
	case PBUS_MP_MAP:
		return pbus_mp_count(v) > 0;
	default:
		return true;
	}
}

/* ---------------------------------------------------------------- hooks */

static int on_prompt_pre(struct pbus_call *c, void *arg)
{
	struct pii *p = arg;
	struct scan sc = {.p = p,
			  .mode = SCAN_KEYS,
			  .min_depth = 2,
			  .mask = !p->block,
			  .stop_first = p->block,
			  .count_mask = true,
			  .what = "prompt argument"};
	struct pbus_mp pl, args;
	int ret;

	if (pbus_call_payload_view(c, &pl) || pbus_mp_get(pl, "args", &args) ||
	    !truthy(args))
		return 0;
	ret = pbus_call_rewrite_view(c, pl, "args.*", scan_cb, &sc);
	if (ret == -ECANCELED) {
		char desc[320];
		msgpack_packer *pk;

		snprintf(desc, sizeof(desc),
			 "Sensitive information detected in argument '%s'",
			 sc.name.p);
		pk = pbus_call_violate_begin(c, "PII_DETECTED",
					     "PII detected in prompt", desc);
		msgpack_pack_map(pk, 3);
		pbus_pack_kv_str(pk, "field", sc.name.p);
		pack_types(pbus_pack_key(pk, "types"), p, sc.tcount);
		ret = pbus_pack_kv_int(pk, "count", sc.total);
	} else if (ret >= 0) {
		ret = write_md(c, &sc, "pre_fetch", "fields", true, false);
	}
	scan_fini(&sc);
	return ret < 0 ? ret : 0;
}

static int on_prompt_post(struct pbus_call *c, void *arg)
{
	struct pii *p = arg;
	struct scan sc = {.p = p,
			  .mode = SCAN_MESSAGES,
			  .mask = true,
			  .count_mask = true,
			  .what = "prompt message"};
	struct pbus_mp pl;
	int ret;

	if (pbus_call_payload_view(c, &pl) ||
	    pbus_mp_path(pl, "result.messages", &sc.messages) ||
	    !truthy(sc.messages))
		return 0;
	ret = pbus_call_rewrite_view(c, pl, "result.messages.*.content.text",
				     scan_cb, &sc);
	if (ret >= 0)
		ret = write_md(c, &sc, "post_fetch", "messages", false, true);
	scan_fini(&sc);
	return ret < 0 ? ret : 0;
}

static int on_tool_pre(struct pbus_call *c, void *arg)
{
	struct pii *p = arg;
	struct scan sc = {.p = p,
			  .mode = SCAN_NESTED,
			  .min_depth = 1,
			  .mask = !p->block,
			  .count_det = true,
			  .what = "tool arguments at"};
	struct pbus_mp pl, args;
	int ret;

	if (pbus_call_payload_view(c, &pl) || pbus_mp_get(pl, "args", &args) ||
	    !truthy(args))
		return 0;
	ret = pbus_call_rewrite_view(c, pl, "args.**", scan_cb, &sc);
	if (ret >= 0 && p->block && sc.total)
		ret = block(c, &sc, "PII detected in tool arguments",
			    "Detected PII in tool arguments",
			    "PII_DETECTED_IN_TOOL_ARGS", "total_count");
	else if (ret >= 0)
		ret = write_md(c, &sc, "tool_pre_invoke", "arguments", false,
			       false);
	scan_fini(&sc);
	return ret < 0 ? ret : 0;
}

static int on_tool_post(struct pbus_call *c, void *arg)
{
	struct pii *p = arg;
	struct scan sc = {.p = p,
			  .mode = SCAN_NESTED,
			  .min_depth = 1,
			  .mask = !p->block,
			  .count_det = true,
			  .what = "tool result at"};
	struct pbus_mp pl, res;
	bool is_str;
	int ret;

	if (pbus_call_payload_view(c, &pl) || pbus_mp_get(pl, "result", &res) ||
	    !truthy(res))
		return 0;
	is_str = pbus_mp_type(res) == PBUS_MP_STR;
	/* The framework counted masks only for a string result. */
	sc.count_mask = is_str;
	if (is_str || pbus_mp_type(res) == PBUS_MP_MAP ||
	    pbus_mp_type(res) == PBUS_MP_ARRAY)
		ret = pbus_call_rewrite_view(c, pl, "result.**", scan_cb, &sc);
	else
		ret = 0; /* numbers, booleans: nothing to scan */
	if (ret >= 0 && p->block && sc.total) {
		if (is_str) {
			struct sbuf t = {0}, d = {0};

			types_text(p, sc.tcount, &t);
			sbuf_addf(&d, "Detected %s in tool output",
				  t.p ? t.p : "");
			sbuf_addc(&d, 0);
			ret = block(c, &sc, "PII detected in tool result",
				    d.err ? "Detected PII in tool output" : d.p,
				    "PII_DETECTED_IN_TOOL_RESULT", "count");
			sbuf_fini(&t);
			sbuf_fini(&d);
		} else {
			ret = block(c, &sc, "PII detected in tool result",
				    "Detected PII in nested tool result data",
				    "PII_DETECTED_IN_TOOL_RESULT",
				    "total_count");
		}
	} else if (ret >= 0) {
		ret = write_md(c, &sc, "tool_post_invoke", "fields", false,
			       true);
	}
	scan_fini(&sc);
	return ret < 0 ? ret : 0;
}

static struct pii pii;

static const struct pbus_agent_desc desc = {
	.name = "pii_filter",
	.summary = "Detect and mask (or block) PII in prompts and tool calls.",
	.config_help =
		"  detect_ssn, detect_bsn, detect_credit_card, detect_email,\n"
		"  detect_phone, detect_ip_address, detect_date_of_birth,\n"
		"  detect_passport, detect_driver_license, "
		"detect_bank_account,\n"
		"  detect_medical_record, detect_aws_keys, detect_api_keys: "
		"bool "
		"(true)\n"
		"  default_mask_strategy: redact|partial|hash|tokenize|remove "
		"(redact)\n"
		"  redaction_text: str ([REDACTED])\n"
		"  block_on_detection: bool (false)\n"
		"  log_detections: bool (true)\n"
		"  include_detection_details: bool (true)\n"
		"  custom_patterns: [{type, pattern, description, "
		"mask_strategy, "
		"enabled}]\n"
		"  whitelist_patterns: [regex]\n",
	.config = parse,
	.hooks =
		{
			[PBUS_HOOK_PROMPT_PRE_FETCH] = on_prompt_pre,
			[PBUS_HOOK_PROMPT_POST_FETCH] = on_prompt_post,
			[PBUS_HOOK_TOOL_PRE_INVOKE] = on_tool_pre,
			[PBUS_HOOK_TOOL_POST_INVOKE] = on_tool_post,
		},
};

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "--self-test"))
		return pii_selftest((unsigned)strtoul(argv[2], NULL, 10));
	return pbus_agent_main(argc, argv, &desc, &pii);
}
