// SPDX-License-Identifier: MIT
/*
 * pbus-schema_guard: the framework's SchemaGuardPlugin (plugins/
 * schema_guard/schema_guard.py). Validates a tool's arguments
 * (tool_pre_invoke, arg_schemas) and result (tool_post_invoke,
 * result_schemas) against a JSON-Schema subset: type (object, string,
 * number, integer, boolean, array), and for objects properties and
 * required, for arrays items. Errors read as the original's: "Type
 * mismatch: expected string", "Missing required property: q", nested ones
 * prefixed "key: " or "[i]: ".
 *
 * With block_on_violation (the default) errors block the call:
 * SCHEMA_GUARD_ARGS / SCHEMA_GUARD_RESULT, "Schema validation failed",
 * details {errors}. Otherwise, and whenever a schema exists, the result
 * metadata is {schema_errors: [...]} (empty when valid). A tool without a
 * schema is not looked at.
 *
 * Kept from the original: a boolean counts as a "number" (Python's bool is
 * an int); the result schema is applied to the payload's whole `result`,
 * which for the gateway's MCP tools is {content, structuredContent, isError}
 * (write `properties: {structuredContent: ...}` to check structured output).
 * Changed: a schema the subset cannot evaluate (a "type" that is not one of
 * the six names, properties that are not a map, ...) is rejected when the
 * config is read instead of being ignored or failing at call time.
 *
 * Config: arg_schemas ({tool: schema}), result_schemas ({tool: schema}),
 * block_on_violation (true).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pbus/agent_util.h>

#include "../runtime/rt.h"

struct sg {
	struct pbus_mp args, results; /* {tool: schema}, or empty */
	bool block;
	struct sbuf errs; /* error strings, NUL-terminated */
	unsigned nerrs;
	char prefix[1024];
};

static const char *const types[] = {"object",  "string",  "number",
				    "integer", "boolean", "array"};

/* ---------------------------------------------------------------- config */

static int check_schema(struct pbus_cfgr *cfg, struct pbus_mp s,
			const char *where, int depth)
{
	struct pbus_mp t, props, req, items, k, v;
	struct pbus_mp_iter it;
	char sub[512], key[128];
	int ok = 0;

	if (depth > 32)
		return pbus_cfgr_fail(cfg, where, "schema nested too deeply");
	if (pbus_mp_type(s) != PBUS_MP_MAP)
		return pbus_cfgr_fail(cfg, where,
				      "expected a schema map, got %s",
				      pbus_mp_type_phrase(pbus_mp_type(s)));
	if (!pbus_mp_get(s, "type", &t) && !pbus_mp_is_nil(t)) {
		for (size_t i = 0; i < 6; i++)
			ok |= pbus_mp_str_eq(t, types[i]);
		if (!ok) {
			snprintf(sub, sizeof(sub), "%s.type", where);
			return pbus_cfgr_fail(
				cfg, sub,
				"expected one of object, string, "
				"number, integer, boolean, array");
		}
	}
	if (!pbus_mp_get(s, "properties", &props)) {
		snprintf(sub, sizeof(sub), "%s.properties", where);
		if (pbus_mp_type(props) != PBUS_MP_MAP)
			return pbus_cfgr_fail(
				cfg, sub, "expected a map, got %s",
				pbus_mp_type_phrase(pbus_mp_type(props)));
		pbus_mp_iter_init(props, &it);
		while (pbus_mp_next(&it, &k, &v) > 0) {
			if (pbus_mp_str_copy(k, key, sizeof(key)) < 0)
				return pbus_cfgr_fail(cfg, sub,
						      "property names must be "
						      "strings");
			snprintf(sub, sizeof(sub), "%s.properties.%s", where,
				 key);
			if (check_schema(cfg, v, sub, depth + 1))
				return -EINVAL;
		}
	}
	if (!pbus_mp_get(s, "required", &req)) {
		snprintf(sub, sizeof(sub), "%s.required", where);
		if (pbus_mp_type(req) != PBUS_MP_ARRAY)
			return pbus_cfgr_fail(cfg, sub,
					      "expected a list of property "
					      "names");
		pbus_mp_iter_init(req, &it);
		while (pbus_mp_next(&it, NULL, &v) > 0)
			if (pbus_mp_type(v) != PBUS_MP_STR)
				return pbus_cfgr_fail(cfg, sub,
						      "expected a list of "
						      "property names");
	}
	if (!pbus_mp_get(s, "items", &items)) {
		snprintf(sub, sizeof(sub), "%s.items", where);
		if (check_schema(cfg, items, sub, depth + 1))
			return -EINVAL;
	}
	return 0;
}

