/* SPDX-License-Identifier: MIT */
/*
 * The shared-memory and control-socket ABI: everything a gateway and an agent
 * must agree on byte for byte. Fixed-width fields, explicit padding, offsets
 * never pointers, every size pinned by a static assert. Changing anything here
 * means bumping PBUS_ABI_VERSION; both sides check it at attach.
 *
 * Two shared regions, both memfds created and sealed by the gateway:
 *
 *  - The payload arena (one per bus). The gateway writes request payloads and
 *    contexts into it; agents map it read-only. It is sealed with
 *    F_SEAL_FUTURE_WRITE, so the kernel refuses a writable mapping.
 *
 *  - A channel (one per agent connection), mapped read-write by both:
 *      [0, PBUS_CHAN_HDR_SIZE)       struct pbus_chan_hdr
 *      [req_off, +req_slots*128)     request ring: struct pbus_req_desc slots
 *                                    (a descriptor line, then a line that
 *                                    carries the data of small calls inline)
 *      [resp_off, +resp_size)        response ring: byte ring of frames
 *      [cfg_off, +cfg_len)           the plugin's config (msgpack map)
 *
 * Rings are single-producer/single-consumer with free-running 64-bit
 * positions. Every entry carries its own commit word, written last with a
 * release store: a request descriptor's `seq` (= its position + 1), a
 * response frame's `len` (0 = not committed). So the consumer polls the very
 * cache line that brings the data, and a round trip moves as few lines as
 * possible. The response producer keeps a 64-byte gap before the consumer's
 * head and zeroes the next frame's `len` before it commits a frame, so a
 * stale word from an earlier lap is never taken for a commit. The consumer
 * release-stores its head after consuming (the producer's space check). The
 * gateway reads every agent-written field once and bounds-checks it.
 *
 * Each ring has two events (doorbells): "data" (the consumer sleeps on it) and
 * "space" (the producer sleeps on it when full). A sleeper increments
 * `waiters`, re-checks, then FUTEX_WAITs on `seq`; a notifier bumps `seq` and
 * calls FUTEX_WAKE only when `waiters` is non-zero. Futexes are shared, never
 * FUTEX_PRIVATE_FLAG.
 */
#ifndef PBUS_ABI_H
#define PBUS_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

#define PBUS_MAGIC 0x53554250u /* "PBUS" */
#define PBUS_ARENA_MAGIC 0x414e5241u /* "ARNA" */
#define PBUS_ABI_VERSION 3u
#define PBUS_PROTO_VERSION 1u
#define PBUS_CACHELINE 64
#define PBUS_NAME_MAX 64 /* plugin name, NUL included */
#define PBUS_FRAME_ALIGN 64u

/* ---------------------------------------------------------------- events */

struct pbus_event {
	uint32_t seq;     /* futex word: bumped by the notifier */
	uint32_t waiters; /* sleepers on seq (count or flag) */
};

/* ---------------------------------------------------------------- channel */

/* agent_state values */
#define PBUS_PEER_SLEEPING 0u /* blocked in FUTEX_WAIT on req data */
#define PBUS_PEER_RUNNING 1u  /* on a CPU: polling or handling */
#define PBUS_PEER_GONE 2u     /* exited its loop */

struct pbus_chan_hdr {
	/* line 0: written once by the gateway before the channel is shared */
	uint32_t magic;      /* PBUS_MAGIC */
	uint32_t abi;        /* PBUS_ABI_VERSION */
	uint32_t epoch;      /* this connection's epoch; in every frame */
	uint32_t req_slots;  /* power of two */
	uint64_t req_off;    /* request ring offset in the channel */
	uint64_t resp_off;   /* response ring offset */
	uint64_t resp_size;  /* response ring bytes, power of two */
	uint64_t cfg_off;    /* plugin config offset */
	uint32_t cfg_len;    /* plugin config length (msgpack) */
	uint32_t idle_spin_ns; /* how long the agent polls before sleeping */
	uint64_t arena_size; /* size of the payload arena */

