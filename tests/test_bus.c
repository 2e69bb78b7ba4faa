// SPDX-License-Identifier: MIT
/*
 * Core bus tests: real gateway (this process) and real agent processes
 * (fork/exec of build/bin/pbus-passthrough and build/tests/agent-forge)
 * talking through shared memory. Every wait has a deadline.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <stddef.h>
#include <unistd.h>

#include <pbus/pbus.h>

#include "helpers.h"
#include "../agents/passthrough/touch.h"

struct env {
	struct pbus_bus *bus;
	struct pbus_peer *peer;
	struct pbus_lane *lane;
	pid_t pid;
	const char *sock;
};

/* @idle_spin_ns: how long the agent polls before it sleeps (0: default) */
static void env_open_spin(struct env *e, const char *prog, const char *mode,
			  unsigned idle_spin_ns)
{
	struct pbus_bus_opts o = {0};
	char *argv[] = {(char *)prog, (char *)"--mode", (char *)mode, NULL};

	memset(e, 0, sizeof(*e));
	th_log_setup();
	e->sock = strdup(th_sock_path());
	o.sock_path = e->sock;
	o.max_payload = 256 * 1024;
	o.agent_idle_spin_ns = idle_spin_ns;
	ck_assert_int_eq(pbus_bus_open(&o, &e->bus), 0);
	ck_assert_int_eq(pbus_bus_add_peer(e->bus, "p", NULL, 0, &e->peer), 0);
	if (!mode)
		argv[1] = NULL;
	e->pid = th_spawn(e->sock, "p", argv);
	ck_assert_int_gt(e->pid, 0);
	ck_assert_int_eq(pbus_peer_wait_up(e->peer, 5000), 0);
	ck_assert_int_eq(pbus_lane_acquire(e->bus, &e->lane), 0);
}

static void env_open(struct env *e, const char *prog, const char *mode)
{
	env_open_spin(e, prog, mode, 0);
}

static void env_close(struct env *e)
{
	pbus_lane_release(e->lane);
	th_kill(e->pid);
	pbus_bus_close(e->bus);
	ck_assert_int_ne(access(e->sock, F_OK), 0); /* socket file removed */
	free((void *)e->sock);
}

static struct pbus_ref pack_str(struct pbus_lane *l, const char *s)
{
	msgpack_packer pk;
	struct pbus_ref r;

	pbus_lane_pack_begin(l, &pk);
	msgpack_pack_str_with_body(&pk, s, strlen(s));
	ck_assert_int_eq(pbus_lane_pack_end(l, &pk, &r), 0);
	return r;
}

static int call_str(struct env *e, const char *s, uint64_t timeout_ms,
		    struct pbus_result *r)
{
	struct pbus_call_args a = {.hook = PBUS_HOOK_TOOL_PRE_INVOKE,
				   .timeout_ns = timeout_ms * 1000000ull};

	a.payload = pack_str(e->lane, s);
	return pbus_invoke(e->peer, e->lane, &a, r);
}

/* ------------------------------------------------------------ round trips */

/* The benchmarks' "touch" work (pbus-passthrough --mode touch and every
 * baseline) must be the plain byte sum, at any length and alignment. */
START_TEST(touch_sum_is_the_byte_sum)
{
	static uint8_t buf[70000];
	uint32_t x = 12345;

	for (size_t i = 0; i < sizeof(buf); i++) {
		x = x * 1103515245u + 12345u;
		buf[i] = (uint8_t)(x >> 16);
	}
	for (int t = 0; t < 300; t++) {
		size_t off = (size_t)t % 8, n = (size_t)t * t % 4096;
		uint64_t want = 0;

		if (t == 299) { /* all 0xff: the lanes' worst case */
			off = 0;
			n = sizeof(buf);
			memset(buf, 0xff, n);
		}
		for (size_t i = 0; i < n; i++)
			want += buf[off + i];
		ck_assert_uint_eq(touch_sum(buf + off, n), want);
	}
}
END_TEST

START_TEST(passthrough_answers_continue_unmodified)
{
	struct env e;
	struct pbus_result r;

	env_open(&e, "pbus-passthrough", "pass");
	ck_assert_int_eq(call_str(&e, "hello", 5000, &r), 0);
	ck_assert_int_eq(r.status, 0);
	ck_assert_uint_eq(r.flags, 0);
	ck_assert_uint_eq(r.body.len, 0);
	env_close(&e);
}
END_TEST

