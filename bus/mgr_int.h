/* SPDX-License-Identifier: MIT */
/*
 * Plugin manager internals (bus/mgr*.c). The registry is built once at open:
 * per hook and per phase, the plugin indexes in run order. Nothing in it
 * changes afterwards except the per-plugin run-time flags and counters,
 * which are atomics.
 */
#ifndef PBUS_MGR_INT_H
#define PBUS_MGR_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>

#include "pbus/bus.h"
#include "pbus/config.h"
#include "pbus/hooks.h"
#include "pbus/mgr.h"
#include "pbus/mp.h"

enum mgr_phase {
	PH_SEQUENTIAL = 0,
	PH_TRANSFORM,
	PH_AUDIT,
	PH_CONCURRENT,
	PH_FIRE_AND_FORGET,
	PH_COUNT,
	PH_NONE = -1, /* disabled */
};

struct mgr_plugin {
	unsigned id;             /* index in config order */
	const struct pbus_plugin_cfg *cfg;
	struct pbus_peer *peer;  /* NULL when disabled */
	int phase;               /* enum mgr_phase */
	int on_error;            /* effective enum pbus_on_error */
	uint64_t timeout_ns;

	_Atomic int rt_disabled;
	_Atomic uint64_t calls, violations, errors, timeouts, agent_down;
	_Atomic uint64_t modified, skipped, dropped_fields;
};

struct mgr_list {
	unsigned *ids;
	unsigned n;
};

struct mgr_ff; /* fire-and-forget batch */

struct pbus_mgr {
	const struct pbus_config *cfg;
	struct pbus_bus *bus;
	struct mgr_plugin *pl;
	unsigned n;
	struct mgr_list reg[PBUS_HOOK_COUNT][PH_COUNT];
	size_t max_payload;

	/* fire-and-forget reaper */
	pthread_t reaper;
	int reaper_running;
	pthread_mutex_t ff_lock;
	pthread_cond_t ff_cond;
	struct mgr_ff *ff_head, *ff_tail;
	int ff_stop;
	_Atomic uint64_t ff_dropped;
};

struct mgr_buf {
	uint8_t *p;
	size_t len, cap;
};

struct pbus_request {
	struct pbus_mgr *m;
	char *rid, *user, *tenant, *server, *ctype;
	struct mgr_buf state;     /* global context state map */
	struct mgr_buf gmeta;     /* global context metadata map */
	struct mgr_buf *local;    /* per plugin: {"state", "metadata"} or empty */
	/* the last outcome */
	struct mgr_buf out_payload, out_meta, out_strs, out_details;
	struct mgr_buf out_headers, out_vheaders;
	struct pbus_violation viol;
};

/* mgr_req.c */
int pbus__buf_set(struct mgr_buf *b, const void *p, size_t n);
int pbus__buf_write(void *data, const char *buf, size_t n); /* packer cb */
int pbus__gctx_pack(const struct pbus_request *rq, msgpack_packer *pk);

/* mgr_cond.c */
int pbus__cond_match(const struct mgr_plugin *p, const struct pbus_request *rq,
		     int hook, struct pbus_mp payload);

/* mgr_run.c */
void *pbus__ff_reaper(void *arg);
void pbus__ff_free_all(struct pbus_mgr *m);

#endif
