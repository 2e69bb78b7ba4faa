// SPDX-License-Identifier: MIT
/*
 * The supervisor: agent processes, restarts, the watchdog and the circuit
 * breaker (docs/supervision.md is the policy; this file implements it).
 *
 * One thread (sup_main) owns every agent process. It spawns them with
 * posix_spawn (stdin /dev/null, stdout and stderr into pipes, every other
 * fd closed, signals reset, a process group of their own) and watches each
 * through a pidfd in its epoll set, together with the output pipes and an
 * eventfd that the control thread kicks on every attach and detach. It
 * wakes at least every TICK_MS to run the watchdog and the timers (restart
 * back-off, attach and exit deadlines, circuit half-open), and reaps every
 * child through its pidfd, so no zombie outlives a restart.
 *
 * State of an agent slot (struct sup_agent) belongs to that thread, except
 * the counters the control thread bumps (n_attach, n_eof, ...) and the
 * copies the admin LIST reads (pub_state, restarts), which are atomics. The
 * circuit word lives in struct pbus_peer (gw.h) because gateway threads test
 * it on every call: they may move OPEN -> HALF_OPEN and, for the probe,
 * HALF_OPEN -> OPEN/CLOSED; the supervisor thread moves CLOSED -> OPEN.
 *
 * Failures that count toward the circuit: an agent's death or kill (one
 * each), every call that timed out, and one per period in which calls failed
 * because no agent was attached. An admin restart is not a failure.
 */
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sup.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

#define TICK_MS 50u	     /* watchdog and timers */
#define STOP_GRACE_MS 2000u  /* SIGTERM (or a drop) -> SIGKILL */
#define MIN_ATTACH_MS 5000u  /* a started agent must attach by then */
#define LINE_CAP 512u	     /* longer output lines are split */
#define LOG_LINES_PER_S 100u /* per agent; the rest is counted */
#define READ_BUDGET 65536u   /* output bytes per wake-up and pipe */

extern char **environ;

enum ag_state {
	AG_DISABLED = 0, /* mode: disabled, never started */
	AG_EXTERNAL,	 /* no command (or no_spawn): started elsewhere */
	AG_STARTING,	 /* spawned, not attached yet */
	AG_RUNNING,	 /* spawned and attached */
	AG_EXITING,	 /* told to go (or killed), waiting for its exit */
	AG_BACKOFF,	 /* dead, restart when the back-off expires */
	AG_STOPPED,	 /* the supervisor is closing */
};

static const char *const state_names[] = {
	"disabled", "external", "starting", "up",
	"exiting",  "backoff",	"stopped",
};

/* Why an agent is exiting: decides what its exit means. */
enum {
	WHY_NONE = 0, /* unexpected death: a failure */
	WHY_DETACHED, /* its connection ended first: a failure */
	WHY_ADMIN,    /* admin restart or a drop: restart at once */
	WHY_KILLED,   /* watchdog or attach deadline: failure counted */
	WHY_STOPPING, /* the supervisor closes */
};

enum { T_KICK = 1, T_PID, T_OUT };

struct tag {
	int kind;
	int idx;
	struct sup_agent *ag;
};

struct outbuf {
	int fd;
	size_t len;
	char buf[LINE_CAP];
};

struct sup_agent {
	struct pbus__sup *s;
	unsigned id;
	struct mgr_plugin *pl;
	struct pbus_peer *peer;
	const char *name;
	int spawned;	       /* has a command and spawning is on */
	int state;	       /* enum ag_state */
	_Atomic int pub_state; /* state for the admin LIST */
	_Atomic uint32_t restarts;

	/* bumped by the control thread (pbus__sup_peer_event) */
	_Atomic uint32_t n_attach, n_eof, n_admin, n_drop;
	uint32_t s_attach, s_eof, s_admin, s_drop; /* seen so far */

	/* the process */
	pid_t pid;
	int pidfd;
	struct outbuf out[2]; /* stdout, stderr */
	struct tag t_pid, t_out[2];
	uint64_t t_spawn, t_attach, deadline;
	unsigned backoff_ms; /* delay before the next restart */
	int why;
	int sigkilled;

	/* output rate limit */
	uint64_t log_sec;
	unsigned log_n, log_dropped;

	/* watchdog, for the connection of epoch w_epoch */
	uint32_t w_epoch, killed_epoch;
	uint64_t w_completed, w_timeouts, w_rej_bad, w_agent_down;
	uint64_t w_req_head, w_hb;
	uint64_t t_alive;	 /* last sign of life */
	uint64_t alive_timeouts; /* `timeouts` at that moment */
	unsigned consec;	 /* calls timed out in a row */
	int down_counted;	 /* this down period counted already */
	uint64_t d_agent_down;	 /* agent_down at the last tick */

	/* circuit: the last circuit_failures failure times, a ring */
	uint64_t *fails;
	unsigned nfails, fpos;
	uint32_t circ_seen;
};

struct pbus__sup {
	struct pbus_mgr *m;
	struct pbus_supervision_cfg cfg;
	char *agent_path;
	int spawn;
	int epfd, evfd;
	struct tag t_kick;
	pthread_t thr;
	int running;
	_Atomic int stop;
	int stopping;	      /* supervisor thread: shutting down */
	pthread_mutex_t lock; /* start handshake */
	pthread_cond_t cond;
	int started, start_ret;
	unsigned n;
	struct sup_agent *ag;
	uint64_t last_watch;
};

static uint64_t ms_ns(uint64_t ms)
{
	return ms * 1000000ull;
}

static void kick(struct pbus__sup *s)
{
	uint64_t one = 1;

	if (write(s->evfd, &one, sizeof(one)) < 0) {
		/* counter saturated: the thread is awake anyway */
	}
}

