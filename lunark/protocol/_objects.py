"""The base models of both directions, error bodies and the objects events share."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lunark.protocol._codes import ErrorCode
from lunark.protocol._limits import _ADDRESS, _DATA, _QUANTITY


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
