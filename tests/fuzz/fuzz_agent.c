// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: the agent's request reader (bus/agent.c serve_batch()
 * and serve_one(), reached through pbus_agent_poll()) given an arbitrary
 * arena and request ring, and the agent's answer writer behind it.
 *
 * Setup, once: a real bus with two plugin slots and one agent for each in
 * this process (handlers for every hook, run by pbus_agent_poll() on this
 * thread). The fuzzer plays the gateway:
 *
 *  - mode "ring" (slot "fa"): writes request descriptors straight into the
 *    request ring through the agent's channel mapping (pbus__agent_hdr()):
 *    offsets and lengths (exact, shifted, raw, at the arena's end, the whole
 *    arena), inline parts (lengths that fit, that overflow the slot, that
 *    wrap a 32-bit sum) with their bytes, hooks, flags, epochs, commit
 *    words, CPUs; and scribbles on the header words a gateway owns
 *    (resp_head, closing, doorbells). Then it polls the agent and reads the
 *    response ring back like a gateway, checking that the agent answered
 *    each request in order with well-formed frames.
 *
 *  - mode "submit" (slot "fb"): the same references go through pbus_submit()
 *    (which refuses what is out of the arena, and inlines what fits the
 *    slot), then the agent is polled and every ticket collected: an agent
 *    that is not disturbed must answer every call it was given.
 *
 * Oracle for what a handler sees: the fuzzer remembers what it put in each
 * request slot of "fa" (and what it submitted on "fb"), and every handler
 * call checks that the payload and contexts are exactly those: the arena
 * bytes in place for a reference, a copy of the slot's bytes for inline
 * parts. A malformed descriptor must not reach a handler at all.
 *
 * Payload bytes come from the input and are written into a lane of the
 * arena; handler behaviours (violate, fail, rewrite, merge state, metadata,
 * oversized bodies, ...) come from the input too. A watchdog thread plays a
 * draining gateway if the agent waits for ring space for long (a gateway
 * that scribbled a full-looking resp_head), then tells it to leave; the
 * agent is then replaced.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <pbus/pbus.h>
#include <pbus/agent.h>
#include <pbus/agent_util.h>
#include <pbus/bus.h>
#include <pbus/hooks.h>
#include <pbus/mp.h>

#include "gw.h"

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

#define MAX_PAYLOAD 4096u
#define SLOTS 8u
#define NBEHAV 16

struct side {
	const char *name;
	struct pbus_peer *peer;
	struct pbus_agent *agent;
	struct pbus_chan_hdr *hdr; /* the agent's mapping of the channel */
	struct pbus_req_desc *req;
	uint8_t *resp;
	uint64_t rsize;
	uint32_t epoch;
	uint64_t cons; /* our (gateway) consumer position in the resp ring */
	const uint8_t *arena;
	size_t arena_len;
};

static struct {
	char sock[108];
	struct pbus_bus *bus;
	struct pbus_lane *lane;
	struct side fa, fb;
	/* handler behaviour script for the current input */
	uint8_t behav[NBEHAV];
	unsigned nbehav, next;
	uint32_t big, big_cap;
	/* watchdog */
	pthread_t wd;
	pthread_mutex_t wd_lock;
	struct side *_Atomic polling;
	_Atomic uint64_t poll_start;
	_Atomic int intervened;
	_Atomic int wd_stop;
	uint64_t reconnects;
	_Atomic uint64_t wd_count;
	int debug; /* $FZ_DEBUG: counters at exit, slow inputs */
} g = {.wd_lock = PTHREAD_MUTEX_INITIALIZER};

static uint8_t big_buf[300000];

/* What a handler must be given for one request (see the file comment). */
enum { EXP_NONE = 0, EXP_REF, EXP_INLINE, EXP_BYTES };

struct expect {
	int kind;
	uint64_t off[3]; /* EXP_REF: the parts' arena offsets, in place;
			  * EXP_BYTES: where the same bytes are */
	uint32_t len[3];
	uint8_t inl[PBUS_REQ_INLINE_MAX]; /* EXP_INLINE: the slot's bytes */
};

