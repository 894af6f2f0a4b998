"""One run of the agent's graph as protocol events: the turn pump.

``run_turn`` drives one run of the compiled graph (a new message, a decision, a continuation) and
turns it into the protocol's chat events, in order: the agent node's tokens (handed over through a
``Turn``, not LangGraph's stream), the tools' events, the pause at an approval (stored before it is
announced) and ``message_end`` with its usage figures. The nodes (``lunark.graph.nodes``) report
to it through the run's custom stream (``PAUSED``, ``TOOLS_RAN``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, StreamMode

from lunark import protocol
from lunark.errors import LunarkError
from lunark.graph.state import AgentState
from lunark.ids import new_id

__all__ = ["AgentEvent", "Report", "Turn", "paused", "run_turn", "tools_ran"]

logger = logging.getLogger(__name__)

STREAM_MODE: StreamMode = "custom"
"""The tools' events, and the nodes' own reports (``PAUSED``, ``TOOLS_RAN``). No ``"messages"``
mode: the agent node hands its model's text deltas to ``run_turn`` through a ``Turn`` instead, which
costs far less per token than LangChain's token callbacks feeding LangGraph's stream (see
``Turn``). No ``"updates"`` mode either: of every step's update, ``run_turn`` needs only two facts,
which the nodes report themselves, so LangGraph makes and hands over no part for each step."""

PAUSED = "__lunark_paused"
"""The custom part the approve node writes when its ``interrupt()`` pauses the run: the approval."""

TOOLS_RAN = "__lunark_tools_ran"
"""The custom part the prepare and execute nodes write last when they leave no approval waiting
(the model is called again, or the turn ends): ``run_turn`` says "thinking…"."""


@dataclass(frozen=True, slots=True)
class Report:
    """What a node tells ``run_turn`` through the custom stream besides the tools' events (which
    are protocol events): not an event, so not a dict with a ``type``."""

    kind: str
    """``PAUSED`` or ``TOOLS_RAN``."""
    approval: dict[str, Any] | None = None
    """The approval the run paused at (``PAUSED``)."""


def paused(approval: dict[str, Any]) -> Report:
    """The approve node's report that its ``interrupt()`` paused the run at ``approval``."""
    return Report(PAUSED, approval)


def tools_ran() -> Report:
    """A prepare or execute step's report that it left no approval waiting."""
    return Report(TOOLS_RAN)


TURN_KEY = "__lunark_turn"
"""Where the run's ``configurable`` carries its ``Turn`` to the agent node (``__`` keys stay
out of checkpoint and tracing metadata)."""


class Turn:
    """One turn's events, in order: the agent node's tokens and the graph's stream parts.

    Tokens skip LangGraph's stream: the agent node calls ``token``, which hands the text to the
    caller's ``sink`` at once when there is one (the server's runner: no event, no wake-up, no
    generator between the model and the hub), else queues it for ``run_turn`` to yield (a deque
    append, plus one wake-up when ``run_turn`` sleeps). The graph's stream is read by ``pump``, a
    task that hands ``run_turn`` one part at a time and reads the next only once ``run_turn`` waits
    again, so the graph advances no faster than the turn is consumed, as when ``run_turn`` iterated
    it itself.

    Order: ``run_turn`` yields the queued tokens before the next part. A part comes from the step
    that wrote it, LangGraph yields all of a step's parts before it
    starts the next step, and the agent node runs alone in its step and writes no parts; so
    every token queued when a part arrives was streamed before that part was written.
    """

    __slots__ = ("_taken", "_waiter", "continuing", "count", "cut", "first", "message_id", "part", "sink", "tokens")

    def __init__(
        self, message_id: str = "", *, continuing: bool = False, sink: Callable[[str], None] | None = None
    ) -> None:
        self.sink = sink
        self.tokens: deque[str] = deque()
        self.count = 0
        self.first: float | None = None
        """When the first token came from the model (``time.monotonic``)."""
        self.part: Any = None
        self.message_id = message_id
        """The protocol message the turn writes (what ``truncated_message`` records)."""
        self.continuing = continuing
        """The turn's first model call goes on with the cut answer (``continue_message``)."""
        self.cut = False
        """The model's last reply stopped at its output limit."""
        self._taken: asyncio.Future[None] | None = None
        self._waiter: asyncio.Future[None] | None = None

    def token(self, text: str) -> None:
        if self.first is None:
            self.first = time.monotonic()
        self.count += 1
        if self.sink is not None:
            self.sink(text)
            return
        self.tokens.append(text)
        if self._waiter is not None:
            self.wake()

    def wake(self, _: object = None) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        """Let the pump go on past the part ``run_turn`` took, then sleep until there is more."""
        taken, self._taken = self._taken, None
        if taken is not None and not taken.done():
            taken.set_result(None)
        self._waiter = asyncio.get_running_loop().create_future()
        await self._waiter

    async def pump(self, parts: AsyncGenerator[Any]) -> None:
        async with aclosing(parts):  # an abort must finalize the graph run, not leave it to the GC
            async for part in parts:
                self.part = part
                self._taken = asyncio.get_running_loop().create_future()
                self.wake()
                await self._taken