	/* line 1: written by the gateway */
	uint32_t closing __attribute__((aligned(PBUS_CACHELINE)));
	/* gateway sets 1: the agent must leave */
	uint8_t _pad1[60];
	/* line 2: request ring, consumer (agent) side */
	uint64_t req_head;
	uint8_t _pad2[56];
	/* line 3: request ring events */
	struct pbus_event req_data;  /* agent sleeps; gateway notifies */
	struct pbus_event req_space; /* gateway sleeps; agent notifies */
	uint8_t _pad3[48];
	/* line 4: response ring, producer (agent) side */
	uint64_t resp_tail;  /* where the agent will write next; read by the
			      * gateway only to resynchronise after a bad frame */
	uint8_t _pad4[56];
	/* line 5: response ring, consumer (gateway) side */
	uint64_t resp_head;
	uint8_t _pad5[56];
	/* line 6: response ring events */
	struct pbus_event resp_data;  /* gateway sleeps; agent notifies */
	struct pbus_event resp_space; /* agent sleeps; gateway notifies */
	uint8_t _pad6[48];
	/* line 7: agent status, written by the agent */
	uint32_t agent_state;  /* PBUS_PEER_* */
	uint32_t agent_cpu;    /* CPU the agent last ran on */
	uint64_t heartbeat_ns; /* CLOCK_MONOTONIC, refreshed at least every heartbeat */
	uint64_t handled;      /* requests handled on this channel */
	uint32_t agent_pid;
	uint8_t _pad7[36];
};

#define PBUS_CHAN_HDR_SIZE 4096u

_Static_assert(sizeof(struct pbus_event) == 8, "shm ABI");
_Static_assert(sizeof(struct pbus_chan_hdr) == 8 * PBUS_CACHELINE, "shm ABI");
_Static_assert(offsetof(struct pbus_chan_hdr, closing) == 1 * 64, "shm ABI");
_Static_assert(offsetof(struct pbus_chan_hdr, req_head) == 2 * 64, "shm ABI");
_Static_assert(offsetof(struct pbus_chan_hdr, req_data) == 3 * 64, "shm ABI");
_Static_assert(offsetof(struct pbus_chan_hdr, resp_tail) == 4 * 64, "shm ABI");
_Static_assert(offsetof(struct pbus_chan_hdr, resp_head) == 5 * 64, "shm ABI");
_Static_assert(offsetof(struct pbus_chan_hdr, resp_data) == 6 * 64, "shm ABI");
_Static_assert(offsetof(struct pbus_chan_hdr, agent_state) == 7 * 64, "shm ABI");
_Static_assert(sizeof(struct pbus_chan_hdr) <= PBUS_CHAN_HDR_SIZE, "shm ABI");

/* Request descriptor flags */
#define PBUS_REQ_F_NONE 0u
#define PBUS_REQ_F_INLINE 0x1u /* payload, gctx, lctx are in inl[] */

#define PBUS_REQ_SLOT_SIZE 128u  /* bytes per request slot: two cache lines */
#define PBUS_REQ_HDR_SIZE 40u    /* the fixed fields, up to inl[] */
#define PBUS_REQ_INLINE_MAX 88u  /* PBUS_REQ_SLOT_SIZE - PBUS_REQ_HDR_SIZE */

