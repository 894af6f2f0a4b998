"""Claude behind a real ``lunark serve``: ``model.provider = "anthropic:…"`` against a local
endpoint that speaks Anthropic's Messages API (``tests/anthropic_stub.py``), a real Anvil, the
SDK's Socket.IO client and a wallet that signs.

Requests go through langchain-anthropic, the ``anthropic`` SDK and httpx, from the server
process to the stub on a free localhost port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from anthropic_stub import AnthropicStub, Fail, Text, ToolUse, Use
from conftest import World, server_settings
from openai_stub import OpenAIStub
from openai_stub import Text as OpenAIText
from wallet import native_balance

from lunark.chain.anvil import Anvil, DevAccount
from lunark.client import LunarkClient, sign_and_send
from lunark.models import CONTINUE_PROMPT
from lunark.protocol import ChatEvent, Error, MessageEnd, PendingApproval, Token, ToolCall, TxUpdate

ETH = 10**18
KEY_VARIABLE = "LUNARK_TEST_CLAUDE_KEY"


@contextlib.asynccontextmanager
async def client_for(server: Any, account: DevAccount) -> AsyncIterator[LunarkClient]:
    client = LunarkClient(server.url, signer_key=account.private_key)
    try:
        await client.connect()
        yield client
    finally:
        await client.close()


def claude(stub: AnthropicStub, **overrides: Any) -> dict[str, Any]:
    return {"provider": "anthropic:claude-stub", "base_url": stub.base_url, "api_key_env": KEY_VARIABLE,
            "max_retries": 0, **overrides}


def text_of(events: Sequence[ChatEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, Token))


def blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message["content"]
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


async def test_claude_streams_asks_for_approval_and_gets_the_tool_result_back(
    serve: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    greeting = "Hello! I can send funds once your wallet approves."
    answer = "Done: 0.5 ETH went to Bob and the transfer is confirmed."
    replies = [
        Text(greeting, delay=0.15),
        ToolUse([Use("transfer", {"to": bob.address, "amount": "0.5"}, id="toolu_pay")],
                content="Sending 0.5 ETH to Bob.", fragments=6),
        Text(answer),
    ]
    before = native_balance(anvil, bob.address)
    async with AnthropicStub(replies) as stub:
        server = await serve(model=claude(stub), env={KEY_VARIABLE: "sk-ant-test"})
        async with client_for(server, alice) as client:
            session = await client.join()

            # Token by token: the first token reaches the client while Claude is still writing.
            await session.send("hi")
            seen: list[ChatEvent] = []
            async for event in session.events():
                seen.append(event)
                if isinstance(event, Token):
                    assert stub.finished == 0, "the first token waited for the whole answer"
                    break
            seen += await session.until_message_end()
            tokens = [e.text for e in seen if isinstance(e, Token)]
            assert "".join(tokens) == greeting and len(tokens) == len(greeting.split(" "))
            end = seen[-1]
            assert isinstance(end, MessageEnd) and end.finish_reason == "stop"
            assert end.usage.output_tokens == len(tokens) and end.usage.ttft_ms is not None

            # A transfer Claude asks for is an approval card; the wallet signs; it confirms.
            events = await session.turn("pay bob half an ether")
            assert isinstance(events[-1], MessageEnd) and events[-1].finish_reason == "awaiting_approval"
            assert text_of(events) == "Sending 0.5 ETH to Bob."
            approval = session.pending_approval
            assert isinstance(approval, PendingApproval)
            [request] = approval.action_requests
            assert request.call_id == "toolu_pay" and request.name == "transfer"
            assert "0.5 ETH" in request.summary and request.tx is not None
            assert native_balance(anvil, bob.address) == before
            tx_hash = await sign_and_send(request.tx, anvil.url, alice.private_key)
            await session.approve(tx_hash=tx_hash)
            after = await session.until_message_end()

    updates = [e for e in after if isinstance(e, TxUpdate)]
    assert updates[-1].status == "confirmed" and updates[-1].tx_hash == tx_hash
    assert native_balance(anvil, bob.address) - before == ETH // 2
    assert text_of(after) == answer
    assert isinstance(after[-1], MessageEnd) and after[-1].finish_reason == "stop"

    assert len(stub.requests) == 3
    first, _, third = (r.body for r in stub.requests)
    assert first["model"] == "claude-stub" and first["stream"] is True
    assert alice.address in json.dumps(first["system"]), "the system prompt goes as Anthropic's system"
    transfer = next(t for t in first["tools"] if t["name"] == "transfer")
    assert {"to", "amount"} <= set(transfer["input_schema"]["properties"])
    assert stub.requests[0].headers.get("x-api-key", stub.requests[0].headers.get("authorization", "")).endswith(
        "sk-ant-test"
    )
    # Claude's own call goes back as its tool_use block, the result as a tool_result block.
    assistant, result = third["messages"][-2:]
    assert assistant["role"] == "assistant"
    [use] = [b for b in blocks(assistant) if b["type"] == "tool_use"]
    assert use["id"] == "toolu_pay" and use["input"] == {"to": bob.address, "amount": "0.5"}
    assert result["role"] == "user"
    [block] = blocks(result)
    assert block["type"] == "tool_result" and block["tool_use_id"] == "toolu_pay"
    content = block["content"] if isinstance(block["content"], str) else block["content"][0]["text"]
    outcome = json.loads(content)
    assert outcome["status"] == "confirmed" and outcome["tx_hash"] == tx_hash


def test_serve_refuses_to_start_with_a_provider_whose_package_is_missing(tmp_path: Path, world: World) -> None:
    settings = server_settings(tmp_path, world, model={"provider": "mistralai:mistral-large-latest"})
    config = tmp_path / "config.json"
    config.write_text(json.dumps(settings.model_dump(mode="json")))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUNARK_")}
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from lunark.cli import main; sys.exit(main())",
         "--loop", "asyncio", "serve", "--config", str(config)],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "lunark: Model provider 'mistralai' needs the langchain-mistralai package" in done.stderr
    assert "pip install langchain-mistralai" in done.stderr
    assert "listening on" not in done.stdout


async def test_claude_falls_back_fails_as_a_model_error_and_is_continued_at_max_tokens(
    serve: Any, anvil: Anvil, alice: DevAccount
) -> None:
    async with (
        AnthropicStub([
            Fail(529, "Overloaded", "overloaded_error"),
            Fail(500, "Internal server error", "api_error"),
            Text("Gas is the fee", stop_reason="max_tokens"),
            Text(" paid per unit of work."),
        ]) as stub,
        OpenAIStub([OpenAIText("The fallback answers.")]) as fallback,
    ):
        backup = {"provider": "openai", "model": "stub-gpt", "base_url": fallback.base_url, "max_retries": 0}
        server = await serve(model=claude(stub, max_output_tokens=4, fallbacks=[backup]))
        async with client_for(server, alice) as client:
            session = await client.join()

            # Claude is overloaded: the fallback answers, and the user sees no error.
            events = await session.turn("hello?")
            assert text_of(events) == "The fallback answers."
            assert not [e for e in events if isinstance(e, Error)]
            assert isinstance(events[-1], MessageEnd) and events[-1].finish_reason == "stop"

            # Both fail (the fallback's script is used up): one model_error naming Claude.
            events = await session.turn("and now?")
            [error] = [e for e in events if isinstance(e, Error)]
            assert error.code == "model_error"
            assert f"Model 'claude-stub' at {stub.base_url} failed with HTTP 500" in error.message
            assert "1 fallback model failed too" in error.message
            assert isinstance(events[-1], MessageEnd) and events[-1].finish_reason == "error"

            # Claude stops at max_tokens: the answer is cut ("length") and /continue finishes it.
            events = await session.turn("what is gas?")
            end = events[-1]
            assert isinstance(end, MessageEnd) and end.finish_reason == "length"
            assert text_of(events) == "Gas is the fee"
            await session.continue_message(end.message_id)
            more = await asyncio.wait_for(session.until_message_end(), 30)
            assert {e.message_id for e in more if isinstance(e, Token)} == {end.message_id}
            assert text_of(more) == " paid per unit of work."
            assert isinstance(more[-1], MessageEnd) and more[-1].finish_reason == "stop"
            assert not [e for e in more if isinstance(e, ToolCall)]
            chat = await client.get_chat(session.chat_id)

    assert [r.body["max_tokens"] for r in stub.requests] == [4, 4, 4, 4]
    cut, ask = stub.requests[3].body["messages"][-2:]
    assert cut["role"] == "assistant" and "".join(b["text"] for b in blocks(cut)) == "Gas is the fee"
    assert ask == {"role": "user", "content": CONTINUE_PROMPT}
    answers = [m["content"] for m in chat["messages"] if m["role"] == "assistant"]
    assert answers[-1] == "Gas is the fee paid per unit of work."
