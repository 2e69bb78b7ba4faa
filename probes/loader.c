// SPDX-License-Identifier: MIT
/*
 * Load pbus.bpf.c through its skeleton, pin its maps, attach its USDT
 * programs to a gateway, and read the maps back (see collector.h).
 *
 * Pinning: the four result maps (stats, events, chains, totals) get a pin
 * path before load, so libbpf either reuses maps pinned by an earlier
 * collector of the same instance (counts continue) or creates and pins new
 * ones. The size of existing pins wins over the requested plugin count, so
 * a restarted collector never fails on a layout it made itself. USDT links
 * cannot be pinned: the links live as long as this process.
 *
 * Not thread-safe: one thread owns a struct pbus_obs.
 */
#include "collector.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "pbus.skel.h"

#define BPFFS "/sys/fs/bpf"

/* Maps that are pinned, in pin-name order. */
static const char *const pinned_maps[] = {"stats", "events", "chains",
					  "totals"};
#define N_PINNED (sizeof(pinned_maps) / sizeof(pinned_maps[0]))

enum {
	L_MAIN,
	L_AGENT_UP,
	L_AGENT_DOWN,
	L_CHAIN,
	L_RING_FULL,
	L_FUTEX_SLEEP,
	L_COUNT
};

static const char *const link_probe[L_COUNT] = {
	[L_MAIN] = NULL, /* batch or call */
	[L_AGENT_UP] = "agent_up",
	[L_AGENT_DOWN] = "agent_down",
	[L_CHAIN] = "chain",
	[L_RING_FULL] = "ring_full",
	[L_FUTEX_SLEEP] = "futex_sleep",
};

struct pbus_obs {
	struct pbus_bpf *skel;
	struct pbus_obs_opts o;
	unsigned nr_plugins;
	struct bpf_link *links[L_COUNT];
	char instance[NAME_MAX + 1];
};

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

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int pbus_obs_mount_bpffs(void)
{
	struct statfs st;

	if (statfs(BPFFS, &st) == 0 && st.f_type == BPF_FS_MAGIC)
		return 0;
	if (mkdir(BPFFS, 0700) && errno != EEXIST)
		return -errno;
	if (mount("bpf", BPFFS, "bpf", 0, "mode=0700"))
		return -errno;
	return 1;
}

