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
import base64
import contextlib
import json
import os
import re
import signal
import socket as socket_module
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import socketio

DEFAULT_TIMEOUT = 15.0

TEST_WORKERS = "LUNARK_TEST_WORKERS"
"""Every test server (``make_server``, ``serve``, ``ServeProcess``) runs its turns in the serving
process (``server.workers = 0``: it starts faster than one with a worker process) unless its test set
``server.workers`` itself. ``LUNARK_TEST_WORKERS=N`` runs them in N worker processes instead, to run
the server tests through the workers path (``lunark.server.workers``), the default of ``lunark serve``
that ``tests/test_workers.py`` covers."""


def with_test_workers(settings: Any) -> Any:
    """``settings`` with ``server.workers`` from ``LUNARK_TEST_WORKERS`` (0 when unset), if the test
    did not choose (a Postgres store without Redis, which workers refuse, is left alone)."""
    count = int(os.environ.get(TEST_WORKERS) or 0)
    server = settings.server
    if "workers" in server.model_fields_set or server.relay_only:
        return settings
    if count and settings.store.url and not server.redis_url:
        return settings
    return settings.model_copy(update={"server": server.model_copy(update={"workers": count})})


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

    async def mid_answer(self, *, watch: SioClient | None = None, tokens: int = 3) -> tuple[str, str]:
        """A new chat whose answer to "hello" is streaming: ``(chat_id, the answer's message_id)``
        once ``watch`` (another client, joined to the chat here; by default this one) has received
        ``tokens`` of its tokens. What a kill-mid-answer test cuts."""
        watch = watch or self
        chat_id: str = (await self.call("join_chat", {}))["chat_id"]
        if watch is not self:
            await watch.call("join_chat", {"chat_id": chat_id})
        await self.call("send_message", {"chat_id": chat_id, "content": "hello", "client_message_id": "m1"})
        start = await watch.wait_event("message_start", chat_id=chat_id, role="assistant", timeout=30)
        await watch.wait_until(lambda _: len(watch.of("token", chat_id=chat_id)) >= tokens,
                               what=f"{tokens} tokens", timeout=30)
        return chat_id, str(start["message_id"])

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


