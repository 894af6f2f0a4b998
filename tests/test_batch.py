"""Several transfers asked in one message, through the SDK against a real server and Anvil: successive
nonces, each one settled; a rejected first one and an approved second one; and what a wallet that
ignores the rule gets (a gap is never broadcast by the server, never silently accepted from a wallet)."""

from __future__ import annotations

from typing import Any

import pytest
from test_sdk import client_for, local_url
from wallet import native_balance, sign_wire_tx, token_balance, wallet_send

from lunark.chain.anvil import Anvil, DevAccount
from lunark.client import sign_and_send_all
from lunark.nonces import nonce_floors
from lunark.protocol import PendingApproval, ToolResult, TxUpdate

ETH = 10**18


def nonce_of(tx: Any) -> int:
    return int(tx.nonce, 16)


def latest_nonce(anvil: Anvil, address: str) -> int:
    return int(anvil.rpc("eth_getTransactionCount", [address, "latest"]), 16)


@pytest.fixture
async def server(make_server: Any, anvil: Anvil) -> Any:
    return await make_server()


async def ask_two(session: Any, bob: DevAccount, carol: DevAccount) -> PendingApproval:
    await session.turn(f"send 0.5 ETH to {bob.address} and 3 TKN to {carol.address}")
    approval = session.pending_approval
    assert isinstance(approval, PendingApproval) and len(approval.action_requests) == 2
    return approval


async def test_two_transfers_take_successive_nonces_and_both_settle(
    server: Any, anvil: Anvil, world: Any, alice: DevAccount, bob: DevAccount, carol: DevAccount
) -> None:
    eth, tkn = native_balance(anvil, bob.address), token_balance(anvil, world.token, carol.address)
    nonce = latest_nonce(anvil, alice.address)
    async with client_for(local_url(server), alice) as client:
        session = await client.join()
        approval = await ask_two(session, bob, carol)
        first, second = (r.tx for r in approval.action_requests)
        assert first is not None and second is not None
        assert (nonce_of(first), nonce_of(second)) == (nonce, nonce + 1)
        # Each card is simulated on its own: the second still shows its own balance changes.
        assert all(r.preview is not None and r.preview.simulated for r in approval.action_requests)

        decisions = await sign_and_send_all(approval, [{"type": "approve"}] * 2, anvil.url, alice.private_key)
        await session.decide(approval.approval_id, decisions)
        after = await session.until_message_end()

    results = [e for e in after if isinstance(e, ToolResult)]
    assert [r.status for r in results] == ["success", "success"]
    confirmed = [e for e in after if isinstance(e, TxUpdate) and e.status == "confirmed"]
    assert {e.tx_hash for e in confirmed} == {d["tx_hash"] for d in decisions}
    assert native_balance(anvil, bob.address) - eth == ETH // 2
    assert token_balance(anvil, world.token, carol.address) - tkn == 3 * ETH
    assert latest_nonce(anvil, alice.address) == nonce + 2


async def test_reject_the_first_approve_the_second_through_the_sdk(
    server: Any, anvil: Anvil, world: Any, alice: DevAccount, bob: DevAccount, carol: DevAccount
) -> None:
    eth, tkn = native_balance(anvil, bob.address), token_balance(anvil, world.token, carol.address)
    nonce = latest_nonce(anvil, alice.address)
    async with client_for(local_url(server), alice) as client:
        session = await client.join()
        approval = await ask_two(session, bob, carol)
        decisions = await sign_and_send_all(
            approval, [{"type": "reject", "message": "not bob"}, {"type": "approve"}], anvil.url, alice.private_key)
        sent = anvil.rpc("eth_getTransactionByHash", [decisions[1]["tx_hash"]])
        assert int(sent["nonce"], 16) == nonce, "the second goes out at the nonce the first would have had"
        await session.decide(approval.approval_id, decisions)
        after = await session.until_message_end()

    assert [r.status for r in after if isinstance(r, ToolResult)] == ["rejected", "success"]
    assert native_balance(anvil, bob.address) == eth
    assert token_balance(anvil, world.token, carol.address) - tkn == 3 * ETH
    assert latest_nonce(anvil, alice.address) == nonce + 1


