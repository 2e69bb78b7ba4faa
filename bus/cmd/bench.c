// SPDX-License-Identifier: MIT
/*
 * `pbus bench [ARGS...]`: run the benchmarks. The benchmarks are their own
 * program, pbus-bench (tests/bench/), built next to pbus; this subcommand
 * execs it with the same arguments so `pbus bench --quick` and
 * `pbus-bench --quick` are the same thing. Exit status: pbus-bench's, or 1
 * when it cannot be found, 2 usage.
 */
#include "cmd.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f)
{
	fprintf(f,
		"usage: pbus bench [pbus-bench options]\n"
		"\n"
		"Run the benchmarks: executes pbus-bench, from the directory "
		"of this pbus\n"
		"binary, with the same arguments (e.g. --quick). Its own "
		"options:\n"
		"'pbus bench --help-bench'.\n"
		"\n"
		"  -h, --help         show this help\n"
		"      --help-bench   show pbus-bench's help\n"
		"\n"
		"Exit status: pbus-bench's; 1 when it is missing.\n");
}

int pbus_cmd_bench(int argc, char **argv)
{
	static char help[] = "--help";
	char self[PATH_MAX], path[PATH_MAX + 16];
	ssize_t n;

	if (argc > 1 &&
	    (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		usage(stdout);
		return PBUS_EXIT_OK;
	}
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0) {
		fprintf(stderr, "pbus bench: cannot find the pbus binary: %s\n",
			strerror(errno));
		return PBUS_EXIT_FAIL;
	}
	self[n] = 0;
	*strrchr(self, '/') = 0;
	snprintf(path, sizeof(path), "%s/pbus-bench", self);
	if (argc > 1 && !strcmp(argv[1], "--help-bench"))
		argv[1] = help;
	argv[0] = path;
	fflush(stdout);
	execv(path, argv);
	fprintf(stderr, "pbus bench: %s: %s (build it with 'make tools')\n",
		path, strerror(errno));
	return PBUS_EXIT_FAIL;
}
