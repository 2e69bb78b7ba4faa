// SPDX-License-Identifier: MIT
/*
 * Supervision tests (bus/sup.c, docs/supervision.md): spawned and external
 * agents, restarts with back-off, the circuit breaker, the watchdog, hostile
 * agents, the gateway's exit, admin status/restart, the uid check, and a
 * chaos run. Each test writes a YAML config, opens a real manager that
 * spawns real agent processes (build/tests/agent-ctl, agent-forge,
 * build/bin/pbus-passthrough) and closes it again. Every wait has a
 * deadline; every process a test starts is reaped before it ends.
 *
 *	PBUS_CHAOS_SECONDS=5 build/sup/tests/test_sup     shorter chaos run
 *	CK_RUN_CASE=watchdog build/sup/tests/test_sup
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pbus/pbus.h>
#include <pbus/mgr.h>
#include <pbus/mp.h>

#include "helpers.h"
#include "sup.h"

#define TOOL_PRE PBUS_HOOK_TOOL_PRE_INVOKE
#define TOOL_POST PBUS_HOOK_TOOL_POST_INVOKE

static char ctl_path[PATH_MAX], forge_path[PATH_MAX], pass_path[PATH_MAX];
static pid_t runner; /* the Check runner: every temporary name has its pid */

/*
 * A fresh temporary path, /tmp/pbus-sup-<runner>-<test pid>-<n><suffix>. The
 * runner sweeps /tmp/pbus-sup-<runner>-* after each test case (sweep()), so a
 * failed test leaves nothing behind.
 */
static const char *tmp_path(const char *suffix)
{
	static __thread char buf[108];
	static _Atomic int n;

	snprintf(buf, sizeof(buf), "/tmp/pbus-sup-%d-%d-%d%s", (int)runner,
		 (int)getpid(), atomic_fetch_add(&n, 1), suffix);
	unlink(buf);
	return buf;
}

/* Unchecked teardown, in the runner: remove what failed tests left. */
static void sweep(void)
{
	char prefix[64], path[300];
	struct dirent *e;
	DIR *d = opendir("/tmp");

	snprintf(prefix, sizeof(prefix), "pbus-sup-%d-", (int)runner);
	while (d && (e = readdir(d)))
		if (!strncmp(e->d_name, prefix, strlen(prefix))) {
			snprintf(path, sizeof(path), "/tmp/%s", e->d_name);
			unlink(path);
		}
	if (d)
		closedir(d);
}

/* ------------------------------------------------------------ log capture */

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char *logbuf;
static size_t loglen, logcap;
static _Atomic int log_quiet;	       /* 1: keep no lines (chaos: millions) */
static _Atomic unsigned circuit_opens; /* "circuit open" lines, always */

static void cap_log(enum pbus_log_level lvl, const char *msg, void *arg)
{
	static const char lv[] = "EWID";
	size_t n = strlen(msg) + 4;

	(void)arg;
	if (strstr(msg, "circuit open"))
		atomic_fetch_add(&circuit_opens, 1);
	if (atomic_load(&log_quiet))
		return;
	if (getenv("PBUS_TEST_VERBOSE"))
		fprintf(stderr, "pbus: %c: %s\n", lv[lvl & 3], msg);
	pthread_mutex_lock(&log_mu);
	if (loglen + n + 1 > logcap) {
		size_t cap = logcap ? logcap * 2 : 65536;
		char *p;

		while (cap < loglen + n + 1)
			cap *= 2;
		p = realloc(logbuf, cap);
		if (!p) {
			pthread_mutex_unlock(&log_mu);
			return;
		}
		logbuf = p;
		logcap = cap;
	}
	loglen += (size_t)sprintf(logbuf + loglen, "%c:%s\n", lv[lvl & 3], msg);
	pthread_mutex_unlock(&log_mu);
}

/* Number of log lines containing @s. */
static int log_count(const char *s)
{
	int n = 0;

	pthread_mutex_lock(&log_mu);
	for (const char *p = logbuf; p && (p = strstr(p, s)); p += strlen(s))
		n++;
	pthread_mutex_unlock(&log_mu);
	return n;
}

static int wait_log(const char *s, int ms)
{
	uint64_t until = th_now_ms() + (uint64_t)ms;

	while (!log_count(s)) {
		if (th_now_ms() >= until)
			return -ETIMEDOUT;
		usleep(5000);
	}
	return 0;
}

/* ------------------------------------------------------------ fixtures */

struct st {
	struct pbus_config *cfg;
	struct pbus_mgr *m;
	char sock[108];
};

static void setup(void)
{
	pbus_set_log_fn(cap_log, NULL);
	ck_assert_msg(realpath(th_bin("agent-ctl"), ctl_path), "no agent-ctl");
	ck_assert_msg(realpath(th_bin("agent-forge"), forge_path),
		      "no agent-forge");
	ck_assert_msg(realpath(th_bin("pbus-passthrough"), pass_path),
		      "no pbus-passthrough");
}

/* Parse the YAML (printf-style) and open a manager on a fresh socket. */
__attribute__((format(printf, 3, 4))) static void
st_open(struct st *t, int no_spawn, const char *fmt, ...)
{
	static struct pbus_diag d;
	struct pbus_mgr_opts o = {0};
	char y[8192], buf[512];
	va_list ap;
	int ret;

	memset(t, 0, sizeof(*t));
	memset(&d, 0, sizeof(d));
	va_start(ap, fmt);
	vsnprintf(y, sizeof(y), fmt, ap);
	va_end(ap);
	if (!strstr(y, "plugin_settings:")) { /* required by the schema */
		memmove(y + 20, y, strlen(y) + 1);
		memcpy(y, "plugin_settings: {}\n", 20);
	}
	ret = pbus_config_parse(y, strlen(y), "test_sup.yaml", &d, &t->cfg);
	if (ret) {
		fprintf(stderr, "%s", y);
		for (unsigned i = 0; i < d.n; i++)
			fprintf(stderr, "%s\n",
				pbus_diag_format(&d, i, buf, sizeof(buf)));
	}
	ck_assert_int_eq(ret, 0);
	snprintf(t->sock, sizeof(t->sock), "%s", tmp_path(".sock"));
	o.sock_path = t->sock;
	o.no_spawn = no_spawn;
	ck_assert_int_eq(pbus_mgr_open(t->cfg, &o, &t->m), 0);
}

static void st_close(struct st *t)
{
	pbus_mgr_close(t->m);
	pbus_config_destroy(t->cfg);
	ck_assert_int_ne(access(t->sock, F_OK), 0);
}

static unsigned id_of(struct st *t, const char *name)
{
	for (unsigned i = 0; i < pbus_mgr_plugin_count(t->m); i++)
		if (!strcmp(pbus_mgr_plugin_name(t->m, i), name))
			return i;
	ck_abort_msg("no plugin %s", name);
	return 0;
}

static struct pbus_plugin_stats stats(struct st *t, const char *name)
{
	struct pbus_plugin_stats s;

	memset(&s, 0, sizeof(s));
	ck_assert_int_eq(pbus_mgr_plugin_stats(t->m, id_of(t, name), &s), 0);
	return s;
}

static struct pbus_peer *peer(struct st *t, const char *name)
{
	struct pbus_peer *p = pbus_bus_find_peer(pbus_mgr_bus(t->m), name);

	ck_assert_ptr_nonnull(p);
	return p;
}

static void wait_up(struct st *t, const char *name, int ms)
{
	ck_assert_msg(pbus_peer_wait_up(peer(t, name), ms) == 0,
		      "%s did not attach within %d ms", name, ms);
}

/* Wait until @name is attached with a pid other than @old. Returns ms. */
static uint64_t wait_new_pid(struct st *t, const char *name, int32_t old,
			     int ms)
{
	uint64_t t0 = th_now_ms(), until = t0 + (uint64_t)ms;

	for (;;) {
		struct pbus_plugin_stats s = stats(t, name);

		if (s.up && s.pid > 0 && s.pid != old)
			return th_now_ms() - t0;
		ck_assert_msg(th_now_ms() < until, "%s not back within %d ms",
			      name, ms);
		usleep(1000);
	}
}

static int wait_circuit(struct st *t, const char *name, int want, int ms)
{
	uint64_t until = th_now_ms() + (uint64_t)ms;

	while (stats(t, name).circuit != want) {
		if (th_now_ms() >= until)
			return -ETIMEDOUT;
		usleep(2000);
	}
	return 0;
}

/* A tool payload {"name": "t", "args": {}} plus {"forge": @forge}. */
struct pay {
	msgpack_sbuffer sb;
};

static void pay_init(struct pay *p, const char *forge)
{
	msgpack_packer pk;

	msgpack_sbuffer_init(&p->sb);
	msgpack_packer_init(&pk, &p->sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, forge ? 3 : 2);
	pbus_mp_pack_cstr(&pk, "name");
	pbus_mp_pack_cstr(&pk, "t");
	pbus_mp_pack_cstr(&pk, "args");
	msgpack_pack_map(&pk, 0);
	if (forge) {
		pbus_mp_pack_cstr(&pk, "forge");
		pbus_mp_pack_cstr(&pk, forge);
	}
}

