"""Socket.IO and Engine.IO with bounded input and bounded memory per connection.

python-socketio and python-engineio as they come trust the client more than a server that
holds users' approvals can:

- A message is parsed with the stdlib decoder however deep it is (``limits.py`` says why that
  killed the process), and one over ``max_http_buffer_size`` closes the socket with no word.
  ``LunarkSocketServer`` parses with ``JsonCodec`` and answers every message it refuses: an
  error ack when the event asked for one, ``connect_error`` for a CONNECT, an ``error`` event
  otherwise. Messages are read up to ``TRANSPORT_FACTOR`` times ``limits.max_body_bytes`` so
  that an oversize one can still be answered; beyond that the transport itself closes
  (WebSocket close 1009, HTTP 413 for polling). Binary messages are refused: the protocol
  is JSON, and python-socketio would buffer up to 10^10 attachments for one packet.
- Each connection's outgoing queue grows without bound when its client does not read.
  ``OutgoingQueue`` counts the bytes queued and when each packet was queued.
  ``LunarkEngineServer`` disconnects a connection whose queue is over
  ``limits.max_outgoing_bytes``, or whose oldest queued packet has waited longer than a
  ping interval plus the ping timeout: its client is not reading. That is also what a
  "blind" pong (a client that answers pings it never read) cannot fake: Engine.IO counts
  any pong, but the pings themselves stay queued. Disconnecting drops the queue and aborts
  the TCP connection, which also frees a writer blocked on a full socket buffer.
- ``wait_writable`` lets a long send (a replay) wait while the client catches up, instead
  of queueing everything at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import deque
from typing import Any

import engineio
import socketio
from engineio import packet as eio_packet
from engineio.async_drivers import aiohttp as eio_aiohttp
from socketio import packet as sio_packet

from lunark.config import LimitsSettings
from lunark.server.fanout import JsonPacket
from lunark.server.limits import InputRejected, JsonCodec

__all__ = ["TRANSPORT_FACTOR", "LunarkEngineServer", "LunarkSocketServer", "OutgoingQueue"]

logger = logging.getLogger(__name__)

TRANSPORT_FACTOR = 4
"""Messages up to this many times ``max_body_bytes`` are read and answered with an error."""

_HEADER = re.compile(r"([0-6])(?:(\d{1,10})-)?(/[^,]{0,200},)?(\d{1,20})?")
_WATCH_INTERVAL = 0.25
_ENGINE_TYPES = frozenset("0123456b")  # Engine.IO v4 packet types, and "b" for base64 binary


class OutgoingQueue(asyncio.Queue[Any]):
    """An Engine.IO socket's send queue that knows its size in bytes and its oldest packet's age."""

    def __init__(self, server: LunarkEngineServer) -> None:
        super().__init__()
        self.server = server
        self.bytes = 0
        self.overflowed = False
        self._stamps: deque[tuple[float, int]] = deque()
        self._drained = asyncio.Event()
        self._drained.set()

    def _put(self, item: Any) -> None:
        if self.overflowed:
            # Going away: nothing more is kept for it (the item still counts as a task, so that
            # join() and the writer's task_done() stay balanced).
            item = None
        size = _size(item)
        self.bytes += size
        self._stamps.append((time.monotonic(), size))
        super()._put(item)
        if self.bytes > self.server.limits.max_outgoing_bytes and not self.overflowed:
            self.overflowed = True
            self.server.overflowed(self)
        if self.bytes > self.server.limits.max_outgoing_bytes // 2:
            self._drained.clear()

    def _get(self) -> Any:
        item = super()._get()
        _, size = self._stamps.popleft()
        self.bytes -= size
        if self.bytes <= self.server.limits.max_outgoing_bytes // 4:
            self._drained.set()
        return item

    def oldest_age(self, now: float) -> float:
        return now - self._stamps[0][0] if self._stamps else 0.0

    def discard(self) -> None:
        """Drop everything queued. Nothing is put in its place: a WebSocket's reader ends when its
        transport is aborted and wakes the writer itself, and a pending long-poll times out."""
        while not self.empty():
            self.get_nowait()
            self.task_done()
        self._drained.set()

    async def wait_drained(self) -> None:
        await self._drained.wait()


def _size(item: Any) -> int:
    if item is None:
        return 0
    if item.packet_type == eio_packet.PING:
        return 1  # not encoded here: it is cheap, and encoding early would change nothing
    return len(item.encode())


class _WatchedWebSocket(eio_aiohttp.WebSocket):  # type: ignore[misc]
    """engineio's aiohttp WebSocket that lets its Engine.IO socket abort the TCP connection, and
    closes (1002, with a reason) on a frame that is no Engine.IO packet: engineio would raise on
    it inside its handler, log a traceback, and drop the connection without a word."""

    async def wait(self) -> Any:
        message = await super().wait()
        if isinstance(message, str) and (not message or message[0] not in _ENGINE_TYPES):
            await self._sock.close(code=1002, message=b"Malformed Engine.IO packet")
            return None
        return message

    async def __call__(self, environ: dict[str, Any]) -> Any:
        socket = getattr(self.handler, "__self__", None)
        request = environ.get("aiohttp.request")
        if socket is not None and request is not None:
            socket.lunark_transport = request.transport
            self.server.watched[id(socket)] = socket
        try:
            return await super().__call__(environ)
        finally:
            if socket is not None:
                self.server.watched.pop(id(socket), None)


class LunarkEngineServer(engineio.AsyncServer):  # type: ignore[misc]
    """Engine.IO with byte-counted send queues, a stall watchdog and transport abort."""

    limits: LimitsSettings

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = LimitsSettings()
        self.watched: dict[int, Any] = {}
        """Sockets on a WebSocket, until their handler returns (also after Engine.IO forgot them)."""
        drivers: dict[str, Any] = getattr(self, "_async")  # noqa: B009 (set by engineio, untyped)
        self._async = {**drivers, "websocket": _WatchedWebSocket}
        self._watchdog: asyncio.Task[None] | None = None
        self._drops: set[asyncio.Future[None]] = set()
        # Engine.IO tries to JSON-decode every text packet it receives (a Socket.IO message is
        # then left as text because it starts with a digit). This class attribute is global to
        # engineio; the codec with default limits is right for every server and client.
        eio_packet.Packet.json = _ENGINE_CODEC

    def create_queue(self, *args: Any, **kwargs: Any) -> asyncio.Queue[Any]:
        if args or kwargs:
            return asyncio.Queue(*args, **kwargs)
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = asyncio.ensure_future(self._watch())
        return OutgoingQueue(self)

    async def wait_writable(self, sid: str) -> None:
        """Return once the connection's queue is below a quarter of its limit (at once if gone)."""
        socket = self.sockets.get(sid)
        queue = getattr(socket, "queue", None)
        if isinstance(queue, OutgoingQueue) and not socket.closed:
            await queue.wait_drained()

    def overflowed(self, queue: OutgoingQueue) -> None:
        for socket in self._all_sockets():
            if socket.queue is queue:
                logger.warning("client %s does not read; %d bytes queued: disconnecting", socket.sid, queue.bytes)
                task = asyncio.ensure_future(self._drop(socket))
                self._drops.add(task)
                task.add_done_callback(self._drops.discard)
                return

    def connections(self) -> int:
        """Connections open now: sockets not closed, and WebSockets whose transport is still up."""
        return len({id(s) for s in self.sockets.values() if not s.closed} | set(self.watched))

    def _all_sockets(self) -> list[Any]:
        found = {id(s): s for s in self.sockets.values()}
        found.update(self.watched)
        return list(found.values())

    async def _drop(self, socket: Any) -> None:
        queue = socket.queue
        if isinstance(queue, OutgoingQueue):
            queue.overflowed = True
            queue.discard()
        transport = getattr(socket, "lunark_transport", None)
        if transport is not None:
            transport.abort()  # a writer blocked on the full socket buffer fails and returns
        with contextlib.suppress(Exception):
            await socket.close(wait=False, abort=True, reason=self.reason.TRANSPORT_ERROR)
        self.sockets.pop(socket.sid, None)
        self.watched.pop(id(socket), None)

    async def _watch(self) -> None:
        stall = self.ping_interval + self.ping_timeout
        while True:
            await asyncio.sleep(_WATCH_INTERVAL)
            now = time.monotonic()
            for socket in self._all_sockets():
                queue = socket.queue
                if not isinstance(queue, OutgoingQueue):
                    continue
                if queue.overflowed or queue.oldest_age(now) > stall:
                    if not queue.overflowed:
                        logger.warning("client %s has not read for %.0f s: disconnecting", socket.sid,
                                       queue.oldest_age(now))
                    await self._drop(socket)

    async def shutdown(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        await super().shutdown()


_ENGINE_CODEC = JsonCodec(LimitsSettings())


class LunarkSocketServer(socketio.AsyncServer):  # type: ignore[misc]
    """python-socketio with ``JsonCodec`` parsing and an answer for every refused message."""

    def __init__(self, *, limits: LimitsSettings, **kwargs: Any) -> None:
        self.limits = limits
        self.codec = JsonCodec(limits)
        # A packet class per server: its ``json`` is this server's codec and limits.
        packet_class = type("LimitedPacket", (JsonPacket,), {"json": self.codec})
        super().__init__(serializer=packet_class, max_http_buffer_size=limits.max_body_bytes * TRANSPORT_FACTOR,
                         **kwargs)
        self.eio.limits = limits
        self._attachments_to_skip: dict[str, int] = {}

    def _engineio_server_class(self) -> type[LunarkEngineServer]:
        return LunarkEngineServer

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        skip = self._attachments_to_skip.get(eio_sid, 0)
        if skip and not isinstance(data, str):
            # An attachment of a binary packet already answered: part of the same refused message.
            if skip > 1:
                self._attachments_to_skip[eio_sid] = skip - 1
            else:
                del self._attachments_to_skip[eio_sid]
            return
        self._attachments_to_skip.pop(eio_sid, None)
        if not isinstance(data, str) or eio_sid in self._binary_packet:
            self._binary_packet.pop(eio_sid, None)
            await self._refuse(eio_sid, "", "Binary Socket.IO messages are not accepted; send JSON.")
            return
        if len(data) > self.limits.max_body_bytes:
            await self._refuse(eio_sid, data, f"The message is {len(data)} characters; at most "
                               f"{self.limits.max_body_bytes} are accepted.", reason="too_large")
            return
        header = _HEADER.match(data, 0, 256)
        if header is not None and header.group(1) == "0":
            namespace = (header.group(3) or "/,")[:-1]
            if self.manager.sid_from_eio_sid(eio_sid, namespace) is not None:
                # python-socketio would register a second session for the same connection and
                # namespace, after which the first one's events go unanswered.
                await self._refuse(eio_sid, data, f"Already connected to namespace {namespace}.")
                return
        if header is not None and header.group(1) in ("5", "6"):
            if header.group(2):
                # Its attachments follow as messages of their own: dropped unread, up to a bound
                # (python-socketio itself would wait for and keep up to 10^10 of them).
                self._attachments_to_skip[eio_sid] = min(int(header.group(2)), 1000)
            await self._refuse(eio_sid, data, "Binary Socket.IO messages are not accepted; send JSON.")
            return
        try:
            await super()._handle_eio_message(eio_sid, data)
        except InputRejected as exc:
            await self._refuse(eio_sid, data, exc.message, reason=exc.details.get("reason"))
        except ValueError as exc:  # python-socketio's own packet checks
            await self._refuse(eio_sid, data, f"Malformed Socket.IO packet: {exc}.")

    async def _handle_eio_disconnect(self, eio_sid: str, reason: Any) -> None:
        self._attachments_to_skip.pop(eio_sid, None)
        await super()._handle_eio_disconnect(eio_sid, reason)

    async def _refuse(self, eio_sid: str, data: str, message: str, *, reason: str | None = None) -> None:
        """Answer a refused message in the way its client will notice."""
        body: dict[str, Any] = {"code": "invalid_input", "message": message}
        if reason:
            body["reason"] = reason
        header = _HEADER.match(data, 0, 256)
        kind = header.group(1) if header else None
        namespace = (header.group(3) or "/,")[:-1] if header else "/"
        ack_id = int(header.group(4)) if header and header.group(4) else None
        connected = self.manager.sid_from_eio_sid(eio_sid, namespace) is not None
        if not connected:
            out = self.packet_class(sio_packet.CONNECT_ERROR, data={**body, "data": body}, namespace=namespace)
        elif kind in ("2", "5") and ack_id is not None:
            out = self.packet_class(sio_packet.ACK, data=[{"error": body}], namespace=namespace, id=ack_id)
        else:
            out = self.packet_class(sio_packet.EVENT, data=["error", body], namespace=namespace)
        with contextlib.suppress(Exception):  # the client may already be gone
            await self._send_packet(eio_sid, out)
