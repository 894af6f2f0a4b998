"""The intent fingerprint: one hash that names exactly what the user was asked to approve.

``action_fingerprint`` is the sha256 (hex) of the canonical JSON (sorted keys, no spaces, UTF-8) of
``{"tool", "args", "chain_id", "tx"}``: the tool's name, its arguments as prepared (e.g. a share
like "all" already resolved to the exact amount), the chat's chain id and the unsigned transaction
fields the wallet is asked to sign (None for an action without one). It is on the card
(``ActionRequest.fingerprint``) and is what the audit trail records, so a client or an auditor can
recompute it from the card alone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["action_fingerprint", "canonical_json"]


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, non-ASCII kept as UTF-8: the same value always gives the same text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def action_fingerprint(
    name: str, args: Mapping[str, Any], chain_id: int, tx: Mapping[str, Any] | None
) -> str:
    """sha256 hex of the canonical JSON of the approved action (see the module's docstring)."""
    payload = {"tool": name, "args": dict(args), "chain_id": chain_id, "tx": dict(tx) if tx is not None else None}
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()
