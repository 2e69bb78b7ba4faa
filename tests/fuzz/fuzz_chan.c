// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: the gateway's response reader (bus/chan.c drain() and
 * complete(), reached through pbus_collect()) given an arbitrary channel
 * image written by a hostile agent.
 *
 * Setup, once: a real bus (pbus_bus_open) with one plugin slot, and a raw
 * agent in this process that connects through the public agent API but is
 * never run: the fuzzer plays the agent by hand, through the channel mapping
 * that the test accessor pbus__agent_hdr() returns.
 *
 * Per input: submit 1-4 calls with pbus_submit(), or all at once with
 * pbus_submit_many() when the hook number is odd (the fuzzer then "consumes"
 * them by moving req_head), write frames into the response ring at the
 * gateway's head as the input says (well-formed answers, PAD frames, raw
 * header fields, raw bytes, skips) and overwrite header words (tail, head,
 * doorbell seq/waiters, agent state and CPU), then pbus_collect() every
 * ticket with a short wait. Nothing may crash or hang; a channel the gateway
 * gave up on (poisoned) is dropped and a fresh agent attaches.
 *
 * Oracle: when the input holds only well-formed frames (a "clean" input on a
 * healthy channel), every call answered must come back with status 0, its
 * flags and exactly its body. Results never carry flags outside PBUS_RF_ALL
 * and never a body larger than the gateway allows.
 *
 * Input: [ctl] then records [op][args...] until the input ends; see
 * write_frames().
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <pbus/pbus.h>
#include <pbus/agent.h>
#include <pbus/bus.h>

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
#define RESULT_SLACK 65536u /* bus/chan.c */
#define MAX_CALLS 4
#define MAX_BODY 600u

static struct {
	char sock[108];
	struct pbus_bus *bus;
	struct pbus_peer *peer;
	struct pbus_lane *lane;
	struct pbus_agent *agent;
	struct pbus_chan_hdr *hdr; /* the agent's view of the channel */
	uint8_t *resp;
	uint64_t rsize;
	uint32_t epoch;
	uint64_t reconnects;
} g;

/* ------------------------------------------------------------ setup */

static void agent_attach(void)
{
	struct pbus_agent_opts o = {
		.name = "fz",
		.sock_path = g.sock,
		.connect_timeout_ms = 2000,
		.no_signals = 1,
	};
	int ret = -1;

	for (int tries = 0; tries < 200 && ret; tries++) {
		CHECK(pbus_agent_create(&o, &g.agent) == 0);
		ret = pbus_agent_connect(g.agent);
		if (ret) {
			/* the old connection is still being torn down */
			pbus_agent_destroy(g.agent);
			g.agent = NULL;
			usleep(1000);
		}
	}
	CHECK(ret == 0);
	CHECK(pbus_peer_wait_up(g.peer, 2000) == 0);
	g.hdr = pbus__agent_hdr(g.agent);
	g.resp = (uint8_t *)g.hdr + g.hdr->resp_off;
	g.rsize = g.hdr->resp_size;
	g.epoch = pbus_agent_epoch(g.agent);
}

static void agent_reattach(void)
{
	pbus_agent_destroy(g.agent);
	g.agent = NULL;
	g.hdr = NULL;
	/* wait until the gateway saw the old agent go */
	for (int i = 0; i < 2000 && pbus_peer_is_up(g.peer); i++)
		usleep(100);
	agent_attach();
	g.reconnects++;
}

static void cleanup(void)
{
	pbus_agent_destroy(g.agent);
	if (g.lane)
		pbus_lane_release(g.lane);
	pbus_bus_close(g.bus);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct pbus_bus_opts o = {
		.max_payload = MAX_PAYLOAD,
		.lanes = 2,
		.ring_slots = 8,
		.max_spin_ns = 1, /* never spin: sleep at once */
	};
	static const uint8_t cfg[] = {0x81, 0xa1, 'k', 0x01}; /* {"k": 1} */

	(void)argc;
	(void)argv;
	snprintf(g.sock, sizeof(g.sock), "/tmp/pbus-fuzz-chan-%d.sock",
		 (int)getpid());
	unlink(g.sock);
	o.sock_path = g.sock;
	CHECK(pbus_bus_open(&o, &g.bus) == 0);
	CHECK(pbus_bus_add_peer(g.bus, "fz", cfg, sizeof(cfg), &g.peer) == 0);
	CHECK(pbus_lane_acquire(g.bus, &g.lane) == 0);
	agent_attach();
	atexit(cleanup);
	return 0;
}

