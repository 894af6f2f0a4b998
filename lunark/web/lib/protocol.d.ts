// Types of protocol.js: Lunark's wire protocol for TypeScript. The block between the markers is
// generated from the pydantic models of lunark/protocol/ (python scripts/gen_protocol_js.py; a test
// fails when it is stale): every payload, ack, chat event, object, decision and error code, with
// Python's names and the wire's field names. The functions below it are declared by hand.
//
// Server -> client objects may carry fields these types do not name (the server adds fields,
// never renames them); an optional field may be absent or null, which mean the same.
//
//   import type { ChatEvent, Decision } from "@lunark/client/protocol";
//   import { approve, reject } from "@lunark/client/protocol";

// BEGIN GENERATED: python scripts/gen_protocol_js.py (from lunark/protocol/)
/** Where a transaction is, as `tx_update.status` says it. */
export type TxStatus =
  | "submitted"
  | "mined"
  | "confirmed"
  | "failed"
  | "replaced"
  | "mismatch"
  | "dropped";

/** The contract's error codes; every error ack and error event carries one. */
export type ErrorCode =
  /** Missing, invalid or expired token (or SIWE message, nonce, signature). */
  | "unauthorized"
  /** Signed in, but the chat belongs to another address. */
  | "forbidden"
  /** No such chat, approval or transaction. */
  | "not_found"
  /** Malformed payload or argument: unknown field, wrong type, too long, bad decision. */
  | "invalid_input"
  /** A turn is already running in this chat. */
  | "busy"
  /** This approval was already decided; a decision applies exactly once. */
  | "already_decided"
  /** The approval expired and counts as rejected. */
  | "approval_expired"
  /** The chat is not waiting for a decision. */
  | "no_pending_approval"
  /** The spending policy forbids the action; nothing was asked or signed. */
  | "policy_violation"
  /** The chain or signer refused, failed or could not be reached. */
  | "chain_error"
  /** The chat model failed and no fallback succeeded. */
  | "model_error"
  /** A tool outside Lunark (an MCP server, a plugin's service) failed, timed out or is down. */
  | "tool_error"
  /** A bug or an unexpected failure on the server. */
  | "internal"
  /** Too many requests of this kind; `retry_after` (seconds) says when to try again. */
  | "rate_limited"
  /** The card has a danger warning the decision did not acknowledge; nothing was signed. */
  | "acknowledgement_required"
  /** Simulated again at signing, the transaction would change balances differently than the card showed; nothing was broadcast and a fresh card is offered. */
  | "preview_changed";

// -- Client -> server payloads (each acked) ------------------------------------------------------

/** Join (or create) a chat and replay what was missed. */
export interface JoinChat {
  /** The chat to join; omit it to create one. Matches `^[A-Za-z0-9_.:-]{1,128}$`. */
  chat_id?: string | null;
  /** The last seq applied; events after it are replayed. ≥ 0. */
  last_seq?: number | null;
}

/** Send a user message; it starts a turn. */
export interface SendMessage {
  /** The chat. Matches `^[A-Za-z0-9_.:-]{1,128}$`. */
  chat_id: string;
  /** The message text. 1–8000 characters. */
  content: string;
  /** Client-made id; a repeat is the same message. Matches `^[A-Za-z0-9_.:-]{1,128}$`. */
  client_message_id: string;
}

/** Answer a pending approval, one decision per action request, in order. */
export interface ResumeDecisions {
  /** The chat. Matches `^[A-Za-z0-9_.:-]{1,128}$`. */
  chat_id: string;
  /** The pending approval. Matches `^[A-Za-z0-9_.:-]{1,128}$`. */
  approval_id: string;
  /** One Decision per action request. 1–16 items. */
  decisions: Decision[];
}

/** Stop the running turn. */
export interface Abort {
  /** The chat. Matches `^[A-Za-z0-9_.:-]{1,128}$`. */
  chat_id: string;
}

/** The user switched network in the wallet. */
export interface WalletChanged {
  /** The chat. Matches `^[A-Za-z0-9_.:-]{1,128}$`. */
  chat_id: string;
  /** The wallet's chain id now. > 0. */
  chain_id: number;
}

