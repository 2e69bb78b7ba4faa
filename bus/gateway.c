// SPDX-License-Identifier: MIT
/*
 * Gateway lifecycle and the control thread.
 *
 * The control thread owns every control connection and every attach/detach:
 * it accepts on the control socket (mode 0600 by default), checks the peer's
 * uid with SO_PEERCRED, reads the hello (magic, protocol and ABI versions,
 * plugin name, hooks), creates and seals a fresh channel memfd for the
 * connection, and hands it over with the arena fd through SCM_RIGHTS. When an
 * agent's socket reaches EOF (exit, crash, kill -9), its channel is killed at
 * once: in-flight calls fail with -ENOTCONN, and the mapping is dropped as
 * soon as no gateway thread holds a reference. Admin clients use the same
 * socket (PBUS_MSG_ADMIN).
 *
 * Supervision (bus/sup.c) hears of every attach and detach through
 * pbus__sup_peer_event(), called with the bus lock held, and asks the control
 * thread to drop a hung agent's connection with pbus__peer_drop(). A
 * connection struct closed during an epoll round is freed only at its end,
 * since a later event of the same round may still name it.
 *
 * Nothing here is on the request path.
 */
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "gw.h"

#define HELLO_TIMEOUT_NS (5ull * 1000000000ull)
#define DEFAULT_MAX_PAYLOAD 1000000u

enum { CONN_NEW = 0, CONN_AGENT, CONN_ADMIN };

struct pbus__conn {
	int fd;
	int kind;
	pid_t pid;
	uid_t uid;
	uint64_t t_open;
	struct pbus_peer *peer;
	struct pbus_chan *ch;
	struct pbus__conn *next;
};

static int tag_listen, tag_kick; /* epoll tags */

/* ---------------------------------------------------------------- helpers */

static size_t pow2_at_least(size_t v)
{
	size_t p = 1;

	while (p < v)
		p <<= 1;
	return p;
}

static size_t page_up(size_t v)
{
	return (v + 4095) & ~(size_t)4095;
}

static void kick(struct pbus_bus *b)
{
	uint64_t one = 1;

	if (write(b->evfd, &one, sizeof(one)) < 0) {
		/* counter saturated: the thread is awake anyway */
	}
}

/*
 * Close a connection. The struct is freed only at the end of the control
 * loop's round (free_closed()): a later event of the same epoll batch may
 * still point to it (a connection dropped on a kick, or replaced by a new
 * agent, whose EOF is in the same batch).
 */
