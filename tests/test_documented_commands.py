"""Every command line the README, the docs and the demo's banner print, run as a user runs it.

The lines are read from the Markdown files themselves (fenced blocks and inline code) and from
the banner of a real ``lunark demo`` process, so a new line in the docs is tested without
anyone listing it here; a line of a shape this test cannot run fails until it learns it.
Everything runs as subprocesses of the installed console script (``.venv/bin/lunark``) against
the demo's own Anvil chains and server.

- ``lunark ...`` lines run: ``chat`` against the demo (its URL in place of the documented
  ``127.0.0.1:8080``, or ``$LUNARK_URL`` for a bare ``lunark chat``), typed at through a pipe;
  ``serve`` until it listens, then stopped; ``demo`` is the process everything else runs against.
- Usage lines (``[--url URL]``, ``...``, a placeholder such as ``--workers N``): each option is one
  the command's ``-h`` lists.
- ``./dev`` lines: the subcommand exists in ``./dev``; ``./dev demo`` is ``lunark demo`` (run
  here); ``./dev bench`` options are ones ``python -m benchmarks -h`` lists. ``./dev test`` and
  ``./dev setup`` are not run: the first is this suite, the second made the environment it runs in.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import shlex
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from chat_process import CARD_PROMPT, LUNARK, PROMPT, SWITCH_PROMPT, ChatProcess

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DOCUMENTED_URL = re.compile(r"http://(?:127\.0\.0\.1|localhost):8080")
# A bare `lunark` is a name in prose (a benchmark target, say), not a command line.
_COMMAND = re.compile(r"^(?:[A-Z_]+=\S+\s+)*(?:\./dev(?:\s|$)|(?:\.venv/bin/)?lunark\s|python -m lunark[\w.]*(?:\s|$))")
_FAILURE_MARKS = ("[error]", "< failed", "[the answer failed]", "unknown command", "Traceback", "[stopped]")
CONCURRENCY = min(max(os.cpu_count() or 1, 2), 4)
"""How many documented lines run at once: each is its own process (or two), independent of the
others, and most of their time is Python importing."""
T = TypeVar("T")


@dataclass(frozen=True)
class Line:
    text: str
    where: str


def documented_lines() -> list[Line]:
    """Command lines in fenced blocks (comments after `` #`` dropped) and inline code, per file."""
    found: dict[str, Line] = {}
    for path in DOCS:
        in_block, shell = False, False
        for number, raw in enumerate(path.read_text().splitlines(), 1):
            where = f"{path.relative_to(ROOT)}:{number}"
            if raw.lstrip().startswith("```"):
                in_block = not in_block
                # A diagram or a file's text (```text, ```toml) holds no command lines.
                shell = in_block and raw.strip()[3:] in ("", "sh", "bash", "shell", "console")
                continue
            if in_block and not shell:
                continue
            candidates = [re.split(r"\s+#\s", raw.strip())[0]] if in_block else re.findall(r"`([^`]+)`", raw)
            for candidate in candidates:
                for part in re.split(r"\s*(?:&&|;)\s*", candidate.strip()):
                    part = re.sub(r"\s*&$", "", part)  # run in the background: the same command
                    if _COMMAND.match(part):
                        found.setdefault(part, Line(part, where))
    return list(found.values())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def each_at_once(items: Iterable[T], check: Callable[[T], Awaitable[None]]) -> None:
    """``check`` every item, ``CONCURRENCY`` at a time; every check runs to its end, then the first
    failure is raised."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(item: T) -> None:
        async with gate:
            await check(item)

    results = await asyncio.gather(*(one(item) for item in items), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        raise failures[0]


async def run(*argv: str, timeout: float = 60, **kwargs: object) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, **kwargs,  # type: ignore[arg-type]
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@dataclass
class Demo:
    url: str
    anvil_url: str
    banner: str
    env: dict[str, str]

    def commands(self) -> list[str]:
        return re.findall(r"^\s*Terminal chat:\s+(.+?)\s*$", self.banner, re.MULTILINE)

    def tries(self) -> list[str]:
        # "Try:" and its continuation lines, up to the next blank line.
        block = re.search(r"^\s*Try:\s+(.+?)(?:\n\s*\n|\Z)", self.banner, re.MULTILINE | re.DOTALL)
        assert block, self.banner
        return re.findall(r'"([^"]+)"', block.group(1))


@pytest.fixture(scope="module")
async def demo(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Demo]:
    """``lunark demo`` as the docs print it, on free ports, in a scratch directory (its data dir)."""
    cwd = tmp_path_factory.mktemp("demo")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("LUNARK_URL", None)
    proc = await asyncio.create_subprocess_exec(
        str(LUNARK), "demo", "--port", str(free_port()), "--anvil-port", str(free_port()),
        cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    banner = ""
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(120):
            while "Ctrl-C stops everything." not in banner:
                line = await proc.stdout.readline()
                if not line:
                    assert proc.stderr is not None
                    err = (await proc.stderr.read()).decode()
                    pytest.fail(f"lunark demo stopped before its banner:\n{banner}\n{err}")
                banner += line.decode()
        url = re.search(r"dApp:\s+(http://\S+?)/?\s*$", banner, re.MULTILINE)
        anvil_url = re.search(r"Anvil RPC:\s+(http://\S+)", banner)
        assert url and anvil_url, banner
        yield Demo(url=url.group(1), anvil_url=anvil_url.group(1), banner=banner, env=env)
        proc.send_signal(signal.SIGINT)  # "Ctrl-C stops everything."
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def chat_through(demo: Demo, argv: list[str], messages: list[str]) -> str:
    """Run a ``lunark chat`` line, type ``messages`` (approving every card), quit; the transcript."""
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=ROOT, env={**demo.env, "LUNARK_URL": demo.url},
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    chat = ChatProcess(proc)
    try:
        await chat.expect(PROMPT)
        for message in messages:
            await chat.type(message)
            while (await chat.expect_any(PROMPT, CARD_PROMPT, SWITCH_PROMPT))[0] != PROMPT:
                await chat.type("a")
        await chat.type("/quit")
        assert await chat.finish() == 0, chat.output
    finally:
        await chat.kill()
    for mark in _FAILURE_MARKS:
        assert mark not in chat.output, f"{' '.join(argv)} printed {mark!r}:\n{chat.output}"
    return chat.output


def lunark_argv(text: str) -> tuple[list[str], list[str]]:
    """(how to start it, its arguments) for a documented lunark line; env prefixes must not be needed."""
    words = shlex.split(text)
    assert not re.match(r"[A-Z_]+=", words[0]), f"{text!r}: runs with an environment this test does not know"
    if words[0] in ("lunark", ".venv/bin/lunark"):
        return [str(LUNARK)], words[1:]
    assert words[:2] == ["python", "-m"], text
    return [sys.executable, "-m", words[2]], words[3:]


def command_of(args: list[str]) -> str | None:
    """The subcommand, after lunark's own options (``-v``, ``--loop LOOP``)."""
    rest = list(args)
    while rest and rest[0].startswith("-"):
        rest = rest[2:] if rest[0] == "--loop" else rest[1:]
    return rest[0] if rest else None


def is_usage(text: str) -> bool:
    """A usage line: optional parts, ellipses, or a placeholder in capitals (``--workers N``)."""
    words = text.split()
    placeholder = any(re.fullmatch(r"[A-Z][A-Z_]*", word) for word in words[1:])
    return "[" in text or "..." in text or "…" in text or placeholder


# -- the tests -------------------------------------------------------------------------------------


def test_the_docs_print_the_commands_this_test_expects() -> None:
    # A guard against the extraction silently finding nothing (a changed fence, say).
    texts = {line.text for line in documented_lines()}
    assert ".venv/bin/lunark chat --url http://127.0.0.1:8080" in texts
    assert {"./dev demo", "./dev test", "lunark serve"} <= texts


async def test_every_command_has_help() -> None:
    code, out, err = await run(str(LUNARK), "-h")
    assert code == 0, err
    commands = re.search(r"\{([a-z,]+)\} \.\.\.", out)
    assert commands, out

    async def has_help(command: str) -> None:
        code, out, err = await run(str(LUNARK), command, "-h")
        assert code == 0, f"lunark {command} -h: {err}"
        assert out.startswith(f"usage: lunark {command}"), out

    await each_at_once(commands.group(1).split(","), has_help)


async def test_usage_lines_name_real_options() -> None:
    usage = [line for line in documented_lines() if is_usage(line.text) and not line.text.startswith("./dev")]
    assert usage, "the SDK guide prints the chat's usage"

    async def names_real_options(line: Line) -> None:
        start, args = lunark_argv(line.text)
        # the subcommand path (`audit verify`): the leading lowercase words, before placeholders and options
        command = list(itertools.takewhile(lambda a: re.fullmatch(r"[a-z][a-z-]*", a) is not None, args))
        code, out, err = await run(*start, *command, "-h")
        assert code == 0, f"{line.where}: {' '.join([*start, *command])} -h failed: {err}"
        for option in re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", " ".join(args)):
            assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", out), (
                f"{line.where}: {line.text!r} shows {option}, which {' '.join(command) or 'it'} does not take"
            )

    await each_at_once(usage, names_real_options)


