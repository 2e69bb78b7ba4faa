// SPDX-License-Identifier: MIT
/*
 * The gateway's hot path: submit a request descriptor, drain the response
 * ring, wait for a result. See include/pbus/abi.h for the ring protocol and
 * bus/gw.h for the concurrency model.
 *
 * Trust: everything in the channel is writable by the agent. The gateway
 * writes request descriptors but never reads them back; from the response
 * side it reads the tail index once per drain, copies each frame header once
 * into a local, bounds-checks it against the ring and the tail, matches it to
 * an outstanding request of the current epoch and copies the body out into
 * the caller's lane before anyone decodes it. Anything else is dropped and
 * counted. A malformed frame loses the framing, so the drain skips to the
 * agent's tail: the calls whose answers were in the skipped bytes time out.
 *
 * Waiting: a caller spins only while the agent is running (or waking up) on
 * another CPU, for a bounded budget learned from the channel's response
 * times. While the agent runs, or sleeps, on the caller's own CPU (an agent
 * whose requests come far apart pins itself there, see agent.c place()),
 * the caller polls with sched_yield() for the same budget, so the agent gets
 * the CPU at once and the answer is seen without a second wake-up; it never
 * pause-spins then. Otherwise it sleeps on the response doorbell. The agent
 * calls FUTEX_WAKE only when a gateway thread has announced itself as a
 * sleeper.
 *
 * Cache lines (each one moved between CPUs costs ~0.1-0.15 us on the VMs we
 * measure, a round trip ~0.3 us): a call whose payload and contexts fit in
 * the request slot travels inline (desc_build()), so the agent finds
 * descriptor and data side by side in the lines it polls; the caller's lane
 * keeps the copy the gateway trusts. A lone call hands the lines it wrote to
 * the shared cache (CLDEMOTE) for the polling agent; a pipelined one instead
 * fetches the slot two calls ahead for writing. A waiter that gets its own
 * answer stops draining there rather than read the next frame's line, which
 * the agent has just claimed. The clock is read after the commit, while the
 * agent works, not before it.
 */
#include <limits.h>
#include <sched.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "gw.h"
#include "obs.h"

#define DEFAULT_TIMEOUT_NS (30ull * 1000000000ull)
#define RESULT_SLACK 65536u /* result body may exceed max_payload by this */

/* ---------------------------------------------------------------- locks */

static inline void lock(_Atomic uint32_t *l)
{
	while (atomic_exchange_explicit(l, 1, memory_order_acquire))
		while (atomic_load_explicit(l, memory_order_relaxed))
			pbus__cpu_relax();
}

static inline int trylock(_Atomic uint32_t *l)
{
	return !atomic_load_explicit(l, memory_order_relaxed) &&
	       !atomic_exchange_explicit(l, 1, memory_order_acquire);
}

static inline void unlock(_Atomic uint32_t *l)
{
	atomic_store_explicit(l, 0, memory_order_release);
}

/* ---------------------------------------------------------------- events */

/* Wake sleepers on @ev. The caller's publishing store must be ordered before
 * this (full fence), pairing with the sleeper's waiters increment. */
static inline PBUS_HOT int ev_notify(struct pbus_event *ev)
{
	if (__atomic_load_n(&ev->waiters, __ATOMIC_RELAXED)) {
		__atomic_fetch_add(&ev->seq, 1, __ATOMIC_RELEASE);
		pbus__futex_wake(&ev->seq, INT_MAX);
		return 1;
	}
	return 0;
}

/* ---------------------------------------------------------------- refs */

PBUS_HOT struct pbus_chan *pbus__chan_tryget(struct pbus_peer *p)
{
	for (;;) {
		struct pbus_chan *ch = atomic_load_explicit(
			&p->chan, memory_order_acquire);
		int32_t r;

		if (!ch)
			return NULL;
		r = atomic_load_explicit(&ch->refs, memory_order_relaxed);
		do {
			if (r < 0)
				return NULL;
		} while (!atomic_compare_exchange_weak_explicit(
			&ch->refs, &r, r + 1, memory_order_acquire,
			memory_order_relaxed));
		if (atomic_load_explicit(&p->chan, memory_order_acquire) == ch)
			return ch;
		pbus__chan_put(ch);
	}
}

PBUS_HOT void pbus__chan_put(struct pbus_chan *ch)
{
	atomic_fetch_sub_explicit(&ch->refs, 1, memory_order_release);
}

/* Take a reference on the channel struct @ticket was issued by, if it is
 * still the same connection. */
static struct pbus_chan *chan_by_epoch(struct pbus_peer *p, uint32_t epoch)
{
	for (unsigned i = 0; i < PBUS__CHAN_POOL; i++) {
		struct pbus_chan *ch = p->pool[i];
		int32_t r;

		if (!ch)
			continue;
		r = atomic_load_explicit(&ch->refs, memory_order_relaxed);
		do {
			if (r < 0)
				goto next;
		} while (!atomic_compare_exchange_weak_explicit(
			&ch->refs, &r, r + 1, memory_order_acquire,
			memory_order_relaxed));
		if (ch->epoch == epoch)
			return ch;
		pbus__chan_put(ch);
next:;
	}
	return NULL;
}