static void conn_close(struct pbus_bus *b, struct pbus__conn *c)
{
	struct pbus__conn **pp;

	for (pp = &b->conns; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	epoll_ctl(b->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
	c->next = b->closed;
	b->closed = c;
}

static void free_closed(struct pbus_bus *b)
{
	while (b->closed) {
		struct pbus__conn *c = b->closed;

		b->closed = c->next;
		free(c);
	}
}

static int uid_allowed(const struct pbus_bus *b, uid_t uid)
{
	if (uid == b->uid)
		return 1;
	for (unsigned i = 0; i < b->o.n_allow_uids; i++)
		if (b->o.allow_uids[i] == uid)
			return 1;
	return 0;
}

static void send_reject(int fd, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void send_reject(int fd, int status, const char *fmt, ...)
{
	struct pbus_msg_welcome w;
	va_list ap;

	memset(&w, 0, sizeof(w));
	pbus__msg_hdr_init(&w.h, PBUS_MSG_REJECT, sizeof(w));
	w.status = status;
	va_start(ap, fmt);
	vsnprintf(w.reason, sizeof(w.reason), fmt, ap);
	va_end(ap);
	pbus__info("refusing agent: %s", w.reason);
	pbus__ctl_send(fd, &w, sizeof(w), NULL, 0);
}

/* ---------------------------------------------------------------- channels */

void pbus__chan_init_hdr(struct pbus_chan *ch, const struct pbus_bus *b)
{
	struct pbus_chan_hdr *h = ch->hdr;
	struct pbus_peer *p = ch->peer;

	h->magic = PBUS_MAGIC;
	h->abi = PBUS_ABI_VERSION;
	h->epoch = ch->epoch;
	h->req_slots = ch->req_mask + 1;
	h->req_off = PBUS_CHAN_HDR_SIZE;
	h->resp_off = page_up(PBUS_CHAN_HDR_SIZE +
			      (size_t)h->req_slots * sizeof(struct pbus_req_desc));
	h->resp_size = ch->resp_size;
	h->cfg_off = h->resp_off + h->resp_size;
	h->cfg_len = (uint32_t)p->cfg_len;
	h->idle_spin_ns = b->o.agent_idle_spin_ns;
	h->arena_size = b->arena.size;
	h->agent_state = PBUS_PEER_RUNNING;
	if (p->cfg_len)
		memcpy((uint8_t *)h + h->cfg_off, p->cfg, p->cfg_len);
}

/* A channel struct for a new connection: a recycled one, or a new one. */
static struct pbus_chan *chan_claim(struct pbus_peer *p)
{
	struct pbus_bus *b = p->bus;
	unsigned slots = b->o.ring_slots;

	for (unsigned i = 0; i < PBUS__CHAN_POOL; i++) {
		struct pbus_chan *ch = p->pool[i];

		if (!ch) {
			ch = calloc(1, sizeof(*ch));
			if (!ch)
				return NULL;
			ch->pend = aligned_alloc(64, slots * sizeof(*ch->pend));
			if (!ch->pend) {
				free(ch);
				return NULL;
			}
			ch->peer = p;
			ch->shm.fd = -1;
			atomic_store(&ch->refs, PBUS__REFS_LOCKED);
			p->pool[i] = ch;
			return ch;
		}
		if (atomic_load(&ch->refs) == PBUS__REFS_LOCKED && !ch->mapped)
			return ch;
	}
	return NULL;
}

/* Set up @ch (claimed, refs LOCKED) as a fresh connection. */
static int chan_setup(struct pbus_chan *ch)
{
	struct pbus_peer *p = ch->peer;
	struct pbus_bus *b = p->bus;
	unsigned slots = b->o.ring_slots;
	size_t size;
	int ret;

	ch->req_mask = slots - 1;
	ch->resp_size = b->o.resp_ring_size;
	ch->epoch = ++p->next_epoch;
	size = page_up(PBUS_CHAN_HDR_SIZE +
		       (size_t)slots * sizeof(struct pbus_req_desc)) +
	       ch->resp_size + page_up(p->cfg_len ? p->cfg_len : 1);
	ret = pbus__region_create("pbus-chan", size, PBUS__SEALS_FIXED,
				  &ch->shm);
	if (ret)
		return ret;
	ch->mapped = 1;
	ch->hdr = ch->shm.base;
	ch->dead_status = 0;
	atomic_store(&ch->dead, 0);
	atomic_store(&ch->poisoned, 0);
	ch->bad_at = 0;
	pbus__chan_init_hdr(ch, b);
	ch->req = (struct pbus_req_desc *)((uint8_t *)ch->shm.base +
					   ch->hdr->req_off);
	ch->resp = (uint8_t *)ch->shm.base + ch->hdr->resp_off;
	for (unsigned i = 0; i < slots; i++) {
		atomic_store(&ch->pend[i].state, PEND_FREE);
		atomic_store(&ch->pend[i].id, UINT64_MAX);
		ch->pend[i].answered = UINT64_MAX;
	}
	atomic_store(&ch->next_id, 0);
	ch->req_head_cache = 0;
	atomic_store(&ch->resp_head, 0);
	atomic_store(&ch->last_done, UINT64_MAX); /* "id -1": none yet */
	atomic_store(&ch->prod_lock, 0);
	atomic_store(&ch->cons_lock, 0);
	atomic_store(&ch->ewma_ns, 0);
	atomic_store(&ch->wake_ns[0], 0);
	atomic_store(&ch->wake_ns[1], 0);
	return 0;
}

static void chan_unmap(struct pbus_chan *ch)
{
	if (!ch->mapped)
		return;
	pbus__region_close(&ch->shm);
	ch->mapped = 0;
	ch->hdr = NULL;
}

/* Unmap dead channels nobody references any more. Control thread. */
static void sweep(struct pbus_bus *b)
{
	pthread_mutex_lock(&b->lock);
	for (unsigned i = 0; i < b->npeers; i++) {
		struct pbus_peer *p = b->peers[i];

		for (unsigned k = 0; k < PBUS__CHAN_POOL; k++) {
			struct pbus_chan *ch = p->pool[k];
			int32_t zero = 0;

			if (!ch || !ch->mapped || !atomic_load(&ch->dead))
				continue;
			if (atomic_compare_exchange_strong(
				    &ch->refs, &zero, PBUS__REFS_LOCKED))
				chan_unmap(ch);
		}
	}
	pthread_mutex_unlock(&b->lock);
}

/* Drop the agent connection @c: its calls fail with @status. @why is the
 * PBUS__EV_* the supervisor is told. */
static void detach(struct pbus_bus *b, struct pbus__conn *c, int status,
		   int why)
{
	struct pbus_chan *ch = c->ch;
	struct pbus_peer *p = c->peer;

	if (ch) {
		pthread_mutex_lock(&b->lock);
		if (atomic_load(&p->chan) == ch)
			atomic_store(&p->chan, NULL);
		__atomic_store_n(&p->pid, 0, __ATOMIC_RELAXED);
		if (b->sup)
			pbus__sup_peer_event(b->sup, p, why, c->pid, ch->epoch);
		pthread_mutex_unlock(&b->lock);
		pbus__chan_kill(ch, status);
		pbus__chan_put(ch); /* the connection's own reference */
		pbus__info("agent '%s' (pid %d, epoch %u) detached", p->name,
			   (int)c->pid, ch->epoch);
	}
	conn_close(b, c);
}

/* ---------------------------------------------------------------- attach */

static struct pbus__conn *conn_of_chan(struct pbus_bus *b,
				       struct pbus_chan *ch)
{
	for (struct pbus__conn *c = b->conns; c; c = c->next)
		if (c->ch == ch)
			return c;
	return NULL;
}

static void attach(struct pbus_bus *b, struct pbus__conn *c,
		   const struct pbus_msg_hello *m, ssize_t n)
{
	struct pbus_msg_welcome w;
	struct pbus_peer *p;
	struct pbus_chan *ch, *old;
	char name[PBUS_NAME_MAX];
	int fds[2], ret;

	if (n < (ssize_t)sizeof(struct pbus_msg_hdr) ||
	    m->h.magic != PBUS_MAGIC) {
		send_reject(c->fd, -EPROTO, "bad magic");
		goto out_close;
	}
	if (m->h.proto != PBUS_PROTO_VERSION || m->h.abi != PBUS_ABI_VERSION) {
		send_reject(c->fd, -EPROTO,
			    "version mismatch: gateway protocol %u ABI %u, "
			    "agent protocol %u ABI %u",
			    PBUS_PROTO_VERSION, PBUS_ABI_VERSION, m->h.proto,
			    m->h.abi);
		goto out_close;
	}
	if (n != (ssize_t)sizeof(*m) || m->h.len != sizeof(*m) ||
	    !memchr(m->name, 0, sizeof(m->name))) {
		send_reject(c->fd, -EPROTO, "malformed hello");
		goto out_close;
	}
	memcpy(name, m->name, sizeof(name));
	p = pbus_bus_find_peer(b, name);
	if (!p) {
		send_reject(c->fd, -ENOENT, "no plugin named '%s' here", name);
		goto out_close;
	}
	old = atomic_load(&p->chan);
	if (old) {
		/* The name is taken. Replace the holder only if it is gone. */
		struct pbus__conn *oc = conn_of_chan(b, old);
		struct pollfd pf = {.fd = oc ? oc->fd : -1, .events = POLLIN};

		if (oc && poll(&pf, 1, 0) == 1 &&
		    (pf.revents & (POLLHUP | POLLERR))) {
			detach(b, oc, -ENOTCONN, PBUS__EV_EOF);
		} else {
			send_reject(c->fd, -EEXIST,
				    "plugin '%s' already has an agent (pid %d)",
				    name, (int)p->pid);
			goto out_close;
		}
	}
	pthread_mutex_lock(&b->lock);
	ch = chan_claim(p);
	pthread_mutex_unlock(&b->lock);
	if (!ch) {
		send_reject(c->fd, -EBUSY, "too many connections in flight");
		goto out_close;
	}
	ret = chan_setup(ch);
	if (ret) {
		send_reject(c->fd, ret, "cannot create channel: %s",
			    strerror(-ret));
		goto out_close;
	}
	ch->sock = c->fd;
	ch->pid = c->pid;

	memset(&w, 0, sizeof(w));
	pbus__msg_hdr_init(&w.h, PBUS_MSG_WELCOME, sizeof(w));
	w.epoch = ch->epoch;
	w.chan_size = ch->shm.size;
	w.arena_size = b->arena.size;
	fds[0] = ch->shm.fd;
	fds[1] = b->arena.fd;
	ret = pbus__ctl_send(c->fd, &w, sizeof(w), fds, 2);
	if (ret) {
		chan_unmap(ch); /* refs still LOCKED: reusable */
		goto out_close;
	}
	c->kind = CONN_AGENT;
	c->peer = p;
	c->ch = ch;
	pthread_mutex_lock(&b->lock);
	/* read without the lock by pbus_peer_stats() and the supervisor */
	__atomic_store_n(&p->hooks, m->hooks, __ATOMIC_RELAXED);
	__atomic_store_n(&p->pid, c->pid, __ATOMIC_RELAXED);
	__atomic_store_n(&p->last_epoch, ch->epoch, __ATOMIC_RELAXED);
	__atomic_store_n(&p->t_attach, pbus__now_ns(), __ATOMIC_RELAXED);
	atomic_fetch_add(&p->attaches, 1);
	atomic_store(&ch->refs, 1); /* the connection's reference */
	atomic_store_explicit(&p->chan, ch, memory_order_release);
	if (b->sup)
		pbus__sup_peer_event(b->sup, p, PBUS__EV_ATTACH, c->pid,
				     ch->epoch);
	pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->lock);
	pbus__info("agent '%s' (pid %d) attached, epoch %u", p->name,
		   (int)c->pid, ch->epoch);
	return;
out_close:
	conn_close(b, c);
}

/* ---------------------------------------------------------------- admin */

static void pack_kv_u(msgpack_packer *pk, const char *k, uint64_t v)
{
	msgpack_pack_str_with_body(pk, k, strlen(k));
	msgpack_pack_uint64(pk, v);
}

static void pack_kv_s(msgpack_packer *pk, const char *k, const char *v)
{
	msgpack_pack_str_with_body(pk, k, strlen(k));
	msgpack_pack_str_with_body(pk, v, strlen(v));
}

static void admin(struct pbus_bus *b, struct pbus__conn *c,
		  const struct pbus_msg_admin *m, ssize_t n)
{
	struct pbus_msg_admin_reply r;
	msgpack_sbuffer sb;
	msgpack_packer pk;
	char *buf;
	int status = 0;

	msgpack_sbuffer_init(&sb);
	if (n != (ssize_t)sizeof(*m) || !memchr(m->name, 0, sizeof(m->name))) {
		status = -EPROTO;
	} else if (m->cmd == PBUS_ADMIN_LIST) {
		msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
		pthread_mutex_lock(&b->lock);
		msgpack_pack_array(&pk, b->npeers);
		for (unsigned i = 0; i < b->npeers; i++) {
			struct pbus_peer_stats s;
			struct pbus_peer *p = b->peers[i];
			struct pbus__peer_info inf = {0, "closed", NULL};
			uint64_t now = pbus__now_ns();

			pbus_peer_stats(p, &s);
			if (b->sup)
				pbus__sup_peer_info(b->sup, p, &inf);
			if (!inf.state)
				inf.state = s.up ? "up" : "down";
			msgpack_pack_map(&pk, 19);
			pack_kv_u(&pk, "id", p->id);
			msgpack_pack_str_with_body(&pk, "name", 4);
			msgpack_pack_str_with_body(&pk, p->name,
						   strlen(p->name));
			pack_kv_u(&pk, "hooks", s.hooks);
			msgpack_pack_str_with_body(&pk, "up", 2);
			if (s.up)
				msgpack_pack_true(&pk);
			else
				msgpack_pack_false(&pk);
			msgpack_pack_str_with_body(&pk, "pid", 3);
			msgpack_pack_int64(&pk, s.pid);
			pack_kv_u(&pk, "epoch", s.epoch);
			pack_kv_u(&pk, "attaches", s.attaches);
			pack_kv_u(&pk, "calls", s.calls);
			pack_kv_u(&pk, "completed", s.completed);
			pack_kv_u(&pk, "timeouts", s.timeouts);
			pack_kv_u(&pk, "agent_down", s.agent_down);
			pack_kv_u(&pk, "rejected", s.rejected);
			pack_kv_u(&pk, "rej_bad", s.rej_bad);
			pack_kv_u(&pk, "rej_stale", s.rej_stale);
			/* supervision */
			pack_kv_u(&pk, "restarts", inf.restarts);
			pack_kv_s(&pk, "circuit", inf.circuit);
			pack_kv_s(&pk, "state", inf.state);
			pack_kv_u(&pk, "errors", s.timeouts + s.agent_down);
			pack_kv_u(&pk, "uptime_ms",
				  s.up && now > p->t_attach
					  ? (now - p->t_attach) / 1000000u
					  : 0);
		}
		pthread_mutex_unlock(&b->lock);
	} else if (m->cmd == PBUS_ADMIN_RESTART) {
		struct pbus_peer *p = pbus_bus_find_peer(b, m->name);
		struct pbus_chan *ch = p ? atomic_load(&p->chan) : NULL;
		struct pbus__conn *oc = ch ? conn_of_chan(b, ch) : NULL;

		if (!p)
			status = -ENOENT;
		else if (!oc)
			status = -ENOTCONN;
		else
			detach(b, oc, -ENOTCONN, PBUS__EV_ADMIN);
	} else {
		status = -EOPNOTSUPP;
	}
	buf = malloc(sizeof(r) + sb.size);
	if (!buf) {
		msgpack_sbuffer_destroy(&sb);
		return;
	}
	memset(&r, 0, sizeof(r));
	pbus__msg_hdr_init(&r.h, PBUS_MSG_ADMIN_REPLY,
			   (uint32_t)(sizeof(r) + sb.size));
	r.status = status;
	r.body_len = (uint32_t)sb.size;
	memcpy(buf, &r, sizeof(r));
	if (sb.size)
		memcpy(buf + sizeof(r), sb.data, sb.size);
	pbus__ctl_send(c->fd, buf, sizeof(r) + sb.size, NULL, 0);
	free(buf);
	msgpack_sbuffer_destroy(&sb);
}

/* ---------------------------------------------------------------- thread */

static void accept_all(struct pbus_bus *b)
{
	for (;;) {
		struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP};
		struct pbus__conn *c;
		struct ucred cr;
		socklen_t sl = sizeof(cr);
		int fd = accept4(b->lfd, NULL, NULL,
				 SOCK_CLOEXEC | SOCK_NONBLOCK);

		if (fd < 0)
			return;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &sl) < 0 ||
		    !uid_allowed(b, cr.uid)) {
			char junk[sizeof(struct pbus_msg_hello)];

			send_reject(fd, -EACCES, "uid %d is not allowed",
				    (int)cr.uid);
			/* read what it sent already: closing on unread data
			 * would reset the connection and lose the REJECT */
			while (recv(fd, junk, sizeof(junk), MSG_DONTWAIT) > 0)
				;
			close(fd);
			continue;
		}
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->fd = fd;
		c->pid = cr.pid;
		c->uid = cr.uid;
		c->t_open = pbus__now_ns();
		ev.data.ptr = c;
		if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			close(fd);
			free(c);
			continue;
		}
		c->next = b->conns;
		b->conns = c;
	}
}

