"""The agent: a LangGraph task graph with a human-in-the-loop approval gate.

```
START -> agent --(tool calls)--> prepare --(needs approval)--> approve -> execute -> agent
           |                        |                            ^            |
           +--(answer)--> END       +--(all ran)--> agent        +--(edits)---+
```

- ``agent`` calls the chat model with the tools bound.
- ``prepare`` validates each call, applies the policy and builds what the user
  will see; calls that need no approval run here. Its output is checkpointed,
  so nothing is prepared twice.
- ``approve`` holds one ``interrupt()`` for every action of the turn. It is pure
  before the interrupt: it re-runs on resume, and must not touch the chain.
- ``execute`` applies each decision: approve runs the action, reject tells the
  model, edit re-validates, re-prepares and asks again (what executes is
  exactly what the user saw).

Errors become tool messages in exactly one place, ``_tool_error``.

Use it through ``Agent``::

    async with Agent.open(settings) as agent:
        async for event in agent.stream("chat-1", "send 0.5 ETH to 0x...", user_address=me, chain_id=31337):
            print(event["type"], event)
        approval = await agent.pending_approval("chat-1")
        async for event in agent.resume("chat-1", approval["approval_id"], [{"type": "approve"}]):
            ...
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, aclosing, asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    message_chunk_to_message,
)
from langchain_core.messages.ai import add_ai_message_chunks
from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.config import get_stream_writer
from langgraph.errors import GraphInterrupt
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, StateSnapshot, StreamMode, interrupt
from pydantic import ValidationError

from lunark.chain.client import ChainClients
from lunark.chain.signer import LocalSigner, Signer
from lunark.chain.types import prepared_from_state
from lunark.config import Settings
from lunark.errors import (
    AlreadyDecided,
    ApprovalExpired,
    Busy,
    ConfigError,
    InvalidInput,
    LunarkError,
    ModelError,
    NoPendingApproval,
)
from lunark.graph.approval import ALL_DECISIONS, ApproveDecision, validate_decisions
from lunark.graph.checkpoints import ThreadedSqliteSaver
from lunark.graph.state import AgentState
from lunark.ids import new_id
from lunark.models.factory import aclose_chat_model, bind_tools_with_fallbacks
from lunark.models.planner import CONTINUE_PROMPT, OfflinePlanner
from lunark.networks import NetworkRegistry
from lunark.settlement import Settlements
from lunark.store.base import ApprovalRecord, SettlementRecord, Store
from lunark.store.factory import open_store
from lunark.store.sqlite import SqliteStore
from lunark.tools.base import Proposal, Tool, ToolContext, needs_approval, validate_args
from lunark.tools.policy import SpendingPolicy
from lunark.tools.registry import ToolSet, default_tools, load_plugins
from lunark.tools.transfer import settlement_result

__all__ = ["SYSTEM_PROMPT", "Agent", "AgentEvent", "ChatSnapshot"]

logger = logging.getLogger(__name__)

_STREAM_MODE: StreamMode = "custom"
"""The tools' events, and the nodes' own reports (``_PAUSED``, ``_TOOLS_RAN``). No ``"messages"``
mode: the agent node hands its model's text deltas to ``_run`` through a ``_Turn`` instead, which
costs far less per token than LangChain's token callbacks feeding LangGraph's stream (see
``_Turn``). No ``"updates"`` mode either: of every step's update, ``_run`` needs only two facts,
which the nodes report themselves, so LangGraph makes and hands over no part for each step."""

_PAUSED = "__lunark_paused"
"""The custom part the approve node writes when its ``interrupt()`` pauses the run: the approval."""

_TOOLS_RAN = "__lunark_tools_ran"
"""The custom part the prepare and execute nodes write last when they leave no approval waiting
(the model is called again, or the turn ends): ``_run`` says "thinking…"."""

_TURN_KEY = "__lunark_turn"
"""Where the run's ``configurable`` carries its ``_Turn`` to the agent node (``__`` keys stay
out of checkpoint and tracing metadata)."""


class _Turn:
    """One turn's events, in order: the agent node's tokens and the graph's stream parts.

    Tokens skip LangGraph's stream: the agent node calls ``token``, which hands the text to the
    caller's ``sink`` at once when there is one (the server's runner: no event, no wake-up, no
    generator between the model and the hub), else queues it for ``_run`` to yield (a deque
    append, plus one wake-up when ``_run`` sleeps). The graph's stream is read by ``pump``, a
    task that hands ``_run`` one part at a time and reads the next only once ``_run`` waits
    again, so the graph advances no faster than the turn is consumed, as when ``_run`` iterated
    it itself.

    Order: ``_run`` yields the queued tokens before the next part. A part comes from the step
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
        """Let the pump go on past the part ``_run`` took, then sleep until there is more."""
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


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatSnapshot:
    """A chat's graph as ``Agent.snapshot`` read it: handed back to ``Agent.stream``, it spares the
    turn a second read of the same checkpoint."""

    state: StateSnapshot
    """LangGraph's snapshot of the chat's thread."""
    pending: dict[str, Any] | None
    """The approval the chat waits for, as ``Agent.pending_approval`` says."""

SYSTEM_PROMPT = """You are Lunark, an assistant next to the user's crypto wallet.
The user's address is {user_address}. The chat is on {network} (chain id {chain_id}, native currency {symbol}).
You can read balances, prepare transfers and switch networks with your tools. Every transfer and
network switch is shown to the user, who approves, edits or rejects it; the spending policy may refuse it.
Never say funds moved unless a tool result says the transaction was confirmed. Amounts are in whole units
("0.5" ETH), never in wei. If a tool returns an error or a rejection, explain it plainly."""


def _thinking() -> AgentEvent:
    return {"type": "status", "text": "thinking…"}  # a new dict each time: consumers may add to events

_LENGTH_REASONS = frozenset({"length", "max_tokens"})
"""Providers' words for "stopped at the output limit": OpenAI-compatible ``finish_reason``
"length", Anthropic's ``stop_reason`` "max_tokens"."""


