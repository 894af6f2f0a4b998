"""Live events across server processes: python-socketio's Redis manager, with every chat in order.

With ``server.redis_url`` every emit goes through ``socketio.AsyncRedisManager``: the process that
emits delivers to its own sockets at once and publishes to Redis for the others, so rooms
(``chat:{id}``, ``user:{address}``) span processes. Pub/sub alone is not exact, though: two
processes appending to one chat publish in whatever order their messages reach Redis, a client
joining on B can fall between B's replay and a message from A, and Redis restarting loses whatever
was published meanwhile.

The event log is the source of truth, so each subscriber of a chat (a socket that joined it, an
SSE stream) has a ``Gate`` that knows the next ``seq`` it must deliver:

- an event with that seq is delivered, one below it (already delivered by the replay) is dropped;
- an event above it means some were missed or are still on their way: they are read from the
  store (every event is logged before it is published) and delivered first, in order;
- when the Redis subscription comes back after an outage, every gate reads what it missed.

So a client connected anywhere gets each event of the chat exactly once and in order, live or
replayed. Events of chats a socket did not join (``user:{address}`` wallet events) pass as they are.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

import socketio
from engineio import packet as eio_packet
from socketio import packet

from lunark import protocol
from lunark.server.hub import Emit, Hub, Subscription
from lunark.server.namespace import ChatNamespace
from lunark.store import EventRecord, Store

__all__ = ["ClusterHub", "ClusterNamespace", "Gate", "RelayManager"]

logger = logging.getLogger(__name__)

Frames = list[Any]
Deliver = Callable[[EventRecord, "Frames | None"], Awaitable[None]]
Fetch = Callable[[str, int, "int | None"], Awaitable[list[EventRecord]]]


class Gate:
    """One subscriber's view of one chat: every event once, in ``seq`` order, gaps filled from the log."""

    def __init__(self, chat_id: str, deliver: Deliver, fetch: Fetch) -> None:
        self.chat_id = chat_id
        self._deliver = deliver
        self._fetch = fetch
        self.next: int | None = None
        """The seq to deliver next; None until the subscriber's replay is done (events wait)."""
        self._waiting: list[tuple[EventRecord, Frames | None]] = []
        self.lock = asyncio.Lock()

    async def offer(self, record: EventRecord, frames: Frames | None = None) -> None:
        async with self.lock:
            if self.next is None:
                self._waiting.append((record, frames))
            else:
                await self._take(record, frames)

    async def start(self, next_seq: int) -> None:
        """The replay delivered everything before ``next_seq`` (call with ``lock`` held)."""
        self.next = next_seq
        waiting, self._waiting = sorted(self._waiting, key=lambda item: item[0].seq), []
        for record, frames in waiting:
            await self._take(record, frames)

    async def _take(self, record: EventRecord, frames: Frames | None) -> None:
        assert self.next is not None
        if record.seq < self.next:
            return  # delivered already (by the replay, or by a gap fill)
        if record.seq > self.next:
            await self._fill(limit=record.seq - self.next)
        if record.seq >= self.next:
            # == normally. > only if the log could not be read: deliver rather than stall; the
            # client sees the gap and can rejoin with its last_seq.
            await self._deliver(record, frames)
            self.next = record.seq + 1

    async def _fill(self, *, limit: int | None) -> None:
        assert self.next is not None
        try:
            missed = await self._fetch(self.chat_id, self.next - 1, limit)
        except Exception:
            logger.exception("reading the missed events of chat %s failed", self.chat_id)
            return
        filled = 0
        for record in missed:
            if record.seq == self.next:
                await self._deliver(record, None)
                self.next += 1
                filled += 1
        if filled:
            logger.debug("delivered %d event(s) of chat %s from the log", filled, self.chat_id)

    async def resync(self) -> None:
        """Deliver whatever the log holds past what was delivered (after a pub/sub outage)."""
        async with self.lock:
            if self.next is not None:
                await self._fill(limit=None)


