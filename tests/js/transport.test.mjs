// The transport's connection logic against a scripted stand-in for socket.io-client's socket:
// auth, acks, the offline queue, re-join with last_seq after a reconnect, live vs replayed events.
// (The real socket.io-client against the real server is exercised by tests/test_web_e2e.py.)
import assert from "node:assert/strict";
import { test } from "node:test";

import { LunarkError, LunarkTransport, newId } from "../../lunark/web/lib/transport.js";

class FakeSocket {
  constructor(url, options) {
    this.url = url;
    this.options = options;
    this.connected = false;
    this.active = true;
    this.handlers = new Map();
    this.any = [];
    this.sent = [];
  }
  on(event, fn) { (this.handlers.get(event) || this.handlers.set(event, []).get(event)).push(fn); return this; }
  onAny(fn) { this.any.push(fn); }
  offAny() { this.any = []; }
  timeout() { return { emit: (event, payload, cb) => this.sent.push({ event, payload, cb }) }; }
  connect() { this.active = true; }
  disconnect() { this.connected = false; this.active = false; }
  fire(event, ...args) { for (const fn of this.handlers.get(event) || []) fn(...args); }
  // what the test does as "the server"
  open() { this.connected = true; this.fire("connect"); }
  drop(reason = "transport close") { this.connected = false; this.fire("disconnect", reason); }
  deliver(name, data) { for (const fn of this.any) fn(name, data); }
  answer(index, ack) { this.sent[index].cb(null, ack); }
}

function setup(options = {}) {
  let socket;
  const io = (url, opts) => (socket = new FakeSocket(url, opts));
  const transport = new LunarkTransport({ io, url: "http://server.test", token: "tok", ...options });
  const states = [];
  transport.onState((s) => states.push(s));
  transport.connect();
  return { transport, socket, states };
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 0));
const NETWORK = { chain_id: 31337, name: "anvil" };

test("connects with auth {token} and reports its state", () => {
  const { socket, states, transport } = setup();
  assert.equal(socket.url, "http://server.test");
  assert.deepEqual(socket.options.auth, { token: "tok" });
  assert.equal(socket.options.reconnection, true);
  // WebSocket first, so a load balancer need not be sticky; polling only if WebSocket fails.
  assert.deepEqual(socket.options.transports, ["websocket", "polling"]);
  assert.equal(socket.options.tryAllTransports, true);
  socket.open();
  assert.deepEqual(states, ["connecting", "connected"]);
  transport.close();
  assert.equal(transport.state, "closed");
});

test("join: ack, then replayed events (live: false), then live ones", async () => {
  const { transport, socket } = setup();
  socket.open();
  const seen = [];
  transport.onEvent((event, meta) => seen.push([event.type, event.seq, meta.live]));
  const joined = transport.join("chat_1");
  assert.deepEqual(socket.sent[0].payload, { chat_id: "chat_1", last_seq: 0 });
  socket.answer(0, { chat_id: "chat_1", last_seq: 2, network: NETWORK });
  // The server replays right after the ack, possibly in the same tick.
  socket.deliver("message_start", { chat_id: "chat_1", seq: 1, ts: 1, message_id: "u1", role: "user", content: "hi" });
  socket.deliver("token", { chat_id: "chat_1", seq: 2, ts: 1, message_id: "a1", text: "Hel" });
  socket.deliver("token", { chat_id: "chat_1", seq: 3, ts: 1, message_id: "a1", text: "lo" });
  socket.deliver("not_a_chat_event", { chat_id: "chat_1" });
  assert.equal((await joined).last_seq, 2);
  assert.deepEqual(seen, [["message_start", 1, false], ["token", 2, false], ["token", 3, true]]);
});

test("join without a chat id makes one and remembers it for re-joins", async () => {
  const { transport, socket } = setup();
  socket.open();
  const joined = transport.join();
  assert.deepEqual(socket.sent[0].payload, {});
  socket.answer(0, { chat_id: "chat_new", last_seq: 0, network: NETWORK });
  await joined;
  assert.equal(transport.chatId, "chat_new");
});

test("requests made while offline are queued and sent once connected", async () => {
  const { transport, socket } = setup();
  const sent = transport.sendMessage("chat_1", "hello", "m1");
  assert.equal(socket.sent.length, 0);
  socket.open();
  await tick();
  assert.deepEqual(socket.sent.map((s) => [s.event, s.payload]), [
    ["send_message", { chat_id: "chat_1", content: "hello", client_message_id: "m1" }],
  ]);
  socket.answer(0, { message_id: "u1" });
  assert.deepEqual(await sent, { message_id: "u1" });
});

