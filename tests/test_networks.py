"""The network registry: lookups, suggestions, overrides, tokens, wallet parameters."""

from __future__ import annotations

import pytest

from lunark.errors import ConfigError, UnknownNetwork, UnknownToken
from lunark.networks import ANVIL_CHAIN_ID, NetworkConfig, NetworkRegistry, TokenConfig

USDC_MAINNET = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
TOKEN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


@pytest.fixture
def networks() -> NetworkRegistry:
    return NetworkRegistry.default()


@pytest.mark.parametrize(
    ("query", "name"),
    [
        (1, "ethereum"),
        (ANVIL_CHAIN_ID, "anvil"),
        ("8453", "base"),
        ("0xaa36a7", "sepolia"),
        ("0xAA36A7", "sepolia"),
        ("0x7a69", "anvil"),
        ("sepolia", "sepolia"),
        ("SePoLiA", "sepolia"),
        ("  base  ", "base"),
        ("arb", "arbitrum"),
        ("ARB1", "arbitrum"),
        ("mainnet", "ethereum"),
        ("Matic", "polygon"),
        ("local", "anvil"),
        ("OP Mainnet", "optimism"),
    ],
)
def test_lookup_by_id_name_or_alias_in_any_case(networks: NetworkRegistry, query: str | int, name: str) -> None:
    assert networks.get(query).name == name
    assert query in networks


def test_builtins(networks: NetworkRegistry) -> None:
    assert next(iter(networks)).chain_id == ANVIL_CHAIN_ID, "the local chain is listed first"
    assert {n.name for n in networks} >= {"anvil", "ethereum", "sepolia", "base", "optimism", "arbitrum", "polygon"}
    assert len(networks) == len(networks.as_mapping())
    polygon = networks.get("polygon")
    assert polygon.symbol == "POL" and polygon.chain_id == 137
    assert networks.get("anvil").testnet and not networks.get("ethereum").testnet


@pytest.mark.parametrize(("typo", "meant"), [("sepola", "sepolia"), ("arbitrun", "arbitrum"), ("Etherium", "ethereum")])
def test_unknown_name_suggests_close_matches(networks: NetworkRegistry, typo: str, meant: str) -> None:
    with pytest.raises(UnknownNetwork) as caught:
        networks.get(typo)
    assert meant in caught.value.suggestions
    assert f"Did you mean '{meant}'" in caught.value.message
    assert caught.value.code == "invalid_input" and caught.value.details["query"] == typo
    assert typo not in networks


@pytest.mark.parametrize("query", [999, "999", "0x3e7"])
def test_unknown_chain_id_lists_the_known_networks(networks: NetworkRegistry, query: str | int) -> None:
    with pytest.raises(UnknownNetwork) as caught:
        networks.get(query)
    assert caught.value.suggestions == []
    assert "Known networks:" in caught.value.message
    assert "sepolia (11155111)" in caught.value.message and "anvil (31337)" in caught.value.message


@pytest.mark.parametrize("query", ["", "0x", "quux-chain-zz", True])
def test_nonsense_is_an_unknown_network(networks: NetworkRegistry, query: object) -> None:
    with pytest.raises(UnknownNetwork):
        networks.get(query)  # type: ignore[arg-type]
    assert query not in networks


def test_overrides_change_rpc_urls_and_add_tokens(networks: NetworkRegistry) -> None:
    changed = networks.with_overrides(
        [
            NetworkConfig(
                name="anvil",
                rpc_urls=["http://127.0.0.1:9545", "http://127.0.0.1:9546"],
                tokens=[TokenConfig(symbol="TKN", address=TOKEN.lower(), decimals=18, name="Test Token")],
            ),
            NetworkConfig(chain_id=1, tokens=[TokenConfig(symbol="LINK", address=TOKEN, decimals=18)]),
            NetworkConfig(name="Sepolia", explorer_url="https://sepolia.example/", confirmations=4),
        ]
    )
    anvil = changed.get("anvil")
    assert anvil.rpc_urls == ("http://127.0.0.1:9545", "http://127.0.0.1:9546")
    assert anvil.rpc_url == "http://127.0.0.1:9545"
    assert anvil.token("tkn").address == TOKEN, "addresses are stored checksummed"
    assert anvil.display_name == "Anvil (local)", "unset fields keep the built-in values"
    ethereum = changed.get(1)
    assert [t.symbol for t in ethereum.tokens] == ["USDC", "USDT", "DAI", "WETH", "LINK"]
    sepolia = changed.get("sepolia")
    assert sepolia.explorer_url == "https://sepolia.example" and sepolia.confirmations == 4
    # The original registry is unchanged.
    assert networks.get("anvil").rpc_urls == ("http://127.0.0.1:8545",)
    assert not networks.get("anvil").tokens


def test_override_by_alias_keeps_the_network_name(networks: NetworkRegistry) -> None:
    changed = networks.with_overrides([NetworkConfig(name="ETH", rpc_urls=["http://node.example"])])
    ethereum = changed.get("ethereum")
    assert ethereum.name == "ethereum" and ethereum.rpc_urls == ("http://node.example",)
    assert changed.get("eth") is ethereum


