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

The token path takes no task and no await when it can: given a store that logs
without awaiting (``append_events_soon``) and an emit that sends without
awaiting (``emit_now``), a flush whose chat's lock is free hands the tokens to
the store and, in the store's callback, sends them and arms the next flush. One
such flush at a time per chat (``sending``); whatever takes the lock waits for
it first, so the order is the same either way. Nothing on that path waits for
another chat: the store commits whatever appends are waiting together, and each
chat's callback sends only its own events.

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
from typing import Any, Protocol

from lunark import protocol
from lunark.errors import NotFound
from lunark.store import EventRecord, SettlementRecord, Store

__all__ = ["WALLET_EVENTS", "Hub", "Publisher", "Subscription", "SubscriptionOverflow", "settlement_sink"]

logger = logging.getLogger(__name__)

WALLET_EVENTS = frozenset(protocol.WALLET_EVENTS)
"""Events that concern the user's wallet: also sent to ``user:{address}`` (``lunark.protocol``)."""

Emit = Callable[[str, dict[str, Any], list[str]], Awaitable[None]]
"""Sends one event (name, payload) to rooms; the Socket.IO server's emit in production."""

EmitNow = Callable[[str, dict[str, Any], list[str], str | None], None]
"""Sends one event to rooms without awaiting, given its payload's JSON when at hand
(``FanoutManager.emit_now``)."""

AppendSoon = Callable[[str, list[tuple[str, dict[str, Any]]], Callable[[list[EventRecord] | Exception], None]], None]
"""Logs events without awaiting and calls back with the records (``SqliteStore.append_events_soon``)."""


class Publisher(Protocol):
    """What publishes a chat's events: ``Hub``, or a turn worker's ``WorkerHub`` (lunark.server.worker)."""

    async def publish(self, chat_id: str, owner: str, event: dict[str, Any]) -> None: ...

    def publish_token(self, chat_id: str, owner: str, message_id: str, text: str) -> None: ...


def settlement_sink(
    store: Store, publisher: Publisher
) -> Callable[[SettlementRecord, dict[str, Any]], Awaitable[None]]:
    """Where a process's settlements publish a move (already stored): the chat's transaction list,
    then its clients. The serving process, a local worker and a cluster's worker all use it."""

    async def settled(record: SettlementRecord, event: dict[str, Any]) -> None:
        try:
            if event.get("tx_hash"):  # the chat's transaction list; a refusal with nothing signed has no row
                await store.record_tx_update(record.chat_id, record.call_id, event)
        except NotFound:
            logger.warning("settlement %s belongs to no chat here", record.settlement_id)
            return
        await publisher.publish(record.chat_id, record.owner, event)

    return settled


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
    sending: bool = False  # a flush without the lock is being logged and sent
    quiet: asyncio.Future[None] | None = None  # resolved when that flush is done, for whoever waits
    listeners: set[Subscription] = field(default_factory=set)


