"""The users' audit chains: written by the areas that change what they record (approvals,
settlements, contacts), in the same transaction, and read back in order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from lunark.audit import GENESIS, AuditEntry, AuditRecord, canonical_json, outcome_entry
from lunark.store import statements as q
from lunark.store.operations import Lock, Operation, Query
from lunark.store.records import SettlementRecord
from lunark.store.sql._core import SqlCore

__all__ = ["AuditSql"]


class AuditSql(SqlCore):
    """The audit trail (``lunark.audit``): records linked in the transaction of what they record."""

    def _audit(self, entries: Sequence[AuditEntry]) -> Operation[None]:
        """Link ``entries`` into their users' chains, in the caller's transaction: a record exists
        exactly when what it describes was stored."""
        for address in sorted({entry.address.lower() for entry in entries}):
            yield Lock(f"audit:{address}")  # one writer per chain, across processes
        for entry in entries:
            address = entry.address.lower()
            head = yield Query(q.AUDIT_HEAD, {"address": address})
            seq, prev = (int(head[0][0]), str(head[0][1])) if head else (0, GENESIS)
            record = AuditRecord.link(
                seq=seq + 1, prev=prev, address=address, kind=entry.kind,
                at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), chat_id=entry.chat_id,
                approval_id=entry.approval_id, call_id=entry.call_id, fingerprint=entry.fingerprint,
                body=entry.body,
            )
            yield Query(q.INSERT_AUDIT, {**record.to_json(), "body": canonical_json(record.body)})

    def _audit_outcome(self, record: SettlementRecord, evidence: Mapping[str, Any]) -> Operation[None]:
        approval = yield Query(q.GET_APPROVAL, {"approval_id": record.approval_id})
        actions = q.approval(self.dialect, approval[0]).request.get("action_requests", []) if approval else []
        fingerprint = next((a.get("fingerprint") for a in actions if a.get("call_id") == record.call_id), None)
        yield from self._audit([outcome_entry(
            owner=record.owner, chat_id=record.chat_id, approval_id=record.approval_id, call_id=record.call_id,
            fingerprint=fingerprint, state=record.state, chain_id=record.chain_id, tx_hash=record.tx_hash,
            late=record.late, evidence=evidence,
        )])

    async def audit_records(self, address: str, *, after: int = 0, limit: int | None = None) -> list[AuditRecord]:
        rows = await self._fetch(q.AUDIT_RECORDS, {
            "address": address.lower(), "after": after, "limit": self.dialect.no_limit if limit is None else limit,
        })
        return [
            AuditRecord(seq=int(r[0]), address=r[1], kind=r[2], at=r[3], chat_id=r[4], approval_id=r[5], call_id=r[6],
                        fingerprint=r[7], body=json.loads(r[8]), prev=r[9], hash=r[10])
            for r in rows
        ]
