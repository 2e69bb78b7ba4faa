// SPDX-License-Identifier: MIT
/*
 * `pbus check -c FILE`: validate a plugin config file without starting
 * anything. Every diagnostic goes to stderr as "file:line:col: error|warning:
 * msg"; a valid file also gets a summary on stdout: the plugins per hook in
 * the order they run (priority, then file order) with their modes, and the
 * settings in force. Exit status: 0 valid, 1 errors, 2 usage.
 */
#include "cmd.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pbus/hooks.h>

static void usage(FILE *f)
{
	fprintf(f, "usage: pbus check [-q] -c FILE\n"
		   "\n"
		   "Validate a plugin config file. Prints every problem on "
		   "stderr as\n"
		   "'file:line:col: error|warning: message' and, when the file "
		   "is\n"
		   "valid, a summary on stdout: the plugins of each hook in "
		   "the order\n"
		   "they run, and the settings in force.\n"
		   "\n"
		   "  -c, --config FILE  the config file (or give it as the "
		   "argument)\n"
		   "  -q, --quiet        print errors only: no warnings, no "
		   "summary\n"
		   "  -h, --help         show this help\n"
		   "\n"
		   "Exit status: 0 valid, 1 errors, 2 usage error.\n");
}

int pbus_cmd_load_config(const char *path, int quiet, struct pbus_config **out,
			 unsigned *nwarnings)
{
	struct pbus_diag *d =
		calloc(1, sizeof(*d)); /* 17 KiB: not on the stack */
	char line[600];
	int ret;

	if (!d) {
		fprintf(stderr, "pbus: out of memory\n");
		return -ENOMEM;
	}
	ret = pbus_config_load(path, d, out);
	for (unsigned i = 0; i < d->n; i++) {
		if (quiet && !d->items[i].is_error)
			continue;
		fprintf(stderr, "%s\n",
			pbus_diag_format(d, i, line, sizeof(line)));
	}
	if (d->nerrors + d->nwarnings > d->n)
		fprintf(stderr, "%s: ... and %u more not shown\n", path,
			d->nerrors + d->nwarnings - d->n);
	if (ret == -EINVAL)
		fprintf(stderr, "%s: %u error%s, %u warning%s\n", path,
			d->nerrors, d->nerrors == 1 ? "" : "s", d->nwarnings,
			d->nwarnings == 1 ? "" : "s");
	else if (ret)
		fprintf(stderr, "pbus: %s: %s\n", path, strerror(-ret));
	if (nwarnings)
		*nwarnings = d->nwarnings;
	free(d);
	return ret;
}

/* Milliseconds as seconds, without trailing zeros: 30000 -> "30s". */
static const char *secs(uint64_t ms, char *buf, size_t len)
{
	if (ms % 1000)
		snprintf(buf, len, "%.3gs", (double)ms / 1000.0);
	else
		snprintf(buf, len, "%llus", (unsigned long long)(ms / 1000));
	return buf;
}

static const char *yes_no(int b)
{
	return b ? "true" : "false";
}

static void print_hook(const struct pbus_config *c, int hook, unsigned *order)
{
	unsigned n = 0;

	for (unsigned i = 0; i < c->n_plugins; i++) {
		unsigned j = n;

		if (!(c->plugins[i].hooks & (1u << hook)))
			continue;
		/* insertion sort: stable, so equal priorities keep file order
		 */
		while (j && c->plugins[order[j - 1]].priority >
				    c->plugins[i].priority) {
			order[j] = order[j - 1];
			j--;
		}
		order[j] = i;
		n++;
	}
	if (!n)
		return;
	printf("  %s:\n", pbus_hook_name(hook));
	for (unsigned k = 0; k < n; k++) {
		const struct pbus_plugin_cfg *p = &c->plugins[order[k]];
		char t[32];

		printf("    %-24s priority %-5d %s, on_error %s", p->name,
		       p->priority, pbus_mode_name(p->mode),
		       pbus_on_error_name(p->on_error));
		if (p->timeout_ms)
			printf(", timeout %s",
			       secs(p->timeout_ms, t, sizeof(t)));
		printf("\n");
	}
}

