"""The decisions a user answers an approval with: approve, edit, reject."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lunark.protocol._limits import _HASH, _HEX, Text, check_json_value

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
