// SPDX-License-Identifier: MIT
/*
 * Proxy benchmark (issue: the pbus CLI): what `pbus proxy` adds to one MCP
 * tools/call. A client in this process speaks newline-delimited JSON-RPC
 * over pipes, one call at a time (send, wait for the answer), as an MCP
 * client does, to
 *
 *   direct         agent-mcp_echo, the fake MCP server, alone
 *   relay          pbus proxy with no plugins in front of it
 *   3 agents       pbus proxy with pii_filter, schema_guard and regex_filter
 *                  on tool_pre_invoke and tool_post_invoke (six agent round
 *                  trips per call); clean arguments: every plugin allows
 *   3 agents, PII  the same with an e-mail address in the arguments:
 *                  pii_filter masks it on the way in (the proxy rebuilds
 *                  the request) and the echoed result is masked again on
 *                  the way out
 *
 * and prints p50/p99 per row and the difference to direct. Every server
 * and agent is a separate process on the same machine; the client's clock
 * is bench_now().
 */
#include "bench_proxy.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#define NROWS 4
#define ROUNDS 10

struct peer {
	pid_t pid;
	int in, out; /* its stdin (we write), its stdout (we read) */
	char buf[1 << 16];
	size_t len;
};

static int peer_start(struct peer *p, char *const argv[])
{
	int in[2], out[2];

	memset(p, 0, sizeof(*p));
	if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC))
		return -errno;
	p->pid = fork();
	if (p->pid < 0)
		return -errno;
	if (p->pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		dup2(in[0], 0);
		dup2(out[1], 1);
		if (null >= 0 && !getenv("PBUS_BENCH_VERBOSE"))
			dup2(null, 2);
		execv(argv[0], argv);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	p->in = in[1];
	p->out = out[0];
	return 0;
}

static void peer_stop(struct peer *p)
{
	int st;

	close(p->in);
	close(p->out);
	for (int i = 0; i < 300; i++) {
		if (waitpid(p->pid, &st, WNOHANG) == p->pid)
			return;
		usleep(10000);
	}
	kill(p->pid, SIGKILL);
	waitpid(p->pid, &st, 0);
}

/* Send @line; wait (10 s at most) for one answer line. 0 or -errno. */
static int call(struct peer *p, const char *line, size_t n)
{
	if (write(p->in, line, n) != (ssize_t)n)
		return -EPIPE;
	for (;;) {
		char *nl = memchr(p->buf, '\n', p->len);
		struct pollfd f = {p->out, POLLIN, 0};
		ssize_t r;

		if (nl) {
			size_t used = (size_t)(nl - p->buf) + 1;

			memmove(p->buf, nl + 1, p->len - used);
			p->len -= used;
			return 0;
		}
		if (p->len == sizeof(p->buf))
			return -EMSGSIZE;
		if (poll(&f, 1, 10000) <= 0)
			return -ETIMEDOUT;
		r = read(p->out, p->buf + p->len, sizeof(p->buf) - p->len);
		if (r <= 0)
			return -EPIPE;
		p->len += (size_t)r;
	}
}

static const char init_line[] =
	"{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\",\"params\":"
	"{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{},"
	"\"clientInfo\":{\"name\":\"bench\",\"version\":\"1\"}}}\n";

/* @n calls of tools/call with @args, ids from *@id on; latencies (ns) to
 * @lat (NULL: warm-up). 0 or -errno. */
static int calls(struct peer *p, const char *args, size_t n, size_t *id,
		 uint64_t *lat)
{
	char line[1024];

	for (size_t i = 0; i < n; i++) {
		int len = snprintf(line, sizeof(line),
				   "{\"jsonrpc\":\"2.0\",\"id\":%zu,\"method\":"
				   "\"tools/call\",\"params\":{\"name\":"
				   "\"echo\",\"arguments\":%s}}\n",
				   ++*id, args);
		uint64_t t = bench_now();
		int ret = call(p, line, (size_t)len);

		if (ret)
			return ret;
		if (lat)
			lat[i] = bench_now() - t;
	}
	return 0;
}

static int write_config(const char *path, const char *bindir, int plugins)
{
	FILE *f = fopen(path, "w");

	if (!f)
		return -errno;
	fprintf(f, "plugin_settings: {plugin_timeout: 10}\nplugins:\n");
	if (plugins)
		fprintf(f,
			"  - name: pii_filter\n    kind: agent\n"
			"    hooks: [tool_pre_invoke, tool_post_invoke]\n"
			"    priority: 10\n"
			"    command: [\"%s/pbus-pii_filter\", \"-q\"]\n"
			"    config: {log_detections: false}\n"
			"  - name: schema_guard\n    kind: agent\n"
			"    hooks: [tool_pre_invoke, tool_post_invoke]\n"
			"    priority: 20\n"
			"    command: [\"%s/pbus-schema_guard\"]\n"
			"    config:\n"
			"      arg_schemas:\n"
			"        echo: {type: object, required: [message],\n"
			"               properties: {message: {type: string},\n"
			"                            n: {type: integer}}}\n"
			"  - name: regex_filter\n    kind: agent\n"
			"    hooks: [tool_pre_invoke, tool_post_invoke]\n"
			"    priority: 30\n"
			"    command: [\"%s/pbus-regex_filter\"]\n"
			"    config: {words: [{search: \"\\\\bcrap\\\\b\", "
			"replace: crud}]}\n",
			bindir, bindir, bindir);
	fclose(f);
	return 0;
}

