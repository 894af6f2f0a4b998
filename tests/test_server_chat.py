"""Chats over a real server: streamed answers, a wallet-signed transfer, rejection, busy, idempotency, abort."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import pytest
from conftest import sign_in
from langchain_core.messages import AIMessage, ToolMessage
from server_harness import Http, SioClient, assert_contiguous, assert_error
from wallet import native_balance, wallet_send

from lunark.chain.anvil import Anvil, DevAccount
from lunark.models.scripted import ScriptedChatModel

ETH = 10**18
WALLET_EVENTS = {"pending_approval", "network_switch", "tx_update"}


def long_reply(words: int) -> str:
    return " ".join(f"word{i}" for i in range(words))


def text_of(events: list[dict[str, Any]], message_id: str) -> str:
    return "".join(e["text"] for e in events if e["type"] == "token" and e["message_id"] == message_id)


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_balance_question_streams_and_is_persisted(
    make_server: Any, anvil: Anvil, alice: DevAccount, transport: str
) -> None:
    server = await make_server()
    token = await sign_in(server, alice)
    async with SioClient(server, token, transport=transport) as sio, Http(server) as http:
        join = await sio.call("join_chat", {})
        chat_id = join["chat_id"]
        ack = await sio.call("send_message", {"chat_id": chat_id, "content": "what's my balance",
                                              "client_message_id": "q1"})
        user_message_id = ack["message_id"]
        end = await sio.wait_event("message_end", chat_id=chat_id)
        assert end["finish_reason"] == "stop"
        assert end["usage"]["output_tokens"] > 0

        events = [e for e in sio.chat_events(chat_id) if e["type"] != "status"]
        assert_contiguous(sio.seqs(chat_id))
        types = [e["type"] for e in events]
        assert types[:4] == ["message_start", "message_start", "tool_call", "tool_result"], types
        assert set(types[4:-1]) == {"token"} and types[-1] == "message_end", types
        user, assistant, call, result = events[:4]
        assert user["role"] == "user" and user["content"] == "what's my balance"
        assert user["message_id"] == user_message_id
        assert assistant["role"] == "assistant" and "content" not in assistant
        assistant_id = assistant["message_id"]
        assert call["name"] == "get_balance" and call["status"] == "running" and call["message_id"] == assistant_id
        assert result["call_id"] == call["call_id"] and result["status"] == "success"
        assert Decimal(result["result"]["amount"]) == Decimal(native_balance(anvil, alice.address)).scaleb(-18)
        assert end["message_id"] == assistant_id
        answer = text_of(events, assistant_id)
        assert "10,000 ETH" in answer
        assert all(e["chat_id"] == chat_id and isinstance(e["ts"], float) for e in events)

        status, detail = await http.get(f"/api/chats/{chat_id}", token)
        assert status == 200
        assert [(m["role"], m["message_id"]) for m in detail["messages"]] == [
            ("user", user_message_id), ("assistant", assistant_id)
        ]
        assert detail["messages"][0]["content"] == "what's my balance"
        assert detail["messages"][1]["content"] == answer and detail["messages"][1]["finish_reason"] == "stop"
        assert detail["last_seq"] == sio.seqs(chat_id)[-1]
        assert detail["transactions"] == [] and "pending_approval" not in detail
        status, chats = await http.get("/api/chats", token)
        assert [c["chat_id"] for c in chats["chats"]] == [chat_id]
        assert chats["chats"][0]["title"] == "what's my balance"


async def test_transfer_signed_by_the_wallet_is_confirmed_and_seen_in_the_user_room(
    make_server: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    server = await make_server()  # no local signer: only the user's wallet signs
    token = await sign_in(server, alice)
    bob_before = native_balance(anvil, bob.address)
    async with SioClient(server, token) as chat, SioClient(server, token) as wallet, Http(server) as http:
        chat_id = (await chat.call("join_chat", {}))["chat_id"]
        await chat.call("send_message", {"chat_id": chat_id, "content": f"send 0.25 ETH to {bob.address}",
                                         "client_message_id": "t1"})
        pending = await chat.wait_event("pending_approval", chat_id=chat_id)
        end = await chat.wait_event("message_end", chat_id=chat_id)
        assert end["finish_reason"] == "awaiting_approval"
        assert (await wallet.wait_event("pending_approval", chat_id=chat_id))["seq"] == pending["seq"]
        [request] = pending["action_requests"]
        assert request["name"] == "transfer" and "0.25 ETH" in request["summary"]
        assert request["tx"]["from"] == alice.address and request["tx"]["to"] == bob.address
        assert int(request["tx"]["value"], 16) == ETH // 4
        assert native_balance(anvil, bob.address) == bob_before, "nothing moves before approval"

        tx_hash = wallet_send(anvil, request["tx"], alice.private_key)
        mark = chat.mark()
        ack = await chat.call("resume_decisions", {"chat_id": chat_id, "approval_id": pending["approval_id"],
                                                   "decisions": [{"type": "approve", "tx_hash": tx_hash}]})
        assert ack == {"ok": True}
        confirmed = await chat.wait_event("tx_update", chat_id=chat_id, status="confirmed", after=mark)
        in_user_room = await wallet.wait_event("tx_update", chat_id=chat_id, status="confirmed")
        assert confirmed["seq"] == in_user_room["seq"]
        assert confirmed["tx_hash"].lower() == tx_hash.lower() and confirmed["call_id"] == request["call_id"]
        assert confirmed["chain_id"] == 31337 and confirmed["confirmations"] >= 1
        end = await chat.wait_event("message_end", chat_id=chat_id, after=mark)
        assert end["finish_reason"] == "stop"

        assert native_balance(anvil, bob.address) - bob_before == ETH // 4
        resolved = chat.of("approval_resolved", chat_id=chat_id)
        assert [(r["approval_id"], r["by"]) for r in resolved] == [(pending["approval_id"], "user")]
        [result] = chat.of("tool_result", chat_id=chat_id, after=mark)
        assert result["status"] == "success"
        assert "confirmed" in text_of(chat.events, end["message_id"]).lower()
        assert_contiguous(chat.seqs(chat_id))

        # The second socket was never in the chat room: it got the wallet events and nothing else.
        assert {e["type"] for e in wallet.events} <= WALLET_EVENTS
        assert [e["status"] for e in wallet.of("tx_update")] == [e["status"] for e in chat.of("tx_update")]

        status, detail = await http.get(f"/api/chats/{chat_id}", token)
        assert status == 200 and "pending_approval" not in detail
        [tx] = detail["transactions"]
        assert tx["tx_hash"].lower() == tx_hash.lower() and tx["status"] == "confirmed"
        assert tx["call_id"] == request["call_id"] and tx["chain_id"] == 31337
        history = [h["status"] for h in tx["history"]]
        assert history[-1] == "confirmed" and history == [e["status"] for e in chat.of("tx_update")]
        assert [m["role"] for m in detail["messages"]] == ["user", "assistant", "assistant"]
        assert [m["finish_reason"] for m in detail["messages"][1:]] == ["awaiting_approval", "stop"]


async def test_rejection_moves_nothing_and_is_explained(
    make_server: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    server = await make_server(signer={"local": "anvil"})
    token = await sign_in(server, alice)
    bob_before = native_balance(anvil, bob.address)
    async with SioClient(server, token) as sio, Http(server) as http:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        await sio.call("send_message", {"chat_id": chat_id, "content": f"send 2 ETH to {bob.address}",
                                        "client_message_id": "r1"})
        pending = await sio.wait_event("pending_approval", chat_id=chat_id)
        await sio.wait_event("message_end", chat_id=chat_id, finish_reason="awaiting_approval")
        mark = sio.mark()
        ack = await sio.call("resume_decisions", {"chat_id": chat_id, "approval_id": pending["approval_id"],
                                                  "decisions": [{"type": "reject", "message": "wrong friend"}]})
        assert ack == {"ok": True}
        end = await sio.wait_event("message_end", chat_id=chat_id, after=mark)
        assert end["finish_reason"] == "stop"
        resolved = await sio.wait_event("approval_resolved", chat_id=chat_id)
        assert resolved["by"] == "user" and resolved["decisions"][0]["type"] == "reject"
        [result] = sio.of("tool_result", chat_id=chat_id, after=mark)
        assert result["status"] == "rejected" and result["call_id"] == pending["action_requests"][0]["call_id"]
        assert not sio.of("tx_update")
        answer = text_of(sio.events, end["message_id"])
        assert "wrong friend" in answer and "not" in answer.lower()
        assert native_balance(anvil, bob.address) == bob_before
        _, detail = await http.get(f"/api/chats/{chat_id}", token)
        assert detail["transactions"] == [] and "pending_approval" not in detail
        assert_error(
            await sio.call("resume_decisions", {"chat_id": chat_id, "approval_id": pending["approval_id"],
                                                "decisions": [{"type": "approve"}]}),
            "already_decided",
        )
        assert native_balance(anvil, bob.address) == bob_before


async def test_busy_while_a_turn_runs_and_client_message_id_is_idempotent(
    make_server: Any, alice: DevAccount
) -> None:
    model = ScriptedChatModel(replies=[long_reply(1500), "Second answer."], token_delay=0.002)  # ~3 s: still running
    server = await make_server(model=model, server={"flush_interval_ms": 0})
    token = await sign_in(server, alice)
    async with SioClient(server, token) as sio, Http(server) as http:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        first = {"chat_id": chat_id, "content": "tell me a long story", "client_message_id": "same-id"}
        message_id = (await sio.call("send_message", first))["message_id"]
        await sio.wait_event("token", chat_id=chat_id)

        busy = await sio.call("send_message", {"chat_id": chat_id, "content": "and another",
                                               "client_message_id": "other-id"})
        assert_error(busy, "busy")
        # A retry of the same message (say, after a lost ack) is that message, not busy.
        assert await sio.call("send_message", first) == {"message_id": message_id}
        status, body = await http.post(f"/api/chats/{chat_id}/messages", token,
                                       json={"content": "x", "client_message_id": "third-id"})
        assert status == 409 and body["error"]["code"] == "busy"

        end = await sio.wait_event("message_end", chat_id=chat_id, timeout=30)
        assert end["finish_reason"] == "stop"
        last = sio.seqs(chat_id)[-1]
        assert await sio.call("send_message", first) == {"message_id": message_id}
        status, body = await http.post(f"/api/chats/{chat_id}/messages", token,
                                       json={"content": "tell me a long story", "client_message_id": "same-id"})
        assert status == 202 and body == {"message_id": message_id}
        await asyncio.sleep(0.2)
        assert sio.seqs(chat_id)[-1] == last, "a repeated client_message_id starts no turn"
        assert len(model.calls) == 1

        mark = sio.mark()
        second = await sio.call("send_message", {"chat_id": chat_id, "content": "and another",
                                                 "client_message_id": "other-id"})
        assert second["message_id"] != message_id
        end = await sio.wait_event("message_end", chat_id=chat_id, after=mark)
        assert text_of(sio.events, end["message_id"]) == "Second answer."
        _, detail = await http.get(f"/api/chats/{chat_id}", token)
        users = [m for m in detail["messages"] if m["role"] == "user"]
        assert [(m["message_id"], m["content"]) for m in users] == [
            (message_id, "tell me a long story"), (second["message_id"], "and another")
        ]
        assert_contiguous(sio.seqs(chat_id))


async def test_a_message_while_an_approval_waits_is_busy_and_not_stored_when_so_configured(
    make_server: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    server = await make_server(signer={"local": "anvil"}, approvals={"on_new_message": "busy"})
    token = await sign_in(server, alice)
    async with SioClient(server, token) as sio, Http(server) as http:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        await sio.call("send_message", {"chat_id": chat_id, "content": f"send 1 ETH to {bob.address}",
                                        "client_message_id": "p1"})
        pending = await sio.wait_event("pending_approval", chat_id=chat_id)
        await sio.wait_event("message_end", chat_id=chat_id)
        hello = {"chat_id": chat_id, "content": "hello", "client_message_id": "p2"}
        error = assert_error(await sio.call("send_message", hello), "busy")
        assert error["approval_id"] == pending["approval_id"]
        _, detail = await http.get(f"/api/chats/{chat_id}", token)
        assert [m["content"] for m in detail["messages"] if m["role"] == "user"] == [f"send 1 ETH to {bob.address}"]

        mark = sio.mark()
        await sio.call("resume_decisions", {"chat_id": chat_id, "approval_id": pending["approval_id"],
                                            "decisions": [{"type": "reject"}]})
        await sio.wait_event("message_end", chat_id=chat_id, after=mark)
        # The refused message was not kept: sending it again (same id) now runs a turn.
        mark = sio.mark()
        ack = await sio.call("send_message", hello)
        start = await sio.wait_event("message_start", chat_id=chat_id, after=mark, role="user")
        assert start["message_id"] == ack["message_id"] and start["content"] == "hello"
        end = await sio.wait_event("message_end", chat_id=chat_id, after=mark)
        assert end["finish_reason"] == "stop"


async def test_a_message_while_an_approval_waits_supersedes_it(
    make_server: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    server = await make_server(signer={"local": "anvil"})
    token = await sign_in(server, alice)
    bob_before = native_balance(anvil, bob.address)
    async with SioClient(server, token) as sio, Http(server) as http:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        await sio.call("send_message", {"chat_id": chat_id, "content": f"send 1 ETH to {bob.address}",
                                        "client_message_id": "s1"})
        pending = await sio.wait_event("pending_approval", chat_id=chat_id)
        await sio.wait_event("message_end", chat_id=chat_id)
        mark = sio.mark()
        ack = await sio.call("send_message", {"chat_id": chat_id, "content": "what's my balance",
                                              "client_message_id": "s2"})
        assert "message_id" in ack, ack
        resolved = await sio.wait_event("approval_resolved", chat_id=chat_id, after=mark)
        assert resolved["approval_id"] == pending["approval_id"] and resolved["by"] == "superseded"
        # Set aside, not rejected by the user (issue 24): a status of its own.
        [aside] = [e for e in sio.of("tool_result", chat_id=chat_id, after=mark) if e["status"] != "success"]
        assert aside["status"] == "superseded" and "new message" in aside["result"]["message"]
        start = await sio.wait_event("message_start", chat_id=chat_id, after=mark, role="user")
        assert sio.events.index(start) > sio.events.index(resolved), "the rejection comes first, then the message"
        end = await sio.wait_until(
            lambda e: e["type"] == "message_end" and sio.events.index(e) > sio.events.index(start),
            what="the new message's answer",
        )
        assert end["finish_reason"] == "stop"
        answer = "".join(e["text"] for e in sio.events[sio.events.index(start):] if e["type"] == "token")
        assert "balance" in answer.lower(), answer
        # The approval is gone for good: deciding it now answers already_decided.
        late = {"chat_id": chat_id, "approval_id": pending["approval_id"], "decisions": [{"type": "approve"}]}
        assert_error(await sio.call("resume_decisions", late), "already_decided")
        # Over HTTP too.
        await sio.call("send_message", {"chat_id": chat_id, "content": f"send 1 ETH to {bob.address}",
                                        "client_message_id": "s3"})
        again = await sio.wait_event("pending_approval", chat_id=chat_id, after=sio.events.index(end))
        await sio.wait_until(lambda e: e["type"] == "message_end" and e.get("finish_reason") == "awaiting_approval"
                             and sio.events.index(e) > sio.events.index(again), what="the turn that asked")
        status, body = await http.post(f"/api/chats/{chat_id}/messages", token,
                                       json={"content": "never mind", "client_message_id": "s4"})
        assert status in (200, 201, 202), body
        await sio.wait_event("approval_resolved", chat_id=chat_id, approval_id=again["approval_id"], by="superseded")
    assert native_balance(anvil, bob.address) == bob_before


async def test_abort_stops_the_stream_promptly_and_the_chat_goes_on(make_server: Any, alice: DevAccount) -> None:
    model = ScriptedChatModel(replies=[long_reply(2000), "Short answer."], token_delay=0.001)
    server = await make_server(model=model, server={"flush_interval_ms": 0})
    token = await sign_in(server, alice)
    async with SioClient(server, token) as sio, Http(server) as http:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        await sio.call("send_message", {"chat_id": chat_id, "content": "go on and on", "client_message_id": "a1"})
        start = await sio.wait_event("message_start", chat_id=chat_id, role="assistant")
        await sio.wait_until(lambda e: e["type"] == "token" and len(sio.of("token")) >= 20, what="20 tokens")
        asked = time.monotonic()
        assert await sio.call("abort", {"chat_id": chat_id}) == {"ok": True}
        end = await sio.wait_event("message_end", chat_id=chat_id, timeout=2)
        assert time.monotonic() - asked < 1.0, "the turn stops within a moment"
        assert end["finish_reason"] == "aborted" and end["message_id"] == start["message_id"]
        streamed = text_of(sio.events, start["message_id"])
        assert 0 < len(streamed.split()) < 2000, "it stopped mid-answer"
        await asyncio.sleep(0.3)
        assert sio.chat_events(chat_id)[-1]["seq"] == end["seq"], "nothing of the aborted turn after message_end"

        mark = sio.mark()
        ack = await sio.call("send_message", {"chat_id": chat_id, "content": "in short?", "client_message_id": "a2"})
        assert "message_id" in ack, ack
        end = await sio.wait_event("message_end", chat_id=chat_id, after=mark)
        assert end["finish_reason"] == "stop" and text_of(sio.events, end["message_id"]) == "Short answer."
        assert_contiguous(sio.seqs(chat_id))
        # What the model saw next: both questions, and no half-finished assistant turn or tool call.
        last_call = model.calls[-1]
        assert [m.content for m in last_call if m.type == "human"] == ["go on and on", "in short?"]
        assert not any(isinstance(m, AIMessage) and m.tool_calls for m in last_call)
        assert not any(isinstance(m, ToolMessage) for m in last_call)

        _, detail = await http.get(f"/api/chats/{chat_id}", token)
        assistant = [m for m in detail["messages"] if m["role"] == "assistant"]
        assert [m["finish_reason"] for m in assistant] == ["aborted", "stop"]
        assert assistant[0]["content"] == streamed
        # Abort with nothing running is fine, over HTTP too.
        assert await sio.call("abort", {"chat_id": chat_id}) == {"ok": True}
        assert await http.post(f"/api/chats/{chat_id}/abort", token) == (200, {"ok": True})
