"""Issue 11's findings, each tried as an attacker would against a real ``lunark serve`` process.

Every test says which finding it pins. The crash ones check the process is still alive
(a SIGSEGV would end it) and that it still serves another user afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import aiohttp
from conftest import sign_in, sign_in_message
from eth_account import Account
from eth_account.messages import encode_defunct
from server_harness import (
    EventStream,
    Http,
    RawSocketIO,
    SioClient,
    assert_error,
    assert_http_error,
    deep_json,
)

from lunark.chain.anvil import Anvil, DevAccount

ADMIN = "admin-token-for-tests"


def personal_sign(message: str, account: DevAccount) -> str:
    return "0x" + bytes(Account.sign_message(encode_defunct(text=message), account.private_key).signature).hex()


async def assert_serving(server: Any, account: DevAccount | str) -> None:
    """The process lives, /healthz is ok, and a chat of ``account`` (or token) works end to end."""
    assert server.alive(), f"the server process died:\n{server.log()[-3000:]}"
    async with aiohttp.ClientSession() as session, session.get(server.url + "/healthz") as response:
        assert response.status == 200, await response.text()
    token = account if isinstance(account, str) else await sign_in(server, account)
    async with SioClient(server, token) as sio:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        await sio.call("send_message", {"chat_id": chat_id, "content": "what's my balance", "client_message_id": "ok"})
        end = await sio.wait_event("message_end", chat_id=chat_id)
        assert end["finish_reason"] == "stop"


async def pending_transfer(sio: SioClient, to: str, amount: str = "0.01") -> tuple[str, dict[str, Any]]:
    """A new chat waiting for approval of a transfer; (chat id, pending_approval event)."""
    chat_id = (await sio.call("join_chat", {}))["chat_id"]
    mark = sio.mark()
    ack = await sio.call("send_message", {"chat_id": chat_id, "content": f"send {amount} ETH to {to}",
                                          "client_message_id": "pay"})
    assert "message_id" in ack, ack
    approval = await sio.wait_event("pending_approval", chat_id=chat_id, after=mark)
    await sio.wait_event("message_end", chat_id=chat_id, after=mark, finish_reason="awaiting_approval")
    return chat_id, approval


# -- finding 1: deeply nested JSON killed the process (SIGSEGV) -----------------------------------


async def test_deeply_nested_json_anywhere_is_refused_and_the_process_lives(
    serve: Any, anvil: Anvil, alice: DevAccount, mallory: DevAccount
) -> None:
    server = await serve()
    bomb = deep_json(100_000).encode()
    token = await sign_in(server, mallory)
    async with Http(server) as http:
        chat_id = (await http.post("/api/chats", token))[1]["chat_id"]
        headers = {"Content-Type": "application/json"}
        status, body = await http.post("/auth/verify", data=bomb, headers=headers)
        assert_http_error(status, body, 401, "unauthorized")
        for path in ("/api/chats", f"/api/chats/{chat_id}/messages", f"/api/chats/{chat_id}/decisions",
                     f"/api/chats/{chat_id}/wallet", "/auth/logout"):
            for who in (None, token):  # anonymous: refused before the body; signed in: the body is refused
                status, body = await http.post(path, who, data=bomb, headers=headers)
                assert status in (400, 401), (path, status, body)
                assert body["error"]["code"] in ("invalid_input", "unauthorized"), body
                if who is not None:
                    assert body["error"]["reason"] == "too_deep", body
        assert server.alive()

    # Inside the Socket.IO CONNECT packet, without a token; and as Engine.IO packet data.
    raw = RawSocketIO(server.url)
    await raw.open()
    refused = await raw.connect('{"token":' + deep_json(100_000) + "}")
    assert refused.startswith("4"), refused  # CONNECT_ERROR
    assert json.loads(refused[1:])["code"] == "invalid_input"
    for frame in ("4" + deep_json(100_000), "2" + deep_json(100_000), "3" + deep_json(50_000)):
        await raw.send(frame)
    raw.close()

    # And inside an event of a signed-in socket: an error ack.
    async with SioClient(server, token) as sio:
        chat = (await sio.call("join_chat", {}))["chat_id"]
        raw = RawSocketIO(server.url)
        await raw.open()
        assert (await raw.connect(json.dumps({"token": token}))).startswith("0")
        await raw.send('4217["send_message",{"chat_id":"' + chat + '","content":' + deep_json(100_000) + "}]")
        ack = await raw.recv_message()
        assert ack.startswith("317"), ack
        assert json.loads(ack[3:])[0]["error"]["reason"] == "too_deep"
        raw.close()
    await asyncio.sleep(0.2)
    await assert_serving(server, alice)


# -- finding 2: an odd edit was acked, then wedged the chat ---------------------------------------


async def test_an_edit_with_deep_or_broken_args_is_refused_before_the_ack_and_the_chat_goes_on(
    serve: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount, carol: DevAccount
) -> None:
    server = await serve()
    async with SioClient(server, await sign_in(server, alice)) as sio:
        chat_id, approval = await pending_transfer(sio, bob.address)
        deep: Any = {"to": bob.address, "amount": "0.02"}
        for _ in range(300):
            deep = {"nested": deep}
        for args in (deep, {"to": "\udfff", "amount": "0.02"}, {"to": bob.address, "amount": "1", "\udfff": 1}):
            ack = await sio.call("resume_decisions", {
                "chat_id": chat_id, "approval_id": approval["approval_id"],
                "decisions": [{"type": "edit", "edited_action": {"name": "transfer", "args": args}}],
            })
            assert_error(ack, "invalid_input")
        ack = await sio.call("resume_decisions", {"chat_id": chat_id, "approval_id": approval["approval_id"],
                                                  "decisions": [{"type": "reject", "message": "\udfff"}]})
        assert_error(ack, "invalid_input")
        async with Http(server) as http:
            token = sio.token
            body = ('{"approval_id":"' + approval["approval_id"] + '","decisions":[{"type":"edit","edited_action":'
                    '{"name":"transfer","args":{"to":"\\udfff","amount":"1"}}}]}')
            status, answer = await http.post(f"/api/chats/{chat_id}/decisions", token, data=body.encode(),
                                             headers={"Content-Type": "application/json"})
            assert_http_error(status, answer, 400, "invalid_input")

        # Not wedged: the approval is still decidable, and after it the next message runs.
        mark = sio.mark()
        assert await sio.call("resume_decisions", {
            "chat_id": chat_id, "approval_id": approval["approval_id"], "decisions": [{"type": "reject"}],
        }) == {"ok": True}
        await sio.wait_event("message_end", chat_id=chat_id, after=mark, finish_reason="stop")
        mark = sio.mark()
        assert "message_id" in await sio.call("send_message", {
            "chat_id": chat_id, "content": "what's my balance", "client_message_id": "after"})
        await sio.wait_event("message_end", chat_id=chat_id, after=mark, finish_reason="stop")
    await assert_serving(server, carol)


# -- finding 3: a 4,301-digit integer was a 500 ----------------------------------------------------


async def test_a_huge_integer_in_a_body_is_invalid_input_not_internal(
    serve: Any, anvil: Anvil, alice: DevAccount
) -> None:
    server = await serve()
    token = await sign_in(server, alice)
    huge = "9" * 5000
    async with Http(server) as http:
        headers = {"Content-Type": "application/json"}
        status, body = await http.post("/api/chats", token, data=f'{{"chain_id": {huge}}}', headers=headers)
        assert_http_error(status, body, 400, "invalid_input")
        assert body["error"]["reason"] == "number_too_long"
        status, body = await http.post("/auth/verify", data=f'{{"message": {huge}, "signature": "0x"}}',
                                       headers=headers)
        assert_http_error(status, body, 401, "unauthorized")
        chat_id = (await http.post("/api/chats", token))[1]["chat_id"]
        status, body = await http.post(f"/api/chats/{chat_id}/wallet", token, data=f'{{"chain_id": 1{huge}}}',
                                       headers=headers)
        assert_http_error(status, body, 400, "invalid_input")
    assert "Traceback" not in server.log()
    await assert_serving(server, alice)


# -- finding 4: an out-of-range Last-Event-ID dropped the stream after a 200 ----------------------


async def test_sse_refuses_an_out_of_range_last_event_id_before_the_stream_starts(
    serve: Any, anvil: Anvil, alice: DevAccount
) -> None:
    server = await serve()
    token = await sign_in(server, alice)
    async with Http(server) as http:
        chat_id = (await http.post("/api/chats", token))[1]["chat_id"]
        path = f"/api/chats/{chat_id}/events"
        for bad in ("9223372036854775808", "1" * 5000, "-1", "1e3", " 7 x"):
            status, body = await http.get(path, token, headers={"Last-Event-ID": bad})
            assert_http_error(status, body, 400, "invalid_input")
        # The largest seq there can be is valid: nothing comes after it, and the stream stays open.
        auth = {"Authorization": f"Bearer {token}", "Last-Event-ID": "9223372036854775807"}
        async with http.session.get(server.url + path, headers=auth) as response:
            assert response.status == 200
            assert response.content_type == "text/event-stream"
    await assert_serving(server, alice)


# -- finding 5: an oversize Socket.IO message closed the socket without a word --------------------


async def test_an_oversize_socket_message_gets_an_error_ack(
    serve: Any, anvil: Anvil, alice: DevAccount, mallory: DevAccount
) -> None:
    server = await serve()
    async with SioClient(server, await sign_in(server, mallory)) as sio:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        ack = await sio.call("send_message", {"chat_id": chat_id, "content": "x" * (1024 * 1024 + 1),
                                              "client_message_id": "big"})
        error = assert_error(ack, "invalid_input")
        assert error["reason"] == "too_large" and "1048576" in error["message"]
        assert sio.sio.connected, "answered, not dropped"
        # Without an ack id the answer is an error event.
        await sio.sio.emit("send_message", {"chat_id": chat_id, "content": "y" * (1024 * 1024 + 1)})
        await sio.wait_event("error", code="invalid_input")
        assert (await sio.call("join_chat", {"chat_id": chat_id}))["chat_id"] == chat_id
        # Past four times the limit the transport itself closes (WebSocket 1009); the server lives on.
        raw = RawSocketIO(server.url)
        await raw.open()
        assert (await raw.connect(json.dumps({"token": sio.token}))).startswith("0")
        with contextlib.suppress(ConnectionError):  # the server may reset before it is all sent
            await raw.send("42" + json.dumps(["send_message", {"content": "z" * (5 * 1024 * 1024)}]))
        assert await raw.closed_by_server()
    await assert_serving(server, alice)


# -- finding 6: a client that never reads grew the server's memory --------------------------------


async def test_a_client_that_does_not_read_is_disconnected_and_blind_pongs_do_not_keep_it(
    serve: Any, anvil: Anvil, alice: DevAccount, mallory: DevAccount
) -> None:
    server = await serve(
        env={"LUNARK_ADMIN_TOKEN": ADMIN},
        server={"ping_interval": 1, "ping_timeout": 1},
        limits={"max_outgoing_bytes": 262_144, "rate": {"join": {"per_minute": 6000, "burst": 1000}}},
    )
    token = await sign_in(server, mallory)
    async with SioClient(server, token) as sio:  # a chat with ~250 KB of events
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        for n in range(25):
            mark = sio.mark()
            await sio.call("send_message", {"chat_id": chat_id, "content": f"{n} " + "x" * 7000,
                                            "client_message_id": f"m{n}"})
            await sio.wait_event("message_end", chat_id=chat_id, after=mark)

    async def sockets() -> int:
        async with aiohttp.ClientSession() as session, session.get(
            server.url + "/healthz", headers={"Authorization": f"Bearer {ADMIN}"}
        ) as response:
            return int((await response.json())["connections"]["sockets"])

    before = server.rss_bytes()
    raw = RawSocketIO(server.url, receive_buffer=4096)
    await raw.open()
    assert (await raw.connect(json.dumps({"token": token}))).startswith("0")
    sent, dropped = 0, False
    try:
        for n in range(300):  # never reads: every replay stays queued on the server
            await raw.send(f"42{n}" + json.dumps(["join_chat", {"chat_id": chat_id, "last_seq": 0}]))
            await raw.send("3")  # a blind pong, to keep the connection "alive"
            sent += 1
            await asyncio.sleep(0.01)
        for _ in range(100):  # then only blind pongs, past several ping timeouts
            await raw.send("3")
            await asyncio.sleep(0.1)
            if await sockets() == 0:
                dropped = True  # while this client still holds its end open and pongs
                break
    except (ConnectionError, OSError):
        dropped = True  # the server aborted the connection: what it should do
    finally:
        raw.close()
    assert sent > 0
    assert dropped, "the non-reading socket was kept alive by blind pongs"
    grown = server.rss_bytes() - before
    # Before the fix 300 replays of this chat queued ~75 MB; the queue is now capped at 256 KB.
    assert grown < 40 * 1024 * 1024, f"the server grew by {grown / 2**20:.0f} MiB"
    assert "does not read" in server.log() or "has not read" in server.log()
    await assert_serving(server, alice)


# -- finding 7: sign-in accepted another chain, another origin, a huge statement -----------------


async def test_sign_in_checks_origin_chain_and_size_and_every_failure_is_401(
    serve: Any, anvil: Anvil, alice: DevAccount
) -> None:
    server = await serve()
    async with Http(server) as http:

        async def attempt(**fields: Any) -> tuple[int, Any]:
            nonce = (await http.get("/auth/nonce"))[1]["nonce"]
            uri = fields.pop("uri", server.url)
            statement = fields.pop("statement", None)
            message = sign_in_message(server.domain, uri, alice.address, nonce, **fields)
            if statement is not None:  # past what SiweMessage itself lets anyone build
                message = message.replace("Sign in to Lunark.", statement)
            signature = personal_sign(message, alice)
            return await http.post("/auth/verify", json={"message": message, "signature": signature})

        status, body = await attempt(chain_id=999_999)
        assert_http_error(status, body, 401, "unauthorized")
        assert body["error"]["reason"] == "wrong_chain"
        status, body = await attempt(uri="https://evil.example/login")
        assert_http_error(status, body, 401, "unauthorized")
        assert body["error"]["reason"] == "wrong_uri"
        status, body = await attempt(statement="a" * 900_000)
        assert_http_error(status, body, 401, "unauthorized")
        status, body = await http.post("/auth/verify", data=b"{" + b" " * (1024 * 1024 + 10) + b"}",
                                       headers={"Content-Type": "application/json"})
        assert_http_error(status, body, 401, "unauthorized")
        status, body = await http.post("/auth/verify", data=b"x" * (5 * 1024 * 1024))
        assert status == 401 or status == 413, (status, body)
        # The right chain (any network the server knows) and the server's own origin still work.
        status, body = await attempt(chain_id=31338)
        assert status == 200, body
    assert server.alive()


# -- finding 8: no rate limits; no logout --------------------------------------------------------


async def test_behind_a_trusted_balancer_sign_in_is_limited_per_client_it_names(make_server: Any) -> None:
    """Behind a load balancer every request comes from the balancer: with its address trusted,
    each client has its own sign-in budget, and what a client writes into X-Forwarded-For itself
    changes nothing; without it, the header is ignored altogether."""
    tight = {"rate": {"sign_in": {"per_minute": 1, "burst": 3}}}

    async def statuses(http: Http, forwarded_for: str, count: int) -> list[int]:
        return [(await http.get("/auth/nonce", headers={"X-Forwarded-For": forwarded_for}))[0] for _ in range(count)]

    behind = await make_server(limits=tight, server={"trusted_proxies": ["127.0.0.1", "10.0.0.0/8"]})
    async with Http(behind) as http:
        assert await statuses(http, "203.0.113.7", 4) == [200, 200, 200, 429]
        # A second client is not held back by the first.
        assert await statuses(http, "203.0.113.8", 1) == [200]
        # The first cannot pose as someone else: the balancer appends the address it saw, and only
        # that one (the last that is not a trusted proxy) counts.
        assert await statuses(http, "198.51.100.1, 203.0.113.7", 1) == [429]
        # Through two balancers (10.x appended by the outer one), still the client's budget.
        assert await statuses(http, "203.0.113.8, 10.1.2.3", 3) == [200, 200, 429]
        # No header (the balancer itself, a health check): the balancer's own budget.
        assert await statuses(http, "", 1) == [200]

    direct = await make_server(limits=tight)
    async with Http(direct) as http:
        answers = [await statuses(http, f"203.0.113.{n}", 1) for n in range(4)]
        assert answers == [[200], [200], [200], [429]], "an untrusted X-Forwarded-For must not buy a new budget"


async def test_nonces_and_chat_creation_are_rate_limited(
    serve: Any, anvil: Anvil, alice: DevAccount, mallory: DevAccount
) -> None:
    server = await serve()
    token = await sign_in(server, mallory)
    alice_token = await sign_in(server, alice)
    async with Http(server) as http:
        answers = [await http.get("/auth/nonce") for _ in range(60)]
        limited = [body for status, body in answers if status == 429]
        assert len(limited) >= 25, f"{len(answers) - len(limited)} nonces of 60 issued at once"
        assert limited[0]["error"]["code"] == "rate_limited" and limited[0]["error"]["retry_after"] >= 1
        async with http.session.get(server.url + "/auth/nonce") as response:
            assert response.status == 429 and int(response.headers["Retry-After"]) >= 1
        created = [await http.post("/api/chats", token) for _ in range(60)]
        refused = [body for status, body in created if status == 429]
        assert refused and refused[0]["error"]["code"] == "rate_limited", created[-1]
    async with SioClient(server, token) as sio:
        assert_error(await sio.call("join_chat", {}), "rate_limited")
    await assert_serving(server, alice_token)  # new chats are limited per account: alice's still work


async def test_logout_ends_the_session_and_everywhere_ends_all_of_them(
    serve: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    server = await serve()
    first, second, third = [await sign_in(server, alice) for _ in range(3)]
    other = await sign_in(server, bob)
    async with Http(server) as http, SioClient(server, first) as sio:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        events = await http.session.get(server.url + f"/api/chats/{chat_id}/events",
                                        headers={"Authorization": f"Bearer {first}"})
        assert events.status == 200
        status, body = await http.post("/auth/logout", first)
        assert status == 200 and body == {"ok": True, "ended": 1}, body
        assert_http_error(*await http.get("/api/chats", first), 401, "unauthorized")
        await sio.wait_event("error", code="unauthorized")
        for _ in range(50):
            if not sio.sio.connected:
                break
            await asyncio.sleep(0.1)
        assert not sio.sio.connected, "the socket of the ended session is closed"
        with_stream = EventStream(events)
        try:
            while True:
                await with_stream.next(timeout=5)
        except EOFError:
            pass  # the SSE stream of that session ended too
        events.close()
        assert (await http.get("/api/chats", second))[0] == 200
        status, body = await http.post("/auth/logout", second, json={"everywhere": True})
        assert status == 200 and body["ended"] == 2, body
        for token in (second, third):
            assert_http_error(*await http.get("/api/chats", token), 401, "unauthorized")
        assert (await http.get("/api/chats", other))[0] == 200, "another account's session is untouched"
        assert_http_error(*await http.post("/auth/logout", first), 401, "unauthorized")


# -- finding 9: /healthz showed the RPC's host and error to anyone --------------------------------


async def test_healthz_tells_anonymous_callers_only_ok_per_component(
    serve: Any, anvil: Anvil
) -> None:
    from lunark.chain.anvil import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    server = await serve(env={"LUNARK_ADMIN_TOKEN": ADMIN}, chain={"rpc_url": dead})
    async with aiohttp.ClientSession() as session:
        async with session.get(server.url + "/healthz") as response:
            assert response.status == 503
            text = await response.text()
            brief = json.loads(text)
            workers = brief.pop("workers", None)  # with turn workers: how many, how many are up; no pid
            assert brief == {"ok": False, "database": True, "chain": {"ok": False}}
            assert workers is None or set(workers) == {"count", "ready"}
            assert "127.0.0.1" not in text
        async with session.get(server.url + "/healthz", headers={"Authorization": f"Bearer {ADMIN}"}) as response:
            assert response.status == 503
            detail = await response.json()
            assert detail["chain"]["ok"] is False and dead.split("//")[1] in detail["chain"]["error"]
        async with session.get(server.url + "/healthz", headers={"Authorization": "Bearer guess"}) as response:
            assert response.status == 401
            assert (await response.json())["error"]["code"] == "unauthorized"


# -- finding 10: one high-tip transaction made the next card ask for ~1 ETH of fee -----------------


async def test_the_fee_has_a_ceiling_and_a_costly_fee_is_called_out(
    serve: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount, carol: DevAccount
) -> None:
    # A transaction with a 40,000 gwei tip in the latest block: the node now suggests a huge tip.
    tx = {"from": carol.address, "to": bob.address, "value": "0x1",
          "maxPriorityFeePerGas": hex(40_000 * 10**9), "maxFeePerGas": hex(41_000 * 10**9)}
    anvil.rpc("eth_sendTransaction", [tx])
    ceiling_gwei = 50
    server = await serve(chain={"networks": [{
        "name": "anvil", "rpc_urls": [anvil.url], "max_fee_per_gas_gwei": str(ceiling_gwei),
    }]})
    async with SioClient(server, await sign_in(server, alice)) as sio:
        _, approval = await pending_transfer(sio, bob.address, amount="0.5")
        request = approval["action_requests"][0]
        assert int(request["tx"]["max_fee_per_gas"], 16) <= ceiling_gwei * 10**9
        assert int(request["tx"]["max_priority_fee_per_gas"], 16) <= ceiling_gwei * 10**9
        gas = int(request["tx"]["gas"], 16)
        fee = float(request["summary"].split("network fee at most ")[1].split(" ETH")[0])
        assert fee <= gas * ceiling_gwei / 10**9, request["summary"]
        assert "more than" not in request["summary"]
        # A tiny amount: the worst-case fee is more than 10 % of it, and the card says so.
        _, approval = await pending_transfer(sio, bob.address, amount="0.00001")
        assert "the fee may be more than 10% of the amount" in approval["action_requests"][0]["summary"]
