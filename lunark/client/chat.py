"""The terminal chat (``lunark chat``): talk to a Lunark server, decide approvals, watch transactions.

Plain text, readable on an 80-column terminal, and usable with stdin that is
not a terminal (pipes, tests). It signs in with a private key, streams the
answer token by token, shows tool calls compactly, shows each approval as a
card (amount, recipient, network, maximum fee, time left) and asks
``[a]pprove / [e]dit amount / [r]eject``. While nothing streams, a status line says
what the agent is doing ("thinking…", "waiting for your approval", "checking the
transaction"); on a terminal it is erased by what comes next. Approving signs the transaction with
the local key and broadcasts it to the chain's RPC, like a wallet, then tells
the server the hash (several cards of one approval: once all are decided, in order, each at its
nonce after the rejected ones before it) (``--sign-mode server`` lets the server's own signer sign
instead). Transaction status follows live. Dropped connections are
re-established without losing events (the SDK does that).

    lunark chat --url http://localhost:8080                 # Anvil dev account 0
    LUNARK_CHAT_KEY=0x... lunark chat --url http://localhost:8080 --chat chat_abc

Commands: ``/new``, ``/chats``, ``/join ID``, ``/approval``, ``/continue``, ``/stats``, ``/contacts``
(``/contacts add LABEL ADDRESS``, ``/contacts rm LABEL``),
``/logout`` (``/logout all``: every session of the account), ``/help``, ``/quit``.
Ctrl-C stops a running answer; at the prompt it quits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import sys
import textwrap
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal, TextIO

from lunark.client.sdk import ChatSession, LunarkClient, paid_address, preview_lines
from lunark.client.wallet import sign_and_send, with_nonce_floors
from lunark.errors import LunarkError
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
    approve_decision,
    edit_decision,
    reject_decision,
)

__all__ = ["DEFAULT_URL", "DEV_PRIVATE_KEY", "KEY_ENV", "add_arguments", "main", "run", "run_chat"]

DEV_PRIVATE_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
"""DEV ONLY: Anvil's development account 0 (0xf39F…2266). The whole world knows this key;
never use it, or send anything to its address, on a real network."""

DEFAULT_URL = "http://localhost:8080"
"""Where ``lunark serve`` listens by default."""

KEY_ENV = "LUNARK_CHAT_KEY"
"""Environment variable for the private key (safer than ``--key``, which other users can see in ``ps``)."""

WIDTH = 78
_ANSWER_INDENT = len("lunark> ")
_WORDS = re.compile(r"\n|[^\S\n]*[^\s]+|[^\S\n]+")

SignMode = Literal["wallet", "server"]

HELP = """\
Type a message and press Enter. Commands:
  /new        start a new chat
  /chats      list your chats
  /join ID    switch to one of your chats
  /approval   show the pending approval again
  /continue   go on with an answer cut at the model's output limit, or by a server that stopped
  /stats      output tokens, time to first token and speed of the last answer
  /contacts   list your contacts ("send 1 ETH to alice" pays the one labelled alice)
  /contacts add LABEL ADDRESS   save an address under a label (again: rename it)
  /contacts rm LABEL            forget a contact
  /logout     end this session on the server and leave
  /logout all end every session of your account (every device, every server process)
  /help       this help
  /quit       leave (Ctrl-D works too)