/*
 * Mark the channel dead and wake everyone who might wait on it: gateway
 * threads (they fail their calls with @status) and the agent (it must leave).
 * Control thread only, while the channel is still mapped.
 */
void pbus__chan_kill(struct pbus_chan *ch, int status)
{
	struct pbus_chan_hdr *h = ch->hdr;

	/* the status first: whoever sees dead must see why */
	if (atomic_load(&ch->dead))
		return;
	ch->dead_status = status;
	atomic_store(&ch->dead, 1); /* seq_cst: also orders the wakes below */
	if (!ch->mapped)
		return;
	__atomic_store_n(&h->closing, 1, __ATOMIC_RELEASE);
	__atomic_fetch_add(&h->req_data.seq, 1, __ATOMIC_RELEASE);
	pbus__futex_wake(&h->req_data.seq, INT_MAX);
	__atomic_fetch_add(&h->resp_data.seq, 1, __ATOMIC_RELEASE);
	pbus__futex_wake(&h->resp_data.seq, INT_MAX);
	__atomic_fetch_add(&h->req_space.seq, 1, __ATOMIC_RELEASE);
	pbus__futex_wake(&h->req_space.seq, INT_MAX);
}

/* ---------------------------------------------------------------- drain */

static void rej(struct pbus_chan *ch, _Atomic uint64_t *ctr)
{
	(void)ch;
	atomic_fetch_add_explicit(ctr, 1, memory_order_relaxed);
}

/* Handle one well-framed response. Drainer only. Returns 1 if it completed
 * an entry. */
static PBUS_HOT int complete(struct pbus_chan *ch,
			     const struct pbus_resp_frame *f,
			     const uint8_t *body)
{
	struct pbus_peer *p = ch->peer;
	struct pbus_pending *e = &ch->pend[f->id & ch->req_mask];
	uint32_t want = PEND_WAITING;
	uint64_t off;
	int status = 0;

	if (f->epoch != ch->epoch) {
		rej(ch, &p->rej_stale);
		return 0;
	}
	if (atomic_load_explicit(&e->id, memory_order_relaxed) != f->id) {
		rej(ch, &p->rej_unknown);
		return 0;
	}
	if (!atomic_compare_exchange_strong_explicit(&e->state, &want,
						     PEND_FILLING,
						     memory_order_acquire,
						     memory_order_relaxed)) {
		if (want == PEND_DONE || e->answered == f->id)
			rej(ch, &p->rej_dup);
		else
			rej(ch, &p->rej_unknown); /* abandoned */
		return 0;
	}
	e->answered = f->id;
	e->body = (struct pbus_ref){0, 0, 0};
	if (f->body_len) {
		struct pbus_bus *b = p->bus;

		if (f->body_len > b->o.max_payload + RESULT_SLACK)
			status = -EMSGSIZE;
		else if (pbus__lane_alloc_res(e->lane, f->body_len, &off))
			status = -ENOBUFS;
		else {
			memcpy((uint8_t *)b->arena.base + off, body,
			       f->body_len);
			e->body = (struct pbus_ref){off, f->body_len, 0};
		}
	}
	e->status = status;
	e->flags = f->flags & PBUS_RF_ALL;
	e->handler_ns = f->handler_ns;
	atomic_store_explicit(&e->state, PEND_DONE, memory_order_release);
	/* counted here, under cons_lock, where a plain increment is safe:
	 * a locked add per call costs more than it is worth */
	atomic_store_explicit(&p->completed,
			      atomic_load_explicit(&p->completed,
						   memory_order_relaxed) + 1,
			      memory_order_relaxed);
	return 1;
}

static inline PBUS_HOT uint32_t frame_len_at(const struct pbus_chan *ch,
					     uint64_t pos)
{
	return __atomic_load_n((const uint32_t *)(ch->resp +
						  (pos & (ch->resp_size - 1))),
			       __ATOMIC_ACQUIRE);
}

/* Drain committed frames, all of them, or (@stop not NULL) up to the one
 * that completes @stop. Caller holds cons_lock and a reference. Returns the
 * number of entries completed. */
