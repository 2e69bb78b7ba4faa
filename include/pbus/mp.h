/* SPDX-License-Identifier: MIT */
/*
 * pbus_mp: a bounds-checked, allocation-free msgpack reader and rewriter for
 * untrusted bytes. Payloads, contexts and results live in shared memory that
 * an agent may only read; this module reads fields from them in place and
 * writes modified copies through any msgpack_packer without re-encoding the
 * parts that did not change.
 *
 * A view (struct pbus_mp) is a pointer and a length covering exactly one
 * msgpack object. pbus_mp_open() validates a whole buffer once: every length
 * within bounds, nesting depth at most PBUS_MP_MAX_DEPTH containers, no
 * truncation. Views obtained from a validated view (pbus_mp_get(),
 * pbus_mp_next(), ...) are exact, so they can be copied verbatim with
 * pbus_mp_copy(). Accessors still check every length against the view they
 * are given, so a hand-made or truncated view yields -EBADMSG, never an
 * out-of-bounds read. Nothing here allocates; the only recursion is in the
 * rewriter and is bounded by PBUS_MP_MAX_DEPTH.
 *
 * The empty view {NULL, 0} stands for "absent": its type is PBUS_MP_INVALID.
 *
 * Maps may carry the same key more than once (msgpack allows it). Every
 * lookup here takes the FIRST occurrence as the key's value and ignores the
 * rest; pbus_mp_set() and pbus_mp_merge() write each key they touch once.
 * String keys compare by content whatever their header width (fixstr, str8,
 * ...); other keys compare by their encoded bytes.
 *
 * Writers follow msgpack-c's argument order where they only pack
 * (pbus_mp_copy(pk, v), pbus_mp_pack_*(pk, ...)) and take the packer last
 * where they transform a view (pbus_mp_rewrite(), pbus_mp_set(), ...).
 * A writer that fails may have written part of its output: discard it.
 *
 * Errors (negative errno): -EBADMSG malformed msgpack, -EINVAL wrong type or
 * bad argument, -ENOENT no such key, index or path, -ERANGE number does not
 * fit, -ENOBUFS the packer's write callback failed, -EMSGSIZE a string longer
 * than msgpack can encode, -E2BIG a map too large for pbus_mp_merge().
 *
 * All functions are reentrant and thread-safe on distinct outputs.
 */
#ifndef PBUS_MP_H
#define PBUS_MP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

/* Deepest accepted container nesting (the root container is depth 1). */
#define PBUS_MP_MAX_DEPTH 64

/* pbus_mp_open2() flags */
#define PBUS_MP_ALLOW_TRAILING 0x1u /* bytes may follow the object */

/* pbus_mp_merge(): most entries accepted in each input map */
#define PBUS_MP_MERGE_MAX 512

enum pbus_mp_type {
	PBUS_MP_NIL,
	PBUS_MP_BOOL,
	PBUS_MP_INT,   /* any integer in [INT64_MIN, INT64_MAX] */
	PBUS_MP_UINT,  /* an integer above INT64_MAX */
	PBUS_MP_FLOAT, /* float32 or float64 */
	PBUS_MP_STR,
	PBUS_MP_BIN,
	PBUS_MP_ARRAY,
	PBUS_MP_MAP,
	PBUS_MP_EXT,	 /* ext and fixext, any type code */
	PBUS_MP_INVALID, /* empty view or malformed head */
};

/* A view of one msgpack object: p[0, len) holds exactly that object. */
struct pbus_mp {
	const uint8_t *p;
	size_t len;
};

/* Iterator over a map's pairs or an array's elements. */
struct pbus_mp_iter {
	const uint8_t *p;   /* next element */
	const uint8_t *end; /* end of the container's bytes */
	uint32_t left;	    /* elements (pairs for a map) not yet returned */
	uint32_t index;	    /* elements returned so far */
	bool is_map;
};

/* One step of a path: a map key, or an index into an array. */
struct pbus_mp_seg {
	struct pbus_mp key; /* the key object; {NULL, 0} inside an array */
	uint32_t index;	    /* array index, or the pair's position in its map */
};

