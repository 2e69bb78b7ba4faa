// SPDX-License-Identifier: MIT
/*
 * Running a hook's chain: phases, bands, modes, errors, contexts, metadata.
 * The semantics table is docs/modes.md (and the README); this file is its
 * implementation.
 *
 * Memory: one lane per chain. The payload, the global context and each
 * local context are written into it once; every agent answer is copied into
 * it by the bus; a modified payload chains to the next plugin by reference.
 * Only the final payload, the merged metadata and the violation are copied
 * out, into the request, when the chain ends. Global context changes are
 * merged into the request and re-encoded only when a plugin returned some.
 */
#include <inttypes.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw.h"
#include "internal.h"
#include "mgr_int.h"
#include "sup.h"
#include "obs.h"

#define DEFAULT_MCP_ERROR (-32603)
#define MAX_BAND 64
#define MAX_KEYS 128

struct res {
	int err;                  /* 0 or -errno */
	char msg[160];            /* error text */
	int stop;                 /* continue_processing = false */
	uint64_t t_end, lat;      /* when probes want them, else 0 */
	struct pbus_mp modified, violation, metadata, state, lmeta, gstate;
	struct pbus_mp headers; /* "http_headers" */
};

struct chain {
	struct pbus_mgr *m;
	struct pbus_request *rq;
	int hook;
	struct pbus_lane *l;
	struct pbus_ref input, cur, gref;
	int gdirty;
	struct mgr_buf meta, tmp, hdrs; /* merged metadata, http_headers */
	struct pbus_outcome *out;
	const char *decided;
	int ended;
};

/* ---------------------------------------------------------------- helpers */

static struct pbus_ref ref_of(struct chain *c, struct pbus_mp v)
{
	const uint8_t *base = c->m->bus->arena.base;

	return (struct pbus_ref){(uint64_t)(v.p - base), (uint32_t)v.len, 0};
}

static struct pbus_mp view_of(struct chain *c, struct pbus_ref r)
{
	struct pbus_mp v = {pbus_lane_ptr(c->l, r), r.len};

	return v;
}

static int mp_eq(struct pbus_mp a, struct pbus_mp b)
{
	return a.len == b.len && !memcmp(a.p, b.p, a.len);
}

static int is_http(int hook)
{
	return hook >= PBUS_HOOK_HTTP_PRE_REQUEST;
}

/* R2's payload write policy (docs/modes.md). */
static int writable(int hook, const char *k, size_t n)
{
	static const char *const w[PBUS_HOOK_COUNT] = {
		[PBUS_HOOK_PROMPT_PRE_FETCH] = " args ",
		[PBUS_HOOK_PROMPT_POST_FETCH] = " result ",
		[PBUS_HOOK_TOOL_PRE_INVOKE] = " name args headers ",
		[PBUS_HOOK_TOOL_POST_INVOKE] = " result ",
		[PBUS_HOOK_RESOURCE_PRE_FETCH] = " uri metadata ",
		[PBUS_HOOK_RESOURCE_POST_FETCH] = " content ",
		[PBUS_HOOK_AGENT_PRE_INVOKE] =
			" agent_id messages tools model system_prompt "
			"parameters headers ",
		[PBUS_HOOK_AGENT_POST_INVOKE] = " messages tool_calls ",
	};
	char key[64];

	if (!w[hook] || n + 2 >= sizeof(key))
		return 0;
	key[0] = ' ';
	memcpy(key + 1, k, n);
	key[n + 1] = ' ';
	key[n + 2] = 0;
	return strstr(w[hook], key) != NULL;
}

static int key_str(struct pbus_mp k, const char **s, size_t *n)
{
	return pbus_mp_str(k, s, n);
}

/* ---------------------------------------------------------------- decode */