static void set_state(struct sup_agent *ag, int st)
{
	ag->state = st;
	atomic_store_explicit(&ag->pub_state, st, memory_order_relaxed);
}

/* ---------------------------------------------------------------- circuit */

static void circuit_open(struct pbus_peer *p, uint64_t now, unsigned ms)
{
	/* until first, then the state, then free the probe slot: a caller
	 * that sees OPEN also sees its deadline, and no second probe can
	 * start before the state left HALF_OPEN */
	atomic_store(&p->circuit_until, now + ms_ns(ms));
	atomic_store(&p->circuit, PBUS__CIRCUIT_OPEN);
	atomic_store(&p->probe, 0);
}

static void circuit_close(struct pbus_peer *p)
{
	atomic_store(&p->circuit, PBUS__CIRCUIT_CLOSED);
	atomic_store(&p->probe, 0);
}

static int probe_failed(int status)
{
	return status == -ETIMEDOUT || status == -ENOTCONN || status == -EPROTO;
}

int pbus__sup_circuit_slow(struct pbus_peer *p)
{
	uint32_t st = atomic_load(&p->circuit), zero = 0;
	uint64_t now;

	if (st == PBUS__CIRCUIT_CLOSED)
		return PBUS__SUP_ALLOW;
	now = pbus__now_ns();
	if (st == PBUS__CIRCUIT_OPEN) {
		if (now < atomic_load(&p->circuit_until))
			return PBUS__SUP_REFUSE;
		if (!atomic_compare_exchange_strong(&p->circuit, &st,
						    PBUS__CIRCUIT_HALF_OPEN) &&
		    st != PBUS__CIRCUIT_HALF_OPEN)
			return st == PBUS__CIRCUIT_CLOSED ? PBUS__SUP_ALLOW
							  : PBUS__SUP_REFUSE;
	}
	/* half-open: one probe, and only to an attached agent (a probe
	 * into a restart back-off would only fail) */
	if (!pbus_peer_is_up(p) ||
	    !atomic_compare_exchange_strong(&p->probe, &zero, 1))
		return PBUS__SUP_REFUSE;
	atomic_store(&p->probe_completed, atomic_load(&p->completed));
	atomic_store(&p->probe_t, now);
	/* it may have been re-opened between our two steps */
	if (atomic_load(&p->circuit) != PBUS__CIRCUIT_HALF_OPEN) {
		atomic_store(&p->probe, 0);
		return PBUS__SUP_REFUSE;
	}
	return PBUS__SUP_PROBE;
}

void pbus__sup_probe_done(struct pbus_mgr *m, unsigned plugin, int status)
{
	struct pbus_peer *p = plugin < m->n ? m->pl[plugin].peer : NULL;
	uint32_t st = PBUS__CIRCUIT_HALF_OPEN;

	if (!p || !atomic_load(&p->probe) ||
	    atomic_load(&p->circuit) != PBUS__CIRCUIT_HALF_OPEN)
		return;
	if (probe_failed(status)) {
		circuit_open(p, pbus__now_ns(),
			     m->cfg->supervision.circuit_open_ms);
		pbus__warn("plugin '%s': circuit open again (probe: %s)",
			   p->name, strerror(-status));
	} else if (atomic_compare_exchange_strong(&p->circuit, &st,
						  PBUS__CIRCUIT_CLOSED)) {
		atomic_store(&p->probe, 0);
		pbus__info("plugin '%s': circuit closed (probe answered)",
			   p->name);
	}
}

/* Count @n failures (@what says which) at @now; may open the circuit. */
static void fail(struct sup_agent *ag, uint64_t now, unsigned n,
		 const char *what)
{
	struct pbus__sup *s = ag->s;
	unsigned need = s->cfg.circuit_failures ? s->cfg.circuit_failures : 1;
	uint32_t st = atomic_load(&ag->peer->circuit);

	for (unsigned i = 0; i < n && i < need; i++) {
		ag->fails[ag->fpos] = now;
		ag->fpos = (ag->fpos + 1) % need;
		if (ag->nfails < need)
			ag->nfails++;
	}
	if (st == PBUS__CIRCUIT_HALF_OPEN) {
		circuit_open(ag->peer, now, s->cfg.circuit_open_ms);
		pbus__warn("plugin '%s': circuit open again (%s)", ag->name,
			   what);
	} else if (st == PBUS__CIRCUIT_CLOSED && ag->nfails >= need &&
		   now - ag->fails[ag->fpos] <=
			   ms_ns(s->cfg.circuit_window_ms)) {
		circuit_open(ag->peer, now, s->cfg.circuit_open_ms);
		pbus__warn("plugin '%s': circuit open: %u failures within "
			   "%u ms (last: %s); calls fail fast for %u ms",
			   ag->name, need, s->cfg.circuit_window_ms, what,
			   s->cfg.circuit_open_ms);
	}
}

/* Timers of the circuit: OPEN -> HALF_OPEN, an unreported probe, and a
 * closed circuit forgets the failures that opened it. */
static void circuit_tick(struct sup_agent *ag, uint64_t now)
{
	struct pbus_peer *p = ag->peer;
	uint32_t st = atomic_load(&p->circuit);

	if (st == PBUS__CIRCUIT_OPEN && now >= atomic_load(&p->circuit_until) &&
	    atomic_compare_exchange_strong(&p->circuit, &st,
					   PBUS__CIRCUIT_HALF_OPEN)) {
		pbus__info("plugin '%s': circuit half-open: the next call "
			   "probes the agent",
			   ag->name);
		st = PBUS__CIRCUIT_HALF_OPEN;
	}
	if (st == PBUS__CIRCUIT_HALF_OPEN && atomic_load(&p->probe) &&
	    now > atomic_load(&p->probe_t) + ag->pl->timeout_ns + ms_ns(1000)) {
		/* nobody reported the probe: judge by the counters */
		if (atomic_load(&p->completed) >
		    atomic_load(&p->probe_completed)) {
			circuit_close(p);
			pbus__info("plugin '%s': circuit closed (the agent "
				   "answered)",
				   ag->name);
		} else {
			circuit_open(p, now, ag->s->cfg.circuit_open_ms);
			pbus__warn("plugin '%s': circuit open again (probe "
				   "unanswered)",
				   ag->name);
		}
		st = atomic_load(&p->circuit);
	}
	if (st == PBUS__CIRCUIT_CLOSED && ag->circ_seen != st)
		ag->nfails = ag->fpos = 0;
	ag->circ_seen = st;
}

