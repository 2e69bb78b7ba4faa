// SPDX-License-Identifier: MIT
/*
 * pbus-bench: the core benchmark. One run, one table: round-trip latency
 * (p50/p99/p99.9) and calls/s for 64 B, 1 KiB and 64 KiB payloads, for
 *   continuous   back-to-back blocking calls
 *   paced        ~1,000 calls/s, so the agent falls asleep between calls
 *   pipelined    non-blocking API, 64 calls in flight (pbus_submit_many();
 *                "pipe64 1x1": the same with pbus_submit() per call)
 *   2 threads    two gateway threads calling one agent at once
 * and, measured in the same run with the same bytes, two baselines:
 *   unix socket  a Unix-domain stream socket to a server process
 *   futex        a raw futex ping-pong over shared memory (both sides sleep)
 * Every client copies its payload in from a source buffer for every call
 * (pbus: encodes it into its lane), every server (pbus agent or baseline)
 * reads every payload byte and answers with a small "continue". Ratios
 * pbus/baseline are printed per row. The paced rows take the three
 * transports in turns (paced_rows()).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <pbus/pbus.h>

#include "bench.h"
#include "bench_obs.h"
#include "bench_agents.h"
#include "bench_proxy.h"
#include "../../agents/passthrough/touch.h"

/* ---------------------------------------------------------------- stats */

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/*
 * Timestamps for latency samples. With an invariant TSC (constant_tsc and
 * nonstop_tsc) the TSC is read directly and scaled, calibrated against
 * CLOCK_MONOTONIC at start: a clock_gettime() costs ~40 ns on this class of
 * VM, which would be a large part of a 0.3 us round trip.
 */
static double tsc_ns_per_tick;
static uint64_t tsc0, mono0;

static void tsc_calibrate(void)
{
	char line[4096];
	int ok = 0;
	FILE *f = fopen("/proc/cpuinfo", "r");

	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "flags", 5)) {
			ok = strstr(line, " constant_tsc") &&
			     strstr(line, " nonstop_tsc");
			break;
		}
	if (f)
		fclose(f);
#if defined(__x86_64__)
	if (ok) {
		uint64_t t1, m1;

		mono0 = mono_ns();
		tsc0 = __builtin_ia32_rdtsc();
		usleep(50000);
		m1 = mono_ns();
		t1 = __builtin_ia32_rdtsc();
		tsc_ns_per_tick = (double)(m1 - mono0) / (double)(t1 - tsc0);
	}
#endif
}

uint64_t bench_now(void)
{
#if defined(__x86_64__)
	if (tsc_ns_per_tick > 0)
		return mono0 + (uint64_t)((double)(__builtin_ia32_rdtsc() -
						   tsc0) *
					  tsc_ns_per_tick);
#endif
	return mono_ns();
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

void bench_stats(uint64_t *lat, size_t n, uint64_t wall_ns,
		 struct bench_res *r)
{
	memset(r, 0, sizeof(*r));
	if (!n)
		return;
	qsort(lat, n, sizeof(*lat), cmp_u64);
	r->n = n;
	r->p50 = (double)lat[n / 2] / 1000.0;
	r->p99 = (double)lat[(size_t)((double)n * 0.99)] / 1000.0;
	r->p999 = (double)lat[(size_t)((double)n * 0.999)] / 1000.0;
	r->max = (double)lat[n - 1] / 1000.0;
	r->rate = wall_ns ? (double)n * 1e9 / (double)wall_ns : 0;
}

static void sleep_until(uint64_t t)
{
	struct timespec ts = {.tv_sec = (time_t)(t / 1000000000ull),
			      .tv_nsec = (long)(t % 1000000000ull)};

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) ==
	       EINTR)
		;
}

/* ---------------------------------------------------------------- pbus */

struct pb {
	struct pbus_bus *bus;
	struct pbus_peer *peer;
	pid_t pid;
	char sock[108];
	const char *bindir;
};