static void conn_event(struct pbus_bus *b, struct pbus__conn *c, uint32_t ev)
{
	union {
		struct pbus_msg_hdr h;
		struct pbus_msg_hello hello;
		struct pbus_msg_admin admin;
		char raw[512];
	} m;
	ssize_t n;

	if (c->fd < 0)
		return; /* closed earlier in this round */
	n = pbus__ctl_recv(c->fd, &m, sizeof(m), NULL, NULL, 0);
	if (n == -EAGAIN && !(ev & (EPOLLHUP | EPOLLERR)))
		return;
	if (n <= 0) {
		if (c->kind == CONN_AGENT)
			detach(b, c, -ENOTCONN, PBUS__EV_EOF);
		else
			conn_close(b, c);
		return;
	}
	if (c->kind == CONN_AGENT)
		return; /* agents say nothing after hello */
	if (n >= (ssize_t)sizeof(m.h) && m.h.type == PBUS_MSG_ADMIN &&
	    !pbus__msg_hdr_check(&m.h, (size_t)n)) {
		c->kind = CONN_ADMIN;
		admin(b, c, &m.admin, n);
		return;
	}
	if (c->kind == CONN_NEW &&
	    (n < (ssize_t)sizeof(m.h) || m.h.type == PBUS_MSG_HELLO)) {
		attach(b, c, &m.hello, n);
		return;
	}
	conn_close(b, c);
}

