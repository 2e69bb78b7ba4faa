// SPDX-License-Identifier: MIT
/*
 * Plugin entries of the config (`plugins:`, PARITY.md 2.2): one
 * struct pbus_plugin_cfg per entry, in file order, plus the mode and on_error
 * names.
 *
 * Framework entries that pbus cannot run are errors that say what to write
 * instead: `kind: external` and the `mcp`/`grpc`/`unix_socket` sections (pbus
 * runs every plugin as an agent process), and Python class paths as `kind`
 * (naming the sample agent port when one exists). Plugin names are unique; a
 * repeat is reported where it repeats, naming the line of the first.
 */
#include "pbus/config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pbus/abi.h"
#include "pbus/hooks.h"

#include "config_internal.h"

static const char *const mode_names[PBUS_MODE_COUNT] = {
	[PBUS_MODE_ENFORCE] = "enforce",
	[PBUS_MODE_ENFORCE_IGNORE_ERROR] = "enforce_ignore_error",
	[PBUS_MODE_PERMISSIVE] = "permissive",
	[PBUS_MODE_DISABLED] = "disabled",
	[PBUS_MODE_SEQUENTIAL] = "sequential",
	[PBUS_MODE_TRANSFORM] = "transform",
	[PBUS_MODE_AUDIT] = "audit",
	[PBUS_MODE_CONCURRENT] = "concurrent",
	[PBUS_MODE_FIRE_AND_FORGET] = "fire_and_forget",
};

static const char *const on_error_names[PBUS_ON_ERROR_COUNT] = {
	[PBUS_ON_ERROR_FAIL] = "fail",
	[PBUS_ON_ERROR_IGNORE] = "ignore",
	[PBUS_ON_ERROR_DISABLE] = "disable",
};

/* Framework plugins that pbus ships an agent port of (agents/<name>/). */
static const char *const sample_agents[] = {
	"deny_filter",	       "regex_filter", "pii_filter",
	"output_length_guard", "rate_limiter", "resource_filter",
	"header_injector",     "schema_guard",
};

const char *pbus_mode_name(int mode)
{
	if (mode < 0 || mode >= PBUS_MODE_COUNT)
		return NULL;
	return mode_names[mode];
}

const char *pbus_on_error_name(int on_error)
{
	if (on_error < 0 || on_error >= PBUS_ON_ERROR_COUNT)
		return NULL;
	return on_error_names[on_error];
}

int pbus_mode_from_name(const char *name)
{
	return pbus__cfg_index(mode_names, PBUS_MODE_COUNT, name);
}

int pbus_on_error_from_name(const char *name)
{
	return pbus__cfg_index(on_error_names, PBUS_ON_ERROR_COUNT, name);
}

/* Is @word one of the dot-separated components of @path? */
static int has_component(const char *path, const char *word)
{
	size_t n = strlen(word);

	for (const char *c = path; c; c = strchr(c, '.')) {
		if (*c == '.')
			c++;
		if (!strncmp(c, word, n) && (c[n] == '.' || !c[n]))
			return 1;
	}
	return 0;
}

static void check_kind(struct pbus__cfgx *x, struct pbus_plugin_cfg *p,
		       const struct pbus__ynode *v)
{
	const char *k;

	if (pbus__cfg_text(x, "kind", v, "`agent`") ||
	    pbus__cfg_str(x, "kind", v, &p->kind))
		return;
	k = p->kind;
	if (!strcmp(k, "agent"))
		return;
	if (!strcmp(k, "external")) {
		ERR(x, v,
		    "kind: external: pbus runs every plugin as an agent "
		    "process; write `kind: agent` with `command:` to spawn it "
		    "(or no command for an agent started elsewhere)");
		return;
	}
	if (!strchr(k, '.')) {
		ERR(x, v,
		    "kind: unknown kind '%.60s'; pbus plugins are "
		    "`kind: agent`",
		    k);
		return;
	}
	/* A Python class path: name the sample port when one matches. */
	for (unsigned i = 0; i < ARRAY_SIZE(sample_agents); i++) {
		const char *s = sample_agents[i];

		if (!has_component(k, s))
			continue;
		ERR(x, v,
		    "kind: Python plugin classes cannot be loaded by pbus; use "
		    "`kind: agent` with `command: [pbus-%s]` (the sample "
		    "agent port of %s)",
		    s, s);
		return;
	}
	ERR(x, v,
	    "kind: Python plugin classes cannot be loaded by pbus; use "
	    "`kind: agent` with `command:` running an agent port (samples: "
	    "deny_filter, regex_filter, pii_filter, output_length_guard, "
	    "rate_limiter, resource_filter, header_injector, schema_guard)");
}

