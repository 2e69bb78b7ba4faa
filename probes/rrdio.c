// SPDX-License-Identifier: MIT
/*
 * RRD history and PNG graphs for the collector, with librrd.
 *
 * One file per (plugin, hook), DIR/<plugin>.<hook>.rrd, made on the first
 * step that saw a call. Data sources, one update per collector step:
 *
 *   calls errors timeouts violations agent_down   ABSOLUTE: the step's
 *                                                 count, stored as a rate/s
 *   p50 p95 p99 max                               GAUGE, seconds; unknown
 *                                                 for a step without calls
 *
 * Archives (AVERAGE and MAX each): every step for 6 hours, 1 minute for 2
 * days, 10 minutes for 30 days, 1 hour for 180 days; about 2 MB per file at
 * a 10 s step. The heartbeat is two steps: a collector that stops leaves a
 * gap, not a flat line.
 *
 * librrd keeps error text per thread; graphing is not thread-safe, so one
 * thread renders at a time.
 */
#include "collector.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <rrd.h>

#include "pbus/hooks.h"

static const char *const ds_names[] = {
	"calls", "errors", "timeouts", "violations", "agent_down",
	"p50",	 "p95",	   "p99",      "max",
};
#define N_DS (sizeof(ds_names) / sizeof(ds_names[0]))
#define N_COUNTERS 5

