// SPDX-License-Identifier: MIT
/* pbus-example-minimal: the agent to copy. Blocks one tool by name (config
 * `tool:`, default "rm_rf") and tags every other call with metadata. */
#include <string.h>

#include <pbus/agent_util.h>

/* Read the config into the agent's state (pbus_agent_main()'s last arg). A
 * wrong type is recorded by the getter and rejects the config. */
static int parse(struct pbus_cfgr *cfg, void *state)
{
	*(char **)state = pbus_cfgr_str(cfg, "tool", "rm_rf");
	return 0;
}

static int on_tool_pre(struct pbus_call *c, void *state)
{
	const char *blocked = *(char **)state;
	msgpack_packer *pk;
	char name[128];

	if (pbus_call_str(c, "name", name, sizeof(name)) < 0)
		return 0; /* no usable name: allow, unchanged */
	if (!strcmp(name, blocked))
		return pbus_call_violate(c, "TOOL_BLOCKED", "Tool not allowed",
					 name);
	pk = pbus_call_metadata(c); /* answer {"metadata": {...}} */
	msgpack_pack_map(pk, 1);
	return pbus_pack_kv_str(pk, "checked_by", "minimal");
}

int main(int argc, char **argv)
{
	static const struct pbus_agent_desc desc = {
		.name = "minimal",
		.summary = "Block one tool by name.",
		.config = parse,
		.hooks = {[PBUS_HOOK_TOOL_PRE_INVOKE] = on_tool_pre},
	};
	static char *blocked;

	return pbus_agent_main(argc, argv, &desc, &blocked);
}
