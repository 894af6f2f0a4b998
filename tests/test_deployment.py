"""docs/deployment.md's "Two processes by hand", followed as a newcomer would, with a browser at the end.

The commands and settings are read from the page itself: its ``export`` lines are the only settings the
two ``lunark serve`` processes get (with this machine's addresses in place of the documented ports),
its ``sed`` line turns deploy/nginx.conf into the balancer's site, and Debian's real nginx runs it in
front of both processes, on a real Postgres and Redis (tests/services.py) and the test Anvil. Then
Chromium opens the dApp through nginx with the injected wallet (tests/web_wallet.py), signs in (the
message names the balancer's address), asks for a transfer, approves it, and sees it confirmed and
the recipient paid on chain. The process that served the page is killed with SIGKILL: the page
reconnects through nginx to the other one, a reload replays the chat from Postgres there, and a new
message is answered. Screenshots of each step go to the test's temporary directory.

Before the kill, nginx is restarted once without its stickiness (``ip_hash``): the dApp, which connects
by WebSocket, works all the same, and an SSE stream through nginx gets the chat from either process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from chat_process import LUNARK
from playwright.async_api import Browser, Page, async_playwright, expect
from server_harness import EventStream
from services import DEPLOY_NGINX_CONF, NginxServer, RedisServer
from test_web_e2e import CHROMIUM, CHROMIUM_ARGS, DESKTOP, short
from wallet import native_balance
from web_wallet import BrowserWallet

from lunark.chain.anvil import Anvil, DevAccount, free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "deployment.md"
QUARTER_ETH = 25 * 10**16
# Console noise Chromium prints when a connection it had drops, not errors of the page's own.
NETWORK_NOISE = re.compile(r"WebSocket connection to .* failed|Failed to load resource")


@dataclass(frozen=True)
class Walkthrough:
    """What "Two processes by hand" tells a newcomer to do."""

    exports: dict[str, str]
    """The settings every process gets: name -> documented value."""
    ports: list[int]
    """One ``lunark serve --port N`` line per process."""
    nginx_edits: dict[str, str]
    """The ``sed`` line's substitutions on deploy/nginx.conf: compose service -> process address."""
    balancer: str
    """The address the page is opened at (host:port)."""


def walkthrough() -> Walkthrough:
    text = GUIDE.read_text()
    section = re.search(r"^## Two processes by hand\n(.*?)(?=^## )", text, re.MULTILINE | re.DOTALL)
    assert section, "docs/deployment.md has no 'Two processes by hand' section"
    body = section.group(1)
    blocks = re.findall(r"^```sh\n(.*?)^```", body, re.MULTILINE | re.DOTALL)
    lines = [re.split(r"\s+#\s", line)[0].strip() for block in blocks for line in block.splitlines()]
    exports = {name: shlex.split(value)[0]
               for name, value in re.findall(r"^export (LUNARK_[A-Z_]+)=(\S+)$", "\n".join(lines), re.MULTILINE)}
    ports = [int(p) for p in re.findall(r"^\.venv/bin/lunark serve --port (\d+) &$", "\n".join(lines), re.MULTILINE)]
    edits: dict[str, str] = {}
    for line in lines:
        if line.startswith("sed "):
            for word in shlex.split(line.rstrip("\\").strip()):
                if word.startswith("s/"):
                    _, old, new, _ = word.split("/")
                    edits[old] = new
    opened = re.search(r"[Oo]pen `http://([\w.:-]+)/`", body)
    assert opened, "the section does not say which address to open"
    return Walkthrough(exports=exports, ports=ports, nginx_edits=edits, balancer=opened.group(1))


@dataclass
class Process:
    name: str
    port: int
    proc: asyncio.subprocess.Process
    log: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


async def serve(name: str, port: int, env: dict[str, str], cwd: Path) -> Process:
    """``.venv/bin/lunark serve --port N &`` from the shell that ran the exports."""
    log = cwd / f"{name}.log"
    with log.open("ab") as err:
        proc = await asyncio.create_subprocess_exec(
            str(LUNARK), "serve", "--port", str(port), cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=err,
        )
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
    assert f"listening on http://127.0.0.1:{port}" in line, f"lunark serve {name}: {line!r}\n{log.read_text()[-3000:]}"
    return Process(name, port, proc, log)


