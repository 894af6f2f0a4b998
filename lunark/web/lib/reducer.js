// The chat state of one conversation, built by applying Lunark's chat events in order.
//
//   let state = initialState();
//   state = reduce(state, { type: "local:joined", ack });          // join_chat's ack
//   socket.onAny((type, event) => { state = reduce(state, { ...event, type }); render(state); });
//
// `reduce` is pure: it never mutates its arguments, returns the same object when an event
// changes nothing (a repeat, another chat's event), and has no I/O, clocks or randomness, so
// replaying the same events always yields the same state. Events are deduplicated by `seq`:
// one whose seq was already applied is ignored; one that skips a seq is not applied and sets
// `gap`, the cue to re-join with `last_seq` so the server fills the hole.
//
// Besides server events it takes a few local actions, all named "local:…":
//   {type: "local:joined", ack, lastSeq?}   the join_chat ack (chat id, network, pending approval)
//   {type: "local:message", client_message_id, content}   the user's message, shown at once
//   {type: "local:message_ack", client_message_id, message_id}
//   {type: "local:message_failed", client_message_id, error: {code, message}}
//   {type: "local:network", network}        the chat's network changed (wallet_changed ack)
//   {type: "local:continue", message_id}    Continue was clicked under an answer cut at the output limit
//                                           or interrupted (its server stopped mid-answer)
//   {type: "local:continue_failed", message_id}   ... and the server refused it

/**
 * @typedef {import("./protocol.js").ChatEvent} ChatEvent
 * @typedef {import("./protocol.js").NetworkInfo} NetworkInfo
 * @typedef {import("./protocol.js").ApprovalRequest} ApprovalRequest
 */

/**
 * @typedef {object} Message
 * @property {string} id             server message id, or "local:<client_message_id>" until known
 * @property {"user"|"assistant"} role
 * @property {string} text
 * @property {boolean} streaming     true between message_start and message_end (assistant)
 * @property {string|null} finishReason   "length": cut at the model's output limit, may be continued;
 *                                   "interrupted": its server stopped mid-answer, may be continued too
 * @property {string|null} [note]    the message_end's sentence for people (with "interrupted")
 * @property {object|null} usage     the latest message_end's usage
 * @property {object[]} [parts]      the usage of every message_end of it (one per part, when continued)
 * @property {boolean} [local]       shown before the server confirmed it
 * @property {string} [clientMessageId]
 * @property {object} [error]        the send failed: {code, message}
 */

/**
 * @typedef {object} ToolCard
 * @property {string} callId
 * @property {string} messageId
 * @property {string} name
 * @property {Record<string, any>} args
 * @property {"running"|"awaiting_approval"|"success"|"error"|"rejected"|"postponed"|"superseded"} status
 * @property {any} result
 * @property {object|null} error
 */

/**
 * @typedef {ApprovalRequest & {status: "pending"|"resolved"|"expired", decisions: object[]|null,
 *   by: "user"|"timeout"|"superseded"|null, seq: number|null}} Approval
 */

/**
 * @typedef {object} TxState
 * @property {string} callId
 * @property {string} txHash
 * @property {number} chainId
 * @property {string} status         submitted | mined | confirmed | failed | replaced | mismatch | dropped
 * @property {number} confirmations
 * @property {number|null} blockNumber
 * @property {string|null} explorerUrl
 * @property {string|null} reason
 * @property {string[]} history      every status seen, in order
 */

/**
 * @typedef {object} ChatState
 * @property {string|null} chatId
 * @property {number} lastSeq          the highest seq applied (events come in order)
 * @property {{after: number, got: number}|null} gap
 * @property {NetworkInfo|null} network     the chat's network now
 * @property {Record<number, NetworkInfo>} networks  every network seen, by chain id
 * @property {Array<{kind: "message"|"tool"|"approval"|"notice", id: string}>} items  the timeline
 * @property {Record<string, Message>} messages
 * @property {Record<string, ToolCard>} tools
 * @property {Record<string, Approval>} approvals
 * @property {Record<string, TxState>} txs      by call_id
 * @property {Record<string, {id: string, level: "info"|"error", text: string, code?: string}>} notices
 * @property {string|null} pendingApprovalId
 * @property {boolean} running         a turn is under way (the stop button shows)
 * @property {string} status           the status line while nothing else streams: "thinking…",
 *                                     "waiting for your approval", "checking the transaction"; "" for none
 * @property {object|null} lastNetworkSwitch  the latest network_switch event applied
 */

