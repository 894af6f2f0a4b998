"""Run the benchmark suite: ``./dev bench`` (or ``python -m benchmarks``).

    python -m benchmarks                 # everything, ~15 minutes on 2 cores (cluster: ~6)
    python -m benchmarks --quick         # smoke run, ~3 minutes on 2 cores
    python -m benchmarks --only relay --rev 9239c9d       # before/after: Lunark as of a commit, same run
    python -m benchmarks --only relay --ab asyncio-loop   # A/B: a variant (patches.py), same run

Writes benchmarks/results/results.json, benchmarks/results/*.png and the summary
tables of docs/performance.md (between its ``bench:begin``/``bench:end`` markers).
All servers listen on 127.0.0.1; every loop is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import approval as approval_mod
from benchmarks import cluster as cluster_mod
from benchmarks import paused as paused_mod
from benchmarks import relay as relay_mod
from benchmarks import replay as replay_mod
from benchmarks import seed as seed_mod
from benchmarks.client import sign_in
from benchmarks.monitor import PauseMonitor
from benchmarks.procs import (
    ROOT,
    Server,
    env_info,
    node_server,
    python_server,
    raise_nofile,
    revision_server,
    start_all,
    stop_all,
)
from benchmarks.relay import Cell, Target

RESULTS = ROOT / "benchmarks" / "results"
SECTIONS = ("relay", "approval", "replay", "paused", "memory", "cluster")


def plan(quick: bool) -> dict[str, Any]:
    if quick:
        return {
            "reps": 2,
            "cells": [Cell(200, 10, 0), Cell(200, 100, 0), Cell(100, 100, 50)],
            "approval_reps": 5,
            "replay": {100: 3, 1000: 10},
            "paused": [(1000, 20)],
            "idle_clients": 200,
            # one load and one failover of a worker: every set-up and path runs, in as little time
            "cluster": {"resume": (1000, 20), "failover": 2, "failover_workers": 1, "loads": {"max": (10, 200, 0)}},
            "workers": [],
        }
    return {
        "reps": 3,
        "cells": [
            Cell(200, 1, 0),
            Cell(200, 10, 0),
            Cell(200, 100, 0),
            Cell(2000, 1, 0),
            Cell(2000, 10, 0),
            Cell(200, 1, 200),
            Cell(200, 10, 200),
            Cell(200, 100, 200),
            Cell(200, 1, 50),
            Cell(200, 10, 50),
            Cell(200, 100, 50),
            BYTES_CELL,
        ],
        "approval_reps": 30,
        "replay": {100: 20, 1000: 20, 10000: 5},
        "paused": [(1000, 200), (10000, 200)],
        "idle_clients": 1000,
        "cluster": {"resume": (100_000, 200), "failover": 5,
                    "loads": {"max": (20, 500, 0), "50/s": (100, 200, 50)}},
        # lunark+w1 next to lunark in every full run: the turn worker's effect, in the same run.
        "workers": [1],
    }


BYTES_CELL = Cell(2000, 1, 50)
"""A 2,000-token answer at 50 tokens/s (40 s), run once and for Lunark only: its bytes, measured
rather than scaled up from 200 tokens, against the whole-message baseline's (which do not depend on
the pace and come from the M=2000 max-pace cell)."""


def skip_cell(name: str, cell: Cell, rep: int) -> bool:
    if cell == BYTES_CELL:
        return name != "lunark" or rep > 0
    # Re-emitting the whole message: 10 answers of 2,000 tokens is already ~140 MB of JSON to encode
    # and parse; its bytes per answer do not depend on C. (The plan has no M=2000 x C=100 cell: 200,000
    # tokens per run for every target would take the suite well past 5 minutes.)
    return name == "sio-whole" and cell.tokens * cell.chats > 20_000


def log(message: str) -> None:
    print(message, flush=True)


async def bench_relay(p: dict[str, Any], tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    log("== 1. token relay")
    lunark_args = ["--data-dir", str(tmp / "relay")] + (["--patch", args.patch] if args.patch else [])
    servers = {
        "lunark": python_server("lunark", "lunark", *lunark_args),
        "sio": python_server("sio", "sio"),
        "sio-whole": python_server("sio-whole", "sio"),
        "node": node_server(),
    }
    for i, patch in enumerate(args.ab or []):
        servers["lunark+" + patch] = python_server(
            "lunark+" + patch, "lunark", "--data-dir", str(tmp / f"relay-ab{i}"), "--patch", patch
        )
    for count in dict.fromkeys(p["workers"] + (args.workers or [])):
        servers[f"lunark+w{count}"] = python_server(
            f"lunark+w{count}", "lunark", "--data-dir", str(tmp / f"relay-w{count}"), "--workers", str(count)
        )
    for i, rev in enumerate(args.rev or []):
        servers["lunark+" + rev] = revision_server(
            "lunark+" + rev, rev, tmp / f"rev{i}", "lunark", "--data-dir", str(tmp / f"relay-rev{i}")
        )
    if args.targets:
        servers = {k: v for k, v in servers.items() if k in args.targets.split(",") or k.startswith("lunark+")}
    await start_all(list(servers.values()))
    monitor = PauseMonitor().start()
    targets = {
        name: Target("lunark" if name.startswith("lunark") else name, s, monitor) for name, s in servers.items()
    }
    try:
        cells = relay_mod.run_relay(targets, p["cells"], p["reps"], skip=skip_cell, log=log)
        return {"cells": await cells, "reps": p["reps"]}
    finally:
        monitor.stop()
        for target in targets.values():
            await target.close()
        await stop_all(list(servers.values()))


async def bench_approval_replay(
    p: dict[str, Any], tmp: Path, anvil_url: str, sections: set[str], revs: list[str] | None = None
) -> dict[str, Any]:
    """Sections 2 and 3 on this checkout, then on each ``--rev`` (its own server and data, the same
    Anvil and client): a before/after in one run. The revisions' figures go under ``revisions``."""
    out: dict[str, Any] = {}
    for rev in [None, *(revs or [])]:
        data = tmp / ("approval" if rev is None else f"approval-rev-{rev}")
        if rev is None:
            chat_id, last = await seed_mod.seed_log(data, max(p["replay"]) + 100)
            server = python_server("lunark", "lunark", "--data-dir", str(data), "--anvil", anvil_url)
        else:
            server = revision_server("lunark+" + rev, rev, tmp / f"rev-approval-{rev}", "lunark", "--data-dir",
                                     str(data), "--anvil", anvil_url)
            # The revision's own store writes its log (its schema may be older than this checkout's).
            chat_id, last = await _seed_with(server, data, max(p["replay"]) + 100)
        here = out if rev is None else out.setdefault("revisions", {}).setdefault(rev, {})
        await server.start()
        try:
            if "approval" in sections:
                log(f"== 2. approval round trip{'' if rev is None else f' (at {rev})'}")
                here["approval"] = await approval_mod.run_approval(server.url, anvil_url, p["approval_reps"], log=log)
            if "replay" in sections:
                log(f"== 3. replay{'' if rev is None else f' (at {rev})'}")
                token = await sign_in(server.url)
                here["replay"] = await replay_mod.run_replay(server.url, token, chat_id, last, p["replay"], log=log)
        finally:
            await server.stop()
    return out