async def test_dev_lines_name_real_subcommands() -> None:
    script = (ROOT / "dev").read_text()
    subcommands = set(re.findall(r"^  ([a-z]+)\)", script, re.MULTILINE))
    assert {"demo", "test", "setup", "bench"} <= subcommands
    # ./dev demo is lunark demo (run by the other tests here), after setting up.
    assert re.search(r'demo\)\n\s+setup\n\s+exec "\$VENV/bin/lunark" demo "\$@"', script)
    code, out, _ = await run(str(ROOT / "dev"))  # `./dev` alone: its help
    assert code == 0 and "./dev demo" in out
    _, bench_help, _ = await run(sys.executable, "-m", "benchmarks", "-h", cwd=ROOT)
    for line in documented_lines():
        if not line.text.startswith("./dev"):
            continue
        words = shlex.split(line.text)
        if words == ["./dev"]:
            continue  # run above
        assert words[1] in subcommands, f"{line.where}: {line.text!r} is no ./dev command"
        options = [w for w in words[2:] if w.startswith("-")]
        if words[1] == "bench":
            for option in options:
                assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", bench_help), f"{line.where}: {option}"
        else:
            assert words[1] == "demo" or not options, f"{line.where}: {line.text!r} passes options nobody checks"


async def test_the_demo_banner_runs_as_printed_and_agrees_with_the_readme(demo: Demo) -> None:
    [command] = demo.commands()
    readme = (ROOT / "README.md").read_text()
    web = (ROOT / "docs" / "web.md").read_text()
    # The README prints the banner's command for the demo's default address.
    assert DOCUMENTED_URL.sub("URL", command.replace(demo.url, "URL")) in DOCUMENTED_URL.sub("URL", readme)
    tries = demo.tries()
    assert len(tries) >= 4
    for message in tries:
        assert f"`{message}`" in readme, f"the README does not suggest {message!r} as the banner does"
        assert f"`{message}`" in web, f"docs/web.md does not suggest {message!r} as the banner does"
    start, args = lunark_argv(command)
    transcript = await chat_through(demo, [*start, *args], tries)
    assert re.search(r"lunark> Your balance.* is [\d.,]+ ETH", transcript), transcript
    transfers = [m for m in tries if m.startswith("send ")]
    assert transcript.count("] confirmed in block") == len(transfers) >= 3, transcript
    assert "[network] now on Anvil 2" in transcript, transcript


