// Types of reducer.js (hand-written): the chat state of one conversation, built by applying
// Lunark's chat events in order with a pure `reduce`.
//
//   import { initialState, reduce } from "@lunark/client/reducer";
//   let state = initialState();
//   transport.onJoined((ack) => { state = reduce(state, { type: "local:joined", ack }); });
//   transport.onEvent((event) => { state = reduce(state, event); });

import type {
  ApprovalRequest, ChatEvent, Decision, ErrorBody, JoinChatAck, NetworkInfo, NetworkSwitch, TxStatus, Usage,
} from "./protocol.js";

export interface Message {
  /** Server message id, or "local:<client_message_id>" until the server confirmed it. */
  id: string;
  role: "user" | "assistant";
  text: string;
  /** True between message_start and message_end (assistant). */
  streaming: boolean;
  /** "length": cut at the model's output limit; "interrupted": its server stopped mid-answer. Both may be continued. */
  finishReason: "stop" | "aborted" | "error" | "awaiting_approval" | "length" | "interrupted" | null;
  /** The message_end's sentence for people (with "interrupted"). */
  note?: string | null;
  /** While a continuation runs: how the answer had ended before it. */
  cutBy?: "length" | "interrupted";
  /** The latest message_end's usage. */
  usage: Usage | null;
  /** The usage of every message_end of it (one per part, when continued). */
  parts?: Usage[];
  /** Shown before the server confirmed it. */
  local?: boolean;
  clientMessageId?: string;
  serverId?: string;
  /** The send failed. */
  error?: { code: string; message: string };
}

export interface ToolCard {
  callId: string;
  messageId: string | null;
  name: string;
  args: Record<string, unknown>;
  status: "running" | "awaiting_approval" | "success" | "error" | "rejected" | "postponed" | "superseded";
  result: unknown;
  error: ErrorBody | Record<string, unknown> | null;
}

export interface Approval extends Omit<ApprovalRequest, "expires_at"> {
  /** ISO 8601 UTC; null for an approval known only from its approval_resolved. */
  expires_at: string | null;
  status: "pending" | "resolved" | "expired";
  decisions: Decision[] | null;
  by: "user" | "timeout" | "superseded" | null;
  seq: number | null;
}

export interface TxState {
  callId: string;
  txHash: string | null;
  chainId: number;
  status: TxStatus;
  confirmations: number;
  blockNumber: number | null;
  explorerUrl: string | null;
  reason: string | null;
  replacedBy: string | null;
  onchain: TxStatus | null;
  /** Every status seen, in order. */
  history: TxStatus[];
}

export interface Notice {
  id: string;
  level: "info" | "error";
  text: string;
  code?: string;
}

export interface ChatState {
  chatId: string | null;
  /** The highest seq applied (events come in order). */
  lastSeq: number;
  /** A seq was skipped: re-join with `last_seq: lastSeq` and the server fills the hole. */
  gap: { after: number; got: number } | null;
  /** The chat's network now. */
  network: NetworkInfo | null;
  /** Every network seen, by chain id. */
  networks: Record<number, NetworkInfo>;
  /** The timeline, in order. */
  items: Array<{ kind: "message" | "tool" | "approval" | "notice"; id: string }>;
  messages: Record<string, Message>;
  tools: Record<string, ToolCard>;
  approvals: Record<string, Approval>;
  /** By call_id. */
  txs: Record<string, TxState>;
  notices: Record<string, Notice>;
  pendingApprovalId: string | null;
  /** A turn is under way. */
  running: boolean;
  /** The status line while nothing else streams ("thinking…"); "" for none. */
  status: string;
  /** The latest network_switch event applied. */
  lastNetworkSwitch: NetworkSwitch | null;
}

/** What the client itself tells the reducer, besides the server's events. */
export type LocalAction =
  | { type: "local:joined"; ack: JoinChatAck; lastSeq?: number }
  | { type: "local:message"; client_message_id: string; content: string }
  | { type: "local:message_ack"; client_message_id: string; message_id: string }
  | { type: "local:message_failed"; client_message_id: string; error?: { code: string; message: string } }
  | { type: "local:network"; network: NetworkInfo }
  | { type: "local:continue"; message_id: string }
  | { type: "local:continue_failed"; message_id: string };

/** How an answer that continue_message goes on with ended: "length" or "interrupted". */
export declare const CONTINUABLE: ReadonlySet<string>;

export declare function initialState(chatId?: string | null): ChatState;

/** Apply one event (or local action); returns the same object when nothing changed. */
export declare function reduce(state: ChatState, event: ChatEvent | LocalAction): ChatState;

/** Apply many events in order. */
export declare function reduceAll(state: ChatState, events: Iterable<ChatEvent | LocalAction>): ChatState;

/** The approval waiting for a decision, or null. */
export declare function pendingApproval(state: ChatState): Approval | null;

/** The decision an approval took for one call, if resolved. */
export declare function decisionFor(approval: Approval, callId: string): Decision | null;
