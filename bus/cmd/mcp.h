/* SPDX-License-Identifier: MIT */
/*
 * MCP <-> hook mapping shared by `pbus run` and `pbus proxy` (docs/cli.md,
 * "Mapping"). A JSON-RPC request whose method has hooks is run through its
 * pre hook before it would reach the server, and the server's result
 * through its post hook before it would reach the client:
 *
 *	tools/call	tool_pre_invoke {name, args[, headers]}
 *			tool_post_invoke {name, result}
 *	prompts/get	prompt_pre_fetch {prompt_id, args}
 *			prompt_post_fetch {prompt_id, result}
 *	resources/read	resource_pre_fetch {uri, metadata}
 *			resource_post_fetch {uri, content}, once per item of
 *			result.contents
 *
 * A modified payload is written back into the JSON (params or result), so
 * what the caller forwards is what the plugins left. JSON values are
 * jansson's; payloads cross to msgpack with include/pbus/json.h.
 */
#ifndef PBUS_CMD_MCP_H
#define PBUS_CMD_MCP_H

#include <stdint.h>

#include <jansson.h>

#include <pbus/mgr.h>

enum mcp_kind { MCP_OTHER, MCP_TOOL, MCP_PROMPT, MCP_RESOURCE };

/* What a chain decided. */
enum mcp_verdict { MCP_ALLOWED, MCP_MODIFIED, MCP_BLOCKED, MCP_FAILED };

struct mcp_step {
	int verdict;	 /* enum mcp_verdict */
	int hook;	 /* the hook that ran (or would have) */
	const char *by;	 /* plugin that modified, blocked or failed */
	uint64_t ns;	 /* time spent in pbus_run() */
	unsigned runs;	 /* pbus_run() calls (one per resource item) */
	int rewritten;	 /* the JSON (params or result) was changed */
	json_t *meta;	 /* pre hook, MODIFIED: the payload's fields MCP has no
			  * place for (tool headers, resource metadata), as
			  * plugins left them; NULL if none */
	json_t *error;	 /* BLOCKED/FAILED: the JSON-RPC error object */
	char why[320];	 /* BLOCKED/FAILED: one line for humans */
	char brief[200]; /* BLOCKED: the description, else the reason */
	char code[64];	 /* BLOCKED: the violation's code */
};

/* The kind of a JSON-RPC method (MCP_OTHER: no hooks). */
int mcp_kind(const char *method);

/* The hook run on a request of @kind / on its result (-1: MCP_OTHER). */
int mcp_pre_hook(int kind);
int mcp_post_hook(int kind);

/* The request's target: tool or prompt name, resource uri; "" if none. */
const char *mcp_target(int kind, const json_t *params);

/* The JSON-RPC id as the context's request_id: a string as is, a number
 * in decimal, anything else as compact JSON. */
void mcp_id_str(const json_t *id, char *buf, size_t len);

/*
 * Run the pre hook of @kind on @params (the request's params object;
 * @headers, may be NULL, becomes tool_pre_invoke's headers). On
 * MCP_MODIFIED @params has been rewritten in place. Returns 0 with @st
 * filled, or -errno when the chain could not run at all (then @st->why
 * says why and verdict is MCP_FAILED).
 */
int mcp_pre(struct pbus_mgr *m, struct pbus_request *rq, int kind,
	    json_t *params, const json_t *headers, struct mcp_step *st);

/*
 * Run the post hook of @kind on the server's @result for @target (the
 * name or uri the server was asked for). On MCP_MODIFIED @result has been
 * rewritten in place. Returns as mcp_pre().
 */
int mcp_post(struct pbus_mgr *m, struct pbus_request *rq, int kind,
	     const char *target, json_t *result, struct mcp_step *st);

/* Free what a step holds (error, meta). */
void mcp_step_fini(struct mcp_step *st);

/* {"code": @code, "message": @msg[, "data": @data]} (takes @data). */
json_t *mcp_error(int64_t code, const char *msg, json_t *data);

/* A JSON-RPC response line for @id: {"jsonrpc":"2.0","id":..,"error":..}
 * as compact text with '\n', malloc()ed. Takes a reference to nothing. */
char *mcp_error_line(const json_t *id, const json_t *error, size_t *len);

/* Monotonic nanoseconds. */
uint64_t mcp_now_ns(void);

#endif /* PBUS_CMD_MCP_H */
