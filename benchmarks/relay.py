"""1. Token relay: Lunark against three baselines, measured in the same run.

Targets, each a server process with the token source inside it:

- ``lunark``: the real LunarkServer; ``BenchModel`` streams M stamped tokens through
  LangGraph, the runner, the hub (numbered, logged in SQLite, coalesced) and Socket.IO.
- ``sio``: (a) a bare python-socketio server emitting one event per token: the floor.
- ``sio-whole``: (b) the same server re-emitting the whole message so far with each token.
- ``node``: (c) a Node socket.io server relaying one event per token.

Clients are python-socketio clients in this process (the servers are in theirs): one
per chat, signed in for Lunark (join_chat, send_message). Each token carries its
CLOCK_MONOTONIC send time, so the client reads per-token latency on the same clock.

Only the server is measured: this process's garbage collector is frozen and disabled
during every measured run (a collection here would delay whichever target is being
measured), and each run reports how much of its p99 tail fell inside pauses the server
recorded (``benchmarks/monitor.py``: its collections and event-loop stalls) and inside
stalls of this process.
"""

from __future__ import annotations

import asyncio
import gc
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.client import BenchClient, Stream, close_many, connect_many, sign_in
from benchmarks.monitor import BLOCKED_S, PauseMonitor, attribute
from benchmarks.procs import Server
from benchmarks.stats import percentile, summary

TARGETS = ("lunark", "sio", "sio-whole", "node")
METRICS = (
    "tokens_per_s",
    "events_per_s",
    "bytes_per_answer",
    "events_per_answer",
    "latency_p50_ms",
    "latency_p99_ms",
    "ttft_p50_ms",
    "ttft_p99_ms",
    "server_cpu_ms_per_1k_tokens",
    "workers_cpu_ms_per_1k_tokens",
    "steady_latency_p50_ms",
    "steady_latency_p99_ms",
    "server_cpu_util",
    "client_cpu_util",
    "ttft_max_ms",
    "p99_share_server_pause",
    "p99_share_server_gc",
    "p99_share_client_pause",
    "server_gc_ms",
    "server_gc_max_ms",
    "server_full_gcs",
    "server_lag_max_ms",
    "client_lag_max_ms",
    "lost",
    "order_errors",
    "seq_errors",
)


@dataclass(frozen=True)
class Cell:
    tokens: int  # M, tokens per answer
    chats: int  # C, concurrent chats
    rate: float  # tokens/s per stream; 0 = as fast as possible

    @property
    def label(self) -> str:
        pace = "max" if not self.rate else f"{self.rate:g}/s"
        return f"M={self.tokens} C={self.chats} {pace}"


