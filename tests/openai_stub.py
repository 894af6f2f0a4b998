"""A scripted OpenAI-compatible chat endpoint on localhost, for tests of the real client.

No model service is reachable from the test machine, so the OpenAI path is
exercised with the real ``ChatOpenAI`` (and the real ``openai`` SDK and its
httpx transport) against this server, which speaks OpenAI's wire format:

- ``POST /v1/chat/completions`` with ``"stream": true`` answers Server-Sent
  Events of ``chat.completion.chunk`` objects, ending with ``data: [DONE]``;
  with ``"stream_options": {"include_usage": true}`` a final chunk with empty
  ``choices`` carries the usage, as OpenAI sends it.
- Without ``stream`` it answers one ``chat.completion`` object.

Each request takes the next reply from a scripted queue (``default`` answers
once the queue is empty). Every request is recorded, so a test can assert what
the client sent: the model name, the tool definitions, the ``Authorization``
header.

```python
replies = [Text("Hello there"), ToolCalls([Call("get_balance", {"token": "ETH"})])]
async with OpenAIStub(replies) as stub:
    model = ChatOpenAI(base_url=stub.base_url, api_key="k", model="m")
    ...
    assert stub.requests[0].body["model"] == "m"
```
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from aiohttp import web

__all__ = [
    "Call",
    "Disconnect",
    "Fail",
    "OpenAIStub",
    "RecordedRequest",
    "Reply",
    "Text",
    "ToolCalls",
    "Usage",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """Token counts the stub reports for a reply."""

    prompt_tokens: int = 11
    completion_tokens: int = 7

    def to_wire(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


@dataclass(frozen=True, slots=True)
class Text:
    """An assistant text reply.

    Streamed as one delta per element of ``chunks``; by default the text is
    split after each space, so ``"Hello there"`` arrives as ``"Hello "``,
    ``"there"``. The chunks always join back to ``content``.
    """

    content: str
    chunks: Sequence[str] | None = None
    """Explicit split of ``content`` into streamed deltas."""
    delay: float = 0.0
    """Seconds to wait before each streamed chunk."""
    usage: Usage = field(default_factory=Usage)
    cut_after: int | None = None
    """Streaming only: drop the connection after this many content chunks (a server
    that dies mid-answer)."""
    finish_reason: str = "stop"
    """Why the reply ended: "length" is a model that stopped at its output limit."""

    def deltas(self) -> list[str]:
        if self.chunks is not None:
            if "".join(self.chunks) != self.content:
                raise ValueError("chunks must join to content")
            return list(self.chunks)
        parts = [word + " " for word in self.content.split(" ")]
        parts[-1] = parts[-1][:-1]
        return [p for p in parts if p]


@dataclass(frozen=True, slots=True)
class Call:
    """One function call inside a ``ToolCalls`` reply."""

    name: str
    arguments: Mapping[str, Any] | str
    """The arguments object, or the exact JSON text to send (to test malformed JSON)."""
    id: str | None = None
    """The ``tool_call_id``; a unique ``call_...`` id when None."""

    def arguments_json(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments)


@dataclass(frozen=True, slots=True)
class ToolCalls:
    """An assistant reply made of tool calls, streamed the way OpenAI streams them.

    Per call: a first delta with ``index``, ``id``, ``type`` and
    ``function.name`` and empty ``arguments``, then the arguments JSON split
    into ``fragments`` pieces across as many chunks; the last chunk has
    ``finish_reason: "tool_calls"``.
    """

    calls: Sequence[Call]
    content: str | None = None
    """Text streamed before the calls (some models think aloud first)."""
    fragments: int = 4
    delay: float = 0.0
    usage: Usage = field(default_factory=Usage)


@dataclass(frozen=True, slots=True)
class Fail:
    """Answer with an HTTP error in OpenAI's error shape."""

    status: int = 500
    message: str = "The server had an error while processing your request."
    type: str = "server_error"


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Close the connection without answering (a crashed or unreachable server)."""


Reply: TypeAlias = Text | ToolCalls | Fail | Disconnect


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the stub received."""

    path: str
    headers: Mapping[str, str]
    """Header names lower-cased."""
    body: Mapping[str, Any]
    reply: Reply