/*
 * One request (gateway -> agent): a 128-byte slot, 128-byte aligned (two
 * cache lines). A zero length means "absent".
 *
 * By reference (flags without PBUS_REQ_F_INLINE): the offsets are into the
 * payload arena, which agents map read-only; only the first line is used.
 *
 * Inline (PBUS_REQ_F_INLINE): the bytes of the payload, then of the global
 * context, then of the local context follow each other in inl[] (lengths as
 * above, their sum at most PBUS_REQ_INLINE_MAX; a descriptor whose sum is
 * larger is malformed) and the offsets are absent. The gateway inlines every
 * call whose parts fit: the agent then gets descriptor and data in the line
 * it polls and the one next to it, instead of fetching the payload's lines
 * from the gateway's cache one after the other (on the VMs we measure, each
 * cross-CPU line transfer costs ~0.1-0.15 us, a good part of a round trip).
 * Parts of up to 24 bytes in all stay in the first line. The agent may read
 * inline parts in place: the gateway writes a slot again only after the
 * agent has published a req_head past it.
 *
 * Trust: the request ring lives in the channel, which the agent maps
 * read-write, so an agent can overwrite inline bytes. That is harmless
 * because the gateway only ever writes request slots and never reads them
 * back: the caller's payload stays in its lane of the read-only arena, and
 * everything the gateway does after the call (chaining the payload to the
 * next plugin, merging answers) uses that copy. An agent that scribbles on
 * its own slots can only confuse itself; it never sees another agent's
 * channel.
 */
struct pbus_req_desc {
	uint64_t seq;         /* commit word, written last: request id + 1;
			       * the request id is the ring position */
	uint32_t epoch;       /* must equal the channel's epoch */
	uint16_t hook;        /* enum pbus_hook */
	uint16_t flags;       /* PBUS_REQ_F_* */
	uint32_t payload_len; /* msgpack map: the hook's payload */
	uint32_t gctx_len;    /* msgpack map: global context */
	uint32_t lctx_len;    /* msgpack map: this plugin's local context */
	uint32_t cpu;         /* CPU of the submitting gateway thread */
	uint64_t timeout_ns;  /* the gateway gives up this long after it
			       * committed the slot (informational) */
	union {
		struct {                  /* by reference */
			uint64_t payload_off; /* arena offsets */
			uint64_t gctx_off;
			uint64_t lctx_off;
		};
		uint8_t inl[PBUS_REQ_INLINE_MAX]; /* PBUS_REQ_F_INLINE */
	};
};
_Static_assert(sizeof(struct pbus_req_desc) == PBUS_REQ_SLOT_SIZE, "shm ABI");
_Static_assert(offsetof(struct pbus_req_desc, payload_len) == 16, "shm ABI");
_Static_assert(offsetof(struct pbus_req_desc, timeout_ns) == 32, "shm ABI");
_Static_assert(offsetof(struct pbus_req_desc, payload_off) ==
		       PBUS_REQ_HDR_SIZE, "shm ABI");
_Static_assert(offsetof(struct pbus_req_desc, lctx_off) == 56, "shm ABI");
_Static_assert(offsetof(struct pbus_req_desc, inl) == PBUS_REQ_HDR_SIZE,
	       "shm ABI");
_Static_assert(PBUS_REQ_HDR_SIZE + PBUS_REQ_INLINE_MAX == PBUS_REQ_SLOT_SIZE,
	       "shm ABI");

/* Response frame types */
#define PBUS_FRAME_RESP 1u
#define PBUS_FRAME_PAD 2u /* skip to the end of the ring */

/* Response flags: what the body carries and what the plugin decided */
#define PBUS_RF_STOP 0x01u        /* continue_processing = false */
#define PBUS_RF_MODIFIED 0x02u    /* body has "modified_payload" */
#define PBUS_RF_VIOLATION 0x04u   /* body has "violation" */
#define PBUS_RF_ERROR 0x08u       /* plugin error; body has "error" */
#define PBUS_RF_METADATA 0x10u    /* body has "metadata" */
#define PBUS_RF_STATE 0x20u       /* body has "state" (local context) */
#define PBUS_RF_GSTATE 0x40u      /* body has "global_state" changes */
#define PBUS_RF_UNSUPPORTED 0x80u /* the agent has no handler for the hook */
#define PBUS_RF_ALL 0xffu

/*
 * Response frame header (agent -> gateway). A frame is `len` bytes, a
 * multiple of PBUS_FRAME_ALIGN, header included; the body (msgpack map)
 * follows the header. Frames never straddle the ring's end: the producer
 * writes a PAD frame to the end instead.
 */
