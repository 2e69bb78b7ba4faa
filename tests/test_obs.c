// SPDX-License-Identifier: MIT
/*
 * Observability tests. This program is its own "gateway": it links libpbus
 * statically, so the pbus:* USDT probes are in its own executable, and it
 * fires them through the same bus/obs.h calls the chain runner uses, with
 * plugin ids, hooks, outcomes and latencies it chose. The BPF program is
 * attached to /proc/self/exe either in-process (through the loader that
 * pbus-collector uses) or by a real pbus-collector process. The checks read
 * the maps back through their pins in /sys/fs/bpf/pbus/<instance>/.
 *
 * Needs root (BPF, uprobes, bpffs). Skips, saying why, only when the kernel
 * has no BPF syscall or no uprobe PMU. Every test removes its pins and
 * links; an unchecked teardown sweeps the pins of tests that died. Every
 * wait has a deadline.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <bpf/libbpf.h>
#include <msgpack.h>

#include "../probes/collector.h"
#include "helpers.h"
#include "obs.h"
#include "pbus/hooks.h"
#include "pbus/mgr.h"
#include "pbus/mp.h"

static pid_t main_pid; /* instance names carry it, for the sweep */
static unsigned seq;

static const char *instance_name(char *buf, size_t len)
{
	snprintf(buf, len, "test_obs-%d-%d-%u", (int)main_pid, (int)getpid(),
		 seq++);
	return buf;
}

/* /tmp/pbus-obs-<main pid>-XXXXXX, swept after the test case. */
static void tmp_dir(char *buf, size_t len)
{
	snprintf(buf, len, "/tmp/pbus-obs-%d-XXXXXX", (int)main_pid);
	ck_assert_ptr_nonnull(mkdtemp(buf));
}

