"""Turn jobs in a cluster: relays put them in Postgres, workers on any machine take them.

With a Postgres store and Redis (a cluster) and turn workers (``lunark serve --workers N``,
``lunark serve --relay-only``, ``lunark worker``), a relay runs no turn: each call the namespace, the
HTTP mirror or AG-UI makes on a ``Runner`` (``send_message``, ``resume``, ...) becomes a job, a row
of ``lunark_jobs``, and the relay waits for its answer::

    relay (QueueRunner)                 Postgres: lunark_jobs                  worker (JobQueue.consume)
    INSERT + pg_notify('lunark_jobs') ─▶ id, chat_id, method, args ─▶ claim: FOR UPDATE SKIP LOCKED
    answer ◀── DELETE ... RETURNING ◀── done_at, result ◀── UPDATE + pg_notify('lunark_jobs_done')

The engine is the one the cluster already trusts (``benchmarks/queue.py`` measured it against Redis
Streams; docs/performance.md says why Postgres):

- **One chat's jobs in order, one at a time.** A worker claims the oldest job whose chat has no
  earlier job still open, so two workers never run two jobs of a chat at once and never out of
  order (a Redis stream hands consecutive entries to different consumers). The turn a job starts
  is still claimed by the chat's turn lock (``lunark.server.cluster``), as on any cluster process.
- **Exactly once, and nothing lost to a crash.** The claim is a row lock held, in a transaction,
  until the job's answer is written: a worker that dies (``kill -9``) rolls it back, and the job is
  claimable again at once (no idle time to guess, as ``XAUTOCLAIM`` needs). Jobs are idempotent
  where a repeat could happen (a message's ``client_message_id``; a decision claimed in the
  database answers ``already_decided``).
- **No worker up: jobs wait.** A job waits in the table for a worker for ``job_wait`` seconds;
  then the relay withdraws it, unless a worker has it (then its answer is waited for), and answers
  ``busy``: a job either runs once or is withdrawn, never both.

Events do not travel through here: a worker's ``Hub`` logs them in Postgres (the seq allocated as on
any cluster process) and emits them through Redis to every relay's gates (``lunark.server.relay``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from lunark.approvals import Approval
from lunark.errors import Busy, LunarkError
from lunark.server.turn_jobs import error_from, wire_chat
from lunark.store import ChatRecord, PostgresStore

if TYPE_CHECKING:
    from lunark.server.cluster import Cluster

__all__ = ["JOB_WAIT", "JobQueue", "QueueRunner"]

logger = logging.getLogger(__name__)

JOB_WAIT = 30.0
"""Seconds a job waits for a worker to claim it (none is up, or all restart) before it is withdrawn."""
_RUN_WAIT = 60.0
"""Seconds a relay waits for the answer of a job a worker has claimed (a decision may wait ~10 s for
the chat's turn lock)."""
_POLL = 1.0
"""Seconds between looks at the table when no notification came (one may be missed while a
listener reconnects)."""
_READ_WAIT = 3.0
"""Seconds a read a relay can answer from the store (the approval a chat waits for) waits for a worker."""
_KEEP = 300.0
"""Seconds an answered job nobody took (its relay died) stays in the table."""
_JOBS, _DONE = "lunark_jobs", "lunark_jobs_done"
_CLAIM = (
    "SELECT id, method, args FROM lunark_jobs j WHERE done_at IS NULL AND NOT EXISTS ("
    "SELECT 1 FROM lunark_jobs e WHERE e.chat_id = j.chat_id AND e.id < j.id AND e.done_at IS NULL) "
    "ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
)

Perform = Callable[[str, dict[str, Any]], Awaitable[Any]]


class JobQueue:
    """``lunark_jobs`` for one process: ``call`` (a relay) and ``consume`` (a worker)."""

    def __init__(self, store: PostgresStore, node: str, *, job_wait: float = JOB_WAIT) -> None:
        self.store = store
        self.node = node
        self.job_wait = job_wait
        self._waiting: dict[int, asyncio.Future[None]] = {}
        self._listener: psycopg.AsyncConnection[Any] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._wake = asyncio.Event()
        self._pool: AsyncConnectionPool[Any] | None = None
        self.running = 0
        """Jobs this worker is running now."""

    async def _listen(self, channel: str, heard: Callable[[str], None]) -> None:
        while True:
            try:
                self._listener = await psycopg.AsyncConnection.connect(self.store.url, autocommit=True,
                                                                        application_name=f"lunark-{channel}")
                await self._listener.execute(f"LISTEN {channel}")
                heard("")  # (re)connected: whatever was notified meanwhile is looked up now
                async for notify in self._listener.notifies():
                    heard(notify.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("job listener on %s lost its connection (%s); reconnecting", channel, exc)
                await asyncio.sleep(_POLL)

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
        if self._pool is not None:
            await self._pool.close()

    # -- a relay ----------------------------------------------------------------------------------

    async def start_relay(self) -> None:
        self._spawn(self._listen(_DONE, self._answered), "lunark-jobs-answers")

    def _answered(self, payload: str) -> None:
        node, _, job = payload.partition(" ")
        if not payload:  # the listener (re)connected: every waiting call looks at its row
            for future in self._waiting.values():
                if not future.done():
                    future.set_result(None)
        elif node == self.node and job.isdigit():
            waiting = self._waiting.get(int(job))
            if waiting is not None and not waiting.done():
                waiting.set_result(None)

    async def call(self, chat_id: str | None, method: str, args: dict[str, Any], *, wait: float | None = None) -> Any:
        """Run ``method`` on a worker's runner (the chat's jobs in order) and return its answer;
        ``busy`` if no worker takes it within ``wait`` seconds (``job_wait``)."""
        wait = self.job_wait if wait is None else wait
        async with self.store.connection() as conn:
            cursor = await conn.execute(
                "WITH job AS (INSERT INTO lunark_jobs (chat_id, method, args, relay) VALUES (%s, %s, %s, %s) "
                "RETURNING id) SELECT id, pg_notify(%s, '') FROM job", (chat_id, method, Jsonb(args), self.node, _JOBS))
            row = await cursor.fetchone()
        assert row is not None
        job = int(row[0])
        start = time.monotonic()
        try:
            while True:
                future = self._waiting[job] = asyncio.get_running_loop().create_future()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(future, _POLL)
                found, result = await self._take(job)
                if found:
                    return _answer(result)
                waited = time.monotonic() - start
                if waited > wait and await self._withdraw(job):
                    raise Busy("No turn worker took this chat's job; try again in a moment.", chat_id=chat_id)
                if waited > wait + _RUN_WAIT:
                    raise Busy("The turn worker running this chat's job did not answer; it may still happen.",
                               chat_id=chat_id)
        finally:
            self._waiting.pop(job, None)

    async def _take(self, job: int) -> tuple[bool, Any]:
        async with self.store.connection() as conn:
            cursor = await conn.execute(
                "DELETE FROM lunark_jobs WHERE id = %s AND done_at IS NOT NULL RETURNING result", (job,))
            row = await cursor.fetchone()
        return (True, row[0]) if row is not None else (False, None)

    async def _withdraw(self, job: int) -> bool:
        """Take the job back unless a worker is running it (its row is locked): then it runs."""
        async with self.store.connection() as conn:
            cursor = await conn.execute(
                "DELETE FROM lunark_jobs WHERE id = (SELECT id FROM lunark_jobs WHERE id = %s AND done_at IS NULL "
                "FOR UPDATE SKIP LOCKED) RETURNING id", (job,))
            return await cursor.fetchone() is not None

    # -- a worker ---------------------------------------------------------------------------------

    async def consume(self, perform: Perform, *, concurrency: int = 8) -> None:
        """Take jobs and run them with ``perform(method, args)`` (up to ``concurrency`` at a time)
        until cancelled (``aclose``)."""
        self._pool = AsyncConnectionPool(self.store.url, min_size=1, max_size=concurrency, open=False,
                                         name="lunark-jobs")
        await self._pool.open(wait=True)
        self._spawn(self._listen(_JOBS, lambda _: self._wake.set()), "lunark-jobs-listen")
        for slot in range(concurrency):
            self._spawn(self._slot(perform), f"lunark-jobs-{slot}")
        self._spawn(self._tidy(), "lunark-jobs-tidy")

    async def _slot(self, perform: Perform) -> None:
        while True:
            try:
                if await self._run_one(perform):
                    continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("taking a job failed (%s); trying again", exc)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), _POLL)

    async def _run_one(self, perform: Perform) -> bool:
        assert self._pool is not None
        async with self._pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(_CLAIM)
            row = await cursor.fetchone()
            if row is None:
                return False
            self._wake.set()  # there may be more: another slot looks too
            job, method, args = int(row[0]), str(row[1]), row[2]
            self.running += 1
            try:
                result = await _result(perform, method, args)
            finally:
                self.running -= 1
            cursor = await conn.execute(
                "UPDATE lunark_jobs SET done_at = now(), result = %s WHERE id = %s RETURNING relay",
                (Jsonb(result), job))
            relay = await cursor.fetchone()
            if relay is not None:
                await conn.execute("SELECT pg_notify(%s, %s)", (_DONE, f"{relay[0]} {job}"))
        return True

    async def _tidy(self) -> None:
        """Answered jobs whose relay never took them, and jobs nobody withdrew (their relay died)."""
        while True:
            await asyncio.sleep(60)
            with contextlib.suppress(Exception):
                async with self.store.connection() as conn:
                    await conn.execute(
                        "DELETE FROM lunark_jobs WHERE created_at < now() - make_interval(secs => %s)",
                        (_KEEP + self.job_wait + _RUN_WAIT,))


