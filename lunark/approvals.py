"""Approvals, with one owner: what an approval is, when it runs out, and who decided it (once).

An approval is the request the graph pauses on (``pending_approval`` on the wire, the interrupt's
value in the checkpoint, ``ApprovalRecord.request`` in the store). It is built here
(``request_of``), read here into a typed ``Approval`` (``expires_at`` parsed once, as an aware
datetime), and decided here:

- ``Claims`` claims a decision exactly once: this process's memory of the approvals decided
  recently (the runner's guard, before anything waits), in front of the store's
  ``claim_approval`` (the durable claim, across processes and restarts);
- the refusals (``already_decided``, ``approval_expired``, ``no_pending_approval``) are worded
  here, one function per situation, so the runner and the graph answer alike.

It stands on the protocol, the error tree and the store; the graph and the server use it, and it
imports neither (``tests/test_layers.py``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lunark.errors import AlreadyDecided, ApprovalExpired, LunarkError, NoPendingApproval
from lunark.protocol import ALL_DECISIONS, reject_decision
from lunark.store import ApprovalRecord, Store

__all__ = [
    "RECENT_DECISIONS",
    "Approval",
    "Claims",
    "already_decided",
    "expired",
    "iso",
    "parse_time",
    "refusal",
    "request_of",
    "stale_refusal",
]

RECENT_DECISIONS = 4096
"""How many of this process's latest decisions ``Claims`` remembers."""
_UNDECIDED = object()


def iso(when: datetime | None) -> str:
    """``expires_at`` as the wire writes it: UTC, milliseconds, ``Z``."""
    assert when is not None
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: Any) -> datetime | None:
    """An ``expires_at`` as the wire, the checkpoint or a proposal holds it; None for none."""
    return datetime.fromisoformat(str(text).replace("Z", "+00:00")) if text else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Approval:
    """A pending approval, read once from the dict the graph paused with (the ``pending_approval``
    payload, unchanged in ``payload``)."""

    approval_id: str
    expires_at: datetime
    """When an undecided approval counts as rejected (aware)."""
    action_requests: tuple[Mapping[str, Any], ...]
    """One per action, in order; a decision is given for each."""
    payload: Mapping[str, Any]
    """The request as sent and checkpointed (``pending_approval`` without its ``type``)."""
    chat_id: str | None = None
    """The chat that asked, when known (the store's record says)."""

    @classmethod
    def of(cls, payload: Mapping[str, Any], *, chat_id: str | None = None) -> Approval:
        expires_at = parse_time(payload["expires_at"])
        assert expires_at is not None, "an approval always carries its expires_at"
        return cls(
            approval_id=str(payload["approval_id"]), expires_at=expires_at,
            action_requests=tuple(payload.get("action_requests") or ()), payload=payload, chat_id=chat_id,
        )

    @classmethod
    def from_record(cls, record: ApprovalRecord) -> Approval:
        return cls(
            approval_id=record.approval_id, expires_at=record.expires_at,
            action_requests=tuple(record.request.get("action_requests") or ()), payload=record.request,
            chat_id=record.chat_id,
        )

    @property
    def fingerprints(self) -> list[str | None]:
        """Each action's fingerprint (None for an action without one), in order."""
        return [request.get("fingerprint") for request in self.action_requests]

    def seconds_left(self, now: datetime | None = None) -> float:
        return (self.expires_at - (now or datetime.now(UTC))).total_seconds()

    def expired(self, now: datetime | None = None) -> bool:
        return (now or datetime.now(UTC)) >= self.expires_at

    def rejections(self, message: str) -> list[dict[str, Any]]:
        """One ``reject`` per action, each with ``message`` (an expiry, an approval set aside)."""
        return [reject_decision(message)] * len(self.action_requests)


def request_of(proposals: Sequence[Mapping[str, Any]], approval_id: str | None,
               expires_at: datetime | None) -> dict[str, Any] | None:
    """The approval request for prepared ``proposals`` (none: no approval), as the graph pauses with
    it and the wire shows it."""
    if not proposals:
        return None
    return {
        "approval_id": approval_id,
        "expires_at": iso(expires_at),
        "action_requests": [
            {
                "call_id": p["call_id"],
                "name": p["name"],
                "args": p["args"],
                "description": p["proposal"]["description"],
                "summary": p["proposal"]["summary"],
                "tx": p["proposal"]["tx"],
                **({"facts": p["proposal"]["facts"]} if p["proposal"].get("facts") else {}),
                **({"preview": p["proposal"]["preview"]} if p["proposal"].get("preview") else {}),
                **({"warnings": p["proposal"]["warnings"]} if p["proposal"].get("warnings") else {}),
                **({"fingerprint": p["fingerprint"]} if p.get("fingerprint") else {}),
                **({"recipient_name": p["proposal"]["recipient_name"]}
                   if p["proposal"].get("recipient_name") else {}),
            }
            for p in proposals
        ],
        "review_configs": [
            {"action_name": name, "allowed_decisions": list(ALL_DECISIONS)}
            for name in dict.fromkeys(p["name"] for p in proposals)
        ],
    }


