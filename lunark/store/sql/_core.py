"""The executor each backend supplies, and the little every area of ``SqlStore`` shares.

A backend (``SqliteStore``, ``PostgresStore``) gives its dialect, how one statement runs
(``_fetch``), how an operation of several runs whole (``_perform``), the event log's appends (group
commit) and its ``last_seq``; everything else is written once, by area, on top of ``SqlCore``.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

from lunark.errors import LunarkError
from lunark.store import statements as q
from lunark.store.dialect import Dialect
from lunark.store.operations import Operation, Row
from lunark.store.records import EventRecord

__all__ = ["SqlCore"]


_T = TypeVar("_T")


class SqlCore(ABC):
    """What every area of the SQL store stands on: the dialect, and the executor a backend supplies."""

    dialect: ClassVar[Dialect]
    LAST_SEQ: ClassVar[str]
    """The chat's latest seq (``:chat_id``): where each database keeps it differs."""
    health_timeout: ClassVar[float | None] = None
    driver_errors: ClassVar[tuple[type[BaseException], ...]] = ()
    """What the driver raises when the database does not answer (``healthy`` says ``False``)."""

    @abstractmethod
    async def _fetch(self, sql: str, params: Mapping[str, Any] = {}) -> list[Row]:
        """Run one statement on its own; its rows (none for one that returns none)."""

    @abstractmethod
    async def _perform(self, operation: Operation[_T], *, transaction: bool = False) -> _T:
        """Run ``operation`` whole on one connection (in one transaction with ``transaction``):
        a cancelled caller stops waiting, the operation goes on."""

    @abstractmethod
    def append_events_soon(
        self, chat_id: str, events: Sequence[tuple[str, dict[str, Any]]],
        done: Callable[[list[EventRecord] | Exception], None],
    ) -> None:
        """``append_events`` without awaiting: ``done`` gets the records (or the error) on the event
        loop once they are committed, each with the JSON that was logged as its ``text``. Appends
        are answered in the order they were made.

        Raises at once what refuses the events before anything is logged (unserializable payloads,
        a closed store)."""

    @abstractmethod
    async def close(self) -> None:
        """Finish the operations already asked for, then close. Safe to call twice."""

    async def _text(self, sql: str, params: Mapping[str, Any]) -> str | None:
        """The one value the statement returns, as text, if it returns a row."""
        rows = await self._fetch(sql, params)
        return str(rows[0][0]) if rows else None

    async def healthy(self) -> bool:
        unanswered: tuple[type[BaseException], ...] = (LunarkError, TimeoutError, OSError, ValueError,
                                                       *self.driver_errors)
        try:
            async with asyncio.timeout(self.health_timeout):
                return await self._fetch(q.HEALTH) == [(1,)]
        except unanswered:
            return False