static void handle_kicks(struct pbus_bus *b)
{
	uint64_t v;

	if (read(b->evfd, &v, sizeof(v)) < 0) {
		/* EAGAIN: nothing pending */
	}
	for (unsigned i = 0; i < b->npeers; i++) {
		struct pbus_peer *p = b->peers[i];
		struct pbus_chan *ch;
		struct pbus__conn *oc;
		uint32_t want = atomic_exchange(&p->want_disconnect, 0);

		if (!want)
			continue;
		ch = atomic_load(&p->chan);
		if (ch && want != PBUS__DROP_ANY && ch->epoch != want)
			continue; /* that connection is gone already */
		oc = ch ? conn_of_chan(b, ch) : NULL;
		if (oc)
			detach(b, oc, -ENOTCONN, PBUS__EV_DROP);
	}
}

static void *ctl_main(void *arg)
{
	struct pbus_bus *b = arg;
	struct epoll_event evs[16];

	while (!atomic_load(&b->stopping)) {
		int n = epoll_wait(b->epfd, evs, 16, 100);

		for (int i = 0; i < n; i++) {
			void *tag = evs[i].data.ptr;

			if (tag == &tag_listen)
				accept_all(b);
			else if (tag == &tag_kick)
				handle_kicks(b);
			else
				conn_event(b, tag, evs[i].events);
		}
		/* drop connections that never said hello */
		for (struct pbus__conn *c = b->conns, *nx; c; c = nx) {
			nx = c->next;
			if (c->kind == CONN_NEW &&
			    pbus__now_ns() - c->t_open > HELLO_TIMEOUT_NS)
				conn_close(b, c);
		}
		free_closed(b);
		sweep(b);
	}
	return NULL;
}

