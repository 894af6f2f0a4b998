"""The connection: one Socket.IO connection to the server, re-established when it drops (every
joined chat is joined again from the last seq it holds), and requests as calls that wait for
their ack, repeated after a reconnection when they are safe to repeat.

``Connection`` is the part of ``LunarkClient`` that owns the socket; the client's constructor sets
the state declared on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any

import socketio
from pydantic import BaseModel, ValidationError

from lunark.client.errors import Disconnected, error_from_body
from lunark.client.ordering import ChatSequence
from lunark.client.signin import SignIn
from lunark.errors import InvalidInput, LunarkError, Unauthorized
from lunark.protocol import EVENT_TYPES, ChatEvent, Error, JoinChat, JoinChatAck, parse_event

if TYPE_CHECKING:
    from lunark.client.session import ChatSession

__all__ = ["Connection"]

logger = logging.getLogger(__name__)

_ORPHANS_PER_CHAT = 256
_ORPHAN_CHATS = 32


class _Dropped(Exception):
    """The connection went down while a request waited for its ack."""


def _raise_invalid(exc: ValidationError) -> LunarkError:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "payload"
    return InvalidInput(f"Invalid {where}: {first['msg']}.")


def _payload(model: type[BaseModel], **fields: Any) -> dict[str, Any]:
    """Validate a client -> server payload before sending it (the same model the server uses)."""
    try:
        return model.model_validate(fields).model_dump(mode="json", exclude_none=True)
    except ValidationError as exc:
        raise _raise_invalid(exc) from None


class Connection(SignIn):
    """The Socket.IO connection: connect, reconnect, re-join, route events, call and wait for acks."""

    reconnects: int
    sio: Any
    _transports: list[str]
    _on_connection: Callable[[bool], None] | None
    _sessions: dict[str, ChatSession]
    _orphans: dict[str, list[ChatEvent]]
    _ready: asyncio.Event
    _inflight: set[asyncio.Future[tuple[Any, ...]]]
    _tasks: set[asyncio.Task[Any]]
    _emit_lock: asyncio.Lock
    _started: bool
    _ever_connected: bool
    _closed: bool
    _refusal: Any
    session_ended: bool

    async def _auth(self) -> dict[str, Any]:
        return {"token": self.token}

    @property
    def connected(self) -> bool:
        """True while the Socket.IO connection is up."""
        return self._ready.is_set()

    async def connect(self) -> None:
        """Open the Socket.IO connection (signing in first if only ``signer_key`` was given).

        Raises ``Unauthorized`` when the server refuses the token, ``Disconnected`` when it
        cannot be reached.
        """
        if self._closed:
            raise Disconnected("This client was closed; make a new one.")
        if self.token is None:
            await self.sign_in()
        self._refusal = None
        self._started = True
        try:
            await self.sio.connect(
                self.url, auth=self._auth, transports=self._transports, wait_timeout=self.timeout
            )
        except socketio.exceptions.ConnectionError as exc:
            refusal = self._refusal
            if isinstance(refusal, Mapping):
                error = error_from_body(refusal)
                raise error if isinstance(error, Unauthorized) else Unauthorized(error.message) from None
            raise Disconnected(f"Could not connect to {self.url}: {refusal or exc}.") from None

    async def close(self) -> None:
        """Disconnect, stop reconnecting, end every ``events()`` iterator, close HTTP."""
        if self._closed:
            return
        self._closed = True
        self._ready.clear()
        self._fail_inflight()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.sio.shutdown()
        for session in self._sessions.values():
            session._end()
        if self._http is not None:
            await self._http.close()

    def _spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _fail_inflight(self) -> None:
        for future in self._inflight:
            if not future.done():
                future.set_exception(_Dropped())

    async def _on_connect(self) -> None:
        self._ready.set()
        if self._ever_connected:
            # A reconnection: the new socket is in no chat room yet. Join each chat again
            # from the last seq it holds; the server replays the rest.
            self.reconnects += 1
            for session in list(self._sessions.values()):
                self._spawn(self._rejoin(session))
        self._ever_connected = True
        if self._on_connection is not None:
            self._on_connection(True)

    async def _on_disconnect(self, reason: Any = None) -> None:
        self._ready.clear()
        self._fail_inflight()
        if self._on_connection is not None and not self._closed:
            self._on_connection(False)

    async def _on_connect_error(self, data: Any = None) -> None:
        self._refusal = data
        if (
            self._ever_connected
            and isinstance(data, Mapping)
            and data.get("code") == "unauthorized"
            and self._signer_key is not None
            and not self._closed
        ):
            # The token expired while reconnecting: sign in again; the next attempt uses it.
            self._spawn(self._refresh_token())

    async def _on_event(self, event: str, data: Any = None) -> None:
        if event not in EVENT_TYPES:
            return
        try:
            parsed = parse_event(data)
        except ValidationError as exc:
            logger.warning("ignoring a malformed %s event: %s", event, exc)
            return
        chat_id = parsed.chat_id
        if chat_id is None:
            # Not bound to a chat: every session hears it. A failed replay: every chat resyncs. The
            # session ended (a logout, here or elsewhere): the server closes the socket; nothing to rejoin.
            ended = isinstance(parsed, Error) and parsed.code == "unauthorized"
            self.session_ended = self.session_ended or ended
            for each in list(self._sessions.values()):
                each._accept(parsed)
                if not ended:
                    self._spawn(self._rejoin(each))
            return
        session = self._sessions.get(chat_id)
        if session is not None:
            session._accept(parsed)
            return
        # Not joined (yet): a replay can overtake the join ack, and wallet events of other chats
        # arrive through the user's room. Keep the recent ones for a join that follows.
        kept = self._orphans.setdefault(chat_id, [])
        kept.append(parsed)
        del kept[:-_ORPHANS_PER_CHAT]
        while len(self._orphans) > _ORPHAN_CHATS:
            del self._orphans[next(iter(self._orphans))]

    async def _call(self, event: str, payload: dict[str, Any], *, retry: bool) -> Any:
        """Emit and wait for the ack; an error ack raises. ``retry``: the request is idempotent,
        so it is sent again after a reconnection if the connection dropped before the ack."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        if not self._started:
            await self.connect()
        while True:
            if self._closed:
                raise Disconnected("This client was closed.")
            try:
                await asyncio.wait_for(self._ready.wait(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise Disconnected(f"Not connected to {self.url} (waited {self.timeout:g} s for {event}).") from None
            future: asyncio.Future[tuple[Any, ...]] = loop.create_future()

            def done(*args: Any, future: asyncio.Future[tuple[Any, ...]] = future) -> None:
                if not future.done():
                    future.set_result(args)

            self._inflight.add(future)
            try:
                async with self._emit_lock:
                    await self.sio.emit(event, payload, callback=done)
                args = await asyncio.wait_for(future, max(0.0, deadline - loop.time()))
            except (_Dropped, socketio.exceptions.BadNamespaceError):
                if retry and not self._closed:
                    continue
                raise Disconnected(
                    f"The connection dropped before the server answered {event}; it may or may not have "
                    "been applied (watch the chat's events)."
                ) from None
            except TimeoutError:
                raise Disconnected(f"No answer to {event} within {self.timeout:g} s.") from None
            finally:
                self._inflight.discard(future)
            ack = args[0] if args else None
            if isinstance(ack, Mapping) and "error" in ack:
                raise error_from_body(ack["error"])
            return ack

    async def _rejoin(self, session: ChatSequence, *, quiet: bool = True) -> None:
        try:
            payload = _payload(JoinChat, chat_id=session.chat_id, last_seq=session._received)
            ack = JoinChatAck.model_validate(await self._call("join_chat", payload, retry=True))
        except LunarkError as exc:
            if not quiet:
                raise
            # Disconnected: the next connection joins again.
            logger.warning("re-joining chat %s failed: %s", session.chat_id, exc)
            return
        if ack.last_seq <= session._received:
            # Nothing to replay, so the ack is the current state.
            session.network = ack.network.to_wire()
            session.pending_approval = ack.pending_approval
