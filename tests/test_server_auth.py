"""Sign-in with Ethereum over HTTP, tokens on Socket.IO and HTTP, and chat ownership, against a real server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import socketio
from conftest import sign_in, sign_in_message
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils.address import is_checksum_address
from server_harness import Http, SioClient, assert_error, assert_http_error

from lunark.chain.anvil import Anvil, DevAccount


def personal_sign(message: str, account: DevAccount) -> str:
    return "0x" + bytes(Account.sign_message(encode_defunct(text=message), account.private_key).signature).hex()


async def nonce(http: Http) -> str:
    status, body = await http.get("/auth/nonce")
    assert status == 200
    return str(body["nonce"])


async def test_sign_in_gives_a_token_that_opens_http_and_socketio(make_server: Any, alice: DevAccount) -> None:
    server = await make_server()
    async with Http(server) as http:
        message = sign_in_message(server.domain, server.url, alice.address, await nonce(http))
        signature = personal_sign(message, alice)
        status, body = await http.post("/auth/verify", json={"message": message, "signature": signature})
        assert status == 200, body
        assert body["address"] == alice.address and is_checksum_address(body["address"])
        assert datetime.fromisoformat(body["expires_at"]) > datetime.now(UTC) + timedelta(hours=1)
        token = body["token"]
        status, chats = await http.get("/api/chats", token)
        assert status == 200 and chats == {"chats": []}
    async with SioClient(server, token) as sio:
        ack = await sio.call("join_chat", {})
        assert ack["last_seq"] == 0 and ack["network"]["chain_id"] == 31337


async def test_the_nonce_is_single_use(make_server: Any, alice: DevAccount) -> None:
    server = await make_server()
    async with Http(server) as http:
        message = sign_in_message(server.domain, server.url, alice.address, await nonce(http))
        body = {"message": message, "signature": personal_sign(message, alice)}
        status, _ = await http.post("/auth/verify", json=body)
        assert status == 200
        status, again = await http.post("/auth/verify", json=body)
        assert_http_error(status, again, 401, "unauthorized")
        assert again["error"]["reason"] == "bad_nonce"


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("wrong_domain", "wrong_domain"),
        ("unknown_nonce", "bad_nonce"),
        ("expired", "expired"),
        ("issued_long_ago", "expired"),
        ("other_signer", "bad_signature"),
        ("garbage_signature", "bad_signature"),
        ("not_siwe", "malformed_message"),
    ],
)
async def test_sign_in_rejections_are_401(
    make_server: Any, alice: DevAccount, mallory: DevAccount, case: str, reason: str
) -> None:
    server = await make_server()
    async with Http(server) as http:
        fresh = await nonce(http)
        now = datetime.now(UTC)
        signer = alice
        if case == "wrong_domain":
            message = sign_in_message("evil.example.com", "https://evil.example.com", alice.address, fresh)
        elif case == "unknown_nonce":
            message = sign_in_message(server.domain, server.url, alice.address, "neverIssued12345")
        elif case == "expired":
            message = sign_in_message(server.domain, server.url, alice.address, fresh,
                                      issued_at=now - timedelta(minutes=2), expiration_time=now - timedelta(seconds=1))
        elif case == "issued_long_ago":
            message = sign_in_message(server.domain, server.url, alice.address, fresh,
                                      issued_at=now - timedelta(hours=1))
        elif case == "other_signer":  # mallory signs a message that names alice
            message = sign_in_message(server.domain, server.url, alice.address, fresh)
            signer = mallory
        elif case == "not_siwe":
            message = f"Please let me in. Nonce: {fresh}"
        else:
            message = sign_in_message(server.domain, server.url, alice.address, fresh)
        signature = "0x" + "ab" * 65 if case == "garbage_signature" else personal_sign(message, signer)
        status, body = await http.post("/auth/verify", json={"message": message, "signature": signature})
        assert_http_error(status, body, 401, "unauthorized")
        assert body["error"]["reason"] == reason
        assert "token" not in body
        if case in ("wrong_domain", "expired", "other_signer", "garbage_signature"):
            # A refused attempt does not burn the nonce: the real user can still sign in with it.
            good = sign_in_message(server.domain, server.url, alice.address, fresh)
            status, _ = await http.post("/auth/verify", json={"message": good, "signature": personal_sign(good, alice)})
            assert status == 200


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2]",
        b'"a string"',
        b"{}",
        b'{"message": 5, "signature": "0x00"}',
        b'{"message": "hello", "signature": null}',
        b'{"message": ["x"], "signature": {"r": 1}}',
    ],
    ids=["invalid-json", "json-list", "json-string", "empty-object", "message-int", "signature-null", "wrong-types"],
)
async def test_malformed_sign_in_body_is_401(make_server: Any, body: bytes) -> None:
    server = await make_server()
    async with Http(server) as http:
        status, answer = await http.post("/auth/verify", data=body, headers={"Content-Type": "application/json"})
        assert_http_error(status, answer, 401, "unauthorized")


@pytest.mark.parametrize("token", [None, "", "not-a-token", "x" * 5000])
async def test_socket_without_a_valid_token_is_refused(make_server: Any, token: str | None) -> None:
    server = await make_server()
    client = SioClient(server, token)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect()
    [data] = client.connect_errors
    assert data["code"] == "unauthorized", data
    assert isinstance(data["message"], str) and data["message"]
    assert not client.sio.connected


async def test_socket_with_a_non_dict_auth_is_refused(make_server: Any) -> None:
    server = await make_server()
    sio = socketio.AsyncClient(reconnection=False)
    errors: list[Any] = []
    sio.on("connect_error", lambda data: errors.append(data))
    with pytest.raises(socketio.exceptions.ConnectionError):
        await sio.connect(server.url, auth="a-token-not-in-an-object", transports=["websocket"], wait_timeout=10)
    assert errors and errors[0]["code"] == "unauthorized"


async def test_http_endpoints_need_a_bearer_token(make_server: Any, alice: DevAccount) -> None:
    server = await make_server()
    token = await sign_in(server, alice)
    async with Http(server) as http:
        status, created = await http.post("/api/chats", token)
        assert status == 201
        chat = f"/api/chats/{created['chat_id']}"
        endpoints = [
            ("GET", "/api/chats", None),
            ("POST", "/api/chats", None),
            ("GET", chat, None),
            ("POST", chat + "/messages", {"content": "hi", "client_message_id": "m1"}),
            ("POST", chat + "/decisions", {"approval_id": "apr_1", "decisions": [{"type": "approve"}]}),
            ("POST", chat + "/abort", None),
            ("POST", chat + "/wallet", {"chain_id": 31337}),
            ("GET", chat + "/events", None),
        ]
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": token}, {"Authorization": "Basic x"}):
            for method, path, body in endpoints:
                status, answer = await http.request(method, path, json=body, headers=headers)
                assert_http_error(status, answer, 401, "unauthorized")
        status, detail = await http.get(chat, token)
        assert status == 200 and detail["messages"] == [], "nothing happened without a token"


async def test_another_address_is_forbidden_everywhere(
    make_server: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    server = await make_server()
    alice_token, bob_token = await sign_in(server, alice), await sign_in(server, bob)
    async with SioClient(server, alice_token) as mine, SioClient(server, bob_token) as theirs, Http(server) as http:
        chat_id = (await mine.call("join_chat", {}))["chat_id"]
        await mine.call("send_message", {"chat_id": chat_id, "content": "what's my balance", "client_message_id": "a1"})
        await mine.wait_event("message_end", chat_id=chat_id)
        before = await http.get(f"/api/chats/{chat_id}", alice_token)

        attempts: list[tuple[str, dict[str, Any]]] = [
            ("join_chat", {"chat_id": chat_id}),
            ("join_chat", {"chat_id": chat_id, "last_seq": 0}),
            ("send_message", {"chat_id": chat_id, "content": "send 1 ETH to me", "client_message_id": "b1"}),
            ("resume_decisions", {"chat_id": chat_id, "approval_id": "apr_x", "decisions": [{"type": "approve"}]}),
            ("abort", {"chat_id": chat_id}),
            ("wallet_changed", {"chat_id": chat_id, "chain_id": 31338}),
        ]
        for event, payload in attempts:
            assert_error(await theirs.call(event, payload), "forbidden")
            unknown = {**payload, "chat_id": "chat_doesnotexist"}
            assert_error(await theirs.call(event, unknown), "not_found")

        chat = f"/api/chats/{chat_id}"
        requests: list[tuple[str, str, Any]] = [
            ("GET", chat, None),
            ("POST", chat + "/messages", {"content": "hi", "client_message_id": "b2"}),
            ("POST", chat + "/decisions", {"approval_id": "apr_x", "decisions": [{"type": "reject"}]}),
            ("POST", chat + "/abort", None),
            ("POST", chat + "/wallet", {"chain_id": 31338}),
            ("GET", chat + "/events", None),
        ]
        for method, path, body in requests:
            status, answer = await http.request(method, path, bob_token, json=body)
            assert_http_error(status, answer, 403, "forbidden")
            unknown = path.replace(chat_id, "chat_doesnotexist")
            status, answer = await http.request(method, unknown, bob_token, json=body)
            assert_http_error(status, answer, 404, "not_found")

        status, chats = await http.get("/api/chats", bob_token)
        assert status == 200 and chats["chats"] == [], "bob does not see alice's chats"
        assert await http.get(f"/api/chats/{chat_id}", alice_token) == before, "bob changed nothing"
        assert not theirs.chat_events(chat_id), "bob never received an event of alice's chat"