class ServeProcess:
    """A real ``lunark serve`` process, configured by a JSON file made from ``settings``.

        server = await ServeProcess(settings).start()
        ...                       # server.url, server.domain: as LunarkServer has them
        assert server.alive()     # the process did not die (a crash, not just an error)
        await server.stop()

    Its log goes to ``log_path`` (``log()`` reads it), so a test can say what the server said.
    """

    def __init__(self, settings: Any, *, env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.env = env or {}
        self.data_dir = Path(settings.data_dir)
        self.log_path = self.data_dir / "serve.log"
        self.url = ""
        self.domain = ""
        self.proc: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None

    async def start(self) -> ServeProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "config.json"
        self.settings = with_test_workers(self.settings)
        config.write_text(json.dumps(self.settings.model_dump(mode="json")))
        env = {k: v for k, v in os.environ.items() if not k.startswith("LUNARK_")}
        env.update(self.env)
        with self.log_path.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", "import sys; from lunark.cli import main; sys.exit(main())",
                "--loop", "asyncio", "serve", "--config", str(config),
                env=env, stdout=asyncio.subprocess.PIPE, stderr=log,
            )
        assert self.proc.stdout is not None
        try:
            line = (await asyncio.wait_for(self.proc.stdout.readline(), 60)).decode()
        except TimeoutError:
            await self.stop()
            raise AssertionError(f"lunark serve did not start:\n{self.log()}") from None
        found = re.search(r"listening on (http://\S+) \(sign-in domain (\S+),", line)
        assert found, f"unexpected start line {line!r}:\n{self.log()}"
        self.url, self.domain = found.group(1), found.group(2)
        self._drain = asyncio.create_task(self._read_stdout())
        return self

    async def _read_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while await self.proc.stdout.read(65536):
            pass

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        """True while the process runs; a crash (SIGSEGV) makes it False."""
        return self.proc is not None and self.proc.returncode is None and _running(self.proc.pid)

    def rss_bytes(self) -> int:
        """The process's resident memory now (Linux /proc)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS in /proc status")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._drain is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._drain, 5)


def _running(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return status.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has died, unreaped


class RawSocketIO:
    """A Socket.IO client over a bare WebSocket, for what a real client library never sends.

    It speaks just enough Engine.IO v4 / Socket.IO v5 to connect, send any text frame (deep
    JSON, oversize messages, blind pongs) and read frames only when asked, so a test can
    also be the client that never reads.
    """

    def __init__(self, url: str, *, receive_buffer: int | None = None) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.receive_buffer = receive_buffer
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> dict[str, Any]:
        """WebSocket upgrade and the Engine.IO OPEN packet (returned)."""
        sock = None
        if self.receive_buffer is not None:
            sock = socket_module.socket(socket_module.AF_INET, socket_module.SOCK_STREAM)
            sock.setsockopt(socket_module.SOL_SOCKET, socket_module.SO_RCVBUF, self.receive_buffer)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, (self.host, self.port))
            self.reader, self.writer = await asyncio.open_connection(sock=sock, limit=self.receive_buffer)
        else:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        key = base64.b64encode(os.urandom(16)).decode()
        self.writer.write(
            f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        status = await self.reader.readuntil(b"\r\n\r\n")
        assert b" 101 " in status.split(b"\r\n")[0], status
        opened = await self.recv()
        assert opened.startswith("0"), opened
        return dict(json.loads(opened[1:]))

    async def connect(self, auth_json: str) -> str:
        """Socket.IO CONNECT with ``auth_json`` as the auth object's text; returns the answer packet."""
        await self.send("40" + auth_json)
        return await self.recv_message()

    async def send(self, text: str) -> None:
        """One WebSocket text frame (masked, as a client must)."""
        assert self.writer is not None
        payload = text.encode()
        header = bytearray([0x81])
        if len(payload) < 126:
            header.append(0x80 | len(payload))
        elif len(payload) < 2**16:
            header += bytes([0x80 | 126]) + len(payload).to_bytes(2, "big")
        else:
            header += bytes([0x80 | 127]) + len(payload).to_bytes(8, "big")
        mask = os.urandom(4)
        header += mask
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) if len(payload) < 4096 else _mask(payload, mask)
        self.writer.write(bytes(header) + masked)
        await self.writer.drain()

    async def recv(self) -> str:
        """The next text frame; answers nothing by itself (pings are the caller's business)."""
        assert self.reader is not None
        head = await self.reader.readexactly(2)
        opcode, length = head[0] & 0x0F, head[1] & 0x7F
        if length == 126:
            length = int.from_bytes(await self.reader.readexactly(2), "big")
        elif length == 127:
            length = int.from_bytes(await self.reader.readexactly(8), "big")
        data = await self.reader.readexactly(length)
        if opcode == 0x8:
            raise EOFError(f"WebSocket closed: {data!r}")
        return data.decode()

    async def recv_message(self, *, timeout: float = DEFAULT_TIMEOUT) -> str:
        """The next Engine.IO MESSAGE's text (a Socket.IO packet), answering pings on the way."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.recv()
                if frame == "2":
                    await self.send("3")
                elif frame.startswith("4"):
                    return frame[1:]

    async def closed_by_server(self, *, timeout: float = DEFAULT_TIMEOUT) -> bool:
        """Read everything until the server ends the connection; False if it is still open at ``timeout``."""
        assert self.reader is not None
        try:
            async with asyncio.timeout(timeout):
                while await self.reader.read(65536):
                    pass
        except TimeoutError:
            return False
        except (ConnectionError, OSError):
            pass
        return True

    def close(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()


def _mask(payload: bytes, mask: bytes) -> bytes:
    repeated = (mask * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(payload), "big")


def deep_json(levels: int) -> str:
    """``[`` x levels then ``]`` x levels, as text: never built as a Python object, whose
    encoding would overflow this process's C stack as it did the server's."""
    return "[" * levels + "]" * levels
