// SPDX-License-Identifier: MIT
/*
 * pbus status: ask a running gateway for its plugins and their agents (the
 * admin LIST request on the control socket, include/pbus/abi.h) and print
 * one line per plugin:
 *
 *	PLUGIN        STATE     PID  EPOCH      UP  RESTARTS  CIRCUIT  CALLS
 *ERRORS
 *
 * With --restart NAME it first asks the gateway to restart that plugin's
 * agent (admin RESTART: the connection is dropped, in-flight calls fail as
 * "agent down", and the supervisor starts a fresh agent at once).
 *
 * The reply comes from another process: every field is checked before use,
 * and an unknown or missing key prints as "-".
 */
#include "cmd.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <msgpack.h>
#include <pbus/abi.h>

#define REPLY_MAX (4u << 20)

static void usage(FILE *f)
{
	fprintf(f,
		"usage: pbus status [--socket PATH] [--restart NAME]\n"
		"Show the plugins of a running gateway and the state of their "
		"agents.\n"
		"  -s, --socket PATH    the gateway's control socket (default "
		"$PBUS_SOCK)\n"
		"  -r, --restart NAME   restart plugin NAME's agent first\n"
		"  -h, --help           this text\n"
		"\n"
		"Columns: STATE up|down|starting|backoff|exiting|disabled; UP "
		"time attached;\n"
		"RESTARTS agent restarts; CIRCUIT closed|open|half-open; CALLS "
		"calls sent;\n"
		"ERRORS calls that got no answer (timeouts + agent down).\n");
}

static int dial(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct timeval tv = {.tv_sec = 5};
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int ret = -errno;

		close(fd);
		return ret;
	}
	return fd;
}

/* One admin request; *body (malloc'd, may be NULL) gets the reply body.
 * Returns the gateway's status (0 or -errno) or a local -errno. */
static int admin(const char *path, uint32_t cmd, const char *name, char **body,
		 size_t *blen)
{
	struct pbus_msg_admin req;
	struct pbus_msg_admin_reply rep;
	char *buf;
	ssize_t n;
	int fd = dial(path), ret;

	*body = NULL;
	*blen = 0;
	if (fd < 0)
		return fd;
	memset(&req, 0, sizeof(req));
	req.h.magic = PBUS_MAGIC;
	req.h.type = PBUS_MSG_ADMIN;
	req.h.proto = PBUS_PROTO_VERSION;
	req.h.abi = PBUS_ABI_VERSION;
	req.h.len = sizeof(req);
	req.cmd = cmd;
	if (name)
		snprintf(req.name, sizeof(req.name), "%s", name);
	if (send(fd, &req, sizeof(req), MSG_NOSIGNAL) != sizeof(req)) {
		ret = -errno;
		close(fd);
		return ret ? ret : -EIO;
	}
	buf = malloc(REPLY_MAX);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	n = recv(fd, buf, REPLY_MAX, 0);
	ret = n < 0 ? -errno : 0;
	close(fd);
	if (n >= 0 && (size_t)n < sizeof(rep))
		ret = n == 0 ? -ECONNRESET : -EPROTO; /* refused: closed */
	if (!ret) {
		memcpy(&rep, buf, sizeof(rep));
		if (rep.h.magic != PBUS_MAGIC ||
		    rep.h.type != PBUS_MSG_ADMIN_REPLY ||
		    rep.h.len != (uint32_t)n ||
		    rep.body_len != (size_t)n - sizeof(rep))
			ret = -EPROTO;
		else
			ret = rep.status;
	}
	if (!ret && rep.body_len) {
		memmove(buf, buf + sizeof(rep), rep.body_len);
		*body = buf;
		*blen = rep.body_len;
		return 0;
	}
	free(buf);
	return ret;
}

static const msgpack_object *get(const msgpack_object *m, const char *key)
{
	size_t kl = strlen(key);

	if (m->type != MSGPACK_OBJECT_MAP)
		return NULL;
	for (uint32_t i = 0; i < m->via.map.size; i++) {
		const msgpack_object *k = &m->via.map.ptr[i].key;

		if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == kl &&
		    !memcmp(k->via.str.ptr, key, kl))
			return &m->via.map.ptr[i].val;
	}
	return NULL;
}

