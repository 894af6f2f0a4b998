"""Server -> client chat events, the registry of their types, and parse_event."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter

from lunark.protocol._codes import ErrorCode, TxStatus
from lunark.protocol._decisions import Decision
from lunark.protocol._limits import _HASH
from lunark.protocol._objects import ApprovalRequest, ErrorBody, Usage, _ServerModel

# --- server -> client ---------------------------------------------------------------------------


_TYPE = "The event's type, also its Socket.IO event name."


class _ChatEvent(_ServerModel):
    type: str = Field(description=_TYPE)
    chat_id: str = Field(description="The chat it belongs to.")
    seq: int = Field(ge=1, description="Per-chat sequence number: starts at 1, grows by exactly 1.")
    ts: float = Field(description="When the server emitted it, Unix time in seconds (fractional).")


class MessageStart(_ChatEvent):
    """A message begins (a user message is echoed whole)."""

    type: Literal["message_start"] = Field("message_start", description=_TYPE)
    message_id: str = Field(description="The message's id.")
    role: Literal["user", "assistant"] = Field(description="Who speaks.")
    content: str | None = Field(default=None, description="The full text; user messages only.")


class Token(_ChatEvent):
    """More assistant text."""

    type: Literal["token"] = Field("token", description=_TYPE)
    message_id: str = Field(description="The assistant message.")
    text: str = Field(description="A delta; several model tokens may be coalesced into one event.")


class ToolCall(_ChatEvent):
    """The model calls a tool."""

    type: Literal["tool_call"] = Field("tool_call", description=_TYPE)
    message_id: str = Field(description="The assistant message that made the call.")
    call_id: str = Field(description="The call's id; tool_result and tx_update refer to it.")
    name: str = Field(description="Tool name.")
    args: dict[str, Any] = Field(description="The tool's arguments.")
    status: Literal["running", "awaiting_approval"] = Field(description="Running, or waiting for the user.")


class ToolResult(_ChatEvent):
    """A tool call finished."""

    type: Literal["tool_result"] = Field("tool_result", description=_TYPE)
    call_id: str = Field(description="The call it answers.")
    status: Literal["success", "error", "rejected", "postponed", "superseded"] = Field(
        description=(
            "How it ended. success: a transfer confirmed on chain (its settlement's final state), any other "
            "tool ran; error: it failed, or its settlement ended in any other state (refused, mismatch, "
            "failed, dropped, replaced, expired); rejected: the user (or expiry) rejected it; postponed: "
            "set aside before it was prepared, to be planned again once the network switch before it is "
            "approved; superseded: set aside because the user sent a new message instead of deciding. "
            "Nothing was sent for rejected, postponed and superseded."
        )
    )
    result: Any = Field(default=None, description="The tool's result (JSON); absent when there is none.")
    # left_to_right: a dict that is a valid ErrorBody becomes one; anything else stays a dict.
    error: ErrorBody | dict[str, Any] | None = Field(
        default=None, union_mode="left_to_right", description="Why it failed."
    )


class PendingApproval(ApprovalRequest, _ChatEvent):
    """The agent waits for the user's decisions before acting."""

    type: Literal["pending_approval"] = Field("pending_approval", description=_TYPE)


class ApprovalResolved(_ChatEvent):
    """An approval was decided (by the user or by expiry)."""

    type: Literal["approval_resolved"] = Field("approval_resolved", description=_TYPE)
    approval_id: str = Field(description="The approval.")
    decisions: list[Decision] = Field(description="The decisions applied, in order.")
    by: Literal["user", "timeout", "superseded"] = Field(
        description="Who decided: the user, expiry, or a new message from the user (rejected as superseded)."
    )


class TxUpdate(_ChatEvent):
    """A tracked transaction moved."""

    type: Literal["tx_update"] = Field("tx_update", description=_TYPE)
    call_id: str = Field(description="The tool call that made it.")
    tx_hash: str | None = Field(
        default=None, pattern=_HASH,
        description="The transaction's hash; absent only for a mismatch where nothing was signed.",
    )
    chain_id: int = Field(gt=0, description="Its chain.")
    status: TxStatus = Field(description="Where it is now.")
    confirmations: int = Field(ge=0, description="Blocks including and after the mining one (0 until mined).")
    block_number: int | None = Field(default=None, ge=0, description="The block that mined it.")
    explorer_url: str | None = Field(default=None, description="Link on the network's explorer.")
    reason: str | None = Field(default=None, description="Why it failed, was replaced, dropped or mismatched.")
    replaced_by: str | None = Field(
        default=None, pattern=_HASH, description="Extension: for replaced, the hash that took the nonce."
    )
    replaces: str | None = Field(
        default=None,
        pattern=_HASH,
        description=(
            "Extension: for a speed-up (same nonce, same transfer, another fee), the hash it replaced; "
            "tx_hash is then the new hash, followed from here on."
        ),
    )
    gas_used: int | None = Field(default=None, ge=0, description="Extension: from the receipt, once mined.")
    onchain: TxStatus | None = Field(
        default=None,
        description=(
            "Extension: for a mismatch whose transaction the wallet sent from the user's account anyway, "
            "where that transaction is on chain (it is followed to its end and what it moved is counted)."
        ),
    )
    late: bool | None = Field(
        default=None,
        description="Extension: the wallet's hash arrived after the approval expired; recorded and followed.",
    )
    differences: dict[str, Any] | None = Field(
        default=None, description="Extension: for a mismatch, each differing field: expected, actual, text."
    )