static pid_t spawn_agent(const char *bindir, const char *sock,
			 const char *name, const char *mode)
{
	char path[4096], gw[16];
	pid_t pid;

	snprintf(path, sizeof(path), "%s/pbus-passthrough", bindir);
	snprintf(gw, sizeof(gw), "%d", (int)getpid());
	pid = fork();
	if (pid == 0) {
		/* spawned by its gateway, as the supervisor spawns agents:
		 * it dies with us (see docs/supervision.md) */
		setenv("PBUS_SPAWNED", "1", 1);
		setenv("PBUS_GATEWAY_PID", gw, 1);
		execl(path, path, "--socket", sock, "--name", name, "--mode",
		      mode, (char *)NULL);
		fprintf(stderr, "pbus-bench: exec %s: %s\n", path,
			strerror(errno));
		_exit(127);
	}
	return pid;
}

static int pb_open(struct pb *p, const char *bindir, const char *mode)
{
	struct pbus_bus_opts o = {0};
	int ret;

	snprintf(p->sock, sizeof(p->sock), "/tmp/pbus-bench-%d.sock",
		 (int)getpid());
	o.sock_path = p->sock;
	o.max_payload = 1 << 20;
	o.lanes = 8;
	o.lane_size = 8u << 20; /* 64 payloads of 64 KiB in flight */
	ret = pbus_bus_open(&o, &p->bus);
	if (ret)
		return ret;
	pbus_bus_add_peer(p->bus, "bench", NULL, 0, &p->peer);
	p->pid = spawn_agent(bindir, p->sock, "bench", mode);
	ret = pbus_peer_wait_up(p->peer, 5000);
	if (ret) {
		kill(p->pid, SIGKILL);
		waitpid(p->pid, NULL, 0);
		pbus_bus_close(p->bus);
	}
	return ret;
}

static void pb_close(struct pb *p)
{
	kill(p->pid, SIGTERM);
	waitpid(p->pid, NULL, 0);
	pbus_bus_close(p->bus);
}

/* Encode a payload of @size bytes (a msgpack bin) into @l. */
static int pb_payload(struct pbus_lane *l, const uint8_t *src, size_t size,
		      struct pbus_ref *ref)
{
	msgpack_packer pk;

	pbus_lane_pack_begin(l, &pk);
	msgpack_pack_bin_with_body(&pk, src, size);
	return pbus_lane_pack_end(l, &pk, ref);
}

struct pb_run {
	struct pb *p;
	size_t size;
	size_t n;
	uint64_t pace_ns; /* 0: continuous */
	int one_by_one;   /* pipelined: pbus_submit() per call */
	uint64_t *lat;
	uint64_t wall;
	int err;
};

static void *pb_blocking(void *arg)
{
	struct pb_run *r = arg;
	struct pbus_lane *l;
	uint8_t *src = malloc(r->size);
	uint64_t t0, next;

	memset(src, 0x5a, r->size);
	if (pbus_lane_acquire(r->p->bus, &l)) {
		r->err = -EAGAIN;
		free(src);
		return NULL;
	}
	t0 = next = bench_now();
	for (size_t i = 0; i < r->n; i++) {
		struct pbus_call_args a = {.hook = PBUS_HOOK_TOOL_PRE_INVOKE};
		struct pbus_result res;
		uint64_t s;

		if (r->pace_ns) {
			next += r->pace_ns;
			sleep_until(next);
		}
		s = bench_now();
		/* the payload is written for every call, like a real one */
		pbus_lane_reset(l);
		if (pb_payload(l, src, r->size, &a.payload) ||
		    pbus_invoke(r->p->peer, l, &a, &res)) {
			r->err = -EIO;
			break;
		}
		r->lat[i] = bench_now() - s;
	}
	r->wall = bench_now() - t0;
	pbus_lane_release(l);
	free(src);
	return NULL;
}

