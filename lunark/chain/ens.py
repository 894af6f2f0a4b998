"""ENS names: ENSIP-15 normalisation, and resolution on the chat's network's own registry.

A name is normalised with ``ens-normalize`` (``Alice.ETH`` is ``alice.eth``; a name it refuses is
refused here, never "cured"), then resolved against the registry the network's settings name
(``Network.ens_registry``: mainnet and Sepolia have the canonical one built in; a local Anvil gets
the one the demo or the tests deployed). web3.py's own ``AsyncENS`` asks a Universal Resolver at a
fixed mainnet address, which would ignore that setting and does not exist on a dev chain, so the
registry is read directly with web3.py's ENS ABIs and namehash: the resolver of the name (or, per
ENSIP-10, of its closest parent, when that resolver is an extended one), then its ``addr``.

Fail closed: a name without an address, a network without a registry, a resolver that only answers
offchain (CCIP-read, which Lunark never follows) are ``UnresolvedName`` errors, never a guess.

The primary name of an address is its reverse record (``<addr>.addr.reverse``), counted only when
that name resolves forward to the same address, as ENS specifies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ens import abis
from ens.utils import address_to_reverse_domain, dns_encode_name, normal_name_to_hash
from eth_typing import ChecksumAddress
from eth_utils.address import is_address, to_checksum_address
from web3.exceptions import BadFunctionCallOutput, ContractLogicError, OffchainLookup

from lunark.errors import InvalidName, UnresolvedName
from lunark.networks import ENS_REGISTRY

if TYPE_CHECKING:
    from lunark.chain.client import ChainClient

__all__ = [
    "ENS_REGISTRY",
    "ResolvedName",
    "is_ens_name",
    "normalize_name",
    "primary_name",
    "resolve_name",
    "resolve_recipient",
]


_EXTENDED_RESOLVER = bytes.fromhex("9061b923")  # ENSIP-10 resolve(bytes,bytes)
_ZERO = "0x" + "00" * 20
_MAX_NAME = 255


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedName:
    """A name and the address it resolved to."""

    name: str
    """Normalised, e.g. ``alice.eth``."""
    address: ChecksumAddress


def is_ens_name(text: str) -> bool:
    """Whether ``text`` is meant as an ENS name rather than an address: dotted, and not ``0x…``.

    Only the shape: ``normalize_name`` decides whether it is a valid one.
    """
    text = text.strip()
    return "." in text.strip(".") and not text.lower().startswith("0x") and " " not in text


def normalize_name(text: str) -> str:
    """``text`` normalised per ENSIP-15. Raises ``InvalidName`` with the reason."""
    raw = text.strip()
    if not raw or len(raw) > _MAX_NAME:
        raise InvalidName(f"{raw[:80]!r} is not an ENS name.", value=raw[:80])
    # Loaded with the first name: ENSIP-15's tables are ~90 MB of memory, which a process that never
    # sees a name (a relay, most turns' workers) should not hold.
    from ens_normalize import DisallowedSequence, ens_normalize

    try:
        name = str(ens_normalize(raw))
    except DisallowedSequence as exc:  # its subclass CurableSequence too: never "cure" a name silently
        raise InvalidName(f"{raw!r} is not a valid ENS name: {exc.general_info}.", value=raw) from None
    if "." not in name:
        raise InvalidName(f"{raw!r} is not a full ENS name (like alice.eth).", value=raw)
    return name


async def resolve_name(client: ChainClient, text: str) -> ResolvedName:
    """The address ``text`` (an ENS name) points to on the client's network.

    Raises ``InvalidName`` for a name ENSIP-15 refuses and ``UnresolvedName`` when there is no
    address (or no ENS registry on this network)."""
    name = normalize_name(text)
    network = client.network
    registry = _registry(client, name)
    with client.errors(f"resolving {name}"):
        resolver, exact = await _find_resolver(client, registry, name)
        if resolver is None:
            raise UnresolvedName(
                f"{name} is not registered on {network.display_name} (it has no resolver), so there is "
                "no address to send to.",
                name=name, chain_id=network.chain_id,
            )
        address = await _addr(client, resolver, name, exact)
    if address is None:
        raise UnresolvedName(
            f"{name} has no Ethereum address set on {network.display_name}.", name=name, chain_id=network.chain_id
        )
    return ResolvedName(name=name, address=address)


async def primary_name(client: ChainClient, address: str) -> str | None:
    """The address's primary name (its reverse record, verified forward), or None."""
    wanted = to_checksum_address(address)
    if client.network.ens_registry is None:
        return None
    registry = _registry(client, "")
    reverse = address_to_reverse_domain(wanted)
    node = bytes(normal_name_to_hash(reverse))
    with client.errors(f"reading the primary name of {wanted}"):
        resolver = await registry.functions.resolver(node).call()
        if _is_zero(resolver):
            return None
        contract = client.w3.eth.contract(address=resolver, abi=abis.REVERSE_RESOLVER)
        try:
            claimed = str(await contract.functions.name(node).call())
        except (ContractLogicError, BadFunctionCallOutput, OffchainLookup):
            return None
    if not claimed:
        return None
    try:
        forward = await resolve_name(client, claimed)
    except (InvalidName, UnresolvedName):
        return None
    return forward.name if forward.address == wanted else None