static void set_err(struct res *r, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_err(struct res *r, int err, const char *fmt, ...)
{
	va_list ap;

	r->err = err;
	va_start(ap, fmt);
	vsnprintf(r->msg, sizeof(r->msg), fmt, ap);
	va_end(ap);
}

/* HTTP token characters (RFC 9110 5.6.2): what a header name may hold. */
static bool tchar(uint8_t ch)
{
	return (ch >= '0' && ch <= '9') || ((ch | 0x20) >= 'a' &&
					    (ch | 0x20) <= 'z') ||
	       (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/*
 * An "http_headers" answer: a map of header name -> value, both strings,
 * names made of token characters, values without control characters other
 * than tab. Anything else could split or forge a response header in the
 * HTTP front end that sends them, so the whole answer is refused.
 */
static bool valid_headers(struct pbus_mp h)
{
	struct pbus_mp_iter it;
	struct pbus_mp k, v;
	const char *s;
	size_t n;
	int ret;

	if (pbus_mp_type(h) != PBUS_MP_MAP || pbus_mp_iter_init(h, &it))
		return false;
	while ((ret = pbus_mp_next(&it, &k, &v)) > 0) {
		if (pbus_mp_str(k, &s, &n) || !n || n > 256)
			return false;
		for (size_t i = 0; i < n; i++)
			if (!tchar((uint8_t)s[i]))
				return false;
		if (pbus_mp_str(v, &s, &n) || n > 8192)
			return false;
		for (size_t i = 0; i < n; i++)
			if (((uint8_t)s[i] < 0x20 && s[i] != '\t') ||
			    s[i] == 0x7f)
				return false;
	}
	return ret == 0;
}

static void decode(struct chain *c, const struct pbus_result *pr, int st,
		   struct res *r)
{
	struct pbus_mp body, v;

	memset(r, 0, sizeof(*r));
	if (st) {
		set_err(r, st, "%s",
			st == -ETIMEDOUT   ? "timed out"
			: st == -ENOTCONN ? "agent down"
			: st == -EMSGSIZE ? "answer too large"
					  : strerror(-st));
		return;
	}
	if (pr->flags & PBUS_RF_UNSUPPORTED) {
		set_err(r, -EIO, "agent does not handle %s",
			pbus_hook_name(c->hook));
		return;
	}
	if (pr->body.len) {
		if (pbus_mp_open(pr->body_ptr, pr->body.len, &body) ||
		    pbus_mp_type(body) != PBUS_MP_MAP) {
			set_err(r, -EBADMSG, "unreadable answer");
			return;
		}
		/* one pass over the answer for every key it may hold */
		static const char *const keys[] = {
			"error",	"modified_payload", "violation",
			"metadata",	"state",	    "local_metadata",
			"global_state", "http_headers",
		};
		struct pbus_mp kv[8];

		_Static_assert(sizeof(keys) / sizeof(keys[0]) == 8, "kv");
		if (pbus_mp_get_keys(body, keys, kv, 8) < 0) {
			set_err(r, -EBADMSG, "unreadable answer");
			return;
		}
		if (kv[0].len) {
			const char *s = "";
			size_t n = 0;

			pbus_mp_str(kv[0], &s, &n);
			set_err(r, -EIO, "%.*s", (int)(n > 150 ? 150 : n), s);
			return;
		}
		r->modified = kv[1];
		r->violation = kv[2];
		r->metadata = kv[3];
		r->state = kv[4];
		r->lmeta = kv[5];
		r->gstate = kv[6];
		r->headers = kv[7];
	}
	if (pr->flags & PBUS_RF_ERROR) {
		set_err(r, -EIO, "plugin error");
		return;
	}
	if (r->modified.len && !is_http(c->hook) &&
	    pbus_mp_type(r->modified) != PBUS_MP_MAP) {
		set_err(r, -EBADMSG, "modified_payload is not a map");
		return;
	}
	if (r->modified.len > c->m->max_payload) {
		set_err(r, -EMSGSIZE, "modified payload of %zu bytes over "
				      "the limit", r->modified.len);
		return;
	}
	if ((r->violation.len &&
	     pbus_mp_type(r->violation) != PBUS_MP_MAP) ||
	    (r->metadata.len && pbus_mp_type(r->metadata) != PBUS_MP_MAP) ||
	    (r->state.len && pbus_mp_type(r->state) != PBUS_MP_MAP) ||
	    (r->lmeta.len && pbus_mp_type(r->lmeta) != PBUS_MP_MAP) ||
	    (r->gstate.len && pbus_mp_type(r->gstate) != PBUS_MP_MAP)) {
		set_err(r, -EBADMSG, "malformed answer field");
		return;
	}
	if ((r->headers.len && !valid_headers(r->headers)) ||
	    (r->violation.len && !pbus_mp_get(r->violation, "http_headers", &v) &&
	     !valid_headers(v))) {
		set_err(r, -EBADMSG, "malformed http_headers");
		return;
	}
	r->stop = !!(pr->flags & PBUS_RF_STOP);
}

/* ---------------------------------------------------------------- calls */

static int gctx_fresh(struct chain *c)
{
	msgpack_packer pk;

	if (!c->gdirty && c->gref.len)
		return 0;
	pbus_lane_pack_begin(c->l, &pk);
	pbus__gctx_pack(c->rq, &pk);
	c->gdirty = 0;
	return pbus_lane_pack_end(c->l, &pk, &c->gref);
}

static int prepare(struct chain *c, struct mgr_plugin *p,
		   struct pbus_call_args *a)
{
	struct mgr_buf *lb = &c->rq->local[p->id];
	int ret;

	memset(a, 0, sizeof(*a));
	a->hook = c->hook;
	a->payload = c->cur;
	a->timeout_ns = p->timeout_ns;
	ret = gctx_fresh(c);
	if (ret)
		return ret;
	a->gctx = c->gref;
	if (lb->len)
		ret = pbus_lane_write(c->l, lb->p, lb->len, &a->lctx);
	return ret;
}

static void call_one(struct chain *c, struct mgr_plugin *p, struct res *r)
{
	struct pbus_call_args a;
	struct pbus_result pr;
	uint64_t t0 = pbus__obs_clock();
	int gate = pbus__sup_circuit_allows(c->m, p->id);
	int st = gate == PBUS__SUP_REFUSE ? -ENOTCONN : prepare(c, p, &a);

	if (!st)
		st = pbus_invoke(p->peer, c->l, &a, &pr);
	if (gate == PBUS__SUP_PROBE)
		pbus__sup_probe_done(c->m, p->id, st);
	decode(c, &pr, st, r);
	if (t0) {
		r->t_end = pbus__now_ns();
		r->lat = r->t_end - t0;
	}
}

/* Start every member, then collect every answer: the band costs its
 * slowest member. */
static void call_band(struct chain *c, struct mgr_plugin **ps, unsigned n,
		      struct res *rs)
{
	uint64_t tk[MAX_BAND];
	uint64_t t0 = pbus__obs_clock();
	int st[MAX_BAND], gate[MAX_BAND];

	for (unsigned i = 0; i < n; i++) {
		struct pbus_call_args a;

		gate[i] = pbus__sup_circuit_allows(c->m, ps[i]->id);
		st[i] = gate[i] == PBUS__SUP_REFUSE ? -ENOTCONN
						     : prepare(c, ps[i], &a);
		if (!st[i])
			st[i] = pbus_submit(ps[i]->peer, c->l, &a, &tk[i]);
	}
	for (unsigned i = 0; i < n; i++) {
		struct pbus_result pr;
		int s = st[i];

		if (!s)
			s = pbus_collect(ps[i]->peer, tk[i],
					 ps[i]->timeout_ns + 1000000000ull,
					 &pr);
		if (gate[i] == PBUS__SUP_PROBE)
			pbus__sup_probe_done(c->m, ps[i]->id, s);
		decode(c, &pr, s, &rs[i]);
		if (t0) {
			rs[i].t_end = pbus__now_ns();
			rs[i].lat = rs[i].t_end - t0;
		}
	}
}

/* ---------------------------------------------------------------- effects */

static int merge_into(struct mgr_buf *dst, struct mgr_buf *tmp,
		      struct pbus_mp over)
{
	struct pbus_mp base;
	msgpack_packer pk;
	struct mgr_buf t;
	int ret;

	if (!dst->len)
		return pbus__buf_set(dst, over.p, over.len);
	ret = pbus_mp_open(dst->p, dst->len, &base);
	if (ret)
		return ret;
	tmp->len = 0;
	msgpack_packer_init(&pk, tmp, pbus__buf_write);
	ret = pbus_mp_merge(base, over, &pk);
	if (ret)
		return ret;
	t = *dst;
	*dst = *tmp;
	*tmp = t;
	return 0;
}

static void set_local(struct chain *c, struct mgr_plugin *p,
		      const struct res *r)
{
	struct mgr_buf *lb = &c->rq->local[p->id];
	struct pbus_mp old = {0}, st = r->state, md = r->lmeta;
	static const uint8_t empty = 0x80;
	msgpack_packer pk;

	if (!st.len && !md.len)
		return;
	if (lb->len)
		pbus_mp_open(lb->p, lb->len, &old);
	if (!st.len && pbus_mp_get(old, "state", &st))
		st = (struct pbus_mp){&empty, 1};
	if (!md.len && pbus_mp_get(old, "metadata", &md))
		md = (struct pbus_mp){&empty, 1};
	c->tmp.len = 0;
	msgpack_packer_init(&pk, &c->tmp, pbus__buf_write);
	msgpack_pack_map(&pk, 2);
	pbus_mp_pack_cstr(&pk, "state");
	pbus_mp_copy(&pk, st);
	pbus_mp_pack_cstr(&pk, "metadata");
	pbus_mp_copy(&pk, md);
	pbus__buf_set(lb, c->tmp.p, c->tmp.len);
}

static void count_err(struct mgr_plugin *p, int err)
{
	if (err == -ETIMEDOUT)
		atomic_fetch_add(&p->timeouts, 1);
	else if (err == -ENOTCONN)
		atomic_fetch_add(&p->agent_down, 1);
	atomic_fetch_add(&p->errors, 1);
}

/* Store the outcome's violation (copied into the request). */
static void end_blocked(struct chain *c, struct mgr_plugin *p,
			const struct res *r)
{
	struct pbus_request *rq = c->rq;
	struct pbus_violation *v = &rq->viol;
	const char *fields[3] = {"reason", "description", "code"};
	size_t off[4] = {0};
	struct pbus_mp x;
	int64_t code;

	c->ended = 1;
	c->out->continue_processing = 0;
	c->decided = p->cfg->name;
	memset(v, 0, sizeof(*v));
	if (!r->violation.len)
		return; /* stopped without a violation */
	rq->out_strs.len = 0;
	for (int i = 0; i < 3; i++) {
		const char *s = "";
		size_t n = 0;

		if (!pbus_mp_get(r->violation, fields[i], &x))
			pbus_mp_str(x, &s, &n);
		off[i] = rq->out_strs.len;
		pbus__buf_write(&rq->out_strs, s, n);
		pbus__buf_write(&rq->out_strs, "", 1);
	}
	v->reason = (char *)rq->out_strs.p + off[0];
	v->description = (char *)rq->out_strs.p + off[1];
	v->code = (char *)rq->out_strs.p + off[2];
	v->plugin_name = p->cfg->name;
	v->mcp_error_code = DEFAULT_MCP_ERROR;
	if (!pbus_mp_get(r->violation, "mcp_error_code", &x) &&
	    !pbus_mp_int(x, &code))
		v->mcp_error_code = code;
	if (!pbus_mp_get(r->violation, "http_status_code", &x) &&
	    !pbus_mp_int(x, &code))
		v->http_status_code = code;
	if (!pbus_mp_get(r->violation, "details", &x) &&
	    pbus_mp_type(x) == PBUS_MP_MAP)
		pbus__buf_set(&rq->out_details, x.p, x.len);
	else
		pbus__buf_set(&rq->out_details, "\x80", 1);
	v->details = rq->out_details.p;
	v->details_len = rq->out_details.len;
	if (!pbus_mp_get(r->violation, "http_headers", &x))
		pbus__buf_set(&rq->out_vheaders, x.p, x.len);
	else
		pbus__buf_set(&rq->out_vheaders, "\x80", 1);
	v->http_headers = rq->out_vheaders.p;
	v->http_headers_len = rq->out_vheaders.len;
	c->out->violation = v;
}

static void end_failed(struct chain *c, struct mgr_plugin *p,
		       const struct res *r)
{
	struct pbus_request *rq = c->rq;
	char msg[256];

	c->ended = 1;
	c->out->continue_processing = 0;
	c->out->error = r->err;
	c->decided = p->cfg->name;
	snprintf(msg, sizeof(msg), "plugin %s: %s", p->cfg->name, r->msg);
	rq->out_strs.len = 0;
	pbus__buf_write(&rq->out_strs, msg, strlen(msg) + 1);
	c->out->error_message = (char *)rq->out_strs.p;
}

/*
 * The parts of an answer that do not depend on the band: counters, errors,
 * metadata, contexts. Returns 1 if the chain must stop (error with
 * on_error: fail), 0 otherwise; *ok is set when the answer can be used
 * (no error).
 */
static int absorb(struct chain *c, struct mgr_plugin *p, int phase,
		  struct res *r, int *ok)
{
	*ok = 0;
	atomic_fetch_add(&p->calls, 1);
	c->out->plugins_run++;
	if (r->t_end)
		pbus__obs_call_at(p->id, (uint32_t)c->hook,
				  r->err == -ETIMEDOUT   ? PBUS_OUTCOME_TIMEOUT
				  : r->err == -ENOTCONN ? PBUS_OUTCOME_AGENT_DOWN
				  : r->err              ? PBUS_OUTCOME_ERROR
				  : r->stop             ? PBUS_OUTCOME_VIOLATION
				  : r->modified.len     ? PBUS_OUTCOME_MODIFIED
							: PBUS_OUTCOME_OK,
				  r->lat, r->t_end);
	if (r->err) {
		int eff = c->m->cfg->settings.fail_on_plugin_error
				  ? PBUS_ON_ERROR_FAIL
				  : p->on_error;

		count_err(p, r->err);
		pbus__warn("plugin '%s' on %s: %s", p->cfg->name,
			   pbus_hook_name(c->hook), r->msg);
		if (eff == PBUS_ON_ERROR_FAIL) {
			end_failed(c, p, r);
			return 1;
		}
		if (eff == PBUS_ON_ERROR_DISABLE) {
			atomic_store(&p->rt_disabled, 1);
			pbus__warn("plugin '%s' disabled (on_error: disable)",
				   p->cfg->name);
		}
		return 0;
	}
	*ok = 1;
	if (r->violation.len || r->stop)
		atomic_fetch_add(&p->violations, 1);
	if (r->metadata.len)
		merge_into(&c->meta, &c->tmp, r->metadata);
	if (r->headers.len && phase != PH_AUDIT)
		merge_into(&c->hdrs, &c->tmp, r->headers);
	set_local(c, p, r);
	if (r->gstate.len && phase != PH_AUDIT) {
		merge_into(&c->rq->state, &c->tmp, r->gstate);
		c->gdirty = 1;
	}
	if (r->stop && (phase == PH_TRANSFORM || phase == PH_AUDIT))
		pbus__info("plugin '%s' would block %s (%s mode): ignored",
			   p->cfg->name, pbus_hook_name(c->hook),
			   pbus_mode_name(p->cfg->mode));
	return 0;
}

/*
 * Apply the write policy: @base with the writable top-level keys taken from
 * @mod. Writes the result into the lane. Returns 1 if it differs from base,
 * 0 if not, -errno.
 */
static int policy(struct chain *c, struct mgr_plugin *p, struct pbus_mp base,
		  struct pbus_mp mod, struct pbus_ref *out)
{
	struct pbus_mp_iter it;
	struct pbus_mp k, v, mv;
	msgpack_packer pk;
	unsigned n = 0, dropped = 0, changed = 0;
	const char *s;
	size_t sl;
	int ret;

	if (is_http(c->hook)) {
		*out = ref_of(c, mod);
		return !mp_eq(base, mod);
	}
	/* count output keys */
	pbus_mp_iter_init(base, &it);
	while (pbus_mp_next(&it, &k, &v) > 0) {
		if (key_str(k, &s, &sl) || !writable(c->hook, s, sl) ||
		    !pbus_mp_getn(mod, s, sl, &mv))
			n++;
	}
	pbus_mp_iter_init(mod, &it);
	while (pbus_mp_next(&it, &k, &v) > 0)
		if (!key_str(k, &s, &sl) && writable(c->hook, s, sl) &&
		    pbus_mp_getn(base, s, sl, &mv))
			n++;
	pbus_lane_pack_begin(c->l, &pk);
	msgpack_pack_map(&pk, n);
	pbus_mp_iter_init(base, &it);
	while (pbus_mp_next(&it, &k, &v) > 0) {
		int has = !key_str(k, &s, &sl) &&
			  !pbus_mp_getn(mod, s, sl, &mv);
		int w = !key_str(k, &s, &sl) && writable(c->hook, s, sl);

		if (w && !has) {
			changed = 1; /* removed */
			continue;
		}
		pbus_mp_copy(&pk, k);
		if (w) {
			pbus_mp_copy(&pk, mv);
			changed |= !mp_eq(v, mv);
		} else {
			pbus_mp_copy(&pk, v);
			dropped += !has || !mp_eq(v, mv);
		}
	}
	pbus_mp_iter_init(mod, &it);
	while (pbus_mp_next(&it, &k, &v) > 0) {
		if (key_str(k, &s, &sl) || !pbus_mp_getn(base, s, sl, &mv))
			continue;
		if (writable(c->hook, s, sl)) {
			pbus_mp_copy(&pk, k);
			pbus_mp_copy(&pk, v);
			changed = 1;
		} else {
			dropped++;
		}
	}
	ret = pbus_lane_pack_end(c->l, &pk, out);
	if (ret)
		return ret;
	if (dropped) {
		atomic_fetch_add(&p->dropped_fields, dropped);
		pbus__warn("plugin '%s' changed %u field(s) %s may not change: "
			   "dropped", p->cfg->name, dropped,
			   pbus_hook_name(c->hook));
	}
	return changed;
}

static void take_modified(struct chain *c, struct mgr_plugin *p,
			  struct pbus_ref nref)
{
	c->cur = nref;
	c->decided = p->cfg->name;
	atomic_fetch_add(&p->modified, 1);
}

/* ---------------------------------------------------------------- bands */

/* Merge the members' (policy-filtered) payloads, field by field: the last
 * member in file order wins a key several changed. */
static int band_merge(struct chain *c, struct pbus_mp base,
		      struct pbus_mp *mods, struct mgr_plugin **who,
		      unsigned n, struct pbus_ref *out)
{
	struct pbus_mp keys[MAX_KEYS], vals[MAX_KEYS];
	int setter[MAX_KEYS];
	unsigned nk = 0;
	struct pbus_mp_iter it;
	struct pbus_mp k, v, mv;
	msgpack_packer pk;
	const char *s;
	size_t sl;

	/* Field merging needs maps. HTTP hooks take any result as it is:
	 * the last member in file order wins the whole payload. */
	if (pbus_mp_type(base) != PBUS_MP_MAP)
		goto last_wins;
	for (unsigned i = 0; i < n; i++)
		if (pbus_mp_type(mods[i]) != PBUS_MP_MAP)
			goto last_wins;
	pbus_mp_iter_init(base, &it);
	while (pbus_mp_next(&it, &k, &v) > 0) {
		if (nk == MAX_KEYS)
			return -E2BIG;
		keys[nk] = k;
		vals[nk] = v;
		setter[nk++] = -1;
	}
	for (unsigned i = 0; i < n; i++) {
		pbus_mp_iter_init(mods[i], &it);
		while (pbus_mp_next(&it, &k, &v) > 0) {
			unsigned j;

			if (key_str(k, &s, &sl))
				continue;
			for (j = 0; j < nk; j++) {
				const char *s2;
				size_t l2;

				if (!key_str(keys[j], &s2, &l2) && l2 == sl &&
				    !memcmp(s, s2, sl))
					break;
			}
			if (j < nk && !pbus_mp_getn(base, s, sl, &mv) &&
			    mp_eq(mv, v))
				continue; /* unchanged by this member */
			if (j < nk && setter[j] >= 0 && !mp_eq(vals[j], v))
				pbus__warn("parallel band: '%s' and '%s' both "
					   "changed '%.*s'; '%s' wins",
					   who[setter[j]]->cfg->name,
					   who[i]->cfg->name, (int)sl, s,
					   who[i]->cfg->name);
			if (j == nk) {
				if (nk == MAX_KEYS)
					return -E2BIG;
				keys[nk++] = k;
			}
			vals[j] = v;
			setter[j] = (int)i;
		}
	}
	pbus_lane_pack_begin(c->l, &pk);
	msgpack_pack_map(&pk, nk);
	for (unsigned j = 0; j < nk; j++) {
		pbus_mp_copy(&pk, keys[j]);
		pbus_mp_copy(&pk, vals[j]);
	}
	return pbus_lane_pack_end(c->l, &pk, out);
last_wins:
	*out = ref_of(c, mods[n - 1]);
	return 0;
}

static int runnable(struct chain *c, struct mgr_plugin *p,
		    struct pbus_mp payload)
{
	if (atomic_load_explicit(&p->rt_disabled, memory_order_relaxed) ||
	    !pbus__cond_match(p, c->rq, c->hook, payload)) {
		atomic_fetch_add(&p->skipped, 1);
		c->out->plugins_skipped++;
		return 0;
	}
	return 1;
}

/* Run members @ps[0..n) that all see the same input. @modify: whether
 * their modifications count; @blocks: whether a stop halts the chain. */
static void run_group(struct chain *c, struct mgr_plugin **ps, unsigned n,
		      int phase, int modify, int blocks)
{
	struct res rs[MAX_BAND];
	struct pbus_mp mods[MAX_BAND], base = view_of(c, c->cur);
	struct mgr_plugin *who[MAX_BAND];
	unsigned nm = 0;
	int ok[MAX_BAND];

	if (n == 1)
		call_one(c, ps[0], &rs[0]);
	else
		call_band(c, ps, n, rs);
	for (unsigned i = 0; i < n; i++)
		if (absorb(c, ps[i], phase, &rs[i], &ok[i]))
			return;
	if (blocks) {
		int first = -1; /* the first blocker in file order */

		for (unsigned i = 0; i < n; i++)
			if (ok[i] && rs[i].stop &&
			    (first < 0 || ps[i]->id < ps[first]->id))
				first = (int)i;
		if (first >= 0) {
			end_blocked(c, ps[first], &rs[first]);
			return;
		}
	}
	if (!modify)
		return;
	for (unsigned i = 0; i < n; i++) {
		struct pbus_ref f;
		int ch;

		if (!ok[i] || !rs[i].modified.len)
			continue;
		ch = policy(c, ps[i], base, rs[i].modified, &f);
		if (ch <= 0)
			continue;
		if (n == 1) {
			take_modified(c, ps[i], f);
			return;
		}
		mods[nm] = view_of(c, f);
		who[nm++] = ps[i];
	}
	if (nm == 1) {
		take_modified(c, who[0], ref_of(c, mods[0]));
	} else if (nm > 1) {
		struct pbus_ref f;

		if (band_merge(c, base, mods, who, nm, &f) == 0) {
			c->cur = f;
			c->decided = who[nm - 1]->cfg->name;
			for (unsigned i = 0; i < nm; i++)
				atomic_fetch_add(&who[i]->modified, 1);
		}
	}
}

static void run_phase(struct chain *c, int phase)
{
	const struct mgr_list *l = &c->m->reg[c->hook][phase];
	int band = c->m->cfg->settings.parallel_within_band &&
		   (phase == PH_SEQUENTIAL || phase == PH_TRANSFORM);
	struct mgr_plugin *ps[MAX_BAND];
	unsigned i = 0;

	if (phase == PH_CONCURRENT) {
		unsigned n = 0;

		for (unsigned k = 0; k < l->n; k++) {
			struct mgr_plugin *p = &c->m->pl[l->ids[k]];

			if (n < MAX_BAND && runnable(c, p, view_of(c, c->cur)))
				ps[n++] = p;
		}
		if (n)
			run_group(c, ps, n, phase, 0, 1);
		return;
	}
	while (i < l->n && !c->ended) {
		unsigned n = 0, j = i;
		int prio = c->m->pl[l->ids[i]].cfg->priority;

		/* a band: equal priority (only when bands are on) */
		while (j < l->n && (j == i || (band && c->m->pl[l->ids[j]]
								      .cfg->priority ==
							      prio))) {
			struct mgr_plugin *p = &c->m->pl[l->ids[j]];

			if (n < MAX_BAND && runnable(c, p, view_of(c, c->cur)))
				ps[n++] = p;
			j++;
		}
		i = j;
		if (n)
			run_group(c, ps, n, phase,
				  phase != PH_AUDIT, phase == PH_SEQUENTIAL);
	}
}

/* ---------------------------------------------------------------- f&f */

struct mgr_ff {
	struct mgr_ff *next;
	struct pbus_lane *l;
	unsigned n;
	struct mgr_plugin *p[MAX_BAND];
	uint64_t tk[MAX_BAND];
};

static void fire_and_forget(struct chain *c)
{
	const struct mgr_list *l = &c->m->reg[c->hook][PH_FIRE_AND_FORGET];
	struct pbus_call_args a;
	struct pbus_ref pay, g;
	struct pbus_mp cur;
	msgpack_packer pk;
	struct mgr_ff *f;

	if (!l->n)
		return;
	f = calloc(1, sizeof(*f));
	if (!f || pbus_lane_acquire(c->m->bus, &f->l)) {
		free(f);
		atomic_fetch_add(&c->m->ff_dropped, 1);
		return;
	}
	/* a snapshot of its own: the chain's lane goes back at once */
	cur = view_of(c, c->cur);
	pbus_lane_pack_begin(f->l, &pk);
	pbus__gctx_pack(c->rq, &pk);
	if (pbus_lane_write(f->l, cur.p, cur.len, &pay) ||
	    pbus_lane_pack_end(f->l, &pk, &g)) {
		pbus_lane_release(f->l);
		free(f);
		atomic_fetch_add(&c->m->ff_dropped, 1);
		return;
	}
	for (unsigned k = 0; k < l->n && f->n < MAX_BAND; k++) {
		struct mgr_plugin *p = &c->m->pl[l->ids[k]];

		if (!runnable(c, p, cur))
			continue;
		memset(&a, 0, sizeof(a));
		a.hook = c->hook;
		a.payload = pay;
		a.gctx = g;
		a.timeout_ns = p->timeout_ns;
		atomic_fetch_add(&p->calls, 1);
		/* an open circuit fails it as "agent down"; a probe let
		 * through here is judged by the supervisor's counters */
		if (pbus__sup_circuit_allows(c->m, p->id) ==
			    PBUS__SUP_REFUSE ||
		    pbus_submit(p->peer, f->l, &a, &f->tk[f->n])) {
			count_err(p, -ENOTCONN);
			continue;
		}
		f->p[f->n++] = p;
	}
	pthread_mutex_lock(&c->m->ff_lock);
	if (c->m->ff_tail)
		c->m->ff_tail->next = f;
	else
		c->m->ff_head = f;
	c->m->ff_tail = f;
	pthread_cond_signal(&c->m->ff_cond);
	pthread_mutex_unlock(&c->m->ff_lock);
}

void *pbus__ff_reaper(void *arg)
{
	struct pbus_mgr *m = arg;

	pthread_mutex_lock(&m->ff_lock);
	for (;;) {
		struct mgr_ff *f;

		while (!m->ff_head && !m->ff_stop)
			pthread_cond_wait(&m->ff_cond, &m->ff_lock);
		if (!m->ff_head)
			break;
		f = m->ff_head;
		m->ff_head = f->next;
		if (!m->ff_head)
			m->ff_tail = NULL;
		pthread_mutex_unlock(&m->ff_lock);
		for (unsigned i = 0; i < f->n; i++) {
			struct pbus_result r;
			int st = pbus_collect(f->p[i]->peer, f->tk[i],
					      f->p[i]->timeout_ns + 1000000000ull,
					      &r);

			if (st || (r.flags & PBUS_RF_ERROR))
				count_err(f->p[i], st ? st : -EIO);
		}
		pbus_lane_release(f->l);
		free(f);
		pthread_mutex_lock(&m->ff_lock);
	}
	pthread_mutex_unlock(&m->ff_lock);
	return NULL;
}

void pbus__ff_free_all(struct pbus_mgr *m)
{
	while (m->ff_head) {
		struct mgr_ff *f = m->ff_head;

		m->ff_head = f->next;
		pbus_lane_release(f->l);
		free(f);
	}
	m->ff_tail = NULL;
}

/* ---------------------------------------------------------------- run */

static int acquire_lane(struct pbus_bus *b, struct pbus_lane **l)
{
	uint64_t until = pbus__now_ns() + 1000000000ull;

	while (pbus_lane_acquire(b, l)) {
		if (pbus__now_ns() >= until)
			return -EAGAIN;
		sched_yield();
	}
	return 0;
}

static int finish(struct chain *c)
{
	struct pbus_request *rq = c->rq;
	struct pbus_outcome *o = c->out;
	struct pbus_mp fin = view_of(c, c->cur);
	int ret;

	ret = pbus__buf_set(&rq->out_payload, fin.p, fin.len);
	if (!ret)
		ret = pbus__buf_set(&rq->out_meta,
				    c->meta.len ? c->meta.p
						: (const uint8_t *)"\x80",
				    c->meta.len ? c->meta.len : 1);
	if (!ret)
		ret = pbus__buf_set(&rq->out_headers,
				    c->hdrs.len ? c->hdrs.p
						: (const uint8_t *)"\x80",
				    c->hdrs.len ? c->hdrs.len : 1);
	o->http_headers = rq->out_headers.p;
	o->http_headers_len = rq->out_headers.len;
	o->payload = rq->out_payload.p;
	o->payload_len = rq->out_payload.len;
	o->modified = c->cur.off != c->input.off;
	o->metadata = rq->out_meta.p;
	o->metadata_len = rq->out_meta.len;
	o->decided_by = c->decided;
	return ret;
}

static int too_large(struct chain *c, struct pbus_request *rq, size_t len)
{
	struct pbus_violation *v = &rq->viol;
	char desc[160];

	snprintf(desc, sizeof(desc),
		 "payload of %zu bytes exceeds the limit of %zu bytes", len,
		 c->m->max_payload);
	rq->out_strs.len = 0;
	pbus__buf_write(&rq->out_strs, "Payload too large", 18);
	pbus__buf_write(&rq->out_strs, desc, strlen(desc) + 1);
	pbus__buf_write(&rq->out_strs, "PAYLOAD_TOO_LARGE", 18);
	pbus__buf_set(&rq->out_details, "\x80", 1);
	memset(v, 0, sizeof(*v));
	v->reason = (char *)rq->out_strs.p;
	v->description = v->reason + 18;
	v->code = v->description + strlen(desc) + 1;
	v->details = rq->out_details.p;
	v->details_len = 1;
	v->http_headers = "\x80";
	v->http_headers_len = 1;
	v->mcp_error_code = DEFAULT_MCP_ERROR;
	v->plugin_name = "pbus";
	c->out->violation = v;
	c->out->continue_processing = 0;
	c->out->decided_by = "pbus";
	return 0;
}

int pbus_run(struct pbus_mgr *m, struct pbus_request *rq, int hook,
	     const void *payload, size_t len, struct pbus_outcome *out)
{
	struct chain c = {0};
	struct pbus_mp pv;
	uint64_t t0 = pbus__obs_clock();
	int ret;

	if (!m || !rq || !out || hook < 0 || hook >= PBUS_HOOK_COUNT)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	out->continue_processing = 1;
	out->payload = payload;
	out->payload_len = len;
	out->metadata = "\x80";
	out->metadata_len = 1;
	out->http_headers = "\x80";
	out->http_headers_len = 1;
	c.m = m;
	c.rq = rq;
	c.hook = hook;
	c.out = out;
	/* O(1) size check, before anything is decoded */
	if (len > m->max_payload)
		return too_large(&c, rq, len);
	if (pbus_mp_open(payload, len, &pv) || pbus_mp_type(pv) != PBUS_MP_MAP)
		return -EBADMSG;
	if (!pbus_mgr_has_hooks(m, hook))
		return 0;
	ret = acquire_lane(m->bus, &c.l);
	if (ret)
		return ret;
	ret = pbus_lane_write(c.l, payload, len, &c.input);
	if (ret)
		goto out;
	c.cur = c.input;
	for (int ph = PH_SEQUENTIAL; ph <= PH_CONCURRENT && !c.ended; ph++)
		run_phase(&c, ph);
	if (!c.ended)
		fire_and_forget(&c);
	ret = finish(&c);
	if (t0)
		pbus__obs_chain((uint32_t)hook, out->plugins_run,
				out->error		  ? PBUS_OUTCOME_ERROR
				: !out->continue_processing ? PBUS_OUTCOME_VIOLATION
				: out->modified		  ? PBUS_OUTCOME_MODIFIED
							  : PBUS_OUTCOME_OK,
				pbus__obs_since(t0));
out:
	pbus_lane_release(c.l);
	free(c.meta.p);
	free(c.hdrs.p);
	free(c.tmp.p);
	return ret;
}

void pbus_mgr_flush_stats(void)
{
	pbus__obs_flush();
}
