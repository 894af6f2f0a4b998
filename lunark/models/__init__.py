"""Chat models for Lunark's agent: the offline planner (the embedded default)."""

from lunark.models.planner import (
    CONTINUE_PROMPT,
    OfflinePlanner,
    Plan,
    compose_answer,
    plan_reply,
    plan_tool_calls,
    split_tokens,
)

__all__ = [
    "CONTINUE_PROMPT",
    "OfflinePlanner",
    "Plan",
    "compose_answer",
    "plan_reply",
    "plan_tool_calls",
    "split_tokens",
]

# The factory: chat models from settings (offline planner, OpenAI-compatible, fallbacks).
from lunark.models.factory import (
    OPENAI_BASE_URL,
    ModelSettings,
    aclose_chat_model,
    bind_tools_with_fallbacks,
    build_chat_model,
)

__all__ += [
    "MODEL_FAILURES",
    "OPENAI_BASE_URL",
    "ModelSettings",
    "aclose_chat_model",
    "bind_tools_with_fallbacks",
    "build_chat_model",
]


def __getattr__(name: str) -> object:
    if name == "MODEL_FAILURES":  # computed when asked for: it imports every installed provider's SDK
        from lunark.models import fallbacks

        return fallbacks.MODEL_FAILURES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