static int rm_one(const char *path, const struct stat *st, int flag,
		  struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void rm_rf(const char *dir)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static int quiet_libbpf(enum libbpf_print_level lvl, const char *fmt,
			va_list ap)
{
	if (!getenv("PBUS_TEST_VERBOSE") || lvl == LIBBPF_DEBUG)
		return 0;
	return vfprintf(stderr, fmt, ap);
}

/* Load, pin and attach to this process. */
static struct pbus_obs *attach_self(const char *inst, int per_call, int extras)
{
	struct pbus_obs_opts o = {
		.instance = inst,
		.max_plugins = 8,
		.per_call = per_call,
		.chains = extras,
		.events = extras,
	};
	char err[PBUS_OBS_ERR_MAX] = "", target[PATH_MAX];
	struct pbus_obs *obs = NULL;
	int ret;

	ret = pbus_obs_open(&o, &obs, err, sizeof(err));
	ck_assert_msg(ret == 0, "pbus_obs_open: %d %s", ret, err);
	ck_assert_int_eq(pbus_obs_target(getpid(), target, sizeof(target)), 0);
	ret = pbus_obs_attach(obs, getpid(), target, err, sizeof(err));
	if (ret) {
		pbus_obs_close(obs);
		pbus_obs_unpin(inst);
	}
	ck_assert_msg(ret == 0, "pbus_obs_attach: %d %s", ret, err);
	return obs;
}

static void detach_all(struct pbus_obs *obs, const char *inst)
{
	pbus_obs_close(obs);
	ck_assert_int_eq(pbus_obs_unpin(inst), 0);
}

static void read_pinned(const char *inst, struct pbus_obs_snap *s)
{
	int ret = pbus_obs_read_pinned(inst, s);

	ck_assert_msg(ret == 0, "read pins of %s: %d", inst, ret);
}

/* ------------------------------------------------------------ expected */

#define N_CALLS 10000
#define N_PLUGINS 3

struct expect {
	uint64_t calls[N_PLUGINS][PBUS_HOOK_COUNT];
	uint64_t outcome[N_PLUGINS][PBUS_HOOK_COUNT][PBUS_OUTCOME_COUNT];
};

/* Call i: plugin i%3, hook 2 or 3, outcome by a fixed pattern. */
static void make_calls(unsigned n, struct expect *e)
{
	for (unsigned i = 0; i < n; i++) {
		uint32_t p = i % N_PLUGINS;
		uint32_t h = (i / N_PLUGINS) % 2 ? PBUS_HOOK_TOOL_POST_INVOKE
						 : PBUS_HOOK_TOOL_PRE_INVOKE;
		uint32_t o = (i * 7u + p) % PBUS_OUTCOME_COUNT;

		pbus__obs_call(p, h, o, 1000 + i % 1000);
		if (e) {
			e->calls[p][h]++;
			e->outcome[p][h][o]++;
		}
	}
}

static void check_split(const struct pbus_obs_snap *s, const struct expect *e,
			uint64_t n)
{
	uint64_t total = 0;

	for (unsigned p = 0; p < s->nr_plugins; p++) {
		for (unsigned h = 0; h < PBUS_OBS_HOOKS; h++) {
			const struct pbus_obs_slot *sl =
				pbus_obs_snap_slot(s, p, h);
			const __u64 *oc = &sl->ok;
			uint64_t want = p < N_PLUGINS ? e->calls[p][h] : 0;

			ck_assert_msg(sl->calls == want,
				      "plugin %u hook %u: %llu calls, "
				      "want %llu",
				      p, h, (unsigned long long)sl->calls,
				      (unsigned long long)want);
			for (unsigned o = 0; o < PBUS_OUTCOME_COUNT; o++) {
				uint64_t w =
					p < N_PLUGINS ? e->outcome[p][h][o] : 0;

				ck_assert_msg(oc[o] == w,
					      "plugin %u hook %u outcome %u: "
					      "%llu, want %llu",
					      p, h, o,
					      (unsigned long long)oc[o],
					      (unsigned long long)w);
			}
			total += sl->calls;
		}
	}
	ck_assert_uint_eq(total, n);
}

/* ------------------------------------------------------------ probes */

START_TEST(detached_probes_ask_for_no_clock)
{
	char inst[64];
	struct pbus_obs *obs;

	instance_name(inst, sizeof(inst));
	ck_assert_int_eq(pbus__obs_want_clock(), 0);
	ck_assert_uint_eq(pbus__obs_clock(), 0);
	obs = attach_self(inst, 0, 0);
	/* The kernel bumped the semaphore when the uprobe went in. */
	ck_assert_int_ne(pbus__obs_want_clock(), 0);
	ck_assert_uint_ne(pbus__obs_clock(), 0);
	detach_all(obs, inst);
	ck_assert_int_eq(pbus__obs_want_clock(), 0);
}
END_TEST

START_TEST(batch_program_counts_every_call_by_plugin_hook_outcome)
{
	struct pbus_obs_snap s = {0};
	struct expect e = {0};
	struct pbus_obs *obs;
	char inst[64];

	instance_name(inst, sizeof(inst));
	obs = attach_self(inst, 0, 0);
	make_calls(N_CALLS, &e);
	pbus__obs_call(7, 99, 0, 1);  /* hook out of range */
	pbus__obs_call(200, 0, 0, 1); /* plugin beyond the maps */
	pbus__obs_flush();
	read_pinned(inst, &s);
	check_split(&s, &e, N_CALLS);
	ck_assert_uint_eq(s.totals.records, N_CALLS + 2);
	ck_assert_uint_eq(s.totals.bad_id, 2);
	ck_assert_uint_eq(s.totals.calls, 0);
	ck_assert_uint_eq(s.totals.read_errors, 0);
	ck_assert_uint_eq(s.totals.truncated, 0);
	/* Full batches, then the flushed rest. */
	ck_assert_uint_eq(s.totals.batches,
			  (N_CALLS + 2 + PBUS_OBS_BATCH - 1) / PBUS_OBS_BATCH);
	pbus_obs_snap_fini(&s);
	detach_all(obs, inst);
}
END_TEST

START_TEST(per_call_program_counts_every_call_by_plugin_hook_outcome)
{
	struct pbus_obs_snap s = {0};
	struct expect e = {0};
	struct pbus_obs *obs;
	char inst[64];

	instance_name(inst, sizeof(inst));
	obs = attach_self(inst, 1, 0);
	make_calls(N_CALLS / 10, &e);
	read_pinned(inst, &s);
	check_split(&s, &e, N_CALLS / 10);
	ck_assert_uint_eq(s.totals.calls, N_CALLS / 10);
	ck_assert_uint_eq(s.totals.batches, 0);
	pbus_obs_snap_fini(&s);
	detach_all(obs, inst);
}
END_TEST

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

START_TEST(histogram_p50_is_within_one_bucket_of_the_measured_latency)
{
	enum { N = 2001 };
	static uint64_t lat[N];
	struct pbus_obs_snap s = {0};
	const struct pbus_obs_slot *a, *b;
	struct pbus_obs *obs;
	unsigned seed = 12345;
	char inst[64];
	int qb;

	instance_name(inst, sizeof(inst));
	obs = attach_self(inst, 0, 0);
	/* Slot (0, tool_pre_invoke): 60 % at 12,345 ns, 40 % at 50 us. */
	for (int i = 0; i < 1000; i++)
		pbus__obs_call(0, PBUS_HOOK_TOOL_PRE_INVOKE, PBUS_OUTCOME_OK,
			       i < 600 ? 12345 : 50000);
	/* Slot (1, prompt_pre_fetch): log-uniform 1 us .. 1 ms. */
	for (int i = 0; i < N; i++) {
		double x = (double)rand_r(&seed) / RAND_MAX;

		lat[i] = (uint64_t)(1000.0 * pow(1000.0, x));
		pbus__obs_call(1, PBUS_HOOK_PROMPT_PRE_FETCH, PBUS_OUTCOME_OK,
			       lat[i]);
	}
	pbus__obs_flush();
	read_pinned(inst, &s);
	qsort(lat, N, sizeof(lat[0]), cmp_u64);

	a = pbus_obs_snap_slot(&s, 0, PBUS_HOOK_TOOL_PRE_INVOKE);
	ck_assert_uint_eq(a->calls, 1000);
	qb = pbus_obs_quantile_bucket(a, 0.5);
	ck_assert_int_eq(qb, (int)pbus_obs_bucket(12345));
	ck_assert_uint_eq(a->latency_max_ns, 50000);
	ck_assert_uint_eq(a->latency_sum_ns, 600ull * 12345 + 400ull * 50000);

	b = pbus_obs_snap_slot(&s, 1, PBUS_HOOK_PROMPT_PRE_FETCH);
	ck_assert_uint_eq(b->calls, N);
	qb = pbus_obs_quantile_bucket(b, 0.5);
	ck_assert_msg(abs(qb - (int)pbus_obs_bucket(lat[N / 2])) <= 1,
		      "p50 bucket %d, true p50 %llu ns in bucket %u", qb,
		      (unsigned long long)lat[N / 2],
		      pbus_obs_bucket(lat[N / 2]));
	qb = pbus_obs_quantile_bucket(b, 0.99);
	ck_assert_msg(abs(qb - (int)pbus_obs_bucket(lat[N * 99 / 100])) <= 1,
		      "p99 bucket %d", qb);
	ck_assert_uint_eq(b->latency_max_ns, lat[N - 1]);
	pbus_obs_snap_fini(&s);
	detach_all(obs, inst);
}
END_TEST

START_TEST(batch_fires_when_its_oldest_record_is_too_old)
{
	struct pbus_obs_snap s = {0};
	struct pbus_obs *obs;
	char inst[64];

	instance_name(inst, sizeof(inst));
	obs = attach_self(inst, 0, 0);
	pbus__obs_call(0, 0, 0, 100);
	read_pinned(inst, &s);
	ck_assert_uint_eq(s.totals.batches, 0); /* still pending */
	usleep((useconds_t)(PBUS_OBS_BATCH_AGE_NS / 1000 + 20000));
	pbus__obs_call(0, 0, 0, 100); /* sees the age: both go now */
	read_pinned(inst, &s);
	ck_assert_uint_eq(s.totals.batches, 1);
	ck_assert_uint_eq(s.totals.records, 2);
	pbus_obs_snap_fini(&s);
	detach_all(obs, inst);
}
END_TEST

static void *thread_calls(void *arg)
{
	(void)arg;
	for (int i = 0; i < 10; i++)
		pbus__obs_call(2, 5, PBUS_OUTCOME_TIMEOUT, 1000000);
	return NULL; /* no flush: the key destructor must fire the batch */
}

START_TEST(thread_exit_fires_the_pending_batch)
{
	struct pbus_obs_snap s = {0};
	struct pbus_obs *obs;
	pthread_t th;
	char inst[64];

	instance_name(inst, sizeof(inst));
	obs = attach_self(inst, 0, 0);
	ck_assert_int_eq(pthread_create(&th, NULL, thread_calls, NULL), 0);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	read_pinned(inst, &s);
	ck_assert_uint_eq(s.totals.records, 10);
	ck_assert_uint_eq(pbus_obs_snap_slot(&s, 2, 5)->timeouts, 10);
	pbus_obs_snap_fini(&s);
	detach_all(obs, inst);
}
END_TEST

START_TEST(lifecycle_chain_and_wait_probes_reach_their_maps)
{
	struct pbus_obs_snap s = {0};
	struct pbus_obs *obs;
	char inst[64], buf[256];

	instance_name(inst, sizeof(inst));
	obs = attach_self(inst, 0, 1);
	ck_assert_ptr_nonnull(strstr(pbus_obs_attached(obs, buf, sizeof(buf)),
				     "pbus:futex_sleep"));
	pbus__obs_agent_up(1, 4242, 3);
	pbus__obs_agent_down(1, 4242, 3, PBUS_DOWN_EXITED);
	pbus__obs_agent_up(1, 4343, 4);
	pbus__obs_ring_full(1, 700);
	pbus__obs_futex_sleep(1, 5000);
	pbus__obs_futex_sleep(1, 6000);
	pbus__obs_chain(PBUS_HOOK_TOOL_PRE_INVOKE, 3, PBUS_OUTCOME_VIOLATION,
			77000);
	pbus__obs_handler(PBUS_HOOK_TOOL_PRE_INVOKE, 100); /* not attached */
	read_pinned(inst, &s);
	ck_assert_uint_eq(s.events[1].agent_up, 2);
	ck_assert_uint_eq(s.events[1].agent_down, 1);
	ck_assert_uint_eq(s.events[1].last_pid, 4343);
	ck_assert_uint_eq(s.events[1].last_epoch, 4);
	ck_assert_uint_eq(s.events[1].ring_full, 1);
	ck_assert_uint_eq(s.events[1].ring_full_ns, 700);
	ck_assert_uint_eq(s.events[1].futex_sleeps, 2);
	ck_assert_uint_eq(s.events[1].futex_sleep_ns, 11000);
	ck_assert_uint_eq(s.chains[PBUS_HOOK_TOOL_PRE_INVOKE].calls, 1);
	ck_assert_uint_eq(s.chains[PBUS_HOOK_TOOL_PRE_INVOKE].violations, 1);
	ck_assert_uint_eq(s.chains[PBUS_HOOK_TOOL_PRE_INVOKE].latency_max_ns,
			  77000);
	ck_assert_uint_eq(s.events[0].agent_up, 0);
	pbus_obs_snap_fini(&s);
	detach_all(obs, inst);
}
END_TEST

START_TEST(restarted_loader_reuses_the_pinned_maps)
{
	struct pbus_obs_snap s = {0};
	struct pbus_obs *obs;
	char inst[64];

	instance_name(inst, sizeof(inst));
	obs = attach_self(inst, 0, 0);
	make_calls(300, NULL);
	pbus__obs_flush();
	pbus_obs_close(obs); /* pins stay */
	obs = attach_self(inst, 0, 0);
	make_calls(300, NULL);
	pbus__obs_flush();
	read_pinned(inst, &s);
	ck_assert_uint_eq(s.totals.records, 600);
	pbus_obs_snap_fini(&s);
	detach_all(obs, inst);
	ck_assert_int_eq(pbus_obs_unpin(inst), -ENOENT);
}
END_TEST

/* ------------------------------------------------------------ collector */

static int records_reached(const char *inst, uint64_t n)
{
	struct pbus_obs_snap s = {0};
	int ok;

	ok = pbus_obs_read_pinned(inst, &s) == 0 && s.totals.records >= n;
	pbus_obs_snap_fini(&s);
	return ok;
}

static int file_exists(const char *path)
{
	return access(path, F_OK) == 0;
}

static int file_has(const char *path, const char *needle)
{
	char buf[4096];
	size_t n;
	FILE *f = fopen(path, "r");

	if (!f)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return strstr(buf, needle) != NULL;
}

START_TEST(collector_process_counts_calls_and_writes_rrd)
{
	char inst[64], pid[16], dir[64], path[PATH_MAX], out[PATH_MAX];
	struct pbus_obs_snap s = {0};
	struct expect e = {0};
	uint64_t deadline;
	int status, fd;
	pid_t col;

	instance_name(inst, sizeof(inst));
	tmp_dir(dir, sizeof(dir));
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	snprintf(out, sizeof(out), "%s/collector.out", dir);
	col = fork();
	ck_assert_int_ge(col, 0);
	if (col == 0) {
		const char *bin = th_bin("pbus-collector");

		fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
		}
		execl(bin, bin, "top", "--pid", pid, "--instance", inst,
		      "--interval", "0.2", "--step", "1", "--rrd-dir", dir,
		      "--names", "0=deny,1=pii,2=regex", "--duration", "60",
		      (char *)NULL);
		_exit(127);
	}
	/*
	 * The semaphores go up when the uprobes go in, a little before the
	 * program is attached to them: wait for the collector to say it is
	 * done attaching.
	 */
	deadline = th_now_ms() + 15000;
	while (!file_has(out, "attached pbus:batch") &&
	       th_now_ms() < deadline && waitpid(col, &status, WNOHANG) == 0)
		usleep(10000);
	if (!file_has(out, "attached pbus:batch")) {
		th_kill(col);
		ck_abort_msg("collector did not attach within 15 s (see %s)",
			     out);
	}
	ck_assert_int_ne(pbus__obs_want_clock(), 0);
	make_calls(N_CALLS, &e);
	pbus__obs_flush();
	deadline = th_now_ms() + 10000;
	while (!records_reached(inst, N_CALLS) && th_now_ms() < deadline)
		usleep(20000);
	read_pinned(inst, &s);
	check_split(&s, &e, N_CALLS);
	pbus_obs_snap_fini(&s);

	/* One RRD step later the files are there (the last made last). */
	pbus_obs_rrd_path(dir, "regex", "tool_post_invoke", path, sizeof(path));
	deadline = th_now_ms() + 10000;
	while (!file_exists(path) && th_now_ms() < deadline)
		usleep(50000);
	ck_assert_msg(file_exists(path), "no %s", path);
	pbus_obs_rrd_path(dir, "deny", "tool_pre_invoke", path, sizeof(path));
	ck_assert_msg(file_exists(path), "no %s", path);
	pbus_obs_rrd_path(dir, "plugin3", "tool_pre_invoke", path,
			  sizeof(path));
	ck_assert_msg(!file_exists(path), "%s for a plugin never called", path);

	ck_assert_int_eq(kill(col, SIGINT), 0);
	if (th_wait_exit(col, 10000, &status)) {
		th_kill(col);
		ck_abort_msg("collector ignored SIGINT");
	}
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ck_assert_int_eq(pbus__obs_want_clock(), 0); /* links are gone */
	ck_assert_msg(records_reached(inst, N_CALLS), "maps stay pinned");
	ck_assert_int_eq(pbus_obs_unpin(inst), 0);
	rm_rf(dir);
}
END_TEST

