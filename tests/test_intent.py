"""Signed and broadcast transactions checked against the approved transfer, on a real Anvil."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from eth_account import Account
from eth_utils.address import to_checksum_address
from web3 import AsyncHTTPProvider, AsyncWeb3

from lunark.chain.anvil import Anvil, DevAccount
from lunark.chain.intent import (
    DecodedTx,
    decode_signed_transaction,
    diff_intent,
    fetch_transaction,
    verify_signed_transaction,
    verify_transaction_hash,
)
from lunark.chain.types import TransferIntent, encode_erc20_transfer
from lunark.errors import ChainError, IntentMismatch, InvalidInput
from lunark.networks import ANVIL_CHAIN_ID

GWEI = 10**9
ONE = 10**18


@pytest.fixture
async def w3(anvil: Anvil) -> AsyncIterator[AsyncWeb3[Any]]:
    web3 = AsyncWeb3(AsyncHTTPProvider(anvil.url))
    yield web3
    await web3.provider.disconnect()


def sign(
    account: DevAccount,
    *,
    to: str,
    nonce: int,
    value: int = 0,
    data: str = "0x",
    chain_id: int = ANVIL_CHAIN_ID,
    gas: int = 100_000,
) -> bytes:
    signed = Account.sign_transaction(
        {
            "type": 2,
            "chainId": chain_id,
            "nonce": nonce,
            "to": to,
            "value": value,
            "data": data,
            "gas": gas,
            "maxFeePerGas": 10 * GWEI,
            "maxPriorityFeePerGas": GWEI,
        },
        account.private_key,
    )
    return bytes(signed.raw_transaction)


def native_intent(sender: DevAccount, recipient: DevAccount, amount: int = ONE) -> TransferIntent:
    return TransferIntent(
        chain_id=ANVIL_CHAIN_ID,
        sender=sender.address,
        recipient=recipient.address,
        amount=amount,
        symbol="ETH",
        decimals=18,
    )


def token_intent(
    sender: DevAccount, recipient: DevAccount, token: str, amount: int = 5 * ONE
) -> TransferIntent:
    return TransferIntent(
        chain_id=ANVIL_CHAIN_ID,
        sender=sender.address,
        recipient=recipient.address,
        amount=amount,
        symbol="TKN",
        decimals=18,
        token=to_checksum_address(token),
    )


def mismatch_of(intent: TransferIntent, raw: bytes) -> IntentMismatch:
    with pytest.raises(IntentMismatch) as info:
        verify_signed_transaction(intent, raw)
    return info.value


# -- matching transactions ---------------------------------------------------------------------


def test_matching_native_signed_tx_verifies(alice: DevAccount, bob: DevAccount) -> None:
    intent = native_intent(alice, bob)
    raw = sign(alice, to=bob.address, value=ONE, nonce=7)

    tx = verify_signed_transaction(intent, raw)

    assert isinstance(tx, DecodedTx)
    assert (tx.sender, tx.to, tx.value, tx.data) == (alice.address, bob.address, ONE, "0x")
    assert (tx.chain_id, tx.nonce, tx.type, tx.gas) == (ANVIL_CHAIN_ID, 7, 2, 100_000)
    assert (tx.max_fee_per_gas, tx.max_priority_fee_per_gas) == (10 * GWEI, GWEI)
    assert verify_signed_transaction(intent, "0x" + raw.hex()) == tx  # hex string as well


def test_matching_erc20_signed_tx_verifies(world: Any, alice: DevAccount, bob: DevAccount) -> None:
    intent = token_intent(alice, bob, world.token)
    raw = sign(alice, to=world.token, data=intent.tx_data, nonce=0)

    tx = verify_signed_transaction(intent, raw)

    assert tx.to == world.token
    assert tx.value == 0
    assert tx.data == encode_erc20_transfer(bob.address, 5 * ONE)


async def test_matching_native_tx_verifies_by_hash(
    w3: AsyncWeb3[Any], alice: DevAccount, bob: DevAccount
) -> None:
    intent = native_intent(alice, bob)
    nonce = await w3.eth.get_transaction_count(alice.address, "pending")
    tx_hash = await w3.eth.send_raw_transaction(sign(alice, to=bob.address, value=ONE, nonce=nonce))

    tx = await verify_transaction_hash(w3, intent, tx_hash.to_0x_hex(), timeout=2)

    assert tx.tx_hash == tx_hash.to_0x_hex()
    assert (tx.sender, tx.to, tx.value, tx.chain_id, tx.nonce) == (
        alice.address,
        bob.address,
        ONE,
        ANVIL_CHAIN_ID,
        nonce,
    )


async def test_matching_erc20_tx_verifies_by_hash(
    w3: AsyncWeb3[Any], world: Any, alice: DevAccount, bob: DevAccount
) -> None:
    intent = token_intent(alice, bob, world.token)
    nonce = await w3.eth.get_transaction_count(alice.address, "pending")
    raw = sign(alice, to=world.token, data=intent.tx_data, nonce=nonce)
    tx_hash = (await w3.eth.send_raw_transaction(raw)).to_0x_hex()

    tx = await verify_transaction_hash(w3, intent, tx_hash, timeout=2)

    assert tx == decode_signed_transaction(raw)  # the node and the signature tell the same story


# -- mismatches --------------------------------------------------------------------------------


def test_mismatched_native_recipient(alice: DevAccount, bob: DevAccount, carol: DevAccount) -> None:
    raw = sign(alice, to=carol.address, value=ONE, nonce=0)

    err = mismatch_of(native_intent(alice, bob), raw)

    assert err.differences == {"to": {"expected": bob.address, "actual": carol.address}}
    assert err.tx_hash == decode_signed_transaction(raw).tx_hash
    assert "to is " + carol.address in err.message
    assert err.to_dict()["code"] == "chain_error"


def test_mismatched_erc20_recipient(
    world: Any, alice: DevAccount, bob: DevAccount, mallory: DevAccount
) -> None:
    raw = sign(alice, to=world.token, data=encode_erc20_transfer(mallory.address, 5 * ONE), nonce=0)

    err = mismatch_of(token_intent(alice, bob, world.token), raw)

    assert err.differences == {"recipient": {"expected": bob.address, "actual": mallory.address}}
    assert "recipient" in err.message


def test_mismatched_native_amount(alice: DevAccount, bob: DevAccount) -> None:
    raw = sign(alice, to=bob.address, value=2 * ONE, nonce=0)

    err = mismatch_of(native_intent(alice, bob), raw)

    assert err.differences == {"value": {"expected": str(ONE), "actual": str(2 * ONE)}}
    assert "value is 2 ETH, approved 1 ETH" in err.message


def test_mismatched_erc20_amount(world: Any, alice: DevAccount, bob: DevAccount) -> None:
    raw = sign(alice, to=world.token, data=encode_erc20_transfer(bob.address, 50 * ONE), nonce=0)

    err = mismatch_of(token_intent(alice, bob, world.token), raw)

    assert err.differences == {"amount": {"expected": str(5 * ONE), "actual": str(50 * ONE)}}
    assert "amount is 50 TKN, approved 5 TKN" in err.message


def test_wrong_chain_id(alice: DevAccount, bob: DevAccount) -> None:
    raw = sign(alice, to=bob.address, value=ONE, nonce=0, chain_id=31338)

    err = mismatch_of(native_intent(alice, bob), raw)

    assert err.differences == {"chain_id": {"expected": ANVIL_CHAIN_ID, "actual": 31338}}


def test_pre_eip155_legacy_tx_has_no_chain_id_and_mismatches(
    alice: DevAccount, bob: DevAccount
) -> None:
    signed = Account.sign_transaction(
        {"nonce": 0, "to": bob.address, "value": ONE, "gas": 21_000, "gasPrice": GWEI},
        alice.private_key,
    )

    tx = decode_signed_transaction(bytes(signed.raw_transaction))
    assert (tx.type, tx.chain_id, tx.sender, tx.max_fee_per_gas) == (0, None, alice.address, GWEI)

    err = mismatch_of(native_intent(alice, bob), bytes(signed.raw_transaction))
    assert err.differences == {"chain_id": {"expected": ANVIL_CHAIN_ID, "actual": None}}


def test_eip155_legacy_tx_on_the_right_chain_verifies(alice: DevAccount, bob: DevAccount) -> None:
    signed = Account.sign_transaction(
        {
            "chainId": ANVIL_CHAIN_ID,
            "nonce": 3,
            "to": bob.address,
            "value": ONE,
            "gas": 21_000,
            "gasPrice": GWEI,
        },
        alice.private_key,
    )

    tx = verify_signed_transaction(native_intent(alice, bob), bytes(signed.raw_transaction))

    assert (tx.type, tx.chain_id, tx.nonce, tx.max_priority_fee_per_gas) == (
        0,
        ANVIL_CHAIN_ID,
        3,
        None,
    )


def test_wrong_sender(alice: DevAccount, bob: DevAccount, mallory: DevAccount) -> None:
    raw = sign(mallory, to=bob.address, value=ONE, nonce=0)

    err = mismatch_of(native_intent(alice, bob), raw)

    assert err.differences == {"sender": {"expected": alice.address, "actual": mallory.address}}


def test_erc20_intent_but_ether_sent_directly(
    world: Any, alice: DevAccount, bob: DevAccount
) -> None:
    intent = token_intent(alice, bob, world.token)
    raw = sign(alice, to=bob.address, value=5 * ONE, nonce=0)

    err = mismatch_of(intent, raw)

    assert err.differences == {
        "to": {"expected": world.token, "actual": bob.address},
        "value": {"expected": "0", "actual": str(5 * ONE)},
        "data": {"expected": intent.tx_data, "actual": "0x"},
    }


def test_erc20_calldata_that_is_not_a_transfer_is_reported_as_data(
    world: Any, alice: DevAccount, bob: DevAccount
) -> None:
    intent = token_intent(alice, bob, world.token)
    # approve(bob, 5 TKN): same argument layout, another function.
    approve = "0x095ea7b3" + intent.tx_data[10:]
    raw = sign(alice, to=world.token, data=approve, nonce=0)

    err = mismatch_of(intent, raw)

    assert err.differences == {"data": {"expected": intent.tx_data, "actual": approve}}


def test_diff_compares_addresses_case_insensitively(
    world: Any, alice: DevAccount, bob: DevAccount
) -> None:
    intent = token_intent(alice, bob, world.token)
    tx = decode_signed_transaction(sign(alice, to=world.token, data=intent.tx_data, nonce=0))
    shouty = DecodedTx(
        tx_hash=tx.tx_hash,
        sender=tx.sender.lower(),  # type: ignore[arg-type]
        to=tx.to.lower() if tx.to else None,  # type: ignore[arg-type]
        value=0,
        data=tx.data.upper().replace("0X", "0x"),  # type: ignore[arg-type]
        chain_id=ANVIL_CHAIN_ID,
        nonce=0,
        gas=tx.gas,
        max_fee_per_gas=None,
        max_priority_fee_per_gas=None,
        type=2,
    )

    assert diff_intent(intent, shouty) == {}


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        "",
        "0x",
        "0xzz",
        "not hex",
        b"\x02\x01\x02\x03",
        b"\xf8\x01",
        bytes(range(40)),
        "0x" + "ab" * 30,
    ],
)
def test_undecodable_raw_is_invalid_input(raw: bytes | str) -> None:
    with pytest.raises(InvalidInput):
        decode_signed_transaction(raw)


def test_tampered_signature_changes_the_sender_or_fails(alice: DevAccount, bob: DevAccount) -> None:
    raw = bytearray(sign(alice, to=bob.address, value=ONE, nonce=0))
    raw[-1] ^= 0x01  # flip a bit of s

    try:
        tx = decode_signed_transaction(bytes(raw))
    except InvalidInput:
        return
    assert tx.sender != alice.address


# -- by hash -----------------------------------------------------------------------------------


async def test_broadcast_mismatch_is_caught_by_hash(
    w3: AsyncWeb3[Any], alice: DevAccount, bob: DevAccount, carol: DevAccount
) -> None:
    nonce = await w3.eth.get_transaction_count(alice.address, "pending")
    raw = sign(alice, to=carol.address, value=ONE, nonce=nonce)
    tx_hash = (await w3.eth.send_raw_transaction(raw)).to_0x_hex()

    with pytest.raises(IntentMismatch) as info:
        await verify_transaction_hash(w3, native_intent(alice, bob), tx_hash, timeout=2)

    assert info.value.tx_hash == tx_hash
    assert set(info.value.differences) == {"to"}


async def test_unknown_hash_fails_closed_after_timeout(w3: AsyncWeb3[Any]) -> None:
    unknown = "0x" + "12" * 32

    with pytest.raises(ChainError, match="cannot verify") as info:
        await fetch_transaction(w3, unknown, timeout=0.3, poll_interval=0.05)

    assert not isinstance(info.value, IntentMismatch)
    assert info.value.details["tx_hash"] == unknown


async def test_pending_tx_is_found_before_it_is_mined(
    w3: AsyncWeb3[Any], anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    anvil.set_automine(False)
    try:
        nonce = await w3.eth.get_transaction_count(alice.address, "pending")
        raw = sign(alice, to=bob.address, value=ONE, nonce=nonce)
        tx_hash = (await w3.eth.send_raw_transaction(raw)).to_0x_hex()

        tx = await verify_transaction_hash(w3, native_intent(alice, bob), tx_hash, timeout=2)

        assert tx.tx_hash == tx_hash
    finally:
        anvil.rpc("anvil_dropAllTransactions")


@pytest.mark.parametrize("bad", ["", "0x1234", "12" * 32, "0x" + "zz" * 32, "0x" + "12" * 33])
async def test_malformed_hash_is_invalid_input(w3: AsyncWeb3[Any], bad: str) -> None:
    with pytest.raises(InvalidInput):
        await fetch_transaction(w3, bad, timeout=0.1)
