// SPDX-License-Identifier: MIT
/*
 * agent-mcp_echo: a tiny MCP server on stdio for the proxy's tests and
 * benchmark (it is not a pbus agent; it lives here to be built like one).
 * Newline-delimited JSON-RPC 2.0 on stdin/stdout:
 *
 *   initialize        serverInfo {name: "mcp_echo"}, tools/prompts/resources
 *   ping              {}
 *   tools/list        echo, ask, exit (any other name echoes too)
 *   tools/call NAME   (any name but those below) {content: [{type: text, text:
 * <arguments as JSON>}], structuredContent: <arguments>, isError: false}
 *   tools/call ask    sends the client a request (id "srv-N", method
 *                     sampling/createMessage), waits for its answer and
 *                     returns that answer's result as structuredContent
 *   tools/call exit   exits at once with arguments.code
 *   tools/call nosuch error -32602 "unknown tool"
 *   prompts/get       {messages: [{role: user, content: {type: text,
 *                     text: <arguments as JSON>}}]}
 *   resources/read    {contents: [{uri, mimeType: text/plain,
 *                     text: "content of <uri>"}]}
 *   anything else     error -32601, unless a notification
 *   a notification    answered by the notification
 *                     notifications/message {level: info, data: {seen: M}}
 *   a batch           an array of the answers
 *
 * With --log FILE every line received is appended to FILE. Exits 0 at
 * EOF on stdin.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static FILE *logf_;
static unsigned long srv_seq;

static void send_json(json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT);

	fprintf(stdout, "%s\n", s);
	fflush(stdout);
	free(s);
}

static json_t *text_content(const json_t *args)
{
	char *s = json_dumps(args ? args : json_object(),
			     JSON_COMPACT | JSON_SORT_KEYS);
	json_t *c = json_pack("{s:s,s:s}", "type", "text", "text", s);

	free(s);
	return c;
}

static json_t *response(json_t *id, json_t *result)
{
	return json_pack("{s:s,s:O,s:o}", "jsonrpc", "2.0", "id", id, "result",
			 result);
}

/* Wait for the client's answer to our request @sid (other lines are
 * handled as usual). */
static json_t *await_answer(const char *sid);
static json_t *handle(json_t *msg);

static json_t *tool_call(json_t *id, json_t *params)
{
	const char *name = json_string_value(json_object_get(params, "name"));
	json_t *args = json_object_get(params, "arguments");

	if (!name)
		name = "";
	if (!strcmp(name, "exit"))
		exit((int)json_integer_value(json_object_get(args, "code")));
	if (!strcmp(name, "ask")) {
		char sid[32];
		json_t *ans;

		snprintf(sid, sizeof(sid), "srv-%lu", ++srv_seq);
		ans = json_pack("{s:s,s:s,s:s,s:{s:[{s:s,s:{s:s,s:s}}],s:i}}",
				"jsonrpc", "2.0", "id", sid, "method",
				"sampling/createMessage", "params", "messages",
				"role", "user", "content", "type", "text",
				"text", "hi", "maxTokens", 10);
		send_json(ans);
		json_decref(ans);
		ans = await_answer(sid);
		return response(id, json_pack("{s:[],s:o,s:b}", "content",
					      "structuredContent",
					      ans ? ans : json_null(),
					      "isError", 0));
	}
	if (!strcmp(name, "nosuch"))
		return json_pack("{s:s,s:O,s:{s:i,s:s}}", "jsonrpc", "2.0",
				 "id", id, "error", "code", -32602, "message",
				 "unknown tool");
	return response(id,
			json_pack("{s:[o],s:O,s:b}", "content",
				  text_content(args), "structuredContent",
				  args ? args : json_object(), "isError", 0));
}