static int schema_map(struct pbus_cfgr *cfg, const char *key,
		      struct pbus_mp *out)
{
	struct pbus_mp_iter it;
	struct pbus_mp k, v;
	int ret = pbus_cfgr_get(cfg, key, PBUS_MP_MAP, out);

	if (ret == -ENOENT) {
		*out = (struct pbus_mp){0};
		return 0;
	}
	if (ret)
		return ret;
	pbus_mp_iter_init(*out, &it);
	while (pbus_mp_next(&it, &k, &v) > 0) {
		char tool[200], where[256];

		if (pbus_mp_str_copy(k, tool, sizeof(tool)) < 0)
			return pbus_cfgr_fail(cfg, key,
					      "tool names must be strings");
		snprintf(where, sizeof(where), "%s.%s", key, tool);
		if (pbus_mp_is_nil(v))
			continue; /* no schema */
		if (check_schema(cfg, v, where, 0))
			return -EINVAL;
	}
	return 0;
}

static int parse(struct pbus_cfgr *cfg, void *arg)
{
	struct sg *g = arg;

	if (schema_map(cfg, "arg_schemas", &g->args) ||
	    schema_map(cfg, "result_schemas", &g->results))
		return -EINVAL;
	g->block = pbus_cfgr_bool(cfg, "block_on_violation", true);
	return 0;
}

/* ---------------------------------------------------------------- validate */

static bool is_type(struct pbus_mp v, struct pbus_mp t)
{
	enum pbus_mp_type vt = pbus_mp_type(v);

	if (pbus_mp_str_eq(t, "object"))
		return vt == PBUS_MP_MAP;
	if (pbus_mp_str_eq(t, "string"))
		return vt == PBUS_MP_STR;
	if (pbus_mp_str_eq(t, "number")) /* bool is an int in Python */
		return vt == PBUS_MP_INT || vt == PBUS_MP_UINT ||
		       vt == PBUS_MP_FLOAT || vt == PBUS_MP_BOOL;
	if (pbus_mp_str_eq(t, "integer"))
		return vt == PBUS_MP_INT || vt == PBUS_MP_UINT;
	if (pbus_mp_str_eq(t, "boolean"))
		return vt == PBUS_MP_BOOL;
	if (pbus_mp_str_eq(t, "array"))
		return vt == PBUS_MP_ARRAY;
	return true;
}

__attribute__((format(printf, 2, 3))) static void err(struct sg *g,
						      const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	sbuf_adds(&g->errs, g->prefix);
	sbuf_adds(&g->errs, msg);
	sbuf_addc(&g->errs, 0);
	g->nerrs++;
}

/* _validate(data, schema), errors prefixed with g->prefix. */
static void validate(struct sg *g, struct pbus_mp data, struct pbus_mp schema)
{
	struct pbus_mp t = {0}, props, req, items, k, sub, v;
	struct pbus_mp_iter it;
	size_t plen = strlen(g->prefix);
	const char *s;
	size_t n;

	if (!pbus_mp_get(schema, "type", &t) &&
	    pbus_mp_type(t) == PBUS_MP_STR && !pbus_mp_str(t, &s, &n) && n &&
	    !is_type(data, t)) {
		err(g, "Type mismatch: expected %.*s", (int)n, s);
		return;
	}
	if (pbus_mp_str_eq(t, "object")) {
		if (!pbus_mp_get(schema, "required", &req)) {
			pbus_mp_iter_init(req, &it);
			while (pbus_mp_next(&it, NULL, &k) > 0) {
				if (pbus_mp_type(data) == PBUS_MP_MAP &&
				    !pbus_mp_str(k, &s, &n) &&
				    !pbus_mp_getn(data, s, n, &v))
					continue;
				pbus_mp_str(k, &s, &n);
				err(g, "Missing required property: %.*s",
				    (int)n, s);
			}
		}
		if (pbus_mp_type(data) == PBUS_MP_MAP &&
		    !pbus_mp_get(schema, "properties", &props)) {
			pbus_mp_iter_init(props, &it);
			while (pbus_mp_next(&it, &k, &sub) > 0) {
				if (pbus_mp_str(k, &s, &n) ||
				    pbus_mp_getn(data, s, n, &v))
					continue;
				snprintf(g->prefix + plen,
					 sizeof(g->prefix) - plen,
					 "%.*s: ", (int)n, s);
				validate(g, v, sub);
				g->prefix[plen] = 0;
			}
		}
	}
	if (pbus_mp_str_eq(t, "array") && pbus_mp_type(data) == PBUS_MP_ARRAY &&
	    !pbus_mp_get(schema, "items", &items)) {
		pbus_mp_iter_init(data, &it);
		while (pbus_mp_next(&it, NULL, &v) > 0) {
			snprintf(g->prefix + plen, sizeof(g->prefix) - plen,
				 "[%u]: ", it.index - 1);
			validate(g, v, items);
			g->prefix[plen] = 0;
		}
	}
}