/** Continue an answer the model cut at its output limit (`message_end` with `finish_reason: "length"`) or that a crash interrupted (`"interrupted"`): new `token` events for the same `message_id`, then a new `message_end`. Only the chat's last answer, and only while no turn runs. */
export interface ContinueMessage {
  /** The chat. Matches `^[A-Za-z0-9_.:-]{1,128}$`. */
  chat_id: string;
  /** The assistant message to continue. Matches `^[A-Za-z0-9_.:-]{1,128}$`. */
  message_id: string;
}

/** Run one tool call the user's own client asks for (e.g. `lunark mcp` for an MCP host), in the chat, exactly as if the model had proposed it: validated, checked by the spending policy, and shown for approval when the tool needs it (nothing runs that would not run for the model's call). Its events follow with the returned `call_id`; the turn ends after the call, without a model answer. `busy` while a turn runs or an approval waits. */
export interface CallTool {
  /** The chat. Matches `^[A-Za-z0-9_.:-]{1,128}$`. */
  chat_id: string;
  /** The tool, as the model would name it. 1–64 characters. */
  name: string;
  /** Its arguments; validated against the tool's schema. */
  args: Record<string, unknown>;
}

// -- Acks ----------------------------------------------------------------------------------------

/** The ack of `join_chat`; the replay of missed events follows it. */
export interface JoinChatAck {
  /** The chat joined (or created). */
  chat_id: string;
  /** The chat's latest seq now. ≥ 0. */
  last_seq: number;
  /** The chat's network. */
  network: NetworkInfo;
  /** The approval waiting for a decision, if any. */
  pending_approval?: ApprovalRequest | null;
}

/** The ack of `send_message`. */
export interface SendMessageAck {
  /** The user message's id. */
  message_id: string;
}

/** The ack of a client event that succeeded and has nothing else to say. */
export interface OkAck {
  /** Always true. */
  ok: true;
}

/** The ack of `wallet_changed`. */
export interface WalletChangedAck {
  /** Always true. */
  ok: true;
  /** The chat's network now. */
  network: NetworkInfo;
}

/** The ack of `call_tool`. */
export interface CallToolAck {
  /** The call id that its tool_call, action request, tx_update, tool_result carry. */
  call_id: string;
}

/** The ack of any client event that failed. */
export interface ErrorAck {
  /** The failure. */
  error: ErrorBody;
}

/** Each client event's payload and the ack it gets on success (failure: `ErrorAck`). */
export interface ClientEvents {
  join_chat: { payload: JoinChat; ack: JoinChatAck };
  send_message: { payload: SendMessage; ack: SendMessageAck };
  resume_decisions: { payload: ResumeDecisions; ack: OkAck };
  abort: { payload: Abort; ack: OkAck };
  wallet_changed: { payload: WalletChanged; ack: WalletChangedAck };
  continue_message: { payload: ContinueMessage; ack: OkAck };
  call_tool: { payload: CallTool; ack: CallToolAck };
}

// -- Server -> client chat events ----------------------------------------------------------------

/** A message begins (a user message is echoed whole). */
export interface MessageStart {
  /** The event's type, also its Socket.IO event name. */
  type: "message_start";
  /** The chat it belongs to. */
  chat_id: string;
  /** Per-chat sequence number: starts at 1, grows by exactly 1. ≥ 1. */
  seq: number;
  /** When the server emitted it, Unix time in seconds (fractional). */
  ts: number;
  /** The message's id. */
  message_id: string;
  /** Who speaks. */
  role: "user" | "assistant";
  /** The full text; user messages only. */
  content?: string | null;
}

/** More assistant text. */
export interface Token {
  /** The event's type, also its Socket.IO event name. */
  type: "token";
  /** The chat it belongs to. */
  chat_id: string;
  /** Per-chat sequence number: starts at 1, grows by exactly 1. ≥ 1. */
  seq: number;
  /** When the server emitted it, Unix time in seconds (fractional). */
  ts: number;
  /** The assistant message. */
  message_id: string;
  /** A delta; several model tokens may be coalesced into one event. */
  text: string;
}