/*
 * Pipelined: rounds of @depth calls, each round's payloads encoded into the
 * lane, queued with pbus_submit_many() (as many as the ring takes at a time;
 * r->one_by_one: with one pbus_submit() each) and then collected in order.
 * A call's latency runs from the submit that queued it to its collect.
 */
static void pb_pipelined(struct pb_run *r, unsigned depth)
{
	struct pbus_lane *l;
	uint8_t *src = malloc(r->size);
	uint64_t *tk = calloc(depth, sizeof(*tk)), *ts = calloc(depth, 8);
	struct pbus_call_args *a = calloc(depth, sizeof(*a));
	size_t done = 0;
	uint64_t t0;

	memset(src, 0x5a, r->size);
	pbus_lane_acquire(r->p->bus, &l);
	t0 = bench_now();
	while (done < r->n && !r->err) {
		unsigned n = r->n - done < depth ? (unsigned)(r->n - done)
						  : depth;

		pbus_lane_reset(l);
		for (unsigned k = 0; k < n; k++) {
			a[k] = (struct pbus_call_args){
				.hook = PBUS_HOOK_TOOL_PRE_INVOKE};
			if (pb_payload(l, src, r->size, &a[k].payload))
				r->err = -EIO;
		}
		if (r->err)
			break;
		for (unsigned k = 0; k < n && !r->err;) {
			uint64_t now;
			int got;

			if (!r->one_by_one)
				got = pbus_submit_many(r->p->peer, l, a + k,
						       n - k, tk + k);
			else if (!(got = pbus_submit(r->p->peer, l, &a[k],
						     &tk[k])))
				got = 1;
			now = bench_now();

			if (got < 0) {
				fprintf(stderr, "pbus-bench: submit: %s\n",
					strerror(-got));
				r->err = got;
				n = k; /* collect what was queued */
				break;
			}
			for (int j = 0; j < got; j++)
				ts[k + (unsigned)j] = now;
			k += (unsigned)got;
		}
		for (unsigned k = 0; k < n; k++, done++) {
			struct pbus_result res;
			int st = pbus_collect(r->p->peer, tk[k],
					      10000000000ull, &res);

			if (st) {
				fprintf(stderr, "pbus-bench: call %zu: %s\n",
					done, strerror(-st));
				r->err = st;
			}
			r->lat[done] = bench_now() - ts[k];
		}
	}
	r->wall = bench_now() - t0;
	pbus_lane_release(l);
	free(src);
	free(tk);
	free(ts);
	free(a);
}

#define PIPE_WARMUP_NS 200000000ull

static void warm_pipelined(struct pb_run *r, size_t n)
{
	uint64_t t0 = bench_now();

	r->n = n / 10;
	do
		pb_pipelined(r, 64);
	while (!r->err && bench_now() - t0 < PIPE_WARMUP_NS);
	r->n = n;
}

/* ---------------------------------------------------------------- unix socket */

