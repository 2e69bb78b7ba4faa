/* SPDX-License-Identifier: MIT */
/*
 * User-space side of pbus observability, shared by the collector
 * (probes/collector.c), the test_obs program and the probe benchmark:
 *
 *  loader.c  load the BPF skeleton, pin its maps under
 *            /sys/fs/bpf/pbus/<instance>/ (mounting bpffs if needed), attach
 *            the USDT programs to a gateway, read the maps (own or pinned)
 *  admin.c   plugin names: the gateway's admin LIST request on its control
 *            socket, or an "id=name,..." list
 *  rrdio.c   one RRD file per (plugin, hook) and the PNG graphs
 *
 * Functions return 0 (or a count) or -errno, like the library. They do not
 * print, except where a comment says so; a message for the user goes into
 * an optional caller buffer @err.
 */
#ifndef PBUS_PROBES_COLLECTOR_H
#define PBUS_PROBES_COLLECTOR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "pbus/abi.h"
#include "pbus_obs.h"

#define PBUS_OBS_PIN_ROOT "/sys/fs/bpf/pbus"
#define PBUS_OBS_ERR_MAX 256

/* ------------------------------------------------------------ loader */

struct pbus_obs;

struct pbus_obs_opts {
	const char *instance; /* pins in PIN_ROOT/<instance>; NULL: none */
	unsigned max_plugins; /* 0: size of existing pins, else 64 */
	int per_call;	      /* attach pbus:call instead of pbus:batch */
	int chains;	      /* also attach pbus:chain */
	int events;	      /* also pbus:ring_full and pbus:futex_sleep */
};

/*
 * Load the program and create (or, when pinned maps of the same layout
 * exist, reuse) its maps. Needs CAP_BPF/root. Returns 0 and *out, or -errno
 * with a reason in @err (may be NULL).
 */
int pbus_obs_open(const struct pbus_obs_opts *o, struct pbus_obs **out,
		  char *err, size_t errlen);

/*
 * Find the file that carries the probes of process @pid: a mapped libpbus
 * shared object if there is one, else /proc/<pid>/exe.
 */
int pbus_obs_target(pid_t pid, char *path, size_t len);

/*
 * Attach the programs chosen in the options to the probes in @binary, for
 * process @pid only (-1: every process running @binary). -ENOENT when
 * @binary has no pbus:batch (or pbus:call) probe. Optional probes that the
 * binary lacks are skipped. Attaching twice is -EALREADY.
 */
int pbus_obs_attach(struct pbus_obs *obs, pid_t pid, const char *binary,
		    char *err, size_t errlen);

/* Detach everything (semaphores drop back); the maps stay. */
void pbus_obs_detach(struct pbus_obs *obs);

/* Names of the probes attached now, space-separated, into @buf. */
const char *pbus_obs_attached(const struct pbus_obs *obs, char *buf,
			      size_t len);

/* Detach and unload. Pinned maps stay pinned. NULL is a no-op. */
void pbus_obs_close(struct pbus_obs *obs);

/* Plugin ids the maps hold. */
unsigned pbus_obs_nr_plugins(const struct pbus_obs *obs);

/* Mount bpffs on /sys/fs/bpf unless it is mounted. 1 if mounted now. */
int pbus_obs_mount_bpffs(void);

/* PIN_ROOT/<instance> into @buf; -EINVAL for a name with '/' or "..". */
int pbus_obs_pin_dir(const char *instance, char *buf, size_t len);

/* Remove the pins of @instance and its directory. -ENOENT if none. */
int pbus_obs_unpin(const char *instance);

/* ------------------------------------------------------------ snapshots */

/* Map contents summed over CPUs. */
struct pbus_obs_snap {
	unsigned nr_plugins;
	struct pbus_obs_slot *slots;	/* [nr_plugins * PBUS_OBS_HOOKS] */
	struct pbus_obs_events *events; /* [nr_plugins] */
	struct pbus_obs_slot chains[PBUS_OBS_HOOKS];
	struct pbus_obs_totals totals;
	uint64_t taken_ns; /* CLOCK_MONOTONIC */
};

/* Read the maps of a loaded program into @s (allocated on first use). */
int pbus_obs_read(struct pbus_obs *obs, struct pbus_obs_snap *s);

