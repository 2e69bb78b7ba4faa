// SPDX-License-Identifier: MIT
/*
 * pii_filter's detector: the framework's patterns (plugins/pii_filter/
 * pii_filter.py, PIIDetector), compiled once with PCRE2's JIT and Python's
 * flags (re.IGNORECASE, Unicode), its whitelist, its per-type de-duplication
 * and its masks -- plus the fix the framework lacked: overlapping matches of
 * *different* types are resolved before masking, so "123-45-6789" is one SSN
 * and not an SSN plus three phone numbers masked over each other.
 *
 * Speed: see "Windows" below.
 */
#include "pii.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#ifdef __SSE2__
#include <emmintrin.h> /* _mm_movemask_epi8() */
#endif

static const char *const type_names[PII_NTYPES] = {
	"ssn",
	"bsn",
	"credit_card",
	"email",
	"phone",
	"ip_address",
	"date_of_birth",
	"passport",
	"driver_license",
	"bank_account",
	"medical_record",
	"aws_key",
	"api_key",
	"custom",
};

static const char *const strategy_names[PII_NSTRATEGIES] = {
	"redact", "partial", "hash", "tokenize", "remove",
};

const char *pii_type_name(int type)
{
	return type >= 0 && type < PII_NTYPES ? type_names[type] : "?";
}

int pii_type_from_name(const char *s)
{
	for (int i = 0; i < PII_NTYPES; i++)
		if (!strcmp(s, type_names[i]))
			return i;
	return -EINVAL;
}

const char *pii_strategy_name(int s)
{
	return s >= 0 && s < PII_NSTRATEGIES ? strategy_names[s] : "?";
}

int pii_strategy_from_name(const char *s)
{
	for (int i = 0; i < PII_NSTRATEGIES; i++)
		if (!strcmp(s, strategy_names[i]))
			return i;
	return -EINVAL;
}

/* ---------------------------------------------------------------- patterns */

/*
 * Windows. In ASCII text every match of a built-in pattern lies inside one
 * maximal run of a character class (SSN: [0-9-]; e-mail: the characters an
 * address can hold; ...), so the pattern only needs to run inside runs long
 * enough to hold a match (and holding the character every match has, such
 * as the '-' of an SSN). The leftmost match at or after a position is in
 * the first such run that has one, and a search confined to a run, with one
 * character of look-ahead for \b, finds exactly what the search over the
 * whole text finds there. Runs are found from seeds every match contains
 * (digits, '@', ':'), or, for the long key classes, inside the words (runs
 * without a space) long enough to hold one. One pass reads the text 16
 * bytes at a time to find the digits, the label candidates and the long
 * words (scan()); the scalar code runs only where they are.
 *
 * The label-led patterns search the whole text, but from their first label
 * only (DL, MRN: a label followed by [#:\s]), or only when a run shows they
 * can match (a date for "DOB: 1/2/90", a 20-character token for API keys).
 * Custom patterns, and text with any non-ASCII byte, get plain whole-text
 * searches with Python's Unicode rules. The results are identical either
 * way (the whole_text knob turns the windows off to compare; `pbus-
 * pii_filter --self-test` does, on random texts).
 */
/* Labels (DL, MRN): every match has one followed by [#:\s]. */
#define LBL_DL 1
#define LBL_MRN 2

enum wclass {
	W_DIG,	  /* [0-9] */
	W_DIGP,	  /* [0-9+] */
	W_SSN,	  /* [0-9-] */
	W_DATE,	  /* [0-9/-] */
	W_CC,	  /* [0-9-] and \s */
	W_PHONE,  /* [0-9+().-] and \s */
	W_IP4,	  /* [0-9.] */
	W_IP6,	  /* [0-9A-Fa-f:] around a ':' */
	W_EMAIL,  /* [A-Za-z0-9._%+|@-] around an '@' */
	W_ALNUMD, /* [A-Za-z0-9] holding a digit */
	W_B64,	  /* [A-Za-z0-9/+=], 40 or more */
	W_KEY20,  /* [A-Za-z0-9_-], 20 or more */
	W_NCLASS,
	W_NONE = -1,
};

_Static_assert(W_NCLASS == PII_NWCLASS, "pii.h's PII_NWCLASS");

