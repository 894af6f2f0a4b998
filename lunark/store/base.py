"""What Lunark keeps durably: chats, messages, the event log, transactions, spend, sign-in.

``Store`` is the one interface the server, the hub and the tools depend on.
``SqliteStore`` is the embedded default; a Postgres store implements the same
Protocol for deployments beyond one machine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = [
    "ChatRecord",
    "EventRecord",
    "MessageRecord",
    "Role",
    "Store",
    "TransactionRecord",
]

Role = Literal["user", "assistant"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatRecord:
    """One chat, owned by the address that created it."""

    chat_id: str
    """``"chat_"`` and 12 base-62 characters (``lunark.ids``) unless the caller chose the id."""
    owner: str
    """The owner's address, lowercase ``0x`` hex."""
    chain_id: int
    """The network the chat is on now."""
    created_at: datetime
    """When the chat was made (UTC)."""
    title: str | None
    """A short title for chat lists, if one was set."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageRecord:
    """One user or assistant message of a chat."""

    message_id: str
    """Unique across chats (``"msg_"`` and 12 base-62 characters unless the caller chose it)."""
    chat_id: str
    """The chat it belongs to."""
    role: Role
    """Who wrote it."""
    content: str
    """The whole text."""
    client_message_id: str | None
    """The client's idempotency key: the same key twice in a chat is one message."""
    finish_reason: str | None
    """How an assistant message ended (``stop``, ``aborted``, ...); ``None`` for user messages."""
    created_at: datetime
    """When it was stored (UTC)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EventRecord:
    """One numbered event of a chat's log, exactly as the wire carries it."""

    chat_id: str
    """The chat whose log holds it."""
    seq: int
    """Its place in the chat's log: starts at 1, grows by exactly 1."""
    type: str
    """The event type, also the Socket.IO event name."""
    payload: dict[str, Any]
    """The full wire event, including ``type``, ``chat_id``, ``seq`` and ``ts``."""
    ts: float
    """When it was logged (unix seconds)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionRecord:
    """A transaction of a chat, tracked by hash, with every update it went through."""

    chat_id: str
    """The chat whose tool call produced it."""
    call_id: str
    """The tool call it executes."""
    tx_hash: str
    """Its hash, lowercase ``0x`` hex."""
    chain_id: int
    """The network it was sent on."""
    status: str
    """The latest status (``submitted``, ``mined``, ``confirmed``, ``failed``, ...)."""
    history: list[dict[str, Any]]
    """Every update in the order it was recorded, each with its ``status`` and ``ts``."""
    updated_at: datetime
    """When the latest update was recorded (UTC)."""


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

    async def spent(self, address: str, symbol: str, day: date) -> Decimal:
        """Whole units of ``symbol`` that ``address`` sent on ``day`` (UTC)."""
        ...

    async def record(self, address: str, symbol: str, amount: Decimal, tx_hash: str, day: date) -> None:
        """Count a sent amount once per ``tx_hash`` (recording it again replaces it)."""
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

    async def healthy(self) -> bool:
        """Whether the database answers."""
        ...

    async def close(self) -> None:
        """Release the database; idempotent."""
        ...