def _at_output_limit(message: BaseMessage) -> bool:
    metadata = message.response_metadata or {}
    return bool({metadata.get("finish_reason"), metadata.get("stop_reason")} & _LENGTH_REASONS)


def _continued(cut: BaseMessage, more: BaseMessage) -> AIMessage:
    """The cut answer with the continuation appended, under the cut one's id (``add_messages``
    replaces it): the history holds one answer, as the user sees one message."""
    def text(message: BaseMessage) -> str:
        return message.content if isinstance(message.content, str) else _text_of(message.content)

    return AIMessage(
        content=text(cut) + text(more),
        id=cut.id,
        tool_calls=more.tool_calls if isinstance(more, AIMessage) else [],
        response_metadata=dict(more.response_metadata),
    )


def _tool_error(call_id: str, name: str, exc: LunarkError) -> ToolMessage:
    """The one place an error becomes what the model reads."""
    return ToolMessage(
        content=json.dumps({"status": "error", "error": exc.to_dict()}, default=str),
        tool_call_id=call_id,
        name=name,
        status="error",
    )


def _tool_ok(call_id: str, name: str, result: Any, *, ok: bool = True) -> ToolMessage:
    return ToolMessage(
        content=json.dumps(result, default=str),
        tool_call_id=call_id,
        name=name,
        status="success" if ok else "error",
    )


def _succeeded(result: Any) -> bool:
    """A transaction result is a success only when it is confirmed (or mined, on the way)."""
    if isinstance(result, Mapping) and "tx_hash" in result and "status" in result:
        return result["status"] in ("confirmed", "mined")
    return True


