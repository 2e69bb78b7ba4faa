// SPDX-License-Identifier: MIT
/*
 * Agent side of the bus: connect and hello, map the regions, and serve the
 * request ring from one thread.
 *
 * Loop: take every committed request descriptor, run its handler with
 * read-only views of the payload and contexts, write the answer straight into
 * the response ring (a frame reserved before the handler runs; a body that
 * outgrows the contiguous space moves to a private buffer and is copied in
 * at commit), then publish the batch: release-store the response tail and the
 * request head, one fence, and a FUTEX_WAKE only for a gateway that announced
 * itself as a sleeper.
 *
 * Idle: poll the ring for idle_spin_ns unless the last request came from a
 * gateway thread on this CPU (polling would only keep it off the CPU), then
 * sleep on the request doorbell: with no deadline for an agent its gateway
 * spawned (it is told of everything, see sleep_deadline()), else waking at
 * least every heartbeat to refresh the heartbeat word and notice a gateway
 * that went away. An agent whose
 * requests come further apart than that poll (a long chain, a paced caller)
 * sleeps at once instead, on its caller's CPU (see place()).
 *
 * The agent trusts the gateway's layout but still bounds-checks every
 * descriptor against the arena, so a bad descriptor costs an error answer,
 * never a crash.
 *
 * Gateway exit: an agent the gateway spawned ($PBUS_SPAWNED=1) sets
 * PR_SET_PDEATHSIG to SIGTERM when its parent is the gateway process
 * ($PBUS_GATEWAY_PID), so it leaves even after a kill -9 of the gateway; every
 * agent also notices the control socket's EOF within a heartbeat. With the
 * `reconnect` option, an external agent then connects again with back-off
 * (sleeping, never spinning) until a gateway serves it or it is stopped.
 */
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "pbus/agent.h"
#include "pbus/hooks.h"
#include "gw.h"
#include "obs.h"

#define BATCH 32
#define RESERVE_PREF 4096u /* wrap early rather than start a frame with less */
#define RECONNECT_FIRST_MS 100u
#define RECONNECT_MAX_MS 2000u

struct pbus_call {
	struct pbus_agent *a;
	struct pbus_req_desc d; /* local copy of the descriptor */
	uint64_t id;            /* request id (d.seq - 1) */
	const uint8_t *payload, *gctx, *lctx;
	/* response under construction */
	uint64_t frame_off;     /* ring offset of the reserved frame */
	uint8_t *body;          /* ring body or a->ovf */
	size_t cap, len;
	int in_ring;
	int err;
	uint32_t flags;
	uint32_t nkeys;
	msgpack_packer pk;
};

struct pbus_agent {
	char name[PBUS_NAME_MAX];
	char sock_path[108];
	int connect_timeout_ms;
	unsigned heartbeat_ms;
	unsigned idle_spin_ns;
	int no_signals;
	int reconnect;          /* reconnect with back-off (external agents) */
	int spawned;            /* started by a gateway ($PBUS_SPAWNED=1) */
	int orphan;             /* that gateway was gone before we started */
	void *cfg_copy;         /* private copy of the first config received */
	size_t cfg_copy_len;
	int have_cfg;
	struct {
		pbus_handler_fn *fn;
		void *arg;
	} h[PBUS_HOOK_COUNT];

	int sock;
	struct pbus__region chan, arena;
	struct pbus_chan_hdr *hdr;
	struct pbus_req_desc *req;
	uint32_t req_mask;
	uint8_t *resp;
	uint64_t resp_size;
	const uint8_t *cfg;
	size_t cfg_len;
	uint32_t epoch;

	uint64_t req_head;      /* private copies of our indices */
	uint64_t resp_tail;
	uint64_t resp_head_cache;
	_Atomic int stop;
	int gone;               /* gateway went away */
	int last_cpu;           /* CPU of the last request's sender */
	unsigned same_caller;   /* requests in a row from last_cpu (capped) */
	int follow_cpu;         /* CPU we are pinned to, -1: not pinned */
	int far;                /* requests come far apart, see place() */
	int guarded;            /* PR_SET_PDEATHSIG on our gateway's exit */
	unsigned far_waits;     /* waits since far was last re-learned */
	unsigned untimed;       /* waits not timed in a row, see wait_request() */
	int ncpus;
	unsigned short_sleeps;  /* see note_wake() */
	uint64_t migrated_at, migrations;
	uint64_t gap_ewma;      /* idle time between requests, learned */
	uint64_t handled;       /* published to the header when idle */
	int mycpu;

	uint8_t *last_frame;    /* the last frame committed */
	uint8_t *ovf;           /* overflow body buffer */
	size_t ovf_cap;
	struct pbus_call call;
	cpu_set_t affinity;     /* our affinity when not pinned (cold) */
};

/* Requests in a row from one caller CPU before we follow it (place()). */
#define FOLLOW_AFTER 4

static volatile sig_atomic_t sig_stop;
/* the request doorbell of the connection whose handlers are installed */
static struct pbus_chan_hdr *volatile sig_hdr;

static void on_signal(int sig)
{
	struct pbus_chan_hdr *h = sig_hdr;
	int saved = errno;

	(void)sig;
	sig_stop = 1;
	/* An agent may sleep with no deadline (wait_request()): it must not
	 * miss this, whichever thread the signal reached and whenever. Move
	 * the doorbell, so that a wait about to start returns at once, and
	 * wake a wait in progress. */
	if (h) {
		__atomic_fetch_add(&h->req_data.seq, 1, __ATOMIC_SEQ_CST);
		pbus__futex_wake(&h->req_data.seq, INT_MAX);
	}
	errno = saved;
}

static int env_is_1(const char *name)
{
	const char *v = getenv(name);

	return v && !strcmp(v, "1");
}

/*
 * A spawned agent whose parent is the gateway process asks for SIGTERM when
 * that parent dies, then checks the parent again (it may have died before
 * the prctl). Started through a wrapper, the parent is not the gateway and
 * only the socket's EOF tells.
 */
static void watch_gateway_process(struct pbus_agent *a)
{
	const char *s = getenv("PBUS_GATEWAY_PID");
	long gw = s ? strtol(s, NULL, 10) : 0;

	if (gw <= 0 || getppid() != (pid_t)gw)
		return;
	if (prctl(PR_SET_PDEATHSIG, SIGTERM))
		return;
	if (getppid() != (pid_t)gw)
		a->orphan = 1;
	else
		a->guarded = 1;
}

/* ---------------------------------------------------------------- setup */