static const struct builtin {
	int type;
	int strategy;
	int wclass;	  /* enum wclass, or W_NONE: whole text */
	unsigned minlen;  /* shortest match */
	const char *must; /* a run must hold one of these characters */
	int gate;	  /* a window of this class (or -1) lets the pattern
			   * run over the whole text */
	int label;	  /* LBL_*: start at the first label (0: none) */
	const char *re;
} builtins[] = {
	{PII_SSN, PII_PARTIAL, W_SSN, 11, "-", -1, 0,
	 "\\b\\d{3}-\\d{2}-\\d{4}\\b"},
	{PII_BSN, PII_PARTIAL, W_DIG, 9, NULL, -1, 0, "\\b\\d{9}\\b"},
	{PII_CREDIT_CARD, PII_PARTIAL, W_CC, 16, NULL, -1, 0,
	 "\\b(?:\\d{4}[-\\s]?){3}\\d{4}\\b"},
	{PII_EMAIL, PII_PARTIAL, W_EMAIL, 6, NULL, -1, 0,
	 "\\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\\.[A-Z|a-z]{2,}\\b"},
	{PII_PHONE, PII_PARTIAL, W_PHONE, 10, NULL, -1, 0,
	 "\\b(?:\\+?1[-.\\s]?)?\\(?\\d{3}\\)?[-.\\s]?\\d{3}[-.\\s]?\\d{4}\\b"},
	{PII_PHONE, PII_PARTIAL, W_DIGP, 2, NULL, -1, 0,
	 "\\b\\+?[1-9]\\d{1,14}\\b"},
	{PII_IP_ADDRESS, PII_REDACT, W_IP4, 7, ".", -1, 0,
	 "\\b(?:(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\\.){3}"
	 "(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\\b"},
	{PII_IP_ADDRESS, PII_REDACT, W_IP6, 15, NULL, -1, 0,
	 "\\b(?:[A-Fa-f0-9]{1,4}:){7}[A-Fa-f0-9]{1,4}\\b"},
	{PII_DATE_OF_BIRTH, PII_REDACT, W_NONE, 6, "-/", W_DATE, 0,
	 "\\b(?:DOB|Date of Birth|Born|Birthday)[:\\s]+\\d{1,2}[-/]\\d{1,2}"
	 "[-/]\\d{2,4}\\b"},
	{PII_DATE_OF_BIRTH, PII_REDACT, W_DATE, 10, "-/", -1, 0,
	 "\\b(?:0[1-9]|1[0-2])[-/](?:0[1-9]|[12]\\d|3[01])[-/](?:19|20)"
	 "\\d{2}\\b"},
	{PII_PASSPORT, PII_REDACT, W_ALNUMD, 7, NULL, -1, 0,
	 "\\b[A-Z]{1,2}\\d{6,9}\\b"},
	{PII_DRIVER_LICENSE, PII_REDACT, W_NONE, 0, NULL, -1, LBL_DL,
	 "\\b(?:DL|License|Driver\\'?s? License)[#:\\s]+[A-Z0-9]{5,20}\\b"},
	{PII_BANK_ACCOUNT, PII_REDACT, W_DIG, 8, NULL, -1, 0,
	 "\\b\\d{8,17}\\b"},
	{PII_BANK_ACCOUNT, PII_PARTIAL, W_ALNUMD, 15, NULL, -1, 0,
	 "\\b[A-Z]{2}\\d{2}[A-Z0-9]{4}\\d{7}(?:\\d{3})?\\b"},
	{PII_MEDICAL_RECORD, PII_REDACT, W_NONE, 0, NULL, -1, LBL_MRN,
	 "\\b(?:MRN|Medical Record)[#:\\s]+[A-Z0-9]{6,12}\\b"},
	{PII_AWS_KEY, PII_REDACT, W_KEY20, 20, NULL, -1, 0,
	 "\\bAKIA[0-9A-Z]{16}\\b"},
	{PII_AWS_KEY, PII_REDACT, W_B64, 40, NULL, -1, 0,
	 "\\b[A-Za-z0-9/+=]{40}\\b"},
	{PII_API_KEY, PII_REDACT, W_NONE, 20, NULL, W_KEY20, 0,
	 "\\b(?:api[_-]?key|apikey|api_token|access[_-]?token)[:\\s]+"
	 "['\"]?[A-Za-z0-9\\-_]{20,}['\"]?\\b"},
};

static int add(struct pii *p, const struct pii_pat *pt, const char *pat,
	       char *err, size_t errlen)
{
	struct pii_pat *np =
		realloc(p->pats, ((size_t)p->npats + 1) * sizeof(*np));
	int ret;

	if (!np)
		return -ENOMEM;
	p->pats = np;
	np[p->npats] = *pt;
	ret = pyre_compile(pat, PYRE_IGNORECASE, &np[p->npats].re, err, errlen);
	if (ret)
		return ret;
	p->npats++;
	return 0;
}

int pii_add_pattern(struct pii *p, int type, const char *pat, int strategy,
		    char *err, size_t errlen)
{
	struct pii_pat pt = {.type = type,
			     .strategy = strategy,
			     .wclass = W_NONE,
			     .gate = W_NONE};

	return add(p, &pt, pat, err, errlen);
}

