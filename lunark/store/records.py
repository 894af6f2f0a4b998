"""The records the store keeps and hands back: frozen values, one per kind of row.

They are the store's vocabulary for the rest of Lunark (``lunark.store`` exports them); the
``Store`` Protocol (``lunark.store.base``) reads and writes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

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
    text: str | None = field(default=None, compare=False, repr=False)
    """``payload`` as compact JSON, when the store has it at hand (it logged it so), for senders
    that can reuse it instead of encoding the payload again."""


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


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalRecord:
    """A pending approval as the user was shown it, and what became of it.

    Written before its ``pending_approval`` event is sent; a decision is claimed here, in the
    database, before it is applied, so no crash can offer it again or lose it.
    """

    approval_id: str
    """``"apr_"`` and 12 base-62 characters."""
    chat_id: str
    """The chat (graph thread) that asked."""
    owner: str
    """The signed-in address whose wallet pays, lowercase ``0x`` hex."""
    state: str
    """``pending``, ``decided`` (claimed, being applied), ``done`` (applied) or ``expired``."""
    request: dict[str, Any]
    """The ``pending_approval`` payload (action requests, review configs, ``expires_at``)."""
    proposals: list[dict[str, Any]]
    """What each action executes (the prepared transaction), in the order of the requests."""
    expires_at: datetime
    """When an undecided approval counts as rejected (UTC)."""
    decisions: list[dict[str, Any]] | None
    """The claimed decisions, once decided."""
    by: str | None
    """``user`` or ``timeout``, once decided."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SettlementRecord:
    """One approved state-changing action, from the decision to its final outcome on chain.

    Written before anything is signed or broadcast; every transition is appended to ``history``
    with its time and evidence. The chat, the transaction list and the spend ledger follow it.
    """

    settlement_id: str
    """``"{approval_id}/{call_id}"`` (``lunark.ids.settlement_id``): the approved action's one key."""
    approval_id: str
    call_id: str
    chat_id: str
    owner: str
    """The sender, lowercase ``0x`` hex."""
    chain_id: int
    state: str
    """``approved``, ``broadcasting``, ``submitted``, ``mined``, ``confirmed``, ``failed``, ``replaced``,
    ``dropped``, ``mismatch`` or ``expired`` (see ``lunark.settlement``)."""
    prepared: dict[str, Any]
    """The prepared transaction the user approved (``lunark.tools.transfer.prepared_to_state``)."""
    decision: dict[str, Any]
    """The approving decision: with ``tx_hash``, ``signed_tx``, or neither (local signer)."""
    expires_at: datetime
    """The approval's expiry: a signed transaction is never broadcast after it."""
    tx_hash: str | None
    """The transaction now carrying the action (a speed-up moves it), lowercase."""
    nonce: int | None
    raw_tx: str | None
    """Signed bytes (``0x`` hex), stored before the broadcast so a restart can finish it."""
    first_block: int | None
    """The chain's height before the broadcast: where a search for a replacement starts."""
    late: bool
    """Evidence that arrived after the approval expired (recorded, never broadcast by us)."""
    history: list[dict[str, Any]]
    """Every transition: ``{"state", "ts", **evidence}``."""
    updated_at: datetime
    done: bool = False
    """Nothing is left to follow: the outcome is final, and so is whatever the wallet sent instead
    of the approved transaction (a mismatched transaction from the user's account is followed
    until it is mined or dropped, so funds that moved are shown and counted)."""

    @property
    def final(self) -> bool:
        """The approval's outcome is known (the record may still follow evidence: see ``done``)."""
        return self.state in FINAL_STATES


FINAL_STATES = frozenset({"confirmed", "failed", "replaced", "dropped", "mismatch", "expired"})
"""Settlement states nothing moves on from."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactRecord:
    """One entry of a user's address book (``lunark.contacts``)."""

    owner: str
    """The user whose contact it is, lowercase ``0x`` hex: no one else ever sees it."""
    label: str
    """As the user wrote it; unique per owner, case-insensitively."""
    address: str
    """The contact's checksum address; unique per owner too (a new label renames it)."""
    created_at: datetime
    """When the label was first saved (UTC)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SpendEntry:
    """An amount counted against daily caps: reserved when asked, committed at broadcast.

    The ledger keeps one entry per approved action, under the action's ``settlement_id``, and one
    per asset a mismatched transaction of it moved instead (``moved``)."""

    settlement_id: str
    """``"{approval_id}/{call_id}"`` (``lunark.ids.settlement_id``): the approved action it
    counts for, also before its settlement record is written."""
    address: str
    symbol: str
    decimals: int
    amount: int
    """Base units (wei, or the token's smallest unit): never rounded."""
    day: date
    """The UTC day it counts on."""
    expires_at: datetime | None
    """A reservation lapses then (the approval expired); None once held for execution."""
    moved: str = ""
    """Empty for the amount the approval reserved; for what a mismatched transaction of the
    settlement moved instead, that asset (``"native"`` or the token's address)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenAnswer:
    """An assistant message being written: kept from before its ``message_start`` until after its
    ``message_end``, so that one left by a process that died is found and closed."""

    chat_id: str
    message_id: str
    """The message; empty while the turn has not started its answer yet."""
    since_seq: int
    """For a continuation: the chat's last ``seq`` before it began (its tokens come after); else 0."""
