"""Check a signed or broadcast transaction against the transfer the user approved.

The approved ``TransferIntent`` is the source of truth; a wallet hands back
either the signed bytes (checked before we broadcast them) or the hash of a
transaction it broadcast itself (fetched and checked). Any difference in
``from``, ``to``, ``value``, ``input`` or ``chainId`` is an ``IntentMismatch``,
never a success::

    decoded = verify_signed_transaction(intent, signed.raw_transaction)
    decoded = await verify_transaction_hash(w3, intent, "0x5c50...")

For ERC-20 intents the calldata is also decoded, so the differences name what
a person understands (``recipient``, ``amount``) rather than only a hex blob.
"""

from __future__ import annotations

import asyncio
import re
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

from lunark.chain.types import ERC20_TRANSFER_SELECTOR, TransferIntent, to_units
from lunark.errors import ChainError, IntentMismatch, InvalidInput

__all__ = [
    "DecodedTx",
    "decode_signed_transaction",
    "describe_mismatch",
    "diff_intent",
    "fetch_transaction",
    "verify_signed_transaction",
    "verify_transaction_hash",
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


# -- comparing ---------------------------------------------------------------------------------


def _decode_erc20_transfer(data: str) -> tuple[ChecksumAddress, int] | None:
    """``(recipient, amount)`` if ``data`` is exactly a ``transfer(address,uint256)`` call."""
    try:
        raw = bytes.fromhex(data[2:] if data.startswith(("0x", "0X")) else data)
    except ValueError:
        return None
    if len(raw) != 4 + 64 or raw[:4] != ERC20_TRANSFER_SELECTOR or any(raw[4:16]):
        return None
    return to_checksum_address(raw[16:36]), int.from_bytes(raw[36:68], "big")


def _same_address(a: str | None, b: str | None) -> bool:
    return (a or "").lower() == (b or "").lower()


def _checksum_or_none(address: str | None) -> ChecksumAddress | None:
    return to_checksum_address(address) if address else None


def diff_intent(intent: TransferIntent, tx: DecodedTx) -> dict[str, dict[str, Any]]:
    """Every field where ``tx`` differs from ``intent``, as ``{field: {"expected", "actual"}}``.

    Fields: ``sender``, ``to``, ``value``, ``data``, ``chain_id``. For an ERC-20
    intent whose calldata is a ``transfer(address,uint256)`` call, a calldata
    difference is reported as ``recipient`` and/or ``amount`` instead of
    ``data``; calldata that is not such a call at all is reported as ``data``.
    Addresses are checksummed, wei and token amounts are decimal strings. An
    empty dict means the transaction does what was approved.
    """
    diff: dict[str, dict[str, Any]] = {}
    if not _same_address(tx.sender, intent.sender):
        diff["sender"] = {"expected": intent.sender, "actual": _checksum_or_none(tx.sender)}
    if not _same_address(tx.to, intent.tx_to):
        diff["to"] = {"expected": intent.tx_to, "actual": _checksum_or_none(tx.to)}
    if tx.value != intent.tx_value:
        diff["value"] = {"expected": str(intent.tx_value), "actual": str(tx.value)}
    expected_data = intent.tx_data.lower()
    actual_data = tx.data.lower()
    if actual_data != expected_data:
        decoded = _decode_erc20_transfer(actual_data) if intent.token is not None else None
        if decoded is None:
            diff["data"] = {"expected": expected_data, "actual": actual_data}
        else:
            recipient, amount = decoded
            if not _same_address(recipient, intent.recipient):
                diff["recipient"] = {"expected": intent.recipient, "actual": recipient}
            if amount != intent.amount:
                diff["amount"] = {"expected": str(intent.amount), "actual": str(amount)}
    if tx.chain_id != intent.chain_id:
        diff["chain_id"] = {"expected": intent.chain_id, "actual": tx.chain_id}
    return diff


def _human(raw: str, intent: TransferIntent) -> str:
    return f"{format(to_units(int(raw), intent.decimals).normalize(), 'f')} {intent.symbol}"


def _short(value: Any) -> str:
    text = str(value)
    return f"{text[:26]}…" if len(text) > 27 else text


def _describe(intent: TransferIntent, field: str, change: dict[str, Any]) -> str:
    expected, actual = change["expected"], change["actual"]
    if field == "amount" or (field == "value" and intent.is_native):
        return f"{field} is {_human(actual, intent)}, approved {_human(expected, intent)}"
    if field == "value":
        return f"value is {actual} wei, approved {expected} wei (an ERC-20 transfer sends no ether)"
    if field == "chain_id" and actual is None:
        actual = "none (a replayable pre-EIP-155 transaction)"
    if field == "data":
        actual, expected = _short(actual), _short(expected)
    return f"{field} is {actual}, approved {expected}"


def describe_mismatch(intent: TransferIntent, tx: DecodedTx, diff: dict[str, dict[str, Any]]) -> str:
    """The differences of ``diff_intent`` in words a person reads, ``"; "``-separated."""
    return "; ".join(_describe(intent, field, change) for field, change in diff.items())


def _mismatch(
    intent: TransferIntent, tx: DecodedTx, diff: dict[str, dict[str, Any]]
) -> IntentMismatch:
    details = describe_mismatch(intent, tx, diff)
    return IntentMismatch(
        f"Transaction {tx.tx_hash} does not match the approved transfer: {details}. "
        "It must not be treated as the approved transfer.",
        differences=diff,
        tx_hash=tx.tx_hash,
    )


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
    )


