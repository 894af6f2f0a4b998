"""A python-socketio client that records every event and lets a benchmark wait for one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import socketio

from benchmarks.codecs import OrjsonCodec


class Recorder:
    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token
        self.sio = socketio.AsyncClient(reconnection=False, json=OrjsonCodec)
        self.events: list[tuple[float, str, dict[str, Any]]] = []
        self._waiters: list[tuple[Callable[[str, dict[str, Any]], bool], asyncio.Future[float]]] = []
        self.sio.on("*", self._on_any)

    async def _on_any(self, event: str, data: Any = None) -> None:
        now = time.monotonic()
        payload = data if isinstance(data, dict) else {"data": data}
        self.events.append((now, event, payload))
        for waiter in list(self._waiters):
            match, future = waiter
            if not future.done() and match(event, payload):
                future.set_result(now)
                self._waiters.remove(waiter)

    def expect(self, event: str, **fields: Any) -> asyncio.Future[float]:
        """A future of the time the next matching event arrives (register before causing it)."""
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()

        def match(name: str, data: dict[str, Any]) -> bool:
            return name == event and all(data.get(k) == v for k, v in fields.items())

        self._waiters.append((match, future))
        return future

    def last(self, event: str) -> dict[str, Any]:
        return next(data for _, name, data in reversed(self.events) if name == event)

    async def connect(self) -> Recorder:
        await self.sio.connect(self.url, auth={"token": self.token}, transports=["websocket"], wait_timeout=30)
        return self

    async def close(self) -> None:
        if self.sio.connected:
            await self.sio.disconnect()

    async def call(self, event: str, data: Any, timeout: float = 60) -> dict[str, Any]:
        ack = await self.sio.call(event, data, timeout=timeout)
        if isinstance(ack, dict) and "error" in ack:
            raise RuntimeError(f"{event} failed: {ack['error']}")
        return dict(ack)
