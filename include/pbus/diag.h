/* SPDX-License-Identifier: MIT */
/*
 * Diagnostics and logging. The library never prints: it reports through the
 * log callback set here (default: none) and, where errno cannot carry the
 * detail (a config file's line and column), through a caller-provided
 * struct pbus_diag.
 */
#ifndef PBUS_DIAG_H
#define PBUS_DIAG_H

#include <stdarg.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

enum pbus_log_level {
	PBUS_LOG_ERROR = 0,
	PBUS_LOG_WARN = 1,
	PBUS_LOG_INFO = 2,
	PBUS_LOG_DEBUG = 3,
};

typedef void pbus_log_fn(enum pbus_log_level lvl, const char *msg, void *arg);

/* Set the process-wide log callback (NULL: discard). Thread-safe. */
void pbus_set_log_fn(pbus_log_fn *fn, void *arg);

/* A ready-made callback printing "pbus: LEVEL: msg" to stderr. */
void pbus_log_stderr(enum pbus_log_level lvl, const char *msg, void *arg);

#define PBUS_DIAG_MAX 64

/* One located message: file:line:column: text. line/col are 1-based; 0 = unknown. */
struct pbus_diag_item {
	int is_error;        /* 1 error, 0 warning */
	unsigned line;
	unsigned col;
	char msg[256];
};

/*
 * A list of diagnostics for one operation (e.g. loading a config file).
 * Zero-initialise it; functions append. Holds at most PBUS_DIAG_MAX items
 * (nerrors/nwarnings still count past that).
 */
struct pbus_diag {
	char file[256];
	unsigned nerrors;
	unsigned nwarnings;
	unsigned n;                    /* items stored */
	struct pbus_diag_item items[PBUS_DIAG_MAX];
};

/* Append a located message. @d may be NULL (then it only counts nothing). */
__attribute__((format(printf, 5, 6))) void
pbus_diag_add(struct pbus_diag *d, int is_error, unsigned line, unsigned col,
	      const char *fmt, ...);

/* Format item @i as "file:line:col: error: msg" into @buf. Returns @buf. */
char *pbus_diag_format(const struct pbus_diag *d, unsigned i, char *buf,
		       size_t len);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif /* PBUS_DIAG_H */
