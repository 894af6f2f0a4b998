// The Socket.IO side of a Lunark client: connect with the session token, join a chat and
// receive its events, send client events and get their acks, and survive dropped
// connections (reconnect, re-join with the last seq applied so the server replays exactly
// what was missed, and send what was queued while offline).
//
//   import { io } from "socket.io-client";            // the page: "/vendor/socket.io.esm.min.js"
//   import { LunarkTransport } from "./transport.js";
//
//   const transport = new LunarkTransport({ io, url: "http://localhost:8080", token });
//   transport.onEvent((event, { live }) => { state = reduce(state, event); });
//   transport.onState((s) => banner.hidden = s !== "reconnecting");
//   transport.connect();
//   const ack = await transport.join();                // a new chat; or join(chatId, { lastSeq })
//   await transport.sendMessage(ack.chat_id, "what's my balance");
//
// `io` is passed in rather than imported, so the library works with any copy of
// socket.io-client (a CDN, a bundler, node_modules) and tests can hand it a fake.

import { EVENT_TYPES } from "./protocol.js";

/** A failed request: the server's error ack, or a transport failure ("timeout", "closed"). */
export class LunarkError extends Error {
  /** @param {string} code @param {string} message @param {object} [details] */
  constructor(code, message, details = {}) {
    super(message);
    this.name = "LunarkError";
    this.code = code;
    this.details = details;
  }
}

/**
 * @typedef {"idle"|"connecting"|"connected"|"reconnecting"|"unauthorized"|"closed"} TransportState
 */

export class LunarkTransport {
  /**
   * @param {object} options
   * @param {Function} options.io        socket.io-client's `io`
   * @param {string} [options.url]       the server; "" or omitted = the page's origin
   * @param {string} options.token       from POST /auth/verify
   * @param {number} [options.ackTimeout] ms to wait for an ack (15 s)
   * @param {(chatId: string) => number} [options.lastSeq]  the last seq the client applied for
   *   a chat, used when re-joining; by default the transport counts the contiguous seqs it delivered
   * @param {object} [options.socketOptions]  passed on to `io()`
   */
  constructor({ io, url = "", token, ackTimeout = 15000, lastSeq, socketOptions = {} }) {
    if (typeof io !== "function") throw new TypeError("LunarkTransport needs socket.io-client's io function.");
    this._io = io;
    this.url = url;
    this.token = token;
    this.ackTimeout = ackTimeout;
    this._lastSeqOf = lastSeq || ((chatId) => this._seen.get(chatId) || 0);
    this._socketOptions = socketOptions;
    /** @type {TransportState} */
    this.state = "idle";
    this.socket = null;
    this.chatId = null;           // the chat to (re-)join
    this.replayedThrough = new Map(); // chat id -> the join ack's last_seq: events up to it are replay
    this._seen = new Map();
    this._queue = [];             // requests waiting for a connection
    this._inflight = new Set();   // requests sent, waiting for an ack
    this._eventListeners = new Set();
    this._stateListeners = new Set();
    this._joinListeners = new Set();
    this._rejoining = null;
  }

  // -- listeners -------------------------------------------------------------------------------

  /** Every chat event, with `type` set: fn(event, {live}). `live` is false for replayed events. */
  onEvent(fn) { this._eventListeners.add(fn); return () => this._eventListeners.delete(fn); }
  /** Connection state changes: fn(state, detail). */
  onState(fn) { this._stateListeners.add(fn); return () => this._stateListeners.delete(fn); }
  /** Every join ack, including the automatic re-join after a reconnect: fn(ack, {rejoin}). */
  onJoined(fn) { this._joinListeners.add(fn); return () => this._joinListeners.delete(fn); }

  // -- connection ------------------------------------------------------------------------------

