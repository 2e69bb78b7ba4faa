// SPDX-License-Identifier: MIT
/*
 * `pbus-pii_filter --self-test N`: the detector's fast paths checked against
 * its plain ones. N random texts, built from PII-like tokens, separators and
 * a few non-ASCII words, go through three detectors with the same patterns:
 * windows (the default), whole-text searches on the ASCII code, and
 * whole-text searches on the Unicode code (Python's rules). Any difference
 * in what is found is printed and fails the run. tests/test_agents.c runs
 * it; it is not part of the agent's service.
 */
#include "pii.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const tokens[] = {
	"123-45-6789",
	"555-123-4567",
	"(555) 123-4567",
	"+1 555 123 4567",
	"+44 20 7946 0958",
	"4111 1111 1111 1111",
	"4111-1111-1111-1111",
	"john.doe@example.com",
	"a@b.io",
	"x@y",
	"10.0.0.1",
	"256.1.1.1",
	"2001:0db8:85a3:0000:0000:8a2e:0370:7334",
	"DOB: 01/15/1990",
	"Date of Birth 1-2-90",
	"born 3/4/1980",
	"01/15/1990",
	"12/31/2099",
	"AB1234567",
	"X12345678",
	"DL: A1234567",
	"Driver's License: D12345678",
	"License #ABCDE12",
	"12345678",
	"123456789",
	"NL91ABNA0417164300",
	"MRN: 12345678",
	"Medical Record#AB123456",
	"AKIAIOSFODNN7EXAMPLE",
	"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
	"api_key: sk_live_abcdefghijklmnopqrstuvwx",
	"access-token=abc",
	"hello",
	"world",
	"the",
	"and",
	"-",
	"/",
	".",
	":",
	"@",
	"+",
	"(",
	")",
	" ",
	"  ",
	"\n",
	"\t",
	"7",
	"42",
	"2024",
	"x",
	"handle",
	"dl",
	"license",
	"mrn",
	"\u00e9",
	"\u00fcn\u00efc\u00f6d\u00e9",
	"\u0663\u0664\u0665\u0666\u0667\u0668\u0669\u0660\u0661",
	"K",
	"_",
	"#",
	"123",
	"4567",
	"00",
	"1-2-3",
	"9.9.9.9",
	"a.b.c",
	"foo@bar.baz.qux",
	"EMP-123456",
};

static int setup(struct pii *p, struct pyre **wl, int whole_text)
{
	char err[256];

	memset(p, 0, sizeof(*p));
	p->wl = wl;
	for (int t = 0; t < PII_CUSTOM; t++)
		p->detect[t] = true;
	p->redaction = "[R]";
	p->whole_text = whole_text;
	if (pii_add_builtins(p, err, sizeof(err)) ||
	    pii_add_pattern(p, PII_CUSTOM, "EMP-\\d{6}", PII_PARTIAL, err,
			    sizeof(err)) ||
	    pyre_compile("^555", PYRE_IGNORECASE, &p->wl[0], err,
			 sizeof(err))) {
		fprintf(stderr, "self-test: %s\n", err);
		return -1;
	}
	p->nwl = 1;
	pii_finish(p);
	return 0;
}

int pii_selftest(unsigned n)
{
	static struct pyre *wl[3][1];
	static struct pii p[3];
	unsigned ntok = sizeof(tokens) / sizeof(tokens[0]);
	unsigned long found = 0, bad = 0;
	char buf[2048];

	for (int k = 0; k < 3; k++)
		if (setup(&p[k], wl[k], k))
			return 1;
	srand(12345);
	for (unsigned it = 0; it < n; it++) {
		size_t len = 0;
		int m = rand() % 30 + 1, r[3];

		for (int j = 0; j < m; j++) {
			const char *t = tokens[(unsigned)rand() % ntok];
			size_t l = strlen(t);

			if (len + l + 1 >= sizeof(buf))
				break;
			memcpy(buf + len, t, l);
			len += l;
			if (rand() % 3)
				buf[len++] = " ,;\n"[rand() % 4];
		}
		for (int k = 0; k < 3; k++)
			r[k] = pii_detect(&p[k], buf, len);
		for (int k = 1; k < 3; k++) {
			if (r[k] == r[0] && p[k].ndet == p[0].ndet &&
			    !memcmp(p[k].det, p[0].det,
				    p[0].ndet * sizeof(*p[0].det)))
				continue;
			if (bad++ < 5)
				fprintf(stderr,
					"self-test: path %d differs (%d vs %d) "
					"on [%.*s]\n",
					k, r[k], r[0], (int)len, buf);
		}
		found += r[0] > 0 ? (unsigned)r[0] : 0;
	}
	printf("self-test: %u texts, %lu detections, %lu differences\n", n,
	       found, bad);
	return bad ? 1 : 0;
}
