// SPDX-License-Identifier: MIT
/*
 * The sample agents under load (bench_agents.h). For each agent: open a bus,
 * declare the plugin with a typical config, spawn build/bin/pbus-<name>,
 * then call its hook back to back with a typical ~1 KiB payload (encoded
 * into the lane before the clock starts) and time pbus_invoke() until the
 * answer is in the lane. The agent really works on every call: the deny
 * list scans every argument, the PII filter runs every detector and masks,
 * the rate limiter counts three dimensions, and so on.
 *
 * The Python column is the framework's in-process figure (PARITY.md; the
 * issue's numbers): PII filter 56-102 us per call (the ratio uses 56, the
 * harder bar), deny list 34 us; for the other plugins no figure was
 * published and 30 us, a typical in-process Python hook, stands in. The
 * target is a p50 at most 1/10 of it. Our figure includes the whole
 * cross-process round trip; the Python one is a function call.
 */
#include "bench_agents.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pbus/json.h>
#include <pbus/pbus.h>

#include "bench.h"

/* ~1 KiB of ordinary text: words, numbers, punctuation; no PII. */
#define TEXT                                                                   \
	"The quarterly report covers 12 regions and 340 stores. Revenue "      \
	"grew in most markets while costs stayed flat; the team expects the "  \
	"new logistics hub to open in week 32. Customer feedback was mostly "  \
	"positive, with complaints about delivery times in the north. The "    \
	"board approved a budget of 4.5 million for the next phase, and the "  \
	"pilot program will expand to 25 more locations. Staff training "      \
	"continues through the summer. Inventory turnover improved from 6.1 "  \
	"to 7.4, and returns fell by 3 percent. Please review the attached "   \
	"tables before the meeting on Thursday and send questions to the "     \
	"planning office. Next steps: finalize vendor contracts, hire two "    \
	"analysts, and publish the roadmap. Risks include supply delays and "  \
	"currency swings; mitigation plans are in section 4. The appendix "    \
	"lists every store with its sales, margin and headcount, sorted by "   \
	"region and then by city, with notes where numbers were estimated. "

#define PII_TEXT                                                               \
	TEXT "For details contact jane.doe@corp-mail.com or call "             \
	     "555-123-4567 before Friday."

struct row {
	const char *agent; /* NULL: the passthrough floor */
	const char *label; /* what is measured */
	int hook;
	const char *cfg;     /* JSON, ' for "; passthrough: its --mode */
	const char *payload; /* JSON */
	const char *gctx, *lctx;
	double py_us;	/* the Python figure the ratio uses */
	const char *py; /* as printed */
	int py_assumed; /* 1: no published figure, 30 us stands in */
};

