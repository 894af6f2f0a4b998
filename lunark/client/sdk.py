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

The SDK's parts: ``ordering`` puts each chat's events in seq order (``ChatSession`` builds on
it), ``connection`` owns the Socket.IO connection and its calls, ``signin`` signs in and holds
the token (``LunarkClient`` builds on both), ``errors`` maps error codes to exceptions.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast
from urllib.parse import quote

import aiohttp
import socketio
from eth_utils.address import to_checksum_address
from pydantic import BaseModel

from lunark.client.connection import Connection, _payload
from lunark.client.errors import ERROR_CLASSES, Disconnected, error_from_body
from lunark.client.ordering import ChatSequence
from lunark.errors import InvalidInput, LunarkError, NoPendingApproval
from lunark.protocol import (
    Abort,
    ActionRequest,
    ApprovalRequest,
    ApprovalWarning,
    BalanceChange,
    CallTool,
    CallToolAck,
    ChatEvent,
    Contact,
    ContinueMessage,
    JoinChat,
    JoinChatAck,
    MessageEnd,
    MessageStart,
    Preview,
    ResumeDecisions,
    SendMessage,
    SendMessageAck,
    ToolCall,
    ToolInfo,
    ToolResult,
    WalletChanged,
    WalletChangedAck,
    approve_decision,
    edit_decision,
    reject_decision,
)

__all__ = [
    "ERROR_CLASSES",
    "ApprovalWarning",
    "BalanceChange",
    "ChatSession",
    "Disconnected",
    "LunarkClient",
    "Preview",
    "error_from_body",
    "paid_address",
    "preview_lines",
]


def _units(raw: int, decimals: int) -> str:
    sign = "-" if raw < 0 else ""
    whole, fraction = divmod(abs(raw), 10**decimals)
    digits = str(fraction).rjust(decimals, "0").rstrip("0") if decimals else ""
    return f"{sign}{whole}" + (f".{digits}" if digits else "")


def paid_address(request: ActionRequest) -> str | None:
    """The address a transfer's transaction pays: its ``to`` for the native currency, for a token the
    one in ``transfer(address,uint256)``'s calldata (not the token contract). None without a transaction."""
    tx = request.tx
    if tx is None:
        return None
    data = str(tx.data or "0x")
    return to_checksum_address(tx.to if len(data) < 74 else "0x" + data[34:74])


def preview_lines(request: ActionRequest, *, symbol: str = "ETH", decimals: int = 18) -> list[str]:
    """An action's balance-change preview in plain lines, as the terminal and ``lunark mcp`` show it.

    One line per change (``you -1.5 ETH (10 -> 8.5 ETH)``, ``recipient 0x7099…79C8 +1.5 ETH ...``, or
    ``recipient alice (0x7099…79C8) ...`` when the card names the address paid: ``recipient_name``, a
    contact label or an ENS name), then the simulated gas and the worst-case fee (in ``symbol``/
    ``decimals``, the network's native currency); or the one line saying why there is no preview.
    Empty without a preview.
    """
    preview = request.preview
    if preview is None:
        return []
    if not preview.simulated:
        return [f"no balance preview: {preview.reason or 'the node could not simulate it'}"]
    sender = (request.tx.from_ if request.tx is not None else "").lower()
    named = (paid_address(request) or "").lower() if request.recipient_name else ""
    lines: list[str] = []
    for change in preview.changes:
        short = f"{change.address[:6]}…{change.address[-4:]}"
        if change.address.lower() == sender:
            who = "you"
        elif change.address.lower() == named:  # only the address the card names, never another party
            who = f"recipient {request.recipient_name} ({short})"
        else:
            who = f"recipient {short}"
        delta = int(change.delta)
        amount = f"{'+' if delta > 0 else ''}{_units(delta, change.decimals)} {change.symbol}"
        lines.append(f"{who} {amount} ({_units(int(change.before), change.decimals)} -> "
                     f"{_units(int(change.after), change.decimals)} {change.symbol})")
    figures = [f"{preview.gas_used} gas" if preview.gas_used is not None else "",
               f"fee at most {_units(int(preview.max_fee), decimals)} {symbol}" if preview.max_fee is not None else ""]
    if any(figures):
        lines.append("simulated: " + ", ".join(f for f in figures if f))
    return lines


