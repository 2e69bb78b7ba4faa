// SPDX-License-Identifier: MIT
/*
 * Plugin-chain benchmark (issue #3: plugin manager): chains of 1, 5, 10 and
 * 20 passthrough plugins, each in its own agent, on a 1 KiB tool_pre_invoke
 * payload under continuous load; and a band of 4 plugins that each take
 * ~1 ms, run with parallel bands on and off. Also the hot 64 B round trip
 * through a one-plugin chain with no collector, the batch collector and the
 * per-call probe attached (issue: observability).
 *
 * Next to each chain length, measured in the same run right after pbus, two
 * baselines with no pbus code (bench_chain_base.c): N worker processes
 * served one after the other by a driver thread through shared memory,
 *   futex  both sides poll briefly, then FUTEX_WAIT (wake only a sleeper)
 *   spin   both sides poll with sched_yield() between polls, never sleep
 * so a reader sees what a sequential chain of separate processes costs on
 * this machine at all. Then a table of wait-policy experiments on the same
 * baseline (who polls, who yields, who sleeps, prewaking the next worker,
 * placement), the figures that guide the bus's wait policy in chains.
 *
 * PBUS_BENCH_CHAIN_BASE=spec (see bench_cb_parse()) times only that one
 * baseline policy for N = 1, 2, 3, 5, 10, 15 and 20, for trying a new idea.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <pbus/pbus.h>

#include "bench.h"
#include "bench_chain_base.h"
#include "bench_obs.h"

static int open_chain(const char *bindir, unsigned n, const char *extra,
		      int parallel, int same_prio, struct pbus_config **cfg,
		      struct pbus_mgr **m)
{
	static char yaml[65536];
	struct pbus_mgr_opts o = {0};
	struct pbus_diag d = {0};
	char sock[108];
	size_t k;
	int ret;

	k = (size_t)snprintf(yaml, sizeof(yaml),
			     "plugin_settings:\n"
			     "  parallel_execution_within_band: %s\n"
			     "  plugin_timeout: 10\n"
			     "plugins:\n",
			     parallel ? "true" : "false");
	for (unsigned i = 0; i < n; i++)
		k += (size_t)snprintf(yaml + k, sizeof(yaml) - k,
				      "  - name: p%u\n"
				      "    kind: agent\n"
				      "    hooks: [tool_pre_invoke]\n"
				      "    priority: %u\n"
				      "    command: [%s/pbus-passthrough%s]\n",
				      i, same_prio ? 10 : 10 + i, bindir,
				      extra);
	ret = pbus_config_parse(yaml, k, "bench.yaml", &d, cfg);
	if (ret)
		return ret;
	snprintf(sock, sizeof(sock), "/tmp/pbus-bench-chain-%d.sock",
		 (int)getpid());
	o.sock_path = sock;
	ret = pbus_mgr_open(*cfg, &o, m);
	if (ret) {
		pbus_config_destroy(*cfg);
		return ret;
	}
	ret = pbus_mgr_wait_ready(*m, 10000);
	if (ret) {
		pbus_mgr_close(*m);
		pbus_config_destroy(*cfg);
	}
	return ret;
}

/* {name: "search", args: {q: "<size bytes>"}} */
static void payload(msgpack_sbuffer *sb, size_t size)
{
	msgpack_packer pk;
	char *q = malloc(size);

	memset(q, 'x', size);
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 2);
	pbus_mp_pack_cstr(&pk, "name");
	pbus_mp_pack_cstr(&pk, "search");
	pbus_mp_pack_cstr(&pk, "args");
	msgpack_pack_map(&pk, 1);
	pbus_mp_pack_cstr(&pk, "q");
	pbus_mp_pack_strn(&pk, q, size > 30 ? size - 30 : 1);
	free(q);
}

static int run_chains(struct pbus_mgr *m, const msgpack_sbuffer *sb, size_t n,
		      uint64_t *lat, struct bench_res *r)
{
	struct pbus_gctx g = {.request_id = "bench", .user = "alice"};
	struct pbus_request *rq;
	struct pbus_outcome out;
	uint64_t t0;
	int ret = pbus_request_create(m, &g, &rq);

	if (ret)
		return ret;
	for (size_t i = 0; i < n / 10; i++) /* warm-up */
		pbus_run(m, rq, PBUS_HOOK_TOOL_PRE_INVOKE, sb->data, sb->size,
			 &out);
	t0 = bench_now();
	for (size_t i = 0; i < n; i++) {
		uint64_t s = bench_now();

		ret = pbus_run(m, rq, PBUS_HOOK_TOOL_PRE_INVOKE, sb->data,
			       sb->size, &out);
		if (ret || !out.continue_processing) {
			ret = ret ? ret : -EIO;
			break;
		}
		lat[i] = bench_now() - s;
	}
	bench_stats(lat, ret ? 0 : n, bench_now() - t0, r);
	pbus_request_destroy(rq);
	pbus_mgr_flush_stats();
	return ret;
}