static void parse_hooks(struct pbus__cfgx *x, struct pbus_plugin_cfg *p,
			const struct pbus__ynode *v)
{
	const char *names[PBUS_HOOK_COUNT];
	char buf[64];

	if (v->bad || pbus__cfg_null(v))
		return;
	if (v->type != PBUS__Y_SEQ) {
		if (v->type == PBUS__Y_SCALAR)
			ERR(x, v,
			    "hooks: expected a list of hook names, got "
			    "%s (write `hooks: [%.40s]`)",
			    pbus__cfg_shown(v, buf, 64), v->s);
		else
			ERR(x, v,
			    "hooks: expected a list of hook names, got "
			    "a map");
		return;
	}
	for (int i = 0; i < PBUS_HOOK_COUNT; i++)
		names[i] = pbus_hook_name(i);
	for (unsigned i = 0; i < v->n; i++) {
		const struct pbus__ynode *it = v->kid[i];
		const char *hint;
		int h;

		if (pbus__cfg_text(x, "hooks", it, "a hook name"))
			continue;
		h = pbus_hook_from_name(it->s);
		if (h >= 0) {
			if (p->hooks & (1u << h))
				WARN(x, it, "hooks: '%s' is listed twice",
				     it->s);
			p->hooks |= 1u << h;
			continue;
		}
		hint = pbus__cfg_suggest(it->s, names, PBUS_HOOK_COUNT);
		if (hint)
			ERR(x, it,
			    "hooks: unknown hook '%.60s' (did you mean "
			    "'%s'?)",
			    it->s, hint);
		else
			ERR(x, it, "hooks: unknown hook '%.60s'", it->s);
	}
}

static void parse_enum(struct pbus__cfgx *x, const char *key,
		       const struct pbus__ynode *v, const char *const *names,
		       unsigned n, int *out)
{
	char list[200] = "";
	int i;

	if (pbus__cfg_text(x, key, v, "a name"))
		return;
	i = pbus__cfg_index(names, n, v->s);
	if (i >= 0) {
		*out = i;
		return;
	}
	for (unsigned j = 0; j < n; j++)
		snprintf(list + strlen(list), sizeof(list) - strlen(list),
			 "%s%s", j ? ", " : "", names[j]);
	ERR(x, v, "%s: unknown %s '%.40s' (one of: %s)", key, key, v->s, list);
}

enum {
	C_SERVER_IDS,
	C_TENANT_IDS,
	C_TOOLS,
	C_PROMPTS,
	C_RESOURCES,
	C_AGENTS,
	C_USER_PATTERNS,
	C_CONTENT_TYPES,
	C_COUNT,
};

static const char *const cond_keys[C_COUNT] = {
	"server_ids", "tenant_ids", "tools",	     "prompts",
	"resources",  "agents",	    "user_patterns", "content_types",
};

static void parse_conditions(struct pbus__cfgx *x, struct pbus_plugin_cfg *p,
			     const struct pbus__ynode *v)
{
	char buf[64];

	if (v->bad || pbus__cfg_null(v))
		return;
	if (v->type != PBUS__Y_SEQ) {
		ERR(x, v, "conditions: expected a list of maps, got %s",
		    pbus__cfg_shown(v, buf, 64));
		return;
	}
	p->conds = calloc(v->n ? v->n : 1, sizeof(*p->conds));
	if (!p->conds) {
		x->nomem = 1;
		return;
	}
	p->n_conds = v->n;
	for (unsigned i = 0; i < v->n; i++) {
		const struct pbus__ynode *m = v->kid[i];
		struct pbus_condition *c = &p->conds[i];
		struct pbus_strv *f[C_COUNT] = {
			&c->server_ids,	   &c->tenant_ids,    &c->tools,
			&c->prompts,	   &c->resources,     &c->agents,
			&c->user_patterns, &c->content_types,
		};

		if (!pbus__cfg_map(x, "conditions", m, 0))
			continue;
		for (unsigned j = 0; j + 1 < m->n; j += 2) {
			int k = pbus__cfg_key(x, m->kid[j], cond_keys, C_COUNT,
					      "a condition");

			if (k >= 0)
				pbus__cfg_strv(x, cond_keys[k], m->kid[j + 1],
					       f[k]);
		}
	}
}

static void parse_command(struct pbus__cfgx *x, struct pbus_plugin_cfg *p,
			  const struct pbus__ynode *v)
{
	if (v->bad || pbus__cfg_null(v))
		return;
	if (v->type == PBUS__Y_SCALAR) {
		const char *s = v->s, *ws = " \t\r\n";

		if (pbus__cfg_text(x, "command", v, "a command"))
			return;
		pbus__cfg_strv_free(&p->command);
		for (s += strspn(s, ws); *s; s += strspn(s, ws)) {
			size_t n = strcspn(s, ws);

			if (pbus__cfg_strv_push(x, &p->command, s, n))
				return;
			s += n;
		}
	} else if (pbus__cfg_strv(x, "command", v, &p->command)) {
		return;
	}
	if (!p->command.n)
		ERR(x, v,
		    "command: must name a program (or leave `command` "
		    "out for an agent started elsewhere)");
}

