// SPDX-License-Identifier: MIT
/*
 * JSON <-> msgpack (include/pbus/json.h). JSON text is parsed by jansson;
 * json_t trees are walked into msgpack_packer calls; msgpack views are
 * walked into json_t trees or straight into JSON text by our own writer,
 * which, unlike jansson's dumper, keeps uint64 exact and prints reals in
 * their shortest round-tripping form.
 *
 * Invariants: jansson (>= 2.8) keeps object keys in insertion order, so a
 * JSON object's key order survives both ways; every recursion carries a
 * depth bounded by PBUS_MP_MAX_DEPTH; nothing here keeps state.
 */
#include "pbus/json.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* ---------------------------------------------------------------- utf-8 */

/* 1 if @s[0, @n) is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
static int utf8_ok(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned char c = s[i];
		size_t k;
		uint32_t cp;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			k = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			k = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			k = 3;
			cp = c & 0x07;
		} else {
			return 0;
		}
		if (n - i <= k)
			return 0;
		for (size_t j = 1; j <= k; j++) {
			if ((s[i + j] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + j] & 0x3f);
		}
		if ((k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += k + 1;
	}
	return 1;
}

/* ---------------------------------------------------------------- base64 */

static const char b64[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Encode @n bytes of @src into @dst (4 * ceil(n / 3) bytes, no NUL). */
static size_t base64(const unsigned char *src, size_t n, char *dst)
{
	size_t o = 0, i;

	for (i = 0; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)src[i] << 16 |
			     (uint32_t)src[i + 1] << 8 | src[i + 2];

		dst[o++] = b64[v >> 18];
		dst[o++] = b64[(v >> 12) & 63];
		dst[o++] = b64[(v >> 6) & 63];
		dst[o++] = b64[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)src[i] << 16;

		if (i + 1 < n)
			v |= (uint32_t)src[i + 1] << 8;
		dst[o++] = b64[v >> 18];
		dst[o++] = b64[(v >> 12) & 63];
		dst[o++] = i + 1 < n ? b64[(v >> 6) & 63] : '=';
		dst[o++] = '=';
	}
	return o;
}

/* ---------------------------------------------------------------- to mp */

static int pack(msgpack_packer *pk, const json_t *j, unsigned depth)
{
	const char *s;
	size_t n;
	int r = 0;

	switch (json_typeof(j)) {
	case JSON_OBJECT:
		if (depth >= PBUS_MP_MAX_DEPTH)
			return -EBADMSG;
		if (msgpack_pack_map(pk, json_object_size(j)))
			return -ENOBUFS;
		for (void *it = json_object_iter((json_t *)j); it;
		     it = json_object_iter_next((json_t *)j, it)) {
			s = json_object_iter_key(it);
			n = json_object_iter_key_len(it);
			if (msgpack_pack_str_with_body(pk, s, n))
				return -ENOBUFS;
			r = pack(pk, json_object_iter_value(it), depth + 1);
			if (r)
				return r;
		}
		return 0;
	case JSON_ARRAY:
		if (depth >= PBUS_MP_MAX_DEPTH)
			return -EBADMSG;
		n = json_array_size(j);
		if (msgpack_pack_array(pk, n))
			return -ENOBUFS;
		for (size_t i = 0; i < n && !r; i++)
			r = pack(pk, json_array_get(j, i), depth + 1);
		return r;
	case JSON_STRING:
		r = msgpack_pack_str_with_body(pk, json_string_value(j),
					       json_string_length(j));
		break;
	case JSON_INTEGER:
		r = msgpack_pack_int64(pk, json_integer_value(j));
		break;
	case JSON_REAL:
		r = msgpack_pack_double(pk, json_real_value(j));
		break;
	case JSON_TRUE:
		r = msgpack_pack_true(pk);
		break;
	case JSON_FALSE:
		r = msgpack_pack_false(pk);
		break;
	case JSON_NULL:
		r = msgpack_pack_nil(pk);
		break;
	}
	return r ? -ENOBUFS : 0;
}

