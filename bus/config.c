// SPDX-License-Identifier: MIT
/*
 * The config loader's entry points and the file's sections: the top level,
 * `plugin_settings`, `bus` and `supervision`. Plugin entries are in
 * config_plugin.c, field readers in config_field.c, YAML in config_yaml.c and
 * templates in config_env.c.
 *
 * Invariants: the walk never stops at the first error. Each check reports
 * and moves on, so one run lists everything wrong. The result is
 * all-or-nothing: any error (or failed allocation) destroys the half-built
 * config and leaves the caller's *out alone. Unknown keys are warnings, never
 * errors. A node marked bad (an error already reported there, such as a
 * failed template or a duplicate key) is skipped quietly, so one mistake
 * gives one message. Diagnostics are sorted by position at the end.
 *
 * Not thread-hostile: a load touches no global state besides reading the
 * environment for templates.
 */
#include "pbus/config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_internal.h"

#define MAX_FILE (16u << 20)
#define SUN_PATH_MAX 108 /* sizeof(((struct sockaddr_un *)0)->sun_path) */

enum {
	S_PARALLEL,
	S_TIMEOUT,
	S_FAIL,
	S_API,
	S_HEALTH,
	S_USER,
	S_COUNT,
};

static const char *const settings_keys[S_COUNT] = {
	"parallel_execution_within_band", "plugin_timeout",
	"fail_on_plugin_error",		  "enable_plugin_api",
	"plugin_health_check_interval",	  "include_user_info",
};

static void parse_settings(struct pbus__cfgx *x, const struct pbus__ynode *m)
{
	struct pbus_settings *s = &x->c->settings;

	if (!m->bad && pbus__cfg_null(m)) {
		ERR(x, m,
		    "plugin_settings: expected a map, got null (write "
		    "`plugin_settings: {}` for the defaults)");
		return;
	}
	if (!pbus__cfg_map(x, "plugin_settings", m, 0))
		return;
	for (unsigned i = 0; i + 1 < m->n; i += 2) {
		const struct pbus__ynode *v = m->kid[i + 1];
		int k = pbus__cfg_key(x, m->kid[i], settings_keys, S_COUNT,
				      "plugin_settings");

		switch (k) {
		case S_PARALLEL:
			pbus__cfg_bool(x, settings_keys[k], v,
				       &s->parallel_within_band);
			break;
		case S_TIMEOUT:
			pbus__cfg_secs(x, settings_keys[k], v,
				       &s->plugin_timeout_ms);
			break;
		case S_FAIL:
			pbus__cfg_bool(x, settings_keys[k], v,
				       &s->fail_on_plugin_error);
			break;
		case S_API:
			pbus__cfg_bool(x, settings_keys[k], v,
				       &s->enable_plugin_api);
			break;
		case S_HEALTH:
			pbus__cfg_uint(x, settings_keys[k], v, 0, INT_MAX,
				       &s->health_check_interval_s);
			break;
		case S_USER:
			pbus__cfg_bool(x, settings_keys[k], v,
				       &s->include_user_info);
			break;
		}
	}
}

/*
 * A file mode. A string, or any number written with a leading 0, is octal
 * ("0600", 0600, "600", 0o600); a plain number without one is decimal (384).
 */
static void parse_socket_mode(struct pbus__cfgx *x, const struct pbus__ynode *v,
			      unsigned *out)
{
	struct pbus__yval val;
	const char *s;
	char buf[64], *end;
	unsigned long m;

	if (pbus__cfg_text(x, "socket_mode", v, "an octal mode like \"0600\""))
		return;
	s = v->s;
	pbus__yaml_resolve(v, &val);
	if (val.kind == PBUS__YV_INT && (s[0] != '0' || s[1] == 'x' || !s[1])) {
		m = (unsigned long)val.i;
		if (m <= 0777) {
			*out = (unsigned)m;
			return;
		}
		ERR(x, v,
		    "socket_mode: %s is not a file mode; write it in "
		    "octal with a leading zero, like \"0600\"",
		    pbus__cfg_shown(v, buf, 64));
		return;
	}
	if (s[0] == '0' && s[1] == 'o')
		s += 2;
	if (*s && strspn(s, "01234567") == strlen(s)) {
		m = strtoul(s, &end, 8);
		if (m <= 0777) {
			*out = (unsigned)m;
			return;
		}
	}
	ERR(x, v,
	    "socket_mode: expected an octal mode from 0000 to 0777 like "
	    "\"0600\", got %s",
	    pbus__cfg_shown(v, buf, 64));
}

