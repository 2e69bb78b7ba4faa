// SPDX-License-Identifier: MIT
/*
 * pbus-collector: the always-on observer of a pbus gateway.
 *
 *   top      load pbus.bpf.c, pin its maps, attach to a gateway, print a
 *            live per-(plugin, hook) table and write RRD history
 *   show     print the table from pinned maps (no program needed)
 *   graph    render PNGs from the RRD files
 *   cleanup  remove an instance's pinned maps
 *
 * One thread. `top` sleeps until the next display tick or RRD step,
 * whichever is first; SIGINT/SIGTERM end the sleep and the run, and every
 * link is destroyed on the way out (the kernel would drop them at exit
 * anyway, semaphores included). The maps stay pinned unless --unpin.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <bpf/libbpf.h>

#include "collector.h"
#include "pbus/hooks.h"

static volatile sig_atomic_t stop;
static int verbose;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static int libbpf_print(enum libbpf_print_level lvl, const char *fmt,
			va_list ap)
{
	if (!verbose || (lvl == LIBBPF_DEBUG && verbose < 2))
		return 0;
	return vfprintf(stderr, fmt, ap);
}

static void die(const char *fmt, ...)
	__attribute__((noreturn, format(printf, 1, 2)));

static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "pbus-collector: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double parse_secs(const char *s, const char *what)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v > 0) || v > 86400 * 365)
		die("bad %s '%s' (seconds > 0)", what, s);
	return v;
}

static const char usage_main[] =
	"usage: pbus-collector COMMAND [OPTIONS]\n"
	"\n"
	"Observe a pbus gateway through its USDT probes and eBPF.\n"
	"\n"
	"commands:\n"
	"  top      attach to a gateway: live table per plugin x hook,\n"
	"           RRD history\n"
	"  show     print the table from an instance's pinned maps\n"
	"  graph    render PNG graphs from RRD files\n"
	"  cleanup  remove an instance's pinned maps\n"
	"\n"
	"'pbus-collector COMMAND --help' describes each command.\n";

static const char usage_top[] =
	"usage: pbus-collector top (--pid PID | --binary PATH) [OPTIONS]\n"
	"\n"
	"Load the BPF program, pin its maps under\n"
	"/sys/fs/bpf/pbus/INSTANCE/, attach to the gateway's pbus:batch\n"
	"probe and print a table per plugin and hook every interval; with\n"
	"--rrd-dir, write one RRD file per active (plugin, hook) every\n"
	"step. SIGINT/SIGTERM detach and exit; the maps stay pinned (see\n"
	"cleanup) unless --unpin.\n"
	"\n"
	"  -p, --pid PID        gateway process (probes in /proc/PID/exe\n"
	"                       or in the libpbus.so it maps)\n"
	"  -b, --binary PATH    attach to every process running PATH\n"
	"  -i, --instance NAME  pin directory name (default: default)\n"
	"  -I, --interval S     table refresh, seconds (default 1)\n"
	"  -s, --step S         RRD step, whole seconds (default 10)\n"
	"  -r, --rrd-dir DIR    write DIR/<plugin>.<hook>.rrd every step\n"
	"  -n, --names LIST     plugin names: 0=deny_filter,1=pii,...\n"
	"  -S, --socket PATH    ask the gateway's control socket for names\n"
	"  -m, --max-plugins N  plugin ids the maps hold (default 64)\n"
	"      --per-call       attach pbus:call (one trap per call)\n"
	"                       instead of the batched pbus:batch\n"
	"      --chains         also attach pbus:chain (a trap per chain)\n"
	"      --events         also attach pbus:ring_full and\n"
	"                       pbus:futex_sleep\n"
	"  -1, --once           print one table after one interval, exit\n"
	"  -d, --duration S     exit after S seconds\n"
	"  -u, --unpin          remove the pinned maps on exit\n"
	"  -v, --verbose        libbpf messages (twice: debug)\n"
	"  -h, --help\n";

static const char usage_show[] =
	"usage: pbus-collector show [--instance NAME]\n"
	"                           [--names LIST | --socket PATH]\n"
	"\n"
	"Print the cumulative table held in /sys/fs/bpf/pbus/NAME/\n"
	"(counts since the maps were created; quantiles over that time).\n"
	"\n"
	"  -i, --instance NAME  (default: default)\n"
	"  -n, --names LIST     0=name,1=name,...\n"
	"  -S, --socket PATH    gateway control socket, for names\n"
	"  -h, --help\n";

static const char usage_graph[] =
	"usage: pbus-collector graph --rrd-dir DIR --out DIR [OPTIONS]\n"
	"\n"
	"Render OUT/<plugin>.<hook>.png (p50, p99 and max latency on a\n"
	"log axis, calls/s on the right axis) for every RRD file in DIR,\n"
	"and OUT/hook-<hook>.png comparing every plugin of a hook.\n"
	"\n"
	"  -r, --rrd-dir DIR\n"
	"  -o, --out DIR\n"
	"      --start TIME       rrdtool time (default -1h)\n"
	"      --end TIME         (default now)\n"
	"  -W, --width PX         (default 800)\n"
	"  -H, --height PX        (default 300)\n"
	"  -h, --help\n";

static const char usage_cleanup[] =
	"usage: pbus-collector cleanup [--instance NAME]\n"
	"\n"
	"Remove the maps pinned in /sys/fs/bpf/pbus/NAME/\n"
	"(default: default).\n"
	"Running collectors keep their own maps until they exit.\n";

/* ------------------------------------------------------------ table */

