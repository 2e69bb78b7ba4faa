// SPDX-License-Identifier: MIT
/*
 * `pbus proxy -c FILE -- SERVER_CMD [ARGS...]`: an MCP gateway over stdio.
 * The client speaks newline-delimited JSON-RPC 2.0 on our stdin/stdout (the
 * MCP stdio transport); the server is our child, on two pipes. Messages are
 * relayed byte for byte except where a plugin chain has a say (mcp.h):
 * tools/call, prompts/get and resources/read go through their pre hook
 * before the server sees them and the server's result through the post
 * hook before the client does. A block or a plugin error turns into a
 * JSON-RPC error with the request's id, and the request never reaches the
 * server (pre) or its result never reaches the client (post).
 *
 * One thread, one poll() loop. Each direction has an input buffer (lines
 * may arrive in pieces) and an output queue; a side is read only while the
 * queue towards the other side is below HIGH_WATER, so a slow reader slows
 * its writer instead of growing memory. Requests waiting for their post
 * hook are kept by JSON-RPC id in a small hash table, with their
 * pbus_request (contexts live from pre to post hook).
 *
 * File descriptors: the protocol moves to close-on-exec descriptors at
 * start; fd 0 becomes /dev/null and fd 1 a copy of stderr, so agents the
 * manager starts (now or on restart) can never read or write the protocol.
 * Logs go to stderr only.
 *
 * Exit: when the client closes our stdin, the server's stdin is closed
 * and the proxy waits for the server (SIGTERM after 5 s, SIGKILL after
 * 10 s) and exits 0; when the server exits first, the proxy answers the
 * requests still pending with an error and exits with the server's status.
 */
#include "cmd.h"
#include "mcp.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pbus/json.h>
#include <pbus/mgr.h>

#define HIGH_WATER (16u << 20) /* bytes queued towards one side */
#define READ_CHUNK 65536
#define NBUCKETS 256
#define PENDING_ERROR (-32603)

/* ---------------------------------------------------------------- buffers */

struct buf {
	char *p;
	size_t len, off, cap; /* off: consumed (queue) */
};

static int buf_add(struct buf *b, const char *s, size_t n)
{
	if (b->off && b->off == b->len)
		b->off = b->len = 0;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		char *p;

		if (b->off) { /* compact first */
			memmove(b->p, b->p + b->off, b->len - b->off);
			b->len -= b->off;
			b->off = 0;
		}
		while (b->len + n > cap)
			cap *= 2;
		if (cap != b->cap) {
			p = realloc(b->p, cap);
			if (!p)
				return -ENOMEM;
			b->p = p;
			b->cap = cap;
		}
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	return 0;
}

static size_t buf_used(const struct buf *b)
{
	return b->len - b->off;
}

/* ---------------------------------------------------------------- state */

struct batch {
	json_t *errors;	  /* our error responses for its blocked members */
	unsigned waiting; /* members still to be answered by the server */
	struct batch *next;
};

struct pending {
	char *key; /* the id as compact JSON */
	int kind;  /* MCP_OTHER: a batch member without post hook */
	char *target;
	struct pbus_request *rq;
	struct batch *batch;
	struct pending *next;
};

struct proxy {
	struct pbus_mgr *m;
	const char *user, *tenant, *server;
	int verbose;
	int in_fd, out_fd;    /* client side */
	int to_srv, from_srv; /* server side */
	int sig_fd;	      /* read end of the signal pipe */
	pid_t pid;
	struct buf cin, sin; /* partial lines from client / server */
	struct buf to_client, to_server; /* output queues */
	bool client_eof, server_eof, to_srv_closed;
	struct pending *tab[NBUCKETS];
	unsigned npending;
	struct batch *batches;
	unsigned long seq; /* requests without usable ids */
};

static volatile sig_atomic_t got_signal;
static int sig_pipe = -1; /* write end: wakes poll() in any thread's signal */

static void on_signal(int sig)
{
	int e = errno;

	got_signal = sig;
	if (write(sig_pipe, "s", 1) < 0) {
		/* full: poll() is awake anyway */
	}
	errno = e;
}

#define LOG(p, ...)                                                            \
	do {                                                                   \
		if ((p)->verbose)                                              \
			fprintf(stderr, "pbus proxy: " __VA_ARGS__);           \
	} while (0)

