// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: the YAML config loader (bus/config*.c), templating
 * included. Each input is a whole config file given to pbus_config_parse().
 *
 * LLVMFuzzerInitialize() sets a few environment variables so that ${VAR},
 * ${VAR:-default} and {{ env.VAR }} expand to real values (empty, numeric,
 * a list-looking string, a long one, one that itself contains a template).
 *
 * Oracles beyond "no crash, no leak": a successful load has no errors in its
 * diag; every plugin's `config:` and `applied_to:` are valid msgpack maps;
 * names are unique and within PBUS_NAME_MAX; every diag item formats.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pbus/abi.h>
#include <pbus/config.h>
#include <pbus/diag.h>
#include <pbus/mp.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, \
				__LINE__, #cond);                              \
			abort();                                               \
		}                                                              \
	} while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static char longv[5000];

	(void)argc;
	(void)argv;
	memset(longv, 'x', sizeof(longv) - 1);
	setenv("PBUS_FZ_EMPTY", "", 1);
	setenv("PBUS_FZ_NUM", "42", 1);
	setenv("PBUS_FZ_FLOAT", "2.5", 1);
	setenv("PBUS_FZ_BOOL", "true", 1);
	setenv("PBUS_FZ_LIST", "[a, b]", 1);
	setenv("PBUS_FZ_TPL", "${PBUS_FZ_NUM}", 1);
	setenv("PBUS_FZ_NAME", "pii_filter", 1);
	setenv("PBUS_FZ_PATH", "/tmp/pbus-fuzz.sock", 1);
	setenv("PBUS_FZ_LONG", longv, 1);
	setenv("A", "1", 1);
	setenv("X", "x", 1);
	unsetenv("PBUS_FZ_UNSET");
	return 0;
}

static void check_map(const void *p, size_t len)
{
	struct pbus_mp v;

	if (!p) {
		CHECK(len == 0);
		return;
	}
	CHECK(pbus_mp_open(p, len, &v) == 0);
	CHECK(pbus_mp_type(v) == PBUS_MP_MAP);
}

static void check_strv(const struct pbus_strv *s)
{
	if (!s->n)
		return;
	CHECK(s->v && s->v[s->n] == NULL);
	for (unsigned i = 0; i < s->n; i++)
		CHECK(s->v[i] != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct pbus_diag d;
	struct pbus_config *c = NULL;
	char buf[512];
	int ret;

	memset(&d, 0, sizeof(d));
	ret = pbus_config_parse((const char *)data, size, "fuzz.yaml", &d, &c);
	CHECK(d.n <= PBUS_DIAG_MAX);
	for (unsigned i = 0; i < d.n; i++)
		CHECK(pbus_diag_format(&d, i, buf, sizeof(buf)) == buf);
	if (ret) {
		CHECK(ret == -EINVAL || ret == -ENOMEM);
		CHECK(c == NULL);
		return 0;
	}
	CHECK(c != NULL && d.nerrors == 0);
	for (unsigned i = 0; i < c->n_plugins; i++) {
		const struct pbus_plugin_cfg *p = &c->plugins[i];

		CHECK(p->name && *p->name && strlen(p->name) < PBUS_NAME_MAX);
		for (unsigned k = 0; k < i; k++)
			CHECK(strcmp(p->name, c->plugins[k].name) != 0);
		CHECK(p->mode >= 0 && p->mode < PBUS_MODE_COUNT);
		CHECK(p->on_error >= 0 && p->on_error < PBUS_ON_ERROR_COUNT);
		check_map(p->config, p->config_len);
		check_map(p->applied_to, p->applied_to_len);
		check_strv(&p->tags);
		check_strv(&p->command);
		check_strv(&p->env);
		for (unsigned k = 0; k < p->n_conds; k++)
			check_strv(&p->conds[k].tools);
	}
	check_strv(&c->plugin_dirs);
	pbus_config_destroy(c);
	return 0;
}
