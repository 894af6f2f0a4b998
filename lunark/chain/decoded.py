"""A transaction as Lunark checks it: decoded from signed bytes, or read from a node by hash.

``DecodedTx`` holds the fields that matter for checking a transaction against an approval
(``lunark.chain.intent``) and for saying what it does (``lunark.chain.wording``)::

    tx = decode_signed_transaction(signed.raw_transaction)   # sender recovered from the signature
    tx = await fetch_transaction(w3, "0x5c50...")             # waits for the node to see it
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import rlp  # type: ignore[import-untyped]
from eth_account import Account
from eth_account.typed_transactions.typed_transaction import TypedTransaction
from eth_typing import ChecksumAddress, HexStr
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from web3 import AsyncWeb3
from web3.exceptions import TransactionNotFound, Web3Exception

from lunark.chain.types import ERC20_TRANSFER_SELECTOR
from lunark.errors import ChainError, InvalidInput

__all__ = [
    "DecodedTx",
    "check_hash",
    "checksum_or_none",
    "decode_signed_transaction",
    "erc20_transfer_of",
    "fetch_transaction",
    "from_node",
    "same_address",
]

_TX_HASH = re.compile(r"^0x[0-9a-fA-F]{64}$")

# Polls that hit a flaky node are retried until the deadline rather than
# failing the verification on the first hiccup.
_TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (Web3Exception, OSError, TimeoutError)


@dataclass(frozen=True, slots=True, kw_only=True)
class DecodedTx:
    """The fields of a signed transaction that matter for checking it against an intent."""

    tx_hash: str
    """Transaction hash, ``0x``-prefixed lowercase hex."""
    sender: ChecksumAddress
    """``from``: recovered from the signature (or as the node reports it)."""
    to: ChecksumAddress | None
    """Recipient or called contract; None for a contract creation."""
    value: int
    """Wei sent along."""
    data: HexStr
    """``input`` calldata, ``0x``-prefixed lowercase hex (``"0x"`` when empty)."""
    chain_id: int | None
    """EIP-155 chain id; None for a pre-EIP-155 legacy transaction, valid on any chain."""
    nonce: int
    """The sender's nonce this transaction uses."""
    gas: int
    """Gas limit."""
    max_fee_per_gas: int | None
    """EIP-1559 fee cap; the gas price for legacy and EIP-2930 transactions."""
    max_priority_fee_per_gas: int | None
    """EIP-1559 tip; None for legacy and EIP-2930 transactions."""
    type: int
    """EIP-2718 type: 0 legacy, 1 access list, 2 EIP-1559, 3 blob, 4 set code."""
    delegations: tuple[ChecksumAddress, ...] = ()
    """Type 4 only: the contracts its EIP-7702 authorizations delegate accounts to."""

    @property
    def max_fee(self) -> int | None:
        """The most this transaction can pay in fees, in wei (None when its fee cap is unknown)."""
        return None if self.max_fee_per_gas is None else self.gas * self.max_fee_per_gas


# -- calldata and addresses -------------------------------------------------------------------


def erc20_transfer_of(data: str) -> tuple[ChecksumAddress, int] | None:
    """``(recipient, amount)`` if calldata ``data`` is exactly a ``transfer(address,uint256)`` call."""
    try:
        raw = bytes.fromhex(data[2:] if data.startswith(("0x", "0X")) else data)
    except ValueError:
        return None
    if len(raw) != 4 + 64 or raw[:4] != ERC20_TRANSFER_SELECTOR or any(raw[4:16]):
        return None
    return to_checksum_address(raw[16:36]), int.from_bytes(raw[36:68], "big")


def same_address(a: str | None, b: str | None) -> bool:
    """Whether two addresses (any case, or None) are the same."""
    return (a or "").lower() == (b or "").lower()


def checksum_or_none(address: str | None) -> ChecksumAddress | None:
    """``address`` checksummed; None for none."""
    return to_checksum_address(address) if address else None


# -- signed bytes ------------------------------------------------------------------------------


def _raw_bytes(raw: bytes | str) -> bytes:
    if isinstance(raw, str):
        text = raw.strip()
        text = text[2:] if text[:2].lower() == "0x" else text
        try:
            data = bytes.fromhex(text)
        except ValueError as exc:
            raise InvalidInput("The signed transaction is not hex.") from exc
    else:
        data = bytes(raw)
    if not data:
        raise InvalidInput("The signed transaction is empty.")
    return data


def _int(value: bytes) -> int:
    return int.from_bytes(value, "big")


def _decode_legacy(data: bytes, sender: ChecksumAddress, tx_hash: str) -> DecodedTx:
    fields = rlp.decode(data)
    if not isinstance(fields, list) or len(fields) != 9:
        raise ValueError("a legacy transaction has 9 RLP fields")
    nonce, gas_price, gas, to, value, payload, v, _r, _s = fields
    v_int = _int(v)
    # EIP-155: v = chain_id * 2 + 35 + parity; 27/28 means no chain id (replayable).
    chain_id = (v_int - 35) // 2 if v_int >= 35 else None
    return DecodedTx(
        tx_hash=tx_hash,
        sender=sender,
        to=to_checksum_address(to) if to else None,
        value=_int(value),
        data=HexStr("0x" + bytes(payload).hex()),
        chain_id=chain_id,
        nonce=_int(nonce),
        gas=_int(gas),
        max_fee_per_gas=_int(gas_price),
        max_priority_fee_per_gas=None,
        type=0,
    )