/* The gateway's state of the current connection (white box, read only). */
static struct pbus_chan *gw_chan(void)
{
	return atomic_load(&g.peer->chan);
}

/* ------------------------------------------------------------ frames */

struct expect {
	int answered; /* a well-formed answer was written (first one counts) */
	uint32_t flags;
	uint32_t blen;
	uint8_t body[MAX_BODY];
};

struct writer {
	uint64_t head; /* the gateway's consumer position */
	uint64_t pos;  /* where the next frame goes */
	int clean;     /* only well-formed frames so far */
	int tail_set;  /* the input wrote resp_tail itself */
	int wait;      /* collect with a real wait */
};

static uint32_t *word_at(uint64_t pos)
{
	return (uint32_t *)(g.resp + (pos & (g.rsize - 1)));
}

/* Room for @len more bytes before the gap the producer must keep. */
static int fits(const struct writer *w, uint64_t len)
{
	return w->pos - w->head + len <= g.rsize - PBUS_FRAME_ALIGN;
}

/* Commit a frame header at w->pos: clear the next slot's commit word first,
 * write the header with len last, as bus/agent.c does. */
static void put_frame(struct writer *w, const struct pbus_resp_frame *f,
		      const void *body, uint32_t blen, uint64_t advance)
{
	uint64_t off = w->pos & (g.rsize - 1);
	struct pbus_resp_frame h = *f;

	h.len = 0;
	memcpy(g.resp + off, &h, sizeof(h));
	if (blen)
		memcpy(g.resp + off + sizeof(h), body, blen);
	*word_at(w->pos + advance) = 0;
	__atomic_store_n(word_at(w->pos), f->len, __ATOMIC_RELEASE);
	w->pos += advance;
}

/* A PAD to the end of the ring if @len does not fit before it. */
static int wrap_for(struct writer *w, uint64_t len)
{
	uint64_t to_end = g.rsize - (w->pos & (g.rsize - 1));
	struct pbus_resp_frame pad = {.len = (uint32_t)to_end,
				      .type = PBUS_FRAME_PAD};

	if (to_end >= len)
		return 1;
	if (!fits(w, to_end + len))
		return 0;
	put_frame(w, &pad, NULL, 0, to_end);
	return 1;
}

static void answer(struct writer *w, struct in *in, const uint64_t *ids,
		   unsigned ncalls, struct expect *ex, int raw_id)
{
	struct pbus_resp_frame f = {.type = PBUS_FRAME_RESP};
	uint8_t body[MAX_BODY];
	unsigned k = u8(in) % ncalls;
	uint32_t blen = (uint32_t)(u8(in) * 4u) % MAX_BODY;
	uint64_t len;

	f.flags = (uint32_t)uN(in, 2);
	if (f.flags & 0x8000)
		f.flags |= 0xffff0000u; /* flags beyond RF_ALL */
	f.handler_ns = (uint32_t)uN(in, 4);
	f.epoch = g.epoch;
	f.id = ids[k];
	if (raw_id) {
		/* near misses: unknown, duplicate-looking and stale answers */
		uint8_t d = u8(in);

		f.id += (uint64_t)(int8_t)d;
		if (d & 1)
			f.epoch += (uint32_t)(int8_t)u8(in);
		w->clean = 0;
	}
	for (uint32_t i = 0; i < blen; i++)
		body[i] = u8(in);
	f.body_len = blen;
	len = (sizeof(f) + blen + PBUS_FRAME_ALIGN - 1) &
	      ~(uint64_t)(PBUS_FRAME_ALIGN - 1);
	f.len = (uint32_t)len;
	if (!wrap_for(w, len) || !fits(w, len))
		return;
	put_frame(w, &f, body, blen, len);
	if (!raw_id && !ex[k].answered) {
		ex[k].answered = 1;
		ex[k].flags = f.flags & PBUS_RF_ALL;
		ex[k].blen = blen;
		memcpy(ex[k].body, body, blen);
	}
}

