// SPDX-License-Identifier: MIT
/*
 * The chain baseline (bench_chain_base.h): the cheapest a sequential chain
 * of N separate processes can be on this machine, measured with no pbus code.
 *
 * One shared anonymous mapping holds the 1 KiB payload and one slot per
 * worker. The driver (the calling thread) writes the payload once per call,
 * then for worker 1, 2, ... N in turn: stores the call's sequence into the
 * worker's req word, wakes the worker if it announced itself asleep, and
 * waits until the worker's resp word carries that sequence. A worker reads
 * every payload byte, stores the sum, then resp (release, paired with the
 * driver's acquire load of resp).
 *
 * Sleeping follows the musl pattern with a handover: the sleeper publishes
 * sleeping = 1, issues a full fence and rechecks its condition before
 * FUTEX_WAIT; the waker stores its word, issues a full fence (the seq_cst
 * store) and, only when it reads sleeping == 1 and wins the exchange back
 * to 0, bumps the futex word and calls FUTEX_WAKE. A worker sleeps on its
 * own bell word (not on req) so that a wake with no request (prewake) is
 * never lost.
 *
 * Every wait has a deadline: a hop that takes over a second fails the run; a
 * worker leaves when stopped, when its parent is gone (PR_SET_PDEATHSIG,
 * getppid) or after 20 s without a request. The driver reaps every worker
 * before returning, killing by pid those that did not leave within 2 s.
 */
#include "bench_chain_base.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../agents/passthrough/touch.h"

#define CB_MAX_WORKERS 64
#define CB_HOP_DEADLINE_NS 1000000000ull /* driver: one hop, at most */
#define CB_IDLE_EXIT_NS 20000000000ull	 /* worker: no request this long */
#define CB_NAP_NS 100000000ull		 /* longest single futex sleep */
#define CB_REAP_NS 2000000000ull	 /* then SIGKILL */
#define CB_MIN_CALLS 50 /* samples kept even past the time budget */

struct cb_slot {
	/* written by the driver, read by the worker */
	alignas(64) uint32_t req; /* sequence of the call to serve */
	uint32_t bell;		  /* futex the worker sleeps on */
	uint32_t sleeping;	  /* worker asleep on bell; waker takes it */
	/* written by the worker, read by the driver */
	alignas(64) uint32_t resp; /* futex: sequence of the last call served */
	uint32_t pad_;
	uint64_t sum; /* payload byte sum, stored before resp */
};

struct cb_shm {
	alignas(64) uint32_t stop;	   /* driver: leave now */
	alignas(64) uint32_t drv_sleeping; /* driver asleep on a resp word */
	uint32_t drv_cpu; /* the driver's CPU at its last hand-over */
	struct cb_slot slot[CB_MAX_WORKERS];
	alignas(64) uint8_t data[]; /* the payload */
};

static cpu_set_t cb_online; /* the CPUs we may use, read at each run */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#else
	__asm__ __volatile__("" ::: "memory");
#endif
}

static void futex_wait(uint32_t *w, uint32_t v, uint64_t rel_ns)
{
	struct timespec ts = {.tv_sec = (time_t)(rel_ns / 1000000000ull),
			      .tv_nsec = (long)(rel_ns % 1000000000ull)};

	syscall(SYS_futex, w, FUTEX_WAIT, v, &ts, NULL, 0);
}

static void futex_wake(uint32_t *w)
{
	syscall(SYS_futex, w, FUTEX_WAKE, 1, NULL, NULL, 0);
}

static int pin_to(int cpu)
{
	cpu_set_t cs;

	CPU_ZERO(&cs);
	CPU_SET(cpu, &cs);
	return sched_setaffinity(0, sizeof(cs), &cs) ? -errno : 0;
}

/*
 * Wake the worker of @s if it sleeps. The caller's seq_cst store of req (or
 * nothing, for a prewake) comes first; the seq_cst load pairs with the
 * worker's fence after it set sleeping. The exchange makes one waker pay the
 * syscall; bumping bell first means the worker's FUTEX_WAIT cannot miss it.
 */
static void kick(struct cb_slot *s)
{
	if (__atomic_load_n(&s->sleeping, __ATOMIC_SEQ_CST) &&
	    __atomic_exchange_n(&s->sleeping, 0, __ATOMIC_SEQ_CST)) {
		__atomic_fetch_add(&s->bell, 1, __ATOMIC_SEQ_CST);
		futex_wake(&s->bell);
	}
}

/* ---------------------------------------------------------------- worker */