static void usage(FILE *f)
{
	fprintf(f,
		"usage: pbus proxy -c FILE [options] -- SERVER_CMD [ARGS...]\n"
		"\n"
		"Run SERVER_CMD as an MCP server over stdio and stand between "
		"it and the client\n"
		"on our stdin/stdout, applying the plugins of FILE: "
		"tools/call, prompts/get and\n"
		"resources/read go through their pre hook on the way in and "
		"their post hook on\n"
		"the way back; a block becomes a JSON-RPC error with the "
		"violation's code.\n"
		"Everything else passes through untouched. Logs go to "
		"stderr.\n"
		"\n"
		"  -c, --config FILE     plugin config (see 'pbus check')\n"
		"  -u, --user USER       context user   (default $PBUS_USER)\n"
		"  -t, --tenant TENANT   context tenant (default "
		"$PBUS_TENANT)\n"
		"  -s, --server SERVER   context server (default "
		"$PBUS_SERVER)\n"
		"  -v, --verbose         log every decision and the library's "
		"messages\n"
		"  -h, --help            show this help\n"
		"\n"
		"Exit status: the server's (0 when the client closed stdin "
		"first), 1 failure,\n"
		"2 usage.\n");
}

/* ---------------------------------------------------------------- pending */

static unsigned hash(const char *s)
{
	unsigned h = 5381;

	while (*s)
		h = h * 33 + (unsigned char)*s++;
	return h % NBUCKETS;
}

static char *id_key(const json_t *id)
{
	return json_dumps(id, JSON_ENCODE_ANY | JSON_COMPACT);
}

static struct pending *pending_take(struct proxy *p, const json_t *id)
{
	char *key = id_key(id);
	struct pending **pp, *e;

	if (!key)
		return NULL;
	for (pp = &p->tab[hash(key)]; (e = *pp); pp = &e->next)
		if (!strcmp(e->key, key)) {
			*pp = e->next;
			p->npending--;
			break;
		}
	free(key);
	return e;
}

static void pending_free(struct pending *e)
{
	if (!e)
		return;
	pbus_request_destroy(e->rq);
	free(e->key);
	free(e->target);
	free(e);
}

static int pending_add(struct proxy *p, const json_t *id, int kind,
		       const char *target, struct pbus_request *rq,
		       struct batch *b)
{
	struct pending *e = calloc(1, sizeof(*e));
	unsigned h;

	if (!e)
		return -ENOMEM;
	pending_free(pending_take(p, id)); /* a reused id replaces */
	e->key = id_key(id);
	e->target = strdup(target ? target : "");
	if (!e->key || !e->target) {
		pending_free(e);
		return -ENOMEM;
	}
	e->kind = kind;
	e->rq = rq;
	e->batch = b;
	h = hash(e->key);
	e->next = p->tab[h];
	p->tab[h] = e;
	p->npending++;
	return 0;
}

/* ---------------------------------------------------------------- output */

/* Compact JSON text of @j plus '\n' onto @q (our writer: reals in their
 * shortest exact form, uint64 exact). */
static int queue_json(struct buf *q, const json_t *j)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct pbus_mp v;
	char *s = NULL;
	size_t n = 0;
	int ret;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	ret = pbus_json_pack(&pk, j);
	if (!ret)
		ret = pbus_mp_open(sb.data, sb.size, &v);
	if (!ret)
		ret = pbus_mp_to_json(v, PBUS_JSON_BIN_BASE64, &s, &n);
	msgpack_sbuffer_destroy(&sb);
	if (ret) {
		char *d = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);

		if (!d)
			return -ENOMEM;
		s = d;
		n = strlen(d);
	}
	ret = buf_add(q, s, n);
	if (!ret)
		ret = buf_add(q, "\n", 1);
	free(s);
	return ret;
}

static json_t *error_response(const json_t *id, json_t *error)
{
	json_t *r = json_object();

	json_object_set_new(r, "jsonrpc", json_string("2.0"));
	json_object_set(r, "id", id ? (json_t *)id : json_null());
	json_object_set_new(r, "error", error);
	return r;
}

/* ---------------------------------------------------------------- client */

enum { PASS, REWRITE, REPLY };

