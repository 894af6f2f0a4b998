"""Networks Lunark knows: chain id, native currency, RPC, explorer, tokens.

A ``NetworkRegistry`` starts from the built-in networks (a local Anvil at
31337 plus Ethereum, Sepolia, Base, Optimism, Arbitrum and Polygon) and is
extended or overridden from configuration::

    registry = NetworkRegistry.default()
    registry.get("sepolia").chain_id          # 11155111
    registry.get(8453).name                   # "base"
    registry.get("arb").name                  # "arbitrum" (alias, any case)
    registry = registry.with_overrides([NetworkConfig(name="anvil", rpc_urls=["http://127.0.0.1:9545"])])
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from eth_typing import ChecksumAddress
from eth_utils.address import is_address, to_checksum_address
from pydantic import BaseModel, ConfigDict, Field

from lunark.errors import ConfigError, UnknownNetwork, UnknownToken

__all__ = [
    "ANVIL_CHAIN_ID",
    "DEFAULT_FEE_WARNING_SHARE",
    "DEFAULT_MAX_FEE_PER_GAS",
    "ENS_REGISTRY",
    "Network",
    "NetworkConfig",
    "NetworkRegistry",
    "Token",
    "TokenConfig",
]

ANVIL_CHAIN_ID = 31337
ENS_REGISTRY = to_checksum_address("0x00000000000C2E074eC69A0dFb2997BA6C7d2e1e")
"""The ENS registry (with fallback) on Ethereum mainnet and Sepolia."""
GWEI = 10**9
DEFAULT_MAX_FEE_PER_GAS = 500 * GWEI
"""Ceiling of a prepared transaction's fee cap (wei per gas) unless a network sets its own."""
DEFAULT_FEE_WARNING_SHARE = Decimal("0.1")
"""A card says so when the worst-case fee is more than this share of a native amount."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Token:
    """An ERC-20 token known on one network."""

    symbol: str
    """Ticker as users type it, e.g. ``"USDC"``; matched case-insensitively."""
    address: ChecksumAddress
    """The token contract."""
    decimals: int
    """How many decimals one whole token has (USDC: 6, most others: 18)."""
    name: str | None = None
    """Human name, e.g. ``"USD Coin"``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Network:
    """One EVM network. Enough to talk to it and to add it to a wallet (EIP-3085)."""

    chain_id: int
    """EIP-155 chain id."""
    name: str
    """Registry key, lowercase, e.g. ``"sepolia"``."""
    display_name: str
    """What a person reads, e.g. ``"Sepolia"``."""
    symbol: str = "ETH"
    """Native currency symbol."""
    decimals: int = 18
    """Native currency decimals."""
    rpc_urls: tuple[str, ...] = ()
    """JSON-RPC endpoints; the first is used by the server."""
    explorer_url: str | None = None
    """Block explorer base URL, without a trailing slash."""
    confirmations: int = 1
    """Blocks (including the one that mined it) before a transaction counts as confirmed."""
    aliases: tuple[str, ...] = ()
    """Other names this network answers to, lowercase."""
    tokens: tuple[Token, ...] = ()
    """Known ERC-20 tokens on this network."""
    testnet: bool = False
    """True for networks whose currency has no value."""
    max_fee_per_gas: int = DEFAULT_MAX_FEE_PER_GAS
    """Ceiling (wei per gas) of the fee cap Lunark prepares, whatever the node suggests."""
    fee_warning_share: Decimal = DEFAULT_FEE_WARNING_SHARE
    """An approval card warns when the fee may exceed this share of the (native) amount."""
    ens_registry: ChecksumAddress | None = None
    """The ENS registry names (alice.eth) are resolved on; None: names are refused here."""

    @property
    def rpc_url(self) -> str:
        """The RPC endpoint the server uses."""
        if not self.rpc_urls:
            raise ConfigError(f"Network {self.name!r} has no RPC URL configured.", network=self.name)
        return self.rpc_urls[0]

    def token(self, symbol_or_address: str) -> Token:
        """A known token by symbol (any case) or contract address.

        Raises ``UnknownToken`` listing the symbols known here.
        """
        query = symbol_or_address.strip()
        if is_address(query):
            wanted = to_checksum_address(query)
            for token in self.tokens:
                if token.address == wanted:
                    return token
        else:
            for token in self.tokens:
                if token.symbol.lower() == query.lower():
                    return token
        known = ", ".join(t.symbol for t in self.tokens) or "none"
        raise UnknownToken(
            f"Token {query!r} is not known on {self.display_name} (known: {known}).",
            token=query,
            chain_id=self.chain_id,
        )

    def is_native(self, symbol: str | None) -> bool:
        """True when ``symbol`` means this network's native currency (or is empty)."""
        return symbol is None or symbol.strip() == "" or symbol.strip().lower() == self.symbol.lower()

    def explorer_tx_url(self, tx_hash: str) -> str | None:
        """Link to a transaction on the explorer, if the network has one."""
        return f"{self.explorer_url}/tx/{tx_hash}" if self.explorer_url else None

    def to_eip3085(self) -> dict[str, Any]:
        """Parameters for ``wallet_addEthereumChain``."""
        params: dict[str, Any] = {
            "chainId": hex(self.chain_id),
            "chainName": self.display_name,
            "nativeCurrency": {"name": self.symbol, "symbol": self.symbol, "decimals": self.decimals},
            "rpcUrls": list(self.rpc_urls),
        }
        if self.explorer_url:
            params["blockExplorerUrls"] = [self.explorer_url]
        return params

    def with_token(self, token: Token) -> Network:
        """A copy that knows ``token`` too (replacing one with the same symbol)."""
        others = tuple(t for t in self.tokens if t.symbol.lower() != token.symbol.lower())
        return replace(self, tokens=(*others, token))


