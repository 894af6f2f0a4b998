// The page's shared parts: its state (`app`), its elements (`el`), and the small DOM and HTTP
// helpers every other module of the page uses. Importing it has one effect: `window.lunark`.

import * as P from "./lib/protocol.js";
import { initialState } from "./lib/reducer.js";

export { api, app, describeError, el, h, show };

const $ = (id) => document.getElementById(id);
const el = {
  menu: $("menu"), network: $("network"), walletChain: $("wallet-chain"), address: $("address"),
  connect: $("connect"), signout: $("signout"), banner: $("banner"), sidebar: $("sidebar"),
  newChat: $("new-chat"), chatList: $("chat-list"), welcome: $("welcome"), welcomeNote: $("welcome-note"),
  log: $("log"), jump: $("jump"), status: $("status"), composer: $("composer"), input: $("input"),
  send: $("send"), stop: $("stop"),
  contactList: $("contact-list"), contactEmpty: $("contact-empty"), contactForm: $("contact-form"),
  contactLabel: $("contact-label"), contactAddress: $("contact-address"), contactNote: $("contact-note"),
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