static void parse_uids(struct pbus__cfgx *x, const struct pbus__ynode *v,
		       struct pbus_bus_cfg *b)
{
	char buf[64];

	if (v->bad || pbus__cfg_null(v))
		return;
	if (v->type != PBUS__Y_SEQ) {
		ERR(x, v, "allowed_uids: expected a list of uids, got %s",
		    pbus__cfg_shown(v, buf, 64));
		return;
	}
	free(b->allowed_uids);
	b->n_allowed_uids = 0;
	b->allowed_uids = calloc(v->n ? v->n : 1, sizeof(*b->allowed_uids));
	if (!b->allowed_uids) {
		x->nomem = 1;
		return;
	}
	for (unsigned i = 0; i < v->n; i++) {
		unsigned uid;

		if (!pbus__cfg_uint(x, "allowed_uids", v->kid[i], 0,
				    UINT_MAX - 1, &uid))
			b->allowed_uids[b->n_allowed_uids++] = uid;
	}
}

enum {
	B_PATH,
	B_MODE,
	B_UIDS,
	B_PAYLOAD,
	B_SLOTS,
	B_LANES,
	B_SPIN,
	B_IDLE_SPIN,
	B_COUNT,
};

static const char *const bus_keys[B_COUNT] = {
	"socket_path", "socket_mode", "allowed_uids", "max_payload_size",
	"ring_slots",  "lanes",	      "max_spin_ns",  "agent_idle_spin_ns",
};

static void parse_bus(struct pbus__cfgx *x, const struct pbus__ynode *m)
{
	struct pbus_bus_cfg *b = &x->c->bus;
	unsigned u;

	if (!pbus__cfg_map(x, "bus", m, 1))
		return;
	for (unsigned i = 0; i + 1 < m->n; i += 2) {
		const struct pbus__ynode *v = m->kid[i + 1];
		int k = pbus__cfg_key(x, m->kid[i], bus_keys, B_COUNT, "bus");

		switch (k) {
		case B_PATH:
			if (pbus__cfg_str(x, "socket_path", v,
					  &b->socket_path) ||
			    !b->socket_path)
				break;
			if (!*b->socket_path)
				ERR(x, v, "socket_path: must not be empty");
			else if (strlen(b->socket_path) >= SUN_PATH_MAX)
				ERR(x, v,
				    "socket_path: longer than %d bytes, "
				    "the limit of a unix socket path",
				    SUN_PATH_MAX - 1);
			break;
		case B_MODE:
			parse_socket_mode(x, v, &b->socket_mode);
			break;
		case B_UIDS:
			parse_uids(x, v, b);
			break;
		case B_PAYLOAD:
			if (!pbus__cfg_uint(x, bus_keys[k], v, 1, 1u << 30, &u))
				b->max_payload = u;
			break;
		case B_SLOTS:
			if (pbus__cfg_uint(x, bus_keys[k], v, 1, 1u << 16, &u))
				break;
			if (u & (u - 1))
				ERR(x, v,
				    "ring_slots: %u is not a power of two", u);
			else
				b->ring_slots = u;
			break;
		case B_LANES:
			pbus__cfg_uint(x, bus_keys[k], v, 1, 4096, &b->lanes);
			break;
		case B_SPIN:
		case B_IDLE_SPIN:
			if (pbus__cfg_uint(x, bus_keys[k], v, 0, UINT_MAX, &u))
				break;
			/* 0 means "default" to the bus; 1 ns is "no spin" */
			*(k == B_SPIN ? &b->max_spin_ns
				      : &b->agent_idle_spin_ns) = u ? u : 1;
			break;
		}
	}
}

enum {
	V_BACKOFF_INIT,
	V_BACKOFF_MAX,
	V_CB_FAILURES,
	V_CB_WINDOW,
	V_CB_OPEN,
	V_WATCHDOG,
	V_HEARTBEAT,
	V_COUNT,
};

static const char *const sup_keys[V_COUNT] = {
	"restart_backoff_initial_ms",
	"restart_backoff_max_ms",
	"circuit_failures",
	"circuit_window_ms",
	"circuit_open_ms",
	"watchdog_timeouts",
	"heartbeat_timeout_ms",
};

