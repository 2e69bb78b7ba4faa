/* SPDX-License-Identifier: MIT */
/*
 * Gateway side of the bus: open a bus (control socket + payload arena),
 * declare plugin slots that agents attach to by name, and call hooks on them.
 *
 * Payloads and results are msgpack. A caller takes a lane (its private
 * workspace in the arena), encodes the payload into it once, and passes the
 * reference to any number of agents: they read it in place through a
 * read-only mapping. A result body is copied out of the agent's channel into
 * the same lane before anyone decodes it; it stays valid until the lane is
 * reset or released.
 *
 * Every function may be called from any thread unless it says otherwise.
 *
 * Errors (negative errno): -EINVAL bad argument, -ENOMEM, -EMSGSIZE payload or
 * result over the configured maximum, -ENOBUFS lane full, -ETIMEDOUT deadline
 * passed, -ENOTCONN the agent is down (not attached, died, or was replaced),
 * -EPROTO the agent wrote garbage (its channel was closed), -EAGAIN nothing
 * ready (non-blocking forms).
 */
#ifndef PBUS_BUS_H
#define PBUS_BUS_H

#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

struct pbus_bus;
struct pbus_peer;
struct pbus_lane;

/* A byte range in the payload arena. {0, 0} means "absent". */
struct pbus_ref {
	uint64_t off;
	uint32_t len;
	uint32_t _pad;
};

struct pbus_bus_opts {
	const char *sock_path;   /* NULL: $PBUS_SOCK, else /tmp/pbus-<pid>.sock */
	unsigned sock_mode;      /* 0: 0600 */
	size_t max_payload;      /* 0: 1,000,000 bytes (the framework's limit) */
	unsigned lanes;          /* 0: 64 */
	size_t lane_size;        /* 0: 4 * max_payload, page-rounded */
	unsigned ring_slots;     /* request slots per channel; 0: 256 */
	size_t resp_ring_size;   /* 0: 4 * max_payload, power of two, >= 256 KiB */
	const unsigned *allow_uids; /* uids allowed besides our own */
	unsigned n_allow_uids;
	unsigned max_spin_ns;    /* cap on a caller's spin; 0: 100 us; set 1 to never spin */
	unsigned agent_idle_spin_ns; /* agent polls this long before sleeping; 0: 50 us */
};

/* ------------------------------------------------------------ lifecycle */

/*
 * Create the arena and the control socket and start the control thread that
 * accepts agents. Returns 0 and *out, or -errno (*out untouched).
 */
int pbus_bus_open(const struct pbus_bus_opts *o, struct pbus_bus **out);

/* Stop accepting, disconnect every agent, unmap everything. NULL is a no-op. */
void pbus_bus_close(struct pbus_bus *b);

/* The control socket's path. */
const char *pbus_bus_sock_path(const struct pbus_bus *b);

/*
 * Declare a plugin slot named @name that an agent attaches to. @cfg (msgpack
 * map, may be NULL) is handed to every agent that attaches. The peer belongs
 * to the bus and lives until pbus_bus_close(). -EEXIST if the name is taken.
 */
int pbus_bus_add_peer(struct pbus_bus *b, const char *name, const void *cfg,
		      size_t cfg_len, struct pbus_peer **out);

/* Look up a declared peer by name; NULL if none. */
struct pbus_peer *pbus_bus_find_peer(struct pbus_bus *b, const char *name);

/* ------------------------------------------------------------ lanes */

/*
 * Take a free lane. Non-blocking: -EAGAIN when every lane is in use. A lane is
 * used by one thread at a time (calls on it may be in flight on many peers).
 */
int pbus_lane_acquire(struct pbus_bus *b, struct pbus_lane **out);

/* Give the lane back. No call using it may still be in flight. */
void pbus_lane_release(struct pbus_lane *l);

/* Forget everything written to the lane. No call using it may be in flight. */
void pbus_lane_reset(struct pbus_lane *l);

/* Copy @len bytes into the lane. -ENOBUFS when it does not fit. */
int pbus_lane_write(struct pbus_lane *l, const void *data, size_t len,
		    struct pbus_ref *ref);

/*
 * Encode straight into the lane: pbus_lane_pack_begin() initialises @pk to
 * append to the lane; pbus_lane_pack_end() returns the bytes written since as
 * one contiguous reference. Returns -ENOBUFS (at end) if anything overflowed.
 */
void pbus_lane_pack_begin(struct pbus_lane *l, msgpack_packer *pk);
int pbus_lane_pack_end(struct pbus_lane *l, msgpack_packer *pk,
		       struct pbus_ref *ref);