static void log_step(struct proxy *p, const char *what, const char *method,
		     const json_t *id, const char *target,
		     const struct mcp_step *st)
{
	char ids[64];

	if (!p->verbose || !st->runs)
		return;
	mcp_id_str(id, ids, sizeof(ids));
	switch (st->verdict) {
	case MCP_ALLOWED:
		LOG(p, "%s %s id=%s %s: allowed\n", what, method, ids, target);
		break;
	case MCP_MODIFIED:
		LOG(p, "%s %s id=%s %s: modified by %s\n", what, method, ids,
		    target, st->by);
		break;
	case MCP_BLOCKED:
		LOG(p, "%s %s id=%s %s: blocked by %s: %s\n", what, method, ids,
		    target, st->by, st->why);
		break;
	default:
		LOG(p, "%s %s id=%s %s: failed: %s\n", what, method, ids,
		    target, st->why);
	}
}

/*
 * One request or notification from the client. Returns PASS (forward the
 * original bytes), REWRITE (forward @msg as changed) or REPLY (*reply is
 * the error response for the client; nothing goes to the server).
 */
static int from_client(struct proxy *p, json_t *msg, struct batch *b,
		       json_t **reply)
{
	const char *method = json_string_value(json_object_get(msg, "method"));
	json_t *id = json_object_get(msg, "id"), *params;
	int kind = mcp_kind(method), post_hooks;
	struct pbus_gctx g = {0};
	struct pbus_request *rq;
	struct mcp_step st;
	char rid[128];

	if (!method)
		return PASS; /* a response to a server request */
	if (!strcmp(method, "notifications/cancelled")) {
		json_t *rid_j = json_object_get(json_object_get(msg, "params"),
						"requestId");

		pending_free(pending_take(p, rid_j));
		return PASS;
	}
	if (kind == MCP_OTHER || !id || json_is_null(id)) {
		/* a batch member the server will answer: the answer tells us
		 * which batch our own error responses join */
		if (b && id && !json_is_null(id) &&
		    pending_add(p, id, MCP_OTHER, NULL, NULL, b) == 0)
			b->waiting++;
		return PASS;
	}
	params = json_object_get(msg, "params");
	if (!json_is_object(params)) {
		params = json_object();
		json_object_set_new(msg, "params", params);
	}
	mcp_id_str(id, rid, sizeof(rid));
	g.request_id = rid;
	g.user = p->user;
	g.tenant_id = p->tenant;
	g.server_id = p->server;
	if (pbus_request_create(p->m, &g, &rq)) {
		*reply = error_response(
			id,
			mcp_error(PENDING_ERROR, "pbus: out of memory", NULL));
		return REPLY;
	}
	mcp_pre(p->m, rq, kind, params, NULL, &st);
	log_step(p, "request", method, id, mcp_target(kind, params), &st);
	if (st.verdict == MCP_BLOCKED || st.verdict == MCP_FAILED) {
		*reply = error_response(id, st.error);
		st.error = NULL;
		pbus_request_destroy(rq);
		return REPLY;
	}
	post_hooks = pbus_mgr_has_hooks(p->m, mcp_post_hook(kind));
	if (post_hooks || b) {
		if (pending_add(p, id, post_hooks ? kind : MCP_OTHER,
				mcp_target(kind, params),
				post_hooks ? rq : NULL, b) == 0) {
			if (b)
				b->waiting++;
			if (post_hooks)
				rq = NULL; /* the entry owns it */
		}
	}
	pbus_request_destroy(rq);
	mcp_step_fini(&st);
	return st.rewritten ? REWRITE : PASS;
}

static void client_batch(struct proxy *p, json_t *arr, const char *line,
			 size_t len)
{
	struct batch *b = calloc(1, sizeof(*b));
	json_t *fwd = json_array(), *reply;
	int changed = 0;

	if (!b || !fwd) {
		free(b);
		json_decref(fwd);
		buf_add(&p->to_server, line, len);
		return;
	}
	b->errors = json_array();
	for (size_t i = 0; i < json_array_size(arr); i++) {
		json_t *m = json_array_get(arr, i);

		reply = NULL;
		switch (json_is_object(m) ? from_client(p, m, b, &reply)
					  : PASS) {
		case REPLY:
			json_array_append_new(b->errors, reply);
			changed = 1;
			break;
		case REWRITE:
			changed = 1;
			/* fall through */
		default:
			json_array_append(fwd, m);
		}
	}
	if (!changed) {
		buf_add(&p->to_server, line, len);
	} else if (json_array_size(fwd)) {
		queue_json(&p->to_server, fwd);
	}
	json_decref(fwd);
	if (!json_array_size(b->errors) || !b->waiting) {
		/* nothing to merge: answer our part now (if any) */
		if (json_array_size(b->errors))
			queue_json(&p->to_client, b->errors);
		for (unsigned h = 0; h < NBUCKETS; h++)
			for (struct pending *e = p->tab[h]; e; e = e->next)
				if (e->batch == b)
					e->batch = NULL;
		json_decref(b->errors);
		free(b);
		return;
	}
	b->next = p->batches;
	p->batches = b;
}

