// SPDX-License-Identifier: MIT
/*
 * Tests for the config loader (bus/config*.c) and `pbus check`.
 *
 * Most cases parse YAML from a string, so every expected line and column can
 * be counted in the test itself. HEAD below is four lines; a case that
 * appends to it starts at line 5. Files live in tests/data/config/ (paths are
 * relative to the top of the tree, where `make test` runs). The CLI cases
 * run $PBUS_BUILD/bin/pbus (set by `make test`) and skip, saying so, when
 * it is unset.
 */
#include <pbus/config.h>

#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <msgpack.h>
#include <pbus/hooks.h>

#define DATA "tests/data/config/"

/* Four lines: a valid file with one plugin entry still open for keys. */
#define HEAD                                                                   \
	"plugin_settings: {}\n"                                                \
	"plugins:\n"                                                           \
	"  - name: a\n"                                                        \
	"    kind: agent\n"

#define BAD_OUT ((struct pbus_config *)0x1) /* must survive a failed load */

static struct pbus_diag diag;

static void dump(void)
{
	char buf[600];

	for (unsigned i = 0; i < diag.n; i++)
		fprintf(stderr, "  | %s\n",
			pbus_diag_format(&diag, i, buf, sizeof(buf)));
}

static int parse(const char *yaml, struct pbus_config **c)
{
	memset(&diag, 0, sizeof(diag));
	return pbus_config_parse(yaml, strlen(yaml), "t.yaml", &diag, c);
}

/* Parse @yaml, expecting success. */
static struct pbus_config *ok(const char *yaml)
{
	struct pbus_config *c = NULL;
	int ret = parse(yaml, &c);

	if (ret)
		dump();
	ck_assert_int_eq(ret, 0);
	ck_assert_ptr_nonnull(c);
	ck_assert_uint_eq(diag.nerrors, 0);
	return c;
}

/* Parse @yaml, expecting -EINVAL and *out untouched. Returns the errors. */
static unsigned bad(const char *yaml)
{
	struct pbus_config *c = BAD_OUT;
	int ret = parse(yaml, &c);

	if (ret != -EINVAL)
		dump();
	ck_assert_int_eq(ret, -EINVAL);
	ck_assert_ptr_eq(c, BAD_OUT);
	ck_assert_uint_ge(diag.nerrors, 1);
	return diag.nerrors;
}

/* The diagnostic at @line:@col whose message contains @sub. */
static const struct pbus_diag_item *at(int is_error, unsigned line,
				       unsigned col, const char *sub)
{
	for (unsigned i = 0; i < diag.n; i++) {
		const struct pbus_diag_item *it = &diag.items[i];

		if (it->is_error == is_error && it->line == line &&
		    it->col == col && strstr(it->msg, sub))
			return it;
	}
	dump();
	ck_abort_msg("no %s at %u:%u containing \"%s\"",
		     is_error ? "error" : "warning", line, col, sub);
	return NULL;
}

/* @yaml has exactly one error, at @line:@col, mentioning @sub. */
static void one_error(const char *yaml, unsigned line, unsigned col,
		      const char *sub)
{
	unsigned n = bad(yaml);

	at(1, line, col, sub);
	if (n != 1)
		dump();
	ck_assert_uint_eq(n, 1);
}

/* ------------------------------------------------------------ defaults */

START_TEST(minimal_file_gets_framework_defaults)
{
	struct pbus_config *c = ok("plugin_settings: {}\n");

	ck_assert_str_eq(c->path, "t.yaml");
	ck_assert_uint_eq(c->n_plugins, 0);
	ck_assert_int_eq(c->settings.parallel_within_band, 0);
	ck_assert_uint_eq(c->settings.plugin_timeout_ms, 30000);
	ck_assert_int_eq(c->settings.fail_on_plugin_error, 0);
	ck_assert_int_eq(c->settings.enable_plugin_api, 0);
	ck_assert_uint_eq(c->settings.health_check_interval_s, 60);
	ck_assert_int_eq(c->settings.include_user_info, 0);
	ck_assert_ptr_null(c->bus.socket_path);
	ck_assert_uint_eq(c->bus.socket_mode, 0600);
	ck_assert_uint_eq(c->bus.n_allowed_uids, 0);
	ck_assert_uint_eq(c->bus.max_payload, 1000000);
	ck_assert_uint_eq(c->bus.ring_slots, 256);
	ck_assert_uint_eq(c->bus.lanes, 64);
	ck_assert_uint_eq(c->bus.max_spin_ns, 100000);
	ck_assert_uint_eq(c->bus.agent_idle_spin_ns, 50000);
	ck_assert_uint_eq(c->supervision.backoff_initial_ms, 100);
	ck_assert_uint_eq(c->supervision.backoff_max_ms, 30000);
	ck_assert_uint_eq(c->supervision.circuit_failures, 5);
	ck_assert_uint_eq(c->supervision.circuit_window_ms, 60000);
	ck_assert_uint_eq(c->supervision.circuit_open_ms, 5000);
	ck_assert_uint_eq(c->supervision.watchdog_timeouts, 3);
	ck_assert_uint_eq(c->supervision.heartbeat_timeout_ms, 5000);
	ck_assert_uint_eq(c->plugin_dirs.n, 0);
	ck_assert_uint_eq(diag.n, 0);
	pbus_config_destroy(c);
}
END_TEST

START_TEST(plugin_entry_gets_defaults)
{
	struct pbus_config *c = ok(HEAD);
	const struct pbus_plugin_cfg *p = &c->plugins[0];

	ck_assert_uint_eq(c->n_plugins, 1);
	ck_assert_str_eq(p->name, "a");
	ck_assert_str_eq(p->kind, "agent");
	ck_assert_ptr_null(p->description);
	ck_assert_ptr_null(p->author);
	ck_assert_ptr_null(p->version);
	ck_assert_ptr_null(p->namespace_);
	ck_assert_uint_eq(p->hooks, 0);
	ck_assert_uint_eq(p->tags.n, 0);
	ck_assert_int_eq(p->mode, PBUS_MODE_ENFORCE);
	ck_assert_int_eq(p->on_error, PBUS_ON_ERROR_FAIL);
	ck_assert_int_eq(p->on_error_set, 0);
	ck_assert_int_eq(p->priority, 100);
	ck_assert_uint_eq(p->n_conds, 0);
	ck_assert_ptr_null(p->config);
	ck_assert_ptr_null(p->applied_to);
	ck_assert_uint_eq(p->command.n, 0);
	ck_assert_uint_eq(p->env.n, 0);
	ck_assert_uint_eq(p->timeout_ms, 0);
	ck_assert_uint_eq(p->line, 3);
	ck_assert_uint_eq(p->col, 5);
	pbus_config_destroy(c);
}
END_TEST

static void strv_is(const struct pbus_strv *sv, unsigned n, ...)
{
	va_list ap;

	ck_assert_uint_eq(sv->n, n);
	va_start(ap, n);
	for (unsigned i = 0; i < n; i++)
		ck_assert_str_eq(sv->v[i], va_arg(ap, const char *));
	va_end(ap);
	ck_assert_ptr_null(sv->v[n]); /* argv-style terminator */
}

