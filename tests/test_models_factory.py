"""The model factory against the real ChatOpenAI client and a scripted OpenAI-compatible server.

Nothing is mocked: requests go through langchain-openai, the openai SDK and
httpx to ``OpenAIStub`` on a free localhost port, which answers in OpenAI's
streaming wire format and records what it was sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import openai
import pytest
from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.runnables import Runnable, RunnableWithFallbacks
from langchain_openai import ChatOpenAI
from openai_stub import Call, Disconnect, Fail, OpenAIStub, Text, ToolCalls, Usage
from pydantic import BaseModel, Field, ValidationError

from lunark.chain.anvil import free_port
from lunark.errors import ConfigError, ModelError
from lunark.models.factory import (
    MODEL_FAILURES,
    ModelSettings,
    aclose_chat_model,
    bind_tools_with_fallbacks,
    build_chat_model,
)
from lunark.models.planner import OfflinePlanner

R = TypeVar("R", bound=Runnable[Any, Any])


class GetBalance(BaseModel):
    """Read the balance of an address in the native coin or an ERC-20 token."""

    address: str = Field(description="A 0x-prefixed account address.")
    token: str = Field(default="ETH", description="Token symbol, or ETH for the native coin.")


ADDRESS = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


@pytest.fixture
async def closing() -> AsyncIterator[Callable[[R], R]]:
    """Register a built model to have its HTTP connection pools closed after the test."""
    built: list[Runnable[Any, Any]] = []

    def track(model: R) -> R:
        built.append(model)
        return model

    yield track
    for model in built:
        await aclose_chat_model(model)


def openai_settings(stub: OpenAIStub | str, **overrides: Any) -> ModelSettings:
    base_url = stub if isinstance(stub, str) else stub.base_url
    fields: dict[str, Any] = {
        "provider": "openai",
        "model": "stub-model",
        "base_url": base_url,
        "max_retries": 0,
        "timeout": 10.0,
    }
    return ModelSettings(**(fields | overrides))


def dead_url() -> str:
    """A base URL where nothing listens: the connection is refused at once."""
    return f"http://127.0.0.1:{free_port()}/v1"


# -- streaming -----------------------------------------------------------------


async def test_streamed_text_arrives_in_several_chunks_and_joins(closing: Any) -> None:
    text = "You hold 1.5 ETH on Anvil."
    async with OpenAIStub([Text(text)]) as stub:
        model = closing(build_chat_model(openai_settings(stub, temperature=0.3)))
        assert isinstance(model, ChatOpenAI)
        chunks = [chunk async for chunk in model.astream("What do I hold?")]

    contents = [chunk.content for chunk in chunks if chunk.content]
    assert len(contents) == len(text.split(" ")) > 1
    assert "".join(str(c) for c in contents) == text
    (request,) = stub.requests
    assert request.path == "/v1/chat/completions"
    assert request.body["model"] == "stub-model"
    assert request.body["stream"] is True
    assert request.body["temperature"] == 0.3
    assert request.body["messages"] == [{"role": "user", "content": "What do I hold?"}]


async def test_usage_is_reported_when_streaming(closing: Any) -> None:
    usage = Usage(prompt_tokens=42, completion_tokens=5)
    async with OpenAIStub([Text("one two three", usage=usage), Text("again", usage=usage)]) as stub:
        model = closing(build_chat_model(openai_settings(stub)))
        total: AIMessageChunk | None = None
        async for chunk in model.astream("count"):
            assert isinstance(chunk, AIMessageChunk)
            total = chunk if total is None else total + chunk
        message = await model.ainvoke("count again")

    assert stub.requests[0].body["stream_options"] == {"include_usage": True}
    assert total is not None and total.usage_metadata is not None
    assert total.usage_metadata["input_tokens"] == 42
    assert total.usage_metadata["output_tokens"] == 5
    assert total.usage_metadata["total_tokens"] == 47
    assert isinstance(message, AIMessage) and message.content == "again"
    assert message.usage_metadata is not None and message.usage_metadata["total_tokens"] == 47


# -- tools ---------------------------------------------------------------------


async def test_streamed_tool_call_with_fragmented_arguments_assembles(closing: Any) -> None:
    args = {"address": ADDRESS, "token": "TKN"}
    reply = ToolCalls([Call("GetBalance", args, id="call_balance_1")], fragments=5)
    async with OpenAIStub([reply, reply]) as stub:
        model = closing(bind_tools_with_fallbacks(openai_settings(stub), [GetBalance]))
        chunks = [chunk async for chunk in model.astream("How many TKN does Bob have?")]
        message = await model.ainvoke("How many TKN does Bob have?")

    # The arguments really did arrive in pieces, and the client put them back together.
    fragments = [
        part["args"]
        for chunk in chunks
        if isinstance(chunk, AIMessageChunk)
        for part in chunk.tool_call_chunks
        if part["args"]
    ]
    assert len(fragments) == 5
    for msg in (message, _join(chunks)):
        assert isinstance(msg, AIMessage)
        assert msg.tool_calls == [{"name": "GetBalance", "args": args, "id": "call_balance_1", "type": "tool_call"}]
        assert msg.response_metadata.get("finish_reason") == "tool_calls"

    tools = stub.requests[0].body["tools"]
    assert [tool["function"]["name"] for tool in tools] == ["GetBalance"]
    function = tools[0]["function"]
    assert function["description"].startswith("Read the balance")
    assert function["parameters"]["required"] == ["address"]
    assert function["parameters"]["properties"]["address"]["description"] == ("A 0x-prefixed account address.")


async def test_bind_kwargs_reach_the_request(closing: Any) -> None:
    reply = ToolCalls([Call("GetBalance", {"address": ADDRESS})])
    async with OpenAIStub([reply]) as stub:
        model = closing(bind_tools_with_fallbacks(openai_settings(stub), [GetBalance], tool_choice="GetBalance"))
        message = await model.ainvoke("balance")

    assert isinstance(message, AIMessage) and message.tool_calls[0]["args"] == {"address": ADDRESS}
    assert stub.requests[0].body["tool_choice"] == {
        "type": "function",
        "function": {"name": "GetBalance"},
    }


# -- API key -------------------------------------------------------------------


async def test_api_key_is_read_from_the_named_variable_and_sent_as_bearer(closing: Any) -> None:
    environ = {"LUNARK_TEST_KEY": "sk-test-123", "OPENAI_API_KEY": "sk-not-this-one"}
    async with OpenAIStub([Text("hi")]) as stub:
        settings = openai_settings(stub, api_key_env="LUNARK_TEST_KEY")
        model = closing(build_chat_model(settings, environ=environ))
        await model.ainvoke("hello")

    assert stub.requests[0].headers["authorization"] == "Bearer sk-test-123"


async def test_local_server_without_a_key_gets_a_placeholder(closing: Any) -> None:
    async with OpenAIStub([Text("hi")]) as stub:
        model = closing(build_chat_model(openai_settings(stub), environ={}))
        await model.ainvoke("hello")

    assert stub.requests[0].headers["authorization"] == "Bearer not-needed"


def test_missing_key_without_base_url_is_a_config_error() -> None:
    settings = ModelSettings(provider="openai", api_key_env="LUNARK_MISSING_KEY")
    with pytest.raises(ConfigError, match="LUNARK_MISSING_KEY") as caught:
        build_chat_model(settings, environ={"OPENAI_API_KEY": "sk-elsewhere"})
    assert caught.value.details["variable"] == "LUNARK_MISSING_KEY"
    assert caught.value.code == "invalid_input"
    # An empty variable is as good as none.
    with pytest.raises(ConfigError, match="LUNARK_MISSING_KEY"):
        build_chat_model(settings, environ={"LUNARK_MISSING_KEY": ""})


def test_a_fallback_missing_its_key_fails_at_build_time() -> None:
    settings = ModelSettings(
        provider="offline",
        fallbacks=[ModelSettings(provider="openai", api_key_env="LUNARK_MISSING_KEY")],
    )
    with pytest.raises(ConfigError, match="LUNARK_MISSING_KEY"):
        bind_tools_with_fallbacks(settings, [GetBalance], environ={})
    with pytest.raises(ConfigError, match="LUNARK_MISSING_KEY"):
        build_chat_model(settings, environ={})


# -- fallbacks -----------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [pytest.param(Fail(500), id="http-500"), pytest.param(Disconnect(), id="disconnect")],
)
async def test_fallback_answers_when_the_primary_server_fails(closing: Any, failure: Fail | Disconnect) -> None:
    async with (
        OpenAIStub(default=failure) as broken,
        OpenAIStub([Text("From the secondary."), Text("Again from the secondary.")]) as good,
    ):
        settings = openai_settings(broken, model="primary", fallbacks=[openai_settings(good, model="secondary")])
        bound = closing(bind_tools_with_fallbacks(settings, [GetBalance]))
        message = await bound.ainvoke("hello")
        plain = closing(build_chat_model(settings))
        streamed = [chunk async for chunk in plain.astream("hello")]

    assert type(message) is AIMessage and message.content == "From the secondary."
    assert _join(streamed).content == "Again from the secondary."
    # max_retries=0: one attempt on the primary per call, then straight to the secondary.
    assert [r.body["model"] for r in broken.requests] == ["primary", "primary"]
    assert [r.body["model"] for r in good.requests] == ["secondary", "secondary"]
    assert "tools" in good.requests[0].body and "tools" not in good.requests[1].body


async def test_fallback_answers_when_the_primary_is_unreachable(closing: Any) -> None:
    async with OpenAIStub([Text("Still here.")]) as good:
        settings = openai_settings(dead_url(), fallbacks=[openai_settings(good)])
        model = closing(bind_tools_with_fallbacks(settings, [GetBalance]))
        chunks = [chunk async for chunk in model.astream("hello")]

    assert len([c for c in chunks if c.content]) == 2
    assert _join(chunks).content == "Still here."


async def test_retries_stay_on_the_primary_before_falling_back(closing: Any) -> None:
    async with (
        OpenAIStub([Fail(503), Text("Recovered.")]) as flaky,
        OpenAIStub([]) as unused,
    ):
        settings = openai_settings(flaky, max_retries=1, fallbacks=[openai_settings(unused)])
        model = closing(bind_tools_with_fallbacks(settings, [GetBalance]))
        message = await model.ainvoke("hello")

    assert message.content == "Recovered."
    assert len(flaky.requests) == 2
    assert flaky.requests[1].headers["x-stainless-retry-count"] == "1"
    assert unused.requests == []


async def test_when_every_model_fails_the_error_is_a_model_error(closing: Any) -> None:
    async with OpenAIStub(default=Fail(502, "bad gateway")) as broken:
        settings = openai_settings(broken, model="primary", fallbacks=[openai_settings(dead_url(), model="secondary")])
        model = closing(bind_tools_with_fallbacks(settings, [GetBalance]))
        with pytest.raises(ModelError) as invoked:
            await model.ainvoke("hello")
        with pytest.raises(ModelError) as streamed:
            async for _ in model.astream("hello"):
                pass

    for caught in (invoked, streamed):
        error = caught.value
        assert error.code == "model_error"
        # The primary's error is the cause; the message says the fallback failed too.
        assert isinstance(error.__cause__, openai.APIStatusError)
        assert error.__cause__.status_code == 502
        assert "'primary'" in error.message and "HTTP 502" in error.message
        assert "1 fallback model failed too" in error.message
        assert error.to_dict()["status_code"] == 502
        assert error.details["fallbacks_tried"] == 1


async def test_a_lone_unreachable_model_raises_model_error(closing: Any) -> None:
    url = dead_url()
    model = closing(bind_tools_with_fallbacks(openai_settings(url), [GetBalance]))
    with pytest.raises(ModelError, match="could not be reached") as caught:
        await model.ainvoke("hello")
    assert url in caught.value.message
    assert isinstance(caught.value.__cause__, openai.APIConnectionError)


async def test_an_unknown_model_is_reported_with_its_name(closing: Any) -> None:
    async with OpenAIStub(default=Fail(404, "model 'nope' not found", "not_found_error")) as stub:
        model = closing(bind_tools_with_fallbacks(openai_settings(stub, model="nope"), []))
        with pytest.raises(ModelError, match=r"'nope' .* does not exist"):
            await model.ainvoke("hello")


async def test_tool_call_from_a_fallback_is_a_plain_ai_message(closing: Any) -> None:
    args = {"address": ADDRESS, "token": "TUSD"}
    async with (
        OpenAIStub(default=Fail(500)) as broken,
        OpenAIStub([ToolCalls([Call("GetBalance", args, id="call_fb")], fragments=3)]) as good,
    ):
        settings = openai_settings(broken, fallbacks=[openai_settings(good)])
        model = closing(bind_tools_with_fallbacks(settings, [GetBalance]))
        message = await model.ainvoke("balance")

    # What the graph stores in its state: a whole AIMessage, not an accumulated chunk.
    assert type(message) is AIMessage
    assert message.tool_calls == [{"name": "GetBalance", "args": args, "id": "call_fb", "type": "tool_call"}]
    assert message.usage_metadata is not None and message.usage_metadata["total_tokens"] == 18


class TokenRecorder(AsyncCallbackHandler):
    """Collects the tokens a chat model reports to callbacks, as LangGraph's stream does."""

    def __init__(self) -> None:
        self.tokens: list[str] = []

    async def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        if token:
            self.tokens.append(token)


