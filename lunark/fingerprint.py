"""The intent fingerprint of a card: one hash that names exactly what the user was asked to approve.

The approved action is ``{"tool", "args", "chain_id", "tx"}``: the tool's name, its arguments as
prepared (e.g. a share like "all" already resolved to the exact amount), the chat's chain id and the
unsigned transaction fields the wallet is asked to sign (None for an action without one). Its
fingerprint is ``lunark.audit.fingerprint`` of that: the sha256 (hex) of its canonical JSON (sorted
keys, no spaces, UTF-8). It is on the card (``ActionRequest.fingerprint``) and in the audit trail,
so a client or an auditor recomputes it from the card alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lunark.audit import fingerprint

__all__ = ["action_fingerprint", "approved_action"]


def approved_action(
    name: str, args: Mapping[str, Any], chain_id: int, tx: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The approved action whose canonical JSON the fingerprint hashes."""
    return {"tool": name, "args": dict(args), "chain_id": chain_id, "tx": dict(tx) if tx is not None else None}


def action_fingerprint(
    name: str, args: Mapping[str, Any], chain_id: int, tx: Mapping[str, Any] | None
) -> str:
    """sha256 hex of the canonical JSON of the approved action (``lunark.audit.fingerprint``)."""
    return fingerprint(approved_action(name, args, chain_id, tx))
