// SPDX-License-Identifier: MIT
/*
 * Tests for pbus_mp (include/pbus/mp.h): round trips against msgpack-c's own
 * packer for every type and width, malformed and hostile input (every
 * truncation, huge lengths, deep nesting, a seeded mutation fuzz), lookups,
 * paths, iteration, the rewriter, set and merge.
 *
 * Documents are written as JSON (single quotes allowed) and packed with
 * msgpack-c through jansson, so expected outputs are msgpack-c's minimal
 * encodings and can be compared byte for byte. Every buffer handed to the
 * reader is malloc'd at its exact size so ASan catches any read past it.
 */
#include "pbus/mp.h"

#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pbus/agent_util.h" /* pbus_mbuf */

/* ------------------------------------------------------------ helpers */

#define KEEP_MAX 1024
static void *kept[KEEP_MAX];
static unsigned nkept;

/* Remember @p for teardown; tests never free by hand. */
static void *keep(void *p)
{
	ck_assert_ptr_nonnull(p);
	ck_assert_uint_lt(nkept, KEEP_MAX);
	kept[nkept++] = p;
	return p;
}

/* An output: sbuffer-backed packer that counts writes and can fail. */
struct out {
	msgpack_sbuffer sb;
	msgpack_packer pk;
	unsigned writes;
	size_t fail_at; /* fail a write that would pass this size; 0: never */
};

static int out_cb(void *data, const char *buf, size_t len)
{
	struct out *o = data;

	o->writes++;
	if (o->fail_at && o->sb.size + len > o->fail_at)
		return -1;
	return msgpack_sbuffer_write(&o->sb, buf, len);
}

#define OUT_MAX 256
static struct out outs[OUT_MAX];
static unsigned nouts;

static struct out *out_new(void)
{
	struct out *o;

	ck_assert_uint_lt(nouts, OUT_MAX);
	o = &outs[nouts++];
	memset(o, 0, sizeof(*o));
	msgpack_sbuffer_init(&o->sb);
	msgpack_packer_init(&o->pk, o, out_cb);
	return o;
}

/* The output as a view (exact-size copy). */
static struct pbus_mp out_view(const struct out *o)
{
	struct pbus_mp v = {NULL, o->sb.size};

	v.p = keep(malloc(o->sb.size ? o->sb.size : 1));
	memcpy((void *)v.p, o->sb.data, o->sb.size);
	return v;
}

static void setup(void)
{
	nkept = 0;
	nouts = 0;
}

static void teardown(void)
{
	for (unsigned i = 0; i < nkept; i++)
		free(kept[i]);
	for (unsigned i = 0; i < nouts; i++)
		msgpack_sbuffer_destroy(&outs[i].sb);
	nkept = nouts = 0;
}

/* Exact-size copy of @n bytes: what the reader gets. */
static struct pbus_mp raw(const void *p, size_t n)
{
	struct pbus_mp v = {keep(malloc(n ? n : 1)), n};

	memcpy((void *)v.p, p, n);
	return v;
}

static void pack_json(msgpack_packer *pk, json_t *j)
{
	const char *k;
	void *it;

	switch (json_typeof(j)) {
	case JSON_OBJECT:
		msgpack_pack_map(pk, json_object_size(j));
		for (it = json_object_iter(j); it;
		     it = json_object_iter_next(j, it)) {
			k = json_object_iter_key(it);
			msgpack_pack_str_with_body(pk, k, strlen(k));
			pack_json(pk, json_object_iter_value(it));
		}
		break;
	case JSON_ARRAY:
		msgpack_pack_array(pk, json_array_size(j));
		for (size_t i = 0; i < json_array_size(j); i++)
			pack_json(pk, json_array_get(j, i));
		break;
	case JSON_STRING:
		msgpack_pack_str_with_body(pk, json_string_value(j),
					   json_string_length(j));
		break;
	case JSON_INTEGER:
		msgpack_pack_int64(pk, json_integer_value(j));
		break;
	case JSON_REAL:
		msgpack_pack_double(pk, json_real_value(j));
		break;
	case JSON_TRUE:
		msgpack_pack_true(pk);
		break;
	case JSON_FALSE:
		msgpack_pack_false(pk);
		break;
	case JSON_NULL:
		msgpack_pack_nil(pk);
		break;
	}
}

/* JSON text ('single quotes' allowed) -> msgpack, as an opened view. */
static struct pbus_mp J(const char *text) {
	char *s = keep(strdup(text));
	struct out *o = out_new();
	struct pbus_mp v, d;
	json_error_t err;
	json_t *j;

	for (char *c = s; *c; c++)
		if (*c == '\'')
			*c = '"';
	j = json_loads(s, JSON_DECODE_ANY, &err);
	ck_assert_msg(j, "bad test JSON: %s: %s", text, err.text);
	pack_json(&o->pk, j);
	json_decref(j);
	d = out_view(o);
	ck_assert_int_eq(pbus_mp_open(d.p, d.len, &v), 0);
	return v;
}

static pbus_mp_rewrite_fn shout;

static void ck_view_eq(struct pbus_mp a, struct pbus_mp b)
{
	ck_assert_uint_eq(a.len, b.len);
	ck_assert_mem_eq(a.p, b.p, a.len);
}

/* A map of @n pairs, each given as two JSON texts (key, value), so that
 * keys may repeat or be any object: M(2, "'k'", "1", "7", "null"). */
static struct pbus_mp M(unsigned n, ...) {
	struct out *o = out_new();
	struct pbus_mp d;
	va_list ap;

	msgpack_pack_map(&o->pk, n);
	va_start(ap, n);
	for (unsigned i = 0; i < 2 * n; i++)
		ck_assert_int_eq(pbus_mp_copy(&o->pk, J(va_arg(ap, char *))),
				 0);
	va_end(ap);
	d = out_view(o);
	ck_assert_int_eq(pbus_mp_open(d.p, d.len, &d), 0);
	return d;
}

/* A nested document touching every container form and most scalars. */
#define DOC                                                                    \
	"{'name': 'get_weather',"                                              \
	" 'args': {'city': 'Paris', 'days': 3, 'units': ['c', 'f'],"           \
	"          'deep': {'x': 'y', 'n': [1, -2, 3.5, null, true]}},"        \
	" 'result': {'content': [{'type': 'text', 'text': 'hello'},"           \
	"                        {'type': 'image', 'size': 70000}],"           \
	"            'isError': false},"                                       \
	" 'empty': {}, 'none': []}"

/* ------------------------------------------------------------ roundtrip */

START_TEST(integers_of_every_width_round_trip)
{
	static const int64_t s[] = {
	    0,	       1,      127,    128,	     255,
	    256,       65535,  65536,  4294967295LL, 4294967296LL,
	    INT64_MAX, -1,     -32,    -33,	     -128,
	    -129,      -32768, -32769, INT32_MIN,    (int64_t)INT32_MIN - 1,
	    INT64_MIN,
	};
	bool seen[256] = {false};

	for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++) {
		struct out *o = out_new();
		struct pbus_mp v, d;
		int64_t got;
		uint64_t u;
		double f;

		msgpack_pack_int64(&o->pk, s[i]);
		d = out_view(o);
		ck_assert_int_eq(pbus_mp_open(d.p, d.len, &v), 0);
		ck_assert_uint_eq(v.len, d.len);
		seen[v.p[0] >= 0xe0 ? 0xe0 : v.p[0] <= 0x7f ? 0 : v.p[0]] = 1;
		ck_assert_int_eq(pbus_mp_type(v), PBUS_MP_INT);
		ck_assert_int_eq(pbus_mp_int(v, &got), 0);
		ck_assert(got == s[i]);
		ck_assert_int_eq(pbus_mp_uint(v, &u), s[i] < 0 ? -ERANGE : 0);
		if (s[i] >= 0)
			ck_assert(u == (uint64_t)s[i]);
		ck_assert_int_eq(pbus_mp_float(v, &f), 0);
		ck_assert(f == (double)s[i]);
	}
	/* positive unsigned forms, via msgpack_pack_uint64 */
	static const uint64_t u[] = {200, 60000, 4000000000u,
				     (uint64_t)INT64_MAX + 1, UINT64_MAX};
	for (size_t i = 0; i < sizeof(u) / sizeof(u[0]); i++) {
		struct out *o = out_new();
		struct pbus_mp v, d;
		uint64_t got;
		int64_t si;

		msgpack_pack_uint64(&o->pk, u[i]);
		d = out_view(o);
		ck_assert_int_eq(pbus_mp_open(d.p, d.len, &v), 0);
		seen[v.p[0]] = 1;
		ck_assert_int_eq(pbus_mp_uint(v, &got), 0);
		ck_assert(got == u[i]);
		if (u[i] > (uint64_t)INT64_MAX) {
			ck_assert_int_eq(pbus_mp_type(v), PBUS_MP_UINT);
			ck_assert_int_eq(pbus_mp_int(v, &si), -ERANGE);
		} else {
			ck_assert_int_eq(pbus_mp_type(v), PBUS_MP_INT);
		}
	}
	for (int t = 0xcc; t <= 0xd3; t++)
		ck_assert_msg(seen[t], "tag 0x%x not exercised", t);
	ck_assert(seen[0] && seen[0xe0]);
}
END_TEST

START_TEST(floats_bools_nil_round_trip)
{
	struct out *o = out_new();
	struct pbus_mp d, v;
	struct pbus_mp_iter it;
	double f;
	bool b;

	msgpack_pack_array(&o->pk, 5);
	msgpack_pack_float(&o->pk, 1.5f);
	msgpack_pack_double(&o->pk, -2.25e300);
	msgpack_pack_true(&o->pk);
	msgpack_pack_false(&o->pk);
	msgpack_pack_nil(&o->pk);
	d = out_view(o);
	ck_assert_int_eq(pbus_mp_open(d.p, d.len, &d), 0);
	ck_assert_int_eq(pbus_mp_iter_init(d, &it), 0);

	ck_assert_int_eq(pbus_mp_next(&it, NULL, &v), 1);
	ck_assert_int_eq(v.p[0], 0xca);
	ck_assert_int_eq(pbus_mp_type(v), PBUS_MP_FLOAT);
	ck_assert_int_eq(pbus_mp_float(v, &f), 0);
	ck_assert(f == 1.5);
	ck_assert_int_eq(pbus_mp_int(v, &(int64_t){0}), -EINVAL);

	ck_assert_int_eq(pbus_mp_next(&it, NULL, &v), 1);
	ck_assert_int_eq(v.p[0], 0xcb);
	ck_assert_int_eq(pbus_mp_float(v, &f), 0);
	ck_assert(f == -2.25e300);

	ck_assert_int_eq(pbus_mp_next(&it, NULL, &v), 1);
	ck_assert_int_eq(pbus_mp_type(v), PBUS_MP_BOOL);
	ck_assert_int_eq(pbus_mp_bool(v, &b), 0);
	ck_assert(b);
	ck_assert_int_eq(pbus_mp_next(&it, NULL, &v), 1);
	ck_assert_int_eq(pbus_mp_bool(v, &b), 0);
	ck_assert(!b);
	ck_assert_int_eq(pbus_mp_float(v, &f), -EINVAL);

	ck_assert_int_eq(pbus_mp_next(&it, NULL, &v), 1);
	ck_assert(pbus_mp_is_nil(v));
	ck_assert_int_eq(pbus_mp_type(v), PBUS_MP_NIL);
	ck_assert_int_eq(pbus_mp_bool(v, &b), -EINVAL);
	ck_assert_int_eq(pbus_mp_next(&it, NULL, &v), 0);

	ck_assert_str_eq(pbus_mp_type_name(PBUS_MP_MAP), "map");
	ck_assert_str_eq(pbus_mp_type_name(PBUS_MP_INVALID), "invalid");
	ck_assert_str_eq(pbus_mp_type_name((enum pbus_mp_type)99), "invalid");
}
END_TEST

