"""Chat models from settings: the offline planner, any OpenAI-compatible server, fallbacks.

```python
settings = ModelSettings(
    provider="openai",
    model="llama3.1",
    base_url="http://localhost:11434/v1",           # Ollama; None means OpenAI itself
    fallbacks=[ModelSettings(provider="offline")],
)
agent_model = bind_tools_with_fallbacks(settings, tools)   # what the graph runs
...
await aclose_chat_model(agent_model)                       # at shutdown
```

Errors, and where they are translated:

- Bad settings (no API key for OpenAI, say) raise ``ConfigError`` when the
  model is *built*, so a misconfigured server fails at startup.
- ``build_chat_model`` returns the provider's model untouched, for inspection
  and ``bind_tools``: when called, it raises the provider's own errors.
- ``bind_tools_with_fallbacks`` returns what the agent runs. A provider
  failure (``MODEL_FAILURES``) before the first token moves on to the next
  fallback; when every model failed, the caller gets one ``ModelError``
  (``code="model_error"``) whose ``__cause__`` is the primary's error. A
  failure after the first token is a ``ModelError`` at once: the tokens
  already reached the user, and a fallback's answer would be spliced onto them.
  Anything else (a bug, a cancellation, LangGraph's interrupts) passes through
  untranslated, because a fallback model would not fix it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any, Literal

import openai
from langchain_core.exceptions import ModelError as LangChainModelError
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import BaseMessage, BaseMessageChunk, message_chunk_to_message
from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig
from langchain_core.runnables.fallbacks import RunnableWithFallbacks
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from lunark.errors import ConfigError, ModelError
from lunark.models.planner import OfflinePlanner

__all__ = [
    "MODEL_FAILURES",
    "OPENAI_BASE_URL",
    "ModelSettings",
    "aclose_chat_model",
    "bind_tools_with_fallbacks",
    "build_chat_model",
]

OPENAI_BASE_URL = "https://api.openai.com/v1"
"""Where ``provider="openai"`` goes when ``base_url`` is None."""

NO_KEY = "not-needed"
"""Sent as the API key to a local server when none is configured (the SDK insists on one)."""

MODEL_FAILURES: tuple[type[Exception], ...] = (
    openai.APIError,
    LangChainModelError,
    ModelError,
    TimeoutError,
)
"""Exceptions that mean "this model failed", so the next fallback is worth a try.

- ``openai.APIError``: the server could not be reached (``APIConnectionError``),
  did not answer in time (``APITimeoutError``), answered an HTTP error
  (``APIStatusError``: 5xx, 429, and also 400/401/404, since a fallback on
  another server, model or key may well accept what this one refused), or
  sent an error or malformed data mid-stream.
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


