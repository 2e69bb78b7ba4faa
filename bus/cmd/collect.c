// SPDX-License-Identifier: MIT
/*
 * pbus-collector attached to this process (collect.h). The collector is a
 * child process: `top --pid <us> --unpin` loads the BPF program, pins its
 * maps under /sys/fs/bpf/pbus/<instance>/ and attaches to our pbus:batch
 * probe; we read the per-(plugin, hook) histograms from the pinned `stats`
 * map ourselves (probes/pbus_obs.h is the layout) and stop it with SIGINT,
 * which detaches and unpins. Graphs are `pbus-collector graph` runs over
 * the RRD files `top` wrote.
 */
#include "collect.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "../../probes/pbus_obs.h"

struct collect {
	pid_t pid;
	char instance[64];
	char bin[PATH_MAX + 16];
	char log[PATH_MAX];
	char rrd[PATH_MAX];
};

static int find_bin(char *out, size_t len)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	if (n <= 0)
		return -ENOENT;
	self[n] = 0;
	*strrchr(self, '/') = 0;
	snprintf(out, len, "%s/pbus-collector", self);
	return access(out, X_OK) ? -ENOENT : 0;
}

const char *collect_blocker(void)
{
	char bin[PATH_MAX + 16];

	if (find_bin(bin, sizeof(bin)))
		return "pbus-collector is not next to pbus (make tools)";
	if (geteuid() != 0)
		return "loading BPF needs root";
	if (access("/sys/kernel/btf/vmlinux", R_OK))
		return "the kernel has no BTF (/sys/kernel/btf/vmlinux)";
	return NULL;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Run the collector with @argv (argv[0] ignored) to completion, output to
 * the log. Returns its exit status or -errno. */
static int run_collector(struct collect *c, char **argv)
{
	pid_t pid;
	int st;

	argv[0] = c->bin;
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int fd = open(c->log, O_WRONLY | O_APPEND | O_CREAT, 0644);

		dup2(fd, 1);
		dup2(fd, 2);
		execv(c->bin, argv);
		_exit(127);
	}
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

int collect_start(const char *names, const char *rrd_dir, const char *log,
		  struct collect **out)
{
	struct collect *c = calloc(1, sizeof(*c));
	char pid[16], *argv[20];
	uint64_t until;
	int n = 0, fd;

	if (!c)
		return -ENOMEM;
	if (find_bin(c->bin, sizeof(c->bin))) {
		free(c);
		return -ENOENT;
	}
	snprintf(c->log, sizeof(c->log), "%s", log);
	snprintf(c->instance, sizeof(c->instance), "pbus-run-%d",
		 (int)getpid());
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	argv[n++] = c->bin;
	argv[n++] = "top";
	argv[n++] = "--pid";
	argv[n++] = pid;
	argv[n++] = "--instance";
	argv[n++] = c->instance;
	argv[n++] = "--interval";
	argv[n++] = "1";
	argv[n++] = "--names";
	argv[n++] = (char *)names;
	argv[n++] = "--unpin";
	if (rrd_dir) {
		snprintf(c->rrd, sizeof(c->rrd), "%s", rrd_dir);
		argv[n++] = "--step";
		argv[n++] = "1";
		argv[n++] = "--rrd-dir";
		argv[n++] = c->rrd;
	}
	argv[n] = NULL;
	fflush(NULL);
	c->pid = fork();
	if (c->pid < 0) {
		free(c);
		return -errno;
	}
	if (c->pid == 0) {
		fd = open(c->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(fd, 1);
		dup2(fd, 2);
		execv(c->bin, argv);
		_exit(127);
	}
	/* attached when its log says so */
	until = now_ms() + 15000;
	while (now_ms() < until) {
		char buf[4096];
		ssize_t r = 0;
		int st;

		fd = open(c->log, O_RDONLY);
		if (fd >= 0) {
			r = read(fd, buf, sizeof(buf) - 1);
			close(fd);
		}
		buf[r > 0 ? r : 0] = 0;
		if (strstr(buf, "attached")) {
			*out = c;
			return 0;
		}
		if (waitpid(c->pid, &st, WNOHANG) == c->pid) {
			free(c);
			return -EIO;
		}
		usleep(10000);
	}
	kill(c->pid, SIGKILL);
	waitpid(c->pid, NULL, 0);
	free(c);
	return -ETIMEDOUT;
}

/* The middle of the bucket holding the @q quantile, capped by @max. */
static uint64_t quantile(const uint64_t *hist, uint64_t calls, double q,
			 uint64_t max)
{
	uint64_t want = (uint64_t)((double)calls * q), seen = 0;

	if (!calls)
		return 0;
	if (want >= calls)
		want = calls - 1;
	for (uint32_t b = 0; b < PBUS_OBS_BUCKETS; b++) {
		uint64_t lo, hi, mid;

		seen += hist[b];
		if (seen <= want)
			continue;
		lo = pbus_obs_bucket_lo(b);
		hi = b + 1 < PBUS_OBS_BUCKETS ? pbus_obs_bucket_lo(b + 1) : lo;
		mid = lo + (hi - lo) / 2;
		return mid < max ? mid : max;
	}
	return max;
}

int collect_latency(struct collect *c, unsigned n, struct collect_lat *lat)
{
	char path[PATH_MAX];
	int ncpu = libbpf_num_possible_cpus(), fd, ret = 0;
	struct pbus_obs_slot *v;
	uint64_t *hist;

	memset(lat, 0, n * sizeof(*lat));
	if (ncpu <= 0)
		return -EINVAL;
	snprintf(path, sizeof(path), "/sys/fs/bpf/pbus/%s/stats", c->instance);
	fd = bpf_obj_get(path);
	if (fd < 0)
		return -errno;
	v = calloc((size_t)ncpu, sizeof(*v));
	hist = calloc(PBUS_OBS_BUCKETS, sizeof(*hist));
	if (!v || !hist) {
		ret = -ENOMEM;
		goto out;
	}
	for (unsigned p = 0; p < n && p < PBUS_OBS_MAX_PLUGINS; p++) {
		memset(hist, 0, PBUS_OBS_BUCKETS * sizeof(*hist));
		for (unsigned h = 0; h < PBUS_OBS_HOOKS; h++) {
			__u32 key = p * PBUS_OBS_HOOKS + h;

			if (bpf_map_lookup_elem(fd, &key, v))
				continue;
			for (int cpu = 0; cpu < ncpu; cpu++) {
				lat[p].calls += v[cpu].calls;
				if (v[cpu].latency_max_ns > lat[p].max_ns)
					lat[p].max_ns = v[cpu].latency_max_ns;
				for (int b = 0; b < PBUS_OBS_BUCKETS; b++)
					hist[b] += v[cpu].hist[b];
			}
		}
		lat[p].p50_ns =
			quantile(hist, lat[p].calls, 0.5, lat[p].max_ns);
		lat[p].p99_ns =
			quantile(hist, lat[p].calls, 0.99, lat[p].max_ns);
	}
out:
	free(v);
	free(hist);
	close(fd);
	return ret;
}

int collect_graphs(struct collect *c, const char *out_dir, unsigned secs)
{
	char start[32], *argv[12] = {0};

	if (!c->rrd[0])
		return -EINVAL;
	usleep(1500000); /* one more RRD step, so the last second is in */
	snprintf(start, sizeof(start), "-%us", secs);
	argv[1] = "graph";
	argv[2] = "--rrd-dir";
	argv[3] = c->rrd;
	argv[4] = "--out";
	argv[5] = (char *)out_dir;
	argv[6] = "--start";
	argv[7] = start;
	return run_collector(c, argv) ? -EIO : 0;
}

void collect_stop(struct collect *c)
{
	if (!c)
		return;
	kill(c->pid, SIGINT);
	while (waitpid(c->pid, NULL, 0) < 0 && errno == EINTR)
		;
	free(c);
}
