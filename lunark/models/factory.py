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

This module is the entry (building, binding, closing); the rest is by concern:
``lunark.models.settings`` (``ModelSettings``, provider spec parsing, ``PROVIDERS``),
``lunark.models.providers`` (one model per provider, key and URL pinned) and
``lunark.models.fallbacks`` (``MODEL_FAILURES``, falling back before the first chunk, the
``ModelError`` message). Every name above is importable from here too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable

from lunark.models.fallbacks import RaisesModelError, model_failures, walk
from lunark.models.providers import build_one
from lunark.models.settings import (
    ANTHROPIC_BASE_URL,
    OLLAMA_BASE_URL,
    OPENAI_BASE_URL,
    PROVIDERS,
    ModelSettings,
    Provider,
)

__all__ = [
    "ANTHROPIC_BASE_URL",
    "OLLAMA_BASE_URL",
    "OPENAI_BASE_URL",
    "PROVIDERS",
    "ModelSettings",
    "Provider",
    "aclose_chat_model",
    "bind_tools_with_fallbacks",
    "build_chat_model",
]


def __getattr__(name: str) -> Any:
    if name == "MODEL_FAILURES":  # lunark.models.fallbacks computes it when asked for
        from lunark.models import fallbacks

        return fallbacks.MODEL_FAILURES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    primary = build_one(settings, env)
    if not settings.fallbacks:
        return primary
    return primary.with_fallbacks(
        [build_one(fallback, env) for fallback in settings.fallbacks],
        exceptions_to_handle=model_failures(),
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
    bound = [build_one(each, env).bind_tools(tools, **bind_kwargs) for each in chain]
    runnable: Runnable[LanguageModelInput, BaseMessage] = bound[0]
    if len(bound) > 1:
        runnable = bound[0].with_fallbacks(bound[1:], exceptions_to_handle=model_failures())
    return RaisesModelError(runnable, settings)


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
    integration = sys.modules.get("langchain_openai")
    if integration is None:
        return  # never loaded: no ChatOpenAI exists
    for each in walk(model):
        if isinstance(each, integration.ChatOpenAI):
            if each.root_async_client is not None:
                await each.root_async_client.close()
            if each.root_client is not None:
                each.root_client.close()
