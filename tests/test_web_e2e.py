"""The dApp in headless Chromium against a real server, real Anvils and a wallet that really signs.

Each test opens the page the server serves, connects the injected EIP-1193 wallet
(``web_wallet.BrowserWallet``), signs in with Ethereum and drives the chat as a person would:
clicks, typing, the wallet's own answers. Amounts are checked on chain. Screenshots of the main
states go to ``test-artifacts/screenshots/``.

Chromium is Debian's (``/usr/bin/chromium``, installed by ``./dev setup``); a missing browser fails
the run with what to install, it never skips.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect
from wallet import native_balance, token_balance
from web_wallet import BrowserWallet

from lunark.chain.anvil import Anvil, DevAccount
from lunark.models.scripted import ScriptedChatModel

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
ETH = 10**18
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 375, "height": 740}


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run ./dev setup (it installs Debian's chromium).", pytrace=False)
    return CHROMIUM


@pytest.fixture(scope="session")
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport=DESKTOP)
    page = await context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    page.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None)
    yield page
    await context.close()
    assert not errors, errors


@pytest.fixture
def wallet(alice: DevAccount, anvil: Anvil, anvil2: Anvil) -> BrowserWallet:
    return BrowserWallet(alice, {31337: anvil, 31338: anvil2})


# -- helpers ----------------------------------------------------------------------------------


def short(address: str) -> str:
    return f"{address[:6]}…{address[-4:]}"


async def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


async def open_app(page: Page, server: Any, wallet: BrowserWallet, *, shot: str | None = None) -> None:
    """Open the page as served (its SIWE domain is localhost:port), connect the wallet and sign in."""
    await wallet.install(page)
    await page.goto(f"http://{server.domain}/")
    await expect(page.locator("#connect")).to_be_visible()
    if shot:
        await screenshot(page, shot)
    await page.click("#connect")
    await expect(page.locator("#address")).to_have_text(short(wallet.account.address))
    await expect(page.locator("#input")).to_be_enabled()


async def ask(page: Page, text: str) -> None:
    await page.fill("#input", text)
    await page.press("#input", "Enter")


def last_answer(page: Page) -> Any:
    return page.locator(".message.assistant:not(.streaming) .body").last


async def fits(page: Page, width: int) -> None:
    # At phone width the chat list is a drawer, closed: wait for it to slide out of view.
    await expect(page.locator("#sidebar")).not_to_be_in_viewport()
    overflow = await page.evaluate("document.documentElement.scrollWidth")
    assert overflow <= width, f"the page is {overflow}px wide at a {width}px viewport"


async def session_token(page: Page) -> str:
    return str(await page.evaluate("JSON.parse(sessionStorage.getItem('lunark.session')).token"))


async def chat_detail(server: Any, page: Page) -> dict[str, Any]:
    chat_id = await page.evaluate("window.lunark.state.chatId")
    headers = {"Authorization": f"Bearer {await session_token(page)}"}
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/api/chats/{chat_id}", headers=headers) as r:
        assert r.status == 200, await r.text()
        return dict(await r.json())


# -- tests ------------------------------------------------------------------------------------


async def test_sign_in_and_ask_a_balance(make_server: Any, page: Page, wallet: BrowserWallet) -> None:
    server = await make_server()
    await open_app(page, server, wallet, shot="01-signed-out")
    calls = wallet.params_of("personal_sign")
    assert len(calls) == 1
    message = bytes.fromhex(calls[0][0][2:]).decode()
    header = f"{server.domain} wants you to sign in with your Ethereum account:\n{wallet.account.address}\n"
    assert message.startswith(header), message
    assert f"\nURI: http://{server.domain}\n" in message and "\nChain ID: 31337\n" in message

    await ask(page, "what's my balance")
    await expect(page.locator(".message.user .body").last).to_have_text("what's my balance")
    await expect(last_answer(page)).to_contain_text("10,000 ETH")
    tool = page.locator(".tool[data-status=success]")
    await expect(tool).to_have_count(1)
    await expect(tool.locator(".tool-name")).to_have_text("Balance")
    assert await tool.get_attribute("open") is None, "a successful tool card is collapsed"
    await expect(page.locator("#network")).to_have_text("Anvil (local)")
    await expect(page.locator("#chat-list .chat-link")).to_have_text(["what's my balance"])
    await expect(page.locator("#stop")).to_be_hidden()
    await screenshot(page, "02-balance")

    # A new chat starts empty; the list brings the first one back, replayed from the server.
    await page.click("#new-chat")
    await expect(page.locator("#welcome")).to_be_visible()
    await expect(page.locator(".message")).to_have_count(0)
    await page.click("#chat-list .chat-link")
    await expect(page.locator(".message.user .body")).to_have_text(["what's my balance"])
    await expect(last_answer(page)).to_contain_text("10,000 ETH")
    await expect(page.locator("#chat-list .chat-link[aria-current=page]")).to_have_count(1)

    await page.set_viewport_size(PHONE)
    await expect(last_answer(page)).to_be_visible()
    await fits(page, PHONE["width"])
    await screenshot(page, "03-balance-375px")


async def test_approve_a_transfer_in_the_wallet_and_see_it_confirmed(
    make_server: Any, page: Page, wallet: BrowserWallet, anvil: Anvil, bob: DevAccount, world: Any
) -> None:
    # No local signer: only the wallet signs. The network has an explorer, for the link.
    network = {"name": "anvil", "rpc_urls": [world.anvil.url], "explorer_url": "https://explorer.test"}
    server = await make_server(chain={"networks": [network]})
    await open_app(page, server, wallet)
    bob_before = native_balance(anvil, bob.address)

    await ask(page, f"send 0.25 ETH to {bob.address}")
    card = page.locator(".approval[data-status=pending]")
    await expect(card.locator(".amount")).to_have_text("0.25 ETH")
    await expect(card.locator(".recipient")).to_have_text(bob.address)
    await expect(card.locator(".network")).to_have_text("Anvil (local)")
    await expect(card.locator(".fee")).to_have_text(re.compile(r"^at most 0\.\d+ ETH$"))
    await expect(card.locator(".countdown")).to_have_text(re.compile(r"^\d+:\d\d left$"))
    # The balance changes come first on the card: the user's outgoing, then the recipient's incoming.
    changes = card.locator(".preview .change")
    await expect(changes).to_have_count(2)
    await expect(changes.nth(0).locator("th")).to_have_text("You")
    await expect(changes.nth(0).locator(".delta")).to_have_text("-0.25 ETH")
    await expect(changes.nth(1).locator("th")).to_have_text(f"Recipient {bob.address[:6]}…{bob.address[-4:]}")
    await expect(changes.nth(1).locator(".delta")).to_have_text("+0.25 ETH")
    await expect(changes.nth(1).locator(".balances")).to_have_text(re.compile(r"^[\d.]+ ETH → [\d.]+ ETH$"))
    gas = re.compile(r"^Simulated: 21000 gas, fee at most 0\.\d+ ETH$")
    await expect(card.locator(".preview .gas")).to_have_text(gas)
    assert await card.locator(".request > *").first.get_attribute("class") == "preview"
    await expect(page.locator(".tool[data-status=awaiting_approval]")).to_have_count(1)
    assert native_balance(anvil, bob.address) == bob_before, "nothing moves before approval"
    await screenshot(page, "04-approval")

    await card.locator("button.approve").click()
    done = page.locator(".approval[data-status=resolved]")
    await expect(done.locator(".outcome")).to_have_text("Approved — signed in your wallet.")
    await expect(done.locator(".approval-txs .tx")).to_have_attribute("data-status", "confirmed")
    await expect(done.locator(".tx-status")).to_contain_text("Confirmed in block")
    [tx_hash] = wallet.sent
    await expect(done.locator(".approval-txs a")).to_have_attribute("href", f"https://explorer.test/tx/{tx_hash}")
    await expect(last_answer(page)).to_contain_text("confirmed")
    tool = page.locator(".tool[data-status=success]")
    await expect(tool.locator(".tx")).to_have_attribute("data-status", "confirmed")
    assert await tool.get_attribute("open") is None

    [sent] = wallet.params_of("eth_sendTransaction")
    assert set(sent[0]) == {"from", "to", "value", "data", "gas", "maxFeePerGas", "maxPriorityFeePerGas", "nonce",
                            "chainId"}
    assert sent[0]["to"] == bob.address and int(sent[0]["value"], 16) == ETH // 4 and sent[0]["chainId"] == "0x7a69"
    assert len(wallet.sent) == 1
    assert native_balance(anvil, bob.address) - bob_before == ETH // 4
    await screenshot(page, "05-confirmed")


async def test_edit_the_amount_then_reject_at_375px(
    make_server: Any, page: Page, wallet: BrowserWallet, anvil: Anvil, world: Any, alice: DevAccount, bob: DevAccount
) -> None:
    await page.set_viewport_size(PHONE)
    server = await make_server()
    await open_app(page, server, wallet)
    before = (token_balance(anvil, world.token, alice.address), token_balance(anvil, world.token, bob.address),
              native_balance(anvil, bob.address))

    await ask(page, f"send 10 TKN to {bob.address}")
    first = page.locator(".approval[data-status=pending]")
    await expect(first.locator(".amount")).to_have_text("10 TKN")
    await first.locator("button.edit").click()
    await first.locator(".amount-input").fill("12.5")
    await screenshot(page, "06-edit-375px")
    await first.locator("button.save-edit").click()

    await expect(page.locator(".approval[data-status=resolved] .outcome")).to_have_text(
        "Edited — new amount 12.5; see the new request below.")
    second = page.locator(".approval[data-status=pending]")
    await expect(second.locator(".amount")).to_have_text("12.5 TKN")
    await expect(second.locator(".recipient")).to_have_text(bob.address)
    await fits(page, PHONE["width"])
    await screenshot(page, "07-edited-approval-375px")

    await second.locator("button.reject").click()
    await second.locator(".reason").fill("changed my mind")
    await second.locator("button.confirm-reject").click()
    await expect(page.locator(".approval .outcome").last).to_have_text("Rejected: changed my mind")
    await expect(page.locator(".tool").last).to_have_attribute("data-status", "rejected")
    await expect(last_answer(page)).to_be_visible()
    assert wallet.params_of("eth_sendTransaction") == [] and wallet.sent == []
    after = (token_balance(anvil, world.token, alice.address), token_balance(anvil, world.token, bob.address),
             native_balance(anvil, bob.address))
    assert after == before, "nothing moved"
    await fits(page, PHONE["width"])


async def test_a_rejection_in_the_wallet_becomes_a_reject_decision(
    make_server: Any, page: Page, wallet: BrowserWallet, anvil: Anvil, bob: DevAccount
) -> None:
    server = await make_server()
    await open_app(page, server, wallet)
    wallet.reject_transactions = True
    bob_before = native_balance(anvil, bob.address)

    await ask(page, f"send 0.1 ETH to {bob.address}")
    card = page.locator(".approval[data-status=pending]")
    await card.locator("button.approve").click()
    await expect(page.locator(".approval .outcome")).to_have_text("Rejected: I rejected the transaction in my wallet.")
    await expect(page.locator(".tool")).to_have_attribute("data-status", "rejected")
    await expect(last_answer(page)).to_be_visible()
    # approval_resolved echoes what the server applied: the wallet's 4001 reached it as a reject.
    decisions = await page.evaluate("Object.values(window.lunark.state.approvals)[0].decisions")
    assert decisions == [{"type": "reject", "message": "I rejected the transaction in my wallet."}]
    assert len(wallet.params_of("eth_sendTransaction")) == 1 and wallet.sent == []
    assert native_balance(anvil, bob.address) == bob_before


async def test_network_switch_reaches_the_wallet_and_a_wallet_switch_reaches_the_chat(
    make_server: Any, page: Page, alice: DevAccount, anvil: Anvil, anvil2: Anvil
) -> None:
    server = await make_server()
    # The wallet knows only the first chain: switching answers 4902, and the page adds the chain.
    wallet = BrowserWallet(alice, {31337: anvil, 31338: anvil2}, known={31337})
    await open_app(page, server, wallet)

    await ask(page, "switch to anvil-2")
    card = page.locator(".approval[data-status=pending]")
    await expect(card.locator(".target")).to_have_text("anvil-2")
    await card.locator("button.approve").click()
    await expect(page.locator("#network")).to_have_text("Anvil 2 (local)")
    await expect(page.locator(".notice").last).to_have_text("Switched to Anvil 2 (local) (chain 31338).")
    await wallet.wait_for_chain(31338)
    assert wallet.params_of("wallet_switchEthereumChain")[0] == [{"chainId": "0x7a6a"}]
    [[added]] = wallet.params_of("wallet_addEthereumChain")
    assert added == {
        "chainId": "0x7a6a", "chainName": "Anvil 2 (local)", "rpcUrls": [anvil2.url],
        "nativeCurrency": {"name": "ETH", "symbol": "ETH", "decimals": 18},
    }
    await expect(page.locator("#wallet-chain")).to_be_hidden()
    await screenshot(page, "08-network-switched")
    assert (await chat_detail(server, page))["network"]["chain_id"] == 31338

    # The user moves the wallet back by hand: the page reports it with wallet_changed.
    await page.evaluate("window.ethereum._userSwitch('0x7a69')")
    await expect(page.locator("#network")).to_have_text("Anvil (local)")
    assert (await chat_detail(server, page))["network"]["chain_id"] == 31337


@pytest.mark.parametrize(("known", "refused", "note"), [
    pytest.param({31337, 31338}, "reject_switch", "Your wallet did not switch to Anvil 2 (local): you rejected the "
                 "request in your wallet.", id="switch-refused"),
    pytest.param({31337}, "reject_add_chain", "Your wallet did not add Anvil 2 (local): you rejected the request in "
                 "your wallet.", id="add-refused"),
])
async def test_a_wallet_that_refuses_the_network_switch_stays_put_and_the_page_says_so(
    make_server: Any, page: Page, alice: DevAccount, anvil: Anvil, anvil2: Anvil, known: set[int], refused: str,
    note: str,
) -> None:
    server = await make_server()
    wallet = BrowserWallet(alice, {31337: anvil, 31338: anvil2}, known=known)
    setattr(wallet, refused, True)  # the user clicks Cancel in the wallet: 4001
    await open_app(page, server, wallet)

    await ask(page, "switch to anvil-2")
    await page.locator(".approval[data-status=pending] button.approve").click()
    # The approval moved the chat (the server does not wait for the wallet); the page says both.
    await expect(page.locator("#network")).to_have_text("Anvil 2 (local)")
    await expect(page.locator(".notice.error")).to_have_text(
        f"{note} It is still on Anvil (local) (chain 31337). This chat is on Anvil 2 (local): balances are read "
        "there, and approving a transfer will ask your wallet to switch again.")
    await expect(page.locator("#wallet-chain")).to_have_text("Wallet on Anvil (local) — switch")
    await screenshot(page, f"11-wallet-refused-{refused.removeprefix('reject_').replace('_', '-')}")
    assert wallet.chain_id == 31337 and wallet.known == known and wallet.sent == []
    assert await page.evaluate("window.ethereum.request({method: 'eth_chainId'})") == "0x7a69"
    assert wallet.params_of("wallet_switchEthereumChain") == [[{"chainId": "0x7a6a"}]]
    assert len(wallet.params_of("wallet_addEthereumChain")) == (refused == "reject_add_chain")
    assert (await chat_detail(server, page))["network"]["chain_id"] == 31338

    # The chat goes on, and the note stays where it happened, above what follows.
    await ask(page, "what's my balance")
    await expect(last_answer(page)).to_contain_text("10,000 ETH")
    balance = page.locator(".tool[data-status=success]").last
    await expect(balance.locator(".tool-name")).to_have_text("Balance")
    await expect(balance.locator(".tool-body")).to_contain_text('"network": "anvil-2"')  # the chat's, not the wallet's
    await expect(page.locator("#log > :last-child")).to_have_class(re.compile(r"\bassistant\b"))

    # The header's button asks again; this time the user agrees.
    setattr(wallet, refused, False)
    await page.click("#wallet-chain")
    await wallet.wait_for_chain(31338)
    await expect(page.locator("#wallet-chain")).to_be_hidden()
    await expect(page.locator("#network")).to_have_text("Anvil 2 (local)")
    await expect(page.locator(".notice.error")).to_have_count(1)


async def test_reload_and_a_dropped_connection_mid_stream_restore_the_conversation(
    make_server: Any, page: Page, wallet: BrowserWallet
) -> None:
    reply = " ".join(f"word{i}" for i in range(90))  # 90 words at 50 ms: about 4.5 s of streaming
    server = await make_server(model=ScriptedChatModel(replies=[reply], token_delay=0.05))
    await open_app(page, server, wallet)
    await ask(page, "tell me a long story")
    streaming = page.locator(".message.assistant.streaming .body")
    await expect(streaming).to_have_attribute("aria-live", "polite")
    await expect(streaming.locator(".cursor")).to_have_attribute("aria-hidden", "true")
    await expect(streaming).to_contain_text("word5")
    await expect(page.locator("#stop")).to_be_visible()

    await page.reload()
    # Signed in again from the session, the chat from the URL, the stream picked up where it is.
    await expect(page.locator("#address")).to_have_text(short(wallet.account.address))
    await expect(page.locator(".message.user .body")).to_have_text(["tell me a long story"])
    await expect(streaming).to_contain_text("word10")
    await screenshot(page, "09-restored-mid-stream")

    # Drop the connection under the stream: a banner, a reconnect, a re-join with last_seq.
    await page.evaluate("window.lunark.transport.socket.io.engine.close()")
    await expect(page.locator("#banner")).to_be_visible()
    await expect(page.locator("#banner")).to_be_hidden()
    await expect(last_answer(page)).to_have_text(reply, timeout=20_000)
    await expect(page.locator(".message.assistant")).to_have_count(1)
    await expect(page.locator(".message.user")).to_have_count(1)
    assert len(wallet.params_of("personal_sign")) == 1, "the reload did not sign in again"


async def test_scrolling_follows_only_near_the_bottom_and_stop_aborts(
    make_server: Any, page: Page, wallet: BrowserWallet
) -> None:
    reply = "\n".join(f"line {i}" for i in range(300))  # tall, and slow enough to stop halfway
    server = await make_server(model=ScriptedChatModel(replies=[reply], token_delay=0.02))
    await open_app(page, server, wallet)
    await ask(page, "a long list please")
    log = page.locator("#log")
    streaming = page.locator(".message.assistant.streaming .body")
    await expect(streaming).to_contain_text("line 40")
    gap = "el => el.scrollHeight - el.scrollTop - el.clientHeight"
    assert await log.evaluate("el => el.scrollHeight > el.clientHeight + 200")
    assert await log.evaluate(gap) < 80, "following the stream while at the bottom"

    await log.evaluate("el => { el.scrollTop = 0; }")
    await expect(streaming).to_contain_text("line 60")
    assert await log.evaluate("el => el.scrollTop") == 0, "a reader who scrolled up is left in place"
    await expect(page.locator("#jump")).to_be_visible()
    await page.click("#jump")
    assert await log.evaluate(gap) < 80

    await page.click("#stop")
    stopped = page.locator(".message.assistant").last
    await expect(stopped.locator(".tag")).to_have_text("stopped")
    await expect(page.locator("#send")).to_be_visible()
    await expect(page.locator("#stop")).to_be_hidden()
    assert "line 299" not in (await stopped.locator(".body").inner_text())


async def test_model_output_cannot_inject_markup(make_server: Any, page: Page, wallet: BrowserWallet) -> None:
    evil = (
        "**Bold** and `<b>code</b>` <script>window.__pwned = 1</script>"
        '<img src=x onerror="window.__pwned = 2"> [click](javascript:window.__pwned=3) '
        "[docs](https://example.com/docs)\nsecond line"
    )
    server = await make_server(model=ScriptedChatModel(replies=[evil]))
    await open_app(page, server, wallet)
    await ask(page, 'hi <img src=x onerror="window.__pwned = 4">')
    answer = last_answer(page)
    await expect(answer.locator("strong")).to_have_text("Bold")
    await expect(answer.locator("code")).to_have_text("<b>code</b>")
    await expect(answer).to_contain_text("<script>window.__pwned = 1</script>")
    await expect(answer).to_contain_text('<img src=x onerror="window.__pwned = 2">')
    await expect(answer.locator("a")).to_have_count(1)
    link = answer.locator("a")
    assert await link.get_attribute("href") == "https://example.com/docs"
    assert "noopener" in (await link.get_attribute("rel") or "")
    await expect(answer.locator("br")).to_have_count(1)
    await expect(page.locator(".message.user .body")).to_have_text('hi <img src=x onerror="window.__pwned = 4">')
    assert await page.locator("#log img, #log script, #log b").count() == 0
    assert await page.evaluate("window.__pwned") is None
    await screenshot(page, "10-markdown")


async def test_a_new_message_sets_the_waiting_approval_aside(
    make_server: Any, page: Page, wallet: BrowserWallet, anvil: Anvil, bob: DevAccount
) -> None:
    server = await make_server()
    await open_app(page, server, wallet)
    before = native_balance(anvil, bob.address)
    await ask(page, f"send 1 ETH to {bob.address}")
    await expect(page.locator(".approval[data-status=pending]")).to_be_visible()
    await expect(page.locator("#input")).to_be_enabled()
    await ask(page, "what's my balance")
    aside = page.locator(".approval .outcome").last
    await expect(aside).to_have_text("Set aside — you sent a new message instead; nothing was done.")
    await expect(page.locator(".approval[data-status=pending]")).to_have_count(0)
    await expect(last_answer(page)).to_contain_text("balance")
    await screenshot(page, "approval-set-aside")
    assert native_balance(anvil, bob.address) == before
    await expect(page.locator(".tool").first).to_have_attribute("data-status", "superseded")
    await expect(page.locator(".tool").first.locator(".badge")).to_have_text("set aside")


# -- issue 24: a badge tells what happened -------------------------------------------------------------


async def badge_colors(page: Page, tool: Any) -> tuple[str, str]:
    """The badge's text colour and the page's colours for failure, as computed."""
    color = await tool.locator(".badge").evaluate("e => getComputedStyle(e).color")
    bad = await page.evaluate(
        "(() => { const p = document.createElement('span'); p.style.color = 'var(--bad)'; document.body.append(p);"
        " const c = getComputedStyle(p).color; p.remove(); return c; })()")
    return str(color), str(bad)


async def test_a_transfer_refused_before_signing_is_never_a_green_success(
    serve: Any, page: Page, wallet: BrowserWallet, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    from conftest import sign_in

    from lunark.client import LunarkClient

    server = await serve()  # a real `lunark serve` with no local signer
    await open_app(page, server, wallet)
    before = native_balance(anvil, bob.address)
    await ask(page, f"send 0.25 ETH to {bob.address}")
    await expect(page.locator(".approval[data-status=pending]")).to_be_visible()
    # Alice approves from another client of hers without a signature (`lunark chat --sign-mode
    # server`): the server has no signer, so nothing is signed and nothing is sent.
    chat_id = await page.evaluate("window.lunark.state.chatId")
    approval_id = await page.evaluate("window.lunark.state.pendingApprovalId")
    async with LunarkClient(server.url, token=await sign_in(server, alice)) as client:
        session = await client.join(chat_id, last_seq=0)
        await session.approve(approval_id)
    tool = page.locator(".tool").last
    await expect(tool).to_have_attribute("data-status", "error")  # was "success", green
    await expect(tool.locator(".badge")).to_have_text("error")
    await expect(page.locator(".tool[data-status=success]")).to_have_count(0)
    await expect(last_answer(page)).to_contain_text("Nothing was signed")
    await expect(last_answer(page)).not_to_contain_text("your wallet signed")
    await screenshot(page, "refused-before-signing")
    assert wallet.sent == [] and native_balance(anvil, bob.address) == before


async def test_a_transfer_after_a_switch_is_shown_postponed_then_asked_again_on_the_new_network(
    serve: Any, page: Page, wallet: BrowserWallet, anvil2: Anvil, bob: DevAccount
) -> None:
    server = await serve()
    await open_app(page, server, wallet)
    before = native_balance(anvil2, bob.address)
    await ask(page, f"send 0.25 ETH to {bob.address} on anvil-2")
    switch = page.locator(".approval[data-status=pending]")
    await expect(switch.locator(".target")).to_have_text("anvil-2")
    postponed = page.locator(".tool[data-status=postponed]")
    await expect(postponed).to_have_count(1)  # was data-status=rejected, a red badge
    await expect(postponed.locator(".tool-name")).to_have_text("Transfer")
    await expect(postponed.locator(".badge")).to_have_text("postponed")
    color, bad = await badge_colors(page, postponed)
    assert color != bad, "a postponed call is not shown as a failure"
    await expect(page.locator(".tool[data-status=rejected], .tool[data-status=error]")).to_have_count(0)
    await screenshot(page, "postponed-behind-a-switch")

    await switch.locator("button.approve").click()
    await wallet.wait_for_chain(31338)
    card = page.locator(".approval[data-status=pending]")
    await expect(card.locator(".amount")).to_have_text("0.25 ETH")
    await expect(card.locator(".network")).to_have_text("Anvil 2 (local)")
    await card.locator("button.approve").click()
    await expect(page.locator(".tool[data-status=success]").last.locator(".tx")).to_have_attribute(
        "data-status", "confirmed")
    await expect(page.locator(".tool[data-status=rejected]")).to_have_count(0)
    assert native_balance(anvil2, bob.address) - before == ETH // 4
