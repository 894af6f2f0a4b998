"""The store on Postgres, for several server processes sharing one database.

``PostgresStore`` implements the same ``Store`` Protocol as ``SqliteStore``, and the same test suite
runs on both (``tests/test_store.py``). It uses psycopg 3 with its connection pool, the driver
LangGraph's ``AsyncPostgresSaver`` uses too (``open_checkpointer``).

What keeps it exact when many processes write at once:

- ``seq``: each chat row carries its ``last_seq``; an append moves it and inserts the events in one
  statement, so the row lock numbers concurrent appends one after the other, contiguously, whichever
  process they come from.
- Decisions, nonces, hashes: one conditional statement each (``UPDATE ... WHERE state = 'pending'``,
  ``DELETE ... RETURNING``, ``INSERT ... ON CONFLICT``), atomic under Postgres' row locks.
- Spending caps: the count and the reservation run in one transaction holding an advisory lock on
  ``(address, symbol, day)``, so two processes cannot both fit under the same cap.
- The schema is created and migrated at open, under an advisory lock (processes starting together
  migrate once), by versioned migrations (``schema_version``).

Each operation runs whole on one pooled connection, shielded from its caller's cancellation (as
the SQLite store's thread finishes an operation whole): a cancelled caller stops waiting, the
statement still commits or rolls back as one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import partial
from typing import Any, TypeVar, cast

import psycopg
from psycopg import AsyncConnection, errors
from psycopg_pool import AsyncConnectionPool

from lunark.chain.types import rescale_up
from lunark.errors import ConfigError, InvalidInput, LunarkError, NotFound
from lunark.ids import new_id
from lunark.store.base import (
    FINAL_STATES,
    ApprovalRecord,
    ChatRecord,
    EventRecord,
    MessageRecord,
    Role,
    SettlementRecord,
    SpendEntry,
    TransactionRecord,
    appended,
)

__all__ = ["SCHEMA_VERSION", "PostgresStore", "advisory_key", "open_checkpointer"]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2
"""The schema this code writes; a database with a newer one is refused."""

_MIGRATION_LOCK = 0x4C554E41524B  # "LUNARK": one process at a time migrates

_MIGRATIONS: dict[int, str] = {
    # 1: everything the SQLite store's version 2 holds (chats, messages, the event log,
    # transactions, approvals, settlements, the base-unit ledger, sign-in), plus each chat's
    # last_seq counter.
    1: """
