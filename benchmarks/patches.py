"""Variants of Lunark applied to a server process at start (``serve.py --patch NAME``), so a change
is measured against the code as it is, in the same run (``python -m benchmarks --ab NAME``).

- ``sync-tokens``: the hub as it was before it stopped waiting for token sends (each token's
  ``publish`` holds the chat's lock through the SQLite append and the emit). The "before" of
  the improvement recorded in docs/performance.md.
- ``one-hop-append``: a candidate: ``SqliteStore.append_events`` as one call on aiosqlite's
  thread (BEGIN, MAX(seq), INSERT, COMMIT) instead of four round trips through the event loop.
- ``orjson``: python-socketio's JSON codec swapped for orjson (same as ``--codec orjson``).
- ``uvloop``: the server's event loop is uvloop's (set by ``serve.py`` before the loop starts).
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

PATCHES = ("sync-tokens", "one-hop-append", "orjson", "uvloop")


def sync_tokens() -> None:
    import asyncio

    from lunark.server.hub import Hub

    async def _token(self: Hub, chat_id: str, chat: Any, message_id: str, text: str) -> None:
        async with chat.lock:
            if chat.buffer and chat.buffer_message != message_id:
                await self._flush_locked(chat_id, chat)
            now = time.monotonic()
            if not chat.buffer and now - chat.last_flush >= self.flush_interval:
                chat.last_flush = now
                await self._send_locked(
                    chat_id, chat, [("token", {"type": "token", "message_id": message_id, "text": text})]
                )
                return
            chat.buffer.append(text)
            chat.buffer_message = message_id
            if chat.timer is None:
                delay = max(0.0, chat.last_flush + self.flush_interval - now)
                loop = asyncio.get_running_loop()
                chat.timer = loop.call_later(delay, self._schedule_flush, chat_id, chat)

    def _schedule_flush(self: Hub, chat_id: str, chat: Any) -> None:
        chat.timer = None
        chat.flushing = asyncio.ensure_future(self.flush(chat_id))

    Hub._token = _token  # type: ignore[method-assign]
    Hub._schedule_flush = _schedule_flush  # type: ignore[method-assign]


def one_hop_append() -> None:
    from lunark.store import sqlite as mod
    from lunark.store.base import EventRecord

    async def append_events(self: Any, chat_id: str, events: Any) -> list[EventRecord]:
        if not events:
            return []
        ts = time.time()

        def write(conn: sqlite3.Connection) -> list[EventRecord]:
            conn.execute("BEGIN IMMEDIATE")
            try:
                seq = int(
                    conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events WHERE chat_id = ?", (chat_id,)).fetchone()[0]
                )
                rows, records = [], []
                for type_, payload in events:
                    seq += 1
                    full = {**payload, "type": type_, "chat_id": chat_id, "seq": seq, "ts": ts}
                    rows.append((chat_id, seq, type_, mod._dumps(full), ts))
                    records.append(EventRecord(chat_id=chat_id, seq=seq, type=type_, payload=full, ts=ts))
                conn.executemany("INSERT INTO events (chat_id, seq, type, payload, ts) VALUES (?, ?, ?, ?, ?)", rows)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return records

        try:
            async with self._lock:
                db = self._conn
                return await db._execute(write, db._conn)  # type: ignore[no-any-return]
        except sqlite3.IntegrityError as exc:
            raise mod._refused(exc, chat_id) from exc

    mod.SqliteStore.append_events = append_events  # type: ignore[method-assign]


def orjson_codec() -> None:
    import socketio

    from benchmarks.codecs import OrjsonCodec

    original = socketio.AsyncServer.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("json", OrjsonCodec)
        original(self, *args, **kwargs)

    socketio.AsyncServer.__init__ = init  # type: ignore[method-assign]


def apply(names: list[str]) -> None:
    known = {
        "sync-tokens": sync_tokens,
        "one-hop-append": one_hop_append,
        "orjson": orjson_codec,
        "uvloop": lambda: None,
    }
    for name in filter(None, names):
        if name not in known:
            raise ValueError(f"unknown patch {name!r}; known: {', '.join(PATCHES)}")
        known[name]()