static int has_request(struct cb_shm *m, struct cb_slot *s, uint32_t seen)
{
	return __atomic_load_n(&s->req, __ATOMIC_ACQUIRE) != seen ||
	       __atomic_load_n(&m->stop, __ATOMIC_ACQUIRE);
}

/*
 * Wait for a request other than @seen: poll for w_spin_ns (forever with
 * w_never_sleep), pausing or yielding between polls, then sleep on bell,
 * and poll again after every wake-up without a request (a prewake: the
 * request is on its way) for w_wake_spin_ns. 1 when a request or a stop is
 * there, 0 when the worker must leave.
 */
static int wait_request(struct cb_shm *m, struct cb_slot *s, uint32_t seen,
			const struct bench_cb_policy *pol, uint64_t since,
			pid_t parent)
{
	uint64_t budget = pol->w_spin_ns;

	for (;;) {
		uint64_t t0 = bench_now(), now = t0;
		unsigned i = 0;
		uint32_t b;

		while (pol->w_never_sleep || now - t0 < budget) {
			if (has_request(m, s, seen))
				return 1;
			if (pol->w_yield)
				sched_yield();
			else
				cpu_relax();
			if (pol->w_yield || (++i & 63) == 0) {
				now = bench_now();
				if (now - since > CB_IDLE_EXIT_NS ||
				    getppid() != parent)
					return 0;
			}
		}
		b = __atomic_load_n(&s->bell, __ATOMIC_ACQUIRE);
		/* a full barrier (x86: xchg), pairs with the seq_cst load in
		 * kick(); an RMW rather than a fence, which TSan rejects */
		__atomic_exchange_n(&s->sleeping, 1, __ATOMIC_SEQ_CST);
		if (!has_request(m, s, seen))
			futex_wait(&s->bell, b, CB_NAP_NS);
		__atomic_store_n(&s->sleeping, 0, __ATOMIC_RELAXED);
		if (has_request(m, s, seen))
			return 1;
		if (bench_now() - since > CB_IDLE_EXIT_NS ||
		    getppid() != parent)
			return 0;
		if (pol->w_wake_spin_ns)
			budget = pol->w_wake_spin_ns;
	}
}

/*
 * Placement a bus could do without pinning anything by hand: move to the
 * driver's CPU (@place 1: hand-overs stay on one CPU) or off it (@place 2:
 * the driver keeps a CPU to itself). A syscall only when it must move.
 */
static void place(const struct cb_shm *m, int how)
{
	int me = sched_getcpu();
	int dc = (int)__atomic_load_n(&m->drv_cpu, __ATOMIC_RELAXED);
	cpu_set_t cs;

	if (how == 1 && me != dc) {
		pin_to(dc);
	} else if (how == 2 && me == dc) {
		if (sched_getaffinity(0, sizeof(cs), &cs))
			return;
		CPU_OR(&cs, &cs, &cb_online);
		CPU_CLR(dc, &cs);
		if (CPU_COUNT(&cs))
			sched_setaffinity(0, sizeof(cs), &cs);
	}
}

static void __attribute__((noreturn))
worker(struct cb_shm *m, unsigned k, size_t size,
       const struct bench_cb_policy *pol, pid_t parent)
{
	struct cb_slot *s = &m->slot[k];
	uint64_t since = bench_now();
	uint32_t seen = 0;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(1);
	if (pol->pin)
		pin_to(1);
	for (;;) {
		uint32_t seq;
		uint64_t sum = 0;

		if (!wait_request(m, s, seen, pol, since, parent))
			_exit(1);
		if (__atomic_load_n(&m->stop, __ATOMIC_ACQUIRE))
			_exit(0);
		seq = __atomic_load_n(&s->req, __ATOMIC_ACQUIRE);
		if (pol->place)
			place(m, pol->place);
		if (!pol->no_touch)
			sum = touch_sum(m->data, size);
		s->sum = sum;
		/* pairs with the driver's acquire load of resp; seq_cst:
		 * also the fence before our read of drv_sleeping */
		__atomic_store_n(&s->resp, seq, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(&m->drv_sleeping, __ATOMIC_SEQ_CST) &&
		    __atomic_exchange_n(&m->drv_sleeping, 0, __ATOMIC_SEQ_CST))
			futex_wake(&s->resp);
		seen = seq;
		since = bench_now();
	}
}

/* ---------------------------------------------------------------- keeper */

/*
 * A SCHED_IDLE thread pinned to one CPU that only polls: that vCPU never
 * halts, so a wake-up aimed at it does not have to wake a halted vCPU, and
 * any normal task preempts the keeper at once (the scheduler treats a CPU
 * running only SCHED_IDLE tasks as idle when placing a woken task).
 */
