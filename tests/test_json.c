// SPDX-License-Identifier: MIT
/*
 * Tests for JSON <-> msgpack (bus/json.c, include/pbus/json.h): every JSON
 * type, nesting, key order, unicode, the int64 edges, reals that must come
 * back bit for bit, the msgpack types JSON has no spelling for, and errors.
 * Most cases go text -> msgpack -> text and compare with the expected text.
 */
#include <pbus/json.h>

#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

/* ------------------------------------------------------------ helpers */

static msgpack_sbuffer sb;

/* Parse @text into the msgpack buffer `sb`; returns what pbus_json_to_mp()
 * returned. */
static int to_mp(const char *text, char *err)
{
	msgpack_packer pk;

	msgpack_sbuffer_destroy(&sb);
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	return pbus_json_to_mp(text, strlen(text), &pk, err);
}

static struct pbus_mp view(void)
{
	struct pbus_mp v = {0};

	ck_assert_int_eq(pbus_mp_open(sb.data, sb.size, &v), 0);
	return v;
}

/* The JSON text of the msgpack in `sb` (static buffer). */
static const char *to_text(void)
{
	static char *last;
	size_t n = 0;
	char *s = NULL;

	ck_assert_int_eq(pbus_mp_to_json(view(), 0, &s, &n), 0);
	ck_assert_uint_eq(n, strlen(s));
	free(last);
	last = s;
	return s;
}

