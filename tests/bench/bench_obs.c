// SPDX-License-Identifier: MIT
/*
 * What observing costs: the probes of bus/obs.h timed in a tight loop, as a
 * chain runner uses them, with nothing attached, with the batched program
 * the collector uses, and with the per-call program. Three ways to record a
 * call are timed, because on a VM the clock is the expensive part:
 *
 *   stamps   pbus__obs_call_at() with the caller's own latency and end
 *            stamp (a bus that reads the clock for deadlines and spinning
 *            anyway): no clock read for observability at all
 *   coarse   pbus__obs_call() with a known latency: the batch age is read
 *            from CLOCK_MONOTONIC_COARSE
 *   timed    the caller reads CLOCK_MONOTONIC twice, only because a probe
 *            wants the latency (pbus__obs_clock() before, now after)
 *
 * One thread; each row runs REPS times and the median run is reported. The
 * attached rows check the maps afterwards, so a row cannot report the cost
 * of probes that never fired.
 */
#include "bench_obs.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <bpf/libbpf.h>

#include "../../probes/collector.h"
#include "obs.h"

#define REPS 5

enum kind { K_EMPTY, K_STAMPS, K_COARSE, K_TIMED };

static const char *const kind_names[] = {
	[K_EMPTY] = "-",
	[K_STAMPS] = "stamps",
	[K_COARSE] = "coarse",
	[K_TIMED] = "timed",
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int quiet(enum libbpf_print_level lvl, const char *fmt, va_list ap)
{
	(void)lvl;
	(void)fmt;
	(void)ap;
	return 0;
}

int pbus_bench_obs_attach(enum pbus_bench_obs_mode mode, struct pbus_obs **out,
			  char *err, size_t errlen)
{
	struct pbus_obs_opts o = {.per_call = mode == PBUS_BENCH_OBS_PER_CALL};
	char target[PATH_MAX];
	struct pbus_obs *obs;
	int ret;

	*out = NULL;
	if (mode == PBUS_BENCH_OBS_DETACHED)
		return 0;
	libbpf_set_print(quiet);
	ret = pbus_obs_open(&o, &obs, err, errlen);
	if (ret)
		return ret;
	ret = pbus_obs_target(getpid(), target, sizeof(target));
	if (!ret)
		ret = pbus_obs_attach(obs, getpid(), target, err, errlen);
	if (ret) {
		pbus_obs_close(obs);
		return ret;
	}
	*out = obs;
	return 0;
}

void pbus_bench_obs_detach(struct pbus_obs *obs)
{
	pbus_obs_close(obs);
}

/* @n records of kind @k; returns the elapsed ns. */
static __attribute__((noinline)) uint64_t run(enum kind k, uint64_t n)
{
	uint64_t t = now_ns(), base = t;

	for (uint64_t i = 0; i < n; i++) {
		uint32_t p = (uint32_t)i & 7, h = ((uint32_t)i >> 3) & 7;
		uint64_t t0, t1;

		switch (k) {
		case K_EMPTY:
			__asm__ __volatile__("" ::"r"(p), "r"(h) : "memory");
			break;
		case K_STAMPS:
			pbus__obs_call_at(p, h, PBUS_OUTCOME_OK, 300, base + i);
			break;
		case K_COARSE:
			pbus__obs_call(p, h, PBUS_OUTCOME_OK, 300);
			break;
		case K_TIMED:
			t0 = pbus__obs_clock();
			t1 = t0 ? pbus__now_ns() : 0;
			pbus__obs_call_at(p, h, PBUS_OUTCOME_OK, t1 - t0, t1);
			break;
		}
	}
	pbus__obs_flush();
	return now_ns() - t;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Median ns/record over REPS runs of @n; -1 when the maps disagree. */
static double measure(enum kind k, uint64_t n, struct pbus_obs *obs)
{
	struct pbus_obs_snap s = {0};
	uint64_t t[REPS], before = 0, after, warm = n / 10 + 1;

	if (obs && !pbus_obs_read(obs, &s))
		before = s.totals.records + s.totals.calls;
	run(k, warm); /* first batch allocation, page faults */
	for (int r = 0; r < REPS; r++)
		t[r] = run(k, n);
	if (obs) {
		int ret = pbus_obs_read(obs, &s);

		after = s.totals.records + s.totals.calls;
		pbus_obs_snap_fini(&s);
		if (ret || after - before != warm + REPS * n)
			return -1;
	}
	qsort(t, REPS, sizeof(t[0]), cmp_u64);
	return (double)t[REPS / 2] / (double)n;
}

static void row(FILE *out, const char *setting, enum kind k, double ns,
		double base, uint64_t n)
{
	if (ns < 0) {
		fprintf(out, "  %-22s %-7s %10s   the maps missed calls\n",
			setting, kind_names[k], "-");
		return;
	}
	if (k == K_EMPTY) {
		fprintf(out, "  %-22s %-7s %10.2f %10s %10s %11llu\n", setting,
			kind_names[k], ns, "-", "-", (unsigned long long)n);
		return;
	}
	fprintf(out, "  %-22s %-7s %10.2f %+10.2f %9.1f%% %11llu\n", setting,
		kind_names[k], ns, ns - base, (ns - base) / 3.0,
		(unsigned long long)n);
}

int pbus_bench_obs(FILE *out, int quick)
{
	uint64_t n_fast = quick ? 2000000 : 20000000;
	uint64_t n_slow = quick ? 50000 : 500000;
	char err[PBUS_OBS_ERR_MAX];
	struct pbus_obs *obs;
	double base, ns;
	int ret;

	fprintf(out,
		"\nobservability probes: cost of recording one plugin call "
		"(pid %d, %s, median of %d runs; %% of a 0.3 us round trip)\n",
		(int)getpid(), quick ? "quick" : "full", REPS);
	fprintf(out, "  %-22s %-7s %10s %10s %10s %11s\n", "setting", "record",
		"ns/call", "+ns", "+%rt", "calls");
	row(out, "loop without probes", K_EMPTY, measure(K_EMPTY, n_fast, NULL),
	    0, n_fast);
	base = measure(K_STAMPS, n_fast, NULL);
	row(out, "detached", K_STAMPS, base, base, n_fast);
	row(out, "detached", K_TIMED, measure(K_TIMED, n_fast, NULL), base,
	    n_fast);

	ret = pbus_bench_obs_attach(PBUS_BENCH_OBS_BATCH, &obs, err,
				    sizeof(err));
	if (ret) {
		fprintf(out, "  attached rows skipped: %s\n", err);
		return 0;
	}
	for (enum kind k = K_STAMPS; k <= K_TIMED; k++)
		row(out, "pbus:batch attached", k, measure(k, n_fast, obs),
		    base, n_fast);
	pbus_bench_obs_detach(obs);

	ret = pbus_bench_obs_attach(PBUS_BENCH_OBS_PER_CALL, &obs, err,
				    sizeof(err));
	if (ret) {
		fprintf(out, "  per-call row skipped: %s\n", err);
		return 0;
	}
	ns = measure(K_STAMPS, n_slow, obs);
	row(out, "pbus:call attached", K_STAMPS, ns, base, n_slow);
	pbus_bench_obs_detach(obs);
	fprintf(out,
		"  (+ns and +%%rt are over 'detached stamps'; a "
		"pbus:batch fires once per %u records)\n",
		PBUS_OBS_BATCH);
	return 0;
}
