"""The hub: gives every chat event its ``seq``, logs it, coalesces tokens, fans it out.

The event log, not pub/sub, is the source of truth: an event is appended to the
store before anyone sees it, so a client that replays from ``last_seq`` gets
exactly what live clients got, in the same order, once.

Tokens are coalesced with a leading-edge throttle: a token is sent at once when
the chat's last flush is more than one interval old; otherwise it is buffered
and flushed at the end of the interval. Fast streams become a few events per
interval; slow streams (50 tokens/s) are not delayed at all.

Publishing a token never waits: ``publish_token`` is synchronous. It buffers
the token and, at most one at a time per chat, schedules the flush that logs and
sends the buffer. A token that arrives while the chat's previous send is still
in flight joins the next flush, so under load events carry more tokens instead
of the model's tokens queueing one by one behind the store (docs/performance.md
measures the difference). With ``flush_interval`` 0 nothing is merged: each
token stays its own event, and only the sending is batched.

Any other event first flushes the buffer under the chat's lock, so events leave
in the order they were published.

Replays read the log in batches, so memory does not grow with the chat's length. A
replay to a socket sends the bulk without the chat's lock (waiting for the client to
catch up between batches), and only the tail that arrived meanwhile under it, so a slow
reader never holds up the chat's live events. An SSE subscription holds at most
``max_pending`` live events; a reader that falls further behind is ended (it resumes
with ``Last-Event-ID``) instead of growing the server's memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from itertools import groupby
from operator import itemgetter
from typing import Any

from lunark import protocol
from lunark.store.base import EventRecord, Store

__all__ = ["WALLET_EVENTS", "Hub", "Subscription", "SubscriptionOverflow"]

logger = logging.getLogger(__name__)

WALLET_EVENTS = frozenset(protocol.WALLET_EVENTS)
"""Events that concern the user's wallet: also sent to ``user:{address}`` (``lunark.protocol``)."""

Emit = Callable[[str, dict[str, Any], list[str]], Awaitable[None]]
"""Sends one event (name, payload) to rooms; the Socket.IO server's emit in production."""


class SubscriptionOverflow(Exception):
    """The subscriber fell more than ``max_pending`` events behind; it was dropped."""


class Subscription:
    """Live events of one chat for one reader, after ``snapshot_seq`` (read the log up to it)."""

    def __init__(self, max_pending: int) -> None:
        self.max_pending = max_pending
        self.snapshot_seq = 0
        self.overflowed = False
        self._records: deque[EventRecord] = deque()
        self._ready = asyncio.Event()

    def put(self, record: EventRecord) -> None:
        if self.overflowed:
            return
        if len(self._records) >= self.max_pending:
            self.overflowed = True
            self._records.clear()
        else:
            self._records.append(record)
        self._ready.set()

    async def get(self) -> EventRecord:
        """The next live event; ``SubscriptionOverflow`` when the reader fell too far behind."""
        while not self._records:
            if self.overflowed:
                raise SubscriptionOverflow
            self._ready.clear()
            await self._ready.wait()
        return self._records.popleft()


@dataclass
class _Chat:
    owner: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    buffer: list[tuple[str, str]] = field(default_factory=list)
    """Tokens not sent yet: (message_id, text), in order."""
    last_flush: float = 0.0
    timer: asyncio.TimerHandle | None = None
    flushing: asyncio.Task[None] | None = None
    flush_pending: bool = False  # a flush task waits for the lock; it will take what is buffered
    listeners: set[Subscription] = field(default_factory=set)


