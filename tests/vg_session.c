// SPDX-License-Identifier: MIT
/*
 * vg_session: a short, complete gateway + agents session for valgrind
 * (tests/valgrind.sh, `make valgrind`). It opens a plugin manager whose two
 * plugins are real pbus-passthrough agents (one answers "unmodified", one
 * echoes the payload back as a modification), runs N chains (default 1000)
 * of tool_pre_invoke and tool_post_invoke on one request each, checks every
 * outcome, stops the agents with SIGTERM and closes everything, so that
 * memcheck sees every allocation of the gateway (and, with
 * --trace-children=yes, of the agents) freed.
 *
 * The agents are started here, not by the manager's supervisor: the
 * supervisor watches its children through pidfd_open(2), which valgrind
 * 3.19 (Debian 12) does not implement (docs/hardening.md).
 *
 *	vg_session BINDIR [CHAINS]
 *
 * BINDIR holds pbus-passthrough. Exit status 0 when every chain ran and
 * continued, 1 otherwise.
 */
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <msgpack.h>

#include <pbus/pbus.h>
#include <pbus/config.h>
#include <pbus/hooks.h>
#include <pbus/mgr.h>

static const char yaml[] = "plugin_settings: {plugin_timeout: 60}\n"
			   "bus: {max_payload_size: 65536, max_spin_ns: 0}\n"
			   "plugins:\n"
			   "  - name: pass\n"
			   "    kind: agent\n"
			   "    hooks: [tool_pre_invoke, tool_post_invoke]\n"
			   "    mode: sequential\n"
			   "  - name: echo\n"
			   "    kind: agent\n"
			   "    hooks: [tool_pre_invoke, tool_post_invoke]\n"
			   "    mode: transform\n";

extern char **environ;

/* Start BINDIR/pbus-passthrough for plugin @name (PBUS_SOCK/PBUS_PLUGIN). */
static pid_t start_agent(const char *bindir, const char *sock, const char *name,
			 const char *mode)
{
	char path[4096];
	char *argv[] = {path, (char *)"--mode", (char *)mode, NULL};
	pid_t pid;

	snprintf(path, sizeof(path), "%s/pbus-passthrough", bindir);
	setenv("PBUS_SOCK", sock, 1);
	setenv("PBUS_PLUGIN", name, 1);
	if (posix_spawn(&pid, path, NULL, NULL, argv, environ))
		return -1;
	return pid;
}

static int fail(const char *what, int ret)
{
	fprintf(stderr, "vg_session: %s: %s\n", what, strerror(-ret));
	return 1;
}

/* {"name": "search", "args": {"query": "...", "n": i}} */
static void pack_pre(msgpack_sbuffer *sb, unsigned i)
{
	msgpack_packer pk;

	msgpack_sbuffer_clear(sb);
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 2);
	msgpack_pack_str_with_body(&pk, "name", 4);
	msgpack_pack_str_with_body(&pk, "search", 6);
	msgpack_pack_str_with_body(&pk, "args", 4);
	msgpack_pack_map(&pk, 2);
	msgpack_pack_str_with_body(&pk, "query", 5);
	msgpack_pack_str_with_body(&pk, "valgrind session", 16);
	msgpack_pack_str_with_body(&pk, "n", 1);
	msgpack_pack_unsigned_int(&pk, i);
}

/* {"name": "search", "result": {"content": [{"type": "text", "text": ...}]}} */
static void pack_post(msgpack_sbuffer *sb)
{
	msgpack_packer pk;

	msgpack_sbuffer_clear(sb);
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 2);
	msgpack_pack_str_with_body(&pk, "name", 4);
	msgpack_pack_str_with_body(&pk, "search", 6);
	msgpack_pack_str_with_body(&pk, "result", 6);
	msgpack_pack_map(&pk, 1);
	msgpack_pack_str_with_body(&pk, "content", 7);
	msgpack_pack_array(&pk, 1);
	msgpack_pack_map(&pk, 2);
	msgpack_pack_str_with_body(&pk, "type", 4);
	msgpack_pack_str_with_body(&pk, "text", 4);
	msgpack_pack_str_with_body(&pk, "text", 4);
	msgpack_pack_str_with_body(&pk, "no results", 10);
}