static PBUS_HOT unsigned drain(struct pbus_chan *ch,
			       const struct pbus_pending *stop)
{
	struct pbus_chan_hdr *h = ch->hdr;
	uint64_t head = atomic_load_explicit(&ch->resp_head,
					     memory_order_relaxed);
	uint64_t size = ch->resp_size, mask = size - 1, start = head;
	unsigned done = 0;

	for (;;) {
		uint64_t off = head & mask, to_end = size - off;
		struct pbus_resp_frame f;
		uint32_t len = frame_len_at(ch, head); /* commit word */

		if (!len)
			break;
		memcpy(&f, ch->resp + off, sizeof(f)); /* read once */
		f.len = len;
		/* no run of frames may cover more than a lap: the ring
		 * is never cleared, so old frames would be met again */
		if (f.type == PBUS_FRAME_PAD && len == to_end &&
		    to_end <= size - PBUS_FRAME_ALIGN - (head - start)) {
			head += to_end;
			continue;
		}
		if (len > size - PBUS_FRAME_ALIGN - (head - start) ||
		    f.type != PBUS_FRAME_RESP || len < sizeof(f) ||
		    len % PBUS_FRAME_ALIGN || len > to_end ||
		    len > size - PBUS_FRAME_ALIGN ||
		    f.body_len > len - sizeof(f)) {
			uint64_t t = __atomic_load_n(&h->resp_tail,
						     __ATOMIC_ACQUIRE);

			/* Framing is lost: skip to where the agent says it
			 * writes next, if that is believable. A tail not yet
			 * published past the bad frame (agents commit frames
			 * before they publish the tail) is waited for; a tail
			 * that makes no sense poisons the channel. */
			if (ch->bad_at != head + 1) {
				rej(ch, &ch->peer->rej_bad);
				ch->bad_at = head + 1;
			}
			if ((int64_t)(t - head) > 0 && t - start <= size &&
			    t % PBUS_FRAME_ALIGN == 0)
				head = t;
			else if ((int64_t)(head - t) < 0 || head - t > size)
				atomic_store(&ch->poisoned, 1);
			break;
		}
		head += len;
		if (complete(ch, &f, ch->resp + off + sizeof(f))) {
			done++;
			atomic_store_explicit(&ch->last_done, f.id,
					      memory_order_relaxed);
			/* Ours is done: do not look at the next frame now.
			 * The agent has just cleared its commit word, so
			 * reading it would pull the line over on our
			 * critical path; the next wait reads it anyway. */
			if (&ch->pend[f.id & ch->req_mask] == stop)
				break;
		}
	}
	if (head == start)
		return done;
	atomic_store_explicit(&ch->resp_head, head, memory_order_relaxed);
	__atomic_store_n(&h->resp_head, head, __ATOMIC_RELEASE);
	atomic_thread_fence(memory_order_seq_cst);
	ev_notify(&h->resp_space);
	if (done)
		ev_notify(&h->resp_data); /* other gateway sleepers */
	return done;
}

static inline PBUS_HOT unsigned try_drain(struct pbus_chan *ch,
					  const struct pbus_pending *stop)
{
	unsigned n;

	if (atomic_load_explicit(&ch->poisoned, memory_order_relaxed) ||
	    !trylock(&ch->cons_lock))
		return 0;
	n = drain(ch, stop);
	unlock(&ch->cons_lock);
	return n;
}

/*
 * After waking a sleeping agent, should the caller spin or sleep? Spinning
 * keeps our CPU awake and sees the answer at once, but the agent then wakes
 * on another CPU (on this class of VM a halted vCPU takes ~20-50 us to wake);
 * sleeping lets the agent run on our CPU (~5 us hand-over) but costs a second
 * wake-up. Which wins depends on the host and the load, so each channel
 * measures both (EWMA of the response time after a wake-up) and takes the
 * faster, trying the other one wake-up in 128.
 */
enum { WAKE_SLEEP = 0, WAKE_SPIN = 1 };

static PBUS_HOT uint8_t wake_choose(struct pbus_chan *ch)
{
	uint32_t n = atomic_fetch_add_explicit(&ch->wake_n, 1,
					       memory_order_relaxed);
	uint32_t sl = atomic_load_explicit(&ch->wake_ns[WAKE_SLEEP],
					   memory_order_relaxed);
	uint32_t sp = atomic_load_explicit(&ch->wake_ns[WAKE_SPIN],
					   memory_order_relaxed);
	uint8_t best = sp < sl ? WAKE_SPIN : WAKE_SLEEP;

	if (!sl || !sp) /* learn both first */
		return !sl ? WAKE_SLEEP : WAKE_SPIN;
	return (n & 127) == 127 ? !best : best;
}

static PBUS_HOT void wake_learn(struct pbus_chan *ch, uint8_t strategy,
				uint64_t lat)
{
	_Atomic uint32_t *w = &ch->wake_ns[strategy];
	uint32_t old = atomic_load_explicit(w, memory_order_relaxed);
	uint32_t l = lat > UINT32_MAX / 2 ? UINT32_MAX / 2 : (uint32_t)lat;

	atomic_store_explicit(w, old ? old - (old >> 3) + (l >> 3) : l,
			      memory_order_relaxed);
}

/*
 * Spin only while the agent is on a CPU other than ours, within the budget.
 * An agent that is asleep (we just woke it) is better served by sleeping
 * too: the woken agent tends to run on the CPU we leave, which on this class
 * of VM costs ~5 us against ~20-50 us for a wake-up across CPUs.
 */
/* ---------------------------------------------------------------- submit */

/*
 * An entry whose call is past its deadline and that nobody collected (a
 * caller that dropped its ticket) would block its slot forever: take it
 * back. A late pbus_collect() of it then fails with -ETIMEDOUT.
 */
static void reclaim(struct pbus_chan *ch, struct pbus_pending *e, uint64_t now)
{
	uint64_t dl = atomic_load_explicit(&e->deadline, memory_order_relaxed);
	uint32_t st = atomic_load_explicit(&e->state, memory_order_acquire);

	/* a deadline still unknown (UINT64_MAX) is never past */
	if (dl == UINT64_MAX || now <= dl || now - dl <= 1000000)
		return;
	if ((st == PEND_WAITING || st == PEND_DONE) &&
	    atomic_compare_exchange_strong(&e->state, &st, PEND_FREE))
		atomic_fetch_add(&ch->peer->timeouts, 1);
}

