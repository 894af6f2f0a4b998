"""A turn in ``lunark chat``: open a chat, send a message, follow its events until the answer
ends (deciding approvals on the way), go on with a cut answer, and stop a running one on Ctrl-C.

``Turns`` is the part of ``TerminalChat`` (``chat``) that drives the event loop; the chat's
constructor sets the state declared on it.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from lunark.client.chat_approvals import Approvals
from lunark.client.sdk import ChatSession
from lunark.errors import LunarkError
from lunark.protocol import MessageEnd, MessageStart

__all__ = ["Turns"]


class Turns(Approvals):
    """Open chats, run turns and follow their events."""

    _in_turn: bool

    async def open(self, chat_id: str | None) -> None:
        self.session = await self.client.join(chat_id)
        network = self.session.network
        self.line(f"chat {self.session.chat_id} on {network.get('display_name') or network['name']} "
                  f"(chain {network['chain_id']})")
        if self.session.pending_approval is not None:
            self.line("This chat waits for your decision:")
            await self.resolve_pending()

    async def turn(self, text: str) -> None:
        assert self.session is not None
        try:
            message_id = await self.session.send(text)
        except LunarkError as exc:
            self.line(f"  [{exc.code}] {exc.message}")
            if self.session.pending_approval is not None:
                self.line("  (type /approval to decide it)")
            return
        self._own_messages.add(message_id)
        await self.follow(message_id)
        await self._send_queued()

    async def _send_queued(self) -> None:
        """A message typed at an approval's prompt: sent now, it sets the approval aside."""
        text, self._queued = self._queued, None
        if text is not None:
            await self.turn(text)

    async def continue_answer(self) -> None:
        """``/continue``: go on with the last answer, cut at the model's output limit or by a
        server that stopped mid-answer (``interrupted``)."""
        assert self.session is not None
        if self._cut is None:
            self.line("  nothing to continue: /continue goes on with an answer cut at the model's output limit "
                      "or interrupted by a server that stopped")
            return
        try:
            await self.session.continue_message(self._cut)
        except LunarkError as exc:
            self.line(f"  [{exc.code}] {exc.message}")
            return
        self._new_message = False  # the same answer goes on, indented under it
        await self.follow(None)

    async def resolve_pending(self) -> None:
        assert self.session is not None
        approval = self.session.pending_approval
        if approval is not None and await self.decide(approval) == "sent":
            await self.follow(None)
        await self._send_queued()

    async def follow(self, message_id: str | None) -> None:
        """Render events until the turn ends, deciding approvals on the way."""
        session = self.session
        assert session is not None
        started = message_id is None
        self._in_turn = True
        try:
            async for event in session.events():
                self.render(event)
                if isinstance(event, MessageStart) and event.message_id == message_id:
                    started = True
                elif isinstance(event, MessageEnd) and started:
                    approval = session.pending_approval
                    if event.finish_reason == "awaiting_approval" and approval is not None:
                        self._in_turn = False
                        if await self.decide(approval) != "sent":
                            return
                        self._in_turn = True
                        continue
                    return
        finally:
            self._in_turn = False
            self.end_line()

    # -- Ctrl-C -------------------------------------------------------------------------------

    def interrupt(self, main: asyncio.Task[Any]) -> None:
        if self._in_turn and self.session is not None:
            self.line("  [stopping...]")
            self.client._spawn(self._abort(self.session))
        else:
            main.cancel()

    async def _abort(self, session: ChatSession) -> None:
        with contextlib.suppress(LunarkError):
            await session.abort()
