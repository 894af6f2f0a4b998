"""The answer writer: the tool results of one turn -> the English answer.

``compose_answer`` matches results to calls and describes each: a balance, a transfer at any
status of its settlement, a network switch, a rejection (with the user's reason), an error, or
a plugin's result by its shape.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from langchain_core.messages import ToolCall, ToolMessage

from lunark.models.planner.english import _AMOUNT_FULL, BALANCE, SWITCH, TRANSFER

__all__ = ["compose_answer"]


def compose_answer(calls: Sequence[ToolCall], results: Sequence[ToolMessage]) -> str:
    """Write the answer for one turn: ``results`` matched to ``calls`` by ``tool_call_id``.

    Results are described in the order of the calls; results for unknown
    calls follow, described from their content alone.
    """
    by_id: dict[str, list[ToolMessage]] = {}
    for result in results:
        by_id.setdefault(result.tool_call_id, []).append(result)
    lines: list[str] = []
    seen: set[str] = set()
    for call in calls:
        call_id = call.get("id") or ""
        seen.add(call_id)
        matched = by_id.get(call_id, [])
        if not matched:
            lines.append(f"I got no result from {call['name']}.")
        lines.extend(_describe_result(call["name"], call["args"], msg) for msg in matched)
    for result in results:
        if result.tool_call_id not in seen:
            lines.append(_describe_result(result.name or "the tool", {}, result))
    return "\n".join(lines) if lines else "There is nothing to report yet."


# -- tool results -> English ---------------------------------------------------------

_TX_STATUSES: Final = frozenset(
    {"submitted", "mined", "confirmed", "failed", "mismatch", "replaced", "dropped"}
)
_HITL_DEFAULT_REJECTION = re.compile(r"rejected the tool call", re.IGNORECASE)
_NOT_JSON: Final = object()


def _describe_result(name: str, args: Mapping[str, Any], message: ToolMessage) -> str:
    text = message.text.strip()
    data = _loads(text)
    if not isinstance(data, dict):
        if message.status == "error":
            if text.lower().startswith("error"):
                return f"That didn't work: {_sentence(text)}"
            reason = None if _HITL_DEFAULT_REJECTION.search(text) or not text else text
            return _rejected(name, args, {}, reason)
        if data is _NOT_JSON:
            return f"{name} said: “{text}”." if text else f"{name} returned nothing."
        return f"{name} returned {json.dumps(data)}."
    status = data.get("status")
    if status == "deferred":
        return f"I did not prepare the {name.replace('_', ' ')} yet: it waits for the network switch."
    if status == "superseded":
        return _superseded(name, args, data)
    if status == "rejected":
        return _rejected(name, args, data, _text_or_none(data.get("message") or data.get("reason")))
    if status in _TX_STATUSES and not data.get("error"):
        return _transfer_result(args, data)  # a settled transfer, whatever its outcome
    if (
        status == "error"
        or (data.get("error") and "tx_hash" not in data)
        or message.status == "error"
    ):
        return _error(data.get("error", data))
    if {"server", "tool", "result"} <= set(data) and isinstance(data["server"], str):
        # An MCP tool's result: its text as written, anything else as JSON.
        value = data["result"]
        said = value if isinstance(value, str) else json.dumps(value)
        return f"{data['server']}.{data['tool']} answered: “{said}”."
    # Recognize results by shape, so plugins' results read well and odd ones aren't misread.
    if "tx_hash" in data or status in _TX_STATUSES:
        return _transfer_result(args, data)
    if "amount" in data and name != TRANSFER:
        return _balance_result(args, data)
    if "chain_id" in data and ("network" in data or "display_name" in data):
        return _switch_result(args, data)
    return _generic(name, data)


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return _NOT_JSON


def _rejected(
    name: str, args: Mapping[str, Any], data: Mapping[str, Any], reason: str | None
) -> str:
    if name == TRANSFER:
        recipient = _recipient(args, data)
        text = f"Okay, I did not send {_what(args, data)}" + (
            f" to {recipient}." if recipient else "."
        )
    elif name == SWITCH:
        network = args.get("network") or data.get("network")
        text = "Okay, I stayed on the current network" + (
            f" instead of switching to {network}." if network else "."
        )
    elif name == BALANCE:
        text = "Okay, I did not check the balance."
    else:
        text = f"Okay, I did not run {_display(name)}."
    if reason:
        text += f" Your reason: “{reason}”."
    return text


def _superseded(name: str, args: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    if name == TRANSFER:
        recipient = _recipient(args, data)
        what = f"the transfer of {_what(args, data)}" + (f" to {recipient}" if recipient else "")
    elif name == SWITCH:
        network = args.get("network") or data.get("network")
        what = "the network switch" + (f" to {network}" if network else "")
    else:
        what = f"the call to {_display(name)}"
    return f"I set aside {what}: you sent a new message instead of deciding, so nothing was done."


def _display(name: str) -> str:
    """A tool's name as people read it: an MCP tool's ``server__tool`` is ``server.tool``."""
    server, sep, tool = name.partition("__")
    return f"{server}.{tool}" if sep and server and tool else name


def _error(error: Any) -> str:
    if isinstance(error, Mapping):
        code = error.get("code")
        message = _text_or_none(error.get("message")) or _text_or_none(error.get("detail"))
        message = message or (f"error code {code}" if code else json.dumps(error))
    else:
        code, message = None, str(error)
    if code == "policy_violation":
        return f"I can't do that: {_sentence(message)}"
    return f"That didn't work: {_sentence(message)}"


def _balance_result(args: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    symbol = _text_or_none(data.get("symbol")) or _text_or_none(args.get("token")) or ""
    amount = _format_amount(str(data.get("amount", "an unknown amount")))
    where = _on(data)
    is_token = bool(data.get("token") or args.get("token"))
    label = f"{symbol} balance" if is_token and symbol else "balance"
    address = _text_or_none(args.get("address"))
    name = _text_or_none(data.get("name"))
    resolved = _text_or_none(data.get("address"))
    whose = f"{name} ({_short(resolved)})" if name and resolved else _short(address)
    subject = f"The {label} of {whose}" if address else f"Your {label}"
    return f"{subject}{where} is {amount} {symbol}".rstrip() + "."


def _transfer_result(args: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    status = str(data.get("status", "submitted"))
    what = _what(args, data)
    recipient = _recipient(args, data)
    to = f" to {recipient}" if recipient else ""
    where = _on(data)
    tx_hash = _text_or_none(data.get("tx_hash"))
    tx = f"Transaction {_short(tx_hash)}" if tx_hash else "The transaction"
    block = data.get("block_number")
    in_block = f" in block {block}" if block is not None else ""
    reason = _text_or_none(data.get("reason"))
    because = f": {reason.rstrip('.')}" if reason else ""
    explorer = _text_or_none(data.get("explorer_url"))
    link = f" Explorer: {explorer}" if explorer else ""

    if status == "confirmed":
        return f"Sent {what}{to}{where}. {tx} confirmed{in_block}.{link}"
    if status == "mined":
        return (
            f"Sent {what}{to}{where}. {tx} was mined{in_block} "
            f"and is waiting for confirmations.{link}"
        )
    if status == "submitted":
        return f"I submitted the transfer of {what}{to}{where}. {tx} is not confirmed yet.{link}"
    if status == "failed":
        return (
            f"The transfer of {what}{to}{where} failed on chain{because}. {tx} was mined{in_block} "
            f"but reverted, so nothing was sent; only the network fee was spent.{link}"
        )
    if status == "mismatch" and not tx_hash:
        # Refused before any transaction existed: no signer here, or bytes that decode to none.
        return (
            f"Nothing was signed, so I did not send {what}{to}{where}{because}. Nothing left your "
            "wallet."
        )
    if status == "mismatch":
        return (
            f"Warning: your wallet signed something else. The transaction it signed ({_short(tx_hash)}) "
            f"does not match the transfer you approved ({what}{to}){because}, so it was not accepted. "
            "Please check your wallet's activity before trying again."
        )
    if status == "replaced":
        by = _text_or_none(data.get("replaced_by"))
        other = f" ({_short(by)})" if by else ""
        return (
            f"The transfer of {what}{to}{where} did not go through as approved: another "
            f"transaction{other} with the same nonce replaced it{because}. Check your wallet's "
            "activity to see what was sent instead."
        )
    if status == "dropped":
        dropped = f" ({_short(tx_hash)})" if tx_hash else ""
        return (
            f"The transfer of {what}{to}{where} was dropped{dropped}{because}: it was never mined, "
            "so nothing was sent. You can try again."
        )
    return f"The transfer of {what}{to}{where} has status “{status}” ({tx}).{link}"


def _switch_result(args: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    name = _network_name(data) or _text_or_none(args.get("network")) or "the new network"
    chain_id = data.get("chain_id")
    if chain_id is None:
        return f"Switched to {name}."
    # "Anvil (local) (chain 31337)" reads badly; keep one pair of parentheses.
    return (
        f"Switched to {name}, chain {chain_id}."
        if name.endswith(")")
        else f"Switched to {name} (chain {chain_id})."
    )


def _generic(name: str, data: Mapping[str, Any]) -> str:
    parts = [
        f"{key.replace('_', ' ')}: {_text_or_none(value) or json.dumps(value)}"
        for key, value in list(data.items())[:8]
    ]
    return f"{name} returned " + ("; ".join(parts) if parts else "an empty result") + "."


def _what(args: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    amount = _text_or_none(data.get("amount")) or _text_or_none(args.get("amount")) or "the amount"
    token = _text_or_none(args.get("token"))
    # No token named means the network's native currency.
    symbol = _text_or_none(data.get("symbol")) or (_short(token) if token else "ETH")
    return f"{_format_amount(amount)} {symbol}"


def _recipient(args: Mapping[str, Any], data: Mapping[str, Any]) -> str | None:
    name = _text_or_none(data.get("recipient_name"))
    address = _text_or_none(data.get("recipient"))
    if name and address:
        return f"{name} ({_short(address)})"
    value = (
        _text_or_none(data.get("recipient"))
        or _text_or_none(data.get("to"))
        or _text_or_none(args.get("to"))
    )
    return _short(value) if value else None


def _on(data: Mapping[str, Any]) -> str:
    name = _network_name(data)
    return f" on {name}" if name else ""


def _network_name(data: Mapping[str, Any]) -> str | None:
    network = data.get("network")
    if isinstance(network, Mapping):
        return _text_or_none(network.get("display_name")) or _text_or_none(network.get("name"))
    return _text_or_none(data.get("display_name")) or _text_or_none(network)


def _short(value: str | None) -> str:
    """``0x1234…abcd`` for addresses and hashes; anything else as it is."""
    if value and value.startswith("0x") and len(value) > 14:
        return f"{value[:6]}…{value[-4:]}"
    return value or ""


def _format_amount(amount: str) -> str:
    """Trim trailing zeros; group thousands from five integer digits up (9999.5, 1,000,000)."""
    if not _AMOUNT_FULL.fullmatch(amount):
        return amount
    whole, _, fraction = amount.partition(".")
    fraction = fraction.rstrip("0")
    whole = whole or "0"
    if len(whole) >= 5:
        whole = f"{int(whole):,}"
    return f"{whole}.{fraction}" if fraction else whole


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else text + "."


def _text_or_none(value: Any) -> str | None:
    if value is None or isinstance(value, Mapping | list):
        return None
    text = str(value).strip()
    return text or None
