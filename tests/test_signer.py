"""LocalSigner: signs only its own transactions, only on allowed chains, never shows its key."""

from __future__ import annotations

import copy
import pickle

import pytest
from eth_account import Account

from lunark.chain.anvil import DevAccount, dev_accounts
from lunark.chain.signer import LocalSigner, Signer
from lunark.chain.types import PreparedTx, TransferIntent
from lunark.errors import ConfigError, SignerError

ALICE, BOB = dev_accounts(2)


def prepared(sender: DevAccount = ALICE, chain_id: int = 31337) -> PreparedTx:
    intent = TransferIntent(
        chain_id=chain_id,
        sender=sender.address,
        recipient=(BOB if sender is ALICE else ALICE).address,
        amount=10**18,
        symbol="ETH",
        decimals=18,
    )
    return PreparedTx(
        intent=intent,
        nonce=7,
        gas=25_200,
        max_fee_per_gas=3 * 10**9,
        max_priority_fee_per_gas=10**9,
    )


def test_anvil_signer_is_the_dev_account() -> None:
    signer = LocalSigner.anvil(1)
    assert signer.address == BOB.address
    assert isinstance(signer, Signer)
    assert signer.allowed_chain_ids == frozenset({31337, 31338})


async def test_signs_an_eip1559_transaction() -> None:
    tx = prepared()
    raw = await LocalSigner(ALICE.private_key).sign_transaction(tx)
    assert raw[0] == 2  # EIP-2718 type 2
    assert Account.recover_transaction(raw) == ALICE.address
    expected = Account.sign_transaction(dict(tx.to_tx_params()), ALICE.private_key)
    assert raw == bytes(expected.raw_transaction)


async def test_refuses_another_sender() -> None:
    with pytest.raises(SignerError, match="another address") as info:
        await LocalSigner(ALICE.private_key).sign_transaction(prepared(sender=BOB))
    assert info.value.details["sender"] == BOB.address
    assert info.value.code == "chain_error"


@pytest.mark.parametrize(
    ("signer_chains", "chain_id", "allowed"),
    [
        ("default", 31337, True),
        ("default", 31338, False),
        ("default", 1, False),
        ("anvil", 31338, True),
        ("anvil", 1, False),
        ("any", 1, True),
        ("only-sepolia", 11155111, True),
        ("only-sepolia", 31337, False),
    ],
)
async def test_chain_allow_list(signer_chains: str, chain_id: int, allowed: bool) -> None:
    signer = {
        "default": LocalSigner(ALICE.private_key),
        "anvil": LocalSigner.anvil(0),
        "any": LocalSigner(ALICE.private_key, allowed_chain_ids=None),
        "only-sepolia": LocalSigner(ALICE.private_key, allowed_chain_ids=frozenset({11155111})),
    }[signer_chains]
    tx = prepared(chain_id=chain_id)
    if allowed:
        assert Account.recover_transaction(await signer.sign_transaction(tx)) == ALICE.address
    else:
        with pytest.raises(SignerError, match=f"not on chain {chain_id}"):
            await signer.sign_transaction(tx)


def test_anvil_accepts_explicit_chain_ids() -> None:
    assert LocalSigner.anvil(0, allowed_chain_ids=frozenset({5})).allowed_chain_ids == frozenset({5})
    assert LocalSigner.anvil(0, allowed_chain_ids=None).allowed_chain_ids is None


def test_repr_hides_the_key() -> None:
    signer = LocalSigner(ALICE.private_key)
    key = ALICE.private_key.removeprefix("0x").lower()
    for text in (repr(signer), str(signer), f"{signer!r}", repr([signer])):
        assert key not in text.lower()
        assert ALICE.address in text


def test_signer_cannot_be_pickled_but_copies_share() -> None:
    signer = LocalSigner(ALICE.private_key)
    with pytest.raises(TypeError, match="private key"):
        pickle.dumps(signer)
    assert copy.deepcopy(signer) is signer
    assert copy.copy(signer) is signer


@pytest.mark.parametrize("bad", ["", "0x1234", "not a key", "0x" + "zz" * 32, "0x" + "00" * 32])
def test_invalid_key_is_a_config_error_that_does_not_echo_it(bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        LocalSigner(bad)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    if bad:
        assert bad not in info.value.message


def test_anvil_index_out_of_range() -> None:
    with pytest.raises(ConfigError):
        LocalSigner.anvil(-1)
