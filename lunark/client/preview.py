"""Balance-change previews as plain text: the address a transfer pays and an action's preview in
lines, as the terminal chat and ``lunark mcp`` show them on an approval card."""

from __future__ import annotations

from eth_utils.address import to_checksum_address

from lunark.protocol import ActionRequest

__all__ = ["paid_address", "preview_lines"]


def _units(raw: int, decimals: int) -> str:
    sign = "-" if raw < 0 else ""
    whole, fraction = divmod(abs(raw), 10**decimals)
    digits = str(fraction).rjust(decimals, "0").rstrip("0") if decimals else ""
    return f"{sign}{whole}" + (f".{digits}" if digits else "")


def paid_address(request: ActionRequest) -> str | None:
    """The address a transfer's transaction pays: its ``to`` for the native currency, for a token the
    one in ``transfer(address,uint256)``'s calldata (not the token contract). None without a transaction."""
    tx = request.tx
    if tx is None:
        return None
    data = str(tx.data or "0x")
    return to_checksum_address(tx.to if len(data) < 74 else "0x" + data[34:74])


def preview_lines(request: ActionRequest, *, symbol: str = "ETH", decimals: int = 18) -> list[str]:
    """An action's balance-change preview in plain lines, as the terminal and ``lunark mcp`` show it.

    One line per change (``you -1.5 ETH (10 -> 8.5 ETH)``, ``recipient 0x7099…79C8 +1.5 ETH ...``, or
    ``recipient alice (0x7099…79C8) ...`` when the card names the address paid: ``recipient_name``, a
    contact label or an ENS name), then the simulated gas and the worst-case fee (in ``symbol``/
    ``decimals``, the network's native currency); or the one line saying why there is no preview.
    Empty without a preview.
    """
    preview = request.preview
    if preview is None:
        return []
    if not preview.simulated:
        return [f"no balance preview: {preview.reason or 'the node could not simulate it'}"]
    sender = (request.tx.from_ if request.tx is not None else "").lower()
    named = (paid_address(request) or "").lower() if request.recipient_name else ""
    lines: list[str] = []
    for change in preview.changes:
        short = f"{change.address[:6]}…{change.address[-4:]}"
        if change.address.lower() == sender:
            who = "you"
        elif change.address.lower() == named:  # only the address the card names, never another party
            who = f"recipient {request.recipient_name} ({short})"
        else:
            who = f"recipient {short}"
        delta = int(change.delta)
        amount = f"{'+' if delta > 0 else ''}{_units(delta, change.decimals)} {change.symbol}"
        lines.append(f"{who} {amount} ({_units(int(change.before), change.decimals)} -> "
                     f"{_units(int(change.after), change.decimals)} {change.symbol})")
    figures = [f"{preview.gas_used} gas" if preview.gas_used is not None else "",
               f"fee at most {_units(int(preview.max_fee), decimals)} {symbol}" if preview.max_fee is not None else ""]
    if any(figures):
        lines.append("simulated: " + ", ".join(f for f in figures if f))
    return lines
