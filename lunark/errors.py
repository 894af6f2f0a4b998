"""Lunark's one error tree.

Every error Lunark raises on purpose is a ``LunarkError``. Each carries a
protocol error ``code`` (the wire contract's error codes), an actionable
message and structured fields, so a tool can turn it into a tool message, the
server into an error ack, and a test into a precise assertion.

```
LunarkError                                   code
├── ConfigError (ValueError)                  invalid_input
├── InvalidInput (ValueError)                 invalid_input
│   ├── InvalidAddress
│   ├── InvalidAmount
│   ├── InvalidName                           (not a valid ENS name under ENSIP-15)
│   ├── UnresolvedName                        (no address for it, or no ENS on the network)
│   ├── UnknownNetwork                        (carries close matches)
│   └── UnknownToken
├── PolicyViolation                           policy_violation
├── ChainError                                chain_error
│   ├── RpcUnavailable                        (the node did not answer)
│   ├── WrongNetwork                          (connected to another chain id)
│   ├── SimulationFailed                      (eth_call reverted; carries reason)
│   │   └── InsufficientFunds                 (balance below amount or amount + fee)
│   ├── TransactionFailed                     (mined with receipt status 0)
│   ├── IntentMismatch                        (signed tx differs from the approval)
│   ├── PreviewChanged                        preview_changed (simulated again at signing, it differs)
│   └── NonceGap                              (its nonce would leave an earlier one unused: a fresh card)
├── SignerError                               chain_error (no signer, or it refused)
├── ApprovalError
│   ├── NoPendingApproval                     no_pending_approval
│   ├── AlreadyDecided                        already_decided
│   ├── ApprovalExpired                       approval_expired
│   ├── AcknowledgementRequired               acknowledgement_required (a danger warning not acknowledged)
│   └── InvalidDecision (ValueError)          invalid_input
├── ModelError                                model_error
├── ToolFailed                                tool_error (a plugin or MCP server failed, timed out or is down)
├── Unauthorized                              unauthorized
├── Forbidden                                 forbidden
├── NotFound                                  not_found
├── Busy                                      busy
└── RateLimited                               rate_limited (carries retry_after, seconds)
```
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

__all__ = [
    "AcknowledgementRequired",
    "AlreadyDecided",
    "ApprovalError",
    "ApprovalExpired",
    "Busy",
    "ChainError",
    "ConfigError",
    "Forbidden",
    "InsufficientFunds",
    "IntentMismatch",
    "InvalidAddress",
    "InvalidAmount",
    "InvalidDecision",
    "InvalidInput",
    "InvalidName",
    "LunarkError",
    "ModelError",
    "NoPendingApproval",
    "NonceGap",
    "NotFound",
    "PolicyViolation",
    "PreviewChanged",
    "RateLimited",
    "RpcUnavailable",
    "SignerError",
    "SimulationFailed",
    "ToolFailed",
    "TransactionFailed",
    "Unauthorized",
    "UnknownNetwork",
    "UnknownToken",
    "UnresolvedName",
    "WrongNetwork",
]


class LunarkError(Exception):
    """Root of every error Lunark raises on purpose.

    ``code`` is one of the protocol's error codes; ``details`` holds the
    structured fields (tx hash, revert reason, differences, ...) that
    ``to_dict()`` puts on the wire next to the message.
    """

    code: ClassVar[str] = "internal"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details

    def to_dict(self) -> dict[str, Any]:
        """The error as the wire carries it: ``{"code", "message", **details}``."""
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        for key, value in self.details.items():
            if value is not None:
                out[key] = value
        return out

    def __repr__(self) -> str:
        fields = "".join(f", {k}={v!r}" for k, v in self.details.items())
        return f"{type(self).__name__}({self.message!r}{fields})"


class ConfigError(LunarkError, ValueError):
    """The configuration (file, environment, arguments) is invalid."""

    code = "invalid_input"


class InvalidInput(LunarkError, ValueError):
    """An argument from a user, a model or a client is malformed."""

    code = "invalid_input"


class InvalidAddress(InvalidInput):
    """Not a 20-byte hex address, or a mixed-case address with a bad checksum."""

    def __init__(self, message: str, *, value: str | None = None) -> None:
        super().__init__(message, value=value)


class InvalidAmount(InvalidInput):
    """Not a positive number, or more decimals than the token has."""

    def __init__(self, message: str, *, value: str | None = None) -> None:
        super().__init__(message, value=value)


class InvalidName(InvalidInput):
    """Not an ENS name: ENSIP-15 normalisation refuses it (a disallowed character, a confusable mix)."""

    def __init__(self, message: str, *, value: str | None = None) -> None:
        super().__init__(message, value=value)


class UnresolvedName(InvalidInput):
    """An ENS name with no address on the chat's network, or a network without an ENS registry."""

    def __init__(self, message: str, *, name: str | None = None, chain_id: int | None = None) -> None:
        super().__init__(message, name=name, chain_id=chain_id)


class UnknownNetwork(InvalidInput):
    """No network by that name, alias or chain id; ``suggestions`` are close matches."""

    def __init__(self, query: str, *, suggestions: Sequence[str] = (), known: Sequence[str] = ()) -> None:
        hint = f" Did you mean {', '.join(repr(s) for s in suggestions)}?" if suggestions else ""
        listing = f" Known networks: {', '.join(known)}." if known and not suggestions else ""
        super().__init__(
            f"Unknown network {query!r}.{hint}{listing}",
            query=query,
            suggestions=list(suggestions),
        )
        self.query = query
        self.suggestions = list(suggestions)


