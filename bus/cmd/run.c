// SPDX-License-Identifier: MIT
/*
 * `pbus run -c FILE --replay TRAFFIC`: replay MCP requests through the plugin
 * chains without a server, and say what the plugins decided. TRAFFIC holds
 * one JSON-RPC request per line (docs/cli.md, "Replay files"); a line may
 * carry the server's answer in "_result" (then the post hook runs too), its
 * own context in "_context" and HTTP headers for tool_pre_invoke in
 * "_headers". One output line per request, then a summary: the counts per
 * decision, per plugin, and the latency of each hook's chain.
 *
 * Per-plugin latency comes from pbus-collector (collect.h), attached to
 * this process for the replay when it can run (root, BTF; about 0.1 s);
 * without it the table shows counts only. With --graphs DIR the collector
 * also writes RRD history while the file is replayed for --loop seconds,
 * rendered as PNGs into DIR (docs/observability.md).
 *
 * Exit status: 0 the file was replayed, 1 a line was not a JSON object or
 * the config or an agent failed, 2 usage.
 */
#include "cmd.h"
#include "collect.h"
#include "mcp.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <pbus/diag.h>
#include <pbus/hooks.h>
#include <pbus/json.h>
#include <pbus/mgr.h>

#define TARGET_W 30

struct samples {
	uint64_t *ns;
	size_t n, cap;
};

struct run {
	/* options */
	const char *config, *replay, *graphs;
	const char *user, *tenant, *server;
	int quiet, verbose;
	double loop_s;
	/* state */
	struct pbus_mgr *m;
	unsigned np;
	char **lines; /* the replay file, one entry per line */
	size_t nlines;
	unsigned requests, allowed, modified, blocked, failed, other, bad;
	unsigned *blocked_by, *modified_by,
		*failed_by; /* per plugin + "pbus" */
	unsigned *annotated_by;
	struct samples hook[PBUS_HOOK_COUNT];
	uint64_t t_replay;
	unsigned passes;
	struct collect_lat *lat; /* per plugin, NULL without the collector */
	const char *no_lat;	 /* why there is no latency per plugin */
	int no_collector;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: pbus run -c FILE --replay TRAFFIC [options]\n"
		"\n"
		"Replay MCP requests (one JSON-RPC message per line) through "
		"the plugin\n"
		"chains of FILE, without any MCP server, and print what the "
		"plugins decided\n"
		"for each: allowed, modified (and by whom), blocked (by whom, "
		"with the error\n"
		"code the client would get). A line's \"_result\" (the "
		"server's answer) is\n"
		"run through the post hook too. Ends with per-plugin counts "
		"and latencies.\n"
		"\n"
		"  -c, --config FILE     plugin config (see 'pbus check')\n"
		"  -r, --replay TRAFFIC  requests to replay ('-': stdin)\n"
		"  -u, --user USER       context user     (default "
		"$PBUS_USER)\n"
		"  -t, --tenant TENANT   context tenant   (default "
		"$PBUS_TENANT)\n"
		"  -s, --server SERVER   context server   (default "
		"$PBUS_SERVER)\n"
		"  -v, --verbose         show each rewritten payload and block "
		"description,\n"
		"                        and the library's log\n"
		"  -q, --quiet           print only the summary\n"
		"  -g, --graphs DIR      also write RRD history while "
		"replaying for --loop\n"
		"                        seconds and render it as PNG graphs "
		"into DIR\n"
		"  -n, --no-collector    do not attach pbus-collector (by "
		"default it is\n"
		"                        attached when run as root, for the "
		"per-plugin latency)\n"
		"  -l, --loop SECONDS    replay the file again and again for "
		"this long\n"
		"                        (default 0, or 10 with --graphs); "
		"lines and counts\n"
		"                        are those of the first pass\n"
		"  -h, --help            show this help\n"
		"\n"
		"A line's \"_context\" object ({\"user\", \"tenant_id\", "
		"\"server_id\"}) overrides\n"
		"the options for that request. Format: docs/cli.md.\n"
		"Exit status: 0 replayed, 1 failure (bad line, config, "
		"agents), 2 usage.\n");
}

/* ---------------------------------------------------------------- logging */

static int log_max = PBUS_LOG_WARN;

