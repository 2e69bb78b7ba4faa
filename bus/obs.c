// SPDX-License-Identifier: MIT
/*
 * Probe semaphores and per-thread batches of plugin-call records (see
 * obs.h for the probes and their cost model, probes/pbus_obs.h for the
 * record layout the BPF program reads).
 *
 * A thread's batch is allocated the first time it records while pbus:batch
 * is attached, and freed by the pthread key destructor at thread exit after
 * a last flush. The records live in ordinary process memory; pbus:batch
 * hands the BPF program their address and count, and the program copies
 * them out with bpf_probe_read_user() before the probe returns, so the
 * buffer is reused at once. Only the owning thread touches a batch: no
 * locks, no atomics.
 *
 * Batch age comes from the caller's CLOCK_MONOTONIC end stamp when it has
 * one (pbus__obs_call_at), else from CLOCK_MONOTONIC_COARSE (a vDSO memory
 * read, no TSC), which is good to a few milliseconds: all a 100 ms limit
 * needs. Both clocks count from the same origin.
 */
#include "obs.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "../probes/pbus_obs.h"

_Static_assert(PBUS_OUTCOME_COUNT == PBUS_OBS_OUTCOMES, "probe ABI");
_Static_assert(sizeof(struct pbus_obs_rec) == 16, "probe ABI");

#define PBUS__OBS_DEFINE(name)                                                 \
	volatile unsigned short PBUS__OBS_SEM(name)                            \
		__attribute__((section(".probes"), used)) = 0
PBUS__OBS_DEFINE(call);
PBUS__OBS_DEFINE(batch);
PBUS__OBS_DEFINE(chain);
PBUS__OBS_DEFINE(agent_up);
PBUS__OBS_DEFINE(agent_down);
PBUS__OBS_DEFINE(ring_full);
PBUS__OBS_DEFINE(futex_sleep);
PBUS__OBS_DEFINE(handler);

struct obs_batch {
	uint32_t n; /* records pending */
	uint32_t _pad;
	uint64_t first_ns; /* coarse clock at the first pending record */
	struct pbus_obs_rec rec[PBUS_OBS_BATCH];
};

/* initial-exec: a plain %fs-relative load, also when libpbus is a DSO. */
static __thread struct obs_batch *tls_batch
	__attribute__((tls_model("initial-exec")));
static pthread_key_t batch_key;
static int batch_key_ok;
static pthread_once_t batch_once = PTHREAD_ONCE_INIT;

static uint64_t coarse_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The only place pbus:batch fires. The batch is empty afterwards. */
static void batch_fire(struct obs_batch *b)
{
	const struct pbus_obs_rec *recs = b->rec;
	uint32_t n = b->n;

	b->n = 0;
	if (n && pbus__obs_on(batch))
		DTRACE_PROBE2(pbus, batch, recs, n);
}

static void batch_destroy(void *arg)
{
	struct obs_batch *b = arg;

	if (!b)
		return;
	batch_fire(b);
	if (tls_batch == b)
		tls_batch = NULL;
	free(b);
}

/* A forked child must not fire records its parent already owns. */
static void batch_atfork_child(void)
{
	if (tls_batch)
		tls_batch->n = 0;
}

static void batch_init_once(void)
{
	batch_key_ok = pthread_key_create(&batch_key, batch_destroy) == 0;
	pthread_atfork(NULL, NULL, batch_atfork_child);
}

static struct obs_batch *batch_new(void)
{
	struct obs_batch *b;

	pthread_once(&batch_once, batch_init_once);
	if (!batch_key_ok)
		return NULL; /* no way to flush at thread exit: do not batch */
	b = malloc(sizeof(*b));
	if (!b)
		return NULL;
	b->n = 0;
	b->first_ns = 0;
	if (pthread_setspecific(batch_key, b)) {
		free(b);
		return NULL;
	}
	tls_batch = b;
	return b;
}

void pbus__obs_call_slow(uint32_t plugin_id, uint32_t hook, uint32_t outcome,
			 uint64_t latency_ns, uint64_t now_ns)
{
	struct obs_batch *b;
	struct pbus_obs_rec *r;
	uint64_t now;

	if (pbus__obs_on(call))
		DTRACE_PROBE4(pbus, call, plugin_id, hook, outcome, latency_ns);
	if (!pbus__obs_on(batch))
		return;
	b = tls_batch;
	if (unlikely(!b)) {
		b = batch_new();
		if (!b)
			return;
	}
	now = now_ns ? now_ns : coarse_ns();
	if (b->n == 0)
		b->first_ns = now;
	r = &b->rec[b->n++];
	r->plugin = plugin_id;
	r->hook = (uint16_t)hook;
	r->outcome = (uint16_t)outcome;
	r->latency_ns = latency_ns;
	/* Signed: a coarse stamp may lag a fine one by a tick. */
	if (b->n == PBUS_OBS_BATCH ||
	    (int64_t)(now - b->first_ns) >= (int64_t)PBUS_OBS_BATCH_AGE_NS)
		batch_fire(b);
}

void pbus__obs_flush(void)
{
	struct obs_batch *b = tls_batch;

	if (b && b->n)
		batch_fire(b);
}

/* The main thread's batch: exit() runs no pthread key destructors. */
__attribute__((destructor)) static void batch_flush_at_exit(void)
{
	pbus__obs_flush();
}
