// SPDX-License-Identifier: MIT
/*
 * Plugin manager lifecycle: build the registry from a loaded config, open
 * the bus, declare every plugin, and hand the agents to the supervisor
 * (bus/sup.c), which starts those that have a command, restarts them and
 * stops them again.
 *
 * The registry is built once: per hook and per phase, plugin indexes sorted
 * by priority (ascending, ties in file order). Legacy modes map to phases
 * the way the gateway mapped them onto CPEX (enforce -> sequential,
 * enforce_ignore_error -> sequential with on_error ignore, permissive ->
 * transform with on_error ignore, disabled -> not started).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "mgr_int.h"
#include "sup.h"

static int phase_of(int mode)
{
	switch (mode) {
	case PBUS_MODE_ENFORCE:
	case PBUS_MODE_ENFORCE_IGNORE_ERROR:
	case PBUS_MODE_SEQUENTIAL:
		return PH_SEQUENTIAL;
	case PBUS_MODE_PERMISSIVE:
	case PBUS_MODE_TRANSFORM:
		return PH_TRANSFORM;
	case PBUS_MODE_AUDIT:
		return PH_AUDIT;
	case PBUS_MODE_CONCURRENT:
		return PH_CONCURRENT;
	case PBUS_MODE_FIRE_AND_FORGET:
		return PH_FIRE_AND_FORGET;
	default:
		return PH_NONE;
	}
}

static int effective_on_error(const struct pbus_plugin_cfg *c)
{
	if (c->on_error_set)
		return c->on_error;
	if (c->mode == PBUS_MODE_ENFORCE_IGNORE_ERROR ||
	    c->mode == PBUS_MODE_PERMISSIVE)
		return PBUS_ON_ERROR_IGNORE;
	return c->on_error;
}

static int build_registry(struct pbus_mgr *m)
{
	for (int h = 0; h < PBUS_HOOK_COUNT; h++)
		for (int ph = 0; ph < PH_COUNT; ph++) {
			struct mgr_list *l = &m->reg[h][ph];

			l->ids = calloc(m->n ? m->n : 1, sizeof(*l->ids));
			if (!l->ids)
				return -ENOMEM;
			for (unsigned i = 0; i < m->n; i++) {
				const struct mgr_plugin *p = &m->pl[i];
				unsigned k;

				if (p->phase != ph || !(p->cfg->hooks & (1u << h)))
					continue;
				/* stable insertion by priority */
				k = l->n;
				while (k > 0 &&
				       m->pl[l->ids[k - 1]].cfg->priority >
					       p->cfg->priority) {
					l->ids[k] = l->ids[k - 1];
					k--;
				}
				l->ids[k] = i;
				l->n++;
			}
		}
	return 0;
}

int pbus_mgr_open(const struct pbus_config *cfg, const struct pbus_mgr_opts *o,
		  struct pbus_mgr **out)
{
	struct pbus_mgr_opts def = {0};
	struct pbus_bus_opts bo = {0};
	struct pbus_mgr *m;
	int ret;

	if (!cfg)
		return -EINVAL;
	if (!o)
		o = &def;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->cfg = cfg;
	m->n = cfg->n_plugins;
	m->max_payload = cfg->bus.max_payload ? cfg->bus.max_payload : 1000000;
	m->pl = calloc(m->n ? m->n : 1, sizeof(*m->pl));
	pthread_mutex_init(&m->ff_lock, NULL);
	pthread_cond_init(&m->ff_cond, NULL);
	if (!m->pl) {
		ret = -ENOMEM;
		goto out_free;
	}
	for (unsigned i = 0; i < m->n; i++) {
		struct mgr_plugin *p = &m->pl[i];
		const struct pbus_plugin_cfg *c = &cfg->plugins[i];
		uint64_t t = c->timeout_ms ? c->timeout_ms
					   : cfg->settings.plugin_timeout_ms;

		p->id = i;
		p->cfg = c;
		p->phase = phase_of(c->mode);
		p->on_error = effective_on_error(c);
		p->timeout_ns = (t ? t : 30000) * 1000000ull;
	}
	ret = build_registry(m);
	if (ret)
		goto out_free;

