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
 * Hint that the cache line holding @p, which another CPU is about to read or
 * write, should leave our private caches for the shared last-level cache:
 * the other CPU's miss is then served there instead of by a snoop into our
 * core. CLDEMOTE is encoded in the reserved-NOP space (0F 1C /0), so CPUs
 * without it execute a NOP; it never faults and changes no memory.
 */
static inline void pbus__cldemote(const volatile void *p)
{
#if defined(__x86_64__) || defined(__i386__)
	__asm__ __volatile__(".byte 0x0f, 0x1c, 0x07" ::"D"(p) : "memory");
#else
	(void)p;
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
