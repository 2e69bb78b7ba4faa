/* SPDX-License-Identifier: MIT */
/*
 * Observability probes: USDT probes (provider "pbus", <sys/sdt.h> with
 * semaphores) that the core bus, the plugin manager and the agent runtime
 * fire, and the per-thread batching that keeps an always-on collector off
 * the hot path. Internal to libpbus: every symbol is pbus__obs_* or a probe
 * semaphore, hidden from the shared library.
 *
 * Cost model. Each probe has a semaphore (an unsigned short in the .probes
 * section) that the kernel increments for every attached uprobe
 * (ref_ctr_offset). Detached, a probe costs one load and one predictable
 * branch, and no clock read: callers ask pbus__obs_want_clock() (or use
 * pbus__obs_clock()) before they time anything. An attached USDT probe costs
 * a trap (~0.7 us here), as much as a whole hot round trip, so the always-on
 * collector attaches only to pbus:batch, which fires once per
 * PBUS_OBS_BATCH plugin calls (or when the oldest pending record is
 * PBUS_OBS_BATCH_AGE_NS old, checked when the next record arrives).
 *
 * Probes and their arguments (all integers; bpftrace arg0, arg1, ...):
 *
 *   pbus:call        (u32 plugin, u32 hook, u32 outcome, u64 latency_ns)
 *   pbus:batch       (struct pbus_obs_rec *recs, u32 count)
 *   pbus:chain       (u32 hook, u32 n_plugins, u32 outcome, u64 latency_ns)
 *   pbus:agent_up    (u32 plugin, s32 pid, u32 epoch)
 *   pbus:agent_down  (u32 plugin, s32 pid, u32 epoch, s32 reason)
 *   pbus:ring_full   (u32 plugin, u64 wait_ns)
 *   pbus:futex_sleep (u32 plugin, u64 slept_ns)
 *   pbus:handler     (u32 hook, u64 handler_ns)        agent side
 *
 * plugin is the gateway's dense plugin id (0..N-1, order of declaration),
 * hook an enum pbus_hook, outcome an enum pbus_obs_outcome, reason an enum
 * pbus_down_reason. Latencies are CLOCK_MONOTONIC nanoseconds, 0 when the
 * caller did not read the clock.
 *
 * Concurrency: every function may be called from any thread. Batches are
 * per thread (no locks, no atomics); a thread's pending batch is fired at
 * pbus__obs_flush(), at thread exit (pthread key destructor) and at process
 * exit. A forked child starts with an empty batch.
 */
#ifndef PBUS_OBS_H
#define PBUS_OBS_H

#include <stdint.h>

/*
 * Semaphores in every note, and arguments only in registers or immediates:
 * libbpf's USDT argument parser does not take %rip-relative operands.
 */
#ifdef _SYS_SDT_H
#error "include obs.h before <sys/sdt.h>: the probes need its settings"
#endif
#define _SDT_HAS_SEMAPHORES 1
#define STAP_SDT_ARG_CONSTRAINT nr
#include <sys/sdt.h>

#include "internal.h"

/* What became of one plugin call (values are part of the probe ABI). */
enum pbus_obs_outcome {
	PBUS_OUTCOME_OK = 0,	     /* allowed, payload unchanged */
	PBUS_OUTCOME_MODIFIED = 1,   /* allowed with a modified payload */
	PBUS_OUTCOME_VIOLATION = 2,  /* the plugin blocked the request */
	PBUS_OUTCOME_ERROR = 3,	     /* plugin error or garbage response */
	PBUS_OUTCOME_TIMEOUT = 4,    /* no answer within the plugin's timeout */
	PBUS_OUTCOME_AGENT_DOWN = 5, /* no agent attached, or it died */
	PBUS_OUTCOME_SKIPPED = 6,    /* not called: circuit open etc. */
	PBUS_OUTCOME_COUNT = 7,
};

/* Why an agent went away (pbus:agent_down's reason; part of the probe ABI). */
enum pbus_down_reason {
	PBUS_DOWN_EXITED = 1,	  /* the process exited (pidfd) */
	PBUS_DOWN_DISCONNECT = 2, /* it closed its control connection */
	PBUS_DOWN_PROTO = 3,	  /* it wrote garbage; the gateway dropped it */
	PBUS_DOWN_HUNG = 4,	  /* watchdog: it stopped answering */
	PBUS_DOWN_ADMIN = 5,	  /* restart requested (admin, tests) */
	PBUS_DOWN_SHUTDOWN = 6,	  /* the gateway is closing */
};

/*
 * Semaphores, defined in obs.c. Written by the kernel (uprobe reference
 * counters), read here with plain volatile loads.
 */
#define PBUS__OBS_SEM(name) pbus_##name##_semaphore
#define PBUS__OBS_DECLARE(name)                                                \
	extern volatile unsigned short PBUS__OBS_SEM(name)                     \
		__attribute__((section(".probes")))
PBUS__OBS_DECLARE(call);
PBUS__OBS_DECLARE(batch);
PBUS__OBS_DECLARE(chain);
PBUS__OBS_DECLARE(agent_up);
PBUS__OBS_DECLARE(agent_down);
PBUS__OBS_DECLARE(ring_full);
PBUS__OBS_DECLARE(futex_sleep);
PBUS__OBS_DECLARE(handler);

/* True when the named probe has at least one consumer attached. */
#define pbus__obs_on(name) unlikely(PBUS__OBS_SEM(name) != 0)

