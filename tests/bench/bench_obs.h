/* SPDX-License-Identifier: MIT */
/*
 * The cost of pbus's own probes (bus/obs.h), for pbus-bench. The probes are
 * in this very program (libpbus is linked in statically), so the benchmark
 * attaches the BPF program of probes/pbus.bpf.c to itself, without pinning
 * anything, and detaches before it returns. Needs root for the attached
 * rows; without it they are reported as skipped.
 */
#ifndef PBUS_BENCH_OBS_H
#define PBUS_BENCH_OBS_H

#include <stddef.h>
#include <stdio.h>

struct pbus_obs;

enum pbus_bench_obs_mode {
	PBUS_BENCH_OBS_DETACHED = 0, /* nothing attached: one branch a probe */
	PBUS_BENCH_OBS_BATCH = 1,    /* pbus:batch, what the collector uses */
	PBUS_BENCH_OBS_PER_CALL = 2, /* pbus:call, one trap per plugin call */
};

/*
 * N calls of pbus__obs_call() (with the clock reads a chain runner does)
 * with the probes detached, the batch program attached and the per-call
 * program attached; prints ns/call and ratios to @out. @quick: fewer
 * iterations. Returns 0, or -errno when even the detached run failed.
 */
int pbus_bench_obs(FILE *out, int quick);

/*
 * Attach the program to this process in @mode (for PBUS_BENCH_OBS_DETACHED
 * nothing is loaded and *out is NULL), so a caller can time its own hot
 * path under each setting. Returns 0 or -errno (message in @err).
 */
int pbus_bench_obs_attach(enum pbus_bench_obs_mode mode, struct pbus_obs **out,
			  char *err, size_t errlen);

/* Detach and unload. NULL is a no-op. */
void pbus_bench_obs_detach(struct pbus_obs *obs);

#endif
