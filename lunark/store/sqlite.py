"""The embedded store: one SQLite file in WAL mode, on a thread of its own.

What is SQLite's own is here: the connection and its thread, the migration, the event log's group
commit. Every other operation is ``lunark.store.sql.SqlStore``'s, in the SQLite dialect.

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
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from lunark.errors import LunarkError
from lunark.store.dialect import SQLITE, Conflict, refused
from lunark.store.eventlog import Append, answer, prepare, stamp
from lunark.store.operations import Lock, Operation, Query, Row, drive
from lunark.store.records import EventRecord
from lunark.store.schema import SCHEMA_VERSION, pending
from lunark.store.sql import SqlStore

__all__ = ["SCHEMA_VERSION", "SqliteStore"]

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
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        recorded = db.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
        # Each migration in a transaction of its own; DDL that another process ran meanwhile is
        # skipped (IF NOT EXISTS), so two processes opening one new file both end up at the newest.
        for target, ddl in pending(SQLITE, int(recorded or 0), repr(path))[1]:
            db.executescript(
                f"BEGIN IMMEDIATE;{ddl}DELETE FROM schema_version;"
                f"INSERT INTO schema_version (version) VALUES ({target});COMMIT;"
            )
    except BaseException:
        db.close()
        raise
    return db


def _conflict(exc: sqlite3.IntegrityError) -> Conflict:
    return Conflict(str(exc), foreign_key="FOREIGN KEY" in str(exc))


def _execute(db: sqlite3.Connection, sql: str, params: Mapping[str, Any]) -> list[Row]:
    """One compiled statement, on the store's thread (as little Python as can be: see _append_batch)."""
    try:
        return db.execute(sql, params).fetchall()
    except sqlite3.IntegrityError as exc:
        raise _conflict(exc) from exc


def _step(db: sqlite3.Connection, asked: Query | Lock) -> list[Row]:
    if isinstance(asked, Lock):
        return []  # BEGIN IMMEDIATE took the database's one write lock: every writer waits for it
    return _execute(db, SQLITE.compile(asked.sql), asked.params)


def _run(db: sqlite3.Connection, operation: Operation[_T], transaction: bool) -> _T:
    if not transaction:
        return drive(operation, lambda asked: _step(db, asked))
    db.execute("BEGIN IMMEDIATE")
    try:
        result = drive(operation, lambda asked: _step(db, asked))
        db.execute("COMMIT")
    except BaseException:
        with suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise
    return result


_LAST_SEQS = (
    # One row for every chat of the batch; MAX(seq) for one chat_id is one seek in the primary key
    # (a GROUP BY over all of them would read every event of every chat).
    "SELECT json_group_object(j.value, (SELECT MAX(seq) FROM events WHERE chat_id = j.value)) "
    "FROM json_each(?) AS j"
)


def _append_batch(db: sqlite3.Connection, batch: Sequence[Append], ts: float) -> list[int | Exception]:
    """Log every append of ``batch`` in one transaction; returns the seq before each append's first
    event. One append refused (its chat is gone, say) is rolled back alone and reported in its place.

    Runs on the store's thread, so it does as little in Python as it can: the events' JSON was made
    on the event loop, and only its ``seq`` and ``ts`` are added here. Every SQLite call gives up the
    GIL and must win it back from a busy event loop (up to a switch interval each time): four
    statements per append made a batch of 47 appends take 70-100 ms of wall time for 2-3 ms of work.
    So the batch reads every chat's last seq in one statement and inserts with one ``executemany``
    (a GIL hand-over per row, the cheapest in CPU: a multi-row VALUES costs ~1.7x, json_each ~3x).
    Only when that is refused are the appends logged one by one, each in a savepoint of its own."""
    closing = stamp(ts)
    db.execute("BEGIN IMMEDIATE")
    try:
        outcomes = _append_at_once(db, batch, closing, ts)
        if outcomes is None:
            outcomes = _append_each(db, batch, closing, ts)
        db.execute("COMMIT")
    except BaseException:
        # Also on an error the loop above does not expect: a transaction left open would swallow the
        # next operation's writes. If COMMIT already ran, ROLLBACK finds no transaction: fine.
        with suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise
    return outcomes


def _append_at_once(
    db: sqlite3.Connection, batch: Sequence[Append], stamp: str, ts: float
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


def _append_each(db: sqlite3.Connection, batch: Sequence[Append], stamp: str, ts: float) -> list[int | Exception]:
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
            outcomes.append(refused(_conflict(exc), chat_id))
        else:
            outcomes.append(last)
        db.execute("RELEASE append")
    return outcomes


class SqliteStore(SqlStore):
    """``Store`` on one SQLite file (or ``":memory:"``).

    >>> store = await SqliteStore.open("data/lunark.db")   # doctest: +SKIP
    >>> chat = await store.create_chat("0xAbC...", 31337)   # doctest: +SKIP
    """

    dialect = SQLITE
    LAST_SEQ = "SELECT COALESCE(MAX(seq), 0) FROM events WHERE chat_id = :chat_id"
    driver_errors = (sqlite3.Error,)

    def __init__(self, db: sqlite3.Connection, worker: ThreadPoolExecutor) -> None:
        """Wrap a connection owned by ``worker``'s thread; use ``SqliteStore.open`` to get one."""
        self._db: sqlite3.Connection | None = db
        self._worker = worker
        self._appends: list[Append] = []
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

    async def _fetch(self, sql: str, params: Mapping[str, Any] = {}) -> list[Row]:
        compiled = SQLITE.compile(sql)
        return await self._call(lambda db: _execute(db, compiled, params))

    async def _perform(self, operation: Operation[_T], *, transaction: bool = False) -> _T:
        return await self._call(lambda db: _run(db, operation, transaction))

    # the event log

    def append_events_soon(
        self, chat_id: str, events: Sequence[tuple[str, dict[str, Any]]],
        done: Callable[[list[EventRecord] | Exception], None],
    ) -> None:
        if self._db is None:
            raise LunarkError("The store is closed.")
        self._appends.append(prepare(chat_id, events, done))
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

    def _committed(self, batch: list[Append], outcomes: list[int | Exception], ts: float) -> None:
        answer(batch, outcomes, ts)
        self._committing = False
        if self._appends and self._db is not None:
            self._commit()
        else:
            self._drained.set()
