// Lunark's wire protocol for JavaScript clients: the shapes of what the server emits and
// accepts (docs/protocol.md is the contract; lunark/protocol/ validates it), small
// constructors for decisions, and the helpers every wallet-facing client needs (the
// EIP-4361 sign-in message, the EIP-1193 transaction, unit formatting).
//
// No dependencies and no DOM: it runs in browsers and in Node alike.
//
//   import { approve, reject, edit, buildSiweMessage, toEip1193Tx } from "./protocol.js";

// BEGIN GENERATED: python scripts/gen_protocol_js.py (from lunark/protocol/)
/** Socket.IO event names of chat events. */
export const EVENT_TYPES = Object.freeze(["message_start", "token", "tool_call", "tool_result", "pending_approval", "approval_resolved", "tx_update", "network_switch", "status", "message_end", "error"]);

/** Events also sent to `user:{address}`, i.e. possibly for a chat the socket has not joined. */
export const WALLET_EVENTS = Object.freeze(["pending_approval", "network_switch", "tx_update"]);

/** Events a client sends; each is answered by an ack. */
export const CLIENT_EVENTS = Object.freeze(["join_chat", "send_message", "resume_decisions", "abort", "wallet_changed", "continue_message", "call_tool"]);

/** tx_update statuses, and those after which nothing more happens to the transaction. */
export const TX_STATUSES = Object.freeze(["submitted", "mined", "confirmed", "failed", "replaced", "mismatch", "dropped"]);
export const FINAL_TX_STATUSES = Object.freeze(["confirmed", "failed", "replaced", "mismatch", "dropped"]);

/** Decision types, one per action request. */
export const DECISION_TYPES = Object.freeze(["approve", "edit", "reject"]);

/** Error codes and the HTTP status of each on the HTTP mirror. */
export const ERROR_CODES = Object.freeze({
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  invalid_input: 400,
  busy: 409,
  already_decided: 409,
  approval_expired: 410,
  no_pending_approval: 409,
  policy_violation: 422,
  chain_error: 502,
  model_error: 502,
  tool_error: 502,
  internal: 500,
  rate_limited: 429,
  acknowledgement_required: 422,
  preview_changed: 409,
});
// END GENERATED

/** EIP-1193 error code of "the user rejected the request". */
export const USER_REJECTED = 4001;
/** EIP-1193 / MetaMask error code of "this chain is not added to the wallet". */
export const UNRECOGNIZED_CHAIN = 4902;

// -- event shapes ---------------------------------------------------------------------------
// Every chat event carries `type`, `chat_id`, `seq` (per chat, from 1, +1 each) and `ts`
// (Unix seconds, fractional). Unknown fields may appear and must be ignored; an absent
// optional field and `null` mean the same.

/**
 * @typedef {object} EventBase
 * @property {string} type      the event's type, also its Socket.IO event name
 * @property {string} chat_id   the chat it belongs to
 * @property {number} seq       per-chat sequence number
 * @property {number} ts        server time, Unix seconds
 */

/**
 * @typedef {EventBase & {type: "message_start", message_id: string, role: "user"|"assistant", content?: string}} MessageStart
 * @typedef {EventBase & {type: "token", message_id: string, text: string}} TokenEvent
 *   `text` is a delta; several model tokens may be coalesced into one event.
 * @typedef {EventBase & {type: "tool_call", message_id: string, call_id: string, name: string,
 *   args: Record<string, any>, status: "running"|"awaiting_approval"}} ToolCallEvent
 * @typedef {EventBase & {type: "tool_result", call_id: string, status: "success"|"error"|"rejected",
 *   result?: any, error?: ErrorBody}} ToolResultEvent
 */

/**
 * @typedef {object} UnsignedTx  every integer is a 0x-prefixed hex quantity
 * @property {string} chain_id
 * @property {string} from
 * @property {string} to
 * @property {string} value
 * @property {string} data
 * @property {string} gas
 * @property {string} max_fee_per_gas
 * @property {string} max_priority_fee_per_gas
 * @property {string} nonce
 */

