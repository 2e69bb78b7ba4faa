// SPDX-License-Identifier: MIT
/*
 * Plugin conditions, evaluated in the gateway so that a plugin that does not
 * apply costs no IPC. Semantics are the framework's R2 ones (PARITY.md 2.3):
 * a list of condition objects is OR'ed; inside one object every field that
 * is given must match (fail-closed: a field given but absent from the
 * request does not match); an empty list matches everything.
 *  - server_ids, tenant_ids: exact membership of the global context's value;
 *  - tools/prompts/resources/agents: only the key of the hook's family
 *    applies, an exact membership test on the payload's subject field
 *    (name, prompt_id, uri, agent_id); keys of other families are ignored;
 *  - user_patterns: substring of the user;
 *  - content_types: the content type's lower-case base type ("Text/Plain;
 *    charset=utf-8" -> "text/plain"); R1 never evaluated this key.
 */
#include <ctype.h>
#include <string.h>

#include "mgr_int.h"

static int in_set(const struct pbus_strv *v, const char *s, size_t n)
{
	for (unsigned i = 0; i < v->n; i++)
		if (strlen(v->v[i]) == n && !memcmp(v->v[i], s, n))
			return 1;
	return 0;
}

static int in_set_c(const struct pbus_strv *v, const char *s)
{
	return s && in_set(v, s, strlen(s));
}

static const struct pbus_strv *family(const struct pbus_condition *c,
				      int hook)
{
	const char *k = pbus_hook_condition_key(hook);

	if (!k)
		return NULL;
	if (!strcmp(k, "tools"))
		return &c->tools;
	if (!strcmp(k, "prompts"))
		return &c->prompts;
	if (!strcmp(k, "resources"))
		return &c->resources;
	return &c->agents;
}

/* Lower-case base type of @s into @out; 0 or -1 when too long. */
static int norm_into(const char *s, char *out, size_t cap)
{
	size_t n;

	while (*s == ' ' || *s == '\t')
		s++;
	n = strcspn(s, ";");
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	if (n >= cap)
		return -1;
	for (size_t i = 0; i < n; i++)
		out[i] = (char)tolower((unsigned char)s[i]);
	out[n] = 0;
	return 0;
}

static int ctype_match(const struct pbus_condition *c, const char *ctype)
{
	char have[256], want[256];

	if (!ctype || norm_into(ctype, have, sizeof(have)))
		return 0;
	for (unsigned i = 0; i < c->content_types.n; i++)
		if (!norm_into(c->content_types.v[i], want, sizeof(want)) &&
		    !strcmp(want, have))
			return 1;
	return 0;
}

static int one(const struct mgr_plugin *p, unsigned ci,
	       const struct pbus_request *rq, int hook, struct pbus_mp payload)
{
	const struct pbus_condition *c = &p->cfg->conds[ci];
	const struct pbus_strv *fam = family(c, hook);

	if (c->server_ids.n && !in_set_c(&c->server_ids, rq->server))
		return 0;
	if (c->tenant_ids.n && !in_set_c(&c->tenant_ids, rq->tenant))
		return 0;
	if (fam && fam->n) {
		struct pbus_mp v;
		const char *s;
		size_t n;

		if (pbus_mp_get(payload, pbus_hook_subject_field(hook), &v) ||
		    pbus_mp_str(v, &s, &n) || !in_set(fam, s, n))
			return 0;
	}
	if (c->user_patterns.n) {
		int hit = 0;

		if (!rq->user)
			return 0;
		for (unsigned i = 0; i < c->user_patterns.n && !hit; i++)
			hit = strstr(rq->user, c->user_patterns.v[i]) != NULL;
		if (!hit)
			return 0;
	}
	if (c->content_types.n && !ctype_match(c, rq->ctype))
		return 0;
	return 1;
}

int pbus__cond_match(const struct mgr_plugin *p, const struct pbus_request *rq,
		     int hook, struct pbus_mp payload)
{
	if (!p->cfg->n_conds)
		return 1;
	for (unsigned i = 0; i < p->cfg->n_conds; i++)
		if (one(p, i, rq, hook, payload))
			return 1;
	return 0;
}