/* Read the maps pinned for @instance (no program needed). */
int pbus_obs_read_pinned(const char *instance, struct pbus_obs_snap *s);

void pbus_obs_snap_fini(struct pbus_obs_snap *s);

/* The slot of (@plugin, @hook) in @s. */
static inline struct pbus_obs_slot *
pbus_obs_snap_slot(const struct pbus_obs_snap *s, unsigned plugin,
		   unsigned hook)
{
	return &s->slots[plugin * PBUS_OBS_HOOKS + hook];
}

/* @out = @now - @prev (counters and histogram; max is @now's). */
void pbus_obs_slot_delta(const struct pbus_obs_slot *now,
			 const struct pbus_obs_slot *prev,
			 struct pbus_obs_slot *out);

/*
 * Latency at quantile @q (0..1] of @s's histogram: the middle of the bucket
 * holding it, capped by latency_max_ns when that is set. 0 when empty.
 */
uint64_t pbus_obs_quantile(const struct pbus_obs_slot *s, double q);

/* Upper end of the highest non-empty bucket, capped by latency_max_ns. */
uint64_t pbus_obs_hist_max(const struct pbus_obs_slot *s);

/* Bucket index of quantile @q of @s (-1 when empty). */
int pbus_obs_quantile_bucket(const struct pbus_obs_slot *s, double q);

/* "312ns", "1.25us", "3.40ms", "1.20s" */
char *pbus_obs_fmt_ns(uint64_t ns, char *buf, size_t len);

/* ------------------------------------------------------------ names */

struct pbus_obs_names {
	unsigned n; /* highest known id + 1 */
	char name[PBUS_OBS_MAX_PLUGINS][PBUS_NAME_MAX]; /* "" when unknown */
};

/* Parse "0=deny_filter,1=pii_filter" into @nm. -EINVAL on bad syntax. */
int pbus_obs_names_parse(const char *spec, struct pbus_obs_names *nm);

/*
 * Ask the gateway listening on @sock_path for its plugins (admin LIST) and
 * fill @nm. -ECONNREFUSED/-ENOENT no gateway, -ETIMEDOUT no answer within
 * @timeout_ms, -EPROTO bad reply, or the gateway's -errno.
 */
int pbus_obs_admin_list(const char *sock_path, int timeout_ms,
			struct pbus_obs_names *nm);

/* The name of @id, or "plugin<id>" when unknown. Returns @buf. */
const char *pbus_obs_name(const struct pbus_obs_names *nm, unsigned id,
			  char *buf, size_t len);

/* ------------------------------------------------------------ RRD */

/* One step's worth of values for a (plugin, hook) file. */
struct pbus_obs_rrd_vals {
	double calls, errors, timeouts, violations, agent_down; /* deltas */
	double p50, p95, p99, max; /* seconds, NAN when there were no calls */
};

/* Fill @v from a step's delta slot. */
void pbus_obs_rrd_vals_from(const struct pbus_obs_slot *delta,
			    struct pbus_obs_rrd_vals *v);

/* DIR/<plugin>.<hook>.rrd, with the plugin name made file-safe. */
int pbus_obs_rrd_path(const char *dir, const char *plugin, const char *hook,
		      char *buf, size_t len);

/*
 * Append one update at time @t to the file of (@plugin, @hook) in @dir,
 * creating it (step @step seconds) if it does not exist. -EIO with librrd's
 * message in @err on failure.
 */
int pbus_obs_rrd_update(const char *dir, const char *plugin, const char *hook,
			unsigned step, time_t t,
			const struct pbus_obs_rrd_vals *v, char *err,
			size_t errlen);

struct pbus_obs_graph_opts {
	const char *start; /* rrdtool time spec; NULL: "-1h" */
	const char *end;   /* NULL: "now" */
	unsigned width;	   /* 0: 800 */
	unsigned height;   /* 0: 300 */
};

/*
 * Render DIR's files: OUT/<plugin>.<hook>.png (p50/p99/max on a log axis,
 * calls/s on the right axis) and OUT/hook-<hook>.png (p50 and p99 of every
 * plugin). Returns the number of PNGs written, or -errno.
 */
int pbus_obs_graph_dir(const char *rrd_dir, const char *out_dir,
		       const struct pbus_obs_graph_opts *o, char *err,
		       size_t errlen);

#endif /* PBUS_PROBES_COLLECTOR_H */
