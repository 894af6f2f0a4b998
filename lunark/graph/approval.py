"""Decisions on an approval request: their shapes and the checks before a graph resumes.

The shapes are LangChain's human-in-the-loop format, one decision per action
request, in the same order (see ``docs/protocol.md``)::

    {"type": "approve"}                                  # local signer signs (dev / CLI)
    {"type": "approve", "tx_hash": "0x..."}             # the wallet signed and broadcast
    {"type": "approve", "signed_tx": "0x..."}           # the wallet signed; verified, then broadcast
    {"type": "edit", "edited_action": {"name": str, "args": {...}}}
    {"type": "reject", "message": str?}
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from lunark.errors import InvalidDecision

__all__ = [
    "ALL_DECISIONS",
    "MAX_ARGS_CHARS",
    "MAX_ARGS_DEPTH",
    "ApproveDecision",
    "Decision",
    "EditDecision",
    "EditedAction",
    "RejectDecision",
    "Text",
    "check_json_value",
    "validate_decisions",
]

ALL_DECISIONS = ("approve", "edit", "reject")

_HASH = r"^0x[0-9a-fA-F]{64}$"
_HEX = r"^0x([0-9a-fA-F]{2})+$"

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


class ApproveDecision(BaseModel):
    """Approve the action; for a transaction, optionally with the wallet's hash or signed bytes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["approve"]
    tx_hash: str | None = Field(default=None, pattern=_HASH, description="The wallet broadcast it.")
    signed_tx: str | None = Field(
        default=None, pattern=_HEX, max_length=262_144, description="Signed by the wallet; the server broadcasts it."
    )

    @model_validator(mode="after")
    def _one_signature(self) -> ApproveDecision:
        if self.tx_hash and self.signed_tx:
            raise ValueError("give tx_hash or signed_tx, not both")
        return self


class EditedAction(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Text = Field(min_length=1, max_length=64)
    args: dict[str, Any]

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

    type: Literal["edit"]
    edited_action: EditedAction


class RejectDecision(BaseModel):
    """Do not do it; the optional message reaches the model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["reject"]
    message: Text | None = Field(default=None, max_length=2000)


Decision = Annotated[ApproveDecision | EditDecision | RejectDecision, Field(discriminator="type")]
_DECISIONS: TypeAdapter[list[Decision]] = TypeAdapter(list[Decision])


def validate_decisions(approval: Mapping[str, Any], decisions: Sequence[Any]) -> list[dict[str, Any]]:
    """Check ``decisions`` against the pending ``approval``; return them normalized.

    Raises ``InvalidDecision`` naming the first problem: malformed shape, wrong
    count, a decision type the action does not allow, an edit of another tool,
    a signature for an action that has no transaction.
    """
    if not isinstance(decisions, Sequence) or isinstance(decisions, str | bytes):
        raise InvalidDecision("decisions must be a list, one per action request.")
    try:
        parsed = _DECISIONS.validate_python(list(decisions))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidDecision(f"Malformed decision at {where}: {first['msg']}.") from None
    requests = list(approval.get("action_requests", []))
    configs = {c["action_name"]: c for c in approval.get("review_configs", [])}
    if len(parsed) != len(requests):
        raise InvalidDecision(
            f"Expected {len(requests)} decision(s), one per action request, got {len(parsed)}.",
            expected=len(requests),
        )
    out: list[dict[str, Any]] = []
    for index, (decision, request) in enumerate(zip(parsed, requests, strict=True)):
        allowed = configs.get(request["name"], {}).get("allowed_decisions", list(ALL_DECISIONS))
        if decision.type not in allowed:
            raise InvalidDecision(
                f"Decision {index} is {decision.type!r}, but {request['name']} allows {', '.join(allowed)}.",
                index=index,
            )
        if isinstance(decision, EditDecision) and decision.edited_action.name != request["name"]:
            raise InvalidDecision(
                f"Decision {index} edits {decision.edited_action.name!r}, but the action is {request['name']!r}.",
                index=index,
            )
        if isinstance(decision, ApproveDecision) and (decision.tx_hash or decision.signed_tx) and not request.get("tx"):
            raise InvalidDecision(
                f"Decision {index} carries a transaction, but {request['name']} has none to sign.", index=index
            )
        out.append(decision.model_dump(exclude_none=True))
    return out
