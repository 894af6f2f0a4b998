"""An approval as AG-UI interrupts, and a resume back as Lunark decisions.

One interrupt per action of the approval card, its id ``<approval_id>:<call_id>``, the card as
its ``metadata`` (the keys docs/ag-ui.md lists) with ``metadata.governance.actionFingerprint``,
and a ``responseSchema`` naming the decisions the action allows. A resume entry becomes one
Lunark decision; to approve or edit, it must name the card's fingerprint.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ag_ui.core import Interrupt, ResumeEntry

from lunark.approvals import Approval, iso
from lunark.errors import InvalidInput
from lunark.fingerprint import action_fingerprint as card_fingerprint
from lunark.protocol import (
    ActionRequest,
    agui_resume_schema,
    approve_decision,
    edit_decision,
    reject_decision,
)

__all__ = ["INTERRUPT_REASON", "NetworkName", "action_fingerprint", "decision", "interrupt_id", "interrupts_for"]

INTERRUPT_REASON = "tool_approval"
"""The ``reason`` of every interrupt Lunark raises: a state-changing tool call waits for the user."""

NetworkName = Callable[[int], dict[str, Any] | None]
"""A chain id's network as the card shows it (``chainId``, ``name``, ``displayName``, ``symbol``);
None for a chain this server does not know."""

_FINGERPRINT = r"^[0-9a-f]{64}$"


def action_fingerprint(action: ActionRequest, chain_id: int) -> str:
    """The card's intent fingerprint: the one the server put on it, or, for a card offered before
    cards carried one, the same hash computed here (``lunark.fingerprint``; ``chain_id`` is the
    chat's, used when the action has no transaction to name its chain)."""
    if action.fingerprint:
        return action.fingerprint
    tx = action.tx.model_dump(mode="json", by_alias=True) if action.tx is not None else None
    return card_fingerprint(action.name, action.args, int(tx["chain_id"], 16) if tx else chain_id, tx)


def interrupts_for(approval: Approval, network_name: NetworkName, chain_id: int) -> list[Interrupt]:
    """One AG-UI interrupt per action of a pending ``approval`` (``Approval.of(pending_approval)``)
    of a chat on ``chain_id``, the card in its metadata."""
    configs = approval.payload.get("review_configs") or []
    allowed = {c["action_name"]: list(c["allowed_decisions"]) for c in configs}
    out: list[Interrupt] = []
    for raw in approval.action_requests:
        action = ActionRequest.model_validate(raw)
        decisions = allowed.get(action.name, ["approve", "edit", "reject"])
        fingerprint = action_fingerprint(action, chain_id)
        out.append(Interrupt(
            id=interrupt_id(approval.approval_id, action.call_id),
            reason=INTERRUPT_REASON,
            message=action.summary,
            tool_call_id=action.call_id,
            response_schema=agui_resume_schema(decisions, fingerprint),
            expires_at=iso(approval.expires_at),
            metadata=_card(approval.approval_id, action, decisions, fingerprint, network_name),
        ))
    return out


def interrupt_id(approval_id: str, call_id: str) -> str:
    return f"{approval_id}:{call_id}"


def _card(approval_id: str, action: ActionRequest, decisions: list[str], fingerprint: str,
          network_name: NetworkName) -> dict[str, Any]:
    """What the user approves, as a CopilotKit component renders it (docs/ag-ui.md lists the keys)."""
    card: dict[str, Any] = {
        "approvalId": approval_id,
        "callId": action.call_id,
        "tool": action.name,
        "args": action.args,
        "summary": action.summary,
        "description": action.description,
        "allowedDecisions": decisions,
        "governance": {"actionFingerprint": fingerprint},
    }
    args = action.args
    if isinstance(args.get("amount"), str | int | float):
        card["amount"] = str(args["amount"])
    if isinstance(args.get("to"), str):
        card["recipient"] = args["to"]
    if action.recipient_name:
        card["recipientName"] = action.recipient_name
    tx = action.tx
    if tx is not None:
        chain_id = int(tx.chain_id, 16)
        network = network_name(chain_id) or {"chainId": chain_id}
        card["network"] = network
        card["tx"] = tx.model_dump(mode="json", by_alias=True)
        symbol = network.get("symbol", "")
        card.setdefault("symbol", args.get("token") or symbol)
        # The most the network fee can be: what the wallet's transaction may not exceed (by far).
        max_fee = action.preview.max_fee if action.preview and action.preview.max_fee else None
        wei = int(max_fee) if max_fee is not None else int(tx.gas, 16) * int(tx.max_fee_per_gas, 16)
        card["fee"] = {"maxFeeWei": str(wei), "symbol": symbol}
    if action.preview is not None:
        card["preview"] = action.preview.model_dump(mode="json", exclude_none=True)
    if action.warnings:
        card["warnings"] = [w.model_dump(mode="json") for w in action.warnings]
    if action.facts:
        card["facts"] = [f.model_dump(mode="json") for f in action.facts]
    return card


def decision(entry: ResumeEntry, action: ActionRequest | None, chain_id: int) -> dict[str, Any]:
    """A Lunark decision from one resume entry; ``action`` is the card's action when it is pending
    (then the entry's fingerprint must be that card's)."""
    if entry.status == "cancelled":
        return reject_decision("Cancelled in the app.")
    payload = entry.payload
    if not isinstance(payload, dict):
        raise InvalidInput(f"Interrupt {entry.interrupt_id}: a resolved resume needs a payload object "
                           "(see the interrupt's responseSchema).", interrupt_id=entry.interrupt_id)
    kind = payload.get("type")
    given = payload.get("actionFingerprint")
    envelope = (entry.metadata or {}).get("governance")
    if given is None and isinstance(envelope, dict):
        given = envelope.get("actionFingerprint")
    if given is not None and (not isinstance(given, str) or not re.fullmatch(_FINGERPRINT, given)):
        raise InvalidInput(f"Interrupt {entry.interrupt_id}: actionFingerprint must be 64 hex digits.",
                           interrupt_id=entry.interrupt_id, reason="fingerprint_mismatch")
    if kind in ("approve", "edit") and given is None:
        raise InvalidInput(f"Interrupt {entry.interrupt_id}: to {kind}, name the card you decided on "
                           "(payload.actionFingerprint = metadata.governance.actionFingerprint).",
                           interrupt_id=entry.interrupt_id, reason="fingerprint_missing")
    if action is not None and given is not None and given != action_fingerprint(action, chain_id):
        raise InvalidInput(f"Interrupt {entry.interrupt_id}: the fingerprint is not the pending card's; that card "
                           "changed or was never offered. Nothing was decided.",
                           interrupt_id=entry.interrupt_id, reason="fingerprint_mismatch")
    if kind == "approve":
        return approve_decision(tx_hash=payload.get("txHash"), signed_tx=payload.get("signedTx"),
                                acknowledge=payload.get("acknowledge"))
    if kind == "edit":
        # Off the pending card the name only has to be well formed: the runner refuses the decision.
        name = action.name if action is not None else str(payload.get("name") or "unknown")
        args: Any = payload.get("args")  # checked with the rest, by ResumeDecisions
        return edit_decision(name, args)
    if kind == "reject":
        message = payload.get("message")
        return reject_decision(message)
    raise InvalidInput(f"Interrupt {entry.interrupt_id}: payload.type must be approve, edit or reject.",
                       interrupt_id=entry.interrupt_id)
