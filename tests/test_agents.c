// SPDX-License-Identifier: MIT
/*
 * The sample agents, driven through real gateway -> agent round trips: this
 * process opens a bus, declares one plugin with a config, spawns the agent
 * binary (build/bin/pbus-<name>), and calls hooks with payloads and
 * contexts encoded into a lane. Every vector is written as JSON (with '
 * standing for ", so vectors read as Python dicts) and the agent's whole
 * answer body is compared with the expected one, so a vector states the
 * decision, the payload and the metadata at once:
 *
 *	call(&g, TOOL_PRE, "{'name':'t','args':{'a':'crap'}}", NULL, NULL);
 *	want("{'modified_payload':{'name':'t','args':{'a':'yikes'}}}");
 *
 * The expected behaviours are those of the framework's plugins
 * (PARITY.md 5) and pbus's documented fixes (docs/agents.md).
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <pbus/pbus.h>
#include <pbus/agent_util.h>
#include <pbus/json.h>

#include "helpers.h"

enum {
	PROMPT_PRE = PBUS_HOOK_PROMPT_PRE_FETCH,
	PROMPT_POST = PBUS_HOOK_PROMPT_POST_FETCH,
	TOOL_PRE = PBUS_HOOK_TOOL_PRE_INVOKE,
	TOOL_POST = PBUS_HOOK_TOOL_POST_INVOKE,
	RES_PRE = PBUS_HOOK_RESOURCE_PRE_FETCH,
	RES_POST = PBUS_HOOK_RESOURCE_POST_FETCH,
};

/* ---------------------------------------------------------------- JSON */

/* Parse @s with ' read as " (write \u0027 for a real apostrophe). */
static json_t *js(const char *s)
{
	char *t = strdup(s);
	json_error_t e;
	json_t *j;

	for (char *p = t; *p; p++)
		if (*p == '\'')
			*p = '"';
	j = json_loads(t, JSON_DECODE_ANY, &e);
	if (!j)
		ck_abort_msg("bad test JSON '%s': %s at %d", s, e.text,
			     e.position);
	free(t);
	return j;
}

static char *dump(const json_t *j)
{
	return json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
}

/* ---------------------------------------------------------------- harness */

struct ag {
	struct pbus_bus *bus;
	struct pbus_peer *peer;
	struct pbus_lane *lane;
	pid_t pid;
	char sock[108];
	json_t *body;	/* the last answer: {} when the agent wrote nothing */
	uint32_t flags; /* its PBUS_RF_* flags */
	json_t *hdrs;	/* its http_headers (top level or the violation's),
			 * taken out of body; NULL when none */
};

static struct pbus_ref lane_json(struct pbus_lane *l, const char *s)
{
	struct pbus_ref r = {0};
	msgpack_packer pk;
	json_t *j;

	if (!s)
		return r;
	j = js(s);
	pbus_lane_pack_begin(l, &pk);
	ck_assert_int_eq(pbus_json_pack(&pk, j), 0);
	ck_assert_int_eq(pbus_lane_pack_end(l, &pk, &r), 0);
	json_decref(j);
	return r;
}

static void pack_cfg(const char *cfg, msgpack_sbuffer *sb)
{
	msgpack_packer pk;
	json_t *j;

	msgpack_sbuffer_init(sb);
	if (!cfg)
		return;
	j = js(cfg);
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	ck_assert_int_eq(pbus_json_pack(&pk, j), 0);
	json_decref(j);
}

/* Open a bus with plugin "p" configured by @cfg and start pbus-@agent. */
static void start(struct ag *g, const char *agent, const char *cfg)
{
	struct pbus_bus_opts o = {0};
	msgpack_sbuffer sb;
	char prog[64];
	char *argv[] = {prog, (char *)"-q", NULL};

	memset(g, 0, sizeof(*g));
	th_log_setup();
	snprintf(g->sock, sizeof(g->sock), "%s", th_sock_path());
	snprintf(prog, sizeof(prog), "pbus-%s", agent);
	o.sock_path = g->sock;
	o.max_payload = 1 << 20;
	ck_assert_int_eq(pbus_bus_open(&o, &g->bus), 0);
	pack_cfg(cfg, &sb);
	ck_assert_int_eq(pbus_bus_add_peer(g->bus, "p",
					   sb.size ? sb.data : NULL, sb.size,
					   &g->peer),
			 0);
	msgpack_sbuffer_destroy(&sb);
	g->pid = th_spawn(g->sock, "p", argv);
	ck_assert_int_gt(g->pid, 0);
	ck_assert_msg(pbus_peer_wait_up(g->peer, 20000) == 0,
		      "%s did not attach", prog);
	ck_assert_int_eq(pbus_lane_acquire(g->bus, &g->lane), 0);
}

static void stop(struct ag *g)
{
	int st;

	json_decref(g->body);
	json_decref(g->hdrs);
	pbus_lane_release(g->lane);
	kill(g->pid, SIGTERM);
	if (th_wait_exit(g->pid, 20000, &st))
		th_kill(g->pid);
	else
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
			      "agent exit status %d", st);
	pbus_bus_close(g->bus);
}

/* Move @obj's "http_headers" into g->hdrs (at most one per answer). */
static void take_headers(struct ag *g, json_t *obj)
{
	json_t *h = json_object_get(obj, "http_headers");

	if (!h)
		return;
	ck_assert_msg(!g->hdrs, "two sets of http_headers in one answer");
	g->hdrs = json_incref(h);
	json_object_del(obj, "http_headers");
}

/* One hook call; the answer lands in g->body (without its http_headers:
 * those go to g->hdrs) and g->flags. */
static void call(struct ag *g, int hook, const char *payload, const char *gctx,
		 const char *lctx)
{
	struct pbus_call_args a = {.hook = hook, .timeout_ns = 20000000000ull};
	struct pbus_result r;
	struct pbus_mp b;

	pbus_lane_reset(g->lane);
	a.payload = lane_json(g->lane, payload);
	a.gctx = lane_json(g->lane, gctx);
	a.lctx = lane_json(g->lane, lctx);
	ck_assert_int_eq(pbus_invoke(g->peer, g->lane, &a, &r), 0);
	json_decref(g->body);
	json_decref(g->hdrs);
	g->hdrs = NULL;
	g->flags = r.flags;
	if (!r.body.len) {
		g->body = json_object();
		return;
	}
	ck_assert_int_eq(pbus_mp_open(r.body_ptr, r.body.len, &b), 0);
	ck_assert_int_eq(pbus_json_from_mp(b, 0, &g->body), 0);
	take_headers(g, g->body);
	take_headers(g, json_object_get(g->body, "violation"));
	ck_assert_msg(!(r.flags & PBUS_RF_ERROR), "agent error: %s",
		      dump(g->body));
	/* A violation always stops the call, and only a violation does. */
	ck_assert_int_eq(!!(r.flags & PBUS_RF_STOP),
			 json_object_get(g->body, "violation") != NULL);
}

/* The last answer equals @want exactly. */
#define want(g, w) want_at(g, NULL, w, __LINE__)
/* The last answer's @key equals @w ("null": absent). */
#define want_key(g, key, w) want_at(g, key, w, __LINE__)

static void want_at(struct ag *g, const char *key, const char *w, int line)
{
	json_t *exp = js(w);
	json_t *got = key ? json_object_get(g->body, key) : g->body;

	if (!got)
		got = json_null();
	if (!json_equal(got, exp)) {
		char *gs = dump(got), *es = dump(exp);

		ck_abort_msg("line %d: %s%s\n  got:  %s\n  want: %s", line,
			     key ? "key " : "answer", key ? key : "", gs, es);
	}
	json_decref(exp);
}

/* The last answer's value at dotted @path (object keys only) as a string. */
static const char *got_str(struct ag *g, const char *path)
{
	char buf[256], *save, *tok;
	json_t *j = g->body;

	snprintf(buf, sizeof(buf), "%s", path);
	for (tok = strtok_r(buf, ".", &save); tok && j;
	     tok = strtok_r(NULL, ".", &save))
		j = json_is_array(j) ? json_array_get(j, (size_t)atoi(tok))
				     : json_object_get(j, tok);
	ck_assert_msg(json_is_string(j), "no string at %s in %s", path,
		      dump(g->body));
	return json_string_value(j);
}

/*
 * Start pbus-@agent with @cfg, expecting it to reject the config: returns
 * its exit status and its stderr in @err.
 */
