// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: the plugin manager's handling of agent answers
 * (bus/mgr_run.c decode(), absorb(), policy(), band_merge(), end_blocked(),
 * set_local(), merge_into()), reached through pbus_run().
 *
 * Setup, once: a manager (no spawning) over a config with four plugins:
 * "a" and "b" share a priority in the sequential phase (parallel bands on,
 * so their answers are merged), "c" is a transform, "d" is concurrent. Each
 * has a real agent on a thread of this process, whose handler answers with
 * the keys and raw value bytes the current input scripts for that plugin:
 * the value bytes are written as they are, so a body may be any map with
 * any values, malformed ones included.
 *
 * Per input: a hook, a payload (must be a msgpack map to get anywhere), and
 * one answer script per plugin; run the pre hook, then the post hook of the
 * same request (local contexts carry over).
 *
 * Oracles: pbus_run() returns 0 or -EBADMSG (payload not a map); the
 * outcome's payload (any one object for HTTP hooks, which take results as
 * they are), metadata and violation details are always valid msgpack maps,
 * whatever the agents said; the request's state and local contexts are
 * valid maps when present.
 *
 * Input: [hook][plen][payload][per plugin: [flags][nkeys]
 *   nkeys x ([key index][vlen][value bytes])].
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <pbus/pbus.h>
#include <pbus/agent.h>
#include <pbus/config.h>
#include <pbus/hooks.h>
#include <pbus/mgr.h>
#include <pbus/mp.h>

#include "fuzz_in.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, \
				__LINE__, #cond);                              \
			abort();                                               \
		}                                                              \
	} while (0)

#define NPLUG 4
#define MAXKEYS 8
#define MAXVAL 512

static const char *const names[NPLUG] = {"a", "b", "c", "d"};

static const char *const keys[] = {
	"modified_payload", "violation",    "metadata", "state",
	"local_metadata",   "global_state", "error",	"x",
	"http_headers",
};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

struct script {
	uint32_t flags;
	unsigned n;
	struct {
		uint8_t key;
		uint16_t len;
		uint8_t val[MAXVAL];
	} kv[MAXKEYS];
};

static struct {
	char sock[108];
	struct pbus_config *cfg;
	struct pbus_mgr *m;
	struct pbus_agent *ag[NPLUG];
	pthread_t th[NPLUG];
	struct script sc[NPLUG]; /* written before pbus_run(), read by agents */
} g;

#define ALL_HOOKS                                                              \
	"[prompt_pre_fetch, prompt_post_fetch, tool_pre_invoke, "              \
	"tool_post_invoke, resource_pre_fetch, resource_post_fetch, "          \
	"agent_pre_invoke, agent_post_invoke, http_pre_request, "              \
	"http_post_request, http_auth_resolve_user, "                          \
	"http_auth_check_permission]"

static const char yaml[] =
	"plugin_settings:\n"
	"  parallel_execution_within_band: true\n"
	"  plugin_timeout: 5\n"
	"bus:\n"
	"  max_payload_size: 8192\n"
	"  ring_slots: 8\n"
	"  lanes: 8\n"
	"supervision:\n"
	"  circuit_failures: 1000000\n"
	"  watchdog_timeouts: 1000000\n"
	"plugins:\n"
	"  - {name: a, kind: agent, mode: sequential, priority: 10,"
	" on_error: ignore, hooks: " ALL_HOOKS "}\n"
	"  - {name: b, kind: agent, mode: sequential, priority: 10,"
	" on_error: ignore, hooks: " ALL_HOOKS "}\n"
	"  - {name: c, kind: agent, mode: transform, priority: 20,"
	" hooks: " ALL_HOOKS "}\n"
	"  - {name: d, kind: agent, mode: concurrent, priority: 30,"
	" on_error: ignore, hooks: " ALL_HOOKS "}\n";

/* ------------------------------------------------------------ agents */

static int raw_write(msgpack_packer *pk, const void *p, size_t n)
{
	return pk->callback(pk->data, (const char *)p, n);
}

