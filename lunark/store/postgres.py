"""The store on Postgres, for several server processes sharing one database.

What is Postgres' own is here: the connection pool, the migration under an advisory lock, advisory
locks, the event log's group commit, and LangGraph's checkpointer on psycopg (``open_checkpointer``).
Every other operation is ``lunark.store.sql.SqlStore``'s, in the Postgres dialect, and the same
contract suite runs on both stores (``tests/test_store.py``).

What keeps it exact when many processes write at once:

- ``seq``: each chat row carries its ``last_seq``; an append moves it and inserts the events in one
  statement, so the row lock numbers concurrent appends one after the other, contiguously, whichever
  process they come from.
- Decisions, nonces, hashes: one conditional statement each (``UPDATE ... WHERE state = 'pending'``,
  ``DELETE ... RETURNING``, ``INSERT ... ON CONFLICT``), atomic under Postgres' row locks.
- Spending caps: the count and the reservation run in one transaction holding an advisory lock on
  ``(address, symbol, day)`` (a ``Lock`` step), so two processes cannot both fit under the same cap.
- The schema is created and migrated at open, under an advisory lock (processes starting together
  migrate once), by versioned migrations (``lunark.store.schema``).

Each operation runs whole on one pooled connection, shielded from its caller's cancellation (as
the SQLite store's thread finishes an operation whole): a cancelled caller stops waiting, the
statement still commits or rolls back as one.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext, suppress
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import AsyncConnection, errors
from psycopg_pool import AsyncConnectionPool

from lunark.errors import ConfigError, LunarkError, NotFound
from lunark.store.dialect import POSTGRES, Conflict
from lunark.store.eventlog import Append, answer, prepare, stamp
from lunark.store.operations import Lock, Operation, Query, Row, drive_async
from lunark.store.records import EventRecord
from lunark.store.schema import SCHEMA_VERSION, pending
from lunark.store.sql import SqlStore

__all__ = ["SCHEMA_VERSION", "PostgresStore", "advisory_key", "open_checkpointer"]

_T = TypeVar("_T")
Conn = AsyncConnection[tuple[Any, ...]]

_MIGRATION_LOCK = 0x4C554E41524B  # "LUNARK": one process at a time migrates


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_lock`` from a name (``"turn:chat_..."``)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


def _redacted(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


async def _migrate(conn: Conn, url: str) -> None:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        cursor = await conn.execute("SELECT MAX(version) FROM schema_version")
        row = await cursor.fetchone()
        version, migrations = pending(POSTGRES, int(row[0]) if row and row[0] is not None else 0,
                                      f"at {_redacted(url)}")
        for target, ddl in migrations:
            await conn.execute(ddl.encode())  # no parameters: several statements at once
            version = target
        await conn.execute("DELETE FROM schema_version")
        await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))


async def _execute(conn: Conn, sql: str, params: Mapping[str, Any]) -> list[Row]:
    try:
        cursor = await conn.execute(sql, params)
    except errors.IntegrityError as exc:
        raise Conflict(exc.diag.message_primary or str(exc), foreign_key=isinstance(exc, errors.ForeignKeyViolation)
                       ) from exc
    return await cursor.fetchall() if cursor.description is not None else []


async def _step(conn: Conn, asked: Query | Lock) -> list[Row]:
    if isinstance(asked, Lock):
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (advisory_key(asked.name),))
        return []
    return await _execute(conn, POSTGRES.compile(asked.sql), asked.params)


_APPEND = (
    "WITH c AS (UPDATE chats SET last_seq = last_seq + %(n)s WHERE chat_id = %(chat)s "
    "RETURNING last_seq - %(n)s AS base) "
    "INSERT INTO events (chat_id, seq, type, payload, ts) "
    "SELECT %(chat)s, c.base + e.ord, e.type, e.head || ',\"seq\":' || (c.base + e.ord) || %(stamp)s, %(ts)s "
    "FROM c, unnest(%(types)s::text[], %(heads)s::text[]) WITH ORDINALITY AS e(type, head, ord) "
    "RETURNING seq"
)


async def _append_batch(conn: Conn, batch: Sequence[Append], ts: float) -> list[int | Exception]:
    """Log every append of ``batch`` in one transaction; returns the seq before each append's first
    event, or ``NotFound`` in the place of an append whose chat does not exist.

    Statements run in chat order (each chat's appends in the order asked): two processes' batches
    then lock chat rows in the same order and cannot deadlock each other."""
    order = sorted(range(len(batch)), key=lambda i: batch[i].chat_id)
    closing = stamp(ts)
    outcomes: list[int | Exception] = [0] * len(batch)
    async with conn.transaction(), conn.pipeline() as pipeline:
        cursors = []
        for i in order:
            append = batch[i]
            cursors.append((i, await conn.execute(_APPEND, {
                "n": len(append.events), "chat": append.chat_id, "stamp": closing, "ts": ts,
                "types": [t for t, _, _ in append.events], "heads": [h for _, _, h in append.events],
            })))
        await pipeline.sync()
        for i, cursor in cursors:
            rows = await cursor.fetchall()
            chat_id = batch[i].chat_id
            outcomes[i] = min(row[0] for row in rows) - 1 if rows else NotFound(f"No chat {chat_id!r}.",
                                                                              chat_id=chat_id)
    return outcomes


class PostgresStore(SqlStore):
    """``Store`` on a Postgres database, shared by any number of server processes.

    >>> store = await PostgresStore.open("postgresql://lunark@db/lunark")   # doctest: +SKIP
    """

    dialect = POSTGRES
    LAST_SEQ = "SELECT last_seq FROM chats WHERE chat_id = :chat_id"
    health_timeout = 3.0
    driver_errors = (psycopg.Error,)

    def __init__(self, pool: AsyncConnectionPool[Conn], url: str) -> None:
        """Wrap an open pool; use ``PostgresStore.open`` to get one."""
        self._pool: AsyncConnectionPool[Conn] | None = pool
        self.url = url
        self._inflight: set[asyncio.Task[Any]] = set()
        self._appends: list[Append] = []
        self._appender: asyncio.Future[None] | None = None

    @classmethod
    async def open(cls, url: str, *, min_size: int = 2, max_size: int = 10, timeout: float = 10.0) -> PostgresStore:
        """Connect to ``url`` (``postgresql://user:password@host:port/database``), then create or
        migrate the schema. Raises ``ConfigError`` when the database cannot be reached."""
        pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            url, min_size=min_size, max_size=max_size, open=False, kwargs={"autocommit": True},
            name="lunark-store",
        )
        try:
            await pool.open(wait=True, timeout=timeout)
        except Exception as exc:
            await pool.close()
            raise ConfigError(f"Cannot connect to Postgres at {_redacted(url)}: {exc}") from exc
        try:
            async with pool.connection() as conn:
                await _migrate(conn, url)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, url)

    async def __aenter__(self) -> PostgresStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Finish the operations already asked for, then close the pool. Safe to call twice."""
        if self._appender is not None:
            with suppress(Exception):
                await asyncio.shield(self._appender)
        pool, self._pool = self._pool, None
        if pool is None:
            return
        while self._inflight:
            await asyncio.wait(set(self._inflight))
        await pool.close()

    async def _run(self, fn: Callable[[Conn], Awaitable[_T]]) -> _T:
        """Run ``fn`` on one pooled connection, whole: a cancelled caller stops waiting, ``fn`` goes on."""
        pool = self._pool
        if pool is None:
            raise LunarkError("The store is closed.")

        async def whole() -> _T:
            async with pool.connection() as conn:
                return await fn(conn)

        task = asyncio.ensure_future(whole())
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        return await asyncio.shield(task)

    async def _fetch(self, sql: str, params: Mapping[str, Any] = {}) -> list[Row]:
        compiled = POSTGRES.compile(sql)
        return await self._run(lambda conn: _execute(conn, compiled, params))

    async def _perform(self, operation: Operation[_T], *, transaction: bool = False) -> _T:
        async def perform(conn: Conn) -> _T:
            scope: AbstractAsyncContextManager[Any] = conn.transaction() if transaction else nullcontext()
            async with scope:
                return await drive_async(operation, partial(_step, conn))

        return await self._run(perform)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Conn]:
        """A pooled connection (autocommit) for the cluster's own queries."""
        if self._pool is None:
            raise LunarkError("The store is closed.")
        async with self._pool.connection() as conn:
            yield conn

    async def last_seqs(self, chat_ids: Sequence[str]) -> dict[str, int]:
        """``last_seq`` of many chats in one query (the relay's check of its subscribers)."""
        rows = await self._fetch("SELECT chat_id, last_seq FROM chats WHERE chat_id = ANY(:chat_ids)",
                                 {"chat_ids": list(chat_ids)})
        return {str(row[0]): int(row[1]) for row in rows}

    # the event log

    def append_events_soon(
        self, chat_id: str, events: Sequence[tuple[str, dict[str, Any]]],
        done: Callable[[list[EventRecord] | Exception], None],
    ) -> None:
        if self._pool is None:
            raise LunarkError("The store is closed.")
        self._appends.append(prepare(chat_id, events, done))
        if self._appender is None:
            self._appender = asyncio.ensure_future(self._append_pending())

    async def _append_pending(self) -> None:
        try:
            while self._appends:
                batch, self._appends = self._appends, []
                ts = round(time.time(), 3)  # milliseconds, as the SQLite store
                try:
                    outcomes = await self._run(partial(_append_batch, batch=batch, ts=ts))
                except Exception as exc:  # the transaction failed (connection lost...): none was logged
                    outcomes = [exc] * len(batch)
                answer(batch, outcomes, ts)
        finally:
            self._appender = None


@asynccontextmanager
async def open_checkpointer(url: str, *, max_size: int = 10) -> AsyncIterator[Any]:
    """LangGraph's ``AsyncPostgresSaver`` on a pool of its own, its tables set up once (several
    processes starting together take turns under an advisory lock)."""
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg.rows import dict_row

    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        url, min_size=1, max_size=max_size, open=False, name="lunark-checkpoints",
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
    )
    try:
        await pool.open(wait=True, timeout=10.0)
    except Exception as exc:
        await pool.close()
        raise ConfigError(f"Cannot connect to Postgres at {_redacted(url)}: {exc}") from exc
    try:
        saver = AsyncPostgresSaver(pool)
        async with pool.connection() as conn:
            # Polled, not a blocking pg_advisory_lock: its setup creates indexes CONCURRENTLY, which
            # waits for every running statement, a blocked lock request of another process included
            # (a deadlock Postgres does not see).
            while True:
                cursor = await conn.execute("SELECT pg_try_advisory_lock(%s) AS got", (_MIGRATION_LOCK + 1,))
                row = await cursor.fetchone()  # a dict: the checkpointer's connections use dict rows
                if row and row["got"]:
                    break
                await asyncio.sleep(0.05)
            try:
                await saver.setup()
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK + 1,))
        yield saver
    finally:
        with suppress(Exception):
            await pool.close()
