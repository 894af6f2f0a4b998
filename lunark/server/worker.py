"""A turn worker process: the agent's turns of a share of the chats, for a serving process that relays.

Started by ``lunark.server.workers.WorkerPool`` (``lunark serve --workers N``), never by hand::

    python -m lunark.server.worker --socket S --settings F --index K --count N

It opens the same store and checkpoints as the serving process (SQLite in WAL mode, shared by
processes), builds today's ``Agent`` and ``Runner`` and connects the settlements, and runs every job
the serving process sends for the chats it owns (``crc32(chat_id) % N == K``). What its runner and
settlements publish goes to the serving process's ``Hub`` through ``WorkerHub``. At every start it
first recovers its chats (``Runner.recover``: an answer a killed worker was writing ends
``interrupted``, claimed decisions are carried on, settlements driven on), then says it is ready.
It exits when the serving process asks it to stop (its turns are stopped as at any shutdown) or
goes away (the socket ends: it exits at once, its turns left for the next serving process's worker
to close ``interrupted``, as if it had been killed with it).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import os
import sys
import time
from contextlib import AsyncExitStack, suppress
from pathlib import Path
from typing import Any, NoReturn

from lunark.config import Settings
from lunark.errors import LunarkError
from lunark.server.turn_jobs import error_from, load_factory, owner_of, perform, read_frame, write_frame

__all__ = ["WorkerHub", "main"]

logger = logging.getLogger(__name__)


class WorkerHub:
    """The ``Hub`` a worker's runner and settlements publish to; the serving process's ``Hub`` does
    the rest (seq, the event log, emits).

    ``publish_token`` buffers (a run of one message's tokens becomes one, unless the flush interval
    is 0) and sends what is buffered in one frame at most once per flush interval, the first at once
    (a leading edge, as the hub's). ``publish`` sends what is buffered and the event, and returns
    once the serving process has logged and sent it (its error, if it was refused), as ``Hub.publish``
    does. ``turn`` tells it a chat's turn started or ended, after the events published before."""

    def __init__(self, writer: asyncio.StreamWriter, *, flush_interval: float = 0.016) -> None:
        self._writer = writer
        self.flush_interval = flush_interval
        self._items: list[list[Any]] = []
        self._open: dict[str, int] = {}
        """Chat id -> where its last token item is in ``_items`` (more of its tokens join it)."""
        self._timer: asyncio.TimerHandle | None = None
        self._last = 0.0
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._ids = itertools.count(1)

    def publish_token(self, chat_id: str, owner: str, message_id: str, text: str) -> None:
        at = self._open.get(chat_id)
        if at is not None and self.flush_interval > 0 and self._items[at][3] == message_id:
            self._items[at][4] += text
        else:
            self._open[chat_id] = len(self._items)
            self._items.append(["token", chat_id, owner, message_id, text])
        if self._timer is None:
            delay = self._last + self.flush_interval - time.monotonic()
            self._timer = asyncio.get_running_loop().call_later(max(delay, 0.0), self._flush)

    async def publish(self, chat_id: str, owner: str, event: dict[str, Any]) -> None:
        if event["type"] == "token":
            self.publish_token(chat_id, owner, event["message_id"], event["text"])
            return
        self._items.append(["event", chat_id, owner, event])
        self._open.pop(chat_id, None)
        ack = next(self._ids)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._acks[ack] = done
        self._flush(ack)
        await done

    def turn(self, chat_id: str, running: bool) -> None:
        self._items.append(["turn", chat_id, running])
        self._open.pop(chat_id, None)
        self._flush()

    def _flush(self, ack: int | None = None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._items:
            return
        items, self._items = self._items, []
        self._open.clear()
        self._last = time.monotonic()
        frame: dict[str, Any] = {"op": "events", "items": items}
        if ack is not None:
            frame["id"] = ack
        write_frame(self._writer, frame)

    def send(self, message: dict[str, Any]) -> None:
        """Send another frame (a job's answer), after everything published before it."""
        self._flush()
        write_frame(self._writer, message)

    def published(self, message: dict[str, Any]) -> None:
        """The serving process's answer to a ``publish``."""
        done = self._acks.pop(int(message["id"]), None)
        if done is None or done.done():
            return
        if "error" in message:
            done.set_exception(error_from(message["error"]))
        else:
            done.set_result(None)

    async def aclose(self) -> None:
        self._flush()


class _Worker:
    def __init__(self, settings: Settings, index: int, count: int, model_factory: str | None = None) -> None:
        self.settings = settings
        self.model_factory = model_factory
        self.index = index
        self.count = count
        self._tasks: set[asyncio.Task[None]] = set()

    def owns(self, chat_id: str) -> bool:
        return owner_of(chat_id, self.count) == self.index

    async def run(self, socket_path: str) -> None:
        from lunark.graph.agent import Agent
        from lunark.server.hub import settlement_sink
        from lunark.server.limits import restore_recursion_limit
        from lunark.server.runner import Runner
        from lunark.store import open_store

        restore_recursion_limit()
        settings = self.settings
        async with AsyncExitStack() as stack:
            self.store = store = await open_store(None, settings.data_dir / "lunark.sqlite",
                                                  pool_size=settings.store.pool_size)
            stack.push_async_callback(store.close)
            model = load_factory(self.model_factory)() if self.model_factory else None
            agent = await stack.enter_async_context(Agent.open(settings, model=model, store=store))
            reader, writer = await asyncio.open_unix_connection(socket_path)
            stack.callback(writer.close)
            reading: asyncio.Task[None] | None = None

            async def stop_reading() -> None:
                if reading is not None:
                    await _cancel(reading)

            # Unwound after the runner and the hub: the turns it stops publish their ends, each
            # waiting for the serving process's "published", which only this reading hears.
            stack.push_async_callback(stop_reading)
            write_frame(writer, {"op": "hello", "index": self.index, "pid": os.getpid()})
            self.hub = hub = WorkerHub(writer, flush_interval=settings.server.flush_interval_ms / 1000)
            stack.push_async_callback(hub.aclose)
            self.runner = runner = Runner(
                agent, hub, store,
                supersede=settings.approvals.on_new_message == "supersede",
                expiry_interval=settings.server.sweep_interval_seconds, owns=self.owns, on_turn=hub.turn,
            )
            stack.push_async_callback(runner.aclose)

            agent.settlements.connect(settlement_sink(store, hub))
            from lunark.server.collector import Collector

            collector = Collector(lambda: runner.busy)
            collector.start()
            stack.push_async_callback(collector.stop)
            stop = asyncio.Event()
            reading = asyncio.create_task(self._read(reader, stop), name="lunark-worker-read")
            await runner.recover()
            write_frame(writer, {"op": "ready"})
            await stop.wait()
            # Unwinding the stack stops the turns (each ends "aborted", as at any shutdown), while
            # the serving process still reads (if it is gone, _orphaned has exited already).

    async def _read(self, reader: asyncio.StreamReader, stop: asyncio.Event) -> None:
        while (message := await read_frame(reader)) is not None:
            op = message.get("op")
            if op == "job":
                task = asyncio.create_task(self._job(message))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            elif op == "published":
                self.hub.published(message)
            elif op == "stop":
                stop.set()
        if not stop.is_set():
            _orphaned()

    async def _job(self, message: dict[str, Any]) -> None:
        answer: dict[str, Any] = {"op": "result", "id": message["id"]}
        try:
            answer["value"] = await perform(self.runner, str(message["method"]), message.get("args") or {})
        except LunarkError as exc:
            answer["error"] = exc.to_dict()
        except Exception:
            logger.exception("job %s failed", message.get("method"))
            answer["error"] = {"code": "internal", "message": "Internal error."}
        self.hub.send(answer)


def _orphaned() -> NoReturn:
    """The serving process is gone without asking this worker to stop (killed). Stopping the turns
    would log nothing (there is no relay to publish to) yet close their answers in the store, and
    the chats' clients would show them streaming forever. So the worker exits at once, as if killed
    with the serving process: the next one's worker finds those answers open and ends them
    ``interrupted`` (``Runner.recover``), as after any crash."""
    logger.warning("the serving process is gone; exiting without stopping the turns, which the next "
                   "serving process's worker closes as interrupted")
    os._exit(1)


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lunark.server.worker", description=__doc__)
    parser.add_argument("--socket", required=True, help="the serving process's Unix socket")
    parser.add_argument("--settings", required=True, type=Path, help="the settings, as JSON")
    parser.add_argument("--index", required=True, type=int)
    parser.add_argument("--count", required=True, type=int)
    parser.add_argument("--model-factory", help="module:callable returning the chat model")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format=f"%(asctime)s %(levelname)s worker-{args.index} %(name)s: %(message)s")
    for noisy in ("httpx", "web3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    settings = Settings.model_validate_json(args.settings.read_text())
    worker = _Worker(settings, args.index, args.count, args.model_factory)
    try:
        import uvloop
    except ImportError:
        asyncio.run(worker.run(args.socket))
    else:
        uvloop.run(worker.run(args.socket))
    return 0


if __name__ == "__main__":
    sys.exit(main())
