// SPDX-License-Identifier: MIT
/*
 * Environment templates in config scalars:
 *
 *	${VAR}            the value of VAR; an error when VAR is unset
 *	${VAR:-default}   VAR, or the literal default when VAR is unset or empty
 *	{{ env.VAR }}     the framework's Jinja form; an error when VAR is unset
 *	$$                a literal '$'
 *
 * Anything else passes through: a '$' not followed by '{' or '$', a lone
 * '{'. A "{{" that is not exactly the env form is an error rather than a
 * silent literal, since the framework would have rendered it.
 *
 * The framework renders the whole file with Jinja and autoescape on, so a
 * value containing '&', '<', '>' or quotes reached plugins HTML-escaped.
 * pbus substitutes values verbatim (no HTML escaping), which is what a
 * config value means; the README documents the difference. Unlike Jinja, an
 * unset variable without a default is an error, not an empty string.
 *
 * Expansion works on one scalar after YAML parsing, so it cannot create
 * structure (a value never becomes a list) and locations stay exact. The
 * result is not expanded again.
 */
#include "config_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct out {
	char *p;
	size_t len, cap;
};

static int put(struct out *o, const char *s, size_t n)
{
	if (o->len + n + 1 > o->cap) {
		size_t cap = o->cap ? o->cap : 64;
		char *p;

		while (cap < o->len + n + 1)
			cap *= 2;
		p = realloc(o->p, cap);
		if (!p)
			return -ENOMEM;
		o->p = p;
		o->cap = cap;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
	o->p[o->len] = '\0';
	return 0;
}

static int is_name_start(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static int is_name_char(char c)
{
	return is_name_start(c) || (c >= '0' && c <= '9');
}

static size_t name_len(const char *s, size_t len)
{
	size_t i = 0;

	if (!len || !is_name_start(s[0]))
		return 0;
	while (i < len && is_name_char(s[i]))
		i++;
	return i;
}

static size_t skip_blanks(const char *s, size_t i, size_t len)
{
	while (i < len && (s[i] == ' ' || s[i] == '\t'))
		i++;
	return i;
}

/* getenv() on a name that is not NUL-terminated in the scalar. */
static const char *env_get(const char *name, size_t n)
{
	char buf[256];

	if (n >= sizeof(buf))
		return NULL;
	memcpy(buf, name, n);
	buf[n] = '\0';
	return getenv(buf);
}

static int unset(char *err, size_t errlen, const char *name, size_t n)
{
	snprintf(err, errlen,
		 "environment variable '%.*s' is not set "
		 "(write ${%.*s:-default} to give a default)",
		 (int)n, name, (int)n, name);
	return -EINVAL;
}

/* "${" at @s[*i]: substitute, advance *i past the closing brace. */
static int dollar_brace(struct out *o, const char *s, size_t len, size_t *i,
			char *err, size_t errlen)
{
	size_t p = *i + 2, n, end;
	const char *val;

	n = name_len(s + p, len - p);
	if (!n) {
		snprintf(err, errlen,
			 "bad template: '${' must be followed by a variable "
			 "name (write $$ for a literal '$')");
		return -EINVAL;
	}
	val = env_get(s + p, n);
	end = p + n;
	if (end < len && s[end] == '}') {
		if (!val)
			return unset(err, errlen, s + p, n);
		*i = end + 1;
		return put(o, val, strlen(val));
	}
	if (end + 1 < len && s[end] == ':' && s[end + 1] == '-') {
		const char *def = s + end + 2;
		const char *close = memchr(def, '}', len - (end + 2));

		if (!close) {
			snprintf(err, errlen,
				 "bad template: unterminated '${'");
			return -EINVAL;
		}
		*i = (size_t)(close - s) + 1;
		if (val && *val)
			return put(o, val, strlen(val));
		return put(o, def, (size_t)(close - def));
	}
	snprintf(err, errlen,
		 "bad template: expected '}' or ':-default}' after '${%.*s'",
		 (int)n, s + p);
	return -EINVAL;
}

/* "{{" at @s[*i]: only "{{ env.NAME }}" is accepted. */
static int jinja(struct out *o, const char *s, size_t len, size_t *i, char *err,
		 size_t errlen)
{
	size_t p = skip_blanks(s, *i + 2, len), n;
	const char *val, *name;

	if (len - p < 3 || memcmp(s + p, "env", 3))
		goto bad;
	p = skip_blanks(s, p + 3, len);
	if (p >= len || s[p] != '.')
		goto bad;
	p = skip_blanks(s, p + 1, len);
	n = name_len(s + p, len - p);
	if (!n)
		goto bad;
	name = s + p;
	p = skip_blanks(s, p + n, len);
	if (len - p < 2 || s[p] != '}' || s[p + 1] != '}')
		goto bad;
	val = env_get(name, n);
	if (!val)
		return unset(err, errlen, name, n);
	*i = p + 2;
	return put(o, val, strlen(val));
bad:
	snprintf(err, errlen,
		 "unsupported template expression: pbus understands only "
		 "{{ env.NAME }}, ${NAME} and ${NAME:-default}");
	return -EINVAL;
}

int pbus__cfg_expand(const char *in, size_t len, char **out, size_t *out_len,
		     char *err, size_t errlen)
{
	struct out o = {0};
	size_t i = 0, lit = 0;
	int ret = 0;

	*out = NULL;
	if (!memchr(in, '$', len) && !memchr(in, '{', len))
		return 0;
	while (i < len) {
		int dollar = in[i] == '$' && i + 1 < len &&
			     (in[i + 1] == '{' || in[i + 1] == '$');
		int braces = in[i] == '{' && i + 1 < len && in[i + 1] == '{';

		if (!dollar && !braces) {
			i++;
			continue;
		}
		ret = put(&o, in + lit, i - lit);
		if (ret)
			goto out_free;
		if (braces)
			ret = jinja(&o, in, len, &i, err, errlen);
		else if (in[i + 1] == '$') {
			ret = put(&o, "$", 1);
			i += 2;
		} else {
			ret = dollar_brace(&o, in, len, &i, err, errlen);
		}
		if (ret)
			goto out_free;
		lit = i;
	}
	if (!o.p && !lit)
		return 0; /* only lone '$' or '{': nothing to do */
	ret = put(&o, in + lit, len - lit);
	if (ret)
		goto out_free;
	*out = o.p;
	*out_len = o.len;
	return 0;
out_free:
	free(o.p);
	return ret;
}