/* str, bin and ext at every head width, against msgpack-c. */
START_TEST(str_bin_ext_of_every_width_round_trip)
{
	static const size_t lens[] = {0, 1, 31, 32, 255, 256, 65535, 65536};
	char *data = keep(malloc(70000));

	for (size_t i = 0; i < 70000; i++)
		data[i] = (char)('a' + i % 26);
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		size_t n = lens[i];
		struct out *o = out_new();
		struct pbus_mp d, v, e;
		struct pbus_mp_iter it;
		const char *s;
		const void *b;
		size_t got;
		int8_t et;

		msgpack_pack_array(&o->pk, 3);
		msgpack_pack_str_with_body(&o->pk, data, n);
		msgpack_pack_bin_with_body(&o->pk, data, n);
		msgpack_pack_ext_with_body(&o->pk, data, n ? n : 1, -5);
		d = out_view(o);
		ck_assert_int_eq(pbus_mp_open(d.p, d.len, &d), 0);
		ck_assert_int_eq(pbus_mp_iter_init(d, &it), 0);

		ck_assert_int_eq(pbus_mp_next(&it, NULL, &v), 1);
		ck_assert_int_eq(pbus_mp_type(v), PBUS_MP_STR);
		ck_assert_int_eq(pbus_mp_str(v, &s, &got), 0);
		ck_assert_uint_eq(got, n);
		ck_assert(!memcmp(s, data, n));
		ck_assert(pbus_mp_str_eqn(v, data, n));
		ck_assert(!pbus_mp_str_eqn(v, data, n + 1));
		ck_assert_int_eq(pbus_mp_bin(v, &b, &got), -EINVAL);

		ck_assert_int_eq(pbus_mp_next(&it, NULL, &v), 1);
		ck_assert_int_eq(pbus_mp_type(v), PBUS_MP_BIN);
		ck_assert_int_eq(pbus_mp_bin(v, &b, &got), 0);
		ck_assert_uint_eq(got, n);
		ck_assert(!memcmp(b, data, n));
		ck_assert_int_eq(pbus_mp_str(v, &s, &got), -EINVAL);

		ck_assert_int_eq(pbus_mp_next(&it, NULL, &e), 1);
		ck_assert_int_eq(pbus_mp_type(e), PBUS_MP_EXT);
		ck_assert_int_eq(pbus_mp_ext(e, &et, &b, &got), 0);
		ck_assert_int_eq(et, -5);
		ck_assert_uint_eq(got, n ? n : 1);
		ck_assert(!memcmp(b, data, got));
		ck_assert_int_eq(pbus_mp_next(&it, NULL, &v), 0);
	}
	/* every fixext and ext width */
	static const size_t elens[] = {1, 2, 4, 8, 16, 3, 17, 300, 70000};
	for (size_t i = 0; i < sizeof(elens) / sizeof(elens[0]); i++) {
		struct out *o = out_new();
		struct pbus_mp d, v;
		const void *b;
		size_t got;
		int8_t et;

		msgpack_pack_ext_with_body(&o->pk, data, elens[i], 127);
		d = out_view(o);
		ck_assert_int_eq(pbus_mp_open(d.p, d.len, &v), 0);
		ck_assert_int_eq(pbus_mp_ext(v, &et, &b, &got), 0);
		ck_assert_int_eq(et, 127);
		ck_assert_uint_eq(got, elens[i]);
		ck_assert(!memcmp(b, data, got));
	}
}
END_TEST

START_TEST(arrays_and_maps_of_every_width_round_trip)
{
	static const uint32_t ns[] = {0, 1, 15, 16, 65535, 65536};

	for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
		struct out *oa = out_new(), *om = out_new();
		struct pbus_mp a, m, d, k, v;
		struct pbus_mp_iter it;
		int64_t x;
		uint32_t n = ns[i], seen = 0;

		msgpack_pack_array(&oa->pk, n);
		msgpack_pack_map(&om->pk, n);
		for (uint32_t j = 0; j < n; j++) {
			msgpack_pack_uint32(&oa->pk, j);
			msgpack_pack_uint32(&om->pk, j);
			msgpack_pack_int64(&om->pk, -(int64_t)j);
		}
		d = out_view(oa);
		ck_assert_int_eq(pbus_mp_open(d.p, d.len, &a), 0);
		d = out_view(om);
		ck_assert_int_eq(pbus_mp_open(d.p, d.len, &m), 0);
		ck_assert_int_eq(pbus_mp_type(a), PBUS_MP_ARRAY);
		ck_assert_int_eq(pbus_mp_type(m), PBUS_MP_MAP);
		ck_assert_int_eq(pbus_mp_count(a), n);
		ck_assert_int_eq(pbus_mp_count(m), n);

		ck_assert_int_eq(pbus_mp_iter_init(m, &it), 0);
		while (pbus_mp_next(&it, &k, &v) == 1) {
			ck_assert_int_eq(pbus_mp_int(k, &x), 0);
			ck_assert_int_eq(x, seen);
			ck_assert_int_eq(pbus_mp_int(v, &x), 0);
			ck_assert_int_eq(x, -(int64_t)seen);
			seen++;
		}
		ck_assert_uint_eq(seen, n);
		if (n) {
			ck_assert_int_eq(pbus_mp_index(a, n - 1, &v), 0);
			ck_assert_int_eq(pbus_mp_int(v, &x), 0);
			ck_assert_int_eq(x, n - 1);
		}
		ck_assert_int_eq(pbus_mp_index(a, n, &v), -ENOENT);
	}
}
END_TEST

/* Encodings msgpack-c never emits (non-minimal) are still valid msgpack. */
START_TEST(non_minimal_encodings_are_read)
{
	static const uint8_t doc[] = {
	    0xde, 0x00, 0x02,			    /* map16, 2 pairs */
	    0xdb, 0,	0,    0, 2, 'i', 'd',	    /* str32 "id" */
	    0xcf, 0,	0,    0, 0, 0,	 0,   0, 5, /* uint64 5 */
	    0xd9, 1,	'l',			    /* str8 "l" */
	    0xdd, 0,	0,    0, 1,		    /* array32, 1 element */
	    0xd0, 0x05,				    /* int8 +5 */
	};
	struct pbus_mp d = raw(doc, sizeof(doc)), v, e;
	int64_t x;

	ck_assert_int_eq(pbus_mp_open(d.p, d.len, &d), 0);
	ck_assert_int_eq(pbus_mp_get(d, "id", &v), 0);
	ck_assert_int_eq(pbus_mp_int(v, &x), 0);
	ck_assert_int_eq(x, 5);
	ck_assert_int_eq(pbus_mp_path(d, "l.0", &e), 0);
	ck_assert_int_eq(pbus_mp_int(e, &x), 0);
	ck_assert_int_eq(x, 5);
	ck_assert_int_eq(pbus_mp_count(d), 2);
}
END_TEST

/* ------------------------------------------------------------ malformed */

START_TEST(every_truncation_of_a_nested_document_is_ebadmsg)
{
	struct pbus_mp d = J(DOC), v;
	struct out *o = out_new();

	for (size_t n = 0; n < d.len; n++) {
		struct pbus_mp t = raw(d.p, n);

		ck_assert_int_eq(pbus_mp_open(t.p, n, &v), -EBADMSG);
		ck_assert_int_eq(
		    pbus_mp_open2(t.p, n, PBUS_MP_ALLOW_TRAILING, &v),
		    -EBADMSG);
		/* misuse: a truncated view given straight to accessors */
		(void)pbus_mp_get(t, "result", &v);
		(void)pbus_mp_path(t, "result.content.0.text", &v);
		(void)pbus_mp_count(t);
		ck_assert_int_eq(pbus_mp_rewrite(t, shout, NULL, &o->pk),
				 -EBADMSG);
		o->sb.size = 0;
	}
	ck_assert_int_eq(pbus_mp_open(d.p, d.len, &v), 0);
	ck_assert_uint_eq(v.len, d.len);
}
END_TEST

START_TEST(huge_declared_lengths_fail_fast)
{
	static const struct {
		uint8_t b[8];
		size_t n;
	} bad[] = {
	    {{0xdb, 0xff, 0xff, 0xff, 0xff, 'a'}, 6},  /* str32 4 GiB */
	    {{0xc6, 0xff, 0xff, 0xff, 0xff, 0}, 6},    /* bin32 */
	    {{0xc9, 0xff, 0xff, 0xff, 0xff, 1, 0}, 7}, /* ext32 */
	    {{0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0}, 6}, /* array32 */
	    {{0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0}, 6}, /* map32 */
	    {{0xdf, 0x80, 0x00, 0x00, 0x00, 0xc0}, 6}, /* 2^31 pairs */
	    {{0xdc, 0xff, 0xff, 0xc0, 0xc0, 0xc0}, 6}, /* array16 */
	    {{0x91, 0xdd, 0xff, 0xff, 0xff, 0xff}, 6}, /* nested */
	    {{0x82, 0xa1, 'a', 0xc0, 0xa1, 'b'}, 6},   /* pair short */
	    {{0xc1}, 1},			       /* never used */
	    {{0xcf, 0, 0}, 3},			       /* uint64 short */
	    {{0xd8, 1, 2}, 3},			       /* fixext16 */
	};
	struct pbus_mp v;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct pbus_mp d = raw(bad[i].b, bad[i].n);

		ck_assert_msg(pbus_mp_open2(d.p, d.len, PBUS_MP_ALLOW_TRAILING,
					    &v) == -EBADMSG,
			      "case %zu", i);
		/* a head that does not fit is not even typed */
		if (i < 7 || i > 8)
			ck_assert_int_eq(pbus_mp_type(d), PBUS_MP_INVALID);
	}
	/* the head alone says "too many": count refuses it without a walk */
	ck_assert_int_eq(pbus_mp_count(raw(bad[4].b, 6)), -EBADMSG);
	ck_assert_int_eq(pbus_mp_count(raw(bad[3].b, 6)), -EBADMSG);
	ck_assert_int_eq(pbus_mp_count(raw("\xa5x", 2)), -EINVAL);
}
END_TEST

/* @d nested arrays (or maps {'k': ...}) around nil, or around an empty
 * array when @empty. */
static struct pbus_mp nest(unsigned d, bool maps, bool empty)
{
	uint8_t *b = keep(malloc(3 * d + 1));
	size_t n = 0;

	for (unsigned i = 0; i < d - (empty ? 1 : 0); i++) {
		if (maps) {
			b[n++] = 0x81;
			b[n++] = 0xa1;
			b[n++] = 'k';
		} else {
			b[n++] = 0x91;
		}
	}
	b[n++] = empty ? 0x90 : 0xc0;
	return (struct pbus_mp){b, n};
}

static int one(const struct pbus_mp_path *path, const char *s, size_t n,
	       void *arg, msgpack_packer *pk)
{
	(void)path, (void)s, (void)n, (void)arg;
	return msgpack_pack_int(pk, 1) ? -EIO : 1;
}

START_TEST(nesting_deeper_than_64_is_ebadmsg)
{
	for (int maps = 0; maps < 2; maps++) {
		for (int empty = 0; empty < 2; empty++) {
			struct pbus_mp ok = nest(64, maps, empty);
			struct pbus_mp deep = nest(65, maps, empty), v;

			ck_assert_int_eq(pbus_mp_open(ok.p, ok.len, &v), 0);
			ck_assert_int_eq(pbus_mp_open(deep.p, deep.len, &v),
					 -EBADMSG);
			ck_assert_int_eq(
			    pbus_mp_rewrite(ok, one, NULL, &out_new()->pk), 0);
			ck_assert_int_eq(
			    pbus_mp_rewrite(deep, one, NULL, &out_new()->pk),
			    -EBADMSG);
			ck_assert_int_eq(pbus_mp_rewrite_at(deep, "k", one,
							    NULL,
							    &out_new()->pk),
					 -EBADMSG);
		}
	}
	/* depth counts containers, not scalars: 64 levels around a string */
	uint8_t b[64 * 3 + 2];
	size_t n = 0;
	struct pbus_mp v;

	for (int i = 0; i < 64; i++) {
		b[n++] = 0x81;
		b[n++] = 0xa1;
		b[n++] = 'k';
	}
	b[n++] = 0xa1;
	b[n++] = 's';
	v = raw(b, n);
	struct out *o = out_new();
	ck_assert_int_eq(pbus_mp_open(v.p, v.len, &v), 0);
	ck_assert_int_eq(pbus_mp_rewrite(v, one, NULL, &o->pk), 1);
	ck_assert_uint_eq(o->sb.size, n - 1); /* "s" became 1 */
}
END_TEST