async def test_no_fallback_once_the_answer_has_started_streaming(closing: Any) -> None:
    """A primary that dies mid-answer is a ModelError: a fallback's answer would be spliced
    onto the tokens the user already saw."""
    async with (
        OpenAIStub([Text("You hold 1.5 ETH.", cut_after=2)] * 2) as dying,
        OpenAIStub([]) as unused,
    ):
        settings = openai_settings(dying, fallbacks=[openai_settings(unused)])
        model = closing(bind_tools_with_fallbacks(settings, [GetBalance]))
        recorder = TokenRecorder()
        with pytest.raises(ModelError, match="middle of its answer") as invoked:
            await model.ainvoke("balance?", {"callbacks": [recorder]})
        streamed: list[Any] = []
        with pytest.raises(ModelError, match="middle of its answer"):
            async for chunk in model.astream("balance?"):
                streamed.append(chunk.content)

    assert recorder.tokens == ["You ", "hold "]
    assert [c for c in streamed if c] == ["You ", "hold "]
    assert unused.requests == []
    assert invoked.value.details["fallbacks_tried"] == 0
    assert isinstance(invoked.value.__cause__, openai.APIConnectionError)


def test_model_failures_cover_the_sdk_and_langchain_errors() -> None:
    from langchain_core.exceptions import ModelError as LangChainModelError

    for error in (
        openai.APIConnectionError,
        openai.APITimeoutError,
        openai.InternalServerError,
        openai.RateLimitError,
        LangChainModelError,
        ModelError,
        TimeoutError,
    ):
        assert issubclass(error, MODEL_FAILURES), error
    for bug in (TypeError, KeyError, ValidationError, ValueError):
        assert not issubclass(bug, MODEL_FAILURES), bug