static struct expect exp_fa[SLOTS]; /* by slot: what we last wrote there */
static struct expect exp_fb[SLOTS]; /* by order of submission */
static unsigned fb_served;

/* ------------------------------------------------------------ handler */

static int upper(const struct pbus_mp_path *path, const char *s, size_t n,
		 void *arg, msgpack_packer *pk)
{
	char b[64];

	(void)path;
	(void)arg;
	if (!n || n > sizeof(b) || s[0] < 'a' || s[0] > 'z')
		return 0;
	memcpy(b, s, n);
	b[0] = (char)(b[0] - 32);
	return pbus_mp_pack_strn(pk, b, n) ? -ENOBUFS : 1;
}

/* Whatever the descriptor said, a part handed to a handler is either in
 * the arena or a small inline copy: ASan checks that it is readable. */
static void check_readable(const void *p, size_t len)
{
	volatile uint8_t x = 0;

	if (!p) {
		CHECK(len == 0);
		return;
	}
	x ^= ((const uint8_t *)p)[0];
	x ^= ((const uint8_t *)p)[len - 1];
	(void)x;
}

static void check_part(const struct expect *x, int i, const uint8_t *p,
		       size_t n, const uint8_t *arena, const uint8_t *at)
{
	CHECK(n == x->len[i]);
	CHECK(!p == !n);
	if (!n)
		return;
	/* offsets as integers: a raw offset may point anywhere */
	if (x->kind == EXP_REF)
		CHECK((uintptr_t)p - (uintptr_t)arena == x->off[i]);
	else if (x->kind == EXP_BYTES)
		CHECK(!memcmp(p, arena + x->off[i], n));
	else
		CHECK(!memcmp(p, at, n));
}

/* A slot the real gateway wrote: the inline room past the parts, in the
 * lines it wrote, is zero (nothing of the gateway's stack leaks). */
static void check_slot_tail(const struct pbus_req_desc *d)
{
	uint64_t total = (uint64_t)d->payload_len + d->gctx_len + d->lctx_len;
	uint64_t end;

	if (!(d->flags & PBUS_REQ_F_INLINE))
		return;
	CHECK(total <= PBUS_REQ_INLINE_MAX);
	end = total <= PBUS_CACHELINE - PBUS_REQ_HDR_SIZE
		      ? PBUS_CACHELINE - PBUS_REQ_HDR_SIZE
		      : PBUS_REQ_INLINE_MAX;
	for (uint64_t i = total; i < end; i++)
		CHECK(d->inl[i] == 0);
}

/* The parts of @c must be what the fuzzer gave for this request. */
static void check_expected(struct pbus_call *c)
{
	struct pbus_agent *a = pbus_call_agent(c);
	const struct expect *x;
	const uint8_t *p[3], *at, *arena;
	size_t n[3];

	if (a == g.fa.agent)
		x = &exp_fa[pbus_call_id(c) & (SLOTS - 1)];
	else if (a == g.fb.agent && fb_served < SLOTS)
		x = &exp_fb[fb_served++];
	else
		return;
	if (a == g.fb.agent)
		check_slot_tail(&g.fb.req[pbus_call_id(c) & (SLOTS - 1)]);
	arena = a == g.fa.agent ? g.fa.arena : g.fb.arena;
	if (x->kind == EXP_NONE)
		return;
	p[0] = pbus_call_payload(c, &n[0]);
	p[1] = pbus_call_global_ctx(c, &n[1]);
	p[2] = pbus_call_local_ctx(c, &n[2]);
	/* a handler runs only for a well-formed descriptor */
	if (x->kind == EXP_INLINE)
		CHECK((uint64_t)x->len[0] + x->len[1] + x->len[2] <=
		      PBUS_REQ_INLINE_MAX);
	at = x->inl;
	for (int i = 0; i < 3; i++) {
		check_part(x, i, p[i], n[i], arena, at);
		at += x->len[i];
	}
}