START_TEST(trailing_bytes_need_the_flag)
{
	static const uint8_t b[] = {0x92, 0x01, 0xa1, 'x', 0xc0, 0xc0};
	struct pbus_mp d = raw(b, sizeof(b)), v = {NULL, 77};

	ck_assert_int_eq(pbus_mp_open(d.p, d.len, &v), -EBADMSG);
	ck_assert_uint_eq(v.len, 77); /* untouched on failure */
	ck_assert_int_eq(pbus_mp_open2(d.p, d.len, PBUS_MP_ALLOW_TRAILING, &v),
			 0);
	ck_assert_uint_eq(v.len, 4);
	ck_assert_int_eq(pbus_mp_open2(d.p, d.len, 0x80, &v), -EINVAL);
	ck_assert_int_eq(pbus_mp_open(NULL, 0, &v), -EBADMSG);
	ck_assert_int_eq(pbus_mp_open(d.p, 0, &v), -EBADMSG);
	/* a view with trailing bytes is not one object to the rewriter */
	ck_assert_int_eq(pbus_mp_rewrite(d, one, NULL, &out_new()->pk),
			 -EBADMSG);
}
END_TEST

START_TEST(hand_made_views_never_read_past_their_length)
{
	/* str claiming 5 bytes in a 3-byte view */
	struct pbus_mp s = raw("\xa5xy", 3), m = raw("\x81\xa1k\xa5xy", 6), v;
	struct pbus_mp_iter it;
	const char *p;

	ck_assert_int_eq(pbus_mp_type(s), PBUS_MP_INVALID);
	ck_assert_int_eq(pbus_mp_str(s, &p, NULL), -EBADMSG);
	ck_assert(!pbus_mp_str_eq(s, "xy"));
	ck_assert_int_eq(pbus_mp_get(m, "k", &v), -EBADMSG);
	ck_assert_int_eq(pbus_mp_path(m, "k", &v), -EBADMSG);
	ck_assert_int_eq(pbus_mp_iter_init(m, &it), 0);
	ck_assert_int_eq(pbus_mp_next(&it, NULL, &v), -EBADMSG);
	ck_assert_int_eq(pbus_mp_next(&it, NULL, &v), 0);
	ck_assert_int_eq(pbus_mp_set(m, "k", J("1"), &out_new()->pk), -EBADMSG);
	ck_assert_int_eq(pbus_mp_merge(m, J("{}"), &out_new()->pk), -EBADMSG);
	/* the absent view */
	v = (struct pbus_mp){NULL, 0};
	ck_assert_int_eq(pbus_mp_type(v), PBUS_MP_INVALID);
	ck_assert(!pbus_mp_is_nil(v));
	ck_assert_int_eq(pbus_mp_get(v, "k", &v), -EINVAL);
	ck_assert_int_eq(pbus_mp_count(v), -EINVAL);
	ck_assert_int_eq(pbus_mp_path(v, "", &v), -ENOENT);
	ck_assert_int_eq(pbus_mp_copy(&out_new()->pk, v), -EINVAL);
}
END_TEST

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static int shout(const struct pbus_mp_path *path, const char *s, size_t n,
		 void *arg, msgpack_packer *pk)
{
	(void)path, (void)arg;
	if (n && s[0] == 'a')
		return 0;
	if (msgpack_pack_str(pk, n + 1) || msgpack_pack_str_body(pk, "!", 1) ||
	    msgpack_pack_str_body(pk, s, n))
		return -EIO;
	return 1;
}

/* Run every reader and writer on @v; only sanitizers judge. */
static void poke(struct pbus_mp v, bool valid)
{
	struct pbus_mp_iter it;
	struct pbus_mp k, x;
	struct out *o = out_new();
	int64_t i;
	double f;
	int ret;

	(void)pbus_mp_type(v);
	(void)pbus_mp_int(v, &i);
	(void)pbus_mp_float(v, &f);
	(void)pbus_mp_str(v, NULL, NULL);
	(void)pbus_mp_count(v);
	(void)pbus_mp_get(v, "name", &x);
	(void)pbus_mp_path(v, "result.content.0.text", &x);
	(void)pbus_mp_index(v, 1, &x);
	if (!pbus_mp_iter_init(v, &it))
		while (pbus_mp_next(&it, &k, &x) > 0)
			(void)pbus_mp_type(x);
	ret = pbus_mp_rewrite(v, shout, NULL, &o->pk);
	if (valid) {
		ck_assert_int_ge(ret, 0);
		x = out_view(o);
		ck_assert_int_eq(pbus_mp_open(x.p, x.len, &x), 0);
		ck_assert_int_ge(pbus_mp_rewrite_at(v, "**.text", shout, NULL,
						    &out_new()->pk),
				 0);
	}
	ret = pbus_mp_set(v, "name", J("[1]"), &out_new()->pk);
	ck_assert(!valid || ret == 0 || ret == -EINVAL);
	ret = pbus_mp_merge(v, v, &out_new()->pk);
	ck_assert(!valid || ret == 0 || ret == -EINVAL || ret == -E2BIG);
}

START_TEST(seeded_mutations_never_crash)
{
	struct pbus_mp d = J(DOC);
	uint8_t *doc = malloc(d.len), *b = malloc(d.len);
	unsigned ok = 0;

	ck_assert_ptr_nonnull(b);
	ck_assert_ptr_nonnull(doc);
	memcpy(doc, d.p, d.len);
	d.p = doc; /* teardown() below frees what J() kept */
	for (int round = 0; round < 20000; round++) {
		struct pbus_mp m, v;
		size_t n = d.len;
		int ret;

		memcpy(b, d.p, d.len);
		for (int k = 1 + next_rand() % 4; k; k--)
			b[next_rand() % d.len] = (uint8_t)next_rand();
		if (next_rand() % 4 == 0)
			n = next_rand() % d.len + 1;
		m = raw(b, n);
		ret = pbus_mp_open2(m.p, m.len, PBUS_MP_ALLOW_TRAILING, &v);
		ck_assert(ret == 0 || ret == -EBADMSG);
		if (!ret) {
			ok++;
			ck_assert_uint_le(v.len, n);
		}
		poke(ret ? m : v, !ret);
		teardown();
	}
	free(b);
	free(doc);
	ck_assert_uint_gt(ok, 100);
}
END_TEST

START_TEST(random_bytes_never_crash)
{
	uint8_t b[64];

	for (int round = 0; round < 20000; round++) {
		size_t n = 1 + next_rand() % sizeof(b);
		struct pbus_mp m, v;
		int ret;

		for (size_t i = 0; i < n; i++)
			b[i] = (uint8_t)next_rand();
		/* bias towards containers so trees form */
		if (round & 1)
			b[0] = (uint8_t)(0x80 + next_rand() % 0x20);
		m = raw(b, n);
		ret = pbus_mp_open2(m.p, m.len, PBUS_MP_ALLOW_TRAILING, &v);
		ck_assert(ret == 0 || ret == -EBADMSG);
		poke(ret ? m : v, !ret);
		teardown();
	}
}
END_TEST

/* The width of the length field after tag @t (str, bin, ext, array32...),
 * 0 if it has none. */
static unsigned len_width(uint8_t t)
{
	switch (t) {
	case 0xc4:
	case 0xc7:
	case 0xd9:
		return 1;
	case 0xc5:
	case 0xc8:
	case 0xda:
	case 0xdc:
	case 0xde:
		return 2;
	case 0xc6:
	case 0xc9:
	case 0xdb:
	case 0xdd:
	case 0xdf:
		return 4;
	default:
		return 0;
	}
}

/*
 * The reader sizes the commonest heads inline (fixint, nil, bool, strings,
 * fixmap, fixarray) and the rest in one general decoder: both must agree
 * with msgpack-c's own unpacker on where every object ends, or that it is
 * cut short or invalid, for every tag.
 */
START_TEST(every_head_is_sized_as_msgpack_c_sizes_it)
{
	/* what follows the tag: no big declared lengths (msgpack-c allocates
	 * for a container's count before it finds the bytes missing) */
	static const uint8_t fill[] = {0x00, 0x01, 0x03, 0x7f, 0xe0, 0xff, 0xc0,
				       0xc2, 0xc3, 0xa0, 0xa1, 0xa3, 0x90, 0x91,
				       0x92, 0x80, 0x81, 0x82, 0xd9, 0xc4, 0xc7,
				       0xd4, 0xcc, 0xcd, 0xd0, 0xca, 0xc1};
	msgpack_unpacked u;
	uint8_t b[16];

	msgpack_unpacked_init(&u);
	for (int round = 0; round < 256 * 64; round++) {
		size_t n = 1 + next_rand() % sizeof(b), off = 0, w, i;
		struct pbus_mp v, m;
		int ours, theirs;

		b[0] = (uint8_t)round;
		for (i = 1; i < n; i++)
			b[i] = fill[next_rand() % sizeof(fill)];
		/* and a small one after the tag under test */
		w = len_width(b[0]);
		for (i = 1; i <= w && i < n; i++)
			b[i] = i == w ? (uint8_t)(next_rand() % 8) : 0;
		m = raw(b, n);
		ours = pbus_mp_open2(m.p, n, PBUS_MP_ALLOW_TRAILING, &v);
		theirs = msgpack_unpack_next(&u, (const char *)m.p, n, &off);
		ck_assert_msg((ours == 0) == (theirs == MSGPACK_UNPACK_SUCCESS),
			      "tag 0x%02x, %zu bytes: %d vs %d", b[0], n, ours,
			      theirs);
		if (!ours)
			ck_assert_uint_eq(v.len, off);
		if (nkept > KEEP_MAX - 4)
			teardown();
	}
	msgpack_unpacked_destroy(&u);
}
END_TEST

/* ------------------------------------------------------------ lookup */

START_TEST(get_finds_values_and_reports_missing_keys)
{
	struct pbus_mp d = J(DOC), v, args;
	int64_t x;

	ck_assert_int_eq(pbus_mp_get(d, "name", &v), 0);
	ck_assert(pbus_mp_str_eq(v, "get_weather"));
	ck_assert(!pbus_mp_str_eq(v, "get_weathe"));
	ck_assert(!pbus_mp_str_eq(v, NULL));
	ck_assert_int_eq(pbus_mp_get(d, "args", &args), 0);
	ck_assert_int_eq(pbus_mp_get(args, "days", &v), 0);
	ck_assert_int_eq(pbus_mp_int(v, &x), 0);
	ck_assert_int_eq(x, 3);
	ck_assert_int_eq(pbus_mp_get(d, "nope", &v), -ENOENT);
	ck_assert_int_eq(pbus_mp_get(d, "", &v), -ENOENT);
	ck_assert_int_eq(pbus_mp_get(d, "nam", &v), -ENOENT);
	ck_assert_int_eq(pbus_mp_getn(d, "namex", 4, &v), 0);
	ck_assert_int_eq(pbus_mp_get(d, NULL, &v), -EINVAL);
	/* the value view is exact: it re-opens on its own */
	ck_assert_int_eq(pbus_mp_open(args.p, args.len, &v), 0);
	/* non-maps */
	ck_assert_int_eq(pbus_mp_get(J("[1, 2]"), "a", &v), -EINVAL);
	ck_assert_int_eq(pbus_mp_get(J("'a'"), "a", &v), -EINVAL);
	ck_assert_int_eq(pbus_mp_get(J("{}"), "a", &v), -ENOENT);
}
END_TEST

