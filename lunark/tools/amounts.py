"""Amounts people say ("all", "max", "half", "25%", "1/3" of a balance), made exact.

    share_of("half")    # Fraction(1, 2)
    share_of("0.5")     # None: a plain amount, taken as it is
    amount = await amount_for_share(client, sender, recipient, Fraction(1), token=None)   # "all my ETH"

``transfer`` resolves a share in ``prepare``, from the live balance, before anything is shown: the
approval card carries the exact figure, and the transaction sends exactly that. For the network's
native currency the network fee is left: the amount is the balance minus the most the transfer's own
fee can be (gas limit × max fee per gas, as ``ChainClient.prepare`` sets them), so "send all my ETH"
leaves only what the fee does not use.
"""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction

from eth_typing import ChecksumAddress

from lunark.chain.client import ChainClient
from lunark.chain.types import to_units
from lunark.errors import InsufficientFunds, InvalidAmount

__all__ = ["SHARE_WORDS", "amount_for_share", "share_of"]

SHARE_WORDS: dict[str, Fraction] = {
    "all": Fraction(1),
    "max": Fraction(1),
    "everything": Fraction(1),
    "half": Fraction(1, 2),
}
"""Words for a share of the balance; a percentage ("25%") or a fraction ("1/3") is one too."""

_PERCENT = re.compile(r"(\d{1,3}(?:\.\d{1,6})?)\s*%")
_FRACTION = re.compile(r"(\d{1,6})\s*/\s*(\d{1,6})")


def share_of(amount: str) -> Fraction | None:
    """The share of the balance ``amount`` names, in (0, 1]; ``None`` for a plain amount.

    Raises ``InvalidAmount`` for a share that is no part of a balance ("0%", "150%", "3/2").
    """
    text = amount.strip().lower()
    share: Fraction | None = SHARE_WORDS.get(text)
    if share is None and (percent := _PERCENT.fullmatch(text)):
        share = Fraction(Decimal(percent[1])) / 100
    if share is None and (fraction := _FRACTION.fullmatch(text)):
        if int(fraction[2]) == 0:
            raise InvalidAmount(f"{amount!r} divides by zero.", value=amount)
        share = Fraction(int(fraction[1]), int(fraction[2]))
    if share is not None and not 0 < share <= 1:
        raise InvalidAmount(
            f"{amount!r} is not a part of the balance: give a share from above 0 up to all of it.", value=amount
        )
    return share


async def amount_for_share(
    client: ChainClient, sender: str, recipient: str, share: Fraction, *, token: ChecksumAddress | None
) -> str:
    """``share`` of ``sender``'s live balance as an exact amount in whole units (a decimal string).

    A token's share is of its balance (the fee is paid in the native currency). The native
    currency's leaves the fee of this very transfer: at most the balance minus that fee.
    Raises ``InsufficientFunds`` when nothing would be left to send.
    """
    if token is not None:
        balance = await client.token_balance(sender, token)
        raw = balance.raw * share.numerator // share.denominator
        if raw <= 0:
            raise InsufficientFunds(
                f"{balance.address} holds {_text(to_units(balance.raw, balance.decimals))} {balance.symbol}: "
                "there is nothing to send.",
                needed=1, available=balance.raw, symbol=balance.symbol,
            )
        return _text(to_units(raw, balance.decimals))
    network = client.network
    balance = await client.native_balance(sender)
    # The fee the transfer itself will carry: prepared as for any amount (1 wei), which also checks
    # the recipient and simulates the call.
    intent = await client.build_intent(sender, recipient, to_units(1, network.decimals), None)
    try:
        fee = (await client.prepare(intent)).max_fee
    except InsufficientFunds as exc:  # not even 1 wei and the fee: said below, without the 1 wei
        fee = exc.needed - intent.amount
    raw = min(balance.raw * share.numerator // share.denominator, balance.raw - fee)
    if raw <= 0:
        raise InsufficientFunds(
            f"{balance.address} holds {_text(balance.amount)} {network.symbol}, which does not cover the "
            f"network fee of sending it (up to {_text(to_units(fee, network.decimals))} {network.symbol}).",
            needed=fee, available=balance.raw, symbol=network.symbol,
        )
    return _text(to_units(raw, network.decimals))


def _text(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"
