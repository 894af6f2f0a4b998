"""Compiled test contracts shipped with Lunark, and a way to deploy them.

The JSON artifacts next to this module are built from ``contracts/*.sol`` by
``node scripts/build_contracts.mjs`` (solc-js from ``node_modules``; a test
checks they match a fresh build). They back the test suite and ``lunark demo``:

* ``TestToken``: a plain ERC-20 anyone may ``mint``;
* ``Reverter``: every entry point reverts with a known reason;
* ``ENSRegistry``, ``ENSRegistryWithFallback``, ``PublicResolver``, ``ReverseRegistrar``: the real ENS
  contracts, from the ``@ensdomains/ens`` and ``@ensdomains/resolver`` npm sources (solc 0.7.6);
  ``lunark.contracts.ens.deploy_ens`` sets them up with names.

    >>> token = deploy_contract(url, "TestToken", "Test Token", "TKN", 18, private_key=key)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from eth_account import Account
from eth_typing import ChecksumAddress, HexStr
from web3 import HTTPProvider, Web3
from web3.exceptions import ContractLogicError

from lunark.errors import ConfigError, SimulationFailed, TransactionFailed

__all__ = ["Artifact", "deploy_contract", "load_artifact"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Artifact:
    """One compiled contract, as ``scripts/build_contracts.mjs`` wrote it.

    >>> load_artifact("TestToken").bytecode[:2]
    '0x'
    """

    name: str
    """The contract's Solidity name, e.g. ``"TestToken"``."""
    abi: list[dict[str, Any]]
    """The contract's JSON ABI."""
    bytecode: HexStr
    """Creation bytecode, ``0x``-prefixed; constructor arguments are appended to it."""
    deployed_bytecode: HexStr
    """Runtime bytecode, ``0x``-prefixed, as ``eth_getCode`` returns it after deployment."""
    source_sha256: str
    """Hex SHA-256 of the ``.sol`` file the artifact was compiled from."""


def _known_names() -> list[str]:
    entries = resources.files(__name__).iterdir()
    return sorted(e.name.removesuffix(".json") for e in entries if e.name.endswith(".json"))


def load_artifact(name: str) -> Artifact:
    """The compiled artifact of contract ``name``.

    Raises ``ConfigError`` naming the known contracts when there is no such artifact.

    >>> load_artifact("Reverter").name
    'Reverter'
    """
    known = _known_names()
    # Checking against the listing (not just opening the file) also keeps names like
    # "../x" from reading outside the package.
    if name not in known:
        raise ConfigError(
            f"No compiled contract named {name!r}. Known contracts: {', '.join(known)}. "
            "Run `node scripts/build_contracts.mjs` after adding a contract under contracts/."
        )
    raw = json.loads(resources.files(__name__).joinpath(f"{name}.json").read_text(encoding="utf-8"))
    return Artifact(
        name=raw["contractName"],
        abi=raw["abi"],
        bytecode=HexStr(raw["bytecode"]),
        deployed_bytecode=HexStr(raw["deployedBytecode"]),
        source_sha256=raw["sourceSha256"],
    )


def deploy_contract(rpc_url: str, name: str, *args: Any, private_key: str) -> ChecksumAddress:
    """Deploy contract ``name`` with constructor ``args`` from the account of ``private_key``.

    Synchronous: signs locally, sends the raw transaction and waits for the receipt.
    Raises ``SimulationFailed`` if the constructor would revert and
    ``TransactionFailed`` if the deployment is mined with status 0.

    >>> token = deploy_contract("http://127.0.0.1:8545", "TestToken", "Test USD", "TUSD", 6,
    ...                         private_key="0xac09...ff80")
    """
    artifact = load_artifact(name)
    w3 = Web3(HTTPProvider(rpc_url))
    account = Account.from_key(private_key)
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    try:
        tx = factory.constructor(*args).build_transaction(
            {
                "from": account.address,
                # "pending" so several deployments in a row from one key do not collide.
                "nonce": w3.eth.get_transaction_count(account.address, "pending"),
            }
        )
    except ContractLogicError as exc:
        raise SimulationFailed(
            f"Deploying {name} would revert: {exc.message}", reason=exc.message
        ) from exc
    signed = account.sign_transaction(tx)
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
    address = receipt["contractAddress"]
    if receipt["status"] != 1 or address is None:
        raise TransactionFailed(
            f"Deploying {name} failed on chain (receipt status {receipt['status']}).",
            tx_hash=tx_hash.to_0x_hex(),
            block_number=receipt["blockNumber"],
        )
    return Web3.to_checksum_address(address)