START_TEST(every_key_is_parsed)
{
	const struct pbus_plugin_cfg *p;
	const struct pbus_condition *k;
	struct pbus_config *c = BAD_OUT;
	int ret;

	memset(&diag, 0, sizeof(diag));
	ret = pbus_config_load(DATA "full.yaml", &diag, &c);
	if (ret)
		dump();
	ck_assert_int_eq(ret, 0);
	ck_assert_str_eq(diag.file, DATA "full.yaml");
	ck_assert_str_eq(c->path, DATA "full.yaml");
	strv_is(&c->plugin_dirs, 1, "plugins/");

	ck_assert_int_eq(c->settings.parallel_within_band, 1);
	ck_assert_uint_eq(c->settings.plugin_timeout_ms, 2500);
	ck_assert_int_eq(c->settings.fail_on_plugin_error, 1);
	ck_assert_int_eq(c->settings.enable_plugin_api, 1);
	ck_assert_uint_eq(c->settings.health_check_interval_s, 15);
	ck_assert_int_eq(c->settings.include_user_info, 1);

	ck_assert_str_eq(c->bus.socket_path, "/run/pbus/gateway.sock");
	ck_assert_uint_eq(c->bus.socket_mode, 0660);
	ck_assert_uint_eq(c->bus.n_allowed_uids, 2);
	ck_assert_uint_eq(c->bus.allowed_uids[0], 1000);
	ck_assert_uint_eq(c->bus.allowed_uids[1], 1001);
	ck_assert_uint_eq(c->bus.max_payload, 2000000);
	ck_assert_uint_eq(c->bus.ring_slots, 512);
	ck_assert_uint_eq(c->bus.lanes, 8);
	ck_assert_uint_eq(c->bus.max_spin_ns, 1); /* 0 in YAML: never spin */
	ck_assert_uint_eq(c->bus.agent_idle_spin_ns, 20000);

	ck_assert_uint_eq(c->supervision.backoff_initial_ms, 50);
	ck_assert_uint_eq(c->supervision.backoff_max_ms, 10000);
	ck_assert_uint_eq(c->supervision.circuit_failures, 3);
	ck_assert_uint_eq(c->supervision.circuit_window_ms, 30000);
	ck_assert_uint_eq(c->supervision.circuit_open_ms, 2000);
	ck_assert_uint_eq(c->supervision.watchdog_timeouts, 2);
	ck_assert_uint_eq(c->supervision.heartbeat_timeout_ms, 1000);

	ck_assert_uint_eq(c->n_plugins, 3);
	p = &c->plugins[0];
	ck_assert_str_eq(p->name, "pii");
	ck_assert_str_eq(p->kind, "agent");
	ck_assert_str_eq(p->description, "PII filter");
	ck_assert_str_eq(p->author, "pbus authors");
	ck_assert_str_eq(p->version, "1.0");
	ck_assert_str_eq(p->namespace_, "security");
	ck_assert_uint_eq(p->hooks, (1u << PBUS_HOOK_TOOL_PRE_INVOKE) |
					    (1u << PBUS_HOOK_TOOL_POST_INVOKE));
	strv_is(&p->tags, 2, "pii", "security");
	ck_assert_int_eq(p->mode, PBUS_MODE_ENFORCE_IGNORE_ERROR);
	ck_assert_int_eq(p->on_error, PBUS_ON_ERROR_IGNORE);
	ck_assert_int_eq(p->on_error_set, 0);
	ck_assert_int_eq(p->priority, 10);
	ck_assert_uint_eq(p->n_conds, 2);
	k = &p->conds[0];
	strv_is(&k->server_ids, 1, "s1");
	strv_is(&k->tenant_ids, 1, "t1");
	strv_is(&k->tools, 2, "search", "fetch");
	strv_is(&k->prompts, 1, "p1");
	strv_is(&k->resources, 1, "file:///x");
	strv_is(&k->agents, 1, "a1");
	strv_is(&k->user_patterns, 1, "admin");
	strv_is(&k->content_types, 1, "application/json");
	strv_is(&p->conds[1].tools, 1, "other");
	ck_assert_uint_eq(p->conds[1].server_ids.n, 0);
	ck_assert_ptr_nonnull(p->config);
	ck_assert_ptr_nonnull(p->applied_to);
	strv_is(&p->command, 2, "pbus-pii_filter", "--verbose");
	strv_is(&p->env, 2, "LOG=debug", "PORT=8080");
	ck_assert_uint_eq(p->timeout_ms, 250);
	ck_assert_uint_eq(p->line, 31);
	ck_assert_uint_eq(p->col, 5);

	p = &c->plugins[1];
	ck_assert_str_eq(p->name, "deny");
	ck_assert_int_eq(p->mode, PBUS_MODE_PERMISSIVE);
	ck_assert_int_eq(p->on_error, PBUS_ON_ERROR_DISABLE);
	ck_assert_int_eq(p->on_error_set, 1);
	strv_is(&p->command, 2, "pbus-deny_filter", "-x");

	p = &c->plugins[2];
	ck_assert_str_eq(p->name, "minimal");
	ck_assert_int_eq(p->priority, 100);

	/* plugin_dirs and server_settings are accepted with a warning */
	ck_assert_uint_eq(diag.nwarnings, 2);
	at(0, 2, 1, "plugin_dirs");
	at(0, 4, 1, "server_settings");
	pbus_config_destroy(c);
}
END_TEST

START_TEST(enforce_ignore_error_implies_ignore_unless_on_error_given)
{
	struct pbus_config *c = ok(HEAD "    mode: enforce_ignore_error\n"
					"  - name: b\n"
					"    kind: agent\n"
					"    mode: enforce_ignore_error\n"
					"    on_error: fail\n"
					"  - name: c\n"
					"    kind: agent\n"
					"    mode: permissive\n");

	ck_assert_int_eq(c->plugins[0].on_error, PBUS_ON_ERROR_IGNORE);
	ck_assert_int_eq(c->plugins[1].on_error, PBUS_ON_ERROR_FAIL);
	ck_assert_int_eq(c->plugins[1].on_error_set, 1);
	ck_assert_int_eq(c->plugins[2].on_error, PBUS_ON_ERROR_FAIL);
	pbus_config_destroy(c);
}
END_TEST

START_TEST(every_mode_and_on_error_name_parses)
{
	char yaml[512];

	for (int m = 0; m < PBUS_MODE_COUNT; m++) {
		struct pbus_config *c;

		snprintf(yaml, sizeof(yaml), HEAD "    mode: %s\n",
			 pbus_mode_name(m));
		c = ok(yaml);
		ck_assert_int_eq(c->plugins[0].mode, m);
		ck_assert_int_eq(pbus_mode_from_name(pbus_mode_name(m)), m);
		pbus_config_destroy(c);
	}
	for (int e = 0; e < PBUS_ON_ERROR_COUNT; e++) {
		struct pbus_config *c;

		snprintf(yaml, sizeof(yaml), HEAD "    on_error: %s\n",
			 pbus_on_error_name(e));
		c = ok(yaml);
		ck_assert_int_eq(c->plugins[0].on_error, e);
		pbus_config_destroy(c);
	}
	ck_assert_ptr_null(pbus_mode_name(PBUS_MODE_COUNT));
	ck_assert_ptr_null(pbus_on_error_name(-1));
	ck_assert_int_eq(pbus_mode_from_name("strict"), -EINVAL);
	ck_assert_int_eq(pbus_on_error_from_name(NULL), -EINVAL);
}
END_TEST

START_TEST(all_twelve_hooks_map_to_bits)
{
	struct pbus_config *c = ok(
		HEAD
		"    hooks: [prompt_pre_fetch, prompt_post_fetch,\n"
		"      tool_pre_invoke, tool_post_invoke,\n"
		"      resource_pre_fetch, resource_post_fetch,\n"
		"      agent_pre_invoke, agent_post_invoke,\n"
		"      http_pre_request, http_post_request,\n"
		"      http_auth_resolve_user, http_auth_check_permission]\n");

	ck_assert_uint_eq(c->plugins[0].hooks, (1u << PBUS_HOOK_COUNT) - 1);
	pbus_config_destroy(c);
}
END_TEST

START_TEST(socket_mode_takes_octal_strings_and_numbers)
{
	static const struct {
		const char *text;
		unsigned mode;
	} cases[] = {
		{"\"0600\"", 0600}, {"'0660'", 0660}, {"0640", 0640},
		{"\"600\"", 0600},  {"0o700", 0700},  {"384", 0600},
		{"0", 0},
	};
	char yaml[128];

	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct pbus_config *c;

		snprintf(yaml, sizeof(yaml),
			 "plugin_settings: {}\nbus:\n  socket_mode: %s\n",
			 cases[i].text);
		c = ok(yaml);
		ck_assert_uint_eq(c->bus.socket_mode, cases[i].mode);
		pbus_config_destroy(c);
	}
}
END_TEST

