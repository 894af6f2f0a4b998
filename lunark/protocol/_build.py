"""The constructors of what leaves the server: every chat event, its ``usage``, and the decisions.

Each returns the JSON-ready dict as it goes on the wire, keys in wire order, without the envelope
(``chat_id``, ``seq``, ``ts``: the hub and the event log add them, ``chat_event``). They are plain
functions, not ``Model(...).to_wire()``: ``token`` runs for every streamed token, and the others
are emitted by code that already holds checked values. What keeps them the models' shape is
tests/test_protocol.py: every constructor's output, enveloped, validates as its model and dumps
back unchanged. No other module of Lunark writes an event as a dict literal (tests/test_layers.py).

    >>> message_end("msg_1", "stop", usage(42, ttft_ms=120.5, tokens_per_s=33.0))
    {'type': 'message_end', 'message_id': 'msg_1', 'finish_reason': 'stop', 'usage': {...}}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

__all__ = [
    "FinishReason",
    "ToolResultStatus",
    "approval_resolved",
    "approve_decision",
    "chat_event",
    "edit_decision",
    "error",
    "message_end",
    "message_start",
    "network_switch",
    "pending_approval",
    "reject_decision",
    "status",
    "token",
    "tool_call",
    "tool_result",
    "tx_update",
    "usage",
]

Event = dict[str, Any]

FinishReason = Literal["stop", "aborted", "error", "awaiting_approval", "length", "interrupted"]
"""Why a message ended (``MessageEnd.finish_reason``)."""
ToolResultStatus = Literal["success", "error", "rejected", "postponed", "superseded"]
"""How a tool call ended (``ToolResult.status``)."""


def message_start(message_id: str, role: Literal["user", "assistant"], content: str | None = None) -> Event:
    """A message begins; a user message carries its whole ``content``."""
    if content is None:
        return {"type": "message_start", "message_id": message_id, "role": role}
    return {"type": "message_start", "message_id": message_id, "role": role, "content": content}


def token(message_id: str, text: str) -> Event:
    """More assistant text (the hot path: thousands a second, so nothing is checked)."""
    return {"type": "token", "message_id": message_id, "text": text}


def tool_call(
    call_id: str, name: str, args: Mapping[str, Any], status: Literal["running", "awaiting_approval"], *,
    message_id: str | None = None,
) -> Event:
    """The model calls a tool. Without ``message_id`` the turn that streams it adds its message's."""
    event: Event = {"type": "tool_call", "call_id": call_id, "name": name, "args": args, "status": status}
    if message_id is not None:
        event["message_id"] = message_id
    return event


def tool_result(
    call_id: str, status: ToolResultStatus, result: Any = None, *, error: Mapping[str, Any] | None = None
) -> Event:
    """A tool call finished; ``result`` is always present (``null`` when there is none), ``error``
    when it failed (``LunarkError.to_dict()``)."""
    event: Event = {"type": "tool_result", "call_id": call_id, "status": status, "result": result}
    if error is not None:
        event["error"] = error
    return event


def pending_approval(approval: Mapping[str, Any]) -> Event:
    """The agent waits for the user's decisions on ``approval`` (an ``ApprovalRequest``'s fields)."""
    return {"type": "pending_approval", **approval}


def approval_resolved(
    approval_id: str, decisions: Sequence[Mapping[str, Any]], by: Literal["user", "timeout", "superseded"]
) -> Event:
    """An approval was decided, by the user, by expiry, or set aside for a new message."""
    return {"type": "approval_resolved", "approval_id": approval_id, "decisions": decisions, "by": by}


def tx_update(call_id: str, fields: Mapping[str, Any], *, late: bool = False) -> Event:
    """A tracked transaction moved: ``fields`` are ``TxUpdate``'s after ``call_id`` (``status``,
    ``tx_hash``, ``chain_id``, ...); ``late`` marks a wallet hash that came after the expiry."""
    event: Event = {"type": "tx_update", "call_id": call_id, **fields}
    if late:
        event["late"] = True
    return event


def network_switch(
    *, chain_id: int, name: str, display_name: str, confirmations: int, symbol: str, decimals: int,
    rpc_urls: Sequence[str], explorer_url: str | None,
) -> Event:
    """The chat moved to another network; every field is sent, ``null`` included."""
    return {
        "type": "network_switch", "chain_id": chain_id, "name": name, "display_name": display_name,
        "confirmations": confirmations, "symbol": symbol, "decimals": decimals, "rpc_urls": list(rpc_urls),
        "explorer_url": explorer_url,
    }


def status(text: str) -> Event:
    """What the agent is doing: "thinking…", "waiting for your approval", "checking the transaction"."""
    return {"type": "status", "text": text}


def usage(output_tokens: int, *, ttft_ms: float | None = None, tokens_per_s: float | None = None) -> Event:
    """A message's ``usage``: every field is sent, ``null`` for a figure not measured."""
    return {"output_tokens": output_tokens, "ttft_ms": ttft_ms, "tokens_per_s": tokens_per_s}


def message_end(
    message_id: str, finish_reason: FinishReason, usage: Mapping[str, Any], *, message: str | None = None
) -> Event:
    """A message is complete. An interrupted one also carries ``status: "interrupted"``, the name
    the supervision of crashed processes uses (issue 21), and should say what happened (``message``)."""
    event: Event = {"type": "message_end", "message_id": message_id, "finish_reason": finish_reason, "usage": usage}
    if message is not None:
        event["message"] = message
    if finish_reason == "interrupted":
        event["status"] = "interrupted"
    return event


def error(code: str, message: str, **details: Any) -> Event:
    """A failure outside any ack: ``error(**exc.to_dict())`` for a ``LunarkError``."""
    return {"type": "error", "code": code, "message": message, **details}


def chat_event(type_: str, payload: Mapping[str, Any], chat_id: str) -> Event:
    """``payload`` as the event log keeps it: of type ``type_`` and of chat ``chat_id`` (a key the
    payload already has keeps its place; ``seq`` and ``ts`` follow when it is committed)."""
    return {**payload, "type": type_, "chat_id": chat_id}


# --- decisions (client -> server, and the server's own rejections) -----------------------------


def approve_decision(
    *, tx_hash: str | None = None, signed_tx: str | None = None, acknowledge: Sequence[str] | None = None
) -> Event:
    """Approve: the local signer signs, or the wallet already sent it (``tx_hash``) or signed it
    (``signed_tx``); ``acknowledge`` names the card's danger warnings the user accepted."""
    decision: Event = {"type": "approve"}
    if tx_hash is not None:
        decision["tx_hash"] = tx_hash
    if signed_tx is not None:
        decision["signed_tx"] = signed_tx
    if acknowledge is not None:
        decision["acknowledge"] = acknowledge
    return decision


def edit_decision(name: str, args: Mapping[str, Any]) -> Event:
    """Run the same tool with other arguments: it is prepared again and shown again."""
    return {"type": "edit", "edited_action": {"name": name, "args": args}}


def reject_decision(message: str | None = None) -> Event:
    """Do not do it; ``message`` reaches the model."""
    if message is None:
        return {"type": "reject"}
    return {"type": "reject", "message": message}