int pbus_obs_pin_dir(const char *instance, char *buf, size_t len)
{
	int n;

	if (!instance || !*instance || strchr(instance, '/') ||
	    !strcmp(instance, ".") || !strcmp(instance, ".."))
		return -EINVAL;
	n = snprintf(buf, len, "%s/%s", PBUS_OBS_PIN_ROOT, instance);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static int mkdir_p(const char *dir)
{
	if (mkdir(PBUS_OBS_PIN_ROOT, 0700) && errno != EEXIST)
		return -errno;
	if (mkdir(dir, 0700) && errno != EEXIST)
		return -errno;
	return 0;
}

/* max_entries of an existing pinned map, 0 if there is none. */
static unsigned pinned_entries(const char *path)
{
	struct bpf_map_info info;
	__u32 len = sizeof(info);
	unsigned n = 0;
	int fd;

	fd = bpf_obj_get(path);
	if (fd < 0)
		return 0;
	memset(&info, 0, sizeof(info));
	if (!bpf_obj_get_info_by_fd(fd, &info, &len))
		n = info.max_entries;
	close(fd);
	return n;
}

static const char *load_hint(int ret)
{
	switch (ret) {
	case -EPERM:
		return " (needs root, or CAP_BPF and CAP_PERFMON)";
	case -EACCES:
		return " (the verifier said no; -v shows its log)";
	case -EINVAL:
		return " (pinned maps of another layout? try cleanup)";
	}
	return "";
}

int pbus_obs_open(const struct pbus_obs_opts *o, struct pbus_obs **out,
		  char *err, size_t errlen)
{
	static const struct pbus_obs_opts defaults;
	struct bpf_map *maps[N_PINNED];
	char dir[PATH_MAX], path[PATH_MAX + 16];
	struct pbus_obs *obs;
	unsigned nr, have;
	int ret;

	if (!o)
		o = &defaults;
	obs = calloc(1, sizeof(*obs));
	if (!obs)
		return -ENOMEM;
	obs->o = *o;
	nr = o->max_plugins ? o->max_plugins : PBUS_OBS_MAX_PLUGINS;

	if (o->instance) {
		ret = pbus_obs_pin_dir(o->instance, dir, sizeof(dir));
		if (ret) {
			seterr(err, errlen, "bad instance name '%s'",
			       o->instance);
			goto out_free;
		}
		snprintf(obs->instance, sizeof(obs->instance), "%s",
			 o->instance);
		ret = pbus_obs_mount_bpffs();
		if (ret < 0) {
			seterr(err, errlen, "cannot mount bpffs on %s: %s",
			       BPFFS, strerror(-ret));
			goto out_free;
		}
		ret = mkdir_p(dir);
		if (ret) {
			seterr(err, errlen, "cannot create %s: %s", dir,
			       strerror(-ret));
			goto out_free;
		}
		snprintf(path, sizeof(path), "%s/stats", dir);
		have = pinned_entries(path) / PBUS_OBS_HOOKS;
		if (have && o->max_plugins && have != o->max_plugins) {
			seterr(err, errlen,
			       "maps pinned in %s hold %u plugins, not %u: "
			       "run cleanup --instance %s first",
			       dir, have, o->max_plugins, o->instance);
			ret = -EEXIST;
			goto out_free;
		}
		if (have)
			nr = have;
	}
	if (nr == 0 || nr > PBUS_OBS_MAX_PLUGINS) {
		seterr(err, errlen, "plugin count %u not in 1..%u", nr,
		       PBUS_OBS_MAX_PLUGINS);
		ret = -EINVAL;
		goto out_free;
	}
	obs->nr_plugins = nr;

	obs->skel = pbus_bpf__open();
	if (!obs->skel) {
		ret = -errno;
		seterr(err, errlen, "cannot open BPF skeleton: %s",
		       strerror(-ret));
		goto out_free;
	}
	obs->skel->rodata->nr_plugins = nr;
	maps[0] = obs->skel->maps.stats;
	maps[1] = obs->skel->maps.events;
	maps[2] = obs->skel->maps.chains;
	maps[3] = obs->skel->maps.totals;
	bpf_map__set_max_entries(obs->skel->maps.stats, nr * PBUS_OBS_HOOKS);
	bpf_map__set_max_entries(obs->skel->maps.events, nr);
	for (size_t i = 0; o->instance && i < N_PINNED; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, pinned_maps[i]);
		ret = bpf_map__set_pin_path(maps[i], path);
		if (ret)
			goto out_destroy;
	}
	ret = pbus_bpf__load(obs->skel);
	if (ret) {
		seterr(err, errlen, "cannot load the BPF program: %s%s",
		       strerror(-ret), load_hint(ret));
		goto out_destroy;
	}
	*out = obs;
	return 0;

out_destroy:
	pbus_bpf__destroy(obs->skel);
out_free:
	if (o->instance && !pbus_obs_pin_dir(o->instance, dir, sizeof(dir)))
		rmdir(dir); /* only if we left it empty */
	free(obs);
	return ret;
}

unsigned pbus_obs_nr_plugins(const struct pbus_obs *obs)
{
	return obs->nr_plugins;
}

int pbus_obs_target(pid_t pid, char *path, size_t len)
{
	char maps[64], line[PATH_MAX + 256];
	FILE *f;
	int ret = -ENOENT;

	snprintf(maps, sizeof(maps), "/proc/%d/maps", (int)pid);
	f = fopen(maps, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		char *p = strchr(line, '/');
		char *nl;

		if (!p || !strstr(p, "/libpbus.so"))
			continue;
		nl = strchr(p, '\n');
		if (nl)
			*nl = '\0';
		if ((size_t)snprintf(path, len, "%s", p) >= len)
			ret = -ENAMETOOLONG;
		else
			ret = 0;
		break;
	}
	fclose(f);
	if (ret != -ENOENT)
		return ret;
	if ((size_t)snprintf(path, len, "/proc/%d/exe", (int)pid) >= len)
		return -ENAMETOOLONG;
	return access(path, F_OK) ? -errno : 0;
}