START_TEST(lax_scalars_follow_pydantic)
{
	struct pbus_config *c = ok("plugin_settings:\n"
				   "  plugin_timeout: \"45\"\n"
				   "  fail_on_plugin_error: yes\n"
				   "  enable_plugin_api: 'on'\n"
				   "  include_user_info: 1\n"
				   "  parallel_execution_within_band: False\n"
				   "plugins:\n"
				   "  - name: 42\n"
				   "    kind: agent\n"
				   "    priority: \"-7\"\n"
				   "    version: 1.10\n"
				   "    timeout: 1\n");

	ck_assert_uint_eq(c->settings.plugin_timeout_ms, 45000);
	ck_assert_int_eq(c->settings.fail_on_plugin_error, 1);
	ck_assert_int_eq(c->settings.enable_plugin_api, 1);
	ck_assert_int_eq(c->settings.include_user_info, 1);
	ck_assert_int_eq(c->settings.parallel_within_band, 0);
	ck_assert_str_eq(c->plugins[0].name, "42");
	ck_assert_int_eq(c->plugins[0].priority, -7);
	ck_assert_str_eq(c->plugins[0].version, "1.10"); /* text, not 1.1 */
	ck_assert_uint_eq(c->plugins[0].timeout_ms, 1000);
	pbus_config_destroy(c);
}
END_TEST

START_TEST(null_values_leave_defaults)
{
	struct pbus_config *c = ok("plugin_settings: {}\n"
				   "plugins:\n"
				   "bus:\n"
				   "supervision: ~\n"
				   "plugin_dirs:\n");

	ck_assert_uint_eq(c->n_plugins, 0);
	ck_assert_uint_eq(c->bus.ring_slots, 256);
	pbus_config_destroy(c);
}
END_TEST

/* ------------------------------------------------------------ order */

START_TEST(plugins_keep_file_order_and_their_priorities)
{
	struct pbus_config *c =
		ok("plugin_settings: {}\n"
		   "plugins:\n"
		   "  - {name: late, kind: agent, priority: 200}\n"
		   "  - {name: early, kind: agent, priority: -5}\n"
		   "  - {name: tie1, kind: agent, priority: 50}\n"
		   "  - {name: tie2, kind: agent, priority: 50}\n"
		   "  - {name: dflt, kind: agent}\n");
	static const char *const names[] = {"late", "early", "tie1", "tie2",
					    "dflt"};
	static const int prio[] = {200, -5, 50, 50, 100};

	ck_assert_uint_eq(c->n_plugins, 5);
	for (unsigned i = 0; i < 5; i++) {
		ck_assert_str_eq(c->plugins[i].name, names[i]);
		ck_assert_int_eq(c->plugins[i].priority, prio[i]);
		ck_assert_uint_eq(c->plugins[i].line, 3 + i);
		ck_assert_uint_eq(c->plugins[i].col, 5);
	}
	pbus_config_destroy(c);
}
END_TEST

/* ------------------------------------------------------------ errors */

START_TEST(priority_not_an_integer_is_located)
{
	one_error(HEAD "    priority: high\n", 5, 15,
		  "priority: expected an integer, got 'high'");
	one_error(HEAD "    priority: 1.5\n", 5, 15, "expected an integer");
	one_error(HEAD "    priority: 99999999999\n", 5, 15, "out of range");
	one_error(HEAD "    priority: [1]\n", 5, 15, "got a list");
}
END_TEST

START_TEST(hooks_as_a_scalar_is_an_error)
{
	one_error(HEAD "    hooks: tool_pre_invoke\n", 5, 12,
		  "hooks: expected a list of hook names");
	one_error(HEAD "    hooks: {a: 1}\n", 5, 12, "got a map");
}
END_TEST

START_TEST(unknown_hook_is_located_and_suggested)
{
	one_error(HEAD "    hooks: [tool_pre_invoke, tool_pre_invok]\n", 5, 30,
		  "did you mean 'tool_pre_invoke'?");
	one_error(HEAD "    hooks:\n      - server_pre_register\n", 6, 9,
		  "unknown hook 'server_pre_register'");
	one_error(HEAD "    hooks: [[tool_pre_invoke]]\n", 5, 13,
		  "expected a hook name, got a list");
}
END_TEST

START_TEST(bad_mode_and_on_error_are_located)
{
	one_error(HEAD "    mode: strict\n", 5, 11,
		  "mode: unknown mode 'strict' (one of: enforce,");
	one_error(HEAD "    on_error: explode\n", 5, 15,
		  "on_error: unknown on_error 'explode' (one of: fail, "
		  "ignore, disable)");
	one_error(HEAD "    mode:\n", 5, 10, "mode: expected a name, got null");
}
END_TEST

START_TEST(missing_name_or_kind_points_at_the_entry)
{
	one_error("plugin_settings: {}\nplugins:\n  - kind: agent\n", 3, 5,
		  "missing required key 'name'");
	one_error("plugin_settings: {}\nplugins:\n  - name: x\n", 3, 5,
		  "missing required key 'kind' (write `kind: agent`)");
	one_error("plugin_settings: {}\nplugins:\n  - name: ~\n"
		  "    kind: agent\n",
		  3, 11, "name: expected a string, got null");
	one_error("plugin_settings: {}\nplugins:\n  - name: ''\n"
		  "    kind: agent\n",
		  3, 11, "must not be empty");
	one_error("plugin_settings: {}\nplugins:\n  - just a string\n", 3, 5,
		  "plugins: expected a map");
}
END_TEST

START_TEST(duplicate_name_points_at_the_second_and_names_the_first)
{
	one_error("plugin_settings: {}\n"
		  "plugins:\n"
		  "  - name: a\n"
		  "    kind: agent\n"
		  "  - name: b\n"
		  "    kind: agent\n"
		  "  - name: a\n"
		  "    kind: agent\n",
		  7, 11, "duplicate plugin name 'a' (first defined at line 3)");
}
END_TEST

START_TEST(long_name_is_refused)
{
	char yaml[256];

	snprintf(yaml, sizeof(yaml),
		 "plugin_settings: {}\nplugins:\n  - name: %064d\n"
		 "    kind: agent\n",
		 0);
	one_error(yaml, 3, 11, "longer than 63 bytes");
	one_error("plugin_settings: {}\nplugins:\n  - name: \"a\\0b\"\n"
		  "    kind: agent\n",
		  3, 11, "NUL byte");
}
END_TEST

START_TEST(bad_bus_values_are_located)
{
	one_error("plugin_settings: {}\nbus:\n  socket_mode: 600\n", 3, 16,
		  "socket_mode: '600' is not a file mode");
	one_error("plugin_settings: {}\nbus:\n  socket_mode: \"0800\"\n", 3, 16,
		  "expected an octal mode");
	one_error("plugin_settings: {}\nbus:\n  socket_mode: rw\n", 3, 16,
		  "expected an octal mode");
	one_error("plugin_settings: {}\nbus:\n  socket_mode: 01777\n", 3, 16,
		  "expected an octal mode");
	one_error("plugin_settings: {}\nbus:\n  ring_slots: 100\n", 3, 15,
		  "ring_slots: 100 is not a power of two");
	one_error("plugin_settings: {}\nbus:\n  ring_slots: 0\n", 3, 15,
		  "out of range");
	one_error("plugin_settings: {}\nbus:\n  allowed_uids: [0, -1]\n", 3, 21,
		  "allowed_uids: '-1' is out of range");
	one_error("plugin_settings: {}\nbus:\n  allowed_uids: 1000\n", 3, 17,
		  "expected a list of uids");
	one_error("plugin_settings: {}\nbus:\n  max_payload_size: 0\n", 3, 21,
		  "out of range");
	one_error("plugin_settings: {}\nbus: [1]\n", 2, 6,
		  "bus: expected a map");
}
END_TEST

START_TEST(bad_timeouts_are_located)
{
	one_error(HEAD "    timeout: -1\n", 5, 14,
		  "timeout: '-1' seconds is out of range");
	one_error(HEAD "    timeout: 0\n", 5, 14, "out of range");
	one_error(HEAD "    timeout: soon\n", 5, 14,
		  "expected a number of seconds");
	one_error("plugin_settings:\n  plugin_timeout: -0.5\n", 2, 19,
		  "plugin_timeout: '-0.5' seconds is out of range");
	one_error("plugin_settings:\n  plugin_timeout: .inf\n", 2, 19,
		  "out of range");
	one_error("plugin_settings:\n  plugin_timeout: .nan\n", 2, 19,
		  "out of range");
}
END_TEST

