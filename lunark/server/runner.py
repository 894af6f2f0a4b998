"""The runner: drives each chat's agent, one turn at a time, and persists what happens.

It starts turns, resumes them with decisions (exactly once), aborts them, and
expires approvals (fail closed: an expired approval is a rejection by
``timeout``). It reads the agent's events, records what must survive a restart
(the assistant's message, transaction history, the chat's network) and hands
every event to the hub.

Its parts, one concern each: ``lunark.server.turns`` (a turn's lifecycle: claim, drive, abort),
``lunark.server.decisions`` (resume, expiry, set aside, reopen; each decision claimed once through
``lunark.approvals``) and ``lunark.server.recovery`` (cut answers and unapplied decisions a stopped
process left). This module starts the turns a user asks for: a message, a tool call, a continuation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from eth_utils.address import to_checksum_address

from lunark import protocol
from lunark.errors import Busy, InvalidInput
from lunark.graph.agent import Agent
from lunark.ids import new_id
from lunark.server.decisions import Decisions
from lunark.server.expiry import ExpiryClock
from lunark.server.hub import Publisher
from lunark.server.recovery import INTERRUPTED, Recovery
from lunark.server.turns import Answer, TurnLocks, prepend
from lunark.store import ChatRecord, Store

__all__ = ["INTERRUPTED", "Runner", "TurnLocks"]


class Runner(Recovery, Decisions):
    """One agent turn at a time per chat; decisions applied once; approvals that expire, fail closed."""

    def __init__(
        self, agent: Agent, hub: Publisher, store: Store, *, turns: TurnLocks | None = None, supersede: bool = True,
        expiry_interval: float = 1.0, owns: Callable[[str], bool] | None = None,
        on_turn: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.agent = agent
        self.hub = hub
        self.store = store
        self.supersede = supersede
        """A message sent while an approval waits rejects it as superseded (else: ``busy``)."""
        self.turns = turns
        self._resumed: dict[str, str] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._ending: set[str] = set()
        self._reserved: set[str] = set()
        self._inflight: dict[tuple[str, str], str] = {}
        self._asked: dict[str, str] = {}
        self.clock = ExpiryClock(store, self._expire_record, interval=expiry_interval)
        """Expires pending approvals from the store, on time, holding nothing per approval."""
        self.owns = owns or _every_chat
        self._on_turn = on_turn

    async def pending_approval(self, chat_id: str) -> dict[str, Any] | None:
        """The approval the chat waits for, or None (``Agent.pending_approval``)."""
        return await self.agent.pending_approval(chat_id)

    async def tools(self) -> list[dict[str, Any]]:
        """The agent's tools as ``GET /api/tools`` lists them."""
        return [t.to_wire() for t in self.agent.tools.info()]

    # -- turns -----------------------------------------------------------------------------------

    async def send_message(self, chat: ChatRecord, content: str, client_message_id: str) -> str:
        """Store the user's message, then start the turn. The same ``client_message_id`` is one message."""
        key = (chat.chat_id, client_message_id)
        if key in self._inflight:
            return self._inflight[key]
        if self.running(chat.chat_id) and not await self._let_go(chat.chat_id):
            raise Busy("A turn is already running in this chat.", chat_id=chat.chat_id)
        if self.running(chat.chat_id):  # another message took the chat while this one waited
            raise Busy("A turn is already running in this chat.", chat_id=chat.chat_id)
        self._reserved.add(chat.chat_id)  # no await between the check and this line
        claimed = False
        try:
            if not await self._claim_next_turn(chat.chat_id):
                # Another process runs this chat's turn: a repeat of a message it stored is that message.
                for stored in await self.store.list_messages(chat.chat_id):
                    if stored.client_message_id == client_message_id:
                        return stored.message_id
                raise Busy("A turn is already running in this chat.", chat_id=chat.chat_id)
            claimed = self.turns is not None
            snapshot = await self.agent.snapshot(chat.chat_id)  # handed to the turn: one read, not two
            pending = snapshot.pending
            if pending is not None and self.supersede and not await self._stored(chat, client_message_id):
                await self._supersede(chat, pending)
                snapshot = await self.agent.snapshot(chat.chat_id)
                pending = snapshot.pending
            if pending is not None:
                # Refused before storing: a stored message would show in the chat without ever being
                # answered, and its client_message_id would turn the retry (after the decision) into
                # a no-op. A repeat of a message already stored is still that message.
                for stored in await self.store.list_messages(chat.chat_id):
                    if stored.client_message_id == client_message_id:
                        return stored.message_id
                raise Busy(
                    "This chat is waiting for your decision on an approval; approve or reject it first.",
                    approval_id=pending["approval_id"],
                )
            record, created = await self.store.add_message(
                chat.chat_id, "user", content, client_message_id=client_message_id
            )
            if not created:
                return record.message_id
            self._inflight[key] = record.message_id
            await self.hub.publish(
                chat.chat_id,
                chat.owner,
                protocol.message_start(record.message_id, "user", content),
            )
            answer = Answer(self.hub, chat)
            events = self.agent.stream(
                chat.chat_id, content, user_address=to_checksum_address(chat.owner), chain_id=chat.chain_id,
                on_token=answer.token, snapshot=snapshot,
            )
            self._start(chat, events, answer, inflight=key)
            claimed = False  # the turn's task releases it
            return record.message_id
        finally:
            if claimed:
                self._release_turn(chat.chat_id)
            self._reserved.discard(chat.chat_id)

    async def call_tool(self, chat: ChatRecord, name: str, args: dict[str, Any]) -> str:
        """Run one tool call the user's own client asked for, as a turn (``Agent.call_tool``); returns
        its call id. ``busy`` while a turn runs or an approval waits: a call never sets one aside."""
        await self._reserve(chat.chat_id)
        claimed = False
        try:
            claimed = await self._claim_for_turn(chat.chat_id)
            call_id = new_id("call_")
            events = self.agent.call_tool(
                chat.chat_id, name, args, user_address=to_checksum_address(chat.owner), call_id=call_id,
                chain_id=chat.chain_id,
            )
            first = await anext(events)  # busy is raised before the first event
            self._start(chat, prepend(first, events))
            claimed = False  # the turn's task releases it
            return call_id
        finally:
            if claimed:
                self._release_turn(chat.chat_id)
            self._reserved.discard(chat.chat_id)

    async def _reserve(self, chat_id: str) -> None:
        """Take the chat on this process for a turn that is not a message (``busy`` while one runs),
        waiting briefly, as ``send_message`` does, for a turn whose ``message_end`` is out to let go."""
        if self.running(chat_id) and not await self._let_go(chat_id):
            raise Busy("A turn is already running in this chat.", chat_id=chat_id)
        if self.running(chat_id):
            raise Busy("A turn is already running in this chat.", chat_id=chat_id)
        self._reserved.add(chat_id)  # no await between the check and this line

    async def _claim_for_turn(self, chat_id: str) -> bool:
        """Claim the chat cluster-wide for the turn (``busy`` if another process runs one): a turn
        that ran unclaimed would look dead to every other process's sweep. True if a claim is held."""
        if not await self._claim_next_turn(chat_id):
            raise Busy("A turn is already running in this chat.", chat_id=chat_id)
        return self.turns is not None

    async def _stored(self, chat: ChatRecord, client_message_id: str) -> bool:
        return any(m.client_message_id == client_message_id for m in await self.store.list_messages(chat.chat_id))

    async def continue_message(self, chat: ChatRecord, message_id: str) -> None:
        """Continue the chat's last answer, cut at the model's output limit; the turn runs in the
        background and appends to ``message_id``. ``busy`` and ``invalid_input`` are raised first."""
        await self._reserve(chat.chat_id)
        claimed = False
        try:
            claimed = await self._claim_for_turn(chat.chat_id)
            parts = [m for m in await self.store.list_messages(chat.chat_id)
                     if m.message_id == message_id or m.message_id.startswith(message_id + ":part")]
            if parts and parts[-1].finish_reason not in ("length", "interrupted"):
                # E.g. a continuation that was stopped: what the chat shows ended there, so going on
                # from the checkpoint's cut would repeat the stopped part.
                raise InvalidInput(
                    f"Message {message_id} ended ({parts[-1].finish_reason}); only an answer cut at the "
                    "model's output limit, or by a server that stopped, can be continued.",
                    message_id=message_id,
                )
            answer = Answer(self.hub, chat, message_id)
            events = self.agent.continue_message(chat.chat_id, message_id, on_token=answer.token)
            first = await anext(events)  # validation happens before the first event
            self._start(chat, prepend(first, events), answer, continuing=message_id)
            claimed = False  # the turn's task releases it
        finally:
            if claimed:
                self._release_turn(chat.chat_id)
            self._reserved.discard(chat.chat_id)


def _every_chat(chat_id: str) -> bool:
    return True
