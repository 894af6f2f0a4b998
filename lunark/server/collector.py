"""When the garbage collector runs in ``lunark serve``: young collections as they come, full ones
between turns.

A full collection walks every tracked object not frozen at start-up and stops the event loop
while it does: with 100 chats streaming that was 25-135 ms, three times a run, freeing
nothing, because each streamed token keeps ~10 objects alive until its turn ends (LangChain's
``BaseChatModel.astream`` holds every chunk for its ``on_llm_end``) and Python starts a full
collection once enough objects have been promoted (docs/performance.md).

``Collector`` turns automatic full collections off and runs them itself: when no turn is
running, or, under a load that never pauses, once ``longest`` seconds have passed since the
last one, so memory stays bounded. Young collections (generations 0 and 1) keep running on
their own, less often than Python's default (``young`` thresholds), since each is cheap and
most of what they find is still alive.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from contextlib import suppress

__all__ = ["Collector"]

logger = logging.getLogger(__name__)

_NEVER = 1_000_000_000
"""A generation-2 threshold Python never reaches: no full collection starts on its own."""


class Collector:
    """Schedules full garbage collections for when ``busy()`` is false (see the module)."""

    def __init__(
        self,
        busy: Callable[[], bool],
        *,
        young: tuple[int, int] = (5_000, 20),
        every: float = 0.25,
        longest: float = 60.0,
    ) -> None:
        self.busy = busy
        self.young = young
        self.every = every
        """How often, in seconds, to look whether a full collection is due."""
        self.longest = longest
        """The longest time, in seconds, between two full collections, busy or not."""
        self.full = 0
        """Full collections run so far, and how many of them while turns were running."""
        self.forced = 0
        self._last = time.monotonic()
        self._saved: tuple[int, int, int] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self, *, freeze: bool = True) -> None:
        """Freeze what start-up made (it lives as long as the process), then take over."""
        gc.collect()
        if freeze:
            gc.freeze()
        self._saved = gc.get_threshold()
        gc.set_threshold(self.young[0], self.young[1], _NEVER)
        self._last = time.monotonic()
        self._task = asyncio.create_task(self._watch(), name="lunark-collector")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._saved is not None:
            gc.set_threshold(*self._saved)
            self._saved = None

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            if gc.get_count()[2] == 0:
                continue  # nothing was promoted to the old generation since the last full collection
            busy = self.busy()
            if busy and time.monotonic() - self._last < self.longest:
                continue
            started = time.monotonic()
            gc.collect()
            self._last = time.monotonic()
            self.full += 1
            if busy:
                self.forced += 1
                logger.info("full garbage collection during turns took %.1f ms", (self._last - started) * 1000)