class Agent:
    """An LLM agent whose state-changing tools wait for the user's decision.

    One ``Agent`` serves many chats (``thread_id``). It owns no sockets: callers
    consume the typed events ``stream``/``resume`` yield.
    """

    def __init__(
        self,
        *,
        model: BaseChatModel | Runnable[Any, Any],
        registry: NetworkRegistry,
        checkpointer: BaseCheckpointSaver[Any],
        clients: ChainClients | None = None,
        tools: ToolSet | None = None,
        policy: SpendingPolicy | None = None,
        store: Store | None = None,
        signer: Signer | None = None,
        approval_ttl: float = 600.0,
        track_timeout: float = 300.0,
        verify_timeout: float = 30.0,
        system_prompt: str = SYSTEM_PROMPT,
        default_network: str | int = "anvil",
        bind_tools: Callable[[Sequence[dict[str, Any]]], Runnable[Any, Any]] | None = None,
        fee_factor: Decimal = Decimal(2),
    ) -> None:
        self.registry = registry
        self.clients = clients or ChainClients(registry)
        self.tools = tools or ToolSet(default_tools())
        self.policy = policy or SpendingPolicy()
        self._store = store
        self._own_store = False
        self.signer = signer
        self.fee_factor = fee_factor
        self._settlements: Settlements | None = None
        self.approval_ttl = approval_ttl
        self.track_timeout = track_timeout
        self.verify_timeout = verify_timeout
        self.system_prompt = system_prompt
        self.default_chain_id = registry.get(default_network).chain_id
        schemas = self.tools.schemas()
        if bind_tools is not None:
            self._model = bind_tools(schemas)
        elif isinstance(model, BaseChatModel):
            self._model = model.bind_tools(schemas)
        else:
            self._model = model
        self._retired: list[Runnable[Any, Any]] = []
        if bind_tools is not None or isinstance(model, BaseChatModel):
            binder = bind_tools or cast(BaseChatModel, model).bind_tools
            self.tools.on_change(lambda: self._rebind(binder))
        self._locks: dict[str, asyncio.Lock] = {}
        self.graph = self._build().compile(checkpointer=checkpointer)

    def _rebind(self, binder: Callable[[Sequence[dict[str, Any]]], Runnable[Any, Any]]) -> None:
        """The tool list changed (an MCP server's did): the model's next call sees the new one. The
        old binding may be mid-call; it is closed with the agent."""
        self._retired.append(self._model)
        self._model = binder(self.tools.schemas())

    # -- graph -----------------------------------------------------------------------------------

    def _build(self) -> StateGraph[AgentState]:
        builder: StateGraph[AgentState] = StateGraph(AgentState)
        builder.add_node("agent", self._agent_node)
        builder.add_node("prepare", self._prepare_node)
        builder.add_node("approve", self._approve_node)
        builder.add_node("execute", self._execute_node)
        builder.add_edge(START, "agent")
        builder.add_conditional_edges("agent", self._after_agent, ["prepare", END])
        builder.add_conditional_edges("prepare", self._after_prepare, ["approve", "agent", END])
        builder.add_edge("approve", "execute")
        builder.add_conditional_edges("execute", self._after_prepare, ["approve", "agent", END])
        return builder

    async def ready(self) -> Store:
        """The store of approvals, settlements and spend (an in-memory one unless given)."""
        if self._store is None:
            self._store = await SqliteStore.open(":memory:")
            self._own_store = True
        if self._settlements is None:
            self._settlements = Settlements(
                self._store, self.clients, self.registry, signer=self.signer, track_timeout=self.track_timeout,
                verify_timeout=self.verify_timeout, fee_factor=self.fee_factor,
            )
        return self._store

    @property
    def store(self) -> Store:
        assert self._store is not None, "await agent.ready() first"
        return self._store

    @property
    def settlements(self) -> Settlements:
        assert self._settlements is not None, "await agent.ready() first"
        return self._settlements

    def _context(self, state: AgentState, config: RunnableConfig) -> ToolContext:
        writer = get_stream_writer()
        return ToolContext(
            user_address=state["user_address"],
            chain_id=state["chain_id"],
            registry=self.registry,
            clients=self.clients,
            policy=self.policy,
            ledger=self.store,
            signer=self.signer,
            emit=writer,
            track_timeout=self.track_timeout,
            verify_timeout=self.verify_timeout,
            chat_id=str(config.get("configurable", {}).get("thread_id", "")),
            settlements=self.settlements,
        )

    async def _agent_node(self, state: AgentState, config: RunnableConfig) -> dict[str, Any]:
        network = self.registry.get(state["chain_id"])
        prompt = self.system_prompt.format(
            user_address=state["user_address"],
            network=network.display_name,
            chain_id=network.chain_id,
            symbol=network.symbol,
        )
        turn: _Turn | None = config.get("configurable", {}).get(_TURN_KEY)
        history: list[BaseMessage] = [SystemMessage(prompt), *state["messages"]]
        continuing = turn is not None and turn.continuing
        if turn is not None:
            turn.continuing = False  # only the turn's first model call continues
        if continuing:
            history.append(HumanMessage(CONTINUE_PROMPT))  # asked for this call only, never stored
        # What the answer adds up to, without keeping a chunk object per token until the turn ends:
        # a chunk that carries nothing but text (the usual token) is kept as its text only, in a
        # run of texts; any other chunk is kept whole. ``_message_of`` merges them in order.
        parts: list[Any] = []
        kept: dict[str, Any] = {}  # the merged values of _SAME_WHEN_EQUAL so far
        try:
            # Streamed here rather than ainvoke'd under LangGraph's "messages" mode: the config
            # carries the node's callbacks, so tracing (and the "messages" mode of anyone who
            # streams the graph directly) still sees the chat model run and its tokens.
            async for chunk in self._model.astream(history, config):
                if isinstance(chunk, AIMessageChunk):
                    content = chunk.content
                    text = content if isinstance(content, str) else _text_of(content)
                    if text and turn is not None:
                        turn.token(text)
                    if parts and _only_text(chunk, parts[0], kept):
                        if not isinstance(parts[-1], list):
                            parts.append([])
                        parts[-1].append(content)
                        continue
                    _keep_metadata(kept, chunk)
                parts.append(chunk)
            response = _message_of([AIMessageChunk(content="".join(p)) if isinstance(p, list) else p for p in parts])
        except LunarkError:
            raise
        except Exception as exc:  # the model boundary: any provider failure is a model_error
            raise ModelError(f"The model failed: {exc}", model_error=type(exc).__name__) from exc
        cut = _at_output_limit(response)
        if continuing:
            response = _continued(state["messages"][-1], response)
        if turn is not None:
            turn.cut = cut
        return {"messages": [response], "truncated_message": turn.message_id if cut and turn is not None else None}

    # The routers are coroutines: LangGraph runs a plain function's route in a thread pool, one
    # thread hop per step for a comparison.
    @staticmethod
    async def _after_agent(state: AgentState) -> str:
        last = state["messages"][-1]
        return "prepare" if isinstance(last, AIMessage) and last.tool_calls else END

    @staticmethod
    async def _after_prepare(state: AgentState) -> str:
        if state.get("approval"):
            return "approve"
        return END if _called_directly(state["messages"]) else "agent"

    async def _prepare_node(self, state: AgentState, config: RunnableConfig) -> dict[str, Any]:
        last = state["messages"][-1]
        assert isinstance(last, AIMessage)
        ctx = self._context(state, config)
        ctx.approval_id = new_id("apr_")
        ctx.expires_at = datetime.now(UTC) + timedelta(seconds=self.approval_ttl)
        messages, proposals = await self._prepare_calls(
            ctx, [(c["id"] or "", c["name"], c["args"]) for c in last.tool_calls]
        )
        return _tools_ran({
            "messages": messages,
            "proposals": proposals,
            "approval": self._approval(proposals, ctx),
            "decisions": None,
            "chain_id": ctx.chain_id,
        })

    async def _prepare_calls(
        self, ctx: ToolContext, calls: Sequence[tuple[str, str, Mapping[str, Any]]]
    ) -> tuple[list[ToolMessage], list[dict[str, Any]]]:
        messages: list[ToolMessage] = []
        proposals: list[dict[str, Any]] = []
        switching: str | None = None
        for call_id, name, raw_args in calls:
            emit = _emitter(ctx, call_id)
            if switching is not None:
                # Never prepared on the network the user is leaving: once the switch is approved the
                # agent plans this call again there.
                deferred = {"status": "deferred", "action": name, "args": dict(raw_args), "message": (
                    f"Not prepared: it follows the switch to {switching}. Once the switch is approved, "
                    "call it again to prepare it on the new network.")}
                emit({"type": "tool_call", "call_id": call_id, "name": name, "args": dict(raw_args),
                      "status": "running"})
                emit({"type": "tool_result", "call_id": call_id, "status": "rejected", "result": deferred})
                messages.append(_tool_ok(call_id, name, deferred, ok=False))
                continue
            call_ctx = replace(ctx, emit=emit, call_id=call_id)
            try:
                tool = self.tools.get(name)
                args = validate_args(tool, raw_args)
                proposal = await tool.prepare(args, call_ctx)
                if needs_approval(tool, args, self.tools.rule(name), proposal):
                    emit({"type": "tool_call", "call_id": call_id, "name": name, "args": dict(raw_args),
                          "status": "awaiting_approval"})
                    proposals.append({
                        "call_id": call_id,
                        "name": name,
                        "args": args.model_dump(mode="json", exclude_none=True),
                        "proposal": proposal.to_state(),
                        "approval_id": ctx.approval_id,
                        "expires_at": _iso(ctx.expires_at),
                    })
                    if name == "switch_network":
                        switching = proposal.summary.split(" to ", 1)[-1].split(" (", 1)[0]
                    continue
                emit({"type": "tool_call", "call_id": call_id, "name": name, "args": dict(raw_args),
                      "status": "running"})
                result = await tool.execute(args, call_ctx, proposal, None)
                ctx.chain_id = call_ctx.chain_id
                ok = _succeeded(result)
                emit({"type": "tool_result", "call_id": call_id, "status": "success" if ok else "error",
                      "result": result})
                messages.append(_tool_ok(call_id, name, result, ok=ok))
            except LunarkError as exc:
                if call_ctx.action_id is not None:
                    await self.store.release(call_ctx.action_id)
                emit({"type": "tool_call", "call_id": call_id, "name": name, "args": dict(raw_args),
                      "status": "running"})
                emit({"type": "tool_result", "call_id": call_id, "status": "error", "result": None,
                      "error": exc.to_dict()})
                messages.append(_tool_error(call_id, name, exc))
        return messages, proposals

    def _approval(self, proposals: list[dict[str, Any]], ctx: ToolContext) -> dict[str, Any] | None:
        if not proposals:
            return None
        return {
            "approval_id": ctx.approval_id,
            "expires_at": _iso(ctx.expires_at),
            "action_requests": [
                {
                    "call_id": p["call_id"],
                    "name": p["name"],
                    "args": p["args"],
                    "description": p["proposal"]["description"],
                    "summary": p["proposal"]["summary"],
                    "tx": p["proposal"]["tx"],
                    **({"facts": p["proposal"]["facts"]} if p["proposal"].get("facts") else {}),
                }
                for p in proposals
            ],
            "review_configs": [
                {"action_name": name, "allowed_decisions": list(ALL_DECISIONS)}
                for name in dict.fromkeys(p["name"] for p in proposals)
            ],
        }

    async def _approve_node(self, state: AgentState) -> dict[str, Any]:
        # Pure before interrupt(): this node runs again from the top when resumed.
        approval = state.get("approval")
        assert approval is not None
        try:
            answer = interrupt(approval)
        except GraphInterrupt:
            get_stream_writer()({"type": _PAUSED, "approval": approval})  # for _run, which holds it
            raise
        try:
            decisions = validate_decisions(approval, answer.get("decisions", []))
        except LunarkError:
            # Resume checks decisions first; anything malformed that still arrives fails closed.
            decisions = [{"type": "reject", "message": "invalid decision"} for _ in approval["action_requests"]]
        get_stream_writer()(
            {
                "type": "approval_resolved",
                "approval_id": approval["approval_id"],
                "decisions": decisions,
                "by": answer.get("by", "user"),
            }
        )
        return {"decisions": decisions, "approval": None, "resolved": [approval["approval_id"]]}

    async def _execute_node(self, state: AgentState, config: RunnableConfig) -> dict[str, Any]:
        ctx = self._context(state, config)
        proposals = state.get("proposals") or []
        decisions = state.get("decisions") or []
        messages: list[ToolMessage] = []
        edits: list[tuple[str, str, Mapping[str, Any]]] = []
        for item, decision in zip(proposals, decisions, strict=True):
            call_id, name = item["call_id"], item["name"]
            emit = _emitter(ctx, call_id)
            call_ctx = replace(ctx, emit=emit, call_id=call_id, approval_id=item.get("approval_id"),
                               expires_at=_parse_time(item.get("expires_at")))
            kind = decision["type"]
            if kind in ("reject", "edit") and call_ctx.action_id is not None:
                await self.store.release(call_ctx.action_id)  # nothing of it goes out
            if kind == "reject":
                result = {"status": "rejected", "action": name, "args": item["args"],
                          "message": decision.get("message")}
                emit({"type": "tool_result", "call_id": call_id, "status": "rejected", "result": result})
                messages.append(_tool_ok(call_id, name, result, ok=False))
                continue
            if kind == "edit":
                edits.append((call_id, name, decision["edited_action"]["args"]))
                continue
            try:
                tool = self.tools.get(name)
                args = validate_args(tool, item["args"])
                emit({"type": "tool_call", "call_id": call_id, "name": name, "args": item["args"],
                      "status": "running"})
                result = await tool.execute(args, call_ctx, Proposal.from_state(item["proposal"]), decision)
                ctx.chain_id = call_ctx.chain_id  # switch_network moves the chat
                ok = _succeeded(result)
                emit({"type": "tool_result", "call_id": call_id, "status": "success" if ok else "error",
                      "result": result})
                messages.append(_tool_ok(call_id, name, result, ok=ok))
            except LunarkError as exc:
                if call_ctx.action_id is not None and call_ctx.settlements is not None and (
                    await self.store.get_settlement(call_ctx.action_id) is None
                ):
                    await self.store.release(call_ctx.action_id)  # refused before anything was written ahead
                emit({"type": "tool_result", "call_id": call_id, "status": "error", "result": None,
                      "error": exc.to_dict()})
                messages.append(_tool_error(call_id, name, exc))
        ctx.approval_id = new_id("apr_")
        ctx.expires_at = datetime.now(UTC) + timedelta(seconds=self.approval_ttl)
        reprepared, proposals_again = await self._prepare_calls(ctx, edits)
        return _tools_ran({
            "messages": messages + reprepared,
            "proposals": proposals_again,
            "approval": self._approval(proposals_again, ctx),
            "decisions": None,
            "chain_id": ctx.chain_id,
        })

    # -- public API -----------------------------------------------------------------------------

    def _lock(self, thread_id: str) -> asyncio.Lock:
        return self._locks.setdefault(thread_id, asyncio.Lock())

    @staticmethod
    def _config(thread_id: str) -> RunnableConfig:
        return {"configurable": {"thread_id": thread_id}, "recursion_limit": 50}

    @asynccontextmanager
    async def _new_turn(self, thread_id: str, known: ChatSnapshot | None = None) -> AsyncIterator[StateSnapshot]:
        """Hold the chat's lock for a new turn and give its checkpoint (``known``'s, if given: read
        just before, no turn of the chat since); ``Busy`` while a turn runs or an approval waits."""
        await self.ready()
        lock = self._lock(thread_id)
        if lock.locked():
            raise Busy("A turn is already running in this chat.")
        async with lock:
            snapshot = known.state if known is not None else await self.graph.aget_state(self._config(thread_id))
            pending = _pending_of(snapshot)
            if pending is not None:
                raise Busy(
                    "This chat is waiting for your decision on an approval; approve or reject it first.",
                    approval_id=pending["approval_id"],
                )
            yield snapshot

    async def pending_approval(self, thread_id: str) -> dict[str, Any] | None:
        """The approval this chat waits for, or None (also once it was decided, before it is applied)."""
        return (await self.snapshot(thread_id)).pending

    async def snapshot(self, thread_id: str) -> ChatSnapshot:
        """The chat's graph as it is now, with the approval it waits for (see ``pending_approval``)."""
        state = await self.graph.aget_state(self._config(thread_id))
        pending = _pending_of(state)
        if pending is not None and self._store is not None:
            record = await self._store.get_approval(pending["approval_id"])
            if record is not None and record.state != "pending":
                pending = None
        return ChatSnapshot(state=state, pending=pending)

    async def unfinished(self, thread_id: str) -> tuple[str, str | None] | None:
        """Where a chat's graph stopped, if not at its end: ``("paused", approval_id)`` at an
        interrupt, ``("interrupted", None)`` mid-run (a crash after a decision was applied)."""
        snapshot = await self.graph.aget_state(self._config(thread_id))
        if snapshot.interrupts:
            return "paused", str(snapshot.interrupts[0].value.get("approval_id"))
        if snapshot.next:
            return "interrupted", None
        return None

    async def chain_id(self, thread_id: str) -> int | None:
        """The chat's current network, or None for a chat that never ran."""
        snapshot = await self.graph.aget_state(self._config(thread_id))
        value = snapshot.values.get("chain_id") if snapshot.values else None
        return int(value) if value is not None else None

    async def messages(self, thread_id: str) -> list[Any]:
        snapshot = await self.graph.aget_state(self._config(thread_id))
        return list(snapshot.values.get("messages", [])) if snapshot.values else []

    async def stream(
        self,
        thread_id: str,
        message: str,
        *,
        user_address: str,
        chain_id: int | None = None,
        on_token: Callable[[str], None] | None = None,
        snapshot: ChatSnapshot | None = None,
    ) -> AsyncIterator[AgentEvent]:
        """Run one turn for a user message; yields events until the answer ends or an approval is pending.

        ``on_token``, when given, receives each token's text as the model streams it, and the
        turn yields no ``token`` events (every other event is yielded as usual, in order after
        the tokens that came before it). ``snapshot``: what ``snapshot()`` returned just before,
        with no turn of this chat run since, so the turn does not read the chat's state again.
        Raises ``Busy`` while the chat waits for a decision on an earlier approval.
        """
        async with self._new_turn(thread_id, snapshot) as state:
            values = state.values or {}
            history = values.get("messages", [])
            # Only a turn cut short (abort, crash) leaves calls unanswered: only then ask the store.
            settled = (
                {r.call_id: r for r in await self.store.settlements(chat_id=thread_id)}
                if _has_unanswered(history) else {}
            )
            graph_input: AgentState = {
                "messages": [*_unanswered_calls(history, settled), HumanMessage(content=message)],
                "user_address": user_address,
                "chain_id": chain_id or values.get("chain_id") or self.default_chain_id,
            }
            # An abort closes the run now.
            async with aclosing(self._run(thread_id, graph_input, on_token=on_token)) as events:
                async for event in events:
                    yield event

    async def call_tool(
        self, thread_id: str, name: str, args: Mapping[str, Any], *, user_address: str, call_id: str,
        chain_id: int | None = None,
    ) -> AsyncIterator[AgentEvent]:
        """Run one tool call the user's own client asked for (``lunark mcp`` for an MCP host) as a turn:
        it enters the graph as if the model had proposed it, so it is validated, checked and, when
        the tool needs it, waits for the user's decision like any other call; the turn ends after
        it (and after its approval), without calling the model. Raises ``Busy`` like ``stream``, and
        ``InvalidInput`` for a tool that does not exist or arguments its schema refuses, before anything
        runs."""
        validate_args(self.tools.get(name), args)
        async with self._new_turn(thread_id) as snapshot:
            config = self._config(thread_id)
            values = snapshot.values or {}
            history = values.get("messages", [])
            settled = (
                {r.call_id: r for r in await self.store.settlements(chat_id=thread_id)}
                if _has_unanswered(history) else {}
            )
            proposed = AIMessage(
                content="", tool_calls=[{"name": name, "args": dict(args), "id": call_id}],
                response_metadata={_DIRECT: True},
            )
            await self.graph.aupdate_state(config, {
                "messages": [*_unanswered_calls(history, settled), proposed],
                "user_address": user_address,
                "chain_id": chain_id or values.get("chain_id") or self.default_chain_id,
            }, as_node="agent")
            async with aclosing(self._run(thread_id, None)) as events:
                async for event in events:
                    yield event

    async def continue_message(
        self, thread_id: str, message_id: str, *, on_token: Callable[[str], None] | None = None
    ) -> AsyncIterator[AgentEvent]:
        """Go on with the answer ``message_id`` that the model cut at its output limit
        (``message_end`` with ``finish_reason: "length"``): yields ``token`` events for the same
        ``message_id`` and a new ``message_end``, with no ``message_start``. The model is asked
        to continue where it stopped; its text is appended to the same message in the history.

        Only the chat's last answer can be continued. Raises ``Busy`` while a turn runs or an
        approval waits, ``InvalidInput`` for any other message.
        """
        async with self._new_turn(thread_id) as snapshot:
            values = snapshot.values or {}
            history = values.get("messages", [])
            if values.get("truncated_message") != message_id or not history or not isinstance(history[-1], AIMessage):
                raise InvalidInput(
                    f"Message {message_id} is not the chat's last answer cut at the model's output limit; "
                    "only that one can be continued.",
                    message_id=message_id,
                )
            graph_input = cast(AgentState, {"messages": []})
            async with aclosing(self._run(thread_id, graph_input, message_id=message_id, on_token=on_token)) as events:
                async for event in events:
                    yield event

    async def resume(
        self,
        thread_id: str,
        approval_id: str,
        decisions: Sequence[Any],
        *,
        by: str = "user",
        claimed: bool = False,
        on_token: Callable[[str], None] | None = None,
    ) -> AsyncIterator[AgentEvent]:
        """Apply the user's decisions to the pending approval, exactly once, and continue the turn.

        The decision is claimed in the store before the graph resumes, so no crash can apply it
        twice or offer the approval again. ``claimed`` resumes with a decision claimed earlier (the
        server's recovery after a restart). Raises ``NoPendingApproval``, ``AlreadyDecided``,
        ``ApprovalExpired`` or ``InvalidDecision`` before anything runs.
        """
        store = await self.ready()
        lock = self._lock(thread_id)
        async with lock:
            pending = _pending_of(await self.graph.aget_state(self._config(thread_id)))
            record = await store.get_approval(approval_id)
            if pending is None or pending["approval_id"] != approval_id:
                snapshot = await self.graph.aget_state(self._config(thread_id))
                resolved = (snapshot.values or {}).get("resolved", [])
                if approval_id in resolved or (record is not None and record.state != "pending"):
                    if record is not None and record.state == "expired":
                        raise ApprovalExpired(f"Approval {approval_id} expired; it counted as rejected.",
                                              approval_id=approval_id)
                    raise AlreadyDecided(f"Approval {approval_id} was already decided.", approval_id=approval_id)
                raise NoPendingApproval(
                    f"This chat is not waiting for approval {approval_id}.", approval_id=approval_id
                )
            lapsed = _expired(pending) or (record is not None and record.state == "expired")
            if by == "user" and not claimed and lapsed:
                late = await self.record_late(thread_id, approval_id, decisions)
                raise ApprovalExpired(
                    f"Approval {approval_id} expired at {pending['expires_at']}; it counts as rejected."
                    + (" The transaction your wallet sent is recorded and followed in this chat." if late else ""),
                    approval_id=approval_id,
                )
            checked = validate_decisions(pending, decisions)
            if record is None and not claimed:
                # Paused before its approval was stored (a crash in between, or an older version):
                # store it now, so this decision is claimed durably like any other.
                await self._record_pending(thread_id, pending)
                record = await store.get_approval(approval_id)
            if record is not None and not claimed:
                claim = await store.claim_approval(approval_id, checked, by)
                if claim is None:
                    again = await store.get_approval(approval_id)
                    if again is not None and again.by == "timeout":
                        raise ApprovalExpired(f"Approval {approval_id} expired; it counted as rejected.",
                                              approval_id=approval_id)
                    raise AlreadyDecided(f"Approval {approval_id} was already decided.", approval_id=approval_id)
            resume: Command[Any] = Command(resume={"decisions": checked, "by": by})
            async with aclosing(self._run(thread_id, resume, resuming=pending, on_token=on_token)) as events:
                async for event in events:
                    if event["type"] == "message_end" and record is not None:
                        # Applied (the turn that resumed it ran): recovery leaves it alone from now on.
                        # Before message_end, so a client that sees the turn end sees the chat free.
                        await store.finish_approval(approval_id)
                    yield event

    async def carry_on(
        self, thread_id: str, *, on_token: Callable[[str], None] | None = None
    ) -> AsyncIterator[AgentEvent]:
        """Run a turn that a restart interrupted after its decision was applied, from its checkpoint
        (the execute step finds its settlements already written and waits for their outcome)."""
        await self.ready()
        async with self._lock(thread_id), aclosing(self._run(thread_id, None, on_token=on_token)) as events:
            async for event in events:
                yield event

    async def expire(
        self, thread_id: str, approval_id: str, *, on_token: Callable[[str], None] | None = None
    ) -> AsyncIterator[AgentEvent]:
        """Resolve an expired approval as rejected (``by: "timeout"``): fail closed."""
        pending = await self.pending_approval(thread_id)
        count = len(pending["action_requests"]) if pending else 0
        rejects = [{"type": "reject", "message": "The approval expired."}] * count
        resumed = cast(
            "AsyncGenerator[AgentEvent]",
            self.resume(thread_id, approval_id, rejects, by="timeout", on_token=on_token),
        )
        async with aclosing(resumed) as events:
            async for event in events:
                yield event

    async def record_late(self, thread_id: str, approval_id: str, decisions: Sequence[Any]) -> bool:
        """A wallet's hash that arrives after the approval expired is still checked and followed:
        funds that moved are never hidden, and count. Signed bytes that arrive late are never
        broadcast. True if any hash was taken."""
        await self.ready()
        record = await self.store.get_approval(approval_id)
        if record is None or record.chat_id != thread_id or not isinstance(decisions, Sequence):
            return False
        taken = False
        for item, decision in zip(record.proposals, decisions, strict=False):
            tx_hash = decision.get("tx_hash") if isinstance(decision, Mapping) else None
            prepared = item.get("proposal", {}).get("data", {}).get("prepared")
            if not isinstance(tx_hash, str) or not prepared or decision.get("type") != "approve":
                continue
            try:
                checked = ApproveDecision(type="approve", tx_hash=tx_hash).model_dump(exclude_none=True)
            except ValidationError:
                continue
            settlement = await self.settlements.open(
                approval_id=record.approval_id, call_id=item["call_id"], chat_id=thread_id,
                prepared=prepared_from_state(prepared), prepared_state=prepared, decision=checked,
                expires_at=record.expires_at, late=True,
            )
            self.settlements.start(settlement.settlement_id)
            taken = True
        return taken

    async def _record_pending(self, thread_id: str, approval: dict[str, Any]) -> None:
        """Durable before visible: the approval, with what each action executes, is stored before
        its event is sent (the graph's own checkpoint is committed by then too)."""
        snapshot = await self.graph.aget_state(self._config(thread_id))
        values = snapshot.values or {}
        await self.store.put_approval(ApprovalRecord(
            approval_id=approval["approval_id"], chat_id=thread_id, owner=str(values.get("user_address", "")),
            state="pending", request=approval, proposals=list(values.get("proposals") or []),
            expires_at=_parse_time(approval["expires_at"]) or datetime.now(UTC), decisions=None, by=None,
        ))

    async def _run(
        self, thread_id: str, graph_input: AgentState | Command[Any] | None, *, message_id: str | None = None,
        resuming: Mapping[str, Any] | None = None, on_token: Callable[[str], None] | None = None,
    ) -> AsyncGenerator[AgentEvent]:
        """One run of the graph as protocol events. With ``message_id`` it continues that message
        (no ``message_start``; the model goes on with the cut answer); ``resuming`` is the approval
        a ``Command`` decides; ``on_token`` takes the tokens instead of ``token`` events (``stream``)."""
        continuing = message_id is not None
        message_id = message_id or new_id("msg_")
        started = time.monotonic()
        first_token: float | None = None
        output_tokens = 0
        if not continuing:
            yield {"type": "message_start", "message_id": message_id, "role": "assistant"}
        signed: set[str] = set()  # calls whose execution checks and tracks a signed transaction
        if resuming is not None:
            signed = {r["call_id"] for r in resuming.get("action_requests", []) if r.get("tx")}
        elif not isinstance(graph_input, Command):
            yield _thinking()
        finish = "stop"
        turn = _Turn(message_id, continuing=continuing, sink=on_token)
        config = self._config(thread_id)
        config["configurable"][_TURN_KEY] = turn
        parts: AsyncGenerator[Any] = self.graph.astream(  # type: ignore[assignment]
            graph_input, config, stream_mode=_STREAM_MODE
        )
        pump = asyncio.create_task(turn.pump(parts))
        pump.add_done_callback(turn.wake)
        paused: list[dict[str, Any]] = []
        try:
            while True:
                tokens = turn.tokens
                while tokens:
                    text = tokens.popleft()
                    if first_token is None:
                        first_token = time.monotonic()
                    output_tokens += 1
                    yield {"type": "token", "message_id": message_id, "text": text}
                if turn.part is not None:
                    payload = turn.part
                    turn.part = None
                    kind = payload.get("type")
                    if kind == _PAUSED:
                        # Held until the run is over: LangGraph writes the interrupt to the checkpoint
                        # in the background, and only the end of the run awaits it.
                        paused.append(payload["approval"])
                    elif kind == _TOOLS_RAN:
                        yield _thinking()  # the tools ran and nothing waits: the model is called again
                    else:
                        event = dict(payload)
                        if kind in ("tool_call",):
                            event["message_id"] = message_id
                        yield event
                        if event.get("status") == "running" and event.get("call_id") in signed:
                            yield {"type": "status", "text": "checking the transaction"}
                elif pump.done():
                    pump.result()  # the graph's error, if it failed
                    break
                else:
                    await turn.wait()
            for approval in paused:
                await self._record_pending(thread_id, approval)
                finish = "awaiting_approval"
                yield {"type": "pending_approval", **approval}
                yield {"type": "status", "text": "waiting for your approval"}
        except LunarkError as exc:
            finish = "error"
            yield {"type": "error", **exc.to_dict()}
        except Exception as exc:  # a bug must not leave the turn hanging: report it, log it
            logger.exception("turn failed in thread %s", thread_id)
            finish = "error"
            yield {"type": "error", "code": "internal", "message": f"Internal error: {type(exc).__name__}"}
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
        yield {
            "type": "message_end",
            "message_id": message_id,
            "finish_reason": finish,
            "usage": {
                "output_tokens": output_tokens,
                "ttft_ms": round((first_token - started) * 1000, 1) if first_token else None,
                "tokens_per_s": round(output_tokens / elapsed, 1) if first_token and elapsed > 0 else None,
            },
        }

    async def aclose(self) -> None:
        if self._settlements is not None:
            await self._settlements.aclose()
        await self.clients.close()
        for model in [*self._retired, self._model]:
            await aclose_chat_model(model)
        if self._own_store and self._store is not None:
            await self._store.close()

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        settings: Settings,
        *,
        model: BaseChatModel | None = None,
        extra_tools: Sequence[Tool] = (),
        environ: Mapping[str, str] | None = None,
        store: Store | None = None,
    ) -> AsyncIterator[Agent]:
        """An agent built from ``settings``: SQLite checkpoints and store under ``data_dir``, or both on
        Postgres with ``store.url`` (``store`` overrides the store), the configured model (``model``
        overrides it, e.g. a scripted one in tests), tools and plugins, policy, signer.
        """
        env = os.environ if environ is None else environ
        registry = settings.network_registry()
        tools = [*default_tools(), *(load_plugins() if settings.plugins else []), *extra_tools]
        toolset = ToolSet(tools, settings.approvals.rules)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        async with AsyncExitStack() as stack:
            if settings.mcp.servers:  # MCP servers' tools join the set (lunark.mcp.tools); closed with the agent
                from lunark.mcp.tools import McpToolbox

                await stack.enter_async_context(McpToolbox.open(settings.mcp, toolset, environ=env))
            if store is None:
                store = await open_store(settings.store.url, settings.data_dir / "lunark.sqlite",
                                         pool_size=settings.store.pool_size)
                stack.push_async_callback(store.close)
            saver: BaseCheckpointSaver[Any]
            if settings.store.url:
                # Several processes share one database: LangGraph's Postgres checkpointer, on psycopg too.
                from lunark.store.postgres import open_checkpointer

                saver = await stack.enter_async_context(
                    open_checkpointer(settings.store.url, max_size=settings.store.pool_size)
                )
            else:
                # One thread hop per checkpoint operation, no lock shared by every chat (WAL,
                # synchronous = NORMAL): see lunark/graph/checkpoints.py.
                saver = await stack.enter_async_context(
                    ThreadedSqliteSaver.open(settings.data_dir / "checkpoints.sqlite")
                )
            agent = cls(
                model=model or OfflinePlanner(),
                bind_tools=None if model is not None else (
                    lambda schemas: bind_tools_with_fallbacks(settings.model, schemas, environ=env)
                ),
                registry=registry,
                checkpointer=saver,
                tools=toolset,
                policy=settings.policy.build(),
                store=store,
                signer=_local_signer(settings, env),
                approval_ttl=settings.approvals.ttl_seconds,
                track_timeout=settings.chain.track_timeout,
                verify_timeout=settings.chain.verify_timeout,
                default_network=settings.chain.default_network,
                fee_factor=settings.approvals.fee_factor,
            )
            await agent.ready()
            try:
                yield agent
            finally:
                await agent.aclose()


