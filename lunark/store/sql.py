"""The ``Store`` written once in SQL, over a dialect and an executor.

``SqlStore`` implements every method of the Protocol with the statements of
``lunark.store.statements``. A backend (``SqliteStore``, ``PostgresStore``) supplies what differs:
its dialect, how one statement runs (``_fetch``), how an operation of several runs whole
(``_perform``), the event log's appends (group commit) and its ``last_seq``.

An operation of several statements is a generator (``lunark.store.operations``), written once
and driven by each backend in its own way, whole, in a transaction when asked.
"""

from __future__ import annotations

import asyncio
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any, ClassVar, TypeVar, cast

from lunark.audit import (
    GENESIS,
    AuditEntry,
    AuditRecord,
    canonical_json,
    card_entries,
    contact_entry,
    decision_entries,
    outcome_entry,
)
from lunark.chain.types import rescale_up
from lunark.chain.validation import parse_address
from lunark.contacts import check_label
from lunark.errors import InvalidInput, LunarkError, NotFound
from lunark.ids import new_id
from lunark.store import statements as q
from lunark.store.dialect import Conflict, Dialect, dumps, refused
from lunark.store.eventlog import appended
from lunark.store.operations import Lock, Operation, Query, Row
from lunark.store.records import (
    FINAL_STATES,
    ApprovalRecord,
    ChatRecord,
    ContactRecord,
    EventRecord,
    MessageRecord,
    OpenAnswer,
    Role,
    SettlementRecord,
    SpendEntry,
    TransactionRecord,
)

__all__ = ["SqlStore"]

_T = TypeVar("_T")


