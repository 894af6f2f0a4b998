"""The spending policy: deterministic rules outside the model.

Checked in the transfer tool before the user is asked anything, and again when an approved
transfer executes. Nothing a model or a message says can lift it: it is built from
configuration at start-up and the tools only read it.

Caps are per token symbol in whole units (``{"ETH": "1", "TKN": "500"}``); ``"*"`` caps any
token not named. They are compared in the token's base units, as integers: nothing is rounded
in the user's favour. Daily caps count, per address across all of its chats, what was sent since
00:00 UTC and what waits for approval: an amount is reserved in the ``SpendLedger`` when the
approval is asked, held when it executes, committed at broadcast and released on reject,
expiry, mismatch or failure. The deny list wins over the allow list.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Context, Decimal
from typing import Protocol

from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address

from lunark.chain.types import TransferIntent, rescale_up, to_units
from lunark.errors import PolicyViolation
from lunark.store.base import SpendEntry
from lunark.tools.recipient import RecipientPolicy

__all__ = ["InMemorySpendLedger", "SpendLedger", "SpendingPolicy", "cap_units", "utc_today"]


def utc_today() -> date:
    return datetime.now(UTC).date()


class SpendLedger(Protocol):
    """Where amounts are counted for daily caps, in base units (``lunark.store.Store`` is one)."""

    async def counted(self, address: str, symbol: str, decimals: int, day: date, *, now: datetime) -> int: ...

    async def reserve(self, entry: SpendEntry, cap: int | None, *, now: datetime) -> int | None: ...

    async def hold(self, entry: SpendEntry, cap: int | None, *, now: datetime) -> int | None: ...

    async def commit(self, settlement_id: str, tx_hash: str, *, moved: str = "") -> None: ...

    async def release(self, settlement_id: str) -> None: ...


class InMemorySpendLedger:
    """A ledger for one process (tests, terminal use); the same rules as the store's."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], tuple[SpendEntry, str]] = {}
        """By ``(settlement_id, moved)``: the entry and its state."""
        self._lock = asyncio.Lock()

    def _live(self, entry: SpendEntry, state: str, now: datetime) -> bool:
        return state == "committed" or (
            state == "reserved" and (entry.expires_at is None or entry.expires_at > now)
        )

    async def counted(self, address: str, symbol: str, decimals: int, day: date, *, now: datetime) -> int:
        return self._count(address, symbol, decimals, day, now, skip=None)

    def _count(
        self, address: str, symbol: str, decimals: int, day: date, now: datetime, skip: tuple[str, str] | None,
    ) -> int:
        return sum(
            rescale_up(entry.amount, entry.decimals, decimals)
            for key, (entry, state) in self._entries.items()
            if key != skip and entry.address.lower() == address.lower()
            and entry.symbol.upper() == symbol.upper() and entry.day == day and self._live(entry, state, now)
        )

    async def _reserve(self, entry: SpendEntry, cap: int | None, now: datetime, hold: bool) -> int | None:
        async with self._lock:
            key = (entry.settlement_id, entry.moved)
            known = self._entries.get(key)
            if known is not None and known[1] == "committed":
                return None
            if (known is None or not self._live(*known, now)) and cap is not None:
                counted = self._count(entry.address, entry.symbol, entry.decimals, entry.day, now, key)
                if counted + entry.amount > cap:
                    return counted
            self._entries[key] = (replace(entry, expires_at=None) if hold else entry, "reserved")
            return None

    async def reserve(self, entry: SpendEntry, cap: int | None, *, now: datetime) -> int | None:
        return await self._reserve(entry, cap, now, hold=False)

    async def hold(self, entry: SpendEntry, cap: int | None, *, now: datetime) -> int | None:
        return await self._reserve(entry, cap, now, hold=True)

    async def commit(self, settlement_id: str, tx_hash: str, *, moved: str = "") -> None:
        key = (settlement_id, moved)
        if key in self._entries:
            self._entries[key] = (replace(self._entries[key][0], expires_at=None), "committed")

    async def release(self, settlement_id: str) -> None:
        key = (settlement_id, "")
        if key in self._entries:
            self._entries[key] = (self._entries[key][0], "released")


