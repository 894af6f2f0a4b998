"""A scripted Anthropic Messages API endpoint on localhost, for tests of the real Claude client.

No model service is reachable from the test machine, so the Anthropic path is exercised with
the real ``ChatAnthropic`` (langchain-anthropic, the ``anthropic`` SDK and its httpx
transport) against this server, which speaks the Messages API's wire format:

- ``POST /v1/messages`` with ``"stream": true`` answers Server-Sent Events, each with its
  ``event:`` name: ``message_start`` (the input usage), per content block
  ``content_block_start``, ``content_block_delta`` (``text_delta`` for text,
  ``input_json_delta`` for a ``tool_use`` block's input, its JSON split in fragments) and
  ``content_block_stop``, then ``message_delta`` with the ``stop_reason`` and the output usage,
  and ``message_stop``. A ``ping`` goes out after ``message_start``, as Anthropic's does.
- Without ``stream`` it answers one ``message`` object.
- An error is Anthropic's error shape (``{"type": "error", "error": {...}}``) with its HTTP status.

It checks a request as the real API does where a client could get it wrong: ``max_tokens`` is
required, the roles alternate from ``user``, text blocks are non-empty, and every
``tool_result`` answers a ``tool_use`` of the assistant message just before it; a request that
breaks one gets a 400 ``invalid_request_error``.

Each request takes the next reply from a scripted queue, and is recorded, so a test can assert
what the client sent (the tool definitions, the ``tool_result`` blocks, the ``x-api-key``)::

    async with AnthropicStub([Text("Hello there")]) as stub:
        model = ChatAnthropic(base_url=stub.base_url, api_key="k", model="claude-stub")
        ...
        assert stub.requests[0].body["model"] == "claude-stub"
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from aiohttp import web
from openai_stub import _split

__all__ = ["AnthropicStub", "Disconnect", "Fail", "RecordedRequest", "Reply", "Text", "ToolUse", "Usage", "Use"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """Token counts the stub reports for a reply."""

    input_tokens: int = 25
    output_tokens: int = 9


@dataclass(frozen=True, slots=True)
class Text:
    """An assistant text reply, streamed as one ``text_delta`` per element of ``chunks`` (by
    default split after each space). ``stop_reason="max_tokens"`` is a reply cut at the limit."""

    content: str
    chunks: Sequence[str] | None = None
    delay: float = 0.0
    """Seconds to wait before each streamed delta."""
    stop_reason: str = "end_turn"
    usage: Usage = field(default_factory=Usage)

    def deltas(self) -> list[str]:
        if self.chunks is not None:
            if "".join(self.chunks) != self.content:
                raise ValueError("chunks must join to content")
            return list(self.chunks)
        parts = [word + " " for word in self.content.split(" ")]
        parts[-1] = parts[-1][:-1]
        return [p for p in parts if p]


@dataclass(frozen=True, slots=True)
class Use:
    """One ``tool_use`` block of a ``ToolUse`` reply."""

    name: str
    input: Mapping[str, Any]
    id: str | None = None
    """The ``tool_use`` id; a unique ``toolu_...`` one when None."""


@dataclass(frozen=True, slots=True)
class ToolUse:
    """An assistant reply that calls tools (``stop_reason: "tool_use"``): an optional text block
    first, then one ``tool_use`` block per call, its input JSON in ``fragments`` deltas."""

    uses: Sequence[Use]
    content: str | None = None
    fragments: int = 4
    usage: Usage = field(default_factory=Usage)


@dataclass(frozen=True, slots=True)
class Fail:
    """Answer with an HTTP error in Anthropic's error shape (529: overloaded)."""

    status: int = 529
    message: str = "Overloaded"
    type: str = "overloaded_error"


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Close the connection without answering."""


Reply: TypeAlias = Text | ToolUse | Fail | Disconnect


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    path: str
    headers: Mapping[str, str]
    """Header names lower-cased."""
    body: Mapping[str, Any]
    reply: Reply


class AnthropicStub:
    """An Anthropic Messages API server on ``127.0.0.1:<free port>``; ``replies`` are consumed
    one per request, then ``default`` (a 500 saying the script ran out)."""

    def __init__(self, replies: Iterable[Reply] = (), *, default: Reply | None = None) -> None:
        self._replies: deque[Reply] = deque(replies)
        self._default: Reply = default or Fail(500, "AnthropicStub: no scripted reply left", "api_error")
        self.requests: list[RecordedRequest] = []
        self.finished = 0
        """Streamed replies sent to their end (``message_stop`` written)."""
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._ids = itertools.count(1)

    async def __aenter__(self) -> AnthropicStub:
        app = web.Application()
        app.router.add_post("/v1/messages", self._messages)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        """The ``base_url`` for an Anthropic client (the SDK appends ``/v1/messages``)."""
        if self._port is None:
            raise RuntimeError("AnthropicStub is not running; use `async with AnthropicStub(...)`")
        return f"http://127.0.0.1:{self._port}"

    def add(self, *replies: Reply) -> None:
        self._replies.extend(replies)

    # -- the endpoint ----------------------------------------------------

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        problem = _invalid(body)
        reply: Reply = Fail(400, problem, "invalid_request_error") if problem else (
            self._replies.popleft() if self._replies else self._default
        )
        self.requests.append(RecordedRequest(
            path=request.path, headers={k.lower(): v for k, v in request.headers.items()}, body=body, reply=reply,
        ))
        if isinstance(reply, Disconnect):
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        if isinstance(reply, Fail):
            error = {"type": "error", "error": {"type": reply.type, "message": reply.message}}
            return web.json_response(error, status=reply.status, headers={"request-id": "req_stub"})
        message_id = f"msg_stub{next(self._ids)}"
        blocks = self._blocks(reply)
        if body.get("stream"):
            return await self._stream(request, reply, blocks, str(body["model"]), message_id)
        stop = reply.stop_reason if isinstance(reply, Text) else "tool_use"
        return web.json_response({
            "id": message_id, "type": "message", "role": "assistant", "model": body["model"],
            "content": [{k: v for k, v in b.items() if k != "deltas"} for b in blocks],
            "stop_reason": stop, "stop_sequence": None,
            "usage": {"input_tokens": reply.usage.input_tokens, "output_tokens": reply.usage.output_tokens},
        })

    def _blocks(self, reply: Text | ToolUse) -> list[dict[str, Any]]:
        """The reply's content blocks, each with the ``deltas`` it streams as."""
        if isinstance(reply, Text):
            return [{"type": "text", "text": reply.content, "deltas": reply.deltas()}]
        blocks: list[dict[str, Any]] = []
        if reply.content:
            blocks.append({"type": "text", "text": reply.content, "deltas": Text(reply.content).deltas()})
        for use in reply.uses:
            arguments = json.dumps(dict(use.input))
            blocks.append({
                "type": "tool_use", "id": use.id or f"toolu_stub{next(self._ids)}", "name": use.name,
                "input": dict(use.input), "deltas": _split(arguments, reply.fragments),
            })
        return blocks

    async def _stream(
        self, request: web.Request, reply: Text | ToolUse, blocks: Sequence[dict[str, Any]], model: str,
        message_id: str,
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)

        async def send(event: str, data: dict[str, Any]) -> None:
            await response.write(f"event: {event}\ndata: {json.dumps({'type': event, **data})}\n\n".encode())

        await send("message_start", {"message": {
            "id": message_id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": reply.usage.input_tokens, "output_tokens": 1},
        }})
        await send("ping", {})
        delay = reply.delay if isinstance(reply, Text) else 0.0
        for index, block in enumerate(blocks):
            if block["type"] == "text":
                await send("content_block_start", {"index": index, "content_block": {"type": "text", "text": ""}})
                for piece in block["deltas"]:
                    if delay:
                        await asyncio.sleep(delay)
                    await send("content_block_delta", {"index": index, "delta": {"type": "text_delta", "text": piece}})
            else:
                start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
                await send("content_block_start", {"index": index, "content_block": start})
                for piece in ["", *block["deltas"]]:  # Anthropic's first input delta is empty
                    delta = {"type": "input_json_delta", "partial_json": piece}
                    await send("content_block_delta", {"index": index, "delta": delta})
            await send("content_block_stop", {"index": index})
        stop = reply.stop_reason if isinstance(reply, Text) else "tool_use"
        await send("message_delta", {
            "delta": {"stop_reason": stop, "stop_sequence": None},
            # The final counts, input included, as the API sends them now.
            "usage": {"input_tokens": reply.usage.input_tokens, "output_tokens": reply.usage.output_tokens},
        })
        await send("message_stop", {})
        await response.write_eof()
        self.finished += 1
        return response


