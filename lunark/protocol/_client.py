"""Client -> server events and their acks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from lunark.protocol._decisions import Decision
from lunark.protocol._limits import ID_PATTERN, MAX_CONTENT_CHARS, MAX_DECISIONS, Text, check_json_value
from lunark.protocol._objects import ApprovalRequest, NetworkInfo, OkAck, _ClientModel, _ServerModel

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
    ``finish_reason: "length"``) or that a crash interrupted (``"interrupted"``): new ``token``
    events for the same ``message_id``, then a new ``message_end``. Only the chat's last answer,
    and only while no turn runs."""

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
