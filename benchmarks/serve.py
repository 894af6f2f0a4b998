"""A server under test, in its own process: ``python -m benchmarks.serve KIND [options]``.

KIND is ``lunark`` (the real LunarkServer with ``BenchModel``), ``worker`` (a cluster's turn
worker, ``lunark worker``, with ``BenchModel``, for ``lunark --relay-only`` servers) or ``sio``
(the bare python-socketio baselines: one event per token, or the whole message so far per
token). It prints one JSON line, ``{"url": ..., "pid": ...}``, when it listens (a worker: when
it takes jobs, with no url), and
stops when its standard input closes. The token source runs in this process for
every kind, as the model does in Lunark.

A ``PauseMonitor`` (``benchmarks/monitor.py``) records the process's garbage collections and
event-loop stalls; the line ``pauses T0 T1`` on standard input answers with one JSON line of
those between the two CLOCK_MONOTONIC times, so the suite can tell how much of a run's tail
was the server pausing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import resource
import secrets
import sys
import time
from typing import Any


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def _wait_stdin_closed() -> None:
    """Serve the suite's commands until standard input closes (or says ``quit``)."""
    from benchmarks.monitor import PauseMonitor

    monitor = PauseMonitor().start()
    profiler: Any = None
    loop = asyncio.get_running_loop()
    try:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            words = line.split()
            if not words or words[0] == "quit":
                return
            if words[0] == "pauses":
                print(json.dumps(monitor.report(float(words[1]), float(words[2]))), flush=True)
            elif words[0] == "profile":  # "profile start", then "profile stop PATH": cProfile of a stretch
                import cProfile

                if words[1] == "start":
                    profiler = cProfile.Profile()
                    profiler.enable()
                else:
                    profiler.disable()
                    profiler.dump_stats(words[2])
                print(json.dumps({"ok": True}), flush=True)
            elif words[0] == "gc":
                import gc

                print(json.dumps({"count": gc.get_count(), "objects": len(gc.get_objects()),
                                  "collections": monitor.collections, "frozen": gc.get_freeze_count()}),
                      flush=True)
            else:
                print(json.dumps({"error": f"unknown command {words[0]!r}"}), flush=True)
    finally:
        monitor.stop()


def _ready(url: str) -> None:
    print(json.dumps({"url": url, "pid": os.getpid()}), flush=True)


def _settings(args: argparse.Namespace) -> Any:
    from lunark.config import Settings

    networks: list[dict[str, Any]] = [{"name": "anvil", "rpc_urls": [args.anvil or "http://127.0.0.1:1"]}]
    server_section: dict[str, Any] = {"port": 0}
    if args.flush_ms is not None:
        server_section["flush_interval_ms"] = args.flush_ms
    if args.redis_url:
        server_section["redis_url"] = args.redis_url
    if args.workers:
        server_section["workers"] = args.workers
    if args.relay_only:
        server_section["relay_only"] = True
    extra: dict[str, Any] = {}
    if args.store_url:
        extra["store"] = {"url": args.store_url}
    if args.signer:
        extra["signer"] = {"local": args.signer}
    if args.approval_ttl:
        extra["approvals"] = {"ttl_seconds": args.approval_ttl}
    return Settings.load(
        data_dir=args.data_dir,
        plugins=False,
        chain={"networks": networks, "track_timeout": 30, "verify_timeout": 10},
        server=server_section,
        # One signed-in account drives every chat of a cell: the per-account rate limits (a
        # hundred new chats and messages at once) are off, as they would be for a load test.
        limits={"rate": {name: {"per_minute": 0, "burst": 1}
                         for name in ("sign_in", "create_chat", "message", "decision", "join")}},
        **extra,
    )


async def serve_lunark(args: argparse.Namespace) -> None:
    from benchmarks.benchmodel import BenchModel
    from benchmarks.patches import apply
    from lunark.server.app import LunarkServer

    apply((args.patch or "").split(",") + (["orjson"] if args.codec == "orjson" else []))
    settings = _settings(args)
    if args.workers or args.relay_only:  # the turn workers build the model themselves (lunark.server.workers)
        server = LunarkServer(settings, model_factory="benchmarks.benchmodel:BenchModel", environ={})
    else:
        server = LunarkServer(settings, model=BenchModel(), environ={})
    await server.start()
    patches = (args.patch or "").split(",")
    if "no-gc-freeze" not in patches:
        if hasattr(server, "tune_process") and "no-gc-schedule" not in patches:
            # as lunark serve does
            server.tune_process(**({"switch_interval": None} if "switch-5ms" in patches else {}))
        elif hasattr(server, "schedule_collections") and "no-gc-schedule" not in patches:
            server.schedule_collections()  # as lunark serve did (before the GIL switch interval)
        else:
            from lunark.cli import _freeze_startup_objects

            _freeze_startup_objects()  # as lunark serve does (did, before the collector)
    _ready(server.url)
    try:
        await _wait_stdin_closed()
    finally:
        await server.stop()


