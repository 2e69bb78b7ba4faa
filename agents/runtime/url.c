// SPDX-License-Identifier: MIT
/*
 * Agent runtime: the parts of Python's urllib.parse.urlsplit() that the
 * resource agents need (rt.h), with the same rules, so that a URI is read the
 * way the framework's plugins read it:
 *
 *  - leading C0 controls and spaces are stripped, tabs and newlines removed
 *    (url_clean());
 *  - a scheme is the text before the first ':' when it starts with an ASCII
 *    letter and holds only letters, digits, '+', '-' and '.';
 *  - "//" after it starts the netloc, which runs to the first '/', '?' or
 *    '#'; an unbalanced '[' or ']' in it is "Invalid IPv6 URL";
 *  - the hostname is the netloc after the last '@', without the port, and
 *    without the brackets of an IPv6 literal.
 */
#include "rt.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

/* Bytes of @s[0, @n) before the first tab, CR or LF. */
static size_t strcspn_n(const char *s, size_t n)
{
	size_t i = 0;

	while (i < n && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
		i++;
	return i;
}

const char *url_clean(const char *s, size_t n, struct sbuf *out, size_t *len)
{
	size_t i = 0;

	while (i < n && (unsigned char)s[i] <= 0x20)
		i++;
	/* The usual URI has nothing to remove: no copy. */
	if (i == n ||
	    (!memchr(s + i, '\t', n - i) && !memchr(s + i, '\n', n - i) &&
	     !memchr(s + i, '\r', n - i))) {
		*len = n - i;
		return s + i;
	}
	sbuf_reset(out);
	while (i < n) {
		size_t run = strcspn_n(s + i, n - i);

		sbuf_add(out, s + i, run);
		i += run + 1; /* past the tab or newline */
	}
	sbuf_addc(out, 0);
	*len = out->len ? out->len - 1 : 0;
	return out->err ? "" : out->p;
}

static bool is_alpha(char c)
{
	return (unsigned char)((c | 0x20) - 'a') < 26;
}

static bool scheme_char(char c)
{
	return is_alpha(c) || (unsigned char)(c - '0') < 10 || c == '+' ||
	       c == '-' || c == '.';
}

int url_split(const char *s, size_t n, struct url *u, const char **err)
{
	const char *colon = memchr(s, ':', n);
	size_t i = 0;

	memset(u, 0, sizeof(*u));
	if (colon && colon > s && is_alpha(s[0])) {
		size_t k, cl = (size_t)(colon - s);

		for (k = 0; k < cl && scheme_char(s[k]); k++)
			;
		if (k == cl) {
			u->scheme = s;
			u->scheme_len = cl;
			i = cl + 1;
		}
	}
	if (n - i >= 2 && s[i] == '/' && s[i + 1] == '/') {
		const char *nl = s + i + 2, *hi = nl, *lb;
		bool brackets = false; /* a '[' or ']' in the netloc */
		size_t e, nn, hn;

		/* one pass: where the netloc ends, its last '@', brackets */
		for (e = i + 2; e < n; e++) {
			char ch = s[e];

			if (ch == '/' || ch == '?' || ch == '#')
				break;
			/* hostinfo: after the last '@' */
			if (ch == '@')
				hi = s + e + 1;
			else if (ch == '[' || ch == ']')
				brackets = true;
		}
		nn = e - (i + 2);
		if (brackets && !memchr(nl, '[', nn) != !memchr(nl, ']', nn)) {
			if (err)
				*err = "Invalid IPv6 URL";
			return -EINVAL;
		}
		u->has_netloc = 1;
		u->netloc = nl;
		u->netloc_len = nn;
		hn = nn - (size_t)(hi - nl);
		lb = brackets ? memchr(hi, '[', hn) : NULL;
		if (lb) {
			const char *b = lb + 1;
			size_t bn = hn - (size_t)(b - hi);
			const char *r = memchr(b, ']', bn);
			const char *after = r ? r + 1 : hi + hn;
			const char *pc;

			u->host = b;
			u->host_len = r ? (size_t)(r - b) : bn;
			pc = memchr(after, ':', (size_t)(hi + hn - after));
			if (pc) {
				u->port = pc + 1;
				u->port_len = (size_t)(hi + hn - pc - 1);
			}
		} else {
			const char *pc = memchr(hi, ':', hn);

			u->host = hi;
			u->host_len = pc ? (size_t)(pc - hi) : hn;
			if (pc) {
				u->port = pc + 1;
				u->port_len = hn - u->host_len - 1;
			}
		}
		i = e;
	}
	u->rest = s + i;
	u->rest_len = n - i;
	return 0;
}

static size_t strip_dot(const char *s, size_t n)
{
	return n && s[n - 1] == '.' ? n - 1 : n;
}

bool host_eq(const char *a, size_t an, const char *b, size_t bn)
{
	an = strip_dot(a, an);
	bn = strip_dot(b, bn);
	return an == bn && !strncasecmp(a, b, an);
}

bool host_in_domain(const char *host, size_t hn, const char *domain, size_t dn)
{
	hn = strip_dot(host, hn);
	dn = strip_dot(domain, dn);
	if (!dn)
		return false;
	if (hn == dn)
		return !strncasecmp(host, domain, hn);
	return hn > dn && host[hn - dn - 1] == '.' &&
	       !strncasecmp(host + hn - dn, domain, dn);
}
