/* SPDX-License-Identifier: MIT */
/*
 * The sample agents' benchmark, for pbus-bench: per agent, the p50/p99 hook
 * round trip (gateway thread -> agent process -> answer decoded) for a
 * typical 1 KiB payload, next to the ContextForge framework's in-process
 * Python figures from PARITY.md.
 */
#ifndef PBUS_BENCH_AGENTS_H
#define PBUS_BENCH_AGENTS_H

#include <stdio.h>

/*
 * Spawn each agent from @bindir (pbus-<name>), call its hook back to back
 * and print one table to @out. @quick: fewer calls. Returns 0, or -errno
 * when the bus could not be opened or an agent did not attach or answer.
 */
int bench_agents(FILE *out, const char *bindir, int quick);

#endif
