"""Start-up and memory of ``lunark serve``'s processes, this checkout against git revisions.

    python -m benchmarks.startup [--reps 3] [--out FILE] [REV ...]

For this checkout and each REV (its ``lunark`` package, as ``--rev`` runs it: ``procs.revision_server``),
alternating ``--reps`` times, on an empty data directory: ``benchmarks.serve lunark --workers 1``
(the default on 2 cores: a relay and one turn worker) is started and timed until it listens and
until ``/healthz`` says its worker is ready; then the resident memory of the relay and of its worker
is read from /proc. Prints one JSON line per start and writes them all to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.procs import Server, python_server, revision_server, rss_kb


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


async def one(name: str, server: Server) -> dict[str, Any]:
    t0 = time.monotonic()
    await server.start(timeout=120)
    listening = time.monotonic() - t0
    try:
        async with aiohttp.ClientSession() as http:
            while True:
                async with http.get(f"{server.url}/healthz") as response:
                    workers = (await response.json()).get("workers") or {}
                if workers.get("ready", 0) >= workers.get("count", 1):
                    break
                await asyncio.sleep(0.02)
        ready = time.monotonic() - t0
        await asyncio.sleep(1.0)  # settled: nothing left to import or build
        children = _children(server.pid)
        return {"lunark": name, "listening_s": listening, "workers_ready_s": ready,
                "relay_rss_mb": rss_kb(server.pid) / 1024,
                "worker_rss_mb": sum(rss_kb(pid) for pid in children) / 1024, "workers": len(children)}
    finally:
        await server.stop()


async def measure(revs: list[str], reps: int) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(reps):
            for rev in ["", *revs]:
                data = Path(tmp) / f"data-{rev or 'here'}-{rep}"
                args = ("--data-dir", str(data), "--workers", "1")
                server = (revision_server(rev, rev, Path(tmp) / f"rev-{rev}", "lunark", *args) if rev
                          else python_server("here", "lunark", *args))
                row = await one(rev or "this checkout", server) | {"rep": rep}
                print(json.dumps(row), flush=True)
                rows.append(row)
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("revs", nargs="*")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows = asyncio.run(measure(args.revs, args.reps))
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
