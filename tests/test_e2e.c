// SPDX-License-Identifier: MIT
/*
 * End-to-end: `pbus proxy` between a real MCP client and a real MCP server,
 * both from the npm registry: tests/e2e/client.mjs uses the official
 * TypeScript SDK (@modelcontextprotocol/sdk) against the reference
 * "everything" server (@modelcontextprotocol/server-everything), versions
 * pinned by tests/e2e/package-lock.json. The client runs twice, once
 * straight at the server and once through the proxy with five plugins
 * (sample agents and agent-ctl), and the test compares what it saw:
 *
 *   - tools, prompts, ping: the same both ways (pass-through);
 *   - echo with an e-mail and an SSN: raw without the proxy, masked by
 *     pii_filter through it -- the server itself saw the masked text;
 *   - toggle-simulated-logging: works without, MCP error -32001 (the
 *     violation's mcp_error_code, data.code TOOL_FORBIDDEN) through it;
 *   - get-env: works without, -32603 TOOL_BLOCKED (example agent) through;
 *   - get-sum with a string: the server's own error without, -32603
 *     SCHEMA_GUARD_ARGS from schema_guard through; a good get-sum: the same;
 *   - a resource: the server's text without, rewritten by resource_filter's
 *     content filter through.
 *
 * Setup: npm ci into $PBUS_BUILD/e2e/ on first use (again when the lock
 * file changes). When node or npm is missing, or the registry cannot be
 * reached, the test says SKIPPED on stderr and passes.
 */
#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

#define SRC "tests/e2e/"

static char cache[PATH_MAX]; /* $PBUS_BUILD/e2e */
static char server[PATH_MAX + 128];

/* Run @argv in @cwd with a deadline; stdout into *out (may be NULL, then
 * discarded), stderr passed through (or discarded with @quiet_err).
 * Returns the exit status, or -1 on timeout. */