static void client_line(struct proxy *p, const char *line, size_t len)
{
	json_t *msg, *reply = NULL;

	/* the fast path: nothing a plugin or the proxy cares about */
	if (!memmem(line, len, "tools/call", 10) &&
	    !memmem(line, len, "prompts/get", 11) &&
	    !memmem(line, len, "resources/read", 14) &&
	    !memmem(line, len, "notifications/cancelled", 23)) {
		buf_add(&p->to_server, line, len);
		return;
	}
	msg = json_loadb(line, len, JSON_ALLOW_NUL, NULL);
	if (json_is_array(msg)) {
		client_batch(p, msg, line, len);
	} else if (!json_is_object(msg)) {
		buf_add(&p->to_server, line, len); /* the server says why */
	} else {
		switch (from_client(p, msg, NULL, &reply)) {
		case PASS:
			buf_add(&p->to_server, line, len);
			break;
		case REWRITE:
			queue_json(&p->to_server, msg);
			break;
		case REPLY:
			queue_json(&p->to_client, reply);
			json_decref(reply);
		}
	}
	json_decref(msg);
}

/* ---------------------------------------------------------------- server */

/* One message from the server; returns PASS or REWRITE (@msg changed);
 * *bp gets the batch the message belongs to, if any. */
static int from_server(struct proxy *p, json_t *msg, struct batch **bp)
{
	json_t *id = json_object_get(msg, "id"), *res;
	struct pending *e;
	struct mcp_step st;
	int ret = PASS;

	if (json_object_get(msg, "method") || !id)
		return PASS; /* a server request or notification */
	e = pending_take(p, id);
	if (!e)
		return PASS;
	if (e->batch) {
		*bp = e->batch;
		e->batch->waiting--;
	}
	res = json_object_get(msg, "result");
	if (e->kind == MCP_OTHER || !json_is_object(res)) {
		pending_free(e);
		return PASS; /* errors from the server pass as they are */
	}
	mcp_post(p->m, e->rq, e->kind, e->target, res, &st);
	log_step(p, "result",
		 e->kind == MCP_TOOL	 ? "tools/call"
		 : e->kind == MCP_PROMPT ? "prompts/get"
					 : "resources/read",
		 id, e->target, &st);
	if (st.verdict == MCP_MODIFIED) {
		ret = st.rewritten ? REWRITE : PASS;
	} else if (st.verdict == MCP_BLOCKED || st.verdict == MCP_FAILED) {
		json_object_del(msg, "result");
		json_object_set_new(msg, "error", st.error);
		st.error = NULL;
		ret = REWRITE;
	}
	mcp_step_fini(&st);
	pending_free(e);
	return ret;
}

static void batch_done(struct proxy *p, struct batch *b, json_t *arr)
{
	struct batch **bb;

	if (b->waiting)
		return;
	json_array_extend(arr, b->errors);
	for (bb = &p->batches; *bb; bb = &(*bb)->next)
		if (*bb == b) {
			*bb = b->next;
			break;
		}
	json_decref(b->errors);
	free(b);
}

static void server_line(struct proxy *p, const char *line, size_t len)
{
	struct batch *b = NULL;
	json_t *msg;
	int changed = 0;

	if (!p->npending) { /* nothing waits for a post hook */
		buf_add(&p->to_client, line, len);
		return;
	}
	msg = json_loadb(line, len, JSON_ALLOW_NUL, NULL);
	if (json_is_object(msg)) {
		changed = from_server(p, msg, &b) == REWRITE;
	} else if (json_is_array(msg)) {
		for (size_t i = 0; i < json_array_size(msg); i++) {
			json_t *m = json_array_get(msg, i);

			if (json_is_object(m))
				changed |= from_server(p, m, &b) == REWRITE;
		}
		if (b && !b->waiting) {
			batch_done(p, b, msg);
			changed = 1;
		}
	}
	if (changed)
		queue_json(&p->to_client, msg);
	else
		buf_add(&p->to_client, line, len);
	json_decref(msg);
}