static struct bpf_program *link_prog(struct pbus_obs *obs, int i)
{
	struct pbus_bpf *s = obs->skel;

	switch (i) {
	case L_MAIN:
		return obs->o.per_call ? s->progs.handle_call
				       : s->progs.handle_batch;
	case L_AGENT_UP:
		return s->progs.handle_agent_up;
	case L_AGENT_DOWN:
		return s->progs.handle_agent_down;
	case L_CHAIN:
		return obs->o.chains ? s->progs.handle_chain : NULL;
	case L_RING_FULL:
		return obs->o.events ? s->progs.handle_ring_full : NULL;
	case L_FUTEX_SLEEP:
		return obs->o.events ? s->progs.handle_futex_sleep : NULL;
	}
	return NULL;
}

static const char *link_name(const struct pbus_obs *obs, int i)
{
	if (i == L_MAIN)
		return obs->o.per_call ? "call" : "batch";
	return link_probe[i];
}

int pbus_obs_attach(struct pbus_obs *obs, pid_t pid, const char *binary,
		    char *err, size_t errlen)
{
	struct bpf_link *l;
	int ret;

	if (obs->links[L_MAIN])
		return -EALREADY;
	for (int i = 0; i < L_COUNT; i++) {
		struct bpf_program *prog = link_prog(obs, i);

		if (!prog)
			continue;
		l = bpf_program__attach_usdt(prog, pid, binary, "pbus",
					     link_name(obs, i), NULL);
		if (l) {
			obs->links[i] = l;
			continue;
		}
		ret = -errno;
		if (i != L_MAIN)
			continue; /* optional probe not in this binary */
		if (ret == -ENOENT)
			seterr(err, errlen,
			       "no USDT probe pbus:%s in %s (is libpbus "
			       "linked in?)",
			       link_name(obs, i), binary);
		else
			seterr(err, errlen, "cannot attach pbus:%s in %s: %s",
			       link_name(obs, i), binary, strerror(-ret));
		return ret;
	}
	return 0;
}

void pbus_obs_detach(struct pbus_obs *obs)
{
	for (int i = 0; obs && i < L_COUNT; i++) {
		bpf_link__destroy(obs->links[i]);
		obs->links[i] = NULL;
	}
}

const char *pbus_obs_attached(const struct pbus_obs *obs, char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = '\0';
	for (int i = 0; i < L_COUNT && off < len; i++) {
		if (!obs->links[i])
			continue;
		off += (size_t)snprintf(buf + off, len - off, "%spbus:%s",
					off ? " " : "", link_name(obs, i));
	}
	return buf;
}

void pbus_obs_close(struct pbus_obs *obs)
{
	if (!obs)
		return;
	pbus_obs_detach(obs);
	pbus_bpf__destroy(obs->skel);
	free(obs);
}

int pbus_obs_unpin(const char *instance)
{
	char dir[PATH_MAX], path[PATH_MAX + 16];
	int found = 0;

	if (pbus_obs_pin_dir(instance, dir, sizeof(dir)))
		return -EINVAL;
	for (size_t i = 0; i < N_PINNED; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, pinned_maps[i]);
		if (unlink(path) == 0)
			found = 1;
		else if (errno != ENOENT)
			return -errno;
	}
	if (rmdir(dir) == 0)
		found = 1;
	else if (errno != ENOENT)
		return -errno;
	rmdir(PBUS_OBS_PIN_ROOT); /* fails while other instances exist */
	return found ? 0 : -ENOENT;
}

/* ------------------------------------------------------------ reading */

/* Sum the per-CPU values of entry @key of @fd (@vsz bytes of u64s). */
static int lookup_sum(int fd, __u32 key, void *out, size_t vsz, void *tmp,
		      int ncpu)
{
	__u64 *dst = out;
	size_t nw = vsz / sizeof(__u64);

	if (bpf_map_lookup_elem(fd, &key, tmp))
		return -errno;
	memset(out, 0, vsz);
	for (int c = 0; c < ncpu; c++) {
		const __u64 *v = (const __u64 *)((char *)tmp + c * vsz);

		for (size_t w = 0; w < nw; w++)
			dst[w] += v[w];
	}
	return 0;
}

