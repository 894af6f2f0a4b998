"""Approvals expire on time, however many wait: one task, woken for the soonest expiry.

The store holds every pending approval with its ``expires_at`` (written before its
``pending_approval`` was sent). The clock asks it for the due ones (soonest first, a page at a
time), hands each to the runner to reject by ``timeout``, then sleeps until the next one is due. A
new approval announced here pokes it awake if it is due sooner; the sleep never exceeds
``interval``, so an approval this process was not told of (another process's, one reopened after
a failed decision) is picked up within it. Nothing is held per approval: a server starts on
100,000 paused chats without reading one of them (``benchmarks/cluster.py``).

Each expiry starts a turn (the model hears of the rejection), so a pass hands over at most a
page: after a long outage the backlog is worked off a page per ``interval``, not all at once. The
next pass starts after the last record of the one before, so records that stay due (their chat
is busy) never hold the others back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import suppress
from datetime import UTC, datetime

from lunark.errors import LunarkError
from lunark.store import ApprovalRecord, Store

__all__ = ["ExpiryClock"]

logger = logging.getLogger(__name__)


class ExpiryClock:
    def __init__(
        self, store: Store, expire: Callable[[ApprovalRecord], Awaitable[None]], *, interval: float = 1.0,
        page: int = 100,
    ) -> None:
        self.store = store
        self._expire = expire
        self.interval = interval
        """The longest sleep: how soon an approval nobody poked for is expired."""
        self.page = page
        """The most approvals handed over in one pass."""
        self._cursor: ApprovalRecord | None = None
        """Where the next pass goes on from, after a full page."""
        self._wake = asyncio.Event()
        self._next: datetime | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="lunark-expiry")

    def due_at(self, when: datetime) -> None:
        """An approval expires at ``when``: wake up then, if that is sooner than planned."""
        if self._next is None or when < self._next:
            self._wake.set()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def expire_due(self) -> int:
        """Hand the next page of approvals due by now to the runner; how many it was."""
        now = datetime.now(UTC)
        page = await self.store.due_approvals(now, limit=self.page, after=self._cursor)
        if not page and self._cursor is not None:  # past the last one: round again from the soonest
            self._cursor = None
            page = await self.store.due_approvals(now, limit=self.page)
        self._cursor = page[-1] if len(page) == self.page else None
        for record in page:
            try:
                await self._expire(record)
            except LunarkError as exc:
                logger.info("approval %s not expired: %s", record.approval_id, exc.message)
        return len(page)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.expire_due()
                soonest = await self.store.next_expiry()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("expiring approvals failed; trying again in %ss", self.interval)
                soonest = None
            now = datetime.now(UTC)
            # Still due (a chat busy, or more than a page of backlog): again after the interval, no sooner.
            wait = self.interval if soonest is None else min(self.interval, (soonest - now).total_seconds())
            wait = self.interval if wait <= 0 else wait
            self._next = soonest if soonest is not None and soonest > now else None
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
