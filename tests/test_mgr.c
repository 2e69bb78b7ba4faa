// SPDX-License-Identifier: MIT
/*
 * Plugin manager tests (include/pbus/mgr.h, docs/modes.md, PARITY.md 2-3).
 * Each test builds a YAML config in memory, opens a real manager that spawns
 * build/tests/agent-ctl once per plugin, runs chains and closes the manager,
 * which stops the agents. agent-ctl's `config:` says what each plugin does;
 * every plugin appends a line per call to <tmpdir>/<name> (count_file), so a
 * test can prove which plugins were called. Every wait has a deadline.
 *
 * Debug one test: CK_FORK=no CK_RUN_CASE=modes build/mt/tests/test_mgr
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <pbus/pbus.h>
#include <pbus/json.h>
#include <pbus/mgr.h>
#include <pbus/mp.h>

#include "helpers.h"

#define ALL_HOOKS                                                              \
	"[prompt_pre_fetch, prompt_post_fetch, tool_pre_invoke, "              \
	"tool_post_invoke, resource_pre_fetch, resource_post_fetch, "          \
	"agent_pre_invoke, agent_post_invoke, http_pre_request, "              \
	"http_post_request, http_auth_resolve_user, "                          \
	"http_auth_check_permission]"

#define TOOL_PRE PBUS_HOOK_TOOL_PRE_INVOKE
#define TOOL_POST PBUS_HOOK_TOOL_POST_INVOKE

/* Prefix of this run's temporary directories (swept by the teardown). */
static char tmp_prefix[64];

/* ------------------------------------------------------------ fixtures */

/* One plugin entry; zero fields take the defaults. */
struct pl {
	const char *name;
	int prio;	      /* 0: 100 */
	const char *mode;     /* NULL: not written (enforce) */
	const char *on_error; /* NULL: not written */
	const char *cfg;      /* agent-ctl config: the body of a flow map */
	const char *extra;    /* more keys for the entry, one YAML line */
	const char *hooks;    /* NULL: all 12 */
	int down;	      /* no `command:`: the agent never starts */
};

struct mt {
	struct pbus_config *cfg;
	struct pbus_mgr *m;
	char sock[108];
	char dir[128];
};

static void rm_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char p[PATH_MAX];

	if (!d)
		return;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		if (!strcmp(e->d_name, "sock")) { /* a failed test's socket */
			char s[PATH_MAX];
			ssize_t n = readlink(p, s, sizeof(s) - 1);

			if (n > 0) {
				s[n] = 0;
				unlink(s);
			}
		}
		unlink(p);
	}
	closedir(d);
	rmdir(dir);
}

/*
 * Build the YAML, parse it, open the manager on a fresh socket and wait
 * until every plugin that should have an agent has one attached.
 * @settings is the body of `plugin_settings` (NULL: plugin_timeout 5 s);
 * @top is more top-level YAML (e.g. "bus: {max_payload_size: 1000}").
 */
static void mt_open_x(struct mt *t, const char *settings, const char *top,
		      const struct pl *pl, unsigned n, int no_spawn)
{
	static int seq;
	static struct pbus_diag d;
	char agent[PATH_MAX], buf[512];
	struct pbus_mgr_opts o = {0};
	char *y = NULL;
	size_t yl = 0;
	int has_down = 0, ret;
	FILE *f;

	memset(t, 0, sizeof(*t));
	memset(&d, 0, sizeof(d));
	th_log_setup();
	ck_assert_msg(realpath(th_bin("agent-ctl"), agent), "no agent-ctl");
	snprintf(t->dir, sizeof(t->dir), "%s-%d-%d", tmp_prefix, (int)getpid(),
		 seq++);
	ck_assert_int_eq(mkdir(t->dir, 0700), 0);
	snprintf(t->sock, sizeof(t->sock), "%s", th_sock_path());
	snprintf(buf, sizeof(buf), "%s/sock", t->dir); /* for the sweep */
	ck_assert_int_eq(symlink(t->sock, buf), 0);

	f = open_memstream(&y, &yl);
	ck_assert_ptr_nonnull(f);
	fprintf(f, "plugin_settings: {%s}\n",
		settings ? settings : "plugin_timeout: 5");
	if (top)
		fprintf(f, "%s\n", top);
	fprintf(f, "plugins:\n");
	for (unsigned i = 0; i < n; i++) {
		const struct pl *p = &pl[i];

		fprintf(f, "  - name: %s\n    kind: agent\n    hooks: %s\n",
			p->name, p->hooks ? p->hooks : ALL_HOOKS);
		fprintf(f, "    priority: %d\n", p->prio ? p->prio : 100);
		if (p->mode)
			fprintf(f, "    mode: %s\n", p->mode);
		if (p->on_error)
			fprintf(f, "    on_error: %s\n", p->on_error);
		if (!p->down)
			fprintf(f, "    command: [\"%s\"]\n", agent);
		fprintf(f, "    config: {count_file: \"%s/%s\"%s%s}\n", t->dir,
			p->name, p->cfg ? ", " : "", p->cfg ? p->cfg : "");
		if (p->extra)
			fprintf(f, "    %s\n", p->extra);
		has_down |= p->down;
	}
	fclose(f);

	ret = pbus_config_parse(y, yl, "test_mgr.yaml", &d, &t->cfg);
	if (ret) {
		fprintf(stderr, "%s", y);
		for (unsigned i = 0; i < d.n; i++)
			fprintf(stderr, "%s\n",
				pbus_diag_format(&d, i, buf, sizeof(buf)));
	}
	free(y);
	ck_assert_int_eq(ret, 0);

	o.sock_path = t->sock;
	o.no_spawn = no_spawn;
	ck_assert_int_eq(pbus_mgr_open(t->cfg, &o, &t->m), 0);
	if (no_spawn)
		return;
	if (!has_down) {
		ck_assert_int_eq(pbus_mgr_wait_ready(t->m, 5000), 0);
		return;
	}
	/* wait_ready would wait for the down ones too: wait for the others */
	for (unsigned i = 0; i < n; i++) {
		struct pbus_peer *peer;

		if (pl[i].down ||
		    (pl[i].mode && !strcmp(pl[i].mode, "disabled")))
			continue;
		peer = pbus_bus_find_peer(pbus_mgr_bus(t->m), pl[i].name);
		ck_assert_msg(peer, "no peer for %s", pl[i].name);
		ck_assert_int_eq(pbus_peer_wait_up(peer, 5000), 0);
	}
}

static void mt_open(struct mt *t, const char *settings, const char *top,
		    const struct pl *pl, unsigned n)
{
	mt_open_x(t, settings, top, pl, n, 0);
}

static void mt_close(struct mt *t)
{
	pbus_mgr_close(t->m);
	pbus_config_destroy(t->cfg);
	ck_assert_int_ne(access(t->sock, F_OK), 0); /* socket removed */
	rm_dir(t->dir);
}

/* Plugin id of @name. */
static unsigned pid_of(struct mt *t, const char *name)
{
	unsigned n = pbus_mgr_plugin_count(t->m);

	for (unsigned i = 0; i < n; i++) {
		const char *s = pbus_mgr_plugin_name(t->m, i);

		if (s && !strcmp(s, name))
			return i;
	}
	ck_abort_msg("no plugin %s", name);
	return 0;
}

static struct pbus_plugin_stats stats_of(struct mt *t, const char *name)
{
	struct pbus_plugin_stats s;

	memset(&s, 0, sizeof(s));
	ck_assert_int_eq(pbus_mgr_plugin_stats(t->m, pid_of(t, name), &s), 0);
	return s;
}

