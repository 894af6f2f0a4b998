"""What Lunark keeps durably: chats, messages, the event log, transactions, spend, sign-in.

``Store`` is the one interface the server, the hub and the tools depend on.
``SqliteStore`` is the embedded default; a Postgres store implements the same
Protocol for deployments beyond one machine. The records it reads and writes are in
``lunark.store.records`` (and importable from here, as before).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

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

if TYPE_CHECKING:
    from lunark.audit import AuditRecord

__all__ = [
    "FINAL_STATES",
    "ApprovalRecord",
    "ChatRecord",
    "ContactRecord",
    "EventRecord",
    "MessageRecord",
    "OpenAnswer",
    "Role",
    "SettlementRecord",
    "SpendEntry",
    "Store",
    "TransactionRecord",
]


@runtime_checkable
class Store(Protocol):
    """Durable storage for the server; satisfies ``lunark.tools.policy.SpendLedger`` too.

    Datetimes passed in must be timezone-aware; datetimes returned are UTC.
    Methods that write to a chat raise ``lunark.errors.NotFound`` when the chat
    does not exist.
    """

    async def create_chat(
        self, owner: str, chain_id: int, *, chat_id: str | None = None, title: str | None = None
    ) -> ChatRecord:
        """Make a chat; a duplicate ``chat_id`` raises ``InvalidInput``."""
        ...

    async def get_chat(self, chat_id: str) -> ChatRecord | None:
        """The chat, or ``None``."""
        ...

    async def list_chats(self, owner: str, *, limit: int = 100) -> list[ChatRecord]:
        """The owner's chats, newest first (addresses compare case-insensitively)."""
        ...

    async def set_chat_network(self, chat_id: str, chain_id: int) -> None:
        """Move the chat to another network."""
        ...

    async def set_chat_title(self, chat_id: str, title: str) -> None:
        """Set the chat's title."""
        ...

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
        """Store a message; ``(record, created)``.

        The same ``(chat_id, client_message_id)`` again returns the first
        record and ``False``, also when both calls race.
        """
        ...

    async def list_messages(self, chat_id: str) -> list[MessageRecord]:
        """The chat's messages in the order they were stored."""
        ...

    async def append_events(
        self, chat_id: str, events: Sequence[tuple[str, dict[str, Any]]]
    ) -> list[EventRecord]:
        """Append ``(type, payload)`` events to the chat's log in one transaction.

        Each gets the next ``seq`` (contiguous from 1 per chat, also under
        concurrent calls); ``chat_id``, ``seq`` and ``ts`` are added to the
        stored payload.
        """
        ...

    async def append_event(self, chat_id: str, type: str, payload: dict[str, Any]) -> EventRecord:
        """Append one event; see ``append_events``."""
        ...

    async def events_after(
        self, chat_id: str, after_seq: int, *, limit: int | None = None
    ) -> list[EventRecord]:
        """The chat's events with ``seq > after_seq``, ascending."""
        ...

    async def last_seq(self, chat_id: str) -> int:
        """The chat's latest ``seq``; 0 when it has no events."""
        ...

    async def record_tx_update(
        self, chat_id: str, call_id: str, update: Mapping[str, Any]
    ) -> TransactionRecord:
        """Record a ``tx_update`` (``tx_hash``, ``chain_id``, ``status``, ...): upsert by
        ``(chat_id, tx_hash)`` and append the update to the history."""
        ...

    async def list_transactions(self, chat_id: str) -> list[TransactionRecord]:
        """The chat's transactions in the order they were first recorded."""
        ...

    # the spend ledger (lunark.tools.policy.SpendLedger)

    async def counted(self, address: str, symbol: str, decimals: int, day: date, *, now: datetime) -> int:
        """What counts against ``address``'s daily cap of ``symbol`` on ``day``, in units of
        ``decimals``: committed spends and live reservations (rounded up, never down)."""
        ...

    async def reserve(self, entry: SpendEntry, cap: int | None, *, now: datetime) -> int | None:
        """Reserve ``entry`` unless what is counted plus it exceeds ``cap`` (same units); atomic.

        ``None`` when reserved (also when ``entry`` is already reserved or committed), else the
        counted total that refused it. A lapsed or released entry is reserved anew.
        """
        ...

    async def hold(self, entry: SpendEntry, cap: int | None, *, now: datetime) -> int | None:
        """At execution: keep ``entry``'s live reservation without expiry, or reserve it again
        under ``cap`` if it lapsed; ``None`` when held, else the counted total that refused it."""
        ...

    async def commit(self, settlement_id: str, tx_hash: str, *, moved: str = "") -> None:
        """The settlement's amount (or what it ``moved`` of that asset) went out in ``tx_hash``: it
        counts for good."""
        ...

    async def release(self, settlement_id: str) -> None:
        """Nothing of the settlement went out (rejected, expired, mismatched, failed): its amount no
        longer counts."""
        ...

    # approvals and settlements (lunark.settlement)

    async def put_approval(self, record: ApprovalRecord) -> None:
        """Remember a pending approval (again: no change)."""
        ...

    async def get_approval(self, approval_id: str) -> ApprovalRecord | None:
        ...

    async def claim_approval(
        self, approval_id: str, decisions: Sequence[Mapping[str, Any]], by: str
    ) -> ApprovalRecord | None:
        """Atomically move a ``pending`` approval to ``decided`` with ``decisions``; ``None``
        when it is not pending (decided already, by anyone, or unknown)."""
        ...

    async def open_answer(self, chat_id: str, message_id: str, *, since_seq: int = 0) -> None:
        """Record that the chat's answer ``message_id`` is being written (one per chat: replaces)."""
        ...

    async def close_answer(self, chat_id: str) -> None:
        """The chat's answer ended (its ``message_end`` is logged)."""
        ...

    async def open_answers(self, chat_id: str | None = None) -> list[OpenAnswer]:
        """Answers recorded as being written (of one chat, with ``chat_id``)."""
        ...

    async def finish_approval(self, approval_id: str) -> None:
        """The decision was applied (the turn it resumed ran)."""
        ...

    async def reopen_approval(self, approval_id: str) -> None:
        """A claimed decision was never applied (its turn failed before the graph took it): the
        approval is ``pending`` again, decidable and expiring as before."""
        ...

    async def approvals(self, states: Sequence[str]) -> list[ApprovalRecord]:
        """Approvals in these states, oldest first (recovery at start-up)."""
        ...

    async def due_approvals(
        self, now: datetime, *, limit: int = 100, after: ApprovalRecord | None = None
    ) -> list[ApprovalRecord]:
        """Pending approvals whose time ran out by ``now``, soonest first; ``after`` pages on from
        the last one of the previous page."""
        ...

    async def next_expiry(self) -> datetime | None:
        """When the soonest pending approval expires (``None`` when none waits)."""
        ...

    async def open_settlement(self, record: SettlementRecord) -> SettlementRecord:
        """Write a settlement ahead of any signing; if it exists, return the stored one."""
        ...

    async def get_settlement(self, settlement_id: str) -> SettlementRecord | None:
        ...

    async def advance_settlement(
        self, settlement_id: str, state: str, evidence: Mapping[str, Any], *, done: bool | None = None,
        **fields: Any,
    ) -> SettlementRecord:
        """Move to ``state`` (appending ``evidence`` to the history) and set ``fields``
        (``tx_hash``, ``nonce``, ``raw_tx``, ``first_block``). ``done`` defaults to whether
        ``state`` is final. A settlement that is done stays as it is."""
        ...

    async def bind_hash(self, settlement_id: str, tx_hash: str) -> str:
        """Bind ``tx_hash`` to the settlement; returns the settlement it is bound to (another one's
        id means the hash already settled something else)."""
        ...

    async def hash_settling(self, tx_hash: str) -> str | None:
        """The settlement ``tx_hash`` is bound to, if any."""
        ...

    async def bind_transaction(
        self, settlement_id: str, tx_hash: str, *, chain_id: int, owner: str, nonce: int
    ) -> tuple[str, str | None]:
        """``bind_hash``, then (once the hash is bound to this settlement) another live or
        successful settlement using ``(owner, nonce)`` on ``chain_id``, if any: the settlement the
        hash is bound to and the one holding the nonce, in one trip to the store."""
        ...

    async def settlements(self, *, chat_id: str | None = None, unfinished: bool = False) -> list[SettlementRecord]:
        """Settlements of a chat (or all), oldest first; only those not done with ``unfinished``."""
        ...

    async def add_nonce(self, nonce: str, expires_at: datetime) -> None:
        """Remember a sign-in nonce until ``expires_at``."""
        ...

    async def consume_nonce(self, nonce: str, now: datetime) -> bool:
        """``True`` exactly once for a known, unexpired nonce; atomic."""
        ...

    async def add_session(self, token_hash: str, address: str, expires_at: datetime) -> None:
        """Remember a session by the hash of its token."""
        ...

    async def get_session(self, token_hash: str, now: datetime) -> str | None:
        """The session's address (as it was stored) if it exists and has not expired."""
        ...

    async def delete_session(self, token_hash: str) -> str | None:
        """End one session (logout); its address, or ``None`` when there was none."""
        ...

    async def delete_sessions(self, address: str) -> int:
        """End every session of ``address`` (any case); how many there were."""
        ...

    async def stored_sessions(self, token_hashes: Sequence[str]) -> set[str]:
        """Which of ``token_hashes`` still name a session (expired or not): the others were ended."""
        ...

    async def audit_records(self, address: str, *, after: int = 0, limit: int | None = None) -> list[AuditRecord]:
        """The user's audit chain (``lunark.audit``) from ``seq`` ``after + 1``, in order. Its records are
        written by ``put_approval`` (cards offered), ``claim_approval`` (decisions),
        ``advance_settlement`` (outcomes), ``put_contact`` and ``delete_contact`` (contact changes), each
        in the same transaction as what it records."""
        ...

    # contacts (lunark.contacts)

    async def put_contact(self, owner: str, label: str, address: str) -> ContactRecord:
        """Save ``address`` under ``label`` (a valid label, a valid address): adds it, points an
        existing label (any case) at the new address, or renames the address's previous label;
        atomic, with its ``contact`` audit record (none when nothing changed). ``InvalidInput`` for a
        malformed label or address."""
        ...

    async def delete_contact(self, owner: str, label: str) -> bool:
        """Forget the owner's contact ``label`` (any case), with its ``contact`` audit record; whether
        there was one."""
        ...

    async def list_contacts(self, owner: str) -> list[ContactRecord]:
        """The owner's contacts, by label (case-insensitively)."""
        ...

    async def get_contact(self, owner: str, label: str) -> ContactRecord | None:
        """The owner's contact ``label`` (any case), or ``None``."""
        ...

    async def healthy(self) -> bool:
        """Whether the database answers."""
        ...

    async def close(self) -> None:
        """Release the database; idempotent."""
        ...