def _local_signer(settings: Settings, environ: Mapping[str, str]) -> Signer | None:
    local = settings.signer.local
    if local == "anvil":
        return LocalSigner.anvil(settings.signer.anvil_account)
    if local == "key":
        key = environ.get(settings.signer.key_env)
        if not key:
            raise ConfigError(
                f"signer.local is 'key' but the environment variable {settings.signer.key_env} is not set."
            )
        return LocalSigner(key, allowed_chain_ids=None)
    return None


def _emitter(ctx: ToolContext, call_id: str) -> Callable[[dict[str, Any]], None]:
    def emit(event: dict[str, Any]) -> None:
        ctx.emit({"call_id": call_id, **event} if event.get("type") == "tx_update" else event)

    return emit


_DIRECT = "lunark_called_by_user"
"""Marks (in ``response_metadata``, which no provider is sent) a tool call the user's own client
made (``Agent.call_tool``): its turn ends after the call instead of asking the model again."""


def _called_directly(messages: Sequence[Any]) -> bool:
    for message in reversed(messages):
        if isinstance(message, AIMessage):
            return bool(message.response_metadata.get(_DIRECT))
    return False


def _pending_of(snapshot: StateSnapshot) -> dict[str, Any] | None:
    return cast(dict[str, Any], snapshot.interrupts[0].value) if snapshot.interrupts else None