/* ------------------------------------------------------------ no BPF */

START_TEST(bucket_bounds_round_trip)
{
	for (unsigned b = 1; b + 1 < PBUS_OBS_BUCKETS; b++) {
		uint64_t lo = pbus_obs_bucket_lo(b);
		uint64_t hi = pbus_obs_bucket_lo(b + 1);

		ck_assert_uint_eq(pbus_obs_bucket(lo), b);
		ck_assert_uint_eq(pbus_obs_bucket(hi - 1), b);
		ck_assert_uint_gt(hi, lo);
		/* log-linear: no bucket wider than a quarter of its start */
		ck_assert_uint_le((hi - lo) * 4, lo);
	}
	ck_assert_uint_eq(pbus_obs_bucket(0), 0);
	ck_assert_uint_eq(pbus_obs_bucket(63), 0);
	ck_assert_uint_eq(pbus_obs_bucket(64), 1);
	ck_assert_uint_eq(pbus_obs_bucket(UINT64_MAX), PBUS_OBS_BUCKETS - 1);
}
END_TEST

START_TEST(names_parse_accepts_id_name_lists_only)
{
	struct pbus_obs_names nm = {0};
	char buf[PBUS_NAME_MAX];

	ck_assert_int_eq(pbus_obs_names_parse("0=deny,2=pii_filter", &nm), 0);
	ck_assert_uint_eq(nm.n, 3);
	ck_assert_str_eq(pbus_obs_name(&nm, 0, buf, sizeof(buf)), "deny");
	ck_assert_str_eq(pbus_obs_name(&nm, 1, buf, sizeof(buf)), "plugin1");
	ck_assert_str_eq(pbus_obs_name(&nm, 2, buf, sizeof(buf)), "pii_filter");
	ck_assert_int_eq(pbus_obs_names_parse("x=deny", &nm), -EINVAL);
	ck_assert_int_eq(pbus_obs_names_parse("1=", &nm), -EINVAL);
	ck_assert_int_eq(pbus_obs_names_parse("64=big", &nm), -EINVAL);
	ck_assert_int_eq(pbus_obs_names_parse("1deny", &nm), -EINVAL);
}
END_TEST

