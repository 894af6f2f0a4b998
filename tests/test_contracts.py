"""The committed contract artifacts, and the contracts themselves on a real Anvil."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
from conftest import INITIAL_TOKENS, World
from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector
from web3 import HTTPProvider, Web3
from web3.contract import Contract
from web3.exceptions import ContractCustomError, ContractLogicError

from lunark.chain.anvil import Anvil, DevAccount
from lunark.contracts import Artifact, deploy_contract, load_artifact
from lunark.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = ROOT / "scripts" / "build_contracts.mjs"
ARTIFACTS = ROOT / "lunark" / "contracts"
ZERO_ADDRESS = "0x" + "00" * 20


def _node() -> str:
    node = shutil.which("node")
    # A missing toolchain must fail the run, never skip the freshness check.
    assert node, "node is not on PATH; run `./dev setup`"
    return node


def _build(script: Path, out_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_node(), str(script), str(out_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _reason(exc: pytest.ExceptionInfo[ContractLogicError]) -> str | None:
    message = exc.value.message
    assert message is not None
    return message.removeprefix("execution reverted: ")


# -- artifacts ---------------------------------------------------------------------------------


def test_committed_artifacts_match_a_fresh_build(tmp_path: Path) -> None:
    result = _build(BUILD_SCRIPT, tmp_path)
    assert result.returncode == 0, result.stderr

    fresh = sorted(p.name for p in tmp_path.glob("*.json"))
    committed = sorted(p.name for p in ARTIFACTS.glob("*.json"))
    assert committed == fresh, "run `node scripts/build_contracts.mjs` and commit the artifacts"
    for file in fresh:
        new: dict[str, Any] = json.loads((tmp_path / file).read_text())
        old: dict[str, Any] = json.loads((ARTIFACTS / file).read_text())
        assert list(old) == list(new), f"{file}: keys differ"
        for key in new:
            assert old[key] == new[key], f"{file}: {key!r} is stale; rebuild the contracts"
        # Same content, same formatting: rebuilding must not leave a diff behind.
        assert (ARTIFACTS / file).read_text() == (tmp_path / file).read_text()


@pytest.mark.parametrize("name", ["TestToken", "Reverter"])
def test_artifact_hash_matches_its_source(name: str) -> None:
    raw = json.loads((ARTIFACTS / f"{name}.json").read_text())
    source = ROOT / raw["sourcePath"]
    assert raw["sourcePath"] == f"contracts/{name}.sol"
    assert raw["sourceSha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert load_artifact(name).source_sha256 == raw["sourceSha256"]


def test_build_fails_loudly_on_a_compiler_error(tmp_path: Path) -> None:
    # A throwaway checkout layout: the script finds sources and solc relative to itself.
    (tmp_path / "scripts").mkdir()
    (tmp_path / "contracts").mkdir()
    shutil.copy(BUILD_SCRIPT, tmp_path / "scripts" / BUILD_SCRIPT.name)
    (tmp_path / "node_modules").symlink_to(ROOT / "node_modules")
    (tmp_path / "contracts" / "Broken.sol").write_text(
        "pragma solidity ^0.8.20;\n"
        "contract Broken { function f() external { undefinedThing(); } }\n"
    )
    out = tmp_path / "out"

    result = _build(tmp_path / "scripts" / BUILD_SCRIPT.name, out)

    assert result.returncode != 0
    assert "undefinedThing" in result.stderr
    assert not out.exists() or not list(out.iterdir())


def test_load_artifact_reads_the_package_data() -> None:
    artifact = load_artifact("TestToken")
    assert isinstance(artifact, Artifact)
    assert artifact.name == "TestToken"
    assert artifact.bytecode.startswith("0x") and len(artifact.bytecode) > 2
    assert artifact.deployed_bytecode.startswith("0x")
    functions = {item["name"] for item in artifact.abi if item["type"] == "function"}
    assert functions >= {
        "name", "symbol", "decimals", "totalSupply", "balanceOf",
        "transfer", "approve", "allowance", "transferFrom", "mint",
    }  # fmt: skip


def test_the_erc20_slice_lunark_ships_is_the_compiled_tokens_abi() -> None:
    # lunark/chain/erc20.json is data written by hand: every entry must be what a compiled ERC-20
    # says (types, mutability, indexing; parameter names may differ), and shipped with the package.
    from lunark.chain.tokens import ERC20_ABI

    def shape(entry: Any) -> tuple[Any, ...]:
        params = tuple((p["type"], p.get("indexed")) for p in entry["inputs"])
        outputs = tuple(p["type"] for p in entry.get("outputs", []))
        return entry["type"], entry["name"], entry.get("stateMutability"), params, outputs

    compiled = {item["name"]: item for item in load_artifact("TestToken").abi if "name" in item}
    assert [shape(e) for e in ERC20_ABI] == [shape(compiled[e["name"]]) for e in ERC20_ABI]
    transfer_event = next(e for e in ERC20_ABI if e["type"] == "event")
    assert [p["name"] for p in transfer_event["inputs"]] == ["from", "to", "value"]  # the decoded args' keys
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["lunark"]
    assert "chain/*.json" in globs


def test_load_unknown_artifact_raises_config_error_listing_known_names() -> None:
    with pytest.raises(ConfigError, match="Nope") as exc:
        load_artifact("Nope")
    assert "Reverter" in exc.value.message and "TestToken" in exc.value.message
    with pytest.raises(ConfigError):
        load_artifact("../__init__")


# -- TestToken on a real chain -----------------------------------------------------------------


@pytest.fixture
def w3(anvil: Anvil) -> Web3:
    return Web3(HTTPProvider(anvil.url))


@pytest.fixture
def token(w3: Web3, world: World) -> Contract:
    return w3.eth.contract(address=world.token, abi=load_artifact("TestToken").abi)


@pytest.fixture
def reverter(w3: Web3, world: World) -> Contract:
    return w3.eth.contract(address=world.reverter, abi=load_artifact("Reverter").abi)


def test_token_metadata_reads_back(w3: Web3, world: World, token: Contract) -> None:
    assert token.functions.name().call() == "Test Token"
    assert token.functions.symbol().call() == "TKN"
    assert token.functions.decimals().call() == 18
    usd = w3.eth.contract(address=world.usd, abi=load_artifact("TestToken").abi)
    assert (usd.functions.symbol().call(), usd.functions.decimals().call()) == ("TUSD", 6)


def test_deploy_contract_returns_the_address_of_the_deployed_code(
    w3: Web3, anvil: Anvil, alice: DevAccount
) -> None:
    address = deploy_contract(anvil.url, "Reverter", private_key=alice.private_key)
    # Reverter has no immutables, so the chain holds exactly the artifact's runtime code.
    assert w3.eth.get_code(address).to_0x_hex() == load_artifact("Reverter").deployed_bytecode


def test_transfer_moves_exact_balances(
    w3: Web3, token: Contract, alice: DevAccount, bob: DevAccount
) -> None:
    amount = 12_345 * 10**15
    assert token.functions.balanceOf(alice.address).call() == INITIAL_TOKENS

    tx_hash = token.functions.transfer(bob.address, amount).transact({"from": alice.address})
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash)

    assert receipt["status"] == 1
    assert token.functions.balanceOf(alice.address).call() == INITIAL_TOKENS - amount
    assert token.functions.balanceOf(bob.address).call() == INITIAL_TOKENS + amount
    (event,) = token.events.Transfer().process_receipt(receipt)
    assert (event["args"]["from"], event["args"]["to"], event["args"]["value"]) == (
        alice.address,
        bob.address,
        amount,
    )


def test_transfer_beyond_balance_reverts_with_reason(
    token: Contract, alice: DevAccount, bob: DevAccount
) -> None:
    call = token.functions.transfer(bob.address, INITIAL_TOKENS + 1)
    with pytest.raises(ContractLogicError) as exc:
        call.call({"from": alice.address})
    assert _reason(exc) == "ERC20: transfer amount exceeds balance"
    with pytest.raises(ContractLogicError) as exc:
        call.estimate_gas({"from": alice.address})
    assert _reason(exc) == "ERC20: transfer amount exceeds balance"


def test_transfer_to_zero_address_reverts_with_reason(token: Contract, alice: DevAccount) -> None:
    with pytest.raises(ContractLogicError) as exc:
        token.functions.transfer(ZERO_ADDRESS, 1).call({"from": alice.address})
    assert _reason(exc) == "ERC20: transfer to the zero address"


def test_transfer_from_respects_allowance(
    w3: Web3, token: Contract, alice: DevAccount, bob: DevAccount
) -> None:
    w3.eth.wait_for_transaction_receipt(
        token.functions.approve(bob.address, 100).transact({"from": alice.address})
    )
    assert token.functions.allowance(alice.address, bob.address).call() == 100

    with pytest.raises(ContractLogicError) as exc:
        token.functions.transferFrom(alice.address, bob.address, 101).call({"from": bob.address})
    assert _reason(exc) == "ERC20: insufficient allowance"

    w3.eth.wait_for_transaction_receipt(
        token.functions.transferFrom(alice.address, bob.address, 60).transact({"from": bob.address})
    )
    assert token.functions.allowance(alice.address, bob.address).call() == 40
    assert token.functions.balanceOf(bob.address).call() == INITIAL_TOKENS + 60


def test_mint_increases_supply_and_balance(
    w3: Web3, token: Contract, alice: DevAccount, bob: DevAccount
) -> None:
    supply = token.functions.totalSupply().call()
    # Anyone may mint: alice mints to bob.
    receipt = w3.eth.wait_for_transaction_receipt(
        token.functions.mint(bob.address, 7).transact({"from": alice.address})
    )
    assert receipt["status"] == 1
    assert token.functions.totalSupply().call() == supply + 7
    assert token.functions.balanceOf(bob.address).call() == INITIAL_TOKENS + 7


# -- Reverter ----------------------------------------------------------------------------------


def test_fail_reverts_with_the_given_reason(reverter: Contract) -> None:
    with pytest.raises(ContractLogicError) as exc:
        reverter.functions.fail("boom").call()
    assert _reason(exc) == "boom"


def test_always_reverts(reverter: Contract) -> None:
    with pytest.raises(ContractLogicError) as exc:
        reverter.functions.alwaysReverts().estimate_gas()
    assert _reason(exc) == "Reverter: always reverts"


def test_plain_ether_transfer_fails_in_simulation(
    w3: Web3, world: World, alice: DevAccount
) -> None:
    tx = {"from": alice.address, "to": world.reverter, "value": 1}
    with pytest.raises(ContractLogicError) as exc:
        w3.eth.call(tx)  # type: ignore[arg-type]
    assert _reason(exc) == "Reverter: no ether accepted"
    with pytest.raises(ContractLogicError) as exc:
        w3.eth.estimate_gas(tx)  # type: ignore[arg-type]
    assert _reason(exc) == "Reverter: no ether accepted"


def test_deny_raises_the_custom_error(reverter: Contract, alice: DevAccount) -> None:
    with pytest.raises(ContractCustomError) as exc:
        reverter.functions.deny().call({"from": alice.address})
    selector = function_signature_to_4byte_selector("Denied(address)")
    expected = "0x" + (selector + encode(["address"], [alice.address])).hex()
    assert exc.value.data == expected