struct pbus_resp_frame {
	uint32_t len;        /* commit word, written last: whole frame bytes,
			      * a multiple of PBUS_FRAME_ALIGN; 0 = none yet */
	uint32_t type;       /* PBUS_FRAME_* */
	uint64_t id;         /* request id being answered */
	uint32_t epoch;      /* channel epoch */
	uint32_t flags;      /* PBUS_RF_* */
	uint32_t body_len;   /* bytes of body after the header */
	uint32_t handler_ns; /* agent-measured handler time, saturated */
};
_Static_assert(sizeof(struct pbus_resp_frame) == 32, "shm ABI");

/* ---------------------------------------------------------------- arena */

#define PBUS_ARENA_HDR_SIZE 4096u

struct pbus_arena_hdr {
	uint32_t magic; /* PBUS_ARENA_MAGIC */
	uint32_t abi;
	uint64_t size;  /* whole arena, header included */
};
_Static_assert(sizeof(struct pbus_arena_hdr) == 16, "shm ABI");

/* ---------------------------------------------------------------- control */

/* Control socket (AF_UNIX, SOCK_SEQPACKET) message types */
#define PBUS_MSG_HELLO 1u   /* agent -> gateway */
#define PBUS_MSG_WELCOME 2u /* gateway -> agent, with 2 fds: channel, arena */
#define PBUS_MSG_REJECT 3u  /* gateway -> agent, then close */
#define PBUS_MSG_ADMIN 4u   /* admin client -> gateway */
#define PBUS_MSG_ADMIN_REPLY 5u

struct pbus_msg_hdr {
	uint32_t magic; /* PBUS_MAGIC */
	uint16_t type;  /* PBUS_MSG_* */
	uint16_t proto; /* PBUS_PROTO_VERSION */
	uint32_t abi;   /* PBUS_ABI_VERSION */
	uint32_t len;   /* whole message length */
};
_Static_assert(sizeof(struct pbus_msg_hdr) == 16, "ctl ABI");

struct pbus_msg_hello {
	struct pbus_msg_hdr h;
	uint32_t hooks; /* bit n: handles enum pbus_hook n */
	uint32_t pid;
	uint32_t flags;
	uint32_t _pad;
	char name[PBUS_NAME_MAX]; /* NUL-terminated plugin name */
};
_Static_assert(sizeof(struct pbus_msg_hello) == 96, "ctl ABI");

struct pbus_msg_welcome {
	struct pbus_msg_hdr h;
	int32_t status; /* 0; REJECT carries -errno */
	uint32_t epoch;
	uint64_t chan_size;
	uint64_t arena_size;
	char reason[128]; /* REJECT: why */
};
_Static_assert(sizeof(struct pbus_msg_welcome) == 168, "ctl ABI");

/*
 * Admin requests (any client whose uid passes the same check as agents).
 * Reply: struct pbus_msg_admin_reply followed by body_len bytes of msgpack:
 * for PBUS_ADMIN_LIST an array with one map per declared plugin slot:
 *   {"id": uint (dense, order of declaration), "name": str, "hooks": uint
 *    mask, "up": bool, "pid": int, "epoch": uint, "attaches": uint,
 *    "calls": uint, "completed": uint, "timeouts": uint, "agent_down": uint,
 *    "rejected": uint, ...more keys may follow}
 */
#define PBUS_ADMIN_LIST 1u
#define PBUS_ADMIN_RESTART 2u /* disconnect (and let supervision restart) @name */

struct pbus_msg_admin {
	struct pbus_msg_hdr h;
	uint32_t cmd; /* PBUS_ADMIN_* */
	uint32_t arg;
	char name[PBUS_NAME_MAX];
};
_Static_assert(sizeof(struct pbus_msg_admin) == 88, "ctl ABI");

struct pbus_msg_admin_reply {
	struct pbus_msg_hdr h;
	int32_t status;    /* 0 or -errno */
	uint32_t body_len; /* msgpack bytes that follow in the same message */
};
_Static_assert(sizeof(struct pbus_msg_admin_reply) == 24, "ctl ABI");

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif /* PBUS_ABI_H */
