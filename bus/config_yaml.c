// SPDX-License-Identifier: MIT
/*
 * YAML to a node tree, scalar typing, and the tree to msgpack.
 *
 * The tree is built from libyaml's event stream with an explicit stack, so
 * input nesting never recurses; PBUS__Y_MAX_DEPTH bounds the depth, which in
 * turn bounds every recursive walk over the tree (free, pack, schema).
 * Refused constructs, reported with their location: aliases (a config has no
 * use for shared nodes, and they allow exponential expansion), tags other
 * than the standard ones, a second document in the stream. Duplicate keys are
 * found when a map closes, by sorting its keys (O(n log n) on hostile input).
 *
 * Typing follows the YAML 1.2 core schema, restricted as the config needs:
 * plain scalars are null ("", ~, null, Null, NULL), bool (true, false, True,
 * False, TRUE, FALSE), int (decimal, 0x hex, 0o octal), float (decimal with a
 * point or an exponent, .inf, .nan) or else a string. Quoted and block
 * scalars, and scalars tagged !!str or !, are always strings. YAML 1.1
 * spellings that PyYAML also types (yes/no/on/off, 0600 as octal, 1_000) are
 * strings or decimals here; schema fields that want a bool accept them anyway
 * (config.c).
 */
#include "config_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#define TAG_PREFIX "tag:yaml.org,2002:"

static void diag_v(struct pbus__cfgx *x, int is_error, unsigned line,
		   unsigned col, const char *fmt, va_list ap)
{
	char msg[256];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (is_error)
		x->nerrors++;
	pbus_diag_add(x->d, is_error, line, col, "%s", msg);
}

void pbus__cfg_error(struct pbus__cfgx *x, unsigned line, unsigned col,
		     const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	diag_v(x, 1, line, col, fmt, ap);
	va_end(ap);
}

void pbus__cfg_warn(struct pbus__cfgx *x, unsigned line, unsigned col,
		    const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	diag_v(x, 0, line, col, fmt, ap);
	va_end(ap);
}

void pbus__ynode_free(struct pbus__ynode *n)
{
	if (!n)
		return;
	for (unsigned i = 0; i < n->n; i++)
		pbus__ynode_free(n->kid[i]);
	free(n->kid);
	free(n->s);
	free(n);
}

/* ------------------------------------------------------------ typing */

static int eq(const char *s, size_t len, const char *lit)
{
	return strlen(lit) == len && !memcmp(s, lit, len);
}

static int digits(const char *s, size_t len, int base)
{
	if (!len)
		return 0;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		int ok = base == 16 ? (c >= '0' && c <= '9') ||
					      (c >= 'a' && c <= 'f') ||
					      (c >= 'A' && c <= 'F')
				    : c >= '0' && c < '0' + base;
		if (!ok)
			return 0;
	}
	return 1;
}

int pbus__yaml_parse_int(const char *s, size_t len, struct pbus__yval *v)
{
	int neg = 0, sign = 0, base = 10;
	uint64_t u = 0;

	if (len && (s[0] == '-' || s[0] == '+')) {
		neg = s[0] == '-';
		sign = 1;
		s++;
		len--;
	}
	if (len > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) {
		/* the core schema has no sign on hex and octal */
		if (sign)
			return -EINVAL;
		base = s[1] == 'x' ? 16 : 8;
		s += 2;
		len -= 2;
	}
	if (!digits(s, len, base))
		return -EINVAL;
	v->kind = PBUS__YV_INT;
	for (size_t i = 0; i < len; i++) {
		unsigned d = s[i] <= '9' ? (unsigned)(s[i] - '0')
					 : (unsigned)((s[i] | 0x20) - 'a' + 10);

		if (u > (UINT64_MAX - d) / (unsigned)base) {
			v->kind = PBUS__YV_BIGINT;
			return 0;
		}
		u = u * (unsigned)base + d;
	}
	if (neg) {
		if (u > (uint64_t)INT64_MAX + 1) {
			v->kind = PBUS__YV_BIGINT;
			return 0;
		}
		v->i = (int64_t)(0 - u);
	} else if (u > INT64_MAX) {
		v->kind = PBUS__YV_UINT;
		v->u = u;
	} else {
		v->i = (int64_t)u;
	}
	return 0;
}

static locale_t c_locale;
static pthread_once_t c_once = PTHREAD_ONCE_INIT;

static void c_locale_init(void)
{
	c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
}

/* strtod() that reads '.' as the decimal point whatever setlocale() said. */
static double c_strtod(const char *s)
{
	pthread_once(&c_once, c_locale_init);
	return c_locale ? strtod_l(s, NULL, c_locale) : strtod(s, NULL);
}