/* ---------------------------------------------------------------- output */

static void emit(struct sup_agent *ag, int k, char *line, size_t n)
{
	uint64_t sec = pbus__now_ns() / 1000000000ull;

	if (n && line[n - 1] == '\r')
		n--;
	for (size_t i = 0; i < n; i++) /* no terminal escapes in logs */
		if ((unsigned char)line[i] < 0x20 && line[i] != '\t')
			line[i] = '?';
		else if (line[i] == 0x7f)
			line[i] = '?';
	if (sec != ag->log_sec) {
		if (ag->log_dropped)
			pbus__warn(
				"%s[%d]: %u output lines dropped (over %u/s)",
				ag->name, (int)ag->pid, ag->log_dropped,
				LOG_LINES_PER_S);
		ag->log_sec = sec;
		ag->log_n = ag->log_dropped = 0;
	}
	if (++ag->log_n > LOG_LINES_PER_S) {
		ag->log_dropped++;
		return;
	}
	pbus__log(k ? PBUS_LOG_WARN : PBUS_LOG_INFO, "%s[%d]: %.*s", ag->name,
		  (int)ag->pid, (int)n, line);
}

static void out_close(struct pbus__sup *s, struct sup_agent *ag, int k)
{
	struct outbuf *o = &ag->out[k];

	if (o->fd < 0)
		return;
	if (o->len)
		emit(ag, k, o->buf, o->len);
	o->len = 0;
	epoll_ctl(s->epfd, EPOLL_CTL_DEL, o->fd, NULL);
	close(o->fd);
	o->fd = -1;
}

/* Read what the agent wrote on stdout (@k 0) or stderr (1) and log it line
 * by line. Bounded per call; EOF closes the pipe. */
static void out_read(struct pbus__sup *s, struct sup_agent *ag, int k)
{
	struct outbuf *o = &ag->out[k];
	size_t budget = READ_BUDGET;

	while (o->fd >= 0 && budget) {
		ssize_t n = read(o->fd, o->buf + o->len, LINE_CAP - o->len);
		char *nl;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			out_close(s, ag, k);
			return;
		}
		budget -= (size_t)n < budget ? (size_t)n : budget;
		o->len += (size_t)n;
		while ((nl = memchr(o->buf, '\n', o->len))) {
			size_t l = (size_t)(nl - o->buf);

			emit(ag, k, o->buf, l);
			memmove(o->buf, nl + 1, o->len - l - 1);
			o->len -= l + 1;
		}
		if (o->len == LINE_CAP) { /* a very long line: split it */
			emit(ag, k, o->buf, o->len);
			o->len = 0;
		}
	}
}

/* ---------------------------------------------------------------- spawn */

/* Resolve a command's program: as given if it has a slash, else in @extra,
 * then next to our own binary, then $PATH (posix_spawnp). */
static void resolve(const char *prog, const char *extra, char *out, size_t cap)
{
	char self[PATH_MAX];
	ssize_t n;

	snprintf(out, cap, "%s", prog);
	if (strchr(prog, '/'))
		return;
	if (extra) {
		snprintf(out, cap, "%s/%s", extra, prog);
		if (access(out, X_OK) == 0)
			return;
	}
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = 0;
		if (strrchr(self, '/'))
			*strrchr(self, '/') = 0;
		snprintf(out, cap, "%s/%s", self, prog);
		if (access(out, X_OK) == 0)
			return;
	}
	snprintf(out, cap, "%s", prog);
}

static int ours(const char *kv)
{
	static const char *const mine[] = {
		"PBUS_SOCK=", "PBUS_PLUGIN=", "PBUS_SPAWNED=",
		"PBUS_GATEWAY_PID=", "PBUS_RECONNECT="};

	for (unsigned i = 0; i < sizeof(mine) / sizeof(mine[0]); i++)
		if (!strncmp(kv, mine[i], strlen(mine[i])))
			return 1;
	return 0;
}

