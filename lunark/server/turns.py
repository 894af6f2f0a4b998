"""A chat's turn as the runner drives it: one per chat (across processes, through ``TurnLocks``),
its events read from the agent, recorded where they must survive a restart, and handed to the hub.

``TurnDriver`` is the runner's base: its state, claiming and releasing a chat, starting a turn's
task, driving it, aborting it. The runner (``lunark.server.runner``) starts turns on it; recovery
(``lunark.server.recovery``) and decisions (``lunark.server.decisions``) are its other parts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from typing import Any, Protocol

from lunark import protocol
from lunark.approvals import Claims
from lunark.graph.agent import Agent, AgentEvent
from lunark.server.expiry import ExpiryClock
from lunark.server.hub import Publisher
from lunark.store import ChatRecord, Store

__all__ = ["DECISION_POLL", "Answer", "TurnDriver", "TurnLocks", "prepend"]

logger = logging.getLogger(__name__)

_ENDING_WAIT = 2.0
"""Seconds a new message waits for a turn whose ``message_end`` is already out to let go of the
chat (its task ends and, with several processes, its lock is released just after that event)."""
_TURN_END_LOOKBACK = 16
"""How many of a chat's latest events ``_turn_ended`` reads to find the end of its last turn."""
DECISION_POLL = 0.01
"""How often a decision or a new turn tries the chat's lock while it waits: a dead process's lock
is gone within milliseconds of its death (benchmarks/cluster.py, failover), so a coarse poll would
be most of the wait."""


class TurnLocks(Protocol):
    """One turn per chat across server processes (``lunark.server.cluster``); none on one process."""

    async def acquire_turn(self, chat_id: str) -> bool:
        """Take the chat for a turn of this process; False when a turn runs anywhere (no waiting)."""
        ...

    def release_turn(self, chat_id: str) -> None:
        """The turn is over (also when it never started)."""
        ...

    async def abort_elsewhere(self, chat_id: str) -> None:
        """Ask whichever process runs the chat's turn to abort it."""
        ...


