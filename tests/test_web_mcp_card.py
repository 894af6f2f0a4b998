"""The done-when of MCP plugins, in a browser: a newcomer follows docs/plugins.md to add a FastMCP
server's tools to the demo and sees the approval card of its state-changing tool in the dApp.

Everything is as the doc says: its own ``export LUNARK_MCP__SERVERS=...`` line, run by bash in the
repository's root; the example server it shows (``examples/notes_server.py``); ``lunark demo`` (what
``./dev demo`` runs) started in that environment; the dApp in headless Chromium with an injected
wallet holding the demo's dev key #0; the line the doc says to type. The notes file the example
writes is what a user would look at to know whether the tool ran. Screenshots go to the test's
tmp dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import test_web_e2e as e2e
from chat_process import LUNARK
from playwright.async_api import Locator, Page, expect
from test_documented_commands import free_port
from test_web_e2e import ask, last_answer, open_app
from web_wallet import BrowserWallet

from lunark.chain.anvil import Anvil
from lunark.chain.devkeys import dev_accounts

# The browser fixtures of the end-to-end tests, shared.
chromium, browser, page = e2e.chromium, e2e.browser, e2e.page

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "plugins.md"


def documented_export() -> str:
    """The doc's line that names the MCP server for the demo."""
    lines = [line for line in DOC.read_text().splitlines() if line.startswith("export LUNARK_MCP__SERVERS=")]
    assert len(lines) == 1, f"docs/plugins.md should show one export LUNARK_MCP__SERVERS=... line, not {lines}"
    return lines[0]


async def run_in_repo_root(line: str) -> str:
    """The value ``line`` gives LUNARK_MCP__SERVERS, run by bash in the repository's root as a reader would."""
    proc = await asyncio.create_subprocess_exec(
        "bash", "-c", f'{line}\nprintf %s "$LUNARK_MCP__SERVERS"', cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    return out.decode()


@dataclass
class Demo:
    url: str
    domain: str
    anvil_url: str
    cwd: Path
    log: Path

    def notes(self) -> list[str] | None:
        """What the example server wrote (notes.json in the directory the demo runs in), or None."""
        path = self.cwd / "notes.json"
        return list(json.loads(path.read_text())) if path.exists() else None


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[Demo]:
    servers = await run_in_repo_root(documented_export())
    cwd = tmp_path / "demo"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUNARK_")}
    env.update(PYTHONUNBUFFERED="1", LUNARK_MCP__SERVERS=servers)
    log = tmp_path / "demo.log"
    with log.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            str(LUNARK), "demo", "--port", str(free_port()), "--anvil-port", str(free_port()),
            cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=err,
        )
    assert proc.stdout is not None
    drain: asyncio.Task[None] | None = None
    try:
        banner = ""
        async with asyncio.timeout(120):
            while "Ctrl-C stops everything." not in banner:
                line = await proc.stdout.readline()
                if not line:
                    pytest.fail(f"lunark demo stopped before its banner:\n{banner}\n{log.read_text()}")
                banner += line.decode()
        url = re.search(r"dApp:\s+(http://(\S+?))/?\s*$", banner, re.MULTILINE)
        anvil_url = re.search(r"Anvil RPC:\s+(http://\S+)", banner)
        assert url and anvil_url, banner

        async def read_rest() -> None:
            assert proc.stdout is not None
            while await proc.stdout.read(65536):
                pass

        drain = asyncio.create_task(read_rest())
        yield Demo(url=url.group(1), domain=url.group(2), anvil_url=anvil_url.group(1), cwd=cwd, log=log)
        proc.send_signal(signal.SIGINT)  # "Ctrl-C stops everything."
        assert await asyncio.wait_for(proc.wait(), 60) == 0, log.read_text()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if drain is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(drain, 5)


def demo_wallet(demo: Demo) -> BrowserWallet:
    """The wallet the banner tells a newcomer to set up: Anvil's dev key #0 on the demo's chain 31337."""
    port = int(demo.anvil_url.rsplit(":", 1)[1])
    # A handle on the demo's own Anvil (the demo owns the process): the wallet only sends it JSON-RPC.
    chain = Anvil(None, port=port, chain_id=31337, host="127.0.0.1")  # type: ignore[arg-type]
    return BrowserWallet(dev_accounts(1)[0], {31337: chain})


async def facts(card: Locator) -> dict[str, str]:
    """The card's rows, label -> value, as the user reads them."""
    pairs: list[list[str]] = await card.locator("dl.facts").evaluate(
        "dl => [...dl.querySelectorAll('dt')].map(dt => [dt.textContent, dt.nextElementSibling.textContent])"
    )
    return dict((label, value) for label, value in pairs)


async def test_a_newcomer_sees_the_card_of_the_mcp_tool_approves_it_and_rejects_it(
    demo: Demo, page: Page, tmp_path: Path
) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    # "the server log names the MCP tools it added"
    assert "notes__add_note" in demo.log.read_text(), demo.log.read_text()
    await open_app(page, demo, demo_wallet(demo))

    await ask(page, 'call notes.add_note {"text": "buy milk"}')
    card = page.locator(".approval[data-status=pending]")
    await expect(card.locator(".title")).to_have_text("Approve notes.add_note")
    rows = await facts(card)
    assert rows == {
        "Server": f"notes (stdio: {ROOT}/.venv/bin/python {ROOT}/examples/notes_server.py)",
        "Tool": "notes.add_note — Add a note",
        "What it does": "Write a note.",
        "Hints": "changes state (not destructive); closed world",
        "· text": "buy milk",
    }, rows
    await expect(card.locator(".summary")).to_contain_text("Run notes.add_note (Add a note) with text=buy milk")
    await expect(page.locator("#status")).to_have_text("waiting for your approval")
    await page.screenshot(path=str(shots / "01-mcp-approval-card.png"))
    assert demo.notes() is None, "nothing is written before the user decides"

    await card.locator("button.approve").click()
    done = page.locator(".approval[data-status=resolved]")
    await expect(done.locator(".outcome")).to_have_text("Approved.")
    tool = page.locator(".tool[data-status=success]")
    await expect(tool.locator(".tool-name")).to_have_text("notes.add_note")
    await tool.locator("summary").click()
    await expect(tool.locator(".tool-body pre.result")).to_have_text("Saved: buy milk")
    assert demo.notes() == ["buy milk"]
    await expect(last_answer(page)).to_have_text("notes.add_note answered: “Saved: buy milk”.")
    await expect(page.locator("#status")).to_have_text("")
    await page.screenshot(path=str(shots / "02-mcp-tool-result.png"))

    await ask(page, 'call notes.add_note {"text": "sell the car"}')
    card = page.locator(".approval[data-status=pending]")
    await expect(card.locator(".request .facts")).to_contain_text("sell the car")
    await card.locator("button.reject").click()
    await card.locator("input.reason").fill("not this one")
    await card.locator("button.confirm-reject").click()
    rejected = page.locator(".approval[data-status=resolved]").last
    await expect(rejected.locator(".outcome")).to_have_text("Rejected: not this one")
    await expect(page.locator(".tool[data-status=rejected] .tool-name")).to_have_text("notes.add_note")
    await expect(last_answer(page)).to_have_text("Okay, I did not run notes.add_note. Your reason: “not this one”.")
    await expect(page.locator("#status")).to_have_text("")
    await page.screenshot(path=str(shots / "03-mcp-rejected.png"))
    assert demo.notes() == ["buy milk"], "a rejected call writes nothing"