/* Start @ag's command. Supervisor thread. 0 or -errno (nothing started). */
static int spawn(struct pbus__sup *s, struct sup_agent *ag, uint64_t now)
{
	const struct pbus_plugin_cfg *c = ag->pl->cfg;
	char path[PATH_MAX + 256], sock[160], name[128], gw[48];
	struct epoll_event ev = {.events = EPOLLIN};
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, def;
	int po[2] = {-1, -1}, pe[2] = {-1, -1}, ret;
	char **envp;
	size_t ne = 0, k = 0;
	pid_t pid;

	resolve(c->command.v[0], s->agent_path, path, sizeof(path));
	while (environ[ne])
		ne++;
	envp = calloc(ne + c->env.n + 5, sizeof(*envp));
	if (!envp)
		return -ENOMEM;
	snprintf(sock, sizeof(sock), "PBUS_SOCK=%s",
		 pbus_bus_sock_path(s->m->bus));
	snprintf(name, sizeof(name), "PBUS_PLUGIN=%s", c->name);
	snprintf(gw, sizeof(gw), "PBUS_GATEWAY_PID=%d", (int)getpid());
	envp[k++] = sock;
	envp[k++] = name;
	envp[k++] = (char *)"PBUS_SPAWNED=1";
	envp[k++] = gw;
	for (unsigned i = 0; i < c->env.n; i++)
		envp[k++] = c->env.v[i];
	for (size_t i = 0; i < ne; i++)
		if (!ours(environ[i]))
			envp[k++] = environ[i];
	envp[k] = NULL;

	if (pipe2(po, O_CLOEXEC) < 0 || pipe2(pe, O_CLOEXEC) < 0) {
		ret = -errno;
		goto out_pipes;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, po[1], 1);
	posix_spawn_file_actions_adddup2(&fa, pe[1], 2);
	/* an agent gets its own channel through the socket and nothing
	 * else of ours: no other agent's channel, no gateway fd */
	posix_spawn_file_actions_addclosefrom_np(&fa, 3);
	posix_spawnattr_init(&at);
	sigemptyset(&none);
	sigemptyset(&def);
	for (int sig = 1; sig < 32; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			sigaddset(&def, sig);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &def);
	posix_spawnattr_setpgroup(&at, 0);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK |
					      POSIX_SPAWN_SETSIGDEF |
					      POSIX_SPAWN_SETPGROUP);
	ret = strchr(path, '/')
		      ? posix_spawn(&pid, path, &fa, &at, c->command.v, envp)
		      : posix_spawnp(&pid, path, &fa, &at, c->command.v, envp);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	if (ret) {
		pbus__err("plugin '%s': cannot start %s: %s", c->name, path,
			  strerror(ret));
		ret = -ret;
		goto out_pipes;
	}
	close(po[1]);
	close(pe[1]);
	po[1] = pe[1] = -1;
	ag->pidfd = pidfd_open(pid, 0);
	if (ag->pidfd < 0) {
		ret = -errno;
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		goto out_pipes;
	}
	ag->pid = pid;
	ag->out[0].fd = po[0];
	ag->out[1].fd = pe[0];
	ag->out[0].len = ag->out[1].len = 0;
	fcntl(po[0], F_SETFL, O_NONBLOCK);
	fcntl(pe[0], F_SETFL, O_NONBLOCK);
	ev.data.ptr = &ag->t_pid;
	epoll_ctl(s->epfd, EPOLL_CTL_ADD, ag->pidfd, &ev);
	for (int i = 0; i < 2; i++) {
		ev.data.ptr = &ag->t_out[i];
		epoll_ctl(s->epfd, EPOLL_CTL_ADD, ag->out[i].fd, &ev);
	}
	free(envp);
	ag->t_spawn = now;
	ag->t_attach = 0;
	ag->why = WHY_NONE;
	ag->sigkilled = 0;
	ag->deadline = now + ms_ns(s->cfg.heartbeat_timeout_ms > MIN_ATTACH_MS
					   ? s->cfg.heartbeat_timeout_ms
					   : MIN_ATTACH_MS);
	set_state(ag, AG_STARTING);
	pbus__info("plugin '%s': started %s (pid %d)", c->name, path, (int)pid);
	return 0;
out_pipes:
	for (int i = 0; i < 2; i++) {
		if (po[i] >= 0)
			close(po[i]);
		if (pe[i] >= 0)
			close(pe[i]);
	}
	free(envp);
	return ret;
}

static void signal_agent(struct sup_agent *ag, int sig)
{
	if (ag->pidfd >= 0 && pidfd_send_signal(ag->pidfd, sig, NULL, 0) < 0 &&
	    errno != ESRCH)
		pbus__warn("plugin '%s': cannot signal pid %d: %s", ag->name,
			   (int)ag->pid, strerror(errno));
}

/* Ask @ag's process to go (exit on its own, then SIGKILL). */
static void exiting(struct sup_agent *ag, uint64_t now, int why)
{
	ag->why = why;
	ag->deadline = now + ms_ns(STOP_GRACE_MS);
	set_state(ag, AG_EXITING);
}

static unsigned stable_ms(const struct pbus_supervision_cfg *c)
{
	unsigned v = c->backoff_max_ms;

	return v < 1000 ? 1000 : v > 10000 ? 10000 : v;
}

/* The agent is gone for good: restart after the back-off. */
static void schedule_restart(struct sup_agent *ag, uint64_t now)
{
	const struct pbus_supervision_cfg *c = &ag->s->cfg;
	unsigned delay;

	if (ag->t_attach && now - ag->t_attach >= ms_ns(stable_ms(c)))
		ag->backoff_ms = c->backoff_initial_ms;
	delay = ag->backoff_ms;
	ag->backoff_ms = delay ? delay * 2 : 1;
	if (ag->backoff_ms > c->backoff_max_ms)
		ag->backoff_ms = c->backoff_max_ms;
	ag->deadline = now + ms_ns(delay);
	set_state(ag, AG_BACKOFF);
	pbus__info("plugin '%s': restarting the agent in %u ms", ag->name,
		   delay);
}

static void restart_now(struct pbus__sup *s, struct sup_agent *ag, uint64_t now)
{
	int ret;

	/* counted first: the new agent may attach (and a status reader see
	 * its pid) before spawn() returns */
	atomic_fetch_add(&ag->restarts, 1);
	ret = spawn(s, ag, now);
	if (ret) {
		fail(ag, now, 1, "cannot start");
		schedule_restart(ag, now);
	}
}

static void sync_events(struct sup_agent *ag, uint64_t now);

