"""Reconnecting mid-stream: every later event exactly once, in order, then live events; Socket.IO and SSE."""

from __future__ import annotations

from typing import Any

import aiohttp
from conftest import sign_in
from server_harness import EventStream, Http, SioClient, assert_contiguous

from lunark.chain.anvil import DevAccount
from lunark.models.scripted import ScriptedChatModel

WORDS = 1500


def story() -> str:
    return " ".join(f"w{i}" for i in range(WORDS))


def tokens_text(events: list[dict[str, Any]]) -> str:
    return "".join(e["text"] for e in sorted(events, key=lambda e: e["seq"]) if e["type"] == "token")


async def test_socket_reconnect_with_last_seq_gets_every_later_event_once(
    make_server: Any, alice: DevAccount
) -> None:
    # flush_interval 0: one event per token, so the stream is long enough to cut in the middle.
    model = ScriptedChatModel(replies=[story()], token_delay=0.001)  # ~2 s: still running at the reconnect
    server = await make_server(model=model, server={"flush_interval_ms": 0})
    token = await sign_in(server, alice)
    first = SioClient(server, token)
    await first.connect()
    chat_id = (await first.call("join_chat", {}))["chat_id"]
    await first.call("send_message", {"chat_id": chat_id, "content": "a long story", "client_message_id": "s1"})
    await first.wait_until(lambda e: e.get("seq", 0) >= 100, what="100 events")
    await first.close()
    before = first.chat_events(chat_id)
    assert_contiguous([e["seq"] for e in before])
    last_seen = before[-1]["seq"]

    async with SioClient(server, token) as second:
        ack = await second.call("join_chat", {"chat_id": chat_id, "last_seq": last_seen})
        assert ack["chat_id"] == chat_id and ack["last_seq"] >= last_seen
        end = await second.wait_event("message_end", chat_id=chat_id, timeout=30)
        assert end["finish_reason"] == "stop"
        after = second.chat_events(chat_id)
        assert after[0]["seq"] == last_seen + 1, "the replay starts right after last_seq"
        assert_contiguous([e["seq"] for e in after], start=last_seen + 1)
        assert after[-1] is end, "nothing after the end"
        total = end["seq"]
        assert ack["last_seq"] < total, "the stream was still running: live events followed the replay"
        assert sorted(e["seq"] for e in before + after) == list(range(1, total + 1))
        assert tokens_text(before + after) == story()

        # Joining again later from 0 replays the whole log, in order; from the end, nothing.
        async with SioClient(server, token) as third:
            ack = await third.call("join_chat", {"chat_id": chat_id, "last_seq": 0})
            assert ack["last_seq"] == total
            await third.wait_until(lambda e: e.get("seq") == total, what="the whole replay")
            replay = third.chat_events(chat_id)
            assert [e["seq"] for e in replay] == list(range(1, total + 1))
            assert [e["type"] for e in replay] == [e["type"] for e in before + after]
            assert tokens_text(replay) == story()
        async with SioClient(server, token) as fourth:
            ack = await fourth.call("join_chat", {"chat_id": chat_id, "last_seq": total + 1000})
            assert ack["last_seq"] == total
            ack = await fourth.call("join_chat", {"chat_id": chat_id})  # no last_seq: live only
            assert ack["last_seq"] == total
            await fourth.call("abort", {"chat_id": chat_id})  # a round trip after the join's replay
            assert fourth.chat_events(chat_id) == []


