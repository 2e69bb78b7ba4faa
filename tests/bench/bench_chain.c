// SPDX-License-Identifier: MIT
/*
 * Plugin-chain benchmark (issue: plugin manager): chains of 1, 5, 10 and 20
 * passthrough plugins, each in its own agent, on a 1 KiB tool_pre_invoke
 * payload under continuous load; and a band of 4 plugins that each take
 * ~1 ms, run with parallel bands on and off. Also the hot 64 B round trip
 * through a one-plugin chain with no collector, the batch collector and the
 * per-call probe attached (issue: observability).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <pbus/pbus.h>

#include "bench.h"
#include "bench_obs.h"

static int open_chain(const char *bindir, unsigned n, const char *extra,
		      int parallel, int same_prio, struct pbus_config **cfg,
		      struct pbus_mgr **m)
{
	static char yaml[65536];
	struct pbus_mgr_opts o = {0};
	struct pbus_diag d = {0};
	char sock[108];
	size_t k;
	int ret;

	k = (size_t)snprintf(yaml, sizeof(yaml),
			     "plugin_settings:\n"
			     "  parallel_execution_within_band: %s\n"
			     "  plugin_timeout: 10\n"
			     "plugins:\n",
			     parallel ? "true" : "false");
	for (unsigned i = 0; i < n; i++)
		k += (size_t)snprintf(yaml + k, sizeof(yaml) - k,
				      "  - name: p%u\n"
				      "    kind: agent\n"
				      "    hooks: [tool_pre_invoke]\n"
				      "    priority: %u\n"
				      "    command: [%s/pbus-passthrough%s]\n",
				      i, same_prio ? 10 : 10 + i, bindir,
				      extra);
	ret = pbus_config_parse(yaml, k, "bench.yaml", &d, cfg);
	if (ret)
		return ret;
	snprintf(sock, sizeof(sock), "/tmp/pbus-bench-chain-%d.sock",
		 (int)getpid());
	o.sock_path = sock;
	ret = pbus_mgr_open(*cfg, &o, m);
	if (ret) {
		pbus_config_destroy(*cfg);
		return ret;
	}
	ret = pbus_mgr_wait_ready(*m, 10000);
	if (ret) {
		pbus_mgr_close(*m);
		pbus_config_destroy(*cfg);
	}
	return ret;
}

/* {name: "search", args: {q: "<size bytes>"}} */
static void payload(msgpack_sbuffer *sb, size_t size)
{
	msgpack_packer pk;
	char *q = malloc(size);

	memset(q, 'x', size);
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 2);
	pbus_mp_pack_cstr(&pk, "name");
	pbus_mp_pack_cstr(&pk, "search");
	pbus_mp_pack_cstr(&pk, "args");
	msgpack_pack_map(&pk, 1);
	pbus_mp_pack_cstr(&pk, "q");
	pbus_mp_pack_strn(&pk, q, size > 30 ? size - 30 : 1);
	free(q);
}

static int run_chains(struct pbus_mgr *m, const msgpack_sbuffer *sb,
		      size_t n, uint64_t *lat, struct bench_res *r)
{
	struct pbus_gctx g = {.request_id = "bench", .user = "alice"};
	struct pbus_request *rq;
	struct pbus_outcome out;
	uint64_t t0;
	int ret = pbus_request_create(m, &g, &rq);

	if (ret)
		return ret;
	for (size_t i = 0; i < n / 10; i++) /* warm-up */
		pbus_run(m, rq, PBUS_HOOK_TOOL_PRE_INVOKE, sb->data, sb->size,
			 &out);
	t0 = bench_now();
	for (size_t i = 0; i < n; i++) {
		uint64_t s = bench_now();

		ret = pbus_run(m, rq, PBUS_HOOK_TOOL_PRE_INVOKE, sb->data,
			       sb->size, &out);
		if (ret || !out.continue_processing) {
			ret = ret ? ret : -EIO;
			break;
		}
		lat[i] = bench_now() - s;
	}
	bench_stats(lat, ret ? 0 : n, bench_now() - t0, r);
	pbus_request_destroy(rq);
	pbus_mgr_flush_stats();
	return ret;
}