class Hub:
    """Numbered, durable, coalesced fan-out of chat events."""

    def __init__(self, store: Store, emit: Emit, *, flush_interval: float = 0.016) -> None:
        self.store = store
        self._emit = emit
        self.flush_interval = flush_interval
        self._chats: dict[str, _Chat] = {}

    def _chat(self, chat_id: str, owner: str) -> _Chat:
        chat = self._chats.get(chat_id)
        if chat is None:
            chat = self._chats[chat_id] = _Chat(owner=owner.lower())
        return chat

    async def publish(self, chat_id: str, owner: str, event: dict[str, Any]) -> None:
        """Send one event of a chat (without ``seq``); tokens may be coalesced."""
        if event["type"] == "token":
            self.publish_token(chat_id, owner, event["message_id"], event["text"])
            return
        chat = self._chat(chat_id, owner)
        async with chat.lock:
            await self._flush_locked(chat_id, chat)
            await self._send_locked(chat_id, chat, [(event["type"], event)])

    def publish_token(self, chat_id: str, owner: str, message_id: str, text: str) -> None:
        """Buffer one token of a chat's message; it is logged and sent soon, in order, without waiting."""
        chat = self._chat(chat_id, owner)
        chat.buffer.append((message_id, text))
        if chat.timer is not None or chat.flush_pending:
            return  # a flush is on its way and takes this token too
        delay = chat.last_flush + self.flush_interval - time.monotonic()
        if delay <= 0:
            self._schedule_flush(chat_id, chat)  # the leading edge: now
        else:
            chat.timer = asyncio.get_running_loop().call_later(delay, self._schedule_flush, chat_id, chat)

    def _schedule_flush(self, chat_id: str, chat: _Chat) -> None:
        chat.timer = None
        chat.flush_pending = True
        chat.flushing = asyncio.ensure_future(self._flush_soon(chat_id, chat))

    async def _flush_soon(self, chat_id: str, chat: _Chat) -> None:
        try:
            async with chat.lock:
                chat.flush_pending = False
                await self._flush_locked(chat_id, chat)
        except Exception:  # nobody awaits this task: say what went wrong
            logger.exception("sending the tokens of chat %s failed", chat_id)

    async def _flush_locked(self, chat_id: str, chat: _Chat) -> None:
        if chat.timer is not None:
            chat.timer.cancel()
            chat.timer = None
        if not chat.buffer:
            return
        tokens, chat.buffer = chat.buffer, []
        chat.last_flush = time.monotonic()
        if self.flush_interval > 0:
            # One event per run of the same message's tokens (a new message starts a new event).
            tokens = [(m, "".join(text for _, text in run)) for m, run in groupby(tokens, key=itemgetter(0))]
        events = [("token", {"type": "token", "message_id": m, "text": text}) for m, text in tokens]
        await self._send_locked(chat_id, chat, events)

    async def _send_locked(self, chat_id: str, chat: _Chat, events: list[tuple[str, dict[str, Any]]]) -> None:
        records = await self.store.append_events(chat_id, events)
        for record in records:
            rooms = [f"chat:{chat_id}"]
            if record.type in WALLET_EVENTS:
                rooms.append(f"user:{chat.owner}")
            await self._emit(record.type, record.payload, rooms)
            for listener in chat.listeners:
                listener.put(record)

    @asynccontextmanager
    async def subscribe(self, chat_id: str, owner: str, *, max_pending: int = 4096) -> AsyncIterator[Subscription]:
        """Every event of the chat after ``subscription.snapshot_seq``, live; the reader reads the
        log up to ``snapshot_seq`` itself (``events_after`` in batches). Nothing is lost or repeated
        between the two: the snapshot and the subscription happen under the chat's lock."""
        chat = self._chat(chat_id, owner)
        subscription = Subscription(max_pending)
        async with chat.lock:
            subscription.snapshot_seq = await self.store.last_seq(chat_id)
            chat.listeners.add(subscription)
        try:
            yield subscription
        finally:
            chat.listeners.discard(subscription)

    async def replay_then_join(
        self, chat_id: str, owner: str, after_seq: int, send: Callable[[EventRecord], Awaitable[None]],
        join: Callable[[], Awaitable[None]], *, batch: int = 256,
        writable: Callable[[], Awaitable[None]] | None = None,
    ) -> int:
        """Send the missed events to one client, then join it to live events, atomically
        with respect to new events of the chat. Returns how many were replayed.

        Full batches go out without the chat's lock, each after ``writable()`` returns (the
        client has read enough of the previous ones); the last, partial batch and whatever
        arrived meanwhile go out under the lock, right before ``join()``.
        """
        chat = self._chat(chat_id, owner)
        last, sent = after_seq, 0
        while True:
            if writable is not None:
                await writable()
            records = await self.store.events_after(chat_id, last, limit=batch)
            if len(records) < batch:
                break  # the tail: sent under the lock below
            for record in records:
                await send(record)
            last, sent = records[-1].seq, sent + len(records)
        async with chat.lock:
            while True:
                records = await self.store.events_after(chat_id, last, limit=batch)
                for record in records:
                    await send(record)
                if records:
                    last, sent = records[-1].seq, sent + len(records)
                if len(records) < batch:
                    break
            await join()
        return sent

    async def aclose(self) -> None:
        for chat in self._chats.values():
            if chat.timer is not None:
                chat.timer.cancel()
            if chat.flushing is not None:
                with suppress(asyncio.CancelledError):
                    await chat.flushing