int bench_proxy(FILE *out, const char *bindir, int quick)
{
	static const char *const clean =
		"{\"message\":\"the quarterly numbers look fine\",\"n\":42}";
	static const char *const pii =
		"{\"message\":\"mail the numbers to jane.doe@example.com\","
		"\"n\":42}";
	static const char *const rows[] = {
		"direct (no proxy)", "pbus proxy, no plugins",
		"pbus proxy, 3 agents", "pbus proxy, 3 agents, PII masked"};
	char pbus[PATH_MAX], echo[PATH_MAX], cfg0[64], cfg3[64];
	struct bench_res res[NROWS];
	struct peer peers[NROWS];
	size_t n = quick ? 2000 : 10000, ids[NROWS] = {0};
	uint64_t *lat[NROWS], wall[NROWS] = {0};
	int ret = 0, started = 0;

	for (int r = 0; r < NROWS; r++)
		lat[r] = calloc(n, sizeof(uint64_t));

	snprintf(pbus, sizeof(pbus), "%s/pbus", bindir);
	snprintf(echo, sizeof(echo), "%s/../tests/agent-mcp_echo", bindir);
	if (!lat[0] || !lat[1] || !lat[2] || !lat[3]) {
		ret = -ENOMEM;
		goto out;
	}
	if (access(pbus, X_OK) || access(echo, X_OK)) {
		fprintf(stderr,
			"pbus-bench: proxy: needs %s and %s (make tests)\n",
			pbus, echo);
		ret = -ENOENT;
		goto out;
	}
	snprintf(cfg0, sizeof(cfg0), "/tmp/pbus-bench-proxy0-%d.yaml",
		 (int)getpid());
	snprintf(cfg3, sizeof(cfg3), "/tmp/pbus-bench-proxy3-%d.yaml",
		 (int)getpid());
	if (write_config(cfg0, bindir, 0) || write_config(cfg3, bindir, 1)) {
		ret = -EIO;
		goto out;
	}
	/* all four side by side, in interleaved rounds, so that whatever else
	 * the machine does falls on every row alike */
	for (int r = 0; r < NROWS && !ret; r++) {
		char *direct[] = {echo, NULL};
		char *proxied[] = {pbus, "proxy", "-c", r == 1 ? cfg0 : cfg3,
				   "--", echo,	  NULL};

		ret = peer_start(&peers[r], r ? proxied : direct);
		if (ret)
			break;
		started = r + 1;
		ret = call(&peers[r], init_line, sizeof(init_line) - 1);
		if (!ret)
			ret = calls(&peers[r], r == 3 ? pii : clean, n / 10,
				    &ids[r], NULL);
		if (ret)
			fprintf(stderr, "pbus-bench: proxy: %s: %s\n", rows[r],
				strerror(-ret));
	}
	for (size_t k = 0; k < ROUNDS && !ret; k++)
		for (int r = 0; r < NROWS && !ret; r++) {
			uint64_t t = bench_now();

			ret = calls(&peers[r], r == 3 ? pii : clean, n / ROUNDS,
				    &ids[r], lat[r] + k * (n / ROUNDS));
			wall[r] += bench_now() - t;
			if (ret)
				fprintf(stderr, "pbus-bench: proxy: %s: %s\n",
					rows[r], strerror(-ret));
		}
	for (int r = 0; r < started; r++)
		peer_stop(&peers[r]);
	for (int r = 0; r < NROWS && !ret; r++)
		bench_stats(lat[r], n, wall[r], &res[r]);
	unlink(cfg0);
	unlink(cfg3);
	if (ret)
		goto out;
	fprintf(out,
		"\npbus proxy: one MCP tools/call over stdio, sequential, "
		"%zu calls per row\n"
		"(client -> [pbus proxy -> agents] -> agent-mcp_echo and back; "
		"3 agents =\n"
		"pii_filter, schema_guard, regex_filter on tool_pre_invoke and "
		"tool_post_invoke)\n",
		n);
	fprintf(out, "  %-34s %9s %9s %11s %11s %9s\n", "", "p50 us", "p99 us",
		"+p50 us", "+p99 us", "calls/s");
	for (int r = 0; r < NROWS; r++)
		fprintf(out, "  %-34s %9.1f %9.1f %11.1f %11.1f %9.0f\n",
			rows[r], res[r].p50, res[r].p99,
			res[r].p50 - res[0].p50, res[r].p99 - res[0].p99,
			res[r].rate);
	fprintf(out,
		"  (+: added to a direct call; the rows ran side by side in "
		"%d interleaved rounds)\n",
		ROUNDS);
out:
	for (int r = 0; r < NROWS; r++)
		free(lat[r]);
	return ret;
}
