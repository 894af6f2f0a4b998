"""Malformed input never goes unanswered and never takes the server down: Socket.IO and HTTP sweeps."""

from __future__ import annotations

from typing import Any

import aiohttp
from conftest import sign_in
from server_harness import Http, SioClient, assert_error

from lunark.chain.anvil import Anvil, DevAccount
from lunark.protocol import CLIENT_EVENTS, MAX_CONTENT_CHARS, MAX_DECISIONS, ErrorCode

PROTOCOL_CODES = {code.value for code in ErrorCode}

BAD_IDS = ["", "../../etc/passwd", "chat id", "chat\n1", "<script>", "chät", "x" * 129, "a/b", "%00", "chat;drop"]


def valid_payloads(chat_id: str) -> dict[str, dict[str, Any]]:
    return {
        "join_chat": {"chat_id": chat_id, "last_seq": 0},
        "send_message": {"chat_id": chat_id, "content": "hello", "client_message_id": "m1"},
        "resume_decisions": {"chat_id": chat_id, "approval_id": "apr_1", "decisions": [{"type": "approve"}]},
        "abort": {"chat_id": chat_id},
        "wallet_changed": {"chat_id": chat_id, "chain_id": 31337},
        "continue_message": {"chat_id": chat_id, "message_id": "msg_x"},
        "call_tool": {"chat_id": chat_id, "name": "get_balance", "args": {}},
    }


def wrong_types(event: str, valid: dict[str, Any]) -> list[Any]:
    """The valid payload with each field in turn given values of the wrong JSON type."""
    out: list[Any] = []
    for field, value in valid.items():
        # join_chat's fields are optional: null is a valid value there.
        candidates: list[Any] = [True, 1.5, [value], {"v": value}] + ([] if event == "join_chat" else [None])
        candidates += [str(value)] if isinstance(value, int) else [7]
        out += [{**valid, field: bad} for bad in candidates]
    return out


def malformed(event: str, chat_id: str) -> list[Any]:
    valid = valid_payloads(chat_id)[event]
    cases: list[Any] = [
        "a string",
        "",
        ["a", "list"],
        [valid],
        42,
        True,
        b"\x00\x01binary",
        {**valid, "unknown_field": 1},
        {**valid, "__proto__": {"admin": True}},
        {**valid, "padding": "x" * 100_000},  # a 100 KB payload
        *wrong_types(event, valid),
        *[{**valid, "chat_id": bad} for bad in BAD_IDS],
    ]
    if event != "join_chat":  # join_chat with no payload (or {}) makes a new chat: valid
        cases += [None, {}]
        cases += [{k: v for k, v in valid.items() if k != field} for field in valid]  # each field missing
    if event == "join_chat":
        cases += [{"last_seq": -1}, {"chat_id": chat_id, "last_seq": -5}]
    if event == "send_message":
        cases += [
            {**valid, "content": "x" * (MAX_CONTENT_CHARS + 1)},
            {**valid, "content": "x" * 100_000},
            {**valid, "content": ""},
            *[{**valid, "client_message_id": bad} for bad in BAD_IDS],
        ]
    if event == "resume_decisions":
        cases += [
            {**valid, "decisions": "approve"},
            {**valid, "decisions": {"type": "approve"}},
            {**valid, "decisions": []},
            {**valid, "decisions": [{"type": "approve"}] * (MAX_DECISIONS + 1)},
            {**valid, "decisions": [{"type": "maybe"}]},
            {**valid, "decisions": [{}]},
            {**valid, "decisions": ["approve"]},
            {**valid, "decisions": [{"type": "approve", "tx_hash": "0x1234"}]},
            {**valid, "decisions": [{"type": "approve", "signed_tx": "not hex"}]},
            {**valid, "decisions": [{"type": "edit"}]},
            {**valid, "decisions": [{"type": "reject", "message": "x" * 100_000}]},
            *[{**valid, "approval_id": bad} for bad in BAD_IDS],
        ]
    if event == "wallet_changed":
        cases += [{**valid, "chain_id": bad} for bad in (0, -1, "0x7a69", 2**300)]
    if event == "continue_message":
        cases += [{**valid, "message_id": bad} for bad in BAD_IDS]
    if event == "call_tool":
        cases += [{**valid, "name": "no_such_tool"}, {**valid, "name": "x" * 65},
                  {**valid, "args": {"address": 5}}, {**valid, "args": {"unknown": "x"}}]
    return cases