class _ReadyLine(io.TextIOBase):
    """Standard output, with ``lunark worker``'s ready line replaced by this module's (``_ready``)."""

    def __init__(self, out: Any) -> None:
        self.out = out

    def write(self, text: str) -> int:
        from lunark.server.queue_worker import READY

        if text.startswith(READY):
            text = json.dumps({"url": "", "pid": os.getpid(), "ready": text})
        return int(self.out.write(text))

    def flush(self) -> None:
        self.out.flush()


async def serve_worker(args: argparse.Namespace) -> None:
    """A cluster's turn worker (``lunark worker``: ``run_worker``) with ``BenchModel``; it needs
    ``--store-url`` and ``--redis-url``, and takes the turn jobs of ``lunark --relay-only`` servers."""
    from lunark.server.queue_worker import run_worker

    settings = _settings(args)
    stop = asyncio.Event()
    with contextlib.redirect_stdout(_ReadyLine(sys.stdout)):
        worker = asyncio.create_task(run_worker(settings, stop, model_factory="benchmarks.benchmodel:BenchModel"))
        commands = asyncio.create_task(_wait_stdin_closed())
        try:
            await asyncio.wait([worker, commands], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.set()
            commands.cancel()
            await worker  # its error, if it stopped by itself


async def serve_sio(args: argparse.Namespace) -> None:
    import socketio
    from aiohttp import web

    from benchmarks.benchmodel import paced_tokens
    from benchmarks.codecs import codec

    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        cors_allowed_origins="*",
        logger=False,
        engineio_logger=False,
        json=codec(args.codec or "json"),
    )
    app = web.Application()
    sio.attach(app)
    tasks: set[asyncio.Task[None]] = set()

    async def stream(room: str, chat_id: str, count: int, rate: float, whole: bool) -> None:
        message_id = "msg_" + secrets.token_hex(10)
        seq = 0
        parts: list[str] = []
        async for token in paced_tokens(count, rate):
            seq += 1
            if whole:
                parts.append(token)
                token = "".join(parts)
            await sio.emit(
                "token",
                {
                    "type": "token",
                    "message_id": message_id,
                    "text": token,
                    "chat_id": chat_id,
                    "seq": seq,
                    "ts": time.time(),
                },
                to=room,
            )
        await sio.emit(
            "message_end",
            {
                "type": "message_end",
                "message_id": message_id,
                "finish_reason": "stop",
                "chat_id": chat_id,
                "seq": seq + 1,
                "ts": time.time(),
            },
            to=room,
        )

    @sio.event
    async def start(sid: str, data: dict[str, Any]) -> dict[str, Any]:
        room = f"chat:{data['chat_id']}"
        await sio.enter_room(sid, room)
        task = asyncio.create_task(
            stream(room, data["chat_id"], int(data["n"]), float(data["rate"]), data.get("mode") == "whole")
        )
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return {"ok": True}

    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    _ready(f"http://127.0.0.1:{port}")
    try:
        await _wait_stdin_closed()
    finally:
        for task in tasks:
            task.cancel()
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serve")
    parser.add_argument("kind", choices=["lunark", "worker", "sio"])
    parser.add_argument("--data-dir")
    parser.add_argument("--anvil", help="Anvil's RPC URL (lunark)")
    parser.add_argument("--flush-ms", type=float)
    parser.add_argument("--store-url", help="Postgres for the store and checkpoints (lunark, several processes)")
    parser.add_argument("--redis-url", help="Redis for Socket.IO fan-out (lunark, several processes)")
    parser.add_argument("--signer", choices=["anvil"], help="a local signer (lunark)")
    parser.add_argument("--approval-ttl", type=float, help="seconds a pending approval waits (lunark)")
    parser.add_argument("--workers", type=int, help="turn worker processes (lunark; server.workers)")
    parser.add_argument("--relay-only", action="store_true",
                        help="a cluster's relay: its turns go to `worker` processes (lunark; server.relay_only)")
    parser.add_argument("--codec", choices=["json", "orjson"], help="python-socketio JSON codec")
    parser.add_argument("--patch", help="comma-separated candidate improvements (benchmarks/patches.py)")
    parser.add_argument("--profile", help="write a cProfile (.prof) or pyinstrument (.html) profile here")
    args = parser.parse_args()
    raise_nofile()
    if "asyncio-loop" not in (args.patch or "").split(","):
        # Every Python server runs on uvloop, as ``lunark serve`` does: the baselines get the same loop.
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    runner = {"lunark": serve_lunark, "worker": serve_worker, "sio": serve_sio}[args.kind]
    if not args.profile:
        asyncio.run(runner(args))
    elif args.profile.endswith(".html"):
        from pyinstrument import Profiler

        profiler = Profiler(async_mode="disabled", interval=0.0005)
        profiler.start()
        try:
            asyncio.run(runner(args))
        finally:
            profiler.stop()
            with open(args.profile, "w") as out:
                out.write(profiler.output_html())
    else:
        import cProfile

        profile = cProfile.Profile()
        profile.enable()
        try:
            asyncio.run(runner(args))
        finally:
            profile.disable()
            profile.dump_stats(args.profile)


if __name__ == "__main__":
    main()
