/* SPDX-License-Identifier: MIT */
/*
 * Test helpers: unique socket paths, spawning agent binaries from the build
 * directory, and waits with deadlines. Every helper that waits takes a
 * timeout; nothing here can hang a test.
 */
#ifndef PBUS_TEST_HELPERS_H
#define PBUS_TEST_HELPERS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* A fresh control-socket path for this process: /tmp/pbus-test-<pid>-<n>.sock */
const char *th_sock_path(void);

/* Absolute path of a built program: $PBUS_BUILD/bin/<name> or
 * $PBUS_BUILD/tests/<name> (PBUS_BUILD defaults to ./build). */
const char *th_bin(const char *name);

/* fork+exec @argv[0] (resolved with th_bin) with PBUS_SOCK=@sock and
 * PBUS_PLUGIN=@plugin in its environment. Returns the pid (> 0). */
pid_t th_spawn(const char *sock, const char *plugin, char *const argv[]);

/* Wait up to @timeout_ms for @pid to exit. Returns 0 and *status, or
 * -ETIMEDOUT (the process is left running). */
int th_wait_exit(pid_t pid, int timeout_ms, int *status);

/* SIGKILL and reap. */
void th_kill(pid_t pid);

/* Sum of utime+stime of @pid in clock ticks, or -1. */
long th_cpu_ticks(pid_t pid);

/* Milliseconds of CLOCK_MONOTONIC. */
uint64_t th_now_ms(void);

/*
 * A scheduling margin in a timing assertion, scaled for slow runs: @ms
 * times $PBUS_TEST_SLACK (a whole number, default 1; .ci/run sets it for
 * the sanitizer and valgrind steps, whose programs run several times
 * slower). Scale only the margin, never the behaviour's own figure: "fails
 * within 100 ms + th_slack(200)", and only where the result still proves
 * the point (fast failure is still far below the timeout it must beat).
 */
uint64_t th_slack(uint64_t ms);

/* th_slack(@ms), but at most @cap: for a margin that must stay below what
 * it is compared with (a timeout, the serial time of a parallel band). */
uint64_t th_bound(uint64_t ms, uint64_t cap);

/* Quiet library logging unless PBUS_TEST_VERBOSE is set. */
void th_log_setup(void);

#endif
