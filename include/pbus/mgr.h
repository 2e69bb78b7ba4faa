/* SPDX-License-Identifier: MIT */
/*
 * The plugin manager: runs a hook's chain of plugins with the ContextForge
 * framework's semantics (PARITY.md) on top of the bus.
 *
 *	struct pbus_mgr *m;
 *	pbus_mgr_open(cfg, NULL, &m);          // declares plugins, spawns agents
 *	pbus_mgr_wait_ready(m, 5000);
 *	struct pbus_request *rq;
 *	struct pbus_gctx g = { .request_id = "42", .user = "alice" };
 *	pbus_request_create(m, &g, &rq);
 *	struct pbus_outcome out;
 *	pbus_run(m, rq, PBUS_HOOK_TOOL_PRE_INVOKE, payload, len, &out);
 *	... out.continue_processing, out.payload, out.violation ...
 *	pbus_run(m, rq, PBUS_HOOK_TOOL_POST_INVOKE, result, rlen, &out);
 *	pbus_request_destroy(rq);               // contexts end with the request
 *
 * Payloads are msgpack maps with the framework's field names (PARITY.md
 * 1.2). What an agent receives and may answer:
 *  - payload: the hook's payload map (read-only, in the shared arena);
 *  - global context: {"request_id", "user", "tenant_id", "server_id",
 *    "content_type", "state": map, "metadata": map}, encoded once per chain
 *    (again only after a plugin changed its state);
 *  - local context: {"state": map, "metadata": map} of this (request,
 *    plugin), kept from the pre hook to the post hook;
 *  - answer keys: "modified_payload" (the whole new payload), "violation"
 *    {reason, description, code, details, mcp_error_code?, http_status_code?,
 *    http_headers?}, "http_headers" (a map of header name -> value strings
 *    for the HTTP response, merged over the chain, last writer wins),
 *    "metadata" (merged into the result, last writer wins), "state" and
 *    "local_metadata" (replace the local context's parts), "global_state"
 *    (shallow-merged into the global context's state), "error" (message).
 *
 * Every function is thread-safe; a request is used by one thread at a time.
 */
#ifndef PBUS_MGR_H
#define PBUS_MGR_H

#include <stddef.h>
#include <stdint.h>

#include <pbus/config.h>
#include <pbus/diag.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

struct pbus_mgr;
struct pbus_request;
struct pbus_bus;

struct pbus_mgr_opts {
	const char *sock_path;  /* overrides bus.socket_path */
	int no_spawn;           /* 1: never start agents (tests, systemd) */
	const char *agent_path; /* extra directory searched for commands */
};

/*
 * Build the registry from @cfg (copied), open the bus, declare every
 * non-disabled plugin and start the agents that have a `command`. Returns 0
 * or -errno; nothing is left running on failure.
 */
int pbus_mgr_open(const struct pbus_config *cfg, const struct pbus_mgr_opts *o,
		  struct pbus_mgr **out);
void pbus_mgr_close(struct pbus_mgr *m);

/* Wait until every enabled plugin has an agent attached: 0 or -ETIMEDOUT. */
int pbus_mgr_wait_ready(struct pbus_mgr *m, int timeout_ms);

/* 1 if some enabled plugin implements @hook (framework's has_hooks_for). */
int pbus_mgr_has_hooks(const struct pbus_mgr *m, int hook);

struct pbus_bus *pbus_mgr_bus(struct pbus_mgr *m);
unsigned pbus_mgr_plugin_count(const struct pbus_mgr *m);
const char *pbus_mgr_plugin_name(const struct pbus_mgr *m, unsigned id);

/* ------------------------------------------------------------ requests */

struct pbus_gctx {
	const char *request_id; /* required */
	const char *user;
	const char *tenant_id;
	const char *server_id;
	const char *content_type;
};

/* A request's contexts, from its pre hook to its post hook. */
int pbus_request_create(struct pbus_mgr *m, const struct pbus_gctx *g,
			struct pbus_request **out);
void pbus_request_destroy(struct pbus_request *rq);

/* The global context's state map (msgpack) as plugins left it. */
const void *pbus_request_state(const struct pbus_request *rq, size_t *len);

/* A plugin's local context (msgpack map {state, metadata}) or NULL. */
const void *pbus_request_local(const struct pbus_request *rq, unsigned plugin,
			       size_t *len);

/* ------------------------------------------------------------ running */

struct pbus_violation {
	const char *reason;
	const char *description;
	const char *code;
	const void *details;      /* msgpack map */
	size_t details_len;
	int64_t mcp_error_code;   /* -32603 when the plugin gave none */
	int64_t http_status_code; /* 0 when none */
	const void *http_headers; /* msgpack map {name: value}, "\x80" if none */
	size_t http_headers_len;
	const char *plugin_name;
};

struct pbus_outcome {
	int continue_processing;  /* 0: blocked (violation) or failed (error) */
	int modified;             /* the payload differs from the input */
	const void *payload;      /* final payload (input if unmodified) */
	size_t payload_len;
	const struct pbus_violation *violation; /* NULL if none */
	const void *metadata;     /* merged result metadata (msgpack map) */
	size_t metadata_len;
	/* merged "http_headers" of the plugins whose answers counted (not
	 * audit mode): a msgpack map {name: value}, "\x80" when none. For an
	 * HTTP front end; a blocked call carries its own in the violation. */
	const void *http_headers;
	size_t http_headers_len;
	const char *decided_by;   /* plugin that blocked, failed or last modified */
	int error;                /* 0, or -errno when a plugin error ended the chain */
	const char *error_message;
	unsigned plugins_run;     /* plugins that were called */
	unsigned plugins_skipped; /* filtered by conditions, disabled, circuit open */
};

/*
 * Run @hook's chain on @payload (a msgpack map). Returns 0 with *out filled
 * (a block or a plugin error is a result, not a failure: see
 * out->continue_processing and out->error), or -errno for bad arguments
 * (-EINVAL, -EBADMSG payload is not a msgpack map). Everything *out points
 * to stays valid until the next pbus_run() on @rq or its destruction.
 */
int pbus_run(struct pbus_mgr *m, struct pbus_request *rq, int hook,
	     const void *payload, size_t len, struct pbus_outcome *out);

/* ------------------------------------------------------------ stats */

/* Circuit breaker states (docs/supervision.md). */
enum pbus_circuit {
	PBUS_CIRCUIT_CLOSED = 0,  /* calls go through */
	PBUS_CIRCUIT_OPEN,        /* calls fail fast, as "agent down" */
	PBUS_CIRCUIT_HALF_OPEN,   /* one probe call goes through */
};

struct pbus_plugin_stats {
	uint64_t calls, violations, errors, timeouts, agent_down, modified;
	uint64_t skipped, dropped_fields;
	int disabled;             /* disabled at run time (on_error: disable) */
	/* supervision */
	int up;                   /* an agent is attached */
	int32_t pid;              /* the attached agent's pid, 0 if none */
	uint32_t epoch;           /* its connection's epoch (or the last one) */
	uint32_t restarts;        /* agent restarts (re-attaches if external) */
	int circuit;              /* enum pbus_circuit */
};

int pbus_mgr_plugin_stats(const struct pbus_mgr *m, unsigned id,
			  struct pbus_plugin_stats *s);

/*
 * Per-call latency records for the eBPF collector are batched per thread
 * (one probe hit per batch, see docs/observability.md). A thread that goes
 * idle can fire its pending batch now. Costs nothing when no collector runs.
 */
void pbus_mgr_flush_stats(void);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif /* PBUS_MGR_H */