static int run(const char *cwd, char *const argv[], char **out, int timeout_ms,
	       int quiet_err)
{
	int fd[2];
	char *buf = NULL, chunk[8192];
	size_t len = 0;
	uint64_t until = th_now_ms() + (uint64_t)timeout_ms;
	pid_t pid;
	int st = 0;

	ck_assert_int_eq(pipe(fd), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(fd[1], 1);
		if (quiet_err)
			dup2(fd[1], 2);
		close(fd[0]);
		close(fd[1]);
		if (cwd && chdir(cwd))
			_exit(126);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(fd[1]);
	for (;;) {
		struct pollfd p = {fd[0], POLLIN, 0};
		ssize_t n;

		if (th_now_ms() >= until) {
			th_kill(pid);
			close(fd[0]);
			free(buf);
			return -1;
		}
		if (poll(&p, 1, 100) <= 0)
			continue;
		n = read(fd[0], chunk, sizeof(chunk));
		if (n <= 0)
			break;
		buf = realloc(buf, len + (size_t)n + 1);
		memcpy(buf + len, chunk, (size_t)n);
		len += (size_t)n;
		buf[len] = 0;
	}
	close(fd[0]);
	if (th_wait_exit(pid, (int)(until - th_now_ms()) + 1, &st)) {
		th_kill(pid);
		free(buf);
		return -1;
	}
	if (out)
		*out = buf ? buf : strdup("");
	else
		free(buf);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int skip(const char *why)
{
	fprintf(stderr, "\n*** test_e2e: SKIPPED: %s ***\n\n", why);
	return 1;
}

static int same_file(const char *a, const char *b)
{
	char cmd[2 * PATH_MAX + 32];

	snprintf(cmd, sizeof(cmd), "cmp -s '%s' '%s'", a, b);
	return system(cmd) == 0;
}

static void copy(const char *name)
{
	char cmd[2 * PATH_MAX + 64];

	snprintf(cmd, sizeof(cmd), "cp '" SRC "%s' '%s/%s'", name, cache, name);
	ck_assert_int_eq(system(cmd), 0);
}

/* npm ci into the cache when needed. 0 ready, 1 skipped. */
static int install(void)
{
	char *node_v[] = {"node", "--version", NULL};
	char *npm_v[] = {"npm", "--version", NULL};
	char *ping[] = {"npm", "ping", NULL};
	char *ci[] = {
		"npm", "ci", "--no-audit", "--no-fund", "--loglevel=error",
		NULL};
	char lock[PATH_MAX + 32], stamp[PATH_MAX + 32];
	char *out = NULL;
	int rc;

	if (run(NULL, node_v, NULL, 10000, 1) != 0)
		return skip("node is not installed");
	if (run(NULL, npm_v, NULL, 10000, 1) != 0)
		return skip("npm is not installed");
	snprintf(cache, sizeof(cache), "%s/e2e", getenv("PBUS_BUILD"));
	mkdir(cache, 0755);
	snprintf(lock, sizeof(lock), "%s/package-lock.json", cache);
	snprintf(stamp, sizeof(stamp), "%s/node_modules/.package-lock.json",
		 cache);
	copy("client.mjs");
	snprintf(server, sizeof(server),
		 "%s/node_modules/@modelcontextprotocol/server-everything/"
		 "dist/index.js",
		 cache);
	if (same_file(SRC "package-lock.json", lock) &&
	    access(stamp, R_OK) == 0 && access(server, R_OK) == 0)
		return 0; /* installed, same lock */
	copy("package.json");
	copy("package-lock.json");
	fprintf(stderr, "test_e2e: npm ci in %s (first use)...\n", cache);
	rc = run(cache, ci, &out, 300000, 1);
	if (rc == 0) {
		free(out);
		return 0;
	}
	fprintf(stderr, "test_e2e: npm ci failed (%d):\n%s\n", rc,
		out ? out : "");
	free(out);
	if (run(cache, ping, NULL, 30000, 1) != 0)
		return skip("the npm registry cannot be reached");
	ck_abort_msg("npm ci failed although the registry answers");
	return 1;
}

static void write_config(const char *path)
{
	char agent[PATH_MAX];
	const char *b = getenv("PBUS_BUILD");
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	ck_assert_ptr_nonnull(realpath(th_bin("agent-ctl"), agent));
	fprintf(f,
		"plugin_settings: {plugin_timeout: 10}\n"
		"plugins:\n"
		"  - name: policy\n    kind: agent\n"
		"    hooks: [tool_pre_invoke]\n"
		"    conditions: [{tools: [toggle-simulated-logging]}]\n"
		"    command: [\"%s\"]\n"
		"    config: {action: violate, code: TOOL_FORBIDDEN, reason: "
		"Forbidden tool,\n"
		"             description: not allowed here, mcp_error_code: "
		"-32001}\n"
		"  - name: no_env\n    kind: agent\n"
		"    hooks: [tool_pre_invoke]\n"
		"    command: [\"%s/bin/pbus-example-minimal\"]\n"
		"    config: {tool: get-env}\n"
		"  - name: schema_guard\n    kind: agent\n"
		"    hooks: [tool_pre_invoke]\n"
		"    command: [\"%s/bin/pbus-schema_guard\"]\n"
		"    config:\n"
		"      arg_schemas:\n"
		"        get-sum: {type: object, required: [a, b],\n"
		"                  properties: {a: {type: number}, b: {type: "
		"number}}}\n"
		"  - name: pii_filter\n    kind: agent\n"
		"    hooks: [tool_pre_invoke]\n"
		"    command: [\"%s/bin/pbus-pii_filter\"]\n"
		"  - name: resource_filter\n    kind: agent\n"
		"    hooks: [resource_pre_fetch, resource_post_fetch]\n"
		"    command: [\"%s/bin/pbus-resource_filter\"]\n"
		"    config:\n"
		"      allowed_protocols: [demo, file, https]\n"
		"      content_filters: [{pattern: Architecture, replacement: "
		"\"[architecture]\"}]\n",
		agent, b, b, b, b);
	fclose(f);
}

/* Run the client against @argv (after "--"); its JSON report. */
static json_t *client(char *const server_argv[])
{
	char *argv[24] = {"node", "client.mjs", "--"};
	json_error_t e;
	char *out = NULL, *last;
	json_t *j;
	int n = 3, rc;

	while (server_argv[n - 3] && n < 23) {
		argv[n] = server_argv[n - 3];
		n++;
	}
	argv[n] = NULL;
	rc = run(cache, argv, &out, 60000, 0);
	ck_assert_msg(rc == 0, "client exited %d; output:\n%s", rc,
		      out ? out : "");
	last = strrchr(out, '{') ? out : out;
	/* the report is the last line */
	while (strlen(last) && last[strlen(last) - 1] == '\n')
		last[strlen(last) - 1] = 0;
	last = strrchr(out, '\n') ? strrchr(out, '\n') + 1 : out;
	j = json_loads(last, 0, &e);
	ck_assert_msg(j, "bad report '%s': %s", last, e.text);
	free(out);
	return j;
}

static const char *str_at(json_t *j, const char *a, const char *b)
{
	json_t *x = json_object_get(json_object_get(j, a), b);

	ck_assert_msg(json_is_string(x), "%s.%s is not a string", a, b);
	return json_string_value(x);
}

/* The error {code, data.code} of report field @k. */
static void error_is(json_t *j, const char *k, int code, const char *dcode)
{
	json_t *e = json_object_get(json_object_get(j, k), "error");

	ck_assert_msg(e, "%s: no error", k);
	ck_assert_int_eq(json_integer_value(json_object_get(e, "code")), code);
	ck_assert_str_eq(json_string_value(json_object_get(
				 json_object_get(e, "data"), "code")),
			 dcode);
}

START_TEST(sdk_client_through_the_proxy_vs_direct)
{
	char cfg[PATH_MAX + 32], pbus[PATH_MAX];
	json_t *direct, *proxied;
	uint64_t t0;

	if (install())
		return;
	snprintf(cfg, sizeof(cfg), "%s/plugins.yaml", cache);
	write_config(cfg);
	snprintf(pbus, sizeof(pbus), "%s", th_bin("pbus"));
	{
		char *d[] = {"node", server, "stdio", NULL};
		char *p[] = {pbus,   "proxy", "-c",    cfg, "--",
			     "node", server,  "stdio", NULL};

		t0 = th_now_ms();
		direct = client(d);
		proxied = client(p);
		fprintf(stderr, "test_e2e: both runs in %llu ms\n",
			(unsigned long long)(th_now_ms() - t0));
	}

	/* pass-through: the same server, tools, prompts; pings answered */
	ck_assert(json_equal(json_object_get(direct, "server"),
			     json_object_get(proxied, "server")));
	ck_assert(json_equal(json_object_get(direct, "tools"),
			     json_object_get(proxied, "tools")));
	ck_assert(json_equal(json_object_get(direct, "prompts"),
			     json_object_get(proxied, "prompts")));
	ck_assert_uint_ge(json_array_size(json_object_get(direct, "tools")), 5);
	ck_assert(json_is_true(json_object_get(proxied, "ping")));

	/* PII: raw without the proxy; masked before it reached the server */
	ck_assert_ptr_nonnull(strstr(str_at(direct, "echo", "ok"),
				     "alice@example.com, SSN 123-45-6789"));
	ck_assert_ptr_nonnull(strstr(str_at(proxied, "echo", "ok"), "Echo: "));
	ck_assert_ptr_null(
		strstr(str_at(proxied, "echo", "ok"), "alice@example.com"));
	ck_assert_ptr_null(
		strstr(str_at(proxied, "echo", "ok"), "123-45-6789"));
	ck_assert_ptr_nonnull(strstr(str_at(proxied, "echo", "ok"), "6789"));

	/* blocked calls: MCP errors with the violation's code */
	ck_assert_ptr_nonnull(
		json_object_get(json_object_get(direct, "logging"), "ok"));
	error_is(proxied, "logging", -32001, "TOOL_FORBIDDEN");
	ck_assert_ptr_nonnull(
		json_object_get(json_object_get(direct, "env"), "ok"));
	error_is(proxied, "env", -32603, "TOOL_BLOCKED");
	error_is(proxied, "bad_sum", -32603, "SCHEMA_GUARD_ARGS");
	ck_assert_str_eq(str_at(direct, "sum", "ok"),
			 str_at(proxied, "sum", "ok"));

	/* the resource: read through both hooks, content filtered */
	ck_assert_ptr_nonnull(
		strstr(str_at(direct, "resource", "ok"), "Architecture"));
	ck_assert_ptr_null(
		strstr(str_at(proxied, "resource", "ok"), "Architecture"));
	ck_assert_ptr_nonnull(
		strstr(str_at(proxied, "resource", "ok"), "[architecture]"));
	ck_assert_str_eq(str_at(direct, "resource", "uri"),
			 str_at(proxied, "resource", "uri"));
	json_decref(direct);
	json_decref(proxied);
}
END_TEST

Suite *e2e_suite(void);

Suite *e2e_suite(void)
{
	Suite *s = suite_create("e2e");
	TCase *tc = tcase_create("mcp_sdk");

	tcase_set_timeout(tc, 420); /* the first npm ci included */
	tcase_add_test(tc, sdk_client_through_the_proxy_vs_direct);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(e2e_suite());
	int failed;

	if (!getenv("PBUS_BUILD")) {
		fprintf(stderr, "test_e2e: SKIPPED: PBUS_BUILD is not set "
				"(run it with make test)\n");
		return 0;
	}
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