int pii_add_builtins(struct pii *p, char *err, size_t errlen)
{
	for (size_t i = 0; i < sizeof(builtins) / sizeof(builtins[0]); i++) {
		const struct builtin *b = &builtins[i];
		struct pii_pat pt = {.type = b->type,
				     .strategy = b->strategy,
				     .wclass = b->wclass,
				     .minlen = b->minlen,
				     .must = b->must,
				     .gate = b->gate,
				     .label = b->label};
		int ret;

		if (!p->detect[b->type])
			continue;
		ret = add(p, &pt, b->re, err, errlen);
		if (ret)
			return ret;
	}
	return 0;
}

void pii_finish(struct pii *p)
{
	int next = 0;

	/* A type's rank is where it first appears: the framework keyed its
	 * pattern dict by type in insertion order. */
	for (int t = 0; t < PII_NTYPES; t++)
		p->rank[t] = PII_NTYPES + t;
	for (int i = 0; i < p->npats; i++)
		if (p->rank[p->pats[i].type] >= PII_NTYPES)
			p->rank[p->pats[i].type] = next++;
	p->ntypes = 0;
	for (int r = 0; r < next; r++)
		for (int t = 0; t < PII_NTYPES; t++)
			if (p->rank[t] == r)
				p->order[p->ntypes++] = t;
	/* A stable sort by rank (insertion sort: a few dozen patterns). */
	for (int i = 1; i < p->npats; i++) {
		struct pii_pat v = p->pats[i];
		int j = i - 1;

		while (j >= 0 && p->rank[p->pats[j].type] > p->rank[v.type]) {
			p->pats[j + 1] = p->pats[j];
			j--;
		}
		p->pats[j + 1] = v;
	}
	/* Keep only windows some pattern of that class can use. */
	for (int c = 0; c < PII_NWCLASS; c++)
		p->class_min[c] = UINT32_MAX;
	for (int i = 0; i < p->npats; i++) {
		const struct pii_pat *pt = &p->pats[i];

		int c = pt->wclass >= 0 ? pt->wclass : pt->gate;

		if (c >= 0 && pt->minlen < p->class_min[c])
			p->class_min[c] = pt->minlen;
		p->labels |= pt->label != 0;
	}
	/* fits[l]: the classes a window of l bytes can serve (63: any) */
	for (unsigned l = 0; l < 64; l++)
		for (int c = 0; c < PII_NWCLASS; c++)
			if (l == 63 || p->class_min[c] <= l)
				p->fits[l] |= (uint16_t)(1u << c);
	p->ulen = p->class_min[W_B64] < p->class_min[W_KEY20]
			  ? p->class_min[W_B64]
			  : p->class_min[W_KEY20];
}

/* ---------------------------------------------------------------- scan */

static uint16_t wtab[256]; /* byte -> window classes it belongs to */
#define SEP 0x8000u	   /* wtab: [#:\s], what follows a DL or MRN label */

static void wtab_init(void)
{
	static const char *const members[W_NCLASS] = {
		[W_DIG] = "",
		[W_DIGP] = "+",
		[W_SSN] = "-",
		[W_DATE] = "/-",
		[W_CC] = "- \t\n\v\f\r",
		[W_PHONE] = "+().- \t\n\v\f\r",
		[W_IP4] = ".",
		[W_IP6] = "abcdefABCDEF:",
		[W_EMAIL] = "._%+|@-",
		[W_ALNUMD] = "",
		[W_B64] = "/+=",
		[W_KEY20] = "_-",
	};

	for (int c = 0; c < W_NCLASS; c++)
		for (const char *m = members[c]; *m; m++)
			wtab[(unsigned char)*m] |= (uint16_t)(1u << c);
	for (int ch = '0'; ch <= '9'; ch++)
		wtab[ch] |=
			(1u << W_NCLASS) - 1; /* a digit is in every class */
	for (int ch = 0; ch < 128; ch++)
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'))
			wtab[ch] |= 1u << W_EMAIL | 1u << W_ALNUMD |
				    1u << W_B64 | 1u << W_KEY20;
	for (const char *m = "#: \t\n\v\f\r"; *m; m++)
		wtab[(unsigned char)*m] |= SEP;
	wtab[0x80] = 0x4000; /* not a class: marks the table as built */
}

static int add_win(struct pii *p, int c, size_t s, size_t e)
{
	if (p->nwin[c] && p->win[c][p->nwin[c] - 1].s == s)
		return 0; /* the same run, seen from another seed */
	if (e - s < p->class_min[c])
		return 0;
	if (p->nwin[c] == p->cwin[c]) {
		size_t nc = p->cwin[c] ? p->cwin[c] * 2 : 16;
		struct pii_win *nw = realloc(p->win[c], nc * sizeof(*nw));

		if (!nw)
			return -ENOMEM;
		p->win[c] = nw;
		p->cwin[c] = nc;
	}
	p->win[c][p->nwin[c]++] = (struct pii_win){(uint32_t)s, (uint32_t)e};
	return 0;
}