  /** Open the connection (idempotent). Reconnects by itself until `close()`. */
  connect() {
    if (this.socket) return this;
    this._setState("connecting");
    const socket = this._io(this.url || undefined, {
      auth: { token: this.token },
      // WebSocket first: one long-lived request, which any server process behind a load balancer
      // can take (docs/deployment.md). HTTP long-polling only where WebSocket fails; its requests
      // must all reach one process, so that needs a sticky balancer.
      transports: ["websocket", "polling"],
      tryAllTransports: true,
      reconnection: true,
      reconnectionDelay: 500,
      reconnectionDelayMax: 5000,
      ...this._socketOptions,
    });
    this.socket = socket;
    socket.on("connect", () => this._connected());
    socket.on("disconnect", (reason) => this._disconnected(reason));
    socket.on("connect_error", (err) => this._connectError(err));
    socket.onAny((name, data) => this._incoming(name, data));
    return this;
  }

  /** Close for good: pending and queued requests fail with code "closed". */
  close() {
    const socket = this.socket;
    this.socket = null;
    this._setState("closed");
    if (socket) {
      socket.offAny?.();
      socket.disconnect();
    }
    const error = new LunarkError("closed", "The connection was closed.");
    for (const request of [...this._queue, ...this._inflight]) request.reject(error);
    this._queue = [];
    this._inflight.clear();
  }

  get connected() { return Boolean(this.socket && this.socket.connected); }

  _setState(state, detail) {
    if (this.state === state && detail === undefined) return;
    this.state = state;
    for (const fn of this._stateListeners) fn(state, detail);
  }

  async _connected() {
    this._setState("connected");
    if (this.chatId) {
      // Re-join first, so replay starts from the last seq applied, then send what waited.
      const chatId = this.chatId;
      try {
        this._rejoining = this._send("join_chat", { chat_id: chatId, last_seq: this._lastSeqOf(chatId) }, {
          queue: false, onAck: (ack) => this._joined(ack, true),
        });
        await this._rejoining;
      } catch (err) {
        for (const fn of this._stateListeners) fn(this.state, { rejoinError: err });
      } finally {
        this._rejoining = null;
      }
    }
    this._flush();
  }

  _disconnected(reason) {
    if (!this.socket) return; // closed by us
    // Requests without an ack are sent again after the reconnect: every client event is safe
    // to repeat (client_message_id, decisions apply exactly once, abort and joins are idempotent).
    for (const request of this._inflight) {
      request.retried = true;
      this._queue.push(request);
    }
    this._inflight.clear();
    this._setState("reconnecting", { reason });
    if (reason === "io server disconnect") this.socket.connect(); // the server kicked us: no auto-retry
  }

  _connectError(err) {
    const data = (err && err.data) || {};
    if (data.code === "unauthorized") {
      // The token is unknown or expired: retrying won't help, the user signs in again.
      this._setState("unauthorized", { code: data.code, message: data.message || err.message });
      if (this.socket) this.socket.disconnect();
      const error = new LunarkError("unauthorized", data.message || "Sign in again.");
      for (const request of this._queue) request.reject(error);
      this._queue = [];
      return;
    }
    this._setState("reconnecting", { error: err && err.message });
  }

  _incoming(name, data) {
    if (!EVENT_TYPES.includes(name) || !data || typeof data !== "object") return;
    const event = data.type === name ? data : { ...data, type: name };
    let live = true;
    if (event.chat_id != null && typeof event.seq === "number") {
      const seen = this._seen.get(event.chat_id) || 0;
      if (event.seq === seen + 1) this._seen.set(event.chat_id, event.seq);
      const replayed = this.replayedThrough.get(event.chat_id);
      live = replayed === undefined || event.seq > replayed;
    }
    for (const fn of this._eventListeners) fn(event, { live });
  }

  // -- requests ----------------------------------------------------------------------------------

  /**
   * Send a client event and resolve with its ack; an error ack rejects with LunarkError.
   * While offline the request waits in a queue and goes out after the reconnect.
   */
  request(event, payload) {
    return this._send(event, payload, { queue: true });
  }

  _send(event, payload, { queue, onAck }) {
    return new Promise((resolve, reject) => {
      const request = { event, payload, resolve, reject, onAck, retried: false };
      if (this.connected && !(queue && this._rejoining)) this._emit(request);
      else if (queue && this.state !== "closed" && this.state !== "unauthorized") this._queue.push(request);
      else reject(new LunarkError(this.state === "unauthorized" ? "unauthorized" : "closed", "Not connected."));
    });
  }

