// The signed-in session: the transport and its events, the chats (open, new, list), sending
// messages and continuing cut answers, and following the wallet when it changes chain or account.

import { io } from "/vendor/socket.io.esm.min.js";

import { initialState } from "./lib/reducer.js";
import { LunarkTransport, newId } from "./lib/transport.js";
import { api, app, describeError, el, show } from "./page.js";
import { addNote, dispatch, markChat, renderChats, renderChrome, resetChat, scrollToBottom } from "./render.js";
import { signOut } from "./signin.js";
import { switchWallet, walletRefusal } from "./wallet.js";

export {
  continueAnswer, followNetworkSwitch, newChat, onAccountsChanged, onChainChanged, openChat, sendMessage, startSession,
  wantedApproval,
};

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
  const approvalId = wantedApproval();
  const opened = approvalId ? openApproval(approvalId)
    : /^[A-Za-z0-9_.:-]{1,128}$/.test(wanted) ? openChat(wanted) : newChat();
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

async function openChat(chatId) {
  if (!app.transport) return;
  closeSidebar();
  resetChat(initialState(chatId));
  history.replaceState(null, "", `/#${encodeURIComponent(chatId)}`);
  renderChats();
  try {
    await app.transport.join(chatId, { lastSeq: 0 });
  } catch (err) {
    if (app.state.chatId !== chatId) return;
    newChat();
    addNote(`Could not open that chat: ${describeError(err)}`);
  }
}

// -- the approval page ----------------------------------------------------------------------------
// `/approve/{approval_id}` is the link an MCP host shows its user (`lunark mcp`, URL-mode
// elicitation): after the wallet's sign-in it opens that approval's chat with the card in view,
// where the user decides as anywhere else. The server says which chat; another address's
// approval is refused there.

const APPROVAL_PATH = /^\/approve\/([A-Za-z0-9_.:-]{1,128})$/;

function wantedApproval() {
  const found = APPROVAL_PATH.exec(location.pathname);
  return found ? found[1] : null;
}

async function openApproval(approvalId) {
  let approval;
  try {
    approval = await api(`/api/approvals/${encodeURIComponent(approvalId)}`, { token: app.session.token });
  } catch (err) {
    if (err.status === 401) return signOut("Your session has expired. Sign in again.");
    newChat();
    addNote(`Could not open that approval: ${describeError(err)}`);
    return;
  }
  await openChat(approval.chat_id);
  // The card arrives with the chat's replay: bring it into view once it is drawn.
  for (let tries = 0; tries < 100 && app.state.chatId === approval.chat_id; tries++) {
    const card = el.log.querySelector(`.approval[data-approval-id="${CSS.escape(approvalId)}"]`);
    if (card) {
      card.classList.add("wanted");
      card.scrollIntoView({ block: "center" });
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function newChat() {
  if (app.transport) app.transport.leave();
  closeSidebar();
  // The new chat will be made on the server's default network; until then show the last one seen.
  resetChat({ ...initialState(), network: app.state.network, networks: app.state.networks });
  history.replaceState(null, "", "/");
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
      history.replaceState(null, "", `/#${encodeURIComponent(ack.chat_id)}`);
    }
    const ack = await app.transport.sendMessage(app.state.chatId, text, cid);
    dispatch({ type: "local:message_ack", client_message_id: cid, message_id: ack.message_id });
    refreshChats();
  } catch (err) {
    dispatch({ type: "local:message_failed", client_message_id: cid, error: { code: err.code, message: describeError(err) } });
  }
}

/** Continue an answer the model cut at its output limit, or a crash interrupted: more text for the same message. */
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

// -- the wallet's events ------------------------------------------------------------------------

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

async function followNetworkSwitch(event) {
  if (!app.provider || app.walletChainId === event.chain_id) return;
  try {
    await switchWallet(event);
  } catch (err) {
    addNote(walletRefusal(err, event));
  }
}
