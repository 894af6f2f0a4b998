"""``lunark mcp``: Lunark's wallet tools as an MCP server, for any MCP host.

A thin front-end: it holds no wallet, no agent and no database. It signs in to a running
``lunark serve`` with the user's session token (from sign-in with Ethereum, given in the host's
configuration as ``LUNARK_TOKEN``), opens one chat there for the host, and turns each MCP tool
call into a ``call_tool`` request in that chat (``lunark.protocol.CallTool``). The server runs it
as if its model had proposed it: ``get_balance`` answers at once; ``transfer`` and
``switch_network`` become a normal approval in the user's rooms, decided in the dApp or the
terminal chat with the user's own wallet. The MCP call returns the outcome: a transfer's
settlement (``confirmed`` with hash and block, ``mismatch``, ``failed``, ``dropped``...),
``rejected`` with the reason, or ``expired``. Nothing here can approve: the only decision it ever
sends is a rejection, when the host cancels its request.

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
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import mcp.types as types
from mcp.server.lowlevel import Server
from pydantic import BaseModel

from lunark.client import LunarkClient
from lunark.client.sdk import ChatSession
from lunark.errors import LunarkError, Unauthorized
from lunark.protocol import (
    ApprovalResolved,
    CallTool,
    CallToolAck,
    Error,
    MessageEnd,
    PendingApproval,
    ToolCall,
    ToolResult,
    TxUpdate,
)
from lunark.tools.base import Tool
from lunark.tools.registry import default_tools

__all__ = ["ANNOTATIONS", "LunarkMcp", "serve_http", "serve_stdio"]

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


class LunarkMcp:
    """The MCP server: one Lunark client, one chat, the tools as the host sees them."""

    def __init__(self, client: LunarkClient, tools: Sequence[Tool] | None = None) -> None:
        self.client = client
        self.tools = {tool.name: tool for tool in (tools if tools is not None else default_tools())}
        self.server: Server[Any, Any] = Server("lunark", instructions=(
            "Lunark's wallet tools for one signed-in user. get_balance answers at once; transfer and "
            "switch_network wait until the user approves or rejects them in Lunark with their own wallet, "
            "and return the outcome (confirmed with hash and block, rejected with the reason, expired, "
            "mismatch). Amounts are whole units as decimal strings ('0.5'), never wei."
        ))
        self.chat: ChatSession | None = None
        self._lock = asyncio.Lock()
        self.server.list_tools()(self._list_tools)  # type: ignore[no-untyped-call]
        self.server.call_tool()(self._call_tool)

    def mcp_tools(self) -> list[types.Tool]:
        out = []
        for tool in self.tools.values():
            annotations = ANNOTATIONS.get(tool.name) or types.ToolAnnotations(
                readOnlyHint=tool.approval == "never", openWorldHint=True
            )
            out.append(types.Tool(
                name=tool.name, title=annotations.title, description=tool.description,
                inputSchema=tool.args_schema.model_json_schema(), annotations=annotations,
            ))
        return out

    async def _list_tools(self) -> list[types.Tool]:
        return self.mcp_tools()

    async def start(self) -> None:
        """Connect with the token and open the host's chat. Raises ``Unauthorized`` for a token the
        server does not take."""
        await self.client.connect()
        self.chat = await self.client.join()

    async def _call_tool(self, name: str, arguments: dict[str, Any]) -> types.CallToolResult:
        context = self.server.request_context
        token = context.meta.progressToken if context.meta is not None else None
        progress = _Progress(token, context.session)
        if name not in self.tools:
            return _error(f"There is no tool named {name!r} (tools: {', '.join(self.tools)}).")
        async with self._lock:
            try:
                return await self.call(name, arguments, progress)
            except LunarkError as exc:
                return _error(exc.message, exc.to_dict())

    async def call(self, name: str, arguments: dict[str, Any], progress: _Progress) -> types.CallToolResult:
        """Run one call in the host's chat and wait for its outcome."""
        assert self.chat is not None, "start() first"
        chat = self.chat
        payload = CallTool(chat_id=chat.chat_id, name=name, args=arguments).model_dump(mode="json")
        events = chat.events()
        # The SDK's own request path (ChatSession gets a call_tool method once its split lands).
        ack = await self.client._call("call_tool", payload, retry=False)
        call_id = CallToolAck.model_validate(ack).call_id
        approval_id: str | None = None
        expired = False
        result: ToolResult | None = None
        try:
            async for event in events:
                if isinstance(event, ToolCall) and event.call_id == call_id and event.status == "awaiting_approval":
                    await progress.say("Waiting for the user's approval in Lunark.")
                elif isinstance(event, PendingApproval) and any(r.call_id == call_id for r in event.action_requests):
                    approval_id = event.approval_id
                    await progress.say(f"Approval {approval_id} is waiting for the user until {event.expires_at}.")
                elif isinstance(event, ApprovalResolved) and event.approval_id == approval_id:
                    kinds = {d.type for d in event.decisions}
                    expired = event.by == "timeout"
                    said = "expired" if expired else "approved" if kinds == {"approve"} else (
                        "edited: asked again" if "edit" in kinds else "rejected")
                    await progress.say(f"The approval was {said}.")
                    approval_id = None if "edit" not in kinds else approval_id
                elif isinstance(event, TxUpdate) and event.call_id == call_id:
                    await progress.say(_tx_text(event))
                elif isinstance(event, ToolResult) and event.call_id == call_id:
                    result = event
                elif isinstance(event, Error) and result is None:
                    return _error(event.message, event.to_wire())
                elif isinstance(event, MessageEnd) and event.finish_reason != "awaiting_approval":
                    if result is not None:
                        return _outcome(result, expired)
                    if event.finish_reason in ("error", "aborted"):
                        return _error(f"The call ended without a result ({event.finish_reason}).")
        except asyncio.CancelledError:
            await self._withdraw(chat, call_id, approval_id)
            raise
        return _error("The connection to Lunark ended before the call finished; check the chat in Lunark.")

    async def _withdraw(self, chat: ChatSession, call_id: str, approval_id: str | None) -> None:
        """The host cancelled: the approval it asked for is rejected (never left to be approved for
        nobody); a turn still preparing it is stopped first."""
        with anyio.CancelScope(shield=True):
            try:
                if approval_id is None:
                    await chat.abort()  # still preparing, or already paused (then nothing runs)
                    pending = (await self.client.get_chat(chat.chat_id)).get("pending_approval") or {}
                    if any(r.get("call_id") == call_id for r in pending.get("action_requests", [])):
                        approval_id = pending["approval_id"]
                if approval_id is not None:
                    await chat.reject(approval_id, message=WITHDRAWN)
            except LunarkError as exc:
                logger.info("withdrawing the cancelled call: %s", exc.message)


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
    ``rejected`` with the reason, or ``expired``."""
    body: dict[str, Any]
    if result.status == "rejected":
        reason = result.result.get("message") if isinstance(result.result, dict) else None
        body = {"status": "expired", "message": "The approval expired; nothing was done."} if expired else {
            "status": "rejected", "reason": reason, "message": f"The user rejected it{f': {reason}' if reason else '.'}"
        }
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
async def _connected(url: str, token: str) -> AsyncIterator[LunarkMcp]:
    client = LunarkClient(url, token=token)
    front = LunarkMcp(client)
    try:
        await front.start()
        yield front
    finally:
        await client.close()


async def serve_stdio(url: str, token: str) -> None:
    """Serve the host on this process's stdin/stdout until it closes them."""
    from mcp.server.stdio import stdio_server

    async with _connected(url, token) as front, stdio_server() as (read, write):
        await front.server.run(read, write, front.server.create_initialization_options())


async def serve_http(url: str, token: str, *, host: str, port: int, ready: Any = None) -> None:
    """Serve streamable HTTP at ``http://host:port/mcp``; every request must carry the token."""
    import uvicorn
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Mount
    from starlette.types import Receive, Scope, Send

    async with _connected(url, token) as front:
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

        app = Starlette(routes=[Mount("/mcp", app=endpoint)], lifespan=lifespan)
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
        server = uvicorn.Server(config)
        if ready is not None:
            ready(front)
        await server.serve()


def check_token(token: str | None, variable: str) -> str:
    if not token:
        raise Unauthorized(
            f"No Lunark session token: set {variable} to the token of a sign-in (the dApp shows it, or "
            "LunarkClient.sign_in returns it)."
        )
    return token