/* Where the rewriter is: the chain of segments from the root to a value. */
struct pbus_mp_path {
	unsigned depth; /* segments in use; 0 for the root */
	struct pbus_mp_seg seg[PBUS_MP_MAX_DEPTH];
};

/*
 * Rewrite callback, called for every string VALUE (map values and array
 * elements, never map keys) at @path, with the string's bytes @s[0, @n)
 * (not NUL-terminated; they point into the input). Return 0 to keep the
 * string (writing nothing), or write exactly one replacement object through
 * @pk (of any type) and return 1, or return -errno to abort the rewrite with
 * that value. Write only through @pk, during the call: it flushes the
 * unchanged bytes that precede the string before the first byte of yours.
 */
typedef int pbus_mp_rewrite_fn(const struct pbus_mp_path *path, const char *s,
			       size_t n, void *arg, msgpack_packer *pk);

/*
 * Output for pbus_mp_rewrite_lazy(): return the packer to write to, or NULL
 * to abort (the rewrite then fails with -ENOBUFS). Called at most once.
 */
typedef msgpack_packer *pbus_mp_sink_fn(void *arg);

/*
 * Value callback for pbus_mp_set_fn(): write exactly one object through
 * @pk, which is the writer's own output, and return 0; or return -errno
 * (the writer then fails with that value).
 */
typedef int pbus_mp_value_fn(void *arg, msgpack_packer *pk);

/* ------------------------------------------------------------ parsing */

/*
 * Validate the msgpack object at the start of @buf[0, @len) and its whole
 * tree. Returns 0 with *out covering exactly that object, -EBADMSG if it is
 * malformed, truncated, nested deeper than PBUS_MP_MAX_DEPTH or followed by
 * trailing bytes. *out is untouched on failure. O(len), no allocation.
 */
int pbus_mp_open(const void *buf, size_t len, struct pbus_mp *out);

/*
 * pbus_mp_open() with @flags: PBUS_MP_ALLOW_TRAILING accepts bytes after the
 * object (out->len is then the object's own length). -EINVAL unknown flags.
 */
int pbus_mp_open2(const void *buf, size_t len, unsigned flags,
		  struct pbus_mp *out);

/* ------------------------------------------------------------ scalars */

/* The object's type; PBUS_MP_INVALID for an empty view or a malformed head
 * (unknown tag 0xc1, or a head or string/bin/ext body running past v.len). */
enum pbus_mp_type pbus_mp_type(struct pbus_mp v);

/* "nil", "bool", "int", ..., "invalid". Never NULL. */
const char *pbus_mp_type_name(enum pbus_mp_type t);

/* True if @v is nil. */
bool pbus_mp_is_nil(struct pbus_mp v);

/* 0 and *b; -EINVAL not a bool. */
int pbus_mp_bool(struct pbus_mp v, bool *b);

/* 0 and *i for any integer encoding; -ERANGE above INT64_MAX; -EINVAL not
 * an integer. */
int pbus_mp_int(struct pbus_mp v, int64_t *i);

/* 0 and *u; -ERANGE negative; -EINVAL not an integer. */
int pbus_mp_uint(struct pbus_mp v, uint64_t *u);

/* 0 and *d for float32, float64 and integers (converted, possibly rounded);
 * -EINVAL otherwise. */
int pbus_mp_float(struct pbus_mp v, double *d);

/*
 * 0 with *s pointing at the string's bytes (into the view, not
 * NUL-terminated) and *n its length; -EINVAL not a string; -EBADMSG the
 * body runs past the view. @s or @n may be NULL.
 */
int pbus_mp_str(struct pbus_mp v, const char **s, size_t *n);

/* True if @v is a string equal to @cstr (NUL-terminated) / to @s[0, @n). */
bool pbus_mp_str_eq(struct pbus_mp v, const char *cstr);
bool pbus_mp_str_eqn(struct pbus_mp v, const char *s, size_t n);

/* bin: like pbus_mp_str(). */
int pbus_mp_bin(struct pbus_mp v, const void **data, size_t *n);

/* ext or fixext: 0 with its type code, data and length; -EINVAL otherwise.
 * Any out-parameter may be NULL. */
int pbus_mp_ext(struct pbus_mp v, int8_t *type, const void **data, size_t *n);