/** The model calls a tool. */
export interface ToolCall {
  /** The event's type, also its Socket.IO event name. */
  type: "tool_call";
  /** The chat it belongs to. */
  chat_id: string;
  /** Per-chat sequence number: starts at 1, grows by exactly 1. ≥ 1. */
  seq: number;
  /** When the server emitted it, Unix time in seconds (fractional). */
  ts: number;
  /** The assistant message that made the call. */
  message_id: string;
  /** The call's id; tool_result and tx_update refer to it. */
  call_id: string;
  /** Tool name. */
  name: string;
  /** The tool's arguments. */
  args: Record<string, unknown>;
  /** Running, or waiting for the user. */
  status: "running" | "awaiting_approval";
}

/** A tool call finished. */
export interface ToolResult {
  /** The event's type, also its Socket.IO event name. */
  type: "tool_result";
  /** The chat it belongs to. */
  chat_id: string;
  /** Per-chat sequence number: starts at 1, grows by exactly 1. ≥ 1. */
  seq: number;
  /** When the server emitted it, Unix time in seconds (fractional). */
  ts: number;
  /** The call it answers. */
  call_id: string;
  /** How it ended. success: a transfer confirmed on chain (its settlement's final state), any other tool ran; error: it failed, or its settlement ended in any other state (refused, mismatch, failed, dropped, replaced, expired); rejected: the user (or expiry) rejected it; postponed: set aside before it was prepared, to be planned again once the network switch before it is approved; superseded: set aside because the user sent a new message instead of deciding. Nothing was sent for rejected, postponed and superseded. */
  status: "success" | "error" | "rejected" | "postponed" | "superseded";
  /** The tool's result (JSON); absent when there is none. */
  result?: unknown;
  /** Why it failed. */
  error?: ErrorBody | Record<string, unknown> | null;
}

/** The agent waits for the user's decisions before acting. */
export interface PendingApproval {
  /** The event's type, also its Socket.IO event name. */
  type: "pending_approval";
  /** The chat it belongs to. */
  chat_id: string;
  /** Per-chat sequence number: starts at 1, grows by exactly 1. ≥ 1. */
  seq: number;
  /** When the server emitted it, Unix time in seconds (fractional). */
  ts: number;
  /** Answer with this id in resume_decisions. */
  approval_id: string;
  /** ISO 8601 UTC time after which it counts as rejected. */
  expires_at: string;
  /** What to decide, in order. */
  action_requests: ActionRequest[];
  /** Allowed decisions per tool. */
  review_configs: ReviewConfig[];
}

/** An approval was decided (by the user or by expiry). */
export interface ApprovalResolved {
  /** The event's type, also its Socket.IO event name. */
  type: "approval_resolved";
  /** The chat it belongs to. */
  chat_id: string;
  /** Per-chat sequence number: starts at 1, grows by exactly 1. ≥ 1. */
  seq: number;
  /** When the server emitted it, Unix time in seconds (fractional). */
  ts: number;
  /** The approval. */
  approval_id: string;
  /** The decisions applied, in order. */
  decisions: Decision[];
  /** Who decided: the user, expiry, or a new message from the user (rejected as superseded). */
  by: "user" | "timeout" | "superseded";
}

/** A tracked transaction moved. */
export interface TxUpdate {
  /** The event's type, also its Socket.IO event name. */
  type: "tx_update";
  /** The chat it belongs to. */
  chat_id: string;
  /** Per-chat sequence number: starts at 1, grows by exactly 1. ≥ 1. */
  seq: number;
  /** When the server emitted it, Unix time in seconds (fractional). */
  ts: number;
  /** The tool call that made it. */
  call_id: string;
  /** The transaction's hash; absent only for a mismatch where nothing was signed. Matches `^0x[0-9a-fA-F]{64}$`. */
  tx_hash?: string | null;
  /** Its chain. > 0. */
  chain_id: number;
  /** Where it is now. */
  status: TxStatus;
  /** Blocks including and after the mining one (0 until mined). ≥ 0. */
  confirmations: number;
  /** The block that mined it. ≥ 0. */
  block_number?: number | null;
  /** Link on the network's explorer. */
  explorer_url?: string | null;
  /** Why it failed, was replaced, dropped or mismatched. */
  reason?: string | null;
  /** Extension: for replaced, the hash that took the nonce. Matches `^0x[0-9a-fA-F]{64}$`. */
  replaced_by?: string | null;
  /** Extension: for a speed-up (same nonce, same transfer, another fee), the hash it replaced; tx_hash is then the new hash, followed from here on. Matches `^0x[0-9a-fA-F]{64}$`. */
  replaces?: string | null;
  /** Extension: from the receipt, once mined. ≥ 0. */
  gas_used?: number | null;
  /** Extension: for a mismatch whose transaction the wallet sent from the user's account anyway, where that transaction is on chain (it is followed to its end and what it moved is counted). */
  onchain?: TxStatus | null;
  /** Extension: the wallet's hash arrived after the approval expired; recorded and followed. */
  late?: boolean | null;
  /** Extension: for a mismatch, each differing field: expected, actual, text. */
  differences?: Record<string, unknown> | null;
}

