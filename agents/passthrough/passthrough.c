// SPDX-License-Identifier: MIT
/*
 * pbus-passthrough: answers every hook with "continue, unmodified". For
 * benchmarks and tests. Modes:
 *   pass   answer without looking at the payload (default)
 *   touch  read every payload byte first (touch.h), still unmodified
 *   echo   return the payload as modified_payload (copies it back)
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <pbus/pbus.h>

#include "touch.h"

enum { MODE_PASS, MODE_TOUCH, MODE_ECHO };

static volatile unsigned long sink;
static unsigned delay_us;

/* hot: placed with the library's serving code (see bus/internal.h) */
static __attribute__((hot)) int on_call(struct pbus_call *c, void *arg)
{
	int mode = *(int *)arg;
	size_t len;
	const unsigned char *p = pbus_call_payload(c, &len);

	if (delay_us) /* a plugin that waits on something, off the CPU */
		usleep(delay_us);

	if (mode == MODE_TOUCH) {
		sink = p ? touch_sum(p, len) : 0;
	} else if (mode == MODE_ECHO && p) {
		msgpack_packer *pk = pbus_call_modify(c);

		pk->callback(pk->data, (const char *)p, len);
	}
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: pbus-passthrough [--name NAME] [--socket PATH] "
		"[--mode pass|touch|echo]\n"
		"Serve every hook with 'continue, unmodified'.\n"
		"  -n, --name NAME     plugin name (default $PBUS_PLUGIN or "
		"'passthrough')\n"
		"  -s, --socket PATH   gateway control socket (default "
		"$PBUS_SOCK)\n"
		"  -m, --mode MODE     pass (default), touch (read every "
		"payload byte), echo (return the payload as modified)\n"
		"  -d, --delay-us N    sleep N microseconds in every call\n"
		"  -h, --help          this text\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{"name", required_argument, NULL, 'n'},
		{"socket", required_argument, NULL, 's'},
		{"mode", required_argument, NULL, 'm'},
		{"delay-us", required_argument, NULL, 'd'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct pbus_agent_opts o = {0};
	struct pbus_agent *a;
	int mode = MODE_PASS, ret, ch;

	while ((ch = getopt_long(argc, argv, "n:s:m:d:h", lo, NULL)) != -1) {
		switch (ch) {
		case 'n':
			o.name = optarg;
			break;
		case 's':
			o.sock_path = optarg;
			break;
		case 'm':
			if (!strcmp(optarg, "pass"))
				mode = MODE_PASS;
			else if (!strcmp(optarg, "touch"))
				mode = MODE_TOUCH;
			else if (!strcmp(optarg, "echo"))
				mode = MODE_ECHO;
			else {
				fprintf(stderr, "pbus-passthrough: unknown "
						"mode '%s'\n", optarg);
				return 2;
			}
			break;
		case 'd':
			delay_us = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!o.name && !getenv("PBUS_PLUGIN"))
		o.name = "passthrough";
	pbus_set_log_fn(pbus_log_stderr, NULL);
	ret = pbus_agent_create(&o, &a);
	if (ret) {
		fprintf(stderr, "pbus-passthrough: %s (need --socket or "
				"PBUS_SOCK)\n", strerror(-ret));
		return 1;
	}
	for (int h = 0; h < PBUS_HOOK_COUNT; h++)
		pbus_agent_on(a, h, on_call, &mode);
	ret = pbus_agent_connect(a);
	if (ret) {
		fprintf(stderr, "pbus-passthrough: connect: %s\n",
			strerror(-ret));
		pbus_agent_destroy(a);
		return 1;
	}
	ret = pbus_agent_run(a);
	pbus_agent_destroy(a);
	return ret ? 1 : 0;
}