/*
 * Fill @d (all but its commit word) for the call @a from CPU @cpu; returns
 * the bytes of the slot that matter. A call whose payload and contexts fit
 * in the slot travels inline (see struct pbus_req_desc in abi.h): the agent
 * then gets descriptor and data in the lines it polls. The parts were
 * bounds-checked against the arena by check_args(); the copy in the lane
 * stays the one the gateway uses.
 */
static PBUS_HOT size_t desc_build(const struct pbus_chan *ch,
				  const struct pbus_call_args *a,
				  uint64_t timeout, uint32_t cpu,
				  struct pbus_req_desc *d)
{
	const uint8_t *base = ch->peer->bus->arena.base;
	uint64_t total = (uint64_t)a->payload.len + a->gctx.len + a->lctx.len;

	/* all of it: the lines we store reach the agent whole, and the bytes
	 * past the parts must not carry whatever our stack held (fuzz_agent
	 * checks they are zero) */
	memset(d, 0, sizeof(*d));
	d->epoch = ch->epoch;
	d->hook = (uint16_t)a->hook;
	d->payload_len = a->payload.len;
	d->gctx_len = a->gctx.len;
	d->lctx_len = a->lctx.len;
	d->cpu = cpu;
	d->timeout_ns = timeout;
	if (total > PBUS_REQ_INLINE_MAX) {
		d->flags = PBUS_REQ_F_NONE;
		d->payload_off = a->payload.off;
		d->gctx_off = a->gctx.off;
		d->lctx_off = a->lctx.off;
		return PBUS_REQ_HDR_SIZE + 3 * sizeof(uint64_t);
	}
	d->flags = PBUS_REQ_F_INLINE;
	pbus__copy_small(d->inl, base + a->payload.off, a->payload.len);
	pbus__copy_small(d->inl + a->payload.len, base + a->gctx.off,
			 a->gctx.len);
	pbus__copy_small(d->inl + a->payload.len + a->gctx.len,
			 base + a->lctx.off, a->lctx.len);
	return PBUS_REQ_HDR_SIZE + (size_t)total;
}

/*
 * Fetch the line at @p in exclusive state, ready to be written: PREFETCHW
 * where the CPU has it (CPUID PRFCHW; older CPUs may not decode it), a
 * plain prefetch elsewhere.
 */
static int have_prefetchw(void)
{
	static _Atomic int known = -1;
	int v = atomic_load_explicit(&known, memory_order_relaxed);

	if (v < 0) {
		v = 0;
#if defined(__x86_64__) || defined(__i386__)
		unsigned int a, b, c, d;

		if (__get_cpuid(0x80000001u, &a, &b, &c, &d))
			v = !!(c & (1u << 8)); /* PRFCHW */
#endif
		atomic_store_explicit(&known, v, memory_order_relaxed);
	}
	return v;
}

static inline void prefetch_for_write(const void *p)
{
#if defined(__x86_64__) || defined(__i386__)
	if (have_prefetchw()) {
		__asm__ __volatile__("prefetchw %0" ::"m"(*(const char *)p));
		return;
	}
#endif
	__builtin_prefetch(p, 1, 3);
}

/*
 * The lines of the parts a call references in the arena: written by us just
 * now, read next by an agent polling on another CPU. A part of up to
 * DEMOTE_MAX bytes goes to the shared cache whole (64 KiB: ~30 -> ~20 us a
 * round trip, as the agent's reads and our next writes no longer snoop the
 * other core); a larger one only its first DEMOTE_HEAD bytes, the ones the
 * agent asks for first: past a few hundred KiB, demoting all of it measured
 * slower than leaving it to the snoops.
 */
#define DEMOTE_MAX (256u * 1024u)
#define DEMOTE_HEAD 4096u

static void demote_range(const uint8_t *p, uint32_t len)
{
	uintptr_t a = (uintptr_t)p & ~(uintptr_t)(PBUS_CACHELINE - 1);

	if (len > DEMOTE_MAX)
		len = DEMOTE_HEAD;
	for (; len && a < (uintptr_t)p + len; a += PBUS_CACHELINE)
		pbus__cldemote((const void *)a);
}

static void demote_parts(const struct pbus_chan *ch,
			 const struct pbus_call_args *a)
{
	const uint8_t *base = ch->peer->bus->arena.base;

	demote_range(base + a->payload.off, a->payload.len);
	demote_range(base + a->gctx.off, a->gctx.len);
	demote_range(base + a->lctx.off, a->lctx.len);
}

static uint64_t add_sat(uint64_t a, uint64_t b)
{
	return b > UINT64_MAX - a ? UINT64_MAX : a + b;
}

/*
 * Is the agent awake on another CPU, polling? Only then do the lines we
 * wrote reach it sooner from the shared cache. An agent asleep, or on our
 * own CPU (a paced caller's agent follows it, see agent.c place()), reads
 * them from our caches: demoting them would only push them further away
 * (paced 64 KiB: ~12 -> ~24 us).
 */