int bench_chain(FILE *out, const char *bindir, int quick)
{
	static const unsigned lens[] = {1, 5, 10, 20};
	size_t n = quick ? 3000 : 30000, nobs = quick ? 20000 : 200000;
	uint64_t *lat = calloc(nobs + n + 200, sizeof(*lat));
	struct bench_res r[4], band[2], obs[3];
	msgpack_sbuffer sb, small;
	struct pbus_config *cfg;
	struct pbus_mgr *m;
	int ret = 0;

	msgpack_sbuffer_init(&sb);
	msgpack_sbuffer_init(&small);
	payload(&sb, 1024);
	payload(&small, 64);
	memset(r, 0, sizeof(r));
	for (int i = 0; i < 4; i++) {
		ret = open_chain(bindir, lens[i], "", 0, 0, &cfg, &m);
		if (ret)
			goto out;
		run_chains(m, &sb, n / lens[i] + 200, lat, &r[i]);
		pbus_mgr_close(m);
		pbus_config_destroy(cfg);
	}
	for (int par = 0; par < 2; par++) {
		ret = open_chain(bindir, 4, ", --delay-us, 1000", par, 1, &cfg,
				 &m);
		if (ret)
			goto out;
		run_chains(m, &sb, quick ? 100 : 500, lat, &band[par]);
		pbus_mgr_close(m);
		pbus_config_destroy(cfg);
	}
	memset(obs, 0, sizeof(obs));
	ret = open_chain(bindir, 1, "", 0, 0, &cfg, &m);
	if (ret)
		goto out;
	for (int mode = 0; mode < 3; mode++) {
		struct pbus_obs *o = NULL;
		char err[256] = "";

		if (pbus_bench_obs_attach((enum pbus_bench_obs_mode)mode, &o,
					  err, sizeof(err))) {
			fprintf(out, "  (probe mode %d skipped: %s)\n", mode,
				err);
			continue;
		}
		run_chains(m, &small, nobs, lat, &obs[mode]);
		pbus_bench_obs_detach(o);
	}
	pbus_mgr_close(m);
	pbus_config_destroy(cfg);

	fprintf(out, "\nplugin chains: 1 KiB tool_pre_invoke payload, each "
		     "plugin a pbus-passthrough agent, continuous load\n");
	fprintf(out, "%-8s | %9s %9s %10s | %14s %14s\n", "plugins", "p50 us",
		"p99 us", "chains/s", "p50/plugin us", "added/plugin us");
	for (int i = 0; i < 4; i++) {
		double added = i ? (r[i].p50 - r[0].p50) / (lens[i] - 1)
				 : r[0].p50;

		fprintf(out, "%-8u | %9.2f %9.2f %10.0f | %14.2f %14.2f\n",
			lens[i], r[i].p50, r[i].p99, r[i].rate,
			r[i].p50 / lens[i], added);
	}
	fprintf(out, "\nband of 4 plugins of equal priority, ~1 ms each "
		     "(usleep in the agent)\n");
	fprintf(out, "  parallel_execution_within_band: false  p50 %8.2f ms  "
		     "p99 %8.2f ms\n",
		band[0].p50 / 1000, band[0].p99 / 1000);
	fprintf(out, "  parallel_execution_within_band: true   p50 %8.2f ms  "
		     "p99 %8.2f ms  (%.2fx faster)\n",
		band[1].p50 / 1000, band[1].p99 / 1000,
		band[1].p50 > 0 ? band[0].p50 / band[1].p50 : 0);
	fprintf(out, "\nprobe cost: 64 B payload, one-plugin chain\n");
	for (int mode = 0; mode < 3; mode++) {
		static const char *const nm[] = {"no collector (detached)",
						 "collector attached (batch)",
						 "per-call probe attached"};

		if (!obs[mode].n)
			continue;
		fprintf(out, "  %-28s p50 %7.2f us  p99 %7.2f us  %+6.1f%%\n",
			nm[mode], obs[mode].p50, obs[mode].p99,
			obs[0].p50 > 0 ? 100.0 * (obs[mode].p50 - obs[0].p50) /
						 obs[0].p50
				       : 0);
	}
	fprintf(out, "\ntargets: added per plugin at p50 <= 1 us: %s (%.2f us "
		     "at 20 plugins); band of 4 x 1 ms <= 1.3 ms with bands "
		     "on: %s (%.2f ms)\n",
		(r[3].p50 - r[0].p50) / 19 <= 1.0 ? "met" : "MISSED",
		(r[3].p50 - r[0].p50) / 19,
		band[1].p50 <= 1300 ? "met" : "MISSED", band[1].p50 / 1000);
out:
	if (ret)
		fprintf(stderr, "pbus-bench: chain benchmark: %s\n",
			strerror(-ret));
	msgpack_sbuffer_destroy(&sb);
	msgpack_sbuffer_destroy(&small);
	free(lat);
	return ret;
}
