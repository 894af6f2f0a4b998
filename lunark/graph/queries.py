"""What a chat's graph holds, read from its checkpoint: the approval it waits for, where a crash
left it, which decisions it applied, its network and messages; and the one write that keeps an
answer a crash cut (``close_interrupted``). Recovery and the server ask these; ``Agent`` is one.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, cast

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import WRITES_IDX_MAP, BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import StateSnapshot

from lunark.graph.messages import continued_answer
from lunark.graph.state import AgentState
from lunark.store import Store

__all__ = ["ChatQueries", "ChatSnapshot", "pending_of"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatSnapshot:
    """A chat's graph as ``Agent.snapshot`` read it: handed back to ``Agent.stream``, it spares the
    turn a second read of the same checkpoint."""

    state: StateSnapshot
    """LangGraph's snapshot of the chat's thread."""
    pending: dict[str, Any] | None
    """The approval the chat waits for, as ``Agent.pending_approval`` says."""


class ChatQueries(ABC):
    """Reads of a chat's graph (its thread's checkpoint), as methods of the agent that runs it."""

    graph: CompiledStateGraph[AgentState]
    _checkpointer: BaseCheckpointSaver[Any]
    _locks: dict[str, asyncio.Lock]
    _store: Store | None

    @abstractmethod
    async def ready(self) -> Store: ...

    def _lock(self, thread_id: str) -> asyncio.Lock:
        return self._locks.setdefault(thread_id, asyncio.Lock())

    @staticmethod
    def _config(thread_id: str) -> RunnableConfig:
        return {"configurable": {"thread_id": thread_id}, "recursion_limit": 50}

    async def pending_approval(self, thread_id: str) -> dict[str, Any] | None:
        """The approval this chat waits for, or None (also once it was decided, before it is applied)."""
        return (await self.snapshot(thread_id)).pending

    async def snapshot(self, thread_id: str) -> ChatSnapshot:
        """The chat's graph as it is now, with the approval it waits for (see ``pending_approval``)."""
        state = await self.graph.aget_state(self._config(thread_id))
        pending = pending_of(state)
        if pending is not None and self._store is not None:
            record = await self._store.get_approval(pending["approval_id"])
            if record is not None and record.state != "pending":
                pending = None
        return ChatSnapshot(state=state, pending=pending)

    async def unfinished(self, thread_id: str) -> tuple[str, str | None] | None:
        """Where a chat's graph stopped, if not at its end: ``("paused", approval_id)`` at an
        interrupt, ``("interrupted", None)`` mid-run (a crash after a decision was applied)."""
        config = self._config(thread_id)
        snapshot = await self.graph.aget_state(config)
        if snapshot.interrupts:
            return "paused", str(snapshot.interrupts[0].value.get("approval_id"))
        if snapshot.next:
            return "interrupted", None
        # A step whose tasks all finished but whose checkpoint was never written (the process died in
        # between: LangGraph writes it in the background) leaves its results only as the last
        # checkpoint's pending writes. LangGraph's snapshot then shows neither an interrupt (answered)
        # nor a next step (every task has written): it looks finished, yet the step's successor, e.g.
        # ``execute`` after an approval's ``approve``, never ran. Running the graph on from there
        # applies those writes without running their tasks again.
        saved = await self._checkpointer.aget_tuple(config)
        if saved is not None and any(channel not in WRITES_IDX_MAP for _, channel, _ in saved.pending_writes or ()):
            logger.info("chat %s stopped after a step whose checkpoint was not written; it carries on", thread_id)
            return "interrupted", None
        return None

    async def close_interrupted(self, thread_id: str, message_id: str, text: str, *, continued: bool = False) -> bool:
        """Keep an answer a crash cut (``finish_reason: "interrupted"``) as the chat's last answer,
        with ``text``, what was streamed of it (of this part, for a ``continued`` one), as if the
        model had stopped at its output limit: ``continue_message`` goes on with it, and the graph
        is at rest for the next message. Only when the crash came while the model was writing:
        never over a pause at an approval or a tool call without its result. True if kept."""
        await self.ready()
        config = self._config(thread_id)
        async with self._lock(thread_id):
            snapshot = await self.graph.aget_state(config)
            values = snapshot.values or {}
            history = values.get("messages", [])
            if snapshot.interrupts or not history:
                return False
            last = history[-1]
            if isinstance(last, AIMessage):
                if last.tool_calls:
                    return False
                if continued and values.get("truncated_message") == message_id:
                    # The continuation never reached the checkpoint: what it streamed joins the cut answer.
                    update: dict[str, Any] = {"messages": [continued_answer(last, AIMessage(content=text))]}
                else:  # the reply is in the checkpoint already, only its end was never logged
                    update = {}
            elif isinstance(last, (HumanMessage, ToolMessage)):
                update = {"messages": [AIMessage(content=text)]}
            else:
                return False
            update["truncated_message"] = message_id
            await self.graph.aupdate_state(config, update, as_node="agent")
            return True

    async def resolved(self, thread_id: str, approval_id: str) -> bool:
        """Whether the chat's graph has applied a decision on ``approval_id`` (its ``approve`` step ran)."""
        snapshot = await self.graph.aget_state(self._config(thread_id))
        return approval_id in ((snapshot.values or {}).get("resolved") or [])

    async def chain_id(self, thread_id: str) -> int | None:
        """The chat's current network, or None for a chat that never ran."""
        snapshot = await self.graph.aget_state(self._config(thread_id))
        value = snapshot.values.get("chain_id") if snapshot.values else None
        return int(value) if value is not None else None

    async def messages(self, thread_id: str) -> list[Any]:
        snapshot = await self.graph.aget_state(self._config(thread_id))
        return list(snapshot.values.get("messages", [])) if snapshot.values else []


def pending_of(snapshot: StateSnapshot) -> dict[str, Any] | None:
    """The approval a chat's graph paused on (its interrupt's value), or None."""
    return cast(dict[str, Any], snapshot.interrupts[0].value) if snapshot.interrupts else None
