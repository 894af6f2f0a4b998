"""Chat models from settings: the offline planner, any OpenAI-compatible server, any provider
LangChain's ``init_chat_model`` knows (Anthropic, Ollama, Groq...), fallbacks.

```python
settings = ModelSettings(
    provider="anthropic:claude-sonnet-4-5",         # or provider="anthropic", model="claude-..."
    fallbacks=[
        ModelSettings(provider="openai", model="llama3.1", base_url="http://localhost:11434/v1"),
        ModelSettings(provider="offline"),
    ],
)
agent_model = bind_tools_with_fallbacks(settings, tools)   # what the graph runs
...
await aclose_chat_model(agent_model)                       # at shutdown
```

Errors, and where they are translated:

- Bad settings (no API key for OpenAI, say, or a provider whose LangChain
  package is not installed) raise ``ConfigError`` when the model is *built*,
  so a misconfigured server fails at startup.
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

import importlib
import os
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import openai
from langchain.chat_models import init_chat_model
from langchain_core.exceptions import ModelError as LangChainModelError
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import BaseMessage, BaseMessageChunk, message_chunk_to_message
from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig
from langchain_core.runnables.fallbacks import RunnableWithFallbacks
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from lunark.errors import ConfigError, ModelError
from lunark.models.planner import OfflinePlanner

__all__ = [
    "ANTHROPIC_BASE_URL",
    "MODEL_FAILURES",
    "OLLAMA_BASE_URL",
    "OPENAI_BASE_URL",
    "PROVIDERS",
    "ModelSettings",
    "Provider",
    "aclose_chat_model",
    "bind_tools_with_fallbacks",
    "build_chat_model",
]

OPENAI_BASE_URL = "https://api.openai.com/v1"
"""Where ``provider="openai"`` goes when ``base_url`` is None."""

ANTHROPIC_BASE_URL = "https://api.anthropic.com"
"""Where ``provider="anthropic"`` goes when ``base_url`` is None."""

OLLAMA_BASE_URL = "http://localhost:11434"
"""Where ``provider="ollama"`` goes when ``base_url`` is None (Ollama's own API, not its /v1)."""


@dataclass(frozen=True, slots=True)
class Provider:
    """What Lunark knows of a provider beyond LangChain's registry."""

    package: str
    """The pip package of its LangChain integration."""
    key_env: str | None
    """The environment variable its key is read from by default; None: it needs no key."""
    base_url: str | None
    """Where it is reached when ``base_url`` is None; None: wherever the integration decides."""


PROVIDERS: Mapping[str, Provider] = {
    "openai": Provider("langchain-openai", "OPENAI_API_KEY", OPENAI_BASE_URL),
    "anthropic": Provider("langchain-anthropic", "ANTHROPIC_API_KEY", ANTHROPIC_BASE_URL),
    "ollama": Provider("langchain-ollama", None, OLLAMA_BASE_URL),
}
"""The providers Lunark builds with their key and URL pinned (the key read from the variable the
settings name, the URL passed explicitly so that the process environment cannot redirect it).
Any other provider of ``init_chat_model`` works too, configured as its integration reads its
environment (``GROQ_API_KEY``...), unless ``api_key_env`` and ``base_url`` say otherwise."""

NO_KEY = "not-needed"
"""Sent as the API key to a local server when none is configured (the SDK insists on one)."""



def _optional(module: str, *names: str) -> tuple[type[Exception], ...]:
    """Exception classes of an SDK that is installed only with its provider's extra."""
    try:
        found = importlib.import_module(module)
    except ImportError:
        return ()
    return tuple(getattr(found, name) for name in names)


MODEL_FAILURES: tuple[type[Exception], ...] = (
    openai.APIError,
    *_optional("anthropic", "APIError"),
    *_optional("ollama", "ResponseError"),
    httpx.HTTPError,
    LangChainModelError,
    ModelError,
    TimeoutError,
)
"""Exceptions that mean "this model failed", so the next fallback is worth a try.

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


class ModelSettings(BaseModel):
    """Which chat model the agent talks to, and what to try when it fails.

    The API key never appears here: ``api_key_env`` names the environment
    variable that holds it, read when the model is built.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str = Field(
        default="offline",
        description=(
            '"offline": the built-in scripted planner, no network, no key. '
            '"openai": OpenAI or any OpenAI-compatible server (Ollama\'s /v1, vLLM, LM Studio). '
            'Any other provider of LangChain\'s init_chat_model ("anthropic", "ollama", "groq"...), '
            'its integration package installed. "provider:model" sets both, e.g. '
            '"anthropic:claude-sonnet-4-5".'
        ),
    )
    model: str = Field(
        default="gpt-4o-mini",
        min_length=1,
        description=(
            "Model name sent to the server; the default is OpenAI's, so other providers need one. "
            "Ignored by the offline planner."
        ),
    )
    base_url: str | None = Field(
        default=None,
        description=(
            "Where the provider is reached: for openai an OpenAI-compatible server, e.g. "
            "http://localhost:11434/v1 for Ollama; for anthropic a Messages API server. None means "
            "the provider's own (https://api.openai.com/v1, https://api.anthropic.com, "
            "http://localhost:11434 for ollama)."
        ),
    )
    api_key_env: str | None = Field(
        default=None,
        min_length=1,
        description=(
            "Name of the environment variable holding the API key. None means the provider's "
            "own: OPENAI_API_KEY, ANTHROPIC_API_KEY, none for ollama, and for other providers "
            "the variable their integration reads. Required by openai and anthropic without a "
            "base_url; optional with one, since local servers usually need no key."
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
            "Most tokens the model writes in one reply (max_tokens; Ollama's num_predict; the offline "
            'planner counts words). An answer cut there ends with finish_reason "length" and can be '
            "continued."
        ),
    )
    fallbacks: list[ModelSettings] = Field(
        default_factory=list,
        description="Models tried in order when the primary fails (see MODEL_FAILURES).",
    )

    @model_validator(mode="before")
    @classmethod
    def _split_provider(cls, data: Any) -> Any:
        """``provider = "anthropic:claude-..."`` is the provider and the model, as LangChain
        writes them; its model wins over ``model``, which may come from a weaker source (a file
        under ``LUNARK_MODEL__PROVIDER``). A provider other than OpenAI's needs a model of its
        own, since the default model name is OpenAI's."""
        if not isinstance(data, Mapping) or not isinstance(data.get("provider"), str):
            return data
        provider, colon, model = data["provider"].partition(":")
        provider = provider.strip().lower().replace("-", "_")
        out = {**data, "provider": provider}
        if colon:
            if not model:
                raise ValueError(f'provider {data["provider"]!r} names no model after the colon')
            out["model"] = model
        elif provider not in ("offline", "openai") and not data.get("model"):
            raise ValueError(
                f'provider {provider!r} needs a model name: write provider = "{provider}:<model>" '
                "or set model"
            )
        return out

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, value: str) -> str:
        if value != "offline" and value not in _init_chat_model_providers():
            known = ", ".join(sorted({"offline", *_init_chat_model_providers()}))
            raise ValueError(f"unknown model provider {value!r}; known: {known}")
        return value

    @property
    def key_variable(self) -> str | None:
        """The environment variable the key is read from: ``api_key_env``, else the provider's own."""
        if self.api_key_env is not None:
            return self.api_key_env
        known = PROVIDERS.get(self.provider)
        return known.key_env if known is not None else None

    @property
    def url(self) -> str | None:
        """Where the model is reached (for messages): ``base_url``, else the provider's own."""
        if self.base_url is not None:
            return self.base_url
        known = PROVIDERS.get(self.provider)
        return known.base_url if known is not None else None

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

    Returns the bare model (``OfflinePlanner``, ``ChatOpenAI``, ``ChatAnthropic``...) when there
    are no fallbacks, otherwise ``primary.with_fallbacks([...])``. ``environ``
    (default ``os.environ``) is where the API key is looked up.

    The model owns its HTTP connection pool: close it with
    ``await aclose_chat_model(model)`` when done.

    Raises:
        ConfigError: ``provider="openai"`` or ``"anthropic"`` without ``base_url``
            and the key's variable is unset or empty; a provider whose LangChain
            package is not installed (the message names it); settings the
            integration refuses.

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
    langchain-anthropic offers no way to pass clients of one's own, so a
    ``ChatAnthropic``'s pools are those shared ones, left open here: one per
    Messages API URL for the process's life.
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
    if settings.provider == "openai":
        return _build_openai(settings, env)
    if settings.provider == "anthropic":
        return _build_anthropic(settings, env)
    if settings.provider == "ollama":
        return _build_ollama(settings, env)
    return _build_other(settings, env)