async def _seed_with(server: Server, data: Path, events: int) -> tuple[str, int]:
    """``seed.seed_log`` run by the code ``server`` runs (its ``PYTHONPATH``)."""
    script = ("import asyncio, json, sys; from pathlib import Path; from benchmarks.seed import seed_log; "
              "print(json.dumps(asyncio.run(seed_log(Path(sys.argv[1]), int(sys.argv[2])))))")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, str(data), str(events), cwd=server.cwd, env=server.env,
        stdout=asyncio.subprocess.PIPE)
    stdout, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"seeding {data} with {server.name}'s code failed")
    chat_id, last = json.loads(stdout)
    return str(chat_id), int(last)


async def bench_paused(p: dict[str, Any], tmp: Path, anvil_url: str) -> dict[str, Any]:
    """Resume with N paused chats: ``lunark`` (turns in the serving process) for each N, and for the
    biggest N also ``lunark+w1`` (one turn worker, ``lunark serve``'s default on 2 cores) on a copy of
    the same data; then LangGraph's own floor for the same three steps (``paused.langgraph_floor``)."""
    log("== 4a. paused runs")
    out: dict[str, Any] = {}
    biggest = max(total for total, _ in p["paused"])
    for total, real in p["paused"]:
        data = tmp / f"paused-{total}"
        t0 = time.monotonic()
        ids, _ = await seed_mod.seed_paused(data, anvil_url, real, total)
        seeded = time.monotonic() - t0
        db_mb = sum(f.stat().st_size for f in data.iterdir() if f.is_file()) / 2**20
        variants = {str(total): []}
        if total == biggest:
            copy = tmp / f"paused-{total}-w1"
            await asyncio.to_thread(shutil.copytree, data, copy)
            variants[f"{total}+w1"] = ["--workers", "1"]
        for key, extra in variants.items():
            where = data if key == str(total) else copy
            server = python_server("lunark", "lunark", "--data-dir", str(where), "--anvil", anvil_url, *extra)
            await server.start()
            try:
                token = await sign_in(server.url)
                result = await paused_mod.run_resume(server, token, ids, log=log)
            finally:
                await server.stop()
            out[key] = result | {"seed_s": seeded, "real": real, "data_mb": db_mb}
            log(
                f"  {key:>9} paused: resume p50 {result['p50_ms']:.1f} ms  p99 {result['p99_ms']:.1f} ms  "
                f"server CPU {result['server_cpu_ms_per_resume']:.1f} ms/resume  "
                f"RSS {result['rss_start_mb']:.0f} -> {result['rss_after_mb']:.0f} MB  (store {db_mb:.0f} MB, "
                f"seeded in {seeded:.1f} s)"
            )
    floor = await paused_mod.langgraph_floor()
    out["langgraph_floor"] = floor
    log(f"  LangGraph alone, the same 3 steps: p50 {floor['p50_ms']:.1f} ms  p99 {floor['p99_ms']:.1f} ms  "
        f"CPU p50 {floor['cpu_p50_ms']:.1f} ms")
    return out


