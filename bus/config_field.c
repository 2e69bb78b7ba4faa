// SPDX-License-Identifier: MIT
/*
 * Typed readers for config fields, shared by the schema walk (config.c,
 * config_plugin.c). Each takes the key's name for its messages and the value
 * node, reports a located error and returns -1 when the value does not fit,
 * or returns 0 having stored it. A node already marked bad returns -1 without
 * a second message. Allocation failures set x->nomem and return -1.
 *
 * Types follow pydantic's lax mode where the framework's users rely on it:
 * string fields take any scalar's text; integers and seconds may be quoted;
 * bools also take yes/no/on/off/1/0 (PyYAML's YAML 1.1 reading). Values
 * under `config:` and `applied_to:` keep their YAML types (config_yaml.c).
 */
#include "config_internal.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pbus/config.h"

#define MAX_TIMEOUT_S 86400.0

int pbus__cfg_index(const char *const *names, unsigned n, const char *s)
{
	if (!s)
		return -EINVAL;
	for (unsigned i = 0; i < n; i++)
		if (!strcmp(names[i], s))
			return (int)i;
	return -EINVAL;
}

/* Levenshtein distance of two short strings (longer ones: "far"). */
static unsigned distance(const char *a, const char *b)
{
	unsigned row[64], la = (unsigned)strlen(a), lb = (unsigned)strlen(b);

	if (la >= ARRAY_SIZE(row) || lb >= ARRAY_SIZE(row))
		return UINT_MAX;
	for (unsigned j = 0; j <= lb; j++)
		row[j] = j;
	for (unsigned i = 1; i <= la; i++) {
		unsigned diag = row[0];

		row[0] = i;
		for (unsigned j = 1; j <= lb; j++) {
			unsigned up = row[j];
			unsigned best = diag + (a[i - 1] != b[j - 1]);

			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

/* The closest of @names to @s, if it looks like a typo of it; else NULL. */
const char *pbus__cfg_suggest(const char *s, const char *const *names,
			      unsigned n)
{
	unsigned best = UINT_MAX, limit = strlen(s) > 6 ? 2 : 1;
	const char *pick = NULL;

	for (unsigned i = 0; i < n; i++) {
		unsigned dist = distance(s, names[i]);

		if (dist < best) {
			best = dist;
			pick = names[i];
		}
	}
	return best <= limit ? pick : NULL;
}

/* How to show a node in a message: 'text' (cut at 40 bytes), a list, a map. */
const char *pbus__cfg_shown(const struct pbus__ynode *n, char *buf, size_t len)
{
	if (n->type == PBUS__Y_SEQ)
		return "a list";
	if (n->type == PBUS__Y_MAP)
		return "a map";
	snprintf(buf, len, "'%.40s%s'", n->s, n->len > 40 ? "..." : "");
	return buf;
}

int pbus__cfg_null(const struct pbus__ynode *n)
{
	struct pbus__yval v;

	if (n->type != PBUS__Y_SCALAR)
		return 0;
	pbus__yaml_resolve(n, &v);
	return v.kind == PBUS__YV_NULL;
}

char *pbus__cfg_dup(struct pbus__cfgx *x, const char *s, size_t len)
{
	char *p = malloc(len + 1);

	if (!p) {
		x->nomem = 1;
		return NULL;
	}
	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

int pbus__cfg_strv_push(struct pbus__cfgx *x, struct pbus_strv *sv,
			const char *s, size_t len)
{
	char **v, *p;

	if (sv->n == UINT_MAX - 1)
		goto nomem;
	v = realloc(sv->v, (sv->n + 2) * sizeof(*v));
	if (!v)
		goto nomem;
	sv->v = v;
	p = pbus__cfg_dup(x, s, len);
	if (!p)
		return -1;
	sv->v[sv->n++] = p;
	sv->v[sv->n] = NULL; /* argv-style, so command.v can go to execv() */
	return 0;
nomem:
	x->nomem = 1;
	return -1;
}

void pbus__cfg_strv_free(struct pbus_strv *sv)
{
	for (unsigned i = 0; i < sv->n; i++)
		free(sv->v[i]);
	free(sv->v);
	sv->v = NULL;
	sv->n = 0;
}

/* A non-null scalar with no NUL byte, else report. 0 ok, -1 reported. */
int pbus__cfg_text(struct pbus__cfgx *x, const char *key,
		   const struct pbus__ynode *v, const char *what)
{
	char buf[64];

	if (v->bad)
		return -1;
	if (v->type != PBUS__Y_SCALAR || pbus__cfg_null(v)) {
		ERR(x, v, "%s: expected %s, got %s", key, what,
		    v->type == PBUS__Y_SCALAR ? "null"
					      : pbus__cfg_shown(v, buf, 64));
		return -1;
	}
	if (memchr(v->s, '\0', v->len)) {
		ERR(x, v, "%s: a NUL byte is not allowed here", key);
		return -1;
	}
	return 0;
}

/* An optional string: null leaves *out NULL. 0 ok, -1 reported. */
int pbus__cfg_str(struct pbus__cfgx *x, const char *key,
		  const struct pbus__ynode *v, char **out)
{
	if (!v->bad && pbus__cfg_null(v))
		return 0;
	if (pbus__cfg_text(x, key, v, "a string"))
		return -1;
	free(*out);
	*out = pbus__cfg_dup(x, v->s, v->len);
	return *out ? 0 : -1;
}

/* Type a scalar as if it were plain, so a quoted "10" counts as 10. */
static void resolve_lax(const struct pbus__ynode *v, struct pbus__yval *val)
{
	struct pbus__ynode t = *v;

	t.plain = 1;
	pbus__yaml_resolve(&t, val);
}

int pbus__cfg_int(struct pbus__cfgx *x, const char *key,
		  const struct pbus__ynode *v, long long min, long long max,
		  long long *out)
{
	struct pbus__yval val;
	char buf[64];

	if (v->bad)
		return -1;
	if (v->type == PBUS__Y_SCALAR)
		resolve_lax(v, &val);
	if (v->type != PBUS__Y_SCALAR ||
	    (val.kind != PBUS__YV_INT && val.kind != PBUS__YV_UINT &&
	     val.kind != PBUS__YV_BIGINT)) {
		ERR(x, v, "%s: expected an integer, got %s", key,
		    v->type == PBUS__Y_SCALAR && pbus__cfg_null(v)
			    ? "null"
			    : pbus__cfg_shown(v, buf, 64));
		return -1;
	}
	if (val.kind != PBUS__YV_INT || val.i < min || val.i > max) {
		ERR(x, v, "%s: %s is out of range (%lld to %lld)", key,
		    pbus__cfg_shown(v, buf, 64), min, max);
		return -1;
	}
	*out = val.i;
	return 0;
}

int pbus__cfg_uint(struct pbus__cfgx *x, const char *key,
		   const struct pbus__ynode *v, unsigned min, unsigned max,
		   unsigned *out)
{
	long long ll;

	if (pbus__cfg_int(x, key, v, min, max, &ll))
		return -1;
	*out = (unsigned)ll;
	return 0;
}

int pbus__cfg_bool(struct pbus__cfgx *x, const char *key,
		   const struct pbus__ynode *v, int *out)
{
	static const char *const yes[] = {"true", "yes", "on", "1"};
	static const char *const no[] = {"false", "no", "off", "0"};
	char buf[64];

	if (v->bad)
		return -1;
	if (v->type == PBUS__Y_SCALAR && strlen(v->s) == v->len) {
		for (unsigned i = 0; i < ARRAY_SIZE(yes); i++) {
			if (!strcasecmp(v->s, yes[i])) {
				*out = 1;
				return 0;
			}
			if (!strcasecmp(v->s, no[i])) {
				*out = 0;
				return 0;
			}
		}
	}
	ERR(x, v, "%s: expected true or false, got %s", key,
	    v->type == PBUS__Y_SCALAR && pbus__cfg_null(v)
		    ? "null"
		    : pbus__cfg_shown(v, buf, 64));
	return -1;
}

/* A positive number of seconds (may be fractional), stored in ms (>= 1). */
int pbus__cfg_secs(struct pbus__cfgx *x, const char *key,
		   const struct pbus__ynode *v, uint64_t *ms)
{
	struct pbus__yval val;
	double s = 0;
	int num = 0;
	char buf[64];

	if (v->bad)
		return -1;
	if (v->type == PBUS__Y_SCALAR) {
		resolve_lax(v, &val);
		num = val.kind == PBUS__YV_INT || val.kind == PBUS__YV_FLOAT;
		s = val.kind == PBUS__YV_INT ? (double)val.i : val.f;
	}
	if (!num) {
		ERR(x, v, "%s: expected a number of seconds, got %s", key,
		    v->type == PBUS__Y_SCALAR && pbus__cfg_null(v)
			    ? "null"
			    : pbus__cfg_shown(v, buf, 64));
		return -1;
	}
	if (!(s > 0) || s > MAX_TIMEOUT_S) {
		ERR(x, v,
		    "%s: %s seconds is out of range (more than 0, at most "
		    "%.0f)",
		    key, pbus__cfg_shown(v, buf, 64), MAX_TIMEOUT_S);
		return -1;
	}
	*ms = (uint64_t)llround(s * 1000.0);
	if (!*ms)
		*ms = 1;
	return 0;
}

/* A list of strings; null is the empty list. */
int pbus__cfg_strv(struct pbus__cfgx *x, const char *key,
		   const struct pbus__ynode *v, struct pbus_strv *out)
{
	char buf[64];
	int ret = 0;

	if (v->bad)
		return -1;
	if (pbus__cfg_null(v))
		return 0;
	if (v->type != PBUS__Y_SEQ) {
		ERR(x, v, "%s: expected a list of strings, got %s", key,
		    pbus__cfg_shown(v, buf, 64));
		return -1;
	}
	pbus__cfg_strv_free(out);
	for (unsigned i = 0; i < v->n; i++) {
		const struct pbus__ynode *it = v->kid[i];

		if (pbus__cfg_text(x, key, it, "a string") ||
		    pbus__cfg_strv_push(x, out, it->s, it->len))
			ret = -1;
	}
	return ret;
}

/* Keys must be strings; returns the index in @keys, -1 unknown or bad. */
int pbus__cfg_key(struct pbus__cfgx *x, const struct pbus__ynode *k,
		  const char *const *keys, unsigned n, const char *where)
{
	const char *hint;
	char buf[64];
	int i;

	if (k->bad)
		return -1;
	if (k->type != PBUS__Y_SCALAR || strlen(k->s) != k->len) {
		ERR(x, k, "%s: keys must be strings without NUL bytes, got %s",
		    where, pbus__cfg_shown(k, buf, 64));
		return -1;
	}
	i = pbus__cfg_index(keys, n, k->s);
	if (i >= 0)
		return i;
	hint = pbus__cfg_suggest(k->s, keys, n);
	if (hint)
		WARN(x, k,
		     "unknown key '%.60s' in %s, ignored (did you mean "
		     "'%s'?)",
		     k->s, where, hint);
	else
		WARN(x, k, "unknown key '%.60s' in %s, ignored", k->s, where);
	return -1;
}

/* A section that must be a map (null: @null_ok decides). 1 go on, 0 skip. */
int pbus__cfg_map(struct pbus__cfgx *x, const char *key,
		  const struct pbus__ynode *v, int null_ok)
{
	char buf[64];

	if (v->bad)
		return 0;
	if (v->type == PBUS__Y_MAP)
		return 1;
	if (null_ok && pbus__cfg_null(v))
		return 0;
	ERR(x, v, "%s: expected a map, got %s", key,
	    pbus__cfg_null(v) ? "null" : pbus__cfg_shown(v, buf, 64));
	return 0;
}

/* Encode a map (arbitrary content) as msgpack bytes. */
void pbus__cfg_pack(struct pbus__cfgx *x, const char *key,
		    const struct pbus__ynode *v, void **out, size_t *out_len)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	int ret;

	if (!pbus__cfg_map(x, key, v, 1))
		return;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	ret = pbus__yaml_pack(x, v, &pk);
	if (ret) {
		if (ret == -ENOMEM)
			x->nomem = 1;
		msgpack_sbuffer_destroy(&sb);
		return;
	}
	free(*out);
	*out_len = sb.size;
	*out = msgpack_sbuffer_release(&sb);
}
