"""The wire protocol as pydantic models: what clients send, what the server answers and emits.

This module is the single source of ``docs/protocol.md``'s reference section
(``render_markdown()``; ``scripts/gen_protocol_doc.py`` writes it), so the
documented protocol and the validated one cannot drift. Names and fields follow
the contract: they are extended, never renamed.

Two policies, on purpose:

- Client -> server payloads forbid unknown fields and bound every size, so a
  malformed or huge payload is rejected before it reaches the agent.
- Server -> client models allow unknown fields, so a field the server adds later
  does not break an older client that validates with these models.

    from lunark.protocol import SendMessage, Token, parse_event

    payload = SendMessage.model_validate(data)          # raises ValidationError
    event = parse_event({"type": "token", "chat_id": "c1", "seq": 7, "ts": 1.7e9,
                         "message_id": "m1", "text": "Hi"})
    assert isinstance(event, Token)
    wire = event.to_wire()                              # JSON-ready dict
"""

from __future__ import annotations

import enum
import json
import math
import types
import typing
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator
from pydantic.fields import FieldInfo

from lunark.chain.types import TxStatus

__all__ = [
    "ALL_DECISIONS",
    "CLIENT_EVENTS",
    "ERROR_MEANINGS",
    "EVENT_MODELS",
    "EVENT_TYPES",
    "FINAL_TX_STATUSES",
    "HTTP_STATUS",
    "ID_PATTERN",
    "MAX_ARGS_CHARS",
    "MAX_ARGS_DEPTH",
    "MAX_CONTENT_CHARS",
    "MAX_DECISIONS",
    "TX_HASH_PATTERN",
    "WALLET_EVENTS",
    "Abort",
    "ActionRequest",
    "ApprovalRequest",
    "ApprovalResolved",
    "ApprovalWarning",
    "ApproveDecision",
    "BalanceChange",
    "CallTool",
    "CallToolAck",
    "ChatEvent",
    "Contact",
    "ContinueMessage",
    "Decision",
    "EditDecision",
    "EditedAction",
    "Error",
    "ErrorAck",
    "ErrorBody",
    "ErrorCode",
    "Fact",
    "JoinChat",
    "JoinChatAck",
    "MessageEnd",
    "MessageStart",
    "NetworkInfo",
    "NetworkSwitch",
    "OkAck",
    "PendingApproval",
    "Preview",
    "RejectDecision",
    "ResumeDecisions",
    "ReviewConfig",
    "SendMessage",
    "SendMessageAck",
    "Status",
    "Text",
    "Token",
    "ToolCall",
    "ToolInfo",
    "ToolResult",
    "TxUpdate",
    "UnsignedTx",
    "Usage",
    "WalletChanged",
    "WalletChangedAck",
    "check_json_value",
    "parse_event",
    "render_js_constants",
    "render_markdown",
]

MAX_CONTENT_CHARS = 8000
"""Longest user message, in characters."""
MAX_DECISIONS = 16
"""Most decisions in one ``resume_decisions`` (one per action request)."""
ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"
"""Chat, approval and client message ids: short, and safe in room names, paths and logs."""

_ADDRESS = r"^0x[0-9a-fA-F]{40}$"
_HASH = r"^0x[0-9a-fA-F]{64}$"
# JSON-RPC quantity: 0x, no leading zeros (what hex() gives and wallets accept).
_QUANTITY = r"^0x(0|[1-9a-fA-F][0-9a-fA-F]*)$"
_DATA = r"^0x([0-9a-fA-F]{2})*$"
_HEX = r"^0x([0-9a-fA-F]{2})+$"
TX_HASH_PATTERN = _HASH
"""A transaction hash on the wire: ``0x`` and 64 hexadecimal digits."""


MAX_ARGS_DEPTH = 8
"""Deepest nesting of an edit's ``args`` (a tool's arguments are flat or nearly so)."""
MAX_ARGS_CHARS = 16_384
"""Largest edit ``args``, as compact JSON."""
_MAX_INT = 10**78  # uint256 has 78 digits


