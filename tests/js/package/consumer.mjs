// A dApp's own code on the installed @lunark/client package (npm install of the tarball), with
// no page around it: sign-in token in, one streamed answer and one approved transfer out, as
// the reducer's state, in a JSON summary on stdout.
//
//   node consumer.mjs <server-url> <token> <recipient-address>
import { io } from "socket.io-client";
import { approve, allowedDecisions, EVENT_TYPES } from "@lunark/client/protocol";
import { initialState, pendingApproval, reduce } from "@lunark/client/reducer";
import { LunarkTransport } from "@lunark/client/transport";
import * as client from "@lunark/client";

const [url, token, recipient] = process.argv.slice(2);
const deadline = setTimeout(() => finish({ ok: false, reason: "timed out" }, 1), 60_000);

const transport = new LunarkTransport({ io, url, token, socketOptions: { transports: ["websocket"] } });
let state = initialState();
const waiters = new Set();
transport.onJoined((ack) => { state = reduce(state, { type: "local:joined", ack }); });
transport.onEvent((event) => {
  state = reduce(state, event);
  for (const check of [...waiters]) check();
});
transport.onState((s, detail) => { if (s === "unauthorized") finish({ ok: false, reason: "unauthorized", detail }, 1); });

function until(predicate) {
  return new Promise((resolve) => {
    const check = () => {
      const found = predicate(state);
      if (found) { waiters.delete(check); resolve(found); }
    };
    waiters.add(check);
    check();
  });
}

function lastAnswer(s) {
  const ids = s.items.filter((i) => i.kind === "message").map((i) => s.messages[i.id]);
  const answer = ids.reverse().find((m) => m.role === "assistant");
  return answer && !answer.streaming ? answer : null;
}

function finish(summary, code = 0) {
  clearTimeout(deadline);
  transport.close();
  console.log(JSON.stringify(summary));
  process.exit(code);
}

try {
  transport.connect();
  const joined = await transport.join();
  const chatId = joined.chat_id;

  // One answer, streamed as tokens into the reducer's message.
  let tokens = 0;
  const off = transport.onEvent((event) => { if (event.type === "token") tokens += 1; });
  await transport.sendMessage(chatId, "hello");
  const hello = await until((s) => !s.running && lastAnswer(s));
  off();

  // A transfer: the card, a decision built with the protocol's approve(), the tx followed to its end.
  await transport.sendMessage(chatId, `send 0.25 ETH to ${recipient}`);
  const approval = await until((s) => pendingApproval(s));
  const [request] = approval.action_requests;
  await transport.decide(chatId, approval.approval_id, approval.action_requests.map(() => approve()));
  const tx = await until((s) => s.txs[request.call_id]?.status === "confirmed" && s.txs[request.call_id]);
  const done = await until((s) => !s.running && s.approvals[approval.approval_id].status === "resolved" && lastAnswer(s));

  finish({
    ok: true,
    chat_id: chatId,
    network: state.network && state.network.name,
    hello: { text: hello.text, finish_reason: hello.finishReason, tokens },
    summary: request.summary,
    allowed: allowedDecisions(approval, request),
    tx: { hash: tx.txHash, history: tx.history },
    answer: done.text,
    last_seq: state.lastSeq,
    gap: state.gap,
    event_types: EVENT_TYPES,
    same_from_index: client.reduce === reduce && client.LunarkTransport === LunarkTransport && client.approve === approve,
  });
} catch (err) {
  finish({ ok: false, reason: String(err && err.message), code: err && err.code }, 1);
}