def cap_units(cap: Decimal, decimals: int) -> int:
    """A cap in whole units as base units of a ``decimals`` token, exactly (a finer cap rounds down)."""
    return int(cap.scaleb(decimals, context=Context(prec=200)))


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
    recipients: RecipientPolicy = field(default_factory=RecipientPolicy)
    """The recipient checks' settings: look-alike digits, log range, warnings that refuse."""

    @classmethod
    def build(
        cls,
        *,
        per_tx_cap: Mapping[str, Decimal | str | int] | None = None,
        daily_cap: Mapping[str, Decimal | str | int] | None = None,
        allow: Iterable[str] | None = None,
        deny: Iterable[str] = (),
        recipients: RecipientPolicy | None = None,
    ) -> SpendingPolicy:
        return cls(
            per_tx_cap=_caps(per_tx_cap or {}),
            daily_cap=_caps(daily_cap or {}),
            allow=None if allow is None else frozenset(to_checksum_address(a) for a in allow),
            deny=frozenset(to_checksum_address(a) for a in deny),
            recipients=recipients or RecipientPolicy(),
        )

    def _cap(self, caps: Mapping[str, Decimal], symbol: str) -> Decimal | None:
        return caps.get(symbol.upper(), caps.get("*"))

    async def check(
        self,
        intent: TransferIntent,
        ledger: SpendLedger,
        *,
        settlement_id: str | None = None,
        expires_at: datetime | None = None,
        executing: bool = False,
        now: datetime | None = None,
        reservation: str | None = None,
    ) -> None:
        """Raise ``PolicyViolation`` if ``intent`` breaks a rule.

        With ``settlement_id`` (the approved action's key, ``ToolContext.settlement_id``) the amount
        is also reserved against the daily cap, atomically, until ``expires_at``; with ``executing``
        the reservation is held for the execution (and taken again under the cap if it lapsed).
        Without one, the daily cap is only compared with what is counted now. ``reservation`` is
        the former name of ``settlement_id`` (deprecated).
        """
        if reservation is not None:
            warnings.warn("SpendingPolicy.check(reservation=...) is now settlement_id=...", DeprecationWarning,
                          stacklevel=2)
            settlement_id = settlement_id or reservation
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
        symbol, decimals, amount = intent.symbol, intent.decimals, intent.amount
        per_tx = self._cap(self.per_tx_cap, symbol)
        if per_tx is not None and amount > cap_units(per_tx, decimals):
            raise PolicyViolation(
                f"{_fmt(intent.human_amount)} {symbol} is over the per-transaction limit of {_fmt(per_tx)} {symbol}.",
                rule="per_tx_cap",
                limit=_fmt(per_tx),
                amount=_fmt(intent.human_amount),
                symbol=symbol,
            )
        daily = self._cap(self.daily_cap, symbol)
        cap = None if daily is None else cap_units(daily, decimals)
        now = now or datetime.now(UTC)
        day = now.date()
        if settlement_id is not None:
            entry = SpendEntry(
                settlement_id=settlement_id, address=intent.sender, symbol=symbol, decimals=decimals, amount=amount,
                day=day, expires_at=expires_at,
            )
            take = ledger.hold if executing else ledger.reserve
            counted = await take(entry, cap, now=now)
        elif cap is not None:
            counted = await ledger.counted(intent.sender, symbol, decimals, day, now=now)
            counted = counted if counted + amount > cap else None
        else:
            counted = None
        if counted is not None and daily is not None:
            spent = to_units(counted, decimals)
            left = max(daily - spent, Decimal(0))
            raise PolicyViolation(
                f"{_fmt(intent.human_amount)} {symbol} would exceed the daily limit of {_fmt(daily)} {symbol} "
                f"({_fmt(spent)} already sent or waiting for approval today, {_fmt(left)} left).",
                rule="daily_cap",
                limit=_fmt(daily),
                spent=_fmt(spent),
                amount=_fmt(intent.human_amount),
                symbol=symbol,
            )


def _fmt(value: Decimal) -> str:
    if not value:
        return "0"
    return format(value.normalize(Context(prec=200)), "f")
