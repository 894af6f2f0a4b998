"""The chat's messages as the graph keeps them: tool results, a model's stream added up to one
message, a cut answer joined with its continuation, and the calls a stopped turn left unanswered.

Errors become tool messages in exactly one place, ``tool_error``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ToolMessage,
    message_chunk_to_message,
)
from langchain_core.messages.ai import add_ai_message_chunks

from lunark.errors import LunarkError, ModelError
from lunark.store import SettlementRecord
from lunark.tools.recipient import Provenance, addresses_in
from lunark.tools.transfer import settlement_result

__all__ = [
    "DIRECT",
    "at_output_limit",
    "called_directly",
    "continued_answer",
    "has_unanswered",
    "keep_metadata",
    "message_of",
    "only_text",
    "provenance_of",
    "succeeded",
    "text_of",
    "tool_error",
    "tool_ok",
    "unanswered_calls",
]


_LENGTH_REASONS = frozenset({"length", "max_tokens"})
"""Providers' words for "stopped at the output limit": OpenAI-compatible ``finish_reason``
"length", Anthropic's ``stop_reason`` "max_tokens", Ollama's ``done_reason`` "length"."""


def at_output_limit(message: BaseMessage) -> bool:
    metadata = message.response_metadata or {}
    reasons = {metadata.get("finish_reason"), metadata.get("stop_reason"), metadata.get("done_reason")}
    return bool(reasons & _LENGTH_REASONS)


def continued_answer(cut: BaseMessage, more: BaseMessage) -> AIMessage:
    """The cut answer with the continuation appended, under the cut one's id (``add_messages``
    replaces it): the history holds one answer, as the user sees one message."""
    def text(message: BaseMessage) -> str:
        return message.content if isinstance(message.content, str) else text_of(message.content)

    return AIMessage(
        content=text(cut) + text(more),
        id=cut.id,
        tool_calls=more.tool_calls if isinstance(more, AIMessage) else [],
        response_metadata=dict(more.response_metadata),
    )


def tool_error(call_id: str, name: str, exc: LunarkError) -> ToolMessage:
    """The one place an error becomes what the model reads."""
    return ToolMessage(
        content=json.dumps({"status": "error", "error": exc.to_dict()}, default=str),
        tool_call_id=call_id,
        name=name,
        status="error",
    )


def tool_ok(call_id: str, name: str, result: Any, *, ok: bool = True) -> ToolMessage:
    return ToolMessage(
        content=json.dumps(result, default=str),
        tool_call_id=call_id,
        name=name,
        status="success" if ok else "error",
    )


def succeeded(settlement: SettlementRecord | None) -> bool:
    """Whether a call that ran succeeded: a call that settled a transaction did only when its
    settlement ended ``confirmed``; any other final state (refused before anything was signed,
    mismatch, failed, dropped, replaced, expired) is not success, hash or no hash. A call with no
    settlement succeeded by returning (a tool's failure is a ``LunarkError``)."""
    return settlement is None or settlement.state == "confirmed"


DIRECT = "lunark_called_by_user"
"""Marks (in ``response_metadata``, which no provider is sent) a tool call the user's own client
made (``Agent.call_tool``): its turn ends after the call instead of asking the model again."""


def provenance_of(messages: Sequence[BaseMessage], also_typed: Iterable[str] = ()) -> Provenance:
    """Where the chat's addresses came from. A call the user's own client made (``DIRECT``) carries
    only addresses the user gave, like ``also_typed`` (those typed into an edit)."""
    direct = [
        address
        for message in messages
        if isinstance(message, AIMessage) and message.response_metadata.get(DIRECT)
        for call in message.tool_calls
        for address in addresses_in(call["args"])
    ]
    return Provenance.of(messages, also_typed=[*direct, *also_typed])


def called_directly(messages: Sequence[Any]) -> bool:
    for message in reversed(messages):
        if isinstance(message, AIMessage):
            return bool(message.response_metadata.get(DIRECT))
    return False


def message_of(chunks: Sequence[Any]) -> BaseMessage:
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


def only_text(chunk: AIMessageChunk, first: Any, kept: Mapping[str, Any]) -> bool:
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


def keep_metadata(kept: dict[str, Any], chunk: AIMessageChunk) -> None:
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


def text_of(content: Any) -> str:
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def has_unanswered(messages: Sequence[Any]) -> bool:
    answered = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}
    return any(
        call["id"] and call["id"] not in answered
        for m in messages if isinstance(m, AIMessage) for call in m.tool_calls
    )


def unanswered_calls(messages: Sequence[Any], settled: Mapping[str, SettlementRecord]) -> list[ToolMessage]:
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
