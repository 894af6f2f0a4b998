"""The balance-change preview: what a prepared transaction would move, simulated before the user decides.

``ChainClient.preview`` runs the exact prepared transaction through ``eth_simulateV1``
(``traceTransfers``, ``validation``) at the latest block; this module turns the simulated logs into
balance changes and judges them:

- ``transfers_in_logs``: every ERC-20 ``Transfer`` log, and every native transfer (which
  ``traceTransfers`` reports as a ``Transfer`` log from ``NATIVE_LOG_ADDRESS``).
- ``BalancePreview``: the card's ``preview`` (``to_wire``) and what the re-check at signing compares
  (``to_state``: also every party's net movement and whether the recipient has code).
- ``unexpected_movement``: the ``unexpected_asset_movement`` warning when the simulation moves
  anything but the approved amount of the approved asset from the user to the recipient.
- ``preview_differences``: how the outcome at signing differs from the card (empty: the same).

"Differs" compares outcomes, not balances: the set of (address, asset, delta) over every party, the
recipient having code, and whether it simulates at all. A balance that moved for another reason (the
user paid another fee, received a payment) but leaves the transfer's movements as shown is not a
difference; one that makes it revert or overdraw is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address

from lunark.chain.types import TransferIntent, to_units

__all__ = [
    "NATIVE",
    "NATIVE_LOG_ADDRESS",
    "TRANSFER_TOPIC",
    "UNEXPECTED_MOVEMENT",
    "AssetChange",
    "BalancePreview",
    "Movement",
    "changes_for",
    "net_deltas",
    "preview_differences",
    "transfers_in_logs",
    "unexpected_movement",
]

NATIVE: Final = "native"
"""The ``asset`` of the network's native currency."""

NATIVE_LOG_ADDRESS: Final = "0xeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"
"""Where ``eth_simulateV1`` with ``traceTransfers`` says native transfers come from (ERC-7528)."""

TRANSFER_TOPIC: Final = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
"""``keccak("Transfer(address,address,uint256)")``."""

UNEXPECTED_MOVEMENT: Final = "unexpected_asset_movement"
"""The warning code of a simulation that moves more (or other) than what was approved."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Movement:
    """One transfer the simulation logged."""

    asset: str
    """``NATIVE`` or the token contract's checksum address."""
    sender: ChecksumAddress
    recipient: ChecksumAddress
    amount: int


def _topic_address(topic: Any) -> ChecksumAddress:
    text = topic if isinstance(topic, str) else "0x" + bytes(topic).hex()
    return to_checksum_address("0x" + text[-40:])


def transfers_in_logs(logs: Iterable[Mapping[str, Any]]) -> list[Movement]:
    """The transfers among ``logs``: ERC-20 ``Transfer(from, to, value)`` and native ones.

    An ERC-721 ``Transfer`` (the token id indexed: four topics) is not a balance of units and is
    left out, as is any log that does not have the ERC-20 shape.
    """
    out: list[Movement] = []
    for log in logs:
        topics = [t if isinstance(t, str) else "0x" + bytes(t).hex() for t in log.get("topics") or ()]
        data = log.get("data") or "0x"
        data = data if isinstance(data, str) else "0x" + bytes(data).hex()
        if len(topics) != 3 or topics[0].lower() != TRANSFER_TOPIC or len(data) != 66:
            continue
        emitter = str(log.get("address") or "").lower()
        asset = NATIVE if emitter == NATIVE_LOG_ADDRESS else to_checksum_address(emitter)
        out.append(Movement(asset=asset, sender=_topic_address(topics[1]), recipient=_topic_address(topics[2]),
                            amount=int(data, 16)))
    return out


def net_deltas(movements: Iterable[Movement]) -> dict[tuple[ChecksumAddress, str], int]:
    """Each (address, asset)'s net change over ``movements``; entries that net to zero are left out."""
    deltas: dict[tuple[ChecksumAddress, str], int] = {}
    for m in movements:
        if m.sender == m.recipient:
            continue
        deltas[(m.sender, m.asset)] = deltas.get((m.sender, m.asset), 0) - m.amount
        deltas[(m.recipient, m.asset)] = deltas.get((m.recipient, m.asset), 0) + m.amount
    return {key: value for key, value in deltas.items() if value}


@dataclass(frozen=True, slots=True, kw_only=True)
class AssetChange:
    """One balance the card shows: the user's or the recipient's, in base units."""

    address: ChecksumAddress
    asset: str
    symbol: str
    decimals: int
    before: int
    after: int

    @property
    def delta(self) -> int:
        return self.after - self.before

    def to_wire(self) -> dict[str, Any]:
        return {"address": self.address, "asset": self.asset, "symbol": self.symbol, "decimals": self.decimals,
                "before": str(self.before), "after": str(self.after), "delta": str(self.delta)}