/* The maximal run of class @c around [@a, @b) (all of it in @c). */
static int grow(struct pii *p, const unsigned char *u, size_t n, int c,
		size_t a, size_t b)
{
	uint16_t bit = (uint16_t)(1u << c);

	if (p->nwin[c] && p->win[c][p->nwin[c] - 1].e > a)
		return 0; /* inside the last run found */
	while (a > 0 && (wtab[u[a - 1]] & bit))
		a--;
	while (b < n && (wtab[u[b]] & bit))
		b++;
	return add_win(p, c, a, b);
}

/* The digit classes seeded by the digit run [@a, @b): one walk each way
 * extends every class at once, dropping a class where its run ends. */
#define DIGIT_SEEDED                                                           \
	(1u << W_DIG | 1u << W_DIGP | 1u << W_SSN | 1u << W_DATE |             \
	 1u << W_CC | 1u << W_PHONE | 1u << W_IP4 | 1u << W_ALNUMD)

static int grow_digits(struct pii *p, const unsigned char *u, size_t n,
		       size_t a, size_t b)
{
	size_t lo[W_NCLASS], hi[W_NCLASS], reach;
	unsigned lm = 0, rm = 0, act, keep, d;
	size_t j;
	int ret;

	/* Most classes end at the digits themselves (a number between
	 * words): only those that go on (lm, rm) are walked and stored. */
	act = a ? DIGIT_SEEDED & wtab[u[a - 1]] : 0;
	for (j = a - 1, lm = act; act; j--) {
		keep = j ? act & wtab[u[j - 1]] : 0;
		for (d = act & ~keep; d; d &= d - 1)
			lo[__builtin_ctz(d)] = j;
		act = keep;
	}
	reach = b - (j + 1); /* j + 1: the lowest lo (a if none went on) */
	act = b < n ? DIGIT_SEEDED & wtab[u[b]] : 0;
	for (j = b + 1, rm = act; act; j++) {
		keep = j < n ? act & wtab[u[j]] : 0;
		for (d = act & ~keep; d; d &= d - 1)
			hi[__builtin_ctz(d)] = j;
		act = keep;
	}
	reach += j - 1 - b; /* j - 1: the highest hi (b if none went on) */
	/* Only classes whose window can be long enough: those that stayed
	 * [a, b) need b - a >= class_min, the others at most reach. */
	d = (DIGIT_SEEDED & ~(lm | rm) & p->fits[b - a < 63 ? b - a : 63]) |
	    ((lm | rm) & p->fits[reach < 63 ? reach : 63]);
	for (; d; d &= d - 1) {
		int c = __builtin_ctz(d);
		size_t s = lm >> c & 1 ? lo[c] : a, e = rm >> c & 1 ? hi[c] : b;

		if (e - s < p->class_min[c] ||
		    (p->nwin[c] && p->win[c][p->nwin[c] - 1].e > a))
			continue;
		ret = add_win(p, c, s, e);
		if (ret)
			return ret;
	}
	return 0;
}

/*
 * Long runs (W_B64, W_KEY20). Both classes lie inside the bytes above ' '
 * (and below 0x80), so a run of either is inside a run of such bytes -- a
 * word, in prose -- bounded by "breaks": spaces, controls, non-ASCII.
 */
static inline bool is_break(unsigned char c)
{
	return c <= ' ' || c >= 0x80;
}

/* The maximal runs of class @c inside the word [@a, @b), at least
 * class_min[c] long (maximal in the text too: the word's ends are breaks). */
static int class_runs(struct pii *p, const unsigned char *u, size_t a, size_t b,
		      int c)
{
	uint16_t bit = (uint16_t)(1u << c);

	if (b - a < p->class_min[c])
		return 0;
	while (a < b) {
		size_t e = a;

		while (e < b && (wtab[u[e]] & bit))
			e++;
		if (e - a >= p->class_min[c] && add_win(p, c, a, e))
			return -ENOMEM;
		a = e + 1;
	}
	return 0;
}

/* The word around @at (not a break), if it is long enough: its long runs.
 * Returns where the word ends, or 0 on -ENOMEM. */
static size_t long_word(struct pii *p, const unsigned char *u, size_t n,
			size_t at)
{
	size_t a = at, b = at + 1;

	while (a > 0 && !is_break(u[a - 1]))
		a--;
	while (b < n && !is_break(u[b]))
		b++;
	if (b - a >= p->ulen &&
	    (class_runs(p, u, a, b, W_B64) || class_runs(p, u, a, b, W_KEY20)))
		return 0;
	return b;
}