class TurnDriver(ABC):
    """The runner's state and its turns' lifecycle (``lunark.server.runner.Runner`` is one)."""

    agent: Agent
    hub: Publisher
    store: Store
    turns: TurnLocks | None
    """Several processes: a chat's turn is claimed cluster-wide before it starts, and released
    when its task ends (``lunark.server.cluster``). None on one process."""
    clock: ExpiryClock
    _resumed: dict[str, str]
    """Chat id -> the approval its running turn applies (for an abort to close it, cluster only)."""
    _tasks: dict[str, asyncio.Task[None]]
    _ending: set[str]
    """Chats whose running turn has sent its ``message_end`` and is only finishing."""
    _reserved: set[str]
    _inflight: dict[tuple[str, str], str]
    _asked: dict[str, str]
    """Chat id -> the approval its running turn announced (pending_approval sent)."""
    owns: Callable[[str], bool]
    """Which chats this runner recovers and expires on its own: all of them, unless it is one of
    several turn workers (``lunark.server.worker``), each of which owns a share of the chats."""
    _on_turn: Callable[[str, bool], None] | None
    """Told when a chat's turn task starts (True) and ends (False): a worker's relay keeps
    ``running`` and ``busy`` from it (``lunark.server.workers``)."""

    def _turn_over(self, chat_id: str) -> None:
        """The chat's turn task is gone from ``_tasks``."""
        if self._on_turn is not None:
            self._on_turn(chat_id, False)

    @property
    def claims(self) -> Claims:
        """Who decided which approval, claimed once (``lunark.approvals``; the agent's)."""
        return self.agent.claims

    @abstractmethod
    def _schedule_expiry(self, chat: ChatRecord, approval: dict[str, Any]) -> None:
        """A turn announced ``approval``: the clock wakes up when it is due."""

    @abstractmethod
    async def _reopen(self, chat: ChatRecord, approval_id: str) -> None:
        """A resumed turn failed before its decision was applied."""

    async def _let_go(self, chat_id: str) -> bool:
        """A turn of this process that has sent its ``message_end``, or the ``pending_approval`` it
        ends with, is only letting go of the chat: wait for it (briefly), so that a client that saw
        the turn end, or answered its card with a new message at once, finds the chat free."""
        task = self._tasks.get(chat_id)
        finishing = chat_id in self._ending or chat_id in self._asked
        if task is None or chat_id in self._reserved or not finishing:
            return False
        await asyncio.wait({task}, timeout=_ENDING_WAIT)
        return task.done()

    async def _claim_next_turn(self, chat_id: str) -> bool:
        """Claim the chat for a new turn; across processes, wait (briefly) for a turn elsewhere whose
        ``message_end`` is already logged to release the chat's lock, as ``_let_go`` does here."""
        if await self._claim_turn(chat_id):
            return True
        deadline = time.monotonic() + _ENDING_WAIT
        while time.monotonic() < deadline and await self._turn_ended(chat_id):
            await asyncio.sleep(DECISION_POLL)
            if await self._claim_turn(chat_id):
                return True
        return False

    async def _turn_ended(self, chat_id: str) -> bool:
        """Whether the chat's log says its last turn is over: of its latest events, the last
        ``message_start`` or ``message_end`` is a ``message_end`` (settlement updates may follow it)."""
        last = await self.store.last_seq(chat_id)
        for event in reversed(await self.store.events_after(chat_id, max(0, last - _TURN_END_LOOKBACK))):
            if event.type in ("message_start", "message_end"):
                return event.type == "message_end"
        return False

    async def _claim_turn(self, chat_id: str) -> bool:
        return self.turns is None or await self.turns.acquire_turn(chat_id)

    def _release_turn(self, chat_id: str) -> None:
        if self.turns is not None:
            self.turns.release_turn(chat_id)

    def running(self, chat_id: str) -> bool:
        return chat_id in self._reserved or chat_id in self._tasks

    @property
    def busy(self) -> bool:
        """Whether any chat's turn is starting or running."""
        return bool(self._reserved or self._tasks)

    async def abort(self, chat_id: str, *, forward: bool = True) -> bool:
        """Stop the running turn (``message_end`` with ``finish_reason: "aborted"``). True if one ran
        here; with several processes, else (``forward``) the process running it is asked to."""
        task = self._tasks.get(chat_id)
        if task is None:
            if self.turns is not None and forward:
                await self.turns.abort_elsewhere(chat_id)
            return False
        approval_id = self._resumed.get(chat_id)
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        if self.turns is not None and approval_id is not None:
            # The decision stays applied as far as it got (its settlement goes on without the turn).
            # Finished, so no other process's sweep takes the stopped turn for one a crash left.
            await self.store.finish_approval(approval_id)
        return True

    def _start(
        self, chat: ChatRecord, events: AsyncIterator[AgentEvent], answer: Answer | None = None, *,
        inflight: tuple[str, str] | None = None, continuing: str | None = None, resumed: str | None = None,
    ) -> None:
        """Drive ``events`` in a task of its own; ``answer`` is the one whose ``token`` the turn was
        given as ``on_token`` (a turn started without one yields its tokens as events instead)."""
        answer = answer or Answer(self.hub, chat, continuing)
        task = asyncio.create_task(self._drive(chat, events, answer, continuing, resumed),
                                   name=f"lunark-turn-{chat.chat_id}")
        self._tasks[chat.chat_id] = task
        if self._on_turn is not None:
            self._on_turn(chat.chat_id, True)

        def done(_: asyncio.Task[None]) -> None:
            if self._tasks.get(chat.chat_id) is task:
                del self._tasks[chat.chat_id]
                self._resumed.pop(chat.chat_id, None)
                self._ending.discard(chat.chat_id)
                self._turn_over(chat.chat_id)
            if inflight is not None:
                self._inflight.pop(inflight, None)
            self._release_turn(chat.chat_id)

        task.add_done_callback(done)

    async def _drive(
        self, chat: ChatRecord, events: AsyncIterator[AgentEvent], answer: Answer, continuing: str | None = None,
        resumed: str | None = None,
    ) -> None:
        """``answer`` keeps the turn's text (its ``token`` takes the tokens the agent hands over);
        ``continuing``: the message this turn appends to (it sends no ``message_start``);
        ``resumed``: the approval whose decision this turn applies (reopened if the turn fails first)."""
        chat_id, owner = chat.chat_id, chat.owner
        message_id: str | None = continuing
        continued = continuing is not None  # a continuation has no message_start: one message throughout
        text = answer.text
        ended = False
        failed = False
        handling: asyncio.Future[None] | None = None
        try:
            # Recorded before anything of the answer is logged: if this process dies mid-answer,
            # whoever takes the chat over finds the answer open and closes it (recover_answers).
            # A continuation's part is what the log holds after its last seq now.
            since = await self.store.last_seq(chat_id) if continuing is not None else 0
            await self.store.open_answer(chat_id, continuing or "", since_seq=since)
            async for event in events:
                kind = event["type"]
                if kind == "message_start":
                    message_id, ended = event["message_id"], False
                    answer.message_id = message_id  # before the graph runs: no token comes earlier
                elif kind == "token":  # tokens the agent yields rather than hands to answer.token
                    # Synchronous, so an abort cannot cut it in half, and no task per token.
                    text.append(event["text"])
                    self.hub.publish_token(chat_id, owner, event["message_id"], event["text"])
                    continue
                elif kind == "pending_approval":
                    self._schedule_expiry(chat, event)
                    self._asked[chat_id] = event["approval_id"]
                elif kind == "message_end":
                    ended = True
                    failed = failed or event.get("finish_reason") == "error"
                    # Letting go from here on: a client may see this end (a worker's relay emits it
                    # before the worker hears back) and send its next message at once.
                    self._ending.add(chat_id)
                # Shielded: an abort (cancel) must not cut an event in half, e.g. logged but never
                # emitted (a live seq gap) or counted in the saved answer but never sent.
                handling = asyncio.ensure_future(
                    self._handle(chat_id, owner, event, message_id, text, continued=continued)
                )
                await asyncio.shield(handling)
        except asyncio.CancelledError:
            if handling is not None and not handling.done():
                with suppress(Exception, asyncio.CancelledError):
                    await handling
            with suppress(asyncio.CancelledError):
                await events.aclose()  # type: ignore[attr-defined]
            if message_id is not None and not ended:
                await self._save_answer(chat_id, message_id, text, "aborted", continued=continued)
                await self.hub.publish(
                    chat_id,
                    owner,
                    protocol.message_end(message_id, "aborted", protocol.usage(len(text))),
                )
                self._ending.add(chat_id)
        except Exception:  # a bug must end the turn visibly, not silently
            logger.exception("turn of chat %s failed", chat_id)
            failed = True
            await self.hub.publish(chat_id, owner, protocol.error("internal", "Internal error."))
            if message_id is not None:
                await self.hub.publish(
                    chat_id, owner,
                    protocol.message_end(message_id, "error", protocol.usage(len(text))),
                )
                self._ending.add(chat_id)
        with suppress(Exception):
            await self.store.close_answer(chat_id)  # its end is logged, or it never began
        if failed and resumed is not None:
            await self._reopen(chat, resumed)

    async def _handle(
        self, chat_id: str, owner: str, event: AgentEvent, message_id: str | None, text: list[str], *,
        continued: bool = False,
    ) -> None:
        """Record what must survive a restart, then publish the event."""
        kind = event["type"]
        if kind == "tx_update":
            await self.store.record_tx_update(chat_id, event["call_id"], event)
        elif kind == "network_switch":
            await self.store.set_chat_network(chat_id, int(event["chain_id"]))
        elif kind == "message_end" and message_id is not None:
            await self._save_answer(chat_id, message_id, text, event["finish_reason"], continued=continued)
        elif kind == "message_start" and event.get("role") == "assistant":
            await self.store.open_answer(chat_id, event["message_id"])  # before it is in the log
        await self.hub.publish(chat_id, owner, event)

    async def _save_answer(
        self, chat_id: str, message_id: str, text: list[str], finish: str, *, continued: bool = False
    ) -> None:
        if continued:
            # A continuation is stored as its own part, "<message_id>:part<n>", after the message;
            # ChatService.detail joins the parts into one message, as the events show one.
            parts = [m for m in await self.store.list_messages(chat_id) if m.message_id.startswith(message_id + ":")]
            message_id = f"{message_id}:part{len(parts) + 2}"
        await self.store.add_message(
            chat_id, "assistant", "".join(text), message_id=message_id, finish_reason=finish
        )

    async def aclose(self) -> None:
        await self.clock.aclose()
        for task in self._tasks.values():
            task.cancel()
        for task in list(self._tasks.values()):
            with suppress(asyncio.CancelledError):
                await task


class Answer:
    """A turn's assistant message as the runner keeps it: its id, and its text for the stored answer.

    ``token`` is the hot path, called by the agent node as the model streams each token: it is
    synchronous (an abort cannot cut it in half), and hands the token to the hub without an
    event, a task or a wake-up in between."""

    __slots__ = ("chat_id", "hub", "message_id", "owner", "text")

    def __init__(self, hub: Publisher, chat: ChatRecord, message_id: str | None = None) -> None:
        self.hub = hub
        self.chat_id = chat.chat_id
        self.owner = chat.owner
        self.message_id = message_id
        """Set by ``message_start`` (a continuation starts with the message it appends to)."""
        self.text: list[str] = []

    def token(self, text: str) -> None:
        assert self.message_id is not None, "message_start comes before any token"
        self.text.append(text)
        self.hub.publish_token(self.chat_id, self.owner, self.message_id, text)


async def prepend(first: AgentEvent, rest: AsyncIterator[AgentEvent]) -> AsyncIterator[AgentEvent]:
    try:
        yield first
        async for event in rest:
            yield event
    finally:
        await rest.aclose()  # type: ignore[attr-defined]
