"""One AG-UI run: a turn's Lunark events as AG-UI events (the official ``ag_ui.core`` models).

``Run`` is told each event of the run's turn, in order, and writes what AG-UI makes of it; it
knows when the run is over (``finished``). The mapping is in ``lunark.server.agui``'s docstring.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ag_ui.core import (
    PROTOCOL_VERSION,
    BaseEvent,
    CustomEvent,
    RunAgentInput,
    RunErrorEvent,
    RunFinishedCancelledOutcome,
    RunFinishedEvent,
    RunFinishedInterruptOutcome,
    RunFinishedSuccessOutcome,
    RunStartedEvent,
    TextMessageContentEvent,
    TextMessageEndEvent,
    TextMessageStartEvent,
    ToolCallArgsEvent,
    ToolCallEndEvent,
    ToolCallResultEvent,
    ToolCallStartEvent,
)

from lunark.approvals import Approval
from lunark.server.agui.interrupts import NetworkName, interrupts_for

__all__ = ["CUSTOM_PREFIX", "Run"]

CUSTOM_PREFIX = "lunark."
"""Lunark's events without an AG-UI counterpart travel as CUSTOM events named ``lunark.<type>``."""

_CUSTOM = frozenset({"tx_update", "status", "approval_resolved", "network_switch"})


def _now_ms() -> int:
    return int(time.time() * 1000)


class Run:
    """One AG-UI run over a chat's live events: translates them and knows when the run is over."""

    def __init__(self, run: RunAgentInput, write: Callable[[BaseEvent], Awaitable[None]],
                 network_name: NetworkName, chain_id: int) -> None:
        self.input = run
        self.chain_id = chain_id
        self.write = write
        self.network_name = network_name
        self.message_id: str | None = None
        """The assistant message of this run's turn, once its turn has started."""
        self.text_open = False
        self.tools: set[str] = set()
        self.calls: dict[str, tuple[str, Any]] = {}
        """The calls of the card a resumed run decides: call id -> (tool, arguments)."""
        self.pending: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self.finished = False

    async def started(self) -> None:
        await self.write(RunStartedEvent(thread_id=self.input.thread_id, run_id=self.input.run_id,
                                         protocol_version=PROTOCOL_VERSION, timestamp=_now_ms()))

    async def fail(self, code: str, message: str) -> None:
        await self._close_text()
        await self.write(RunErrorEvent(message=message, code=code, timestamp=_now_ms()))
        self.finished = True

    async def _close_text(self) -> None:
        if self.text_open and self.message_id is not None:
            await self.write(TextMessageEndEvent(message_id=self.message_id, timestamp=_now_ms()))
            self.text_open = False

    async def event(self, event: dict[str, Any]) -> None:
        """One event of this run's turn (the caller has skipped what came before it)."""
        kind = event["type"]
        ts = int(float(event.get("ts") or time.time()) * 1000)
        if kind == "message_start":
            if event.get("role") == "assistant":
                self.message_id = event["message_id"]
        elif kind == "token":
            if event["message_id"] != self.message_id or not event["text"]:
                return
            if not self.text_open:
                await self.write(TextMessageStartEvent(message_id=event["message_id"], role="assistant", timestamp=ts))
                self.text_open = True
            await self.write(TextMessageContentEvent(message_id=event["message_id"], delta=event["text"], timestamp=ts))
        elif kind == "tool_call":
            await self._call(event["call_id"], event["name"], event["args"], event.get("message_id"), ts)
        elif kind == "tool_result":
            call_id = event["call_id"]
            if call_id not in self.tools:
                # A rejected action's result comes with no tool_call in the resumed turn: the call is
                # the card's, opened again here so that the result answers a call of this run.
                if call_id not in self.calls:
                    return
                name, args = self.calls[call_id]
                await self._call(call_id, name, args, self.message_id, ts)
            body = {key: event[key] for key in ("status", "result", "error") if event.get(key) is not None}
            await self.write(ToolCallResultEvent(message_id=f"{call_id}:result", tool_call_id=call_id,
                                                 content=json.dumps(body), role="tool", timestamp=ts,
                                                 metadata={"status": event["status"]}))
        elif kind == "pending_approval":
            self.pending = event
        elif kind == "error":
            self.error = event
        elif kind == "message_end" and event["message_id"] == self.message_id:
            await self._end(event, ts)
        elif kind in _CUSTOM:
            value = {key: v for key, v in event.items() if key not in ("type", "chat_id")}
            await self.write(CustomEvent(name=CUSTOM_PREFIX + kind, value=value, timestamp=ts))

    async def _call(self, call_id: str, name: str, args: Any, parent: str | None, ts: int) -> None:
        if call_id in self.tools:
            return
        self.tools.add(call_id)
        await self.write(ToolCallStartEvent(tool_call_id=call_id, tool_call_name=name, parent_message_id=parent,
                                            timestamp=ts))
        await self.write(ToolCallArgsEvent(tool_call_id=call_id, delta=json.dumps(args), timestamp=ts))
        await self.write(ToolCallEndEvent(tool_call_id=call_id, timestamp=ts))

    async def _end(self, event: dict[str, Any], ts: int) -> None:
        await self._close_text()
        finish = event["finish_reason"]
        if finish == "error" or self.error is not None:
            error = self.error or {"code": "internal", "message": "The turn failed."}
            await self.fail(str(error.get("code", "internal")), str(error.get("message", "The turn failed.")))
            return
        if finish == "interrupted":
            # Not a success (the answer is unfinished) nor a cancel (nobody asked): the run failed,
            # and its message says that continue_message goes on with what was written.
            await self.fail("interrupted", str(event.get("message") or "The server writing this answer stopped."))
            return
        run = {"thread_id": self.input.thread_id, "run_id": self.input.run_id, "timestamp": ts}
        if finish == "awaiting_approval" and self.pending is not None:
            interrupts = interrupts_for(Approval.of(self.pending), self.network_name, self.chain_id)
            await self.write(RunFinishedEvent(**run, outcome=RunFinishedInterruptOutcome(interrupts=interrupts)))
        elif finish == "aborted":
            await self.write(RunFinishedEvent(**run, outcome=RunFinishedCancelledOutcome()))
        else:
            await self.write(RunFinishedEvent(**run, outcome=RunFinishedSuccessOutcome(),
                                              result={"messageId": event["message_id"], "finishReason": finish}))
        self.finished = True