class Target:
    """A server under test with its connected clients."""

    def __init__(self, name: str, server: Server, monitor: PauseMonitor | None = None) -> None:
        self.name = name
        self.server = server
        self.clients: list[BenchClient] = []
        self.token: str | None = None
        self.monitor = monitor
        """This (the clients') process's pause monitor, to tell its own stalls apart."""

    async def connect(self, count: int) -> None:
        if self.name == "lunark" and self.token is None:
            self.token = await sign_in(self.server.url)
        if len(self.clients) < count:
            self.clients += await connect_many(self.server.url, count - len(self.clients), self.token)

    async def close(self) -> None:
        await close_many(self.clients)
        self.clients = []

    async def run(self, cell: Cell, *, timeout: float | None = None) -> dict[str, Any]:
        await self.connect(cell.chats)
        clients = self.clients[: cell.chats]
        whole = self.name == "sio-whole"
        if self.name == "lunark":
            await asyncio.gather(*(c.join() for c in clients))
        streams = [Stream(cell.tokens, whole) for _ in clients]
        for client, stream in zip(clients, streams, strict=True):
            client.reset(stream)
        # The clients' collector stays out of the measured run: a pause here would be charged to the target.
        gc.collect()
        gc.freeze()
        gc.disable()
        try:
            return await self._measured(cell, clients, streams, whole, timeout)
        finally:
            gc.enable()
            gc.unfreeze()

    async def _measured(
        self, cell: Cell, clients: list[BenchClient], streams: list[Stream], whole: bool, timeout: float | None
    ) -> dict[str, Any]:
        cpu0, workers0 = self.server.cpu_seconds(), self.server.children_cpu_seconds()
        client0 = time.process_time()
        wall0 = time.monotonic()

        async def start(client: BenchClient, stream: Stream, phase: float) -> None:
            # Real streams are not in phase: each starts at a random point of one token interval.
            if phase:
                await asyncio.sleep(phase)
            stream.sent_at = time.monotonic()
            if self.name == "lunark":
                ack = await client.send(f"bench {cell.tokens} {cell.rate:g}")
                if "error" in ack:
                    raise RuntimeError(f"send_message failed: {ack['error']}")
            else:
                await client.start_baseline(cell.tokens, cell.rate, "whole" if whole else "delta")

        phases = [random.random() / cell.rate if cell.rate else 0.0 for _ in clients]
        await asyncio.gather(*(start(c, s, p) for c, s, p in zip(clients, streams, phases, strict=True)))
        budget = timeout or (cell.tokens / cell.rate * 2 + 20 if cell.rate else cell.tokens * cell.chats / 2000 + 30)
        done, _ = await asyncio.wait([s.done for s in streams], timeout=budget)
        await asyncio.sleep(0.05)  # anything late would show as a seq error
        cpu = self.server.cpu_seconds() - cpu0
        workers_cpu = self.server.children_cpu_seconds() - workers0
        wall = time.monotonic() - wall0 - 0.05
        client_cpu = time.process_time() - client0
        bytes_ = [c.bytes for c in clients]
        frames = sum(c.frames for c in clients)
        for client in clients:
            client.reset(None)
        server_pauses = await self.server.pauses(wall0 - 0.5, time.monotonic())
        client_pauses = self.monitor.report(wall0 - 0.5, time.monotonic()) if self.monitor else None
        return measure(cell, streams, bytes_, cpu, timed_out=len(done) < len(streams)) | {
            "frames": frames,
            # the turn workers' CPU (lunark+wN; 0 for the others), beside the relay process's own
            "workers_cpu_ms_per_1k_tokens": workers_cpu * 1e6 / max(cell.tokens * cell.chats, 1),
            "server_cpu_util": cpu / wall,
            "client_cpu_util": client_cpu / wall,
        } | pauses(streams, server_pauses, client_pauses)


def measure(
    cell: Cell, streams: Sequence[Stream], bytes_: Sequence[int], cpu_s: float, *, timed_out: bool
) -> dict[str, Any]:
    received = sum(s.tokens for s in streams)
    firsts = [s.first_at for s in streams if s.first_at is not None]
    lasts = [s.last_at for s in streams if s.first_at is not None]
    window = (max(lasts) - min(firsts)) if firsts else 0.0
    latencies = [x for s in streams for x in s.latencies]
    # Steady state: while every stream is running (after the last first token, before the first last one).
    steady_from = max(firsts) if firsts else 0.0
    steady_to = min(lasts) if lasts else 0.0
    steady = [
        x for s in streams for x, at in zip(s.latencies, s.received_at, strict=True) if steady_from <= at <= steady_to
    ]
    events = sum(s.events for s in streams)
    ttfts = [(s.first_at - s.sent_at) * 1000 for s in streams if s.first_at is not None]
    return {
        "tokens_expected": cell.tokens * cell.chats,
        "tokens_received": received,
        "lost": cell.tokens * cell.chats - received,
        "order_errors": sum(s.order_errors for s in streams),
        "seq_errors": sum(s.seq_errors for s in streams),
        "timed_out": timed_out,
        "window_s": window,
        "tokens_per_s": received / window if window > 0 else None,
        "events_per_s": events / window if window > 0 else None,
        "events_per_answer": percentile([s.events for s in streams], 50),
        "token_events_per_answer": percentile([s.token_events for s in streams], 50),
        "bytes_per_answer": percentile(list(bytes_), 50),
        "latency_p50_ms": percentile(latencies, 50) * 1000 if latencies else None,
        "latency_p99_ms": percentile(latencies, 99) * 1000 if latencies else None,
        "latency_max_ms": max(latencies) * 1000 if latencies else None,
        "steady_tokens": len(steady),
        "steady_latency_p50_ms": percentile(steady, 50) * 1000 if steady else None,
        "steady_latency_p99_ms": percentile(steady, 99) * 1000 if steady else None,
        "ttft_p50_ms": percentile(ttfts, 50) if ttfts else None,
        "ttft_p99_ms": percentile(ttfts, 99) if ttfts else None,
        "ttft_max_ms": max(ttfts) if ttfts else None,
        "server_cpu_s": cpu_s,
        "server_cpu_ms_per_1k_tokens": cpu_s * 1e6 / received if received else None,
    }