START_TEST(get_compares_key_bytes_exactly)
{
	struct out *o = out_new();
	struct pbus_mp d, v;
	int64_t x;

	msgpack_pack_map(&o->pk, 5);
	msgpack_pack_int(&o->pk, 1); /* int key 1: never matches "1" */
	msgpack_pack_int(&o->pk, 10);
	msgpack_pack_str_with_body(&o->pk, "a\0b", 3);
	msgpack_pack_int(&o->pk, 11);
	msgpack_pack_bin_with_body(&o->pk, "k", 1); /* bin key: not a str */
	msgpack_pack_int(&o->pk, 12);
	msgpack_pack_str_with_body(&o->pk, "k", 1);
	msgpack_pack_int(&o->pk, 13);
	msgpack_pack_str_with_body(&o->pk, "k", 1); /* duplicate */
	msgpack_pack_int(&o->pk, 14);
	d = out_view(o);
	ck_assert_int_eq(pbus_mp_open(d.p, d.len, &d), 0);
	ck_assert_int_eq(pbus_mp_get(d, "1", &v), -ENOENT);
	ck_assert_int_eq(pbus_mp_get(d, "a", &v), -ENOENT);
	ck_assert_int_eq(pbus_mp_getn(d, "a\0b", 3, &v), 0);
	ck_assert_int_eq(pbus_mp_int(v, &x), 0);
	ck_assert_int_eq(x, 11);
	ck_assert_int_eq(pbus_mp_get(d, "k", &v), 0);
	ck_assert_int_eq(pbus_mp_int(v, &x), 0);
	ck_assert_int_eq(x, 13); /* first occurrence */
}
END_TEST

START_TEST(path_walks_maps_and_arrays)
{
	struct pbus_mp d = J(DOC), v;
	int64_t x;
	double f;

	ck_assert_int_eq(pbus_mp_path(d, "result.content.0.text", &v), 0);
	ck_assert(pbus_mp_str_eq(v, "hello"));
	ck_assert_int_eq(pbus_mp_path(d, "result.content.1.size", &v), 0);
	ck_assert_int_eq(pbus_mp_int(v, &x), 0);
	ck_assert_int_eq(x, 70000);
	ck_assert_int_eq(pbus_mp_path(d, "args.deep.n.2", &v), 0);
	ck_assert_int_eq(pbus_mp_float(v, &f), 0);
	ck_assert(f == 3.5);
	ck_assert_int_eq(pbus_mp_path(d, "", &v), 0);
	ck_view_eq(v, d);
	/* the result is exact, like pbus_mp_get()'s: it re-opens alone */
	ck_assert_int_eq(pbus_mp_path(d, "result.content.0", &v), 0);
	ck_assert_int_eq(pbus_mp_open(v.p, v.len, &v), 0);
	ck_assert_int_eq(pbus_mp_count(v), 2);
	ck_assert_int_eq(pbus_mp_path(d, "args.units", &v), 0);
	ck_view_eq(v, J("['c', 'f']"));
	/* numeric segments are keys in a map */
	ck_assert_int_eq(pbus_mp_path(J("{'0': {'1': 'z'}}"), "0.1", &v), 0);
	ck_assert(pbus_mp_str_eq(v, "z"));
}
END_TEST

START_TEST(path_misses_are_enoent_and_bad_syntax_einval)
{
	struct pbus_mp d = J(DOC), v = {NULL, 0};

	ck_assert_int_eq(pbus_mp_path(d, "result.nope", &v), -ENOENT);
	ck_assert_int_eq(pbus_mp_path(d, "result.content.2", &v), -ENOENT);
	ck_assert_int_eq(pbus_mp_path(d, "result.content.99999999999", &v),
			 -ENOENT);
	ck_assert_int_eq(pbus_mp_path(d, "result.content.x", &v), -ENOENT);
	ck_assert_int_eq(pbus_mp_path(d, "result.content.-1", &v), -ENOENT);
	ck_assert_int_eq(pbus_mp_path(d, "name.0", &v), -ENOENT);
	ck_assert_int_eq(pbus_mp_path(J("3"), "a", &v), -ENOENT);
	ck_assert_int_eq(pbus_mp_path(d, "result..content", &v), -EINVAL);
	ck_assert_int_eq(pbus_mp_path(d, ".result", &v), -EINVAL);
	ck_assert_int_eq(pbus_mp_path(d, "result.", &v), -EINVAL);
	ck_assert_int_eq(pbus_mp_path(d, "nope..x", &v), -EINVAL);
	ck_assert_int_eq(pbus_mp_path(d, NULL, &v), -EINVAL);
	ck_assert_ptr_null(v.p); /* untouched */
}
END_TEST

START_TEST(index_and_count)
{
	struct pbus_mp a = J("[10, 'x', [1], {}]"), v;
	int64_t x;

	ck_assert_int_eq(pbus_mp_count(a), 4);
	ck_assert_int_eq(pbus_mp_count(J("{'a': 1, 'b': 2}")), 2);
	ck_assert_int_eq(pbus_mp_count(J("'ab'")), -EINVAL);
	ck_assert_int_eq(pbus_mp_index(a, 0, &v), 0);
	ck_assert_int_eq(pbus_mp_int(v, &x), 0);
	ck_assert_int_eq(x, 10);
	ck_assert_int_eq(pbus_mp_index(a, 3, &v), 0);
	ck_assert_int_eq(pbus_mp_type(v), PBUS_MP_MAP);
	ck_assert_int_eq(pbus_mp_index(a, 4, &v), -ENOENT);
	ck_assert_int_eq(pbus_mp_index(J("{}"), 0, &v), -EINVAL);
	ck_assert_int_eq(pbus_mp_index(J("1"), 0, &v), -EINVAL);
}
END_TEST

/* pbus_mp_get_keys() gives, key by key, what pbus_mp_get() gives. */
static void ck_get_keys_as_get(struct pbus_mp m, const char *const *keys,
			       size_t n, int want)
{
	struct pbus_mp v[64], g;

	ck_assert_uint_le(n, 64);
	ck_assert_int_eq(pbus_mp_get_keys(m, keys, v, n), want);
	for (size_t i = 0; i < n; i++) {
		int ret = pbus_mp_get(m, keys[i], &g);

		if (want < 0 || ret) {
			ck_assert_ptr_null(v[i].p);
			ck_assert_uint_eq(v[i].len, 0);
			if (want >= 0)
				ck_assert_int_eq(ret, -ENOENT);
		} else {
			ck_assert(v[i].p == g.p && v[i].len == g.len);
		}
	}
}

START_TEST(get_keys_finds_each_first_occurrence_in_one_pass)
{
	struct pbus_mp m = M(5, "'k'", "1", "7", "'seven'", "'a'", "[2]", "'k'",
			     "3", "'b'", "{'k': 4}");
	static const char *const keys[] = {"k", "b", "zz", "a", "k", "7", ""};
	/* {'a' as str8: 1, 'a': 2}: the same key, whatever its head */
	struct pbus_mp s8 = raw("\x82\xd9\x01\x61\x01\xa1\x61\x02", 8), v;

	ck_get_keys_as_get(m, keys, 7, 4); /* an int key never matches "7" */
	ck_assert_int_eq(pbus_mp_get_keys(s8, keys + 3, &v, 1), 1);
	ck_assert_int_eq(v.len, 1);
	ck_assert_int_eq(v.p[0], 1);
	ck_get_keys_as_get(J("{}"), keys, 7, 0);
	ck_assert_int_eq(pbus_mp_get_keys(m, keys, NULL, 0), 0);
}
END_TEST

START_TEST(get_keys_reads_more_keys_than_one_pass_holds)
{
	struct out *o = out_new();
	const char *keys[60];
	char names[60][8];
	struct pbus_mp m;

	msgpack_pack_map(&o->pk, 50);
	for (int i = 0; i < 50; i++) {
		snprintf(names[i], sizeof(names[i]), "k%d", i);
		pbus_mp_pack_cstr(&o->pk, names[i]);
		msgpack_pack_int(&o->pk, i);
	}
	m = out_view(o);
	for (int i = 0; i < 60; i++) /* backwards, and 10 absent */
		keys[i] = i < 10 ? "nope" : names[59 - i];
	ck_get_keys_as_get(m, keys, 60, 50);
}
END_TEST

START_TEST(get_keys_refuses_non_maps_and_malformed_maps)
{
	static const char *const ab[] = {"a", "b"}, *const ac[] = {"a", "c"};
	static const char *const null_key[] = {"a", NULL};
	/* {'a': 1, 'b': 2, 'c': <missing>} */
	struct pbus_mp bad = raw("\x83\xa1\x61\x01\xa1\x62\x02\xa1\x63", 9);
	struct pbus_mp none = {NULL, 0}, v[2];

	ck_get_keys_as_get(none, ab, 2, -EINVAL);
	ck_get_keys_as_get(J("[1, 2]"), ab, 2, -EINVAL);
	ck_get_keys_as_get(J("null"), ab, 2, -EINVAL);
	ck_assert_int_eq(pbus_mp_get_keys(J("'s'"), ab, v, 0), -EINVAL);
	ck_assert_int_eq(pbus_mp_get_keys(J("{'a': 1}"), null_key, v, 2),
			 -EINVAL);
	ck_assert_ptr_null(v[0].p);
	/* found before the bad pair: as pbus_mp_get(), the walk stops */
	ck_get_keys_as_get(bad, ab, 2, 2);
	/* a key that needs the bad pair: -EBADMSG, and nothing found */
	ck_get_keys_as_get(bad, ac, 2, -EBADMSG);
	ck_assert_int_eq(pbus_mp_get(bad, "c", v), -EBADMSG);
	ck_get_keys_as_get(raw("\xdf\xff\xff\xff\xff\xc0", 6), ab, 2, -EBADMSG);
}
END_TEST

/* ------------------------------------------------------------ iteration */

START_TEST(iterating_a_map_yields_pairs_in_order)
{
	struct pbus_mp d = J("{'a': 1, 'b': [2, 3], 'c': {'d': null}}"), k, v;
	static const char *const keys[] = {"a", "b", "c"};
	struct pbus_mp_iter it;
	int n = 0;

	ck_assert_int_eq(pbus_mp_iter_init(d, &it), 0);
	while (pbus_mp_next(&it, &k, &v) == 1) {
		ck_assert(pbus_mp_str_eq(k, keys[n]));
		ck_assert_uint_eq(it.index, (unsigned)n + 1);
		n++;
	}
	ck_assert_int_eq(n, 3);
	ck_assert_int_eq(pbus_mp_type(v), PBUS_MP_MAP);
	ck_assert_int_eq(pbus_mp_next(&it, &k, &v), 0);
}
END_TEST

START_TEST(iterating_an_array_leaves_key_alone)
{
	struct pbus_mp a = J("['x', 2, ['y']]"), k = {NULL, 42}, v;
	struct pbus_mp_iter it;
	unsigned n = 0;

	ck_assert_int_eq(pbus_mp_iter_init(a, &it), 0);
	while (pbus_mp_next(&it, &k, &v) == 1)
		ck_assert_uint_eq(it.index - 1, n++);
	ck_assert_uint_eq(n, 3);
	ck_assert_uint_eq(k.len, 42);
	ck_assert_int_eq(pbus_mp_iter_init(J("[]"), &it), 0);
	ck_assert_int_eq(pbus_mp_next(&it, NULL, NULL), 0);
	ck_assert_int_eq(pbus_mp_iter_init(J("'s'"), &it), -EINVAL);
}
END_TEST

