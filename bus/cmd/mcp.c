// SPDX-License-Identifier: MIT
/*
 * MCP <-> hook mapping for `pbus run` and `pbus proxy` (mcp.h). Builds each
 * hook's payload from the JSON-RPC params or result, runs the chain, turns
 * the outcome into a verdict and, for a block or a plugin error, into the
 * JSON-RPC error the client gets; a modified payload is written back into
 * the JSON. Only the fields the write policy lets plugins change are read
 * back (docs/modes.md): name and args, args, uri; result, content.
 */
#include "mcp.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <msgpack.h>
#include <pbus/hooks.h>
#include <pbus/json.h>
#include <pbus/mp.h>

#define DEFAULT_MCP_ERROR (-32603)

uint64_t mcp_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int mcp_kind(const char *method)
{
	if (!method)
		return MCP_OTHER;
	if (!strcmp(method, "tools/call"))
		return MCP_TOOL;
	if (!strcmp(method, "prompts/get"))
		return MCP_PROMPT;
	if (!strcmp(method, "resources/read"))
		return MCP_RESOURCE;
	return MCP_OTHER;
}

const char *mcp_target(int kind, const json_t *params)
{
	const char *s = NULL;

	if (kind == MCP_TOOL || kind == MCP_PROMPT)
		s = json_string_value(json_object_get(params, "name"));
	else if (kind == MCP_RESOURCE)
		s = json_string_value(json_object_get(params, "uri"));
	return s ? s : "";
}

void mcp_id_str(const json_t *id, char *buf, size_t len)
{
	char *s;

	if (json_is_string(id)) {
		snprintf(buf, len, "%s", json_string_value(id));
	} else if (json_is_integer(id)) {
		snprintf(buf, len, "%" JSON_INTEGER_FORMAT,
			 json_integer_value(id));
	} else if (id && (s = json_dumps(id, JSON_ENCODE_ANY | JSON_COMPACT))) {
		snprintf(buf, len, "%s", s);
		free(s);
	} else {
		snprintf(buf, len, "-");
	}
}

json_t *mcp_error(int64_t code, const char *msg, json_t *data)
{
	json_t *e = json_object();

	json_object_set_new(e, "code", json_integer(code));
	json_object_set_new(e, "message", json_string(msg ? msg : ""));
	if (data)
		json_object_set_new(e, "data", data);
	return e;
}

char *mcp_error_line(const json_t *id, const json_t *error, size_t *len)
{
	json_t *r = json_object();
	char *s, *line;
	size_t n;

	json_object_set_new(r, "jsonrpc", json_string("2.0"));
	json_object_set(r, "id", id ? (json_t *)id : json_null());
	json_object_set(r, "error", (json_t *)error);
	s = json_dumps(r, JSON_COMPACT);
	json_decref(r);
	if (!s)
		return NULL;
	n = strlen(s);
	line = realloc(s, n + 2);
	if (!line) {
		free(s);
		return NULL;
	}
	line[n] = '\n';
	line[n + 1] = 0;
	if (len)
		*len = n + 1;
	return line;
}

void mcp_step_fini(struct mcp_step *st)
{
	json_decref(st->error);
	json_decref(st->meta);
	st->error = NULL;
	st->meta = NULL;
}

/* ---------------------------------------------------------------- outcome */

