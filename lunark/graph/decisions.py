"""Decisions applied to a chat's graph: resume with the user's decisions (claimed once, through
``lunark.approvals``), expire as a rejection, carry on a decided turn a restart cut, and record a
wallet's late hash. ``Agent`` is one, with the graph, store and settlements they use.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from contextlib import aclosing, suppress
from typing import Any, cast

from langgraph.types import Command
from pydantic import ValidationError

from lunark.approvals import Approval, Claims, lapsed, stale_refusal
from lunark.chain.client import ChainClients
from lunark.chain.types import prepared_from_state
from lunark.errors import LunarkError
from lunark.graph.approval import ApproveDecision, validate_decisions
from lunark.graph.queries import ChatQueries, pending_of
from lunark.graph.state import AgentState
from lunark.graph.turn import AgentEvent
from lunark.settlement import Settlements
from lunark.store import ApprovalRecord, Store

__all__ = ["AgentDecisions"]


class AgentDecisions(ChatQueries):
    """An approval's decision applied to the chat's graph, exactly once."""

    _claims: Claims | None
    clients: ChainClients

    @property
    @abstractmethod
    def store(self) -> Store: ...

    @property
    @abstractmethod
    def settlements(self) -> Settlements: ...

    @property
    def claims(self) -> Claims:
        """Who decided which approval, claimed once (the server's runner holds its guard here too)."""
        assert self._claims is not None, "await agent.ready() first"
        return self._claims

    @abstractmethod
    def _run(
        self, thread_id: str, graph_input: AgentState | Command[Any] | None, *, message_id: str | None = None,
        resuming: Mapping[str, Any] | None = None, on_token: Callable[[str], None] | None = None,
    ) -> AsyncGenerator[AgentEvent]: ...

    async def resume(
        self,
        thread_id: str,
        approval_id: str,
        decisions: Sequence[Any],
        *,
        by: str = "user",
        claimed: bool = False,
        on_token: Callable[[str], None] | None = None,
    ) -> AsyncIterator[AgentEvent]:
        """Apply the user's decisions to the pending approval, exactly once, and continue the turn.

        The decision is claimed in the store before the graph resumes, so no crash can apply it
        twice or offer the approval again. ``claimed`` resumes with a decision claimed earlier (the
        server's recovery after a restart). Raises ``NoPendingApproval``, ``AlreadyDecided``,
        ``ApprovalExpired`` or ``InvalidDecision`` before anything runs.
        """
        store = await self.ready()
        lock = self._lock(thread_id)
        async with lock:
            pending = pending_of(await self.graph.aget_state(self._config(thread_id)))
            record = await store.get_approval(approval_id)
            if pending is None or pending["approval_id"] != approval_id:
                snapshot = await self.graph.aget_state(self._config(thread_id))
                raise stale_refusal(approval_id, record, (snapshot.values or {}).get("resolved", []))
            approval = Approval.of(pending, chat_id=thread_id)
            if by == "user" and not claimed and (
                approval.expired() or (record is not None and record.state == "expired")
            ):
                raise lapsed(approval, await self.record_late(thread_id, approval_id, decisions))
            checked = validate_decisions(pending, decisions)
            self._read_ahead(approval, checked)
            if record is None and not claimed:
                # Paused before its approval was stored (a crash in between, or an older version):
                # store it now, so this decision is claimed durably like any other.
                await self._record_pending(thread_id, pending)
                record = await store.get_approval(approval_id)
            if record is not None and not claimed:
                await self.claims.claim(approval_id, checked, by)
            resume: Command[Any] = Command(resume={"decisions": checked, "by": by})
            async with aclosing(self._run(thread_id, resume, resuming=pending, on_token=on_token)) as events:
                async for event in events:
                    if event["type"] == "message_end" and record is not None:
                        # Applied (the turn that resumed it ran): recovery leaves it alone from now on.
                        # Before message_end, so a client that sees the turn end sees the chat free.
                        await store.finish_approval(approval_id)
                    yield event

    def _read_ahead(self, approval: Approval, decisions: Sequence[Mapping[str, Any]]) -> None:
        """A wallet's transaction is read from its node while the decision is claimed and the graph
        resumes, not after: its settlement asks for it first thing."""
        for request, decision in zip(approval.action_requests, decisions, strict=False):
            tx = request.get("tx")
            if decision.get("type") != "approve" or not decision.get("tx_hash") or not isinstance(tx, Mapping):
                continue
            with suppress(LunarkError, KeyError, ValueError):  # only a head start: the settlement reads it anyway
                self.clients.get(int(str(tx["chain_id"]), 0)).read_ahead(str(decision["tx_hash"]))

    async def carry_on(
        self, thread_id: str, *, approval_id: str | None = None, on_token: Callable[[str], None] | None = None
    ) -> AsyncIterator[AgentEvent]:
        """Run a turn that a restart interrupted after its decision was applied, from its checkpoint
        (the execute step finds its settlements already written and waits for their outcome).
        ``approval_id``: the claimed decision this turn applies, finished like ``resume`` finishes it."""
        store = await self.ready()
        async with self._lock(thread_id), aclosing(self._run(thread_id, None, on_token=on_token)) as events:
            async for event in events:
                if event["type"] == "message_end" and approval_id is not None:
                    await store.finish_approval(approval_id)
                yield event

    async def expire(
        self, thread_id: str, approval_id: str, *, on_token: Callable[[str], None] | None = None
    ) -> AsyncIterator[AgentEvent]:
        """Resolve an expired approval as rejected (``by: "timeout"``): fail closed."""
        pending = await self.pending_approval(thread_id)
        rejects = Approval.of(pending).rejections("The approval expired.") if pending else []
        resumed = cast(
            "AsyncGenerator[AgentEvent]",
            self.resume(thread_id, approval_id, rejects, by="timeout", on_token=on_token),
        )
        async with aclosing(resumed) as events:
            async for event in events:
                yield event

    async def record_late(self, thread_id: str, approval_id: str, decisions: Sequence[Any]) -> bool:
        """A wallet's hash that arrives after the approval expired is still checked and followed:
        funds that moved are never hidden, and count. Signed bytes that arrive late are never
        broadcast. True if any hash was taken."""
        await self.ready()
        record = await self.store.get_approval(approval_id)
        if record is None or record.chat_id != thread_id or not isinstance(decisions, Sequence):
            return False
        taken = False
        for item, decision in zip(record.proposals, decisions, strict=False):
            tx_hash = decision.get("tx_hash") if isinstance(decision, Mapping) else None
            prepared = item.get("proposal", {}).get("data", {}).get("prepared")
            if not isinstance(tx_hash, str) or not prepared or decision.get("type") != "approve":
                continue
            try:
                checked = ApproveDecision(type="approve", tx_hash=tx_hash).model_dump(exclude_none=True)
            except ValidationError:
                continue
            settlement = await self.settlements.open(
                approval_id=record.approval_id, call_id=item["call_id"], chat_id=thread_id,
                prepared=prepared_from_state(prepared), prepared_state=prepared, decision=checked,
                expires_at=record.expires_at, late=True,
            )
            self.settlements.start(settlement.settlement_id)
            taken = True
        return taken

    async def _record_pending(self, thread_id: str, approval: dict[str, Any]) -> None:
        """Durable before visible: the approval, with what each action executes, is stored before
        its event is sent (the graph's own checkpoint is committed by then too)."""
        snapshot = await self.graph.aget_state(self._config(thread_id))
        values = snapshot.values or {}
        await self.store.put_approval(ApprovalRecord(
            approval_id=approval["approval_id"], chat_id=thread_id, owner=str(values.get("user_address", "")),
            state="pending", request=approval, proposals=list(values.get("proposals") or []),
            expires_at=Approval.of(approval).expires_at, decisions=None, by=None,
        ))
