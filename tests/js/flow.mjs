// A third-party client of the Lunark protocol, written with the official socket.io-client:
// sign-in token in, one approved transfer out, a JSON summary on stdout.
//
//   node tests/js/flow.mjs <server-url> <token> <recipient-address>
//   (or LUNARK_URL, LUNARK_TOKEN, LUNARK_TO in the environment)
//
// Exits 0 when the transfer was confirmed and the answer ended with "stop"; non-zero otherwise.
import { io } from "socket.io-client";

const [url, token, recipient] = [
  process.argv[2] ?? process.env.LUNARK_URL,
  process.argv[3] ?? process.env.LUNARK_TOKEN,
  process.argv[4] ?? process.env.LUNARK_TO,
];
if (!url || !token || !recipient) {
  console.error("usage: node flow.mjs <server-url> <token> <recipient-address>");
  process.exit(64);
}

const ACK_TIMEOUT_MS = 10_000;
const deadline = setTimeout(() => fail("timed out"), 30_000);

const socket = io(url, { auth: { token }, transports: ["websocket"], reconnection: false });
const events = [];
const waiters = [];

function fail(reason, extra = {}) {
  console.log(JSON.stringify({ ok: false, reason, ...extra, seen: events.map((e) => [e.type, e.seq]) }));
  socket.disconnect();
  process.exit(1);
}

// Every chat event arrives under its type; keep them all, in order, and wake whoever waits.
socket.onAny((name, data) => {
  if (data && typeof data === "object" && "seq" in data) {
    events.push(data);
    for (const waiter of [...waiters]) waiter();
  }
});

function waitFor(predicate, from = 0) {
  return new Promise((resolve) => {
    const check = () => {
      const found = events.slice(from).find(predicate);
      if (found) {
        waiters.splice(waiters.indexOf(check), 1);
        resolve(found);
      }
    };
    waiters.push(check);
    check();
  });
}

async function call(event, payload) {
  const ack = await socket.timeout(ACK_TIMEOUT_MS).emitWithAck(event, payload);
  if (ack && ack.error) fail(`${event} failed`, { error: ack.error });
  return ack;
}

socket.on("connect_error", (err) => fail("connect_error", { message: err.message, data: err.data }));

socket.on("connect", async () => {
  try {
    const joined = await call("join_chat", {});
    const chatId = joined.chat_id;
    const sent = await call("send_message", {
      chat_id: chatId,
      content: `send 0.25 ETH to ${recipient}`,
      client_message_id: `js-${Date.now()}`,
    });
    const pending = await waitFor((e) => e.type === "pending_approval" && e.chat_id === chatId);
    const mark = events.length;
    const decided = await call("resume_decisions", {
      chat_id: chatId,
      approval_id: pending.approval_id,
      decisions: [{ type: "approve" }],
    });
    const confirmed = await waitFor((e) => e.type === "tx_update" && e.status === "confirmed", mark);
    const end = await waitFor((e) => e.type === "message_end" && e.finish_reason !== "awaiting_approval", mark);
    const seqs = events.filter((e) => e.chat_id === chatId).map((e) => e.seq);
    const answer = events
      .filter((e) => e.type === "token" && e.message_id === end.message_id)
      .map((e) => e.text)
      .join("");
    console.log(
      JSON.stringify({
        ok: end.finish_reason === "stop",
        chat_id: chatId,
        network: joined.network.name,
        message_id: sent.message_id,
        approval_id: pending.approval_id,
        summary: pending.action_requests[0].summary,
        decided,
        tx_hash: confirmed.tx_hash,
        tx_statuses: events.filter((e) => e.type === "tx_update").map((e) => e.status),
        finish_reason: end.finish_reason,
        answer,
        seqs_contiguous: seqs.every((seq, i) => seq === i + 1),
        last_seq: seqs[seqs.length - 1],
      }),
    );
    clearTimeout(deadline);
    socket.disconnect();
    process.exit(end.finish_reason === "stop" ? 0 : 1);
  } catch (err) {
    fail("exception", { message: String(err && err.stack ? err.stack : err) });
  }
});
