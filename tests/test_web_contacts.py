"""The dApp's contacts panel in headless Chromium against a real server and Anvil: save a contact
(a checksum typo is refused with the server's reason), send to it by label, the card names it with
the address paid and no first-time warning, remove it."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect
from test_web_e2e import DESKTOP, ETH, ask, browser, chromium, open_app, screenshot, wallet  # noqa: F401
from wallet import native_balance
from web_wallet import BrowserWallet

from lunark.chain.anvil import Anvil, DevAccount


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:  # noqa: F811
    """test_web_e2e's page, which fails on any console error, except the one line Chromium itself logs
    for the 400 this test provokes on purpose (a contact with a checksum typo)."""
    context = await browser.new_context(viewport=DESKTOP)
    page = await context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    expected = "Failed to load resource: the server responded with a status of 400 (Bad Request)"
    page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    page.on("console", lambda msg: errors.append(f"console: {msg.text}")
            if msg.type == "error" and msg.text != expected else None)
    yield page
    await context.close()
    assert not errors, errors


async def test_the_contacts_panel_saves_sends_to_and_removes_a_contact(
    make_server: Any, page: Page, wallet: BrowserWallet, anvil: Anvil, bob: DevAccount  # noqa: F811
) -> None:
    server = await make_server()
    await open_app(page, server, wallet)
    panel = page.locator("#contacts")
    await expect(panel.locator("#contact-empty")).to_be_visible()

    await page.fill("#contact-label", "alice")
    await page.fill("#contact-address", bob.address.replace("C8", "c8"))  # one letter's case off
    await page.click("#contact-add")
    await expect(panel.locator("#contact-note")).to_contain_text("checksum")
    await expect(panel.locator(".contact")).to_have_count(0)

    await page.fill("#contact-address", bob.address)
    await page.click("#contact-add")
    row = panel.locator(".contact[data-label=alice]")
    await expect(row.locator(".contact-label")).to_have_text("alice")
    await expect(row.locator(".contact-address")).to_have_text(f"{bob.address[:6]}…{bob.address[-4:]}")
    await expect(panel.locator("#contact-empty")).to_be_hidden()
    await expect(panel.locator("#contact-note")).to_be_hidden()
    await expect(page.locator("#contact-label")).to_have_value("")

    before = native_balance(anvil, bob.address)
    await ask(page, "send 0.1 ETH to alice")
    card = page.locator(".approval[data-status=pending]")
    await expect(card.locator(".recipient")).to_have_text(f"alice ({bob.address})")
    changes = card.locator(".preview .change")
    await expect(changes).to_have_count(2)
    # The preview names the address paid by its label, next to the address.
    await expect(changes.nth(0).locator("th")).to_have_text("You")
    await expect(changes.nth(1).locator("th")).to_have_text(f"Recipient alice ({bob.address[:6]}…{bob.address[-4:]})")
    await expect(changes.nth(1).locator(".delta")).to_have_text("+0.1 ETH")
    await expect(card.locator(".warnings")).to_have_count(0)  # a contact is never a first-time recipient
    await screenshot(page, "contacts-card")
    await card.locator("button.approve").click()
    done = page.locator(".approval[data-status=resolved]")
    await expect(done.locator(".approval-txs .tx")).to_have_attribute("data-status", "confirmed")
    assert native_balance(anvil, bob.address) - before == ETH // 10

    await row.get_by_role("button", name="Remove alice").click()
    await expect(panel.locator(".contact")).to_have_count(0)
    await expect(panel.locator("#contact-empty")).to_be_visible()
    await ask(page, "send 0.1 ETH to alice")
    await expect(page.locator(".tool[data-status=error]").last).to_contain_text(re.compile("not one of your contacts"))
