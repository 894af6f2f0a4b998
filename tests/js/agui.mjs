// A CopilotKit-style client of Lunark's AG-UI endpoint, written with the official @ag-ui/client
// HttpAgent: one agent per thread, driven by JSON commands on stdin, one JSON answer per line.
//
//   node tests/js/agui.mjs <server-url> <token> [thread-id]
//   {"op": "say", "text": "send 0.25 ETH to 0x..."}     -> a run with a new user message
//   {"op": "resume", "resume": [{interruptId, status, payload}]}
//   {"op": "raw", "input": {...}}                       -> agent.run(input): no client-side checks
//
// Each answer: {events: [...], error?, status?, result, messages, pendingInterrupts}.
import { HttpAgent } from "@ag-ui/client";
import { createInterface } from "node:readline";

const [url, token, threadId] = process.argv.slice(2);
if (!url || !token) {
  console.error("usage: node agui.mjs <server-url> <token> [thread-id]");
  process.exit(64);
}

const agent = new HttpAgent({
  url: `${url}/ag-ui`,
  headers: { Authorization: `Bearer ${token}` },
  ...(threadId ? { threadId } : {}),
});

let counter = 0;

async function run(parameters) {
  const events = [];
  const answer = { threadId: agent.threadId };
  try {
    const { result } = await agent.runAgent(parameters, {
      onEvent: ({ event }) => {
        events.push(event);
      },
    });
    answer.result = result ?? null;
  } catch (error) {
    answer.error = String(error?.message ?? error);
    if (error?.status !== undefined) answer.status = error.status;
    if (error?.payload !== undefined) answer.payload = error.payload;
  }
  answer.events = events;
  answer.messages = agent.messages;
  answer.pendingInterrupts = agent.pendingInterrupts ?? [];
  return answer;
}

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  const command = JSON.parse(line);
  let answer;
  if (command.op === "say") {
    counter += 1;
    agent.addMessage({ id: `user-${Date.now()}-${counter}`, role: "user", content: command.text });
    answer = await run({});
  } else if (command.op === "resume") {
    answer = await run({ resume: command.resume });
  } else if (command.op === "raw") {
    // Straight to the transport, as a second tab or a stale client would send it.
    const events = [];
    answer = {};
    try {
      await new Promise((resolve, reject) =>
        agent.run({ threadId: agent.threadId, runId: `raw-${Date.now()}`, messages: [], ...command.input })
          .subscribe({ next: (e) => events.push(e), error: reject, complete: resolve }),
      );
    } catch (error) {
      answer.error = String(error?.message ?? error);
      if (error?.status !== undefined) answer.status = error.status;
      if (error?.payload !== undefined) answer.payload = error.payload;
    }
    answer.events = events;
  } else {
    answer = { error: `unknown op ${command.op}` };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
}