/* A gateway stand-in: answers one admin LIST with two plugins. */
struct fake_gw {
	int lfd;
	int ok; /* the request was well formed */
};

static void *fake_gw_run(void *arg)
{
	struct fake_gw *g = arg;
	struct pbus_msg_admin req;
	struct pbus_msg_admin_reply rep;
	struct timeval tmo = {.tv_sec = 5};
	msgpack_sbuffer sb;
	msgpack_packer pk;
	char *msg;
	int fd;

	fd = accept(g->lfd, NULL, NULL); /* SO_RCVTIMEO bounds the wait */
	if (fd < 0)
		return NULL;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tmo, sizeof(tmo));
	if (recv(fd, &req, sizeof(req), 0) == sizeof(req) &&
	    req.h.magic == PBUS_MAGIC && req.h.type == PBUS_MSG_ADMIN &&
	    req.cmd == PBUS_ADMIN_LIST)
		g->ok = 1;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 2);
	for (int i = 0; i < 2; i++) {
		const char *name = i ? "pii_filter" : "deny_filter";

		msgpack_pack_map(&pk, 3);
		msgpack_pack_str_with_body(&pk, "id", 2);
		msgpack_pack_uint32(&pk, (uint32_t)(i ? 3 : 0));
		msgpack_pack_str_with_body(&pk, "name", 4);
		msgpack_pack_str_with_body(&pk, name, strlen(name));
		msgpack_pack_str_with_body(&pk, "up", 2);
		msgpack_pack_true(&pk);
	}
	memset(&rep, 0, sizeof(rep));
	rep.h.magic = PBUS_MAGIC;
	rep.h.type = PBUS_MSG_ADMIN_REPLY;
	rep.h.proto = PBUS_PROTO_VERSION;
	rep.h.abi = PBUS_ABI_VERSION;
	rep.h.len = (uint32_t)(sizeof(rep) + sb.size);
	rep.body_len = (uint32_t)sb.size;
	msg = malloc(sizeof(rep) + sb.size);
	memcpy(msg, &rep, sizeof(rep));
	memcpy(msg + sizeof(rep), sb.data, sb.size);
	send(fd, msg, sizeof(rep) + sb.size, MSG_NOSIGNAL);
	free(msg);
	msgpack_sbuffer_destroy(&sb);
	close(fd);
	return NULL;
}

