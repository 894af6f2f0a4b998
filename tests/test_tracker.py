"""The tracker against a real Anvil: confirmations, reverts, replacements, drops, reorgs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from eth_account import Account
from eth_utils import function_signature_to_4byte_selector
from web3 import AsyncHTTPProvider, AsyncWeb3

from lunark.chain.anvil import Anvil, DevAccount, free_port
from lunark.chain.tracker import track_transaction
from lunark.chain.types import TxStatus, TxUpdate, encode_erc20_transfer
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


async def step(updates: AsyncIterator[TxUpdate]) -> TxUpdate:
    async with asyncio.timeout(STEP):
        return await anext(updates)


async def assert_finished(updates: AsyncIterator[TxUpdate]) -> None:
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
    assert replaced.reason == f"nonce {nonce} was used by another transaction"
    await assert_finished(updates)


async def test_never_mined_is_dropped_after_timeout(
    w3: AsyncWeb3[Any], no_pending: Anvil, network: Network, alice: DevAccount, bob: DevAccount
) -> None:
    tx_hash, nonce = await send(w3, alice, to=bob.address, value=ONE)
    loop = asyncio.get_running_loop()
    started = loop.time()

    updates = [
        u
        async for u in track_transaction(
            w3, network, tx_hash, sender=alice.address, nonce=nonce, poll_interval=0.05, timeout=0.5
        )
    ]

    assert [u.status for u in updates] == [TxStatus.SUBMITTED, TxStatus.DROPPED]
    assert updates[-1].reason and "0.5s" in updates[-1].reason
    assert 0.5 <= loop.time() - started < 3


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
