"""Signed and broadcast transactions checked against the approved transfer, on a real Anvil."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from eth_account import Account
from eth_utils.address import to_checksum_address
from web3 import AsyncHTTPProvider, AsyncWeb3

from lunark.chain.anvil import Anvil, DevAccount
from lunark.chain.intent import (
    DecodedTx,
    check_transaction,
    decode_signed_transaction,
    describe_transaction,
    diff_intent,
    fetch_transaction,
    verify_signed_transaction,
    verify_transaction_hash,
)
from lunark.chain.types import PreparedTx, TransferIntent, encode_erc20_transfer
from lunark.errors import ChainError, IntentMismatch, InvalidInput
from lunark.networks import ANVIL_CHAIN_ID, NetworkRegistry

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


def prepared_for(
    intent: TransferIntent,
    *,
    nonce: int = 0,
    gas: int = 100_000,
    max_fee_per_gas: int = 10 * GWEI,
    tip: int = GWEI,
) -> PreparedTx:
    """What the card showed: by default exactly what `sign` signs (nonce 0 or above)."""
    return PreparedTx(
        intent=intent, nonce=nonce, gas=gas, max_fee_per_gas=max_fee_per_gas, max_priority_fee_per_gas=tip
    )


def mismatch_of(prepared: TransferIntent | PreparedTx, raw: bytes) -> IntentMismatch:
    if isinstance(prepared, TransferIntent):
        prepared = prepared_for(prepared)
    with pytest.raises(IntentMismatch) as info:
        verify_signed_transaction(prepared, raw)
    return info.value


def without_text(differences: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The structured part of each difference (every one also carries its words in `text`)."""
    return {field: {k: v for k, v in change.items() if k != "text"} for field, change in differences.items()}


# -- matching transactions ---------------------------------------------------------------------


def test_matching_native_signed_tx_verifies(alice: DevAccount, bob: DevAccount) -> None:
    intent = native_intent(alice, bob)
    raw = sign(alice, to=bob.address, value=ONE, nonce=7)

    tx = verify_signed_transaction(prepared_for(intent), raw)

    assert isinstance(tx, DecodedTx)
    assert (tx.sender, tx.to, tx.value, tx.data) == (alice.address, bob.address, ONE, "0x")
    assert (tx.chain_id, tx.nonce, tx.type, tx.gas) == (ANVIL_CHAIN_ID, 7, 2, 100_000)
    assert (tx.max_fee_per_gas, tx.max_priority_fee_per_gas) == (10 * GWEI, GWEI)
    assert verify_signed_transaction(prepared_for(intent), "0x" + raw.hex()) == tx  # hex string as well


def test_matching_erc20_signed_tx_verifies(world: Any, alice: DevAccount, bob: DevAccount) -> None:
    intent = token_intent(alice, bob, world.token)
    raw = sign(alice, to=world.token, data=intent.tx_data, nonce=0)

    tx = verify_signed_transaction(prepared_for(intent), raw)

    assert tx.to == world.token
    assert tx.value == 0
    assert tx.data == encode_erc20_transfer(bob.address, 5 * ONE)


async def test_matching_native_tx_verifies_by_hash(
    w3: AsyncWeb3[Any], alice: DevAccount, bob: DevAccount
) -> None:
    intent = native_intent(alice, bob)
    nonce = await w3.eth.get_transaction_count(alice.address, "pending")
    tx_hash = await w3.eth.send_raw_transaction(sign(alice, to=bob.address, value=ONE, nonce=nonce))

    tx = await verify_transaction_hash(w3, prepared_for(intent), tx_hash.to_0x_hex(), timeout=2)

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

    tx = await verify_transaction_hash(w3, prepared_for(intent), tx_hash, timeout=2)

    assert tx == decode_signed_transaction(raw)  # the node and the signature tell the same story


# -- mismatches --------------------------------------------------------------------------------


