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

Decoding lives in ``lunark.chain.decoded`` and the words in ``lunark.chain.wording``; their public
names are importable from here too.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from web3 import AsyncWeb3

from lunark.chain.decoded import (
    DecodedTx,
    checksum_or_none,
    decode_signed_transaction,
    erc20_transfer_of,
    fetch_transaction,
    same_address,
)
from lunark.chain.types import PreparedTx, TransferIntent
from lunark.chain.wording import describe_transaction, explain
from lunark.errors import IntentMismatch, InvalidInput
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
    if not same_address(tx.sender, intent.sender):
        diff["sender"] = {"expected": intent.sender, "actual": checksum_or_none(tx.sender)}
    if not same_address(tx.to, intent.tx_to):
        diff["to"] = {"expected": intent.tx_to, "actual": checksum_or_none(tx.to)}
    if tx.value != intent.tx_value:
        diff["value"] = {"expected": str(intent.tx_value), "actual": str(tx.value)}
    expected_data = intent.tx_data.lower()
    actual_data = tx.data.lower()
    if actual_data != expected_data:
        decoded = erc20_transfer_of(actual_data) if intent.token is not None else None
        if decoded is None:
            diff["data"] = {"expected": expected_data, "actual": actual_data}
        else:
            recipient, amount = decoded
            if not same_address(recipient, intent.recipient):
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
            "text": explain(
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