static int handler(struct pbus_call *c, void *arg)
{
	struct pbus_mp pl, gc, lc, v;
	const void *p;
	size_t n;
	char buf[32];
	uint8_t b = g.nbehav ? g.behav[g.next++ % g.nbehav] : 0;
	int hp, hg, hl;

	(void)arg;
	CHECK(pbus_call_hook(c) >= 0 && pbus_call_hook(c) < PBUS_HOOK_COUNT);
	check_expected(c);
	p = pbus_call_payload(c, &n);
	check_readable(p, n);
	p = pbus_call_global_ctx(c, &n);
	check_readable(p, n);
	p = pbus_call_local_ctx(c, &n);
	check_readable(p, n);
	hp = pbus_call_payload_view(c, &pl);
	hg = pbus_call_gctx_view(c, &gc);
	hl = pbus_call_lctx_view(c, &lc);
	CHECK(hp == 0 || hp == -ENOENT || hp == -EBADMSG);
	CHECK(hg == 0 || hg == -ENOENT || hg == -EBADMSG);
	CHECK(hl == 0 || hl == -ENOENT || hl == -EBADMSG);

	switch (b % 12) {
	case 0:
		return 0;
	case 1:
		return pbus_call_violate(c, "FZ", "fuzz", "a fuzzed violation");
	case 2:
		return pbus_call_fail(c, "fuzzed failure");
	case 3:
		return -EIO;
	case 4:
		return pbus_call_rewrite(c, (b & 0x10) ? "args.*" : NULL, upper,
					 NULL) < 0
			       ? -EBADMSG
			       : 0;
	case 5: {
		msgpack_packer *pk = pbus_call_metadata(c);

		if (!hg && pbus_mp_type(gc) == PBUS_MP_MAP)
			pbus_mp_copy(pk, gc);
		else
			msgpack_pack_map(pk, 0);
		return 0;
	}
	case 6:
		if (!hp && pbus_mp_type(pl) == PBUS_MP_MAP)
			return pbus_call_state_merge(c, pl);
		return 0;
	case 7: /* a body larger than the ring, or than the gateway takes */
		msgpack_pack_bin_with_body(
			pbus_call_put(c, "metadata"), big_buf,
			(g.big & 0x800000) ? g.big % g.big_cap : g.big % 4096);
		return 0;
	case 8:
		if (pbus_call_str(c, "args.query", buf, sizeof(buf)) >= 0) {
			msgpack_packer *pk = pbus_call_metadata(c);

			msgpack_pack_map(pk, 1);
			pbus_pack_kv_str(pk, "q", buf);
		}
		return 0;
	case 9:
		if (!pbus_call_field(c, "name", &v))
			return pbus_call_modify_set(c, "name", v) < 0 ? -EINVAL
								      : 0;
		return 0;
	case 10: {
		msgpack_packer *pk = pbus_call_violate_begin(c, "FZ", "fuzz",
							     "details follow");

		msgpack_pack_map(pk, 1);
		pbus_pack_kv_int(pk, "n", (int64_t)pbus_call_id(c));
		return 0;
	}
	default:
		pbus_call_set_flags(c, b);
		if (!hl)
			pbus_call_local_metadata_merge(c, lc);
		return 0;
	}
}

/* ------------------------------------------------------------ setup */

