"""Pauses of a process's event loop, recorded inside it, so a run's tail can be attributed.

``PauseMonitor`` runs in every Python process of the suite: the servers under test and the
clients' process. It records two kinds of interval on CLOCK_MONOTONIC (``time.monotonic``,
the clock the tokens are stamped with):

- **GC**: every garbage collection that takes at least ``GC_MIN_S`` (``gc.callbacks``),
  with its generation.
- **Loop lag**: a timer re-armed every ``TICK_S``; when it fires late by at least
  ``LAG_MIN_S``, the loop was busy (a long callback, a collection, a blocked call) from the
  time it should have fired until it did.

``attribute`` then says how much of the slowest tokens' latency fell inside such intervals.
The Node server (``node_relay.mjs``) records the same two kinds with ``perf_hooks``.
"""

from __future__ import annotations

import asyncio
import bisect
import gc
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

TICK_S = 0.001
LAG_MIN_S = 0.002
"""Lags shorter than this are a busy loop's ordinary iterations, not a pause."""
BLOCKED_S = 0.005
"""A lag at least this long counts as the loop being blocked, in the attribution."""
GC_MIN_S = 0.0002
KEEP = 200_000


class PauseMonitor:
    def __init__(self) -> None:
        self.gcs: deque[tuple[float, float, int]] = deque(maxlen=KEEP)
        self.lags: deque[tuple[float, float]] = deque(maxlen=KEEP)
        self.collections = [0, 0, 0]
        self._gc_start = 0.0
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0

    def start(self) -> PauseMonitor:
        gc.callbacks.append(self._on_gc)
        self._due = time.monotonic() + TICK_S
        self._handle = asyncio.get_running_loop().call_later(TICK_S, self._tick)
        return self

    def stop(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        if self._handle is not None:
            self._handle.cancel()

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_start = time.monotonic()
            return
        end = time.monotonic()
        generation = int(info["generation"])
        self.collections[generation] += 1
        if end - self._gc_start >= GC_MIN_S:
            self.gcs.append((self._gc_start, end, generation))

    def _tick(self) -> None:
        now = time.monotonic()
        if now - self._due >= LAG_MIN_S:
            self.lags.append((self._due, now))
        self._due = now + TICK_S
        self._handle = asyncio.get_running_loop().call_later(TICK_S, self._tick)

    def report(self, t0: float, t1: float) -> dict[str, Any]:
        """The intervals that overlap [t0, t1], and counters (JSON-ready)."""
        enabled = gc.isenabled()
        gc.disable()  # a collection's callback would append to the deque being read
        try:
            gcs, lags = list(self.gcs), list(self.lags)
        finally:
            if enabled:
                gc.enable()
        return {
            "gc": [[a, b, g] for a, b, g in gcs if b >= t0 and a <= t1],
            "lag": [[a, b] for a, b in lags if b >= t0 and a <= t1],
            "collections": list(self.collections),
            "gc_threshold": list(gc.get_threshold()),
        }


def merge(intervals: Sequence[Sequence[float]]) -> list[tuple[float, float]]:
    """The union of intervals, sorted and disjoint."""
    out: list[tuple[float, float]] = []
    for a, b in sorted((float(i[0]), float(i[1])) for i in intervals):
        if out and a <= out[-1][1]:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def overlap(union: list[tuple[float, float]], starts: list[float], a: float, b: float) -> float:
    """How much of [a, b] lies inside the disjoint sorted intervals ``union`` (``starts``: their starts)."""
    total = 0.0
    i = max(0, bisect.bisect_right(starts, a) - 1)
    while i < len(union) and union[i][0] < b:
        lo, hi = max(a, union[i][0]), min(b, union[i][1])
        if hi > lo:
            total += hi - lo
        i += 1
    return total


def attribute(
    tokens: Sequence[tuple[float, float]], threshold: float, kinds: dict[str, Sequence[Sequence[float]]]
) -> dict[str, float]:
    """For the tokens whose latency is at least ``threshold`` (the run's p99): the share of their
    summed latency that fell inside each kind of pause. ``tokens``: (sent, received) times."""
    tail = [(s, r) for s, r in tokens if r - s >= threshold]
    whole = sum(r - s for s, r in tail)
    out: dict[str, float] = {}
    for name, intervals in kinds.items():
        union = merge(intervals)
        starts = [a for a, _ in union]
        inside = sum(overlap(union, starts, s, r) for s, r in tail)
        out[name] = inside / whole if whole > 0 else 0.0
    return out