int pbus_json_pack(msgpack_packer *pk, const struct json_t *j)
{
	if (!pk || !j)
		return -EINVAL;
	return pack(pk, j, 0);
}

int pbus_json_to_mp(const char *text, size_t len, msgpack_packer *pk, char *err)
{
	json_error_t e;
	json_t *j;
	int ret;

	if (!text || !pk)
		return -EINVAL;
	j = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
	if (!j) {
		if (err)
			snprintf(err, PBUS_JSON_ERR_MAX,
				 "line %d, column %d: %s", e.line, e.column,
				 e.text);
		switch (json_error_code(&e)) {
		case json_error_numeric_overflow:
			return -ERANGE;
		case json_error_out_of_memory:
			return -ENOMEM;
		default:
			return -EBADMSG;
		}
	}
	ret = pack(pk, j, 0);
	if (ret && err)
		snprintf(err, PBUS_JSON_ERR_MAX, "%s",
			 ret == -EBADMSG ? "nested too deep" : strerror(-ret));
	json_decref(j);
	return ret;
}

/* ---------------------------------------------------------------- to json_t */

static int to_json(struct pbus_mp v, unsigned flags, unsigned depth,
		   json_t **out);

static int str_json(struct pbus_mp v, json_t **out)
{
	const char *s;
	size_t n;

	if (pbus_mp_str(v, &s, &n))
		return -EBADMSG;
	if (!utf8_ok((const unsigned char *)s, n))
		return -EILSEQ;
	*out = json_stringn_nocheck(s, n);
	return *out ? 0 : -ENOMEM;
}

static int bin_json(struct pbus_mp v, unsigned flags, json_t **out)
{
	const void *d;
	size_t n;
	char *b;

	if (!(flags & PBUS_JSON_BIN_BASE64))
		return -EINVAL;
	if (pbus_mp_bin(v, &d, &n))
		return -EBADMSG;
	b = malloc((n + 2) / 3 * 4 + 1);
	if (!b)
		return -ENOMEM;
	n = base64(d, n, b);
	*out = json_stringn_nocheck(b, n);
	free(b);
	return *out ? 0 : -ENOMEM;
}

static int map_json(struct pbus_mp v, unsigned flags, unsigned depth,
		    json_t **out)
{
	struct pbus_mp_iter it;
	struct pbus_mp k, x;
	json_t *o = json_object(), *c;
	const char *s;
	size_t n;
	int r;

	if (!o)
		return -ENOMEM;
	if (pbus_mp_iter_init(v, &it))
		goto bad;
	while ((r = pbus_mp_next(&it, &k, &x)) > 0) {
		if (pbus_mp_type(k) != PBUS_MP_STR) {
			json_decref(o);
			return -EINVAL;
		}
		pbus_mp_str(k, &s, &n);
		if (!utf8_ok((const unsigned char *)s, n)) {
			json_decref(o);
			return -EILSEQ;
		}
		if (json_object_getn(o, s, n))
			continue; /* a repeated key: the first one wins */
		r = to_json(x, flags, depth + 1, &c);
		if (r) {
			json_decref(o);
			return r;
		}
		if (json_object_setn_new_nocheck(o, s, n, c)) {
			json_decref(o);
			return -ENOMEM;
		}
	}
	if (r < 0)
		goto bad;
	*out = o;
	return 0;
bad:
	json_decref(o);
	return -EBADMSG;
}

static int array_json(struct pbus_mp v, unsigned flags, unsigned depth,
		      json_t **out)
{
	struct pbus_mp_iter it;
	struct pbus_mp x;
	json_t *a = json_array(), *c;
	int r;

	if (!a)
		return -ENOMEM;
	if (pbus_mp_iter_init(v, &it)) {
		json_decref(a);
		return -EBADMSG;
	}
	while ((r = pbus_mp_next(&it, NULL, &x)) > 0) {
		r = to_json(x, flags, depth + 1, &c);
		if (r)
			break;
		if (json_array_append_new(a, c)) {
			r = -ENOMEM;
			break;
		}
	}
	if (r) {
		json_decref(a);
		return r < 0 ? r : -EBADMSG;
	}
	*out = a;
	return 0;
}