At an approval card: a = approve (sign and send), e = edit the amount,
r = reject. A danger warning on the card is acknowledged by typing its code
after a. Ctrl-C stops a running answer."""


def _recipient_row(typed: str, request: ActionRequest) -> str:
    """The recipient as the user named it (a contact label, an ENS name) and the address the wallet
    pays: for a token, the one in the calldata (``transfer(address,uint256)``), not the contract."""
    address = paid_address(request)
    if not request.recipient_name or address is None:
        return typed
    return f"{request.recipient_name} ({address})"


class _LineReader:
    """Reads lines from a blocking stream without blocking the event loop.

    One daemon thread per pending read: a daemon thread never holds up the
    process's exit, as a thread-pool read stuck on a terminal would. A read
    that was given up (Ctrl-C) is handed to the next caller, so no line is lost.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._pending: asyncio.Future[str] | None = None

    async def readline(self) -> str:
        if self._pending is None or (self._pending.done() and self._pending.cancelled()):
            loop = asyncio.get_running_loop()
            future: asyncio.Future[str] = loop.create_future()
            self._pending = future

            def deliver(line: str | BaseException) -> None:
                if future.done():
                    return
                if isinstance(line, BaseException):
                    future.set_exception(line)
                else:
                    future.set_result(line)

            def work() -> None:
                try:
                    result: str | BaseException = self.stream.readline()
                except (OSError, ValueError) as exc:  # closed stream
                    result = exc
                with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                    loop.call_soon_threadsafe(deliver, result)

            threading.Thread(target=work, name="lunark-chat-stdin", daemon=True).start()
        pending = self._pending
        line = await asyncio.shield(pending)
        self._pending = None
        return line


_SEVERITY_MARKS = {"danger": "!! DANGER", "warning": "!  warning", "info": "i  note"}


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


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


def _figures(parts: Sequence[Any]) -> str:
    """Output tokens, time to first token and speed of one answer, over all its parts."""
    tokens = sum(u.output_tokens for u in parts)
    text = f"{tokens} token{'s' if tokens != 1 else ''}"
    if len(parts) > 1:
        text += f" in {len(parts)} parts"
    ttft = next((u.ttft_ms for u in parts if u.ttft_ms is not None), None)
    if ttft is not None:
        text += f", first token after {ttft:.0f} ms"
    # Speed over the time spent writing: each part's tokens / its tokens per second.
    timed = [(u.output_tokens, u.tokens_per_s) for u in parts if u.tokens_per_s]
    seconds = sum(n / speed for n, speed in timed)
    if seconds > 0:
        text += f", {sum(n for n, _ in timed) / seconds:.1f} tokens/s"
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


