"""The embedded store: one SQLite file in WAL mode, on a thread of its own.

One connection serves the whole process, owned by one worker thread. Each
store operation is one function run on that thread, whole: a transaction never
spans awaits, so nothing from another task can land inside it, and an operation
costs one hop between the event loop and the thread however many statements it
runs. The thread runs operations in the order they were asked for.

Event appends are group-committed: the appends that arrive while one batch
commits go together in the next transaction, each chat's events numbered in
order. The ``(chat_id, seq)`` primary key and ``BEGIN IMMEDIATE`` keep ``seq``
contiguous even when another process writes to the same file.

Datetimes are stored as fixed-width UTC ISO 8601 text (``...+00:00``), so text
order is time order; amounts as decimal text; events as compact JSON.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, cast

from lunark.errors import ConfigError, InvalidAmount, InvalidInput, LunarkError, NotFound
from lunark.ids import new_id
from lunark.store.base import ChatRecord, EventRecord, MessageRecord, Role, TransactionRecord

__all__ = ["SCHEMA_VERSION", "SqliteStore"]

SCHEMA_VERSION = 1
"""The schema this code writes; a database with a newer one is refused."""

_SCHEMA = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version (version) SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM schema_version);

CREATE TABLE IF NOT EXISTS chats (
    chat_id    TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    chain_id   INTEGER NOT NULL,
    title      TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chats_by_owner ON chats (owner, created_at);

CREATE TABLE IF NOT EXISTS messages (
    id                INTEGER PRIMARY KEY,
    message_id        TEXT NOT NULL UNIQUE,
    chat_id           TEXT NOT NULL REFERENCES chats (chat_id) ON DELETE CASCADE,
    role              TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    content           TEXT NOT NULL,
    client_message_id TEXT,
    finish_reason     TEXT,
    created_at        TEXT NOT NULL
);
-- NULLs are distinct in a UNIQUE index: only messages with a client id are deduplicated.
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_client_id ON messages (chat_id, client_message_id);

CREATE TABLE IF NOT EXISTS events (
    chat_id TEXT NOT NULL REFERENCES chats (chat_id) ON DELETE CASCADE,
    seq     INTEGER NOT NULL CHECK (seq > 0),
    type    TEXT NOT NULL,
    payload TEXT NOT NULL,
    ts      REAL NOT NULL,
    PRIMARY KEY (chat_id, seq)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS transactions (
    id         INTEGER PRIMARY KEY,
    chat_id    TEXT NOT NULL REFERENCES chats (chat_id) ON DELETE CASCADE,
    tx_hash    TEXT NOT NULL,
    call_id    TEXT NOT NULL,
    chain_id   INTEGER NOT NULL,
    status     TEXT NOT NULL,
    history    TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (chat_id, tx_hash)
);

CREATE TABLE IF NOT EXISTS spend (
    tx_hash TEXT PRIMARY KEY,
    address TEXT NOT NULL,
    symbol  TEXT NOT NULL,
    day     TEXT NOT NULL,
    amount  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS spend_by_day ON spend (address, symbol, day);

CREATE TABLE IF NOT EXISTS nonces (
    nonce      TEXT PRIMARY KEY,
    expires_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS nonces_by_expiry ON nonces (expires_at);

CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    address    TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
COMMIT;
"""

_CHAT_COLUMNS = "chat_id, owner, chain_id, title, created_at"
_MESSAGE_COLUMNS = "message_id, chat_id, role, content, client_message_id, finish_reason, created_at"
_TX_COLUMNS = "chat_id, call_id, tx_hash, chain_id, status, history, updated_at"


def _when(value: datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"{value!r} has no time zone; pass an aware datetime (e.g. in UTC).")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _dumps(value: Any) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"Not storable as JSON: {exc}.") from exc


def _chat(row: Any) -> ChatRecord:
    return ChatRecord(
        chat_id=row[0], owner=row[1], chain_id=row[2], title=row[3],
        created_at=datetime.fromisoformat(row[4]),
    )


def _message(row: Any) -> MessageRecord:
    return MessageRecord(
        message_id=row[0], chat_id=row[1], role=cast(Role, row[2]), content=row[3],
        client_message_id=row[4], finish_reason=row[5], created_at=datetime.fromisoformat(row[6]),
    )


def _tx_record(row: Any) -> TransactionRecord:
    return TransactionRecord(
        chat_id=row[0], call_id=row[1], tx_hash=row[2], chain_id=row[3], status=row[4],
        history=json.loads(row[5]), updated_at=datetime.fromisoformat(row[6]),
    )