def _key(settings: ModelSettings, env: Mapping[str, str], *, required: bool, label: str) -> str | None:
    """The API key from the variable the settings name; ``required`` (the provider's own cloud,
    no base_url) makes a missing one a ``ConfigError`` now rather than a 401 at the first message."""
    variable = settings.key_variable
    key = (env.get(variable) or None) if variable is not None else None
    if key is None and required:
        raise ConfigError(
            f"No API key for {label} model {settings.model!r}: set the environment variable "
            f"{variable}, or point base_url at a compatible server.",
            variable=variable,
        )
    return key


def _build_openai(settings: ModelSettings, env: Mapping[str, str]) -> ChatOpenAI:
    key = _key(settings, env, required=settings.base_url is None, label="OpenAI")
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


def _build_anthropic(settings: ModelSettings, env: Mapping[str, str]) -> BaseChatModel:
    key = _key(settings, env, required=settings.base_url is None, label="Anthropic")
    limit = {} if settings.max_output_tokens is None else {"max_tokens": settings.max_output_tokens}
    return _init(
        settings,
        # Explicit for the same reason as OpenAI's: ANTHROPIC_BASE_URL in the environment
        # must not send the key elsewhere.
        base_url=settings.base_url or ANTHROPIC_BASE_URL,
        api_key=SecretStr(key or NO_KEY),
        temperature=settings.temperature,
        timeout=settings.timeout,
        max_retries=settings.max_retries,
        streaming=True,
        stream_usage=True,
        # None leaves the integration's per-model default: the Messages API requires a max_tokens.
        **limit,
    )


