// SPDX-License-Identifier: MIT
/*
 * Logging and diagnostics. The library reports through one process-wide
 * callback (none by default), never to a stream of its own.
 */
#include "pbus/diag.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

static pbus_log_fn *_Atomic log_fn;
static void *_Atomic log_arg;

void pbus_set_log_fn(pbus_log_fn *fn, void *arg)
{
	atomic_store(&log_arg, arg);
	atomic_store(&log_fn, fn);
}

void pbus_log_stderr(enum pbus_log_level lvl, const char *msg, void *arg)
{
	static const char *const names[] = {"error", "warning", "info", "debug"};
	(void)arg;
	fprintf(stderr, "pbus: %s: %s\n", names[lvl & 3], msg);
}

void pbus__log(enum pbus_log_level lvl, const char *fmt, ...)
{
	pbus_log_fn *fn = atomic_load(&log_fn);
	char buf[512];
	va_list ap;

	if (!fn)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fn(lvl, buf, atomic_load(&log_arg));
}

void pbus_diag_add(struct pbus_diag *d, int is_error, unsigned line,
		   unsigned col, const char *fmt, ...)
{
	struct pbus_diag_item *it;
	va_list ap;

	if (!d)
		return;
	if (is_error)
		d->nerrors++;
	else
		d->nwarnings++;
	if (d->n >= PBUS_DIAG_MAX)
		return;
	it = &d->items[d->n++];
	it->is_error = is_error;
	it->line = line;
	it->col = col;
	va_start(ap, fmt);
	vsnprintf(it->msg, sizeof(it->msg), fmt, ap);
	va_end(ap);
}

char *pbus_diag_format(const struct pbus_diag *d, unsigned i, char *buf,
		       size_t len)
{
	const struct pbus_diag_item *it = &d->items[i];
	const char *kind = it->is_error ? "error" : "warning";
	const char *file = d->file[0] ? d->file : "<input>";

	if (it->line)
		snprintf(buf, len, "%s:%u:%u: %s: %s", file, it->line, it->col,
			 kind, it->msg);
	else
		snprintf(buf, len, "%s: %s: %s", file, kind, it->msg);
	return buf;
}