def established(port: int) -> int:
    """How many TCP connections to 127.0.0.1:``port`` are established (Linux's /proc/net/tcp)."""
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    local = f"0100007F:{port:04X}"
    return sum(1 for row in rows if row.split()[1] == local and row.split()[3] == "01")


async def holder(processes: list[Process]) -> Process:
    """The one process with an established connection, once the page has connected and a request that
    happened to be in flight is done."""
    async with asyncio.timeout(20):
        while True:
            holding = [p for p in processes if established(p.port)]
            if len(holding) == 1:
                return holding[0]
            await asyncio.sleep(0.05)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run ./dev setup (it installs Debian's chromium).", pytrace=False)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


def test_the_guide_gives_what_this_test_follows() -> None:
    guide = walkthrough()
    assert guide.exports == {
        "LUNARK_STORE__URL": "postgresql://lunark:lunark@127.0.0.1:5432/lunark",
        "LUNARK_SERVER__REDIS_URL": "redis://127.0.0.1:6379/0",
        "LUNARK_SERVER__DOMAIN": "localhost:8080",
        "LUNARK_CHAIN__RPC_URL": "http://127.0.0.1:8545",
        "LUNARK_SERVER__TRUSTED_PROXIES": '["127.0.0.1"]',
    }
    assert guide.ports == [8081, 8082]
    assert guide.nginx_edits == {"lunark-a:8080": "127.0.0.1:8081", "lunark-b:8080": "127.0.0.1:8082"}
    assert guide.balancer == guide.exports["LUNARK_SERVER__DOMAIN"] == "localhost:8080"


@dataclass
class Deployment:
    """The guide's two processes behind nginx, running; a browser page with the wallet, not yet opened."""

    nginx: NginxServer
    processes: list[Process]
    page: Page
    wallet: BrowserWallet
    errors: list[str]
    """Uncaught exceptions and console errors of the page."""
    site: dict[str, str]
    """The sed line's substitutions with this machine's ports: nginx's site as the guide makes it."""
    stack: contextlib.ExitStack

    def restart_nginx(self, **changes: str) -> None:
        """Stop nginx and start it again on the same port with the guide's site, ``changes`` applied on top."""
        port = self.nginx.port
        self.stack.close()
        self.stack = contextlib.ExitStack()
        self.nginx = self.stack.enter_context(NginxServer.start(DEPLOY_NGINX_CONF, {**self.site, **changes}, port=port))


@contextlib.asynccontextmanager
async def deployed(tmp_path: Path, pg_url: str, redis_url: str, anvil: Anvil, account: DevAccount,
                   browser: Browser) -> AsyncIterator[Deployment]:
    """Run the guide's commands here: its exports (with this machine's Postgres, Redis, balancer and chain
    in place of the documented ones), its two ``lunark serve`` lines (on free ports in place of 8081 and
    8082), and nginx with its ``sed`` line applied to deploy/nginx.conf."""
    guide = walkthrough()
    ports = {documented: free_port() for documented in guide.ports}
    site = {old: re.sub(r":(\d+)$", lambda m: f":{ports[int(m.group(1))]}", new)
            for old, new in guide.nginx_edits.items()}
    processes: list[Process] = []
    stack = contextlib.ExitStack()
    try:
        nginx = stack.enter_context(NginxServer.start(DEPLOY_NGINX_CONF, site))
        here = {
            "LUNARK_STORE__URL": pg_url,
            "LUNARK_SERVER__REDIS_URL": redis_url,
            "LUNARK_SERVER__DOMAIN": guide.balancer.replace(":8080", f":{nginx.port}"),
            "LUNARK_CHAIN__RPC_URL": anvil.url,
            "LUNARK_SERVER__TRUSTED_PROXIES": guide.exports["LUNARK_SERVER__TRUSTED_PROXIES"],  # nginx, here too
        }
        assert set(here) == set(guide.exports), "the guide's settings are not the ones this test sets"
        env = {k: v for k, v in os.environ.items() if not k.startswith("LUNARK_")} | here
        context = await browser.new_context(viewport=DESKTOP)
        deployment = None
        try:
            processes.extend(await asyncio.gather(*(
                serve(name, ports[port], env, tmp_path) for name, port in zip("ab", guide.ports, strict=True)
            )))
            page = await context.new_page()
            page.set_default_timeout(20_000)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
            page.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None)
            wallet = BrowserWallet(account, {anvil.chain_id: anvil})
            await wallet.install(page)
            deployment = Deployment(nginx, processes, page, wallet, errors, site, stack)
            yield deployment
        finally:
            await context.close()
            for process in processes:
                if process.proc.returncode is None:
                    process.proc.kill()
                    await process.proc.wait()
            if deployment is not None:
                stack = deployment.stack
    finally:
        stack.close()