static int to_json(struct pbus_mp v, unsigned flags, unsigned depth,
		   json_t **out)
{
	bool b;
	int64_t i;
	double d;

	if (depth > PBUS_MP_MAX_DEPTH)
		return -EBADMSG;
	switch (pbus_mp_type(v)) {
	case PBUS_MP_NIL:
		*out = json_null();
		return 0;
	case PBUS_MP_BOOL:
		pbus_mp_bool(v, &b);
		*out = json_boolean(b);
		return 0;
	case PBUS_MP_INT:
		pbus_mp_int(v, &i);
		*out = json_integer(i);
		return *out ? 0 : -ENOMEM;
	case PBUS_MP_UINT:
		return -ERANGE;
	case PBUS_MP_FLOAT:
		pbus_mp_float(v, &d);
		if (!isfinite(d))
			return -EDOM;
		*out = json_real(d);
		return *out ? 0 : -ENOMEM;
	case PBUS_MP_STR:
		return str_json(v, out);
	case PBUS_MP_BIN:
		return bin_json(v, flags, out);
	case PBUS_MP_ARRAY:
		return array_json(v, flags, depth, out);
	case PBUS_MP_MAP:
		return map_json(v, flags, depth, out);
	case PBUS_MP_EXT:
		return -EINVAL;
	default:
		return -EBADMSG;
	}
}

int pbus_json_from_mp(struct pbus_mp v, unsigned flags, struct json_t **out)
{
	struct pbus_mp w;
	json_t *j;
	int ret;

	if (!out)
		return -EINVAL;
	if (pbus_mp_open(v.p, v.len, &w))
		return -EBADMSG;
	ret = to_json(w, flags, 0, &j);
	if (!ret)
		*out = j;
	return ret;
}

/* ---------------------------------------------------------------- to text */

struct tbuf {
	char *p;
	size_t len, cap;
	int err;
};

static void put(struct tbuf *b, const char *s, size_t n)
{
	if (b->err)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		char *p;

		while (b->len + n + 1 > cap)
			cap *= 2;
		p = realloc(b->p, cap);
		if (!p) {
			b->err = -ENOMEM;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
}

static void putc_(struct tbuf *b, char c)
{
	put(b, &c, 1);
}

static int put_str(struct tbuf *b, const char *s, size_t n)
{
	size_t i, run = 0;

	if (!utf8_ok((const unsigned char *)s, n))
		return -EILSEQ;
	putc_(b, '"');
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[8];

		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		put(b, s + run, i - run);
		run = i + 1;
		switch (c) {
		case '"':
			put(b, "\\\"", 2);
			break;
		case '\\':
			put(b, "\\\\", 2);
			break;
		case '\n':
			put(b, "\\n", 2);
			break;
		case '\r':
			put(b, "\\r", 2);
			break;
		case '\t':
			put(b, "\\t", 2);
			break;
		case '\b':
			put(b, "\\b", 2);
			break;
		case '\f':
			put(b, "\\f", 2);
			break;
		default:
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			put(b, esc, 6);
		}
	}
	put(b, s + run, n - run);
	putc_(b, '"');
	return 0;
}

/*
 * The shortest %g text that reads back as @d (as @d's float32 when
 * @single), with ".0" added when it would otherwise read as an integer.
 */
static void put_real(struct tbuf *b, double d, int single)
{
	char s[40];
	int p;

	for (p = 1; p <= 17; p++) {
		snprintf(s, sizeof(s), "%.*g", p, d);
		if (single ? (float)strtod(s, NULL) == (float)d
			   : strtod(s, NULL) == d)
			break;
	}
	if (!strpbrk(s, ".eE"))
		strcat(s, ".0");
	put(b, s, strlen(s));
}

