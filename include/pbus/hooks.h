/* SPDX-License-Identifier: MIT */
/*
 * The 12 hook points of the ContextForge plugin framework, with their
 * framework names. Hook numbers are part of the shm ABI (they travel in every
 * request descriptor): append only.
 */
#ifndef PBUS_HOOKS_H
#define PBUS_HOOKS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

enum pbus_hook {
	PBUS_HOOK_PROMPT_PRE_FETCH = 0,
	PBUS_HOOK_PROMPT_POST_FETCH = 1,
	PBUS_HOOK_TOOL_PRE_INVOKE = 2,
	PBUS_HOOK_TOOL_POST_INVOKE = 3,
	PBUS_HOOK_RESOURCE_PRE_FETCH = 4,
	PBUS_HOOK_RESOURCE_POST_FETCH = 5,
	PBUS_HOOK_AGENT_PRE_INVOKE = 6,
	PBUS_HOOK_AGENT_POST_INVOKE = 7,
	PBUS_HOOK_HTTP_PRE_REQUEST = 8,
	PBUS_HOOK_HTTP_POST_REQUEST = 9,
	PBUS_HOOK_HTTP_AUTH_RESOLVE_USER = 10,
	PBUS_HOOK_HTTP_AUTH_CHECK_PERMISSION = 11,
	PBUS_HOOK_COUNT = 12,
};

/* Framework name ("tool_pre_invoke"), or NULL for an out-of-range value. */
const char *pbus_hook_name(int hook);

/* Hook number for a framework name; -EINVAL if unknown. */
int pbus_hook_from_name(const char *name);

/*
 * The payload field a hook's condition key matches against ("name" for tool
 * hooks, "prompt_id", "uri", "agent_id"), or NULL for HTTP hooks. The
 * condition key itself ("tools", "prompts", ...) is pbus_hook_condition_key().
 */
const char *pbus_hook_subject_field(int hook);
const char *pbus_hook_condition_key(int hook);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif /* PBUS_HOOKS_H */
