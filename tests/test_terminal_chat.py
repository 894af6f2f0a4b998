"""The terminal chat as a real subprocess (the installed ``lunark chat``) against a real server and Anvil,
typed at through a pipe."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from chat_process import CARD_PROMPT, LUNARK, PROMPT, ChatProcess
from wallet import native_balance, token_balance

from lunark.chain.anvil import Anvil, DevAccount
from lunark.client.chat import DEV_PRIVATE_KEY
from lunark.models import OfflinePlanner

ETH = 10**18


@pytest.fixture
async def chat(make_server: Any, anvil: Anvil, alice: DevAccount) -> AsyncIterator[ChatProcess]:
    server = await make_server()
    proc = await asyncio.create_subprocess_exec(
        str(LUNARK), "chat", "--url", f"http://localhost:{server.port}", "--key", alice.private_key,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    process = ChatProcess(proc)
    try:
        yield process
    finally:
        print(process.output)  # the transcript, shown when a test fails
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_balance_approve_and_reject_through_the_terminal(
    chat: ChatProcess, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    header = await chat.expect(PROMPT)
    assert f"as {alice.address}" in header
    assert re.search(r"chat \S+ on .+ \(chain 31337\)", header)
    assert "DEV ONLY" in header  # alice is Anvil's account 0: the chat says that key is public
    assert "[reconnected]" not in header

    await chat.type("what's my balance")
    answer = await chat.expect(PROMPT)
    assert re.search(r"lunark> Your balance.* is [\d.,]+ ETH", answer), answer
    assert "> get_balance(" in answer

    before = native_balance(anvil, bob.address)
    await chat.type(f"send 0.1 ETH to {bob.address}")
    card = await chat.expect(CARD_PROMPT)
    assert "approval needed" in card
    assert "amount     0.1 ETH" in card
    assert f"recipient  {bob.address}" in card
    assert re.search(r"network    .+ \(chain 31337\)", card)
    assert re.search(r"max fee    0\.\d+ ETH", card)
    assert re.search(r"time left  \d+m \d\ds", card)
    assert max(len(row) for row in card.splitlines()) <= 80
    # The balance changes come first, right under the summary: simulated, with before and after.
    assert re.search(r"\| you -0\.1 ETH \([\d.]+ -> [\d.]+ ETH\)", card), card
    assert f"| recipient {bob.address[:6]}…{bob.address[-4:]} +0.1 ETH (" in card
    assert re.search(r"\| simulated: 21000 gas, fee at most 0\.\d+ ETH", card)
    assert card.index("| you -0.1 ETH") < card.index("amount     0.1 ETH")

    await chat.type("a")
    flow = await chat.expect(PROMPT)
    assert "[wallet] broadcast 0x" in flow
    assert re.search(r"\[tx 0x\w+\.\.\.\w+\] submitted", flow)
    assert re.search(r"\[tx 0x\w+\.\.\.\w+\] confirmed in block \d+", flow)
    assert native_balance(anvil, bob.address) - before == ETH // 10

    nonce = anvil.rpc("eth_getTransactionCount", [alice.address, "latest"])
    await chat.type(f"send 1 ETH to {bob.address}")
    card = await chat.expect(CARD_PROMPT)
    assert "amount     1 ETH" in card
    await chat.type("r")
    await chat.expect("reason (optional): ")
    await chat.type("changed my mind")
    rejected = await chat.expect(PROMPT)
    assert "rejected" in rejected and "[tx" not in rejected
    assert native_balance(anvil, bob.address) - before == ETH // 10
    assert anvil.rpc("eth_getTransactionCount", [alice.address, "latest"]) == nonce

    # A new message typed at the card sets the approval aside and runs.
    await chat.type(f"send 2 ETH to {bob.address}")
    await chat.expect(CARD_PROMPT)
    await chat.type("what's my balance")
    aside = await chat.expect(PROMPT)
    assert "[set aside for your new message: nothing was sent]" in aside, aside
    assert re.search(r"Your balance.* is [\d.,]+ ETH", aside), aside
    assert native_balance(anvil, bob.address) - before == ETH // 10

    await chat.type("/quit")
    assert await chat.finish() == 0


async def test_edit_the_amount_and_the_commands(
    chat: ChatProcess, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    header = await chat.expect(PROMPT)
    first_chat = re.search(r"chat (\S+) on", header)
    assert first_chat

    await chat.type("/help")
    assert "/new" in await chat.expect(PROMPT)

    before = native_balance(anvil, bob.address)
    await chat.type(f"send 0.1 ETH to {bob.address}")
    await chat.expect(CARD_PROMPT)
    await chat.type("e")
    await chat.expect("new amount: ")
    await chat.type("0.05")
    card = await chat.expect(CARD_PROMPT)
    assert "amount     0.05 ETH" in card
    await chat.type("a")
    assert "confirmed" in await chat.expect(PROMPT)
    assert native_balance(anvil, bob.address) - before == ETH // 20

    await chat.type("/new")
    second = await chat.expect(PROMPT)
    second_chat = re.search(r"chat (\S+) on", second)
    assert second_chat and second_chat.group(1) != first_chat.group(1)
    await chat.type("/chats")
    listing = await chat.expect(PROMPT)
    assert first_chat.group(1) in listing and f"* {second_chat.group(1)}" in listing

    await chat.type("/bogus")
    assert "unknown command" in await chat.expect(PROMPT)
    # End of input quits cleanly.
    assert await chat.finish() == 0


def test_the_dev_key_is_anvils_account_zero(accounts: list[DevAccount]) -> None:
    assert accounts[0].private_key == DEV_PRIVATE_KEY


async def test_status_lines_continue_and_stats(
    make_server: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    server = await make_server(model=OfflinePlanner(max_output_tokens=4))
    proc = await asyncio.create_subprocess_exec(
        str(LUNARK), "chat", "--url", f"http://localhost:{server.port}", "--key", alice.private_key,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    chat = ChatProcess(proc)
    try:
        await chat.expect(PROMPT)
        await chat.type("/stats")
        assert "no answer yet" in await chat.expect(PROMPT)
        await chat.type("/continue")
        assert "nothing to continue" in await chat.expect(PROMPT)

        await chat.type("what's my balance")
        answer = await chat.expect(PROMPT)
        assert "  … thinking…\n" in answer
        assert "lunark> Your balance on Anvil\n" in answer
        assert "[cut at the model's output limit: /continue goes on]" in answer
        await chat.type("/continue")
        rest = await chat.expect(PROMPT)
        assert re.search(r"\n {8}\(local\) is 10,000 ETH\.\n", rest), rest
        assert "cut at" not in rest and "lunark>" not in rest, "the same answer goes on"
        await chat.type("/continue")
        assert "nothing to continue" in await chat.expect(PROMPT)
        await chat.type("/stats")
        stats = await chat.expect(PROMPT)
        assert re.search(r"last answer: 8 tokens in 2 parts, first token after \d+ ms, [\d.]+ tokens/s", stats), stats
        assert "this session: 1 answer, 8 tokens" in stats

        await chat.type(f"send 0.1 ETH to {bob.address}")
        card = await chat.expect(CARD_PROMPT)
        assert card.index("  … thinking…") < card.index("  … waiting for your approval") < card.index("approval needed")
        await chat.type("a")
        flow = await chat.expect(PROMPT)
        checking, confirmed = flow.index("  … checking the transaction"), flow.index("] confirmed in block")
        assert checking < confirmed < flow.index("lunark> Sent")
        await chat.type("/quit")
        assert await chat.finish() == 0
    finally:
        print(chat.output)
        await chat.kill()


async def test_a_danger_warning_is_acknowledged_by_typing_its_code(
    make_server: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    from langchain_core.messages import AIMessage

    from lunark.models.scripted import ScriptedChatModel

    # The model proposes an address the user never typed: the prompt-injection pattern.
    model = ScriptedChatModel(replies=[
        AIMessage(content="", tool_calls=[{"name": "transfer", "args": {"to": bob.address, "amount": "0.1"},
                                           "id": "pay1"}]),
        "Sent.",
    ])
    server = await make_server(model=model)
    proc = await asyncio.create_subprocess_exec(
        str(LUNARK), "chat", "--url", f"http://localhost:{server.port}", "--key", alice.private_key,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    chat = ChatProcess(proc)
    try:
        await chat.expect(PROMPT)
        before = native_balance(anvil, bob.address)
        await chat.type("pay my friend a tenth of an ether")
        card = " ".join((await chat.expect(CARD_PROMPT)).split())  # unwrapped
        assert "!! DANGER address_from_tool_output: You never typed" in card, card
        assert "! warning first_time_recipient: You have never sent to" in card, card
        assert "type each DANGER code" in card

        # Anything but the code is no acknowledgement: nothing is signed, the card asks again.
        await chat.type("a")
        await chat.expect("type address_from_tool_output to acknowledge it: ")
        await chat.type("yes")
        refused = await chat.expect(CARD_PROMPT)
        assert "not acknowledged: address_from_tool_output" in refused and "[wallet]" not in refused
        assert native_balance(anvil, bob.address) == before

        await chat.type("a")
        await chat.expect("type address_from_tool_output to acknowledge it: ")
        await chat.type("address_from_tool_output")
        flow = await chat.expect(PROMPT)
        assert "[wallet] broadcast 0x" in flow
        assert re.search(r"\[tx 0x\w+\.\.\.\w+\] confirmed in block \d+", flow), flow
        assert native_balance(anvil, bob.address) - before == ETH // 10
        await chat.type("/quit")
        assert await chat.finish() == 0
    finally:
        print(chat.output)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


TWO = "send 0.5 ETH to {bob} and 3 TKN to {carol}"


async def test_two_transfers_in_one_message_both_settle(
    chat: ChatProcess, anvil: Anvil, world: Any, alice: DevAccount, bob: DevAccount, carol: DevAccount
) -> None:
    await chat.expect(PROMPT)
    eth_before = native_balance(anvil, bob.address)
    tkn_before = token_balance(anvil, world.token, carol.address)
    nonce = int(anvil.rpc("eth_getTransactionCount", [alice.address, "latest"]), 16)

    await chat.type(TWO.format(bob=bob.address, carol=carol.address))
    first = await chat.expect(CARD_PROMPT)
    assert "approval needed (1 of 2)" in first and "amount     0.5 ETH" in first
    await chat.type("a")
    second = await chat.expect(CARD_PROMPT)
    assert "approval needed (2 of 2)" in second and "amount     3 TKN" in second
    await chat.type("a")
    flow = await chat.expect(PROMPT)
    assert flow.count("[wallet] broadcast 0x") == 2, flow
    assert "nonce too low" not in flow and "failed" not in flow, flow
    assert len(re.findall(r"\[tx 0x\w+\.\.\.\w+\] confirmed in block \d+", flow)) == 2, flow

    assert native_balance(anvil, bob.address) - eth_before == ETH // 2
    assert token_balance(anvil, world.token, carol.address) - tkn_before == 3 * ETH
    assert int(anvil.rpc("eth_getTransactionCount", [alice.address, "latest"]), 16) == nonce + 2
    await chat.type("/quit")
    assert await chat.finish() == 0


async def test_reject_the_first_of_two_and_the_second_still_settles(
    chat: ChatProcess, anvil: Anvil, world: Any, alice: DevAccount, bob: DevAccount, carol: DevAccount
) -> None:
    """The second was prepared behind the first (nonce + 1); with the first rejected, it goes out at the
    nonce the first would have had, rather than wait in the pool behind a gap."""
    await chat.expect(PROMPT)
    eth_before = native_balance(anvil, bob.address)
    tkn_before = token_balance(anvil, world.token, carol.address)
    nonce = int(anvil.rpc("eth_getTransactionCount", [alice.address, "latest"]), 16)

    await chat.type(TWO.format(bob=bob.address, carol=carol.address))
    await chat.expect(CARD_PROMPT)
    await chat.type("r")
    await chat.expect("reason (optional): ")
    await chat.type("not bob")
    await chat.expect(CARD_PROMPT)
    await chat.type("a")
    flow = await chat.expect(PROMPT)
    assert flow.count("[wallet] broadcast 0x") == 1, flow
    assert len(re.findall(r"\] confirmed in block \d+", flow)) == 1, flow
    assert "not accepted" not in flow and "mismatch" not in flow, flow

    assert native_balance(anvil, bob.address) == eth_before
    assert token_balance(anvil, world.token, carol.address) - tkn_before == 3 * ETH
    assert int(anvil.rpc("eth_getTransactionCount", [alice.address, "latest"]), 16) == nonce + 1
    assert anvil.rpc("txpool_content", [])["queued"] == {}, "nothing waits behind a gap"
    await chat.type("/quit")


async def test_contacts_from_the_terminal_and_a_send_to_a_label(
    chat: ChatProcess, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    await chat.expect(PROMPT)
    await chat.type("/help")
    assert "/contacts add LABEL ADDRESS" in await chat.expect(PROMPT)
    await chat.type("/contacts")
    assert "no contacts yet" in await chat.expect(PROMPT)
    await chat.type(f"/contacts add Alice {bob.address.replace('C8', 'c8')}")  # a checksum typo
    answer = await chat.expect(PROMPT)
    assert "[invalid_input]" in answer and "checksum" in answer.lower()
    await chat.type(f"/contacts add Alice {bob.address.lower()}")
    assert f"saved Alice = {bob.address}" in await chat.expect(PROMPT)
    await chat.type("/contacts")
    assert re.search(rf"Alice\s+{bob.address}", await chat.expect(PROMPT))

    before = native_balance(anvil, bob.address)
    await chat.type("send 0.1 ETH to alice")
    card = await chat.expect(CARD_PROMPT)
    assert f"recipient  Alice ({bob.address})" in card
    assert f"| recipient Alice ({bob.address[:6]}…{bob.address[-4:]}) +0.1 ETH (" in card  # the preview names it
    assert "first_time_recipient" not in card and "never sent to" not in card
    await chat.type("a")
    assert "confirmed" in await chat.expect(PROMPT)
    assert native_balance(anvil, bob.address) - before == ETH // 10

    await chat.type("/contacts rm ALICE")
    assert "removed ALICE" in await chat.expect(PROMPT)
    await chat.type("/contacts rm alice")
    assert "[not_found]" in await chat.expect(PROMPT)
    await chat.type("send 0.1 ETH to alice")
    assert "not one of your contacts" in await chat.expect(PROMPT)
    assert await chat.finish() == 0
