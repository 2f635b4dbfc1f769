// The official MCP TypeScript SDK (@modelcontextprotocol/sdk, pinned in package.json) as a
// client of longhaul's /mcp. It speaks 2025-11-25 (initialize) and carries its own task
// client (client.experimental.tasks): it decides from the server's capabilities and each
// tool's execution.taskSupport whether to run a call as a task, then polls tasks/get at the
// server's pollInterval and fetches tasks/result. tests/mcp.rs runs it.
//
//   node tests/mcp/client.mjs URL TOKEN tools | run NAME ARGS | cancel NAME ARGS | call NAME ARGS
//
// Prints one JSON document: the negotiated version, and what the SDK yielded.

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, token, command, name, args = "{}"] = process.argv.slice(2);
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
const client = new Client({ name: "longhaul-tests-ts", version: "1" });
const out = {};

function error(e) {
  return { code: e?.code ?? null, message: String(e?.message ?? e) };
}

try {
  await client.connect(transport);
  out.protocolVersion = transport.protocolVersion ?? null;
  out.sessionId = transport.sessionId ?? null;
  // The tool list tells the SDK which tools run as tasks.
  const tools = await client.listTools();
  if (command === "tools") {
    out.tools = tools.tools;
  } else if (command === "run") {
    out.messages = [];
    for await (const m of client.experimental.tasks.callToolStream({ name, arguments: JSON.parse(args) })) {
      out.messages.push(m.type === "error" ? { type: "error", error: error(m.error) } : m);
    }
  } else if (command === "cancel") {
    const stream = client.experimental.tasks.callToolStream({ name, arguments: JSON.parse(args) });
    const first = await stream.next();
    out.created = first.value;
    await stream.return();
    const taskId = first.value?.task?.taskId;
    out.cancelled = await client.experimental.tasks.cancelTask(taskId);
    out.task = await client.experimental.tasks.getTask(taskId);
    try {
      await client.experimental.tasks.cancelTask(taskId);
    } catch (e) {
      out.cancelAgain = error(e);
    }
  } else if (command === "call") {
    out.result = await client.callTool({ name, arguments: JSON.parse(args) });
  } else {
    throw new Error(`unknown command ${command}`);
  }
} catch (e) {
  out.error = error(e);
} finally {
  await client.close().catch(() => {});
}
console.log(JSON.stringify(out));
