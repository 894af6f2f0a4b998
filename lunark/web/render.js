// Rendering: every change of state goes through `dispatch` (the reducer) and reaches the DOM in
// one batched render: the header, the chat list, and a keyed timeline of messages (Markdown, the
// Continue button, per-message figures), tool calls with their transaction lines, approval cards
// and notices.

import { renderMarkdown } from "./lib/markdown.js";
import * as P from "./lib/protocol.js";
import { CONTINUABLE, reduce } from "./lib/reducer.js";
import { newId } from "./lib/transport.js";
import { app, el, h, show } from "./page.js";
import { networkLabel, networkName } from "./wallet.js";

export {
  TOOL_LABELS, addNote, toolLabel, dispatch, markChat, nearBottom, nodes, render, renderChats, renderChrome, renderTx,
  resetChat, scheduleRender, scrollToBottom, wireRender,
};

// What a chat link and the Continue button do, and how an approval card is drawn, belong to
// modules that themselves draw on this one (session.js, approvals.js): app.js hands them in, so
// that the page's imports run one way only.
const hooks = { openChat: null, continueAnswer: null, createApproval: null, updateApproval: null };

function wireRender(given) { Object.assign(hooks, given); }

const FOLLOW_SLACK_PX = 80;
const TOOL_LABELS = { get_balance: "Balance", transfer: "Transfer", switch_network: "Switch network" };

// An MCP tool is `server__tool` on the wire and `server.tool` to people, as on its approval card.
function toolLabel(name) {
  if (TOOL_LABELS[name]) return TOOL_LABELS[name];
  const at = String(name).indexOf("__");
  return at > 0 ? `${name.slice(0, at)}.${name.slice(at + 2)}` : String(name);
}

// What a tool answered, for its card: an MCP tool's `{server, tool, result}` shows its result
// (text as written, anything else as JSON), the rest as JSON.
function resultText(result) {
  const mcp = result && typeof result === "object" && !Array.isArray(result) && "server" in result && "tool" in result && "result" in result;
  const value = mcp ? result.result : result;
  return typeof value === "string" ? value : JSON.stringify(value, null, 2);
}

function safeUrl(url) {
  return typeof url === "string" && /^https?:\/\//i.test(url) ? url : null;
}

const nodes = new Map(); // "kind:id" -> {node, data: the inputs it was last rendered from}
let renderQueued = false;

function dispatch(action) {
  const next = reduce(app.state, action);
  if (next === app.state) return;
  app.state = next;
  scheduleRender();
}

function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  // requestAnimationFrame batches a burst of tokens into one paint; the timer covers hidden tabs.
  const run = () => { if (renderQueued) { renderQueued = false; render(); } };
  requestAnimationFrame(run);
  setTimeout(run, 100);
}

function nearBottom() {
  const log = el.log;
  return log.scrollHeight - log.scrollTop - log.clientHeight < FOLLOW_SLACK_PX;
}

function scrollToBottom() {
  el.log.scrollTop = el.log.scrollHeight;
  show(el.jump, false);
}

/** Show another chat (or none): the state is replaced and every timeline node goes. */
function resetChat(state) {
  app.state = state;
  app.approvalUi = {};
  for (const entry of nodes.values()) entry.node.remove();
  nodes.clear();
  render();
}

function render() {
  const follow = nearBottom();
  const before = el.log.scrollHeight;
  renderChrome();
  renderTimeline();
  if (follow) scrollToBottom();
  else if (el.log.scrollHeight > before) show(el.jump, true);
}

