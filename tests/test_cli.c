// SPDX-License-Identifier: MIT
/*
 * Tests for the pbus command: the top level, `pbus run` and `pbus proxy`
 * (bus/cmd/). Every case runs the real binary ($PBUS_BUILD/bin/pbus, set by
 * `make test`) in a child process. The plugins are build/tests/agent-ctl
 * with configs written by the test; the MCP server behind the proxy is
 * build/tests/agent-mcp_echo, which echoes a tool call's arguments and logs
 * every line it receives, so a test can see exactly what reached it.
 *
 * Every read has a deadline; a case that hangs fails instead.
 * Debug one case: CK_FORK=no CK_RUN_CASE=proxy build/cli/tests/test_cli
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

#define DEADLINE_MS 10000

static char dir[PATH_MAX]; /* this test's scratch directory */

/* ------------------------------------------------------------ processes */

struct proc {
	pid_t pid;
	int in, out, err;
	char *obuf, *ebuf;	 /* everything read so far */
	size_t olen, elen, opos; /* opos: next unread stdout byte */
};

static void append(char **b, size_t *len, const char *s, size_t n)
{
	*b = realloc(*b, *len + n + 1);
	memcpy(*b + *len, s, n);
	*len += n;
	(*b)[*len] = 0;
}

/* Start @argv with pipes on its stdin, stdout and stderr. */
static void p_start(struct proc *p, char *const argv[])
{
	int in[2], out[2], err[2];

	memset(p, 0, sizeof(*p));
	ck_assert_int_eq(pipe(in), 0);
	ck_assert_int_eq(pipe(out), 0);
	ck_assert_int_eq(pipe(err), 0);
	p->pid = fork();
	ck_assert_int_ge(p->pid, 0);
	if (p->pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		dup2(err[1], 2);
		for (int fd = 3; fd < 64; fd++)
			close(fd);
		execv(argv[0], argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	close(err[1]);
	p->in = in[1];
	p->out = out[0];
	p->err = err[0];
	signal(SIGPIPE, SIG_IGN);
}

/* Read whatever is available from stdout and stderr within @ms. Returns 0
 * when both are at EOF. */
static int p_pump(struct proc *p, int ms)
{
	struct pollfd f[2] = {{p->out, POLLIN, 0}, {p->err, POLLIN, 0}};
	char buf[65536];
	int open_ = 0;

	if (poll(f, 2, ms) <= 0)
		return p->out >= 0 || p->err >= 0;
	for (int i = 0; i < 2; i++) {
		int *fd = i ? &p->err : &p->out;
		ssize_t n;

		if (*fd < 0 || !f[i].revents)
			continue;
		n = read(*fd, buf, sizeof(buf));
		if (n > 0)
			append(i ? &p->ebuf : &p->obuf, i ? &p->elen : &p->olen,
			       buf, (size_t)n);
		else {
			close(*fd);
			*fd = -1;
			f[i].fd = -1;
		}
	}
	open_ = p->out >= 0 || p->err >= 0;
	return open_;
}

static void p_send(struct proc *p, const char *s)
{
	size_t n = strlen(s);

	ck_assert_int_eq(write(p->in, s, n), (ssize_t)n);
}

/* The next stdout line (without '\n', static buffer), or NULL at the
 * deadline or EOF. */
static const char *p_line(struct proc *p, int ms)
{
	static char line[1 << 16];
	uint64_t until = th_now_ms() + (uint64_t)ms;

	for (;;) {
		char *nl = p->obuf ? memchr(p->obuf + p->opos, '\n',
					    p->olen - p->opos)
				   : NULL;

		if (nl) {
			size_t n = (size_t)(nl - (p->obuf + p->opos));

			ck_assert_uint_lt(n, sizeof(line));
			memcpy(line, p->obuf + p->opos, n);
			line[n] = 0;
			p->opos += n + 1;
			return line;
		}
		if (th_now_ms() >= until || (p->out < 0 && p->err < 0))
			return NULL;
		p_pump(p, 50);
	}
}

/* Close stdin, read to EOF and reap. Returns the exit status, or -1. */
static int p_finish(struct proc *p)
{
	uint64_t until = th_now_ms() + DEADLINE_MS;
	int st;

	if (p->in >= 0)
		close(p->in);
	p->in = -1;
	while (th_now_ms() < until && p_pump(p, 100))
		;
	if (th_wait_exit(p->pid, 2000, &st)) {
		th_kill(p->pid);
		fprintf(stderr, "stderr of the hung process:\n%s\n",
			p->ebuf ? p->ebuf : "");
		return -1;
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void p_free(struct proc *p)
{
	if (p->out >= 0)
		close(p->out);
	if (p->err >= 0)
		close(p->err);
	free(p->obuf);
	free(p->ebuf);
}

/* Run pbus with @args (NULL-terminated) and @input on stdin to the end.
 * Returns the exit status; p->obuf / p->ebuf hold the output. */
static int pbus(struct proc *p, const char *input, ...)
{
	char *argv[32];
	va_list ap;
	int n = 1;

	argv[0] = strdup(th_bin("pbus"));
	va_start(ap, input);
	while (n < 31 && (argv[n] = va_arg(ap, char *)))
		n++;
	va_end(ap);
	argv[n] = NULL;
	p_start(p, argv);
	free(argv[0]);
	if (input)
		p_send(p, input);
	n = p_finish(p);
	if (!p->obuf)
		append(&p->obuf, &p->olen, "", 0);
	if (!p->ebuf)
		append(&p->ebuf, &p->elen, "", 0);
	return n;
}

/* ------------------------------------------------------------ fixtures */

static const char *path_in(const char *name)
{
	static char buf[4][PATH_MAX + 64];
	static int k;

	k = (k + 1) % 4;
	snprintf(buf[k], sizeof(buf[k]), "%s/%s", dir, name);
	return buf[k];
}

static void write_file(const char *name, const char *text)
{
	FILE *f = fopen(path_in(name), "w");

	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
}

static char *read_file(const char *name)
{
	FILE *f = fopen(path_in(name), "r");
	char *s = calloc(1, 1 << 20);
	size_t n = 0;

	ck_assert_ptr_nonnull(s);
	if (f) {
		n = fread(s, 1, (1 << 20) - 1, f);
		fclose(f);
	}
	s[n] = 0;
	return s;
}

/*
 * The plugins of most cases, all agent-ctl:
 *   masker   tool_pre_invoke on echo: args become {email: "[EMAIL]"}
 *   blocker  tool_pre_invoke on danger, prompt_pre_fetch on evil:
 *            DANGER, MCP error -32001
 *   failer   tool_pre_invoke on broken: a plugin error
 *   shouter  tool_post_invoke on shout and exit: the result is replaced
 *   resmod   resource_post_fetch: every item becomes {uri: x, text: redacted}
 *   nomallory tool_pre_invoke, user pattern "mallory": blocks, code NOPE
 */
static void write_config(void)
{
	char agent[PATH_MAX], *y = NULL;
	size_t yl = 0;
	FILE *f;

	ck_assert_ptr_nonnull(realpath(th_bin("agent-ctl"), agent));
	f = open_memstream(&y, &yl);
	fprintf(f,
		"plugin_settings: {plugin_timeout: 5}\n"
		"plugins:\n"
		"  - name: masker\n    kind: agent\n"
		"    hooks: [tool_pre_invoke]\n"
		"    conditions: [{tools: [echo]}]\n"
		"    command: [\"%s\"]\n"
		"    config: {action: modify, set: {args: {email: "
		"\"[EMAIL]\"}}}\n"
		"  - name: blocker\n    kind: agent\n"
		"    hooks: [tool_pre_invoke, prompt_pre_fetch]\n"
		"    conditions: [{tools: [danger], prompts: [evil]}]\n"
		"    command: [\"%s\"]\n"
		"    config: {action: violate, code: DANGER, reason: "
		"Dangerous,\n"
		"             description: not here, mcp_error_code: -32001,\n"
		"             details: {why: test},\n"
		"             http_headers: {Retry-After: '7'}}\n"
		"  - name: failer\n    kind: agent\n"
		"    hooks: [tool_pre_invoke]\n"
		"    conditions: [{tools: [broken]}]\n"
		"    command: [\"%s\"]\n"
		"    config: {action: fail}\n"
		"  - name: shouter\n    kind: agent\n"
		"    hooks: [tool_post_invoke]\n"
		"    conditions: [{tools: [shout, exit]}]\n"
		"    command: [\"%s\"]\n"
		"    config: {action: modify, set: {result: {content: "
		"[{type: text, text: LOUD}], isError: false}}}\n"
		"  - name: resmod\n    kind: agent\n"
		"    hooks: [resource_post_fetch]\n"
		"    command: [\"%s\"]\n"
		"    config: {action: modify, set: {content: {uri: x, text: "
		"redacted}}}\n"
		"  - name: nomallory\n    kind: agent\n"
		"    hooks: [tool_pre_invoke]\n"
		"    conditions: [{user_patterns: [mallory]}]\n"
		"    command: [\"%s\"]\n"
		"    config: {action: violate, code: NOPE, reason: No}\n",
		agent, agent, agent, agent, agent, agent);
	fclose(f);
	write_file("plugins.yaml", y);
	free(y);
}

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/pbus-test-cli-%d", (int)getpid());
	mkdir(dir, 0700);
	th_log_setup();
	write_config();
}

static void teardown(void)
{
	char cmd[PATH_MAX + 16];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd)) {
		/* best effort */
	}
}

#define has(hay, needle)                                                       \
	ck_assert_msg(strstr((hay), (needle)), "no \"%s\" in:\n%s", (needle),  \
		      (hay))
#define hasnt(hay, needle)                                                     \
	ck_assert_msg(!strstr((hay), (needle)), "\"%s\" in:\n%s", (needle),    \
		      (hay))

/* The output line of request @id in `pbus run` output (static). */
static const char *row(const char *out, const char *id)
{
	static char line[4096];
	const char *s = out;
	size_t n = strlen(id);

	while (s && *s) {
		const char *e = strchr(s, '\n');
		size_t len = e ? (size_t)(e - s) : strlen(s);

		if (!strncmp(s, id, n) && s[n] == ' ' && len < sizeof(line)) {
			memcpy(line, s, len);
			line[len] = 0;
			return line;
		}
		s = e ? e + 1 : NULL;
	}
	ck_abort_msg("no row for id %s in:\n%s", id, out);
	return NULL;
}

/* ------------------------------------------------------------ top level */

START_TEST(version_and_help_exit_0_on_stdout)
{
	static const char *subs[] = {"run", "proxy", "bench", "check"};
	struct proc p;

	ck_assert_int_eq(pbus(&p, NULL, "--version", NULL), 0);
	has(p.obuf, "pbus 0.1");
	p_free(&p);
	ck_assert_int_eq(pbus(&p, NULL, "--help", NULL), 0);
	for (size_t i = 0; i < 4; i++)
		has(p.obuf, subs[i]);
	p_free(&p);
	for (size_t i = 0; i < 4; i++) {
		char want[64];

		ck_assert_int_eq(pbus(&p, NULL, subs[i], "--help", NULL), 0);
		snprintf(want, sizeof(want), "usage: pbus %s", subs[i]);
		has(p.obuf, want);
		ck_assert_uint_eq(p.elen, 0);
		p_free(&p);
	}
}
END_TEST

START_TEST(usage_errors_exit_2_on_stderr)
{
	struct proc p;

	ck_assert_int_eq(pbus(&p, NULL, "frobnicate", NULL), 2);
	has(p.ebuf, "unknown command");
	ck_assert_uint_eq(p.olen, 0);
	p_free(&p);
	ck_assert_int_eq(pbus(&p, NULL, "run", NULL), 2);
	has(p.ebuf, "--replay");
	p_free(&p);
	ck_assert_int_eq(pbus(&p, NULL, "run", "--bogus", NULL), 2);
	has(p.ebuf, "unknown option");
	p_free(&p);
	ck_assert_int_eq(
		pbus(&p, NULL, "proxy", "-c", path_in("plugins.yaml"), NULL),
		2);
	has(p.ebuf, "no server command");
	p_free(&p);
	ck_assert_int_eq(pbus(&p, NULL, "proxy", "--", "true", NULL), 2);
	has(p.ebuf, "-c FILE");
	p_free(&p);
}
END_TEST

START_TEST(missing_files_exit_1)
{
	struct proc p;

	ck_assert_int_eq(pbus(&p, NULL, "run", "-c", path_in("plugins.yaml"),
			      "--replay", path_in("nope.jsonl"), NULL),
			 1);
	has(p.ebuf, "nope.jsonl");
	p_free(&p);
	write_file("t.jsonl", "\n");
	ck_assert_int_eq(pbus(&p, NULL, "run", "-c", path_in("nope.yaml"),
			      "--replay", path_in("t.jsonl"), NULL),
			 1);
	has(p.ebuf, "nope.yaml");
	p_free(&p);
}
END_TEST

/* ------------------------------------------------------------ run */

static const char *traffic =
	"# a comment, then a blank line\n"
	"\n"
	"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\","
	"\"params\":{}}\n"
	"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":"
	"{\"name\":\"echo\",\"arguments\":{\"email\":\"a@b.c\"}}}\n"
	"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":"
	"{\"name\":\"danger\",\"arguments\":{}}}\n"
	"{\"jsonrpc\":\"2.0\",\"id\":\"p-4\",\"method\":\"prompts/get\","
	"\"params\":{\"name\":\"evil\",\"arguments\":{\"q\":\"x\"}}}\n"
	"{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/call\",\"params\":"
	"{\"name\":\"broken\"}}\n"
	"{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"tools/call\",\"params\":"
	"{\"name\":\"shout\",\"arguments\":{}},\"_result\":{\"content\":"
	"[{\"type\":\"text\",\"text\":\"quiet\"}],\"isError\":false}}\n"
	"{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"resources/read\","
	"\"params\":{\"uri\":\"file:///a\"},\"_result\":{\"contents\":"
	"[{\"uri\":\"file:///a\",\"text\":\"secret\"}]}}\n"
	"{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"tools/call\",\"params\":"
	"{\"name\":\"clean\",\"arguments\":{\"a\":1}}}\n"
	"{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"tools/call\",\"params\":"
	"{\"name\":\"clean\"},\"_context\":{\"user\":\"mallory\"}}\n";

START_TEST(run_prints_one_decision_per_request_and_a_summary)
{
	struct proc p;
	int rc;

	write_file("t.jsonl", traffic);
	rc = pbus(&p, NULL, "run", "-n", "-c", path_in("plugins.yaml"),
		  "--replay", path_in("t.jsonl"), NULL);
	ck_assert_msg(rc == 0, "rc %d, stderr:\n%s", rc, p.ebuf);
	has(p.obuf, "DECISION"); /* the header explains the columns */
	has(row(p.obuf, "1"), "no hook");
	has(row(p.obuf, "2"), "modified by masker");
	hasnt(row(p.obuf, "2"), "result");
	has(row(p.obuf, "3"), "BLOCKED by blocker: DANGER (-32001) not here");
	has(row(p.obuf, "p-4"), "prompts/get");
	has(row(p.obuf, "p-4"), "BLOCKED by blocker");
	has(row(p.obuf, "5"), "FAILED in failer");
	has(row(p.obuf, "6"), "result modified by shouter");
	has(row(p.obuf, "7"), "result modified by resmod");
	has(row(p.obuf, "8"), "allowed");
	/* no mcp_error_code in the violation: the framework's default */
	has(row(p.obuf, "9"), "BLOCKED by nomallory: NOPE (-32603) ");
	has(p.obuf, "Summary: 9 requests");
	has(p.obuf, "1 allowed, 3 modified, 3 blocked, 1 failed, 1 without "
		    "hooks");
	has(p.obuf, "blocked by:  blocker 2, nomallory 1");
	has(p.obuf, "tool_pre_invoke");
	p_free(&p);
}
END_TEST

START_TEST(run_verbose_shows_what_changed_and_the_client_error)
{
	struct proc p;

	write_file("t.jsonl", traffic);
	ck_assert_int_eq(pbus(&p, NULL, "run", "-n", "-v", "-c",
			      path_in("plugins.yaml"), "--replay",
			      path_in("t.jsonl"), NULL),
			 0);
	has(p.obuf, "request now: {\"name\":\"echo\",\"arguments\":"
		    "{\"email\":\"[EMAIL]\"}}");
	has(p.obuf, "client gets: {\"code\":-32001,\"message\":\"Dangerous: "
		    "not here\",\"data\":{\"code\":\"DANGER\",\"plugin\":"
		    "\"blocker\",\"details\":{\"why\":\"test\"},"
		    "\"http_headers\":{\"Retry-After\":\"7\"}}}");
	has(p.obuf, "result now:  {\"content\":[{\"type\":\"text\",\"text\":"
		    "\"LOUD\"}]");
	p_free(&p);
}
END_TEST

START_TEST(run_context_comes_from_flags_env_and_the_line)
{
	struct proc p;

	/* --user applies to lines without their own _context */
	write_file("t.jsonl", traffic);
	ck_assert_int_eq(pbus(&p, NULL, "run", "-n", "--user", "mallory", "-c",
			      path_in("plugins.yaml"), "--replay",
			      path_in("t.jsonl"), NULL),
			 0);
	has(row(p.obuf, "8"), "BLOCKED by nomallory");
	p_free(&p);
	/* a line's _context wins over the flag */
	write_file("u.jsonl",
		   "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\","
		   "\"params\":{\"name\":\"clean\"},\"_context\":{\"user\":"
		   "\"alice\"}}\n");
	ck_assert_int_eq(pbus(&p, NULL, "run", "-n", "--user", "mallory", "-c",
			      path_in("plugins.yaml"), "--replay",
			      path_in("u.jsonl"), NULL),
			 0);
	has(row(p.obuf, "1"), "allowed");
	p_free(&p);
	/* PBUS_USER when there is no flag */
	setenv("PBUS_USER", "mallory", 1);
	ck_assert_int_eq(pbus(&p, NULL, "run", "-n", "-c",
			      path_in("plugins.yaml"), "--replay",
			      path_in("t.jsonl"), NULL),
			 0);
	unsetenv("PBUS_USER");
	has(row(p.obuf, "8"), "BLOCKED by nomallory");
	p_free(&p);
}
END_TEST

START_TEST(run_reads_stdin_and_quiet_prints_only_the_summary)
{
	struct proc p;

	ck_assert_int_eq(pbus(&p, traffic, "run", "-n", "-q", "-c",
			      path_in("plugins.yaml"), "--replay", "-", NULL),
			 0);
	has(p.obuf, "Summary: 9 requests");
	hasnt(p.obuf, "DECISION");
	hasnt(p.obuf, "modified by masker");
	p_free(&p);
}
END_TEST

START_TEST(run_shows_per_plugin_latency_with_the_collector)
{
	struct proc p;

	if (geteuid() != 0) {
		fprintf(stderr,
			"run_shows_per_plugin_latency_with_the_collector:"
			" SKIPPED (needs root for BPF)\n");
		return;
	}
	write_file("t.jsonl", traffic);
	ck_assert_int_eq(pbus(&p, NULL, "run", "-c", path_in("plugins.yaml"),
			      "--replay", path_in("t.jsonl"), NULL),
			 0);
	has(p.obuf, "measured in\n  the gateway by pbus-collector");
	hasnt(p.obuf, "no per-plugin latency");
	p_free(&p);
	/* and without it, a note instead */
	ck_assert_int_eq(pbus(&p, NULL, "run", "--no-collector", "-c",
			      path_in("plugins.yaml"), "--replay",
			      path_in("t.jsonl"), NULL),
			 0);
	has(p.obuf, "no per-plugin latency: --no-collector");
	p_free(&p);
}
END_TEST

START_TEST(run_reports_unreadable_lines_and_exits_1)
{
	struct proc p;

	write_file("t.jsonl", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":"
			      "\"ping\"}\nnot json\n[1,2]\n");
	ck_assert_int_eq(pbus(&p, NULL, "run", "-n", "-c",
			      path_in("plugins.yaml"), "--replay",
			      path_in("t.jsonl"), NULL),
			 1);
	has(p.ebuf, "t.jsonl:2:");
	has(p.ebuf, "t.jsonl:3: not a JSON object");
	has(p.obuf, "2 unreadable lines");
	p_free(&p);
}
END_TEST

/* ------------------------------------------------------------ proxy */

struct px {
	struct proc p;
	char log[PATH_MAX + 64];
};

static void px_start(struct px *x, const char *config)
{
	char *argv[12];
	char pb[PATH_MAX], echo[PATH_MAX];

	snprintf(x->log, sizeof(x->log), "%s", path_in("server.log"));
	unlink(x->log);
	snprintf(pb, sizeof(pb), "%s", th_bin("pbus"));
	snprintf(echo, sizeof(echo), "%s", th_bin("agent-mcp_echo"));
	argv[0] = pb;
	argv[1] = "proxy";
	argv[2] = "-c";
	argv[3] = (char *)config;
	argv[4] = "--user";
	argv[5] = "alice";
	argv[6] = "--";
	argv[7] = echo;
	argv[8] = "--log";
	argv[9] = x->log;
	argv[10] = NULL;
	p_start(&x->p, argv);
}

/* Send one line and return the next line the client receives. */
static const char *px_call(struct px *x, const char *line)
{
	const char *r;

	p_send(&x->p, line);
	r = p_line(&x->p, DEADLINE_MS);
	ck_assert_msg(r, "no answer to %s; stderr:\n%s", line,
		      x->p.ebuf ? x->p.ebuf : "");
	return r;
}

static json_t *px_json(struct px *x, const char *line)
{
	json_error_t e;
	const char *r = px_call(x, line);
	json_t *j = json_loads(r, 0, &e);

	ck_assert_msg(j, "bad JSON from the proxy: %s (%s)", r, e.text);
	return j;
}

static int px_end(struct px *x)
{
	int rc = p_finish(&x->p);

	p_free(&x->p);
	return rc;
}

START_TEST(proxy_passes_other_traffic_through_byte_for_byte)
{
	static const char *in[] = {
		"{\"jsonrpc\": \"2.0\", \"id\": \"init-1\", \"method\": "
		"\"initialize\", \"params\": {\"protocolVersion\": "
		"\"2025-06-18\", \"capabilities\": {}}}\n",
		"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}"
		"\n",
		"{\"jsonrpc\":\"2.0\",\"id\":17,\"method\":\"tools/list\"}\n",
		"{\"jsonrpc\":\"2.0\",\"id\":1.5,\"method\":\"ping\"}\n",
	};
	struct px x;
	const char *r;
	char *log;

	px_start(&x, path_in("plugins.yaml"));
	r = px_call(&x, in[0]);
	has(r, "\"id\":\"init-1\"");
	has(r, "mcp_echo");
	/* a notification reaches the server, whose answer reaches us */
	r = px_call(&x, in[1]);
	has(r, "\"seen\":\"notifications/initialized\"");
	has(px_call(&x, in[2]), "\"id\":17,\"result\":{\"tools\"");
	has(px_call(&x, in[3]), "\"id\":1.5,\"result\":{}");
	ck_assert_int_eq(px_end(&x), 0);
	/* the server received exactly the bytes the client sent */
	log = read_file("server.log");
	ck_assert_uint_eq(strlen(log), strlen(in[0]) + strlen(in[1]) +
					       strlen(in[2]) + strlen(in[3]));
	ck_assert_int_eq(strncmp(log, in[0], strlen(in[0])), 0);
	has(log, in[1]);
	has(log, in[2]);
	has(log, in[3]);
	free(log);
}
END_TEST

START_TEST(proxy_blocked_call_is_a_jsonrpc_error_with_the_violation)
{
	struct px x;
	json_t *r, *e, *d;
	char *log;

	px_start(&x, path_in("plugins.yaml"));
	r = px_json(&x, "{\"jsonrpc\":\"2.0\",\"id\":\"q7\",\"method\":"
			"\"tools/call\",\"params\":{\"name\":\"danger\","
			"\"arguments\":{\"x\":1}}}\n");
	ck_assert_str_eq(json_string_value(json_object_get(r, "jsonrpc")),
			 "2.0");
	ck_assert_str_eq(json_string_value(json_object_get(r, "id")), "q7");
	ck_assert_ptr_null(json_object_get(r, "result"));
	e = json_object_get(r, "error");
	ck_assert_int_eq(json_integer_value(json_object_get(e, "code")),
			 -32001);
	ck_assert_str_eq(json_string_value(json_object_get(e, "message")),
			 "Dangerous: not here");
	d = json_object_get(e, "data");
	ck_assert_str_eq(json_string_value(json_object_get(d, "code")),
			 "DANGER");
	ck_assert_str_eq(json_string_value(json_object_get(d, "plugin")),
			 "blocker");
	ck_assert_str_eq(json_string_value(json_object_get(
				 json_object_get(d, "details"), "why")),
			 "test");
	/* for an HTTP transport: the plugin's headers, no status it did not
	 * give */
	ck_assert_str_eq(json_string_value(json_object_get(
				 json_object_get(d, "http_headers"),
				 "Retry-After")),
			 "7");
	ck_assert_ptr_null(json_object_get(d, "http_status_code"));
	json_decref(r);
	/* prompts too; the id keeps its type */
	r = px_json(&x, "{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":"
			"\"prompts/get\",\"params\":{\"name\":\"evil\"}}\n");
	ck_assert_int_eq(json_integer_value(json_object_get(r, "id")), 8);
	ck_assert_int_eq(json_integer_value(json_object_get(
				 json_object_get(r, "error"), "code")),
			 -32001);
	json_decref(r);
	ck_assert_int_eq(px_end(&x), 0);
	log = read_file("server.log");
	hasnt(log, "danger"); /* never reached the server */
	hasnt(log, "evil");
	free(log);
}
END_TEST

START_TEST(proxy_plugin_error_is_32603)
{
	struct px x;
	json_t *r, *e;

	px_start(&x, path_in("plugins.yaml"));
	r = px_json(&x, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":"
			"\"tools/call\",\"params\":{\"name\":\"broken\"}}\n");
	e = json_object_get(r, "error");
	ck_assert_int_eq(json_integer_value(json_object_get(e, "code")),
			 -32603);
	has(json_string_value(json_object_get(e, "message")), "failer");
	ck_assert_int_eq(json_integer_value(json_object_get(r, "id")), 3);
	json_decref(r);
	ck_assert_int_eq(px_end(&x), 0);
}
END_TEST

START_TEST(proxy_modified_arguments_are_what_the_server_receives)
{
	struct px x;
	json_t *r, *sc;
	char *log;

	px_start(&x, path_in("plugins.yaml"));
	r = px_json(&x, "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":"
			"\"tools/call\",\"params\":{\"name\":\"echo\","
			"\"arguments\":{\"email\":\"a@b.c\"},\"_meta\":"
			"{\"progressToken\":9}}}\n");
	sc = json_object_get(json_object_get(r, "result"), "structuredContent");
	ck_assert_str_eq(json_string_value(json_object_get(sc, "email")),
			 "[EMAIL]");
	json_decref(r);
	ck_assert_int_eq(px_end(&x), 0);
	log = read_file("server.log");
	/* rebuilt: masked arguments, everything else kept in order */
	has(log, "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/call\","
		 "\"params\":{\"name\":\"echo\",\"arguments\":{\"email\":"
		 "\"[EMAIL]\"},\"_meta\":{\"progressToken\":9}}}\n");
	hasnt(log, "a@b.c");
	free(log);
}
END_TEST

START_TEST(proxy_post_hooks_rewrite_or_keep_the_result)
{
	struct px x;
	const char *r;

	px_start(&x, path_in("plugins.yaml"));
	r = px_call(&x, "{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":"
			"\"tools/call\",\"params\":{\"name\":\"shout\","
			"\"arguments\":{\"v\":1}}}\n");
	ck_assert_str_eq(r, "{\"jsonrpc\":\"2.0\",\"id\":6,\"result\":"
			    "{\"content\":[{\"type\":\"text\",\"text\":"
			    "\"LOUD\"}],\"isError\":false}}");
	r = px_call(&x, "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":"
			"\"resources/read\",\"params\":{\"uri\":"
			"\"file:///x\"}}\n");
	ck_assert_str_eq(r, "{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":"
			    "{\"contents\":[{\"uri\":\"x\",\"text\":"
			    "\"redacted\"}]}}");
	/* untouched result: the server's bytes as they were */
	r = px_call(&x, "{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":"
			"\"tools/call\",\"params\":{\"name\":\"other\","
			"\"arguments\":{\"r\":0.1}}}\n");
	has(r, "\"structuredContent\":{\"r\":0.10000000000000001}");
	ck_assert_int_eq(px_end(&x), 0);
}
END_TEST

START_TEST(proxy_relays_server_requests_and_client_answers)
{
	struct px x;
	const char *r;

	px_start(&x, path_in("plugins.yaml"));
	p_send(&x.p, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\","
		     "\"params\":{\"name\":\"ask\"}}\n");
	r = p_line(&x.p, DEADLINE_MS);
	ck_assert_ptr_nonnull(r);
	has(r, "\"id\":\"srv-1\",\"method\":\"sampling/createMessage\"");
	r = px_call(&x, "{\"jsonrpc\":\"2.0\",\"id\":\"srv-1\",\"result\":"
			"{\"answer\":42}}\n");
	has(r, "\"id\":1,");
	has(r, "\"structuredContent\":{\"answer\":42}");
	ck_assert_int_eq(px_end(&x), 0);
}
END_TEST

START_TEST(proxy_batch_gets_one_array_with_our_errors_merged)
{
	struct px x;
	json_t *r;
	int seen = 0;

	px_start(&x, path_in("plugins.yaml"));
	r = px_json(&x,
		    "[{\"jsonrpc\":\"2.0\",\"id\":10,\"method\":\"ping\"},"
		    "{\"jsonrpc\":\"2.0\",\"id\":11,\"method\":\"tools/call\","
		    "\"params\":{\"name\":\"danger\"}},"
		    "{\"jsonrpc\":\"2.0\",\"id\":12,\"method\":\"tools/call\","
		    "\"params\":{\"name\":\"echo\",\"arguments\":{\"email\":"
		    "\"z@z.z\"}}}]\n");
	ck_assert(json_is_array(r));
	ck_assert_uint_eq(json_array_size(r), 3);
	for (size_t i = 0; i < 3; i++) {
		json_t *m = json_array_get(r, i);
		json_int_t id = json_integer_value(json_object_get(m, "id"));

		seen |= 1 << (id - 10);
		if (id == 11)
			ck_assert_int_eq(
				json_integer_value(json_object_get(
					json_object_get(m, "error"), "code")),
				-32001);
		if (id == 12) {
			char *t = json_dumps(m, 0);

			has(t, "[EMAIL]");
			free(t);
		}
	}
	ck_assert_int_eq(seen, 7);
	json_decref(r);
	/* a batch of blocked calls only: answered by the proxy alone */
	r = px_json(&x, "[{\"jsonrpc\":\"2.0\",\"id\":20,\"method\":"
			"\"tools/call\",\"params\":{\"name\":\"danger\"}}]\n");
	ck_assert(json_is_array(r));
	ck_assert_uint_eq(json_array_size(r), 1);
	json_decref(r);
	ck_assert_int_eq(px_end(&x), 0);
}
END_TEST

START_TEST(proxy_joins_lines_that_arrive_in_pieces)
{
	struct px x;
	const char *r;

	px_start(&x, path_in("plugins.yaml"));
	p_send(&x.p, "{\"jsonrpc\":\"2.0\",\"id\":4,\"meth");
	usleep(100000);
	p_send(&x.p, "od\":\"tools/call\",\"params\":{\"name\":\"da");
	usleep(100000);
	p_send(&x.p, "nger\"}}\n{\"jsonrpc\":\"2.0\",\"id\":5,"
		     "\"method\":\"ping\"}\n");
	r = p_line(&x.p, DEADLINE_MS);
	ck_assert_ptr_nonnull(r);
	has(r, "\"id\":4,\"error\"");
	r = p_line(&x.p, DEADLINE_MS);
	ck_assert_ptr_nonnull(r);
	has(r, "\"id\":5,\"result\"");
	ck_assert_int_eq(px_end(&x), 0);
}
END_TEST

START_TEST(proxy_exits_with_the_server_status_and_answers_pending)
{
	struct px x;
	json_t *r;

	px_start(&x, path_in("plugins.yaml"));
	/* "exit" has a post hook (shouter), so the proxy is waiting for its
	 * result when the server exits without one */
	r = px_json(&x, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":"
			"\"tools/call\",\"params\":{\"name\":\"exit\","
			"\"arguments\":{\"code\":7}}}\n");
	ck_assert_int_eq(json_integer_value(json_object_get(r, "id")), 2);
	ck_assert_int_eq(json_integer_value(json_object_get(
				 json_object_get(r, "error"), "code")),
			 -32603);
	has(json_string_value(
		    json_object_get(json_object_get(r, "error"), "message")),
	    "server exited");
	json_decref(r);
	ck_assert_int_eq(p_finish(&x.p), 7);
	p_free(&x.p);
}
END_TEST

START_TEST(proxy_closing_stdin_stops_the_server_and_exits_0)
{
	struct px x;
	uint64_t t0;

	px_start(&x, path_in("plugins.yaml"));
	has(px_call(&x, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n"),
	    "\"result\"");
	t0 = th_now_ms();
	ck_assert_int_eq(px_end(&x), 0);
	ck_assert_uint_lt(th_now_ms() - t0, th_bound(3000, 4500)); /* < 5 s TERM */
}
END_TEST

START_TEST(proxy_cancellation_passes_through)
{
	struct px x;
	char *log;

	px_start(&x, path_in("plugins.yaml"));
	has(px_call(&x, "{\"jsonrpc\":\"2.0\",\"method\":"
			"\"notifications/cancelled\",\"params\":{\"requestId\":"
			"3,\"reason\":\"user\"}}\n"),
	    "\"seen\":\"notifications/cancelled\"");
	ck_assert_int_eq(px_end(&x), 0);
	log = read_file("server.log");
	has(log, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\","
		 "\"params\":{\"requestId\":3,\"reason\":\"user\"}}\n");
	free(log);
}
END_TEST

/* ------------------------------------------------------------ suite */

Suite *cli_suite(void);

Suite *cli_suite(void)
{
	Suite *s = suite_create("cli");
	TCase *tc;

	tc = tcase_create("top");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, version_and_help_exit_0_on_stdout);
	tcase_add_test(tc, usage_errors_exit_2_on_stderr);
	tcase_add_test(tc, missing_files_exit_1);
	suite_add_tcase(s, tc);

	tc = tcase_create("run");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, run_prints_one_decision_per_request_and_a_summary);
	tcase_add_test(tc, run_verbose_shows_what_changed_and_the_client_error);
	tcase_add_test(tc, run_context_comes_from_flags_env_and_the_line);
	tcase_add_test(tc, run_reads_stdin_and_quiet_prints_only_the_summary);
	tcase_add_test(tc, run_reports_unreadable_lines_and_exits_1);
	tcase_add_test(tc, run_shows_per_plugin_latency_with_the_collector);
	suite_add_tcase(s, tc);

	tc = tcase_create("proxy");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, proxy_passes_other_traffic_through_byte_for_byte);
	tcase_add_test(
		tc, proxy_blocked_call_is_a_jsonrpc_error_with_the_violation);
	tcase_add_test(tc, proxy_plugin_error_is_32603);
	tcase_add_test(tc,
		       proxy_modified_arguments_are_what_the_server_receives);
	tcase_add_test(tc, proxy_post_hooks_rewrite_or_keep_the_result);
	tcase_add_test(tc, proxy_relays_server_requests_and_client_answers);
	tcase_add_test(tc, proxy_batch_gets_one_array_with_our_errors_merged);
	tcase_add_test(tc, proxy_joins_lines_that_arrive_in_pieces);
	tcase_add_test(tc,
		       proxy_exits_with_the_server_status_and_answers_pending);
	tcase_add_test(tc, proxy_closing_stdin_stops_the_server_and_exits_0);
	tcase_add_test(tc, proxy_cancellation_passes_through);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(cli_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