/* The pidfd says the process ended: reap it, log how, decide what next. */
static void on_exit_(struct pbus__sup *s, struct sup_agent *ag, uint64_t now)
{
	siginfo_t si;
	pid_t pid = ag->pid;
	struct pbus_peer *p = ag->peer;
	char how[64];

	memset(&si, 0, sizeof(si));
	if (waitid((idtype_t)P_PIDFD, (id_t)ag->pidfd, &si, WEXITED | WNOHANG) <
		    0 ||
	    si.si_pid == 0)
		return; /* not yet */
	/* An admin restart or a drop reaches us as a counter bump before the
	 * agent (which exits as soon as its connection closes) is gone, but
	 * this wake-up may handle the pidfd first: take the events in now,
	 * or the exit would pass for a crash (back-off, a failure counted)
	 * instead of a restart at once. */
	sync_events(ag, now);
	if (si.si_code == CLD_EXITED)
		snprintf(how, sizeof(how), "exited with status %d",
			 si.si_status);
	else /* sigabbrev_np: strsignal is not thread-safe */
		snprintf(how, sizeof(how), "killed by signal %d (SIG%s)",
			 si.si_status,
			 sigabbrev_np(si.si_status) ? sigabbrev_np(si.si_status)
						    : "?");
	out_read(s, ag, 0); /* what it wrote before it went */
	out_read(s, ag, 1);
	out_close(s, ag, 0);
	out_close(s, ag, 1);
	epoll_ctl(s->epfd, EPOLL_CTL_DEL, ag->pidfd, NULL);
	close(ag->pidfd);
	ag->pidfd = -1;
	ag->pid = 0;
	/* Its connection may outlive it (a child holding the socket):
	 * calls in flight fail now. */
	if (pbus_peer_is_up(p) &&
	    __atomic_load_n(&p->pid, __ATOMIC_RELAXED) == pid)
		pbus__peer_drop(
			p, __atomic_load_n(&p->last_epoch, __ATOMIC_RELAXED));
	if (s->stopping) {
		set_state(ag, AG_STOPPED);
		return;
	}
	if (ag->why == WHY_ADMIN) {
		pbus__info("plugin '%s': agent (pid %d) %s; restarting it now",
			   ag->name, (int)pid, how);
		restart_now(s, ag, now);
		return;
	}
	pbus__warn("plugin '%s': agent (pid %d) %s", ag->name, (int)pid, how);
	if (ag->why != WHY_KILLED) {
		fail(ag, now, 1, how);
		ag->down_counted = 1;
	}
	schedule_restart(ag, now);
}

/* ---------------------------------------------------------------- watchdog */

/* 1 if @pid is stopped (SIGSTOP, ptrace) according to /proc. */
static int proc_stopped(pid_t pid)
{
	char path[64], buf[512], *p;
	ssize_t n;
	int fd;

	if (pid <= 0)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	p = strrchr(buf, ')');
	return p && p[1] == ' ' && (p[2] == 'T' || p[2] == 't');
}