START_TEST(admin_list_client_reads_plugin_names_from_the_gateway)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct pbus_obs_names nm = {0};
	struct timeval tmo = {.tv_sec = 5};
	struct fake_gw g = {0};
	const char *path = th_sock_path();
	char buf[PBUS_NAME_MAX];
	pthread_t th;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	unlink(path);
	g.lfd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	ck_assert_int_ge(g.lfd, 0);
	/* accept() and recv() in the stand-in give up after 5 s */
	ck_assert_int_eq(
		setsockopt(g.lfd, SOL_SOCKET, SO_RCVTIMEO, &tmo, sizeof(tmo)),
		0);
	ck_assert_int_eq(bind(g.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(g.lfd, 1), 0);
	ck_assert_int_eq(pthread_create(&th, NULL, fake_gw_run, &g), 0);
	ck_assert_int_eq(pbus_obs_admin_list(path, 2000, &nm), 0);
	pthread_join(th, NULL);
	close(g.lfd);
	unlink(path);
	ck_assert(g.ok);
	ck_assert_uint_eq(nm.n, 4);
	ck_assert_str_eq(pbus_obs_name(&nm, 0, buf, sizeof(buf)),
			 "deny_filter");
	ck_assert_str_eq(pbus_obs_name(&nm, 3, buf, sizeof(buf)), "pii_filter");
	ck_assert_str_eq(pbus_obs_name(&nm, 1, buf, sizeof(buf)), "plugin1");
	ck_assert_int_eq(pbus_obs_admin_list(path, 500, &nm), -ENOENT);
}
END_TEST

