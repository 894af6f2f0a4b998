"""Which chat model, as settings say it: ``ModelSettings`` (``provider = "anthropic:claude-..."``
read into a provider and a model, checked against the providers ``init_chat_model`` knows) and what
Lunark knows of the providers it pins (``PROVIDERS``: package, key variable, default URL)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "ANTHROPIC_BASE_URL", "OLLAMA_BASE_URL", "OPENAI_BASE_URL", "PROVIDERS", "ModelSettings", "Provider",
    "package_of",
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


def _registry() -> Mapping[str, tuple[str, ...]]:
    """``init_chat_model``'s providers and the module of each (a private table of LangChain's:
    read defensively, it is only a better error message)."""
    from langchain.chat_models import base

    table = getattr(base, "_BUILTIN_PROVIDERS", None)
    return table if isinstance(table, Mapping) else {name: (f"langchain_{name}",) for name in PROVIDERS}


def _init_chat_model_providers() -> frozenset[str]:
    return frozenset(_registry())


def package_of(provider: str) -> str:
    known = PROVIDERS.get(provider)
    if known is not None:
        return known.package
    module = str(_registry().get(provider, (f"langchain_{provider}",))[0])
    return module.split(".", 1)[0].replace("_", "-")