def _valid_unicode(text: str) -> str:
    """Refuse lone UTF-16 surrogates: they are no character, and no store or wire can encode them."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (it holds a lone surrogate such as \\udfff)") from None
    return text


Text = Annotated[str, AfterValidator(_valid_unicode)]
"""A string from outside: valid Unicode, so it can be stored, checkpointed and sent."""


def check_json_value(value: Any, *, max_depth: int = MAX_ARGS_DEPTH, max_chars: int = MAX_ARGS_CHARS) -> None:
    """Raise ``ValueError`` unless ``value`` is plain JSON within bounds: nesting, size, valid
    Unicode in keys and strings, integers of at most 78 digits, finite numbers. No recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                raise ValueError(f"nested deeper than {max_depth} levels")
            if isinstance(item, dict):
                for key, child in item.items():
                    if not isinstance(key, str):
                        raise ValueError("object keys must be strings")
                    _valid_unicode(key)
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            _valid_unicode(item)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if abs(item) >= _MAX_INT:
                raise ValueError("integers must have at most 78 digits")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise ValueError("numbers must be finite")
        else:
            raise ValueError(f"{type(item).__name__} is not a JSON value")
    if len(json.dumps(value, separators=(",", ":"), ensure_ascii=False)) > max_chars:
        raise ValueError(f"larger than {max_chars} characters as JSON")


# --- decisions --------------------------------------------------------------------------------
# LangChain's human-in-the-loop shapes, one decision per action request, in the same order:
#
#     {"type": "approve"}                                  # local signer signs (dev / CLI)
#     {"type": "approve", "tx_hash": "0x..."}             # the wallet signed and broadcast
#     {"type": "approve", "signed_tx": "0x..."}           # the wallet signed; verified, then broadcast
#     {"type": "edit", "edited_action": {"name": str, "args": {...}}}
#     {"type": "reject", "message": str?}

ALL_DECISIONS = ("approve", "edit", "reject")



class ApproveDecision(BaseModel):
    """Approve the action; for a transaction, optionally with the wallet's hash or signed bytes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["approve"] = Field(description="Always approve.")
    tx_hash: str | None = Field(default=None, pattern=_HASH, description="The wallet broadcast it.")
    signed_tx: str | None = Field(
        default=None, pattern=_HEX, max_length=262_144, description="Signed by the wallet; the server broadcasts it."
    )
    acknowledge: list[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]] | None = Field(
        default=None,
        max_length=32,
        description="Codes of the card's danger warnings the user acknowledged; without them the approve is "
        "refused with acknowledgement_required.",
    )

    @model_validator(mode="after")
    def _one_signature(self) -> ApproveDecision:
        if self.tx_hash and self.signed_tx:
            raise ValueError("give tx_hash or signed_tx, not both")
        return self


class EditedAction(BaseModel):
    """The action as the user wants it instead."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Text = Field(min_length=1, max_length=64, description="The tool: must be the action's own.")
    args: dict[str, Any] = Field(description="The new arguments; validated and prepared again.")

    @field_validator("args")
    @classmethod
    def _plain_json(cls, value: dict[str, Any]) -> dict[str, Any]:
        # Checked here, before anything is acked: an edit that later fails to checkpoint or to
        # encode would leave the approval claimed but never applied (a wedged chat).
        check_json_value(value)
        return value


class EditDecision(BaseModel):
    """Change the action's arguments; they are validated, re-prepared and shown again."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["edit"] = Field(description="Always edit.")
    edited_action: EditedAction = Field(description="The same tool with new arguments.")


class RejectDecision(BaseModel):
    """Do not do it; the optional message reaches the model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["reject"] = Field(description="Always reject.")
    message: Text | None = Field(default=None, max_length=2000, description="Why; it reaches the model.")


Decision = Annotated[ApproveDecision | EditDecision | RejectDecision, Field(discriminator="type")]



# --- errors -----------------------------------------------------------------------------------


class ErrorCode(StrEnum):
    """The contract's error codes; every ``LunarkError.code`` is one of them."""

    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    INVALID_INPUT = "invalid_input"
    BUSY = "busy"
    ALREADY_DECIDED = "already_decided"
    APPROVAL_EXPIRED = "approval_expired"
    NO_PENDING_APPROVAL = "no_pending_approval"
    POLICY_VIOLATION = "policy_violation"
    CHAIN_ERROR = "chain_error"
    MODEL_ERROR = "model_error"
    TOOL_ERROR = "tool_error"
    INTERNAL = "internal"
    RATE_LIMITED = "rate_limited"
    ACKNOWLEDGEMENT_REQUIRED = "acknowledgement_required"
    PREVIEW_CHANGED = "preview_changed"


