// A TypeScript dApp on the installed @lunark/client's declarations, checked with
// `tsc --noEmit --strict`. Each @ts-expect-error must be an error: the types are not `any`.
import { io } from "socket.io-client";
import {
  approve, dangerCodes, edit, editAmount, reject, toEip1193Tx, ERROR_CODES, FINAL_TX_STATUSES,
  type ChatEvent, type ChatEventOf, type ClientEvents, type Decision, type ErrorCode, type ResumeDecisions,
  type TxStatus, type UnsignedTx,
} from "@lunark/client/protocol";
import { initialState, pendingApproval, reduce, type ChatState } from "@lunark/client/reducer";
import { LunarkError, LunarkTransport } from "@lunark/client/transport";
import * as everything from "@lunark/client";

// A ChatEvent narrows by `type` to its own fields; every type is handled (the `never` proves it).
function describe(event: ChatEvent): string {
  switch (event.type) {
    case "message_start": return `${event.role} ${event.message_id}`;
    case "token": return event.text;
    case "tool_call": return `${event.name}(${Object.keys(event.args).join(", ")}) ${event.status}`;
    case "tool_result": return event.status;
    case "pending_approval": {
      const [first] = event.action_requests;
      const fee: string | undefined = first?.tx?.max_fee_per_gas;
      const danger = first?.warnings.filter((w) => w.severity === "danger").map((w) => w.code) ?? [];
      return `${event.approval_id} until ${event.expires_at} ${fee ?? ""} ${danger.join(",")}`;
    }
    case "approval_resolved": return event.decisions.map((d) => d.type).join(",") + event.by;
    case "tx_update": {
      const status: TxStatus = event.status;
      const final: boolean = FINAL_TX_STATUSES.includes(status);
      return `${event.tx_hash ?? "-"} ${status} ${final} ${event.confirmations}`;
    }
    case "network_switch": return `${event.chain_id} ${event.rpc_urls.join(" ")}`;
    case "status": return event.text;
    case "message_end": return `${event.finish_reason} ${event.usage.output_tokens}`;
    case "error": {
      const code: ErrorCode = event.code;
      return `${code} ${ERROR_CODES[code]} ${event.message} ${event.chat_id ?? "no chat"}`;
    }
    default: {
      const unreachable: never = event;
      return unreachable;
    }
  }
}

const update: ChatEventOf<"tx_update"> = {
  type: "tx_update", chat_id: "c1", seq: 3, ts: 1.7e9, call_id: "call_1", chain_id: 31337, status: "mined",
  confirmations: 1,
};
describe(update);

// Decisions: built with the helpers or written out; either way they are a Decision.
const tx: UnsignedTx = {
  chain_id: "0x7a69", from: "0x" + "1".repeat(40), to: "0x" + "2".repeat(40), value: "0x1", data: "0x",
  gas: "0x5208", max_fee_per_gas: "0x1", max_priority_fee_per_gas: "0x1", nonce: "0x0",
};
const decisions: Decision[] = [
  approve({ txHash: "0x" + "a".repeat(64) }),
  reject("not today"),
  edit("transfer", { amount: "0.1", to: tx.to }),
  { type: "approve", signed_tx: "0x02f8", acknowledge: ["lookalike_recipient"] },
];
const resume: ResumeDecisions = { chat_id: "c1", approval_id: "ap_1", decisions };
const sendParams: { maxFeePerGas: string } = toEip1193Tx(tx);

// @ts-expect-error: a decision's type is one of approve, edit, reject
const wrongType: Decision = { type: "maybe" };
// @ts-expect-error: tx_hash is a string
const wrongField: Decision = { type: "approve", tx_hash: 5 };
// @ts-expect-error: an edit needs the edited action
const noAction: Decision = { type: "edit" };

// The transport takes socket.io-client's own `io`; requests and acks are typed per event.
async function chat(token: string): Promise<ChatState> {
  const transport = new LunarkTransport({ io, url: "http://localhost:8080", token });
  let state = initialState();
  transport.onEvent((event, { live }) => { if (live) state = reduce(state, event); });
  transport.onJoined((ack) => { state = reduce(state, { type: "local:joined", ack }); });
  transport.connect();
  const joined = await transport.join();
  const network: number = joined.network.chain_id;
  const sent: ClientEvents["send_message"]["ack"] = await transport.sendMessage(joined.chat_id, `on ${network}`);
  const ok: true = (await transport.request("resume_decisions", resume)).ok;
  // @ts-expect-error: send_message needs content and client_message_id
  await transport.request("send_message", { chat_id: joined.chat_id });
  // @ts-expect-error: no such client event
  await transport.request("leave_chat", {});
  const waiting = pendingApproval(state);
  if (waiting) {
    const [first] = waiting.action_requests;
    if (first) await transport.decide(joined.chat_id, waiting.approval_id, [editAmount(first, "0.5")]);
    if (first) await transport.decide(joined.chat_id, waiting.approval_id, [approve({ acknowledge: dangerCodes(first) })]);
  }
  try {
    await transport.abort(joined.chat_id);
  } catch (err) {
    if (err instanceof LunarkError && err.code === "busy") console.log(err.details, sent.message_id, ok);
  }
  // @ts-expect-error: reduce takes events and local actions, not anything
  reduce(state, { type: "local:whatever" });
  return state;
}

// The package's root re-exports the three modules.
const same: typeof reduce = everything.reduce;
console.log(describe, chat, sendParams, same, wrongType, wrongField, noAction);
