"""A call that waits for the user's approval, as the host lives through it.

The host is told how it goes (MCP progress notifications), sent the approval page's link when it
takes URL-mode elicitations (and told when the approval is decided), and pinged while it waits: a
host that cancels, declines the page or vanishes has the card withdrawn (rejected, never left to
be approved for nobody). ``WaitingCalls`` holds this flow for ``LunarkMcp``.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import anyio
import mcp.types as types
from mcp.shared.message import ServerMessageMetadata

from lunark.client import LunarkClient
from lunark.client.sdk import ChatSession
from lunark.errors import LunarkError
from lunark.protocol import PendingApproval

__all__ = [
    "DECLINED", "HOST_GONE", "PING_EVERY", "STOPPED", "WITHDRAWN", "WITHDRAW_AFTER", "Host", "Progress",
    "Waiting", "WaitingCalls", "completed",
]

logger = logging.getLogger(__name__)

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
class Progress:
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
class Host:
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
class Waiting:
    """One call's approval as it stands: the host is asked about it once, told when it is done."""

    approval_id: str | None = None
    elicited: set[str] = field(default_factory=set)
    over: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the call has its outcome: the host is no longer watched."""


class WaitingCalls:
    """The approval flow of ``LunarkMcp``'s calls: elicitation, host watching, withdrawal."""

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

    def _spawn(self, work: Any, name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def approval_url(self, approval_id: str) -> str:
        """The dApp's page for one approval: the user signs in with their wallet there and decides."""
        return f"{self.page_url}/approve/{quote(approval_id, safe='')}"

    async def _elicit(self, host: Host, chat: ChatSession, event: PendingApproval, preview: str) -> None:
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

    async def _watch(self, host: Host, chat: ChatSession, call_id: str, waiting: Waiting) -> None:
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


async def completed(host: Host, approval_id: str) -> None:
    """Tell the host the approval its link was for is decided (``notifications/elicitation/complete``)."""
    try:
        await host.session.send_elicit_complete(approval_id, related_request_id=host.request_id)
    except Exception as exc:  # the host went away: the call goes on
        logger.info("elicitation completion not sent: %s", exc)
