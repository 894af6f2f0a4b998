"""Nonces of several transactions in one approval: the rule the server binds by and clients sign by.

An approval may hold several transactions from one account on one chain ("send 0.5 ETH to A and
3 TKN to B"). They are prepared with successive nonces (the account's pending nonce, then the next,
...), so that every one of them can go out. A transaction whose earlier siblings are not sent
(rejected, edited) would leave a gap, and wait in the node's pool until someone used the missing
nonce: so each one's nonce *floor* is its prepared nonce lowered by the number of earlier siblings,
same chain and same sender, that are not approved. A wallet signs at the floor (or, re-noncing like
any wallet, above it); the server accepts no transaction below it.

    floors = nonce_floors([r.tx for r in approval.action_requests], [d["type"] == "approve" for d in decisions])

Both sides compute it from what they both have: the approval's ``tx`` objects and the decisions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["nonce_floors", "quantity"]


def quantity(value: Any) -> int:
    """An integer from the protocol's ``tx`` (``0x`` hex, or a decimal string, or an int)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value)
    return int(text, 16) if text.lower().startswith("0x") else int(text, 10)


def _field(tx: Any, name: str) -> Any:
    if isinstance(tx, Mapping):
        return tx.get(name)
    if name == "from":
        return getattr(tx, "from_", getattr(tx, "sender", None))
    return getattr(tx, name, None)


def nonce_floors(txs: Sequence[Any], approved: Sequence[bool]) -> list[int | None]:
    """For each action, the lowest nonce its transaction may carry (None for an action with none).

    ``txs`` are the approval's ``tx`` objects in order (wire dicts or ``UnsignedTx``; None for an
    action without one), ``approved`` whether each action's decision approves it.
    """
    floors: list[int | None] = []
    skipped: dict[tuple[int, str], int] = {}
    for tx, yes in zip(txs, approved, strict=True):
        if tx is None:
            floors.append(None)
            continue
        key = (quantity(_field(tx, "chain_id")), str(_field(tx, "from")).lower())
        floors.append(quantity(_field(tx, "nonce")) - skipped.get(key, 0))
        if not yes:
            skipped[key] = skipped.get(key, 0) + 1
    return floors