static void failed(struct mcp_step *st, const char *by, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void failed(struct mcp_step *st, const char *by, const char *fmt, ...)
{
	json_t *data = json_object();
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(st->why, sizeof(st->why), fmt, ap);
	va_end(ap);
	st->verdict = MCP_FAILED;
	st->by = by;
	if (by)
		json_object_set_new(data, "plugin", json_string(by));
	json_decref(st->error);
	st->error = mcp_error(DEFAULT_MCP_ERROR, st->why, data);
}

static void blocked(struct mcp_step *st, const struct pbus_outcome *o)
{
	const struct pbus_violation *v = o->violation;
	json_t *data = json_object(), *details = NULL;
	struct pbus_mp dv = {0};
	char msg[300];

	st->verdict = MCP_BLOCKED;
	st->by = o->decided_by;
	json_decref(st->error);
	if (!v) { /* stopped without a violation */
		snprintf(msg, sizeof(msg), "Blocked by plugin %s",
			 o->decided_by ? o->decided_by : "?");
		snprintf(st->why, sizeof(st->why), "%s", msg);
		snprintf(st->brief, sizeof(st->brief), "%.*s",
			 (int)sizeof(st->brief) - 1, msg);
		if (o->decided_by)
			json_object_set_new(data, "plugin",
					    json_string(o->decided_by));
		st->error = mcp_error(DEFAULT_MCP_ERROR, msg, data);
		return;
	}
	if (v->description && *v->description)
		snprintf(msg, sizeof(msg), "%s: %s", v->reason, v->description);
	else
		snprintf(msg, sizeof(msg), "%s", v->reason);
	snprintf(st->why, sizeof(st->why), "%s: %s", v->code, msg);
	snprintf(st->code, sizeof(st->code), "%s", v->code);
	snprintf(st->brief, sizeof(st->brief), "%s",
		 v->description && *v->description ? v->description
						   : v->reason);
	json_object_set_new(data, "code", json_string(v->code));
	json_object_set_new(data, "plugin", json_string(v->plugin_name));
	if (v->details && pbus_mp_open(v->details, v->details_len, &dv) == 0)
		pbus_json_from_mp(dv, PBUS_JSON_BIN_BASE64, &details);
	json_object_set_new(data, "details", details ? details : json_object());
	/* For an HTTP transport in front of us (e.g. 429 + Retry-After). */
	if (v->http_status_code)
		json_object_set_new(data, "http_status_code",
				    json_integer(v->http_status_code));
	if (v->http_headers_len > 1 &&
	    pbus_mp_open(v->http_headers, v->http_headers_len, &dv) == 0 &&
	    pbus_json_from_mp(dv, PBUS_JSON_BIN_BASE64, &details) == 0)
		json_object_set_new(data, "http_headers", details);
	st->error = mcp_error(v->mcp_error_code, msg, data);
}

/*
 * Run @hook on the msgpack payload in @sb. Returns 0 with @o filled and
 * the verdict in @st (the payload is not yet written back), or -errno.
 */
static int run(struct pbus_mgr *m, struct pbus_request *rq, int hook,
	       const msgpack_sbuffer *sb, struct pbus_outcome *o,
	       struct mcp_step *st)
{
	uint64_t t0 = mcp_now_ns();
	int ret = pbus_run(m, rq, hook, sb->data, sb->size, o);

	st->ns += mcp_now_ns() - t0;
	st->runs++;
	st->hook = hook;
	if (ret) {
		failed(st, NULL, "pbus: %s chain did not run: %s",
		       pbus_hook_name(hook), strerror(-ret));
		return ret;
	}
	if (o->error)
		failed(st, o->decided_by, "%s",
		       o->error_message ? o->error_message : "plugin error");
	else if (!o->continue_processing)
		blocked(st, o);
	else if (o->modified) {
		st->verdict = MCP_MODIFIED;
		st->by = o->decided_by;
	}
	return 0;
}

/* The final payload's @key as a new json_t, or NULL (then st FAILED). */
static json_t *field(const struct pbus_outcome *o, const char *key,
		     struct mcp_step *st)
{
	struct pbus_mp pv, x;
	json_t *j = NULL;
	int ret;

	if (pbus_mp_open(o->payload, o->payload_len, &pv) ||
	    pbus_mp_get(pv, key, &x))
		return NULL; /* absent: nothing to write back */
	ret = pbus_json_from_mp(x, PBUS_JSON_BIN_BASE64, &j);
	if (ret)
		failed(st, st->by, "plugin %s: modified %s cannot be JSON: %s",
		       st->by ? st->by : "?", key, strerror(-ret));
	return j;
}

static void pack_str(msgpack_packer *pk, const char *s)
{
	pbus_mp_pack_cstr(pk, s ? s : "");
}

/* Pack @j, or an empty map when @j is not an object. */
static void pack_obj(msgpack_packer *pk, const json_t *j)
{
	if (json_is_object(j))
		pbus_json_pack(pk, j);
	else
		msgpack_pack_map(pk, 0);
}

/* ---------------------------------------------------------------- pre */

/* params[@key] = @j (taken), noting whether that changed anything: a
 * plugin may modify only fields that have no MCP counterpart (metadata,
 * headers). */
static void set_param(json_t *params, const char *key, json_t *j,
		      struct mcp_step *st)
{
	if (json_equal(json_object_get(params, key), j)) {
		json_decref(j);
		return;
	}
	json_object_set_new(params, key, j);
	st->rewritten = 1;
}

static const int pre_hook[] = {
	[MCP_TOOL] = PBUS_HOOK_TOOL_PRE_INVOKE,
	[MCP_PROMPT] = PBUS_HOOK_PROMPT_PRE_FETCH,
	[MCP_RESOURCE] = PBUS_HOOK_RESOURCE_PRE_FETCH,
};
static const int post_hook[] = {
	[MCP_TOOL] = PBUS_HOOK_TOOL_POST_INVOKE,
	[MCP_PROMPT] = PBUS_HOOK_PROMPT_POST_FETCH,
	[MCP_RESOURCE] = PBUS_HOOK_RESOURCE_POST_FETCH,
};

int mcp_pre_hook(int kind)
{
	return kind == MCP_OTHER ? -1 : pre_hook[kind];
}

int mcp_post_hook(int kind)
{
	return kind == MCP_OTHER ? -1 : post_hook[kind];
}

int mcp_pre(struct pbus_mgr *m, struct pbus_request *rq, int kind,
	    json_t *params, const json_t *headers, struct mcp_step *st)
{
	const json_t *args = json_object_get(params, "arguments");
	struct pbus_outcome o;
	msgpack_sbuffer sb;
	msgpack_packer pk;
	json_t *j;
	int ret;

	memset(st, 0, sizeof(*st));
	if (kind == MCP_OTHER)
		return 0;
	st->hook = pre_hook[kind];
	if (!pbus_mgr_has_hooks(m, st->hook))
		return 0;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	switch (kind) {
	case MCP_TOOL:
		msgpack_pack_map(&pk, json_is_object(headers) ? 3 : 2);
		pack_str(&pk, "name");
		pack_str(&pk, mcp_target(kind, params));
		pack_str(&pk, "args");
		pack_obj(&pk, args);
		if (json_is_object(headers)) {
			pack_str(&pk, "headers");
			pbus_json_pack(&pk, headers);
		}
		break;
	case MCP_PROMPT:
		msgpack_pack_map(&pk, 2);
		pack_str(&pk, "prompt_id");
		pack_str(&pk, mcp_target(kind, params));
		pack_str(&pk, "args");
		pack_obj(&pk, args);
		break;
	default:
		msgpack_pack_map(&pk, 2);
		pack_str(&pk, "uri");
		pack_str(&pk, mcp_target(kind, params));
		pack_str(&pk, "metadata");
		msgpack_pack_map(&pk, 0);
		break;
	}
	ret = run(m, rq, st->hook, &sb, &o, st);
	msgpack_sbuffer_destroy(&sb);
	if (ret || st->verdict != MCP_MODIFIED)
		return ret;
	/* write the writable fields back into params */
	if (!json_is_object(params))
		return 0;
	if (kind == MCP_TOOL && (j = field(&o, "name", st)))
		set_param(params, "name", j, st);
	if (kind != MCP_RESOURCE && (j = field(&o, "args", st)))
		set_param(params, "arguments", j, st);
	if (kind == MCP_RESOURCE && (j = field(&o, "uri", st)))
		set_param(params, "uri", j, st);
	/* what has no MCP counterpart, for the caller to show or drop */
	st->meta = field(&o, kind == MCP_TOOL ? "headers" : "metadata", st);
	if (json_is_object(st->meta) && !json_object_size(st->meta)) {
		json_decref(st->meta);
		st->meta = NULL;
	}
	return 0;
}

/* ---------------------------------------------------------------- post */

/* Replace the contents of object @dst by those of @src (takes @src). */
static void replace_obj(json_t *dst, json_t *src)
{
	json_object_clear(dst);
	json_object_update(dst, src);
	json_decref(src);
}

static int post_one(struct pbus_mgr *m, struct pbus_request *rq, int kind,
		    const char *target, json_t *value, json_t **mod,
		    struct mcp_step *st)
{
	static const char *const key[] = {
		[MCP_TOOL] = "result",
		[MCP_PROMPT] = "result",
		[MCP_RESOURCE] = "content",
	};
	struct pbus_outcome o;
	msgpack_sbuffer sb;
	msgpack_packer pk;
	int ret, before = st->verdict;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 2);
	pack_str(&pk, kind == MCP_TOOL	   ? "name"
		      : kind == MCP_PROMPT ? "prompt_id"
					   : "uri");
	pack_str(&pk, target);
	pack_str(&pk, key[kind]);
	ret = pbus_json_pack(&pk, value);
	if (ret) {
		msgpack_sbuffer_destroy(&sb);
		failed(st, NULL, "pbus: result cannot be encoded: %s",
		       strerror(-ret));
		return ret;
	}
	st->verdict = MCP_ALLOWED;
	ret = run(m, rq, post_hook[kind], &sb, &o, st);
	msgpack_sbuffer_destroy(&sb);
	*mod = NULL;
	if (!ret && st->verdict == MCP_MODIFIED)
		*mod = field(&o, key[kind], st);
	if (st->verdict == MCP_ALLOWED && before == MCP_MODIFIED)
		st->verdict = MCP_MODIFIED; /* an earlier item was */
	return ret;
}