	bo.sock_path = o->sock_path ? o->sock_path : cfg->bus.socket_path;
	bo.sock_mode = cfg->bus.socket_mode;
	bo.allow_uids = cfg->bus.allowed_uids;
	bo.n_allow_uids = cfg->bus.n_allowed_uids;
	bo.max_payload = m->max_payload;
	/* a chain keeps the payload, contexts and each plugin's answer */
	bo.lane_size = 8 * m->max_payload;
	bo.lanes = cfg->bus.lanes;
	bo.ring_slots = cfg->bus.ring_slots;
	bo.max_spin_ns = cfg->bus.max_spin_ns;
	bo.agent_idle_spin_ns = cfg->bus.agent_idle_spin_ns;
	ret = pbus_bus_open(&bo, &m->bus);
	if (ret)
		goto out_free;
	/* peer ids follow config order, so a plugin's id is its index */
	for (unsigned i = 0; i < m->n; i++) {
		const struct pbus_plugin_cfg *c = &cfg->plugins[i];

		ret = pbus_bus_add_peer(m->bus, c->name, c->config,
					c->config_len, &m->pl[i].peer);
		if (ret)
			goto out_bus;
	}
	ret = -pthread_create(&m->reaper, NULL, pbus__ff_reaper, m);
	if (ret)
		goto out_bus;
	m->reaper_running = 1;
	ret = pbus__sup_open(m, o); /* starts the agents; nothing on failure */
	if (ret)
		goto out_bus;
	*out = m;
	return 0;
out_bus:
	if (m->reaper_running) {
		pthread_mutex_lock(&m->ff_lock);
		m->ff_stop = 1;
		pthread_cond_signal(&m->ff_cond);
		pthread_mutex_unlock(&m->ff_lock);
		pthread_join(m->reaper, NULL);
	}
	pbus_bus_close(m->bus);
out_free:
	for (int h = 0; h < PBUS_HOOK_COUNT; h++)
		for (int ph = 0; ph < PH_COUNT; ph++)
			free(m->reg[h][ph].ids);
	pthread_mutex_destroy(&m->ff_lock);
	pthread_cond_destroy(&m->ff_cond);
	free(m->pl);
	free(m);
	return ret;
}

void pbus_mgr_close(struct pbus_mgr *m)
{
	if (!m)
		return;
	if (m->reaper_running) {
		pthread_mutex_lock(&m->ff_lock);
		m->ff_stop = 1;
		pthread_cond_signal(&m->ff_cond);
		pthread_mutex_unlock(&m->ff_lock);
		pthread_join(m->reaper, NULL);
	}
	pbus__ff_free_all(m);
	pbus__sup_close(m); /* stops and reaps the agents */
	pbus_bus_close(m->bus);
	for (int h = 0; h < PBUS_HOOK_COUNT; h++)
		for (int ph = 0; ph < PH_COUNT; ph++)
			free(m->reg[h][ph].ids);
	pthread_mutex_destroy(&m->ff_lock);
	pthread_cond_destroy(&m->ff_cond);
	free(m->pl);
	free(m);
}

int pbus_mgr_wait_ready(struct pbus_mgr *m, int timeout_ms)
{
	uint64_t until = pbus__now_ns() + (uint64_t)timeout_ms * 1000000ull;

	for (unsigned i = 0; i < m->n; i++) {
		uint64_t now = pbus__now_ns();
		int left;

		if (m->pl[i].phase == PH_NONE)
			continue;
		left = now >= until ? 0 : (int)((until - now) / 1000000ull);
		if (pbus_peer_wait_up(m->pl[i].peer, left))
			return -ETIMEDOUT;
	}
	return 0;
}

int pbus_mgr_has_hooks(const struct pbus_mgr *m, int hook)
{
	if (hook < 0 || hook >= PBUS_HOOK_COUNT)
		return 0;
	for (int ph = 0; ph < PH_COUNT; ph++)
		if (m->reg[hook][ph].n)
			return 1;
	return 0;
}

struct pbus_bus *pbus_mgr_bus(struct pbus_mgr *m)
{
	return m->bus;
}

unsigned pbus_mgr_plugin_count(const struct pbus_mgr *m)
{
	return m->n;
}

const char *pbus_mgr_plugin_name(const struct pbus_mgr *m, unsigned id)
{
	return id < m->n ? m->pl[id].cfg->name : NULL;
}

int pbus_mgr_plugin_stats(const struct pbus_mgr *m, unsigned id,
			  struct pbus_plugin_stats *s)
{
	const struct mgr_plugin *p;

	if (id >= m->n)
		return -EINVAL;
	p = &m->pl[id];
	s->calls = atomic_load(&p->calls);
	s->violations = atomic_load(&p->violations);
	s->errors = atomic_load(&p->errors);
	s->timeouts = atomic_load(&p->timeouts);
	s->agent_down = atomic_load(&p->agent_down);
	s->modified = atomic_load(&p->modified);
	s->skipped = atomic_load(&p->skipped);
	s->dropped_fields = atomic_load(&p->dropped_fields);
	s->disabled = atomic_load(&p->rt_disabled);
	s->up = 0;
	s->pid = 0;
	s->epoch = 0;
	s->restarts = 0;
	s->circuit = PBUS_CIRCUIT_CLOSED;
	pbus__sup_stats(m, id, s);
	return 0;
}