static void log_fn(enum pbus_log_level lvl, const char *msg, void *arg)
{
	if ((int)lvl <= log_max)
		pbus_log_stderr(lvl, msg, arg);
}

/* ---------------------------------------------------------------- input */

static int read_lines(struct run *r)
{
	FILE *f = strcmp(r->replay, "-") ? fopen(r->replay, "r") : stdin;
	char *line = NULL;
	size_t cap = 0, alloc = 0;
	ssize_t n;

	if (!f) {
		fprintf(stderr, "pbus run: %s: %s\n", r->replay,
			strerror(errno));
		return -errno;
	}
	while ((n = getline(&line, &cap, f)) >= 0) {
		if (r->nlines == alloc) {
			char **p;

			alloc = alloc ? alloc * 2 : 256;
			p = realloc(r->lines, alloc * sizeof(*p));
			if (!p)
				break;
			r->lines = p;
		}
		while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = 0;
		r->lines[r->nlines++] = strdup(line);
	}
	free(line);
	if (f != stdin)
		fclose(f);
	return 0;
}

/* ---------------------------------------------------------------- stats */

static void sample(struct samples *s, uint64_t ns)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 256;
		uint64_t *p = realloc(s->ns, cap * sizeof(*p));

		if (!p)
			return;
		s->ns = p;
		s->cap = cap;
	}
	s->ns[s->n++] = ns;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* "12.3us" / "1.25ms" */
static const char *dur(uint64_t ns, char *buf, size_t len)
{
	if (ns < 1000000)
		snprintf(buf, len, "%.1fus", (double)ns / 1e3);
	else if (ns < 1000000000ull)
		snprintf(buf, len, "%.2fms", (double)ns / 1e6);
	else
		snprintf(buf, len, "%.2fs", (double)ns / 1e9);
	return buf;
}

/* Plugin index of @name (np for anything else, e.g. "pbus"). */
static unsigned plugin_idx(const struct run *r, const char *name)
{
	for (unsigned i = 0; name && i < r->np; i++)
		if (!strcmp(pbus_mgr_plugin_name(r->m, i), name))
			return i;
	return r->np;
}

static const char *plugin_label(const struct run *r, unsigned i)
{
	return i < r->np ? pbus_mgr_plugin_name(r->m, i) : "pbus";
}

/* ---------------------------------------------------------------- replay */

/* The context string @key of the line's "_context", else @def. */
static const char *ctx_str(const json_t *ctx, const char *key, const char *alt,
			   const char *def)
{
	const char *s = json_string_value(json_object_get(ctx, key));

	if (!s && alt)
		s = json_string_value(json_object_get(ctx, alt));
	return s ? s : def;
}

static void show_json(const char *label, const json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);

	if (!s)
		return;
	if (strlen(s) > 300)
		strcpy(s + 297, "...");
	printf("         %s %s\n", label, s);
	free(s);
}

/*
 * Append a step that did not simply allow to the decision column: @what is
 * "" for the request (pre hook), "result " for the post hook.
 */
static void say_step(const struct mcp_step *st, const char *what, char *buf,
		     size_t len)
{
	const json_t *code = json_object_get(st->error, "code");
	const char *by = st->by ? st->by : "pbus";
	size_t n = strlen(buf);
	const char *sep = n ? "; " : "";

	if (n >= len)
		return;
	buf += n;
	len -= n;
	switch (st->verdict) {
	case MCP_MODIFIED:
		snprintf(buf, len, "%s%s%s by %s", sep, what,
			 st->rewritten ? "modified" : "annotated", by);
		break;
	case MCP_BLOCKED:
		snprintf(buf, len,
			 "%s%sBLOCKED by %s: %s (%" JSON_INTEGER_FORMAT ") %s",
			 sep, what, by, *st->code ? st->code : "-",
			 json_integer_value(code), st->brief);
		break;
	case MCP_FAILED:
		snprintf(buf, len, "%s%sFAILED in %s: %s", sep, what, by,
			 st->why);
		break;
	}
}

