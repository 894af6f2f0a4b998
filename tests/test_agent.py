"""The agent graph end to end: offline planner or scripted model, real Anvil, real SQLite checkpoints."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from conftest import SECOND_CHAIN_ID, World
from langchain_core.messages import AIMessage, ToolMessage
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from wallet import native_balance, token_balance, wallet_send

from lunark.chain.anvil import Anvil, DevAccount
from lunark.chain.signer import LocalSigner
from lunark.errors import AlreadyDecided, ApprovalExpired, Busy, InvalidDecision, NoPendingApproval
from lunark.graph import Agent
from lunark.models.planner import OfflinePlanner
from lunark.models.scripted import ScriptedChatModel
from lunark.networks import NetworkRegistry
from lunark.tools.policy import SpendingPolicy

ETH = 10**18


async def collect(events: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [event async for event in events]


def of_type(events: Sequence[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


def answer(events: Sequence[dict[str, Any]]) -> str:
    return "".join(e["text"] for e in of_type(events, "token"))


@pytest.fixture
async def make_agent(
    tmp_path: Path, registry: NetworkRegistry
) -> AsyncIterator[Any]:
    agents: list[Agent] = []
    savers: list[Any] = []

    async def make(
        *,
        model: Any = None,
        policy: SpendingPolicy | None = None,
        signer: LocalSigner | None = None,
        db: Path | None = None,
        **kwargs: Any,
    ) -> Agent:
        cm = AsyncSqliteSaver.from_conn_string(str(db or tmp_path / "checkpoints.sqlite"))
        saver = await cm.__aenter__()
        savers.append(cm)
        agent = Agent(
            model=model or OfflinePlanner(),
            registry=registry,
            checkpointer=saver,
            policy=policy,
            signer=signer,
            track_timeout=30,
            verify_timeout=5,
            **kwargs,
        )
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        await agent.aclose()
    for cm in savers:
        await cm.__aexit__(None, None, None)


async def test_balance_answer_without_approval(make_agent: Any, anvil: Anvil, alice: DevAccount) -> None:
    agent = await make_agent()
    events = await collect(agent.stream("t1", "what's my balance?", user_address=alice.address, chain_id=31337))
    assert [e["status"] for e in of_type(events, "tool_call")] == ["running"]
    [result] = of_type(events, "tool_result")
    assert result["status"] == "success"
    expected = Decimal(native_balance(anvil, alice.address)).scaleb(-18)
    assert Decimal(result["result"]["amount"]) == expected
    assert not of_type(events, "pending_approval")
    assert events[-1]["type"] == "message_end" and events[-1]["finish_reason"] == "stop"
    assert len(of_type(events, "token")) > 1, "the answer streams token by token"
    assert "ETH" in answer(events)
    # "thinking…" when the model is asked: at the start, and again once the tool ran and nothing waits.
    assert [e.get("text", e["type"]) for e in events if e["type"] != "token"] == [
        "message_start", "thinking…", "tool_call", "tool_result", "thinking…", "message_end"]


async def test_native_transfer_approved_and_confirmed(
    make_agent: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    agent = await make_agent(signer=LocalSigner.anvil(0))
    before = native_balance(anvil, bob.address)
    events = await collect(agent.stream("t", f"send 0.5 ETH to {bob.address}", user_address=alice.address))
    [pending] = of_type(events, "pending_approval")
    assert events[-1]["finish_reason"] == "awaiting_approval"
    [request] = pending["action_requests"]
    assert request["name"] == "transfer"
    assert "0.5 ETH" in request["summary"] and bob.address in request["summary"]
    assert int(request["tx"]["value"], 16) == ETH // 2 and request["tx"]["to"] == bob.address
    assert native_balance(anvil, bob.address) == before, "nothing moves before approval"
    # An approval waits: no "thinking…" after the step that prepared it; the pause is announced last.
    assert [e.get("text", e["type"]) for e in events if e["type"] != "token"][-4:] == [
        "tool_call", "pending_approval", "waiting for your approval", "message_end"]

    events = await collect(agent.resume("t", pending["approval_id"], [{"type": "approve"}]))
    statuses = [e["status"] for e in of_type(events, "tx_update")]
    assert statuses[0] == "submitted" and statuses[-1] == "confirmed"
    assert all(e["call_id"] == request["call_id"] for e in of_type(events, "tx_update"))
    assert native_balance(anvil, bob.address) - before == ETH // 2
    assert of_type(events, "approval_resolved")[0]["by"] == "user"
    assert "confirmed" in answer(events).lower()


async def test_erc20_transfer_signed_by_wallet_tx_hash(
    make_agent: Any, world: World, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    agent = await make_agent()  # no local signer: only the wallet signs
    before = token_balance(anvil, world.token, bob.address)
    events = await collect(agent.stream("t", f"send 10 TKN to {bob.address}", user_address=alice.address))
    [pending] = of_type(events, "pending_approval")
    tx = pending["action_requests"][0]["tx"]
    assert tx["to"] == world.token and int(tx["value"], 16) == 0
    tx_hash = wallet_send(anvil, tx, alice.private_key)
    events = await collect(agent.resume("t", pending["approval_id"], [{"type": "approve", "tx_hash": tx_hash}]))
    assert of_type(events, "tx_update")[-1]["status"] == "confirmed"
    assert of_type(events, "tx_update")[-1]["tx_hash"] == tx_hash
    assert token_balance(anvil, world.token, bob.address) - before == 10 * ETH


async def test_signed_tx_is_verified_then_broadcast(
    make_agent: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    from wallet import sign_wire_tx

    agent = await make_agent()
    before = native_balance(anvil, bob.address)
    events = await collect(agent.stream("t", f"send 1 ETH to {bob.address}", user_address=alice.address))
    [pending] = of_type(events, "pending_approval")
    raw = sign_wire_tx(pending["action_requests"][0]["tx"], alice.private_key)
    events = await collect(agent.resume("t", pending["approval_id"], [{"type": "approve", "signed_tx": raw}]))
    assert of_type(events, "tx_update")[-1]["status"] == "confirmed"
    assert native_balance(anvil, bob.address) - before == ETH


async def test_reject_moves_nothing_and_is_explained(
    make_agent: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    agent = await make_agent(signer=LocalSigner.anvil(0))
    before = native_balance(anvil, bob.address)
    events = await collect(agent.stream("t", f"send 2 ETH to {bob.address}", user_address=alice.address))
    [pending] = of_type(events, "pending_approval")
    events = await collect(
        agent.resume("t", pending["approval_id"], [{"type": "reject", "message": "wrong friend"}])
    )
    [result] = of_type(events, "tool_result")
    assert result["status"] == "rejected"
    assert not of_type(events, "tx_update")
    assert native_balance(anvil, bob.address) == before
    text = answer(events)
    assert "not" in text.lower() and "wrong friend" in text


async def test_edit_sends_the_edited_amount_only(
    make_agent: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    agent = await make_agent(signer=LocalSigner.anvil(0))
    before = native_balance(anvil, bob.address)
    events = await collect(agent.stream("t", f"send 3 ETH to {bob.address}", user_address=alice.address))
    [pending] = of_type(events, "pending_approval")
    edit = {"type": "edit", "edited_action": {"name": "transfer", "args": {"to": bob.address, "amount": "0.25"}}}
    events = await collect(agent.resume("t", pending["approval_id"], [edit]))
    # The edited action is prepared again and shown again: what executes is what the user saw.
    [again] = of_type(events, "pending_approval")
    assert again["approval_id"] != pending["approval_id"]
    assert "0.25 ETH" in again["action_requests"][0]["summary"]
    assert native_balance(anvil, bob.address) == before
    events = await collect(agent.resume("t", again["approval_id"], [{"type": "approve"}]))
    assert of_type(events, "tx_update")[-1]["status"] == "confirmed"
    assert native_balance(anvil, bob.address) - before == ETH // 4


async def test_two_transfers_one_approval_decided_independently(
    make_agent: Any, world: World, anvil: Anvil, alice: DevAccount, bob: DevAccount, carol: DevAccount
) -> None:
    agent = await make_agent(signer=LocalSigner.anvil(0))
    bob_before = native_balance(anvil, bob.address)
    carol_before = token_balance(anvil, world.token, carol.address)
    events = await collect(
        agent.stream("t", f"send 1 ETH to {bob.address} and 5 TKN to {carol.address}", user_address=alice.address)
    )
    [pending] = of_type(events, "pending_approval")
    assert [r["name"] for r in pending["action_requests"]] == ["transfer", "transfer"]
    events = await collect(
        agent.resume("t", pending["approval_id"], [{"type": "approve"}, {"type": "reject", "message": "later"}])
    )
    assert [r["status"] for r in of_type(events, "tool_result")] == ["success", "rejected"]
    assert native_balance(anvil, bob.address) - bob_before == ETH
    assert token_balance(anvil, world.token, carol.address) == carol_before


async def test_switch_network_then_transfer_on_second_chain(
    make_agent: Any, anvil: Anvil, anvil2: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    agent = await make_agent(signer=LocalSigner.anvil(0))
    events = await collect(agent.stream("t", "switch to anvil-2", user_address=alice.address, chain_id=31337))
    [pending] = of_type(events, "pending_approval")
    assert pending["action_requests"][0]["name"] == "switch_network"
    events = await collect(agent.resume("t", pending["approval_id"], [{"type": "approve"}]))
    [switch] = of_type(events, "network_switch")
    assert switch["chain_id"] == SECOND_CHAIN_ID and switch["rpc_urls"] == [anvil2.url]
    assert await agent.chain_id("t") == SECOND_CHAIN_ID

    before1, before2 = native_balance(anvil, bob.address), native_balance(anvil2, bob.address)
    events = await collect(agent.stream("t", f"send 1 ETH to {bob.address}", user_address=alice.address))
    [pending] = of_type(events, "pending_approval")
    assert int(pending["action_requests"][0]["tx"]["chain_id"], 16) == SECOND_CHAIN_ID
    events = await collect(agent.resume("t", pending["approval_id"], [{"type": "approve"}]))
    assert of_type(events, "tx_update")[-1]["chain_id"] == SECOND_CHAIN_ID
    assert native_balance(anvil2, bob.address) - before2 == ETH
    assert native_balance(anvil, bob.address) == before1


async def test_policy_breach_asks_nothing_and_sends_nothing(
    make_agent: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    policy = SpendingPolicy.build(per_tx_cap={"ETH": "1"})
    agent = await make_agent(signer=LocalSigner.anvil(0), policy=policy)
    before = native_balance(anvil, bob.address)
    nonce = anvil.rpc("eth_getTransactionCount", [alice.address, "pending"])
    events = await collect(agent.stream("t", f"send 5 ETH to {bob.address}", user_address=alice.address))
    assert not of_type(events, "pending_approval")
    [result] = of_type(events, "tool_result")
    assert result["status"] == "error" and result["error"]["code"] == "policy_violation"
    assert native_balance(anvil, bob.address) == before
    assert anvil.rpc("eth_getTransactionCount", [alice.address, "pending"]) == nonce
    assert "limit" in answer(events).lower()


async def test_daily_cap_counts_transfers_in_the_same_turn(
    make_agent: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount, carol: DevAccount
) -> None:
    policy = SpendingPolicy.build(daily_cap={"ETH": "1.5"})
    agent = await make_agent(signer=LocalSigner.anvil(0), policy=policy)
    events = await collect(
        agent.stream("t", f"send 1 ETH to {bob.address} and 1 ETH to {carol.address}", user_address=alice.address)
    )
    [pending] = of_type(events, "pending_approval")
    assert len(pending["action_requests"]) == 1, "the second transfer breaks the daily cap"
    errors = [r for r in of_type(events, "tool_result") if r["status"] == "error"]
    assert errors[0]["error"]["rule"] == "daily_cap"


async def test_second_decision_is_refused(make_agent: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount) -> None:
    agent = await make_agent(signer=LocalSigner.anvil(0))
    events = await collect(agent.stream("t", f"send 1 ETH to {bob.address}", user_address=alice.address))
    [pending] = of_type(events, "pending_approval")
    await collect(agent.resume("t", pending["approval_id"], [{"type": "approve"}]))
    with pytest.raises(AlreadyDecided):
        await collect(agent.resume("t", pending["approval_id"], [{"type": "reject"}]))


async def test_concurrent_decisions_apply_once(
    make_agent: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    agent = await make_agent(signer=LocalSigner.anvil(0))
    before = native_balance(anvil, bob.address)
    events = await collect(agent.stream("t", f"send 1 ETH to {bob.address}", user_address=alice.address))
    [pending] = of_type(events, "pending_approval")
    results = await asyncio.gather(
        collect(agent.resume("t", pending["approval_id"], [{"type": "approve"}])),
        collect(agent.resume("t", pending["approval_id"], [{"type": "approve"}])),
        return_exceptions=True,
    )
    assert sum(isinstance(r, AlreadyDecided) for r in results) == 1
    assert native_balance(anvil, bob.address) - before == ETH


async def test_decision_without_pending_approval_is_an_error(make_agent: Any, alice: DevAccount) -> None:
    agent = await make_agent()
    with pytest.raises(NoPendingApproval):
        await collect(agent.resume("never-ran", "apr_x", [{"type": "approve"}]))


async def test_malformed_decisions_are_refused_and_the_approval_stays(
    make_agent: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    agent = await make_agent(signer=LocalSigner.anvil(0))
    events = await collect(agent.stream("t", f"send 1 ETH to {bob.address}", user_address=alice.address))
    [pending] = of_type(events, "pending_approval")
    for bad in ([], [{"type": "approve"}, {"type": "approve"}], [{"type": "maybe"}],
                [{"type": "approve", "tx_hash": "0x1234"}],
                [{"type": "edit", "edited_action": {"name": "switch_network", "args": {}}}]):
        with pytest.raises(InvalidDecision):
            await collect(agent.resume("t", pending["approval_id"], bad))
    still = await agent.pending_approval("t")
    assert still is not None and still["approval_id"] == pending["approval_id"]
    with pytest.raises(Busy):
        await collect(agent.stream("t", "what's my balance", user_address=alice.address))


async def test_expired_approval_fails_closed(make_agent: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount) -> None:
    agent = await make_agent(signer=LocalSigner.anvil(0), approval_ttl=0.2)
    before = native_balance(anvil, bob.address)
    events = await collect(agent.stream("t", f"send 1 ETH to {bob.address}", user_address=alice.address))
    [pending] = of_type(events, "pending_approval")
    await asyncio.sleep(0.3)
    with pytest.raises(ApprovalExpired):
        await collect(agent.resume("t", pending["approval_id"], [{"type": "approve"}]))
    events = await collect(agent.expire("t", pending["approval_id"]))
    [resolved] = of_type(events, "approval_resolved")
    assert resolved["by"] == "timeout" and resolved["decisions"][0]["type"] == "reject"
    assert native_balance(anvil, bob.address) == before


async def test_tampered_tx_hash_is_a_mismatch(
    make_agent: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount, mallory: DevAccount
) -> None:
    agent = await make_agent()
    events = await collect(agent.stream("t", f"send 1 ETH to {bob.address}", user_address=alice.address))
    [pending] = of_type(events, "pending_approval")
    # A compromised front end signs a transfer to mallory and reports that hash.
    tampered = wallet_send(anvil, pending["action_requests"][0]["tx"], alice.private_key, to=mallory.address)
    events = await collect(agent.resume("t", pending["approval_id"], [{"type": "approve", "tx_hash": tampered}]))
    [update] = of_type(events, "tx_update")
    assert (update["status"] == "mismatch" and "recipient" in update["reason"].lower()) or "to" in update["reason"]
    [result] = of_type(events, "tool_result")
    assert result["status"] == "error" and result["result"]["status"] == "mismatch"
    assert "match" in answer(events).lower()


async def test_scripted_model_drives_the_same_flow(
    make_agent: Any, world: World, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    model = ScriptedChatModel(
        replies=[
            AIMessage(
                content="",
                tool_calls=[
                    {"name": "transfer", "args": {"to": bob.address, "amount": 2.5, "token": "tkn"}, "id": "call_1"}
                ],
            ),
            "All done.",
        ]
    )
    agent = await make_agent(model=model, signer=LocalSigner.anvil(0))
    before = token_balance(anvil, world.token, bob.address)
    # The user typed the address: the model copying it is no provenance warning.
    events = await collect(agent.stream("t", f"pay bob at {bob.address}", user_address=alice.address))
    [pending] = of_type(events, "pending_approval")
    assert pending["action_requests"][0]["call_id"] == "call_1"
    events = await collect(agent.resume("t", pending["approval_id"], [{"type": "approve"}]))
    assert answer(events) == "All done."
    assert token_balance(anvil, world.token, bob.address) - before == 25 * ETH // 10
    # The model saw the confirmed result as a tool message.
    tool_messages = [m for m in model.calls[-1] if isinstance(m, ToolMessage)]
    assert json.loads(str(tool_messages[0].content))["status"] == "confirmed"


async def test_unknown_token_and_bad_address_fail_closed(
    make_agent: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    model = ScriptedChatModel(
        replies=[
            AIMessage(content="", tool_calls=[
                {"name": "transfer", "args": {"to": bob.address, "amount": "1", "token": "DOGE"}, "id": "a"},
                {"name": "transfer", "args": {"to": "0x1234", "amount": "1"}, "id": "b"},
                {"name": "transfer", "args": {"to": bob.address, "amount": "-1"}, "id": "c"},
                {"name": "launch_rocket", "args": {}, "id": "d"},
            ]),
            "Sorry.",
        ]
    )
    agent = await make_agent(model=model, signer=LocalSigner.anvil(0))
    events = await collect(agent.stream("t", "do things", user_address=alice.address))
    assert not of_type(events, "pending_approval")
    codes = [r["error"]["code"] for r in of_type(events, "tool_result")]
    assert codes == ["invalid_input"] * 4


async def test_a_turn_aborted_mid_tool_leaves_no_unanswered_call(make_agent: Any, alice: DevAccount) -> None:
    from pydantic import BaseModel

    from lunark.tools.base import FunctionTool
    from lunark.tools.registry import ToolSet, default_tools

    class NoArgs(BaseModel):
        pass

    started = asyncio.Event()

    async def slow(args: NoArgs, ctx: Any) -> dict[str, str]:
        started.set()
        await asyncio.sleep(30)
        return {"done": "yes"}

    tool = FunctionTool(name="slow_report", description="A slow report.", args_schema=NoArgs, fn=slow, approval="never")
    model = ScriptedChatModel(
        replies=[
            AIMessage(content="", tool_calls=[{"name": "slow_report", "args": {}, "id": "call_slow"}]),
            "Hello again.",
        ]
    )
    agent = await make_agent(model=model, tools=ToolSet([*default_tools(), tool]))
    turn = asyncio.create_task(collect(agent.stream("t", "make the report", user_address=alice.address)))
    await asyncio.wait_for(started.wait(), 5)
    turn.cancel()  # what the server's abort does
    with pytest.raises(asyncio.CancelledError):
        await turn

    events = await collect(agent.stream("t", "hi", user_address=alice.address))
    assert answer(events) == "Hello again."
    seen = model.calls[-1]
    [stopped] = [m for m in seen if isinstance(m, ToolMessage) and m.tool_call_id == "call_slow"]
    assert json.loads(str(stopped.content))["status"] == "error"
    assert seen.index(stopped) < len(seen) - 1, "the stopped call's result comes before the new user message"
