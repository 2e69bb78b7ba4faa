/* SPDX-License-Identifier: MIT */
/*
 * Internal helpers shared by the library's files: logging, clocks, futexes,
 * CPU relax. Symbols here are pbus__* (hidden from the shared library).
 */
#ifndef PBUS_INTERNAL_H
#define PBUS_INTERNAL_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "pbus/diag.h"

#define PBUS_UNUSED __attribute__((unused))
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/*
 * The round trip's own code (gateway: encode, submit, collect; agent: wait,
 * serve, answer) is marked PBUS_HOT and so gathered in .text.hot, and its
 * error and back-pressure paths are PBUS_COLD functions, out of line in
 * .text.unlikely. A call to an agent that slept finds its code cold: every
 * 4 KiB page it runs on is a TLB miss and every 64-byte line a cache miss,
 * and on this class of VM those misses are most of what a paced round trip
 * costs over a bare futex ping-pong (see README, "paced").
 */
#define PBUS_HOT __attribute__((hot))
#define PBUS_COLD __attribute__((cold, noinline))

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
 * Copy a few bytes (a request's inline parts, a small payload: a cache line
 * or two) without a library call: on the hot path the call and its dispatch
 * cost more than the copy.
 */
static inline void pbus__copy_small(void *dst, const void *src, size_t n)
{
	uint8_t *d = dst;
	const uint8_t *s = src;

	if (n >= 16) {
		for (size_t i = 0; i + 16 < n; i += 16)
			__builtin_memcpy(d + i, s + i, 16);
		/* the last 16 bytes, overlapping what was copied */
		__builtin_memcpy(d + n - 16, s + n - 16, 16);
	} else if (n >= 8) {
		__builtin_memcpy(d, s, 8);
		__builtin_memcpy(d + n - 8, s + n - 8, 8);
	} else if (n >= 4) {
		__builtin_memcpy(d, s, 4);
		__builtin_memcpy(d + n - 4, s + n - 4, 4);
	} else if (n) {
		d[0] = s[0];
		d[n / 2] = s[n / 2];
		d[n - 1] = s[n - 1];
	}
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
