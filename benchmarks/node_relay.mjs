// Baseline (c): a Node socket.io server relaying one event per token.
// Same protocol as benchmarks/serve.py's `sio` kind: a client emits
// "start" {chat_id, n, rate, mode}; the token source (in this process, like
// Lunark's model) stamps each token with CLOCK_MONOTONIC (process.hrtime, the
// clock Python's time.monotonic reads) and emits it to the chat's room.
// Prints {"url", "pid"} when listening; exits when stdin closes. Like benchmarks/monitor.py, it
// records its garbage collections and event-loop stalls (CLOCK_MONOTONIC seconds) and answers the
// line "pauses T0 T1" with one JSON line of those between the two times.
import { createServer } from "node:http";
import { randomBytes } from "node:crypto";
import { PerformanceObserver, performance } from "node:perf_hooks";
import { Server } from "socket.io";

const ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const INDEX_MOD = 62 ** 2;
const TIME_MOD = 62 ** 4;

function enc(value, width) {
  let out = "";
  for (let i = 0; i < width; i++) {
    out = ALPHABET[value % 62] + out;
    value = Math.floor(value / 62);
  }
  return out;
}

const now10 = () => Number(process.hrtime.bigint() / 10000n);
const token = (index) => " " + enc(index % INDEX_MOD, 2) + enc(now10() % TIME_MOD, 4);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const yieldNow = () => new Promise((resolve) => setImmediate(resolve));

const http = createServer();
const io = new Server(http, { cors: { origin: "*" }, maxHttpBufferSize: 1e6 });

async function stream(room, chatId, n, rate, whole) {
  const messageId = "msg_" + randomBytes(10).toString("hex");
  const start = performance.now();
  let text = "";
  let seq = 0;
  for (let i = 0; i < n; i++) {
    if (rate > 0) {
      const wait = start + (i * 1000) / rate - performance.now();
      if (wait > 0) await sleep(wait);
    } else {
      await yieldNow();
    }
    const t = token(i);
    text = whole ? text + t : t;
    seq += 1;
    io.to(room).emit("token", { type: "token", message_id: messageId, text, chat_id: chatId, seq, ts: Date.now() / 1000 });
  }
  io.to(room).emit("message_end", {
    type: "message_end", message_id: messageId, finish_reason: "stop", chat_id: chatId, seq: seq + 1, ts: Date.now() / 1000,
  });
}

io.on("connection", (socket) => {
  socket.on("start", (data, ack) => {
    const room = "chat:" + data.chat_id;
    socket.join(room);
    stream(room, data.chat_id, Number(data.n), Number(data.rate), data.mode === "whole");
    if (typeof ack === "function") ack({ ok: true });
  });
});

http.listen(0, "127.0.0.1", () => {
  const { port } = http.address();
  console.log(JSON.stringify({ url: `http://127.0.0.1:${port}`, pid: process.pid }));
});
// The pause monitor: seconds on CLOCK_MONOTONIC, as Python's time.monotonic.
const mono = () => Number(process.hrtime.bigint()) / 1e9;
const perfToMono = mono() - performance.now() / 1000;
const gcs = [];
const lags = [];
const KEEP = 200000;
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    if (entry.duration >= 0.2) {
      const start = perfToMono + entry.startTime / 1000;
      gcs.push([start, start + entry.duration / 1000, entry.detail?.kind === 4 ? 2 : 0]); // major -> 2, as Python's full
      if (gcs.length > KEEP) gcs.shift();
    }
  }
}).observe({ entryTypes: ["gc"] });
let due = mono() + 0.001;
function tick() {
  const now = mono();
  if (now - due >= 0.002) {
    lags.push([due, now]);
    if (lags.length > KEEP) lags.shift();
  }
  due = now + 0.001;
  setTimeout(tick, 1);
}
setTimeout(tick, 1);

let pending = "";
process.stdin.on("end", () => process.exit(0));
process.stdin.on("data", (chunk) => {
  pending += chunk.toString();
  let newline;
  while ((newline = pending.indexOf("\n")) >= 0) {
    const words = pending.slice(0, newline).trim().split(/\s+/);
    pending = pending.slice(newline + 1);
    if (words[0] === "quit" || words[0] === "") process.exit(0);
    if (words[0] === "pauses") {
      const t0 = Number(words[1]);
      const t1 = Number(words[2]);
      const within = (x) => x[1] >= t0 && x[0] <= t1;
      console.log(JSON.stringify({ gc: gcs.filter(within), lag: lags.filter(within), collections: [] }));
    } else {
      console.log(JSON.stringify({ error: `unknown command ${words[0]}` }));
    }
  }
});
process.stdin.resume();