START_TEST(echo_returns_payload_bytes_in_the_lane)
{
	struct env e;
	struct pbus_result r;
	const uint8_t *b;

	env_open(&e, "pbus-passthrough", "echo");
	ck_assert_int_eq(call_str(&e, "abc", 5000, &r), 0);
	ck_assert_uint_eq(r.flags, PBUS_RF_MODIFIED);
	/* body = {"modified_payload": "abc"} as map32 */
	b = r.body_ptr;
	ck_assert_ptr_nonnull(b);
	ck_assert_uint_eq(b[0], 0xdf);
	ck_assert_uint_eq(b[4], 1);
	ck_assert_int_eq(memcmp(b + r.body.len - 4, "\xa3"
						    "abc",
				4),
			 0);
	env_close(&e);
}
END_TEST

/* Payloads of varying size wrap both rings many times; each echo must come
 * back byte-identical. */
START_TEST(rings_wrap_around_with_varied_sizes)
{
	struct env e;
	static char buf[70000];

	env_open(&e, "pbus-passthrough", "echo");
	for (int i = 0; i < 3000; i++) {
		size_t n = (size_t)((i * 7919) % 60000) + 1;
		struct pbus_result r;
		const char *got;

		pbus_lane_reset(e.lane);
		memset(buf, 'a' + i % 26, n);
		buf[n] = 0;
		ck_assert_int_eq(call_str(&e, buf, 5000, &r), 0);
		ck_assert_uint_eq(r.flags, PBUS_RF_MODIFIED);
		got = (const char *)r.body_ptr + r.body.len - n;
		ck_assert_int_eq(memcmp(got, buf, n), 0);
	}
	env_close(&e);
}
END_TEST

/* A call whose payload and contexts fit in the request slot travels inline
 * (include/pbus/abi.h), a bigger one by reference into the arena. Around
 * that boundary, with no context, a global one, or both, each echo must
 * come back byte-identical and the lane's copy must stay as it was. */
START_TEST(inline_and_referenced_payloads_arrive_intact)
{
	static const char ctx[80] =
		"context bytes, never looked at by the echo";
	struct env e;
	char buf[200], want[210];

	env_open(&e, "pbus-passthrough", "echo");
	for (int k = 0; k < 3; k++) {
		for (size_t n = 0; n < 120; n++) {
			struct pbus_call_args a = {
				.hook = PBUS_HOOK_TOOL_PRE_INVOKE,
				.timeout_ns = 5000000000ull};
			struct pbus_result r;
			const uint8_t *in, *got;

			pbus_lane_reset(e.lane);
			if (k >= 1)
				ck_assert_int_eq(pbus_lane_write(e.lane, ctx,
								 30, &a.gctx),
						 0);
			if (k >= 2)
				ck_assert_int_eq(pbus_lane_write(e.lane, ctx,
								 40, &a.lctx),
						 0);
			for (size_t i = 0; i < n; i++)
				buf[i] = (char)('a' + (i * 7 + n) % 26);
			buf[n] = 0;
			a.payload = pack_str(e.lane, buf);
			in = pbus_lane_ptr(e.lane, a.payload);
			ck_assert_ptr_nonnull(in);
			ck_assert_uint_le(a.payload.len, sizeof(want));
			memcpy(want, in, a.payload.len);
			ck_assert_int_eq(pbus_invoke(e.peer, e.lane, &a, &r),
					 0);
			ck_assert_uint_eq(r.flags, PBUS_RF_MODIFIED);
			ck_assert_uint_ge(r.body.len, a.payload.len);
			got = (const uint8_t *)r.body_ptr + r.body.len -
			      a.payload.len;
			ck_assert_int_eq(memcmp(got, want, a.payload.len), 0);
			ck_assert_int_eq(memcmp(in, want, a.payload.len), 0);
		}
	}
	env_close(&e);
}
END_TEST

/* ------------------------------------------------------------ threads */

struct thr {
	struct env *e;
	int idx;
	int ok;
};

static void *thr_main(void *arg)
{
	struct thr *t = arg;
	struct pbus_lane *l;
	char s[64];

	if (pbus_lane_acquire(t->e->bus, &l))
		return NULL;
	for (int i = 0; i < 3000; i++) {
		struct pbus_call_args a = {.hook = PBUS_HOOK_TOOL_PRE_INVOKE,
					   .timeout_ns = 10000000000ull};
		struct pbus_result r;
		msgpack_packer pk;
		size_t n = (size_t)snprintf(s, sizeof(s), "t%d-i%d", t->idx, i);

		pbus_lane_reset(l);
		pbus_lane_pack_begin(l, &pk);
		msgpack_pack_str_with_body(&pk, s, n);
		if (pbus_lane_pack_end(l, &pk, &a.payload))
			break;
		if (pbus_invoke(t->e->peer, l, &a, &r))
			break;
		if (r.body.len < n ||
		    memcmp((const char *)r.body_ptr + r.body.len - n, s, n))
			break;
		t->ok++;
	}
	pbus_lane_release(l);
	return NULL;
}