static inline int agent_polls_elsewhere(const struct pbus_chan_hdr *h,
					uint32_t cpu)
{
	return __atomic_load_n(&h->agent_state, __ATOMIC_RELAXED) ==
		       PBUS_PEER_RUNNING &&
	       __atomic_load_n(&h->agent_cpu, __ATOMIC_RELAXED) != cpu;
}

/*
 * How many of the @want calls from @id on can be queued now (under
 * prod_lock): each needs a free pending entry and a ring slot the agent has
 * released. -EPROTO when the agent's published head makes no sense.
 */
static PBUS_HOT int room(struct pbus_chan *ch, uint64_t id, unsigned want)
{
	struct pbus_chan_hdr *h = ch->hdr;
	unsigned k;

	for (k = 0; k < want; k++) {
		struct pbus_pending *e = &ch->pend[(id + k) & ch->req_mask];

		if (atomic_load_explicit(&e->state, memory_order_acquire) !=
		    PEND_FREE)
			reclaim(ch, e, pbus__now_ns());
		if (atomic_load_explicit(&e->state, memory_order_acquire) !=
		    PEND_FREE)
			break;
		if (id + k - ch->req_head_cache > ch->req_mask) {
			uint64_t hd = __atomic_load_n(&h->req_head,
						      __ATOMIC_ACQUIRE);

			if (hd > id + k || id + k - hd > ch->req_mask + 1) {
				rej(ch, &ch->peer->rej_bad);
				return -EPROTO;
			}
			ch->req_head_cache = hd;
			if (id + k - hd > ch->req_mask)
				break;
		}
	}
	return (int)k;
}

/* Write the descriptor of call @id (all but its commit word). Returns the
 * inline flag. The descriptor is built aside and stored in few wide writes:
 * the agent polls this very line, and each store it interleaves with costs
 * a cache-line round trip. */
static PBUS_HOT unsigned desc_write(struct pbus_chan *ch, uint64_t id,
				    const struct pbus_call_args *a,
				    uint64_t timeout, uint32_t cpu,
				    unsigned *lines)
{
	struct pbus_req_desc ld, *d = &ch->req[id & ch->req_mask];

	if (desc_build(ch, a, timeout, cpu, &ld) <= PBUS_CACHELINE) {
		memcpy((uint8_t *)d + 8, (uint8_t *)&ld + 8,
		       PBUS_CACHELINE - 8);
		*lines = 1;
	} else {
		memcpy((uint8_t *)d + 8, (uint8_t *)&ld + 8, sizeof(ld) - 8);
		*lines = 2;
	}
	return ld.flags & PBUS_REQ_F_INLINE;
}

static uint64_t call_timeout(const struct pbus_call_args *a)
{
	return a->timeout_ns ? a->timeout_ns : DEFAULT_TIMEOUT_NS;
}

/*
 * Queue up to @n calls (@a[0..n-1]), all answered into @l; their ids follow
 * *@idp. Waits for room only while there is none (back-pressure, within the
 * first call's timeout), then queues as many as fit. Returns how many (>= 1)
 * or -errno.
 *
 * One call commits with a locked exchange, which is also the full fence that
 * orders the commit before our read of the agent's waiters flag. A batch
 * commits each descriptor with a plain release store and fences once at the
 * end: every locked instruction waits for the slot lines still on their way
 * from the agent's cache, so one per call would cost a line transfer per call.
 *
 * The clock is read only after the commit, while the agent is already at
 * work (a read costs ~20-40 ns on this class of VM, a good part of a round
 * trip): the descriptor carries the timeout, and the deadline counts from
 * the commit. Only a full ring or pending table (the slow path) reads it
 * earlier, and then the deadline counts from there.
 */
