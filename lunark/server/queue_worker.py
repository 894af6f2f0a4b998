"""A turn worker of a cluster (Postgres + Redis): a node that runs turns and relays nothing.

    lunark worker --config lunark.toml          # on any machine that reaches Postgres and Redis
    lunark serve --workers N --config ...       # a relay, and N of these as its local processes

A worker is a cluster process (``lunark.server.cluster``) without sockets: the ``Agent``
(LangGraph), a ``Runner`` whose turns take the chat's cluster-wide turn lock, and the settlements
(driven under their leases), with the cluster's sweep (cut answers closed as ``interrupted``,
claimed decisions carried on, settlements taken over) and its abort notifications. It takes turn
jobs from ``lunark_jobs`` (``lunark.server.jobs``); its ``Hub`` logs every event in Postgres and
emits it through Redis, write-only, to the relays, whose gates deliver each once and in order.

``LocalWorkers`` is what ``lunark serve --workers N`` starts on a cluster configuration: N such
processes (``python -m lunark.server.queue_worker``), each started again when it dies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from lunark.config import Settings
from lunark.errors import ConfigError

__all__ = ["READY", "LocalWorkers", "main", "run_worker"]

logger = logging.getLogger(__name__)

READY = "Lunark turn worker ready"
"""The line a worker prints on its standard output once it takes jobs."""
_RESTART_DELAYS = (0.0, 0.5, 1.0, 2.0, 5.0)
_YOUNG = 10.0


async def run_worker(settings: Settings, stop: asyncio.Event, *, model_factory: str | None = None) -> None:
    """Serve turn jobs until ``stop`` is set; its turns are stopped then (each ends ``aborted``)."""
    from socketio import AsyncRedisManager

    from lunark.graph.agent import Agent
    from lunark.server.cluster import Cluster
    from lunark.server.hub import Hub, settlement_sink
    from lunark.server.jobs import JobQueue
    from lunark.server.limits import restore_recursion_limit
    from lunark.server.runner import Runner
    from lunark.server.turn_jobs import load_factory, perform
    from lunark.store import PostgresStore, open_store

    if not (settings.store.url and settings.server.redis_url):
        raise ConfigError("lunark worker takes turn jobs from a cluster: set store.url (Postgres) and "
                          "server.redis_url (Redis), as the relays have them.")
    restore_recursion_limit()
    async with AsyncExitStack() as stack:
        store = await open_store(settings.store.url, settings.data_dir / "lunark.sqlite",
                                 pool_size=settings.store.pool_size)
        stack.push_async_callback(store.close)
        assert isinstance(store, PostgresStore)
        cluster = Cluster(store, sweep_interval=settings.server.sweep_interval_seconds)
        stack.push_async_callback(cluster.aclose)  # after the turns and the drivers have stopped
        model = load_factory(model_factory)() if model_factory else None
        agent = await stack.enter_async_context(Agent.open(settings, model=model, store=store))
        # Write-only: this process emits to the relays' rooms and listens to nothing.
        redis = AsyncRedisManager(settings.server.redis_url, channel="lunark", write_only=True,
                                  redis_options={"socket_connect_timeout": 2.0})

        async def emit(event: str, data: dict[str, Any], rooms: list[str]) -> None:
            await redis.emit(event, data, namespace="/", room=rooms)

        hub = Hub(store, emit, flush_interval=settings.server.flush_interval_ms / 1000)
        stack.push_async_callback(hub.aclose)
        runner = Runner(agent, hub, store, turns=cluster,
                        supersede=settings.approvals.on_new_message == "supersede",
                        expiry_interval=settings.server.sweep_interval_seconds)
        stack.push_async_callback(runner.aclose)

        agent.settlements.connect(settlement_sink(store, hub), lease=cluster)
        await cluster.start(runner, agent.settlements)
        await runner.recover()
        queue = JobQueue(store, cluster.node)
        stack.push_async_callback(queue.aclose)  # first: no new job while the turns stop

        async def job(method: str, args: dict[str, Any]) -> Any:
            return await perform(runner, method, args)

        await queue.consume(job)
        logger.info("turn worker %s takes jobs", cluster.node)
        print(f"{READY} (node {cluster.node}, pid {os.getpid()})", flush=True)
        await stop.wait()


class LocalWorkers:
    """``lunark serve --workers N`` on a cluster: N local ``lunark worker`` processes, supervised."""

    def __init__(self, settings: Settings, count: int, *, model_factory: str | None = None) -> None:
        self.settings = settings
        self.count = count
        self.model_factory = model_factory
        self._procs: list[asyncio.subprocess.Process | None] = [None] * count
        self._ready = [False] * count
        self._starts = [0] * count
        self._tasks: list[asyncio.Task[None]] = []
        self._dir: Path | None = None
        self._stopping = False

    async def start(self) -> None:
        """Start them; jobs wait in the queue until one is up (nothing here waits for that)."""
        self._dir = Path(tempfile.mkdtemp(prefix="lunark-workers-"))
        settings = self.settings.model_copy(update={"data_dir": self.settings.data_dir.resolve()})
        (self._dir / "settings.json").write_text(settings.model_dump_json())
        self._tasks = [asyncio.create_task(self._supervise(k), name=f"lunark-worker-{k}") for k in range(self.count)]

    async def _supervise(self, index: int) -> None:
        assert self._dir is not None
        young = 0
        while not self._stopping:
            self._starts[index] += 1
            started = time.monotonic()
            proc = self._procs[index] = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "lunark.server.queue_worker", "--settings", str(self._dir / "settings.json"),
                "--parent", str(os.getpid()),
                *(["--model-factory", self.model_factory] if self.model_factory else []),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, start_new_session=True,
            )
            assert proc.stdout is not None
            async for line in proc.stdout:
                if line.decode(errors="replace").startswith(READY):
                    self._ready[index] = True
            code = await proc.wait()
            self._ready[index] = False
            if self._stopping:
                return
            lived = time.monotonic() - started
            young = young + 1 if lived < _YOUNG else 0
            delay = _RESTART_DELAYS[min(max(young - 1, 0), len(_RESTART_DELAYS) - 1)]
            logger.warning("turn worker %d (pid %s) exited with %s after %.1fs; starting it again%s",
                           index, proc.pid, code, lived, f" in {delay}s" if delay else "")
            await asyncio.sleep(delay)

    def status(self) -> list[dict[str, Any]]:
        return [{"index": k, "pid": proc.pid if proc is not None else None, "ready": self._ready[k],
                 "starts": self._starts[k]} for k, proc in enumerate(self._procs)]

    async def aclose(self) -> None:
        self._stopping = True
        for proc in self._procs:
            if proc is not None and proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)  # its turns end "aborted", logged and sent
        for proc in self._procs:
            if proc is not None and proc.returncode is None:
                try:
                    await asyncio.wait_for(proc.wait(), 15)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)


async def serve_worker(settings: Settings, *, model_factory: str | None = None, parent: int | None = None) -> int:
    """Run one worker until SIGINT or SIGTERM (``lunark worker``), or until ``parent`` (the relay
    that started it) is gone, ``kill -9`` included."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def orphaned() -> None:
        while True:
            await asyncio.sleep(1.0)
            if os.getppid() != parent:  # reparented: the relay died
                break
        logger.warning("the relay that started this worker is gone; stopping")
        stop.set()

    watch = asyncio.create_task(orphaned()) if parent is not None else None
    try:
        await run_worker(settings, stop, model_factory=model_factory)
    finally:
        if watch is not None:
            watch.cancel()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lunark.server.queue_worker", description=__doc__)
    parser.add_argument("--settings", required=True, type=Path, help="the settings, as JSON")
    parser.add_argument("--model-factory", help="module:callable returning the chat model")
    parser.add_argument("--parent", type=int, help="stop when this process (the relay) is gone")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format=f"%(asctime)s %(levelname)s worker-{os.getpid()} %(name)s: %(message)s")
    for noisy in ("httpx", "web3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    settings = Settings.model_validate_json(args.settings.read_text())
    try:
        import uvloop
    except ImportError:
        return asyncio.run(serve_worker(settings, model_factory=args.model_factory, parent=args.parent))
    return uvloop.run(serve_worker(settings, model_factory=args.model_factory, parent=args.parent))


if __name__ == "__main__":
    sys.exit(main())
