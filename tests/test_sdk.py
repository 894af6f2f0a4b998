"""The Python SDK against a real server and a real Anvil: sign-in, turns, the wallet flow,
decisions, error acks, exactly-once events, and a dropped connection mid-stream."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from conftest import sign_in
from wallet import native_balance

from lunark.chain.anvil import Anvil, DevAccount
from lunark.client import Disconnected, LunarkClient, sign_and_send
from lunark.errors import AlreadyDecided, Busy, Forbidden, InvalidInput, NotFound, SignerError, Unauthorized
from lunark.models import OfflinePlanner
from lunark.protocol import (
    ApprovalResolved,
    ChatEvent,
    MessageEnd,
    MessageStart,
    PendingApproval,
    Token,
    ToolCall,
    ToolResult,
    TxUpdate,
)

ETH = 10**18


def local_url(server: Any) -> str:
    """The server's URL by the name its SIWE domain uses (``localhost:port``)."""
    return f"http://localhost:{server.port}"


@pytest.fixture
async def server(make_server: Any, anvil: Anvil) -> Any:
    return await make_server()


@contextlib.asynccontextmanager
async def client_for(url: str, account: DevAccount, **options: Any) -> AsyncIterator[LunarkClient]:
    client = LunarkClient(url, signer_key=account.private_key, **options)
    try:
        await client.connect()
        yield client
    finally:
        await client.close()


def text_of(events: list[ChatEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, Token))


def seqs(events: list[ChatEvent]) -> list[int]:
    return [e.seq for e in events if e.seq is not None]


def test_the_public_surface() -> None:
    import lunark.client

    assert set(lunark.client.__all__) == {
        "ERROR_CLASSES", "ChatSession", "Disconnected", "LunarkClient", "error_from_body",
        "rpc_request", "sign_and_send", "sign_and_send_all", "sign_transaction",
    }


async def test_sign_in_returns_the_address_and_the_http_mirror_works(server: Any, alice: DevAccount) -> None:
    client = LunarkClient(local_url(server))
    try:
        assert await client.sign_in(alice.private_key) == alice.address
        assert client.token
        chat_id = await client.create_chat()
        assert [c["chat_id"] for c in await client.list_chats()] == [chat_id]
        detail = await client.get_chat(chat_id)
        assert detail["chat_id"] == chat_id and detail["network"]["chain_id"] == 31337
        await client.connect()
        session = await client.join(chat_id)
        assert session.chat_id == chat_id and session.network["name"] == "anvil"
        assert session.pending_approval is None and session.last_seq == 0
    finally:
        await client.close()


async def test_sign_in_by_ip_falls_back_to_the_servers_localhost_domain(server: Any, alice: DevAccount) -> None:
    # server.url is http://127.0.0.1:port while the server's SIWE domain is localhost:port.
    async with client_for(server.url, alice) as client:
        assert client.address == alice.address
        assert (await client.join()).chat_id


async def test_a_bad_token_is_refused_as_unauthorized(server: Any) -> None:
    client = LunarkClient(local_url(server), token="not-a-token", reconnect=False)
    with pytest.raises(Unauthorized):
        await client.connect()
    await client.close()
    with pytest.raises(Unauthorized):
        await LunarkClient(local_url(server), token="nope").list_chats()


async def test_a_turn_with_the_offline_planner(server: Any, alice: DevAccount) -> None:
    async with client_for(local_url(server), alice) as client:
        session = await client.join()
        events = await session.turn("what's my balance")
        calls = [e for e in events if isinstance(e, ToolCall)]
        assert [c.name for c in calls] == ["get_balance"]
        results = [e for e in events if isinstance(e, ToolResult)]
        assert [r.status for r in results] == ["success"]
        end = events[-1]
        assert isinstance(end, MessageEnd) and end.finish_reason == "stop"
        assert text_of(events).startswith("Your balance") and "ETH" in text_of(events)
        assert seqs(events) == list(range(1, len(events) + 1))
        assert session.last_seq == len(events)


