// SPDX-License-Identifier: MIT
/*
 * Futex wrappers. Every futex pbus uses lives in memory shared between
 * processes, so none of these use FUTEX_PRIVATE_FLAG. Waits take an absolute
 * CLOCK_MONOTONIC deadline (FUTEX_WAIT_BITSET), so a retry after a spurious
 * wake-up never extends the wait.
 *
 * On x86-64 the system call is made in line, without libc's syscall() and
 * errno: a round trip to a sleeping agent makes two of these, and libc's
 * wrapper is two more cache lines and a page for a caller whose caches went
 * cold while it slept (see PBUS_HOT in internal.h).
 */
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

/* futex(2) with up to 6 arguments; returns the result or -errno */
static inline long futex6(uint32_t *word, int op, uint32_t val,
			  const struct timespec *ts, uint32_t *word2,
			  uint32_t val3)
{
#if defined(__x86_64__)
	register long r10 __asm__("r10") = (long)ts;
	register long r8 __asm__("r8") = (long)word2;
	register long r9 __asm__("r9") = (long)val3;
	long rc;

	__asm__ __volatile__("syscall"
			     : "=a"(rc)
			     : "0"((long)SYS_futex), "D"(word), "S"((long)op),
			       "d"((long)val), "r"(r10), "r"(r8), "r"(r9)
			     : "rcx", "r11", "memory");
	return rc;
#else
	long rc = syscall(SYS_futex, word, op, val, ts, word2, val3);

	return rc < 0 ? -errno : rc;
#endif
}

PBUS_HOT int pbus__futex_wait(uint32_t *word, uint32_t val,
			      uint64_t deadline_ns)
{
	struct timespec ts, *tsp = NULL;
	long rc;

	if (deadline_ns) {
		ts.tv_sec = (time_t)(deadline_ns / 1000000000ull);
		ts.tv_nsec = (long)(deadline_ns % 1000000000ull);
		tsp = &ts;
	}
	rc = futex6(word, FUTEX_WAIT_BITSET, val, tsp, NULL,
		    FUTEX_BITSET_MATCH_ANY);
	if (rc == 0 || rc == -EAGAIN) /* woken, or the value had changed */
		return 0;
	return (int)rc;
}

PBUS_HOT int pbus__futex_wake(uint32_t *word, int n)
{
	return (int)futex6(word, FUTEX_WAKE, (uint32_t)n, NULL, NULL, 0);
}
