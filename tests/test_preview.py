"""The balance-change preview over a real server on a real Anvil: what the card shows is what happens,
a change between the card and the signing is caught before anything is broadcast, and a node that
cannot simulate gives a card that says so."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from conftest import INITIAL_TOKENS, World, sign_in
from eth_utils import function_signature_to_4byte_selector
from server_harness import SioClient, assert_contiguous
from test_server_approvals import ask_transfer
from wallet import native_balance, sign_wire_tx, token_balance, wallet_send

from lunark.chain.anvil import Anvil, DevAccount
from lunark.contracts import deploy_contract
from lunark.fingerprint import action_fingerprint

ETH = 10**18
FEE_BPS = 100  # 1%


PREVIEW_CODES = frozenset({"unexpected_asset_movement"})
"""The warnings the preview gives (docs/safety.md); the recipient checks add their own next to them."""


def _call(anvil: Anvil, sender: str, to: str, signature: str, *words: int | str) -> None:
    data = "0x" + function_signature_to_4byte_selector(signature).hex()
    for word in words:
        data += (word[2:].lower() if isinstance(word, str) else hex(word)[2:]).rjust(64, "0")
    tx_hash = anvil.rpc("eth_sendTransaction", [{"from": sender, "to": to, "data": data}])
    # Automine answers before the block is sealed: wait for the receipt.
    deadline = time.monotonic() + 10
    while (receipt := anvil.rpc("eth_getTransactionReceipt", [tx_hash])) is None:
        assert time.monotonic() < deadline, f"{signature} was never mined"
        time.sleep(0.01)
    assert int(receipt["status"], 16) == 1


@pytest.fixture
def fee_token(anvil: Anvil, alice: DevAccount, accounts: list[DevAccount]) -> str:
    """A fee-on-transfer token "FEE" (1% to accounts[8]); alice holds 1,000,000."""
    deployer = accounts[9]
    token = deploy_contract(anvil.url, "FeeToken", "Fee Token", "FEE", 18, accounts[8].address, FEE_BPS,
                            private_key=deployer.private_key)
    _call(anvil, deployer.address, token, "mint(address,uint256)", alice.address, INITIAL_TOKENS)
    return token


def networks(world: World, fee_token: str, rpc_url: str | None = None) -> dict[str, Any]:
    return {"networks": [{
        "name": "anvil", "rpc_urls": [rpc_url or world.anvil.url],
        "tokens": [{"symbol": "TKN", "address": world.token, "decimals": 18},
                   {"symbol": "FEE", "address": fee_token, "decimals": 18}],
    }]}


def fee_paid(anvil: Anvil, tx_hash: str) -> int:
    receipt = anvil.rpc("eth_getTransactionReceipt", [tx_hash])
    return int(receipt["gasUsed"], 16) * int(receipt["effectiveGasPrice"], 16)


def rows(request: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(c["address"], c["asset"]): c for c in request["preview"]["changes"]}


async def test_the_preview_equals_what_the_confirmed_transfer_changed(
    make_server: Any, anvil: Anvil, world: World, fee_token: str, alice: DevAccount, bob: DevAccount,
    accounts: list[DevAccount],
) -> None:
    server = await make_server(signer={"local": "anvil"}, chain=networks(world, fee_token))
    token = await sign_in(server, alice)
    async with SioClient(server, token) as sio:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        for n, (text, asset, amount, received) in enumerate([
            ("1.5 ETH", "native", 3 * ETH // 2, 3 * ETH // 2),
            ("12 TKN", world.token, 12 * ETH, 12 * ETH),
            ("10 FEE", fee_token, 10 * ETH, 10 * ETH * (10_000 - FEE_BPS) // 10_000),
        ]):
            def balance(who: str, asset: str = asset) -> int:
                return native_balance(anvil, who) if asset == "native" else token_balance(anvil, asset, who)

            alice_before, bob_before = balance(alice.address), balance(bob.address)
            collector_before = balance(accounts[8].address)
            pending = await ask_transfer(sio, chat_id, f"send {text} to {bob.address}", f"m{n}")
            [request] = pending["action_requests"]
            preview = request["preview"]
            assert preview["simulated"] is True and "reason" not in preview
            # Only the asset that moves, for the user and the recipient, the user first; no fee in it.
            assert [(c["address"], c["asset"]) for c in preview["changes"]] == [
                (alice.address, asset), (bob.address, asset)]
            mine, theirs = rows(request)[(alice.address, asset)], rows(request)[(bob.address, asset)]
            assert (mine["delta"], theirs["delta"]) == (str(-amount), str(received))
            assert (int(mine["before"]), int(theirs["before"])) == (alice_before, bob_before)
            assert int(mine["after"]) == alice_before - amount and int(theirs["after"]) == bob_before + received
            assert mine["symbol"] == text.split()[1] and mine["decimals"] == 18
            assert int(preview["max_fee"]) == int(request["tx"]["gas"], 16) * int(request["tx"]["max_fee_per_gas"], 16)
            # The card's fingerprint is the canonical hash of exactly what it asks to approve.
            assert request["fingerprint"] == action_fingerprint("transfer", request["args"], 31337, request["tx"])
            # (The recipient checks' own warnings, e.g. first_time_recipient, are test_recipient_checks'.)
            codes = [(w["code"], w["severity"]) for w in request.get("warnings", []) if w["code"] in PREVIEW_CODES]
            if asset == fee_token:
                assert codes == [("unexpected_asset_movement", "warning")]
                [warning] = [w for w in request["warnings"] if w["code"] in PREVIEW_CODES]
                assert "the recipient receives 9.9 FEE" in warning["message"]
                assert f"{accounts[8].address[:6]}…{accounts[8].address[-4:]} receives 0.1 FEE" in warning["message"]
            else:
                assert codes == []

            mark = sio.mark()
            ack = await sio.call("resume_decisions", {"chat_id": chat_id, "approval_id": pending["approval_id"],
                                                      "decisions": [{"type": "approve"}]})
            assert ack == {"ok": True}
            confirmed = await sio.wait_event("tx_update", chat_id=chat_id, status="confirmed", after=mark)
            await sio.wait_event("message_end", chat_id=chat_id, after=mark)
            fee = fee_paid(anvil, confirmed["tx_hash"])
            receipt = anvil.rpc("eth_getTransactionReceipt", [confirmed["tx_hash"]])
            assert preview["gas_used"] == int(receipt["gasUsed"], 16)
            paid = fee if asset == "native" else 0
            assert balance(alice.address) - alice_before == int(mine["delta"]) - paid
            assert balance(bob.address) - bob_before == int(theirs["delta"])
            if asset == fee_token:
                assert balance(accounts[8].address) - collector_before == amount - received
        assert_contiguous(sio.seqs(chat_id))


async def _decide(sio: SioClient, chat_id: str, pending: dict[str, Any], decision: dict[str, Any]) -> int:
    mark = sio.mark()
    ack = await sio.call("resume_decisions", {"chat_id": chat_id, "approval_id": pending["approval_id"],
                                              "decisions": [decision]})
    assert ack == {"ok": True}
    return mark


async def test_a_change_between_the_card_and_the_signing_is_not_broadcast_and_gets_a_fresh_card(
    make_server: Any, anvil: Anvil, world: World, fee_token: str, alice: DevAccount, bob: DevAccount,
    accounts: list[DevAccount],
) -> None:
    server = await make_server(chain=networks(world, fee_token))  # only the wallet signs
    token = await sign_in(server, alice)
    async with SioClient(server, token) as sio:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        pending = await ask_transfer(sio, chat_id, f"send 100 FEE to {bob.address}")
        [request] = pending["action_requests"]
        assert rows(request)[(bob.address, fee_token)]["delta"] == str(99 * ETH)

        # The token's fee goes from 1% to 5% after the card was shown.
        _call(anvil, accounts[8].address, fee_token, "setFee(uint256)", 500)
        nonce = anvil.rpc("eth_getTransactionCount", [alice.address, "latest"])
        signed = sign_wire_tx(request["tx"], alice.private_key)
        mark = await _decide(sio, chat_id, pending, {"type": "approve", "signed_tx": signed})
        fresh = await sio.wait_event("pending_approval", chat_id=chat_id, after=mark)
        [result] = sio.of("tool_result", chat_id=chat_id, after=mark)
        assert result["call_id"] == request["call_id"] and result["status"] == "error"
        assert result["error"]["code"] == "preview_changed"
        assert "Nothing was signed or sent" in result["error"]["message"]
        assert any("would change by 95000000000000000000, the card showed 99000000000000000000" in d
                   for d in result["error"]["differences"])
        # Nothing went out: the signed bytes are unknown to the node and alice's nonce has not moved.
        assert anvil.rpc("eth_getTransactionCount", [alice.address, "latest"]) == nonce
        assert token_balance(anvil, fee_token, bob.address) == 0
        assert not sio.of("tx_update", chat_id=chat_id)

        # The fresh card shows what the transfer does now, and approving it goes through.
        assert fresh["approval_id"] != pending["approval_id"]
        [again] = fresh["action_requests"]
        assert rows(again)[(bob.address, fee_token)]["delta"] == str(95 * ETH)
        [moved] = [w for w in again["warnings"] if w["code"] in PREVIEW_CODES]
        assert "5 FEE" in moved["message"]
        mark = await _decide(sio, chat_id, fresh, {"type": "approve", "signed_tx": sign_wire_tx(
            again["tx"], alice.private_key)})
        await sio.wait_event("tx_update", chat_id=chat_id, status="confirmed", after=mark)
        assert token_balance(anvil, fee_token, bob.address) == 95 * ETH
        assert_contiguous(sio.seqs(chat_id))


async def test_a_balance_that_drifts_is_no_change_until_the_transfer_would_overdraw(
    make_server: Any, anvil: Anvil, world: World, fee_token: str, alice: DevAccount, bob: DevAccount,
) -> None:
    server = await make_server(chain=networks(world, fee_token))
    token = await sign_in(server, alice)
    async with SioClient(server, token) as sio:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        # Alice's balance moves for another reason, but sending 1 ETH still moves exactly 1 ETH.
        pending = await ask_transfer(sio, chat_id, f"send 1 ETH to {bob.address}", "m1")
        anvil.set_balance(alice.address, 50 * ETH)
        bob_before = native_balance(anvil, bob.address)
        mark = await _decide(sio, chat_id, pending, {"type": "approve", "signed_tx": sign_wire_tx(
            pending["action_requests"][0]["tx"], alice.private_key)})
        await sio.wait_event("tx_update", chat_id=chat_id, status="confirmed", after=mark)
        await sio.wait_event("message_end", chat_id=chat_id, after=mark)
        assert native_balance(anvil, bob.address) - bob_before == ETH

        # Now it would overdraw: refused before broadcasting, and no new card can be made.
        pending = await ask_transfer(sio, chat_id, f"send 10 ETH to {bob.address}", "m2")
        anvil.set_balance(alice.address, 5 * ETH)
        nonce = anvil.rpc("eth_getTransactionCount", [alice.address, "latest"])
        mark = await _decide(sio, chat_id, pending, {"type": "approve", "signed_tx": sign_wire_tx(
            pending["action_requests"][0]["tx"], alice.private_key)})
        await sio.wait_event("message_end", chat_id=chat_id, after=mark)
        first, second = sio.of("tool_result", chat_id=chat_id, after=mark)
        assert first["error"]["code"] == "preview_changed"
        assert second["error"]["code"] == "chain_error" and "holds 5 ETH" in second["error"]["message"]
        assert not sio.of("pending_approval", chat_id=chat_id, after=mark)
        assert anvil.rpc("eth_getTransactionCount", [alice.address, "latest"]) == nonce


async def test_a_wallet_broadcast_that_no_longer_matches_the_card_is_reported(
    make_server: Any, anvil: Anvil, world: World, fee_token: str, alice: DevAccount, bob: DevAccount,
    accounts: list[DevAccount],
) -> None:
    server = await make_server(chain=networks(world, fee_token))
    token = await sign_in(server, alice)
    async with SioClient(server, token) as sio:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        pending = await ask_transfer(sio, chat_id, f"send 100 FEE to {bob.address}")
        [request] = pending["action_requests"]
        _call(anvil, accounts[8].address, fee_token, "setFee(uint256)", 300)
        tx_hash = wallet_send(anvil, request["tx"], alice.private_key)  # already mined: it cannot be stopped
        mark = await _decide(sio, chat_id, pending, {"type": "approve", "tx_hash": tx_hash})
        await sio.wait_event("tx_update", chat_id=chat_id, status="confirmed", after=mark)
        await sio.wait_event("message_end", chat_id=chat_id, after=mark)
        [result] = sio.of("tool_result", chat_id=chat_id, after=mark)
        assert result["result"]["status"] == "confirmed"
        assert any("would change by 97000000000000000000, the card showed 99000000000000000000" in d
                   for d in result["result"]["preview_changed"])
        assert "did not match the card" in result["result"]["message"]
        assert token_balance(anvil, fee_token, bob.address) == 97 * ETH


@pytest.fixture
async def no_simulate_proxy(world: World) -> AsyncIterator[str]:
    """A JSON-RPC endpoint that forwards everything to the test Anvil but answers eth_simulateV1 as a
    node without it does: -32601 method not found."""
    async with aiohttp.ClientSession() as upstream:
        async def handle(request: web.Request) -> web.Response:
            body = await request.json()
            calls = body if isinstance(body, list) else [body]
            if any(c.get("method") == "eth_simulateV1" for c in calls):
                answers = [
                    {"jsonrpc": "2.0", "id": c.get("id"), "error": {"code": -32601, "message": "Method not found"}}
                    if c.get("method") == "eth_simulateV1" else await _forward(upstream, world.anvil.url, c)
                    for c in calls
                ]
                return web.json_response(answers if isinstance(body, list) else answers[0])
            return web.json_response(await _forward(upstream, world.anvil.url, body))

        app = web.Application()
        app.router.add_post("/", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            await runner.cleanup()


async def _forward(session: aiohttp.ClientSession, url: str, body: Any) -> Any:
    async with session.post(url, data=json.dumps(body), headers={"Content-Type": "application/json"}) as response:
        return await response.json()


async def test_a_node_without_eth_simulate_gives_a_card_that_says_there_is_no_preview(
    make_server: Any, anvil: Anvil, world: World, fee_token: str, no_simulate_proxy: str, alice: DevAccount,
    bob: DevAccount,
) -> None:
    server = await make_server(signer={"local": "anvil"}, chain=networks(world, fee_token, no_simulate_proxy))
    token = await sign_in(server, alice)
    async with SioClient(server, token) as sio:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        pending = await ask_transfer(sio, chat_id, f"send 10 FEE to {bob.address}")
        [request] = pending["action_requests"]
        # No guess: no changes, no warning built on them, and the reason.
        assert request["preview"] == {
            "simulated": False, "changes": [], "reason": "this node does not support eth_simulateV1",
            "max_fee": str(int(request["tx"]["gas"], 16) * int(request["tx"]["max_fee_per_gas"], 16)),
        }
        assert not [w for w in request.get("warnings", []) if w["code"] in PREVIEW_CODES]
        # Today's eth_call and estimateGas still checked it: it goes through as before.
        mark = await _decide(sio, chat_id, pending, {"type": "approve"})
        await sio.wait_event("tx_update", chat_id=chat_id, status="confirmed", after=mark)
        assert token_balance(anvil, fee_token, bob.address) == 10 * ETH * 99 // 100

        # A transfer that would fail is still refused before anyone is asked.
        mark = sio.mark()
        await sio.call("send_message", {"chat_id": chat_id, "content": f"send 10000000 FEE to {bob.address}",
                                        "client_message_id": "m2"})
        await sio.wait_event("message_end", chat_id=chat_id, after=mark)
        assert not sio.of("pending_approval", chat_id=chat_id, after=mark)


async def test_a_token_paused_after_the_card_was_shown_is_caught_at_signing(
    make_server: Any, anvil: Anvil, world: World, fee_token: str, alice: DevAccount, bob: DevAccount,
    accounts: list[DevAccount],
) -> None:
    """Paused between the card and the signing: the re-check sees the revert, nothing is signed, and
    no fresh card can be made (preparing it again fails the same way)."""
    server = await make_server(signer={"local": "anvil"}, chain=networks(world, fee_token))
    token = await sign_in(server, alice)
    async with SioClient(server, token) as sio:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        pending = await ask_transfer(sio, chat_id, f"send 1 FEE to {bob.address}", "m1")
        _call(anvil, accounts[8].address, fee_token, "setPaused(bool)", 1)
        mark = await _decide(sio, chat_id, pending, {"type": "approve"})
        await sio.wait_event("message_end", chat_id=chat_id, after=mark)
        first, second = sio.of("tool_result", chat_id=chat_id, after=mark)
        assert first["error"]["code"] == "preview_changed"
        assert "FeeToken: paused" in first["error"]["message"]
        assert "FeeToken: paused" in second["error"]["message"]  # re-preparing it fails the same way
        assert token_balance(anvil, fee_token, bob.address) == 0
        assert not sio.of("pending_approval", chat_id=chat_id, after=mark)


def test_the_fingerprint_is_the_sha256_of_the_canonical_json() -> None:
    import hashlib

    tx = {"to": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "value": "0x1"}
    expected = hashlib.sha256(
        b'{"args":{"amount":"1","to":"0x70997970C51812dc3A010C7d01b50e0d17dc79C8"},"chain_id":1,'
        b'"tool":"transfer","tx":{"to":"0x70997970C51812dc3A010C7d01b50e0d17dc79C8","value":"0x1"}}'
    ).hexdigest()
    args = {"to": tx["to"], "amount": "1"}
    assert action_fingerprint("transfer", args, 1, tx) == expected
    assert action_fingerprint("transfer", {**args, "amount": "2"}, 1, tx) != expected