/*
 * One chain run; returns the chain's error (0: allowed) and its time. The
 * request ends here: o->metadata is copied to a per-thread buffer (valid
 * until the thread's next run1), o->payload and the messages are gone.
 */
static int run1(struct st *t, int hook, const char *forge,
		struct pbus_outcome *o, uint64_t *ms)
{
	static _Atomic unsigned seq;
	struct pbus_gctx g = {.user = "alice"};
	struct pbus_request *rq;
	struct pay p;
	char rid[32];
	uint64_t t0;
	int ret;

	snprintf(rid, sizeof(rid), "r%u", atomic_fetch_add(&seq, 1));
	g.request_id = rid;
	ck_assert_int_eq(pbus_request_create(t->m, &g, &rq), 0);
	pay_init(&p, forge);
	t0 = th_now_ms();
	ret = pbus_run(t->m, rq, hook, p.sb.data, p.sb.size, o);
	if (ms)
		*ms = th_now_ms() - t0;
	msgpack_sbuffer_destroy(&p.sb);
	if (!ret) {
		static __thread uint8_t meta[4096];
		size_t n = o->metadata_len < sizeof(meta) ? o->metadata_len : 0;

		memcpy(meta, o->metadata, n);
		o->metadata = meta;
		o->metadata_len = n;
		o->payload = NULL;
		o->payload_len = 0;
		o->violation = NULL;
		o->error_message = NULL;
	}
	pbus_request_destroy(rq);
	ck_assert_int_eq(ret, 0);
	return o->error ? o->error : (o->continue_processing ? 0 : -EPERM);
}

/* Lines in @path (agent-ctl's count_file). */
static int lines(const char *path)
{
	FILE *f = fopen(path, "r");
	int c, n = 0;

	if (!f)
		return 0;
	while ((c = getc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

/* ------------------------------------------------------------ processes */

static int fd_count(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	while (d && (e = readdir(d)))
		n += e->d_name[0] != '.';
	if (d)
		closedir(d);
	return n - 1; /* the directory's own fd */
}

static long rss_kib(void)
{
	long size, res;
	FILE *f = fopen("/proc/self/statm", "r");

	if (!f || fscanf(f, "%ld %ld", &size, &res) != 2)
		res = -1;
	if (f)
		fclose(f);
	return res < 0 ? -1 : res * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Children of this process: all (@zombies 0) or zombies only (1); @show
 * prints each one counted. */
static int children(int zombies, int show)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	int n = 0;

	while (d && (e = readdir(d))) {
		char path[300], buf[512], *p, st;
		int ppid;
		FILE *f;

		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		buf[0] = 0;
		if (!fgets(buf, sizeof(buf), f))
			buf[0] = 0;
		fclose(f);
		p = strrchr(buf, ')');
		if (!p || sscanf(p + 2, "%c %d", &st, &ppid) != 2)
			continue;
		if (ppid == getpid() && (!zombies || st == 'Z')) {
			n++;
			if (show) /* pid, name and state */
				fprintf(stderr, "left behind: %.*s\n",
					(int)(p + 3 - buf), buf);
		}
	}
	if (d)
		closedir(d);
	return n;
}

static int wait_no_children(int zombies, int ms)
{
	uint64_t until = th_now_ms() + (uint64_t)ms;

	while (children(zombies, 0)) {
		if (th_now_ms() >= until) {
			children(zombies, 1); /* say what is left */
			return -ETIMEDOUT;
		}
		usleep(5000);
	}
	return 0;
}

/* Signal the process @pid through a pidfd (never a recycled pid). */
static int sig_pid(pid_t pid, int sig)
{
	int fd = pidfd_open(pid, 0), ret;

	if (fd < 0)
		return -errno;
	ret = pidfd_send_signal(fd, sig, NULL, 0) ? -errno : 0;
	close(fd);
	return ret;
}

/* A raw hello for @name; 0 when welcomed, the REJECT's status, or -errno
 * from connect(). */
static int raw_hello(const char *sock, const char *name)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct pbus_msg_hello m = {0};
	struct pbus_msg_welcome w = {0};
	struct timeval tv = {.tv_sec = 5};
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0), ret;
	ssize_t n;

	if (fd < 0)
		return -errno;
	strcpy(sa.sun_path, sock);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	m.h.magic = PBUS_MAGIC;
	m.h.type = PBUS_MSG_HELLO;
	m.h.proto = PBUS_PROTO_VERSION;
	m.h.abi = PBUS_ABI_VERSION;
	m.h.len = sizeof(m);
	m.pid = (uint32_t)getpid();
	snprintf(m.name, sizeof(m.name), "%s", name);
	/* a refused peer may find the socket closed before its hello goes
	 * out: the REJECT is still there to read */
	send(fd, &m, sizeof(m), MSG_NOSIGNAL);
	n = recv(fd, &w, sizeof(w), 0);
	ret = n < 0 ? -errno : 0;
	close(fd);
	if (n != sizeof(w))
		return ret == -ECONNRESET ? ret : -EIO;
	return w.h.type == PBUS_MSG_REJECT ? w.status : 0;
}

/*
 * Admin LIST on @sock: the value of @key for plugin @name as text in @out.
 * 0, or -errno.
 */
static int admin_get(const char *sock, const char *name, const char *key,
		     char *out, size_t cap)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct pbus_msg_admin req = {0};
	struct timeval tv = {.tv_sec = 5};
	static char buf[1 << 16];
	msgpack_unpacked u;
	size_t off = 0;
	ssize_t n;
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0),
	    ret = -ENOENT;

	strcpy(sa.sun_path, sock);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	req.h.magic = PBUS_MAGIC;
	req.h.type = PBUS_MSG_ADMIN;
	req.h.proto = PBUS_PROTO_VERSION;
	req.h.abi = PBUS_ABI_VERSION;
	req.h.len = sizeof(req);
	req.cmd = PBUS_ADMIN_LIST;
	send(fd, &req, sizeof(req), MSG_NOSIGNAL);
	n = recv(fd, buf, sizeof(buf), 0);
	close(fd);
	if (n < (ssize_t)sizeof(struct pbus_msg_admin_reply))
		return -EIO;
	msgpack_unpacked_init(&u);
	if (msgpack_unpack_next(&u, buf + sizeof(struct pbus_msg_admin_reply),
				(size_t)n - sizeof(struct pbus_msg_admin_reply),
				&off) != MSGPACK_UNPACK_SUCCESS) {
		msgpack_unpacked_destroy(&u);
		return -EBADMSG;
	}
	for (uint32_t i = 0; i < u.data.via.array.size; i++) {
		msgpack_object_map *m = &u.data.via.array.ptr[i].via.map;
		const msgpack_object *nm = NULL, *v = NULL;

		for (uint32_t k = 0; k < m->size; k++) {
			const msgpack_object_str *ks = &m->ptr[k].key.via.str;

			if (ks->size == 4 && !memcmp(ks->ptr, "name", 4))
				nm = &m->ptr[k].val;
			if (ks->size == strlen(key) &&
			    !memcmp(ks->ptr, key, ks->size))
				v = &m->ptr[k].val;
		}
		if (!nm || nm->via.str.size != strlen(name) ||
		    memcmp(nm->via.str.ptr, name, nm->via.str.size) || !v)
			continue;
		if (v->type == MSGPACK_OBJECT_STR)
			snprintf(out, cap, "%.*s", (int)v->via.str.size,
				 v->via.str.ptr);
		else if (v->type == MSGPACK_OBJECT_BOOLEAN)
			snprintf(out, cap, "%s",
				 v->via.boolean ? "true" : "false");
		else
			snprintf(out, cap, "%lld", (long long)v->via.i64);
		ret = 0;
	}
	msgpack_unpacked_destroy(&u);
	return ret;
}

/* Start an external pbus-passthrough for @plugin (reconnecting if @rc). */
static pid_t external(const char *sock, const char *plugin, int rc)
{
	char *argv[] = {pass_path, NULL};
	pid_t pid;

	if (rc)
		setenv("PBUS_RECONNECT", "1", 1);
	else
		unsetenv("PBUS_RECONNECT");
	pid = fork();
	if (pid == 0) {
		/* dies with this test, whatever happens to it */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		setenv("PBUS_SOCK", sock, 1);
		setenv("PBUS_PLUGIN", plugin, 1);
		execv(argv[0], argv);
		_exit(127);
	}
	unsetenv("PBUS_RECONNECT");
	ck_assert_int_gt(pid, 0);
	return pid;
}

/* ------------------------------------------------------------ spawn */

START_TEST(spawned_agent_output_is_logged_line_by_line_with_its_name)
{
	struct st t;
	char want[128];
	int32_t pid;

	setup();
	st_open(&t, 0,
		"plugins:\n"
		"  - name: talker\n"
		"    kind: agent\n"
		"    hooks: [tool_pre_invoke]\n"
		"    command: [/bin/sh, -c, 'echo out-line-1; echo err-line-1 "
		">&2; printf partial; exec %s']\n",
		ctl_path);
	wait_up(&t, "talker", 5000);
	pid = stats(&t, "talker").pid; /* exec keeps the pid */
	snprintf(want, sizeof(want), "I:talker[%d]: out-line-1", (int)pid);
	ck_assert_int_eq(wait_log(want, 3000), 0);
	snprintf(want, sizeof(want), "W:talker[%d]: err-line-1", (int)pid);
	ck_assert_int_eq(wait_log(want, 3000), 0);
	st_close(&t);
	/* the unterminated line comes out when the pipe closes */
	snprintf(want, sizeof(want), "I:talker[%d]: partial", (int)pid);
	ck_assert_int_eq(log_count(want), 1);
	ck_assert_int_eq(wait_no_children(0, 2000), 0);
}
END_TEST