int pbus_agent_create(const struct pbus_agent_opts *o, struct pbus_agent **out)
{
	struct pbus_agent_opts def = {0};
	struct pbus_agent *a;
	const char *name, *sock;

	if (!o)
		o = &def;
	name = o->name ? o->name : getenv("PBUS_PLUGIN");
	sock = o->sock_path ? o->sock_path : getenv("PBUS_SOCK");
	if (!name || !*name || strlen(name) >= PBUS_NAME_MAX)
		return -EINVAL;
	if (!sock || !*sock || strlen(sock) >= 108)
		return -EINVAL;
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	strcpy(a->name, name);
	strcpy(a->sock_path, sock);
	a->connect_timeout_ms = o->connect_timeout_ms ? o->connect_timeout_ms
						      : 5000;
	a->heartbeat_ms = o->heartbeat_ms ? o->heartbeat_ms : 1000;
	a->idle_spin_ns = o->idle_spin_ns;
	a->no_signals = o->no_signals;
	a->reconnect = o->reconnect || env_is_1("PBUS_RECONNECT");
	if (env_is_1("PBUS_SPAWNED")) {
		a->spawned = 1;
		a->reconnect = 0;
		watch_gateway_process(a);
	}
	a->sock = -1;
	a->chan.fd = a->arena.fd = -1;
	a->last_cpu = -1;
	a->follow_cpu = -1;
	a->call.a = a;
	*out = a;
	return 0;
}

void pbus_agent_destroy(struct pbus_agent *a)
{
	if (!a)
		return;
	if (a->hdr)
		__atomic_store_n(&a->hdr->agent_state, PBUS_PEER_GONE,
				 __ATOMIC_RELEASE);
	pbus__region_close(&a->chan);
	pbus__region_close(&a->arena);
	if (a->sock >= 0)
		close(a->sock);
	free(a->ovf);
	free(a->cfg_copy);
	free(a);
}

int pbus_agent_on(struct pbus_agent *a, int hook, pbus_handler_fn *fn,
		  void *arg)
{
	if (hook < 0 || hook >= PBUS_HOOK_COUNT || !fn || a->hdr)
		return -EINVAL;
	a->h[hook].fn = fn;
	a->h[hook].arg = arg;
	return 0;
}

/* Connect to the control socket, retrying while it is absent or refused
 * until the connect timeout (@once: a single attempt). */
static int dial(struct pbus_agent *a, int once)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	uint64_t until = once ? 0
			      : pbus__now_ns() + (uint64_t)a->connect_timeout_ms *
							 1000000ull;
	int fd, ret;

	strcpy(sa.sun_path, a->sock_path);
	for (;;) {
		fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -errno;
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return fd;
		ret = -errno;
		close(fd);
		if ((ret != -ENOENT && ret != -ECONNREFUSED) ||
		    pbus__now_ns() >= until)
			return ret;
		usleep(10000);
	}
}

static int check_regions(struct pbus_agent *a, const struct pbus_msg_welcome *w)
{
	struct pbus_chan_hdr *h = a->chan.base;
	const struct pbus_arena_hdr *ah = a->arena.base;
	uint64_t csz = a->chan.size;

	if (h->magic != PBUS_MAGIC || h->abi != PBUS_ABI_VERSION ||
	    ah->magic != PBUS_ARENA_MAGIC || ah->abi != PBUS_ABI_VERSION)
		return -EPROTO;
	if (h->epoch != w->epoch || !h->req_slots ||
	    h->req_slots & (h->req_slots - 1) || !h->resp_size ||
	    h->resp_size & (h->resp_size - 1))
		return -EPROTO;
	if (h->req_off % PBUS_REQ_SLOT_SIZE ||
	    h->req_off + (uint64_t)h->req_slots * PBUS_REQ_SLOT_SIZE > csz ||
	    h->resp_off + h->resp_size > csz ||
	    h->cfg_off + h->cfg_len > csz || h->arena_size != a->arena.size)
		return -EPROTO;
	return 0;
}

/*
 * Keep the plugin's config in private memory, so that pointers an agent
 * took into it survive a reconnect (which unmaps the old channel). A later
 * connection with a different config keeps the first one, with a warning.
 */
static int keep_config(struct pbus_agent *a, const uint8_t *cfg, size_t len)
{
	if (a->have_cfg) {
		if (len != a->cfg_copy_len ||
		    (len && memcmp(cfg, a->cfg_copy, len)))
			pbus__warn("plugin '%s': the gateway sent a different "
				   "config; restart the agent to use it",
				   a->name);
		return 0;
	}
	if (len) {
		a->cfg_copy = malloc(len);
		if (!a->cfg_copy)
			return -ENOMEM;
		memcpy(a->cfg_copy, cfg, len);
	}
	a->cfg_copy_len = len;
	a->cfg = a->cfg_copy;
	a->cfg_len = len;
	a->have_cfg = 1;
	return 0;
}