ERROR_MEANINGS: Mapping[ErrorCode, str] = {
    ErrorCode.UNAUTHORIZED: "Missing, invalid or expired token (or SIWE message, nonce, signature).",
    ErrorCode.FORBIDDEN: "Signed in, but the chat belongs to another address.",
    ErrorCode.NOT_FOUND: "No such chat, approval or transaction.",
    ErrorCode.INVALID_INPUT: "Malformed payload or argument: unknown field, wrong type, too long, bad decision.",
    ErrorCode.BUSY: "A turn is already running in this chat.",
    ErrorCode.ALREADY_DECIDED: "This approval was already decided; a decision applies exactly once.",
    ErrorCode.APPROVAL_EXPIRED: "The approval expired and counts as rejected.",
    ErrorCode.NO_PENDING_APPROVAL: "The chat is not waiting for a decision.",
    ErrorCode.POLICY_VIOLATION: "The spending policy forbids the action; nothing was asked or signed.",
    ErrorCode.CHAIN_ERROR: "The chain or signer refused, failed or could not be reached.",
    ErrorCode.MODEL_ERROR: "The chat model failed and no fallback succeeded.",
    ErrorCode.TOOL_ERROR: "A tool outside Lunark (an MCP server, a plugin's service) failed, timed out or is down.",
    ErrorCode.INTERNAL: "A bug or an unexpected failure on the server.",
    ErrorCode.RATE_LIMITED: "Too many requests of this kind; `retry_after` (seconds) says when to try again.",
    ErrorCode.ACKNOWLEDGEMENT_REQUIRED: "The card has a danger warning the decision did not acknowledge; nothing "
    "was signed.",
    ErrorCode.PREVIEW_CHANGED: "Simulated again at signing, the transaction would change balances differently "
    "than the card showed; nothing was broadcast and a fresh card is offered.",
}
"""One line per error code, for people (and the generated doc)."""

HTTP_STATUS: Mapping[ErrorCode, int] = {
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.INVALID_INPUT: 400,
    ErrorCode.BUSY: 409,
    ErrorCode.ALREADY_DECIDED: 409,
    ErrorCode.NO_PENDING_APPROVAL: 409,
    ErrorCode.APPROVAL_EXPIRED: 410,
    ErrorCode.POLICY_VIOLATION: 422,
    ErrorCode.CHAIN_ERROR: 502,
    ErrorCode.MODEL_ERROR: 502,
    ErrorCode.TOOL_ERROR: 502,
    ErrorCode.INTERNAL: 500,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.ACKNOWLEDGEMENT_REQUIRED: 422,
    ErrorCode.PREVIEW_CHANGED: 409,
}
"""The HTTP status of each error code on the HTTP mirror."""