struct names_src {
	struct pbus_obs_names nm;
	const char *socket;
	int sock_err; /* last -errno from the socket, 0 if it answered */
};

static void names_refresh(struct names_src *ns)
{
	struct pbus_obs_names got;

	if (!ns->socket)
		return;
	got = ns->nm; /* keep --names for ids the gateway does not know */
	ns->sock_err = pbus_obs_admin_list(ns->socket, 1000, &got);
	if (!ns->sock_err) {
		for (unsigned i = 0; i < PBUS_OBS_MAX_PLUGINS; i++)
			if (!got.name[i][0] && ns->nm.name[i][0])
				memcpy(got.name[i], ns->nm.name[i],
				       sizeof(got.name[i]));
		ns->nm = got;
	}
}

static void cell_ns(char *buf, size_t len, uint64_t ns, int have)
{
	if (!have)
		snprintf(buf, len, "-");
	else
		pbus_obs_fmt_ns(ns, buf, len);
}

/*
 * Print one table. With @prev, rates and quantiles cover now - prev over
 * @secs; without, the whole life of the maps.
 */
static void print_table(FILE *out, const char *title,
			const struct pbus_obs_snap *now,
			const struct pbus_obs_snap *prev, double secs,
			const struct names_src *ns)
{
	char name[PBUS_NAME_MAX], p50[16], p95[16], p99[16], mx[16];
	struct pbus_obs_slot d;
	unsigned rows = 0;

	fprintf(out, "%s\n", title);
	fprintf(out, "%-20s %-26s %10s %9s %9s %9s %9s %6s %6s %6s %6s %10s\n",
		"PLUGIN", "HOOK", prev ? "CALLS/s" : "CALLS", "P50", "P95",
		"P99", "MAX", "ERR", "TMO", "VIOL", "DOWN", "TOTAL");
	for (unsigned p = 0; p < now->nr_plugins; p++) {
		for (unsigned h = 0; h < PBUS_OBS_HOOKS; h++) {
			const struct pbus_obs_slot *c =
				pbus_obs_snap_slot(now, p, h);
			double rate;
			int have;

			if (!c->calls)
				continue;
			if (prev && prev->slots &&
			    prev->nr_plugins == now->nr_plugins)
				pbus_obs_slot_delta(
					c, pbus_obs_snap_slot(prev, p, h), &d);
			else
				d = *c;
			have = d.calls > 0;
			rate = prev ? (double)d.calls / secs : (double)d.calls;
			cell_ns(p50, sizeof(p50), pbus_obs_quantile(&d, 0.50),
				have);
			cell_ns(p95, sizeof(p95), pbus_obs_quantile(&d, 0.95),
				have);
			cell_ns(p99, sizeof(p99), pbus_obs_quantile(&d, 0.99),
				have);
			cell_ns(mx, sizeof(mx),
				prev ? pbus_obs_hist_max(&d)
				     : c->latency_max_ns,
				have);
			fprintf(out,
				"%-20s %-26s %10.*f %9s %9s %9s %9s "
				"%6llu %6llu %6llu %6llu %10llu\n",
				pbus_obs_name(&ns->nm, p, name, sizeof(name)),
				pbus_hook_name((int)h), prev ? 1 : 0, rate, p50,
				p95, p99, mx, (unsigned long long)d.errors,
				(unsigned long long)d.timeouts,
				(unsigned long long)d.violations,
				(unsigned long long)d.agent_down,
				(unsigned long long)c->calls);
			rows++;
		}
	}
	if (!rows)
		fprintf(out, "(no plugin calls recorded yet)\n");
	for (unsigned h = 0; h < PBUS_OBS_HOOKS; h++) {
		const struct pbus_obs_slot *c = &now->chains[h];

		if (!c->calls)
			continue;
		fprintf(out, "chain %-20s calls %llu p50 %s p99 %s max %s\n",
			pbus_hook_name((int)h), (unsigned long long)c->calls,
			pbus_obs_fmt_ns(pbus_obs_quantile(c, 0.5), p50,
					sizeof(p50)),
			pbus_obs_fmt_ns(pbus_obs_quantile(c, 0.99), p99,
					sizeof(p99)),
			pbus_obs_fmt_ns(c->latency_max_ns, mx, sizeof(mx)));
	}
	for (unsigned p = 0; p < now->nr_plugins; p++) {
		const struct pbus_obs_events *e = &now->events[p];

		if (!e->agent_up && !e->agent_down && !e->ring_full &&
		    !e->futex_sleeps)
			continue;
		fprintf(out,
			"agent %-20s up %llu down %llu (pid %lld epoch %llu)",
			pbus_obs_name(&ns->nm, p, name, sizeof(name)),
			(unsigned long long)e->agent_up,
			(unsigned long long)e->agent_down,
			(long long)e->last_pid,
			(unsigned long long)e->last_epoch);
		if (e->ring_full || e->futex_sleeps)
			fprintf(out, " ring_full %llu (%s) futex_sleeps %llu",
				(unsigned long long)e->ring_full,
				pbus_obs_fmt_ns(e->ring_full_ns, p50,
						sizeof(p50)),
				(unsigned long long)e->futex_sleeps);
		fputc('\n', out);
	}
	fprintf(out,
		"batches %llu records %llu per-call %llu dropped %llu "
		"(bad id %llu, bad outcome %llu, read errors %llu, "
		"truncated %llu)\n",
		(unsigned long long)now->totals.batches,
		(unsigned long long)now->totals.records,
		(unsigned long long)now->totals.calls,
		(unsigned long long)(now->totals.bad_id +
				     now->totals.read_errors),
		(unsigned long long)now->totals.bad_id,
		(unsigned long long)now->totals.bad_outcome,
		(unsigned long long)now->totals.read_errors,
		(unsigned long long)now->totals.truncated);
	if (ns->socket && ns->sock_err)
		fprintf(out, "names: %s: %s\n", ns->socket,
			strerror(-ns->sock_err));
	fflush(out);
}

