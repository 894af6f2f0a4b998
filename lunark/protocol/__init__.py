"""The wire protocol as pydantic models: what clients send, what the server answers and emits.

One module a concern: ``_limits`` (sizes, patterns, the JSON check), ``_codes`` (error codes, HTTP
statuses, transaction statuses), ``_decisions``, ``_objects`` (base models, shared objects),
``_client`` (client -> server events and acks), ``_events`` (server -> client events, ``parse_event``),
``_build`` (the constructors every event and decision Lunark sends is built with: ``token``,
``message_end``, ``usage``, ``reject_decision``...; nothing else of Lunark writes one as a dict).

This package is the single source of ``docs/protocol.md``'s reference section and of
``lunark/web/lib``'s constants and types (``lunark.protocol._render``; ``scripts/gen_protocol_doc.py``
and ``scripts/gen_protocol_js.py`` write them), so the documented protocol and the validated one
cannot drift. It sits at the bottom of Lunark: it imports nothing else of it (tests/test_layers.py).
Names and fields follow the contract: they are extended, never renamed.

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

from lunark.protocol._agui import agui_resume_schema
from lunark.protocol._build import (
    FinishReason,
    ToolResultStatus,
    approval_resolved,
    approve_decision,
    chat_event,
    edit_decision,
    error,
    message_end,
    message_start,
    network_switch,
    pending_approval,
    reject_decision,
    status,
    token,
    tool_call,
    tool_result,
    tx_update,
    usage,
)
from lunark.protocol._client import (
    CLIENT_EVENTS,
    Abort,
    CallTool,
    CallToolAck,
    Contact,
    ContinueMessage,
    JoinChat,
    JoinChatAck,
    ResumeDecisions,
    SendMessage,
    SendMessageAck,
    ToolInfo,
    WalletChanged,
    WalletChangedAck,
)
from lunark.protocol._codes import (
    ERROR_MEANINGS,
    FINAL_TX_STATUSES,
    HTTP_STATUS,
    ErrorCode,
    TxStatus,
)
from lunark.protocol._decisions import (
    ALL_DECISIONS,
    ApproveDecision,
    Decision,
    EditDecision,
    EditedAction,
    RejectDecision,
)
from lunark.protocol._events import (
    EVENT_MODELS,
    EVENT_TYPES,
    WALLET_EVENTS,
    ApprovalResolved,
    ChatEvent,
    Error,
    MessageEnd,
    MessageStart,
    NetworkSwitch,
    PendingApproval,
    Status,
    Token,
    ToolCall,
    ToolResult,
    TxUpdate,
    parse_event,
)
from lunark.protocol._limits import (
    ID_PATTERN,
    MAX_ARGS_CHARS,
    MAX_ARGS_DEPTH,
    MAX_CONTENT_CHARS,
    MAX_DECISIONS,
    TX_HASH_PATTERN,
    Text,
    check_json_value,
)
from lunark.protocol._objects import (
    ActionRequest,
    ApprovalRequest,
    ApprovalWarning,
    BalanceChange,
    ErrorAck,
    ErrorBody,
    Fact,
    NetworkInfo,
    OkAck,
    Preview,
    ReviewConfig,
    UnsignedTx,
    Usage,
)

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
    "FinishReason",
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
    "ToolResultStatus",
    "TxStatus",
    "TxUpdate",
    "UnsignedTx",
    "Usage",
    "WalletChanged",
    "WalletChangedAck",
    "agui_resume_schema",
    "approval_resolved",
    "approve_decision",
    "chat_event",
    "check_json_value",
    "edit_decision",
    "error",
    "message_end",
    "message_start",
    "network_switch",
    "parse_event",
    "pending_approval",
    "reject_decision",
    "status",
    "token",
    "tool_call",
    "tool_result",
    "tx_update",
    "usage",
]