class TerminalChat:
    """The chat loop; ``run_chat`` builds and runs it."""

    def __init__(
        self,
        client: LunarkClient,
        *,
        private_key: str,
        reader: _LineReader,
        out: TextIO,
        rpc_url: str | None,
        sign_mode: SignMode,
    ) -> None:
        self.client = client
        self.private_key = private_key
        self.reader = reader
        self.out = out
        self.rpc_url = rpc_url
        self.sign_mode = sign_mode
        self.session: ChatSession | None = None
        self._line_start = True
        self._column = 0
        self._new_message = True
        self._echo = not _isatty(reader.stream)
        self._in_turn = False
        self._down = False
        self._signing_out = False
        self._own_messages: set[str] = set()
        self._queued: str | None = None
        """A message typed at an approval's prompt, sent once the current turn is over."""
        self._live_status = _isatty(out)  # a terminal: the status line is erased by what follows
        self._status = ""  # the status shown now ("" once anything else was written)
        self._cut: str | None = None  # the last answer, when cut at the model's output limit or by a crash
        self._usage: dict[str, list[Any]] = {}  # assistant message id -> usage of each of its parts

    # -- output -------------------------------------------------------------------------------

    def write(self, text: str) -> None:
        if not text:
            return
        if self._status:
            self._status = ""
            if self._live_status:
                self._raw("\r\033[K")  # erase the status line: something else streams now
        self._raw(text)
        newline = text.rfind("\n")
        self._column = len(text) - newline - 1 if newline >= 0 else self._column + len(text)
        self._line_start = text.endswith("\n")

    def _raw(self, text: str) -> None:
        with contextlib.suppress(BrokenPipeError, ValueError):
            try:
                self.out.write(text)
            except UnicodeEncodeError:  # a terminal that cannot show, say, "…"
                encoding = getattr(self.out, "encoding", None) or "ascii"
                self.out.write(text.encode(encoding, "replace").decode(encoding))
            self.out.flush()

    def status(self, text: str) -> None:
        """What the agent is doing, while nothing else streams: on a terminal one line that the
        next output replaces; in a pipe a line of the transcript."""
        if not text or text == self._status:
            return
        self.end_line()
        if self._live_status:
            self._raw(f"\r\033[K  … {text}")  # over the previous status, if any
        else:
            self.write(f"  … {text}\n")
        self._status = text

    def stream(self, text: str) -> None:
        """Assistant text as it arrives, wrapped at word boundaries to the terminal width."""
        for word in _WORDS.findall(text):
            if word == "\n":
                self.write("\n")
                continue
            if self._line_start:
                self.write("lunark> " if self._new_message else " " * _ANSWER_INDENT)
                self._new_message = False
                word = word.lstrip(" ")
            elif self._column + len(word) > WIDTH and self._column > _ANSWER_INDENT:
                self.write("\n" + " " * _ANSWER_INDENT)
                word = word.lstrip(" ")
            self.write(word)

    def line(self, text: str = "") -> None:
        self.end_line()
        self.write(text + "\n")

    def end_line(self) -> None:
        if not self._line_start:
            self.write("\n")

    def wrapped(self, text: str, indent: str = "  ") -> None:
        for paragraph in text.splitlines() or [""]:
            for row in textwrap.wrap(paragraph, WIDTH, initial_indent=indent, subsequent_indent=indent + "  ") or [
                indent
            ]:
                self.line(row)

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

    # -- input --------------------------------------------------------------------------------

    async def ask(self, prompt: str) -> str | None:
        """One line from the user; None at end of input."""
        self.end_line()
        self.write(prompt)
        line = await self.reader.readline()
        if not line:
            self.line()
            return None
        line = line.rstrip("\r\n")
        if self._echo:  # a pipe does not echo; show what was read so the transcript reads naturally
            self.write(line + "\n")
        else:  # the terminal echoed the line and the Enter
            self._line_start, self._column = True, 0
        return line

    # -- chats --------------------------------------------------------------------------------

    async def open(self, chat_id: str | None) -> None:
        self.session = await self.client.join(chat_id)
        network = self.session.network
        self.line(f"chat {self.session.chat_id} on {network.get('display_name') or network['name']} "
                  f"(chain {network['chain_id']})")
        if self.session.pending_approval is not None:
            self.line("This chat waits for your decision:")
            await self.resolve_pending()

    async def run(self, chat_id: str | None) -> int:
        await self.open(chat_id)
        self.line("Type a message, or /help.")
        while True:
            text = await self.ask("you> ")
            if text is None:
                return 0
            text = text.strip()
            if not text:
                continue
            if text.startswith("/"):
                if not await self.command(text):
                    return 0
                continue
            await self.turn(text)

    async def command(self, text: str) -> bool:
        """Run a /command; False to quit."""
        name, _, rest = text.partition(" ")
        name = name.lower()
        if name in ("/quit", "/exit", "/q"):
            return False
        if name == "/logout":
            scope = rest.strip().lower()
            if scope not in ("", "all", "everywhere"):
                self.line("  usage: /logout (this session) or /logout all (every session of your account)")
                return True
            self._signing_out = True
            try:
                ended = await self.client.logout(everywhere=bool(scope))
            except LunarkError as exc:
                self._signing_out = False
                self.line(f"  [error] {exc.message}")
                return True
            self.line(f"  signed out: {ended} session{'s' if ended != 1 else ''} ended")
            return False
        if name == "/help":
            self.line(HELP)
        elif name == "/new":
            await self.open(await self.client.create_chat())
        elif name == "/chats":
            chats = await self.client.list_chats()
            if not chats:
                self.line("  no chats yet")
            current = self.session.chat_id if self.session else None
            for chat in chats:
                mark = "*" if chat["chat_id"] == current else " "
                title = (chat.get("title") or "(untitled)")[:40]
                self.line(f" {mark} {chat['chat_id']}  {title}  (chain {chat.get('chain_id')})")
        elif name == "/join":
            if not rest.strip():
                self.line("  usage: /join CHAT_ID (see /chats)")
            else:
                try:
                    await self.open(rest.strip())
                except LunarkError as exc:
                    self.line(f"  [error] {exc.message}")
        elif name == "/continue":
            await self.continue_answer()
        elif name == "/stats":
            self.stats()
        elif name == "/contacts":
            await self.contacts(rest.split())
        elif name == "/approval":
            if self.session is not None and self.session.pending_approval is not None:
                await self.resolve_pending()
            else:
                self.line("  nothing waits for your decision")
        else:
            self.line(f"  unknown command {name}; /help lists them")
        return True

    async def contacts(self, words: list[str]) -> None:
        """``/contacts``, ``/contacts add LABEL ADDRESS``, ``/contacts rm LABEL``."""
        action = words[0].lower() if words else "list"
        try:
            if action in ("list", "ls") and len(words) <= 1:
                found = await self.client.contacts()
                if not found:
                    self.line("  no contacts yet; /contacts add LABEL ADDRESS saves one")
                for contact in found:
                    self.line(f"  {contact.label:<16} {contact.address}")
            elif action == "add" and len(words) == 3:
                saved = await self.client.add_contact(words[1], words[2])
                self.line(f"  saved {saved.label} = {saved.address}")
            elif action in ("rm", "remove", "delete") and len(words) == 2:
                await self.client.remove_contact(words[1])
                self.line(f"  removed {words[1]}")
            else:
                self.line("  usage: /contacts, /contacts add LABEL ADDRESS, /contacts rm LABEL")
        except LunarkError as exc:
            self.line(f"  [{exc.code}] {exc.message}")

    # -- turns --------------------------------------------------------------------------------

    async def turn(self, text: str) -> None:
        assert self.session is not None
        try:
            message_id = await self.session.send(text)
        except LunarkError as exc:
            self.line(f"  [{exc.code}] {exc.message}")
            if self.session.pending_approval is not None:
                self.line("  (type /approval to decide it)")
            return
        self._own_messages.add(message_id)
        await self.follow(message_id)
        await self._send_queued()

    async def _send_queued(self) -> None:
        """A message typed at an approval's prompt: sent now, it sets the approval aside."""
        text, self._queued = self._queued, None
        if text is not None:
            await self.turn(text)

    async def continue_answer(self) -> None:
        """``/continue``: go on with the last answer, cut at the model's output limit or by a
        server that stopped mid-answer (``interrupted``)."""
        assert self.session is not None
        if self._cut is None:
            self.line("  nothing to continue: /continue goes on with an answer cut at the model's output limit "
                      "or interrupted by a server that stopped")
            return
        try:
            await self.session.continue_message(self._cut)
        except LunarkError as exc:
            self.line(f"  [{exc.code}] {exc.message}")
            return
        self._new_message = False  # the same answer goes on, indented under it
        await self.follow(None)

    def stats(self) -> None:
        """``/stats``: the figures of the last answer (all its parts) and of the session."""
        answers = [parts for parts in self._usage.values() if sum(u.output_tokens for u in parts)]
        if not answers:
            self.line("  no answer yet")
            return
        self.line("  last answer: " + _figures(answers[-1]))
        total = sum(u.output_tokens for parts in answers for u in parts)
        self.line(f"  this session: {len(answers)} answer{'s' if len(answers) != 1 else ''}, {total} tokens")

    async def resolve_pending(self) -> None:
        assert self.session is not None
        approval = self.session.pending_approval
        if approval is not None and await self.decide(approval) == "sent":
            await self.follow(None)
        await self._send_queued()

    async def follow(self, message_id: str | None) -> None:
        """Render events until the turn ends, deciding approvals on the way."""
        session = self.session
        assert session is not None
        started = message_id is None
        self._in_turn = True
        try:
            async for event in session.events():
                self.render(event)
                if isinstance(event, MessageStart) and event.message_id == message_id:
                    started = True
                elif isinstance(event, MessageEnd) and started:
                    approval = session.pending_approval
                    if event.finish_reason == "awaiting_approval" and approval is not None:
                        self._in_turn = False
                        if await self.decide(approval) != "sent":
                            return
                        self._in_turn = True
                        continue
                    return
        finally:
            self._in_turn = False
            self.end_line()

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

    # -- approvals ----------------------------------------------------------------------------

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

    async def acknowledged(self, request: ActionRequest) -> list[str] | None:
        """Ask the user to type each danger warning's code; the codes, or None when one was not typed."""
        codes = list(dict.fromkeys(w.code for w in request.warnings if w.severity == "danger"))
        for code in codes:
            typed = await self.ask(f"  type {code} to acknowledge it: ")
            if typed is None or typed.strip().lower() != code:
                self.line(f"  not acknowledged: {code}; nothing was approved")
                return None
        return codes

    def _allowed(self, approval: ApprovalRequest, request: ActionRequest) -> list[str]:
        for config in approval.review_configs:
            if config.action_name == request.name:
                return list(config.allowed_decisions)
        return ["approve", "reject"]

    async def decide(self, approval: ApprovalRequest) -> Literal["sent", "eof", "failed", "message"]:
        """Ask for one decision per action, then send them. Anything typed that is not an answer is a
        new message: it is queued, and sending it sets the approval aside (``"message"``)."""
        assert self.session is not None
        decisions: list[dict[str, Any]] = []
        for index, request in enumerate(approval.action_requests):
            self.card(approval, request, index)
            allowed = self._allowed(approval, request)
            can_edit = "edit" in allowed and "amount" in request.args
            options = [o for o, ok in (("[a]pprove", "approve" in allowed), ("[e]dit amount", can_edit),
                                       ("[r]eject", "reject" in allowed)) if ok]
            prompt = "  " + " / ".join(options) + "? "
            while True:
                answer = await self.ask(prompt)
                if answer is None:
                    self.line(f"  left undecided; it expires in {_time_left(approval.expires_at)}")
                    return "eof"
                choice = answer.strip().lower()[:1]
                decision: dict[str, Any] | None = None
                if choice == "a" and "approve" in allowed:
                    # Acknowledged before the wallet signs anything: a refusal afterwards would come
                    # too late for a transaction the wallet already broadcast. Signed below, once every
                    # card is decided.
                    acknowledge = await self.acknowledged(request)
                    if acknowledge is not None:
                        decision = approve_decision(acknowledge=list(acknowledge) if acknowledge else None)
                elif choice == "e" and can_edit:
                    amount = await self.ask("  new amount: ")
                    if amount is None:
                        return "eof"
                    if amount.strip():
                        args = {**request.args, "amount": amount.strip()}
                        decision = edit_decision(request.name, args)
                elif choice == "r" and "reject" in allowed:
                    reason = await self.ask("  reason (optional): ")
                    decision = reject_decision(reason.strip() if reason and reason.strip() else None)
                elif len(answer.split()) > 1:
                    self._queued = answer.strip()
                    return "message"
                else:
                    self.line("  please answer " + ", ".join(o[1] for o in options)
                              + ", or type a new message to set this aside")
                if decision is not None:
                    decisions.append(decision)
                    break
        decisions = await self.sign(approval, decisions)
        try:
            await self.session.decide(approval.approval_id, decisions)
        except LunarkError as exc:
            self.line(f"  [{exc.code}] {exc.message}")
            if any(d.get("tx_hash") for d in decisions):
                self.line("  Note: the wallet already broadcast the transaction.")
            return "failed"
        return "sent"

    async def sign(self, approval: ApprovalRequest, decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """In wallet mode, sign and broadcast every approved transaction, in order, once all cards are
        decided: each at its nonce after the rejected ones before it (``with_nonce_floors``), so none
        waits behind a gap. One the wallet cannot send becomes a reject saying why."""
        if self.sign_mode == "server":
            return decisions
        assert self.session is not None
        for index, decision in enumerate(decisions):
            tx = with_nonce_floors(approval, decisions)[index]
            if decision["type"] != "approve" or tx is None:
                continue
            chain_id = int(tx["chain_id"], 16)
            rpc_url = self.rpc_url
            if rpc_url is None and chain_id == self.session.network.get("chain_id"):
                urls = self.session.network.get("rpc_urls") or []
                rpc_url = urls[0] if urls else None
            if rpc_url is None:
                why = f"no RPC URL for chain {chain_id}; restart with --rpc-url"
            else:
                self.line(f"  [wallet] signing and sending to {rpc_url} ...")
                try:
                    decision["tx_hash"] = await sign_and_send(tx, rpc_url, self.private_key)
                    self.line(f"  [wallet] broadcast {decision['tx_hash']}")
                    continue
                except LunarkError as exc:
                    why = exc.message
            self.line(f"  [wallet] failed: {why}")
            decisions[index] = reject_decision(f"My wallet could not send it: {why}")
        return decisions

    # -- Ctrl-C -------------------------------------------------------------------------------

    def interrupt(self, main: asyncio.Task[Any]) -> None:
        if self._in_turn and self.session is not None:
            self.line("  [stopping...]")
            self.client._spawn(self._abort(self.session))
        else:
            main.cancel()

    async def _abort(self, session: ChatSession) -> None:
        with contextlib.suppress(LunarkError):
            await session.abort()


async def run_chat(
    url: str,
    *,
    private_key: str = DEV_PRIVATE_KEY,
    chat_id: str | None = None,
    rpc_url: str | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    sign_mode: SignMode = "wallet",
    handle_sigint: bool = False,
) -> int:
    """Run the terminal chat until ``/quit`` or end of input; returns the exit status.

    ``stdin``/``stdout`` default to the process's. ``sign_mode="wallet"`` signs approved
    transactions with ``private_key`` and broadcasts them to ``rpc_url`` (default: the
    chat network's first RPC URL); ``"server"`` lets the server's own signer sign.
    Raises ``Unauthorized`` or ``Disconnected`` when it cannot sign in or connect.
    """
    out = stdout or sys.stdout
    reader = _LineReader(stdin or sys.stdin)
    chat: TerminalChat | None = None

    def connection_changed(up: bool) -> None:
        if chat is not None:
            chat.connection_changed(up)

    client = LunarkClient(url, signer_key=private_key, on_connection=connection_changed)
    chat = TerminalChat(client, private_key=private_key, reader=reader, out=out, rpc_url=rpc_url, sign_mode=sign_mode)
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    if handle_sigint and main_task is not None:
        loop.add_signal_handler(signal.SIGINT, chat.interrupt, main_task)
    try:
        address = await client.sign_in(private_key)
        chat.line(f"signed in to {url} as {address}")
        if private_key.lower() == DEV_PRIVATE_KEY:
            chat.line("  (DEV ONLY: Anvil's public dev account 0; never use it on a real network)")
        await client.connect()
        return await chat.run(chat_id)
    finally:
        if handle_sigint:
            loop.remove_signal_handler(signal.SIGINT)
        await client.close()


DESCRIPTION = "Chat with a Lunark server from the terminal."


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The chat's options, on ``parser``: shared by ``lunark chat`` and ``python -m lunark.client.chat``."""
    parser.add_argument("--url", default=os.environ.get("LUNARK_URL", DEFAULT_URL),
                        help=f"the server (default: $LUNARK_URL or {DEFAULT_URL})")
    parser.add_argument("--key", default=None,
                        help=f"private key to sign in and sign with (default: ${KEY_ENV}, else Anvil's "
                             "dev account 0, DEV ONLY)")
    parser.add_argument("--chat", dest="chat_id", default=None, help="continue this chat (default: a new one)")
    parser.add_argument("--rpc-url", default=None,
                        help="where the wallet broadcasts (default: the chat network's RPC URL)")
    parser.add_argument("--sign-mode", choices=("wallet", "server"), default="wallet",
                        help="wallet: sign here and send the tx hash (default); server: the server's signer signs")
    return parser


def _parser() -> argparse.ArgumentParser:
    return add_arguments(argparse.ArgumentParser(
        prog="lunark chat", description=DESCRIPTION, epilog=HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    ))


def run(args: argparse.Namespace) -> int:
    """Run the chat with parsed arguments (``add_arguments``'s); returns the exit status."""
    key = args.key or os.environ.get(KEY_ENV) or DEV_PRIVATE_KEY
    try:
        return asyncio.run(
            run_chat(args.url, private_key=key, chat_id=args.chat_id, rpc_url=args.rpc_url,
                     sign_mode=args.sign_mode, handle_sigint=True)
        )
    except LunarkError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        print(file=sys.stdout)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    """``lunark chat [--url URL] [--key KEY] [--chat ID] [--rpc-url URL] [--sign-mode wallet|server]``."""
    return run(_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
