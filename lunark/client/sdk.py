"""The async Python SDK: sign in, chat, decide approvals, follow transactions.

One ``LunarkClient`` per server and account; one ``ChatSession`` per joined
chat. Events arrive as the typed models of ``lunark.protocol``, in ``seq``
order, each exactly once, also across dropped connections::

    from lunark.client import LunarkClient, sign_and_send
    from lunark.protocol import MessageEnd, Token

    async with LunarkClient("http://localhost:8080", signer_key=KEY) as client:
        session = await client.join()                      # a new chat
        for event in await session.turn("send 0.1 ETH to 0x7099…79C8"):
            if isinstance(event, Token):
                print(event.text, end="")
        approval = session.pending_approval                # the transfer waits for us
        tx_hash = await sign_and_send(approval.action_requests[0].tx, RPC_URL, KEY)
        await session.approve(tx_hash=tx_hash)
        async for event in session.events():
            if isinstance(event, MessageEnd):
                break

Errors: an error ack raises the ``lunark.errors`` class of its code
(``forbidden`` -> ``Forbidden``, ``busy`` -> ``Busy``, ...), a refused
connection raises ``Unauthorized``, and a server that cannot be reached (or a
connection that drops before the server answered a decision) raises
``Disconnected``.

Reconnection: python-socketio reconnects on its own; the SDK then joins every
chat again with the last ``seq`` it holds, and the server replays what was
missed. Out-of-order arrivals are held back until the gap before them fills,
and duplicates are dropped, so ``events()`` continues with no gap and no
repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import urlsplit

import aiohttp
import socketio
from eth_account import Account
from eth_account.messages import encode_defunct
from pydantic import BaseModel, ValidationError

from lunark.errors import (
    AlreadyDecided,
    ApprovalExpired,
    Busy,
    ChainError,
    Forbidden,
    InvalidInput,
    LunarkError,
    ModelError,
    NoPendingApproval,
    NotFound,
    PolicyViolation,
    RateLimited,
    Unauthorized,
)
from lunark.protocol import (
    EVENT_TYPES,
    Abort,
    ApprovalRequest,
    ApprovalResolved,
    ChatEvent,
    JoinChat,
    JoinChatAck,
    MessageEnd,
    MessageStart,
    NetworkSwitch,
    PendingApproval,
    ResumeDecisions,
    SendMessage,
    SendMessageAck,
    WalletChanged,
    WalletChangedAck,
    parse_event,
)
from lunark.server.siwe import SiweMessage

__all__ = ["ERROR_CLASSES", "ChatSession", "Disconnected", "LunarkClient", "error_from_body"]

logger = logging.getLogger(__name__)

ERROR_CLASSES: Mapping[str, type[LunarkError]] = {
    "unauthorized": Unauthorized,
    "forbidden": Forbidden,
    "not_found": NotFound,
    "invalid_input": InvalidInput,
    "busy": Busy,
    "already_decided": AlreadyDecided,
    "approval_expired": ApprovalExpired,
    "no_pending_approval": NoPendingApproval,
    "policy_violation": PolicyViolation,
    "chain_error": ChainError,
    "model_error": ModelError,
    "internal": LunarkError,
    "rate_limited": RateLimited,
}
"""Protocol error code -> the exception the SDK raises for it."""

_LOOPBACK = ("localhost", "127.0.0.1", "[::1]")
_ORPHANS_PER_CHAT = 256
_ORPHAN_CHATS = 32
_GAP_STRIKES = 3  # gap timeouts before a missing seq is given up on (two re-joins first)


class Disconnected(LunarkError):
    """Not connected: the server could not be reached, the client was closed, or the
    connection dropped before the server answered a request that is not safe to repeat."""

    code = "internal"


def error_from_body(body: Any) -> LunarkError:
    """The exception for a wire error ``{"code", "message", ...}``; extra fields become ``details``.

        >>> error_from_body({"code": "busy", "message": "A turn is running."})
        Busy('A turn is running.')
    """
    if not isinstance(body, Mapping):
        return LunarkError(f"The server answered with an error: {body!r}.")
    code = str(body.get("code", "internal"))
    message = str(body.get("message") or code)
    details = {str(k): v for k, v in body.items() if k not in ("code", "message")}
    cls = ERROR_CLASSES.get(code, LunarkError)
    if cls is PolicyViolation:
        return PolicyViolation(message, rule=str(details.pop("rule", "unknown")), **details)
    return cls(message, **details)


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


def _domains(url: str) -> list[str]:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    if not netloc:
        raise InvalidInput(f"{url!r} is not a URL such as 'http://localhost:8080'.")
    domains = [netloc]
    host = netloc.rsplit(":", 1)[0] if not netloc.endswith("]") else netloc
    port = netloc[len(host):]
    if host.lower() in _LOOPBACK:
        # localhost and 127.0.0.1 are the same local server; it may know itself by either name.
        domains += [alias + port for alias in _LOOPBACK if alias != host.lower()]
    return domains


class _EventStream:
    """``async for event in session.events()``: one consumer at a time; leaving the loop loses nothing."""

    def __init__(self, session: ChatSession) -> None:
        self._session = session

    def __aiter__(self) -> _EventStream:
        return self

    async def __anext__(self) -> ChatEvent:
        event = await self._session._queue.get()
        if event is None:
            self._session._queue.put_nowait(None)  # every later iterator ends too
            raise StopAsyncIteration
        if event.seq is not None:
            self._session._yielded = event.seq
        return event


class ChatSession:
    """One joined chat: send messages, read its events, decide its approvals.

    Made by ``LunarkClient.join``. State follows the events as they arrive:
    ``pending_approval`` is set by ``pending_approval`` and cleared by
    ``approval_resolved``; ``network`` follows ``network_switch`` and
    ``wallet_changed``.
    """

    def __init__(
        self,
        client: LunarkClient,
        chat_id: str,
        *,
        network: dict[str, Any],
        last_seq: int,
        pending_approval: ApprovalRequest | None,
    ) -> None:
        self._client = client
        self.chat_id: str = chat_id
        """The chat's id."""
        self.network: dict[str, Any] = network
        """The chat's network as the protocol sends it: ``chain_id``, ``name``, ``display_name``,
        ``symbol``, ``decimals``, ``rpc_urls``, ``explorer_url``."""
        self.pending_approval: ApprovalRequest | None = pending_approval
        """The approval the chat waits for (a ``PendingApproval`` event, or the join ack's), or None."""
        self._received = last_seq  # highest seq accepted in order (the re-join point)
        self._yielded = last_seq  # highest seq handed to the application
        self._held: dict[int, ChatEvent] = {}
        self._queue: asyncio.Queue[ChatEvent | None] = asyncio.Queue()
        self._gap_timer: asyncio.TimerHandle | None = None
        self._gap_strikes = 0

    @property
    def last_seq(self) -> int:
        """The seq of the last event ``events()`` yielded (the join point before any event)."""
        return self._yielded

    def __repr__(self) -> str:
        return f"ChatSession(chat_id={self.chat_id!r}, last_seq={self.last_seq})"

    # -- events -------------------------------------------------------------------------------

    def events(self) -> _EventStream:
        """The chat's events, in seq order, each exactly once, until the client closes.

        One consumer at a time (``turn`` and ``until_message_end`` consume it too)::

            async for event in session.events():
                if isinstance(event, Token):
                    print(event.text, end="", flush=True)
                elif isinstance(event, MessageEnd):
                    break
        """
        return _EventStream(self)

    async def until_message_end(self) -> list[ChatEvent]:
        """Consume events up to and including the next ``message_end``; returns them.

            await session.approve(tx_hash=tx_hash)
            events = await session.until_message_end()   # approval_resolved, tx_update..., answer
        """
        out: list[ChatEvent] = []
        async for event in self.events():
            out.append(event)
            if isinstance(event, MessageEnd):
                return out
        raise Disconnected("The client closed before the message ended.")

    async def turn(self, content: str) -> list[ChatEvent]:
        """Send a message and collect the events until the answer's ``message_end``.

        The answer ends with ``finish_reason`` ``"stop"``, or ``"awaiting_approval"`` with
        ``pending_approval`` set. Events already queued before the message are included::

            events = await session.turn("what's my balance?")
            text = "".join(e.text for e in events if isinstance(e, Token))
        """
        message_id = await self.send(content)
        out: list[ChatEvent] = []
        started = False
        async for event in self.events():
            out.append(event)
            if isinstance(event, MessageStart) and event.message_id == message_id:
                started = True
            elif started and isinstance(event, MessageEnd):
                return out
        raise Disconnected("The client closed before the turn ended.")

    def _accept(self, event: ChatEvent) -> None:
        seq = event.seq
        if seq is None:  # a chat-level error outside the sequence
            self._queue.put_nowait(event)
            return
        if seq <= self._received or seq in self._held:
            return  # a duplicate: live and replayed copies of one event
        self._held[seq] = event
        self._release()

    def _release(self) -> None:
        while self._received + 1 in self._held:
            event = self._held.pop(self._received + 1)
            self._received += 1
            self._apply(event)
            self._queue.put_nowait(event)
        if self._held:
            self._arm_gap_timer()
        elif self._gap_timer is not None:
            self._gap_timer.cancel()
            self._gap_timer = None
            self._gap_strikes = 0

    def _apply(self, event: ChatEvent) -> None:
        if isinstance(event, PendingApproval):
            self.pending_approval = event
        elif isinstance(event, ApprovalResolved):
            if self.pending_approval is not None and self.pending_approval.approval_id == event.approval_id:
                self.pending_approval = None
        elif isinstance(event, NetworkSwitch):
            wire = event.to_wire()
            self.network = {
                **self.network,
                **{k: v for k, v in wire.items() if k not in ("type", "chat_id", "seq", "ts")},
                "explorer_url": event.explorer_url,
            }

    def _arm_gap_timer(self) -> None:
        if self._gap_timer is not None:
            return
        loop = asyncio.get_running_loop()
        self._gap_timer = loop.call_later(self._client.gap_timeout, self._gap_expired)

    def _gap_expired(self) -> None:
        self._gap_timer = None
        if not self._held:
            return
        self._gap_strikes += 1
        if self._gap_strikes < _GAP_STRIKES:
            # Something was missed (a replay that failed, say): ask for it again.
            self._client._spawn(self._client._rejoin(self))
            self._arm_gap_timer()
            return
        # Asked twice and still missing: the server's log has a hole. Deliver what exists
        # rather than stall the chat forever.
        first = min(self._held)
        logger.warning("chat %s: seq %d..%d never arrived; skipping them", self.chat_id, self._received + 1, first - 1)
        self._received = first - 1
        self._gap_strikes = 0
        self._release()

    def _end(self) -> None:
        if self._gap_timer is not None:
            self._gap_timer.cancel()
            self._gap_timer = None
        self._queue.put_nowait(None)

    # -- requests -----------------------------------------------------------------------------

    async def send(self, content: str, *, client_message_id: str | None = None) -> str:
        """Send a user message (it starts a turn); returns the message id.

        ``client_message_id`` makes it idempotent: the same id twice is one message, so the
        SDK repeats the request safely when the connection drops before the ack. One is made
        up when omitted. Raises ``Busy`` while a turn runs or an approval waits.
        """
        payload = _payload(
            SendMessage,
            chat_id=self.chat_id,
            content=content,
            client_message_id=client_message_id or "cm_" + uuid.uuid4().hex,
        )
        ack = await self._client._call("send_message", payload, retry=True)
        return SendMessageAck.model_validate(ack).message_id

    async def decide(self, approval_id: str, decisions: Sequence[BaseModel | Mapping[str, Any]]) -> None:
        """Answer an approval with one decision per action request, in order (the general form).

            await session.decide(approval.approval_id, [
                {"type": "approve", "tx_hash": tx_hash},
                {"type": "reject", "message": "not this one"},
            ])

        Raises ``AlreadyDecided``, ``ApprovalExpired``, ``NoPendingApproval`` or
        ``InvalidInput``. Not repeated after a dropped connection (it might have been
        applied): then ``Disconnected`` is raised, and ``approval_resolved`` tells.
        """
        wire = [
            d.model_dump(mode="json", exclude_none=True) if isinstance(d, BaseModel) else dict(d) for d in decisions
        ]
        payload = _payload(ResumeDecisions, chat_id=self.chat_id, approval_id=approval_id, decisions=wire)
        await self._client._call("resume_decisions", payload, retry=False)

    def _approval(self, approval_id: str | None) -> ApprovalRequest | None:
        pending = self.pending_approval
        if approval_id is None:
            if pending is None:
                raise NoPendingApproval(f"Chat {self.chat_id} is not waiting for a decision.", chat_id=self.chat_id)
            return pending
        return pending if pending is not None and pending.approval_id == approval_id else None

    async def approve(
        self, approval_id: str | None = None, *, tx_hash: str | None = None, signed_tx: str | None = None
    ) -> None:
        """Approve every action of the approval (the pending one when ``approval_id`` is None).

        - no argument: the server's local signer signs (dev and CLI setups);
        - ``tx_hash``: the wallet signed and broadcast it (see ``sign_and_send``);
        - ``signed_tx``: the wallet signed it; the server verifies, then broadcasts.

        ``tx_hash`` and ``signed_tx`` need an approval with exactly one action; use
        ``decide`` for several.
        """
        approval = self._approval(approval_id)
        count = len(approval.action_requests) if approval is not None else 1
        if (tx_hash or signed_tx) and count != 1:
            raise InvalidInput(
                f"The approval has {count} actions; give one decision per action with decide().",
                actions=count,
            )
        decision: dict[str, Any] = {"type": "approve"}
        if tx_hash:
            decision["tx_hash"] = tx_hash
        if signed_tx:
            decision["signed_tx"] = signed_tx
        target = approval_id or cast(ApprovalRequest, approval).approval_id
        await self.decide(target, [decision] * count)

    async def reject(self, approval_id: str | None = None, *, message: str | None = None) -> None:
        """Reject every action of the approval; ``message`` (why) reaches the model."""
        approval = self._approval(approval_id)
        count = len(approval.action_requests) if approval is not None else 1
        decision: dict[str, Any] = {"type": "reject"}
        if message:
            decision["message"] = message
        target = approval_id or cast(ApprovalRequest, approval).approval_id
        await self.decide(target, [decision] * count)

    async def edit(
        self,
        args: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        *,
        approval_id: str | None = None,
    ) -> None:
        """Change the actions' arguments; the server validates them, prepares them again and
        sends a new ``pending_approval`` to decide.

        ``args`` are merged over each action's own arguments: a mapping for an approval with
        one action, or one mapping per action, in order::

            await session.edit({"amount": "0.05"})
        """
        approval = self._approval(approval_id)
        if approval is None:
            raise NoPendingApproval(
                f"Approval {approval_id} is not the one this session waits for; use decide().",
                approval_id=approval_id,
            )
        requests = approval.action_requests
        per_action = [args] if isinstance(args, Mapping) else list(args)
        if len(per_action) != len(requests):
            raise InvalidInput(
                f"The approval has {len(requests)} actions, but {len(per_action)} sets of arguments were given.",
                actions=len(requests),
            )
        decisions = [
            {"type": "edit", "edited_action": {"name": request.name, "args": {**request.args, **dict(new)}}}
            for request, new in zip(requests, per_action, strict=True)
        ]
        await self.decide(approval.approval_id, decisions)

    async def abort(self) -> None:
        """Stop the running turn; it ends with ``message_end`` ``finish_reason="aborted"``."""
        await self._client._call("abort", _payload(Abort, chat_id=self.chat_id), retry=True)

    async def wallet_changed(self, chain_id: int) -> dict[str, Any]:
        """Tell the server the wallet moved to ``chain_id``; the chat follows. Returns the new network."""
        ack = await self._client._call(
            "wallet_changed", _payload(WalletChanged, chat_id=self.chat_id, chain_id=chain_id), retry=True
        )
        self.network = WalletChangedAck.model_validate(ack).network.to_wire()
        return self.network


