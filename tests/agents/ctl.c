// SPDX-License-Identifier: MIT
/*
 * agent-ctl: a configurable test agent for the plugin manager's tests, and a
 * short example of an agent. It serves all 12 hooks the same way; what it
 * does comes from its plugin's `config:` map (PBUS_PLUGIN and PBUS_SOCK come
 * from the manager that spawns it):
 *
 *   action: allow | modify | violate | fail | sleep | crash | garbage | hang
 *     allow    answer nothing: continue, unchanged (the default)
 *     modify   modified_payload = the payload with the `set` keys replaced
 *              or added (top level)
 *     violate  block with {reason, description, code, details,
 *              mcp_error_code?}
 *     fail     a plugin error ("error": message)
 *     sleep    sleep_ms, then allow
 *     crash    exit(3) on the first call
 *     garbage  a modified_payload that is not a map (the integer 42)
 *     hang     never answer (SIGTERM kills it; it exits when orphaned)
 *   sleep_ms      sleep this long before acting, whatever the action
 *   sleep_calls   sleep only during the first N calls (default: every call)
 *   set           map, for modify
 *   code, reason, description, details, mcp_error_code   for violate
 *   metadata      map answered as "metadata"
 *   state         map answered as "state" (the local context's state)
 *   global_state  map answered as "global_state"
 *   http_headers  any value, answered as "http_headers" (inside the
 *                 violation when the action is violate); not checked here,
 *                 so tests can send malformed ones
 *   echo_ctx      true: add metadata "seen_by_<name>": {gctx, lctx, payload}
 *                 with the contexts and payload this call received
 *   count_file    path: append "<hook>\n" for every call (before sleeping)
 *
 * Single-threaded, like every agent: calls are served one at a time.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <pbus/pbus.h>
#include <pbus/mp.h>

enum { ALLOW, MODIFY, VIOLATE, FAIL, SLEEP, CRASH, GARBAGE, HANG };

static const char *const action_names[] = {
	"allow", "modify", "violate", "fail",
	"sleep", "crash",  "garbage", "hang",
};

struct ctl {
	const char *name;
	int action;
	int64_t sleep_ms, sleep_calls;
	struct pbus_mp set, details, metadata, state, gstate, hdrs;
	char *code, *reason, *description;
	int64_t mcp_error_code;
	bool has_mcp, echo;
	int count_fd;
	uint64_t calls;
	pid_t ppid;
};

/* A string from the config as a C string, or @def. */
static char *cfg_str(struct pbus_mp cfg, const char *key, const char *def)
{
	struct pbus_mp v;
	const char *s;
	size_t n;

	if (pbus_mp_get(cfg, key, &v) == 0 && pbus_mp_str(v, &s, &n) == 0)
		return strndup(s, n);
	return def ? strdup(def) : NULL;
}

static struct pbus_mp cfg_map(struct pbus_mp cfg, const char *key)
{
	struct pbus_mp v = {0};

	if (pbus_mp_get(cfg, key, &v) || pbus_mp_type(v) != PBUS_MP_MAP)
		return (struct pbus_mp){0};
	return v;
}

static int64_t cfg_int(struct pbus_mp cfg, const char *key, int64_t def)
{
	struct pbus_mp v;
	int64_t i;

	if (pbus_mp_get(cfg, key, &v) == 0 && pbus_mp_int(v, &i) == 0)
		return i;
	return def;
}