class RelayManager(socketio.AsyncRedisManager):  # type: ignore[misc]
    """``AsyncRedisManager`` whose chat events pass each subscriber's ``Gate``.

    ``store`` must be set before the first emit (the server does it): gaps are filled from it.
    Like ``lunark.server.fanout.FanoutManager``, a packet is encoded once per event and queued to
    each socket in turn.
    """

    def __init__(
        self, url: str, *, channel: str = "lunark", retry_limit: float = 2.0, check_interval: float = 1.0
    ) -> None:
        # A connect timeout: with Redis unreachable, a publish fails in seconds instead of holding
        # the chat's events (they are logged; the gates deliver them once Redis is back).
        super().__init__(url, channel=channel, redis_options={"socket_connect_timeout": 2.0})
        self.store: Store | None = None
        self.retry_limit = retry_limit
        self.check_interval = check_interval
        self._checker: asyncio.Task[None] | None = None
        self._gates: dict[str, dict[object, Gate]] = {}
        """chat id -> subscriber (a socket's sid, or an SSE stream's key) -> its gate."""
        self._resyncs: set[asyncio.Task[None]] = set()

    # -- gates ------------------------------------------------------------------------------------

    async def _fetch(self, chat_id: str, after: int, limit: int | None) -> list[EventRecord]:
        assert self.store is not None, "RelayManager.store is set by the server"
        return await self.store.events_after(chat_id, after, limit=limit)

    def open_gate(self, key: object, chat_id: str, deliver: Deliver) -> Gate:
        """A new gate for ``key`` on ``chat_id`` (replacing one it had), holding events until ``start``."""
        gate = Gate(chat_id, deliver, self._fetch)
        self._gates.setdefault(chat_id, {})[key] = gate
        return gate

    def close_gate(self, key: object, chat_id: str) -> None:
        gates = self._gates.get(chat_id)
        if gates is not None:
            gates.pop(key, None)
            if not gates:
                del self._gates[chat_id]

    def socket_gate(self, sid: str, namespace: str, chat_id: str) -> Gate:
        eio_sid = self.eio_sid_from_sid(sid, namespace)

        async def deliver(record: EventRecord, frames: Frames | None) -> None:
            for frame in frames or self._frames(record.type, record.payload, namespace):
                await self.server.eio.send_packet(eio_sid, frame)

        return self.open_gate(sid, chat_id, deliver)

    def _frames(self, event: str, data: Any, namespace: str) -> Frames:
        encoded = self.server.packet_class(packet.EVENT, namespace=namespace, data=[event, data]).encode()
        return [eio_packet.Packet(eio_packet.MESSAGE, part) for part in
                (encoded if isinstance(encoded, list) else [encoded])]

    async def disconnect(self, sid: str, namespace: str, **kwargs: Any) -> Any:
        for chat_id in [c for c, gates in self._gates.items() if sid in gates]:
            self.close_gate(sid, chat_id)
        return await super().disconnect(sid, namespace, **kwargs)

    # -- delivery ---------------------------------------------------------------------------------

    async def _handle_emit(self, message: dict[str, Any]) -> None:
        """Deliver one emit (this process's, or one from Redis) to this process's subscribers."""
        data = message.get("data")
        payload = data[0] if isinstance(data, list) and len(data) == 1 else None
        namespace = message.get("namespace") or "/"
        if (
            message.get("callback") is not None or message.get("binary") or not isinstance(payload, dict)
            or not isinstance(payload.get("seq"), int) or not isinstance(payload.get("chat_id"), str)
        ):
            await super()._handle_emit(message)
            return
        chat_id = payload["chat_id"]
        record = EventRecord(chat_id=chat_id, seq=payload["seq"], type=message["event"], payload=payload,
                             ts=float(payload.get("ts") or 0.0))
        gates = self._gates.get(chat_id, {})
        frames: Frames | None = None  # encoded once, and only if someone here receives the event
        if namespace in self.rooms:
            skip = message.get("skip_sid")
            skip = skip if isinstance(skip, list) else [skip]
            for sid, eio_sid in self.get_participants(namespace, message.get("room")):
                if sid not in skip and sid not in gates:  # in user:{address} only: as it is
                    frames = frames or self._frames(record.type, payload, namespace)
                    for frame in frames:
                        await self.server.eio.send_packet(eio_sid, frame)
        if gates:
            frames = frames or self._frames(record.type, payload, namespace)
            for gate in list(gates.values()):
                await gate.offer(record, frames)

    async def _redis_listen_with_retries(self) -> AsyncIterator[Any]:  # pragma: no cover (as upstream's)
        """Upstream's listener, with two changes: retries stay short (a restarted Redis is back in
        seconds), and once the subscription is back every gate reads what it missed meanwhile."""
        retry_sleep = 0.25
        subscribed = False
        first = True
        while True:
            try:
                if not subscribed:
                    self._redis_connect()
                    await self.pubsub.subscribe(self.channel)
                    subscribed = True
                    retry_sleep = 0.25
                    if not first:
                        logger.info("redis subscription is back: filling every chat's gap from the log")
                        self._resync_all()
                    first = False
                async for message in self.pubsub.listen():
                    yield message
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._get_logger().error(f"Cannot receive from redis... retrying in {retry_sleep} secs ({exc})")
                subscribed = False
                await asyncio.sleep(retry_sleep)
                retry_sleep = min(retry_sleep * 2, self.retry_limit)

    def initialize(self) -> None:
        super().initialize()
        if not self.write_only and self._checker is None:
            self._checker = asyncio.ensure_future(self._check_forever())

    async def _check_forever(self) -> None:
        """The safety net under pub/sub: every ``check_interval``, each chat someone here follows is
        compared with its log, and a subscriber behind it is filled. It catches what nothing else
        shows, e.g. events published while Redis restarted (redis-py may reconnect on its own,
        unseen) at the end of a stream, with no later event to reveal the gap."""
        while True:
            await asyncio.sleep(self.check_interval)
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("checking the chats' subscribers against the log failed")

    async def check(self) -> None:
        assert self.store is not None
        behind = {chat_id: min((g.next for g in gates.values() if g.next is not None), default=None)
                  for chat_id, gates in list(self._gates.items())}
        wanted = [chat_id for chat_id, next_seq in behind.items() if next_seq is not None]
        if not wanted:
            return
        last_seqs = getattr(self.store, "last_seqs", None)
        if last_seqs is not None:  # Postgres: one query for every chat
            logged: dict[str, int] = await last_seqs(wanted)
        else:
            logged = {chat_id: await self.store.last_seq(chat_id) for chat_id in wanted}
        for chat_id in wanted:
            next_seq = behind[chat_id]
            if next_seq is not None and logged.get(chat_id, 0) >= next_seq:
                for gate in list(self._gates.get(chat_id, {}).values()):
                    await gate.resync()

    def _resync_all(self) -> None:
        for gates in list(self._gates.values()):
            for gate in list(gates.values()):
                task = asyncio.ensure_future(gate.resync())
                self._resyncs.add(task)
                task.add_done_callback(self._resyncs.discard)

    async def aclose(self) -> None:
        """Stop listening to Redis (python-socketio leaves its listener task running)."""
        tasks = [t for t in (getattr(self, "thread", None), self._checker, *self._resyncs)
                 if isinstance(t, asyncio.Task)]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with suppress(asyncio.CancelledError, Exception):
                await task
        for client in (self.pubsub, self.redis):
            if client is not None:
                with suppress(Exception):
                    await client.aclose()

    async def healthy(self) -> bool:
        """Whether Redis answers."""
        from redis import asyncio as aioredis

        client = aioredis.Redis.from_url(self.redis_url, socket_connect_timeout=2, socket_timeout=2)
        try:
            return bool(await client.ping())
        except Exception:
            return False
        finally:
            with suppress(Exception):
                await client.aclose()