struct fdinfo {
	int sockets, chans, arenas, other;
	ino_t chan_ino, arena_ino;
};

static void agent_fds(pid_t pid, struct fdinfo *fi)
{
	char dir[64], path[384], link[256];
	struct dirent *e;
	DIR *d;

	memset(fi, 0, sizeof(*fi));
	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	d = opendir(dir);
	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d))) {
		struct stat st;
		ssize_t n;
		int fd;

		if (e->d_name[0] == '.')
			continue;
		fd = atoi(e->d_name);
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		n = readlink(path, link, sizeof(link) - 1);
		ck_assert_int_gt(n, 0);
		link[n] = 0;
		ck_assert_int_eq(stat(path, &st), 0);
		if (getenv("PBUS_TEST_VERBOSE"))
			fprintf(stderr, "agent %d: fd %d -> %s\n", (int)pid, fd,
				link);
		if (fd == 0)
			ck_assert_str_eq(link, "/dev/null");
		else if (fd <= 2)
			ck_assert_msg(!strncmp(link, "pipe:", 5), "fd %d is %s",
				      fd, link);
		else if (!strncmp(link, "socket:", 7))
			fi->sockets++;
		else if (strstr(link, "memfd:pbus-chan")) {
			fi->chans++;
			fi->chan_ino = st.st_ino;
		} else if (strstr(link, "memfd:pbus-arena")) {
			fi->arenas++;
			fi->arena_ino = st.st_ino;
		} else {
			fprintf(stderr, "agent %d: unexpected fd %d -> %s\n",
				(int)pid, fd, link);
			fi->other++;
		}
	}
	closedir(d);
}

START_TEST(an_agent_holds_only_its_own_channel_the_arena_and_its_socket)
{
	struct fdinfo a, b;
	struct st t;

	setup();
	st_open(&t, 0,
		"plugins:\n"
		"  - {name: A, kind: agent, hooks: [tool_pre_invoke], command: "
		"[%s]}\n"
		"  - {name: B, kind: agent, hooks: [tool_pre_invoke], command: "
		"[%s]}\n",
		ctl_path, ctl_path);
	wait_up(&t, "A", 5000);
	wait_up(&t, "B", 5000);
	{
		struct pbus_outcome o; /* both have taken their regions */

		ck_assert_int_eq(run1(&t, TOOL_PRE, NULL, &o, NULL), 0);
		ck_assert_uint_eq(o.plugins_run, 2);
	}
	agent_fds(stats(&t, "A").pid, &a);
	agent_fds(stats(&t, "B").pid, &b);
	ck_assert_int_eq(a.sockets, 1);
	ck_assert_int_eq(a.chans, 1);
	ck_assert_int_eq(a.arenas, 1);
	ck_assert_int_eq(a.other, 0);
	ck_assert_int_eq(b.sockets, 1);
	ck_assert_int_eq(b.chans, 1);
	ck_assert_int_eq(b.arenas, 1);
	ck_assert_int_eq(b.other, 0);
	/* one arena for all, a channel of its own each */
	ck_assert_uint_eq(a.arena_ino, b.arena_ino);
	ck_assert_uint_ne(a.chan_ino, b.chan_ino);
	st_close(&t);
}
END_TEST

/* ------------------------------------------------------------ restart */

struct bg_run {
	struct st *t;
	int err;
	uint64_t ms;
};

static void *bg_run_main(void *arg)
{
	struct bg_run *b = arg;
	struct pbus_outcome o;

	b->err = run1(b->t, TOOL_PRE, NULL, &o, &b->ms);
	return NULL;
}

START_TEST(dead_agent_fails_its_calls_at_once_and_comes_back_with_a_new_epoch)
{
	struct pbus_plugin_stats s0, s1;
	struct pbus_outcome o;
	struct bg_run b;
	pthread_t th;
	struct st t;

	setup();
	st_open(&t, 0,
		"plugins:\n"
		"  - name: D\n"
		"    kind: agent\n"
		"    hooks: [tool_pre_invoke]\n"
		"    timeout: 10\n"
		"    command: [%s]\n"
		"    config: {action: sleep, sleep_ms: 3000}\n",
		ctl_path);
	wait_up(&t, "D", 5000);
	s0 = stats(&t, "D");
	b = (struct bg_run){.t = &t};
	pthread_create(&th, NULL, bg_run_main, &b);
	usleep(200000); /* the call is in the agent's handler */
	ck_assert_int_eq(kill(s0.pid, SIGKILL), 0);
	pthread_join(th, NULL);
	ck_assert_int_eq(b.err, -ENOTCONN);
	ck_assert_uint_lt(b.ms, 200 + th_slack(300)); /* at once, not 10 s */
	wait_new_pid(&t, "D", s0.pid, 3000);
	s1 = stats(&t, "D");
	ck_assert_uint_gt(s1.epoch, s0.epoch);
	ck_assert_uint_eq(s1.restarts, 1);
	/* fresh agent, fresh regions: it answers (after its 3 s sleep) */
	ck_assert_int_eq(run1(&t, TOOL_PRE, NULL, &o, NULL), 0);
	st_close(&t);
	ck_assert_int_eq(wait_no_children(0, 2000), 0);
}
END_TEST

/* Spawn times of a command that dies at once (never attaches). */
START_TEST(restart_back_off_doubles_up_to_the_max)
{
	char file[128], line[64];
	uint64_t ts[8];
	int n = 0;
	struct st t;
	FILE *f;

	setup();
	snprintf(file, sizeof(file), "%s", tmp_path(".times"));
	unlink(file);
	st_open(&t, 0,
		"supervision: {restart_backoff_initial_ms: 100, "
		"restart_backoff_max_ms: 800, circuit_failures: 100}\n"
		"plugins:\n"
		"  - name: X\n"
		"    kind: agent\n"
		"    hooks: [tool_pre_invoke]\n"
		"    command: [/bin/sh, -c, 'date +%%s%%N >> %s; exit 1']\n",
		file);
	/* 0 +100 +200 +400 +800 +800 = 2.3 s for 6 starts */
	for (uint64_t until = th_now_ms() + 6000;
	     lines(file) < 7 && th_now_ms() < until;)
		usleep(20000);
	st_close(&t);
	f = fopen(file, "r");
	ck_assert_ptr_nonnull(f);
	while (n < 8 && fgets(line, sizeof(line), f))
		ts[n++] = strtoull(line, NULL, 10) / 1000000ull;
	fclose(f);
	unlink(file);
	ck_assert_int_ge(n, 7);
	{
		static const uint64_t want[] = {100, 200, 400, 800, 800, 800};

		for (int i = 0; i < 6; i++) {
			uint64_t gap = ts[i + 1] - ts[i];

			printf("back-off: start %d after %llu ms (want %llu)\n",
			       i + 1, (unsigned long long)gap,
			       (unsigned long long)want[i]);
			/* generous: a tick is 50 ms and the VM is shared */
			ck_assert_uint_ge(gap, want[i] - 5);
			ck_assert_uint_le(gap, want[i] + 200);
		}
	}
	ck_assert_int_eq(wait_no_children(0, 2000), 0);
}
END_TEST

START_TEST(back_off_starts_over_after_the_agent_stayed_up)
{
	uint64_t gap[4];
	struct st t;
	int32_t pid;

	setup();
	/* stable after max(1 s, max back-off) = 1 s */
	st_open(&t, 0,
		"supervision: {restart_backoff_initial_ms: 200, "
		"restart_backoff_max_ms: 1000, circuit_failures: 100}\n"
		"plugins:\n"
		"  - {name: R, kind: agent, hooks: [tool_pre_invoke], command: "
		"[%s]}\n",
		ctl_path);
	wait_up(&t, "R", 5000);
	for (int i = 0; i < 3; i++) { /* killed at once: 200, 400, 800 */
		pid = stats(&t, "R").pid;
		kill(pid, SIGKILL);
		gap[i] = wait_new_pid(&t, "R", pid, 5000);
	}
	usleep(1300000); /* stable now */
	pid = stats(&t, "R").pid;
	kill(pid, SIGKILL);
	gap[3] = wait_new_pid(&t, "R", pid, 5000);
	printf("back-off: %llu %llu %llu ms, then after a stable run %llu ms\n",
	       (unsigned long long)gap[0], (unsigned long long)gap[1],
	       (unsigned long long)gap[2], (unsigned long long)gap[3]);
	ck_assert_uint_ge(gap[0], 195);
	ck_assert_uint_ge(gap[1], 395);
	ck_assert_uint_ge(gap[2], 795);
	ck_assert_uint_le(gap[2], 800 + 400);
	ck_assert_uint_ge(gap[3], 195);
	ck_assert_uint_le(gap[3], 200 + 300);
	ck_assert_uint_eq(stats(&t, "R").restarts, 4);
	st_close(&t);
}
END_TEST

