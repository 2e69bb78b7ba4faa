// SPDX-License-Identifier: MIT
/*
 * Agent runtime: a growable byte buffer (which msgpack can be packed into)
 * and UTF-8 counting (rt.h). Python
 * measures strings in code points, so the agents that compare lengths or cut
 * text (output_length_guard, pii_filter's partial masks) count the same way.
 */
#include "rt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int sbuf_reserve(struct sbuf *b, size_t extra)
{
	size_t cap;
	char *np;

	if (b->err)
		return b->err;
	if (b->len + extra <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 256;
	while (cap < b->len + extra)
		cap *= 2;
	np = realloc(b->p, cap);
	if (!np)
		return b->err = -ENOMEM;
	b->p = np;
	b->cap = cap;
	return 0;
}

int sbuf_add(struct sbuf *b, const void *s, size_t n)
{
	/* the room is usually there already */
	if (b->err || b->len + n > b->cap) {
		int ret = sbuf_reserve(b, n);

		if (ret)
			return ret;
	}
	if (n)
		memcpy(b->p + b->len, s, n);
	b->len += n;
	return 0;
}

int sbuf_addc(struct sbuf *b, char c)
{
	if (b->err || b->len + 1 > b->cap) {
		int ret = sbuf_reserve(b, 1);

		if (ret)
			return ret;
	}
	b->p[b->len++] = c;
	return 0;
}

int sbuf_adds(struct sbuf *b, const char *s)
{
	return sbuf_add(b, s, strlen(s));
}

int sbuf_addf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n, ret;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	ret = sbuf_reserve(b, (size_t)n + 1);
	if (ret)
		return ret;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

int sbuf_addu(struct sbuf *b, uint64_t v)
{
	char d[20];
	size_t i = sizeof(d);

	do
		d[--i] = (char)('0' + v % 10);
	while (v /= 10);
	return sbuf_add(b, d + i, sizeof(d) - i);
}

void sbuf_fini(struct sbuf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

static int sbuf_write(void *data, const char *buf, size_t n)
{
	return sbuf_add(data, buf, n) ? -1 : 0;
}

msgpack_packer *sbuf_packer(struct sbuf *b, msgpack_packer *pk)
{
	msgpack_packer_init(pk, b, sbuf_write);
	return pk;
}

size_t utf8_clen(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t need;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		need = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		need = 3;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		need = 4;
	else
		return 1;
	if (need > n)
		return 1;
	for (size_t i = 1; i < need; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 1;
	return need;
}

size_t utf8_len(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, k = 0;

	while (i < n) {
		/* ASCII runs are the common case. */
		if (p[i] < 0x80) {
			i++;
		} else {
			i += utf8_clen(s + i, n - i);
		}
		k++;
	}
	return k;
}

size_t utf8_off(const char *s, size_t n, size_t k)
{
	size_t i = 0;

	while (i < n && k) {
		i += utf8_clen(s + i, n - i);
		k--;
	}
	return i;
}