test("after a reconnect it re-joins with the last seq applied, then sends what waited", async () => {
  let applied = 0;
  const { transport, socket, states } = setup({ lastSeq: () => applied });
  socket.open();
  const joined = transport.join("chat_1");
  socket.answer(0, { chat_id: "chat_1", last_seq: 0, network: NETWORK });
  await joined;
  applied = 7;

  socket.drop();
  assert.equal(transport.state, "reconnecting");
  const rejoins = [];
  transport.onJoined((ack, meta) => rejoins.push([ack.last_seq, meta.rejoin]));
  const abort = transport.abort("chat_1");
  socket.open();
  await tick();
  assert.deepEqual(socket.sent.slice(1).map((s) => [s.event, s.payload]), [
    ["join_chat", { chat_id: "chat_1", last_seq: 7 }],
  ], "the queued request waits for the re-join");
  socket.answer(1, { chat_id: "chat_1", last_seq: 9, network: NETWORK });
  await tick();
  assert.deepEqual(socket.sent.slice(2).map((s) => s.event), ["abort"]);
  socket.answer(2, { ok: true });
  assert.deepEqual(await abort, { ok: true });
  assert.deepEqual(rejoins, [[9, true]]);
  assert.deepEqual(states.slice(-2), ["reconnecting", "connected"]);
});

test("a request without an ack when the connection drops is sent again; a repeated decision counts as done", async () => {
  const { transport, socket } = setup();
  socket.open();
  const decided = transport.decide("chat_1", "apr_1", [{ type: "approve", tx_hash: "0x" + "ab".repeat(32) }]);
  assert.equal(socket.sent.length, 1);
  socket.drop();
  socket.sent[0].cb(null, { ok: true }); // a stale ack after the drop is ignored
  socket.open();
  await tick();
  assert.equal(socket.sent.length, 2);
  assert.equal(socket.sent[1].event, "resume_decisions");
  socket.answer(1, { error: { code: "already_decided", message: "Already decided." } });
  assert.deepEqual(await decided, { ok: true, retried: true });
});

test("continue_message is sent as such; repeated after a drop, a busy answer counts as done", async () => {
  const { transport, socket } = setup();
  socket.open();
  const first = transport.continueMessage("chat_1", "msg_1");
  assert.deepEqual([socket.sent[0].event, socket.sent[0].payload], ["continue_message", { chat_id: "chat_1", message_id: "msg_1" }]);
  socket.drop();
  socket.open();
  await tick();
  socket.answer(1, { error: { code: "busy", message: "A turn is already running in this chat." } });
  assert.deepEqual(await first, { ok: true, retried: true });
  // Not repeated, the same answer is a real refusal.
  const second = transport.continueMessage("chat_1", "msg_1");
  socket.answer(2, { error: { code: "busy", message: "A turn is already running in this chat." } });
  await assert.rejects(second, (err) => err.code === "busy");
});

test("an error ack rejects with LunarkError carrying code and details", async () => {
  const { transport, socket } = setup();
  socket.open();
  const sent = transport.sendMessage("chat_1", "x", "m1");
  socket.answer(0, { error: { code: "busy", message: "A turn is already running.", chat_id: "chat_1" } });
  await assert.rejects(sent, (err) => err instanceof LunarkError && err.code === "busy" && err.details.chat_id === "chat_1");
});

test("a missing ack times out", async () => {
  const { transport, socket } = setup();
  socket.open();
  const sent = transport.abort("chat_1");
  socket.sent[0].cb(new Error("operation has timed out"));
  await assert.rejects(sent, (err) => err.code === "timeout");
});

test("a refused token stops reconnecting and fails what was queued", async () => {
  const { transport, socket } = setup();
  const queued = transport.sendMessage("chat_1", "x", "m1");
  const err = Object.assign(new Error("The session token is unknown"), { data: { code: "unauthorized", message: "Sign in again." } });
  socket.fire("connect_error", err);
  assert.equal(transport.state, "unauthorized");
  await assert.rejects(queued, (e) => e.code === "unauthorized");
  assert.equal(socket.active, false);
  await assert.rejects(transport.abort("chat_1"), (e) => e.code === "unauthorized");
});

test("a temporary connect error means reconnecting", () => {
  const { transport, socket } = setup();
  socket.fire("connect_error", new Error("xhr poll error"));
  assert.equal(transport.state, "reconnecting");
});

test("newId makes distinct ids the protocol accepts", () => {
  const a = newId();
  assert.match(a, /^[A-Za-z0-9_.:-]{1,128}$/);
  assert.notEqual(a, newId());
});
