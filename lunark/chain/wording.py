"""Transactions and their differences from an approval, said in words a user understands.

``describe_transaction`` says what any transaction does (``"sends 1.5 ETH to 0x7099…79C8"``);
``explain`` says one difference ``lunark.chain.intent.diff_prepared`` found
(``"amount is 2 ETH, approved 1 ETH"``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from lunark.chain.decoded import DecodedTx, erc20_transfer_of, same_address
from lunark.chain.types import PreparedTx, TransferIntent, to_units
from lunark.networks import Network

__all__ = ["describe_transaction", "explain"]

def _short_address(address: str) -> str:
    return f"{address[:6]}…{address[-4:]}"


def _exact(raw: int, decimals: int, symbol: str) -> str:
    """An amount the user approved or is asked about: every digit."""
    value = to_units(raw, decimals)
    return f"{format(value.normalize(), 'f') if value else '0'} {symbol}"


def _about(raw: int, decimals: int, symbol: str) -> str:
    """A fee: six significant digits are what a person compares."""
    value = to_units(raw, decimals)
    if not value:
        return f"0 {symbol}"
    rounded = Decimal(format(value, ".6g"))
    return f"{format(rounded.normalize(), 'f')} {symbol}"


def _gwei(wei: int) -> str:
    return _about(wei, 9, "gwei")


def _native(network: Network | None, intent: TransferIntent | None) -> tuple[str, int]:
    """``(symbol, decimals)`` of the currency fees are paid in."""
    if network is not None:
        return network.symbol, network.decimals
    if intent is not None and intent.is_native:
        return intent.symbol, intent.decimals
    return "ETH", 18


def _token_units(
    contract: str, network: Network | None, intent: TransferIntent | None
) -> tuple[str, int] | None:
    if intent is not None and intent.token is not None and same_address(contract, intent.token):
        return intent.symbol, intent.decimals
    if network is not None:
        for token in network.tokens:
            if same_address(contract, token.address):
                return token.symbol, token.decimals
    return None


def describe_transaction(
    tx: DecodedTx, *, network: Network | None = None, intent: TransferIntent | None = None
) -> str:
    """What ``tx`` does, in words: ``"sends 1.5 ETH to 0x7099…79C8"``.

    Other shapes: ``"calls transfer of 10 TKN to 0x3C44…93BC"`` (tokens named
    from ``intent`` or ``network``), ``"cancels: sends 0 ETH to yourself"``,
    ``"calls contract 0x5FbD…0aa3 (function 0x095ea7b3)"``, ``"creates a
    contract"``; an EIP-7702 transaction starts with the delegation it carries.
    The native currency comes from ``network`` (else ``intent``, else ETH).
    """
    symbol, decimals = _native(network, intent)
    ether = _exact(tx.value, decimals, symbol)

    def party(address: str) -> str:
        return "yourself" if same_address(address, tx.sender) else _short_address(address)

    if tx.to is None:
        what = "creates a contract" + (f", sending {ether}" if tx.value else "")
    elif tx.data in ("0x", "0X", ""):
        if same_address(tx.to, tx.sender) and tx.value == 0 and tx.type != 4:
            what = f"cancels: sends {ether} to yourself"
        else:
            what = f"sends {ether} to {party(tx.to)}"
    else:
        transfer = erc20_transfer_of(tx.data)
        if transfer is not None:
            recipient, amount = transfer
            units = _token_units(tx.to, network, intent)
            if units is None:
                quantity = f"{amount} units of token {_short_address(tx.to)}"
            else:
                quantity = _exact(amount, units[1], units[0])
            what = f"calls transfer of {quantity} to {party(recipient)}"
        else:
            what = f"calls contract {party(tx.to)} (function {tx.data[:10].lower()})"
        if tx.value:
            what += f", sending {ether} along"
    if tx.type == 4:
        targets = ", ".join(_short_address(a) for a in tx.delegations) or "a contract"
        what = f"delegates an account to {targets} (EIP-7702) and {what}"
    return what


def explain(
    field: str,
    change: dict[str, Any],
    *,
    prepared: PreparedTx,
    tx: DecodedTx,
    fee_factor: Decimal | int,
    network: Network | None,
) -> str:
    """One difference in words a user understands."""
    intent = prepared.intent
    expected, actual = change["expected"], change["actual"]
    native, native_decimals = _native(network, intent)
    if field == "type":
        if actual == 4:
            text = (
                "type 4 (EIP-7702) transactions can hand control of your account to a contract "
                "and are refused"
            )
            if tx.delegations:
                text += f"; this one delegates to {', '.join(tx.delegations)}"
            return text
        if actual == 3:
            return "type 3 (blob) transactions are refused: a transfer never carries blobs"
        return f"type {actual} transactions are not understood here and are refused (only 0, 1 and 2)"
    if field == "sender":
        return f"it is signed by {actual}, not by your address {expected}"
    if field == "to":
        if intent.is_native:
            return f"recipient is {actual or 'a new contract'}, approved {expected}"
        return f"it calls {actual or 'a new contract'}, not the {intent.symbol} contract {expected}"
    if field == "value":
        if intent.is_native:
            return (
                f"amount is {_exact(int(actual), intent.decimals, intent.symbol)}, "
                f"approved {_exact(int(expected), intent.decimals, intent.symbol)}"
            )
        return (
            f"it also sends {_exact(int(actual), native_decimals, native)}; "
            f"a {intent.symbol} transfer sends no {native}"
        )
    if field == "data":
        data = f"{actual[:26]}…" if len(actual) > 27 else actual
        if intent.is_native:
            return f"it calls a contract (data {data}); the approved transfer calls nothing"
        return f"it does something other than transfer {intent.symbol} (data {data})"
    if field == "recipient":
        return f"recipient is {actual}, approved {expected}"
    if field == "amount":
        return (
            f"amount is {_exact(int(actual), intent.decimals, intent.symbol)}, "
            f"approved {_exact(int(expected), intent.decimals, intent.symbol)}"
        )
    if field == "chain_id":
        if actual is None:
            return f"it names no network, so it could be replayed on any chain; approved chain {expected}"
        return f"it is for chain {actual}, approved chain {expected}"
    if field == "nonce":
        return (
            f"its nonce {actual} is below the prepared {expected}, "
            "so it could replace another transaction of yours"
        )
    if field == "max_fee":
        card = _about(int(expected), native_decimals, native)
        factor = format(Decimal(fee_factor).normalize(), "f")
        bound = f" ({factor}x that is accepted)" if Decimal(fee_factor) != 1 else ""
        if actual is None:
            return f"its network fee cap cannot be read; the card allowed at most {card}{bound}"
        return (
            f"the network fee could reach {_about(int(actual), native_decimals, native)}, "
            f"the card allowed at most {card}{bound}"
        )
    if field == "priority_fee":
        assert tx.max_priority_fee_per_gas is not None and tx.max_fee_per_gas is not None
        return (
            f"its priority fee ({_gwei(tx.max_priority_fee_per_gas)} per gas) is above its "
            f"maximum fee ({_gwei(tx.max_fee_per_gas)} per gas)"
        )
    return f"{field} is {actual}, approved {expected}"