async def ask(page: Page, text: str) -> None:
    await page.fill("#input", text)
    await page.press("#input", "Enter")


async def test_two_processes_by_hand_behind_nginx_serve_the_dapp_and_survive_a_kill(
    tmp_path: Path, pg_url: str, redis_server: RedisServer, anvil: Anvil, alice: DevAccount, bob: DevAccount,
    browser: Browser,
) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    async with deployed(tmp_path, pg_url, redis_server.url, anvil, alice, browser) as deployment:
        page, wallet, errors = deployment.page, deployment.wallet, deployment.errors
        answers = page.locator(".message.assistant:not(.streaming) .body")
        user_messages = page.locator(".message.user .body")
        balance = re.compile(r"balance.* [\d,.]+ ETH")

        # Open the balancer's address, connect the wallet, sign in: the message names the balancer.
        address = deployment.nginx.address
        await page.goto(f"http://{address}/")
        await expect(page.locator("#connect")).to_be_visible()
        await page.screenshot(path=shots / "01-signed-out.png")
        await page.click("#connect")
        await expect(page.locator("#address")).to_have_text(short(alice.address))
        await expect(page.locator("#input")).to_be_enabled()
        [[signed, _]] = wallet.params_of("personal_sign")
        message = bytes.fromhex(signed[2:]).decode()
        assert message.startswith(f"{address} wants you to sign in with your Ethereum account:\n"), message
        assert f"\nURI: http://{address}\n" in message

        # A transfer: the card, the wallet, the confirmation, the recipient paid.
        bob_before = native_balance(anvil, bob.address)
        await ask(page, f"send 0.25 ETH to {bob.address}")
        card = page.locator(".approval[data-status=pending]")
        await expect(card.locator(".amount")).to_have_text("0.25 ETH")
        await expect(card.locator(".recipient")).to_have_text(bob.address)
        assert native_balance(anvil, bob.address) == bob_before, "nothing moves before approval"
        await page.screenshot(path=shots / "02-approval.png")
        await card.locator("button.approve").click()
        done = page.locator(".approval[data-status=resolved]")
        await expect(done.locator(".outcome")).to_have_text("Approved — signed in your wallet.")
        await expect(done.locator(".approval-txs .tx")).to_have_attribute("data-status", "confirmed")
        await expect(answers.last).to_contain_text("confirmed")
        assert len(wallet.sent) == 1
        assert native_balance(anvil, bob.address) - bob_before == QUARTER_ETH
        await page.screenshot(path=shots / "03-confirmed.png")
        # nginx passes the WebSocket upgrade: the page did not have to fall back to long-polling.
        assert await page.evaluate("window.lunark.transport.socket.io.engine.transport.name") == "websocket"
        assert not errors, errors

        # The same processes behind nginx without its stickiness (ip_hash): the dApp, on WebSocket, works
        # all the same, and an SSE stream through nginx gets the chat whichever process runs the turn.
        deployment.restart_nginx(**{"ip_hash;": "# round-robin: no ip_hash"})
        nginx = deployment.nginx
        await page.reload()
        await expect(user_messages).to_have_text([f"send 0.25 ETH to {bob.address}"])
        chat_id = await page.evaluate("window.lunark.state.chatId")
        token = await page.evaluate("JSON.parse(sessionStorage.getItem('lunark.session')).token")
        async with aiohttp.ClientSession() as http, http.get(
            f"http://{nginx.address}/api/chats/{chat_id}/events", headers={"Authorization": f"Bearer {token}"},
        ) as response:
            assert response.status == 200, await response.text()
            stream = EventStream(response)
            await ask(page, "what's my balance")
            events = [(await stream.next())["data"]]  # the transfer's, replayed; then the new message's, live
            while not (any(e.get("content") == "what's my balance" for e in events)
                       and events[-1]["type"] == "message_end" and events[-1]["finish_reason"] == "stop"):
                events.append((await stream.next())["data"])
        await expect(answers).to_have_count(3)  # the transfer's two (before and after the approval), this one
        await expect(answers.last).to_contain_text(balance)
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert events[-1]["type"] == "message_end" and events[-1]["finish_reason"] == "stop"
        assert [e["content"] for e in events if e["type"] == "message_start" and e["role"] == "user"] == [
            f"send 0.25 ETH to {bob.address}", "what's my balance"]
        served = nginx.served()
        assert {upstream for upstream, _, _ in served} == {p.address for p in deployment.processes}, served
        assert not [request for _, _, request in served if "transport=polling" in request], served
        assert await page.evaluate("window.lunark.transport.socket.io.engine.transport.name") == "websocket"
        assert not [e for e in errors if not NETWORK_NOISE.search(e)], errors  # nginx's restart dropped the socket

        # Back to the guide's nginx; then kill -9 the process holding the page's connection. nginx logs a
        # WebSocket only when it closes, so ask the kernel which process has it.
        deployment.restart_nginx()
        nginx = deployment.nginx
        await page.wait_for_function("() => window.lunark.transport.state === 'connected'")
        victim = await holder(deployment.processes)
        [survivor] = [p for p in deployment.processes if p is not victim]
        states = "window.__states"
        await page.evaluate(f"() => {{ {states} = []; window.lunark.transport.onState((s) => {states}.push(s)); }}")
        seen_before = len(nginx.served())

        victim.proc.kill()  # SIGKILL: no goodbye to anyone
        await victim.proc.wait()

        # The page notices, reconnects through nginx to the other process and re-joins the chat.
        await page.wait_for_function(f"() => {states}.includes('reconnecting') && {states}.at(-1) === 'connected'")
        await expect(page.locator("#banner")).to_be_hidden()
        await page.screenshot(path=shots / "04-reconnected.png")

        # A reload replays the chat from Postgres through the survivor; the session is valid there too.
        await page.reload()
        await expect(page.locator("#address")).to_have_text(short(alice.address))
        await expect(user_messages).to_have_text([f"send 0.25 ETH to {bob.address}", "what's my balance"])
        await expect(page.locator(".approval[data-status=resolved] .approval-txs .tx")).to_have_attribute(
            "data-status", "confirmed")
        await expect(page.locator(".approval")).to_have_count(1)

        # And a new message is answered.
        await ask(page, "what's my balance now")
        await expect(user_messages).to_have_text(
            [f"send 0.25 ETH to {bob.address}", "what's my balance", "what's my balance now"])
        await expect(answers).to_have_count(4)
        await expect(answers.last).to_contain_text(balance)
        await page.screenshot(path=shots / "05-answered-after-the-kill.png")
        assert len(wallet.params_of("personal_sign")) == 1, "nobody signed in again"

        # Through nginx: after the kill only the survivor answered, but for the WebSocket that was open
        # to the victim, which nginx logs when it closes.
        after = [(upstream, status, request) for upstream, status, request in nginx.served()[seen_before:]
                 if "/socket.io/" in request]
        to_victim = [(status, request) for upstream, status, request in after if upstream == victim.address]
        assert len(to_victim) == 1 and to_victim[0][0] == 101 and "transport=websocket" in to_victim[0][1], after
        assert any(upstream == survivor.address and status in (101, 200) for upstream, status, _ in after), after
        assert survivor.proc.returncode is None
        assert not [e for e in errors if not NETWORK_NOISE.search(e)], errors