/* PBUS_BENCH_CHAIN_BASE=spec: time only that baseline policy. */
static int custom_base(FILE *out, const char *spec, int quick)
{
	static const unsigned lens[] = {1, 2, 3, 5, 10, 15, 20};
	size_t n = quick ? 3000 : 30000;
	uint64_t *lat = calloc(n + 200, sizeof(*lat));
	struct bench_cb_policy pol;
	int ret = bench_cb_parse(spec, &pol);

	if (ret || !lat) {
		fprintf(stderr, "pbus-bench: bad PBUS_BENCH_CHAIN_BASE '%s'\n",
			spec);
		free(lat);
		return -EINVAL;
	}
	fprintf(out, "chain baseline, policy %s\n", spec);
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		struct bench_res r;

		ret = bench_cb_run(&pol, lens[i], 1024, n / lens[i] + 200,
				   2000000000ull, lat, &r);
		if (ret)
			fprintf(out, "  N=%-2u  %s\n", lens[i], strerror(-ret));
		else
			fprintf(out,
				"  N=%-2u  p50 %8.2f us  p99 %8.2f us  "
				"per hop %6.2f us\n",
				lens[i], r.p50, r.p99, r.p50 / lens[i]);
	}
	free(lat);
	return 0;
}

/* ---------------------------------------------------------------- policies */

#define FOREVER UINT32_MAX /* a spin budget that never runs out */

/* The baselines of the main table. */
static const struct bench_cb_policy base_futex = {
	.name = "futex",
	.w_spin_ns = 5000,  /* a worker polls 5 us after its answer */
	.d_spin_ns = 20000, /* the driver polls 20 us for an answer */
};
static const struct bench_cb_policy base_spin = {
	.name = "spin",
	.w_yield = 1,
	.w_never_sleep = 1,
	.d_yield = 1,
	.d_spin_ns = FOREVER,
};

/*
 * The wait-policy experiments. "Spins" polls with pause, "yield-polls"
 * calls sched_yield() between polls. "Follow" and "avoid": a worker moves
 * itself (affinity) onto or off the CPU the driver handed the call over
 * from, as an agent could from the caller CPU in its request descriptor;
 * "pinned" is the same split fixed by hand (driver CPU 0, workers CPU 1).
 */
static const struct bench_cb_policy exps[] = {
	{.name = "a both sleep at once (FUTEX_WAKE, then FUTEX_WAIT)"},
	{.name = "b driver spins, workers sleep at once", .d_spin_ns = FOREVER},
	{.name = "c driver yield-polls, workers sleep at once",
	 .d_yield = 1,
	 .d_spin_ns = FOREVER},
	{.name = "d driver spins, workers spin 10 us after answering",
	 .w_spin_ns = 10000,
	 .d_spin_ns = FOREVER},
	{.name = "e driver spins, workers yield-poll 10 us",
	 .w_spin_ns = 10000,
	 .w_yield = 1,
	 .d_spin_ns = FOREVER},
	{.name = "f driver spins, workers yield-poll, never sleep",
	 .w_yield = 1,
	 .w_never_sleep = 1,
	 .d_spin_ns = FOREVER},
	{.name = "g b + a SCHED_IDLE poller per CPU (no vCPU halts)",
	 .d_spin_ns = FOREVER,
	 .keeper = 1},
	{.name = "h c + a SCHED_IDLE poller per CPU",
	 .d_yield = 1,
	 .d_spin_ns = FOREVER,
	 .keeper = 1},
	{.name = "i workers follow driver's CPU, sleep; driver sleeps",
	 .place = 1},
	{.name = "j workers follow, sleep at once; driver spins",
	 .d_spin_ns = FOREVER,
	 .place = 1},
	{.name = "k workers follow, sleep at once; driver yield-polls",
	 .d_yield = 1,
	 .d_spin_ns = FOREVER,
	 .place = 1},
	{.name = "l workers avoid driver's CPU, sleep; driver spins",
	 .d_spin_ns = FOREVER,
	 .place = 2},
	{.name = "m workers avoid, yield-poll 5 us; driver spins",
	 .w_spin_ns = 5000,
	 .w_yield = 1,
	 .d_spin_ns = FOREVER,
	 .place = 2},
	{.name = "n l + prewake k+1 (woken, it yield-polls <= 100 us)",
	 .w_wake_spin_ns = 100000,
	 .w_yield = 1,
	 .d_spin_ns = FOREVER,
	 .place = 2,
	 .prewake = 1},
	{.name = "o n, pinned: driver on CPU 0, workers on CPU 1",
	 .w_wake_spin_ns = 100000,
	 .w_yield = 1,
	 .d_spin_ns = FOREVER,
	 .pin = 1,
	 .prewake = 1},
};
#define NEXP (sizeof(exps) / sizeof(exps[0]))