async def test_every_documented_lunark_line_runs(demo: Demo, tmp_path: Path) -> None:
    ran: list[str] = []
    lines = [line for line in documented_lines() if not line.text.startswith("./dev") and not is_usage(line.text)]

    async def runs(line: Line) -> None:
        start, args = lunark_argv(line.text)
        args = [DOCUMENTED_URL.sub(demo.url, a) for a in args]
        command = command_of(args)
        if command == "chat":
            transcript = await chat_through(demo, [*start, *args], ["what's my balance"])
            assert "lunark> Your balance" in transcript, f"{line.where}: {transcript}"
        elif command == "serve":
            await serve_until_listening(demo, [*start, *args], tmp_path / f"serve{lines.index(line)}", line)
        elif command == "demo":
            assert args == ["demo"], f"{line.where}: {line.text!r}: the demo fixture runs plain `lunark demo`"
        elif command == "mcp":
            await mcp_serves_the_wallet_tools(demo, [*start, *args], line)
        else:
            code, _, err = await run(*start, *args, cwd=ROOT, env=demo.env)
            assert code == 0, f"{line.where}: {line.text!r} failed: {err}"
        ran.append(line.text)

    await each_at_once(lines, runs)
    assert {"lunark serve", "lunark chat", ".venv/bin/lunark chat --url http://127.0.0.1:8080"} <= set(ran)


async def mcp_serves_the_wallet_tools(demo: Demo, argv: list[str], line: Line) -> None:
    """``lunark mcp`` as an MCP host starts it: over stdio (or, with ``--http``, as a process an HTTP
    host connects to), with a signed-in user's token in ``LUNARK_TOKEN`` (Anvil's published dev key
    #0), against the demo; it must list the wallet tools."""
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    from lunark.client import LunarkClient

    client = LunarkClient(demo.url)
    try:
        await client.sign_in("0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
    finally:
        await client.close()
    assert client.token is not None
    if "--url" not in argv:
        argv = [*argv, "--url", demo.url]
    if "--http" in argv:  # on a free port instead of the documented one; the host sends the token too
        from mcp_host import http_host, lunark_mcp_http

        async with lunark_mcp_http(argv, client.token, env=demo.env) as endpoint, \
                http_host(endpoint, client.token) as session:
            names = {tool.name for tool in (await session.list_tools()).tools}
        assert {"get_balance", "transfer", "switch_network"} <= names, f"{line.where}: {line.text!r} lists {names}"
        return
    params = StdioServerParameters(command=argv[0], args=argv[1:], env={**demo.env, "LUNARK_TOKEN": client.token})
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await asyncio.wait_for(session.initialize(), 60)
        names = {tool.name for tool in (await session.list_tools()).tools}
    assert {"get_balance", "transfer", "switch_network"} <= names, f"{line.where}: {line.text!r} lists {names}"


async def serve_until_listening(demo: Demo, argv: list[str], data_dir: Path, line: Line) -> None:
    # As printed; only the environment chooses a free port, a scratch data dir and the demo's chain.
    env = {**demo.env, "LUNARK_DATA_DIR": str(data_dir), "LUNARK_SERVER__PORT": "0", "LUNARK_PLUGINS": "false",
           "LUNARK_CHAIN__RPC_URL": demo.anvil_url}
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        first = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        if "listening on http://" not in first:
            pytest.fail(f"{line.where}: {line.text!r} did not start: {first}{(await proc.stderr.read()).decode()}")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0, f"{line.where}: {line.text!r} did not stop cleanly"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
