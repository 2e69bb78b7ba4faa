// SPDX-License-Identifier: MIT
/*
 * Test helpers (see helpers.h).
 */
#include "helpers.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <pbus/diag.h>

const char *th_sock_path(void)
{
	static __thread char buf[108];
	static int n;

	snprintf(buf, sizeof(buf), "/tmp/pbus-test-%d-%d.sock", (int)getpid(),
		 __atomic_fetch_add(&n, 1, __ATOMIC_RELAXED));
	unlink(buf);
	return buf;
}

const char *th_bin(const char *name)
{
	static __thread char buf[4096];
	const char *b = getenv("PBUS_BUILD");

	if (name[0] == '/')
		return name;
	if (!b)
		b = "build";
	snprintf(buf, sizeof(buf), "%s/bin/%s", b, name);
	if (access(buf, X_OK) == 0)
		return buf;
	snprintf(buf, sizeof(buf), "%s/tests/%s", b, name);
	return buf;
}

pid_t th_spawn(const char *sock, const char *plugin, char *const argv[])
{
	char path[4096];
	pid_t pid;

	snprintf(path, sizeof(path), "%s", th_bin(argv[0]));
	pid = fork();
	if (pid == 0) {
		if (sock)
			setenv("PBUS_SOCK", sock, 1);
		if (plugin)
			setenv("PBUS_PLUGIN", plugin, 1);
		execv(path, argv);
		fprintf(stderr, "exec %s: %s\n", path, strerror(errno));
		_exit(127);
	}
	return pid;
}

uint64_t th_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t th_slack(uint64_t ms)
{
	const char *e = getenv("PBUS_TEST_SLACK");
	int k = e ? atoi(e) : 1;

	return ms * (uint64_t)(k < 1 ? 1 : k > 20 ? 20 : k);
}

uint64_t th_bound(uint64_t ms, uint64_t cap)
{
	uint64_t v = th_slack(ms);

	return v < cap ? v : cap;
}

int th_wait_exit(pid_t pid, int timeout_ms, int *status)
{
	uint64_t until = th_now_ms() + (uint64_t)timeout_ms;
	int st;

	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid) {
			if (status)
				*status = st;
			return 0;
		}
		if (r < 0)
			return -errno;
		if (th_now_ms() >= until)
			return -ETIMEDOUT;
		usleep(2000);
	}
}

void th_kill(pid_t pid)
{
	if (pid <= 0)
		return;
	kill(pid, SIGKILL);
	th_wait_exit(pid, 5000, NULL);
}

long th_cpu_ticks(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long ut, st;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	p = strrchr(buf, ')'); /* comm may contain spaces */
	if (!p)
		return -1;
	/* after ')': state(3) ... utime is field 14, stime 15 */
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
		   &ut, &st) != 2)
		return -1;
	return (long)(ut + st);
}

void th_log_setup(void)
{
	if (getenv("PBUS_TEST_VERBOSE"))
		pbus_set_log_fn(pbus_log_stderr, NULL);
}