/**
 * @typedef {object} ActionRequest
 * @property {string} call_id
 * @property {string} name          tool name, e.g. "transfer", "switch_network"
 * @property {Record<string, any>} args
 * @property {string} description
 * @property {string} summary       what a person reads: amount, symbol, recipient, network, fee
 * @property {UnsignedTx|null} [tx] the transaction to sign, for transfers
 * @property {ApprovalWarning[]} [warnings] what the user should know first; danger ones need acknowledging
 */

/**
 * @typedef {object} ApprovalWarning
 * @property {string} code          stable, e.g. "lookalike_recipient" (docs/safety.md lists them)
 * @property {"info"|"warning"|"danger"} severity
 * @property {string} message       a plain sentence for the user
 */

/**
 * @typedef {object} ReviewConfig
 * @property {string} action_name
 * @property {Array<"approve"|"edit"|"reject">} allowed_decisions
 */

/**
 * @typedef {object} ApprovalRequest
 * @property {string} approval_id
 * @property {string} expires_at    ISO 8601 UTC
 * @property {ActionRequest[]} action_requests
 * @property {ReviewConfig[]} review_configs
 */

/**
 * @typedef {EventBase & ApprovalRequest & {type: "pending_approval"}} PendingApprovalEvent
 * @typedef {EventBase & {type: "approval_resolved", approval_id: string, decisions: Decision[],
 *   by: "user"|"timeout"|"superseded"}} ApprovalResolvedEvent
 * @typedef {EventBase & {type: "tx_update", call_id: string, tx_hash: string, chain_id: number,
 *   status: "submitted"|"mined"|"confirmed"|"failed"|"replaced"|"mismatch"|"dropped",
 *   confirmations: number, block_number?: number, explorer_url?: string, reason?: string,
 *   replaced_by?: string, replaces?: string, gas_used?: number}} TxUpdateEvent
 * @typedef {EventBase & {type: "network_switch", chain_id: number, name: string, symbol: string,
 *   decimals: number, rpc_urls: string[], explorer_url?: string, display_name?: string}} NetworkSwitchEvent
 * @typedef {EventBase & {type: "status", text: string}} StatusEvent
 *   "thinking…", "waiting for your approval", "checking the transaction": shown while nothing else streams.
 * @typedef {{output_tokens: number, ttft_ms?: number, tokens_per_s?: number}} Usage
 * @typedef {EventBase & {type: "message_end", message_id: string,
 *   finish_reason: "stop"|"aborted"|"error"|"awaiting_approval"|"length"|"interrupted", usage: Usage,
 *   message?: string}} MessageEndEvent
 *   "length": the model stopped at its output limit; `continue_message` appends to the same message
 *   (more `token` events with its `message_id`, then a new `message_end` with that part's usage).
 *   "interrupted": the server writing it stopped (a crash); the process that took the chat over
 *   closed it with what was streamed, and `message` says so; `continue_message` goes on with it.
 * @typedef {{type: "error", chat_id?: string, seq?: number, ts?: number, code: string, message: string}} ErrorEvent
 */

/**
 * @typedef {MessageStart|TokenEvent|ToolCallEvent|ToolResultEvent|PendingApprovalEvent|
 *   ApprovalResolvedEvent|TxUpdateEvent|NetworkSwitchEvent|StatusEvent|MessageEndEvent|ErrorEvent} ChatEvent
 */

/**
 * @typedef {object} NetworkInfo  the network a chat is on
 * @property {number} chain_id
 * @property {string} name          registry key, lowercase
 * @property {string} display_name  what a person reads
 * @property {string} symbol
 * @property {number} decimals
 * @property {string[]} rpc_urls
 * @property {string|null} [explorer_url]
 */

/**
 * @typedef {{code: string, message: string}} ErrorBody
 * @typedef {{chat_id: string, last_seq: number, network: NetworkInfo, pending_approval?: ApprovalRequest}} JoinChatAck
 */

// -- decisions ------------------------------------------------------------------------------

/**
 * @typedef {{type: "approve", tx_hash?: string, signed_tx?: string, acknowledge?: string[]}} ApproveDecision
 * @typedef {{type: "edit", edited_action: {name: string, args: Record<string, any>}}} EditDecision
 * @typedef {{type: "reject", message?: string}} RejectDecision
 * @typedef {ApproveDecision|EditDecision|RejectDecision} Decision
 */