/* ------------------------------------------------------------ containers */

/*
 * Elements of an array or pairs of a map (>= 0). -EINVAL neither; -EBADMSG
 * the head claims more elements than the view's bytes could hold.
 */
int64_t pbus_mp_count(struct pbus_mp v);

/*
 * Look up string key @key (NUL-terminated) / @key[0, @klen) in @map. Returns
 * 0 with *val covering the value (first occurrence), -ENOENT absent,
 * -EINVAL @map is not a map, -EBADMSG malformed. Non-string keys never
 * match. Linear in the bytes up to the end of the value.
 */
int pbus_mp_get(struct pbus_mp map, const char *key, struct pbus_mp *val);
int pbus_mp_getn(struct pbus_mp map, const char *key, size_t klen,
		 struct pbus_mp *val);

/*
 * pbus_mp_get() for @n string keys (NUL-terminated) in one pass over @map
 * (one pass per 16 keys): vals[i] is the value of the first occurrence of
 * keys[i], or the empty view when it is absent. Returns the number of keys
 * found (0..@n), -EINVAL @map is not a map, a key is NULL or @n > INT_MAX,
 * -EBADMSG malformed; on an error every vals[i] is the empty view. Each key
 * gives the answer pbus_mp_get() would, and the walk stops once all are
 * found.
 */
int pbus_mp_get_keys(struct pbus_mp map, const char *const *keys,
		     struct pbus_mp *vals, size_t n);

/* Element @i of @array: 0 and *val, -ENOENT out of range, -EINVAL not an
 * array, -EBADMSG malformed. */
int pbus_mp_index(struct pbus_mp array, size_t i, struct pbus_mp *val);

/*
 * Follow a dotted path from @v: each segment is a string key in a map, or a
 * decimal index in an array ("result.content.0.text"); "" is @v itself.
 * Keys containing '.' cannot be named here (use pbus_mp_get()). Returns 0 and
 * *out, -ENOENT if the path leads nowhere (missing key, index out of range,
 * a segment applied to anything but a map or array, including at the root),
 * -EINVAL empty segment ("a..b", ".a", "a."), -EBADMSG malformed.
 */
int pbus_mp_path(struct pbus_mp v, const char *path, struct pbus_mp *out);

/*
 * Start iterating a map or array. 0, -EINVAL neither, -EBADMSG malformed
 * head. The container's bytes must outlive the iterator.
 */
int pbus_mp_iter_init(struct pbus_mp v, struct pbus_mp_iter *it);

/*
 * Next element: returns 1 with *val (and for a map *key), 0 at the end,
 * -EBADMSG malformed (the iterator then stays at its end). For an array
 * *key is not written; the element's index is it->index - 1 after the call.
 * @key and @val may be NULL.
 */
int pbus_mp_next(struct pbus_mp_iter *it, struct pbus_mp *key,
		 struct pbus_mp *val);

/* ------------------------------------------------------------ writing */

/* Write @v's bytes through @pk as they are (one write). 0 or -ENOBUFS. */
int pbus_mp_copy(msgpack_packer *pk, struct pbus_mp v);

/* Pack a string; NULL @s packs nil. 0, -ENOBUFS, -EMSGSIZE @n > 2^32-1. */
int pbus_mp_pack_cstr(msgpack_packer *pk, const char *s);
int pbus_mp_pack_strn(msgpack_packer *pk, const char *s, size_t n);

/*
 * Deep-copy @v to @pk, passing every string value to @fn (see
 * pbus_mp_rewrite_fn). Bytes between replaced strings are written verbatim,
 * in as few writes as possible: an unchanged document is one write of v.p.
 * Returns 0 if @fn changed nothing (the output is byte-identical to @v),
 * 1 if at least one string was replaced, or -errno: @fn's own, -EBADMSG
 * malformed @v (including trailing bytes in the view), -EINVAL @fn broke its
 * contract (wrote and returned 0, or returned 1 without writing), -ENOBUFS
 * write failure. Recursion depth <= PBUS_MP_MAX_DEPTH; no allocation.
 */
int pbus_mp_rewrite(struct pbus_mp v, pbus_mp_rewrite_fn *fn, void *arg,
		    msgpack_packer *pk);

