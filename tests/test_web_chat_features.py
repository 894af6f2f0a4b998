"""The dApp's chat features in headless Chromium, as tests/test_web_e2e.py drives it: a first message
typed at once after signing in, Continue under a cut answer (at the output limit, or by a server killed
mid-answer), per-message figures and the status line.
Screenshots go to ``test-artifacts/screenshots/``."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections.abc import AsyncIterator
from typing import Any

import pytest
import test_web_e2e as e2e
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGenerationChunk
from playwright.async_api import Browser, Page, Route, expect
from pydantic import PrivateAttr
from server_harness import ServeProcess
from test_web_e2e import ask, last_answer, open_app, screenshot, short
from web_wallet import BrowserWallet

from lunark.chain.anvil import Anvil, DevAccount, free_port
from lunark.models.scripted import ScriptedChatModel

# The browser fixtures of the end-to-end tests, shared.
chromium, browser, page, wallet = e2e.chromium, e2e.browser, e2e.page, e2e.wallet


async def test_a_user_who_just_signed_in_types_at_once(make_server: Any, page: Page, wallet: BrowserWallet) -> None:
    server = await make_server()
    # The chat list answers late (a slow network, a busy server): typing must not wait for it.
    listed = asyncio.Event()

    async def late(route: Route) -> None:
        if route.request.method == "GET":
            await listed.wait()
        await route.continue_()

    await page.route("**/api/chats", late)
    try:
        await wallet.install(page)
        await page.goto(f"http://{server.domain}/")
        await page.click("#connect")
        await expect(page.locator("#address")).to_have_text(short(wallet.account.address))
        await expect(page.locator("#welcome")).to_be_visible()
        await expect(page.locator("#input")).to_be_focused()
        # No click anywhere, no "+ New chat": the box has the focus, and the first message starts a chat.
        await page.keyboard.type("what's my balance")
        await page.keyboard.press("Enter")
        await expect(page.locator(".message.user .body")).to_have_text(["what's my balance"])
        await expect(last_answer(page)).to_contain_text("10,000 ETH")
    finally:
        listed.set()
    chat_id = await page.evaluate("window.lunark.state.chatId")
    assert chat_id and page.url.endswith(f"#{chat_id}")
    await expect(page.locator("#chat-list .chat-link[aria-current=page]")).to_have_text("what's my balance")
    await expect(page.locator(".message.user .body")).to_have_text(["what's my balance"])


class Gated(ScriptedChatModel):
    """A scripted model that writes each reply only once the test opens its gate, so the page can
    be looked at while the agent waits for the model (the status line says "thinking…")."""

    _gate: asyncio.Event = PrivateAttr(default_factory=asyncio.Event)

    def hold(self) -> None:
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    async def _astream(self, *args: Any, **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        await self._gate.wait()
        async for chunk in super()._astream(*args, **kwargs):
            yield chunk


async def test_continue_figures_and_the_status_line(
    make_server: Any, page: Page, wallet: BrowserWallet, anvil: Anvil, bob: DevAccount
) -> None:
    transfer = AIMessage(content="", tool_calls=[
        {"name": "transfer", "args": {"to": bob.address, "amount": "0.1"}, "id": "call_pay"},
    ])
    model = Gated(replies=[
        "Gas is the fee you pay for each step a transaction takes on chain.",
        " transaction takes on chain.",
        transfer,
        "Sent 0.1 ETH to Bob.",
    ], max_output_tokens=10)
    server = await make_server(model=model)
    await open_app(page, server, wallet)
    status = page.locator("#status")

    await ask(page, "what is gas?")
    await expect(status).to_have_text("thinking…")
    model.release()
    answer = page.locator(".message.assistant").last
    await expect(answer.locator(".body")).to_have_text("Gas is the fee you pay for each step a")
    await expect(answer.locator(".cut")).to_contain_text("The model stopped at its output limit.")
    await expect(answer.locator(".figures")).to_have_text(
        re.compile(r"^10 tokens · [\d.]+ (ms|s) to first token · [\d.]+ tokens/s$"))
    await expect(status).to_have_text("")
    await screenshot(page, "11-cut-at-the-limit")

    model.hold()
    await answer.locator("button.continue").click()
    await expect(status).to_have_text("thinking…")
    await expect(answer.locator(".cut")).to_be_hidden()
    model.release()
    await expect(answer.locator(".body")).to_have_text(
        "Gas is the fee you pay for each step a transaction takes on chain.")
    await expect(answer.locator(".figures")).to_have_text(re.compile(r"^14 tokens in 2 parts · .+ tokens/s$"))
    await expect(page.locator(".message.assistant")).to_have_count(1)
    await expect(answer.locator(".cut")).to_be_hidden()

    await ask(page, f"send 0.1 ETH to {bob.address}")
    card = page.locator(".approval[data-status=pending]")
    await expect(card.locator(".amount")).to_have_text("0.1 ETH")
    await expect(status).to_have_text("waiting for your approval")
    await screenshot(page, "12-status-waiting-for-approval")

    # Blocks are mined only when the test says: the transaction waits in the mempool, checked.
    anvil.rpc("evm_setAutomine", [False])
    try:
        model.hold()
        await card.locator("button.approve").click()
        done = page.locator(".approval[data-status=resolved]")
        await expect(done.locator(".approval-txs .tx")).to_have_attribute("data-status", "submitted")
        await expect(status).to_have_text("checking the transaction")
        await screenshot(page, "13-status-checking-the-transaction")
        anvil.rpc("evm_mine", [])
    finally:
        anvil.rpc("evm_setAutomine", [True])
    await expect(done.locator(".approval-txs .tx")).to_have_attribute("data-status", "confirmed")
    await expect(status).to_have_text("thinking…")
    model.release()
    await expect(last_answer(page)).to_have_text("Sent 0.1 ETH to Bob.")
    await expect(status).to_have_text("")
    figures = page.locator(".message.assistant:not([hidden]) .figures")
    await expect(figures).to_have_count(2)
    await expect(figures.last).to_have_text(re.compile(r"^5 tokens · .+ to first token · .+ tokens/s$"))
    await screenshot(page, "14-per-message-figures")


@pytest.fixture
async def page_through_a_crash(browser: Browser) -> AsyncIterator[Page]:
    """As ``page``, except that the browser's own reports of the server being down while it is
    killed (connection refused) are expected; any other console error or uncaught one still fails."""
    context = await browser.new_context(viewport=e2e.DESKTOP)
    page = await context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    page.on("console", lambda msg: errors.append(f"console: {msg.text}")
            if msg.type == "error" and "ERR_CONNECTION_REFUSED" not in msg.text else None)
    yield page
    await context.close()
    assert not errors, errors


async def test_an_answer_cut_by_a_killed_server_says_interrupted_and_continues(
    serve: Any, page_through_a_crash: Page, wallet: BrowserWallet
) -> None:
    """The server streaming an answer to the page is killed (SIGKILL) and restarted on its data and
    port: the page reconnects, the answer stops streaming, is tagged "interrupted" with the
    server's sentence and a Continue button, and Continue finishes it in the same message."""
    page = page_through_a_crash
    server = await serve(model={"delay": 0.15}, server={"port": free_port()})
    await open_app(page, server, wallet)
    await ask(page, "hello")
    answer = page.locator(".message.assistant").last
    await expect(answer).to_have_class(re.compile(r"\bstreaming\b"))
    await expect(answer.locator(".body")).to_contain_text("Hi! I can")
    os.kill(server.pid, signal.SIGKILL)
    assert server.proc is not None
    await server.proc.wait()
    # The same data and port, at the model's full pace: only the cut needed a slow answer.
    settings = server.settings
    again = await ServeProcess(settings.model_copy(update={"model": settings.model.model_copy(update={"delay": 0.0})})
                               ).start()
    try:
        await expect(answer.locator(".tag.interrupted")).to_have_text("interrupted", timeout=30_000)
        await expect(answer).not_to_have_class(re.compile(r"\bstreaming\b"))
        await expect(answer.locator(".cut")).to_contain_text(
            "The server writing this answer stopped before it was done; what it had written is kept.")
        await screenshot(page, "15-interrupted-by-a-crash")
        await answer.locator("button.continue").click()
        await expect(answer.locator(".body")).to_contain_text("for your approval.", timeout=30_000)
        await expect(answer.locator(".cut")).to_be_hidden()
        await expect(answer.locator(".tag.interrupted")).to_have_count(0)
        await expect(page.locator(".message.assistant:not([hidden])")).to_have_count(1)
    finally:
        await again.stop()
