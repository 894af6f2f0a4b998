"""The agent graph's state, as the checkpointer stores it (plain JSON-able values)."""

from __future__ import annotations

from typing import Annotated, Any, NotRequired, TypedDict

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages

__all__ = ["AgentState", "keep_last"]

MAX_RESOLVED = 64


def keep_last(old: list[str] | None, new: list[str] | None) -> list[str]:
    """Reducer: remember the most recent resolved approval ids (to answer ``already_decided``)."""
    merged = [*(old or []), *(new or [])]
    return merged[-MAX_RESOLVED:]


class AgentState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    """The conversation: user, assistant and tool messages."""
    user_address: str
    """The signed-in user's checksum address; the sender of every transfer."""
    chain_id: int
    """The chat's current network."""
    proposals: NotRequired[list[dict[str, Any]]]
    """Prepared actions waiting for (or just given) a decision: call_id, name, args, proposal."""
    approval: NotRequired[dict[str, Any] | None]
    """The pending approval request as the protocol shows it, or None."""
    decisions: NotRequired[list[dict[str, Any]] | None]
    """The decisions that resolved ``approval``, one per proposal, same order."""
    decided_by: NotRequired[str | None]
    """Who decided ``decisions``: ``user``, ``timeout`` or ``superseded`` (a new message set the
    approval aside), so a call set aside is not shown as the user's rejection."""
    resolved: NotRequired[Annotated[list[str], keep_last]]
    """Recently resolved approval ids."""
    truncated_message: NotRequired[str | None]
    """The protocol ``message_id`` of the last answer when the model stopped it at its output
    limit (``finish_reason: "length"``), the one ``continue_message`` may append to; else None."""