START_TEST(bad_supervision_values_are_located)
{
	one_error("plugin_settings: {}\nsupervision:\n"
		  "  restart_backoff_initial_ms: 5000\n"
		  "  restart_backoff_max_ms: 1000\n",
		  3, 31, "(5000) is more than restart_backoff_max_ms (1000)");
	one_error("plugin_settings: {}\nsupervision:\n"
		  "  restart_backoff_max_ms: 50\n",
		  3, 27, "(100) is more than restart_backoff_max_ms (50)");
	one_error("plugin_settings: {}\nsupervision:\n"
		  "  circuit_failures: 0\n",
		  3, 21, "out of range");
}
END_TEST

START_TEST(wrong_shapes_are_located)
{
	one_error("plugin_settings: {}\nplugins: {a: 1}\n", 2, 10,
		  "plugins: expected a list of plugin entries, got a map");
	one_error(HEAD "    tags: [a, {b: 1}]\n", 5, 15,
		  "tags: expected a string, got a map");
	one_error(HEAD "    tags: a\n", 5, 11, "expected a list of strings");
	one_error(HEAD "    conditions: {tools: [x]}\n", 5, 17,
		  "conditions: expected a list of maps");
	one_error(HEAD "    conditions:\n      - tools: x\n", 6, 16,
		  "tools: expected a list of strings, got 'x'");
	one_error(HEAD "    conditions: [x]\n", 5, 18,
		  "conditions: expected a map, got 'x'");
	one_error(HEAD "    config: [1, 2]\n", 5, 13,
		  "config: expected a map, got a list");
	one_error(HEAD "    applied_to: x\n", 5, 17,
		  "applied_to: expected a map");
	one_error(HEAD "    env: [A=1]\n", 5, 10, "env: expected a map");
	one_error(HEAD "    env: {A: [1]}\n", 5, 14,
		  "env: expected a string value, got a list");
	one_error(HEAD "    env: {\"A=B\": 1}\n", 5, 11, "cannot contain '='");
	one_error(HEAD "    command: []\n", 5, 14,
		  "command: must name a program");
	one_error(HEAD "    command: \"  \"\n", 5, 14, "must name a program");
	one_error(HEAD "    command: {a: b}\n", 5, 14,
		  "expected a list of strings");
	one_error(HEAD "    description: [x]\n", 5, 18,
		  "description: expected a string, got a list");
	one_error("plugin_settings:\n  fail_on_plugin_error: maybe\n", 2, 25,
		  "expected true or false, got 'maybe'");
	one_error("plugin_settings:\n  plugin_health_check_interval: -1\n", 2,
		  33, "out of range");
}
END_TEST

START_TEST(duplicate_yaml_key_is_an_error)
{
	one_error(HEAD "    priority: 1\n    priority: 2\n", 6, 5,
		  "duplicate key 'priority' (first at line 5)");
	/* in any map, including config: */
	one_error(HEAD "    config:\n      a: 1\n      b: 2\n      a: 3\n", 8,
		  7, "duplicate key 'a' (first at line 6)");
	one_error("plugin_settings: {}\nplugin_settings: {}\n", 2, 1,
		  "duplicate key 'plugin_settings'");
	/* "1" and 1 are different keys in YAML */
	pbus_config_destroy(ok(HEAD "    config: {1: a, \"1\": b}\n"));
}
END_TEST

START_TEST(yaml_syntax_error_uses_the_problem_mark)
{
	const struct pbus_diag_item *it;

	ck_assert_uint_eq(bad("plugin_settings: {}\nplugins:\n\t- name: x\n"),
			  1);
	it = at(1, 3, 1, "cannot start any token");
	ck_assert_ptr_nonnull(it);
	ck_assert_uint_eq(bad("plugin_settings: {}\nbus: [1, 2\n"), 1);
	at(1, 3, 1, "did not find expected ',' or ']'");
	ck_assert_uint_eq(bad("plugin_settings: {}\nbus: \"abc\n"), 1);
	at(1, 3, 1, "found unexpected end of stream");
}
END_TEST

START_TEST(refused_yaml_constructs_are_located)
{
	one_error("plugin_settings: &s {}\nbus: *s\n", 2, 6,
		  "YAML aliases (*s) are not supported");
	one_error(HEAD "    priority: !!int 5\n", 5, 15,
		  "YAML tag 'tag:yaml.org,2002:int' is not supported");
	one_error("plugin_settings: {}\n---\nplugins: []\n", 2, 1,
		  "holds one YAML document");
	pbus_config_destroy(ok(HEAD "    description: !!str 5\n"));
}
END_TEST

START_TEST(deep_nesting_is_refused)
{
	char yaml[512];
	size_t n = 0;

	n += (size_t)snprintf(yaml, sizeof(yaml), HEAD "    config: {a: ");
	for (int i = 0; i < 70; i++)
		yaml[n++] = '[';
	yaml[n] = '\0';
	ck_assert_uint_eq(bad(yaml), 1);
	ck_assert_ptr_nonnull(strstr(diag.items[0].msg, "nesting deeper"));
}
END_TEST

START_TEST(plugin_settings_is_required)
{
	one_error("plugins: []\n", 1, 1,
		  "missing required key 'plugin_settings'");
	one_error("plugin_settings:\n", 1, 17,
		  "plugin_settings: expected a map, got null");
	one_error("plugin_settings: [1]\n", 1, 18,
		  "plugin_settings: expected a map, got a list");
	one_error("", 1, 1, "the file is empty");
	one_error("# only a comment\n", 1, 1, "the file is empty");
	one_error("- a\n- b\n", 1, 1, "the top level must be a map");
}
END_TEST

START_TEST(errors_are_collected_in_one_pass_and_sorted)
{
	ck_assert_uint_eq(bad("plugins:\n"
			      "  - name: a\n"
			      "    kind: external\n"
			      "    priority: x\n"
			      "bus:\n"
			      "  ring_slots: 3\n"),
			  4);
	ck_assert_uint_eq(diag.items[0].line, 1); /* no plugin_settings */
	ck_assert_uint_eq(diag.items[1].line, 3);
	ck_assert_uint_eq(diag.items[2].line, 4);
	ck_assert_uint_eq(diag.items[3].line, 6);
}
END_TEST

/* ------------------------------------------------------------ kinds */

START_TEST(python_kind_names_the_sample_agent)
{
	one_error("plugin_settings: {}\nplugins:\n  - name: d\n"
		  "    kind: plugins.deny_filter.deny.DenyListPlugin\n",
		  4, 11,
		  "Python plugin classes cannot be loaded by pbus; use `kind: "
		  "agent` with `command: [pbus-deny_filter]`");
	one_error("plugin_settings: {}\nplugins:\n  - name: d\n"
		  "    kind: cpex_rate_limiter.rate_limiter.RateLimiter\n",
		  4, 11, "`command: [pbus-rate_limiter]`");
}
END_TEST

START_TEST(python_kind_without_a_port_lists_the_samples)
{
	one_error("plugin_settings: {}\nplugins:\n  - name: v\n"
		  "    kind: plugins.vault.vault_plugin.Vault\n",
		  4, 11, "use `kind: agent` with `command:`");
	at(1, 4, 11, "header_injector, schema_guard)");
}
END_TEST

START_TEST(external_kind_and_sections_say_kind_agent)
{
	one_error("plugin_settings: {}\nplugins:\n  - name: e\n"
		  "    kind: external\n",
		  4, 11, "write `kind: agent` with `command:`");
	ck_assert_uint_eq(bad("plugin_settings: {}\nplugins:\n  - name: e\n"
			      "    kind: external\n"
			      "    mcp:\n      proto: STDIO\n"
			      "    grpc: {target: 'h:1'}\n"
			      "    unix_socket: {path: /x}\n"),
			  4);
	at(1, 5, 5, "mcp: configures a framework external plugin");
	at(1, 7, 5, "grpc:");
	at(1, 8, 5, "unix_socket:");
	at(1, 8, 5, "`kind: agent`");
	one_error("plugin_settings: {}\nplugins:\n  - name: e\n"
		  "    kind: wasm\n",
		  4, 11, "unknown kind 'wasm'; pbus plugins are `kind: agent`");
}
END_TEST

/* ------------------------------------------------------------ warnings */