/*
 * True only when a probe that carries a plugin-call or chain latency is
 * attached (pbus:call, pbus:batch, pbus:chain). Read the clock for a call's
 * latency only when this says so.
 */
static inline int pbus__obs_want_clock(void)
{
	return unlikely((PBUS__OBS_SEM(call) | PBUS__OBS_SEM(batch) |
			 PBUS__OBS_SEM(chain)) != 0);
}

/* pbus__now_ns() when pbus__obs_want_clock(), else 0: a start stamp. */
static inline uint64_t pbus__obs_clock(void)
{
	return pbus__obs_want_clock() ? pbus__now_ns() : 0;
}

/* Nanoseconds since @t0 (from pbus__obs_clock()), or 0 if @t0 is 0. */
static inline uint64_t pbus__obs_since(uint64_t t0)
{
	return t0 ? pbus__now_ns() - t0 : 0;
}

/* True when pbus:ring_full or pbus:futex_sleep is attached: time waits. */
static inline int pbus__obs_want_wait_clock(void)
{
	return unlikely(
		(PBUS__OBS_SEM(ring_full) | PBUS__OBS_SEM(futex_sleep)) != 0);
}

void pbus__obs_call_slow(uint32_t plugin_id, uint32_t hook, uint32_t outcome,
			 uint64_t latency_ns, uint64_t now_ns);

/*
 * One plugin call finished. Fires pbus:call when attached and appends a
 * record to this thread's batch when pbus:batch is attached; the batch fires
 * when it holds PBUS_OBS_BATCH records or its oldest record is
 * PBUS_OBS_BATCH_AGE_NS old. The age is read from CLOCK_MONOTONIC_COARSE
 * (~9 ns here); pbus__obs_call_at() takes it from the caller instead. Never
 * blocks, never fails; a record that cannot be stored (out of memory) is
 * dropped.
 */
static inline __attribute__((always_inline)) void
pbus__obs_call(uint32_t plugin_id, uint32_t hook, uint32_t outcome,
	       uint64_t latency_ns)
{
	if (unlikely((PBUS__OBS_SEM(call) | PBUS__OBS_SEM(batch)) != 0))
		pbus__obs_call_slow(plugin_id, hook, outcome, latency_ns, 0);
}

/*
 * pbus__obs_call() for a caller that has a CLOCK_MONOTONIC stamp from the
 * end of the call anyway (@now_ns, e.g. the one its latency came from): no
 * clock is read at all. @now_ns == 0 means "none".
 */
static inline __attribute__((always_inline)) void
pbus__obs_call_at(uint32_t plugin_id, uint32_t hook, uint32_t outcome,
		  uint64_t latency_ns, uint64_t now_ns)
{
	if (unlikely((PBUS__OBS_SEM(call) | PBUS__OBS_SEM(batch)) != 0))
		pbus__obs_call_slow(plugin_id, hook, outcome, latency_ns,
				    now_ns);
}

/*
 * Fire this thread's pending batch now, if it has records (and drop it if
 * pbus:batch was detached meanwhile). For the chain runner when it goes
 * idle, and for tests.
 */
void pbus__obs_flush(void);

/* A whole hook chain finished: @n_plugins called, final @outcome. */
static inline __attribute__((always_inline)) void
pbus__obs_chain(uint32_t hook, uint32_t n_plugins, uint32_t outcome,
		uint64_t latency_ns)
{
	if (pbus__obs_on(chain))
		DTRACE_PROBE4(pbus, chain, hook, n_plugins, outcome,
			      latency_ns);
}

/* An agent attached to plugin slot @plugin_id with @epoch. */
static inline __attribute__((always_inline)) void
pbus__obs_agent_up(uint32_t plugin_id, int32_t pid, uint32_t epoch)
{
	if (pbus__obs_on(agent_up))
		DTRACE_PROBE3(pbus, agent_up, plugin_id, pid, epoch);
}

/* The agent of @plugin_id went away; @reason is an enum pbus_down_reason. */
static inline __attribute__((always_inline)) void
pbus__obs_agent_down(uint32_t plugin_id, int32_t pid, uint32_t epoch,
		     int32_t reason)
{
	if (pbus__obs_on(agent_down))
		DTRACE_PROBE4(pbus, agent_down, plugin_id, pid, epoch, reason);
}

/* A submit waited @wait_ns for request-ring space (back-pressure). */
static inline __attribute__((always_inline)) void
pbus__obs_ring_full(uint32_t plugin_id, uint64_t wait_ns)
{
	if (pbus__obs_on(ring_full))
		DTRACE_PROBE2(pbus, ring_full, plugin_id, wait_ns);
}

/* A gateway thread slept @slept_ns in FUTEX_WAIT for @plugin_id's reply. */
static inline __attribute__((always_inline)) void
pbus__obs_futex_sleep(uint32_t plugin_id, uint64_t slept_ns)
{
	if (pbus__obs_on(futex_sleep))
		DTRACE_PROBE2(pbus, futex_sleep, plugin_id, slept_ns);
}

/*
 * Agent side: a handler for @hook ran for @handler_ns. Bus overhead is the
 * gateway's pbus:call latency minus this.
 */
static inline __attribute__((always_inline)) void
pbus__obs_handler(uint32_t hook, uint64_t handler_ns)
{
	if (pbus__obs_on(handler))
		DTRACE_PROBE2(pbus, handler, hook, handler_ns);
}

#endif /* PBUS_OBS_H */