static int connect_once(struct pbus_agent *a, int once)
{
	struct pbus_msg_hello m;
	struct pbus_msg_welcome w;
	int fds[2], nfds = 0, ret;
	ssize_t n;

	if (a->hdr)
		return -EISCONN;
	if (a->orphan)
		return -ENOTCONN; /* the gateway that started us is gone */
	ret = dial(a, once);
	if (ret < 0)
		return ret;
	a->sock = ret;
	memset(&m, 0, sizeof(m));
	pbus__msg_hdr_init(&m.h, PBUS_MSG_HELLO, sizeof(m));
	for (int i = 0; i < PBUS_HOOK_COUNT; i++)
		if (a->h[i].fn)
			m.hooks |= 1u << i;
	m.pid = (uint32_t)getpid();
	strcpy(m.name, a->name);
	ret = pbus__ctl_send(a->sock, &m, sizeof(m), NULL, 0);
	if (ret)
		goto out_close;
	n = pbus__ctl_recv(a->sock, &w, sizeof(w), fds, &nfds, 2);
	if (n < 0) {
		ret = (int)n;
		goto out_close;
	}
	if (n == 0) {
		ret = -ECONNRESET;
		goto out_fds;
	}
	if (pbus__msg_hdr_check(&w.h, (size_t)n) ||
	    (size_t)n != sizeof(w)) {
		ret = -EPROTO;
		goto out_fds;
	}
	if (w.h.type == PBUS_MSG_REJECT) {
		w.reason[sizeof(w.reason) - 1] = 0;
		pbus__err("gateway refused plugin '%s': %s", a->name, w.reason);
		ret = w.status < 0 ? w.status : -ECONNREFUSED;
		goto out_fds;
	}
	if (w.h.type != PBUS_MSG_WELCOME || nfds != 2) {
		ret = -EPROTO;
		goto out_fds;
	}
	ret = pbus__region_map(fds[0], 1, PBUS_CHAN_HDR_SIZE, &a->chan);
	if (ret)
		goto out_fds;
	nfds = 1; /* fds[0] now belongs to a->chan */
	ret = pbus__region_map(fds[1], 0, PBUS_ARENA_HDR_SIZE, &a->arena);
	if (ret) {
		close(fds[1]);
		goto out_chan;
	}
	ret = check_regions(a, &w);
	if (ret)
		goto out_arena;
	a->hdr = a->chan.base;
	a->epoch = w.epoch;
	a->req = (struct pbus_req_desc *)((uint8_t *)a->chan.base +
					  a->hdr->req_off);
	a->req_mask = a->hdr->req_slots - 1;
	a->resp = (uint8_t *)a->chan.base + a->hdr->resp_off;
	a->resp_size = a->hdr->resp_size;
	ret = keep_config(a, (uint8_t *)a->chan.base + a->hdr->cfg_off,
			  a->hdr->cfg_len);
	if (ret) {
		a->hdr = NULL;
		goto out_arena;
	}
	if (!a->idle_spin_ns)
		a->idle_spin_ns = a->hdr->idle_spin_ns;
	a->req_head = a->resp_tail = a->resp_head_cache = 0;
	a->gone = 0;
	a->mycpu = sched_getcpu();
	a->ncpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (a->follow_cpu < 0 &&
	    sched_getaffinity(0, sizeof(a->affinity), &a->affinity))
		CPU_ZERO(&a->affinity); /* empty: never pin */
	__atomic_store_n(&a->hdr->agent_pid, (uint32_t)getpid(),
			 __ATOMIC_RELAXED);
	__atomic_store_n(&a->hdr->agent_cpu, (uint32_t)a->mycpu,
			 __ATOMIC_RELAXED);
	__atomic_store_n(&a->hdr->heartbeat_ns, pbus__now_ns(),
			 __ATOMIC_RELAXED);
	__atomic_store_n(&a->hdr->agent_state, PBUS_PEER_RUNNING,
			 __ATOMIC_RELEASE);
	if (!a->no_signals) {
		struct sigaction sa = {.sa_handler = on_signal};

		sigemptyset(&sa.sa_mask);
		sigaction(SIGTERM, &sa, NULL);
		sigaction(SIGINT, &sa, NULL);
		sig_hdr = a->hdr;
	}
	return 0;
out_arena:
	pbus__region_close(&a->arena);
out_chan:
	pbus__region_close(&a->chan);
	nfds = 0;
out_fds:
	for (int i = 0; i < nfds; i++)
		close(fds[i]);
out_close:
	close(a->sock);
	a->sock = -1;
	return ret;
}

int pbus_agent_connect(struct pbus_agent *a)
{
	return connect_once(a, 0);
}

/* Forget the current connection (reconnect mode). */
static void agent_disconnect(struct pbus_agent *a)
{
	if (a->hdr && sig_hdr == a->hdr)
		sig_hdr = NULL; /* before the mapping goes */
	if (a->hdr)
		__atomic_store_n(&a->hdr->agent_state, PBUS_PEER_GONE,
				 __ATOMIC_RELEASE);
	pbus__region_close(&a->chan);
	pbus__region_close(&a->arena);
	if (a->sock >= 0)
		close(a->sock);
	a->sock = -1;
	a->hdr = NULL;
	a->req = NULL;
	a->resp = NULL;
	a->gone = 0;
}

/* Sleep @ms unless a stop comes first (a signal cuts the sleep short). */
static void nap(struct pbus_agent *a, unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000,
			      .tv_nsec = (long)(ms % 1000) * 1000000L};

	if (!sig_stop && !atomic_load(&a->stop))
		nanosleep(&ts, NULL);
}

/*
 * Connect again with back-off: one attempt per round, @first_ms before the
 * first one, doubling to RECONNECT_MAX_MS. Returns 0 when connected or when
 * a stop was requested (a->hdr tells which).
 */
static int reconnect(struct pbus_agent *a, unsigned first_ms)
{
	unsigned delay = first_ms;
	int ret, logged = 0;

	for (;;) {
		if (delay)
			nap(a, delay);
		if (sig_stop || atomic_load(&a->stop))
			return 0;
		ret = connect_once(a, 1);
		if (!ret) {
			pbus__info("plugin '%s': reconnected, epoch %u",
				   a->name, a->epoch);
			return 0;
		}
		if (!logged++)
			pbus__info("plugin '%s': no gateway (%s); retrying "
				   "with back-off", a->name, strerror(-ret));
		delay = delay ? delay * 2 : RECONNECT_FIRST_MS;
		if (delay > RECONNECT_MAX_MS)
			delay = RECONNECT_MAX_MS;
	}
}

const void *pbus_agent_config(const struct pbus_agent *a, size_t *len)
{
	if (len)
		*len = a->cfg_len;
	return a->cfg;
}

const char *pbus_agent_name(const struct pbus_agent *a)
{
	return a->name;
}

uint32_t pbus_agent_epoch(const struct pbus_agent *a)
{
	return a->epoch;
}

void pbus_agent_stop(struct pbus_agent *a)
{
	atomic_store(&a->stop, 1);
	if (a->hdr) {
		__atomic_fetch_add(&a->hdr->req_data.seq, 1, __ATOMIC_RELEASE);
		pbus__futex_wake(&a->hdr->req_data.seq, INT_MAX);
	}
}

/* ---------------------------------------------------------------- events */

static inline PBUS_HOT void ev_notify(struct pbus_event *ev)
{
	if (__atomic_load_n(&ev->waiters, __ATOMIC_RELAXED)) {
		__atomic_fetch_add(&ev->seq, 1, __ATOMIC_RELEASE);
		pbus__futex_wake(&ev->seq, INT_MAX);
	}
}

static PBUS_HOT int must_leave(struct pbus_agent *a)
{
	return sig_stop ||
	       atomic_load_explicit(&a->stop, memory_order_relaxed) ||
	       a->gone || __atomic_load_n(&a->hdr->closing, __ATOMIC_RELAXED);
}

/* Is the gateway still there? Checks the control socket for EOF. */
static PBUS_COLD void check_gateway(struct pbus_agent *a)
{
	char c;
	ssize_t n = recv(a->sock, &c, 1, MSG_PEEK | MSG_DONTWAIT);

	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
		a->gone = 1;
}