static void side_attach(struct side *s)
{
	struct pbus_agent_opts o = {
		.name = s->name,
		.sock_path = g.sock,
		.connect_timeout_ms = 2000,
		.heartbeat_ms = 1,
		.idle_spin_ns = 1,
		.no_signals = 1,
	};
	int ret = -1;

	for (int tries = 0; tries < 200 && ret; tries++) {
		CHECK(pbus_agent_create(&o, &s->agent) == 0);
		for (int h = 0; h < PBUS_HOOK_COUNT; h++)
			CHECK(pbus_agent_on(s->agent, h, handler, NULL) == 0);
		ret = pbus_agent_connect(s->agent);
		if (ret) {
			pbus_agent_destroy(s->agent);
			s->agent = NULL;
			usleep(1000);
		}
	}
	CHECK(ret == 0);
	CHECK(pbus_peer_wait_up(s->peer, 2000) == 0);
	s->hdr = pbus__agent_hdr(s->agent);
	s->req = (struct pbus_req_desc *)((uint8_t *)s->hdr + s->hdr->req_off);
	s->resp = (uint8_t *)s->hdr + s->hdr->resp_off;
	s->rsize = s->hdr->resp_size;
	s->epoch = pbus_agent_epoch(s->agent);
	s->cons = 0;
	s->arena = pbus__agent_arena(s->agent, &s->arena_len);
	CHECK(s->hdr->req_slots == SLOTS);
	if (s == &g.fa) /* a fresh ring: no slot holds anything of ours */
		memset(exp_fa, 0, sizeof(exp_fa));
}

static void side_reattach(struct side *s)
{
	pbus_agent_destroy(s->agent);
	s->agent = NULL;
	s->hdr = NULL;
	for (int i = 0; i < 2000 && pbus_peer_is_up(s->peer); i++)
		usleep(100);
	side_attach(s);
	g.reconnects++;
}

/*
 * The watchdog. An agent that waits for response space (the gateway side
 * wrote a full-looking resp_head, or one poll produced more than the ring
 * holds) is served like a gateway would after 1 ms: everything counts as
 * consumed. If the agent still makes no progress 100 ms later although
 * everything it wrote is consumed, it can never make progress: a livelock,
 * reported as a crash. After 5 s it is told to leave, as a last resort.
 */
static void *watchdog(void *arg)
{
	uint64_t tail1 = 0, t1 = 0;
	struct side *last = NULL;

	(void)arg;
	while (!atomic_load(&g.wd_stop)) {
		struct side *s;
		struct pbus_chan_hdr *h;
		uint64_t t0, now, tail;

		usleep(250);
		pthread_mutex_lock(&g.wd_lock);
		s = atomic_load(&g.polling);
		t0 = atomic_load(&g.poll_start);
		now = pbus__now_ns();
		if (!s || !t0 || now - t0 < 1000000ull) {
			t1 = 0;
			goto next;
		}
		h = s->hdr;
		if (s != last)
			t1 = 0;
		last = s;
		tail = __atomic_load_n(&h->resp_tail, __ATOMIC_ACQUIRE);
		if (!t1 || tail != tail1) {
			/* first look, or it wrote more since: drain */
			atomic_store(&g.intervened, 1);
			atomic_fetch_add(&g.wd_count, 1);
			tail1 = tail;
			t1 = now;
			__atomic_store_n(&h->resp_head, tail, __ATOMIC_RELEASE);
		} else if (now - t1 > 100000000ull &&
			   __atomic_load_n(&h->resp_head, __ATOMIC_ACQUIRE) ==
				   tail1 &&
			   !__atomic_load_n(&h->closing, __ATOMIC_ACQUIRE)) {
			fprintf(stderr,
				"fuzz_agent: agent '%s' made no progress for "
				"100 ms with its whole response ring "
				"consumed (tail %llu)\n",
				s->name, (unsigned long long)tail);
			abort();
		}
		if (now - t0 > 5000000000ull)
			__atomic_store_n(&h->closing, 1, __ATOMIC_RELEASE);
		__atomic_fetch_add(&h->resp_space.seq, 1, __ATOMIC_RELEASE);
		pbus__futex_wake(&h->resp_space.seq, 1 << 30);
		__atomic_fetch_add(&h->req_data.seq, 1, __ATOMIC_RELEASE);
		pbus__futex_wake(&h->req_data.seq, 1 << 30);
	next:
		pthread_mutex_unlock(&g.wd_lock);
	}
	return NULL;
}