/* ---------------------------------------------------------------- open */

static int listen_on(struct pbus_bus *b)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd, ret;

	if (strlen(b->sock_path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, b->sock_path);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	/* A leftover socket file: reuse it only if nobody answers there. */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 ||
	    errno == EAGAIN) {
		close(fd);
		return -EADDRINUSE;
	}
	if (errno == ECONNREFUSED)
		unlink(b->sock_path);
	close(fd);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	if (chmod(b->sock_path, b->o.sock_mode) < 0 || listen(fd, 64) < 0) {
		ret = -errno;
		close(fd);
		unlink(b->sock_path);
		return ret;
	}
	b->lfd = fd;
	return 0;
}

static int set_defaults(struct pbus_bus_opts *o)
{
	if (!o->sock_mode)
		o->sock_mode = 0600;
	if (!o->max_payload)
		o->max_payload = DEFAULT_MAX_PAYLOAD;
	if (o->max_payload > (64u << 20))
		return -EINVAL;
	if (!o->lanes)
		o->lanes = 64;
	if (!o->lane_size)
		o->lane_size = 4 * o->max_payload;
	if (o->lane_size < o->max_payload)
		return -EINVAL;
	if (!o->ring_slots)
		o->ring_slots = 256;
	if (o->ring_slots & (o->ring_slots - 1) || o->ring_slots > 65536)
		return -EINVAL;
	if (!o->resp_ring_size)
		o->resp_ring_size = 4 * o->max_payload;
	o->resp_ring_size = pow2_at_least(o->resp_ring_size);
	if (o->resp_ring_size < (256u << 10))
		o->resp_ring_size = 256u << 10;
	if (!o->max_spin_ns)
		o->max_spin_ns = 100000;
	if (!o->agent_idle_spin_ns)
		o->agent_idle_spin_ns = 50000;
	return 0;
}