/* The server is gone: answer what it never will. */
static void answer_pending(struct proxy *p)
{
	for (unsigned h = 0; h < NBUCKETS; h++) {
		while (p->tab[h]) {
			struct pending *e = p->tab[h];
			json_t *id = json_loads(e->key, JSON_DECODE_ANY, NULL);
			json_t *r = error_response(
				id, mcp_error(PENDING_ERROR,
					      "pbus proxy: the MCP server "
					      "exited",
					      NULL));

			p->tab[h] = e->next;
			if (!e->batch)
				queue_json(&p->to_client, r);
			json_decref(r);
			json_decref(id);
			pending_free(e);
		}
	}
	p->npending = 0;
	while (p->batches) {
		struct batch *b = p->batches;

		p->batches = b->next;
		queue_json(&p->to_client, b->errors);
		json_decref(b->errors);
		free(b);
	}
}

/* ---------------------------------------------------------------- I/O */

/* Split complete lines out of @in and hand them (with their '\n') to @fn.
 * At EOF a last unterminated line goes too. */
static void lines(struct proxy *p, struct buf *in, bool eof,
		  void (*fn)(struct proxy *, const char *, size_t))
{
	char *s = in->p + in->off, *end = in->p + in->len, *nl;

	while (s < end && (nl = memchr(s, '\n', (size_t)(end - s)))) {
		fn(p, s, (size_t)(nl - s + 1));
		s = nl + 1;
	}
	if (eof && s < end) {
		fn(p, s, (size_t)(end - s));
		s = end;
	}
	in->off = (size_t)(s - in->p);
	if (in->off == in->len)
		in->off = in->len = 0;
}

/* Read what is there; 0 at EOF, 1 more may come, -errno. */
static int fill(int fd, struct buf *in)
{
	char chunk[READ_CHUNK];
	ssize_t n = read(fd, chunk, sizeof(chunk));

	if (n > 0)
		return buf_add(in, chunk, (size_t)n) ? -ENOMEM : 1;
	if (n == 0)
		return 0;
	return errno == EAGAIN || errno == EINTR ? 1 : -errno;
}

/* Write some of @q; -errno when the reader is gone. At most PIPE_BUF
 * bytes per call on a blocking fd (stdout), so poll()'s POLLOUT holds. */
static int flush(int fd, struct buf *q, bool blocking)
{
	size_t n = buf_used(q);
	ssize_t w;

	if (!n)
		return 0;
	if (blocking && n > PIPE_BUF)
		n = PIPE_BUF;
	w = write(fd, q->p + q->off, n);
	if (w < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	q->off += (size_t)w;
	if (q->off == q->len)
		q->off = q->len = 0;
	return 0;
}

static int spawn_server(struct proxy *p, char **argv)
{
	int in[2], out[2];

	if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC))
		return -errno;
	p->pid = fork();
	if (p->pid < 0)
		return -errno;
	if (p->pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		signal(SIGPIPE, SIG_DFL);
		execvp(argv[0], argv);
		fprintf(stderr, "pbus proxy: cannot run %s: %s\n", argv[0],
			strerror(errno));
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	p->to_srv = in[1];
	p->from_srv = out[0];
	fcntl(p->to_srv, F_SETFL, O_NONBLOCK);
	fcntl(p->from_srv, F_SETFL, O_NONBLOCK);
	return 0;
}

static int exit_code(int st)
{
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return PBUS_EXIT_FAIL;
}

/* Reap the server (blocking); its wait status. */
static int reap(struct proxy *p)
{
	int st = 0;

	while (waitpid(p->pid, &st, 0) < 0 && errno == EINTR)
		;
	return st;
}

static void close_to_server(struct proxy *p)
{
	if (p->to_srv_closed)
		return;
	close(p->to_srv);
	p->to_srv_closed = true;
	p->to_server.off = p->to_server.len = 0;
}

/*
 * The poll() loop. Returns the exit status: the server's when it ends
 * first, 0 when the client closed stdin first (or a signal stopped us)
 * and the server then exited or had to be killed.
 */
