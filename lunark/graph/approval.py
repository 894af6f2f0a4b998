"""Decisions on an approval request: the checks before a graph resumes (the shapes are the
protocol's, ``lunark.protocol``).

The shapes are LangChain's human-in-the-loop format, one decision per action
request, in the same order (see ``docs/protocol.md``)::

    {"type": "approve"}                                  # local signer signs (dev / CLI)
    {"type": "approve", "tx_hash": "0x..."}             # the wallet signed and broadcast
    {"type": "approve", "signed_tx": "0x..."}           # the wallet signed; verified, then broadcast
    {"type": "approve", "acknowledge": ["lookalike_recipient"]}  # any approve: the card's danger codes
    {"type": "edit", "edited_action": {"name": str, "args": {...}}}
    {"type": "reject", "message": str?}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import TypeAdapter, ValidationError

from lunark.errors import AcknowledgementRequired, InvalidDecision
from lunark.protocol import (
    ALL_DECISIONS,
    MAX_ARGS_CHARS,
    MAX_ARGS_DEPTH,
    ApproveDecision,
    Decision,
    EditDecision,
    EditedAction,
    RejectDecision,
    Text,
    check_json_value,
)
from lunark.tools.recipient import missing_acknowledgements

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

_DECISIONS: TypeAdapter[list[Decision]] = TypeAdapter(list[Decision])


def validate_decisions(approval: Mapping[str, Any], decisions: Sequence[Any]) -> list[dict[str, Any]]:
    """Check ``decisions`` against the pending ``approval``; return them normalized.

    Raises ``InvalidDecision`` naming the first problem: malformed shape, wrong
    count, a decision type the action does not allow, an edit of another tool,
    a signature for an action that has no transaction; ``AcknowledgementRequired`` for an approve
    that does not acknowledge every danger warning of its card.
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
        if isinstance(decision, ApproveDecision) and not decision.tx_hash:
            # A tx_hash is a transaction the wallet already broadcast: refusing it would stop nothing,
            # only leave moved funds unfollowed. It is settled like any approve (docs/safety.md).
            missing = missing_acknowledgements(request.get("warnings") or (), set(decision.acknowledge or ()))
            if missing:
                raise AcknowledgementRequired(
                    f"Decision {index} approves {request['name']} without acknowledging its "
                    f"{'warnings' if len(missing) > 1 else 'warning'} {', '.join(missing)}: nothing was signed. "
                    f"Read the card's warnings, then approve with acknowledge: {missing}.",
                    missing=missing, index=index,
                )
        out.append(decision.model_dump(exclude_none=True))
    return out
