"""A model that fails, and what comes next: which exceptions mean "this model failed"
(``MODEL_FAILURES``, worth a fallback), the runnable that falls back only before the first chunk
and raises one ``ModelError`` when every model failed, and that error's actionable message."""

from __future__ import annotations

import importlib
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import httpx
from langchain_core.exceptions import ModelError as LangChainModelError
from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import BaseMessage, BaseMessageChunk, message_chunk_to_message
from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig
from langchain_core.runnables.fallbacks import RunnableWithFallbacks

from lunark.errors import ModelError
from lunark.models.settings import ModelSettings

__all__ = ["RaisesModelError", "model_failures", "walk"]  # and MODEL_FAILURES, computed when asked for

_SDK_FAILURES = {"openai": ("APIError",), "anthropic": ("APIError",), "ollama": ("ResponseError",)}


def _sdk(module: str, *names: str, load: bool = False) -> tuple[type[Exception], ...]:
    """Exception classes of a provider's SDK. Without ``load``, only of one already imported: an SDK
    nobody imported raised nothing, and importing it to catch nothing would cost every process
    (a relay, a worker on the offline planner) its ~1 s and ~50 MB."""
    found = sys.modules.get(module)
    if found is None and load:
        try:
            found = importlib.import_module(module)
        except ImportError:
            return ()  # installed only with its provider's extra
    return () if found is None else tuple(getattr(found, name) for name in names)


def model_failures(*, load: bool = False) -> tuple[type[Exception], ...]:
    """Exceptions that mean "this model failed", so the next fallback is worth a try: of the
    providers' SDKs, those imported so far (every model built has imported its own), or with
    ``load`` those installed. ``MODEL_FAILURES`` is the latter.

    - ``openai.APIError`` and ``anthropic.APIError`` (the two SDKs share one
      design): the server could not be reached (``APIConnectionError``), did not
      answer in time (``APITimeoutError``), answered an HTTP error
      (``APIStatusError``: 5xx, 429, and also 400/401/404, since a fallback on
      another server, model or key may well accept what this one refused), or
      sent an error or malformed data mid-stream (Anthropic's ``error`` event).
    - ``ollama.ResponseError``: Ollama's HTTP errors (an unknown model, say).
    - ``httpx.HTTPError``: transport failures of the integrations that use httpx
      directly (Ollama's client does).
    - LangChain's provider-neutral ``ModelError`` family, which other
      integrations raise (langchain-openai's own subclasses are also
      ``openai.APIError``).
    - Lunark's ``ModelError``: the offline planner's way to fail.
    - ``TimeoutError``: langchain-openai's ``StreamChunkTimeoutError`` (a stream
      that stalled between chunks) is one.

    Deliberately not ``Exception``: a ``TypeError`` from our own code, a pydantic
    ``ValidationError`` of a tool schema or LangGraph's ``GraphInterrupt`` would
    fail the same way on every model, and retrying them would only hide the bug
    behind a slower, confusing answer.
    """
    sdks = tuple(cls for module, names in _SDK_FAILURES.items() for cls in _sdk(module, *names, load=load))
    return (*sdks, httpx.HTTPError, LangChainModelError, ModelError, TimeoutError)


def __getattr__(name: str) -> Any:
    if name == "MODEL_FAILURES":  # computed when asked for: it imports every installed provider's SDK
        return model_failures(load=True)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def walk(runnable: Runnable[Any, Any]) -> Iterator[Runnable[Any, Any]]:
    yield runnable
    if isinstance(runnable, (RaisesModelError, RunnableBinding)):
        yield from walk(runnable.bound)
    elif isinstance(runnable, RunnableWithFallbacks):
        for each in runnable.runnables:
            yield from walk(each)


