/* SPDX-License-Identifier: MIT */
/*
 * Layouts shared by libpbus (which writes batch records), the BPF program
 * (which reads them and fills the maps) and the collector (which reads the
 * maps). Compiled by gcc for user space and by clang -target bpf, so it uses
 * only __u32/__u64 and static inline helpers without library calls.
 *
 * Maps (pinned under /sys/fs/bpf/pbus/<instance>/ by the collector):
 *
 *  stats   per-CPU array, key = plugin * PBUS_OBS_HOOKS + hook, value
 *          struct pbus_obs_slot: per-(plugin, hook) counters and latency
 *          histogram. Plugin ids are the gateway's dense ids (order of
 *          declaration); hooks are enum pbus_hook.
 *  events  per-CPU array, key = plugin, value struct pbus_obs_events: agent
 *          lifecycle, ring back-pressure and futex sleeps.
 *  chains  per-CPU array, key = hook, value struct pbus_obs_slot: whole-chain
 *          latency (only when the chain program is attached).
 *  totals  per-CPU array with one entry, struct pbus_obs_totals: what the
 *          programs saw, including records they had to drop.
 *
 * Histogram buckets are log-linear: bucket 0 holds [0, 64) ns; from 2^6 ns
 * on, each power of two [2^e, 2^(e+1)) is split into 4 equal sub-buckets, so
 * a bucket is at most 25 % of its lower bound wide; the last bucket holds
 * everything from 2^36 ns (68.7 s) up. See pbus_obs_bucket() and
 * pbus_obs_bucket_lo().
 */
#ifndef PBUS_PROBES_OBS_H
#define PBUS_PROBES_OBS_H

#ifndef __bpf__
#include <linux/types.h>
#endif

#define PBUS_OBS_MAX_PLUGINS 64 /* largest plugin id the maps can hold + 1 */
#define PBUS_OBS_HOOKS 12	/* enum pbus_hook: PBUS_HOOK_COUNT */
#define PBUS_OBS_OUTCOMES 7	/* enum pbus_obs_outcome (bus/obs.h) */
#define PBUS_OBS_SLOTS (PBUS_OBS_MAX_PLUGINS * PBUS_OBS_HOOKS) /* stats */

/* One record per plugin call in a batch (written by libpbus). */
#define PBUS_OBS_BATCH 256		   /* records per batch, at most */
#define PBUS_OBS_BATCH_AGE_NS 100000000ull /* fire a batch this old */

struct pbus_obs_rec {
	__u32 plugin;	  /* dense plugin id */
	__u16 hook;	  /* enum pbus_hook */
	__u16 outcome;	  /* enum pbus_obs_outcome */
	__u64 latency_ns; /* as the caller measured it; 0 if it did not */
};

/* Histogram geometry (see the top of the file). */
#define PBUS_OBS_MIN_SHIFT 6  /* bucket 0: [0, 2^6) ns */
#define PBUS_OBS_MAX_SHIFT 36 /* last bucket: [2^36, inf) ns */
#define PBUS_OBS_SUB_SHIFT 2  /* 2^2 sub-buckets per power of two */
#define PBUS_OBS_BUCKETS                                                       \
	(2 + ((PBUS_OBS_MAX_SHIFT - PBUS_OBS_MIN_SHIFT) << PBUS_OBS_SUB_SHIFT))

/*
 * Per (plugin, hook) — or per hook for chains. The outcome counters are in
 * enum pbus_obs_outcome order so that (&ok)[outcome] is the right one.
 */
struct pbus_obs_slot {
	__u64 calls;	  /* records seen */
	__u64 ok;	  /* PBUS_OUTCOME_OK */
	__u64 modified;	  /* PBUS_OUTCOME_MODIFIED */
	__u64 violations; /* PBUS_OUTCOME_VIOLATION */
	__u64 errors;	  /* PBUS_OUTCOME_ERROR */
	__u64 timeouts;	  /* PBUS_OUTCOME_TIMEOUT */
	__u64 agent_down; /* PBUS_OUTCOME_AGENT_DOWN */
	__u64 skipped;	  /* PBUS_OUTCOME_SKIPPED (circuit open, ...) */
	__u64 latency_sum_ns;
	__u64 latency_max_ns;
	__u64 hist[PBUS_OBS_BUCKETS]; /* pbus_obs_bucket(latency) */
};

/* Per plugin: lifecycle and waiting. */
struct pbus_obs_events {
	__u64 agent_up;	      /* pbus:agent_up */
	__u64 agent_down;     /* pbus:agent_down */
	__u64 last_pid;	      /* pid of the last agent_up */
	__u64 last_epoch;     /* epoch of the last agent_up */
	__u64 ring_full;      /* pbus:ring_full (needs --events) */
	__u64 ring_full_ns;   /* total wait for ring space */
	__u64 futex_sleeps;   /* pbus:futex_sleep (needs --events) */
	__u64 futex_sleep_ns; /* total time asleep */
};

struct pbus_obs_totals {
	__u64 batches;	   /* pbus:batch hits */
	__u64 records;	   /* records read from batches */
	__u64 calls;	   /* pbus:call hits (per-call program) */
	__u64 chains;	   /* pbus:chain hits */
	__u64 bad_id;	   /* records with plugin or hook out of range */
	__u64 bad_outcome; /* records with an unknown outcome */
	__u64 read_errors; /* batches that could not be read */
	__u64 truncated;   /* batches longer than PBUS_OBS_BATCH */
};

/* floor(log2(v)) for v > 0, without a loop (BPF has no clz). */
static inline __u32 pbus_obs_log2(__u64 v)
{
	__u32 r = 0;

	if (v >> 32) {
		v >>= 32;
		r += 32;
	}
	if (v >> 16) {
		v >>= 16;
		r += 16;
	}
	if (v >> 8) {
		v >>= 8;
		r += 8;
	}
	if (v >> 4) {
		v >>= 4;
		r += 4;
	}
	if (v >> 2) {
		v >>= 2;
		r += 2;
	}
	if (v >> 1)
		r += 1;
	return r;
}

/* Bucket index of a latency, in [0, PBUS_OBS_BUCKETS). */
static inline __u32 pbus_obs_bucket(__u64 ns)
{
	__u32 e, sub;

	if (ns < (1ull << PBUS_OBS_MIN_SHIFT))
		return 0;
	if (ns >= (1ull << PBUS_OBS_MAX_SHIFT))
		return PBUS_OBS_BUCKETS - 1;
	e = pbus_obs_log2(ns);
	sub = (__u32)(ns >> (e - PBUS_OBS_SUB_SHIFT)) &
	      ((1u << PBUS_OBS_SUB_SHIFT) - 1);
	return 1 + ((e - PBUS_OBS_MIN_SHIFT) << PBUS_OBS_SUB_SHIFT) + sub;
}

/* Lowest latency (ns) that falls into bucket @b. */
static inline __u64 pbus_obs_bucket_lo(__u32 b)
{
	__u32 e, sub;

	if (b == 0)
		return 0;
	if (b >= PBUS_OBS_BUCKETS - 1)
		return 1ull << PBUS_OBS_MAX_SHIFT;
	e = PBUS_OBS_MIN_SHIFT + ((b - 1) >> PBUS_OBS_SUB_SHIFT);
	sub = (b - 1) & ((1u << PBUS_OBS_SUB_SHIFT) - 1);
	return (1ull << e) + ((__u64)sub << (e - PBUS_OBS_SUB_SHIFT));
}

#endif /* PBUS_PROBES_OBS_H */