static void wd_kill(struct sup_agent *ag, uint64_t now, int counted,
		    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/*
 * Kill a hung agent: SIGKILL a spawned one (then it is restarted), drop the
 * connection of any (its calls fail at once; an external agent's own
 * supervisor or reconnect loop brings it back). @counted: its failures were
 * counted already (timed-out calls).
 */
static void wd_kill(struct sup_agent *ag, uint64_t now, int counted,
		    const char *fmt, ...)
{
	struct pbus_peer *p = ag->peer;
	char why[160];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	ag->killed_epoch = ag->w_epoch;
	if (ag->spawned && ag->pid > 0) {
		pbus__warn("plugin '%s': watchdog: %s; killing the agent "
			   "(pid %d)",
			   ag->name, why, (int)ag->pid);
		signal_agent(ag, SIGKILL);
		ag->sigkilled = 1;
		exiting(ag, now, WHY_KILLED);
	} else {
		pbus__warn("plugin '%s': watchdog: %s; dropping the agent "
			   "(pid %d)",
			   ag->name, why,
			   (int)__atomic_load_n(&p->pid, __ATOMIC_RELAXED));
	}
	pbus__peer_drop(p, ag->w_epoch);
	if (!counted)
		fail(ag, now, 1, why);
	ag->down_counted = 1;
}

static void watch_reset(struct sup_agent *ag, struct pbus_chan *ch,
			uint64_t now)
{
	struct pbus_peer *p = ag->peer;

	ag->w_epoch = ch->epoch;
	ag->w_completed = atomic_load(&p->completed);
	ag->w_timeouts = atomic_load(&p->timeouts);
	ag->w_rej_bad = atomic_load(&p->rej_bad);
	ag->w_req_head = __atomic_load_n(&ch->hdr->req_head, __ATOMIC_RELAXED);
	ag->w_hb = __atomic_load_n(&ch->hdr->heartbeat_ns, __ATOMIC_RELAXED);
	ag->t_alive = now;
	ag->alive_timeouts = ag->w_timeouts;
	ag->consec = 0;
}

/* One watchdog look at @ag's current connection. */
static void watch(struct sup_agent *ag, uint64_t now)
{
	const struct pbus_supervision_cfg *c = &ag->s->cfg;
	struct pbus_peer *p = ag->peer;
	struct pbus_chan *ch = pbus__chan_tryget(p);
	uint64_t completed, timeouts, rej_bad, head, hb, d_c, d_t;
	unsigned waiting = 0;
	int poisoned, asleep;

	if (!ch)
		return;
	if (atomic_load(&ch->dead) || ch->epoch == ag->killed_epoch) {
		pbus__chan_put(ch);
		return;
	}
	if (ch->epoch != ag->w_epoch) {
		watch_reset(ag, ch, now);
		pbus__chan_put(ch);
		return;
	}
	completed = atomic_load(&p->completed);
	timeouts = atomic_load(&p->timeouts);
	rej_bad = atomic_load(&p->rej_bad);
	head = __atomic_load_n(&ch->hdr->req_head, __ATOMIC_RELAXED);
	hb = __atomic_load_n(&ch->hdr->heartbeat_ns, __ATOMIC_RELAXED);
	asleep = __atomic_load_n(&ch->hdr->agent_state, __ATOMIC_RELAXED) ==
		 PBUS_PEER_SLEEPING;
	poisoned = atomic_load(&ch->poisoned);
	for (uint32_t i = 0; i <= ch->req_mask; i++)
		waiting += atomic_load_explicit(&ch->pend[i].state,
						memory_order_relaxed) ==
			   PEND_WAITING;
	pbus__chan_put(ch);

	d_c = completed - ag->w_completed;
	d_t = timeouts - ag->w_timeouts;
	/* Alive: it made progress, or it refreshed its heartbeat, or it
	 * sleeps with nothing to do (an agent our supervisor spawned sleeps
	 * without refreshing it, see agent.c sleep_deadline()). Asleep with
	 * calls waiting is not: a woken agent says it is running. */
	if (d_c || head != ag->w_req_head || hb != ag->w_hb ||
	    (asleep && !waiting)) {
		ag->t_alive = now;
		ag->alive_timeouts = timeouts;
	}
	/* "in a row": a tick with an answer starts the count again */
	ag->consec = d_c ? 0 : ag->consec + (unsigned)d_t;
	if (d_t)
		fail(ag, now, (unsigned)d_t, "call timed out");
	ag->w_completed = completed;
	ag->w_timeouts = timeouts;
	ag->w_req_head = head;
	ag->w_hb = hb;

	if (poisoned) {
		wd_kill(ag, now, 0, "garbage on its channel (framing lost)");
	} else if (rej_bad != ag->w_rej_bad) {
		ag->w_rej_bad = rej_bad;
		wd_kill(ag, now, 0, "malformed frames on its channel");
	} else if (ag->consec >= c->watchdog_timeouts) {
		wd_kill(ag, now, 1, "%u calls timed out in a row", ag->consec);
	} else if (now - ag->t_alive >= ms_ns(c->heartbeat_timeout_ms) &&
		   (waiting || timeouts != ag->alive_timeouts)) {
		/* Silent with calls on it. A stopped process is hung; a
		 * running one may be busy in a long handler: only once one
		 * of its calls passed its timeout. */
		if (timeouts != ag->alive_timeouts)
			wd_kill(ag, now, 1,
				"no heartbeat for %llu ms and a call timed out",
				(unsigned long long)((now - ag->t_alive) /
						     1000000u));
		else if (proc_stopped(
				 __atomic_load_n(&p->pid, __ATOMIC_RELAXED)))
			wd_kill(ag, now, 0,
				"stopped, no heartbeat for %llu ms with %u "
				"calls waiting",
				(unsigned long long)((now - ag->t_alive) /
						     1000000u),
				waiting);
	}
}

/* ---------------------------------------------------------------- events */

/* Take in what the control thread reported about @ag. */
static void sync_events(struct sup_agent *ag, uint64_t now)
{
	uint32_t att = atomic_load(&ag->n_attach),
		 eof = atomic_load(&ag->n_eof);
	uint32_t adm = atomic_load(&ag->n_admin),
		 drop = atomic_load(&ag->n_drop);
	uint32_t d_att = att - ag->s_attach, d_eof = eof - ag->s_eof;
	uint32_t d_adm = adm - ag->s_admin, d_drop = drop - ag->s_drop;

	ag->s_attach = att;
	ag->s_eof = eof;
	ag->s_admin = adm;
	ag->s_drop = drop;
	if (d_att) {
		ag->t_attach = now;
		ag->down_counted = 0;
		if (ag->state == AG_STARTING)
			set_state(ag, AG_RUNNING);
	}
	if (!d_eof && !d_adm && !d_drop)
		return;
	/* calls failing while it is away are not failures of their own:
	 * its death counts (once) when it is one */
	ag->down_counted = 1;
	if (ag->spawned) {
		if ((ag->state == AG_RUNNING || ag->state == AG_STARTING) &&
		    !pbus_peer_is_up(ag->peer))
			exiting(ag, now,
				d_adm || d_drop ? WHY_ADMIN : WHY_DETACHED);
		return;
	}
	if (ag->state != AG_EXTERNAL)
		return;
	if (d_adm || d_drop)
		pbus__info("plugin '%s': external agent dropped; it must "
			   "reconnect by itself",
			   ag->name);
	if (d_eof)
		fail(ag, now, d_eof, "external agent disconnected");
}

/* Timers and the watchdog for one agent. */
static void tick(struct pbus__sup *s, struct sup_agent *ag, uint64_t now,
		 int watch_now)
{
	struct pbus_peer *p = ag->peer;
	uint64_t down;

	if (ag->state == AG_DISABLED)
		return;
	sync_events(ag, now);
	if (!ag->spawned && atomic_load(&p->attaches) > 1)
		atomic_store(&ag->restarts,
			     (uint32_t)atomic_load(&p->attaches) - 1);
	switch (ag->state) {
	case AG_STARTING:
		if (now >= ag->deadline) {
			pbus__warn("plugin '%s': agent (pid %d) did not attach "
				   "in time; killing it",
				   ag->name, (int)ag->pid);
			signal_agent(ag, SIGKILL);
			ag->sigkilled = 1;
			fail(ag, now, 1, "did not attach");
			exiting(ag, now, WHY_KILLED);
		}
		break;
	case AG_EXITING:
		if (now >= ag->deadline) {
			if (!ag->sigkilled)
				pbus__warn(
					"plugin '%s': agent (pid %d) did not "
					"exit; killing it",
					ag->name, (int)ag->pid);
			signal_agent(ag, SIGKILL);
			ag->sigkilled = 1;
			ag->deadline = now + ms_ns(STOP_GRACE_MS);
		}
		break;
	case AG_BACKOFF:
		if (now >= ag->deadline)
			restart_now(s, ag, now);
		break;
	default:
		break;
	}
	/* calls failing because nobody is attached: once per down period */
	down = atomic_load(&p->agent_down);
	if (!pbus_peer_is_up(p) && down != ag->d_agent_down &&
	    !ag->down_counted) {
		fail(ag, now, 1, "no agent attached");
		ag->down_counted = 1;
	}
	ag->d_agent_down = down;
	if (watch_now && (ag->state == AG_RUNNING || ag->state == AG_EXTERNAL))
		watch(ag, now);
	circuit_tick(ag, now);
}

static int next_timeout_ms(struct pbus__sup *s, uint64_t now)
{
	uint64_t next = now + ms_ns(TICK_MS);

	for (unsigned i = 0; i < s->n; i++) {
		struct sup_agent *ag = &s->ag[i];

		if ((ag->state == AG_STARTING || ag->state == AG_EXITING ||
		     ag->state == AG_BACKOFF) &&
		    ag->deadline < next)
			next = ag->deadline;
	}
	return next <= now ? 0 : (int)((next - now + 999999) / 1000000);
}

/* ---------------------------------------------------------------- thread */

static void dispatch(struct pbus__sup *s, struct epoll_event *evs, int n,
		     uint64_t now)
{
	for (int i = 0; i < n; i++) {
		struct tag *t = evs[i].data.ptr;
		uint64_t v;

		if (t->kind == T_KICK) {
			if (read(s->evfd, &v, sizeof(v)) < 0) {
				/* EAGAIN: nothing pending */
			}
		} else if (t->kind == T_OUT) {
			out_read(s, t->ag, t->idx);
		}
	}
	/* exits last: their output has been read first */
	for (int i = 0; i < n; i++) {
		struct tag *t = evs[i].data.ptr;

		if (t->kind == T_PID && t->ag->pidfd >= 0)
			on_exit_(s, t->ag, now);
	}
}

/* SIGTERM every agent, give them STOP_GRACE_MS, SIGKILL the rest, reap. */
static void stop_all(struct pbus__sup *s)
{
	struct epoll_event evs[16];
	uint64_t until = pbus__now_ns() + ms_ns(STOP_GRACE_MS);
	int left;

	s->stopping = 1;
	for (unsigned i = 0; i < s->n; i++)
		if (s->ag[i].pid > 0) {
			signal_agent(&s->ag[i], SIGTERM);
			exiting(&s->ag[i], pbus__now_ns(), WHY_STOPPING);
		}
	for (;;) {
		uint64_t now = pbus__now_ns();
		int n;

		left = 0;
		for (unsigned i = 0; i < s->n; i++)
			left += s->ag[i].pid > 0;
		if (!left || now >= until)
			break;
		n = epoll_wait(s->epfd, evs, 16,
			       (int)((until - now) / 1000000u) + 1);
		if (n > 0)
			dispatch(s, evs, n, now);
	}
	for (unsigned i = 0; i < s->n; i++) {
		struct sup_agent *ag = &s->ag[i];
		siginfo_t si;

		if (ag->pid <= 0)
			continue;
		pbus__warn("plugin '%s': agent (pid %d) ignored SIGTERM; "
			   "killing it",
			   ag->name, (int)ag->pid);
		signal_agent(ag, SIGKILL);
		memset(&si, 0, sizeof(si));
		while (waitid((idtype_t)P_PIDFD, (id_t)ag->pidfd, &si,
			      WEXITED | WNOWAIT) < 0 &&
		       errno == EINTR)
			;
		on_exit_(s, ag, pbus__now_ns());
	}
}

static void *sup_main(void *arg)
{
	struct pbus__sup *s = arg;
	struct epoll_event evs[32];
	int ret = 0;

	for (unsigned i = 0; i < s->n && !ret; i++)
		if (s->ag[i].spawned)
			ret = spawn(s, &s->ag[i], pbus__now_ns());
	pthread_mutex_lock(&s->lock);
	s->started = 1;
	s->start_ret = ret;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);

	while (!ret && !atomic_load(&s->stop)) {
		uint64_t now = pbus__now_ns();
		int n = epoll_wait(s->epfd, evs, 32, next_timeout_ms(s, now));
		int watch_now;

		now = pbus__now_ns();
		if (n > 0)
			dispatch(s, evs, n, now);
		if (atomic_load(&s->stop))
			break;
		watch_now = now - s->last_watch >= ms_ns(TICK_MS) - 1000000u;
		if (watch_now)
			s->last_watch = now;
		for (unsigned i = 0; i < s->n; i++)
			tick(s, &s->ag[i], now, watch_now);
	}
	stop_all(s);
	return NULL;
}