static void cleanup(void)
{
	if (g.debug)
		fprintf(stderr,
			"fuzz_agent: %llu reconnects, %llu watchdog "
			"interventions\n",
			(unsigned long long)g.reconnects,
			(unsigned long long)g.wd_count);
	atomic_store(&g.wd_stop, 1);
	pthread_join(g.wd, NULL);
	pbus_agent_destroy(g.fa.agent);
	pbus_agent_destroy(g.fb.agent);
	pbus_lane_release(g.lane);
	pbus_bus_close(g.bus);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct pbus_bus_opts o = {
		.max_payload = MAX_PAYLOAD,
		.lanes = 2,
		.ring_slots = SLOTS,
		.max_spin_ns = 1,
		.agent_idle_spin_ns = 1,
	};

	(void)argc;
	(void)argv;
	snprintf(g.sock, sizeof(g.sock), "/tmp/pbus-fuzz-agent-%d.sock",
		 (int)getpid());
	unlink(g.sock);
	o.sock_path = g.sock;
	memset(big_buf, 'b', sizeof(big_buf));
	g.debug = getenv("FZ_DEBUG") != NULL;
	CHECK(pbus_bus_open(&o, &g.bus) == 0);
	g.fa.name = "fa";
	g.fb.name = "fb";
	CHECK(pbus_bus_add_peer(g.bus, "fa", NULL, 0, &g.fa.peer) == 0);
	CHECK(pbus_bus_add_peer(g.bus, "fb", NULL, 0, &g.fb.peer) == 0);
	CHECK(pbus_lane_acquire(g.bus, &g.lane) == 0);
	side_attach(&g.fa);
	side_attach(&g.fb);
	CHECK(pthread_create(&g.wd, NULL, watchdog, NULL) == 0);
	atexit(cleanup);
	return 0;
}

/* Run the agent's poll under the watchdog's eye. */
static int poll_agent(struct side *s)
{
	int ret;

	atomic_store(&g.poll_start, pbus__now_ns());
	atomic_store(&g.polling, s);
	ret = pbus_agent_poll(s->agent, 0);
	pthread_mutex_lock(&g.wd_lock);
	atomic_store(&g.polling, NULL);
	atomic_store(&g.poll_start, 0);
	pthread_mutex_unlock(&g.wd_lock);
	return ret;
}

/* ------------------------------------------------------------ references */

/* An arena reference chosen by the input, around @blob. */
static void pick_ref(struct in *in, struct pbus_ref blob, uint64_t asz,
		     uint64_t *off, uint32_t *len)
{
	uint8_t k = u8(in);

	switch (k % 7) {
	case 0: /* absent */
		*off = 0;
		*len = 0;
		break;
	case 1:
	case 2:
		*off = blob.off;
		*len = blob.len;
		break;
	case 3: /* shifted */
		*off = blob.off + (uint64_t)(int64_t)(int8_t)u8(in);
		*len = blob.len + (uint32_t)(int32_t)(int8_t)u8(in);
		break;
	case 4: /* raw */
		*off = uN(in, 8);
		*len = (uint32_t)uN(in, 4);
		break;
	case 5: /* at the end of the arena, or just past it */
		*len = (uint32_t)uN(in, 2);
		*off = asz - *len + (k >> 7);
		break;
	default: /* everything, header included */
		*off = 0;
		*len = (uint32_t)asz;
		break;
	}
}

/* ------------------------------------------------------------ mode ring */

/* Inline parts chosen by the input: lengths that fit the slot (split three
 * ways), raw lengths (sums past the slot, or wrapping 32 bits), or just one
 * byte too many; the bytes come from the input. */
static void pick_inline(struct in *in, struct pbus_req_desc *d)
{
	uint8_t k = u8(in);
	uint32_t total, a, b;
	size_t n;

	d->flags |= PBUS_REQ_F_INLINE;
	switch (k % 4) {
	case 0:
	case 1:
		total = u8(in) % (PBUS_REQ_INLINE_MAX + 1);
		a = u8(in) % (total + 1);
		b = u8(in) % (total - a + 1);
		d->payload_len = a;
		d->gctx_len = b;
		d->lctx_len = total - a - b;
		break;
	case 2:
		d->payload_len = (uint32_t)uN(in, 4);
		d->gctx_len = (uint32_t)uN(in, 4);
		d->lctx_len = (uint32_t)uN(in, 4);
		break;
	default:
		d->payload_len = PBUS_REQ_INLINE_MAX + 1 - (k >> 7);
		d->gctx_len = d->lctx_len = 0;
		break;
	}
	n = in->n < PBUS_REQ_INLINE_MAX ? in->n : PBUS_REQ_INLINE_MAX;
	memcpy(d->inl, in->p, n);
	in->p += n;
	in->n -= n;
}