int pbus_bus_open(const struct pbus_bus_opts *o, struct pbus_bus **out)
{
	struct epoll_event ev = {.events = EPOLLIN};
	struct pbus_bus *b;
	const char *env;
	int ret;

	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	if (o)
		b->o = *o;
	b->lfd = b->epfd = b->evfd = -1;
	b->arena.fd = -1;
	b->uid = getuid();
	ret = set_defaults(&b->o);
	if (ret)
		goto out_free;
	env = getenv("PBUS_SOCK");
	if (b->o.sock_path)
		snprintf(b->sock_path, sizeof(b->sock_path), "%s",
			 b->o.sock_path);
	else if (env && *env)
		snprintf(b->sock_path, sizeof(b->sock_path), "%s", env);
	else
		snprintf(b->sock_path, sizeof(b->sock_path),
			 "/tmp/pbus-%d.sock", (int)getpid());
	b->o.sock_path = b->sock_path;
	if (b->o.n_allow_uids) {
		unsigned *u = malloc(b->o.n_allow_uids * sizeof(*u));

		if (!u) {
			ret = -ENOMEM;
			goto out_free;
		}
		memcpy(u, o->allow_uids, b->o.n_allow_uids * sizeof(*u));
		b->o.allow_uids = u;
	}
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->cond, NULL);
	ret = pbus__arena_open(b);
	if (ret)
		goto out_sync;
	ret = listen_on(b);
	if (ret)
		goto out_arena;
	b->epfd = epoll_create1(EPOLL_CLOEXEC);
	b->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (b->epfd < 0 || b->evfd < 0) {
		ret = -errno;
		goto out_sock;
	}
	ev.data.ptr = &tag_listen;
	epoll_ctl(b->epfd, EPOLL_CTL_ADD, b->lfd, &ev);
	ev.data.ptr = &tag_kick;
	epoll_ctl(b->epfd, EPOLL_CTL_ADD, b->evfd, &ev);
	ret = -pthread_create(&b->ctl, NULL, ctl_main, b);
	if (ret)
		goto out_sock;
	b->ctl_running = 1;
	*out = b;
	return 0;