/* ------------------------------------------------------------ rewrite */

#define LOG_MAX 32
struct log {
	unsigned n;
	char path[LOG_MAX][64];
	char str[LOG_MAX][64];
};

static int record(const struct pbus_mp_path *path, const char *s, size_t n,
		  void *arg, msgpack_packer *pk)
{
	struct log *l = arg;

	(void)pk;
	ck_assert_uint_lt(l->n, LOG_MAX);
	pbus_mp_path_format(path, l->path[l->n], sizeof(l->path[0]));
	snprintf(l->str[l->n], sizeof(l->str[0]), "%.*s", (int)n, s);
	l->n++;
	return 0;
}

static int upper(const struct pbus_mp_path *path, const char *s, size_t n,
		 void *arg, msgpack_packer *pk)
{
	char b[256];

	(void)path, (void)arg;
	ck_assert_uint_lt(n, sizeof(b));
	for (size_t i = 0; i < n; i++)
		b[i] = (char)(s[i] >= 'a' && s[i] <= 'z' ? s[i] - 32 : s[i]);
	return pbus_mp_pack_strn(pk, b, n) ?: 1;
}

/* Uppercase only strings directly under "args". */
static int upper_args(const struct pbus_mp_path *path, const char *s, size_t n,
		      void *arg, msgpack_packer *pk)
{
	if (!pbus_mp_path_match(path, "args.*"))
		return 0;
	return upper(path, s, n, arg, pk);
}

START_TEST(unchanged_rewrite_is_byte_identical_in_one_write)
{
	struct pbus_mp d = J(DOC);
	struct out *o = out_new();
	struct log l = {0};

	ck_assert_int_eq(pbus_mp_rewrite(d, record, &l, &o->pk), 0);
	ck_assert_uint_eq(o->writes, 1);
	ck_view_eq(out_view(o), d);
	ck_assert_uint_eq(l.n, 8);
}
END_TEST

START_TEST(map_keys_are_never_passed_to_the_callback)
{
	struct pbus_mp d = J("{'secret': 'v', 'a': ['x', {'key': 'y'}]}");
	struct log l = {0};

	ck_assert_int_eq(pbus_mp_rewrite(d, record, &l, &out_new()->pk), 0);
	ck_assert_uint_eq(l.n, 3);
	ck_assert_str_eq(l.str[0], "v");
	ck_assert_str_eq(l.path[0], "secret");
	ck_assert_str_eq(l.str[1], "x");
	ck_assert_str_eq(l.path[1], "a.0");
	ck_assert_str_eq(l.str[2], "y");
	ck_assert_str_eq(l.path[2], "a.1.key");
}
END_TEST

START_TEST(rewrite_replaces_strings_chosen_by_path)
{
	struct pbus_mp d = J("{'name': 'tool', 'args': {'a': 'abc', 'n': 1,"
			     " 'l': ['zz'], 'b': 'q'}, 'z': 'end'}");
	struct pbus_mp want = J("{'name': 'tool', 'args': {'a': 'ABC', 'n': 1,"
				" 'l': ['zz'], 'b': 'Q'}, 'z': 'end'}");
	struct out *o = out_new();

	ck_assert_int_eq(pbus_mp_rewrite(d, upper_args, NULL, &o->pk), 1);
	ck_view_eq(out_view(o), want);
	/* prefix, 'ABC', middle, 'Q', suffix: untouched runs in one write */
	ck_assert_uint_le(o->writes, 3 + 2 * 2);
}
END_TEST

static int grow(const struct pbus_mp_path *path, const char *s, size_t n,
		void *arg, msgpack_packer *pk)
{
	static const char big[300] = {0};

	(void)path, (void)arg;
	if (n == 1 && s[0] == 'g')
		return pbus_mp_pack_strn(pk, big, sizeof(big)) ?: 1;
	if (n == 1 && s[0] == 'i')
		return msgpack_pack_int(pk, -7000) ? -EIO : 1;
	if (n == 1 && s[0] == 'm') /* a string becomes a map */
		return msgpack_pack_map(pk, 1) || pbus_mp_pack_cstr(pk, "k") ||
			       pbus_mp_pack_cstr(pk, "v")
			   ? -EIO
			   : 1;
	return 0;
}

START_TEST(replacements_may_change_size_and_type)
{
	struct pbus_mp d = J("['g', {'x': 'i'}, 'm', 'keep']"), v, e;
	struct out *o = out_new();
	size_t n;
	int64_t x;

	ck_assert_int_eq(pbus_mp_rewrite(d, grow, NULL, &o->pk), 1);
	v = out_view(o);
	ck_assert_int_eq(pbus_mp_open(v.p, v.len, &v), 0);
	ck_assert_int_eq(pbus_mp_index(v, 0, &e), 0);
	ck_assert_int_eq(pbus_mp_str(e, NULL, &n), 0);
	ck_assert_uint_eq(n, 300);
	ck_assert_int_eq(pbus_mp_path(v, "1.x", &e), 0);
	ck_assert_int_eq(pbus_mp_int(e, &x), 0);
	ck_assert_int_eq(x, -7000);
	ck_assert_int_eq(pbus_mp_path(v, "2.k", &e), 0);
	ck_assert(pbus_mp_str_eq(e, "v"));
	ck_assert_int_eq(pbus_mp_path(v, "3", &e), 0);
	ck_assert(pbus_mp_str_eq(e, "keep"));
}
END_TEST

START_TEST(rewrites_chain_and_settle)
{
	struct pbus_mp d = J(DOC), v1, v2;
	struct out *o1 = out_new(), *o2 = out_new(), *o3 = out_new();

	ck_assert_int_eq(pbus_mp_rewrite(d, upper_args, NULL, &o1->pk), 1);
	v1 = out_view(o1);
	ck_assert_int_eq(pbus_mp_open(v1.p, v1.len, &v1), 0);
	ck_assert_int_eq(pbus_mp_rewrite(v1, upper, NULL, &o2->pk), 1);
	v2 = out_view(o2);
	ck_assert_int_eq(pbus_mp_open(v2.p, v2.len, &v2), 0);
	ck_assert_int_eq(pbus_mp_path(v2, "args.city", &v1), 0);
	ck_assert(pbus_mp_str_eq(v1, "PARIS"));
	ck_assert_int_eq(pbus_mp_path(v2, "result.content.0.text", &v1), 0);
	ck_assert(pbus_mp_str_eq(v1, "HELLO"));
	/* a third pass finds nothing to change: 0 and identical bytes
	 * (upper() still writes, so use a pattern that matches nothing) */
	ck_assert_int_eq(
	    pbus_mp_rewrite_at(v2, "nothing.here", upper, NULL, &o3->pk), 0);
	ck_view_eq(out_view(o3), v2);
}
END_TEST

START_TEST(rewrite_at_visits_only_matching_paths)
{
	struct pbus_mp d = J(DOC);
	struct log l = {0};

	ck_assert_int_eq(pbus_mp_rewrite_at(d, "result.content.*.text", record,
					    &l, &out_new()->pk),
			 0);
	ck_assert_uint_eq(l.n, 1);
	ck_assert_str_eq(l.path[0], "result.content.0.text");

	memset(&l, 0, sizeof(l));
	ck_assert_int_eq(
	    pbus_mp_rewrite_at(d, "args.**", record, &l, &out_new()->pk), 0);
	ck_assert_uint_eq(l.n, 4); /* Paris, c, f, y (n has no strings) */
	ck_assert_str_eq(l.path[1], "args.units.0");
	ck_assert_str_eq(l.path[3], "args.deep.x");

	memset(&l, 0, sizeof(l));
	ck_assert_int_eq(
	    pbus_mp_rewrite_at(d, "**", record, &l, &out_new()->pk), 0);
	ck_assert_uint_eq(l.n, 8);

	memset(&l, 0, sizeof(l));
	ck_assert_int_eq(
	    pbus_mp_rewrite_at(d, "**.type", record, &l, &out_new()->pk), 0);
	ck_assert_uint_eq(l.n, 2);

	ck_assert_int_eq(
	    pbus_mp_rewrite_at(d, "a..b", record, &l, &out_new()->pk), -EINVAL);
}
END_TEST

