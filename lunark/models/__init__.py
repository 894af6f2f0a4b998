"""Chat models for Lunark's agent: the offline planner (the embedded default)."""

from lunark.models.planner import (
    OfflinePlanner,
    Plan,
    compose_answer,
    plan_reply,
    plan_tool_calls,
    split_tokens,
)

__all__ = [
    "OfflinePlanner",
    "Plan",
    "compose_answer",
    "plan_reply",
    "plan_tool_calls",
    "split_tokens",
]