/* Checks the PNG signature and IHDR; returns the file size or -1. */
static long png_check(const char *path, unsigned *w, unsigned *h)
{
	static const unsigned char sig[8] = {0x89, 'P',	 'N',  'G',
					     '\r', '\n', 0x1a, '\n'};
	unsigned char b[24];
	struct stat st;
	FILE *f = fopen(path, "rb");
	size_t n;

	if (!f)
		return -1;
	n = fread(b, 1, sizeof(b), f);
	fclose(f);
	if (n != sizeof(b) || memcmp(b, sig, 8) || memcmp(b + 12, "IHDR", 4) ||
	    b[8] || b[9] || b[10] || b[11] != 13 || stat(path, &st))
		return -1;
	*w = (unsigned)b[16] << 24 | (unsigned)b[17] << 16 |
	     (unsigned)b[18] << 8 | b[19];
	*h = (unsigned)b[20] << 24 | (unsigned)b[21] << 16 |
	     (unsigned)b[22] << 8 | b[23];
	return (long)st.st_size;
}

START_TEST(graph_renders_valid_png_files_from_rrd_history)
{
	char dir[64];
	char rrd[PATH_MAX], png[PATH_MAX], err[PBUS_OBS_ERR_MAX] = "";
	const char *plugins[] = {"deny", "pii"};
	struct pbus_obs_graph_opts go = {.start = "-20min"};
	time_t now = time(NULL);
	unsigned w, h;
	long size;
	int ret;

	tmp_dir(dir, sizeof(dir));
	snprintf(rrd, sizeof(rrd), "%s/rrd", dir);
	snprintf(png, sizeof(png), "%s/png", dir);
	for (int i = 0; i < 90; i++) {
		for (int p = 0; p < 2; p++) {
			struct pbus_obs_rrd_vals v = {
				.calls = 1000 + 100 * (i % 7),
				.errors = i % 5,
				.p50 = (2 + p) * 1e-6 * (1 + (i % 10) / 10.0),
				.p95 = (3 + p) * 1e-6,
				.p99 = (5 + p) * 1e-6 * (1 + (i % 4)),
				.max = (20 + p) * 1e-6,
			};

			ret = pbus_obs_rrd_update(
				rrd, plugins[p], "tool_pre_invoke", 10,
				now - 900 + 10 * i, &v, err, sizeof(err));
			ck_assert_msg(ret == 0, "rrd update: %s", err);
		}
	}
	ret = pbus_obs_graph_dir(rrd, png, &go, err, sizeof(err));
	ck_assert_msg(ret == 3, "graph: %d %s", ret, err);
	{
		const char *names[] = {"deny.tool_pre_invoke.png",
				       "pii.tool_pre_invoke.png",
				       "hook-tool_pre_invoke.png"};

		for (int i = 0; i < 3; i++) {
			char p[PATH_MAX + 64];

			snprintf(p, sizeof(p), "%s/%s", png, names[i]);
			size = png_check(p, &w, &h);
			ck_assert_msg(size > 4000,
				      "%s: not a PNG or too small "
				      "(%ld bytes)",
				      p, size);
			ck_assert_uint_gt(w, 800);
			ck_assert_uint_gt(h, 300);
		}
	}
	rm_rf(dir);
}
END_TEST

/* ------------------------------------------------------------ real gateway */

/*
 * The whole path: a plugin manager in this process runs real chains through
 * three real agents (tests' agent-ctl: allow, modify, and a transform-mode
 * plugin that would block), with the batch program attached to this process.
 * The pinned maps must count exactly the calls made, split by plugin, hook and
 * outcome; then a one-plugin chain whose agent sleeps 2 ms shows that the
 * histogram's p50 is within one bucket of the latency measured here.
 */
static struct pbus_mgr *open_mgr(const char *yaml, struct pbus_config **cfg)
{
	struct pbus_mgr_opts o = {.sock_path = th_sock_path()};
	struct pbus_diag d = {0};
	struct pbus_mgr *m;

	ck_assert_int_eq(pbus_config_parse(yaml, strlen(yaml), "t.yaml", &d,
					   cfg),
			 0);
	ck_assert_int_eq(pbus_mgr_open(*cfg, &o, &m), 0);
	ck_assert_int_eq(pbus_mgr_wait_ready(m, 10000), 0);
	return m;
}

