/* SPDX-License-Identifier: MIT */
/*
 * The "touch" work of the benchmarks: the sum of every byte of a buffer.
 * pbus-passthrough --mode touch runs it on each payload, and every baseline
 * of pbus-bench (socket, futex, chain) runs the same function on the same
 * bytes, so a ratio compares transports, not loops.
 *
 * A byte at a time costs a cycle per byte (~25 us for 64 KiB here, more
 * than the transport). On x86-64 this reads 16 bytes at a time and sums
 * them with PSADBW (SSE2, always there); elsewhere eight at a time, added
 * in 16-bit lanes (SWAR) folded before they can overflow. Same result as
 * the byte loop.
 */
#ifndef PBUS_TOUCH_H
#define PBUS_TOUCH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#ifdef __SSE2__
static inline uint64_t touch_sum(const void *buf, size_t len)
{
	const uint8_t *p = buf, *end = p + len;
	const __m128i zero = _mm_setzero_si128();
	__m128i acc = zero;
	uint64_t sum;

	for (; end - p >= 16; p += 16)
		acc = _mm_add_epi64(
			acc, _mm_sad_epu8(_mm_loadu_si128((const __m128i *)p),
					  zero));
	if (end - p >= 8) {
		acc = _mm_add_epi64(
			acc, _mm_sad_epu8(_mm_loadl_epi64((const __m128i *)p),
					  zero));
		p += 8;
	}
	sum = (uint64_t)_mm_cvtsi128_si64(acc) +
	      (uint64_t)_mm_cvtsi128_si64(_mm_unpackhi_epi64(acc, acc));
	for (; p < end; p++)
		sum += *p;
	return sum;
}
#else
static inline uint64_t touch_sum(const void *buf, size_t len)
{
	const uint64_t lo = 0x00ff00ff00ff00ffull;
	const uint8_t *p = buf, *end = p + len;
	uint64_t sum = 0;

	while (end - p >= 8) {
		/* each word adds at most 2 x 255 per 16-bit lane: 128 words
		 * stay below 65536 */
		size_t words = (size_t)(end - p) / 8;
		const uint8_t *stop = p + 8 * (words < 128 ? words : 128);
		uint64_t acc = 0;

		for (; p < stop; p += 8) {
			uint64_t w;

			memcpy(&w, p, 8);
			acc += (w & lo) + ((w >> 8) & lo);
		}
		sum += (acc & 0xffff) + ((acc >> 16) & 0xffff) +
		       ((acc >> 32) & 0xffff) + (acc >> 48);
	}
	for (; p < end; p++)
		sum += *p;
	return sum;
}
#endif

#endif