def test_a_token_with_the_same_symbol_replaces_the_known_one(networks: NetworkRegistry) -> None:
    changed = networks.with_overrides(
        [NetworkConfig(name="ethereum", tokens=[TokenConfig(symbol="usdc", address=TOKEN, decimals=6)])]
    )
    [usdc] = [t for t in changed.get(1).tokens if t.symbol.upper() == "USDC"]
    assert usdc.address == TOKEN


def test_new_network(networks: NetworkRegistry) -> None:
    changed = networks.with_overrides(
        [
            NetworkConfig(
                name="Gnosis",
                chain_id=100,
                symbol="xDAI",
                rpc_urls=["https://rpc.gnosischain.com"],
                explorer_url="https://gnosisscan.io",
                aliases=["XDAI", "gc"],
            )
        ]
    )
    gnosis = changed.get("gnosis")
    assert gnosis.chain_id == 100 and gnosis.name == "gnosis" and gnosis.display_name == "Gnosis"
    assert changed.get("xdai") is gnosis and changed.get("GC") is gnosis and changed.get("0x64") is gnosis
    assert gnosis.symbol == "xDAI" and gnosis.decimals == 18 and gnosis.confirmations == 1
    assert 100 not in networks


@pytest.mark.parametrize(
    "config",
    [NetworkConfig(name="gnosis"), NetworkConfig(chain_id=100, rpc_urls=["https://rpc.gnosischain.com"])],
)
def test_a_new_network_needs_name_and_chain_id(networks: NetworkRegistry, config: NetworkConfig) -> None:
    with pytest.raises(ConfigError, match="needs both name and chain_id"):
        networks.with_overrides([config])


@pytest.mark.parametrize(
    "config",
    [
        NetworkConfig(name="gnosis", chain_id=100, aliases=["eth"]),
        NetworkConfig(name="sepolia-fork", chain_id=111, aliases=["sep"]),
        NetworkConfig(name="base", chain_id=84532),  # base's own name on another chain
    ],
)
def test_a_name_or_alias_naming_another_chain_is_refused(networks: NetworkRegistry, config: NetworkConfig) -> None:
    with pytest.raises(ConfigError, match="already names chain") as caught:
        networks.with_overrides([config])
    assert caught.value.code == "invalid_input"


def test_invalid_token_address_is_a_config_error(networks: NetworkRegistry) -> None:
    with pytest.raises(ConfigError, match="not an address"):
        networks.with_overrides(
            [NetworkConfig(name="anvil", tokens=[TokenConfig(symbol="BAD", address="0x1234", decimals=18)])]
        )


def test_token_lookup_by_symbol_or_address(networks: NetworkRegistry) -> None:
    ethereum = networks.get("ethereum")
    assert ethereum.token("usdc").address == USDC_MAINNET
    assert ethereum.token(" USDC ").decimals == 6
    assert ethereum.token(USDC_MAINNET.lower()).symbol == "USDC"
    assert ethereum.token(USDC_MAINNET).name == "USD Coin"
    assert ethereum.is_native("eth") and ethereum.is_native(None) and ethereum.is_native("")
    assert not ethereum.is_native("USDC")
    assert networks.get("polygon").is_native("pol")


@pytest.mark.parametrize("query", ["DOGE", "0x0000000000000000000000000000000000000001"])
def test_unknown_token_lists_the_known_ones(networks: NetworkRegistry, query: str) -> None:
    with pytest.raises(UnknownToken) as caught:
        networks.get(1).token(query)
    assert "known: USDC, USDT, DAI, WETH" in caught.value.message
    assert caught.value.details == {"token": query, "chain_id": 1}


def test_no_tokens_known() -> None:
    with pytest.raises(UnknownToken, match=r"known: none"):
        NetworkRegistry.default().get("anvil").token("USDC")


def test_eip3085_parameters(networks: NetworkRegistry) -> None:
    assert networks.get("sepolia").to_eip3085() == {
        "chainId": "0xaa36a7",
        "chainName": "Sepolia",
        "nativeCurrency": {"name": "ETH", "symbol": "ETH", "decimals": 18},
        "rpcUrls": ["https://ethereum-sepolia-rpc.publicnode.com"],
        "blockExplorerUrls": ["https://sepolia.etherscan.io"],
    }
    anvil = networks.get("anvil").to_eip3085()
    assert anvil["chainId"] == "0x7a69" and "blockExplorerUrls" not in anvil
    assert networks.get("polygon").to_eip3085()["nativeCurrency"]["symbol"] == "POL"


def test_explorer_tx_url(networks: NetworkRegistry) -> None:
    tx = "0x" + "ab" * 32
    assert networks.get("base").explorer_tx_url(tx) == f"https://basescan.org/tx/{tx}"
    assert networks.get("anvil").explorer_tx_url(tx) is None


def test_a_network_without_rpc_url() -> None:
    registry = NetworkRegistry.default().with_overrides([NetworkConfig(name="anvil", rpc_urls=[])])
    with pytest.raises(ConfigError, match="no RPC URL"):
        _ = registry.get("anvil").rpc_url