static int loop(struct proxy *p)
{
	uint64_t deadline = 0; /* server stdin closed: when to escalate */
	int escalated = 0;

	for (;;) {
		struct pollfd fds[5];
		nfds_t n = 0;
		int ci = -1, si = -1, co = -1, so = -1, wake, ret, timeout = -1;

		/* client gone and everything delivered: close the server's
		 * stdin (the MCP stdio shutdown) and give it time to exit */
		if ((p->client_eof && !buf_used(&p->to_server)) ||
		    (got_signal && !p->to_srv_closed)) {
			if (got_signal)
				fprintf(stderr,
					"pbus proxy: %s: stopping the server\n",
					strsignal(got_signal));
			close_to_server(p);
			if (!deadline)
				deadline = mcp_now_ns() +
					   (got_signal ? 1000000000ull
						       : 5000000000ull);
		}
		if (p->server_eof && !buf_used(&p->to_client)) {
			int st = reap(p);

			return p->client_eof || got_signal ? 0 : exit_code(st);
		}
		if (deadline) {
			uint64_t now = mcp_now_ns();

			if (now >= deadline) {
				kill(p->pid, escalated ? SIGKILL : SIGTERM);
				if (escalated++)
					fprintf(stderr,
						"pbus proxy: the server "
						"ignored SIGTERM; "
						"killed\n");
				deadline = now + 5000000000ull;
				now = mcp_now_ns();
			}
			timeout = (int)((deadline - now) / 1000000) + 1;
		}
		fds[n] = (struct pollfd){p->sig_fd, POLLIN, 0};
		wake = (int)n++;
		if (!p->client_eof && buf_used(&p->to_server) < HIGH_WATER) {
			fds[n] = (struct pollfd){p->in_fd, POLLIN, 0};
			ci = (int)n++;
		}
		if (!p->server_eof && buf_used(&p->to_client) < HIGH_WATER) {
			fds[n] = (struct pollfd){p->from_srv, POLLIN, 0};
			si = (int)n++;
		}
		if (buf_used(&p->to_client)) {
			fds[n] = (struct pollfd){p->out_fd, POLLOUT, 0};
			co = (int)n++;
		}
		if (buf_used(&p->to_server) && !p->to_srv_closed) {
			fds[n] = (struct pollfd){p->to_srv, POLLOUT, 0};
			so = (int)n++;
		}
		if (poll(fds, n, timeout) < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "pbus proxy: poll: %s\n",
				strerror(errno));
			return PBUS_EXIT_FAIL;
		}
		if (fds[wake].revents & POLLIN) {
			char c[16];

			while (read(p->sig_fd, c, sizeof(c)) > 0)
				;
		}
		if (co >= 0 && fds[co].revents &&
		    flush(p->out_fd, &p->to_client, true)) {
			/* the client is gone: as if it closed stdin */
			p->client_eof = true;
			p->to_client.off = p->to_client.len = 0;
		}
		if (so >= 0 && fds[so].revents &&
		    flush(p->to_srv, &p->to_server, false))
			close_to_server(p); /* the server stopped reading */
		if (ci >= 0 && fds[ci].revents) {
			ret = fill(p->in_fd, &p->cin);
			if (ret <= 0)
				p->client_eof = true;
			lines(p, &p->cin, p->client_eof, client_line);
		}
		if (si >= 0 && fds[si].revents) {
			ret = fill(p->from_srv, &p->sin);
			if (ret <= 0)
				p->server_eof = true;
			lines(p, &p->sin, p->server_eof, server_line);
			if (p->server_eof)
				answer_pending(p);
		}
	}
}

/* ---------------------------------------------------------------- main */

static const char *env_or(const char *v, const char *name)
{
	const char *e = getenv(name);

	return v ? v : (e && *e ? e : NULL);
}

static int log_verbose;

static void log_fn(enum pbus_log_level lvl, const char *msg, void *arg)
{
	if (lvl <= PBUS_LOG_WARN || log_verbose)
		pbus_log_stderr(lvl, msg, arg);
}

/* Move the protocol off fds 0 and 1 (see the top of the file). */
static int protect_stdio(struct proxy *p)
{
	int null;

	p->in_fd = fcntl(0, F_DUPFD_CLOEXEC, 3);
	p->out_fd = fcntl(1, F_DUPFD_CLOEXEC, 3);
	null = open("/dev/null", O_RDONLY);
	if (p->in_fd < 0 || p->out_fd < 0 || null < 0)
		return -errno;
	dup2(null, 0);
	dup2(2, 1);
	close(null);
	return 0;
}