/* @lit (lower case) ends at @u[i], ignoring ASCII case. */
static bool ends_ci(const unsigned char *u, size_t i, const char *lit)
{
	size_t l = strlen(lit);

	if (i < l)
		return false;
	for (size_t k = 0; k < l; k++)
		if ((u[i - l + k] | 0x20) != (unsigned char)lit[k])
			return false;
	return true;
}

/* A separator at @i: is it the end of the first DL or MRN label? */
static inline void label_before(struct pii *p, const unsigned char *u, size_t i)
{
	unsigned char c = i ? u[i - 1] | 0x20 : 0;

	if (p->label_at[LBL_DL] == SIZE_MAX) {
		if (c == 'l' && ends_ci(u, i, "dl"))
			p->label_at[LBL_DL] = i - 2;
		else if (c == 'e' && ends_ci(u, i, "license"))
			p->label_at[LBL_DL] = i - 7;
	}
	if (p->label_at[LBL_MRN] == SIZE_MAX) {
		if (c == 'n' && ends_ci(u, i, "mrn"))
			p->label_at[LBL_MRN] = i - 3;
		else if (c == 'd' && ends_ci(u, i, "medical record"))
			p->label_at[LBL_MRN] = i - 14;
	}
}

/*
 * Sixteen bytes at a time. A vector of int8_t (GCC's vector extension:
 * plain C, SSE2 on x86-64) holds 16 text bytes; a comparison gives 0 or -1
 * per byte. ASCII is 0..127, so signed comparisons order it and every byte
 * >= 0x80 is negative.
 */
typedef int8_t v16 __attribute__((vector_size(16)));

/* Mask @m as 16 bits, bit k for byte k: one instruction with SSE2, else
 * a multiply gathers the eight top bits of each half into its top byte. */
#ifdef __SSE2__
static inline unsigned bits16(v16 m)
{
	return (unsigned)_mm_movemask_epi8((__m128i)m);
}
#else
static inline unsigned bits16(v16 m)
{
	const uint64_t gather = 0x0002040810204081ull;
	uint64_t lo, hi;

	memcpy(&lo, &m, 8);
	memcpy(&hi, (const char *)&m + 8, 8);
	lo &= 0x8080808080808080ull;
	hi &= 0x8080808080808080ull;
	return (unsigned)((lo * gather) >> 56 | (hi * gather) >> 56 << 8);
}
#endif

/*
 * DL/MRN label candidates in @c, whose bytes one and two before are @p1 and
 * @p2: a separator after the last two letters of a label (dL, licenSE, mRN,
 * recoRD; any case). Separators are [#:\s]; taking every byte up to ' '
 * (and non-ASCII) is a superset, which label_before() reads as a label at
 * most earlier: the labelled patterns then only start searching earlier,
 * and find the same matches.
 */
static inline v16 label_ends(v16 c, v16 p1, v16 p2)
{
	p1 |= 0x20;
	p2 |= 0x20;
	return ((c <= ' ') | (c == '#') | (c == ':')) &
	       (((p1 == 'l') & (p2 == 'd')) | ((p1 == 'e') & (p2 == 's')) |
		(((p1 == 'n') | (p1 == 'd')) & (p2 == 'r')));
}

/* All long runs, byte by byte: for class_min below 15 (see scan()). */
static int long_runs_all(struct pii *p, const unsigned char *u, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!is_break(u[i]) && !(i = long_word(p, u, n, i)))
			return -ENOMEM;
	return 0;
}

/* The digit runs and label candidates among the bits of @m, for the block
 * at @i. *dnext: digits before it were in a run already grown. */
static int events(struct pii *p, const unsigned char *u, size_t n, size_t i,
		  unsigned m, size_t *dnext)
{
	int ret = 0;

	for (; m && !ret; m &= m - 1) {
		size_t j = i + (size_t)__builtin_ctz(m), b;

		if ((unsigned)(u[j] - '0') > 9) {
			label_before(p, u, j);
			continue;
		}
		if (j < *dnext)
			continue; /* in the last digit run */
		for (b = j + 1; b < n && (unsigned)(u[b] - '0') <= 9; b++)
			;
		ret = grow_digits(p, u, n, j, b);
		*dnext = b;
	}
	return ret;
}

/*
 * The windows of ASCII text: runs grown from the characters every match of
 * a class holds (digits, '@', ':'), and the long runs of the key classes.
 * One pass, 16 bytes at a time, finds the digits, the separators that may
 * end a DL or MRN label, and the 8-byte halves without a break (a run of 15
 * or more bytes fills one); the scalar code runs only where they are.
 * Returns 1, 0 if the text has a non-ASCII byte (what was recorded is then
 * unused), or -ENOMEM.
 */
