"""Approvals over a real server: expiry, concurrent decisions, a restart in the middle, wallet network changes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from conftest import sign_in
from server_harness import Http, SioClient, assert_contiguous, assert_error
from wallet import native_balance, wallet_send

from lunark.chain.anvil import Anvil, DevAccount

ETH = 10**18


async def ask_transfer(sio: SioClient, chat_id: str, text: str, client_message_id: str = "t1") -> dict[str, Any]:
    """Send a transfer request; returns its pending_approval once the turn that asked has ended."""
    mark = sio.mark()
    ack = await sio.call("send_message", {"chat_id": chat_id, "content": text, "client_message_id": client_message_id})
    assert "message_id" in ack, ack
    pending = await sio.wait_event("pending_approval", chat_id=chat_id, after=mark)
    await sio.wait_event("message_end", chat_id=chat_id, after=mark, finish_reason="awaiting_approval")
    return pending


async def test_an_expired_approval_is_rejected_by_timeout_and_cannot_be_approved(
    make_server: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    # A local signer is configured: had the late approval been accepted, funds would move.
    server = await make_server(signer={"local": "anvil"}, approvals={"ttl_seconds": 1})
    token = await sign_in(server, alice)
    bob_before = native_balance(anvil, bob.address)
    async with SioClient(server, token) as sio, Http(server) as http:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        pending = await ask_transfer(sio, chat_id, f"send 1 ETH to {bob.address}")
        expires = datetime.fromisoformat(pending["expires_at"].replace("Z", "+00:00"))
        assert 0 < (expires - datetime.now(UTC)).total_seconds() <= 1.0

        resolved = await sio.wait_event("approval_resolved", chat_id=chat_id, timeout=5)
        assert resolved["approval_id"] == pending["approval_id"] and resolved["by"] == "timeout"
        assert [d["type"] for d in resolved["decisions"]] == ["reject"]
        end = await sio.wait_event("message_end", chat_id=chat_id, after=sio.events.index(resolved))
        assert end["finish_reason"] == "stop"
        [result] = sio.of("tool_result", chat_id=chat_id)
        assert result["status"] == "rejected" and result["call_id"] == pending["action_requests"][0]["call_id"]

        # The server answers approval_expired: the contract's code for "it expired and counted as
        # rejected", more useful to a client than already_decided.
        late = {"chat_id": chat_id, "approval_id": pending["approval_id"], "decisions": [{"type": "approve"}]}
        assert_error(await sio.call("resume_decisions", late), "approval_expired")
        status, body = await http.post(f"/api/chats/{chat_id}/decisions", token,
                                       json={k: v for k, v in late.items() if k != "chat_id"})
        assert status == 410 and body["error"]["code"] == "approval_expired"

        await asyncio.sleep(0.2)
        assert not sio.of("tx_update") and native_balance(anvil, bob.address) == bob_before
        assert "pending_approval" not in (await sio.call("join_chat", {"chat_id": chat_id}))
        _, detail = await http.get(f"/api/chats/{chat_id}", token)
        assert "pending_approval" not in detail and detail["transactions"] == []
        assert_contiguous(sio.seqs(chat_id))


async def test_an_approval_that_expired_while_the_server_was_down_is_rejected_after_it_starts(
    make_server: Any, tmp_path: Path, alice: DevAccount, bob: DevAccount
) -> None:
    data_dir = tmp_path / "restarted"
    server = await make_server(data_dir=data_dir, approvals={"ttl_seconds": 1})
    token = await sign_in(server, alice)
    async with SioClient(server, token) as sio:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        pending = await ask_transfer(sio, chat_id, f"send 1 ETH to {bob.address}")
    await server.stop()
    await asyncio.sleep(1.2)  # it expires while no server runs

    again = await make_server(data_dir=data_dir, approvals={"ttl_seconds": 1})
    # Nobody opens the chat: the server's own clock finds it due, from the store.
    for _ in range(100):
        record = await again.store.get_approval(pending["approval_id"])
        if record is not None and record.state == "expired":
            break
        await asyncio.sleep(0.05)
    assert record is not None and (record.state, record.by) == ("expired", "timeout")
    async with SioClient(again, await sign_in(again, alice)) as sio:
        ack = await sio.call("join_chat", {"chat_id": chat_id, "last_seq": 0})
        assert "pending_approval" not in ack
        resolved = await sio.wait_event("approval_resolved", chat_id=chat_id)
        assert resolved["approval_id"] == pending["approval_id"] and resolved["by"] == "timeout"
        end = await sio.wait_event("message_end", chat_id=chat_id, after=sio.events.index(resolved))
        assert end["finish_reason"] == "stop"
        assert_contiguous(sio.seqs(chat_id))


async def test_a_due_approval_its_chat_no_longer_waits_on_is_set_aside(
    make_server: Any, alice: DevAccount
) -> None:
    """A pending record whose chat is not paused at it (or is gone) cannot be decided: the clock
    marks it expired, touches nothing else, and never finds it due again."""
    from dataclasses import replace

    from lunark.store.base import ApprovalRecord

    server = await make_server()
    token = await sign_in(server, alice)
    async with SioClient(server, token) as sio:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        past = datetime.now(UTC).replace(year=2000)
        stray = ApprovalRecord(approval_id="apr_stray0000000", chat_id=chat_id, owner=alice.address, state="pending",
                               request={"approval_id": "apr_stray0000000", "expires_at": past.isoformat()},
                               proposals=[], expires_at=past, decisions=None, by=None)
        await server.store.put_approval(stray)
        await server.store.put_approval(replace(stray, approval_id="apr_nochat0000000", chat_id="chat_gone"))
        clock = getattr(server.runner, "clock", None)  # turn workers' clocks find it at their next sweep
        if clock is not None:
            clock.due_at(past)
        for _ in range(100):
            states = {a: r.state for a in ("apr_stray0000000", "apr_nochat0000000")
                      if (r := await server.store.get_approval(a)) is not None}
            if set(states.values()) == {"expired"}:
                break
            await asyncio.sleep(0.05)
        assert states == {"apr_stray0000000": "expired", "apr_nochat0000000": "expired"}
        assert await server.store.due_approvals(datetime.now(UTC)) == []
        assert await server.store.next_expiry() is None
        await asyncio.sleep(0.2)
        assert not sio.of("approval_resolved") and not sio.of("message_start")


async def test_concurrent_decisions_apply_exactly_once(
    make_server: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    server = await make_server(signer={"local": "anvil"})
    token = await sign_in(server, alice)
    bob_before = native_balance(anvil, bob.address)
    async with SioClient(server, token) as one, SioClient(server, token) as two, Http(server) as http:
        chat_id = (await one.call("join_chat", {}))["chat_id"]
        await two.call("join_chat", {"chat_id": chat_id})
        await one.call("send_message", {"chat_id": chat_id, "content": f"send 0.5 ETH to {bob.address}",
                                        "client_message_id": "c1"})
        # Decide the moment the approval shows, while the turn that asked is still closing.
        pending = await one.wait_event("pending_approval", chat_id=chat_id)
        decision = {"chat_id": chat_id, "approval_id": pending["approval_id"], "decisions": [{"type": "approve"}]}
        acks = await asyncio.gather(
            one.call("resume_decisions", decision),
            two.call("resume_decisions", decision),
            http.post(f"/api/chats/{chat_id}/decisions", token,
                      json={"approval_id": pending["approval_id"], "decisions": [{"type": "approve"}]}),
        )
        socket_acks, (http_status, http_body) = list(acks[:2]), acks[2]
        oks = [a for a in socket_acks if a == {"ok": True}] + ([http_body] if http_status == 200 else [])
        assert len(oks) == 1, acks
        for ack in socket_acks:
            if ack != {"ok": True}:
                assert_error(ack, "already_decided")
        if http_status != 200:
            assert http_status == 409 and http_body["error"]["code"] == "already_decided"

        await one.wait_event("tx_update", chat_id=chat_id, status="confirmed")
        end = await one.wait_event("message_end", chat_id=chat_id, finish_reason="stop")
        await two.wait_event("message_end", chat_id=chat_id, finish_reason="stop")
        assert native_balance(anvil, bob.address) - bob_before == ETH // 2
        assert len(one.of("approval_resolved")) == 1 and len(one.of("tool_result")) == 1
        assert len({e["tx_hash"] for e in one.of("tx_update")}) == 1
        _, detail = await http.get(f"/api/chats/{chat_id}", token)
        assert len(detail["transactions"]) == 1 and detail["transactions"][0]["status"] == "confirmed"
        assert one.seqs(chat_id) == two.seqs(chat_id)[: len(one.seqs(chat_id))]
        assert one.seqs(chat_id)[-1] == end["seq"]
        assert_contiguous(one.seqs(chat_id))


async def test_a_pending_approval_survives_a_restart_and_is_approved_once(
    make_server: Any, tmp_path: Path, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    data_dir = tmp_path / "shared"
    first = await make_server(data_dir=data_dir)  # no local signer: the wallet signs
    token = await sign_in(first, alice)
    bob_before = native_balance(anvil, bob.address)
    async with SioClient(first, token) as sio:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        pending = await ask_transfer(sio, chat_id, f"send 0.25 ETH to {bob.address}")
        last_before = sio.seqs(chat_id)[-1]
    await first.stop()

    second = await make_server(data_dir=data_dir)
    assert second.port != first.port
    # Sessions live in the database too: the token still works after the restart.
    async with SioClient(second, token) as sio, Http(second) as http:
        ack = await sio.call("join_chat", {"chat_id": chat_id, "last_seq": last_before})
        assert ack["last_seq"] == last_before
        again = ack["pending_approval"]
        assert again["approval_id"] == pending["approval_id"]
        assert again["action_requests"] == pending["action_requests"]
        assert again["expires_at"] == pending["expires_at"]
        _, detail = await http.get(f"/api/chats/{chat_id}", token)
        assert detail["pending_approval"]["approval_id"] == pending["approval_id"]

        tx_hash = wallet_send(anvil, again["action_requests"][0]["tx"], alice.private_key)
        decided = await sio.call("resume_decisions", {"chat_id": chat_id, "approval_id": again["approval_id"],
                                                      "decisions": [{"type": "approve", "tx_hash": tx_hash}]})
        assert decided == {"ok": True}
        confirmed = await sio.wait_event("tx_update", chat_id=chat_id, status="confirmed")
        assert confirmed["tx_hash"].lower() == tx_hash.lower()
        await sio.wait_event("message_end", chat_id=chat_id, finish_reason="stop")
        assert_contiguous(sio.seqs(chat_id), start=last_before + 1)
        assert native_balance(anvil, bob.address) - bob_before == ETH // 4

        again_decided = await sio.call("resume_decisions", {"chat_id": chat_id, "approval_id": again["approval_id"],
                                                            "decisions": [{"type": "approve", "tx_hash": tx_hash}]})
        assert_error(again_decided, "already_decided")
        _, detail = await http.get(f"/api/chats/{chat_id}", token)
        assert "pending_approval" not in detail
        [tx] = detail["transactions"]
        assert tx["status"] == "confirmed" and tx["tx_hash"].lower() == tx_hash.lower()
        assert native_balance(anvil, bob.address) - bob_before == ETH // 4, "moved exactly once"


async def test_wallet_changed_moves_the_chat_and_refuses_unknown_networks(
    make_server: Any, anvil: Anvil, anvil2: Anvil, alice: DevAccount
) -> None:
    server = await make_server()
    token = await sign_in(server, alice)
    async with SioClient(server, token) as sio, Http(server) as http:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        ack = await sio.call("wallet_changed", {"chat_id": chat_id, "chain_id": 31338})
        assert ack["ok"] is True
        assert ack["network"]["chain_id"] == 31338 and ack["network"]["name"] == "anvil-2"
        assert ack["network"]["rpc_urls"] == [anvil2.url]
        _, detail = await http.get(f"/api/chats/{chat_id}", token)
        assert detail["network"]["name"] == "anvil-2"
        assert (await sio.call("join_chat", {"chat_id": chat_id}))["network"]["chain_id"] == 31338

        # The next turn runs on the wallet's network.
        await sio.call("send_message", {"chat_id": chat_id, "content": "what's my balance", "client_message_id": "b"})
        await sio.wait_event("message_end", chat_id=chat_id, finish_reason="stop")
        [result] = sio.of("tool_result", chat_id=chat_id)
        assert result["result"]["chain_id"] == 31338

        for chain_id in (999_999, 1_000_000_007):
            assert_error(await sio.call("wallet_changed", {"chat_id": chat_id, "chain_id": chain_id}), "invalid_input")
        status, body = await http.post(f"/api/chats/{chat_id}/wallet", token, json={"chain_id": 999_999})
        assert status == 400 and body["error"]["code"] == "invalid_input"
        status, body = await http.post(f"/api/chats/{chat_id}/wallet", token, json={"chain_id": 31337})
        assert status == 200 and body["network"]["name"] == "anvil"
        _, detail = await http.get(f"/api/chats/{chat_id}", token)
        assert detail["network"]["chain_id"] == 31337


async def test_wallet_changed_makes_a_pending_approval_stale(
    make_server: Any, anvil: Anvil, anvil2: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    server = await make_server(signer={"local": "anvil"})
    token = await sign_in(server, alice)
    bob_before, bob_before_2 = native_balance(anvil, bob.address), native_balance(anvil2, bob.address)
    async with SioClient(server, token) as sio, Http(server) as http:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        pending = await ask_transfer(sio, chat_id, f"send 1 ETH to {bob.address}")
        assert int(pending["action_requests"][0]["tx"]["chain_id"], 16) == 31337

        # Switching to the network it was prepared for changes nothing.
        ack = await sio.call("wallet_changed", {"chat_id": chat_id, "chain_id": 31337})
        assert ack["ok"] is True
        _, detail = await http.get(f"/api/chats/{chat_id}", token)
        assert detail["pending_approval"]["approval_id"] == pending["approval_id"]

        mark = sio.mark()
        ack = await sio.call("wallet_changed", {"chat_id": chat_id, "chain_id": 31338})
        assert ack["ok"] is True and ack["network"]["chain_id"] == 31338
        resolved = await sio.wait_event("approval_resolved", chat_id=chat_id, after=mark)
        assert resolved["approval_id"] == pending["approval_id"]
        [decision] = resolved["decisions"]
        assert decision["type"] == "reject" and "network" in decision["message"]
        await sio.wait_event("message_end", chat_id=chat_id, after=mark, finish_reason="stop")
        [result] = sio.of("tool_result", chat_id=chat_id, after=mark)
        assert result["status"] == "rejected"

        approve = {"chat_id": chat_id, "approval_id": pending["approval_id"], "decisions": [{"type": "approve"}]}
        assert_error(await sio.call("resume_decisions", approve), "already_decided")
        await asyncio.sleep(0.2)
        assert not sio.of("tx_update")
        assert native_balance(anvil, bob.address) == bob_before
        assert native_balance(anvil2, bob.address) == bob_before_2
        _, detail = await http.get(f"/api/chats/{chat_id}", token)
        assert "pending_approval" not in detail and detail["transactions"] == []
        assert detail["network"]["chain_id"] == 31338
        assert_contiguous(sio.seqs(chat_id))
