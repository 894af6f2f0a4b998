"""A call's outcome as every client tells it, against real ``lunark serve`` processes on real Anvils.

Issue 24, findings 1 and 4:

- A settlement refused before anything was signed (a plain approve where no local signer is
  configured, bytes that decode to no transaction) was reported as ``tool_result`` ``success``:
  ``succeeded()`` took a result without a hash for a success. Only a settlement that ended
  ``confirmed`` is a success now, and the answer says "nothing was signed", not that the wallet
  signed something else (which it keeps for a real mismatch).
- A call set aside for re-planning (after a network switch in the same turn) was shown as
  ``rejected``, and one set aside for the user's new message too. They are ``postponed`` and
  ``superseded``, never ``rejected`` or an error.

Each client is driven as its user would: raw Socket.IO, the SDK, ``lunark mcp`` over stdio and the
installed ``lunark chat``. The dApp's badges are in tests/test_web_e2e.py.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from chat_process import CARD_PROMPT, LUNARK, PROMPT, SWITCH_PROMPT, ChatProcess
from conftest import sign_in
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from server_harness import SioClient
from wallet import native_balance, sign_wire_tx

from lunark.chain.anvil import Anvil, DevAccount
from lunark.client import LunarkClient
from lunark.protocol import PendingApproval, ToolResult

ETH = 10**18


def decide(chat_id: str, pending: dict[str, Any], *decisions: dict[str, Any]) -> dict[str, Any]:
    return {"chat_id": chat_id, "approval_id": pending["approval_id"], "decisions": list(decisions)}


async def ask(sio: SioClient, chat_id: str, text: str, client_message_id: str) -> dict[str, Any]:
    """Send ``text``; return its pending_approval once the turn that asked has ended."""
    mark = sio.mark()
    ack = await sio.call("send_message", {"chat_id": chat_id, "content": text, "client_message_id": client_message_id})
    assert "message_id" in ack, ack
    pending = await sio.wait_event("pending_approval", chat_id=chat_id, after=mark)
    await sio.wait_event("message_end", chat_id=chat_id, after=mark, finish_reason="awaiting_approval")
    return pending


async def outcome(sio: SioClient, chat_id: str, call_id: str, after: int) -> tuple[dict[str, Any], str]:
    """The call's tool_result and the answer the turn gave about it."""
    result = await sio.wait_event("tool_result", chat_id=chat_id, call_id=call_id, after=after, timeout=30)
    end = await sio.wait_until(lambda e: e["type"] == "message_end" and e.get("chat_id") == chat_id
                               and sio.events.index(e) > sio.events.index(result), what="the answer's end", timeout=30)
    start = sio.events.index(result)
    answer = "".join(e["text"] for e in sio.events[start:sio.events.index(end)] if e["type"] == "token")
    return result, answer


@pytest.fixture
async def walletless(serve: Any, alice: DevAccount) -> tuple[Any, str]:
    """A real ``lunark serve`` with no local signer: only the user's wallet signs."""
    server = await serve()
    return server, await sign_in(server, alice)


# -- finding 1: a refusal is never a success -------------------------------------------------


@pytest.mark.parametrize("decision", [
    pytest.param({"type": "approve"}, id="plain-approve-without-a-local-signer"),
    pytest.param({"type": "approve", "signed_tx": "0x02c0"}, id="signed-tx-that-is-no-transaction"),
])
async def test_a_settlement_refused_before_signing_is_not_a_success_and_says_nothing_was_signed(
    walletless: tuple[Any, str], anvil: Anvil, alice: DevAccount, bob: DevAccount, decision: dict[str, Any]
) -> None:
    server, token = walletless
    before = native_balance(anvil, bob.address)
    nonce = anvil.rpc("eth_getTransactionCount", [alice.address, "pending"])
    async with SioClient(server, token) as sio:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        pending = await ask(sio, chat_id, f"send 1 ETH to {bob.address}", "m1")
        call_id = pending["action_requests"][0]["call_id"]
        mark = sio.mark()
        assert await sio.call("resume_decisions", decide(chat_id, pending, decision)) == {"ok": True}
        result, answer = await outcome(sio, chat_id, call_id, mark)
    assert result["status"] == "error", result  # was "success": a green badge, "< ok"
    assert result["result"]["status"] == "mismatch" and "tx_hash" not in result["result"], result
    assert result["result"]["message"].startswith("Nothing was signed"), result["result"]["message"]
    assert "Nothing was signed" in answer, answer
    assert "your wallet signed" not in answer.lower(), answer
    assert native_balance(anvil, bob.address) == before
    assert anvil.rpc("eth_getTransactionCount", [alice.address, "pending"]) == nonce, "nothing broadcast"