static void summary(const struct pbus_config *c, unsigned nwarnings)
{
	const struct pbus_settings *s = &c->settings;
	const struct pbus_bus_cfg *b = &c->bus;
	const struct pbus_supervision_cfg *v = &c->supervision;
	unsigned *order, disabled = 0, idle = 0;
	char t[32];

	for (unsigned i = 0; i < c->n_plugins; i++) {
		disabled += c->plugins[i].mode == PBUS_MODE_DISABLED;
		idle += !c->plugins[i].hooks;
	}
	printf("%s: ok, %u plugin%s (%u disabled), %u warning%s\n", c->path,
	       c->n_plugins, c->n_plugins == 1 ? "" : "s", disabled, nwarnings,
	       nwarnings == 1 ? "" : "s");
	order = calloc(c->n_plugins ? c->n_plugins : 1, sizeof(*order));
	if (!order)
		return;
	printf("hooks (in call order):\n");
	for (int h = 0; h < PBUS_HOOK_COUNT; h++)
		print_hook(c, h, order);
	free(order);
	if (idle) {
		printf("  (no hooks):");
		for (unsigned i = 0; i < c->n_plugins; i++)
			if (!c->plugins[i].hooks)
				printf(" %s", c->plugins[i].name);
		printf("\n");
	}
	printf("plugin_settings: plugin_timeout %s, fail_on_plugin_error %s,\n"
	       "  parallel_execution_within_band %s, "
	       "plugin_health_check_interval %us,\n"
	       "  enable_plugin_api %s, include_user_info %s\n",
	       secs(s->plugin_timeout_ms, t, sizeof(t)),
	       yes_no(s->fail_on_plugin_error), yes_no(s->parallel_within_band),
	       s->health_check_interval_s, yes_no(s->enable_plugin_api),
	       yes_no(s->include_user_info));
	printf("bus: socket_path %s, socket_mode %04o, allowed_uids",
	       b->socket_path ? b->socket_path : "(default)", b->socket_mode);
	if (!b->n_allowed_uids)
		printf(" (own uid only)");
	for (unsigned i = 0; i < b->n_allowed_uids; i++)
		printf("%s%u", i ? "," : " ", b->allowed_uids[i]);
	printf(",\n  max_payload_size %zu, ring_slots %u, lanes %u,\n"
	       "  max_spin_ns %u, agent_idle_spin_ns %u\n",
	       b->max_payload, b->ring_slots, b->lanes, b->max_spin_ns,
	       b->agent_idle_spin_ns);
	printf("supervision: restart backoff %u..%u ms, circuit opens after %u "
	       "failures\n  in %u ms for %u ms, watchdog after %u timeouts, "
	       "heartbeat timeout %u ms\n",
	       v->backoff_initial_ms, v->backoff_max_ms, v->circuit_failures,
	       v->circuit_window_ms, v->circuit_open_ms, v->watchdog_timeouts,
	       v->heartbeat_timeout_ms);
}

int pbus_cmd_check(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct pbus_config *c;
	const char *path = NULL;
	unsigned nwarnings = 0;
	int quiet = 0, o;

	opterr = 0;
	while ((o = getopt_long(argc, argv, ":c:qh", opts, NULL)) != -1) {
		switch (o) {
		case 'c':
			path = optarg;
			break;
		case 'q':
			quiet = 1;
			break;
		case 'h':
			usage(stdout);
			return PBUS_EXIT_OK;
		case ':':
			fprintf(stderr, "pbus check: %s needs a file name\n",
				argv[optind - 1]);
			return PBUS_EXIT_USAGE;
		default:
			fprintf(stderr,
				"pbus check: unknown option '%s'; see "
				"'pbus check --help'\n",
				argv[optind - 1]);
			return PBUS_EXIT_USAGE;
		}
	}
	if (!path && optind < argc)
		path = argv[optind++];
	if (optind < argc) {
		fprintf(stderr, "pbus check: unexpected argument '%s'\n",
			argv[optind]);
		return PBUS_EXIT_USAGE;
	}
	if (!path) {
		fprintf(stderr, "pbus check: no config file; use -c FILE\n");
		return PBUS_EXIT_USAGE;
	}
	if (pbus_cmd_load_config(path, quiet, &c, &nwarnings))
		return PBUS_EXIT_FAIL;
	if (!quiet)
		summary(c, nwarnings);
	pbus_config_destroy(c);
	return PBUS_EXIT_OK;
}
