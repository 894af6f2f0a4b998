"""Amounts people say ("send all my ETH", "send half my TKN", "max"): the agent computes the exact
amount from the live balance (leaving the network fee for the native currency), the approval shows
that figure, and nothing moves before the approval. On a real Anvil, through the agent."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from conftest import World
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from wallet import native_balance, token_balance

from lunark.chain.anvil import Anvil, DevAccount
from lunark.chain.signer import LocalSigner
from lunark.errors import InvalidAmount
from lunark.graph import Agent
from lunark.models.planner import plan_tool_calls
from lunark.networks import NetworkRegistry
from lunark.tools.amounts import share_of
from lunark.tools.registry import ToolSet, default_tools

SENDER = 5  # a dev account no other test here spends from; its balance is set per test
BOB = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
ETH = 10**18


@pytest.mark.parametrize(
    ("said", "share"),
    [("all", Fraction(1)), ("MAX", Fraction(1)), (" everything ", Fraction(1)), ("half", Fraction(1, 2)),
     ("25%", Fraction(1, 4)), ("12.5 %", Fraction(1, 8)), ("100%", Fraction(1)), ("1/3", Fraction(1, 3)),
     ("0.5", None), ("10", None), ("1,000", None)],
)
def test_shares_people_say(said: str, share: Fraction | None) -> None:
    assert share_of(said) == share


@pytest.mark.parametrize("said", ["0%", "150%", "3/2", "0/4", "1/0"])
def test_a_share_that_is_no_part_of_a_balance_is_refused(said: str) -> None:
    with pytest.raises(InvalidAmount):
        share_of(said)


@pytest.mark.parametrize(
    ("text", "args"),
    [
        (f"send all my ETH to {BOB}", {"to": BOB, "amount": "all"}),
        (f"send max ETH to {BOB}", {"to": BOB, "amount": "max"}),
        (f"send everything to {BOB}", {"to": BOB, "amount": "all"}),
        (f"send half my TKN to {BOB}", {"to": BOB, "amount": "half", "token": "TKN"}),
        (f"send half of my TKN to {BOB}", {"to": BOB, "amount": "half", "token": "TKN"}),
        (f"transfer 25% of my ETH to {BOB}", {"to": BOB, "amount": "25%"}),
        (f"send 1/3 of the TKN to {BOB}", {"to": BOB, "amount": "1/3", "token": "TKN"}),
    ],
)
def test_the_planner_reads_shares(text: str, args: dict[str, str]) -> None:
    [call] = plan_tool_calls(text, ToolSet(default_tools()).schemas())
    assert call["name"] == "transfer" and call["args"] == args


# -- through the agent, on Anvil ---------------------------------------------------------------------


@pytest.fixture
async def agent(tmp_path: Path, registry: NetworkRegistry) -> AsyncIterator[Agent]:
    async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "checkpoints.sqlite")) as saver:
        agent = Agent(model=None, registry=registry, checkpointer=saver,  # type: ignore[arg-type]
                      bind_tools=_planner, signer=LocalSigner.anvil(SENDER), track_timeout=30, verify_timeout=5)
        try:
            yield agent
        finally:
            await agent.aclose()


def _planner(schemas: Sequence[dict[str, Any]]) -> Any:
    from lunark.models.planner import OfflinePlanner

    return OfflinePlanner().bind_tools(schemas)


async def run(events: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [event async for event in events]


async def test_send_all_my_eth_leaves_only_dust(agent: Agent, anvil: Anvil, accounts: list[DevAccount]) -> None:
    sender = accounts[SENDER].address
    anvil.rpc("anvil_setBalance", [sender, hex(3 * ETH // 2)])
    bob_before = native_balance(anvil, BOB)

    events = await run(agent.stream("all", f"send all my ETH to {BOB}", user_address=sender))
    [pending] = [e for e in events if e["type"] == "pending_approval"]
    [request] = pending["action_requests"]
    tx = request["tx"]
    max_fee = int(tx["gas"], 16) * int(tx["max_fee_per_gas"], 16)
    amount = int(tx["value"], 16)
    assert amount == 3 * ETH // 2 - max_fee, "the balance less the most the fee can be"
    exact = format((Decimal(amount) / ETH).normalize(), "f")
    assert request["args"]["amount"] == exact, "the card shows the exact figure, not 'all'"
    assert request["summary"].startswith(f"Send {exact} ETH to {BOB}")
    assert native_balance(anvil, sender) == 3 * ETH // 2 and native_balance(anvil, BOB) == bob_before, (
        "nothing moves before the approval"
    )

    events = await run(agent.resume("all", pending["approval_id"], [{"type": "approve"}]))
    assert [e["status"] for e in events if e["type"] == "tx_update"][-1] == "confirmed"
    assert native_balance(anvil, BOB) - bob_before == amount
    left = native_balance(anvil, sender)
    assert 0 < left < max_fee, f"only dust is left: {left} wei, the fee could have been {max_fee}"


async def test_send_half_my_tkn(agent: Agent, anvil: Anvil, world: World, accounts: list[DevAccount]) -> None:
    sender = accounts[SENDER].address
    before = token_balance(anvil, world.token, sender)
    bob_before = token_balance(anvil, world.token, BOB)
    events = await run(agent.stream("half", f"send half my TKN to {BOB}", user_address=sender))
    [pending] = [e for e in events if e["type"] == "pending_approval"]
    [request] = pending["action_requests"]
    assert request["args"]["token"] == "TKN" and Decimal(request["args"]["amount"]) * ETH == before // 2
    await run(agent.resume("half", pending["approval_id"], [{"type": "approve"}]))
    assert token_balance(anvil, world.token, sender) == before - before // 2
    assert token_balance(anvil, world.token, BOB) - bob_before == before // 2


async def test_all_of_too_little_to_pay_the_fee_is_refused_before_anyone_is_asked(
    agent: Agent, anvil: Anvil, accounts: list[DevAccount]
) -> None:
    sender = accounts[SENDER].address
    anvil.rpc("anvil_setBalance", [sender, hex(1000)])
    events = await run(agent.stream("dust", f"send all my ETH to {BOB}", user_address=sender))
    assert not [e for e in events if e["type"] == "pending_approval"]
    [result] = [e for e in events if e["type"] == "tool_result"]
    assert result["status"] == "error"
    assert "does not cover the network fee" in result["error"]["message"]
    assert native_balance(anvil, sender) == 1000