static void snap_copy(struct pbus_obs_snap *dst,
		      const struct pbus_obs_snap *src)
{
	size_t ns = (size_t)src->nr_plugins * PBUS_OBS_HOOKS;

	if (dst->nr_plugins != src->nr_plugins || !dst->slots) {
		pbus_obs_snap_fini(dst);
		dst->slots = calloc(ns, sizeof(*dst->slots));
		dst->events = calloc(src->nr_plugins, sizeof(*dst->events));
		if (!dst->slots || !dst->events)
			die("out of memory");
	}
	dst->nr_plugins = src->nr_plugins;
	memcpy(dst->slots, src->slots, ns * sizeof(*dst->slots));
	memcpy(dst->events, src->events,
	       src->nr_plugins * sizeof(*dst->events));
	memcpy(dst->chains, src->chains, sizeof(dst->chains));
	dst->totals = src->totals;
	dst->taken_ns = src->taken_ns;
}

/* ------------------------------------------------------------ top */

struct top_opts {
	pid_t pid;
	const char *binary;
	const char *instance;
	double interval, step, duration;
	const char *rrd_dir;
	int once, unpin;
	struct pbus_obs_opts obs;
};

static void write_rrd(const struct top_opts *t, const struct names_src *ns,
		      const struct pbus_obs_snap *now,
		      const struct pbus_obs_snap *prev, unsigned char *active)
{
	char name[PBUS_NAME_MAX], err[PBUS_OBS_ERR_MAX];
	time_t wall = time(NULL);

	for (unsigned p = 0; p < now->nr_plugins; p++) {
		for (unsigned h = 0; h < PBUS_OBS_HOOKS; h++) {
			unsigned k = p * PBUS_OBS_HOOKS + h;
			struct pbus_obs_rrd_vals v;
			struct pbus_obs_slot d;
			int ret;

			pbus_obs_slot_delta(&now->slots[k], &prev->slots[k],
					    &d);
			if (!d.calls && !active[k])
				continue;
			active[k] = 1;
			pbus_obs_rrd_vals_from(&d, &v);
			ret = pbus_obs_rrd_update(
				t->rrd_dir,
				pbus_obs_name(&ns->nm, p, name, sizeof(name)),
				pbus_hook_name((int)h), (unsigned)t->step, wall,
				&v, err, sizeof(err));
			if (ret)
				fprintf(stderr, "pbus-collector: %s\n", err);
		}
	}
}

