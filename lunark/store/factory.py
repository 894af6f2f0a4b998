"""Which store a configuration asks for: SQLite files by default, Postgres with ``store.url``."""

from __future__ import annotations

from pathlib import Path

from lunark.store.base import Store

__all__ = ["open_store"]


async def open_store(url: str | None, sqlite_path: str | Path, *, pool_size: int = 10) -> Store:
    """A Postgres store for a ``postgresql://`` ``url``, else the SQLite file at ``sqlite_path``."""
    if url:
        from lunark.store.postgres import PostgresStore

        return await PostgresStore.open(url, max_size=pool_size)
    from lunark.store.sqlite import SqliteStore

    return await SqliteStore.open(sqlite_path)
