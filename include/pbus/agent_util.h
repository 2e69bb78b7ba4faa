/* SPDX-License-Identifier: MIT */
/*
 * Agent helpers: the everyday tasks of a plugin agent, each in a line or
 * two, layered on <pbus/agent.h> (the call and its answer) and <pbus/mp.h>
 * (reading and rewriting msgpack in place).
 *
 *	struct pbus_mp pl, v;
 *	pbus_call_payload_view(c, &pl);                  // the payload map
 *	pbus_mp_path(pl, "result.content.0.text", &v);   // a nested field
 *	pbus_call_str(c, "name", name, sizeof(name));    // a field as C string
 *	pbus_call_rewrite(c, "args.*", redact, NULL);    // replace strings
 *	pk = pbus_call_violate_begin(c, "CODE", "reason", "description");
 *	msgpack_pack_map(pk, 1); pbus_pack_kv_int(pk, "count", 3);  // details
 *	pbus_call_state_merge(c, over);                  // local state
 *	pk = pbus_call_metadata(c); ...                  // result metadata
 *
 * Everything in the first part (views, rewrites, answers, packing, the
 * config reader) is in libpbus: it never prints and returns 0 or -errno.
 * pbus_agent_main() and pbus_agent_log() at the end are the agent runtime
 * (agents/runtime, linked into every agent built in this tree): they print
 * and their return value is an exit status.
 *
 * Answer keys a handler may write, each at most once per call: see
 * <pbus/mgr.h> ("modified_payload", "violation", "metadata", "state",
 * "local_metadata", "global_state", "error"). A handler that writes nothing
 * lets the call through unchanged.
 *
 * Views returned here point into the read-only payload and contexts and are
 * valid during the call only. Single-threaded like the agent loop itself.
 */
#ifndef PBUS_AGENT_UTIL_H
#define PBUS_AGENT_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include <pbus/agent.h>
#include <pbus/diag.h>
#include <pbus/hooks.h>
#include <pbus/mp.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

/* ------------------------------------------------------------ reading */

/*
 * Validated views of the call's payload, global context and local context
 * ({"state": map, "metadata": map}). Returns 0 and *out, -ENOENT when the
 * gateway sent none (*out is then the empty view), -EBADMSG malformed.
 * Each call validates the whole buffer once (O(len)): take a view once per
 * call and read fields from it.
 */
int pbus_call_payload_view(const struct pbus_call *c, struct pbus_mp *out);
int pbus_call_gctx_view(const struct pbus_call *c, struct pbus_mp *out);
int pbus_call_lctx_view(const struct pbus_call *c, struct pbus_mp *out);

/* The payload field at dotted @path (pbus_mp_path()): 0, -ENOENT, -EBADMSG. */
int pbus_call_field(const struct pbus_call *c, const char *path,
		    struct pbus_mp *out);

/*
 * Copy the string at @path of the payload / the global context ("user",
 * "tenant_id", ...) into @buf as a C string. Returns its length, -ENOENT
 * absent or nil, -EINVAL not a string, -ERANGE it did not fit (@buf holds a
 * truncated, NUL-terminated copy), -EBADMSG malformed.
 */
int pbus_call_str(const struct pbus_call *c, const char *path, char *buf,
		  size_t size);
int pbus_call_gctx_str(const struct pbus_call *c, const char *path, char *buf,
		       size_t size);

/* A string view as a C string; same returns as pbus_call_str(). */
int pbus_mp_str_copy(struct pbus_mp v, char *buf, size_t size);

/* The value of @key in the local context's state map: 0, -ENOENT. */
int pbus_call_state_get(const struct pbus_call *c, const char *key,
			struct pbus_mp *out);

/* ------------------------------------------------------------ modifying */

/*
 * Rewrite the payload: every string value whose path matches @pattern
 * (pbus_mp_path_match(); NULL: every string) goes to @fn, and the answer
 * gets "modified_payload" only if @fn replaced something. Bytes outside the
 * replaced strings are copied verbatim. Returns 0 unchanged (nothing was
 * written), 1 modified, or -errno. After a failure the answer is unusable:
 * return the error from the handler. @fn should only fail on -ENOBUFS.
 */
int pbus_call_rewrite(struct pbus_call *c, const char *pattern,
		      pbus_mp_rewrite_fn *fn, void *arg);

/*
 * pbus_call_rewrite() on @pl, the payload view the handler already took
 * with pbus_call_payload_view() (the empty view when there was none), so
 * the payload is not validated a second time. Same returns.
 */
