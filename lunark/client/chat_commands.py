"""The slash commands of ``lunark chat`` (``/new``, ``/chats``, ``/join``, ``/approval``,
``/continue``, ``/stats``, ``/contacts``, ``/logout``, ``/help``, ``/quit``) and their help text.

``Commands`` is the part of ``TerminalChat`` (``chat``) that runs them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lunark.client.chat_turns import Turns
from lunark.errors import LunarkError

__all__ = ["HELP", "Commands"]

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


class Commands(Turns):
    """``command`` runs one slash command."""

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

    def stats(self) -> None:
        """``/stats``: the figures of the last answer (all its parts) and of the session."""
        answers = [parts for parts in self._usage.values() if sum(u.output_tokens for u in parts)]
        if not answers:
            self.line("  no answer yet")
            return
        self.line("  last answer: " + _figures(answers[-1]))
        total = sum(u.output_tokens for parts in answers for u in parts)
        self.line(f"  this session: {len(answers)} answer{'s' if len(answers) != 1 else ''}, {total} tokens")