async def test_a_real_mismatch_says_the_wallet_signed_something_else(
    walletless: tuple[Any, str], anvil: Anvil, alice: DevAccount, bob: DevAccount, carol: DevAccount
) -> None:
    server, token = walletless
    async with SioClient(server, token) as sio:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        pending = await ask(sio, chat_id, f"send 1 ETH to {bob.address}", "m1")
        request = pending["action_requests"][0]
        tampered = sign_wire_tx(request["tx"], alice.private_key, to=carol.address)
        mark = sio.mark()
        await sio.call("resume_decisions", decide(chat_id, pending, {"type": "approve", "signed_tx": tampered}))
        result, answer = await outcome(sio, chat_id, request["call_id"], mark)
    assert result["status"] == "error" and result["result"]["tx_hash"].startswith("0x"), result
    assert result["result"]["message"].startswith("Your wallet signed something else"), result["result"]
    assert "your wallet signed something else" in answer.lower() and "Nothing was signed" not in answer, answer


async def test_the_sdk_tool_result_of_a_refused_transfer_is_not_a_success(
    walletless: tuple[Any, str], bob: DevAccount
) -> None:
    server, token = walletless
    async with LunarkClient(server.url, token=token) as client:
        session = await client.join()
        call_id = await session.call_tool("transfer", {"to": bob.address, "amount": "0.5"})
        approval = None
        async for event in session.events():
            if isinstance(event, PendingApproval):
                approval = event
                break
        assert approval is not None
        await session.approve(approval.approval_id)  # no signature, and no signer on the server
        result = await session.tool_result(call_id)
    assert isinstance(result, ToolResult)
    assert result.status == "error", result
    assert result.result["status"] == "mismatch" and "no local signer" in result.result["reason"]


# -- MCP: isError tells a refusal, a rejection and an expiry; a call set aside is no error ----------


async def mcp_call(server: Any, token: str, name: str, args: dict[str, Any], decide_it: Any) -> Any:
    """Call ``name`` through ``lunark mcp`` (a real process on stdio) while ``decide_it(session, approval)``
    plays the user in the dApp."""
    params = StdioServerParameters(command=sys.executable, args=["-m", "lunark.cli", "mcp", "--url", server.url],
                                   env={**os.environ, "LUNARK_TOKEN": token})
    async with stdio_client(params) as (read, write), ClientSession(read, write) as host, \
            LunarkClient(server.url, token=token) as user:
        await host.initialize()
        task = asyncio.create_task(host.call_tool(name, args))
        chat = None
        while chat is None:  # the MCP front-end opens its chat at start
            chats = await user.list_chats()
            chat = chats[0]["chat_id"] if chats else None
            await asyncio.sleep(0.1)
        session = await user.join(chat, last_seq=0)
        async for event in session.events():
            if isinstance(event, PendingApproval):
                await decide_it(session, event)
                break
        return await asyncio.wait_for(task, 60)


async def test_mcp_reports_a_refused_settlement_as_an_error_with_the_reason(
    walletless: tuple[Any, str], bob: DevAccount
) -> None:
    server, token = walletless

    async def approve_without_a_signature(session: Any, approval: PendingApproval) -> None:
        await session.approve(approval.approval_id)

    result = await mcp_call(server, token, "transfer", {"to": bob.address, "amount": "0.5"},
                            approve_without_a_signature)
    assert result.isError is True, result  # was False: the host took it for done
    assert result.structuredContent["status"] == "mismatch"
    assert "no local signer" in result.structuredContent["reason"]
    assert result.structuredContent["message"].startswith("Nothing was signed")


async def test_mcp_reports_a_rejection_as_an_error_with_the_reason(
    walletless: tuple[Any, str], bob: DevAccount
) -> None:
    server, token = walletless

    async def reject(session: Any, approval: PendingApproval) -> None:
        await session.reject(approval.approval_id, message="not to Bob")

    result = await mcp_call(server, token, "transfer", {"to": bob.address, "amount": "0.5"}, reject)
    assert result.isError is True, result
    assert result.structuredContent == {
        "status": "rejected", "reason": "not to Bob", "message": "The user rejected it: not to Bob",
    }


async def test_mcp_reports_a_call_set_aside_for_a_new_message_as_superseded_not_an_error(
    walletless: tuple[Any, str], bob: DevAccount
) -> None:
    server, token = walletless

    async def write_something_else(session: Any, approval: PendingApproval) -> None:
        await session.send("what's my balance")

    result = await mcp_call(server, token, "transfer", {"to": bob.address, "amount": "0.5"}, write_something_else)
    assert result.isError is False, result
    assert result.structuredContent["status"] == "superseded", result.structuredContent
    assert "nothing was done" in result.structuredContent["message"]


# -- finding 4: set aside is not rejected ------------------------------------------------------