class ClusterHub(Hub):
    """The hub when events cross processes: SSE subscribers get their events through a ``Gate``."""

    def __init__(self, store: Store, emit: Emit, relay: RelayManager, *, flush_interval: float = 0.016) -> None:
        super().__init__(store, emit, flush_interval=flush_interval)
        self.relay = relay

    @asynccontextmanager
    async def subscribe(self, chat_id: str, owner: str, *, max_pending: int = 4096) -> AsyncIterator[Subscription]:
        """As ``Hub.subscribe``, for events that may come from any process: they reach the
        subscription through a ``Gate``, in order and each once, from ``snapshot_seq + 1`` on."""
        subscription = Subscription(max_pending)

        async def deliver(record: EventRecord, frames: Frames | None) -> None:
            subscription.put(record)

        key = object()
        gate = self.relay.open_gate(key, chat_id, deliver)
        try:
            async with gate.lock:
                subscription.snapshot_seq = await self.store.last_seq(chat_id)
                await gate.start(subscription.snapshot_seq + 1)
            yield subscription
        finally:
            self.relay.close_gate(key, chat_id)


class ClusterNamespace(ChatNamespace):
    """The Socket.IO handlers when events cross processes: a join replays through the socket's gate."""

    async def _replay(self, sid: str, chat_id: str, owner: str, after: int) -> None:
        await asyncio.sleep(0)  # the ack goes out first: the contract sends the missed events after it
        relay: RelayManager = self.server.manager
        batch = self.limits.replay_batch
        try:
            gate = relay.socket_gate(sid, self.namespace, chat_id)
            async with gate.lock:
                await self.enter_room(sid, f"chat:{chat_id}")
                last = after
                while True:  # a batch at a time, each after the client read the last (bounded memory)
                    missed = await self.hub.store.events_after(chat_id, last, limit=batch)
                    for record in missed:
                        await self.emit(record.type, record.payload, to=sid, ignore_queue=True)
                    if missed:
                        last = missed[-1].seq
                    if len(missed) < batch:
                        break
                    await self._writable(sid)
                await gate.start(last + 1)
        except Exception:
            logger.exception("replay of chat %s to %s failed", chat_id, sid)
            await self.emit("error", protocol.error("internal", "Replay failed; join again."), to=sid)
