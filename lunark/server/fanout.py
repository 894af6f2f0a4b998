"""Cheaper fan-out for python-socketio, through its extension points (``client_manager``, ``serializer``).

Every chat event goes through ``AsyncServer.emit``. Its stock manager sends to each recipient in a
task of its own and waits for them all, and its packet walks every event with a list and a
``reduce`` per level to look for binary data. Both cost more than the send itself, which only
queues the packet for the connection's writer task. These subclasses do the same work directly;
what reaches the wire is byte for byte the same. ``FanoutManager.emit_now`` does it without an
await, for the hub's token path, and given the payload's JSON as the store logged it, frames the
packet around it instead of encoding the payload again (``event_packet``).
"""

from __future__ import annotations

import asyncio
import json
import time
from functools import lru_cache
from typing import Any

import socketio
from engineio import packet as eio_packet
from socketio import packet

__all__ = ["FanoutManager", "JsonPacket", "event_packet"]


def event_packet(event: str, data: Any, namespace: str, text: str | None = None) -> str:
    """The text of a Socket.IO EVENT packet carrying ``data``, with no binary parts (the caller
    knows: it logged ``data`` as JSON), exactly as python-socketio encodes it. ``text``, when given,
    is ``data`` as compact JSON; when it is ASCII (as python-socketio's ensure_ascii encoder writes
    it) the packet is framed around it instead of encoding ``data`` again."""
    if text is not None and text.isascii():
        return f"{_head(namespace)}[{_name(event)},{text}]"
    encoded: str = JsonPacket(packet.EVENT, namespace=namespace, data=[event, data], binary=False).encode()
    return encoded


@lru_cache(maxsize=64)
def _head(namespace: str) -> str:
    return f"{packet.EVENT}" + ("" if namespace == "/" else f"{namespace},")


@lru_cache(maxsize=256)
def _name(event: str) -> str:
    return json.dumps(event)


class JsonPacket(packet.Packet):  # type: ignore[misc]
    """python-socketio's packet with a short-circuiting binary check (same answers)."""

    @classmethod
    def data_is_binary(cls, data: Any) -> bool:
        if isinstance(data, (bytes, bytearray)):
            return True
        if isinstance(data, list):
            return any(cls.data_is_binary(item) for item in data)
        if isinstance(data, dict):
            return any(cls.data_is_binary(item) for item in data.values())
        return False


class FanoutManager(socketio.AsyncManager):  # type: ignore[misc]
    """Sends one encoded packet to a room's clients one after another, without a task per client."""

    def __init__(self) -> None:
        super().__init__()
        self._lagging: set[asyncio.Future[None]] = set()
        """Sends ``emit_now`` handed to ``send_packet``, kept until done."""

    async def emit(
        self, event: str, data: Any, namespace: str, room: Any = None, skip_sid: Any = None,
        callback: Any = None, to: Any = None, **kwargs: Any,
    ) -> None:
        if callback is not None or namespace not in self.rooms:
            await super().emit(event, data, namespace, room=room, skip_sid=skip_sid, callback=callback, to=to,
                               **kwargs)
            return
        args = list(data) if isinstance(data, tuple) else [] if data is None else [data]
        skip = skip_sid if isinstance(skip_sid, list) else [skip_sid]
        frames = self._frames(event, args, namespace)
        for sid, eio_sid in self.get_participants(namespace, to or room):  # a copy of the room
            if sid not in skip:
                for frame in frames:
                    await self.server.eio.send_packet(eio_sid, frame)

    def emit_now(
        self, event: str, data: Any, namespace: str, room: str | list[str], *, text: str | None = None
    ) -> None:
        """``emit`` to rooms without awaiting: each recipient's packets join its connection's queue
        now, as ``send_packet`` would have put them there. A connection that is closed is skipped,
        as ``send_packet`` skips it; one whose client stopped answering pings goes through
        ``send_packet``, which closes it. ``data`` has no binary parts; ``text`` is its JSON, if
        at hand (``event_packet``)."""
        if namespace not in self.rooms:
            return
        frames = [eio_packet.Packet(eio_packet.MESSAGE, event_packet(event, data, namespace, text))]
        eio = self.server.eio
        now = time.time()
        for _, eio_sid in self.get_participants(namespace, room):
            socket = eio.sockets.get(eio_sid)
            if socket is None or socket.closed:
                continue
            if socket.last_ping and now - socket.last_ping > eio.ping_timeout:
                for frame in frames:
                    task = asyncio.ensure_future(eio.send_packet(eio_sid, frame))
                    self._lagging.add(task)
                    task.add_done_callback(self._lagging.discard)
                continue
            for frame in frames:
                socket.queue.put_nowait(frame)

    def _frames(self, event: str, args: list[Any], namespace: str) -> list[eio_packet.Packet]:
        encoded = self.server.packet_class(packet.EVENT, namespace=namespace, data=[event, *args]).encode()
        return [eio_packet.Packet(eio_packet.MESSAGE, part) for part in
                (encoded if isinstance(encoded, list) else [encoded])]

