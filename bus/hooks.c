// SPDX-License-Identifier: MIT
/*
 * Hook names and the payload field each hook's condition key matches
 * (PARITY.md 1.2).
 */
#include "pbus/hooks.h"

#include <errno.h>
#include <string.h>

static const struct {
	const char *name;
	const char *cond_key; /* PluginCondition field */
	const char *subject;  /* payload field it matches */
} hooks[PBUS_HOOK_COUNT] = {
	[PBUS_HOOK_PROMPT_PRE_FETCH] = {"prompt_pre_fetch", "prompts", "prompt_id"},
	[PBUS_HOOK_PROMPT_POST_FETCH] = {"prompt_post_fetch", "prompts", "prompt_id"},
	[PBUS_HOOK_TOOL_PRE_INVOKE] = {"tool_pre_invoke", "tools", "name"},
	[PBUS_HOOK_TOOL_POST_INVOKE] = {"tool_post_invoke", "tools", "name"},
	[PBUS_HOOK_RESOURCE_PRE_FETCH] = {"resource_pre_fetch", "resources", "uri"},
	[PBUS_HOOK_RESOURCE_POST_FETCH] = {"resource_post_fetch", "resources", "uri"},
	[PBUS_HOOK_AGENT_PRE_INVOKE] = {"agent_pre_invoke", "agents", "agent_id"},
	[PBUS_HOOK_AGENT_POST_INVOKE] = {"agent_post_invoke", "agents", "agent_id"},
	[PBUS_HOOK_HTTP_PRE_REQUEST] = {"http_pre_request", NULL, NULL},
	[PBUS_HOOK_HTTP_POST_REQUEST] = {"http_post_request", NULL, NULL},
	[PBUS_HOOK_HTTP_AUTH_RESOLVE_USER] = {"http_auth_resolve_user", NULL, NULL},
	[PBUS_HOOK_HTTP_AUTH_CHECK_PERMISSION] = {"http_auth_check_permission", NULL, NULL},
};

const char *pbus_hook_name(int hook)
{
	if (hook < 0 || hook >= PBUS_HOOK_COUNT)
		return NULL;
	return hooks[hook].name;
}

int pbus_hook_from_name(const char *name)
{
	if (!name)
		return -EINVAL;
	for (int i = 0; i < PBUS_HOOK_COUNT; i++)
		if (!strcmp(hooks[i].name, name))
			return i;
	return -EINVAL;
}

const char *pbus_hook_subject_field(int hook)
{
	if (hook < 0 || hook >= PBUS_HOOK_COUNT)
		return NULL;
	return hooks[hook].subject;
}

const char *pbus_hook_condition_key(int hook)
{
	if (hook < 0 || hook >= PBUS_HOOK_COUNT)
		return NULL;
	return hooks[hook].cond_key;
}