/* Count a step's verdict against its plugin. */
static void tally(struct run *r, const struct mcp_step *st)
{
	unsigned i = plugin_idx(r, st->by);

	if (st->runs)
		sample(&r->hook[st->hook], st->ns);
	if (st->verdict == MCP_BLOCKED)
		r->blocked_by[i]++;
	else if (st->verdict == MCP_MODIFIED && st->rewritten)
		r->modified_by[i]++;
	else if (st->verdict == MCP_MODIFIED)
		r->annotated_by[i]++;
	else if (st->verdict == MCP_FAILED)
		r->failed_by[i]++;
}

/* The target column's width after a method name, so that a long method
 * (notifications/initialized) does not push the decision column. */
static int target_w(const char *method)
{
	int over = method ? (int)strlen(method) - 15 : 0;

	return over <= 0 ? TARGET_W : over < TARGET_W ? TARGET_W - over : 0;
}

static int effective(const struct mcp_step *st)
{
	return st->verdict == MCP_MODIFIED && !st->rewritten ? MCP_ALLOWED
							     : st->verdict;
}

static void replay_line(struct run *r, size_t ln, int print)
{
	const char *text = r->lines[ln], *method, *target;
	struct pbus_gctx g = {0};
	struct pbus_request *rq = NULL;
	struct mcp_step pre = {0}, post = {0};
	json_t *msg, *params, *ctx, *res, *id;
	json_error_t e;
	char idbuf[64], rid[80], tbuf[TARGET_W + 8], dec[1200] = "", ubuf[256];
	int kind, verdict;

	while (*text == ' ' || *text == '\t')
		text++;
	if (!*text || *text == '#')
		return; /* blank lines and comments */
	msg = json_loads(text, JSON_ALLOW_NUL, &e);
	if (!json_is_object(msg)) {
		if (print) {
			r->bad++;
			fprintf(stderr, "pbus run: %s:%zu: %s\n", r->replay,
				ln + 1, msg ? "not a JSON object" : e.text);
		}
		json_decref(msg);
		return;
	}
	id = json_object_get(msg, "id");
	method = json_string_value(json_object_get(msg, "method"));
	mcp_id_str(id, idbuf, sizeof(idbuf));
	kind = mcp_kind(method);
	params = json_object_get(msg, "params");
	if (!json_is_object(params)) {
		params = json_object();
		json_object_set_new(msg, "params", params);
	}
	target = mcp_target(kind, params);
	if (strlen(target) > TARGET_W)
		snprintf(tbuf, sizeof(tbuf), "%.*s...", TARGET_W - 3, target);
	else
		snprintf(tbuf, sizeof(tbuf), "%s", target);
	if (print)
		r->requests++;
	if (!method || kind == MCP_OTHER) {
		if (print) {
			r->other++;
			if (!r->quiet)
				printf("%-6s %-15s %-*s %s\n", idbuf,
				       method ? method : "(no method)",
				       target_w(method), "",
				       method ? "no hook: passed through"
					      : "not a request: skipped");
		}
		json_decref(msg);
		return;
	}
	ctx = json_object_get(msg, "_context");
	snprintf(rid, sizeof(rid), "%s", id ? idbuf : "");
	if (!id)
		snprintf(rid, sizeof(rid), "line-%zu", ln + 1);
	g.request_id = rid;
	g.user = ctx_str(ctx, "user", NULL, r->user);
	g.tenant_id = ctx_str(ctx, "tenant_id", "tenant", r->tenant);
	g.server_id = ctx_str(ctx, "server_id", "server", r->server);
	g.content_type = ctx_str(ctx, "content_type", NULL, NULL);
	if (r->passes && g.user) {
		/* later passes (--loop) as other users, so that per-user rate
		 * limits do not turn every repeat into the same block */
		snprintf(ubuf, sizeof(ubuf), "%s#%u", g.user, r->passes);
		g.user = ubuf;
	}
	if (pbus_request_create(r->m, &g, &rq)) {
		fprintf(stderr, "pbus run: out of memory\n");
		json_decref(msg);
		return;
	}
	mcp_pre(r->m, rq, kind, params, json_object_get(msg, "_headers"), &pre);
	res = json_object_get(msg, "_result");
	if ((pre.verdict == MCP_ALLOWED || pre.verdict == MCP_MODIFIED) &&
	    json_is_object(res))
		mcp_post(r->m, rq, kind, mcp_target(kind, params), res, &post);
	pbus_request_destroy(rq);
	if (!print)
		goto out;
	tally(r, &pre);
	if (post.runs)
		tally(r, &post);
	/* the request's overall verdict: the worst of its two steps, where
	 * metadata added for the gateway alone does not count as a change */
	verdict = effective(&pre) > effective(&post) ? effective(&pre)
						     : effective(&post);
	switch (verdict) {
	case MCP_ALLOWED:
		r->allowed++;
		break;
	case MCP_MODIFIED:
		r->modified++;
		break;
	case MCP_BLOCKED:
		r->blocked++;
		break;
	default:
		r->failed++;
	}
	if (r->quiet)
		goto out;
	say_step(&pre, "", dec, sizeof(dec));
	say_step(&post, "result ", dec, sizeof(dec));
	printf("%-6s %-15s %-*s %s\n", idbuf, method, target_w(method), tbuf,
	       *dec ? dec : "allowed");
	if (r->verbose) {
		if (pre.verdict == MCP_MODIFIED && pre.rewritten)
			show_json("request now:", params);
		if (pre.meta)
			show_json(kind == MCP_TOOL ? "headers now:"
						   : "metadata now:",
				  pre.meta);
		if (post.verdict == MCP_MODIFIED)
			show_json("result now: ", res);
		if (pre.error)
			show_json("client gets:", pre.error);
		if (post.error)
			show_json("client gets:", post.error);
	}
out:
	mcp_step_fini(&pre);
	mcp_step_fini(&post);
	json_decref(msg);
}

