// SPDX-License-Identifier: MIT
/*
 * Agent runtime: Python `re` semantics on PCRE2 (rt.h).
 *
 * The framework's plugins take patterns written for Python's `re` and apply
 * them to str values, so: PCRE2_UTF | PCRE2_UCP (Unicode \d \w \b \s and
 * case folding, as Python 3 does for str), PCRE2_MATCH_INVALID_UTF (bytes
 * that are not UTF-8 never match and cannot crash the matcher), the JIT, and
 * a small translation of the syntax PCRE2 reads differently:
 *
 *   Python     PCRE2        meaning
 *   \Z         \z           end of text only (PCRE2's \Z also matches
 *                           before a final newline)
 *   x{,n}      x{0,n}       PCRE2 10.42 reads "{,n}" as literal text
 *   \uXXXX     \x{XXXX}     code point escapes
 *   \UXXXXXXXX \x{XXXXXXXX}
 *   \N{NAME}   -            rejected (named characters)
 *
 * Everything else is the same syntax; constructs only PCRE2 knows (\K,
 * possessive quantifiers, \p{..}) are accepted rather than rejected.
 *
 * Iteration follows Python 3.7+: an empty match is allowed next to a
 * previous non-empty one, and after an empty match the next one must not be
 * empty at the same position (PCRE2_NOTEMPTY_ATSTART | PCRE2_ANCHORED, then
 * one character further) -- pcre2demo's loop, which gives re.sub('x*', '-',
 * 'abxd') == '-a-b--d-' as Python does.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "rt.h"

#include <ctype.h>
#include <stdarg.h>
#include <errno.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Two compilations of one pattern: Python's Unicode semantics (UTF + UCP)
 * for text with any non-ASCII byte, and a byte-mode twin without UCP for
 * pure-ASCII text, where both give the same matches (ASCII text holds no
 * Unicode digits, letters or case variants) and the twin is 10-50x faster
 * (UCP turns \d and \b into property lookups and defeats the start-byte
 * scan). A pattern the twin cannot compile (\x{100} and up) uses the
 * Unicode code for everything.
 */
struct pyre {
	pcre2_code *code, *code_a; /* Unicode; ASCII twin (may be NULL) */
	pcre2_match_data *md, *md_a;
	PCRE2_SIZE *ov_u, *ov_a; /* their ovectors (fixed for their life) */
	PCRE2_SIZE *ov;		 /* ovector of the last match */
	unsigned groups;
	size_t minlen;	 /* no match is shorter (code units, both codes) */
	int matched;	 /* the last match succeeded */
	bool jit, jit_a; /* JIT code exists for code / code_a */
};

/* ---------------------------------------------------------------- compile */

static int ishex(int c)
{
	return isxdigit((unsigned char)c);
}

/* Translate Python syntax to PCRE2 (see the table above). */
static int translate(const char *p, struct sbuf *out, char *err, size_t errlen)
{
	size_t n = strlen(p);
	int in_class = 0;

	for (size_t i = 0; i < n; i++) {
		char c = p[i];

		if (c == '\\') {
			char d = i + 1 < n ? p[i + 1] : 0;
			size_t w = d == 'u' ? 4 : d == 'U' ? 8 : 0;

			if (!d) {
				snprintf(err, errlen,
					 "bad escape (end of pattern)");
				return -EINVAL;
			}
			if (in_class)
				in_class = 2; /* past the first character */
			if (w) {
				if (i + 2 + w > n) {
					snprintf(err, errlen,
						 "incomplete escape \\%c", d);
					return -EINVAL;
				}
				for (size_t k = 0; k < w; k++)
					if (!ishex(p[i + 2 + k])) {
						snprintf(err, errlen,
							 "incomplete escape "
							 "\\%c",
							 d);
						return -EINVAL;
					}
				sbuf_adds(out, "\\x{");
				sbuf_add(out, p + i + 2, w);
				sbuf_addc(out, '}');
				i += 1 + w;
				continue;
			}
			if (d == 'N') {
				snprintf(err, errlen,
					 "\\N{...} named characters are not "
					 "supported; write the character or "
					 "\\uXXXX");
				return -EINVAL;
			}
			if (d == 'Z' && !in_class) {
				sbuf_adds(out, "\\z");
				i++;
				continue;
			}
			sbuf_addc(out, c);
			sbuf_addc(out, d);
			i++;
			continue;
		}
		if (in_class) {
			if (c == ']' && in_class > 1)
				in_class = 0;
			else
				in_class++;
			sbuf_addc(out, c);
			continue;
		}
		if (c == '[') {
			in_class = 1;
			sbuf_addc(out, c);
			/* "[]" and "[^]" start with a literal ']'. */
			if (i + 1 < n && p[i + 1] == '^') {
				sbuf_addc(out, '^');
				i++;
			}
			continue;
		}
		if (c == '{' && i + 1 < n && p[i + 1] == ',') {
			size_t k = i + 2;

			while (k < n && isdigit((unsigned char)p[k]))
				k++;
			if (k > i + 2 && k < n && p[k] == '}') {
				sbuf_adds(out, "{0");
				continue; /* the ",n}" follows verbatim */
			}
		}
		sbuf_addc(out, c);
	}
	return out->err;
}

