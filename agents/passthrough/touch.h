/* SPDX-License-Identifier: MIT */
/*
 * The "touch" work of the benchmarks: the sum of every byte of a buffer.
 * pbus-passthrough --mode touch runs it on each payload, and every baseline
 * of pbus-bench (socket, futex, chain) runs the same function on the same
 * bytes, so a ratio compares transports, not loops.
 *
 * A byte at a time costs a cycle per byte (~25 us for 64 KiB here, more
 * than the transport); this reads eight at a time and adds them in 16-bit
 * lanes (SWAR), folding the lanes before they can overflow. Same result as
 * the byte loop.
 */
#ifndef PBUS_TOUCH_H
#define PBUS_TOUCH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

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
