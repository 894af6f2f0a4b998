"""How a turn streams: the agent model's tokens, their order, the message the checkpoint keeps, aborts.

No chain is needed: the tool calls here fail validation (an unknown tool), which
the agent answers without touching a network.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from openai_stub import Fail, OpenAIStub, Text
from pydantic import Field
from typing_extensions import TypedDict

from lunark.config import Settings
from lunark.graph import Agent
from lunark.graph.turn import paused, run_turn, tools_ran
from lunark.models.factory import ModelSettings, bind_tools_with_fallbacks
from lunark.networks import NetworkRegistry

USER = "0x" + "11" * 20


class Streamer(BaseChatModel):
    """Each call streams the next list of ``script``: chunk fields (dicts) or exceptions to raise."""

    script: list[list[Any]] = Field(default_factory=list)
    pause: float = 0.0
    calls: int = 0
    sent: int = 0
    """Chunks streamed so far, over all calls."""

    @property
    def _llm_type(self) -> str:
        return "test-streamer"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable[LanguageModelInput, AIMessage]:
        return self.bind(tools=list(tools), **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        raise NotImplementedError("streams only")

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        script = self.script[self.calls]
        self.calls += 1
        for item in script:
            if self.pause:
                await asyncio.sleep(self.pause)
            if isinstance(item, BaseException):
                raise item
            self.sent += 1
            yield ChatGenerationChunk(message=AIMessageChunk(**item))


TOOL_TURN: list[Any] = [
    {"content": "Let "},
    {"content": ""},  # an empty delta is no token
    {"content": "me look."},
    {"content": "", "tool_call_chunks": [{"name": "launch_rocket", "args": '{"to": ', "id": "c1", "index": 0}]},
    {"content": "", "tool_call_chunks": [{"args": '"moon"}', "index": 0}]},
    {"content": "", "tool_call_chunks": [{"name": "nope", "args": 'oops', "id": "c2", "index": 1}]},
    {
        "content": "",
        "response_metadata": {"finish_reason": "tool_calls", "model_name": "streamer"},
        "usage_metadata": {"input_tokens": 5, "output_tokens": 3, "total_tokens": 8},
        "chunk_position": "last",
    },
]
LIST_TURN: list[Any] = [
    {"content": [{"type": "text", "text": "Sorry", "index": 0}]},
    {"content": []},
    {"content": [{"type": "text", "text": ", no rocket.", "index": 0}]},
    {"content": [{"type": "image_url", "image_url": {"url": "data:,"}, "index": 1}]},
    {"content": [], "response_metadata": {"finish_reason": "stop"}},
]


META_TURN: list[Any] = [  # what merging must keep though plain text deltas are kept as text only
    {"content": "", "response_metadata": {"model_provider": "streamer"}},
    {"content": "One ", "response_metadata": {"model_provider": "streamer"}},
    {"content": "two ", "response_metadata": {"model_provider": "streamer", "output_version": "v0"}},
    {"content": "three ", "response_metadata": {"output_version": "v0"}},
    {"content": "four ", "response_metadata": {"model_provider": "other"}},
    {"content": "five ", "response_metadata": {"model_provider": "streamer"}},
    {"content": "six ", "id": "provider-id-1"},
    {"content": "seven", "additional_kwargs": {"refusal": None}},
    {"content": " eight"},
    {"content": "", "response_metadata": {"finish_reason": "stop"}, "chunk_position": "last"},
]


@pytest.fixture
def registry(tmp_path: Path) -> NetworkRegistry:
    settings = Settings.load(
        data_dir=tmp_path, plugins=False, chain={"networks": [{"name": "anvil", "rpc_urls": ["http://127.0.0.1:1"]}]}
    )
    return settings.network_registry()


@pytest.fixture
async def make_agent(registry: NetworkRegistry) -> AsyncIterator[Any]:
    agents: list[Agent] = []

    def make(model: Any = None, **kwargs: Any) -> Agent:
        agent = Agent(model=model, registry=registry, checkpointer=InMemorySaver(), **kwargs)
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        await agent.aclose()


def of_type(events: Sequence[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


def same_message(stored: BaseMessage, expected: BaseMessage) -> None:
    assert type(stored) is type(expected) is AIMessage
    assert isinstance(stored, AIMessage) and isinstance(expected, AIMessage)
    assert stored.content == expected.content
    assert stored.tool_calls == expected.tool_calls
    assert stored.invalid_tool_calls == expected.invalid_tool_calls
    assert stored.response_metadata == expected.response_metadata
    assert stored.usage_metadata == expected.usage_metadata
    assert stored.additional_kwargs == expected.additional_kwargs


async def test_tokens_stream_in_order_and_the_checkpoint_keeps_what_ainvoke_returns(make_agent: Any) -> None:
    model = Streamer(script=[TOOL_TURN, LIST_TURN])
    agent = make_agent(model)
    events = [e async for e in agent.stream("t", "fly me to the moon", user_address=USER)]

    kinds = [e["type"] for e in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_end"
    tokens = of_type(events, "token")
    assert [t["text"] for t in tokens] == ["Let ", "me look.", "Sorry", ", no rocket."]
    message_id = events[0]["message_id"]
    assert {t["message_id"] for t in tokens} == {message_id}
    assert events[-1]["message_id"] == message_id
    # The first answer's tokens come before its tool calls, the second's after their results.
    first_call = kinds.index("tool_call")
    last_result = len(kinds) - 1 - kinds[::-1].index("tool_result")
    assert kinds[:first_call].count("token") == 2 and kinds[last_result:].count("token") == 2
    assert [c["call_id"] for c in of_type(events, "tool_call")] == ["c1"]  # "nope" is an invalid call
    usage = events[-1]["usage"]
    assert usage["output_tokens"] == 4 and usage["ttft_ms"] is not None
    assert events[-1]["finish_reason"] == "stop"

    # The checkpoint holds the AIMessages an ainvoke of the same streams adds up to.
    stored = [m for m in await agent.messages("t") if isinstance(m, AIMessage)]
    assert len(stored) == 2
    for message, script in zip(stored, (TOOL_TURN, LIST_TURN), strict=True):
        expected = await Streamer(script=[script]).ainvoke([HumanMessage("x")], stream=True)
        same_message(message, expected)
    assert stored[0].tool_calls == [{"name": "launch_rocket", "args": {"to": "moon"}, "id": "c1", "type": "tool_call"}]
    assert [c["id"] for c in stored[0].invalid_tool_calls] == ["c2"]
    assert stored[0].response_metadata["finish_reason"] == "tool_calls"


async def test_tokens_handed_to_on_token_come_in_order_before_the_events_after_them(make_agent: Any) -> None:
    yielded = [e async for e in make_agent(Streamer(script=[TOOL_TURN, LIST_TURN])).stream(
        "t", "fly me to the moon", user_address=USER)]
    seen: list[Any] = []
    handed = make_agent(Streamer(script=[TOOL_TURN, LIST_TURN])).stream(
        "t", "fly me to the moon", user_address=USER, on_token=lambda text: seen.append(("token", text)))
    async for event in handed:
        seen.append(event["type"])
    # The same sequence, with each token handed over where the plain stream yields it.
    assert seen == [("token", e["text"]) if e["type"] == "token" else e["type"] for e in yielded]
    assert seen[-1] == "message_end"
    usage = [e async for e in make_agent(Streamer(script=[TOOL_TURN, LIST_TURN])).stream(
        "t", "again", user_address=USER, on_token=lambda text: None)][-1]["usage"]
    assert usage["output_tokens"] == 4 and usage["ttft_ms"] is not None


class CountingSaver(InMemorySaver):
    """LangGraph's in-memory saver, counting checkpoint reads."""

    reads = 0

    async def aget_tuple(self, config: Any) -> Any:
        self.reads += 1
        return await super().aget_tuple(config)