async def _result(perform: Perform, method: str, args: dict[str, Any]) -> dict[str, Any]:
    try:
        return {"value": await perform(method, args)}
    except LunarkError as exc:
        return {"error": exc.to_dict()}
    except Exception:
        logger.exception("job %s failed", method)
        return {"error": {"code": "internal", "message": "Internal error."}}


def _answer(result: Any) -> Any:
    if isinstance(result, str):
        result = json.loads(result)
    if isinstance(result, dict) and "error" in result:
        raise error_from(result["error"])
    return result.get("value") if isinstance(result, dict) else None


class QueueRunner:
    """What ``ChatService``, the namespace and AG-UI call on a ``Runner``, as jobs for the cluster's
    turn workers (``JobQueue``). An abort is a notification: whichever process runs the turn stops it."""

    _RECENT = 60.0

    def __init__(self, queue: JobQueue, cluster: Cluster) -> None:
        self.queue = queue
        self.cluster = cluster
        self._started: dict[str, float] = {}
        """Chat id -> when a turn this relay asked for started (AG-UI's "is a turn coming" guard)."""

    async def _call(self, chat: ChatRecord | None, method: str, /, **args: Any) -> Any:
        if chat is not None:
            args["chat"] = wire_chat(chat)
        return await self.queue.call(chat.chat_id if chat is not None else None, method, args)

    async def _turn(self, chat: ChatRecord, method: str, /, **args: Any) -> Any:
        value = await self._call(chat, method, **args)
        self._started[chat.chat_id] = time.monotonic()
        return value

    async def recover(self) -> None:
        """Nothing here: the workers recover (each at its start, and every sweep)."""

    def running(self, chat_id: str) -> bool:
        started = self._started.get(chat_id)
        return started is not None and time.monotonic() - started < self._RECENT

    @property
    def busy(self) -> bool:
        return False  # no turn runs in a relay

    async def send_message(self, chat: ChatRecord, content: str, client_message_id: str) -> str:
        return str(await self._turn(chat, "send_message", content=content, client_message_id=client_message_id))

    async def call_tool(self, chat: ChatRecord, name: str, args: dict[str, Any]) -> str:
        return str(await self._turn(chat, "call_tool", name=name, args=args))

    async def continue_message(self, chat: ChatRecord, message_id: str) -> None:
        await self._turn(chat, "continue_message", message_id=message_id)

    async def resume(self, chat: ChatRecord, approval_id: str, decisions: list[Any], *, by: str = "user") -> None:
        await self._turn(chat, "resume", approval_id=approval_id, decisions=list(decisions), by=by)

    async def abort(self, chat_id: str) -> bool:
        await self.cluster.abort_elsewhere(chat_id)
        return False

    async def check_pending(self, chat: ChatRecord) -> dict[str, Any] | None:
        """The worker's answer (from the chat's graph, expiring it if due); with no worker up, the
        store's: joining a chat never waits for a worker."""
        if await self.queue.store.last_seq(chat.chat_id) == 0:
            return None  # a new chat waits for nothing
        try:
            pending: dict[str, Any] | None = await self.queue.call(
                chat.chat_id, "check_pending", {"chat": wire_chat(chat)}, wait=_READ_WAIT)
        except Busy:
            return await self._logged_pending(chat.chat_id)
        return pending

    async def pending_approval(self, chat_id: str) -> dict[str, Any] | None:
        if await self.queue.store.last_seq(chat_id) == 0:
            return None
        try:
            pending: dict[str, Any] | None = await self.queue.call(
                chat_id, "pending_approval", {"chat_id": chat_id}, wait=_READ_WAIT)
        except Busy:
            return await self._logged_pending(chat_id)
        return pending

    async def _logged_pending(self, chat_id: str) -> dict[str, Any] | None:
        """The approval the chat's log last asked for, if the store still has it pending and due later."""
        store = self.queue.store
        last = await store.last_seq(chat_id)
        for event in reversed(await store.events_after(chat_id, max(0, last - 64))):
            if event.type in ("message_start", "approval_resolved"):
                return None
            if event.type == "pending_approval":
                record = await store.get_approval(str(event.payload.get("approval_id")))
                if record is None or record.state != "pending" or Approval.from_record(record).seconds_left() <= 0:
                    return None
                return dict(record.request)
        return None

    async def tools(self) -> list[dict[str, Any]]:
        tools: list[dict[str, Any]] = await self.queue.call(None, "tools", {})
        return tools

    async def aclose(self) -> None:
        await self.queue.aclose()
