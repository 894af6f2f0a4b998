"""The bookkeeping of group-committed appends, the same on both databases.

An append's events are encoded on the event loop when it is asked for (so what cannot be stored is
refused before anything is logged), queued, committed with the others of its batch by the backend
(``lunark.store.sqlite``, ``lunark.store.postgres``: that part differs), then answered here in the
order the appends were made, each with the JSON text that was logged. ``appended`` awaits one
append of a backend's ``append_events_soon``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lunark.protocol import chat_event
from lunark.store.dialect import dumps
from lunark.store.records import EventRecord

__all__ = ["Append", "answer", "appended", "prepare", "stamp"]

logger = logging.getLogger(__name__)


@dataclass
class Append:
    chat_id: str
    events: list[tuple[str, dict[str, Any], str]]
    """(type, the event without ``seq`` and ``ts``, its JSON without the closing brace)."""
    done: Callable[[list[EventRecord] | Exception], None]


def prepare(
    chat_id: str, events: Sequence[tuple[str, dict[str, Any]]], done: Callable[[list[EventRecord] | Exception], None]
) -> Append:
    """The append, its events encoded; raises what refuses them (unserializable payloads)."""
    prepared = []
    for type_, payload in events:
        event = chat_event(type_, payload, chat_id)
        prepared.append((type_, event, dumps(event)[:-1]))
    return Append(chat_id, prepared, done)


def stamp(ts: float) -> str:
    """What closes every event's JSON of a batch committed at ``ts``, after its ``seq``."""
    return f',"ts":{ts!r}}}'


def answer(batch: Sequence[Append], outcomes: Sequence[int | Exception], ts: float) -> None:
    """Answer every append of a committed batch, in order: its records (numbered from the seq before
    its first event, its outcome), or the error that refused it."""
    closing = stamp(ts)
    for append, outcome in zip(batch, outcomes, strict=True):
        result: list[EventRecord] | Exception
        if isinstance(outcome, Exception):
            result = outcome
        else:
            result = []
            for seq, (type_, event, head) in enumerate(append.events, outcome + 1):
                event["seq"], event["ts"] = seq, ts
                result.append(EventRecord(chat_id=append.chat_id, seq=seq, type=type_, payload=event, ts=ts,
                                          text=f'{head},"seq":{seq}{closing}'))
        try:
            append.done(result)
        except Exception:  # one caller's failure must not keep the others waiting
            logger.exception("handling the append of chat %s failed", append.chat_id)


async def appended(
    append_soon: Callable[
        [str, Sequence[tuple[str, dict[str, Any]]], Callable[[list[EventRecord] | Exception], None]], None
    ],
    chat_id: str,
    events: Sequence[tuple[str, dict[str, Any]]],
) -> list[EventRecord]:
    """``append_events`` on a store's ``append_events_soon``: the records once they are committed.
    A caller cancelled meanwhile loses only the answer; the events are logged all the same."""
    if not events:
        return []
    done: asyncio.Future[list[EventRecord]] = asyncio.get_running_loop().create_future()

    def answer(outcome: list[EventRecord] | Exception) -> None:
        if done.done():
            return
        if isinstance(outcome, Exception):
            done.set_exception(outcome)
        else:
            done.set_result(outcome)

    append_soon(chat_id, events, answer)
    return await done
