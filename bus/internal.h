/* SPDX-License-Identifier: MIT */
/*
 * Internal helpers shared by the library's files: logging, clocks, futexes,
 * CPU relax. Symbols here are pbus__* (hidden from the shared library).
 */
#ifndef PBUS_INTERNAL_H
#define PBUS_INTERNAL_H

#include <errno.h>
#include <stdint.h>
#include <time.h>

#include "pbus/diag.h"

#define PBUS_UNUSED __attribute__((unused))
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

__attribute__((format(printf, 2, 3))) void
pbus__log(enum pbus_log_level lvl, const char *fmt, ...);

#define pbus__err(...) pbus__log(PBUS_LOG_ERROR, __VA_ARGS__)
#define pbus__warn(...) pbus__log(PBUS_LOG_WARN, __VA_ARGS__)
#define pbus__info(...) pbus__log(PBUS_LOG_INFO, __VA_ARGS__)
#define pbus__debug(...) pbus__log(PBUS_LOG_DEBUG, __VA_ARGS__)

/* CLOCK_MONOTONIC in nanoseconds (vDSO: no syscall). */
static inline uint64_t pbus__now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline void pbus__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#else
	__asm__ __volatile__("" ::: "memory");
#endif
}

/*
 * Shared (not private) futex wait on @word while it equals @val, until the
 * absolute CLOCK_MONOTONIC @deadline_ns (0: forever). Returns 0 when woken or
 * the value differed, -ETIMEDOUT, or -EINTR.
 */
int pbus__futex_wait(uint32_t *word, uint32_t val, uint64_t deadline_ns);
/* Wake up to @n waiters on @word. Returns the number woken or -errno. */
int pbus__futex_wake(uint32_t *word, int n);

#endif /* PBUS_INTERNAL_H */