/* Overwrite one header word the agent owns (or the gateway owns but an
 * agent can scribble on). */
static void poke_header(struct writer *w, struct in *in)
{
	struct pbus_chan_hdr *h = g.hdr;
	uint8_t which = u8(in);
	uint64_t v = uN(in, 8);

	w->clean = 0;
	switch (which % 14) {
	case 0: /* a believable tail: somewhere near our position */
		__atomic_store_n(&h->resp_tail,
				 w->pos + (int64_t)(int16_t)v * 64,
				 __ATOMIC_RELEASE);
		w->tail_set = 1;
		break;
	case 1:
		__atomic_store_n(&h->resp_tail, v, __ATOMIC_RELEASE);
		w->tail_set = 1;
		break;
	case 2:
		h->resp_head = v;
		break;
	case 3:
		h->resp_data.seq = (uint32_t)v;
		break;
	case 4:
		h->resp_data.waiters = (uint32_t)v;
		break;
	case 5:
		h->resp_space.seq = (uint32_t)v;
		break;
	case 6:
		h->resp_space.waiters = (uint32_t)v;
		break;
	case 7:
		h->agent_state = (uint32_t)v;
		break;
	case 8:
		h->agent_cpu = (uint32_t)v;
		break;
	case 9: /* request ring consumer index: may be nonsense */
		__atomic_store_n(&h->req_head, v, __ATOMIC_RELEASE);
		break;
	case 10:
		h->req_space.waiters = (uint32_t)v;
		h->req_space.seq = (uint32_t)(v >> 32);
		break;
	case 11:
		h->req_data.waiters = (uint32_t)v;
		break;
	case 12:
		h->heartbeat_ns = v;
		h->handled = v >> 7;
		break;
	default:
		h->closing = (uint32_t)v; /* gateway-owned; agents can write */
		break;
	}
}

static void write_frames(struct writer *w, struct in *in, const uint64_t *ids,
			 unsigned ncalls, struct expect *ex)
{
	while (in->n) {
		uint8_t op = u8(in);

		switch (op % 9) {
		case 0:
		case 1: /* a well-formed answer */
			answer(w, in, ids, ncalls, ex, 0);
			break;
		case 2: /* an answer with a near-miss id or epoch */
			answer(w, in, ids, ncalls, ex, 1);
			break;
		case 3: { /* a frame header of raw fields */
			struct pbus_resp_frame f;

			f.len = (uint32_t)uN(in, 4);
			f.type = (uint32_t)(u8(in) % 4);
			f.id = ids[u8(in) % ncalls];
			f.epoch = u8(in) & 1 ? (uint32_t)uN(in, 4) : g.epoch;
			f.flags = (uint32_t)uN(in, 4);
			f.body_len = (uint32_t)uN(in, 4);
			f.handler_ns = 0;
			if (op & 0x80)
				f.id = uN(in, 8);
			w->clean = 0;
			put_frame(w, &f, NULL, 0, (u8(in) % 8) * 64);
			break;
		}
		case 4: { /* a PAD of any length */
			struct pbus_resp_frame f = {.type = PBUS_FRAME_PAD};
			uint64_t to_end = g.rsize - (w->pos & (g.rsize - 1));

			f.len = op & 0x80 ? (uint32_t)to_end
					  : (uint32_t)uN(in, 4);
			if (f.len != to_end)
				w->clean = 0;
			if (f.len == to_end && !fits(w, to_end))
				break;
			put_frame(w, &f, NULL, 0, to_end);
			break;
		}
		case 5: { /* raw bytes at the position, no commit protocol */
			unsigned n = u8(in) % 96;
			uint64_t off = w->pos & (g.rsize - 1);

			w->clean = 0;
			for (unsigned i = 0; i < n && off + i < g.rsize; i++)
				g.resp[off + i] = u8(in);
			break;
		}
		case 6:
			poke_header(w, in);
			break;
		case 7: /* skip: the agent writes further on */
			w->clean = 0;
			w->pos += (uint64_t)(u8(in) % 16) * 64;
			break;
		default: /* stop: leave the rest of the ring as it is */
			w->clean = 0;
			w->wait = 1;
			return;
		}
	}
}

