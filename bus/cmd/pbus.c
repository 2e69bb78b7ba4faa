// SPDX-License-Identifier: MIT
/*
 * The pbus command: `pbus <subcommand> [options]`. main() only dispatches
 * through the table below; every subcommand is its own file (cmd.h).
 *
 *	pbus --help | -h         list the subcommands
 *	pbus --version | -V      print the version
 *	pbus help <subcommand>   the subcommand's --help
 *
 * Exit status: the subcommand's, or 2 for an unknown subcommand or option.
 */
#include "cmd.h"

#include <stdio.h>
#include <string.h>

static const struct cmd {
	const char *name;
	pbus_cmd_fn *fn;
	const char *summary;
} cmds[] = {
	{"check", pbus_cmd_check, "validate a plugin config file"},
	{"run", pbus_cmd_run, "replay MCP requests through the plugins"},
	{"proxy", pbus_cmd_proxy, "MCP stdio gateway in front of a server"},
	{"bench", pbus_cmd_bench, "run the benchmarks (pbus-bench)"},
	{"status", pbus_cmd_status, "show a gateway's plugins and agents"},
};

#define N_CMDS (sizeof(cmds) / sizeof(cmds[0]))

static const struct cmd *find(const char *name)
{
	for (size_t i = 0; i < N_CMDS; i++)
		if (!strcmp(cmds[i].name, name))
			return &cmds[i];
	return NULL;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: pbus <command> [options]\n"
		"       pbus help <command>\n"
		"       pbus --version\n"
		"\n"
		"pbus %s, a shared-memory plugin bus for MCP gateways.\n"
		"\n"
		"Commands:\n",
		PBUS_VERSION_STR);
	for (size_t i = 0; i < N_CMDS; i++)
		fprintf(f, "  %-12s %s\n", cmds[i].name, cmds[i].summary);
	fprintf(f, "\nRun 'pbus help <command>' for a command's options.\n");
}

static int unknown(const char *what, const char *name)
{
	fprintf(stderr, "pbus: unknown %s '%s'; see 'pbus --help'\n", what,
		name);
	return PBUS_EXIT_USAGE;
}

int main(int argc, char **argv)
{
	static char help_opt[] = "--help";
	const struct cmd *c;
	const char *sub;

	if (argc < 2) {
		usage(stderr);
		return PBUS_EXIT_USAGE;
	}
	sub = argv[1];
	if (!strcmp(sub, "--help") || !strcmp(sub, "-h")) {
		usage(stdout);
		return PBUS_EXIT_OK;
	}
	if (!strcmp(sub, "--version") || !strcmp(sub, "-V")) {
		printf("pbus %s\n", PBUS_VERSION_STR);
		return PBUS_EXIT_OK;
	}
	if (!strcmp(sub, "help")) {
		char *hargv[3] = {NULL, help_opt, NULL};

		if (argc < 3) {
			usage(stdout);
			return PBUS_EXIT_OK;
		}
		c = find(argv[2]);
		if (!c)
			return unknown("command", argv[2]);
		hargv[0] = argv[2];
		return c->fn(2, hargv);
	}
	if (sub[0] == '-')
		return unknown("option", sub);
	c = find(sub);
	if (!c)
		return unknown("command", sub);
	return c->fn(argc - 1, argv + 1);
}
