/* SPDX-License-Identifier: MIT */
/*
 * pbus-pii_filter internals: the detector (detect.c) and the hooks
 * (pii_filter.c). See pii_filter.c for what the agent does.
 */
#ifndef PBUS_AGENTS_PII_H
#define PBUS_AGENTS_PII_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../runtime/rt.h"

/* The framework's PIIType, in its order (the order types are reported in). */
enum pii_type {
	PII_SSN,
	PII_BSN,
	PII_CREDIT_CARD,
	PII_EMAIL,
	PII_PHONE,
	PII_IP_ADDRESS,
	PII_DATE_OF_BIRTH,
	PII_PASSPORT,
	PII_DRIVER_LICENSE,
	PII_BANK_ACCOUNT,
	PII_MEDICAL_RECORD,
	PII_AWS_KEY,
	PII_API_KEY,
	PII_CUSTOM,
	PII_NTYPES,
};

enum pii_strategy {
	PII_REDACT,
	PII_PARTIAL,
	PII_HASH,
	PII_TOKENIZE,
	PII_REMOVE,
	PII_NSTRATEGIES,
};

struct pii_pat {
	struct pyre *re;
	int type;	  /* enum pii_type */
	int strategy;	  /* enum pii_strategy */
	int wclass;	  /* detect.c's window class; -1: whole text */
	unsigned minlen;  /* a window must be at least this long */
	const char *must; /* ... and hold one of these characters */
	int gate;	  /* whole-text pattern run only when this class has a
			   * window (-1: always) */
	int label;	  /* whole-text pattern searched from its first label */
};

/* A run of one window class: [s, e). */
struct pii_win {
	uint32_t s, e;
};

#define PII_NWCLASS 12

/* One detection: [s, e) of the text. */
struct pii_det {
	uint32_t s, e;
	uint16_t type, strategy;
	uint32_t order; /* pattern index, then match order: ties keep it */
};

struct pii {
	/* config */
	bool detect[PII_CUSTOM];
	int default_strategy; /* validated, unused (as in the framework) */
	char *redaction;
	bool block, log, details;
	int whole_text; /* tests: 1 no windows, 2 no windows nor ASCII code */
	struct pii_pat *pats; /* grouped by type, types in first-seen order */
	int npats;
	int rank[PII_NTYPES];  /* a type's place in the report order */
	int order[PII_NTYPES]; /* the types in report order (ntypes of them) */
	int ntypes;
	struct pyre **wl; /* whitelist_patterns */
	int nwl;
	/* counters, for pii_filter_stats (process lifetime, as the plugin's) */
	uint64_t detection_count, masked_count;
	/* windows of the last scan, per class */
	struct pii_win *win[PII_NWCLASS];
	size_t nwin[PII_NWCLASS], cwin[PII_NWCLASS];
	unsigned class_min[PII_NWCLASS]; /* shortest window worth keeping */
	uint16_t fits[64];  /* classes whose class_min <= l (63: all) */
	unsigned ulen;	    /* the shorter of the two long-run classes' */
	bool labels;	    /* a pattern starts at a DL or MRN label */
	size_t label_at[3]; /* first DL / MRN label, or SIZE_MAX */
	/* the last pii_detect(): kept detections in text order */
	struct pii_det *det;
	size_t ndet, cap;
	unsigned tcount[PII_NTYPES]; /* per type, last pii_detect() */
	bool ascii;		     /* its text was ASCII (for pii_mask()) */
	struct sbuf out;	     /* pii_mask() output */
};

const char *pii_type_name(int type);
int pii_type_from_name(const char *s);
const char *pii_strategy_name(int s);
int pii_strategy_from_name(const char *s);

/* Compile the built-in patterns enabled by p->detect (pattern texts and
 * strategies are the framework's). 0 or -errno. */
int pii_add_builtins(struct pii *p, char *err, size_t errlen);
/* Add a custom pattern (searched over the whole text). */
int pii_add_pattern(struct pii *p, int type, const char *pat, int strategy,
		    char *err, size_t errlen);
/* Sort the patterns into report order once they are all added. */
void pii_finish(struct pii *p);

/*
 * Detect PII in @s[0, @n): every pattern's matches that no whitelist pattern
 * matches, overlaps within a type dropped as the framework did, then
 * overlaps across types resolved (earliest start wins, then the longest,
 * then the type reported first) so that every character is masked at most
 * once. Returns the number of detections (in p->det, text order; per type
 * in p->tcount) or -errno.
 */
int pii_detect(struct pii *p, const char *s, size_t n);

/* Mask the last detections in @s (the text pii_detect() was given): p->out
 * holds the masked text. 0 or -ENOMEM. */
int pii_mask(struct pii *p, const char *s, size_t n);

void pii_sha256(const void *data, size_t n, uint8_t out[32]);

/* `--self-test N` (selftest.c): the fast paths against the plain ones.
 * Returns the exit status. */
int pii_selftest(unsigned n);

#endif