int pyre_compile(const char *pat, unsigned flags, struct pyre **out, char *err,
		 size_t errlen)
{
	uint32_t opts = PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF;
	struct sbuf t = {0};
	struct pyre *re;
	int ecode, ret;
	PCRE2_SIZE eoff;

	ret = translate(pat, &t, err, errlen);
	if (ret) {
		sbuf_fini(&t);
		return ret == -ENOMEM ? ret : -EINVAL;
	}
	if (flags & PYRE_IGNORECASE)
		opts |= PCRE2_CASELESS;
	re = calloc(1, sizeof(*re));
	if (!re) {
		sbuf_fini(&t);
		return -ENOMEM;
	}
	re->code = pcre2_compile((PCRE2_SPTR)(t.p ? t.p : ""), t.len, opts,
				 &ecode, &eoff, NULL);
	if (!re->code) {
		PCRE2_UCHAR msg[160];

		pcre2_get_error_message(ecode, msg, sizeof(msg));
		snprintf(err, errlen, "%s (at offset %zu)", (char *)msg,
			 (size_t)eoff);
		sbuf_fini(&t);
		free(re);
		return -EINVAL;
	}
	/* Without a JIT (no executable memory) the interpreter still works. */
	re->jit = pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE) == 0;
	re->code_a = pcre2_compile((PCRE2_SPTR)(t.p ? t.p : ""), t.len,
				   opts & PCRE2_CASELESS, &ecode, &eoff, NULL);
	if (re->code_a)
		re->jit_a =
			pcre2_jit_compile(re->code_a, PCRE2_JIT_COMPLETE) == 0;
	sbuf_fini(&t);
	re->md = pcre2_match_data_create_from_pattern(re->code, NULL);
	if (re->code_a)
		re->md_a =
			pcre2_match_data_create_from_pattern(re->code_a, NULL);
	if (!re->md || (re->code_a && !re->md_a)) {
		pyre_free(re);
		return -ENOMEM;
	}
	re->ov = re->ov_u = pcre2_get_ovector_pointer(re->md);
	if (re->md_a)
		re->ov_a = pcre2_get_ovector_pointer(re->md_a);
	{
		uint32_t cap = 0, ml = 0, ml_a = 0;

		pcre2_pattern_info(re->code, PCRE2_INFO_CAPTURECOUNT, &cap);
		re->groups = cap;
		/* PCRE2's own lower bound on a match's length (characters,
		 * so also a bound in bytes); pcre2_match() itself refuses
		 * shorter subjects with it. Checked before the call here. */
		pcre2_pattern_info(re->code, PCRE2_INFO_MINLENGTH, &ml);
		if (re->code_a)
			pcre2_pattern_info(re->code_a, PCRE2_INFO_MINLENGTH,
					   &ml_a);
		re->minlen = re->code_a && ml_a < ml ? ml_a : ml;
	}
	*out = re;
	return 0;
}

void pyre_free(struct pyre *re)
{
	if (!re)
		return;
	pcre2_match_data_free(re->md);
	pcre2_match_data_free(re->md_a);
	pcre2_code_free(re->code);
	pcre2_code_free(re->code_a);
	free(re);
}

unsigned pyre_groups(const struct pyre *re)
{
	return re->groups;
}

/* ---------------------------------------------------------------- match */

bool pyre_is_ascii(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	uint64_t acc = 0, w;
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		memcpy(&w, p + i, 8);
		acc |= w;
	}
	for (; i < n; i++)
		acc |= p[i];
	return !(acc & 0x8080808080808080ull);
}

static int match(struct pyre *re, const char *s, size_t n, size_t pos,
		 uint32_t opts, bool ascii)
{
	bool twin = ascii && re->code_a;

	/* Too short for any match: skip the call (and its set-up). */
	if (n - pos < re->minlen) {
		re->matched = 0;
		return 0;
	}
	pcre2_code *code = twin ? re->code_a : re->code;
	pcre2_match_data *md = twin ? re->md_a : re->md;
	bool jit = (twin ? re->jit_a : re->jit) && !(opts & PCRE2_ANCHORED);
	/* pcre2_jit_match() skips pcre2_match()'s checks: ours is valid. */
	int rc = jit ? pcre2_jit_match(code, (PCRE2_SPTR)s, n, pos, opts, md,
				       NULL)
		     : pcre2_match(code, (PCRE2_SPTR)s, n, pos, opts, md, NULL);

	re->ov = twin ? re->ov_a : re->ov_u;
	re->matched = rc > 0;
	if (rc > 0)
		return 1;
	if (rc == PCRE2_ERROR_NOMATCH)
		return 0;
	if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT ||
	    rc == PCRE2_ERROR_HEAPLIMIT || rc == PCRE2_ERROR_JIT_STACKLIMIT)
		return -E2BIG;
	if (rc == PCRE2_ERROR_NOMEMORY)
		return -ENOMEM;
	return -EIO;
}

