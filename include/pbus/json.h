/* SPDX-License-Identifier: MIT */
/*
 * JSON <-> msgpack, lossless for everything JSON and MCP carry. Hook payloads
 * travel as msgpack (PARITY.md 1.2); MCP speaks JSON. The JSON side is
 * jansson's json_t (jansson is only forward-declared here: include
 * <jansson.h> to use the json_t functions).
 *
 *	JSON		msgpack
 *	null		nil
 *	true/false	bool
 *	integer		int (smallest encoding), exact in [INT64_MIN, INT64_MAX]
 *	real		float64, exact (the same double comes back)
 *	string		str, UTF-8, may contain U+0000
 *	array		array
 *	object		map with string keys, in the object's order
 *
 * Going back, every msgpack type maps onto its JSON row, plus:
 *  - uint above INT64_MAX: JSON text keeps it exact; json_t cannot hold it
 *    (-ERANGE);
 *  - float32: the JSON number of the same value (in text, the shortest
 *    that reads back as that float32);
 *  - NaN and +-Inf: JSON has no spelling for them: -EDOM;
 *  - bin: a base64 string (RFC 4648, padded) with PBUS_JSON_BIN_BASE64,
 *    else -EINVAL; ext: always -EINVAL;
 *  - a map key that is not a string: -EINVAL;
 *  - a string (value or key) that is not valid UTF-8: -EILSEQ;
 *  - a key repeated in one map: the first occurrence wins, as in pbus_mp.
 * JSON integers outside int64 are refused with -ERANGE rather than rounded.
 *
 * Errors (negative errno): -EBADMSG invalid JSON text, malformed msgpack or
 * nesting deeper than PBUS_MP_MAX_DEPTH, -ERANGE, -EDOM, -EINVAL, -EILSEQ
 * as above, -ENOBUFS the packer's write callback failed, -ENOMEM.
 *
 * All functions are reentrant; recursion is bounded by PBUS_MP_MAX_DEPTH.
 */
#ifndef PBUS_JSON_H
#define PBUS_JSON_H

#include <stddef.h>

#include <pbus/mp.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

struct json_t; /* jansson's */

/* msgpack -> JSON flags */
#define PBUS_JSON_BIN_BASE64 0x1u /* bin becomes a base64 string */

/* Size of an error buffer that always holds the whole message. */
#define PBUS_JSON_ERR_MAX 200

/*
 * Parse the JSON text @text[0, @len) (one value of any type; surrounding
 * whitespace allowed) and write it as one msgpack object through @pk.
 * Returns 0, -EBADMSG (invalid JSON, or nested too deep), -ERANGE (integer
 * outside int64), -ENOBUFS, -ENOMEM. On failure @err (may be NULL, else
 * PBUS_JSON_ERR_MAX bytes) gets "line L, column C: reason".
 */
int pbus_json_to_mp(const char *text, size_t len, msgpack_packer *pk,
		    char *err);

/* Write the jansson value @j as one msgpack object through @pk. Returns 0,
 * -EINVAL NULL argument, -EBADMSG nested too deep, -ENOBUFS. */
int pbus_json_pack(msgpack_packer *pk, const struct json_t *j);

/*
 * Convert the msgpack object @v into a new jansson value: *out holds one
 * reference, the caller's. Returns 0, or -EBADMSG / -ERANGE / -EDOM /
 * -EINVAL / -EILSEQ / -ENOMEM as above; *out is untouched on failure.
 */
int pbus_json_from_mp(struct pbus_mp v, unsigned flags, struct json_t **out);

/*
 * Write the msgpack object @v as compact JSON text: *out is malloc()ed and
 * NUL-terminated, *len (may be NULL) its length. Reals print in the
 * shortest form that reads back as the same number, always with a '.' or
 * an exponent so they stay reals; uint64 stays exact; non-ASCII is written
 * as UTF-8 and control characters as escapes. Returns 0 or -errno as
 * pbus_json_from_mp() (never -ERANGE); *out is untouched on failure.
 */
int pbus_mp_to_json(struct pbus_mp v, unsigned flags, char **out, size_t *len);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif /* PBUS_JSON_H */