/* ---------------------------------------------------------------- report */

static void header(const struct run *r)
{
	printf("pbus run: replaying %s through the %u plugin%s of %s\n",
	       strcmp(r->replay, "-") ? r->replay : "stdin", r->np,
	       r->np == 1 ? "" : "s", r->config);
	if (r->quiet)
		return;
	printf("\n"
	       "Each MCP request goes through its hook's plugin chain, as "
	       "in a gateway: the\n"
	       "request before it would reach the server and, when the file "
	       "gives the server's\n"
	       "answer, that result before it would reach the client. "
	       "DECISION says:\n"
	       "  allowed               no plugin objected; passed on "
	       "unchanged\n"
	       "  modified by P         plugin P rewrote it (e.g. masked "
	       "PII); the rewritten\n"
	       "                        version is what the server or "
	       "client receives\n"
	       "  annotated by P        plugin P added metadata or "
	       "headers only (for the\n"
	       "                        gateway, not part of the MCP "
	       "message)\n"
	       "  BLOCKED by P: CODE (N) why\n"
	       "                        plugin P refused it; the client gets "
	       "JSON-RPC error N\n"
	       "  FAILED in P           plugin P itself failed (crash, "
	       "timeout); error -32603\n"
	       "  \"result ...\" is about the server's answer, the rest "
	       "about the request.\n"
	       "\n");
	printf("%-6s %-15s %-*s %s\n", "ID", "METHOD", TARGET_W, "TARGET",
	       "DECISION");
}

static void by_list(const struct run *r, const char *label, const unsigned *cnt)
{
	int any = 0;

	for (unsigned i = 0; i <= r->np; i++) {
		if (!cnt[i])
			continue;
		printf("%s %s %u", any ? "," : label, plugin_label(r, i),
		       cnt[i]);
		any = 1;
	}
	if (any)
		printf("\n");
}