def pauses(
    streams: Sequence[Stream], server: dict[str, Any], client: dict[str, Any] | None
) -> dict[str, Any]:
    """How much of the run's p99 tail the server's (and this process's) pauses explain.

    For the tokens at or above the run's p99 latency, the share of their summed latency (send to
    receipt) that fell inside a server GC, inside any server pause (a GC, or the loop stalled for
    ``BLOCKED_S`` or more), and inside a stall of the clients' process."""
    tokens = [(at - x, at) for s in streams for x, at in zip(s.latencies, s.received_at, strict=True)]
    latencies = [r - s for s, r in tokens]
    if not latencies:
        return {}
    p99 = percentile(latencies, 99)
    gcs = [(a, b) for a, b, _ in server["gc"]]
    blocked = [(a, b) for a, b in server["lag"] if b - a >= BLOCKED_S]
    client_stalls = [(a, b) for a, b in (client or {}).get("lag", []) if b - a >= BLOCKED_S]
    client_stalls += [(a, b) for a, b, _ in (client or {}).get("gc", [])]
    shares = attribute(tokens, p99, {"gc": gcs, "pause": gcs + blocked, "client": client_stalls})
    first, last = min(s for s, _ in tokens), max(r for _, r in tokens)
    window_gcs = [(a, b, g) for a, b, g in server["gc"] if b >= first and a <= last]
    return {
        "p99_share_server_pause": shares["pause"],
        "p99_share_server_gc": shares["gc"],
        "p99_share_client_pause": shares["client"],
        "server_gc_ms": sum(b - a for a, b, _ in window_gcs) * 1000,
        "server_gc_max_ms": max((b - a for a, b, _ in window_gcs), default=0.0) * 1000,
        "server_full_gcs": sum(1 for _, _, g in window_gcs if g == 2),
        "server_lag_max_ms": max((b - a for a, b in server["lag"] if b >= first and a <= last), default=0.0) * 1000,
        "client_lag_max_ms": max(
            (b - a for a, b in (client or {}).get("lag", []) if b >= first and a <= last), default=0.0
        ) * 1000,
    }


def summarize_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    # The runs themselves are kept next to the summary: no second copy of the values in it.
    out = {m: summary([r[m] for r in runs if r.get(m) is not None]) for m in METRICS}
    for value in out.values():
        value.pop("runs", None)
    return out


async def run_relay(
    targets: dict[str, Target], cells: Sequence[Cell], reps: int, *, skip: Any = None, log: Any = print
) -> list[dict[str, Any]]:
    """Every cell, ``reps`` times, each target in turn (the order rotates between repetitions)."""
    out: list[dict[str, Any]] = []
    names = list(targets)
    for cell in cells:
        runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
        for rep in range(reps):
            order = names[rep % len(names) :] + names[: rep % len(names)]
            for name in order:
                if skip is not None and skip(name, cell, rep):
                    continue
                result = await targets[name].run(cell)
                runs[name].append(result)
                await asyncio.sleep(0.05)
        for name in names:
            if not runs[name]:
                continue
            entry = {
                "tokens": cell.tokens,
                "chats": cell.chats,
                "rate": cell.rate,
                "target": name,
                "runs": runs[name],
                "summary": summarize_runs(runs[name]),
            }
            out.append(entry)
            s = entry["summary"]
            log(
                f"  {cell.label:22} {name:9} tok/s {s['tokens_per_s']['median'] or 0:>10,.0f}  "
                f"p50 {s['latency_p50_ms']['median'] or 0:7.1f} ms  p99 {s['latency_p99_ms']['median'] or 0:7.1f} ms  "
                f"B/answer {s['bytes_per_answer']['median'] or 0:>12,.0f}  lost {sum(r['lost'] for r in runs[name])}  "
                f"steady p99 {s['steady_latency_p99_ms']['median'] or 0:7.1f}  "
                f"ttft {s['ttft_p50_ms']['median'] or 0:6.1f}/{s['ttft_p99_ms']['median'] or 0:.1f}  "
                f"pause {s['p99_share_server_pause']['median'] or 0:.0%} "
                f"gc {s['p99_share_server_gc']['median'] or 0:.0%} "
                f"cli {s['p99_share_client_pause']['median'] or 0:.0%} full {s['server_full_gcs']['median'] or 0:.0f}  "
                f"cpu/1k {s['server_cpu_ms_per_1k_tokens']['median'] or 0:.0f}  "
                f"cpu srv {s['server_cpu_util']['median'] or 0:.2f} cli {s['client_cpu_util']['median'] or 0:.2f}"
            )
    return out
