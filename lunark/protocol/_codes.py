"""The contract's error codes, their meanings and HTTP statuses, and a transaction's statuses."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

# --- errors -----------------------------------------------------------------------------------


class ErrorCode(StrEnum):
    """The contract's error codes; every ``LunarkError.code`` is one of them."""

    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    INVALID_INPUT = "invalid_input"
    BUSY = "busy"
    ALREADY_DECIDED = "already_decided"
    APPROVAL_EXPIRED = "approval_expired"
    NO_PENDING_APPROVAL = "no_pending_approval"
    POLICY_VIOLATION = "policy_violation"
    CHAIN_ERROR = "chain_error"
    MODEL_ERROR = "model_error"
    TOOL_ERROR = "tool_error"
    INTERNAL = "internal"
    RATE_LIMITED = "rate_limited"
    ACKNOWLEDGEMENT_REQUIRED = "acknowledgement_required"
    PREVIEW_CHANGED = "preview_changed"


ERROR_MEANINGS: Mapping[ErrorCode, str] = {
    ErrorCode.UNAUTHORIZED: "Missing, invalid or expired token (or SIWE message, nonce, signature).",
    ErrorCode.FORBIDDEN: "Signed in, but the chat belongs to another address.",
    ErrorCode.NOT_FOUND: "No such chat, approval or transaction.",
    ErrorCode.INVALID_INPUT: "Malformed payload or argument: unknown field, wrong type, too long, bad decision.",
    ErrorCode.BUSY: "A turn is already running in this chat.",
    ErrorCode.ALREADY_DECIDED: "This approval was already decided; a decision applies exactly once.",
    ErrorCode.APPROVAL_EXPIRED: "The approval expired and counts as rejected.",
    ErrorCode.NO_PENDING_APPROVAL: "The chat is not waiting for a decision.",
    ErrorCode.POLICY_VIOLATION: "The spending policy forbids the action; nothing was asked or signed.",
    ErrorCode.CHAIN_ERROR: "The chain or signer refused, failed or could not be reached.",
    ErrorCode.MODEL_ERROR: "The chat model failed and no fallback succeeded.",
    ErrorCode.TOOL_ERROR: "A tool outside Lunark (an MCP server, a plugin's service) failed, timed out or is down.",
    ErrorCode.INTERNAL: "A bug or an unexpected failure on the server.",
    ErrorCode.RATE_LIMITED: "Too many requests of this kind; `retry_after` (seconds) says when to try again.",
    ErrorCode.ACKNOWLEDGEMENT_REQUIRED: "The card has a danger warning the decision did not acknowledge; nothing "
    "was signed.",
    ErrorCode.PREVIEW_CHANGED: "Simulated again at signing, the transaction would change balances differently "
    "than the card showed; nothing was broadcast and a fresh card is offered.",
}
"""One line per error code, for people (and the generated doc)."""

HTTP_STATUS: Mapping[ErrorCode, int] = {
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.INVALID_INPUT: 400,
    ErrorCode.BUSY: 409,
    ErrorCode.ALREADY_DECIDED: 409,
    ErrorCode.NO_PENDING_APPROVAL: 409,
    ErrorCode.APPROVAL_EXPIRED: 410,
    ErrorCode.POLICY_VIOLATION: 422,
    ErrorCode.CHAIN_ERROR: 502,
    ErrorCode.MODEL_ERROR: 502,
    ErrorCode.TOOL_ERROR: 502,
    ErrorCode.INTERNAL: 500,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.ACKNOWLEDGEMENT_REQUIRED: 422,
    ErrorCode.PREVIEW_CHANGED: 409,
}
"""The HTTP status of each error code on the HTTP mirror."""


class TxStatus(StrEnum):
    """Where a transaction is, as ``tx_update.status`` says it."""

    SUBMITTED = "submitted"
    MINED = "mined"
    CONFIRMED = "confirmed"
    FAILED = "failed"
    REPLACED = "replaced"
    MISMATCH = "mismatch"
    DROPPED = "dropped"

    @property
    def is_final(self) -> bool:
        return self not in (TxStatus.SUBMITTED, TxStatus.MINED)


FINAL_TX_STATUSES: tuple[str, ...] = tuple(status.value for status in TxStatus if status.is_final)
"""``tx_update`` statuses after which nothing more happens to the transaction."""