/* ---------------------------------------------------------------- responses */

/* Publish everything written so far. The exchange is the full fence that
 * orders our stores before the read of the gateway's waiters flags. */
static PBUS_HOT void publish(struct pbus_agent *a)
{
	struct pbus_chan_hdr *h = a->hdr;

	__atomic_store_n(&h->req_head, a->req_head, __ATOMIC_RELEASE);
	__atomic_store_n(&h->resp_tail, a->resp_tail, __ATOMIC_RELEASE);
	atomic_thread_fence(memory_order_seq_cst);
	ev_notify(&h->resp_data);
	ev_notify(&h->req_space);
}

/* Zero the commit word of the frame slot at @pos (see abi.h). */
static inline void clear_len(struct pbus_agent *a, uint64_t pos)
{
	__atomic_store_n((uint32_t *)(a->resp + (pos & (a->resp_size - 1))), 0,
			 __ATOMIC_RELAXED);
}

/*
 * Make @need contiguous bytes available at the response tail, wrapping with
 * a PAD frame or waiting for the gateway to drain, always keeping a gap of
 * one frame slot before the gateway's head. Returns the contiguous bytes
 * available (>= need), or -errno when we must leave.
 */
static PBUS_COLD int64_t resp_space_slow(struct pbus_agent *a, uint64_t need,
					 uint64_t pref)
{
	uint64_t raw_head = a->resp_head_cache; /* as the gateway wrote it */
	struct pbus_chan_hdr *h = a->hdr;
	uint64_t size = a->resp_size;

	if (need > size)
		return -EMSGSIZE;
	for (;;) {
		uint64_t used = a->resp_tail - a->resp_head_cache;
		uint64_t free_ = size - used - PBUS_FRAME_ALIGN;
		uint64_t off = a->resp_tail & (size - 1), to_end = size - off;

		if (free_ < pref || free_ < need) {
			raw_head = __atomic_load_n(&h->resp_head,
						   __ATOMIC_ACQUIRE);
			a->resp_head_cache = raw_head;
			used = a->resp_tail - a->resp_head_cache;
			if (used > size - PBUS_FRAME_ALIGN) /* resync */
				a->resp_head_cache = a->resp_tail - size +
						     PBUS_FRAME_ALIGN;
			free_ = size - (a->resp_tail - a->resp_head_cache) -
				PBUS_FRAME_ALIGN;
		}
		if (to_end >= need && (to_end >= pref || free_ <= to_end)) {
			if (free_ >= need)
				return (int64_t)(free_ < to_end ? free_ : to_end);
		} else if (free_ >= to_end) {
			/* Wrap even when the frame will not fit at the start
			 * yet: the PAD is consumed with everything else, and
			 * a frame larger than the space left after a PAD
			 * must never wait for space that cannot come. */
			struct pbus_resp_frame *pad = (void *)(a->resp + off);

			pad->type = PBUS_FRAME_PAD;
			clear_len(a, a->resp_tail + to_end);
			__atomic_store_n(&pad->len, (uint32_t)to_end,
					 __ATOMIC_RELEASE);
			a->resp_tail += to_end;
			continue;
		}
		/* Not enough room: publish what we have and wait. */
		publish(a);
		{
			uint32_t seq = __atomic_load_n(&h->resp_space.seq,
						       __ATOMIC_ACQUIRE);
			uint64_t until = pbus__now_ns() +
					 (uint64_t)a->heartbeat_ms * 1000000ull;

			__atomic_fetch_add(&h->resp_space.waiters, 1,
					   __ATOMIC_SEQ_CST);
			/* sleep until the gateway moves its head (compared
			 * with what it wrote, not with our resynced cache) */
			if (__atomic_load_n(&h->resp_head, __ATOMIC_ACQUIRE) ==
			    raw_head)
				pbus__futex_wait(&h->resp_space.seq, seq, until);
			__atomic_fetch_sub(&h->resp_space.waiters, 1,
					   __ATOMIC_RELAXED);
		}
		if (must_leave(a))
			return -ENOTCONN;
		check_gateway(a);
	}
}

/* resp_space() when the cached head already shows room (most calls) */
static inline PBUS_HOT int64_t resp_space(struct pbus_agent *a, uint64_t need,
					  uint64_t pref)
{
	uint64_t size = a->resp_size;
	uint64_t free_ = size - (a->resp_tail - a->resp_head_cache) -
			 PBUS_FRAME_ALIGN;
	uint64_t to_end = size - (a->resp_tail & (size - 1));

	if (likely(free_ >= pref && free_ >= need && to_end >= pref &&
		   to_end >= need))
		return (int64_t)(free_ < to_end ? free_ : to_end);
	return resp_space_slow(a, need, pref);
}

/* Reserve the frame for the call about to run. */
static PBUS_HOT int call_begin(struct pbus_call *c)
{
	struct pbus_agent *a = c->a;
	int64_t got = resp_space(a, PBUS_FRAME_ALIGN,
				 RESERVE_PREF + sizeof(struct pbus_resp_frame));

	if (got < 0)
		return (int)got;
	c->frame_off = a->resp_tail & (a->resp_size - 1);
	c->body = a->resp + c->frame_off + sizeof(struct pbus_resp_frame);
	c->cap = (size_t)got - sizeof(struct pbus_resp_frame);
	c->len = 0;
	c->in_ring = 1;
	c->err = 0;
	c->flags = 0;
	c->nkeys = 0;
	return 0;
}

static int body_write(void *data, const char *buf, size_t n)
{
	struct pbus_call *c = data;
	struct pbus_agent *a = c->a;

	if (c->err)
		return -1;
	if (c->len + n > c->cap) {
		size_t want = c->len + n, limit = a->resp_size -
						  2 * PBUS_FRAME_ALIGN;
		size_t cap = a->ovf_cap ? a->ovf_cap : 65536;
		uint8_t *nb;

		if (want > limit) {
			c->err = -EMSGSIZE;
			return -1;
		}
		while (cap < want)
			cap *= 2;
		if (cap > a->ovf_cap) {
			nb = realloc(a->ovf, cap);
			if (!nb) {
				c->err = -ENOMEM;
				return -1;
			}
			a->ovf = nb;
			a->ovf_cap = cap;
		}
		if (c->in_ring)
			memcpy(a->ovf, c->body, c->len);
		c->body = a->ovf;
		c->cap = a->ovf_cap;
		c->in_ring = 0;
	}
	memcpy(c->body + c->len, buf, n);
	c->len += n;
	return 0;
}