static int handler(struct pbus_call *c, void *arg)
{
	const struct script *s = &g.sc[(uintptr_t)arg];

	for (unsigned i = 0; i < s->n; i++) {
		msgpack_packer *pk = pbus_call_put(c, keys[s->kv[i].key]);

		if (s->kv[i].len)
			raw_write(pk, s->kv[i].val, s->kv[i].len);
		else
			msgpack_pack_nil(pk);
	}
	pbus_call_set_flags(c, s->flags);
	return 0;
}

static void *agent_main(void *arg)
{
	struct pbus_agent *a = arg;

	pbus_agent_run(a);
	return NULL;
}

static void cleanup(void)
{
	for (int i = 0; i < NPLUG; i++)
		pbus_agent_stop(g.ag[i]);
	for (int i = 0; i < NPLUG; i++) {
		pthread_join(g.th[i], NULL);
		pbus_agent_destroy(g.ag[i]);
	}
	pbus_mgr_close(g.m);
	pbus_config_destroy(g.cfg);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct pbus_mgr_opts mo = {.no_spawn = 1};
	static struct pbus_diag d;

	(void)argc;
	(void)argv;
	snprintf(g.sock, sizeof(g.sock), "/tmp/pbus-fuzz-answer-%d.sock",
		 (int)getpid());
	unlink(g.sock);
	mo.sock_path = g.sock;
	if (pbus_config_parse(yaml, sizeof(yaml) - 1, "fuzz_answer", &d,
			      &g.cfg)) {
		char buf[512];

		for (unsigned i = 0; i < d.n; i++)
			fprintf(stderr, "%s\n",
				pbus_diag_format(&d, i, buf, sizeof(buf)));
		abort();
	}
	CHECK(pbus_mgr_open(g.cfg, &mo, &g.m) == 0);
	for (int i = 0; i < NPLUG; i++) {
		struct pbus_agent_opts o = {
			.name = names[i],
			.sock_path = g.sock,
			.no_signals = 1,
		};

		CHECK(pbus_agent_create(&o, &g.ag[i]) == 0);
		for (int h = 0; h < PBUS_HOOK_COUNT; h++)
			CHECK(pbus_agent_on(g.ag[i], h, handler,
					    (void *)(uintptr_t)i) == 0);
		CHECK(pbus_agent_connect(g.ag[i]) == 0);
		CHECK(pthread_create(&g.th[i], NULL, agent_main, g.ag[i]) == 0);
	}
	CHECK(pbus_mgr_wait_ready(g.m, 5000) == 0);
	atexit(cleanup);
	return 0;
}

/* ------------------------------------------------------------ oracles */

static void dump(const char *what, const void *p, size_t len)
{
	fprintf(stderr, "%s (%zu bytes):", what, len);
	for (size_t i = 0; i < len && i < 128; i++)
		fprintf(stderr, " %02x", ((const uint8_t *)p)[i]);
	fprintf(stderr, "\n");
}

/* What reaches an HTTP front end: a map of strings, names without
 * separators or controls, values without CR, LF or NUL. */
static void check_headers(const void *p, size_t len)
{
	struct pbus_mp m, k, v;
	struct pbus_mp_iter it;
	const char *s;
	size_t n;

	CHECK(pbus_mp_open(p, len, &m) == 0 && pbus_mp_type(m) == PBUS_MP_MAP);
	CHECK(pbus_mp_iter_init(m, &it) == 0);
	while (pbus_mp_next(&it, &k, &v) > 0) {
		CHECK(pbus_mp_str(k, &s, &n) == 0 && n > 0);
		for (size_t i = 0; i < n; i++)
			CHECK(s[i] > ' ' && s[i] != ':' && s[i] != 0x7f);
		CHECK(pbus_mp_str(v, &s, &n) == 0);
		for (size_t i = 0; i < n; i++)
			CHECK(s[i] != '\r' && s[i] != '\n' && s[i] != 0);
	}
}