class SqlStore(ABC):
    """Every ``Store`` method but the event log's appends, once for both databases."""

    dialect: ClassVar[Dialect]
    LAST_SEQ: ClassVar[str]
    """The chat's latest seq (``:chat_id``): where each database keeps it differs."""
    health_timeout: ClassVar[float | None] = None
    driver_errors: ClassVar[tuple[type[BaseException], ...]] = ()
    """What the driver raises when the database does not answer (``healthy`` says ``False``)."""

    @abstractmethod
    async def _fetch(self, sql: str, params: Mapping[str, Any] = {}) -> list[Row]:
        """Run one statement on its own; its rows (none for one that returns none)."""

    @abstractmethod
    async def _perform(self, operation: Operation[_T], *, transaction: bool = False) -> _T:
        """Run ``operation`` whole on one connection (in one transaction with ``transaction``):
        a cancelled caller stops waiting, the operation goes on."""

    @abstractmethod
    def append_events_soon(
        self, chat_id: str, events: Sequence[tuple[str, dict[str, Any]]],
        done: Callable[[list[EventRecord] | Exception], None],
    ) -> None:
        """``append_events`` without awaiting: ``done`` gets the records (or the error) on the event
        loop once they are committed, each with the JSON that was logged as its ``text``. Appends
        are answered in the order they were made.

        Raises at once what refuses the events before anything is logged (unserializable payloads,
        a closed store)."""

    @abstractmethod
    async def close(self) -> None:
        """Finish the operations already asked for, then close. Safe to call twice."""

    # chats

    async def create_chat(
        self, owner: str, chain_id: int, *, chat_id: str | None = None, title: str | None = None
    ) -> ChatRecord:
        record = ChatRecord(
            chat_id=chat_id or new_id("chat_"), owner=owner.lower(), chain_id=chain_id,
            created_at=datetime.now(UTC), title=title,
        )
        try:
            await self._fetch(q.INSERT_CHAT, {
                "chat_id": record.chat_id, "owner": record.owner, "chain_id": chain_id, "title": title,
                "created_at": self.dialect.when(record.created_at),
            })
        except Conflict as exc:
            raise InvalidInput(f"A chat {record.chat_id!r} already exists.", chat_id=record.chat_id) from exc
        return record

    async def get_chat(self, chat_id: str) -> ChatRecord | None:
        rows = await self._fetch(q.GET_CHAT, {"chat_id": chat_id})
        return q.chat(self.dialect, rows[0]) if rows else None

    async def list_chats(self, owner: str, *, limit: int = 100) -> list[ChatRecord]:
        rows = await self._fetch(q.LIST_CHATS, {"owner": owner.lower(), "limit": limit})
        return [q.chat(self.dialect, row) for row in rows]

    async def _update_chat(self, sql: str, chat_id: str, value: Any) -> None:
        if not await self._fetch(sql, {"chat_id": chat_id, "value": value}):
            raise NotFound(f"No chat {chat_id!r}.", chat_id=chat_id)

    async def set_chat_network(self, chat_id: str, chain_id: int) -> None:
        await self._update_chat(q.SET_CHAT_NETWORK, chat_id, chain_id)

    async def set_chat_title(self, chat_id: str, title: str) -> None:
        await self._update_chat(q.SET_CHAT_TITLE, chat_id, title)

    # messages

    async def add_message(
        self,
        chat_id: str,
        role: str,
        content: str,
        *,
        message_id: str | None = None,
        client_message_id: str | None = None,
        finish_reason: str | None = None,
    ) -> tuple[MessageRecord, bool]:
        if role not in ("user", "assistant"):
            raise InvalidInput(f"A message's role is 'user' or 'assistant', not {role!r}.", role=role)
        record = MessageRecord(
            message_id=message_id or new_id("msg_"), chat_id=chat_id, role=cast(Role, role),
            content=content, client_message_id=client_message_id, finish_reason=finish_reason,
            created_at=datetime.now(UTC),
        )
        params = {
            "message_id": record.message_id, "chat_id": chat_id, "role": role, "content": content,
            "client_message_id": client_message_id, "finish_reason": finish_reason,
            "created_at": self.dialect.when(record.created_at),
        }

        def insert() -> Operation[tuple[MessageRecord, bool]]:
            try:
                inserted = yield Query(q.INSERT_MESSAGE, params)
            except Conflict as exc:
                raise refused(exc, chat_id) from exc
            if inserted:
                return record, True
            # The unique index refused a second copy (a concurrent one waited for the first's commit).
            rows = yield Query(q.MESSAGE_BY_CLIENT_ID, {"chat_id": chat_id, "client_message_id": client_message_id})
            return q.message(self.dialect, rows[0]), False

        return await self._perform(insert())

    async def list_messages(self, chat_id: str) -> list[MessageRecord]:
        rows = await self._fetch(q.LIST_MESSAGES, {"chat_id": chat_id})
        return [q.message(self.dialect, row) for row in rows]

    # the event log

    async def append_events(
        self, chat_id: str, events: Sequence[tuple[str, dict[str, Any]]]
    ) -> list[EventRecord]:
        """Number and log ``events``. Appends are group-committed in the order they were asked for:
        the ones that arrive while a batch commits go together in the next transaction, so the log
        costs one commit per batch, not per event."""
        return await appended(self.append_events_soon, chat_id, events)

    async def append_event(self, chat_id: str, type: str, payload: dict[str, Any]) -> EventRecord:
        return (await self.append_events(chat_id, [(type, payload)]))[0]

    async def events_after(
        self, chat_id: str, after_seq: int, *, limit: int | None = None
    ) -> list[EventRecord]:
        rows = await self._fetch(q.EVENTS_AFTER, {
            "chat_id": chat_id, "after": after_seq, "limit": self.dialect.no_limit if limit is None else limit,
        })
        return [
            EventRecord(chat_id=chat_id, seq=row[0], type=row[1], payload=json.loads(row[2]), ts=row[3])
            for row in rows
        ]

    async def last_seq(self, chat_id: str) -> int:
        rows = await self._fetch(self.LAST_SEQ, {"chat_id": chat_id})
        return int(rows[0][0]) if rows else 0

    # transactions

    async def record_tx_update(
        self, chat_id: str, call_id: str, update: Mapping[str, Any]
    ) -> TransactionRecord:
        try:
            tx_hash = str(update["tx_hash"]).lower()
            chain_id = int(update["chain_id"])
            status = str(update["status"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"A transaction update needs tx_hash, chain_id and status ({exc!r}).") from exc
        entry = dumps({**update, "ts": update.get("ts", time.time())})
        try:
            rows = await self._fetch(q.RECORD_TX_UPDATE, {
                "chat_id": chat_id, "tx_hash": tx_hash, "call_id": call_id, "chain_id": chain_id,
                "status": status, "entry": entry, "now": self.dialect.now(),
            })
        except Conflict as exc:
            raise refused(exc, chat_id) from exc
        return q.transaction(self.dialect, rows[0])

    async def list_transactions(self, chat_id: str) -> list[TransactionRecord]:
        rows = await self._fetch(q.LIST_TRANSACTIONS, {"chat_id": chat_id})
        return [q.transaction(self.dialect, row) for row in rows]

    # the spend ledger (lunark.tools.policy.SpendLedger), in base units

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

    # approvals

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

    async def _text(self, sql: str, params: Mapping[str, Any]) -> str | None:
        """The one value the statement returns, as text, if it returns a row."""
        rows = await self._fetch(sql, params)
        return str(rows[0][0]) if rows else None

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

    # answers being written (Runner.recover_answers)

    async def open_answer(self, chat_id: str, message_id: str, *, since_seq: int = 0) -> None:
        await self._fetch(q.OPEN_ANSWER, {"chat_id": chat_id, "message_id": message_id, "since_seq": since_seq})

    async def close_answer(self, chat_id: str) -> None:
        await self._fetch(q.CLOSE_ANSWER, {"chat_id": chat_id})

    async def open_answers(self, chat_id: str | None = None) -> list[OpenAnswer]:
        rows = await (self._fetch(q.OPEN_ANSWERS) if chat_id is None
                      else self._fetch(q.OPEN_ANSWERS_OF, {"chat_id": chat_id}))
        return [OpenAnswer(chat_id=str(r[0]), message_id=str(r[1]), since_seq=int(r[2])) for r in rows]

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

    # settlements

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

    # the audit trail (lunark.audit)

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

    async def bind_hash(self, settlement_id: str, tx_hash: str) -> str:
        rows = await self._fetch(q.BIND_HASH, {"tx_hash": tx_hash.lower(), "settlement_id": settlement_id})
        return str(rows[0][0])

    async def hash_settling(self, tx_hash: str) -> str | None:
        return await self._text(q.HASH_SETTLING, {"tx_hash": tx_hash.lower()})

    async def nonce_settling(self, chain_id: int, owner: str, nonce: int, settlement_id: str) -> str | None:
        return await self._text(q.NONCE_SETTLING, {
            "chain_id": chain_id, "owner": owner.lower(), "nonce": nonce, "settlement_id": settlement_id,
        })

    async def settlements(self, *, chat_id: str | None = None, unfinished: bool = False) -> list[SettlementRecord]:
        where = ["chat_id = :chat_id"] if chat_id is not None else []
        if unfinished:
            where.append(q.UNFINISHED)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = await self._fetch(q.SETTLEMENTS + clause + q.SETTLEMENTS_ORDER, {"chat_id": chat_id})
        return [q.settlement(self.dialect, row) for row in rows]

    # sign-in

    async def add_nonce(self, nonce: str, expires_at: datetime) -> None:
        try:
            await self._fetch(q.ADD_NONCE, {"nonce": nonce, "expires_at": self.dialect.when(expires_at)})
        except Conflict as exc:
            raise InvalidInput("That nonce was already issued.") from exc

    async def consume_nonce(self, nonce: str, now: datetime) -> bool:
        when = self.dialect.when(now)
        rows = await self._fetch(q.CONSUME_NONCE, {"nonce": nonce, "now": when})
        return any(row[0] == nonce and row[1] > when for row in rows)

    async def add_session(self, token_hash: str, address: str, expires_at: datetime) -> None:
        try:
            await self._fetch(q.ADD_SESSION, {
                "token_hash": token_hash, "address": address, "expires_at": self.dialect.when(expires_at),
            })
        except Conflict as exc:
            raise InvalidInput("A session with that token already exists.") from exc

    async def get_session(self, token_hash: str, now: datetime) -> str | None:
        return await self._text(q.GET_SESSION, {"token_hash": token_hash, "now": self.dialect.when(now)})

    async def delete_session(self, token_hash: str) -> str | None:
        return await self._text(q.DELETE_SESSION, {"token_hash": token_hash})

    async def delete_sessions(self, address: str) -> int:
        return len(await self._fetch(q.DELETE_SESSIONS, {"address": address.lower()}))

    async def stored_sessions(self, token_hashes: Sequence[str]) -> set[str]:
        rows = await self._fetch(q.STORED_SESSIONS, {"token_hashes": dumps(list(token_hashes))})
        return {str(row[0]) for row in rows}

    # contacts (lunark.contacts)

    async def put_contact(self, owner: str, label: str, address: str) -> ContactRecord:
        label = check_label(label)
        checked = parse_address(address, field="The contact's address")
        owner = owner.lower()
        params = {
            "owner": owner, "label_key": label.lower(), "label": label, "address": checked,
            "created_at": self.dialect.when(datetime.now(UTC)),
        }

        def put() -> Operation[ContactRecord]:
            # Under the owner's lock: two saves of one address under two labels cannot both rename it.
            yield Lock(f"contacts:{owner}")
            held = yield Query(q.GET_CONTACT, params)
            renamed = yield Query(q.UNLABEL_ADDRESS, params)
            if renamed:  # a rename keeps when the address was first saved
                params["created_at"] = renamed[0][0]
            rows = yield Query(q.PUT_CONTACT, params)
            # What the save replaced: the label's earlier address (or spelling), the address's earlier label.
            previous = [{"label": str(row[1]), "address": str(row[2])} for row in held
                        if (row[1], row[2]) != (label, checked)]
            previous += [{"label": str(row[1]), "address": checked} for row in renamed]
            if previous or not held:  # saving what is already saved changes nothing, and is not recorded
                yield from self._audit([contact_entry(owner, "put", label, checked, previous)])
            return q.contact(self.dialect, rows[0])

        return await self._perform(put(), transaction=True)

    async def delete_contact(self, owner: str, label: str) -> bool:
        params = {"owner": owner.lower(), "label_key": label.strip().lower()}

        def delete() -> Operation[bool]:
            rows = yield Query(q.DELETE_CONTACT, params)
            for deleted, address in rows:
                yield from self._audit([contact_entry(owner, "delete", str(deleted), str(address))])
            return bool(rows)

        return await self._perform(delete(), transaction=True)

    async def list_contacts(self, owner: str) -> list[ContactRecord]:
        rows = await self._fetch(q.LIST_CONTACTS, {"owner": owner.lower()})
        return [q.contact(self.dialect, row) for row in rows]

    async def get_contact(self, owner: str, label: str) -> ContactRecord | None:
        rows = await self._fetch(q.GET_CONTACT, {"owner": owner.lower(), "label_key": label.strip().lower()})
        return q.contact(self.dialect, rows[0]) if rows else None

    async def healthy(self) -> bool:
        unanswered: tuple[type[BaseException], ...] = (LunarkError, TimeoutError, OSError, ValueError,
                                                       *self.driver_errors)
        try:
            async with asyncio.timeout(self.health_timeout):
                return await self._fetch(q.HEALTH) == [(1,)]
        except unanswered:
            return False