def _token(symbol: str, address: str, decimals: int, name: str) -> Token:
    return Token(symbol=symbol, address=to_checksum_address(address), decimals=decimals, name=name)


def _builtin_networks() -> tuple[Network, ...]:
    return (
        Network(
            chain_id=ANVIL_CHAIN_ID,
            name="anvil",
            display_name="Anvil (local)",
            rpc_urls=("http://127.0.0.1:8545",),
            confirmations=1,
            aliases=("local", "localhost", "dev", "devnet", "foundry", "hardhat"),
            testnet=True,
        ),
        Network(
            chain_id=1,
            name="ethereum",
            display_name="Ethereum",
            rpc_urls=("https://ethereum-rpc.publicnode.com",),
            explorer_url="https://etherscan.io",
            confirmations=3,
            aliases=("mainnet", "eth", "ethereum mainnet", "homestead"),
            ens_registry=ENS_REGISTRY,
            tokens=(
                _token("USDC", "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", 6, "USD Coin"),
                _token("USDT", "0xdAC17F958D2ee523a2206206994597C13D831ec7", 6, "Tether USD"),
                _token("DAI", "0x6B175474E89094C44Da98b954EedeAC495271d0F", 18, "Dai Stablecoin"),
                _token("WETH", "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2", 18, "Wrapped Ether"),
            ),
        ),
        Network(
            chain_id=11155111,
            name="sepolia",
            display_name="Sepolia",
            rpc_urls=("https://ethereum-sepolia-rpc.publicnode.com",),
            explorer_url="https://sepolia.etherscan.io",
            confirmations=2,
            aliases=("sep", "sepolia testnet"),
            ens_registry=ENS_REGISTRY,
            tokens=(_token("USDC", "0x1c7D4B196Cb0C7B01d743Fbc6116a902379C7238", 6, "USD Coin"),),
            testnet=True,
        ),
        Network(
            chain_id=8453,
            name="base",
            display_name="Base",
            rpc_urls=("https://mainnet.base.org",),
            explorer_url="https://basescan.org",
            confirmations=2,
            aliases=("base mainnet",),
            tokens=(_token("USDC", "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", 6, "USD Coin"),),
        ),
        Network(
            chain_id=10,
            name="optimism",
            display_name="OP Mainnet",
            rpc_urls=("https://mainnet.optimism.io",),
            explorer_url="https://optimistic.etherscan.io",
            confirmations=2,
            aliases=("op", "op mainnet", "optimism mainnet"),
            tokens=(_token("USDC", "0x0b2C639c533813f4Aa9D7837CAf62653d097Ff85", 6, "USD Coin"),),
        ),
        Network(
            chain_id=42161,
            name="arbitrum",
            display_name="Arbitrum One",
            rpc_urls=("https://arb1.arbitrum.io/rpc",),
            explorer_url="https://arbiscan.io",
            confirmations=2,
            aliases=("arb", "arbitrum one", "arb1"),
            tokens=(_token("USDC", "0xaf88d065e77c8cC2239327C5EDb3A432268e5831", 6, "USD Coin"),),
        ),
        Network(
            chain_id=137,
            name="polygon",
            display_name="Polygon",
            symbol="POL",
            rpc_urls=("https://polygon-rpc.com",),
            explorer_url="https://polygonscan.com",
            confirmations=5,
            aliases=("matic", "polygon pos", "pos"),
            tokens=(_token("USDC", "0x3c499c542cEF5E3811e1192ce70d8cC03d5c3359", 6, "USD Coin"),),
            max_fee_per_gas=5000 * GWEI,  # POL is cheap and its gas prices run high
        ),
    )