/* ------------------------------------------------------------ circuit */

#define CIRCUIT_YAML(open_ms)                                                  \
	"supervision: {circuit_failures: 3, circuit_window_ms: 5000, "         \
	"circuit_open_ms: " #open_ms ", watchdog_timeouts: 100, "              \
	"heartbeat_timeout_ms: 60000}\n"                                       \
	"plugins:\n"                                                           \
	"  - name: C\n"                                                        \
	"    kind: agent\n"                                                    \
	"    hooks: [tool_pre_invoke]\n"                                       \
	"    timeout: 0.1\n"                                                   \
	"    command: [%s]\n"                                                  \
	"    config: {action: sleep, sleep_ms: 250, count_file: '%s'}\n"

START_TEST(circuit_goes_closed_open_half_open_and_back)
{
	char cf[128], v[32];
	struct pbus_outcome o;
	struct st t;
	unsigned id;

	setup();
	snprintf(cf, sizeof(cf), "%s", tmp_path(".count"));
	unlink(cf);
	st_open(&t, 0, CIRCUIT_YAML(300), ctl_path, cf);
	wait_up(&t, "C", 5000);
	id = id_of(&t, "C");
	ck_assert_int_eq(stats(&t, "C").circuit, PBUS_CIRCUIT_CLOSED);
	/* three timeouts within the window open it */
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(run1(&t, TOOL_PRE, NULL, &o, NULL),
				 -ETIMEDOUT);
	ck_assert_int_eq(wait_circuit(&t, "C", PBUS_CIRCUIT_OPEN, 1000), 0);
	ck_assert_int_eq(admin_get(t.sock, "C", "circuit", v, sizeof(v)), 0);
	ck_assert_str_eq(v, "open");
	ck_assert_int_eq(pbus__sup_circuit_allows(t.m, id), PBUS__SUP_REFUSE);
	/* after circuit_open_ms: half-open, one probe only */
	ck_assert_int_eq(wait_circuit(&t, "C", PBUS_CIRCUIT_HALF_OPEN, 1000),
			 0);
	ck_assert_int_eq(pbus__sup_circuit_allows(t.m, id), PBUS__SUP_PROBE);
	ck_assert_int_eq(pbus__sup_circuit_allows(t.m, id), PBUS__SUP_REFUSE);
	/* a failed probe opens it again */
	pbus__sup_probe_done(t.m, id, -ETIMEDOUT);
	ck_assert_int_eq(stats(&t, "C").circuit, PBUS_CIRCUIT_OPEN);
	ck_assert_int_eq(pbus__sup_circuit_allows(t.m, id), PBUS__SUP_REFUSE);
	/* a good probe closes it */
	ck_assert_int_eq(wait_circuit(&t, "C", PBUS_CIRCUIT_HALF_OPEN, 1000),
			 0);
	ck_assert_int_eq(pbus__sup_circuit_allows(t.m, id), PBUS__SUP_PROBE);
	pbus__sup_probe_done(t.m, id, 0);
	ck_assert_int_eq(stats(&t, "C").circuit, PBUS_CIRCUIT_CLOSED);
	ck_assert_int_eq(pbus__sup_circuit_allows(t.m, id), PBUS__SUP_ALLOW);
	/* the failures that opened it are forgotten: one more is not enough */
	usleep(100000);
	ck_assert_int_eq(run1(&t, TOOL_PRE, NULL, &o, NULL), -ETIMEDOUT);
	usleep(200000);
	ck_assert_int_eq(stats(&t, "C").circuit, PBUS_CIRCUIT_CLOSED);
	ck_assert_int_ge(log_count("circuit open:"), 1);
	ck_assert_int_ge(log_count("circuit half-open"), 2);
	ck_assert_int_ge(log_count("circuit closed (probe answered)"), 1);
	st_close(&t);
	unlink(cf);
}
END_TEST

/* Needs the chain runner's circuit check (mgr_run.c): an open circuit
 * fails the call at once, as "agent down", with no IPC. */
START_TEST(open_circuit_fails_calls_fast_without_ipc_then_a_probe_closes_it)
{
	char cf[128];
	struct pbus_outcome o;
	uint64_t ms;
	struct st t;
	int before;

	setup();
	snprintf(cf, sizeof(cf), "%s", tmp_path(".count"));
	unlink(cf);
	st_open(&t, 0, CIRCUIT_YAML(1000), ctl_path, cf);
	wait_up(&t, "C", 5000);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(run1(&t, TOOL_PRE, NULL, &o, NULL),
				 -ETIMEDOUT);
	ck_assert_int_eq(wait_circuit(&t, "C", PBUS_CIRCUIT_OPEN, 1000), 0);
	usleep(500000); /* the agent finished its 3 x 250 ms sleeps */
	ck_assert_int_eq(stats(&t, "C").circuit, PBUS_CIRCUIT_OPEN);
	before = lines(cf);
	ck_assert_int_eq(run1(&t, TOOL_PRE, NULL, &o, &ms), -ENOTCONN);
	ck_assert_uint_le(ms, th_slack(5));
	ck_assert_str_eq(o.decided_by, "C");
	usleep(50000);
	ck_assert_int_eq(lines(cf), before); /* the agent saw nothing */
	/* half-open: the probe reaches the agent; it times out (the agent
	 * sleeps 250 ms, the timeout is 100 ms): open again */
	ck_assert_int_eq(wait_circuit(&t, "C", PBUS_CIRCUIT_HALF_OPEN, 1000),
			 0);
	ck_assert_int_eq(run1(&t, TOOL_PRE, NULL, &o, NULL), -ETIMEDOUT);
	ck_assert_int_eq(stats(&t, "C").circuit, PBUS_CIRCUIT_OPEN);
	st_close(&t);
	unlink(cf);
}
END_TEST

START_TEST(an_unreported_probe_is_judged_by_the_agents_answers)
{
	struct pbus_outcome o;
	struct st t;
	unsigned id;

	setup();
	st_open(&t, 0,
		"supervision: {circuit_failures: 2, circuit_window_ms: 5000, "
		"circuit_open_ms: 100, watchdog_timeouts: 100}\n"
		"plugins:\n"
		"  - name: C\n"
		"    kind: agent\n"
		"    hooks: [tool_pre_invoke]\n"
		"    timeout: 0.2\n"
		"    command: [%s]\n"
		"    config: {action: sleep, sleep_ms: 300, sleep_calls: 2}\n",
		ctl_path);
	wait_up(&t, "C", 5000);
	id = id_of(&t, "C");
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(run1(&t, TOOL_PRE, NULL, &o, NULL),
				 -ETIMEDOUT);
	ck_assert_int_eq(wait_circuit(&t, "C", PBUS_CIRCUIT_OPEN, 1000), 0);
	ck_assert_int_eq(wait_circuit(&t, "C", PBUS_CIRCUIT_HALF_OPEN, 1000),
			 0);
	usleep(400000); /* the slow calls are over */
	ck_assert_int_eq(pbus__sup_circuit_allows(t.m, id), PBUS__SUP_PROBE);
	/* the probe goes through the bus and is never reported */
	{
		struct pbus_peer *p = peer(&t, "C");
		struct pbus_lane *l;
		struct pbus_call_args a = {.hook = TOOL_PRE,
					   .timeout_ns = 1000000000ull};
		struct pbus_result r;

		ck_assert_int_eq(pbus_lane_acquire(pbus_mgr_bus(t.m), &l), 0);
		ck_assert_int_eq(pbus_invoke(p, l, &a, &r), 0);
		pbus_lane_release(l);
	}
	/* judged after the plugin's timeout + 1 s */
	ck_assert_int_eq(wait_circuit(&t, "C", PBUS_CIRCUIT_CLOSED, 3000), 0);
	st_close(&t);
}
END_TEST

/* ------------------------------------------------------------ watchdog */

START_TEST(agent_with_calls_timing_out_in_a_row_is_killed_and_restarted)
{
	struct pbus_outcome o;
	struct st t;
	int32_t pid;

	setup();
	st_open(&t, 0,
		"supervision: {watchdog_timeouts: 3, heartbeat_timeout_ms: "
		"60000, circuit_failures: 100}\n"
		"plugins:\n"
		"  - name: H\n"
		"    kind: agent\n"
		"    hooks: [tool_pre_invoke]\n"
		"    timeout: 0.1\n"
		"    command: [%s]\n"
		"    config: {action: hang}\n",
		ctl_path);
	wait_up(&t, "H", 5000);
	pid = stats(&t, "H").pid;
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(run1(&t, TOOL_PRE, NULL, &o, NULL),
				 -ETIMEDOUT);
	wait_new_pid(&t, "H", pid, 3000);
	ck_assert_int_eq(log_count("3 calls timed out in a row"), 1);
	ck_assert_uint_eq(stats(&t, "H").restarts, 1);
	st_close(&t);
	ck_assert_int_eq(wait_no_children(0, 2000), 0);
}
END_TEST

