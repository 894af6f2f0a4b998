"""Check a signed or broadcast transaction against the transaction the user approved.

The approved ``PreparedTx`` (its ``TransferIntent`` plus the nonce, gas and fee
cap the card showed) is the source of truth; a wallet hands back either the
signed bytes (checked before we broadcast them) or the hash of a transaction it
broadcast itself (fetched and checked). Both go through one check,
``check_transaction``; any difference is an ``IntentMismatch``, never a success::

    decoded = verify_signed_transaction(prepared, signed.raw_transaction)
    decoded = await verify_transaction_hash(w3, prepared, "0x5c50...")

What is checked: ``from``, ``to``, ``value``, ``input`` and ``chainId`` are the
approved ones; the type is 0, 1 or 2 (a blob or an EIP-7702 set-code transaction
is refused); the nonce is not below the prepared one (a wallet may re-nonce
upward; with several transactions in one approval, the settlement checks against
the floor, ``lunark.nonces``); the most the transaction can pay in fees is at most ``fee_factor``
times the cap the card showed, and its tip does not exceed its fee cap.

Every difference is also said in words (``IntentMismatch.message`` starts with
a one-line summary, each entry of ``differences`` carries a ``text``), and
``describe_transaction`` says what any transaction does.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
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

from lunark.chain.types import ERC20_TRANSFER_SELECTOR, PreparedTx, TransferIntent, to_units
from lunark.errors import ChainError, IntentMismatch, InvalidInput
from lunark.networks import Network

__all__ = [
    "ALLOWED_TX_TYPES",
    "DEFAULT_FEE_FACTOR",
    "DecodedTx",
    "check_transaction",
    "decode_signed_transaction",
    "describe_transaction",
    "diff_intent",
    "diff_prepared",
    "erc20_transfer_of",
    "fetch_transaction",
    "verify_signed_transaction",
    "verify_transaction_hash",
]

ALLOWED_TX_TYPES = frozenset({0, 1, 2})
"""Legacy, EIP-2930 and EIP-1559. A transfer never needs blobs (3) or set-code authorizations (4)."""

DEFAULT_FEE_FACTOR = Decimal(2)
"""How far above the fee cap the card showed a wallet's transaction may go."""

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


# -- words ---------------------------------------------------------------------------------------


def _short_address(address: str) -> str:
    return f"{address[:6]}…{address[-4:]}"


def _exact(raw: int, decimals: int, symbol: str) -> str:
    """An amount the user approved or is asked about: every digit."""
    value = to_units(raw, decimals)
    return f"{format(value.normalize(), 'f') if value else '0'} {symbol}"


def _about(raw: int, decimals: int, symbol: str) -> str:
    """A fee: six significant digits are what a person compares."""
    value = to_units(raw, decimals)
    if not value:
        return f"0 {symbol}"
    rounded = Decimal(format(value, ".6g"))
    return f"{format(rounded.normalize(), 'f')} {symbol}"


def _gwei(wei: int) -> str:
    return _about(wei, 9, "gwei")


def _native(network: Network | None, intent: TransferIntent | None) -> tuple[str, int]:
    """``(symbol, decimals)`` of the currency fees are paid in."""
    if network is not None:
        return network.symbol, network.decimals
    if intent is not None and intent.is_native:
        return intent.symbol, intent.decimals
    return "ETH", 18


def _token_units(
    contract: str, network: Network | None, intent: TransferIntent | None
) -> tuple[str, int] | None:
    if intent is not None and intent.token is not None and _same_address(contract, intent.token):
        return intent.symbol, intent.decimals
    if network is not None:
        for token in network.tokens:
            if _same_address(contract, token.address):
                return token.symbol, token.decimals
    return None