START_TEST(many_threads_each_get_their_own_answers)
{
	struct env e;
	pthread_t th[8];
	struct thr t[8];

	env_open(&e, "pbus-passthrough", "echo");
	for (int i = 0; i < 8; i++) {
		t[i] = (struct thr){.e = &e, .idx = i};
		pthread_create(&th[i], NULL, thr_main, &t[i]);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		ck_assert_int_eq(t[i].ok, 3000);
	}
	env_close(&e);
}
END_TEST

/* ------------------------------------------------------------ back-pressure */

START_TEST(full_ring_applies_back_pressure_then_drains)
{
	struct env e;
	struct pbus_call_args a = {.hook = PBUS_HOOK_TOOL_PRE_INVOKE,
				   .timeout_ns = 300000000ull};
	static uint64_t tickets[300];
	unsigned sent = 0;
	int ret;

	env_open(&e, "pbus-passthrough", "pass");
	a.payload = pack_str(e.lane, "x");
	kill(e.pid, SIGSTOP);
	/* 256 slots: the 257th submit waits for space and times out. */
	for (;;) {
		ret = pbus_submit(e.peer, e.lane, &a, &tickets[sent]);
		if (ret)
			break;
		sent++;
		ck_assert_uint_le(sent, 256);
	}
	ck_assert_int_eq(ret, -ETIMEDOUT);
	ck_assert_uint_eq(sent, 256);
	kill(e.pid, SIGCONT);
	/* The queued calls had 300 ms; some may have expired while stopped.
	 * Each one gets a defined answer. */
	for (unsigned i = 0; i < sent; i++) {
		struct pbus_result r;

		ret = pbus_collect(e.peer, tickets[i], 2000000000ull, &r);
		ck_assert(ret == 0 || ret == -ETIMEDOUT);
	}
	/* and the channel works again */
	a.timeout_ns = 5000000000ull;
	{
		struct pbus_result r;

		ck_assert_int_eq(pbus_invoke(e.peer, e.lane, &a, &r), 0);
	}
	env_close(&e);
}
END_TEST

START_TEST(pipelined_submit_collect_in_order)
{
	struct env e;
	struct pbus_call_args a = {.hook = PBUS_HOOK_TOOL_PRE_INVOKE,
				   .timeout_ns = 5000000000ull};
	uint64_t t[64];

	env_open(&e, "pbus-passthrough", "pass");
	a.payload = pack_str(e.lane, "x");
	for (int round = 0; round < 200; round++) {
		for (int i = 0; i < 64; i++)
			ck_assert_int_eq(pbus_submit(e.peer, e.lane, &a, &t[i]),
					 0);
		for (int i = 0; i < 64; i++) {
			struct pbus_result r;

			ck_assert_int_eq(pbus_collect(e.peer, t[i],
						      5000000000ull, &r),
					 0);
		}
	}
	{
		struct pbus_peer_stats s;

		pbus_peer_stats(e.peer, &s);
		ck_assert_uint_eq(s.calls, 64 * 200);
		ck_assert_uint_eq(s.completed, 64 * 200);
		ck_assert_uint_eq(s.rejected, 0);
	}
	env_close(&e);
}
END_TEST

/* ------------------------------------------------------------ timeouts */

START_TEST(call_times_out_and_late_answer_is_dropped)
{
	struct env e;
	struct pbus_result r;
	struct pbus_peer_stats s;
	uint64_t t0;

	env_open(&e, "agent-forge", NULL);
	t0 = th_now_ms();
	ck_assert_int_eq(call_str(&e, "sleep:400", 100, &r), -ETIMEDOUT);
	ck_assert_uint_lt(th_now_ms() - t0, 100 + th_slack(200));
	/* the next call is answered after the late one arrives and is dropped */
	ck_assert_int_eq(call_str(&e, "ok", 5000, &r), 0);
	pbus_peer_stats(e.peer, &s);
	ck_assert_uint_eq(s.timeouts, 1);
	ck_assert_uint_eq(s.rej_unknown, 1);
	env_close(&e);
}
END_TEST