/*
 * pbus_mp_rewrite(), calling @fn only for strings whose path matches
 * @pattern (see pbus_mp_path_match(); NULL matches everything). Sub-trees
 * that cannot match are skipped without descending. -EINVAL bad pattern.
 */
int pbus_mp_rewrite_at(struct pbus_mp v, const char *pattern,
		       pbus_mp_rewrite_fn *fn, void *arg, msgpack_packer *pk);

/*
 * pbus_mp_rewrite_at() that writes nothing unless something changes: @sink
 * is called (once) only when @fn is about to write its first replacement,
 * and the whole modified document goes to the packer it returns. Returns 0
 * (nothing written, @sink not called), 1, or -errno as pbus_mp_rewrite().
 * Lets an agent answer "unmodified" without sending any bytes.
 */
int pbus_mp_rewrite_lazy(struct pbus_mp v, const char *pattern,
			 pbus_mp_rewrite_fn *fn, void *arg,
			 pbus_mp_sink_fn *sink, void *sink_arg);

/*
 * True if @path matches @pattern: dot-separated segments where a literal
 * matches a string key (or, if decimal, an array index too), "*" matches any
 * one segment and "**" any number (zero included). "args.*",
 * "result.content.*.text", "args.**". "" matches the root only. False for a
 * malformed pattern (empty segment, more than 63 segments).
 */
bool pbus_mp_path_match(const struct pbus_mp_path *path, const char *pattern);

/*
 * Format @path as "result.content.0.text" into @buf (always NUL-terminated
 * when @size > 0); non-string keys print as "?". Returns the length the full
 * text needs, like snprintf().
 */
size_t pbus_mp_path_format(const struct pbus_mp_path *path, char *buf,
			   size_t size);

/*
 * Write @map with string key @key set to @val: the first occurrence keeps its
 * position and key bytes, later duplicates are dropped, and a missing key is
 * appended. @map may be nil or the empty view (an empty map). Returns 0,
 * -EINVAL @map is not a map, -EBADMSG @map or @val malformed (@val must be
 * exactly one object, nested at most PBUS_MP_MAX_DEPTH - 1 deep so that the
 * result stays readable), -E2BIG a new key would make 2^32 pairs, -ENOBUFS
 * write failure. Nothing is written on -EINVAL/-EBADMSG/-E2BIG.
 */
int pbus_mp_set(struct pbus_mp map, const char *key, struct pbus_mp val,
		msgpack_packer *pk);
int pbus_mp_setn(struct pbus_mp map, const char *key, size_t klen,
		 struct pbus_mp val, msgpack_packer *pk);

/*
 * pbus_mp_set() with the new value written by @fn straight into @pk, where
 * the value goes: nothing is packed apart, validated and copied. @fn is
 * called once, unless @map is refused first (nothing is then written), and
 * may itself call a writer on @pk (a set or merge of a nested map). What it
 * writes is trusted, not checked: exactly one object, nested at most
 * PBUS_MP_MAX_DEPTH - 1 deep. Returns 0, @fn's error (a positive return
 * counts as -EINVAL), or as pbus_mp_set(): -EINVAL (@key or @fn NULL too),
 * -EBADMSG @map malformed, -E2BIG, -ENOBUFS.
 */
int pbus_mp_set_fn(struct pbus_mp map, const char *key, pbus_mp_value_fn *fn,
		   void *arg, msgpack_packer *pk);

/*
 * Write the shallow merge of two maps: every key of @base in its order, with
 * the value from @over where @over has the key, then the keys only @over
 * has, in @over's order. Each key appears once (first occurrence within each
 * map counts). Either map may be nil or the empty view. Returns 0, -EINVAL
 * not a map, -EBADMSG malformed, -E2BIG a map has more than PBUS_MP_MERGE_MAX
 * entries, -ENOBUFS write failure. Nothing is written unless it returns 0
 * or -ENOBUFS. Each key is decoded once; then O((n + m)^2) comparisons of
 * decoded keys, on a fixed stack budget (about 24 KiB).
 */
int pbus_mp_merge(struct pbus_mp base, struct pbus_mp over, msgpack_packer *pk);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif /* PBUS_MP_H */
