"""Instrumented python-socketio clients: bytes on the wire, events, per-token latency, order checks."""

from __future__ import annotations

import asyncio
import secrets
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

import aiohttp
import socketio

from benchmarks.codecs import OrjsonCodec
from benchmarks.tokens import INDEX_MOD, TOKEN_LEN, latency_s, now10, parse

DEV_KEYS = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",  # Anvil account 0
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",  # Anvil account 1
]


async def sign_in(url: str, private_key: str = DEV_KEYS[0]) -> str:
    """Sign in with Ethereum over HTTP as a client does; returns the bearer token."""
    from eth_account import Account
    from eth_account.messages import encode_defunct

    from lunark.siwe import SiweMessage

    account = Account.from_key(private_key)
    port = urlparse(url).port
    async with aiohttp.ClientSession() as http:
        async with http.get(url + "/auth/nonce") as response:
            nonce = (await response.json())["nonce"]
        message = SiweMessage(
            domain=f"localhost:{port}",
            address=account.address,
            statement="Sign in to Lunark.",
            uri=url,
            version="1",
            chain_id=31337,
            nonce=nonce,
            issued_at=datetime.now(UTC),
        ).to_text()
        signature = Account.sign_message(encode_defunct(text=message), private_key).signature
        body = {"message": message, "signature": "0x" + bytes(signature).hex()}
        async with http.post(url + "/auth/verify", json=body) as response:
            assert response.status == 200, await response.text()
            return str((await response.json())["token"])


class _CountingWebSocket:
    """Wraps aiohttp's client websocket: counts frames and payload bytes (+ frame header) received."""

    def __init__(self, ws: Any, owner: BenchClient) -> None:
        self._ws = ws
        self._owner = owner

    async def receive(self, *args: Any, **kwargs: Any) -> Any:
        msg = await self._ws.receive(*args, **kwargs)
        data = msg.data
        if isinstance(data, str):
            n = len(data) if data.isascii() else len(data.encode())
        elif isinstance(data, bytes):
            n = len(data)
        else:
            return msg
        owner = self._owner
        owner.bytes += n + (2 if n < 126 else 4 if n < 65536 else 10)
        owner.frames += 1
        return msg

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ws, name)


class Stream:
    """What one client sees of one answer."""

    def __init__(self, expected: int, whole: bool) -> None:
        self.expected = expected
        self.whole = whole
        self.tokens = 0
        self.chars = 0
        self.order_errors = 0
        self.seq_errors = 0
        self.last_seq: int | None = None
        self.latencies: list[float] = []
        self.received_at: list[float] = []  # per token, to pick the steady state out
        self.events = 0
        self.token_events = 0
        self.sent_at = 0.0
        self.first_at: float | None = None
        self.last_at = 0.0
        self.message_id: str | None = None
        self.done = asyncio.get_running_loop().create_future()

    def seq(self, value: Any) -> None:
        if isinstance(value, int):
            if self.last_seq is not None and value != self.last_seq + 1:
                self.seq_errors += 1
            self.last_seq = value

    def token(self, data: dict[str, Any]) -> None:
        received = now10()
        now = time.monotonic()
        self.events += 1
        self.token_events += 1
        self.seq(data.get("seq"))
        if self.message_id is not None and data.get("message_id") != self.message_id:
            return
        text = data["text"]
        if self.whole:
            new, self.chars = text[self.chars :], len(text)
        else:
            new = text
        if len(new) % TOKEN_LEN:
            self.order_errors += 1
            return
        for index, sent in parse(new):
            if index != self.tokens % INDEX_MOD:
                self.order_errors += 1
            self.tokens += 1
            self.latencies.append(latency_s(sent, received))
            self.received_at.append(now)
        if self.first_at is None:
            self.first_at = now
        self.last_at = now

    def other(self, event: str, data: Any) -> None:
        self.events += 1
        if isinstance(data, dict):
            self.seq(data.get("seq"))
            if event == "message_start" and data.get("role") == "assistant":
                self.message_id = data.get("message_id")
            elif (
                event == "message_end"
                and not self.done.done()
                and (self.message_id is None or data.get("message_id") == self.message_id)
            ):
                self.done.set_result(time.monotonic())


class BenchClient:
    """A signed-in (for Lunark) python-socketio client that feeds the current ``Stream``."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url
        self.token = token
        # orjson in the measuring client (every target gets the same client) keeps it off the critical path.
        self.sio = socketio.AsyncClient(reconnection=False, json=OrjsonCodec)
        self.bytes = 0
        self.frames = 0
        self.stream: Stream | None = None
        self.chat_id: str | None = None
        self.sio.on("token", self._on_token)
        self.sio.on("*", self._on_any)

    async def _on_token(self, data: Any) -> None:
        if self.stream is not None:
            self.stream.token(data)

    async def _on_any(self, event: str, data: Any = None) -> None:
        if self.stream is not None:
            self.stream.other(event, data)

    async def connect(self) -> BenchClient:
        auth = {"token": self.token} if self.token else None
        await self.sio.connect(self.url, auth=auth, transports=["websocket"], wait_timeout=30)
        self.sio.eio.ws = _CountingWebSocket(self.sio.eio.ws, self)
        return self

    async def close(self) -> None:
        if self.sio.connected:
            await self.sio.disconnect()

    def reset(self, stream: Stream | None) -> None:
        self.bytes = 0
        self.frames = 0
        self.stream = stream

    # Lunark
    async def join(self, chat_id: str | None = None, last_seq: int | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {}
        if chat_id is not None:
            payload["chat_id"] = chat_id
        if last_seq is not None:
            payload["last_seq"] = last_seq
        ack = await self.sio.call("join_chat", payload, timeout=60)
        if "error" in ack:
            raise RuntimeError(f"join_chat failed: {ack['error']}")
        self.chat_id = ack["chat_id"]
        return dict(ack)

    async def send(self, content: str) -> dict[str, Any]:
        assert self.chat_id is not None
        return dict(
            await self.sio.call(
                "send_message",
                {"chat_id": self.chat_id, "content": content, "client_message_id": "c" + secrets.token_hex(8)},
                timeout=60,
            )
        )

    # baselines
    async def start_baseline(self, n: int, rate: float, mode: str) -> None:
        self.chat_id = "chat_" + secrets.token_hex(10)
        await self.sio.emit("start", {"chat_id": self.chat_id, "n": n, "rate": rate, "mode": mode})


async def connect_many(url: str, count: int, token: str | None, *, concurrency: int = 50) -> list[BenchClient]:
    gate = asyncio.Semaphore(concurrency)

    async def one() -> BenchClient:
        async with gate:
            return await BenchClient(url, token).connect()

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def close_many(clients: list[BenchClient]) -> None:
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
