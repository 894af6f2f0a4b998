"""LangGraph checkpoints in SQLite, one thread hop per operation.

LangGraph's ``AsyncSqliteSaver`` runs every statement of an operation as its own aiosqlite
call (3 to 6 hops between the event loop and aiosqlite's thread per read or write) behind
one ``asyncio.Lock`` shared by every chat: a turn's 8 checkpoint operations cost ~30 hops,
and one chat's write waits for every other chat's (docs/performance.md).

``ThreadedSqliteSaver`` is LangGraph's synchronous ``SqliteSaver`` (same tables, same
serialization, same version numbers, so either reads what the other wrote) on a thread of
its own, as ``SqliteStore`` does: an async operation runs the synchronous one whole on that
thread, so it costs one hop, and operations run one after another in the order asked, with
no lock on the event loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
)
from langgraph.checkpoint.sqlite import SqliteSaver

__all__ = ["ThreadedSqliteSaver"]

_T = TypeVar("_T")


def _connect(path: str) -> sqlite3.Connection:
    # check_same_thread=False: the synchronous methods may still be called from another thread
    # (graph.get_state, say); SqliteSaver's own threading.Lock serializes them with the worker.
    conn = sqlite3.connect(path, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        # As the event store does: a commit survives the process dying (the WAL is in the OS's
        # hands); only an OS crash or power cut can lose the last ones. One fsync per commit,
        # several per LangGraph step, was ~2 ms of a ~10 ms resume (docs/performance.md).
        conn.execute("PRAGMA synchronous = NORMAL")
    except BaseException:
        conn.close()
        raise
    return conn


class ThreadedSqliteSaver(SqliteSaver):
    """``SqliteSaver`` whose async methods each run on the saver's thread in one hop."""

    def __init__(self, conn: sqlite3.Connection, worker: ThreadPoolExecutor) -> None:
        super().__init__(conn)
        self._worker = worker

    @classmethod
    @asynccontextmanager
    async def open(cls, path: str | Path) -> AsyncIterator[ThreadedSqliteSaver]:
        """The saver of the database at ``path`` (created with its tables if needed), closed on exit."""
        worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lunark-checkpoints")
        loop = asyncio.get_running_loop()
        try:
            conn = await loop.run_in_executor(worker, _connect, str(path))
        except BaseException:
            worker.shutdown(wait=False)
            raise
        saver = cls(conn, worker)
        try:
            await saver._call(saver.setup)
            yield saver
        finally:
            # The worker runs calls in order: the close waits for every write asked for before it.
            await loop.run_in_executor(worker, conn.close)
            worker.shutdown(wait=False)

    async def _call(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._worker, partial(fn, *args, **kwargs))

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await self._call(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        def fetch() -> list[CheckpointTuple]:
            return list(self.list(config, filter=filter, before=before, limit=limit))

        for item in await self._call(fetch):
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await self._call(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        await self._call(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await self._call(self.delete_thread, thread_id)

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return await self._call(self.get_delta_channel_history, config=config, channels=channels)