/* [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )? */
static int is_float(const char *s, size_t len)
{
	size_t i = 0, a, b = 0;

	if (i < len && (s[i] == '-' || s[i] == '+'))
		i++;
	a = i;
	while (i < len && s[i] >= '0' && s[i] <= '9')
		i++;
	a = i - a;
	if (i < len && s[i] == '.') {
		size_t f = ++i;

		while (i < len && s[i] >= '0' && s[i] <= '9')
			i++;
		b = i - f;
	}
	if (!a && !b)
		return 0;
	if (i < len && (s[i] == 'e' || s[i] == 'E')) {
		size_t e;

		i++;
		if (i < len && (s[i] == '-' || s[i] == '+'))
			i++;
		e = i;
		while (i < len && s[i] >= '0' && s[i] <= '9')
			i++;
		if (i == e)
			return 0;
	}
	return i == len;
}

void pbus__yaml_resolve(const struct pbus__ynode *n, struct pbus__yval *v)
{
	const char *s = n->s;
	size_t len = n->len;

	memset(v, 0, sizeof(*v));
	v->kind = PBUS__YV_STR;
	if (n->type != PBUS__Y_SCALAR || !n->plain)
		return;
	if (!len || eq(s, len, "~") || eq(s, len, "null") ||
	    eq(s, len, "Null") || eq(s, len, "NULL")) {
		v->kind = PBUS__YV_NULL;
	} else if (eq(s, len, "true") || eq(s, len, "True") ||
		   eq(s, len, "TRUE")) {
		v->kind = PBUS__YV_BOOL;
		v->b = 1;
	} else if (eq(s, len, "false") || eq(s, len, "False") ||
		   eq(s, len, "FALSE")) {
		v->kind = PBUS__YV_BOOL;
	} else if (!pbus__yaml_parse_int(s, len, v)) {
		/* typed */
	} else if (is_float(s, len)) {
		v->kind = PBUS__YV_FLOAT;
		v->f = c_strtod(s);
	} else {
		const char *t = s + (len && (s[0] == '-' || s[0] == '+'));
		size_t tl = len - (size_t)(t - s);

		if (eq(t, tl, ".inf") || eq(t, tl, ".Inf") ||
		    eq(t, tl, ".INF")) {
			v->kind = PBUS__YV_FLOAT;
			v->f = s[0] == '-' ? -INFINITY : INFINITY;
		} else if (t == s &&
			   (eq(s, len, ".nan") || eq(s, len, ".NaN") ||
			    eq(s, len, ".NAN"))) {
			v->kind = PBUS__YV_FLOAT;
			v->f = NAN;
		}
	}
}

/* ------------------------------------------------------------ packing */

static int pack_scalar(struct pbus__cfgx *x, const struct pbus__ynode *n,
		       msgpack_packer *pk)
{
	struct pbus__yval v;

	pbus__yaml_resolve(n, &v);
	switch (v.kind) {
	case PBUS__YV_NULL:
		return msgpack_pack_nil(pk);
	case PBUS__YV_BOOL:
		return v.b ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
	case PBUS__YV_INT:
		return msgpack_pack_int64(pk, v.i);
	case PBUS__YV_UINT:
		return msgpack_pack_uint64(pk, v.u);
	case PBUS__YV_FLOAT:
		return msgpack_pack_double(pk, v.f);
	case PBUS__YV_BIGINT:
		pbus__cfg_error(x, n->line, n->col,
				"integer '%.40s' does not fit in 64 bits "
				"(quote it to pass a string)",
				n->s);
		return 1;
	default:
		if (n->len > UINT32_MAX) {
			pbus__cfg_error(x, n->line, n->col, "string too long");
			return 1;
		}
		if (msgpack_pack_str(pk, n->len))
			return -1;
		return msgpack_pack_str_body(pk, n->s, n->len);
	}
}

/* Returns 0, 1 after reporting an error, -1 when the writer failed. */
static int pack(struct pbus__cfgx *x, const struct pbus__ynode *n,
		msgpack_packer *pk)
{
	int bad = 0;

	if (n->type == PBUS__Y_SCALAR) {
		int r = pack_scalar(x, n, pk);

		return r > 0 ? 1 : r ? -1 : 0;
	}
	if (n->type == PBUS__Y_SEQ) {
		if (msgpack_pack_array(pk, n->n))
			return -1;
	} else if (msgpack_pack_map(pk, n->n / 2)) {
		return -1;
	}
	for (unsigned i = 0; i < n->n; i++) {
		int r = pack(x, n->kid[i], pk);

		if (r < 0)
			return r;
		bad |= r;
	}
	return bad;
}

int pbus__yaml_pack(struct pbus__cfgx *x, const struct pbus__ynode *n,
		    msgpack_packer *pk)
{
	int r = pack(x, n, pk);

	return r < 0 ? -ENOMEM : r ? -EINVAL : 0;
}

/* ------------------------------------------------------------ building */