static void parse_env(struct pbus__cfgx *x, struct pbus_plugin_cfg *p,
		      const struct pbus__ynode *v)
{
	if (!pbus__cfg_map(x, "env", v, 1))
		return;
	for (unsigned i = 0; i + 1 < v->n; i += 2) {
		const struct pbus__ynode *k = v->kid[i], *val = v->kid[i + 1];
		char *kv;

		if (pbus__cfg_text(x, "env", k, "a variable name"))
			continue;
		if (strchr(k->s, '=')) {
			ERR(x, k, "env: a variable name cannot contain '='");
			continue;
		}
		if (!val->bad && pbus__cfg_null(val)) {
			val = NULL; /* KEY: (nothing) means empty */
		} else if (pbus__cfg_text(x, "env", val, "a string value")) {
			continue;
		}
		if (asprintf(&kv, "%s=%s", k->s, val ? val->s : "") < 0) {
			x->nomem = 1;
			return;
		}
		pbus__cfg_strv_push(x, &p->env, kv, strlen(kv));
		free(kv);
	}
}

enum {
	P_NAME,
	P_KIND,
	P_DESCRIPTION,
	P_AUTHOR,
	P_VERSION,
	P_NAMESPACE,
	P_HOOKS,
	P_TAGS,
	P_MODE,
	P_ON_ERROR,
	P_PRIORITY,
	P_CONDITIONS,
	P_APPLIED_TO,
	P_CONFIG,
	P_COMMAND,
	P_ENV,
	P_TIMEOUT,
	P_MCP,
	P_GRPC,
	P_UNIX_SOCKET,
	P_COUNT,
};

static const char *const plugin_keys[P_COUNT] = {
	"name",	     "kind",	   "description", "author", "version",
	"namespace", "hooks",	   "tags",	  "mode",   "on_error",
	"priority",  "conditions", "applied_to",  "config", "command",
	"env",	     "timeout",	   "mcp",	  "grpc",   "unix_socket",
};

/* Fill @p from the map @m; *name_node is the `name:` value, if any. */
static void parse_plugin(struct pbus__cfgx *x, struct pbus_plugin_cfg *p,
			 const struct pbus__ynode *m,
			 const struct pbus__ynode **name_node)
{
	const struct pbus__ynode *kind = NULL;
	long long prio;

	p->line = m->line;
	p->col = m->col;
	p->mode = PBUS_MODE_ENFORCE;
	p->on_error = PBUS_ON_ERROR_FAIL;
	p->priority = 100;
	for (unsigned i = 0; i + 1 < m->n; i += 2) {
		const struct pbus__ynode *k = m->kid[i], *v = m->kid[i + 1];
		int key = pbus__cfg_key(x, k, plugin_keys, P_COUNT,
					"a plugin entry");

		switch (key) {
		case P_NAME:
			*name_node = v;
			if (pbus__cfg_text(x, "name", v, "a string") ||
			    pbus__cfg_str(x, "name", v, &p->name))
				break;
			if (!*p->name)
				ERR(x, v, "name: must not be empty");
			else if (strlen(p->name) >= PBUS_NAME_MAX)
				ERR(x, v, "name: longer than %d bytes",
				    PBUS_NAME_MAX - 1);
			break;
		case P_KIND:
			kind = v;
			check_kind(x, p, v);
			break;
		case P_DESCRIPTION:
			pbus__cfg_str(x, "description", v, &p->description);
			break;
		case P_AUTHOR:
			pbus__cfg_str(x, "author", v, &p->author);
			break;
		case P_VERSION:
			pbus__cfg_str(x, "version", v, &p->version);
			break;
		case P_NAMESPACE:
			pbus__cfg_str(x, "namespace", v, &p->namespace_);
			break;
		case P_HOOKS:
			parse_hooks(x, p, v);
			break;
		case P_TAGS:
			pbus__cfg_strv(x, "tags", v, &p->tags);
			break;
		case P_MODE:
			parse_enum(x, "mode", v, mode_names, PBUS_MODE_COUNT,
				   &p->mode);
			break;
		case P_ON_ERROR:
			p->on_error_set = 1;
			parse_enum(x, "on_error", v, on_error_names,
				   PBUS_ON_ERROR_COUNT, &p->on_error);
			break;
		case P_PRIORITY:
			if (!pbus__cfg_int(x, "priority", v, INT_MIN, INT_MAX,
					   &prio))
				p->priority = (int)prio;
			break;
		case P_CONDITIONS:
			parse_conditions(x, p, v);
			break;
		case P_APPLIED_TO:
			pbus__cfg_pack(x, "applied_to", v, &p->applied_to,
				       &p->applied_to_len);
			break;
		case P_CONFIG:
			pbus__cfg_pack(x, "config", v, &p->config,
				       &p->config_len);
			break;
		case P_COMMAND:
			parse_command(x, p, v);
			break;
		case P_ENV:
			parse_env(x, p, v);
			break;
		case P_TIMEOUT:
			if (!v->bad && !pbus__cfg_null(v))
				pbus__cfg_secs(x, "timeout", v, &p->timeout_ms);
			break;
		case P_MCP:
		case P_GRPC:
		case P_UNIX_SOCKET:
			ERR(x, k,
			    "%s: configures a framework external plugin; "
			    "pbus runs every plugin as an agent process: write "
			    "`kind: agent` with `command:` to spawn it",
			    plugin_keys[key]);
			break;
		}
	}
	if (!*name_node)
		ERR(x, m, "plugin entry: missing required key 'name'");
	if (!kind)
		ERR(x, m,
		    "plugin entry: missing required key 'kind' (write "
		    "`kind: agent`)");
	/* PARITY 2.2: enforce_ignore_error maps to on_error: ignore */
	if (p->mode == PBUS_MODE_ENFORCE_IGNORE_ERROR && !p->on_error_set)
		p->on_error = PBUS_ON_ERROR_IGNORE;
}