async def test_sse_reconnect_with_last_event_id_gets_every_later_event_once(
    make_server: Any, alice: DevAccount
) -> None:
    model = ScriptedChatModel(replies=[story()], token_delay=0.001)  # ~2 s: still running at the reconnect
    server = await make_server(model=model, server={"flush_interval_ms": 0})
    token = await sign_in(server, alice)
    auth = {"Authorization": f"Bearer {token}"}
    async with Http(server) as http, aiohttp.ClientSession() as session:
        status, created = await http.post("/api/chats", token)
        assert status == 201
        chat_id = created["chat_id"]
        url = f"{server.url}/api/chats/{chat_id}/events"

        before: list[dict[str, Any]] = []
        async with session.get(url, headers=auth) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/event-stream")
            status, ack = await http.post(f"/api/chats/{chat_id}/messages", token,
                                          json={"content": "a long story", "client_message_id": "s1"})
            assert status == 202 and "message_id" in ack
            stream = EventStream(response)
            while len(before) < 100:
                event = await stream.next()
                assert event["id"] == str(event["data"]["seq"]) and event["event"] == event["data"]["type"]
                assert event["data"]["chat_id"] == chat_id
                before.append(event["data"])
        last_id = before[-1]["seq"]
        assert [e["seq"] for e in before] == list(range(1, last_id + 1))

        after: list[dict[str, Any]] = []
        async with session.get(url, headers={**auth, "Last-Event-ID": str(last_id)}) as response:
            assert response.status == 200
            stream = EventStream(response)
            while not after or after[-1]["type"] != "message_end":
                event = await stream.next(timeout=30)
                assert event["id"] == str(event["data"]["seq"]) and event["event"] == event["data"]["type"]
                after.append(event["data"])
        assert after[-1]["finish_reason"] == "stop"
        total = after[-1]["seq"]
        assert [e["seq"] for e in after] == list(range(last_id + 1, total + 1)), "exactly once, in order"
        assert tokens_text(before + after) == story()

        status, detail = await http.get(f"/api/chats/{chat_id}", token)
        assert detail["last_seq"] == total
        assert [m["role"] for m in detail["messages"]] == ["user", "assistant"]
        assert detail["messages"][1]["content"] == story()

        # ?last_seq= works like the header (for EventSource, which cannot set headers before its first retry).
        async with session.get(url + f"?last_seq={total - 3}", headers=auth) as response:
            stream = EventStream(response)
            tail = [(await stream.next())["data"]["seq"] for _ in range(3)]
        assert tail == [total - 2, total - 1, total]

        for bad in ("-1", "abc", "1.5"):
            status, body = await http.get(f"/api/chats/{chat_id}/events", token, headers={"Last-Event-ID": bad})
            assert status == 400 and body["error"]["code"] == "invalid_input"


async def test_coalesced_streams_of_several_chats_replay_exactly_once_mid_stream(
    make_server: Any, alice: DevAccount
) -> None:
    # The default flush interval: tokens are coalesced, and flushes without the chat's lock race
    # the replay (which takes it) of a client joining while three chats stream.
    model = ScriptedChatModel(replies=[story()] * 3, token_delay=0.001)
    server = await make_server(model=model)
    token = await sign_in(server, alice)
    async with SioClient(server, token) as watcher:
        chats = [(await watcher.call("join_chat", {}))["chat_id"] for _ in range(3)]
        for n, chat_id in enumerate(chats):
            await watcher.call("send_message", {"chat_id": chat_id, "content": "a story", "client_message_id": f"s{n}"})
        await watcher.wait_until(lambda e: e.get("chat_id") == chats[0] and e.get("seq", 0) >= 20, what="20 events")
        async with SioClient(server, token) as late:
            ack = await late.call("join_chat", {"chat_id": chats[0], "last_seq": 5})
            end = await late.wait_event("message_end", chat_id=chats[0], timeout=30)
            assert ack["last_seq"] < end["seq"], "joined while the chat streamed"
            after = late.chat_events(chats[0])
            assert [e["seq"] for e in after] == list(range(6, end["seq"] + 1)), "exactly once, in order"
        for chat_id in chats:
            end = await watcher.wait_event("message_end", chat_id=chat_id, timeout=30)
            events = watcher.chat_events(chat_id)
            assert [e["seq"] for e in events] == list(range(1, end["seq"] + 1))
            assert tokens_text(events) == story()
            assert len([e for e in events if e["type"] == "token"]) < WORDS, "coalesced"
        assert [e for e in after if e["type"] == "token"] == [
            e for e in watcher.chat_events(chats[0]) if e["type"] == "token" and e["seq"] > 5
        ]
