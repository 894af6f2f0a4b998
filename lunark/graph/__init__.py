"""The agent graph: LangGraph with a human-in-the-loop approval gate."""

from lunark.graph.agent import SYSTEM_PROMPT, Agent, AgentEvent, ChatSnapshot
from lunark.graph.approval import validate_decisions

__all__ = ["SYSTEM_PROMPT", "Agent", "AgentEvent", "ChatSnapshot", "validate_decisions"]
