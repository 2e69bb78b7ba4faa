/* SPDX-License-Identifier: MIT */
/*
 * The plugin config file: ContextForge's YAML schema (plugins, plugin_settings,
 * plugin_dirs, server_settings; PARITY.md 2) plus two pbus sections, `bus:`
 * and `supervision:`. Loading is all-or-nothing: every problem found in one
 * pass goes into a struct pbus_diag as "file:line:col: error|warning: msg",
 * and a config is returned only when there was no error.
 *
 *	struct pbus_diag d = {0};
 *	struct pbus_config *c;
 *	int ret = pbus_config_load("plugins.yaml", &d, &c);
 *	for (unsigned i = 0; i < d.n; i++)
 *		puts(pbus_diag_format(&d, i, buf, sizeof(buf)));
 *	...
 *	pbus_config_destroy(c);
 *
 * Scalar values may use environment templates: ${VAR}, ${VAR:-default},
 * {{ env.VAR }} and $$ for a literal '$' (docs/config.md). A returned config
 * is plain memory owned by the caller; nothing in it points into the file.
 *
 * Errors (negative errno): -ENOENT no such file, -EINVAL the file has errors
 * (listed in the diag), -EFBIG file over 16 MiB, -ENOMEM, or another -errno
 * from open/read (-EACCES, -EISDIR, ...).
 */
#ifndef PBUS_CONFIG_H
#define PBUS_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include <pbus/diag.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

/*
 * Plugin modes: the framework's legacy four, then CPEX's five. The config
 * keeps the mode as written; the gateway decides what each one does.
 */
enum pbus_mode {
	PBUS_MODE_ENFORCE = 0, /* the default */
	PBUS_MODE_ENFORCE_IGNORE_ERROR,
	PBUS_MODE_PERMISSIVE,
	PBUS_MODE_DISABLED,
	PBUS_MODE_SEQUENTIAL,
	PBUS_MODE_TRANSFORM,
	PBUS_MODE_AUDIT,
	PBUS_MODE_CONCURRENT,
	PBUS_MODE_FIRE_AND_FORGET,
	PBUS_MODE_COUNT,
};

/* What a plugin error (crash, timeout, bad answer) does to the chain. */
enum pbus_on_error {
	PBUS_ON_ERROR_FAIL = 0, /* the default */
	PBUS_ON_ERROR_IGNORE,
	PBUS_ON_ERROR_DISABLE,
	PBUS_ON_ERROR_COUNT,
};

/* YAML spelling ("enforce", "fire_and_forget"), or NULL when out of range. */
const char *pbus_mode_name(int mode);
const char *pbus_on_error_name(int on_error);

/* Value for a YAML spelling, or -EINVAL when unknown. */
int pbus_mode_from_name(const char *name);
int pbus_on_error_from_name(const char *name);

/*
 * A list of NUL-terminated strings. When n > 0, v[n] is NULL, so
 * command.v can go to execv() as it is. When n == 0, v may be NULL.
 */
struct pbus_strv {
	char **v;
	unsigned n;
};

/*
 * One entry of `conditions:` (PARITY.md 2.3). Every list may be empty,
 * which means "match all". A plugin's conditions are OR'ed.
 */
struct pbus_condition {
	struct pbus_strv server_ids;
	struct pbus_strv tenant_ids;
	struct pbus_strv tools;
	struct pbus_strv prompts;
	struct pbus_strv resources;
	struct pbus_strv agents;
	struct pbus_strv user_patterns;
	struct pbus_strv content_types;
};

