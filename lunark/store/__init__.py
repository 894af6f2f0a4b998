"""Durable storage: the ``Store`` Protocol, its records, and the SQLite default."""

from lunark.store.base import ChatRecord, EventRecord, MessageRecord, Role, Store, TransactionRecord
from lunark.store.sqlite import SCHEMA_VERSION, SqliteStore

__all__ = [
    "SCHEMA_VERSION",
    "ChatRecord",
    "EventRecord",
    "MessageRecord",
    "Role",
    "SqliteStore",
    "Store",
    "TransactionRecord",
]