/** @param {string|null} [chatId] @returns {ChatState} */
export function initialState(chatId = null) {
  return {
    chatId,
    lastSeq: 0,
    gap: null,
    network: null,
    networks: {},
    items: [],
    messages: {},
    tools: {},
    approvals: {},
    txs: {},
    notices: {},
    pendingApprovalId: null,
    running: false,
    status: "",
    lastNetworkSwitch: null,
  };
}

/**
 * Apply one event (or local action) to the state.
 * @param {ChatState} state
 * @param {ChatEvent|{type: string, [k: string]: any}} event
 * @returns {ChatState}
 */
export function reduce(state, event) {
  if (!event || typeof event !== "object" || typeof event.type !== "string") return state;
  const local = LOCAL[event.type];
  if (local) return local(state, event);

  if (event.chat_id != null && state.chatId != null && event.chat_id !== state.chatId) return state;
  const seq = event.seq;
  if (typeof seq === "number") {
    if (seq <= state.lastSeq) return state; // applied already: replay overlap, or the user room's copy
    if (seq > state.lastSeq + 1) {
      if (state.gap && state.gap.after === state.lastSeq && state.gap.got <= seq) return state;
      return { ...state, gap: { after: state.lastSeq, got: seq } };
    }
  }
  const handler = HANDLERS[event.type];
  let next = handler ? handler(state, event) : state;
  if (typeof seq === "number") {
    next = { ...next, lastSeq: seq, gap: null };
    if (next.chatId == null && event.chat_id != null) next.chatId = event.chat_id;
  }
  return next;
}

/** Apply many events in order. @param {ChatState} state @param {Iterable<object>} events */
export function reduceAll(state, events) {
  for (const event of events) state = reduce(state, event);
  return state;
}

// -- selectors --------------------------------------------------------------------------------

/** The approval waiting for a decision, or null. @param {ChatState} state */
export function pendingApproval(state) {
  const approval = state.pendingApprovalId ? state.approvals[state.pendingApprovalId] : null;
  return approval && approval.status === "pending" ? approval : null;
}

/** The decision an approval took for one call, if resolved. @param {Approval} approval @param {string} callId */
export function decisionFor(approval, callId) {
  if (!approval.decisions) return null;
  const index = approval.action_requests.findIndex((r) => r.call_id === callId);
  return index >= 0 ? approval.decisions[index] || null : null;
}

// -- server events ----------------------------------------------------------------------------

