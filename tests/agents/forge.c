// SPDX-License-Identifier: MIT
/*
 * agent-forge: a hostile test agent. It attaches normally, then serves its
 * request ring by hand and writes raw bytes into its channel. Each request's
 * payload is a msgpack string naming what to do:
 *
 *   ok        a well-formed empty answer
 *   badlen    a frame whose length is not a multiple of 64, then nothing
 *   hugebody  a frame whose body_len exceeds its length, then nothing
 *   unknown   an answer for an id never sent, then the right answer
 *   stale     an answer with the previous epoch, then the right answer
 *   dup       the right answer twice
 *   tail      a frame claiming to be longer than the ring, then nothing
 *   garbage   random bytes over the ring and a random tail, then nothing
 *             (framing is lost for good: the gateway stops reading)
 *   doorbell  10000 futex wakes on the gateway's doorbell, then the answer
 *   arena     try to map the arena writable; answer metadata
 *             {"mmap": errno, "mprotect": errno, "write_fd": errno}
 *   sleep:MS  sleep MS milliseconds, then the right answer
 *   flood     32 unsolicited answers (ids never sent), then the right one
 *   silent    no answer at all
 *   random    one of the above (not arena, sleep or silent) at random
 *
 * A request whose payload is a map (the plugin manager's payloads) takes
 * its command from the map's "forge" key, else from the plugin config's
 * "cmd" key, else "ok".
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <pbus/pbus.h>
#include <pbus/mp.h>

#include "gw.h"

static struct pbus_chan_hdr *h;
static uint8_t *resp;
static uint64_t rsize, rtail;

static void wake_gw(void)
{
	__atomic_fetch_add(&h->resp_data.seq, 1, __ATOMIC_SEQ_CST);
	pbus__futex_wake(&h->resp_data.seq, INT_MAX);
}

static void publish(void)
{
	__atomic_store_n(&h->resp_tail, rtail, __ATOMIC_SEQ_CST);
	wake_gw();
}

/* Write a frame header at the tail, clearing the next slot first and
 * committing @len last (abi.h). The forge trusts the gateway to drain. */
static void put(struct pbus_resp_frame *f, uint32_t advance)
{
	uint64_t off = rtail & (rsize - 1);
	uint32_t len = f->len;

	f->len = 0;
	memcpy(resp + off, f, sizeof(*f));
	*(uint32_t *)(resp + ((rtail + advance) & (rsize - 1))) = 0;
	__atomic_store_n((uint32_t *)(resp + off), len, __ATOMIC_RELEASE);
	rtail += advance;
}

static void frame(uint64_t id, uint32_t epoch, const void *body,
		  uint32_t blen)
{
	struct pbus_resp_frame f = {0};
	uint64_t len = (sizeof(f) + blen + 63) & ~63ull;
	uint64_t off = rtail & (rsize - 1);

	if (rsize - off < len) {
		struct pbus_resp_frame pad = {.len = (uint32_t)(rsize - off),
					      .type = PBUS_FRAME_PAD};
		put(&pad, (uint32_t)(rsize - off));
		off = 0;
	}
	f.len = (uint32_t)len;
	f.type = PBUS_FRAME_RESP;
	f.id = id;
	f.epoch = epoch;
	f.body_len = blen;
	if (blen)
		memcpy(resp + off + sizeof(f), body, blen);
	put(&f, (uint32_t)len);
}

/* A frame with lying fields; the tail moves on by one slot. */
static void raw_frame(uint32_t len, uint32_t blen, uint64_t id, uint32_t ep)
{
	struct pbus_resp_frame f = {.len = len,
				    .type = PBUS_FRAME_RESP,
				    .id = id,
				    .epoch = ep,
				    .body_len = blen};
	uint64_t off = rtail & (rsize - 1);

	if (rsize - off < 64) {
		rtail += rsize - off;
		off = 0;
	}
	put(&f, 64);
}

static void arena_probe(struct pbus_agent *a, uint64_t id, uint32_t ep)
{
	int fd = pbus__agent_arena_fd(a), e_mmap = 0, e_mprot = 0, e_wr = 0;
	size_t len;
	void *ro = (void *)pbus__agent_arena(a, &len);
	void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	char body[128];
	msgpack_sbuffer sb;
	msgpack_packer pk;
	char path[64];
	int wfd;

	if (p == MAP_FAILED)
		e_mmap = errno;
	else
		munmap(p, 4096);
	if (mprotect(ro, 4096, PROT_READ | PROT_WRITE) < 0)
		e_mprot = errno;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	wfd = open(path, O_RDWR);
	if (wfd >= 0) {
		if (pwrite(wfd, "x", 1, 0) < 0)
			e_wr = errno;
		close(wfd);
	} else {
		e_wr = errno;
	}
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 1);
	msgpack_pack_str_with_body(&pk, "metadata", 8);
	msgpack_pack_map(&pk, 3);
	msgpack_pack_str_with_body(&pk, "mmap", 4);
	msgpack_pack_int(&pk, e_mmap);
	msgpack_pack_str_with_body(&pk, "mprotect", 8);
	msgpack_pack_int(&pk, e_mprot);
	msgpack_pack_str_with_body(&pk, "write_fd", 8);
	msgpack_pack_int(&pk, e_wr);
	memcpy(body, sb.data, sb.size);
	frame(id, ep, body, (uint32_t)sb.size);
	msgpack_sbuffer_destroy(&sb);
}