async def test_approve_with_the_wallet_helper_moves_exactly_the_amount(
    server: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    before = native_balance(anvil, bob.address)
    async with client_for(local_url(server), alice) as client:
        session = await client.join()
        events = await session.turn(f"send 0.1 ETH to {bob.address}")
        end = events[-1]
        assert isinstance(end, MessageEnd) and end.finish_reason == "awaiting_approval"
        approval = session.pending_approval
        assert isinstance(approval, PendingApproval)
        request = approval.action_requests[0]
        assert request.name == "transfer" and request.tx is not None
        assert "0.1 ETH" in request.summary and bob.address in request.summary

        tx_hash = await sign_and_send(request.tx, anvil.url, alice.private_key)
        await session.approve(tx_hash=tx_hash)
        after = await session.until_message_end()

    resolved = [e for e in after if isinstance(e, ApprovalResolved)]
    assert resolved and resolved[0].decisions[0].model_dump(exclude_none=True) == {
        "type": "approve", "tx_hash": tx_hash
    }
    updates = [e for e in after if isinstance(e, TxUpdate)]
    assert updates[0].status == "submitted" and updates[-1].status == "confirmed"
    assert {u.tx_hash for u in updates} == {tx_hash}
    assert session.pending_approval is None
    assert native_balance(anvil, bob.address) - before == ETH // 10


async def test_the_wallet_refuses_to_sign_for_another_account(
    server: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    async with client_for(local_url(server), alice) as client:
        session = await client.join()
        await session.turn(f"send 0.1 ETH to {bob.address}")
        assert session.pending_approval is not None
        tx = session.pending_approval.action_requests[0].tx
        assert tx is not None
        with pytest.raises(SignerError):
            await sign_and_send(tx, anvil.url, bob.private_key)
        await session.reject()
        await session.until_message_end()


async def test_reject_moves_nothing(server: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount) -> None:
    before = native_balance(anvil, bob.address)
    nonce = anvil.rpc("eth_getTransactionCount", [alice.address, "latest"])
    async with client_for(local_url(server), alice) as client:
        session = await client.join()
        await session.turn(f"send 1 ETH to {bob.address}")
        assert session.pending_approval is not None
        await session.reject(message="not today")
        after = await session.until_message_end()
    results = [e for e in after if isinstance(e, ToolResult)]
    assert [r.status for r in results] == ["rejected"]
    assert results[0].result["message"] == "not today"
    assert not [e for e in after if isinstance(e, TxUpdate)]
    assert session.pending_approval is None
    assert native_balance(anvil, bob.address) == before
    assert anvil.rpc("eth_getTransactionCount", [alice.address, "latest"]) == nonce


async def test_a_new_message_sets_a_waiting_approval_aside(
    server: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    before = native_balance(anvil, bob.address)
    async with client_for(local_url(server), alice) as client:
        session = await client.join()
        await session.turn(f"send 1 ETH to {bob.address}")
        waiting = session.pending_approval
        assert waiting is not None
        events = await session.turn("what's my balance")
    [resolved] = [e for e in events if isinstance(e, ApprovalResolved)]
    assert resolved.approval_id == waiting.approval_id and resolved.by == "superseded"
    assert "balance" in text_of(events).lower()
    assert session.pending_approval is None
    assert native_balance(anvil, bob.address) == before


async def test_edit_asks_again_with_the_new_amount(
    server: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    before = native_balance(anvil, bob.address)
    async with client_for(local_url(server), alice) as client:
        session = await client.join()
        await session.turn(f"send 0.1 ETH to {bob.address}")
        first = session.pending_approval
        assert first is not None
        await session.edit({"amount": "0.05"})
        edited = await session.until_message_end()
        assert isinstance(edited[-1], MessageEnd) and edited[-1].finish_reason == "awaiting_approval"
        second = session.pending_approval
        assert second is not None and second.approval_id != first.approval_id
        request = second.action_requests[0]
        assert request.args["amount"] == "0.05" and request.args["to"] == bob.address
        assert request.tx is not None and int(request.tx.value, 16) == ETH // 20
        await session.approve(tx_hash=await sign_and_send(request.tx, anvil.url, alice.private_key))
        done = await session.until_message_end()
    assert [e.status for e in done if isinstance(e, TxUpdate)][-1] == "confirmed"
    assert native_balance(anvil, bob.address) - before == ETH // 20


async def test_error_acks_raise_the_matching_exceptions(
    make_server: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    server = await make_server(approvals={"on_new_message": "busy"})
    async with client_for(local_url(server), alice) as client, client_for(local_url(server), bob) as other:
        session = await client.join()
        await session.turn(f"send 0.1 ETH to {bob.address}")
        approval = session.pending_approval
        assert approval is not None

        with pytest.raises(Forbidden):
            await other.join(session.chat_id)
        with pytest.raises(Forbidden):
            await other.get_chat(session.chat_id)
        with pytest.raises(NotFound):
            await client.join("no-such-chat")
        with pytest.raises(Busy):  # the chat waits for a decision
            await session.send("and another thing")
        with pytest.raises(InvalidInput):
            await session.send("")

        await session.reject(message="no")
        with pytest.raises(AlreadyDecided):
            await session.reject(approval.approval_id)
        await session.until_message_end()


async def test_busy_while_a_turn_runs(make_server: Any, anvil: Anvil, alice: DevAccount) -> None:
    server = await make_server(model=OfflinePlanner(delay=0.05))
    async with client_for(local_url(server), alice) as client:
        session = await client.join()
        message_id = await session.send("what's my balance")
        with pytest.raises(Busy):
            await session.send("what's my balance")
        # The same client_message_id is the same message, not a second turn.
        events = await session.until_message_end()
        assert [e.message_id for e in events if isinstance(e, MessageStart) and e.role == "user"] == [message_id]


async def test_events_yield_each_seq_once_and_a_late_joiner_replays_them(
    server: Any, alice: DevAccount
) -> None:
    async with client_for(local_url(server), alice) as client:
        session = await client.join()
        events = await session.turn("what's my balance")
        await client.join(session.chat_id)  # joining again replays nothing twice
        events += await session.turn("what's my balance in TKN")
        assert seqs(events) == list(range(1, len(events) + 1))

        async with client_for(local_url(server), alice) as late:
            replay = await late.join(session.chat_id, last_seq=0)
            got: list[ChatEvent] = []
            async with asyncio.timeout(10):
                async for event in replay.events():
                    got.append(event)
                    if event.seq == session.last_seq:
                        break
            assert seqs(got) == seqs(events)
            assert [e.type for e in got] == [e.type for e in events]
            assert text_of(got) == text_of(events)
            # Joining from the middle replays only the rest.
            middle = len(events) // 2
            await late.close()
        async with client_for(local_url(server), alice) as third:
            rest = await third.join(session.chat_id, last_seq=middle)
            tail: list[ChatEvent] = []
            async with asyncio.timeout(10):
                async for event in rest.events():
                    tail.append(event)
                    if event.seq == session.last_seq:
                        break
            assert seqs(tail) == list(range(middle + 1, len(events) + 1))


async def test_early_late_and_repeated_deliveries_come_out_once_in_order(server: Any, alice: DevAccount) -> None:
    async with client_for(local_url(server), alice) as client:
        session = await client.join()
        events = await session.turn("what's my balance")
        wire = [(e.type, e.to_wire()) for e in events]
        async with client_for(local_url(server), alice) as other:
            # Copies that overtake the join (as user-room events can), in reverse order...
            for kind, data in reversed(wire[2:]):
                await other._on_event(kind, data)
            replay = await other.join(session.chat_id, last_seq=0)
            # ...and late repeats, on top of the server's own replay.
            for kind, data in wire[::2]:
                await other._on_event(kind, data)
            got: list[ChatEvent] = []
            async with asyncio.timeout(10):
                async for event in replay.events():
                    got.append(event)
                    if event.seq == len(events):
                        break
            assert seqs(got) == list(range(1, len(events) + 1))
            assert [e.to_wire() for e in got] == [data for _, data in wire]


class Proxy:
    """A TCP proxy in front of the server whose connections can be cut, like a network drop."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.refuse = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refuse:
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers |= {writer, up_writer}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        for task in (asyncio.create_task(pump(reader, up_writer)), asyncio.create_task(pump(up_reader, writer))):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def drop(self) -> None:
        """Cut every open connection at once (RST), as a dead network would."""
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        self.drop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def test_a_dropped_connection_mid_stream_continues_with_no_gap_and_no_duplicate(
    make_server: Any, anvil: Anvil, alice: DevAccount
) -> None:
    server = await make_server(model=OfflinePlanner(delay=0.1))
    proxy = Proxy(server.port)
    await proxy.start()
    token = await sign_in(server, alice)
    states: list[tuple[bool, float]] = []
    client = LunarkClient(
        f"http://127.0.0.1:{proxy.port}", token=token, on_connection=lambda up: states.append((up, time.time()))
    )
    try:
        await client.connect()
        session = await client.join()
        message_id = await session.send("what's my balance in TKN")
        got: list[ChatEvent] = []
        tokens_before_drop = 0
        async with asyncio.timeout(30):
            async for event in session.events():
                got.append(event)
                if isinstance(event, Token) and client.reconnects == 0:
                    tokens_before_drop += 1
                    if tokens_before_drop == 2:
                        # Cut the network for a while: events keep coming on the server meanwhile.
                        proxy.refuse = True
                        proxy.drop()
                        await asyncio.sleep(1.0)
                        assert not client.connected
                        proxy.refuse = False
                if isinstance(event, MessageEnd):
                    break
        assert client.reconnects >= 1 and [up for up, _ in states] == [True, False, True]
        assert seqs(got) == list(range(1, len(got) + 1))
        # Some events were made while the client was offline: they can only have come by replay.
        down, up = states[1][1], states[2][1]
        assert any(down < e.ts < up for e in got)
        assert len({e.seq for e in got}) == len(got)
        stored = await client.get_chat(session.chat_id)
        answer = next(m for m in stored["messages"] if m["role"] == "assistant")
        assert text_of(got) == answer["content"]
        assert stored["last_seq"] == session.last_seq
        assert any(isinstance(e, MessageStart) and e.message_id == message_id for e in got)

        # The client keeps working on the new connection.
        events = await session.turn("what's my balance")
        assert seqs(events) == list(range(len(got) + 1, len(got) + len(events) + 1))
    finally:
        await client.close()
        await proxy.close()


async def test_a_request_waits_for_the_reconnection_and_close_ends_the_iterator(
    server: Any, alice: DevAccount
) -> None:
    proxy = Proxy(server.port)
    await proxy.start()
    token = await sign_in(server, alice)
    client = LunarkClient(f"http://127.0.0.1:{proxy.port}", token=token)
    try:
        await client.connect()
        session = await client.join()
        proxy.drop()
        # send_message is idempotent, so the SDK sends it once the connection is back.
        events = await session.turn("what's my balance")
        assert isinstance(events[-1], MessageEnd) and client.reconnects >= 1
    finally:
        await client.close()
        await proxy.close()
    assert [e async for e in session.events()] == []
    with pytest.raises(Disconnected):
        await session.send("hello")


async def test_list_tools_says_what_call_tool_takes_and_what_waits(server: Any, alice: DevAccount) -> None:
    async with client_for(local_url(server), alice) as client:
        tools = {tool.name: tool for tool in await client.list_tools()}
    assert set(tools) == {"get_balance", "transfer", "switch_network"}
    assert tools["get_balance"].approval == "never" and tools["transfer"].approval == "always"
    assert {t.source for t in tools.values()} == {"builtin"}
    assert set(tools["transfer"].input_schema["required"]) == {"to", "amount"}
    assert tools["transfer"].mcp_server is None and tools["transfer"].hints == {}


async def test_list_tools_needs_a_signed_in_session(server: Any) -> None:
    client = LunarkClient(local_url(server), token="not-a-token")
    try:
        with pytest.raises(Unauthorized):
            await client.list_tools()
    finally:
        await client.close()


async def test_call_tool_runs_a_read_only_tool_at_once(server: Any, alice: DevAccount) -> None:
    async with client_for(local_url(server), alice) as client:
        session = await client.join()
        call_id = await session.call_tool("get_balance", {})
        result = await session.tool_result(call_id)
        assert result.status == "success" and isinstance(result.result, dict)
        assert result.result["symbol"] == "ETH" and int(result.result["raw"]) > 0
        # The chat is free again: a second call goes through.
        again = await session.tool_result(await session.call_tool("get_balance", {"token": "TKN"}))
    assert again.status == "success" and isinstance(again.result, dict) and again.result["symbol"] == "TKN"


async def test_call_tool_waits_for_the_wallet_and_returns_the_settlement(
    server: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    before = native_balance(anvil, bob.address)
    async with client_for(local_url(server), alice) as client:
        session = await client.join()
        call_id = await session.call_tool("transfer", {"to": bob.address, "amount": "0.1"})
        paused = await session.until_message_end()
        assert isinstance(paused[-1], MessageEnd) and paused[-1].finish_reason == "awaiting_approval"
        approval = session.pending_approval
        assert approval is not None and [r.call_id for r in approval.action_requests] == [call_id]
        assert native_balance(anvil, bob.address) == before, "nothing moves before the decision"
        with pytest.raises(Busy):
            await session.call_tool("get_balance", {})
        request = approval.action_requests[0]
        assert request.tx is not None
        await session.approve(tx_hash=await sign_and_send(request.tx, anvil.url, alice.private_key))
        result = await session.tool_result(call_id)
    assert result.status == "success" and isinstance(result.result, dict)
    assert result.result["status"] == "confirmed" and isinstance(result.result["block_number"], int)
    assert native_balance(anvil, bob.address) - before == ETH // 10


async def test_call_tool_refuses_unknown_tools_and_bad_arguments(server: Any, alice: DevAccount) -> None:
    async with client_for(local_url(server), alice) as client:
        session = await client.join()
        with pytest.raises(InvalidInput, match="no tool named 'send_everything'"):
            await session.call_tool("send_everything", {})
        with pytest.raises(InvalidInput):
            await session.call_tool("transfer", {"to": "nobody"})
        with pytest.raises(InvalidInput):  # refused by the protocol model before it is sent
            await session.call_tool("x" * 65, {})
        rejected = await session.call_tool("transfer", {"to": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
                                                        "amount": "1"})
        await session.until_message_end()
        await session.reject(message="not today")
        result = await session.tool_result(rejected)
    assert result.status == "rejected" and isinstance(result.result, dict)
    assert result.result["message"] == "not today"
