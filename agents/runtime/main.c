// SPDX-License-Identifier: MIT
/*
 * Agent runtime: pbus_agent_main(), the whole main() of an agent, and the
 * agent's stderr logging (pbus/agent_util.h). It owns the process-level
 * decisions a library must not make: parsing the command line, printing,
 * and turning outcomes into exit statuses (0 stopped, 1 failed, 2 bad
 * command line or bad config).
 *
 * Order: create the agent and register the hooks (the hello announces
 * them), connect (the welcome carries the config), copy the config out of
 * the shared channel so that views into it cannot change under the agent,
 * parse it, then serve. A rejected config therefore shows up at the gateway
 * as an agent that attached and exited with status 2 and a message naming
 * the key on stderr.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pbus/pbus.h>
#include <pbus/agent_util.h>

static char prog[PBUS_NAME_MAX + 8] = "pbus-agent";
static int verbosity = PBUS_LOG_WARN;

static const char *level_name(enum pbus_log_level lvl)
{
	switch (lvl) {
	case PBUS_LOG_ERROR:
		return "error";
	case PBUS_LOG_WARN:
		return "warning";
	case PBUS_LOG_INFO:
		return "info";
	default:
		return "debug";
	}
}

bool pbus_agent_log_on(enum pbus_log_level lvl)
{
	return (int)lvl <= verbosity;
}

void pbus_agent_log(enum pbus_log_level lvl, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	if (!pbus_agent_log_on(lvl))
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* One write per line, so lines from several agents do not mix. */
	fprintf(stderr, "%s: %s: %s\n", prog, level_name(lvl), msg);
}

/* Library messages go through the same filter and prefix. */
static void lib_log(enum pbus_log_level lvl, const char *msg, void *arg)
{
	(void)arg;
	pbus_agent_log(lvl, "%s", msg);
}

void pbus_agent_warn_unused(const struct pbus_cfgr *r)
{
	unsigned cur = 0;
	char key[192];

	while (pbus_cfgr_unused(r, &cur, key, sizeof(key)))
		pbus_agent_log(PBUS_LOG_WARN,
			       "config: unknown key '%s' ignored", key);
}

static void usage(FILE *f, const struct pbus_agent_desc *d)
{
	fprintf(f,
		"usage: %s [-n NAME] [-s SOCKET] [-v|-q]\n"
		"%s\n"
		"\n"
		"Serves the plugin NAME of the gateway at SOCKET; the gateway "
		"sends the\n"
		"config. Normally started by the gateway (`command: [%s]`).\n"
		"\n"
		"  -n, --name NAME     plugin name (default $PBUS_PLUGIN, else "
		"'%s')\n"
		"  -s, --socket PATH   gateway control socket (default "
		"$PBUS_SOCK)\n"
		"  -v, --verbose       more messages on stderr (repeatable)\n"
		"  -q, --quiet         errors only\n"
		"  -h, --help          this text\n",
		prog, d->summary ? d->summary : "", prog, d->name);
	if (d->config_help)
		fprintf(f, "\nconfig:\n%s", d->config_help);
	fprintf(f, "\nhooks:");
	for (int h = 0; h < PBUS_HOOK_COUNT; h++)
		if (d->hooks[h])
			fprintf(f, " %s", pbus_hook_name(h));
	fprintf(f, "\n\nExit status: 0 stopped (or the gateway went away), 1 "
		   "could not connect,\n2 bad command line or config.\n");
}

int pbus_agent_main(int argc, char **argv, const struct pbus_agent_desc *d,
		    void *arg)
{
	static const struct option lo[] = {
		{"name", required_argument, NULL, 'n'},
		{"socket", required_argument, NULL, 's'},
		{"verbose", no_argument, NULL, 'v'},
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct pbus_agent_opts o = {0};
	struct pbus_agent *a = NULL;
	struct pbus_cfgr r;
	void *cfg = NULL;
	const void *raw;
	size_t len;
	int ret, ch, status;

	snprintf(prog, sizeof(prog), "pbus-%s", d->name);
	while ((ch = getopt_long(argc, argv, "n:s:vqh", lo, NULL)) != -1) {
		switch (ch) {
		case 'n':
			o.name = optarg;
			break;
		case 's':
			o.sock_path = optarg;
			break;
		case 'v':
			verbosity++;
			break;
		case 'q':
			verbosity = PBUS_LOG_ERROR;
			break;
		case 'h':
			usage(stdout, d);
			return 0;
		default:
			usage(stderr, d);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "%s: unexpected argument '%s'\n", prog,
			argv[optind]);
		return 2;
	}
	if (!o.name && !getenv("PBUS_PLUGIN"))
		o.name = d->name;
	pbus_set_log_fn(lib_log, NULL);
	ret = pbus_agent_create(&o, &a);
	if (ret) {
		fprintf(stderr,
			"%s: %s (need --socket or PBUS_SOCK, and a "
			"name under %d bytes)\n",
			prog, strerror(-ret), PBUS_NAME_MAX);
		return 2;
	}
	for (int h = 0; h < PBUS_HOOK_COUNT; h++)
		if (d->hooks[h])
			pbus_agent_on(a, h, d->hooks[h], arg);
	ret = pbus_agent_connect(a);
	if (ret) {
		fprintf(stderr, "%s: connect to the gateway: %s\n", prog,
			strerror(-ret));
		pbus_agent_destroy(a);
		return 1;
	}
	raw = pbus_agent_config(a, &len);
	if (raw && len) {
		cfg = malloc(len);
		if (!cfg) {
			fprintf(stderr, "%s: out of memory\n", prog);
			pbus_agent_destroy(a);
			return 1;
		}
		memcpy(cfg, raw, len);
	}
	ret = pbus_cfgr_init(&r, cfg, cfg ? len : 0);
	if (!ret && d->config)
		ret = d->config(&r, arg);
	if (ret || pbus_cfgr_error(&r)) {
		const char *msg = pbus_cfgr_error(&r);

		fprintf(stderr, "%s: bad config: %s\n", prog,
			msg ? msg : strerror(ret < 0 ? -ret : EINVAL));
		pbus_agent_destroy(a);
		free(cfg);
		return 2;
	}
	pbus_agent_warn_unused(&r);
	pbus_agent_log(PBUS_LOG_INFO, "serving plugin '%s'",
		       pbus_agent_name(a));
	ret = pbus_agent_run(a);
	status = ret == 0 || ret == -ENOTCONN ? 0 : 1;
	if (status)
		fprintf(stderr, "%s: %s\n", prog, strerror(-ret));
	pbus_agent_destroy(a);
	free(cfg); /* after the handlers stopped looking at it */
	return status;
}