def test_mismatched_native_recipient(alice: DevAccount, bob: DevAccount, carol: DevAccount) -> None:
    raw = sign(alice, to=carol.address, value=ONE, nonce=0)

    err = mismatch_of(native_intent(alice, bob), raw)

    assert without_text(err.differences) == {"to": {"expected": bob.address, "actual": carol.address}}
    assert err.tx_hash == decode_signed_transaction(raw).tx_hash
    summary, detail = err.message.split("\n")
    assert summary == (
        f"This is not the transaction you approved: recipient is {carol.address}, approved {bob.address}."
    )
    assert detail.startswith(f"Transaction {err.tx_hash} sends 1 ETH to 0x3C44…93BC.")
    assert err.differences["to"]["text"] == f"recipient is {carol.address}, approved {bob.address}"
    assert err.to_dict()["code"] == "chain_error"


def test_mismatched_erc20_recipient(
    world: Any, alice: DevAccount, bob: DevAccount, mallory: DevAccount
) -> None:
    raw = sign(alice, to=world.token, data=encode_erc20_transfer(mallory.address, 5 * ONE), nonce=0)

    err = mismatch_of(token_intent(alice, bob, world.token), raw)

    assert without_text(err.differences) == {"recipient": {"expected": bob.address, "actual": mallory.address}}
    assert "recipient" in err.message


def test_mismatched_native_amount(alice: DevAccount, bob: DevAccount) -> None:
    raw = sign(alice, to=bob.address, value=2 * ONE, nonce=0)

    err = mismatch_of(native_intent(alice, bob), raw)

    assert without_text(err.differences) == {"value": {"expected": str(ONE), "actual": str(2 * ONE)}}
    assert "amount is 2 ETH, approved 1 ETH" in err.message.split("\n")[0]


def test_mismatched_erc20_amount(world: Any, alice: DevAccount, bob: DevAccount) -> None:
    raw = sign(alice, to=world.token, data=encode_erc20_transfer(bob.address, 50 * ONE), nonce=0)

    err = mismatch_of(token_intent(alice, bob, world.token), raw)

    assert without_text(err.differences) == {"amount": {"expected": str(5 * ONE), "actual": str(50 * ONE)}}
    assert "amount is 50 TKN, approved 5 TKN" in err.message


def test_wrong_chain_id(alice: DevAccount, bob: DevAccount) -> None:
    raw = sign(alice, to=bob.address, value=ONE, nonce=0, chain_id=31338)

    err = mismatch_of(native_intent(alice, bob), raw)

    assert without_text(err.differences) == {"chain_id": {"expected": ANVIL_CHAIN_ID, "actual": 31338}}


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
    assert without_text(err.differences) == {"chain_id": {"expected": ANVIL_CHAIN_ID, "actual": None}}


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

    tx = verify_signed_transaction(prepared_for(native_intent(alice, bob)), bytes(signed.raw_transaction))

    assert (tx.type, tx.chain_id, tx.nonce, tx.max_priority_fee_per_gas) == (
        0,
        ANVIL_CHAIN_ID,
        3,
        None,
    )


def test_wrong_sender(alice: DevAccount, bob: DevAccount, mallory: DevAccount) -> None:
    raw = sign(mallory, to=bob.address, value=ONE, nonce=0)

    err = mismatch_of(native_intent(alice, bob), raw)

    assert without_text(err.differences) == {"sender": {"expected": alice.address, "actual": mallory.address}}


