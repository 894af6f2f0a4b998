"""Providers other than OpenAI through ``init_chat_model``: Claude against a local Messages API
endpoint, Ollama against a dead port, a provider whose package is missing.

Nothing is mocked: requests go through langchain-anthropic, the ``anthropic`` SDK and httpx to
``AnthropicStub`` on a free localhost port, which answers in Anthropic's streaming wire format
and records what it was sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from anthropic_stub import AnthropicStub, Fail, Text, ToolUse, Use
from langchain_anthropic import ChatAnthropic
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_openai import ChatOpenAI
from openai_stub import OpenAIStub
from openai_stub import Text as OpenAIText
from pydantic import BaseModel, Field

from lunark.chain.anvil import free_port
from lunark.errors import ConfigError, ModelError
from lunark.models.factory import ModelSettings, aclose_chat_model, bind_tools_with_fallbacks, build_chat_model


class Transfer(BaseModel):
    """Send native coins or tokens to an address."""

    to: str = Field(description="Recipient address.")
    amount: str = Field(description="Decimal amount.")


BOB = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


def claude(stub: AnthropicStub, **overrides: Any) -> ModelSettings:
    return ModelSettings(**({"provider": "anthropic:claude-stub", "base_url": stub.base_url, "max_retries": 0}
                            | overrides))


def sent_key(headers: Mapping[str, str]) -> str | None:
    """The API key a request carried: Anthropic's SDK sends it as x-api-key or as a bearer token."""
    bearer = headers.get("authorization", "")
    return headers.get("x-api-key") or (bearer.removeprefix("Bearer ") if bearer else None)


def test_provider_model_strings_and_each_providers_key() -> None:
    settings = ModelSettings(provider="anthropic:claude-sonnet-4-5")
    assert (settings.provider, settings.model, settings.key_variable) == (
        "anthropic", "claude-sonnet-4-5", "ANTHROPIC_API_KEY"
    )
    assert settings.url == "https://api.anthropic.com"
    ollama = ModelSettings(provider="ollama:llama3.1:8b")
    assert (ollama.provider, ollama.model, ollama.key_variable) == ("ollama", "llama3.1:8b", None)
    openai = ModelSettings(provider="openai:gpt-4o")
    assert (openai.provider, openai.model, openai.key_variable) == ("openai", "gpt-4o", "OPENAI_API_KEY")
    # The settings as they were before: untouched, their default model and key.
    assert ModelSettings(provider="openai").model == "gpt-4o-mini"
    assert ModelSettings(provider="openai").key_variable == "OPENAI_API_KEY"
    assert ModelSettings(provider="anthropic", model="claude-x", api_key_env="MY_KEY").key_variable == "MY_KEY"
    # A settings dump loads back as the same settings.
    assert ModelSettings.model_validate(settings.model_dump()) == settings


async def test_claude_streams_token_by_token_with_usage_and_the_named_key() -> None:
    async with AnthropicStub([Text("Gas pays for the work of the chain.", delay=0.01)]) as stub:
        model = build_chat_model(claude(stub, api_key_env="LUNARK_TEST_CLAUDE_KEY"),
                                 environ={"LUNARK_TEST_CLAUDE_KEY": "sk-ant-test"})
        assert isinstance(model, ChatAnthropic)
        chunks = [chunk async for chunk in model.astream([HumanMessage("what is gas?")])]
    texts = [chunk.text for chunk in chunks if chunk.text]
    assert texts == ["Gas ", "pays ", "for ", "the ", "work ", "of ", "the ", "chain."]
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    assert total.usage_metadata is not None and total.usage_metadata["output_tokens"] == 9
    assert total.response_metadata["stop_reason"] == "end_turn"
    [request] = stub.requests
    assert request.path == "/v1/messages" and request.body["stream"] is True
    assert request.body["model"] == "claude-stub"
    assert sent_key(request.headers) == "sk-ant-test"