static void sleep_until(uint64_t t_ns)
{
	struct timespec ts = {
		.tv_sec = (time_t)(t_ns / 1000000000ull),
		.tv_nsec = (long)(t_ns % 1000000000ull),
	};

	/* EINTR (a signal) ends the sleep early; the caller checks stop. */
	clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
}

static int run_top(struct top_opts *t, struct names_src *ns)
{
	struct pbus_obs_snap now = {0}, disp = {0}, step = {0};
	char err[PBUS_OBS_ERR_MAX], target[PATH_MAX], attached[256];
	char title[PATH_MAX + 512], pin_dir[PATH_MAX];
	uint64_t t0, next_disp, next_step, end = UINT64_MAX;
	unsigned char active[PBUS_OBS_MAX_PLUGINS * PBUS_OBS_HOOKS] = {0};
	struct pbus_obs *obs = NULL;
	struct sigaction sa;
	int tty = isatty(STDOUT_FILENO);
	int gone = 0, had_pins, ret;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	if (t->binary) {
		snprintf(target, sizeof(target), "%s", t->binary);
	} else {
		ret = pbus_obs_target(t->pid, target, sizeof(target));
		if (ret)
			die("cannot find process %d: %s", (int)t->pid,
			    strerror(-ret));
	}
	names_refresh(ns);
	t->obs.instance = t->instance;
	pbus_obs_pin_dir(t->instance, pin_dir, sizeof(pin_dir));
	had_pins = access(pin_dir, F_OK) == 0;
	ret = pbus_obs_open(&t->obs, &obs, err, sizeof(err));
	if (ret)
		die("%s", err);
	ret = pbus_obs_attach(obs, t->binary ? (t->pid ? t->pid : -1) : t->pid,
			      target, err, sizeof(err));
	if (ret) {
		pbus_obs_close(obs);
		if (t->unpin || !had_pins) /* leave nothing we just made */
			pbus_obs_unpin(t->instance);
		die("%s", err);
	}
	ret = pbus_obs_read(obs, &now);
	if (ret)
		die("cannot read maps: %s", strerror(-ret));
	snap_copy(&disp, &now);
	snap_copy(&step, &now);
	fprintf(stderr,
		"pbus-collector: attached %s to %s%s (instance %s, maps in "
		"%s/%s)\n",
		pbus_obs_attached(obs, attached, sizeof(attached)), target,
		t->pid ? "" : " (all processes)", t->instance,
		PBUS_OBS_PIN_ROOT, t->instance);

	t0 = mono_ns();
	next_disp = t0 + (uint64_t)(t->interval * 1e9);
	next_step = t0 + (uint64_t)(t->step * 1e9);
	if (t->duration > 0)
		end = t0 + (uint64_t)(t->duration * 1e9);
	while (!stop) {
		uint64_t wake = next_disp;
		uint64_t tn;

		if (t->rrd_dir && next_step < wake)
			wake = next_step;
		if (end < wake)
			wake = end;
		sleep_until(wake);
		if (stop)
			break;
		tn = mono_ns();
		if (t->pid && kill(t->pid, 0) && errno == ESRCH) {
			fprintf(stderr, "pbus-collector: process %d exited\n",
				(int)t->pid);
			gone = 1;
			tn = end = next_disp; /* a last table, then out */
		}
		ret = pbus_obs_read(obs, &now);
		if (ret) {
			fprintf(stderr,
				"pbus-collector: cannot read maps: %s\n",
				strerror(-ret));
			break;
		}
		if (t->rrd_dir && tn >= next_step) {
			names_refresh(ns);
			write_rrd(t, ns, &now, &step, active);
			snap_copy(&step, &now);
			while (next_step <= tn)
				next_step += (uint64_t)(t->step * 1e9);
		}
		if (tn >= next_disp || tn >= end) {
			double secs =
				(double)(now.taken_ns - disp.taken_ns) / 1e9;
			char stamp[32];
			time_t wall = time(NULL);

			if (!t->rrd_dir && ns->socket && !ns->nm.n)
				names_refresh(ns);
			strftime(stamp, sizeof(stamp), "%F %T",
				 localtime(&wall));
			snprintf(title, sizeof(title),
				 "pbus %s  instance %s  %s  last %.1fs", target,
				 t->instance, stamp, secs);
			if (tty)
				fputs("\033[H\033[2J", stdout);
			else
				fputc('\n', stdout);
			print_table(stdout, title, &now, &disp,
				    secs > 0 ? secs : 1, ns);
			snap_copy(&disp, &now);
			while (next_disp <= tn)
				next_disp += (uint64_t)(t->interval * 1e9);
		}
		if (t->once || gone || tn >= end)
			break;
	}
	pbus_obs_close(obs);
	pbus_obs_snap_fini(&now);
	pbus_obs_snap_fini(&disp);
	pbus_obs_snap_fini(&step);
	if (t->unpin) {
		ret = pbus_obs_unpin(t->instance);
		if (ret && ret != -ENOENT)
			fprintf(stderr, "pbus-collector: unpin %s: %s\n",
				t->instance, strerror(-ret));
	}
	fprintf(stderr, "pbus-collector: detached%s\n",
		t->unpin ? ", maps unpinned" : "");
	return 0;
}