def test_erc20_intent_but_ether_sent_directly(
    world: Any, alice: DevAccount, bob: DevAccount
) -> None:
    intent = token_intent(alice, bob, world.token)
    raw = sign(alice, to=bob.address, value=5 * ONE, nonce=0)

    err = mismatch_of(intent, raw)

    assert without_text(err.differences) == {
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

    assert without_text(err.differences) == {"data": {"expected": intent.tx_data, "actual": approve}}


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
        await verify_transaction_hash(w3, prepared_for(native_intent(alice, bob)), tx_hash, timeout=2)

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

        tx = await verify_transaction_hash(w3, prepared_for(native_intent(alice, bob)), tx_hash, timeout=2)

        assert tx.tx_hash == tx_hash
    finally:
        anvil.rpc("anvil_dropAllTransactions")


@pytest.mark.parametrize("bad", ["", "0x1234", "12" * 32, "0x" + "zz" * 32, "0x" + "12" * 33])
async def test_malformed_hash_is_invalid_input(w3: AsyncWeb3[Any], bad: str) -> None:
    with pytest.raises(InvalidInput):
        await fetch_transaction(w3, bad, timeout=0.1)


# -- what the card bound: type, nonce, fee -----------------------------------------------------


def sign_set_code(account: DevAccount, *, delegate_to: str, nonce: int, to: str, value: int = 0) -> bytes:
    """A type-4 (EIP-7702) transaction whose authorization delegates `account` to `delegate_to`."""
    authorization = Account.sign_authorization(
        {"chainId": ANVIL_CHAIN_ID, "address": delegate_to, "nonce": nonce + 1}, account.private_key
    )
    signed = Account.sign_transaction(
        {
            "type": 4,
            "chainId": ANVIL_CHAIN_ID,
            "nonce": nonce,
            "to": to,
            "value": value,
            "data": "0x",
            "gas": 100_000,
            "maxFeePerGas": 10 * GWEI,
            "maxPriorityFeePerGas": GWEI,
            "authorizationList": [authorization],
        },
        account.private_key,
    )
    return bytes(signed.raw_transaction)


def test_set_code_signed_tx_is_refused_with_the_reason(
    world: Any, alice: DevAccount, bob: DevAccount
) -> None:
    # Same recipient and amount as approved: only the authorization list is extra.
    raw = sign_set_code(alice, delegate_to=world.reverter, nonce=0, to=bob.address, value=ONE)

    decoded = decode_signed_transaction(raw)
    assert (decoded.type, decoded.delegations, decoded.sender) == (4, (world.reverter,), alice.address)

    err = mismatch_of(native_intent(alice, bob), raw)

    assert set(err.differences) == {"type"}
    assert err.differences["type"]["actual"] == 4
    assert err.differences["type"]["delegations"] == [world.reverter]
    assert err.message.startswith(
        "This is not the transaction you approved: type 4 (EIP-7702) transactions can hand control "
        f"of your account to a contract and are refused; this one delegates to {world.reverter}."
    )
    assert "delegates an account to" in err.message.split("\n")[1]


async def test_set_code_tx_broadcast_by_the_wallet_is_refused_by_hash(
    w3: AsyncWeb3[Any], anvil: Anvil, world: Any, alice: DevAccount, bob: DevAccount
) -> None:
    anvil.set_automine(False)  # checked while pending: the delegation never lands, even in the snapshot
    try:
        nonce = await w3.eth.get_transaction_count(alice.address, "pending")
        raw = sign_set_code(alice, delegate_to=world.reverter, nonce=nonce, to=bob.address, value=ONE)
        tx_hash = (await w3.eth.send_raw_transaction(raw)).to_0x_hex()
        prepared = prepared_for(native_intent(alice, bob), nonce=nonce)

        with pytest.raises(IntentMismatch) as info:
            await verify_transaction_hash(w3, prepared, tx_hash, timeout=2)

        assert info.value.tx_hash == tx_hash
        assert set(info.value.differences) == {"type"}
        assert info.value.differences["type"]["delegations"] == [world.reverter]
        assert "EIP-7702" in info.value.message.split("\n")[0]
    finally:
        anvil.rpc("anvil_dropAllTransactions")


def test_blob_tx_is_refused_with_the_reason(alice: DevAccount, bob: DevAccount) -> None:
    signed = Account.sign_transaction(
        {
            "type": 3,
            "chainId": ANVIL_CHAIN_ID,
            "nonce": 0,
            "to": bob.address,
            "value": ONE,
            "data": "0x",
            "gas": 100_000,
            "maxFeePerGas": 10 * GWEI,
            "maxPriorityFeePerGas": GWEI,
            "maxFeePerBlobGas": GWEI,
            "blobVersionedHashes": ["0x01" + "00" * 31],
        },
        alice.private_key,
    )

    err = mismatch_of(native_intent(alice, bob), bytes(signed.raw_transaction))

    assert without_text(err.differences) == {"type": {"expected": [0, 1, 2], "actual": 3}}
    assert "type 3 (blob) transactions are refused" in err.message.split("\n")[0]


def sign_fee(account: DevAccount, *, to: str, value: int, nonce: int, gas: int, max_fee: int, tip: int) -> bytes:
    signed = Account.sign_transaction(
        {
            "type": 2,
            "chainId": ANVIL_CHAIN_ID,
            "nonce": nonce,
            "to": to,
            "value": value,
            "gas": gas,
            "maxFeePerGas": max_fee,
            "maxPriorityFeePerGas": tip,
        },
        account.private_key,
    )
    return bytes(signed.raw_transaction)


def test_a_fee_26000_times_the_card_is_refused_in_words(alice: DevAccount, bob: DevAccount) -> None:
    # The card: 21,000 gas at most 3 gwei each = 0.000063 ETH.
    prepared = prepared_for(native_intent(alice, bob, 3 * ONE // 2), gas=21_000, max_fee_per_gas=3 * GWEI)
    raw = sign_fee(
        alice, to=bob.address, value=3 * ONE // 2, nonce=0, gas=21_000, max_fee=26_000 * 3 * GWEI, tip=GWEI
    )

    err = mismatch_of(prepared, raw)

    assert without_text(err.differences) == {
        "max_fee": {
            "expected": str(63_000 * GWEI),
            "actual": str(26_000 * 63_000 * GWEI),
            "allowed": str(2 * 63_000 * GWEI),
        }
    }
    assert err.message.split("\n")[0] == (
        "This is not the transaction you approved: the network fee could reach 1.638 ETH, "
        "the card allowed at most 0.000063 ETH (2x that is accepted)."
    )
    assert "sends 1.5 ETH to 0x7099…79C8" in err.message.split("\n")[1]


def test_the_fee_bound_is_exact_to_the_wei(alice: DevAccount, bob: DevAccount) -> None:
    prepared = prepared_for(native_intent(alice, bob), gas=21_000, max_fee_per_gas=3 * GWEI)
    # A wallet that raised the gas limit and the fee cap, together exactly twice the card's fee.
    at_bound = sign_fee(alice, to=bob.address, value=ONE, nonce=0, gas=42_000, max_fee=3 * GWEI, tip=GWEI)
    over = sign_fee(alice, to=bob.address, value=ONE, nonce=0, gas=42_001, max_fee=3 * GWEI, tip=GWEI)

    assert verify_signed_transaction(prepared, at_bound).gas == 42_000
    assert set(mismatch_of(prepared, over).differences) == {"max_fee"}
    # A configured factor of 1 accepts only the card's own fee.
    with pytest.raises(IntentMismatch):
        verify_signed_transaction(prepared, at_bound, fee_factor=1)
    assert verify_signed_transaction(prepared, over, fee_factor=Decimal("2.5")).gas == 42_001


def test_legacy_gas_price_counts_as_the_fee_cap(alice: DevAccount, bob: DevAccount) -> None:
    prepared = prepared_for(native_intent(alice, bob), gas=21_000, max_fee_per_gas=3 * GWEI)
    signed = Account.sign_transaction(
        {"chainId": ANVIL_CHAIN_ID, "nonce": 0, "to": bob.address, "value": ONE, "gas": 21_000,
         "gasPrice": 7 * GWEI},
        alice.private_key,
    )

    err = mismatch_of(prepared, bytes(signed.raw_transaction))

    assert err.differences["max_fee"]["actual"] == str(21_000 * 7 * GWEI)


def test_fee_factor_below_one_is_invalid_input(alice: DevAccount, bob: DevAccount) -> None:
    raw = sign(alice, to=bob.address, value=ONE, nonce=0)
    for factor in (Decimal("0.5"), Decimal("NaN"), 0):
        with pytest.raises(InvalidInput):
            verify_signed_transaction(prepared_for(native_intent(alice, bob)), raw, fee_factor=factor)


def test_tip_above_the_fee_cap_is_refused(alice: DevAccount, bob: DevAccount) -> None:
    tx = decode_signed_transaction(sign(alice, to=bob.address, value=ONE, nonce=0))
    odd = dataclasses.replace(tx, max_fee_per_gas=2 * GWEI, max_priority_fee_per_gas=5 * GWEI)

    with pytest.raises(IntentMismatch) as info:
        check_transaction(prepared_for(native_intent(alice, bob)), odd)

    assert set(info.value.differences) == {"priority_fee"}
    assert "priority fee (5 gwei per gas) is above its maximum fee (2 gwei per gas)" in info.value.message


def test_a_lower_nonce_is_refused_and_a_higher_one_accepted(alice: DevAccount, bob: DevAccount) -> None:
    prepared = prepared_for(native_intent(alice, bob), nonce=5)

    lower = mismatch_of(prepared, sign(alice, to=bob.address, value=ONE, nonce=4))
    assert without_text(lower.differences) == {"nonce": {"expected": 5, "actual": 4}}
    assert "its nonce 4 is below the prepared 5" in lower.message.split("\n")[0]

    assert verify_signed_transaction(prepared, sign(alice, to=bob.address, value=ONE, nonce=5)).nonce == 5
    # A wallet with a transaction of its own still pending re-nonces upward.
    assert verify_signed_transaction(prepared, sign(alice, to=bob.address, value=ONE, nonce=6)).nonce == 6


async def test_a_lower_nonce_is_refused_by_hash_too(
    w3: AsyncWeb3[Any], anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    nonce = await w3.eth.get_transaction_count(alice.address, "pending")
    tx_hash = (await w3.eth.send_raw_transaction(sign(alice, to=bob.address, value=ONE, nonce=nonce))).to_0x_hex()

    with pytest.raises(IntentMismatch) as info:
        await verify_transaction_hash(w3, prepared_for(native_intent(alice, bob), nonce=nonce + 1), tx_hash, timeout=2)

    assert set(info.value.differences) == {"nonce"}


async def test_the_fee_is_checked_by_hash_too(
    w3: AsyncWeb3[Any], anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    anvil.set_automine(False)
    try:
        nonce = await w3.eth.get_transaction_count(alice.address, "pending")
        raw = sign_fee(alice, to=bob.address, value=ONE, nonce=nonce, gas=21_000, max_fee=26_000 * 3 * GWEI, tip=GWEI)
        tx_hash = (await w3.eth.send_raw_transaction(raw)).to_0x_hex()
        prepared = prepared_for(native_intent(alice, bob), nonce=nonce, gas=21_000, max_fee_per_gas=3 * GWEI)

        with pytest.raises(IntentMismatch) as info:
            await verify_transaction_hash(w3, prepared, tx_hash, timeout=2)

        assert set(info.value.differences) == {"max_fee"}
        assert info.value.differences["max_fee"]["actual"] == str(26_000 * 63_000 * GWEI)
    finally:
        anvil.rpc("anvil_dropAllTransactions")


# -- in words ----------------------------------------------------------------------------------


def test_describe_transaction_says_what_it_does(
    world: Any, registry: NetworkRegistry, alice: DevAccount, bob: DevAccount
) -> None:
    network = registry.get("anvil")

    def words(**fields: Any) -> str:
        raw = sign(alice, nonce=0, **fields)
        return describe_transaction(decode_signed_transaction(raw), network=network)

    assert words(to=bob.address, value=3 * ONE // 2) == "sends 1.5 ETH to 0x7099…79C8"
    assert words(to=alice.address) == "cancels: sends 0 ETH to yourself"
    assert words(to=world.token, data=encode_erc20_transfer(bob.address, 10 * ONE)) == (
        "calls transfer of 10 TKN to 0x7099…79C8"
    )
    assert words(to=world.usd, data=encode_erc20_transfer(bob.address, 2_500_000)) == (
        "calls transfer of 2.5 TUSD to 0x7099…79C8"
    )
    approve = "0x095ea7b3" + encode_erc20_transfer(bob.address, ONE)[10:]
    assert words(to=world.token, data=approve, value=ONE) == (
        f"calls contract {world.token[:6]}…{world.token[-4:]} (function 0x095ea7b3), sending 1 ETH along"
    )
    # A token no one configured: its units are all that can be said.
    unknown = to_checksum_address("0x" + "ab" * 20)
    tx = decode_signed_transaction(sign(alice, nonce=0, to=unknown, data=encode_erc20_transfer(bob.address, 7)))
    assert describe_transaction(tx) == f"calls transfer of 7 units of token {unknown[:6]}…{unknown[-4:]} to 0x7099…79C8"
    set_code = decode_signed_transaction(
        sign_set_code(alice, delegate_to=world.reverter, nonce=0, to=alice.address)
    )
    assert describe_transaction(set_code, network=network) == (
        f"delegates an account to {world.reverter[:6]}…{world.reverter[-4:]} (EIP-7702) and "
        "sends 0 ETH to yourself"
    )
