// SPDX-License-Identifier: MIT
/*
 * pbus-rate_limiter: the framework's RateLimiterPlugin (plugins/
 * rate_limiter/rate_limiter.py): limits per user, per tenant and per tool.
 *
 *   prompt_pre_fetch  checks the user, then (only if the user passed) the
 *                     tenant: "User <u> rate limit exceeded" / "Tenant <t>
 *                     rate limit exceeded", details = that dimension's
 *                     {limited, remaining, reset_in}
 *   tool_pre_invoke   checks user, tenant and tool, counting every one even
 *                     when another blocks: "Rate limit exceeded for tool
 *                     <name>" (or "for user", "for tenant"), details =
 *                     {by_user, by_tenant[, by_tool]}
 * Code RATE_LIMIT, reason "Rate limit exceeded", HTTP status 429 and the
 * headers X-RateLimit-Limit/-Remaining/-Reset (Unix seconds) and Retry-After
 * of the dimension that blocked (as the later framework). A call that passes
 * gets the same map as metadata, and the X-RateLimit-* headers of its
 * tightest limit as the answer's http_headers. A
 * dimension without a limit reports {limited: false}. The user is the global
 * context's "user" (a map's email, id or sub) or "anonymous"; the tenant is
 * "tenant_id" or "default".
 *
 * Algorithms: fixed_window (the default; the original's, a window starts
 * with its first call and lasts the rate's period), sliding_window (a log of
 * call times over the last period) and token_bucket (capacity = the count,
 * refilled at count/period), with the later framework's metadata.
 *
 * Fixes: a rate string is checked when the config is read (the original
 * failed at the first call), and "0/m" blocks every call (the original let
 * the first one through). State lives in this process, like the original's
 * module-level dict: one agent per plugin, so per gateway.
 *
 * Config: by_user, by_tenant ("60/m"), by_tool ({tool: "10/m"}),
 * algorithm (fixed_window|sliding_window|token_bucket), backend (memory).
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <pbus/agent_util.h>

enum algo { FIXED, SLIDING, BUCKET };

struct rate {
	int set;	/* a limit is configured */
	int64_t count;	/* calls per window (0: none allowed) */
	int64_t window; /* seconds */
};

/* One counter: (dimension, id, window). */
struct entry {
	char *key;
	uint64_t hash;
	int64_t window_start, count; /* fixed window */
	double *ts;		     /* sliding window: call times */
	size_t nts, cts;
	double tokens, last_refill; /* token bucket */
	int bucket_init;
	double last_used;
};

struct rl {
	enum algo algo;
	struct rate user, tenant;
	char **tools;
	struct rate *tool_rates;
	int ntools;
	struct entry *tab; /* open addressing, power-of-two size */
	size_t size, used;
	double last_sweep;
};

/* ---------------------------------------------------------------- config */

/* The framework's _parse_rate(), with the fixes: checked here, count >= 0. */
static int parse_rate(struct pbus_cfgr *cfg, const char *key, const char *s,
		      struct rate *r)
{
	static const struct {
		const char *u;
		int64_t sec;
	} units[] = {{"s", 1},	  {"sec", 1},	{"second", 1},
		     {"m", 60},	  {"min", 60},	{"minute", 60},
		     {"h", 3600}, {"hr", 3600}, {"hour", 3600}};
	const char *slash = strchr(s, '/');
	char num[32], unit[32], *end;
	size_t nl, ul;
	long long v;

