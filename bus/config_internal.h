/* SPDX-License-Identifier: MIT */
/*
 * Shared by the config loader's files: the YAML node tree (config_yaml.c),
 * environment templates (config_env.c) and the schema walk (config.c).
 *
 * The tree is built from libyaml events, not libyaml's document API, so that
 * aliases can be refused (no shared nodes, no exponential expansion), depth is
 * bounded (every walk over the tree may recurse) and duplicate keys are caught
 * while their locations are at hand. Templates are expanded in value scalars
 * as they are read, so every node keeps the line and column of its source.
 */
#ifndef PBUS_CONFIG_INTERNAL_H
#define PBUS_CONFIG_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "pbus/diag.h"

#define PBUS__Y_MAX_DEPTH 64 /* nesting of sequences and maps */

enum pbus__ytype {
	PBUS__Y_SCALAR,
	PBUS__Y_SEQ,
	PBUS__Y_MAP,
};

struct pbus__ynode {
	int type;	    /* enum pbus__ytype */
	unsigned line, col; /* start of the node, 1-based */
	unsigned plain : 1; /* plain scalar: typed (null, bool, int, float) */
	unsigned bad : 1;   /* an error was reported here; stay quiet */
	char *s;	    /* scalar: bytes, NUL-terminated (may hold NULs) */
	size_t len;
	struct pbus__ynode **kid; /* seq: items; map: key0, val0, key1, ... */
	unsigned n; /* number of kids (twice the pairs for a map) */
	unsigned cap;
};

/* What a scalar means once typed (YAML 1.2 core schema, pbus flavour). */
enum pbus__yv {
	PBUS__YV_NULL,
	PBUS__YV_BOOL,
	PBUS__YV_INT,	 /* fits int64_t: .i */
	PBUS__YV_UINT,	 /* above INT64_MAX, fits uint64_t: .u */
	PBUS__YV_BIGINT, /* an integer beyond 64 bits */
	PBUS__YV_FLOAT,
	PBUS__YV_STR,
};

struct pbus__yval {
	int kind; /* enum pbus__yv */
	int b;
	int64_t i;
	uint64_t u;
	double f;
};

struct pbus_config;
struct pbus_plugin_cfg;
struct pbus_strv;

/* One load: the config being built, where diagnostics go, how it is going. */
struct pbus__cfgx {
	struct pbus_config *c;
	struct pbus_diag *d; /* may be NULL */
	unsigned nerrors;
	int nomem; /* an allocation failed: the load returns -ENOMEM */
};

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Report at node @n (config files only). */
#define ERR(x, n, ...) pbus__cfg_error((x), (n)->line, (n)->col, __VA_ARGS__)
#define WARN(x, n, ...) pbus__cfg_warn((x), (n)->line, (n)->col, __VA_ARGS__)

__attribute__((format(printf, 4, 5))) void
pbus__cfg_error(struct pbus__cfgx *x, unsigned line, unsigned col,
		const char *fmt, ...);
__attribute__((format(printf, 4, 5))) void pbus__cfg_warn(struct pbus__cfgx *x,
							  unsigned line,
							  unsigned col,
							  const char *fmt, ...);

/*
 * Parse one YAML document from @buf into a tree. Returns 0 with *root (NULL
 * for an empty stream), -EINVAL after reporting a syntax error or a refused
 * construct, -ENOMEM. Errors that leave the tree usable (duplicate keys,
 * template failures) are reported, counted in x->nerrors, and return 0.
 */
int pbus__yaml_load(struct pbus__cfgx *x, const char *buf, size_t len,
		    struct pbus__ynode **root);
void pbus__ynode_free(struct pbus__ynode *n);

/* Type a scalar: plain scalars by the core schema, others are strings. */
void pbus__yaml_resolve(const struct pbus__ynode *n, struct pbus__yval *v);

/* Parse an integer the way a plain scalar is typed: 0 and *v, or -EINVAL. */
int pbus__yaml_parse_int(const char *s, size_t len, struct pbus__yval *v);