START_TEST(agent_death_fails_inflight_calls_at_once)
{
	struct env e;
	struct pbus_result r;
	uint64_t t0;

	env_open(&e, "agent-forge", NULL);
	if (fork() == 0) {
		usleep(100000);
		kill(e.pid, SIGKILL);
		_exit(0);
	}
	t0 = th_now_ms();
	ck_assert_int_eq(call_str(&e, "sleep:5000", 10000, &r), -ENOTCONN);
	ck_assert_uint_lt(th_now_ms() - t0, th_bound(2000, 9000)); /* not 10 s */
	ck_assert_int_eq(call_str(&e, "ok", 1000, &r), -ENOTCONN);
	env_close(&e);
}
END_TEST

/* ------------------------------------------------------------ hostile */

static void expect_rejected_then_serving(const char *cmd, int answered,
					 uint64_t *ctr_off)
{
	struct env e;
	struct pbus_result r;
	struct pbus_peer_stats s;
	int ret;

	env_open(&e, "agent-forge", NULL);
	ret = call_str(&e, cmd, 300, &r);
	ck_assert_int_eq(ret, answered ? 0 : -ETIMEDOUT);
	for (int i = 0; i < 10; i++) {
		pbus_lane_reset(e.lane);
		ck_assert_int_eq(call_str(&e, "ok", 5000, &r), 0);
	}
	pbus_peer_stats(e.peer, &s);
	ck_assert_uint_ge(*(uint64_t *)((char *)&s + (size_t)ctr_off), 1);
	ck_assert_int_eq(pbus_peer_is_up(e.peer), 1);
	env_close(&e);
}

#define CTR(f) ((uint64_t *)offsetof(struct pbus_peer_stats, f))

START_TEST(frame_with_bad_length_is_rejected)
{
	expect_rejected_then_serving("badlen", 0, CTR(rej_bad));
}
END_TEST

START_TEST(frame_with_body_past_its_end_is_rejected)
{
	expect_rejected_then_serving("hugebody", 0, CTR(rej_bad));
}
END_TEST

START_TEST(answer_for_unknown_id_is_rejected)
{
	expect_rejected_then_serving("unknown", 1, CTR(rej_unknown));
}
END_TEST

START_TEST(answer_with_stale_epoch_is_rejected)
{
	expect_rejected_then_serving("stale", 1, CTR(rej_stale));
}
END_TEST

START_TEST(duplicate_answer_is_rejected)
{
	expect_rejected_then_serving("dup", 1, CTR(rej_dup));
}
END_TEST

START_TEST(tail_beyond_ring_is_rejected)
{
	expect_rejected_then_serving("tail", 0, CTR(rej_bad));
}
END_TEST

/* Random bytes with a random tail: framing cannot be found again. The
 * gateway counts it, stops reading that channel (its calls time out: the
 * supervisor restarts such an agent) and serves a fresh agent normally. */
START_TEST(random_bytes_over_channel_are_rejected)
{
	struct env e;
	struct pbus_result r;
	struct pbus_peer_stats s;
	char *argv[] = {(char *)"agent-forge", NULL};

	env_open(&e, "agent-forge", NULL);
	ck_assert_int_eq(call_str(&e, "garbage", 300, &r), -ETIMEDOUT);
	ck_assert_int_eq(call_str(&e, "ok", 300, &r), -ETIMEDOUT);
	pbus_peer_stats(e.peer, &s);
	ck_assert_uint_ge(s.rej_bad, 1);
	th_kill(e.pid);
	for (int i = 0; i < 500 && pbus_peer_is_up(e.peer); i++)
		usleep(2000);
	e.pid = th_spawn(e.sock, "p", argv);
	ck_assert_int_eq(pbus_peer_wait_up(e.peer, 5000), 0);
	ck_assert_int_eq(call_str(&e, "ok", 5000, &r), 0);
	env_close(&e);
}
END_TEST

START_TEST(doorbell_hammering_is_harmless)
{
	expect_rejected_then_serving("doorbell", 1, CTR(completed));
}
END_TEST