class LunarkClient:
    """A connection to one Lunark server, signed in as one account.

    ``url`` is the server's base URL (``http://localhost:8080``). Give ``token`` from an
    earlier sign-in, or ``signer_key`` (or call ``sign_in``) to sign in with a key::

        client = LunarkClient("http://localhost:8080")
        address = await client.sign_in(KEY)
        await client.connect()
        session = await client.join()
        ...
        await client.close()

    ``async with LunarkClient(url, signer_key=KEY) as client:`` signs in and connects.
    With ``reconnect`` (the default), a dropped connection is re-established and every
    joined chat continues where it was.
    """

    def __init__(
        self,
        url: str,
        *,
        signer_key: str | None = None,
        token: str | None = None,
        transports: Sequence[str] = ("websocket",),
        reconnect: bool = True,
        timeout: float = 30.0,
        on_connection: Callable[[bool], None] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        """The server's base URL."""
        self.token: str | None = token
        """The session token (from ``sign_in``), sent on connect and with HTTP requests."""
        self.address: str | None = None
        """The signed-in address (after ``sign_in``)."""
        self.timeout = timeout
        """Seconds to wait for a connection or an ack."""
        self.gap_timeout = 2.0
        """Seconds an out-of-order event may wait for the ones before it before the chat is re-joined."""
        self.reconnects = 0
        """How many times the connection was re-established."""
        self._signer_key = signer_key
        self._transports = list(transports)
        self._on_connection = on_connection
        self.sio: Any = socketio.AsyncClient(
            reconnection=reconnect,
            reconnection_delay=0.25,
            reconnection_delay_max=5,
            handle_sigint=False,  # a library must not take over the process's Ctrl-C
        )
        """The python-socketio client underneath."""
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("connect_error", self._on_connect_error)
        self.sio.on("*", self._on_event)
        self._http: aiohttp.ClientSession | None = None
        self._sessions: dict[str, ChatSession] = {}
        self._orphans: dict[str, list[ChatEvent]] = {}
        self._ready = asyncio.Event()
        self._inflight: set[asyncio.Future[tuple[Any, ...]]] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._emit_lock = asyncio.Lock()
        self._started = False
        self._ever_connected = False
        self._refreshing = False
        self._closed = False
        self._refusal: Any = None

    # -- sign-in and HTTP ---------------------------------------------------------------------

    async def sign_in(self, private_key: str | None = None, *, chain_id: int = 31337, domain: str | None = None) -> str:
        """Sign in with Ethereum (EIP-4361); stores the token and returns the checksummed address.

        Gets a nonce, builds the message for ``domain`` (default: host:port of the URL;
        ``localhost`` and ``127.0.0.1`` are tried both), signs it with ``personal_sign``
        and trades it for a token. ``private_key`` defaults to the constructor's
        ``signer_key`` (and is remembered for signing in again when the token expires).
        """
        key = private_key or self._signer_key
        if key is None:
            raise Unauthorized("No private key to sign in with: pass one to sign_in() or signer_key=.")
        self._signer_key = key
        account = Account.from_key(key)
        candidates = [domain] if domain else _domains(self.url)
        for index, candidate in enumerate(candidates):
            nonce = (await self._request("GET", "/auth/nonce", authenticated=False))["nonce"]
            message = SiweMessage(
                domain=candidate,
                address=account.address,
                statement="Sign in to Lunark.",
                uri=self.url,
                chain_id=chain_id,
                nonce=str(nonce),
                issued_at=datetime.now(UTC),
            ).to_text()
            signature = Account.sign_message(encode_defunct(text=message), key).signature
            body = {"message": message, "signature": "0x" + bytes(signature).hex()}
            try:
                answer = await self._request("POST", "/auth/verify", body, authenticated=False)
            except Unauthorized as exc:
                if exc.details.get("reason") == "wrong_domain" and index + 1 < len(candidates):
                    continue
                raise
            self.token = str(answer["token"])
            self.address = str(answer["address"])
            return self.address
        raise AssertionError("unreachable")  # pragma: no cover

    async def _request(
        self, method: str, path: str, body: Mapping[str, Any] | None = None, *, authenticated: bool = True
    ) -> Any:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        headers: dict[str, str] = {}
        if authenticated:
            if self.token is None:
                raise Unauthorized("Sign in first (sign_in() or token=).")
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            async with self._http.request(method, self.url + path, json=body, headers=headers) as response:
                try:
                    answer = await response.json(content_type=None)
                except ValueError:
                    answer = None
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Disconnected(f"Could not reach {self.url}: {exc or type(exc).__name__}.") from exc
        if status >= 400:
            if isinstance(answer, dict) and "error" in answer:
                raise error_from_body(answer["error"])
            raise LunarkError(f"{method} {path} failed with HTTP {status}.", status=status)
        return answer

    async def create_chat(self, *, chain_id: int | None = None) -> str:
        """Create a chat (``POST /api/chats``); returns its id. ``chain_id`` picks its network."""
        body = {"chain_id": chain_id} if chain_id is not None else {}
        return str((await self._request("POST", "/api/chats", body))["chat_id"])

    async def list_chats(self) -> list[dict[str, Any]]:
        """The signed-in account's chats: ``chat_id``, ``title``, ``chain_id``, ``created_at``."""
        return list((await self._request("GET", "/api/chats"))["chats"])

    async def get_chat(self, chat_id: str) -> dict[str, Any]:
        """One chat over HTTP: ``messages``, ``transactions``, ``pending_approval``, ``last_seq``, ``network``."""
        return dict(await self._request("GET", f"/api/chats/{chat_id}"))

    # -- the connection -----------------------------------------------------------------------

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

    async def __aenter__(self) -> LunarkClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

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

    async def _refresh_token(self) -> None:
        if self._refreshing:
            return
        self._refreshing = True
        try:
            await self.sign_in()
        except LunarkError as exc:
            logger.warning("signing in again failed: %s", exc)
        finally:
            self._refreshing = False

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
            # Not bound to a chat (a failed replay): every chat resyncs, every session hears it.
            for each in list(self._sessions.values()):
                each._accept(parsed)
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

    # -- chats --------------------------------------------------------------------------------

    async def join(self, chat_id: str | None = None, *, last_seq: int | None = None) -> ChatSession:
        """Join a chat (a new one when ``chat_id`` is None) and return its session.

        ``last_seq`` is where ``events()`` starts: None means from now on, ``0`` replays the
        whole chat. Joining a chat this client already joined returns the same session,
        re-joined from the last seq it holds.

            session = await client.join()                       # new chat
            session = await client.join(chat_id, last_seq=0)    # everything so far
        """
        existing = self._sessions.get(chat_id) if chat_id is not None else None
        if existing is not None:
            await self._rejoin(existing, quiet=False)
            return existing
        payload = _payload(JoinChat, chat_id=chat_id, last_seq=last_seq)
        ack = JoinChatAck.model_validate(await self._call("join_chat", payload, retry=True))
        start = ack.last_seq if last_seq is None else min(last_seq, ack.last_seq)
        session = ChatSession(
            self,
            ack.chat_id,
            network=ack.network.to_wire(),
            last_seq=start,
            pending_approval=ack.pending_approval,
        )
        self._sessions[ack.chat_id] = session
        for event in sorted(self._orphans.pop(ack.chat_id, []), key=lambda e: e.seq or 0):
            session._accept(event)
        return session

    async def _rejoin(self, session: ChatSession, *, quiet: bool = True) -> None:
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

    @property
    def sessions(self) -> Mapping[str, ChatSession]:
        """The chats joined on this client, by id."""
        return self._sessions