class NetworkSwitch(_ChatEvent):
    """The chat moved to another network; enough for wallet_addEthereumChain."""

    type: Literal["network_switch"] = Field("network_switch", description=_TYPE)
    chain_id: int = Field(gt=0, description="EIP-155 chain id.")
    name: str = Field(description="Registry key, lowercase.")
    symbol: str = Field(description="Native currency symbol.")
    decimals: int = Field(ge=0, description="Native currency decimals.")
    rpc_urls: list[str] = Field(description="JSON-RPC endpoints.")
    explorer_url: str | None = Field(default=None, description="Block explorer base URL.")
    display_name: str | None = Field(default=None, description="Extension: what a person reads.")
    confirmations: int | None = Field(
        default=None, ge=1, description='Extension: blocks until a transaction counts as confirmed (for "mined n/N").'
    )


class Status(_ChatEvent):
    """What the agent is doing, for a status line shown while nothing else streams."""

    type: Literal["status"] = Field("status", description=_TYPE)
    text: str = Field(
        description='"thinking…" (the model is working), "waiting for your approval", '
        '"checking the transaction" (verifying and tracking what the wallet signed).'
    )


class MessageEnd(_ChatEvent):
    """A message is complete."""

    type: Literal["message_end"] = Field("message_end", description=_TYPE)
    message_id: str = Field(description="The message.")
    finish_reason: Literal["stop", "aborted", "error", "awaiting_approval", "length", "interrupted"] = Field(
        description='Why it ended; "length" (extension): the model stopped at its output limit, and '
        'continue_message appends to the same message; "interrupted" (extension): the server process '
        "writing it stopped (a crash), and the process that took the chat over closed it with what was "
        "streamed so far; continue_message goes on with it."
    )
    usage: Usage = Field(description="Token counts and speed (of this part, for a continued message).")
    message: str | None = Field(
        default=None,
        description='Extension: what happened, for people, when the end needs saying (with "interrupted").',
    )
    status: Literal["interrupted"] | None = Field(
        default=None,
        description='Extension: "interrupted" with finish_reason "interrupted" (the name crash supervision '
        "uses for an answer its process left open).",
    )


class Error(_ChatEvent):
    """A failure outside any ack (chat-level, or not bound to a chat)."""

    type: Literal["error"] = Field("error", description=_TYPE)
    chat_id: str | None = Field(default=None, description="The chat, when it belongs to one.")  # type: ignore[assignment]
    seq: int | None = Field(default=None, ge=1, description="Present when it belongs to a chat.")  # type: ignore[assignment]
    code: ErrorCode = Field(description="One of the error codes.")
    message: str = Field(description="What happened, for people.")


_EVENT_CLASSES = (
    MessageStart,
    Token,
    ToolCall,
    ToolResult,
    PendingApproval,
    ApprovalResolved,
    TxUpdate,
    NetworkSwitch,
    Status,
    MessageEnd,
    Error,
)

ChatEvent = Annotated[
    MessageStart
    | Token
    | ToolCall
    | ToolResult
    | PendingApproval
    | ApprovalResolved
    | TxUpdate
    | NetworkSwitch
    | Status
    | MessageEnd
    | Error,
    Field(discriminator="type"),
]
"""Any server -> client chat event, told apart by ``type``."""

_CHAT_EVENT: TypeAdapter[ChatEvent] = TypeAdapter(ChatEvent)


def _event_type(model: type[_ChatEvent]) -> str:
    default = model.model_fields["type"].default
    assert isinstance(default, str)
    return default


EVENT_MODELS: Mapping[str, type[_ChatEvent]] = {_event_type(m): m for m in _EVENT_CLASSES}
"""Event type -> its model."""
EVENT_TYPES: tuple[str, ...] = tuple(EVENT_MODELS)
"""Every server -> client chat event type."""
WALLET_EVENTS: tuple[str, ...] = ("pending_approval", "network_switch", "tx_update")
"""Event types that are also sent to the user's room ``user:{address}``."""


def parse_event(obj: Any) -> ChatEvent:
    """Validate a chat event (a dict, or JSON text) into its model; raises ``ValidationError``.

        >>> parse_event({"type": "status", "chat_id": "c1", "seq": 3, "ts": 0.0, "text": "thinking…"})
        Status(type='status', chat_id='c1', seq=3, ts=0.0, text='thinking…')
    """
    if isinstance(obj, str | bytes | bytearray):
        return _CHAT_EVENT.validate_json(obj)
    return _CHAT_EVENT.validate_python(obj)