int pbus_call_rewrite_view(struct pbus_call *c, struct pbus_mp pl,
			   const char *pattern, pbus_mp_rewrite_fn *fn,
			   void *arg);

/*
 * Answer a modified payload in which the string at @path (a literal dotted
 * path, "result.text") is replaced by @s[0, @n). Returns 1, 0 when there is
 * no string at @path (nothing written), or -errno.
 */
int pbus_call_replace_str(struct pbus_call *c, const char *path, const char *s,
			  size_t n);

/*
 * Answer a modified payload equal to the payload with top-level @key set to
 * @val (added when missing). 0 or -errno (-EINVAL payload not a map).
 */
int pbus_call_modify_set(struct pbus_call *c, const char *key,
			 struct pbus_mp val);

/*
 * The hot-path form of pbus_call_modify_set(): on @pl, the payload view the
 * handler already took (the empty view when there was none), with the new
 * value written by @fn straight into the answer (pbus_mp_set_fn()).
 * Returns 0 or -errno: -EINVAL payload not a map (refused before anything is
 * written), @fn's own error.
 *
 *	static int merged(void *arg, msgpack_packer *pk)   // {cur, over}
 *	{
 *		const struct pbus_mp *m = arg;
 *		return pbus_mp_merge(m[0], m[1], pk);
 *	}
 *	struct pbus_mp m[2] = {cur_metadata, over};
 *	pbus_call_modify_set_fn(c, pl, "metadata", merged, m);
 */
int pbus_call_modify_set_fn(struct pbus_call *c, struct pbus_mp pl,
			    const char *key, pbus_mp_value_fn *fn, void *arg);

/* ------------------------------------------------------------ answering */

/* Start the answer's "metadata" (merged into the result), "state" (replaces
 * the local state) and "local_metadata" (replaces the local metadata): write
 * exactly one value, a map, through the returned packer. */
msgpack_packer *pbus_call_metadata(struct pbus_call *c);
msgpack_packer *pbus_call_state(struct pbus_call *c);
msgpack_packer *pbus_call_local_metadata(struct pbus_call *c);

/*
 * Answer "http_headers" {name: value} for the HTTP response of a call that
 * goes on (a blocked call puts them in its violation: pbus_violation_opts).
 * @kv is {name, value, ..., NULL}. 0 or -errno (-EINVAL @kv NULL).
 */
int pbus_call_http_headers(struct pbus_call *c, const char *const *kv);

/*
 * Answer "state" / "local_metadata" = the current local state / metadata
 * with the keys of map @over written over it (shallow). 0 or -errno
 * (-EINVAL @over is not a map).
 */
int pbus_call_state_merge(struct pbus_call *c, struct pbus_mp over);
int pbus_call_local_metadata_merge(struct pbus_call *c, struct pbus_mp over);

/* Violation extras; zero means "not set". */
struct pbus_violation_opts {
	int64_t mcp_error_code; /* 0: none (the gateway reports -32603) */
	int http_status_code;	/* 0: none; e.g. 429 */
	/* NULL, or {name, value, name, value, ..., NULL}: response headers
	 * such as Retry-After. Names are HTTP tokens, values have no control
	 * characters: the gateway refuses the whole answer otherwise. */
	const char *const *http_headers;
};

/*
 * Block the call (PBUS_RF_STOP) with a violation {reason, description, code,
 * [mcp_error_code], [http_status_code], [http_headers], details} and return
 * the packer for
 * the value of "details": write exactly one object (normally a map).
 * pbus_call_violate() in <pbus/agent.h> is the form with empty details.
 */
msgpack_packer *pbus_call_violate_begin(struct pbus_call *c, const char *code,
					const char *reason,
					const char *description);
msgpack_packer *pbus_call_violate_ex(struct pbus_call *c, const char *code,
				     const char *reason,
				     const char *description,
				     const struct pbus_violation_opts *o);

/* ------------------------------------------------------------ packing */

/* Pack {name, value, ..., NULL} as a map of strings. 0 or -ENOBUFS. */
int pbus_pack_str_map(msgpack_packer *pk, const char *const *kv);

/* Write the string key @key and return @pk for its value. */
msgpack_packer *pbus_pack_key(msgpack_packer *pk, const char *key);

/* Write one map pair: a string key and a value (NULL @val packs nil). Each
 * returns 0 or -ENOBUFS. */
int pbus_pack_kv_str(msgpack_packer *pk, const char *key, const char *val);
int pbus_pack_kv_strn(msgpack_packer *pk, const char *key, const char *val,
		      size_t n);