class Hub:
    """Numbered, durable, coalesced fan-out of chat events."""

    def __init__(
        self, store: Store, emit: Emit, *, flush_interval: float = 0.016, emit_now: EmitNow | None = None
    ) -> None:
        self.store = store
        self._emit = emit
        self.flush_interval = flush_interval
        self._chats: dict[str, _Chat] = {}
        append_soon: AppendSoon | None = getattr(store, "append_events_soon", None)
        self._append_soon = append_soon if emit_now is not None else None
        self._emit_now = emit_now

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
            await self._quiet(chat)
            await self._flush_locked(chat_id, chat)
            await self._send_locked(chat_id, chat, [(event["type"], event)])

    def publish_token(self, chat_id: str, owner: str, message_id: str, text: str) -> None:
        """Buffer one token of a chat's message; it is logged and sent soon, in order, without waiting."""
        chat = self._chat(chat_id, owner)
        chat.buffer.append((message_id, text))
        if chat.timer is None and not chat.flush_pending and not chat.sending:
            self._arm(chat_id, chat)
        # else a flush is on its way, or one is being sent and arms the next when done: either takes this token

    def _arm(self, chat_id: str, chat: _Chat) -> None:
        """Flush now if the chat's last flush is an interval old (the leading edge), else at its end."""
        delay = chat.last_flush + self.flush_interval - time.monotonic()
        if delay <= 0:
            self._flush(chat_id, chat)
        else:
            chat.timer = asyncio.get_running_loop().call_later(delay, self._flush, chat_id, chat)

    def _flush(self, chat_id: str, chat: _Chat) -> None:
        """Flush the buffer: without a task when the chat's lock is free (see the module), else in one."""
        chat.timer = None
        if chat.flush_pending or chat.sending:
            return  # that flush takes the buffer, or arms the next one when it is done
        if self._append_soon is None or chat.lock.locked():
            self._schedule_flush(chat_id, chat)
            return
        events = self._take_tokens(chat)
        if not events:
            return
        chat.sending = True
        try:
            self._append_soon(chat_id, events, lambda outcome: self._sent(chat_id, chat, outcome))
        except Exception:  # refused before anything was logged; as the task path does, say so
            logger.exception("sending the tokens of chat %s failed", chat_id)
            self._done_sending(chat_id, chat)

    def _sent(self, chat_id: str, chat: _Chat, outcome: list[EventRecord] | Exception) -> None:
        """The store's callback for a flush without the lock: send what it logged, then go on."""
        try:
            if isinstance(outcome, Exception):
                logger.error("logging the tokens of chat %s failed", chat_id, exc_info=outcome)
            else:
                assert self._emit_now is not None
                for record in outcome:
                    self._emit_now(record.type, record.payload, self._rooms(chat_id, chat, record), record.text)
                    for listener in chat.listeners:
                        listener.put(record)
        finally:
            self._done_sending(chat_id, chat)

    def _done_sending(self, chat_id: str, chat: _Chat) -> None:
        chat.sending = False
        quiet, chat.quiet = chat.quiet, None
        if quiet is not None and not quiet.done():
            quiet.set_result(None)  # whoever holds the lock goes on
        if chat.buffer and chat.timer is None and not chat.flush_pending:
            self._arm(chat_id, chat)  # tokens that came meanwhile (with the lock held: a task that waits for it)

    async def _quiet(self, chat: _Chat) -> None:
        """Wait for the flush being sent without the lock (called with the lock held)."""
        while chat.sending:
            if chat.quiet is None or chat.quiet.done():
                chat.quiet = asyncio.get_running_loop().create_future()
            await chat.quiet

    def _schedule_flush(self, chat_id: str, chat: _Chat) -> None:
        chat.timer = None
        chat.flush_pending = True
        chat.flushing = asyncio.ensure_future(self._flush_soon(chat_id, chat))

    async def _flush_soon(self, chat_id: str, chat: _Chat) -> None:
        try:
            async with chat.lock:
                chat.flush_pending = False
                await self._quiet(chat)
                await self._flush_locked(chat_id, chat)
        except Exception:  # nobody awaits this task: say what went wrong
            logger.exception("sending the tokens of chat %s failed", chat_id)

    def _take_tokens(self, chat: _Chat) -> list[tuple[str, dict[str, Any]]]:
        """The buffered tokens as events, the buffer emptied."""
        if chat.timer is not None:
            chat.timer.cancel()
            chat.timer = None
        if not chat.buffer:
            return []
        tokens, chat.buffer = chat.buffer, []
        chat.last_flush = time.monotonic()
        if self.flush_interval > 0:
            # One event per run of the same message's tokens (a new message starts a new event).
            tokens = [(m, "".join(text for _, text in run)) for m, run in groupby(tokens, key=itemgetter(0))]
        return [("token", protocol.token(m, text)) for m, text in tokens]

    async def _flush_locked(self, chat_id: str, chat: _Chat) -> None:
        events = self._take_tokens(chat)
        if events:
            await self._send_locked(chat_id, chat, events)

    @staticmethod
    def _rooms(chat_id: str, chat: _Chat, record: EventRecord) -> list[str]:
        rooms = [f"chat:{chat_id}"]
        if record.type in WALLET_EVENTS:
            rooms.append(f"user:{chat.owner}")
        return rooms

    async def _send_locked(self, chat_id: str, chat: _Chat, events: list[tuple[str, dict[str, Any]]]) -> None:
        records = await self.store.append_events(chat_id, events)
        for record in records:
            await self._emit(record.type, record.payload, self._rooms(chat_id, chat, record))
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
            await self._quiet(chat)
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
            await self._quiet(chat)
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
            await self._quiet(chat)
