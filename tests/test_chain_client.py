"""ChainClient against a real Anvil: balances, tokens, preparation, simulation, broadcast."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from conftest import INITIAL_TOKENS, SECOND_CHAIN_ID, World
from eth_account import Account
from eth_typing import HexStr
from eth_utils.abi import function_signature_to_4byte_selector
from web3.exceptions import ContractLogicError

from lunark.chain.anvil import Anvil, DevAccount, free_port
from lunark.chain.client import ChainClient, ChainClients
from lunark.chain.connection import revert_reason as _revert_reason
from lunark.chain.signer import LocalSigner
from lunark.chain.types import PreparedTx, TransferIntent, encode_erc20_transfer
from lunark.errors import (
    ChainError,
    InsufficientFunds,
    InvalidAddress,
    InvalidAmount,
    InvalidInput,
    RpcUnavailable,
    SimulationFailed,
    UnknownNetwork,
    UnknownToken,
    WrongNetwork,
)
from lunark.networks import Network, NetworkRegistry, Token

ONE = 10**18
TUSD = 10**6


@pytest.fixture
async def client(anvil: Anvil, registry: NetworkRegistry) -> AsyncIterator[ChainClient]:
    async with ChainClient(registry.get("anvil")) as chain:
        yield chain


def rpc_int(anvil: Anvil, method: str, *params: Any) -> int:
    return int(anvil.rpc(method, list(params)), 16)


def eth_balance(anvil: Anvil, address: str) -> int:
    return rpc_int(anvil, "eth_getBalance", address, "latest")


def token_balance(anvil: Anvil, token: str, owner: str) -> int:
    data = "0x" + function_signature_to_4byte_selector("balanceOf(address)").hex()
    data += owner[2:].lower().rjust(64, "0")
    return int(anvil.rpc("eth_call", [{"to": token, "data": data}, "latest"]), 16)


def fresh_account() -> tuple[str, str]:
    account = Account.create()
    return account.address, "0x" + bytes(account.key).hex()


async def send(client: ChainClient, prepared: PreparedTx, signer: LocalSigner) -> dict[str, Any]:
    tx_hash = await client.send_raw_transaction(await signer.sign_transaction(prepared))
    receipt = await client.w3.eth.wait_for_transaction_receipt(HexStr(tx_hash), timeout=10)
    assert receipt["status"] == 1
    return dict(receipt)


# -- balances ----------------------------------------------------------------------------------


async def test_native_balance(client: ChainClient, anvil: Anvil, alice: DevAccount) -> None:
    anvil.set_balance(alice.address, 1_500_000_000_000_000_000)
    balance = await client.native_balance(alice.address.lower())
    assert balance.address == alice.address
    assert (balance.raw, balance.amount) == (1_500_000_000_000_000_000, Decimal("1.5"))
    assert (balance.symbol, balance.decimals, balance.chain_id) == ("ETH", 18, 31337)
    assert balance.token is None
    assert await client.balance(alice.address) == balance
    assert await client.balance(alice.address, "eth") == balance
    assert await client.balance(alice.address, " ETH ") == balance


@pytest.mark.parametrize(("symbol", "decimals"), [("TKN", 18), ("TUSD", 6), ("tusd", 6)])
async def test_token_balance_by_symbol(
    client: ChainClient, world: World, alice: DevAccount, symbol: str, decimals: int
) -> None:
    balance = await client.balance(alice.address, symbol)
    expected_raw = INITIAL_TOKENS if decimals == 18 else 1_000_000 * TUSD
    assert balance.raw == expected_raw
    assert balance.amount == Decimal(1_000_000)
    assert balance.decimals == decimals
    assert balance.symbol == symbol.upper()
    assert balance.token == (world.token if decimals == 18 else world.usd)


async def test_token_balance_by_address_reads_the_contract(
    anvil: Anvil, world: World, alice: DevAccount
) -> None:
    # A network that knows no tokens at all: everything comes from the chain.
    network = Network(chain_id=31337, name="bare", display_name="Bare", rpc_urls=(anvil.url,))
    async with ChainClient(network) as client:
        balance = await client.token_balance(alice.address, world.usd.lower())
        token = await client.resolve_token(world.usd)
    assert (balance.symbol, balance.decimals, balance.token) == ("TUSD", 6, world.usd)
    assert balance.raw == 1_000_000 * TUSD
    assert token == Token(symbol="TUSD", address=world.usd, decimals=6, name="Test USD")


async def test_contract_decimals_win_over_configuration(
    anvil: Anvil, world: World, alice: DevAccount, bob: DevAccount
) -> None:
    wrong = Token(symbol="TUSD", address=world.usd, decimals=18, name="misconfigured")
    network = Network(
        chain_id=31337, name="local", display_name="Local", rpc_urls=(anvil.url,), tokens=(wrong,)
    )
    async with ChainClient(network) as client:
        balance = await client.balance(alice.address, "TUSD")
        intent = await client.build_intent(alice.address, bob.address, "1.5", "TUSD")
    assert balance.decimals == 6
    assert balance.amount == Decimal(1_000_000)
    assert (intent.decimals, intent.amount) == (6, 1_500_000)


async def test_resolve_token_caches_per_address(client: ChainClient, world: World) -> None:
    first = await client.resolve_token("TKN")
    assert first == Token(symbol="TKN", address=world.token, decimals=18, name="Test Token")
    assert await client.resolve_token(world.token.lower()) is first


async def test_unknown_symbol_lists_known_ones(client: ChainClient, alice: DevAccount) -> None:
    with pytest.raises(UnknownToken, match="DOGE") as info:
        await client.balance(alice.address, "DOGE")
    assert "TKN" in info.value.message and "TUSD" in info.value.message
    assert info.value.details["chain_id"] == 31337


async def test_address_without_code_is_not_a_token(
    client: ChainClient, alice: DevAccount, bob: DevAccount
) -> None:
    with pytest.raises(UnknownToken, match="no contract"):
        await client.balance(alice.address, bob.address)


async def test_contract_without_decimals_is_not_a_token(
    client: ChainClient, world: World, alice: DevAccount
) -> None:
    with pytest.raises(UnknownToken, match="decimals"):
        await client.token_balance(alice.address, world.reverter)


async def test_native_symbol_is_not_a_token(client: ChainClient) -> None:
    with pytest.raises(UnknownToken, match="native currency"):
        await client.resolve_token("ETH")


async def test_bad_checksum_is_refused(client: ChainClient, alice: DevAccount) -> None:
    # Flip the case of one letter: still mixed case, no longer a valid EIP-55 checksum.
    i = next(i for i, c in enumerate(alice.address) if i > 1 and c.isalpha())
    bad = alice.address[:i] + alice.address[i].swapcase() + alice.address[i + 1 :]
    with pytest.raises(InvalidAddress, match="checksum"):
        await client.native_balance(bad)


# -- connectivity ------------------------------------------------------------------------------


async def test_wrong_network(anvil: Anvil, alice: DevAccount) -> None:
    network = Network(chain_id=1, name="ethereum", display_name="Ethereum", rpc_urls=(anvil.url,))
    async with ChainClient(network) as client:
        with pytest.raises(WrongNetwork) as info:
            await client.ensure_chain()
        assert (info.value.expected, info.value.actual) == (1, 31337)
        # A failed check is not cached: reads refuse too.
        with pytest.raises(WrongNetwork):
            await client.native_balance(alice.address)


async def test_unreachable_rpc(alice: DevAccount) -> None:
    port = free_port()
    network = Network(
        chain_id=31337,
        name="gone",
        display_name="Gone",
        rpc_urls=(f"http://user:pw@127.0.0.1:{port}/v3/secret-api-key",),
    )
    async with ChainClient(network, request_timeout=2) as client:
        with pytest.raises(RpcUnavailable) as info:
            await client.ensure_chain()
        with pytest.raises(RpcUnavailable):
            await client.native_balance(alice.address)
    error = info.value
    assert error.details["endpoint"] == f"http://127.0.0.1:{port}"
    assert "secret-api-key" not in error.message and "pw" not in error.message
    assert error.code == "chain_error"


async def test_ensure_chain_caches_success(client: ChainClient) -> None:
    await client.ensure_chain()
    await client.close()
    # A closed client reconnects on demand; a cached check costs no request.
    await client.ensure_chain()


# -- building intents --------------------------------------------------------------------------


async def test_build_native_intent(client: ChainClient, alice: DevAccount, bob: DevAccount) -> None:
    intent = await client.build_intent(alice.address.lower(), bob.address, "0.25")
    assert intent == TransferIntent(
        chain_id=31337,
        sender=alice.address,
        recipient=bob.address,
        amount=ONE // 4,
        symbol="ETH",
        decimals=18,
    )


async def test_build_token_intent(
    client: ChainClient, world: World, alice: DevAccount, bob: DevAccount
) -> None:
    intent = await client.build_intent(alice.address, bob.address, Decimal("2.5"), "tusd")
    assert (intent.amount, intent.symbol, intent.decimals, intent.token) == (
        2_500_000,
        "TUSD",
        6,
        world.usd,
    )


async def test_build_intent_refusals(
    client: ChainClient, world: World, alice: DevAccount, bob: DevAccount
) -> None:
    with pytest.raises(InvalidInput, match="yourself"):
        await client.build_intent(alice.address, alice.address.lower(), "1")
    with pytest.raises(InvalidInput, match="token contract itself"):
        await client.build_intent(alice.address, world.token, "1", "TKN")
    with pytest.raises(InvalidAmount, match="6 decimal places"):
        await client.build_intent(alice.address, bob.address, "0.1234567", "TUSD")
    with pytest.raises(InvalidAmount, match="float"):
        await client.build_intent(alice.address, bob.address, 0.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidAddress):
        await client.build_intent(alice.address, "0x1234", "1")


# -- prepare, sign, send -----------------------------------------------------------------------


async def test_prepare_sign_send_native(
    client: ChainClient, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    amount = ONE // 10
    alice_before, bob_before = eth_balance(anvil, alice.address), eth_balance(anvil, bob.address)
    prepared = await client.prepare_transfer(alice.address, bob.address, "0.1")

    assert prepared.nonce == rpc_int(anvil, "eth_getTransactionCount", alice.address, "pending")
    estimate = rpc_int(
        anvil, "eth_estimateGas", {"from": alice.address, "to": bob.address, "value": hex(amount)}
    )
    assert prepared.gas == estimate * 120 // 100 > estimate
    block = anvil.rpc("eth_getBlockByNumber", ["latest", False])
    priority = rpc_int(anvil, "eth_maxPriorityFeePerGas")
    assert prepared.max_priority_fee_per_gas == priority
    assert prepared.max_fee_per_gas == 2 * int(block["baseFeePerGas"], 16) + priority
    params = prepared.to_tx_params()
    assert (params["to"], params["value"], params["data"], params["chainId"]) == (
        bob.address,
        amount,
        "0x",
        31337,
    )

    receipt = await send(client, prepared, LocalSigner(alice.private_key))
    fee = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert eth_balance(anvil, bob.address) == bob_before + amount
    assert eth_balance(anvil, alice.address) == alice_before - amount - fee


async def test_prepare_sign_send_erc20(
    client: ChainClient, anvil: Anvil, world: World, alice: DevAccount, bob: DevAccount
) -> None:
    alice_before = token_balance(anvil, world.usd, alice.address)
    bob_before = token_balance(anvil, world.usd, bob.address)
    bob_eth = eth_balance(anvil, bob.address)
    prepared = await client.prepare_transfer(alice.address, bob.address, "2.5", "TUSD")

    data = encode_erc20_transfer(bob.address, 2_500_000)
    params = prepared.to_tx_params()
    assert (params["to"], params["value"], params["data"], params["chainId"]) == (
        world.usd,
        0,
        data,
        31337,
    )
    call = {"from": alice.address, "to": world.usd, "data": data}
    estimate = rpc_int(anvil, "eth_estimateGas", call)
    assert prepared.gas > estimate
    assert prepared.nonce == rpc_int(anvil, "eth_getTransactionCount", alice.address, "pending")

    await send(client, prepared, LocalSigner(alice.private_key))
    assert token_balance(anvil, world.usd, alice.address) == alice_before - 2_500_000
    assert token_balance(anvil, world.usd, bob.address) == bob_before + 2_500_000
    assert eth_balance(anvil, bob.address) == bob_eth



async def test_token_transfer_logs_and_code_for_the_recipient_checks(
    client: ChainClient, world: World, alice: DevAccount
) -> None:
    # What lunark.tools.recipient asks instead of reaching the client's w3: the owner's recent
    # Transfer logs, both ways, and whether an address has code.
    carol, _ = fresh_account()
    prepared = await client.prepare_transfer(alice.address, carol, "1.25", "TUSD")
    await send(client, prepared, LocalSigner(alice.private_key))

    def party(log: Any, index: int) -> str:
        return "0x" + bytes(log["topics"][index])[-20:].hex()

    sent, received = await client.token_transfer_logs(alice.address, [world.usd], 3)
    assert carol.lower() in {party(log, 2) for log in sent}
    assert all(party(log, 1) == alice.address.lower() for log in sent)
    assert all(party(log, 2) == alice.address.lower() for log in received)
    carol_sent, carol_received = await client.token_transfer_logs(carol, [world.usd, world.token], 3)
    assert carol_sent == []
    assert [(party(log, 1), int.from_bytes(bytes(log["data"]), "big")) for log in carol_received] == [
        (alice.address.lower(), 1_250_000)
    ]
    assert await client.code_at(world.usd) != b""
    assert await client.code_at(carol.lower()) == b""


async def test_a_transaction_read_ahead_is_the_one_asked_for_after(
    client: ChainClient, alice: DevAccount, bob: DevAccount
) -> None:
    prepared = await client.prepare_transfer(alice.address, bob.address, "0.01")
    tx_hash = (await send(client, prepared, LocalSigner(alice.private_key)))["transactionHash"].to_0x_hex()
    client.read_ahead(tx_hash.upper().replace("0X", "0x"))
    client.read_ahead(tx_hash)  # once per hash
    tx = await client.transaction(tx_hash, timeout=0)
    assert (tx.tx_hash, tx.sender, tx.to, tx.value, tx.nonce) == (
        tx_hash, alice.address, bob.address, 10**16, prepared.nonce
    )
    # Not seen when read ahead: asked for later, it is waited for as without the read ahead.
    unknown = "0x" + "ab" * 32
    client.read_ahead(unknown)
    with pytest.raises(ChainError, match=r"not found within 0\.2s"):
        await client.transaction(unknown, timeout=0.2)

async def test_prepare_uses_the_pending_nonce(
    client: ChainClient, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    latest = rpc_int(anvil, "eth_getTransactionCount", alice.address, "latest")
    anvil.set_automine(False)
    anvil.rpc("eth_sendTransaction", [{"from": alice.address, "to": bob.address, "value": "0x1"}])
    prepared = await client.prepare_transfer(alice.address, bob.address, "1")
    assert prepared.nonce == latest + 1


async def test_prepare_on_the_second_chain(
    anvil2: Anvil, registry: NetworkRegistry, alice: DevAccount, bob: DevAccount
) -> None:
    async with ChainClients(registry) as clients:
        client = clients.get("anvil-2")
        prepared = await client.prepare_transfer(alice.address, bob.address, "1", "TKN")
        assert prepared.intent.chain_id == SECOND_CHAIN_ID
        await send(client, prepared, LocalSigner.anvil(0))


async def test_prepare_refuses_an_intent_for_another_chain(
    client: ChainClient, alice: DevAccount, bob: DevAccount
) -> None:
    intent = await client.build_intent(alice.address, bob.address, "1")
    with pytest.raises(WrongNetwork) as info:
        await client.prepare(dataclasses.replace(intent, chain_id=SECOND_CHAIN_ID))
    assert (info.value.expected, info.value.actual) == (31337, SECOND_CHAIN_ID)


async def test_insufficient_native_balance(
    client: ChainClient, anvil: Anvil, bob: DevAccount
) -> None:
    poor, _ = fresh_account()
    anvil.set_balance(poor, 10**15)
    block = anvil.block_number()
    with pytest.raises(InsufficientFunds) as info:
        await client.prepare_transfer(poor, bob.address, "1")
    assert (info.value.needed, info.value.available, info.value.symbol) == (ONE, 10**15, "ETH")
    assert "fee" in info.value.message

    # Enough for the amount but not for the amount plus the fee: needed counts the fee.
    with pytest.raises(InsufficientFunds, match="network fees") as info:
        await client.prepare_transfer(poor, bob.address, "0.001")
    assert info.value.needed > 10**15 == info.value.available
    assert anvil.block_number() == block
    assert rpc_int(anvil, "eth_getTransactionCount", poor, "pending") == 0


async def test_insufficient_token_balance(
    client: ChainClient, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    poor, _ = fresh_account()
    anvil.set_balance(poor, ONE)
    with pytest.raises(InsufficientFunds) as info:
        await client.prepare_transfer(poor, bob.address, "1", "TUSD")
    assert (info.value.needed, info.value.available, info.value.symbol) == (TUSD, 0, "TUSD")
    assert isinstance(info.value, SimulationFailed)
    assert info.value.to_dict()["needed"] == str(TUSD)


async def test_token_transfer_without_gas_money(
    client: ChainClient, anvil: Anvil, world: World, alice: DevAccount, bob: DevAccount
) -> None:
    poor, _ = fresh_account()
    data = encode_erc20_transfer(poor, 5 * TUSD)
    anvil.rpc("eth_sendTransaction", [{"from": alice.address, "to": world.usd, "data": data}])
    anvil.set_balance(poor, 0)
    with pytest.raises(InsufficientFunds) as info:
        await client.prepare_transfer(poor, bob.address, "1", "TUSD")
    assert (info.value.symbol, info.value.available) == ("ETH", 0)
    assert info.value.needed > 0
    assert "network fee" in info.value.message


async def test_ether_to_a_reverting_contract_fails_simulation(
    client: ChainClient, anvil: Anvil, world: World, alice: DevAccount
) -> None:
    block = anvil.block_number()
    with pytest.raises(SimulationFailed) as info:
        await client.prepare_transfer(alice.address, world.reverter, "1")
    assert not isinstance(info.value, InsufficientFunds)
    assert info.value.reason == "Reverter: no ether accepted"
    assert "Reverter: no ether accepted" in info.value.message
    assert info.value.details["revert_data"].startswith("0x08c379a0")
    assert anvil.block_number() == block


async def test_revert_reasons_are_decoded(client: ChainClient, world: World) -> None:
    async def revert_of(signature: str, args: str = "") -> tuple[str | None, str | None]:
        data = HexStr("0x" + function_signature_to_4byte_selector(signature).hex() + args)
        with pytest.raises(ContractLogicError) as info:
            await client.w3.eth.call({"to": world.reverter, "data": data})
        return _revert_reason(info.value)

    assert (await revert_of("alwaysReverts()"))[0] == "Reverter: always reverts"
    selector = "0x" + function_signature_to_4byte_selector("Denied(address)").hex()
    reason, data = await revert_of("deny()")
    assert reason == selector
    assert data is not None and data.startswith(selector)


async def test_send_raw_transaction_reports_node_refusals(
    client: ChainClient, alice: DevAccount, bob: DevAccount
) -> None:
    signer = LocalSigner(alice.private_key)
    prepared = await client.prepare_transfer(alice.address, bob.address, "1")
    raw = await signer.sign_transaction(prepared)
    tx_hash = await client.send_raw_transaction(raw.hex())
    assert tx_hash.startswith("0x") and len(tx_hash) == 66
    with pytest.raises(ChainError) as info:
        await client.send_raw_transaction(raw)
    assert not isinstance(info.value, RpcUnavailable)
    assert info.value.details["node_message"]
    assert info.value.details["node_message"] in info.value.message
    with pytest.raises(InvalidInput):
        await client.send_raw_transaction("0xnothex")


# -- ChainClients ------------------------------------------------------------------------------


async def test_chain_clients_cache_per_network(registry: NetworkRegistry, anvil: Anvil) -> None:
    clients = ChainClients(registry)
    try:
        first = clients.get("anvil")
        assert clients.get(31337) is first
        assert clients.get("LOCAL") is first
        assert clients.get(registry.get("anvil")) is first
        second = clients.get("anvil-2")
        assert second is not first and second.network.chain_id == SECOND_CHAIN_ID
        assert clients.get(SECOND_CHAIN_ID) is second
        with pytest.raises(UnknownNetwork):
            clients.get("nowhere")
        await first.ensure_chain()
        await second.ensure_chain()
    finally:
        await clients.close()
    assert clients.get("anvil") is not first  # closing forgets them
    await clients.close()