/** The chat moved to another network; enough for wallet_addEthereumChain. */
export interface NetworkSwitch {
  /** The event's type, also its Socket.IO event name. */
  type: "network_switch";
  /** The chat it belongs to. */
  chat_id: string;
  /** Per-chat sequence number: starts at 1, grows by exactly 1. ≥ 1. */
  seq: number;
  /** When the server emitted it, Unix time in seconds (fractional). */
  ts: number;
  /** EIP-155 chain id. > 0. */
  chain_id: number;
  /** Registry key, lowercase. */
  name: string;
  /** Native currency symbol. */
  symbol: string;
  /** Native currency decimals. ≥ 0. */
  decimals: number;
  /** JSON-RPC endpoints. */
  rpc_urls: string[];
  /** Block explorer base URL. */
  explorer_url?: string | null;
  /** Extension: what a person reads. */
  display_name?: string | null;
  /** Extension: blocks until a transaction counts as confirmed (for "mined n/N"). ≥ 1. */
  confirmations?: number | null;
}

/** What the agent is doing, for a status line shown while nothing else streams. */
export interface Status {
  /** The event's type, also its Socket.IO event name. */
  type: "status";
  /** The chat it belongs to. */
  chat_id: string;
  /** Per-chat sequence number: starts at 1, grows by exactly 1. ≥ 1. */
  seq: number;
  /** When the server emitted it, Unix time in seconds (fractional). */
  ts: number;
  /** "thinking…" (the model is working), "waiting for your approval", "checking the transaction" (verifying and tracking what the wallet signed). */
  text: string;
}

/** A message is complete. */
export interface MessageEnd {
  /** The event's type, also its Socket.IO event name. */
  type: "message_end";
  /** The chat it belongs to. */
  chat_id: string;
  /** Per-chat sequence number: starts at 1, grows by exactly 1. ≥ 1. */
  seq: number;
  /** When the server emitted it, Unix time in seconds (fractional). */
  ts: number;
  /** The message. */
  message_id: string;
  /** Why it ended; "length" (extension): the model stopped at its output limit, and continue_message appends to the same message; "interrupted" (extension): the server process writing it stopped (a crash), and the process that took the chat over closed it with what was streamed so far; continue_message goes on with it. */
  finish_reason: "stop" | "aborted" | "error" | "awaiting_approval" | "length" | "interrupted";
  /** Token counts and speed (of this part, for a continued message). */
  usage: Usage;
  /** Extension: what happened, for people, when the end needs saying (with "interrupted"). */
  message?: string | null;
  /** Extension: "interrupted" with finish_reason "interrupted" (the name crash supervision uses for an answer its process left open). */
  status?: "interrupted" | null;
}

/** A failure outside any ack (chat-level, or not bound to a chat). */
export interface Error {
  /** The event's type, also its Socket.IO event name. */
  type: "error";
  /** The chat, when it belongs to one. */
  chat_id?: string | null;
  /** Present when it belongs to a chat. ≥ 1. */
  seq?: number | null;
  /** When the server emitted it, Unix time in seconds (fractional). */
  ts: number;
  /** One of the error codes. */
  code: ErrorCode;
  /** What happened, for people. */
  message: string;
}

/** Any server -> client chat event, told apart by `type`. */
export type ChatEvent =
  | MessageStart
  | Token
  | ToolCall
  | ToolResult
  | PendingApproval
  | ApprovalResolved
  | TxUpdate
  | NetworkSwitch
  | Status
  | MessageEnd
  | Error;

/** The `type` of a chat event, also its Socket.IO event name. */
export type ChatEventType = ChatEvent["type"];