out_sock:
	if (b->epfd >= 0)
		close(b->epfd);
	if (b->evfd >= 0)
		close(b->evfd);
	close(b->lfd);
	unlink(b->sock_path);
out_arena:
	pbus__arena_close(b);
out_sync:
	pthread_mutex_destroy(&b->lock);
	pthread_cond_destroy(&b->cond);
	free((void *)b->o.allow_uids);
out_free:
	free(b);
	return ret;
}

void pbus_bus_close(struct pbus_bus *b)
{
	if (!b)
		return;
	if (b->ctl_running) {
		atomic_store(&b->stopping, 1);
		kick(b);
		pthread_join(b->ctl, NULL);
	}
	while (b->conns) {
		struct pbus__conn *c = b->conns;

		if (c->kind == CONN_AGENT)
			detach(b, c, -ENOTCONN, PBUS__EV_CLOSE);
		else
			conn_close(b, c);
	}
	free_closed(b);
	for (unsigned i = 0; i < b->npeers; i++) {
		struct pbus_peer *p = b->peers[i];

		for (unsigned k = 0; k < PBUS__CHAN_POOL; k++) {
			if (!p->pool[k])
				continue;
			chan_unmap(p->pool[k]);
			free(p->pool[k]->pend);
			free(p->pool[k]);
		}
		free(p->cfg);
		free(p);
	}
	free(b->peers);
	close(b->epfd);
	close(b->evfd);
	close(b->lfd);
	unlink(b->sock_path);
	pbus__arena_close(b);
	pthread_mutex_destroy(&b->lock);
	pthread_cond_destroy(&b->cond);
	free((void *)b->o.allow_uids);
	free(b);
}

const char *pbus_bus_sock_path(const struct pbus_bus *b)
{
	return b->sock_path;
}

/* ---------------------------------------------------------------- peers */

