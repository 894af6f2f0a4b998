"""``lunark mcp``: Lunark's wallet tools as an MCP server, for any MCP host.

A thin front-end: it holds no wallet, no agent and no database. It signs in to a running
``lunark serve`` with the user's session token (from sign-in with Ethereum, given in the host's
configuration as ``LUNARK_TOKEN``), opens one chat there for the host, and turns each MCP tool
call into a call in that chat (``ChatSession.call_tool``, the protocol's ``call_tool``). The
tools are the server's (``LunarkClient.list_tools``): the built-in ``get_balance``, ``transfer``
and ``switch_network``, the entry-point plugins' tools and every configured MCP server's tools
(``server.tool``), annotated by their approval class (``annotations_for``). The server runs a
call as if its model had proposed it: a read-only one answers at once; a state-changing one
becomes a normal approval in the user's rooms, decided in the dApp or the terminal chat with the
user's own wallet. The MCP call returns the outcome: a transfer's
settlement (``confirmed`` with hash and block, ``mismatch``, ``failed``, ``dropped``...),
``rejected`` with the reason, or ``expired``; only a confirmed transfer (or another tool that ran)
is not ``isError``, and a call set aside for the user's new message (``superseded``) is neither a
success nor a failure. Nothing here can approve: the only decision it ever
sends is a rejection, when the host cancels its request, declines the approval page or vanishes.

A host that takes URL-mode elicitations (MCP 2025-11-25, the ``elicitation.url`` capability) is
sent the link to the dApp's page for the approval (``/approve/{approval_id}``), where the user signs
in with their wallet and decides; it hears ``notifications/elicitation/complete`` once the approval
is decided. A host that vanishes while its call waits (killed, its stream dropped, its stdin
closed: no cancel, no DELETE) has the card withdrawn after ``withdraw_after`` seconds.

While a call waits the host gets MCP progress notifications: waiting for approval, approved,
submitted, mined, confirmations. Calls run one at a time in the host's chat.

    lunark mcp --url http://127.0.0.1:8080                    # stdio, for a desktop or IDE host
    lunark mcp --url http://127.0.0.1:8080 --http --port 8765  # streamable HTTP at /mcp

Over HTTP every request must carry ``Authorization: Bearer <the same token>``, so only a host
given the user's token can reach the tools.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import anyio
import mcp.types as types
from mcp.server.lowlevel import Server
from mcp.shared.message import ServerMessageMetadata
from pydantic import BaseModel

from lunark.client import LunarkClient
from lunark.client.sdk import ChatSession, preview_lines
from lunark.errors import LunarkError, Unauthorized
from lunark.protocol import (
    ActionRequest,
    ApprovalResolved,
    Error,
    MessageEnd,
    PendingApproval,
    ToolCall,
    ToolInfo,
    ToolResult,
    TxUpdate,
)

__all__ = [
    "ANNOTATIONS", "WITHDRAW_AFTER", "LunarkMcp", "annotations_for", "exposed_name", "serve_http", "serve_stdio",
]

logger = logging.getLogger(__name__)

ANNOTATIONS: dict[str, types.ToolAnnotations] = {
    "get_balance": types.ToolAnnotations(
        title="Read a balance", readOnlyHint=True, openWorldHint=True,
    ),
    "transfer": types.ToolAnnotations(
        title="Send funds (after the user's approval)", readOnlyHint=False, destructiveHint=True,
        idempotentHint=False, openWorldHint=True,
    ),
    "switch_network": types.ToolAnnotations(
        title="Switch network (after the user's approval)", readOnlyHint=False, destructiveHint=False,
        idempotentHint=True, openWorldHint=False,
    ),
}
"""What each built-in tool does, as MCP annotations: only ``get_balance`` is read-only."""

WITHDRAWN = "Withdrawn: the MCP host cancelled its request."
HOST_GONE = "Withdrawn: the MCP host went away (no answer for {seconds:g} s)."
STOPPED = "Withdrawn: the MCP server (lunark mcp) was stopped."
DECLINED = "Declined in the MCP host: the user chose not to open the approval page."

WITHDRAW_AFTER = 60.0
"""Seconds a host may be unreachable while its call waits for approval before the card is withdrawn
(``lunark mcp --withdraw-after``)."""
PING_EVERY = 10.0
"""At most this many seconds between the pings that tell a waiting call's host is still there."""