struct name_ref {
	const struct pbus__ynode *node;
	unsigned idx;
};

static int name_ref_cmp(const void *pa, const void *pb)
{
	const struct name_ref *a = pa, *b = pb;
	int c = strcmp(a->node->s, b->node->s);

	return c ? c : a->idx < b->idx ? -1 : a->idx > b->idx;
}

/* A duplicate name is reported where it repeats, naming the first's line. */
static void check_names(struct pbus__cfgx *x, struct name_ref *refs, unsigned n)
{
	qsort(refs, n, sizeof(*refs), name_ref_cmp);
	for (unsigned i = 1, first = 0; i < n; i++) {
		if (strcmp(refs[first].node->s, refs[i].node->s)) {
			first = i;
			continue;
		}
		ERR(x, refs[i].node,
		    "name: duplicate plugin name '%.60s' "
		    "(first defined at line %u)",
		    refs[i].node->s, refs[first].node->line);
	}
}

void pbus__cfg_plugins(struct pbus__cfgx *x, const struct pbus__ynode *v)
{
	struct pbus_config *c = x->c;
	struct name_ref *refs;
	unsigned nrefs = 0;
	char buf[64];

	if (v->bad || pbus__cfg_null(v))
		return;
	if (v->type != PBUS__Y_SEQ) {
		ERR(x, v, "plugins: expected a list of plugin entries, got %s",
		    pbus__cfg_shown(v, buf, 64));
		return;
	}
	if (!v->n)
		return;
	c->plugins = calloc(v->n, sizeof(*c->plugins));
	refs = calloc(v->n, sizeof(*refs));
	if (!c->plugins || !refs) {
		x->nomem = 1;
		free(refs);
		return;
	}
	c->n_plugins = v->n;
	for (unsigned i = 0; i < v->n; i++) {
		const struct pbus__ynode *name = NULL;

		if (!pbus__cfg_map(x, "plugins", v->kid[i], 0))
			continue;
		parse_plugin(x, &c->plugins[i], v->kid[i], &name);
		if (c->plugins[i].name && !name->bad)
			refs[nrefs++] = (struct name_ref){name, i};
	}
	check_names(x, refs, nrefs);
	free(refs);
}

void pbus__cfg_plugin_free(struct pbus_plugin_cfg *p)
{
	free(p->name);
	free(p->kind);
	free(p->description);
	free(p->author);
	free(p->version);
	free(p->namespace_);
	pbus__cfg_strv_free(&p->tags);
	for (unsigned i = 0; i < p->n_conds; i++) {
		struct pbus_condition *c = &p->conds[i];

		pbus__cfg_strv_free(&c->server_ids);
		pbus__cfg_strv_free(&c->tenant_ids);
		pbus__cfg_strv_free(&c->tools);
		pbus__cfg_strv_free(&c->prompts);
		pbus__cfg_strv_free(&c->resources);
		pbus__cfg_strv_free(&c->agents);
		pbus__cfg_strv_free(&c->user_patterns);
		pbus__cfg_strv_free(&c->content_types);
	}
	free(p->conds);
	free(p->config);
	free(p->applied_to);
	pbus__cfg_strv_free(&p->command);
	pbus__cfg_strv_free(&p->env);
}
