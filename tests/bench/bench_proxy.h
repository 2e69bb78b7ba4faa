/* SPDX-License-Identifier: MIT */
/*
 * The proxy benchmark, for pbus-bench: the latency `pbus proxy` adds to an
 * MCP tools/call over stdio, next to the same calls made straight to the
 * server (tests/agents/mcp_echo.c), with no plugins and with a chain of
 * three sample agents on tool_pre_invoke and tool_post_invoke.
 */
#ifndef PBUS_BENCH_PROXY_H
#define PBUS_BENCH_PROXY_H

#include <stdio.h>

/*
 * Needs @bindir/pbus, the agents @bindir/pbus-{pii_filter,schema_guard,
 * regex_filter} and the fake server @bindir/../tests/agent-mcp_echo.
 * Makes >= 10,000 sequential calls per row (2,000 with @quick) and prints
 * one table to @out. Returns 0, or -errno when a program is missing or a
 * call goes unanswered.
 */
int bench_proxy(FILE *out, const char *bindir, int quick);

#endif