function renderChrome() {
  const signedIn = Boolean(app.session);
  const s = app.state;
  show(el.connect, !signedIn && Boolean(app.provider));
  show(el.signout, signedIn);
  show(el.address, signedIn);
  show(el.menu, signedIn);
  el.sidebar.hidden = !signedIn;
  document.body.classList.toggle("signed-in", signedIn);
  if (signedIn) {
    el.address.textContent = P.shortHex(app.address);
    el.address.title = app.address;
  }
  const network = s.network;
  show(el.network, signedIn && Boolean(network || app.walletChainId));
  el.network.textContent = network ? network.display_name || network.name : `Chain ${app.walletChainId}`;
  const mismatch = signedIn && network && app.walletChainId && app.walletChainId !== network.chain_id;
  show(el.walletChain, Boolean(mismatch));
  if (mismatch) {
    el.walletChain.textContent = `Wallet on ${networkName(app.walletChainId)} — switch`;
    el.walletChain.title = `Your wallet is on ${networkLabel(app.walletChainId)}; this chat is on ${networkLabel(network.chain_id)}. Ask the wallet to switch.`;
  }

  const hasChat = signedIn && (s.items.length > 0);
  show(el.welcome, !hasChat);
  show(el.log, hasChat);
  el.input.disabled = !signedIn;
  el.send.disabled = !signedIn || s.running;
  show(el.stop, signedIn && s.running && Boolean(s.chatId));
  show(el.send, !(signedIn && s.running && s.chatId));
  // What the agent is doing, while nothing else streams (the reducer clears it when text comes).
  el.status.textContent = s.status;
}

function renderChats() {
  el.chatList.replaceChildren(...app.chats.map((chat) => {
    const current = chat.chat_id === app.state.chatId;
    return h("li", {},
      h("button", {
        type: "button", class: `chat-link${chat.waiting ? " waiting" : ""}`, "aria-current": current ? "page" : null,
        "data-chat-id": chat.chat_id, onclick: () => hooks.openChat(chat.chat_id),
      }, chat.title || "New chat"));
  }));
}

function markChat(chatId) {
  app.chats = app.chats.map((c) => (c.chat_id === chatId ? { ...c, waiting: true } : c));
  renderChats();
}

function addNote(text) {
  const id = `note-${newId()}`;
  const node = h("div", { class: "notice error", role: "alert", "data-note": id }, text);
  el.log.append(node);
  nodes.set(`extra:${id}`, { node, data: null, extra: true });
  show(el.log, true);
  show(el.welcome, false);
  if (nearBottom()) scrollToBottom();
}

function isNote(node) {
  return node.nodeType === Node.ELEMENT_NODE && node.hasAttribute("data-note");
}

function renderTimeline() {
  const s = app.state;
  const wanted = new Set();
  let previous = null;
  const lastAnswer = lastAnswerId(s);
  for (const item of s.items) {
    const key = `${item.kind}:${item.id}`;
    wanted.add(key);
    const data = inputsOf(item, lastAnswer);
    let entry = nodes.get(key);
    if (!entry) {
      entry = { node: CREATE[item.kind](data), data: null };
      nodes.set(key, entry);
    }
    if (!sameInputs(entry.data, data)) {
      UPDATE[item.kind](entry.node, data);
      entry.data = data;
    }
    // A page note (addNote) stays where it was added: later items go after it, not above it.
    let expected = previous ? previous.nextSibling : el.log.firstChild;
    while (expected && expected !== entry.node && isNote(expected)) expected = expected.nextSibling;
    if (expected !== entry.node) el.log.insertBefore(entry.node, expected);
    previous = entry.node;
  }
  for (const [key, entry] of nodes) {
    if (!wanted.has(key) && !entry.extra) {
      entry.node.remove();
      nodes.delete(key);
    }
  }
}

/** What a timeline item is rendered from; re-rendered only when one of these changes. */
function inputsOf(item, lastAnswer) {
  const s = app.state;
  switch (item.kind) {
    case "message": return [s.messages[item.id], item.id === lastAnswer && !s.running];
    case "tool": return [s.tools[item.id], s.txs[item.id], s.network];
    case "approval": {
      const approval = s.approvals[item.id];
      return [approval, app.approvalUi[item.id], s.network, ...approval.action_requests.map((r) => s.txs[r.call_id])];
    }
    default: return [s.notices[item.id]];
  }
}

function lastAnswerId(s) {
  for (let i = s.items.length - 1; i >= 0; i--) {
    const item = s.items[i];
    if (item.kind === "message" && s.messages[item.id] && s.messages[item.id].role === "assistant") return item.id;
  }
  return null;
}