def describe_transaction(
    tx: DecodedTx, *, network: Network | None = None, intent: TransferIntent | None = None
) -> str:
    """What ``tx`` does, in words: ``"sends 1.5 ETH to 0x7099…79C8"``.

    Other shapes: ``"calls transfer of 10 TKN to 0x3C44…93BC"`` (tokens named
    from ``intent`` or ``network``), ``"cancels: sends 0 ETH to yourself"``,
    ``"calls contract 0x5FbD…0aa3 (function 0x095ea7b3)"``, ``"creates a
    contract"``; an EIP-7702 transaction starts with the delegation it carries.
    The native currency comes from ``network`` (else ``intent``, else ETH).
    """
    symbol, decimals = _native(network, intent)
    ether = _exact(tx.value, decimals, symbol)

    def party(address: str) -> str:
        return "yourself" if _same_address(address, tx.sender) else _short_address(address)

    if tx.to is None:
        what = "creates a contract" + (f", sending {ether}" if tx.value else "")
    elif tx.data in ("0x", "0X", ""):
        if _same_address(tx.to, tx.sender) and tx.value == 0 and tx.type != 4:
            what = f"cancels: sends {ether} to yourself"
        else:
            what = f"sends {ether} to {party(tx.to)}"
    else:
        transfer = _decode_erc20_transfer(tx.data)
        if transfer is not None:
            recipient, amount = transfer
            units = _token_units(tx.to, network, intent)
            if units is None:
                quantity = f"{amount} units of token {_short_address(tx.to)}"
            else:
                quantity = _exact(amount, units[1], units[0])
            what = f"calls transfer of {quantity} to {party(recipient)}"
        else:
            what = f"calls contract {party(tx.to)} (function {tx.data[:10].lower()})"
        if tx.value:
            what += f", sending {ether} along"
    if tx.type == 4:
        targets = ", ".join(_short_address(a) for a in tx.delegations) or "a contract"
        what = f"delegates an account to {targets} (EIP-7702) and {what}"
    return what


# -- comparing ---------------------------------------------------------------------------------