static int scan(struct pii *p, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	bool words = p->ulen >= 15 && p->ulen != UINT32_MAX;
	size_t dnext = 0; /* see events() */
	size_t wnext = 0; /* words before this were looked at */
	v16 high = {0};	  /* every byte ORed: non-ASCII sets bit 7 */
	int ret = 0;

	if (!wtab[0x80])
		wtab_init();
	for (int c = 0; c < W_NCLASS; c++)
		p->nwin[c] = 0;
	p->label_at[LBL_DL] = p->label_at[LBL_MRN] = SIZE_MAX;
	for (size_t i = 0; i < n && !ret; i += 16) {
		const unsigned char *q = u + i;
		unsigned char pad[2 + 16];
		unsigned m;
		v16 c, p1, p2, ev;

		if (i < 2 || n - i < 16) {
			/* the first block and the last: through a copy, with
			 * zeros outside the text */
			for (size_t k = 0; k < sizeof(pad); k++)
				pad[k] = i + k >= 2 && i + k - 2 < n
						 ? u[i + k - 2]
						 : 0;
			q = pad + 2;
		}
		memcpy(&c, q, 16);
		memcpy(&p1, q - 1, 16);
		memcpy(&p2, q - 2, 16);
		high |= c;
		ev = (c >= '0') & (c <= '9');
		if (p->labels)
			ev |= label_ends(c, p1, p2);
		m = bits16(ev);
		if (m) {
			if (n - i < 16) /* not past the text */
				m &= (1u << (n - i)) - 1;
			ret = events(p, u, n, i, m, &dnext);
		}
		if (!words || ret)
			continue;
		/* the zeros after the text are breaks */
		m = bits16(c <= ' ');
		if ((m & 0xff) && (m >> 8))
			continue;
		for (int h = 0; h < 2 && !ret; h++) {
			if ((m >> 8 * h & 0xff) || i + 8 * (size_t)h < wnext)
				continue;
			wnext = long_word(p, u, n, i + 8 * (size_t)h);
			if (!wnext)
				ret = -ENOMEM;
		}
	}
	if (!ret && p->ulen < 15)
		ret = long_runs_all(p, u, n);
	if (bits16(high))
		return ret < 0 ? ret : 0;
	for (const char *q = s;
	     !ret && (q = memchr(q, '@', n - (size_t)(q - s))); q++)
		ret = grow(p, u, n, W_EMAIL, (size_t)(q - s),
			   (size_t)(q - s) + 1);
	for (const char *q = s;
	     !ret && (q = memchr(q, ':', n - (size_t)(q - s))); q++)
		ret = grow(p, u, n, W_IP6, (size_t)(q - s),
			   (size_t)(q - s) + 1);
	if (ret)
		return ret;
	return 1;
}

/* ---------------------------------------------------------------- detect */

static int whitelisted(struct pii *p, const char *s, size_t n)
{
	for (int i = 0; i < p->nwl; i++) {
		int ret = pyre_search(p->wl[i], s, n);

		if (ret)
			return ret; /* 1, or an error */
	}
	return 0;
}

static int push(struct pii *p, const struct pii_det *d)
{
	if (p->ndet == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 64;
		struct pii_det *nd = realloc(p->det, cap * sizeof(*nd));

		if (!nd)
			return -ENOMEM;
		p->det = nd;
		p->cap = cap;
	}
	p->det[p->ndet++] = *d;
	return 0;
}

/* The framework's same-type overlap test (PIIDetector.detect). */
static int overlaps_type(const struct pii *p, size_t from, size_t s, size_t e)
{
	for (size_t i = from; i < p->ndet; i++) {
		size_t a = p->det[i].s, b = p->det[i].e;

		if ((s >= a && s < b) || (e > a && e <= b) ||
		    (s <= a && e >= b))
			return 1;
	}
	return 0;
}

static int cmp_det(const void *a, const void *b)
{
	const struct pii_det *x = a, *y = b;
	uint32_t lx = x->e - x->s, ly = y->e - y->s;

	if (x->s != y->s)
		return x->s < y->s ? -1 : 1;
	if (lx != ly)
		return lx > ly ? -1 : 1;
	return x->order < y->order ? -1 : x->order > y->order;
}

struct ctx {
	struct pii *p;
	const char *s;
	size_t type_from;
	unsigned seq;
};

/* Every match of @pt in @s[0, @n) from @pos on (an iterator over a window
 * or the whole text), filtered and kept as the framework did. */
