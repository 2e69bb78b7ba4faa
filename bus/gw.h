/* SPDX-License-Identifier: MIT */
/*
 * Gateway-private state (never in shared memory): the bus, its lanes, plugin
 * slots (peers) and per-connection channels.
 *
 * Concurrency model:
 *  - Any number of gateway threads call into a peer at once. Producers
 *    (pbus_submit) serialise on the channel's prod_lock; the response ring is
 *    drained by whichever waiting thread holds cons_lock, which completes the
 *    pending entries of every thread. Both locks are gateway-private spin
 *    locks held for a few hundred nanoseconds; no lock is ever shared with an
 *    agent.
 *  - The control thread owns attach/detach. A channel struct is never freed
 *    while the bus is open: it is retired (dead), unmapped once no thread
 *    holds a reference, and recycled for a later connection of the same peer.
 *    Callers take references with chan_tryget() (CAS, refused while the
 *    struct is being recycled), so a stale pointer can never reach unmapped
 *    memory.
 */
#ifndef PBUS_GW_H
#define PBUS_GW_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include "pbus/abi.h"
#include "pbus/bus.h"
#include "shm.h"

#define PBUS__CHAN_POOL 8 /* channel structs per peer */
#define PBUS__REFS_LOCKED (INT32_MIN / 2)

/* Pending entry states */
enum { PEND_FREE = 0, PEND_WAITING, PEND_FILLING, PEND_DONE };

struct pbus_pending {
	_Atomic uint32_t state;
	uint32_t flags;      /* PBUS_RF_* */
	_Atomic uint64_t id; /* request id owning this entry */
	uint64_t answered;   /* last id answered here (dup detection) */
	struct pbus_lane *lane;
	int32_t status;
	uint32_t handler_ns;
	struct pbus_ref body;
	/* CLOCK_MONOTONIC ns; UINT64_MAX until the submitter has read the
	 * clock (after the commit, see submit()). Read by other submitters
	 * (reclaim), hence atomic. */
	_Atomic uint64_t deadline;
	uint64_t t_submit;
	uint8_t woke;        /* the submit woke a sleeping agent */
	uint8_t wake_strategy; /* then: spin or sleep (chan.c) */
} __attribute__((aligned(64)));

struct pbus_chan {
	struct pbus_peer *peer;
	_Atomic int32_t refs;     /* >= 0 usable; PBUS__REFS_LOCKED: recycling */
	_Atomic uint32_t dead;    /* 1: no new calls; waiters fail */
	_Atomic uint32_t poisoned; /* framing lost for good: stop reading */
	int32_t dead_status;      /* -ENOTCONN or -EPROTO */
	uint32_t epoch;
	int mapped;
	struct pbus__region shm;
	struct pbus_chan_hdr *hdr;
	struct pbus_req_desc *req;
	uint32_t req_mask;
	uint8_t *resp;
	uint64_t resp_size;
	int sock;                 /* control connection of the agent */
	pid_t pid;

	/* producer side, under prod_lock */
	_Atomic uint32_t prod_lock __attribute__((aligned(64)));
	_Atomic uint64_t next_id; /* == request ring tail; written under lock */
	uint64_t req_head_cache;

	/* consumer side, under cons_lock */
	_Atomic uint32_t cons_lock __attribute__((aligned(64)));
	_Atomic uint64_t resp_head;
	uint64_t bad_at;          /* 1 + position of a bad frame already counted */
	/* id of the last answer completed (answers come in request order);
	 * read by submit to tell a lone call from a pipelined one */
	_Atomic uint64_t last_done;

	/* learned spin: EWMA of response time (ns) */
	_Atomic uint32_t ewma_ns __attribute__((aligned(64)));
	_Atomic uint32_t wake_ns[2]; /* EWMA after a wake-up: sleep, spin */
	_Atomic uint32_t wake_n;

	struct pbus_pending *pend; /* req_mask + 1 entries */
};

struct pbus_peer {
	struct pbus_bus *bus;
	uint32_t id;              /* dense, order of declaration */
	char name[PBUS_NAME_MAX];
	void *cfg;
	size_t cfg_len;
	struct pbus_chan *_Atomic chan; /* current connection or NULL */
	struct pbus_chan *pool[PBUS__CHAN_POOL];
	uint32_t next_epoch;
	/* hooks, pid, last_epoch, t_attach: written by the control thread
	 * under the bus lock, read anywhere with __atomic_load_n */
	uint32_t hooks;
	pid_t pid;

	_Atomic uint64_t calls, completed, timeouts, agent_down;
	_Atomic uint64_t rej_unknown, rej_stale, rej_dup, rej_bad;
	_Atomic uint64_t attaches;
	uint32_t last_epoch;
	uint64_t t_attach;        /* CLOCK_MONOTONIC ns of the last attach */
	/* asks the control thread to detach: 0 no, PBUS__DROP_ANY any
	 * connection, else only the connection of that epoch */
	_Atomic uint32_t want_disconnect;

