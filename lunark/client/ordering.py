"""Ordering and gap recovery: a chat's events in ``seq`` order, each exactly once.

Live and replayed copies of an event arrive in any order: duplicates are dropped, an event that
arrives early is held until the ones before it arrive, and a gap that stays open re-joins the
chat (the server replays what is missing) before it is given up on. ``ChatSequence`` is the part
of ``ChatSession`` that does this; the session's constructor sets the state declared on it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from lunark.client.errors import Disconnected
from lunark.protocol import (
    ApprovalRequest,
    ApprovalResolved,
    ChatEvent,
    MessageEnd,
    NetworkSwitch,
    PendingApproval,
)

if TYPE_CHECKING:
    from lunark.client.sdk import LunarkClient

__all__ = ["ChatSequence"]

logger = logging.getLogger(__name__)

_GAP_STRIKES = 3  # gap timeouts before a missing seq is given up on (two re-joins first)


class _EventStream:
    """``async for event in session.events()``: one consumer at a time; leaving the loop loses nothing."""

    def __init__(self, session: ChatSequence) -> None:
        self._session = session

    def __aiter__(self) -> _EventStream:
        return self

    async def __anext__(self) -> ChatEvent:
        event = await self._session._queue.get()
        if event is None:
            self._session._queue.put_nowait(None)  # every later iterator ends too
            raise StopAsyncIteration
        if event.seq is not None:
            self._session._yielded = event.seq
        return event


class ChatSequence:
    """A chat's events in seq order, and the session state that follows them."""

    _client: LunarkClient
    chat_id: str
    network: dict[str, Any]
    pending_approval: ApprovalRequest | None
    _received: int
    _yielded: int
    _held: dict[int, ChatEvent]
    _queue: asyncio.Queue[ChatEvent | None]
    _gap_timer: asyncio.TimerHandle | None
    _gap_strikes: int

    @property
    def last_seq(self) -> int:
        """The seq of the last event ``events()`` yielded (the join point before any event)."""
        return self._yielded

    # -- events -------------------------------------------------------------------------------

    def events(self) -> _EventStream:
        """The chat's events, in seq order, each exactly once, until the client closes.

        One consumer at a time (``turn`` and ``until_message_end`` consume it too)::

            async for event in session.events():
                if isinstance(event, Token):
                    print(event.text, end="", flush=True)
                elif isinstance(event, MessageEnd):
                    break
        """
        return _EventStream(self)

    async def until_message_end(self) -> list[ChatEvent]:
        """Consume events up to and including the next ``message_end``; returns them.

            await session.approve(tx_hash=tx_hash)
            events = await session.until_message_end()   # approval_resolved, tx_update..., answer
        """
        out: list[ChatEvent] = []
        async for event in self.events():
            out.append(event)
            if isinstance(event, MessageEnd):
                return out
        raise Disconnected("The client closed before the message ended.")

    def _accept(self, event: ChatEvent) -> None:
        seq = event.seq
        if seq is None:  # a chat-level error outside the sequence
            self._queue.put_nowait(event)
            return
        if seq <= self._received or seq in self._held:
            return  # a duplicate: live and replayed copies of one event
        self._held[seq] = event
        self._release()

    def _release(self) -> None:
        while self._received + 1 in self._held:
            event = self._held.pop(self._received + 1)
            self._received += 1
            self._apply(event)
            self._queue.put_nowait(event)
        if self._held:
            self._arm_gap_timer()
        elif self._gap_timer is not None:
            self._gap_timer.cancel()
            self._gap_timer = None
            self._gap_strikes = 0

    def _apply(self, event: ChatEvent) -> None:
        if isinstance(event, PendingApproval):
            self.pending_approval = event
        elif isinstance(event, ApprovalResolved):
            if self.pending_approval is not None and self.pending_approval.approval_id == event.approval_id:
                self.pending_approval = None
        elif isinstance(event, NetworkSwitch):
            wire = event.to_wire()
            self.network = {
                **self.network,
                **{k: v for k, v in wire.items() if k not in ("type", "chat_id", "seq", "ts")},
                "explorer_url": event.explorer_url,
            }

    def _arm_gap_timer(self) -> None:
        if self._gap_timer is not None:
            return
        loop = asyncio.get_running_loop()
        self._gap_timer = loop.call_later(self._client.gap_timeout, self._gap_expired)

    def _gap_expired(self) -> None:
        self._gap_timer = None
        if not self._held:
            return
        self._gap_strikes += 1
        if self._gap_strikes < _GAP_STRIKES:
            # Something was missed (a replay that failed, say): ask for it again.
            self._client._spawn(self._client._rejoin(self))
            self._arm_gap_timer()
            return
        # Asked twice and still missing: the server's log has a hole. Deliver what exists
        # rather than stall the chat forever.
        first = min(self._held)
        logger.warning("chat %s: seq %d..%d never arrived; skipping them", self.chat_id, self._received + 1, first - 1)
        self._received = first - 1
        self._gap_strikes = 0
        self._release()

    def _end(self) -> None:
        if self._gap_timer is not None:
            self._gap_timer.cancel()
            self._gap_timer = None
        self._queue.put_nowait(None)