static void tool_payload(msgpack_sbuffer *sb)
{
	msgpack_packer pk;

	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 2);
	msgpack_pack_str_with_body(&pk, "name", 4);
	msgpack_pack_str_with_body(&pk, "search", 6);
	msgpack_pack_str_with_body(&pk, "args", 4);
	msgpack_pack_map(&pk, 1);
	msgpack_pack_str_with_body(&pk, "q", 1);
	msgpack_pack_str_with_body(&pk, "pbus", 4);
}

START_TEST(real_gateway_calls_are_counted_by_plugin_hook_and_outcome)
{
	char yaml[2048], inst[64];
	const char *ctl = strdup(th_bin("agent-ctl"));
	struct pbus_gctx g = {.request_id = "r1", .user = "alice"};
	struct pbus_obs_snap s = {0};
	struct pbus_config *cfg;
	struct pbus_request *rq;
	struct pbus_outcome out;
	struct pbus_obs *obs;
	struct pbus_mgr *m;
	msgpack_sbuffer sb;
	const unsigned n = 3000;

	snprintf(yaml, sizeof(yaml),
		 "plugin_settings: {plugin_timeout: 10}\n"
		 "plugins:\n"
		 "  - {name: allow, kind: agent, hooks: [tool_pre_invoke], "
		 "priority: 1, command: [%s], config: {action: allow}}\n"
		 "  - {name: modify, kind: agent, hooks: [tool_pre_invoke], "
		 "priority: 2, command: [%s], config: {action: modify, "
		 "set: {args: {q: masked}}}}\n"
		 "  - {name: audit, kind: agent, hooks: [tool_pre_invoke], "
		 "mode: transform, priority: 3, command: [%s], "
		 "config: {action: violate, code: X}}\n",
		 ctl, ctl, ctl);
	m = open_mgr(yaml, &cfg);
	instance_name(inst, sizeof(inst));
	obs = attach_self(inst, 0, 0);
	msgpack_sbuffer_init(&sb);
	tool_payload(&sb);
	ck_assert_int_eq(pbus_request_create(m, &g, &rq), 0);
	for (unsigned i = 0; i < n; i++) {
		ck_assert_int_eq(pbus_run(m, rq, PBUS_HOOK_TOOL_PRE_INVOKE,
					  sb.data, sb.size, &out),
				 0);
		ck_assert_int_eq(out.continue_processing, 1);
	}
	pbus_mgr_flush_stats();
	read_pinned(inst, &s);
	{
		const struct pbus_obs_slot *a = pbus_obs_snap_slot(
			&s, 0, PBUS_HOOK_TOOL_PRE_INVOKE);
		const struct pbus_obs_slot *b = pbus_obs_snap_slot(
			&s, 1, PBUS_HOOK_TOOL_PRE_INVOKE);
		const struct pbus_obs_slot *c = pbus_obs_snap_slot(
			&s, 2, PBUS_HOOK_TOOL_PRE_INVOKE);
		const __u64 *oa = &a->ok, *ob = &b->ok, *oc = &c->ok;

		ck_assert_uint_eq(a->calls, n);
		ck_assert_uint_eq(oa[PBUS_OUTCOME_OK], n);
		ck_assert_uint_eq(b->calls, n);
		ck_assert_uint_eq(ob[PBUS_OUTCOME_MODIFIED], n);
		ck_assert_uint_eq(c->calls, n);
		ck_assert_uint_eq(oc[PBUS_OUTCOME_VIOLATION], n);
		ck_assert_uint_eq(s.totals.records, 3 * n);
	}
	pbus_obs_snap_fini(&s);
	pbus_request_destroy(rq);
	msgpack_sbuffer_destroy(&sb);
	detach_all(obs, inst);
	pbus_mgr_close(m);
	pbus_config_destroy(cfg);
	free((void *)ctl);
}
END_TEST