async def test_a_turn_started_from_a_snapshot_reads_the_checkpoint_once_more_not_twice(registry: Any) -> None:
    saver = CountingSaver()
    agent = Agent(model=Streamer(script=[[{"content": "one"}], [{"content": "two"}]]), registry=registry,
                  checkpointer=saver)
    try:
        snapshot = await agent.snapshot("t")
        assert snapshot.pending is None and saver.reads == 1
        events = [e async for e in agent.stream("t", "hi", user_address=USER, snapshot=snapshot)]
        assert saver.reads == 2, "LangGraph's own read only"
        assert [e["text"] for e in of_type(events, "token")] == ["one"]
        before = saver.reads
        events = [e async for e in agent.stream("t", "again", user_address=USER)]
        assert saver.reads == before + 2 and [e["text"] for e in of_type(events, "token")] == ["two"]
    finally:
        await agent.aclose()


async def test_an_answer_kept_as_text_adds_up_to_what_ainvoke_returns(make_agent: Any) -> None:
    agent = make_agent(Streamer(script=[META_TURN]))
    events = [e async for e in agent.stream("t", "count", user_address=USER)]
    assert "".join(t["text"] for t in of_type(events, "token")) == "One two three four five six seven eight"
    [stored] = [m for m in await agent.messages("t") if isinstance(m, AIMessage)]
    expected = await Streamer(script=[META_TURN]).ainvoke([HumanMessage("x")], stream=True)
    same_message(stored, expected)
    assert stored.id == expected.id == "provider-id-1"
    assert stored.response_metadata["model_provider"] == "streamerotherstreamer"  # as LangChain merges it


