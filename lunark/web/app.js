// The Lunark dApp: a wallet-connected chat with the agent. No build step: ES modules served as is.
//
// Data flow: wallet (EIP-1193) -> sign-in (SIWE) -> transport (Socket.IO) -> reducer (pure) -> DOM.
// Every server event goes through `reduce`; the DOM is updated from the state by a small keyed
// renderer, so a replay after a reload or a reconnect shows exactly what a live session showed.
// Untrusted text (model output, tool results, anything from the server) only ever reaches the
// DOM through textContent or lib/markdown.js, which escapes it.

import { io } from "/vendor/socket.io.esm.min.js";

import { renderMarkdown } from "./lib/markdown.js";
import * as P from "./lib/protocol.js";
import { decisionFor, initialState, reduce } from "./lib/reducer.js";
import { LunarkTransport, newId } from "./lib/transport.js";

const SESSION_KEY = "lunark.session";
const STATEMENT = "Sign in to Lunark.";
const FOLLOW_SLACK_PX = 80;
const TOOL_LABELS = { get_balance: "Balance", transfer: "Transfer", switch_network: "Switch network" };

const $ = (id) => document.getElementById(id);
const el = {
  menu: $("menu"), network: $("network"), walletChain: $("wallet-chain"), address: $("address"),
  connect: $("connect"), signout: $("signout"), banner: $("banner"), sidebar: $("sidebar"),
  newChat: $("new-chat"), chatList: $("chat-list"), welcome: $("welcome"), welcomeNote: $("welcome-note"),
  log: $("log"), jump: $("jump"), status: $("status"), composer: $("composer"), input: $("input"),
  send: $("send"), stop: $("stop"),
};

/** Everything the page knows; `state` is the reducer's, the rest is the page's own. */
const app = {
  provider: window.ethereum || null,
  address: null,           // checksummed
  walletChainId: null,     // number
  session: null,           // {token, address, expires_at}
  transport: null,
  state: initialState(),
  chats: [],
  approvalUi: {},          // approval_id -> {mode: null|"reject"|"edit", busy: string|null, error: string|null}
};
// For debugging in the console and for the end-to-end tests; the page never reads it back.
window.lunark = app;

// -- small DOM helpers ------------------------------------------------------------------------

/** Create an element; children are nodes or strings (always text, never HTML). */
function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function show(node, visible) { node.hidden = !visible; }

function safeUrl(url) {
  return typeof url === "string" && /^https?:\/\//i.test(url) ? url : null;
}

function describeError(err) {
  if (!err) return "Something went wrong.";
  if (err.code === P.USER_REJECTED) return "You rejected the request in your wallet.";
  return err.message || String(err);
}

// -- HTTP ---------------------------------------------------------------------------------------

async function api(path, { method = "GET", body, token } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error((data.error && data.error.message) || `${method} ${path} failed (${response.status}).`);
    error.code = data.error && data.error.code;
    error.status = response.status;
    throw error;
  }
  return data;
}

// -- wallet and sign-in -------------------------------------------------------------------------

async function connectWallet() {
  if (!app.provider) return;
  el.connect.disabled = true;
  el.welcomeNote.textContent = "Confirm in your wallet…";
  try {
    const [account] = await app.provider.request({ method: "eth_requestAccounts" });
    if (!account) throw new Error("The wallet shared no account.");
    app.address = P.toChecksumAddress(account);
    app.walletChainId = Number(BigInt(await app.provider.request({ method: "eth_chainId" })));
    const session = await signIn(app.address, app.walletChainId);
    sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
    el.welcomeNote.textContent = "";
    await startSession(session);
  } catch (err) {
    el.welcomeNote.textContent = err.code === P.USER_REJECTED
      ? "Sign-in cancelled in the wallet."
      : `Could not sign in: ${describeError(err)}`;
  } finally {
    el.connect.disabled = false;
  }
}