struct keeper {
	pthread_t t;
	int cpu;
	int started;
	uint32_t *stop;
};

static void *keep(void *arg)
{
	struct keeper *kp = arg;
	struct sched_param sp = {0};

	pin_to(kp->cpu);
	pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp);
	while (!__atomic_load_n(kp->stop, __ATOMIC_RELAXED))
		cpu_relax();
	return NULL;
}

/* ---------------------------------------------------------------- driver */

/*
 * Wait until worker @s answers call @seq: poll for d_spin_ns, pausing or
 * yielding, then sleep on its resp word. 0, or -ETIMEDOUT past @deadline.
 */
static int wait_answer(struct cb_shm *m, struct cb_slot *s, uint32_t seq,
		       const struct bench_cb_policy *pol, uint64_t deadline)
{
	uint64_t t0 = bench_now(), now = t0;
	unsigned i = 0;

	while (now - t0 < pol->d_spin_ns) {
		if (__atomic_load_n(&s->resp, __ATOMIC_ACQUIRE) == seq)
			return 0;
		if (pol->d_yield)
			sched_yield();
		else
			cpu_relax();
		if (pol->d_yield || (++i & 63) == 0) {
			now = bench_now();
			if (now > deadline)
				return -ETIMEDOUT;
		}
	}
	for (;;) {
		uint32_t r = __atomic_load_n(&s->resp, __ATOMIC_ACQUIRE);

		if (r == seq)
			return 0;
		if (bench_now() > deadline)
			return -ETIMEDOUT;
		/* a full barrier (an RMW, see wait_request()), pairs with the
		 * worker's seq_cst store of resp */
		__atomic_exchange_n(&m->drv_sleeping, 1, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(&s->resp, __ATOMIC_ACQUIRE) == r)
			futex_wait(&s->resp, r, CB_NAP_NS);
		__atomic_store_n(&m->drv_sleeping, 0, __ATOMIC_RELAXED);
	}
}

/* Stop every worker, wait up to CB_REAP_NS, then SIGKILL the rest by pid. */
static void reap(struct cb_shm *m, pid_t *pid, unsigned n)
{
	uint64_t until = bench_now() + CB_REAP_NS;
	unsigned left = 0;

	__atomic_store_n(&m->stop, 1, __ATOMIC_SEQ_CST);
	for (unsigned k = 0; k < n; k++) {
		__atomic_fetch_add(&m->slot[k].bell, 1, __ATOMIC_SEQ_CST);
		futex_wake(&m->slot[k].bell);
	}
	do {
		left = 0;
		for (unsigned k = 0; k < n; k++) {
			if (pid[k] <= 0)
				continue;
			if (waitpid(pid[k], NULL, WNOHANG) == pid[k])
				pid[k] = 0;
			else
				left++;
		}
		if (left)
			usleep(1000);
	} while (left && bench_now() < until);
	for (unsigned k = 0; k < n; k++)
		if (pid[k] > 0) {
			kill(pid[k], SIGKILL);
			waitpid(pid[k], NULL, 0);
			pid[k] = 0;
		}
}

int bench_cb_run(const struct bench_cb_policy *pol, unsigned nw, size_t size,
		 size_t calls, uint64_t budget_ns, uint64_t *lat,
		 struct bench_res *r)
{
	size_t map = sizeof(struct cb_shm) + size, warm = calls / 10;
	pid_t pid[CB_MAX_WORKERS] = {0}, parent = getpid();
	struct keeper kp[2] = {{.cpu = 0}, {.cpu = 1}};
	uint32_t kstop = 0;
	cpu_set_t saved;
	struct cb_shm *m;
	uint64_t t0 = 0;
	size_t done = 0;
	int ret = 0;