async def test_claude_tool_use_becomes_a_tool_call_and_the_result_goes_back_as_tool_result() -> None:
    async with AnthropicStub([
        ToolUse([Use("Transfer", {"to": BOB, "amount": "0.5"}, id="toolu_pay")], content="Sending it.", fragments=5),
        Text("Sent."),
    ]) as stub:
        model = bind_tools_with_fallbacks(claude(stub, max_output_tokens=256), [Transfer], environ={})
        question = HumanMessage("pay bob half an ether")
        call = await model.ainvoke([question])
        assert isinstance(call, AIMessage)
        assert call.tool_calls == [{"name": "Transfer", "args": {"to": BOB, "amount": "0.5"}, "id": "toolu_pay",
                                    "type": "tool_call"}]
        answer = await model.ainvoke([question, call, ToolMessage('{"status": "confirmed"}', tool_call_id="toolu_pay")])
        assert answer.text == "Sent."
    first, second = (r.body for r in stub.requests)
    assert first["max_tokens"] == 256
    [tool] = first["tools"]
    assert tool["name"] == "Transfer" and set(tool["input_schema"]["properties"]) == {"to", "amount"}
    assistant, result = second["messages"][-2:]
    assert assistant["role"] == "assistant"
    assert [b for b in assistant["content"] if b["type"] == "tool_use"] == [
        {"type": "tool_use", "id": "toolu_pay", "name": "Transfer", "input": {"to": BOB, "amount": "0.5"}}
    ]
    assert result["role"] == "user"
    [block] = result["content"]
    assert block["type"] == "tool_result" and block["tool_use_id"] == "toolu_pay"
    assert "confirmed" in str(block["content"])


async def test_a_failing_claude_falls_back_and_when_all_fail_it_is_a_model_error() -> None:
    async with (
        AnthropicStub(default=Fail(529, "Overloaded", "overloaded_error")) as claude_stub,
        OpenAIStub([OpenAIText("From the fallback.")]) as openai_stub,
    ):
        fallback = {"provider": "openai", "model": "stub-gpt", "base_url": openai_stub.base_url, "max_retries": 0}
        model = bind_tools_with_fallbacks(claude(claude_stub, fallbacks=[fallback]), [Transfer], environ={})
        try:
            answer = await model.ainvoke([HumanMessage("hi")])
            assert answer.text == "From the fallback."
            with pytest.raises(ModelError) as caught:  # the fallback's script is used up: a 500
                await model.ainvoke([HumanMessage("hi")])
        finally:
            await aclose_chat_model(model)
    assert len(claude_stub.requests) == 2 and len(openai_stub.requests) == 2
    error = caught.value
    assert error.code == "model_error"
    assert error.message.startswith(f"Model 'claude-stub' at {claude_stub.base_url} failed with HTTP 529")
    assert "1 fallback model failed too" in error.message
    assert error.details["provider"] == "anthropic" and error.details["status_code"] == 529


async def test_a_lone_failing_claude_names_what_went_wrong() -> None:
    async with AnthropicStub([Fail(401, "invalid x-api-key", "authentication_error")]) as stub:
        model = bind_tools_with_fallbacks(claude(stub), [Transfer], environ={})
        with pytest.raises(ModelError) as caught:
            await model.ainvoke([HumanMessage("hi")])
    assert "refused the API key from ANTHROPIC_API_KEY (HTTP 401)" in caught.value.message


def test_claude_without_a_key_or_a_base_url_fails_at_build_time() -> None:
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        build_chat_model(ModelSettings(provider="anthropic:claude-sonnet-4-5"), environ={})
    model = build_chat_model(ModelSettings(provider="anthropic:claude-sonnet-4-5"),
                             environ={"ANTHROPIC_API_KEY": "sk-ant"})
    # The URL is the settings', never ANTHROPIC_BASE_URL from the process environment.
    assert isinstance(model, ChatAnthropic) and model.anthropic_api_url == "https://api.anthropic.com"


def test_a_provider_whose_package_is_missing_names_the_package_to_install() -> None:
    with pytest.raises(ConfigError) as caught:
        build_chat_model(ModelSettings(provider="mistralai:mistral-large-latest"), environ={})
    assert "pip install langchain-mistralai" in caught.value.message
    assert caught.value.details["package"] == "langchain-mistralai"


async def test_ollama_goes_to_the_configured_url_and_an_unreachable_one_is_a_model_error() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    model = bind_tools_with_fallbacks(
        ModelSettings(provider="ollama:llama3.1", base_url=dead, max_output_tokens=64), [Transfer], environ={}
    )
    with pytest.raises(ModelError) as caught:
        await model.ainvoke([HumanMessage("hi")])
    assert caught.value.message.startswith(f"Model 'llama3.1' at {dead} could not be reached")
    assert caught.value.details["provider"] == "ollama"


async def test_openai_string_form_builds_the_same_openai_client() -> None:
    model = build_chat_model(ModelSettings(provider="openai:gpt-4o"), environ={"OPENAI_API_KEY": "sk-test"})
    try:
        assert isinstance(model, ChatOpenAI) and model.model_name == "gpt-4o"
        assert model.openai_api_base == "https://api.openai.com/v1"
    finally:
        await aclose_chat_model(model)