START_TEST(agent_cannot_map_arena_writable)
{
	struct env e;
	struct pbus_result r;
	msgpack_unpacked u;
	msgpack_object_map *m;

	env_open(&e, "agent-forge", NULL);
	ck_assert_int_eq(call_str(&e, "arena", 5000, &r), 0);
	ck_assert_uint_eq(r.flags, 0);
	msgpack_unpacked_init(&u);
	ck_assert_int_eq(msgpack_unpack_next(&u, r.body_ptr, r.body.len, NULL),
			 MSGPACK_UNPACK_SUCCESS);
	m = &u.data.via.map.ptr[0].val.via.map;
	ck_assert_uint_eq(m->size, 3);
	for (unsigned i = 0; i < 3; i++) {
		msgpack_object_kv *kv = &m->ptr[i];

		if (!strncmp(kv->key.via.str.ptr, "mmap", 4) &&
		    kv->key.via.str.size == 4)
			ck_assert_int_eq(kv->val.via.i64, EPERM);
		else /* mprotect and writes through a reopened fd */
			ck_assert_int_ne(kv->val.via.i64, 0);
	}
	msgpack_unpacked_destroy(&u);
	env_close(&e);
}
END_TEST

/* ------------------------------------------------------------ attach */

static int raw_hello(const char *sock, uint32_t magic, uint16_t proto,
		     uint32_t abi, const char *name, char *reason)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct pbus_msg_hello m = {0};
	struct pbus_msg_welcome w = {0};
	int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	struct timeval tv = {.tv_sec = 5};
	ssize_t n;

	strcpy(sa.sun_path, sock);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	m.h.magic = magic;
	m.h.type = PBUS_MSG_HELLO;
	m.h.proto = proto;
	m.h.abi = abi;
	m.h.len = sizeof(m);
	strcpy(m.name, name);
	ck_assert_int_eq(send(fd, &m, sizeof(m), 0), sizeof(m));
	n = recv(fd, &w, sizeof(w), 0);
	close(fd);
	if (n != sizeof(w))
		return -999;
	if (reason)
		snprintf(reason, 128, "%s", w.reason);
	return w.h.type == PBUS_MSG_REJECT ? w.status : 0;
}

START_TEST(attach_refused_for_wrong_magic_abi_or_protocol)
{
	struct pbus_bus_opts o = {0};
	struct pbus_bus *b;
	struct pbus_peer *p;
	const char *sock = th_sock_path();
	char reason[128];

	th_log_setup();
	o.sock_path = sock;
	ck_assert_int_eq(pbus_bus_open(&o, &b), 0);
	ck_assert_int_eq(pbus_bus_add_peer(b, "p", NULL, 0, &p), 0);
	ck_assert_int_eq(raw_hello(sock, 0xdeadbeef, PBUS_PROTO_VERSION,
				   PBUS_ABI_VERSION, "p", reason),
			 -EPROTO);
	ck_assert_int_eq(raw_hello(sock, PBUS_MAGIC, PBUS_PROTO_VERSION,
				   PBUS_ABI_VERSION + 1, "p", reason),
			 -EPROTO);
	ck_assert_ptr_nonnull(strstr(reason, "version mismatch"));
	ck_assert_int_eq(raw_hello(sock, PBUS_MAGIC, PBUS_PROTO_VERSION + 1,
				   PBUS_ABI_VERSION, "p", reason),
			 -EPROTO);
	ck_assert_int_eq(raw_hello(sock, PBUS_MAGIC, PBUS_PROTO_VERSION,
				   PBUS_ABI_VERSION, "nope", reason),
			 -ENOENT);
	ck_assert_int_eq(pbus_peer_is_up(p), 0);
	pbus_bus_close(b);
}
END_TEST

START_TEST(second_agent_for_a_connected_name_is_refused)
{
	struct env e;
	char reason[128];

	env_open(&e, "pbus-passthrough", "pass");
	ck_assert_int_eq(raw_hello(e.sock, PBUS_MAGIC, PBUS_PROTO_VERSION,
				   PBUS_ABI_VERSION, "p", reason),
			 -EEXIST);
	env_close(&e);
}
END_TEST