static int load_config(struct ctl *t, const void *buf, size_t len)
{
	struct pbus_mp cfg = {0}, v;
	char *s, *path;
	bool b = false;

	if (buf && pbus_mp_open(buf, len, &cfg))
		return -EBADMSG;
	s = cfg_str(cfg, "action", "allow");
	t->action = -1;
	for (int i = 0; i <= HANG; i++)
		if (!strcmp(s, action_names[i]))
			t->action = i;
	free(s);
	if (t->action < 0)
		return -EINVAL;
	t->sleep_ms = cfg_int(cfg, "sleep_ms", 0);
	t->sleep_calls = cfg_int(cfg, "sleep_calls", 0);
	t->set = cfg_map(cfg, "set");
	t->details = cfg_map(cfg, "details");
	t->metadata = cfg_map(cfg, "metadata");
	t->state = cfg_map(cfg, "state");
	t->gstate = cfg_map(cfg, "global_state");
	if (pbus_mp_get(cfg, "http_headers", &t->hdrs))
		t->hdrs = (struct pbus_mp){0};
	t->code = cfg_str(cfg, "code", "CTL_VIOLATION");
	t->reason = cfg_str(cfg, "reason", "blocked by agent-ctl");
	t->description =
		cfg_str(cfg, "description", "agent-ctl was told to block");
	t->has_mcp = pbus_mp_get(cfg, "mcp_error_code", &v) == 0 &&
		     pbus_mp_int(v, &t->mcp_error_code) == 0;
	t->echo = pbus_mp_get(cfg, "echo_ctx", &v) == 0 &&
		  pbus_mp_bool(v, &b) == 0 && b;
	t->count_fd = -1;
	path = cfg_str(cfg, "count_file", NULL);
	if (path) {
		t->count_fd = open(
			path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		free(path);
		if (t->count_fd < 0)
			return -errno;
	}
	return 0;
}

static void free_config(struct ctl *t)
{
	free(t->code);
	free(t->reason);
	free(t->description);
	if (t->count_fd >= 0)
		close(t->count_fd);
}

static void sleep_ms(int64_t ms)
{
	struct timespec ts = {.tv_sec = ms / 1000,
			      .tv_nsec = (ms % 1000) * 1000000};

	nanosleep(&ts, NULL); /* a signal cuts it short: stop promptly */
}

/* Never answer. The gateway's SIGTERM must kill us, not just set a flag. */
static void hang(const struct ctl *t)
{
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	for (;;) {
		sleep_ms(50);
		if (getppid() != t->ppid)
			_exit(0); /* the gateway is gone */
	}
}

/* A view of msgpack bytes from the bus, or nil when absent. */
static void pack_view(msgpack_packer *pk, const void *p, size_t len)
{
	struct pbus_mp v;

	if (p && len && pbus_mp_open(p, len, &v) == 0)
		pbus_mp_copy(pk, v);
	else
		msgpack_pack_nil(pk);
}

/* metadata = config metadata + {"seen_by_<name>": {gctx, lctx, payload}} */
static void put_metadata(struct ctl *t, struct pbus_call *c)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	const void *p;
	size_t len;
	char key[96];

	if (!t->echo) {
		if (t->metadata.len)
			pbus_mp_copy(pbus_call_put(c, "metadata"), t->metadata);
		return;
	}
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 3);
	pbus_mp_pack_cstr(&pk, "gctx");
	p = pbus_call_global_ctx(c, &len);
	pack_view(&pk, p, len);
	pbus_mp_pack_cstr(&pk, "lctx");
	p = pbus_call_local_ctx(c, &len);
	pack_view(&pk, p, len);
	pbus_mp_pack_cstr(&pk, "payload");
	p = pbus_call_payload(c, &len);
	pack_view(&pk, p, len);
	snprintf(key, sizeof(key), "seen_by_%s", t->name);
	pbus_mp_set(t->metadata, key,
		    (struct pbus_mp){(const uint8_t *)sb.data, sb.size},
		    pbus_call_put(c, "metadata"));
	msgpack_sbuffer_destroy(&sb);
}