static void col_str(const msgpack_object *m, const char *key, char *out,
		    size_t cap)
{
	const msgpack_object *v = get(m, key);

	if (v && v->type == MSGPACK_OBJECT_STR)
		snprintf(out, cap, "%.*s", (int)v->via.str.size,
			 v->via.str.ptr);
	else if (v && v->type == MSGPACK_OBJECT_BOOLEAN)
		snprintf(out, cap, "%s", v->via.boolean ? "yes" : "no");
	else if (v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
		snprintf(out, cap, "%llu", (unsigned long long)v->via.u64);
	else if (v && v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
		snprintf(out, cap, "%lld", (long long)v->via.i64);
	else
		snprintf(out, cap, "-");
	for (char *p = out; *p; p++) /* it came from another process */
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
}

static int col_u(const msgpack_object *m, const char *key, uint64_t *v)
{
	const msgpack_object *o = get(m, key);

	if (!o || o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		return -1;
	*v = o->via.u64;
	return 0;
}

static void uptime(const msgpack_object *m, char *out, size_t cap)
{
	uint64_t ms;
	const msgpack_object *up = get(m, "up");

	if (!up || up->type != MSGPACK_OBJECT_BOOLEAN || !up->via.boolean ||
	    col_u(m, "uptime_ms", &ms)) {
		snprintf(out, cap, "-");
		return;
	}
	if (ms < 60000)
		snprintf(out, cap, "%.1fs", (double)ms / 1000.0);
	else if (ms < 3600000)
		snprintf(out, cap, "%llum%02llus",
			 (unsigned long long)(ms / 60000),
			 (unsigned long long)(ms / 1000 % 60));
	else
		snprintf(out, cap, "%lluh%02llum",
			 (unsigned long long)(ms / 3600000),
			 (unsigned long long)(ms / 60000 % 60));
}

static int print_table(const char *body, size_t len)
{
	msgpack_unpacked u;
	size_t off = 0;
	int ret = 0;

	msgpack_unpacked_init(&u);
	if (msgpack_unpack_next(&u, body, len, &off) !=
		    MSGPACK_UNPACK_SUCCESS ||
	    u.data.type != MSGPACK_OBJECT_ARRAY) {
		fprintf(stderr, "pbus status: malformed reply\n");
		ret = PBUS_EXIT_FAIL;
		goto out;
	}
	printf("%-24s %-9s %7s %6s %8s %8s %-9s %10s %8s\n", "PLUGIN", "STATE",
	       "PID", "EPOCH", "UP", "RESTARTS", "CIRCUIT", "CALLS", "ERRORS");
	for (uint32_t i = 0; i < u.data.via.array.size; i++) {
		const msgpack_object *m = &u.data.via.array.ptr[i];
		char name[PBUS_NAME_MAX], state[16], pid[16], epoch[16];
		char up[32], restarts[16], circuit[16], calls[24], errors[24];

		col_str(m, "name", name, sizeof(name));
		col_str(m, "state", state, sizeof(state));
		col_str(m, "pid", pid, sizeof(pid));
		if (!strcmp(pid, "0"))
			strcpy(pid, "-");
		col_str(m, "epoch", epoch, sizeof(epoch));
		uptime(m, up, sizeof(up));
		col_str(m, "restarts", restarts, sizeof(restarts));
		col_str(m, "circuit", circuit, sizeof(circuit));
		col_str(m, "calls", calls, sizeof(calls));
		col_str(m, "errors", errors, sizeof(errors));
		printf("%-24s %-9s %7s %6s %8s %8s %-9s %10s %8s\n", name,
		       state, pid, epoch, up, restarts, circuit, calls, errors);
	}
out:
	msgpack_unpacked_destroy(&u);
	return ret;
}

int pbus_cmd_status(int argc, char **argv)
{
	static const struct option lo[] = {
		{"socket", required_argument, NULL, 's'},
		{"restart", required_argument, NULL, 'r'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *sock = getenv("PBUS_SOCK"), *restart = NULL;
	char *body;
	size_t blen;
	int ch, ret;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "s:r:h", lo, NULL)) != -1) {
		switch (ch) {
		case 's':
			sock = optarg;
			break;
		case 'r':
			restart = optarg;
			break;
		case 'h':
			usage(stdout);
			return PBUS_EXIT_OK;
		default:
			usage(stderr);
			return PBUS_EXIT_USAGE;
		}
	}
	if (optind < argc || !sock || !*sock) {
		if (!sock || !*sock)
			fprintf(stderr, "pbus status: no socket: give --socket "
					"or set PBUS_SOCK\n");
		usage(stderr);
		return PBUS_EXIT_USAGE;
	}
	if (restart) {
		if (strlen(restart) >= PBUS_NAME_MAX) {
			fprintf(stderr, "pbus status: plugin name too long\n");
			return PBUS_EXIT_USAGE;
		}
		ret = admin(sock, PBUS_ADMIN_RESTART, restart, &body, &blen);
		free(body);
		if (ret) {
			fprintf(stderr, "pbus status: restart %s: %s\n",
				restart,
				ret == -ENOENT	   ? "no such plugin"
				: ret == -ENOTCONN ? "no agent attached"
						   : strerror(-ret));
			return PBUS_EXIT_FAIL;
		}
		printf("restarting %s\n", restart);
	}
	ret = admin(sock, PBUS_ADMIN_LIST, NULL, &body, &blen);
	if (ret) {
		fprintf(stderr, "pbus status: %s: %s\n", sock, strerror(-ret));
		return PBUS_EXIT_FAIL;
	}
	ret = print_table(body ? body : "\x90", body ? blen : 1);
	free(body);
	return ret;
}