static void parse_supervision(struct pbus__cfgx *x, const struct pbus__ynode *m)
{
	struct pbus_supervision_cfg *s = &x->c->supervision;
	unsigned *f[V_COUNT] = {
		&s->backoff_initial_ms,	  &s->backoff_max_ms,
		&s->circuit_failures,	  &s->circuit_window_ms,
		&s->circuit_open_ms,	  &s->watchdog_timeouts,
		&s->heartbeat_timeout_ms,
	};
	const struct pbus__ynode *init = NULL, *max = NULL;

	if (!pbus__cfg_map(x, "supervision", m, 1))
		return;
	for (unsigned i = 0; i + 1 < m->n; i += 2) {
		const struct pbus__ynode *v = m->kid[i + 1];
		int k = pbus__cfg_key(x, m->kid[i], sup_keys, V_COUNT,
				      "supervision");
		unsigned min = k == V_BACKOFF_INIT || k == V_CB_OPEN ? 0 : 1;

		if (k < 0)
			continue;
		if (pbus__cfg_uint(x, sup_keys[k], v, min, INT_MAX, f[k]))
			continue;
		if (k == V_BACKOFF_INIT)
			init = v;
		else if (k == V_BACKOFF_MAX)
			max = v;
	}
	/* Point at what was written: a default cannot be the mistake. */
	if ((init || max) && s->backoff_initial_ms > s->backoff_max_ms)
		ERR(x, init ? init : max,
		    "restart_backoff_initial_ms (%u) is more than "
		    "restart_backoff_max_ms (%u)",
		    s->backoff_initial_ms, s->backoff_max_ms);
}

enum {
	T_PLUGINS,
	T_SETTINGS,
	T_DIRS,
	T_SERVER,
	T_GRPC_SERVER,
	T_UNIX_SERVER,
	T_BUS,
	T_SUPERVISION,
	T_COUNT,
};

static const char *const top_keys[T_COUNT] = {
	"plugins",
	"plugin_settings",
	"plugin_dirs",
	"server_settings",
	"grpc_server_settings",
	"unix_socket_server_settings",
	"bus",
	"supervision",
};

static void parse_root(struct pbus__cfgx *x, const struct pbus__ynode *root)
{
	int settings = 0;

	if (!root) {
		pbus__cfg_error(x, 1, 1,
				"the file is empty; a config "
				"needs at least `plugin_settings: {}`");
		return;
	}
	if (root->type != PBUS__Y_MAP) {
		ERR(x, root,
		    "the top level must be a map with `plugins:` and "
		    "`plugin_settings:`");
		return;
	}
	for (unsigned i = 0; i + 1 < root->n; i += 2) {
		const struct pbus__ynode *k = root->kid[i],
					 *v = root->kid[i + 1];

		switch (pbus__cfg_key(x, k, top_keys, T_COUNT,
				      "the top level")) {
		case T_PLUGINS:
			pbus__cfg_plugins(x, v);
			break;
		case T_SETTINGS:
			settings = 1;
			parse_settings(x, v);
			break;
		case T_DIRS:
			pbus__cfg_strv(x, "plugin_dirs", v, &x->c->plugin_dirs);
			WARN(x, k,
			     "plugin_dirs is ignored: pbus starts each "
			     "plugin from its `command:`");
			break;
		case T_SERVER:
		case T_GRPC_SERVER:
		case T_UNIX_SERVER:
			WARN(x, k,
			     "%s configures a framework external plugin "
			     "server; pbus ignores it",
			     k->s);
			break;
		case T_BUS:
			parse_bus(x, v);
			break;
		case T_SUPERVISION:
			parse_supervision(x, v);
			break;
		}
	}
	if (!settings)
		ERR(x, root,
		    "missing required key 'plugin_settings' (the "
		    "framework requires it too; write `plugin_settings: {}` "
		    "for the defaults)");
}

/* ------------------------------------------------------------ lifecycle */

static void set_defaults(struct pbus_config *c)
{
	c->settings.plugin_timeout_ms = 30000;
	c->settings.health_check_interval_s = 60;
	c->bus.socket_mode = 0600;
	c->bus.max_payload = 1000000;
	c->bus.ring_slots = 256;
	c->bus.lanes = 64;
	c->bus.max_spin_ns = 100000;
	c->bus.agent_idle_spin_ns = 50000;
	c->supervision.backoff_initial_ms = 100;
	c->supervision.backoff_max_ms = 30000;
	c->supervision.circuit_failures = 5;
	c->supervision.circuit_window_ms = 60000;
	c->supervision.circuit_open_ms = 5000;
	c->supervision.watchdog_timeouts = 3;
	c->supervision.heartbeat_timeout_ms = 5000;
}