class RaisesModelError(Runnable[LanguageModelInput, BaseMessage]):
    """Runs ``bound``; turns ``model_failures()`` into one ``ModelError``.

    It adds no run of its own to the callbacks: the config goes to ``bound``
    as is, so tracing and LangGraph's token streaming see the chat model
    exactly as if it were called directly.

    With fallbacks, ``invoke`` is served from ``stream``: the chat model
    streams even inside ``ainvoke`` (``streaming=True``) and its tokens reach
    the callbacks as they arrive, so a primary that died mid-answer must not
    be followed by a fallback's answer in the same message.
    ``RunnableWithFallbacks.astream`` only falls back before the first chunk;
    its ``ainvoke`` would fall back at any point.
    """

    def __init__(self, bound: Runnable[LanguageModelInput, BaseMessage], settings: ModelSettings) -> None:
        self.bound = bound
        self.settings = settings
        self._streams_for_invoke = isinstance(bound, RunnableWithFallbacks)

    def get_name(self, suffix: str | None = None, *, name: str | None = None) -> str:
        return self.bound.get_name(suffix, name=name)

    def invoke(self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any) -> BaseMessage:
        if self._streams_for_invoke:
            return _aggregate(list(self.stream(input, config, **kwargs)))
        try:
            return self.bound.invoke(input, config, **kwargs)
        except model_failures() as exc:
            raise _model_error(exc, self.settings, streamed=False) from exc

    async def ainvoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> BaseMessage:
        if self._streams_for_invoke:
            return _aggregate([chunk async for chunk in self.astream(input, config, **kwargs)])
        try:
            return await self.bound.ainvoke(input, config, **kwargs)
        except model_failures() as exc:
            raise _model_error(exc, self.settings, streamed=False) from exc

    def stream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[BaseMessage]:
        streamed = False
        try:
            for chunk in self.bound.stream(input, config, **kwargs):
                streamed = True
                yield chunk
        except model_failures() as exc:
            raise _model_error(exc, self.settings, streamed=streamed) from exc

    async def astream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[BaseMessage]:
        streamed = False
        try:
            async for chunk in self.bound.astream(input, config, **kwargs):
                streamed = True
                yield chunk
        except model_failures() as exc:
            raise _model_error(exc, self.settings, streamed=streamed) from exc


def _aggregate(chunks: Sequence[BaseMessage]) -> BaseMessage:
    """The message a stream of chunks adds up to, as ``BaseChatModel`` builds it."""
    if not chunks:
        raise ModelError("The model returned an empty stream.", error_type="EmptyStream")
    total = chunks[0]
    for chunk in chunks[1:]:
        if not isinstance(total, BaseMessageChunk) or not isinstance(chunk, BaseMessageChunk):
            raise TypeError(f"cannot add {type(chunk).__name__} to {type(total).__name__}")
        total = total + chunk
    return message_chunk_to_message(total)


def _kinds(*names: str) -> tuple[type[Exception], ...]:
    """OpenAI's and Anthropic's classes named ``names`` (the two SDKs share one design), of those loaded."""
    return _sdk("openai", *names) + _sdk("anthropic", *names)


def _model_error(exc: Exception, settings: ModelSettings, *, streamed: bool) -> ModelError:
    """One actionable ``ModelError`` for a failed call.

    Before the first chunk, a failure means every model failed, and
    ``RunnableWithFallbacks`` re-raises the primary's error; after it
    (``streamed``), the model answering died mid-answer and no fallback was tried.
    """
    tried = 0 if streamed else len(settings.fallbacks)
    if isinstance(exc, ModelError) and not tried:
        return exc
    if streamed and settings.fallbacks:
        who = "The model"  # the primary or a fallback: whichever had started answering
    elif settings.provider == "offline":
        who = "The offline planner"
    elif settings.url is not None:
        who = f"Model {settings.model!r} at {settings.url}"
    else:
        who = f"Model {settings.model!r} ({settings.provider})"
    if streamed:
        reason = f"stopped in the middle of its answer ({type(exc).__name__}: {exc})"
    # The timeouts first: a timeout is also a connection error in both SDKs.
    elif isinstance(exc, (*_kinds("APITimeoutError"), TimeoutError, httpx.TimeoutException)):
        reason = f"did not answer within {settings.timeout:g}s"
    elif isinstance(exc, (*_kinds("APIConnectionError"), httpx.TransportError)):
        reason = "could not be reached or dropped the connection (is the server running?)"
    elif isinstance(exc, _kinds("AuthenticationError")):
        reason = f"refused the API key from {settings.key_variable} (HTTP 401)"
    elif isinstance(exc, _kinds("NotFoundError")):
        reason = "does not exist on that server (HTTP 404); check the model name"
    elif isinstance(exc, _kinds("APIStatusError")):
        reason = f"failed with HTTP {getattr(exc, 'status_code', '?')}: {getattr(exc, 'message', exc)}"
    else:
        reason = f"failed: {exc}"
    also = f" {tried} fallback model{'s' if tried > 1 else ''} failed too." if tried else ""
    return ModelError(
        f"{who} {reason}.{also}",
        provider=settings.provider,
        model=settings.model if settings.provider != "offline" else None,
        status_code=getattr(exc, "status_code", None),
        error_type=type(exc).__name__,
        fallbacks_tried=tried,
    )