/**
 * Approve an action. With `txHash` the wallet signed and broadcast it; with `signedTx` the
 * server verifies and broadcasts; with neither only a server-side signer may sign (dev, CLI).
 * `acknowledge`: the codes of the card's danger warnings the user acknowledged (see `dangerCodes`);
 * without them the server refuses the approve with `acknowledgement_required`.
 * @param {{txHash?: string, signedTx?: string, acknowledge?: string[]}} [opts]
 * @returns {ApproveDecision}
 */
export function approve({ txHash, signedTx, acknowledge } = {}) {
  /** @type {ApproveDecision} */
  const decision = { type: "approve" };
  if (txHash) decision.tx_hash = txHash;
  if (signedTx) decision.signed_tx = signedTx;
  if (acknowledge && acknowledge.length) decision.acknowledge = [...acknowledge];
  return decision;
}

/**
 * The codes of a request's danger warnings, once each, in card order: what an approve must acknowledge.
 * @param {ActionRequest} request
 * @returns {string[]}
 */
export function dangerCodes(request) {
  const codes = [];
  for (const w of request.warnings || []) if (w.severity === "danger" && !codes.includes(w.code)) codes.push(w.code);
  return codes;
}

/**
 * Reject an action; the message (optional) reaches the model.
 * @param {string} [message]
 * @returns {RejectDecision}
 */
export function reject(message) {
  const text = typeof message === "string" ? message.trim() : "";
  return text ? { type: "reject", message: text } : { type: "reject" };
}

/**
 * Replace an action's arguments; the server validates and prepares them again and shows a
 * new approval.
 * @param {string} name  the action's own tool name
 * @param {Record<string, any>} args
 * @returns {EditDecision}
 */
export function edit(name, args) {
  return { type: "edit", edited_action: { name, args: { ...args } } };
}

/**
 * An edit of a transfer that keeps every argument but the amount.
 * @param {ActionRequest} request
 * @param {string} amount  in whole units, e.g. "0.5"
 * @returns {EditDecision}
 */
export function editAmount(request, amount) {
  return edit(request.name, { ...request.args, amount: String(amount).trim() });
}

/**
 * The decision types the approval allows for a request.
 * @param {ApprovalRequest} approval
 * @param {ActionRequest} request
 * @returns {string[]}
 */
export function allowedDecisions(approval, request) {
  const config = (approval.review_configs || []).find((c) => c.action_name === request.name);
  return config ? [...config.allowed_decisions] : ["approve", "reject"];
}

// -- wallet helpers -------------------------------------------------------------------------

/**
 * The `eth_sendTransaction` parameter for an approval's `tx`: the fields are renamed to
 * JSON-RPC's names; values are hex quantities already and are passed on unchanged.
 * @param {UnsignedTx} tx
 */
export function toEip1193Tx(tx) {
  return {
    from: tx.from,
    to: tx.to,
    value: tx.value,
    data: tx.data,
    gas: tx.gas,
    maxFeePerGas: tx.max_fee_per_gas,
    maxPriorityFeePerGas: tx.max_priority_fee_per_gas,
    nonce: tx.nonce,
    chainId: tx.chain_id,
  };
}

// -- EIP-5792 batches -------------------------------------------------------------------------

/** `wallet_getCallsStatus` codes (EIP-5792): 1xx pending, 2xx confirmed, 4xx-6xx failed. */
export const CALLS_PENDING = 100;
export const CALLS_CONFIRMED = 200;
export const CALLS_OFFCHAIN_FAILURE = 400;

/**
 * Whether a `wallet_getCapabilities` answer says the wallet sends atomic batches on `chainId`
 * (EIP-5792: `atomic.status` is "supported", or "ready" for an account it can upgrade). Keys are
 * hex chain ids; "0x0" stands for every chain.
 * @param {Record<string, any>|null|undefined} capabilities
 * @param {number|string|bigint} chainId
 */
