/* SPDX-License-Identifier: MIT */
/*
 * The physical floor of a plugin chain, for pbus-bench's chain benchmark: a
 * driver (the calling thread) hands a payload to N worker processes in turn
 * through shared memory and futexes, with no pbus code at all. A policy says
 * how each side waits (poll, sched_yield, sleep), so the same code measures
 * the baseline and the wait-policy experiments.
 */
#ifndef PBUS_BENCH_CHAIN_BASE_H
#define PBUS_BENCH_CHAIN_BASE_H

#include <stddef.h>
#include <stdint.h>

#include "bench.h"

/*
 * How driver and workers wait. All zeros: both sleep at once. "Poll" means
 * a pause between two looks, or a sched_yield() with the yield flags.
 */
struct bench_cb_policy {
	const char *name;
	/* worker: poll this long for a request after an answer, then sleep */
	uint32_t w_spin_ns;
	/* worker woken with no request (a prewake): poll this long (0: as
	 * w_spin_ns), since the request is on its way */
	uint32_t w_wake_spin_ns;
	/* driver: poll this long for an answer, then sleep */
	uint32_t d_spin_ns;
	uint8_t w_yield;       /* worker: sched_yield() between polls */
	uint8_t w_never_sleep; /* worker: poll forever (deadlines still kept) */
	uint8_t d_yield;       /* driver: sched_yield() between polls */
	uint8_t prewake;       /* driver: wake worker k+1 when handing to k */
	uint8_t keeper;	       /* a SCHED_IDLE poller per CPU: no vCPU halts */
	/* 0: no pinning; else workers on CPU 1 and the driver on CPU 0 (1),
	 * on CPU 1 too (2), or free (3) */
	uint8_t pin;
	/* per request, a worker moves itself onto the driver's CPU (1) or
	 * off it (2), as an agent could from its request descriptor */
	uint8_t place;
	uint8_t no_touch; /* workers do not read the payload */
};

/*
 * Run @calls chains (plus a tenth as warm-up) through @nw fresh worker
 * processes waiting as @pol says; each worker reads every byte of the
 * @size-byte payload (unless pol->no_touch) and answers with its sum, which
 * the driver checks. A run that passes @budget_ns (0: none) stops early once
 * it has 50 samples. @lat holds at least @calls entries; @r gets the chain
 * latency (r->n: the calls timed). Every wait has a deadline and every worker
 * is reaped (killed if need be) before returning. Returns 0, or -errno
 * (-ETIMEDOUT: a hop took over a second, -EIO: a wrong answer, -ENOSYS: @pol
 * needs 2 CPUs).
 */
int bench_cb_run(const struct bench_cb_policy *pol, unsigned nw, size_t size,
		 size_t calls, uint64_t budget_ns, uint64_t *lat,
		 struct bench_res *r);

/*
 * Parse
 * "wspin=NS,wyield=0|1,wnever=0|1,wwake=NS,dspin=NS,dyield=0|1,prewake=0|1,
 * keeper=0|1,pin=0..3,place=0..2,notouch=0|1" (any subset, in any order) into
 * @pol, starting from all zeros. Returns 0 or -EINVAL.
 */
int bench_cb_parse(const char *spec, struct bench_cb_policy *pol);

#endif