START_TEST(unknown_keys_are_located_warnings)
{
	struct pbus_config *c = ok("plugin_settings:\n"
				   "  plugin_timeoutt: 5\n"
				   "plugins:\n"
				   "  - name: a\n"
				   "    kind: agent\n"
				   "    priorty: 5\n"
				   "    max_content_size: 10\n"
				   "    conditions:\n"
				   "      - tool: [x]\n"
				   "bus:\n"
				   "  color: red\n"
				   "supervision:\n"
				   "  circuit_failure: 2\n"
				   "extra: 1\n");

	ck_assert_uint_eq(diag.nwarnings, 7);
	at(0, 2, 3,
	   "unknown key 'plugin_timeoutt' in plugin_settings, "
	   "ignored (did you mean 'plugin_timeout'?)");
	at(0, 6, 5,
	   "unknown key 'priorty' in a plugin entry, ignored (did "
	   "you mean 'priority'?)");
	at(0, 7, 5, "unknown key 'max_content_size'");
	at(0, 9, 9, "unknown key 'tool' in a condition");
	at(0, 11, 3, "unknown key 'color' in bus, ignored");
	at(0, 13, 3, "did you mean 'circuit_failures'?");
	at(0, 14, 1, "unknown key 'extra' in the top level, ignored");
	ck_assert_int_eq(c->plugins[0].priority, 100);
	pbus_config_destroy(c);
}
END_TEST

START_TEST(framework_only_sections_are_warned_about)
{
	struct pbus_config *c =
		ok("plugin_settings: {}\n"
		   "server_settings: {host: x}\n"
		   "grpc_server_settings: {}\n"
		   "unix_socket_server_settings: {}\n"
		   "plugin_dirs: [a, b]\n"
		   "plugins:\n"
		   "  - name: a\n"
		   "    kind: agent\n"
		   "    hooks: [tool_pre_invoke, tool_pre_invoke]\n");

	ck_assert_uint_eq(diag.nwarnings, 5);
	at(0, 2, 1, "server_settings configures a framework external");
	at(0, 3, 1, "grpc_server_settings");
	at(0, 4, 1, "unix_socket_server_settings");
	at(0, 5, 1, "plugin_dirs is ignored");
	at(0, 9, 30, "'tool_pre_invoke' is listed twice");
	ck_assert_uint_eq(c->plugin_dirs.n, 2);
	pbus_config_destroy(c);
}
END_TEST

/* ------------------------------------------------------------ templates */

START_TEST(env_variables_are_substituted)
{
	struct pbus_config *c;

	setenv("PBUS_T_NAME", "from-env", 1);
	setenv("PBUS_T_EMPTY", "", 1);
	unsetenv("PBUS_T_UNSET");
	c = ok("plugin_settings: {}\n"
	       "plugins:\n"
	       "  - name: ${PBUS_T_NAME}\n"
	       "    kind: agent\n"
	       "    description: \"x-${PBUS_T_NAME}-y\"\n"
	       "    author: ${PBUS_T_UNSET:-nobody}\n"
	       "    version: ${PBUS_T_EMPTY:-0.0}\n"
	       "    namespace: ${PBUS_T_UNSET:-}ns\n"
	       "    tags: ['{{ env.PBUS_T_NAME }}', '{{env.PBUS_T_NAME}}',\n"
	       "           '{{  env . PBUS_T_NAME  }}']\n");
	ck_assert_str_eq(c->plugins[0].name, "from-env");
	ck_assert_str_eq(c->plugins[0].description, "x-from-env-y");
	ck_assert_str_eq(c->plugins[0].author, "nobody");
	ck_assert_str_eq(c->plugins[0].version, "0.0");
	ck_assert_str_eq(c->plugins[0].namespace_, "ns");
	strv_is(&c->plugins[0].tags, 3, "from-env", "from-env", "from-env");
	pbus_config_destroy(c);
}
END_TEST

START_TEST(unset_variable_is_an_error_at_its_scalar)
{
	unsetenv("PBUS_T_UNSET");
	one_error(HEAD "    description: abc ${PBUS_T_UNSET} def\n", 5, 18,
		  "environment variable 'PBUS_T_UNSET' is not set");
	one_error(HEAD "    description: '{{ env.PBUS_T_UNSET }}'\n", 5, 18,
		  "'PBUS_T_UNSET' is not set");
	/* one message, not a second one for the bad value */
	one_error(HEAD "    priority: ${PBUS_T_UNSET}\n", 5, 15, "not set");
}
END_TEST

START_TEST(substituted_plain_scalars_are_typed)
{
	struct pbus_config *c;

	setenv("PBUS_T_PRIO", "7", 1);
	setenv("PBUS_T_BOOL", "true", 1);
	unsetenv("PBUS_T_UNSET");
	c = ok("plugin_settings:\n"
	       "  fail_on_plugin_error: ${PBUS_T_BOOL}\n"
	       "  plugin_timeout: ${PBUS_T_UNSET:-0.5}\n"
	       "plugins:\n"
	       "  - name: a\n"
	       "    kind: agent\n"
	       "    priority: ${PBUS_T_PRIO}\n"
	       "  - name: b\n"
	       "    kind: agent\n"
	       "    priority: ${PBUS_T_UNSET:-10}\n");
	ck_assert_int_eq(c->settings.fail_on_plugin_error, 1);
	ck_assert_uint_eq(c->settings.plugin_timeout_ms, 500);
	ck_assert_int_eq(c->plugins[0].priority, 7);
	ck_assert_int_eq(c->plugins[1].priority, 10);
	pbus_config_destroy(c);
	setenv("PBUS_T_PRIO", "high", 1);
	one_error(HEAD "    priority: ${PBUS_T_PRIO}\n", 5, 15,
		  "expected an integer, got 'high'");
}
END_TEST

START_TEST(dollar_dollar_is_a_literal_dollar_and_values_are_not_escaped)
{
	struct pbus_config *c;

	setenv("PBUS_T_HTML", "a&b<c>\"d\"", 1);
	c = ok(HEAD "    description: cost $$5 and $$${PBUS_T_HTML} $x {y}\n"
		    "    author: ${PBUS_T_HTML}\n");
	ck_assert_str_eq(c->plugins[0].description,
			 "cost $5 and $a&b<c>\"d\" $x {y}");
	ck_assert_str_eq(c->plugins[0].author, "a&b<c>\"d\"");
	pbus_config_destroy(c);
}
END_TEST

START_TEST(bad_template_expressions_are_errors)
{
	setenv("PBUS_T_NAME", "v", 1);
	one_error(HEAD "    description: \"{{ env.PBUS_T_NAME | upper }}\"\n",
		  5, 18, "pbus understands only {{ env.NAME }}");
	one_error(HEAD "    description: \"{{ PBUS_T_NAME }}\"\n", 5, 18,
		  "unsupported template expression");
	one_error(HEAD "    description: ${1X}\n", 5, 18,
		  "'${' must be followed by a variable name");
	one_error(HEAD "    description: ${PBUS_T_NAME:-x\n", 5, 18,
		  "unterminated '${'");
	one_error(HEAD "    description: ${PBUS_T_NAME-x}\n", 5, 18,
		  "expected '}' or ':-default}'");
}
END_TEST

START_TEST(keys_are_not_templated)
{
	struct pbus_config *c;
	msgpack_unpacked u;
	size_t off = 0;

	setenv("PBUS_T_NAME", "v", 1);
	c = ok(HEAD "    config: {\"${PBUS_T_NAME}\": 1}\n");
	msgpack_unpacked_init(&u);
	ck_assert_int_eq(msgpack_unpack_next(&u, c->plugins[0].config,
					     c->plugins[0].config_len, &off),
			 MSGPACK_UNPACK_SUCCESS);
	ck_assert_uint_eq(u.data.via.map.size, 1);
	ck_assert_int_eq(u.data.via.map.ptr[0].key.type, MSGPACK_OBJECT_STR);
	ck_assert_int_eq(u.data.via.map.ptr[0].key.via.str.size, 14);
	ck_assert_int_eq(memcmp(u.data.via.map.ptr[0].key.via.str.ptr,
				"${PBUS_T_NAME}", 14),
			 0);
	msgpack_unpacked_destroy(&u);
	pbus_config_destroy(c);
}
END_TEST

/* ------------------------------------------------------------ msgpack */