export function canBatchAtomically(capabilities, chainId) {
  if (!capabilities || typeof capabilities !== "object") return false;
  const wanted = BigInt(chainId);
  for (const [key, value] of Object.entries(capabilities)) {
    let id;
    try { id = BigInt(key); } catch { continue; }
    if (id !== wanted && id !== 0n) continue;
    const status = value && value.atomic && value.atomic.status;
    if (status === "supported" || status === "ready") return true;
  }
  return false;
}

/**
 * `wallet_sendCalls`' parameter (EIP-5792, version 2.0.0) for an approval's transactions, in order:
 * each call's `to`, `value` and `data` are the approved ones; nonces, gas and fees are the wallet's
 * (the server accepts a nonce at or above the prepared one and a fee cap up to twice the card's).
 * @param {UnsignedTx[]} txs  all from one account on one chain
 */
export function toSendCalls(txs) {
  const [first] = txs;
  return {
    version: "2.0.0",
    chainId: first.chain_id,
    from: first.from,
    atomicRequired: true,
    calls: txs.map((tx) => ({ to: tx.to, value: tx.value, data: tx.data })),
  };
}

/**
 * The transaction hash that settles each call of a batch, from a final `wallet_getCallsStatus`
 * answer: one receipt per call, in order. A wallet that ran the whole batch as one transaction
 * (one receipt for several calls) gives that one hash for every call: the server then checks it
 * call by call like any wallet transaction, and it settles none of them.
 * @param {{receipts?: Array<{transactionHash: string}>}} status
 * @param {number} count  how many calls were sent
 * @returns {string[]}
 */
export function batchHashes(status, count) {
  const receipts = (status && status.receipts) || [];
  if (receipts.length === count) return receipts.map((r) => r.transactionHash);
  if (receipts.length >= 1) return Array.from({ length: count }, () => receipts[0].transactionHash);
  return [];
}

/** A chain id as an EIP-1193 hex string ("0x7a69"). @param {number|string|bigint} chainId */
export function toHexChainId(chainId) {
  return "0x" + BigInt(chainId).toString(16);
}

/**
 * `wallet_addEthereumChain`'s parameter (EIP-3085) from a `network_switch` event or a NetworkInfo.
 * @param {NetworkSwitchEvent|NetworkInfo} network
 */
export function toAddEthereumChain(network) {
  const params = {
    chainId: toHexChainId(network.chain_id),
    chainName: network.display_name || network.name,
    nativeCurrency: { name: network.symbol, symbol: network.symbol, decimals: network.decimals },
    rpcUrls: [...(network.rpc_urls || [])],
  };
  if (network.explorer_url) params.blockExplorerUrls = [network.explorer_url];
  return params;
}

/**
 * An integer amount (hex quantity, decimal string, number or bigint) in whole units, as text,
 * without float rounding: formatUnits("0x2386f26fc10000", 18) === "0.01".
 * @param {string|number|bigint} value
 * @param {number} decimals
 * @param {number} [maxFraction]  fraction digits to keep (rounded down); all by default
 */
export function formatUnits(value, decimals, maxFraction = decimals) {
  let n = BigInt(value);
  const negative = n < 0n;
  if (negative) n = -n;
  const base = 10n ** BigInt(decimals);
  const whole = (n / base).toString();
  let fraction = decimals ? (n % base).toString().padStart(decimals, "0").slice(0, maxFraction) : "";
  fraction = fraction.replace(/0+$/, "");
  const text = fraction ? `${whole}.${fraction}` : whole;
  return negative ? `-${text}` : text;
}

/**
 * The most a transaction can cost in fees (gas limit x max fee per gas), in wei.
 * @param {UnsignedTx} tx
 */
export function maxFeeWei(tx) {
  return BigInt(tx.gas) * BigInt(tx.max_fee_per_gas);
}

/** "0x1234…abcd" @param {string} hex */
export function shortHex(hex, head = 6, tail = 4) {
  return hex && hex.length > head + tail + 1 ? `${hex.slice(0, head)}…${hex.slice(-tail)}` : hex;
}

// Sign-In with Ethereum (the EIP-4361 message and the EIP-55 checksum) lives in siwe.js.
export { buildSiweMessage, keccak256Hex, toChecksumAddress, utf8ToHex } from "./siwe.js";