struct builder {
	struct pbus__cfgx *x;
	struct pbus__ynode *root;
	struct pbus__ynode *stack[PBUS__Y_MAX_DEPTH];
	unsigned depth;
};

static struct pbus__ynode *node_new(int type, const yaml_mark_t *m)
{
	struct pbus__ynode *n = calloc(1, sizeof(*n));

	if (!n)
		return NULL;
	n->type = type;
	n->line = (unsigned)m->line + 1;
	n->col = (unsigned)m->column + 1;
	return n;
}

static int is_key_slot(const struct builder *b)
{
	const struct pbus__ynode *top;

	if (!b->depth)
		return 0;
	top = b->stack[b->depth - 1];
	return top->type == PBUS__Y_MAP && !(top->n & 1);
}

/* Hand @n to the current container (or make it the root). Takes @n. */
static int attach(struct builder *b, struct pbus__ynode *n)
{
	struct pbus__ynode *top;

	if (!b->depth) {
		b->root = n;
		return 0;
	}
	top = b->stack[b->depth - 1];
	if (top->n == top->cap) {
		unsigned cap = top->cap ? top->cap * 2 : 4;
		struct pbus__ynode **k;

		if (cap < top->cap) {
			pbus__ynode_free(n);
			return -ENOMEM;
		}
		k = realloc(top->kid, cap * sizeof(*k));
		if (!k) {
			pbus__ynode_free(n);
			return -ENOMEM;
		}
		top->kid = k;
		top->cap = cap;
	}
	top->kid[top->n++] = n;
	return 0;
}

static const char *shown(const struct pbus__ynode *k)
{
	return k->s ? k->s : "";
}

/* Equal keys: the same text and both strings or both typed non-strings. */
static int key_cmp(const struct pbus__ynode *a, const struct pbus__ynode *b)
{
	struct pbus__yval va, vb;
	int sa, sb;

	pbus__yaml_resolve(a, &va);
	pbus__yaml_resolve(b, &vb);
	sa = va.kind == PBUS__YV_STR;
	sb = vb.kind == PBUS__YV_STR;
	if (sa != sb)
		return sa - sb;
	if (a->len != b->len)
		return a->len < b->len ? -1 : 1;
	return memcmp(a->s, b->s, a->len);
}

static int key_sort(const void *pa, const void *pb)
{
	const struct pbus__ynode *a = *(const struct pbus__ynode *const *)pa;
	const struct pbus__ynode *b = *(const struct pbus__ynode *const *)pb;
	int c = key_cmp(a, b);

	if (c)
		return c;
	/* equal keys in file order, so the first of a run came first */
	if (a->line != b->line)
		return a->line < b->line ? -1 : 1;
	return a->col < b->col ? -1 : a->col > b->col;
}

static int check_dup_keys(struct pbus__cfgx *x, struct pbus__ynode *map)
{
	unsigned np = map->n / 2, nk = 0;
	struct pbus__ynode **keys;

	if (np < 2)
		return 0;
	keys = malloc(np * sizeof(*keys));
	if (!keys)
		return -ENOMEM;
	for (unsigned i = 0; i < np; i++)
		if (map->kid[2 * i]->type == PBUS__Y_SCALAR)
			keys[nk++] = map->kid[2 * i];
	qsort(keys, nk, sizeof(*keys), key_sort);
	for (unsigned i = 1, first = 0; i < nk; i++) {
		if (key_cmp(keys[first], keys[i])) {
			first = i;
			continue;
		}
		pbus__cfg_error(x, keys[i]->line, keys[i]->col,
				"duplicate key '%.60s' (first at line %u)",
				shown(keys[i]), keys[first]->line);
		keys[i]->bad = 1;
	}
	free(keys);
	return 0;
}

static int check_tag(struct builder *b, const yaml_char_t *tag,
		     const yaml_mark_t *m, const char *allowed)
{
	const char *t = (const char *)tag;

	if (!t || !strcmp(t, "!"))
		return 0;
	if (!strncmp(t, TAG_PREFIX, strlen(TAG_PREFIX)) &&
	    !strcmp(t + strlen(TAG_PREFIX), allowed))
		return 0;
	pbus__cfg_error(b->x, (unsigned)m->line + 1, (unsigned)m->column + 1,
			"YAML tag '%.60s' is not supported here (only !!%s)", t,
			allowed);
	return -EINVAL;
}

