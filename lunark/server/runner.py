"""The runner: drives each chat's agent, one turn at a time, and persists what happens.

It starts turns, resumes them with decisions (exactly once), aborts them, and
expires approvals (fail closed: an expired approval is a rejection by
``timeout``). It reads the agent's events, records what must survive a restart
(the assistant's message, transaction history, the chat's network) and hands
every event to the hub.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any, Protocol

from eth_utils.address import to_checksum_address

from lunark.errors import AlreadyDecided, ApprovalExpired, Busy, InvalidInput, LunarkError, NoPendingApproval
from lunark.graph.agent import Agent, AgentEvent
from lunark.ids import new_id
from lunark.server.expiry import ExpiryClock
from lunark.server.hub import Publisher
from lunark.store import ApprovalRecord, ChatRecord, OpenAnswer, Store

__all__ = ["INTERRUPTED", "Runner", "TurnLocks"]

logger = logging.getLogger(__name__)

_RECENT_DECISIONS = 4096
_UNDECIDED = object()
_DECISION_WAIT = 10.0
"""Seconds a decision waits for another process's turn of the chat to end (it is sending its last
events after ``pending_approval``)."""
_ENDING_WAIT = 2.0
"""Seconds a new message waits for a turn whose ``message_end`` is already out to let go of the
chat (its task ends and, with several processes, its lock is released just after that event)."""
_TURN_END_LOOKBACK = 16
"""How many of a chat's latest events ``_turn_ended`` reads to find the end of its last turn."""
_LOG_WINDOW = 256
"""Events read at a time when looking back through a chat's log for the start of a cut answer."""
INTERRUPTED = "The server writing this answer stopped before it was done; what it had written is kept."
"""The plain sentence of a ``message_end`` with ``finish_reason: "interrupted"`` (each client adds
how to go on: /continue, a Continue button)."""
_DECISION_POLL = 0.01
"""How often it tries the chat's lock meanwhile: a dead process's lock is gone within milliseconds
of its death (benchmarks/cluster.py, failover), so a coarse poll would be most of the wait."""


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