static int write_json(struct tbuf *b, struct pbus_mp v, unsigned flags,
		      unsigned depth)
{
	struct pbus_mp_iter it;
	struct pbus_mp k, x;
	char num[32];
	const char *s;
	size_t n;
	int64_t i;
	uint64_t u;
	double d;
	bool t;
	int r, first = 1;

	if (depth > PBUS_MP_MAX_DEPTH)
		return -EBADMSG;
	switch (pbus_mp_type(v)) {
	case PBUS_MP_NIL:
		put(b, "null", 4);
		return 0;
	case PBUS_MP_BOOL:
		pbus_mp_bool(v, &t);
		put(b, t ? "true" : "false", t ? 4 : 5);
		return 0;
	case PBUS_MP_INT:
		pbus_mp_int(v, &i);
		snprintf(num, sizeof(num), "%" PRId64, i);
		put(b, num, strlen(num));
		return 0;
	case PBUS_MP_UINT:
		pbus_mp_uint(v, &u);
		snprintf(num, sizeof(num), "%" PRIu64, u);
		put(b, num, strlen(num));
		return 0;
	case PBUS_MP_FLOAT:
		pbus_mp_float(v, &d);
		if (!isfinite(d))
			return -EDOM;
		put_real(b, d, v.p[0] == 0xca);
		return 0;
	case PBUS_MP_STR:
		pbus_mp_str(v, &s, &n);
		return put_str(b, s, n);
	case PBUS_MP_BIN: {
		const void *data;
		char *enc;

		if (!(flags & PBUS_JSON_BIN_BASE64))
			return -EINVAL;
		pbus_mp_bin(v, &data, &n);
		enc = malloc((n + 2) / 3 * 4 + 1);
		if (!enc)
			return -ENOMEM;
		n = base64(data, n, enc);
		putc_(b, '"');
		put(b, enc, n);
		putc_(b, '"');
		free(enc);
		return 0;
	}
	case PBUS_MP_ARRAY:
		pbus_mp_iter_init(v, &it);
		putc_(b, '[');
		while ((r = pbus_mp_next(&it, NULL, &x)) > 0) {
			if (!first)
				putc_(b, ',');
			first = 0;
			r = write_json(b, x, flags, depth + 1);
			if (r)
				return r;
		}
		if (r < 0)
			return -EBADMSG;
		putc_(b, ']');
		return 0;
	case PBUS_MP_MAP:
		pbus_mp_iter_init(v, &it);
		putc_(b, '{');
		while ((r = pbus_mp_next(&it, &k, &x)) > 0) {
			struct pbus_mp_iter prev;
			struct pbus_mp pk2;
			int dup = 0;

			if (pbus_mp_type(k) != PBUS_MP_STR)
				return -EINVAL;
			pbus_mp_str(k, &s, &n);
			/* a repeated key: the first occurrence wins */
			pbus_mp_iter_init(v, &prev);
			while (prev.index + 1 < it.index &&
			       pbus_mp_next(&prev, &pk2, NULL) > 0)
				if (pbus_mp_str_eqn(pk2, s, n)) {
					dup = 1;
					break;
				}
			if (dup)
				continue;
			if (!first)
				putc_(b, ',');
			first = 0;
			r = put_str(b, s, n);
			if (r)
				return r;
			putc_(b, ':');
			r = write_json(b, x, flags, depth + 1);
			if (r)
				return r;
		}
		if (r < 0)
			return -EBADMSG;
		putc_(b, '}');
		return 0;
	case PBUS_MP_EXT:
		return -EINVAL;
	default:
		return -EBADMSG;
	}
}

int pbus_mp_to_json(struct pbus_mp v, unsigned flags, char **out, size_t *len)
{
	struct tbuf b = {0};
	struct pbus_mp w;
	int ret;

	if (!out)
		return -EINVAL;
	if (pbus_mp_open(v.p, v.len, &w))
		return -EBADMSG;
	ret = write_json(&b, w, flags, 0);
	if (!ret)
		ret = b.err;
	if (ret) {
		free(b.p);
		return ret;
	}
	*out = b.p;
	if (len)
		*len = b.len;
	return 0;
}