START_TEST(
	stopped_agent_with_calls_waiting_is_killed_after_the_heartbeat_timeout)
{
	struct pbus_outcome o;
	struct st t;
	uint64_t ms;
	int32_t pid;

	setup();
	st_open(&t, 0,
		"supervision: {heartbeat_timeout_ms: 300}\n"
		"plugins:\n"
		"  - name: Z\n"
		"    kind: agent\n"
		"    hooks: [tool_pre_invoke]\n"
		"    timeout: 5\n"
		"    command: [%s]\n",
		ctl_path);
	wait_up(&t, "Z", 5000);
	pid = stats(&t, "Z").pid;
	ck_assert_int_eq(kill(pid, SIGSTOP), 0);
	ck_assert_int_eq(run1(&t, TOOL_PRE, NULL, &o, &ms), -ENOTCONN);
	printf("stopped agent: call failed after %llu ms\n",
	       (unsigned long long)ms);
	ck_assert_uint_lt(ms, th_bound(2000, 4500)); /* not the 5 s timeout */
	wait_new_pid(&t, "Z", pid, 3000);
	ck_assert_int_eq(run1(&t, TOOL_PRE, NULL, &o, NULL), 0);
	ck_assert_int_eq(wait_log("stopped, no heartbeat", 100), 0);
	st_close(&t);
}
END_TEST

/* Voluntary context switches of @pid so far, or -1. */
static long ctx_switches(pid_t pid)
{
	char path[64], line[128];
	long n = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "voluntary_ctxt_switches: %ld", &n) == 1)
			break;
	fclose(f);
	return n;
}

/* An agent its gateway spawned sleeps with no deadline (it dies with the
 * gateway, and everything else rings its doorbell): idle, it does not wake
 * even once a heartbeat (1 s), and the watchdog, with a heartbeat timeout
 * far shorter than the idle time, takes it as alive. Then it answers. */
START_TEST(spawned_idle_agent_sleeps_through_and_is_not_taken_for_hung)
{
	struct pbus_outcome o;
	struct st t;
	long before, after;
	int32_t pid;

	setup();
	st_open(&t, 0,
		"supervision: {heartbeat_timeout_ms: 200}\n"
		"plugins:\n"
		"  - name: P\n"
		"    kind: agent\n"
		"    hooks: [tool_pre_invoke]\n"
		"    timeout: 5\n"
		"    command: [%s]\n",
		pass_path);
	wait_up(&t, "P", 5000);
	ck_assert_int_eq(run1(&t, TOOL_PRE, NULL, &o, NULL), 0);
	pid = stats(&t, "P").pid;
	usleep(200000); /* past its idle poll: asleep */
	before = ctx_switches(pid);
	usleep(1500000);
	after = ctx_switches(pid);
	ck_assert_int_ge(before, 0);
	ck_assert_int_eq(after, before);
	ck_assert_int_eq(stats(&t, "P").pid, pid);
	ck_assert_uint_eq(stats(&t, "P").restarts, 0);
	ck_assert_int_eq(run1(&t, TOOL_PRE, NULL, &o, NULL), 0);
	ck_assert_int_eq(log_count("no heartbeat"), 0);
	st_close(&t);
}
END_TEST

START_TEST(busy_agent_in_a_long_handler_is_not_killed_before_its_timeout)
{
	struct pbus_outcome o;
	struct st t;
	uint64_t ms;
	int32_t pid;

	setup();
	st_open(&t, 0,
		"supervision: {heartbeat_timeout_ms: 300, watchdog_timeouts: "
		"1}\n"
		"plugins:\n"
		"  - name: B\n"
		"    kind: agent\n"
		"    hooks: [tool_pre_invoke]\n"
		"    timeout: 3\n"
		"    command: [%s]\n"
		"    config: {action: sleep, sleep_ms: 1500}\n",
		ctl_path);
	wait_up(&t, "B", 5000);
	pid = stats(&t, "B").pid;
	ck_assert_int_eq(run1(&t, TOOL_PRE, NULL, &o, &ms), 0);
	ck_assert_uint_ge(ms, 1400);
	ck_assert_int_eq(stats(&t, "B").pid, pid);
	ck_assert_uint_eq(stats(&t, "B").restarts, 0);
	ck_assert_int_eq(log_count("watchdog"), 0);
	st_close(&t);
}
END_TEST

/* ------------------------------------------------------------ hostile */

struct good_run {
	struct st *t;
	int hook;
	_Atomic int stop;
	unsigned n, bad, no_meta, slow; /* slow: over 50 ms */
	uint64_t max_ms;
};

/* 1 if the outcome's metadata has "good" (the good agent answered). */
static int good_answered(const struct pbus_outcome *o)
{
	struct pbus_mp m, v;

	return !pbus_mp_open(o->metadata, o->metadata_len, &m) &&
	       !pbus_mp_get(m, "good", &v);
}

static void *good_main(void *arg)
{
	struct good_run *g = arg;

	while (!atomic_load(&g->stop)) {
		struct pbus_outcome o;
		uint64_t ms;

		if (run1(g->t, g->hook, NULL, &o, &ms))
			g->bad++;
		else if (!good_answered(&o))
			g->no_meta++;
		if (ms > g->max_ms)
			g->max_ms = ms;
		g->slow += ms > th_slack(50);
		g->n++;
	}
	return NULL;
}

/*
 * good (agent-ctl) serves every hook; forge (enforce) serves tool_pre and
 * forge2 (permissive) tool_post, both agent-forge with random hostile
 * answers. prompt_pre chains reach good only; tool_post chains must
 * always pass (forge2's failures are ignored in permissive mode); tool_pre
 * chains fail as forge's mode says.
 */
START_TEST(hostile_agent_is_restarted_and_other_agents_are_unaffected)
{
	static const char *const cmds[] = {
		"garbage", "badlen",  "tail",  "hugebody", "stale",
		"dup",	   "unknown", "flood", "doorbell", "ok",
	};
	struct pbus_plugin_stats s0, s1;
	struct good_run g1, g2;
	pthread_t th1, th2;
	struct st t;
	unsigned ok = 0, failed = 0, n = 0;
	uint64_t ms;
	char v[32];

	setup();
	st_open(&t, 0,
		"supervision: {restart_backoff_initial_ms: 50, "
		"restart_backoff_max_ms: 200, circuit_failures: 1000}\n"
		"plugins:\n"
		"  - name: good\n"
		"    kind: agent\n"
		"    priority: 10\n"
		"    hooks: [tool_pre_invoke, tool_post_invoke, "
		"prompt_pre_fetch]\n"
		"    command: [%s]\n"
		"    config: {metadata: {good: 1}}\n"
		"  - name: forge\n"
		"    kind: agent\n"
		"    priority: 20\n"
		"    mode: enforce\n"
		"    hooks: [tool_pre_invoke]\n"
		"    timeout: 0.2\n"
		"    command: [%s]\n"
		"    config: {cmd: random}\n"
		"  - name: forge2\n"
		"    kind: agent\n"
		"    priority: 20\n"
		"    mode: permissive\n"
		"    hooks: [tool_post_invoke]\n"
		"    timeout: 0.2\n"
		"    command: [%s]\n"
		"    config: {cmd: random}\n",
		ctl_path, forge_path, forge_path);
	ck_assert_int_eq(pbus_mgr_wait_ready(t.m, 5000), 0);
	s0 = stats(&t, "forge");
	g1 = (struct good_run){.t = &t, .hook = PBUS_HOOK_PROMPT_PRE_FETCH};
	g2 = (struct good_run){.t = &t, .hook = TOOL_POST};
	pthread_create(&th1, NULL, good_main, &g1);
	pthread_create(&th2, NULL, good_main, &g2);
	/* each hostile command once, then random ones for 3 s */
	for (uint64_t until = th_now_ms() + 3000; n < 10 || th_now_ms() < until;
	     n++) {
		struct pbus_outcome o;
		const char *cmd = n < 10 ? cmds[n] : NULL;
		int err;

		if (n < 10)
			wait_up(&t, "forge", 5000);
		err = run1(&t, TOOL_PRE, cmd, &o, &ms);
		ck_assert(good_answered(&o)); /* good ran first, fine */
		if (!err) {
			ok++;
			continue;
		}
		failed++;
		if (ms < 1) /* forge is down: no need to hog a CPU */
			usleep(200);
		ck_assert_msg(
			err == -ETIMEDOUT || err == -ENOTCONN || err == -EPROTO,
			"forge '%s': error %d", cmd ? cmd : "random", err);
		ck_assert_str_eq(o.decided_by, "forge");
	}
	atomic_store(&g1.stop, 1);
	atomic_store(&g2.stop, 1);
	pthread_join(th1, NULL);
	pthread_join(th2, NULL);
	s1 = stats(&t, "forge");
	printf("hostile: %u tool_pre chains (%u ok, %u failed by forge), "
	       "forge restarted %u times, forge2 %u times; good alone: %u "
	       "chains, %u failed, %u over 50 ms, max %llu ms; good + "
	       "permissive "
	       "forge2: %u chains, %u failed, max %llu ms\n",
	       n, ok, failed, s1.restarts, stats(&t, "forge2").restarts, g1.n,
	       g1.bad + g1.no_meta, g1.slow, (unsigned long long)g1.max_ms,
	       g2.n, g2.bad + g2.no_meta, (unsigned long long)g2.max_ms);
	fflush(stdout);
	ck_assert_uint_ge(s1.restarts, 2);
	ck_assert_uint_ge(stats(&t, "forge2").restarts, 1);
	ck_assert_uint_gt(s1.epoch, s0.epoch);
	ck_assert_uint_gt(ok, 0);
	ck_assert_uint_gt(g1.n, 100);
	ck_assert_uint_eq(g1.bad, 0);
	ck_assert_uint_eq(g1.no_meta, 0);
	/* never waits for forge (that would be its 200 ms timeout, again
	 * and again); a rare slow one is the shared 2-CPU scheduler */
	ck_assert_uint_le(g1.slow, g1.n / 1000 + 1);
	ck_assert_uint_lt(g1.max_ms, th_slack(1000));
	ck_assert_uint_gt(g2.n, 10);
	ck_assert_uint_eq(g2.bad, 0);
	ck_assert_uint_eq(g2.no_meta, 0);
	ck_assert_int_ge(log_count("garbage on its channel"), 1);
	ck_assert_int_ge(log_count("malformed frames"), 1);
	/* the gateway is fine */
	ck_assert_int_eq(admin_get(t.sock, "good", "state", v, sizeof(v)), 0);
	ck_assert_str_eq(v, "up");
	ck_assert_uint_eq(stats(&t, "good").restarts, 0);
	st_close(&t);
	ck_assert_int_eq(wait_no_children(0, 2000), 0);
}
END_TEST

