"""The chat-model adapter: the offline planner as a LangChain chat model.

``OfflinePlanner`` binds tools like any chat model, answers ``invoke`` and ``stream`` with the
reply for the conversation's last message (tool calls from the English parser, or an answer from
the answer writer), streams it word by word (``split_tokens``) with usage figures, stops at an
output limit with ``finish_reason: "length"``, and goes on from there when asked with
``CONTINUE_PROMPT``.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any, Final
from uuid import uuid4

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    ToolCall,
    ToolMessage,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import tool_call, tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field

from lunark.models.planner.answers import _loads, compose_answer
from lunark.models.planner.english import SWITCH
from lunark.models.planner.parser import ToolLike, _help_text, _plan, _tool_specs

__all__ = ["CONTINUE_PROMPT", "OfflinePlanner", "split_tokens"]

MODEL_NAME: Final = "lunark-offline-planner"

CONTINUE_PROMPT: Final = (
    "Your last answer stopped at the output limit. Continue it exactly where it stopped: "
    "no repetition, no preamble."
)
"""The user turn that asks a model to go on with an answer it cut at its output limit (the
agent's ``continue_message`` sends it; the planner recognizes it)."""


def split_tokens(text: str) -> list[str]:
    """Word-ish streaming tokens, each with its leading whitespace: ``"".join`` gives ``text``."""
    return _TOKEN_RE.findall(text)


class OfflinePlanner(BaseChatModel):
    """A deterministic, offline chat model that plans Lunark's tool calls from plain English.

    Bind tools as with any chat model; the planner only proposes calls to
    bound tools (``get_balance``, ``transfer``, ``switch_network``) and writes
    the answer from the tool results::

        model = OfflinePlanner(delay=0.02).bind_tools(tools)
        async for chunk in model.astream([HumanMessage("what's my balance?")]):
            ...
    """

    delay: float = Field(default=0.0, ge=0.0)
    """Seconds to wait between streamed chunks, so demos feel like a real model."""
    max_output_tokens: int | None = Field(default=None, ge=1)
    """Most tokens of text in one reply, like a hosted model's output limit: a longer answer stops
    there with ``finish_reason: "length"``, and ``CONTINUE_PROMPT`` gets the rest."""

    @property
    def _llm_type(self) -> str:
        return MODEL_NAME

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": MODEL_NAME, "delay": self.delay, "max_output_tokens": self.max_output_tokens}

    def bind_tools(
        self,
        tools: Sequence[ToolLike],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        formatted = [convert_to_openai_tool(each) for each in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        text, calls, finish = _reply(messages, kwargs, self.max_output_tokens)
        message = AIMessage(
            content=text,
            tool_calls=calls,
            usage_metadata=_usage(messages, text),
            response_metadata=_response_metadata(finish),
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._generate(messages, stop, **kwargs)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for index, chunk in enumerate(_chunks(messages, kwargs, self.max_output_tokens)):
            if index and self.delay:
                time.sleep(self.delay)
            yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for index, chunk in enumerate(_chunks(messages, kwargs, self.max_output_tokens)):
            if index and self.delay:
                await asyncio.sleep(self.delay)
            yield chunk


# -- the model's turn -----------------------------------------------------------

_TOKEN_RE = re.compile(r"\s*\S+|\s+")


def _respond(
    messages: Sequence[BaseMessage], kwargs: Mapping[str, Any]
) -> tuple[str, list[ToolCall]]:
    specs = _tool_specs(kwargs.get("tools") or ())
    specs = _apply_tool_choice(specs, kwargs.get("tool_choice"))
    if not messages:
        return _help_text(specs), []
    last = messages[-1]
    if isinstance(last, HumanMessage):
        plan = _plan(last.text, specs)
        return plan.text, list(plan.calls)
    if isinstance(last, ToolMessage):
        calls, results = _last_turn(messages)
        again = _after_switch(calls, results)
        if again:
            return "", again
        return compose_answer(calls, results), []
    if isinstance(last, AIMessage):
        return "Anything else? " + _help_text(specs), []
    return _help_text(specs), []


def _after_switch(calls: Sequence[ToolCall], results: Sequence[ToolMessage]) -> list[ToolCall]:
    """Calls the agent deferred behind a network switch, asked again once the switch went through,
    so they are prepared on the new network (never on the one the user left)."""
    by_id = {r.tool_call_id: r for r in results}
    switched = any(
        call["name"] == SWITCH and (r := by_id.get(call.get("id") or "")) is not None and r.status != "error"
        and isinstance(data := _loads(r.text), dict) and "chain_id" in data and data.get("status") != "rejected"
        for call in calls
    )
    if not switched:
        return []
    deferred = [
        call for call in calls
        if (r := by_id.get(call.get("id") or "")) is not None
        and isinstance(data := _loads(r.text), dict) and data.get("status") == "deferred"
    ]
    return [tool_call(name=call["name"], args=dict(call["args"]), id="call_" + uuid4().hex[:24]) for call in deferred]


def _reply(
    messages: Sequence[BaseMessage], kwargs: Mapping[str, Any], limit: int | None
) -> tuple[str, list[ToolCall], str]:
    """The reply within the output limit: (text, tool calls, finish reason)."""
    if _continues(messages):
        # The answer that was cut is what the planner says for the history before it, again:
        # the rest of it follows what was already said.
        full, _ = _respond(messages[:-2], kwargs)
        said = messages[-2].text
        text = full[len(said):] if full.startswith(said) else ""
        calls: list[ToolCall] = []
    else:
        text, calls = _respond(messages, kwargs)
    tokens = split_tokens(text)
    if limit is not None and len(tokens) > limit:
        return "".join(tokens[:limit]), [], "length"  # calls after the limit are never written
    return text, calls, "tool_calls" if calls else "stop"


def _continues(messages: Sequence[BaseMessage]) -> bool:
    return (
        len(messages) >= 2
        and isinstance(messages[-1], HumanMessage)
        and messages[-1].text == CONTINUE_PROMPT
        and isinstance(messages[-2], AIMessage)
    )


def _last_turn(messages: Sequence[BaseMessage]) -> tuple[list[ToolCall], list[ToolMessage]]:
    """The tool calls of the last AI message that made some, and the results that followed it."""
    results: list[ToolMessage] = []
    for message in reversed(messages):
        if isinstance(message, ToolMessage):
            results.append(message)
        elif isinstance(message, AIMessage) and message.tool_calls:
            return list(message.tool_calls), results[::-1]
    return [], results[::-1]


def _chunks(
    messages: Sequence[BaseMessage], kwargs: Mapping[str, Any], limit: int | None = None
) -> Iterator[ChatGenerationChunk]:
    text, calls, finish = _reply(messages, kwargs, limit)
    for token in split_tokens(text):
        yield ChatGenerationChunk(message=AIMessageChunk(content=token))
    for index, call in enumerate(calls):
        piece = tool_call_chunk(
            name=call["name"], args=json.dumps(call["args"]), id=call["id"], index=index
        )
        yield ChatGenerationChunk(message=AIMessageChunk(content="", tool_call_chunks=[piece]))
    yield ChatGenerationChunk(
        message=AIMessageChunk(
            content="",
            usage_metadata=_usage(messages, text),
            response_metadata=_response_metadata(finish),
            chunk_position="last",
        )
    )


def _usage(messages: Sequence[BaseMessage], text: str) -> UsageMetadata:
    input_tokens = sum(len(split_tokens(message.text)) for message in messages)
    output_tokens = len(split_tokens(text))
    return UsageMetadata(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=input_tokens + output_tokens,
    )


def _response_metadata(finish: str) -> dict[str, Any]:
    return {"finish_reason": finish, "model_name": MODEL_NAME}


def _apply_tool_choice(specs: dict[str, dict[str, Any]], choice: Any) -> dict[str, dict[str, Any]]:
    if isinstance(choice, Mapping):
        choice = (choice.get("function") or {}).get("name") or choice.get("name")
    if choice == "none":
        return {}
    if isinstance(choice, str) and choice in specs:
        return {choice: specs[choice]}
    return specs  # "auto", "any", "required", None: every bound tool may be called