START_TEST(control_socket_is_private_by_default)
{
	struct pbus_bus_opts o = {0};
	struct pbus_bus *b;
	struct stat st;

	o.sock_path = th_sock_path();
	ck_assert_int_eq(pbus_bus_open(&o, &b), 0);
	ck_assert_int_eq(stat(o.sock_path, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0600);
	pbus_bus_close(b);
}
END_TEST

START_TEST(restarted_agent_gets_a_new_epoch)
{
	struct env e;
	struct pbus_result r;
	struct pbus_peer_stats s1, s2;
	char *argv[] = {(char *)"pbus-passthrough", NULL};

	env_open(&e, "pbus-passthrough", "pass");
	ck_assert_int_eq(call_str(&e, "x", 5000, &r), 0);
	pbus_peer_stats(e.peer, &s1);
	th_kill(e.pid);
	for (int i = 0; i < 500 && pbus_peer_is_up(e.peer); i++)
		usleep(2000);
	ck_assert_int_eq(pbus_peer_is_up(e.peer), 0);
	ck_assert_int_eq(call_str(&e, "x", 1000, &r), -ENOTCONN);
	e.pid = th_spawn(e.sock, "p", argv);
	ck_assert_int_eq(pbus_peer_wait_up(e.peer, 5000), 0);
	ck_assert_int_eq(call_str(&e, "x", 5000, &r), 0);
	pbus_peer_stats(e.peer, &s2);
	ck_assert_uint_gt(s2.epoch, s1.epoch);
	ck_assert_uint_eq(s2.attaches, 2);
	env_close(&e);
}
END_TEST

START_TEST(idle_agent_uses_no_cpu)
{
	struct env e;
	struct pbus_result r;
	long c0, c1;

	env_open(&e, "pbus-passthrough", "pass");
	ck_assert_int_eq(call_str(&e, "x", 5000, &r), 0);
	usleep(200000); /* past the idle spin */
	c0 = th_cpu_ticks(e.pid);
	usleep(1500000);
	c1 = th_cpu_ticks(e.pid);
	ck_assert_int_ge(c0, 0);
	/* 1.5 s idle: at most one clock tick (10 ms) of CPU. */
	ck_assert_int_le(c1 - c0, 1);
	env_close(&e);
}
END_TEST

/* The CPUs @pid may run on, as /proc shows them ("0-1"), into @buf. */
static void allowed_cpus(pid_t pid, char *buf, size_t n)
{
	char path[64], line[256];
	FILE *f;

	ck_assert_uint_ge(n, 64); /* the %63s below */
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	buf[0] = 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Cpus_allowed_list: %63s", buf) == 1)
			break;
	fclose(f);
	ck_assert_int_ne(buf[0], 0);
}

/*
 * An agent spawned by its gateway whose calls come further apart than its
 * poll pins itself to its caller's CPU (a wake-up there is a hand-over, not
 * a halted CPU to wake), and lets go when calls come back to back. While it
 * follows, it times one wait in eight (agent.c, TIME_EVERY): the samples it
 * learns from must still bring it back well before it would re-learn from
 * scratch (FAR_RELEARN, 1024 waits). The poll is 400 us here so that the
 * back-to-back gaps stay far below an eighth of it on a slow (sanitised)
 * build.
 */
START_TEST(agent_follows_a_sparse_caller_and_lets_go_when_calls_come_close)
{
	struct env e;
	struct pbus_result r;
	cpu_set_t mine, one;
	char all[64], now[64], here[16], gw[16];
	int cpu = -1, i;

	ck_assert_int_eq(sched_getaffinity(0, sizeof(mine), &mine), 0);
	if (CPU_COUNT(&mine) < 2) {
		printf("SKIP agent_follows_...: one CPU, nothing to follow\n");
		return;
	}
	for (i = 0; i < CPU_SETSIZE && cpu < 0; i++)
		if (CPU_ISSET(i, &mine))
			cpu = i;
	snprintf(here, sizeof(here), "%d", cpu);
	/* spawned as the supervisor spawns agents: it dies with us and
	 * sleeps with no deadline (docs/supervision.md) */
	snprintf(gw, sizeof(gw), "%d", (int)getpid());
	setenv("PBUS_SPAWNED", "1", 1);
	setenv("PBUS_GATEWAY_PID", gw, 1);
	env_open_spin(&e, "pbus-passthrough", "pass", 400000);
	unsetenv("PBUS_SPAWNED");
	unsetenv("PBUS_GATEWAY_PID");
	allowed_cpus(e.pid, all, sizeof(all));
	ck_assert_str_ne(all, here);
	/* the caller stays on one CPU (the agent follows only a caller that
	 * does) */
	CPU_ZERO(&one);
	CPU_SET(cpu, &one);
	ck_assert_int_eq(sched_setaffinity(0, sizeof(one), &one), 0);

	for (i = 0; i < 40; i++) { /* 5 ms apart: far */
		ck_assert_int_eq(call_str(&e, "x", 5000, &r), 0);
		usleep(5000);
	}
	allowed_cpus(e.pid, now, sizeof(now));
	ck_assert_str_eq(now, here);

	for (i = 0; i < 900 && strcmp(now, all); i++) {
		ck_assert_int_eq(call_str(&e, "x", 5000, &r), 0);
		if (i % 8 == 7)
			allowed_cpus(e.pid, now, sizeof(now));
	}
	ck_assert_msg(!strcmp(now, all),
		      "still on CPU %s after %d calls back to back", now, i);
	printf("agent let go of CPU %s after %d calls back to back\n", here,
	       i);
	ck_assert_int_eq(sched_setaffinity(0, sizeof(mine), &mine), 0);
	env_close(&e);
}
END_TEST

/* pbus_submit_many() queues what fits (the 256-slot ring takes 256 of
 * 600), commits each batch at once, and every answer comes back to its own
 * call; a batch with one bad call queues nothing. */
START_TEST(submit_many_queues_what_fits_and_answers_each_call)
{
	enum { N = 600 };
	static struct pbus_call_args a[N];
	static uint64_t t[N];
	struct pbus_peer_stats st;
	struct env e;
	unsigned done = 0;
	int got;

	env_open(&e, "pbus-passthrough", "echo");
	for (int i = 0; i < N; i++) {
		char buf[32];

		snprintf(buf, sizeof(buf), "call %d", i);
		a[i] = (struct pbus_call_args){.hook = PBUS_HOOK_TOOL_PRE_INVOKE,
					       .payload = pack_str(e.lane, buf),
					       .timeout_ns = 5000000000ull};
	}
	ck_assert_int_eq(pbus_submit_many(e.peer, e.lane, a, 0, t), -EINVAL);
	a[7].hook = 99;
	ck_assert_int_eq(pbus_submit_many(e.peer, e.lane, a, N, t), -EINVAL);
	a[7].hook = PBUS_HOOK_TOOL_PRE_INVOKE;
	pbus_peer_stats(e.peer, &st);
	ck_assert_uint_eq(st.calls, 0);

	got = pbus_submit_many(e.peer, e.lane, a, N, t);
	ck_assert_int_eq(got, 256); /* the ring's size */
	while (done < N) {
		unsigned end = done + (unsigned)got;

		for (; done < end; done++) {
			struct pbus_result r;
			char want[32];
			size_t wl;

			ck_assert_int_eq(pbus_collect(e.peer, t[done],
						      5000000000ull, &r),
					 0);
			ck_assert_uint_eq(r.flags, PBUS_RF_MODIFIED);
			wl = (size_t)snprintf(want, sizeof(want), "call %u",
					      done);
			ck_assert_uint_ge(r.body.len, wl);
			ck_assert_int_eq(memcmp((const char *)r.body_ptr +
							r.body.len - wl,
						want, wl),
					 0);
		}
		if (done < N) {
			got = pbus_submit_many(e.peer, e.lane, a + done,
					       N - done, t + done);
			ck_assert_int_gt(got, 0);
		}
	}
	pbus_peer_stats(e.peer, &st);
	ck_assert_uint_eq(st.calls, N);
	ck_assert_uint_eq(st.completed, N);
	ck_assert_uint_eq(st.rejected, 0);
	env_close(&e);
}
END_TEST

START_TEST(oversize_payload_is_refused_with_emsgsize)
{
	struct env e;
	struct pbus_call_args a = {.hook = PBUS_HOOK_TOOL_PRE_INVOKE};
	struct pbus_result r;

	env_open(&e, "pbus-passthrough", "pass");
	a.payload.off = 4096;
	a.payload.len = 256 * 1024 + 1;
	ck_assert_int_eq(pbus_invoke(e.peer, e.lane, &a, &r), -EMSGSIZE);
	env_close(&e);
}
END_TEST

/* ------------------------------------------------------------ malloc */

static _Atomic long mallocs;
static int counting;

#if defined(__SANITIZE_THREAD__)
/* TSan owns the allocator and offers no hooks: the count is not possible
 * under TSan (the normal and ASan suites run it). */
#define NO_MALLOC_COUNT 1
static void count_setup(void)
{
}
#elif defined(__SANITIZE_ADDRESS__)
/* Under ASan, count through the sanitizer's own allocation hooks. */
int __sanitizer_install_malloc_and_free_hooks(
	void (*malloc_hook)(const volatile void *, size_t),
	void (*free_hook)(const volatile void *));

static void count_malloc(const volatile void *p, size_t n)
{
	(void)p;
	(void)n;
	if (counting)
		mallocs++;
}

static void count_free(const volatile void *p)
{
	(void)p;
}

static void count_setup(void)
{
	__sanitizer_install_malloc_and_free_hooks(count_malloc, count_free);
}
#else
/* Interpose the allocator of this test program (statically linked libpbus
 * calls these). */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);

