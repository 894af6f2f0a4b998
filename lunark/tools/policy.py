"""The spending policy: deterministic rules outside the model.

Checked in the transfer tool before the user is asked anything. Nothing a model
or a message says can lift it: it is built from configuration at start-up and
the tools only read it.

Caps are per token symbol in whole units (``{"ETH": "1", "TKN": "500"}``);
``"*"`` caps any token not named. Daily caps count what was sent since 00:00
UTC through the ``SpendLedger``. The deny list wins over the allow list.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Protocol

from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address

from lunark.chain.types import TransferIntent
from lunark.errors import PolicyViolation

__all__ = ["InMemorySpendLedger", "SpendLedger", "SpendingPolicy", "utc_today"]


def utc_today() -> date:
    return datetime.now(UTC).date()


class SpendLedger(Protocol):
    """Where sent amounts are counted for daily caps."""

    async def spent(self, address: str, symbol: str, day: date) -> Decimal:
        """Whole units of ``symbol`` that ``address`` sent on ``day`` (UTC)."""
        ...

    async def record(self, address: str, symbol: str, amount: Decimal, tx_hash: str, day: date) -> None:
        """Count a sent amount once per ``tx_hash``."""
        ...


class InMemorySpendLedger:
    """A ledger for one process (tests, terminal use)."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str, date], dict[str, Decimal]] = defaultdict(dict)
        self._lock = asyncio.Lock()

    async def spent(self, address: str, symbol: str, day: date) -> Decimal:
        rows = self._rows.get((address.lower(), symbol.upper(), day), {})
        return sum(rows.values(), Decimal(0))

    async def record(self, address: str, symbol: str, amount: Decimal, tx_hash: str, day: date) -> None:
        async with self._lock:
            self._rows[(address.lower(), symbol.upper(), day)][tx_hash.lower()] = amount


def _caps(raw: Mapping[str, Decimal | str | int]) -> dict[str, Decimal]:
    return {symbol.upper(): Decimal(str(value)) for symbol, value in raw.items()}


@dataclass(frozen=True, slots=True, kw_only=True)
class SpendingPolicy:
    """Per-transaction and daily caps per token, recipient allow and deny lists."""

    per_tx_cap: Mapping[str, Decimal] = field(default_factory=dict)
    """Most one transfer may move, per symbol, in whole units (``"*"``: any other token)."""
    daily_cap: Mapping[str, Decimal] = field(default_factory=dict)
    """Most that may be sent per UTC day, per symbol, in whole units (``"*"``: any other token)."""
    allow: frozenset[ChecksumAddress] | None = None
    """If set, the only recipients allowed."""
    deny: frozenset[ChecksumAddress] = frozenset()
    """Recipients never allowed (wins over ``allow``)."""

    @classmethod
    def build(
        cls,
        *,
        per_tx_cap: Mapping[str, Decimal | str | int] | None = None,
        daily_cap: Mapping[str, Decimal | str | int] | None = None,
        allow: Iterable[str] | None = None,
        deny: Iterable[str] = (),
    ) -> SpendingPolicy:
        return cls(
            per_tx_cap=_caps(per_tx_cap or {}),
            daily_cap=_caps(daily_cap or {}),
            allow=None if allow is None else frozenset(to_checksum_address(a) for a in allow),
            deny=frozenset(to_checksum_address(a) for a in deny),
        )

    def _cap(self, caps: Mapping[str, Decimal], symbol: str) -> Decimal | None:
        return caps.get(symbol.upper(), caps.get("*"))

    async def check(
        self,
        intent: TransferIntent,
        ledger: SpendLedger,
        *,
        also_pending: Decimal = Decimal(0),
        day: date | None = None,
    ) -> None:
        """Raise ``PolicyViolation`` if ``intent`` breaks a rule.

        ``also_pending`` counts transfers of the same symbol proposed earlier in
        the same turn, so two transfers cannot each slip under the daily cap.
        """
        recipient = intent.recipient
        if recipient in self.deny:
            raise PolicyViolation(
                f"Sending to {recipient} is not allowed: it is on the deny list.", rule="deny_list",
                recipient=recipient,
            )
        if self.allow is not None and recipient not in self.allow:
            raise PolicyViolation(
                f"Sending to {recipient} is not allowed: only recipients on the allow list can receive funds.",
                rule="allow_list",
                recipient=recipient,
            )
        amount = intent.human_amount
        symbol = intent.symbol
        per_tx = self._cap(self.per_tx_cap, symbol)
        if per_tx is not None and amount > per_tx:
            raise PolicyViolation(
                f"{_fmt(amount)} {symbol} is over the per-transaction limit of {_fmt(per_tx)} {symbol}.",
                rule="per_tx_cap",
                limit=_fmt(per_tx),
                amount=_fmt(amount),
                symbol=symbol,
            )
        daily = self._cap(self.daily_cap, symbol)
        if daily is not None:
            spent = await ledger.spent(intent.sender, symbol, day or utc_today())
            total = spent + also_pending + amount
            if total > daily:
                left = max(daily - spent - also_pending, Decimal(0))
                raise PolicyViolation(
                    f"{_fmt(amount)} {symbol} would exceed the daily limit of {_fmt(daily)} {symbol} "
                    f"({_fmt(spent)} already sent today, {_fmt(left)} left).",
                    rule="daily_cap",
                    limit=_fmt(daily),
                    spent=_fmt(spent),
                    amount=_fmt(amount),
                    symbol=symbol,
                )


def _fmt(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text