async def test_a_model_failure_after_tokens_ends_the_turn_with_a_model_error(make_agent: Any) -> None:
    model = Streamer(script=[[{"content": "Half "}, {"content": "an "}, RuntimeError("socket gone")]])
    agent = make_agent(model)
    events = [e async for e in agent.stream("t", "hi", user_address=USER)]
    assert [e["type"] for e in events] == ["message_start", "status", "token", "token", "error", "message_end"]
    assert events[4]["code"] == "model_error" and "socket gone" in events[4]["message"]
    assert events[-1]["finish_reason"] == "error" and events[-1]["usage"]["output_tokens"] == 2
    assert not [m for m in await agent.messages("t") if isinstance(m, AIMessage)]


@pytest.mark.parametrize("how", ["aclose", "cancel"])
async def test_an_aborted_stream_finalizes_the_run(make_agent: Any, how: str) -> None:
    endless = [{"content": f"w{i} "} for i in range(10_000)]
    model = Streamer(script=[endless, [{"content": "Hello again."}]], pause=0.001)
    agent = make_agent(model)
    before = asyncio.all_tasks()
    events = agent.stream("t", "talk", user_address=USER)
    seen: list[dict[str, Any]] = []
    four = asyncio.Event()

    async def consume() -> None:
        try:
            async for event in events:
                seen.append(event)
                if len(seen) == 5:
                    four.set()
                    if how == "aclose":
                        break
        except asyncio.CancelledError:
            pass
        await asyncio.wait_for(events.aclose(), 5)  # type: ignore[attr-defined]  # as the server's abort does

    task = asyncio.create_task(consume())
    if how == "cancel":
        await asyncio.wait_for(four.wait(), 5)
        task.cancel()  # while the consumer waits for the next token
    await task
    del seen[5:]
    assert [e["type"] for e in seen] == ["message_start", "status", "token", "token", "token"]
    assert asyncio.all_tasks() - before <= {asyncio.current_task()}, "no task outlives the turn"
    sent = model.sent
    await asyncio.sleep(0.05)
    assert model.sent == sent < 100, "the model stopped streaming"
    # Nothing of the aborted answer was checkpointed, and the chat is free for the next turn.
    assert not [m for m in await agent.messages("t") if isinstance(m, AIMessage)]
    events2 = [e async for e in agent.stream("t", "again", user_address=USER)]
    assert "".join(e["text"] for e in of_type(events2, "token")) == "Hello again."


