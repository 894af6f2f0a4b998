"""The agent: a LangGraph task graph with a human-in-the-loop approval gate.

Its pieces: the graph's nodes (``lunark.graph.nodes``), the reads of a chat's checkpoint
(``lunark.graph.queries``), decisions applied to it (``lunark.graph.decisions``, claimed through
``lunark.approvals``), its messages (``lunark.graph.messages``), one run of it as protocol events
(the turn pump, ``lunark.graph.turn``) and its construction from settings (``lunark.graph.construction``).

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
from decimal import Decimal
from typing import Any, Self, cast

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import Runnable
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.types import Command, StateSnapshot

from lunark.approvals import Claims
from lunark.chain.client import ChainClients
from lunark.chain.signer import Signer
from lunark.config import Settings
from lunark.errors import Busy, InvalidInput
from lunark.graph.construction import open_agent
from lunark.graph.decisions import AgentDecisions
from lunark.graph.messages import DIRECT, has_unanswered, unanswered_calls
from lunark.graph.nodes import GraphNodes
from lunark.graph.queries import ChatSnapshot, pending_of
from lunark.graph.state import AgentState
from lunark.graph.turn import AgentEvent, run_turn
from lunark.models.factory import aclose_chat_model
from lunark.networks import NetworkRegistry
from lunark.settlement import Settlements
from lunark.store import SqliteStore, Store
from lunark.tools.base import Tool, validate_args
from lunark.tools.policy import SpendingPolicy
from lunark.tools.registry import ToolSet, default_tools

__all__ = ["SYSTEM_PROMPT", "Agent", "AgentEvent", "ChatSnapshot"]

logger = logging.getLogger(__name__)


SYSTEM_PROMPT = """You are Lunark, an assistant next to the user's crypto wallet.
The user's address is {user_address}. The chat is on {network} (chain id {chain_id}, native currency {symbol}).
You can read balances, prepare transfers and switch networks with your tools. Every transfer and
network switch is shown to the user, who approves, edits or rejects it; the spending policy may refuse it.
Never say funds moved unless a tool result says the transaction was confirmed. Amounts are in whole units
("0.5" ETH), never in wei. If a tool returns an error or a rejection, explain it plainly."""


class Agent(GraphNodes, AgentDecisions):
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
        self._claims: Claims | None = None
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
        if self._claims is None:
            self._claims = Claims(self._store)
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
            pending = pending_of(snapshot)
            if pending is not None:
                raise Busy(
                    "This chat is waiting for your decision on an approval; approve or reject it first.",
                    approval_id=pending["approval_id"],
                )
            yield snapshot


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
                if has_unanswered(history) else {}
            )
            graph_input: AgentState = {
                "messages": [*unanswered_calls(history, settled), HumanMessage(content=message)],
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
                if has_unanswered(history) else {}
            )
            proposed = AIMessage(
                content="", tool_calls=[{"name": name, "args": dict(args), "id": call_id}],
                response_metadata={DIRECT: True},
            )
            await self.graph.aupdate_state(config, {
                "messages": [*unanswered_calls(history, settled), proposed],
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