	if (!slash)
		return pbus_cfgr_fail(cfg, key,
				      "invalid rate '%s': expected "
				      "'<count>/<unit>', e.g. '60/m'",
				      s);
	nl = (size_t)(slash - s);
	if (nl >= sizeof(num))
		return pbus_cfgr_fail(cfg, key, "invalid rate '%s'", s);
	memcpy(num, s, nl);
	num[nl] = 0;
	/* int(): surrounding blanks, a sign, '_' between digits */
	{
		char clean[32];
		size_t k = 0;

		for (size_t i = 0; num[i]; i++)
			if (num[i] != '_' ||
			    (i && isdigit((unsigned char)num[i - 1]) &&
			     isdigit((unsigned char)num[i + 1])))
				clean[k++] = num[i];
		clean[k] = 0;
		errno = 0;
		v = strtoll(clean, &end, 10);
		while (isspace((unsigned char)*end))
			end++;
		if (errno || end == clean || *end || !k) {
			return pbus_cfgr_fail(cfg, key,
					      "invalid rate '%s': the count "
					      "'%s' is not an integer",
					      s, num);
		}
	}
	if (v < 0)
		return pbus_cfgr_fail(cfg, key,
				      "invalid rate '%s': the count must be "
				      ">= 0",
				      s);
	/* per.strip().lower() */
	while (isspace((unsigned char)slash[1]))
		slash++;
	ul = strlen(slash + 1);
	while (ul && isspace((unsigned char)slash[ul]))
		ul--;
	if (ul >= sizeof(unit))
		ul = sizeof(unit) - 1;
	for (size_t i = 0; i < ul; i++)
		unit[i] = (char)tolower((unsigned char)slash[1 + i]);
	unit[ul] = 0;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (!strcmp(unit, units[i].u)) {
			r->set = 1;
			r->count = v;
			r->window = units[i].sec;
			return 0;
		}
	return pbus_cfgr_fail(cfg, key,
			      "invalid rate '%s': unsupported unit '%s' "
			      "(expected s, sec, second, m, min, minute, h, hr "
			      "or hour)",
			      s, unit);
}

static int rate_key(struct pbus_cfgr *cfg, const char *key, struct rate *r)
{
	char *s = pbus_cfgr_str(cfg, key, NULL);
	int ret = 0;

	/* An empty string is "no limit", as the original's `if not limit`. */
	if (s && *s)
		ret = parse_rate(cfg, key, s, r);
	free(s);
	return ret;
}

static int parse(struct pbus_cfgr *cfg, void *arg)
{
	struct rl *rl = arg;
	struct pbus_mp tools, k, v;
	struct pbus_mp_iter it;
	char *algo, *backend;

	rate_key(cfg, "by_user", &rl->user);
	rate_key(cfg, "by_tenant", &rl->tenant);
	algo = pbus_cfgr_str(cfg, "algorithm", "fixed_window");
	backend = pbus_cfgr_str(cfg, "backend", "memory");
	if (!pbus_cfgr_error(cfg)) {
		if (!strcmp(algo, "fixed_window"))
			rl->algo = FIXED;
		else if (!strcmp(algo, "sliding_window"))
			rl->algo = SLIDING;
		else if (!strcmp(algo, "token_bucket"))
			rl->algo = BUCKET;
		else
			pbus_cfgr_fail(cfg, "algorithm",
				       "'%s' is not fixed_window, "
				       "sliding_window or token_bucket",
				       algo);
	}
	if (!pbus_cfgr_error(cfg) && strcmp(backend, "memory"))
		pbus_cfgr_fail(cfg, "backend",
			       "'%s' is not supported: pbus-rate_limiter keeps "
			       "its counters in the agent process (memory)",
			       backend);
	free(algo);
	free(backend);
	if (pbus_cfgr_error(cfg))
		return -EINVAL;
	if (pbus_cfgr_get(cfg, "by_tool", PBUS_MP_MAP, &tools))
		return pbus_cfgr_error(cfg) ? -EINVAL : 0;
	rl->tools = calloc((size_t)pbus_mp_count(tools) + 1, sizeof(char *));
	rl->tool_rates =
		calloc((size_t)pbus_mp_count(tools) + 1, sizeof(struct rate));
	if (!rl->tools || !rl->tool_rates)
		return -ENOMEM;
	pbus_mp_iter_init(tools, &it);
	while (pbus_mp_next(&it, &k, &v) > 0) {
		char name[256], key[300], rs[64];

		if (pbus_mp_str_copy(k, name, sizeof(name)) < 0)
			return pbus_cfgr_fail(cfg, "by_tool",
					      "tool names must be strings");
		snprintf(key, sizeof(key), "by_tool.%s", name);
		if (pbus_mp_type(v) != PBUS_MP_STR)
			return pbus_cfgr_fail(
				cfg, key, "expected a rate string, got %s",
				pbus_mp_type_phrase(pbus_mp_type(v)));
		if (pbus_mp_str_copy(v, rs, sizeof(rs)) < 0)
			return pbus_cfgr_fail(cfg, key, "rate string too long");
		rl->tools[rl->ntools] = strdup(name);
		if (*rs &&
		    parse_rate(cfg, key, rs, &rl->tool_rates[rl->ntools]))
			return -EINVAL;
		rl->ntools++;
	}
	return 0;
}

