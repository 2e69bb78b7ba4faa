// SPDX-License-Identifier: MIT
//
// The MCP client of the end-to-end test (tests/test_e2e.c): the official
// TypeScript SDK over stdio, against whatever command follows "--" (the
// reference "everything" server, directly or behind `pbus proxy`). It does
// what a real client does -- initialize, list, call tools, read a resource,
// ping -- and prints one JSON line of what it saw, so the C test can compare
// the two runs. A call that fails is recorded as {error: {code, message,
// data}}; nothing here decides pass or fail.
//
//   node client.mjs -- node server-everything/dist/index.js stdio
//   node client.mjs -- pbus proxy -c plugins.yaml -- node ... stdio

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

const sep = process.argv.indexOf("--");
if (sep < 0 || sep + 1 >= process.argv.length) {
	console.error("usage: node client.mjs -- SERVER_CMD [ARGS...]");
	process.exit(2);
}
const [command, ...args] = process.argv.slice(sep + 1);

// The text of a tool result, or the error the call raised.
async function attempt(fn) {
	try {
		const r = await fn();
		const texts = (r.content ?? [])
			.filter((c) => c.type === "text")
			.map((c) => c.text);
		return { ok: texts.join("\n"), isError: r.isError === true };
	} catch (e) {
		return {
			error: { code: e.code ?? null, message: e.message, data: e.data ?? null },
		};
	}
}

const transport = new StdioClientTransport({ command, args, stderr: "inherit" });
const client = new Client({ name: "pbus-e2e", version: "1.0.0" });
const out = {};

await client.connect(transport);
out.server = client.getServerVersion()?.name ?? null;
out.tools = (await client.listTools()).tools.map((t) => t.name).sort();
out.prompts = (await client.listPrompts()).prompts.map((p) => p.name).sort();

// PII in the arguments: with pii_filter in front, the server must only ever
// see the masked value, and `echo` returns what the server saw.
out.echo = await attempt(() =>
	client.callTool({
		name: "echo",
		arguments: { message: "Reach me at alice@example.com, SSN 123-45-6789" },
	}),
);
// A tool the policy forbids (a custom MCP error code).
out.logging = await attempt(() =>
	client.callTool({ name: "toggle-simulated-logging", arguments: {} }),
);
// A tool a sample agent blocks by name (the default code, -32603).
out.env = await attempt(() => client.callTool({ name: "get-env", arguments: {} }));
// Arguments of the wrong type, then the right ones.
out.bad_sum = await attempt(() =>
	client.callTool({ name: "get-sum", arguments: { a: "one", b: 2 } }),
);
out.sum = await attempt(() =>
	client.callTool({ name: "get-sum", arguments: { a: 1, b: 2 } }),
);
// A resource, read through resource_pre_fetch / resource_post_fetch.
try {
	const r = await client.readResource({
		uri: "demo://resource/static/document/architecture.md",
	});
	out.resource = { ok: r.contents[0].text.slice(0, 120), uri: r.contents[0].uri };
} catch (e) {
	out.resource = { error: { code: e.code ?? null, message: e.message } };
}
await client.ping();
out.ping = true;
console.log(JSON.stringify(out));
await client.close();
