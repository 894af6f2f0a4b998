"""The embedded store: one SQLite file in WAL mode, on a thread of its own.

One connection serves the whole process, owned by one worker thread. Each
store operation is one function run on that thread, whole: a transaction never
spans awaits, so nothing from another task can land inside it, and an operation
costs one hop between the event loop and the thread however many statements it
runs. The thread runs operations in the order they were asked for.

Event appends are group-committed: the appends that arrive while one batch
commits go together in the next transaction, each chat's events numbered in
order. The ``(chat_id, seq)`` primary key and ``BEGIN IMMEDIATE`` keep ``seq``
contiguous even when another process writes to the same file. A batch is handed
to the thread as soon as the one before it is done, and its outcome comes back
to the event loop in one callback, which answers every append of the batch in
the order they were made (``append_events_soon`` takes a plain callback, for
the hub's token path: no task or future per append).

Datetimes are stored as fixed-width UTC ISO 8601 text (``...+00:00``), so text
order is time order; amounts as decimal text; events as compact JSON.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, cast

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

__all__ = ["SCHEMA_VERSION", "SqliteStore"]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 3
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

_MIGRATIONS: dict[int, str] = {
    # 2: the money path as durable records: approvals, settlements, and the spend ledger in base
    # units with reservations (the v1 `spend` table of whole-unit decimals is no longer read).
    2: """
CREATE TABLE IF NOT EXISTS approvals (
    approval_id TEXT PRIMARY KEY,
    chat_id     TEXT NOT NULL,
    owner       TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('pending', 'decided', 'done', 'expired')),
    request     TEXT NOT NULL,
    proposals   TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    decisions   TEXT,
    by          TEXT,
    updated_at  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS approvals_by_state ON approvals (state);

CREATE TABLE IF NOT EXISTS settlements (
    settlement_id TEXT PRIMARY KEY,
    approval_id   TEXT NOT NULL,
    call_id       TEXT NOT NULL,
    chat_id       TEXT NOT NULL,
    owner         TEXT NOT NULL,
    chain_id      INTEGER NOT NULL,
    state         TEXT NOT NULL,
    done          INTEGER NOT NULL DEFAULT 0,
    prepared      TEXT NOT NULL,
    decision      TEXT NOT NULL,
    expires_at    TEXT NOT NULL,
    tx_hash       TEXT,
    nonce         INTEGER,
    raw_tx        TEXT,
    first_block   INTEGER,
    late          INTEGER NOT NULL DEFAULT 0,
    history       TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS settlements_by_chat ON settlements (chat_id, created_at);
CREATE INDEX IF NOT EXISTS settlements_unfinished ON settlements (done);
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
    amount     TEXT NOT NULL,
    day        TEXT NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('reserved', 'committed', 'released')),
    expires_at TEXT,
    tx_hash    TEXT,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_by_day ON ledger (address, symbol, day);
""",
    # 3: pending approvals by expiry, so that finding the due ones (and the next one due) reads only
    # those, however many wait (lunark.server.expiry).
    3: """