/* Two processes on one CPU handing it back and forth with sched_yield(). */
static const struct bench_cb_policy switch_floor = {
	.name = "switch",
	.w_yield = 1,
	.w_never_sleep = 1,
	.d_yield = 1,
	.d_spin_ns = FOREVER,
	.pin = 2,
	.no_touch = 1,
};

static const unsigned xlens[] = {1, 2, 5, 10, 20};
#define NX (sizeof(xlens) / sizeof(xlens[0]))
#define REPS_MAX 3

struct exp_res {
	double hop[NX]; /* chain p50 / N, us */
	double added;	/* (p50 at 20 - p50 at 1) / 19, us */
	double p99;	/* chain p99 at 20, us */
	int err;	/* -errno of the first failed run */
};

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_dbl);
	return v[n / 2];
}

/*
 * Every experiment at every length, @reps times (interleaved, so a burst of
 * noise from other work on the machine does not hit all of one policy's
 * runs), keeping the median of each figure. Slow policies stop early.
 */
static void run_exps(int quick, uint64_t *lat, struct exp_res *er,
		     double *switch_us)
{
	int reps = quick ? 1 : REPS_MAX;
	size_t n = quick ? 3000 : 30000;
	uint64_t budget = quick ? 200000000ull : 500000000ull;
	double hop[NEXP][NX][REPS_MAX], p99[NEXP][REPS_MAX], sw[REPS_MAX];
	double added[NEXP][REPS_MAX];

	memset(er, 0, NEXP * sizeof(*er));
	for (int rep = 0; rep < reps; rep++) {
		struct bench_res r;

		if (bench_cb_run(&switch_floor, 1, 1024, n, budget, lat, &r))
			r.p50 = 0;
		sw[rep] = r.p50 / 2; /* driver -> worker -> driver */
		for (size_t e = 0; e < NEXP; e++) {
			for (size_t i = 0; i < NX; i++) {
				int ret = bench_cb_run(&exps[e], xlens[i], 1024,
						       n / (4 * xlens[i]) + 100,
						       budget, lat, &r);

				if (ret && !er[e].err)
					er[e].err = ret;
				hop[e][i][rep] = r.p50 / xlens[i];
			}
			/* xlens[0] = 1, xlens[NX - 1] = 20 */
			added[e][rep] =
				(hop[e][NX - 1][rep] * 20 - hop[e][0][rep]) /
				19;
			p99[e][rep] = r.p99;
		}
	}
	for (size_t e = 0; e < NEXP; e++) {
		for (size_t i = 0; i < NX; i++)
			er[e].hop[i] = median(hop[e][i], reps);
		er[e].added = median(added[e], reps);
		er[e].p99 = median(p99[e], reps);
	}
	*switch_us = median(sw, reps);
}

/* ---------------------------------------------------------------- table */

/* "p50 p99 /hop added" of one chain length; @p1: p50 at one plugin. */
static void cols(FILE *out, const struct bench_res *r, unsigned len, double p1)
{
	if (!r->n) {
		fprintf(out, " %8s %8s %6s %6s |", "-", "-", "-", "-");
		return;
	}
	fprintf(out, " %8.2f %8.2f %6.2f %6.2f |", r->p50, r->p99, r->p50 / len,
		len > 1 ? (r->p50 - p1) / (len - 1) : r->p50);
}

static double added20(const struct bench_res *r)
{
	return r[3].n && r[0].n ? (r[3].p50 - r[0].p50) / 19 : 0;
}

