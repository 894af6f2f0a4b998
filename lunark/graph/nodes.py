"""The agent's graph: its nodes and routes, with a human-in-the-loop approval gate.

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

The chat's message helpers (tool results, the model's stream as one message) are
``lunark.graph.messages``; the approval request the ``approve`` node pauses with is built by
``lunark.approvals``.

``GraphNodes`` holds them; ``Agent`` (``lunark.graph.agent``) is one, with the tools, model,
store and settlements they use.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.errors import GraphInterrupt
from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt
from pydantic import BaseModel

from lunark import protocol
from lunark.approvals import iso, parse_time, request_of
from lunark.chain.client import ChainClients
from lunark.chain.signer import Signer
from lunark.contacts import labels_by_address
from lunark.errors import (
    LunarkError,
    ModelError,
    NonceGap,
    PreviewChanged,
)
from lunark.fingerprint import action_fingerprint
from lunark.graph.approval import validate_decisions
from lunark.graph.messages import (
    at_output_limit,
    called_directly,
    continued_answer,
    keep_metadata,
    message_of,
    only_text,
    provenance_of,
    succeeded,
    text_of,
    tool_error,
    tool_ok,
)
from lunark.graph.state import AgentState
from lunark.graph.turn import TURN_KEY, Turn, paused, tools_ran
from lunark.ids import new_id
from lunark.models.planner import CONTINUE_PROMPT
from lunark.networks import NetworkRegistry
from lunark.nonces import nonce_floors
from lunark.settlement import Settlements
from lunark.store import SettlementRecord, Store
from lunark.tools.base import Proposal, ToolContext, needs_approval, validate_args
from lunark.tools.policy import SpendingPolicy
from lunark.tools.recipient import Provenance, addresses_in
from lunark.tools.registry import ToolSet

__all__ = ["GraphNodes"]


class GraphNodes(ABC):
    """The graph's nodes and routes, as methods of the agent that runs them."""

    registry: NetworkRegistry
    clients: ChainClients
    tools: ToolSet
    policy: SpendingPolicy
    signer: Signer | None
    approval_ttl: float
    track_timeout: float
    verify_timeout: float
    system_prompt: str
    _model: Runnable[Any, Any]

    @property
    @abstractmethod
    def store(self) -> Store: ...

    @property
    @abstractmethod
    def settlements(self) -> Settlements: ...

    async def _settlement_of(self, ctx: ToolContext) -> SettlementRecord | None:
        """The settlement the call drove, if it drove one: its final state is the call's outcome."""
        if ctx.settlement_id is None or ctx.settlements is None:
            return None
        return await self.store.get_settlement(ctx.settlement_id)

    # -- the graph -----------------------------------------------------------------------------------

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
            history=self.store,
        )

    async def _agent_node(self, state: AgentState, config: RunnableConfig) -> dict[str, Any]:
        network = self.registry.get(state["chain_id"])
        prompt = self.system_prompt.format(
            user_address=state["user_address"],
            network=network.display_name,
            chain_id=network.chain_id,
            symbol=network.symbol,
        )
        turn: Turn | None = config.get("configurable", {}).get(TURN_KEY)
        history: list[BaseMessage] = [SystemMessage(prompt), *state["messages"]]
        continuing = turn is not None and turn.continuing
        if turn is not None:
            turn.continuing = False  # only the turn's first model call continues
        if continuing:
            history.append(HumanMessage(CONTINUE_PROMPT))  # asked for this call only, never stored
        # What the answer adds up to, without keeping a chunk object per token until the turn ends:
        # a chunk that carries nothing but text (the usual token) is kept as its text only, in a
        # run of texts; any other chunk is kept whole. ``message_of`` merges them in order.
        parts: list[Any] = []
        kept: dict[str, Any] = {}  # the merged values of _SAME_WHEN_EQUAL so far
        try:
            # Streamed here rather than ainvoke'd under LangGraph's "messages" mode: the config
            # carries the node's callbacks, so tracing (and the "messages" mode of anyone who
            # streams the graph directly) still sees the chat model run and its tokens.
            async for chunk in self._model.astream(history, config):
                if isinstance(chunk, AIMessageChunk):
                    content = chunk.content
                    text = content if isinstance(content, str) else text_of(content)
                    if text and turn is not None:
                        turn.token(text)
                    if parts and only_text(chunk, parts[0], kept):
                        if not isinstance(parts[-1], list):
                            parts.append([])
                        parts[-1].append(content)
                        continue
                    keep_metadata(kept, chunk)
                parts.append(chunk)
            response = message_of([AIMessageChunk(content="".join(p)) if isinstance(p, list) else p for p in parts])
        except LunarkError:
            raise
        except Exception as exc:  # the model boundary: any provider failure is a model_error
            raise ModelError(f"The model failed: {exc}", model_error=type(exc).__name__) from exc
        cut = at_output_limit(response)
        if continuing:
            response = continued_answer(state["messages"][-1], response)
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
        return END if called_directly(state["messages"]) else "agent"

    async def _prepare_node(self, state: AgentState, config: RunnableConfig) -> dict[str, Any]:
        last = state["messages"][-1]
        assert isinstance(last, AIMessage)
        ctx = self._context(state, config)
        ctx.approval_id = new_id("apr_")
        ctx.expires_at = datetime.now(UTC) + timedelta(seconds=self.approval_ttl)
        calls = [(c["id"] or "", c["name"], c["args"]) for c in last.tool_calls]
        # A contact's address is one the user gave: it counts as typed, wherever it shows up.
        contacts = await labels_by_address(self.store, ctx.user_address)
        messages, proposals = await self._prepare_calls(ctx, calls, provenance_of(state["messages"], contacts))
        return _tools_ran({
            "messages": messages,
            "proposals": proposals,
            "approval": request_of(proposals, ctx.approval_id, ctx.expires_at),
            "decisions": None,
            "chain_id": ctx.chain_id,
        })

    async def _prepare_calls(
        self, ctx: ToolContext, calls: Sequence[tuple[str, str, Mapping[str, Any]]], provenance: Provenance
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
                emit(protocol.tool_call(call_id, name, dict(raw_args), "running"))
                emit(protocol.tool_result(call_id, "postponed", deferred))
                messages.append(tool_ok(call_id, name, deferred, ok=False))
                continue
            call_ctx = replace(ctx, emit=emit, call_id=call_id)
            try:
                tool = self.tools.get(name)
                args = validate_args(tool, raw_args)
                proposal = await tool.prepare(args, call_ctx)
                if needs_approval(tool, args, self.tools.rule(name), proposal):
                    proposal = self._checked(proposal, args, call_ctx, provenance)
                    emit(protocol.tool_call(call_id, name, dict(raw_args), "awaiting_approval"))
                    proposals.append({
                        "call_id": call_id,
                        "name": name,
                        "args": args.model_dump(mode="json", exclude_none=True),
                        "proposal": proposal.to_state(),
                        "approval_id": ctx.approval_id,
                        "expires_at": iso(ctx.expires_at),
                        "fingerprint": action_fingerprint(
                            name, args.model_dump(mode="json", exclude_none=True), call_ctx.chain_id, proposal.tx),
                    })
                    if name == "switch_network":
                        switching = proposal.summary.split(" to ", 1)[-1].split(" (", 1)[0]
                    continue
                emit(protocol.tool_call(call_id, name, dict(raw_args), "running"))
                result = await tool.execute(args, call_ctx, proposal, None)
                ctx.chain_id = call_ctx.chain_id
                ok = succeeded(await self._settlement_of(call_ctx))
                emit(protocol.tool_result(call_id, "success" if ok else "error", result))
                messages.append(tool_ok(call_id, name, result, ok=ok))
            except LunarkError as exc:
                if call_ctx.settlement_id is not None:
                    await self.store.release(call_ctx.settlement_id)
                emit(protocol.tool_call(call_id, name, dict(raw_args), "running"))
                emit(protocol.tool_result(call_id, "error", error=exc.to_dict()))
                messages.append(tool_error(call_id, name, exc))
        return messages, proposals

    def _checked(self, proposal: Proposal, args: BaseModel, ctx: ToolContext, provenance: Provenance) -> Proposal:
        """The proposal with the provenance of its addresses checked, refused (``PolicyViolation``)
        when the policy blocks one of its warnings."""
        network = ctx.network
        planted = provenance.warnings(
            args.model_dump(mode="json", exclude_none=True),
            ignore=[ctx.user_address, *(t.address for t in network.tokens)],
        )
        # Danger first: what the user must read before anything else.
        warnings = tuple(sorted((*planted, *proposal.warnings), key=lambda w: _SEVERITY_ORDER[w.severity]))
        self.policy.recipients.refuse_blocked(warnings)
        return replace(proposal, warnings=warnings)

    async def _approve_node(self, state: AgentState) -> dict[str, Any]:
        # Pure before interrupt(): this node runs again from the top when resumed.
        approval = state.get("approval")
        assert approval is not None
        try:
            answer = interrupt(approval)
        except GraphInterrupt:
            get_stream_writer()(paused(approval))  # for run_turn, which holds it
            raise
        try:
            decisions = validate_decisions(approval, answer.get("decisions", []))
        except LunarkError:
            # Resume checks decisions first; anything malformed that still arrives fails closed.
            decisions = [protocol.reject_decision("invalid decision") for _ in approval["action_requests"]]
        get_stream_writer()(protocol.approval_resolved(approval["approval_id"], decisions, answer.get("by", "user")))
        return {"decisions": decisions, "approval": None, "resolved": [approval["approval_id"]],
                "decided_by": answer.get("by", "user")}

    async def _execute_node(self, state: AgentState, config: RunnableConfig) -> dict[str, Any]:
        ctx = self._context(state, config)
        proposals = state.get("proposals") or []
        decisions = state.get("decisions") or []
        messages: list[ToolMessage] = []
        edits: list[tuple[str, str, Mapping[str, Any]]] = []
        typed_in_edits: set[str] = set()
        # Several transactions of one account were prepared with successive nonces; one that is not
        # sent lowers the nonce of those after it, so no approved one waits behind a gap.
        floors = nonce_floors([(item.get("proposal") or {}).get("tx") for item in proposals],
                              [decision["type"] == "approve" for decision in decisions])
        for item, decision, floor in zip(proposals, decisions, floors, strict=True):
            call_id, name = item["call_id"], item["name"]
            emit = _emitter(ctx, call_id)
            call_ctx = replace(ctx, emit=emit, call_id=call_id, approval_id=item.get("approval_id"),
                               expires_at=parse_time(item.get("expires_at")), nonce_floor=floor)
            kind = decision["type"]
            if kind in ("reject", "edit") and call_ctx.settlement_id is not None:
                await self.store.release(call_ctx.settlement_id)  # nothing of it goes out
            if kind == "reject":
                # Set aside for the user's new message is not the user's "no": the chat says which.
                status: protocol.ToolResultStatus = (
                    "superseded" if state.get("decided_by") == "superseded" else "rejected")
                result = {"status": status, "action": name, "args": item["args"],
                          "message": decision.get("message")}
                emit(protocol.tool_result(call_id, status, result))
                messages.append(tool_ok(call_id, name, result, ok=False))
                continue
            if kind == "edit":
                edited = decision["edited_action"]["args"]
                edits.append((call_id, name, edited))
                # Addresses the user put into the edit are theirs; those the edit kept keep their origin.
                typed_in_edits |= addresses_in(edited) - addresses_in(item["args"])
                continue
            try:
                tool = self.tools.get(name)
                args = validate_args(tool, item["args"])
                emit(protocol.tool_call(call_id, name, item["args"], "running"))
                result = await tool.execute(args, call_ctx, Proposal.from_state(item["proposal"]), decision)
                ctx.chain_id = call_ctx.chain_id  # switch_network moves the chat
                ok = succeeded(await self._settlement_of(call_ctx))
                emit(protocol.tool_result(call_id, "success" if ok else "error", result))
                messages.append(tool_ok(call_id, name, result, ok=ok))
            except (PreviewChanged, NonceGap) as exc:
                # Nothing was signed or sent: the reservation goes, and the call is prepared again, so
                # the user decides on a fresh card with what the transaction would do now (or with the
                # nonce it can go out with).
                if call_ctx.settlement_id is not None:
                    await self.store.release(call_ctx.settlement_id)
                emit(protocol.tool_result(call_id, "error", error=exc.to_dict()))
                edits.append((call_id, name, item["args"]))
            except LunarkError as exc:
                if call_ctx.settlement_id is not None and call_ctx.settlements is not None and (
                    await self.store.get_settlement(call_ctx.settlement_id) is None
                ):
                    await self.store.release(call_ctx.settlement_id)  # refused before anything was written ahead
                emit(protocol.tool_result(call_id, "error", error=exc.to_dict()))
                messages.append(tool_error(call_id, name, exc))
        ctx.approval_id = new_id("apr_")
        ctx.expires_at = datetime.now(UTC) + timedelta(seconds=self.approval_ttl)
        reprepared: list[ToolMessage] = []
        proposals_again: list[dict[str, Any]] = []
        if edits:  # only an edit is prepared again, and only then do the user's contacts count
            contacts = await labels_by_address(self.store, ctx.user_address)
            reprepared, proposals_again = await self._prepare_calls(
                ctx, edits, provenance_of(state["messages"], [*typed_in_edits, *contacts])
            )
        return _tools_ran({
            "messages": messages + reprepared,
            "proposals": proposals_again,
            "approval": request_of(proposals_again, ctx.approval_id, ctx.expires_at),
            "decisions": None,
            "chain_id": ctx.chain_id,
        })


def _emitter(ctx: ToolContext, call_id: str) -> Callable[[dict[str, Any]], None]:
    def emit(event: dict[str, Any]) -> None:
        ctx.emit({"call_id": call_id, **event} if event.get("type") == "tx_update" else event)

    return emit


_SEVERITY_ORDER = {"danger": 0, "warning": 1, "info": 2}


def _tools_ran(update: dict[str, Any]) -> dict[str, Any]:
    """A prepare or execute step's update, reported to ``run_turn`` (``TOOLS_RAN``) when it leaves no
    approval waiting; written last, after the step's tool events, as its update came before."""
    if not update.get("approval"):
        get_stream_writer()(tools_ran())
    return update
