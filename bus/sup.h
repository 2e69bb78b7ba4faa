/* SPDX-License-Identifier: MIT */
/*
 * The supervisor (internal, bus/sup.c): starts the agents that have a
 * `command:`, restarts them with exponential back-off, kills hung ones (the
 * watchdog), and keeps a circuit breaker per plugin. docs/supervision.md
 * describes the policy; this header is what the rest of the library calls.
 *
 * Threads: the supervisor has one thread of its own, which owns every agent
 * process (it spawns them, so PR_SET_PDEATHSIG ties them to a thread that
 * lives as long as the manager). The control thread reports attaches and
 * detaches through pbus__sup_peer_event() (gw.h). Gateway threads call only
 * the circuit functions below, which touch nothing but a peer's atomics.
 */
#ifndef PBUS_SUP_H
#define PBUS_SUP_H

#include "gw.h"
#include "internal.h"
#include "mgr_int.h"

/* pbus__sup_circuit_allows() results */
#define PBUS__SUP_REFUSE 0 /* circuit open: fail the call as "agent down" */
#define PBUS__SUP_ALLOW 1  /* call normally */
#define PBUS__SUP_PROBE                                                        \
	2 /* call normally; it is the half-open probe:                         \
	   * report its status with pbus__sup_probe_done() */

/*
 * Start the supervisor of @m (bus open, peers declared) and, unless
 * @o->no_spawn, the agents that have a command. Returns 0, or -errno when a
 * command cannot be started (nothing is left running then).
 */
int pbus__sup_open(struct pbus_mgr *m, const struct pbus_mgr_opts *o);

/* Stop the supervisor: SIGTERM every agent it started, SIGKILL what is left
 * after 2 s, reap them all. Blocks. No-op if it never started. */
void pbus__sup_close(struct pbus_mgr *m);

int pbus__sup_circuit_slow(struct pbus_peer *p);

/*
 * May the plugin manager call @plugin now? Any thread, never blocks; one
 * relaxed load while the circuit is closed. A refused call must fail as if
 * the agent were down (-ENOTCONN), without IPC, and be handled per the
 * plugin's on_error. PBUS__SUP_PROBE: let it through and report how it went.
 */
static inline int pbus__sup_circuit_allows(struct pbus_mgr *m, unsigned plugin)
{
	struct pbus_peer *p = m->pl[plugin].peer;

	if (likely(!p ||
		   atomic_load_explicit(&p->circuit, memory_order_relaxed) ==
			   PBUS__CIRCUIT_CLOSED))
		return PBUS__SUP_ALLOW;
	return pbus__sup_circuit_slow(p);
}

/*
 * The half-open probe let through by pbus__sup_circuit_allows() finished
 * with @status (what pbus_invoke()/pbus_collect() returned). -ETIMEDOUT,
 * -ENOTCONN and -EPROTO re-open the circuit; anything else (an answer, even
 * a plugin error) closes it. Any thread. Without this call the supervisor
 * infers the outcome from the peer's counters within the call's timeout.
 */
void pbus__sup_probe_done(struct pbus_mgr *m, unsigned plugin, int status);

/* The supervision part of pbus_mgr_plugin_stats(). */
void pbus__sup_stats(const struct pbus_mgr *m, unsigned plugin,
		     struct pbus_plugin_stats *s);

#endif /* PBUS_SUP_H */
