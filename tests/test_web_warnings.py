"""The card's warnings in the dApp, in headless Chromium against a real server and Anvil: coloured by
severity, and a danger warning's checkbox gates Approve; the decision then acknowledges its code."""

from __future__ import annotations

from typing import Any

import test_web_e2e as e2e
from langchain_core.messages import AIMessage
from playwright.async_api import Page, expect
from test_web_e2e import ask, open_app, screenshot
from wallet import native_balance
from web_wallet import BrowserWallet

from lunark.chain.anvil import Anvil, DevAccount
from lunark.models.scripted import ScriptedChatModel

# The browser fixtures of the end-to-end tests, shared.
chromium, browser, page, wallet = e2e.chromium, e2e.browser, e2e.page, e2e.wallet

ETH = 10**18


async def test_a_danger_warning_must_be_ticked_before_approve_and_is_acknowledged(
    make_server: Any, page: Page, wallet: BrowserWallet, anvil: Anvil, bob: DevAccount
) -> None:
    # The model proposes an address the user never typed: the prompt-injection pattern.
    model = ScriptedChatModel(replies=[
        AIMessage(content="", tool_calls=[
            {"name": "transfer", "args": {"to": bob.address, "amount": "0.1"}, "id": "pay1"}]),
        "Sent.",
    ])
    server = await make_server(model=model)
    await open_app(page, server, wallet)
    before = native_balance(anvil, bob.address)

    await ask(page, "pay my friend a tenth of an ether")
    card = page.locator(".approval[data-status=pending]")
    danger = card.locator(".caution.danger")
    await expect(danger).to_have_attribute("data-code", "address_from_tool_output")
    await expect(danger.locator(".severity")).to_have_text("Danger:")
    await expect(danger.locator(".message")).to_contain_text("You never typed")
    await expect(danger.locator(".message")).to_contain_text(bob.address)
    first_time = card.locator(".caution.warning")
    await expect(first_time).to_have_attribute("data-code", "first_time_recipient")
    await expect(first_time.locator(".severity")).to_have_text("Warning:")
    # In colour by severity: the danger one is not painted like the warning one.
    colours = await page.evaluate("""() => [...document.querySelectorAll('.approval .caution')]
        .map((n) => getComputedStyle(n).backgroundColor + ' ' + getComputedStyle(n).borderLeftColor)""")
    assert len(colours) == 2 and colours[0] != colours[1], colours

    approve = card.locator("button.approve")
    await expect(approve).to_be_disabled()
    await screenshot(page, "warnings-01-danger-unticked")
    assert not wallet.sent

    box = danger.locator("input.ack-box")
    await box.check()
    await expect(approve).to_be_enabled()
    await box.uncheck()
    await expect(approve).to_be_disabled()
    await box.check()
    await screenshot(page, "warnings-02-danger-ticked")
    await approve.click()

    done = page.locator(".approval[data-status=resolved]")
    await expect(done.locator(".outcome")).to_have_text("Approved — signed in your wallet.")
    await expect(done.locator(".approval-txs .tx")).to_have_attribute("data-status", "confirmed")
    assert native_balance(anvil, bob.address) - before == ETH // 10
    decisions = await page.evaluate(
        "Object.values(window.lunark.state.approvals).map((a) => a.decisions)")
    assert decisions[0][0]["acknowledge"] == ["address_from_tool_output"], decisions
