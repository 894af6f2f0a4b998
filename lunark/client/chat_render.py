"""How ``lunark chat`` shows things: a chat's events (the answer, tool calls and results,
transactions, network switches, the end of an answer), the approval card (summary, balance
preview, warnings, amount, recipient, network, maximum fee, time left) and the connection's state.

``Rendering`` is the part of ``TerminalChat`` (``chat``) that turns events into text; the chat's
constructor sets the state declared on it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from lunark.client.chat_io import WIDTH, Terminal
from lunark.client.sdk import ChatSession, LunarkClient, paid_address, preview_lines
from lunark.protocol import (
    ActionRequest,
    ApprovalRequest,
    ApprovalResolved,
    ChatEvent,
    Error,
    ErrorBody,
    MessageEnd,
    MessageStart,
    NetworkSwitch,
    Status,
    Token,
    ToolCall,
    ToolResult,
    TxUpdate,
)

__all__ = ["Rendering"]


def _recipient_row(typed: str, request: ActionRequest) -> str:
    """The recipient as the user named it (a contact label, an ENS name) and the address the wallet
    pays: for a token, the one in the calldata (``transfer(address,uint256)``), not the contract."""
    address = paid_address(request)
    if not request.recipient_name or address is None:
        return typed
    return f"{request.recipient_name} ({address})"


_SEVERITY_MARKS = {"danger": "!! DANGER", "warning": "!  warning", "info": "i  note"}


def _short(value: str) -> str:
    return f"{value[:6]}...{value[-4:]}" if value.startswith("0x") and len(value) > 14 else value


def _compact(args: dict[str, Any]) -> str:
    parts = [f"{k}={_short(str(v))}" for k, v in args.items() if v is not None]
    text = ", ".join(parts)
    return text if len(text) <= 48 else text[:45] + "..."


def _units(value: int, decimals: int) -> str:
    amount = Decimal(value) / (Decimal(10) ** decimals)
    text = format(amount.normalize(), "f") if amount else "0"
    return text


def _time_left(expires_at: str) -> str:
    try:
        expires = datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
    except ValueError:
        return expires_at
    seconds = int((expires - datetime.now(UTC)).total_seconds())
    if seconds <= 0:
        return "expired"
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes}m {seconds:02d}s" if minutes else f"{seconds}s"


class Rendering(Terminal):
    """Events, approval cards and the connection's state, as text on the terminal."""

    client: LunarkClient
    session: ChatSession | None
    _down: bool
    _signing_out: bool
    _own_messages: set[str]
    _cut: str | None
    _usage: dict[str, list[Any]]

    def connection_changed(self, up: bool) -> None:
        if not up and self._signing_out:
            return  # the /logout it asked for; it says so itself
        if not up and self.client.session_ended:
            self.line("  [signed out: this session was ended (logout); sign in again]")
        elif not up:
            self._down = True
            self.line("  [connection lost; reconnecting...]")
        elif self._down:
            self._down = False
            self.line("  [reconnected]")

    def render(self, event: ChatEvent) -> None:
        if isinstance(event, Token):
            self.stream(event.text)
        elif isinstance(event, Status):
            self.status(event.text)
        elif isinstance(event, MessageStart):
            if event.role == "assistant":
                self._new_message = True
            elif event.message_id not in self._own_messages:
                self.line(f"you (elsewhere)> {event.content or ''}")
        elif isinstance(event, ToolCall):
            note = "needs your approval" if event.status == "awaiting_approval" else "running"
            self.line(f"  > {event.name}({_compact(event.args)}) {note}")
        elif isinstance(event, ToolResult):
            self.render_result(event)
        elif isinstance(event, TxUpdate):
            self.render_tx(event)
        elif isinstance(event, ApprovalResolved):
            if event.by == "timeout":
                self.line("  [the approval expired: nothing was sent]")
            elif event.by == "superseded":
                self.line("  [set aside for your new message: nothing was sent]")
        elif isinstance(event, NetworkSwitch):
            self.line(f"  [network] now on {event.display_name or event.name} (chain {event.chain_id})")
        elif isinstance(event, MessageEnd):
            self.end_line()
            self._usage.setdefault(event.message_id, []).append(event.usage)
            self._cut = event.message_id if event.finish_reason in ("length", "interrupted") else None
            if event.finish_reason == "aborted":
                self.line("  [stopped]")
            elif event.finish_reason == "error":
                self.line("  [the answer failed]")
            elif event.finish_reason == "length":
                self.line("  [cut at the model's output limit: /continue goes on]")
            elif event.finish_reason == "interrupted":
                why = event.message or "The server writing this answer stopped before it was done."
                self.line(f"  [interrupted: {why} /continue goes on]")
        elif isinstance(event, Error):
            self.line(f"  [error] {event.code}: {event.message}")

    def render_result(self, event: ToolResult) -> None:
        if event.status == "success":
            self.line("  < ok")
        elif event.status == "rejected":
            self.line("  < rejected: nothing was sent")
        elif event.status == "postponed":
            # Not a refusal: the call is planned again once the switch before it is approved.
            self.line("  < postponed until the network switch is decided: nothing was sent yet")
        elif event.status == "superseded":
            self.line("  < superseded by your new message: nothing was sent")
        else:
            error = event.error
            message: Any = None
            if isinstance(error, ErrorBody):
                message = error.message
            elif isinstance(error, dict):
                message = error.get("message")
            if message is None and isinstance(event.result, dict):
                message = event.result.get("reason") or event.result.get("status")
            self.line(f"  < failed: {message or 'unknown error'}")

    def render_tx(self, event: TxUpdate) -> None:
        status = str(event.status.value)
        head = f"  [tx {_short(event.tx_hash) if event.tx_hash else 'not signed'}] {status}"
        if event.onchain is not None:
            head += f" (on chain: {event.onchain.value})"
        if status == "mined":
            head += f" in block {event.block_number}, {event.confirmations} confirmation(s)"
        elif status == "confirmed":
            head += f" in block {event.block_number} ({event.confirmations} confirmation(s))"
        if event.reason:
            head += f": {event.reason}"
        self.wrapped(head.strip(), indent="  ")
        if event.explorer_url and status in ("submitted", "confirmed", "failed", "mismatch"):
            self.line(f"    {event.explorer_url}")

    # -- approval cards -----------------------------------------------------------------------

    def card(self, approval: ApprovalRequest, request: ActionRequest, index: int) -> None:
        assert self.session is not None
        network = self.session.network
        count = len(approval.action_requests)
        title = "approval needed" + (f" ({index + 1} of {count})" if count > 1 else "")
        self.line("  +-- " + title + " " + "-" * max(0, WIDTH - 7 - len(title)))
        self.wrapped(request.summary, indent="  | ")
        self.preview_card(request)
        self.card_warnings(request)
        rows: list[tuple[str, str]] = []
        tx = request.tx
        if request.name == "transfer" or tx is not None:
            symbol = str(request.args.get("token") or network.get("symbol") or "")
            if "amount" in request.args:
                rows.append(("amount", f"{request.args['amount']} {symbol}".strip()))
            recipient = request.args.get("to")
            if recipient:
                rows.append(("recipient", _recipient_row(str(recipient), request)))
        if tx is not None:
            chain_id = int(tx.chain_id, 16)
            same = chain_id == network.get("chain_id")
            name = (network.get("display_name") or network.get("name")) if same else "chain"
            rows.append(("network", f"{name} (chain {chain_id})"))
            decimals = int(network.get("decimals", 18)) if same else 18
            fee = int(tx.gas, 16) * int(tx.max_fee_per_gas, 16)
            rows.append(("max fee", f"{_units(fee, decimals)} {network.get('symbol', '') if same else ''}".strip()))
        elif request.facts:
            rows.extend((fact.label, fact.value) for fact in request.facts)
        elif request.description:
            rows.append(("action", request.description))
        rows.append(("time left", _time_left(approval.expires_at)))
        for label, value in rows:
            self.wrapped(f"{label:<10} {value}", indent="  | ")
        self.line("  +" + "-" * (WIDTH - 3))

    def preview_card(self, request: ActionRequest) -> None:
        """The balance changes, first on the card (the warnings follow: ``card_warnings``)."""
        assert self.session is not None
        network = self.session.network
        native = str(network.get("symbol") or "ETH"), int(network.get("decimals", 18))
        for line in preview_lines(request, symbol=native[0], decimals=native[1]):
            self.wrapped(line, indent="  | ")

    def card_warnings(self, request: ActionRequest) -> None:
        """The card's warnings, most severe first as the server sends them; a danger one says how to
        acknowledge it."""
        for warning in request.warnings:
            mark = _SEVERITY_MARKS.get(warning.severity, _SEVERITY_MARKS["danger"])
            self.wrapped(f"{mark} {warning.code}: {warning.message}", indent="  | ")
        if any(w.severity == "danger" for w in request.warnings):
            self.wrapped("To approve anyway, answer a and then type each DANGER code above.", indent="  | ")
