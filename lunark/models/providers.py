"""One chat model per provider, built from its settings: the offline planner, OpenAI (or any
OpenAI-compatible server), Anthropic and Ollama with their key and URL pinned, and any other
provider of ``init_chat_model`` as its integration reads its environment."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from langchain_core.language_models import BaseChatModel
from pydantic import SecretStr, ValidationError

from lunark.errors import ConfigError
from lunark.models.planner import OfflinePlanner
from lunark.models.settings import (
    ANTHROPIC_BASE_URL,
    OLLAMA_BASE_URL,
    OPENAI_BASE_URL,
    ModelSettings,
    package_of,
)

if TYPE_CHECKING:
    from langchain_openai import ChatOpenAI

__all__ = ["NO_KEY", "build_one"]

NO_KEY = "not-needed"
"""Sent as the API key to a local server when none is configured (the SDK insists on one)."""


def build_one(settings: ModelSettings, env: Mapping[str, str]) -> BaseChatModel:
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
    # Imported here, as init_chat_model imports the other integrations: a process whose model is the
    # offline planner (or no model at all: a relay) loads no provider's SDK (~1 s and ~50 MB).
    import openai
    from langchain_openai import ChatOpenAI

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
    from langchain.chat_models import init_chat_model

    try:
        model: BaseChatModel = init_chat_model(settings.model, model_provider=settings.provider, **kwargs)
    except ImportError as exc:
        package = package_of(settings.provider)
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