/** The chat event of one type: `ChatEventOf<"tx_update">` is `TxUpdate`. */
export type ChatEventOf<T extends ChatEventType> = Extract<ChatEvent, { type: T }>;

// -- Objects -------------------------------------------------------------------------------------

/** One tool call that waits for the user's decision. */
export interface ActionRequest {
  /** The tool call it is about. */
  call_id: string;
  /** Tool name, e.g. transfer. */
  name: string;
  /** The tool's arguments as the model gave them. */
  args: Record<string, unknown>;
  /** What the tool does. */
  description: string;
  /** What a person reads: amount, symbol, recipient, network, fee. */
  summary: string;
  /** The transaction to sign, for transfers. */
  tx?: UnsignedTx | null;
  /** Rows to show on the card, in order, for tools a client has no card of its own for (an MCP tool: server, tool, hints, arguments). */
  facts?: Fact[] | null;
  /** The balance changes, for transactions. */
  preview?: Preview | null;
  /** What the user should know first; danger ones need acknowledging. */
  warnings: ApprovalWarning[];
  /** sha256 of the canonical JSON of the approved action: the audit trail's intent fingerprint. Matches `^[0-9a-f]{64}$`. */
  fingerprint?: string | null;
  /** The recipient's ENS name or contact label, when it has one. */
  recipient_name?: string | null;
}

/** A pending approval, as `join_chat` and `GET /api/chats/{id}` return it. */
export interface ApprovalRequest {
  /** Answer with this id in resume_decisions. */
  approval_id: string;
  /** ISO 8601 UTC time after which it counts as rejected. */
  expires_at: string;
  /** What to decide, in order. */
  action_requests: ActionRequest[];
  /** Allowed decisions per tool. */
  review_configs: ReviewConfig[];
}

/** Something the user should know before deciding (docs/safety.md lists every code). */
export interface ApprovalWarning {
  /** Stable code, e.g. lookalike_recipient. */
  code: string;
  /** danger needs the code in the approve decision's acknowledge list. */
  severity: "info" | "warning" | "danger";
  /** A plain sentence for the user. */
  message: string;
}

/** One asset balance a transaction would change, as the simulation saw it. */
export interface BalanceChange {
  /** Whose balance: the user's or the recipient's. Matches `^0x[0-9a-fA-F]{40}$`. */
  address: string;
  /** "native", or the ERC-20 token's contract address. */
  asset: string;
  /** The asset's symbol, e.g. ETH or TKN. */
  symbol: string;
  /** The asset's decimals. ≥ 0, ≤ 255. */
  decimals: number;
  /** Balance before, base units, decimal string. Matches `^[0-9]+$`. */
  before: string;
  /** Balance after, base units, decimal string. Matches `^[0-9]+$`. */
  after: string;
  /** after - before, base units, decimal string. Matches `^-?[0-9]+$`. */
  delta: string;
}

/** One of the signed-in user's contacts (`GET /api/contacts`, `LunarkClient.contacts`): a label the user can send to instead of an address ("send 1 ETH to alice"). */
export interface Contact {
  /** As the user saved it; unique per user whatever its case (`alice` is `Alice`). */
  label: string;
  /** The contact's checksum address. */
  address: string;
  /** When the address was first saved (ISO 8601, UTC). */
  created_at: string;
}

/** What went wrong; extra fields carry structured details (tx hash, reason, ...). */
export interface ErrorBody {
  /** One of the error codes. */
  code: ErrorCode;
  /** What happened and what to do, for people. */
  message: string;
}

/** One row of an approval card: what a person reads. */
export interface Fact {
  /** What the row is, e.g. "Server". */
  label: string;
  /** Its value, as text. */
  value: string;
}

/** The network a chat is on (more fields may be added). */
export interface NetworkInfo {
  /** EIP-155 chain id. > 0. */
  chain_id: number;
  /** Registry key, lowercase, e.g. "sepolia". */
  name: string;
  /** What a person reads, e.g. "Sepolia". */
  display_name: string;
  /** Native currency symbol. */
  symbol: string;
  /** Native currency decimals. ≥ 0. */
  decimals: number;
  /** JSON-RPC endpoints. */
  rpc_urls: string[];
  /** Block explorer base URL. */
  explorer_url?: string | null;
  /** Blocks until a transaction counts as confirmed (for "mined n/N"). ≥ 1. */
  confirmations?: number | null;
}