static void pack_errors(msgpack_packer *pk, const struct sg *g)
{
	const char *e = g->errs.p;

	msgpack_pack_array(pk, g->nerrs);
	for (unsigned i = 0; i < g->nerrs; i++, e += strlen(e) + 1)
		pbus_mp_pack_cstr(pk, e);
}

static int check(struct pbus_call *c, struct sg *g, struct pbus_mp schemas,
		 const char *field, const char *code, const char *desc)
{
	static const uint8_t empty_map = 0x80;
	struct pbus_mp pl, name, schema, data;
	const char *s;
	size_t n;
	msgpack_packer *pk;

	if (!schemas.len || pbus_call_payload_view(c, &pl) ||
	    pbus_mp_get(pl, "name", &name) || pbus_mp_str(name, &s, &n) ||
	    pbus_mp_getn(schemas, s, n, &schema) ||
	    pbus_mp_type(schema) != PBUS_MP_MAP || pbus_mp_count(schema) == 0)
		return 0; /* no schema for this tool */
	if (pbus_mp_get(pl, field, &data))
		data = (struct pbus_mp){0};
	if (!strcmp(field, "args") &&
	    (!data.len || pbus_mp_is_nil(data) ||
	     (pbus_mp_type(data) == PBUS_MP_MAP && !pbus_mp_count(data))))
		data = (struct pbus_mp){&empty_map, 1}; /* payload.args or {} */
	else if (!data.len)
		data = (struct pbus_mp){(const uint8_t *)"\xc0", 1}; /* None */
	sbuf_reset(&g->errs);
	g->nerrs = 0;
	g->prefix[0] = 0;
	validate(g, data, schema);
	if (g->errs.err)
		return g->errs.err;
	if (g->nerrs && g->block) {
		pk = pbus_call_violate_begin(c, code,
					     "Schema validation failed", desc);
		msgpack_pack_map(pk, 1);
		pack_errors(pbus_pack_key(pk, "errors"), g);
		return 0;
	}
	pk = pbus_call_metadata(c);
	msgpack_pack_map(pk, 1);
	pack_errors(pbus_pack_key(pk, "schema_errors"), g);
	return 0;
}

static int on_tool_pre(struct pbus_call *c, void *arg)
{
	struct sg *g = arg;

	return check(c, g, g->args, "args", "SCHEMA_GUARD_ARGS",
		     "Arguments do not conform to schema");
}

static int on_tool_post(struct pbus_call *c, void *arg)
{
	struct sg *g = arg;

	return check(c, g, g->results, "result", "SCHEMA_GUARD_RESULT",
		     "Result does not conform to schema");
}

static struct sg sg;

static const struct pbus_agent_desc desc = {
	.name = "schema_guard",
	.summary = "Validate tool arguments and results against simple "
		   "schemas.",
	.config_help =
		"  arg_schemas: {tool: schema}\n"
		"  result_schemas: {tool: schema}\n"
		"  block_on_violation: bool (true)\n"
		"  schema: {type: object|string|number|integer|boolean|"
		"array,\n"
		"           properties: {name: schema}, required: [name], "
		"items: schema}\n",
	.config = parse,
	.hooks =
		{
			[PBUS_HOOK_TOOL_PRE_INVOKE] = on_tool_pre,
			[PBUS_HOOK_TOOL_POST_INVOKE] = on_tool_post,
		},
};

int main(int argc, char **argv)
{
	return pbus_agent_main(argc, argv, &desc, &sg);
}