static uint32_t key_flag(const char *key)
{
	static const struct {
		const char *k;
		uint32_t f;
	} m[] = {
		{"modified_payload", PBUS_RF_MODIFIED},
		{"violation", PBUS_RF_VIOLATION},
		{"metadata", PBUS_RF_METADATA},
		{"state", PBUS_RF_STATE},
		{"global_state", PBUS_RF_GSTATE},
		{"error", PBUS_RF_ERROR},
	};

	for (unsigned i = 0; i < sizeof(m) / sizeof(m[0]); i++)
		if (!strcmp(m[i].k, key))
			return m[i].f;
	return 0;
}

msgpack_packer *pbus_call_put(struct pbus_call *c, const char *key)
{
	static const char map32[5] = {(char)0xdf, 0, 0, 0, 0};
	size_t kl = strlen(key);

	if (!c->nkeys) {
		msgpack_packer_init(&c->pk, c, body_write);
		body_write(c, map32, sizeof(map32));
	}
	c->nkeys++;
	c->flags |= key_flag(key);
	msgpack_pack_str_with_body(&c->pk, key, kl);
	return &c->pk;
}

void pbus_call_set_flags(struct pbus_call *c, uint32_t flags)
{
	c->flags |= flags & PBUS_RF_ALL;
}

msgpack_packer *pbus_call_modify(struct pbus_call *c)
{
	return pbus_call_put(c, "modified_payload");
}

static void pack_cstr(msgpack_packer *pk, const char *s)
{
	s = s ? s : "";
	msgpack_pack_str_with_body(pk, s, strlen(s));
}

int pbus_call_violate(struct pbus_call *c, const char *code,
		      const char *reason, const char *description)
{
	msgpack_packer *pk = pbus_call_put(c, "violation");

	msgpack_pack_map(pk, 4);
	pack_cstr(pk, "reason");
	pack_cstr(pk, reason);
	pack_cstr(pk, "description");
	pack_cstr(pk, description);
	pack_cstr(pk, "code");
	pack_cstr(pk, code);
	pack_cstr(pk, "details");
	msgpack_pack_map(pk, 0);
	c->flags |= PBUS_RF_STOP;
	return 0;
}

PBUS_COLD int pbus_call_fail(struct pbus_call *c, const char *message)
{
	pack_cstr(pbus_call_put(c, "error"), message);
	return 0;
}

/* Finish the frame for the current call (after its handler ran). */
static PBUS_HOT int call_commit(struct pbus_call *c, uint32_t handler_ns)
{
	struct pbus_agent *a = c->a;
	struct pbus_resp_frame f;
	uint64_t flen;

	if (unlikely(c->err)) {
		/* The body could not be built: answer with a bare error. */
		c->nkeys = 0;
		c->len = 0;
		c->in_ring = 1;
		c->flags = PBUS_RF_ERROR;
	}
	if (c->nkeys) {
		uint32_t n = c->nkeys;

		c->body[1] = (uint8_t)(n >> 24);
		c->body[2] = (uint8_t)(n >> 16);
		c->body[3] = (uint8_t)(n >> 8);
		c->body[4] = (uint8_t)n;
	} else {
		c->len = 0;
	}
	flen = (sizeof(f) + c->len + PBUS_FRAME_ALIGN - 1) &
	       ~(uint64_t)(PBUS_FRAME_ALIGN - 1);
	if (unlikely(!c->in_ring)) {
		int64_t got = resp_space(a, flen, flen);

		if (got < 0)
			return (int)got;
		c->frame_off = a->resp_tail & (a->resp_size - 1);
		memcpy(a->resp + c->frame_off + sizeof(f), c->body, c->len);
	}
	f.len = 0;
	f.type = PBUS_FRAME_RESP;
	f.id = c->id;
	f.epoch = a->epoch;
	f.flags = c->flags;
	f.body_len = (uint32_t)c->len;
	f.handler_ns = handler_ns;
	memcpy(a->resp + c->frame_off, &f, sizeof(f));
	/* the next slot must not look committed, then commit this one */
	clear_len(a, a->resp_tail + flen);
	__atomic_store_n((uint32_t *)(a->resp + c->frame_off), (uint32_t)flen,
			 __ATOMIC_RELEASE);
	a->last_frame = a->resp + c->frame_off;
	a->resp_tail += flen;
	return 0;
}

/* ---------------------------------------------------------------- serving */

static PBUS_HOT const uint8_t *arena_at(struct pbus_agent *a, uint64_t off,
					uint32_t len, int *bad)
{
	if (!len)
		return NULL;
	if (off > a->arena.size || len > a->arena.size - off) {
		*bad = 1;
		return NULL;
	}
	return (const uint8_t *)a->arena.base + off;
}

/*
 * Ask for the payload's first lines at once: they sit in the gateway's cache,
 * and fetched one by one as the handler walks them each would cost a
 * cross-CPU transfer in turn; requested together they arrive in about the
 * time of one. The hardware prefetcher takes over past PREFETCH_MAX.
 */
#define PREFETCH_MAX 4096u

static inline void prefetch(const uint8_t *p, uint32_t len)
{
	if (!p)
		return;
	if (len > PREFETCH_MAX)
		len = PREFETCH_MAX;
	for (uint32_t i = 0; i < len; i += PBUS_CACHELINE)
		__builtin_prefetch(p + i, 0, 3);
	/* the last line, when @p is not line-aligned */
	__builtin_prefetch(p + len - 1, 0, 3);
}

/*
 * Copy the descriptor at @pos into @c and resolve its parts: inline parts
 * in the slot itself, referenced ones in the read-only arena. Returns 1 if
 * the descriptor is malformed (parts out of bounds or past the slot).
 */
