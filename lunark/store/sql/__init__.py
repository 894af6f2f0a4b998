"""The ``Store`` written once in SQL, over a dialect and an executor.

``SqlStore`` implements every method of the Protocol with the statements of
``lunark.store.statements``, one module per area:

- ``_core``: what a backend (``SqliteStore``, ``PostgresStore``) supplies, since it differs: its
  dialect, how one statement runs (``_fetch``), how an operation of several runs whole
  (``_perform``), the event log's appends (group commit) and its ``last_seq``;
- ``_chats``: chats, messages, the event log's reads, transactions, answers being written;
- ``_approvals``: approvals and their decisions;
- ``_settlements``: settlements and the spend ledger;
- ``_accounts``: sign-in (nonces, sessions) and contacts;
- ``_audit``: the audit chains the three areas above write in their own transactions.

An operation of several statements is a generator (``lunark.store.operations``), written once
and driven by each backend in its own way, whole, in a transaction when asked.
"""

from __future__ import annotations

from lunark.store.sql._accounts import ContactsSql, SignInSql
from lunark.store.sql._approvals import ApprovalsSql
from lunark.store.sql._chats import ChatsSql
from lunark.store.sql._settlements import LedgerSql, SettlementsSql

__all__ = ["SqlStore"]


class SqlStore(ChatsSql, ApprovalsSql, SettlementsSql, LedgerSql, SignInSql, ContactsSql):
    """Every ``Store`` method but the event log's appends, once for both databases."""
