"""The SDK's errors: an error the server answers becomes the ``lunark.errors`` class of its code;
``Disconnected`` is the SDK's own, for a server it cannot reach or a connection that dropped."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lunark.errors import (
    AcknowledgementRequired,
    AlreadyDecided,
    ApprovalExpired,
    Busy,
    ChainError,
    Forbidden,
    InvalidInput,
    LunarkError,
    ModelError,
    NoPendingApproval,
    NotFound,
    PolicyViolation,
    RateLimited,
    ToolFailed,
    Unauthorized,
)

__all__ = ["ERROR_CLASSES", "Disconnected", "error_from_body"]

ERROR_CLASSES: Mapping[str, type[LunarkError]] = {
    "unauthorized": Unauthorized,
    "forbidden": Forbidden,
    "not_found": NotFound,
    "invalid_input": InvalidInput,
    "busy": Busy,
    "already_decided": AlreadyDecided,
    "approval_expired": ApprovalExpired,
    "no_pending_approval": NoPendingApproval,
    "policy_violation": PolicyViolation,
    "chain_error": ChainError,
    "model_error": ModelError,
    "internal": LunarkError,
    "rate_limited": RateLimited,
    "tool_error": ToolFailed,
    "acknowledgement_required": AcknowledgementRequired,
}
"""Protocol error code -> the exception the SDK raises for it."""


class Disconnected(LunarkError):
    """Not connected: the server could not be reached, the client was closed, or the
    connection dropped before the server answered a request that is not safe to repeat."""

    code = "internal"


def error_from_body(body: Any) -> LunarkError:
    """The exception for a wire error ``{"code", "message", ...}``; extra fields become ``details``.

        >>> error_from_body({"code": "busy", "message": "A turn is running."})
        Busy('A turn is running.')
    """
    if not isinstance(body, Mapping):
        return LunarkError(f"The server answered with an error: {body!r}.")
    code = str(body.get("code", "internal"))
    message = str(body.get("message") or code)
    details = {str(k): v for k, v in body.items() if k not in ("code", "message")}
    cls = ERROR_CLASSES.get(code, LunarkError)
    if cls is PolicyViolation:
        return PolicyViolation(message, rule=str(details.pop("rule", "unknown")), **details)
    if cls is AcknowledgementRequired:
        missing = details.get("missing")
        return AcknowledgementRequired(
            message, missing=[str(c) for c in missing] if isinstance(missing, list) else [],
            index=int(details.get("index") or 0),
        )
    return cls(message, **details)
