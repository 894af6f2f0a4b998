"""Turn workers, the serving process's side: it relays, the workers run the agent's turns.

With ``server.workers = N`` (``lunark serve --workers N``), the serving process keeps Socket.IO,
SSE, sign-in, the hub (seq, the event log, replay) and the HTTP mirror, and runs no turn. It starts
N worker processes (``python -m lunark.server.worker``), each with today's ``Runner``, ``Agent`` and
settlements on the same SQLite files, and supervises them::

    serving process (relay)                         worker k of N (lunark.server.worker)
    ───────────────────────                         ─────────────────────────────────────
    namespace / HTTP / SSE / AG-UI                  Runner + Agent (LangGraph) + Settlements
      └ ChatService ─ RemoteRunner ── job ──────▶     (chats with crc32(chat_id) % N == k)
    Hub: seq, event log, emit ◀── events, batched ── WorkerHub (tokens per flush interval)
    WorkerPool: spawn, restart on death             recovery of its chats at every start

Both ends talk over one Unix socket (in a private temporary directory) in frames: a 4-byte
big-endian length, then a JSON object.

- A job (``RemoteRunner``): the same call the namespace, the HTTP mirror and AG-UI make on a
  ``Runner`` (``send_message``, ``resume``, ``abort``, ...), sent to the worker that owns the chat
  (``crc32(chat_id) % N``: one chat's jobs stay in order in one process); its answer is the
  ``Runner``'s, a ``LunarkError`` included (same code, message and fields: the same acks and HTTP
  statuses).
- Events (``WorkerHub``): what the worker's runner and settlements publish. Tokens travel in one
  frame per flush interval; any other event flushes what is buffered and waits for the relay to
  have logged and sent it, as ``Hub.publish`` does in one process. The relay's own ``Hub`` gives
  every event its ``seq``, logs it and emits it, a chat's events in the order they were published:
  the event log stays the one source of truth for replay, written by one process.
- Turn starts and ends, so that ``RemoteRunner.running`` and ``busy`` answer without a round trip.

A worker that dies (``kill -9``) is started again; at its start it runs the runner's recovery for
its chats (an answer it was writing ends ``interrupted``, a claimed decision is carried on, its
settlements are driven on). A job for a worker that is not up waits for it (``JOB_WAIT`` at most,
then ``busy``); a job in flight when its worker died is answered ``busy`` (``abort``: nothing ran).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lunark.config import Settings
from lunark.errors import Busy, LunarkError
from lunark.server.hub import Hub
from lunark.server.turn_jobs import error_from, owner_of, read_frame, wire_chat, write_frame
from lunark.store import ChatRecord

__all__ = ["JOB_WAIT", "RemoteRunner", "WorkerPool"]

logger = logging.getLogger(__name__)

JOB_WAIT = 30.0
"""Seconds a job waits for its worker to be up (started late, or restarting after it died)."""
_START_WAIT = 120.0
"""Seconds ``WorkerPool.start`` waits for every worker's first ready (a cold import is seconds)."""
_RESTART_DELAYS = (0.0, 0.5, 1.0, 2.0, 5.0)
"""Pause before restarting a worker that died, by how many times in a row it died young (the first
time: none)."""
_YOUNG = 10.0
"""A worker that dies within this many seconds of its start died young (a crash loop backs off)."""


# -- the serving process's side ----------------------------------------------------------------


@dataclass(eq=False)
class _Worker:
    index: int
    proc: asyncio.subprocess.Process | None = None
    writer: asyncio.StreamWriter | None = None
    pid: int | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    jobs: dict[int, asyncio.Future[Any]] = field(default_factory=dict)
    running: set[str] = field(default_factory=set)
    starts: int = 0
    started_at: float = 0.0
    connected: asyncio.Event = field(default_factory=asyncio.Event)