/* The command of a map payload or of the config (see the top). */
static void cmd_of_map(const uint8_t *p, uint32_t len, const void *cfg,
		       size_t cfg_len, char *cmd, size_t cap)
{
	struct pbus_mp m, v;
	const char *str;
	size_t n;

	snprintf(cmd, cap, "ok");
	if ((!pbus_mp_open(p, len, &m) && !pbus_mp_get(m, "forge", &v) &&
	     !pbus_mp_str(v, &str, &n)) ||
	    (cfg && !pbus_mp_open(cfg, cfg_len, &m) &&
	     !pbus_mp_get(m, "cmd", &v) && !pbus_mp_str(v, &str, &n)))
		snprintf(cmd, cap, "%.*s", (int)n, str);
}

static const char *pick_random(void)
{
	static const char *const all[] = {
		"ok",	"ok",  "ok",	   "ok",       "badlen", "hugebody",
		"unknown", "stale", "dup",	   "tail",     "garbage",
		"doorbell", "flood",
	};

	return all[rand() % (int)(sizeof(all) / sizeof(all[0]))];
}

static int dummy(struct pbus_call *c, void *arg)
{
	(void)c;
	(void)arg;
	return 0;
}

int main(void)
{
	struct pbus_agent_opts o = {.no_signals = 1};
	struct pbus_agent *a;
	struct pbus_req_desc *req;
	size_t alen, cfg_len;
	const uint8_t *arena;
	const void *cfg;
	uint64_t head = 0;
	uint32_t mask, ep;

	if (pbus_agent_create(&o, &a) || pbus_agent_on(a, 2, dummy, NULL) ||
	    pbus_agent_connect(a))
		return 1;
	h = pbus__agent_hdr(a);
	arena = pbus__agent_arena(a, &alen);
	req = (struct pbus_req_desc *)((uint8_t *)h + h->req_off);
	resp = (uint8_t *)h + h->resp_off;
	rsize = h->resp_size;
	mask = h->req_slots - 1;
	ep = h->epoch;
	cfg = pbus_agent_config(a, &cfg_len);
	srand((unsigned)getpid());
	for (;;) {
		struct pbus_req_desc d;
		const uint8_t *p;
		char cmd[32] = {0};
		uint32_t n;

		if (__atomic_load_n(&h->closing, __ATOMIC_ACQUIRE))
			return 0;
		if (__atomic_load_n(&req[head & mask].seq, __ATOMIC_ACQUIRE) !=
		    head + 1) {
			usleep(100);
			continue;
		}
		d = req[head & mask];
		d.seq--; /* now the request id */
		head++;
		__atomic_store_n(&h->req_head, head, __ATOMIC_RELEASE);
		/* small payloads travel inline in the slot (abi.h) */
		p = (d.flags & PBUS_REQ_F_INLINE) ? d.inl
						  : arena + d.payload_off;
		if (d.payload_len >= 1 && (p[0] & 0xe0) == 0xa0) {
			n = p[0] & 0x1f;
			if (n < sizeof(cmd) && n + 1 <= d.payload_len)
				memcpy(cmd, p + 1, n);
		} else if (d.payload_len) {
			cmd_of_map(p, d.payload_len, cfg, cfg_len, cmd,
				   sizeof(cmd));
		}
		if (!strcmp(cmd, "random"))
			snprintf(cmd, sizeof(cmd), "%s", pick_random());
		if (!strcmp(cmd, "ok")) {
			frame(d.seq, ep, NULL, 0);
		} else if (!strcmp(cmd, "badlen")) {
			raw_frame(100, 0, d.seq, ep);
		} else if (!strcmp(cmd, "hugebody")) {
			raw_frame(64, 4096, d.seq, ep);
		} else if (!strcmp(cmd, "unknown")) {
			frame(d.seq + 1000, ep, NULL, 0);
			frame(d.seq, ep, NULL, 0);
		} else if (!strcmp(cmd, "stale")) {
			frame(d.seq, ep - 1, NULL, 0);
			frame(d.seq, ep, NULL, 0);
		} else if (!strcmp(cmd, "dup")) {
			frame(d.seq, ep, NULL, 0);
			frame(d.seq, ep, NULL, 0);
		} else if (!strcmp(cmd, "tail")) {
			raw_frame((uint32_t)(3 * rsize), 0, d.seq, ep);
		} else if (!strcmp(cmd, "garbage")) {
			for (uint64_t i = 0; i < rsize; i += 4)
				*(uint32_t *)(resp + i) = (uint32_t)rand();
			rtail = (((uint64_t)rand() << 32) | (uint64_t)rand()) &
				~63ull; /* random, but aligned: no UB here */
		} else if (!strcmp(cmd, "doorbell")) {
			for (int i = 0; i < 10000; i++)
				wake_gw();
			frame(d.seq, ep, NULL, 0);
		} else if (!strcmp(cmd, "arena")) {
			arena_probe(a, d.seq, ep);
		} else if (!strncmp(cmd, "sleep:", 6)) {
			usleep((useconds_t)atoi(cmd + 6) * 1000);
			frame(d.seq, ep, NULL, 0);
		} else if (!strcmp(cmd, "flood")) {
			for (int i = 0; i < 32; i++)
				frame(d.seq + 100000 + (uint64_t)rand(), ep, NULL,
				      0);
			frame(d.seq, ep, NULL, 0);
		} else if (!strcmp(cmd, "silent")) {
			/* no answer */
		}
		publish();
	}
}
