"""Durable storage: the ``Store`` Protocol (``base``), its records (``records``), and its two
implementations (``sqlite``, ``postgres``) of the one SQL store (``sql``).

The rest of Lunark imports the store from here only. ``SqliteStore`` is the embedded default;
``PostgresStore`` (with ``advisory_key`` and ``open_checkpointer``, for a cluster) is loaded on first
use, so that a SQLite deployment never imports the Postgres driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lunark.store.base import Store
from lunark.store.factory import open_store
from lunark.store.records import (
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
from lunark.store.schema import SCHEMA_VERSION
from lunark.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from lunark.store.postgres import PostgresStore, advisory_key, open_checkpointer

__all__ = [
    "SCHEMA_VERSION",
    "ApprovalRecord",
    "ChatRecord",
    "ContactRecord",
    "EventRecord",
    "MessageRecord",
    "OpenAnswer",
    "PostgresStore",
    "Role",
    "SettlementRecord",
    "SpendEntry",
    "SqliteStore",
    "Store",
    "TransactionRecord",
    "advisory_key",
    "open_checkpointer",
    "open_store",
]

_POSTGRES = frozenset({"PostgresStore", "advisory_key", "open_checkpointer"})


def __getattr__(name: str) -> Any:
    if name in _POSTGRES:
        from lunark.store import postgres

        return getattr(postgres, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