class _ServerModel(BaseModel):
    """Server -> client: unknown fields are kept, so additions never break old clients."""

    model_config = ConfigDict(extra="allow", validate_by_name=True, serialize_by_alias=True)

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict to emit: aliases (``from``), absent optional fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class _ClientModel(BaseModel):
    """Client -> server: unknown fields and loose types are rejected."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ErrorBody(_ServerModel):
    """What went wrong; extra fields carry structured details (tx hash, reason, ...)."""

    code: ErrorCode = Field(description="One of the error codes.")
    message: str = Field(description="What happened and what to do, for people.")


class ErrorAck(_ServerModel):
    """The ack of any client event that failed."""

    error: ErrorBody = Field(description="The failure.")


class OkAck(_ServerModel):
    """The ack of a client event that succeeded and has nothing else to say."""

    ok: Literal[True] = Field(default=True, description="Always true.")


# --- shared objects ---------------------------------------------------------------------------


class NetworkInfo(_ServerModel):
    """The network a chat is on (more fields may be added)."""

    chain_id: int = Field(gt=0, description="EIP-155 chain id.")
    name: str = Field(description='Registry key, lowercase, e.g. "sepolia".')
    display_name: str = Field(description='What a person reads, e.g. "Sepolia".')
    symbol: str = Field(description="Native currency symbol.")
    decimals: int = Field(ge=0, description="Native currency decimals.")
    rpc_urls: list[str] = Field(description="JSON-RPC endpoints.")
    explorer_url: str | None = Field(default=None, description="Block explorer base URL.")
    confirmations: int | None = Field(
        default=None, ge=1, description="Blocks until a transaction counts as confirmed (for \"mined n/N\")."
    )


class UnsignedTx(_ServerModel):
    """An unsigned EIP-1559 transaction for the wallet to sign.

    Integers are ``0x`` hex quantities, so the object maps straight onto
    ``eth_sendTransaction`` parameters.
    """

    chain_id: str = Field(pattern=_QUANTITY, description="EIP-155 chain id, hex quantity.")
    from_: str = Field(alias="from", pattern=_ADDRESS, description="The user's address (the sender).")
    to: str = Field(pattern=_ADDRESS, description="Recipient, or the token contract for ERC-20.")
    value: str = Field(pattern=_QUANTITY, description="Wei sent, hex quantity (0x0 for ERC-20).")
    data: str = Field(pattern=_DATA, description="Calldata: 0x, or transfer(recipient, amount).")
    gas: str = Field(pattern=_QUANTITY, description="Gas limit, hex quantity.")
    max_fee_per_gas: str = Field(pattern=_QUANTITY, description="EIP-1559 fee cap, wei per gas, hex.")
    max_priority_fee_per_gas: str = Field(pattern=_QUANTITY, description="EIP-1559 tip, wei per gas, hex.")
    nonce: str = Field(pattern=_QUANTITY, description="The sender's nonce, hex quantity.")


class Fact(_ServerModel):
    """One row of an approval card: what a person reads."""

    label: str = Field(description='What the row is, e.g. "Server".')
    value: str = Field(description="Its value, as text.")


class BalanceChange(_ServerModel):
    """One asset balance a transaction would change, as the simulation saw it."""

    address: str = Field(pattern=_ADDRESS, description="Whose balance: the user's or the recipient's.")
    asset: str = Field(description='"native", or the ERC-20 token\'s contract address.')
    symbol: str = Field(description="The asset's symbol, e.g. ETH or TKN.")
    decimals: int = Field(ge=0, le=255, description="The asset's decimals.")
    before: str = Field(pattern=r"^[0-9]+$", description="Balance before, base units, decimal string.")
    after: str = Field(pattern=r"^[0-9]+$", description="Balance after, base units, decimal string.")
    delta: str = Field(pattern=r"^-?[0-9]+$", description="after - before, base units, decimal string.")


class Preview(_ServerModel):
    """What the transaction would change, simulated (``eth_simulateV1``) on the chat's network."""

    simulated: bool = Field(description="False when the node could not simulate it: then there are no changes.")
    changes: list[BalanceChange] = Field(
        default_factory=list, description="Every balance that changes, the user's first; native includes no fee."
    )
    gas_used: int | None = Field(default=None, ge=0, description="Gas the simulation used.")
    max_fee: str | None = Field(
        default=None, pattern=r"^[0-9]+$", description="Worst-case fee in wei (gas limit x fee cap), decimal string."
    )
    reason: str | None = Field(default=None, description="Why there is no preview, when simulated is false.")


class ApprovalWarning(_ServerModel):
    """Something the user should know before deciding (docs/safety.md lists every code)."""

    code: str = Field(description="Stable code, e.g. lookalike_recipient.")
    severity: Literal["info", "warning", "danger"] = Field(
        description="danger needs the code in the approve decision's acknowledge list."
    )
    message: str = Field(description="A plain sentence for the user.")


class ActionRequest(_ServerModel):
    """One tool call that waits for the user's decision."""

    call_id: str = Field(description="The tool call it is about.")
    name: str = Field(description="Tool name, e.g. transfer.")
    args: dict[str, Any] = Field(description="The tool's arguments as the model gave them.")
    description: str = Field(description="What the tool does.")
    summary: str = Field(description="What a person reads: amount, symbol, recipient, network, fee.")
    tx: UnsignedTx | None = Field(default=None, description="The transaction to sign, for transfers.")
    facts: list[Fact] | None = Field(
        default=None,
        description="Rows to show on the card, in order, for tools a client has no card of its own for "
        "(an MCP tool: server, tool, hints, arguments).",
    )
    preview: Preview | None = Field(default=None, description="The balance changes, for transactions.")
    warnings: list[ApprovalWarning] = Field(
        default_factory=list, description="What the user should know first; danger ones need acknowledging."
    )
    fingerprint: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="sha256 of the canonical JSON of the approved action: the audit trail's intent fingerprint.",
    )
    recipient_name: str | None = Field(
        default=None, description="The recipient's ENS name or contact label, when it has one."
    )


