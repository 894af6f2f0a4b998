"""``lunark mcp`` against a real Lunark server and Anvil, driven by the MCP SDK's own client.

The MCP front-end runs as a real process (``python -m lunark.cli mcp``) over stdio, bound to
Alice by her session token. Alice herself is a Socket.IO client (the SDK) whose wallet signs
and broadcasts what the approval shows (``tests/wallet.py``), as the dApp would.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from conftest import sign_in
from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import McpError
from wallet import native_balance, wallet_send

from lunark.chain.anvil import Anvil, DevAccount
from lunark.client import LunarkClient
from lunark.client.sdk import ChatSession
from lunark.protocol import ApprovalResolved, PendingApproval


@asynccontextmanager
async def mcp_host(url: str, token: str) -> AsyncIterator[ClientSession]:
    """An MCP host with ``lunark mcp`` in its configuration: command, args and the token in env."""
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "lunark.cli", "mcp", "--url", url], env={"LUNARK_TOKEN": token}
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


@asynccontextmanager
async def the_user(url: str, token: str) -> AsyncIterator[ChatSession]:
    """Alice in the dApp: she opens the chat the MCP host's calls run in."""
    async with LunarkClient(url, token=token) as client:
        [chat] = await client.list_chats()
        yield await client.join(chat["chat_id"], last_seq=0)


async def next_approval(chat: ChatSession) -> PendingApproval:
    async for event in chat.events():
        if isinstance(event, PendingApproval):
            return event
    raise AssertionError("the chat ended without an approval")


async def start_call(host: ClientSession, name: str, args: dict[str, Any]) -> tuple[asyncio.Task[Any], list[str]]:
    said: list[str] = []

    async def progress(value: float, total: float | None, message: str | None) -> None:
        said.append(message or "")

    return asyncio.create_task(host.call_tool(name, args, progress_callback=progress)), said


@pytest.fixture
async def alice_server(make_server: Any, alice: DevAccount) -> tuple[Any, str]:
    server = await make_server()
    return server, await sign_in(server, alice)


async def test_tools_and_annotations(alice_server: tuple[Any, str]) -> None:
    server, token = alice_server
    async with mcp_host(server.url, token) as host:
        tools = {t.name: t for t in (await host.list_tools()).tools}
        assert set(tools) == {"get_balance", "transfer", "switch_network"}
        assert tools["get_balance"].annotations is not None and tools["get_balance"].annotations.readOnlyHint is True
        transfer = tools["transfer"].annotations
        assert transfer is not None and transfer.readOnlyHint is False and transfer.destructiveHint is True
        assert set(tools["transfer"].inputSchema["required"]) == {"to", "amount"}
        balance = await host.call_tool("get_balance", {})
        assert not balance.isError and balance.structuredContent is not None
        assert balance.structuredContent["symbol"] == "ETH" and int(balance.structuredContent["raw"]) > 0