/* ------------------------------------------------------------ external */

START_TEST(external_agent_reconnects_after_a_drop_and_after_a_new_gateway)
{
	struct pbus_plugin_stats s0, s1;
	struct pbus_outcome o;
	struct st t;
	char sock[108];
	pid_t pid;
	const char *yaml =
		"plugin_settings: {}\n"
		"plugins:\n"
		"  - {name: E, kind: agent, hooks: [tool_pre_invoke]}\n";

	setup();
	st_open(&t, 0, "%s", yaml);
	snprintf(sock, sizeof(sock), "%s", t.sock);
	pid = external(t.sock, "E", 1);
	wait_up(&t, "E", 5000);
	s0 = stats(&t, "E");
	ck_assert_int_eq(s0.pid, pid);
	ck_assert_int_eq(run1(&t, TOOL_PRE, NULL, &o, NULL), 0);
	/* dropped (admin restart): it comes back by itself */
	ck_assert_int_eq(pbus_peer_disconnect(peer(&t, "E")), 0);
	for (uint64_t until = th_now_ms() + 3000;
	     stats(&t, "E").epoch == s0.epoch || !stats(&t, "E").up;) {
		ck_assert_msg(th_now_ms() < until, "E did not reconnect");
		usleep(5000);
	}
	s1 = stats(&t, "E");
	ck_assert_int_eq(s1.pid, pid);
	ck_assert_uint_eq(s1.restarts, 1);
	ck_assert_int_eq(run1(&t, TOOL_PRE, NULL, &o, NULL), 0);
	/* a new gateway on the same socket */
	st_close(&t);
	usleep(300000);
	ck_assert_int_eq(kill(pid, 0), 0); /* still there, retrying */
	{
		struct pbus_mgr_opts mo = {.sock_path = sock};

		memset(&t, 0, sizeof(t));
		snprintf(t.sock, sizeof(t.sock), "%s", sock);
		ck_assert_int_eq(pbus_config_parse(yaml, strlen(yaml), "x",
						   NULL, &t.cfg),
				 0);
		ck_assert_int_eq(pbus_mgr_open(t.cfg, &mo, &t.m), 0);
	}
	wait_up(&t, "E", 5000);
	ck_assert_int_eq(stats(&t, "E").pid, pid);
	ck_assert_int_eq(run1(&t, TOOL_PRE, NULL, &o, NULL), 0);
	kill(pid, SIGTERM);
	ck_assert_int_eq(th_wait_exit(pid, 3000, NULL), 0);
	st_close(&t);
}
END_TEST

START_TEST(second_agent_for_a_name_is_refused_unless_the_first_is_dead)
{
	struct st t;
	pid_t a, b;
	int status;

	setup();
	st_open(&t, 0,
		"plugins:\n  - {name: E, kind: agent, hooks: "
		"[tool_pre_invoke]}\n");
	a = external(t.sock, "E", 0);
	wait_up(&t, "E", 5000);
	/* a second live agent: refused, the first keeps the name */
	b = external(t.sock, "E", 0);
	ck_assert_int_eq(th_wait_exit(b, 5000, &status), 0);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) != 0);
	ck_assert_int_eq(raw_hello(t.sock, "E"), -EEXIST);
	/* stopped is still alive */
	kill(a, SIGSTOP);
	ck_assert_int_eq(raw_hello(t.sock, "E"), -EEXIST);
	kill(a, SIGCONT);
	ck_assert_int_eq(stats(&t, "E").pid, a);
	/* dead: the next one gets the name at once */
	kill(a, SIGKILL);
	ck_assert_int_eq(th_wait_exit(a, 3000, NULL), 0);
	ck_assert_int_eq(raw_hello(t.sock, "E"), 0);
	st_close(&t);
}
END_TEST

/* In a child that became uid 65534: try to attach as plugin "p". Exit
 * status: 0 attached, 1 -EACCES, 3 connection reset (the gateway closed
 * before reading the hello: refused too, the REJECT was lost), 2 else. */
static int hello_as_nobody(const char *sock)
{
	pid_t pid = fork();
	int status;

	if (pid == 0) {
		int r;

		if (setgid(65534) || setuid(65534))
			_exit(99);
		r = raw_hello(sock, "p");
		if (getenv("PBUS_TEST_VERBOSE"))
			fprintf(stderr, "hello as nobody: %d\n", r);
		_exit(r == 0 ? 0 : r == -EACCES ? 1 : r == -ECONNRESET ? 3 : 2);
	}
	ck_assert_int_eq(th_wait_exit(pid, 10000, &status), 0);
	ck_assert(WIFEXITED(status));
	return WEXITSTATUS(status);
}

START_TEST(only_the_gateways_uid_or_an_allowed_uid_may_attach)
{
	struct pbus_bus_opts o = {0};
	struct pbus_bus *b;
	struct pbus_peer *p;
	unsigned nobody = 65534;

	setup();
	if (getuid() != 0) {
		printf("uid check: skipped (needs root to change uid)\n");
		return;
	}
	/* 0600: the socket file itself keeps others out */
	o.sock_path = tmp_path(".sock");
	ck_assert_int_eq(pbus_bus_open(&o, &b), 0);
	ck_assert_int_eq(pbus_bus_add_peer(b, "p", NULL, 0, &p), 0);
	ck_assert_int_eq(hello_as_nobody(o.sock_path), 1); /* EACCES */
	pbus_bus_close(b);
	/* 0666: the socket lets it in, SO_PEERCRED refuses it */
	o.sock_path = tmp_path(".sock");
	o.sock_mode = 0666;
	ck_assert_int_eq(pbus_bus_open(&o, &b), 0);
	ck_assert_int_eq(pbus_bus_add_peer(b, "p", NULL, 0, &p), 0);
	{
		int r = hello_as_nobody(o.sock_path);

		ck_assert_msg(r == 1 || r == 3, "hello as nobody: %d", r);
	}
	ck_assert_int_ge(log_count("uid 65534 is not allowed"), 1);
	ck_assert_int_eq(pbus_peer_is_up(p), 0);
	pbus_bus_close(b);
	/* allowed_uids lets it attach */
	o.sock_path = tmp_path(".sock");
	o.allow_uids = &nobody;
	o.n_allow_uids = 1;
	ck_assert_int_eq(pbus_bus_open(&o, &b), 0);
	ck_assert_int_eq(pbus_bus_add_peer(b, "p", NULL, 0, &p), 0);
	ck_assert_int_eq(hello_as_nobody(o.sock_path), 0);
	pbus_bus_close(b);
}
END_TEST

/* ------------------------------------------------------------ gateway exit */