  _emit(request) {
    this._inflight.add(request);
    this.socket.timeout(this.ackTimeout).emit(request.event, request.payload, (err, ack) => {
      if (!this._inflight.has(request)) return; // re-queued on disconnect
      this._inflight.delete(request);
      if (err) {
        request.reject(new LunarkError("timeout", `No answer to ${request.event} within ${this.ackTimeout} ms.`));
      } else if (ack && typeof ack === "object" && ack.error) {
        const { code, message, ...details } = ack.error;
        // A decision repeated after a reconnect was applied the first time; so was a continuation
        // that now finds its turn running (busy) or its message no longer cut (invalid_input).
        if (request.retried && (code === "already_decided"
            || (request.event === "continue_message" && (code === "busy" || code === "invalid_input")))) {
          request.resolve({ ok: true, retried: true });
        } else request.reject(new LunarkError(code || "internal", message || "Request failed.", details));
      } else {
        // Synchronously, before any replayed event that follows the ack is dispatched.
        if (request.onAck) request.onAck(ack);
        request.resolve(ack);
      }
    });
  }

  _flush() {
    const queued = this._queue;
    this._queue = [];
    for (const request of queued) {
      if (this.connected) this._emit(request);
      else this._queue.push(request);
    }
  }

  _joined(ack, rejoin) {
    if (!ack || typeof ack.chat_id !== "string") return;
    this.replayedThrough.set(ack.chat_id, ack.last_seq);
    for (const fn of this._joinListeners) fn(ack, { rejoin });
  }

  // -- the protocol's client events --------------------------------------------------------------

  /**
   * Join a chat (a new one without `chatId`) and replay its events after `lastSeq`
   * (default 0: the whole chat). The transport re-joins it after every reconnect.
   * @returns {Promise<import("./protocol.js").JoinChatAck>}
   */
  join(chatId, { lastSeq = 0 } = {}) {
    const payload = chatId ? { chat_id: chatId, last_seq: lastSeq } : {};
    this.chatId = chatId || null;
    if (chatId) this._seen.set(chatId, lastSeq);
    return this._send("join_chat", payload, {
      queue: true,
      onAck: (ack) => {
        this.chatId = ack.chat_id;
        if (!chatId) this._seen.set(ack.chat_id, 0);
        this._joined(ack, false);
      },
    });
  }

  /** Stop re-joining the current chat (the server has no "leave"; its events are ignored by chat id). */
  leave() { this.chatId = null; }

  /** @returns {Promise<{message_id: string}>} */
  sendMessage(chatId, content, clientMessageId = newId()) {
    return this.request("send_message", { chat_id: chatId, content, client_message_id: clientMessageId });
  }

  /** @param {import("./protocol.js").Decision[]} decisions */
  decide(chatId, approvalId, decisions) {
    return this.request("resume_decisions", { chat_id: chatId, approval_id: approvalId, decisions });
  }

  abort(chatId) { return this.request("abort", { chat_id: chatId }); }

  /**
   * Continue an answer the model cut at its output limit (`message_end` with `finish_reason:
   * "length"`) or that a crash interrupted (`"interrupted"`): more tokens for the same message follow. Not safe to repeat blindly (a second one
   * answers busy or invalid_input), which the ack tells.
   */
  continueMessage(chatId, messageId) { return this.request("continue_message", { chat_id: chatId, message_id: messageId }); }

  /** The user switched network in the wallet. @returns {Promise<{ok: true, network: object}>} */
  walletChanged(chatId, chainId) { return this.request("wallet_changed", { chat_id: chatId, chain_id: Number(chainId) }); }
}

/** A client id for send_message (letters, digits, "-"), unique enough to dedupe retries. */
export function newId(prefix = "c") {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === "function") return `${prefix}-${c.randomUUID()}`;
  const bytes = new Uint8Array(16);
  if (c && typeof c.getRandomValues === "function") c.getRandomValues(bytes);
  else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
  return `${prefix}-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}