/* ---------------------------------------------------------------- store */

static uint64_t fnv(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ull;

	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
	return h ? h : 1;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int grow(struct rl *rl);

/* Find or add the counter for @key. NULL on ENOMEM. */
static struct entry *lookup(struct rl *rl, const char *key, size_t kn)
{
	uint64_t h = fnv(key, kn);
	size_t mask, i;

	if ((rl->used + 1) * 2 > rl->size && grow(rl))
		return NULL;
	mask = rl->size - 1;
	for (i = h & mask;; i = (i + 1) & mask) {
		struct entry *e = &rl->tab[i];

		if (!e->key) {
			e->key = strndup(key, kn);
			if (!e->key)
				return NULL;
			e->hash = h;
			rl->used++;
			return e;
		}
		if (e->hash == h && !strncmp(e->key, key, kn) && !e->key[kn])
			return e;
	}
}

static void put(struct entry *tab, size_t size, struct entry *e)
{
	size_t i;

	for (i = e->hash & (size - 1); tab[i].key; i = (i + 1) & (size - 1))
		;
	tab[i] = *e;
}

static int grow(struct rl *rl)
{
	size_t ns = rl->size ? rl->size * 2 : 64;
	struct entry *nt = calloc(ns, sizeof(*nt));

	if (!nt)
		return -ENOMEM;
	for (size_t i = 0; i < rl->size; i++)
		if (rl->tab[i].key)
			put(nt, ns, &rl->tab[i]);
	free(rl->tab);
	rl->tab = nt;
	rl->size = ns;
	return 0;
}

/* Drop counters idle for longer than an hour (the later framework swept
 * expired windows too); rebuilds the table. */
static void sweep(struct rl *rl, double now)
{
	struct entry *nt;
	size_t kept = 0;

	if (now - rl->last_sweep < 60 || rl->used < 1024)
		return;
	rl->last_sweep = now;
	nt = calloc(rl->size, sizeof(*nt));
	if (!nt)
		return;
	for (size_t i = 0; i < rl->size; i++) {
		struct entry *e = &rl->tab[i];

		if (!e->key)
			continue;
		if (now - e->last_used > 3600) {
			free(e->key);
			free(e->ts);
			continue;
		}
		put(nt, rl->size, e);
		kept++;
	}
	free(rl->tab);
	rl->tab = nt;
	rl->used = kept;
}

/* ---------------------------------------------------------------- algorithms
 */

struct verdict {
	int limited; /* a limit applies */
	int ok;
	int64_t limit; /* calls per window */
	int64_t remaining, reset_in;
};

static void fixed_window(struct entry *e, const struct rate *r,
			 struct verdict *v, double now)
{
	int64_t t = (int64_t)floor(now); /* int(time.time()) */

	v->limited = 1;
	if (!e->count || t - e->window_start >= r->window) {
		e->window_start = t;
		e->count = 0;
	}
	v->reset_in = r->window - (t - e->window_start);
	if (e->count < r->count) {
		e->count++;
		v->ok = 1;
		v->remaining = r->count - e->count;
		return;
	}
	v->ok = 0;
	v->remaining = 0;
}

static void sliding_window(struct entry *e, const struct rate *r,
			   struct verdict *v, double now)
{
	double cutoff = now - (double)r->window;
	size_t k = 0;
	double reset_ts;

	for (size_t i = 0; i < e->nts; i++)
		if (e->ts[i] > cutoff)
			e->ts[k++] = e->ts[i];
	e->nts = k;
	reset_ts = floor(k ? e->ts[0] + (double)r->window
			   : now + (double)r->window);
	v->limited = 1;
	v->reset_in = (int64_t)(reset_ts - now);
	if (v->reset_in < 0)
		v->reset_in = 0;
	if ((int64_t)k >= r->count) {
		v->ok = 0;
		v->remaining = 0;
		if (v->reset_in < 1)
			v->reset_in = 1;
		return;
	}
	if (e->nts == e->cts) {
		size_t nc = e->cts ? e->cts * 2 : 8;
		double *nts = realloc(e->ts, nc * sizeof(*nts));

		if (!nts) { /* fail open, as the original's error path */
			v->ok = 1;
			v->remaining = 0;
			return;
		}
		e->ts = nts;
		e->cts = nc;
	}
	e->ts[e->nts++] = now;
	v->ok = 1;
	v->remaining = r->count - (int64_t)e->nts;
}

static void token_bucket(struct entry *e, const struct rate *r,
			 struct verdict *v, double now)
{
	double cap = (double)r->count, rate = cap / (double)r->window;
	double need;

	v->limited = 1;
	if (!r->count) {
		v->ok = 0;
		v->remaining = 0;
		v->reset_in = r->window;
		return;
	}
	if (!e->bucket_init) {
		e->bucket_init = 1;
		e->tokens = cap - 1;
		e->last_refill = now;
		v->ok = 1;
		v->remaining = r->count - 1;
		v->reset_in = (int64_t)(1 / rate) > 1 ? (int64_t)(1 / rate) : 1;
		return;
	}
	e->tokens = fmin(cap, e->tokens + (now - e->last_refill) * rate);
	e->last_refill = now;
	if (e->tokens >= 1.0) {
		e->tokens -= 1.0;
		v->ok = 1;
		v->remaining = (int64_t)e->tokens;
		need = cap - e->tokens;
		v->reset_in = need > 0 ? ((int64_t)(need / rate) > 1
						  ? (int64_t)(need / rate)
						  : 1)
				       : 0;
		return;
	}
	v->ok = 0;
	v->remaining = 0;
	v->reset_in = (int64_t)ceil((1.0 - e->tokens) / rate);
	if (v->reset_in < 1)
		v->reset_in = 1;
}

/* _allow(key, limit): count one call of @dim:@id against @r. */
static int allow(struct rl *rl, const char *dim, const char *id,
		 const struct rate *r, struct verdict *v)
{
	char key[600];
	struct entry *e;
	double now;
	int n;

	memset(v, 0, sizeof(*v));
	if (!r->set) {
		v->ok = 1;
		return 0;
	}
	n = snprintf(key, sizeof(key), "%s:%s:%lld", dim, id,
		     (long long)r->window);
	if (n < 0 || (size_t)n >= sizeof(key))
		n = sizeof(key) - 1;
	now = now_s();
	sweep(rl, now);
	e = lookup(rl, key, (size_t)n);
	if (!e)
		return -ENOMEM;
	e->last_used = now;
	v->limit = r->count;
	if (rl->algo == SLIDING)
		sliding_window(e, r, v, now);
	else if (rl->algo == BUCKET)
		token_bucket(e, r, v, now);
	else
		fixed_window(e, r, v, now);
	return 0;
}

static void pack_verdict(msgpack_packer *pk, const struct verdict *v)
{
	if (!v->limited) {
		msgpack_pack_map(pk, 1);
		pbus_pack_kv_bool(pk, "limited", false);
		return;
	}
	msgpack_pack_map(pk, 3);
	pbus_pack_kv_bool(pk, "limited", true);
	pbus_pack_kv_int(pk, "remaining", v->remaining);
	pbus_pack_kv_int(pk, "reset_in", v->reset_in);
}

/* ---------------------------------------------------------------- hooks */

/* A non-empty string in @v copied to @buf: true. */
static bool str_id(struct pbus_mp v, char *buf, size_t size)
{
	int ret = pbus_mp_str_copy(v, buf, size);

	return ret > 0 || ret == -ERANGE;
}

/* The caller's identity: user (a string, or a map's email, id or sub, as the
 * later framework) or "anonymous", and tenant_id or "default". */
static void who(struct pbus_call *c, char *user, size_t un, char *tenant,
		size_t tn)
{
	static const char *const keys[] = {"email", "id", "sub"};
	struct pbus_mp g = {0}, u, x;
	bool got = false;

	if (!pbus_call_gctx_view(c, &g) && !pbus_mp_get(g, "user", &u)) {
		if (pbus_mp_type(u) == PBUS_MP_MAP) {
			for (int i = 0; i < 3 && !got; i++)
				got = !pbus_mp_get(u, keys[i], &x) &&
				      str_id(x, user, un);
		} else {
			got = str_id(u, user, un);
		}
	}
	if (!got)
		snprintf(user, un, "anonymous");
	if (!g.len || pbus_mp_get(g, "tenant_id", &x) || !str_id(x, tenant, tn))
		snprintf(tenant, tn, "default");
}

/*
 * The later framework's response headers, from the verdict that binds: the
 * one that blocked (@block), else the limited one with the fewest calls
 * left. X-RateLimit-Limit / -Remaining, X-RateLimit-Reset as Unix seconds,
 * and Retry-After (seconds) when blocked. NULL when no limit applies.
 */
struct headers {
	char num[4][24];
	const char *kv[9];
};

static const char *const *headers(struct headers *h, const struct verdict *block,
				  const struct verdict *const *vs, int n)
{
	const struct verdict *b = block;
	int k = 0;

	for (int i = 0; i < n && !b; i++)
		if (vs[i]->limited)
			b = vs[i];
	for (int i = 0; i < n && !block; i++)
		if (vs[i]->limited && vs[i]->remaining < b->remaining)
			b = vs[i];
	if (!b)
		return NULL;
	snprintf(h->num[0], sizeof(h->num[0]), "%lld", (long long)b->limit);
	snprintf(h->num[1], sizeof(h->num[1]), "%lld",
		 (long long)b->remaining);
	snprintf(h->num[2], sizeof(h->num[2]), "%lld",
		 (long long)(time(NULL) + b->reset_in));
	snprintf(h->num[3], sizeof(h->num[3]), "%lld",
		 (long long)(b->reset_in > 0 ? b->reset_in : 1));
	h->kv[k++] = "X-RateLimit-Limit";
	h->kv[k++] = h->num[0];
	h->kv[k++] = "X-RateLimit-Remaining";
	h->kv[k++] = h->num[1];
	h->kv[k++] = "X-RateLimit-Reset";
	h->kv[k++] = h->num[2];
	if (block) {
		h->kv[k++] = "Retry-After";
		h->kv[k++] = h->num[3];
	}
	h->kv[k] = NULL;
	return h->kv;
}

/* Block with HTTP 429 and the headers of @block. */
static msgpack_packer *block(struct pbus_call *c, const char *desc,
			     const struct verdict *b)
{
	struct headers h;
	struct pbus_violation_opts o = {
		.http_status_code = 429,
		.http_headers = headers(&h, b, NULL, 0),
	};

	return pbus_call_violate_ex(c, "RATE_LIMIT", "Rate limit exceeded",
				    desc, &o);
}

/* Let through with metadata and, when a limit applies, the headers. */
static msgpack_packer *pass(struct pbus_call *c,
			    const struct verdict *const *vs, int n)
{
	struct headers h;
	const char *const *kv = headers(&h, NULL, vs, n);

	if (kv)
		pbus_call_http_headers(c, kv);
	return pbus_call_metadata(c);
}

static int on_prompt_pre(struct pbus_call *c, void *arg)
{
	struct rl *rl = arg;
	struct verdict vu, vt;
	char user[256], tenant[256], desc[320];
	msgpack_packer *pk;
	int ret;

	who(c, user, sizeof(user), tenant, sizeof(tenant));
	ret = allow(rl, "user", user, &rl->user, &vu);
	if (ret)
		return ret;
	if (!vu.ok) {
		snprintf(desc, sizeof(desc), "User %s rate limit exceeded",
			 user);
		pack_verdict(block(c, desc, &vu), &vu);
		return 0;
	}
	ret = allow(rl, "tenant", tenant, &rl->tenant, &vt);
	if (ret)
		return ret;
	if (!vt.ok) {
		snprintf(desc, sizeof(desc), "Tenant %s rate limit exceeded",
			 tenant);
		pack_verdict(block(c, desc, &vt), &vt);
		return 0;
	}
	pk = pass(c, (const struct verdict *[]){&vu, &vt}, 2);
	msgpack_pack_map(pk, 2);
	pack_verdict(pbus_pack_key(pk, "by_user"), &vu);
	pack_verdict(pbus_pack_key(pk, "by_tenant"), &vt);
	return 0;
}

static int on_tool_pre(struct pbus_call *c, void *arg)
{
	struct rl *rl = arg;
	struct verdict vu, vt, vtool = {.ok = 1};
	char user[256], tenant[256], tool[256], desc[320];
	int has_tool = 0, ret;
	msgpack_packer *pk;

	who(c, user, sizeof(user), tenant, sizeof(tenant));
	if (pbus_call_str(c, "name", tool, sizeof(tool)) < 0)
		tool[0] = 0;
	ret = allow(rl, "user", user, &rl->user, &vu);
	if (!ret)
		ret = allow(rl, "tenant", tenant, &rl->tenant, &vt);
	if (ret)
		return ret;
	for (int i = 0; i < rl->ntools; i++)
		if (!strcmp(rl->tools[i], tool)) {
			has_tool = 1;
			ret = allow(rl, "tool", tool, &rl->tool_rates[i],
				    &vtool);
			if (ret)
				return ret;
			break;
		}
	if (vu.ok && vt.ok && vtool.ok) {
		pk = pass(c, (const struct verdict *[]){&vu, &vt, &vtool}, 3);
	} else {
		const struct verdict *b = !vtool.ok ? &vtool
					  : !vu.ok  ? &vu
						    : &vt;

		if (!vtool.ok)
			snprintf(desc, sizeof(desc),
				 "Rate limit exceeded for tool %s", tool);
		else
			snprintf(desc, sizeof(desc),
				 "Rate limit exceeded for %s",
				 vu.ok ? "tenant" : "user");
		pk = block(c, desc, b);
	}
	msgpack_pack_map(pk, 2 + has_tool);
	pack_verdict(pbus_pack_key(pk, "by_user"), &vu);
	pack_verdict(pbus_pack_key(pk, "by_tenant"), &vt);
	if (has_tool)
		pack_verdict(pbus_pack_key(pk, "by_tool"), &vtool);
	return 0;
}

static struct rl rl;

static const struct pbus_agent_desc desc = {
	.name = "rate_limiter",
	.summary = "Limit prompt and tool calls per user, tenant and tool.",
	.config_help = "  by_user: rate, e.g. \"60/m\" "
		       "(count/s|sec|second|m|min|minute|"
		       "h|hr|hour)\n"
		       "  by_tenant: rate\n"
		       "  by_tool: {tool: rate}\n"
		       "  algorithm: fixed_window|sliding_window|token_bucket "
		       "(fixed_window)\n"
		       "  backend: memory\n",
	.config = parse,
	.hooks =
		{
			[PBUS_HOOK_PROMPT_PRE_FETCH] = on_prompt_pre,
			[PBUS_HOOK_TOOL_PRE_INVOKE] = on_tool_pre,
		},
};

int main(int argc, char **argv)
{
	return pbus_agent_main(argc, argv, &desc, &rl);
}
