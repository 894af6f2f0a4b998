"""A chat model that replies from a script: for tests of agents, tools and plugins.

    model = ScriptedChatModel(replies=[
        AIMessage(content="", tool_calls=[{"name": "transfer", "args": {"to": bob, "amount": "1"}, "id": "c1"}]),
        "Done.",                      # a plain string is a text reply
    ])

Each call to the model takes the next reply; text replies stream word by word. A reply may also be
a function of the messages the model is given, returning an ``AIMessage`` or a string: a model that
acts on what it read (e.g. copies an address out of a tool's result).
Running out of replies raises ``ModelError``, so a test cannot pass by accident.
``max_output_tokens`` cuts longer replies as a model at its output limit does
(``finish_reason: "length"``).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from pydantic import Field, PrivateAttr

from lunark.errors import ModelError

__all__ = ["ScriptedChatModel"]

_TOKEN = re.compile(r"\s*\S+|\s+")


class ScriptedChatModel(BaseChatModel):
    """Replies in order from ``replies``; records what it was asked in ``calls``."""

    replies: list[Any] = Field(default_factory=list)
    """Each an ``AIMessage``, a string (a text reply) or a function of the messages returning one.

    Typed ``Any``: LangChain's message validators crash on a str inside a union."""
    _index: int = PrivateAttr(default=0)
    calls: list[list[BaseMessage]] = Field(default_factory=list)
    """The messages of every call, for assertions."""
    token_delay: float = Field(default=0.0, ge=0)
    """Seconds between streamed chunks, for a stream that must still be running a moment later."""
    max_output_tokens: int | None = Field(default=None, ge=1)
    """Most tokens of text in one reply: a longer one stops there, without its tool calls, with
    ``response_metadata["finish_reason"] == "length"``, as a model at its output limit."""

    @property
    def _llm_type(self) -> str:
        return "lunark-scripted"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable[LanguageModelInput, AIMessage]:
        return self.bind(tools=list(tools), **kwargs)

    def _next(self, messages: list[BaseMessage]) -> AIMessage:
        self.calls.append(list(messages))
        if self._index >= len(self.replies):
            raise ModelError(f"The scripted model ran out of replies after {self._index}.")
        reply = self.replies[self._index]
        self._index += 1
        if callable(reply):
            reply = reply(list(messages))
        message = AIMessage(content=reply) if isinstance(reply, str) else reply
        return _cut(message, self.max_output_tokens)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._next(messages))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        yield from _chunks(self._next(messages))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for chunk in _chunks(self._next(messages)):
            # A model streamed over the network waits for each chunk; so does this one, for a moment,
            # or a long reply would run start to end without the event loop serving anyone else.
            await asyncio.sleep(self.token_delay)
            if run_manager is not None and isinstance(chunk.message.content, str) and chunk.message.content:
                await run_manager.on_llm_new_token(chunk.message.content, chunk=chunk)
            yield chunk


def _cut(message: AIMessage, limit: int | None) -> AIMessage:
    tokens = _TOKEN.findall(message.content) if isinstance(message.content, str) else []
    if limit is None or len(tokens) <= limit:
        return message
    metadata = {**message.response_metadata, "finish_reason": "length"}
    return AIMessage(content="".join(tokens[:limit]), id=message.id, response_metadata=metadata)


def _chunks(message: AIMessage) -> Iterator[ChatGenerationChunk]:
    text = message.content if isinstance(message.content, str) else ""
    for token in _TOKEN.findall(text):
        yield ChatGenerationChunk(message=AIMessageChunk(content=token))
    if message.tool_calls:
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                tool_call_chunks=[
                    tool_call_chunk(name=call["name"], args=json.dumps(call["args"]), id=call.get("id"), index=i)
                    for i, call in enumerate(message.tool_calls)
                ],
            )
        )
    if message.response_metadata:  # finish_reason, as a provider's last chunk carries it
        yield ChatGenerationChunk(
            message=AIMessageChunk(content="", response_metadata=dict(message.response_metadata))
        )