static const msgpack_object *get(const msgpack_object *m, const char *key)
{
	ck_assert_int_eq(m->type, MSGPACK_OBJECT_MAP);
	for (uint32_t i = 0; i < m->via.map.size; i++) {
		const msgpack_object *k = &m->via.map.ptr[i].key;

		if (k->type == MSGPACK_OBJECT_STR &&
		    k->via.str.size == strlen(key) &&
		    !memcmp(k->via.str.ptr, key, k->via.str.size))
			return &m->via.map.ptr[i].val;
	}
	ck_abort_msg("no key %s", key);
	return NULL;
}

static void is_str(const msgpack_object *o, const char *s)
{
	ck_assert_int_eq(o->type, MSGPACK_OBJECT_STR);
	ck_assert_uint_eq(o->via.str.size, strlen(s));
	ck_assert_int_eq(memcmp(o->via.str.ptr, s, strlen(s)), 0);
}

/* Decode all of @buf as one msgpack object into @u. */
static void unpack(msgpack_unpacked *u, const void *buf, size_t len)
{
	size_t off = 0;

	msgpack_unpacked_init(u);
	ck_assert_int_eq(msgpack_unpack_next(u, buf, len, &off),
			 MSGPACK_UNPACK_SUCCESS);
	ck_assert_uint_eq(off, len);
}