def _has_unanswered(messages: Sequence[Any]) -> bool:
    answered = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}
    return any(
        call["id"] and call["id"] not in answered
        for m in messages if isinstance(m, AIMessage) for call in m.tool_calls
    )


def _unanswered_calls(messages: Sequence[Any], settled: Mapping[str, SettlementRecord]) -> list[ToolMessage]:
    """Results for tool calls an aborted (or crashed) turn left without one.

    Chat APIs refuse a history where a tool call has no result, so the next turn
    tells the model what became of them: a transfer's settlement outcome when it has one
    (the settlement went on without the turn), else plainly that the call was stopped.
    """
    answered = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}
    stopped = LunarkError("The turn was stopped before this call finished; its outcome is unknown.")
    out: list[ToolMessage] = []
    for m in messages:
        if not isinstance(m, AIMessage):
            continue
        for call in m.tool_calls:
            if not call["id"] or call["id"] in answered:
                continue
            record = settled.get(call["id"])
            if record is None:
                out.append(_tool_error(call["id"], call["name"], stopped))
                continue
            result = settlement_result(record, {})
            out.append(_tool_ok(call["id"], call["name"], result, ok=_succeeded(result)))
    return out


def _message_of(chunks: Sequence[Any]) -> BaseMessage:
    """The message a model's stream adds up to: what ``ainvoke`` returns for the same stream."""
    if not chunks:
        raise ModelError("The model returned an empty stream.", error_type="EmptyStream")
    pieces = [chunk for chunk in chunks if isinstance(chunk, AIMessageChunk)]
    if len(pieces) == len(chunks):  # a chat model's stream: merged at once, as BaseChatModel does
        return message_chunk_to_message(add_ai_message_chunks(pieces[0], *pieces[1:]))
    total = chunks[0]  # a runnable that does not stream yields its whole output once
    for chunk in chunks[1:]:
        total = total + chunk
    return message_chunk_to_message(total)