/*
 * Per-CPU values are summed word by word, which is right for every field
 * except latency_max_ns: redo that one as a maximum.
 */
static int lookup_slot(int fd, __u32 key, struct pbus_obs_slot *out, void *tmp,
		       int ncpu)
{
	int ret = lookup_sum(fd, key, out, sizeof(*out), tmp, ncpu);

	if (ret)
		return ret;
	out->latency_max_ns = 0;
	for (int c = 0; c < ncpu; c++) {
		const struct pbus_obs_slot *v =
			(const void *)((char *)tmp + c * sizeof(*out));

		if (v->latency_max_ns > out->latency_max_ns)
			out->latency_max_ns = v->latency_max_ns;
	}
	return 0;
}

static int events_fix_last(int fd, __u32 key, struct pbus_obs_events *out,
			   void *tmp, int ncpu)
{
	int ret = lookup_sum(fd, key, out, sizeof(*out), tmp, ncpu);

	if (ret)
		return ret;
	/* last_pid/last_epoch are not sums: keep the highest epoch's. */
	out->last_pid = out->last_epoch = 0;
	for (int c = 0; c < ncpu; c++) {
		const struct pbus_obs_events *v =
			(const void *)((char *)tmp + c * sizeof(*out));

		if (v->agent_up && v->last_epoch >= out->last_epoch) {
			out->last_epoch = v->last_epoch;
			out->last_pid = v->last_pid;
		}
	}
	return 0;
}

static int read_fds(const int fds[N_PINNED], struct pbus_obs_snap *s)
{
	struct bpf_map_info info;
	__u32 len = sizeof(info);
	unsigned nr;
	void *tmp;
	int ncpu, ret = 0;

	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(fds[0], &info, &len))
		return -errno;
	nr = info.max_entries / PBUS_OBS_HOOKS;
	if (nr == 0 || nr > PBUS_OBS_MAX_PLUGINS ||
	    info.value_size != sizeof(struct pbus_obs_slot))
		return -EPROTO;
	if (s->slots && s->nr_plugins != nr)
		pbus_obs_snap_fini(s);
	if (!s->slots) {
		s->slots =
			calloc((size_t)nr * PBUS_OBS_HOOKS, sizeof(*s->slots));
		s->events = calloc(nr, sizeof(*s->events));
		if (!s->slots || !s->events) {
			pbus_obs_snap_fini(s);
			return -ENOMEM;
		}
	}
	s->nr_plugins = nr;
	ncpu = libbpf_num_possible_cpus();
	if (ncpu <= 0)
		return ncpu ? ncpu : -EINVAL;
	tmp = malloc((size_t)ncpu * sizeof(struct pbus_obs_slot));
	if (!tmp)
		return -ENOMEM;
	s->taken_ns = mono_ns();
	for (__u32 k = 0; !ret && k < nr * PBUS_OBS_HOOKS; k++)
		ret = lookup_slot(fds[0], k, &s->slots[k], tmp, ncpu);
	for (__u32 k = 0; !ret && k < nr; k++)
		ret = events_fix_last(fds[1], k, &s->events[k], tmp, ncpu);
	for (__u32 k = 0; !ret && k < PBUS_OBS_HOOKS; k++)
		ret = lookup_slot(fds[2], k, &s->chains[k], tmp, ncpu);
	if (!ret)
		ret = lookup_sum(fds[3], 0, &s->totals, sizeof(s->totals), tmp,
				 ncpu);
	free(tmp);
	return ret;
}

int pbus_obs_read(struct pbus_obs *obs, struct pbus_obs_snap *s)
{
	int fds[N_PINNED] = {
		bpf_map__fd(obs->skel->maps.stats),
		bpf_map__fd(obs->skel->maps.events),
		bpf_map__fd(obs->skel->maps.chains),
		bpf_map__fd(obs->skel->maps.totals),
	};

	return read_fds(fds, s);
}