@dataclass
class _Progress:
    """Progress notifications for one MCP request (none when the host asked for none)."""

    token: str | int | None
    session: Any
    step: int = 0
    said: list[str] = field(default_factory=list)

    async def say(self, message: str) -> None:
        self.said.append(message)
        if self.token is None:
            return
        self.step += 1
        try:
            await self.session.send_progress_notification(self.token, float(self.step), None, message)
        except Exception as exc:  # the host went away: the call goes on, its answer may still be read
            logger.info("progress notification not sent: %s", exc)


@dataclass
class _Host:
    """The host that made one request: its session, the request's id (what the host's answers,
    elicitations and pings are related to) and whether it takes URL-mode elicitations."""

    session: Any
    request_id: Any
    elicits_url: bool

    def related(self) -> ServerMessageMetadata:
        return ServerMessageMetadata(related_request_id=self.request_id)

    async def ping(self, timeout: float) -> None:
        """Answered, or ``McpError`` (no answer in time) or a closed-stream error (the transport is
        gone). Related to the request: over streamable HTTP it goes on that request's stream, so a
        host that dropped the stream does not answer, whatever its session does."""
        # The outer limit covers the send too: a transport that no longer drains must not hang it.
        with anyio.fail_after(timeout + 1.0):
            await self.session.send_request(
                types.ServerRequest(types.PingRequest()), types.EmptyResult,
                request_read_timeout_seconds=timedelta(seconds=timeout), metadata=self.related(),
            )