/** "42 tokens · 120 ms to first token · 35.0 tokens/s", over every part of a continued answer. */
function figuresText(parts) {
  const tokens = parts.reduce((n, u) => n + (u.output_tokens || 0), 0);
  if (!tokens) return "";
  const out = [`${tokens} token${tokens === 1 ? "" : "s"}${parts.length > 1 ? ` in ${parts.length} parts` : ""}`];
  const first = parts.find((u) => typeof u.ttft_ms === "number");
  if (first) out.push(`${first.ttft_ms >= 1000 ? `${(first.ttft_ms / 1000).toFixed(1)} s` : `${Math.round(first.ttft_ms)} ms`} to first token`);
  // Speed over the time spent writing: each part's tokens at its own speed.
  const timed = parts.filter((u) => u.tokens_per_s > 0);
  const seconds = timed.reduce((t, u) => t + u.output_tokens / u.tokens_per_s, 0);
  if (seconds > 0) out.push(`${(timed.reduce((n, u) => n + u.output_tokens, 0) / seconds).toFixed(1)} tokens/s`);
  return out.join(" · ");
}

function sameInputs(a, b) {
  return Boolean(a) && a.length === b.length && a.every((v, i) => v === b[i]);
}

const CREATE = {
  message: ([message]) => {
    const body = h("div", { class: "body" });
    const extra = message.role === "assistant" ? [
      h("p", { class: "cut", hidden: true },
        h("span", { class: "why" }, "The model stopped at its output limit."),
        h("button", { type: "button", class: "continue", onclick: () => hooks.continueAnswer(message.id) }, "Continue")),
      h("div", { class: "figures", hidden: true, title: "Output tokens, time to first token, tokens per second" }),
    ] : [];
    return h("article", { class: `message ${message.role}`, "aria-label": message.role === "user" ? "You" : "Lunark" },
      h("div", { class: "who", "aria-hidden": "true" }, message.role === "user" ? "You" : "Lunark"), body, ...extra);
  },
  tool: () => h("details", { class: "tool" },
    h("summary", {}, h("span", { class: "tool-name" }), h("span", { class: "badge" })),
    h("div", { class: "tx" }),
    h("div", { class: "tool-body" })),
  approval: ([approval]) => hooks.createApproval(approval),
  notice: ([notice]) => h("div", { class: `notice ${notice.level}`, role: notice.level === "error" ? "alert" : null }),
};