def _invalid(body: Mapping[str, Any]) -> str | None:
    """What the real API would refuse in ``body`` (400 invalid_request_error), or None."""
    if not isinstance(body.get("max_tokens"), int):
        return "max_tokens: Field required"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    previous: Mapping[str, Any] | None = None
    for at, message in enumerate(messages):
        role = message.get("role")
        if role not in ("user", "assistant"):
            return f"messages.{at}.role: Input should be 'user' or 'assistant'"
        if at == 0 and role != "user":
            return "messages: first message must use the \"user\" role"
        if previous is not None and previous["role"] == role:
            return f"messages.{at}: roles must alternate between \"user\" and \"assistant\""
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(blocks, list) or not blocks:
            return f"messages.{at}: content must be non-empty"
        earlier = (previous or {}).get("content", [])
        uses = {b["id"] for b in earlier if isinstance(b, dict) and b.get("type") == "tool_use"}
        for block in blocks:
            if block.get("type") == "text" and not block.get("text"):
                return f"messages.{at}: text content blocks must be non-empty"
            if block.get("type") == "tool_result" and block.get("tool_use_id") not in uses:
                return (
                    f"messages.{at}: unexpected `tool_use_id` found in `tool_result` blocks: "
                    f"{block.get('tool_use_id')}. Each `tool_result` block must have a corresponding "
                    "`tool_use` block in the previous message."
                )
        previous = message
    return None