async function signIn(address, chainId) {
  const { nonce } = await api("/auth/nonce");
  const message = P.buildSiweMessage({
    domain: location.host, address, statement: STATEMENT, uri: location.origin, chainId, nonce,
  });
  const signature = await app.provider.request({ method: "personal_sign", params: [P.utf8ToHex(message), address] });
  return api("/auth/verify", { method: "POST", body: { message, signature } });
}

/** A stored session that is still valid for the wallet's current account, or null. */
async function storedSession() {
  let session;
  try { session = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null"); } catch { session = null; }
  if (!session || !session.token || Date.parse(session.expires_at) <= Date.now()) return null;
  const [account] = await app.provider.request({ method: "eth_accounts" });
  if (!account || account.toLowerCase() !== session.address.toLowerCase()) return null;
  app.address = P.toChecksumAddress(account);
  app.walletChainId = Number(BigInt(await app.provider.request({ method: "eth_chainId" })));
  return session;
}

async function startSession(session) {
  app.session = session;
  const transport = new LunarkTransport({ io, token: session.token, lastSeq: () => app.state.lastSeq });
  app.transport = transport;
  transport.onEvent(onEvent);
  transport.onState(onTransportState);
  transport.onJoined((ack) => { if (ack.chat_id === app.state.chatId || app.state.chatId === null) dispatch({ type: "local:joined", ack }); });
  transport.connect();
  renderChrome();
  // The composer works at once: the first message starts a chat (sendMessage joins a new one),
  // so nothing here waits for the chat list before the user can type.
  const wanted = decodeURIComponent(location.hash.slice(1));
  const opened = /^[A-Za-z0-9_.:-]{1,128}$/.test(wanted) ? openChat(wanted) : newChat();
  el.input.focus();
  await Promise.all([opened, refreshChats()]);
}

function signOut(note = "") {
  sessionStorage.removeItem(SESSION_KEY);
  if (app.transport) app.transport.close();
  app.transport = null;
  app.session = null;
  app.chats = [];
  app.approvalUi = {};
  history.replaceState(null, "", location.pathname);
  resetChat(initialState());
  el.welcomeNote.textContent = note;
  renderChrome();
}

async function onChainChanged(chainHex) {
  app.walletChainId = Number(BigInt(chainHex));
  renderChrome();
  const chatId = app.state.chatId;
  if (!app.transport || !chatId) return;
  if (app.state.network && app.state.network.chain_id === app.walletChainId) return;
  try {
    const ack = await app.transport.walletChanged(chatId, app.walletChainId);
    if (app.state.chatId === chatId) dispatch({ type: "local:network", network: ack.network });
  } catch (err) {
    addNote(`The wallet moved to chain ${app.walletChainId}, which this server does not know: ${describeError(err)}`);
  }
}

function onAccountsChanged(accounts) {
  if (!app.session) return;
  const [account] = accounts || [];
  if (!account || account.toLowerCase() !== app.session.address.toLowerCase()) {
    signOut("The wallet switched accounts. Sign in again with the account you want to use.");
  }
}

/** Ask the wallet to move to a network; add it first when the wallet does not know it (4902). */
async function switchWallet(network) {
  const chainId = P.toHexChainId(network.chain_id);
  try {
    await app.provider.request({ method: "wallet_switchEthereumChain", params: [{ chainId }] });
  } catch (err) {
    if (!err || err.code !== P.UNRECOGNIZED_CHAIN) throw err;
    try {
      await app.provider.request({ method: "wallet_addEthereumChain", params: [P.toAddEthereumChain(network)] });
    } catch (addErr) {
      // Keep the wallet's code (4001 stays a rejection) and remember which question it refused.
      throw Object.assign(new Error(describeError(addErr)), { code: addErr && addErr.code, adding: true });
    }
  }
}

/** A network's name for people when the page has seen it, else `unknown` (its chain id). */
function networkName(chainId, unknown = `chain ${chainId}`) {
  const known = app.state.networks[chainId];
  return known ? known.display_name || known.name : unknown;
}

/** The name and the chain id, for sentences that must not be ambiguous. */
function networkLabel(chainId) {
  return app.state.networks[chainId] ? `${networkName(chainId)} (chain ${chainId})` : `chain ${chainId}`;
}

/**
 * What the page says when the wallet did not move to `network`. The chat's network changes on
 * approval whatever the wallet does, so say where each one is rather than let them drift apart.
 */
function walletRefusal(err, network) {
  const name = network.display_name || network.name || `chain ${network.chain_id}`;
  const asked = err && err.adding ? `did not add ${name}` : `did not switch to ${name}`;
  const why = err && err.code === P.USER_REJECTED
    ? "you rejected the request in your wallet."
    : describeError(err).replace(/([^.!?])$/, "$1.");
  const parts = [`Your wallet ${asked}: ${why}`, `It is still on ${networkLabel(app.walletChainId)}.`];
  if (app.state.network && app.state.network.chain_id === network.chain_id) {
    parts.push(`This chat is on ${name}: balances are read there, and approving a transfer will ask your wallet to switch again.`);
  }
  return parts.join(" ");
}

// -- chats --------------------------------------------------------------------------------------

async function refreshChats() {
  if (!app.session) return;
  try {
    const { chats } = await api("/api/chats", { token: app.session.token });
    app.chats = chats;
  } catch (err) {
    if (err.status === 401) return signOut("Your session has expired. Sign in again.");
  }
  renderChats();
}

function resetChat(state) {
  app.state = state;
  app.approvalUi = {};
  for (const entry of nodes.values()) entry.node.remove();
  nodes.clear();
  render();
}

async function openChat(chatId) {
  if (!app.transport) return;
  closeSidebar();
  resetChat(initialState(chatId));
  history.replaceState(null, "", `#${encodeURIComponent(chatId)}`);
  renderChats();
  try {
    await app.transport.join(chatId, { lastSeq: 0 });
  } catch (err) {
    if (app.state.chatId !== chatId) return;
    newChat();
    addNote(`Could not open that chat: ${describeError(err)}`);
  }
}

function newChat() {
  if (app.transport) app.transport.leave();
  closeSidebar();
  // The new chat will be made on the server's default network; until then show the last one seen.
  resetChat({ ...initialState(), network: app.state.network, networks: app.state.networks });
  history.replaceState(null, "", location.pathname);
  renderChats();
  el.input.focus();
}

async function sendMessage(content) {
  const text = content.trim();
  if (!text || !app.transport) return;
  const cid = newId("m");
  dispatch({ type: "local:message", client_message_id: cid, content: text });
  scrollToBottom();
  try {
    if (!app.state.chatId) {
      const ack = await app.transport.join(); // a new chat
      history.replaceState(null, "", `#${encodeURIComponent(ack.chat_id)}`);
    }
    const ack = await app.transport.sendMessage(app.state.chatId, text, cid);
    dispatch({ type: "local:message_ack", client_message_id: cid, message_id: ack.message_id });
    refreshChats();
  } catch (err) {
    dispatch({ type: "local:message_failed", client_message_id: cid, error: { code: err.code, message: describeError(err) } });
  }
}

/** Continue an answer the model cut at its output limit: more text for the same message. */
async function continueAnswer(messageId) {
  const chatId = app.state.chatId;
  if (!app.transport || !chatId) return;
  dispatch({ type: "local:continue", message_id: messageId });
  try {
    await app.transport.continueMessage(chatId, messageId);
  } catch (err) {
    if (app.state.chatId !== chatId) return;
    dispatch({ type: "local:continue_failed", message_id: messageId });
    addNote(`Could not continue the answer: ${describeError(err)}`);
  }
}

// -- events -------------------------------------------------------------------------------------

let rejoinTimer = null;

function onEvent(event, { live }) {
  if (event.chat_id && event.chat_id !== app.state.chatId) {
    // A wallet event of another chat (user room): the list shows it is waiting.
    if (event.type === "pending_approval") markChat(event.chat_id);
    return;
  }
  const before = app.state;
  dispatch(event);
  if (app.state === before) return;
  if (app.state.gap && !rejoinTimer) {
    // A seq was skipped: re-join from the last applied one and the server fills the hole.
    rejoinTimer = setTimeout(() => {
      rejoinTimer = null;
      if (app.state.gap && app.transport && app.state.chatId) {
        app.transport.join(app.state.chatId, { lastSeq: app.state.lastSeq }).catch(() => {});
      }
    }, 250);
  }
  if (event.type === "network_switch" && live) followNetworkSwitch(event);
  if (event.type === "message_end" && live) refreshChats();
}

async function followNetworkSwitch(event) {
  if (!app.provider || app.walletChainId === event.chain_id) return;
  try {
    await switchWallet(event);
  } catch (err) {
    addNote(walletRefusal(err, event));
  }
}

function onTransportState(state) {
  show(el.banner, state === "reconnecting");
  if (state === "unauthorized") signOut("Your session has expired. Sign in again.");
}

// -- approvals ----------------------------------------------------------------------------------

function setApprovalUi(id, patch) {
  app.approvalUi = { ...app.approvalUi, [id]: { mode: null, busy: null, error: null, ...app.approvalUi[id], ...patch } };
  scheduleRender();
}

async function decide(approval, decisions) {
  const chatId = app.state.chatId;
  try {
    await app.transport.decide(chatId, approval.approval_id, decisions);
    setApprovalUi(approval.approval_id, { busy: null, mode: null, error: null });
  } catch (err) {
    setApprovalUi(approval.approval_id, { busy: null, error: describeError(err) });
  }
}

async function approveAction(approval) {
  const id = approval.approval_id;
  setApprovalUi(id, { busy: "Confirm in your wallet…", error: null, mode: null });
  const decisions = [];
  const requests = approval.action_requests;
  for (let i = 0; i < requests.length; i++) {
    const request = requests[i];
    if (!request.tx) {
      decisions.push(P.approve());
      continue;
    }
    try {
      const chainId = Number(BigInt(request.tx.chain_id));
      if (app.walletChainId !== chainId) {
        await switchWallet(app.state.network && app.state.network.chain_id === chainId ? app.state.network : { chain_id: chainId, name: `chain ${chainId}`, symbol: "ETH", decimals: 18, rpc_urls: [] });
      }
      const txHash = await app.provider.request({ method: "eth_sendTransaction", params: [P.toEip1193Tx(request.tx)] });
      decisions.push(P.approve({ txHash }));
    } catch (err) {
      if (err && err.code === P.USER_REJECTED) {
        // The wallet's own "no" is the user's decision: reject this action and the rest.
        while (decisions.length < requests.length) decisions.push(P.reject("I rejected the transaction in my wallet."));
        break;
      }
      setApprovalUi(id, { busy: null, error: `The wallet did not send it: ${describeError(err)}` });
      return;
    }
  }
  setApprovalUi(id, { busy: "Sending your decision…" });
  await decide(approval, decisions);
}

function rejectAction(approval, reason) {
  setApprovalUi(approval.approval_id, { busy: "Sending your decision…", error: null });
  return decide(approval, approval.action_requests.map(() => P.reject(reason)));
}

function editAction(approval, amount) {
  const value = amount.trim();
  if (!/^\d+(\.\d+)?$/.test(value) || !/[1-9]/.test(value)) {
    setApprovalUi(approval.approval_id, { error: "Enter an amount greater than zero, like 0.5." });
    return;
  }
  setApprovalUi(approval.approval_id, { busy: "Preparing the new amount…", error: null });
  return decide(approval, [P.editAmount(approval.action_requests[0], value)]);
}

// -- rendering ----------------------------------------------------------------------------------

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
        "data-chat-id": chat.chat_id, onclick: () => openChat(chat.chat_id),
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
        h("span", {}, "The model stopped at its output limit."),
        h("button", { type: "button", class: "continue", onclick: () => continueAnswer(message.id) }, "Continue")),
      h("div", { class: "figures", hidden: true, title: "Output tokens, time to first token, tokens per second" }),
    ] : [];
    return h("article", { class: `message ${message.role}`, "aria-label": message.role === "user" ? "You" : "Lunark" },
      h("div", { class: "who", "aria-hidden": "true" }, message.role === "user" ? "You" : "Lunark"), body, ...extra);
  },
  tool: () => h("details", { class: "tool" },
    h("summary", {}, h("span", { class: "tool-name" }), h("span", { class: "badge" })),
    h("div", { class: "tx" }),
    h("div", { class: "tool-body" })),
  approval: ([approval]) => createApproval(approval),
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
      }
      const figures = node.querySelector(".figures");
      figures.textContent = message.streaming ? "" : figuresText(message.parts || []);
      figures.hidden = !figures.textContent;
      // Only the chat's last answer can be continued, and not while a turn runs.
      const cut = node.querySelector(".cut");
      cut.hidden = !(message.finishReason === "length" && canContinue);
      cut.querySelector("button").disabled = app.state.running;
    } else {
      body.replaceChildren(document.createTextNode(message.text));
      if (message.error) body.append(h("div", { class: "send-error", role: "alert" }, `Not sent: ${message.error.message}`));
    }
  },

  tool(node, [tool, tx, network]) {
    const label = TOOL_LABELS[tool.name] || tool.name;
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
      parts.push(h("div", { class: "label" }, "Result"), h("pre", {}, JSON.stringify(tool.result, null, 2)));
    }
    if (tool.error) parts.push(h("div", { class: "label" }, "Error"), h("pre", { class: "error" }, tool.error.message || JSON.stringify(tool.error)));
    body.replaceChildren(...parts);
  },

  approval(node, [approval, ui, network, ...txs]) {
    updateApproval(node, approval, ui || {}, network, txs);
  },

  notice(node, [notice]) {
    node.textContent = notice.text;
  },
};

