"""Approvals: written before they are shown, claimed once, expiring; each offer and decision is
audited in its own transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from lunark.audit import card_entries, decision_entries
from lunark.store import statements as q
from lunark.store.dialect import dumps
from lunark.store.operations import Operation, Query
from lunark.store.records import ApprovalRecord
from lunark.store.sql._audit import AuditSql

__all__ = ["ApprovalsSql"]


class ApprovalsSql(AuditSql):
    """Approvals as they were shown, and their decisions claimed once."""

    async def put_approval(self, record: ApprovalRecord) -> None:
        d = self.dialect
        params = {
            "approval_id": record.approval_id, "chat_id": record.chat_id, "owner": record.owner.lower(),
            "state": record.state, "request": dumps(record.request), "proposals": dumps(record.proposals),
            "expires_at": d.when(record.expires_at),
            "decisions": None if record.decisions is None else dumps(record.decisions), "by": record.by,
            "now": d.now(),
        }

        def put() -> Operation[None]:
            stored = yield Query(q.PUT_APPROVAL, params)
            if stored and record.state == "pending":  # offered now, not a copy written again
                yield from self._audit(card_entries(record.owner, record.chat_id, {
                    **record.request, "approval_id": record.approval_id,
                }))

        await self._perform(put(), transaction=True)


    async def _approvals(self, sql: str, params: Mapping[str, Any]) -> list[ApprovalRecord]:
        return [q.approval(self.dialect, row) for row in await self._fetch(sql, params)]

    async def get_approval(self, approval_id: str) -> ApprovalRecord | None:
        found = await self._approvals(q.GET_APPROVAL, {"approval_id": approval_id})
        return found[0] if found else None

    async def claim_approval(
        self, approval_id: str, decisions: Sequence[Mapping[str, Any]], by: str
    ) -> ApprovalRecord | None:
        params = {"approval_id": approval_id, "decisions": dumps(list(decisions)), "by": by, "now": self.dialect.now()}

        def claim() -> Operation[ApprovalRecord | None]:
            rows = yield Query(q.CLAIM_APPROVAL, params)
            if not rows:
                return None
            record = q.approval(self.dialect, rows[0])
            yield from self._audit(decision_entries(
                record.owner, record.chat_id, approval_id, record.request, list(decisions), by,
            ))
            return record

        return await self._perform(claim(), transaction=True)

    async def finish_approval(self, approval_id: str) -> None:
        await self._fetch(q.FINISH_APPROVAL, {"approval_id": approval_id, "now": self.dialect.now()})

    async def reopen_approval(self, approval_id: str) -> None:
        await self._fetch(q.REOPEN_APPROVAL, {"approval_id": approval_id, "now": self.dialect.now()})

    async def approvals(self, states: Sequence[str]) -> list[ApprovalRecord]:
        return await self._approvals(q.APPROVALS_IN, {"states": dumps(list(states))})

    async def due_approvals(
        self, now: datetime, *, limit: int = 100, after: ApprovalRecord | None = None
    ) -> list[ApprovalRecord]:
        params = {"now": self.dialect.when(now), "limit": limit}
        if after is None:
            return await self._approvals(q.DUE_APPROVALS, params)
        return await self._approvals(q.DUE_APPROVALS_AFTER, {
            **params, "after_expires_at": self.dialect.when(after.expires_at), "after_id": after.approval_id,
        })

    async def next_expiry(self) -> datetime | None:
        rows = await self._fetch(q.NEXT_EXPIRY)
        return self.dialect.time(rows[0][0]) if rows and rows[0][0] is not None else None