CREATE TABLE IF NOT EXISTS chats (
    id         BIGINT GENERATED ALWAYS AS IDENTITY,
    chat_id    TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    chain_id   BIGINT NOT NULL,
    title      TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    last_seq   BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS chats_by_owner ON chats (owner, created_at DESC, id DESC);

CREATE TABLE IF NOT EXISTS messages (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id        TEXT NOT NULL UNIQUE,
    chat_id           TEXT NOT NULL REFERENCES chats (chat_id) ON DELETE CASCADE,
    role              TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    content           TEXT NOT NULL,
    client_message_id TEXT,
    finish_reason     TEXT,
    created_at        TIMESTAMPTZ NOT NULL
);
-- NULLs are distinct in a UNIQUE index: only messages with a client id are deduplicated.
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_client_id ON messages (chat_id, client_message_id);

CREATE TABLE IF NOT EXISTS events (
    chat_id TEXT NOT NULL REFERENCES chats (chat_id) ON DELETE CASCADE,
    seq     BIGINT NOT NULL CHECK (seq > 0),
    type    TEXT NOT NULL,
    payload TEXT NOT NULL,
    ts      DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (chat_id, seq)
);

CREATE TABLE IF NOT EXISTS transactions (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chat_id    TEXT NOT NULL REFERENCES chats (chat_id) ON DELETE CASCADE,
    tx_hash    TEXT NOT NULL,
    call_id    TEXT NOT NULL,
    chain_id   BIGINT NOT NULL,
    status     TEXT NOT NULL,
    history    JSONB NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    UNIQUE (chat_id, tx_hash)
);

CREATE TABLE IF NOT EXISTS nonces (
    nonce      TEXT PRIMARY KEY,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS nonces_by_expiry ON nonces (expires_at);

CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    address    TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS approvals (
    approval_id TEXT PRIMARY KEY,
    chat_id     TEXT NOT NULL,
    owner       TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('pending', 'decided', 'done', 'expired')),
    request     JSONB NOT NULL,
    proposals   JSONB NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    decisions   JSONB,
    "by"        TEXT,
    updated_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS approvals_by_state ON approvals (state, expires_at);

CREATE TABLE IF NOT EXISTS settlements (
    id            BIGINT GENERATED ALWAYS AS IDENTITY,
    settlement_id TEXT PRIMARY KEY,
    approval_id   TEXT NOT NULL,
    call_id       TEXT NOT NULL,
    chat_id       TEXT NOT NULL,
    owner         TEXT NOT NULL,
    chain_id      BIGINT NOT NULL,
    state         TEXT NOT NULL,
    done          BOOLEAN NOT NULL DEFAULT FALSE,
    prepared      JSONB NOT NULL,
    decision      JSONB NOT NULL,
    expires_at    TIMESTAMPTZ NOT NULL,
    tx_hash       TEXT,
    nonce         BIGINT,
    raw_tx        TEXT,
    first_block   BIGINT,
    late          BOOLEAN NOT NULL DEFAULT FALSE,
    history       JSONB NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS settlements_by_chat ON settlements (chat_id, created_at, id);
CREATE INDEX IF NOT EXISTS settlements_unfinished ON settlements (done) WHERE NOT done;
CREATE INDEX IF NOT EXISTS settlements_by_nonce ON settlements (chain_id, owner, nonce);

-- Every hash that ever carried a settlement (a speed-up adds one): a hash settles one approval.
CREATE TABLE IF NOT EXISTS settlement_hashes (
    tx_hash       TEXT PRIMARY KEY,
    settlement_id TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS ledger (
    entry_id   TEXT PRIMARY KEY,
    address    TEXT NOT NULL,
    symbol     TEXT NOT NULL,
    decimals   INTEGER NOT NULL,
    amount     NUMERIC(78, 0) NOT NULL,
    day        DATE NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('reserved', 'committed', 'released')),
    expires_at TIMESTAMPTZ,
    tx_hash    TEXT,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_by_day ON ledger (address, symbol, day);
""",
    # 2: pending approvals paged by (expires_at, approval_id) (lunark.server.expiry).
    2: """
DROP INDEX IF EXISTS approvals_by_state;
CREATE INDEX IF NOT EXISTS approvals_by_expiry ON approvals (state, expires_at, approval_id);
""",
}
"""Schema changes by the version they make; each runs once, in the migrating transaction."""

_CHAT_COLUMNS = "chat_id, owner, chain_id, title, created_at"
_MESSAGE_COLUMNS = "message_id, chat_id, role, content, client_message_id, finish_reason, created_at"
_TX_COLUMNS = "chat_id, call_id, tx_hash, chain_id, status, history, updated_at"
_APPROVAL_COLUMNS = 'approval_id, chat_id, owner, state, request, proposals, expires_at, decisions, "by"'
_SETTLEMENT_COLUMNS = (
    "settlement_id, approval_id, call_id, chat_id, owner, chain_id, state, done, prepared, decision, expires_at, "
    "tx_hash, nonce, raw_tx, first_block, late, history, updated_at"
)

_T = TypeVar("_T")
Conn = AsyncConnection[tuple[Any, ...]]


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_lock`` from a name (``"turn:chat_..."``)."""
    import hashlib

    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


def _when(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"{value!r} has no time zone; pass an aware datetime (e.g. in UTC).")
    return value.astimezone(UTC)


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _now() -> datetime:
    return datetime.now(UTC)


def _dumps(value: Any) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"Not storable as JSON: {exc}.") from exc


def _chat(row: Any) -> ChatRecord:
    return ChatRecord(chat_id=row[0], owner=row[1], chain_id=row[2], title=row[3], created_at=_utc(row[4]))


def _message(row: Any) -> MessageRecord:
    return MessageRecord(
        message_id=row[0], chat_id=row[1], role=cast(Role, row[2]), content=row[3],
        client_message_id=row[4], finish_reason=row[5], created_at=_utc(row[6]),
    )


def _tx_record(row: Any) -> TransactionRecord:
    return TransactionRecord(
        chat_id=row[0], call_id=row[1], tx_hash=row[2], chain_id=row[3], status=row[4],
        history=row[5], updated_at=_utc(row[6]),
    )


def _approval(row: Any) -> ApprovalRecord:
    return ApprovalRecord(
        approval_id=row[0], chat_id=row[1], owner=row[2], state=row[3], request=row[4], proposals=row[5],
        expires_at=_utc(row[6]), decisions=row[7], by=row[8],
    )


def _settlement(row: Any) -> SettlementRecord:
    return SettlementRecord(
        settlement_id=row[0], approval_id=row[1], call_id=row[2], chat_id=row[3], owner=row[4], chain_id=row[5],
        state=row[6], prepared=row[8], decision=row[9], expires_at=_utc(row[10]), tx_hash=row[11], nonce=row[12],
        raw_tx=row[13], first_block=row[14], late=bool(row[15]), history=row[16], updated_at=_utc(row[17]),
        done=bool(row[7]),
    )


def _refused(exc: psycopg.Error, chat_id: str) -> LunarkError:
    if isinstance(exc, errors.ForeignKeyViolation):
        return NotFound(f"No chat {chat_id!r}.", chat_id=chat_id)
    return InvalidInput(f"Already stored ({exc.diag.message_primary or exc}).", chat_id=chat_id)


async def _counted(
    conn: Conn, *, address: str, symbol: str, decimals: int, day: date, now: datetime, skip: str | None = None,
) -> int:
    cursor = await conn.execute(
        "SELECT amount, decimals FROM ledger WHERE address = %s AND symbol = %s AND day = %s "
        "AND entry_id IS DISTINCT FROM %s "
        "AND (state = 'committed' OR (state = 'reserved' AND (expires_at IS NULL OR expires_at > %s)))",
        (address.lower(), symbol.upper(), day, skip, now),
    )
    return sum(rescale_up(int(amount), places, decimals) for amount, places in await cursor.fetchall())


async def _reserve(conn: Conn, *, entry: SpendEntry, cap: int | None, now: datetime, hold: bool) -> int | None:
    """One transaction under the ledger key's advisory lock: count, compare with ``cap``, reserve."""
    async with conn.transaction():
        key = f"ledger:{entry.address.lower()}:{entry.symbol.upper()}:{entry.day.isoformat()}"
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (advisory_key(key),))
        cursor = await conn.execute(
            "SELECT state, expires_at FROM ledger WHERE entry_id = %s FOR UPDATE", (entry.entry_id,)
        )
        row = await cursor.fetchone()
        live = row is not None and (
            row[0] == "committed" or (row[0] == "reserved" and (row[1] is None or row[1] > now))
        )
        if not live and cap is not None:
            counted = await _counted(conn, address=entry.address, symbol=entry.symbol, decimals=entry.decimals,
                                     day=entry.day, now=now, skip=entry.entry_id)
            if counted + entry.amount > cap:
                return counted
        expires = None if hold or entry.expires_at is None else _when(entry.expires_at)
        if row is None:
            await conn.execute(
                "INSERT INTO ledger (entry_id, address, symbol, decimals, amount, day, state, expires_at, updated_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, 'reserved', %s, %s)",
                (entry.entry_id, entry.address.lower(), entry.symbol.upper(), entry.decimals, entry.amount,
                 entry.day, expires, _now()),
            )
        elif row[0] != "committed":
            await conn.execute(
                "UPDATE ledger SET state = 'reserved', expires_at = %s, updated_at = %s WHERE entry_id = %s",
                (expires, _now(), entry.entry_id),
            )
    return None


async def _migrate(conn: Conn, url: str) -> None:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        cursor = await conn.execute("SELECT MAX(version) FROM schema_version")
        row = await cursor.fetchone()
        version = int(row[0]) if row and row[0] is not None else 0
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"The database at {_redacted(url)} has schema version {version}, newer than this Lunark's "
                f"{SCHEMA_VERSION}; upgrade Lunark or use another database.",
                version=version,
            )
        for target in sorted(v for v in _MIGRATIONS if v > version):
            await conn.execute(_MIGRATIONS[target].encode())  # no parameters: several statements at once
            version = target
        await conn.execute("DELETE FROM schema_version")
        await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))


