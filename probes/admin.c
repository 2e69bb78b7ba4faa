// SPDX-License-Identifier: MIT
/*
 * Plugin names for the collector. BPF only sees dense plugin ids; the names
 * belong to the gateway, which answers an admin LIST request on its control
 * socket (include/pbus/abi.h): one struct pbus_msg_admin on an AF_UNIX
 * SOCK_SEQPACKET connection, answered by one message holding a struct
 * pbus_msg_admin_reply and a msgpack array of maps with at least "id" and
 * "name". Everything in the reply is checked before use. Without a socket
 * the user gives "id=name,..." on the command line.
 */
#include "collector.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>

static void set_name(struct pbus_obs_names *nm, unsigned id, const char *s,
		     size_t len)
{
	if (len >= PBUS_NAME_MAX)
		len = PBUS_NAME_MAX - 1;
	memcpy(nm->name[id], s, len);
	nm->name[id][len] = '\0';
	if (id + 1 > nm->n)
		nm->n = id + 1;
}

int pbus_obs_names_parse(const char *spec, struct pbus_obs_names *nm)
{
	const char *p = spec;

	while (p && *p) {
		const char *eq, *end;
		char *num_end;
		unsigned long id;

		end = strchr(p, ',');
		if (!end)
			end = p + strlen(p);
		eq = memchr(p, '=', (size_t)(end - p));
		if (!eq || eq == p || eq + 1 == end)
			return -EINVAL;
		errno = 0;
		id = strtoul(p, &num_end, 10);
		if (errno || num_end != eq || id >= PBUS_OBS_MAX_PLUGINS)
			return -EINVAL;
		set_name(nm, (unsigned)id, eq + 1, (size_t)(end - eq - 1));
		p = *end ? end + 1 : end;
	}
	return 0;
}

const char *pbus_obs_name(const struct pbus_obs_names *nm, unsigned id,
			  char *buf, size_t len)
{
	if (nm && id < PBUS_OBS_MAX_PLUGINS && nm->name[id][0])
		snprintf(buf, len, "%s", nm->name[id]);
	else
		snprintf(buf, len, "plugin%u", id);
	return buf;
}

static int map_get(const msgpack_object_map *m, const char *key,
		   const msgpack_object **out)
{
	size_t kl = strlen(key);

	for (uint32_t i = 0; i < m->size; i++) {
		const msgpack_object *k = &m->ptr[i].key;

		if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == kl &&
		    !memcmp(k->via.str.ptr, key, kl)) {
			*out = &m->ptr[i].val;
			return 0;
		}
	}
	return -ENOENT;
}

/* Decode the LIST body: an array of maps with "id" and "name". */
static int parse_list(const char *body, size_t len, struct pbus_obs_names *nm)
{
	msgpack_unpacked u;
	size_t off = 0;
	int ret = 0;

	msgpack_unpacked_init(&u);
	if (msgpack_unpack_next(&u, body, len, &off) !=
		    MSGPACK_UNPACK_SUCCESS ||
	    u.data.type != MSGPACK_OBJECT_ARRAY) {
		ret = -EPROTO;
		goto out;
	}
	for (uint32_t i = 0; i < u.data.via.array.size; i++) {
		const msgpack_object *e = &u.data.via.array.ptr[i];
		const msgpack_object *id, *name;

		if (e->type != MSGPACK_OBJECT_MAP ||
		    map_get(&e->via.map, "id", &id) ||
		    map_get(&e->via.map, "name", &name) ||
		    id->type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
		    name->type != MSGPACK_OBJECT_STR) {
			ret = -EPROTO;
			goto out;
		}
		if (id->via.u64 >= PBUS_OBS_MAX_PLUGINS)
			continue; /* the maps cannot hold it anyway */
		set_name(nm, (unsigned)id->via.u64, name->via.str.ptr,
			 name->via.str.size);
	}
out:
	msgpack_unpacked_destroy(&u);
	return ret;
}

static int wait_fd(int fd, short ev, int timeout_ms)
{
	struct pollfd p = {.fd = fd, .events = ev};
	int n;

	do
		n = poll(&p, 1, timeout_ms);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return n ? 0 : -ETIMEDOUT;
}

int pbus_obs_admin_list(const char *sock_path, int timeout_ms,
			struct pbus_obs_names *nm)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct pbus_msg_admin req;
	struct pbus_msg_admin_reply rep;
	struct pbus_obs_names tmp;
	char *buf = NULL;
	ssize_t n;
	int fd, ret;

	if (strlen(sock_path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, sock_path);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		ret = -errno;
		goto out_close;
	}
	memset(&req, 0, sizeof(req));
	req.h.magic = PBUS_MAGIC;
	req.h.type = PBUS_MSG_ADMIN;
	req.h.proto = PBUS_PROTO_VERSION;
	req.h.abi = PBUS_ABI_VERSION;
	req.h.len = sizeof(req);
	req.cmd = PBUS_ADMIN_LIST;
	if (send(fd, &req, sizeof(req), MSG_NOSIGNAL) != sizeof(req)) {
		ret = -errno;
		goto out_close;
	}
	ret = wait_fd(fd, POLLIN, timeout_ms);
	if (ret)
		goto out_close;
	/* Learn the message size first: SEQPACKET truncates short reads. */
	n = recv(fd, &rep, 1, MSG_PEEK | MSG_TRUNC);
	if (n < 0) {
		ret = -errno;
		goto out_close;
	}
	if ((size_t)n < sizeof(rep) || n > (1 << 24)) {
		ret = -EPROTO;
		goto out_close;
	}
	buf = malloc((size_t)n);
	if (!buf) {
		ret = -ENOMEM;
		goto out_close;
	}
	if (recv(fd, buf, (size_t)n, 0) != n) {
		ret = -EPROTO;
		goto out_free;
	}
	memcpy(&rep, buf, sizeof(rep));
	if (rep.h.magic != PBUS_MAGIC || rep.h.type != PBUS_MSG_ADMIN_REPLY ||
	    rep.h.abi != PBUS_ABI_VERSION) {
		ret = -EPROTO;
		goto out_free;
	}
	if (rep.status < 0) {
		ret = rep.status;
		goto out_free;
	}
	if (rep.body_len > (size_t)n - sizeof(rep)) {
		ret = -EPROTO;
		goto out_free;
	}
	memset(&tmp, 0, sizeof(tmp));
	ret = parse_list(buf + sizeof(rep), rep.body_len, &tmp);
	if (!ret)
		*nm = tmp;
out_free:
	free(buf);
out_close:
	close(fd);
	return ret;
}