START_TEST(path_patterns_match_keys_indices_and_globs)
{
	struct pbus_mp d = J("{'args': 1, 'content': 2, '7': 3}"), k;
	struct pbus_mp_path p = {0};
	struct pbus_mp_iter it;
	struct pbus_mp keys[3];
	char buf[8];
	unsigned i = 0;

	ck_assert_int_eq(pbus_mp_iter_init(d, &it), 0);
	while (pbus_mp_next(&it, &k, NULL) == 1)
		keys[i++] = k;
	/* args.content.3.7 */
	p.depth = 4;
	p.seg[0].key = keys[0];
	p.seg[1].key = keys[1];
	p.seg[2].index = 3;
	p.seg[3].key = keys[2];
	ck_assert(pbus_mp_path_match(&p, "args.content.3.7"));
	ck_assert(pbus_mp_path_match(&p, "args.*.*.7"));
	ck_assert(pbus_mp_path_match(&p, "**"));
	ck_assert(pbus_mp_path_match(&p, "**.7"));
	ck_assert(pbus_mp_path_match(&p, "args.**.3.**"));
	ck_assert(pbus_mp_path_match(&p, "**.**.content.**.**"));
	ck_assert(!pbus_mp_path_match(&p, "args.*"));
	ck_assert(!pbus_mp_path_match(&p, "args.content.4.7"));
	ck_assert(!pbus_mp_path_match(&p, "args.content.3.7.*"));
	ck_assert(!pbus_mp_path_match(&p, "**.args"));
	ck_assert(!pbus_mp_path_match(&p, ""));
	ck_assert(!pbus_mp_path_match(&p, "args..x"));
	ck_assert_uint_eq(pbus_mp_path_format(&p, buf, sizeof(buf)), 16);
	ck_assert_str_eq(buf, "args.co");
	p.depth = 0;
	ck_assert(pbus_mp_path_match(&p, ""));
	ck_assert(pbus_mp_path_match(&p, "**"));
	ck_assert(!pbus_mp_path_match(&p, "*"));
	ck_assert_uint_eq(pbus_mp_path_format(&p, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "");
}
END_TEST

static int fail_eperm(const struct pbus_mp_path *path, const char *s, size_t n,
		      void *arg, msgpack_packer *pk)
{
	(void)path, (void)s, (void)arg, (void)pk;
	return n == 5 ? -EPERM : 0;
}

static int liar(const struct pbus_mp_path *path, const char *s, size_t n,
		void *arg, msgpack_packer *pk)
{
	(void)path, (void)s, (void)n;
	if (*(int *)arg == 0) /* wrote, says unchanged */
		msgpack_pack_nil(pk);
	return *(int *)arg; /* 1: says changed, wrote nothing; 2: bad */
}

START_TEST(callback_errors_and_contract_breaches_abort)
{
	struct pbus_mp d = J(DOC);
	int mode;

	ck_assert_int_eq(pbus_mp_rewrite(d, fail_eperm, NULL, &out_new()->pk),
			 -EPERM);
	for (mode = 0; mode < 3; mode++)
		ck_assert_int_eq(
		    pbus_mp_rewrite(d, liar, &mode, &out_new()->pk), -EINVAL);
	ck_assert_int_eq(pbus_mp_rewrite(d, NULL, NULL, &out_new()->pk),
			 -EINVAL);
	ck_assert_int_eq(pbus_mp_rewrite(d, upper, NULL, NULL), -EINVAL);
}
END_TEST

static unsigned sink_calls;

static msgpack_packer *sink_to(void *arg)
{
	struct out *o = arg;

	sink_calls++;
	return &o->pk;
}

static msgpack_packer *sink_none(void *arg)
{
	(void)arg;
	return NULL;
}

START_TEST(lazy_rewrite_writes_nothing_unless_changed)
{
	struct pbus_mp d = J(DOC);
	struct out *o = out_new();
	struct log l = {0};

	ck_assert_int_eq(pbus_mp_rewrite_lazy(d, NULL, record, &l, sink_to, o),
			 0);
	ck_assert_uint_eq(sink_calls, 0);
	ck_assert_uint_eq(o->writes, 0);
	ck_assert_uint_eq(l.n, 8);

	ck_assert_int_eq(
	    pbus_mp_rewrite_lazy(d, "args.*", upper, NULL, sink_to, o), 1);
	ck_assert_uint_eq(sink_calls, 1);
	struct out *want = out_new();
	ck_assert_int_eq(pbus_mp_rewrite(d, upper_args, NULL, &want->pk), 1);
	ck_view_eq(out_view(o), out_view(want));

	ck_assert_int_eq(
	    pbus_mp_rewrite_lazy(d, NULL, upper, NULL, sink_none, NULL),
	    -ENOBUFS);
	ck_assert_int_eq(
	    pbus_mp_rewrite_lazy(d, NULL, record, &l, sink_none, NULL), 0);
}
END_TEST

START_TEST(write_failures_are_enobufs)
{
	struct pbus_mp d = J(DOC);

	for (size_t lim = 1; lim < d.len + 8; lim += 7) {
		struct out *o = out_new();
		int ret;

		o->fail_at = lim;
		ret = pbus_mp_rewrite(d, upper, NULL, &o->pk);
		ck_assert_int_eq(ret, lim > d.len ? 1 : -ENOBUFS);
		o = out_new();
		o->fail_at = lim;
		ret = pbus_mp_rewrite(d, record, &(struct log){0}, &o->pk);
		ck_assert_int_eq(ret, lim >= d.len ? 0 : -ENOBUFS);
		o = out_new();
		o->fail_at = lim;
		ret = pbus_mp_set(d, "name", J("1"), &o->pk);
		ck_assert(ret == 0 || ret == -ENOBUFS);
		o = out_new();
		o->fail_at = lim;
		ret = pbus_mp_merge(d, J("{'name': 1, 'new': 2}"), &o->pk);
		ck_assert(ret == 0 || ret == -ENOBUFS);
		teardown();
		d = J(DOC);
	}
}
END_TEST

START_TEST(a_root_string_is_rewritten_at_depth_zero)
{
	struct pbus_mp d = J("'abc'");
	struct out *o = out_new();
	struct log l = {0};

	ck_assert_int_eq(pbus_mp_rewrite(d, record, &l, &out_new()->pk), 0);
	ck_assert_uint_eq(l.n, 1);
	ck_assert_str_eq(l.path[0], "");
	ck_assert_int_eq(pbus_mp_rewrite(d, upper, NULL, &o->pk), 1);
	ck_view_eq(out_view(o), J("'ABC'"));
	ck_assert_int_eq(pbus_mp_rewrite_at(d, "", upper, NULL, &out_new()->pk),
			 1);
	ck_assert_int_eq(
	    pbus_mp_rewrite_at(d, "*", upper, NULL, &out_new()->pk), 0);
}
END_TEST

/* ------------------------------------------------------------ set, merge */

START_TEST(set_replaces_in_place_and_appends)
{
	struct pbus_mp d = J("{'a': 1, 'b': 'x', 'c': [1]}");
	struct out *o = out_new(), *o2 = out_new();

	ck_assert_int_eq(pbus_mp_set(d, "b", J("{'n': null}"), &o->pk), 0);
	ck_view_eq(out_view(o), J("{'a': 1, 'b': {'n': null}, 'c': [1]}"));
	ck_assert_int_eq(pbus_mp_set(d, "z", J("true"), &o2->pk), 0);
	ck_view_eq(out_view(o2), J("{'a': 1, 'b': 'x', 'c': [1], 'z': true}"));
}
END_TEST

START_TEST(set_grows_a_fixmap_into_a_map16)
{
	struct out *src = out_new(), *o = out_new();
	struct pbus_mp d, v, e;
	char k[8];

	msgpack_pack_map(&src->pk, 15);
	for (int i = 0; i < 15; i++) {
		snprintf(k, sizeof(k), "k%d", i);
		pbus_mp_pack_cstr(&src->pk, k);
		msgpack_pack_int(&src->pk, i);
	}
	d = out_view(src);
	ck_assert_int_eq(pbus_mp_open(d.p, d.len, &d), 0);
	ck_assert_int_eq(pbus_mp_set(d, "new", J("'v'"), &o->pk), 0);
	v = out_view(o);
	ck_assert_int_eq(v.p[0], 0xde);
	ck_assert_int_eq(pbus_mp_open(v.p, v.len, &v), 0);
	ck_assert_int_eq(pbus_mp_count(v), 16);
	ck_assert_int_eq(pbus_mp_get(v, "new", &e), 0);
	ck_assert(pbus_mp_str_eq(e, "v"));
	ck_assert_int_eq(pbus_mp_get(v, "k14", &e), 0);
}
END_TEST

START_TEST(set_keeps_one_occurrence_of_the_key)
{
	struct out *src = out_new(), *o = out_new();
	struct pbus_mp d;

	msgpack_pack_map(&src->pk, 4);
	pbus_mp_pack_cstr(&src->pk, "k");
	msgpack_pack_int(&src->pk, 1);
	pbus_mp_pack_cstr(&src->pk, "a");
	msgpack_pack_int(&src->pk, 2);
	pbus_mp_pack_cstr(&src->pk, "k");
	msgpack_pack_int(&src->pk, 3);
	pbus_mp_pack_cstr(&src->pk, "b");
	msgpack_pack_int(&src->pk, 4);
	d = out_view(src);
	ck_assert_int_eq(pbus_mp_set(d, "k", J("9"), &o->pk), 0);
	ck_view_eq(out_view(o), J("{'k': 9, 'a': 2, 'b': 4}"));
}
END_TEST

START_TEST(set_on_nil_or_absent_makes_a_map_and_rejects_non_maps)
{
	struct out *o = out_new(), *o2 = out_new(), *bad = out_new();
	struct pbus_mp none = {NULL, 0}, junk = raw("\x81\xa1k", 3);

	ck_assert_int_eq(pbus_mp_set(J("null"), "k", J("1"), &o->pk), 0);
	ck_view_eq(out_view(o), J("{'k': 1}"));
	ck_assert_int_eq(pbus_mp_set(none, "k", J("[]"), &o2->pk), 0);
	ck_view_eq(out_view(o2), J("{'k': []}"));
	ck_assert_int_eq(pbus_mp_set(J("[1]"), "k", J("1"), &bad->pk), -EINVAL);
	ck_assert_int_eq(pbus_mp_set(J("{}"), "k", junk, &bad->pk), -EBADMSG);
	ck_assert_int_eq(pbus_mp_set(J("{}"), "k", none, &bad->pk), -EBADMSG);
	ck_assert_int_eq(pbus_mp_set(J("{}"), NULL, J("1"), &bad->pk), -EINVAL);
	ck_assert_uint_eq(bad->sb.size, 0); /* nothing written on error */
}
END_TEST

START_TEST(merge_overrides_and_appends_in_order)
{
	struct out *o = out_new();

	ck_assert_int_eq(pbus_mp_merge(J("{'a': 1, 'b': {'x': 1}, 'c': 3}"),
				       J("{'d': 4, 'b': 'B', 'e': [5]}"),
				       &o->pk),
			 0);
	ck_view_eq(out_view(o),
		   J("{'a': 1, 'b': 'B', 'c': 3, 'd': 4, 'e': [5]}"));
}
END_TEST

START_TEST(merge_treats_nil_and_absent_as_empty)
{
	struct pbus_mp none = {NULL, 0}, m = J("{'a': 1}");
	struct out *o1 = out_new(), *o2 = out_new(), *o3 = out_new();

	ck_assert_int_eq(pbus_mp_merge(none, m, &o1->pk), 0);
	ck_view_eq(out_view(o1), m);
	ck_assert_int_eq(pbus_mp_merge(m, J("null"), &o2->pk), 0);
	ck_view_eq(out_view(o2), m);
	ck_assert_int_eq(pbus_mp_merge(none, none, &o3->pk), 0);
	ck_view_eq(out_view(o3), J("{}"));
}
END_TEST

START_TEST(merge_writes_each_key_once)
{
	struct out *b = out_new(), *ov = out_new(), *o = out_new();
	struct pbus_mp base, over;

	/* base {k:1, a:2, k:3}, over {a:20, n:1, n:2, k:7} */
	msgpack_pack_map(&b->pk, 3);
	pbus_mp_pack_cstr(&b->pk, "k");
	msgpack_pack_int(&b->pk, 1);
	pbus_mp_pack_cstr(&b->pk, "a");
	msgpack_pack_int(&b->pk, 2);
	pbus_mp_pack_cstr(&b->pk, "k");
	msgpack_pack_int(&b->pk, 3);
	base = out_view(b);
	msgpack_pack_map(&ov->pk, 4);
	pbus_mp_pack_cstr(&ov->pk, "a");
	msgpack_pack_int(&ov->pk, 20);
	pbus_mp_pack_cstr(&ov->pk, "n");
	msgpack_pack_int(&ov->pk, 1);
	pbus_mp_pack_cstr(&ov->pk, "n");
	msgpack_pack_int(&ov->pk, 2);
	msgpack_pack_str_with_body(&ov->pk, "x", 1);
	msgpack_pack_int(&ov->pk, 7);
	over = out_view(ov);
	((uint8_t *)over.p)[over.len - 2] = 'k'; /* x -> k */
	ck_assert_int_eq(pbus_mp_merge(base, over, &o->pk), 0);
	ck_view_eq(out_view(o), J("{'k': 7, 'a': 20, 'n': 1}"));

	/* a key written as str8 is the same key as a fixstr one */
	struct pbus_mp s8 = raw("\x81\xd9\x01k\x05", 5);
	o = out_new();
	ck_assert_int_eq(pbus_mp_merge(J("{'k': 1, 'j': 2}"), s8, &o->pk), 0);
	ck_view_eq(out_view(o), J("{'k': 5, 'j': 2}"));
}
END_TEST

START_TEST(merge_rejects_non_maps_and_oversized_maps)
{
	struct out *o = out_new(), *big = out_new();
	struct pbus_mp b;

	ck_assert_int_eq(pbus_mp_merge(J("[1]"), J("{}"), &o->pk), -EINVAL);
	ck_assert_int_eq(pbus_mp_merge(J("{}"), J("'s'"), &o->pk), -EINVAL);
	msgpack_pack_map(&big->pk, PBUS_MP_MERGE_MAX + 1);
	for (int i = 0; i <= PBUS_MP_MERGE_MAX; i++) {
		msgpack_pack_int(&big->pk, i);
		msgpack_pack_nil(&big->pk);
	}
	b = out_view(big);
	ck_assert_int_eq(pbus_mp_merge(J("{}"), b, &o->pk), -E2BIG);
	ck_assert_int_eq(pbus_mp_merge(b, J("{}"), &o->pk), -E2BIG);
	ck_assert_uint_eq(o->sb.size, 0);
}
END_TEST

/* What pbus_mp_set_fn()'s callback writes: the view @arg, counting calls. */
static unsigned value_calls;

static int write_view(void *arg, msgpack_packer *pk)
{
	value_calls++;
	return pbus_mp_copy(pk, *(const struct pbus_mp *)arg);
}

static int fail_value(void *arg, msgpack_packer *pk)
{
	(void)pk;
	value_calls++;
	return *(const int *)arg;
}

/* The maps the set cases run on, made afresh: the DOC; empty, nil and
 * absent maps; 'k' six times (more than set() remembers while it checks the
 * map), with an int key 1; a str8 key 'a'. */
#define SET_CASES 6

static struct pbus_mp set_case(size_t i)
{
	switch (i) {
	case 0:
		return J(DOC);
	case 1:
		return J("{}");
	case 2:
		return J("null");
	case 3:
		return (struct pbus_mp){NULL, 0};
	case 4:
		return M(9, "'k'", "1", "1", "'int'", "'k'", "2", "'a'", "3",
			 "'k'", "4", "'k'", "5", "'k'", "6", "'z'", "7", "'k'",
			 "8");
	default:
		return raw("\x82\xd9\x01\x61\x01\xa1\x62\x02", 8);
	}
}

START_TEST(set_fn_writes_what_set_writes)
{
	static const char *const keys[] = {"k", "a", "name", "new", "", "1"};
	struct pbus_mp val, zero;
	struct out *o;

	for (size_t i = 0; i < SET_CASES; i++) {
		for (size_t j = 0; j < sizeof(keys) / sizeof(keys[0]); j++) {
			struct out *a = out_new(), *b = out_new();
			struct pbus_mp m = set_case(i);

			val = J("{'v': [1, 'two']}");
			value_calls = 0;
			ck_assert_int_eq(pbus_mp_set(m, keys[j], val, &a->pk),
					 0);
			ck_assert_int_eq(pbus_mp_set_fn(m, keys[j], write_view,
							&val, &b->pk),
					 0);
			ck_assert_uint_eq(value_calls, 1);
			ck_view_eq(out_view(a), out_view(b));
		}
		teardown();
	}
	/* the expected bytes, for the repeated key */
	o = out_new();
	zero = J("0");
	ck_assert_int_eq(
		pbus_mp_set_fn(set_case(4), "k", write_view, &zero, &o->pk), 0);
	ck_view_eq(out_view(o),
		   M(4, "'k'", "0", "1", "'int'", "'a'", "3", "'z'", "7"));
}
END_TEST

/* header_injector's answer: payload.metadata.headers merged, nested sets */
struct nest {
	struct pbus_mp md, old, add;
};

static int nest_headers(void *arg, msgpack_packer *pk)
{
	const struct nest *n = arg;

	return pbus_mp_merge(n->old, n->add, pk);
}

static int nest_md(void *arg, msgpack_packer *pk)
{
	const struct nest *n = arg;

	return pbus_mp_set_fn(n->md, "headers", nest_headers, arg, pk);
}

START_TEST(set_fn_nests_and_reports_errors)
{
	struct pbus_mp pl = J("{'uri': 'u', 'metadata': {'headers': {'A': "
			      "'1', 'B': '2'}, 'n': 1}}");
	struct nest n = {.add = J("{'B': 'b', 'C': 'c'}")};
	struct out *o = out_new(), *bad = out_new();
	int eperm = -EPERM, one = 1;

	ck_assert_int_eq(pbus_mp_get(pl, "metadata", &n.md), 0);
	ck_assert_int_eq(pbus_mp_get(n.md, "headers", &n.old), 0);
	ck_assert_int_eq(pbus_mp_set_fn(pl, "metadata", nest_md, &n, &o->pk),
			 0);
	ck_view_eq(out_view(o), J("{'uri': 'u', 'metadata': {'headers': {'A': "
				  "'1', 'B': 'b', 'C': 'c'}, 'n': 1}}"));

	/* refused maps: nothing written, the callback never called */
	value_calls = 0;
	ck_assert_int_eq(
		pbus_mp_set_fn(J("[1]"), "k", fail_value, &eperm, &bad->pk),
		-EINVAL);
	ck_assert_int_eq(pbus_mp_set_fn(raw("\x81\xa1k", 3), "k", fail_value,
					&eperm, &bad->pk),
			 -EBADMSG);
	ck_assert_int_eq(
		pbus_mp_set_fn(J("{}"), NULL, fail_value, &eperm, &bad->pk),
		-EINVAL);
	ck_assert_int_eq(pbus_mp_set_fn(J("{}"), "k", NULL, NULL, &bad->pk),
			 -EINVAL);
	ck_assert_int_eq(pbus_mp_set_fn(J("{}"), "k", fail_value, &eperm, NULL),
			 -EINVAL);
	ck_assert_uint_eq(value_calls, 0);
	ck_assert_uint_eq(bad->sb.size, 0);
	/* the callback's error as it is; a positive return is a breach */
	ck_assert_int_eq(pbus_mp_set_fn(J("{'k': 1}"), "k", fail_value, &eperm,
					&out_new()->pk),
			 -EPERM);
	ck_assert_int_eq(pbus_mp_set_fn(J("{'k': 1}"), "k", fail_value, &one,
					&out_new()->pk),
			 -EINVAL);
	ck_assert_uint_eq(value_calls, 2);
	/* write failures */
	for (size_t lim = 1; lim < 40; lim += 3) {
		struct out *f = out_new();
		int ret;

		f->fail_at = lim;
		ret = pbus_mp_set_fn(pl, "metadata", nest_md, &n, &f->pk);
		ck_assert(ret == -ENOBUFS || (ret == 0 && lim >= o->sb.size));
	}
}
END_TEST

/* ------------------------------------------------------------ merge model */

/*
 * pbus_mp_merge() restated through the public readers, naively: the bytes
 * and errors the fast one must give. Keys compare as mp.h says: strings by
 * their bytes whatever their head, anything else by its encoding.
 */
static bool ref_key_eq(struct pbus_mp a, struct pbus_mp b)
{
	const char *s, *t;
	size_t n, m;
	bool as = !pbus_mp_str(a, &s, &n), bs = !pbus_mp_str(b, &t, &m);

	if (as || bs)
		return as && bs && n == m && !memcmp(s, t, n);
	return a.len == b.len && !memcmp(a.p, b.p, a.len);
}

struct ref_map {
	unsigned n;
	struct pbus_mp k[PBUS_MP_MERGE_MAX], v[PBUS_MP_MERGE_MAX];
};

/* The checks merge makes on one map, in its order, and its pairs. */
static int ref_load(struct pbus_mp m, struct ref_map *r)
{
	struct pbus_mp_iter it;
	struct pbus_mp v;

	r->n = 0;
	if (!m.p || !m.len || (m.len == 1 && m.p[0] == 0xc0))
		return 0; /* nil and absent: empty */
	if (pbus_mp_type(m) == PBUS_MP_INVALID)
		return -EBADMSG;
	if (pbus_mp_type(m) != PBUS_MP_MAP)
		return -EINVAL;
	if (pbus_mp_count(m) > PBUS_MP_MERGE_MAX)
		return -E2BIG;
	/* the map, exactly, no deeper than a document may be */
	if (pbus_mp_open(m.p, m.len, &v))
		return -EBADMSG;
	ck_assert_int_eq(pbus_mp_iter_init(m, &it), 0);
	while (pbus_mp_next(&it, &r->k[r->n], &r->v[r->n]) > 0)
		r->n++;
	return 0;
}

/* First pair of @r among [0, @lim) with key @k, or -1. */
static int ref_find(const struct ref_map *r, unsigned lim, struct pbus_mp k)
{
	for (unsigned i = 0; i < lim; i++)
		if (ref_key_eq(r->k[i], k))
			return (int)i;
	return -1;
}

static struct ref_map ref_b, ref_o;

static int ref_merge(struct pbus_mp base, struct pbus_mp over,
		     msgpack_packer *pk)
{
	struct ref_map *b = &ref_b, *o = &ref_o;
	uint32_t count = 0;
	int ret = ref_load(base, b), j;

	if (!ret)
		ret = ref_load(over, o);
	if (ret)
		return ret;
	for (unsigned i = 0; i < b->n; i++)
		count += ref_find(b, i, b->k[i]) < 0;
	for (unsigned i = 0; i < o->n; i++)
		count += ref_find(o, i, o->k[i]) < 0 &&
			 ref_find(b, b->n, o->k[i]) < 0;
	msgpack_pack_map(pk, count);
	for (unsigned i = 0; i < b->n; i++) {
		if (ref_find(b, i, b->k[i]) >= 0)
			continue;
		j = ref_find(o, o->n, b->k[i]);
		pbus_mp_copy(pk, b->k[i]);
		pbus_mp_copy(pk, j >= 0 ? o->v[j] : b->v[i]);
	}
	for (unsigned i = 0; i < o->n; i++) {
		if (ref_find(o, i, o->k[i]) >= 0 ||
		    ref_find(b, b->n, o->k[i]) >= 0)
			continue;
		pbus_mp_copy(pk, o->k[i]);
		pbus_mp_copy(pk, o->v[i]);
	}
	return 0;
}

static void ck_merge_as_ref(struct pbus_mp base, struct pbus_mp over)
{
	struct out *got = out_new(), *want = out_new();
	int ret = pbus_mp_merge(base, over, &got->pk);

	ck_assert_int_eq(ret, ref_merge(base, over, &want->pk));
	if (ret)
		ck_assert_uint_eq(got->sb.size, 0);
	else
		ck_view_eq(out_view(got), out_view(want));
}

/* Keys that collide often: strings (some in str8 form), ints, nil, a bin
 * and an array that look like "a" or 1. */
static void pack_key(msgpack_packer *pk)
{
	static const char *const s[] = {"a", "b", "k", "ab", "", "key"};
	const char *k = s[next_rand() % 6];
	size_t n = strlen(k);

	switch (next_rand() % 10) {
	case 0:
		msgpack_pack_int(pk, (int)(next_rand() % 3));
		break;
	case 1:
		msgpack_pack_nil(pk);
		break;
	case 2:
		msgpack_pack_bin_with_body(pk, "a", 1);
		break;
	case 3:
		msgpack_pack_array(pk, 1);
		msgpack_pack_int(pk, 1);
		break;
	case 4: /* str8, as some packers write short strings */
		pk->callback(pk->data, (const char[]){(char)0xd9, (char)n}, 2);
		pk->callback(pk->data, k, n);
		break;
	default:
		msgpack_pack_str_with_body(pk, k, n);
		break;
	}
}

static void pack_value(msgpack_packer *pk, unsigned depth)
{
	switch (next_rand() % (depth ? 3 : 5)) {
	case 0:
		msgpack_pack_int64(pk, (int64_t)(next_rand() % 100000) - 50);
		break;
	case 1:
		msgpack_pack_str_with_body(pk, "value", next_rand() % 6);
		break;
	case 2:
		msgpack_pack_nil(pk);
		break;
	case 3:
		msgpack_pack_array(pk, 2);
		pack_value(pk, depth + 1);
		pack_value(pk, depth + 1);
		break;
	default:
		msgpack_pack_map(pk, 1);
		pack_key(pk);
		pack_value(pk, depth + 1);
		break;
	}
}

/* A map of @n pairs with colliding keys; big ones get int keys only. */
static struct pbus_mp gen_map(unsigned n)
{
	struct out *o = out_new();

	msgpack_pack_map(&o->pk, n);
	for (unsigned i = 0; i < n; i++) {
		if (n > 64)
			msgpack_pack_int(&o->pk,
					 (int)(next_rand() % (n + n / 2)));
		else
			pack_key(&o->pk);
		pack_value(&o->pk, 0);
	}
	return out_view(o);
}

START_TEST(merge_matches_the_model_on_generated_maps)
{
	static const unsigned small[] = {0, 1, 2, 3, 5, 8, 16, 33};
	static const unsigned big[] = {300, PBUS_MP_MERGE_MAX,
				       PBUS_MP_MERGE_MAX + 1};
	unsigned seen[4] = {0}; /* 0, -EBADMSG, -EINVAL, -E2BIG */

	for (int round = 0; round < 3000; round++) {
		struct pbus_mp b = gen_map(small[next_rand() % 8]),
			       o = gen_map(small[next_rand() % 8]);
		struct out *out = out_new();
		int ret;

		if (round % 40 == 0)
			b = gen_map(big[next_rand() % 3]);
		if (round % 60 == 0)
			o = gen_map(big[next_rand() % 3]);
		if (round % 7 == 0) /* nil or absent */
			b = round % 2 ? J("null") : (struct pbus_mp){NULL, 0};
		if (round % 13 == 0)
			o = J("[1, 2]");
		if (round % 11 == 0 && o.len > 1) { /* malformed */
			((uint8_t *)o.p)[next_rand() % o.len] =
				(uint8_t)next_rand();
			o.len -= round % 2;
		}
		ck_merge_as_ref(b, o);
		ck_merge_as_ref(o, b);
		ret = pbus_mp_merge(b, o, &out->pk);
		seen[ret == 0	       ? 0
		     : ret == -EBADMSG ? 1
		     : ret == -EINVAL  ? 2
				       : 3]++;
		teardown();
	}
	for (int i = 0; i < 4; i++)
		ck_assert_uint_gt(seen[i], 10);
}
END_TEST

START_TEST(merge_of_big_maps_with_repeated_keys)
{
	struct out *b = out_new(), *o = out_new(), *got = out_new();
	struct pbus_mp base, over, m, k, v;
	struct pbus_mp_iter it;

	/* every int key twice in base; over overlaps half of them */
	msgpack_pack_map(&b->pk, PBUS_MP_MERGE_MAX);
	msgpack_pack_map(&o->pk, PBUS_MP_MERGE_MAX);
	for (int i = 0; i < PBUS_MP_MERGE_MAX; i++) {
		msgpack_pack_int(&b->pk, i % 256);
		msgpack_pack_int(&b->pk, i);
		msgpack_pack_int(&o->pk, 128 + i);
		msgpack_pack_int(&o->pk, -i);
	}
	base = out_view(b);
	over = out_view(o);
	ck_merge_as_ref(base, over);
	ck_assert_int_eq(pbus_mp_merge(base, over, &got->pk), 0);
	m = out_view(got);
	ck_assert_int_eq(pbus_mp_open(m.p, m.len, &m), 0);
	ck_assert_int_eq(pbus_mp_count(m), 128 + PBUS_MP_MERGE_MAX);
	ck_assert_int_eq(pbus_mp_iter_init(m, &it), 0);
	ck_assert_int_eq(pbus_mp_next(&it, &k, &v), 1); /* 0: base's first */
	ck_view_eq(k, J("0"));
	ck_view_eq(v, J("0"));
	ck_merge_as_ref(over, base);
	ck_merge_as_ref(base, base);
}
END_TEST

START_TEST(merge_compares_non_string_keys_by_their_bytes)
{
	struct out *o = out_new();
	/* 1 and '1', nil, [1], 1.5: all different keys */
	struct pbus_mp base =
		M(4, "1", "'int'", "'1'", "'str'", "null", "0", "[1]", "'arr'");
	struct pbus_mp over = M(4, "'1'", "'STR'", "1.5", "'float'", "[1]",
				"'ARR'", "1", "'INT'");

	ck_assert_int_eq(pbus_mp_merge(base, over, &o->pk), 0);
	ck_view_eq(out_view(o), M(5, "1", "'INT'", "'1'", "'STR'", "null", "0",
				  "[1]", "'ARR'", "1.5", "'float'"));
	ck_merge_as_ref(base, over);
	/* a bin "a" is not the string "a" */
	ck_merge_as_ref(raw("\x81\xc4\x01\x61\x01", 5), J("{'a': 2}"));
	o = out_new();
	ck_assert_int_eq(pbus_mp_merge(raw("\x81\xc4\x01\x61\x01", 5),
				       J("{'a': 2}"), &o->pk),
			 0);
	ck_assert_int_eq(pbus_mp_count(out_view(o)), 2);
}
END_TEST

START_TEST(merge_errors_come_in_input_order)
{
	struct pbus_mp bad = raw("\x82\xa1\x61\x01\xa1", 5); /* cut short */
	struct pbus_mp arr = J("[1]"), none = {NULL, 0};
	struct pbus_mp deep = J("{'a': 1}");
	struct out *o = out_new();

	/* the first map's problem wins; a non-map is refused unread */
	ck_assert_int_eq(pbus_mp_merge(bad, arr, &o->pk), -EBADMSG);
	ck_assert_int_eq(pbus_mp_merge(arr, bad, &o->pk), -EINVAL);
	ck_assert_int_eq(pbus_mp_merge(none, bad, &o->pk), -EBADMSG);
	ck_assert_int_eq(pbus_mp_merge(raw("\x91\xc1", 2), bad, &o->pk),
			 -EINVAL);
	ck_assert_int_eq(pbus_mp_merge(deep, J("{}"), NULL), -EINVAL);
	/* trailing bytes after the last pair */
	ck_assert_int_eq(
		pbus_mp_merge(raw("\x81\xa1\x61\x01\xc0", 5), deep, &o->pk),
		-EBADMSG);
	ck_assert_uint_eq(o->sb.size, 0);
	ck_merge_as_ref(bad, arr);
	ck_merge_as_ref(arr, bad);
	ck_merge_as_ref(raw("\x81\xa1\x61\x01\xc0", 5), deep);
}
END_TEST

/* ------------------------------------------------------------ packing */

START_TEST(pack_helpers_write_strings_nil_and_copies)
{
	struct out *o = out_new();
	struct pbus_mp d = J("{'x': [1, 2]}"), v;

	msgpack_pack_array(&o->pk, 4);
	ck_assert_int_eq(pbus_mp_pack_cstr(&o->pk, "hi"), 0);
	ck_assert_int_eq(pbus_mp_pack_strn(&o->pk, "hello", 4), 0);
	ck_assert_int_eq(pbus_mp_pack_cstr(&o->pk, NULL), 0);
	ck_assert_int_eq(pbus_mp_get(d, "x", &v), 0);
	ck_assert_int_eq(pbus_mp_copy(&o->pk, v), 0);
	ck_view_eq(out_view(o), J("['hi', 'hell', null, [1, 2]]"));
	o = out_new();
	o->fail_at = 1;
	ck_assert_int_eq(pbus_mp_copy(&o->pk, d), -ENOBUFS);
	ck_assert_int_eq(pbus_mp_pack_cstr(&o->pk, "x"), -ENOBUFS);
}
END_TEST

START_TEST(strings_pack_as_msgpack_c_packs_them)
{
	/* the head widths' edges, and the one-write limit */
	static const size_t lens[] = {0,  1,   31,  32,	 61,	62,   63,
				      64, 255, 256, 300, 65535, 65536};
	char *s = keep(malloc(65536));

	memset(s, 'x', 65536);
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		struct out *ours = out_new(), *theirs = out_new();

		ck_assert_int_eq(pbus_mp_pack_strn(&ours->pk, s, lens[i]), 0);
		msgpack_pack_str_with_body(&theirs->pk, s, lens[i]);
		ck_view_eq(out_view(ours), out_view(theirs));
		/* short strings, keys mostly, in one write */
		ck_assert_uint_eq(ours->writes, lens[i] <= 62 ? 1 : 2);
	}
}
END_TEST