def _redacted(url: str) -> str:
    """The URL without its password, for messages."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


@dataclass
class _Append:
    chat_id: str
    events: list[tuple[str, dict[str, Any], str]]
    """(type, the event without ``seq`` and ``ts``, its JSON without the closing brace)."""
    done: Callable[[list[EventRecord] | Exception], None]


_APPEND = (
    "WITH c AS (UPDATE chats SET last_seq = last_seq + %(n)s WHERE chat_id = %(chat)s "
    "RETURNING last_seq - %(n)s AS base) "
    "INSERT INTO events (chat_id, seq, type, payload, ts) "
    "SELECT %(chat)s, c.base + e.ord, e.type, e.head || ',\"seq\":' || (c.base + e.ord) || %(stamp)s, %(ts)s "
    "FROM c, unnest(%(types)s::text[], %(heads)s::text[]) WITH ORDINALITY AS e(type, head, ord) "
    "RETURNING seq"
)


async def _append_batch(conn: Conn, batch: Sequence[_Append], ts: float) -> list[int | Exception]:
    """Log every append of ``batch`` in one transaction; returns the seq before each append's first
    event, or ``NotFound`` in the place of an append whose chat does not exist.

    Statements run in chat order (each chat's appends in the order asked): two processes' batches
    then lock chat rows in the same order and cannot deadlock each other."""
    stamp = f',"ts":{ts!r}}}'
    order = sorted(range(len(batch)), key=lambda i: batch[i].chat_id)
    outcomes: list[int | Exception] = [0] * len(batch)
    async with conn.transaction(), conn.pipeline() as pipeline:
        cursors = []
        for i in order:
            append = batch[i]
            cursors.append((i, await conn.execute(_APPEND, {
                "n": len(append.events), "chat": append.chat_id, "stamp": stamp, "ts": ts,
                "types": [t for t, _, _ in append.events], "heads": [h for _, _, h in append.events],
            })))
        await pipeline.sync()
        for i, cursor in cursors:
            rows = await cursor.fetchall()
            chat_id = batch[i].chat_id
            outcomes[i] = min(row[0] for row in rows) - 1 if rows else NotFound(f"No chat {chat_id!r}.",
                                                                              chat_id=chat_id)
    return outcomes


class PostgresStore:
    """``Store`` on a Postgres database, shared by any number of server processes.

    >>> store = await PostgresStore.open("postgresql://lunark@db/lunark")   # doctest: +SKIP
    """

    def __init__(self, pool: AsyncConnectionPool[Conn], url: str) -> None:
        """Wrap an open pool; use ``PostgresStore.open`` to get one."""
        self._pool: AsyncConnectionPool[Conn] | None = pool
        self.url = url
        self._inflight: set[asyncio.Task[Any]] = set()
        self._appends: list[_Append] = []
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

    async def _fetch(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[Any]:
        async def fetch(conn: Conn) -> list[Any]:
            cursor = await conn.execute(sql, params)
            return await cursor.fetchall() if cursor.description is not None else []

        return await self._run(fetch)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Conn]:
        """A pooled connection (autocommit) for the cluster's own queries."""
        if self._pool is None:
            raise LunarkError("The store is closed.")
        async with self._pool.connection() as conn:
            yield conn

    # chats

    async def create_chat(
        self, owner: str, chain_id: int, *, chat_id: str | None = None, title: str | None = None
    ) -> ChatRecord:
        record = ChatRecord(
            chat_id=chat_id or new_id("chat_"), owner=owner.lower(), chain_id=chain_id,
            created_at=datetime.now(UTC), title=title,
        )
        try:
            await self._fetch(
                f"INSERT INTO chats ({_CHAT_COLUMNS}) VALUES (%s, %s, %s, %s, %s)",
                (record.chat_id, record.owner, chain_id, title, record.created_at),
            )
        except errors.UniqueViolation as exc:
            raise InvalidInput(f"A chat {record.chat_id!r} already exists.", chat_id=record.chat_id) from exc
        return record

    async def get_chat(self, chat_id: str) -> ChatRecord | None:
        rows = await self._fetch(f"SELECT {_CHAT_COLUMNS} FROM chats WHERE chat_id = %s", (chat_id,))
        return _chat(rows[0]) if rows else None

    async def list_chats(self, owner: str, *, limit: int = 100) -> list[ChatRecord]:
        rows = await self._fetch(
            f"SELECT {_CHAT_COLUMNS} FROM chats WHERE owner = %s ORDER BY created_at DESC, id DESC LIMIT %s",
            (owner.lower(), limit),
        )
        return [_chat(row) for row in rows]

    async def _update_chat(self, chat_id: str, column: str, value: Any) -> None:
        rows = await self._fetch(
            f"UPDATE chats SET {column} = %s WHERE chat_id = %s RETURNING chat_id", (value, chat_id)
        )
        if not rows:
            raise NotFound(f"No chat {chat_id!r}.", chat_id=chat_id)

    async def set_chat_network(self, chat_id: str, chain_id: int) -> None:
        await self._update_chat(chat_id, "chain_id", chain_id)

    async def set_chat_title(self, chat_id: str, title: str) -> None:
        await self._update_chat(chat_id, "title", title)

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

        async def insert(conn: Conn) -> tuple[MessageRecord, bool]:
            try:
                cursor = await conn.execute(
                    f"INSERT INTO messages ({_MESSAGE_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (chat_id, client_message_id) DO NOTHING RETURNING id",
                    (record.message_id, chat_id, role, content, client_message_id, finish_reason, record.created_at),
                )
            except (errors.ForeignKeyViolation, errors.UniqueViolation) as exc:
                raise _refused(exc, chat_id) from exc
            if await cursor.fetchall():
                return record, True
            # The unique index refused a second copy (a concurrent one waited for the first's commit).
            cursor = await conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE chat_id = %s AND client_message_id = %s",
                (chat_id, client_message_id),
            )
            return _message(await cursor.fetchone()), False

        return await self._run(insert)

    async def list_messages(self, chat_id: str) -> list[MessageRecord]:
        rows = await self._fetch(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE chat_id = %s ORDER BY id", (chat_id,)
        )
        return [_message(row) for row in rows]

    # the event log

    async def append_events(
        self, chat_id: str, events: Sequence[tuple[str, dict[str, Any]]]
    ) -> list[EventRecord]:
        """Number and log ``events``. As in the SQLite store, appends are group-committed in the
        order they were asked for: the ones that arrive while a batch commits go together in the
        next transaction (one round trip, pipelined). Each append is one statement that moves its
        chat row's ``last_seq`` and inserts the events, so the row lock numbers appends from any
        process one after the other."""
        return await appended(self.append_events_soon, chat_id, events)

    def append_events_soon(
        self, chat_id: str, events: Sequence[tuple[str, dict[str, Any]]],
        done: Callable[[list[EventRecord] | Exception], None],
    ) -> None:
        """``append_events`` without awaiting: ``done`` gets the records (or the error) on the event
        loop once they are committed, each with the JSON that was logged as its ``text``. Appends
        are answered in the order they were made (as in the SQLite store).

        Raises at once what refuses the events before anything is logged (unserializable payloads,
        a closed store)."""
        if self._pool is None:
            raise LunarkError("The store is closed.")
        prepared = []
        for type_, payload in events:
            event = {**payload, "type": type_, "chat_id": chat_id}
            prepared.append((type_, event, _dumps(event)[:-1]))  # refused here, before anything is logged
        self._appends.append(_Append(chat_id, prepared, done))
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
                stamp = f',"ts":{ts!r}}}'
                for append, outcome in zip(batch, outcomes, strict=True):
                    result: list[EventRecord] | Exception
                    if isinstance(outcome, Exception):
                        result = outcome
                    else:
                        result = []
                        for seq, (type_, event, head) in enumerate(append.events, outcome + 1):
                            event["seq"], event["ts"] = seq, ts
                            result.append(EventRecord(chat_id=append.chat_id, seq=seq, type=type_, payload=event,
                                                      ts=ts, text=f'{head},"seq":{seq}{stamp}'))
                    try:
                        append.done(result)
                    except Exception:  # one caller's failure must not keep the others waiting
                        logger.exception("handling the append of chat %s failed", append.chat_id)
        finally:
            self._appender = None

    async def append_event(self, chat_id: str, type: str, payload: dict[str, Any]) -> EventRecord:
        return (await self.append_events(chat_id, [(type, payload)]))[0]

    async def events_after(
        self, chat_id: str, after_seq: int, *, limit: int | None = None
    ) -> list[EventRecord]:
        rows = await self._fetch(
            "SELECT seq, type, payload, ts FROM events WHERE chat_id = %s AND seq > %s ORDER BY seq LIMIT %s",
            (chat_id, after_seq, limit),
        )
        return [
            EventRecord(chat_id=chat_id, seq=row[0], type=row[1], payload=json.loads(row[2]), ts=row[3])
            for row in rows
        ]

    async def last_seq(self, chat_id: str) -> int:
        rows = await self._fetch("SELECT last_seq FROM chats WHERE chat_id = %s", (chat_id,))
        return int(rows[0][0]) if rows else 0

    async def last_seqs(self, chat_ids: Sequence[str]) -> dict[str, int]:
        """``last_seq`` of many chats in one query (the relay's check of its subscribers)."""
        rows = await self._fetch("SELECT chat_id, last_seq FROM chats WHERE chat_id = ANY(%s)", (list(chat_ids),))
        return {str(row[0]): int(row[1]) for row in rows}

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
        entry = _dumps([{**update, "ts": update.get("ts", time.time())}])
        try:
            rows = await self._fetch(
                "INSERT INTO transactions (chat_id, tx_hash, call_id, chain_id, status, history, updated_at) "
                "VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s) "
                "ON CONFLICT (chat_id, tx_hash) DO UPDATE SET call_id = excluded.call_id, "
                "chain_id = excluded.chain_id, status = excluded.status, "
                "history = transactions.history || excluded.history, updated_at = excluded.updated_at "
                f"RETURNING {_TX_COLUMNS}",
                (chat_id, tx_hash, call_id, chain_id, status, entry, _now()),
            )
        except errors.ForeignKeyViolation as exc:
            raise _refused(exc, chat_id) from exc
        return _tx_record(rows[0])

    async def list_transactions(self, chat_id: str) -> list[TransactionRecord]:
        rows = await self._fetch(
            f"SELECT {_TX_COLUMNS} FROM transactions WHERE chat_id = %s ORDER BY id", (chat_id,)
        )
        return [_tx_record(row) for row in rows]

    # the spend ledger (lunark.tools.policy.SpendLedger), in base units

    async def counted(self, address: str, symbol: str, decimals: int, day: date, *, now: datetime) -> int:
        when = _when(now)

        async def count(conn: Conn) -> int:
            return await _counted(conn, address=address, symbol=symbol, decimals=decimals, day=day, now=when)

        return await self._run(count)

    async def reserve(self, entry: SpendEntry, cap: int | None, *, now: datetime) -> int | None:
        when = _when(now)
        return await self._run(lambda conn: _reserve(conn, entry=entry, cap=cap, now=when, hold=False))

    async def hold(self, entry: SpendEntry, cap: int | None, *, now: datetime) -> int | None:
        when = _when(now)
        return await self._run(lambda conn: _reserve(conn, entry=entry, cap=cap, now=when, hold=True))

    async def commit(self, entry_id: str, tx_hash: str) -> None:
        await self._fetch(
            "UPDATE ledger SET state = 'committed', expires_at = NULL, tx_hash = %s, updated_at = %s "
            "WHERE entry_id = %s", (tx_hash.lower(), _now(), entry_id),
        )

    async def release(self, entry_id: str) -> None:
        await self._fetch(
            "UPDATE ledger SET state = 'released', updated_at = %s WHERE entry_id = %s", (_now(), entry_id)
        )

    # approvals

    async def put_approval(self, record: ApprovalRecord) -> None:
        await self._fetch(
            "INSERT INTO approvals (approval_id, chat_id, owner, state, request, proposals, expires_at, "
            'decisions, "by", updated_at) VALUES (%s, %s, %s, %s, %s::jsonb, %s::jsonb, %s, %s::jsonb, %s, %s) '
            "ON CONFLICT DO NOTHING",
            (record.approval_id, record.chat_id, record.owner.lower(), record.state, _dumps(record.request),
             _dumps(record.proposals), _when(record.expires_at),
             None if record.decisions is None else _dumps(record.decisions), record.by, _now()),
        )

    async def get_approval(self, approval_id: str) -> ApprovalRecord | None:
        rows = await self._fetch(f"SELECT {_APPROVAL_COLUMNS} FROM approvals WHERE approval_id = %s", (approval_id,))
        return _approval(rows[0]) if rows else None

    async def claim_approval(
        self, approval_id: str, decisions: Sequence[Mapping[str, Any]], by: str
    ) -> ApprovalRecord | None:
        rows = await self._fetch(
            'UPDATE approvals SET state = \'decided\', decisions = %s::jsonb, "by" = %s, updated_at = %s '
            f"WHERE approval_id = %s AND state = 'pending' RETURNING {_APPROVAL_COLUMNS}",
            (_dumps(list(decisions)), by, _now(), approval_id),
        )
        return _approval(rows[0]) if rows else None

    async def finish_approval(self, approval_id: str) -> None:
        await self._fetch(
            "UPDATE approvals SET state = CASE WHEN \"by\" = 'timeout' THEN 'expired' ELSE 'done' END, "
            "updated_at = %s WHERE approval_id = %s AND state = 'decided'", (_now(), approval_id),
        )

    async def reopen_approval(self, approval_id: str) -> None:
        await self._fetch(
            "UPDATE approvals SET state = 'pending', decisions = NULL, \"by\" = NULL, updated_at = %s "
            "WHERE approval_id = %s AND state IN ('decided', 'done')", (_now(), approval_id),
        )

    async def approvals(self, states: Sequence[str]) -> list[ApprovalRecord]:
        rows = await self._fetch(
            f"SELECT {_APPROVAL_COLUMNS} FROM approvals WHERE state = ANY(%s) ORDER BY updated_at", (list(states),)
        )
        return [_approval(row) for row in rows]

    async def due_approvals(
        self, now: datetime, *, limit: int = 100, after: ApprovalRecord | None = None
    ) -> list[ApprovalRecord]:
        page = "" if after is None else "AND (expires_at, approval_id) > (%s, %s) "
        rows = await self._fetch(
            f"SELECT {_APPROVAL_COLUMNS} FROM approvals WHERE state = 'pending' AND expires_at <= %s {page}"
            "ORDER BY expires_at, approval_id LIMIT %s",
            (_when(now), *(() if after is None else (_when(after.expires_at), after.approval_id)), limit),
        )
        return [_approval(row) for row in rows]

    async def next_expiry(self) -> datetime | None:
        rows = await self._fetch("SELECT min(expires_at) FROM approvals WHERE state = 'pending'")
        return _utc(rows[0][0]) if rows and rows[0][0] is not None else None

    # settlements

    async def open_settlement(self, record: SettlementRecord) -> SettlementRecord:
        async def insert(conn: Conn) -> SettlementRecord:
            await conn.execute(
                f"INSERT INTO settlements ({_SETTLEMENT_COLUMNS}, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, "
                "%s, %s::jsonb, %s::jsonb, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s) ON CONFLICT DO NOTHING",
                (record.settlement_id, record.approval_id, record.call_id, record.chat_id, record.owner.lower(),
                 record.chain_id, record.state, record.done, _dumps(record.prepared), _dumps(record.decision),
                 _when(record.expires_at), record.tx_hash, record.nonce, record.raw_tx, record.first_block,
                 record.late, _dumps(record.history), _now(), _now()),
            )
            cursor = await conn.execute(
                f"SELECT {_SETTLEMENT_COLUMNS} FROM settlements WHERE settlement_id = %s", (record.settlement_id,)
            )
            return _settlement(await cursor.fetchone())

        return await self._run(insert)

    async def get_settlement(self, settlement_id: str) -> SettlementRecord | None:
        rows = await self._fetch(
            f"SELECT {_SETTLEMENT_COLUMNS} FROM settlements WHERE settlement_id = %s", (settlement_id,)
        )
        return _settlement(rows[0]) if rows else None

    async def advance_settlement(
        self, settlement_id: str, state: str, evidence: Mapping[str, Any], *, done: bool | None = None,
        **fields: Any,
    ) -> SettlementRecord:
        unknown = set(fields) - {"tx_hash", "nonce", "raw_tx", "first_block"}
        if unknown:
            raise InvalidInput(f"A settlement has no fields {sorted(unknown)}.")
        entry = _dumps([{"state": state, "ts": round(time.time(), 3), **evidence}])
        sets = "".join(f", {name} = %s" for name in fields)

        async def advance(conn: Conn) -> SettlementRecord:
            cursor = await conn.execute(
                f"UPDATE settlements SET state = %s, done = %s, history = history || %s::jsonb, "
                f"updated_at = %s{sets} WHERE settlement_id = %s AND NOT done RETURNING {_SETTLEMENT_COLUMNS}",
                (state, state in FINAL_STATES if done is None else done, entry, _now(), *fields.values(),
                 settlement_id),
            )
            row = await cursor.fetchone()
            if row is None:
                cursor = await conn.execute(
                    f"SELECT {_SETTLEMENT_COLUMNS} FROM settlements WHERE settlement_id = %s", (settlement_id,)
                )
                row = await cursor.fetchone()
                if row is None:
                    raise NotFound(f"No settlement {settlement_id!r}.", settlement_id=settlement_id)
            return _settlement(row)

        return await self._run(advance)

    async def bind_hash(self, settlement_id: str, tx_hash: str) -> str:
        rows = await self._fetch(
            "INSERT INTO settlement_hashes (tx_hash, settlement_id) VALUES (%s, %s) "
            "ON CONFLICT (tx_hash) DO UPDATE SET tx_hash = excluded.tx_hash RETURNING settlement_id",
            (tx_hash.lower(), settlement_id),
        )
        return str(rows[0][0])

    async def hash_settling(self, tx_hash: str) -> str | None:
        rows = await self._fetch("SELECT settlement_id FROM settlement_hashes WHERE tx_hash = %s", (tx_hash.lower(),))
        return str(rows[0][0]) if rows else None

    async def nonce_settling(self, chain_id: int, owner: str, nonce: int, settlement_id: str) -> str | None:
        rows = await self._fetch(
            "SELECT settlement_id FROM settlements WHERE chain_id = %s AND owner = %s AND nonce = %s "
            "AND settlement_id <> %s AND state NOT IN ('mismatch', 'expired', 'dropped', 'replaced', 'failed') "
            "LIMIT 1",
            (chain_id, owner.lower(), nonce, settlement_id),
        )
        return str(rows[0][0]) if rows else None

    async def settlements(self, *, chat_id: str | None = None, unfinished: bool = False) -> list[SettlementRecord]:
        where, params = [], []
        if chat_id is not None:
            where.append("chat_id = %s")
            params.append(chat_id)
        if unfinished:
            where.append("NOT done")
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = await self._fetch(
            f"SELECT {_SETTLEMENT_COLUMNS} FROM settlements{clause} ORDER BY created_at, id", tuple(params)
        )
        return [_settlement(row) for row in rows]

    # sign-in

    async def add_nonce(self, nonce: str, expires_at: datetime) -> None:
        try:
            await self._fetch("INSERT INTO nonces (nonce, expires_at) VALUES (%s, %s)", (nonce, _when(expires_at)))
        except errors.UniqueViolation as exc:
            raise InvalidInput("That nonce was already issued.") from exc

    async def consume_nonce(self, nonce: str, now: datetime) -> bool:
        when = _when(now)
        # One DELETE both takes the nonce (so a second consume finds nothing) and sweeps expired ones.
        rows = await self._fetch(
            "DELETE FROM nonces WHERE nonce = %s OR expires_at <= %s RETURNING nonce, expires_at", (nonce, when)
        )
        return any(row[0] == nonce and row[1] > when for row in rows)

    async def add_session(self, token_hash: str, address: str, expires_at: datetime) -> None:
        try:
            await self._fetch(
                "INSERT INTO sessions (token_hash, address, expires_at) VALUES (%s, %s, %s)",
                (token_hash, address, _when(expires_at)),
            )
        except errors.UniqueViolation as exc:
            raise InvalidInput("A session with that token already exists.") from exc

    async def get_session(self, token_hash: str, now: datetime) -> str | None:
        rows = await self._fetch(
            "SELECT address FROM sessions WHERE token_hash = %s AND expires_at > %s", (token_hash, _when(now))
        )
        return str(rows[0][0]) if rows else None

    async def delete_session(self, token_hash: str) -> str | None:
        rows = await self._fetch("DELETE FROM sessions WHERE token_hash = %s RETURNING address", (token_hash,))
        return str(rows[0][0]) if rows else None

    async def delete_sessions(self, address: str) -> int:
        rows = await self._fetch(
            "DELETE FROM sessions WHERE lower(address) = %s RETURNING token_hash", (address.lower(),)
        )
        return len(rows)

    async def stored_sessions(self, token_hashes: Sequence[str]) -> set[str]:
        rows = await self._fetch("SELECT token_hash FROM sessions WHERE token_hash = ANY(%s)", (list(token_hashes),))
        return {str(row[0]) for row in rows}

    async def healthy(self) -> bool:
        try:
            async with asyncio.timeout(3):
                return await self._fetch("SELECT 1") == [(1,)]
        except (psycopg.Error, LunarkError, TimeoutError, OSError):
            return False


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
