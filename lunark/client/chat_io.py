"""The terminal's text for ``lunark chat``: lines written and wrapped to an 80-column terminal, a
status line that what follows replaces, the answer streamed word by word, and lines read from a
blocking stdin (a terminal, a pipe) without blocking the event loop.

``Terminal`` is the part of ``TerminalChat`` (``chat``) that reads and writes; the chat's
constructor sets the state declared on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import textwrap
import threading
from typing import TextIO

__all__ = ["WIDTH", "Terminal"]

WIDTH = 78
_ANSWER_INDENT = len("lunark> ")
_WORDS = re.compile(r"\n|[^\S\n]*[^\s]+|[^\S\n]+")


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


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Terminal:
    """Writing (``write``, ``line``, ``wrapped``, ``stream``, ``status``) and reading (``ask``)."""

    reader: _LineReader
    out: TextIO
    _line_start: bool
    _column: int
    _new_message: bool
    _echo: bool
    _live_status: bool
    _status: str

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