static PBUS_HOT int submit_n(struct pbus_chan *ch, struct pbus_lane *l,
			     const struct pbus_call_args *a, unsigned n,
			     uint64_t *idp)
{
	struct pbus_chan_hdr *h = ch->hdr;
	uint64_t id, t_full = 0, seen_head, now, deadline = UINT64_MAX;
	unsigned lines = 0, inl = 0;
	uint32_t cpu;
	int got;

	for (;;) {
		if (atomic_load_explicit(&ch->dead, memory_order_acquire))
			return ch->dead_status;
		lock(&ch->prod_lock);
		id = atomic_load_explicit(&ch->next_id, memory_order_relaxed);
		got = room(ch, id, n);
		if (got)
			break;
		seen_head = ch->req_head_cache;
		unlock(&ch->prod_lock);
		/* Back-pressure: ring or pending table full. */
		now = pbus__now_ns();
		if (!t_full) {
			t_full = now;
			deadline = add_sat(now, call_timeout(a));
		}
		if (now >= deadline)
			return -ETIMEDOUT;
		try_drain(ch, NULL);
		{
			uint32_t seq = __atomic_load_n(&h->req_space.seq,
						       __ATOMIC_ACQUIRE);
			uint64_t until = now + 1000000;

			__atomic_fetch_add(&h->req_space.waiters, 1,
					   __ATOMIC_SEQ_CST);
			if (__atomic_load_n(&h->req_head, __ATOMIC_ACQUIRE) ==
			    seen_head)
				pbus__futex_wait(&h->req_space.seq, seq,
						 until < deadline ? until
								  : deadline);
			__atomic_fetch_sub(&h->req_space.waiters, 1,
					   __ATOMIC_RELAXED);
		}
	}
	if (got < 0) {
		unlock(&ch->prod_lock);
		return got;
	}

	if (t_full)
		pbus__obs_ring_full(ch->peer->id, pbus__now_ns() - t_full);
	cpu = (uint32_t)sched_getcpu();
	for (int k = 0; k < got; k++) {
		struct pbus_pending *e = &ch->pend[(id + k) & ch->req_mask];
		uint64_t to = call_timeout(&a[k]);

		atomic_store_explicit(&e->id, id + k, memory_order_relaxed);
		e->lane = l;
		e->woke = 0;
		atomic_store_explicit(&e->deadline,
				      t_full ? add_sat(t_full, to) : UINT64_MAX,
				      memory_order_relaxed);
		atomic_store_explicit(&e->state, PEND_WAITING,
				      memory_order_release);
		inl = desc_write(ch, id + k, &a[k], to, cpu, &lines);
		if (got > 1)
			__atomic_store_n(&ch->req[(id + k) & ch->req_mask].seq,
					 id + k + 1, __ATOMIC_RELEASE);
	}
	atomic_store_explicit(&ch->next_id, id + (uint64_t)got,
			      memory_order_relaxed);
	if (got == 1) {
		struct pbus_req_desc *d = &ch->req[id & ch->req_mask];

		__atomic_exchange_n(&d->seq, id + 1, __ATOMIC_SEQ_CST);
		/*
		 * A lone call (every earlier one answered): an agent polling
		 * this slot from another CPU gets its lines, and the
		 * payload's, sooner from the shared cache than by a snoop
		 * into our core. Pipelined calls skip that (the next locked
		 * instruction would wait for the write-backs, once per call)
		 * and instead fetch a slot two calls ahead for writing: the
		 * agent is not reading it, and that call's commit then finds
		 * its lines here instead of stalling on them.
		 */
		if (atomic_load_explicit(&ch->last_done,
					 memory_order_relaxed) + 1 == id) {
			if (agent_polls_elsewhere(h, cpu)) {
				pbus__cldemote(d);
				if (lines > 1)
					pbus__cldemote((uint8_t *)d +
						       PBUS_CACHELINE);
				if (!inl)
					demote_parts(ch, a);
			}
		} else {
			const uint8_t *ahead = (const uint8_t *)&ch->req[
				(id + 2) & ch->req_mask];

			prefetch_for_write(ahead);
			prefetch_for_write(ahead + PBUS_CACHELINE);
		}
	} else {
		atomic_thread_fence(memory_order_seq_cst);
	}
	/* counted under the lock, where a plain increment is safe */
	atomic_store_explicit(&ch->peer->calls,
			      atomic_load_explicit(&ch->peer->calls,
						   memory_order_relaxed) +
				      (uint64_t)got,
			      memory_order_relaxed);
	unlock(&ch->prod_lock);
	/* the entries are ours until collected (a drainer only fills in the
	 * answer) */
	now = pbus__now_ns();
	for (int k = 0; k < got; k++) {
		struct pbus_pending *e = &ch->pend[(id + k) & ch->req_mask];

		e->t_submit = now;
		if (!t_full)
			atomic_store_explicit(&e->deadline,
					      add_sat(now, call_timeout(&a[k])),
					      memory_order_relaxed);
	}
	/* note whether the agent was asleep */
	{
		struct pbus_pending *e = &ch->pend[id & ch->req_mask];

		e->woke = (uint8_t)ev_notify(&h->req_data);
		if (e->woke)
			e->wake_strategy = wake_choose(ch);
	}
	*idp = id;
	return got;
}

/* ---------------------------------------------------------------- wait */

enum { WAIT_SLEEP = 0, WAIT_SPIN = 1, WAIT_YIELD = 2 };

/* How to wait for @e's answer for now: one of WAIT_*. */
static inline PBUS_HOT int should_spin(struct pbus_chan *ch,
				       struct pbus_pending *e, uint64_t spun_ns,
				       int mycpu)
{
	struct pbus_chan_hdr *h = ch->hdr;
	uint32_t st;
	uint32_t max = ch->peer->bus->o.max_spin_ns;
	uint32_t ewma = atomic_load_explicit(&ch->ewma_ns,
					     memory_order_relaxed);

	/* A peer known to take far longer than the budget: don't bother. */
	if (spun_ns >= max || ewma > 2 * max)
		return WAIT_SLEEP;
	/* The agent runs here, or was woken onto this CPU: hand it the CPU
	 * with sched_yield() and look again when it gives it back. */
	if ((int)__atomic_load_n(&h->agent_cpu, __ATOMIC_RELAXED) == mycpu)
		return WAIT_YIELD;
	st = __atomic_load_n(&h->agent_state, __ATOMIC_RELAXED);
	if (st != PBUS_PEER_RUNNING) /* waking up, or asleep, elsewhere */
		return e->woke && e->wake_strategy == WAKE_SPIN ? WAIT_SPIN
								: WAIT_SLEEP;
	return WAIT_SPIN;
}

