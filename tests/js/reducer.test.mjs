// The chat reducer: pure, in order, exactly once. Run: node --test tests/js/
import assert from "node:assert/strict";
import { test } from "node:test";

import { decisionFor, initialState, pendingApproval, reduce, reduceAll } from "../../lunark/web/lib/reducer.js";

const CHAT = "chat_1";
const ALICE = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
const BOB = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
const NETWORK = {
  chain_id: 31337, name: "anvil", display_name: "Anvil (local)", symbol: "ETH", decimals: 18,
  rpc_urls: ["http://127.0.0.1:8545"], explorer_url: null,
};
const TX = {
  chain_id: "0x7a69", from: ALICE, to: BOB, value: "0x3782dace9d90000", data: "0x", gas: "0x5208",
  max_fee_per_gas: "0x77359400", max_priority_fee_per_gas: "0x3b9aca00", nonce: "0x0",
};

/** Events of one chat, numbered from `from`. */
function numbered(events, from = 1) {
  return events.map((e, i) => ({ chat_id: CHAT, seq: from + i, ts: 1767225600 + i, ...e }));
}

function deepFreeze(value) {
  if (value && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

const balanceTurn = numbered([
  { type: "message_start", message_id: "u1", role: "user", content: "what's my balance" },
  { type: "message_start", message_id: "a1", role: "assistant" },
  { type: "status", text: "thinking…" },
  { type: "tool_call", message_id: "a1", call_id: "c1", name: "get_balance", args: {}, status: "running" },
  { type: "tool_result", call_id: "c1", status: "success", result: { amount: "10000", symbol: "ETH" } },
  { type: "token", message_id: "a1", text: "You have" },
  { type: "token", message_id: "a1", text: " **10,000 ETH**." },
  { type: "message_end", message_id: "a1", finish_reason: "stop", usage: { output_tokens: 4 } },
]);

const transferTurn = numbered([
  { type: "message_start", message_id: "u2", role: "user", content: `send 0.25 ETH to ${BOB}` },
  { type: "message_start", message_id: "a2", role: "assistant" },
  { type: "tool_call", message_id: "a2", call_id: "c2", name: "transfer", args: { to: BOB, amount: "0.25" }, status: "awaiting_approval" },
  {
    type: "pending_approval", approval_id: "apr_1", expires_at: "2030-01-01T00:00:00Z",
    action_requests: [{ call_id: "c2", name: "transfer", args: { to: BOB, amount: "0.25" }, description: "", summary: "Send 0.25 ETH", tx: TX }],
    review_configs: [{ action_name: "transfer", allowed_decisions: ["approve", "edit", "reject"] }],
  },
  { type: "message_end", message_id: "a2", finish_reason: "awaiting_approval", usage: { output_tokens: 0 } },
  { type: "message_start", message_id: "a3", role: "assistant" },
  { type: "approval_resolved", approval_id: "apr_1", decisions: [{ type: "approve", tx_hash: "0x" + "ab".repeat(32) }], by: "user" },
  { type: "tool_call", message_id: "a3", call_id: "c2", name: "transfer", args: { to: BOB, amount: "0.25" }, status: "running" },
  { type: "tx_update", call_id: "c2", tx_hash: "0x" + "ab".repeat(32), chain_id: 31337, status: "submitted", confirmations: 0 },
  { type: "tx_update", call_id: "c2", tx_hash: "0x" + "ab".repeat(32), chain_id: 31337, status: "mined", confirmations: 1, block_number: 7 },
  { type: "tx_update", call_id: "c2", tx_hash: "0x" + "ab".repeat(32), chain_id: 31337, status: "confirmed", confirmations: 1, block_number: 7, explorer_url: "https://explorer.example/tx/0xab" },
  { type: "tool_result", call_id: "c2", status: "success", result: { status: "confirmed" } },
  { type: "token", message_id: "a3", text: "Sent." },
  { type: "message_end", message_id: "a3", finish_reason: "stop", usage: { output_tokens: 1 } },
], balanceTurn.length + 1);

test("a balance turn: messages, streaming text, a tool card, status", () => {
  let state = reduce(initialState(), { type: "local:joined", ack: { chat_id: CHAT, last_seq: 0, network: NETWORK } });
  assert.equal(state.chatId, CHAT);
  assert.deepEqual(state.network, NETWORK);
  assert.deepEqual(state.networks, { 31337: NETWORK });

  state = reduceAll(state, balanceTurn.slice(0, 5));
  assert.equal(state.running, true);
  assert.equal(state.status, "thinking…");
  state = reduce(state, balanceTurn[5]);
  assert.equal(state.status, "", "the status line shows only while nothing else streams");
  assert.equal(state.messages.a1.streaming, true);
  assert.equal(state.messages.a1.text, "You have");
  assert.equal(state.tools.c1.status, "success");

  state = reduceAll(state, balanceTurn.slice(6));
  // The call came before any text of a1: its card goes above the answer.
  assert.deepEqual(state.items, [
    { kind: "message", id: "u1" }, { kind: "tool", id: "c1" }, { kind: "message", id: "a1" },
  ]);
  assert.equal(state.messages.u1.text, "what's my balance");
  assert.equal(state.messages.a1.text, "You have **10,000 ETH**.");
  assert.equal(state.messages.a1.streaming, false);
  assert.equal(state.messages.a1.finishReason, "stop");
  assert.equal(state.running, false);
  assert.equal(state.status, "");
  assert.equal(state.lastSeq, balanceTurn.length);
});

test("an answer cut at the output limit is continued into the same message; its parts' usage adds up", () => {
  const cut = numbered([
    { type: "message_start", message_id: "u1", role: "user", content: "explain" },
    { type: "message_start", message_id: "a1", role: "assistant" },
    { type: "status", text: "thinking…" },
    { type: "token", message_id: "a1", text: "Gas is" },
    { type: "message_end", message_id: "a1", finish_reason: "length", usage: { output_tokens: 2, ttft_ms: 40, tokens_per_s: 20 } },
  ]);
  let state = reduceAll(initialState(CHAT), cut);
  assert.equal(state.messages.a1.finishReason, "length");
  assert.equal(state.running, false);

  state = reduce(state, { type: "local:continue", message_id: "a1" });
  assert.equal(state.messages.a1.streaming, true);
  assert.equal(state.messages.a1.finishReason, null);
  assert.equal(state.running, true);
  assert.equal(state.status, "thinking…");
  // Refused (a busy chat, say): the message is cut again, and can be continued again.
  const refused = reduce(state, { type: "local:continue_failed", message_id: "a1" });
  assert.equal(refused.messages.a1.finishReason, "length");
  assert.equal(refused.running, false);

  state = reduceAll(state, numbered([
    { type: "status", text: "thinking…" },
    { type: "token", message_id: "a1", text: " the fee." },
    { type: "message_end", message_id: "a1", finish_reason: "stop", usage: { output_tokens: 2, ttft_ms: 30, tokens_per_s: 40 } },
  ], cut.length + 1));
  assert.deepEqual(state.items, [{ kind: "message", id: "u1" }, { kind: "message", id: "a1" }], "no second message");
  assert.equal(state.messages.a1.text, "Gas is the fee.");
  assert.equal(state.messages.a1.finishReason, "stop");
  assert.deepEqual(state.messages.a1.parts.map((u) => u.output_tokens), [2, 2]);
  assert.equal(state.messages.a1.usage.tokens_per_s, 40);
  // A continuation that a replay delivers (no local action) reads the same.
  assert.deepEqual(reduceAll(initialState(CHAT), [...cut, ...numbered([
    { type: "status", text: "thinking…" },
    { type: "token", message_id: "a1", text: " the fee." },
    { type: "message_end", message_id: "a1", finish_reason: "stop", usage: { output_tokens: 2, ttft_ms: 30, tokens_per_s: 40 } },
  ], cut.length + 1)]).messages, state.messages);
});

test("an answer a crash interrupted says so, and is continued like a cut one", () => {
  const NOTE = "The server writing this answer stopped before it was done; what it had written is kept.";
  const cut = numbered([
    { type: "message_start", message_id: "u1", role: "user", content: "hello" },
    { type: "message_start", message_id: "a1", role: "assistant" },
    { type: "token", message_id: "a1", text: "Hi! I" },
    // Logged by the process that took the chat over, after the one writing it died.
    { type: "message_end", message_id: "a1", finish_reason: "interrupted", message: NOTE, usage: { output_tokens: 1 } },
  ]);
  let state = reduceAll(initialState(CHAT), cut);
  assert.equal(state.messages.a1.streaming, false, "it no longer streams");
  assert.equal(state.messages.a1.finishReason, "interrupted");
  assert.equal(state.messages.a1.note, NOTE);
  assert.equal(state.running, false);

  state = reduce(state, { type: "local:continue", message_id: "a1" });
  assert.equal(state.messages.a1.streaming, true);
  assert.equal(state.running, true);
  const refused = reduce(state, { type: "local:continue_failed", message_id: "a1" });
  assert.equal(refused.messages.a1.finishReason, "interrupted", "refused: interrupted again, not length");

  state = reduceAll(state, numbered([
    { type: "token", message_id: "a1", text: "'m Lunark." },
    { type: "message_end", message_id: "a1", finish_reason: "stop", usage: { output_tokens: 1 } },
  ], cut.length + 1));
  assert.equal(state.messages.a1.text, "Hi! I'm Lunark.");
  assert.equal(state.messages.a1.finishReason, "stop");
  assert.equal(state.messages.a1.note, null);
  assert.deepEqual(state.items, [{ kind: "message", id: "u1" }, { kind: "message", id: "a1" }], "no second message");
});

test("the status line: waiting for an approval outlasts the turn; a decision clears it", () => {
  const state = reduceAll(initialState(CHAT), [...balanceTurn, ...transferTurn.slice(0, 5)]);
  assert.equal(state.running, false);
  assert.equal(state.status, "", "no status event came");
  const waiting = reduceAll(initialState(CHAT), numbered([
    { type: "message_start", message_id: "a9", role: "assistant" },
    { type: "status", text: "waiting for your approval" },
    { type: "message_end", message_id: "a9", finish_reason: "awaiting_approval", usage: { output_tokens: 0 } },
  ]));
  assert.equal(waiting.running, false);
  assert.equal(waiting.status, "waiting for your approval");
  const decided = reduceAll(waiting, numbered([
    { type: "approval_resolved", approval_id: "apr_9", decisions: [{ type: "approve" }], by: "user" },
  ], 4));
  assert.equal(decided.status, "");
  const checking = reduce(decided, { chat_id: CHAT, seq: 5, ts: 1, type: "status", text: "checking the transaction" });
  assert.equal(checking.status, "checking the transaction");
  assert.equal(checking.running, true);
});

test("the reducer is pure: inputs are never mutated, and replay gives the same state", () => {
  const events = deepFreeze(structuredClone([...balanceTurn, ...transferTurn]));
  const start = deepFreeze(initialState(CHAT));
  const once = reduceAll(start, events);          // would throw on a frozen object if it mutated
  const again = reduceAll(initialState(CHAT), structuredClone(events));
  assert.deepEqual(once, again);
  assert.deepEqual(start, initialState(CHAT));
});

test("a tool called after some text goes below it", () => {
  const state = reduceAll(initialState(CHAT), numbered([
    { type: "message_start", message_id: "a1", role: "assistant" },
    { type: "token", message_id: "a1", text: "Let me check." },
    { type: "tool_call", message_id: "a1", call_id: "c1", name: "get_balance", args: {}, status: "running" },
  ]));
  assert.deepEqual(state.items, [{ kind: "message", id: "a1" }, { kind: "tool", id: "c1" }]);
});

test("an event whose seq was applied is ignored, and the state object is returned unchanged", () => {
  const state = reduceAll(initialState(CHAT), balanceTurn);
  for (const event of balanceTurn) assert.equal(reduce(state, event), state);
  // Replaying everything again (a re-join with last_seq 0, the user room's copies) changes nothing.
  assert.equal(reduceAll(state, balanceTurn), state);
  assert.equal(state.messages.a1.text, "You have **10,000 ETH**.");
});

test("a skipped seq is not applied; it sets gap until the missing events arrive", () => {
  let state = reduceAll(initialState(CHAT), balanceTurn.slice(0, 5));
  const early = balanceTurn[6];
  state = reduce(state, early);
  assert.deepEqual(state.gap, { after: 5, got: 7 });
  assert.equal(state.lastSeq, 5);
  assert.equal(state.messages.a1.text, "");
  state = reduceAll(state, balanceTurn.slice(5));
  assert.equal(state.gap, null);
  assert.equal(state.messages.a1.text, "You have **10,000 ETH**.");
});

test("events of another chat are ignored", () => {
  const state = reduceAll(initialState(CHAT), balanceTurn);
  const other = { ...transferTurn[3], chat_id: "chat_other", seq: balanceTurn.length + 1 };
  assert.equal(reduce(state, other), state);
});

test("an approval, its resolution and the transaction's status per call", () => {
  let state = reduceAll(initialState(CHAT), [...balanceTurn, ...transferTurn.slice(0, 5)]);
  const pending = pendingApproval(state);
  assert.equal(pending.approval_id, "apr_1");
  assert.equal(pending.action_requests[0].tx.value, TX.value);
  assert.equal(state.tools.c2.status, "awaiting_approval");
  assert.equal(state.running, false, "the turn ended, waiting for the user");
  assert.deepEqual(state.items.slice(-3), [
    { kind: "tool", id: "c2" }, { kind: "message", id: "a2" }, { kind: "approval", id: "apr_1" },
  ]);

  state = reduceAll(state, transferTurn.slice(5, 10));
  assert.equal(pendingApproval(state), null);
  assert.equal(state.approvals.apr_1.status, "resolved");
  assert.equal(decisionFor(state.approvals.apr_1, "c2").type, "approve");
  assert.equal(state.txs.c2.status, "mined");
  assert.equal(state.txs.c2.blockNumber, 7);

  state = reduceAll(state, transferTurn.slice(10));
  assert.equal(state.txs.c2.status, "confirmed");
  assert.equal(state.txs.c2.explorerUrl, "https://explorer.example/tx/0xab");
  assert.deepEqual(state.txs.c2.history, ["submitted", "mined", "confirmed"]);
  assert.equal(state.tools.c2.status, "success");
  // The tool card keeps its first place in the timeline while its status changes.
  assert.equal(state.items.filter((i) => i.kind === "tool" && i.id === "c2").length, 1);
  assert.equal(state.messages.a3.text, "Sent.");
});

test("an approval that expires is marked expired, not resolved by the user", () => {
  let state = reduceAll(initialState(CHAT), transferTurn.slice(0, 5).map((e, i) => ({ ...e, seq: i + 1 })));
  state = reduce(state, { type: "approval_resolved", chat_id: CHAT, seq: 6, ts: 1, approval_id: "apr_1", decisions: [{ type: "reject" }], by: "timeout" });
  assert.equal(state.approvals.apr_1.status, "expired");
  assert.equal(pendingApproval(state), null);
});

test("mismatch and failed transactions keep their reason", () => {
  const state = reduceAll(initialState(CHAT), numbered([
    { type: "tx_update", call_id: "c9", tx_hash: "0x" + "cd".repeat(32), chain_id: 31337, status: "mismatch", confirmations: 0, reason: "value differs" },
  ]));
  assert.equal(state.txs.c9.status, "mismatch");
  assert.equal(state.txs.c9.reason, "value differs");
});

test("network_switch changes the chat's network and leaves a notice", () => {
  const state = reduceAll(initialState(CHAT), numbered([
    { type: "message_start", message_id: "a1", role: "assistant" },
    { type: "network_switch", chain_id: 31338, name: "anvil-2", display_name: "Anvil 2 (local)", symbol: "ETH", decimals: 18, rpc_urls: ["http://127.0.0.1:9"] },
  ]));
  assert.equal(state.network.chain_id, 31338);
  assert.equal(state.network.display_name, "Anvil 2 (local)");
  assert.equal(state.lastNetworkSwitch.chain_id, 31338);
  assert.equal(state.networks[31338].display_name, "Anvil 2 (local)");
  assert.deepEqual(state.items, [{ kind: "notice", id: "network:2" }, { kind: "message", id: "a1" }], "above the answer to come");
});

test("the user's message is shown at once and replaced in place by the server's", () => {
  let state = reduce(initialState(CHAT), { type: "local:message", client_message_id: "m1", content: "hello" });
  assert.deepEqual(state.items, [{ kind: "message", id: "local:m1" }]);
  assert.equal(state.messages["local:m1"].local, true);
  assert.equal(state.running, true);
  state = reduce(state, { type: "local:message_ack", client_message_id: "m1", message_id: "u9" });
  state = reduce(state, { type: "message_start", chat_id: CHAT, seq: 1, ts: 1, message_id: "u9", role: "user", content: "hello" });
  assert.deepEqual(state.items, [{ kind: "message", id: "u9" }]);
  assert.equal(state.messages.u9.text, "hello");
  assert.equal(state.messages["local:m1"], undefined);

  // message_start before the ack: matched by content; the late ack changes nothing.
  let other = reduce(initialState(CHAT), { type: "local:message", client_message_id: "m2", content: "hi" });
  other = reduce(other, { type: "message_start", chat_id: CHAT, seq: 1, ts: 1, message_id: "u10", role: "user", content: "hi" });
  assert.deepEqual(other.items, [{ kind: "message", id: "u10" }]);
  assert.equal(reduce(other, { type: "local:message_ack", client_message_id: "m2", message_id: "u10" }), other);
});

test("a failed send is marked on the message and the turn is not running", () => {
  let state = reduce(initialState(CHAT), { type: "local:message", client_message_id: "m1", content: "hello" });
  state = reduce(state, { type: "local:message_failed", client_message_id: "m1", error: { code: "busy", message: "A turn is running." } });
  assert.equal(state.messages["local:m1"].error.code, "busy");
  assert.equal(state.running, false);
});

test("join: the ack's pending approval is shown once, even when replay brings it again", () => {
  const [pendingEvent] = transferTurn.filter((e) => e.type === "pending_approval");
  const { type, chat_id, seq, ts, ...request } = pendingEvent;
  let state = reduce(initialState(), {
    type: "local:joined", ack: { chat_id: CHAT, last_seq: 12, network: NETWORK, pending_approval: request },
  });
  assert.equal(pendingApproval(state).approval_id, "apr_1");
  state = reduceAll(state, [...balanceTurn, ...transferTurn.slice(0, 5)]);
  assert.equal(state.items.filter((i) => i.kind === "approval").length, 1);
  assert.equal(pendingApproval(state).approval_id, "apr_1");
});

test("join without replay starts at the ack's last_seq; joining another chat starts afresh", () => {
  let state = reduce(initialState(), { type: "local:joined", ack: { chat_id: CHAT, last_seq: 8, network: NETWORK }, lastSeq: 8 });
  assert.equal(state.lastSeq, 8);
  assert.equal(reduce(state, balanceTurn[3]), state, "seq 4 is before the join");
  state = reduce(state, { type: "local:joined", ack: { chat_id: "chat_2", last_seq: 0, network: NETWORK } });
  assert.equal(state.chatId, "chat_2");
  assert.equal(state.lastSeq, 0);
  assert.deepEqual(state.items, []);
});

test("abort and errors: message_end aborted stops the turn; an error event becomes a notice", () => {
  const state = reduceAll(initialState(CHAT), numbered([
    { type: "message_start", message_id: "u1", role: "user", content: "long story" },
    { type: "message_start", message_id: "a1", role: "assistant" },
    { type: "token", message_id: "a1", text: "Once upon" },
    { type: "message_end", message_id: "a1", finish_reason: "aborted", usage: { output_tokens: 2 } },
    { type: "error", code: "model_error", message: "The model failed." },
  ]));
  assert.equal(state.running, false);
  assert.equal(state.messages.a1.finishReason, "aborted");
  const notice = Object.values(state.notices)[0];
  assert.equal(notice.level, "error");
  assert.equal(notice.code, "model_error");
});

test("malformed input leaves the state alone", () => {
  const state = initialState(CHAT);
  assert.equal(reduce(state, null), state);
  assert.equal(reduce(state, { nope: 1 }), state);
  const unknown = reduce(state, { type: "something_new", chat_id: CHAT, seq: 1, ts: 1 });
  assert.equal(unknown.lastSeq, 1, "an unknown event type still counts as applied");
});
