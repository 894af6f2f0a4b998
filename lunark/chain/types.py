"""Value objects of the chain layer: balances, transfer intents, prepared transactions, updates.

Frozen, slotted, keyword-only dataclasses. Amounts are integers in the token's
smallest unit (wei for native currency); human amounts are ``Decimal``, never float.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from eth_typing import ChecksumAddress, HexStr
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.address import to_checksum_address
from web3.types import Nonce, TxParams, Wei

from lunark.protocol import TxStatus

__all__ = [
    "ERC20_TRANSFER_SELECTOR",
    "Balance",
    "PreparedTx",
    "TransferIntent",
    "TxProgress",
    "TxStatus",
    "encode_erc20_transfer",
    "prepared_from_state",
    "prepared_to_state",
    "rescale_up",
    "to_units",
]

ERC20_TRANSFER_SELECTOR = function_signature_to_4byte_selector("transfer(address,uint256)")


def to_units(raw: int, decimals: int) -> Decimal:
    """``raw`` smallest units as an exact Decimal amount of whole tokens."""
    return Decimal(raw).scaleb(-decimals)


def rescale_up(amount: int, decimals: int, to: int) -> int:
    """``amount`` of a ``decimals`` token in units of ``to`` decimals, exactly or rounded up (so a
    sum checked against a cap fails closed)."""
    if decimals <= to:
        return int(amount * 10 ** (to - decimals))
    return int(-(-amount // 10 ** (decimals - to)))


def encode_erc20_transfer(recipient: str, amount: int) -> HexStr:
    """Calldata of ``transfer(recipient, amount)``."""
    body = bytes.fromhex(recipient[2:].rjust(64, "0")) + amount.to_bytes(32, "big")
    return HexStr("0x" + (ERC20_TRANSFER_SELECTOR + body).hex())


@dataclass(frozen=True, slots=True, kw_only=True)
class Balance:
    """A balance of native currency or of one ERC-20 token."""

    address: ChecksumAddress
    """Whose balance."""
    chain_id: int
    """On which chain."""
    symbol: str
    """Currency or token symbol."""
    decimals: int
    """Decimals of the currency or token."""
    raw: int
    """Balance in the smallest unit."""
    token: ChecksumAddress | None = None
    """Token contract, or None for the native currency."""

    @property
    def amount(self) -> Decimal:
        """Balance in whole tokens, exact."""
        return to_units(self.raw, self.decimals)

    def to_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "chain_id": self.chain_id,
            "symbol": self.symbol,
            "decimals": self.decimals,
            "raw": str(self.raw),
            "amount": format(self.amount.normalize(), "f") if self.raw else "0",
            "token": self.token,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferIntent:
    """What the user approves: who pays whom how much of what, on which chain.

    This, not a transaction someone hands us later, is the source of truth the
    signed transaction is checked against.
    """

    chain_id: int
    """Chain the transfer must happen on."""
    sender: ChecksumAddress
    """The user's address; the transaction must come from it."""
    recipient: ChecksumAddress
    """Who receives the funds."""
    amount: int
    """Smallest units of the currency or token."""
    symbol: str
    """Currency or token symbol, for people."""
    decimals: int
    """Decimals of the currency or token."""
    token: ChecksumAddress | None = None
    """ERC-20 contract, or None for the native currency."""

    @property
    def is_native(self) -> bool:
        return self.token is None

    @property
    def human_amount(self) -> Decimal:
        return to_units(self.amount, self.decimals)

    @property
    def tx_to(self) -> ChecksumAddress:
        """The transaction's ``to``: the recipient, or the token contract for ERC-20."""
        return self.recipient if self.token is None else self.token

    @property
    def tx_value(self) -> int:
        """The transaction's ``value``: the amount, or 0 for ERC-20."""
        return self.amount if self.token is None else 0

    @property
    def tx_data(self) -> HexStr:
        """The transaction's ``input``: empty, or ``transfer(recipient, amount)``."""
        return HexStr("0x") if self.token is None else encode_erc20_transfer(self.recipient, self.amount)

    def to_dict(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "sender": self.sender,
            "recipient": self.recipient,
            "amount": format(self.human_amount.normalize(), "f"),
            "raw_amount": str(self.amount),
            "symbol": self.symbol,
            "decimals": self.decimals,
            "token": self.token,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class PreparedTx:
    """An unsigned EIP-1559 transaction built for an intent, simulated and ready to sign."""

    intent: TransferIntent
    """What this transaction does."""
    nonce: int
    """The sender's pending nonce when prepared."""
    gas: int
    """Gas limit: the estimate plus headroom."""
    max_fee_per_gas: int
    """EIP-1559 fee cap, wei per gas."""
    max_priority_fee_per_gas: int
    """EIP-1559 tip, wei per gas."""

    @property
    def max_fee(self) -> int:
        """The most this transaction can cost in fees, in wei."""
        return self.gas * self.max_fee_per_gas

    def to_tx_params(self) -> TxParams:
        """web3/eth-account transaction fields, ready to sign."""
        intent = self.intent
        return {
            "type": 2,
            "chainId": intent.chain_id,
            "from": intent.sender,
            "to": intent.tx_to,
            "value": Wei(intent.tx_value),
            "data": intent.tx_data,
            "gas": self.gas,
            "maxFeePerGas": Wei(self.max_fee_per_gas),
            "maxPriorityFeePerGas": Wei(self.max_priority_fee_per_gas),
            "nonce": Nonce(self.nonce),
        }

    def to_wire(self) -> dict[str, Any]:
        """The protocol's ``tx`` object. Integers are ``0x`` hex quantities, as JSON-RPC wallets expect."""
        intent = self.intent
        return {
            "chain_id": hex(intent.chain_id),
            "from": intent.sender,
            "to": intent.tx_to,
            "value": hex(intent.tx_value),
            "data": intent.tx_data,
            "gas": hex(self.gas),
            "max_fee_per_gas": hex(self.max_fee_per_gas),
            "max_priority_fee_per_gas": hex(self.max_priority_fee_per_gas),
            "nonce": hex(self.nonce),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class TxProgress:
    """One step of a tracked transaction, as the tracker sees it (the wire event is ``lunark.protocol.TxUpdate``)."""

    tx_hash: str
    """The tracked transaction's hash (0x-prefixed)."""
    chain_id: int
    """Its chain."""
    status: TxStatus
    """Where it is now."""
    confirmations: int = 0
    """Blocks including and after the one that mined it (0 until mined)."""
    block_number: int | None = None
    """The block that mined it."""
    explorer_url: str | None = None
    """Link to it on the network's explorer, if any."""
    reason: str | None = None
    """Why it failed, was replaced, dropped or mismatched."""
    replaced_by: str | None = None
    """For ``replaced``: the hash of the transaction that took the nonce, when known."""
    replaces: str | None = None
    """For a speed-up (same nonce, same transfer, another fee): the hash this one replaced.

    The tracker then follows this hash; every later update carries it too."""
    gas_used: int | None = None
    """From the receipt, once mined."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "tx_hash": self.tx_hash,
            "chain_id": self.chain_id,
            "status": str(self.status),
            "confirmations": self.confirmations,
        }
        for key in (
            "block_number", "explorer_url", "reason", "replaced_by", "replaces", "gas_used"
        ):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


def prepared_to_state(prepared: PreparedTx) -> dict[str, Any]:
    """A prepared transaction as plain JSON for the checkpoint."""
    intent = prepared.intent
    return {
        "chain_id": intent.chain_id,
        "sender": intent.sender,
        "recipient": intent.recipient,
        "amount": str(intent.amount),
        "symbol": intent.symbol,
        "decimals": intent.decimals,
        "token": intent.token,
        "nonce": prepared.nonce,
        "gas": prepared.gas,
        "max_fee_per_gas": str(prepared.max_fee_per_gas),
        "max_priority_fee_per_gas": str(prepared.max_priority_fee_per_gas),
    }


def prepared_from_state(raw: dict[str, Any]) -> PreparedTx:
    intent = TransferIntent(
        chain_id=int(raw["chain_id"]),
        sender=to_checksum_address(raw["sender"]),
        recipient=to_checksum_address(raw["recipient"]),
        amount=int(raw["amount"]),
        symbol=str(raw["symbol"]),
        decimals=int(raw["decimals"]),
        token=to_checksum_address(raw["token"]) if raw.get("token") else None,
    )
    return PreparedTx(
        intent=intent,
        nonce=int(raw["nonce"]),
        gas=int(raw["gas"]),
        max_fee_per_gas=int(raw["max_fee_per_gas"]),
        max_priority_fee_per_gas=int(raw["max_priority_fee_per_gas"]),
    )
