"""Full garbage collections wait for a moment with no turn running (``lunark serve``'s schedule)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

from lunark.server.collector import Collector


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only a collection frees it


def _cycles(count: int) -> weakref.ref[Node]:
    """Cyclic garbage promoted to the old generation; a weak reference to one of it."""
    nodes = [Node() for _ in range(count)]
    gc.collect(1)  # still alive: promoted to generation 2
    watched = weakref.ref(nodes[0])
    del nodes
    gc.collect(1)  # young collections no longer look at them
    return watched


async def _until(condition: Any, rounds: int = 200) -> bool:
    for _ in range(rounds):
        if condition():
            return True
        await asyncio.sleep(0.02)
    return False


async def test_full_collections_wait_until_no_turn_runs() -> None:
    busy = True
    full: list[int] = []

    def watch(phase: str, info: dict[str, Any]) -> None:
        if phase == "stop" and info["generation"] == 2:
            full.append(1)

    saved = gc.get_threshold()
    collector = Collector(lambda: busy, young=(50, 2), every=0.01, longest=3600)
    collector.start(freeze=False)
    gc.callbacks.append(watch)
    try:
        watched = _cycles(5_000)
        for _ in range(20):  # plenty of allocation: Python's own thresholds would have started one
            _cycles(5_000)
            await asyncio.sleep(0.01)
        assert not full and watched() is not None, "no full collection while a turn runs"
        busy = False
        assert await _until(lambda: watched() is None), "freed once no turn runs"
        assert collector.full >= 1 and collector.forced == 0
    finally:
        gc.callbacks.remove(watch)
        await collector.stop()
    assert gc.get_threshold() == saved


async def test_a_load_that_never_pauses_still_gets_a_full_collection() -> None:
    collector = Collector(lambda: True, every=0.01, longest=0.2)
    collector.start(freeze=False)
    try:
        watched = _cycles(1_000)
        assert await _until(lambda: watched() is None)
        assert collector.forced >= 1
    finally:
        await collector.stop()