static void summary(struct run *r, uint64_t wall)
{
	char a[32], b[32];

	printf("\nSummary: %u request%s in %.2f s: %u allowed, %u modified, "
	       "%u blocked, %u failed",
	       r->requests, r->requests == 1 ? "" : "s", (double)wall / 1e9,
	       r->allowed, r->modified, r->blocked, r->failed);
	if (r->other)
		printf(", %u without hooks", r->other);
	if (r->bad)
		printf(", %u unreadable line%s", r->bad,
		       r->bad == 1 ? "" : "s");
	printf("\n");
	by_list(r, "  blocked by: ", r->blocked_by);
	by_list(r, "  modified by:", r->modified_by);
	by_list(r, "  failed in:  ", r->failed_by);
	by_list(r,
		"  annotated by (metadata or headers only, counted as "
		"allowed):\n              ",
		r->annotated_by);
	if (r->passes > 1)
		printf("  (the file was replayed %u times; lines and counts "
		       "above are the first pass,\n   plugin counts below "
		       "are all passes)\n",
		       r->passes);

	printf("\nPer plugin (every call to its agent, all hooks%s):\n",
	       r->passes > 1 ? ", all passes" : "");
	printf("  %-20s %7s %8s %10s %6s %7s %9s %9s\n", "PLUGIN", "CALLS",
	       "MODIFIED", "VIOLATIONS", "ERRORS", "SKIPPED", "P50", "P99");
	for (unsigned i = 0; i < r->np; i++) {
		struct pbus_plugin_stats s;

		if (pbus_mgr_plugin_stats(r->m, i, &s))
			continue;
		printf("  %-20s %7" PRIu64 " %8" PRIu64 " %10" PRIu64
		       " %6" PRIu64 " %7" PRIu64,
		       pbus_mgr_plugin_name(r->m, i), s.calls, s.modified,
		       s.violations, s.errors, s.skipped);
		if (r->lat && r->lat[i].calls)
			printf(" %9s %9s", dur(r->lat[i].p50_ns, a, sizeof(a)),
			       dur(r->lat[i].p99_ns, b, sizeof(b)));
		else
			printf(" %9s %9s", "-", "-");
		printf("%s\n", s.disabled ? "  (disabled after errors)" : "");
	}
	printf("  VIOLATIONS block the request only in the enforcing modes "
	       "(audit and\n  permissive plugins just count them); SKIPPED: "
	       "the plugin's conditions did\n  not match.\n");
	if (r->lat)
		printf("  P50/P99: one call's round trip, gateway to agent and "
		       "back, measured in\n  the gateway by pbus-collector "
		       "(eBPF); within 25 %% (histogram buckets)\n");
	else
		printf("  (no per-plugin latency: %s; run as root for "
		       "pbus-collector)\n",
		       r->no_lat ? r->no_lat : "no collector");

	printf("\nLatency per hook chain (pbus_run(): every plugin of the "
	       "hook, round trips\nthrough shared memory included%s):\n",
	       r->passes > 1 ? "; first pass" : "");
	printf("  %-24s %8s %10s %10s %10s\n", "HOOK", "CHAINS", "P50", "P99",
	       "MAX");
	for (int h = 0; h < PBUS_HOOK_COUNT; h++) {
		struct samples *s = &r->hook[h];
		char c[32];

		if (!s->n)
			continue;
		qsort(s->ns, s->n, sizeof(*s->ns), cmp_u64);
		printf("  %-24s %8zu %10s %10s %10s\n", pbus_hook_name(h), s->n,
		       dur(s->ns[s->n / 2], a, sizeof(a)),
		       dur(s->ns[(size_t)((double)s->n * 0.99)], b, sizeof(b)),
		       dur(s->ns[s->n - 1], c, sizeof(c)));
	}
}

/* ---------------------------------------------------------------- collector */

static int mkdir_p(const char *path)
{
	char buf[PATH_MAX + 16];

	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = buf + 1; *p; p++)
		if (*p == '/') {
			*p = 0;
			mkdir(buf, 0755);
			*p = '/';
		}
	return mkdir(buf, 0755) && errno != EEXIST ? -errno : 0;
}

/* Attach pbus-collector when it can run; NULL (and r->no_lat) if not. */
static struct collect *start_collector(struct run *r, char *log, size_t len)
{
	char rrd[PATH_MAX], *names;
	struct collect *c = NULL;
	size_t n = 1;
	int ret;