def erc20_transfer_of(data: str) -> tuple[ChecksumAddress, int] | None:
    """``(recipient, amount)`` if calldata ``data`` is exactly a ``transfer(address,uint256)`` call."""
    return _decode_erc20_transfer(data)


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
    empty dict means the transaction moves what was approved (its type, nonce
    and fee are ``diff_prepared``'s business).
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


def _fee_ratio(fee_factor: Decimal | int) -> tuple[int, int]:
    factor = Decimal(fee_factor)
    if not factor.is_finite() or factor < 1:
        raise InvalidInput(
            f"The fee factor must be a number of at least 1, not {fee_factor}.", value=str(fee_factor)
        )
    return factor.as_integer_ratio()


def diff_prepared(
    prepared: PreparedTx, tx: DecodedTx, *, fee_factor: Decimal | int = DEFAULT_FEE_FACTOR
) -> dict[str, dict[str, Any]]:
    """Every way ``tx`` is not the approved ``prepared`` transaction; empty when it is.

    ``diff_intent``'s fields, plus ``type`` (not 0, 1 or 2), ``nonce`` (below
    the prepared one; a higher one is a wallet re-noncing and accepted),
    ``max_fee`` (``gas * maxFeePerGas``, or ``gas * gasPrice``, above
    ``fee_factor`` times ``prepared.max_fee``; ``allowed`` is that bound in wei)
    and ``priority_fee`` (a tip above the fee cap). Amounts are exact integers
    (wei as decimal strings), never rounded. Raises ``InvalidInput`` for a
    ``fee_factor`` below 1.
    """
    numerator, denominator = _fee_ratio(fee_factor)
    diff: dict[str, dict[str, Any]] = {}
    if tx.type not in ALLOWED_TX_TYPES:
        diff["type"] = {"expected": sorted(ALLOWED_TX_TYPES), "actual": tx.type}
        if tx.delegations:
            diff["type"]["delegations"] = list(tx.delegations)
    diff.update(diff_intent(prepared.intent, tx))
    if tx.nonce < prepared.nonce:
        diff["nonce"] = {"expected": prepared.nonce, "actual": tx.nonce}
    # Exact: a fee no more than factor * cap is one no more than the floor of it.
    allowed = prepared.max_fee * numerator // denominator
    actual_fee = tx.max_fee
    if actual_fee is None or actual_fee > allowed:
        diff["max_fee"] = {
            "expected": str(prepared.max_fee),
            "actual": None if actual_fee is None else str(actual_fee),
            "allowed": str(allowed),
        }
    if (
        tx.max_priority_fee_per_gas is not None
        and tx.max_fee_per_gas is not None
        and tx.max_priority_fee_per_gas > tx.max_fee_per_gas
    ):
        diff["priority_fee"] = {
            "expected": str(tx.max_fee_per_gas),
            "actual": str(tx.max_priority_fee_per_gas),
            "allowed": str(tx.max_fee_per_gas),
        }
    return diff


def _explain(
    field: str,
    change: dict[str, Any],
    *,
    prepared: PreparedTx,
    tx: DecodedTx,
    fee_factor: Decimal | int,
    network: Network | None,
) -> str:
    """One difference in words a user understands."""
    intent = prepared.intent
    expected, actual = change["expected"], change["actual"]
    native, native_decimals = _native(network, intent)
    if field == "type":
        if actual == 4:
            text = (
                "type 4 (EIP-7702) transactions can hand control of your account to a contract "
                "and are refused"
            )
            if tx.delegations:
                text += f"; this one delegates to {', '.join(tx.delegations)}"
            return text
        if actual == 3:
            return "type 3 (blob) transactions are refused: a transfer never carries blobs"
        return f"type {actual} transactions are not understood here and are refused (only 0, 1 and 2)"
    if field == "sender":
        return f"it is signed by {actual}, not by your address {expected}"
    if field == "to":
        if intent.is_native:
            return f"recipient is {actual or 'a new contract'}, approved {expected}"
        return f"it calls {actual or 'a new contract'}, not the {intent.symbol} contract {expected}"
    if field == "value":
        if intent.is_native:
            return (
                f"amount is {_exact(int(actual), intent.decimals, intent.symbol)}, "
                f"approved {_exact(int(expected), intent.decimals, intent.symbol)}"
            )
        return (
            f"it also sends {_exact(int(actual), native_decimals, native)}; "
            f"a {intent.symbol} transfer sends no {native}"
        )
    if field == "data":
        data = f"{actual[:26]}…" if len(actual) > 27 else actual
        if intent.is_native:
            return f"it calls a contract (data {data}); the approved transfer calls nothing"
        return f"it does something other than transfer {intent.symbol} (data {data})"
    if field == "recipient":
        return f"recipient is {actual}, approved {expected}"
    if field == "amount":
        return (
            f"amount is {_exact(int(actual), intent.decimals, intent.symbol)}, "
            f"approved {_exact(int(expected), intent.decimals, intent.symbol)}"
        )
    if field == "chain_id":
        if actual is None:
            return f"it names no network, so it could be replayed on any chain; approved chain {expected}"
        return f"it is for chain {actual}, approved chain {expected}"
    if field == "nonce":
        return (
            f"its nonce {actual} is below the prepared {expected}, "
            "so it could replace another transaction of yours"
        )
    if field == "max_fee":
        card = _about(int(expected), native_decimals, native)
        factor = format(Decimal(fee_factor).normalize(), "f")
        bound = f" ({factor}x that is accepted)" if Decimal(fee_factor) != 1 else ""
        if actual is None:
            return f"its network fee cap cannot be read; the card allowed at most {card}{bound}"
        return (
            f"the network fee could reach {_about(int(actual), native_decimals, native)}, "
            f"the card allowed at most {card}{bound}"
        )
    if field == "priority_fee":
        assert tx.max_priority_fee_per_gas is not None and tx.max_fee_per_gas is not None
        return (
            f"its priority fee ({_gwei(tx.max_priority_fee_per_gas)} per gas) is above its "
            f"maximum fee ({_gwei(tx.max_fee_per_gas)} per gas)"
        )
    return f"{field} is {actual}, approved {expected}"


def _mismatch(
    prepared: PreparedTx,
    tx: DecodedTx,
    diff: dict[str, dict[str, Any]],
    *,
    fee_factor: Decimal | int,
    network: Network | None,
) -> IntentMismatch:
    worded = {
        field: {
            **change,
            "text": _explain(
                field, change, prepared=prepared, tx=tx, fee_factor=fee_factor, network=network
            ),
        }
        for field, change in diff.items()
    }
    summary = "; ".join(change["text"] for change in worded.values())
    does = describe_transaction(tx, network=network, intent=prepared.intent)
    return IntentMismatch(
        f"This is not the transaction you approved: {summary}.\n"
        f"Transaction {tx.tx_hash} {does}. It must not be treated as the approved transfer.",
        differences=worded,
        tx_hash=tx.tx_hash,
    )


def check_transaction(
    prepared: PreparedTx,
    tx: DecodedTx,
    *,
    fee_factor: Decimal | int = DEFAULT_FEE_FACTOR,
    network: Network | None = None,
) -> DecodedTx:
    """Return ``tx`` if it is the approved ``prepared`` transaction; else raise ``IntentMismatch``.

    The one check behind both ``verify_signed_transaction`` and
    ``verify_transaction_hash`` (see ``diff_prepared`` for what differs). The
    error's message starts with a one-line summary in words; each entry of its
    ``differences`` carries a ``text``. ``network`` names the fee currency and
    known tokens in those words (default: the intent's currency, else ETH).
    """
    diff = diff_prepared(prepared, tx, fee_factor=fee_factor)
    if diff:
        raise _mismatch(prepared, tx, diff, fee_factor=fee_factor, network=network)
    return tx


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


def verify_signed_transaction(
    prepared: PreparedTx,
    raw: bytes | str,
    *,
    fee_factor: Decimal | int = DEFAULT_FEE_FACTOR,
    network: Network | None = None,
) -> DecodedTx:
    """Decode ``raw`` and check it is the approved ``prepared`` transaction (``check_transaction``).

    Returns the decoded transaction; raises ``IntentMismatch`` (with
    ``differences``) when any check fails, ``InvalidInput`` when it cannot be
    decoded. Call it before broadcasting: bytes that fail are never sent.
    """
    tx = decode_signed_transaction(raw)
    return check_transaction(prepared, tx, fee_factor=fee_factor, network=network)


# -- broadcast transactions --------------------------------------------------------------------


def _check_hash(tx_hash: str) -> str:
    text = tx_hash.strip() if isinstance(tx_hash, str) else ""
    if not _TX_HASH.match(text):
        raise InvalidInput(
            f"{tx_hash!r} is not a transaction hash (0x followed by 64 hex digits).",
            tx_hash=str(tx_hash),
        )
    return text.lower()


def _quantity(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


def _from_node(tx_hash: str, tx: Any) -> DecodedTx:
    """A transaction as a node reports it (web3's formatted ``get_transaction``)."""
    payload = tx.get("input", tx.get("data", b""))
    data = HexStr("0x" + bytes(HexBytes(payload)).hex())
    fee_cap = tx.get("maxFeePerGas", tx.get("gasPrice"))
    tip = tx.get("maxPriorityFeePerGas")
    chain_id = tx.get("chainId")
    return DecodedTx(
        tx_hash=tx_hash,
        sender=to_checksum_address(tx["from"]),
        to=_checksum_or_none(tx.get("to")),
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
    prepared: PreparedTx,
    tx_hash: str,
    *,
    fee_factor: Decimal | int = DEFAULT_FEE_FACTOR,
    timeout: float = 10.0,
    network: Network | None = None,
) -> DecodedTx:
    """Fetch the broadcast transaction ``tx_hash`` and check it is the approved ``prepared`` one.

    The same check as for signed bytes (``check_transaction``). Raises
    ``IntentMismatch`` on any difference, ``ChainError`` when it cannot be
    found within ``timeout`` seconds, ``InvalidInput`` for a malformed hash.
    """
    tx = await fetch_transaction(w3, tx_hash, timeout=timeout)
    return check_transaction(prepared, tx, fee_factor=fee_factor, network=network)