static PBUS_HOT int read_request(struct pbus_agent *a, struct pbus_call *c,
				 uint64_t pos)
{
	const struct pbus_req_desc *sd = &a->req[pos & a->req_mask];
	struct pbus_req_desc *d = &c->d;
	uint64_t total;
	int bad = 0;

	memcpy(d, sd, PBUS_REQ_HDR_SIZE);
	if (!(d->flags & PBUS_REQ_F_INLINE)) {
		memcpy(d->inl, sd->inl, 3 * sizeof(uint64_t));
		c->payload = arena_at(a, d->payload_off, d->payload_len, &bad);
		prefetch(c->payload, d->payload_len);
		c->gctx = arena_at(a, d->gctx_off, d->gctx_len, &bad);
		c->lctx = arena_at(a, d->lctx_off, d->lctx_len, &bad);
		return bad;
	}
	total = (uint64_t)d->payload_len + d->gctx_len + d->lctx_len;
	if (total > PBUS_REQ_INLINE_MAX) {
		c->payload = c->gctx = c->lctx = NULL;
		return 1;
	}
	/* Read in place: the gateway writes a slot only after we released
	 * it (published a req_head past it), which happens after the batch,
	 * so the bytes stay put while the handler runs. A private copy
	 * measured slower: the handler's reads then wait on the copy's. */
	c->payload = d->payload_len ? sd->inl : NULL;
	c->gctx = d->gctx_len ? sd->inl + d->payload_len : NULL;
	c->lctx = d->lctx_len ? sd->inl + d->payload_len + d->gctx_len : NULL;
	return 0;
}

/*
 * Done with a request's payload in the arena: hand its first lines (those
 * we prefetched) to the shared cache. The gateway rewrites its lane for the
 * next call, and its stores then take the lines from there instead of
 * snooping them out of our core first. Not when the caller runs on our CPU
 * (a paced caller we follow): it finds them in the caches we share, and it
 * waits for the CPU while we demote.
 */
static PBUS_HOT void release_payload(const struct pbus_call *c)
{
	uint32_t len = c->d.payload_len;

	if ((c->d.flags & PBUS_REQ_F_INLINE) || !c->payload ||
	    (int)c->d.cpu == c->a->mycpu)
		return;
	if (len > PREFETCH_MAX)
		len = PREFETCH_MAX;
	for (uint32_t i = 0; i < len; i += PBUS_CACHELINE)
		pbus__cldemote(c->payload + i);
}

static PBUS_HOT int serve_one(struct pbus_agent *a, uint64_t pos)
{
	struct pbus_call *c = &a->call;
	uint32_t handler_ns = 0;
	int bad, ret;

	c->id = pos;
	/* the next slot is read right after this call (is there another
	 * request?): ask for its line now, while this one is served */
	__builtin_prefetch(&a->req[(pos + 1) & a->req_mask], 0, 3);
	ret = call_begin(c);
	if (ret)
		return ret;
	bad = read_request(a, c, pos);
	if ((int)c->d.cpu != a->last_cpu)
		a->same_caller = 0;
	else if (a->same_caller < FOLLOW_AFTER)
		a->same_caller++;
	a->last_cpu = (int)c->d.cpu;
	if (unlikely(bad || c->d.epoch != a->epoch)) {
		pbus_call_fail(c, "bad request descriptor");
	} else if (unlikely(c->d.hook >= PBUS_HOOK_COUNT ||
			    !a->h[c->d.hook].fn)) {
		c->flags |= PBUS_RF_UNSUPPORTED;
	} else {
		/* the clock is read only while the handler probe is on */
		uint64_t t0 = pbus__obs_on(handler) ? pbus__now_ns() : 0;

		ret = a->h[c->d.hook].fn(c, a->h[c->d.hook].arg);
		if (unlikely(ret < 0) && !(c->flags & PBUS_RF_ERROR))
			pbus_call_fail(c, strerror(-ret));
		if (t0) {
			uint64_t d = pbus__now_ns() - t0;

			pbus__obs_handler(c->d.hook, d);
			handler_ns = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
		}
	}
	ret = call_commit(c, handler_ns);
	release_payload(c); /* after the answer: it must not wait for this */
	return ret;
}

static inline PBUS_HOT int ring_empty(struct pbus_agent *a)
{
	const struct pbus_req_desc *d = &a->req[a->req_head & a->req_mask];

	if (__atomic_load_n(&d->seq, __ATOMIC_ACQUIRE) != a->req_head + 1)
		return 1;
	/* a request: ask at once for its second line if it carries inline
	 * data there (serving it needs it next) */
	if (d->flags & PBUS_REQ_F_INLINE &&
	    (uint64_t)d->payload_len + d->gctx_len + d->lctx_len >
		    PBUS_CACHELINE - PBUS_REQ_HDR_SIZE)
		__builtin_prefetch((const uint8_t *)d + PBUS_CACHELINE, 0, 3);
	return 0;
}

/* Serve up to BATCH committed requests. Returns the count or -errno. */
static PBUS_HOT int serve_batch(struct pbus_agent *a)
{
	int n = 0, ret, cpu;

	if (ring_empty(a))
		return 0;
	/* where we run now (the scheduler may have moved us while we
	 * polled; pinned by place(), we know): callers and our demote
	 * decisions compare it with theirs */
	cpu = a->follow_cpu >= 0 ? a->follow_cpu : sched_getcpu();
	if (cpu != a->mycpu) {
		a->mycpu = cpu;
		__atomic_store_n(&a->hdr->agent_cpu, (uint32_t)cpu,
				 __ATOMIC_RELAXED);
	}
	while (!ring_empty(a) && n < BATCH) {
		ret = serve_one(a, a->req_head);
		if (ret)
			return ret;
		a->req_head++;
		n++;
	}
	if (n) {
		/* The gateway is most likely polling the batch's last answer
		 * right now: hand the line to the shared cache, where its
		 * miss is served sooner than by a snoop into our core. Only
		 * that one: each demote makes the fence in publish() wait
		 * for a write-back. And not for a caller on our own CPU,
		 * which reads it from our caches. */
		if (a->last_cpu != a->mycpu)
			pbus__cldemote(a->last_frame);
		publish(a);
		a->handled += (uint64_t)n;
	}
	return n;
}

/* Wait for a request: poll, then sleep. 1 when one is there, 0 on timeout,
 * -errno when we must leave. */
/*
 * Placement. While requests come back to back, agent and gateway thread
 * should spin on different CPUs (~0.5 us round trips); sharing one CPU they
 * can only hand over through the scheduler (~2-5 us). When requests are
 * sparse, sharing a CPU is what makes a wake-up cheap. So: if the agent keeps
 * being woken almost at once by a gateway thread on its own CPU, it moves
 * itself off that CPU (affinity to the others, then back to all, so the
 * scheduler stays free). At most once per MIGRATE_EVERY_NS.
 */
#define SHORT_SLEEP_NS 20000ull
#define SHORT_SLEEPS 16
#define MIGRATE_EVERY_NS 100000000ull