def _refused(exc: sqlite3.IntegrityError, chat_id: str) -> LunarkError:
    if "FOREIGN KEY" in str(exc):
        return NotFound(f"No chat {chat_id!r}.", chat_id=chat_id)
    return InvalidInput(f"Already stored ({exc}).", chat_id=chat_id)


_T = TypeVar("_T")


def _connect(path: str, busy_timeout: float) -> sqlite3.Connection:
    # Autocommit (isolation_level=None): a statement alone is its own transaction, and
    # multi-statement operations say BEGIN IMMEDIATE themselves.
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA foreign_keys = ON")
        db.executescript(_SCHEMA)
        version = int(db.execute("SELECT MAX(version) FROM schema_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"The database {path!r} has schema version {version}, newer than this "
                f"Lunark's {SCHEMA_VERSION}; upgrade Lunark or use another database file.",
                version=version,
            )
    except BaseException:
        db.close()
        raise
    return db


@dataclass
class _Append:
    chat_id: str
    events: list[tuple[str, dict[str, Any], str]]
    """(type, the event without ``seq`` and ``ts``, its JSON without the closing brace)."""
    done: asyncio.Future[list[EventRecord]]


def _append_batch(db: sqlite3.Connection, batch: Sequence[_Append], ts: float) -> list[int | Exception]:
    """Log every append of ``batch`` in one transaction; returns the seq before each append's first
    event. One append refused (its chat is gone, say) is rolled back alone and reported in its place.

    Runs on the store's thread, so it does as little in Python as it can: the events' JSON was made
    on the event loop, and only its ``seq`` and ``ts`` are added here."""
    stamp = f',"ts":{ts!r}}}'
    outcomes: list[int | Exception] = []
    db.execute("BEGIN IMMEDIATE")
    try:
        for append in batch:
            chat_id = append.chat_id
            db.execute("SAVEPOINT append")
            try:
                last = int(db.execute(
                    "SELECT COALESCE(MAX(seq), 0) FROM events WHERE chat_id = ?", (chat_id,)
                ).fetchone()[0])
                db.executemany(
                    "INSERT INTO events (chat_id, seq, type, payload, ts) VALUES (?, ?, ?, ?, ?)",
                    [(chat_id, seq, type_, f'{head},"seq":{seq}{stamp}', ts)
                     for seq, (type_, _, head) in enumerate(append.events, last + 1)],
                )
            except sqlite3.IntegrityError as exc:
                db.execute("ROLLBACK TO append")
                outcomes.append(_refused(exc, chat_id))
            else:
                outcomes.append(last)
            db.execute("RELEASE append")
        db.execute("COMMIT")
    except BaseException:
        # Also on an error the loop above does not expect: a transaction left open would swallow the
        # next operation's writes. If COMMIT already ran, ROLLBACK finds no transaction: fine.
        with suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise
    return outcomes


class SqliteStore:
    """``Store`` on one SQLite file (or ``":memory:"``).

    >>> store = await SqliteStore.open("data/lunark.db")   # doctest: +SKIP
    >>> chat = await store.create_chat("0xAbC...", 31337)   # doctest: +SKIP
    """

    def __init__(self, db: sqlite3.Connection, worker: ThreadPoolExecutor) -> None:
        """Wrap a connection owned by ``worker``'s thread; use ``SqliteStore.open`` to get one."""
        self._db: sqlite3.Connection | None = db
        self._worker = worker
        self._appends: list[_Append] = []
        self._appender: asyncio.Future[None] | None = None

    @classmethod
    async def open(cls, path: str | Path, *, busy_timeout: float = 5.0) -> SqliteStore:
        """Open (creating if needed) the database at ``path`` and its schema.

        ``busy_timeout`` is how long, in seconds, a write waits for another
        process holding the database's write lock.
        """
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lunark-sqlite")
        try:
            db = await asyncio.get_running_loop().run_in_executor(worker, _connect, str(path), busy_timeout)
        except BaseException:
            worker.shutdown(wait=False)
            raise
        return cls(db, worker)

    async def __aenter__(self) -> SqliteStore:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Finish the writes already asked for, then close. Safe to call twice."""
        if self._appender is not None:
            with suppress(Exception):
                await asyncio.shield(self._appender)
        db, self._db = self._db, None
        if db is not None:
            # The worker runs calls in order: the close waits for every call before it.
            await asyncio.get_running_loop().run_in_executor(self._worker, db.close)
            self._worker.shutdown(wait=False)

    async def _call(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``fn`` with the connection on the store's thread: one hop, whatever ``fn`` does.

        A caller cancelled while ``fn`` runs stops waiting; ``fn`` still finishes (or rolls back) whole.
        """
        if self._db is None:
            raise LunarkError("The store is closed.")
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn, self._db)

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return await self._call(lambda db: db.execute(sql, params).fetchall())

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
                f"INSERT INTO chats ({_CHAT_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                (record.chat_id, record.owner, chain_id, title, _when(record.created_at)),
            )
        except sqlite3.IntegrityError as exc:
            raise InvalidInput(f"A chat {record.chat_id!r} already exists.", chat_id=record.chat_id) from exc
        return record

    async def get_chat(self, chat_id: str) -> ChatRecord | None:
        rows = await self._fetch(f"SELECT {_CHAT_COLUMNS} FROM chats WHERE chat_id = ?", (chat_id,))
        return _chat(rows[0]) if rows else None

    async def list_chats(self, owner: str, *, limit: int = 100) -> list[ChatRecord]:
        rows = await self._fetch(
            f"SELECT {_CHAT_COLUMNS} FROM chats WHERE owner = ? ORDER BY created_at DESC, rowid DESC LIMIT ?",
            (owner.lower(), limit),
        )
        return [_chat(row) for row in rows]

    async def _update_chat(self, chat_id: str, column: str, value: Any) -> None:
        rows = await self._fetch(
            f"UPDATE chats SET {column} = ? WHERE chat_id = ? RETURNING chat_id", (value, chat_id)
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

        def insert(db: sqlite3.Connection) -> tuple[MessageRecord, bool]:
            try:
                inserted = db.execute(
                    f"INSERT INTO messages ({_MESSAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (chat_id, client_message_id) DO NOTHING RETURNING id",
                    (record.message_id, chat_id, role, content, client_message_id, finish_reason,
                     _when(record.created_at)),
                ).fetchall()
            except sqlite3.IntegrityError as exc:
                raise _refused(exc, chat_id) from exc
            if inserted:
                return record, True
            # The unique index refused a second copy: hand back the first one.
            row = db.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE chat_id = ? AND client_message_id = ?",
                (chat_id, client_message_id),
            ).fetchone()
            return _message(row), False

        return await self._call(insert)

    async def list_messages(self, chat_id: str) -> list[MessageRecord]:
        rows = await self._fetch(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE chat_id = ? ORDER BY id", (chat_id,)
        )
        return [_message(row) for row in rows]

    # the event log

    async def append_events(
        self, chat_id: str, events: Sequence[tuple[str, dict[str, Any]]]
    ) -> list[EventRecord]:
        """Number and log ``events``. Appends of concurrent chats share one transaction (a group
        commit): while one commits, the next ones gather, so the log costs one thread hop and one
        commit per batch, not per event."""
        if not events:
            return []
        if self._db is None:
            raise LunarkError("The store is closed.")
        prepared = []
        for type_, payload in events:
            event = {**payload, "type": type_, "chat_id": chat_id}
            prepared.append((type_, event, _dumps(event)[:-1]))  # refused here, before anything is logged
        done: asyncio.Future[list[EventRecord]] = asyncio.get_running_loop().create_future()
        self._appends.append(_Append(chat_id, prepared, done))
        if self._appender is None:
            self._appender = asyncio.ensure_future(self._append_pending())
        return await done

    async def _append_pending(self) -> None:
        try:
            while self._appends:
                batch, self._appends = self._appends, []
                ts = round(time.time(), 3)  # milliseconds: finer is noise on the wire
                try:
                    outcomes = await self._call(partial(_append_batch, batch=batch, ts=ts))
                except Exception as exc:  # BEGIN or COMMIT failed (locked, disk full...): none was logged
                    outcomes = [exc] * len(batch)
                for append, outcome in zip(batch, outcomes, strict=True):
                    if append.done.done():
                        continue  # its caller was cancelled; the events are logged all the same
                    if isinstance(outcome, Exception):
                        append.done.set_exception(outcome)
                        continue
                    records = []
                    for seq, (type_, event, _) in enumerate(append.events, outcome + 1):
                        event["seq"], event["ts"] = seq, ts
                        records.append(EventRecord(chat_id=append.chat_id, seq=seq, type=type_, payload=event, ts=ts))
                    append.done.set_result(records)
        finally:
            self._appender = None

    async def append_event(self, chat_id: str, type: str, payload: dict[str, Any]) -> EventRecord:
        return (await self.append_events(chat_id, [(type, payload)]))[0]

    async def events_after(
        self, chat_id: str, after_seq: int, *, limit: int | None = None
    ) -> list[EventRecord]:
        rows = await self._fetch(
            "SELECT seq, type, payload, ts FROM events WHERE chat_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (chat_id, after_seq, -1 if limit is None else limit),
        )
        return [
            EventRecord(chat_id=chat_id, seq=row[0], type=row[1], payload=json.loads(row[2]), ts=row[3])
            for row in rows
        ]

    async def last_seq(self, chat_id: str) -> int:
        rows = await self._fetch("SELECT COALESCE(MAX(seq), 0) FROM events WHERE chat_id = ?", (chat_id,))
        return int(rows[0][0])

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
        entry = _dumps({**update, "ts": update.get("ts", time.time())})
        try:
            # One statement: the upsert appends to the stored history, so no read-modify-write.
            rows = await self._fetch(
                "INSERT INTO transactions (chat_id, tx_hash, call_id, chain_id, status, history, updated_at) "
                "VALUES (?, ?, ?, ?, ?, json_array(json(?)), ?) "
                "ON CONFLICT (chat_id, tx_hash) DO UPDATE SET call_id = excluded.call_id, "
                "chain_id = excluded.chain_id, status = excluded.status, "
                "history = json_insert(history, '$[#]', json(?)), updated_at = excluded.updated_at "
                f"RETURNING {_TX_COLUMNS}",
                (chat_id, tx_hash, call_id, chain_id, status, entry, _now(), entry),
            )
        except sqlite3.IntegrityError as exc:
            raise _refused(exc, chat_id) from exc
        return _tx_record(rows[0])

    async def list_transactions(self, chat_id: str) -> list[TransactionRecord]:
        rows = await self._fetch(
            f"SELECT {_TX_COLUMNS} FROM transactions WHERE chat_id = ? ORDER BY id", (chat_id,)
        )
        return [_tx_record(row) for row in rows]

    # the spend ledger (lunark.tools.policy.SpendLedger)

    async def spent(self, address: str, symbol: str, day: date) -> Decimal:
        rows = await self._fetch(
            "SELECT amount FROM spend WHERE address = ? AND symbol = ? AND day = ?",
            (address.lower(), symbol.upper(), day.isoformat()),
        )
        return sum((Decimal(row[0]) for row in rows), Decimal(0))

    async def record(self, address: str, symbol: str, amount: Decimal, tx_hash: str, day: date) -> None:
        if not amount.is_finite() or amount < 0:
            raise InvalidAmount(f"A spent amount is a finite number >= 0, not {amount}.", value=str(amount))
        await self._fetch(
            "INSERT INTO spend (tx_hash, address, symbol, day, amount) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (tx_hash) DO UPDATE SET address = excluded.address, symbol = excluded.symbol, "
            "day = excluded.day, amount = excluded.amount",
            (tx_hash.lower(), address.lower(), symbol.upper(), day.isoformat(), str(amount)),
        )

    # sign-in

    async def add_nonce(self, nonce: str, expires_at: datetime) -> None:
        try:
            await self._fetch("INSERT INTO nonces (nonce, expires_at) VALUES (?, ?)", (nonce, _when(expires_at)))
        except sqlite3.IntegrityError as exc:
            raise InvalidInput("That nonce was already issued.") from exc

    async def consume_nonce(self, nonce: str, now: datetime) -> bool:
        when = _when(now)
        # One DELETE both takes the nonce (so a second consume finds nothing) and sweeps
        # expired ones, which unauthenticated nonce requests would otherwise pile up.
        rows = await self._fetch(
            "DELETE FROM nonces WHERE nonce = ? OR expires_at <= ? RETURNING nonce, expires_at", (nonce, when)
        )
        return any(row[0] == nonce and row[1] > when for row in rows)

    async def add_session(self, token_hash: str, address: str, expires_at: datetime) -> None:
        try:
            await self._fetch(
                "INSERT INTO sessions (token_hash, address, expires_at) VALUES (?, ?, ?)",
                (token_hash, address, _when(expires_at)),
            )
        except sqlite3.IntegrityError as exc:
            raise InvalidInput("A session with that token already exists.") from exc

    async def get_session(self, token_hash: str, now: datetime) -> str | None:
        rows = await self._fetch(
            "SELECT address FROM sessions WHERE token_hash = ? AND expires_at > ?", (token_hash, _when(now))
        )
        return str(rows[0][0]) if rows else None

    async def delete_session(self, token_hash: str) -> str | None:
        rows = await self._fetch("DELETE FROM sessions WHERE token_hash = ? RETURNING address", (token_hash,))
        return str(rows[0][0]) if rows else None

    async def delete_sessions(self, address: str) -> int:
        rows = await self._fetch(
            "DELETE FROM sessions WHERE lower(address) = ? RETURNING token_hash", (address.lower(),)
        )
        return len(rows)

    async def healthy(self) -> bool:
        try:
            return await self._fetch("SELECT 1") == [(1,)]
        except (sqlite3.Error, ValueError, LunarkError):
            return False