static void seterr(char *err, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void seterr(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (!err || !len)
		return;
	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
}

static int rrd_fail(char *err, size_t len, const char *what, const char *file)
{
	seterr(err, len, "%s %s: %s", what, file, rrd_get_error());
	rrd_clear_error();
	return -EIO;
}

void pbus_obs_rrd_vals_from(const struct pbus_obs_slot *d,
			    struct pbus_obs_rrd_vals *v)
{
	v->calls = (double)d->calls;
	v->errors = (double)d->errors;
	v->timeouts = (double)d->timeouts;
	v->violations = (double)d->violations;
	v->agent_down = (double)d->agent_down;
	if (!d->calls) {
		v->p50 = v->p95 = v->p99 = v->max = NAN;
		return;
	}
	v->p50 = (double)pbus_obs_quantile(d, 0.50) / 1e9;
	v->p95 = (double)pbus_obs_quantile(d, 0.95) / 1e9;
	v->p99 = (double)pbus_obs_quantile(d, 0.99) / 1e9;
	v->max = (double)pbus_obs_hist_max(d) / 1e9;
}

/* Keep [A-Za-z0-9_-]; anything else (':' and '.' included) becomes '_'. */
static void safe_name(const char *in, char *out, size_t len)
{
	size_t i;

	for (i = 0; in[i] && i + 1 < len; i++) {
		char c = in[i];
		int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			 (c >= '0' && c <= '9') || c == '_' || c == '-';

		out[i] = ok ? c : '_';
	}
	out[i] = '\0';
}

int pbus_obs_rrd_path(const char *dir, const char *plugin, const char *hook,
		      char *buf, size_t len)
{
	char p[PBUS_NAME_MAX];
	int n;

	safe_name(plugin, p, sizeof(p));
	n = snprintf(buf, len, "%s/%s.%s.rrd", dir, p, hook);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static int rrd_make(const char *path, unsigned step, time_t t, char *err,
		    size_t errlen)
{
	/* seconds per row, seconds kept */
	static const unsigned long rra[][2] = {
		{0, 6 * 3600},
		{60, 2 * 86400},
		{600, 30 * 86400},
		{3600, 180 * 86400},
	};
	char bufs[N_DS + 8][96];
	const char *argv[N_DS + 8];
	unsigned long prev = 0;
	int argc = 0;

	for (size_t i = 0; i < N_DS; i++) {
		snprintf(bufs[argc], sizeof(bufs[0]), "DS:%s:%s:%u:0:U",
			 ds_names[i], i < N_COUNTERS ? "ABSOLUTE" : "GAUGE",
			 2 * step);
		argv[argc] = bufs[argc];
		argc++;
	}
	for (size_t i = 0; i < sizeof(rra) / sizeof(rra[0]); i++) {
		unsigned long pdp = rra[i][0] / step;
		unsigned long rows;

		if (pdp < 1)
			pdp = 1;
		if (i && pdp <= prev)
			continue;
		prev = pdp;
		rows = rra[i][1] / (pdp * step);
		for (int cf = 0; cf < 2; cf++) {
			snprintf(bufs[argc], sizeof(bufs[0]),
				 "RRA:%s:0.5:%lu:%lu", cf ? "MAX" : "AVERAGE",
				 pdp, rows);
			argv[argc] = bufs[argc];
			argc++;
		}
	}
	rrd_clear_error();
	if (rrd_create_r(path, step, t - (time_t)step, argc, argv))
		return rrd_fail(err, errlen, "cannot create", path);
	return 0;
}

static void fmt_val(char *buf, size_t len, double v)
{
	if (isnan(v))
		snprintf(buf, len, ":U");
	else
		snprintf(buf, len, ":%.9g", v);
}

int pbus_obs_rrd_update(const char *dir, const char *plugin, const char *hook,
			unsigned step, time_t t,
			const struct pbus_obs_rrd_vals *v, char *err,
			size_t errlen)
{
	const double vals[N_DS] = {v->calls,	  v->errors,	 v->timeouts,
				   v->violations, v->agent_down, v->p50,
				   v->p95,	  v->p99,	 v->max};
	char path[PATH_MAX], line[64 + N_DS * 32];
	const char *argv[1] = {line};
	size_t off;
	int ret;

	if (!step)
		return -EINVAL;
	ret = pbus_obs_rrd_path(dir, plugin, hook, path, sizeof(path));
	if (ret)
		return ret;
	if (access(path, F_OK)) {
		if (mkdir(dir, 0755) && errno != EEXIST)
			return -errno;
		ret = rrd_make(path, step, t, err, errlen);
		if (ret)
			return ret;
	}
	off = (size_t)snprintf(line, sizeof(line), "%lld", (long long)t);
	for (size_t i = 0; i < N_DS; i++) {
		fmt_val(line + off, sizeof(line) - off, vals[i]);
		off += strlen(line + off);
	}
	rrd_clear_error();
	/* A restarted collector may step into a second already written. */
	if (rrd_updatex_r(path, NULL, RRD_SKIP_PAST_UPDATES, 1, argv))
		return rrd_fail(err, errlen, "cannot update", path);
	return 0;
}

/* ------------------------------------------------------------ graphs */

struct rrd_file {
	char plugin[PBUS_NAME_MAX];
	int hook;
	char path[PATH_MAX];
};

/* Paths inside DEF: escape ':' (the DEF separator). */
static void def_path(const char *in, char *out, size_t len)
{
	size_t o = 0;

	for (; *in && o + 2 < len; in++) {
		if (*in == ':')
			out[o++] = '\\';
		out[o++] = *in;
	}
	out[o] = '\0';
}

/* Split "plugin.hook.rrd"; 0 when @name is one of ours. */
static int parse_file_name(const char *name, struct rrd_file *f)
{
	char tmp[NAME_MAX + 1];
	size_t len = strlen(name);
	char *dot;

	if (len < 5 || len > NAME_MAX || strcmp(name + len - 4, ".rrd"))
		return -EINVAL;
	memcpy(tmp, name, len - 4);
	tmp[len - 4] = '\0';
	dot = strrchr(tmp, '.');
	if (!dot || dot == tmp || (size_t)(dot - tmp) >= PBUS_NAME_MAX)
		return -EINVAL;
	*dot = '\0';
	f->hook = pbus_hook_from_name(dot + 1);
	if (f->hook < 0)
		return -EINVAL;
	memcpy(f->plugin, tmp, (size_t)(dot - tmp) + 1);
	return 0;
}

static int cmp_files(const void *a, const void *b)
{
	const struct rrd_file *x = a, *y = b;

	if (x->hook != y->hook)
		return x->hook - y->hook;
	return strcmp(x->plugin, y->plugin);
}

static int list_files(const char *dir, struct rrd_file **out, size_t *n)
{
	struct rrd_file *v = NULL, *nv;
	size_t cap = 0, cnt = 0;
	struct dirent *de;
	DIR *d = opendir(dir);

	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		struct rrd_file f;

		if (parse_file_name(de->d_name, &f))
			continue;
		if ((size_t)snprintf(f.path, sizeof(f.path), "%s/%s", dir,
				     de->d_name) >= sizeof(f.path))
			continue;
		if (cnt == cap) {
			cap = cap ? 2 * cap : 16;
			nv = realloc(v, cap * sizeof(*v));
			if (!nv) {
				free(v);
				closedir(d);
				return -ENOMEM;
			}
			v = nv;
		}
		v[cnt++] = f;
	}
	closedir(d);
	if (cnt)
		qsort(v, cnt, sizeof(*v), cmp_files);
	*out = v;
	*n = cnt;
	return 0;
}

/* Largest finite value of data source @ds over [start, end]. */
static double fetch_max(const char *path, const char *cf, const char *ds,
			time_t start, time_t end)
{
	unsigned long step = 1, ds_cnt = 0;
	char **ds_namv = NULL;
	rrd_value_t *data = NULL;
	double best = 0;
	long col = -1;

	if (rrd_fetch_r(path, cf, &start, &end, &step, &ds_cnt, &ds_namv,
			&data)) {
		rrd_clear_error();
		return 0;
	}
	for (unsigned long i = 0; i < ds_cnt; i++) {
		if (!strcmp(ds_namv[i], ds))
			col = (long)i;
		free(ds_namv[i]);
	}
	free(ds_namv);
	if (col >= 0 && step) {
		unsigned long rows = (unsigned long)(end - start) / step;

		for (unsigned long r = 0; r < rows; r++) {
			double x = data[r * ds_cnt + (unsigned long)col];

			if (isfinite(x) && x > best)
				best = x;
		}
	}
	free(data);
	return best;
}

static int time_range(const struct pbus_obs_graph_opts *o, time_t *start,
		      time_t *end)
{
	rrd_time_value_t s, e;

	if (rrd_parsetime(o->start, &s) || rrd_parsetime(o->end, &e) ||
	    rrd_proc_start_end(&s, &e, start, end)) {
		rrd_clear_error();
		return -EINVAL;
	}
	return 0;
}

struct argv_buf {
	char **v; /* NULL-terminated */
	int n;
	int cap;
};

static int add(struct argv_buf *a, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int add(struct argv_buf *a, const char *fmt, ...)
{
	va_list ap;
	int ret;

	if (a->n + 2 > a->cap) {
		int cap = a->cap ? 2 * a->cap : 32;
		char **v = realloc(a->v, (size_t)cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		a->v = v;
		a->cap = cap;
	}
	va_start(ap, fmt);
	ret = vasprintf(&a->v[a->n], fmt, ap);
	va_end(ap);
	if (ret < 0)
		return -ENOMEM;
	a->v[++a->n] = NULL;
	return 0;
}

static void argv_free(struct argv_buf *a)
{
	for (int i = 0; i < a->n; i++)
		free(a->v[i]);
	free(a->v);
	a->v = NULL;
	a->n = a->cap = 0;
}

static int render(struct argv_buf *a, const char *png, char *err, size_t errlen)
{
	rrd_info_t *info;

	rrd_clear_error();
	info = rrd_graph_v(a->n, a->v);
	if (!info)
		return rrd_fail(err, errlen, "cannot render", png);
	rrd_info_free(info);
	return 0;
}

static int common_args(struct argv_buf *a, const char *png,
		       const struct pbus_obs_graph_opts *o, const char *title)
{
	int ret = 0;

	ret |= add(a, "graph");
	ret |= add(a, "%s", png);
	ret |= add(a, "--imgformat=PNG");
	ret |= add(a, "--start=%s", o->start);
	ret |= add(a, "--end=%s", o->end);
	ret |= add(a, "--width=%u", o->width);
	ret |= add(a, "--height=%u", o->height);
	ret |= add(a, "--logarithmic");
	ret |= add(a, "--units=si");
	ret |= add(a, "--vertical-label=latency (s)");
	ret |= add(a, "--title=%s", title);
	return ret ? -ENOMEM : 0;
}

static int graph_one(const struct rrd_file *f, const char *out_dir,
		     const struct pbus_obs_graph_opts *o, time_t start,
		     time_t end, char *err, size_t errlen)
{
	const char *hook = pbus_hook_name(f->hook);
	char png[PATH_MAX], title[256], dp[2 * PATH_MAX];
	struct argv_buf a = {0};
	double max_calls, max_lat, scale;
	int ret;

	snprintf(png, sizeof(png), "%s/%s.%s.png", out_dir, f->plugin, hook);
	snprintf(title, sizeof(title), "%s / %s", f->plugin, hook);
	def_path(f->path, dp, sizeof(dp));
	/*
	 * calls/s goes on the right axis: plot calls / scale, with scale a
	 * power of ten that brings the busiest step just under the slowest
	 * latency, and label the right axis right = left * scale.
	 */
	max_calls = fetch_max(f->path, "AVERAGE", "calls", start, end);
	max_lat = fetch_max(f->path, "MAX", "max", start, end);
	if (max_lat <= 0)
		max_lat = 1e-3;
	scale = max_calls > 0 ? pow(10, ceil(log10(max_calls / max_lat))) : 1e6;

	ret = common_args(&a, png, o, title);
	ret = ret ? ret : add(&a, "--right-axis=%g:0", scale);
	ret = ret ? ret : add(&a, "--right-axis-label=calls/s");
	ret = ret ? ret : add(&a, "DEF:calls=%s:calls:AVERAGE", dp);
	ret = ret ? ret : add(&a, "DEF:p50=%s:p50:AVERAGE", dp);
	ret = ret ? ret : add(&a, "DEF:p99=%s:p99:AVERAGE", dp);
	ret = ret ? ret : add(&a, "DEF:mx=%s:max:MAX", dp);
	ret = ret ? ret : add(&a, "CDEF:cs=calls,%g,/", scale);
	ret = ret ? ret : add(&a, "AREA:cs#c8d8f0:calls/s (right axis)\\n");
	ret = ret ? ret : add(&a, "LINE1:p50#1a9641:p50");
	ret = ret ? ret : add(&a, "GPRINT:p50:LAST:last %%6.2lf%%ss\\n");
	ret = ret ? ret : add(&a, "LINE1:p99#fdae61:p99");
	ret = ret ? ret : add(&a, "GPRINT:p99:LAST:last %%6.2lf%%ss\\n");
	ret = ret ? ret : add(&a, "LINE1:mx#d7191c:max");
	ret = ret ? ret : add(&a, "GPRINT:mx:MAX:peak %%6.2lf%%ss\\n");
	if (!ret)
		ret = render(&a, png, err, errlen);
	argv_free(&a);
	return ret;
}

static const char *const palette[] = {
	"1f77b4", "ff7f0e", "2ca02c", "d62728", "9467bd",
	"8c564b", "e377c2", "7f7f7f", "bcbd22", "17becf",
};
#define N_COLORS (sizeof(palette) / sizeof(palette[0]))

/* The overview of hook @h: files [first, first + n) all have hook @h. */
static int graph_hook(const struct rrd_file *files, size_t n,
		      const char *out_dir, const struct pbus_obs_graph_opts *o,
		      char *err, size_t errlen)
{
	const char *hook = pbus_hook_name(files[0].hook);
	char png[PATH_MAX], title[256], dp[2 * PATH_MAX];
	struct argv_buf a = {0};
	int ret;

	snprintf(png, sizeof(png), "%s/hook-%s.png", out_dir, hook);
	snprintf(title, sizeof(title),
		 "%s: p99 (solid) and p50 (dashed) by plugin", hook);
	ret = common_args(&a, png, o, title);
	for (size_t i = 0; !ret && i < n; i++) {
		const char *c = palette[i % N_COLORS];

		def_path(files[i].path, dp, sizeof(dp));
		ret = add(&a, "DEF:a%zu=%s:p99:AVERAGE", i, dp);
		ret = ret ? ret : add(&a, "DEF:b%zu=%s:p50:AVERAGE", i, dp);
		ret = ret ? ret
			  : add(&a, "LINE2:a%zu#%s:%s", i, c, files[i].plugin);
		ret = ret ? ret : add(&a, "LINE1:b%zu#%s::dashes", i, c);
		ret = ret ? ret
			  : add(&a, "GPRINT:a%zu:LAST:p99 %%6.2lf%%ss\\n", i);
	}
	if (!ret)
		ret = render(&a, png, err, errlen);
	argv_free(&a);
	return ret;
}

int pbus_obs_graph_dir(const char *rrd_dir, const char *out_dir,
		       const struct pbus_obs_graph_opts *opts, char *err,
		       size_t errlen)
{
	struct pbus_obs_graph_opts o = {0};
	struct rrd_file *files = NULL;
	time_t start, end;
	size_t n = 0, i, j;
	int ret, written = 0;

	if (opts)
		o = *opts;
	o.start = o.start ? o.start : "-1h";
	o.end = o.end ? o.end : "now";
	o.width = o.width ? o.width : 800;
	o.height = o.height ? o.height : 300;
	if (time_range(&o, &start, &end)) {
		seterr(err, errlen, "bad time range %s .. %s", o.start, o.end);
		return -EINVAL;
	}
	ret = list_files(rrd_dir, &files, &n);
	if (ret) {
		seterr(err, errlen, "cannot read %s: %s", rrd_dir,
		       strerror(-ret));
		return ret;
	}
	if (mkdir(out_dir, 0755) && errno != EEXIST) {
		ret = -errno;
		seterr(err, errlen, "cannot create %s: %s", out_dir,
		       strerror(-ret));
		goto out;
	}
	for (i = 0; i < n; i++) {
		ret = graph_one(&files[i], out_dir, &o, start, end, err,
				errlen);
		if (ret)
			goto out;
		written++;
	}
	for (i = 0; i < n; i = j) {
		for (j = i; j < n && files[j].hook == files[i].hook; j++)
			;
		ret = graph_hook(&files[i], j - i, out_dir, &o, err, errlen);
		if (ret)
			goto out;
		written++;
	}
	ret = written;
out:
	free(files);
	return ret;
}

/*
 * Sanitizer defaults for every program that links this file (the
 * collector, test_obs, pbus-bench). librrd's graphing (with pango, cairo
 * and fontconfig) keeps allocations it never frees and runs an
 * uninstrumented fontconfig thread; neither is ours to fix. Without a
 * sanitizer these functions are never called.
 */
const char *__asan_default_options(void);
__attribute__((visibility("default"))) const char *__asan_default_options(void)
{
	/* Full stacks through libc, so that the suppressions below match. */
	return "fast_unwind_on_malloc=0";
}

const char *__tsan_default_suppressions(void);
__attribute__((visibility("default"))) const char *
__tsan_default_suppressions(void)
{
	/* fontconfig's loader thread (via pango) is not instrumented. */
	return "called_from_lib:libfontconfig.so.1\nrace:libfontconfig.so\n"
	       "race:libglib-2.0.so\nrace:libpango\n";
}

const char *__lsan_default_options(void);
__attribute__((visibility("default"))) const char *__lsan_default_options(void)
{
	return "print_suppressions=0";
}

const char *__lsan_default_suppressions(void);
__attribute__((visibility("default"))) const char *
__lsan_default_suppressions(void)
{
	return "leak:librrd.so\nleak:libfontconfig.so\nleak:libpango\n"
	       "leak:libcairo.so\nleak:libglib-2.0.so\n";
}