def decode_signed_transaction(raw: bytes | str) -> DecodedTx:
    """Decode a signed transaction (bytes or ``0x`` hex) and recover its sender.

    Legacy (including pre-EIP-155, whose ``chain_id`` is None), EIP-2930 and
    EIP-1559 transactions are understood. Anything else raises ``InvalidInput``.
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


def verify_signed_transaction(intent: TransferIntent, raw: bytes | str) -> DecodedTx:
    """Decode ``raw`` and check it is exactly the approved transfer.

    Returns the decoded transaction; raises ``IntentMismatch`` (with
    ``differences``) when any checked field differs, ``InvalidInput`` when it
    cannot be decoded.
    """
    tx = decode_signed_transaction(raw)
    diff = diff_intent(intent, tx)
    if diff:
        raise _mismatch(intent, tx, diff)
    return tx


# -- broadcast transactions --------------------------------------------------------------------


def _check_hash(tx_hash: str) -> str:
    text = tx_hash.strip() if isinstance(tx_hash, str) else ""
    if not _TX_HASH.match(text):
        raise InvalidInput(
            f"{tx_hash!r} is not a transaction hash (0x followed by 64 hex digits).",
            tx_hash=str(tx_hash),
        )
    return text.lower()


def _from_node(tx_hash: str, tx: Any) -> DecodedTx:
    tx_type = tx.get("type", 0)
    if isinstance(tx_type, str):
        tx_type = int(tx_type, 16)
    payload = tx.get("input", tx.get("data", b""))
    data = HexStr("0x" + bytes(HexBytes(payload)).hex())
    fee_cap = tx.get("maxFeePerGas", tx.get("gasPrice"))
    tip = tx.get("maxPriorityFeePerGas")
    chain_id = tx.get("chainId")
    return DecodedTx(
        tx_hash=tx_hash,
        sender=to_checksum_address(tx["from"]),
        to=_checksum_or_none(tx.get("to")),
        value=int(tx.get("value", 0)),
        data=data,
        chain_id=int(chain_id) if chain_id is not None else None,
        nonce=int(tx["nonce"]),
        gas=int(tx["gas"]),
        max_fee_per_gas=int(fee_cap) if fee_cap is not None else None,
        max_priority_fee_per_gas=int(tip) if tip is not None else None,
        type=int(tx_type),
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
    tx_hash = _check_hash(tx_hash)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            tx = await w3.eth.get_transaction(HexStr(tx_hash))
            return _from_node(tx_hash, tx)
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


async def verify_transaction_hash(
    w3: AsyncWeb3[Any],
    intent: TransferIntent,
    tx_hash: str,
    *,
    timeout: float = 10.0,
) -> DecodedTx:
    """Fetch the broadcast transaction ``tx_hash`` and check it is exactly the approved transfer.

    Raises ``IntentMismatch`` on any difference, ``ChainError`` when it cannot be
    found, ``InvalidInput`` for a malformed hash.
    """
    tx = await fetch_transaction(w3, tx_hash, timeout=timeout)
    diff = diff_intent(intent, tx)
    if diff:
        raise _mismatch(intent, tx, diff)
    return tx
