"""The real ChatOpenAI path through the agent graph, against a scripted OpenAI-compatible server.

Requests go through langchain-openai, the openai SDK and httpx to
``OpenAIStub`` on a free localhost port; the transfer is signed by the Anvil
dev account and mined on the real test Anvil.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from conftest import World
from openai_stub import Call, Fail, OpenAIStub, Text, ToolCalls
from wallet import native_balance

from lunark.chain.anvil import Anvil, DevAccount
from lunark.config import Settings
from lunark.graph import Agent

ETH = 10**18
ANSWER = "Done: 0.5 ETH went to Bob and the transfer is confirmed."


async def collect(events: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [event async for event in events]


def of_type(events: Sequence[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


def settings_for(stub: OpenAIStub, tmp_path: Path, world: World) -> Settings:
    return Settings.load(
        data_dir=tmp_path,
        model={"provider": "openai", "base_url": stub.base_url, "model": "stub-gpt", "max_retries": 0},
        chain={"rpc_url": world.anvil.url, "track_timeout": 30, "verify_timeout": 5},
        signer={"local": "anvil", "anvil_account": 0},
        plugins=False,
    )


async def test_openai_tool_call_transfer_approved_and_confirmed(
    tmp_path: Path, world: World, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    replies = [
        ToolCalls([Call("transfer", {"to": bob.address, "amount": "0.5"}, id="call_pay")], fragments=6),
        Text(ANSWER),
    ]
    before = native_balance(anvil, bob.address)
    async with OpenAIStub(replies) as stub:
        async with Agent.open(settings_for(stub, tmp_path, world), environ={}) as agent:
            events = await collect(agent.stream("t", f"pay {bob.address} half an ether", user_address=alice.address))
            [pending] = of_type(events, "pending_approval")
            assert events[-1]["finish_reason"] == "awaiting_approval"
            [request] = pending["action_requests"]
            assert request["call_id"] == "call_pay" and request["name"] == "transfer"
            assert request["args"] == {"to": bob.address, "amount": "0.5"}
            assert "0.5 ETH" in request["summary"] and int(request["tx"]["value"], 16) == ETH // 2
            assert native_balance(anvil, bob.address) == before

            events = await collect(agent.resume("t", pending["approval_id"], [{"type": "approve"}]))

        assert of_type(events, "tx_update")[-1]["status"] == "confirmed"
        assert native_balance(anvil, bob.address) - before == ETH // 2
        tokens = of_type(events, "token")
        assert len(tokens) > 3, "the answer streams as several token events"
        assert "".join(t["text"] for t in tokens) == ANSWER
        assert events[-1]["type"] == "message_end" and events[-1]["finish_reason"] == "stop"

        assert len(stub.requests) == 2
        first, second = (r.body for r in stub.requests)
        assert first["model"] == "stub-gpt" and first["stream"] is True
        assert "transfer" in {t["function"]["name"] for t in first["tools"]}
        [tool_message] = [m for m in second["messages"] if m["role"] == "tool"]
        assert tool_message["tool_call_id"] == "call_pay"
        result = json.loads(tool_message["content"])
        assert result["status"] == "confirmed" and result["tx_hash"].startswith("0x")
        [assistant] = [m for m in second["messages"] if m["role"] == "assistant"]
        assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {
            "to": bob.address,
            "amount": "0.5",
        }


async def test_model_failure_ends_the_turn_with_a_model_error(
    tmp_path: Path, world: World, alice: DevAccount
) -> None:
    async with (
        OpenAIStub(default=Fail(500, "the model is on fire")) as stub,
        Agent.open(settings_for(stub, tmp_path, world), environ={}) as agent,
    ):
        events = await collect(agent.stream("t", "what's my balance?", user_address=alice.address))
        assert await agent.pending_approval("t") is None
        # The chat is not stuck: once the model answers again, the next turn works.
        stub.add(Text("Back again."))
        after = await collect(agent.stream("t", "hello?", user_address=alice.address))
        assert "".join(e["text"] for e in of_type(after, "token")) == "Back again."
        assert after[-1]["finish_reason"] == "stop"
    [error] = of_type(events, "error")
    assert error["code"] == "model_error"
    assert "500" in error["message"]
    assert events[0]["type"] == "message_start"
    assert events[-1]["type"] == "message_end" and events[-1]["finish_reason"] == "error"
    assert not of_type(events, "token") and not of_type(events, "tool_call")
    assert len(stub.requests) == 2, "max_retries=0 and no fallback: one request per turn"