int pbus_bus_add_peer(struct pbus_bus *b, const char *name, const void *cfg,
		      size_t cfg_len, struct pbus_peer **out)
{
	struct pbus_peer *p;
	int ret = 0;

	if (!name || !*name || strlen(name) >= PBUS_NAME_MAX)
		return -EINVAL;
	if (cfg_len > (16u << 20))
		return -EMSGSIZE;
	pthread_mutex_lock(&b->lock);
	for (unsigned i = 0; i < b->npeers; i++)
		if (!strcmp(b->peers[i]->name, name)) {
			ret = -EEXIST;
			goto out;
		}
	if (b->npeers == b->cap_peers) {
		unsigned cap = b->cap_peers ? 2 * b->cap_peers : 8;
		struct pbus_peer **np = realloc(b->peers, cap * sizeof(*np));

		if (!np) {
			ret = -ENOMEM;
			goto out;
		}
		b->peers = np;
		b->cap_peers = cap;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		ret = -ENOMEM;
		goto out;
	}
	if (cfg_len) {
		p->cfg = malloc(cfg_len);
		if (!p->cfg) {
			free(p);
			ret = -ENOMEM;
			goto out;
		}
		memcpy(p->cfg, cfg, cfg_len);
		p->cfg_len = cfg_len;
	}
	p->bus = b;
	p->id = b->npeers;
	snprintf(p->name, sizeof(p->name), "%s", name);
	b->peers[b->npeers++] = p;
	*out = p;
out:
	pthread_mutex_unlock(&b->lock);
	return ret;
}

struct pbus_peer *pbus_bus_find_peer(struct pbus_bus *b, const char *name)
{
	struct pbus_peer *p = NULL;

	pthread_mutex_lock(&b->lock);
	for (unsigned i = 0; i < b->npeers; i++)
		if (!strcmp(b->peers[i]->name, name)) {
			p = b->peers[i];
			break;
		}
	pthread_mutex_unlock(&b->lock);
	return p;
}

int pbus_peer_wait_up(struct pbus_peer *p, int timeout_ms)
{
	struct pbus_bus *b = p->bus;
	struct timespec ts;
	int ret = 0;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&b->lock);
	while (!atomic_load(&p->chan) && ret == 0)
		ret = pthread_cond_timedwait(&b->cond, &b->lock, &ts);
	pthread_mutex_unlock(&b->lock);
	return atomic_load(&p->chan) ? 0 : -ETIMEDOUT;
}

int pbus_peer_is_up(const struct pbus_peer *p)
{
	struct pbus_chan *ch = atomic_load(&((struct pbus_peer *)p)->chan);

	return ch && !atomic_load(&ch->dead);
}

const char *pbus_peer_name(const struct pbus_peer *p)
{
	return p->name;
}

int pbus_peer_stats(const struct pbus_peer *cp, struct pbus_peer_stats *s)
{
	struct pbus_peer *p = (struct pbus_peer *)cp;

	memset(s, 0, sizeof(*s));
	s->calls = atomic_load(&p->calls);
	s->completed = atomic_load(&p->completed);
	s->timeouts = atomic_load(&p->timeouts);
	s->agent_down = atomic_load(&p->agent_down);
	s->rej_unknown = atomic_load(&p->rej_unknown);
	s->rej_stale = atomic_load(&p->rej_stale);
	s->rej_dup = atomic_load(&p->rej_dup);
	s->rej_bad = atomic_load(&p->rej_bad);
	s->rejected = s->rej_unknown + s->rej_stale + s->rej_dup + s->rej_bad;
	s->attaches = atomic_load(&p->attaches);
	s->epoch = __atomic_load_n(&p->last_epoch, __ATOMIC_RELAXED);
	s->pid = __atomic_load_n(&p->pid, __ATOMIC_RELAXED);
	s->hooks = __atomic_load_n(&p->hooks, __ATOMIC_RELAXED);
	s->up = (uint32_t)pbus_peer_is_up(p);
	return 0;
}

int pbus__peer_drop(struct pbus_peer *p, uint32_t epoch)
{
	if (!atomic_load(&p->chan))
		return -ENOTCONN;
	atomic_store(&p->want_disconnect, epoch ? epoch : PBUS__DROP_ANY);
	kick(p->bus);
	return 0;
}

int pbus_peer_disconnect(struct pbus_peer *p)
{
	return pbus__peer_drop(p, PBUS__DROP_ANY);
}
