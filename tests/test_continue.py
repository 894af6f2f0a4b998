"""Answers cut at the model's output limit, continued: the offline planner and the scripted model
with a configured limit, an OpenAI-compatible model's ``finish_reason: "length"``, over Socket.IO
(the SDK), HTTP, and the agent API. A continuation appends to the same message."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import World, sign_in
from langchain_core.messages import AIMessage, HumanMessage
from openai_stub import OpenAIStub, Text

from lunark.chain.anvil import Anvil, DevAccount
from lunark.client import LunarkClient
from lunark.config import Settings
from lunark.errors import Busy, InvalidInput
from lunark.graph import Agent
from lunark.models import CONTINUE_PROMPT, OfflinePlanner, build_chat_model
from lunark.models.scripted import ScriptedChatModel
from lunark.protocol import ChatEvent, MessageEnd, MessageStart, Status, Token

BALANCE = "Your balance on Anvil (local) is 10,000 ETH."


@contextlib.asynccontextmanager
async def client_for(server: Any, account: DevAccount) -> AsyncIterator[LunarkClient]:
    client = LunarkClient(f"http://localhost:{server.port}", signer_key=account.private_key)
    try:
        await client.connect()
        yield client
    finally:
        await client.close()


def tokens_of(events: list[ChatEvent], message_id: str) -> str:
    return "".join(e.text for e in events if isinstance(e, Token) and e.message_id == message_id)


async def test_a_cut_answer_is_continued_into_the_same_message_over_socketio(
    make_server: Any, anvil: Anvil, alice: DevAccount
) -> None:
    server = await make_server(model=OfflinePlanner(max_output_tokens=3))
    async with client_for(server, alice) as client:
        session = await client.join()
        events = await session.turn("what's my balance")
        end = events[-1]
        assert isinstance(end, MessageEnd) and end.finish_reason == "length"
        message_id = end.message_id
        assert tokens_of(events, message_id) == "Your balance on"
        assert end.usage.output_tokens == 3

        parts = [tokens_of(events, message_id)]
        while end.finish_reason == "length":
            await session.continue_message(message_id)
            more = await session.until_message_end()
            end = more[-1]
            assert isinstance(end, MessageEnd) and end.message_id == message_id
            assert not [e for e in more if isinstance(e, MessageStart)], "a continuation starts no new message"
            assert [e.text for e in more if isinstance(e, Status)][:1] == ["thinking…"]
            parts.append(tokens_of(more, message_id))
            assert len(parts) < 10
        assert "".join(parts) == BALANCE
        assert parts == ["Your balance on", " Anvil (local) is", " 10,000 ETH."] and end.finish_reason == "stop"

        # Only a cut answer, and only the chat's last one, continues.
        with pytest.raises(InvalidInput, match="cut at the model's output limit"):
            await session.continue_message(message_id)
        with pytest.raises(InvalidInput):
            await session.continue_message("msg_nope")

        # The history holds one answer: over HTTP, and to a client that replays the chat.
        detail = await client.get_chat(session.chat_id)
        answers = [m for m in detail["messages"] if m["role"] == "assistant"]
        assert [(m["message_id"], m["content"], m["finish_reason"]) for m in answers] == [
            (message_id, BALANCE, "stop")
        ]
    async with client_for(server, alice) as other:
        replayed = await other.join(session.chat_id, last_seq=0)
        seen: list[ChatEvent] = []
        async for event in replayed.events():
            seen.append(event)
            if event.seq == detail["last_seq"]:
                break
        assert tokens_of(seen, message_id) == BALANCE
        assert [e.finish_reason for e in seen if isinstance(e, MessageEnd)] == ["length", "length", "stop"]


async def test_continue_over_http_and_its_errors(make_server: Any, anvil: Anvil, alice: DevAccount) -> None:
    model = ScriptedChatModel(replies=["one two three four five six", " five six"], max_output_tokens=4)
    server = await make_server(model=model)
    token = await sign_in(server, alice)
    headers = {"Authorization": f"Bearer {token}"}
    async with client_for(server, alice) as client:
        session = await client.join()
        events = await session.turn("count")
        end = events[-1]
        assert isinstance(end, MessageEnd) and end.finish_reason == "length"
        async with aiohttp.ClientSession(headers=headers) as http:
            url = f"{server.url}/api/chats/{session.chat_id}/messages/{end.message_id}/continue"
            async with http.post(url) as response:
                assert response.status == 202, await response.text()
                assert await response.json() == {"ok": True}
            more = await session.until_message_end()
            assert tokens_of(more, end.message_id) == " five six"
            assert isinstance(more[-1], MessageEnd) and more[-1].finish_reason == "stop"
            # The model saw the cut answer, then the request to go on, and nothing else new.
            last_call = model.calls[-1]
            assert isinstance(last_call[-1], HumanMessage) and last_call[-1].content == CONTINUE_PROMPT
            assert isinstance(last_call[-2], AIMessage) and last_call[-2].content == "one two three four"

            async with http.post(url) as response:  # no longer cut
                assert response.status == 400
                assert (await response.json())["error"]["code"] == "invalid_input"
            bad = f"{server.url}/api/chats/{session.chat_id}/messages/m%20x/continue"
            async with http.post(bad) as response:
                assert response.status == 400
                assert (await response.json())["error"]["code"] == "invalid_input"
            async with http.post(f"{server.url}/api/chats/chat_nope/messages/{end.message_id}/continue") as response:
                assert response.status == 404
        async with client_for(server, alice) as mallory_like:  # the same owner; another owner is refused below
            detail = await mallory_like.get_chat(session.chat_id)
        [answer] = [m for m in detail["messages"] if m["role"] == "assistant"]
        assert answer["content"] == "one two three four five six" and answer["finish_reason"] == "stop"


async def test_continue_is_refused_to_another_address_and_while_a_turn_runs(
    make_server: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    model = ScriptedChatModel(replies=["a b c d e f", " d e f"], max_output_tokens=3, token_delay=0.05)
    server = await make_server(model=model)
    async with client_for(server, alice) as client, client_for(server, bob) as intruder:
        session = await client.join()
        events = await session.turn("letters")
        end = events[-1]
        assert isinstance(end, MessageEnd) and end.finish_reason == "length"
        with pytest.raises(Exception, match="another address"):
            await intruder._call("continue_message", {"chat_id": session.chat_id, "message_id": end.message_id},
                                 retry=False)
        await session.continue_message(end.message_id)
        with pytest.raises(Busy):
            await session.continue_message(end.message_id)
        more = await session.until_message_end()
        assert tokens_of(more, end.message_id) == " d e f"


async def test_an_openai_compatible_length_stop_is_continued(
    tmp_path: Path, world: World, anvil: Anvil, alice: DevAccount
) -> None:
    replies = [Text("Gas is the fee", finish_reason="length"), Text(" paid per unit of work.")]
    async with OpenAIStub(replies) as stub:
        settings = Settings.load(
            data_dir=tmp_path,
            model={"provider": "openai", "base_url": stub.base_url, "model": "stub-gpt", "max_retries": 0,
                   "max_output_tokens": 4},
            chain={"rpc_url": world.anvil.url},
            plugins=False,
        )
        async with Agent.open(settings, environ={}) as agent:
            events = [e async for e in agent.stream("t", "what is gas?", user_address=alice.address)]
            end = events[-1]
            assert end["type"] == "message_end" and end["finish_reason"] == "length"
            assert stub.requests[0].body.get("max_completion_tokens", stub.requests[0].body.get("max_tokens")) == 4
            more = [e async for e in agent.continue_message("t", end["message_id"])]
            assert [e["type"] for e in more if e["type"] != "token"] == ["status", "message_end"]
            assert {e["message_id"] for e in more if e["type"] == "token"} == {end["message_id"]}
            assert more[-1]["finish_reason"] == "stop"
            sent = stub.requests[1].body["messages"]
            assert sent[-2] == {"role": "assistant", "content": "Gas is the fee"}
            assert sent[-1] == {"role": "user", "content": CONTINUE_PROMPT}
            [answer] = [m for m in await agent.messages("t") if isinstance(m, AIMessage)]
            assert answer.content == "Gas is the fee paid per unit of work."
            with pytest.raises(InvalidInput):
                async for _ in agent.continue_message("t", end["message_id"]):
                    pass


def test_the_output_limit_is_a_model_setting() -> None:
    planner = build_chat_model(Settings.load(model={"max_output_tokens": 3}).model)
    assert isinstance(planner, OfflinePlanner) and planner.max_output_tokens == 3


async def test_the_planner_cuts_and_continues_by_itself() -> None:
    planner = OfflinePlanner(max_output_tokens=2)
    first = await planner.ainvoke([HumanMessage("hello")])
    assert first.response_metadata["finish_reason"] == "length"
    text = first.content
    for _ in range(40):
        more = await planner.ainvoke([HumanMessage("hello"), AIMessage(text), HumanMessage(CONTINUE_PROMPT)])
        assert isinstance(more.content, str)
        text += more.content
        if more.response_metadata["finish_reason"] == "stop":
            break
    whole = await OfflinePlanner().ainvoke([HumanMessage("hello")])
    assert text == whole.content and whole.response_metadata["finish_reason"] == "stop"
    await asyncio.sleep(0)


async def test_a_stopped_continuation_is_not_continued_again(make_server: Any, anvil: Anvil, alice: DevAccount) -> None:
    model = ScriptedChatModel(replies=["a b c d", " d e f g h i j k l m n o p q r s t"], max_output_tokens=3,
                              token_delay=0.05)
    server = await make_server(model=model)
    async with client_for(server, alice) as client:
        session = await client.join()
        end = (await session.turn("letters"))[-1]
        assert isinstance(end, MessageEnd) and end.finish_reason == "length"
        await session.continue_message(end.message_id)
        async for event in session.events():
            if isinstance(event, Token):
                break
        await session.abort()
        stopped = (await session.until_message_end())[-1]
        assert isinstance(stopped, MessageEnd) and stopped.finish_reason == "aborted"
        with pytest.raises(InvalidInput, match="ended \\(aborted\\)"):
            await session.continue_message(end.message_id)
        [answer] = [m for m in (await client.get_chat(session.chat_id))["messages"] if m["role"] == "assistant"]
        assert answer["content"].startswith("a b c d") and answer["finish_reason"] == "aborted"
