// Sign-in: the wallet's account signs an EIP-4361 (SIWE) message for a session token, kept in
// sessionStorage for reloads; signing out forgets it.

import * as P from "./lib/protocol.js";
import { initialState } from "./lib/reducer.js";
import { api, app, describeError, el } from "./page.js";
import { renderChrome, resetChat } from "./render.js";

export { connectWallet, signOut, storedSession };

const SESSION_KEY = "lunark.session";
const STATEMENT = "Sign in to Lunark.";

/** Sign in with the wallet's account, then start the session with `onSession(session)`. */
async function connectWallet(onSession) {
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
    await onSession(session);
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