@dataclass(frozen=True, slots=True, kw_only=True)
class BalancePreview:
    """What a simulation said a transaction would change, or why there is no simulation."""

    simulated: bool
    changes: tuple[AssetChange, ...] = ()
    """The user's and the recipient's balances that change, the user's first (no fee in native)."""
    gas_used: int | None = None
    max_fee: int | None = None
    """Worst-case fee in wei: gas limit x fee cap."""
    reason: str | None = None
    """Why there is no simulation."""
    block: int | None = None
    """The block the simulation ran on top of."""
    moved: tuple[tuple[str, str, int], ...] = ()
    """Every party's net movement, ``(address, asset, delta)``, sorted: what the re-check compares."""
    recipient_has_code: bool | None = None

    def to_wire(self) -> dict[str, Any]:
        """The protocol's ``Preview``."""
        wire: dict[str, Any] = {"simulated": self.simulated, "changes": [c.to_wire() for c in self.changes]}
        if self.gas_used is not None:
            wire["gas_used"] = self.gas_used
        if self.max_fee is not None:
            wire["max_fee"] = str(self.max_fee)
        if self.reason:
            wire["reason"] = self.reason
        return wire

    def to_state(self) -> dict[str, Any]:
        """JSON for the checkpoint and the settlement: the wire form plus what the re-check compares."""
        return {**self.to_wire(), "block": self.block, "moved": [[a, s, str(d)] for a, s, d in self.moved],
                "recipient_has_code": self.recipient_has_code}

    @classmethod
    def from_state(cls, raw: Mapping[str, Any]) -> BalancePreview:
        return cls(
            simulated=bool(raw["simulated"]),
            changes=tuple(
                AssetChange(address=to_checksum_address(c["address"]), asset=str(c["asset"]), symbol=str(c["symbol"]),
                            decimals=int(c["decimals"]), before=int(c["before"]), after=int(c["after"]))
                for c in raw.get("changes") or ()
            ),
            gas_used=None if raw.get("gas_used") is None else int(raw["gas_used"]),
            max_fee=None if raw.get("max_fee") is None else int(raw["max_fee"]),
            reason=raw.get("reason"),
            block=None if raw.get("block") is None else int(raw["block"]),
            moved=tuple((str(a), str(s), int(d)) for a, s, d in raw.get("moved") or ()),
            recipient_has_code=raw.get("recipient_has_code"),
        )


def _amount(raw: int, decimals: int, symbol: str) -> str:
    value = to_units(abs(raw), decimals)
    return f"{format(value.normalize(), 'f') if value else '0'} {symbol}"


def _short(address: str) -> str:
    return f"{address[:6]}…{address[-4:]}"


def unexpected_movement(
    intent: TransferIntent, preview: BalancePreview, units: Mapping[str, tuple[str, int]]
) -> dict[str, str] | None:
    """The ``unexpected_asset_movement`` warning, or None when the simulation moves exactly the
    approved amount of the approved asset from the user to the recipient and nothing else.

    Severity ``danger`` when any other asset moves or the user loses more of anything than approved
    (a token with hooks, a drain); ``warning`` when only the approved asset moves but not as approved
    (a fee-on-transfer token: the recipient receives less, someone else takes a cut). ``units`` maps
    an asset to its ``(symbol, decimals)`` for the message.
    """
    if not preview.simulated:
        return None
    asset = NATIVE if intent.token is None else intent.token
    expected = {(intent.sender, asset): -intent.amount, (intent.recipient, asset): intent.amount}
    actual = {(to_checksum_address(a), s): d for a, s, d in preview.moved}
    if actual == expected:
        return None
    danger = any(s != asset for _, s in actual) or any(
        d < expected.get((a, s), 0) for (a, s), d in actual.items() if a == intent.sender
    )
    said: list[str] = []
    for (address, moved_asset), delta in sorted(actual.items()):
        if expected.get((address, moved_asset)) == delta:
            continue
        symbol, decimals = units.get(moved_asset, (moved_asset, 0))
        who = "you" if address == intent.sender else (
            "the recipient" if address == intent.recipient else _short(address))
        verb = ("lose" if who == "you" else "loses") if delta < 0 else ("receive" if who == "you" else "receives")
        said.append(f"{who} {verb} {_amount(delta, decimals, symbol)}")
    if not any(a == intent.recipient and s == asset for a, s in actual):
        said.append(f"the recipient receives no {intent.symbol}")
    approved = _amount(intent.amount, intent.decimals, intent.symbol)
    return {
        "code": UNEXPECTED_MOVEMENT,
        "severity": "danger" if danger else "warning",
        "message": f"Simulated, this transfer of {approved} does not just move {approved} to the recipient: "
        + "; ".join(said) + ".",
    }


def preview_differences(shown: BalancePreview, now: BalancePreview) -> list[str]:
    """How the outcome simulated at signing (``now``) differs from the card's (``shown``), in words.

    Empty when the card showed no simulation (there is nothing to hold the transaction to), or when
    the same parties' balances move by the same amounts. A simulation that is no longer possible
    differs (fail closed).
    """
    if not shown.simulated:
        return []
    if not now.simulated:
        return [f"it can no longer be simulated ({now.reason or 'no reason given'})"]
    out: list[str] = []
    before = {(a, s): d for a, s, d in shown.moved}
    after = {(a, s): d for a, s, d in now.moved}
    for key in sorted(before.keys() | after.keys()):
        was, will = before.get(key, 0), after.get(key, 0)
        if was != will:
            address, asset = key
            what = "native" if asset == NATIVE else asset
            out.append(f"{_short(address)}'s {what} balance would change by {will}, the card showed {was}")
    if not shown.recipient_has_code and now.recipient_has_code:
        out.append("the recipient is now a contract")
    return out


def changes_for(
    parties: Sequence[ChecksumAddress],
    deltas: Mapping[tuple[ChecksumAddress, str], int],
    befores: Mapping[tuple[ChecksumAddress, str], int],
    units: Mapping[str, tuple[str, int]],
) -> tuple[AssetChange, ...]:
    """The card's rows: each party's (in order) changed balances, the native one first."""
    rows: list[AssetChange] = []
    for party in parties:
        keys = sorted((k for k in deltas if k[0] == party), key=lambda k: (k[1] != NATIVE, k[1]))
        for key in keys:
            symbol, decimals = units[key[1]]
            before = befores[key]
            rows.append(AssetChange(address=party, asset=key[1], symbol=symbol, decimals=decimals, before=before,
                                    after=before + deltas[key]))
    return tuple(rows)