/* Read access to bytes referenced in the lane (or anywhere in the arena). */
const void *pbus_lane_ptr(const struct pbus_lane *l, struct pbus_ref ref);

/* Bytes of the lane still free. */
size_t pbus_lane_avail(const struct pbus_lane *l);

/* ------------------------------------------------------------ calls */

struct pbus_call_args {
	int hook;               /* enum pbus_hook */
	struct pbus_ref payload;
	struct pbus_ref gctx;   /* global context, msgpack map, or absent */
	struct pbus_ref lctx;   /* plugin-local context, or absent */
	uint64_t timeout_ns;    /* 0: 30 s */
};

struct pbus_result {
	int status;             /* 0 or -errno (see top of file) */
	uint32_t flags;         /* PBUS_RF_* as the agent set them */
	struct pbus_ref body;   /* msgpack map in the lane, or absent */
	const void *body_ptr;   /* same bytes, mapped; NULL if absent */
	uint32_t handler_ns;    /* agent-reported handler time */
	uint32_t _pad;
};

/*
 * Run one hook call on @p and wait for its result (blocking). Returns 0 when a
 * response arrived (r->status == 0), else -errno (also stored in r->status).
 * A call that times out is abandoned: its late response is dropped.
 */
int pbus_invoke(struct pbus_peer *p, struct pbus_lane *l,
		const struct pbus_call_args *a, struct pbus_result *r);

/*
 * Non-blocking form. pbus_submit() queues the call (waiting only for ring
 * space, within the call's deadline) and returns a ticket. pbus_collect()
 * waits up to @wait_ns (0: just check) for that ticket's result: 0 with *r,
 * -EAGAIN still pending, or another -errno. A ticket is collected exactly once;
 * calls in flight on a lane must be collected before it is reset. A ticket
 * left uncollected past its call's deadline may be reclaimed by a later
 * submit; collecting it then returns -ETIMEDOUT.
 */
int pbus_submit(struct pbus_peer *p, struct pbus_lane *l,
		const struct pbus_call_args *a, uint64_t *ticket);
int pbus_collect(struct pbus_peer *p, uint64_t ticket, uint64_t wait_ns,
		 struct pbus_result *r);

/*
 * Queue @n calls at once (@a[0..n-1], all answered into @l): the batched
 * pbus_submit(), for a caller with many calls to start, like an event loop
 * or a pipeline. The descriptors are written one after the other and
 * committed with a single fence and at most one wake-up of the agent, which
 * costs far less than n pbus_submit() calls. It waits (within a[0]'s
 * deadline) only while the ring has room for none of them, then queues as
 * many as fit: returns how many (1..n), with tickets[0..ret-1] filled in
 * order, or -errno with nothing queued (-EINVAL if any of the calls is
 * invalid). Collect each ticket with pbus_collect().
 */
int pbus_submit_many(struct pbus_peer *p, struct pbus_lane *l,
		     const struct pbus_call_args *a, unsigned n,
		     uint64_t *tickets);

/* ------------------------------------------------------------ peers */

/* Wait up to @timeout_ms until an agent is attached. 0 or -ETIMEDOUT. */
int pbus_peer_wait_up(struct pbus_peer *p, int timeout_ms);

/* 1 if an agent is attached now. */
int pbus_peer_is_up(const struct pbus_peer *p);

const char *pbus_peer_name(const struct pbus_peer *p);

struct pbus_peer_stats {
	uint64_t calls;          /* submitted */
	uint64_t completed;      /* answered with a response */
	uint64_t timeouts;
	uint64_t agent_down;     /* failed because the agent was down */
	uint64_t rejected;       /* frames dropped, all reasons (sum below) */
	uint64_t rej_unknown;    /* id not outstanding (never sent, or abandoned) */
	uint64_t rej_stale;      /* wrong epoch */
	uint64_t rej_dup;        /* already answered */
	uint64_t rej_bad;        /* malformed: lengths, type, ring indices */
	uint64_t attaches;       /* agents attached so far */
	uint32_t epoch;          /* current or last epoch */
	int32_t pid;             /* agent pid, 0 if none */
	uint32_t hooks;          /* hook mask the agent announced */
	uint32_t up;
};

int pbus_peer_stats(const struct pbus_peer *p, struct pbus_peer_stats *s);

/*
 * Drop the current agent connection (its in-flight calls fail with
 * -ENOTCONN); a new agent may attach. Used by supervision and tests.
 */
int pbus_peer_disconnect(struct pbus_peer *p);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif /* PBUS_BUS_H */
