"""A terminal chat (``lunark chat``) running as a real subprocess, typed at through a pipe.

    chat = ChatProcess(await asyncio.create_subprocess_exec(str(LUNARK), "chat", "--url", url, ...pipes))
    await chat.expect(PROMPT)
    await chat.type("what's my balance")
    answer = await chat.expect(PROMPT)
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

LUNARK = Path(sys.executable).parent / "lunark"
"""The installed console script (``.venv/bin/lunark``), as a user runs it."""
PROMPT = "you> "
CARD_PROMPT = "[a]pprove / [e]dit amount / [r]eject? "
SWITCH_PROMPT = "[a]pprove / [r]eject? "


class ChatProcess:
    """A ``lunark chat`` process with stdin and stdout on pipes."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.output = ""
        self.pos = 0

    async def expect(self, text: str, *, timeout: float = 30.0) -> str:
        """Wait for ``text`` (after what earlier calls consumed); return the output up to and including it."""
        return (await self.expect_any(text, timeout=timeout))[1]

    async def expect_any(self, *texts: str, timeout: float = 30.0) -> tuple[str, str]:
        """Wait for the first of ``texts`` to appear; return it and the output up to and including it."""
        assert self.proc.stdout is not None

        def first() -> tuple[int, str] | None:
            found = [(i, t) for t in texts if (i := self.output.find(t, self.pos)) >= 0]
            return min(found) if found else None

        try:
            async with asyncio.timeout(timeout):
                while first() is None:
                    chunk = await self.proc.stdout.read(4096)
                    if not chunk:
                        break
                    self.output += chunk.decode()
        except TimeoutError:
            pass
        hit = first()
        if hit is None:
            pytest.fail(f"none of {texts!r} came; the chat printed:\n{self.output}\n{await self._stderr()}")
        index, text = hit
        seen = self.output[self.pos : index + len(text)]
        self.pos = index + len(text)
        return text, seen

    async def type(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    async def _stderr(self) -> str:
        if self.proc.returncode is None or self.proc.stderr is None:
            return ""
        return (await self.proc.stderr.read()).decode()

    async def finish(self) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        async with asyncio.timeout(30):
            self.output += (await self.proc.stdout.read()).decode()
            return await self.proc.wait()

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