/* ---------------------------------------------------------------- hooks */

void pbus__sup_peer_event(struct pbus__sup *s, struct pbus_peer *p, int ev,
			  pid_t pid, uint32_t epoch)
{
	struct sup_agent *ag;

	(void)pid;
	(void)epoch;
	if (p->id >= s->n)
		return;
	ag = &s->ag[p->id];
	switch (ev) {
	case PBUS__EV_ATTACH:
		atomic_fetch_add(&ag->n_attach, 1);
		break;
	case PBUS__EV_EOF:
		atomic_fetch_add(&ag->n_eof, 1);
		break;
	case PBUS__EV_ADMIN:
		atomic_fetch_add(&ag->n_admin, 1);
		break;
	case PBUS__EV_DROP:
		atomic_fetch_add(&ag->n_drop, 1);
		break;
	default:
		return;
	}
	kick(s);
}

static const char *circuit_name(uint32_t st)
{
	return st == PBUS__CIRCUIT_OPEN	       ? "open"
	       : st == PBUS__CIRCUIT_HALF_OPEN ? "half-open"
					       : "closed";
}

void pbus__sup_peer_info(struct pbus__sup *s, const struct pbus_peer *p,
			 struct pbus__peer_info *out)
{
	struct sup_agent *ag;
	int st;