/* @in -> msgpack -> JSON text must read @out; the json_t route too. */
static void round_trip(const char *in, const char *out)
{
	json_t *a, *b;
	char err[PBUS_JSON_ERR_MAX] = "";
	int ret = to_mp(in, err);

	ck_assert_msg(ret == 0, "%s: %d %s", in, ret, err);
	ck_assert_str_eq(to_text(), out);
	/* json_t route: same value as jansson's own parse of @in */
	ck_assert_int_eq(pbus_json_from_mp(view(), 0, &a), 0);
	b = json_loads(in, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	ck_assert_ptr_nonnull(b);
	ck_assert_msg(json_equal(a, b), "json_t differs for %s", in);
	json_decref(a);
	json_decref(b);
}

static msgpack_packer *fresh(void)
{
	static msgpack_packer pk;

	msgpack_sbuffer_destroy(&sb);
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	return &pk;
}

/* pbus_mp_to_json() and pbus_json_from_mp() of `sb` both fail with @err. */
static void both_fail(unsigned flags, int err)
{
	char *s = (char *)0x1;
	json_t *j = (json_t *)0x1;

	ck_assert_int_eq(pbus_mp_to_json(view(), flags, &s, NULL), err);
	ck_assert_ptr_eq(s, (char *)0x1);
	ck_assert_int_eq(pbus_json_from_mp(view(), flags, &j), err);
	ck_assert_ptr_eq(j, (json_t *)0x1);
}

/* ------------------------------------------------------------ types */

START_TEST(every_json_type_round_trips)
{
	round_trip("null", "null");
	round_trip("true", "true");
	round_trip("false", "false");
	round_trip("0", "0");
	round_trip("-17", "-17");
	round_trip("1.5", "1.5");
	round_trip("\"\"", "\"\"");
	round_trip("\"text\"", "\"text\"");
	round_trip("[]", "[]");
	round_trip("{}", "{}");
	round_trip(" [1, \"a\", null, true, 2.25, {\"k\": []}] ",
		   "[1,\"a\",null,true,2.25,{\"k\":[]}]");
}
END_TEST

START_TEST(json_types_become_the_expected_msgpack_types)
{
	struct pbus_mp v, x;

	ck_assert_int_eq(to_mp("{\"n\":null,\"b\":false,\"i\":-3,\"r\":2.0,"
			       "\"s\":\"x\",\"a\":[1],\"o\":{}}",
			       NULL),
			 0);
	v = view();
	ck_assert_int_eq(pbus_mp_type(v), PBUS_MP_MAP);
	pbus_mp_get(v, "n", &x);
	ck_assert_int_eq(pbus_mp_type(x), PBUS_MP_NIL);
	pbus_mp_get(v, "b", &x);
	ck_assert_int_eq(pbus_mp_type(x), PBUS_MP_BOOL);
	pbus_mp_get(v, "i", &x);
	ck_assert_int_eq(pbus_mp_type(x), PBUS_MP_INT);
	ck_assert_uint_eq(x.len, 1); /* smallest encoding: negative fixint */
	pbus_mp_get(v, "r", &x);
	ck_assert_int_eq(pbus_mp_type(x), PBUS_MP_FLOAT);
	ck_assert_uint_eq(x.len, 9); /* float64 */
	pbus_mp_get(v, "s", &x);
	ck_assert_int_eq(pbus_mp_type(x), PBUS_MP_STR);
	pbus_mp_get(v, "a", &x);
	ck_assert_int_eq(pbus_mp_type(x), PBUS_MP_ARRAY);
	pbus_mp_get(v, "o", &x);
	ck_assert_int_eq(pbus_mp_type(x), PBUS_MP_MAP);
}
END_TEST

START_TEST(nested_documents_round_trip)
{
	round_trip("{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\","
		   "\"params\":{\"name\":\"echo\",\"arguments\":{\"a\":[{\"b\":"
		   "[[1,2],[3,{\"c\":null}]]}],\"d\":{\"e\":{\"f\":{}}}}}}",
		   "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\","
		   "\"params\":{\"name\":\"echo\",\"arguments\":{\"a\":[{\"b\":"
		   "[[1,2],[3,{\"c\":null}]]}],\"d\":{\"e\":{\"f\":{}}}}}}");
}
END_TEST

START_TEST(object_key_order_is_kept_both_ways)
{
	const char *order[] = {"zeta", "alpha", "mid", "_", "Beta"};
	struct pbus_mp_iter it;
	struct pbus_mp k;
	json_t *j;
	const char *key;
	json_t *val;
	int i = 0;

	round_trip("{\"zeta\":1,\"alpha\":2,\"mid\":3,\"_\":4,\"Beta\":5}",
		   "{\"zeta\":1,\"alpha\":2,\"mid\":3,\"_\":4,\"Beta\":5}");
	ck_assert_int_eq(pbus_mp_iter_init(view(), &it), 0);
	while (pbus_mp_next(&it, &k, NULL) > 0)
		ck_assert(pbus_mp_str_eq(k, order[i++]));
	ck_assert_int_eq(i, 5);
	ck_assert_int_eq(pbus_json_from_mp(view(), 0, &j), 0);
	i = 0;
	json_object_foreach(j, key, val) ck_assert_str_eq(key, order[i++]);
	json_decref(j);
}
END_TEST

/* ------------------------------------------------------------ strings */

START_TEST(unicode_survives_and_escapes_are_decoded)
{
	const char *s;
	size_t n;

	round_trip("\"h\xc3\xa9llo \xe2\x98\x83 \xf0\x9f\x98\x80\"",
		   "\"h\xc3\xa9llo \xe2\x98\x83 \xf0\x9f\x98\x80\"");
	/* \u escapes, a surrogate pair included, become UTF-8 */
	round_trip("\"\\u00e9\\u2603\\ud83d\\ude00\"",
		   "\"\xc3\xa9\xe2\x98\x83\xf0\x9f\x98\x80\"");
	ck_assert_int_eq(pbus_mp_str(view(), &s, &n), 0);
	ck_assert_uint_eq(n, 2 + 3 + 4);
	/* non-ASCII keys */
	round_trip("{\"cl\xc3\xa9\":\"\xe6\x97\xa5\xe6\x9c\xac\"}",
		   "{\"cl\xc3\xa9\":\"\xe6\x97\xa5\xe6\x9c\xac\"}");
}
END_TEST

START_TEST(control_characters_and_quotes_are_escaped)
{
	round_trip("\"a\\\"b\\\\c\\/d\\n\\r\\t\\b\\f\\u0001\\u001f\"",
		   "\"a\\\"b\\\\c/d\\n\\r\\t\\b\\f\\u0001\\u001f\"");
}
END_TEST

START_TEST(nul_inside_a_string_is_kept)
{
	const char *s;
	size_t n;

	round_trip("\"a\\u0000b\"", "\"a\\u0000b\"");
	ck_assert_int_eq(pbus_mp_str(view(), &s, &n), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_int_eq(memcmp(s, "a\0b", 3), 0);
}
END_TEST

START_TEST(invalid_utf8_in_msgpack_is_refused)
{
	msgpack_packer *pk = fresh();

	msgpack_pack_str_with_body(pk, "a\xff", 2);
	both_fail(0, -EILSEQ);
	pk = fresh();
	msgpack_pack_str_with_body(pk, "\xed\xa0\x80", 3); /* a surrogate */
	both_fail(0, -EILSEQ);
	pk = fresh();
	msgpack_pack_str_with_body(pk, "\xc0\xaf", 2); /* overlong '/' */
	both_fail(0, -EILSEQ);
	pk = fresh();
	msgpack_pack_map(pk, 1);
	msgpack_pack_str_with_body(pk, "\xe2\x98", 2); /* truncated key */
	msgpack_pack_nil(pk);
	both_fail(0, -EILSEQ);
}
END_TEST

/* ------------------------------------------------------------ numbers */

START_TEST(int64_edges_are_exact)
{
	round_trip("9223372036854775807", "9223372036854775807");
	round_trip("-9223372036854775808", "-9223372036854775808");
	round_trip("[4294967296,-4294967297,255,-33]",
		   "[4294967296,-4294967297,255,-33]");
}
END_TEST

START_TEST(integers_beyond_int64_are_refused_not_rounded)
{
	char err[PBUS_JSON_ERR_MAX] = "";

	ck_assert_int_eq(to_mp("9223372036854775808", err), -ERANGE);
	ck_assert_ptr_nonnull(strstr(err, "line 1"));
	ck_assert_int_eq(to_mp("[-9223372036854775809]", NULL), -ERANGE);
}
END_TEST

START_TEST(msgpack_uint64_is_exact_in_text_and_erange_in_json_t)
{
	msgpack_packer *pk = fresh();
	json_t *j = NULL;

	msgpack_pack_uint64(pk, UINT64_MAX);
	ck_assert_str_eq(to_text(), "18446744073709551615");
	ck_assert_int_eq(pbus_json_from_mp(view(), 0, &j), -ERANGE);
	ck_assert_ptr_null(j);
}
END_TEST

static double real_back(const char *text)
{
	struct pbus_mp v;
	double d;

	ck_assert_int_eq(to_mp(text, NULL), 0);
	v = view();
	ck_assert_int_eq(pbus_mp_type(v), PBUS_MP_FLOAT);
	ck_assert_int_eq(pbus_mp_float(v, &d), 0);
	return d;
}

START_TEST(reals_come_back_bit_for_bit_in_shortest_form)
{
	static const struct {
		const char *in, *out;
	} t[] = {
		{"0.1", "0.1"},
		{"1.0", "1.0"},
		{"-0.0", "-0.0"},
		{"3.141592653589793", "3.141592653589793"},
		{"1e300", "1e+300"},
		{"5e-324", "5e-324"},
		{"1.7976931348623157e308", "1.7976931348623157e+308"},
		{"123456789.125", "123456789.125"},
		{"2.5E-3", "0.0025"},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		double want = strtod(t[i].in, NULL), got = real_back(t[i].in);

		ck_assert_int_eq(memcmp(&want, &got, sizeof(got)), 0);
		ck_assert_str_eq(to_text(), t[i].out);
		round_trip(t[i].in, t[i].out);
		/* and the text we print reads back as the same double */
		got = real_back(t[i].out);
		ck_assert_int_eq(memcmp(&want, &got, sizeof(got)), 0);
	}
}
END_TEST

START_TEST(float32_prints_its_own_shortest_form)
{
	msgpack_packer *pk = fresh();

	msgpack_pack_float(pk, 0.1f);
	ck_assert_str_eq(to_text(), "0.1");
	pk = fresh();
	msgpack_pack_float(pk, 16777216.0f);
	ck_assert_str_eq(to_text(), "16777216.0");
}
END_TEST

START_TEST(nan_and_infinity_have_no_json_spelling)
{
	msgpack_pack_double(fresh(), NAN);
	both_fail(0, -EDOM);
	msgpack_pack_double(fresh(), -INFINITY);
	both_fail(0, -EDOM);
}
END_TEST

/* ------------------------------------------------------------ msgpack-only */

START_TEST(bin_is_base64_with_the_flag_and_refused_without)
{
	static const struct {
		const char *in, *out;
	} t[] = {
		{"", "\"\""},
		{"f", "\"Zg==\""},
		{"fo", "\"Zm8=\""},
		{"foo", "\"Zm9v\""},
		{"foob", "\"Zm9vYg==\""},
		{"\xff\xfe\x00", "\"//4A\""},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		size_t n = i == 5 ? 3 : strlen(t[i].in);
		char *s = NULL;
		json_t *j;

		msgpack_pack_bin_with_body(fresh(), t[i].in, n);
		both_fail(0, -EINVAL);
		ck_assert_int_eq(
			pbus_mp_to_json(view(), PBUS_JSON_BIN_BASE64, &s, NULL),
			0);
		ck_assert_str_eq(s, t[i].out);
		free(s);
		ck_assert_int_eq(
			pbus_json_from_mp(view(), PBUS_JSON_BIN_BASE64, &j), 0);
		s = json_dumps(j, JSON_ENCODE_ANY);
		ck_assert_str_eq(s, t[i].out);
		free(s);
		json_decref(j);
	}
}
END_TEST

START_TEST(ext_and_non_string_keys_are_refused)
{
	msgpack_packer *pk = fresh();

	msgpack_pack_ext_with_body(pk, "abcd", 4, 5);
	both_fail(PBUS_JSON_BIN_BASE64, -EINVAL);
	pk = fresh();
	msgpack_pack_map(pk, 1);
	msgpack_pack_int(pk, 1);
	msgpack_pack_true(pk);
	both_fail(0, -EINVAL);
}
END_TEST

START_TEST(a_repeated_msgpack_key_keeps_its_first_value)
{
	msgpack_packer *pk = fresh();
	json_t *j;

	msgpack_pack_map(pk, 3);
	msgpack_pack_str_with_body(pk, "a", 1);
	msgpack_pack_int(pk, 1);
	msgpack_pack_str_with_body(pk, "b", 1);
	msgpack_pack_int(pk, 2);
	msgpack_pack_str_with_body(pk, "a", 1);
	msgpack_pack_int(pk, 3);
	ck_assert_str_eq(to_text(), "{\"a\":1,\"b\":2}");
	ck_assert_int_eq(pbus_json_from_mp(view(), 0, &j), 0);
	ck_assert_int_eq(json_integer_value(json_object_get(j, "a")), 1);
	ck_assert_uint_eq(json_object_size(j), 2);
	json_decref(j);
}
END_TEST

/* ------------------------------------------------------------ errors */

START_TEST(invalid_json_is_ebadmsg_with_a_location)
{
	static const char *bad[] = {"",	     "{",	"[1,]",
				    "nul",   "{\"a\"}", "\"\\x\"",
				    "[1] 2", "{'a':1}", "\"\xff\""};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char err[PBUS_JSON_ERR_MAX] = "";

		ck_assert_msg(to_mp(bad[i], err) == -EBADMSG, "%s", bad[i]);
		ck_assert_msg(!strncmp(err, "line ", 5), "%s: '%s'", bad[i],
			      err);
	}
}
END_TEST

static char *nest(int depth)
{
	char *s = malloc((size_t)depth * 2 + 1);

	for (int i = 0; i < depth; i++) {
		s[i] = '[';
		s[depth + i] = ']';
	}
	s[depth * 2] = 0;
	return s;
}

START_TEST(nesting_is_bounded_by_the_msgpack_depth)
{
	char *ok = nest(PBUS_MP_MAX_DEPTH), *deep = nest(PBUS_MP_MAX_DEPTH + 1);
	char err[PBUS_JSON_ERR_MAX] = "";

	round_trip(ok, ok);
	ck_assert_int_eq(to_mp(deep, err), -EBADMSG);
	ck_assert_ptr_nonnull(strstr(err, "deep"));
	free(ok);
	free(deep);
}
END_TEST

START_TEST(malformed_msgpack_is_ebadmsg)
{
	static const uint8_t trunc[] = {0x82, 0xa1, 'a'};
	struct pbus_mp v = {trunc, sizeof(trunc)};
	char *s = NULL;
	json_t *j = NULL;

	ck_assert_int_eq(pbus_mp_to_json(v, 0, &s, NULL), -EBADMSG);
	ck_assert_int_eq(pbus_json_from_mp(v, 0, &j), -EBADMSG);
	ck_assert_int_eq(pbus_json_pack(NULL, json_null()), -EINVAL);
}
END_TEST

static int fail_write(void *data, const char *buf, size_t len)
{
	(void)data;
	(void)buf;
	(void)len;
	return -1;
}

START_TEST(a_write_failure_is_enobufs)
{
	msgpack_packer pk;
	json_t *j = json_pack("{s:[i,s]}", "k", 1, "v");

	msgpack_packer_init(&pk, NULL, fail_write);
	ck_assert_int_eq(pbus_json_pack(&pk, j), -ENOBUFS);
	ck_assert_int_eq(pbus_json_to_mp("[1]", 3, &pk, NULL), -ENOBUFS);
	json_decref(j);
}
END_TEST

Suite *json_suite(void);

Suite *json_suite(void)
{
	Suite *s = suite_create("json");
	TCase *tc;

	tc = tcase_create("types");
	tcase_add_test(tc, every_json_type_round_trips);
	tcase_add_test(tc, json_types_become_the_expected_msgpack_types);
	tcase_add_test(tc, nested_documents_round_trip);
	tcase_add_test(tc, object_key_order_is_kept_both_ways);
	suite_add_tcase(s, tc);

	tc = tcase_create("strings");
	tcase_add_test(tc, unicode_survives_and_escapes_are_decoded);
	tcase_add_test(tc, control_characters_and_quotes_are_escaped);
	tcase_add_test(tc, nul_inside_a_string_is_kept);
	tcase_add_test(tc, invalid_utf8_in_msgpack_is_refused);
	suite_add_tcase(s, tc);

	tc = tcase_create("numbers");
	tcase_add_test(tc, int64_edges_are_exact);
	tcase_add_test(tc, integers_beyond_int64_are_refused_not_rounded);
	tcase_add_test(tc,
		       msgpack_uint64_is_exact_in_text_and_erange_in_json_t);
	tcase_add_test(tc, reals_come_back_bit_for_bit_in_shortest_form);
	tcase_add_test(tc, float32_prints_its_own_shortest_form);
	tcase_add_test(tc, nan_and_infinity_have_no_json_spelling);
	suite_add_tcase(s, tc);

	tc = tcase_create("msgpack_only");
	tcase_add_test(tc, bin_is_base64_with_the_flag_and_refused_without);
	tcase_add_test(tc, ext_and_non_string_keys_are_refused);
	tcase_add_test(tc, a_repeated_msgpack_key_keeps_its_first_value);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_test(tc, invalid_json_is_ebadmsg_with_a_location);
	tcase_add_test(tc, nesting_is_bounded_by_the_msgpack_depth);
	tcase_add_test(tc, malformed_msgpack_is_ebadmsg);
	tcase_add_test(tc, a_write_failure_is_enobufs);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(json_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