async def test_a_wallet_that_leaves_a_gap_is_told_and_nothing_is_hidden(
    server: Any, anvil: Anvil, world: Any, alice: DevAccount, bob: DevAccount, carol: DevAccount
) -> None:
    """A wallet that signs the second card at its prepared nonce after rejecting the first has broadcast a
    transaction that waits behind a gap: it is not accepted as the transfer, the reason says so and how to
    cancel it, and it is followed."""
    tkn = token_balance(anvil, world.token, carol.address)
    nonce = latest_nonce(anvil, alice.address)
    async with client_for(local_url(server), alice) as client:
        session = await client.join()
        approval = await ask_two(session, bob, carol)
        second = approval.action_requests[1].tx
        assert second is not None
        tx_hash = wallet_send(anvil, second.to_wire(), alice.private_key)  # nonce + 1: a gap at nonce
        try:
            await session.decide(approval.approval_id, [{"type": "reject"}, {"type": "approve", "tx_hash": tx_hash}])
            after = await session.until_message_end()
        finally:
            anvil.rpc("anvil_dropTransaction", [tx_hash])

    update = next(e for e in after if isinstance(e, TxUpdate) and e.tx_hash == tx_hash)
    assert update.status == "mismatch"
    assert f"its nonce {nonce + 1} is above your account's next nonce {nonce}" in str(update.reason)
    assert "Cancel it in your wallet" in str(update.reason)
    result = [r for r in after if isinstance(r, ToolResult)][-1]
    assert result.status == "error" and "was not accepted" in str(result.result)
    assert "signed something else" not in str(result.result)
    assert token_balance(anvil, world.token, carol.address) == tkn
    assert latest_nonce(anvil, alice.address) == nonce


async def test_signed_bytes_behind_a_gap_are_never_broadcast_and_a_fresh_card_comes(
    server: Any, anvil: Anvil, world: Any, alice: DevAccount, bob: DevAccount, carol: DevAccount
) -> None:
    tkn = token_balance(anvil, world.token, carol.address)
    nonce = latest_nonce(anvil, alice.address)
    async with client_for(local_url(server), alice) as client:
        session = await client.join()
        approval = await ask_two(session, bob, carol)
        second = approval.action_requests[1].tx
        assert second is not None
        raw = sign_wire_tx(second.to_wire(), alice.private_key)  # at nonce + 1, though the first is rejected
        await session.decide(approval.approval_id, [{"type": "reject"}, {"type": "approve", "signed_tx": raw}])
        await session.until_message_end()
        fresh = session.pending_approval
        assert isinstance(fresh, PendingApproval) and fresh.approval_id != approval.approval_id
        assert anvil.rpc("txpool_content", [])["queued"] == {}, "the gapped bytes were not sent"
        [request] = fresh.action_requests
        assert request.tx is not None and nonce_of(request.tx) == nonce and "3 TKN" in request.summary
        decisions = await sign_and_send_all(fresh, [{"type": "approve"}], anvil.url, alice.private_key)
        await session.decide(fresh.approval_id, decisions)
        after = await session.until_message_end()

    assert [r.status for r in after if isinstance(r, ToolResult)][-1] == "success"
    assert token_balance(anvil, world.token, carol.address) - tkn == 3 * ETH
    assert latest_nonce(anvil, alice.address) == nonce + 1


async def test_the_local_signer_signs_the_second_at_the_first_ones_nonce(
    make_server: Any, anvil: Anvil, world: Any, alice: DevAccount, bob: DevAccount, carol: DevAccount
) -> None:
    server = await make_server(signer={"local": "anvil"})
    tkn = token_balance(anvil, world.token, carol.address)
    nonce = latest_nonce(anvil, alice.address)
    async with client_for(local_url(server), alice) as client:
        session = await client.join()
        approval = await ask_two(session, bob, carol)
        await session.decide(approval.approval_id, [{"type": "reject"}, {"type": "approve"}])
        after = await session.until_message_end()
    assert [r.status for r in after if isinstance(r, ToolResult)] == ["rejected", "success"]
    assert token_balance(anvil, world.token, carol.address) - tkn == 3 * ETH
    assert latest_nonce(anvil, alice.address) == nonce + 1


def test_nonce_floors_count_only_the_same_account_on_the_same_chain() -> None:
    a, b = "0x" + "aa" * 20, "0x" + "bb" * 20

    def tx(chain: int, sender: str, nonce: int) -> dict[str, str]:
        return {"chain_id": hex(chain), "from": sender, "nonce": hex(nonce)}

    txs = [tx(1, a, 5), None, tx(2, a, 9), tx(1, a, 6), tx(1, b.upper().replace("0X", "0x"), 3), tx(1, a, 7)]
    assert nonce_floors(txs, [True] * 6) == [5, None, 9, 6, 3, 7]
    assert nonce_floors(txs, [False, True, False, True, False, True]) == [5, None, 9, 5, 3, 6]
    assert nonce_floors(txs, [True, True, True, False, True, True]) == [5, None, 9, 6, 3, 6]