class Runner:
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
        """Several processes: a chat's turn is claimed cluster-wide before it starts, and released
        when its task ends (``lunark.server.cluster``). None on one process."""
        self._resumed: dict[str, str] = {}
        """Chat id -> the approval its running turn applies (for an abort to close it, cluster only)."""
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._ending: set[str] = set()
        """Chats whose running turn has sent its ``message_end`` and is only finishing."""
        self._reserved: set[str] = set()
        self._inflight: dict[tuple[str, str], str] = {}
        self._decided: dict[str, str] = {}
        """Approval id -> who decided it ("user" or "timeout"), for the recent ones."""
        self._asked: dict[str, str] = {}
        """Chat id -> the approval its running turn announced (pending_approval sent)."""
        self.clock = ExpiryClock(store, self._expire_record, interval=expiry_interval)
        """Expires pending approvals from the store, on time, holding nothing per approval."""
        self.owns = owns or _every_chat
        """Which chats this runner recovers and expires on its own: all of them, unless it is one of
        several turn workers (``lunark.server.worker``), each of which owns a share of the chats."""
        self._on_turn = on_turn
        """Told when a chat's turn task starts (True) and ends (False): a worker's relay keeps
        ``running`` and ``busy`` from it (``lunark.server.workers``)."""

    async def recover(self) -> None:
        """After a restart: carry every unfinished settlement on, apply every decision that was
        claimed but not applied (never offering its approval again), and start the expiry clock
        (pending approvals stay in the store until they are decided or due)."""
        await self.agent.settlements.resume_all(owns=self.owns)
        for record in await self.store.approvals(["decided"]):
            if self.owns(record.chat_id):
                await self.recover_approval(record)
        await self.recover_answers()
        self.clock.start()

    async def recover_approval(self, record: ApprovalRecord) -> None:
        """Apply a decision claimed but never applied (its process stopped).

        With several processes, a claimed approval whose chat no turn holds was left by a process
        that died: whichever process sweeps first takes the chat and carries the turn on."""
        if record.state != "decided":
            return
        chat = await self.store.get_chat(record.chat_id)
        if chat is None or self.running(chat.chat_id):
            return
        if not await self._claim_turn(chat.chat_id):
            return
        started = False
        try:
            if self.turns is not None:  # read again under the chat's claim: its turn may have ended since
                again = await self.store.get_approval(record.approval_id)
                if again is None or again.state != "decided":
                    return
                record = again
            where = await self.agent.unfinished(chat.chat_id)
            self._decided[record.approval_id] = record.by or "user"
            answer = _Answer(self.hub, chat)
            if where == ("paused", record.approval_id):
                events = self.agent.resume(
                    chat.chat_id, record.approval_id, record.decisions or [], by=record.by or "user", claimed=True,
                    on_token=answer.token,
                )
            elif where == ("interrupted", None):
                events = self.agent.carry_on(chat.chat_id, approval_id=record.approval_id, on_token=answer.token)
            else:
                await self._settle_unapplied(chat, record)
                return
            # The answer the dead process was writing ends before the carried-on turn starts its own.
            await self._close_cut(chat, carrying_on=True)
            logger.info("resuming chat %s after a restart (approval %s, %s)", chat.chat_id, record.approval_id,
                        "its decision" if where[0] == "paused" else "carried on from its checkpoint")
            self._resumed[chat.chat_id] = record.approval_id
            self._start(chat, events, answer)
            started = True
        finally:
            if not started:
                self._release_turn(chat.chat_id)

    async def recover_answers(self) -> None:
        """Close every answer that a process which died left open (``message_end`` with
        ``finish_reason: "interrupted"``), so that no client shows it streaming forever. After a
        restart; with several processes, from every sweep: an answer's turn holds the chat's lock
        until its end is logged, so whoever gets the lock of a chat with an open answer knows its
        writer is dead."""
        for cut in await self.store.open_answers():
            chat_id = cut.chat_id
            if self.running(chat_id) or not self.owns(chat_id):
                continue
            self._reserved.add(chat_id)  # no await since the check: a new message waits for the close
            claimed = False
            try:
                chat = await self.store.get_chat(chat_id)
                if chat is None:
                    await self.store.close_answer(chat_id)
                    continue
                claimed = await self._claim_turn(chat_id)
                if claimed:
                    await self._close_cut(chat)
            except Exception:  # one chat's failure must not keep the others' answers open
                logger.exception("closing the cut answer of chat %s failed; the next sweep tries again", chat_id)
            finally:
                self._reserved.discard(chat_id)
                if claimed:
                    self._release_turn(chat_id)

    async def _close_cut(self, chat: ChatRecord, *, carrying_on: bool = False) -> None:
        """Under the chat's claim: end the answer its dead writer left open, with what was streamed
        of it, stored and logged as ``interrupted`` with a plain sentence (``awaiting_approval`` when
        the turn had reached its pause: the card stays decidable). Unless a turn is ``carrying_on``
        from the checkpoint, the text is kept in the chat's graph too, so ``continue_message`` goes on
        with it."""
        chat_id, owner = chat.chat_id, chat.owner
        for cut in await self.store.open_answers(chat_id):
            continued = cut.since_seq > 0
            message_id, text, started, ended = await self._cut_of(chat_id, cut)
            if not started and carrying_on:
                ended = True  # nothing of it was logged: the carried-on turn's answer is the one shown
            if not ended:
                paused = not carrying_on and (await self.agent.pending_approval(chat_id)) is not None
                finish = "awaiting_approval" if paused else "interrupted"
                logger.warning("chat %s: closing answer %s that a stopped process left open (%s)",
                               chat_id, message_id, finish)
                if not started:  # the turn died before its answer began: one is begun, to be closed
                    await self.hub.publish(chat_id, owner,
                                           {"type": "message_start", "message_id": message_id, "role": "assistant"})
                if finish == "interrupted" and not carrying_on:
                    try:
                        await self.agent.close_interrupted(chat_id, message_id, "".join(text), continued=continued)
                    except Exception:  # the answer still ends; only /continue is lost for it
                        logger.exception("chat %s: the cut answer %s was not kept in its graph", chat_id, message_id)
                await self._save_answer(chat_id, message_id, text, finish, continued=continued)
                end: dict[str, Any] = {
                    "type": "message_end", "message_id": message_id, "finish_reason": finish,
                    "usage": {"output_tokens": len(text), "ttft_ms": None, "tokens_per_s": None},
                }
                if finish == "interrupted":
                    end["message"] = INTERRUPTED
                await self.hub.publish(chat_id, owner, end)
            await self.store.close_answer(chat_id)

    async def _cut_of(self, chat_id: str, cut: OpenAnswer) -> tuple[str, list[str], bool, bool]:
        """What the log holds of an open answer: ``(message_id, its tokens' texts, started, ended)``.
        A continuation's part is what follows ``since_seq``; an answer's, what follows its
        ``message_start`` (found by reading the log backwards a window at a time)."""
        message_id = cut.message_id
        if not message_id:
            return new_id("msg_"), [], False, False
        start = cut.since_seq
        if start == 0:
            upto = await self.store.last_seq(chat_id)
            found = None
            while upto > 0 and found is None:
                window = await self.store.events_after(chat_id, max(0, upto - _LOG_WINDOW), limit=_LOG_WINDOW)
                found = next((e.seq for e in reversed(window) if e.type == "message_start"
                              and e.payload.get("message_id") == message_id), None)
                upto -= _LOG_WINDOW
            if found is None:  # its message_start never reached the log
                return message_id, [], False, False
            start = found
        text: list[str] = []
        ended = False
        after = start
        while batch := await self.store.events_after(chat_id, after, limit=_LOG_WINDOW):
            for event in batch:
                if event.payload.get("message_id") != message_id:
                    continue
                if event.type == "token":
                    text.append(str(event.payload.get("text", "")))
                elif event.type == "message_end":
                    ended = True
            after = batch[-1].seq
        return message_id, text, True, ended

    async def _settle_unapplied(self, chat: ChatRecord, record: ApprovalRecord) -> None:
        """A claimed decision whose chat neither waits for it nor is running on from it: applied
        already (its ``approve`` step ran, e.g. the process died after the turn's end but before the
        claim was finished), or, with no trace of it in the chat's graph or its settlements, lost.
        A lost one is never applied behind the user's back now: the chat says plainly that nothing
        was done, and the claim is closed."""
        applied = await self.agent.resolved(chat.chat_id, record.approval_id) or any(
            s.approval_id == record.approval_id for s in await self.store.settlements(chat_id=chat.chat_id)
        )
        if applied:
            logger.info("approval %s of chat %s was applied before the restart", record.approval_id, chat.chat_id)
        elif (record.by or "user") == "user":
            logger.error("approval %s of chat %s was decided but its chat holds no trace of it; "
                         "nothing was sent", record.approval_id, chat.chat_id)
            await self.hub.publish(chat.chat_id, chat.owner, {
                "type": "error", "code": "internal",
                "message": (f"Your decision on approval {record.approval_id} could not be applied after the "
                            "server restarted; nothing was sent. Ask again to retry."),
            })
        await self.store.finish_approval(record.approval_id)

    async def _let_go(self, chat_id: str) -> bool:
        """A turn of this process that has sent its ``message_end`` is only letting go of the chat:
        wait for it (briefly), so that a client that saw the turn end finds the chat free."""
        task = self._tasks.get(chat_id)
        if task is None or chat_id in self._reserved or chat_id not in self._ending:
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
            await asyncio.sleep(_DECISION_POLL)
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
                {"type": "message_start", "message_id": record.message_id, "role": "user", "content": content},
            )
            answer = _Answer(self.hub, chat)
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
            self._start(chat, _prepend(first, events))
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

    async def _supersede(self, chat: ChatRecord, pending: dict[str, Any]) -> None:
        """Reject the waiting approval because the user moved on; its turn ends before the new one starts."""
        reason = "Set aside: you sent a new message instead of deciding."
        rejects = [{"type": "reject", "message": reason}] * len(pending["action_requests"])
        self._reserved.discard(chat.chat_id)  # resume reserves the chat for the rejecting turn itself
        try:
            await self.resume(chat, pending["approval_id"], rejects, by="superseded")
        except (AlreadyDecided, NoPendingApproval, ApprovalExpired):
            pass  # decided meanwhile by someone else: the new message goes on all the same
        finally:
            task = self._tasks.get(chat.chat_id)
            if task is not None:
                await asyncio.wait({task})
            self._reserved.add(chat.chat_id)

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
            answer = _Answer(self.hub, chat, message_id)
            events = self.agent.continue_message(chat.chat_id, message_id, on_token=answer.token)
            first = await anext(events)  # validation happens before the first event
            self._start(chat, _prepend(first, events), answer, continuing=message_id)
            claimed = False  # the turn's task releases it
        finally:
            if claimed:
                self._release_turn(chat.chat_id)
            self._reserved.discard(chat.chat_id)

    async def resume(self, chat: ChatRecord, approval_id: str, decisions: Sequence[Any], *, by: str = "user") -> None:
        """Apply decisions to the pending approval exactly once; the turn continues in the background.

        Errors (``already_decided``, ``no_pending_approval``, ``approval_expired``,
        ``invalid_input``) are raised before anything runs. A wallet's hash that comes after the
        approval was decided otherwise (expired, rejected, set aside) is still recorded and
        followed: funds that moved are never hidden.
        """
        try:
            await self._resume(chat, approval_id, decisions, by=by)
        except (AlreadyDecided, ApprovalExpired) as exc:
            if by == "user" and await self.agent.record_late(chat.chat_id, approval_id, decisions):
                exc.message += " The transaction your wallet sent is recorded and followed in this chat."
                exc.args = (exc.message,)
            raise

    async def _resume(self, chat: ChatRecord, approval_id: str, decisions: Sequence[Any], *, by: str) -> None:
        self._check_undecided(approval_id)
        self._decided[approval_id] = by  # claimed: a concurrent decision now gets already_decided
        try:
            closing = self._tasks.get(chat.chat_id)
            if closing is not None and self._asked.get(chat.chat_id) == approval_id:
                # The turn that asked for this approval is still sending its last events (status,
                # message_end). A client may decide as soon as it sees pending_approval: the decision
                # waits for that turn to end instead of failing with no_pending_approval.
                await asyncio.wait({closing})
                if self._tasks.get(chat.chat_id) is closing:
                    del self._tasks[chat.chat_id]
                    if self._on_turn is not None:
                        self._on_turn(chat.chat_id, False)
            if self.running(chat.chat_id):
                raise NoPendingApproval(
                    f"This chat is not waiting for approval {approval_id}.", approval_id=approval_id
                )
        except BaseException:
            self._decided.pop(approval_id, None)
            raise
        self._asked.pop(chat.chat_id, None)
        self._reserved.add(chat.chat_id)
        claimed = False
        try:
            if self.turns is not None:
                await self._claim_for_decision(chat.chat_id, approval_id)
                claimed = True
            answer = _Answer(self.hub, chat)
            events = self.agent.resume(chat.chat_id, approval_id, decisions, by=by, on_token=answer.token)
            first = await anext(events)  # validation happens before the first event
        except ApprovalExpired:
            self._decided.pop(approval_id, None)
            self._reserved.discard(chat.chat_id)
            if claimed:
                self._release_turn(chat.chat_id)
            await self.expire(chat, approval_id)
            raise
        except BaseException:
            self._decided.pop(approval_id, None)
            self._reserved.discard(chat.chat_id)
            if claimed:
                self._release_turn(chat.chat_id)
            raise
        self._trim_decided()
        self._resumed[chat.chat_id] = approval_id
        self._start(chat, _prepend(first, events), answer, resumed=approval_id)
        self._reserved.discard(chat.chat_id)

    async def _claim_for_decision(self, chat_id: str, approval_id: str) -> None:
        """Claim the chat for the turn a decision resumes. The turn that asked may still be sending
        its last events on another process: wait for it, unless the approval stops being pending
        meanwhile (decided through another process: ``already_decided`` at once)."""
        assert self.turns is not None
        deadline = time.monotonic() + _DECISION_WAIT
        while not await self.turns.acquire_turn(chat_id):
            record = await self.store.get_approval(approval_id)
            if record is not None and record.state != "pending":
                if record.state == "expired" or record.by == "timeout":
                    raise ApprovalExpired(f"Approval {approval_id} expired; it counted as rejected.",
                                          approval_id=approval_id)
                raise AlreadyDecided(f"Approval {approval_id} was already decided.", approval_id=approval_id)
            if time.monotonic() > deadline:
                raise Busy("Another turn of this chat is running; decide again in a moment.", chat_id=chat_id)
            await asyncio.sleep(_DECISION_POLL)

    def _check_undecided(self, approval_id: str) -> None:
        by = self._decided.get(approval_id, _UNDECIDED)
        if by == "timeout":
            # The contract's code for exactly this: the approval expired and counted as rejected.
            raise ApprovalExpired(
                f"Approval {approval_id} expired; it counted as rejected. Ask again to retry.",
                approval_id=approval_id,
            )
        if by is not _UNDECIDED:
            raise AlreadyDecided(f"Approval {approval_id} was already decided.", approval_id=approval_id)

    async def expire(self, chat: ChatRecord, approval_id: str) -> None:
        """Resolve an approval whose time ran out as rejected (``by: "timeout"``)."""
        if approval_id in self._decided or self.running(chat.chat_id):
            return
        if not await self._claim_turn(chat.chat_id):
            return  # a turn of this chat runs on another process; the next sweep looks again
        if self.running(chat.chat_id) or approval_id in self._decided:
            self._release_turn(chat.chat_id)
            return
        try:
            pending = await self.agent.pending_approval(chat.chat_id)
        except BaseException:
            self._release_turn(chat.chat_id)
            raise
        if pending is None or pending["approval_id"] != approval_id or approval_id in self._decided:
            try:
                if approval_id not in self._decided:
                    await self._set_aside(approval_id)
            finally:
                self._release_turn(chat.chat_id)
            return
        self._decided[approval_id] = "timeout"
        self._asked.pop(chat.chat_id, None)
        self._reserved.add(chat.chat_id)
        answer = _Answer(self.hub, chat)
        try:
            events = self.agent.expire(chat.chat_id, approval_id, on_token=answer.token)
            first = await anext(events)
        except BaseException:
            self._decided.pop(approval_id, None)
            self._reserved.discard(chat.chat_id)
            self._release_turn(chat.chat_id)
            raise
        self._resumed[chat.chat_id] = approval_id
        self._start(chat, _prepend(first, events), answer)
        self._reserved.discard(chat.chat_id)

    async def check_pending(self, chat: ChatRecord) -> dict[str, Any] | None:
        """The pending approval, expiring it now if its time ran out (after a restart, say)."""
        pending = await self.agent.pending_approval(chat.chat_id)
        if pending is None:
            return None
        if _seconds_left(pending) <= 0:
            with suppress(LunarkError):
                await self.expire(chat, pending["approval_id"])
            return None
        self._schedule_expiry(chat, pending)
        return pending

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
        self, chat: ChatRecord, events: AsyncIterator[AgentEvent], answer: _Answer | None = None, *,
        inflight: tuple[str, str] | None = None, continuing: str | None = None, resumed: str | None = None,
    ) -> None:
        """Drive ``events`` in a task of its own; ``answer`` is the one whose ``token`` the turn was
        given as ``on_token`` (a turn started without one yields its tokens as events instead)."""
        answer = answer or _Answer(self.hub, chat, continuing)
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
                if self._on_turn is not None:
                    self._on_turn(chat.chat_id, False)
            if inflight is not None:
                self._inflight.pop(inflight, None)
            self._release_turn(chat.chat_id)

        task.add_done_callback(done)

    async def _drive(
        self, chat: ChatRecord, events: AsyncIterator[AgentEvent], answer: _Answer, continuing: str | None = None,
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
                # Shielded: an abort (cancel) must not cut an event in half, e.g. logged but never
                # emitted (a live seq gap) or counted in the saved answer but never sent.
                handling = asyncio.ensure_future(
                    self._handle(chat_id, owner, event, message_id, text, continued=continued)
                )
                await asyncio.shield(handling)
                if kind == "message_end":
                    self._ending.add(chat_id)
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
                    {"type": "message_end", "message_id": message_id, "finish_reason": "aborted",
                     "usage": {"output_tokens": len(text), "ttft_ms": None, "tokens_per_s": None}},
                )
                self._ending.add(chat_id)
        except Exception:  # a bug must end the turn visibly, not silently
            logger.exception("turn of chat %s failed", chat_id)
            failed = True
            await self.hub.publish(chat_id, owner, {"type": "error", "code": "internal", "message": "Internal error."})
            if message_id is not None:
                await self.hub.publish(
                    chat_id, owner,
                    {"type": "message_end", "message_id": message_id, "finish_reason": "error",
                     "usage": {"output_tokens": len(text), "ttft_ms": None, "tokens_per_s": None}},
                )
                self._ending.add(chat_id)
        with suppress(Exception):
            await self.store.close_answer(chat_id)  # its end is logged, or it never began
        if failed and resumed is not None:
            await self._reopen(chat, resumed)

    async def _reopen(self, chat: ChatRecord, approval_id: str) -> None:
        """A resumed turn failed before its decision was applied (the checkpoint still waits for
        it): release the claim, so the approval stays decidable and can expire, instead of every
        decision answering already_decided and every message busy until a restart."""
        with suppress(Exception):
            if await self.agent.unfinished(chat.chat_id) != ("paused", approval_id) or chat.chat_id in self._reserved:
                return  # applied (or moved on): nothing to reopen
            await self.store.reopen_approval(approval_id)
            pending = await self.agent.pending_approval(chat.chat_id)
            if pending is None or pending["approval_id"] != approval_id:
                return
            self._decided.pop(approval_id, None)
            self._schedule_expiry(chat, pending)
            await self.hub.publish(chat.chat_id, chat.owner, {"type": "pending_approval", **pending})

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

    def _schedule_expiry(self, chat: ChatRecord, approval: dict[str, Any]) -> None:
        self.clock.due_at(_expires_at(approval))

    async def _expire_record(self, record: ApprovalRecord) -> None:
        """The clock found ``record`` due."""
        if not self.owns(record.chat_id):
            return  # another worker's chat: its own clock expires it
        chat = await self.store.get_chat(record.chat_id)
        if chat is None:  # the chat is gone: nothing can be decided any more
            await self._set_aside(record.approval_id)
            return
        await self.expire(chat, record.approval_id)

    async def _set_aside(self, approval_id: str) -> None:
        """A pending record whose chat no longer waits on it (its graph moved on, or the chat is
        gone): mark it expired so that it is never due again."""
        record = await self.store.claim_approval(approval_id, [], "timeout")
        if record is not None:
            logger.info("approval %s no longer waits in its chat; marked expired", approval_id)
            await self.store.finish_approval(approval_id)

    def _trim_decided(self) -> None:
        while len(self._decided) > _RECENT_DECISIONS:
            self._decided.pop(next(iter(self._decided)))

    async def aclose(self) -> None:
        await self.clock.aclose()
        for task in self._tasks.values():
            task.cancel()
        for task in list(self._tasks.values()):
            with suppress(asyncio.CancelledError):
                await task


class _Answer:
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


async def _prepend(first: AgentEvent, rest: AsyncIterator[AgentEvent]) -> AsyncIterator[AgentEvent]:
    try:
        yield first
        async for event in rest:
            yield event
    finally:
        await rest.aclose()  # type: ignore[attr-defined]


def _every_chat(chat_id: str) -> bool:
    return True


def _expires_at(approval: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(approval["expires_at"]).replace("Z", "+00:00"))


def _seconds_left(approval: dict[str, Any]) -> float:
    return (_expires_at(approval) - datetime.now(UTC)).total_seconds()