@dataclass
class _Waiting:
    """One call's approval as it stands: the host is asked about it once, told when it is done."""

    approval_id: str | None = None
    elicited: set[str] = field(default_factory=set)
    over: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the call has its outcome: the host is no longer watched."""


class LunarkMcp:
    """The MCP server: one Lunark client, one chat, the tools as the host sees them.

    The tools are the running server's (``LunarkClient.list_tools``): the built-in ones, the
    entry-point plugins' and every configured MCP server's, listed again at each ``tools/list`` so
    the host sees what the agent has now. An MCP tool is named ``server__tool`` here, as the agent
    names it: hosts that forward names to a model API accept only ``^[a-zA-Z0-9_-]{1,64}$``."""

    def __init__(self, client: LunarkClient, *, withdraw_after: float = WITHDRAW_AFTER,
                 page_url: str | None = None) -> None:
        self.client = client
        self.withdraw_after = withdraw_after
        """Seconds a vanished host's waiting card stays before it is withdrawn."""
        self.page_url = (page_url or client.url).rstrip("/")
        """Where the user opens the dApp: approval links are ``{page_url}/approve/{approval_id}``."""
        self.host_gone = False
        """Over stdio: the host closed this process's stdin (it quit or was killed)."""
        self.stopping = asyncio.Event()
        """Set when this process is told to stop (SIGTERM): waiting cards are withdrawn at once."""
        self._background: set[asyncio.Task[None]] = set()
        """Elicitations and host watches. Never cancelled while their request is out: the host's late
        answer to a request no longer awaited would be an unknown id to the MCP session."""
        self.tools: dict[str, ToolInfo] = {}
        """The tools by the name the host sees, as last listed."""
        self.server: Server[Any, Any] = Server("lunark", instructions=(
            "Lunark's wallet tools for one signed-in user. get_balance answers at once; transfer, "
            "switch_network and every other tool not marked read-only wait until the user approves or "
            "rejects them in Lunark with their own wallet, and return the outcome (confirmed with hash "
            "and block, rejected with the reason, expired, mismatch). Amounts are whole units as decimal "
            "strings ('0.5'), never wei. Tools named server__tool come from MCP servers Lunark connects to."
        ))
        self.chat: ChatSession | None = None
        self._lock = asyncio.Lock()
        self.server.list_tools()(self._list_tools)  # type: ignore[no-untyped-call]
        self.server.call_tool()(self._call_tool)

    async def refresh(self) -> dict[str, ToolInfo]:
        """List the server's tools again."""
        listed = await self.client.list_tools()
        self.tools = {exposed_name(info): info for info in listed}
        return self.tools

    def mcp_tools(self) -> list[types.Tool]:
        out = []
        for name, info in self.tools.items():
            annotations = annotations_for(info)
            out.append(types.Tool(
                name=name, title=annotations.title, description=_description(info),
                inputSchema=info.input_schema, annotations=annotations,
            ))
        return out

    async def _list_tools(self) -> list[types.Tool]:
        try:
            await self.refresh()
        except LunarkError as exc:  # the server is away: the last list, rather than none
            logger.warning("listing Lunark's tools failed, serving the last list: %s", exc.message)
        return self.mcp_tools()

    async def start(self) -> None:
        """Connect with the token, list the tools and open the host's chat. Raises ``Unauthorized``
        for a token the server does not take."""
        await self.client.connect()
        await self.refresh()
        self.chat = await self.client.join()

    def _spawn(self, work: Any, name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def approval_url(self, approval_id: str) -> str:
        """The dApp's page for one approval: the user signs in with their wallet there and decides."""
        return f"{self.page_url}/approve/{quote(approval_id, safe='')}"

    async def _call_tool(self, name: str, arguments: dict[str, Any]) -> types.CallToolResult:
        context = self.server.request_context
        token = context.meta.progressToken if context.meta is not None else None
        progress = _Progress(token, context.session)
        params = context.session.client_params
        elicitation = params.capabilities.elicitation if params is not None else None
        host = _Host(context.session, context.request_id, elicitation is not None and elicitation.url is not None)
        if name not in self.tools:
            try:
                await self.refresh()  # an MCP server's list may have changed since
            except LunarkError as exc:
                return _error(exc.message, exc.to_dict())
            if name not in self.tools:
                return _error(f"There is no tool named {name!r} (tools: {', '.join(self.tools)}).")
        async with self._lock:
            try:
                return await self.call(self.tools[name].name, arguments, progress, host)
            except LunarkError as exc:
                return _error(exc.message, exc.to_dict())

    async def call(self, name: str, arguments: dict[str, Any], progress: _Progress,
                   host: _Host | None = None) -> types.CallToolResult:
        """Run one call in the host's chat and wait for its outcome.

        While it waits for approval the host is pinged: one that has not answered for
        ``withdraw_after`` seconds is gone (killed, its stream dropped), and the card is withdrawn.
        A host that takes URL-mode elicitations is sent the approval page's link, and told when
        the approval is decided."""
        assert self.chat is not None, "start() first"
        chat = self.chat
        events = chat.events()
        call_id = await chat.call_tool(name, arguments)
        waiting = _Waiting()
        watched = False
        expired = False
        result: ToolResult | None = None
        try:
            async for event in events:
                if isinstance(event, ToolCall) and event.call_id == call_id and event.status == "awaiting_approval":
                    await progress.say("Waiting for the user's approval in Lunark.")
                elif isinstance(event, PendingApproval) and any(r.call_id == call_id for r in event.action_requests):
                    waiting.approval_id = event.approval_id
                    warned = " ".join(_warnings_text(r) for r in event.action_requests if r.call_id == call_id)
                    preview = _preview_text(event, call_id, chat.network) + warned
                    await progress.say(f"Approval {event.approval_id} is waiting for the user until "
                                       f"{event.expires_at}." + preview)
                    if host is not None:
                        if host.elicits_url and event.approval_id not in waiting.elicited:
                            waiting.elicited.add(event.approval_id)
                            self._spawn(self._elicit(host, chat, event, preview), f"elicit-{event.approval_id}")
                        if not watched:
                            watched = True
                            self._spawn(self._watch(host, chat, call_id, waiting), f"host-watch-{call_id}")
                elif isinstance(event, ApprovalResolved) and event.approval_id == waiting.approval_id:
                    kinds = {d.type for d in event.decisions}
                    expired = event.by == "timeout"
                    said = "expired" if expired else "approved" if kinds == {"approve"} else (
                        "edited: asked again" if "edit" in kinds else
                        "set aside: the user sent a new message instead" if event.by == "superseded" else "rejected")
                    await progress.say(f"The approval was {said}.")
                    if host is not None and event.approval_id in waiting.elicited:
                        await _completed(host, event.approval_id)
                    waiting.approval_id = None if "edit" not in kinds else waiting.approval_id
                elif isinstance(event, TxUpdate) and event.call_id == call_id:
                    await progress.say(_tx_text(event))
                elif isinstance(event, ToolResult) and event.call_id == call_id:
                    result = event
                    if _code_of(event) == "preview_changed":
                        await progress.say("What the transfer would do changed before it was signed; nothing was "
                                           "sent, and the user is asked again on a fresh card.")
                elif isinstance(event, Error) and result is None:
                    return _error(event.message, event.to_wire())
                elif isinstance(event, MessageEnd) and event.finish_reason != "awaiting_approval":
                    if result is not None:
                        return _outcome(result, expired)
                    if event.finish_reason in ("error", "aborted"):
                        return _error(f"The call ended without a result ({event.finish_reason}).")
        except asyncio.CancelledError:
            waiting.over.set()
            with anyio.CancelScope(shield=True):
                if self.host_gone and not self.stopping.is_set():
                    # The host vanished (stdin closed, no cancel): the user may be deciding right
                    # now in the dApp, so the card gets the grace time before it is withdrawn.
                    await self._grace(chat, call_id)
                message = (STOPPED if self.stopping.is_set()
                           else HOST_GONE.format(seconds=self.withdraw_after) if self.host_gone else WITHDRAWN)
                await self._withdraw(chat, call_id, waiting.approval_id, message)
            raise
        finally:
            waiting.over.set()
        return _error("The connection to Lunark ended before the call finished; check the chat in Lunark.")

    async def _elicit(self, host: _Host, chat: ChatSession, event: PendingApproval, preview: str) -> None:
        """Send the host the approval page's link (URL-mode elicitation). The user decides there with
        their wallet; the host only says whether they went. One who declines rejects the card."""
        names = ", ".join(r.name for r in event.action_requests)
        message = (f"Lunark needs your approval for {names}. Open the link, sign in with your wallet and "
                   f"approve or reject it there (until {event.expires_at}).{preview}")
        try:
            answer = await host.session.elicit_url(message, self.approval_url(event.approval_id), event.approval_id,
                                                   related_request_id=host.request_id)
        except Exception as exc:  # the host could not show it: the card still waits in Lunark
            logger.info("URL elicitation for %s not answered: %s", event.approval_id, exc)
            return
        if answer.action == "decline":
            try:
                await chat.reject(event.approval_id, message=DECLINED)
            except LunarkError as exc:  # decided meanwhile
                logger.info("declined approval not rejected: %s", exc.message)

    async def _watch(self, host: _Host, chat: ChatSession, call_id: str, waiting: _Waiting) -> None:
        """Ping the host while its call waits; withdraw the card once it has not answered for
        ``withdraw_after`` seconds. A cancel or a session ended (DELETE) cancels the request instead,
        and the card is withdrawn at once."""
        loop = asyncio.get_running_loop()
        every = min(self.withdraw_after / 3, PING_EVERY)
        answered = loop.time()
        while True:
            with suppress(TimeoutError):
                await asyncio.wait_for(waiting.over.wait(), every)
            if waiting.over.is_set():
                return
            try:
                await host.ping(every)
                answered = loop.time()
            except Exception as exc:  # no answer in time, or its stream is closed
                logger.info("the MCP host did not answer a ping: %s", exc)
            if waiting.over.is_set():
                return
            if loop.time() - answered >= self.withdraw_after:
                break
        logger.warning("the MCP host went away; withdrawing its waiting call %s", call_id)
        await self._withdraw(chat, call_id, waiting.approval_id, HOST_GONE.format(seconds=self.withdraw_after))

    async def _grace(self, chat: ChatSession, call_id: str) -> None:
        """Wait up to ``withdraw_after`` seconds for the user to decide the call's card in Lunark;
        sooner when this process is stopped."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.withdraw_after
        while (left := deadline - loop.time()) > 0 and not self.stopping.is_set():
            try:
                pending = (await self.client.get_chat(chat.chat_id)).get("pending_approval") or {}
            except LunarkError as exc:
                logger.info("checking the vanished host's card: %s", exc.message)
                pending = {"action_requests": [{"call_id": call_id}]}
            if not any(r.get("call_id") == call_id for r in pending.get("action_requests", [])):
                return
            with suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), min(left, 0.5))

    async def _withdraw(self, chat: ChatSession, call_id: str, approval_id: str | None,
                        message: str = WITHDRAWN) -> None:
        """The host cancelled or went away: the approval it asked for is rejected (never left to be
        approved for nobody); a turn still preparing it is stopped first."""
        with anyio.CancelScope(shield=True):
            try:
                if approval_id is None:
                    await chat.abort()  # still preparing, or already paused (then nothing runs)
                    pending = (await self.client.get_chat(chat.chat_id)).get("pending_approval") or {}
                    if any(r.get("call_id") == call_id for r in pending.get("action_requests", [])):
                        approval_id = pending["approval_id"]
                if approval_id is not None:
                    await chat.reject(approval_id, message=message)
            except LunarkError as exc:
                logger.info("withdrawing the call: %s", exc.message)


async def _completed(host: _Host, approval_id: str) -> None:
    """Tell the host the approval its link was for is decided (``notifications/elicitation/complete``)."""
    try:
        await host.session.send_elicit_complete(approval_id, related_request_id=host.request_id)
    except Exception as exc:  # the host went away: the call goes on
        logger.info("elicitation completion not sent: %s", exc)


def exposed_name(info: ToolInfo) -> str:
    """The name the MCP host sees: the agent's own (``server__tool`` for an MCP server's tool), which
    every host can forward to a model API (the card still reads ``server.tool``)."""
    return info.name


def annotations_for(info: ToolInfo) -> types.ToolAnnotations:
    """The MCP annotations of a tool as ``lunark mcp`` serves it.

    The built-in tools have their own (``ANNOTATIONS``). For any other, ``readOnlyHint`` follows its
    approval class in this Lunark: true only when a call runs without the user's decision
    (``approval == "never"``) and its MCP server did not declare it state-changing; everything that
    waits for approval is not read-only (fail closed). An MCP tool's other hints
    (``destructiveHint``, ``idempotentHint``, ``openWorldHint``) are carried as its server declared
    them; a plugin tool that is not read-only is marked destructive, as MCP assumes."""
    if info.source == "builtin" and info.name in ANNOTATIONS:
        return ANNOTATIONS[info.name]
    hints = info.hints
    read_only = info.approval == "never" and hints.get("readOnlyHint") is not False
    waits = "" if read_only else " (after the user's approval)"
    title = f"{info.title or info.display_name}{waits}"
    if read_only:
        return types.ToolAnnotations(title=title, readOnlyHint=True, openWorldHint=hints.get("openWorldHint", True))
    return types.ToolAnnotations(
        title=title, readOnlyHint=False, destructiveHint=hints.get("destructiveHint", True),
        idempotentHint=hints.get("idempotentHint", False), openWorldHint=hints.get("openWorldHint", True),
    )


def _description(info: ToolInfo) -> str:
    if info.approval == "never":
        return info.description
    return f"{info.description} Waits for the user's approval in Lunark and returns the outcome."


def _preview_text(event: PendingApproval, call_id: str, network: dict[str, Any]) -> str:
    """The call's balance changes, for the host to relay while the user decides (``_warnings_text``
    says its warnings)."""
    request = next(r for r in event.action_requests if r.call_id == call_id)
    native = str(network.get("symbol") or "ETH"), int(network.get("decimals", 18))
    said = preview_lines(request, symbol=native[0], decimals=native[1])
    return (" " + "; ".join(said) + ".") if said else ""


def _code_of(event: ToolResult) -> str | None:
    error = event.error
    code = error.get("code") if isinstance(error, dict) else getattr(error, "code", None)
    return str(code) if code is not None else None


def _warnings_text(request: ActionRequest) -> str:
    """The card's warnings in a progress message (the host's model and user see what Lunark warned of);
    empty when there are none."""
    if not request.warnings:
        return ""
    said = "; ".join(f"{w.severity.upper()} {w.code}: {w.message}" for w in request.warnings)
    danger = any(w.severity == "danger" for w in request.warnings)
    tail = " The user must acknowledge the danger warnings in Lunark to approve it." if danger else ""
    return f" Lunark warns: {said}.{tail}"


def _tx_text(event: TxUpdate) -> str:
    status = str(event.status)
    text = {"submitted": "Submitted", "mined": "Mined", "confirmed": "Confirmed"}.get(status, status.capitalize())
    if event.tx_hash:
        text += f" {event.tx_hash}"
    if event.block_number is not None:
        text += f" in block {event.block_number}"
    if event.confirmations:
        text += f" ({event.confirmations} confirmation{'s' if event.confirmations != 1 else ''})"
    if event.reason:
        text += f": {event.reason}"
    return text + "."


def _outcome(result: ToolResult, expired: bool) -> types.CallToolResult:
    """The call's final answer for the host: the tool's result (a transfer's settlement outcome),
    ``rejected`` with the reason, ``expired``, or set aside (``superseded``, ``postponed``).

    ``isError`` is false only for what the call was asked to do and did (a transfer: confirmed on
    chain) and for a call set aside, which is no failure: nothing was done, and it may be asked
    again. A rejection, an expiry and a settlement that ended any other way (refused before
    signing, mismatch, failed, dropped) are errors, with the reason."""
    body: dict[str, Any]
    reason = result.result.get("message") if isinstance(result.result, dict) else None
    if result.status == "rejected":
        body = {"status": "expired", "message": "The approval expired; nothing was done."} if expired else {
            "status": "rejected", "reason": reason, "message": f"The user rejected it{f': {reason}' if reason else '.'}"
        }
        return _structured(body, error=True)
    if result.status == "superseded":
        body = {"status": "superseded", "reason": reason,
                "message": "Set aside: the user sent a new message instead of deciding; nothing was done."}
        return _structured(body, error=False)
    if result.status == "postponed":
        body = {"status": "postponed", "reason": reason,
                "message": "Postponed until a network switch is decided; nothing was done. Call it again then."}
        return _structured(body, error=False)
    if isinstance(result.result, dict):
        return _structured(result.result, error=result.status == "error")
    if result.status == "error":
        error = result.error.to_wire() if isinstance(result.error, BaseModel) else dict(result.error or {})
        return _error(str(error.get("message", "The tool failed.")), error)
    return _structured({"status": "success", "result": result.result}, error=False)


def _structured(body: dict[str, Any], *, error: bool) -> types.CallToolResult:
    text = json.dumps(body, default=str)
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)], structuredContent=body, isError=error
    )


def _error(message: str, details: dict[str, Any] | None = None) -> types.CallToolResult:
    body = {"status": "error", "message": message, **({"error": details} if details else {})}
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=message)], structuredContent=body, isError=True
    )


@asynccontextmanager
async def _connected(url: str, token: str, **options: Any) -> AsyncIterator[LunarkMcp]:
    client = LunarkClient(url, token=token)
    front = LunarkMcp(client, **options)
    try:
        await front.start()
        yield front
    finally:
        await client.close()


async def serve_stdio(url: str, token: str, *, withdraw_after: float = WITHDRAW_AFTER,
                      page_url: str | None = None) -> None:
    """Serve the host on this process's stdin/stdout until it closes them.

    A closed stdin with a call still waiting for approval means the host quit or was killed: the
    process stays ``withdraw_after`` seconds for the user to decide in Lunark, then withdraws the
    card and exits. SIGTERM or SIGINT withdraws it at once."""
    from mcp.server.stdio import stdio_server

    async with _connected(url, token, withdraw_after=withdraw_after, page_url=page_url) as front, \
            stdio_server() as (read, write):
        inbox, messages = anyio.create_memory_object_stream[Any](0)

        async def relay() -> None:
            # Between stdin and the MCP session, to know that stdin closed before the session
            # cancels the calls in flight: they are then the host's vanishing, not its cancel.
            async with inbox:
                async for message in read:
                    await inbox.send(message)
                front.host_gone = True

        loop = asyncio.get_running_loop()
        received: list[signal.Signals] = []
        async with anyio.create_task_group() as group:
            def stop(sig: signal.Signals) -> None:
                received.append(sig)
                front.stopping.set()
                group.cancel_scope.cancel()

            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop, sig)
            group.start_soon(relay)
            await front.server.run(messages, write, front.server.create_initialization_options())
            group.cancel_scope.cancel()
        if received:
            # The calls are withdrawn. stdin's reader is a thread blocked in read() that nothing can
            # cancel while the host keeps stdin open: end the way the signal asked, without it.
            await front.client.close()
            signal.signal(received[0], signal.SIG_DFL)
            os.kill(os.getpid(), received[0])


async def serve_http(url: str, token: str, *, host: str, port: int, ready: Any = None,
                     withdraw_after: float = WITHDRAW_AFTER, page_url: str | None = None) -> None:
    """Serve streamable HTTP at ``http://host:port/mcp``; every request must carry the token.
    ``ready(front, port)`` is called once it listens (``port`` is the bound one: ``0`` picks a free
    port). A host whose call waits for approval is pinged on that call's stream; one that has not
    answered for ``withdraw_after`` seconds (it was killed, or dropped the stream without a cancel
    or a DELETE) has the card withdrawn."""
    import uvicorn
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Mount, Route
    from starlette.types import Receive, Scope, Send

    async with _connected(url, token, withdraw_after=withdraw_after, page_url=page_url) as front:
        manager = StreamableHTTPSessionManager(app=front.server)
        expected = f"Bearer {token}".encode()

        async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, expected):
                response = JSONResponse(
                    {"error": {"code": "unauthorized", "message": "Send Authorization: Bearer <your Lunark token>."}},
                    status_code=401,
                )
                await response(scope, receive, send)
                return
            await manager.handle_request(scope, receive, send)

        @asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            async with manager.run():
                yield

        class Endpoint:  # an ASGI app, not a request handler, to Starlette's Route
            __call__ = staticmethod(endpoint)

        # /mcp exactly as printed (a Mount alone answers it with a 307 to /mcp/), and /mcp/ too
        app = Starlette(routes=[Route("/mcp", Endpoint()), Mount("/mcp", app=endpoint)], lifespan=lifespan)
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")

        class Server(uvicorn.Server):
            async def startup(self, sockets: Any = None) -> None:
                await super().startup(sockets)
                if ready is not None and self.started:  # listening now: say so, with the bound port
                    ready(front, self.servers[0].sockets[0].getsockname()[1])

        await Server(config).serve()


def check_token(token: str | None, variable: str) -> str:
    if not token:
        raise Unauthorized(
            f"No Lunark session token: set {variable} to the token of a sign-in (the dApp shows it, or "
            "LunarkClient.sign_in returns it)."
        )
    return token