	memset(r, 0, sizeof(*r));
	if (!nw || nw > CB_MAX_WORKERS)
		return -EINVAL;
	if ((pol->keeper || pol->pin) && sysconf(_SC_NPROCESSORS_ONLN) < 2)
		return -ENOSYS;
	if (sched_getaffinity(0, sizeof(cb_online), &cb_online))
		return -errno;
	m = mmap(NULL, map, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		 -1, 0);
	if (m == MAP_FAILED)
		return -errno;
	fflush(NULL); /* nothing buffered is inherited twice */
	for (unsigned k = 0; k < nw; k++) {
		pid[k] = fork();
		if (pid[k] == 0)
			worker(m, k, size, pol, parent);
		if (pid[k] < 0) {
			ret = -errno;
			pid[k] = 0;
			goto out_reap;
		}
	}
	if (pol->pin == 1 || pol->pin == 2) {
		sched_getaffinity(0, sizeof(saved), &saved);
		pin_to(pol->pin == 2 ? 1 : 0);
	}
	for (int c = 0; c < 2 && pol->keeper; c++) {
		kp[c].stop = &kstop;
		kp[c].started = !pthread_create(&kp[c].t, NULL, keep, &kp[c]);
	}
	for (size_t i = 0; i < warm + calls; i++) {
		uint32_t seq = (uint32_t)i + 1;
		uint64_t s0 = bench_now();
		uint64_t want = (uint64_t)(seq & 0xff) * size;

		if (i == warm)
			t0 = s0;
		/* the payload is written for every call, like a real one */
		memset(m->data, (int)(seq & 0xff), size);
		if (pol->place)
			__atomic_store_n(&m->drv_cpu, (uint32_t)sched_getcpu(),
					 __ATOMIC_RELAXED);
		for (unsigned k = 0; k < nw; k++) {
			struct cb_slot *s = &m->slot[k];

			/* seq_cst: the fence before kick() reads sleeping */
			__atomic_store_n(&s->req, seq, __ATOMIC_SEQ_CST);
			kick(s);
			if (pol->prewake && nw > 1)
				kick(&m->slot[(k + 1) % nw]);
			ret = wait_answer(m, s, seq, pol,
					  bench_now() + CB_HOP_DEADLINE_NS);
			if (ret)
				goto out_stop;
			if (!pol->no_touch && s->sum != want) {
				ret = -EIO;
				goto out_stop;
			}
		}
		if (i < warm)
			continue;
		lat[done++] = bench_now() - s0;
		/* a slow policy stops early, with enough samples for a p99 */
		if (done >= CB_MIN_CALLS && budget_ns &&
		    bench_now() - t0 > budget_ns)
			break;
	}
	bench_stats(lat, done, bench_now() - t0, r);
out_stop:
	__atomic_store_n(&kstop, 1, __ATOMIC_RELAXED);
	for (int c = 0; c < 2; c++)
		if (kp[c].started)
			pthread_join(kp[c].t, NULL);
	if (pol->pin == 1 || pol->pin == 2)
		sched_setaffinity(0, sizeof(saved), &saved);
out_reap:
	reap(m, pid, nw);
	munmap(m, map);
	return ret;
}

int bench_cb_parse(const char *spec, struct bench_cb_policy *pol)
{
	static const struct {
		const char *key;
		size_t off;
		int wide; /* uint32_t field, else a uint8_t flag */
	} keys[] = {
		{"wspin", offsetof(struct bench_cb_policy, w_spin_ns), 1},
		{"wyield", offsetof(struct bench_cb_policy, w_yield), 0},
		{"wnever", offsetof(struct bench_cb_policy, w_never_sleep), 0},
		{"wwake", offsetof(struct bench_cb_policy, w_wake_spin_ns), 1},
		{"dspin", offsetof(struct bench_cb_policy, d_spin_ns), 1},
		{"dyield", offsetof(struct bench_cb_policy, d_yield), 0},
		{"prewake", offsetof(struct bench_cb_policy, prewake), 0},
		{"keeper", offsetof(struct bench_cb_policy, keeper), 0},
		{"pin", offsetof(struct bench_cb_policy, pin), 0},
		{"place", offsetof(struct bench_cb_policy, place), 0},
		{"notouch", offsetof(struct bench_cb_policy, no_touch), 0},
	};
	char buf[256], *save = NULL, *tok;

	memset(pol, 0, sizeof(*pol));
	pol->name = "custom";
	if (strlen(spec) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, spec);
	for (tok = strtok_r(buf, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '='), *end;
		unsigned long v;
		size_t k;

		if (!eq)
			return -EINVAL;
		*eq = 0;
		errno = 0;
		v = strtoul(eq + 1, &end, 10);
		if (errno || *end || end == eq + 1 || v > UINT32_MAX)
			return -EINVAL;
		for (k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
			if (!strcmp(tok, keys[k].key))
				break;
		if (k == sizeof(keys) / sizeof(keys[0]) ||
		    (!keys[k].wide && v > 3))
			return -EINVAL;
		if (keys[k].wide)
			*(uint32_t *)((char *)pol + keys[k].off) = (uint32_t)v;
		else
			*((uint8_t *)pol + keys[k].off) = (uint8_t)v;
	}
	return 0;
}
