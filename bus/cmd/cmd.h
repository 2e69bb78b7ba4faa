/* SPDX-License-Identifier: MIT */
/*
 * The pbus command's shared declarations. pbus.c holds the table of
 * subcommands; each subcommand lives in bus/cmd/<sub>.c as
 * pbus_cmd_<sub>(), declared here. Adding one: write the file, declare it
 * below, add one line to the table in pbus.c.
 *
 * A subcommand gets argv starting at its own name (argv[0] == "check"), so
 * getopt_long() works as in a main(). It answers --help on stdout with exit
 * 0, prints diagnostics on stderr, and returns its exit status:
 * PBUS_EXIT_OK, PBUS_EXIT_FAIL, or PBUS_EXIT_USAGE for a bad command line.
 */
#ifndef PBUS_CMD_H
#define PBUS_CMD_H

#include <pbus/config.h>

#define PBUS_EXIT_OK 0
#define PBUS_EXIT_FAIL 1
#define PBUS_EXIT_USAGE 2

typedef int pbus_cmd_fn(int argc, char **argv);

/* Subcommands, one per file. */
int pbus_cmd_check(int argc, char **argv);
int pbus_cmd_run(int argc, char **argv);
int pbus_cmd_proxy(int argc, char **argv);
int pbus_cmd_bench(int argc, char **argv);
int pbus_cmd_status(int argc, char **argv);

/*
 * Shared helper (check.c) for every subcommand that reads a config. Load the
 * config at @path and print its diagnostics on stderr as
 * "file:line:col: error|warning: msg" (warnings unless @quiet), then a count
 * of errors, or a one-line reason when the file cannot be read. Returns 0
 * and *out, or -errno after printing. *nwarnings (may be NULL) gets the
 * number of warnings.
 */
int pbus_cmd_load_config(const char *path, int quiet, struct pbus_config **out,
			 unsigned *nwarnings);

#endif /* PBUS_CMD_H */