static void put_violation(struct ctl *t, struct pbus_call *c)
{
	msgpack_packer *pk = pbus_call_put(c, "violation");

	msgpack_pack_map(pk, 4 + t->has_mcp + (t->hdrs.len != 0));
	pbus_mp_pack_cstr(pk, "reason");
	pbus_mp_pack_cstr(pk, t->reason);
	pbus_mp_pack_cstr(pk, "description");
	pbus_mp_pack_cstr(pk, t->description);
	pbus_mp_pack_cstr(pk, "code");
	pbus_mp_pack_cstr(pk, t->code);
	pbus_mp_pack_cstr(pk, "details");
	if (t->details.len)
		pbus_mp_copy(pk, t->details);
	else
		msgpack_pack_map(pk, 0);
	if (t->has_mcp) {
		pbus_mp_pack_cstr(pk, "mcp_error_code");
		msgpack_pack_int64(pk, t->mcp_error_code);
	}
	if (t->hdrs.len) {
		pbus_mp_pack_cstr(pk, "http_headers");
		pbus_mp_copy(pk, t->hdrs);
	}
	pbus_call_set_flags(c, PBUS_RF_STOP);
}

static int on_call(struct pbus_call *c, void *arg)
{
	struct ctl *t = arg;
	struct pbus_mp payload = {0};
	const void *p;
	size_t len;

	t->calls++;
	if (t->count_fd >= 0) {
		char line[64];
		int n = snprintf(line, sizeof(line), "%s\n",
				 pbus_hook_name(pbus_call_hook(c)));

		if (write(t->count_fd, line, (size_t)n) != n)
			return -EIO;
	}
	if (t->sleep_ms > 0 &&
	    (t->sleep_calls <= 0 || t->calls <= (uint64_t)t->sleep_calls))
		sleep_ms(t->sleep_ms);

	switch (t->action) {
	case CRASH:
		exit(3);
	case HANG:
		hang(t);
		break;
	case FAIL:
		return pbus_call_fail(c, "agent-ctl: told to fail");
	case MODIFY:
		p = pbus_call_payload(c, &len);
		if (pbus_mp_open(p, len, &payload))
			return -EBADMSG;
		if (pbus_mp_merge(payload, t->set, pbus_call_modify(c)))
			return -EINVAL;
		break;
	case GARBAGE:
		msgpack_pack_int(pbus_call_modify(c), 42);
		break;
	case VIOLATE:
		put_violation(t, c);
		break;
	default: /* ALLOW, SLEEP */
		break;
	}
	put_metadata(t, c);
	if (t->state.len)
		pbus_mp_copy(pbus_call_put(c, "state"), t->state);
	if (t->gstate.len)
		pbus_mp_copy(pbus_call_put(c, "global_state"), t->gstate);
	if (t->hdrs.len && t->action != VIOLATE)
		pbus_mp_copy(pbus_call_put(c, "http_headers"), t->hdrs);
	return 0;
}

int main(void)
{
	struct pbus_agent_opts o = {0};
	struct ctl t = {.count_fd = -1};
	struct pbus_agent *a;
	const void *cfg;
	size_t len;
	int ret;

	pbus_set_log_fn(pbus_log_stderr, NULL);
	t.ppid = getppid();
	ret = pbus_agent_create(&o, &a);
	if (ret) {
		fprintf(stderr,
			"agent-ctl: %s (need PBUS_PLUGIN and "
			"PBUS_SOCK)\n",
			strerror(-ret));
		return 1;
	}
	t.name = pbus_agent_name(a);
	for (int h = 0; h < PBUS_HOOK_COUNT; h++)
		pbus_agent_on(a, h, on_call, &t);
	ret = pbus_agent_connect(a);
	if (ret) {
		fprintf(stderr, "agent-ctl %s: connect: %s\n", t.name,
			strerror(-ret));
		goto out;
	}
	cfg = pbus_agent_config(a, &len);
	ret = load_config(&t, cfg, len);
	if (ret) {
		fprintf(stderr, "agent-ctl %s: bad config: %s\n", t.name,
			strerror(-ret));
		goto out;
	}
	ret = pbus_agent_run(a);
out:
	free_config(&t);
	pbus_agent_destroy(a);
	return ret ? 1 : 0;
}
