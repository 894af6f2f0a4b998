"""The decisions as an AG-UI client sends them: the JSON Schema of an interrupt's resume payload.

``POST /ag-ui`` (``lunark.server.agui``, docs/ag-ui.md) offers it as each interrupt's
``responseSchema``; the payload it describes is a decision (``_decisions``) in AG-UI's camelCase,
bound to the card it decides by the card's intent fingerprint.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lunark.protocol._limits import _HASH, _HEX

__all__ = ["agui_resume_schema"]


def agui_resume_schema(decisions: Sequence[str], fingerprint: str) -> dict[str, Any]:
    """The JSON Schema of ``resume[].payload`` for one interrupt: approve, edit or reject, those of
    ``decisions`` only.

    Approve and edit carry the fingerprint of the card the user saw, so a decision made on a
    card that is no longer the pending one is refused instead of applied to something else."""
    bound = {"type": "string", "const": fingerprint, "description": "metadata.governance.actionFingerprint"}
    variants = {
        "approve": {
            "type": "object",
            "properties": {
                "type": {"const": "approve"},
                "actionFingerprint": bound,
                "signedTx": {"type": "string", "pattern": _HEX,
                             "description": "The card's tx, signed by the user's wallet; the server checks and "
                                            "broadcasts it."},
                "txHash": {"type": "string", "pattern": _HASH,
                           "description": "The wallet broadcast the card's tx itself; the server checks it."},
                "acknowledge": {"type": "array", "items": {"type": "string"},
                                "description": "Codes of the card's danger warnings the user acknowledged."},
            },
            "required": ["type", "actionFingerprint"],
            "additionalProperties": False,
        },
        "edit": {
            "type": "object",
            "properties": {
                "type": {"const": "edit"},
                "actionFingerprint": bound,
                "args": {"type": "object", "description": "The tool's new arguments; a new card is offered."},
            },
            "required": ["type", "actionFingerprint", "args"],
            "additionalProperties": False,
        },
        "reject": {
            "type": "object",
            "properties": {
                "type": {"const": "reject"},
                "actionFingerprint": bound,
                "message": {"type": "string", "maxLength": 2000, "description": "Why; it reaches the model."},
            },
            "required": ["type"],
            "additionalProperties": False,
        },
    }
    return {"oneOf": [variants[d] for d in ("approve", "edit", "reject") if d in decisions]}
