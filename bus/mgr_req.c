// SPDX-License-Identifier: MIT
/*
 * Requests: the contexts of one MCP request, from its pre hook to its post
 * hook. The global context (request id, user, tenant, server, content type,
 * state, metadata) is kept here and encoded into the arena once per chain;
 * local contexts are kept per plugin and handed only to that plugin. All of
 * it is freed with the request (the framework's context tables simply died
 * with the request too; its cleanup timer was never wired).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mgr_int.h"

static const uint8_t empty_map = 0x80;

int pbus__buf_set(struct mgr_buf *b, const void *p, size_t n)
{
	if (n > b->cap) {
		size_t cap = n < 256 ? 256 : n;
		uint8_t *np = realloc(b->p, cap);

		if (!np)
			return -ENOMEM;
		b->p = np;
		b->cap = cap;
	}
	if (n)
		memcpy(b->p, p, n);
	b->len = n;
	return 0;
}

int pbus__buf_write(void *data, const char *buf, size_t n)
{
	struct mgr_buf *b = data;

	if (!n)
		return 0; /* b->p may be NULL: no pointer arithmetic on it */
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		uint8_t *np;

		while (cap < b->len + n)
			cap *= 2;
		np = realloc(b->p, cap);
		if (!np)
			return -1;
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, buf, n);
	b->len += n;
	return 0;
}

static void buf_free(struct mgr_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

int pbus_request_create(struct pbus_mgr *m, const struct pbus_gctx *g,
			struct pbus_request **out)
{
	struct pbus_request *rq;

	if (!m || !g || !g->request_id)
		return -EINVAL;
	if (g->content_type && strlen(g->content_type) > 200)
		return -EINVAL; /* the framework's limit */
	rq = calloc(1, sizeof(*rq));
	if (!rq)
		return -ENOMEM;
	rq->m = m;
	rq->local = calloc(m->n ? m->n : 1, sizeof(*rq->local));
	rq->rid = strdup(g->request_id);
	rq->user = dup_or_null(g->user);
	rq->tenant = dup_or_null(g->tenant_id);
	rq->server = dup_or_null(g->server_id);
	rq->ctype = dup_or_null(g->content_type);
	if (!rq->local || !rq->rid || (g->user && !rq->user) ||
	    (g->tenant_id && !rq->tenant) || (g->server_id && !rq->server) ||
	    (g->content_type && !rq->ctype) ||
	    pbus__buf_set(&rq->state, &empty_map, 1) ||
	    pbus__buf_set(&rq->gmeta, &empty_map, 1)) {
		pbus_request_destroy(rq);
		return -ENOMEM;
	}
	*out = rq;
	return 0;
}

void pbus_request_destroy(struct pbus_request *rq)
{
	if (!rq)
		return;
	if (rq->local)
		for (unsigned i = 0; i < (rq->m->n ? rq->m->n : 1); i++)
			buf_free(&rq->local[i]);
	free(rq->local);
	free(rq->rid);
	free(rq->user);
	free(rq->tenant);
	free(rq->server);
	free(rq->ctype);
	buf_free(&rq->state);
	buf_free(&rq->gmeta);
	buf_free(&rq->out_payload);
	buf_free(&rq->out_meta);
	buf_free(&rq->out_strs);
	buf_free(&rq->out_details);
	buf_free(&rq->out_headers);
	buf_free(&rq->out_vheaders);
	free(rq);
}

const void *pbus_request_state(const struct pbus_request *rq, size_t *len)
{
	*len = rq->state.len;
	return rq->state.p;
}

const void *pbus_request_local(const struct pbus_request *rq, unsigned plugin,
			       size_t *len)
{
	if (plugin >= rq->m->n || !rq->local[plugin].len) {
		*len = 0;
		return NULL;
	}
	*len = rq->local[plugin].len;
	return rq->local[plugin].p;
}

static void kv_str(msgpack_packer *pk, const char *k, const char *v)
{
	pbus_mp_pack_cstr(pk, k);
	if (v)
		pbus_mp_pack_cstr(pk, v);
	else
		msgpack_pack_nil(pk);
}

int pbus__gctx_pack(const struct pbus_request *rq, msgpack_packer *pk)
{
	msgpack_pack_map(pk, 7);
	kv_str(pk, "request_id", rq->rid);
	kv_str(pk, "user", rq->user);
	kv_str(pk, "tenant_id", rq->tenant);
	kv_str(pk, "server_id", rq->server);
	kv_str(pk, "content_type", rq->ctype);
	pbus_mp_pack_cstr(pk, "state");
	pk->callback(pk->data, (const char *)rq->state.p, rq->state.len);
	pbus_mp_pack_cstr(pk, "metadata");
	return pk->callback(pk->data, (const char *)rq->gmeta.p,
			    rq->gmeta.len);
}