static PBUS_HOT void note_wake(struct pbus_agent *a, uint64_t slept_at)
{
	uint64_t now;
	cpu_set_t all, others;

	if (a->last_cpu != a->mycpu || a->ncpus < 2 || a->follow_cpu >= 0) {
		a->short_sleeps = 0;
		return;
	}
	now = pbus__now_ns();
	if (now - slept_at > SHORT_SLEEP_NS) {
		a->short_sleeps = 0;
		return;
	}
	if (++a->short_sleeps < SHORT_SLEEPS ||
	    now - a->migrated_at < MIGRATE_EVERY_NS)
		return;
	a->short_sleeps = 0;
	a->migrated_at = now;
	if (sched_getaffinity(0, sizeof(all), &all))
		return;
	others = all;
	CPU_CLR(a->mycpu, &others);
	if (!CPU_COUNT(&others))
		return;
	if (!sched_setaffinity(0, sizeof(others), &others)) {
		a->migrations++;
		sched_setaffinity(0, sizeof(all), &all);
		a->mycpu = sched_getcpu();
		__atomic_store_n(&a->hdr->agent_cpu, (uint32_t)a->mycpu,
				 __ATOMIC_RELAXED);
	}
}

/*
 * Placement when requests come far apart. Polling after an answer then finds
 * nothing and only takes a CPU from the other processes (the next agents of
 * a chain); sleeping on another CPU than the caller's means every request
 * wakes a halted vCPU (~20-25 us on this class of VM). So such an agent
 * sleeps at once and pins itself to its caller's CPU: the caller's FUTEX_WAKE
 * then queues it on a CPU that is awake, and the caller, seeing agent_cpu
 * equal to its own, yields the CPU to it (chan.c, should_spin()) instead of
 * sleeping: a hand-over of a few microseconds per hop, as measured by the
 * "k"/"j" wait policies of the chain benchmark's baseline.
 *
 * "Far" starts when the learned gap reaches idle_spin_ns (polling would not
 * have found the request) and ends when it drops below idle_spin_ns /
 * FAR_LEAVE_DIV (requests back to back again: poll as before). The
 * hysteresis matters: once the agents follow, a chain gets fast and their
 * gaps shrink a lot. But a caller that merely slowed down (a 64 KiB payload
 * every ~20 us) would then stay on one CPU with its agent while the other
 * CPUs idle, so every FAR_RELEARN waits the agent forgets what it learned
 * and measures the gap again, unpinned. Gap samples are capped (note_gap())
 * so that one idle pause does not make an agent "far" for long. We pin
 * only while the last FOLLOW_AFTER requests came from one caller CPU, so
 * that several gateway threads do not make the agent bounce between CPUs,
 * and put the affinity we started with back as soon as any of this stops.
 */
#define FAR_LEAVE_DIV 8ull
#define FAR_RELEARN 1024u
#define GAP_CAP_SPINS 4ull

static PBUS_COLD void pin(struct pbus_agent *a, int cpu)
{
	cpu_set_t one;

	if (cpu >= 0) {
		CPU_ZERO(&one);
		CPU_SET(cpu, &one);
		if (sched_setaffinity(0, sizeof(one), &one))
			return;
	} else if (sched_setaffinity(0, sizeof(a->affinity), &a->affinity)) {
		return;
	}
	a->follow_cpu = cpu;
	a->mycpu = sched_getcpu();
	__atomic_store_n(&a->hdr->agent_cpu, (uint32_t)a->mycpu,
			 __ATOMIC_RELAXED);
}

/* Decide placement before idling; 1 when the agent should sleep at once. */
static PBUS_HOT int place(struct pbus_agent *a)
{
	uint64_t spin = a->idle_spin_ns;
	int want = -1;

	if (a->far && ++a->far_waits >= FAR_RELEARN) {
		a->far = 0;
		a->gap_ewma = 0;
	} else if (a->gap_ewma >= spin) {
		if (!a->far)
			a->far_waits = 0;
		a->far = 1;
	} else if (a->gap_ewma < spin / FAR_LEAVE_DIV) {
		a->far = 0;
	}
	if (a->far && a->same_caller >= FOLLOW_AFTER && a->last_cpu >= 0 &&
	    a->last_cpu < CPU_SETSIZE && CPU_ISSET(a->last_cpu, &a->affinity))
		want = a->last_cpu;
	if (want != a->follow_cpu)
		pin(a, want); /* a syscall only when the decision changes */
	return a->far;
}

/* Learn how long this agent idles between requests (EWMA, 1/8). @now is
 * the clock as last read, which may be a few polls old: reading it again
 * would delay the request just found, and the gap is compared with tens of
 * microseconds. */
static PBUS_HOT void note_gap(struct pbus_agent *a, uint64_t idle_from,
			      uint64_t now)
{
	uint64_t g = now - idle_from, cap = GAP_CAP_SPINS * a->idle_spin_ns;

	if (g > cap) /* see place() */
		g = cap;

	a->gap_ewma = a->gap_ewma - (a->gap_ewma >> 3) + (g >> 3);
}

/*
 * How long to sleep on the doorbell (absolute ns, 0: no deadline). An agent
 * its gateway spawned dies with it (PR_SET_PDEATHSIG, watch_gateway_process()),
 * and every other reason to leave rings the doorbell: pbus__chan_kill() (the
 * gateway drops us or closes), pbus_agent_stop(), on_signal(). So it sleeps
 * with no deadline unless the caller of pbus_agent_poll() gave one, which
 * saves arming and cancelling a timer around each sleep (~0.3 us of every
 * call to a sleeping agent on this VM). It does not refresh its heartbeat
 * while asleep; the watchdog takes a sleeping agent with no call waiting as
 * alive (sup.c, watch()). Any other agent wakes at least every heartbeat to
 * refresh it and to notice a gateway that went away.
 */
static inline PBUS_HOT int sleeps_unbounded(const struct pbus_agent *a)
{
	return a->guarded && !a->no_signals && sig_hdr == a->hdr;
}

static PBUS_HOT uint64_t sleep_deadline(const struct pbus_agent *a,
					uint64_t until, uint64_t hb)
{
	if (sleeps_unbounded(a))
		return until;
	return until && until < hb ? until : hb;
}

/*
 * An agent that follows a far caller (place()) and sleeps with no deadline
 * times one wait in TIME_EVERY. The clock is read twice around a timed wait
 * (the gap it learns, the heartbeat); on the critical path of a hand-over on
 * one CPU, those two cold vDSO calls are ~0.07 us of a ~3.5 us round trip.
 * Its heartbeat needs no refresh (sleep_deadline()), and gap samples at an
 * eighth of the rate still tell it that its caller came close again: ~200
 * calls back to back let it go instead of ~30 (test_bus, agent_follows_...),
 * well before it would re-learn from scratch (FAR_RELEARN).
 */