def _build_ollama(settings: ModelSettings, env: Mapping[str, str]) -> BaseChatModel:
    key = _key(settings, env, required=False, label="Ollama")
    client: dict[str, Any] = {"timeout": settings.timeout}
    if key is not None:  # a hosted Ollama behind a key; a local one needs none
        client["headers"] = {"Authorization": f"Bearer {key}"}
    return _init(
        settings,
        base_url=settings.base_url or OLLAMA_BASE_URL,  # not OLLAMA_HOST from the environment
        temperature=settings.temperature,
        num_predict=settings.max_output_tokens,
        client_kwargs=client,
    )


def _build_other(settings: ModelSettings, env: Mapping[str, str]) -> BaseChatModel:
    """Any other provider of ``init_chat_model``, with the settings most integrations share; what
    the settings leave out (the key, the URL) the integration reads from its environment."""
    kwargs: dict[str, Any] = {
        "temperature": settings.temperature,
        "timeout": settings.timeout,
        "max_retries": settings.max_retries,
    }
    if settings.api_key_env is not None:
        kwargs["api_key"] = SecretStr(_key(settings, env, required=True, label=settings.provider) or "")
    if settings.base_url is not None:
        kwargs["base_url"] = settings.base_url
    if settings.max_output_tokens is not None:
        kwargs["max_tokens"] = settings.max_output_tokens
    return _init(settings, **kwargs)


def _init(settings: ModelSettings, **kwargs: Any) -> BaseChatModel:
    """``init_chat_model``, its failures as a ``ConfigError`` that says what to do."""
    try:
        model: BaseChatModel = init_chat_model(settings.model, model_provider=settings.provider, **kwargs)
    except ImportError as exc:
        package = _package_of(settings.provider)
        extra = f" (or pip install 'lunark[{settings.provider}]')" if settings.provider in _EXTRAS else ""
        raise ConfigError(
            f"Model provider {settings.provider!r} needs the {package} package, which is not "
            f"installed: pip install {package}{extra}.",
            provider=settings.provider,
            package=package,
        ) from exc
    except (ValidationError, ValueError) as exc:
        raise ConfigError(
            f"Model {settings.model!r} of provider {settings.provider!r} could not be set up: {exc}",
            provider=settings.provider,
        ) from exc
    return model


_EXTRAS = frozenset({"anthropic", "ollama"})
"""Providers with an extra of Lunark's own that installs their integration."""


def _registry() -> Mapping[str, tuple[str, ...]]:
    """``init_chat_model``'s providers and the module of each (a private table of LangChain's:
    read defensively, it is only a better error message)."""
    from langchain.chat_models import base

    table = getattr(base, "_BUILTIN_PROVIDERS", None)
    return table if isinstance(table, Mapping) else {name: (f"langchain_{name}",) for name in PROVIDERS}


def _init_chat_model_providers() -> frozenset[str]:
    return frozenset(_registry())


def _package_of(provider: str) -> str:
    known = PROVIDERS.get(provider)
    if known is not None:
        return known.package
    module = str(_registry().get(provider, (f"langchain_{provider}",))[0])
    return module.split(".", 1)[0].replace("_", "-")


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


# OpenAI's and Anthropic's SDKs have the same error classes; the timeouts first, as a
# timeout is also a connection error in both.
_TIMEOUTS: tuple[type[Exception], ...] = (
    openai.APITimeoutError, *_optional("anthropic", "APITimeoutError"), TimeoutError, httpx.TimeoutException
)
_UNREACHABLE: tuple[type[Exception], ...] = (
    openai.APIConnectionError, *_optional("anthropic", "APIConnectionError"), httpx.TransportError
)
_REFUSED_KEY: tuple[type[Exception], ...] = (openai.AuthenticationError, *_optional("anthropic", "AuthenticationError"))
_NOT_FOUND: tuple[type[Exception], ...] = (openai.NotFoundError, *_optional("anthropic", "NotFoundError"))
_HTTP_STATUS: tuple[type[Exception], ...] = (openai.APIStatusError, *_optional("anthropic", "APIStatusError"))


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
    elif isinstance(exc, _TIMEOUTS):
        reason = f"did not answer within {settings.timeout:g}s"
    elif isinstance(exc, _UNREACHABLE):
        reason = "could not be reached or dropped the connection (is the server running?)"
    elif isinstance(exc, _REFUSED_KEY):
        reason = f"refused the API key from {settings.key_variable} (HTTP 401)"
    elif isinstance(exc, _NOT_FOUND):
        reason = "does not exist on that server (HTTP 404); check the model name"
    elif isinstance(exc, _HTTP_STATUS):
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