static int collect(struct ctx *x, const struct pii_pat *pt, size_t n,
		   size_t pos, bool ascii)
{
	struct pii *p = x->p;
	struct pyre_iter it;
	size_t ms, me;
	int ret;

	pyre_iter_init2(&it, pt->re, x->s, n, ascii);
	it.pos = pos;
	while ((ret = pyre_iter_next(&it, &ms, &me)) > 0) {
		struct pii_det d;

		ret = whitelisted(p, x->s + ms, me - ms);
		if (ret < 0)
			return ret;
		if (ret || overlaps_type(p, x->type_from, ms, me))
			continue;
		d.s = (uint32_t)ms;
		d.e = (uint32_t)me;
		d.type = (uint16_t)pt->type;
		d.strategy = (uint16_t)pt->strategy;
		d.order = (uint32_t)p->rank[pt->type] << 24 |
			  (x->seq++ & 0xffffff);
		ret = push(p, &d);
		if (ret)
			return ret;
	}
	return ret;
}

static bool holds(const char *s, size_t n, const char *chars)
{
	for (; *chars; chars++)
		if (memchr(s, *chars, n))
			return true;
	return false;
}

/* \d{1,2}[-/]\d{1,2}[-/]\d{2} at @u[0, @n): the start of a labelled date. */
static bool date_at(const unsigned char *u, size_t n)
{
	size_t i = 0;

	for (int part = 0; part < 3; part++) {
		size_t d = 0;

		while (i < n && d < 2 && (unsigned)(u[i] - '0') <= 9)
			i++, d++;
		if (!d || (part == 2 && d < 2))
			return false;
		if (part < 2) {
			if (i >= n || (u[i] != '-' && u[i] != '/'))
				return false;
			i++;
		}
	}
	return true;
}

/*
 * Can @pt match at all, given the windows of its gate class? The labelled
 * date pattern's date follows [:\s], so it starts a [0-9/-] run; the API
 * key pattern's key is a long [A-Za-z0-9_-] run.
 */
static bool has_window(const struct pii *p, const struct pii_pat *pt,
		       const char *s, int c)
{
	for (size_t k = 0; k < p->nwin[c]; k++) {
		const struct pii_win *w = &p->win[c][k];

		if (w->e - w->s < pt->minlen)
			continue;
		if (c == W_DATE) {
			if (date_at((const unsigned char *)s + w->s,
				    w->e - w->s))
				return true;
		} else if (!pt->must ||
			   holds(s + w->s, w->e - w->s, pt->must)) {
			return true;
		}
	}
	return false;
}

int pii_detect(struct pii *p, const char *s, size_t n)
{
	struct ctx x = {.p = p, .s = s};
	size_t kept = 0, end = 0;
	int cur = -1, ret;
	bool ascii, win;

	p->ndet = 0;
	memset(p->tcount, 0, sizeof(p->tcount));
	ret = p->whole_text ? 0 : scan(p, s, n);
	if (ret < 0)
		return ret;
	win = ret == 1;
	/* ASCII text: windows were found (scan() checked), or (tests)
	 * checked here */
	p->ascii = win || (p->whole_text && pyre_is_ascii(s, n));
	ascii = win || (p->whole_text == 1 && p->ascii);
	for (int i = 0; i < p->npats; i++) {
		const struct pii_pat *pt = &p->pats[i];

		if (pt->type != cur) {
			cur = pt->type;
			x.type_from = p->ndet;
		}
		if (!win || pt->wclass < 0) {
			/* whole text, unless a gate class found nothing */
			size_t from = 0;

			ret = 0;
			if (win && pt->label) {
				/* "Driver's License": 9 bytes before */
				from = p->label_at[pt->label];
				from = from == SIZE_MAX ? n + 1
				       : from > 9	? from - 9
							: 0;
			}
			if (from <= n && (!win || pt->gate < 0 ||
					  has_window(p, pt, s, pt->gate)))
				ret = collect(&x, pt, n, from, ascii);
		} else {
			const struct pii_win *w = p->win[pt->wclass];

			ret = 0;
			for (size_t k = 0; k < p->nwin[pt->wclass] && !ret;
			     k++) {
				size_t len = w[k].e - w[k].s;

				if (len < pt->minlen ||
				    (pt->must &&
				     !holds(s + w[k].s, len, pt->must)))
					continue;
				/* the run, plus one character for \b */
				ret = collect(&x, pt,
					      w[k].e < n ? w[k].e + 1 : n,
					      w[k].s, true);
			}
		}
		if (ret < 0)
			return ret;
	}
	if (!p->ndet)
		return 0;
	/* Across types: earliest start, then longest, then report order
	 * (a total order: any sort gives the same result). A few detections,
	 * mostly in order already, are sorted faster in place. */
	if (p->ndet <= 16) {
		for (size_t i = 1; i < p->ndet; i++) {
			struct pii_det v = p->det[i];
			size_t j = i;

			for (; j && cmp_det(&p->det[j - 1], &v) > 0; j--)
				p->det[j] = p->det[j - 1];
			p->det[j] = v;
		}
	} else {
		qsort(p->det, p->ndet, sizeof(*p->det), cmp_det);
	}
	for (size_t i = 0; i < p->ndet; i++) {
		const struct pii_det *d = &p->det[i];

		if (kept && (d->s < end || (d->s == p->det[kept - 1].s &&
					    d->e == p->det[kept - 1].e)))
			continue; /* overlaps (or repeats) a kept one */
		p->det[kept++] = *d;
		p->tcount[d->type]++;
		end = d->e;
	}
	p->ndet = kept;
	return (int)kept;
}