/* Calls plugin @name received so far (lines in its count file). */
static int calls(struct mt *t, const char *name)
{
	char p[PATH_MAX];
	int c, n = 0;
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", t->dir, name);
	f = fopen(p, "r");
	if (!f)
		return 0;
	while ((c = getc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

/* Wait up to @ms for plugin @name to have received @n calls. */
static int wait_calls(struct mt *t, const char *name, int n, int ms)
{
	uint64_t until = th_now_ms() + (uint64_t)ms;

	while (calls(t, name) < n) {
		if (th_now_ms() >= until)
			return -ETIMEDOUT;
		usleep(5000);
	}
	return 0;
}

static struct pbus_request *req(struct mt *t, const char *id)
{
	struct pbus_gctx g = {.request_id = id, .user = "alice"};
	struct pbus_request *rq = NULL;

	ck_assert_int_eq(pbus_request_create(t->m, &g, &rq), 0);
	return rq;
}

/* ------------------------------------------------------------ msgpack */

struct mb {
	const void *p;
	size_t n;
};

/* J()'s buffers, per thread; a thread frees its own with j_release(). */
static __thread msgpack_sbuffer sb[16];

static void j_release(void)
{
	for (unsigned i = 0; i < 16; i++)
		if (sb[i].data)
			msgpack_sbuffer_destroy(&sb[i]);
	memset(sb, 0, sizeof(sb));
}

/*
 * msgpack from JSON written with single quotes ("{'a': 1}"), printf-style.
 * The result lives in one of 16 rotating static buffers.
 */
__attribute__((format(printf, 1, 2))) static struct mb J(const char *fmt, ...) {
	static __thread unsigned next;
	static __thread char js[65536];
	msgpack_sbuffer *s = &sb[next++ % 16];
	msgpack_packer pk;
	json_error_t err;
	va_list ap;
	json_t *j;

	va_start(ap, fmt);
	vsnprintf(js, sizeof(js), fmt, ap);
	va_end(ap);
	for (char *c = js; *c; c++)
		if (*c == '\'')
			*c = '"';
	j = json_loads(js, JSON_DECODE_ANY, &err);
	ck_assert_msg(j, "bad JSON %s: %s", js, err.text);
	if (s->data)
		s->size = 0;
	else
		msgpack_sbuffer_init(s);
	msgpack_packer_init(&pk, s, msgpack_sbuffer_write);
	ck_assert_int_eq(pbus_json_pack(&pk, j), 0);
	json_decref(j);
	return (struct mb){s->data, s->size};
}

/* The value at @path in the msgpack map @p[0, @n), or the empty view. */
static struct pbus_mp
at(const void *p, size_t n, const char *path)
{
	struct pbus_mp v, r = {0};

	if (!p || !n || pbus_mp_open(p, n, &v) || pbus_mp_path(v, path, &r))
		return (struct pbus_mp){0};
	return r;
}

/* String at @path as a C string (rotating static buffers), or NULL. */
static const char *str_at(const void *p, size_t n, const char *path)
{
	static __thread char buf[8][256];
	static __thread unsigned next;
	char *b = buf[next++ % 8];
	const char *s;
	size_t l;

	if (pbus_mp_str(at(p, n, path), &s, &l))
		return NULL;
	snprintf(b, 256, "%.*s", (int)l, s);
	return b;
}

/* Integer at @path, or INT64_MIN when absent or not an integer. */
static int64_t int_at(const void *p, size_t n, const char *path)
{
	int64_t i;

	if (pbus_mp_int(at(p, n, path), &i))
		return INT64_MIN;
	return i;
}

static int has(const void *p, size_t n, const char *path)
{
	return pbus_mp_type(at(p, n, path)) != PBUS_MP_INVALID;
}

/* Shorthands on an outcome: its payload and its merged metadata. */
#define PS(o, path) str_at((o)->payload, (o)->payload_len, path)
#define PI(o, path) int_at((o)->payload, (o)->payload_len, path)
#define MS(o, path) str_at((o)->metadata, (o)->metadata_len, path)
#define MI(o, path) int_at((o)->metadata, (o)->metadata_len, path)
#define MHAS(o, path) has((o)->metadata, (o)->metadata_len, path)

static void run(struct mt *t, struct pbus_request *rq, int hook, struct mb p,
		struct pbus_outcome *out)
{
	memset(out, 0, sizeof(*out));
	ck_assert_int_eq(pbus_run(t->m, rq, hook, p.p, p.n, out), 0);
}

static int streq(const char *a, const char *b)
{
	return a && b && !strcmp(a, b);
}

static const char *dec(const struct pbus_outcome *o)
{
	return o->decided_by ? o->decided_by : "(null)";
}

/* A tool_pre_invoke payload. */
#define TOOL(by) J("{'name': 'search', 'args': {'by': '%s'}}", by)

/* ------------------------------------------------------------ order */

/* Each plugin records its name in args.by; each sees its predecessor's. */
START_TEST(chain_runs_in_ascending_priority_with_ties_in_yaml_order)
{
	struct pl pl[] = {
		{.name = "A",
		 .prio = 20,
		 .cfg = "action: modify, set: {args: {by: A}}, echo_ctx: true"},
		{.name = "B",
		 .prio = 10,
		 .cfg = "action: modify, set: {args: {by: B}}, echo_ctx: true"},
		{.name = "C",
		 .prio = 20,
		 .cfg = "action: modify, set: {args: {by: C}}, echo_ctx: true"},
		{.name = "D",
		 .prio = 10,
		 .cfg = "action: modify, set: {args: {by: D}}, echo_ctx: true"},
		{.name = "E",
		 .prio = 5,
		 .cfg = "action: modify, set: {args: {by: E}}, echo_ctx: true"},
	};
	/* expected order E, B, D, A, C */
	static const char *const seen[][2] = {
		{"E", "orig"}, {"B", "E"}, {"D", "B"}, {"A", "D"}, {"C", "A"},
	};
	struct mt t;
	struct pbus_request *rq;
	struct pbus_outcome o;
	char path[64];

	mt_open(&t, NULL, NULL, pl, 5);
	rq = req(&t, "r1");
	run(&t, rq, TOOL_PRE, TOOL("orig"), &o);
	ck_assert_int_eq(o.continue_processing, 1);
	ck_assert_uint_eq(o.plugins_run, 5);
	for (unsigned i = 0; i < 5; i++) {
		snprintf(path, sizeof(path), "seen_by_%s.payload.args.by",
			 seen[i][0]);
		ck_assert_msg(streq(MS(&o, path), seen[i][1]),
			      "%s saw args.by=%s, want %s", seen[i][0],
			      MS(&o, path), seen[i][1]);
	}
	ck_assert_str_eq(PS(&o, "args.by"), "C");
	ck_assert_int_eq(o.modified, 1);
	ck_assert_str_eq(dec(&o), "C");
	pbus_request_destroy(rq);
	mt_close(&t);
}
END_TEST

/* ------------------------------------------------------------ chaining */

START_TEST(modified_payload_feeds_the_next_plugin_and_decided_by_names_it)
{
	struct pl pl[] = {
		{.name = "A",
		 .prio = 10,
		 .cfg = "action: modify, set: {args: {x: 1}}"},
		{.name = "B", .prio = 20, .cfg = "echo_ctx: true"},
		{.name = "C", .prio = 30},
	};
	struct mt t;
	struct pbus_request *rq;
	struct pbus_outcome o;

	mt_open(&t, NULL, NULL, pl, 3);
	rq = req(&t, "r1");
	run(&t, rq, TOOL_PRE, J("{'name': 'search', 'args': {'x': 0}}"), &o);
	ck_assert_int_eq(o.continue_processing, 1);
	ck_assert_int_eq(MI(&o, "seen_by_B.payload.args.x"), 1);
	ck_assert_int_eq(PI(&o, "args.x"), 1);
	ck_assert_str_eq(PS(&o, "name"), "search");
	ck_assert_int_eq(o.modified, 1);
	ck_assert_str_eq(dec(&o), "A");
	ck_assert_ptr_null(o.violation);
	ck_assert_int_eq(o.error, 0);
	ck_assert_uint_eq(o.plugins_run, 3);
	ck_assert_uint_eq(stats_of(&t, "A").modified, 1);
	pbus_request_destroy(rq);
	mt_close(&t);
}
END_TEST

START_TEST(unmodified_chain_returns_the_input_payload)
{
	struct pl pl[] = {{.name = "A", .prio = 10}, {.name = "B", .prio = 20}};
	struct mt t;
	struct pbus_request *rq;
	struct pbus_outcome o;
	struct mb in;

	mt_open(&t, NULL, NULL, pl, 2);
	rq = req(&t, "r1");
	in = TOOL("orig");
	run(&t, rq, TOOL_PRE, in, &o);
	ck_assert_int_eq(o.continue_processing, 1);
	ck_assert_int_eq(o.modified, 0);
	ck_assert_uint_eq(o.payload_len, in.n);
	ck_assert_int_eq(memcmp(o.payload, in.p, in.n), 0);
	ck_assert_ptr_null(o.violation);
	ck_assert_uint_eq(o.plugins_run, 2);
	pbus_request_destroy(rq);
	mt_close(&t);
}
END_TEST

START_TEST(empty_chain_continues_unmodified_without_calls)
{
	struct pl pl[] = {
		{.name = "A", .prio = 10, .hooks = "[tool_post_invoke]"}};
	struct mt t;
	struct pbus_request *rq;
	struct pbus_outcome o;

	mt_open(&t, NULL, NULL, pl, 1);
	rq = req(&t, "r1");
	run(&t, rq, TOOL_PRE, TOOL("orig"), &o);
	ck_assert_int_eq(o.continue_processing, 1);
	ck_assert_int_eq(o.modified, 0);
	ck_assert_uint_eq(o.plugins_run, 0);
	ck_assert_int_eq(calls(&t, "A"), 0);
	pbus_request_destroy(rq);
	mt_close(&t);
}
END_TEST

START_TEST(metadata_merges_across_plugins_last_writer_wins)
{
	struct pl pl[] = {
		{.name = "A", .prio = 10, .cfg = "metadata: {k: a, ka: 1}"},
		{.name = "B", .prio = 20, .cfg = "metadata: {k: b, kb: 2}"},
		{.name = "C", .prio = 30},
	};
	struct mt t;
	struct pbus_request *rq;
	struct pbus_outcome o;

	mt_open(&t, NULL, NULL, pl, 3);
	rq = req(&t, "r1");
	run(&t, rq, TOOL_PRE, TOOL("orig"), &o);
	ck_assert_int_eq(o.continue_processing, 1);
	ck_assert_str_eq(MS(&o, "k"), "b");
	ck_assert_int_eq(MI(&o, "ka"), 1);
	ck_assert_int_eq(MI(&o, "kb"), 2);
	ck_assert_int_eq(o.modified, 0);
	pbus_request_destroy(rq);
	mt_close(&t);
}
END_TEST

#define HS(o, name) str_at((o)->http_headers, (o)->http_headers_len, name)

START_TEST(http_headers_merge_last_writer_wins_except_audit)
{
	struct pl pl[] = {
		{.name = "A",
		 .prio = 10,
		 .cfg = "http_headers: {X-A: a, X-K: a}"},
		{.name = "B", .prio = 20, .cfg = "http_headers: {X-K: b}"},
		{.name = "C",
		 .prio = 30,
		 .mode = "audit",
		 .cfg = "http_headers: {X-C: c, X-K: c}"},
	};
	struct mt t;
	struct pbus_request *rq;
	struct pbus_outcome o;

	mt_open(&t, NULL, NULL, pl, 3);
	rq = req(&t, "r1");
	run(&t, rq, TOOL_PRE, TOOL("orig"), &o);
	ck_assert_int_eq(o.continue_processing, 1);
	ck_assert_uint_eq(o.plugins_run, 3);
	ck_assert_str_eq(HS(&o, "X-A"), "a");
	ck_assert_str_eq(HS(&o, "X-K"), "b");
	ck_assert_ptr_null(HS(&o, "X-C")); /* audit only observes */
	/* the next run of the request starts without headers */
	pbus_request_destroy(rq);
	mt_close(&t);

	/* no plugin sets any: the empty map */
	mt_open(&t, NULL, NULL, pl + 2, 1);
	rq = req(&t, "r2");
	run(&t, rq, TOOL_PRE, TOOL("orig"), &o);
	ck_assert_uint_eq(o.http_headers_len, 1);
	ck_assert_int_eq(*(const uint8_t *)o.http_headers, 0x80);
	pbus_request_destroy(rq);
	mt_close(&t);
}
END_TEST

START_TEST(violation_carries_its_http_status_and_headers)
{
	struct pl pl[] = {
		{.name = "A", .prio = 10, .cfg = "http_headers: {X-A: a}"},
		{.name = "V",
		 .prio = 20,
		 .cfg = "action: violate, code: RATE_LIMIT, http_headers: "
			"{Retry-After: '30', X-RateLimit-Remaining: '0'}"},
	};
	struct mt t;
	struct pbus_request *rq;
	struct pbus_outcome o;
	const struct pbus_violation *v;

	mt_open(&t, NULL, NULL, pl, 2);
	rq = req(&t, "r1");
	run(&t, rq, TOOL_PRE, TOOL("orig"), &o);
	ck_assert_int_eq(o.continue_processing, 0);
	v = o.violation;
	ck_assert_ptr_nonnull(v);
	ck_assert_str_eq(str_at(v->http_headers, v->http_headers_len,
				"Retry-After"),
			 "30");
	ck_assert_str_eq(str_at(v->http_headers, v->http_headers_len,
				"X-RateLimit-Remaining"),
			 "0");
	ck_assert_ptr_null(
		str_at(v->http_headers, v->http_headers_len, "X-A"));
	ck_assert_str_eq(HS(&o, "X-A"), "a"); /* those of the calls before */
	pbus_request_destroy(rq);
	mt_close(&t);
}
END_TEST

/* Headers that could split or forge a response header make the answer a
 * plugin error, with or without a violation around them. */
START_TEST(malformed_http_headers_are_a_plugin_error)
{
	static const char *const bad[] = {
		"http_headers: {'Bad Name': x}",
		"http_headers: {X-Ok: \"a\\r\\nSet-Cookie: s=1\"}",
		"http_headers: {X-Ok: 5}",
		"http_headers: {'': x}",
		"http_headers: [X-Ok, x]",
		"action: violate, http_headers: {X-Ok: \"a\\nb\"}",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct pl pl[] = {{.name = "H",
				   .prio = 10,
				   .on_error = "fail",
				   .cfg = bad[i]}};
		struct mt t;
		struct pbus_request *rq;
		struct pbus_outcome o;

		mt_open(&t, NULL, NULL, pl, 1);
		rq = req(&t, "r1");
		run(&t, rq, TOOL_PRE, TOOL("orig"), &o);
		ck_assert_msg(o.continue_processing == 0 &&
				      o.error == -EBADMSG && !o.violation,
			      "%s: continue %d error %d", bad[i],
			      o.continue_processing, o.error);
		ck_assert_msg(strstr(o.error_message, "malformed http_headers"),
			      "%s: %s", bad[i], o.error_message);
		pbus_request_destroy(rq);
		mt_close(&t);
	}
}
END_TEST

START_TEST(violation_carries_every_field_and_the_blocking_plugins_input)
{
	struct pl pl[] = {
		{.name = "A",
		 .prio = 10,
		 .cfg = "action: modify, set: {args: {by: A}}"},
		{.name = "V",
		 .prio = 20,
		 .cfg = "action: violate, code: NOPE, reason: 'bad thing', "
			"description: 'a longer text', details: {why: because, "
			"n: 7}, mcp_error_code: -32001"},
		{.name = "Z", .prio = 30},
	};
	struct mt t;
	struct pbus_request *rq;
	struct pbus_outcome o;
	const struct pbus_violation *v;

	mt_open(&t, NULL, NULL, pl, 3);
	rq = req(&t, "r1");
	run(&t, rq, TOOL_PRE, TOOL("orig"), &o);
	ck_assert_int_eq(o.continue_processing, 0);
	ck_assert_int_eq(o.error, 0);
	v = o.violation;
	ck_assert_ptr_nonnull(v);
	ck_assert_str_eq(v->code, "NOPE");
	ck_assert_str_eq(v->reason, "bad thing");
	ck_assert_str_eq(v->description, "a longer text");
	ck_assert_str_eq(str_at(v->details, v->details_len, "why"), "because");
	ck_assert_int_eq(int_at(v->details, v->details_len, "n"), 7);
	ck_assert_int_eq(v->mcp_error_code, -32001);
	ck_assert_int_eq(v->http_status_code, 0);
	ck_assert_str_eq(v->plugin_name, "V");
	ck_assert_str_eq(dec(&o), "V");
	/* payload = what V received: A's modification, nothing of V's */
	ck_assert_str_eq(PS(&o, "args.by"), "A");
	ck_assert_int_eq(calls(&t, "Z"), 0);
	ck_assert_uint_eq(stats_of(&t, "V").violations, 1);
	pbus_request_destroy(rq);
	mt_close(&t);
}
END_TEST

START_TEST(violation_without_mcp_error_code_defaults_to_minus_32603)
{
	struct pl pl[] = {
		{.name = "V", .prio = 10, .cfg = "action: violate, code: X"}};
	struct mt t;
	struct pbus_request *rq;
	struct pbus_outcome o;

	mt_open(&t, NULL, NULL, pl, 1);
	rq = req(&t, "r1");
	run(&t, rq, TOOL_PRE, TOOL("orig"), &o);
	ck_assert_int_eq(o.continue_processing, 0);
	ck_assert_ptr_nonnull(o.violation);
	ck_assert_int_eq(o.violation->mcp_error_code, -32603);
	ck_assert_str_eq(o.violation->plugin_name, "V");
	ck_assert_str_eq(o.violation->code, "X");
	ck_assert_uint_eq(o.violation->details_len > 0, 1);
	ck_assert_int_eq(pbus_mp_count(at(o.violation->details,
					  o.violation->details_len, "")),
			 0);
	pbus_request_destroy(rq);
	mt_close(&t);
}
END_TEST

/* ------------------------------------------------------------ modes table */

enum outcome { VIOL, ERR, TMO, DOWN };

static const char *const outcome_name[] = {"violation", "error", "timeout",
					   "agent down"};

/* What a cell of docs/modes.md says happens. */
struct expect {
	int cont;  /* continue_processing */
	int err;   /* out.error */
	int viol;  /* a violation is reported */
	int later; /* the next plugin of the same phase: 1 called, 0 not, -1
		      either */
};

#define HALT ((struct expect){0, 0, 1, 0})
#define HALT_ANY ((struct expect){0, 0, 1, -1})
#define CONT ((struct expect){1, 0, 0, 1})
#define CONT_ANY ((struct expect){1, 0, 0, -1})
#define FAILS(e) ((struct expect){0, (e), 0, 0})
#define FAILS_ANY(e) ((struct expect){0, (e), 0, -1})

/*
 * Chain: "pre" (sequential, priority 1) sets args.by = "pre"; "X" (mode
 * @mode, priority 10) produces @oc; "post" (same mode, priority 20) allows.
 * Checks continue_processing, error, violation, the payload X received and
 * whether "post" was called.
 */
static void cell(const char *mode, const char *on_error, enum outcome oc,
		 int fail_on_error, struct expect e)
{
	static const char *const act[] = {
		"action: violate, code: X_BLOCK",
		"action: fail",
		"action: sleep, sleep_ms: 1500",
		"action: allow",
	};
	struct pl pl[] = {
		{.name = "pre",
		 .prio = 1,
		 .mode = "sequential",
		 .cfg = "action: modify, set: {args: {by: pre}}"},
		{.name = "X",
		 .prio = 10,
		 .mode = mode,
		 .on_error = on_error,
		 .cfg = act[oc],
		 .extra = "timeout: 0.15",
		 .down = oc == DOWN},
		{.name = "post", .prio = 20, .mode = mode},
	};
	int ff = !strcmp(mode, "fire_and_forget");
	struct pbus_plugin_stats s;
	struct pbus_request *rq;
	struct pbus_outcome o;
	struct mt t;
	char what[128];

	snprintf(what, sizeof(what), "mode %s, on_error %s, %s%s", mode,
		 on_error ? on_error : "(default)", outcome_name[oc],
		 fail_on_error ? ", fail_on_plugin_error" : "");
	mt_open(&t,
		fail_on_error ? "plugin_timeout: 5, fail_on_plugin_error: true"
			      : NULL,
		NULL, pl, 3);
	rq = req(&t, "r1");
	run(&t, rq, TOOL_PRE, TOOL("orig"), &o);

	ck_assert_msg(o.continue_processing == e.cont,
		      "%s: continue_processing %d, want %d", what,
		      o.continue_processing, e.cont);
	ck_assert_msg(o.error == e.err, "%s: error %d (%s), want %d", what,
		      o.error, o.error_message ? o.error_message : "", e.err);
	if (e.viol) {
		ck_assert_msg(o.violation, "%s: no violation", what);
		ck_assert_str_eq(o.violation->code, "X_BLOCK");
		ck_assert_str_eq(o.violation->plugin_name, "X");
	} else {
		ck_assert_msg(!o.violation, "%s: unexpected violation %s", what,
			      o.violation->code);
	}
	if (!e.cont)
		ck_assert_msg(streq(dec(&o), "X"), "%s: decided_by %s", what,
			      dec(&o));
	/* halted or not, the payload is what X received */
	ck_assert_msg(streq(PS(&o, "args.by"), "pre"), "%s: payload args.by %s",
		      what, PS(&o, "args.by"));
	if (e.later >= 0)
		ck_assert_msg(calls(&t, "post") == e.later,
			      "%s: post called %d times, want %d", what,
			      calls(&t, "post"), e.later);
	if (ff && oc != DOWN) /* it still runs, after the chain */
		ck_assert_int_eq(wait_calls(&t, "X", 1, 3000), 0);

	/* the outcome is counted on the plugin (fire_and_forget: errors) */
	s = stats_of(&t, "X");
	if (oc == VIOL && !ff)
		ck_assert_msg(s.violations == 1, "%s: violations %llu", what,
			      (unsigned long long)s.violations);
	if (oc == ERR) {
		uint64_t until = th_now_ms() + 3000;

		while (ff && s.errors == 0 && th_now_ms() < until) {
			usleep(5000);
			s = stats_of(&t, "X");
		}
		ck_assert_msg(s.errors == 1, "%s: errors %llu", what,
			      (unsigned long long)s.errors);
	}
	if (oc == TMO && !ff)
		ck_assert_msg(s.timeouts == 1, "%s: timeouts %llu", what,
			      (unsigned long long)s.timeouts);
	if (oc == DOWN && !ff)
		ck_assert_msg(s.agent_down == 1, "%s: agent_down %llu", what,
			      (unsigned long long)s.agent_down);
	pbus_request_destroy(rq);
	mt_close(&t);
}

#define CELL(fn, mode, on_error, oc, exp)                                      \
	START_TEST(fn)                                                         \
	{                                                                      \
		cell(mode, on_error, oc, 0, exp);                              \
	}                                                                      \
	END_TEST
#define CELL_FOE(fn, mode, on_error, oc, exp)                                  \
	START_TEST(fn)                                                         \
	{                                                                      \
		cell(mode, on_error, oc, 1, exp);                              \
	}                                                                      \
	END_TEST

// clang-format off
/* enforce: sequential, on_error fail */
CELL(enforce_violation_halts_with_the_blocking_plugins_input, "enforce", NULL, VIOL, HALT)
CELL(enforce_error_fails_the_chain_with_eio, "enforce", NULL, ERR, FAILS(-EIO))
CELL(enforce_timeout_fails_the_chain_with_etimedout, "enforce", NULL, TMO, FAILS(-ETIMEDOUT))
CELL(enforce_agent_down_fails_the_chain_with_enotconn, "enforce", NULL, DOWN, FAILS(-ENOTCONN))
/* enforce_ignore_error: sequential, on_error ignore; violations halt (R2) */
CELL(enforce_ignore_error_violation_halts_unlike_r1, "enforce_ignore_error", NULL, VIOL, HALT)
CELL(enforce_ignore_error_error_is_ignored, "enforce_ignore_error", NULL, ERR, CONT)
CELL(enforce_ignore_error_timeout_is_ignored, "enforce_ignore_error", NULL, TMO, CONT)
CELL(enforce_ignore_error_agent_down_is_ignored, "enforce_ignore_error", NULL, DOWN, CONT)
/* permissive: transform, on_error ignore */
CELL(permissive_violation_is_counted_and_the_chain_continues, "permissive", NULL, VIOL, CONT)
CELL(permissive_error_is_ignored, "permissive", NULL, ERR, CONT)
CELL(permissive_timeout_is_ignored, "permissive", NULL, TMO, CONT)
CELL(permissive_agent_down_is_ignored, "permissive", NULL, DOWN, CONT)
/* sequential */
CELL(sequential_violation_halts, "sequential", NULL, VIOL, HALT)
CELL(sequential_error_fails_by_default, "sequential", NULL, ERR, FAILS(-EIO))
CELL(sequential_timeout_fails_by_default, "sequential", NULL, TMO, FAILS(-ETIMEDOUT))
CELL(sequential_agent_down_fails_by_default, "sequential", NULL, DOWN, FAILS(-ENOTCONN))
CELL(sequential_error_with_on_error_ignore_continues, "sequential", "ignore", ERR, CONT)
CELL(sequential_timeout_with_on_error_ignore_continues, "sequential", "ignore", TMO, CONT)
CELL(sequential_agent_down_with_on_error_ignore_continues, "sequential", "ignore", DOWN, CONT)
/* transform */
CELL(transform_violation_is_suppressed_and_counted, "transform", NULL, VIOL, CONT)
CELL(transform_error_fails_by_default, "transform", NULL, ERR, FAILS(-EIO))
CELL(transform_timeout_fails_by_default, "transform", NULL, TMO, FAILS(-ETIMEDOUT))
CELL(transform_agent_down_fails_by_default, "transform", NULL, DOWN, FAILS(-ENOTCONN))
CELL(transform_error_with_on_error_ignore_continues, "transform", "ignore", ERR, CONT)
CELL(transform_timeout_with_on_error_ignore_continues, "transform", "ignore", TMO, CONT)
CELL(transform_agent_down_with_on_error_ignore_continues, "transform", "ignore", DOWN, CONT)
/* audit */
CELL(audit_violation_is_only_counted, "audit", NULL, VIOL, CONT)
CELL(audit_error_fails_by_default, "audit", NULL, ERR, FAILS(-EIO))
CELL(audit_timeout_fails_by_default, "audit", NULL, TMO, FAILS(-ETIMEDOUT))
CELL(audit_agent_down_fails_by_default, "audit", NULL, DOWN, FAILS(-ENOTCONN))
CELL(audit_error_with_on_error_ignore_continues, "audit", "ignore", ERR, CONT)
CELL(audit_timeout_with_on_error_ignore_continues, "audit", "ignore", TMO, CONT)
CELL(audit_agent_down_with_on_error_ignore_continues, "audit", "ignore", DOWN, CONT)
/* concurrent: members run at once, so "post" may or may not be called */
CELL(concurrent_violation_halts, "concurrent", NULL, VIOL, HALT_ANY)
CELL(concurrent_error_fails_by_default, "concurrent", NULL, ERR, FAILS_ANY(-EIO))
CELL(concurrent_timeout_fails_by_default, "concurrent", NULL, TMO, FAILS_ANY(-ETIMEDOUT))
CELL(concurrent_agent_down_fails_by_default, "concurrent", NULL, DOWN, FAILS_ANY(-ENOTCONN))
CELL(concurrent_error_with_on_error_ignore_continues, "concurrent", "ignore", ERR, CONT_ANY)
CELL(concurrent_timeout_with_on_error_ignore_continues, "concurrent", "ignore", TMO, CONT_ANY)
CELL(concurrent_agent_down_with_on_error_ignore_continues, "concurrent", "ignore", DOWN, CONT_ANY)
/* fire_and_forget: runs after the chain; nothing it does matters */
CELL(fire_and_forget_violation_is_ignored, "fire_and_forget", NULL, VIOL, CONT_ANY)
CELL(fire_and_forget_error_is_swallowed_and_counted, "fire_and_forget", NULL, ERR, CONT_ANY)
CELL(fire_and_forget_timeout_is_swallowed, "fire_and_forget", NULL, TMO, CONT_ANY)
CELL(fire_and_forget_agent_down_is_swallowed, "fire_and_forget", NULL, DOWN, CONT_ANY)
/* an explicit on_error overrides the legacy mode's default */
CELL(enforce_ignore_error_with_on_error_fail_fails_on_error, "enforce_ignore_error", "fail", ERR, FAILS(-EIO))
CELL(enforce_with_on_error_ignore_ignores_a_timeout, "enforce", "ignore", TMO, CONT)
CELL(permissive_with_on_error_fail_fails_when_the_agent_is_down, "permissive", "fail", DOWN, FAILS(-ENOTCONN))
/* fail_on_plugin_error: every mode but fire_and_forget fails */
CELL_FOE(fail_on_plugin_error_fails_an_enforce_ignore_error_error, "enforce_ignore_error", NULL, ERR, FAILS(-EIO))
CELL_FOE(fail_on_plugin_error_fails_a_permissive_timeout, "permissive", NULL, TMO, FAILS(-ETIMEDOUT))
CELL_FOE(fail_on_plugin_error_fails_an_audit_agent_down, "audit", NULL, DOWN, FAILS(-ENOTCONN))
CELL_FOE(fail_on_plugin_error_overrides_on_error_ignore, "transform", "ignore", ERR, FAILS(-EIO))
CELL_FOE(fail_on_plugin_error_fails_a_concurrent_error, "concurrent", NULL, ERR, FAILS_ANY(-EIO))
CELL_FOE(fail_on_plugin_error_does_not_fail_fire_and_forget, "fire_and_forget", NULL, ERR, CONT_ANY)
CELL_FOE(fail_on_plugin_error_leaves_a_permissive_violation_alone, "permissive", NULL, VIOL, CONT)
// clang-format on

START_TEST(disabled_plugin_is_never_started_nor_called)
{
	struct pl pl[] = {
		{.name = "D",
		 .prio = 10,
		 .mode = "disabled",
		 .hooks = "[tool_pre_invoke, prompt_pre_fetch]"},
		{.name = "A", .prio = 20, .hooks = "[tool_pre_invoke]"},
	};
	struct mt t;
	struct pbus_request *rq;
	struct pbus_outcome o;
	struct pbus_peer *peer;

	mt_open(&t, NULL, NULL, pl, 2); /* wait_ready does not wait for D */
	rq = req(&t, "r1");
	run(&t, rq, TOOL_PRE, TOOL("orig"), &o);
	ck_assert_int_eq(o.continue_processing, 1);
	ck_assert_uint_eq(o.plugins_run, 1);
	ck_assert_int_eq(calls(&t, "D"), 0);
	ck_assert_int_eq(calls(&t, "A"), 1);
	ck_assert_int_eq(pbus_mgr_has_hooks(t.m, PBUS_HOOK_PROMPT_PRE_FETCH),
			 0);
	usleep(100000);
	peer = pbus_bus_find_peer(pbus_mgr_bus(t.m), "D");
	ck_assert(!peer || !pbus_peer_is_up(peer));
	pbus_request_destroy(rq);
	mt_close(&t);
}
END_TEST

START_TEST(on_error_disable_ignores_the_error_and_skips_the_plugin_afterwards)
{
	struct pl pl[] = {
		{.name = "X",
		 .prio = 10,
		 .mode = "sequential",
		 .on_error = "disable",
		 .cfg = "action: fail"},
		{.name = "A",
		 .prio = 20,
		 .cfg = "action: modify, set: {args: {by: A}}"},
	};
	struct mt t;
	struct pbus_request *rq;
	struct pbus_outcome o;

	mt_open(&t, NULL, NULL, pl, 2);
	rq = req(&t, "r1");
	run(&t, rq, TOOL_PRE, TOOL("orig"), &o);
	ck_assert_int_eq(o.continue_processing, 1);
	ck_assert_int_eq(o.error, 0);
	ck_assert_str_eq(PS(&o, "args.by"), "A");
	ck_assert_int_eq(stats_of(&t, "X").disabled, 1);
	ck_assert_uint_eq(stats_of(&t, "X").errors, 1);
	pbus_request_destroy(rq);

	/* the next call, on another request, skips X */
	rq = req(&t, "r2");
	run(&t, rq, TOOL_PRE, TOOL("orig"), &o);
	ck_assert_int_eq(o.continue_processing, 1);
	ck_assert_str_eq(PS(&o, "args.by"), "A");
	ck_assert_uint_eq(o.plugins_run, 1);
	ck_assert_uint_ge(o.plugins_skipped, 1);
	ck_assert_int_eq(calls(&t, "X"), 1);
	ck_assert_int_eq(calls(&t, "A"), 2);
	pbus_request_destroy(rq);
	mt_close(&t);
}
END_TEST

START_TEST(no_spawn_starts_no_agent_and_calls_fail_as_agent_down)
{
	struct pl pl[] = {{.name = "A", .prio = 10}};
	struct mt t;
	struct pbus_request *rq;
	struct pbus_outcome o;

	mt_open_x(&t, NULL, NULL, pl, 1, 1);
	ck_assert_int_eq(pbus_mgr_wait_ready(t.m, 100), -ETIMEDOUT);
	rq = req(&t, "r1");
	run(&t, rq, TOOL_PRE, TOOL("orig"), &o);
	ck_assert_int_eq(o.continue_processing, 0);
	ck_assert_int_eq(o.error, -ENOTCONN);
	ck_assert_str_eq(dec(&o), "A");
	ck_assert_int_eq(calls(&t, "A"), 0);
	ck_assert_uint_eq(stats_of(&t, "A").agent_down, 1);
	pbus_request_destroy(rq);
	mt_close(&t);
}
END_TEST

/* Modified payload and state merged columns: X modifies args.by and sets
 * global state; "next" (same mode, later) echoes what it received. */
static void mod_state(const char *mode, int chained, int merged)
{
	struct pl pl[] = {
		{.name = "X",
		 .prio = 10,
		 .mode = mode,
		 .cfg = "action: modify, set: {args: {by: X}}, "
			"global_state: {gx: 1}"},
		{.name = "next",
		 .prio = 20,
		 .mode = mode,
		 .cfg = "echo_ctx: true"},
	};
	int ff = !strcmp(mode, "fire_and_forget");
	int conc = !strcmp(mode, "concurrent");
	struct pbus_request *rq;
	struct pbus_outcome o;
	struct mt t;
	const void *st;
	size_t stl = 0;

	mt_open(&t, NULL, NULL, pl, 2);
	rq = req(&t, "r1");
	run(&t, rq, TOOL_PRE, TOOL("orig"), &o);
	if (ff) { /* let it run, then make sure nothing came back */
		ck_assert_int_eq(wait_calls(&t, "X", 1, 3000), 0);
		ck_assert_int_eq(wait_calls(&t, "next", 1, 3000), 0);
		usleep(100000);
	}
	ck_assert_int_eq(o.continue_processing, 1);
	ck_assert_msg(streq(PS(&o, "args.by"), chained ? "X" : "orig"),
		      "mode %s: final args.by %s", mode, PS(&o, "args.by"));
	ck_assert_int_eq(o.modified, chained);
	if (!ff && !conc)
		ck_assert_msg(streq(MS(&o, "seen_by_next.payload.args.by"),
				    chained ? "X" : "orig"),
			      "mode %s: next saw args.by %s", mode,
			      MS(&o, "seen_by_next.payload.args.by"));
	st = pbus_request_state(rq, &stl);
	ck_assert_msg(int_at(st, stl, "gx") == (merged ? 1 : INT64_MIN),
		      "mode %s: global state gx %s", mode,
		      has(st, stl, "gx") ? "set" : "absent");
	pbus_request_destroy(rq);
	mt_close(&t);
}

#define MODSTATE(fn, mode, chained, merged)                                    \
	START_TEST(fn)                                                         \
	{                                                                      \
		mod_state(mode, chained, merged);                              \
	}                                                                      \
	END_TEST

// clang-format off
MODSTATE(enforce_modification_is_chained_and_state_merged, "enforce", 1, 1)
MODSTATE(enforce_ignore_error_modification_is_chained_and_state_merged, "enforce_ignore_error", 1, 1)
MODSTATE(permissive_modification_is_chained_and_state_merged, "permissive", 1, 1)
MODSTATE(sequential_modification_is_chained_and_state_merged, "sequential", 1, 1)
MODSTATE(transform_modification_is_chained_and_state_merged, "transform", 1, 1)
MODSTATE(audit_modification_and_state_are_discarded, "audit", 0, 0)
MODSTATE(concurrent_modification_is_discarded_but_state_merged, "concurrent", 0, 1)
MODSTATE(fire_and_forget_modification_and_state_are_discarded, "fire_and_forget", 0, 0)
// clang-format on

START_TEST(phases_run_sequential_transform_audit_concurrent_whatever_priority)
{
	/* priorities say the reverse of the phase order */
	struct pl pl[] = {
		{.name = "C",
		 .prio = 1,
		 .mode = "concurrent",
		 .cfg = "echo_ctx: true"},
		{.name = "U",
		 .prio = 2,
		 .mode = "audit",
		 .cfg = "echo_ctx: true"},
		{.name = "T",
		 .prio = 3,
		 .mode = "transform",
		 .cfg = "action: modify, set: {args: {by: T}}, echo_ctx: true"},
		{.name = "S",
		 .prio = 4,
		 .mode = "sequential",
		 .cfg = "action: modify, set: {args: {by: S}}, echo_ctx: true"},
	};
	struct mt t;
	struct pbus_request *rq;
	struct pbus_outcome o;

	mt_open(&t, NULL, NULL, pl, 4);
	rq = req(&t, "r1");
	run(&t, rq, TOOL_PRE, TOOL("orig"), &o);
	ck_assert_int_eq(o.continue_processing, 1);
	ck_assert_str_eq(MS(&o, "seen_by_S.payload.args.by"), "orig");
	ck_assert_str_eq(MS(&o, "seen_by_T.payload.args.by"), "S");
	ck_assert_str_eq(MS(&o, "seen_by_U.payload.args.by"), "T");
	ck_assert_str_eq(MS(&o, "seen_by_C.payload.args.by"), "T");
	ck_assert_str_eq(PS(&o, "args.by"), "T");
	pbus_request_destroy(rq);
	mt_close(&t);
}
END_TEST

/* ------------------------------------------------------------ other errors */

START_TEST(non_map_modified_payload_is_a_plugin_error_under_on_error_fail)
{
	struct pl pl[] = {{.name = "G", .prio = 10, .cfg = "action: garbage"},
			  {.name = "Z", .prio = 20}};
	struct mt t;
	struct pbus_request *rq;
	struct pbus_outcome o;

	mt_open(&t, NULL, NULL, pl, 2);
	rq = req(&t, "r1");
	run(&t, rq, TOOL_PRE, TOOL("orig"), &o);
	ck_assert_int_eq(o.continue_processing, 0);
	ck_assert_msg(o.error == -EBADMSG, "error %d, want -EBADMSG", o.error);
	ck_assert_ptr_null(o.violation);
	ck_assert_str_eq(dec(&o), "G");
	ck_assert_str_eq(PS(&o, "args.by"), "orig");
	ck_assert_int_eq(calls(&t, "Z"), 0);
	ck_assert_uint_eq(stats_of(&t, "G").errors, 1);
	pbus_request_destroy(rq);
	mt_close(&t);
}
END_TEST

START_TEST(non_map_modified_payload_is_ignored_under_on_error_ignore)
{
	struct pl pl[] = {
		{.name = "G",
		 .prio = 10,
		 .on_error = "ignore",
		 .cfg = "action: garbage"},
		{.name = "Z", .prio = 20, .cfg = "echo_ctx: true"},
	};
	struct mt t;
	struct pbus_request *rq;
	struct pbus_outcome o;

	mt_open(&t, NULL, NULL, pl, 2);
	rq = req(&t, "r1");
	run(&t, rq, TOOL_PRE, TOOL("orig"), &o);
	ck_assert_int_eq(o.continue_processing, 1);
	ck_assert_int_eq(o.error, 0);
	ck_assert_int_eq(o.modified, 0);
	ck_assert_str_eq(PS(&o, "args.by"), "orig");
	ck_assert_str_eq(MS(&o, "seen_by_Z.payload.args.by"), "orig");
	pbus_request_destroy(rq);
	mt_close(&t);
}
END_TEST

START_TEST(agent_that_crashes_mid_call_fails_the_chain)
{
	struct pl pl[] = {{.name = "K", .prio = 10, .cfg = "action: crash"},
			  {.name = "Z", .prio = 20}};
	struct mt t;
	struct pbus_request *rq;
	struct pbus_outcome o;
	uint64_t t0;

	mt_open(&t, NULL, NULL, pl, 2);
	rq = req(&t, "r1");
	t0 = th_now_ms();
	run(&t, rq, TOOL_PRE, TOOL("orig"), &o);
	/* noticed without waiting for the 5 s timeout */
	ck_assert_uint_lt(th_now_ms() - t0, th_bound(4000, 4800));
	ck_assert_int_eq(o.continue_processing, 0);
	ck_assert_msg(o.error == -ENOTCONN || o.error == -EIO,
		      "error %d, want -ENOTCONN or -EIO", o.error);
	ck_assert_str_eq(dec(&o), "K");
	ck_assert_int_eq(calls(&t, "Z"), 0);
	pbus_request_destroy(rq);
	mt_close(&t);
}
END_TEST

START_TEST(hung_agent_times_out_and_close_still_stops_it)
{
	struct pl pl[] = {
		{.name = "H",
		 .prio = 10,
		 .cfg = "action: hang",
		 .extra = "timeout: 0.1"},
	};
	struct mt t;
	struct pbus_request *rq;
	struct pbus_outcome o;
	uint64_t t0;

	mt_open(&t, NULL, NULL, pl, 1);
	rq = req(&t, "r1");
	t0 = th_now_ms();
	run(&t, rq, TOOL_PRE, TOOL("orig"), &o);
	ck_assert_uint_lt(th_now_ms() - t0, th_slack(2000));
	ck_assert_int_eq(o.continue_processing, 0);
	ck_assert_int_eq(o.error, -ETIMEDOUT);
	ck_assert_str_eq(dec(&o), "H");
	pbus_request_destroy(rq);
	t0 = th_now_ms();
	mt_close(&t);
	ck_assert_uint_lt(th_now_ms() - t0, th_slack(10000));
}
END_TEST

START_TEST(run_rejects_a_non_map_payload_and_a_bad_hook)
{
	struct pl pl[] = {{.name = "A", .prio = 10}};
	struct mt t;
	struct pbus_request *rq;
	struct pbus_outcome o;
	struct mb p;

	mt_open(&t, NULL, NULL, pl, 1);
	rq = req(&t, "r1");
	p = J("[1, 2]");
	ck_assert_int_eq(pbus_run(t.m, rq, TOOL_PRE, p.p, p.n, &o), -EBADMSG);
	ck_assert_int_eq(pbus_run(t.m, rq, TOOL_PRE, "\xc1", 1, &o), -EBADMSG);
	p = TOOL("orig");
	ck_assert_int_eq(pbus_run(t.m, rq, PBUS_HOOK_COUNT, p.p, p.n, &o),
			 -EINVAL);
	ck_assert_int_eq(pbus_run(t.m, rq, -1, p.p, p.n, &o), -EINVAL);
	ck_assert_int_eq(calls(&t, "A"), 0);
	pbus_request_destroy(rq);
	mt_close(&t);
}
END_TEST

/* ------------------------------------------------------------ conditions */

/* Run @hook with @payload on a fresh request with context @g. */
static void run_ctx(struct mt *t, const struct pbus_gctx *g, int hook,
		    struct mb p, struct pbus_outcome *o)
{
	struct pbus_request *rq;

	ck_assert_int_eq(pbus_request_create(t->m, g, &rq), 0);
	run(t, rq, hook, p, o);
	ck_assert_int_eq(o->continue_processing, 1);
	pbus_request_destroy(rq);
}

START_TEST(server_and_tenant_conditions_match_the_global_context)
{
	struct pl pl[] = {
		{.name = "srv",
		 .extra = "conditions: [{server_ids: [s1, s2]}]"},
		{.name = "ten", .extra = "conditions: [{tenant_ids: [t1]}]"},
	};
	struct pbus_gctx g1 = {
		.request_id = "1", .server_id = "s2", .tenant_id = "t9"};
	struct pbus_gctx g2 = {
		.request_id = "2", .server_id = "s3", .tenant_id = "t1"};
	struct pbus_gctx g3 = {.request_id = "3"};
	struct pbus_outcome o;
	struct mt t;

	mt_open(&t, NULL, NULL, pl, 2);
	run_ctx(&t, &g1, TOOL_PRE, TOOL("x"), &o);
	ck_assert_uint_eq(o.plugins_run, 1);
	ck_assert_uint_eq(o.plugins_skipped, 1);
	ck_assert_int_eq(calls(&t, "srv"), 1);
	ck_assert_int_eq(calls(&t, "ten"), 0);
	run_ctx(&t, &g2, TOOL_PRE, TOOL("x"), &o);
	ck_assert_int_eq(calls(&t, "srv"), 1);
	ck_assert_int_eq(calls(&t, "ten"), 1);
	run_ctx(&t, &g3, TOOL_PRE, TOOL("x"), &o); /* neither is set */
	ck_assert_uint_eq(o.plugins_run, 0);
	ck_assert_int_eq(calls(&t, "srv"), 1);
	ck_assert_int_eq(calls(&t, "ten"), 1);
	ck_assert_uint_eq(stats_of(&t, "srv").skipped, 2);
	ck_assert_uint_eq(stats_of(&t, "srv").calls, 1);
	mt_close(&t);
}
END_TEST

START_TEST(tool_prompt_resource_agent_conditions_match_the_payload_subject)
{
	struct pl pl[] = {
		{.name = "tool",
		 .hooks = "[tool_pre_invoke, tool_post_invoke]",
		 .extra = "conditions: [{tools: [search]}]"},
		{.name = "prompt",
		 .hooks = "[prompt_pre_fetch]",
		 .extra = "conditions: [{prompts: [p1]}]"},
		{.name = "res",
		 .hooks = "[resource_pre_fetch]",
		 .extra = "conditions: [{resources: ['file:///a']}]"},
		{.name = "agent",
		 .hooks = "[agent_pre_invoke]",
		 .extra = "conditions: [{agents: [ag1]}]"},
	};
	struct pbus_gctx g = {.request_id = "1"};
	struct pbus_outcome o;
	struct mt t;

	mt_open(&t, NULL, NULL, pl, 4);
	run_ctx(&t, &g, TOOL_PRE, J("{'name': 'search', 'args': {}}"), &o);
	run_ctx(&t, &g, TOOL_PRE, J("{'name': 'fetch', 'args': {}}"), &o);
	run_ctx(&t, &g, TOOL_POST, J("{'name': 'search', 'result': {}}"), &o);
	ck_assert_int_eq(calls(&t, "tool"), 2);
	run_ctx(&t, &g, PBUS_HOOK_PROMPT_PRE_FETCH,
		J("{'prompt_id': 'p1', 'args': {}}"), &o);
	run_ctx(&t, &g, PBUS_HOOK_PROMPT_PRE_FETCH,
		J("{'prompt_id': 'p2', 'args': {}}"), &o);
	ck_assert_int_eq(calls(&t, "prompt"), 1);
	run_ctx(&t, &g, PBUS_HOOK_RESOURCE_PRE_FETCH,
		J("{'uri': 'file:///a', 'metadata': {}}"), &o);
	run_ctx(&t, &g, PBUS_HOOK_RESOURCE_PRE_FETCH,
		J("{'uri': 'file:///ab', 'metadata': {}}"), &o);
	ck_assert_int_eq(calls(&t, "res"), 1);
	run_ctx(&t, &g, PBUS_HOOK_AGENT_PRE_INVOKE,
		J("{'agent_id': 'ag1', 'messages': []}"), &o);
	run_ctx(&t, &g, PBUS_HOOK_AGENT_PRE_INVOKE,
		J("{'agent_id': 'ag2', 'messages': []}"), &o);
	ck_assert_int_eq(calls(&t, "agent"), 1);
	ck_assert_uint_eq(o.plugins_run, 0);
	ck_assert_uint_eq(o.plugins_skipped, 1);
	mt_close(&t);
}
END_TEST

START_TEST(user_patterns_match_by_substring)
{
	struct pl pl[] = {
		{.name = "U", .extra = "conditions: [{user_patterns: [adm]}]"}};
	struct pbus_gctx g1 = {.request_id = "1", .user = "superadmin"};
	struct pbus_gctx g2 = {.request_id = "2", .user = "bob"};
	struct pbus_gctx g3 = {.request_id = "3", .user = "adm"};
	struct pbus_outcome o;
	struct mt t;

	mt_open(&t, NULL, NULL, pl, 1);
	run_ctx(&t, &g1, TOOL_PRE, TOOL("x"), &o);
	ck_assert_int_eq(calls(&t, "U"), 1);
	run_ctx(&t, &g2, TOOL_PRE, TOOL("x"), &o);
	ck_assert_int_eq(calls(&t, "U"), 1);
	run_ctx(&t, &g3, TOOL_PRE, TOOL("x"), &o);
	ck_assert_int_eq(calls(&t, "U"), 2);
	mt_close(&t);
}
END_TEST

START_TEST(content_types_match_the_normalised_base_type)
{
	struct pl pl[] = {
		{.name = "CT",
		 .extra = "conditions: [{content_types: [text/plain]}]"},
	};
	struct pbus_gctx g1 = {.request_id = "1",
			       .content_type = "Text/Plain; charset=utf-8"};
	struct pbus_gctx g2 = {.request_id = "2",
			       .content_type = "application/json"};
	struct pbus_gctx g3 = {.request_id = "3", .content_type = "text/plain"};
	struct pbus_gctx g4 = {.request_id = "4",
			       .content_type = "text/plainx"};
	struct pbus_outcome o;
	struct mt t;

	mt_open(&t, NULL, NULL, pl, 1);
	run_ctx(&t, &g1, TOOL_PRE, TOOL("x"), &o);
	ck_assert_int_eq(calls(&t, "CT"), 1);
	run_ctx(&t, &g2, TOOL_PRE, TOOL("x"), &o);
	ck_assert_int_eq(calls(&t, "CT"), 1);
	run_ctx(&t, &g3, TOOL_PRE, TOOL("x"), &o);
	ck_assert_int_eq(calls(&t, "CT"), 2);
	run_ctx(&t, &g4, TOOL_PRE, TOOL("x"), &o);
	ck_assert_int_eq(calls(&t, "CT"), 2);
	mt_close(&t);
}
END_TEST

START_TEST(fields_of_one_condition_are_anded_and_conditions_are_ored)
{
	struct pl pl[] = {
		{.name = "AND",
		 .extra = "conditions: [{server_ids: [s1], tools: [search], "
			  "user_patterns: [ali]}]"},
		{.name = "OR",
		 .extra = "conditions: [{server_ids: [s9]}, {tools: [fetch]}]"},
	};
	struct pbus_gctx s1 = {
		.request_id = "1", .server_id = "s1", .user = "alice"};
	struct pbus_gctx s1bob = {
		.request_id = "2", .server_id = "s1", .user = "bob"};
	struct pbus_gctx s9 = {
		.request_id = "3", .server_id = "s9", .user = "alice"};
	struct pbus_outcome o;
	struct mt t;

	mt_open(&t, NULL, NULL, pl, 2);
	/* all three fields match: AND runs; OR: s1 and search match neither */
	run_ctx(&t, &s1, TOOL_PRE, J("{'name': 'search', 'args': {}}"), &o);
	ck_assert_int_eq(calls(&t, "AND"), 1);
	ck_assert_int_eq(calls(&t, "OR"), 0);
	/* one field of AND fails */
	run_ctx(&t, &s1bob, TOOL_PRE, J("{'name': 'search', 'args': {}}"), &o);
	run_ctx(&t, &s1, TOOL_PRE, J("{'name': 'other', 'args': {}}"), &o);
	ck_assert_int_eq(calls(&t, "AND"), 1);
	ck_assert_int_eq(calls(&t, "OR"), 0);
	/* OR: either object is enough */
	run_ctx(&t, &s9, TOOL_PRE, J("{'name': 'other', 'args': {}}"), &o);
	ck_assert_int_eq(calls(&t, "OR"), 1);
	run_ctx(&t, &s1, TOOL_PRE, J("{'name': 'fetch', 'args': {}}"), &o);
	ck_assert_int_eq(calls(&t, "OR"), 2);
	ck_assert_int_eq(calls(&t, "AND"), 1);
	mt_close(&t);
}
END_TEST

START_TEST(empty_conditions_match_everything)
{
	struct pl pl[] = {
		{.name = "none"},
		{.name = "empty_list", .extra = "conditions: []"},
		{.name = "empty_obj",
		 .extra = "conditions: [{server_ids: [], tools: []}]"},
	};
	struct pbus_gctx g1 = {.request_id = "1"};
	struct pbus_gctx g2 = {.request_id = "2",
			       .server_id = "s",
			       .user = "u",
			       .tenant_id = "t",
			       .content_type = "a/b"};
	struct pbus_outcome o;
	struct mt t;

	mt_open(&t, NULL, NULL, pl, 3);
	run_ctx(&t, &g1, TOOL_PRE, TOOL("x"), &o);
	run_ctx(&t, &g2, PBUS_HOOK_HTTP_PRE_REQUEST,
		J("{'path': '/', 'method': 'GET', 'headers': {}}"), &o);
	ck_assert_uint_eq(o.plugins_run, 3);
	ck_assert_int_eq(calls(&t, "none"), 2);
	ck_assert_int_eq(calls(&t, "empty_list"), 2);
	ck_assert_int_eq(calls(&t, "empty_obj"), 2);
	mt_close(&t);
}
END_TEST

/* ------------------------------------------------------------ bands */

static const struct pl band4[] = {
	{.name = "B1", .prio = 10, .cfg = "action: sleep, sleep_ms: 100"},
	{.name = "B2", .prio = 10, .cfg = "action: sleep, sleep_ms: 100"},
	{.name = "B3", .prio = 10, .cfg = "action: sleep, sleep_ms: 100"},
	{.name = "B4", .prio = 10, .cfg = "action: sleep, sleep_ms: 100"},
};

static uint64_t time_band(const char *settings, const char *mode)
{
	struct pl pl[4];
	struct mt t;
	struct pbus_request *rq;
	struct pbus_outcome o;
	uint64_t t0, dt;

	memcpy(pl, band4, sizeof(pl));
	for (int i = 0; i < 4; i++)
		pl[i].mode = mode;
	mt_open(&t, settings, NULL, pl, 4);
	rq = req(&t, "r1");
	t0 = th_now_ms();
	run(&t, rq, TOOL_PRE, TOOL("orig"), &o);
	dt = th_now_ms() - t0;
	ck_assert_int_eq(o.continue_processing, 1);
	ck_assert_uint_eq(o.plugins_run, 4);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(calls(&t, pl[i].name), 1);
	pbus_request_destroy(rq);
	mt_close(&t);
	return dt;
}

START_TEST(parallel_band_of_four_runs_at_once)
{
	uint64_t dt = time_band(
		"plugin_timeout: 5, parallel_execution_within_band: true",
		NULL);

	/* 100 ms each: at once, well below the 400 ms one by one */
	ck_assert_msg(dt < 100 + th_bound(200, 280), "band took %llu ms",
		      (unsigned long long)dt);
}
END_TEST

START_TEST(band_runs_one_by_one_when_parallel_is_off)
{
	uint64_t dt = time_band(NULL, NULL);

	ck_assert_msg(dt >= 400, "band took %llu ms", (unsigned long long)dt);
}
END_TEST

START_TEST(band_members_get_the_bands_input_and_all_different_fields_apply)
{
	struct pl pl[] = {
		{.name = "B1",
		 .prio = 10,
		 .cfg = "action: modify, set: {name: renamed}, "
			"echo_ctx: true, sleep_ms: 50"},
		{.name = "B2",
		 .prio = 10,
		 .cfg = "action: modify, set: {args: {a: 1}}, "
			"echo_ctx: true"},
		{.name = "B3",
		 .prio = 10,
		 .cfg = "action: modify, set: {headers: {h: v}}, "
			"echo_ctx: true"},
		{.name = "N", .prio = 20, .cfg = "echo_ctx: true"},
	};
	struct mt t;
	struct pbus_request *rq;
	struct pbus_outcome o;

	mt_open(&t, "plugin_timeout: 5, parallel_execution_within_band: true",
		NULL, pl, 4);
	rq = req(&t, "r1");
	run(&t, rq, TOOL_PRE, J("{'name': 'search', 'args': {'by': 'orig'}}"),
	    &o);
	ck_assert_int_eq(o.continue_processing, 1);
	/* every member saw the band's input */
	ck_assert_str_eq(MS(&o, "seen_by_B1.payload.args.by"), "orig");
	ck_assert_str_eq(MS(&o, "seen_by_B2.payload.name"), "search");
	ck_assert_str_eq(MS(&o, "seen_by_B3.payload.name"), "search");
	ck_assert(
		!has(o.metadata, o.metadata_len, "seen_by_B3.payload.headers"));
	/* the merge of the three is chained to N and returned */
	ck_assert_str_eq(MS(&o, "seen_by_N.payload.name"), "renamed");
	ck_assert_int_eq(MI(&o, "seen_by_N.payload.args.a"), 1);
	ck_assert_str_eq(PS(&o, "name"), "renamed");
	ck_assert_int_eq(PI(&o, "args.a"), 1);
	ck_assert_str_eq(PS(&o, "headers.h"), "v");
	ck_assert_int_eq(o.modified, 1);
	pbus_request_destroy(rq);
	mt_close(&t);
}
END_TEST

START_TEST(band_conflict_on_one_field_takes_the_later_plugin_in_yaml_order)
{
	/* B2 answers first, B1 last: YAML order decides, not timing */
	struct pl pl[] = {
		{.name = "B0",
		 .prio = 10,
		 .cfg = "action: modify, set: {args: {w: 0}}, sleep_ms: 30"},
		{.name = "B1",
		 .prio = 10,
		 .cfg = "action: modify, set: {args: {w: 1}}, sleep_ms: 80"},
		{.name = "B2",
		 .prio = 10,
		 .cfg = "action: modify, set: {args: {w: 2}}"},
		{.name = "B3",
		 .prio = 10,
		 .cfg = "action: modify, set: {name: n3}, sleep_ms: 50"},
	};
	struct mt t;
	struct pbus_request *rq;
	struct pbus_outcome o;

	mt_open(&t, "plugin_timeout: 5, parallel_execution_within_band: true",
		NULL, pl, 4);
	rq = req(&t, "r1");
	run(&t, rq, TOOL_PRE, TOOL("orig"), &o);
	ck_assert_int_eq(o.continue_processing, 1);
	ck_assert_int_eq(PI(&o, "args.w"), 2);
	ck_assert_str_eq(PS(&o, "name"), "n3");
	pbus_request_destroy(rq);
	mt_close(&t);
}
END_TEST

START_TEST(band_violation_halts_with_the_bands_input_payload)
{
	struct pl pl[] = {
		{.name = "pre",
		 .prio = 5,
		 .cfg = "action: modify, set: {args: {by: pre}}"},
		{.name = "B1",
		 .prio = 10,
		 .cfg = "action: modify, set: {args: {by: B1}}"},
		{.name = "B2",
		 .prio = 10,
		 .cfg = "action: violate, code: BAND, sleep_ms: 30"},
		{.name = "N", .prio = 20},
	};
	struct mt t;
	struct pbus_request *rq;
	struct pbus_outcome o;

	mt_open(&t, "plugin_timeout: 5, parallel_execution_within_band: true",
		NULL, pl, 4);
	rq = req(&t, "r1");
	run(&t, rq, TOOL_PRE, TOOL("orig"), &o);
	ck_assert_int_eq(o.continue_processing, 0);
	ck_assert_ptr_nonnull(o.violation);
	ck_assert_str_eq(o.violation->code, "BAND");
	ck_assert_str_eq(o.violation->plugin_name, "B2");
	ck_assert_str_eq(PS(&o, "args.by"), "pre");
	ck_assert_int_eq(calls(&t, "N"), 0);
	pbus_request_destroy(rq);
	mt_close(&t);
}
END_TEST

/* ------------------------------------------------------------ concurrent */

START_TEST(concurrent_plugins_run_at_once)
{
	uint64_t dt = time_band(NULL, "concurrent");

	ck_assert_msg(dt < 100 + th_bound(200, 280),
		      "concurrent phase took %llu ms",
		      (unsigned long long)dt);
}
END_TEST

START_TEST(concurrent_violation_blocks_and_the_first_in_yaml_order_is_reported)
{
	struct pl pl[] = {
		{.name = "C1",
		 .prio = 10,
		 .mode = "concurrent",
		 .cfg = "action: sleep, sleep_ms: 30"},
		{.name = "C2",
		 .prio = 30,
		 .mode = "concurrent",
		 .cfg = "action: violate, code: C2, sleep_ms: 60"},
		{.name = "C3",
		 .prio = 20,
		 .mode = "concurrent",
		 .cfg = "action: violate, code: C3"},
		{.name = "C4",
		 .prio = 40,
		 .mode = "concurrent",
		 .cfg = "action: modify, set: {args: {by: C4}}"},
	};
	struct mt t;
	struct pbus_request *rq;
	struct pbus_outcome o;

	mt_open(&t, NULL, NULL, pl, 4);
	rq = req(&t, "r1");
	run(&t, rq, TOOL_PRE, TOOL("orig"), &o);
	ck_assert_int_eq(o.continue_processing, 0);
	ck_assert_ptr_nonnull(o.violation);
	ck_assert_str_eq(o.violation->code, "C2");
	ck_assert_str_eq(o.violation->plugin_name, "C2");
	ck_assert_str_eq(PS(&o, "args.by"), "orig");
	pbus_request_destroy(rq);
	mt_close(&t);
}
END_TEST

/* Priority order and YAML order agree here; the slower violator is first. */
START_TEST(concurrent_violation_report_does_not_depend_on_answer_time)
{
	struct pl pl[] = {
		{.name = "C1",
		 .prio = 10,
		 .mode = "concurrent",
		 .cfg = "action: violate, code: C1, sleep_ms: 80"},
		{.name = "C2",
		 .prio = 20,
		 .mode = "concurrent",
		 .cfg = "action: violate, code: C2"},
	};
	struct mt t;
	struct pbus_request *rq;
	struct pbus_outcome o;

	mt_open(&t, NULL, NULL, pl, 2);
	rq = req(&t, "r1");
	run(&t, rq, TOOL_PRE, TOOL("orig"), &o);
	ck_assert_int_eq(o.continue_processing, 0);
	ck_assert_ptr_nonnull(o.violation);
	ck_assert_str_eq(o.violation->code, "C1");
	ck_assert_str_eq(o.violation->plugin_name, "C1");
	ck_assert_str_eq(dec(&o), "C1");
	pbus_request_destroy(rq);
	mt_close(&t);
}
END_TEST

/* ------------------------------------------------------------ f&f */

START_TEST(fire_and_forget_does_not_delay_the_chain_and_its_changes_are_ignored)
{
	struct pl pl[] = {
		{.name = "F",
		 .prio = 10,
		 .mode = "fire_and_forget",
		 .cfg = "action: modify, set: {args: {by: F}}, sleep_ms: 300, "
			"metadata: {f: 1}, global_state: {gf: 1}"},
		{.name = "A", .prio = 20, .cfg = "echo_ctx: true"},
	};
	struct mt t;
	struct pbus_request *rq;
	struct pbus_outcome o;
	uint64_t t0, dt;
	const void *st;
	size_t stl = 0;

	mt_open(&t, NULL, NULL, pl, 2);
	rq = req(&t, "r1");
	t0 = th_now_ms();
	run(&t, rq, TOOL_PRE, TOOL("orig"), &o);
	dt = th_now_ms() - t0;
	ck_assert_msg(dt < th_slack(200), "chain took %llu ms",
		      (unsigned long long)dt);
	ck_assert_int_eq(o.continue_processing, 1);
	ck_assert_str_eq(PS(&o, "args.by"), "orig");
	ck_assert_int_eq(o.modified, 0);
	ck_assert_str_eq(MS(&o, "seen_by_A.payload.args.by"), "orig");
	/* it does run, later */
	ck_assert_int_eq(wait_calls(&t, "F", 1, 3000), 0);
	usleep(400000); /* its answer has come back by now */
	st = pbus_request_state(rq, &stl);
	ck_assert(!has(st, stl, "gf"));
	ck_assert_str_eq(PS(&o, "args.by"), "orig");
	ck_assert(!MHAS(&o, "f"));
	/* and the next run on the request is not disturbed by its answer */
	run(&t, rq, TOOL_POST, J("{'name': 'search', 'result': {'r': 1}}"), &o);
	ck_assert_int_eq(o.continue_processing, 1);
	ck_assert_int_eq(PI(&o, "result.r"), 1);
	pbus_request_destroy(rq);
	mt_close(&t);
}
END_TEST

/* ------------------------------------------------------------ contexts */

START_TEST(global_context_fields_are_delivered_to_every_plugin)
{
	struct pl pl[] = {{.name = "A", .prio = 10, .cfg = "echo_ctx: true"},
			  {.name = "B", .prio = 20, .cfg = "echo_ctx: true"}};
	struct pbus_gctx g = {.request_id = "req-7",
			      .user = "alice",
			      .tenant_id = "t1",
			      .server_id = "s1",
			      .content_type = "application/json"};
	struct pbus_request *rq;
	struct pbus_outcome o;
	struct mt t;

	mt_open(&t, NULL, NULL, pl, 2);
	ck_assert_int_eq(pbus_request_create(t.m, &g, &rq), 0);
	run(&t, rq, TOOL_PRE, TOOL("orig"), &o);
	ck_assert_str_eq(MS(&o, "seen_by_A.gctx.request_id"), "req-7");
	ck_assert_str_eq(MS(&o, "seen_by_A.gctx.user"), "alice");
	ck_assert_str_eq(MS(&o, "seen_by_A.gctx.tenant_id"), "t1");
	ck_assert_str_eq(MS(&o, "seen_by_A.gctx.server_id"), "s1");
	ck_assert_str_eq(MS(&o, "seen_by_A.gctx.content_type"),
			 "application/json");
	ck_assert_str_eq(MS(&o, "seen_by_B.gctx.request_id"), "req-7");
	ck_assert_str_eq(MS(&o, "seen_by_B.gctx.tenant_id"), "t1");
	ck_assert_int_eq(pbus_mp_type(at(o.metadata, o.metadata_len,
					 "seen_by_A.gctx.state")),
			 PBUS_MP_MAP);
	pbus_request_destroy(rq);
	mt_close(&t);
}
END_TEST

START_TEST(request_without_id_is_refused)
{
	struct pl pl[] = {{.name = "A", .prio = 10}};
	struct pbus_gctx g = {.user = "alice"};
	struct pbus_request *rq = NULL;
	struct mt t;

	mt_open(&t, NULL, NULL, pl, 1);
	ck_assert_int_eq(pbus_request_create(t.m, &g, &rq), -EINVAL);
	ck_assert_ptr_null(rq);
	mt_close(&t);
}
END_TEST

START_TEST(global_state_reaches_later_plugins_and_the_post_hook)
{
	struct pl pl[] = {
		{.name = "A",
		 .prio = 10,
		 .cfg = "global_state: {ga: 1}, echo_ctx: true"},
		{.name = "B",
		 .prio = 20,
		 .cfg = "global_state: {gb: 2}, echo_ctx: true"},
	};
	struct pbus_request *rq, *rq2;
	struct pbus_outcome o;
	const void *st;
	size_t stl = 0;
	struct mt t;

	mt_open(&t, NULL, NULL, pl, 2);
	rq = req(&t, "r1");
	run(&t, rq, TOOL_PRE, TOOL("orig"), &o);
	ck_assert(!has(o.metadata, o.metadata_len, "seen_by_A.gctx.state.ga"));
	ck_assert_int_eq(MI(&o, "seen_by_B.gctx.state.ga"), 1);
	st = pbus_request_state(rq, &stl);
	ck_assert_int_eq(int_at(st, stl, "ga"), 1);
	ck_assert_int_eq(int_at(st, stl, "gb"), 2);

	run(&t, rq, TOOL_POST, J("{'name': 'search', 'result': {}}"), &o);
	ck_assert_int_eq(MI(&o, "seen_by_A.gctx.state.ga"), 1);
	ck_assert_int_eq(MI(&o, "seen_by_A.gctx.state.gb"), 2);
	ck_assert_int_eq(MI(&o, "seen_by_B.gctx.state.gb"), 2);

	/* another request starts with an empty state */
	rq2 = req(&t, "r2");
	run(&t, rq2, TOOL_PRE, TOOL("orig"), &o);
	ck_assert(!has(o.metadata, o.metadata_len, "seen_by_A.gctx.state.ga"));
	ck_assert(!has(o.metadata, o.metadata_len, "seen_by_A.gctx.state.gb"));
	pbus_request_destroy(rq2);
	pbus_request_destroy(rq);
	mt_close(&t);
}
END_TEST

START_TEST(local_state_goes_from_pre_to_post_of_the_same_request_only)
{
	struct pl pl[] = {
		{.name = "L",
		 .prio = 10,
		 .cfg = "state: {k: v}, echo_ctx: true"},
		{.name = "M", .prio = 20, .cfg = "echo_ctx: true"},
	};
	struct pbus_request *rq1, *rq2;
	struct pbus_outcome o;
	const void *lc;
	size_t lcl = 0;
	unsigned L, M;
	struct mt t;

	mt_open(&t, NULL, NULL, pl, 2);
	L = pid_of(&t, "L");
	M = pid_of(&t, "M");
	rq1 = req(&t, "r1");
	rq2 = req(&t, "r2");
	ck_assert_ptr_null(pbus_request_local(rq1, L, &lcl));

	run(&t, rq1, TOOL_PRE, TOOL("orig"), &o);
	ck_assert(!has(o.metadata, o.metadata_len, "seen_by_L.lctx.state.k"));
	lc = pbus_request_local(rq1, L, &lcl);
	ck_assert_ptr_nonnull(lc);
	ck_assert_str_eq(str_at(lc, lcl, "state.k"), "v");
	lc = pbus_request_local(rq1, M, &lcl);
	ck_assert(!lc || !has(lc, lcl, "state.k"));

	/* another request does not see it */
	run(&t, rq2, TOOL_PRE, TOOL("orig"), &o);
	ck_assert(!has(o.metadata, o.metadata_len, "seen_by_L.lctx.state.k"));

	/* the post hook of the same request does, for L only */
	run(&t, rq1, TOOL_POST, J("{'name': 'search', 'result': {}}"), &o);
	ck_assert_str_eq(MS(&o, "seen_by_L.lctx.state.k"), "v");
	ck_assert(!has(o.metadata, o.metadata_len, "seen_by_M.lctx.state.k"));
	pbus_request_destroy(rq1);
	pbus_request_destroy(rq2);
	mt_close(&t);
}
END_TEST

/* ------------------------------------------------------------ timeouts */

START_TEST(per_plugin_timeout_overrides_plugin_timeout)
{
	struct pl pl[] = {
		/* longer than plugin_timeout, within its own */
		{.name = "S",
		 .prio = 10,
		 .cfg = "action: modify, set: {args: {by: S}}, sleep_ms: 300",
		 .extra = "timeout: 3"},
		/* plugin_timeout applies */
		{.name = "G",
		 .prio = 20,
		 .cfg = "action: sleep, sleep_ms: 1500"},
	};
	struct mt t;
	struct pbus_request *rq;
	struct pbus_outcome o;
	uint64_t t0, dt;

	mt_open(&t, "plugin_timeout: 0.15", NULL, pl, 2);
	rq = req(&t, "r1");
	t0 = th_now_ms();
	run(&t, rq, TOOL_PRE, TOOL("orig"), &o);
	dt = th_now_ms() - t0;
	ck_assert_int_eq(o.continue_processing, 0);
	ck_assert_int_eq(o.error, -ETIMEDOUT);
	ck_assert_str_eq(dec(&o), "G");
	ck_assert_str_eq(PS(&o, "args.by"), "S"); /* S's answer was taken */
	ck_assert_msg(dt >= 400 && dt < 400 + th_bound(800, 1300),
		      "chain took %llu ms",
		      (unsigned long long)dt);
	ck_assert_uint_eq(stats_of(&t, "S").timeouts, 0);
	ck_assert_uint_eq(stats_of(&t, "G").timeouts, 1);
	pbus_request_destroy(rq);
	mt_close(&t);
}
END_TEST

START_TEST(short_per_plugin_timeout_wins_over_a_long_plugin_timeout)
{
	struct pl pl[] = {
		{.name = "S",
		 .prio = 10,
		 .cfg = "action: sleep, sleep_ms: 2000",
		 .extra = "timeout: 0.1"},
	};
	struct mt t;
	struct pbus_request *rq;
	struct pbus_outcome o;
	uint64_t t0, dt;

	mt_open(&t, "plugin_timeout: 30", NULL, pl, 1);
	rq = req(&t, "r1");
	t0 = th_now_ms();
	run(&t, rq, TOOL_PRE, TOOL("orig"), &o);
	dt = th_now_ms() - t0;
	ck_assert_int_eq(o.error, -ETIMEDOUT);
	ck_assert_msg(dt >= 90 && dt < th_slack(1000), "timed out after %llu ms",
		      (unsigned long long)dt);
	pbus_request_destroy(rq);
	mt_close(&t);
}
END_TEST

START_TEST(late_answer_is_dropped_and_does_not_disturb_the_next_call)
{
	/* only the first call is slow; its answer arrives during the second */
	struct pl pl[] = {
		{.name = "S",
		 .prio = 10,
		 .on_error = "ignore",
		 .cfg = "action: modify, set: {headers: {slow: yes}}, "
			"sleep_ms: 500, sleep_calls: 1, echo_ctx: true",
		 .extra = "timeout: 0.4"},
	};
	struct mt t;
	struct pbus_request *rq;
	struct pbus_outcome o;

	mt_open(&t, NULL, NULL, pl, 1);
	rq = req(&t, "r1");
	run(&t, rq, TOOL_PRE, J("{'name': 'search', 'args': {'i': 1}}"), &o);
	ck_assert_int_eq(o.continue_processing, 1);
	ck_assert_int_eq(o.modified, 0);
	ck_assert(!MHAS(&o, "seen_by_S"));
	ck_assert_uint_eq(stats_of(&t, "S").timeouts, 1);
	pbus_request_destroy(rq);

	rq = req(&t, "r2");
	run(&t, rq, TOOL_PRE, J("{'name': 'search', 'args': {'i': 2}}"), &o);
	ck_assert_int_eq(o.continue_processing, 1);
	ck_assert_int_eq(o.error, 0);
	ck_assert_int_eq(MI(&o, "seen_by_S.payload.args.i"), 2);
	ck_assert_str_eq(MS(&o, "seen_by_S.gctx.request_id"), "r2");
	ck_assert_int_eq(PI(&o, "args.i"), 2);
	ck_assert_str_eq(PS(&o, "headers.slow"), "yes");
	ck_assert_uint_eq(stats_of(&t, "S").timeouts, 1);
	ck_assert_int_eq(calls(&t, "S"), 2);
	pbus_request_destroy(rq);
	mt_close(&t);
}
END_TEST

/* ------------------------------------------------------------ limits */

START_TEST(payload_over_max_payload_size_is_refused_before_any_plugin)
{
	struct pl pl[] = {{.name = "A", .prio = 10},
			  {.name = "B", .prio = 20, .mode = "permissive"}};
	static char big[1200];
	struct mt t;
	struct pbus_request *rq;
	struct pbus_outcome o;

	memset(big, 'x', sizeof(big) - 1);
	mt_open(&t, NULL, "bus: {max_payload_size: 1000}", pl, 2);
	rq = req(&t, "r1");
	run(&t, rq, TOOL_PRE, J("{'name': 'search', 'args': {'s': '%s'}}", big),
	    &o);
	ck_assert_int_eq(o.continue_processing, 0);
	ck_assert_ptr_nonnull(o.violation);
	ck_assert_str_eq(o.violation->code, "PAYLOAD_TOO_LARGE");
	ck_assert_uint_eq(o.plugins_run, 0);
	ck_assert_int_eq(calls(&t, "A"), 0);
	ck_assert_int_eq(calls(&t, "B"), 0);
	/* under the limit goes through */
	big[500] = 0;
	run(&t, rq, TOOL_PRE, J("{'name': 'search', 'args': {'s': '%s'}}", big),
	    &o);
	ck_assert_int_eq(o.continue_processing, 1);
	ck_assert_uint_eq(o.plugins_run, 2);
	pbus_request_destroy(rq);
	mt_close(&t);
}
END_TEST

START_TEST(tool_pre_write_policy_applies_name_and_args_and_drops_other_keys)
{
	struct pl pl[] = {
		{.name = "W",
		 .prio = 10,
		 .cfg = "action: modify, set: {name: renamed, "
			"args: {a: 1}, extra: 1}"},
		{.name = "N", .prio = 20, .cfg = "echo_ctx: true"},
	};
	struct mt t;
	struct pbus_request *rq;
	struct pbus_outcome o;

	mt_open(&t, NULL, NULL, pl, 2);
	rq = req(&t, "r1");
	run(&t, rq, TOOL_PRE, TOOL("orig"), &o);
	ck_assert_int_eq(o.continue_processing, 1);
	ck_assert_str_eq(PS(&o, "name"), "renamed");
	ck_assert_int_eq(PI(&o, "args.a"), 1);
	ck_assert(!has(o.payload, o.payload_len, "args.by"));
	ck_assert(!has(o.payload, o.payload_len, "extra"));
	ck_assert(!has(o.metadata, o.metadata_len, "seen_by_N.payload.extra"));
	ck_assert_str_eq(MS(&o, "seen_by_N.payload.name"), "renamed");
	ck_assert_uint_eq(stats_of(&t, "W").dropped_fields, 1);
	ck_assert_int_eq(o.modified, 1);
	pbus_request_destroy(rq);
	mt_close(&t);
}
END_TEST

START_TEST(tool_post_write_policy_keeps_only_result)
{
	struct pl pl[] = {
		{.name = "W",
		 .prio = 10,
		 .cfg = "action: modify, set: {name: renamed, "
			"result: {r: 2}}"},
	};
	struct mt t;
	struct pbus_request *rq;
	struct pbus_outcome o;

	mt_open(&t, NULL, NULL, pl, 1);
	rq = req(&t, "r1");
	run(&t, rq, TOOL_POST, J("{'name': 'search', 'result': {'r': 1}}"), &o);
	ck_assert_int_eq(o.continue_processing, 1);
	ck_assert_str_eq(PS(&o, "name"), "search");
	ck_assert_int_eq(PI(&o, "result.r"), 2);
	ck_assert_uint_eq(stats_of(&t, "W").dropped_fields, 1);
	pbus_request_destroy(rq);
	mt_close(&t);
}
END_TEST

/* ------------------------------------------------------------ threads */

#define NTHR 4
#define NITER 500

struct thr {
	struct mt *t;
	int idx, ok;
	char why[128];
};

static void *thr_main(void *arg)
{
	struct thr *th = arg;
	char rid[32], name[32];

	for (int i = 0; i < NITER; i++) {
		struct pbus_gctx g = {.request_id = rid, .user = "u"};
		struct pbus_request *rq;
		struct pbus_outcome o;
		struct mb p;
		const char *s;

		snprintf(rid, sizeof(rid), "t%d-r%d", th->idx, i);
		snprintf(name, sizeof(name), "tool-%d-%d", th->idx, i);
		p = J("{'name': '%s', 'args': {'i': %d}}", name, i);
		if (pbus_request_create(th->t->m, &g, &rq)) {
			snprintf(th->why, sizeof(th->why), "create failed");
			goto out;
		}
		if (pbus_run(th->t->m, rq, TOOL_PRE, p.p, p.n, &o) ||
		    !o.continue_processing) {
			snprintf(th->why, sizeof(th->why), "%s: run failed",
				 rid);
			pbus_request_destroy(rq);
			goto out;
		}
		s = PS(&o, "name");
		if (!s || strcmp(s, name) || PI(&o, "args.i") != i ||
		    !PS(&o, "headers.a") || MI(&o, "b") != 2 ||
		    MI(&o, "seen_by_C.payload.args.i") != i ||
		    strcmp(MS(&o, "seen_by_C.gctx.request_id") ?: "", rid) ||
		    strcmp(MS(&o, "seen_by_C.payload.headers.a") ?: "", "1")) {
			snprintf(th->why, sizeof(th->why), "%s: wrong result",
				 rid);
			pbus_request_destroy(rq);
			goto out;
		}
		pbus_request_destroy(rq);
		th->ok++;
	}
out:
	j_release();
	return NULL;
}

START_TEST(four_threads_run_500_requests_each_through_a_3_plugin_chain)
{
	struct pl pl[] = {
		{.name = "A",
		 .prio = 10,
		 .cfg = "action: modify, set: {headers: {a: '1'}}"},
		{.name = "B", .prio = 20, .cfg = "metadata: {b: 2}"},
		{.name = "C", .prio = 30, .cfg = "echo_ctx: true"},
	};
	pthread_t tid[NTHR];
	struct thr th[NTHR];
	struct mt t;

	mt_open(&t, NULL, NULL, pl, 3);
	for (int i = 0; i < NTHR; i++) {
		th[i] = (struct thr){.t = &t, .idx = i};
		ck_assert_int_eq(
			pthread_create(&tid[i], NULL, thr_main, &th[i]), 0);
	}
	for (int i = 0; i < NTHR; i++) {
		pthread_join(tid[i], NULL);
		ck_assert_msg(th[i].ok == NITER, "thread %d: %d ok; %s", i,
			      th[i].ok, th[i].why);
	}
	ck_assert_uint_eq(stats_of(&t, "C").calls, NTHR * NITER);
	mt_close(&t);
}
END_TEST

/* ------------------------------------------------------------ registry */

START_TEST(has_hooks_is_true_only_for_hooks_an_enabled_plugin_implements)
{
	struct pl pl[] = {
		{.name = "A",
		 .prio = 10,
		 .hooks = "[tool_pre_invoke, resource_pre_fetch]"},
		{.name = "D",
		 .prio = 10,
		 .mode = "disabled",
		 .hooks = "[prompt_pre_fetch]"},
		{.name = "N",
		 .prio = 10,
		 .down = 1,
		 .hooks = "[agent_pre_invoke]"},
	};
	struct mt t;

	mt_open(&t, NULL, NULL, pl, 3);
	ck_assert_int_eq(pbus_mgr_has_hooks(t.m, TOOL_PRE), 1);
	ck_assert_int_eq(pbus_mgr_has_hooks(t.m, PBUS_HOOK_RESOURCE_PRE_FETCH),
			 1);
	ck_assert_int_eq(pbus_mgr_has_hooks(t.m, PBUS_HOOK_AGENT_PRE_INVOKE),
			 1);
	ck_assert_int_eq(pbus_mgr_has_hooks(t.m, PBUS_HOOK_PROMPT_PRE_FETCH),
			 0);
	ck_assert_int_eq(pbus_mgr_has_hooks(t.m, TOOL_POST), 0);
	ck_assert_int_eq(pbus_mgr_has_hooks(t.m, PBUS_HOOK_HTTP_PRE_REQUEST),
			 0);
	ck_assert_int_eq(pbus_mgr_has_hooks(t.m, PBUS_HOOK_COUNT), 0);
	ck_assert_int_eq(pbus_mgr_has_hooks(t.m, -1), 0);
	mt_close(&t);
}
END_TEST

START_TEST(plugin_names_and_count_follow_the_config)
{
	struct pl pl[] = {{.name = "first", .prio = 30},
			  {.name = "second", .prio = 10}};
	struct mt t;

	mt_open(&t, NULL, NULL, pl, 2);
	ck_assert_uint_eq(pbus_mgr_plugin_count(t.m), 2);
	ck_assert_str_eq(pbus_mgr_plugin_name(t.m, pid_of(&t, "first")),
			 "first");
	ck_assert_str_eq(pbus_mgr_plugin_name(t.m, pid_of(&t, "second")),
			 "second");
	mt_close(&t);
}
END_TEST

/* ------------------------------------------------------------ suite */

static void sweep(void)
{
	DIR *d = opendir("/tmp");
	struct dirent *e;
	const char *base = strrchr(tmp_prefix, '/') + 1;
	char p[PATH_MAX];

	if (!d)
		return;
	while ((e = readdir(d)))
		if (!strncmp(e->d_name, base, strlen(base))) {
			snprintf(p, sizeof(p), "/tmp/%s", e->d_name);
			rm_dir(p);
		}
	closedir(d);
}

static TCase *tcase(Suite *s, const char *name)
{
	TCase *tc = tcase_create(name);

	tcase_set_timeout(tc, 30);
	tcase_add_unchecked_fixture(tc, NULL, sweep);
	suite_add_tcase(s, tc);
	return tc;
}

// clang-format off
static Suite *mgr_suite(void)
{
	Suite *s = suite_create("mgr");
	TCase *tc;

	tc = tcase(s, "order");
	tcase_add_test(tc, chain_runs_in_ascending_priority_with_ties_in_yaml_order);
	tcase_add_test(tc, phases_run_sequential_transform_audit_concurrent_whatever_priority);

	tc = tcase(s, "chain");
	tcase_add_test(tc, modified_payload_feeds_the_next_plugin_and_decided_by_names_it);
	tcase_add_test(tc, unmodified_chain_returns_the_input_payload);
	tcase_add_test(tc, empty_chain_continues_unmodified_without_calls);
	tcase_add_test(tc, metadata_merges_across_plugins_last_writer_wins);
	tcase_add_test(tc, http_headers_merge_last_writer_wins_except_audit);
	tcase_add_test(tc, violation_carries_its_http_status_and_headers);
	tcase_add_test(tc, malformed_http_headers_are_a_plugin_error);
	tcase_add_test(tc, violation_carries_every_field_and_the_blocking_plugins_input);
	tcase_add_test(tc, violation_without_mcp_error_code_defaults_to_minus_32603);
	tcase_add_test(tc, run_rejects_a_non_map_payload_and_a_bad_hook);

	tc = tcase(s, "modes");
	tcase_add_test(tc, enforce_violation_halts_with_the_blocking_plugins_input);
	tcase_add_test(tc, enforce_error_fails_the_chain_with_eio);
	tcase_add_test(tc, enforce_timeout_fails_the_chain_with_etimedout);
	tcase_add_test(tc, enforce_agent_down_fails_the_chain_with_enotconn);
	tcase_add_test(tc, enforce_ignore_error_violation_halts_unlike_r1);
	tcase_add_test(tc, enforce_ignore_error_error_is_ignored);
	tcase_add_test(tc, enforce_ignore_error_timeout_is_ignored);
	tcase_add_test(tc, enforce_ignore_error_agent_down_is_ignored);
	tcase_add_test(tc, permissive_violation_is_counted_and_the_chain_continues);
	tcase_add_test(tc, permissive_error_is_ignored);
	tcase_add_test(tc, permissive_timeout_is_ignored);
	tcase_add_test(tc, permissive_agent_down_is_ignored);
	tcase_add_test(tc, sequential_violation_halts);
	tcase_add_test(tc, sequential_error_fails_by_default);
	tcase_add_test(tc, sequential_timeout_fails_by_default);
	tcase_add_test(tc, sequential_agent_down_fails_by_default);
	tcase_add_test(tc, sequential_error_with_on_error_ignore_continues);
	tcase_add_test(tc, sequential_timeout_with_on_error_ignore_continues);
	tcase_add_test(tc, sequential_agent_down_with_on_error_ignore_continues);
	tcase_add_test(tc, transform_violation_is_suppressed_and_counted);
	tcase_add_test(tc, transform_error_fails_by_default);
	tcase_add_test(tc, transform_timeout_fails_by_default);
	tcase_add_test(tc, transform_agent_down_fails_by_default);
	tcase_add_test(tc, transform_error_with_on_error_ignore_continues);
	tcase_add_test(tc, transform_timeout_with_on_error_ignore_continues);
	tcase_add_test(tc, transform_agent_down_with_on_error_ignore_continues);
	tcase_add_test(tc, audit_violation_is_only_counted);
	tcase_add_test(tc, audit_error_fails_by_default);
	tcase_add_test(tc, audit_timeout_fails_by_default);
	tcase_add_test(tc, audit_agent_down_fails_by_default);
	tcase_add_test(tc, audit_error_with_on_error_ignore_continues);
	tcase_add_test(tc, audit_timeout_with_on_error_ignore_continues);
	tcase_add_test(tc, audit_agent_down_with_on_error_ignore_continues);
	tcase_add_test(tc, concurrent_violation_halts);
	tcase_add_test(tc, concurrent_error_fails_by_default);
	tcase_add_test(tc, concurrent_timeout_fails_by_default);
	tcase_add_test(tc, concurrent_agent_down_fails_by_default);
	tcase_add_test(tc, concurrent_error_with_on_error_ignore_continues);
	tcase_add_test(tc, concurrent_timeout_with_on_error_ignore_continues);
	tcase_add_test(tc, concurrent_agent_down_with_on_error_ignore_continues);
	tcase_add_test(tc, fire_and_forget_violation_is_ignored);
	tcase_add_test(tc, fire_and_forget_error_is_swallowed_and_counted);
	tcase_add_test(tc, fire_and_forget_timeout_is_swallowed);
	tcase_add_test(tc, fire_and_forget_agent_down_is_swallowed);
	tcase_add_test(tc, disabled_plugin_is_never_started_nor_called);
	tcase_add_test(tc, no_spawn_starts_no_agent_and_calls_fail_as_agent_down);

	tc = tcase(s, "on_error");
	tcase_add_test(tc, enforce_ignore_error_with_on_error_fail_fails_on_error);
	tcase_add_test(tc, enforce_with_on_error_ignore_ignores_a_timeout);
	tcase_add_test(tc, permissive_with_on_error_fail_fails_when_the_agent_is_down);
	tcase_add_test(tc, on_error_disable_ignores_the_error_and_skips_the_plugin_afterwards);
	tcase_add_test(tc, fail_on_plugin_error_fails_an_enforce_ignore_error_error);
	tcase_add_test(tc, fail_on_plugin_error_fails_a_permissive_timeout);
	tcase_add_test(tc, fail_on_plugin_error_fails_an_audit_agent_down);
	tcase_add_test(tc, fail_on_plugin_error_overrides_on_error_ignore);
	tcase_add_test(tc, fail_on_plugin_error_fails_a_concurrent_error);
	tcase_add_test(tc, fail_on_plugin_error_does_not_fail_fire_and_forget);
	tcase_add_test(tc, fail_on_plugin_error_leaves_a_permissive_violation_alone);
	tcase_add_test(tc, non_map_modified_payload_is_a_plugin_error_under_on_error_fail);
	tcase_add_test(tc, non_map_modified_payload_is_ignored_under_on_error_ignore);
	tcase_add_test(tc, agent_that_crashes_mid_call_fails_the_chain);
	tcase_add_test(tc, hung_agent_times_out_and_close_still_stops_it);

	tc = tcase(s, "modify_state");
	tcase_add_test(tc, enforce_modification_is_chained_and_state_merged);
	tcase_add_test(tc, enforce_ignore_error_modification_is_chained_and_state_merged);
	tcase_add_test(tc, permissive_modification_is_chained_and_state_merged);
	tcase_add_test(tc, sequential_modification_is_chained_and_state_merged);
	tcase_add_test(tc, transform_modification_is_chained_and_state_merged);
	tcase_add_test(tc, audit_modification_and_state_are_discarded);
	tcase_add_test(tc, concurrent_modification_is_discarded_but_state_merged);
	tcase_add_test(tc, fire_and_forget_modification_and_state_are_discarded);

	tc = tcase(s, "conditions");
	tcase_add_test(tc, server_and_tenant_conditions_match_the_global_context);
	tcase_add_test(tc, tool_prompt_resource_agent_conditions_match_the_payload_subject);
	tcase_add_test(tc, user_patterns_match_by_substring);
	tcase_add_test(tc, content_types_match_the_normalised_base_type);
	tcase_add_test(tc, fields_of_one_condition_are_anded_and_conditions_are_ored);
	tcase_add_test(tc, empty_conditions_match_everything);

	tc = tcase(s, "bands");
	tcase_add_test(tc, parallel_band_of_four_runs_at_once);
	tcase_add_test(tc, band_runs_one_by_one_when_parallel_is_off);
	tcase_add_test(tc, band_members_get_the_bands_input_and_all_different_fields_apply);
	tcase_add_test(tc, band_conflict_on_one_field_takes_the_later_plugin_in_yaml_order);
	tcase_add_test(tc, band_violation_halts_with_the_bands_input_payload);

	tc = tcase(s, "concurrent");
	tcase_add_test(tc, concurrent_plugins_run_at_once);
	tcase_add_test(tc, concurrent_violation_report_does_not_depend_on_answer_time);
	tcase_add_test(tc, concurrent_violation_blocks_and_the_first_in_yaml_order_is_reported);
	tcase_add_test(tc, fire_and_forget_does_not_delay_the_chain_and_its_changes_are_ignored);

	tc = tcase(s, "contexts");
	tcase_add_test(tc, global_context_fields_are_delivered_to_every_plugin);
	tcase_add_test(tc, request_without_id_is_refused);
	tcase_add_test(tc, global_state_reaches_later_plugins_and_the_post_hook);
	tcase_add_test(tc, local_state_goes_from_pre_to_post_of_the_same_request_only);

	tc = tcase(s, "timeouts");
	tcase_add_test(tc, per_plugin_timeout_overrides_plugin_timeout);
	tcase_add_test(tc, short_per_plugin_timeout_wins_over_a_long_plugin_timeout);
	tcase_add_test(tc, late_answer_is_dropped_and_does_not_disturb_the_next_call);

	tc = tcase(s, "limits");
	tcase_add_test(tc, payload_over_max_payload_size_is_refused_before_any_plugin);
	tcase_add_test(tc, tool_pre_write_policy_applies_name_and_args_and_drops_other_keys);
	tcase_add_test(tc, tool_post_write_policy_keeps_only_result);

	tc = tcase(s, "threads");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, four_threads_run_500_requests_each_through_a_3_plugin_chain);

	tc = tcase(s, "registry");
	tcase_add_test(tc, has_hooks_is_true_only_for_hooks_an_enabled_plugin_implements);
	tcase_add_test(tc, plugin_names_and_count_follow_the_config);
	return s;
}
// clang-format on

int main(void)
{
	SRunner *sr;
	int nf;

	snprintf(tmp_prefix, sizeof(tmp_prefix), "/tmp/pbus-mgrtest-%d",
		 (int)getpid());
	sr = srunner_create(mgr_suite());
	srunner_run_all(sr, CK_NORMAL);
	nf = srunner_ntests_failed(sr);
	srunner_free(sr);
	sweep();
	return nf ? 1 : 0;
}
