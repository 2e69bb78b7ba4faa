/* SPDX-License-Identifier: MIT */
/*
 * Shared pieces of pbus-bench: timing and percentile statistics. Each
 * benchmark family lives in its own tests/bench/<x>.c and prints its own
 * table; bench.c's main runs them in order.
 */
#ifndef PBUS_BENCH_H
#define PBUS_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct bench_res {
	size_t n;
	double p50, p99, p999, max; /* microseconds */
	double rate;                /* calls per second */
};

uint64_t bench_now(void);
/* Sorts @lat (ns) in place and fills @r. */
void bench_stats(uint64_t *lat, size_t n, uint64_t wall_ns,
		 struct bench_res *r);

int bench_core(FILE *out, const char *bindir, int quick);
int bench_chain(FILE *out, const char *bindir, int quick);

#endif