class ReviewConfig(_ServerModel):
    """Which decisions one tool allows."""

    action_name: str = Field(description="Tool name.")
    allowed_decisions: list[Literal["approve", "edit", "reject"]] = Field(
        description="Decision types allowed for it."
    )


class ApprovalRequest(_ServerModel):
    """A pending approval, as ``join_chat`` and ``GET /api/chats/{id}`` return it."""

    approval_id: str = Field(description="Answer with this id in resume_decisions.")
    expires_at: str = Field(description="ISO 8601 UTC time after which it counts as rejected.")
    action_requests: list[ActionRequest] = Field(description="What to decide, in order.")
    review_configs: list[ReviewConfig] = Field(description="Allowed decisions per tool.")


class Usage(_ServerModel):
    """How the model did in one message."""

    output_tokens: int = Field(ge=0, description="Tokens the model produced.")
    ttft_ms: float | None = Field(default=None, description="Time to first token, milliseconds.")
    tokens_per_s: float | None = Field(default=None, description="Output tokens per second.")


# --- client -> server ---------------------------------------------------------------------------

_ChatId = Annotated[str, Field(pattern=ID_PATTERN)]


class JoinChat(_ClientModel):
    """Join (or create) a chat and replay what was missed."""

    chat_id: _ChatId | None = Field(default=None, description="The chat to join; omit it to create one.")
    last_seq: int | None = Field(
        default=None, ge=0, description="The last seq applied; events after it are replayed."
    )


class SendMessage(_ClientModel):
    """Send a user message; it starts a turn."""

    chat_id: _ChatId = Field(description="The chat.")
    content: Text = Field(min_length=1, max_length=MAX_CONTENT_CHARS, description="The message text.")
    client_message_id: str = Field(
        pattern=ID_PATTERN, description="Client-made id; a repeat is the same message."
    )


class ResumeDecisions(_ClientModel):
    """Answer a pending approval, one decision per action request, in order."""

    chat_id: _ChatId = Field(description="The chat.")
    approval_id: str = Field(pattern=ID_PATTERN, description="The pending approval.")
    decisions: list[Decision] = Field(
        min_length=1, max_length=MAX_DECISIONS, description="One Decision per action request."
    )


class Abort(_ClientModel):
    """Stop the running turn."""

    chat_id: _ChatId = Field(description="The chat.")


class ContinueMessage(_ClientModel):
    """Continue an answer the model cut at its output limit (``message_end`` with
    ``finish_reason: "length"``): new ``token`` events for the same ``message_id``, then a new
    ``message_end``. Only the chat's last answer, and only while no turn runs."""

    chat_id: _ChatId = Field(description="The chat.")
    message_id: str = Field(pattern=ID_PATTERN, description="The assistant message to continue.")