/* Remember what the agent must make of the descriptor @d in slot @slot. */
static void expect_desc(unsigned slot, const struct pbus_req_desc *d)
{
	struct expect *x = &exp_fa[slot];

	x->len[0] = d->payload_len;
	x->len[1] = d->gctx_len;
	x->len[2] = d->lctx_len;
	if (d->flags & PBUS_REQ_F_INLINE) {
		x->kind = EXP_INLINE;
		memcpy(x->inl, d->inl, sizeof(x->inl));
		return;
	}
	x->kind = EXP_REF;
	x->off[0] = d->payload_off;
	x->off[1] = d->gctx_off;
	x->off[2] = d->lctx_off;
}

static uint32_t *word_at(struct side *s, uint64_t pos)
{
	return (uint32_t *)(s->resp + (pos & (s->rsize - 1)));
}

static void scribble(struct side *s, struct in *in, int *sane)
{
	struct pbus_chan_hdr *h = s->hdr;
	uint8_t which = u8(in);
	uint64_t v = uN(in, 8);

	*sane = 0;
	switch (which % 6) {
	case 0: /* a consumer head behind, ahead of or far from the tail */
		__atomic_store_n(&h->resp_head,
				 h->resp_tail + (int64_t)(int16_t)v * 64,
				 __ATOMIC_RELEASE);
		break;
	case 1:
		__atomic_store_n(&h->resp_head, v, __ATOMIC_RELEASE);
		break;
	case 2:
		h->resp_space.waiters = (uint32_t)v;
		h->resp_data.waiters = (uint32_t)(v >> 32);
		break;
	case 3:
		h->req_data.seq = (uint32_t)v;
		h->req_space.waiters = (uint32_t)(v >> 32);
		break;
	case 4: /* closing: the agent must leave */
		if (v & 1)
			__atomic_store_n(&h->closing, 1, __ATOMIC_RELEASE);
		break;
	default: /* a request slot's commit word ahead of its time */
		__atomic_store_n(&s->req[v & (SLOTS - 1)].seq, v >> 8,
				 __ATOMIC_RELEASE);
		break;
	}
}

/* Read back what the agent wrote since our last look, like a gateway, and
 * check it. */
static void read_back(struct side *s, uint64_t first_id, int served, int strict)
{
	uint64_t t = __atomic_load_n(&s->hdr->resp_tail, __ATOMIC_ACQUIRE);
	uint64_t pos = s->cons, id = first_id;
	int frames = 0;

	if (strict) {
		CHECK(t - s->cons <= s->rsize - 64);
		while (pos != t) {
			uint64_t off = pos & (s->rsize - 1);
			uint64_t to_end = s->rsize - off;
			struct pbus_resp_frame f;

			memcpy(&f, s->resp + off, sizeof(f));
			CHECK(f.len && f.len % PBUS_FRAME_ALIGN == 0 &&
			      f.len <= to_end);
			if (f.type == PBUS_FRAME_PAD) {
				CHECK(f.len == to_end);
				pos += f.len;
				continue;
			}
			CHECK(f.type == PBUS_FRAME_RESP);
			CHECK(f.epoch == s->epoch);
			CHECK(f.id == id);
			CHECK((f.flags & ~PBUS_RF_ALL) == 0);
			CHECK(f.body_len <= f.len - sizeof(f));
			if (f.body_len) {
				struct pbus_mp v;

				/* a map header, whatever the handler did */
				CHECK(s->resp[off + sizeof(f)] == 0xdf);
				(void)pbus_mp_open(s->resp + off + sizeof(f),
						   f.body_len, &v);
			}
			id++;
			frames++;
			pos += f.len;
		}
		CHECK(frames == served);
		/* the agent clears the next commit word before committing */
		CHECK(*word_at(s, t) == 0);
	}
	s->cons = t;
	__atomic_store_n(&s->hdr->resp_head, t, __ATOMIC_RELEASE);
}