class UnknownToken(InvalidInput):
    """The token is not known on this network (by symbol) or is not an ERC-20 contract."""

    def __init__(self, message: str, *, token: str | None = None, chain_id: int | None = None) -> None:
        super().__init__(message, token=token, chain_id=chain_id)


class PolicyViolation(LunarkError):
    """The spending policy forbids the action; nothing was asked and nothing was signed."""

    code = "policy_violation"

    def __init__(self, message: str, *, rule: str, **details: Any) -> None:
        super().__init__(message, rule=rule, **details)
        self.rule = rule


class ChainError(LunarkError):
    """The chain refused, failed or could not be reached."""

    code = "chain_error"


class RpcUnavailable(ChainError):
    """The network's RPC endpoint did not answer."""


class WrongNetwork(ChainError):
    """The node or transaction is on another chain id than expected."""

    def __init__(self, message: str, *, expected: int, actual: int | None) -> None:
        super().__init__(message, expected=expected, actual=actual)
        self.expected = expected
        self.actual = actual


class SimulationFailed(ChainError):
    """``eth_call`` or gas estimation reverted: the transaction would fail on chain."""

    def __init__(self, message: str, *, reason: str | None = None, **details: Any) -> None:
        super().__init__(message, reason=reason, **details)
        self.reason = reason


class InsufficientFunds(SimulationFailed):
    """The sender cannot pay the amount (and the fee, for native transfers)."""

    def __init__(
        self,
        message: str,
        *,
        needed: int,
        available: int,
        symbol: str,
        reason: str | None = "insufficient funds",
    ) -> None:
        super().__init__(message, reason=reason, needed=str(needed), available=str(available), symbol=symbol)
        self.needed = needed
        self.available = available
        self.symbol = symbol


class TransactionFailed(ChainError):
    """The transaction was mined but its receipt has status 0."""

    def __init__(self, message: str, *, tx_hash: str, block_number: int | None = None) -> None:
        super().__init__(message, tx_hash=tx_hash, block_number=block_number)
        self.tx_hash = tx_hash
        self.block_number = block_number


class IntentMismatch(ChainError):
    """A signed or broadcast transaction differs from what the user approved.

    ``differences`` maps each differing field to ``{"expected", "actual"}`` (plus
    ``allowed`` for a bound) and its ``text`` in words; the message starts with a
    one-line summary of them all.
    """

    def __init__(
        self,
        message: str,
        *,
        differences: Mapping[str, Mapping[str, Any]],
        tx_hash: str | None = None,
    ) -> None:
        super().__init__(message, differences={k: dict(v) for k, v in differences.items()}, tx_hash=tx_hash)
        self.differences = {k: dict(v) for k, v in differences.items()}
        self.tx_hash = tx_hash


class NonceGap(ChainError):
    """The approved transaction's nonce is above the account's next one (an earlier transaction it was
    prepared behind was not sent): it would wait in the node's pool and go out whenever that nonce is
    used. Nothing is signed or broadcast; the call is prepared again, with the right nonce, on a
    fresh card.

    ``nonce`` is the transaction's, ``next_nonce`` the account's.
    """


class PreviewChanged(ChainError):
    """Simulated again when the decision arrived, the transaction would change balances differently
    than the card showed (or would now fail). Nothing is signed or broadcast; a fresh card is offered.

    ``differences`` says each difference in words.
    """

    code = "preview_changed"

    def __init__(self, message: str, *, differences: Sequence[str], **details: Any) -> None:
        super().__init__(message, differences=list(differences), **details)
        self.differences = list(differences)


class SignerError(LunarkError):
    """No signer may sign here, or the signer refused."""

    code = "chain_error"


class ApprovalError(LunarkError):
    """A decision could not be applied."""

    code = "invalid_input"


class NoPendingApproval(ApprovalError):
    """The run is not waiting for a decision (it ended, or never paused)."""

    code = "no_pending_approval"


class AcknowledgementRequired(ApprovalError):
    """An approve decision did not acknowledge every danger warning of its card; nothing was signed
    and the card is still pending, so the user can approve again with ``acknowledge``."""

    code = "acknowledgement_required"

    def __init__(self, message: str, *, missing: Sequence[str], index: int) -> None:
        super().__init__(message, missing=list(missing), index=index)
        self.missing = list(missing)


class AlreadyDecided(ApprovalError):
    """This approval was already decided; a decision applies exactly once."""

    code = "already_decided"


class ApprovalExpired(ApprovalError):
    """The approval expired; it counts as rejected."""

    code = "approval_expired"


class InvalidDecision(ApprovalError, ValueError):
    """The decisions do not match the action requests (count, type, allowed decisions)."""

    code = "invalid_input"


class ModelError(LunarkError):
    """The chat model failed (unreachable, bad output) and no fallback succeeded."""

    code = "model_error"


class ToolFailed(LunarkError):
    """A tool outside Lunark (an MCP server, a plugin's service) failed, timed out or could not
    be reached; the message names the tool and what to check. Nothing it would have done is
    assumed done."""

    code = "tool_error"


class Unauthorized(LunarkError):
    """Missing, invalid or expired credentials."""

    code = "unauthorized"


class Forbidden(LunarkError):
    """The caller is signed in but this resource belongs to someone else."""

    code = "forbidden"


class NotFound(LunarkError):
    """No such chat, approval or transaction."""

    code = "not_found"


class Busy(LunarkError):
    """A turn is already running in this chat."""

    code = "busy"


class RateLimited(LunarkError):
    """Too many requests of one kind from one client or account; ``retry_after`` says when to retry."""

    code = "rate_limited"