START_TEST(
	when_the_gateway_dies_spawned_agents_exit_and_external_ones_retry_quietly)
{
	char sock[108], v[32];
	int pfd[2];
	pid_t gw, spawned = 0, ext;
	long c0, c1;
	struct st t;
	uint64_t until;

	setup();
	/* orphans come to us, so we can check and reap them */
	ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	snprintf(sock, sizeof(sock), "%s", tmp_path(".sock"));
	ck_assert_int_eq(pipe(pfd), 0);
	gw = fork();
	if (gw == 0) {
		struct pbus_config *c;
		struct pbus_mgr *m;
		struct pbus_mgr_opts mo = {.sock_path = sock};
		char y[PATH_MAX + 256];
		int32_t pid;

		snprintf(y, sizeof(y),
			 "plugin_settings: {}\n"
			 "plugins:\n"
			 "  - {name: S, kind: agent, hooks: [tool_pre_invoke], "
			 "command: "
			 "[%s]}\n"
			 "  - {name: E, kind: agent, hooks: "
			 "[tool_pre_invoke]}\n",
			 ctl_path);
		if (pbus_config_parse(y, strlen(y), "gw", NULL, &c) ||
		    pbus_mgr_open(c, &mo, &m) ||
		    pbus_peer_wait_up(pbus_bus_find_peer(pbus_mgr_bus(m), "S"),
				      5000))
			_exit(1);
		pid = pbus_bus_find_peer(pbus_mgr_bus(m), "S")->pid;
		if (write(pfd[1], &pid, sizeof(pid)) != sizeof(pid))
			_exit(1);
		for (;;)
			pause();
	}
	close(pfd[1]);
	ck_assert_int_eq(read(pfd[0], &spawned, sizeof(spawned)),
			 sizeof(spawned));
	close(pfd[0]);
	ext = external(sock, "E", 1);
	for (until = th_now_ms() + 5000;
	     admin_get(sock, "E", "up", v, sizeof(v)) || strcmp(v, "true");) {
		ck_assert_msg(th_now_ms() < until, "E did not attach");
		usleep(10000);
	}
	/* kill -9 the gateway */
	kill(gw, SIGKILL);
	ck_assert_int_eq(th_wait_exit(gw, 3000, NULL), 0);
	/* its spawned agent leaves by itself (parent-death signal) */
	ck_assert_msg(th_wait_exit(spawned, 3000, NULL) == 0,
		      "spawned agent %d still running", (int)spawned);
	/* the external one keeps retrying, asleep */
	usleep(1500000); /* past the heartbeat that notices the EOF */
	c0 = th_cpu_ticks(ext);
	usleep(2000000);
	c1 = th_cpu_ticks(ext);
	ck_assert_int_ge(c0, 0);
	printf("gateway exit: external agent used %ld ticks in 2 s while "
	       "retrying\n",
	       c1 - c0);
	ck_assert_int_le(c1 - c0, 2);
	ck_assert_int_eq(kill(ext, 0), 0);
	/* a new gateway: it is served again */
	{
		struct pbus_mgr_opts mo = {.sock_path = sock};
		const char *y = "plugin_settings: {}\n"
				"plugins:\n"
				"  - {name: E, kind: agent, hooks: "
				"[tool_pre_invoke]}\n";
		struct pbus_outcome o;

		memset(&t, 0, sizeof(t));
		snprintf(t.sock, sizeof(t.sock), "%s", sock);
		ck_assert_int_eq(
			pbus_config_parse(y, strlen(y), "x", NULL, &t.cfg), 0);
		ck_assert_int_eq(pbus_mgr_open(t.cfg, &mo, &t.m), 0);
		wait_up(&t, "E", 5000);
		ck_assert_int_eq(run1(&t, TOOL_PRE, NULL, &o, NULL), 0);
	}
	kill(ext, SIGTERM);
	ck_assert_int_eq(th_wait_exit(ext, 3000, NULL), 0);
	st_close(&t);
	/* As the subreaper we also inherit what the dead gateway had not
	 * reaped yet (an agent it had just replaced): reap those; then no
	 * process may be left. */
	for (until = th_now_ms() + 2000;
	     children(0, 0) && th_now_ms() < until;
	     usleep(5000))
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
	ck_assert_int_eq(wait_no_children(0, 0), 0);
}
END_TEST

/* ------------------------------------------------------------ admin */