int pyre_search(struct pyre *re, const char *s, size_t n)
{
	s = s ? s : "";
	if (n < re->minlen) {
		re->matched = 0;
		return 0;
	}
	return match(re, s, n, 0, 0, pyre_is_ascii(s, n));
}

void pyre_iter_init2(struct pyre_iter *it, struct pyre *re, const char *s,
		     size_t n, bool ascii)
{
	it->re = re;
	it->s = s ? s : "";
	it->n = n;
	it->pos = 0;
	it->after_empty = 0;
	it->ascii = ascii;
}

void pyre_iter_init(struct pyre_iter *it, struct pyre *re, const char *s,
		    size_t n)
{
	pyre_iter_init2(it, re, s, n, pyre_is_ascii(s ? s : "", n));
}

int pyre_iter_next(struct pyre_iter *it, size_t *ms, size_t *me)
{
	for (;;) {
		uint32_t opts = it->after_empty ? PCRE2_NOTEMPTY_ATSTART |
							  PCRE2_ANCHORED
						: 0;
		int ret;

		if (it->pos > it->n)
			return 0;
		/* no room for a match (match() would say so too) */
		if (it->n - it->pos < it->re->minlen && !it->after_empty)
			return 0;
		ret = match(it->re, it->s, it->n, it->pos, opts, it->ascii);
		if (ret < 0)
			return ret;
		if (!ret) {
			if (!it->after_empty)
				return 0;
			/* No non-empty match here: one character on. */
			it->after_empty = 0;
			if (it->pos >= it->n)
				return 0;
			it->pos += utf8_clen(it->s + it->pos, it->n - it->pos);
			continue;
		}
		*ms = it->re->ov[0];
		*me = it->re->ov[1];
		if (*me < *ms) /* \K in a lookahead: treat as empty */
			*me = *ms;
		it->pos = *me;
		it->after_empty = *ms == *me;
		return 1;
	}
}

int pyre_group(const struct pyre *re, unsigned g, size_t *gs, size_t *ge)
{
	if (!re->matched || g > re->groups || re->ov[2 * g] == PCRE2_UNSET)
		return 0;
	*gs = re->ov[2 * g];
	*ge = re->ov[2 * g + 1];
	return *ge >= *gs;
}

/* ---------------------------------------------------------------- re.sub */

/* A template is a list of pieces: literal text or a group number. */
struct piece {
	int group; /* -1: literal */
	size_t off, len;
};

struct pyre_tmpl {
	char *lit; /* all literal text */
	struct piece *pc;
	unsigned n;
};

static int tmpl_push(struct pyre_tmpl *t, unsigned *cap, int group, size_t off,
		     size_t len)
{
	if (group < 0 && !len)
		return 0;
	if (group < 0 && t->n && t->pc[t->n - 1].group < 0 &&
	    t->pc[t->n - 1].off + t->pc[t->n - 1].len == off) {
		t->pc[t->n - 1].len += len;
		return 0;
	}
	if (t->n == *cap) {
		unsigned nc = *cap ? *cap * 2 : 8;
		struct piece *np = realloc(t->pc, nc * sizeof(*np));

		if (!np)
			return -ENOMEM;
		t->pc = np;
		*cap = nc;
	}
	t->pc[t->n++] = (struct piece){.group = group, .off = off, .len = len};
	return 0;
}

static int isoct(char c)
{
	return c >= '0' && c <= '7';
}

__attribute__((format(printf, 3, 4))) static int
tmpl_fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

int pyre_tmpl_compile(const struct pyre *re, const char *repl,
		      struct pyre_tmpl **out, char *err, size_t errlen)
{
	size_t n = strlen(repl), li = 0;
	struct pyre_tmpl *t = calloc(1, sizeof(*t));
	unsigned cap = 0;
	int ret = 0;

