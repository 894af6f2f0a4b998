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
import os
import signal
import sys
from collections.abc import Sequence
from typing import TextIO

from lunark.client.chat_approvals import SignMode
from lunark.client.chat_commands import HELP, Commands
from lunark.client.chat_io import _isatty, _LineReader
from lunark.client.sdk import LunarkClient
from lunark.errors import LunarkError

__all__ = ["DEFAULT_URL", "DEV_PRIVATE_KEY", "HELP", "KEY_ENV", "add_arguments", "main", "run", "run_chat"]

DEV_PRIVATE_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
"""DEV ONLY: Anvil's development account 0 (0xf39F…2266). The whole world knows this key;
never use it, or send anything to its address, on a real network."""

DEFAULT_URL = "http://localhost:8080"
"""Where ``lunark serve`` listens by default."""

KEY_ENV = "LUNARK_CHAT_KEY"
"""Environment variable for the private key (safer than ``--key``, which other users can see in ``ps``)."""


class TerminalChat(Commands):
    """The chat loop; ``run_chat`` builds and runs it.

    Built in parts, each on the one before: ``chat_io.Terminal`` reads and writes lines,
    ``chat_render.Rendering`` shows events and approval cards, ``chat_approvals.Approvals`` asks for
    decisions and signs, ``chat_turns.Turns`` follows a turn's events, ``chat_commands.Commands``
    runs the slash commands; this class sets their state and runs the prompt.
    """

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
        self.session = None
        self._line_start = True
        self._column = 0
        self._new_message = True
        self._echo = not _isatty(reader.stream)
        self._in_turn = False
        self._down = False
        self._signing_out = False
        self._own_messages = set()
        self._queued = None
        """A message typed at an approval's prompt, sent once the current turn is over."""
        self._live_status = _isatty(out)  # a terminal: the status line is erased by what follows
        self._status = ""  # the status shown now ("" once anything else was written)
        self._cut = None  # the last answer, when cut at the model's output limit or by a crash
        self._usage = {}  # assistant message id -> usage of each of its parts

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