class ChatSession(ChatSequence):
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

    def __repr__(self) -> str:
        return f"ChatSession(chat_id={self.chat_id!r}, last_seq={self.last_seq})"

    # -- requests -----------------------------------------------------------------------------

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
        self, approval_id: str | None = None, *, tx_hash: str | None = None, signed_tx: str | None = None,
        acknowledge: Sequence[str] = (),
    ) -> None:
        """Approve every action of the approval (the pending one when ``approval_id`` is None).

        - no argument: the server's local signer signs (dev and CLI setups);
        - ``tx_hash``: the wallet signed and broadcast it (see ``sign_and_send``);
        - ``signed_tx``: the wallet signed it; the server verifies, then broadcasts.

        ``acknowledge``: the codes of the danger warnings the user read and accepts
        (``request.warnings``, severity ``"danger"``); without every one of them the server refuses
        with ``AcknowledgementRequired`` and nothing is signed. Read them before the wallet signs.

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
        decision = approve_decision(tx_hash=tx_hash or None, signed_tx=signed_tx or None,
                                    acknowledge=list(acknowledge) if acknowledge else None)
        target = approval_id or cast(ApprovalRequest, approval).approval_id
        await self.decide(target, [decision] * count)

    async def reject(self, approval_id: str | None = None, *, message: str | None = None) -> None:
        """Reject every action of the approval; ``message`` (why) reaches the model."""
        approval = self._approval(approval_id)
        count = len(approval.action_requests) if approval is not None else 1
        decision = reject_decision(message or None)
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
            edit_decision(request.name, {**request.args, **dict(new)})
            for request, new in zip(requests, per_action, strict=True)
        ]
        await self.decide(approval.approval_id, decisions)

    async def call_tool(self, name: str, arguments: Mapping[str, Any] | None = None) -> str:
        """Run one tool call yourself, in this chat, as if the model had proposed it (``call_tool`` in
        the protocol); returns its ``call_id``. The call is validated against the tool's schema and
        checked by the spending policy; a tool that needs approval waits for a decision like any
        other (``pending_approval`` is set, decided with ``approve``/``reject``/``edit`` here or in
        the dApp), and its ``ToolCall``, ``TxUpdate`` and ``ToolResult`` events carry the returned
        id. The turn ends after the call, without a model answer::

            call_id = await session.call_tool("get_balance", {})
            result = await session.tool_result(call_id)     # a ToolResult: status, result, error

        ``name`` is the tool as the model names it (``LunarkClient.list_tools``: ``notes__add_note``
        for MCP tool ``add_note`` of server ``notes``). Raises ``InvalidInput`` for a tool that does
        not exist or arguments its schema refuses, ``Busy`` while a turn runs or an approval waits,
        ``Forbidden``/``NotFound`` for a chat that is not yours. Not repeated after a dropped
        connection (the call may have started): then ``Disconnected`` is raised, and the events tell.
        """
        payload = _payload(CallTool, chat_id=self.chat_id, name=name, args=dict(arguments or {}))
        ack = await self._client._call("call_tool", payload, retry=False)
        return CallToolAck.model_validate(ack).call_id

    async def tool_result(self, call_id: str) -> ToolResult:
        """Consume events until the turn of ``call_id`` ends, and return the call's ``ToolResult``:
        ``status`` is ``success`` (``result`` holds the tool's answer: a transfer's settlement, an
        MCP tool's ``{"server", "tool", "result"}``), ``error`` (``error`` says why; also a transfer
        whose settlement ended in any state but ``confirmed``), ``rejected`` (the user's reason is
        ``result["message"]``; an expired approval is rejected too) or ``superseded`` (set aside: a new
        message was sent instead of deciding; nothing was done). The chat
        is free for the next call when it returns. It waits as long as the approval does: decide it
        elsewhere (the dApp), or read ``events()`` yourself to decide it here.

        Raises ``LunarkError`` when the turn ended without a result (it was aborted, or failed before
        the call ran)."""
        seen = False
        result: ToolResult | None = None
        async for event in self.events():
            if isinstance(event, ToolCall) and event.call_id == call_id:
                seen = True
            elif isinstance(event, ToolResult) and event.call_id == call_id:
                seen, result = True, event
            elif seen and isinstance(event, MessageEnd) and event.finish_reason != "awaiting_approval":
                if result is None:
                    raise LunarkError(
                        f"The call {call_id} ended without a result ({event.finish_reason}).", call_id=call_id
                    )
                return result
        raise Disconnected("The client closed before the tool call ended.")

    async def continue_message(self, message_id: str) -> None:
        """Go on with an answer the model cut at its output limit (its ``MessageEnd`` has
        ``finish_reason == "length"``), or that a server which stopped mid-answer left
        (``"interrupted"``, with a ``message`` saying so): more ``Token`` events for the same
        ``message_id`` follow, then a new ``MessageEnd``::

            events = await session.turn("explain gas fees")
            while isinstance(end := events[-1], MessageEnd) and end.finish_reason == "length":
                await session.continue_message(end.message_id)
                events = await session.until_message_end()

        Only the chat's last answer can be continued (``InvalidInput`` otherwise); ``Busy`` while a
        turn runs. Not repeated after a dropped connection (the continuation may have started):
        then ``Disconnected`` is raised, and the events tell.
        """
        payload = _payload(ContinueMessage, chat_id=self.chat_id, message_id=message_id)
        await self._client._call("continue_message", payload, retry=False)

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


class LunarkClient(Connection):
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
        self.session_ended = False
        """True once the server said this client's session ended (a logout, here or elsewhere): the
        server closed the connection, and it is not re-established."""

    async def __aenter__(self) -> LunarkClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the session ------------------------------------------------------------------------

    async def logout(self, *, everywhere: bool = False) -> int:
        """End this client's session (``POST /auth/logout``), or with ``everywhere`` every session of
        the account, on every server process: their sockets get an ``error`` (``unauthorized``) and
        are closed, their SSE streams end. Then this client closes (make a new one to sign in again).
        Returns how many sessions ended; ``Unauthorized`` if the session had already ended."""
        body = {"everywhere": True} if everywhere else {}
        answer = await self._request("POST", "/auth/logout", body)
        self.token = None
        self._signer_key = None  # never signed in again behind the user's back
        await self.close()
        return int(answer["ended"])

    # -- chats over HTTP ----------------------------------------------------------------------

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

    async def list_tools(self) -> list[ToolInfo]:
        """The tools the server's agent can call (``GET /api/tools``), each a ``ToolInfo``: the name
        ``ChatSession.call_tool`` takes, the argument schema, whether a call waits for approval
        (``approval``), where it comes from (built-in, an entry-point plugin, an MCP server) and an
        MCP tool's declared hints."""
        body = await self._request("GET", "/api/tools")
        return [ToolInfo.model_validate(tool) for tool in body["tools"]]

    # -- contacts -----------------------------------------------------------------------------

    async def contacts(self) -> list[Contact]:
        """The signed-in account's contacts, by label (``GET /api/contacts``)."""
        body = await self._request("GET", "/api/contacts")
        return [Contact.model_validate(contact) for contact in body["contacts"]]

    async def add_contact(self, label: str, address: str) -> Contact:
        """Save ``address`` as ``label`` (``PUT /api/contacts/{label}``): a label already saved (any
        case) now points at ``address``; an address already saved under another label is renamed.
        A malformed label or address (a mixed-case one with a bad checksum) is ``InvalidInput``."""
        body = await self._request("PUT", f"/api/contacts/{quote(label, safe='')}", {"address": address})
        return Contact.model_validate(body["contact"])

    async def remove_contact(self, label: str) -> None:
        """Forget the contact ``label`` (``DELETE /api/contacts/{label}``); ``NotFound`` if there is none."""
        await self._request("DELETE", f"/api/contacts/{quote(label, safe='')}")

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

    @property
    def sessions(self) -> Mapping[str, ChatSession]:
        """The chats joined on this client, by id."""
        return self._sessions