#define TIME_EVERY 8u

static PBUS_HOT int wait_request(struct pbus_agent *a, uint64_t until)
{
	struct pbus_chan_hdr *h = a->hdr;
	int far = place(a);
	int timed = !far || a->follow_cpu < 0 || until ||
		    !sleeps_unbounded(a) || ++a->untimed >= TIME_EVERY;
	uint64_t now, idle_from = timed ? pbus__now_ns() : 0;
	uint64_t spin_end = idle_from + a->idle_spin_ns;
	unsigned i = 0;
	int fresh = 1; /* no clock read since idle_from */

	/*
	 * Poll, unless our gateway thread shares this CPU or requests are
	 * known to come further apart than the poll would last (place()). The
	 * gap is measured either way (in one wait of TIME_EVERY when
	 * following), so the agent polls again soon after requests come
	 * close.
	 */
	if (timed)
		a->untimed = 0;
	if (!far && a->last_cpu != a->mycpu) {
		fresh = 0;
		now = idle_from;
		while (ring_empty(a)) {
			pbus__cpu_relax();
			if ((++i & 63) == 0) {
				if (unlikely(must_leave(a)))
					return -ENOTCONN;
				now = pbus__now_ns();
				if (now >= spin_end)
					break;
			}
		}
		if (!ring_empty(a)) {
			note_gap(a, idle_from, now);
			return 1;
		}
	}
	__atomic_store_n(&h->handled, a->handled, __ATOMIC_RELAXED);
	for (;;) {
		uint32_t seq;
		uint64_t hb, slept_at;

		if (unlikely(must_leave(a)))
			return -ENOTCONN;
		/* straight from serving (no poll): idle_from is the time */
		now = fresh ? idle_from : pbus__now_ns();
		fresh = 0;
		if (unlikely(until && now >= until))
			return 0;
		slept_at = now;
		hb = now + (uint64_t)a->heartbeat_ms * 1000000ull;
		seq = __atomic_load_n(&h->req_data.seq, __ATOMIC_ACQUIRE);
		__atomic_store_n(&h->agent_state, PBUS_PEER_SLEEPING,
				 __ATOMIC_RELAXED);
		__atomic_store_n(&h->req_data.waiters, 1, __ATOMIC_RELAXED);
		atomic_thread_fence(memory_order_seq_cst);
		if (ring_empty(a) && likely(!must_leave(a)))
			pbus__futex_wait(&h->req_data.seq, seq,
					 sleep_deadline(a, until, hb));
		__atomic_store_n(&h->req_data.waiters, 0, __ATOMIC_RELAXED);
		/* pinned (place()), we know where we run */
		a->mycpu = a->follow_cpu >= 0 ? a->follow_cpu : sched_getcpu();
		__atomic_store_n(&h->agent_cpu, (uint32_t)a->mycpu,
				 __ATOMIC_RELAXED);
		__atomic_store_n(&h->agent_state, PBUS_PEER_RUNNING,
				 __ATOMIC_RELEASE);
		if (!timed && likely(!ring_empty(a)))
			return 1;
		now = pbus__now_ns();
		__atomic_store_n(&h->heartbeat_ns, now, __ATOMIC_RELAXED);
		if (likely(!ring_empty(a))) {
			note_wake(a, slept_at);
			note_gap(a, idle_from, now);
			return 1;
		}
		check_gateway(a);
	}
}

PBUS_HOT int pbus_agent_poll(struct pbus_agent *a, int timeout_ms)
{
	uint64_t until;
	int ret, total = 0;

	if (!a->hdr)
		return -ENOTCONN;
	until = pbus__now_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) *
					 1000000ull;
	if (ring_empty(a)) {
		ret = wait_request(a, until ? until : 1);
		if (ret <= 0)
			return ret;
	}
	while ((ret = serve_batch(a)) > 0)
		total += ret;
	return ret < 0 ? ret : total;
}

static PBUS_HOT int serve(struct pbus_agent *a)
{
	int ret;

	for (;;) {
		ret = serve_batch(a);
		if (ret < 0)
			break;
		if (ret > 0)
			continue;
		ret = wait_request(a, 0);
		if (ret < 0)
			break;
	}
	__atomic_store_n(&a->hdr->agent_state, PBUS_PEER_GONE,
			 __ATOMIC_RELEASE);
	return ret;
}

int pbus_agent_run(struct pbus_agent *a)
{
	int ret;

	if (!a->hdr) {
		if (!a->reconnect)
			return -ENOTCONN;
		reconnect(a, 0);
		if (!a->hdr)
			return 0; /* stopped before a gateway answered */
	}
	for (;;) {
		ret = serve(a);
		/* A requested stop is a clean exit; a vanished gateway is
		 * not, unless we reconnect. */
		if (sig_stop || atomic_load(&a->stop))
			return 0;
		if (!a->reconnect)
			return ret;
		pbus__info("plugin '%s': lost the gateway (epoch %u)", a->name,
			   a->epoch);
		agent_disconnect(a);
		reconnect(a, RECONNECT_FIRST_MS);
		if (!a->hdr)
			return 0;
	}
}

/* ---------------------------------------------------------------- a call */

int pbus_call_hook(const struct pbus_call *c)
{
	return c->d.hook;
}

uint64_t pbus_call_id(const struct pbus_call *c)
{
	return c->id;
}

PBUS_HOT const void *pbus_call_payload(const struct pbus_call *c, size_t *len)
{
	if (len)
		*len = c->payload ? c->d.payload_len : 0;
	return c->payload;
}

const void *pbus_call_global_ctx(const struct pbus_call *c, size_t *len)
{
	if (len)
		*len = c->gctx ? c->d.gctx_len : 0;
	return c->gctx;
}

const void *pbus_call_local_ctx(const struct pbus_call *c, size_t *len)
{
	if (len)
		*len = c->lctx ? c->d.lctx_len : 0;
	return c->lctx;
}

struct pbus_agent *pbus_call_agent(const struct pbus_call *c)
{
	return c->a;
}

/* ---------------------------------------------------------------- testing */

/* Raw access for tests that play a hostile agent. */
struct pbus_chan_hdr *pbus__agent_hdr(struct pbus_agent *a)
{
	return a->hdr;
}

int pbus__agent_arena_fd(struct pbus_agent *a)
{
	return a->arena.fd;
}

const void *pbus__agent_arena(struct pbus_agent *a, size_t *len)
{
	*len = a->arena.size;
	return a->arena.base;
}