async def resolve_recipient(client: ChainClient, text: str) -> tuple[str, str | None]:
    """``(address, name)``: an address as given (the caller validates it) with no name, or what
    an ENS name resolves to and the normalised name."""
    if not is_ens_name(text):
        return text, None
    resolved = await resolve_name(client, text)
    return resolved.address, resolved.name


def _registry(client: ChainClient, name: str) -> Any:
    network = client.network
    if network.ens_registry is None:
        raise UnresolvedName(
            f"{network.display_name} has no ENS registry configured, so {name or 'a name'} cannot be resolved "
            "there; use the 0x address, or set ens_registry for this network in the settings.",
            name=name or None, chain_id=network.chain_id,
        )
    return client.w3.eth.contract(address=network.ens_registry, abi=abis.ENS)


async def _find_resolver(client: ChainClient, registry: Any, name: str) -> tuple[ChecksumAddress | None, bool]:
    """The resolver of ``name``, or (ENSIP-10) of its closest parent that has one; and whether it
    is the name's own."""
    labels = name.split(".")
    for i in range(len(labels)):
        node = bytes(normal_name_to_hash(".".join(labels[i:])))
        resolver = await registry.functions.resolver(node).call()
        if not _is_zero(resolver):
            return to_checksum_address(resolver), i == 0
    return None, False


async def _addr(client: ChainClient, resolver: ChecksumAddress, name: str, exact: bool) -> ChecksumAddress | None:
    contract = client.w3.eth.contract(address=resolver, abi=abis.PUBLIC_RESOLVER_2_EXTENDED)
    node = bytes(normal_name_to_hash(name))
    addr = contract.get_function_by_signature("addr(bytes32)")
    try:
        extended = bool(await contract.functions.supportsInterface(_EXTENDED_RESOLVER).call())
    except (ContractLogicError, BadFunctionCallOutput):
        extended = False
    try:
        if extended:
            data = contract.encode_abi("addr", args=[node])
            answer = await contract.functions.resolve(bytes(dns_encode_name(name)), data).call()
            if not answer:
                return None
            raw = client.w3.codec.decode(["address"], answer)[0]
        elif exact:
            raw = await addr(node).call()
        else:
            return None  # a parent's resolver that is not an extended one answers only for itself
    except OffchainLookup:
        raise UnresolvedName(
            f"{name} resolves only offchain (CCIP-read), which Lunark does not follow; use the 0x address.",
            name=name, chain_id=client.network.chain_id,
        ) from None
    except (ContractLogicError, BadFunctionCallOutput):
        return None
    return None if _is_zero(raw) else to_checksum_address(raw)


def _is_zero(address: Any) -> bool:
    return not address or not is_address(address) or str(address).lower() == _ZERO