_SAME_WHEN_EQUAL = ("model_provider", "output_version")
"""``response_metadata`` keys that merging two chunks keeps once when their values are equal."""


def _only_text(chunk: AIMessageChunk, first: Any, kept: Mapping[str, Any]) -> bool:
    """Whether merging ``chunk`` into a message that starts with ``first`` adds nothing but its text
    (``add_ai_message_chunks``): str content, no kwargs, tool calls or usage, the same id, and no
    metadata but keys equal to what the merge holds already (``kept``), which merge to themselves."""
    if (
        not isinstance(chunk.content, str)
        or chunk.additional_kwargs
        or chunk.tool_call_chunks
        or chunk.usage_metadata is not None
        or chunk.chunk_position is not None
        or not isinstance(first, AIMessageChunk)
        or not isinstance(first.content, str)
        or (chunk.id is not None and chunk.id != first.id)
    ):
        return False
    return all(key in _SAME_WHEN_EQUAL and kept.get(key) == value for key, value in chunk.response_metadata.items())


def _keep_metadata(kept: dict[str, Any], chunk: AIMessageChunk) -> None:
    """Follow ``merge_dicts`` for the ``_SAME_WHEN_EQUAL`` keys of a chunk kept whole."""
    for key in _SAME_WHEN_EQUAL:
        value = chunk.response_metadata.get(key)
        if value is None:
            continue
        held = kept.get(key)
        if held is None:
            kept[key] = value
        elif held != value:
            kept[key] = held + value if isinstance(held, str) and isinstance(value, str) else held


def _tools_ran(update: dict[str, Any]) -> dict[str, Any]:
    """A prepare or execute step's update, reported to ``_run`` (``_TOOLS_RAN``) when it leaves no
    approval waiting; written last, after the step's tool events, as its update came before."""
    if not update.get("approval"):
        get_stream_writer()({"type": _TOOLS_RAN})
    return update


def _text_of(content: Any) -> str:
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _iso(when: datetime | None) -> str:
    assert when is not None
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_time(text: Any) -> datetime | None:
    return datetime.fromisoformat(str(text).replace("Z", "+00:00")) if text else None


def _expired(approval: Mapping[str, Any]) -> bool:
    expires = datetime.fromisoformat(str(approval["expires_at"]).replace("Z", "+00:00"))
    return datetime.now(UTC) >= expires