/*
 * Encode @n (any node) as msgpack with @pk. Returns 0, -EINVAL after reporting
 * a value msgpack cannot hold, -ENOMEM when the packer's writer failed.
 */
int pbus__yaml_pack(struct pbus__cfgx *x, const struct pbus__ynode *n,
		    msgpack_packer *pk);

/*
 * Expand environment templates in @in (@len bytes). Returns 0 with *out NULL
 * when there is nothing to expand, 0 with a malloc'd NUL-terminated *out and
 * *out_len, -EINVAL with a reason in @err, or -ENOMEM.
 */
int pbus__cfg_expand(const char *in, size_t len, char **out, size_t *out_len,
		     char *err, size_t errlen);

/* ------------------------------------------------ config_field.c */

/* Index of @s in @names, or -EINVAL. */
int pbus__cfg_index(const char *const *names, unsigned n, const char *s);
/* The closest of @names to @s if it looks like a typo of it, else NULL. */
const char *pbus__cfg_suggest(const char *s, const char *const *names,
			      unsigned n);
/* @n for a message: 'text' (cut at 40 bytes), "a list" or "a map". */
const char *pbus__cfg_shown(const struct pbus__ynode *n, char *buf, size_t len);
/* A plain scalar that types as null ("", ~, null). */
int pbus__cfg_null(const struct pbus__ynode *n);
char *pbus__cfg_dup(struct pbus__cfgx *x, const char *s, size_t len);
int pbus__cfg_strv_push(struct pbus__cfgx *x, struct pbus_strv *sv,
			const char *s, size_t len);
void pbus__cfg_strv_free(struct pbus_strv *sv);

/*
 * Field readers: 0 with the value stored, or -1 after reporting (or quietly
 * for a node already marked bad). @key names the field in messages.
 */
/* A non-null scalar without NUL bytes; @what says what was expected. */
int pbus__cfg_text(struct pbus__cfgx *x, const char *key,
		   const struct pbus__ynode *v, const char *what);
/* An optional string: null leaves *out as it was (NULL). */
int pbus__cfg_str(struct pbus__cfgx *x, const char *key,
		  const struct pbus__ynode *v, char **out);
int pbus__cfg_int(struct pbus__cfgx *x, const char *key,
		  const struct pbus__ynode *v, long long min, long long max,
		  long long *out);
int pbus__cfg_uint(struct pbus__cfgx *x, const char *key,
		   const struct pbus__ynode *v, unsigned min, unsigned max,
		   unsigned *out);
int pbus__cfg_bool(struct pbus__cfgx *x, const char *key,
		   const struct pbus__ynode *v, int *out);
/* A number of seconds in (0, 86400], stored in ms, at least 1. */
int pbus__cfg_secs(struct pbus__cfgx *x, const char *key,
		   const struct pbus__ynode *v, uint64_t *ms);
/* A list of strings; null is the empty list. */
int pbus__cfg_strv(struct pbus__cfgx *x, const char *key,
		   const struct pbus__ynode *v, struct pbus_strv *out);
/* A map key's index in @keys; -1 for an unknown key (warned) or a bad one. */
int pbus__cfg_key(struct pbus__cfgx *x, const struct pbus__ynode *k,
		  const char *const *keys, unsigned n, const char *where);
/* 1 when @v is a map to walk; 0 to skip it (null when @null_ok, or reported).
 */
int pbus__cfg_map(struct pbus__cfgx *x, const char *key,
		  const struct pbus__ynode *v, int null_ok);
/* A map of anything as msgpack bytes; null leaves *out alone. */
void pbus__cfg_pack(struct pbus__cfgx *x, const char *key,
		    const struct pbus__ynode *v, void **out, size_t *out_len);

/* ------------------------------------------------ config_plugin.c */

/* Fill x->c->plugins from the `plugins:` value @v. */
void pbus__cfg_plugins(struct pbus__cfgx *x, const struct pbus__ynode *v);
void pbus__cfg_plugin_free(struct pbus_plugin_cfg *p);

#endif /* PBUS_CONFIG_INTERNAL_H */