int bench_chain(FILE *out, const char *bindir, int quick)
{
	static const unsigned lens[] = {1, 5, 10, 20};
	size_t n = quick ? 3000 : 30000, nobs = quick ? 20000 : 200000;
	uint64_t *lat = calloc(nobs + n + 200, sizeof(*lat));
	struct bench_res r[4], fx[4], sp[4], band[2], obs[3];
	struct exp_res er[NEXP];
	const struct exp_res *best = NULL;
	double switch_us = 0;
	msgpack_sbuffer sb, small;
	struct pbus_config *cfg;
	struct pbus_mgr *m;
	int ret = 0;

	if (getenv("PBUS_BENCH_CHAIN_BASE")) {
		free(lat);
		return custom_base(out, getenv("PBUS_BENCH_CHAIN_BASE"), quick);
	}
	msgpack_sbuffer_init(&sb);
	msgpack_sbuffer_init(&small);
	payload(&sb, 1024);
	payload(&small, 64);
	memset(r, 0, sizeof(r));
	for (int i = 0; i < 4; i++) {
		size_t calls = n / lens[i] + 200;

		ret = open_chain(bindir, lens[i], "", 0, 0, &cfg, &m);
		if (ret)
			goto out;
		run_chains(m, &sb, calls, lat, &r[i]);
		pbus_mgr_close(m);
		pbus_config_destroy(cfg);
		/* the baselines right after, in the same conditions ("|":
		 * the second runs even when the first failed) */
		if (bench_cb_run(&base_futex, lens[i], 1024, calls,
				 2000000000ull, lat, &fx[i]) |
		    bench_cb_run(&base_spin, lens[i], 1024, calls,
				 2000000000ull, lat, &sp[i]))
			fprintf(stderr,
				"pbus-bench: chain baseline failed at "
				"%u workers\n",
				lens[i]);
	}
	run_exps(quick, lat, er, &switch_us);
	/* the fastest hop at 20 processes (added/hop can mislead when the
	 * one-worker run of a policy is the slow one) */
	for (size_t e = 0; e < NEXP; e++)
		if (!er[e].err && er[e].hop[NX - 1] > 0 &&
		    (!best || er[e].hop[NX - 1] < best->hop[NX - 1]))
			best = &er[e];
	for (int par = 0; par < 2; par++) {
		ret = open_chain(bindir, 4, ", --delay-us, 1000", par, 1, &cfg,
				 &m);
		if (ret)
			goto out;
		run_chains(m, &sb, quick ? 100 : 500, lat, &band[par]);
		pbus_mgr_close(m);
		pbus_config_destroy(cfg);
	}
	memset(obs, 0, sizeof(obs));
	ret = open_chain(bindir, 1, "", 0, 0, &cfg, &m);
	if (ret)
		goto out;
	for (int mode = 0; mode < 3; mode++) {
		struct pbus_obs *o = NULL;
		char err[256] = "";

		if (pbus_bench_obs_attach((enum pbus_bench_obs_mode)mode, &o,
					  err, sizeof(err))) {
			fprintf(out, "  (probe mode %d skipped: %s)\n", mode,
				err);
			continue;
		}
		run_chains(m, &small, nobs, lat, &obs[mode]);
		pbus_bench_obs_detach(o);
	}
	pbus_mgr_close(m);
	pbus_config_destroy(cfg);

	fprintf(out,
		"\nplugin chains: 1 KiB tool_pre_invoke payload, each plugin a "
		"pbus-passthrough agent, continuous load\n"
		"baselines without pbus, same run: N worker processes served "
		"in turn through shared memory; each reads the 1 KiB\n"
		"(the pbus agents do not), so a baseline hop does slightly "
		"more work\n"
		"  futex: poll briefly (worker %u us after its answer, driver "
		"%u us), then FUTEX_WAIT\n"
		"  spin:  driver and workers poll with sched_yield() between "
		"polls, never sleep\n"
		"  /hop = p50 / N; added = (p50 - p50 at 1) / (N - 1)\n",
		base_futex.w_spin_ns / 1000, base_futex.d_spin_ns / 1000);
	fprintf(out, "%-7s | %-38s | %-31s | %-31s | %s\n", "", "pbus (us)",
		"futex baseline (us)", "spin baseline (us)", "pbus p50 /");
	fprintf(out,
		"%-7s | %8s %8s %6s %6s %6s | %8s %8s %6s %6s | %8s %8s %6s "
		"%6s | %6s %6s\n",
		"plugins", "p50", "p99", "kch/s", "/hop", "added", "p50", "p99",
		"/hop", "added", "p50", "p99", "/hop", "added", "futex",
		"spin");
	for (int i = 0; i < 4; i++) {
		fprintf(out, "%-7u | %8.2f %8.2f %6.1f %6.2f %6.2f |", lens[i],
			r[i].p50, r[i].p99, r[i].rate / 1000,
			r[i].p50 / lens[i],
			i ? (r[i].p50 - r[0].p50) / (lens[i] - 1) : r[0].p50);
		cols(out, &fx[i], lens[i], fx[0].p50);
		cols(out, &sp[i], lens[i], sp[0].p50);
		fprintf(out, " %6.2f %6.2f\n",
			fx[i].n ? r[i].p50 / fx[i].p50 : 0,
			sp[i].n ? r[i].p50 / sp[i].p50 : 0);
	}

	fprintf(out,
		"\nwait-policy experiments on the baseline (no pbus): p50 per "
		"hop (chain p50 / N) in us, median of %d runs\n",
		quick ? 1 : REPS_MAX);
	fprintf(out, "%-52s", "policy");
	for (size_t i = 0; i < NX; i++)
		fprintf(out, " %4s%-2u", "N=", xlens[i]);
	fprintf(out, " | %6s %9s\n", "added", "p99 @20");
	for (size_t e = 0; e < NEXP; e++) {
		fprintf(out, "%-52s", exps[e].name);
		for (size_t i = 0; i < NX; i++)
			fprintf(out, " %6.2f", er[e].hop[i]);
		fprintf(out, " | %6.2f %9.1f%s%s\n", er[e].added, er[e].p99,
			er[e].err ? "  " : "",
			er[e].err ? strerror(-er[e].err) : "");
	}
	fprintf(out,
		"one process switch on one CPU (2 processes, sched_yield "
		"ping-pong): %.2f us\n",
		switch_us);

	fprintf(out, "\nband of 4 plugins of equal priority, ~1 ms each "
		     "(usleep in the agent)\n");
	fprintf(out,
		"  parallel_execution_within_band: false  p50 %8.2f ms  "
		"p99 %8.2f ms\n",
		band[0].p50 / 1000, band[0].p99 / 1000);
	fprintf(out,
		"  parallel_execution_within_band: true   p50 %8.2f ms  "
		"p99 %8.2f ms  (%.2fx faster)\n",
		band[1].p50 / 1000, band[1].p99 / 1000,
		band[1].p50 > 0 ? band[0].p50 / band[1].p50 : 0);
	fprintf(out, "\nprobe cost: 64 B payload, one-plugin chain\n");
	for (int mode = 0; mode < 3; mode++) {
		static const char *const nm[] = {"no collector (detached)",
						 "collector attached (batch)",
						 "per-call probe attached"};

		if (!obs[mode].n)
			continue;
		fprintf(out, "  %-28s p50 %7.2f us  p99 %7.2f us  %+6.1f%%\n",
			nm[mode], obs[mode].p50, obs[mode].p99,
			obs[0].p50 > 0 ? 100.0 * (obs[mode].p50 - obs[0].p50) /
						 obs[0].p50
				       : 0);
	}
	fprintf(out, "\ntargets:\n");
	fprintf(out,
		"  %s added per plugin at p50 <= 1 us: pbus %.2f us at 20 "
		"plugins\n",
		added20(r) <= 1.0 ? "met" : "MISSED", added20(r));
	fprintf(out,
		"     floor of 20 separate processes here, added per hop at "
		"p50: futex baseline %.2f us, spin baseline %.2f us,\n"
		"     best wait policy (%.1s) %.2f us (%.2f us per hop); one "
		"process switch alone %.2f us:\n"
		"     <= 1 us per plugin with separate processes on this "
		"machine: %s\n",
		added20(fx), added20(sp), best ? exps[best - er].name : "-",
		best ? best->added : 0, best ? best->hop[NX - 1] : 0, switch_us,
		best && best->added <= 1.0 ? "reached by that policy"
					   : "reached by no policy tried");
	fprintf(out, "  %s band of 4 x 1 ms <= 1.3 ms with bands on: %.2f ms\n",
		band[1].p50 <= 1300 ? "met" : "MISSED", band[1].p50 / 1000);
out:
	if (ret)
		fprintf(stderr, "pbus-bench: chain benchmark: %s\n",
			strerror(-ret));
	msgpack_sbuffer_destroy(&sb);
	msgpack_sbuffer_destroy(&small);
	free(lat);
	return ret;
}