class OpenAIStub:
    """An OpenAI-compatible chat-completions server on ``127.0.0.1:<free port>``.

    ``replies`` are consumed one per request, in order; once they are used up
    every request gets ``default`` (by default a 500 saying the script ran out,
    so a test that makes an unexpected extra call fails loudly).
    ``OpenAIStub(default=Fail(500))`` is a server that always fails.
    """

    def __init__(
        self,
        replies: Iterable[Reply] = (),
        *,
        default: Reply | None = None,
    ) -> None:
        self._replies: deque[Reply] = deque(replies)
        self._default: Reply = default or Fail(500, "OpenAIStub: no scripted reply left", "stub_error")
        self.requests: list[RecordedRequest] = []
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._ids = itertools.count(1)

    # -- lifecycle -------------------------------------------------------

    async def __aenter__(self) -> OpenAIStub:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        # Connections held open by a client's keep-alive pool must not delay shutdown.
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        # Port 0: the OS picks a free port, read back from the bound socket.
        self._port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("OpenAIStub is not running; use `async with OpenAIStub(...)`")
        return self._port

    @property
    def base_url(self) -> str:
        """The ``base_url`` for an OpenAI client: ``http://127.0.0.1:<port>/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def add(self, *replies: Reply) -> None:
        """Append replies to the script."""
        self._replies.extend(replies)

    @property
    def pending(self) -> int:
        """Scripted replies not yet consumed."""
        return len(self._replies)

    # -- the endpoint ----------------------------------------------------

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        reply = self._replies.popleft() if self._replies else self._default
        self.requests.append(
            RecordedRequest(
                path=request.path,
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body,
                reply=reply,
            )
        )
        if isinstance(reply, Disconnect):
            assert request.transport is not None
            request.transport.close()
            # Nothing can be answered on a closed transport; aiohttp drops the handler's result.
            return web.Response()
        if isinstance(reply, Fail):
            error = {"message": reply.message, "type": reply.type, "param": None, "code": None}
            return web.json_response({"error": error}, status=reply.status)
        model = str(body.get("model", "stub-model"))
        completion_id = f"chatcmpl-stub{next(self._ids)}"
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return await self._stream(request, reply, model, completion_id, include_usage)
        return web.json_response(self._completion(reply, model, completion_id))

    def _completion(self, reply: Text | ToolCalls, model: str, completion_id: str) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "refusal": None}
        if isinstance(reply, Text):
            message["content"] = reply.content
            finish_reason = reply.finish_reason
        else:
            message["content"] = reply.content
            message["tool_calls"] = [
                {
                    "id": self._call_id(call),
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments_json()},
                }
                for call in reply.calls
            ]
            finish_reason = "tool_calls"
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
            "usage": reply.usage.to_wire(),
        }

    async def _stream(
        self,
        request: web.Request,
        reply: Text | ToolCalls,
        model: str,
        completion_id: str,
        include_usage: bool,
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        created = int(time.time())

        async def send(
            delta: dict[str, Any] | None,
            finish_reason: str | None = None,
            usage: Usage | None = None,
        ) -> None:
            chunk: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": None,
                "choices": []
                if delta is None
                else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            }
            if include_usage:
                # OpenAI sends "usage": null on every chunk but the last when usage is asked for.
                chunk["usage"] = usage.to_wire() if usage is not None else None
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

        # The first delta carries the role, as OpenAI's does.
        if isinstance(reply, Text):
            await send({"role": "assistant", "content": "", "refusal": None})
            for sent, piece in enumerate(reply.deltas()):
                if sent == reply.cut_after:
                    assert request.transport is not None
                    request.transport.abort()
                    return response
                if reply.delay:
                    await asyncio.sleep(reply.delay)
                await send({"content": piece})
            await send({}, reply.finish_reason)
        else:
            await send({"role": "assistant", "content": reply.content or None, "refusal": None})
            for index, call in enumerate(reply.calls):
                if reply.delay:
                    await asyncio.sleep(reply.delay)
                head = {
                    "index": index,
                    "id": self._call_id(call),
                    "type": "function",
                    "function": {"name": call.name, "arguments": ""},
                }
                await send({"tool_calls": [head]})
                for fragment in _split(call.arguments_json(), reply.fragments):
                    if reply.delay:
                        await asyncio.sleep(reply.delay)
                    await send({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})
            await send({}, "tool_calls")
        if include_usage:
            await send(None, usage=reply.usage)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    def _call_id(self, call: Call) -> str:
        return call.id or f"call_stub{next(self._ids)}"


def _split(text: str, pieces: int) -> list[str]:
    """Split ``text`` into ``pieces`` non-empty runs (fewer if it is shorter)."""
    if not text:
        return []
    pieces = max(1, min(pieces, len(text)))
    size, extra = divmod(len(text), pieces)
    out: list[str] = []
    start = 0
    for i in range(pieces):
        end = start + size + (1 if i < extra else 0)
        out.append(text[start:end])
        start = end
    return out
