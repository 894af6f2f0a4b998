// The Lunark dApp: a wallet-connected chat with the agent. No build step: ES modules served as is.
//
// Data flow: wallet (EIP-1193) -> sign-in (SIWE) -> transport (Socket.IO) -> reducer (pure) -> DOM.
// Every server event goes through `reduce`; the DOM is updated from the state by a small keyed
// renderer, so a replay after a reload or a reconnect shows exactly what a live session showed.
// Untrusted text (model output, tool results, anything from the server) only ever reaches the
// DOM through textContent or lib/markdown.js, which escapes it.
//
// The page's modules: page.js (shared state, elements, helpers), wallet.js (EIP-1193 provider,
// network switching), signin.js (SIWE sign-in and the stored session), approvals.js (approval
// cards and decisions), render.js (dispatch and the DOM). This one wires them: chats, the
// transport's events, the page's controls, and the boot. The modules call each other's functions;
// the shared state lives in page.js, which imports none of them, and nothing a module imports is
// used while the modules load, so the import cycles between them are safe.

import { io } from "/vendor/socket.io.esm.min.js";

import { initialState } from "./lib/reducer.js";
import { LunarkTransport, newId } from "./lib/transport.js";
import { api, app, describeError, el, show } from "./page.js";
import { addNote, dispatch, markChat, nearBottom, nodes, render, renderChats, renderChrome, scrollToBottom } from "./render.js";
import { connectWallet, signOut, storedSession } from "./signin.js";
import { followNetworkSwitch, onAccountsChanged, onChainChanged, switchWallet, walletRefusal } from "./wallet.js";

export { continueAnswer, openChat, resetChat, startSession };

// -- the session --------------------------------------------------------------------------------

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

function onTransportState(state) {
  show(el.banner, state === "reconnecting");
  if (state === "unauthorized") signOut("Your session has expired. Sign in again.");
}

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