int pbus_obs_read_pinned(const char *instance, struct pbus_obs_snap *s)
{
	char dir[PATH_MAX], path[PATH_MAX + 16];
	int fds[N_PINNED], ret = 0;
	size_t i;

	ret = pbus_obs_pin_dir(instance, dir, sizeof(dir));
	if (ret)
		return ret;
	for (i = 0; i < N_PINNED; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, pinned_maps[i]);
		fds[i] = bpf_obj_get(path);
		if (fds[i] < 0) {
			ret = -errno;
			break;
		}
	}
	if (!ret)
		ret = read_fds(fds, s);
	while (i-- > 0)
		close(fds[i]);
	return ret;
}

void pbus_obs_snap_fini(struct pbus_obs_snap *s)
{
	free(s->slots);
	free(s->events);
	s->slots = NULL;
	s->events = NULL;
	s->nr_plugins = 0;
}

/* ------------------------------------------------------------ statistics */

void pbus_obs_slot_delta(const struct pbus_obs_slot *now,
			 const struct pbus_obs_slot *prev,
			 struct pbus_obs_slot *out)
{
	const __u64 *a = (const __u64 *)now, *b = (const __u64 *)prev;
	__u64 *o = (__u64 *)out;

	for (size_t w = 0; w < sizeof(*out) / sizeof(__u64); w++)
		o[w] = a[w] >= b[w] ? a[w] - b[w] : a[w];
	out->latency_max_ns = now->latency_max_ns;
}

static uint64_t bucket_mid(unsigned b)
{
	uint64_t lo = pbus_obs_bucket_lo(b);

	if (b == 0)
		return 1ull << (PBUS_OBS_MIN_SHIFT - 1);
	if (b >= PBUS_OBS_BUCKETS - 1)
		return lo;
	return lo + (pbus_obs_bucket_lo(b + 1) - lo) / 2;
}

int pbus_obs_quantile_bucket(const struct pbus_obs_slot *s, double q)
{
	uint64_t total = 0, rank, seen = 0;

	for (unsigned b = 0; b < PBUS_OBS_BUCKETS; b++)
		total += s->hist[b];
	if (!total)
		return -1;
	rank = (uint64_t)(q * (double)total + 0.999999);
	if (rank < 1)
		rank = 1;
	for (unsigned b = 0; b < PBUS_OBS_BUCKETS; b++) {
		seen += s->hist[b];
		if (seen >= rank)
			return (int)b;
	}
	return PBUS_OBS_BUCKETS - 1;
}

uint64_t pbus_obs_quantile(const struct pbus_obs_slot *s, double q)
{
	int b = pbus_obs_quantile_bucket(s, q);
	uint64_t v;

	if (b < 0)
		return 0;
	v = bucket_mid((unsigned)b);
	if (s->latency_max_ns && v > s->latency_max_ns)
		v = s->latency_max_ns;
	return v;
}

uint64_t pbus_obs_hist_max(const struct pbus_obs_slot *s)
{
	uint64_t v;
	int b;

	for (b = PBUS_OBS_BUCKETS - 1; b >= 0 && !s->hist[b]; b--)
		;
	if (b < 0)
		return 0;
	v = b + 1 < PBUS_OBS_BUCKETS ? pbus_obs_bucket_lo((unsigned)b + 1)
				     : pbus_obs_bucket_lo((unsigned)b);
	if (s->latency_max_ns && v > s->latency_max_ns)
		v = s->latency_max_ns;
	return v;
}

char *pbus_obs_fmt_ns(uint64_t ns, char *buf, size_t len)
{
	if (ns < 1000)
		snprintf(buf, len, "%lluns", (unsigned long long)ns);
	else if (ns < 1000000)
		snprintf(buf, len, "%.2fus", (double)ns / 1e3);
	else if (ns < 1000000000)
		snprintf(buf, len, "%.2fms", (double)ns / 1e6);
	else
		snprintf(buf, len, "%.2fs", (double)ns / 1e9);
	return buf;
}
