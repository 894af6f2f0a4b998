"""Recovery: what a process that stopped left undone, taken over by whoever holds the chat next.

After a restart (and, with several processes, from every sweep): every decision that was claimed
but not applied is applied (its turn resumed or carried on from the checkpoint), or, with no trace
of it in the chat, closed with a plain error: never applied behind the user's back, never offered
again. Every answer a dead writer left open is closed (``message_end`` with ``finish_reason:
"interrupted"``), its text kept for ``/continue``.
"""

from __future__ import annotations

import logging

from lunark import protocol
from lunark.ids import new_id
from lunark.server.turns import Answer, TurnDriver
from lunark.store import ApprovalRecord, ChatRecord, OpenAnswer

__all__ = ["INTERRUPTED", "Recovery"]

logger = logging.getLogger(__name__)

_LOG_WINDOW = 256
"""Events read at a time when looking back through a chat's log for the start of a cut answer."""
INTERRUPTED = "The server writing this answer stopped before it was done; what it had written is kept."
"""The plain sentence of a ``message_end`` with ``finish_reason: "interrupted"`` (each client adds
how to go on: /continue, a Continue button)."""


class Recovery(TurnDriver):
    """The runner's recovery of cut answers and unapplied decisions."""

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
            self.claims.hold(record.approval_id, record.by or "user")
            answer = Answer(self.hub, chat)
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
                finish: protocol.FinishReason = "awaiting_approval" if paused else "interrupted"
                logger.warning("chat %s: closing answer %s that a stopped process left open (%s)",
                               chat_id, message_id, finish)
                if not started:  # the turn died before its answer began: one is begun, to be closed
                    await self.hub.publish(chat_id, owner, protocol.message_start(message_id, "assistant"))
                if finish == "interrupted" and not carrying_on:
                    try:
                        await self.agent.close_interrupted(chat_id, message_id, "".join(text), continued=continued)
                    except Exception:  # the answer still ends; only /continue is lost for it
                        logger.exception("chat %s: the cut answer %s was not kept in its graph", chat_id, message_id)
                await self._save_answer(chat_id, message_id, text, finish, continued=continued)
                await self.hub.publish(chat_id, owner, protocol.message_end(
                    message_id, finish, protocol.usage(len(text)),
                    message=INTERRUPTED if finish == "interrupted" else None))
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
            await self.hub.publish(chat.chat_id, chat.owner, protocol.error(
                "internal",
                f"Your decision on approval {record.approval_id} could not be applied after the server "
                "restarted; nothing was sent. Ask again to retry.",
            ))
        await self.store.finish_approval(record.approval_id)
