"""Socket.IO handlers: authenticate on connect, then one ack per client event.

Every handler validates its payload against the protocol model and answers
with an ack; a malformed, oversized or unknown event gets an error ack, never
silence, and never takes the server down.

Each connection gets at most ``limits.max_events_in_flight`` events handled at
once and ``_MAX_REPLAYS`` replays running; more are answered ``rate_limited``.
A disconnect cancels the connection's replays, and ending a session (logout, on
any process) disconnects the sockets that signed in with it, after an ``error``
event (``unauthorized``). Until the socket is gone, every event it sends is
refused with ``unauthorized``: the handlers check the session's ``Watch`` (in
memory, set by the logout's notification or by the process's periodic session
check, ``Authenticator.check_sessions``), never only the address saved at connect.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import socketio
from pydantic import BaseModel, ValidationError

from lunark import protocol
from lunark.config import LimitsSettings
from lunark.errors import LunarkError, RateLimited, Unauthorized
from lunark.protocol import Abort, CallTool, ContinueMessage, JoinChat, ResumeDecisions, SendMessage, WalletChanged
from lunark.server.auth import Authenticator, Watch, token_hash
from lunark.server.hub import Hub
from lunark.server.limits import Limiters
from lunark.server.service import ChatService
from lunark.store import EventRecord

__all__ = ["ChatNamespace"]

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

_MAX_REPLAYS = 4
"""Replays one connection may have running at once."""


_ENDED = "The session ended (logout); sign in again."


def error_ack(code: str, message: str, **details: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **details}}


class ChatNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    def __init__(self, *, auth: Authenticator, service: ChatService, hub: Hub, namespace: str = "/",
                 limits: LimitsSettings | None = None, limiters: Limiters | None = None) -> None:
        super().__init__(namespace)
        self.auth = auth
        self.service = service
        self.hub = hub
        self.limits = limits or LimitsSettings()
        self.limiters = limiters
        self._replays: dict[str, set[asyncio.Task[None]]] = {}
        self._in_flight: dict[str, int] = {}
        self._signed_in: dict[str, Watch] = {}
        """sid -> the session it signed in with: whom to refuse and disconnect once it ends."""
        auth.on_revoked(self._revoked)

    async def trigger_event(self, event: str, *args: Any) -> Any:
        if event in ("connect", "disconnect"):
            if args and self.server.manager.is_connected(args[0], self.namespace):
                # A client *event* under a reserved name: python-socketio would hand it to
                # on_connect (re-authenticating the socket with whatever it carries, and never
                # acking). The real connect and disconnect run while the socket is pre-connected
                # or leaving, so is_connected tells them apart.
                return error_ack("invalid_input", f"{event!r} is reserved; it is not a client event.")
            return await super().trigger_event(event, *args)
        if not hasattr(self, f"on_{event}"):
            return error_ack("invalid_input", f"Unknown event {event[:64]!r}.")
        if len(args) > 2:
            # (sid, payload): more arguments would be a TypeError inside python-socketio, logged
            # there and never acked. The contract is one ack per event, errors included.
            return error_ack("invalid_input", f"{event} takes one payload object, not {len(args) - 1} arguments.")
        sid = args[0] if args else ""
        busy = self._in_flight.get(sid, 0)
        if busy >= self.limits.max_events_in_flight:
            return {"error": RateLimited(
                f"{busy} events of this connection are still being handled; wait for their acks.",
                retry_after=1, limit="events_in_flight",
            ).to_dict()}
        self._in_flight[sid] = busy + 1
        try:
            return await super().trigger_event(event, *args)
        finally:
            left = self._in_flight.get(sid, 1) - 1
            if left > 0:
                self._in_flight[sid] = left
            else:
                self._in_flight.pop(sid, None)

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        try:
            address = await self.auth.authenticate(token if isinstance(token, str) else None)
        except Unauthorized as exc:
            # python-socketio sends ``error_args`` to the client as its connect_error data. Built
            # from one argument it would be {"message": str(arg)}: a dict's repr, no code. So it is
            # set whole: {code, message} (what Python clients receive), plus "data" with the same,
            # which socket.io-client exposes as ``err.data`` (``err.message`` is the message).
            refused = socketio.exceptions.ConnectionRefusedError(exc.message)
            body = {"code": exc.code, "message": exc.message}
            refused.error_args = {**body, "data": body}
            raise refused from None
        await self.save_session(sid, {"address": address})
        # Watched from here on; a logout between the authenticate above and now is caught by the
        # next session check (Authenticator.check_sessions), as is one whose notification was missed.
        self._signed_in[sid] = self.auth.open_watch(token_hash(str(token)), address)
        await self.enter_room(sid, f"user:{address.lower()}")

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        watch = self._signed_in.pop(sid, None)
        if watch is not None:
            self.auth.close_watch(watch)
        for task in self._replays.pop(sid, set()):
            task.cancel()  # the client is gone: what it asked to be sent is dropped

    async def _revoked(self, address: str, hashed: str | None) -> None:
        for sid in [sid for sid, watch in self._signed_in.items() if watch.ended.is_set()]:
            await self._end(sid)

    async def _end(self, sid: str) -> None:
        """Tell the socket its session ended and close it; only this process's sockets are asked
        about, so neither goes through the relay (it works with Redis down)."""
        watch = self._signed_in.pop(sid, None)
        if watch is None:
            return  # already being closed
        self.auth.close_watch(watch)
        for task in self._replays.pop(sid, set()):
            task.cancel()
        try:
            await self.emit("error", protocol.error("unauthorized", _ENDED), to=sid,
                            ignore_queue=True)
            await self.server.disconnect(sid, namespace=self.namespace, ignore_queue=True)
        except Exception:
            logger.exception("closing socket %s of an ended session failed", sid)

    async def _call(
        self, sid: str, data: Any, model: type[M], handler: Callable[[str, M], Awaitable[dict[str, Any]]]
    ) -> dict[str, Any]:
        watch = self._signed_in.get(sid)
        if watch is None or watch.ended.is_set():
            # The session ended (the socket is being closed, or will be by the listener that set the
            # watch): checked in memory, no database read.
            return {"error": Unauthorized(_ENDED, reason="invalid_token").to_dict()}
        try:
            session = await self.get_session(sid)
            payload = model.model_validate(data if data is not None else {})
            return await handler(session["address"], payload)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "payload"
            return error_ack("invalid_input", f"Invalid {where}: {first['msg']}.")
        except LunarkError as exc:
            return {"error": exc.to_dict()}
        except Exception:  # the server keeps serving everyone else
            logger.exception("handler failed for %s", model.__name__)
            return error_ack("internal", "Internal error.")

    async def on_join_chat(self, sid: str, data: Any = None) -> dict[str, Any]:
        async def handle(address: str, p: JoinChat) -> dict[str, Any]:
            replays = self._replays.setdefault(sid, set())
            if len(replays) >= _MAX_REPLAYS:
                raise RateLimited(f"{len(replays)} replays of this connection are still running; join again "
                                  "after they end.", retry_after=1, limit="replays")
            chat, ack = await self.service.join(address, p.chat_id)
            after = ack["last_seq"] if p.last_seq is None else min(p.last_seq, ack["last_seq"])
            if sid not in self._signed_in:
                return ack  # disconnected meanwhile
            task = asyncio.create_task(self._replay(sid, chat.chat_id, chat.owner, after))
            replays.add(task)
            task.add_done_callback(replays.discard)
            return ack

        return await self._call(sid, data, JoinChat, handle)

    async def _replay(self, sid: str, chat_id: str, owner: str, after: int) -> None:
        # Let the ack go out first: the contract sends the missed events after it.
        await asyncio.sleep(0)

        async def send(record: EventRecord) -> None:
            await self.emit(record.type, record.payload, to=sid)

        async def join() -> None:
            await self.enter_room(sid, f"chat:{chat_id}")

        try:
            await self.hub.replay_then_join(chat_id, owner, after, send, join, batch=self.limits.replay_batch,
                                            writable=lambda: self._writable(sid))
        except Exception:
            logger.exception("replay of chat %s to %s failed", chat_id, sid)
            await self.emit("error", protocol.error("internal", "Replay failed; join again."), to=sid)

    async def _writable(self, sid: str) -> None:
        """Until the client has read enough of what it was sent (the transport's back-pressure)."""
        eio_sid = self.server.manager.eio_sid_from_sid(sid, self.namespace)
        if eio_sid is not None and hasattr(self.server.eio, "wait_writable"):
            await self.server.eio.wait_writable(eio_sid)

    async def on_send_message(self, sid: str, data: Any = None) -> dict[str, Any]:
        async def handle(address: str, p: SendMessage) -> dict[str, Any]:
            return {"message_id": await self.service.send(address, p)}

        return await self._call(sid, data, SendMessage, handle)

    async def on_resume_decisions(self, sid: str, data: Any = None) -> dict[str, Any]:
        async def handle(address: str, p: ResumeDecisions) -> dict[str, Any]:
            await self.service.decide(address, p)
            return {"ok": True}

        return await self._call(sid, data, ResumeDecisions, handle)

    async def on_abort(self, sid: str, data: Any = None) -> dict[str, Any]:
        async def handle(address: str, p: Abort) -> dict[str, Any]:
            await self.service.abort(address, p.chat_id)
            return {"ok": True}

        return await self._call(sid, data, Abort, handle)

    async def on_wallet_changed(self, sid: str, data: Any = None) -> dict[str, Any]:
        async def handle(address: str, p: WalletChanged) -> dict[str, Any]:
            return {"ok": True, "network": await self.service.wallet_changed(address, p.chat_id, p.chain_id)}

        return await self._call(sid, data, WalletChanged, handle)

    async def on_call_tool(self, sid: str, data: Any = None) -> dict[str, Any]:
        async def handle(address: str, p: CallTool) -> dict[str, Any]:
            return {"call_id": await self.service.call_tool(address, p)}

        return await self._call(sid, data, CallTool, handle)

    async def on_continue_message(self, sid: str, data: Any = None) -> dict[str, Any]:
        async def handle(address: str, p: ContinueMessage) -> dict[str, Any]:
            await self.service.continue_message(address, p)
            return {"ok": True}

        return await self._call(sid, data, ContinueMessage, handle)
