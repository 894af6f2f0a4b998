"""Balances and token metadata: what ``ChainClient`` reads about accounts and ERC-20 contracts.

Decimals and symbols always come from the contract itself, cached per address; a symbol or name
is cleaned into short printable text, since whoever deployed the contract chose it.
"""

from __future__ import annotations

import unicodedata
from typing import Final

from eth_abi.abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_typing import ABIFunction, ChecksumAddress, HexStr
from eth_utils.abi import function_abi_to_4byte_selector
from web3.exceptions import ContractLogicError
from web3.types import BlockIdentifier

from lunark.chain.connection import NodeConnection
from lunark.chain.tokens import ERC20_ABI, ERC20_DECIMALS, ERC20_NAME, ERC20_SYMBOL
from lunark.chain.types import Balance
from lunark.chain.validation import parse_address
from lunark.errors import UnknownToken
from lunark.networks import Token

__all__ = ["AccountReads"]

_MAX_SYMBOL_CHARS: Final = 32
_MAX_NAME_CHARS: Final = 64
_MAX_DECIMALS: Final = 77  # 10**78 > 2**256: more decimals than this cannot be a real token


class AccountReads(NodeConnection):
    """Native and token balances, and the ERC-20 tokens they are in."""

    async def native_balance(self, address: str) -> Balance:
        """``address``'s balance of the network's native currency."""
        owner = parse_address(address)
        await self.ensure_chain()
        with self._translate(f"reading the {self.network.symbol} balance of {owner}"):
            raw = await self.w3.eth.get_balance(owner)
        return Balance(
            address=owner,
            chain_id=self.network.chain_id,
            symbol=self.network.symbol,
            decimals=self.network.decimals,
            raw=int(raw),
        )

    async def resolve_token(self, token: str) -> Token:
        """The ERC-20 token named by a symbol known on this network or by a contract address.

        Decimals and symbol always come from the contract (a misconfigured
        decimals value would scale every amount wrongly); configuration only
        maps symbols to addresses and supplies a fallback name. Results are
        cached per address. Raises ``UnknownToken`` for an unknown symbol (listing
        the known ones), an address without code or one that does not answer
        ``decimals()``.
        """
        if not isinstance(token, str) or not token.strip():
            raise UnknownToken("No token given; name a token symbol or contract address.")
        query = token.strip()
        if self.network.is_native(query):
            raise UnknownToken(
                f"{query} is the native currency of {self.network.display_name}, not an ERC-20 "
                "token; ask for it without a token.",
                token=query,
                chain_id=self.network.chain_id,
            )
        configured: Token | None
        if query[:2].lower() == "0x":
            address = parse_address(query, field="token")
            configured = next((t for t in self.network.tokens if t.address == address), None)
        else:
            configured = self.network.token(query)
            address = configured.address
        cached = self._tokens.get(address)
        if cached is not None:
            return cached
        await self.ensure_chain()
        resolved = await self._read_token(address, configured)
        self._tokens[address] = resolved
        return resolved

    async def token_balance(self, address: str, token: str) -> Balance:
        """``address``'s balance of ``token`` (symbol or contract address)."""
        owner = parse_address(address)
        meta = await self.resolve_token(token)
        raw = await self._raw_token_balance(meta, owner)
        return Balance(
            address=owner,
            chain_id=self.network.chain_id,
            symbol=meta.symbol,
            decimals=meta.decimals,
            raw=raw,
            token=meta.address,
        )

    async def balance(self, address: str, token: str | None = None) -> Balance:
        """The native balance when ``token`` is None or the native symbol (any case), else
        the balance of ``token``."""
        if token is None or self.network.is_native(token):
            return await self.native_balance(address)
        return await self.token_balance(address, token)

    async def _raw_token_balance(
        self, token: Token, owner: ChecksumAddress, *, block: BlockIdentifier = "latest"
    ) -> int:
        contract = self.w3.eth.contract(address=token.address, abi=ERC20_ABI)
        with self._translate(f"reading the {token.symbol} balance of {owner}"):
            raw = await contract.functions.balanceOf(owner).call(
                block_identifier=block, ccip_read_enabled=False
            )
        return int(raw)

    async def _static_call(self, address: ChecksumAddress, fn: ABIFunction) -> bytes | None:
        """Raw return data of a no-argument view function; None when it reverts."""
        selector = HexStr("0x" + function_abi_to_4byte_selector(fn).hex())
        with self._translate(f"calling {fn['name']}() on {address}"):
            try:
                result = await self.w3.eth.call(
                    {"to": address, "data": selector}, "latest", ccip_read_enabled=False
                )
            except ContractLogicError:
                return None  # the contract does not implement it
        return bytes(result)

    async def _read_token(self, address: ChecksumAddress, configured: Token | None) -> Token:
        network = self.network
        label = f"{address} (configured as {configured.symbol})" if configured else address
        with self._translate(f"reading the code at {address}"):
            code = await self.w3.eth.get_code(address)
        if not code:
            raise UnknownToken(
                f"There is no contract at {label} on {network.display_name}; check the token "
                "address and the network.",
                token=address,
                chain_id=network.chain_id,
            )
        data = await self._static_call(address, ERC20_DECIMALS)
        decimals = int.from_bytes(data[:32], "big") if data and len(data) >= 32 else None
        if decimals is None or decimals > _MAX_DECIMALS:
            raise UnknownToken(
                f"The contract at {label} on {network.display_name} does not answer decimals() "
                "like an ERC-20 token; it cannot be transferred as one.",
                token=address,
                chain_id=network.chain_id,
            )
        symbol = _clean_text(await self._static_call(address, ERC20_SYMBOL), _MAX_SYMBOL_CHARS)
        name = _clean_text(await self._static_call(address, ERC20_NAME), _MAX_NAME_CHARS)
        return Token(
            symbol=symbol or (configured.symbol if configured else address[:10]),
            address=address,
            decimals=decimals,
            name=name or (configured.name if configured else None),
        )


def _clean_text(data: bytes | None, limit: int) -> str | None:
    """A token's symbol or name as safe display text (ABI string or bytes32), or None.

    Token metadata is chosen by whoever deployed the contract and ends up in
    the model's context and the user's screen: keep it short and printable.
    """
    if not data:
        return None
    text: str
    try:
        (decoded,) = abi_decode(["string"], data)
        text = str(decoded)
    except (DecodingError, UnicodeDecodeError, OverflowError):
        if len(data) != 32:
            return None
        text = data.rstrip(b"\0").decode("utf-8", errors="replace")  # bytes32, e.g. old MKR
    cleaned = "".join(c for c in text if unicodedata.category(c)[0] not in "CZ" or c == " ")
    cleaned = " ".join(cleaned.split())[:limit]
    return cleaned or None