void *malloc(size_t n)
{
	if (counting)
		mallocs++;
	return __libc_malloc(n);
}

void *calloc(size_t a, size_t b)
{
	if (counting)
		mallocs++;
	return __libc_calloc(a, b);
}

void *realloc(void *p, size_t n)
{
	if (counting)
		mallocs++;
	return __libc_realloc(p, n);
}

static void count_setup(void)
{
}
#endif

START_TEST(steady_state_round_trip_does_not_malloc)
{
	struct env e;
	struct pbus_call_args a = {.hook = PBUS_HOOK_TOOL_PRE_INVOKE};
	struct pbus_result r;
	uint64_t t;

#ifdef NO_MALLOC_COUNT
	fprintf(stderr, "steady_state_round_trip_does_not_malloc: skipped "
			"under TSan (no allocator hooks)\n");
	return;
#endif
	count_setup();
	env_open(&e, "pbus-passthrough", "echo");
	a.payload = pack_str(e.lane, "payload");
	for (int i = 0; i < 1000; i++) { /* warm up */
		pbus_lane_reset(e.lane);
		a.payload = pack_str(e.lane, "payload");
		ck_assert_int_eq(pbus_invoke(e.peer, e.lane, &a, &r), 0);
	}
	counting = 1; /* no ck_assert inside: Check itself allocates */
	for (int i = 0; i < 20000; i++) {
		msgpack_packer pk;

		pbus_lane_reset(e.lane);
		pbus_lane_pack_begin(e.lane, &pk);
		msgpack_pack_str_with_body(&pk, "payload", 7);
		if (pbus_lane_pack_end(e.lane, &pk, &a.payload))
			break;
		if (pbus_invoke(e.peer, e.lane, &a, &r))
			break;
		if (pbus_submit(e.peer, e.lane, &a, &t) ||
		    pbus_collect(e.peer, t, 1000000000ull, &r))
			break;
	}
	counting = 0;
	ck_assert_int_eq(mallocs, 0);
	env_close(&e);
}
END_TEST