# -- offline -------------------------------------------------------------------


def test_offline_provider_builds_the_planner() -> None:
    model = build_chat_model(ModelSettings(delay=0.01), environ={})
    assert isinstance(model, OfflinePlanner)
    assert model.delay == 0.01


async def test_offline_planner_is_a_fallback_for_an_unreachable_server(closing: Any) -> None:
    settings = openai_settings(dead_url(), fallbacks=[ModelSettings(provider="offline")])
    model = closing(bind_tools_with_fallbacks(settings, [GetBalance], environ={}))
    message = await model.ainvoke("hello")
    assert isinstance(message, AIMessage)
    assert message.content or message.tool_calls


# -- settings and lifecycle ----------------------------------------------------


def test_settings_reject_unknown_fields_nested_fallbacks_and_bad_urls() -> None:
    with pytest.raises(ValidationError, match="api_key"):
        ModelSettings.model_validate({"provider": "openai", "api_key": "sk-in-config"})
    with pytest.raises(ValidationError, match="fallbacks of its own"):
        ModelSettings(fallbacks=[ModelSettings(fallbacks=[ModelSettings()])])
    with pytest.raises(ValidationError, match="http"):
        ModelSettings(provider="openai", base_url="localhost:11434/v1")
    with pytest.raises(ValidationError):
        ModelSettings.model_validate({"provider": "anthropic"})
    settings = ModelSettings.model_validate(
        {"provider": "openai", "fallbacks": [{"provider": "offline", "delay": 0.1}]}
    )
    assert settings.fallbacks[0].delay == 0.1
    assert all(field.description for field in ModelSettings.model_fields.values())


