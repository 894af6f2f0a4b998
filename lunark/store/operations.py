"""How ``SqlStore`` hands the backends an operation of several statements.

An operation is a generator: it yields a ``Query`` (or a ``Lock``) and is sent back the rows, so
its body is written once and each backend drives it in its own way (SQLite on its thread in one
hop, Postgres on one pooled connection). A statement that breaks a constraint is thrown back into
the generator, at the ``yield`` that asked for it, as ``lunark.store.dialect.Conflict``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from lunark.store.dialect import Conflict

__all__ = ["Lock", "Operation", "Query", "Row", "drive", "drive_async"]

_T = TypeVar("_T")
Row = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Query:
    sql: str
    """Named parameters and dialect macros (``lunark.store.dialect``), compiled by the executor."""
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Lock:
    """Serialize the rest of the transaction with every other holding ``name``, in any process."""

    name: str


Operation = Generator[Query | Lock, list[Row], _T]


def drive(operation: Operation[_T], step: Callable[[Query | Lock], list[Row]]) -> _T:
    """Run ``operation``, each of its steps through ``step`` (a ``Conflict`` is thrown back in)."""
    try:
        asked = next(operation)
        while True:
            try:
                rows = step(asked)
            except Conflict as exc:
                asked = operation.throw(exc)
            else:
                asked = operation.send(rows)
    except StopIteration as stop:
        return cast(_T, stop.value)


async def drive_async(operation: Operation[_T], step: Callable[[Query | Lock], Awaitable[list[Row]]]) -> _T:
    """``drive`` with an asynchronous ``step``."""
    try:
        asked = next(operation)
        while True:
            try:
                rows = await step(asked)
            except Conflict as exc:
                asked = operation.throw(exc)
            else:
                asked = operation.send(rows)
    except StopIteration as stop:
        return cast(_T, stop.value)