static PBUS_HOT void sleep_on(struct pbus_chan *ch, struct pbus_pending *e,
			      uint64_t until)
{
	struct pbus_chan_hdr *h = ch->hdr;
	uint32_t seq = __atomic_load_n(&h->resp_data.seq, __ATOMIC_ACQUIRE);

	__atomic_fetch_add(&h->resp_data.waiters, 1, __ATOMIC_SEQ_CST);
	if (atomic_load_explicit(&e->state, memory_order_acquire) ==
		    PEND_WAITING &&
	    !atomic_load_explicit(&ch->dead, memory_order_acquire) &&
	    !frame_len_at(ch, atomic_load_explicit(&ch->resp_head,
						   memory_order_relaxed))) {
		uint64_t t0 = pbus__obs_want_wait_clock() ? pbus__now_ns() : 0;

		pbus__futex_wait(&h->resp_data.seq, seq, until);
		if (t0)
			pbus__obs_futex_sleep(ch->peer->id,
					      pbus__now_ns() - t0);
	}
	__atomic_fetch_sub(&h->resp_data.waiters, 1, __ATOMIC_RELAXED);
}

static PBUS_HOT int finish(struct pbus_chan *ch, struct pbus_pending *e,
			   struct pbus_result *r, uint64_t now)
{
	struct pbus_bus *b = ch->peer->bus;
	uint32_t lat = (uint32_t)(now - e->t_submit < UINT32_MAX
					  ? now - e->t_submit
					  : UINT32_MAX);
	uint32_t ew = atomic_load_explicit(&ch->ewma_ns, memory_order_relaxed);

	if (e->woke) /* a slow path anyway: measure it properly */
		wake_learn(ch, e->wake_strategy, pbus__now_ns() - e->t_submit);

	r->status = e->status;
	r->flags = e->flags;
	r->body = e->body;
	r->body_ptr = e->body.len ? (uint8_t *)b->arena.base + e->body.off
				  : NULL;
	r->handler_ns = e->handler_ns;
	atomic_store_explicit(&e->state, PEND_FREE, memory_order_release);
	atomic_store_explicit(&ch->ewma_ns, ew - (ew >> 3) + (lat >> 3),
			      memory_order_relaxed);
	return r->status;
}

/* Give up on @e (deadline or dead channel). 1 if we took it back, 0 if a
 * drainer is filling it right now (then it will be DONE in a moment). */
static int abandon(struct pbus_pending *e)
{
	uint32_t want = PEND_WAITING;

	return atomic_compare_exchange_strong(&e->state, &want, PEND_FREE);
}

static void fail_result(struct pbus_result *r, int status)
{
	memset(r, 0, sizeof(*r));
	r->status = status;
}

/*
 * Wait up to @wait_ns (0: look once; UINT64_MAX: until the call's deadline)
 * for the answer to @id. The wait is counted from the first clock read, at
 * most 16 polls in: an answer that is already there costs no clock read.
 */
static PBUS_HOT int collect(struct pbus_chan *ch, uint64_t id, uint64_t wait_ns,
			    struct pbus_result *r)
{
	struct pbus_pending *e = &ch->pend[id & ch->req_mask];
	uint64_t start = 0, now = 0, until = UINT64_MAX;
	unsigned iter;
	int mycpu = -1, spin = WAIT_SPIN;
	/* A lone call stops draining at its own answer (see drain()); one
	 * with later calls behind it drains all that came, in one batch. */
	const struct pbus_pending *stop =
		id + 1 == atomic_load_explicit(&ch->next_id,
					       memory_order_relaxed)
			? e
			: NULL;

	if (atomic_load_explicit(&e->id, memory_order_relaxed) != id ||
	    atomic_load_explicit(&e->state, memory_order_acquire) == PEND_FREE) {
		/* reclaimed after its deadline, or collected already */
		fail_result(r, -ETIMEDOUT);
		return -ETIMEDOUT;
	}
	/* The clock is read every 16 rounds only: on this class of VM a
	 * read costs ~40 ns, a large part of a whole round trip. But a call
	 * that woke the agent decides how to wait at once: spinning first
	 * would keep an agent woken onto our CPU off it for the whole
	 * first round (~0.8 us of PAUSEs). */
	for (iter = e->woke ? 15 : 0;; iter++) {
		if (atomic_load_explicit(&e->state, memory_order_acquire) ==
		    PEND_DONE)
			return finish(ch, e, r, now ? now : e->t_submit +
						  (uint64_t)iter * 40);
		/* peek at the next commit word before taking the lock: the
		 * poll stays a plain load while nothing has arrived */
		if (frame_len_at(ch, atomic_load_explicit(
					     &ch->resp_head,
					     memory_order_relaxed)) &&
		    try_drain(ch, stop))
			continue;
		if (atomic_load_explicit(&ch->dead, memory_order_acquire)) {
			if (abandon(e)) {
				atomic_fetch_add(&ch->peer->agent_down, 1);
				fail_result(r, ch->dead_status);
				return r->status;
			}
			continue;
		}
		if ((iter & 15) == 15) {
			now = pbus__now_ns();
			if (now >= atomic_load_explicit(&e->deadline,
							memory_order_relaxed)) {
				if (abandon(e)) {
					atomic_fetch_add(&ch->peer->timeouts,
							 1);
					fail_result(r, -ETIMEDOUT);
					return -ETIMEDOUT;
				}
				continue;
			}
			if (!start) {
				start = now;
				until = wait_ns > UINT64_MAX - now
						? UINT64_MAX
						: now + wait_ns;
			}
			if (now >= until) {
				fail_result(r, -EAGAIN);
				return -EAGAIN;
			}
			if ((iter & 255) == 15)
				mycpu = sched_getcpu();
			spin = should_spin(ch, e, now - start, mycpu);
		}
		if (spin == WAIT_SPIN) {
			pbus__cpu_relax();
			continue;
		}
		if (spin == WAIT_YIELD) {
			sched_yield();
			iter = 14; /* a yield costs far more than a clock read */
			continue;
		}
		{
			uint64_t dl = atomic_load_explicit(
				&e->deadline, memory_order_relaxed);

			sleep_on(ch, e, dl < until ? dl : until);
		}
		iter = 14; /* look at the clock on the next round */
	}
}