START_TEST(config_map_round_trips_to_typed_msgpack)
{
	struct pbus_config *c;
	const msgpack_object *m, *l;
	msgpack_unpacked u;

	memset(&diag, 0, sizeof(diag));
	ck_assert_int_eq(pbus_config_load(DATA "full.yaml", &diag, &c), 0);
	unpack(&u, c->plugins[0].config, c->plugins[0].config_len);
	m = &u.data;
	ck_assert_uint_eq(m->via.map.size, 7);
	ck_assert_int_eq(get(m, "detect_ssn")->type, MSGPACK_OBJECT_BOOLEAN);
	ck_assert(get(m, "detect_ssn")->via.boolean);
	is_str(get(m, "redaction_text"), "[REDACTED]");
	ck_assert_int_eq(get(m, "max")->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
	ck_assert_uint_eq(get(m, "max")->via.u64, 5);
	ck_assert_int_eq(get(m, "ratio")->type, MSGPACK_OBJECT_FLOAT64);
	ck_assert_double_eq(get(m, "ratio")->via.f64, 0.5);
	ck_assert_int_eq(get(m, "nothing")->type, MSGPACK_OBJECT_NIL);
	l = get(m, "list");
	ck_assert_int_eq(l->type, MSGPACK_OBJECT_ARRAY);
	ck_assert_uint_eq(l->via.array.size, 3);
	ck_assert_uint_eq(l->via.array.ptr[0].via.u64, 1);
	is_str(&l->via.array.ptr[1], "two");
	ck_assert_int_eq(l->via.array.ptr[2].type, MSGPACK_OBJECT_FLOAT64);
	l = get(get(m, "nested"), "a");
	ck_assert_int_eq(l->type, MSGPACK_OBJECT_NEGATIVE_INTEGER);
	ck_assert_int_eq(l->via.i64, -1);
	msgpack_unpacked_destroy(&u);

	/* applied_to is kept whole, whatever is in it */
	unpack(&u, c->plugins[0].applied_to, c->plugins[0].applied_to_len);
	l = get(&u.data, "tools");
	ck_assert_int_eq(l->type, MSGPACK_OBJECT_ARRAY);
	is_str(get(&l->via.array.ptr[0], "tool_name"), "search");
	msgpack_unpacked_destroy(&u);
	ck_assert_ptr_null(c->plugins[1].config);
	pbus_config_destroy(c);
}
END_TEST

START_TEST(plain_scalars_type_by_the_core_schema)
{
	struct pbus_config *c = ok(
		HEAD "    config:\n"
		     "      n1: null\n      n2: ~\n      n3:\n      n4: Null\n"
		     "      b1: True\n      b2: FALSE\n"
		     "      s1: yes\n      s2: 'true'\n      s3: \"12\"\n"
		     "      s4: 1_000\n      s5: 0x\n      s6: +0x1\n"
		     "      i1: 0x1F\n      i2: 0o17\n      i3: -12\n"
		     "      i4: 0600\n      i5: +3\n"
		     "      u1: 18446744073709551615\n"
		     "      f1: 1e3\n      f2: -.5\n      f3: .inf\n"
		     "      f4: -.Inf\n      f5: .nan\n      f6: 2.\n"
		     "      t1: |\n        block\n"
		     "      e: {}\n      a: []\n");
	const msgpack_object *m;
	msgpack_unpacked u;

	unpack(&u, c->plugins[0].config, c->plugins[0].config_len);
	m = &u.data;
	ck_assert_int_eq(get(m, "n1")->type, MSGPACK_OBJECT_NIL);
	ck_assert_int_eq(get(m, "n2")->type, MSGPACK_OBJECT_NIL);
	ck_assert_int_eq(get(m, "n3")->type, MSGPACK_OBJECT_NIL);
	ck_assert_int_eq(get(m, "n4")->type, MSGPACK_OBJECT_NIL);
	ck_assert(get(m, "b1")->via.boolean);
	ck_assert_int_eq(get(m, "b2")->type, MSGPACK_OBJECT_BOOLEAN);
	ck_assert(!get(m, "b2")->via.boolean);
	is_str(get(m, "s1"), "yes");
	is_str(get(m, "s2"), "true");
	is_str(get(m, "s3"), "12");
	is_str(get(m, "s4"), "1_000");
	is_str(get(m, "s5"), "0x");
	is_str(get(m, "s6"), "+0x1");
	ck_assert_uint_eq(get(m, "i1")->via.u64, 31);
	ck_assert_uint_eq(get(m, "i2")->via.u64, 15);
	ck_assert_int_eq(get(m, "i3")->via.i64, -12);
	ck_assert_uint_eq(get(m, "i4")->via.u64, 600);
	ck_assert_uint_eq(get(m, "i5")->via.u64, 3);
	ck_assert_uint_eq(get(m, "u1")->via.u64, UINT64_MAX);
	ck_assert_double_eq(get(m, "f1")->via.f64, 1000.0);
	ck_assert_double_eq(get(m, "f2")->via.f64, -0.5);
	ck_assert(isinf(get(m, "f3")->via.f64) && get(m, "f3")->via.f64 > 0);
	ck_assert(isinf(get(m, "f4")->via.f64) && get(m, "f4")->via.f64 < 0);
	ck_assert(isnan(get(m, "f5")->via.f64));
	ck_assert_double_eq(get(m, "f6")->via.f64, 2.0);
	is_str(get(m, "t1"), "block\n");
	ck_assert_uint_eq(get(m, "e")->via.map.size, 0);
	ck_assert_int_eq(get(m, "a")->type, MSGPACK_OBJECT_ARRAY);
	msgpack_unpacked_destroy(&u);
	pbus_config_destroy(c);
}
END_TEST

START_TEST(empty_config_map_is_one_msgpack_byte)
{
	struct pbus_config *c = ok(HEAD "    config: {}\n");

	ck_assert_uint_eq(c->plugins[0].config_len, 1);
	ck_assert_uint_eq(((unsigned char *)c->plugins[0].config)[0], 0x80);
	pbus_config_destroy(c);
	c = ok(HEAD "    config:\n");
	ck_assert_ptr_null(c->plugins[0].config);
	ck_assert_uint_eq(c->plugins[0].config_len, 0);
	pbus_config_destroy(c);
}
END_TEST

START_TEST(integer_beyond_64_bits_is_an_error_in_config)
{
	one_error(HEAD "    config:\n      big: 99999999999999999999\n", 6, 12,
		  "does not fit in 64 bits");
	one_error(HEAD "    config:\n      big: -9223372036854775809\n", 6, 12,
		  "does not fit in 64 bits");
}
END_TEST

/* ------------------------------------------------------------ files */

START_TEST(missing_file_is_enoent_and_out_untouched)
{
	struct pbus_config *c = BAD_OUT;

	memset(&diag, 0, sizeof(diag));
	ck_assert_int_eq(pbus_config_load(DATA "no-such-file.yaml", &diag, &c),
			 -ENOENT);
	ck_assert_ptr_eq(c, BAD_OUT);
	ck_assert_int_eq(pbus_config_load(DATA, NULL, &c), -EISDIR);
	ck_assert_ptr_eq(c, BAD_OUT);
	ck_assert_int_eq(pbus_config_load(NULL, NULL, &c), -EINVAL);
	ck_assert_int_eq(pbus_config_load(DATA "full.yaml", NULL, NULL),
			 -EINVAL);
}
END_TEST

START_TEST(five_mistakes_file_gives_exactly_five_located_errors)
{
	struct pbus_config *c = BAD_OUT;

	memset(&diag, 0, sizeof(diag));
	ck_assert_int_eq(pbus_config_load(DATA "five_mistakes.yaml", &diag, &c),
			 -EINVAL);
	ck_assert_ptr_eq(c, BAD_OUT);
	if (diag.nerrors != 5)
		dump();
	ck_assert_uint_eq(diag.nerrors, 5);
	ck_assert_uint_eq(diag.nwarnings, 0);
	at(1, 11, 15, "priority: expected an integer");
	at(1, 15, 30, "unknown hook 'tool_post_invok'");
	at(1, 20, 11, "unknown mode 'enforcing'");
	at(1, 22, 11,
	   "duplicate plugin name 'deny_filter' (first defined "
	   "at line 8)");
	at(1, 28, 11, "`command: [pbus-regex_filter]`");
}
END_TEST

START_TEST(framework_style_file_loads)
{
	struct pbus_config *c = NULL;

	memset(&diag, 0, sizeof(diag));
	ck_assert_int_eq(pbus_config_load(DATA "framework.yaml", &diag, &c), 0);
	ck_assert_uint_eq(c->n_plugins, 2);
	ck_assert_uint_eq(c->plugins[1].hooks, 0xf);
	ck_assert_uint_eq(diag.nwarnings, 1); /* plugin_dirs */
	pbus_config_destroy(c);
}
END_TEST

/* ------------------------------------------------------------ contract */

START_TEST(null_diag_is_allowed)
{
	struct pbus_config *c = BAD_OUT;
	const char *y = HEAD "    priority: x\n";

	ck_assert_int_eq(pbus_config_parse(y, strlen(y), NULL, NULL, &c),
			 -EINVAL);
	ck_assert_ptr_eq(c, BAD_OUT);
	y = HEAD;
	ck_assert_int_eq(pbus_config_parse(y, strlen(y), NULL, NULL, &c), 0);
	ck_assert_str_eq(c->path, "<input>");
	pbus_config_destroy(c);
	pbus_config_destroy(NULL);
	ck_assert_int_eq(pbus_config_parse(NULL, 0, NULL, NULL, &c), -EINVAL);
	ck_assert_int_eq(pbus_config_parse(NULL, 1, NULL, NULL, &c), -EINVAL);
}
END_TEST

START_TEST(input_need_not_be_nul_terminated)
{
	static const char y[] = HEAD "    priority: 7\n    XX";
	struct pbus_config *c = NULL;

	memset(&diag, 0, sizeof(diag));
	ck_assert_int_eq(pbus_config_parse(y, sizeof(y) - 3, "t", &diag, &c),
			 0);
	ck_assert_int_eq(c->plugins[0].priority, 7);
	pbus_config_destroy(c);
}
END_TEST

START_TEST(mangled_inputs_fail_cleanly)
{
	static const char *const inputs[] = {
		"\xff\xfe\x00",
		"plugin_settings: {}\nplugins:\n  - name: a\n    kind: agent\n"
		"    config: {a: [1, {b: \"\\xZZ\"}]}\n",
		"plugin_settings: {}\nplugins:\n- {name: a, kind: agent, "
		"config: {? [1, 2] : x}}\n",
		"plugin_settings: {}\nplugins:\n  - name: a\n    kind: agent\n"
		"    config: !!binary aGVsbG8=\n",
		"plugin_settings: {}\n...\n---\n",
		"%YAML 1.1\n---\nplugin_settings: {}\n",
		"plugin_settings: {}\nplugins: [&x {name: a, kind: agent}, "
		"*x]\n",
		":\n",
		"[",
		"{{{{{{{{",
	};

	for (unsigned i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
		struct pbus_config *c = NULL;
		int ret;

		memset(&diag, 0, sizeof(diag));
		ret = pbus_config_parse(inputs[i], strlen(inputs[i]), "m",
					&diag, &c);
		ck_assert_msg(ret == 0 || ret == -EINVAL, "input %u: %d", i,
			      ret);
		ck_assert_msg(ret == 0 || !c, "input %u: out set on error", i);
		ck_assert_msg(ret != 0 || c, "input %u: no config", i);
		ck_assert_msg(ret != -EINVAL || diag.nerrors > 0,
			      "input %u: -EINVAL without an error", i);
		pbus_config_destroy(c);
	}
}
END_TEST

START_TEST(many_diagnostics_are_counted_past_the_cap)
{
	char *y = malloc(100 * 32 + 64);
	size_t n = 0;

	ck_assert_ptr_nonnull(y);
	n += (size_t)sprintf(y, "plugin_settings: {}\nplugins:\n");
	for (int i = 0; i < 100; i++)
		n += (size_t)sprintf(y + n, "  - {name: p%d, kind: x}\n", i);
	ck_assert_uint_eq(bad(y), 100);
	ck_assert_uint_eq(diag.n, PBUS_DIAG_MAX);
	free(y);
}
END_TEST

/* ------------------------------------------------------------ the CLI */

struct run {
	int status; /* exit code, or -1 */
	char out[16384];
	char err[16384];
};

static void slurp(FILE *f, char *buf, size_t len)
{
	size_t n;

	rewind(f);
	n = fread(buf, 1, len - 1, f);
	buf[n] = '\0';
	fclose(f);
}

/* Run `pbus ARGS...`; returns 0, or 1 when the binary is not available. */
static int run_pbus(struct run *r, ...)
{
	const char *build = getenv("PBUS_BUILD");
	char bin[4096], *argv[16];
	FILE *out, *err;
	int argc = 1, st;
	va_list ap;
	pid_t pid;

	if (!build) {
		fprintf(stderr, "test_config: SKIP the `pbus` command cases: "
				"PBUS_BUILD is unset (run them with `make "
				"test`)\n");
		return 1;
	}
	snprintf(bin, sizeof(bin), "%s/bin/pbus", build);
	argv[0] = bin;
	va_start(ap, r);
	while (argc < 15 && (argv[argc] = va_arg(ap, char *)))
		argc++;
	va_end(ap);
	argv[argc] = NULL;
	out = tmpfile();
	err = tmpfile();
	ck_assert(out && err);
	fflush(NULL);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (!pid) {
		dup2(fileno(out), 1);
		dup2(fileno(err), 2);
		execv(bin, argv);
		_exit(127);
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	slurp(out, r->out, sizeof(r->out));
	slurp(err, r->err, sizeof(r->err));
	ck_assert_msg(r->status != 127, "cannot run %s", bin);
	return 0;
}

static unsigned count(const char *s, const char *sub)
{
	unsigned n = 0;

	for (s = strstr(s, sub); s; s = strstr(s + 1, sub))
		n++;
	return n;
}

START_TEST(check_command_reports_five_mistakes_and_exits_1)
{
	struct run r;

	if (run_pbus(&r, "check", "-c", DATA "five_mistakes.yaml", NULL))
		return;
	ck_assert_int_eq(r.status, 1);
	ck_assert_uint_eq(count(r.err, ": error: "), 5);
	ck_assert_ptr_nonnull(strstr(r.err, DATA "five_mistakes.yaml:11:15: "
						 "error: priority: expected"));
	ck_assert_ptr_nonnull(
		strstr(r.err, "five_mistakes.yaml:28:11: error:"));
	ck_assert_str_eq(r.out, "");
}
END_TEST

START_TEST(check_command_summarises_a_valid_file_in_call_order)
{
	char path[] = "/tmp/pbus-test-config-XXXXXX.yaml";
	static const char y[] =
		"plugin_settings: {plugin_timeout: 1.5}\n"
		"plugins:\n"
		"  - {name: third, kind: agent, priority: 300,\n"
		"     hooks: [tool_pre_invoke]}\n"
		"  - {name: first, kind: agent, priority: 5,\n"
		"     hooks: [tool_pre_invoke], mode: audit}\n"
		"  - {name: second, kind: agent, priority: 5,\n"
		"     hooks: [tool_pre_invoke], wat: 1}\n";
	const char *a, *b, *c;
	struct run r;
	int fd = mkstemps(path, 5);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, y, sizeof(y) - 1), (int)sizeof(y) - 1);
	close(fd);
	if (run_pbus(&r, "check", "--config", path, NULL)) {
		unlink(path);
		return;
	}
	ck_assert_int_eq(r.status, 0);
	ck_assert_uint_eq(count(r.err, ": warning: "), 1);
	ck_assert_ptr_nonnull(strstr(r.out, "ok, 3 plugins"));
	ck_assert_ptr_nonnull(strstr(r.out, "plugin_timeout 1.5s"));
	a = strstr(r.out, "first");
	b = strstr(r.out, "second");
	c = strstr(r.out, "third");
	ck_assert(a && b && c && a < b && b < c);
	ck_assert_ptr_nonnull(strstr(r.out, "audit"));
	ck_assert_int_eq(run_pbus(&r, "check", "-q", path, NULL), 0);
	ck_assert_int_eq(r.status, 0);
	ck_assert_str_eq(r.out, "");
	ck_assert_str_eq(r.err, "");
	unlink(path);
}
END_TEST