# -- refusals: one wording per situation -----------------------------------------------------------


def already_decided(approval_id: str) -> AlreadyDecided:
    return AlreadyDecided(f"Approval {approval_id} was already decided.", approval_id=approval_id)


def expired(approval_id: str, *, retry: bool = False) -> ApprovalExpired:
    """The contract's code for exactly this: the approval expired and counted as rejected."""
    return ApprovalExpired(
        f"Approval {approval_id} expired; it counted as rejected." + (" Ask again to retry." if retry else ""),
        approval_id=approval_id,
    )


def not_waiting(approval_id: str) -> NoPendingApproval:
    return NoPendingApproval(f"This chat is not waiting for approval {approval_id}.", approval_id=approval_id)


def lapsed(approval: Approval, late: bool) -> ApprovalExpired:
    """A user's decision that came after ``approval`` ran out (``late``: a wallet's hash it carried
    was recorded all the same)."""
    return ApprovalExpired(
        f"Approval {approval.approval_id} expired at {approval.payload['expires_at']}; it counts as rejected."
        + (" The transaction your wallet sent is recorded and followed in this chat." if late else ""),
        approval_id=approval.approval_id,
    )


def refusal(approval_id: str, record: ApprovalRecord | None) -> LunarkError:
    """A decision on an approval the store no longer holds as pending (``record``, read after the
    claim failed or while waiting for the chat): expired by timeout, else already decided."""
    if record is not None and (record.state == "expired" or record.by == "timeout"):
        return expired(approval_id)
    return already_decided(approval_id)


def stale_refusal(approval_id: str, record: ApprovalRecord | None, resolved: Collection[str]) -> LunarkError:
    """A decision on an approval its chat does not wait for: decided (the checkpoint's ``resolved``
    ids, or the store's record), expired (the store's record says so), else never this chat's."""
    if approval_id in resolved or (record is not None and record.state != "pending"):
        if record is not None and record.state == "expired":
            return expired(approval_id)
        return already_decided(approval_id)
    return not_waiting(approval_id)


class Claims:
    """A decision is claimed once. In this process, ``hold`` marks an approval decided the moment a
    decision is taken up, so a concurrent one is refused before anything waits (``check``); the
    store's ``claim`` is the durable claim that holds across processes and restarts."""

    def __init__(self, store: Store, *, recent: int = RECENT_DECISIONS) -> None:
        self.store = store
        self.recent = recent
        self._decided: dict[str, str] = {}
        """Approval id -> who decided it ("user", "timeout", "superseded"), for the recent ones."""

    def __contains__(self, approval_id: object) -> bool:
        return approval_id in self._decided

    def check(self, approval_id: str) -> None:
        """Refuse a decision on an approval decided in this process (``approval_expired`` for one that
        timed out, else ``already_decided``)."""
        by = self._decided.get(approval_id, _UNDECIDED)
        if by == "timeout":
            raise expired(approval_id, retry=True)
        if by is not _UNDECIDED:
            raise already_decided(approval_id)

    def hold(self, approval_id: str, by: str) -> None:
        """Mark ``approval_id`` decided by ``by`` in this process."""
        self._decided[approval_id] = by

    def drop(self, approval_id: str) -> None:
        """The decision was not taken after all (it failed before it ran, or was reopened)."""
        self._decided.pop(approval_id, None)

    def trim(self) -> None:
        while len(self._decided) > self.recent:
            self._decided.pop(next(iter(self._decided)))

    async def claim(self, approval_id: str, decisions: Sequence[Mapping[str, Any]], by: str) -> ApprovalRecord:
        """Claim the decision in the store, once for all processes; the refusal if it is not pending."""
        record = await self.store.claim_approval(approval_id, decisions, by)
        if record is None:
            raise refusal(approval_id, await self.store.get_approval(approval_id))
        return record

    async def decided_elsewhere(self, approval_id: str) -> LunarkError | None:
        """The refusal for a decision on ``approval_id`` if the store says it is no longer pending."""
        record = await self.store.get_approval(approval_id)
        if record is not None and record.state != "pending":
            return refusal(approval_id, record)
        return None

    async def set_aside(self, approval_id: str) -> bool:
        """A pending approval its chat no longer waits on (its graph moved on, or the chat is gone):
        claimed by ``timeout`` and finished, so it is expired and never due again. True if it was."""
        record = await self.store.claim_approval(approval_id, [], "timeout")
        if record is None:
            return False
        await self.store.finish_approval(approval_id)
        return True