static json_t *handle(json_t *msg)
{
	const char *method = json_string_value(json_object_get(msg, "method"));
	json_t *id = json_object_get(msg, "id");
	json_t *params = json_object_get(msg, "params");

	if (!method)
		return NULL; /* a stray answer */
	if (!id) {
		send_json(json_pack("{s:s,s:s,s:{s:s,s:{s:s}}}", "jsonrpc",
				    "2.0", "method", "notifications/message",
				    "params", "level", "info", "data", "seen",
				    method));
		return NULL;
	}
	if (!strcmp(method, "initialize"))
		return response(
			id, json_pack("{s:s,s:{s:{},s:{},s:{}},s:{s:s,s:s}}",
				      "protocolVersion", "2025-06-18",
				      "capabilities", "tools", "prompts",
				      "resources", "serverInfo", "name",
				      "mcp_echo", "version", "1.0"));
	if (!strcmp(method, "ping"))
		return response(id, json_object());
	if (!strcmp(method, "tools/list"))
		return response(
			id, json_pack("{s:[{s:s,s:{s:s}},{s:s,s:{s:s}},{s:s,"
				      "s:{s:s}}]}",
				      "tools", "name", "echo", "inputSchema",
				      "type", "object", "name", "ask",
				      "inputSchema", "type", "object", "name",
				      "exit", "inputSchema", "type", "object"));
	if (!strcmp(method, "tools/call"))
		return tool_call(id, params);
	if (!strcmp(method, "prompts/get"))
		return response(id, json_pack("{s:[{s:s,s:o}]}", "messages",
					      "role", "user", "content",
					      text_content(json_object_get(
						      params, "arguments"))));
	if (!strcmp(method, "resources/read")) {
		const char *uri =
			json_string_value(json_object_get(params, "uri"));
		char text[1024];

		snprintf(text, sizeof(text), "content of %s", uri ? uri : "");
		return response(id, json_pack("{s:[{s:s,s:s,s:s}]}", "contents",
					      "uri", uri ? uri : "", "mimeType",
					      "text/plain", "text", text));
	}
	return json_pack("{s:s,s:O,s:{s:i,s:s}}", "jsonrpc", "2.0", "id", id,
			 "error", "code", -32601, "message",
			 "method not found");
}

static json_t *read_msg(void)
{
	static char *line;
	static size_t cap;
	ssize_t n = getline(&line, &cap, stdin);

	if (n < 0)
		return NULL;
	if (logf_) {
		fputs(line, logf_);
		fflush(logf_);
	}
	return json_loadb(line, (size_t)n, 0, NULL) ?: json_null();
}

static void serve(json_t *msg)
{
	json_t *r;

	if (json_is_array(msg)) {
		json_t *out = json_array();

		for (size_t i = 0; i < json_array_size(msg); i++)
			if ((r = handle(json_array_get(msg, i))))
				json_array_append_new(out, r);
		if (json_array_size(out))
			send_json(out);
		json_decref(out);
		return;
	}
	if (!json_is_object(msg)) {
		send_json(json_pack("{s:s,s:n,s:{s:i,s:s}}", "jsonrpc", "2.0",
				    "id", "error", "code", -32700, "message",
				    "parse error"));
		return;
	}
	if ((r = handle(msg))) {
		send_json(r);
		json_decref(r);
	}
}

static json_t *await_answer(const char *sid)
{
	json_t *msg;

	while ((msg = read_msg())) {
		const char *id = json_string_value(json_object_get(msg, "id"));

		if (id && !strcmp(id, sid) && !json_object_get(msg, "method")) {
			json_t *res =
				json_incref(json_object_get(msg, "result"));

			json_decref(msg);
			return res;
		}
		serve(msg);
		json_decref(msg);
	}
	exit(0);
}

int main(int argc, char **argv)
{
	json_t *msg;

	if (argc == 3 && !strcmp(argv[1], "--log"))
		logf_ = fopen(argv[2], "a");
	while ((msg = read_msg())) {
		serve(msg);
		json_decref(msg);
	}
	return 0;
}
