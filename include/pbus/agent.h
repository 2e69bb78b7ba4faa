/* SPDX-License-Identifier: MIT */
/*
 * Agent side of the bus. An agent is a process that serves one plugin: it
 * connects to the gateway's control socket, announces its name and hooks,
 * receives its channel and a read-only view of the payload arena, and then
 * answers requests from one thread until it is stopped.
 *
 *	struct pbus_agent *a;
 *	struct pbus_agent_opts o = { .name = "deny_filter" };
 *	pbus_agent_create(&o, &a);
 *	pbus_agent_on(a, PBUS_HOOK_PROMPT_PRE_FETCH, on_prompt, NULL);
 *	pbus_agent_connect(a);
 *	pbus_agent_run(a);       // until SIGTERM/SIGINT or pbus_agent_stop()
 *	pbus_agent_destroy(a);
 *
 * A handler reads the payload and contexts in place (read-only, valid during
 * the call) and writes its answer straight into the response ring with the
 * pbus_call_* functions. A handler that writes nothing allows the call
 * unchanged. A handler that returns -errno turns the call into a plugin error.
 */
#ifndef PBUS_AGENT_H
#define PBUS_AGENT_H

#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

struct pbus_agent;
struct pbus_call;

typedef int pbus_handler_fn(struct pbus_call *c, void *arg);

struct pbus_agent_opts {
	const char *name;       /* plugin name; NULL: $PBUS_PLUGIN */
	const char *sock_path;  /* NULL: $PBUS_SOCK */
	int connect_timeout_ms; /* 0: 5000; retries while the socket is absent */
	unsigned heartbeat_ms;  /* 0: 1000; longest sleep between heartbeats
				 * (an idle agent the gateway spawned, with our
				 * signal handlers, sleeps without one: it dies
				 * with the gateway; docs/supervision.md) */
	unsigned idle_spin_ns;  /* 0: as the gateway says; how long to poll */
	int no_signals;         /* 1: do not install SIGTERM/SIGINT handlers
				 * (a program with its own must set this, and
				 * call pbus_agent_stop() from them) */
	int reconnect;          /* 1 (or $PBUS_RECONNECT=1): pbus_agent_run()
				 * reconnects with back-off (100 ms doubling to
				 * 2 s) when the gateway goes away or drops the
				 * agent, instead of returning. Ignored for an
				 * agent the gateway spawned ($PBUS_SPAWNED=1):
				 * the gateway restarts those itself. */
};

/* ------------------------------------------------------------ lifecycle */

int pbus_agent_create(const struct pbus_agent_opts *o, struct pbus_agent **out);
void pbus_agent_destroy(struct pbus_agent *a);

/* Register @fn for @hook. Before pbus_agent_connect() only. */
int pbus_agent_on(struct pbus_agent *a, int hook, pbus_handler_fn *fn,
		  void *arg);

/*
 * Connect, say hello, receive the regions. -ECONNREFUSED/-ENOENT no gateway
 * (after retrying up to the timeout), -EPROTO version mismatch, -EACCES or
 * -EEXIST refused by the gateway (the reason is logged).
 */
int pbus_agent_connect(struct pbus_agent *a);

/*
 * Serve requests until pbus_agent_stop(), SIGTERM or SIGINT (returns 0) or
 * until the gateway goes away or drops the agent (-ENOTCONN). With the
 * `reconnect` option it connects again instead (calling it before
 * pbus_agent_connect() is then allowed: it connects first), sleeping between
 * attempts, and returns only when stopped. The config pointer of
 * pbus_agent_config() stays valid across reconnects (the first one is kept).
 *
 * An agent started by a gateway ($PBUS_SPAWNED=1 in its environment) asks
 * the kernel for SIGTERM when the gateway dies (PR_SET_PDEATHSIG), so it
 * leaves even when the gateway is killed with SIGKILL; any agent notices a
 * vanished gateway within one heartbeat by the control socket's EOF.
 */
int pbus_agent_run(struct pbus_agent *a);

/* Serve what is pending, waiting up to @timeout_ms for the first request.
 * Returns the number of requests served, or -errno. */
int pbus_agent_poll(struct pbus_agent *a, int timeout_ms);

/* Ask pbus_agent_run() to return. Async-signal-safe. */
void pbus_agent_stop(struct pbus_agent *a);

/* The plugin's config: a msgpack map (or NULL/0 when none was given). */
const void *pbus_agent_config(const struct pbus_agent *a, size_t *len);

const char *pbus_agent_name(const struct pbus_agent *a);
uint32_t pbus_agent_epoch(const struct pbus_agent *a);

/* ------------------------------------------------------------ a call */

int pbus_call_hook(const struct pbus_call *c);
uint64_t pbus_call_id(const struct pbus_call *c);
const void *pbus_call_payload(const struct pbus_call *c, size_t *len);
const void *pbus_call_global_ctx(const struct pbus_call *c, size_t *len);
const void *pbus_call_local_ctx(const struct pbus_call *c, size_t *len);
struct pbus_agent *pbus_call_agent(const struct pbus_call *c);

/*
 * Start the value of @key in the response body (a msgpack map; each key at
 * most once) and return a packer that must write exactly one value. The bytes
 * go straight into the response ring. Sets the flag that goes with a known
 * key ("modified_payload", "violation", "metadata", "state", "global_state",
 * "error").
 */
msgpack_packer *pbus_call_put(struct pbus_call *c, const char *key);

/* OR @flags (PBUS_RF_*) into the response, e.g. PBUS_RF_STOP. */
void pbus_call_set_flags(struct pbus_call *c, uint32_t flags);

/* Shorthands. */
msgpack_packer *pbus_call_modify(struct pbus_call *c); /* "modified_payload" */

/* Block: continue_processing=false and a violation {reason, description, code,
 * details={}}. */
int pbus_call_violate(struct pbus_call *c, const char *code,
		      const char *reason, const char *description);

/* Plugin error with a message (PBUS_RF_ERROR). */
int pbus_call_fail(struct pbus_call *c, const char *message);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif /* PBUS_AGENT_H */