async def bench_memory(p: dict[str, Any], tmp: Path) -> dict[str, Any]:
    log("== 4b. memory per idle client")
    servers = {
        "lunark": python_server("lunark", "lunark", "--data-dir", str(tmp / "memory")),
        "sio": python_server("sio", "sio"),
        "node": node_server(),
    }
    await start_all(list(servers.values()))
    out: dict[str, Any] = {}
    try:
        for name, server in servers.items():
            token = await sign_in(server.url) if name == "lunark" else None
            out[name] = await paused_mod.idle_memory(server, token, p["idle_clients"])
            log(
                f"  {name:7} {out[name]['kb_per_client']:6.1f} KB per idle client "
                f"({out[name]['rss_before_mb']:.0f} -> {out[name]['rss_after_mb']:.0f} MB for {p['idle_clients']})"
            )
    finally:
        await stop_all(list(servers.values()))
    return out


def git_commit() -> str | None:
    """HEAD, with ``+changes`` when the package differs from it (the run measured uncommitted code)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "lunark"], cwd=ROOT).returncode != 0
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+changes" if dirty else "")


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    raise_nofile()
    p = plan(args.quick)
    if args.reps:
        p["reps"] = args.reps
    if args.cells:
        p["cells"] = [Cell(int(m), int(c), float(r)) for m, c, r in (x.split(":") for x in args.cells.split(","))]
    sections = set(args.only.split(",")) if args.only else set(SECTIONS)
    started = time.monotonic()
    results: dict[str, Any] = {
        "meta": {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "mode": "quick" if args.quick else "full",
            "commit": git_commit(),
            "patch": args.patch,
            "env": env_info(),
            "loadavg_start": os.getloadavg(),
        }
    }
    with tempfile.TemporaryDirectory(prefix="lunark-bench-") as name:
        tmp = Path(name)
        anvil = None
        if sections & {"approval", "replay", "paused", "cluster"}:
            from lunark.chain.anvil import Anvil

            anvil = await asyncio.to_thread(Anvil.start, chain_id=31337)
        timings = results["meta"]["section_s"] = {}
        try:
            if "relay" in sections:
                t0 = time.monotonic()
                results["relay"] = await bench_relay(p, tmp, args)
                timings["relay"] = time.monotonic() - t0
            if anvil is not None and sections & {"approval", "replay"}:
                t0 = time.monotonic()
                results |= await bench_approval_replay(p, tmp, anvil.url, sections, args.rev)
                timings["approval+replay"] = time.monotonic() - t0
            if anvil is not None and "paused" in sections:
                t0 = time.monotonic()
                results["paused"] = await bench_paused(p, tmp, anvil.url)
                timings["paused"] = time.monotonic() - t0
            if anvil is not None and "cluster" in sections:
                log("== 5. several processes on Postgres and Redis")
                t0 = time.monotonic()
                results["cluster"] = await cluster_mod.run_cluster(tmp, anvil.url, p["cluster"], log=log)
                timings["cluster"] = time.monotonic() - t0
            if "memory" in sections:
                t0 = time.monotonic()
                results["memory"] = await bench_memory(p, tmp)
                timings["memory"] = time.monotonic() - t0
        finally:
            if anvil is not None:
                anvil.stop()
    results["meta"]["duration_s"] = time.monotonic() - started
    results["meta"]["loadavg_end"] = os.getloadavg()
    return results


def dumps(results: dict[str, Any]) -> str:
    """Indented JSON with innermost objects and lists on one line: readable, diffable, small."""
    text = json.dumps(_compact(results), indent=1, default=str)
    text = re.sub(r"\{\n\s+([^{}\[\]]*?)\n\s*\}", lambda m: "{" + re.sub(r"\n\s+", " ", m.group(1)) + "}", text)
    text = re.sub(r"\[\n\s+([^{}\[\]]*?)\n\s*\]", lambda m: "[" + re.sub(r"\n\s+", " ", m.group(1)) + "]", text)
    return text + "\n"


def _compact(value: Any) -> Any:
    """Floats to 4 significant digits, so the committed results stay small."""
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if isinstance(value, dict):
        return {k: _compact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_compact(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a ~3 minute smoke run")
    parser.add_argument("--only", help=f"comma-separated sections: {','.join(SECTIONS)}")
    parser.add_argument("--reps", type=int, help="repetitions per relay cell")
    parser.add_argument("--patch", help="run Lunark with candidate improvements (benchmarks/patches.py)")
    parser.add_argument(
        "--ab",
        action="append",
        help="also run Lunark with this patch (comma-separated names) as "
        "another relay target, for an A/B in the same run; may be repeated",
    )
    parser.add_argument(
        "--rev",
        action="append",
        help="also run Lunark as of this git revision as another relay target, and the approval and replay "
        "sections on it (before/after in the same run); may be repeated",
    )
    parser.add_argument(
        "--workers",
        action="append",
        type=int,
        help="also run Lunark with this many turn worker processes (server.workers) as another relay "
        "target, lunark+wN, in the same run (the full plan has lunark+w1); may be repeated",
    )
    parser.add_argument("--cells", help="relay cells instead of the plan's, e.g. 200:100:50,2000:10:0 (M:C:rate)")
    parser.add_argument("--targets", help="relay targets to run (default lunark,sio,sio-whole,node)")
    parser.add_argument("--out", type=Path, help="results file (default benchmarks/results/results.json)")
    parser.add_argument("--no-report", action="store_true", help="do not write the plots and docs/performance.md")
    args = parser.parse_args(argv)
    try:  # the clients run on uvloop too: the less CPU the measuring side takes, the less it disturbs
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    results = asyncio.run(main_async(args))
    # A quick run is a smoke test: its files go to results/quick/ (not committed), never over the full run's.
    folder = RESULTS / "quick" if args.quick else RESULTS
    out = args.out or folder / "results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(dumps(results))
    log(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out} in {results['meta']['duration_s']:.0f} s")
    if not args.no_report:
        from benchmarks.report import write_report

        for path in write_report(results, folder=folder, doc=not args.quick and not args.only and not args.out):
            log(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
