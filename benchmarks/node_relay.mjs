// Baseline (c): a Node socket.io server relaying one event per token.
// Same protocol as benchmarks/serve.py's `sio` kind: a client emits
// "start" {chat_id, n, rate, mode}; the token source (in this process, like
// Lunark's model) stamps each token with CLOCK_MONOTONIC (process.hrtime, the
// clock Python's time.monotonic reads) and emits it to the chat's room.
// Prints {"url", "pid"} when listening; exits when stdin closes.
import { createServer } from "node:http";
import { randomBytes } from "node:crypto";
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
process.stdin.on("end", () => process.exit(0));
process.stdin.on("data", (chunk) => { if (chunk.toString().includes("quit")) process.exit(0); });
process.stdin.resume();