async def test_transfer_waits_for_the_users_wallet_and_returns_the_confirmation(
    alice_server: tuple[Any, str], anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    server, token = alice_server
    before = native_balance(anvil, bob.address)
    async with mcp_host(server.url, token) as host, the_user(server.url, token) as chat:
        task, said = await start_call(host, "transfer", {"to": bob.address, "amount": "0.25"})
        approval = await next_approval(chat)
        [request] = approval.action_requests
        assert request.name == "transfer" and request.tx is not None
        assert not task.done() and native_balance(anvil, bob.address) == before, "nothing moves before she decides"
        tx_hash = wallet_send(anvil, request.tx.to_wire(), alice.private_key)
        await chat.approve(approval.approval_id, tx_hash=tx_hash)
        result = await task
    assert not result.isError, result.content
    outcome = result.structuredContent
    assert outcome is not None and outcome["status"] == "confirmed" and outcome["tx_hash"] == tx_hash
    assert isinstance(outcome["block_number"], int)
    assert native_balance(anvil, bob.address) == before + 25 * 10**16
    assert "Waiting for the user's approval in Lunark." in said
    assert any(s.startswith("Confirmed " + tx_hash) for s in said), said
    # The host is told what the transfer changes while the user decides, as the SDK's typed preview says.
    assert any("you -0.25 ETH (" in s and f"recipient {bob.address[:6]}…{bob.address[-4:]} +0.25 ETH (" in s
               for s in said), said
    assert request.preview is not None and request.preview.simulated
    assert [(c.address, c.asset, c.delta) for c in request.preview.changes] == [
        (alice.address, "native", str(-25 * 10**16)), (bob.address, "native", str(25 * 10**16))]


async def test_a_rejection_returns_the_reason(
    alice_server: tuple[Any, str], anvil: Anvil, bob: DevAccount
) -> None:
    server, token = alice_server
    before = native_balance(anvil, bob.address)
    async with mcp_host(server.url, token) as host, the_user(server.url, token) as chat:
        task, _ = await start_call(host, "transfer", {"to": bob.address, "amount": "1"})
        approval = await next_approval(chat)
        await chat.reject(approval.approval_id, message="not to Bob")
        result = await task
    assert result.structuredContent == {
        "status": "rejected", "reason": "not to Bob", "message": "The user rejected it: not to Bob",
    }
    assert result.isError is True  # nothing was done: the host must not take it for done (issue 24)
    assert native_balance(anvil, bob.address) == before


async def test_an_expired_approval_returns_expired(
    make_server: Any, alice: DevAccount, anvil: Anvil, bob: DevAccount
) -> None:
    server = await make_server(approvals={"ttl_seconds": 1.5})
    token = await sign_in(server, alice)
    async with mcp_host(server.url, token) as host:
        result = await host.call_tool("transfer", {"to": bob.address, "amount": "1"})
    assert result.structuredContent is not None and result.structuredContent["status"] == "expired"
    assert result.isError is True


async def test_a_cancelled_request_withdraws_its_approval(
    alice_server: tuple[Any, str], bob: DevAccount
) -> None:
    server, token = alice_server
    async with mcp_host(server.url, token) as host, the_user(server.url, token) as chat:
        request_id = host._request_id  # the id the next request gets
        task, _ = await start_call(host, "transfer", {"to": bob.address, "amount": "1"})
        approval = await next_approval(chat)
        await host.send_notification(types.ClientNotification(types.CancelledNotification(
            params=types.CancelledNotificationParams(requestId=request_id, reason="the user closed the host")
        )))
        resolved = None
        async for event in chat.events():
            if isinstance(event, ApprovalResolved):
                resolved = event
                break
        with pytest.raises(McpError, match="Request cancelled"):
            await task
    assert resolved is not None and resolved.approval_id == approval.approval_id
    [decision] = resolved.decisions
    assert decision.type == "reject" and decision.message == "Withdrawn: the MCP host cancelled its request."


async def test_a_bad_token_is_refused(alice_server: tuple[Any, str]) -> None:
    server, _ = alice_server
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lunark.cli", "mcp", "--url", server.url,
        env={"LUNARK_TOKEN": "not-a-token", "PATH": "/usr/bin:/bin"},
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert b"lunark:" in err and b"token" in err.lower()


async def test_the_cards_warnings_are_in_the_progress_text_and_the_sdk_acknowledges_them(
    alice_server: tuple[Any, str], anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    from lunark.errors import AcknowledgementRequired

    server, token = alice_server
    body = bob.address.lower()[2:]
    twin = "0x" + body[:4] + "".join("1" if c == "0" else "0" for c in body[4:-4]) + body[-4:]
    async with mcp_host(server.url, token) as host, the_user(server.url, token) as chat:
        # A first payment to bob: a warning, said in the progress text; no acknowledgement needed.
        task, said = await start_call(host, "transfer", {"to": bob.address, "amount": "0.01"})
        approval = await next_approval(chat)
        [request] = approval.action_requests
        assert [(w.code, w.severity) for w in request.warnings] == [("first_time_recipient", "warning")]
        await chat.approve(approval.approval_id, tx_hash=wallet_send(anvil, request.tx.to_wire(), alice.private_key))
        assert not (await task).isError
        [waiting] = [s for s in said if s.startswith("Approval ")]
        assert "Lunark warns: WARNING first_time_recipient: You have never sent to" in waiting, said

        # Then a look-alike of bob: a danger the user must acknowledge.
        task, said = await start_call(host, "transfer", {"to": twin, "amount": "0.01"})
        approval = await next_approval(chat)
        [request] = approval.action_requests
        assert request.warnings[0].code == "lookalike_recipient" and request.warnings[0].severity == "danger"
        with pytest.raises(AcknowledgementRequired) as refused:
            await chat.approve(approval.approval_id)
        assert refused.value.missing == ["lookalike_recipient"]
        assert native_balance(anvil, twin) == 0
        tx_hash = wallet_send(anvil, request.tx.to_wire(), alice.private_key)
        await chat.approve(approval.approval_id, tx_hash=tx_hash, acknowledge=["lookalike_recipient"])
        result = await task
    assert not result.isError and result.structuredContent is not None
    assert result.structuredContent["status"] == "confirmed"
    [waiting] = [s for s in said if s.startswith("Approval ")]
    assert "DANGER lookalike_recipient" in waiting and bob.address in waiting, said
    assert "must acknowledge the danger warnings in Lunark" in waiting