static const struct row rows[] = {
	{NULL, "floor: answer at once", PBUS_HOOK_TOOL_PRE_INVOKE, "pass",
	 "{'name':'search','args':{'q':'" TEXT "','limit':10}}", NULL, NULL, 0,
	 "-", 1},
	{NULL, "floor: read payload", PBUS_HOOK_TOOL_PRE_INVOKE, "touch",
	 "{'name':'search','args':{'q':'" TEXT "','limit':10}}", NULL, NULL, 0,
	 "-", 1},
	{"deny_filter", "prompt_pre, clean", PBUS_HOOK_PROMPT_PRE_FETCH,
	 "{'words':['innovative','groundbreaking','revolutionary']}",
	 "{'prompt_id':'summary','args':{'topic':'quarterly "
	 "report','text':'" TEXT "'}}",
	 NULL, NULL, 34, "34", 0},
	{"regex_filter", "tool_pre, 2 rules", PBUS_HOOK_TOOL_PRE_INVOKE,
	 "{'words':[{'search':'crap','replace':'crud'},{'search':'crud',"
	 "'replace':'yikes'}]}",
	 "{'name':'search','args':{'q':'crap " TEXT "','limit':10}}", NULL,
	 NULL, 30, "30*", 1},
	{"pii_filter", "tool_pre, 2 PII", PBUS_HOOK_TOOL_PRE_INVOKE,
	 "{'redaction_text':'[PII_REDACTED]','log_detections':false,"
	 "'whitelist_patterns':['test@example.com','555-555-5555']}",
	 "{'name':'search','args':{'q':'" PII_TEXT "','limit':10}}", NULL, NULL,
	 56, "56-102", 0},
	{"pii_filter", "tool_pre, clean", PBUS_HOOK_TOOL_PRE_INVOKE,
	 "{'redaction_text':'[PII_REDACTED]','log_detections':false,"
	 "'whitelist_patterns':['test@example.com','555-555-5555']}",
	 "{'name':'search','args':{'q':'" TEXT "','limit':10}}", NULL, NULL, 56,
	 "56-102", 0},
	{"pii_filter", "tool_post, MCP", PBUS_HOOK_TOOL_POST_INVOKE,
	 "{'log_detections':false}",
	 "{'name':'search','result':{'content':[{'type':'text','text':"
	 "'" PII_TEXT "'}],'isError':false}}",
	 NULL, NULL, 56, "56-102", 0},
	{"output_length_guard", "tool_post, MCP", PBUS_HOOK_TOOL_POST_INVOKE,
	 "{'max_chars':4096}",
	 "{'name':'search','result':{'content':[{'type':'text','text':'" TEXT
	 "'}],'isError':false}}",
	 NULL, NULL, 30, "30*", 1},
	{"rate_limiter", "tool_pre, 3 dims", PBUS_HOOK_TOOL_PRE_INVOKE,
	 "{'by_user':'1000000000/s','by_tenant':'1000000000/s','by_tool':"
	 "{'search':'1000000000/s'}}",
	 "{'name':'search','args':{'q':'" TEXT "'}}",
	 "{'request_id':'r1','user':'alice@example.com','tenant_id':'acme'}",
	 NULL, 30, "30*", 1},
	{"resource_filter", "resource_pre", PBUS_HOOK_RESOURCE_PRE_FETCH,
	 "{'blocked_domains':['evil.com','malware.example']}",
	 "{'uri':'https://docs.example.com/reports/q3.txt','metadata':{"
	 "'note':'" TEXT "'}}",
	 "{'request_id':'r1','user':'alice@example.com'}", NULL, 30, "30*", 1},
	{"resource_filter", "resource_post, filter",
	 PBUS_HOOK_RESOURCE_POST_FETCH,
	 "{'content_filters':[{'pattern':'password\\\\s*[:=]\\\\s*\\\\S+',"
	 "'replacement':'password: [REDACTED]'}]}",
	 "{'uri':'https://docs.example.com/q3.txt','content':{'type':'text',"
	 "'uri':'https://docs.example.com/q3.txt','text':'" TEXT "'}}",
	 NULL,
	 "{'state':{'uri_validated':true,'original_uri':"
	 "'https://docs.example.com/q3.txt'},'metadata':{}}",
	 30, "30*", 1},
	{"header_injector", "resource_pre", PBUS_HOOK_RESOURCE_PRE_FETCH,
	 "{'headers':{'X-Api-Key':'k-123','X-Env':'prod'},'uri_prefixes':"
	 "['https://api.example.com/v1']}",
	 "{'uri':'https://api.example.com/v1/items','metadata':{'headers':{"
	 "'Accept':'application/json'},'note':'" TEXT "'}}",
	 NULL, NULL, 30, "30*", 1},
	{"schema_guard", "tool_pre, valid", PBUS_HOOK_TOOL_PRE_INVOKE,
	 "{'arg_schemas':{'search':{'type':'object','required':['q'],"
	 "'properties':{'q':{'type':'string'},'limit':{'type':'integer'},"
	 "'tags':{'type':'array','items':{'type':'string'}}}}}}",
	 "{'name':'search','args':{'q':'" TEXT
	 "','limit':10,'tags':['a','b']}}",
	 NULL, NULL, 30, "30*", 1},
};

/* ---------------------------------------------------------------- JSON */

/* @s (' for ") as msgpack into @sb (initialised here). 0 or -EINVAL. */
static int to_mp(const char *s, msgpack_sbuffer *sb)
{
	msgpack_packer pk;
	json_error_t e;
	char *t;
	json_t *j;
	int ret;

	msgpack_sbuffer_init(sb);
	if (!s)
		return 0;
	t = strdup(s);
	if (!t)
		return -ENOMEM;
	for (char *p = t; *p; p++)
		if (*p == '\'')
			*p = '"';
	j = json_loads(t, 0, &e);
	free(t);
	if (!j)
		return -EINVAL;
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	ret = pbus_json_pack(&pk, j);
	json_decref(j);
	return ret;
}

/* ---------------------------------------------------------------- running */

static pid_t spawn(const char *bindir, const char *agent, const char *mode,
		   const char *sock)
{
	char path[4096], prog[64], gw[16];
	pid_t pid;

	snprintf(prog, sizeof(prog), "pbus-%s", agent ? agent : "passthrough");
	snprintf(path, sizeof(path), "%s/%s", bindir, prog);
	snprintf(gw, sizeof(gw), "%d", (int)getpid());
	pid = fork();
	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);

		if (fd >= 0)
			dup2(fd, 2);
		setenv("PBUS_SOCK", sock, 1);
		setenv("PBUS_PLUGIN", "bench", 1);
		/* spawned by its gateway, as the supervisor does it */
		setenv("PBUS_SPAWNED", "1", 1);
		setenv("PBUS_GATEWAY_PID", gw, 1);
		if (agent)
			execl(path, prog, (char *)NULL);
		else
			execl(path, prog, "--mode", mode, (char *)NULL);
		_exit(127);
	}
	return pid;
}

static void reap(pid_t pid)
{
	int st;

	kill(pid, SIGTERM);
	for (int i = 0; i < 200; i++) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			return;
		usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
}

static int run_row(const struct row *r, const char *bindir, size_t n,
		   struct bench_res *res, size_t *plen)
{
	struct pbus_bus_opts o = {0};
	struct pbus_bus *bus = NULL;
	struct pbus_peer *peer;
	struct pbus_lane *lane = NULL;
	msgpack_sbuffer cfg, pl, gc, lc;
	uint64_t *lat = NULL, t0, wall;
	char sock[108];
	pid_t pid = -1;
	int ret;