int pbus_cmd_proxy(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"user", required_argument, NULL, 'u'},
		{"tenant", required_argument, NULL, 't'},
		{"server", required_argument, NULL, 's'},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct proxy p = {
		.in_fd = -1, .out_fd = -1, .to_srv = -1, .from_srv = -1};
	struct pbus_config *cfg = NULL;
	const char *config = NULL;
	struct sigaction sa = {0};
	int o, ret, rc;

	opterr = 0;
	optind = 1;
	while ((o = getopt_long(argc, argv, "+:c:u:t:s:vh", opts, NULL)) !=
	       -1) {
		switch (o) {
		case 'c':
			config = optarg;
			break;
		case 'u':
			p.user = optarg;
			break;
		case 't':
			p.tenant = optarg;
			break;
		case 's':
			p.server = optarg;
			break;
		case 'v':
			p.verbose = 1;
			break;
		case 'h':
			usage(stdout);
			return PBUS_EXIT_OK;
		case ':':
			fprintf(stderr, "pbus proxy: %s needs a value\n",
				argv[optind - 1]);
			return PBUS_EXIT_USAGE;
		default:
			fprintf(stderr,
				"pbus proxy: unknown option '%s'; see 'pbus "
				"proxy --help'\n",
				argv[optind - 1]);
			return PBUS_EXIT_USAGE;
		}
	}
	if (!config) {
		fprintf(stderr, "pbus proxy: no config file; use -c FILE\n");
		return PBUS_EXIT_USAGE;
	}
	if (optind >= argc) {
		fprintf(stderr, "pbus proxy: no server command; use "
				"'-- SERVER_CMD [ARGS...]'\n");
		return PBUS_EXIT_USAGE;
	}
	p.user = env_or(p.user, "PBUS_USER");
	p.tenant = env_or(p.tenant, "PBUS_TENANT");
	p.server = env_or(p.server, "PBUS_SERVER");
	log_verbose = p.verbose;
	pbus_set_log_fn(log_fn, NULL);
	signal(SIGPIPE, SIG_IGN);
	{
		int sp[2];

		if (pipe2(sp, O_CLOEXEC | O_NONBLOCK)) {
			fprintf(stderr, "pbus proxy: pipe: %s\n",
				strerror(errno));
			return PBUS_EXIT_FAIL;
		}
		p.sig_fd = sp[0];
		sig_pipe = sp[1];
	}
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);

	if (protect_stdio(&p)) {
		fprintf(stderr, "pbus proxy: %s\n", strerror(errno));
		return PBUS_EXIT_FAIL;
	}
	if (pbus_cmd_load_config(config, 1, &cfg, NULL))
		return PBUS_EXIT_FAIL;
	ret = pbus_mgr_open(cfg, NULL, &p.m);
	if (ret) {
		fprintf(stderr, "pbus proxy: cannot start the plugins: %s\n",
			strerror(-ret));
		pbus_config_destroy(cfg);
		return PBUS_EXIT_FAIL;
	}
	if (pbus_mgr_wait_ready(p.m, 10000))
		fprintf(stderr, "pbus proxy: warning: some agents did not "
				"attach within 10 s; their calls fail\n");
	ret = spawn_server(&p, argv + optind);
	if (ret) {
		fprintf(stderr, "pbus proxy: cannot start the server: %s\n",
			strerror(-ret));
		rc = PBUS_EXIT_FAIL;
	} else {
		LOG(&p, "serving %s (pid %d) with %u plugins\n", argv[optind],
		    (int)p.pid, pbus_mgr_plugin_count(p.m));
		rc = loop(&p);
	}
	p.server_eof = true;
	for (unsigned h = 0; h < NBUCKETS; h++)
		while (p.tab[h]) {
			struct pending *e = p.tab[h];

			p.tab[h] = e->next;
			pending_free(e);
		}
	while (p.batches) {
		struct batch *b = p.batches;

		p.batches = b->next;
		json_decref(b->errors);
		free(b);
	}
	/* what is still queued for the client, without waiting forever */
	fcntl(p.out_fd, F_SETFL, fcntl(p.out_fd, F_GETFL) | O_NONBLOCK);
	flush(p.out_fd, &p.to_client, false);
	pbus_mgr_close(p.m);
	pbus_config_destroy(cfg);
	free(p.cin.p);
	free(p.sin.p);
	free(p.to_client.p);
	free(p.to_server.p);
	return rc;
}