static int read_full(int fd, void *buf, size_t n)
{
	uint8_t *p = buf;

	while (n) {
		ssize_t k = read(fd, p, n);

		if (k <= 0) {
			if (k < 0 && errno == EINTR)
				continue;
			return -1;
		}
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

static int write_full(int fd, const void *buf, size_t n)
{
	const uint8_t *p = buf;

	while (n) {
		ssize_t k = write(fd, p, n);

		if (k <= 0) {
			if (k < 0 && errno == EINTR)
				continue;
			return -1;
		}
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

static volatile unsigned long sink;

static void *sock_server(void *arg)
{
	int fd = (int)(intptr_t)arg;
	uint8_t *buf = malloc(1 << 20);
	uint32_t len;

	while (read_full(fd, &len, 4) == 0 && len <= (1u << 20)) {
		if (read_full(fd, buf, len))
			break;
		sink = touch_sum(buf, len);
		if (write_full(fd, "OK\0\0", 4))
			break;
	}
	free(buf);
	close(fd);
	return NULL;
}

struct sk {
	pid_t pid;
	int fd[2]; /* client ends, one per client thread */
};

static int sk_open(struct sk *s)
{
	int a[2], b[2];

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, a) ||
	    socketpair(AF_UNIX, SOCK_STREAM, 0, b))
		return -errno;
	s->pid = fork();
	if (s->pid == 0) {
		pthread_t t1, t2;

		close(a[0]);
		close(b[0]);
		pthread_create(&t1, NULL, sock_server, (void *)(intptr_t)a[1]);
		pthread_create(&t2, NULL, sock_server, (void *)(intptr_t)b[1]);
		pthread_join(t1, NULL);
		pthread_join(t2, NULL);
		_exit(0);
	}
	close(a[1]);
	close(b[1]);
	s->fd[0] = a[0];
	s->fd[1] = b[0];
	return 0;
}

static void sk_close(struct sk *s)
{
	close(s->fd[0]);
	close(s->fd[1]);
	waitpid(s->pid, NULL, 0);
}

struct sk_run {
	int fd;
	size_t size, n;
	uint64_t pace_ns;
	unsigned depth; /* 0/1: blocking */
	uint64_t *lat, wall;
	int err;
};

static void *sk_client(void *arg)
{
	struct sk_run *r = arg;
	uint8_t *msg = malloc(r->size + 4), *src = malloc(r->size);
	uint32_t len = (uint32_t)r->size;
	unsigned depth = r->depth ? r->depth : 1;
	uint64_t *ts = calloc(depth, 8), t0, next;
	size_t sent = 0, done = 0;
	char ok[4];

	memcpy(msg, &len, 4);
	memset(src, 0x5a, r->size);
	t0 = next = bench_now();
	while (done < r->n && !(r->err && done == sent)) {
		while (sent < r->n && sent - done < depth && !r->err) {
			if (r->pace_ns) {
				next += r->pace_ns;
				sleep_until(next);
			}
			ts[sent % depth] = bench_now();
			/* the payload is copied in for every call, as
			 * pb_payload() encodes it */
			memcpy(msg + 4, src, r->size);
			if (write_full(r->fd, msg, r->size + 4)) {
				r->err = -EIO;
				goto out;
			}
			sent++;
		}
		if (read_full(r->fd, ok, 4)) {
			r->err = -EIO;
			goto out;
		}
		r->lat[done] = bench_now() - ts[done % depth];
		done++;
	}
out:
	r->wall = bench_now() - t0;
	free(msg);
	free(src);
	free(ts);
	return NULL;
}

/* ---------------------------------------------------------------- futex */

struct fx_shm {
	uint32_t req;  /* futex: request sequence */
	uint32_t _p1[15];
	uint32_t resp; /* futex: response sequence */
	uint32_t _p2[15];
	uint32_t len;
	uint32_t stop;
	uint8_t data[];
};

static void fx_wait(uint32_t *w, uint32_t v)
{
	while (__atomic_load_n(w, __ATOMIC_ACQUIRE) == v)
		syscall(SYS_futex, w, FUTEX_WAIT, v, NULL, NULL, 0);
}

static void fx_wake(uint32_t *w)
{
	syscall(SYS_futex, w, FUTEX_WAKE, 1, NULL, NULL, 0);
}

struct fx {
	struct fx_shm *s;
	uint8_t *src; /* what each call copies in (as pb_payload() does) */
	size_t map;
	pid_t pid;
};

static int fx_open(struct fx *f)
{
	f->map = sizeof(struct fx_shm) + (1 << 20);
	f->s = mmap(NULL, f->map, PROT_READ | PROT_WRITE,
		    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (f->s == MAP_FAILED)
		return -errno;
	f->src = malloc(1 << 20);
	if (!f->src) {
		munmap(f->s, f->map);
		return -ENOMEM;
	}
	memset(f->src, 0x5a, 1 << 20);
	f->pid = fork();
	if (f->pid == 0) {
		uint32_t seen = 0;

		for (;;) {
			fx_wait(&f->s->req, seen);
			seen = __atomic_load_n(&f->s->req, __ATOMIC_ACQUIRE);
			if (f->s->stop)
				_exit(0);
			sink = touch_sum(f->s->data, f->s->len);
			__atomic_store_n(&f->s->resp, seen, __ATOMIC_RELEASE);
			fx_wake(&f->s->resp);
		}
	}
	return 0;
}

static void fx_close(struct fx *f)
{
	f->s->stop = 1;
	__atomic_fetch_add(&f->s->req, 1, __ATOMIC_RELEASE);
	fx_wake(&f->s->req);
	waitpid(f->pid, NULL, 0);
	munmap(f->s, f->map);
	free(f->src);
}

static void fx_run(struct fx *f, size_t size, size_t n, uint64_t pace_ns,
		   uint64_t *lat, uint64_t *wall)
{
	uint64_t t0 = bench_now(), next = t0;

	for (size_t i = 0; i < n; i++) {
		uint32_t seq;
		uint64_t s;

		if (pace_ns) {
			next += pace_ns;
			sleep_until(next);
		}
		s = bench_now();
		memcpy(f->s->data, f->src, size);
		f->s->len = (uint32_t)size;
		seq = __atomic_add_fetch(&f->s->req, 1, __ATOMIC_RELEASE);
		fx_wake(&f->s->req);
		while (__atomic_load_n(&f->s->resp, __ATOMIC_ACQUIRE) != seq)
			fx_wait(&f->s->resp, seq - 1);
		lat[i] = bench_now() - s;
	}
	*wall = bench_now() - t0;
}

/* ---------------------------------------------------------------- paced */

/*
 * The paced rows: @n calls of @size bytes at 1,000 calls/s on each of pbus,
 * the socket and the futex ping-pong, taken in turns of PACE_BLOCK calls
 * (the order rotating every round), so that the three see the same minutes
 * of this shared host. Run one after the other, each got its own stretch of
 * the host's noise, which is what a p99 of 2,000 sleeping calls mostly
 * measures.
 */
#define PACE_BLOCK 100

static void paced_rows(struct pb *p, struct sk *s, struct fx *f, size_t size,
		       size_t n, uint64_t *lat, struct bench_res *pb,
		       struct bench_res *sk, struct bench_res *fx)
{
	uint64_t *l[3] = {lat, lat + n, lat + 2 * n}, wall[3] = {0};

	for (size_t done = 0, round = 0; done < n; done += PACE_BLOCK,
		    round++) {
		size_t k = n - done < PACE_BLOCK ? n - done : PACE_BLOCK;

		for (int t = 0; t < 3; t++) {
			int which = (int)((round + (size_t)t) % 3);
			uint64_t w = 0;

			if (which == 0) {
				struct pb_run r = {.p = p, .size = size,
						   .n = k, .pace_ns = 1000000,
						   .lat = l[0] + done};

				pb_blocking(&r);
				w = r.wall;
			} else if (which == 1) {
				struct sk_run u = {.fd = s->fd[0],
						   .size = size, .n = k,
						   .pace_ns = 1000000,
						   .lat = l[1] + done};

				sk_client(&u);
				w = u.wall;
			} else {
				fx_run(f, size, k, 1000000, l[2] + done, &w);
			}
			wall[which] += w;
		}
	}
	bench_stats(l[0], n, wall[0], pb);
	bench_stats(l[1], n, wall[1], sk);
	bench_stats(l[2], n, wall[2], fx);
}

/* ---------------------------------------------------------------- table */

static void row(FILE *out, const char *scen, size_t size,
		const struct bench_res *p, const struct bench_res *u,
		const struct bench_res *f)
{
	char sz[32];

	if (size >= 1024)
		snprintf(sz, sizeof(sz), "%zu KiB", size / 1024);
	else
		snprintf(sz, sizeof(sz), "%zu B", size);
	fprintf(out,
		"%-11s %7s | %8.2f %8.2f %9.2f %10.0f | %8.2f %8.2f %10.0f | ",
		scen, sz, p->p50, p->p99, p->p999, p->rate, u->p50, u->p99,
		u->rate);
	if (f)
		fprintf(out, "%8.2f %8.2f | %6.3f %6.3f\n", f->p50, f->p99,
			p->p50 / u->p50, p->p50 / f->p50);
	else
		fprintf(out, "%8s %8s | %6.3f %6s\n", "-", "-",
			p->p50 / u->p50, "-");
}

struct verdicts {
	int n, ok;
	char lines[16][200];
};

static void verdict(struct verdicts *v, int ok, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void verdict(struct verdicts *v, int ok, const char *fmt, ...)
{
	va_list ap;

	if (v->n >= 16)
		return;
	va_start(ap, fmt);
	snprintf(v->lines[v->n], sizeof(v->lines[0]), "%s ", ok ? "met" : "MISSED");
	vsnprintf(v->lines[v->n] + strlen(v->lines[v->n]),
		  sizeof(v->lines[0]) - strlen(v->lines[v->n]), fmt, ap);
	va_end(ap);
	v->n++;
	v->ok += ok;
}

int bench_core(FILE *out, const char *bindir, int quick)
{
	static const size_t sizes[] = {64, 1024, 65536};
	struct bench_res cont[3], pace[3], pipe_[3], pipe1, thr2;
	struct bench_res ucont[3], upace[3], upipe[3], uthr2;
	struct bench_res fcont[3], fpace[3];
	size_t ncont[3] = {200000, 100000, 10000};
	size_t npace = 2000, npipe = 400000;
	struct verdicts v = {0};
	struct pb p;
	struct sk s = {0};
	struct fx f;
	uint64_t *lat;
	int ret;

	if (quick) {
		ncont[0] = ncont[1] = 20000;
		ncont[2] = 2000;
		npace = 300;
		npipe = 50000;
	}
	lat = calloc(2 * npipe + 2 * ncont[0], sizeof(*lat));
	ret = pb_open(&p, bindir, getenv("PBUS_BENCH_MODE") ? getenv("PBUS_BENCH_MODE") : "touch");
	if (ret) {
		fprintf(stderr, "pbus-bench: cannot start the agent: %s\n",
			strerror(-ret));
		free(lat);
		return ret;
	}
	if (sk_open(&s) || fx_open(&f)) {
		fprintf(stderr, "pbus-bench: cannot start baselines\n");
		pb_close(&p);
		free(lat);
		return -EIO;
	}
	fprintf(out, "core round trip, %s run (pid %d, 2 CPUs unpinned)\n",
		quick ? "quick" : "full", (int)getpid());

	for (int i = 0; i < 3; i++) {
		struct pb_run r = {.p = &p, .size = sizes[i], .n = ncont[i],
				   .lat = lat};
		struct sk_run u = {.fd = s.fd[0], .size = sizes[i],
				   .n = ncont[i], .lat = lat};
		uint64_t wall;

		/* warm-up */
		r.n = ncont[i] / 10;
		pb_blocking(&r);
		r.n = ncont[i];
		pb_blocking(&r);
		bench_stats(lat, r.n, r.wall, &cont[i]);
		sk_client(&u);
		bench_stats(lat, u.n, u.wall, &ucont[i]);
		fx_run(&f, sizes[i], ncont[i], 0, lat, &wall);
		bench_stats(lat, ncont[i], wall, &fcont[i]);
	}
	for (int i = 0; i < 3; i++)
		paced_rows(&p, &s, &f, sizes[i], npace, lat, &pace[i],
			   &upace[i], &fpace[i]);
	for (int i = 0; i < 3; i++) {
		size_t n = i == 2 ? npipe / 20 : npipe;
		struct pb_run r = {.p = &p, .size = sizes[i], .n = n,
				   .lat = lat};
		struct sk_run u = {.fd = s.fd[0], .size = sizes[i], .n = n,
				   .depth = 64, .lat = lat};

		/* Warm-up, as for the continuous rows, but for at least
		 * PIPE_WARMUP_NS: after the paced rows the agent sleeps on
		 * the caller's CPU, and it takes it tens of milliseconds to
		 * settle on the other one (see bus/agent.c, note_wake()).
		 * The row measures pipelining, not that move. */
		warm_pipelined(&r, n);
		pb_pipelined(&r, 64);
		bench_stats(lat, r.n, r.wall, &pipe_[i]);
		if (i == 0) { /* the same rounds, one submit per call */
			r.one_by_one = 1;
			pb_pipelined(&r, 64);
			bench_stats(lat, r.n, r.wall, &pipe1);
		}
		sk_client(&u);
		bench_stats(lat, u.n, u.wall, &upipe[i]);
	}
	{
		struct pb_run r[2];
		struct sk_run u[2];
		pthread_t t[2];
		uint64_t t0, wall;

		for (int k = 0; k < 2; k++)
			r[k] = (struct pb_run){.p = &p, .size = 64,
					       .n = ncont[0] / 2,
					       .lat = lat + k * ncont[0] / 2};
		t0 = bench_now();
		for (int k = 0; k < 2; k++)
			pthread_create(&t[k], NULL, pb_blocking, &r[k]);
		for (int k = 0; k < 2; k++)
			pthread_join(t[k], NULL);
		wall = bench_now() - t0;
		bench_stats(lat, ncont[0], wall, &thr2);
		for (int k = 0; k < 2; k++)
			u[k] = (struct sk_run){.fd = s.fd[k], .size = 64,
					       .n = ncont[0] / 2,
					       .lat = lat + k * ncont[0] / 2};
		t0 = bench_now();
		for (int k = 0; k < 2; k++)
			pthread_create(&t[k], NULL, sk_client, &u[k]);
		for (int k = 0; k < 2; k++)
			pthread_join(t[k], NULL);
		wall = bench_now() - t0;
		bench_stats(lat, ncont[0], wall, &uthr2);
	}
	/* the futex server was forked after the socket pair: it holds copies
	 * of the client ends, so it must go first for the socket server to
	 * see EOF */
	fx_close(&f);
	sk_close(&s);
	pb_close(&p);

	fprintf(out, "\n%-11s %7s | %-39s | %-28s | %-17s | %s\n", "", "",
		"pbus (us)", "unix socket (us)", "futex (us)",
		"p50 ratio");
	fprintf(out, "%-11s %7s | %8s %8s %9s %10s | %8s %8s %10s | %8s %8s | "
		     "%6s %6s\n",
		"scenario", "payload", "p50", "p99", "p99.9", "calls/s",
		"p50", "p99", "calls/s", "p50", "p99", "/sock", "/futex");
	for (int i = 0; i < 3; i++)
		row(out, "continuous", sizes[i], &cont[i], &ucont[i],
		    &fcont[i]);
	for (int i = 0; i < 3; i++)
		row(out, "paced 1k/s", sizes[i], &pace[i], &upace[i],
		    &fpace[i]);
	for (int i = 0; i < 3; i++)
		row(out, "pipelined64", sizes[i], &pipe_[i], &upipe[i], NULL);
	row(out, "pipe64 1x1", 64, &pipe1, &upipe[0], NULL);
	row(out, "2 threads", 64, &thr2, &uthr2, NULL);

	verdict(&v, cont[0].p50 <= 0.5, "continuous 64 B p50 %.2f us <= 0.5",
		cont[0].p50);
	verdict(&v, cont[0].p50 <= 0.1 * ucont[0].p50,
		"continuous 64 B p50 %.3f x socket <= 0.1",
		cont[0].p50 / ucont[0].p50);
	verdict(&v, cont[0].p99 <= 2.0, "continuous 64 B p99 %.2f us <= 2",
		cont[0].p99);
	verdict(&v, cont[1].p50 <= 1.0, "continuous 1 KiB p50 %.2f us <= 1",
		cont[1].p50);
	verdict(&v, cont[2].p50 <= 30.0, "continuous 64 KiB p50 %.2f us <= 30",
		cont[2].p50);
	for (int i = 0; i < 3; i++)
		verdict(&v,
			pace[i].p50 <= 1.2 * fpace[i].p50 &&
				pace[i].p99 <= upace[i].p99,
			"paced %zu B p50 %.2f x futex <= 1.2, p99 %.1f <= "
			"socket p99 %.1f us",
			sizes[i], pace[i].p50 / fpace[i].p50, pace[i].p99,
			upace[i].p99);
	verdict(&v, pipe_[0].rate >= 5e6,
		"pipelined 64 B %.2f M calls/s >= 5", pipe_[0].rate / 1e6);
	verdict(&v, pipe_[0].rate >= 2 * upipe[0].rate,
		"pipelined 64 B %.1f x socket >= 2",
		pipe_[0].rate / upipe[0].rate);
	fprintf(out, "\ntargets (issue #2): %d of %d met\n", v.ok, v.n);
	for (int i = 0; i < v.n; i++)
		fprintf(out, "  %s\n", v.lines[i]);
	free(lat);
	return 0;
}

/* ---------------------------------------------------------------- main */

static void usage(FILE *f)
{
	fprintf(f, "usage: pbus-bench [--quick] [--bindir DIR] [--only NAME]\n"
		   "Run the pbus benchmarks and print one table each.\n"
		   "  --quick       fewer iterations (seconds instead of a "
		   "minute)\n"
		   "  --bindir DIR  where pbus-passthrough lives (default: "
		   "next to this program)\n"
		   "  --only NAME   run one benchmark: core, chain, agents, proxy, obs\n"
		   "  -h, --help    this text\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{"quick", no_argument, NULL, 'q'},
		{"bindir", required_argument, NULL, 'b'},
		{"only", required_argument, NULL, 'o'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	char bindir[4096];
	const char *only = NULL;
	int quick = 0, ch, ret = 0;

	snprintf(bindir, sizeof(bindir), "%s", argv[0]);
	if (strrchr(bindir, '/'))
		*strrchr(bindir, '/') = 0;
	else
		strcpy(bindir, ".");
	while ((ch = getopt_long(argc, argv, "qb:o:h", lo, NULL)) != -1) {
		switch (ch) {
		case 'q':
			quick = 1;
			break;
		case 'b':
			snprintf(bindir, sizeof(bindir), "%s", optarg);
			break;
		case 'o':
			only = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (only && strcmp(only, "core") && strcmp(only, "chain") &&
	    strcmp(only, "agents") && strcmp(only, "proxy") &&
	    strcmp(only, "obs")) {
		fprintf(stderr, "pbus-bench: unknown benchmark '%s'\n", only);
		usage(stderr);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	tsc_calibrate();
	if (!only || !strcmp(only, "core"))
		ret |= bench_core(stdout, bindir, quick);
	if (!only || !strcmp(only, "chain")) {
		fflush(stdout);
		ret |= bench_chain(stdout, bindir, quick);
	}
	if (!only || !strcmp(only, "agents")) {
		fflush(stdout);
		ret |= bench_agents(stdout, bindir, quick);
	}
	if (!only || !strcmp(only, "proxy")) {
		fflush(stdout);
		ret |= bench_proxy(stdout, bindir, quick);
	}
	if (!only || !strcmp(only, "obs")) {
		fflush(stdout);
		ret |= pbus_bench_obs(stdout, quick);
	}
	return ret ? 1 : 0;
}
