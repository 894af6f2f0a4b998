// The Lunark dApp: a wallet-connected chat with the agent. No build step: ES modules served as is.
//
// Data flow: wallet (EIP-1193) -> sign-in (SIWE) -> transport (Socket.IO) -> reducer (pure) -> DOM.
// Every server event goes through `reduce`; the DOM is updated from the state by a small keyed
// renderer, so a replay after a reload or a reconnect shows exactly what a live session showed.
// Untrusted text (model output, tool results, anything from the server) only ever reaches the
// DOM through textContent or lib/markdown.js, which escapes it.
//
// The page's modules, each importing only those below it (tests/test_web_modules.py keeps the
// graph free of cycles): page.js (shared state, elements, helpers); wallet.js (asking the wallet
// to switch networks, explaining its refusals); render.js (dispatch and the DOM); approvals.js
// (approval cards and decisions); signin.js (SIWE sign-in and the stored session); session.js
// (the transport and its events, the chats, the wallet's events); contacts.js (the address-book
// panel). This one only wires them: the
// hooks render.js calls into the modules above it, the page's controls, and the boot.

import { createApproval, updateApproval } from "./approvals.js";
import { loadContacts, wireContacts } from "./contacts.js";
import { app, describeError, el, show } from "./page.js";
import { addNote, nearBottom, renderChrome, scrollToBottom, wireRender } from "./render.js";
import {
  continueAnswer, newChat, onAccountsChanged, onChainChanged, openChat, sendMessage, startSession, wantedApproval,
} from "./session.js";
import { connectWallet, signOut, storedSession } from "./signin.js";
import { switchWallet, walletRefusal } from "./wallet.js";

wireRender({ openChat, continueAnswer, createApproval, updateApproval });
wireContacts();

/** A session begins: the chat (session.js) and the contacts panel, which needs only the token. */
async function begin(session) {
  const started = startSession(session);
  loadContacts();
  await started;
}

// -- wiring -------------------------------------------------------------------------------------

el.connect.addEventListener("click", () => connectWallet(begin));
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
  if (wantedApproval()) el.welcomeNote.textContent = "An app asked for your approval: sign in with your wallet to review it.";
  try {
    const session = await storedSession();
    if (session) await begin(session);
  } catch (err) {
    el.welcomeNote.textContent = describeError(err);
  }
  document.body.dataset.ready = "true";
}

boot();