def _delegations(authorizations: Iterable[Any] | None) -> tuple[ChecksumAddress, ...]:
    """The delegated-to contracts of an EIP-7702 authorization list, decoded or as a node sends it."""
    return tuple(to_checksum_address(item["address"]) for item in authorizations or ())


def _decode_typed(data: bytes, sender: ChecksumAddress, tx_hash: str) -> DecodedTx:
    fields = TypedTransaction.from_bytes(HexBytes(data)).as_dict()
    to = bytes(fields.get("to") or b"")
    fee_cap = fields.get("maxFeePerGas", fields.get("gasPrice"))
    tip = fields.get("maxPriorityFeePerGas")
    return DecodedTx(
        tx_hash=tx_hash,
        sender=sender,
        to=to_checksum_address(to) if to else None,
        value=int(fields["value"]),
        data=HexStr("0x" + bytes(fields.get("data") or b"").hex()),
        chain_id=int(fields["chainId"]),
        nonce=int(fields["nonce"]),
        gas=int(fields["gas"]),
        max_fee_per_gas=int(fee_cap) if fee_cap is not None else None,
        max_priority_fee_per_gas=int(tip) if tip is not None else None,
        type=data[0],
        delegations=_delegations(fields.get("authorizationList")),
    )


def decode_signed_transaction(raw: bytes | str) -> DecodedTx:
    """Decode a signed transaction (bytes or ``0x`` hex) and recover its sender.

    Legacy (including pre-EIP-155, whose ``chain_id`` is None), EIP-2930,
    EIP-1559, blob (canonical form) and EIP-7702 set-code transactions are
    decoded, the last with the contracts their authorizations delegate to, so
    that ``check_transaction`` can refuse them by name. Anything else raises
    ``InvalidInput``.
    """
    data = _raw_bytes(raw)
    tx_hash = "0x" + keccak(data).hex()
    try:
        sender = Account.recover_transaction(data)
        if data[0] <= 0x7F:
            return _decode_typed(data, sender, tx_hash)
        return _decode_legacy(data, sender, tx_hash)
    # The bytes come from outside (a wallet, a client): whatever the decoders
    # raise on garbage (rlp, eth-keys, pydantic, TypeError, ...) means the same.
    except Exception as exc:
        raise InvalidInput(
            f"The signed transaction could not be decoded: {exc}", tx_hash=tx_hash
        ) from exc


# -- broadcast transactions --------------------------------------------------------------------


def check_hash(tx_hash: str) -> str:
    """``tx_hash`` lowercased; ``InvalidInput`` when it is not ``0x`` and 64 hex digits."""
    text = tx_hash.strip() if isinstance(tx_hash, str) else ""
    if not _TX_HASH.match(text):
        raise InvalidInput(
            f"{tx_hash!r} is not a transaction hash (0x followed by 64 hex digits).",
            tx_hash=str(tx_hash),
        )
    return text.lower()


def _quantity(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


def from_node(tx_hash: str, tx: Any) -> DecodedTx:
    """A transaction as a node reports it (web3's formatted ``get_transaction``)."""
    payload = tx.get("input", tx.get("data", b""))
    data = HexStr("0x" + bytes(HexBytes(payload)).hex())
    fee_cap = tx.get("maxFeePerGas", tx.get("gasPrice"))
    tip = tx.get("maxPriorityFeePerGas")
    chain_id = tx.get("chainId")
    return DecodedTx(
        tx_hash=tx_hash,
        sender=to_checksum_address(tx["from"]),
        to=checksum_or_none(tx.get("to")),
        value=_quantity(tx.get("value", 0)),
        data=data,
        chain_id=_quantity(chain_id) if chain_id is not None else None,
        nonce=_quantity(tx["nonce"]),
        gas=_quantity(tx["gas"]),
        max_fee_per_gas=_quantity(fee_cap) if fee_cap is not None else None,
        max_priority_fee_per_gas=_quantity(tip) if tip is not None else None,
        type=_quantity(tx.get("type", 0)),
        delegations=_delegations(tx.get("authorizationList")),
    )


# `timeout` is how long a not-yet-visible transaction is waited for before failing
# closed, not a bound on the call as a whole, hence not `asyncio.timeout`.
async def fetch_transaction(
    w3: AsyncWeb3[Any],
    tx_hash: str,
    *,
    timeout: float = 10.0,
    poll_interval: float = 0.2,
) -> DecodedTx:
    """Fetch a transaction by hash, waiting up to ``timeout`` seconds for the node to see it.

    A wallet reports the hash right after broadcasting, so the node may not
    know it yet. Still unknown at the deadline raises ``ChainError`` (fail
    closed: what we cannot see we cannot verify). A malformed hash raises
    ``InvalidInput``.
    """
    tx_hash = check_hash(tx_hash)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            tx = await w3.eth.get_transaction(HexStr(tx_hash))
            return from_node(tx_hash, tx)
        except TransactionNotFound:
            last_error = None
        except _TRANSIENT_ERRORS as exc:
            last_error = exc
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        await asyncio.sleep(min(poll_interval, remaining))
    cause = f" (last error: {last_error})" if last_error is not None else ""
    raise ChainError(
        f"Transaction {tx_hash} not found within {timeout:g}s{cause}; cannot verify it "
        "against the approval. Check the wallet broadcast it on the right network.",
        tx_hash=tx_hash,
    ) from last_error