static Suite *bus_suite(void)
{
	Suite *s = suite_create("bus");
	TCase *tc;

	tc = tcase_create("roundtrip");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, touch_sum_is_the_byte_sum);
	tcase_add_test(tc, passthrough_answers_continue_unmodified);
	tcase_add_test(tc, echo_returns_payload_bytes_in_the_lane);
	tcase_add_test(tc, rings_wrap_around_with_varied_sizes);
	tcase_add_test(tc, inline_and_referenced_payloads_arrive_intact);
	tcase_add_test(tc, many_threads_each_get_their_own_answers);
	tcase_add_test(tc, pipelined_submit_collect_in_order);
	tcase_add_test(tc, submit_many_queues_what_fits_and_answers_each_call);
	tcase_add_test(tc, oversize_payload_is_refused_with_emsgsize);
	tcase_add_test(tc, steady_state_round_trip_does_not_malloc);
	suite_add_tcase(s, tc);

	tc = tcase_create("waiting");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, full_ring_applies_back_pressure_then_drains);
	tcase_add_test(tc, call_times_out_and_late_answer_is_dropped);
	tcase_add_test(tc, agent_death_fails_inflight_calls_at_once);
	tcase_add_test(tc, idle_agent_uses_no_cpu);
	tcase_add_test(tc, agent_follows_a_sparse_caller_and_lets_go_when_calls_come_close);
	suite_add_tcase(s, tc);

	tc = tcase_create("hostile");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, frame_with_bad_length_is_rejected);
	tcase_add_test(tc, frame_with_body_past_its_end_is_rejected);
	tcase_add_test(tc, answer_for_unknown_id_is_rejected);
	tcase_add_test(tc, answer_with_stale_epoch_is_rejected);
	tcase_add_test(tc, duplicate_answer_is_rejected);
	tcase_add_test(tc, tail_beyond_ring_is_rejected);
	tcase_add_test(tc, random_bytes_over_channel_are_rejected);
	tcase_add_test(tc, doorbell_hammering_is_harmless);
	tcase_add_test(tc, agent_cannot_map_arena_writable);
	suite_add_tcase(s, tc);

	tc = tcase_create("attach");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, attach_refused_for_wrong_magic_abi_or_protocol);
	tcase_add_test(tc, second_agent_for_a_connected_name_is_refused);
	tcase_add_test(tc, control_socket_is_private_by_default);
	tcase_add_test(tc, restarted_agent_gets_a_new_epoch);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(bus_suite());
	int nf;

	signal(SIGPIPE, SIG_IGN);
	srunner_run_all(sr, CK_NORMAL);
	nf = srunner_ntests_failed(sr);
	srunner_free(sr);
	return nf ? 1 : 0;
}