/** What the transaction would change, simulated (`eth_simulateV1`) on the chat's network. */
export interface Preview {
  /** False when the node could not simulate it: then there are no changes. */
  simulated: boolean;
  /** Every balance that changes, the user's first; native includes no fee. */
  changes: BalanceChange[];
  /** Gas the simulation used. ≥ 0. */
  gas_used?: number | null;
  /** Worst-case fee in wei (gas limit x fee cap), decimal string. Matches `^[0-9]+$`. */
  max_fee?: string | null;
  /** Why there is no preview, when simulated is false. */
  reason?: string | null;
}

/** Which decisions one tool allows. */
export interface ReviewConfig {
  /** Tool name. */
  action_name: string;
  /** Decision types allowed for it. */
  allowed_decisions: Array<"approve" | "edit" | "reject">;
}

/** One tool the agent can call, as `GET /api/tools` lists it (`LunarkClient.list_tools`): what `call_tool` takes, and whether a call waits for the user's decision. */
export interface ToolInfo {
  /** The tool as the model and `call_tool` name it (`notes__add_note`). */
  name: string;
  /** What people read: `server.tool` for an MCP tool, else `name`. */
  display_name: string;
  /** A short human title, when the tool has one. */
  title?: string | null;
  /** What the tool does, as the model reads it. */
  description: string;
  /** JSON Schema of its arguments. */
  input_schema: Record<string, unknown>;
  /** `always`: every call waits for the user; `never`: runs at once; `rule`: depends on the call (e.g. an amount above a limit), so treat it as waiting. */
  approval: "always" | "never" | "rule";
  /** Where the tool comes from. */
  source: "builtin" | "plugin" | "mcp";
  /** The MCP server of an MCP tool. */
  mcp_server?: string | null;
  /** An MCP tool's annotations as its server declared them (`readOnlyHint`, `destructiveHint`, `idempotentHint`, `openWorldHint`); empty when none. */
  hints: Record<string, boolean>;
}

/** An unsigned EIP-1559 transaction for the wallet to sign. */
export interface UnsignedTx {
  /** EIP-155 chain id, hex quantity. Matches `^0x(0|[1-9a-fA-F][0-9a-fA-F]*)$`. */
  chain_id: string;
  /** The user's address (the sender). Matches `^0x[0-9a-fA-F]{40}$`. */
  from: string;
  /** Recipient, or the token contract for ERC-20. Matches `^0x[0-9a-fA-F]{40}$`. */
  to: string;
  /** Wei sent, hex quantity (0x0 for ERC-20). Matches `^0x(0|[1-9a-fA-F][0-9a-fA-F]*)$`. */
  value: string;
  /** Calldata: 0x, or transfer(recipient, amount). Matches `^0x([0-9a-fA-F]{2})*$`. */
  data: string;
  /** Gas limit, hex quantity. Matches `^0x(0|[1-9a-fA-F][0-9a-fA-F]*)$`. */
  gas: string;
  /** EIP-1559 fee cap, wei per gas, hex. Matches `^0x(0|[1-9a-fA-F][0-9a-fA-F]*)$`. */
  max_fee_per_gas: string;
  /** EIP-1559 tip, wei per gas, hex. Matches `^0x(0|[1-9a-fA-F][0-9a-fA-F]*)$`. */
  max_priority_fee_per_gas: string;
  /** The sender's nonce, hex quantity. Matches `^0x(0|[1-9a-fA-F][0-9a-fA-F]*)$`. */
  nonce: string;
}

/** How the model did in one message. */
export interface Usage {
  /** Tokens the model produced. ≥ 0. */
  output_tokens: number;
  /** Time to first token, milliseconds. */
  ttft_ms?: number | null;
  /** Output tokens per second. */
  tokens_per_s?: number | null;
}

// -- Decisions -----------------------------------------------------------------------------------

/** Approve the action; for a transaction, optionally with the wallet's hash or signed bytes. */
export interface ApproveDecision {
  /** Always approve. */
  type: "approve";
  /** The wallet broadcast it. Matches `^0x[0-9a-fA-F]{64}$`. */
  tx_hash?: string | null;
  /** Signed by the wallet; the server broadcasts it. At most 262144 characters, Matches `^0x([0-9a-fA-F]{2})+$`. */
  signed_tx?: string | null;
  /** Codes of the card's danger warnings the user acknowledged; without them the approve is refused with acknowledgement_required. At most 32 characters. */
  acknowledge?: string[] | null;
}