const HANDLERS = {
  message_start(state, e) {
    if (e.role === "user") {
      const localId = findLocal(state, e);
      const message = {
        id: e.message_id, role: "user", text: e.content ?? "", streaming: false,
        finishReason: "stop", usage: null,
      };
      if (localId) {
        const { [localId]: _dropped, ...messages } = state.messages;
        return {
          ...state,
          messages: { ...messages, [e.message_id]: message },
          items: state.items.map((it) => (it.kind === "message" && it.id === localId ? { kind: "message", id: e.message_id } : it)),
          running: true,
        };
      }
      if (state.messages[e.message_id]) return { ...state, running: true };
      return { ...addItem(state, "message", e.message_id, "messages", message), running: true };
    }
    if (state.messages[e.message_id]) return { ...state, running: true };
    const message = {
      id: e.message_id, role: e.role || "assistant", text: e.content ?? "", streaming: true,
      finishReason: null, usage: null,
    };
    return { ...addItem(state, "message", e.message_id, "messages", message), running: true };
  },

  token(state, e) {
    const current = state.messages[e.message_id];
    if (!current) {
      const message = {
        id: e.message_id, role: "assistant", text: String(e.text ?? ""), streaming: true,
        finishReason: null, usage: null,
      };
      return { ...addItem(state, "message", e.message_id, "messages", message), running: true, status: "" };
    }
    // Text after the message ended is its continuation (continue_message): it streams again.
    const next = setIn(state, "messages", e.message_id, {
      ...current, text: current.text + String(e.text ?? ""), streaming: true, finishReason: null,
    });
    return { ...next, running: true, status: "" };
  },

  tool_call(state, e) {
    const current = state.tools[e.call_id];
    const card = {
      callId: e.call_id,
      messageId: e.message_id,
      name: e.name,
      args: e.args || {},
      status: e.status,
      result: current ? current.result : undefined,
      error: current ? current.error : null,
    };
    if (current) return setIn(state, "tools", e.call_id, card);
    return addBeforeAnswer(state, "tool", e.call_id, "tools", card);
  },

  tool_result(state, e) {
    const current = state.tools[e.call_id] || {
      callId: e.call_id, messageId: null, name: e.name || "tool", args: {}, status: "running", result: undefined, error: null,
    };
    const card = { ...current, status: e.status, result: e.result, error: e.error ?? null };
    if (state.tools[e.call_id]) return setIn(state, "tools", e.call_id, card);
    return addItem(state, "tool", e.call_id, "tools", card);
  },

  pending_approval(state, e) {
    const approval = approvalFrom(e, state.approvals[e.approval_id]);
    const next = state.approvals[e.approval_id]
      ? setIn(state, "approvals", e.approval_id, approval)
      : addItem(state, "approval", e.approval_id, "approvals", approval);
    return approval.status === "pending" ? { ...next, pendingApprovalId: e.approval_id } : next;
  },

  approval_resolved(state, e) {
    const current = state.approvals[e.approval_id];
    const resolved = {
      ...(current || { approval_id: e.approval_id, expires_at: null, action_requests: [], review_configs: [], seq: null }),
      status: e.by === "timeout" ? "expired" : "resolved",
      decisions: e.decisions || [],
      by: e.by,
    };
    let next = current
      ? setIn(state, "approvals", e.approval_id, resolved)
      : addItem(state, "approval", e.approval_id, "approvals", resolved);
    if (next.pendingApprovalId === e.approval_id) next = { ...next, pendingApprovalId: null };
    return { ...next, status: "" }; // no longer waiting; what happens next says itself
  },

  tx_update(state, e) {
    const current = state.txs[e.call_id];
    const tx = {
      callId: e.call_id,
      txHash: e.tx_hash,
      chainId: e.chain_id,
      status: e.status,
      confirmations: e.confirmations ?? 0,
      blockNumber: e.block_number ?? null,
      explorerUrl: e.explorer_url ?? (current && current.txHash === e.tx_hash ? current.explorerUrl : null),
      reason: e.reason ?? null,
      replacedBy: e.replaced_by ?? null,
      onchain: e.onchain ?? null,
      history: [...(current ? current.history : []), e.status],
    };
    return setIn(state, "txs", e.call_id, tx);
  },

  network_switch(state, e) {
    const network = {
      chain_id: e.chain_id,
      name: e.name,
      display_name: e.display_name || e.name,
      symbol: e.symbol,
      decimals: e.decimals,
      rpc_urls: e.rpc_urls || [],
      explorer_url: e.explorer_url ?? null,
    };
    const id = `network:${e.seq ?? e.chain_id}`;
    const notice = { id, level: "info", text: `Switched to ${network.display_name} (chain ${network.chain_id}).` };
    return { ...addBeforeAnswer(state, "notice", id, "notices", notice), ...withNetwork(state, network), lastNetworkSwitch: e };
  },

  status(state, e) {
    return { ...state, status: String(e.text ?? ""), running: true };
  },

  message_end(state, e) {
    const current = state.messages[e.message_id];
    let next = state;
    if (current) {
      const { cutBy: _continued, ...rest } = current; // a continuation is over: it reads as a replay would
      next = setIn(state, "messages", e.message_id, {
        ...rest, streaming: false, finishReason: e.finish_reason, usage: e.usage ?? null,
        note: typeof e.message === "string" ? e.message : null,
        parts: [...(rest.parts || []), ...(e.usage ? [e.usage] : [])],
      });
    }
    // An approval keeps waiting after the turn ended: so does its status line.
    const status = e.finish_reason === "awaiting_approval" ? state.status : "";
    return { ...next, running: false, status };
  },

  error(state, e) {
    const id = `error:${e.seq ?? Object.keys(state.notices).length}`;
    const notice = { id, level: "error", code: e.code, text: String(e.message ?? e.code ?? "Error") };
    return addBeforeAnswer(state, "notice", id, "notices", notice);
  },
};

// -- local actions ------------------------------------------------------------------------------

/** How an answer that continue_message goes on with ended: cut at the output limit, or by a crash. */
export const CONTINUABLE = new Set(["length", "interrupted"]);

