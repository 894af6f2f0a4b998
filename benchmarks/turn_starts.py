"""Turn starts in-process: the CPU a 100-chat burst costs the agent, and its time to first token.

    python -m benchmarks.turn_starts [ROOT ...]

For each ROOT (a directory holding a ``lunark`` package, e.g. ``git archive REV lunark`` unpacked;
default: this checkout), in a process of its own, alternating ROOTs ``--reps`` times: ``Agent.open``
on a fresh data directory with the benchmark model, 10 warm-up turns, then 100 one-token turns of
100 new chats started at once (``Agent.snapshot`` then ``Agent.stream(on_token=..., snapshot=...)``,
as the server's runner starts them; a revision without them: ``Agent.stream`` and its token
events), then 100 more one after another. Prints one JSON line per run:
CPU per turn in the burst and in a row, the burst's wall time, and TTFT p50/p99 (start to the first
token handed to ``on_token``). No server, no sockets: what the agent alone costs a turn start.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
USER = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


async def measure(chats: int) -> dict[str, Any]:
    from benchmarks.benchmodel import BenchModel
    from lunark.config import Settings
    from lunark.graph.agent import Agent

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.load(data_dir=tmp, plugins=False)
        async with Agent.open(settings, model=BenchModel(), environ={}) as agent:

            async def one(chat: str) -> float:
                started = time.monotonic()
                first: float | None = None

                def token(_: str) -> None:
                    nonlocal first
                    if first is None:
                        first = time.monotonic()

                if not hasattr(agent, "snapshot"):  # a revision before on_token: tokens come as events
                    async for event in agent.stream(chat, "bench 1 0", user_address=USER):
                        if event["type"] == "token":
                            token(event["text"])
                    return (first or time.monotonic()) - started
                snapshot = await agent.snapshot(chat)
                async for _ in agent.stream(chat, "bench 1 0", user_address=USER, on_token=token, snapshot=snapshot):
                    pass
                return (first or time.monotonic()) - started

            for i in range(10):
                await one(f"warm{i}")
            gc.collect()
            gc.freeze()  # as lunark serve does
            cpu0, wall0 = time.process_time(), time.monotonic()
            ttfts = sorted(await asyncio.gather(*(one(f"burst{i}") for i in range(chats))))
            burst_cpu, burst_wall = time.process_time() - cpu0, time.monotonic() - wall0
            cpu0 = time.process_time()
            for i in range(chats):
                await one(f"row{i}")
            row_cpu = time.process_time() - cpu0
    import lunark

    return {
        "lunark": lunark.__file__,
        "burst_cpu_ms_per_turn": burst_cpu * 1000 / chats,
        "row_cpu_ms_per_turn": row_cpu * 1000 / chats,
        "burst_wall_ms": burst_wall * 1000,
        "ttft_p50_ms": ttfts[len(ttfts) // 2] * 1000,
        "ttft_p99_ms": ttfts[min(len(ttfts) - 1, round(len(ttfts) * 0.99) - 1)] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="*", type=Path)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--chats", type=int, default=100)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child: measure here
    args = parser.parse_args()
    if args.one:
        print(json.dumps(asyncio.run(measure(args.chats))), flush=True)
        return
    roots = args.roots or [ROOT]
    for rep in range(args.reps):
        for root in roots:
            env_path = f"{root}:{ROOT}"  # the root's lunark, this checkout's benchmarks
            line = subprocess.run(
                [sys.executable, "-m", "benchmarks.turn_starts", "--one", "--chats", str(args.chats)],
                capture_output=True, text=True, check=True, cwd="/", env={**os.environ, "PYTHONPATH": env_path},
            ).stdout.strip()
            print(json.dumps({"root": str(root), "rep": rep, **json.loads(line)}), flush=True)


if __name__ == "__main__":
    main()