int main(int argc, char **argv)
{
	struct pbus_mgr_opts mo = {.no_spawn = 1};
	unsigned chains = argc > 2 ? (unsigned)atoi(argv[2]) : 1000;
	struct pbus_diag d = {0};
	struct pbus_config *cfg;
	struct pbus_mgr *m;
	msgpack_sbuffer sb;
	char sock[108], buf[512];
	pid_t pids[2] = {-1, -1};
	int ret, bad = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: vg_session BINDIR [CHAINS]\n");
		return 2;
	}
	snprintf(sock, sizeof(sock), "/tmp/pbus-vg-%d.sock", (int)getpid());
	mo.sock_path = sock;
	ret = pbus_config_parse(yaml, sizeof(yaml) - 1, "vg_session", &d, &cfg);
	if (ret) {
		for (unsigned i = 0; i < d.n; i++)
			fprintf(stderr, "%s\n",
				pbus_diag_format(&d, i, buf, sizeof(buf)));
		return fail("config", ret);
	}
	ret = pbus_mgr_open(cfg, &mo, &m);
	if (ret) {
		pbus_config_destroy(cfg);
		return fail("pbus_mgr_open", ret);
	}
	pids[0] = start_agent(argv[1], sock, "pass", "pass");
	pids[1] = start_agent(argv[1], sock, "echo", "echo");
	ret = pids[0] > 0 && pids[1] > 0
		      ? pbus_mgr_wait_ready(m, 120000) /* under valgrind */
		      : -ENOENT;
	if (ret)
		bad = fail("starting the agents", ret);
	msgpack_sbuffer_init(&sb);
	for (unsigned i = 0; i < chains && !bad; i++) {
		struct pbus_gctx g = {.request_id = "vg", .user = "valgrind"};
		struct pbus_request *rq;
		struct pbus_outcome out;

		ret = pbus_request_create(m, &g, &rq);
		if (ret) {
			bad = fail("pbus_request_create", ret);
			break;
		}
		pack_pre(&sb, i);
		ret = pbus_run(m, rq, PBUS_HOOK_TOOL_PRE_INVOKE, sb.data,
			       sb.size, &out);
		if (ret || !out.continue_processing || out.error ||
		    out.plugins_run != 2) {
			fprintf(stderr,
				"vg_session: chain %u pre: ret %d continue %d "
				"error %d (%s) run %u\n",
				i, ret, out.continue_processing, out.error,
				out.error_message ? out.error_message : "-",
				out.plugins_run);
			bad = 1;
		}
		pack_post(&sb);
		ret = pbus_run(m, rq, PBUS_HOOK_TOOL_POST_INVOKE, sb.data,
			       sb.size, &out);
		if (!bad && (ret || !out.continue_processing || out.error)) {
			fprintf(stderr, "vg_session: chain %u post: ret %d\n",
				i, ret);
			bad = 1;
		}
		pbus_request_destroy(rq);
	}
	msgpack_sbuffer_destroy(&sb);
	for (int i = 0; i < 2; i++) {
		int st;

		if (pids[i] <= 0)
			continue;
		kill(pids[i], SIGTERM);
		if (waitpid(pids[i], &st, 0) == pids[i] &&
		    !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
			fprintf(stderr, "vg_session: agent %d: status %#x\n",
				(int)pids[i], st);
			bad = 1;
		}
	}
	pbus_mgr_close(m);
	pbus_config_destroy(cfg);
	if (!bad)
		printf("vg_session: %u chains ok\n", chains);
	return bad;
}