START_TEST(mbuf_bytes_is_what_was_packed_unchecked)
{
	char mem[8];
	struct pbus_mbuf b;
	struct pbus_mp v, w;
	msgpack_packer *pk = pbus_mbuf_init(&b, mem, sizeof(mem));

	ck_assert_int_eq(pbus_mbuf_bytes(&b, &v), -EBADMSG); /* nothing */
	msgpack_pack_map(pk, 2); /* half a map: not checked here */
	pbus_mp_pack_cstr(pk, "k");
	msgpack_pack_int(pk, 1);
	ck_assert_int_eq(pbus_mbuf_bytes(&b, &v), 0);
	ck_assert(v.p == b.p && v.len == 4);
	ck_assert_int_eq(pbus_mbuf_view(&b, &w), -EBADMSG);
	/* ... but by the writers that take it */
	ck_assert_int_eq(pbus_mp_merge(J("{}"), v, &out_new()->pk), -EBADMSG);
	pbus_mp_pack_cstr(pk, "a long enough key to spill to the heap");
	msgpack_pack_nil(pk);
	ck_assert_int_eq(pbus_mbuf_bytes(&b, &v), 0);
	ck_assert_int_eq(pbus_mbuf_view(&b, &w), 0);
	ck_view_eq(v, w);
	ck_assert(v.p != (const uint8_t *)mem);
	pbus_mbuf_fini(&b);
}
END_TEST