	if (r->no_collector) {
		r->no_lat = "--no-collector";
		goto none;
	}
	r->no_lat = collect_blocker();
	if (r->no_lat)
		goto none;
	if (r->graphs) {
		snprintf(rrd, sizeof(rrd), "%s/rrd", r->graphs);
		ret = mkdir_p(rrd);
		if (ret) {
			fprintf(stderr, "pbus run: %s: %s\n", rrd,
				strerror(-ret));
			r->no_lat = "no graphs directory";
			goto none;
		}
		snprintf(log, len, "%s/collector.log", r->graphs);
	} else {
		snprintf(log, len, "/tmp/pbus-run-%d-collector.log",
			 (int)getpid());
	}
	for (unsigned i = 0; i < r->np; i++)
		n += strlen(pbus_mgr_plugin_name(r->m, i)) + 16;
	names = calloc(1, n);
	if (!names)
		goto none;
	for (unsigned i = 0; i < r->np; i++)
		sprintf(names + strlen(names), "%s%u=%s", i ? "," : "", i,
			pbus_mgr_plugin_name(r->m, i));
	ret = collect_start(names, r->graphs ? rrd : NULL, log, &c);
	free(names);
	if (ret) {
		fprintf(stderr,
			"pbus run: pbus-collector did not attach (%s); "
			"see %s\n",
			strerror(-ret), log);
		r->no_lat = "pbus-collector did not attach";
		c = NULL;
	}
none:
	if (!c && r->graphs)
		fprintf(stderr, "pbus run: no graphs: %s\n", r->no_lat);
	return c;
}

static void graphs(struct run *r, struct collect *c, unsigned secs)
{
	struct dirent **ents = NULL;
	int n, shown = 0;

	printf("\nGraphs (p50/p99/max latency and calls/s per plugin and "
	       "hook, %.0f s of replay):\n",
	       r->loop_s);
	fflush(stdout);
	if (collect_graphs(c, r->graphs, secs))
		fprintf(stderr,
			"pbus run: rendering the graphs failed; see "
			"%s/collector.log\n",
			r->graphs);
	n = scandir(r->graphs, &ents, NULL, alphasort);
	for (int i = 0; i < n; i++) {
		size_t l = strlen(ents[i]->d_name);

		if (l > 4 && !strcmp(ents[i]->d_name + l - 4, ".png")) {
			printf("  %s/%s\n", r->graphs, ents[i]->d_name);
			shown++;
		}
		free(ents[i]);
	}
	free(ents);
	if (!shown)
		printf("  (none)\n");
	printf("  RRD files in %s/rrd/\n", r->graphs);
}

/* ---------------------------------------------------------------- main */

static void *replay_all(void *arg)
{
	struct run *r = arg;
	uint64_t until = mcp_now_ns() + (uint64_t)(r->loop_s * 1e9);

	do {
		for (size_t i = 0; i < r->nlines; i++)
			replay_line(r, i, r->passes == 0);
		if (r->passes++ == 0) {
			r->t_replay = mcp_now_ns() - r->t_replay;
			fflush(stdout);
		}
	} while (mcp_now_ns() < until);
	return NULL;
}

static const char *env_or(const char *v, const char *name)
{
	const char *e = getenv(name);

	return v ? v : (e && *e ? e : NULL);
}

