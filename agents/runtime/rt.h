/* SPDX-License-Identifier: MIT */
/*
 * Private helpers shared by the sample agents (every .c file of
 * agents/runtime is linked into every agent): a growable byte buffer, UTF-8
 * counting, Python-`re` compatible regular expressions on PCRE2 (search,
 * finditer and re.sub with Python's replacement templates) and Python's
 * urlsplit() host rules. Reading and writing msgpack is libpbus's
 * (<pbus/mp.h>, <pbus/agent_util.h>), not the runtime's.
 *
 * Not a public API: agents include it as "../runtime/rt.h". Nothing here is
 * thread-safe (a compiled pattern owns its match data); agents serve calls
 * from one thread.
 */
#ifndef PBUS_AGENTS_RT_H
#define PBUS_AGENTS_RT_H

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <pbus/agent_util.h>

/* ---------------------------------------------------------------- sbuf */

/* A growable byte buffer; zero-initialise. err sticks at -ENOMEM. */
struct sbuf {
	char *p;
	size_t len, cap;
	int err;
};

int sbuf_reserve(struct sbuf *b, size_t extra);
int sbuf_add(struct sbuf *b, const void *s, size_t n);
int sbuf_addc(struct sbuf *b, char c);
int sbuf_adds(struct sbuf *b, const char *s);
__attribute__((format(printf, 2, 3))) int sbuf_addf(struct sbuf *b,
						    const char *fmt, ...);
/* @v in decimal: sbuf_addf(b, "%llu", v) without the formatter. */
int sbuf_addu(struct sbuf *b, uint64_t v);
static inline void sbuf_reset(struct sbuf *b)
{
	b->len = 0;
	b->err = 0;
}
void sbuf_fini(struct sbuf *b);

/* A packer that appends to @b (errors stick in b->err). Returns @pk. */
msgpack_packer *sbuf_packer(struct sbuf *b, msgpack_packer *pk);

/* Write @b's bytes through @pk as they are: a piece of msgpack packed once,
 * at start-up (not necessarily one whole object). 0 or -ENOBUFS. */
static inline int sbuf_pack_piece(msgpack_packer *pk, const struct sbuf *b)
{
	return b->len && pk->callback(pk->data, b->p, b->len) ? -ENOBUFS : 0;
}

/* ---------------------------------------------------------------- UTF-8 */

/* Code points in @s[0, @n) (Python's len()); a byte that does not start a
 * valid sequence counts as one. */
size_t utf8_len(const char *s, size_t n);
/* Byte offset of code point @k (clamped to @n): s[:k] is s[0, off). */
size_t utf8_off(const char *s, size_t n, size_t k);
/* Byte length of the character at @s (1 for an invalid byte); @n > 0. */
size_t utf8_clen(const char *s, size_t n);

/* ---------------------------------------------------------------- regex */

#define PYRE_IGNORECASE 0x1u

struct pyre;

/*
 * Compile a Python `re` pattern as Python 3 does for a str pattern (Unicode
 * \d \w \b \s, Unicode case folding) with PCRE2 and its JIT. The handful of
 * syntax differences are translated: \Z (end of text), {,n}, \uXXXX and
 * \UXXXXXXXX. Returns 0 and *out, or -EINVAL with the reason in @err.
 */
int pyre_compile(const char *pat, unsigned flags, struct pyre **out, char *err,
		 size_t errlen);
void pyre_free(struct pyre *re);
unsigned pyre_groups(const struct pyre *re);

/* re.search(): 1 if @re matches anywhere in @s[0, @n), 0 if not, -errno
 * (-E2BIG match limit hit). */
int pyre_search(struct pyre *re, const char *s, size_t n);

/* re.finditer(): successive non-overlapping matches with Python 3.7+
 * empty-match rules. */
struct pyre_iter {
	struct pyre *re;
	const char *s;
	size_t n, pos;
	int after_empty; /* the last match was empty and ended at pos */
	bool ascii;	 /* s is pure ASCII: the fast twin may be used */
};

void pyre_iter_init(struct pyre_iter *it, struct pyre *re, const char *s,
		    size_t n);
/* pyre_iter_init() when the caller already knows pyre_is_ascii(s, n). */
void pyre_iter_init2(struct pyre_iter *it, struct pyre *re, const char *s,
		     size_t n, bool ascii);
/* No byte of @s[0, @n) is >= 0x80. */
bool pyre_is_ascii(const char *s, size_t n);
/* 1 and the match [*ms, *me), 0 at the end, -errno. Group offsets of the
 * match stay readable through pyre_group() until the next call. */
int pyre_iter_next(struct pyre_iter *it, size_t *ms, size_t *me);
/* Group @g of the last match: 1 and [*gs, *ge), 0 if it did not take part. */
int pyre_group(const struct pyre *re, unsigned g, size_t *gs, size_t *ge);

/* A compiled re.sub() replacement template. */
struct pyre_tmpl;

/* Parse @repl with Python's rules (\1, \g<name>, \g<0>, \n, ...). Returns 0,
 * or -EINVAL with Python's message in @err. */
int pyre_tmpl_compile(const struct pyre *re, const char *repl,
		      struct pyre_tmpl **out, char *err, size_t errlen);
void pyre_tmpl_free(struct pyre_tmpl *t);

/* re.sub(re, repl, s): append the result to @out. Returns the number of
 * replacements (0: @out got a copy of @s) or -errno. */
int pyre_sub(struct pyre *re, const struct pyre_tmpl *t, const char *s,
	     size_t n, struct sbuf *out);

/* ---------------------------------------------------------------- URLs */

/* urllib.parse.urlsplit(), the parts the agents need. Pointers go into the
 * string given to url_split(). */
struct url {
	const char *scheme; /* as written; compare case-insensitively */
	size_t scheme_len;  /* 0: no scheme */
	int has_netloc;	    /* the URL had "//" after the scheme */
	const char *netloc;
	size_t netloc_len;
	const char *host; /* hostname: no userinfo, port or brackets */
	size_t host_len;  /* 0: none (Python's hostname is None) */
	const char *port;
	size_t port_len;  /* 0: none */
	const char *rest; /* path, query and fragment */
	size_t rest_len;
};

/*
 * Split @s[0, @n) as urlsplit() does after its clean-up (leading C0 controls
 * and spaces stripped; tabs and newlines removed: pass such input through
 * url_clean() first). Returns 0, or -EINVAL with Python's message ("Invalid
 * IPv6 URL") in *err.
 */
int url_split(const char *s, size_t n, struct url *u, const char **err);

/* urlsplit()'s clean-up: returns the cleaned text and its length in *len,
 * a part of @s itself when only leading bytes go (the usual case), else a
 * copy in @out (reset first). Not necessarily NUL-terminated. */
const char *url_clean(const char *s, size_t n, struct sbuf *out, size_t *len);

/* Host names equal, ignoring ASCII case and one trailing dot. */
bool host_eq(const char *a, size_t an, const char *b, size_t bn);

/* @host equals @domain or is a subdomain of it (same rules). */
bool host_in_domain(const char *host, size_t hn, const char *domain, size_t dn);

#endif /* PBUS_AGENTS_RT_H */