DROP INDEX IF EXISTS approvals_by_state;
CREATE INDEX IF NOT EXISTS approvals_by_expiry ON approvals (state, expires_at, approval_id);
""",
}
"""Schema changes after version 1, by the version they make; each runs once, in its own transaction."""

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


_APPROVAL_COLUMNS = "approval_id, chat_id, owner, state, request, proposals, expires_at, decisions, by"
_SETTLEMENT_COLUMNS = (
    "settlement_id, approval_id, call_id, chat_id, owner, chain_id, state, done, prepared, decision, expires_at, "
    "tx_hash, nonce, raw_tx, first_block, late, history, updated_at"
)


def _approval(row: Any) -> ApprovalRecord:
    return ApprovalRecord(
        approval_id=row[0], chat_id=row[1], owner=row[2], state=row[3], request=json.loads(row[4]),
        proposals=json.loads(row[5]), expires_at=datetime.fromisoformat(row[6]),
        decisions=None if row[7] is None else json.loads(row[7]), by=row[8],
    )


def _settlement(row: Any) -> SettlementRecord:
    return SettlementRecord(
        settlement_id=row[0], approval_id=row[1], call_id=row[2], chat_id=row[3], owner=row[4], chain_id=row[5],
        state=row[6], prepared=json.loads(row[8]), decision=json.loads(row[9]),
        expires_at=datetime.fromisoformat(row[10]), tx_hash=row[11], nonce=row[12], raw_tx=row[13],
        first_block=row[14], late=bool(row[15]), history=json.loads(row[16]),
        updated_at=datetime.fromisoformat(row[17]), done=bool(row[7]),
    )


def _counted(
    db: sqlite3.Connection, *, address: str, symbol: str, decimals: int, day: date, now: str,
    skip: str | None = None,
) -> int:
    rows = db.execute(
        "SELECT amount, decimals FROM ledger WHERE address = ? AND symbol = ? AND day = ? AND entry_id IS NOT ? "
        "AND (state = 'committed' OR (state = 'reserved' AND (expires_at IS NULL OR expires_at > ?)))",
        (address.lower(), symbol.upper(), day.isoformat(), skip, now),
    ).fetchall()
    return sum(rescale_up(int(amount), places, decimals) for amount, places in rows)


def _reserve(db: sqlite3.Connection, *, entry: SpendEntry, cap: int | None, now: str, hold: bool) -> int | None:
    """One transaction: count, compare with ``cap``, reserve. See ``Store.reserve`` and ``Store.hold``."""
    db.execute("BEGIN IMMEDIATE")
    try:
        row = db.execute("SELECT state, expires_at FROM ledger WHERE entry_id = ?", (entry.entry_id,)).fetchone()
        live = row is not None and (
            row[0] == "committed" or (row[0] == "reserved" and (row[1] is None or row[1] > now))
        )
        if not live and cap is not None:
            counted = _counted(db, address=entry.address, symbol=entry.symbol, decimals=entry.decimals,
                               day=entry.day, now=now, skip=entry.entry_id)
            if counted + entry.amount > cap:
                db.execute("ROLLBACK")
                return counted
        expires = None if hold or entry.expires_at is None else _when(entry.expires_at)
        if row is None:
            db.execute(
                "INSERT INTO ledger (entry_id, address, symbol, decimals, amount, day, state, expires_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, 'reserved', ?, ?)",
                (entry.entry_id, entry.address.lower(), entry.symbol.upper(), entry.decimals, str(entry.amount),
                 entry.day.isoformat(), expires, _now()),
            )
        elif row[0] != "committed":
            db.execute(
                "UPDATE ledger SET state = 'reserved', expires_at = ?, updated_at = ? WHERE entry_id = ?",
                (expires, _now(), entry.entry_id),
            )
        db.execute("COMMIT")
    except BaseException:
        with suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise
    return None


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
        for target in sorted(v for v in _MIGRATIONS if v > version):
            db.executescript(
                f"BEGIN IMMEDIATE;{_MIGRATIONS[target]}UPDATE schema_version SET version = {target};COMMIT;"
            )
            version = target
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
    done: Callable[[list[EventRecord] | Exception], None]


_LAST_SEQS = (
    # One row for every chat of the batch; MAX(seq) for one chat_id is one seek in the primary key
    # (a GROUP BY over all of them would read every event of every chat).
    "SELECT json_group_object(j.value, (SELECT MAX(seq) FROM events WHERE chat_id = j.value)) "
    "FROM json_each(?) AS j"
)

def _append_batch(db: sqlite3.Connection, batch: Sequence[_Append], ts: float) -> list[int | Exception]:
    """Log every append of ``batch`` in one transaction; returns the seq before each append's first
    event. One append refused (its chat is gone, say) is rolled back alone and reported in its place.

    Runs on the store's thread, so it does as little in Python as it can: the events' JSON was made
    on the event loop, and only its ``seq`` and ``ts`` are added here. Every SQLite call gives up the
    GIL and must win it back from a busy event loop (up to a switch interval each time): four
    statements per append made a batch of 47 appends take 70-100 ms of wall time for 2-3 ms of work.
    So the batch reads every chat's last seq in one statement and inserts with one ``executemany``
    (a GIL hand-over per row, the cheapest in CPU: a multi-row VALUES costs ~1.7x, json_each ~3x).
    Only when that is refused are the appends logged one by one, each in a savepoint of its own."""
    stamp = f',"ts":{ts!r}}}'
    db.execute("BEGIN IMMEDIATE")
    try:
        outcomes = _append_at_once(db, batch, stamp, ts)
        if outcomes is None:
            outcomes = _append_each(db, batch, stamp, ts)
        db.execute("COMMIT")
    except BaseException:
        # Also on an error the loop above does not expect: a transaction left open would swallow the
        # next operation's writes. If COMMIT already ran, ROLLBACK finds no transaction: fine.
        with suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise
    return outcomes


def _append_at_once(
    db: sqlite3.Connection, batch: Sequence[_Append], stamp: str, ts: float
) -> list[int | Exception] | None:
    """The batch in a few statements; None if it was refused (nothing of it is logged then)."""
    counts: dict[str, int] = {}
    offsets: list[int] = []
    for append in batch:
        before = counts.get(append.chat_id, 0)
        offsets.append(before)
        counts[append.chat_id] = before + len(append.events)
    last = json.loads(db.execute(_LAST_SEQS, (json.dumps(list(counts)),)).fetchone()[0] or "{}")
    outcomes: list[int | Exception] = []
    rows: list[tuple[str, int, str, str, float]] = []
    for append, offset in zip(batch, offsets, strict=True):
        chat_id = append.chat_id
        base = int(last.get(chat_id) or 0) + offset
        outcomes.append(base)
        rows += [(chat_id, seq, type_, f'{head},"seq":{seq}{stamp}', ts)
                 for seq, (type_, _, head) in enumerate(append.events, base + 1)]
    db.execute("SAVEPOINT batch")
    try:
        db.executemany("INSERT INTO events (chat_id, seq, type, payload, ts) VALUES (?, ?, ?, ?, ?)", rows)
    except sqlite3.IntegrityError:
        db.execute("ROLLBACK TO batch")
        db.execute("RELEASE batch")
        return None
    db.execute("RELEASE batch")
    return outcomes


def _append_each(db: sqlite3.Connection, batch: Sequence[_Append], stamp: str, ts: float) -> list[int | Exception]:
    """The batch append by append, each in a savepoint: one refused is rolled back alone."""
    outcomes: list[int | Exception] = []
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
        self._committing = False
        self._drained = asyncio.Event()
        self._drained.set()

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
        await self._drained.wait()
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
        return await appended(self.append_events_soon, chat_id, events)

    def append_events_soon(
        self, chat_id: str, events: Sequence[tuple[str, dict[str, Any]]],
        done: Callable[[list[EventRecord] | Exception], None],
    ) -> None:
        """``append_events`` without awaiting: ``done`` gets the records (or the error) on the event
        loop once they are committed. Appends are answered in the order they were made.

        Raises at once what refuses the events before anything is logged (unserializable payloads,
        a closed store)."""
        if self._db is None:
            raise LunarkError("The store is closed.")
        prepared = []
        for type_, payload in events:
            event = {**payload, "type": type_, "chat_id": chat_id}
            prepared.append((type_, event, _dumps(event)[:-1]))  # refused here, before anything is logged
        self._appends.append(_Append(chat_id, prepared, done))
        if not self._committing:
            self._commit()

    def _commit(self) -> None:
        """Hand every waiting append to the store's thread as one batch."""
        batch, self._appends = self._appends, []
        self._committing = True
        self._drained.clear()
        ts = round(time.time(), 3)  # milliseconds: finer is noise on the wire
        db, loop = self._db, asyncio.get_running_loop()
        assert db is not None

        def commit() -> None:  # on the store's thread
            try:
                outcomes = _append_batch(db, batch, ts)
            except Exception as exc:  # BEGIN or COMMIT failed (locked, disk full...): none was logged
                outcomes = [exc] * len(batch)
            loop.call_soon_threadsafe(self._committed, batch, outcomes, ts)

        self._worker.submit(commit)

    def _committed(self, batch: list[_Append], outcomes: list[int | Exception], ts: float) -> None:
        stamp = f',"ts":{ts!r}}}'
        for append, outcome in zip(batch, outcomes, strict=True):
            result: list[EventRecord] | Exception
            if isinstance(outcome, Exception):
                result = outcome
            else:
                result = []
                for seq, (type_, event, head) in enumerate(append.events, outcome + 1):
                    event["seq"], event["ts"] = seq, ts
                    result.append(EventRecord(chat_id=append.chat_id, seq=seq, type=type_, payload=event, ts=ts,
                                              text=f'{head},"seq":{seq}{stamp}'))
            try:
                append.done(result)
            except Exception:  # one caller's failure must not keep the others waiting
                logger.exception("handling the append of chat %s failed", append.chat_id)
        self._committing = False
        if self._appends and self._db is not None:
            self._commit()
        else:
            self._drained.set()

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

    # the spend ledger (lunark.tools.policy.SpendLedger), in base units

    async def counted(self, address: str, symbol: str, decimals: int, day: date, *, now: datetime) -> int:
        return await self._call(partial(_counted, address=address, symbol=symbol, decimals=decimals, day=day,
                                        now=_when(now)))

    async def reserve(self, entry: SpendEntry, cap: int | None, *, now: datetime) -> int | None:
        return await self._call(partial(_reserve, entry=entry, cap=cap, now=_when(now), hold=False))

    async def hold(self, entry: SpendEntry, cap: int | None, *, now: datetime) -> int | None:
        return await self._call(partial(_reserve, entry=entry, cap=cap, now=_when(now), hold=True))

    async def commit(self, entry_id: str, tx_hash: str) -> None:
        await self._fetch(
            "UPDATE ledger SET state = 'committed', expires_at = NULL, tx_hash = ?, updated_at = ? "
            "WHERE entry_id = ?", (tx_hash.lower(), _now(), entry_id),
        )

    async def release(self, entry_id: str) -> None:
        await self._fetch(
            "UPDATE ledger SET state = 'released', updated_at = ? WHERE entry_id = ?", (_now(), entry_id)
        )

    # approvals

    async def put_approval(self, record: ApprovalRecord) -> None:
        await self._fetch(
            "INSERT INTO approvals (approval_id, chat_id, owner, state, request, proposals, expires_at, "
            "decisions, by, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (record.approval_id, record.chat_id, record.owner.lower(), record.state, _dumps(record.request),
             _dumps(record.proposals), _when(record.expires_at),
             None if record.decisions is None else _dumps(record.decisions), record.by, _now()),
        )

    async def get_approval(self, approval_id: str) -> ApprovalRecord | None:
        rows = await self._fetch(f"SELECT {_APPROVAL_COLUMNS} FROM approvals WHERE approval_id = ?", (approval_id,))
        return _approval(rows[0]) if rows else None

    async def claim_approval(
        self, approval_id: str, decisions: Sequence[Mapping[str, Any]], by: str
    ) -> ApprovalRecord | None:
        rows = await self._fetch(
            "UPDATE approvals SET state = 'decided', decisions = ?, by = ?, updated_at = ? "
            f"WHERE approval_id = ? AND state = 'pending' RETURNING {_APPROVAL_COLUMNS}",
            (_dumps(list(decisions)), by, _now(), approval_id),
        )
        return _approval(rows[0]) if rows else None

    async def finish_approval(self, approval_id: str) -> None:
        await self._fetch(
            "UPDATE approvals SET state = CASE WHEN by = 'timeout' THEN 'expired' ELSE 'done' END, "
            "updated_at = ? WHERE approval_id = ? AND state = 'decided'", (_now(), approval_id),
        )

    async def reopen_approval(self, approval_id: str) -> None:
        await self._fetch(
            "UPDATE approvals SET state = 'pending', decisions = NULL, by = NULL, updated_at = ? "
            "WHERE approval_id = ? AND state IN ('decided', 'done')", (_now(), approval_id),
        )

    async def approvals(self, states: Sequence[str]) -> list[ApprovalRecord]:
        marks = ", ".join("?" for _ in states)
        rows = await self._fetch(
            f"SELECT {_APPROVAL_COLUMNS} FROM approvals WHERE state IN ({marks}) ORDER BY updated_at", tuple(states)
        )
        return [_approval(row) for row in rows]

    async def due_approvals(
        self, now: datetime, *, limit: int = 100, after: ApprovalRecord | None = None
    ) -> list[ApprovalRecord]:
        page = "" if after is None else "AND (expires_at, approval_id) > (?, ?) "
        rows = await self._fetch(
            f"SELECT {_APPROVAL_COLUMNS} FROM approvals WHERE state = 'pending' AND expires_at <= ? {page}"
            "ORDER BY expires_at, approval_id LIMIT ?",
            (_when(now), *(() if after is None else (_when(after.expires_at), after.approval_id)), limit),
        )
        return [_approval(row) for row in rows]

    async def next_expiry(self) -> datetime | None:
        rows = await self._fetch("SELECT min(expires_at) FROM approvals WHERE state = 'pending'")
        return datetime.fromisoformat(rows[0][0]) if rows and rows[0][0] is not None else None

    # settlements

    async def open_settlement(self, record: SettlementRecord) -> SettlementRecord:
        def insert(db: sqlite3.Connection) -> SettlementRecord:
            db.execute(
                f"INSERT INTO settlements ({_SETTLEMENT_COLUMNS}, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (record.settlement_id, record.approval_id, record.call_id, record.chat_id, record.owner.lower(),
                 record.chain_id, record.state, int(record.done), _dumps(record.prepared),
                 _dumps(record.decision), _when(record.expires_at), record.tx_hash, record.nonce, record.raw_tx,
                 record.first_block, int(record.late), _dumps(record.history), _now(), _now()),
            )
            return _settlement(db.execute(
                f"SELECT {_SETTLEMENT_COLUMNS} FROM settlements WHERE settlement_id = ?", (record.settlement_id,)
            ).fetchone())

        return await self._call(insert)

    async def get_settlement(self, settlement_id: str) -> SettlementRecord | None:
        rows = await self._fetch(
            f"SELECT {_SETTLEMENT_COLUMNS} FROM settlements WHERE settlement_id = ?", (settlement_id,)
        )
        return _settlement(rows[0]) if rows else None

    async def advance_settlement(
        self, settlement_id: str, state: str, evidence: Mapping[str, Any], *, done: bool | None = None,
        **fields: Any,
    ) -> SettlementRecord:
        unknown = set(fields) - {"tx_hash", "nonce", "raw_tx", "first_block"}
        if unknown:
            raise InvalidInput(f"A settlement has no fields {sorted(unknown)}.")
        entry = _dumps({"state": state, "ts": round(time.time(), 3), **evidence})
        sets = "".join(f", {name} = ?" for name in fields)

        def advance(db: sqlite3.Connection) -> SettlementRecord:
            row = db.execute(
                f"UPDATE settlements SET state = ?, done = ?, history = json_insert(history, '$[#]', json(?)), "
                f"updated_at = ?{sets} WHERE settlement_id = ? AND done = 0 RETURNING {_SETTLEMENT_COLUMNS}",
                (state, int(state in FINAL_STATES if done is None else done), entry, _now(), *fields.values(),
                 settlement_id),
            ).fetchone()
            if row is None:
                row = db.execute(
                    f"SELECT {_SETTLEMENT_COLUMNS} FROM settlements WHERE settlement_id = ?", (settlement_id,)
                ).fetchone()
                if row is None:
                    raise NotFound(f"No settlement {settlement_id!r}.", settlement_id=settlement_id)
            return _settlement(row)

        return await self._call(advance)

    async def bind_hash(self, settlement_id: str, tx_hash: str) -> str:
        rows = await self._fetch(
            "INSERT INTO settlement_hashes (tx_hash, settlement_id) VALUES (?, ?) "
            "ON CONFLICT (tx_hash) DO UPDATE SET tx_hash = excluded.tx_hash RETURNING settlement_id",
            (tx_hash.lower(), settlement_id),
        )
        return str(rows[0][0])

    async def hash_settling(self, tx_hash: str) -> str | None:
        rows = await self._fetch("SELECT settlement_id FROM settlement_hashes WHERE tx_hash = ?", (tx_hash.lower(),))
        return str(rows[0][0]) if rows else None

    async def nonce_settling(self, chain_id: int, owner: str, nonce: int, settlement_id: str) -> str | None:
        rows = await self._fetch(
            "SELECT settlement_id FROM settlements WHERE chain_id = ? AND owner = ? AND nonce = ? "
            "AND settlement_id != ? AND state NOT IN ('mismatch', 'expired', 'dropped', 'replaced', 'failed') "
            "LIMIT 1",
            (chain_id, owner.lower(), nonce, settlement_id),
        )
        return str(rows[0][0]) if rows else None

    async def settlements(self, *, chat_id: str | None = None, unfinished: bool = False) -> list[SettlementRecord]:
        where, params = [], []
        if chat_id is not None:
            where.append("chat_id = ?")
            params.append(chat_id)
        if unfinished:
            where.append("done = 0")
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = await self._fetch(
            f"SELECT {_SETTLEMENT_COLUMNS} FROM settlements{clause} ORDER BY created_at, rowid", tuple(params)
        )
        return [_settlement(row) for row in rows]

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

    async def stored_sessions(self, token_hashes: Sequence[str]) -> set[str]:
        rows = await self._fetch(
            "SELECT token_hash FROM sessions WHERE token_hash IN (SELECT value FROM json_each(?))",
            (json.dumps(list(token_hashes)),),
        )
        return {str(row[0]) for row in rows}

    async def healthy(self) -> bool:
        try:
            return await self._fetch("SELECT 1") == [(1,)]
        except (sqlite3.Error, ValueError, LunarkError):
            return False