class TokenConfig(BaseModel):
    """A token as configuration spells it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    symbol: str = Field(min_length=1, max_length=32)
    address: str
    decimals: int = Field(ge=0, le=77)
    name: str | None = None

    def build(self) -> Token:
        if not is_address(self.address):
            raise ConfigError(f"Token {self.symbol}: {self.address!r} is not an address.", token=self.symbol)
        return Token(
            symbol=self.symbol,
            address=to_checksum_address(self.address),
            decimals=self.decimals,
            name=self.name,
        )


class NetworkConfig(BaseModel):
    """Adds a network or overrides fields of a built-in one (matched by name or chain id).

    Unset fields keep the built-in values; ``tokens`` are added to the known ones.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    chain_id: int | None = Field(default=None, gt=0)
    display_name: str | None = None
    symbol: str | None = None
    decimals: int | None = Field(default=None, ge=0, le=77)
    rpc_urls: list[str] | None = None
    explorer_url: str | None = None
    confirmations: int | None = Field(default=None, ge=1, le=1000)
    aliases: list[str] | None = None
    tokens: list[TokenConfig] = Field(default_factory=list)
    testnet: bool | None = None
    max_fee_per_gas_gwei: Decimal | None = Field(
        default=None, gt=0, le=10**9, description="Ceiling of a prepared transaction's fee cap, gwei per gas."
    )
    fee_warning_share: Decimal | None = Field(
        default=None, gt=0, le=1000, description="A card warns when the fee may exceed this share of the amount."
    )
    ens_registry: str | None = Field(
        default=None,
        description="The ENS registry ENS names are resolved on (built in for ethereum and sepolia); "
        "unset on a network without one: names are refused there.",
    )