const LOCAL = {
  "local:joined"(state, { ack, lastSeq }) {
    if (!ack || typeof ack !== "object") return state;
    // A fresh state (chatId null) keeps what it shows, e.g. a first message typed before the
    // chat existed; another chat's state is dropped.
    let next = state.chatId === ack.chat_id ? state
      : state.chatId == null ? { ...state, chatId: ack.chat_id } : initialState(ack.chat_id);
    if (ack.network) next = { ...next, ...withNetwork(next, ack.network) };
    // A client that joined without replay starts at the chat's current seq.
    if (typeof lastSeq === "number" && lastSeq > next.lastSeq) next.lastSeq = lastSeq;
    const pending = ack.pending_approval;
    if (pending && !next.approvals[pending.approval_id]) {
      next = addItem(next, "approval", pending.approval_id, "approvals", approvalFrom(pending, undefined));
      next.pendingApprovalId = pending.approval_id;
    }
    return next;
  },

  "local:message"(state, { client_message_id: cid, content }) {
    const id = `local:${cid}`;
    if (state.messages[id]) return state;
    const message = {
      id, role: "user", text: String(content), streaming: false, finishReason: null, usage: null,
      local: true, clientMessageId: cid,
    };
    return { ...addItem(state, "message", id, "messages", message), running: true, status: "thinking…" };
  },

  "local:message_ack"(state, { client_message_id: cid, message_id }) {
    const id = `local:${cid}`;
    const current = state.messages[id];
    if (!current) return state; // message_start came first and replaced it
    return setIn(state, "messages", id, { ...current, serverId: message_id });
  },

  "local:message_failed"(state, { client_message_id: cid, error }) {
    const id = `local:${cid}`;
    const current = state.messages[id];
    if (!current) return state;
    return { ...setIn(state, "messages", id, { ...current, error: error || { code: "internal", message: "Not sent." } }), running: false };
  },

  "local:network"(state, { network }) {
    return network ? { ...state, ...withNetwork(state, network) } : state;
  },

  "local:continue"(state, { message_id: id }) {
    const current = state.messages[id];
    if (!current || !CONTINUABLE.has(current.finishReason)) return state;
    return {
      ...setIn(state, "messages", id, { ...current, streaming: true, finishReason: null, cutBy: current.finishReason }),
      running: true, status: "thinking…",
    };
  },

  "local:continue_failed"(state, { message_id: id }) {
    const current = state.messages[id];
    if (!current || !current.streaming || current.text.length === 0) return state;
    const finishReason = current.cutBy || "length"; // as it was before Continue was clicked
    return { ...setIn(state, "messages", id, { ...current, streaming: false, finishReason }), running: false, status: "" };
  },
};

// -- helpers --------------------------------------------------------------------------------------

function addItem(state, kind, id, table, value) {
  return {
    ...state,
    [table]: { ...state[table], [id]: value },
    items: [...state.items, { kind, id }],
  };
}

/**
 * Add an item above the assistant message being written when it has no text yet: a tool call
 * or a notice that happens before the answer then reads above it, in the order things happened.
 */
function addBeforeAnswer(state, kind, id, table, value) {
  let at = -1;
  for (let i = state.items.length - 1; i >= 0; i--) {
    const item = state.items[i];
    if (item.kind !== "message") continue;
    const m = state.messages[item.id];
    if (m && m.role === "assistant" && m.streaming && !m.text) at = i;
    break;
  }
  if (at < 0) return addItem(state, kind, id, table, value);
  return {
    ...state,
    [table]: { ...state[table], [id]: value },
    items: [...state.items.slice(0, at), { kind, id }, ...state.items.slice(at)],
  };
}

function withNetwork(state, network) {
  return { network, networks: { ...state.networks, [network.chain_id]: network } };
}

function setIn(state, table, id, value) {
  return { ...state, [table]: { ...state[table], [id]: value } };
}

function approvalFrom(e, current) {
  return {
    approval_id: e.approval_id,
    expires_at: e.expires_at,
    action_requests: e.action_requests || [],
    review_configs: e.review_configs || [],
    status: current ? current.status : "pending",
    decisions: current ? current.decisions : null,
    by: current ? current.by : null,
    seq: e.seq ?? (current ? current.seq : null),
  };
}

/** The local (unconfirmed) message a user message_start confirms: by server id, else by content. */
function findLocal(state, e) {
  let byContent = null;
  for (const item of state.items) {
    if (item.kind !== "message") continue;
    const m = state.messages[item.id];
    if (!m || !m.local) continue;
    if (m.serverId === e.message_id) return m.id;
    if (byContent === null && !m.serverId && m.text === e.content) byContent = m.id;
  }
  return byContent;
}