	if (p->id >= s->n)
		return;
	ag = &s->ag[p->id];
	out->restarts = atomic_load(&ag->restarts);
	out->circuit =
		circuit_name(atomic_load(&((struct pbus_peer *)p)->circuit));
	st = atomic_load(&ag->pub_state);
	if (st == AG_EXTERNAL)
		out->state = pbus_peer_is_up(p) ? "up" : "down";
	else
		out->state = state_names[st];
}

void pbus__sup_stats(const struct pbus_mgr *m, unsigned plugin,
		     struct pbus_plugin_stats *s)
{
	struct pbus_peer *p = m->pl[plugin].peer;
	struct pbus__sup *sup = m->bus ? m->bus->sup : NULL;
	struct pbus_peer_stats ps;

	if (!p)
		return;
	pbus_peer_stats(p, &ps);
	s->up = (int)ps.up;
	s->pid = ps.pid;
	s->epoch = ps.epoch;
	s->circuit = (int)atomic_load(&p->circuit);
	s->restarts = sup && plugin < sup->n
			      ? atomic_load(&sup->ag[plugin].restarts)
			      : 0;
}

/* ---------------------------------------------------------------- open */

static void sup_free(struct pbus__sup *s)
{
	if (s->ag)
		for (unsigned i = 0; i < s->n; i++)
			free(s->ag[i].fails);
	free(s->ag);
	if (s->epfd >= 0)
		close(s->epfd);
	if (s->evfd >= 0)
		close(s->evfd);
	free(s->agent_path);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cond);
	free(s);
}

int pbus__sup_open(struct pbus_mgr *m, const struct pbus_mgr_opts *o)
{
	struct epoll_event ev = {.events = EPOLLIN};
	struct pbus__sup *s;
	unsigned nf;
	int ret;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->m = m;
	s->cfg = m->cfg->supervision;
	s->spawn = !o->no_spawn;
	s->epfd = s->evfd = -1;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	nf = s->cfg.circuit_failures ? s->cfg.circuit_failures : 1;
	if (!s->cfg.watchdog_timeouts)
		s->cfg.watchdog_timeouts = 1;
	if (!s->cfg.backoff_max_ms)
		s->cfg.backoff_max_ms = 1;
	if (o->agent_path) {
		s->agent_path = strdup(o->agent_path);
		if (!s->agent_path) {
			ret = -ENOMEM;
			goto out_free;
		}
	}
	s->n = m->n;
	s->ag = calloc(s->n ? s->n : 1, sizeof(*s->ag));
	s->epfd = epoll_create1(EPOLL_CLOEXEC);
	s->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!s->ag || s->epfd < 0 || s->evfd < 0) {
		ret = s->ag ? -errno : -ENOMEM;
		goto out_free;
	}
	for (unsigned i = 0; i < s->n; i++) {
		struct sup_agent *ag = &s->ag[i];
		struct mgr_plugin *pl = &m->pl[i];

		ag->s = s;
		ag->id = i;
		ag->pl = pl;
		ag->peer = pl->peer;
		ag->name = pl->cfg->name;
		ag->pid = 0;
		ag->pidfd = ag->out[0].fd = ag->out[1].fd = -1;
		ag->t_pid = (struct tag){T_PID, 0, ag};
		ag->t_out[0] = (struct tag){T_OUT, 0, ag};
		ag->t_out[1] = (struct tag){T_OUT, 1, ag};
		ag->backoff_ms = s->cfg.backoff_initial_ms;
		ag->fails = calloc(nf, sizeof(*ag->fails));
		if (!ag->fails) {
			ret = -ENOMEM;
			goto out_free;
		}
		if (pl->phase == PH_NONE)
			set_state(ag, AG_DISABLED);
		else if (s->spawn && pl->cfg->command.n)
			ag->spawned = 1; /* AG_STARTING once spawned */
		else
			set_state(ag, AG_EXTERNAL);
	}
	s->t_kick = (struct tag){T_KICK, 0, NULL};
	ev.data.ptr = &s->t_kick;
	if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->evfd, &ev) < 0) {
		ret = -errno;
		goto out_free;
	}
	/* from now on the control thread reports attaches and detaches;
	 * what happened before is in the peers' counters (tick reads them) */
	pthread_mutex_lock(&m->bus->lock);
	m->bus->sup = s;
	for (unsigned i = 0; i < s->n; i++)
		if (pbus_peer_is_up(s->ag[i].peer))
			atomic_fetch_add(&s->ag[i].n_attach, 1);
	pthread_mutex_unlock(&m->bus->lock);
	ret = -pthread_create(&s->thr, NULL, sup_main, s);
	if (ret)
		goto out_unhook;
	pthread_mutex_lock(&s->lock);
	while (!s->started)
		pthread_cond_wait(&s->cond, &s->lock);
	ret = s->start_ret;
	pthread_mutex_unlock(&s->lock);
	s->running = 1;
	if (ret) {
		pbus__sup_close(m); /* stops what was started */
		return ret;
	}
	return 0;
out_unhook:
	pthread_mutex_lock(&m->bus->lock);
	m->bus->sup = NULL;
	pthread_mutex_unlock(&m->bus->lock);
out_free:
	sup_free(s);
	return ret;
}

void pbus__sup_close(struct pbus_mgr *m)
{
	struct pbus__sup *s = m->bus ? m->bus->sup : NULL;

	if (!s)
		return;
	/* after this the control thread calls us no more (it calls under
	 * the same lock) */
	pthread_mutex_lock(&m->bus->lock);
	m->bus->sup = NULL;
	pthread_mutex_unlock(&m->bus->lock);
	if (s->running) {
		atomic_store(&s->stop, 1);
		kick(s);
		pthread_join(s->thr, NULL);
	}
	sup_free(s);
}