class NetworkRegistry:
    """Look up networks by chain id, name or alias (case-insensitive)."""

    def __init__(self, networks: Iterable[Network] = ()) -> None:
        self._by_chain_id: dict[int, Network] = {}
        for network in networks:
            self.add(network)

    @classmethod
    def default(cls) -> NetworkRegistry:
        """The built-in networks."""
        return cls(_builtin_networks())

    def add(self, network: Network) -> None:
        """Register ``network``, replacing any network with the same chain id.

        Raises ``ConfigError`` when its name or an alias already names another chain.
        """
        for key in (network.name, *network.aliases):
            other = self._find(key.lower())
            if other is not None and other.chain_id != network.chain_id:
                raise ConfigError(
                    f"Network name {key!r} of chain {network.chain_id} already names chain {other.chain_id}.",
                    network=network.name,
                )
        self._by_chain_id[network.chain_id] = network

    def with_overrides(self, configs: Sequence[NetworkConfig]) -> NetworkRegistry:
        """A new registry with ``configs`` applied in order."""
        registry = NetworkRegistry(self)
        for config in configs:
            registry.add(registry._build(config))
        return registry

    def _build(self, config: NetworkConfig) -> Network:
        base: Network | None = None
        if config.chain_id is not None:
            base = self._by_chain_id.get(config.chain_id)
        if base is None and config.name is not None:
            base = self._find(config.name.lower())
        fields: dict[str, Any] = {
            key: value
            for key, value in config.model_dump(exclude={"tokens"}).items()
            if value is not None
        }
        gwei = fields.pop("max_fee_per_gas_gwei", None)
        if gwei is not None:
            fields["max_fee_per_gas"] = int(gwei * GWEI)
        for key in ("rpc_urls", "aliases"):
            if key in fields:
                fields[key] = tuple(v.lower() if key == "aliases" else v for v in fields[key])
        if "ens_registry" in fields:
            if not is_address(fields["ens_registry"]):
                where = config.name or config.chain_id
                raise ConfigError(
                    f"Network {where}: ens_registry {fields['ens_registry']!r} is not an address.", network=config.name
                )
            fields["ens_registry"] = to_checksum_address(fields["ens_registry"])
        if "explorer_url" in fields:
            fields["explorer_url"] = fields["explorer_url"].rstrip("/") or None
        if base is None:
            if config.chain_id is None or config.name is None:
                raise ConfigError(
                    f"A new network needs both name and chain_id (got name={config.name!r}, "
                    f"chain_id={config.chain_id!r}).",
                )
            fields.setdefault("display_name", config.name)
            fields["name"] = config.name.lower()
            network = Network(**fields)
        else:
            if "name" in fields:
                # Matched by name or alias, the name only found the network: an override by
                # alias ("eth") must not rename it, or its own name stops resolving.
                if config.name is not None and self._find(config.name.lower()) is base:
                    del fields["name"]
                else:
                    fields["name"] = fields["name"].lower()
            network = replace(base, **fields)
        for token in config.tokens:
            network = network.with_token(token.build())
        return network

    def _find(self, key: str) -> Network | None:
        for network in self._by_chain_id.values():
            if key == network.name or key in network.aliases:
                return network
        return None

    def get(self, query: str | int) -> Network:
        """The network for a chain id (int, decimal or ``0x`` hex string), name or alias.

        Raises ``UnknownNetwork`` with close matches.
        """
        if isinstance(query, int) and not isinstance(query, bool):
            if query in self._by_chain_id:
                return self._by_chain_id[query]
            raise UnknownNetwork(str(query), known=self._labels())
        text = str(query).strip().lower()
        chain_id = _parse_chain_id(text)
        if chain_id is not None:
            if chain_id in self._by_chain_id:
                return self._by_chain_id[chain_id]
            raise UnknownNetwork(str(query), known=self._labels())
        found = self._find(text)
        if found is not None:
            return found
        names = [n.name for n in self] + [a for n in self for a in n.aliases]
        close = difflib.get_close_matches(text, names, n=3, cutoff=0.6)
        suggestions = list(dict.fromkeys(self._find(c).name for c in close if self._find(c)))  # type: ignore[union-attr]
        raise UnknownNetwork(str(query), suggestions=suggestions, known=self._labels())

    def _labels(self) -> list[str]:
        return [f"{n.name} ({n.chain_id})" for n in self]

    def __iter__(self) -> Iterator[Network]:
        return iter(sorted(self._by_chain_id.values(), key=lambda n: (n.chain_id != ANVIL_CHAIN_ID, n.chain_id)))

    def __len__(self) -> int:
        return len(self._by_chain_id)

    def __contains__(self, query: object) -> bool:
        if not isinstance(query, str | int):
            return False
        try:
            self.get(query)
        except UnknownNetwork:
            return False
        return True

    def as_mapping(self) -> Mapping[int, Network]:
        """Chain id -> network, read-only view."""
        return dict(self._by_chain_id)


def _parse_chain_id(text: str) -> int | None:
    try:
        if text.startswith("0x"):
            return int(text, 16)
        if text.isdigit():
            return int(text)
    except ValueError:
        return None
    return None