	/* Circuit breaker (bus/sup.c). `circuit` is read on every call of
	 * the plugin manager; the rest only when it is not closed. */
	_Atomic uint32_t circuit __attribute__((aligned(64))); /* PBUS__CIRCUIT_* */
	_Atomic uint32_t probe;          /* 1: the half-open probe is out */
	_Atomic uint64_t circuit_until;  /* OPEN until, CLOCK_MONOTONIC ns */
	_Atomic uint64_t probe_t;        /* when the probe was let through */
	_Atomic uint64_t probe_completed; /* `completed` at that moment */
};

#define PBUS__DROP_ANY UINT32_MAX

enum {
	PBUS__CIRCUIT_CLOSED = 0,
	PBUS__CIRCUIT_OPEN,
	PBUS__CIRCUIT_HALF_OPEN,
};

struct pbus_lane {
	struct pbus_bus *bus;
	uint8_t *base;            /* gateway's RW view of this lane */
	uint64_t off;             /* lane offset in the arena */
	uint32_t size;
	/* low 32 bits: payload bytes from the bottom (owner only);
	 * high 32 bits: result bytes from the top (any draining thread) */
	_Atomic uint64_t use;
	uint32_t pack_start;
	int pack_err;
	struct pbus_lane *next_free;
};

struct pbus__conn; /* control-thread connection, gateway.c */

struct pbus_bus {
	struct pbus_bus_opts o;
	char sock_path[108];
	int lfd, epfd, evfd;
	pthread_t ctl;
	int ctl_running;
	_Atomic int stopping;
	uid_t uid;

	struct pbus__region arena;
	struct pbus_lane *lanes;
	struct pbus_lane *free_lanes;
	pthread_mutex_t lane_lock;

	pthread_mutex_t lock;     /* peers array, attach state */
	pthread_cond_t cond;      /* peer came up */
	struct pbus_peer **peers;
	unsigned npeers, cap_peers;
	struct pbus__conn *conns; /* control connections */
	struct pbus__conn *closed; /* closed this round, freed at its end */
	/* The supervisor (bus/sup.c) or NULL. Set and cleared under `lock`;
	 * the control thread calls it only under `lock`. */
	struct pbus__sup *sup;
};

/* ------------------------------------------------------------ supervision
 *
 * The control thread tells the supervisor about every attach and detach
 * (with b->lock held: the callee must not block nor take b->lock), and asks
 * it for the extra columns of the admin LIST. sup.c implements both; with no
 * supervisor (a bare bus) b->sup is NULL and nothing is called.
 */
struct pbus__sup;

enum pbus__peer_event {
	PBUS__EV_ATTACH = 1, /* an agent attached */
	PBUS__EV_EOF,        /* its connection ended (exit, crash, kill) */
	PBUS__EV_ADMIN,      /* admin RESTART dropped it */
	PBUS__EV_DROP,       /* pbus__peer_drop()/pbus_peer_disconnect() */
	PBUS__EV_CLOSE,      /* the bus is closing */
};

struct pbus__peer_info {
	uint32_t restarts;   /* agent restarts so far */
	const char *circuit; /* "closed", "open", "half-open" */
	const char *state;   /* "up", "starting", "backoff", ... */
};

void pbus__sup_peer_event(struct pbus__sup *s, struct pbus_peer *p, int ev,
			  pid_t pid, uint32_t epoch);
void pbus__sup_peer_info(struct pbus__sup *s, const struct pbus_peer *p,
			 struct pbus__peer_info *out);

/* gateway.c: ask the control thread to drop @p's connection if its epoch
 * is @epoch (PBUS__DROP_ANY: whatever is attached). Any thread; does not
 * wait. 0, or -ENOTCONN when nothing is attached. */
int pbus__peer_drop(struct pbus_peer *p, uint32_t epoch);

/* chan.c */
struct pbus_chan *pbus__chan_tryget(struct pbus_peer *p);
void pbus__chan_put(struct pbus_chan *ch);
void pbus__chan_kill(struct pbus_chan *ch, int status);
void pbus__chan_init_hdr(struct pbus_chan *ch, const struct pbus_bus *b);

/* lane.c */
int pbus__arena_open(struct pbus_bus *b);
void pbus__arena_close(struct pbus_bus *b);
int pbus__lane_alloc_res(struct pbus_lane *l, uint32_t n, uint64_t *off);

/* ctl.c (both sides) */
int pbus__ctl_send(int fd, const void *msg, size_t len, const int *fds,
		   int nfds);
ssize_t pbus__ctl_recv(int fd, void *buf, size_t len, int *fds, int *nfds,
		       int maxfds);
void pbus__msg_hdr_init(struct pbus_msg_hdr *h, uint16_t type, uint32_t len);
int pbus__msg_hdr_check(const struct pbus_msg_hdr *h, size_t got);

/* agent.c: raw access for tests that play a hostile agent */
struct pbus_agent;
struct pbus_chan_hdr *pbus__agent_hdr(struct pbus_agent *a);
int pbus__agent_arena_fd(struct pbus_agent *a);
const void *pbus__agent_arena(struct pbus_agent *a, size_t *len);

#endif /* PBUS_GW_H */