/* ---------------------------------------------------------------- API */

static PBUS_HOT int check_args(struct pbus_peer *p,
			       const struct pbus_call_args *a)
{
	struct pbus_bus *b = p->bus;
	uint64_t asz = b->arena.size;

	if (a->hook < 0 || a->hook >= 64)
		return -EINVAL;
	if (a->payload.len > b->o.max_payload)
		return -EMSGSIZE;
	/* written so that no sum can wrap */
	if (a->payload.off > asz || a->payload.len > asz - a->payload.off ||
	    a->gctx.off > asz || a->gctx.len > asz - a->gctx.off ||
	    a->lctx.off > asz || a->lctx.len > asz - a->lctx.off)
		return -EINVAL;
	return 0;
}

static PBUS_HOT uint64_t make_ticket(uint32_t epoch, uint64_t id)
{
	return ((uint64_t)epoch << 40) | (id & ((1ull << 40) - 1));
}

PBUS_HOT int pbus_submit(struct pbus_peer *p, struct pbus_lane *l,
			 const struct pbus_call_args *a, uint64_t *ticket)
{
	int ret = pbus_submit_many(p, l, a, 1, ticket);

	return ret < 0 ? ret : 0;
}

PBUS_HOT int pbus_submit_many(struct pbus_peer *p, struct pbus_lane *l,
			      const struct pbus_call_args *a, unsigned n,
			      uint64_t *tickets)
{
	uint64_t id;
	struct pbus_chan *ch;
	int ret;

	if (!n || n > INT_MAX)
		return -EINVAL;
	for (unsigned k = 0; k < n; k++) {
		ret = check_args(p, &a[k]);
		if (ret)
			return ret;
	}
	ch = pbus__chan_tryget(p);
	if (!ch) {
		atomic_fetch_add(&p->agent_down, 1);
		return -ENOTCONN;
	}
	ret = submit_n(ch, l, a, n, &id);
	if (ret > 0)
		for (int k = 0; k < ret; k++)
			tickets[k] = make_ticket(ch->epoch, id + (uint64_t)k);
	else if (ret == -ENOTCONN)
		atomic_fetch_add(&p->agent_down, 1);
	pbus__chan_put(ch);
	return ret;
}

PBUS_HOT int pbus_collect(struct pbus_peer *p, uint64_t ticket,
			  uint64_t wait_ns, struct pbus_result *r)
{
	struct pbus_chan *ch = chan_by_epoch(p, (uint32_t)(ticket >> 40));
	uint64_t low = ticket & ((1ull << 40) - 1), id, next;
	int ret;

	if (!ch) {
		fail_result(r, -ENOTCONN);
		return -ENOTCONN;
	}
	/* rebuild the full id from the channel's position */
	next = atomic_load_explicit(&ch->next_id, memory_order_relaxed);
	id = (next & ~((1ull << 40) - 1)) | low;
	if (id > next)
		id -= 1ull << 40;
	ret = collect(ch, id, wait_ns, r);
	pbus__chan_put(ch);
	return ret;
}

PBUS_HOT int pbus_invoke(struct pbus_peer *p, struct pbus_lane *l,
			 const struct pbus_call_args *a, struct pbus_result *r)
{
	uint64_t id;
	struct pbus_chan *ch;
	int ret = check_args(p, a);

	if (ret) {
		fail_result(r, ret);
		return ret;
	}
	ch = pbus__chan_tryget(p);
	if (!ch) {
		atomic_fetch_add(&p->agent_down, 1);
		fail_result(r, -ENOTCONN);
		return -ENOTCONN;
	}
	ret = submit_n(ch, l, a, 1, &id);
	if (ret < 0) {
		if (ret == -ENOTCONN)
			atomic_fetch_add(&p->agent_down, 1);
		fail_result(r, ret);
	} else {
		ret = collect(ch, id, UINT64_MAX, r);
	}
	pbus__chan_put(ch);
	return ret;
}