/* ------------------------------------------------------------ one input */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct in in = {data, size};
	struct pbus_call_args a = {0};
	struct expect ex[MAX_CALLS];
	uint64_t tk[MAX_CALLS], ids[MAX_CALLS];
	struct writer w = {0};
	struct pbus_chan *ch;
	unsigned ncalls, n = 0;
	uint8_t ctl;
	int healthy;

	if (!size)
		return 0;
	ctl = u8(&in);
	ncalls = 1 + (ctl & 3);
	memset(ex, 0, sizeof(ex));

	ch = gw_chan();
	if (!ch || atomic_load(&ch->poisoned) || atomic_load(&ch->dead) ||
	    ch->epoch != g.epoch) {
		agent_reattach();
		ch = gw_chan();
	}
	CHECK(ch);
	healthy = 1;

	/* play the agent's consumer: everything submitted so far is taken */
	__atomic_store_n(&g.hdr->req_head, atomic_load(&ch->next_id),
			 __ATOMIC_RELEASE);
	g.hdr->agent_state = PBUS_PEER_RUNNING;

	/* The deadline passes at once unless the input asks for a wait: a
	 * collect then returns what the first drain found, or -ETIMEDOUT. */
	a.hook = (ctl >> 2) % PBUS_HOOK_COUNT;
	a.timeout_ns = (ctl & 0x40) ? 300000 : 1;
	if (ctl & 4) { /* odd hooks: the calls go in one pbus_submit_many() */
		struct pbus_call_args many[4] = {a, a, a, a};
		int got = pbus_submit_many(g.peer, g.lane, many, ncalls, tk);

		if (got < 0) {
			CHECK(got == -ETIMEDOUT || got == -EPROTO ||
			      got == -ENOTCONN);
			healthy = 0;
		} else {
			CHECK(got >= 1 && got <= (int)ncalls);
			for (; n < (unsigned)got; n++)
				ids[n] = atomic_load(&ch->next_id) -
					 (uint64_t)got + n;
			if (n < ncalls)
				healthy = 0; /* ring full: the rest not sent */
		}
		ncalls = n;
	}
	for (; n < ncalls; n++) {
		int ret = pbus_submit(g.peer, g.lane, &a, &tk[n]);

		if (ret) {
			CHECK(ret == -ETIMEDOUT || ret == -EPROTO ||
			      ret == -ENOTCONN);
			healthy = 0;
			break;
		}
		ids[n] = atomic_load(&ch->next_id) - 1;
	}
	if (n) {
		w.head = atomic_load(&ch->resp_head);
		w.pos = w.head;
		w.clean = healthy;
		write_frames(&w, &in, ids, n, ex);
		if (!(ctl & 0x80))
			*word_at(w.pos) = 0; /* the agent's trailing clear */
		else
			w.clean = 0;
		if (!w.tail_set)
			__atomic_store_n(&g.hdr->resp_tail, w.pos,
					 __ATOMIC_RELEASE);
	}

	for (unsigned i = 0; i < n; i++) {
		struct pbus_result r;
		int ret = pbus_collect(g.peer, tk[i],
				       w.wait && (ctl & 0x40) ? 200000 : 0, &r);

		if (ret == -EAGAIN) /* waited less than the deadline */
			ret = pbus_collect(g.peer, tk[i], 1000000, &r);
		CHECK(ret == r.status);
		CHECK(ret == 0 || ret == -ETIMEDOUT || ret == -EMSGSIZE ||
		      ret == -ENOBUFS || ret == -ENOTCONN || ret == -EPROTO);
		if (ret == 0 || ret == -EMSGSIZE || ret == -ENOBUFS)
			CHECK((r.flags & ~PBUS_RF_ALL) == 0);
		if (ret == 0) {
			CHECK(r.body.len <= MAX_PAYLOAD + RESULT_SLACK);
			CHECK(!r.body.len == !r.body_ptr);
		}
		if (w.clean && ex[i].answered) {
			CHECK(ret == 0);
			CHECK(r.flags == ex[i].flags);
			CHECK(r.body.len == ex[i].blen);
			CHECK(!ex[i].blen ||
			      !memcmp(r.body_ptr, ex[i].body, ex[i].blen));
		}
	}
	pbus_lane_reset(g.lane);
	return 0;
}
