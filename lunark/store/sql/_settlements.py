"""Settlements (``lunark.settlement``) and the spend ledger that counts them against the daily caps."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from lunark.chain.types import rescale_up
from lunark.errors import InvalidInput, NotFound
from lunark.store import statements as q
from lunark.store.dialect import dumps
from lunark.store.operations import Lock, Operation, Query
from lunark.store.records import FINAL_STATES, SettlementRecord, SpendEntry
from lunark.store.sql._audit import AuditSql
from lunark.store.sql._core import SqlCore

__all__ = ["LedgerSql", "SettlementsSql"]


class SettlementsSql(AuditSql):
    """Settlements, written ahead of every irreversible step; an outcome is audited as it is stored."""

    def _stored_settlement(self, settlement_id: str) -> Operation[SettlementRecord]:
        rows = yield Query(q.GET_SETTLEMENT, {"settlement_id": settlement_id})
        if not rows:
            raise NotFound(f"No settlement {settlement_id!r}.", settlement_id=settlement_id)
        return q.settlement(self.dialect, rows[0])

    async def open_settlement(self, record: SettlementRecord) -> SettlementRecord:
        d = self.dialect
        params = {
            "settlement_id": record.settlement_id, "approval_id": record.approval_id, "call_id": record.call_id,
            "chat_id": record.chat_id, "owner": record.owner.lower(), "chain_id": record.chain_id,
            "state": record.state, "done": record.done, "prepared": dumps(record.prepared),
            "decision": dumps(record.decision), "expires_at": d.when(record.expires_at), "tx_hash": record.tx_hash,
            "nonce": record.nonce, "raw_tx": record.raw_tx, "first_block": record.first_block, "late": record.late,
            "history": dumps(record.history), "now": d.now(),
        }

        def insert() -> Operation[SettlementRecord]:
            yield Query(q.OPEN_SETTLEMENT, params)
            return (yield from self._stored_settlement(record.settlement_id))

        return await self._perform(insert())

    async def get_settlement(self, settlement_id: str) -> SettlementRecord | None:
        rows = await self._fetch(q.GET_SETTLEMENT, {"settlement_id": settlement_id})
        return q.settlement(self.dialect, rows[0]) if rows else None

    async def advance_settlement(
        self, settlement_id: str, state: str, evidence: Mapping[str, Any], *, done: bool | None = None,
        **fields: Any,
    ) -> SettlementRecord:
        unknown = set(fields) - q.SETTLEMENT_FIELDS
        if unknown:
            raise InvalidInput(f"A settlement has no fields {sorted(unknown)}.")
        sql = q.ADVANCE_SETTLEMENT.replace("/*fields*/", "".join(f", {name} = :{name}" for name in sorted(fields)))
        params = {
            **fields, "settlement_id": settlement_id, "state": state,
            "done": state in FINAL_STATES if done is None else done,
            "entry": dumps({"state": state, "ts": round(time.time(), 3), **evidence}), "now": self.dialect.now(),
        }

        def advance() -> Operation[SettlementRecord]:
            before = yield Query(q.GET_SETTLEMENT, {"settlement_id": settlement_id})
            rows = yield Query(sql, params)
            if not rows:
                return (yield from self._stored_settlement(settlement_id))  # done already: it stays as it is
            record = q.settlement(self.dialect, rows[0])
            if record.final and not (before and q.settlement(self.dialect, before[0]).final):
                yield from self._audit_outcome(record, evidence)
            return record

        return await self._perform(advance(), transaction=True)

    async def bind_hash(self, settlement_id: str, tx_hash: str) -> str:
        rows = await self._fetch(q.BIND_HASH, {"tx_hash": tx_hash.lower(), "settlement_id": settlement_id})
        return str(rows[0][0])

    async def hash_settling(self, tx_hash: str) -> str | None:
        return await self._text(q.HASH_SETTLING, {"tx_hash": tx_hash.lower()})

    async def bind_transaction(
        self, settlement_id: str, tx_hash: str, *, chain_id: int, owner: str, nonce: int
    ) -> tuple[str, str | None]:
        params = {"tx_hash": tx_hash.lower(), "settlement_id": settlement_id, "chain_id": chain_id,
                  "owner": owner.lower(), "nonce": nonce}

        def bind() -> Operation[tuple[str, str | None]]:
            bound = str((yield Query(q.BIND_HASH, params))[0][0])
            if bound != settlement_id:
                return bound, None
            other = yield Query(q.NONCE_SETTLING, params)
            return bound, str(other[0][0]) if other else None

        return await self._perform(bind())

    async def settlements(self, *, chat_id: str | None = None, unfinished: bool = False) -> list[SettlementRecord]:
        where = ["chat_id = :chat_id"] if chat_id is not None else []
        if unfinished:
            where.append(q.UNFINISHED)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = await self._fetch(q.SETTLEMENTS + clause + q.SETTLEMENTS_ORDER, {"chat_id": chat_id})
        return [q.settlement(self.dialect, row) for row in rows]


class LedgerSql(SqlCore):
    """The spend ledger, keyed by ``settlement_id`` (``statements.ledger_key``), in base units."""

    def _counted(
        self, address: str, symbol: str, decimals: int, day: date, now: Any, skip: str = ""
    ) -> Operation[int]:
        rows = yield Query(q.COUNTED, {
            "address": address.lower(), "symbol": symbol.upper(), "day": self.dialect.day(day), "skip": skip,
            "now": now,
        })
        return sum(rescale_up(int(amount), places, decimals) for amount, places in rows)

    def _reserve(self, entry: SpendEntry, cap: int | None, now: Any, *, hold: bool) -> Operation[int | None]:
        """Count, compare with ``cap``, reserve: in one transaction, under the lock of the ledger's
        ``(address, symbol, day)``, so two processes cannot both fit under the same cap."""
        d = self.dialect
        key = q.ledger_key(entry.settlement_id, entry.moved)
        yield Lock(f"ledger:{entry.address.lower()}:{entry.symbol.upper()}:{entry.day.isoformat()}")
        rows = yield Query(q.LEDGER_ENTRY, {"key": key})
        row = rows[0] if rows else None
        live = row is not None and (
            row[0] == "committed" or (row[0] == "reserved" and (row[1] is None or row[1] > now))
        )
        if not live and cap is not None:
            counted = yield from self._counted(entry.address, entry.symbol, entry.decimals, entry.day, now, skip=key)
            if counted + entry.amount > cap:
                return counted
        expires = None if hold or entry.expires_at is None else d.when(entry.expires_at)
        if row is None:
            yield Query(q.INSERT_RESERVATION, {
                "key": key, "address": entry.address.lower(), "symbol": entry.symbol.upper(),
                "decimals": entry.decimals, "amount": d.amount(entry.amount), "day": d.day(entry.day),
                "expires_at": expires, "now": d.now(),
            })
        elif row[0] != "committed":
            yield Query(q.RENEW_RESERVATION, {"key": key, "expires_at": expires, "now": d.now()})
        return None

    async def counted(self, address: str, symbol: str, decimals: int, day: date, *, now: datetime) -> int:
        return await self._perform(self._counted(address, symbol, decimals, day, self.dialect.when(now)))

    async def reserve(self, entry: SpendEntry, cap: int | None, *, now: datetime) -> int | None:
        return await self._perform(self._reserve(entry, cap, self.dialect.when(now), hold=False), transaction=True)

    async def hold(self, entry: SpendEntry, cap: int | None, *, now: datetime) -> int | None:
        return await self._perform(self._reserve(entry, cap, self.dialect.when(now), hold=True), transaction=True)

    async def commit(self, settlement_id: str, tx_hash: str, *, moved: str = "") -> None:
        await self._fetch(q.COMMIT_SPEND, {
            "key": q.ledger_key(settlement_id, moved), "tx_hash": tx_hash.lower(), "now": self.dialect.now(),
        })

    async def release(self, settlement_id: str) -> None:
        await self._fetch(q.RELEASE_SPEND, {"key": q.ledger_key(settlement_id), "now": self.dialect.now()})
