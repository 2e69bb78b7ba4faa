// SPDX-License-Identifier: MIT
/*
 * Futex wrappers. Every futex pbus uses lives in memory shared between
 * processes, so none of these use FUTEX_PRIVATE_FLAG. Waits take an absolute
 * CLOCK_MONOTONIC deadline (FUTEX_WAIT_BITSET), so a retry after a spurious
 * wake-up never extends the wait.
 */
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

int pbus__futex_wait(uint32_t *word, uint32_t val, uint64_t deadline_ns)
{
	struct timespec ts, *tsp = NULL;
	long rc;

	if (deadline_ns) {
		ts.tv_sec = (time_t)(deadline_ns / 1000000000ull);
		ts.tv_nsec = (long)(deadline_ns % 1000000000ull);
		tsp = &ts;
	}
	rc = syscall(SYS_futex, word, FUTEX_WAIT_BITSET, val, tsp, NULL,
		     FUTEX_BITSET_MATCH_ANY);
	if (rc == 0)
		return 0;
	if (errno == EAGAIN)
		return 0; /* value already changed */
	return -errno;
}

int pbus__futex_wake(uint32_t *word, int n)
{
	long rc = syscall(SYS_futex, word, FUTEX_WAKE, n, NULL, NULL, 0);

	return rc < 0 ? -errno : (int)rc;
}