/* ---------------------------------------------------------------- mask */

/* Python's len() of @v[0, @n): its bytes when the text is ASCII. */
static size_t ulen(const struct pii *p, const char *v, size_t n)
{
	return p->ascii ? n : utf8_len(v, n);
}

/* The last @k characters of @v[0, @n). */
static void add_last(struct pii *p, const char *v, size_t n, size_t k)
{
	size_t len = ulen(p, v, n);
	size_t off = 0;

	if (len > k)
		off = p->ascii ? len - k : utf8_off(v, n, len - k);
	sbuf_add(&p->out, v + off, n - off);
}

static void mask_partial(struct pii *p, const char *v, size_t n, int type)
{
	struct sbuf *o = &p->out;
	size_t len = ulen(p, v, n);

	switch (type) {
	case PII_SSN:
	case PII_BSN:
	case PII_CREDIT_CARD:
	case PII_PHONE:
		if (len < 4)
			break;
		sbuf_adds(o, type == PII_SSN	 ? "***-**-"
			     : type == PII_BSN	 ? "*****"
			     : type == PII_PHONE ? "***-***-"
						 : "****-****-****-");
		add_last(p, v, n, 4);
		return;
	case PII_EMAIL: {
		const char *at = memchr(v, '@', n);
		size_t nl, dl;

		if (!at || memchr(at + 1, '@', n - (size_t)(at - v) - 1))
			break; /* split("@") must give exactly two parts */
		nl = (size_t)(at - v);
		dl = n - nl - 1;
		if (ulen(p, v, nl) > 2) {
			size_t c1 = p->ascii ? 1 : utf8_clen(v, nl);

			sbuf_add(o, v, c1);
			sbuf_adds(o, "***");
			add_last(p, v, nl, 1);
		} else {
			sbuf_adds(o, "***");
		}
		sbuf_addc(o, '@');
		sbuf_add(o, at + 1, dl);
		return;
	}
	default:
		if (len <= 2)
			break;
		sbuf_add(o, v, p->ascii ? 1 : utf8_clen(v, n));
		for (size_t i = 0; i < len - 2; i++)
			sbuf_addc(o, '*');
		add_last(p, v, n, 1);
		return;
	}
	sbuf_adds(o, p->redaction);
}

static void mask_one(struct pii *p, const char *v, size_t n,
		     const struct pii_det *d)
{
	static const char hex[] = "0123456789abcdef";
	struct sbuf *o = &p->out;
	uint8_t h[32];
	char tag[16];

	switch (d->strategy) {
	case PII_PARTIAL:
		mask_partial(p, v, n, d->type);
		break;
	case PII_HASH:
		pii_sha256(v, n, h);
		for (int i = 0; i < 4; i++) {
			tag[2 * i] = hex[h[i] >> 4];
			tag[2 * i + 1] = hex[h[i] & 15];
		}
		sbuf_adds(o, "[HASH:");
		sbuf_add(o, tag, 8);
		sbuf_addc(o, ']');
		break;
	case PII_TOKENIZE:
		if (getrandom(h, 4, 0) != 4)
			memset(h, 0, 4);
		for (int i = 0; i < 4; i++) {
			tag[2 * i] = hex[h[i] >> 4];
			tag[2 * i + 1] = hex[h[i] & 15];
		}
		sbuf_adds(o, "[TOKEN:");
		sbuf_add(o, tag, 8);
		sbuf_addc(o, ']');
		break;
	case PII_REMOVE:
		break;
	default:
		sbuf_adds(o, p->redaction);
	}
}

int pii_mask(struct pii *p, const char *s, size_t n)
{
	size_t prev = 0;

	sbuf_reset(&p->out);
	for (size_t i = 0; i < p->ndet; i++) {
		const struct pii_det *d = &p->det[i];

		sbuf_add(&p->out, s + prev, d->s - prev);
		mask_one(p, s + d->s, d->e - d->s, d);
		prev = d->e;
	}
	sbuf_add(&p->out, s + prev, n - prev);
	return p->out.err;
}
