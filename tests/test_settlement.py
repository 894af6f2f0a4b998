"""Settlement over a real server, real Socket.IO clients and a real Anvil: each approval binds exactly
one transaction, the chat tells the truth about it, and caps hold across chats.

Each test is one finding of the settlement issue: it failed before the settlement service existed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from conftest import sign_in
from server_harness import Http, SioClient, assert_error
from test_server_approvals import ask_transfer
from wallet import native_balance, sign_wire_tx, wallet_send

from lunark.chain.anvil import Anvil, DevAccount
from lunark.protocol import parse_event

ETH = 10**18


def assert_wire(sio: SioClient) -> None:
    """Every chat event the client received is valid under the protocol's models (the SDK drops,
    and then resyncs over, an event it cannot parse)."""
    for event in sio.events:
        if "seq" in event:
            parse_event({k: v for k, v in event.items() if not k.startswith("_")})


def decide(chat_id: str, pending: dict[str, Any], *decisions: dict[str, Any]) -> dict[str, Any]:
    return {"chat_id": chat_id, "approval_id": pending["approval_id"], "decisions": list(decisions)}


async def final_update(
    sio: SioClient, chat_id: str, call_id: str, *, after: int = 0, timeout: float = 20
) -> dict[str, Any]:
    return await sio.wait_until(
        lambda e: e["type"] == "tx_update" and e.get("chat_id") == chat_id and e.get("call_id") == call_id
        and e["status"] not in ("submitted", "mined"),
        after=after, timeout=timeout, what=f"a final tx_update of {call_id}",
    )


async def test_a_hash_settles_only_its_own_approval(
    make_server: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    # Finding 3: the hash of a first, confirmed transfer was accepted for a second, identical one.
    server = await make_server()
    token = await sign_in(server, alice)
    async with SioClient(server, token) as sio:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        first = await ask_transfer(sio, chat_id, f"send 0.5 ETH to {bob.address}", "a1")
        tx_hash = wallet_send(anvil, first["action_requests"][0]["tx"], alice.private_key)
        assert await sio.call("resume_decisions", decide(chat_id, first, {"type": "approve", "tx_hash": tx_hash})) \
            == {"ok": True}
        done = await final_update(sio, chat_id, first["action_requests"][0]["call_id"])
        assert done["status"] == "confirmed"
        await sio.wait_event("message_end", chat_id=chat_id, after=sio.events.index(done))
        bob_before = native_balance(anvil, bob.address)

        second = await ask_transfer(sio, chat_id, f"send 0.5 ETH to {bob.address}", "a2")
        mark = sio.mark()
        await sio.call("resume_decisions", decide(chat_id, second, {"type": "approve", "tx_hash": tx_hash}))
        refused = await final_update(sio, chat_id, second["action_requests"][0]["call_id"], after=mark)
        assert refused["status"] == "mismatch", refused
        assert "already settled another approval" in refused["reason"]
        result = await sio.wait_event("tool_result", chat_id=chat_id, after=mark)
        assert result["status"] == "error" and result["result"]["status"] == "mismatch"
        end = await sio.wait_event("message_end", chat_id=chat_id, after=mark)
        answer = "".join(e["text"] for e in sio.of("token", chat_id=chat_id, after=mark))
        assert end["finish_reason"] == "stop" and "Sent" not in answer and "{" not in answer, answer
        assert native_balance(anvil, bob.address) == bob_before, "nothing moved for the second approval"
        assert_wire(sio)


async def test_a_signed_transaction_that_pays_a_huge_fee_or_reuses_a_nonce_is_never_broadcast(
    make_server: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    # Finding 4: a signed_tx paying ~26,000x the approved maximum fee was broadcast.
    server = await make_server()
    token = await sign_in(server, alice)
    async with SioClient(server, token) as sio:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        pending = await ask_transfer(sio, chat_id, f"send 1.5 ETH to {bob.address}")
        tx = pending["action_requests"][0]["tx"]
        greedy = hex(int(tx["max_fee_per_gas"], 16) * 26_000)
        signed = sign_wire_tx(tx, alice.private_key, max_fee_per_gas=greedy, max_priority_fee_per_gas=greedy)
        alice_before = native_balance(anvil, alice.address)
        nonce_before = anvil.rpc("eth_getTransactionCount", [alice.address, "pending"])
        mark = sio.mark()
        await sio.call("resume_decisions", decide(chat_id, pending, {"type": "approve", "signed_tx": signed}))
        refused = await final_update(sio, chat_id, pending["action_requests"][0]["call_id"], after=mark)
        assert refused["status"] == "mismatch" and "network fee could reach" in refused["reason"], refused
        await sio.wait_event("message_end", chat_id=chat_id, after=mark)
        await asyncio.sleep(0.3)
        assert anvil.rpc("eth_getTransactionCount", [alice.address, "pending"]) == nonce_before, "never broadcast"
        assert_wire(sio)
        assert native_balance(anvil, alice.address) == alice_before

        # A nonce below the prepared one cannot settle it either.
        pending = await ask_transfer(sio, chat_id, f"send 1 ETH to {bob.address}", "n2")
        tx = pending["action_requests"][0]["tx"]
        if int(tx["nonce"], 16) > 0:
            low = sign_wire_tx(tx, alice.private_key, nonce=hex(int(tx["nonce"], 16) - 1))
            mark = sio.mark()
            await sio.call("resume_decisions", decide(chat_id, pending, {"type": "approve", "signed_tx": low}))
            refused = await final_update(sio, chat_id, pending["action_requests"][0]["call_id"], after=mark)
            assert refused["status"] == "mismatch" and "nonce" in refused["reason"]


async def test_the_daily_cap_holds_across_chats_with_approvals_waiting(
    make_server: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    # Finding 5: with a 3 ETH daily cap, two 2 ETH approvals pending in two chats both executed.
    server = await make_server(signer={"local": "anvil"}, policy={"daily_cap": {"ETH": "3"}})
    token = await sign_in(server, alice)
    bob_before = native_balance(anvil, bob.address)
    async with SioClient(server, token) as sio:
        one = (await sio.call("join_chat", {}))["chat_id"]
        two = (await sio.call("join_chat", {}))["chat_id"]
        first = await ask_transfer(sio, one, f"send 2 ETH to {bob.address}", "c1")
        mark = sio.mark()
        await sio.call("send_message", {"chat_id": two, "content": f"send 2 ETH to {bob.address}",
                                        "client_message_id": "c2"})
        end = await sio.wait_event("message_end", chat_id=two, after=mark)
        assert end["finish_reason"] == "stop", "the second transfer is refused before anyone is asked"
        [result] = sio.of("tool_result", chat_id=two, after=mark)
        assert result["error"]["code"] == "policy_violation" and "daily limit" in result["error"]["message"]
        assert "waiting for approval" in result["error"]["message"]

        mark = sio.mark()
        await sio.call("resume_decisions", decide(one, first, {"type": "approve"}))
        assert (await final_update(sio, one, first["action_requests"][0]["call_id"], after=mark))["status"] \
            == "confirmed"
    assert native_balance(anvil, bob.address) - bob_before == 2 * ETH


async def test_a_rejected_approval_frees_its_reservation(
    make_server: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    server = await make_server(signer={"local": "anvil"}, policy={"daily_cap": {"ETH": "3"}})
    token = await sign_in(server, alice)
    async with SioClient(server, token) as sio:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        first = await ask_transfer(sio, chat_id, f"send 2 ETH to {bob.address}", "r1")
        mark = sio.mark()
        await sio.call("resume_decisions", decide(chat_id, first, {"type": "reject"}))
        await sio.wait_event("message_end", chat_id=chat_id, after=mark)
        again = await ask_transfer(sio, chat_id, f"send 2 ETH to {bob.address}", "r2")
        assert again["approval_id"] != first["approval_id"]


async def test_abort_after_broadcast_stops_the_answer_not_the_tracking(
    make_server: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    # Finding 2: the transaction confirmed on chain while the chat stayed at submitted.
    server = await make_server(signer={"local": "anvil"})
    token = await sign_in(server, alice)
    bob_before = native_balance(anvil, bob.address)
    async with SioClient(server, token) as sio, Http(server) as http:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        pending = await ask_transfer(sio, chat_id, f"send 0.25 ETH to {bob.address}")
        call_id = pending["action_requests"][0]["call_id"]
        anvil.set_automine(False)
        mark = sio.mark()
        await sio.call("resume_decisions", decide(chat_id, pending, {"type": "approve"}))
        await sio.wait_event("tx_update", chat_id=chat_id, after=mark, status="submitted")
        assert await sio.call("abort", {"chat_id": chat_id}) == {"ok": True}
        await sio.wait_event("message_end", chat_id=chat_id, after=mark, finish_reason="aborted")
        anvil.mine(1)
        confirmed = await final_update(sio, chat_id, call_id, after=mark)
        assert confirmed["status"] == "confirmed"
        _, detail = await http.get(f"/api/chats/{chat_id}", token)
        assert [t["status"] for t in detail["transactions"]] == ["confirmed"]
    assert native_balance(anvil, bob.address) - bob_before == ETH // 4


async def test_a_wallet_hash_after_expiry_is_recorded_and_followed(
    make_server: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    # Finding 8: the wallet broadcast while its popup stayed open; the approval expired meanwhile,
    # the chat said rejected, and nothing tracked or counted the transaction.
    server = await make_server(approvals={"ttl_seconds": 1}, policy={"daily_cap": {"ETH": "1"}})
    token = await sign_in(server, alice)
    bob_before = native_balance(anvil, bob.address)
    async with SioClient(server, token) as sio:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        pending = await ask_transfer(sio, chat_id, f"send 0.75 ETH to {bob.address}")
        call_id = pending["action_requests"][0]["call_id"]
        tx_hash = wallet_send(anvil, pending["action_requests"][0]["tx"], alice.private_key)
        await sio.wait_event("approval_resolved", chat_id=chat_id, by="timeout", timeout=5)
        mark = sio.mark()
        error = assert_error(await sio.call("resume_decisions", decide(
            chat_id, pending, {"type": "approve", "tx_hash": tx_hash})), "approval_expired")
        assert "recorded" in error["message"]
        followed = await final_update(sio, chat_id, call_id, after=mark)
        assert followed["status"] == "confirmed" and followed["tx_hash"] == tx_hash and followed.get("late") is True
        # The ledger counts it: the cap has only 0.25 ETH left.
        mark = sio.mark()
        await sio.call("send_message", {"chat_id": chat_id, "content": f"send 0.5 ETH to {bob.address}",
                                        "client_message_id": "after"})
        await sio.wait_event("message_end", chat_id=chat_id, after=mark)
        [refused] = sio.of("tool_result", chat_id=chat_id, after=mark)
        assert refused["error"]["code"] == "policy_violation" and "0.25 left" in refused["error"]["message"]
    assert native_balance(anvil, bob.address) - bob_before == 3 * ETH // 4


async def test_a_transfer_after_a_network_switch_is_prepared_on_the_new_network(
    make_server: Any, anvil: Anvil, anvil2: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    # Finding 7: "send 1 ETH to 0x… on anvil-2" asked for the switch and, in the same approval, a
    # transfer prepared on the old network; approving both sent on the network the user left.
    server = await make_server(signer={"local": "anvil"})
    token = await sign_in(server, alice)
    before_1, before_2 = native_balance(anvil, bob.address), native_balance(anvil2, bob.address)
    async with SioClient(server, token) as sio:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        switch = await ask_transfer(sio, chat_id, f"send 1 ETH to {bob.address} on anvil-2")
        assert [r["name"] for r in switch["action_requests"]] == ["switch_network"], "nothing prepared on anvil"
        mark = sio.mark()
        await sio.call("resume_decisions", decide(chat_id, switch, {"type": "approve"}))
        transfer = await sio.wait_event("pending_approval", chat_id=chat_id, after=mark)
        [request] = transfer["action_requests"]
        assert request["name"] == "transfer" and int(request["tx"]["chain_id"], 16) == 31338
        assert "Anvil 2" in request["summary"]
        await sio.wait_event("message_end", chat_id=chat_id, after=mark, finish_reason="awaiting_approval")
        mark = sio.mark()
        await sio.call("resume_decisions", decide(chat_id, transfer, {"type": "approve"}))
        done = await final_update(sio, chat_id, request["call_id"], after=mark)
        assert done["status"] == "confirmed" and done["chain_id"] == 31338
    assert native_balance(anvil, bob.address) == before_1
    assert native_balance(anvil2, bob.address) - before_2 == ETH


async def test_a_mismatch_is_told_in_plain_words(
    make_server: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount, carol: DevAccount
) -> None:
    # Finding 10: the model's answer to a mismatch was raw JSON.
    server = await make_server()
    token = await sign_in(server, alice)
    async with SioClient(server, token) as sio:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        pending = await ask_transfer(sio, chat_id, f"send 1 ETH to {bob.address}")
        tx = pending["action_requests"][0]["tx"]
        tampered = sign_wire_tx(tx, alice.private_key, to=carol.address, value=hex(2 * ETH))
        mark = sio.mark()
        await sio.call("resume_decisions", decide(chat_id, pending, {"type": "approve", "signed_tx": tampered}))
        await sio.wait_event("message_end", chat_id=chat_id, after=mark)
        answer = "".join(e["text"] for e in sio.of("token", chat_id=chat_id, after=mark))
        assert "{" not in answer and "does not match" in answer, answer
        assert "2 ETH" in answer and carol.address in answer, answer
        assert_wire(sio)


async def test_what_a_wallet_sent_instead_of_the_approval_is_shown_and_counted(
    make_server: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount, carol: DevAccount
) -> None:
    # Finding 8, second half: a tx_hash found to be a mismatch was refused, and whatever the wallet
    # did send from the user's account was neither followed nor counted.
    server = await make_server(policy={"daily_cap": {"ETH": "3"}})
    token = await sign_in(server, alice)
    async with SioClient(server, token) as sio:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        pending = await ask_transfer(sio, chat_id, f"send 1 ETH to {bob.address}")
        call_id = pending["action_requests"][0]["call_id"]
        tx_hash = wallet_send(anvil, pending["action_requests"][0]["tx"], alice.private_key,
                              to=carol.address, value=hex(2 * ETH))
        mark = sio.mark()
        await sio.call("resume_decisions", decide(chat_id, pending, {"type": "approve", "tx_hash": tx_hash}))
        refused = await final_update(sio, chat_id, call_id, after=mark)
        assert refused["status"] == "mismatch" and refused["tx_hash"] == tx_hash
        shown = await sio.wait_until(
            lambda e: e["type"] == "tx_update" and e.get("call_id") == call_id and e.get("onchain") == "confirmed",
            after=mark, what="the mismatched transaction followed to confirmed")
        assert shown["status"] == "mismatch", "what the wallet did is never reported as the approval's success"
        assert "confirmed on chain" in shown["reason"] and "2 ETH" in shown["reason"], shown["reason"]
        await sio.wait_event("message_end", chat_id=chat_id, after=mark)
        # The 2 ETH that moved count against the 3 ETH cap.
        mark = sio.mark()
        await sio.call("send_message", {"chat_id": chat_id, "content": f"send 1.5 ETH to {bob.address}",
                                        "client_message_id": "after"})
        await sio.wait_event("message_end", chat_id=chat_id, after=mark)
        [result] = sio.of("tool_result", chat_id=chat_id, after=mark)
        assert result["error"]["code"] == "policy_violation", result
        assert_wire(sio)


async def test_a_wallet_speed_up_settles_under_its_new_hash(
    make_server: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    # Finding 9: a speed-up (same nonce, higher fee, same transfer) was reported as replaced.
    server = await make_server()
    token = await sign_in(server, alice)
    bob_before = native_balance(anvil, bob.address)
    async with SioClient(server, token) as sio, Http(server) as http:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        pending = await ask_transfer(sio, chat_id, f"send 0.5 ETH to {bob.address}")
        call_id = pending["action_requests"][0]["call_id"]
        tx = pending["action_requests"][0]["tx"]
        anvil.set_automine(False)
        first = wallet_send(anvil, tx, alice.private_key)
        mark = sio.mark()
        await sio.call("resume_decisions", decide(chat_id, pending, {"type": "approve", "tx_hash": first}))
        await sio.wait_event("tx_update", chat_id=chat_id, after=mark, status="submitted")
        fee = hex(int(tx["max_fee_per_gas"], 16) * 3 // 2)
        faster = wallet_send(anvil, tx, alice.private_key, max_fee_per_gas=fee, max_priority_fee_per_gas=fee)
        anvil.mine(1)
        done = await final_update(sio, chat_id, call_id, after=mark)
        assert done["status"] == "confirmed" and done["tx_hash"] == faster and done.get("replaces") == first, done
        answer_end = await sio.wait_event("message_end", chat_id=chat_id, after=mark)
        assert answer_end["finish_reason"] == "stop"
        _, detail = await http.get(f"/api/chats/{chat_id}", token)
        assert detail["transactions"][-1]["status"] == "confirmed"
        assert_wire(sio)
    assert native_balance(anvil, bob.address) - bob_before == ETH // 2


async def test_an_eip7702_transaction_is_refused_before_broadcast(
    make_server: Any, world: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    # Finding 4: a type-4 transaction delegating the user's account to another contract was broadcast.
    from test_intent import sign_set_code

    server = await make_server()
    token = await sign_in(server, alice)
    async with SioClient(server, token) as sio:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        pending = await ask_transfer(sio, chat_id, f"send 1 ETH to {bob.address}")
        tx = pending["action_requests"][0]["tx"]
        raw = sign_set_code(alice, delegate_to=world.reverter, nonce=int(tx["nonce"], 16), to=bob.address, value=ETH)
        nonce_before = anvil.rpc("eth_getTransactionCount", [alice.address, "pending"])
        mark = sio.mark()
        await sio.call("resume_decisions", decide(chat_id, pending, {"type": "approve", "signed_tx": "0x" + raw.hex()}))
        refused = await final_update(sio, chat_id, pending["action_requests"][0]["call_id"], after=mark)
        assert refused["status"] == "mismatch" and "7702" in refused["reason"], refused
        await sio.wait_event("message_end", chat_id=chat_id, after=mark)
        assert anvil.rpc("eth_getTransactionCount", [alice.address, "pending"]) == nonce_before, "never broadcast"
        assert_wire(sio)


async def test_approving_with_no_signature_where_only_the_wallet_signs_is_refused_in_words(
    make_server: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    server = await make_server()  # no local signer
    token = await sign_in(server, alice)
    bob_before = native_balance(anvil, bob.address)
    async with SioClient(server, token) as sio, Http(server) as http:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        pending = await ask_transfer(sio, chat_id, f"send 1 ETH to {bob.address}")
        mark = sio.mark()
        assert await sio.call("resume_decisions", decide(chat_id, pending, {"type": "approve"})) == {"ok": True}
        refused = await final_update(sio, chat_id, pending["action_requests"][0]["call_id"], after=mark)
        assert refused["status"] == "mismatch" and "tx_hash" not in refused and "no local signer" in refused["reason"]
        end = await sio.wait_event("message_end", chat_id=chat_id, after=mark)
        assert end["finish_reason"] == "stop"
        assert_wire(sio)
        _, detail = await http.get(f"/api/chats/{chat_id}", token)
        assert detail["transactions"] == [] and "pending_approval" not in detail
    assert native_balance(anvil, bob.address) == bob_before


async def test_approval_rules_judge_the_resolved_transfer_not_the_models_words(
    make_server: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    # Finding 6: with above = {native = "0.1", "*" = "100"}, transfer(amount="50", token="ETH") fell
    # under "*" and ran without approval.
    from langchain_core.messages import AIMessage

    from lunark.models.scripted import ScriptedChatModel

    model = ScriptedChatModel(replies=[
        AIMessage(content="", tool_calls=[
            {"name": "transfer", "args": {"to": bob.address, "amount": "50", "token": "ETH"}, "id": "big"}]),
        "Okay, not sent.",
        AIMessage(content="", tool_calls=[
            {"name": "transfer", "args": {"to": bob.address, "amount": "0.05", "token": "eth"}, "id": "small"}]),
        "Sent.",
    ])
    server = await make_server(model=model, signer={"local": "anvil"},
                               approvals={"rules": {"transfer": {"above": {"native": "0.1", "*": "100"}}}})
    token = await sign_in(server, alice)
    bob_before = native_balance(anvil, bob.address)
    async with SioClient(server, token) as sio:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        pending = await ask_transfer(sio, chat_id, "send 50 ETH")
        assert pending["action_requests"][0]["call_id"] == "big", "50 ETH waits for the user"
        mark = sio.mark()
        await sio.call("resume_decisions", decide(chat_id, pending, {"type": "reject"}))
        await sio.wait_event("message_end", chat_id=chat_id, after=mark)
        mark = sio.mark()
        await sio.call("send_message", {"chat_id": chat_id, "content": "send 0.05 ETH", "client_message_id": "s"})
        done = await final_update(sio, chat_id, "small", after=mark)
        assert done["status"] == "confirmed" and not sio.of("pending_approval", after=mark)
    assert native_balance(anvil, bob.address) - bob_before == 5 * 10**16


async def test_a_wallet_hash_after_a_reject_is_recorded_and_followed(
    make_server: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    # The user clicked reject in the card while the wallet's popup, still open, sent the transfer.
    server = await make_server()
    token = await sign_in(server, alice)
    async with SioClient(server, token) as sio:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        pending = await ask_transfer(sio, chat_id, f"send 0.5 ETH to {bob.address}")
        mark = sio.mark()
        await sio.call("resume_decisions", decide(chat_id, pending, {"type": "reject"}))
        await sio.wait_event("message_end", chat_id=chat_id, after=mark)
        tx_hash = wallet_send(anvil, pending["action_requests"][0]["tx"], alice.private_key)
        error = assert_error(await sio.call("resume_decisions", decide(
            chat_id, pending, {"type": "approve", "tx_hash": tx_hash})), "already_decided")
        assert "recorded" in error["message"]
        followed = await final_update(sio, chat_id, pending["action_requests"][0]["call_id"], after=mark)
        assert followed["status"] == "confirmed" and followed["tx_hash"] == tx_hash and followed.get("late") is True
        assert_wire(sio)


async def test_a_hash_the_network_never_sees_ends_dropped_and_moves_nothing(
    make_server: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    server = await make_server(chain={"track_timeout": 2, "verify_timeout": 1})
    token = await sign_in(server, alice)
    async with SioClient(server, token) as sio:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        pending = await ask_transfer(sio, chat_id, f"send 0.5 ETH to {bob.address}")
        mark = sio.mark()
        ghost = "0x" + "ab" * 32
        await sio.call("resume_decisions", decide(chat_id, pending, {"type": "approve", "tx_hash": ghost}))
        dropped = await final_update(sio, chat_id, pending["action_requests"][0]["call_id"], after=mark)
        assert dropped["status"] == "dropped" and "never seen" in dropped["reason"], dropped
        await sio.wait_event("message_end", chat_id=chat_id, after=mark)
        answer = "".join(e["text"] for e in sio.of("token", chat_id=chat_id, after=mark))
        assert "dropped" in answer and "nothing was sent" in answer, answer
        assert_wire(sio)