async def test_malformed_socket_events_each_get_an_error_ack(
    make_server: Any, anvil: Anvil, alice: DevAccount, mallory: DevAccount
) -> None:
    server = await make_server()
    async with SioClient(server, await sign_in(server, mallory)) as sio:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        answered = 0
        for event in CLIENT_EVENTS:
            for payload in malformed(event, chat_id):
                ack = await sio.call(event, payload, timeout=5)
                error = assert_error(ack, "invalid_input")
                assert len(error["message"]) < 2_000, "errors do not echo huge payloads back"
                answered += 1
            # Several arguments instead of one payload object.
            assert_error(await sio.call(event, (valid_payloads(chat_id)[event], "extra"), timeout=5), "invalid_input")
        for name in ("no_such_event", "JOIN_CHAT", "on_join_chat", "__init__", "trigger_event", "x" * 500):
            assert_error(await sio.call(name, {"chat_id": chat_id}, timeout=5), "invalid_input")
        # Reserved names sent as events are refused too; "connect" must not re-authenticate the socket.
        other_token = await sign_in(server, alice)
        for name, args in (("connect", ({}, {"token": other_token})), ("connect", None), ("disconnect", "x")):
            assert_error(await sio.call(name, args, timeout=5), "invalid_input")
        assert sio.sio.connected
        assert (await sio.call("join_chat", {"chat_id": chat_id}))["chat_id"] == chat_id, "still mallory's socket"
        assert answered > 200

        # Well-formed payloads that the chat's state refuses get their own protocol codes.
        valid = valid_payloads(chat_id)
        assert_error(await sio.call("resume_decisions", valid["resume_decisions"]), "no_pending_approval")
        assert await sio.call("abort", valid["abort"]) == {"ok": True}
        assert sio.sio.connected, "the sweep did not cost the client its connection"
        assert not [e for e in sio.events if e["type"] == "error"], sio.events

        # join_chat without a payload is valid: it makes a new chat.
        for payload in (None, {}):
            ack = await sio.call("join_chat", payload)
            assert ack["last_seq"] == 0 and ack["chat_id"] != chat_id

    await assert_still_serving(server, alice)


async def test_malformed_http_requests_get_json_errors(
    make_server: Any, anvil: Anvil, alice: DevAccount, mallory: DevAccount
) -> None:
    server = await make_server()
    token = await sign_in(server, mallory)
    async with Http(server) as http:
        status, created = await http.post("/api/chats", token)
        assert status == 201
        chat = f"/api/chats/{created['chat_id']}"
        json_body = {"Content-Type": "application/json"}
        huge = b'{"content": "' + b"x" * (1024 * 1024 + 10) + b'", "client_message_id": "m1"}'
        for path in ("/api/chats", chat + "/messages", chat + "/decisions", chat + "/wallet"):
            for body in (b"{not json", b"\xff\xfe", b"[1, 2]", b'"text"', b"null", b"17", huge):
                status, answer = await http.post(path, token, data=body, headers=json_body)
                assert 400 <= status < 500, (path, body[:20], status, answer)
                assert answer["error"]["code"] == "invalid_input", answer
        cases: list[tuple[str, str, Any]] = [
            ("POST", "/api/chats", {"chain_id": "31337"}),
            ("POST", "/api/chats", {"chain_id": 999_999}),
            ("POST", chat + "/messages", {"content": "x" * (MAX_CONTENT_CHARS + 1), "client_message_id": "m1"}),
            ("POST", chat + "/messages", {"content": "hi", "client_message_id": "bad id"}),
            ("POST", chat + "/messages", {"content": "hi"}),
            ("POST", chat + "/decisions", {"approval_id": "apr_1", "decisions": []}),
            ("POST", chat + "/decisions", {"approval_id": "apr_1", "decisions": "approve"}),
            ("POST", chat + "/wallet", {"chain_id": -1}),
            ("GET", "/api/chats/bad%20id", None),
            ("GET", "/api/chats/" + "x" * 200, None),
            ("GET", chat + "/events?last_seq=-4", None),
        ]
        for method, path, body in cases:
            status, answer = await http.request(method, path, token, json=body)
            assert status == 400 and answer["error"]["code"] == "invalid_input", (method, path, status, answer)
        status, answer = await http.get("/api/nowhere", token)
        assert status == 404 and answer["error"]["code"] == "not_found"
        status, answer = await http.request("DELETE", "/api/chats", token)
        assert status == 405 and answer["error"]["code"] == "invalid_input"

    await assert_still_serving(server, alice)


async def test_a_socket_payload_over_the_size_limit_does_not_hurt_others(
    make_server: Any, anvil: Anvil, alice: DevAccount, mallory: DevAccount
) -> None:
    server = await make_server()
    sio = SioClient(server, await sign_in(server, mallory))
    await sio.connect()
    chat_id = (await sio.call("join_chat", {}))["chat_id"]
    try:
        # Over max_http_buffer_size (1 MB) the server drops the connection: there is no ack to send.
        await sio.sio.emit("send_message", {"chat_id": chat_id, "content": "x" * (2 * 1024 * 1024),
                                            "client_message_id": "big"})
    finally:
        await sio.close()
    await assert_still_serving(server, alice)


async def assert_still_serving(server: Any, account: DevAccount) -> None:
    """/healthz is 200 and another user's chat works end to end."""
    async with aiohttp.ClientSession() as session, session.get(server.url + "/healthz") as response:
        assert response.status == 200
        health = await response.json()
        assert health["ok"] is True and health["database"] is True and health["chain"]["ok"] is True
    async with SioClient(server, await sign_in(server, account)) as sio:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        await sio.call("send_message", {"chat_id": chat_id, "content": "what's my balance", "client_message_id": "ok"})
        end = await sio.wait_event("message_end", chat_id=chat_id)
        assert end["finish_reason"] == "stop"
        assert [e["seq"] for e in sio.chat_events(chat_id)] == list(range(1, end["seq"] + 1))