int pbus_cmd_run(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"replay", required_argument, NULL, 'r'},
		{"user", required_argument, NULL, 'u'},
		{"tenant", required_argument, NULL, 't'},
		{"server", required_argument, NULL, 's'},
		{"verbose", no_argument, NULL, 'v'},
		{"quiet", no_argument, NULL, 'q'},
		{"graphs", required_argument, NULL, 'g'},
		{"loop", required_argument, NULL, 'l'},
		{"no-collector", no_argument, NULL, 'n'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct run r = {.loop_s = -1};
	struct pbus_config *cfg = NULL;
	struct collect *col;
	char log[PATH_MAX];
	pthread_t th;
	int o, ret, rc = PBUS_EXIT_OK;
	uint64_t t0;
	char *end;

	opterr = 0;
	optind = 1;
	while ((o = getopt_long(argc, argv, ":c:r:u:t:s:vqg:l:nh", opts,
				NULL)) != -1) {
		switch (o) {
		case 'c':
			r.config = optarg;
			break;
		case 'r':
			r.replay = optarg;
			break;
		case 'u':
			r.user = optarg;
			break;
		case 't':
			r.tenant = optarg;
			break;
		case 's':
			r.server = optarg;
			break;
		case 'v':
			r.verbose = 1;
			break;
		case 'q':
			r.quiet = 1;
			break;
		case 'g':
			r.graphs = optarg;
			break;
		case 'l':
			r.loop_s = strtod(optarg, &end);
			if (*end || r.loop_s < 0 || r.loop_s > 86400) {
				fprintf(stderr,
					"pbus run: --loop wants "
					"seconds, not '%s'\n",
					optarg);
				return PBUS_EXIT_USAGE;
			}
			break;
		case 'n':
			r.no_collector = 1;
			break;
		case 'h':
			usage(stdout);
			return PBUS_EXIT_OK;
		case ':':
			fprintf(stderr, "pbus run: %s needs a value\n",
				argv[optind - 1]);
			return PBUS_EXIT_USAGE;
		default:
			fprintf(stderr,
				"pbus run: unknown option '%s'; see 'pbus "
				"run --help'\n",
				argv[optind - 1]);
			return PBUS_EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "pbus run: unexpected argument '%s'\n",
			argv[optind]);
		return PBUS_EXIT_USAGE;
	}
	if (!r.config || !r.replay) {
		fprintf(stderr, "pbus run: need -c FILE and --replay TRAFFIC; "
				"see 'pbus run --help'\n");
		return PBUS_EXIT_USAGE;
	}
	r.user = env_or(r.user, "PBUS_USER");
	r.tenant = env_or(r.tenant, "PBUS_TENANT");
	r.server = env_or(r.server, "PBUS_SERVER");
	if (r.loop_s < 0)
		r.loop_s = r.graphs && !r.no_collector && !collect_blocker()
				   ? 10
				   : 0;
	log_max = r.verbose ? PBUS_LOG_DEBUG : PBUS_LOG_WARN;
	pbus_set_log_fn(log_fn, NULL);

	if (read_lines(&r))
		return PBUS_EXIT_FAIL;
	if (pbus_cmd_load_config(r.config, 1, &cfg, NULL))
		return PBUS_EXIT_FAIL;
	t0 = mcp_now_ns();
	ret = pbus_mgr_open(cfg, NULL, &r.m);
	if (ret) {
		fprintf(stderr, "pbus run: cannot start the plugins: %s\n",
			strerror(-ret));
		pbus_config_destroy(cfg);
		return PBUS_EXIT_FAIL;
	}
	r.np = pbus_mgr_plugin_count(r.m);
	if (pbus_mgr_wait_ready(r.m, 10000)) {
		fprintf(stderr, "pbus run: some agents did not attach within "
				"10 s; their calls fail (see above)\n");
		rc = PBUS_EXIT_FAIL;
	}
	r.blocked_by = calloc(r.np + 1, sizeof(unsigned));
	r.modified_by = calloc(r.np + 1, sizeof(unsigned));
	r.failed_by = calloc(r.np + 1, sizeof(unsigned));
	r.annotated_by = calloc(r.np + 1, sizeof(unsigned));
	header(&r);
	col = start_collector(&r, log, sizeof(log));
	if (!r.verbose)
		log_max = PBUS_LOG_ERROR; /* decisions are in the table */
	r.t_replay = mcp_now_ns();
	/* a thread of its own: its probe batch is flushed when it exits */
	if (pthread_create(&th, NULL, replay_all, &r) == 0)
		pthread_join(th, NULL);
	else
		replay_all(&r);
	log_max = r.verbose ? PBUS_LOG_DEBUG : PBUS_LOG_WARN;
	if (col) {
		r.lat = calloc(r.np + 1, sizeof(*r.lat));
		if (!r.lat || collect_latency(col, r.np, r.lat)) {
			free(r.lat);
			r.lat = NULL;
			r.no_lat = "the collector's maps could not be read";
		}
	}
	summary(&r, r.t_replay);
	if (col && r.graphs)
		graphs(&r, col,
		       (unsigned)((mcp_now_ns() - t0) / 1000000000ull) + 5);
	collect_stop(col);
	if (col && !r.graphs)
		unlink(log);
	pbus_mgr_close(r.m);
	pbus_config_destroy(cfg);
	for (size_t i = 0; i < r.nlines; i++)
		free(r.lines[i]);
	free(r.lines);
	for (int h = 0; h < PBUS_HOOK_COUNT; h++)
		free(r.hook[h].ns);
	free(r.blocked_by);
	free(r.modified_by);
	free(r.failed_by);
	free(r.annotated_by);
	free(r.lat);
	return r.bad ? PBUS_EXIT_FAIL : rc;
}