static int sh(char *out, size_t cap, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Run a shell command; its stdout in @out; returns the exit status. */
static int sh(char *out, size_t cap, const char *fmt, ...)
{
	char cmd[1024];
	size_t n = 0;
	va_list ap;
	FILE *f;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	f = popen(cmd, "r");
	ck_assert_ptr_nonnull(f);
	while (n + 1 < cap && !feof(f)) {
		size_t r = fread(out + n, 1, cap - 1 - n, f);

		if (!r)
			break;
		n += r;
	}
	out[n] = 0;
	st = pclose(f);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

START_TEST(pbus_status_prints_the_table_and_restarts_an_agent)
{
	char out[8192], pbus[PATH_MAX];
	struct pbus_plugin_stats s0, s1;
	struct st t;
	uint64_t ms;

	setup();
	ck_assert_msg(realpath(th_bin("pbus"), pbus), "no pbus binary");
	st_open(&t, 0,
		"plugins:\n"
		"  - {name: alpha, kind: agent, hooks: [tool_pre_invoke], "
		"command: [%s]}\n"
		"  - {name: beta, kind: agent, hooks: [tool_pre_invoke]}\n",
		ctl_path);
	wait_up(&t, "alpha", 5000);
	ck_assert_int_eq(
		sh(out, sizeof(out), "%s status --socket %s", pbus, t.sock), 0);
	printf("%s", out);
	ck_assert_ptr_nonnull(strstr(out, "PLUGIN"));
	ck_assert_ptr_nonnull(strstr(out, "RESTARTS"));
	ck_assert_ptr_nonnull(strstr(out, "CIRCUIT"));
	ck_assert_ptr_nonnull(strstr(out, "alpha"));
	ck_assert_ptr_nonnull(strstr(out, "beta"));
	ck_assert_ptr_nonnull(strstr(out, " up "));
	ck_assert_ptr_nonnull(strstr(out, " down "));
	ck_assert_ptr_nonnull(strstr(out, "closed"));
	/* restart by name: at once, not a failure */
	s0 = stats(&t, "alpha");
	ck_assert_int_eq(sh(out, sizeof(out),
			    "%s status --socket %s "
			    "--restart alpha",
			    pbus, t.sock),
			 0);
	ms = wait_new_pid(&t, "alpha", s0.pid, 3000);
	s1 = stats(&t, "alpha");
	ck_assert_uint_eq(s1.restarts, 1);
	ck_assert_uint_gt(s1.epoch, s0.epoch);
	ck_assert_int_eq(s1.circuit, PBUS_CIRCUIT_CLOSED);
	ck_assert_uint_lt(ms, th_slack(2000));
	ck_assert_int_ge(log_count("restarting it now"), 1);
	/* unknown names and detached plugins are errors */
	ck_assert_int_eq(sh(out, sizeof(out),
			    "%s status --socket %s "
			    "--restart nope 2>&1",
			    pbus, t.sock),
			 1);
	ck_assert_ptr_nonnull(strstr(out, "no such plugin"));
	ck_assert_int_eq(sh(out, sizeof(out),
			    "%s status --socket %s "
			    "--restart beta 2>&1",
			    pbus, t.sock),
			 1);
	st_close(&t);
	ck_assert_int_eq(sh(out, sizeof(out), "%s status --socket %s 2>&1",
			    pbus, t.sock),
			 1);
}
END_TEST

/* ------------------------------------------------------------ chaos */

struct chaos {
	struct st *t;
	_Atomic int stop;
	_Atomic uint64_t issued, ok, notconn, timedout, other, bad;
	_Atomic uint64_t max_ms, kills, stops;
	_Atomic uint64_t stall_ms; /* worst oversleep of a 5 ms nap */
	_Atomic int other_err;
	unsigned pace_us; /* nap after a chain that failed fast */
};

static void chaos_max(_Atomic uint64_t *m, uint64_t v)
{
	uint64_t cur = atomic_load(m);

	while (v > cur && !atomic_compare_exchange_weak(m, &cur, v))
		;
}

/* How late a 5 ms sleep wakes up, at worst: the machine's own stalls. */
static void *chaos_stall_probe(void *arg)
{
	struct chaos *c = arg;

	while (!atomic_load(&c->stop)) {
		uint64_t t0 = th_now_ms();

		usleep(5000);
		chaos_max(&c->stall_ms, th_now_ms() - t0 - 5);
	}
	return NULL;
}

static void *chaos_caller(void *arg)
{
	struct chaos *c = arg;

	while (!atomic_load(&c->stop)) {
		struct pbus_outcome o;
		uint64_t ms;
		int err;

		atomic_fetch_add(&c->issued, 1);
		err = run1(c->t, TOOL_PRE, NULL, &o, &ms);
		chaos_max(&c->max_ms, ms);
		if (ms > 510 && getenv("PBUS_TEST_VERBOSE"))
			fprintf(stderr,
				"slow chain: %llu ms, error %d by %s, "
				"%u plugins run, at %llu\n",
				(unsigned long long)ms, err,
				o.decided_by ? o.decided_by : "-",
				o.plugins_run,
				(unsigned long long)th_now_ms() % 100000);
		if (!err)
			atomic_fetch_add(&c->ok, 1);
		else if (err == -ENOTCONN)
			atomic_fetch_add(&c->notconn, 1);
		else if (err == -ETIMEDOUT)
			atomic_fetch_add(&c->timedout, 1);
		else {
			atomic_fetch_add(&c->other, 1);
			atomic_store(&c->other_err, err);
		}
		/* A gateway thread waits for its next request; without a
		 * pause, chains failing fast (agent down, circuit open) turn
		 * the callers into four CPU hogs on two CPUs, and the
		 * scheduler, not the bus, decides how late a wake-up runs. */
		if (c->pace_us && ms < 1)
			usleep(c->pace_us);
	}
	return NULL;
}

/* SIGKILL plugin K's agent every ~200 ms. */
static void *chaos_killer(void *arg)
{
	struct chaos *c = arg;

	while (!atomic_load(&c->stop)) {
		struct pbus_plugin_stats s = stats(c->t, "K");

		if (s.up && s.pid > 0 && !sig_pid(s.pid, SIGKILL))
			atomic_fetch_add(&c->kills, 1);
		usleep(200000);
	}
	return NULL;
}

/* SIGSTOP plugin S's agent now and then, for 100..900 ms. */
static void *chaos_stopper(void *arg)
{
	struct chaos *c = arg;
	unsigned seed = (unsigned)getpid();

	while (!atomic_load(&c->stop)) {
		struct pbus_plugin_stats s;
		int fd;

		usleep(700000 + (useconds_t)(rand_r(&seed) % 600) * 1000);
		s = stats(c->t, "S");
		if (atomic_load(&c->stop) || !s.up || s.pid <= 0)
			continue;
		fd = pidfd_open(s.pid, 0);
		if (fd < 0)
			continue;
		if (!pidfd_send_signal(fd, SIGSTOP, NULL, 0))
			atomic_fetch_add(&c->stops, 1);
		usleep(100000 + (useconds_t)(rand_r(&seed) % 800) * 1000);
		pidfd_send_signal(fd, SIGCONT, NULL, 0);
		close(fd);
	}
	return NULL;
}

static void warm(struct st *t, int ms)
{
	struct chaos c = {.t = t};
	pthread_t th[4];

	for (int i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, chaos_caller, &c);
	usleep((useconds_t)ms * 1000);
	atomic_store(&c.stop, 1);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
}

START_TEST(chaos_every_call_gets_a_defined_answer_in_time_and_nothing_leaks)
{
	const char *env = getenv("PBUS_CHAOS_SECONDS");
	int secs = env && atoi(env) > 0 ? atoi(env) : 30;
	int fd0, fd1, fd_before, fd_after;
	long rss0, rss1;
	struct chaos c;
	pthread_t th[7];
	struct st t;
	uint64_t answered;

	setup();
	fd_before = fd_count();
	st_open(&t, 0,
		"plugin_settings: {plugin_timeout: 0.5}\n"
		"bus: {max_payload_size: 65536}\n"
		"supervision: {restart_backoff_initial_ms: 20, "
		"restart_backoff_max_ms: 200, circuit_failures: 4, "
		"circuit_window_ms: 1000, circuit_open_ms: 150, "
		"watchdog_timeouts: 3, heartbeat_timeout_ms: 700}\n"
		"plugins:\n"
		"  - {name: A, kind: agent, priority: 10, hooks: "
		"[tool_pre_invoke], command: "
		"[%s]}\n"
		"  - {name: K, kind: agent, priority: 20, hooks: "
		"[tool_pre_invoke], command: "
		"[%s]}\n"
		"  - {name: S, kind: agent, priority: 30, hooks: "
		"[tool_pre_invoke], command: "
		"[%s]}\n",
		ctl_path, ctl_path, ctl_path);
	ck_assert_int_eq(pbus_mgr_wait_ready(t.m, 5000), 0);
	atomic_store(&log_quiet, 1); /* a warning per failed call */
	warm(&t, 2000); /* every response ring has wrapped: resident */
	fd0 = fd_count();
	rss0 = rss_kib();

	memset(&c, 0, sizeof(c));
	c.t = &t;
	c.pace_us = 200;
	for (int i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, chaos_caller, &c);
	pthread_create(&th[4], NULL, chaos_killer, &c);
	pthread_create(&th[5], NULL, chaos_stopper, &c);
	pthread_create(&th[6], NULL, chaos_stall_probe, &c);
	sleep((unsigned)secs);
	atomic_store(&c.stop, 1);
	for (int i = 0; i < 7; i++)
		pthread_join(th[i], NULL);

	/* quiet again: every agent back, dead channels unmapped */
	ck_assert_int_eq(pbus_mgr_wait_ready(t.m, 5000), 0);
	for (uint64_t until = th_now_ms() + 5000;
	     fd_count() != fd0 && th_now_ms() < until;)
		usleep(10000);
	fd1 = fd_count();
	rss1 = rss_kib();
	ck_assert_int_eq(wait_no_children(1, 2000), 0); /* no zombies */
	answered = c.ok + c.notconn + c.timedout + c.other;
	printf("chaos (%d s, 4 threads, chain A-K-S, timeout 500 ms): "
	       "%llu calls issued, %llu answered: %llu ok, %llu agent down "
	       "or circuit open, %llu timed out, %llu other (last %d); "
	       "slowest %llu ms (a 5 ms nap overslept by up to %llu ms); K "
	       "killed %llu times (restarts %u), S "
	       "stopped %llu times (restarts %u); circuit opened %u times; "
	       "fds %d -> %d; RSS %ld -> %ld KiB\n",
	       secs, (unsigned long long)c.issued, (unsigned long long)answered,
	       (unsigned long long)c.ok, (unsigned long long)c.notconn,
	       (unsigned long long)c.timedout, (unsigned long long)c.other,
	       c.other_err, (unsigned long long)c.max_ms,
	       (unsigned long long)c.stall_ms, (unsigned long long)c.kills,
	       stats(&t, "K").restarts, (unsigned long long)c.stops,
	       stats(&t, "S").restarts, atomic_load(&circuit_opens), fd0, fd1,
	       rss0, rss1);
	fflush(stdout);
	ck_assert_uint_eq(c.issued, answered);
	ck_assert_uint_eq(c.other, 0);
	ck_assert_uint_gt(c.ok, 0);
	ck_assert_uint_gt(c.kills, 0);
	ck_assert_uint_le(c.max_ms, 500 + th_slack(50));
	ck_assert_int_eq(fd1, fd0);
	/* RSS slack: malloc keeps freed chunks of the callers' per-thread
	 * arenas, and the lanes the chaos threads touched stay resident in
	 * the arena memfd; neither grows with the run's length */
#ifndef __SANITIZE_ADDRESS__ /* ASan's quarantine keeps freed memory */
	ck_assert_int_le(rss1, rss0 + 2048);
#endif
	st_close(&t);
	ck_assert_int_eq(wait_no_children(0, 3000), 0);
	fd_after = fd_count();
	ck_assert_int_eq(fd_after, fd_before);
}
END_TEST

/* ------------------------------------------------------------ suite */

static TCase *tcase(Suite *s, const char *name, int timeout)
{
	TCase *tc = tcase_create(name);

	tcase_set_timeout(tc, timeout);
	tcase_add_unchecked_fixture(tc, NULL, sweep);
	suite_add_tcase(s, tc);
	return tc;
}

// clang-format off
static Suite *sup_suite(void)
{
	Suite *s = suite_create("sup");
	const char *env = getenv("PBUS_CHAOS_SECONDS");
	int secs = env && atoi(env) > 0 ? atoi(env) : 30;
	TCase *tc;

	tc = tcase(s, "spawn", 30);
	tcase_add_test(tc, spawned_agent_output_is_logged_line_by_line_with_its_name);
	tcase_add_test(tc, an_agent_holds_only_its_own_channel_the_arena_and_its_socket);

	tc = tcase(s, "restart", 30);
	tcase_add_test(tc, dead_agent_fails_its_calls_at_once_and_comes_back_with_a_new_epoch);
	tcase_add_test(tc, restart_back_off_doubles_up_to_the_max);
	tcase_add_test(tc, back_off_starts_over_after_the_agent_stayed_up);

	tc = tcase(s, "circuit", 30);
	tcase_add_test(tc, circuit_goes_closed_open_half_open_and_back);
	tcase_add_test(tc, open_circuit_fails_calls_fast_without_ipc_then_a_probe_closes_it);
	tcase_add_test(tc, an_unreported_probe_is_judged_by_the_agents_answers);

	tc = tcase(s, "watchdog", 30);
	tcase_add_test(tc, agent_with_calls_timing_out_in_a_row_is_killed_and_restarted);
	tcase_add_test(tc, stopped_agent_with_calls_waiting_is_killed_after_the_heartbeat_timeout);
	tcase_add_test(tc, spawned_idle_agent_sleeps_through_and_is_not_taken_for_hung);
	tcase_add_test(tc, busy_agent_in_a_long_handler_is_not_killed_before_its_timeout);

	tc = tcase(s, "hostile", 60);
	tcase_add_test(tc, hostile_agent_is_restarted_and_other_agents_are_unaffected);

	tc = tcase(s, "external", 30);
	tcase_add_test(tc, external_agent_reconnects_after_a_drop_and_after_a_new_gateway);
	tcase_add_test(tc, second_agent_for_a_name_is_refused_unless_the_first_is_dead);
	tcase_add_test(tc, only_the_gateways_uid_or_an_allowed_uid_may_attach);

	tc = tcase(s, "gateway_exit", 30);
	tcase_add_test(tc, when_the_gateway_dies_spawned_agents_exit_and_external_ones_retry_quietly);

	tc = tcase(s, "admin", 30);
	tcase_add_test(tc, pbus_status_prints_the_table_and_restarts_an_agent);

	tc = tcase(s, "chaos", secs + 60);
	tcase_add_test(tc, chaos_every_call_gets_a_defined_answer_in_time_and_nothing_leaks);
	return s;
}
// clang-format on

int main(void)
{
	SRunner *sr = srunner_create(sup_suite());
	int nf;

	signal(SIGPIPE, SIG_IGN);
	runner = getpid();
	srunner_run_all(sr, CK_NORMAL);
	nf = srunner_ntests_failed(sr);
	srunner_free(sr);
	return nf ? 1 : 0;
}