/** Change the action's arguments; they are validated, re-prepared and shown again. */
export interface EditDecision {
  /** Always edit. */
  type: "edit";
  /** The same tool with new arguments. */
  edited_action: EditedAction;
}

/** Do not do it; the optional message reaches the model. */
export interface RejectDecision {
  /** Always reject. */
  type: "reject";
  /** Why; it reaches the model. At most 2000 characters. */
  message?: string | null;
}

/** The action as the user wants it instead. */
export interface EditedAction {
  /** The tool: must be the action's own. 1–64 characters. */
  name: string;
  /** The new arguments; validated and prepared again. */
  args: Record<string, unknown>;
}

/** One decision per action request, told apart by `type`. */
export type Decision =
  | ApproveDecision
  | EditDecision
  | RejectDecision;

// -- Constants (protocol.js) ------------------------------------------------------------------------

/** Socket.IO event names of chat events. */
export declare const EVENT_TYPES: readonly ChatEventType[];
/** Events also sent to `user:{address}`, i.e. possibly for a chat the socket has not joined. */
export declare const WALLET_EVENTS: readonly ChatEventType[];
/** Events a client sends; each is answered by an ack. */
export declare const CLIENT_EVENTS: readonly (keyof ClientEvents)[];
/** tx_update statuses, and those after which nothing more happens to the transaction. */
export declare const TX_STATUSES: readonly TxStatus[];
export declare const FINAL_TX_STATUSES: readonly TxStatus[];
/** Decision types, one per action request. */
export declare const DECISION_TYPES: readonly Decision["type"][];
/** Error codes and the HTTP status of each on the HTTP mirror. */
export declare const ERROR_CODES: {
  readonly unauthorized: 401;
  readonly forbidden: 403;
  readonly not_found: 404;
  readonly invalid_input: 400;
  readonly busy: 409;
  readonly already_decided: 409;
  readonly approval_expired: 410;
  readonly no_pending_approval: 409;
  readonly policy_violation: 422;
  readonly chain_error: 502;
  readonly model_error: 502;
  readonly tool_error: 502;
  readonly internal: 500;
  readonly rate_limited: 429;
  readonly acknowledgement_required: 422;
  readonly preview_changed: 409;
};
// END GENERATED

/** EIP-1193 error code of "the user rejected the request". */
export declare const USER_REJECTED: 4001;
/** EIP-1193 / MetaMask error code of "this chain is not added to the wallet". */
export declare const UNRECOGNIZED_CHAIN: 4902;

// -- EIP-5792 batches -------------------------------------------------------------------------

/** `wallet_getCallsStatus` codes (EIP-5792): 1xx pending, 2xx confirmed, 4xx-6xx failed. */
export declare const CALLS_PENDING: 100;
export declare const CALLS_CONFIRMED: 200;
export declare const CALLS_OFFCHAIN_FAILURE: 400;

/** Whether a `wallet_getCapabilities` answer says the wallet sends atomic batches on `chainId`. */
export declare function canBatchAtomically(
  capabilities: Record<string, any> | null | undefined, chainId: number | string | bigint,
): boolean;

/** `wallet_sendCalls`' parameter (EIP-5792 2.0.0) for an approval's transactions, in order. */
export declare function toSendCalls(txs: UnsignedTx[]): {
  version: "2.0.0";
  chainId: string;
  from: string;
  atomicRequired: true;
  calls: Array<{ to: string; value: string; data: string }>;
};

/** The transaction hash that settles each call of a batch, from a final `wallet_getCallsStatus`. */
export declare function batchHashes(
  status: { receipts?: Array<{ transactionHash: string }> } | null | undefined, count: number,
): string[];

// -- decisions ------------------------------------------------------------------------------

/**
 * Approve an action. With `txHash` the wallet signed and broadcast it; with `signedTx` the
 * server verifies and broadcasts; with neither only a server-side signer may sign (dev, CLI).
 * `acknowledge`: the codes of the card's danger warnings the user acknowledged (`dangerCodes`);
 * without them the server refuses the approve with `acknowledgement_required`.
 */