START_TEST(check_command_usage_errors_exit_2)
{
	struct run r;

	if (run_pbus(&r, "check", NULL))
		return;
	ck_assert_int_eq(r.status, 2);
	ck_assert_ptr_nonnull(strstr(r.err, "no config file"));
	run_pbus(&r, "check", "--bogus", NULL);
	ck_assert_int_eq(r.status, 2);
	ck_assert_ptr_nonnull(strstr(r.err, "unknown option '--bogus'"));
	run_pbus(&r, "check", "-c", NULL);
	ck_assert_int_eq(r.status, 2);
	run_pbus(&r, "check", "a.yaml", "b.yaml", NULL);
	ck_assert_int_eq(r.status, 2);
	run_pbus(&r, "check", "-c", DATA "no-such-file.yaml", NULL);
	ck_assert_int_eq(r.status, 1);
	ck_assert_ptr_nonnull(strstr(r.err, "No such file or directory"));
	run_pbus(&r, "check", "--help", NULL);
	ck_assert_int_eq(r.status, 0);
	ck_assert_ptr_nonnull(strstr(r.out, "usage: pbus check"));
}
END_TEST

START_TEST(pbus_command_dispatches_and_rejects_unknown_subcommands)
{
	struct run r;

	if (run_pbus(&r, "--version", NULL))
		return;
	ck_assert_int_eq(r.status, 0);
	ck_assert_str_eq(r.out, "pbus " PBUS_VERSION_STR "\n");
	run_pbus(&r, "--help", NULL);
	ck_assert_int_eq(r.status, 0);
	ck_assert_ptr_nonnull(strstr(r.out, "check"));
	run_pbus(&r, "help", "check", NULL);
	ck_assert_int_eq(r.status, 0);
	ck_assert_ptr_nonnull(strstr(r.out, "usage: pbus check"));
	run_pbus(&r, "frobnicate", NULL);
	ck_assert_int_eq(r.status, 2);
	ck_assert_ptr_nonnull(strstr(r.err, "unknown command 'frobnicate'"));
	run_pbus(&r, "help", "frobnicate", NULL);
	ck_assert_int_eq(r.status, 2);
	run_pbus(&r, "--frob", NULL);
	ck_assert_int_eq(r.status, 2);
	run_pbus(&r, NULL);
	ck_assert_int_eq(r.status, 2);
	ck_assert_ptr_nonnull(strstr(r.err, "usage: pbus"));
}
END_TEST

/* ------------------------------------------------------------ suite */

static Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *t;

	t = tcase_create("defaults");
	tcase_add_test(t, minimal_file_gets_framework_defaults);
	tcase_add_test(t, plugin_entry_gets_defaults);
	tcase_add_test(t, every_key_is_parsed);
	tcase_add_test(
		t, enforce_ignore_error_implies_ignore_unless_on_error_given);
	tcase_add_test(t, every_mode_and_on_error_name_parses);
	tcase_add_test(t, all_twelve_hooks_map_to_bits);
	tcase_add_test(t, socket_mode_takes_octal_strings_and_numbers);
	tcase_add_test(t, lax_scalars_follow_pydantic);
	tcase_add_test(t, null_values_leave_defaults);
	suite_add_tcase(s, t);

	t = tcase_create("order");
	tcase_add_test(t, plugins_keep_file_order_and_their_priorities);
	suite_add_tcase(s, t);

	t = tcase_create("errors");
	tcase_add_test(t, priority_not_an_integer_is_located);
	tcase_add_test(t, hooks_as_a_scalar_is_an_error);
	tcase_add_test(t, unknown_hook_is_located_and_suggested);
	tcase_add_test(t, bad_mode_and_on_error_are_located);
	tcase_add_test(t, missing_name_or_kind_points_at_the_entry);
	tcase_add_test(t,
		       duplicate_name_points_at_the_second_and_names_the_first);
	tcase_add_test(t, long_name_is_refused);
	tcase_add_test(t, bad_bus_values_are_located);
	tcase_add_test(t, bad_timeouts_are_located);
	tcase_add_test(t, bad_supervision_values_are_located);
	tcase_add_test(t, wrong_shapes_are_located);
	tcase_add_test(t, duplicate_yaml_key_is_an_error);
	tcase_add_test(t, yaml_syntax_error_uses_the_problem_mark);
	tcase_add_test(t, refused_yaml_constructs_are_located);
	tcase_add_test(t, deep_nesting_is_refused);
	tcase_add_test(t, plugin_settings_is_required);
	tcase_add_test(t, errors_are_collected_in_one_pass_and_sorted);
	tcase_add_test(t, integer_beyond_64_bits_is_an_error_in_config);
	suite_add_tcase(s, t);

	t = tcase_create("kinds");
	tcase_add_test(t, python_kind_names_the_sample_agent);
	tcase_add_test(t, python_kind_without_a_port_lists_the_samples);
	tcase_add_test(t, external_kind_and_sections_say_kind_agent);
	suite_add_tcase(s, t);

	t = tcase_create("warnings");
	tcase_add_test(t, unknown_keys_are_located_warnings);
	tcase_add_test(t, framework_only_sections_are_warned_about);
	suite_add_tcase(s, t);

	t = tcase_create("templates");
	tcase_add_test(t, env_variables_are_substituted);
	tcase_add_test(t, unset_variable_is_an_error_at_its_scalar);
	tcase_add_test(t, substituted_plain_scalars_are_typed);
	tcase_add_test(
		t,
		dollar_dollar_is_a_literal_dollar_and_values_are_not_escaped);
	tcase_add_test(t, bad_template_expressions_are_errors);
	tcase_add_test(t, keys_are_not_templated);
	suite_add_tcase(s, t);

	t = tcase_create("msgpack");
	tcase_add_test(t, config_map_round_trips_to_typed_msgpack);
	tcase_add_test(t, plain_scalars_type_by_the_core_schema);
	tcase_add_test(t, empty_config_map_is_one_msgpack_byte);
	suite_add_tcase(s, t);

	t = tcase_create("files");
	tcase_add_test(t, missing_file_is_enoent_and_out_untouched);
	tcase_add_test(t, five_mistakes_file_gives_exactly_five_located_errors);
	tcase_add_test(t, framework_style_file_loads);
	suite_add_tcase(s, t);

	t = tcase_create("contract");
	tcase_add_test(t, null_diag_is_allowed);
	tcase_add_test(t, input_need_not_be_nul_terminated);
	tcase_add_test(t, mangled_inputs_fail_cleanly);
	tcase_add_test(t, many_diagnostics_are_counted_past_the_cap);
	suite_add_tcase(s, t);

	t = tcase_create("cli");
	tcase_set_timeout(t, 30);
	tcase_add_test(t, check_command_reports_five_mistakes_and_exits_1);
	tcase_add_test(t, check_command_summarises_a_valid_file_in_call_order);
	tcase_add_test(t, check_command_usage_errors_exit_2);
	tcase_add_test(t,
		       pbus_command_dispatches_and_rejects_unknown_subcommands);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(config_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