int pbus_pack_kv_int(msgpack_packer *pk, const char *key, int64_t val);
int pbus_pack_kv_bool(msgpack_packer *pk, const char *key, bool val);
int pbus_pack_kv_nil(msgpack_packer *pk, const char *key);

/*
 * A msgpack buffer for small documents built during a call (a map to merge
 * into the state, say): it packs into the caller's @mem and spills to the
 * heap only when that is full.
 *
 *	char mem[256]; struct pbus_mbuf b; struct pbus_mp over;
 *	msgpack_packer *pk = pbus_mbuf_init(&b, mem, sizeof(mem));
 *	msgpack_pack_map(pk, 1); pbus_pack_kv_bool(pk, "seen", true);
 *	if (!pbus_mbuf_view(&b, &over)) pbus_call_state_merge(c, over);
 *	pbus_mbuf_fini(&b);
 */
struct pbus_mbuf {
	uint8_t *p; /* the bytes: @mem or a heap copy */
	size_t len, cap;
	uint8_t *heap; /* owned spill buffer, or NULL */
	int err;       /* -ENOMEM once a spill failed */
	msgpack_packer pk;
};

msgpack_packer *pbus_mbuf_init(struct pbus_mbuf *b, void *mem, size_t cap);
/* Reuse: forget what was packed (keeps any spill buffer). */
void pbus_mbuf_reset(struct pbus_mbuf *b);
/* Validate what was packed: 0 and *out, -ENOMEM a spill failed, -EBADMSG
 * not exactly one object. */
int pbus_mbuf_view(const struct pbus_mbuf *b, struct pbus_mp *out);
/*
 * What was packed, as a view, without validating it: O(1) where
 * pbus_mbuf_view() is O(len). For your own packing handed to a writer that
 * validates its input anyway (pbus_mp_merge(), pbus_mp_set(),
 * pbus_call_state_merge(), ...) or copied with pbus_mp_copy(); readers are
 * safe on it too (they check every length). 0 and *out, -ENOMEM a spill
 * failed, -EBADMSG nothing was packed.
 */
int pbus_mbuf_bytes(const struct pbus_mbuf *b, struct pbus_mp *out);
void pbus_mbuf_fini(struct pbus_mbuf *b);

/* ------------------------------------------------------------ config */

/*
 * Read a plugin's `config:` map with pydantic-like lax types and messages
 * that name the key. Getters never fail by return value: the first problem
 * is recorded (err = -EINVAL, msg = "words[1].search: expected a string, got
 * an integer") and later getters return their defaults, so a parser reads
 * every key and checks pbus_cfgr_error() once at the end.
 *
 * A key whose value is nil counts as absent. Lax types: a bool may be
 * written 0/1 or "true"/"false"/"yes"/"no"/"on"/"off"; an integer may be an
 * integral float or a decimal string; strings are strictly strings.
 */
struct pbus_cfgr {
	struct pbus_mp map;	/* the map being read (empty view: no config) */
	char path[128];		/* "" at the top, "words[2]" below */
	struct pbus_cfgr *root; /* holds the error; itself at the top */
	uint64_t used;		/* bit i: pair i was read (first 64 pairs) */
	int err;		/* root: 0 or -EINVAL */
	char msg[256];		/* root: the first error */
};

/* The top-level reader for the msgpack map @cfg[0, @len) (NULL: no config,
 * read as an empty map). Returns 0, or -EINVAL (recorded) not a map. */
int pbus_cfgr_init(struct pbus_cfgr *r, const void *cfg, size_t len);

/*
 * A reader for the map @v found in @parent under the name @name ("limits",
 * or "[3]" for a list element; joined to the parent's path for messages).
 * Returns 0, or -EINVAL (recorded) when @v is not a map.
 */
int pbus_cfgr_sub(struct pbus_cfgr *r, struct pbus_cfgr *parent,
		  struct pbus_mp v, const char *name);

/* True if @key is present and not nil (marks it used). */
bool pbus_cfgr_has(struct pbus_cfgr *r, const char *key);

bool pbus_cfgr_bool(struct pbus_cfgr *r, const char *key, bool def);
/* An integer in [@min, @max]. */
int64_t pbus_cfgr_int(struct pbus_cfgr *r, const char *key, int64_t def,
		      int64_t min, int64_t max);