AgentEvent = dict[str, Any]
"""A protocol chat event without ``chat_id``/``seq``/``ts`` (the server's hub adds them)."""

def thinking() -> AgentEvent:
    return protocol.status("thinking…")  # a new dict each time: consumers may add to events


async def run_turn(
    graph: CompiledStateGraph[Any, Any, Any, Any], thread_id: str, config: RunnableConfig,
    graph_input: AgentState | Command[Any] | None, *,
    record_pending: Callable[[str, dict[str, Any]], Awaitable[None]], message_id: str | None = None,
    resuming: Mapping[str, Any] | None = None, on_token: Callable[[str], None] | None = None,
) -> AsyncGenerator[AgentEvent]:
    """One run of the graph as protocol events. With ``message_id`` it continues that message
    (no ``message_start``; the model goes on with the cut answer); ``resuming`` is the approval
    a ``Command`` decides; ``on_token`` takes the tokens instead of ``token`` events (``stream``).
    ``record_pending`` stores an approval the run paused at, before its event is yielded."""
    continuing = message_id is not None
    message_id = message_id or new_id("msg_")
    started = time.monotonic()
    first_token: float | None = None
    output_tokens = 0
    if not continuing:
        yield protocol.message_start(message_id, "assistant")
    signed: set[str] = set()  # calls whose execution checks and tracks a signed transaction
    if resuming is not None:
        signed = {r["call_id"] for r in resuming.get("action_requests", []) if r.get("tx")}
    elif not isinstance(graph_input, Command):
        yield thinking()
    finish: protocol.FinishReason = "stop"
    turn = Turn(message_id, continuing=continuing, sink=on_token)
    config["configurable"][TURN_KEY] = turn
    parts: AsyncGenerator[Any] = graph.astream(  # type: ignore[assignment]
        graph_input, config, stream_mode=STREAM_MODE
    )
    pump = asyncio.create_task(turn.pump(parts))
    pump.add_done_callback(turn.wake)
    waiting: list[dict[str, Any]] = []
    try:
        while True:
            tokens = turn.tokens
            while tokens:
                text = tokens.popleft()
                if first_token is None:
                    first_token = time.monotonic()
                output_tokens += 1
                yield protocol.token(message_id, text)
            if turn.part is not None:
                payload = turn.part
                turn.part = None
                if isinstance(payload, Report) and payload.kind == PAUSED:
                    # Held until the run is over: LangGraph writes the interrupt to the checkpoint
                    # in the background, and only the end of the run awaits it.
                    assert payload.approval is not None
                    waiting.append(payload.approval)
                elif isinstance(payload, Report):  # TOOLS_RAN
                    yield thinking()  # the tools ran and nothing waits: the model is called again
                else:
                    event = dict(payload)
                    if event.get("type") == "tool_call":
                        event["message_id"] = message_id
                    yield event
                    if event.get("status") == "running" and event.get("call_id") in signed:
                        yield protocol.status("checking the transaction")
            elif pump.done():
                pump.result()  # the graph's error, if it failed
                break
            else:
                await turn.wait()
        for pending in waiting:
            await record_pending(thread_id, pending)
            finish = "awaiting_approval"
            yield protocol.pending_approval(pending)
            yield protocol.status("waiting for your approval")
    except LunarkError as exc:
        finish = "error"
        yield protocol.error(**exc.to_dict())
    except Exception as exc:  # a bug must not leave the turn hanging: report it, log it
        logger.exception("turn failed in thread %s", thread_id)
        finish = "error"
        yield protocol.error("internal", f"Internal error: {type(exc).__name__}")
    finally:
        if not pump.done():  # an abort: the pump closes the graph's stream on its way out
            pump.cancel()
            await asyncio.wait([pump])
        if not pump.cancelled():
            pump.exception()  # retrieved: reported above, or by the abort's own exception
    if finish == "stop" and turn.cut:
        finish = "length"
    if on_token is not None:  # the tokens went to on_token as the model streamed them
        first_token, output_tokens = turn.first, turn.count
    elapsed = time.monotonic() - (first_token or started)
    yield protocol.message_end(message_id, finish, protocol.usage(
        output_tokens,
        ttft_ms=round((first_token - started) * 1000, 1) if first_token else None,
        tokens_per_s=round(output_tokens / elapsed, 1) if first_token and elapsed > 0 else None,
    ))
