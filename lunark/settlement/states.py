"""A settlement's states and which may follow which.

```
approved -> broadcasting -> submitted <-> mined -> confirmed
   |             |              |           |
   v             v              v           v
mismatch      dropped     failed / replaced / dropped     failed (status 0, re-mined after a reorg)
expired: signed bytes that would go out after the approval expired (never broadcast)
```

The table is the state machine's contract: ``Settlements`` checks every transition against it
before storing it, so a bug that would move money-path state backwards (a confirmed transfer
"submitted" again, a refused one broadcast) stops with an internal error instead of being written.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Final

from lunark.errors import LunarkError
from lunark.store.base import FINAL_STATES

__all__ = ["TRANSITIONS", "IllegalTransition", "SettlementState", "check_transition"]


class SettlementState(StrEnum):
    """Where a settlement is; the store keeps its ``value``."""

    APPROVED = "approved"
    """Written ahead of any signing, with the decision."""
    BROADCASTING = "broadcasting"
    """Signed bytes bound and stored, about to be (or maybe already) sent."""
    SUBMITTED = "submitted"
    MINED = "mined"
    CONFIRMED = "confirmed"
    FAILED = "failed"
    REPLACED = "replaced"
    DROPPED = "dropped"
    MISMATCH = "mismatch"
    """The wallet's transaction is not the approved one; with one from the user's account, it is
    followed to its end under this state (``done`` false until then)."""
    EXPIRED = "expired"

    @property
    def is_final(self) -> bool:
        return self.value in FINAL_STATES


S = SettlementState

TRANSITIONS: Final[Mapping[SettlementState, frozenset[SettlementState]]] = {
    # Bound (the wallet's hash: submitted; signed bytes: broadcasting), refused (mismatch, also a
    # late or gapped wallet hash that is then followed), the wallet's hash never seen (dropped), or
    # bytes that would go out after the approval expired.
    S.APPROVED: frozenset({S.BROADCASTING, S.SUBMITTED, S.MISMATCH, S.DROPPED, S.EXPIRED}),
    # Sent (or found already known to the node after a crash), or never sent: refused by the node,
    # or the approval expired while the process was down.
    S.BROADCASTING: frozenset({S.SUBMITTED, S.DROPPED}),
    # The tracker: mined, reverted, its nonce taken by another transaction, or gone from the node.
    # A speed-up (same transfer, higher fee) is followed under its own hash in the same state.
    S.SUBMITTED: frozenset({S.MINED, S.FAILED, S.REPLACED, S.DROPPED}),
    # More confirmations (mined again), enough of them, or a reorg / a resume that starts the
    # tracker over (submitted again, possibly under a speed-up's hash); a reorg the tracker sees only
    # as a receipt in another block, one that reverted there (failed).
    S.MINED: frozenset({S.MINED, S.CONFIRMED, S.SUBMITTED, S.FAILED}),
    # What the wallet sent instead is followed to its own end; each step is recorded here.
    S.MISMATCH: frozenset({S.MISMATCH}),
    S.CONFIRMED: frozenset(),
    S.FAILED: frozenset(),
    S.REPLACED: frozenset(),
    S.DROPPED: frozenset(),
    S.EXPIRED: frozenset(),
}
"""Which states may follow each state."""


class IllegalTransition(LunarkError):
    """A settlement was about to move where its state table does not allow: a bug, never stored."""

    code = "internal"


def check_transition(settlement_id: str, current: str, target: str) -> SettlementState:
    """``target`` as a state, if it may follow ``current``; otherwise ``IllegalTransition``."""
    try:
        now, then = SettlementState(current), SettlementState(target)
    except ValueError as exc:
        raise IllegalTransition(f"Settlement {settlement_id}: unknown state {exc}.",
                                settlement_id=settlement_id, state=current, target=target) from exc
    if then not in TRANSITIONS[now]:
        raise IllegalTransition(f"Settlement {settlement_id} cannot move from {now} to {then}.",
                                settlement_id=settlement_id, state=now.value, target=then.value)
    return then