static int start_bad(const char *agent, const char *cfg, char *err,
		     size_t errlen)
{
	struct pbus_bus_opts o = {0};
	struct pbus_bus *bus;
	struct pbus_peer *peer;
	msgpack_sbuffer sb;
	char prog[64], path[4096];
	int pfd[2], st = -1;
	size_t got = 0;
	pid_t pid;

	th_log_setup();
	o.sock_path = th_sock_path();
	ck_assert_int_eq(pbus_bus_open(&o, &bus), 0);
	pack_cfg(cfg, &sb);
	ck_assert_int_eq(pbus_bus_add_peer(bus, "p", sb.data, sb.size, &peer),
			 0);
	msgpack_sbuffer_destroy(&sb);
	snprintf(prog, sizeof(prog), "pbus-%s", agent);
	snprintf(path, sizeof(path), "%s", th_bin(prog));
	ck_assert_int_eq(pipe(pfd), 0);
	pid = fork();
	if (pid == 0) {
		dup2(pfd[1], 2);
		close(pfd[0]);
		setenv("PBUS_SOCK", pbus_bus_sock_path(bus), 1);
		setenv("PBUS_PLUGIN", "p", 1);
		execl(path, prog, (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	for (;;) {
		struct pollfd p = {.fd = pfd[0], .events = POLLIN};
		ssize_t n;

		/* EOF comes as soon as the agent exits: a long deadline
		 * costs nothing and survives a loaded sanitizer run */
		if (poll(&p, 1, 30000) <= 0)
			break;
		n = read(pfd[0], err + got, errlen - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	err[got] = 0;
	close(pfd[0]);
	if (th_wait_exit(pid, 30000, &st))
		th_kill(pid);
	pbus_bus_close(bus);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#define want_bad_config(agent, cfg, needle)                                    \
	do {                                                                   \
		char err_[2048];                                               \
		int st_ = start_bad(agent, cfg, err_, sizeof(err_));           \
		ck_assert_msg(st_ == 2, "%s exit %d, stderr: %s", agent, st_,  \
			      err_);                                           \
		ck_assert_msg(!strncmp(err_, "pbus-", 5) &&                    \
				      strstr(err_, ": bad config: ") &&        \
				      strstr(err_, needle),                    \
			      "stderr of %s lacks '%s': %s", agent, needle,    \
			      err_);                                           \
	} while (0)

/* Remove @key wherever it appears (time-dependent values). */
static void drop_key(json_t *j, const char *key)
{
	const char *k;
	json_t *v;
	size_t i;

	if (json_is_object(j)) {
		json_object_del(j, key);
		json_object_foreach(j, k, v) drop_key(v, key);
	} else if (json_is_array(j)) {
		json_array_foreach(j, i, v) drop_key(v, key);
	}
}

/* Wait until the monotonic clock is early in a second, so a few calls
 * in a row land in the same whole second (fixed windows count in whole
 * seconds, as the framework's int(time.time())). */
static void align_second(void)
{
	struct timespec ts;

	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		if (ts.tv_nsec < 200000000)
			return;
		usleep(20000);
	}
}

static void sleep_ms(unsigned ms)
{
	usleep(ms * 1000);
}

/* ---------------------------------------------------------------- minimal */

START_TEST(minimal_blocks_its_tool_and_tags_others)
{
	struct ag g;

	start(&g, "example-minimal", "{'tool':'drop_db'}");
	call(&g, TOOL_PRE, "{'name':'drop_db','args':{}}", NULL, NULL);
	want(&g, "{'violation':{'reason':'Tool not allowed','description':"
		 "'drop_db','code':'TOOL_BLOCKED','details':{}}}");
	call(&g, TOOL_PRE, "{'name':'search','args':{}}", NULL, NULL);
	want(&g, "{'metadata':{'checked_by':'minimal'}}");
	call(&g, TOOL_PRE, "{'args':{}}", NULL, NULL);
	want(&g, "{}");
	/* a hook it does not serve */
	call(&g, TOOL_POST, "{'name':'x','result':'y'}", NULL, NULL);
	ck_assert(g.flags & PBUS_RF_UNSUPPORTED);
	stop(&g);
	want_bad_config("example-minimal", "{'tool':5}",
			"tool: expected a string, got an integer");
}
END_TEST

/* ---------------------------------------------------------------- deny */

#define DENY_CFG "{'words':['innovative','groundbreaking','revolutionary']}"
#define DENY_VIOLATION                                                         \
	"{'violation':{'reason':'Prompt not allowed','description':"           \
	"'A deny word was found in the prompt','code':'deny','details':{}}}"

START_TEST(deny_blocks_prompt_with_a_deny_word)
{
	struct ag g;

	start(&g, "deny_filter", DENY_CFG);
	call(&g, PROMPT_PRE,
	     "{'prompt_id':'test_prompt','args':{'a':'fine','b':'an "
	     "innovative idea'}}",
	     NULL, NULL);
	want(&g, DENY_VIOLATION);
	/* a substring counts, as Python's `in` */
	call(&g, PROMPT_PRE, "{'prompt_id':'p','args':{'a':'noninnovatively'}}",
	     NULL, NULL);
	want(&g, DENY_VIOLATION);
	stop(&g);
}
END_TEST

START_TEST(deny_words_are_case_sensitive)
{
	struct ag g;

	start(&g, "deny_filter", DENY_CFG);
	call(&g, PROMPT_PRE,
	     "{'prompt_id':'p','args':{'a':'INNOVATIVE','b':'Revolutionary'}}",
	     NULL, NULL);
	want(&g, "{}");
	call(&g, PROMPT_PRE, "{'prompt_id':'p','args':{}}", NULL, NULL);
	want(&g, "{}");
	call(&g, PROMPT_PRE, "{'prompt_id':'p'}", NULL, NULL);
	want(&g, "{}");
	/* only prompt_pre_fetch, as the original */
	call(&g, TOOL_PRE, "{'name':'t','args':{'a':'innovative'}}", NULL,
	     NULL);
	ck_assert(g.flags & PBUS_RF_UNSUPPORTED);
	stop(&g);
}
END_TEST

START_TEST(deny_rejects_bad_config)
{
	want_bad_config("deny_filter", "{}", "words: required");
	want_bad_config("deny_filter", "{'words':['ok',3]}",
			"words[1]: expected a string, got an integer");
	want_bad_config("deny_filter", "{'words':'innovative'}",
			"words: expected a list of strings, got a string");
}
END_TEST

/* ---------------------------------------------------------------- regex */

#define CHAIN_CFG                                                              \
	"{'words':[{'search':'crap','replace':'crud'},"                        \
	"{'search':'crud','replace':'yikes'}]}"

START_TEST(regex_rules_chain_in_order)
{
	struct ag g;

	start(&g, "regex_filter", CHAIN_CFG);
	call(&g, PROMPT_PRE,
	     "{'prompt_id':'p','args':{'a':'this is "
	     "crap','b':'crud','c':'ok'}}",
	     NULL, NULL);
	want(&g, "{'modified_payload':{'prompt_id':'p','args':{'a':'this is "
		 "yikes','b':'yikes','c':'ok'}}}");
	call(&g, PROMPT_PRE, "{'prompt_id':'p','args':{'a':'clean'}}", NULL,
	     NULL);
	want(&g, "{}");
	stop(&g);
}
END_TEST

START_TEST(regex_looks_where_the_original_looked)
{
	struct ag g;

	start(&g, "regex_filter", CHAIN_CFG);
	/* prompt_post_fetch: message texts; an image message is skipped */
	call(&g, PROMPT_POST,
	     "{'prompt_id':'p','result':{'messages':["
	     "{'role':'user','content':{'type':'text','text':'crap!'}},"
	     "{'role':'user','content':{'type':'image','data':'crap'}}]}}",
	     NULL, NULL);
	want(&g,
	     "{'modified_payload':{'prompt_id':'p','result':{'messages':["
	     "{'role':'user','content':{'type':'text','text':'yikes!'}},"
	     "{'role':'user','content':{'type':'image','data':'crap'}}]}}}");
	/* tool_pre_invoke: top-level string arguments only */
	call(&g, TOOL_PRE,
	     "{'name':'t','args':{'q':'crap','n':5,'deep':{'x':'crap'}}}", NULL,
	     NULL);
	want(&g, "{'modified_payload':{'name':'t','args':{'q':'yikes','n':5,"
		 "'deep':{'x':'crap'}}}}");
	/* tool_post_invoke: a string result */
	call(&g, TOOL_POST, "{'name':'t','result':'crap'}", NULL, NULL);
	want(&g, "{'modified_payload':{'name':'t','result':'yikes'}}");
	/* a map result: top-level strings */
	call(&g, TOOL_POST,
	     "{'name':'t','result':{'a':'crap','b':{'c':'crap'}}}", NULL, NULL);
	want(&g, "{'modified_payload':{'name':'t','result':{'a':'yikes',"
		 "'b':{'c':'crap'}}}}");
	/* pbus: the MCP result's text items (the original skipped them) */
	call(&g, TOOL_POST,
	     "{'name':'t','result':{'content':[{'type':'text','text':'crap'}],"
	     "'structuredContent':{'v':'crap'},'isError':false}}",
	     NULL, NULL);
	want(&g, "{'modified_payload':{'name':'t','result':{'content':[{'type':"
		 "'text','text':'yikes'}],'structuredContent':{'v':'crap'},"
		 "'isError':false}}}");
	stop(&g);
}
END_TEST

START_TEST(regex_uses_python_syntax)
{
	struct ag g;

	/* expected values computed with Python's re.sub */
	start(&g, "regex_filter",
	      "{'words':["
	      "{'search':'(?P<user>\\\\w+)@example\\\\.com',"
	      "'replace':'\\\\g<user> (at) example'},"
	      "{'search':'end\\\\Z','replace':'END'},"
	      "{'search':'(a)(b)?c','replace':'[\\\\2\\\\1]\\\\n'}]}");
	call(&g, TOOL_PRE,
	     "{'name':'t','args':{'m':'mail bob@example.com','e1':'the end',"
	     "'e2':'the end\\n','g':'ac','h':'abc'}}",
	     NULL, NULL);
	want(&g, "{'modified_payload':{'name':'t','args':{"
		 "'m':'mail bob (at) example','e1':'the END',"
		 "'e2':'the end\\n','g':'[a]\\n','h':'[ba]\\n'}}}");
	stop(&g);
	/* empty matches, as Python 3.7+: re.sub('x*', '-', 'abxd') */
	start(&g, "regex_filter", "{'words':[{'search':'x*','replace':'-'}]}");
	call(&g, TOOL_PRE, "{'name':'t','args':{'x':'abxd','e':''}}", NULL,
	     NULL);
	want(&g, "{'modified_payload':{'name':'t','args':{'x':'-a-b--d-',"
		 "'e':'-'}}}");
	stop(&g);
}
END_TEST

START_TEST(regex_rejects_bad_config)
{
	want_bad_config("regex_filter", "{}", "words: required");
	want_bad_config("regex_filter", "{'words':[{'search':'('}]}",
			"words[0].replace: required");
	want_bad_config("regex_filter",
			"{'words':[{'search':'(','replace':'x'}]}",
			"words[0].search: bad regex '('");
	want_bad_config("regex_filter",
			"{'words':[{'search':'a','replace':'\\\\9'}]}",
			"words[0].replace: bad replacement '\\9': invalid "
			"group reference 9");
	want_bad_config("regex_filter", "{'words':['crap']}",
			"words[0]: expected a map, got a string");
}
END_TEST

/* ---------------------------------------------------------------- pii */

START_TEST(pii_overlaps_across_types_do_not_corrupt_the_text)
{
	struct ag g;

	start(&g, "pii_filter", "{}");
	/* The framework printed "My SSN is [REDACTED]-**-6789ED]-***-***-6789"
	 * here: the phone pattern also matched inside the SSN. */
	call(&g, TOOL_PRE,
	     "{'name':'t','args':{'text':'My SSN is 123-45-6789'}}", NULL,
	     NULL);
	want(&g, "{'modified_payload':{'name':'t','args':{'text':'My SSN is "
		 "***-**-6789'}},'local_metadata':{'pii_detections':{"
		 "'tool_pre_invoke':{'detected':true,'arguments':['args.text'],"
		 "'types':['ssn'],'total_count':1}}}}");
	/* several detections, masked right to left */
	call(&g, TOOL_PRE,
	     "{'name':'t','args':{'text':'Email a@b.io or call 555-123-4567, "
	     "SSN 123-45-6789, card 4111 1111 1111 1111'}}",
	     NULL, NULL);
	want_key(&g, "modified_payload",
		 "{'name':'t','args':{'text':'Email ***@b.io or call "
		 "***-***-4567, SSN ***-**-6789, card ****-****-****-1111'}}");
	want_key(&g, "local_metadata",
		 "{'pii_detections':{'tool_pre_invoke':{'detected':true,"
		 "'arguments':['args.text'],'types':['ssn','credit_card','"
		 "email',"
		 "'phone'],'total_count':4}}}");
	stop(&g);
}
END_TEST

START_TEST(pii_partial_masks_and_strategies)
{
	struct ag g;

	start(&g, "pii_filter",
	      "{'redaction_text':'[X]','custom_patterns':["
	      "{'type':'custom','pattern':'EMP-\\\\d{5}','description':'id',"
	      "'mask_strategy':'partial'},"
	      "{'type':'custom','pattern':'HR-\\\\d{5}','description':'hr',"
	      "'mask_strategy':'hash'},"
	      "{'type':'custom','pattern':'TMP-\\\\d{5}','description':'tmp',"
	      "'mask_strategy':'remove'}]}");
	call(&g, TOOL_PRE,
	     "{'name':'t','args':{'e':'john.doe@example.com','p':'555-123-4567'"
	     ","
	     "'ip':'host 10.0.0.1','c':'id EMP-12345','h':'HR-12345',"
	     "'r':'x TMP-12345 y','n':[{'deep':'jo@x.org'}]}}",
	     NULL, NULL);
	want_key(&g, "modified_payload",
		 "{'name':'t','args':{'e':'j***e@example.com',"
		 "'p':'***-***-4567','ip':'host [X]','c':'id E*******5',"
		 "'h':'[HASH:14e20fcf]','r':'x  "
		 "y','n':[{'deep':'***@x.org'}]}}");
	want_key(&g, "local_metadata",
		 "{'pii_detections':{'tool_pre_invoke':{'detected':true,"
		 "'arguments':['args.e','args.p','args.ip','args.c','args.h',"
		 "'args.r','args.n[0].deep'],'types':['email','phone',"
		 "'ip_address','custom'],'total_count':7}}}");
	stop(&g);
}
END_TEST

START_TEST(pii_whitelist_and_detector_switches)
{
	struct ag g;

	start(&g, "pii_filter",
	      "{'whitelist_patterns':['@example\\\\.com$'],"
	      "'detect_ssn':false,'detect_phone':false,'detect_bsn':false,"
	      "'detect_bank_account':false}");
	call(&g, TOOL_PRE,
	     "{'name':'t','args':{'a':'write to ann@example.com',"
	     "'b':'ssn 123-45-6789'}}",
	     NULL, NULL);
	want(&g, "{}");
	call(&g, TOOL_PRE, "{'name':'t','args':{'a':'or ann@example.org'}}",
	     NULL, NULL);
	want_key(&g, "modified_payload",
		 "{'name':'t','args':{'a':'or a***n@example.org'}}");
	stop(&g);
}
END_TEST

START_TEST(pii_blocks_with_the_original_codes)
{
	struct ag g;

	start(&g, "pii_filter", "{'block_on_detection':true}");
	call(&g, PROMPT_PRE,
	     "{'prompt_id':'p','args':{'a':'hi','q':'SSN 123-45-6789'}}", NULL,
	     NULL);
	want(&g,
	     "{'violation':{'reason':'PII detected in prompt','description':"
	     "'Sensitive information detected in argument \\u0027q\\u0027',"
	     "'code':'PII_DETECTED','details':{'field':'q','types':['ssn'],"
	     "'count':1}}}");
	call(&g, TOOL_PRE,
	     "{'name':'t','args':{'a':'SSN 123-45-6789','b':['x@y.com']}}",
	     NULL, NULL);
	want(&g,
	     "{'violation':{'reason':'PII detected in tool arguments',"
	     "'description':'Detected PII in tool arguments','code':"
	     "'PII_DETECTED_IN_TOOL_ARGS','details':{'detected_types':['ssn',"
	     "'email'],'total_count':2}}}");
	call(&g, TOOL_POST, "{'name':'t','result':'mail x@y.com, 10.1.2.3'}",
	     NULL, NULL);
	want(&g, "{'violation':{'reason':'PII detected in tool result',"
		 "'description':'Detected email, ip_address in tool output',"
		 "'code':'PII_DETECTED_IN_TOOL_RESULT','details':{"
		 "'detected_types':['email','ip_address'],'count':2}}}");
	call(&g, TOOL_POST,
	     "{'name':'t','result':{'content':[{'type':'text','text':'x@y.com'}"
	     "]"
	     ",'isError':false}}",
	     NULL, NULL);
	want(&g, "{'violation':{'reason':'PII detected in tool result',"
		 "'description':'Detected PII in nested tool result data',"
		 "'code':'PII_DETECTED_IN_TOOL_RESULT','details':{"
		 "'detected_types':['email'],'total_count':1}}}");
	/* clean calls pass; the post hook still reports its counters */
	call(&g, TOOL_PRE, "{'name':'t','args':{'a':'nothing here'}}", NULL,
	     NULL);
	want(&g, "{}");
	stop(&g);
}
END_TEST

START_TEST(pii_scans_lists_mcp_results_and_messages)
{
	struct ag g;

	start(&g, "pii_filter", "{}");
	/* pbus fix: a list result is scanned (the original skipped it) */
	call(&g, TOOL_POST, "{'name':'t','result':['SSN 123-45-6789','clean']}",
	     NULL, NULL);
	want(&g, "{'modified_payload':{'name':'t','result':['SSN ***-**-6789',"
		 "'clean']},'local_metadata':{'pii_detections':{"
		 "'tool_post_invoke':{'detected':true,'fields':['result[0]'],"
		 "'types':['ssn'],'total_count':1}},'pii_filter_stats':{"
		 "'total_detections':1,'total_masked':0}}}");
	/* the gateway's MCP result */
	call(&g, TOOL_POST,
	     "{'name':'t','result':{'content':[{'type':'text','text':'mail "
	     "john.doe@example.com'}],'structuredContent':{'ip':'10.0.0.1'},"
	     "'isError':false}}",
	     NULL, NULL);
	want_key(&g, "modified_payload",
		 "{'name':'t','result':{'content':[{'type':'text','text':'mail "
		 "j***e@example.com'}],'structuredContent':{'ip':'[REDACTED]'},"
		 "'isError':false}}");
	want_key(&g, "local_metadata",
		 "{'pii_detections':{'tool_post_invoke':{'detected':true,"
		 "'fields':['result.content[0].text','result.structuredContent."
		 "ip'],'types':['email','ip_address'],'total_count':2}},"
		 "'pii_filter_stats':{'total_detections':3,'total_masked':0}}");
	/* a string result: counted as detected and masked */
	call(&g, TOOL_POST, "{'name':'t','result':'SSN 123-45-6789'}", NULL,
	     NULL);
	want_key(&g, "modified_payload",
		 "{'name':'t','result':'SSN ***-**-6789'}");
	want_key(&g, "local_metadata",
		 "{'pii_detections':{'tool_post_invoke':{'detected':true,"
		 "'fields':['result'],'types':['ssn'],'total_count':1}},"
		 "'pii_filter_stats':{'total_detections':4,'total_masked':1}}");
	/* prompt_post_fetch: keys name the role plainly (not Role.USER) */
	call(&g, PROMPT_POST,
	     "{'prompt_id':'p','result':{'messages':["
	     "{'role':'user','content':{'type':'text','text':'SSN "
	     "123-45-6789'}},"
	     "{'role':'assistant','content':{'type':'text','text':'ok'}},"
	     "{'role':'user','content':{'type':'text','text':'x@y.com'}}]}}",
	     NULL, NULL);
	want_key(&g, "modified_payload",
		 "{'prompt_id':'p','result':{'messages':["
		 "{'role':'user','content':{'type':'text','text':'SSN "
		 "***-**-6789'}},"
		 "{'role':'assistant','content':{'type':'text','text':'ok'}},"
		 "{'role':'user','content':{'type':'text','text':'***@y.com'}}"
		 "]}}");
	want_key(&g, "local_metadata",
		 "{'pii_detections':{'post_fetch':{'detected':true,'messages':["
		 "'message_user'],'types':['ssn','email'],'total_count':2}},"
		 "'pii_filter_stats':{'total_detections':4,'total_masked':3}}");
	/* an empty result: nothing at all, as the original */
	call(&g, TOOL_POST, "{'name':'t','result':''}", NULL, NULL);
	want(&g, "{}");
	/* a clean result: counters only */
	call(&g, TOOL_POST, "{'name':'t','result':{'v':'clean'}}", NULL, NULL);
	want(&g, "{'local_metadata':{'pii_filter_stats':{'total_detections':4,"
		 "'total_masked':3}}}");
	stop(&g);
}
END_TEST

START_TEST(pii_keeps_local_metadata_from_pre_to_post)
{
	struct ag g;

	start(&g, "pii_filter", "{}");
	call(&g, PROMPT_PRE, "{'prompt_id':'p','args':{'q':'to x@y.com'}}",
	     NULL, NULL);
	want(&g, "{'modified_payload':{'prompt_id':'p','args':{'q':'to "
		 "***@y.com'}},'local_metadata':{'pii_detections':{'pre_fetch':"
		 "{'detected':true,'fields':['q'],'types':['email'],"
		 "'total_count':1}}}}");
	/* the post hook adds its key next to the pre hook's */
	call(&g, TOOL_POST, "{'name':'t','result':{'a':'SSN 123-45-6789'}}",
	     NULL,
	     "{'state':{},'metadata':{'other':1,'pii_detections':{'pre_fetch':"
	     "{'detected':true}}}}");
	want_key(&g, "local_metadata",
		 "{'other':1,'pii_detections':{'pre_fetch':{'detected':true},"
		 "'tool_post_invoke':{'detected':true,'fields':['result.a'],"
		 "'types':['ssn'],'total_count':1}},'pii_filter_stats':{"
		 "'total_detections':1,'total_masked':1}}");
	/* a JSON document inside a string is masked in place */
	call(&g, TOOL_PRE,
	     "{'name':'t','args':{'doc':'{\\'email\\': \\'john.doe@example.com"
	     "\\'}'}}",
	     NULL, NULL);
	want_key(&g, "modified_payload",
		 "{'name':'t','args':{'doc':'{\\'email\\': "
		 "\\'j***e@example.com\\'}'}}");
	stop(&g);
}
END_TEST

/* The detector's windows and ASCII fast path find exactly what plain
 * whole-text searches (and Python's Unicode rules) find. */
START_TEST(pii_fast_paths_match_plain_searches)
{
	char *argv[] = {(char *)"pbus-pii_filter", (char *)"--self-test",
			(char *)"5000", NULL};
	pid_t pid = th_spawn(NULL, NULL, argv);
	int st = -1;

	ck_assert_int_gt(pid, 0);
	ck_assert_int_eq(th_wait_exit(pid, 30000, &st), 0);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		      "self-test status %d", st);
}
END_TEST

START_TEST(pii_rejects_bad_config)
{
	want_bad_config("pii_filter", "{'default_mask_strategy':'blur'}",
			"default_mask_strategy: 'blur' is not one of redact");
	want_bad_config("pii_filter",
			"{'custom_patterns':[{'type':'ssn','pattern':'x'}]}",
			"custom_patterns[0].description: required");
	want_bad_config("pii_filter",
			"{'custom_patterns':[{'type':'name','pattern':'x',"
			"'description':'d'}]}",
			"custom_patterns[0].type: 'name' is not a PII type");
	want_bad_config("pii_filter",
			"{'custom_patterns':[{'type':'custom','pattern':'[',"
			"'description':'d'}]}",
			"custom_patterns[0].pattern: bad regex '['");
	want_bad_config("pii_filter", "{'whitelist_patterns':['(']}",
			"whitelist_patterns[0]: bad regex '('");
	want_bad_config("pii_filter", "{'detect_ssn':'maybe'}",
			"detect_ssn: expected a boolean");
}
END_TEST

/* ---------------------------------------------------------------- length */

START_TEST(length_truncates_over_max)
{
	struct ag g;

	start(&g, "output_length_guard", "{'max_chars':10}");
	call(&g, TOOL_POST, "{'name':'t','result':'hello'}", NULL, NULL);
	want(&g, "{'metadata':{'original_length':5,'within_bounds':true}}");
	call(&g, TOOL_POST, "{'name':'t','result':'hello world, long'}", NULL,
	     NULL);
	want(&g, "{'modified_payload':{'name':'t','result':'hello wor\u2026'},"
		 "'metadata':{'original_length':17,'within_bounds':false,"
		 "'min_chars':0,'max_chars':10,'strategy':'truncate',"
		 "'truncated':true,'new_length':10}}");
	/* lengths are code points, as Python's len() */
	call(&g, TOOL_POST,
	     "{'name':'t','result':{'text':'\u00e9\u00e9\u00e9\u00e9\u00e9"
	     "\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9','other':1}}",
	     NULL, NULL);
	want(&g, "{'modified_payload':{'name':'t','result':{'text':'\u00e9"
		 "\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u2026',"
		 "'other':1}},'metadata':{'original_length':12,'within_bounds':"
		 "false,'min_chars':0,'max_chars':10,'strategy':'truncate',"
		 "'truncated':true,'new_length':10}}");
	/* a list of strings, item by item */
	call(&g, TOOL_POST,
	     "{'name':'t','result':['short','this is way too long']}", NULL,
	     NULL);
	want(&g, "{'modified_payload':{'name':'t','result':['short','this is "
		 "w\u2026']},'metadata':{'items':[{'original_length':5,"
		 "'within_bounds':true},{'original_length':20,'within_bounds':"
		 "false,'min_chars':0,'max_chars':10,'strategy':'truncate',"
		 "'truncated':true,'new_length':10}]}}");
	/* pbus: the MCP result's text items (the original ignored them) */
	call(&g, TOOL_POST,
	     "{'name':'t','result':{'content':[{'type':'text','text':'this is "
	     "way too long'},{'type':'image','data':'AAAA'}],'isError':false}}",
	     NULL, NULL);
	want(&g,
	     "{'modified_payload':{'name':'t','result':{'content':[{'type':"
	     "'text','text':'this is w\u2026'},{'type':'image','data':'AAAA'}"
	     "],'isError':false}},'metadata':{'items':[{'original_length':20,"
	     "'within_bounds':false,'min_chars':0,'max_chars':10,'strategy':"
	     "'truncate','truncated':true,'new_length':10}]}}");
	/* other shapes pass untouched */
	call(&g, TOOL_POST, "{'name':'t','result':['a',1]}", NULL, NULL);
	want(&g, "{}");
	call(&g, TOOL_POST, "{'name':'t','result':42}", NULL, NULL);
	want(&g, "{}");
	stop(&g);
}
END_TEST

START_TEST(length_under_min_is_left_untouched)
{
	struct ag g;

	start(&g, "output_length_guard", "{'min_chars':5,'ellipsis':'...'}");
	call(&g, TOOL_POST, "{'name':'t','result':'abc'}", NULL, NULL);
	want(&g, "{'metadata':{'original_length':3,'within_bounds':false,"
		 "'min_chars':5,'max_chars':null,'strategy':'truncate',"
		 "'truncated':false,'new_length':3}}");
	stop(&g);
	/* an ellipsis longer than the maximum: a hard cut */
	start(&g, "output_length_guard", "{'max_chars':2,'ellipsis':'...'}");
	call(&g, TOOL_POST, "{'name':'t','result':'abcdef'}", NULL, NULL);
	want_key(&g, "modified_payload", "{'name':'t','result':'ab'}");
	stop(&g);
}
END_TEST

START_TEST(length_blocks_out_of_bounds)
{
	struct ag g;

	start(&g, "output_length_guard",
	      "{'min_chars':5,'max_chars':10,'strategy':'block'}");
	call(&g, TOOL_POST, "{'name':'t','result':'abc'}", NULL, NULL);
	want(&g,
	     "{'violation':{'reason':'Output length out of bounds',"
	     "'description':'Result length 3 not in [5, 10]','code':"
	     "'OUTPUT_LENGTH_VIOLATION','details':{'length':3,'min':5,"
	     "'max':10,'strategy':'block'}},'metadata':{'original_length':3,"
	     "'within_bounds':false,'min_chars':5,'max_chars':10,"
	     "'strategy':'block'}}");
	call(&g, TOOL_POST, "{'name':'t','result':'just right'}", NULL, NULL);
	want(&g, "{'metadata':{'original_length':10,'within_bounds':true}}");
	stop(&g);
	/* Fix: no maximum, and the message no longer says "None" */
	start(&g, "output_length_guard", "{'min_chars':5,'strategy':'Block'}");
	call(&g, TOOL_POST, "{'name':'t','result':['abcdef','abc']}", NULL,
	     NULL);
	want(&g,
	     "{'violation':{'reason':'Output length out of bounds',"
	     "'description':'Result length 3 is below the minimum of 5',"
	     "'code':'OUTPUT_LENGTH_VIOLATION','details':{'length':3,"
	     "'min':5,'max':null,'strategy':'Block'}},'metadata':{'items':["
	     "{'original_length':6,'within_bounds':true},{'original_length':"
	     "3,'within_bounds':false,'min_chars':5,'max_chars':null,"
	     "'strategy':'Block'}]}}");
	stop(&g);
}
END_TEST

START_TEST(length_rejects_bad_config)
{
	want_bad_config("output_length_guard", "{'strategy':'chop'}",
			"strategy: 'chop' is not truncate or block");
	want_bad_config("output_length_guard", "{'max_chars':0}",
			"max_chars: must be >= 1, got 0");
	want_bad_config("output_length_guard", "{'min_chars':-1}",
			"min_chars: must be >= 0, got -1");
	want_bad_config("output_length_guard",
			"{'min_chars':20,'max_chars':10}",
			"min_chars: 20 is greater than max_chars 10");
	want_bad_config("output_length_guard", "{'max_chars':'ten'}",
			"max_chars: expected an integer, got 'ten'");
}
END_TEST

/* ---------------------------------------------------------------- rate */

#define ALICE "{'request_id':'r','user':'alice','tenant_id':'t1'}"
#define BOB "{'request_id':'r','user':'bob','tenant_id':'t1'}"

/*
 * The last answer's http_headers: X-RateLimit-Limit @lim, -Remaining @rem,
 * -Reset within a second of now + @reset_in, and Retry-After @retry (-1:
 * absent, as on a call that passes). @lim < 0: no headers at all.
 */
#define want_hdrs(g, lim, rem, reset_in, retry)                                \
	want_hdrs_at(g, lim, rem, reset_in, retry, __LINE__)

static void want_hdrs_at(struct ag *g, long lim, long rem, long reset_in,
			 long retry, int line)
{
	json_t *h = g->hdrs;
	const char *v;
	long now = (long)time(NULL), reset;
	char buf[32];

	if (lim < 0) {
		ck_assert_msg(!h, "line %d: unexpected headers %s", line,
			      dump(h));
		return;
	}
	ck_assert_msg(h && json_object_size(h) == (retry < 0 ? 3u : 4u),
		      "line %d: headers %s", line, h ? dump(h) : "none");
#define HDR(name, want)                                                        \
	do {                                                                   \
		v = json_string_value(json_object_get(h, name));               \
		snprintf(buf, sizeof(buf), "%ld", (long)(want));               \
		ck_assert_msg(v && !strcmp(v, buf), "line %d: %s: %s, want %s", \
			      line, name, v ? v : "absent", buf);              \
	} while (0)
	HDR("X-RateLimit-Limit", lim);
	HDR("X-RateLimit-Remaining", rem);
	if (retry >= 0)
		HDR("Retry-After", retry);
#undef HDR
	v = json_string_value(json_object_get(h, "X-RateLimit-Reset"));
	ck_assert_msg(v, "line %d: no X-RateLimit-Reset", line);
	reset = atol(v);
	ck_assert_msg(reset >= now + reset_in - 1 && reset <= now + reset_in + 1,
		      "line %d: X-RateLimit-Reset %ld, now %ld + %ld", line,
		      reset, now, reset_in);
}

/* The last answer without its reset_in values equals @w. */
#define want_rl(g, w)                                                          \
	do {                                                                   \
		drop_key((g)->body, "reset_in");                               \
		want(g, w);                                                    \
	} while (0)

START_TEST(rate_counts_user_tenant_and_tool)
{
	struct ag g;

	start(&g, "rate_limiter",
	      "{'by_user':'2/h','by_tool':{'search':'5/h'}}");
	call(&g, TOOL_PRE, "{'name':'search','args':{}}", ALICE, NULL);
	want_rl(&g, "{'metadata':{'by_user':{'limited':true,'remaining':1},"
		    "'by_tenant':{'limited':false},'by_tool':{'limited':true,"
		    "'remaining':4}}}");
	want_hdrs(&g, 2, 1, 3600, -1); /* the tightest limit: the user's */
	call(&g, TOOL_PRE, "{'name':'other','args':{}}", ALICE, NULL);
	want_rl(&g, "{'metadata':{'by_user':{'limited':true,'remaining':0},"
		    "'by_tenant':{'limited':false}}}");
	want_hdrs(&g, 2, 0, 3600, -1);
	/* blocked by the user; the tool is still counted */
	call(&g, TOOL_PRE, "{'name':'search','args':{}}", ALICE, NULL);
	want_hdrs(&g, 2, 0, 3600, 3600); /* 429 with Retry-After */
	want_rl(&g,
		"{'violation':{'reason':'Rate limit exceeded','description':"
		"'Rate limit exceeded for user','code':'RATE_LIMIT',"
		"'http_status_code':429,'details':{'by_user':{'limited':"
		"true,'remaining':0},'by_tenant':{'limited':false},"
		"'by_tool':{'limited':true,'remaining':3}}}}");
	/* another user has their own counter */
	call(&g, TOOL_PRE, "{'name':'search','args':{}}", BOB, NULL);
	want_rl(&g, "{'metadata':{'by_user':{'limited':true,'remaining':1},"
		    "'by_tenant':{'limited':false},'by_tool':{'limited':true,"
		    "'remaining':2}}}");
	call(&g, TOOL_PRE, "{'name':'search','args':{}}", BOB, NULL);
	call(&g, TOOL_PRE, "{'name':'search','args':{}}",
	     "{'request_id':'r','user':'carol'}", NULL);
	want_rl(&g, "{'metadata':{'by_user':{'limited':true,'remaining':1},"
		    "'by_tenant':{'limited':false},'by_tool':{'limited':true,"
		    "'remaining':0}}}");
	/* the tool's 5 calls are used up: the tool is named */
	call(&g, TOOL_PRE, "{'name':'search','args':{}}",
	     "{'request_id':'r','user':'carol'}", NULL);
	want_rl(&g,
		"{'violation':{'reason':'Rate limit exceeded','description':"
		"'Rate limit exceeded for tool search','code':'RATE_LIMIT',"
		"'http_status_code':429,'details':{'by_user':{'limited':"
		"true,'remaining':0},'by_tenant':{'limited':false},"
		"'by_tool':{'limited':true,'remaining':0}}}}");
	want_hdrs(&g, 5, 0, 3600, 3600); /* the tool blocked */
	stop(&g);
}
END_TEST

START_TEST(rate_prompt_checks_user_then_tenant)
{
	struct ag g;

	start(&g, "rate_limiter", "{'by_user':'1/h','by_tenant':'2/h'}");
	call(&g, PROMPT_PRE, "{'prompt_id':'p','args':{}}", ALICE, NULL);
	want_rl(&g, "{'metadata':{'by_user':{'limited':true,'remaining':0},"
		    "'by_tenant':{'limited':true,'remaining':1}}}");
	want_hdrs(&g, 1, 0, 3600, -1);
	call(&g, PROMPT_PRE, "{'prompt_id':'p','args':{}}", ALICE, NULL);
	want_rl(&g,
		"{'violation':{'reason':'Rate limit exceeded','description':"
		"'User alice rate limit exceeded','code':'RATE_LIMIT',"
		"'http_status_code':429,'details':{'limited':true,"
		"'remaining':0}}}");
	/* the blocked call did not count against the tenant */
	call(&g, PROMPT_PRE, "{'prompt_id':'p','args':{}}", BOB, NULL);
	want_rl(&g, "{'metadata':{'by_user':{'limited':true,'remaining':0},"
		    "'by_tenant':{'limited':true,'remaining':0}}}");
	call(&g, PROMPT_PRE, "{'prompt_id':'p','args':{}}",
	     "{'request_id':'r','user':'carol','tenant_id':'t1'}", NULL);
	want_rl(&g,
		"{'violation':{'reason':'Rate limit exceeded','description':"
		"'Tenant t1 rate limit exceeded','code':'RATE_LIMIT',"
		"'http_status_code':429,'details':{'limited':true,"
		"'remaining':0}}}");
	want_hdrs(&g, 2, 0, 3600, 3600);
	/* no user: "anonymous"; no tenant: "default" */
	call(&g, PROMPT_PRE, "{'prompt_id':'p','args':{}}", NULL, NULL);
	call(&g, PROMPT_PRE, "{'prompt_id':'p','args':{}}", NULL, NULL);
	want_key(&g, "violation",
		 "{'reason':'Rate limit exceeded','description':'User "
		 "anonymous rate limit exceeded','code':'RATE_LIMIT',"
		 "'http_status_code':429,'details':{'limited':true,'remaining':"
		 "0,'reset_in':3600}}");
	stop(&g);
}
END_TEST

START_TEST(rate_fixed_window_resets)
{
	struct ag g;

	start(&g, "rate_limiter", "{'by_user':'1/s'}");
	align_second();
	call(&g, TOOL_PRE, "{'name':'t','args':{}}", ALICE, NULL);
	want(&g, "{'metadata':{'by_user':{'limited':true,'remaining':0,"
		 "'reset_in':1},'by_tenant':{'limited':false}}}");
	call(&g, TOOL_PRE, "{'name':'t','args':{}}", ALICE, NULL);
	want_key(
		&g, "violation",
		"{'reason':'Rate limit exceeded','description':'Rate limit "
		"exceeded for user','code':'RATE_LIMIT','http_status_code':429,"
		"'details':{'by_user':{'limited':true,'remaining':0,"
		"'reset_in':1},'by_tenant':{'limited':false}}}");
	sleep_ms(1100);
	call(&g, TOOL_PRE, "{'name':'t','args':{}}", ALICE, NULL);
	want(&g, "{'metadata':{'by_user':{'limited':true,'remaining':0,"
		 "'reset_in':1},'by_tenant':{'limited':false}}}");
	stop(&g);
}
END_TEST

START_TEST(rate_zero_blocks_everything)
{
	struct ag g;

	/* The framework let the first call through. */
	start(&g, "rate_limiter", "{'by_user':'0/m'}");
	for (int i = 0; i < 3; i++) {
		call(&g, PROMPT_PRE, "{'prompt_id':'p'}", ALICE, NULL);
		want(&g,
		     "{'violation':{'reason':'Rate limit exceeded',"
		     "'description':'User alice rate limit exceeded','code':"
		     "'RATE_LIMIT','http_status_code':429,'details':{"
		     "'limited':true,'remaining':0,'reset_in':60}}}");
	}
	stop(&g);
}
END_TEST

START_TEST(rate_sliding_window_and_token_bucket)
{
	struct ag g;

	start(&g, "rate_limiter",
	      "{'by_user':'2/s','algorithm':'sliding_window'}");
	call(&g, TOOL_PRE, "{'name':'t'}", ALICE, NULL);
	call(&g, TOOL_PRE, "{'name':'t'}", ALICE, NULL);
	want_rl(&g, "{'metadata':{'by_user':{'limited':true,'remaining':0},"
		    "'by_tenant':{'limited':false}}}");
	call(&g, TOOL_PRE, "{'name':'t'}", ALICE, NULL);
	ck_assert_str_eq(got_str(&g, "violation.code"), "RATE_LIMIT");
	sleep_ms(1050);
	call(&g, TOOL_PRE, "{'name':'t'}", ALICE, NULL);
	want_rl(&g, "{'metadata':{'by_user':{'limited':true,'remaining':1},"
		    "'by_tenant':{'limited':false}}}");
	stop(&g);

	start(&g, "rate_limiter",
	      "{'by_user':'2/s','algorithm':'token_bucket'}");
	call(&g, TOOL_PRE, "{'name':'t'}", ALICE, NULL);
	want(&g, "{'metadata':{'by_user':{'limited':true,'remaining':1,"
		 "'reset_in':1},'by_tenant':{'limited':false}}}");
	call(&g, TOOL_PRE, "{'name':'t'}", ALICE, NULL);
	call(&g, TOOL_PRE, "{'name':'t'}", ALICE, NULL);
	want(&g,
	     "{'violation':{'reason':'Rate limit exceeded','description':"
	     "'Rate limit exceeded for user','code':'RATE_LIMIT',"
	     "'http_status_code':429,'details':{'by_user':{'limited':true,"
	     "'remaining':0,'reset_in':1},'by_tenant':{'limited':false}}}}");
	sleep_ms(600); /* refills 1.2 tokens at 2/s */
	call(&g, TOOL_PRE, "{'name':'t'}", ALICE, NULL);
	want_rl(&g, "{'metadata':{'by_user':{'limited':true,'remaining':0},"
		    "'by_tenant':{'limited':false}}}");
	stop(&g);
}
END_TEST

START_TEST(rate_no_headers_without_a_limit)
{
	struct ag g;

	start(&g, "rate_limiter", "{'by_tool':{'search':'1/m'}}");
	call(&g, TOOL_PRE, "{'name':'other','args':{}}", ALICE, NULL);
	want(&g, "{'metadata':{'by_user':{'limited':false},'by_tenant':{"
		 "'limited':false}}}");
	want_hdrs(&g, -1, 0, 0, 0);
	call(&g, TOOL_PRE, "{'name':'search','args':{}}", ALICE, NULL);
	want_hdrs(&g, 1, 0, 60, -1);
	stop(&g);
}
END_TEST

START_TEST(rate_rejects_bad_rates_at_startup)
{
	want_bad_config("rate_limiter", "{'by_user':'60/x'}",
			"by_user: invalid rate '60/x': unsupported unit 'x'");
	want_bad_config("rate_limiter", "{'by_tenant':'sixty'}",
			"by_tenant: invalid rate 'sixty': expected "
			"'<count>/<unit>'");
	want_bad_config("rate_limiter", "{'by_tool':{'search':'ten/m'}}",
			"by_tool.search: invalid rate 'ten/m': the count 'ten' "
			"is not an integer");
	want_bad_config("rate_limiter", "{'by_user':'-1/m'}",
			"by_user: invalid rate '-1/m': the count must be >= 0");
	want_bad_config("rate_limiter", "{'algorithm':'leaky_bucket'}",
			"algorithm: 'leaky_bucket' is not fixed_window");
	want_bad_config("rate_limiter", "{'backend':'redis'}",
			"backend: 'redis' is not supported");
	want_bad_config("rate_limiter", "{'by_user':60}",
			"by_user: expected a string, got an integer");
}
END_TEST

/* ---------------------------------------------------------------- resource */

#define RF_CFG                                                                 \
	"{'blocked_domains':['evil.com'],'max_content_size':40,"               \
	"'content_filters':[{'pattern':'secret','replacement':'[hidden]'},"    \
	"{'pattern':'p(a)ss','replacement':'\\\\1'}]}"

START_TEST(resource_blocks_domains_subdomains_and_ports)
{
	static const char *const blocked[][2] = {
		{"https://evil.com/x", "evil.com"},
		{"https://evil.com:8443/",
		 "evil.com"}, /* the original missed it */
		{"https://api.evil.com/", "api.evil.com"},
		{"https://EVIL.com./a", "EVIL.com."},
		{"http://user:pw@evil.com:80/", "evil.com"},
	};
	struct ag g;
	char p[256], w[512];

	start(&g, "resource_filter", RF_CFG);
	for (size_t i = 0; i < sizeof(blocked) / sizeof(blocked[0]); i++) {
		snprintf(p, sizeof(p), "{'uri':'%s','metadata':{}}",
			 blocked[i][0]);
		call(&g, RES_PRE, p, NULL, NULL);
		snprintf(w, sizeof(w),
			 "{'violation':{'reason':'Domain is blocked',"
			 "'description':'Domain \\u0027%s\\u0027 is in blocked "
			 "list','code':'DOMAIN_BLOCKED','details':{'uri':'%s',"
			 "'domain':'%s'}}}",
			 blocked[i][1], blocked[i][0], blocked[i][1]);
		want(&g, w);
	}
	call(&g, RES_PRE, "{'uri':'https://notevil.com/','metadata':{}}", NULL,
	     NULL);
	want_key(&g, "metadata", "{'validation':'passed'}");
	call(&g, RES_PRE, "{'uri':'https://evil.com.example.org/'}", NULL,
	     NULL);
	want_key(&g, "metadata", "{'validation':'passed'}");
	stop(&g);
}
END_TEST

START_TEST(resource_checks_uri_and_protocol)
{
	struct ag g;

	start(&g, "resource_filter", RF_CFG);
	call(&g, RES_PRE, "{'uri':'ftp://files.example.com/a'}", NULL, NULL);
	want(&g, "{'violation':{'reason':'Protocol not allowed','description':"
		 "'Protocol \\u0027ftp\\u0027 is not in allowed list','code':"
		 "'PROTOCOL_BLOCKED','details':{'uri':'ftp://files.example.com/"
		 "a','protocol':'ftp','allowed':['file','http','https']}}}");
	call(&g, RES_PRE, "{'uri':'just-a-name'}", NULL, NULL);
	want(&g, "{'violation':{'reason':'Invalid URI format','description':"
		 "'URI must have a valid scheme (protocol)','code':"
		 "'INVALID_URI','details':{'uri':'just-a-name'}}}");
	call(&g, RES_PRE, "{'uri':'http://[::1/x'}", NULL, NULL);
	want(&g,
	     "{'violation':{'reason':'Invalid URI','description':'Could not "
	     "parse resource URI: Invalid IPv6 URL','code':'INVALID_URI',"
	     "'details':{'uri':'http://[::1/x','error':'Invalid IPv6 URL'}}"
	     "}");
	call(&g, RES_PRE,
	     "{'uri':'HTTPS://ok.example.com/a','metadata':{'a':1}}",
	     "{'request_id':'r1','user':'alice'}", NULL);
	want(&g,
	     "{'modified_payload':{'uri':'HTTPS://ok.example.com/a',"
	     "'metadata':{'a':1,'validated':true,'protocol':'https',"
	     "'request_id':'r1','user':'alice','resource_filter_plugin':"
	     "'pre_fetch_validated','allowed_size':40}},'state':{"
	     "'uri_validated':true,'original_uri':'HTTPS://ok.example.com/a'"
	     "},'metadata':{'validation':'passed'}}");
	/* keys already in the metadata are overwritten in place (dict.update) */
	call(&g, RES_PRE,
	     "{'uri':'https://ok.example.com/a','metadata':{'validated':false,"
	     "'a':1}}",
	     "{'request_id':'r1','user':'alice'}", NULL);
	want_key(&g, "modified_payload",
		 "{'uri':'https://ok.example.com/a','metadata':{'validated':"
		 "true,'a':1,'protocol':'https','request_id':'r1','user':"
		 "'alice','resource_filter_plugin':'pre_fetch_validated',"
		 "'allowed_size':40}}");
	/* tabs and newlines are removed before parsing, as Python's urlsplit */
	call(&g, RES_PRE, "{'uri':'https://ev\\til.com/x'}", NULL, NULL);
	ck_assert_str_eq(got_str(&g, "violation.code"), "DOMAIN_BLOCKED");
	call(&g, RES_PRE, "{'uri':'ht\\ntps://ok.example.com/'}", NULL, NULL);
	ck_assert_str_eq(got_str(&g, "modified_payload.metadata.protocol"),
			 "https");
	/* tool_post_invoke: served, passes through */
	call(&g, TOOL_POST, "{'name':'t','result':'x'}", NULL, NULL);
	want(&g, "{}");
	ck_assert_uint_eq(g.flags, 0);
	stop(&g);
}
END_TEST

START_TEST(resource_filters_content_after_a_validated_fetch)
{
	struct ag g;
	const char *st = "{'state':{'uri_validated':true,'original_uri':"
			 "'file:///a.txt'},'metadata':{}}";

	start(&g, "resource_filter", RF_CFG);
	/* not validated in pre-fetch: untouched */
	call(&g, RES_POST,
	     "{'uri':'file:///a.txt','content':{'type':'text','text':'the "
	     "secret'}}",
	     NULL, NULL);
	want(&g, "{}");
	call(&g, RES_POST,
	     "{'uri':'file:///a.txt','content':{'type':'text','uri':"
	     "'file:///a.txt','text':'the SECRET pass'}}",
	     NULL, st);
	want(&g,
	     "{'modified_payload':{'uri':'file:///a.txt','content':{"
	     "'type':'text','uri':'file:///a.txt','text':'the [hidden] a'}},"
	     "'state':{'uri_validated':true,'original_uri':'file:///a.txt',"
	     "'content_filtered':true},'metadata':{'filtered':true,"
	     "'original_uri':'file:///a.txt'}}");
	call(&g, RES_POST,
	     "{'uri':'file:///a.txt','content':{'type':'text','text':'clean'}}",
	     NULL, st);
	want(&g, "{'metadata':{'filtered':false,'original_uri':'file:///a.txt'"
		 "}}");
	call(&g, RES_POST,
	     "{'uri':'file:///a.txt','content':{'type':'text','text':"
	     "'0123456789012345678901234567890123456789x'}}",
	     NULL, st);
	want(&g, "{'violation':{'reason':'Content exceeds maximum size',"
		 "'description':'Resource content exceeds maximum size of 40 "
		 "bytes','code':'CONTENT_TOO_LARGE','details':{'uri':"
		 "'file:///a.txt','size':41,'max_size':40}}}");
	stop(&g);
}
END_TEST

START_TEST(resource_rejects_bad_config)
{
	want_bad_config("resource_filter",
			"{'content_filters':[{'pattern':'('}]}",
			"content_filters[0].pattern: bad regex '('");
	want_bad_config("resource_filter", "{'content_filters':[{}]}",
			"content_filters[0].pattern: required");
	want_bad_config("resource_filter", "{'blocked_domains':'evil.com'}",
			"blocked_domains: expected a list of strings");
	want_bad_config("resource_filter", "{'max_content_size':'big'}",
			"max_content_size: expected an integer, got 'big'");
}
END_TEST

/* ---------------------------------------------------------------- headers */

#define HI_CFG                                                                 \
	"{'headers':{'X-Api-Key':'k1','X-Env':'prod'},"                        \
	"'uri_prefixes':['https://api.example.com']}"

START_TEST(headers_are_merged_for_matching_uris)
{
	struct ag g;

	start(&g, "header_injector", HI_CFG);
	call(&g, RES_PRE,
	     "{'uri':'https://api.example.com/v1/data','metadata':{'trace':1,"
	     "'headers':{'X-Env':'dev','Accept':'json'}}}",
	     NULL, NULL);
	want(&g,
	     "{'modified_payload':{'uri':'https://api.example.com/v1/data',"
	     "'metadata':{'trace':1,'headers':{'X-Env':'prod','Accept':"
	     "'json','X-Api-Key':'k1'}}},'metadata':{'headers_injected':true,"
	     "'count':2}}");
	/* host names compare case-insensitively; any port */
	call(&g, RES_PRE, "{'uri':'https://API.example.com.:8443/x'}", NULL,
	     NULL);
	want(&g, "{'modified_payload':{'uri':'https://API.example.com.:8443/x',"
		 "'metadata':{'headers':{'X-Api-Key':'k1','X-Env':'prod'}}},"
		 "'metadata':{'headers_injected':true,'count':2}}");
	/* headers that are not a map are replaced (the original raised
	 * TypeError on {**existing, **configured}) */
	call(&g, RES_PRE,
	     "{'uri':'https://api.example.com/v1','metadata':{'headers':'x'}}",
	     NULL, NULL);
	want(&g, "{'modified_payload':{'uri':'https://api.example.com/v1',"
		 "'metadata':{'headers':{'X-Api-Key':'k1','X-Env':'prod'}}},"
		 "'metadata':{'headers_injected':true,'count':2}}");
	stop(&g);
}
END_TEST

START_TEST(headers_prefix_cannot_extend_into_another_host)
{
	static const char *const other[] = {
		"https://api.example.com.evil.net/x", /* the original matched */
		"https://api.example.com@evil.net/",  /* the original matched */
		"https://api.example.community/",     /* the original matched */
		"http://api.example.com/",
		"https://example.com/",
	};
	struct ag g;
	char p[256];

	start(&g, "header_injector", HI_CFG);
	for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
		snprintf(p, sizeof(p), "{'uri':'%s','metadata':{}}", other[i]);
		call(&g, RES_PRE, p, NULL, NULL);
		want(&g, "{}");
	}
	stop(&g);
	/* a path prefix; no prefixes at all means every URI */
	start(&g, "header_injector",
	      "{'headers':{'A':'1'},'uri_prefixes':['https://h.io/v1/']}");
	call(&g, RES_PRE, "{'uri':'https://h.io/v2/x'}", NULL, NULL);
	want(&g, "{}");
	call(&g, RES_PRE, "{'uri':'https://h.io/v1/x'}", NULL, NULL);
	want_key(&g, "metadata", "{'headers_injected':true,'count':1}");
	stop(&g);
	start(&g, "header_injector", "{'headers':{'A':'1'}}");
	call(&g, RES_PRE, "{'uri':'file:///etc/x'}", NULL, NULL);
	want_key(&g, "modified_payload",
		 "{'uri':'file:///etc/x','metadata':{'headers':{'A':'1'}}}");
	stop(&g);
}
END_TEST

START_TEST(headers_reject_bad_config)
{
	want_bad_config("header_injector", "{'headers':{'X-Version':2}}",
			"headers.X-Version: expected a string, got an integer");
	want_bad_config(
		"header_injector", "{'uri_prefixes':['api.example.com']}",
		"uri_prefixes[0]: 'api.example.com' is not a URL prefix");
	want_bad_config("header_injector", "{'headers':['X-A']}",
			"headers: expected a map, got a list");
}
END_TEST

/* ---------------------------------------------------------------- schema */

#define SG_SCHEMAS                                                             \
	"'arg_schemas':{'search':{'type':'object','required':['q'],"           \
	"'properties':{'q':{'type':'string'},'limit':{'type':'integer'},"      \
	"'score':{'type':'number'},'tags':{'type':'array','items':{'type':"    \
	"'string'}}}}},'result_schemas':{'search':{'type':'object',"           \
	"'required':['content'],'properties':{'isError':{'type':'boolean'}}}}"

START_TEST(schema_reports_type_errors)
{
	struct ag g;

	start(&g, "schema_guard", "{" SG_SCHEMAS "}");
	call(&g, TOOL_PRE,
	     "{'name':'search','args':{'q':'x','limit':3,'score':1.5,"
	     "'tags':['a']}}",
	     NULL, NULL);
	want(&g, "{'metadata':{'schema_errors':[]}}");
	call(&g, TOOL_PRE,
	     "{'name':'search','args':{'limit':'3','tags':['a',2],'score':'hi'}"
	     "}",
	     NULL, NULL);
	want(&g, "{'violation':{'reason':'Schema validation failed',"
		 "'description':'Arguments do not conform to schema','code':"
		 "'SCHEMA_GUARD_ARGS','details':{'errors':['Missing required "
		 "property: q','limit: Type mismatch: expected integer',"
		 "'score: Type mismatch: expected number','tags: [1]: Type "
		 "mismatch: expected string']}}}");
	/* no args at all: validated as {} */
	call(&g, TOOL_PRE, "{'name':'search'}", NULL, NULL);
	want_key(&g, "violation",
		 "{'reason':'Schema validation failed','description':"
		 "'Arguments do not conform to schema','code':"
		 "'SCHEMA_GUARD_ARGS','details':{'errors':['Missing required "
		 "property: q']}}");
	/* kept from the original: a boolean is a number (Python's bool) */
	call(&g, TOOL_PRE, "{'name':'search','args':{'q':'x','score':true}}",
	     NULL, NULL);
	want(&g, "{'metadata':{'schema_errors':[]}}");
	/* a tool without a schema is not looked at */
	call(&g, TOOL_PRE, "{'name':'other','args':{'q':1}}", NULL, NULL);
	want(&g, "{}");
	/* the result schema sees the MCP result as it is */
	call(&g, TOOL_POST,
	     "{'name':'search','result':{'content':[],'isError':false}}", NULL,
	     NULL);
	want(&g, "{'metadata':{'schema_errors':[]}}");
	call(&g, TOOL_POST, "{'name':'search','result':'plain text'}", NULL,
	     NULL);
	want(&g, "{'violation':{'reason':'Schema validation failed',"
		 "'description':'Result does not conform to schema','code':"
		 "'SCHEMA_GUARD_RESULT','details':{'errors':['Type mismatch: "
		 "expected object']}}}");
	stop(&g);
}
END_TEST

START_TEST(schema_annotates_without_blocking)
{
	struct ag g;

	start(&g, "schema_guard",
	      "{" SG_SCHEMAS ",'block_on_violation':false}");
	call(&g, TOOL_PRE, "{'name':'search','args':{'q':5}}", NULL, NULL);
	want(&g, "{'metadata':{'schema_errors':['q: Type mismatch: expected "
		 "string']}}");
	call(&g, TOOL_POST, "{'name':'search','result':{'isError':'no'}}", NULL,
	     NULL);
	want(&g, "{'metadata':{'schema_errors':['Missing required property: "
		 "content','isError: Type mismatch: expected boolean']}}");
	stop(&g);
}
END_TEST

START_TEST(schema_rejects_bad_config)
{
	want_bad_config("schema_guard",
			"{'arg_schemas':{'s':{'type':'object','properties':{"
			"'n':{'type':'int'}}}}}",
			"arg_schemas.s.properties.n.type: expected one of "
			"object, string");
	want_bad_config("schema_guard", "{'arg_schemas':{'s':[]}}",
			"arg_schemas.s: expected a schema map, got a list");
	want_bad_config(
		"schema_guard", "{'result_schemas':{'s':{'required':'q'}}}",
		"result_schemas.s.required: expected a list of property "
		"names");
	want_bad_config("schema_guard", "{'block_on_violation':'sometimes'}",
			"block_on_violation: expected a boolean");
}
END_TEST

/* ---------------------------------------------------------------- suite */

static Suite *agents_suite(void)
{
	const struct {
		const char *name;
		const TTest *t[12];
	} cases[] = {
		{"minimal", {minimal_blocks_its_tool_and_tags_others}},
		{"deny_filter",
		 {deny_blocks_prompt_with_a_deny_word,
		  deny_words_are_case_sensitive, deny_rejects_bad_config}},
		{"regex_filter",
		 {regex_rules_chain_in_order,
		  regex_looks_where_the_original_looked,
		  regex_uses_python_syntax, regex_rejects_bad_config}},
		{"pii_filter",
		 {pii_overlaps_across_types_do_not_corrupt_the_text,
		  pii_partial_masks_and_strategies,
		  pii_whitelist_and_detector_switches,
		  pii_blocks_with_the_original_codes,
		  pii_scans_lists_mcp_results_and_messages,
		  pii_keeps_local_metadata_from_pre_to_post,
		  pii_fast_paths_match_plain_searches, pii_rejects_bad_config}},
		{"output_length_guard",
		 {length_truncates_over_max, length_under_min_is_left_untouched,
		  length_blocks_out_of_bounds, length_rejects_bad_config}},
		{"rate_limiter",
		 {rate_counts_user_tenant_and_tool,
		  rate_prompt_checks_user_then_tenant, rate_fixed_window_resets,
		  rate_zero_blocks_everything,
		  rate_sliding_window_and_token_bucket,
		  rate_no_headers_without_a_limit,
		  rate_rejects_bad_rates_at_startup}},
		{"resource_filter",
		 {resource_blocks_domains_subdomains_and_ports,
		  resource_checks_uri_and_protocol,
		  resource_filters_content_after_a_validated_fetch,
		  resource_rejects_bad_config}},
		{"header_injector",
		 {headers_are_merged_for_matching_uris,
		  headers_prefix_cannot_extend_into_another_host,
		  headers_reject_bad_config}},
		{"schema_guard",
		 {schema_reports_type_errors, schema_annotates_without_blocking,
		  schema_rejects_bad_config}},
	};
	Suite *s = suite_create("agents");

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		TCase *tc = tcase_create(cases[i].name);

		tcase_set_timeout(tc, 60);
		for (int k = 0; k < 12 && cases[i].t[k]; k++)
			tcase_add_test(tc, cases[i].t[k]);
		suite_add_tcase(s, tc);
	}
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(agents_suite());
	int nf;

	signal(SIGPIPE, SIG_IGN);
	srunner_run_all(sr, CK_NORMAL);
	nf = srunner_ntests_failed(sr);
	srunner_free(sr);
	return nf ? 1 : 0;
}
