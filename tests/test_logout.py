"""Logout on one ``lunark serve`` process on SQLite: every socket and SSE stream of the ended session
closes, through HTTP, the SDK and the terminal chat. (Across processes: tests/test_cluster.py.)"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import aiohttp
import pytest
from chat_process import LUNARK, PROMPT, ChatProcess
from conftest import sign_in
from server_harness import EventStream, Http, SioClient, assert_error, assert_http_error

from lunark.chain.anvil import Anvil, DevAccount
from lunark.client.sdk import LunarkClient
from lunark.errors import Unauthorized


async def ended_on(sio: SioClient, *, timeout: float = 5.0) -> None:
    """The socket was told its session ended (``error`` ``unauthorized``) and the server closed it."""
    await sio.wait_event("error", code="unauthorized", timeout=timeout)
    for _ in range(int(timeout / 0.05)):
        if not sio.sio.connected:
            break
        await asyncio.sleep(0.05)
    assert not sio.sio.connected, f"the socket of the ended session is still open after {timeout} s"


async def stream_ends(stream: EventStream, *, timeout: float = 5.0) -> None:
    with pytest.raises(EOFError):
        async with asyncio.timeout(timeout):
            while True:
                await stream.next(timeout=timeout)


async def open_stream(http: Http, url: str, chat_id: str, token: str) -> tuple[aiohttp.ClientResponse, EventStream]:
    response = await http.session.get(f"{url}/api/chats/{chat_id}/events", headers={"Authorization": f"Bearer {token}"})
    assert response.status == 200
    return response, EventStream(response)


async def test_logout_closes_every_socket_and_stream_of_the_session_and_the_sdk_ends_them_all(
    serve: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    server = await serve()
    first, second = await sign_in(server, alice), await sign_in(server, alice)
    bobs = await sign_in(server, bob)
    async with Http(server) as http, SioClient(server, first) as tab1, SioClient(server, first) as tab2, \
            SioClient(server, second) as phone, SioClient(server, bobs) as bob_tab:
        chat_id = (await tab1.call("join_chat", {}))["chat_id"]
        await tab2.call("join_chat", {"chat_id": chat_id})
        first_stream, stream1 = await open_stream(http, server.url, chat_id, first)
        second_stream, stream2 = await open_stream(http, server.url, chat_id, second)

        # 1. One session: both of its sockets and its stream end; the account's other session does not.
        status, body = await http.post("/auth/logout", first)
        assert status == 200 and body == {"ok": True, "ended": 1}, body
        for tab in (tab1, tab2):
            await ended_on(tab)
        await stream_ends(stream1)
        first_stream.close()
        assert phone.sio.connected and not phone.of("error")
        assert (await phone.call("join_chat", {"chat_id": chat_id}))["last_seq"] >= 0

        # 2. The SDK, signed in as a third session of the account, ends them all.
        client = LunarkClient(server.url, signer_key=alice.private_key)
        await client.connect()
        await client.join(chat_id)
        assert await client.logout(everywhere=True) == 2  # its own session and the phone's
        await ended_on(phone)
        await stream_ends(stream2)
        second_stream.close()
        for token in (first, second, client.token):
            if token is not None:
                assert_http_error(*await http.get("/api/chats", token), 401, "unauthorized")
        assert client.token is None and not client.connected
        with pytest.raises(Unauthorized):  # signed out: it does not sign in again on its own
            await client.create_chat()

        # Another account is untouched.
        assert bob_tab.sio.connected and not bob_tab.of("error")
        assert "chat_id" in await bob_tab.call("join_chat", {})
        assert_error(await bob_tab.call("join_chat", {"chat_id": chat_id}), "forbidden")


async def test_the_terminal_chat_logs_out_of_every_session(
    make_server: Any, anvil: Anvil, alice: DevAccount
) -> None:
    server = await make_server()
    url = f"http://localhost:{server.port}"
    elsewhere = await sign_in(server, alice)
    async with SioClient(server, elsewhere) as other_device:
        proc = await asyncio.create_subprocess_exec(
            str(LUNARK), "chat", "--url", url, "--key", alice.private_key,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        chat = ChatProcess(proc)
        try:
            await chat.expect(PROMPT)
            await chat.type("/help")
            assert "/logout all" in await chat.expect(PROMPT)
            await chat.type("/logout all")
            said = await chat.expect("sessions ended")
            assert "signed out: 2 sessions ended" in said  # the terminal's and the other device's
            assert await chat.finish() == 0
            assert "[connection lost" not in chat.output and "error" not in chat.output.lower()
        finally:
            print(chat.output)
            await chat.kill()
        await ended_on(other_device)
    async with Http(server) as http:
        assert_http_error(*await http.get("/api/chats", elsewhere), 401, "unauthorized")
