"""``lunark mcp``'s URL-mode elicitation and the withdrawal of a vanished host's card, end to end.

The host is the MCP SDK's own client, over stdio (it starts ``python -m lunark.cli mcp``) and over
streamable HTTP (the ``lunark mcp --http`` console script). A host that declares URL elicitation is
sent the link to the dApp's approval page for its call; the test opens that link in headless
Chromium with the injected wallet (``web_wallet.BrowserWallet``), signs in with Ethereum, approves
on the card, and the wallet signs and broadcasts to Anvil. A host killed mid-approval (a process of
its own, ``tests/mcp_vanishing_host.py``, SIGKILLed) has its card withdrawn after the grace time.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import test_web_e2e as e2e
from chat_process import LUNARK
from conftest import sign_in
from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client
from mcp_host import http_host, lunark_mcp_http
from playwright.async_api import Page, expect
from test_mcp_server import next_approval, the_user
from wallet import native_balance
from web_wallet import BrowserWallet

from lunark.chain.anvil import Anvil, DevAccount
from lunark.client import LunarkClient
from lunark.client.sdk import ChatSession
from lunark.protocol import ApprovalResolved, ToolResult

# The browser fixtures of the end-to-end tests, shared.
chromium, browser, page, wallet = e2e.chromium, e2e.browser, e2e.page, e2e.wallet

HOST = Path(__file__).parent / "mcp_vanishing_host.py"


class ElicitingHost:
    """What an MCP host that takes URL-mode elicitations does with them: it shows the user the link
    (here: records it) and says the user went there; it hears when the elicitation is complete."""

    def __init__(self) -> None:
        self.asked: list[types.ElicitRequestURLParams] = []
        self.completed: list[str] = []
        self.link = asyncio.Event()

    async def elicit(self, context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        assert isinstance(params, types.ElicitRequestURLParams), params
        self.asked.append(params)
        self.link.set()
        return types.ElicitResult(action="accept")

    async def on_message(self, message: Any) -> None:
        if isinstance(message, types.ServerNotification) and isinstance(
            message.root, types.ElicitCompleteNotification
        ):
            self.completed.append(message.root.params.elicitationId)

    def options(self) -> dict[str, Any]:
        return {"elicitation_callback": self.elicit, "message_handler": self.on_message}


@asynccontextmanager
async def eliciting_host(transport: str, url: str, token: str, seen: ElicitingHost) -> AsyncIterator[ClientSession]:
    if transport == "stdio":
        params = StdioServerParameters(
            command=sys.executable, args=["-m", "lunark.cli", "mcp", "--url", url], env={"LUNARK_TOKEN": token}
        )
        async with stdio_client(params) as (read, write), ClientSession(read, write, **seen.options()) as host:
            await host.initialize()
            yield host
    else:
        async with lunark_mcp_http([str(LUNARK), "mcp", "--url", url, "--http"], token) as endpoint, \
                http_host(endpoint, token, **seen.options()) as host:
            yield host


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_a_host_with_url_elicitation_sends_the_user_to_the_approval_page(
    transport: str, make_server: Any, page: Page, wallet: BrowserWallet, anvil: Anvil, alice: DevAccount,
    bob: DevAccount,
) -> None:
    server = await make_server()
    token = await sign_in(server, alice)
    before = native_balance(anvil, bob.address)
    seen = ElicitingHost()
    async with eliciting_host(transport, server.url, token, seen) as host:
        call = asyncio.create_task(host.call_tool("transfer", {"to": bob.address, "amount": "0.25"}))
        await asyncio.wait_for(seen.link.wait(), 60)
        [asked] = seen.asked
        found = re.fullmatch(re.escape(server.url) + r"/approve/(apr_[A-Za-z0-9]+)", asked.url)
        assert found, asked.url
        approval_id = found.group(1)
        assert asked.elicitationId == approval_id
        assert asked.message.startswith("Lunark needs your approval for transfer."), asked.message
        assert "you -0.25 ETH" in asked.message, asked.message
        assert not call.done() and native_balance(anvil, bob.address) == before

        # The user follows the link: the dApp asks them to sign in, then shows that card.
        await wallet.install(page)
        await page.goto(asked.url)
        await expect(page.locator("#welcome-note")).to_have_text(
            "An app asked for your approval: sign in with your wallet to review it.")
        await page.click("#connect")
        card = page.locator(f'.approval[data-approval-id="{approval_id}"]')
        await expect(card).to_have_attribute("data-status", "pending")
        await expect(card).to_have_class(re.compile(r"\bwanted\b"))
        await expect(card.locator(".amount")).to_have_text("0.25 ETH")
        await expect(card.locator(".recipient")).to_have_text(bob.address)
        await expect(card).to_be_in_viewport()
        await card.locator("button.approve").click()
        await expect(card.locator(".outcome")).to_have_text("Approved — signed in your wallet.")

        result = await asyncio.wait_for(call, 60)
    assert not result.isError, result.content
    outcome = result.structuredContent
    [tx_hash] = wallet.sent
    assert outcome is not None and outcome["status"] == "confirmed" and outcome["tx_hash"] == tx_hash
    assert native_balance(anvil, bob.address) == before + 25 * 10**16
    assert seen.completed == [approval_id], "the host is told the approval was decided"


async def test_the_approval_page_refuses_another_users_approval(
    make_server: Any, alice: DevAccount, bob: DevAccount, accounts: list[DevAccount]
) -> None:
    server = await make_server()
    alice_token = await sign_in(server, alice)
    seen = ElicitingHost()
    async with eliciting_host("stdio", server.url, alice_token, seen) as host:
        call = asyncio.create_task(host.call_tool("transfer", {"to": bob.address, "amount": "1"}))
        await asyncio.wait_for(seen.link.wait(), 60)
        approval_id = seen.asked[0].elicitationId
        other = await sign_in(server, accounts[3])
        async with aiohttp.ClientSession() as http:
            for who, status in ((alice_token, 200), (other, 403)):
                async with http.get(f"{server.url}/api/approvals/{approval_id}",
                                    headers={"Authorization": f"Bearer {who}"}) as response:
                    assert response.status == status, await response.text()
                    body = await response.json()
            async with http.get(f"{server.url}/approve/{approval_id}") as page_response:
                assert page_response.status == 200 and "<title>Lunark</title>" in await page_response.text()
        assert body["error"]["code"] == "forbidden"
        async with the_user(server.url, alice_token) as chat:
            await chat.reject(approval_id, message="no")
        result = await asyncio.wait_for(call, 60)
    assert result.isError and result.structuredContent is not None
    assert result.structuredContent["status"] == "rejected"


async def withdrawal(chat: ChatSession, approval_id: str) -> tuple[ApprovalResolved, ToolResult]:
    """The approval's resolution and the call's result that follows it, as the chat shows them."""
    resolved = None
    async for event in chat.events():
        if isinstance(event, ApprovalResolved) and event.approval_id == approval_id:
            resolved = event
        if isinstance(event, ToolResult) and resolved is not None:
            return resolved, event
    raise AssertionError("the chat ended before the approval was resolved")


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_a_host_killed_mid_approval_has_its_card_withdrawn_after_the_grace_time(
    transport: str, make_server: Any, alice: DevAccount, bob: DevAccount, anvil: Anvil
) -> None:
    grace = 3.0
    server = await make_server()  # approvals live 600 s: the withdrawal is not their expiry
    token = await sign_in(server, alice)
    before = native_balance(anvil, bob.address)
    async with AsyncExitStack() as stack:
        if transport == "stdio":
            argv = ["stdio", server.url, token, str(grace)]
        else:
            endpoint = await stack.enter_async_context(lunark_mcp_http(
                [str(LUNARK), "mcp", "--url", server.url, "--http", "--withdraw-after", str(grace)], token))
            argv = ["http", endpoint, token, "-"]
        host = await asyncio.create_subprocess_exec(
            sys.executable, str(HOST), *argv, bob.address, "1", stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        assert host.stdout is not None
        servers: list[int] = []
        try:
            assert (await asyncio.wait_for(host.stdout.readline(), 60)).strip() == b"calling"
            async with the_user(server.url, token) as chat:
                approval = await asyncio.wait_for(next_approval(chat), 60)
                servers = children_of(host.pid)  # stdio: its lunark mcp, which outlives it
                assert len(servers) == (1 if transport == "stdio" else 0), servers
                host.send_signal(signal.SIGKILL)  # no cancel, no DELETE, no closing handshake
                await host.wait()
                killed = time.monotonic()
                resolved, result = await asyncio.wait_for(withdrawal(chat, approval.approval_id), 60)
                withdrawn = time.monotonic() - killed
            [decision] = resolved.decisions
            assert decision.type == "reject"
            assert decision.message == "Withdrawn: the MCP host went away (no answer for 3 s)."
            assert resolved.by == "user"
            assert grace - 0.5 <= withdrawn <= grace + 30, withdrawn
            # The chat says so: the call was rejected with that reason.
            assert result.status == "rejected"
            detail = await chat_detail(server.url, token, chat.chat_id)
            assert detail.get("pending_approval") is None
            assert native_balance(anvil, bob.address) == before
            for pid in servers:  # stdio: having withdrawn the card, the orphaned process ends itself
                for _ in range(100):
                    if not alive(pid):
                        break
                    await asyncio.sleep(0.1)
                assert not alive(pid), "the orphaned lunark mcp should exit after withdrawing"
        finally:
            if host.returncode is None:
                host.kill()
                await host.wait()
            for pid in servers:
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)


async def chat_detail(url: str, token: str, chat_id: str) -> dict[str, Any]:
    async with LunarkClient(url, token=token) as client:
        return await client.get_chat(chat_id)


async def test_a_stopped_lunark_mcp_withdraws_its_waiting_card_at_once(
    make_server: Any, alice: DevAccount, bob: DevAccount
) -> None:
    server = await make_server()
    token = await sign_in(server, alice)
    host = await asyncio.create_subprocess_exec(
        sys.executable, str(HOST), "stdio", server.url, token, "60", bob.address, "1",
        stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert host.stdout is not None
    servers: list[int] = []
    try:
        assert (await asyncio.wait_for(host.stdout.readline(), 60)).strip() == b"calling"
        async with the_user(server.url, token) as chat:
            approval = await asyncio.wait_for(next_approval(chat), 60)
            [lunark_mcp] = servers = children_of(host.pid)
            started = time.monotonic()
            os.kill(lunark_mcp, signal.SIGTERM)  # stopped by the system, its host still there
            resolved, result = await asyncio.wait_for(withdrawal(chat, approval.approval_id), 60)
        assert time.monotonic() - started < 30, "at once, not after the 60 s grace time"
        [decision] = resolved.decisions
        assert decision.type == "reject" and decision.message == "Withdrawn: the MCP server (lunark mcp) was stopped."
        assert result.status == "rejected"
        for _ in range(100):
            if not alive(lunark_mcp):
                break
            await asyncio.sleep(0.1)
        assert not alive(lunark_mcp)
    finally:
        if host.returncode is None:
            host.kill()
            await host.wait()
        for pid in servers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


async def test_declining_the_approval_page_in_the_host_rejects_the_card(
    make_server: Any, alice: DevAccount, bob: DevAccount, anvil: Anvil
) -> None:
    server = await make_server()
    token = await sign_in(server, alice)
    before = native_balance(anvil, bob.address)
    seen = ElicitingHost()

    async def decline(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        await seen.elicit(context, params)
        return types.ElicitResult(action="decline")

    params = StdioServerParameters(
        command=sys.executable, args=["-m", "lunark.cli", "mcp", "--url", server.url], env={"LUNARK_TOKEN": token}
    )
    async with stdio_client(params) as (read, write), ClientSession(
        read, write, elicitation_callback=decline, message_handler=seen.on_message
    ) as host:
        await host.initialize()
        result = await asyncio.wait_for(host.call_tool("transfer", {"to": bob.address, "amount": "1"}), 60)
    assert result.isError and result.structuredContent is not None
    assert result.structuredContent["status"] == "rejected"
    assert result.structuredContent["reason"] == (
        "Declined in the MCP host: the user chose not to open the approval page.")
    assert seen.completed == [seen.asked[0].elicitationId]
    assert native_balance(anvil, bob.address) == before


async def test_an_http_host_that_ends_its_session_withdraws_at_once(
    make_server: Any, alice: DevAccount, bob: DevAccount
) -> None:
    server = await make_server()
    token = await sign_in(server, alice)
    argv = [str(LUNARK), "mcp", "--url", server.url, "--http"]  # the default grace: 60 s
    async with lunark_mcp_http(argv, token) as endpoint, the_user(server.url, token) as chat:
        async with http_host(endpoint, token) as host:
            call = asyncio.create_task(host.call_tool("transfer", {"to": bob.address, "amount": "1"}))
            approval = await asyncio.wait_for(next_approval(chat), 60)
            started = time.monotonic()
            call.cancel()  # the host closes without a cancel notification, ending its session (DELETE)
        resolved, result = await asyncio.wait_for(withdrawal(chat, approval.approval_id), 60)
    assert time.monotonic() - started < 30
    [decision] = resolved.decisions
    assert decision.type == "reject" and decision.message == "Withdrawn: the MCP host cancelled its request."
    assert result.status == "rejected"