const STATUS_LABELS = {
  running: "running", awaiting_approval: "awaiting approval", success: "success", error: "error", rejected: "rejected",
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

// An approval card is built once (its requests never change) and then only updated, so a reason
// or amount being typed keeps its focus and text while events arrive.
function createApproval(approval) {
  const s = app.state;
  const network = s.network;
  const networks = s.networks;
  const single = approval.action_requests.length === 1;
  const rows = approval.action_requests.map((request) => approvalFacts(request, network, networks));
  const first = approval.action_requests[0] || { name: "action", args: {} };
  const label = TOOL_LABELS[first.name] || first.name;
  const title = single ? `Approve ${label.toLowerCase()}` : `Approve ${approval.action_requests.length} actions`;
  const doneTitle = single ? `${label} request` : `${approval.action_requests.length} actions`;

  const reason = h("input", { type: "text", class: "reason", maxlength: "500", placeholder: "Reason (optional)", "aria-label": "Reason for rejecting" });
  const canEdit = single && first.name === "transfer" && P.allowedDecisions(approval, first).includes("edit");
  const amount = h("input", { type: "text", class: "amount-input", inputmode: "decimal", value: String(first.args.amount ?? ""), "aria-label": "New amount" });
  const card = h("section", { class: "approval", "data-approval-id": approval.approval_id, "aria-label": title },
    h("header", {}, h("strong", { class: "title", "data-pending": title, "data-done": doneTitle }, title),
      h("span", { class: "countdown", "aria-live": "off" })),
    ...rows,
    h("div", { class: "actions" },
      h("button", { type: "button", class: "primary approve", onclick: () => approveAction(app.state.approvals[approval.approval_id]) }, "Approve"),
      h("button", { type: "button", class: "reject", onclick: () => setApprovalUi(approval.approval_id, { mode: "reject", error: null }) }, "Reject"),
      canEdit ? h("button", { type: "button", class: "edit", onclick: () => setApprovalUi(approval.approval_id, { mode: "edit", error: null }) }, "Edit amount") : null),
    h("form", {
      class: "reject-form", hidden: true,
      onsubmit: (e) => { e.preventDefault(); rejectAction(app.state.approvals[approval.approval_id], reason.value); },
    }, reason,
      h("button", { type: "submit", class: "danger confirm-reject" }, "Reject"),
      h("button", { type: "button", class: "cancel", onclick: () => setApprovalUi(approval.approval_id, { mode: null }) }, "Cancel")),
    canEdit ? h("form", {
      class: "edit-form", hidden: true,
      onsubmit: (e) => { e.preventDefault(); editAction(app.state.approvals[approval.approval_id], amount.value); },
    }, h("label", {}, h("span", {}, `New amount${rows[0].dataset.symbol ? ` (${rows[0].dataset.symbol})` : ""}`), amount),
      h("button", { type: "submit", class: "primary save-edit" }, "Save"),
      h("button", { type: "button", class: "cancel", onclick: () => setApprovalUi(approval.approval_id, { mode: null }) }, "Cancel")) : null,
    h("p", { class: "busy", role: "status", hidden: true }),
    h("p", { class: "approval-error", role: "alert", hidden: true }),
    h("p", { class: "outcome", hidden: true }),
    h("div", { class: "approval-txs" }));
  return card;
}

function approvalFacts(request, network, networks) {
  const facts = [];
  let symbol = "";
  if (request.name === "transfer") {
    const token = request.args.token;
    symbol = token ? (String(token).startsWith("0x") ? P.shortHex(String(token)) : String(token).toUpperCase()) : (network ? network.symbol : "");
    facts.push(["Amount", `${request.args.amount} ${symbol}`.trim(), "amount"]);
    facts.push(["To", String(request.args.to ?? ""), "recipient mono"]);
  } else if (request.name === "switch_network") {
    facts.push(["Switch to", String(request.args.network ?? ""), "target"]);
  }
  if (request.tx) {
    const chainId = Number(BigInt(request.tx.chain_id));
    const decimals = networks[chainId] ? networks[chainId].decimals : 18;
    const feeSymbol = networks[chainId] ? networks[chainId].symbol : "ETH";
    facts.push(["Network", networkName(chainId, `Chain ${chainId}`), "network"]);
    facts.push(["Estimated fee", `at most ${P.formatUnits(P.maxFeeWei(request.tx), decimals, 8)} ${feeSymbol}`, "fee"]);
  } else if (network && request.name !== "switch_network") {
    facts.push(["Network", networkName(network.chain_id, `Chain ${network.chain_id}`), "network"]);
  }
  // A tool the dApp has no card of its own for (an MCP tool) sends its rows: server, tool, hints, arguments.
  for (const fact of request.facts || []) facts.push([String(fact.label), String(fact.value), "fact"]);
  const list = h("dl", { class: "facts" }, ...facts.flatMap(([term, value, cls]) => [h("dt", {}, term), h("dd", { class: cls }, value)]));
  const row = h("div", { class: "request", "data-call-id": request.call_id }, list, h("p", { class: "summary" }, request.summary));
  row.dataset.symbol = symbol;
  return row;
}

function updateApproval(node, approval, ui, network, txs) {
  const pending = approval.status === "pending";
  node.dataset.status = approval.status;
  node.classList.toggle("done", !pending);
  const title = node.querySelector(".title");
  title.textContent = pending ? title.dataset.pending : title.dataset.done;
  const busy = pending && Boolean(ui.busy);
  for (const button of node.querySelectorAll(".actions button, form button")) button.disabled = busy;
  show(node.querySelector(".actions"), pending && !ui.mode);
  show(node.querySelector(".reject-form"), pending && ui.mode === "reject");
  const editForm = node.querySelector(".edit-form");
  if (editForm) show(editForm, pending && ui.mode === "edit");
  if (pending && ui.mode) {
    const input = node.querySelector(ui.mode === "reject" ? ".reason" : ".amount-input");
    if (input && document.activeElement !== input && !input.dataset.focused) { input.focus(); input.dataset.focused = "1"; }
  } else {
    for (const input of node.querySelectorAll("input")) delete input.dataset.focused;
  }
  const busyNode = node.querySelector(".busy");
  busyNode.textContent = busy ? ui.busy : "";
  show(busyNode, busy);
  const errorNode = node.querySelector(".approval-error");
  errorNode.textContent = pending && ui.error ? ui.error : "";
  show(errorNode, Boolean(pending && ui.error));
  const outcome = node.querySelector(".outcome");
  outcome.textContent = pending ? "" : outcomeText(approval);
  show(outcome, !pending);
  updateCountdown(node, approval);

  const list = node.querySelector(".approval-txs");
  list.replaceChildren(...approval.action_requests.map((request, i) => {
    const tx = txs[i];
    const decision = decisionFor(approval, request.call_id);
    if (!tx || !decision || decision.type !== "approve") return null;
    const line = h("div", { class: "tx" });
    renderTx(line, tx, network);
    return line;
  }).filter(Boolean));
}

function outcomeText(approval) {
  if (approval.status === "expired") return "Expired — nothing was done.";
  if (approval.by === "superseded") return "Set aside — you sent a new message instead; nothing was done.";
  const decisions = approval.decisions || [];
  const [first] = decisions;
  if (!first) return "Decided.";
  if (first.type === "approve") return first.tx_hash ? "Approved — signed in your wallet." : "Approved.";
  if (first.type === "edit") {
    const amount = first.edited_action && first.edited_action.args && first.edited_action.args.amount;
    return amount ? `Edited — new amount ${amount}; see the new request below.` : "Edited — see the new request below.";
  }
  return first.message ? `Rejected: ${first.message}` : "Rejected.";
}

function updateCountdown(node, approval) {
  const countdown = node.querySelector(".countdown");
  if (approval.status !== "pending") {
    countdown.textContent = approval.status === "expired" ? "expired" : "";
    return;
  }
  const left = Math.max(0, Math.floor((Date.parse(approval.expires_at) - Date.now()) / 1000));
  countdown.textContent = left > 0 ? `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")} left` : "expired";
  const approve = node.querySelector(".approve");
  if (approve && left <= 0) approve.disabled = true;
}

setInterval(() => {
  for (const [key, entry] of nodes) {
    if (!key.startsWith("approval:")) continue;
    const approval = app.state.approvals[key.slice("approval:".length)];
    if (approval && approval.status === "pending") updateCountdown(entry.node, approval);
  }
}, 1000);

// -- layout -------------------------------------------------------------------------------------

function closeSidebar() {
  document.body.classList.remove("sidebar-open");
  el.menu.setAttribute("aria-expanded", "false");
}

// -- wiring -------------------------------------------------------------------------------------

el.connect.addEventListener("click", connectWallet);
el.signout.addEventListener("click", () => signOut());
el.newChat.addEventListener("click", newChat);
el.menu.addEventListener("click", () => {
  const open = document.body.classList.toggle("sidebar-open");
  el.menu.setAttribute("aria-expanded", String(open));
});
el.walletChain.addEventListener("click", () => {
  const network = app.state.network;
  if (network) switchWallet(network).catch((err) => addNote(walletRefusal(err, network)));
});
el.composer.addEventListener("submit", (e) => {
  e.preventDefault();
  if (el.send.disabled) return;
  const text = el.input.value;
  el.input.value = "";
  autosize();
  sendMessage(text);
});
el.input.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    el.composer.requestSubmit();
  }
});
el.input.addEventListener("input", autosize);
el.stop.addEventListener("click", () => {
  if (app.transport && app.state.chatId) app.transport.abort(app.state.chatId).catch((err) => addNote(describeError(err)));
});
el.jump.addEventListener("click", scrollToBottom);
el.log.addEventListener("scroll", () => { if (nearBottom()) show(el.jump, false); });

function autosize() {
  el.input.style.height = "auto";
  el.input.style.height = `${Math.min(el.input.scrollHeight, 160)}px`;
}

async function boot() {
  if (!app.provider) {
    show(el.connect, false);
    el.welcomeNote.textContent = "No Ethereum wallet found. Install MetaMask (or another EIP-1193 wallet) and reload this page.";
    return;
  }
  app.provider.on?.("chainChanged", onChainChanged);
  app.provider.on?.("accountsChanged", onAccountsChanged);
  renderChrome();
  try {
    const session = await storedSession();
    if (session) await startSession(session);
  } catch (err) {
    el.welcomeNote.textContent = describeError(err);
  }
  document.body.dataset.ready = "true";
}

boot();
