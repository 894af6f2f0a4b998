// Types of transport.js (hand-written): the Socket.IO side of a Lunark client.
//
//   import { io } from "socket.io-client";
//   import { LunarkTransport } from "@lunark/client/transport";
//
//   const transport = new LunarkTransport({ io, url: "http://localhost:8080", token });
//   transport.onEvent((event) => { if (event.type === "token") process.stdout.write(event.text); });
//   transport.connect();
//   const { chat_id } = await transport.join();
//   await transport.sendMessage(chat_id, "what's my balance");

import type {
  ChatEvent, ClientEvents, Decision, ErrorCode, JoinChatAck, OkAck, SendMessageAck, WalletChangedAck,
} from "./protocol.js";

/** A failed request: the server's error ack (its code and message; other fields in `details`),
 * or a transport failure: "timeout" (no ack in time), "closed", "unauthorized". */
export declare class LunarkError extends Error {
  constructor(code: string, message: string, details?: Record<string, unknown>);
  readonly name: "LunarkError";
  code: ErrorCode | "timeout" | "closed" | (string & {});
  details: Record<string, unknown>;
}

/** What the transport uses of a socket.io-client `Socket` (any copy of socket.io-client 4 has it). */
export interface SocketLike {
  readonly connected: boolean;
  on(event: string, listener: (...args: any[]) => void): unknown;
  onAny(listener: (event: string, ...args: any[]) => void): unknown;
  offAny?(): unknown;
  connect(): unknown;
  disconnect(): unknown;
  timeout(ms: number): { emit(event: string, ...args: any[]): unknown };
}

/** socket.io-client's `io`, passed in so that the library works with any copy of it. */
export type IoFunction = (url?: string, options?: any) => SocketLike;

export type TransportState = "idle" | "connecting" | "connected" | "reconnecting" | "unauthorized" | "closed";

/** What came with a state change: why the connection dropped, or why the re-join failed. */
export interface TransportStateDetail {
  reason?: string;
  error?: string;
  code?: string;
  message?: string;
  rejoinError?: LunarkError;
}

export interface LunarkTransportOptions {
  /** socket.io-client's `io`. */
  io: IoFunction;
  /** The server; "" or omitted: the page's origin. */
  url?: string;
  /** From POST /auth/verify. */
  token: string;
  /** Milliseconds to wait for an ack (15 000). */
  ackTimeout?: number;
  /** The last seq the client applied for a chat, used when re-joining; by default the transport
   * counts the contiguous seqs it delivered. */
  lastSeq?: (chatId: string) => number;
  /** Passed on to `io()`. */
  socketOptions?: Record<string, unknown>;
}

/**
 * Connect with the session token, join a chat and receive its events, send client events and
 * get their acks, and survive dropped connections: it reconnects, re-joins with the last seq
 * applied (the server replays exactly what was missed) and sends what was queued while offline.
 */
export declare class LunarkTransport {
  constructor(options: LunarkTransportOptions);
  url: string;
  token: string;
  ackTimeout: number;
  state: TransportState;
  socket: SocketLike | null;
  /** The chat to (re-)join. */
  chatId: string | null;
  /** Chat id -> the join ack's last_seq: events up to it are replay, not live. */
  replayedThrough: Map<string, number>;
  readonly connected: boolean;

  /** Every chat event, with `type` set; `live` is false for replayed events. Returns an unsubscribe. */
  onEvent(fn: (event: ChatEvent, info: { live: boolean }) => void): () => void;
  /** Connection state changes. Returns an unsubscribe. */
  onState(fn: (state: TransportState, detail?: TransportStateDetail) => void): () => void;
  /** Every join ack, including the automatic re-join after a reconnect. Returns an unsubscribe. */
  onJoined(fn: (ack: JoinChatAck, info: { rejoin: boolean }) => void): () => void;

  /** Open the connection (idempotent). Reconnects by itself until `close()`. */
  connect(): this;
  /** Close for good: pending and queued requests fail with code "closed". */
  close(): void;

  /** Send a client event and resolve with its ack; an error ack rejects with LunarkError. While
   * offline the request waits in a queue and goes out after the reconnect. */
  request<E extends keyof ClientEvents>(event: E, payload: ClientEvents[E]["payload"]): Promise<ClientEvents[E]["ack"]>;

  /** Join a chat (a new one without `chatId`) and replay its events after `lastSeq` (default 0:
   * the whole chat). The transport re-joins it after every reconnect. */
  join(chatId?: string | null, options?: { lastSeq?: number }): Promise<JoinChatAck>;
  /** Stop re-joining the current chat. */
  leave(): void;
  sendMessage(chatId: string, content: string, clientMessageId?: string): Promise<SendMessageAck>;
  /** Answer a pending approval: one decision per action request, in order. */
  decide(chatId: string, approvalId: string, decisions: Decision[]): Promise<OkAck>;
  abort(chatId: string): Promise<OkAck>;
  /** Continue an answer the model cut at its output limit (`finish_reason: "length"`) or that a crash interrupted (`"interrupted"`). */
  continueMessage(chatId: string, messageId: string): Promise<OkAck>;
  /** The user switched network in the wallet. */
  walletChanged(chatId: string, chainId: number | string): Promise<WalletChangedAck>;
}

/** A client id for send_message (letters, digits, "-"), unique enough to dedupe retries. */
export declare function newId(prefix?: string): string;