/* Order this load's diagnostics by position (stable: insertion sort). */
static void sort_diag(struct pbus_diag *d, unsigned start)
{
	if (!d)
		return;
	for (unsigned i = start + 1; i < d->n; i++) {
		struct pbus_diag_item it = d->items[i];
		unsigned j = i;

		while (j > start && (d->items[j - 1].line > it.line ||
				     (d->items[j - 1].line == it.line &&
				      d->items[j - 1].col > it.col))) {
			d->items[j] = d->items[j - 1];
			j--;
		}
		d->items[j] = it;
	}
}

int pbus_config_parse(const char *buf, size_t len, const char *name,
		      struct pbus_diag *d, struct pbus_config **out)
{
	struct pbus__cfgx x = {.d = d};
	struct pbus__ynode *root = NULL;
	unsigned start = d ? d->n : 0;
	int ret;

	if (!out || (!buf && len))
		return -EINVAL;
	if (!name)
		name = "<input>";
	if (d)
		snprintf(d->file, sizeof(d->file), "%s", name);
	x.c = calloc(1, sizeof(*x.c));
	if (!x.c)
		return -ENOMEM;
	set_defaults(x.c);
	x.c->path = strdup(name);
	if (!x.c->path) {
		ret = -ENOMEM;
		goto out_destroy;
	}
	ret = pbus__yaml_load(&x, buf ? buf : "", len, &root);
	if (!ret)
		parse_root(&x, root);
	pbus__ynode_free(root);
	sort_diag(d, start);
	if (x.nomem)
		ret = -ENOMEM;
	else if (!ret && x.nerrors)
		ret = -EINVAL;
	if (ret)
		goto out_destroy;
	*out = x.c;
	return 0;
out_destroy:
	pbus_config_destroy(x.c);
	return ret;
}

/* Read a whole file, at most MAX_FILE bytes. */
static int read_file(const char *path, char **buf, size_t *len)
{
	size_t cap = 4096, n = 0;
	struct stat st;
	char *p = NULL, *q;
	int fd, ret;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st)) {
		ret = -errno;
		goto out_close;
	}
	if (S_ISDIR(st.st_mode)) {
		ret = -EISDIR;
		goto out_close;
	}
	if (S_ISREG(st.st_mode) && st.st_size > (off_t)MAX_FILE) {
		ret = -EFBIG;
		goto out_close;
	}
	if (S_ISREG(st.st_mode))
		cap = (size_t)st.st_size + 1;
	for (;;) {
		ssize_t r;

		if (n == cap || !p) {
			if (n == cap)
				cap *= 2;
			q = realloc(p, cap);
			if (!q) {
				ret = -ENOMEM;
				goto out_free;
			}
			p = q;
		}
		r = read(fd, p + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			ret = -errno;
			goto out_free;
		}
		if (!r)
			break;
		n += (size_t)r;
		if (n > MAX_FILE) {
			ret = -EFBIG;
			goto out_free;
		}
	}
	close(fd);
	*buf = p;
	*len = n;
	return 0;
out_free:
	free(p);
out_close:
	close(fd);
	return ret;
}

int pbus_config_load(const char *path, struct pbus_diag *d,
		     struct pbus_config **out)
{
	size_t len = 0;
	char *buf = NULL;
	int ret;

	if (!path || !out)
		return -EINVAL;
	if (d)
		snprintf(d->file, sizeof(d->file), "%s", path);
	ret = read_file(path, &buf, &len);
	if (ret)
		return ret;
	ret = pbus_config_parse(buf, len, path, d, out);
	free(buf);
	return ret;
}

void pbus_config_destroy(struct pbus_config *c)
{
	if (!c)
		return;
	for (unsigned i = 0; i < c->n_plugins; i++)
		pbus__cfg_plugin_free(&c->plugins[i]);
	free(c->plugins);
	free(c->bus.socket_path);
	free(c->bus.allowed_uids);
	pbus__cfg_strv_free(&c->plugin_dirs);
	free(c->path);
	free(c);
}