async def test_a_transfer_after_a_switch_in_the_same_message_is_postponed_then_asked_again_there(
    walletless: tuple[Any, str], anvil2: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    server, token = walletless
    async with SioClient(server, token) as sio:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        mark = sio.mark()
        switch = await ask(sio, chat_id, f"send 1 ETH to {bob.address} on anvil-2", "m1")
        assert [r["name"] for r in switch["action_requests"]] == ["switch_network"]
        results = sio.of("tool_result", chat_id=chat_id, after=mark)
        [postponed] = results
        assert postponed["status"] == "postponed", postponed  # was "rejected"
        [call] = [e for e in sio.of("tool_call", chat_id=chat_id, after=mark) if e["call_id"] == postponed["call_id"]]
        assert call["name"] == "transfer"
        mark = sio.mark()
        await sio.call("resume_decisions", decide(chat_id, switch, {"type": "approve"}))
        again = await sio.wait_event("pending_approval", chat_id=chat_id, after=mark)
        [request] = again["action_requests"]
        assert request["name"] == "transfer" and int(request["tx"]["chain_id"], 16) == anvil2.chain_id
        assert not [e for e in sio.of("tool_result", chat_id=chat_id, after=mark) if e["status"] == "rejected"]


async def test_a_call_set_aside_for_a_new_message_is_superseded_not_rejected(
    walletless: tuple[Any, str], bob: DevAccount
) -> None:
    server, token = walletless
    async with LunarkClient(server.url, token=token) as client:
        session = await client.join()
        await session.turn(f"send 1 ETH to {bob.address}")
        assert session.pending_approval is not None
        events = await session.turn("what's my balance")
    [result] = [e for e in events if isinstance(e, ToolResult) and e.status != "success"]
    assert result.status == "superseded", result  # was "rejected"
    assert result.result["status"] == "superseded"


# -- the terminal chat -------------------------------------------------------------------------


@pytest.fixture
async def terminal(walletless: tuple[Any, str], alice: DevAccount) -> AsyncIterator[Any]:
    """``lunark chat`` (the installed console script) against the walletless server; ``--sign-mode
    server`` approves without signing, as a user who relies on the server's signer would."""
    server, _ = walletless
    started: list[ChatProcess] = []

    async def start(*extra: str) -> ChatProcess:
        proc = await asyncio.create_subprocess_exec(
            str(LUNARK), "chat", "--url", server.url, "--key", alice.private_key, *extra,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        started.append(ChatProcess(proc))
        return started[-1]

    yield start
    for chat in started:
        print(chat.output)  # the transcript, shown when a test fails
        if chat.proc.returncode is None:
            chat.proc.kill()
            await chat.proc.wait()


async def test_the_terminal_never_says_ok_for_a_transfer_nothing_signed(
    terminal: Any, anvil: Anvil, bob: DevAccount
) -> None:
    chat = await terminal("--sign-mode", "server")
    await chat.expect(PROMPT)
    before = native_balance(anvil, bob.address)
    await chat.type(f"send 0.1 ETH to {bob.address}")
    await chat.expect(CARD_PROMPT)
    await chat.type("a")
    flow = await chat.expect(PROMPT)
    assert "< ok" not in flow, flow
    assert "< failed: no local signer" in flow, flow
    assert "Nothing was signed" in flow and "your wallet signed" not in flow.lower(), flow
    assert native_balance(anvil, bob.address) == before
    await chat.type("/quit")
    assert await chat.finish() == 0


async def test_the_terminal_shows_a_transfer_after_a_switch_as_postponed_and_then_sends_it(
    terminal: Any, anvil2: Anvil, bob: DevAccount
) -> None:
    chat = await terminal()
    await chat.expect(PROMPT)
    before = native_balance(anvil2, bob.address)
    await chat.type(f"send 1 ETH to {bob.address} on anvil-2")
    card = await chat.expect(SWITCH_PROMPT)
    assert "> transfer(" in card, card
    assert "< rejected" not in card, card  # the finding: "< rejected: nothing was sent"
    assert "< postponed until the network switch is decided" in card, card
    await chat.type("a")
    card = await chat.expect(CARD_PROMPT)
    assert "now on Anvil 2" in card and "amount     1 ETH" in card, card
    await chat.type("a")
    flow = await chat.expect(PROMPT)
    assert "confirmed in block" in flow, flow
    assert native_balance(anvil2, bob.address) - before == ETH
    await chat.type("/quit")
    assert await chat.finish() == 0


async def test_the_terminal_shows_an_approval_set_aside_as_superseded(terminal: Any, bob: DevAccount) -> None:
    chat = await terminal()
    await chat.expect(PROMPT)
    await chat.type(f"send 2 ETH to {bob.address}")
    await chat.expect(CARD_PROMPT)
    await chat.type("what's my balance")
    aside = await chat.expect(PROMPT)
    assert "[set aside for your new message: nothing was sent]" in aside, aside
    assert "< superseded by your new message" in aside, aside
    assert "< rejected" not in aside, aside
    await chat.type("/quit")
    assert await chat.finish() == 0
