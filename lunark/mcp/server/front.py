"""The MCP server as the host sees it: Lunark's tools listed, and each call run in the host's
chat until its outcome (``LunarkMcp``)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import anyio
import mcp.types as types
from mcp.server.lowlevel import Server

from lunark.client import LunarkClient
from lunark.client.sdk import ChatSession
from lunark.errors import LunarkError
from lunark.mcp.server.answers import (
    annotations_for,
    code_of,
    description,
    exposed_name,
    outcome,
    preview_text,
    tool_error,
    tx_text,
    warnings_text,
)
from lunark.mcp.server.waiting import (
    HOST_GONE,
    STOPPED,
    WITHDRAW_AFTER,
    WITHDRAWN,
    Host,
    Progress,
    Waiting,
    WaitingCalls,
    completed,
)
from lunark.protocol import (
    ApprovalResolved,
    Error,
    MessageEnd,
    PendingApproval,
    ToolCall,
    ToolInfo,
    ToolResult,
    TxUpdate,
)

__all__ = ["LunarkMcp"]

logger = logging.getLogger(__name__)


class LunarkMcp(WaitingCalls):
    """The MCP server: one Lunark client, one chat, the tools as the host sees them.

    The tools are the running server's (``LunarkClient.list_tools``): the built-in ones, the
    entry-point plugins' and every configured MCP server's, listed again at each ``tools/list`` so
    the host sees what the agent has now. An MCP tool is named ``server__tool`` here, as the agent
    names it: hosts that forward names to a model API accept only ``^[a-zA-Z0-9_-]{1,64}$``."""

    def __init__(self, client: LunarkClient, *, withdraw_after: float = WITHDRAW_AFTER,
                 page_url: str | None = None) -> None:
        super().__init__(client, withdraw_after=withdraw_after, page_url=page_url)
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
                name=name, title=annotations.title, description=description(info),
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

    async def _call_tool(self, name: str, arguments: dict[str, Any]) -> types.CallToolResult:
        context = self.server.request_context
        token = context.meta.progressToken if context.meta is not None else None
        progress = Progress(token, context.session)
        params = context.session.client_params
        elicitation = params.capabilities.elicitation if params is not None else None
        host = Host(context.session, context.request_id, elicitation is not None and elicitation.url is not None)
        if name not in self.tools:
            try:
                await self.refresh()  # an MCP server's list may have changed since
            except LunarkError as exc:
                return tool_error(exc.message, exc.to_dict())
            if name not in self.tools:
                return tool_error(f"There is no tool named {name!r} (tools: {', '.join(self.tools)}).")
        async with self._lock:
            try:
                return await self.call(self.tools[name].name, arguments, progress, host)
            except LunarkError as exc:
                return tool_error(exc.message, exc.to_dict())

    async def call(self, name: str, arguments: dict[str, Any], progress: Progress,
                   host: Host | None = None) -> types.CallToolResult:
        """Run one call in the host's chat and wait for its outcome.

        While it waits for approval the host is pinged: one that has not answered for
        ``withdraw_after`` seconds is gone (killed, its stream dropped), and the card is withdrawn.
        A host that takes URL-mode elicitations is sent the approval page's link, and told when
        the approval is decided."""
        assert self.chat is not None, "start() first"
        chat = self.chat
        events = chat.events()
        call_id = await chat.call_tool(name, arguments)
        waiting = Waiting()
        watched = False
        expired = False
        result: ToolResult | None = None
        try:
            async for event in events:
                if isinstance(event, ToolCall) and event.call_id == call_id and event.status == "awaiting_approval":
                    await progress.say("Waiting for the user's approval in Lunark.")
                elif isinstance(event, PendingApproval) and any(r.call_id == call_id for r in event.action_requests):
                    waiting.approval_id = event.approval_id
                    warned = " ".join(warnings_text(r) for r in event.action_requests if r.call_id == call_id)
                    preview = preview_text(event, call_id, chat.network) + warned
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
                        await completed(host, event.approval_id)
                    waiting.approval_id = None if "edit" not in kinds else waiting.approval_id
                elif isinstance(event, TxUpdate) and event.call_id == call_id:
                    await progress.say(tx_text(event))
                elif isinstance(event, ToolResult) and event.call_id == call_id:
                    result = event
                    if code_of(event) == "preview_changed":
                        await progress.say("What the transfer would do changed before it was signed; nothing was "
                                           "sent, and the user is asked again on a fresh card.")
                elif isinstance(event, Error) and result is None:
                    return tool_error(event.message, event.to_wire())
                elif isinstance(event, MessageEnd) and event.finish_reason != "awaiting_approval":
                    if result is not None:
                        return outcome(result, expired)
                    if event.finish_reason in ("error", "aborted"):
                        return tool_error(f"The call ended without a result ({event.finish_reason}).")
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
        return tool_error("The connection to Lunark ended before the call finished; check the chat in Lunark.")