async def test_aclose_closes_every_models_http_clients() -> None:
    settings = openai_settings(dead_url(), fallbacks=[openai_settings(dead_url())])
    bound = bind_tools_with_fallbacks(settings, [GetBalance])
    built = build_chat_model(settings)
    for runnable in (bound, built):
        models = _chat_openais(runnable)
        assert len(models) == 2
        assert len({id(m.root_async_client) for m in models}) == 2  # not shared
        await aclose_chat_model(runnable)
        await aclose_chat_model(runnable)  # twice is fine
        for m in models:
            assert m.root_async_client.is_closed()
            assert m.root_client.is_closed()


# -- helpers -------------------------------------------------------------------


def _join(chunks: list[BaseMessage]) -> AIMessage:
    total: Any = None
    for chunk in chunks:
        total = chunk if total is None else total + chunk
    assert isinstance(total, AIMessageChunk)
    return AIMessage(
        content=total.content,
        tool_calls=total.tool_calls,
        response_metadata=total.response_metadata,
        usage_metadata=total.usage_metadata,
    )


def _chat_openais(runnable: Any) -> list[ChatOpenAI]:
    found: list[ChatOpenAI] = []
    stack = [runnable]
    while stack:
        each = stack.pop()
        if isinstance(each, ChatOpenAI):
            found.append(each)
        elif isinstance(each, RunnableWithFallbacks):
            stack.extend(each.runnables)
        else:  # a RunnableBinding (bind_tools), or the factory's ModelError translator
            stack.append(each.bound)
    return found