/* One entry of `plugins:`, in file order. */
struct pbus_plugin_cfg {
	char *name;	   /* unique, 1..PBUS_NAME_MAX-1 bytes */
	char *kind;	   /* always "agent" in a loaded config */
	char *description; /* the informational strings: NULL when absent */
	char *author;
	char *version;
	char *namespace_; /* YAML key `namespace` */
	uint32_t hooks;	  /* bit n set: enum pbus_hook n is listed */
	struct pbus_strv tags;
	int mode;	  /* enum pbus_mode */
	int on_error;	  /* enum pbus_on_error, implied defaults applied */
	int on_error_set; /* 1: `on_error` was written in the file */
	int priority; /* lower runs first; default 100; ties keep file order */
	struct pbus_condition *conds;
	unsigned n_conds;
	void *config; /* `config:` as a msgpack map, or NULL when absent */
	size_t config_len;
	void *applied_to; /* `applied_to:` as a msgpack map, or NULL */
	size_t applied_to_len;
	struct pbus_strv command; /* argv to spawn; n == 0: started elsewhere */
	struct pbus_strv env;	  /* "KEY=VALUE" for the spawned agent */
	uint64_t timeout_ms; /* per-plugin timeout; 0: use plugin_timeout */
	unsigned line, col;  /* where the entry starts, 1-based */
};

/* `plugin_settings:` (PARITY.md 2.5). */
struct pbus_settings {
	int parallel_within_band;   /* parallel_execution_within_band */
	uint64_t plugin_timeout_ms; /* plugin_timeout (seconds) in ms; 30000 */
	int fail_on_plugin_error;
	int enable_plugin_api;
	unsigned health_check_interval_s; /* plugin_health_check_interval; 60 */
	int include_user_info;
};

/*
 * `bus:`. Values are ready for struct pbus_bus_opts: the defaults are filled
 * in, and since 0 means "default" there, a YAML spin of 0 is stored as 1
 * (do not spin).
 */
struct pbus_bus_cfg {
	char *socket_path;	/* NULL: the bus default */
	unsigned socket_mode;	/* 0600 */
	unsigned *allowed_uids; /* uids allowed besides the gateway's own */
	unsigned n_allowed_uids;
	size_t max_payload;	     /* max_payload_size; 1000000 */
	unsigned ring_slots;	     /* power of two; 256 */
	unsigned lanes;		     /* 64 */
	unsigned max_spin_ns;	     /* 100000 */
	unsigned agent_idle_spin_ns; /* 50000 */
};

/* `supervision:`: agent restarts, circuit breaker, watchdog. */
struct pbus_supervision_cfg {
	unsigned backoff_initial_ms;   /* restart_backoff_initial_ms; 100 */
	unsigned backoff_max_ms;       /* restart_backoff_max_ms; 30000 */
	unsigned circuit_failures;     /* 5 */
	unsigned circuit_window_ms;    /* 60000 */
	unsigned circuit_open_ms;      /* 5000 */
	unsigned watchdog_timeouts;    /* 3 */
	unsigned heartbeat_timeout_ms; /* 5000 */
};

struct pbus_config {
	char *path; /* the name given to load/parse */
	struct pbus_settings settings;
	struct pbus_bus_cfg bus;
	struct pbus_supervision_cfg supervision;
	struct pbus_plugin_cfg *plugins; /* file order */
	unsigned n_plugins;
	struct pbus_strv plugin_dirs; /* accepted, unused by pbus */
};

/* ------------------------------------------------------------ lifecycle */

/*
 * Read and validate the config file at @path. @d (may be NULL) receives every
 * error and warning, located; d->file is set to @path. Returns 0 and *out, or
 * -errno with *out untouched: -ENOENT when the file does not exist, -EINVAL
 * when it has errors, -EFBIG, -ENOMEM, or another -errno from open/read.
 * Warnings alone do not fail the load. Reads the environment (templates).
 */
int pbus_config_load(const char *path, struct pbus_diag *d,
		     struct pbus_config **out);

/*
 * As pbus_config_load(), from the @len bytes at @buf (need not be
 * NUL-terminated). @name labels the diagnostics and becomes c->path (NULL:
 * "<input>"). Returns 0, -EINVAL or -ENOMEM.
 */
int pbus_config_parse(const char *buf, size_t len, const char *name,
		      struct pbus_diag *d, struct pbus_config **out);

/* Free a config and everything it owns. NULL is a no-op. */
void pbus_config_destroy(struct pbus_config *c);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif /* PBUS_CONFIG_H */