class ModelSettings(BaseModel):
    """Which chat model the agent talks to, and what to try when it fails.

    The API key never appears here: ``api_key_env`` names the environment
    variable that holds it, read when the model is built.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: Literal["offline", "openai"] = Field(
        default="offline",
        description=(
            '"offline": the built-in scripted planner, no network, no key. '
            '"openai": OpenAI or any OpenAI-compatible server (Ollama, vLLM, LM Studio).'
        ),
    )
    model: str = Field(
        default="gpt-4o-mini",
        min_length=1,
        description="Model name sent to the server. Ignored by the offline planner.",
    )
    base_url: str | None = Field(
        default=None,
        description=(
            "Base URL of an OpenAI-compatible server, e.g. http://localhost:11434/v1 for "
            "Ollama. None means OpenAI (https://api.openai.com/v1)."
        ),
    )
    api_key_env: str = Field(
        default="OPENAI_API_KEY",
        min_length=1,
        description=(
            "Name of the environment variable holding the API key. Required for OpenAI; "
            "optional with a base_url, since local servers usually need no key."
        ),
    )
    temperature: float = Field(default=0.0, ge=0.0, le=2.0, description="Sampling temperature.")
    timeout: float = Field(default=60.0, gt=0.0, description="Seconds to wait for the server (connect, and each read).")
    max_retries: int = Field(
        default=1,
        ge=0,
        description=(
            "Retries of a failed request (connection errors, 408/409/429/5xx) against the "
            "same model, with backoff, before moving on to the fallbacks."
        ),
    )
    delay: float = Field(
        default=0.0,
        ge=0.0,
        description="Offline planner only: seconds between streamed tokens, to mimic a real model.",
    )
    max_output_tokens: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Most tokens the model writes in one reply (OpenAI's max_tokens; the offline planner "
            'counts words). An answer cut there ends with finish_reason "length" and can be continued.'
        ),
    )
    fallbacks: list[ModelSettings] = Field(
        default_factory=list,
        description="Models tried in order when the primary fails (see MODEL_FAILURES).",
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {value!r}")
        return value

    @field_validator("fallbacks")
    @classmethod
    def _flat_fallbacks(cls, value: list[ModelSettings]) -> list[ModelSettings]:
        # A fallback's own fallbacks would make the order ambiguous; one flat list says it.
        if any(fallback.fallbacks for fallback in value):
            raise ValueError("a fallback cannot have fallbacks of its own; list them all on the primary")
        return value


def build_chat_model(
    settings: ModelSettings, *, environ: Mapping[str, str] | None = None
) -> BaseChatModel | Runnable[LanguageModelInput, BaseMessage]:
    """Build the chat model ``settings`` describe.

    Returns the bare model (``OfflinePlanner`` or ``ChatOpenAI``) when there
    are no fallbacks, otherwise ``primary.with_fallbacks([...])``. ``environ``
    (default ``os.environ``) is where the API key is looked up.

    The model owns its HTTP connection pool: close it with
    ``await aclose_chat_model(model)`` when done.

    Raises:
        ConfigError: ``provider="openai"`` without ``base_url`` and the
            ``api_key_env`` variable is unset or empty.

    To give the model tools, use ``bind_tools_with_fallbacks``, which binds
    them to every fallback too and translates failures into ``ModelError``.
    """
    env = os.environ if environ is None else environ
    primary = _build_one(settings, env)
    if not settings.fallbacks:
        return primary
    return primary.with_fallbacks(
        [_build_one(fallback, env) for fallback in settings.fallbacks],
        exceptions_to_handle=MODEL_FAILURES,
    )


def bind_tools_with_fallbacks(
    settings: ModelSettings,
    tools: Sequence[Any],
    *,
    environ: Mapping[str, str] | None = None,
    **bind_kwargs: Any,
) -> Runnable[LanguageModelInput, BaseMessage]:
    """Build every model of ``settings``, bind ``tools`` to each, chain them as fallbacks.

    ``tools`` are what ``BaseChatModel.bind_tools`` takes (pydantic schemas,
    ``BaseTool``s, functions); ``bind_kwargs`` (``tool_choice``,
    ``parallel_tool_calls``...) go to every ``bind_tools`` call.

    The result streams like the bare model (token callbacks reach LangGraph's
    ``messages`` stream unchanged). A model falls back only before its first
    chunk: once tokens reached the user, switching models would splice two
    answers. When every model failed the call raises ``ModelError``.

    Raises:
        ConfigError: as ``build_chat_model``.
    """
    env = os.environ if environ is None else environ
    chain = [settings.model_copy(update={"fallbacks": []}), *settings.fallbacks]
    bound = [_build_one(each, env).bind_tools(tools, **bind_kwargs) for each in chain]
    runnable: Runnable[LanguageModelInput, BaseMessage] = bound[0]
    if len(bound) > 1:
        runnable = bound[0].with_fallbacks(bound[1:], exceptions_to_handle=MODEL_FAILURES)
    return _RaisesModelError(runnable, settings)


async def aclose_chat_model(model: Runnable[Any, Any]) -> None:
    """Close the HTTP connection pools of every model inside ``model``.

    Accepts what ``build_chat_model`` or ``bind_tools_with_fallbacks``
    returned (fallbacks and tool bindings are walked). Safe to call twice.

    The factory gives each ``ChatOpenAI`` its own httpx clients rather than
    langchain-openai's defaults, which are cached process-wide per
    ``(base_url, timeout)`` and shared between instances, so they can never be
    closed safely and their pooled sockets live until the process exits.
    """
    for each in _walk(model):
        if isinstance(each, ChatOpenAI):
            if each.root_async_client is not None:
                await each.root_async_client.close()
            if each.root_client is not None:
                each.root_client.close()


# -- internals ---------------------------------------------------------------


def _build_one(settings: ModelSettings, env: Mapping[str, str]) -> BaseChatModel:
    if settings.provider == "offline":
        return OfflinePlanner(delay=settings.delay, max_output_tokens=settings.max_output_tokens)
    return _build_openai(settings, env)


def _build_openai(settings: ModelSettings, env: Mapping[str, str]) -> ChatOpenAI:
    key = env.get(settings.api_key_env) or None
    if key is None and settings.base_url is None:
        raise ConfigError(
            f"No API key for OpenAI model {settings.model!r}: set the environment variable "
            f"{settings.api_key_env}, or point base_url at an OpenAI-compatible server.",
            variable=settings.api_key_env,
        )
    return ChatOpenAI(
        model=settings.model,
        # Passed explicitly, even for OpenAI itself, so that OPENAI_API_BASE,
        # OPENAI_BASE_URL or LANGSMITH_GATEWAY in the process environment cannot
        # send requests (and the key) elsewhere than the settings say.
        base_url=settings.base_url or OPENAI_BASE_URL,
        api_key=SecretStr(key or NO_KEY),
        temperature=settings.temperature,
        timeout=settings.timeout,
        max_retries=settings.max_retries,
        max_tokens=settings.max_output_tokens,
        streaming=True,
        stream_usage=True,
        # Our own clients, closed by aclose_chat_model (see there for why not the defaults).
        http_client=openai.DefaultHttpxClient(),
        http_async_client=openai.DefaultAsyncHttpxClient(),
    )


def _walk(runnable: Runnable[Any, Any]) -> Iterator[Runnable[Any, Any]]:
    yield runnable
    if isinstance(runnable, (_RaisesModelError, RunnableBinding)):
        yield from _walk(runnable.bound)
    elif isinstance(runnable, RunnableWithFallbacks):
        for each in runnable.runnables:
            yield from _walk(each)


class _RaisesModelError(Runnable[LanguageModelInput, BaseMessage]):
    """Runs ``bound``; turns ``MODEL_FAILURES`` into one ``ModelError``.

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
        except MODEL_FAILURES as exc:
            raise _model_error(exc, self.settings, streamed=False) from exc

    async def ainvoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> BaseMessage:
        if self._streams_for_invoke:
            return _aggregate([chunk async for chunk in self.astream(input, config, **kwargs)])
        try:
            return await self.bound.ainvoke(input, config, **kwargs)
        except MODEL_FAILURES as exc:
            raise _model_error(exc, self.settings, streamed=False) from exc

    def stream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[BaseMessage]:
        streamed = False
        try:
            for chunk in self.bound.stream(input, config, **kwargs):
                streamed = True
                yield chunk
        except MODEL_FAILURES as exc:
            raise _model_error(exc, self.settings, streamed=streamed) from exc

    async def astream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[BaseMessage]:
        streamed = False
        try:
            async for chunk in self.bound.astream(input, config, **kwargs):
                streamed = True
                yield chunk
        except MODEL_FAILURES as exc:
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
    else:
        who = f"Model {settings.model!r} at {settings.base_url or OPENAI_BASE_URL}"
    if streamed:
        reason = f"stopped in the middle of its answer ({type(exc).__name__}: {exc})"
    elif isinstance(exc, (openai.APITimeoutError, TimeoutError)):
        reason = f"did not answer within {settings.timeout:g}s"
    elif isinstance(exc, openai.APIConnectionError):
        reason = "could not be reached or dropped the connection (is the server running?)"
    elif isinstance(exc, openai.AuthenticationError):
        reason = f"refused the API key from {settings.api_key_env} (HTTP 401)"
    elif isinstance(exc, openai.NotFoundError):
        reason = "does not exist on that server (HTTP 404); check the model name"
    elif isinstance(exc, openai.APIStatusError):
        reason = f"failed with HTTP {exc.status_code}: {exc.message}"
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