	if (!t)
		return -ENOMEM;
	t->lit = malloc(n + 1);
	if (!t->lit) {
		free(t);
		return -ENOMEM;
	}
	/* Literal text goes to t->lit in order; pieces refer to it. */
#define LIT(ch)                                                                \
	do {                                                                   \
		t->lit[li] = (char)(ch);                                       \
		ret = tmpl_push(t, &cap, -1, li, 1);                           \
		li++;                                                          \
	} while (0)
	for (size_t i = 0; i < n && !ret; i++) {
		char c = repl[i], d;
		long g = -1;

		if (c != '\\') {
			LIT(c);
			continue;
		}
		if (i + 1 >= n) {
			ret = tmpl_fail(err, errlen, "%s",
					"bad escape (end of pattern)");
			break;
		}
		d = repl[++i];
		if (d == 'g') {
			const char *gt;
			char name[64];
			size_t nl;

			if (i + 1 >= n || repl[i + 1] != '<') {
				ret = tmpl_fail(err, errlen, "%s", "missing <");
				break;
			}
			gt = strchr(repl + i + 2, '>');
			if (!gt) {
				ret = tmpl_fail(err, errlen, "%s",
						"missing >, unterminated name");
				break;
			}
			nl = (size_t)(gt - (repl + i + 2));
			if (!nl || nl >= sizeof(name)) {
				ret = tmpl_fail(err, errlen, "%s",
						"missing group name");
				break;
			}
			memcpy(name, repl + i + 2, nl);
			name[nl] = 0;
			i += nl + 2;
			if (isdigit((unsigned char)name[0])) {
				char *end;

				g = strtol(name, &end, 10);
				if (*end) {
					ret = tmpl_fail(
						err, errlen,
						"bad character in group "
						"name '%s'",
						name);
					break;
				}
			} else {
				int num = pcre2_substring_number_from_name(
					re->code, (PCRE2_SPTR)name);

				if (num < 0) {
					ret = tmpl_fail(err, errlen,
							"unknown group name "
							"'%s'",
							name);
					break;
				}
				g = num;
			}
		} else if (d == '0') {
			int v = 0, k = 0;

			while (k < 2 && i + 1 < n && isoct(repl[i + 1])) {
				v = v * 8 + (repl[++i] - '0');
				k++;
			}
			LIT(v & 0xff);
			continue;
		} else if (isdigit((unsigned char)d)) {
			g = d - '0';
			if (i + 1 < n && isdigit((unsigned char)repl[i + 1])) {
				char d2 = repl[i + 1];

				if (isoct(d) && isoct(d2) && i + 2 < n &&
				    isoct(repl[i + 2])) {
					int v = (d - '0') * 64 +
						(d2 - '0') * 8 +
						(repl[i + 2] - '0');

					if (v > 0377) {
						ret = tmpl_fail(
							err, errlen, "%s",
							"octal escape value "
							"outside of range "
							"0-0o377");
						break;
					}
					i += 2;
					/* a Latin-1 code point, as UTF-8 */
					if (v < 0x80) {
						LIT(v);
					} else {
						LIT(0xc0 | (v >> 6));
						if (!ret)
							LIT(0x80 | (v & 0x3f));
					}
					continue;
				}
				g = g * 10 + (d2 - '0');
				i++;
			}
		} else {
			static const char esc[] = "abfnrtv\\";
			static const char val[] = "\a\b\f\n\r\t\v\\";
			const char *e = strchr(esc, d);

			if (e) {
				LIT(val[e - esc]);
			} else if (isalpha((unsigned char)d)) {
				char s[3] = {'\\', d, 0};

				ret = tmpl_fail(err, errlen, "bad escape %s",
						s);
			} else {
				LIT('\\');
				if (!ret)
					LIT(d);
			}
			continue;
		}
		if (g > (long)re->groups) {
			char s[24];

			snprintf(s, sizeof(s), "%ld", g);
			ret = tmpl_fail(err, errlen,
					"invalid group reference %s", s);
			break;
		}
		ret = tmpl_push(t, &cap, (int)g, 0, 0);
	}
#undef LIT
	if (ret) {
		pyre_tmpl_free(t);
		return ret;
	}
	*out = t;
	return 0;
}

void pyre_tmpl_free(struct pyre_tmpl *t)
{
	if (!t)
		return;
	free(t->lit);
	free(t->pc);
	free(t);
}

int pyre_sub(struct pyre *re, const struct pyre_tmpl *t, const char *s,
	     size_t n, struct sbuf *out)
{
	struct pyre_iter it;
	size_t ms, me, last = 0;
	int ret, count = 0;

	pyre_iter_init(&it, re, s, n);
	while ((ret = pyre_iter_next(&it, &ms, &me)) > 0) {
		sbuf_add(out, s + last, ms - last);
		for (unsigned k = 0; k < t->n; k++) {
			const struct piece *p = &t->pc[k];
			size_t gs, ge;

			if (p->group < 0)
				sbuf_add(out, t->lit + p->off, p->len);
			else if (pyre_group(re, (unsigned)p->group, &gs, &ge))
				sbuf_add(out, s + gs, ge - gs);
		}
		last = me;
		count++;
	}
	if (ret < 0)
		return ret;
	sbuf_add(out, s + last, n - last);
	return out->err ? out->err : count;
}
