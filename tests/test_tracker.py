"""The tracker against a real Anvil: confirmations, reverts, speed-ups, replacements, drops, reorgs, resumes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from eth_account import Account
from eth_utils import function_signature_to_4byte_selector
from web3 import AsyncHTTPProvider, AsyncWeb3

from lunark.chain.anvil import Anvil, DevAccount, free_port
from lunark.chain.tracker import (
    MAX_REPLACEMENT_SCAN_BLOCKS,
    _find_mined_at_nonce,
    _Poller,
    track_transaction,
)
from lunark.chain.types import TransferIntent, TxProgress, TxStatus, encode_erc20_transfer
from lunark.errors import InvalidInput, RpcUnavailable
from lunark.networks import ANVIL_CHAIN_ID, Network, NetworkRegistry

GWEI = 10**9
ONE = 10**18
STEP = 5.0  # seconds any single update may take before the test fails instead of hanging


@pytest.fixture
async def w3(anvil: Anvil) -> AsyncIterator[AsyncWeb3[Any]]:
    web3 = AsyncWeb3(AsyncHTTPProvider(anvil.url))
    yield web3
    await web3.provider.disconnect()


@pytest.fixture
def network(registry: NetworkRegistry) -> Network:
    return registry.get("anvil")


@pytest.fixture
def no_pending(anvil: Anvil) -> Iterator[Anvil]:
    """Automine off; whatever is left in the mempool is dropped so no later test sees it."""
    anvil.set_automine(False)
    try:
        yield anvil
    finally:
        anvil.rpc("anvil_dropAllTransactions")


async def send(
    w3: AsyncWeb3[Any],
    account: DevAccount,
    *,
    to: str,
    value: int = 0,
    data: str = "0x",
    nonce: int | None = None,
    gas: int = 100_000,
    max_fee: int = 10 * GWEI,
    tip: int = GWEI,
) -> tuple[str, int]:
    if nonce is None:
        nonce = await w3.eth.get_transaction_count(account.address, "pending")
    signed = Account.sign_transaction(
        {
            "type": 2,
            "chainId": ANVIL_CHAIN_ID,
            "nonce": nonce,
            "to": to,
            "value": value,
            "data": data,
            "gas": gas,
            "maxFeePerGas": max_fee,
            "maxPriorityFeePerGas": tip,
        },
        account.private_key,
    )
    tx_hash = await w3.eth.send_raw_transaction(signed.raw_transaction)
    return tx_hash.to_0x_hex(), nonce


async def step(updates: AsyncIterator[TxProgress]) -> TxProgress:
    async with asyncio.timeout(STEP):
        return await anext(updates)


async def assert_finished(updates: AsyncIterator[TxProgress]) -> None:
    with pytest.raises(StopAsyncIteration):
        await step(updates)


async def test_native_transfer_is_submitted_mined_then_confirmed(
    w3: AsyncWeb3[Any], anvil: Anvil, network: Network, alice: DevAccount, bob: DevAccount
) -> None:
    tx_hash, nonce = await send(w3, alice, to=bob.address, value=ONE)
    # Anvil's automine answers the send before the block is sealed: wait, don't read at once.
    receipt = await w3.eth.wait_for_transaction_receipt(tx_hash, timeout=STEP)  # type: ignore[arg-type]
    block = receipt["blockNumber"]
    updates = track_transaction(
        w3, network, tx_hash, sender=alice.address, nonce=nonce, confirmations=3, poll_interval=0.02
    )

    first = await step(updates)
    assert (first.status, first.tx_hash, first.chain_id) == (
        TxStatus.SUBMITTED,
        tx_hash,
        ANVIL_CHAIN_ID,
    )
    assert first.confirmations == 0

    mined = await step(updates)
    assert (mined.status, mined.confirmations, mined.block_number) == (TxStatus.MINED, 1, block)
    assert mined.gas_used == 21_000

    anvil.mine()
    second = await step(updates)
    assert (second.status, second.confirmations) == (TxStatus.MINED, 2)

    anvil.mine()
    confirmed = await step(updates)
    assert (confirmed.status, confirmed.confirmations, confirmed.block_number) == (
        TxStatus.CONFIRMED,
        3,
        block,
    )
    assert confirmed.to_dict()["status"] == "confirmed"
    await assert_finished(updates)


async def test_one_confirmation_network_confirms_right_after_mined(
    w3: AsyncWeb3[Any], network: Network, alice: DevAccount, bob: DevAccount
) -> None:
    assert network.confirmations == 1
    tx_hash, nonce = await send(w3, alice, to=bob.address, value=ONE)

    updates = track_transaction(
        w3, network, tx_hash, sender=alice.address, nonce=nonce, poll_interval=0.02
    )

    statuses = [(u.status, u.confirmations) async for u in updates]
    assert statuses == [(TxStatus.SUBMITTED, 0), (TxStatus.MINED, 1), (TxStatus.CONFIRMED, 1)]


async def test_reverted_call_is_failed_with_reason(
    w3: AsyncWeb3[Any], world: Any, network: Network, alice: DevAccount
) -> None:
    selector = "0x" + function_signature_to_4byte_selector("alwaysReverts()").hex()
    tx_hash, nonce = await send(w3, alice, to=world.reverter, data=selector, gas=100_000)

    updates = [
        u
        async for u in track_transaction(
            w3, network, tx_hash, sender=alice.address, nonce=nonce, poll_interval=0.02
        )
    ]

    assert [u.status for u in updates] == [TxStatus.SUBMITTED, TxStatus.FAILED]
    failed = updates[-1]
    assert failed.status.is_final
    assert failed.block_number is not None and failed.gas_used is not None
    assert failed.reason is not None and "Reverter: always reverts" in failed.reason


async def test_erc20_transfer_beyond_balance_is_failed(
    w3: AsyncWeb3[Any], world: Any, network: Network, alice: DevAccount, bob: DevAccount
) -> None:
    data = encode_erc20_transfer(bob.address, 10**9 * ONE)  # alice holds 1,000,000 TKN
    tx_hash, nonce = await send(w3, alice, to=world.token, data=data, gas=100_000)

    updates = [
        u
        async for u in track_transaction(
            w3, network, tx_hash, sender=alice.address, nonce=nonce, poll_interval=0.02
        )
    ]

    assert [u.status for u in updates] == [TxStatus.SUBMITTED, TxStatus.FAILED]
    assert updates[-1].reason


def native_intent(sender: DevAccount, recipient: DevAccount, amount: int = ONE) -> TransferIntent:
    return TransferIntent(
        chain_id=ANVIL_CHAIN_ID,
        sender=sender.address,
        recipient=recipient.address,
        amount=amount,
        symbol="ETH",
        decimals=18,
    )


async def collect(updates: AsyncIterator[TxProgress]) -> list[TxProgress]:
    async with asyncio.timeout(STEP):
        return [u async for u in updates]


async def test_same_nonce_replacement_is_replaced(
    w3: AsyncWeb3[Any],
    no_pending: Anvil,
    network: Network,
    alice: DevAccount,
    bob: DevAccount,
    carol: DevAccount,
) -> None:
    tx_a, nonce = await send(w3, alice, to=bob.address, value=ONE, max_fee=10 * GWEI, tip=GWEI)
    tx_b, _ = await send(
        w3, alice, to=carol.address, value=0, nonce=nonce, max_fee=12 * GWEI, tip=2 * GWEI
    )
    updates = track_transaction(
        w3, network, tx_a, sender=alice.address, nonce=nonce, poll_interval=0.02, timeout=10
    )
    assert (await step(updates)).status == TxStatus.SUBMITTED

    no_pending.mine()
    replaced = await step(updates)

    assert replaced.status == TxStatus.REPLACED
    assert replaced.replaced_by == tx_b
    assert replaced.reason == (
        f"Another transaction with the same nonce ({nonce}) was mined instead; "
        "it sends 0 ETH to 0x3C44…93BC."
    )
    await assert_finished(updates)


async def test_speed_up_is_followed_to_confirmed_on_the_new_hash(
    w3: AsyncWeb3[Any], no_pending: Anvil, network: Network, alice: DevAccount, bob: DevAccount
) -> None:
    before = await w3.eth.get_balance(bob.address)
    tx_a, nonce = await send(w3, alice, to=bob.address, value=ONE, max_fee=10 * GWEI, tip=GWEI)
    updates = track_transaction(
        w3, network, tx_a, sender=alice.address, nonce=nonce, intent=native_intent(alice, bob),
        poll_interval=0.02, timeout=10,
    )
    assert (await step(updates)).tx_hash == tx_a

    # The wallet's "speed up": the same transfer at the same nonce, paying more.
    tx_b, _ = await send(w3, alice, to=bob.address, value=ONE, nonce=nonce, max_fee=20 * GWEI, tip=3 * GWEI)
    sped_up = await step(updates)
    assert (sped_up.status, sped_up.tx_hash, sped_up.replaces) == (TxStatus.SUBMITTED, tx_b, tx_a)
    assert sped_up.to_dict()["replaces"] == tx_a

    no_pending.mine()
    rest = await collect(updates)

    assert [(u.status, u.tx_hash, u.replaces) for u in rest] == [
        (TxStatus.MINED, tx_b, tx_a),
        (TxStatus.CONFIRMED, tx_b, tx_a),
    ]
    assert await w3.eth.get_balance(bob.address) == before + ONE  # it paid, once


async def test_speed_up_mined_while_no_one_tracked_is_found_when_tracking_resumes(
    w3: AsyncWeb3[Any], no_pending: Anvil, network: Network, alice: DevAccount, bob: DevAccount
) -> None:
    first_block = await w3.eth.get_block_number()  # what a settlement persists before broadcasting
    tx_a, nonce = await send(w3, alice, to=bob.address, value=ONE, max_fee=10 * GWEI, tip=GWEI)
    tx_b, _ = await send(w3, alice, to=bob.address, value=ONE, nonce=nonce, max_fee=20 * GWEI, tip=3 * GWEI)
    no_pending.mine()
    no_pending.mine(MAX_REPLACEMENT_SCAN_BLOCKS + 50)  # the process was down a long time

    updates = await collect(
        track_transaction(
            w3, network, tx_a, sender=alice.address, nonce=nonce, intent=native_intent(alice, bob),
            first_block=first_block, poll_interval=0.02, timeout=10,
        )
    )

    assert [(u.status, u.tx_hash, u.replaces) for u in updates] == [
        (TxStatus.SUBMITTED, tx_a, None),
        (TxStatus.SUBMITTED, tx_b, tx_a),
        (TxStatus.MINED, tx_b, tx_a),
        (TxStatus.CONFIRMED, tx_b, tx_a),
    ]
    assert updates[-1].confirmations == MAX_REPLACEMENT_SCAN_BLOCKS + 51


async def test_a_cancel_ends_replaced_saying_what_it_did(
    w3: AsyncWeb3[Any], no_pending: Anvil, network: Network, alice: DevAccount, bob: DevAccount
) -> None:
    tx_a, nonce = await send(w3, alice, to=bob.address, value=ONE, max_fee=10 * GWEI, tip=GWEI)
    updates = track_transaction(
        w3, network, tx_a, sender=alice.address, nonce=nonce, intent=native_intent(alice, bob),
        poll_interval=0.02, timeout=10,
    )
    assert (await step(updates)).status == TxStatus.SUBMITTED
    # The wallet's "cancel": nothing to yourself at the same nonce.
    tx_c, _ = await send(w3, alice, to=alice.address, value=0, nonce=nonce, max_fee=20 * GWEI, tip=3 * GWEI)

    no_pending.mine()
    replaced = await step(updates)

    assert (replaced.status, replaced.tx_hash, replaced.replaced_by) == (TxStatus.REPLACED, tx_a, tx_c)
    assert replaced.reason == (
        f"Another transaction with the same nonce ({nonce}) was mined instead; it cancels: sends 0 ETH "
        "to yourself. The approved transfer was not made."
    )
    await assert_finished(updates)


async def test_same_transfer_carrying_a_delegation_is_not_a_speed_up(
    w3: AsyncWeb3[Any], world: Any, no_pending: Anvil, network: Network, alice: DevAccount, bob: DevAccount
) -> None:
    tx_a, nonce = await send(w3, alice, to=bob.address, value=ONE, max_fee=10 * GWEI, tip=GWEI)
    authorization = Account.sign_authorization(
        {"chainId": ANVIL_CHAIN_ID, "address": world.reverter, "nonce": nonce + 1}, alice.private_key
    )
    signed = Account.sign_transaction(
        {
            "type": 4, "chainId": ANVIL_CHAIN_ID, "nonce": nonce, "to": bob.address, "value": ONE,
            "gas": 100_000, "maxFeePerGas": 20 * GWEI, "maxPriorityFeePerGas": 3 * GWEI,
            "authorizationList": [authorization],
        },
        alice.private_key,
    )
    tx_d = (await w3.eth.send_raw_transaction(signed.raw_transaction)).to_0x_hex()
    no_pending.mine()

    updates = await collect(
        track_transaction(
            w3, network, tx_a, sender=alice.address, nonce=nonce, intent=native_intent(alice, bob),
            poll_interval=0.02, timeout=10,
        )
    )

    assert [u.status for u in updates] == [TxStatus.SUBMITTED, TxStatus.REPLACED]
    assert updates[-1].replaced_by == tx_d
    assert updates[-1].reason is not None
    assert "it delegates an account to 0x" in updates[-1].reason
    assert "(EIP-7702) and sends 1 ETH to 0x7099…79C8" in updates[-1].reason


async def test_the_block_scan_finds_the_replacement_where_past_state_is_unavailable(
    w3: AsyncWeb3[Any], no_pending: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    first_block = await w3.eth.get_block_number()
    _, nonce = await send(w3, alice, to=bob.address, value=ONE)
    tx_b, _ = await send(w3, alice, to=bob.address, value=2 * ONE, nonce=nonce, max_fee=20 * GWEI)
    no_pending.mine()
    no_pending.mine(5)
    poller = _Poller(w3, tx_b, silence_limit=5)

    for bisect in (True, False):
        ok, found = await _find_mined_at_nonce(poller, alice.address, nonce, first_block, bisect=bisect)
        assert ok and found is not None
        assert (found.tx_hash, found.value, found.nonce) == (tx_b, 2 * ONE, nonce)
    ok, none = await _find_mined_at_nonce(poller, alice.address, nonce + 1, first_block)
    assert (ok, none) == (True, None)


async def test_pending_in_the_pool_past_the_timeout_is_not_dropped(
    w3: AsyncWeb3[Any], no_pending: Anvil, network: Network, alice: DevAccount, bob: DevAccount
) -> None:
    tx_hash, nonce = await send(w3, alice, to=bob.address, value=ONE, max_fee=GWEI, tip=GWEI)
    seen: list[TxProgress] = []

    async def follow() -> None:
        async for u in track_transaction(
            w3, network, tx_hash, sender=alice.address, nonce=nonce, poll_interval=0.02, timeout=0.2
        ):
            seen.append(u)

    following = asyncio.create_task(follow())
    try:
        await asyncio.sleep(1.0)  # five timeouts with the transaction waiting in the pool
        assert [u.status for u in seen] == [TxStatus.SUBMITTED]

        no_pending.mine()  # a block at last
        async with asyncio.timeout(STEP):
            await following
    finally:
        following.cancel()
    assert [u.status for u in seen] == [TxStatus.SUBMITTED, TxStatus.MINED, TxStatus.CONFIRMED]


async def test_dropped_from_the_pool_is_dropped_after_the_timeout(
    w3: AsyncWeb3[Any], no_pending: Anvil, network: Network, alice: DevAccount, bob: DevAccount
) -> None:
    tx_hash, nonce = await send(w3, alice, to=bob.address, value=ONE)
    no_pending.rpc("anvil_dropTransaction", [tx_hash])

    updates = await collect(
        track_transaction(
            w3, network, tx_hash, sender=alice.address, nonce=nonce, poll_interval=0.05, timeout=0.5
        )
    )

    assert [u.status for u in updates] == [TxStatus.SUBMITTED, TxStatus.DROPPED]
    assert updates[-1].reason == (
        f"the node has not had it for 0.5s and nonce {nonce} is still unused: "
        "it is not in the mempool and was not mined"
    )


async def test_tracking_again_an_already_confirmed_transaction_ends_confirmed(
    w3: AsyncWeb3[Any], anvil: Anvil, network: Network, alice: DevAccount, bob: DevAccount
) -> None:
    first_block = await w3.eth.get_block_number()
    tx_hash, nonce = await send(w3, alice, to=bob.address, value=ONE)
    receipt = await w3.eth.wait_for_transaction_receipt(tx_hash, timeout=STEP)  # type: ignore[arg-type]
    anvil.mine(4)  # confirmed while the process was down

    updates = await collect(
        track_transaction(
            w3, network, tx_hash, sender=alice.address, nonce=nonce, intent=native_intent(alice, bob),
            first_block=first_block, confirmations=3, poll_interval=0.02,
        )
    )

    assert [(u.status, u.confirmations) for u in updates] == [
        (TxStatus.SUBMITTED, 0),
        (TxStatus.MINED, 5),
        (TxStatus.CONFIRMED, 5),
    ]
    assert updates[-1].block_number == receipt["blockNumber"]


async def test_reorged_out_goes_back_to_submitted_then_confirms(
    w3: AsyncWeb3[Any], anvil: Anvil, network: Network, alice: DevAccount, bob: DevAccount
) -> None:
    nonce = await w3.eth.get_transaction_count(alice.address, "pending")
    signed = Account.sign_transaction(
        {
            "type": 2,
            "chainId": ANVIL_CHAIN_ID,
            "nonce": nonce,
            "to": bob.address,
            "value": ONE,
            "gas": 21_000,
            "maxFeePerGas": 10 * GWEI,
            "maxPriorityFeePerGas": GWEI,
        },
        alice.private_key,
    )
    before = anvil.snapshot()
    tx_hash = (await w3.eth.send_raw_transaction(signed.raw_transaction)).to_0x_hex()
    updates = track_transaction(
        w3, network, tx_hash, sender=alice.address, nonce=nonce, confirmations=2, poll_interval=0.02
    )
    assert (await step(updates)).status == TxStatus.SUBMITTED
    assert (await step(updates)).status == TxStatus.MINED

    anvil.revert(before)  # the block that held it is gone
    back = await step(updates)
    assert (back.status, back.confirmations, back.block_number) == (TxStatus.SUBMITTED, 0, None)

    await w3.eth.send_raw_transaction(signed.raw_transaction)  # included again
    assert (await step(updates)).status == TxStatus.MINED
    anvil.mine()
    assert (await step(updates)).status == TxStatus.CONFIRMED
    await assert_finished(updates)


async def test_tracker_can_be_closed_while_waiting(
    w3: AsyncWeb3[Any], no_pending: Anvil, network: Network, alice: DevAccount, bob: DevAccount
) -> None:
    tx_hash, nonce = await send(w3, alice, to=bob.address, value=ONE)
    updates = track_transaction(
        w3, network, tx_hash, sender=alice.address, nonce=nonce, poll_interval=0.02
    )
    assert (await step(updates)).status == TxStatus.SUBMITTED

    waiting = asyncio.ensure_future(anext(updates))
    await asyncio.sleep(0.1)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await updates.aclose()  # type: ignore[attr-defined]


async def test_unreachable_node_raises_after_timeout(network: Network, alice: DevAccount) -> None:
    dead = AsyncWeb3(
        AsyncHTTPProvider(f"http://127.0.0.1:{free_port()}", exception_retry_configuration=None)
    )
    try:
        updates = track_transaction(
            dead,
            network,
            "0x" + "ab" * 32,
            sender=alice.address,
            nonce=0,
            poll_interval=0.05,
            timeout=0.3,
        )
        assert (await step(updates)).status == TxStatus.SUBMITTED
        with pytest.raises(RpcUnavailable):
            await step(updates)
    finally:
        await dead.provider.disconnect()


async def test_malformed_hash_is_invalid_input(
    w3: AsyncWeb3[Any], network: Network, alice: DevAccount
) -> None:
    with pytest.raises(InvalidInput):
        await anext(track_transaction(w3, network, "0x1234", sender=alice.address, nonce=0))