int mcp_post(struct pbus_mgr *m, struct pbus_request *rq, int kind,
	     const char *target, json_t *result, struct mcp_step *st)
{
	json_t *mod, *items;
	const char *by = NULL;
	int ret = 0;

	memset(st, 0, sizeof(*st));
	if (kind == MCP_OTHER)
		return 0;
	st->hook = post_hook[kind];
	if (!pbus_mgr_has_hooks(m, st->hook))
		return 0;
	if (kind != MCP_RESOURCE) {
		ret = post_one(m, rq, kind, target, result, &mod, st);
		if (mod && json_is_object(mod) && json_is_object(result)) {
			st->rewritten = !json_equal(result, mod);
			replace_obj(result, mod);
		} else if (mod) {
			json_decref(mod);
			failed(st, st->by,
			       "plugin %s: modified result is "
			       "not an object",
			       st->by ? st->by : "?");
		}
		return ret;
	}
	/* resources/read: one chain per item of result.contents */
	items = json_object_get(result, "contents");
	for (size_t i = 0; i < json_array_size(items); i++) {
		json_t *it = json_array_get(items, i);
		const char *uri = json_string_value(json_object_get(it, "uri"));

		ret = post_one(m, rq, kind, uri ? uri : target, it, &mod, st);
		if (mod && !json_equal(it, mod)) {
			json_array_set_new(items, i, mod);
			st->rewritten = 1;
		} else if (mod) {
			json_decref(mod);
		}
		if (st->verdict == MCP_MODIFIED && st->by)
			by = st->by;
		if (ret || st->verdict == MCP_BLOCKED ||
		    st->verdict == MCP_FAILED)
			return ret;
	}
	if (st->verdict == MCP_MODIFIED)
		st->by = by;
	return 0;
}
