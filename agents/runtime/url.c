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

#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <strings.h>

const char *url_clean(const char *s, size_t n, struct sbuf *out, size_t *len)
{
	size_t i = 0;

	sbuf_reset(out);
	while (i < n && (unsigned char)s[i] <= 0x20)
		i++;
	for (; i < n; i++)
		if (s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
			sbuf_addc(out, s[i]);
	sbuf_addc(out, 0);
	*len = out->len ? out->len - 1 : 0;
	return out->err ? "" : out->p;
}

static int scheme_char(char c)
{
	return isalnum((unsigned char)c) || c == '+' || c == '-' || c == '.';
}

int url_split(const char *s, size_t n, struct url *u, const char **err)
{
	const char *colon = memchr(s, ':', n);
	size_t i = 0;

	memset(u, 0, sizeof(*u));
	if (colon && colon > s && isalpha((unsigned char)s[0]) &&
	    !((unsigned char)s[0] & 0x80)) {
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
		size_t e = i + 2;
		const char *nl, *hi, *lb, *rb;
		size_t nn, hn;

		while (e < n && s[e] != '/' && s[e] != '?' && s[e] != '#')
			e++;
		nl = s + i + 2;
		nn = e - (i + 2);
		lb = memchr(nl, '[', nn);
		rb = memchr(nl, ']', nn);
		if ((lb && !rb) || (rb && !lb)) {
			if (err)
				*err = "Invalid IPv6 URL";
			return -EINVAL;
		}
		u->has_netloc = 1;
		u->netloc = nl;
		u->netloc_len = nn;
		/* hostinfo: after the last '@' */
		hi = nl;
		hn = nn;
		for (size_t k = nn; k > 0; k--)
			if (nl[k - 1] == '@') {
				hi = nl + k;
				hn = nn - k;
				break;
			}
		lb = memchr(hi, '[', hn);
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