static void check_map(const void *p, size_t len)
{
	struct pbus_mp v;

	CHECK(p != NULL);
	if (pbus_mp_open(p, len, &v) || pbus_mp_type(v) != PBUS_MP_MAP)
		dump("not a map", p, len);
	CHECK(pbus_mp_open(p, len, &v) == 0);
	CHECK(pbus_mp_type(v) == PBUS_MP_MAP);
}

static void check_outcome(int hook, int ret, const struct pbus_outcome *o)
{
	CHECK(ret == 0 || ret == -EBADMSG);
	if (ret)
		return;
	if (hook >= PBUS_HOOK_HTTP_PRE_REQUEST) {
		/* HTTP hooks take cross-type results as they are
		 * (docs/modes.md): any one valid object */
		struct pbus_mp v;

		if (pbus_mp_open(o->payload, o->payload_len, &v))
			dump("payload", o->payload, o->payload_len);
		CHECK(pbus_mp_open(o->payload, o->payload_len, &v) == 0);
	} else {
		check_map(o->payload, o->payload_len);
	}
	check_map(o->metadata, o->metadata_len);
	check_headers(o->http_headers, o->http_headers_len);
	if (o->violation) {
		CHECK(!o->continue_processing);
		CHECK(o->violation->reason && o->violation->description &&
		      o->violation->code);
		check_map(o->violation->details, o->violation->details_len);
		check_headers(o->violation->http_headers,
			      o->violation->http_headers_len);
	}
	if (o->error)
		CHECK(!o->continue_processing && o->error_message);
}

static void check_request(const struct pbus_request *rq)
{
	const void *p;
	size_t n;

	p = pbus_request_state(rq, &n);
	if (p && n)
		check_map(p, n);
	for (unsigned i = 0; i < NPLUG; i++) {
		p = pbus_request_local(rq, i, &n);
		if (p && n)
			check_map(p, n);
	}
}

/* ------------------------------------------------------------ one input */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t empty_map = 0x80;
	struct in in = {data, size};
	struct pbus_gctx gc = {.request_id = "fz", .user = "alice"};
	struct pbus_request *rq;
	struct pbus_outcome out;
	const uint8_t *payload;
	size_t plen;
	int hook, ret;

	if (size < 2)
		return 0;
	hook = u8(&in) % PBUS_HOOK_COUNT;
	plen = u8(&in);
	if (plen > in.n)
		plen = in.n;
	payload = plen ? in.p : &empty_map;
	in.p += plen;
	in.n -= plen;
	if (!plen)
		plen = 1;
	for (int i = 0; i < NPLUG; i++) {
		struct script *s = &g.sc[i];

		s->flags = u8(&in);
		s->n = u8(&in) % (MAXKEYS + 1);
		for (unsigned k = 0; k < s->n; k++) {
			s->kv[k].key = u8(&in) % NKEYS;
			s->kv[k].len = u8(&in);
			if (s->kv[k].len & 0x80) /* long values, rarely */
				s->kv[k].len =
					(uint16_t)((s->kv[k].len & 0x7f) << 2);
			if (s->kv[k].len > in.n)
				s->kv[k].len = (uint16_t)in.n;
			memcpy(s->kv[k].val, in.p, s->kv[k].len);
			in.p += s->kv[k].len;
			in.n -= s->kv[k].len;
		}
	}

	CHECK(pbus_request_create(g.m, &gc, &rq) == 0);
	ret = pbus_run(g.m, rq, hook, payload, plen, &out);
	check_outcome(hook, ret, &out);
	check_request(rq);
	/* the post hook of the same request, on the outcome's payload */
	if (!ret && out.continue_processing && !(hook & 1) && hook < 8) {
		uint8_t *p2 = malloc(out.payload_len);

		memcpy(p2, out.payload, out.payload_len);
		ret = pbus_run(g.m, rq, hook + 1, p2, out.payload_len, &out);
		check_outcome(hook + 1, ret, &out);
		CHECK(ret == 0);
		check_request(rq);
		free(p2);
	}
	pbus_request_destroy(rq);
	return 0;
}