const UPDATE = {
  message(node, [message, canContinue]) {
    const body = node.querySelector(".body");
    node.classList.toggle("streaming", message.streaming);
    node.classList.toggle("local", Boolean(message.local));
    if (message.role === "assistant") {
      // Only the final text is rendered as Markdown; while streaming it is plain text, in a
      // polite live region, with a cursor that screen readers skip.
      const empty = !message.text && !message.streaming;
      node.hidden = empty;
      if (message.streaming) {
        body.setAttribute("aria-live", "polite");
        body.replaceChildren(document.createTextNode(message.text || ""), h("span", { class: "cursor", "aria-hidden": "true" }));
      } else {
        body.removeAttribute("aria-live");
        body.innerHTML = renderMarkdown(message.text); // escaped by renderMarkdown
        if (message.finishReason === "aborted") body.append(h("span", { class: "tag" }, "stopped"));
        if (message.finishReason === "error") body.append(h("span", { class: "tag error" }, "failed"));
        if (message.finishReason === "interrupted") body.append(h("span", { class: "tag interrupted" }, "interrupted"));
      }
      const figures = node.querySelector(".figures");
      figures.textContent = message.streaming ? "" : figuresText(message.parts || []);
      figures.hidden = !figures.textContent;
      // Only the chat's last answer can be continued, and not while a turn runs.
      const cut = node.querySelector(".cut");
      node.classList.toggle("interrupted", message.finishReason === "interrupted");
      cut.hidden = !(CONTINUABLE.has(message.finishReason) && canContinue);
      cut.querySelector(".why").textContent = message.finishReason === "interrupted"
        ? (message.note || "The server writing this answer stopped before it was done.")
        : "The model stopped at its output limit.";
      cut.querySelector("button").disabled = app.state.running;
    } else {
      body.replaceChildren(document.createTextNode(message.text));
      if (message.error) body.append(h("div", { class: "send-error", role: "alert" }, `Not sent: ${message.error.message}`));
    }
  },

  tool(node, [tool, tx, network]) {
    const label = toolLabel(tool.name);
    node.dataset.callId = tool.callId;
    node.dataset.status = tool.status;
    node.className = `tool ${tool.status}`;
    node.querySelector(".tool-name").textContent = label;
    node.querySelector(".badge").textContent = STATUS_LABELS[tool.status] || tool.status;
    // Collapsed unless it failed: the approval card and the answer say the rest.
    node.open = tool.status === "error";
    renderTx(node.querySelector(".tx"), tx, network);
    const body = node.querySelector(".tool-body");
    const parts = [h("div", { class: "label" }, "Arguments"), h("pre", {}, JSON.stringify(tool.args, null, 2))];
    if (tool.result !== undefined && tool.result !== null) {
      parts.push(h("div", { class: "label" }, "Result"), h("pre", { class: "result" }, resultText(tool.result)));
    }
    if (tool.error) parts.push(h("div", { class: "label" }, "Error"), h("pre", { class: "error" }, tool.error.message || JSON.stringify(tool.error)));
    body.replaceChildren(...parts);
  },

  approval(node, [approval, ui, network, ...txs]) {
    hooks.updateApproval(node, approval, ui || {}, network, txs);
  },

  notice(node, [notice]) {
    node.textContent = notice.text;
  },
};

const STATUS_LABELS = {
  running: "running", awaiting_approval: "awaiting approval", success: "success", error: "error", rejected: "rejected",
  // Set aside, not refused: neutral (style.css), and nothing was sent.
  postponed: "postponed", superseded: "set aside",
};

const TX_TEXT = {
  submitted: () => "Submitted — waiting to be mined",
  mined: (tx) => `Mined in block ${tx.blockNumber} (${tx.confirmations} confirmation${tx.confirmations === 1 ? "" : "s"})`,
  confirmed: (tx) => `Confirmed in block ${tx.blockNumber} (${tx.confirmations} confirmation${tx.confirmations === 1 ? "" : "s"})`,
  failed: (tx) => `Failed${tx.reason ? `: ${tx.reason}` : ""}`,
  replaced: (tx) => `Replaced${tx.replacedBy ? ` by ${P.shortHex(tx.replacedBy)}` : ""}`,
  mismatch: (tx) => `Mismatch — not the approved transaction${tx.onchain ? ` (on chain: ${tx.onchain})` : ""}${tx.reason ? `: ${tx.reason}` : ""}`,
  dropped: (tx) => `Dropped${tx.reason ? `: ${tx.reason}` : ""}`,
};

function renderTx(container, tx, network) {
  if (!tx) {
    container.hidden = true;
    container.replaceChildren();
    return;
  }
  container.hidden = false;
  container.className = `tx tx-${tx.status}`;
  container.dataset.status = tx.status;
  const text = (TX_TEXT[tx.status] || (() => tx.status))(tx);
  const parts = [h("span", { class: "tx-status" }, text)];
  if (tx.txHash) parts.push(" · ", h("span", { class: "mono", title: tx.txHash }, P.shortHex(tx.txHash, 10, 8)));
  const url = safeUrl(tx.explorerUrl) || explorerTxUrl(network, tx);
  if (url) parts.push(" · ", h("a", { href: url, target: "_blank", rel: "noopener noreferrer" }, "View on explorer"));
  container.replaceChildren(...parts);
}

function explorerTxUrl(network, tx) {
  const base = tx.txHash && network && network.chain_id === tx.chainId ? safeUrl(network.explorer_url) : null;
  return base ? `${base.replace(/\/+$/, "")}/tx/${tx.txHash}` : null;
}
