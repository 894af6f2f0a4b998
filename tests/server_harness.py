"""Real clients of a real Lunark server, for the server tests: Socket.IO, HTTP and Server-Sent Events.

    async with SioClient(server, token) as sio:
        ack = await sio.call("join_chat", {})
        await sio.call("send_message", {"chat_id": ack["chat_id"], "content": "hi", "client_message_id": "m1"})
        end = await sio.wait_event("message_end", chat_id=ack["chat_id"])

Every event a client receives is recorded in order (``events``), so a test can
assert on the whole stream: seqs, order, exactly-once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
import socketio

DEFAULT_TIMEOUT = 15.0


class SioClient:
    """A ``socketio.AsyncClient`` signed in with ``token`` that records every event it receives."""

    def __init__(self, server: Any, token: str | None, *, transport: str = "websocket") -> None:
        self.url = server.url
        self.token = token
        self.transport = transport
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: list[dict[str, Any]] = []
        self.connect_errors: list[Any] = []
        self._changed = asyncio.Condition()
        self.sio.on("*", self._on_any)
        self.sio.on("connect_error", self._on_connect_error)

    async def _on_any(self, event: str, data: Any = None) -> None:
        record = dict(data) if isinstance(data, dict) else {"data": data}
        record.setdefault("type", event)
        record["_event"] = event
        async with self._changed:
            self.events.append(record)
            self._changed.notify_all()

    async def _on_connect_error(self, data: Any = None) -> None:
        self.connect_errors.append(data)

    async def connect(self) -> SioClient:
        auth = {"token": self.token} if self.token is not None else None
        await self.sio.connect(self.url, auth=auth, transports=[self.transport], wait_timeout=10)
        return self

    async def __aenter__(self) -> SioClient:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if not self.sio.connected:
            return
        if self.transport == "polling":
            # After a polling client's CLOSE, python-engineio's server answers the pending long-poll
            # only at the ping timeout (~30 s); the client's clean disconnect waits for it. Aborting
            # closes the client's HTTP session, which ends that request now. The server still gets
            # the CLOSE packet first, so it sees an ordinary disconnect.
            await self.sio.eio.disconnect(abort=True)
            read_loop = self.sio.eio.read_loop_task
            if read_loop is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(read_loop, 5)
            return
        await self.sio.disconnect()

    async def call(self, event: str, data: Any = None, *, timeout: float = DEFAULT_TIMEOUT) -> Any:
        """Emit ``event`` and return its ack."""
        return await self.sio.call(event, data, timeout=timeout)

    def mark(self) -> int:
        """Where the event log is now; pass it as ``after`` to wait only for later events."""
        return len(self.events)

    def of(self, kind: str, *, chat_id: str | None = None, after: int = 0) -> list[dict[str, Any]]:
        return [
            e for e in self.events[after:]
            if e["type"] == kind and (chat_id is None or e.get("chat_id") == chat_id)
        ]

    def chat_events(self, chat_id: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("chat_id") == chat_id and "seq" in e]

    def seqs(self, chat_id: str) -> list[int]:
        return [e["seq"] for e in self.chat_events(chat_id)]

    async def wait_until(
        self, predicate: Callable[[dict[str, Any]], bool], *, after: int = 0, timeout: float = DEFAULT_TIMEOUT,
        what: str = "an event",
    ) -> dict[str, Any]:
        """The first event (at index >= ``after``) that satisfies ``predicate``, waiting for it."""

        def found() -> dict[str, Any] | None:
            return next((e for e in self.events[after:] if predicate(e)), None)

        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: found() is not None)
        except TimeoutError:
            seen = [(e["type"], e.get("seq"), e.get("status") or e.get("finish_reason")) for e in self.events]
            raise AssertionError(f"no {what} within {timeout}s; received {seen}") from None
        event = found()
        assert event is not None
        return event

    async def wait_event(
        self, kind: str, *, chat_id: str | None = None, after: int = 0, timeout: float = DEFAULT_TIMEOUT,
        **fields: Any,
    ) -> dict[str, Any]:
        """The first ``kind`` event (of ``chat_id``, with these field values) at index >= ``after``."""

        def matches(e: dict[str, Any]) -> bool:
            return (
                e["type"] == kind
                and (chat_id is None or e.get("chat_id") == chat_id)
                and all(e.get(k) == v for k, v in fields.items())
            )

        return await self.wait_until(matches, after=after, timeout=timeout, what=f"{kind} {fields or ''}")


def assert_error(ack: Any, *codes: str) -> dict[str, Any]:
    """``ack`` is ``{"error": {"code", "message"}}`` with one of ``codes``; returns the error."""
    assert isinstance(ack, dict) and isinstance(ack.get("error"), dict), f"expected an error ack, got {ack!r}"
    error: dict[str, Any] = ack["error"]
    assert error.get("code") in codes, f"expected one of {codes}, got {error!r}"
    assert isinstance(error.get("message"), str) and error["message"], error
    return error


def assert_contiguous(seqs: Sequence[int], start: int = 1) -> None:
    """``seqs`` is exactly start, start+1, ..., with no gap and no repeat."""
    assert list(seqs) == list(range(start, start + len(seqs))), f"seqs not contiguous from {start}: {list(seqs)}"


class Http:
    """A small JSON client for the HTTP mirror: ``status, body = await http.get("/api/chats", token)``."""

    def __init__(self, server: Any) -> None:
        self.url = server.url
        self.session = aiohttp.ClientSession()

    async def __aenter__(self) -> Http:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()

    async def request(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> tuple[int, Any]:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        async with self.session.request(method, self.url + path, headers=headers, **kwargs) as response:
            assert response.content_type == "application/json", (
                f"{method} {path}: {response.status} {response.content_type}: {await response.text()}"
            )
            return response.status, await response.json()

    async def get(self, path: str, token: str | None = None, **kwargs: Any) -> tuple[int, Any]:
        return await self.request("GET", path, token, **kwargs)

    async def post(self, path: str, token: str | None = None, **kwargs: Any) -> tuple[int, Any]:
        return await self.request("POST", path, token, **kwargs)


def assert_http_error(status: int, body: Any, expected_status: int, code: str) -> None:
    assert status == expected_status, f"expected {expected_status}, got {status}: {body!r}"
    assert isinstance(body, dict) and body.get("error", {}).get("code") == code, body
    assert isinstance(body["error"].get("message"), str) and body["error"]["message"], body


class EventStream:
    """Reads ``text/event-stream`` from an aiohttp response: ``{"id", "event", "data"}`` per event."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.comments = 0

    async def next(self, *, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        fields: dict[str, str] = {}
        data: list[str] = []
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.response.content.readline()
                if not raw:
                    raise EOFError("the event stream ended")
                line = raw.decode().rstrip("\n").rstrip("\r")
                if not line:
                    if data or fields:
                        return {"id": fields.get("id"), "event": fields.get("event", "message"),
                                "data": json.loads("\n".join(data))}
                    continue
                if line.startswith(":"):
                    self.comments += 1
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "data":
                    data.append(value)
                else:
                    fields[name] = value