static void mode_ring(struct in *in, struct pbus_ref blob, uint8_t ctl)
{
	struct side *s = &g.fa;
	struct pbus_chan_hdr *h = s->hdr;
	uint64_t head = __atomic_load_n(&h->req_head, __ATOMIC_ACQUIRE);
	unsigned k = 1 + (ctl & 7), written = 0;
	int sane = 1, ret;

	for (unsigned i = 0; i < k && in->n; i++) {
		struct pbus_req_desc d = {0};
		uint64_t pos = head + i;
		uint8_t op = u8(in);

		d.epoch = s->epoch;
		if (op & 1)
			d.epoch += (uint32_t)(int8_t)u8(in);
		d.hook = (op & 2) ? (uint16_t)uN(in, 2)
				  : (uint16_t)(u8(in) % PBUS_HOOK_COUNT);
		d.flags = (op & 4) ? (uint16_t)uN(in, 2) : 0;
		if (op & 0x10) {
			pick_inline(in, &d);
		} else {
			pick_ref(in, blob, s->arena_len, &d.payload_off,
				 &d.payload_len);
			pick_ref(in, blob, s->arena_len, &d.gctx_off,
				 &d.gctx_len);
			pick_ref(in, blob, s->arena_len, &d.lctx_off,
				 &d.lctx_len);
		}
		d.cpu = (op & 8) ? (uint32_t)uN(in, 4) : 0;
		d.timeout_ns = uN(in, 8);
		d.seq = pos + 1;
		if (op & 0x80) {
			/* a wrong commit word: the agent must stop there */
			d.seq += (uint64_t)(int64_t)(int8_t)u8(in);
			sane = 0;
		}
		memcpy((uint8_t *)&s->req[pos & (SLOTS - 1)] + 8,
		       (uint8_t *)&d + 8, sizeof(d) - 8);
		/* the slot's content, whichever commit word later makes
		 * the agent serve it (ours, or a scribbled one) */
		expect_desc(pos & (SLOTS - 1), &d);
		__atomic_store_n(&s->req[pos & (SLOTS - 1)].seq, d.seq,
				 __ATOMIC_RELEASE);
		written++;
		if (op & 0x40)
			scribble(s, in, &sane);
	}
	atomic_store(&g.intervened, 0);
	ret = poll_agent(s);
	if (ret == -ENOTCONN) {
		side_reattach(s);
		return;
	}
	CHECK(ret >= 0);
	if (atomic_load(&g.intervened))
		sane = 0;
	if (sane)
		CHECK((unsigned)ret == written);
	read_back(s, head, ret, sane);
	/* no request may linger for a later input: every slot is consumed
	 * or abandoned (seq 0 is never a commit word) */
	for (unsigned i = 0; i < SLOTS; i++)
		__atomic_store_n(&s->req[i].seq, 0, __ATOMIC_RELEASE);
	/* every served request's slot is stale from now on */
	CHECK(__atomic_load_n(&h->req_head, __ATOMIC_ACQUIRE) ==
		      head + (uint64_t)ret ||
	      !sane);
}

/* ------------------------------------------------------------ mode submit */