static int cmd_top(int argc, char **argv)
{
	enum { O_PER_CALL = 256, O_CHAINS, O_EVENTS };
	static const struct option lo[] = {
		{"pid", required_argument, NULL, 'p'},
		{"binary", required_argument, NULL, 'b'},
		{"instance", required_argument, NULL, 'i'},
		{"interval", required_argument, NULL, 'I'},
		{"step", required_argument, NULL, 's'},
		{"rrd-dir", required_argument, NULL, 'r'},
		{"names", required_argument, NULL, 'n'},
		{"socket", required_argument, NULL, 'S'},
		{"max-plugins", required_argument, NULL, 'm'},
		{"per-call", no_argument, NULL, O_PER_CALL},
		{"chains", no_argument, NULL, O_CHAINS},
		{"events", no_argument, NULL, O_EVENTS},
		{"once", no_argument, NULL, '1'},
		{"duration", required_argument, NULL, 'd'},
		{"unpin", no_argument, NULL, 'u'},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct top_opts t = {.instance = "default", .interval = 1, .step = 10};
	struct names_src ns = {0};
	char *end;
	long v;
	int c;

	while ((c = getopt_long(argc, argv, "p:b:i:I:s:r:n:S:m:1d:uvh", lo,
				NULL)) != -1) {
		switch (c) {
		case 'p':
			errno = 0;
			v = strtol(optarg, &end, 10);
			if (errno || *end || v <= 0 || v > INT_MAX)
				die("bad pid '%s'", optarg);
			t.pid = (pid_t)v;
			break;
		case 'b':
			t.binary = optarg;
			break;
		case 'i':
			t.instance = optarg;
			break;
		case 'I':
			t.interval = parse_secs(optarg, "interval");
			break;
		case 's':
			t.step = parse_secs(optarg, "step");
			if (t.step < 1 || t.step != floor(t.step))
				die("--step must be a whole number of seconds");
			break;
		case 'r':
			t.rrd_dir = optarg;
			break;
		case 'n':
			if (pbus_obs_names_parse(optarg, &ns.nm))
				die("bad --names '%s' (want id=name,...)",
				    optarg);
			break;
		case 'S':
			ns.socket = optarg;
			break;
		case 'm':
			errno = 0;
			v = strtol(optarg, &end, 10);
			if (errno || *end || v < 1 || v > PBUS_OBS_MAX_PLUGINS)
				die("--max-plugins must be 1..%d",
				    PBUS_OBS_MAX_PLUGINS);
			t.obs.max_plugins = (unsigned)v;
			break;
		case O_PER_CALL:
			t.obs.per_call = 1;
			break;
		case O_CHAINS:
			t.obs.chains = 1;
			break;
		case O_EVENTS:
			t.obs.events = 1;
			break;
		case '1':
			t.once = 1;
			break;
		case 'd':
			t.duration = parse_secs(optarg, "duration");
			break;
		case 'u':
			t.unpin = 1;
			break;
		case 'v':
			verbose++;
			break;
		case 'h':
			fputs(usage_top, stdout);
			return 0;
		default:
			fputs(usage_top, stderr);
			return 2;
		}
	}
	if (optind < argc || (!t.pid && !t.binary)) {
		fputs(usage_top, stderr);
		return 2;
	}
	if (pbus_obs_pin_dir(t.instance, (char[PATH_MAX]){0}, PATH_MAX))
		die("bad instance name '%s'", t.instance);
	return run_top(&t, &ns);
}

static int cmd_show(int argc, char **argv)
{
	static const struct option lo[] = {
		{"instance", required_argument, NULL, 'i'},
		{"names", required_argument, NULL, 'n'},
		{"socket", required_argument, NULL, 'S'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct pbus_obs_snap s = {0};
	const char *instance = "default";
	struct names_src ns = {0};
	char title[256];
	int c, ret;

	while ((c = getopt_long(argc, argv, "i:n:S:h", lo, NULL)) != -1) {
		switch (c) {
		case 'i':
			instance = optarg;
			break;
		case 'n':
			if (pbus_obs_names_parse(optarg, &ns.nm))
				die("bad --names '%s'", optarg);
			break;
		case 'S':
			ns.socket = optarg;
			break;
		case 'h':
			fputs(usage_show, stdout);
			return 0;
		default:
			fputs(usage_show, stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fputs(usage_show, stderr);
		return 2;
	}
	names_refresh(&ns);
	ret = pbus_obs_read_pinned(instance, &s);
	if (ret)
		die("cannot read %s/%s: %s", PBUS_OBS_PIN_ROOT, instance,
		    strerror(-ret));
	snprintf(title, sizeof(title), "pbus instance %s (cumulative)",
		 instance);
	print_table(stdout, title, &s, NULL, 0, &ns);
	pbus_obs_snap_fini(&s);
	return 0;
}

static int cmd_graph(int argc, char **argv)
{
	enum { O_START = 256, O_END };
	static const struct option lo[] = {
		{"rrd-dir", required_argument, NULL, 'r'},
		{"out", required_argument, NULL, 'o'},
		{"start", required_argument, NULL, O_START},
		{"end", required_argument, NULL, O_END},
		{"width", required_argument, NULL, 'W'},
		{"height", required_argument, NULL, 'H'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct pbus_obs_graph_opts o = {0};
	const char *rrd_dir = NULL, *out = NULL;
	char err[PBUS_OBS_ERR_MAX];
	int c, ret;

	while ((c = getopt_long(argc, argv, "r:o:W:H:h", lo, NULL)) != -1) {
		switch (c) {
		case 'r':
			rrd_dir = optarg;
			break;
		case 'o':
			out = optarg;
			break;
		case O_START:
			o.start = optarg;
			break;
		case O_END:
			o.end = optarg;
			break;
		case 'W':
			o.width = (unsigned)atoi(optarg);
			break;
		case 'H':
			o.height = (unsigned)atoi(optarg);
			break;
		case 'h':
			fputs(usage_graph, stdout);
			return 0;
		default:
			fputs(usage_graph, stderr);
			return 2;
		}
	}
	if (optind < argc || !rrd_dir || !out) {
		fputs(usage_graph, stderr);
		return 2;
	}
	ret = pbus_obs_graph_dir(rrd_dir, out, &o, err, sizeof(err));
	if (ret < 0)
		die("%s", err);
	printf("pbus-collector: wrote %d PNG files to %s\n", ret, out);
	return 0;
}

static int cmd_cleanup(int argc, char **argv)
{
	static const struct option lo[] = {
		{"instance", required_argument, NULL, 'i'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *instance = "default";
	int c, ret;

	while ((c = getopt_long(argc, argv, "i:h", lo, NULL)) != -1) {
		switch (c) {
		case 'i':
			instance = optarg;
			break;
		case 'h':
			fputs(usage_cleanup, stdout);
			return 0;
		default:
			fputs(usage_cleanup, stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fputs(usage_cleanup, stderr);
		return 2;
	}
	ret = pbus_obs_unpin(instance);
	if (ret == -ENOENT) {
		printf("pbus-collector: nothing pinned for instance %s\n",
		       instance);
		return 0;
	}
	if (ret)
		die("cleanup %s: %s", instance, strerror(-ret));
	printf("pbus-collector: removed %s/%s\n", PBUS_OBS_PIN_ROOT, instance);
	return 0;
}

int main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : NULL;

	libbpf_set_print(libbpf_print);
	if (!cmd) {
		fputs(usage_main, stderr);
		return 2;
	}
	if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") ||
	    !strcmp(cmd, "help")) {
		fputs(usage_main, stdout);
		return 0;
	}
	argc--;
	argv++;
	if (!strcmp(cmd, "top"))
		return cmd_top(argc, argv);
	if (!strcmp(cmd, "show"))
		return cmd_show(argc, argv);
	if (!strcmp(cmd, "graph"))
		return cmd_graph(argc, argv);
	if (!strcmp(cmd, "cleanup"))
		return cmd_cleanup(argc, argv);
	fprintf(stderr, "pbus-collector: unknown command '%s'\n\n", cmd);
	fputs(usage_main, stderr);
	return 2;
}