class CallTool(_ClientModel):
    """Run one tool call the user's own client asks for (e.g. ``lunark mcp`` for an MCP host), in the
    chat, exactly as if the model had proposed it: validated, checked by the spending policy, and
    shown for approval when the tool needs it (nothing runs that would not run for the model's
    call). Its events follow with the returned ``call_id``; the turn ends after the call, without
    a model answer. ``busy`` while a turn runs or an approval waits."""

    chat_id: _ChatId = Field(description="The chat.")
    name: Text = Field(min_length=1, max_length=64, description="The tool, as the model would name it.")
    args: dict[str, Any] = Field(description="Its arguments; validated against the tool's schema.")

    @field_validator("args")
    @classmethod
    def _plain_json(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_json_value(value)  # as an edit's: bounded, valid Unicode, before anything is acked
        return value


class WalletChanged(_ClientModel):
    """The user switched network in the wallet."""

    chat_id: _ChatId = Field(description="The chat.")
    chain_id: int = Field(gt=0, description="The wallet's chain id now.")


class JoinChatAck(_ServerModel):
    """The ack of ``join_chat``; the replay of missed events follows it."""

    chat_id: str = Field(description="The chat joined (or created).")
    last_seq: int = Field(ge=0, description="The chat's latest seq now.")
    network: NetworkInfo = Field(description="The chat's network.")
    pending_approval: ApprovalRequest | None = Field(
        default=None, description="The approval waiting for a decision, if any."
    )


class SendMessageAck(_ServerModel):
    """The ack of ``send_message``."""

    message_id: str = Field(description="The user message's id.")


class CallToolAck(_ServerModel):
    """The ack of ``call_tool``."""

    call_id: str = Field(description="The call id that its tool_call, action request, tx_update, tool_result carry.")


class ToolInfo(_ServerModel):
    """One tool the agent can call, as ``GET /api/tools`` lists it (``LunarkClient.list_tools``): what
    ``call_tool`` takes, and whether a call waits for the user's decision."""

    name: str = Field(description="The tool as the model and `call_tool` name it (`notes__add_note`).")
    display_name: str = Field(description="What people read: `server.tool` for an MCP tool, else `name`.")
    title: str | None = Field(default=None, description="A short human title, when the tool has one.")
    description: str = Field(description="What the tool does, as the model reads it.")
    input_schema: dict[str, Any] = Field(description="JSON Schema of its arguments.")
    approval: Literal["always", "never", "rule"] = Field(
        description="`always`: every call waits for the user; `never`: runs at once; `rule`: depends on "
        "the call (e.g. an amount above a limit), so treat it as waiting."
    )
    source: Literal["builtin", "plugin", "mcp"] = Field(description="Where the tool comes from.")
    mcp_server: str | None = Field(default=None, description="The MCP server of an MCP tool.")
    hints: dict[str, bool] = Field(
        default_factory=dict,
        description="An MCP tool's annotations as its server declared them (`readOnlyHint`, "
        "`destructiveHint`, `idempotentHint`, `openWorldHint`); empty when none.",
    )


class Contact(_ServerModel):
    """One of the signed-in user's contacts (``GET /api/contacts``, ``LunarkClient.contacts``): a label
    the user can send to instead of an address ("send 1 ETH to alice")."""

    label: str = Field(description="As the user saved it; unique per user whatever its case (`alice` is `Alice`).")
    address: str = Field(description="The contact's checksum address.")
    created_at: str = Field(description="When the address was first saved (ISO 8601, UTC).")


class WalletChangedAck(_ServerModel):
    """The ack of ``wallet_changed``."""

    ok: Literal[True] = Field(default=True, description="Always true.")
    network: NetworkInfo = Field(description="The chat's network now.")


CLIENT_EVENTS: Mapping[str, tuple[type[_ClientModel], type[_ServerModel]]] = {
    "join_chat": (JoinChat, JoinChatAck),
    "send_message": (SendMessage, SendMessageAck),
    "resume_decisions": (ResumeDecisions, OkAck),
    "abort": (Abort, OkAck),
    "wallet_changed": (WalletChanged, WalletChangedAck),
    "continue_message": (ContinueMessage, OkAck),
    "call_tool": (CallTool, CallToolAck),
}
"""Socket.IO event name -> (payload model, success ack model); a failure acks ``ErrorAck``."""


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
    finish_reason: Literal["stop", "aborted", "error", "awaiting_approval", "length"] = Field(
        description='Why it ended; "length" (extension): the model stopped at its output limit, and '
        "continue_message appends to the same message."
    )
    usage: Usage = Field(description="Token counts and speed (of this part, for a continued message).")


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
FINAL_TX_STATUSES: tuple[str, ...] = tuple(status.value for status in TxStatus if status.is_final)
"""``tx_update`` statuses after which nothing more happens to the transaction."""
"""Event types that are also sent to the user's room ``user:{address}``."""


def parse_event(obj: Any) -> ChatEvent:
    """Validate a chat event (a dict, or JSON text) into its model; raises ``ValidationError``.

        >>> parse_event({"type": "status", "chat_id": "c1", "seq": 3, "ts": 0.0, "text": "thinking…"})
        Status(type='status', chat_id='c1', seq=3, ts=0.0, text='thinking…')
    """
    if isinstance(obj, str | bytes | bytearray):
        return _CHAT_EVENT.validate_json(obj)
    return _CHAT_EVENT.validate_python(obj)


# --- the generated reference ---------------------------------------------------------------------

_DECISION_MODELS: tuple[type[BaseModel], ...] = (ApproveDecision, EditDecision, EditedAction, RejectDecision)
_SHARED_MODELS: tuple[type[BaseModel], ...] = (
    ErrorBody,
    ErrorAck,
    OkAck,
    NetworkInfo,
    ApprovalRequest,
    ActionRequest,
    Fact,
    Preview,
    BalanceChange,
    ApprovalWarning,
    ReviewConfig,
    UnsignedTx,
    Usage,
)
_ENVELOPE = ("type", "chat_id", "seq", "ts")


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Annotated:
        inner = typing.get_args(tp)[0]
        if _is_union(inner) and set(typing.get_args(inner)) == {ApproveDecision, EditDecision, RejectDecision}:
            return "Decision"
        return _type_name(inner)
    if _is_union(tp):
        return " | ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is Literal:
        return " | ".join("true" if a is True else f'"{a}"' for a in typing.get_args(tp))
    if origin is list:
        return f"[{_type_name(typing.get_args(tp)[0])}]"
    if origin is dict or tp is dict:
        return "object"
    if tp is Any:
        return "JSON"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if tp is ErrorCode:
            return "ErrorCode"
        return " | ".join(f'"{m.value}"' for m in tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp.__name__
    names = {str: "string", int: "integer", float: "number", bool: "boolean"}
    if tp in names:
        return names[tp]
    raise TypeError(f"no doc name for {tp!r}")  # pragma: no cover - a new field type needs one


def _metadata(info: FieldInfo) -> list[Any]:
    found = list(info.metadata)
    # Constraints inside an Annotated alias under a union (``_ChatId | None``) stay on the alias.
    for arg in typing.get_args(info.annotation):
        if typing.get_origin(arg) is Annotated:
            for meta in typing.get_args(arg)[1:]:
                found += meta.metadata if isinstance(meta, FieldInfo) else [meta]
    return found


def _constraints(info: FieldInfo) -> str:
    parts: list[str] = []
    lengths: dict[str, int] = {}
    for meta in _metadata(info):
        for key in ("min_length", "max_length"):
            if getattr(meta, key, None) is not None:
                lengths[key] = getattr(meta, key)
        for key, sign in (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤")):
            if getattr(meta, key, None) is not None:
                parts.append(f"{sign} {getattr(meta, key)}")
        if getattr(meta, "pattern", None) is not None:
            parts.append(f"`{meta.pattern}`")
    unit = "items" if typing.get_origin(info.annotation) is list else "chars"
    low, high = lengths.get("min_length"), lengths.get("max_length")
    if low is not None and high is not None:
        parts.insert(0, f"{low}–{high} {unit}")
    elif high is not None:
        parts.insert(0, f"≤ {high} {unit}")
    elif low is not None:
        parts.insert(0, f"≥ {low} {unit}")
    return ", ".join(parts)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _description(model: type[BaseModel], name: str, info: FieldInfo) -> str:
    return info.description or ""


def _wire_name(name: str, info: FieldInfo) -> str:
    return info.alias or name


def _field_rows(model: type[BaseModel], names: list[str], *, constraints: bool) -> list[str]:
    if constraints:
        rows = ["| field | type | required | constraints | description |", "| --- | --- | --- | --- | --- |"]
    else:
        rows = ["| field | type | required | description |", "| --- | --- | --- | --- |"]
    for name in names:
        info = model.model_fields[name]
        cells = [
            f"`{_wire_name(name, info)}`",
            _type_name(info.annotation),
            # A non-null default is always on the wire (to_wire() drops only nulls).
            "yes" if info.is_required() or info.default is not None else "no",
        ]
        if constraints:
            cells.append(_constraints(info))
        cells.append(_description(model, name, info))
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return rows


def _doc(model: type[BaseModel]) -> str:
    text = model.__doc__ or ""
    return " ".join(text.strip().split("\n\n")[0].split()).replace("``", "`")


def _model_section(model: type[BaseModel], level: str, *, constraints: bool = True) -> list[str]:
    return [
        f"{level} `{model.__name__}`",
        "",
        _doc(model),
        "",
        *_field_rows(model, list(model.model_fields), constraints=constraints),
        "",
    ]


def render_markdown() -> str:
    """The reference section of ``docs/protocol.md``, generated from the models."""
    out: list[str] = ["### Client -> server events", ""]
    out += [
        "Payloads reject unknown fields and values of the wrong JSON type (no coercion).",
        "Every event is acked: with the ack below, or with an `ErrorAck` on failure.",
        "",
    ]
    for event, (payload, ack) in CLIENT_EVENTS.items():
        out += [
            f"#### `{event}`",
            "",
            f"{_doc(payload)} Payload `{payload.__name__}`:",
            "",
            *_field_rows(payload, list(payload.model_fields), constraints=True),
            "",
        ]
        if ack is OkAck:
            out += ["Ack: `OkAck` (`{\"ok\": true}`).", ""]
        else:
            out += [
                f"Ack `{ack.__name__}`:",
                "",
                *_field_rows(ack, list(ack.model_fields), constraints=False),
                "",
            ]

    out += ["### Server -> client chat events", ""]
    out += [
        "Every chat event carries these fields (`error` makes `chat_id` and `seq` optional).",
        "Unknown fields may appear and must be ignored.",
        "",
        *_field_rows(_ChatEvent, list(_ENVELOPE), constraints=True),
        "",
    ]
    base = _ChatEvent.model_fields
    for type_, model in EVENT_MODELS.items():
        fields = model.model_fields
        own = [
            name
            for name in fields
            if name != "type"
            and not (
                name in base
                and fields[name].annotation == base[name].annotation
                and fields[name].is_required() == base[name].is_required()
            )
        ]
        wallet = " Also sent to `user:{address}`." if type_ in WALLET_EVENTS else ""
        out += [
            f"#### `{type_}`",
            "",
            f"{_doc(model)}{wallet} Model `{model.__name__}`:",
            "",
            *_field_rows(model, own, constraints=True),
            "",
        ]

    out += ["### Objects", ""]
    for shared in _SHARED_MODELS:
        out += _model_section(shared, "####")

    out += [
        "### Decisions",
        "",
        "`Decision` is one of the following, told apart by `type`; one per action request, in order.",
        f"A tool's `allowed_decisions` is a subset of {', '.join(f'`{d}`' for d in ALL_DECISIONS)}.",
        "",
    ]
    for decision in _DECISION_MODELS:
        out += _model_section(decision, "####")

    out += ["### Error codes", "", "| code | meaning |", "| --- | --- |"]
    out += [f"| `{code.value}` | {_cell(ERROR_MEANINGS[code])} |" for code in ErrorCode]
    return "\n".join(out) + "\n"


def render_js_constants() -> str:
    """The constants block of ``lunark/web/lib/protocol.js`` (``scripts/gen_protocol_js.py``)."""

    def js(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False)

    lines = [
        "/** Socket.IO event names of chat events. */",
        f"export const EVENT_TYPES = Object.freeze({js(list(EVENT_TYPES))});",
        "",
        "/** Events also sent to `user:{address}`, i.e. possibly for a chat the socket has not joined. */",
        f"export const WALLET_EVENTS = Object.freeze({js(list(WALLET_EVENTS))});",
        "",
        "/** Events a client sends; each is answered by an ack. */",
        f"export const CLIENT_EVENTS = Object.freeze({js(list(CLIENT_EVENTS))});",
        "",
        "/** tx_update statuses, and those after which nothing more happens to the transaction. */",
        f"export const TX_STATUSES = Object.freeze({js([status.value for status in TxStatus])});",
        f"export const FINAL_TX_STATUSES = Object.freeze({js(list(FINAL_TX_STATUSES))});",
        "",
        "/** Decision types, one per action request. */",
        f"export const DECISION_TYPES = Object.freeze({js(list(ALL_DECISIONS))});",
        "",
        "/** Error codes and the HTTP status of each on the HTTP mirror. */",
        "export const ERROR_CODES = Object.freeze({",
        *(f"  {code.value}: {HTTP_STATUS[code]}," for code in ErrorCode),
        "});",
    ]
    return "\n".join(lines) + "\n"
