"""The agent: a LangGraph task graph with a human-in-the-loop approval gate.

Its pieces: the graph's nodes (``lunark.graph.nodes``), one run of it as protocol events (the turn
pump, ``lunark.graph.turn``) and its construction from settings (``lunark.graph.construction``).

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
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, aclosing, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Self, cast

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    HumanMessage,
    ToolMessage,
)
from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.checkpoint.base import WRITES_IDX_MAP, BaseCheckpointSaver
from langgraph.types import Command, StateSnapshot
from pydantic import ValidationError

from lunark.chain.client import ChainClients
from lunark.chain.signer import Signer
from lunark.chain.types import prepared_from_state
from lunark.config import Settings
from lunark.errors import (
    AlreadyDecided,
    ApprovalExpired,
    Busy,
    InvalidInput,
    LunarkError,
    NoPendingApproval,
)
from lunark.graph.approval import ApproveDecision, validate_decisions
from lunark.graph.construction import open_agent
from lunark.graph.nodes import DIRECT, GraphNodes, continued_answer, parse_time, succeeded, tool_error, tool_ok
from lunark.graph.state import AgentState
from lunark.graph.turn import AgentEvent, run_turn
from lunark.models.factory import aclose_chat_model
from lunark.networks import NetworkRegistry
from lunark.settlement import Settlements
from lunark.store import ApprovalRecord, SettlementRecord, SqliteStore, Store
from lunark.tools.base import Tool, validate_args
from lunark.tools.policy import SpendingPolicy
from lunark.tools.registry import ToolSet, default_tools
from lunark.tools.transfer import settlement_result

__all__ = ["SYSTEM_PROMPT", "Agent", "AgentEvent", "ChatSnapshot"]

logger = logging.getLogger(__name__)

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


class Agent(GraphNodes):
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
        self._checkpointer = checkpointer
        self.graph = self._build().compile(checkpointer=checkpointer)

    def _rebind(self, binder: Callable[[Sequence[dict[str, Any]]], Runnable[Any, Any]]) -> None:
        """The tool list changed (an MCP server's did): the model's next call sees the new one. The
        old binding may be mid-call; it is closed with the agent."""
        self._retired.append(self._model)
        self._model = binder(self.tools.schemas())


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
                response_metadata={DIRECT: True},
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
        self, thread_id: str, *, approval_id: str | None = None, on_token: Callable[[str], None] | None = None
    ) -> AsyncIterator[AgentEvent]:
        """Run a turn that a restart interrupted after its decision was applied, from its checkpoint
        (the execute step finds its settlements already written and waits for their outcome).
        ``approval_id``: the claimed decision this turn applies, finished like ``resume`` finishes it."""
        store = await self.ready()
        async with self._lock(thread_id), aclosing(self._run(thread_id, None, on_token=on_token)) as events:
            async for event in events:
                if event["type"] == "message_end" and approval_id is not None:
                    await store.finish_approval(approval_id)
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
            expires_at=parse_time(approval["expires_at"]) or datetime.now(UTC), decisions=None, by=None,
        ))

    def _run(
        self, thread_id: str, graph_input: AgentState | Command[Any] | None, *, message_id: str | None = None,
        resuming: Mapping[str, Any] | None = None, on_token: Callable[[str], None] | None = None,
    ) -> AsyncGenerator[AgentEvent]:
        """One run of the graph as protocol events (``lunark.graph.turn.run_turn``)."""
        return run_turn(self.graph, thread_id, self._config(thread_id), graph_input,
                        record_pending=self._record_pending, message_id=message_id, resuming=resuming,
                        on_token=on_token)


    async def aclose(self) -> None:
        if self._settlements is not None:
            await self._settlements.aclose()
        await self.clients.close()
        for model in [*self._retired, self._model]:
            await aclose_chat_model(model)
        if self._own_store and self._store is not None:
            await self._store.close()

    @classmethod
    def open(
        cls,
        settings: Settings,
        *,
        model: BaseChatModel | None = None,
        extra_tools: Sequence[Tool] = (),
        environ: Mapping[str, str] | None = None,
        store: Store | None = None,
    ) -> AbstractAsyncContextManager[Self]:
        """An agent built from ``settings``: SQLite checkpoints and store under ``data_dir``, or both on
        Postgres with ``store.url`` (``store`` overrides the store), the configured model (``model``
        overrides it, e.g. a scripted one in tests), tools and plugins, policy, signer.
        """
        return open_agent(cls, settings, model=model, extra_tools=extra_tools, environ=environ, store=store)


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
                out.append(tool_error(call["id"], call["name"], stopped))
                continue
            result = settlement_result(record, {})
            out.append(tool_ok(call["id"], call["name"], result, ok=succeeded(record)))
    return out


def _expired(approval: Mapping[str, Any]) -> bool:
    expires = datetime.fromisoformat(str(approval["expires_at"]).replace("Z", "+00:00"))
    return datetime.now(UTC) >= expires