/* ------------------------------------------------------------ suite */

static void add(Suite *s, const char *name, const TTest *const *tests)
{
	TCase *tc = tcase_create(name);

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	for (; *tests; tests++)
		tcase_add_test(tc, *tests);
	suite_add_tcase(s, tc);
}

int main(void)
{
	const TTest *const roundtrip[] = {
	    integers_of_every_width_round_trip,
	    floats_bools_nil_round_trip,
	    str_bin_ext_of_every_width_round_trip,
	    arrays_and_maps_of_every_width_round_trip,
	    non_minimal_encodings_are_read,
	    NULL,
	};
	const TTest *const malformed[] = {
	    every_truncation_of_a_nested_document_is_ebadmsg,
	    huge_declared_lengths_fail_fast,
	    nesting_deeper_than_64_is_ebadmsg,
	    trailing_bytes_need_the_flag,
	    hand_made_views_never_read_past_their_length,
	    seeded_mutations_never_crash,
	    random_bytes_never_crash,
	    every_head_is_sized_as_msgpack_c_sizes_it,
	    NULL,
	};
	const TTest *const lookup[] = {
	    get_finds_values_and_reports_missing_keys,
	    get_compares_key_bytes_exactly,
	    path_walks_maps_and_arrays,
	    path_misses_are_enoent_and_bad_syntax_einval,
	    index_and_count,
	    get_keys_finds_each_first_occurrence_in_one_pass,
	    get_keys_reads_more_keys_than_one_pass_holds,
	    get_keys_refuses_non_maps_and_malformed_maps,
	    NULL,
	};
	const TTest *const iter[] = {
	    iterating_a_map_yields_pairs_in_order,
	    iterating_an_array_leaves_key_alone,
	    NULL,
	};
	const TTest *const rewrite[] = {
	    unchanged_rewrite_is_byte_identical_in_one_write,
	    map_keys_are_never_passed_to_the_callback,
	    rewrite_replaces_strings_chosen_by_path,
	    replacements_may_change_size_and_type,
	    rewrites_chain_and_settle,
	    rewrite_at_visits_only_matching_paths,
	    path_patterns_match_keys_indices_and_globs,
	    callback_errors_and_contract_breaches_abort,
	    lazy_rewrite_writes_nothing_unless_changed,
	    write_failures_are_enobufs,
	    a_root_string_is_rewritten_at_depth_zero,
	    NULL,
	};
	const TTest *const setmerge[] = {
	    set_replaces_in_place_and_appends,
	    set_grows_a_fixmap_into_a_map16,
	    set_keeps_one_occurrence_of_the_key,
	    set_on_nil_or_absent_makes_a_map_and_rejects_non_maps,
	    merge_overrides_and_appends_in_order,
	    merge_treats_nil_and_absent_as_empty,
	    merge_writes_each_key_once,
	    merge_rejects_non_maps_and_oversized_maps,
	    set_fn_writes_what_set_writes,
	    set_fn_nests_and_reports_errors,
	    merge_matches_the_model_on_generated_maps,
	    merge_of_big_maps_with_repeated_keys,
	    merge_compares_non_string_keys_by_their_bytes,
	    merge_errors_come_in_input_order,
	    pack_helpers_write_strings_nil_and_copies,
	    strings_pack_as_msgpack_c_packs_them,
	    mbuf_bytes_is_what_was_packed_unchecked,
	    NULL,
	};
	Suite *s = suite_create("mp");
	SRunner *sr;
	int failed;

	add(s, "roundtrip", roundtrip);
	add(s, "malformed", malformed);
	add(s, "lookup", lookup);
	add(s, "iter", iter);
	add(s, "rewrite", rewrite);
	add(s, "set_merge", setmerge);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