	snprintf(sock, sizeof(sock), "/tmp/pbus-bench-agents-%d.sock",
		 (int)getpid());
	unlink(sock);
	if (to_mp(r->agent ? r->cfg : NULL, &cfg) || to_mp(r->payload, &pl) ||
	    to_mp(r->gctx, &gc) || to_mp(r->lctx, &lc))
		return -EINVAL;
	*plen = pl.size;
	o.sock_path = sock;
	ret = pbus_bus_open(&o, &bus);
	if (ret)
		goto out;
	ret = pbus_bus_add_peer(bus, "bench", cfg.data, cfg.size, &peer);
	if (ret)
		goto out;
	pid = spawn(bindir, r->agent, r->cfg, sock);
	ret = pid < 0 ? -errno : pbus_peer_wait_up(peer, 5000);
	if (ret)
		goto out;
	ret = pbus_lane_acquire(bus, &lane);
	if (ret)
		goto out;
	lat = malloc(n * sizeof(*lat));
	if (!lat) {
		ret = -ENOMEM;
		goto out;
	}
	wall = 0;
	for (size_t i = 0; i < n + n / 10; i++) {
		struct pbus_call_args a = {.hook = r->hook,
					   .timeout_ns = 5000000000ull};
		struct pbus_result res1;

		pbus_lane_reset(lane);
		ret = pbus_lane_write(lane, pl.data, pl.size, &a.payload);
		if (!ret && gc.size)
			ret = pbus_lane_write(lane, gc.data, gc.size, &a.gctx);
		if (!ret && lc.size)
			ret = pbus_lane_write(lane, lc.data, lc.size, &a.lctx);
		if (ret)
			goto out;
		t0 = bench_now();
		ret = pbus_invoke(peer, lane, &a, &res1);
		if (ret)
			goto out;
		if (res1.flags & (PBUS_RF_ERROR | PBUS_RF_UNSUPPORTED)) {
			ret = -EPROTO;
			goto out;
		}
		if (i >= n / 10) { /* the first tenth warms up */
			lat[i - n / 10] = bench_now() - t0;
			wall += lat[i - n / 10];
		}
	}
	bench_stats(lat, n, wall, res);
out:
	free(lat);
	if (lane)
		pbus_lane_release(lane);
	if (pid > 0)
		reap(pid);
	pbus_bus_close(bus);
	msgpack_sbuffer_destroy(&cfg);
	msgpack_sbuffer_destroy(&pl);
	msgpack_sbuffer_destroy(&gc);
	msgpack_sbuffer_destroy(&lc);
	return ret;
}

int bench_agents(FILE *out, const char *bindir, int quick)
{
	size_t n = quick ? 5000 : 50000;
	unsigned met = 0, total = 0;
	double floor_us = 0;
	int ret = 0;

	fprintf(out,
		"\nsample agents: hook round trip, gateway thread -> agent "
		"process -> answer (%zu calls each, %s run)\n\n"
		"%-20s %-22s %6s | %8s %8s %8s | %8s %7s  %s\n",
		n, quick ? "quick" : "full", "agent", "hook, payload", "bytes",
		"p50 us", "p99 us", "-floor", "Python", "p50/Py",
		"target p50 <= Py/10");
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const struct row *r = &rows[i];
		struct bench_res res;
		size_t plen = 0;
		int err = run_row(r, bindir, n, &res, &plen);
		double ratio;

		fflush(out);
		if (err) {
			fprintf(out, "%-20s %-22s %6s | failed: %s\n",
				r->agent ? r->agent : "passthrough", r->label,
				"", strerror(-err));
			ret = err;
			continue;
		}
		if (!r->agent) {
			fprintf(out, "%-20s %-22s %6zu | %8.2f %8.2f %8s |\n",
				"passthrough", r->label, plen, res.p50, res.p99,
				"");
			floor_us = res.p50; /* the last floor: reading */
			continue;
		}
		ratio = res.p50 / r->py_us;
		total++;
		met += ratio <= 0.1;
		fprintf(out,
			"%-20s %-22s %6zu | %8.2f %8.2f %8.2f | %8s %7.3f  "
			"%s\n",
			r->agent, r->label, plen, res.p50, res.p99,
			res.p50 - floor_us, r->py, ratio,
			ratio <= 0.1 ? "met" : "MISSED");
	}
	fprintf(out,
		"\nPython: the framework's in-process figures (PARITY.md): PII "
		"filter 56-102 us\nper call (the ratio uses 56), deny list 34 "
		"us; * = no published figure, 30 us\n(a typical in-process "
		"Python hook) stands in. The floor rows are the bus alone:\n"
		"pbus-passthrough answering at once, and reading every payload "
		"byte first;\n-floor is an agent's p50 minus the second, its "
		"own work. Targets met: %u of %u.\n",
		met, total);
	return ret;
}
