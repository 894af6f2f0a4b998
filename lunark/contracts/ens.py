"""Deploy the real ENS contracts on a dev chain, as mainnet runs them, with a few names.

The registry with fallback (over an empty legacy registry, as on mainnet), the public resolver, and
the reverse registrar owning ``addr.reverse`` with the public resolver as its default. The deployer
owns the root and ``eth``; each name is a ``.eth`` subname pointing at its address through the
public resolver and then handed to that address. A name's ``primary`` key sets the address's reverse
record (its primary name) from that address itself, as a user would.

    >>> ens = deploy_ens(url, private_key=deployer_key, names=[
    ...     EnsName(label="alice", address=alice.address, primary_key=alice.private_key)])
    >>> ens.registry  # the network's ens_registry
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_typing import ChecksumAddress
from web3 import HTTPProvider, Web3

from lunark.contracts import deploy_contract, load_artifact
from lunark.errors import TransactionFailed

__all__ = ["EnsDeployment", "EnsName", "deploy_ens", "namehash"]

_ROOT = b"\x00" * 32


@dataclass(frozen=True, slots=True, kw_only=True)
class EnsName:
    """A ``<label>.eth`` name to register."""

    label: str
    """Already normalised, e.g. ``"alice"``."""
    address: ChecksumAddress
    """What the name resolves to (and who owns it afterwards)."""
    primary_key: str | None = None
    """The private key of ``address``, when the name should also be its primary name (reverse record)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EnsDeployment:
    registry: ChecksumAddress
    """ENSRegistryWithFallback: the network's ``ens_registry`` setting."""
    resolver: ChecksumAddress
    """PublicResolver."""
    reverse_registrar: ChecksumAddress
    """ReverseRegistrar, owner of ``addr.reverse``."""


def namehash(name: str) -> bytes:
    """EIP-137 namehash of an already normalised name."""
    node = _ROOT
    for label in reversed([part for part in name.split(".") if part]):
        node = Web3.keccak(node + Web3.keccak(text=label))
    return bytes(node)


def deploy_ens(rpc_url: str, *, private_key: str, names: Sequence[EnsName] = ()) -> EnsDeployment:
    """Deploy ENS on the chain at ``rpc_url`` from the account of ``private_key`` and register ``names``."""
    w3 = Web3(HTTPProvider(rpc_url))
    deployer = Account.from_key(private_key)
    legacy = deploy_contract(rpc_url, "ENSRegistry", private_key=private_key)
    registry_address = deploy_contract(rpc_url, "ENSRegistryWithFallback", legacy, private_key=private_key)
    resolver_address = deploy_contract(rpc_url, "PublicResolver", registry_address, private_key=private_key)
    reverse_address = deploy_contract(
        rpc_url, "ReverseRegistrar", registry_address, resolver_address, private_key=private_key
    )
    registry = w3.eth.contract(address=registry_address, abi=load_artifact("ENSRegistryWithFallback").abi)
    resolver = w3.eth.contract(address=resolver_address, abi=load_artifact("PublicResolver").abi)
    reverse = w3.eth.contract(address=reverse_address, abi=load_artifact("ReverseRegistrar").abi)

    def send(call: Any, key: str = private_key) -> None:
        account = Account.from_key(key)
        tx = call.build_transaction(
            {"from": account.address, "nonce": w3.eth.get_transaction_count(account.address, "pending")}
        )
        tx_hash = w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
        if receipt["status"] != 1:
            raise TransactionFailed(
                "An ENS set-up transaction failed on chain.", tx_hash=tx_hash.to_0x_hex(),
                block_number=receipt["blockNumber"],
            )

    me = deployer.address
    send(registry.functions.setSubnodeOwner(_ROOT, Web3.keccak(text="reverse"), me))
    send(registry.functions.setSubnodeOwner(namehash("reverse"), Web3.keccak(text="addr"), reverse_address))
    send(registry.functions.setSubnodeOwner(_ROOT, Web3.keccak(text="eth"), me))
    for name in names:
        node = namehash(f"{name.label}.eth")
        send(registry.functions.setSubnodeRecord(
            namehash("eth"), Web3.keccak(text=name.label), me, resolver_address, 0
        ))
        send(resolver.get_function_by_signature("setAddr(bytes32,address)")(node, name.address))
        send(registry.functions.setOwner(node, name.address))
        if name.primary_key is not None:
            send(reverse.functions.setName(f"{name.label}.eth"), name.primary_key)
    return EnsDeployment(registry=registry_address, resolver=resolver_address, reverse_registrar=reverse_address)