START_TEST(real_gateway_histogram_p50_matches_measured_latency)
{
	char yaml[1024], inst[64];
	const char *ctl = strdup(th_bin("agent-ctl"));
	struct pbus_gctx g = {.request_id = "r1"};
	struct pbus_obs_snap s = {0};
	struct pbus_config *cfg;
	struct pbus_request *rq;
	struct pbus_outcome out;
	struct pbus_obs *obs;
	struct pbus_mgr *m;
	msgpack_sbuffer sb;
	uint64_t lat[201];
	unsigned n = 201;
	int b, want;

	snprintf(yaml, sizeof(yaml),
		 "plugin_settings: {plugin_timeout: 10}\n"
		 "plugins:\n"
		 "  - {name: slow, kind: agent, hooks: [tool_pre_invoke], "
		 "command: [%s], config: {action: allow, sleep_ms: 2}}\n",
		 ctl);
	m = open_mgr(yaml, &cfg);
	instance_name(inst, sizeof(inst));
	obs = attach_self(inst, 0, 0);
	msgpack_sbuffer_init(&sb);
	tool_payload(&sb);
	ck_assert_int_eq(pbus_request_create(m, &g, &rq), 0);
	for (unsigned i = 0; i < n; i++) {
		uint64_t t0 = pbus__now_ns();

		ck_assert_int_eq(pbus_run(m, rq, PBUS_HOOK_TOOL_PRE_INVOKE,
					  sb.data, sb.size, &out),
				 0);
		lat[i] = pbus__now_ns() - t0;
	}
	pbus_mgr_flush_stats();
	qsort(lat, n, sizeof(lat[0]), cmp_u64);
	read_pinned(inst, &s);
	b = pbus_obs_quantile_bucket(
		pbus_obs_snap_slot(&s, 0, PBUS_HOOK_TOOL_PRE_INVOKE), 0.5);
	want = (int)pbus_obs_bucket(lat[n / 2]);
	ck_assert_msg(b >= want - 1 && b <= want + 1,
		      "histogram p50 bucket %d, measured %llu ns in bucket %d",
		      b, (unsigned long long)lat[n / 2], want);
	pbus_obs_snap_fini(&s);
	pbus_request_destroy(rq);
	msgpack_sbuffer_destroy(&sb);
	detach_all(obs, inst);
	pbus_mgr_close(m);
	pbus_config_destroy(cfg);
	free((void *)ctl);
}
END_TEST

/* ------------------------------------------------------------ runner */

/* Unchecked teardown (parent): remove what tests that died left behind. */
static void sweep(void)
{
	char prefix[64], path[PATH_MAX];
	struct dirent *de;
	DIR *d = opendir(PBUS_OBS_PIN_ROOT);

	snprintf(prefix, sizeof(prefix), "test_obs-%d-", (int)main_pid);
	while (d && (de = readdir(d)))
		if (!strncmp(de->d_name, prefix, strlen(prefix)))
			pbus_obs_unpin(de->d_name);
	if (d)
		closedir(d);
	d = opendir("/tmp");
	snprintf(prefix, sizeof(prefix), "pbus-obs-%d-", (int)main_pid);
	while (d && (de = readdir(d)))
		if (!strncmp(de->d_name, prefix, strlen(prefix))) {
			snprintf(path, sizeof(path), "/tmp/%s", de->d_name);
			rm_rf(path);
		}
	if (d)
		closedir(d);
}

/* Why the kernel cannot run these tests, or NULL. */
static const char *kernel_lacks(void)
{
	if (libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_KPROBE, NULL) <= 0 &&
	    errno == ENOSYS)
		return "no bpf() syscall (CONFIG_BPF_SYSCALL)";
	if (access("/sys/bus/event_source/devices/uprobe/type", F_OK))
		return "no uprobe PMU (CONFIG_UPROBE_EVENTS)";
	return NULL;
}

static Suite *obs_suite(int with_bpf)
{
	Suite *s = suite_create("obs");
	TCase *tc;

	tc = tcase_create("offline");
	tcase_add_unchecked_fixture(tc, NULL, sweep);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, bucket_bounds_round_trip);
	tcase_add_test(tc, names_parse_accepts_id_name_lists_only);
	tcase_add_test(tc,
		       admin_list_client_reads_plugin_names_from_the_gateway);
	tcase_add_test(tc, graph_renders_valid_png_files_from_rrd_history);
	suite_add_tcase(s, tc);
	if (!with_bpf)
		return s;

	tc = tcase_create("probes");
	tcase_add_unchecked_fixture(tc, NULL, sweep);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, detached_probes_ask_for_no_clock);
	tcase_add_test(tc,
		       batch_program_counts_every_call_by_plugin_hook_outcome);
	tcase_add_test(
		tc, per_call_program_counts_every_call_by_plugin_hook_outcome);
	tcase_add_test(
		tc, histogram_p50_is_within_one_bucket_of_the_measured_latency);
	tcase_add_test(tc, batch_fires_when_its_oldest_record_is_too_old);
	tcase_add_test(tc, thread_exit_fires_the_pending_batch);
	tcase_add_test(tc, lifecycle_chain_and_wait_probes_reach_their_maps);
	tcase_add_test(tc, restarted_loader_reuses_the_pinned_maps);
	suite_add_tcase(s, tc);

	tc = tcase_create("collector");
	tcase_add_unchecked_fixture(tc, NULL, sweep);
	tcase_set_timeout(tc, 90);
	tcase_add_test(tc, collector_process_counts_calls_and_writes_rrd);
	tcase_add_test(tc,
		       real_gateway_calls_are_counted_by_plugin_hook_and_outcome);
	tcase_add_test(tc, real_gateway_histogram_p50_matches_measured_latency);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	const char *why = kernel_lacks();
	SRunner *sr;
	int failed;

	main_pid = getpid();
	th_log_setup();
	libbpf_set_print(quiet_libbpf);
	if (why)
		printf("test_obs: SKIP the probes and collector cases: this "
		       "kernel has %s\n",
		       why);
	else if (geteuid() != 0)
		printf("test_obs: not root: loading BPF and mounting bpffs "
		       "will fail\n");
	sr = srunner_create(obs_suite(!why));
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