async def test_the_graphs_own_messages_stream_still_sees_the_model(make_agent: Any) -> None:
    """The model runs with the node's config, so LangGraph's callbacks (and tracing) see it."""
    agent = make_agent(Streamer(script=[[{"content": "One "}, {"content": "two."}]]))
    config: Any = {"configurable": {"thread_id": "direct"}}
    state: Any = {"messages": [HumanMessage("count")], "user_address": USER, "chain_id": agent.default_chain_id}
    texts = [
        chunk.content
        async for chunk, meta in agent.graph.astream(state, config, stream_mode="messages")
        if meta["langgraph_node"] == "agent" and isinstance(chunk, AIMessageChunk) and chunk.content
    ]
    assert texts == ["One ", "two."]


async def test_fallback_only_before_the_first_token(make_agent: Any) -> None:
    async with (
        OpenAIStub(default=Fail(500)) as broken,
        OpenAIStub([Text("From the secondary."), Text("You hold 1.5 ETH.", cut_after=2)]) as good,
        OpenAIStub([]) as unused,
    ):
        def settings(primary: OpenAIStub, fallback: OpenAIStub) -> ModelSettings:
            return ModelSettings(
                provider="openai", base_url=primary.base_url, model="primary", max_retries=0,
                fallbacks=[ModelSettings(provider="openai", base_url=fallback.base_url, model="fb", max_retries=0)],
            )

        switched = make_agent(bind_tools=lambda schemas: bind_tools_with_fallbacks(settings(broken, good), schemas))
        events = [e async for e in switched.stream("t", "hi", user_address=USER)]
        assert "".join(e["text"] for e in of_type(events, "token")) == "From the secondary."
        assert events[-1]["finish_reason"] == "stop"

        dying = make_agent(bind_tools=lambda schemas: bind_tools_with_fallbacks(settings(good, unused), schemas))
        events = [e async for e in dying.stream("t", "balance?", user_address=USER)]
        assert [e["text"] for e in of_type(events, "token")] == ["You ", "hold "]
        [error] = of_type(events, "error")
        assert error["code"] == "model_error" and "middle of its answer" in error["message"]
        assert unused.requests == []


async def test_run_turn_reads_the_nodes_reports_as_reports_not_events() -> None:
    # The nodes tell run_turn "tools ran" and "paused at this approval" through the custom stream;
    # those are Reports (lunark.graph.turn.paused / tools_ran), never events with a "type".
    class State(TypedDict, total=False):
        n: int

    approval = {"approval_id": "apr_1", "expires_at": "2026-01-01T00:00:00Z", "action_requests": [],
                "review_configs": []}

    def node(state: State) -> State:
        write = get_stream_writer()
        write(tools_ran())
        write(paused(approval))
        return {"n": 1}

    graph = StateGraph(State)
    graph.add_node("node", node)
    graph.add_edge(START, "node")
    graph.add_edge("node", END)
    recorded: list[str] = []

    async def record(thread_id: str, pending: dict[str, Any]) -> None:
        recorded.append(pending["approval_id"])

    config: Any = {"configurable": {"thread_id": "t1"}}
    events = [e async for e in run_turn(graph.compile(), "t1", config, {"n": 0}, record_pending=record)]
    assert [(e["type"], e.get("text")) for e in events] == [
        ("message_start", None), ("status", "thinking…"), ("status", "thinking…"),
        ("pending_approval", None), ("status", "waiting for your approval"), ("message_end", None),
    ]
    assert recorded == ["apr_1"] and events[3] == {"type": "pending_approval", **approval}
    assert events[-1]["finish_reason"] == "awaiting_approval"
