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

The SDK's parts: ``session`` holds ``ChatSession`` (the typed calls of one chat), which builds on
``ordering`` (each chat's events in seq order); ``connection`` owns the Socket.IO connection and
its calls, ``signin`` signs in and holds the token (``LunarkClient``, here, builds on both);
``errors`` maps error codes to exceptions; ``preview`` renders a card's balance changes as text.
``ChatSession``, ``paid_address`` and ``preview_lines`` are importable from here too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import aiohttp
import socketio

from lunark.client.connection import Connection, _payload
from lunark.client.errors import ERROR_CLASSES, Disconnected, error_from_body
from lunark.client.preview import paid_address, preview_lines
from lunark.client.session import ChatSession
from lunark.protocol import (
    ApprovalWarning,
    BalanceChange,
    ChatEvent,
    Contact,
    JoinChat,
    JoinChatAck,
    Preview,
    ToolInfo,
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