static int on_scalar(struct builder *b, yaml_event_t *ev)
{
	struct pbus__ynode *n = node_new(PBUS__Y_SCALAR, &ev->start_mark);
	const char *v = (const char *)ev->data.scalar.value;
	size_t len = ev->data.scalar.length;
	int ret;

	if (!n)
		return -ENOMEM;
	ret = check_tag(b, ev->data.scalar.tag, &ev->start_mark, "str");
	if (ret)
		n->bad = 1;
	n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
		   !ev->data.scalar.tag;
	if (!is_key_slot(b)) {
		char err[200];

		ret = pbus__cfg_expand(v, len, &n->s, &n->len, err,
				       sizeof(err));
		if (ret == -ENOMEM) {
			free(n);
			return ret;
		}
		if (ret) {
			pbus__cfg_error(b->x, n->line, n->col, "%s", err);
			n->bad = 1;
		}
	}
	if (!n->s) {
		n->s = malloc(len + 1);
		if (!n->s) {
			free(n);
			return -ENOMEM;
		}
		memcpy(n->s, v, len);
		n->s[len] = '\0';
		n->len = len;
	}
	return attach(b, n);
}

/* Report the alias and stand a quiet null in its place, to go on checking. */
static int on_alias(struct builder *b, yaml_event_t *ev)
{
	struct pbus__ynode *n = node_new(PBUS__Y_SCALAR, &ev->start_mark);

	if (!n)
		return -ENOMEM;
	pbus__cfg_error(b->x, n->line, n->col,
			"YAML aliases (*%.60s) are not supported; write the "
			"value out",
			(const char *)ev->data.alias.anchor);
	n->s = calloc(1, 1);
	if (!n->s) {
		free(n);
		return -ENOMEM;
	}
	n->plain = 1;
	n->bad = 1;
	return attach(b, n);
}

static int on_start(struct builder *b, int type, const yaml_char_t *tag,
		    const yaml_mark_t *m)
{
	struct pbus__ynode *n;
	int ret;

	if (b->depth == PBUS__Y_MAX_DEPTH) {
		pbus__cfg_error(
			b->x, (unsigned)m->line + 1, (unsigned)m->column + 1,
			"nesting deeper than %d levels", PBUS__Y_MAX_DEPTH);
		return -EINVAL;
	}
	n = node_new(type, m);
	if (!n)
		return -ENOMEM;
	if (check_tag(b, tag, m, type == PBUS__Y_MAP ? "map" : "seq"))
		n->bad = 1;
	ret = attach(b, n);
	if (ret)
		return ret;
	b->stack[b->depth++] = n;
	return 0;
}

static void syntax_error(struct pbus__cfgx *x, const yaml_parser_t *p)
{
	const yaml_mark_t *m = &p->problem_mark;

	if (p->context)
		pbus__cfg_error(x, (unsigned)m->line + 1,
				(unsigned)m->column + 1, "%s %s (line %u)",
				p->problem ? p->problem : "syntax error",
				p->context, (unsigned)p->context_mark.line + 1);
	else
		pbus__cfg_error(x, (unsigned)m->line + 1,
				(unsigned)m->column + 1, "%s",
				p->problem ? p->problem : "syntax error");
}

static int step(struct builder *b, yaml_event_t *ev, unsigned *ndocs)
{
	const yaml_mark_t *m = &ev->start_mark;

	switch (ev->type) {
	case YAML_DOCUMENT_START_EVENT:
		if (++*ndocs > 1) {
			pbus__cfg_error(b->x, (unsigned)m->line + 1,
					(unsigned)m->column + 1,
					"a config file holds one YAML "
					"document; found a second one");
			return -EINVAL;
		}
		return 0;
	case YAML_ALIAS_EVENT:
		return on_alias(b, ev);
	case YAML_SCALAR_EVENT:
		return on_scalar(b, ev);
	case YAML_SEQUENCE_START_EVENT:
		return on_start(b, PBUS__Y_SEQ, ev->data.sequence_start.tag, m);
	case YAML_MAPPING_START_EVENT:
		return on_start(b, PBUS__Y_MAP, ev->data.mapping_start.tag, m);
	case YAML_MAPPING_END_EVENT:
		b->depth--;
		return check_dup_keys(b->x, b->stack[b->depth]);
	case YAML_SEQUENCE_END_EVENT:
		b->depth--;
		return 0;
	default:
		return 0;
	}
}

int pbus__yaml_load(struct pbus__cfgx *x, const char *buf, size_t len,
		    struct pbus__ynode **root)
{
	struct builder b = {.x = x};
	yaml_parser_t p;
	yaml_event_t ev;
	unsigned ndocs = 0;
	int ret = 0, done = 0;

	if (!yaml_parser_initialize(&p))
		return -ENOMEM;
	yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
	while (!done && !ret) {
		if (!yaml_parser_parse(&p, &ev)) {
			if (p.error == YAML_MEMORY_ERROR) {
				ret = -ENOMEM;
			} else {
				syntax_error(x, &p);
				ret = -EINVAL;
			}
			break;
		}
		done = ev.type == YAML_STREAM_END_EVENT;
		ret = step(&b, &ev, &ndocs);
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&p);
	if (ret) {
		pbus__ynode_free(b.root);
		return ret;
	}
	*root = b.root;
	return 0;
}