static void mode_submit(struct in *in, struct pbus_ref blob, uint8_t ctl)
{
	struct side *s = &g.fb;
	struct pbus_chan *ch = atomic_load(&s->peer->chan);
	uint64_t asz = s->arena_len, tk[SLOTS];
	unsigned k = 1 + (ctl & 7), n = 0;
	int ret;

	CHECK(ch);
	fb_served = 0;
	for (unsigned i = 0; i < k && in->n; i++) {
		struct pbus_call_args a = {0};
		struct expect *x = &exp_fb[n];

		a.hook = u8(in) % PBUS_HOOK_COUNT;
		pick_ref(in, blob, asz, &a.payload.off, &a.payload.len);
		pick_ref(in, blob, asz, &a.gctx.off, &a.gctx.len);
		pick_ref(in, blob, asz, &a.lctx.off, &a.lctx.len);
		a.timeout_ns = 5000000000ull;
		ret = pbus_submit(s->peer, g.lane, &a, &tk[n]);
		if (ret) {
			CHECK(ret == -EINVAL || ret == -EMSGSIZE);
			continue;
		}
		/* inline or not, the agent must see these arena bytes */
		x->kind = EXP_BYTES;
		x->off[0] = a.payload.off;
		x->len[0] = a.payload.len;
		x->off[1] = a.gctx.off;
		x->len[1] = a.gctx.len;
		x->off[2] = a.lctx.off;
		x->len[2] = a.lctx.len;
		n++;
	}
	if (!n)
		return;
	atomic_store(&g.intervened, 0);
	ret = poll_agent(s);
	CHECK(ret == (int)n); /* nobody disturbs this agent */
	for (unsigned i = 0; i < n; i++) {
		struct pbus_result r;

		ret = pbus_collect(s->peer, tk[i], 0, &r);
		/* answered: 0, or a body over the gateway's limits */
		CHECK(ret == 0 || ret == -EMSGSIZE || ret == -ENOBUFS);
		CHECK((r.flags & ~PBUS_RF_ALL) == 0);
		if (!ret && r.body.len) {
			struct pbus_mp v;

			CHECK(r.body_ptr);
			(void)pbus_mp_open(r.body_ptr, r.body.len, &v);
		}
	}
}

/* ------------------------------------------------------------ one input */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct in in = {data, size};
	struct pbus_ref blob = {0};
	uint8_t ctl, plen;
	struct pbus_chan *ch;
	uint64_t t_in;

	if (size < 2)
		return 0;
	ctl = u8(&in);
	/* behaviours for the handler calls of this input */
	g.nbehav = u8(&in) % (NBEHAV + 1);
	for (unsigned i = 0; i < g.nbehav; i++)
		g.behav[i] = u8(&in);
	g.next = 0;
	g.big = (uint32_t)uN(&in, 3);
	/* the payload bytes */
	plen = u8(&in);
	if (plen > in.n)
		plen = (uint8_t)in.n;
	pbus_lane_reset(g.lane);
	CHECK(pbus_lane_write(g.lane, plen ? in.p : (const uint8_t *)"",
			      plen ? plen : 1, &blob) == 0);
	if (!plen)
		blob.len = 0;
	in.p += plen;
	in.n -= plen;

	/* In the submit mode nobody drains while the agent runs: bodies stay
	 * small enough that the calls of one input always fit the ring (one
	 * call: half the ring, which is placeable wherever the tail is). The
	 * ring mode, where the watchdog drains, gets bodies up to the ring's
	 * size. */
	g.big_cap = !(ctl & 0x80) ? sizeof(big_buf)
		    : (ctl & 7)	  ? 16384
				  : 130944;
	t_in = pbus__now_ns();
	if (ctl & 0x80) {
		ch = atomic_load(&g.fb.peer->chan);
		if (!ch || atomic_load(&ch->dead))
			side_reattach(&g.fb);
		mode_submit(&in, blob, ctl);
	} else {
		ch = atomic_load(&g.fa.peer->chan);
		if (!ch || atomic_load(&ch->dead) ||
		    __atomic_load_n(&g.fa.hdr->closing, __ATOMIC_RELAXED))
			side_reattach(&g.fa);
		mode_ring(&in, blob, ctl);
	}
	if (g.debug && pbus__now_ns() - t_in > 2000000)
		fprintf(stderr, "slow input: ctl %#x, %llu us\n", ctl,
			(unsigned long long)(pbus__now_ns() - t_in) / 1000);
	return 0;
}