export declare function approve(opts?: { txHash?: string; signedTx?: string; acknowledge?: string[] }): ApproveDecision;

/** The codes of a request's danger warnings, once each, in card order: what an approve must acknowledge. */
export declare function dangerCodes(request: Pick<ActionRequest, "warnings">): string[];

/** Reject an action; the message (optional, trimmed) reaches the model. */
export declare function reject(message?: string): RejectDecision;

/** Replace an action's arguments; the server validates and prepares them again and shows a new approval. */
export declare function edit(name: string, args: Record<string, unknown>): EditDecision;

/** An edit of a transfer that keeps every argument but the amount (in whole units, e.g. "0.5"). */
export declare function editAmount(request: ActionRequest, amount: string | number): EditDecision;

/** The decision types the approval allows for a request (approve and reject when it names none). */
export declare function allowedDecisions(approval: ApprovalRequest, request: ActionRequest): Decision["type"][];

// -- wallet helpers -------------------------------------------------------------------------

/** `eth_sendTransaction`'s parameter (EIP-1193) for an approval's `tx`. */
export interface Eip1193Tx {
  from: string;
  to: string;
  value: string;
  data: string;
  gas: string;
  maxFeePerGas: string;
  maxPriorityFeePerGas: string;
  nonce: string;
  chainId: string;
}

/** `wallet_addEthereumChain`'s parameter (EIP-3085). */
export interface AddEthereumChainParameter {
  chainId: string;
  chainName: string;
  nativeCurrency: { name: string; symbol: string; decimals: number };
  rpcUrls: string[];
  blockExplorerUrls?: string[];
}

/** The `eth_sendTransaction` parameter for an approval's `tx`: JSON-RPC's field names, values unchanged. */
export declare function toEip1193Tx(tx: UnsignedTx): Eip1193Tx;

/** A chain id as an EIP-1193 hex string ("0x7a69"). */
export declare function toHexChainId(chainId: number | string | bigint): string;

/** `wallet_addEthereumChain`'s parameter from a `network_switch` event or a NetworkInfo. */
export declare function toAddEthereumChain(
  network: Pick<NetworkInfo, "chain_id" | "name" | "symbol" | "decimals" | "rpc_urls"> & {
    display_name?: string | null;
    explorer_url?: string | null;
  },
): AddEthereumChainParameter;

/**
 * An integer amount (hex quantity, decimal string, number or bigint) in whole units, as text,
 * without float rounding: `formatUnits("0x2386f26fc10000", 18) === "0.01"`.
 */
export declare function formatUnits(value: string | number | bigint, decimals: number, maxFraction?: number): string;

/** The most a transaction can cost in fees (gas limit x max fee per gas), in wei. */
export declare function maxFeeWei(tx: Pick<UnsignedTx, "gas" | "max_fee_per_gas">): bigint;

/** "0x1234…abcd" */
export declare function shortHex(hex: string, head?: number, tail?: number): string;

// -- Sign-In with Ethereum --------------------------------------------------------------------

export interface SiweFields {
  /** e.g. location.host ("localhost:8080") */
  domain: string;
  /** EIP-55 checksummed, as the wallet reports it */
  address: string;
  /** One line of ASCII, e.g. "Sign in to Lunark." */
  statement?: string | null;
  /** e.g. location.origin */
  uri: string;
  chainId: number | string;
  /** From GET /auth/nonce. */
  nonce: string;
  /** Defaults to now. */
  issuedAt?: Date | string;
  expirationTime?: Date | string;
  notBefore?: Date | string;
  requestId?: string;
  resources?: string[];
}

/** The EIP-4361 message exactly as lunark/siwe.py renders it, for `personal_sign` and POST /auth/verify. */
export declare function buildSiweMessage(fields: SiweFields): string;

/** `personal_sign`'s first parameter: the UTF-8 bytes of `text` as 0x-hex. */
export declare function utf8ToHex(text: string): string;

/** The EIP-55 checksummed form of an address (throws TypeError on anything else). */
export declare function toChecksumAddress(address: string): string;

/** Keccak-256 of bytes, as 64 hex digits. */
export declare function keccak256Hex(bytes: Uint8Array): string;
