"""Decisions on a chat's approval, as the runner applies them: each exactly once (claimed through
``lunark.approvals``), a decision that comes while the asking turn still ends waits for it, an
approval whose time ran out is rejected by ``timeout`` (fail closed), one the user moved on from is
set aside (``superseded``), and a decided turn that failed before it applied anything is reopened.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from contextlib import suppress
from typing import Any

from lunark import protocol
from lunark.approvals import Approval, not_waiting
from lunark.errors import AlreadyDecided, ApprovalExpired, Busy, LunarkError, NoPendingApproval
from lunark.server.turns import DECISION_POLL, Answer, TurnDriver, prepend
from lunark.store import ApprovalRecord, ChatRecord

__all__ = ["Decisions"]

logger = logging.getLogger(__name__)

_DECISION_WAIT = 10.0
"""Seconds a decision waits for another process's turn of the chat to end (it is sending its last
events after ``pending_approval``)."""


class Decisions(TurnDriver):
    """The runner's decisions and expiries."""

    async def _supersede(self, chat: ChatRecord, pending: dict[str, Any]) -> None:
        """Reject the waiting approval because the user moved on; its turn ends before the new one starts."""
        rejects = Approval.of(pending).rejections("Set aside: you sent a new message instead of deciding.")
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
        self.claims.check(approval_id)
        self.claims.hold(approval_id, by)  # claimed: a concurrent decision now gets already_decided
        try:
            closing = self._tasks.get(chat.chat_id)
            if closing is not None and self._asked.get(chat.chat_id) == approval_id:
                # The turn that asked for this approval is still sending its last events (status,
                # message_end). A client may decide as soon as it sees pending_approval: the decision
                # waits for that turn to end instead of failing with no_pending_approval.
                await asyncio.wait({closing})
                if self._tasks.get(chat.chat_id) is closing:
                    del self._tasks[chat.chat_id]
                    self._turn_over(chat.chat_id)
            if self.running(chat.chat_id):
                raise not_waiting(approval_id)
        except BaseException:
            self.claims.drop(approval_id)
            raise
        self._asked.pop(chat.chat_id, None)
        self._reserved.add(chat.chat_id)
        claimed = False
        try:
            if self.turns is not None:
                await self._claim_for_decision(chat.chat_id, approval_id)
                claimed = True
            answer = Answer(self.hub, chat)
            events = self.agent.resume(chat.chat_id, approval_id, decisions, by=by, on_token=answer.token)
            first = await anext(events)  # validation happens before the first event
        except ApprovalExpired:
            self.claims.drop(approval_id)
            self._reserved.discard(chat.chat_id)
            if claimed:
                self._release_turn(chat.chat_id)
            await self.expire(chat, approval_id)
            raise
        except BaseException:
            self.claims.drop(approval_id)
            self._reserved.discard(chat.chat_id)
            if claimed:
                self._release_turn(chat.chat_id)
            raise
        self.claims.trim()
        self._resumed[chat.chat_id] = approval_id
        self._start(chat, prepend(first, events), answer, resumed=approval_id)
        self._reserved.discard(chat.chat_id)

    async def _claim_for_decision(self, chat_id: str, approval_id: str) -> None:
        """Claim the chat for the turn a decision resumes. The turn that asked may still be sending
        its last events on another process: wait for it, unless the approval stops being pending
        meanwhile (decided through another process: ``already_decided`` at once)."""
        assert self.turns is not None
        deadline = time.monotonic() + _DECISION_WAIT
        while not await self.turns.acquire_turn(chat_id):
            refused = await self.claims.decided_elsewhere(approval_id)
            if refused is not None:
                raise refused
            if time.monotonic() > deadline:
                raise Busy("Another turn of this chat is running; decide again in a moment.", chat_id=chat_id)
            await asyncio.sleep(DECISION_POLL)

    async def expire(self, chat: ChatRecord, approval_id: str) -> None:
        """Resolve an approval whose time ran out as rejected (``by: "timeout"``)."""
        if approval_id in self.claims or self.running(chat.chat_id):
            return
        if not await self._claim_turn(chat.chat_id):
            return  # a turn of this chat runs on another process; the next sweep looks again
        if self.running(chat.chat_id) or approval_id in self.claims:
            self._release_turn(chat.chat_id)
            return
        try:
            pending = await self.agent.pending_approval(chat.chat_id)
        except BaseException:
            self._release_turn(chat.chat_id)
            raise
        if pending is None or pending["approval_id"] != approval_id or approval_id in self.claims:
            try:
                if approval_id not in self.claims:
                    await self._set_aside(approval_id)
            finally:
                self._release_turn(chat.chat_id)
            return
        self.claims.hold(approval_id, "timeout")
        self._asked.pop(chat.chat_id, None)
        self._reserved.add(chat.chat_id)
        answer = Answer(self.hub, chat)
        try:
            events = self.agent.expire(chat.chat_id, approval_id, on_token=answer.token)
            first = await anext(events)
        except BaseException:
            self.claims.drop(approval_id)
            self._reserved.discard(chat.chat_id)
            self._release_turn(chat.chat_id)
            raise
        self._resumed[chat.chat_id] = approval_id
        self._start(chat, prepend(first, events), answer)
        self._reserved.discard(chat.chat_id)

    async def check_pending(self, chat: ChatRecord) -> dict[str, Any] | None:
        """The pending approval, expiring it now if its time ran out (after a restart, say)."""
        pending = await self.agent.pending_approval(chat.chat_id)
        if pending is None:
            return None
        if Approval.of(pending).seconds_left() <= 0:
            with suppress(LunarkError):
                await self.expire(chat, pending["approval_id"])
            return None
        self._schedule_expiry(chat, pending)
        return pending

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
            self.claims.drop(approval_id)
            self._schedule_expiry(chat, pending)
            await self.hub.publish(chat.chat_id, chat.owner, protocol.pending_approval(pending))

    def _schedule_expiry(self, chat: ChatRecord, approval: dict[str, Any]) -> None:
        self.clock.due_at(Approval.of(approval).expires_at)

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
        if await self.claims.set_aside(approval_id):
            logger.info("approval %s no longer waits in its chat; marked expired", approval_id)
