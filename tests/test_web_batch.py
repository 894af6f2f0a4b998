"""Two transfers asked in one message, in the dApp in headless Chromium: a wallet that announces atomic
batches (EIP-5792) gets one ``wallet_sendCalls`` for both, and each call is settled from its receipt; a
wallet without it gets one ``eth_sendTransaction`` per transfer, each at the next nonce."""

from __future__ import annotations

from typing import Any

import test_web_e2e as e2e
from playwright.async_api import Page, expect
from test_web_e2e import ask, chat_detail, open_app
from wallet import native_balance, token_balance
from web_wallet import BrowserWallet

from lunark.chain.anvil import Anvil, DevAccount

# The browser fixtures of the end-to-end tests, shared.
chromium, browser, page, wallet = e2e.chromium, e2e.browser, e2e.page, e2e.wallet

ETH = 10**18


def latest_nonce(anvil: Anvil, address: str) -> int:
    return int(anvil.rpc("eth_getTransactionCount", [address, "latest"]), 16)


async def two_transfers(page: Page, bob: DevAccount, carol: DevAccount) -> Any:
    await ask(page, f"send 0.5 ETH to {bob.address} and 3 TKN to {carol.address}")
    card = page.locator(".approval[data-status=pending]")
    await expect(card.locator(".title")).to_have_text("Approve 2 actions")
    await expect(card.locator(".amount")).to_have_text(["0.5 ETH", "3 TKN"])
    return card


async def test_a_wallet_with_atomic_batches_approves_both_in_one_batch(
    make_server: Any, page: Page, wallet: BrowserWallet, anvil: Anvil, world: Any,
    alice: DevAccount, bob: DevAccount, carol: DevAccount,
) -> None:
    wallet.atomic = "supported"
    server = await make_server()
    await open_app(page, server, wallet)
    eth, tkn = native_balance(anvil, bob.address), token_balance(anvil, world.token, carol.address)
    nonce = latest_nonce(anvil, alice.address)

    card = await two_transfers(page, bob, carol)
    await card.locator("button.approve").click()
    done = page.locator(".approval[data-status=resolved]")
    await expect(done.locator(".approval-txs .tx")).to_have_count(2)
    for i in range(2):
        await expect(done.locator(".approval-txs .tx").nth(i)).to_have_attribute("data-status", "confirmed")

    methods = wallet.methods()
    assert "eth_sendTransaction" not in methods, "one confirmation for the batch, not one per transfer"
    assert methods.count("wallet_sendCalls") == 1 and "wallet_getCallsStatus" in methods
    assert wallet.params_of("wallet_getCapabilities")[0] == [alice.address, ["0x7a69"]]
    [[request]] = wallet.params_of("wallet_sendCalls")
    assert request["chainId"] == "0x7a69" and request["atomicRequired"] is True
    calls = request["calls"]
    assert [c["to"] for c in calls] == [bob.address, world.token]
    assert int(calls[0]["value"], 16) == ETH // 2 and calls[0]["data"] == "0x"
    assert int(calls[1]["value"], 16) == 0 and calls[1]["data"].endswith(hex(3 * ETH)[2:].rjust(64, "0"))

    # Each call settled on its own, by the hash from its receipt, bound and tracked by the server.
    detail = await chat_detail(server, page)
    settled = {t["tx_hash"]: t["status"] for t in detail["transactions"]}
    assert settled == {h: "confirmed" for h in wallet.sent} and len(wallet.sent) == 2
    assert native_balance(anvil, bob.address) - eth == ETH // 2
    assert token_balance(anvil, world.token, carol.address) - tkn == 3 * ETH
    assert latest_nonce(anvil, alice.address) == nonce + 2


async def test_a_wallet_without_batches_sends_them_one_by_one_at_successive_nonces(
    make_server: Any, page: Page, wallet: BrowserWallet, anvil: Anvil, world: Any,
    alice: DevAccount, bob: DevAccount, carol: DevAccount,
) -> None:
    server = await make_server()
    await open_app(page, server, wallet)
    eth, tkn = native_balance(anvil, bob.address), token_balance(anvil, world.token, carol.address)
    nonce = latest_nonce(anvil, alice.address)

    card = await two_transfers(page, bob, carol)
    await card.locator("button.approve").click()
    done = page.locator(".approval[data-status=resolved]")
    await expect(done.locator(".approval-txs .tx")).to_have_count(2)
    for i in range(2):
        await expect(done.locator(".approval-txs .tx").nth(i)).to_have_attribute("data-status", "confirmed")

    assert "wallet_sendCalls" not in wallet.methods()
    sent = wallet.params_of("eth_sendTransaction")
    assert [int(params[0]["nonce"], 16) for params in sent] == [nonce, nonce + 1]
    assert native_balance(anvil, bob.address) - eth == ETH // 2
    assert token_balance(anvil, world.token, carol.address) - tkn == 3 * ETH
    assert latest_nonce(anvil, alice.address) == nonce + 2
