/* SPDX-License-Identifier: MIT */
/*
 * pbus-collector attached to this process, for `pbus run`: per-plugin
 * latency percentiles (read straight from the collector's pinned BPF maps)
 * and, on request, RRD history rendered as PNG graphs
 * (docs/observability.md). Needs root, BTF and pbus-collector next to the
 * pbus binary; collect_blocker() says what is missing.
 */
#ifndef PBUS_CMD_COLLECT_H
#define PBUS_CMD_COLLECT_H

#include <stdint.h>

struct collect;

/* Per plugin, all hooks together. */
struct collect_lat {
	uint64_t calls;
	uint64_t p50_ns, p99_ns, max_ns; /* bucket middles, capped by max */
};

/* Why the collector cannot run here, or NULL when it can. */
const char *collect_blocker(void);

/*
 * Start `pbus-collector top --pid <us>` and wait (up to 15 s) until it has
 * attached. @names: "0=a,1=b,..."; @rrd_dir: where to write RRD files every
 * second (NULL: none); @log: the collector's output. Returns 0 and *out,
 * or -errno (the collector is gone again).
 */
int collect_start(const char *names, const char *rrd_dir, const char *log,
		  struct collect **out);

/* Latency of plugins 0..@n-1 into @lat[n] from the pinned maps. Call it
 * after the calls' probe batches were flushed (the calling thread exited). */
int collect_latency(struct collect *c, unsigned n, struct collect_lat *lat);

/* Wait for the last RRD step, then render PNGs into @out_dir from the RRD files
 * of the last @secs seconds. 0, or -errno (see the log). */
int collect_graphs(struct collect *c, const char *out_dir, unsigned secs);

/* Detach the collector and remove its pins. NULL is a no-op. */
void collect_stop(struct collect *c);

#endif /* PBUS_CMD_COLLECT_H */