double pbus_cfgr_float(struct pbus_cfgr *r, const char *key, double def);
/* A string: a malloc'd copy, or a copy of @def (NULL stays NULL). On an
 * error the default is returned. Free with free(). */
char *pbus_cfgr_str(struct pbus_cfgr *r, const char *key, const char *def);
/*
 * A list of strings: *out becomes a malloc'd NULL-terminated array of
 * malloc'd strings (NULL when absent); returns the count (0 when absent or
 * on an error). Free with pbus_strv_free().
 */
int pbus_cfgr_strv(struct pbus_cfgr *r, const char *key, char ***out);
void pbus_strv_free(char **v);

/*
 * Any value, type-checked when @want is not PBUS_MP_INVALID (PBUS_MP_MAP,
 * PBUS_MP_ARRAY, PBUS_MP_STR, ...). Returns 0 and *out, -ENOENT absent or
 * nil, -EINVAL wrong type (recorded).
 */
int pbus_cfgr_get(struct pbus_cfgr *r, const char *key, enum pbus_mp_type want,
		  struct pbus_mp *out);

/* Record "<path>.<key>: <message>" as the error unless one is recorded
 * already (@key may be NULL: the reader's own path). Returns -EINVAL. */
__attribute__((format(printf, 3, 4))) int
pbus_cfgr_fail(struct pbus_cfgr *r, const char *key, const char *fmt, ...);

/* The first error's message, or NULL when there was none. */
const char *pbus_cfgr_error(const struct pbus_cfgr *r);

/*
 * The keys of @r's map that no getter asked for, one per call: start with
 * *@cursor = 0; returns 1 with the key's name in @buf ("limits.burst" below
 * the top), 0 when there are no more.
 */
int pbus_cfgr_unused(const struct pbus_cfgr *r, unsigned *cursor, char *buf,
		     size_t size);

/* "a string", "an integer", "a list", ...: for messages. */
const char *pbus_mp_type_phrase(enum pbus_mp_type t);

/* ------------------------------------------------------------ runtime */

/*
 * Parse the config: read keys from @cfg (pbus_cfgr_*) into the agent's state
 * (@arg of pbus_agent_main()). Return 0, or -EINVAL to reject the config
 * (record the reason with pbus_cfgr_fail(); a getter's error is enough).
 */
typedef int pbus_agent_config_fn(struct pbus_cfgr *cfg, void *arg);

/* What pbus_agent_main() needs to know about an agent. */
struct pbus_agent_desc {
	const char *name;    /* "deny_filter": default plugin name; the program
			      * calls itself "pbus-<name>" in messages */
	const char *summary; /* one line for --help */
	const char *config_help;      /* the config keys for --help, or NULL */
	pbus_agent_config_fn *config; /* NULL: the agent takes no config */
	/* The handler for each hook it serves, called with pbus_agent_main()'s
	 * @arg: .hooks = {[PBUS_HOOK_TOOL_PRE_INVOKE] = on_tool_pre}. */
	pbus_handler_fn *hooks[PBUS_HOOK_COUNT];
};

/*
 * The whole main() of an agent. Parses -n/--name, -s/--socket, -v/--verbose,
 * -q/--quiet and -h/--help; creates the agent with the hooks of @d;
 * connects (the gateway sends the config with its welcome); copies the
 * config and passes it to d->config; warns about keys nobody read; serves
 * until stopped. A rejected config prints "pbus-<name>: bad config: <msg>"
 * on stderr. Runtime only (agents/runtime), not in libpbus.
 *
 * Returns the exit status: 0 stopped (SIGTERM/SIGINT, or the gateway went
 * away), 1 could not connect or failed, 2 bad command line or config (do
 * not restart: it will fail the same way).
 */
int pbus_agent_main(int argc, char **argv, const struct pbus_agent_desc *d,
		    void *arg);

/* Print "pbus-<name>: <level>: <msg>" on stderr when @lvl is within the
 * verbosity (default PBUS_LOG_WARN; -v adds one level, -q shows errors only).
 * Runtime only. */
__attribute__((format(printf, 2, 3))) void
pbus_agent_log(enum pbus_log_level lvl, const char *fmt, ...);

/* True when pbus_agent_log(@lvl, ...) would print: skip building messages. */
bool pbus_agent_log_on(enum pbus_log_level lvl);

/* Warn (once per key) about the keys of a nested reader nobody read, as
 * pbus_agent_main() does for the top level. Runtime only. */
void pbus_agent_warn_unused(const struct pbus_cfgr *r);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif /* PBUS_AGENT_UTIL_H */