class WorkerPool:
    """Starts N turn workers, restarts any that dies, and carries jobs and events between them and
    the relay's ``Hub``."""

    def __init__(self, settings: Settings, hub: Hub, count: int, *, job_wait: float = JOB_WAIT,
                 model_factory: str | None = None) -> None:
        """``model_factory``: ``"module:callable"`` each worker calls for its chat model (instead
        of the configured one)."""
        self.settings = settings
        self.model_factory = model_factory
        self.hub = hub
        self.count = count
        self.job_wait = job_wait
        self._workers = [_Worker(i) for i in range(count)]
        self._ids = itertools.count(1)
        self._dir: Path | None = None
        self._server: asyncio.AbstractServer | None = None
        self._supervisors: list[asyncio.Task[None]] = []
        self._tails: dict[str, asyncio.Future[None]] = {}
        """Chat id -> its last event being published: the next one of that chat waits for it."""
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False

    # -- life cycle --

    async def start(self) -> None:
        """Listen, start every worker, and wait (bounded) until each is ready."""
        self._dir = Path(tempfile.mkdtemp(prefix="lunark-workers-"))  # 0700: this user's processes only
        settings = self.settings.model_copy(update={"data_dir": self.settings.data_dir.resolve()})
        (self._dir / "settings.json").write_text(settings.model_dump_json())
        self._server = await asyncio.start_unix_server(self._connected, path=str(self._dir / "workers.sock"))
        self._supervisors = [asyncio.create_task(self._supervise(w), name=f"lunark-worker-{w.index}")
                             for w in self._workers]
        deadline = time.monotonic() + _START_WAIT
        while not all(w.ready.is_set() for w in self._workers):
            for task in self._supervisors:
                if task.done():  # a worker that exits at every start
                    task.result()
            if time.monotonic() > deadline:
                logger.warning("not every turn worker is ready after %ss; their chats' jobs wait for them",
                               _START_WAIT)
                return
            await asyncio.sleep(0.05)

    async def aclose(self) -> None:
        self._stopping = True
        for worker in self._workers:
            if worker.writer is not None:
                # It stops its turns (each ends "aborted", published through here) and exits.
                write_frame(worker.writer, {"op": "stop"})
        for worker in self._workers:
            if worker.proc is not None and worker.proc.returncode is None:
                try:
                    await asyncio.wait_for(worker.proc.wait(), 10)
                except TimeoutError:
                    worker.proc.kill()
                    await worker.proc.wait()
        for task in self._supervisors:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    async def _supervise(self, worker: _Worker) -> None:
        """Run the worker; when it dies, fail what it was doing and start it again."""
        assert self._dir is not None
        young = 0
        while not self._stopping:
            worker.starts += 1
            worker.started_at = time.monotonic()
            worker.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "lunark.server.worker", "--socket", str(self._dir / "workers.sock"),
                "--settings", str(self._dir / "settings.json"), "--index", str(worker.index),
                "--count", str(self.count),
                *(["--model-factory", self.model_factory] if self.model_factory else []),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                start_new_session=True,  # a terminal's Ctrl-C stops the serving process, which stops them
            )
            code = await worker.proc.wait()
            self._lost(worker)
            if self._stopping:
                return
            lived = time.monotonic() - worker.started_at
            young = young + 1 if lived < _YOUNG else 0
            if young > len(_RESTART_DELAYS) * 2 and worker.starts == young:
                raise LunarkError(f"Turn worker {worker.index} exits at every start (exit code {code}); "
                                  "its log is above.", worker=worker.index)
            delay = _RESTART_DELAYS[min(max(young - 1, 0), len(_RESTART_DELAYS) - 1)]
            logger.warning("turn worker %d (pid %s) exited with %s after %.1fs; starting it again%s",
                           worker.index, worker.pid, code, lived, f" in {delay}s" if delay else "")
            await asyncio.sleep(delay)

    def _lost(self, worker: _Worker) -> None:
        """The worker is gone: its jobs in flight are answered, its turns no longer run."""
        worker.ready.clear()
        worker.connected.clear()
        if worker.writer is not None:
            worker.writer.close()
            worker.writer = None
        jobs, worker.jobs = worker.jobs, {}
        for future in jobs.values():
            if not future.done():
                future.set_exception(_WorkerLost())
        worker.running.clear()

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hello = await read_frame(reader)
        if hello is None or hello.get("op") != "hello" or not 0 <= int(hello.get("index", -1)) < self.count:
            writer.close()
            return
        worker = self._workers[int(hello["index"])]
        if worker.writer is not None:
            worker.writer.close()
        worker.writer, worker.pid = writer, int(hello["pid"])
        worker.connected.set()
        try:
            while (message := await read_frame(reader)) is not None:
                self._received(worker, message)
        finally:
            # Its process is ending (or broken): the supervisor sees it exit and starts another.
            if (worker.writer is writer and not self._stopping and worker.proc is not None
                    and worker.proc.returncode is None and worker.pid == worker.proc.pid):
                with contextlib.suppress(ProcessLookupError):
                        worker.proc.kill()
            writer.close()

    def _received(self, worker: _Worker, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op == "events":
            self._publish(worker, message["items"], message.get("id"))
        elif op == "result":
            future = worker.jobs.pop(int(message["id"]), None)
            if future is not None and not future.done():
                if "error" in message:
                    future.set_exception(error_from(message["error"]))
                else:
                    future.set_result(message.get("value"))
        elif op == "ready":
            logger.info("turn worker %d is ready (pid %s)", worker.index, worker.pid)
            worker.ready.set()
        else:
            logger.warning("turn worker %d sent an unknown frame %r", worker.index, op)

    # -- events from the workers --

    def _publish(self, worker: _Worker, items: list[list[Any]], ack: int | None) -> None:
        """Hand a frame's items to the hub, each chat's in order (after what it published before)."""
        touched: dict[str, asyncio.Future[None]] = {}
        for item in items:
            kind, chat_id = item[0], item[1]
            tail = self._tails.get(chat_id)
            if tail is not None and tail.done():
                tail = None
            if tail is None and kind == "token":
                self.hub.publish_token(chat_id, item[2], item[3], item[4])  # the hot path: no task
                continue
            if tail is None and kind == "turn":
                self._turn(worker, chat_id, bool(item[2]))
                continue
            task = asyncio.ensure_future(self._publish_after(worker, tail, item))
            self._tails[chat_id] = touched[chat_id] = task
            task.add_done_callback(lambda done, c=chat_id: self._tails.pop(c, None)  # type: ignore[misc]
                                   if self._tails.get(c) is done else None)
        if ack is not None:
            self._spawn(self._acknowledge(worker, ack, list(touched.values())))

    async def _publish_after(self, worker: _Worker, before: asyncio.Future[None] | None, item: list[Any]) -> None:
        if before is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(before)
        kind, chat_id = item[0], item[1]
        if kind == "token":
            self.hub.publish_token(chat_id, item[2], item[3], item[4])
        elif kind == "turn":
            self._turn(worker, chat_id, bool(item[2]))
        else:
            await self.hub.publish(chat_id, item[2], item[3])

    def _turn(self, worker: _Worker, chat_id: str, running: bool) -> None:
        if running:
            worker.running.add(chat_id)
        else:
            worker.running.discard(chat_id)

    async def _acknowledge(self, worker: _Worker, ack: int, published: list[asyncio.Future[None]]) -> None:
        answer: dict[str, Any] = {"op": "published", "id": ack}
        try:
            await asyncio.gather(*published)
        except LunarkError as exc:
            answer["error"] = exc.to_dict()
        except Exception as exc:
            logger.exception("publishing events of turn worker %d failed", worker.index)
            answer["error"] = {"code": "internal", "message": f"Publishing failed: {exc}"}
        if worker.writer is not None:
            write_frame(worker.writer, answer)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- jobs to the workers --

    def worker_of(self, chat_id: str) -> _Worker:
        return self._workers[owner_of(chat_id, self.count)]

    async def call(self, chat_id: str | None, method: str, args: dict[str, Any]) -> Any:
        """Run ``method`` with ``args`` on the runner of the worker that owns ``chat_id`` (any: None)."""
        worker = self.worker_of(chat_id) if chat_id is not None else self._any()
        if not worker.ready.is_set():
            try:
                await asyncio.wait_for(worker.ready.wait(), self.job_wait)
            except TimeoutError:
                raise Busy("No turn worker is up to take this chat's turn; try again in a moment.",
                           chat_id=chat_id) from None
        assert worker.writer is not None
        job = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        worker.jobs[job] = future
        write_frame(worker.writer, {"op": "job", "id": job, "method": method, "args": args})
        return await future

    def _any(self) -> _Worker:
        return next((w for w in self._workers if w.ready.is_set()), self._workers[0])

    def running(self, chat_id: str) -> bool:
        return chat_id in self.worker_of(chat_id).running

    @property
    def busy(self) -> bool:
        return any(w.running for w in self._workers)

    def status(self) -> list[dict[str, Any]]:
        """Each worker: its index, pid, whether it takes jobs, how many times it was started."""
        return [{"index": w.index, "pid": w.pid, "ready": w.ready.is_set(), "starts": w.starts,
                 "turns": len(w.running)} for w in self._workers]


class _WorkerLost(Exception):
    """The worker running a job died before it answered."""


class RemoteRunner:
    """What ``ChatService``, the namespace and AG-UI call on a ``Runner``, run by the turn workers."""

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool

    async def _call(self, route: str | None, method: str, /, **args: Any) -> Any:
        """``method`` on the worker that owns the chat ``route`` (any worker: None)."""
        try:
            return await self.pool.call(route, method, args)
        except _WorkerLost:
            raise Busy("The worker running this chat's turns stopped and is starting again; what it was "
                       "doing may not have happened. Try again in a moment.", chat_id=route) from None

    async def recover(self) -> None:
        """Nothing here: each worker recovers its own chats when it starts."""

    def running(self, chat_id: str) -> bool:
        return self.pool.running(chat_id)

    @property
    def busy(self) -> bool:
        return self.pool.busy

    async def send_message(self, chat: ChatRecord, content: str, client_message_id: str) -> str:
        return str(await self._call(chat.chat_id, "send_message", chat=wire_chat(chat), content=content,
                                    client_message_id=client_message_id))

    async def call_tool(self, chat: ChatRecord, name: str, args: dict[str, Any]) -> str:
        return str(await self._call(chat.chat_id, "call_tool", chat=wire_chat(chat), name=name, args=args))

    async def continue_message(self, chat: ChatRecord, message_id: str) -> None:
        await self._call(chat.chat_id, "continue_message", chat=wire_chat(chat), message_id=message_id)

    async def resume(self, chat: ChatRecord, approval_id: str, decisions: list[Any], *, by: str = "user") -> None:
        await self._call(chat.chat_id, "resume", chat=wire_chat(chat), approval_id=approval_id,
                         decisions=list(decisions), by=by)

    async def abort(self, chat_id: str) -> bool:
        try:
            return bool(await self.pool.call(chat_id, "abort", {"chat_id": chat_id}))
        except _WorkerLost:
            return False  # its worker died: no turn of the chat runs

    async def check_pending(self, chat: ChatRecord) -> dict[str, Any] | None:
        pending: dict[str, Any] | None = await self._call(chat.chat_id, "check_pending", chat=wire_chat(chat))
        return pending

    async def pending_approval(self, chat_id: str) -> dict[str, Any] | None:
        pending: dict[str, Any] | None = await self._call(chat_id, "pending_approval", chat_id=chat_id)
        return pending

    async def tools(self) -> list[dict[str, Any]]:
        tools: list[dict[str, Any]] = await self._call(None, "tools")
        return tools

    async def aclose(self) -> None:
        await self.pool.aclose()

