"""The dApp's chat features in headless Chromium, as tests/test_web_e2e.py drives it: a first message
typed at once after signing in, Continue under a cut answer, per-message figures and the status line.
Screenshots go to ``test-artifacts/screenshots/``."""

from __future__ import annotations

import asyncio
from typing import Any

import test_web_e2e as e2e
from playwright.async_api import Page, Route, expect
from test_web_e2e import last_answer, short
from web_wallet import BrowserWallet

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
