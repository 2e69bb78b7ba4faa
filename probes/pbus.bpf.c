// SPDX-License-Identifier: MIT OR GPL-2.0-only
/*
 * pbus latency accounting in the kernel. USDT programs for libpbus's probes
 * (bus/obs.h) fill per-CPU maps that the collector reads and bpftool dumps
 * with BTF field names (layouts in pbus_obs.h):
 *
 *   handle_batch        pbus:batch   always-on: copies a batch of records out
 *                                    of the gateway in one read and accounts
 *                                    each
 *   handle_call         pbus:call    per call (ad hoc; one trap per call)
 *   handle_chain        pbus:chain   per chain, into `chains`
 *   handle_agent_up     pbus:agent_up / agent_down: lifecycle counts
 *   handle_agent_down
 *   handle_ring_full    pbus:ring_full / futex_sleep: waiting
 *   handle_futex_sleep
 *
 * Attach either handle_batch or handle_call, not both: both count the same
 * calls. All maps are per-CPU and updated with plain stores: a program runs
 * with migration disabled, so only two hits preempting each other on one CPU
 * could lose an update.
 *
 * Dual-licensed (MIT or GPL-2.0) so that the kernel lets the program use
 * GPL-only helpers such as bpf_probe_read_user().
 */
#include "vmlinux.h"

#include <bpf/bpf_helpers.h>
#include <bpf/usdt.bpf.h>

#include "pbus_obs.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* Plugin ids the maps hold (set by the loader before load, <= max). */
const volatile __u32 nr_plugins = PBUS_OBS_MAX_PLUGINS;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PBUS_OBS_SLOTS);
	__type(key, __u32);
	__type(value, struct pbus_obs_slot);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PBUS_OBS_MAX_PLUGINS);
	__type(key, __u32);
	__type(value, struct pbus_obs_events);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PBUS_OBS_HOOKS);
	__type(key, __u32);
	__type(value, struct pbus_obs_slot);
} chains SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pbus_obs_totals);
} totals SEC(".maps");

_Static_assert((PBUS_OBS_BATCH & (PBUS_OBS_BATCH - 1)) == 0,
	       "PBUS_OBS_BATCH must be a power of two");

/* Where a batch is copied to before it is walked. Not pinned. */
struct batch_buf {
	struct pbus_obs_rec rec[PBUS_OBS_BATCH];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct batch_buf);
} scratch SEC(".maps");

static __always_inline struct pbus_obs_totals *get_totals(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&totals, &zero);
}

static __always_inline void account_slot(struct pbus_obs_slot *s, __u32 outcome,
					 __u64 ns)
{
	__u32 b = pbus_obs_bucket(ns);

	s->calls++;
	if (outcome < PBUS_OBS_OUTCOMES)
		(&s->ok)[outcome]++;
	s->latency_sum_ns += ns;
	if (ns > s->latency_max_ns)
		s->latency_max_ns = ns;
	if (b < PBUS_OBS_BUCKETS)
		s->hist[b]++;
}

static __always_inline void account(struct pbus_obs_totals *t, __u32 plugin,
				    __u32 hook, __u32 outcome, __u64 ns)
{
	struct pbus_obs_slot *s;
	__u32 key;

	if (plugin >= nr_plugins || plugin >= PBUS_OBS_MAX_PLUGINS ||
	    hook >= PBUS_OBS_HOOKS) {
		t->bad_id++;
		return;
	}
	if (outcome >= PBUS_OBS_OUTCOMES)
		t->bad_outcome++;
	key = plugin * PBUS_OBS_HOOKS + hook;
	s = bpf_map_lookup_elem(&stats, &key);
	if (!s)
		return;
	account_slot(s, outcome, ns);
}

struct walk_ctx {
	struct pbus_obs_totals *t;
	struct batch_buf *buf;
	__u32 n;
};

static int walk_one(__u32 i, void *arg)
{
	struct walk_ctx *w = arg;
	struct pbus_obs_rec *r;

	if (i >= w->n)
		return 1;
	/* The mask, not the compare, is what the verifier trusts here. */
	r = &w->buf->rec[i & (PBUS_OBS_BATCH - 1)];
	account(w->t, r->plugin, r->hook, r->outcome, r->latency_ns);
	return 0;
}

/* n is taken as 64 bits so that clamp and use are one register. */
SEC("usdt")
int BPF_USDT(handle_batch, void *recs, __u64 n)
{
	struct pbus_obs_totals *t = get_totals();
	struct walk_ctx w;
	__u32 zero = 0;

	if (!t)
		return 0;
	t->batches++;
	w.t = t;
	w.buf = bpf_map_lookup_elem(&scratch, &zero);
	if (!w.buf)
		return 0;
	if (n > PBUS_OBS_BATCH) {
		t->truncated++;
		n = PBUS_OBS_BATCH;
	}
	if (!n)
		return 0;
	if (bpf_probe_read_user(w.buf->rec, n * sizeof(struct pbus_obs_rec),
				recs)) {
		t->read_errors++;
		return 0;
	}
	t->records += n;
	w.n = (__u32)n;
	bpf_loop((__u32)n, walk_one, &w, 0);
	return 0;
}

SEC("usdt")
int BPF_USDT(handle_call, __u32 plugin, __u32 hook, __u32 outcome, __u64 ns)
{
	struct pbus_obs_totals *t = get_totals();

	if (!t)
		return 0;
	t->calls++;
	account(t, plugin, hook, outcome, ns);
	return 0;
}

SEC("usdt")
int BPF_USDT(handle_chain, __u32 hook, __u32 n_plugins, __u32 outcome, __u64 ns)
{
	struct pbus_obs_totals *t = get_totals();
	struct pbus_obs_slot *s;

	if (!t)
		return 0;
	t->chains++;
	if (hook >= PBUS_OBS_HOOKS) {
		t->bad_id++;
		return 0;
	}
	s = bpf_map_lookup_elem(&chains, &hook);
	if (s)
		account_slot(s, outcome, ns);
	return 0;
}

static __always_inline struct pbus_obs_events *get_events(__u32 plugin)
{
	if (plugin >= nr_plugins || plugin >= PBUS_OBS_MAX_PLUGINS) {
		struct pbus_obs_totals *t = get_totals();

		if (t)
			t->bad_id++;
		return NULL;
	}
	return bpf_map_lookup_elem(&events, &plugin);
}

SEC("usdt")
int BPF_USDT(handle_agent_up, __u32 plugin, int pid, __u32 epoch)
{
	struct pbus_obs_events *e = get_events(plugin);

	if (e) {
		e->agent_up++;
		e->last_pid = (__u64)pid;
		e->last_epoch = epoch;
	}
	return 0;
}

SEC("usdt")
int BPF_USDT(handle_agent_down, __u32 plugin, int pid, __u32 epoch, int reason)
{
	struct pbus_obs_events *e = get_events(plugin);

	if (e)
		e->agent_down++;
	return 0;
}

SEC("usdt")
int BPF_USDT(handle_ring_full, __u32 plugin, __u64 ns)
{
	struct pbus_obs_events *e = get_events(plugin);

	if (e) {
		e->ring_full++;
		e->ring_full_ns += ns;
	}
	return 0;
}

SEC("usdt")
int BPF_USDT(handle_futex_sleep, __u32 plugin, __u64 ns)
{
	struct pbus_obs_events *e = get_events(plugin);

	if (e) {
		e->futex_sleeps++;
		e->futex_sleep_ns += ns;
	}
	return 0;
}
